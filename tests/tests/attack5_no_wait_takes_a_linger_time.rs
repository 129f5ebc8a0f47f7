//! The doorbell: a caller that starts waiting on a ticket rings the submitter awake wherever it
//! sleeps (idle, lingering on an open group, or in io_uring on writes in flight), and its group
//! is written at once. With `linger` at 1 s, a lost wake-up shows as a wait of about a whole
//! second. Many producers (each its own handle, so its own lane) append runs of one to four
//! events, sometimes pausing first so that the submitter falls asleep, and wait for the last of
//! them; no single wait may take 900 ms. The bound is generous on purpose: on this machine a wait
//! takes milliseconds, so only a wake-up lost until the linger timer fired can exceed it (the
//! store is otherwise idle: nothing else would move the group). Both backends, and the async
//! path (a future polled by a thread that parks) as well.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evstore::{Backend, Event, ExpectedVersion, Options};
use evstore_tests::{backends, block_on, open, temp_dir, watchdog, Rng};

const LINGER: Duration = Duration::from_secs(1);
/// Far above any wait without a lost wake-up, well below the linger time.
const WAIT_MAX: Duration = Duration::from_millis(900);

fn options(backend: Backend) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.linger = LINGER;
    options.segment_bytes = 4 << 20;
    options.group_bytes_max = 256 << 10;
    options.grow_segments = false;
    options
}

fn run(backend: Backend, producers: usize, runs: usize) {
    let dir = temp_dir("attack5-linger");
    let Some(store) = open(dir.path(), options(backend)) else { return };
    let slowest = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let store = store.clone();
            let slowest = slowest.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(p as u64 * 7919 + 1);
                for run in 0..runs {
                    match rng.below(4) {
                        // Let the submitter fall asleep (idle, or lingering on others' appends).
                        0 => std::thread::sleep(Duration::from_millis(rng.below(5))),
                        1 => std::thread::yield_now(),
                        _ => {}
                    }
                    let events = 1 + rng.below(4) as usize;
                    let size = if rng.below(8) == 0 { 40_000 } else { 100 };
                    let mut tickets: Vec<_> = (0..events)
                        .map(|k| {
                            let event = Event::new("E", vec![k as u8; size]);
                            store.append(&format!("p{p}"), ExpectedVersion::Any, [event]).expect("append")
                        })
                        .collect();
                    let last = tickets.pop().expect("one ticket at least");
                    drop(tickets);
                    let started = Instant::now();
                    let outcome = if run % 2 == 0 { last.wait() } else { block_on(last) };
                    let waited = started.elapsed();
                    outcome.unwrap_or_else(|e| panic!("producer {p}, run {run}: {e}"));
                    slowest.fetch_max(waited.as_micros() as u64, Ordering::Relaxed);
                    assert!(
                        waited < WAIT_MAX,
                        "{backend:?}: producer {p}, run {run}: a wait took {waited:?} with linger {LINGER:?}: \
                         the submitter slept through the doorbell"
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("producer");
    }
    println!("{backend:?}, {producers} producers: slowest wait {} us", slowest.load(Ordering::Relaxed));
    store.close().expect("close");
}

#[test]
fn many_waiting_producers_never_wait_a_linger_time() {
    let _watchdog = watchdog("many_waiting_producers_never_wait_a_linger_time", 240);
    for backend in backends() {
        run(backend, 8, 1000);
        run(backend, 1, 1000);
    }
}
