//! When the submitter writes a group (design.md, "Group commit and the pipeline"): one write per
//! waiting producer (not cut by another producer's wait), appends nobody waits on written after
//! `linger`, and the same outcomes in polling mode.

use std::time::Duration;

use evstore::{Event, ExpectedVersion, Store};
use evstore_tests::{backends, open, temp_dir, waiter_only_options, watchdog};

/// A run of appends a producer makes before it waits.
const RUN: usize = 300;

fn run(store: &Store, stream: &str) -> u64 {
    let tickets: Vec<_> = (0..RUN)
        .map(|i| store.append(stream, ExpectedVersion::Any, [Event::new("Run", format!("{i}"))]).expect("append"))
        .collect();
    let last = tickets.into_iter().map(|ticket| ticket.wait().expect("durable")).last().expect("a run");
    last.version
}

#[test]
fn a_run_of_appends_followed_by_a_wait_is_one_write() {
    let _watchdog = watchdog("a_run_of_appends_followed_by_a_wait_is_one_write", 120);
    for backend in backends() {
        let dir = temp_dir("group-policy-run");
        let Some(store) = open(dir.path(), waiter_only_options(backend)) else { continue };
        for round in 0..5u64 {
            let before = store.stats();
            assert_eq!(run(&store, "runs"), (round + 1) * RUN as u64 - 1);
            let after = store.stats();
            assert_eq!(after.events - before.events, RUN as u64);
            // Not cut by the linger time (1 s) nor by size: written because its caller waited,
            // all of it at once.
            assert_eq!(after.groups - before.groups, 1, "{backend:?}: round {round} went out as one write");
        }
        store.close().expect("close");
    }
}

#[test]
fn another_producers_wait_does_not_cut_a_run_in_two() {
    let _watchdog = watchdog("another_producers_wait_does_not_cut_a_run_in_two", 120);
    for backend in backends() {
        let dir = temp_dir("group-policy-two-producers");
        let Some(store) = open(dir.path(), waiter_only_options(backend)) else { continue };
        let (a, b) = (store.clone(), store.clone());
        // A is in the middle of its run (it has not waited yet) when B waits on its own run.
        let first_half: Vec<_> = (0..RUN / 2)
            .map(|i| a.append("a", ExpectedVersion::Any, [Event::new("Run", format!("{i}"))]).expect("append"))
            .collect();
        let before = store.stats();
        assert_eq!(run(&b, "b"), RUN as u64 - 1);
        let after_b = store.stats();
        // B's run went out alone, as one write; A's appends wait in A's queue for A (the
        // linger time is 1 s), instead of being cut into B's group.
        assert_eq!((after_b.groups - before.groups, after_b.events - before.events), (1, RUN as u64), "{backend:?}");
        assert!(first_half.iter().all(|ticket| !ticket.is_done()), "{backend:?}: A's run was written with B's");
        let second_half: Vec<_> = (RUN / 2..RUN)
            .map(|i| a.append("a", ExpectedVersion::Any, [Event::new("Run", format!("{i}"))]).expect("append"))
            .collect();
        let versions: Vec<u64> =
            first_half.into_iter().chain(second_half).map(|ticket| ticket.wait().expect("durable").version).collect();
        assert_eq!(versions, (0..RUN as u64).collect::<Vec<_>>());
        let after_a = store.stats();
        assert_eq!(after_a.groups - after_b.groups, 1, "{backend:?}: A's whole run went out as one write");
        drop((a, b));
        store.close().expect("close");
    }
}

#[test]
fn an_append_nobody_waits_on_is_written_after_the_linger_time() {
    let _watchdog = watchdog("an_append_nobody_waits_on_is_written_after_the_linger_time", 120);
    for backend in backends() {
        let dir = temp_dir("group-policy-linger");
        let mut options = waiter_only_options(backend);
        options.linger = Duration::from_millis(20);
        let Some(store) = open(dir.path(), options) else { continue };
        // The ticket is dropped: nobody waits, so only the linger time writes the group.
        drop(store.append("lone", ExpectedVersion::Any, [Event::new("Lone", "x")]).expect("append"));
        while store.durable_position() < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(store.stats().groups, 1);
        store.close().expect("close");
    }
}

#[test]
fn polling_mode_keeps_every_outcome() {
    let _watchdog = watchdog("polling_mode_keeps_every_outcome", 120);
    for backend in backends() {
        let dir = temp_dir("group-policy-polling");
        let Some(store) = open(dir.path(), waiter_only_options(backend).polling(true)) else { continue };
        let producers: Vec<_> = (0..3)
            .map(|p| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for round in 0..3u64 {
                        assert_eq!(run(&store, &format!("p{p}")), (round + 1) * RUN as u64 - 1);
                    }
                    let wrong = store.append(&format!("p{p}"), ExpectedVersion::NoStream, [Event::new("E", "")]);
                    assert!(matches!(
                        wrong.expect("append").wait(),
                        Err(evstore::Error::WrongExpectedVersion { actual: Some(v), .. }) if v == 3 * RUN as u64 - 1
                    ));
                })
            })
            .collect();
        for producer in producers {
            producer.join().expect("producer");
        }
        assert_eq!(store.durable_position(), 9 * RUN as u64);
        assert_eq!(store.read_all(0).expect("read").count(), 9 * RUN);
        store.close().expect("close");
    }
}
