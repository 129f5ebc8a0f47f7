//! Reads after the store was poisoned by a failed group write: appends are refused with
//! `Error::Poisoned`, yet `read_stream`, `read_all` and `stream_version` go on returning exactly
//! the durable events, also for a stream that had appends in the failed group and for one whose
//! only appends were there. The stream table learned the locations of the failed group's records
//! when they were placed, and those records never reached the disk. Without this, every
//! `read_stream` of such a stream failed with `Corrupted` ("record length 0 out of range") for as
//! long as the store stayed open, although nothing on disk was wrong.

use evstore::testing::FaultPlan;
use evstore::{Error, Event, ExpectedVersion, Store, SyncMode, Ticket};
use evstore_tests::{backends, open, small_options, temp_dir, watchdog};

const DURABLE: usize = 20;

fn data(stream: &str, i: usize) -> Vec<u8> {
    format!("{stream} {i}").into_bytes()
}

fn append(store: &Store, stream: &str, i: usize) -> evstore::Result<Ticket> {
    store.append(stream, ExpectedVersion::Any, [Event::new("E", data(stream, i))])
}

/// Every read of the poisoned store, checked against the durable events; `what` names the round.
fn check_reads(store: &Store, what: &str) {
    let expected: Vec<Vec<u8>> = (0..DURABLE).map(|i| data("s", i)).collect();
    let read = |stream: &str, from: u64| -> evstore::Result<Vec<Vec<u8>>> {
        store.read_stream(stream, from)?.map(|e| e.map(|e| e.data)).collect()
    };
    match read("s", 0) {
        Ok(events) => assert_eq!(events, expected, "{what}: read_stream(s, 0) returns the durable events"),
        Err(e) => panic!("{what}: read_stream(s, 0) of a stream with events in the failed group: {e}"),
    }
    match read("s", 15) {
        Ok(events) => assert_eq!(events, expected[15..], "{what}: read_stream(s, 15)"),
        Err(e) => panic!("{what}: read_stream(s, 15): {e}"),
    }
    match read("only-failed", 0) {
        Ok(events) => assert!(events.is_empty(), "{what}: a stream whose only appends failed reads empty"),
        Err(e) => panic!("{what}: read_stream of a stream whose only appends failed: {e}"),
    }
    let all: evstore::Result<Vec<Vec<u8>>> = store.read_all(0).expect("read_all").map(|e| e.map(|e| e.data)).collect();
    match all {
        Ok(events) => assert_eq!(events, expected, "{what}: read_all(0) returns the durable events"),
        Err(e) => panic!("{what}: read_all(0): {e}"),
    }
    assert_eq!(store.stream_version("s"), Some(DURABLE as u64 - 1), "{what}: stream_version(s)");
    assert_eq!(store.stream_version("only-failed"), None, "{what}: stream_version(only-failed)");
    assert_eq!(store.durable_position(), DURABLE as u64, "{what}: durable_position");
}

/// Appends 20 acknowledged events to `s`, arms `inject`, appends a burst to `s` and to
/// `only-failed` (all of which fail), and checks the reads.
fn poisoned_reads(name: &str, sync: SyncMode, inject: fn(&FaultPlan)) {
    for backend in backends() {
        let dir = temp_dir(name);
        let plan = FaultPlan::new();
        let mut options = small_options(backend);
        options.sync = sync;
        options.faults = Some(plan.clone());
        let Some(store) = open(dir.path(), options) else { continue };
        for i in 0..DURABLE {
            append(&store, "s", i).expect("append").wait().expect("durable before the fault");
        }
        inject(&plan);
        // A burst, so that appends to both streams are placed in the failing group (and in any
        // group after it that is never written).
        let burst: Vec<_> =
            (DURABLE..DURABLE + 10).flat_map(|i| [append(&store, "s", i), append(&store, "only-failed", i)]).collect();
        for ticket in burst {
            if let Ok(appended) = ticket.and_then(Ticket::wait) {
                panic!("{name} {backend:?}: an append of the burst was acknowledged: {appended:?}");
            }
        }
        plan.clear();
        match append(&store, "s", 100).and_then(Ticket::wait) {
            Err(Error::Poisoned { .. }) => {}
            other => panic!("{name} {backend:?}: an append after the failure: expected Poisoned, got {other:?}"),
        }
        // The same, again and again: the reads do not wear the poisoning off, nor the reverse.
        for round in 0..3 {
            check_reads(&store, &format!("{name} {backend:?} round {round}"));
        }
        let _ = store.close();
    }
}

#[test]
fn reads_after_a_failed_write_return_the_durable_events() {
    let _watchdog = watchdog("reads_after_a_failed_write_return_the_durable_events", 60);
    for sync in [SyncMode::Dsync, SyncMode::Fdatasync] {
        poisoned_reads("poisoned-write", sync, |plan| plan.fail_writes_after(0, libc::EIO));
    }
}

#[test]
fn reads_after_a_failed_sync_return_the_durable_events() {
    let _watchdog = watchdog("reads_after_a_failed_sync_return_the_durable_events", 60);
    // The failed group was written, but it is not durable: it must not be read either.
    for sync in [SyncMode::Fdatasync, SyncMode::Dsync] {
        poisoned_reads("poisoned-sync", sync, |plan| plan.fail_syncs_after(0, libc::EIO));
    }
}
