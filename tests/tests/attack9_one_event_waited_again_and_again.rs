//! `Options::poll_small_writes` (on by default): the submitter spins instead of sleeping around
//! groups of at most 8 appends (up to 500 us for the write's completion, then up to 100 us for
//! the next awaited append), staying `AWAKE`, so producers do not ring its doorbell meanwhile.
//! A lost wake-up there hangs exactly the caller this option is for: one that appends one event
//! and waits, again and again, coming back after a short pause.
//!
//! From 1, 2 and 8 threads (each with its own handle and stream), with the option on and off, on
//! both backends, through `wait()` and through `.await` in a parking executor (which never
//! times out, so a lost wake-up hangs it): thousands of single-event appends, each waited on,
//! with random pauses of 0 to 300 us in between (a pause of 0, a bare yield, and sleeps that
//! land inside and past the 100 us idle poll). Every ticket must resolve with the next version
//! of its stream, the workload must finish within a generous bound (a hang fails the test
//! instead of hanging CI), and every event must read back, with its bytes, before and after a
//! reopen.

use std::sync::mpsc;
use std::time::Duration;

use evstore::{Backend, Event, Options, Store};
use evstore_tests::{
    backends, block_on, expected_before, open, payload, read_stream, seed_from_env, short_pause, small_options,
    temp_dir, watchdog, Rng,
};

/// Appends per configuration, split among its threads.
const APPENDS: u64 = 2000;
/// A workload that takes this long hung (it takes well under a second per configuration).
const WORKLOAD_MAX: Duration = Duration::from_secs(60);

fn options(backend: Backend, poll_small_writes: bool) -> Options {
    small_options(backend).poll_small_writes(poll_small_writes)
}

/// `threads` threads, each with its own clone, append `per_thread` single events to their own
/// stream, waiting on each. Runs on a thread of its own, bounded by `WORKLOAD_MAX`.
fn workload(store: &Store, threads: usize, per_thread: u64, asynchronous: bool, seed: u64, what: &str) {
    let (done, finished) = mpsc::channel::<Result<(), String>>();
    for t in 0..threads {
        let store = store.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let stream = format!("t{t}");
            let mut rng = Rng::new(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9));
            let result = (|| {
                for version in 0..per_thread {
                    short_pause(&mut rng);
                    let ticket = store
                        .append(&stream, expected_before(version), [Event::new("E", payload(&stream, version, seed))])
                        .map_err(|e| format!("{stream} append {version}: {e}"))?;
                    let appended = if asynchronous { block_on(ticket) } else { ticket.wait() }
                        .map_err(|e| format!("{stream} wait {version}: {e}"))?;
                    if appended.version != version {
                        return Err(format!("{stream}: append {version} got version {}", appended.version));
                    }
                }
                Ok(())
            })();
            let _ = done.send(result);
        });
    }
    drop(done);
    for _ in 0..threads {
        match finished.recv_timeout(WORKLOAD_MAX) {
            Ok(result) => result.unwrap_or_else(|e| panic!("{what}: {e}")),
            Err(e) => {
                panic!("{what}: a thread did not finish within {WORKLOAD_MAX:?} ({e:?}): a ticket never resolved")
            }
        }
    }
}

fn check_streams(store: &Store, threads: usize, per_thread: u64, seed: u64, what: &str) {
    for t in 0..threads {
        let stream = format!("t{t}");
        let events = read_stream(store, &stream);
        assert_eq!(events.len() as u64, per_thread, "{what}: events of {stream}");
        for (version, event) in events.iter().enumerate() {
            assert_eq!(event.version, version as u64, "{what}: {stream}");
            assert_eq!(event.data, payload(&stream, version as u64, seed), "{what}: {stream} version {version}");
        }
    }
}

fn run(threads: usize) {
    let seed = seed_from_env("ATTACK9_SEED");
    let per_thread = APPENDS / threads as u64;
    for backend in backends() {
        for poll_small_writes in [true, false] {
            for asynchronous in [false, true] {
                let what = format!(
                    "{backend:?}, {threads} threads, poll_small_writes {poll_small_writes}, {}",
                    if asynchronous { "await" } else { "wait" }
                );
                let dir = temp_dir("attack9-waited");
                let Some(store) = open(dir.path(), options(backend, poll_small_writes)) else { continue };
                workload(&store, threads, per_thread, asynchronous, seed, &what);
                check_streams(&store, threads, per_thread, seed, &what);
                store.close().unwrap_or_else(|e| panic!("{what}: close: {e}"));
                let store = Store::open(dir.path(), options(backend, poll_small_writes)).expect("reopen");
                check_streams(&store, threads, per_thread, seed, &format!("{what}, after a reopen"));
                store.close().expect("close");
            }
        }
    }
}

#[test]
fn one_thread_appending_one_event_and_waiting() {
    let _watchdog = watchdog("one_thread_appending_one_event_and_waiting", 300);
    run(1);
}

#[test]
fn two_threads_appending_one_event_and_waiting() {
    let _watchdog = watchdog("two_threads_appending_one_event_and_waiting", 300);
    run(2);
}

#[test]
fn eight_threads_appending_one_event_and_waiting() {
    let _watchdog = watchdog("eight_threads_appending_one_event_and_waiting", 300);
    run(8);
}
