//! Index checkpoints: `Store::open` loads the stream table and group directory from
//! `index.checkpoint` and scans only the log after it. A checkpoint that is missing, damaged
//! (a flipped byte, cut short), older than the log (the tail scan adds the rest), newer than the
//! log (the log was cut by `Store::repair`, or older segment files were put back) or from another
//! log must never answer: open falls back to scanning the whole log. Every case is compared
//! with a copy of the same directory opened without any checkpoint: reads, stream versions and
//! expected-version checks must be identical. Without this, a stale checkpoint would hand out
//! versions and positions the log does not hold (a second `NoStream` writer let in, reads of
//! events that are gone), or a checkpoint cut by a crash would make the store unopenable.

use std::path::Path;

use evstore::{Error, Event, ExpectedVersion, Options, RecordedEvent, Store};
use evstore_tests::{damage, groups_on_disk, read_all, read_stream, segment_path, temp_dir, used_segments, watchdog};

const CHECKPOINT: &str = "index.checkpoint";
const TEMP_FILE: &str = "index.checkpoint.tmp";
const STREAMS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Several segments of 128 KiB, so checkpoints cover finished segments and part of the active one.
fn options() -> Options {
    let mut options = evstore_tests::small_segment_options();
    options.checkpoint_log_bytes = 0;
    options
}

/// Appends `appends` appends of one or two events, spread over the streams, waiting for each.
fn fill(store: &Store, appends: usize, tag: u8) {
    for i in 0..appends {
        let stream = STREAMS[i % STREAMS.len()];
        let count = 1 + i % 2;
        let events = (0..count).map(|k| Event::new("Filled", vec![tag.wrapping_add((i + k) as u8); 700]));
        store.append(stream, ExpectedVersion::Any, events).expect("append").wait().expect("durable");
    }
}

/// Copies the regular files of `source` (segments and checkpoint, not the lock) into `target`.
fn copy_dir(source: &Path, target: &Path) {
    std::fs::create_dir_all(target).expect("create");
    for entry in std::fs::read_dir(source).expect("list") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if path.is_file() && name != "LOCK" {
            std::fs::copy(&path, target.join(&name)).expect("copy");
        }
    }
}

/// What a store answers: the whole log, every stream, every version, and what the
/// expected-version checks say (which moves the store on by one append per stream).
#[derive(Debug, PartialEq)]
struct Answers {
    log: Vec<RecordedEvent>,
    streams: Vec<(Vec<RecordedEvent>, Option<u64>)>,
    durable: u64,
    checks: Vec<String>,
}

fn answers(store: &Store) -> Answers {
    let log = read_all(store);
    let streams = STREAMS.iter().map(|s| (read_stream(store, s), store.stream_version(s))).collect();
    let durable = store.durable_position();
    let mut checks = Vec::new();
    for stream in STREAMS {
        let version = store.stream_version(stream);
        let refused = store.append(stream, ExpectedVersion::NoStream, [Event::new("Check", b"x".to_vec())]);
        checks.push(format!("{stream} NoStream: {:?}", refused.and_then(|t| t.wait()).map_err(describe)));
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let appended = store.append(stream, expected, [Event::new("Check", b"y".to_vec())]);
        checks.push(format!("{stream} {expected:?}: {:?}", appended.and_then(|t| t.wait()).map_err(describe)));
    }
    Answers { log, streams, durable, checks }
}

fn describe(error: Error) -> String {
    match error {
        Error::WrongExpectedVersion { actual, .. } => format!("wrong expected version, actual {actual:?}"),
        other => other.to_string(),
    }
}

