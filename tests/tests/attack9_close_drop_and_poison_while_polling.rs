//! `Options::poll_small_writes`: while the submitter spins (for a small group's completion, or
//! for the next awaited append after publishing one) it stays `AWAKE`, and producers, callers
//! that start waiting, `close` and the drop of the last clone do not ring its doorbell. Each of
//! them must still be noticed:
//!
//! - `Store::close` from one thread while others append one event and wait, again and again:
//!   close returns, every ticket resolves (durable, or `Closed` for appends that came after),
//!   and after a reopen each stream holds exactly its acknowledged events (a wait that reported
//!   `Closed` says the submitter never took the append: it must not be there);
//! - the last clone dropped right after an append nobody waits on, just after a small group was
//!   published (the submitter idle-polls): the append is durable after a reopen;
//! - `close` from another thread while a caller waits on a ticket: the ticket resolves `Ok`;
//! - a failed write, or a failed sync, injected while threads append one event and wait (with
//!   `wait()` and `.await`): every thread ends with `Poisoned` within a bound, never hangs, and
//!   every acknowledged event is back after a reopen without faults.
//!
//! Both backends, the option on (its default), `Fdatasync` and `Dsync`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use evstore::testing::FaultPlan;
use evstore::{Backend, Error, Event, Options, Store, SyncMode};
use evstore_tests::{
    backends, block_on, expected_before, open, payload, read_stream, reopen_when_unlocked, seed_from_env, short_pause,
    small_options, temp_dir, watchdog, Rng,
};

/// Far longer than any of these workloads takes: reaching it means a ticket never resolved.
const BOUND: Duration = Duration::from_secs(60);

fn options(backend: Backend) -> Options {
    small_options(backend).poll_small_writes(true)
}

/// How a thread's run of single waited appends ended.
struct Run {
    stream: String,
    /// Versions acknowledged (0..acked).
    acked: u64,
    /// The error that ended the run, and whether `wait` (not `append`) reported it.
    error: Error,
    from_wait: bool,
}

/// `threads` threads (own clones, own streams) append one event and wait until an error ends
/// their run; the receiver gets one `Run` per thread.
fn appenders(store: &Store, threads: usize, seed: u64, asynchronous: bool) -> mpsc::Receiver<Run> {
    let (done, runs) = mpsc::channel();
    for t in 0..threads {
        let store = store.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let stream = format!("t{t}");
            let mut rng = Rng::new(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9));
            let mut version = 0;
            let run = loop {
                short_pause(&mut rng);
                let ticket = match store.append(
                    &stream,
                    expected_before(version),
                    [Event::new("E", payload(&stream, version, seed))],
                ) {
                    Ok(ticket) => ticket,
                    Err(error) => break Run { stream, acked: version, error, from_wait: false },
                };
                let waited = if asynchronous && t % 2 == 0 { block_on(ticket) } else { ticket.wait() };
                match waited {
                    Ok(appended) => {
                        assert_eq!(appended.version, version, "{stream}");
                        version += 1;
                    }
                    Err(error) => break Run { stream, acked: version, error, from_wait: true },
                }
            };
            let _ = done.send(run);
        });
    }
    runs
}

fn collect(runs: &mpsc::Receiver<Run>, threads: usize, what: &str) -> Vec<Run> {
    (0..threads)
        .map(|_| {
            runs.recv_timeout(BOUND).unwrap_or_else(|e| {
                panic!("{what}: an appending thread did not finish within {BOUND:?} ({e:?}): a ticket never resolved")
            })
        })
        .collect()
}

/// The stream holds exactly the acknowledged versions, with their bytes (`extra_ok`: one more,
/// the append whose wait failed, may be there).
fn check_run(store: &Store, run: &Run, seed: u64, extra_ok: bool, what: &str) {
    let events = read_stream(store, &run.stream);
    let n = events.len() as u64;
    assert!(
        n == run.acked || (extra_ok && run.from_wait && n == run.acked + 1),
        "{what}: {} holds {n} events, {} were acknowledged (run ended by {:?}, from wait: {})",
        run.stream,
        run.acked,
        run.error,
        run.from_wait
    );
    for (version, event) in events.iter().enumerate() {
        assert_eq!(event.data, payload(&run.stream, version as u64, seed), "{what}: {} version {version}", run.stream);
    }
}

