//! Dropping a subscription takes its waker out of the store's list (20b0b2e,
//! `Subscription::unregister`) by matching `(target, waker)` with `will_wake`, and
//! `Shared::register_waker` keeps one entry per identical `(target, waker)` pair. Two
//! subscriptions polled by the same async task (one task waker: `select!`, `join!`, a
//! hand-written poll loop over several feeds) at the same position register ONE entry; dropping
//! either of them removes that entry, and the other one, still `Pending`, is never woken again:
//! its task hangs although events become durable.
//!
//! Expected: a subscription's drop removes only its own registration (e.g. a per-subscription
//! reference count on the entry, or a token per registration), so the remaining subscription's
//! task is woken by the next publication.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use evstore::{Backend, Event, ExpectedVersion};
use evstore_tests::{open, small_options, temp_dir, watchdog};

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn the_remaining_subscription_of_a_task_is_still_woken_after_its_sibling_is_dropped() {
    let _watchdog = watchdog("the_remaining_subscription_of_a_task_is_still_woken_after_its_sibling_is_dropped", 60);
    let dir = temp_dir("attack2-shared-waker");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    store.append("s", ExpectedVersion::Any, [Event::new("T", "x")]).unwrap().wait().unwrap();

    // One task, one waker, two feeds: both live from now, both waiting for the same position.
    let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    let mut orders = store.subscribe_all(evstore::END).unwrap();
    let mut audit = store.subscribe_all(evstore::END).unwrap();
    assert!(orders.poll_next_batch(&mut cx, 16).is_pending());
    assert!(audit.poll_next_batch(&mut cx, 16).is_pending());

    // The task is done with one feed.
    drop(orders);

    store.append("s", ExpectedVersion::Any, [Event::new("T", "y")]).unwrap().wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while task.0.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let woken = task.0.load(Ordering::SeqCst);
    // The event is there: polling would find it, but nothing tells the task to poll.
    let ready =
        matches!(audit.poll_next_batch(&mut cx, 16), std::task::Poll::Ready(Some(Ok(batch))) if batch.len() == 1);
    assert!(ready, "the event is durable and readable");
    drop(audit);
    store.close().unwrap();
    assert!(woken > 0, "the task waiting on the remaining subscription was never woken: its sibling's drop removed the shared registration");
}

/// The same with stream subscriptions, where it needs no coincidence at all: every caught-up
/// stream subscription waits for `durable + 1` (any new group may hold its stream), so any two
/// stream feeds of one task share one entry. A task following two aggregates that stops
/// following one of them stops being woken for the other.
#[test]
fn a_task_following_two_streams_is_still_woken_after_it_drops_one() {
    let _watchdog = watchdog("a_task_following_two_streams_is_still_woken_after_it_drops_one", 60);
    let dir = temp_dir("attack2-shared-waker-streams");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    store.append("order-1", ExpectedVersion::Any, [Event::new("T", "x")]).unwrap().wait().unwrap();
    store.append("order-2", ExpectedVersion::Any, [Event::new("T", "x")]).unwrap().wait().unwrap();

    let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    let mut one = store.subscribe_stream("order-1", 1).unwrap();
    let mut two = store.subscribe_stream("order-2", 1).unwrap();
    assert!(one.poll_next_batch(&mut cx, 16).is_pending());
    assert!(two.poll_next_batch(&mut cx, 16).is_pending());
    drop(one);

    store.append("order-2", ExpectedVersion::Any, [Event::new("T", "y")]).unwrap().wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while task.0.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let woken = task.0.load(Ordering::SeqCst);
    drop(two);
    store.close().unwrap();
    assert!(woken > 0, "the task following order-2 was never woken for its new event: dropping order-1's feed removed the shared registration");
}