/// Opens `dir` as it is, and a copy of it without its checkpoint (a full scan), and checks that
/// both answer the same. Returns the answers.
fn same_as_full_scan(dir: &Path, what: &str) -> Answers {
    let scratch = temp_dir("checkpoint-full-scan");
    copy_dir(dir, scratch.path());
    let _ = std::fs::remove_file(scratch.path().join(CHECKPOINT));
    let full = Store::open(scratch.path(), options()).expect("open without a checkpoint");
    let expected = answers(&full);
    full.close().expect("close");
    let store = Store::open(dir, options()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    let got = answers(&store);
    store.close().expect("close");
    assert_eq!(got, expected, "{what}: the store answers as a full scan of its log does");
    got
}

/// A store of several segments, closed cleanly (so with a checkpoint); its log.
fn closed_store(dir: &Path, appends: usize, tag: u8) -> Vec<RecordedEvent> {
    let store = Store::open(dir, options()).expect("open");
    fill(&store, appends, tag);
    let log = read_all(&store);
    store.close().expect("close");
    assert!(dir.join(CHECKPOINT).exists(), "a clean close writes a checkpoint");
    assert!(used_segments(dir).len() >= 3, "the log spans several segments");
    log
}

#[test]
fn a_clean_close_leaves_a_checkpoint_that_answers_as_the_log_does() {
    let _watchdog = watchdog("a_clean_close_leaves_a_checkpoint_that_answers_as_the_log_does", 60);
    let dir = temp_dir("checkpoint-clean");
    let log = closed_store(dir.path(), 300, 1);
    let answers = same_as_full_scan(dir.path(), "clean close");
    assert_eq!(&answers.log[..log.len()], &log[..]);
    // And again, after the reopened store appended (the checks) and closed.
    same_as_full_scan(dir.path(), "second generation");
}

/// Appends `appends` appends of 1,000 tiny events each (8 bytes per location in a checkpoint),
/// spread over the streams, waiting for each.
fn fill_tiny(store: &Store, appends: usize) {
    for i in 0..appends {
        let events = (0..1000).map(|k| Event::new("Tiny", vec![(i + k) as u8; 8]));
        store
            .append(STREAMS[i % STREAMS.len()], ExpectedVersion::Any, events)
            .expect("append")
            .wait()
            .expect("durable");
    }
}

/// Opens `dir` (with its checkpoint) and a copy of it without any checkpoint, both with
/// `options`: they must answer alike. Returns whether `dir` still held `TEMP_FILE` once opened.
fn answers_as_a_full_scan_with(dir: &Path, options: &Options) -> bool {
    let scratch = temp_dir("checkpoint-full-scan-with");
    copy_dir(dir, scratch.path());
    for name in [CHECKPOINT, TEMP_FILE] {
        let _ = std::fs::remove_file(scratch.path().join(name));
    }
    let full = Store::open(scratch.path(), options.clone()).expect("open without a checkpoint");
    let expected = answers(&full);
    full.close().expect("close");
    let store = Store::open(dir, options.clone()).expect("open from the checkpoint");
    let temp_left = dir.join(TEMP_FILE).exists();
    assert_eq!(answers(&store), expected, "the store answers as a full scan of its log does");
    store.close().expect("close");
    temp_left
}

#[test]
fn a_checkpoint_made_durable_in_many_slices_answers_as_the_log_does() {
    let _watchdog = watchdog("a_checkpoint_made_durable_in_many_slices_answers_as_the_log_does", 120);
    let dir = temp_dir("checkpoint-slices");
    let mut options = Options::default();
    options.checkpoint_log_bytes = 0;
    // 8 bytes per location: 500,000 events make a checkpoint of about 4 MiB, written and synced
    // 1 MiB at a time (log/checkpoint.rs).
    let store = Store::open(dir.path(), options.clone()).expect("open");
    fill_tiny(&store, 500);
    store.close().expect("close");
    let bytes = std::fs::metadata(dir.path().join(CHECKPOINT)).expect("a checkpoint").len();
    assert!(bytes > 3 << 20, "a checkpoint of {bytes} bytes spans several slices");
    answers_as_a_full_scan_with(dir.path(), &options);
}

#[test]
fn a_checkpoint_whose_sync_fails_between_slices_leaves_the_old_one_in_force() {
    let _watchdog = watchdog("a_checkpoint_whose_sync_fails_between_slices_leaves_the_old_one_in_force", 120);
    let dir = temp_dir("checkpoint-sync-fails");
    let plan = evstore::testing::FaultPlan::new();
    let mut options = Options::default();
    // Only the checkpoints this test asks for (and the one at close).
    options.checkpoint_log_bytes = u64::MAX / 4;
    options.faults = Some(plan.clone());
    let store = Store::open(dir.path(), options.clone()).expect("open");
    fill_tiny(&store, 300);
    store.checkpoint().expect("the first checkpoint");
    let old = std::fs::read(dir.path().join(CHECKPOINT)).expect("a checkpoint");
    fill_tiny(&store, 100);
    // The first 1 MiB slice syncs, the second fails: the temporary file is half written.
    plan.fail_checkpoint_syncs_after(1, libc::EIO);
    match store.checkpoint() {
        Err(Error::Io { .. }) => {}
        other => panic!("a checkpoint whose sync failed: {other:?}"),
    }
    assert_eq!(std::fs::read(dir.path().join(CHECKPOINT)).expect("read"), old, "the old checkpoint is untouched");
    // The log is not affected: appends go on, and close (whose checkpoint fails too) succeeds.
    fill_tiny(&store, 1);
    store.close().expect("close");
    assert_eq!(std::fs::read(dir.path().join(CHECKPOINT)).expect("read"), old, "still the old checkpoint");
    assert!(dir.path().join(TEMP_FILE).exists(), "the failed checkpoint left its temporary file");
    plan.clear();
    // The old checkpoint and the log after it answer as the whole log does.
    assert!(!answers_as_a_full_scan_with(dir.path(), &options), "open removes the half-written temporary file");
}

#[test]
fn a_missing_checkpoint_means_a_full_scan() {
    let _watchdog = watchdog("a_missing_checkpoint_means_a_full_scan", 60);
    let dir = temp_dir("checkpoint-missing");
    closed_store(dir.path(), 200, 2);
    std::fs::remove_file(dir.path().join(CHECKPOINT)).expect("remove");
    same_as_full_scan(dir.path(), "missing");
    assert!(dir.path().join(CHECKPOINT).exists(), "the next close writes one again");
}

#[test]
fn a_damaged_checkpoint_is_never_trusted() {
    let _watchdog = watchdog("a_damaged_checkpoint_is_never_trusted", 120);
    let dir = temp_dir("checkpoint-damaged");
    closed_store(dir.path(), 200, 3);
    let original = std::fs::read(dir.path().join(CHECKPOINT)).expect("read");
    let len = original.len();
    // Header fields, the first segment entry, a group entry, a stream name, the last location.
    let flips = [0, 9, 14, 20, 33, 49, 57, 81, 89, 128, 128 + 48 * 3 + 3, len / 2, len - 1];
    for at in flips {
        let mut bytes = original.clone();
        bytes[at] ^= 0x10;
        std::fs::write(dir.path().join(CHECKPOINT), &bytes).expect("write");
        let scratch = temp_dir("checkpoint-damaged-copy");
        copy_dir(dir.path(), scratch.path());
        same_as_full_scan(scratch.path(), &format!("byte {at} flipped"));
    }
    for cut in [0, 1, 64, 127, 128, len / 3, len - 8, len - 1] {
        std::fs::write(dir.path().join(CHECKPOINT), &original[..cut]).expect("write");
        let scratch = temp_dir("checkpoint-cut-copy");
        copy_dir(dir.path(), scratch.path());
        same_as_full_scan(scratch.path(), &format!("cut to {cut} bytes"));
    }
}

#[test]
fn an_older_checkpoint_is_completed_by_scanning_the_log_after_it() {
    let _watchdog = watchdog("an_older_checkpoint_is_completed_by_scanning_the_log_after_it", 60);
    let dir = temp_dir("checkpoint-older");
    closed_store(dir.path(), 150, 4);
    let old = std::fs::read(dir.path().join(CHECKPOINT)).expect("read");
    let store = Store::open(dir.path(), options()).expect("reopen");
    fill(&store, 250, 5);
    store.close().expect("close");
    std::fs::write(dir.path().join(CHECKPOINT), &old).expect("put the old checkpoint back");
    let answers = same_as_full_scan(dir.path(), "older checkpoint");
    assert!(answers.log.len() > 400, "the events after the old checkpoint are there");
}

#[test]
fn a_checkpoint_newer_than_the_log_is_not_used() {
    let _watchdog = watchdog("a_checkpoint_newer_than_the_log_is_not_used", 60);
    let dir = temp_dir("checkpoint-newer");
    let before = closed_store(dir.path(), 150, 6);
    // The segment files as they were, then more appends and a checkpoint that covers them.
    let saved = temp_dir("checkpoint-newer-saved");
    copy_dir(dir.path(), saved.path());
    let store = Store::open(dir.path(), options()).expect("reopen");
    fill(&store, 300, 7);
    store.close().expect("close");
    // Older segment files back (and the newer ones gone), the newer checkpoint kept.
    let checkpoint = std::fs::read(dir.path().join(CHECKPOINT)).expect("read");
    for (_, path) in used_segments(dir.path()) {
        std::fs::remove_file(path).expect("remove");
    }
    copy_dir(saved.path(), dir.path());
    std::fs::write(dir.path().join(CHECKPOINT), &checkpoint).expect("write");
    let answers = same_as_full_scan(dir.path(), "newer checkpoint");
    assert_eq!(&answers.log[..before.len()], &before[..]);
    assert_eq!(answers.durable, before.len() as u64, "nothing the checkpoint claims beyond the log");
}

#[test]
fn a_checkpoint_of_another_log_is_not_used() {
    let _watchdog = watchdog("a_checkpoint_of_another_log_is_not_used", 60);
    let (dir, other) = (temp_dir("checkpoint-mine"), temp_dir("checkpoint-other"));
    closed_store(dir.path(), 200, 8);
    // Another store with the same shape (same appends, same sizes): only the files differ.
    closed_store(other.path(), 200, 9);
    std::fs::copy(other.path().join(CHECKPOINT), dir.path().join(CHECKPOINT)).expect("copy");
    same_as_full_scan(dir.path(), "another log's checkpoint");
}

#[test]
fn repair_sets_a_checkpoint_aside_and_a_restored_one_is_not_used() {
    let _watchdog = watchdog("repair_sets_a_checkpoint_aside_and_a_restored_one_is_not_used", 60);
    let dir = temp_dir("checkpoint-repair");
    closed_store(dir.path(), 300, 10);
    let checkpoint = std::fs::read(dir.path().join(CHECKPOINT)).expect("read");
    // A flipped byte in a record of segment 1: with acknowledged groups after it, damage.
    let groups = groups_on_disk(&segment_path(dir.path(), 1));
    let at = (groups[1].offset + 32 + 40) as u64;
    damage(&segment_path(dir.path(), 1), at, &[0xff, 0xfe]);
    match Store::open(dir.path(), options()) {
        Err(Error::Corrupted { segment: 1, .. }) => {}
        other => panic!("a flipped record covered by the checkpoint: expected Corrupted, got {other:?}"),
    }
    let report = Store::repair(dir.path(), options()).expect("repair").expect("damage found");
    assert!(report.dropped_events() > 0);
    assert!(!dir.path().join(CHECKPOINT).exists(), "repair sets the checkpoint aside");
    assert!(report.saved_to.join(CHECKPOINT).exists(), "with the other files it saved");
    // Put back by hand, it covers more than the log keeps: never used.
    std::fs::write(dir.path().join(CHECKPOINT), &checkpoint).expect("write");
    let answers = same_as_full_scan(dir.path(), "checkpoint from before the repair");
    assert_eq!(answers.durable, report.dropped.start);
}

#[test]
fn a_crash_after_a_checkpoint_scans_the_tail_and_loses_nothing() {
    let _watchdog = watchdog("a_crash_after_a_checkpoint_scans_the_tail_and_loses_nothing", 60);
    let dir = temp_dir("checkpoint-crash");
    closed_store(dir.path(), 150, 11);
    let store = Store::open(dir.path(), options()).expect("reopen");
    fill(&store, 120, 12);
    store.checkpoint().expect("a checkpoint while open");
    fill(&store, 130, 13);
    let acknowledged = read_all(&store);
    // The crash image: the files as they are while the store is open (every append above is
    // durable; no close marker, no final checkpoint).
    let image = temp_dir("checkpoint-crash-image");
    copy_dir(dir.path(), image.path());
    store.close().expect("close");
    let answers = same_as_full_scan(image.path(), "checkpoint and a crash tail");
    assert_eq!(&answers.log[..acknowledged.len()], &acknowledged[..], "every acknowledged event survives");
}

#[test]
fn background_checkpoints_are_written_as_the_log_grows() {
    let _watchdog = watchdog("background_checkpoints_are_written_as_the_log_grows", 60);
    let dir = temp_dir("checkpoint-background");
    let mut options = options();
    options.checkpoint_log_bytes = 64 << 10;
    let store = Store::open(dir.path(), options).expect("open");
    fill(&store, 400, 14);
    // Written by a background thread: wait for it (the watchdog bounds the wait).
    while !dir.path().join(CHECKPOINT).exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(store.index_bytes() > 0);
    let image = temp_dir("checkpoint-background-image");
    copy_dir(dir.path(), image.path());
    store.close().expect("close");
    same_as_full_scan(image.path(), "background checkpoint and a crash tail");
}
