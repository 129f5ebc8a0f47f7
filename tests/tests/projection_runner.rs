//! The projection runner's contract, one promise per test: it resumes after the stored
//! checkpoint and never before it, a failed flush costs nothing (the next run resumes from what
//! the storage holds), it can be stopped while it waits (at once, or once caught up), it refuses a checkpoint past the end of
//! the log and a policy out of range, and skipped events move the checkpoint without a write
//! per event.
//!
//! Without these, a projection could count an event twice after a restart or a failed write,
//! hang a service that wants to shut down, or silently follow a log it was not built from.

use std::collections::BTreeMap;
use std::time::Duration;

use evstore::{
    Envelope, Error, Event, ExpectedVersion, FlushPolicy, Projection, ProjectionError, ProjectionRunner, RunEnd, Store,
};
use evstore_tests::{small_options, temp_dir};

/// Counts per stream in memory, like a database table plus a checkpoint row; can be told to
/// fail a flush.
#[derive(Debug, Default)]
struct Counts {
    per_stream: BTreeMap<String, u64>,
    checkpoint: u64,
    /// Every flush: (events in the batch, checkpoint).
    flushes: Vec<(usize, u64)>,
    /// Fail the flush with this index (0-based) once.
    fail_flush: Option<usize>,
    /// Only events of this type are wanted (all if `None`).
    only: Option<&'static str>,
}

#[derive(Debug)]
struct StorageDown;

impl std::error::Error for StorageDown {}

impl std::fmt::Display for StorageDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("storage down")
    }
}

impl Projection for Counts {
    type Error = StorageDown;

    fn checkpoint(&mut self) -> Result<u64, StorageDown> {
        Ok(self.checkpoint)
    }

    fn wants(&self, envelope: &Envelope) -> bool {
        self.only.is_none_or(|only| envelope.event_type() == only)
    }

    fn flush(&mut self, batch: &[Envelope], checkpoint: u64) -> Result<(), StorageDown> {
        if self.fail_flush == Some(self.flushes.len()) {
            self.fail_flush = None;
            return Err(StorageDown);
        }
        // All or nothing, like a transaction.
        for envelope in batch {
            *self.per_stream.entry(envelope.stream().to_string()).or_default() += 1;
        }
        self.checkpoint = checkpoint;
        self.flushes.push((batch.len(), checkpoint));
        Ok(())
    }
}

fn append(store: &Store, stream: &str, event_type: &str, count: usize) {
    let events = (0..count).map(|i| Event::new(event_type.to_string(), format!("{i}")));
    store.append(stream, ExpectedVersion::Any, events).and_then(|t| t.wait()).expect("append");
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, small_options(evstore::Backend::Auto)).expect("open")
}

#[test]
fn a_restart_resumes_after_the_stored_checkpoint() {
    let dir = temp_dir("projection-restart");
    let store = open(dir.path());
    append(&store, "a", "Seen", 250);
    let mut runner = ProjectionRunner::new(&store, Counts::default());
    assert_eq!(runner.run_until_caught_up().expect("run"), RunEnd::CaughtUp);
    // Historic: two batches of 100, the rest flushed on catching up.
    assert_eq!(runner.projection().flushes, [(100, 100), (100, 200), (50, 250)]);
    let mut counts = runner.into_projection();
    counts.flushes.clear();

    // A new runner (a restarted process) over the stored state reads only what came after.
    append(&store, "b", "Seen", 30);
    let mut runner = ProjectionRunner::new(&store, counts);
    runner.run_until_caught_up().expect("run");
    assert_eq!(runner.projection().flushes, [(30, 280)]);
    assert_eq!(runner.projection().per_stream, BTreeMap::from([("a".to_string(), 250), ("b".to_string(), 30)]));
}

#[test]
fn a_failed_flush_is_retried_from_the_stored_checkpoint() {
    let dir = temp_dir("projection-failed-flush");
    let store = open(dir.path());
    append(&store, "a", "Seen", 350);
    let counts = Counts { fail_flush: Some(2), ..Counts::default() };
    let mut runner = ProjectionRunner::new(&store, counts);
    match runner.run_until_caught_up() {
        Err(ProjectionError::Handler(StorageDown)) => {}
        other => panic!("expected the handler's error, got {other:?}"),
    }
    assert_eq!(runner.checkpoint(), 200);
    // Running again resumes from the storage's checkpoint: no event counted twice or lost.
    assert_eq!(runner.run_until_caught_up().expect("run"), RunEnd::CaughtUp);
    assert_eq!(runner.projection().per_stream["a"], 350);
    assert_eq!(runner.projection().flushes, [(100, 100), (100, 200), (100, 300), (50, 350)]);
}