#[test]
fn close_races_callers_appending_one_event_and_waiting() {
    let _watchdog = watchdog("close_races_callers_appending_one_event_and_waiting", 300);
    let seed = seed_from_env("ATTACK9_SEED");
    let mut rng = Rng::new(seed);
    for backend in backends() {
        for round in 0..32 {
            let asynchronous = round % 2 == 1;
            let what = format!("{backend:?} round {round}");
            let dir = temp_dir("attack9-close-race");
            let Some(store) = open(dir.path(), options(backend)) else { break };
            let threads = 1 + (round % 4);
            let runs = appenders(&store, threads, seed ^ round as u64, asynchronous);
            std::thread::sleep(Duration::from_micros(2_000 + rng.below(30_000)));
            let started = Instant::now();
            store.close().unwrap_or_else(|e| panic!("{what}: close: {e}"));
            assert!(started.elapsed() < Duration::from_secs(5), "{what}: close took {:?}", started.elapsed());
            let runs = collect(&runs, threads, &what);
            for run in &runs {
                assert!(
                    matches!(run.error, Error::Closed),
                    "{what}: {} ended with {:?}, not Closed",
                    run.stream,
                    run.error
                );
            }
            let store = reopen_when_unlocked(dir.path(), options(backend));
            for run in &runs {
                // A wait that reported `Closed` means the submitter never took the append.
                check_run(&store, run, seed ^ round as u64, false, &what);
            }
            store.close().expect("close");
        }
    }
}

#[test]
fn last_clone_dropped_right_after_a_small_group() {
    let _watchdog = watchdog("last_clone_dropped_right_after_a_small_group", 300);
    let seed = seed_from_env("ATTACK9_SEED");
    let mut rng = Rng::new(seed);
    for backend in backends() {
        let dir = temp_dir("attack9-last-drop");
        let mut expected_events = 0u64;
        for round in 0..120 {
            let what = format!("{backend:?} round {round}");
            let store = reopen_when_unlocked(dir.path(), options(backend));
            let (done, finished) = mpsc::channel();
            let version = expected_events;
            let pause_us = rng.below(301);
            // On another thread (own clone), the main one's dropped first: that thread's drop
            // is the last one, right after its unwaited append.
            let clone = store.clone();
            drop(store);
            std::thread::spawn(move || {
                let store = clone;
                let waited = store
                    .append("s", expected_before(version), [Event::new("E", payload("s", version, seed))])
                    .and_then(evstore::Ticket::wait);
                if pause_us > 0 {
                    std::thread::sleep(Duration::from_micros(pause_us));
                }
                let queued =
                    store.append("s", expected_before(version + 1), [Event::new("E", payload("s", version + 1, seed))]);
                let queued_ok = queued.is_ok();
                drop(queued);
                drop(store);
                let _ = done.send((waited.map(|a| a.version), queued_ok));
            });
            let (waited, queued_ok) = finished.recv_timeout(BOUND).unwrap_or_else(|e| panic!("{what}: hung ({e:?})"));
            assert_eq!(waited.unwrap_or_else(|e| panic!("{what}: waited append: {e}")), version, "{what}");
            assert!(queued_ok, "{what}: the unwaited append was refused");
            expected_events += 2;
            let store = reopen_when_unlocked(dir.path(), options(backend));
            let events = read_stream(&store, "s");
            assert_eq!(events.len() as u64, expected_events, "{what}: the append queued before the drop is lost");
            drop(store);
        }
        let store = reopen_when_unlocked(dir.path(), options(backend));
        for (version, event) in read_stream(&store, "s").iter().enumerate() {
            assert_eq!(event.data, payload("s", version as u64, seed), "{backend:?}: version {version}");
        }
        store.close().expect("close");
    }
}

