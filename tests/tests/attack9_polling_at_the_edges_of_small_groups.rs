//! `Options::poll_small_writes` at its edges. The submitter polls for a write's completion only
//! while the oldest group in flight holds at most 8 appends and no lane holds undrained
//! appends, and idle-polls only after publishing a group of at most 8 appends; while it spins
//! it is `AWAKE` and producers do not ring. Each case must still make every append durable,
//! resolve every ticket, and keep the order and versions of every stream:
//!
//! - runs of exactly 8 and exactly 9 single-event appends, each run waited on through its last
//!   ticket only, so that (with nothing but a waiting caller cutting groups) every group holds 8
//!   appends (polled) or 9 (not polled): the groups on disk are checked to hold that many;
//! - a producer that fills its small ring past half (urgent) in bursts while the submitter
//!   polls, beside a caller appending one event and waiting, on the longest linger (so that a
//!   half-full ring missed while polling would cost up to a second per burst);
//! - `ExpectedVersion::Exact` chains across two handles taking turns on one stream, waited on at
//!   each turn, and without waiting (ordered through the cross-lane order table);
//! - `polling` and `poll_small_writes` both on (`polling` wins; it must still work and close).
//!
//! Both backends.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use evstore::{Event, Store, Ticket};
use evstore_tests::{
    backends, block_on, expected_before, groups_on_disk, open, payload, read_stream, seed_from_env, short_pause,
    small_options, temp_dir, used_segments, waiter_only_options, watchdog, Rng,
};

const BOUND: Duration = Duration::from_secs(60);

/// Runs `work` on a thread of its own; fails if it takes longer than `BOUND` (a hang).
fn bounded<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    finished.recv_timeout(BOUND).unwrap_or_else(|e| panic!("{what}: did not finish within {BOUND:?} ({e:?})"))
}

fn check_stream(store: &Store, stream: &str, count: u64, seed: u64, what: &str) {
    let events = read_stream(store, stream);
    assert_eq!(events.len() as u64, count, "{what}: events of {stream}");
    for (version, event) in events.iter().enumerate() {
        assert_eq!(event.data, payload(stream, version as u64, seed), "{what}: {stream} version {version}");
    }
}

fn runs_of(run: u64) {
    let seed = seed_from_env("ATTACK9_SEED");
    const RUNS: u64 = 150;
    for backend in backends() {
        let what = format!("{backend:?}, runs of {run}");
        let dir = temp_dir("attack9-runs");
        let options = waiter_only_options(backend).poll_small_writes(true);
        let Some(store) = open(dir.path(), options.clone()) else { continue };
        let worker = store.clone();
        let worker_what = what.clone();
        bounded(&what, move || {
            let mut rng = Rng::new(seed);
            let mut version = 0;
            for r in 0..RUNS {
                let tickets: Vec<Ticket> = (0..run)
                    .map(|i| {
                        worker
                            .append(
                                "s",
                                expected_before(version + i),
                                [Event::new("E", payload("s", version + i, seed))],
                            )
                            .expect("append")
                    })
                    .collect();
                // Only the last one is waited on (async every other run); the others are then
                // durable too.
                let mut tickets = tickets.into_iter();
                let last = tickets.next_back().expect("a run");
                let appended = if r % 2 == 0 { last.wait() } else { block_on(last) };
                assert_eq!(appended.expect("last of the run").version, version + run - 1, "{worker_what}");
                for (i, ticket) in tickets.enumerate() {
                    assert!(ticket.is_done(), "{worker_what}: run {r}: append {i} not durable with the run's last");
                    assert_eq!(ticket.wait().expect("durable").version, version + i as u64, "{worker_what}");
                }
                version += run;
                short_pause(&mut rng);
            }
        });
        check_stream(&store, "s", RUNS * run, seed, &what);
        store.close().expect("close");
        let mut sizes = Vec::new();
        for (_, path) in used_segments(dir.path()) {
            sizes.extend(groups_on_disk(&path).iter().map(|g| g.events as u64));
        }
        assert_eq!(sizes.iter().sum::<u64>(), RUNS * run, "{what}: events in groups on disk");
        assert!(sizes.iter().all(|&n| n == run), "{what}: every group holds one whole run of {run}: {sizes:?}");
        let store = Store::open(dir.path(), options).expect("reopen");
        check_stream(&store, "s", RUNS * run, seed, &format!("{what}, after a reopen"));
        store.close().expect("close");
    }
}

