//! The linger of appends nobody waits on counts from the producer's stamp of its run's start
//! (`Lane::run_started_ns`, bounded below by when the submitter last drained the lane). A stamp
//! left from an older run (the lane was drained long ago, or it belonged to a dropped handle and
//! was reused from the pool) must not make a new run look as if it had lingered already: it
//! would be drained at once and cut in two by another producer's wait (group_policy.rs: one
//! write per waiting producer).

use std::time::Duration;

use evstore::{Event, ExpectedVersion, Store};
use evstore_tests::{backends, open, temp_dir, waiter_only_options, watchdog};

const RUN: usize = 200;

fn waited_run(store: &Store, stream: &str) {
    let tickets: Vec<_> = (0..RUN)
        .map(|i| store.append(stream, ExpectedVersion::Any, [Event::new("Run", format!("{i}"))]).expect("append"))
        .collect();
    for ticket in tickets {
        ticket.wait().expect("durable");
    }
}

/// `a` starts a run (its lane's last drain and stamp are more than a linger old), `b` waits on a
/// whole run of its own meanwhile: `a`'s run must still be in its lane, then go out as one write.
fn run_is_not_cut(store: &Store, a: &Store, b: &Store, what: &str) {
    let first_half: Vec<_> = (0..RUN / 2)
        .map(|i| a.append("a", ExpectedVersion::Any, [Event::new("Run", format!("{i}"))]).expect("append"))
        .collect();
    let before = store.stats();
    waited_run(b, "b");
    let after_b = store.stats();
    assert_eq!(after_b.groups - before.groups, 1, "{what}: b's run is one write");
    assert!(first_half.iter().all(|ticket| !ticket.is_done()), "{what}: a's new run was written with b's");
    let second_half: Vec<_> = (RUN / 2..RUN)
        .map(|i| a.append("a", ExpectedVersion::Any, [Event::new("Run", format!("{i}"))]).expect("append"))
        .collect();
    for ticket in first_half.into_iter().chain(second_half) {
        ticket.wait().expect("durable");
    }
    assert_eq!(store.stats().groups - after_b.groups, 1, "{what}: a's run is one write");
}

#[test]
fn a_run_started_long_after_its_lane_was_drained_is_not_cut() {
    let _watchdog = watchdog("a_run_started_long_after_its_lane_was_drained_is_not_cut", 60);
    for backend in backends() {
        let dir = temp_dir("attack7-old-drain");
        let Some(store) = open(dir.path(), waiter_only_options(backend)) else { continue };
        let (a, b) = (store.clone(), store.clone());
        // The stamp of a's lane and its last drain: now.
        a.append("a", ExpectedVersion::Any, [Event::new("Lone", "x")]).expect("append").wait().expect("durable");
        b.append("b", ExpectedVersion::Any, [Event::new("Lone", "x")]).expect("append").wait().expect("durable");
        std::thread::sleep(evstore::LINGER_LIMIT + Duration::from_millis(100));
        run_is_not_cut(&store, &a, &b, &format!("{backend:?}"));
        drop((a, b));
        store.close().expect("close");
    }
}

#[test]
fn a_run_in_a_lane_reused_from_a_dropped_handle_is_not_cut() {
    let _watchdog = watchdog("a_run_in_a_lane_reused_from_a_dropped_handle_is_not_cut", 60);
    for backend in backends() {
        let dir = temp_dir("attack7-reused-lane");
        let Some(store) = open(dir.path(), waiter_only_options(backend)) else { continue };
        let b = store.clone();
        b.append("b", ExpectedVersion::Any, [Event::new("Lone", "x")]).expect("append").wait().expect("durable");
        // A handle's lane gets a stamp, is drained, and goes back to the pool with it.
        let old = store.clone();
        drop(old.append("a", ExpectedVersion::Any, [Event::new("Lone", "x")]).expect("append"));
        old.append("a", ExpectedVersion::Any, [Event::new("Lone", "y")]).expect("append").wait().expect("durable");
        drop(old);
        std::thread::sleep(evstore::LINGER_LIMIT + Duration::from_millis(100));
        // The next handle takes that lane from the pool, stamp and all.
        let a = store.clone();
        run_is_not_cut(&store, &a, &b, &format!("{backend:?}"));
        // And an append nobody waits on in the reused lane is still written within a linger
        // (and one write) of being made.
        let started = std::time::Instant::now();
        drop(a.append("a", ExpectedVersion::Any, [Event::new("Lone", "z")]).expect("append"));
        let target = store.durable_position() + 1;
        while store.durable_position() < target {
            assert!(
                started.elapsed() < evstore::LINGER_LIMIT * 3,
                "{backend:?}: an append in a reused lane stayed unwritten"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop((a, b));
        store.close().expect("close");
    }
}