#[test]
fn close_from_another_thread_while_a_caller_waits() {
    let _watchdog = watchdog("close_from_another_thread_while_a_caller_waits", 300);
    let seed = seed_from_env("ATTACK9_SEED");
    let mut rng = Rng::new(seed);
    for backend in backends() {
        let dir = temp_dir("attack9-close-waiter");
        for round in 0..60u64 {
            let what = format!("{backend:?} round {round}");
            let store = reopen_when_unlocked(dir.path(), options(backend));
            // A small group just published: the submitter idle-polls (or backs off).
            append_waited(&store, 2 * round, seed, &what);
            let ticket = store
                .append("s", expected_before(2 * round + 1), [Event::new("E", payload("s", 2 * round + 1, seed))])
                .expect("append");
            let (done, finished) = mpsc::channel();
            let asynchronous = round % 2 == 0;
            std::thread::spawn(move || {
                let _ = done.send(if asynchronous { block_on(ticket) } else { ticket.wait() });
            });
            std::thread::sleep(Duration::from_micros(rng.below(301)));
            let started = Instant::now();
            store.close().unwrap_or_else(|e| panic!("{what}: close: {e}"));
            assert!(started.elapsed() < Duration::from_secs(5), "{what}: close took {:?}", started.elapsed());
            let appended = finished.recv_timeout(BOUND).unwrap_or_else(|e| panic!("{what}: the waiter hung ({e:?})"));
            assert_eq!(appended.unwrap_or_else(|e| panic!("{what}: {e}")).version, 2 * round + 1, "{what}");
        }
        let store = reopen_when_unlocked(dir.path(), options(backend));
        assert_eq!(read_stream(&store, "s").len(), 120, "{backend:?}");
        store.close().expect("close");
    }
}

fn append_waited(store: &Store, version: u64, seed: u64, what: &str) {
    let appended = store
        .append("s", expected_before(version), [Event::new("E", payload("s", version, seed))])
        .and_then(evstore::Ticket::wait)
        .unwrap_or_else(|e| panic!("{what}: append {version}: {e}"));
    assert_eq!(appended.version, version, "{what}");
}

/// Threads append one event and wait; after a while a fault is armed: every thread must end
/// with `Poisoned`, and a reopen without faults holds every acknowledged event.
fn poisoned_while_polling(name: &str, written: bool, inject: impl Fn(&FaultPlan, u64)) {
    let seed = seed_from_env("ATTACK9_SEED");
    let mut rng = Rng::new(seed);
    for backend in backends() {
        for sync in [SyncMode::Fdatasync, SyncMode::Dsync] {
            for round in 0..4u64 {
                let what = format!("{name} {backend:?} {sync:?} round {round}");
                let dir = temp_dir(name);
                let plan = FaultPlan::new();
                let mut options = options(backend);
                options.sync = sync;
                options.faults = Some(plan.clone());
                let Some(store) = open(dir.path(), options) else { break };
                let threads = [1, 2, 4, 8][round as usize];
                let run_seed = seed ^ round;
                let runs = appenders(&store, threads, run_seed, true);
                std::thread::sleep(Duration::from_micros(3_000 + rng.below(20_000)));
                inject(&plan, rng.below(4));
                let runs = collect(&runs, threads, &what);
                for run in &runs {
                    assert!(
                        matches!(run.error, Error::Poisoned { .. }),
                        "{what}: {} ended with {:?}, not Poisoned",
                        run.stream,
                        run.error
                    );
                }
                assert!(store.close().is_err(), "{what}: close reports the poisoning");
                let store = reopen_when_unlocked(dir.path(), small_options(backend));
                for run in &runs {
                    check_run(&store, run, run_seed, written, &what);
                }
                store.close().expect("close");
            }
        }
    }
}

#[test]
fn a_failed_write_during_small_groups_fails_every_waiter() {
    let _watchdog = watchdog("a_failed_write_during_small_groups_fails_every_waiter", 300);
    poisoned_while_polling("attack9-failed-write", false, |plan, after| plan.fail_writes_after(after, libc::EIO));
}

#[test]
fn a_failed_sync_during_small_groups_fails_every_waiter() {
    let _watchdog = watchdog("a_failed_sync_during_small_groups_fails_every_waiter", 300);
    poisoned_while_polling("attack9-failed-sync", true, |plan, after| plan.fail_syncs_after(after, libc::EIO));
}