#[test]
fn runs_of_exactly_eight_appends() {
    let _watchdog = watchdog("runs_of_exactly_eight_appends", 300);
    runs_of(8);
}

#[test]
fn runs_of_exactly_nine_appends() {
    let _watchdog = watchdog("runs_of_exactly_nine_appends", 300);
    runs_of(9);
}

#[test]
fn half_full_rings_while_a_single_caller_makes_the_submitter_poll() {
    let _watchdog = watchdog("half_full_rings_while_a_single_caller_makes_the_submitter_poll", 300);
    let seed = seed_from_env("ATTACK9_SEED");
    const WAITED: u64 = 800;
    for backend in backends() {
        let what = format!("{backend:?}");
        let dir = temp_dir("attack9-half-full");
        let mut options = small_options(backend).poll_small_writes(true);
        options.queue_bytes = 64 << 10;
        options.linger = evstore::LINGER_LIMIT;
        options.segment_bytes = 8 << 20;
        options.group_bytes_max = 256 << 10;
        let Some(store) = open(dir.path(), options.clone()) else { continue };
        let (stop, stopped) = mpsc::channel::<()>();
        let producer = {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ 1);
                let mut tickets = Vec::new();
                let mut version = 0u64;
                while stopped.try_recv().is_err() {
                    // A burst of about 1 KiB appends: up to 80 KiB, more than the 64 KiB ring.
                    for _ in 0..1 + rng.below(80) {
                        let mut data = payload("bulk", version, seed);
                        data.resize(1000, b'.');
                        tickets.push(
                            store.append("bulk", expected_before(version), [Event::new("E", data)]).expect("append"),
                        );
                        version += 1;
                    }
                    short_pause(&mut rng);
                }
                let started = Instant::now();
                for (i, ticket) in tickets.into_iter().enumerate() {
                    assert_eq!(ticket.wait().expect("bulk append").version, i as u64);
                }
                (version, started.elapsed())
            })
        };
        let waiter = store.clone();
        let waited_what = what.clone();
        let slowest = bounded(&what, move || {
            let mut rng = Rng::new(seed ^ 2);
            let mut slowest = Duration::ZERO;
            for version in 0..WAITED {
                short_pause(&mut rng);
                let started = Instant::now();
                let appended = waiter
                    .append("one", expected_before(version), [Event::new("E", payload("one", version, seed))])
                    .and_then(Ticket::wait)
                    .unwrap_or_else(|e| panic!("{waited_what}: {e}"));
                slowest = slowest.max(started.elapsed());
                assert_eq!(appended.version, version, "{waited_what}");
            }
            slowest
        });
        let _ = stop.send(());
        let (bulk, last_wait) = bounded(&what, move || producer.join().expect("producer"));
        println!("{what}: {bulk} bulk appends, slowest single wait {slowest:?}, bulk tickets waited in {last_wait:?}");
        // The bulk producer's last run may sit in its lane for the linger time: nobody waits on
        // it until its tickets are waited on (which flushes the lane at once).
        assert!(last_wait < Duration::from_millis(900), "{what}: the bulk tickets waited a linger time: {last_wait:?}");
        check_stream(&store, "one", WAITED, seed, &what);
        assert_eq!(read_stream(&store, "bulk").len() as u64, bulk, "{what}: bulk events");
        store.close().expect("close");
        let store = Store::open(dir.path(), options).expect("reopen");
        check_stream(&store, "one", WAITED, seed, &format!("{what}, after a reopen"));
        assert_eq!(read_stream(&store, "bulk").len() as u64, bulk, "{what}: bulk events after a reopen");
        store.close().expect("close");
    }
}

