//! Helper process for tests/projection_sigkill.rs: opens the store, projects it into a SQLite
//! read model (src/read_model.rs) and, in `append` mode, keeps appending views and bookmarks
//! from another thread until it is killed. Only one process may open a store, so the events and
//! the projection come from this one process; the test reads both back after each kill.
//!
//! Usage: projector <store dir> <database> <seed> <append|finish>
//!
//! Prints `FROM <checkpoint>` (the checkpoint it resumes from) once the store is open, and in
//! `finish` mode `DONE <checkpoint>` once the projection has caught up (then exits). Any failure
//! is printed as `ERR <message>` and ends the process with status 2.

use std::io::Write as _;
use std::path::Path;
use std::process::exit;

use evstore::{Event, ExpectedVersion, ProjectionRunner, Store};
use evstore_tests::read_model::{SqliteViewCounts, BOOKMARKED, VIEWER_STREAM_PREFIX, WATCHED};
use evstore_tests::{small_options, Rng};

const VIEWERS: u64 = 6;

fn fail(message: String) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ERR {message}");
    let _ = out.flush();
    exit(2)
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("stdout");
}

/// Appends until killed: sometimes a burst first (so a restarted projection has history to
/// batch), then appends of 1 to 20 events, each waited for (live events, one flush each).
fn append_forever(store: &Store, seed: u64) -> ! {
    let mut rng = Rng::new(seed ^ store.durable_position().wrapping_mul(0x9e37_79b9));
    let pick = |rng: &mut Rng| {
        let stream = format!("{VIEWER_STREAM_PREFIX}{}", rng.below(VIEWERS));
        let event_type = if rng.below(5) == 0 { BOOKMARKED } else { WATCHED };
        (stream, event_type)
    };
    if rng.below(2) == 0 {
        let tickets: Vec<_> = (0..1 + rng.below(10))
            .map(|_| {
                let (stream, event_type) = pick(&mut rng);
                let events = (0..100).map(|_| Event::new(event_type, "video-1"));
                store.append(&stream, ExpectedVersion::Any, events).unwrap_or_else(|e| fail(format!("append: {e}")))
            })
            .collect();
        for ticket in tickets {
            ticket.wait().unwrap_or_else(|e| fail(format!("append: {e}")));
        }
    }
    loop {
        let (stream, event_type) = pick(&mut rng);
        let events = (0..1 + rng.below(20)).map(|_| Event::new(event_type, "video-1"));
        store
            .append(&stream, ExpectedVersion::Any, events)
            .and_then(|ticket| ticket.wait())
            .unwrap_or_else(|e| fail(format!("append: {e}")));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: projector <store dir> <database> <seed> <append|finish>");
        exit(1);
    }
    let seed: u64 = args[3].parse().expect("seed");
    let store = Store::open(&args[1], small_options(evstore::Backend::Auto))
        .unwrap_or_else(|e| fail(format!("open the store: {e}")));
    let read_model =
        SqliteViewCounts::open(Path::new(&args[2])).unwrap_or_else(|e| fail(format!("open the database: {e}")));
    let from = read_model.stored_checkpoint().unwrap_or_else(|e| fail(format!("read the checkpoint: {e}")));
    say(format!("FROM {from}"));
    let mut runner = ProjectionRunner::new(&store, read_model);
    match args[4].as_str() {
        "append" => {
            let appender = store.clone();
            std::thread::spawn(move || append_forever(&appender, seed));
            match runner.run() {
                Ok(end) => fail(format!("the run ended ({end:?}) while appends went on")),
                Err(e) => fail(format!("projection: {e}")),
            }
        }
        "finish" => {
            runner.run_until_caught_up().unwrap_or_else(|e| fail(format!("projection: {e}")));
            say(format!("DONE {}", runner.checkpoint()));
        }
        other => fail(format!("unknown mode {other}")),
    }
}
