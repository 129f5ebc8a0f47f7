//! A SQLite read model survives its projecting process being SIGKILLed at random moments while
//! events keep being appended: after every kill the database holds exactly the view counts of
//! the events before its stored checkpoint, the restarted projection resumes from that
//! checkpoint, and at the end the counts equal the truth computed from the log.
//!
//! Without it, a runner that handed a batch's checkpoint before its events (or a read model
//! that committed them apart) would count events twice or lose them after a crash, and a runner
//! that resubscribed from anywhere but the stored checkpoint would drift; both show up here as a
//! count that differs from the log's.
//!
//! Only one process may open a store (the directory lock), so the child (src/bin/projector.rs)
//! both appends (one thread) and projects (another); the parent opens the store only between
//! children, and takes the truth from the log itself: whatever became durable, acknowledged or
//! not, is what the projection must count.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evstore::Store;
use evstore_tests::read_model::{view_counts_before, SqliteViewCounts, WATCHED};
use evstore_tests::{read_all, seed_from_env, small_options, temp_dir, Rng};

const KILLS: usize = 24;

fn spawn(store_dir: &Path, database: &Path, seed: u64, mode: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_projector"))
        .args([store_dir.to_str().expect("utf-8"), database.to_str().expect("utf-8"), &seed.to_string(), mode])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the projector")
}

/// The next line the child prints, split at its first space; panics on `ERR`.
fn expect_line(lines: &mut impl Iterator<Item = std::io::Result<String>>, word: &str) -> u64 {
    let line = lines.next().unwrap_or_else(|| panic!("the projector ended before printing {word}")).expect("stdout");
    let Some(value) = line.strip_prefix(&format!("{word} ")) else { panic!("the projector printed {line:?}") };
    value.parse().expect("a number")
}

/// Opens the store and the database between children and checks the read model against the log:
/// the counts are those of exactly the events before the stored checkpoint. Returns the
/// checkpoint and the durable position.
fn check(round: &str, store_dir: &Path, database: &Path) -> (u64, u64) {
    let store = Store::open(store_dir, small_options(evstore::Backend::Auto))
        .unwrap_or_else(|e| panic!("{round}: reopening the store failed: {e}"));
    let events = read_all(&store);
    let durable = store.durable_position();
    assert_eq!(events.len() as u64, durable, "{round}: read_all and the durable position disagree");
    drop(store);
    let read_model = SqliteViewCounts::open(database).expect("open the database");
    let checkpoint = read_model.stored_checkpoint().expect("checkpoint");
    assert!(checkpoint <= durable, "{round}: checkpoint {checkpoint} past the log's end {durable}");
    let counts = read_model.view_counts().expect("counts");
    assert_eq!(
        counts,
        view_counts_before(&events, checkpoint),
        "{round}: the read model's counts are not those of the {checkpoint} events before its checkpoint"
    );
    (checkpoint, durable)
}

#[test]
fn a_sqlite_read_model_survives_sigkills_of_its_projection() {
    let _watchdog = evstore_tests::watchdog("a_sqlite_read_model_survives_sigkills_of_its_projection", 120);
    let seed = seed_from_env("EVSTORE_PROJECTION_SEED");
    let mut rng = Rng::new(seed);
    let dir = temp_dir("projection-sigkill");
    let store_dir = dir.path().join("store");
    let database = dir.path().join("read-model.sqlite");
    let mut checkpoint = 0;
    let mut checkpoint_moves = 0;
    for round in 0..KILLS {
        let name = format!("round {round}");
        let mut child = spawn(&store_dir, &database, seed ^ round as u64, "append");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let from = expect_line(&mut lines, "FROM");
        assert_eq!(from, checkpoint, "{name}: the projection did not resume from the stored checkpoint");
        // Let it append and project for a while (at times, hardly at all), then kill it.
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        child.kill().expect("SIGKILL the projector");
        child.wait().expect("reap the projector");
        // Whatever it printed after FROM: an ERR would mean it failed before the kill.
        for line in lines {
            let line = line.expect("stdout");
            assert!(!line.starts_with("ERR"), "{name}: the projector failed: {line}");
        }
        let (stored, durable) = check(&name, &store_dir, &database);
        assert!(stored >= checkpoint, "{name}: the checkpoint went back from {checkpoint} to {stored}");
        println!("{name}: checkpoint {checkpoint} -> {stored} of {durable} durable events");
        checkpoint_moves += usize::from(stored > checkpoint);
        checkpoint = stored;
    }
    assert!(checkpoint_moves > KILLS / 2, "the projection hardly ran: only {checkpoint_moves} rounds moved it");

    // A last projector that appends nothing catches up and exits: now the read model holds
    // every event of the log.
    let mut child = spawn(&store_dir, &database, seed, "finish");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(expect_line(&mut lines, "FROM"), checkpoint);
    let done = expect_line(&mut lines, "DONE");
    assert!(child.wait().expect("reap the projector").success());
    let (stored, durable) = check("the end", &store_dir, &database);
    assert_eq!(done, stored, "the last projection's checkpoint is the stored one");
    let store = Store::open(&store_dir, small_options(evstore::Backend::Auto)).expect("open");
    let log = read_all(&store);
    // Caught up: the checkpoint is at the log's end, or only events the projection does not
    // want (skipped without a write, as seed 003 requires) lie after it.
    assert!(done <= durable, "the checkpoint {done} is past the log's end {durable}");
    let after: Vec<_> = log.iter().filter(|e| e.position >= done).collect();
    assert!(
        after.iter().all(|e| e.event_type != WATCHED),
        "the last projection did not catch up with the log: a wanted event at or after its checkpoint {done} \
         (durable {durable})"
    );
    let truth = view_counts_before(&log, u64::MAX);
    let counts: BTreeMap<String, u64> = SqliteViewCounts::open(&database).expect("db").view_counts().expect("counts");
    assert_eq!(counts, truth);
    println!("{durable} events, views {counts:?}");
}