#[test]
fn exact_chains_across_two_handles_while_polling() {
    let _watchdog = watchdog("exact_chains_across_two_handles_while_polling", 300);
    let seed = seed_from_env("ATTACK9_SEED");
    const TURNS: u64 = 600;
    for backend in backends() {
        for wait_each in [true, false] {
            let what = format!("{backend:?}, wait each turn: {wait_each}");
            let dir = temp_dir("attack9-chain");
            let mut options = small_options(backend).poll_small_writes(true);
            options.linger = evstore::LINGER_LIMIT;
            options.segment_bytes = 8 << 20;
            let Some(store) = open(dir.path(), options.clone()) else { continue };
            let worker = store.clone();
            let outcomes = bounded(&what, move || turns(&worker, TURNS, wait_each, seed));
            assert_eq!(outcomes.len() as u64, TURNS, "{what}: every turn's ticket resolved");
            for (version, got) in outcomes {
                assert_eq!(version, got, "{what}: turn {version} got version {got}");
            }
            check_stream(&store, "chain", TURNS, seed, &what);
            store.close().expect("close");
            let store = Store::open(dir.path(), options).expect("reopen");
            check_stream(&store, "chain", TURNS, seed, &format!("{what}, after a reopen"));
            store.close().expect("close");
        }
    }
}

/// Two handles (clones, on two threads) take turns: each appends the next version of "chain",
/// `Exact` on the one before, and passes the turn. Returns (turn, version acknowledged) for
/// every turn.
fn turns(store: &Store, turns: u64, wait_each: bool, seed: u64) -> Vec<(u64, u64)> {
    let (to_0, for_0) = mpsc::channel::<u64>();
    let (to_1, for_1) = mpsc::channel::<u64>();
    let (done, results) = mpsc::channel::<Vec<(u64, u64)>>();
    let sides = [(0u64, for_0, to_1), (1u64, for_1, to_0.clone())];
    for (side, receiver, sender) in sides {
        let store = store.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ (side + 7));
            let mut tickets = Vec::new();
            let mut outcomes = Vec::new();
            while let Ok(version) = receiver.recv() {
                if version >= turns {
                    let _ = sender.send(version);
                    break;
                }
                short_pause(&mut rng);
                let ticket = store
                    .append("chain", expected_before(version), [Event::new("E", payload("chain", version, seed))])
                    .expect("append");
                if wait_each {
                    let appended = if version % 4 < 2 { ticket.wait() } else { block_on(ticket) };
                    outcomes.push((version, appended.expect("chained append").version));
                } else {
                    tickets.push((version, ticket));
                }
                let _ = sender.send(version + 1);
            }
            for (version, ticket) in tickets {
                outcomes.push((version, ticket.wait().expect("chained append").version));
            }
            let _ = done.send(outcomes);
        });
    }
    drop(done);
    to_0.send(0).expect("first turn");
    drop(to_0);
    let mut all: Vec<(u64, u64)> = results.iter().flatten().collect();
    all.sort();
    all
}

#[test]
fn polling_and_poll_small_writes_together() {
    let _watchdog = watchdog("polling_and_poll_small_writes_together", 300);
    let seed = seed_from_env("ATTACK9_SEED");
    const PER_THREAD: u64 = 300;
    for backend in backends() {
        let what = format!("{backend:?}, polling + poll_small_writes");
        let dir = temp_dir("attack9-polling-both");
        let options = small_options(backend).polling(true).poll_small_writes(true);
        let Some(store) = open(dir.path(), options.clone()) else { continue };
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let stream = format!("t{t}");
                    let mut rng = Rng::new(seed ^ t);
                    for version in 0..PER_THREAD {
                        short_pause(&mut rng);
                        let ticket = store
                            .append(
                                &stream,
                                expected_before(version),
                                [Event::new("E", payload(&stream, version, seed))],
                            )
                            .expect("append");
                        let appended = if version % 2 == 0 { ticket.wait() } else { block_on(ticket) };
                        assert_eq!(appended.expect("durable").version, version);
                    }
                })
            })
            .collect();
        bounded(&what, move || handles.into_iter().for_each(|h| h.join().expect("appender")));
        // A last append nobody waits on, then close at once: close must still write it.
        drop(store.append("t0", expected_before(PER_THREAD), [Event::new("E", payload("t0", PER_THREAD, seed))]));
        let started = Instant::now();
        store.close().expect("close");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: close took {:?}", started.elapsed());
        let store = Store::open(dir.path(), options).expect("reopen");
        check_stream(&store, "t0", PER_THREAD + 1, seed, &format!("{what}, after a reopen"));
        check_stream(&store, "t1", PER_THREAD, seed, &format!("{what}, after a reopen"));
        store.close().expect("close");
    }
}
