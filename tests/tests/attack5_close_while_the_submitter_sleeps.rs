//! `close` wakes the submitter wherever it sleeps: idle (futex wait with nothing to do),
//! lingering on an open group (futex wait until the linger time ends, here 1 s), on writes in
//! flight (io_uring, with the doorbell's futex wait armed in the ring), and in polling mode (no
//! sleep at all). Each close must return promptly, with every queued append durable after a
//! reopen. Without this, a close that lost its wake-up would take a whole linger time, or
//! forever, or close before the open group was written.

use std::time::{Duration, Instant};

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{backends, open, read_all, temp_dir, watchdog};

/// The longest linger `Options` accept.
const LINGER: Duration = Duration::from_secs(1);
/// A close takes milliseconds; only one that slept through its wake-up (until the linger timer
/// fired) comes near this. Generous on purpose: the store is otherwise idle.
const CLOSE_MAX: Duration = Duration::from_millis(900);

fn options(backend: Backend, polling: bool) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.linger = LINGER;
    options.polling = polling;
    options.segment_bytes = 8 << 20;
    options.group_bytes_max = 1 << 20;
    options.grow_segments = false;
    options
}

/// Appends `count` events to `stream` without waiting (dropping the tickets: the appends go on).
fn queue(store: &Store, stream: &str, count: usize, size: usize) {
    for i in 0..count {
        drop(store.append(stream, ExpectedVersion::Any, [Event::new("E", vec![i as u8; size])]).expect("append"));
    }
}

fn close_in_time(store: Store, what: &str) {
    let started = Instant::now();
    store.close().unwrap_or_else(|e| panic!("{what}: close: {e}"));
    let took = started.elapsed();
    assert!(took < CLOSE_MAX, "{what}: close took {took:?} (linger {LINGER:?}): the submitter slept through it");
}

fn events_after_reopen(dir: &std::path::Path, backend: Backend) -> usize {
    let store = Store::open(dir, options(backend, false)).expect("reopen");
    let n = read_all(&store).len();
    store.close().expect("close");
    n
}

#[test]
fn close_wakes_an_idle_submitter() {
    let _watchdog = watchdog("close_wakes_an_idle_submitter", 60);
    for backend in backends() {
        let dir = temp_dir("attack5-close-idle");
        let Some(store) = open(dir.path(), options(backend, false)) else { continue };
        store.append("a", ExpectedVersion::Any, [Event::new("E", "x")]).expect("append").wait().expect("durable");
        // Nothing queued, nothing in flight: the submitter sleeps idle.
        std::thread::sleep(Duration::from_millis(150));
        close_in_time(store, &format!("{backend:?} idle"));
        assert_eq!(events_after_reopen(dir.path(), backend), 1);
    }
}

#[test]
fn close_wakes_a_lingering_submitter_and_writes_its_open_group() {
    let _watchdog = watchdog("close_wakes_a_lingering_submitter_and_writes_its_open_group", 60);
    for backend in backends() {
        let dir = temp_dir("attack5-close-lingering");
        let Some(store) = open(dir.path(), options(backend, false)) else { continue };
        // Small appends nobody waits for: an open group the submitter lingers on for 1 s.
        queue(&store, "a", 5, 100);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(store.durable_position(), 0, "{backend:?}: the group was written before its linger time");
        close_in_time(store, &format!("{backend:?} lingering"));
        assert_eq!(events_after_reopen(dir.path(), backend), 5, "{backend:?}: the open group is durable");
    }
}

#[test]
fn close_wakes_a_submitter_waiting_on_writes_in_flight() {
    let _watchdog = watchdog("close_wakes_a_submitter_waiting_on_writes_in_flight", 60);
    for backend in backends() {
        let dir = temp_dir("attack5-close-io-wait");
        let Some(store) = open(dir.path(), options(backend, false)) else { continue };
        // Groups of 1 MiB, as many in flight as the pipeline allows, and a small group lingering
        // behind them: closing comes while the submitter waits on the ring.
        queue(&store, "big", 12, 500 << 10);
        queue(&store, "small", 3, 100);
        close_in_time(store, &format!("{backend:?} in flight"));
        assert_eq!(events_after_reopen(dir.path(), backend), 15, "{backend:?}: every queued append is durable");
    }
}

#[test]
fn close_stops_a_polling_submitter_with_an_open_group() {
    let _watchdog = watchdog("close_stops_a_polling_submitter_with_an_open_group", 60);
    for backend in backends() {
        let dir = temp_dir("attack5-close-polling");
        let Some(store) = open(dir.path(), options(backend, true)) else { continue };
        queue(&store, "a", 5, 100);
        std::thread::sleep(Duration::from_millis(50));
        close_in_time(store, &format!("{backend:?} polling"));
        assert_eq!(events_after_reopen(dir.path(), backend), 5, "{backend:?}: the open group is durable");
    }
}

#[test]
fn close_from_another_thread_while_a_caller_waits_on_a_lingering_group() {
    let _watchdog = watchdog("close_from_another_thread_while_a_caller_waits_on_a_lingering_group", 60);
    for backend in backends() {
        for polling in [false, true] {
            let dir = temp_dir("attack5-close-waiter");
            let Some(store) = open(dir.path(), options(backend, polling)) else { continue };
            queue(&store, "a", 3, 100);
            let (appended, appended_receiver) = std::sync::mpsc::channel();
            let waiter = {
                let store = store.clone();
                std::thread::spawn(move || {
                    let ticket = store.append("b", ExpectedVersion::Any, [Event::new("E", "w")]).expect("append");
                    appended.send(()).expect("main thread");
                    let started = Instant::now();
                    let outcome = ticket.wait();
                    (outcome, started.elapsed())
                })
            };
            // The close comes once the append is queued, while its caller starts waiting.
            appended_receiver.recv().expect("the waiter appended");
            std::thread::sleep(Duration::from_millis(2));
            close_in_time(store, &format!("{backend:?} polling {polling} with a waiter"));
            let (outcome, waited) = waiter.join().expect("waiter");
            outcome.unwrap_or_else(|e| panic!("{backend:?} polling {polling}: the waiter's append: {e}"));
            assert!(waited < CLOSE_MAX, "{backend:?} polling {polling}: the waiter waited {waited:?}");
            assert_eq!(events_after_reopen(dir.path(), backend), 4);
        }
    }
}