#[test]
fn stop_ends_a_run_that_waits_for_events() {
    let _watchdog = evstore_tests::watchdog("stop_ends_a_run_that_waits_for_events", 60);
    let dir = temp_dir("projection-stop");
    let store = open(dir.path());
    append(&store, "a", "Seen", 10);
    let mut runner = ProjectionRunner::new(&store, Counts::default());
    let stop = runner.stop_handle();
    let run = std::thread::spawn(move || {
        let end = runner.run();
        (end, runner.into_projection())
    });
    // Live events reach it while it runs...
    std::thread::sleep(Duration::from_millis(50));
    append(&store, "a", "Seen", 1);
    std::thread::sleep(Duration::from_millis(50));
    // ...and stop wakes it from its wait.
    stop.stop();
    let (end, counts) = run.join().expect("runner thread");
    assert_eq!(end.expect("run"), RunEnd::Stopped);
    assert_eq!(counts.checkpoint, 11);
}

#[test]
fn stop_when_caught_up_ends_the_run_after_every_durable_event() {
    let _watchdog = evstore_tests::watchdog("stop_when_caught_up_ends_the_run_after_every_durable_event", 60);
    let dir = temp_dir("projection-stop-when-caught-up");
    let store = open(dir.path());
    let mut runner = ProjectionRunner::new(&store, Counts::default());
    let stop = runner.stop_handle();
    let run = std::thread::spawn(move || {
        let end = runner.run();
        (end, runner.into_projection())
    });
    for _ in 0..50 {
        append(&store, "a", "Seen", 1);
    }
    stop.stop_when_caught_up();
    let (end, counts) = run.join().expect("runner thread");
    assert_eq!(end.expect("run"), RunEnd::Stopped);
    assert_eq!(counts.checkpoint, 50);
    assert_eq!(counts.per_stream["a"], 50);
}

#[test]
fn closing_the_store_ends_the_run_after_the_last_event() {
    let dir = temp_dir("projection-close");
    let store = open(dir.path());
    append(&store, "a", "Seen", 5);
    let mut runner = ProjectionRunner::new(&store, Counts::default());
    let closer = std::thread::spawn(move || {
        append(&store, "a", "Seen", 5);
        store.close().expect("close");
    });
    assert_eq!(runner.run().expect("run"), RunEnd::StoreClosed);
    closer.join().expect("closer");
    assert_eq!(runner.projection().checkpoint, 10);
}

#[test]
fn a_checkpoint_past_the_end_of_the_log_is_refused() {
    let dir = temp_dir("projection-ahead");
    let store = open(dir.path());
    append(&store, "a", "Seen", 3);
    let counts = Counts { checkpoint: 4, ..Counts::default() };
    match ProjectionRunner::new(&store, counts).run_until_caught_up() {
        Err(ProjectionError::CheckpointAhead { checkpoint: 4, durable: 3 }) => {}
        other => panic!("expected CheckpointAhead, got {other:?}"),
    }
}

#[test]
fn a_policy_out_of_range_is_refused() {
    let dir = temp_dir("projection-policy");
    let store = open(dir.path());
    let mut policy = FlushPolicy::default();
    policy.historic_batch_events = 0;
    match ProjectionRunner::new(&store, Counts::default()).with_policy(policy).run_until_caught_up() {
        Err(ProjectionError::Store(Error::InvalidOption { name, .. })) => {
            assert_eq!(name, "FlushPolicy::historic_batch_events")
        }
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

#[test]
fn skipped_events_move_the_checkpoint_without_a_write_each() {
    let dir = temp_dir("projection-skipped");
    let store = open(dir.path());
    append(&store, "a", "Bookmarked", 25);
    let mut policy = FlushPolicy::default();
    policy.skipped_checkpoint_events = Some(10);
    let counts = Counts { only: Some("Watched"), ..Counts::default() };
    let mut runner = ProjectionRunner::new(&store, counts).with_policy(policy);
    runner.run_until_caught_up().expect("run");
    // Two checkpoint-only flushes; the last 5 skipped events are not worth a write.
    assert_eq!(runner.projection().flushes, [(0, 10), (0, 20)]);

    // A wanted event after skipped ones (live now, so flushed at once): its checkpoint covers
    // the skipped ones before it; the 3 after it wait for the next flush.
    append(&store, "a", "Bookmarked", 2);
    append(&store, "a", "Watched", 1);
    append(&store, "a", "Bookmarked", 3);
    runner.run_until_caught_up().expect("run");
    assert_eq!(runner.projection().flushes.last(), Some(&(1, 28)));
    assert_eq!(runner.checkpoint(), 28);
}
