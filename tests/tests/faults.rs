//! Injected I/O faults (through the hidden `evstore::testing::FaultPlan`): a failed write or a
//! failed sync fails the appends that depended on it and poisons the store, so nothing is
//! acknowledged after the failure, while everything acknowledged before it survives a reopen;
//! running out of space for a new segment fails only the appends that needed it, without
//! poisoning, and the store goes on once space is back; a forbidden io_uring is reported as
//! such, or replaced by the portable backend under `Backend::Auto`. Without this, the first disk
//! error could be acknowledged as success (the fsyncgate bug), a full disk could kill the store
//! for good, or a seccomp filter could make `open` fail with an unhelpful error.

use evstore::testing::FaultPlan;
use evstore::{Appended, Backend, Error, Event, ExpectedVersion, Options, Store, SyncMode, Ticket};
use evstore_tests::{
    append_until_error, backends, check_log_shape, open, read_all, read_stream, small_options, temp_dir, watchdog,
};

fn faulty_options(backend: Backend, sync: SyncMode, plan: &FaultPlan) -> Options {
    let mut options = small_options(backend);
    options.sync = sync;
    options.faults = Some(plan.clone());
    options
}

fn submit(store: &Store, i: usize) -> evstore::Result<Ticket> {
    store.append(&format!("f-{}", i % 3), ExpectedVersion::Any, [Event::new("Fault", format!("event {i}"))])
}

/// An append's outcome, wherever the error surfaces: from `append()` or from `wait()`.
fn outcome(store: &Store, i: usize) -> evstore::Result<Appended> {
    submit(store, i)?.wait()
}

/// Appends `count` events (numbered from `from`) and waits for each; all must be acknowledged.
fn acknowledged(store: &Store, from: usize, count: usize) -> Vec<usize> {
    for i in from..from + count {
        outcome(store, i).unwrap_or_else(|e| panic!("append {i} before any fault: {e}"));
    }
    (from..from + count).collect()
}

fn data_of_log(store: &Store) -> Vec<Vec<u8>> {
    read_all(store).into_iter().map(|e| e.data).collect()
}

fn expected_data(numbers: &[usize]) -> Vec<Vec<u8>> {
    numbers.iter().map(|i| format!("event {i}").into_bytes()).collect()
}

/// Runs one poisoning scenario: `inject` arms the fault, then a burst of appends must all fail,
/// the store must refuse more appends with `Poisoned`, and a reopen without faults must hold
/// every acknowledged event. `written` says whether the failed group reached the file (a failed
/// sync) or not (a failed write), which decides whether it may reappear after the reopen.
fn poisoning(name: &str, sync: SyncMode, written: bool, inject: impl Fn(&FaultPlan)) {
    for backend in backends() {
        let dir = temp_dir(name);
        let plan = FaultPlan::new();
        let Some(store) = open(dir.path(), faulty_options(backend, sync, &plan)) else { continue };
        let acked = acknowledged(&store, 0, 20);
        inject(&plan);
        // A burst, so that several appends share the failing group.
        let tickets: Vec<_> = (100..110).map(|i| submit(&store, i)).collect();
        for (i, ticket) in tickets.into_iter().enumerate() {
            if let Ok(appended) = ticket.and_then(Ticket::wait) {
                panic!("{name} {backend:?}: append {} acknowledged after the failure: {appended:?}", 100 + i);
            }
        }
        // From now on the store is poisoned, whatever the fault plan says.
        plan.clear();
        for i in 200..203 {
            match outcome(&store, i) {
                Err(Error::Poisoned { cause }) => assert!(!cause.is_empty()),
                other => panic!("{name} {backend:?}: append after the failure: expected Poisoned, got {other:?}"),
            }
        }
        assert_eq!(store.durable_position(), acked.len() as u64, "{name} {backend:?}: nothing more became durable");
        assert_eq!(data_of_log(&store), expected_data(&acked), "{name} {backend:?}: acknowledged events still read");
        assert!(store.close().is_err(), "{name} {backend:?}: close reports the poisoning");

        let store = Store::open(dir.path(), small_options(backend)).expect("reopen without faults");
        let log = data_of_log(&store);
        assert_eq!(log[..acked.len()], expected_data(&acked), "{name} {backend:?}: every acknowledged event is back");
        if written {
            // The failed sync's group may or may not have reached the disk; if any of it did,
            // it is whole appends from the burst, never the refused later ones.
            let burst: Vec<usize> = (100..110).collect();
            let extra = expected_data(&burst);
            assert!(log[acked.len()..].iter().all(|d| extra.contains(d)), "{name} {backend:?}: unexpected events");
        } else {
            assert_eq!(log.len(), acked.len(), "{name} {backend:?}: a group that was never written came back");
        }
        check_log_shape(&store);
        // The reopened store works.
        let appended = outcome(&store, 300).expect("append after reopen");
        assert_eq!(appended.position, log.len() as u64);
        store.close().expect("close");
    }
}

#[test]
fn a_failed_write_poisons_the_store() {
    let _watchdog = watchdog("a_failed_write_poisons_the_store", 30);
    for sync in [SyncMode::Dsync, SyncMode::Fdatasync] {
        poisoning("fault-write", sync, false, |plan| plan.fail_writes_after(0, libc::EIO));
    }
}

#[test]
fn a_failed_sync_poisons_the_store() {
    let _watchdog = watchdog("a_failed_sync_poisons_the_store", 30);
    for sync in [SyncMode::Fdatasync, SyncMode::Dsync] {
        poisoning("fault-sync", sync, true, |plan| plan.fail_syncs_after(0, libc::EIO));
    }
}

