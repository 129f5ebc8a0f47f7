//! An executor whose waker polls the task inline runs the task on the submitter thread (evstore
//! supports such wakers: dropping or closing the last clone there is handled). The most ordinary
//! task appends again once its append resolved. If the append queue is full at that moment (the
//! backpressure `append` is documented to apply by blocking its thread), `append` spins until the
//! submitter drains the queue: but it is spinning on the submitter thread, so nothing ever drains
//! it. The whole store hangs: the task, every producer blocked on the full queue, every waiter.
//! Here the task's handle has the smallest queue (64 KiB); another thread sharing that handle
//! fills it while the waker runs, and the task's next append never returns (the watchdog ends
//! the test). An append on the submitter
//! thread must not wait for the submitter (fail, or go around the queue), whatever the load.

use std::io::Write as _;
use std::sync::{Arc, Condvar, Mutex};
use std::task::Wake;
use std::time::Duration;

use evstore::{Backend, Event, ExpectedVersion, Store};
use evstore_tests::{append_with_registered_waker, open, small_options, temp_dir, watchdog};

/// The smallest queue a handle can have.
const QUEUE_BYTES: usize = 64 << 10;
/// Data of an event whose append takes nearly a quarter of that queue (the most it takes inline).
const BIG: usize = 16_000;

#[derive(Default)]
struct Steps {
    /// The waker is running (on the submitter thread, which wakes it).
    in_waker: bool,
    /// The other producer's append is in the queue.
    queue_full: bool,
}

/// Stands for an inline-polling executor whose task appends again when its append resolved.
struct AppendingWaker {
    store: Mutex<Option<Arc<Store>>>,
    steps: Arc<(Mutex<Steps>, Condvar)>,
    outcome: Mutex<Option<evstore::Result<()>>>,
}

impl Wake for AppendingWaker {
    fn wake(self: Arc<Self>) {
        let Some(store) = self.store.lock().expect("store").take() else { return };
        let (lock, changed) = &*self.steps;
        let mut steps = lock.lock().expect("steps");
        steps.in_waker = true;
        changed.notify_all();
        let (steps, _) =
            changed.wait_timeout_while(steps, Duration::from_secs(10), |steps| !steps.queue_full).expect("steps");
        drop(steps);
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let _ = writeln!(std::io::stderr(), "the task appends again from its waker, on thread {thread}");
        let appended = store.append("task", ExpectedVersion::Any, [Event::new("Next", vec![1; BIG])]).map(drop);
        *self.outcome.lock().expect("outcome") = Some(appended);
    }
}

#[test]
fn an_append_from_an_inline_waker_with_a_full_queue_does_not_hang_the_store() {
    let _watchdog = watchdog("an_append_from_an_inline_waker_with_a_full_queue_does_not_hang_the_store", 30);
    let dir = temp_dir("append-from-waker");
    let mut options = small_options(Backend::Portable);
    options.queue_bytes = QUEUE_BYTES;
    let store = open(dir.path(), options).expect("the portable backend opens");
    // The handle the task and the other thread share (a handle's queue is its own).
    let handle = Arc::new(store.clone());
    let steps = Arc::new((Mutex::new(Steps::default()), Condvar::new()));
    let waker = Arc::new(AppendingWaker {
        store: Mutex::new(Some(handle.clone())),
        steps: steps.clone(),
        outcome: Mutex::new(None),
    });
    // The task's append, polled once so that the waker is registered before it is durable.
    drop(append_with_registered_waker(&store, || Event::new("First", vec![0; 60_000]), &waker, 100));

    let other = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            let (lock, changed) = &*steps;
            let mut steps = changed.wait_while(lock.lock().expect("steps"), |steps| !steps.in_waker).expect("steps");
            // Four appends of nearly a quarter of the queue leave too little for a fifth.
            let tickets: Vec<_> = (0..4)
                .map(|_| handle.append("other", ExpectedVersion::Any, [Event::new("Other", vec![2; BIG])]))
                .collect();
            steps.queue_full = true;
            changed.notify_all();
            drop(steps);
            tickets.into_iter().try_for_each(|ticket| ticket.expect("append").wait().map(drop))
        })
    };
    other.join().expect("other producer").expect("the other producer's appends are durable");
    let outcome = waker.outcome.lock().expect("outcome").take();
    match outcome {
        // The queue was full and the append was on the submitter thread: refused, typed.
        Some(Err(evstore::Error::QueueFull { capacity: QUEUE_BYTES })) => {}
        other => panic!("the waker's append: expected QueueFull, got {other:?}"),
    }
    drop(handle);
    store.close().expect("close");
}
