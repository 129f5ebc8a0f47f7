//! An append nobody waits on stays in its handle's lane until the lane's linger time is up
//! (counted from when the submitter first sees it), and producers ring the doorbell for every
//! append only while the submitter is idle. A lost wake-up (an append published while the
//! submitter switches between idle and lingering, on a lane it has not looked at yet, or while
//! it waits on I/O) would leave such an append unwritten until something else happens: forever
//! in a quiet store.
//!
//! For each `linger` (0, 1 us, 1 ms, 50 ms, 1 s), on stores run side by side, several handles
//! append runs of events at random moments (some right after the previous append became
//! durable, some after pauses around the linger time, so that appends land while the submitter
//! goes to sleep or changes how it sleeps), drop every ticket but the run's last, and only poll
//! that one with `is_done()`, never waiting. Each must be durable within `2 x linger` plus a
//! generous 3 s; then the handle's next run may start. At the end every event is in its stream,
//! in order. Both backends.

use std::time::{Duration, Instant};

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{backends, open, read_stream, temp_dir, watchdog, Rng};

const HANDLES: usize = 5;

fn options(backend: Backend, linger: Duration) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.linger = linger;
    options.segment_bytes = 4 << 20;
    options.group_bytes_max = 64 << 10;
    options.queue_bytes = 64 << 10;
    options.grow_segments = false;
    options
}

/// Polls `ticket` with `is_done()` until it is, or panics after `bound`.
fn poll_until_done(ticket: &evstore::Ticket, bound: Duration, what: &str) -> Duration {
    let started = Instant::now();
    while !ticket.is_done() {
        let waited = started.elapsed();
        assert!(waited < bound, "{what}: not durable after {waited:?}: an append nobody waits on was lost");
        std::thread::sleep(Duration::from_micros(200));
    }
    started.elapsed()
}

fn producer(store: Store, label: String, linger: Duration, rounds: usize, seed: u64) -> (usize, Duration) {
    let mut rng = Rng::new(seed);
    let bound = linger * 2 + Duration::from_secs(3);
    let mut appended = 0;
    let mut slowest = Duration::ZERO;
    for round in 0..rounds {
        match rng.below(4) {
            0 => {}
            1 => std::thread::yield_now(),
            // Around the linger time: the submitter is about to write, or just went idle.
            2 => std::thread::sleep(linger.min(Duration::from_millis(60)) + Duration::from_micros(rng.below(300))),
            _ => std::thread::sleep(Duration::from_micros(rng.below(3000))),
        }
        let events = 1 + rng.below(3) as usize;
        let mut last = None;
        for _ in 0..events {
            let data = format!("{label}:{appended}");
            last = Some(store.append(&label, ExpectedVersion::Any, [Event::new("E", data)]).expect("append"));
            appended += 1;
        }
        let last = last.expect("a run has an append");
        let what = format!("{label} (linger {linger:?}), round {round}");
        slowest = slowest.max(poll_until_done(&last, bound, &what));
        let outcome = last.wait().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(outcome.version + 1, appended as u64, "{what}: the last append's version");
    }
    (appended, slowest)
}

fn run(backend: Backend, linger: Duration, rounds: usize, seed: u64) {
    let dir = temp_dir("attack6-no-waiter");
    let Some(store) = open(dir.path(), options(backend, linger)) else { return };
    let threads: Vec<_> = (0..HANDLES)
        .map(|h| {
            let store = store.clone();
            let label = format!("h{h}");
            std::thread::spawn(move || producer(store, label, linger, rounds, seed ^ (h as u64 * 7919)))
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for (h, thread) in threads.into_iter().enumerate() {
        let (appended, slow) = thread.join().expect("producer");
        slowest = slowest.max(slow);
        let events = read_stream(&store, &format!("h{h}"));
        assert_eq!(events.len(), appended, "{backend:?}, linger {linger:?}: h{h}'s events");
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.data, format!("h{h}:{i}").into_bytes(), "h{h}'s event {i} out of order");
        }
    }
    println!("{backend:?}, linger {linger:?}: slowest append nobody waited on: {slowest:?}");
    store.close().expect("close");
}

#[test]
fn appends_nobody_waits_on_become_durable_for_every_linger() {
    let _watchdog = watchdog("appends_nobody_waits_on_become_durable_for_every_linger", 120);
    let seed = evstore_tests::seed_from_env("ATTACK6_SEED");
    for backend in backends() {
        let lingers = [
            (Duration::ZERO, 60),
            (Duration::from_micros(1), 60),
            (Duration::from_millis(1), 60),
            (Duration::from_millis(50), 12),
            (Duration::from_secs(1), 1),
        ];
        let threads: Vec<_> = lingers
            .into_iter()
            .map(|(linger, rounds)| std::thread::spawn(move || run(backend, linger, rounds, seed)))
            .collect();
        for thread in threads {
            thread.join().expect("a linger's run");
        }
    }
}