#[test]
fn a_write_failing_after_a_few_good_ones_poisons_the_store() {
    let _watchdog = watchdog("a_write_failing_after_a_few_good_ones_poisons_the_store", 30);
    // The fault lands inside the burst: appends before it may be acknowledged, so only check
    // that nothing acknowledged is lost and nothing is acknowledged after the first failure.
    for backend in backends() {
        let dir = temp_dir("fault-write-later");
        let plan = FaultPlan::new();
        let Some(store) = open(dir.path(), faulty_options(backend, SyncMode::Fdatasync, &plan)) else { continue };
        let mut acked = acknowledged(&store, 0, 5);
        plan.fail_writes_after(3, libc::EIO);
        let mut failed = false;
        for i in 5..200 {
            match outcome(&store, i) {
                Ok(_) => {
                    assert!(!failed, "{backend:?}: append {i} acknowledged after an earlier append failed");
                    acked.push(i);
                }
                Err(_) => failed = true,
            }
        }
        assert!(failed, "{backend:?}: the injected write failure never surfaced");
        assert_eq!(acked.len(), 5 + 3, "{backend:?}: one group per waited append, three good writes");
        drop(store);
        let store = Store::open(dir.path(), small_options(backend)).expect("reopen without faults");
        assert_eq!(data_of_log(&store), expected_data(&acked));
        store.close().expect("close");
    }
}

#[test]
fn a_full_disk_at_segment_creation_fails_appends_without_poisoning() {
    let _watchdog = watchdog("a_full_disk_at_segment_creation_fails_appends_without_poisoning", 30);
    for backend in backends() {
        let dir = temp_dir("fault-enospc");
        let plan = FaultPlan::new();
        let mut options = faulty_options(backend, SyncMode::Dsync, &plan);
        // Small segments: a few appends of 4 KiB fill one.
        options.segment_bytes = 128 << 10;
        let Some(store) = open(dir.path(), options) else { continue };
        let big = |i: usize| Event::new("Big", format!("big {i}:{}", "x".repeat(4000)));
        let mut acked = Vec::new();
        for i in 0..10 {
            store.append("big", ExpectedVersion::Any, [big(i)]).expect("append").wait().expect("before the fault");
            acked.push(i);
        }
        plan.fail_segment_creation(libc::ENOSPC);
        // One segment may already be prepared; writing three segments' worth must hit the fault.
        match append_until_error(&store, 10..110, big, &mut acked) {
            Some(Error::DiskFull { context }) => assert!(!context.is_empty()),
            Some(other) => panic!("{backend:?}: a full disk at segment creation surfaced as {other:?}"),
            None => panic!("{backend:?}: 100 appends of 4 KiB into 128 KiB segments never needed a new segment"),
        }
        // Still full: still refused, and still only DiskFull, not poisoned.
        match store.append("big", ExpectedVersion::Any, [big(500)]).and_then(Ticket::wait) {
            Err(Error::DiskFull { .. }) => {}
            other => panic!("{backend:?}: second append on a full disk: {other:?}"),
        }
        // Space is back: the same store goes on.
        plan.clear();
        for i in 1000..1040 {
            store.append("big", ExpectedVersion::Any, [big(i)]).expect("append").wait().unwrap_or_else(|e| {
                panic!("{backend:?}: append {i} after space came back: {e}");
            });
            acked.push(i);
        }
        let expected: Vec<Vec<u8>> = acked.iter().map(|&i| big(i).data.into_owned()).collect();
        let data = |store: &Store| read_stream(store, "big").into_iter().map(|e| e.data).collect::<Vec<_>>();
        assert_eq!(data(&store), expected, "{backend:?}: exactly the acknowledged appends, in order");
        store.close().expect("close: a full disk does not poison");

        let store = Store::open(dir.path(), small_options(backend)).expect("reopen");
        assert_eq!(data(&store), expected, "{backend:?}: acknowledged appends survive the reopen");
        check_log_shape(&store);
        store.close().expect("close");
    }
}

#[test]
fn a_forbidden_io_uring_is_reported_or_replaced() {
    let _watchdog = watchdog("a_forbidden_io_uring_is_reported_or_replaced", 30);
    let dir = temp_dir("fault-uring");
    let plan = FaultPlan::new();
    plan.deny_io_uring(libc::EPERM);
    match Store::open(dir.path(), faulty_options(Backend::IoUring, SyncMode::Dsync, &plan)) {
        Err(Error::IoUringUnavailable { errno }) => assert_eq!(errno, libc::EPERM),
        other => panic!("io_uring denied with EPERM, Backend::IoUring: {other:?}"),
    }
    let store = Store::open(dir.path(), faulty_options(Backend::Auto, SyncMode::Dsync, &plan))
        .expect("Backend::Auto falls back to the portable backend");
    assert_eq!(store.backend(), Backend::Portable);
    let appended = outcome(&store, 0).expect("the fallback works");
    assert_eq!(appended.position, 0);
    store.close().expect("close");

    // Without the fault, Auto picks io_uring on a kernel that has it.
    let plan = FaultPlan::new();
    let store = Store::open(dir.path(), faulty_options(Backend::Auto, SyncMode::Dsync, &plan)).expect("open");
    match Store::open(temp_dir("fault-uring-probe").path(), small_options(Backend::IoUring)) {
        Ok(probe) => {
            probe.close().expect("close");
            assert_eq!(store.backend(), Backend::IoUring, "Auto uses io_uring where it works");
        }
        Err(Error::IoUringUnavailable { .. }) => {
            println!("skipped io_uring: unavailable here");
            assert_eq!(store.backend(), Backend::Portable);
        }
        Err(e) => panic!("probe: {e}"),
    }
    assert_eq!(read_all(&store).len(), 1);
    store.close().expect("close");
}
