//! A caught-up subscription registers its waker in the store's waker list
//! (`Shared::register_waker`) and nothing takes it out when the subscription is dropped: the
//! entry (and the waker, with whatever task it keeps alive) stays until the durable watermark
//! reaches its target. `register_waker` only de-duplicates identical (target, waker) pairs, so
//! every task (every distinct waker) adds one entry.
//!
//! - A server that subscribes a short-lived client to a stream (one async task per client, each
//!   with its own waker), on a store that is idle for a while, keeps one waker per client ever
//!   connected, until the next append. Each of them is then walked under the waker lock, on the
//!   submitter thread, by the next publication.
//! - A subscription from a position not reached yet (a consumer resuming from a checkpoint of a
//!   bigger log, or `subscribe_all(durable + k)` to wait for a future event) keeps its entry
//!   until the log reaches that position: appends do not free it. Created and dropped in a loop,
//!   the list grows without bound while the store runs.
//!
//! The promise: "No unbounded buffer anywhere." Expected: dropping a subscription
//! removes its registration (or the list is bounded by the live subscriptions and tickets).
//! The test counts the clones of its own wakers that are still alive after every subscription
//! was dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, RawWaker, RawWakerVTable, Waker};

use evstore::{Backend, Event, ExpectedVersion, Store};
use evstore_tests::{open, small_options, temp_dir, watchdog};

/// Wakers of this test alive anywhere (in the store's list, or here).
static ALIVE: AtomicUsize = AtomicUsize::new(0);
/// The two tests share `ALIVE`: they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

unsafe fn clone(data: *const ()) -> RawWaker {
    ALIVE.fetch_add(1, Ordering::SeqCst);
    RawWaker::new(data, &VTABLE)
}
unsafe fn wake(_: *const ()) {
    ALIVE.fetch_sub(1, Ordering::SeqCst);
}
unsafe fn wake_by_ref(_: *const ()) {}
unsafe fn drop_waker(_: *const ()) {
    ALIVE.fetch_sub(1, Ordering::SeqCst);
}
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// A waker that stands for task number `task` (a distinct data pointer: `will_wake` tells them
/// apart, as it tells two tasks of an executor apart).
fn task_waker(task: usize) -> Waker {
    ALIVE.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the vtable functions never dereference the data pointer.
    unsafe { Waker::from_raw(RawWaker::new(task as *const (), &VTABLE)) }
}

fn append(store: &Store, stream: &str) {
    store.append(stream, ExpectedVersion::Any, [Event::new("T", "x")]).unwrap().wait().unwrap();
}

const TASKS: usize = 50_000;
/// Generous: a few per live subscription or ticket would do.
const HELD_MAX: usize = 1_000;

#[test]
fn dropped_stream_subscriptions_do_not_pile_up_wakers_on_an_idle_store() {
    let _watchdog = watchdog("dropped_stream_subscriptions_do_not_pile_up_wakers_on_an_idle_store", 120);
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = temp_dir("attack-wakers-stream");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    append(&store, "other");
    let before = ALIVE.load(Ordering::SeqCst);
    for task in 0..TASKS {
        let waker = task_waker(task + 1);
        let mut sub = store.subscribe_stream("client-feed", 0).unwrap();
        assert!(sub.poll_next_batch(&mut Context::from_waker(&waker), 16).is_pending());
        drop(sub);
        drop(waker);
    }
    let held = ALIVE.load(Ordering::SeqCst) - before;
    store.close().unwrap();
    assert!(held <= HELD_MAX, "{held} wakers of {TASKS} dropped subscriptions are still held by the store");
}

#[test]
fn dropped_subscriptions_from_a_future_position_are_never_released_while_the_store_runs() {
    let _watchdog =
        watchdog("dropped_subscriptions_from_a_future_position_are_never_released_while_the_store_runs", 120);
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = temp_dir("attack-wakers-future");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    append(&store, "other");
    let before = ALIVE.load(Ordering::SeqCst);
    for task in 0..TASKS {
        let waker = task_waker(TASKS + task + 1);
        // A position the log has not reached (and will not, in this test).
        let mut sub = store.subscribe_all(1_000_000 + task as u64).unwrap();
        assert!(sub.poll_next_batch(&mut Context::from_waker(&waker), 16).is_pending());
        drop(sub);
        drop(waker);
        if task % 1_000 == 0 {
            // Appends go on: they do not free what was registered for a position not reached.
            append(&store, "other");
        }
    }
    append(&store, "other");
    let held = ALIVE.load(Ordering::SeqCst) - before;
    store.close().unwrap();
    assert!(held <= HELD_MAX, "{held} wakers of {TASKS} dropped subscriptions are still held by the store");
}
