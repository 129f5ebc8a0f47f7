//! An append made on the submitter thread (a waker that polls its task inline) must not wait for
//! the submitter, so when it would have to wait behind another handle's append to the same
//! stream (the cross-lane order table), it is refused with `QueueFull`. But by then it had
//! already claimed its result slot: the claim stayed behind with no append and no ticket. The
//! handle's next append finds that slot owned by an append that is "not placed yet" and waits
//! for its placement, which never comes: that handle hangs forever, from any thread, and so does
//! everything waiting on it (the watchdog ends the test). A refused append must leave its handle
//! as it found it.

use std::sync::{Arc, Mutex};
use std::task::Wake;

use evstore::{Backend, Error, Event, ExpectedVersion, Store};
use evstore_tests::{append_with_registered_waker, open, small_options, temp_dir, watchdog};

/// Stands for an inline-polling executor whose task appends through two handles to one stream.
struct TwoHandlesWaker {
    handles: Mutex<Option<(Arc<Store>, Arc<Store>)>>,
    outcomes: Mutex<Vec<evstore::Result<()>>>,
}

impl Wake for TwoHandlesWaker {
    fn wake(self: Arc<Self>) {
        let Some((first, second)) = self.handles.lock().expect("handles").take() else { return };
        // Through the first handle: queued, not placed (the submitter is running this waker).
        let queued = first.append("shared", ExpectedVersion::Any, [Event::new("First", "1")]).map(drop);
        // Through the second: it must come after the first, which cannot be placed while this
        // thread is busy here, so it is refused (or queued; either is fine).
        let refused = second.append("shared", ExpectedVersion::Any, [Event::new("Second", "2")]).map(drop);
        *self.outcomes.lock().expect("outcomes") = vec![queued, refused];
    }
}

#[test]
fn an_append_refused_on_the_submitter_thread_leaves_its_handle_usable() {
    let _watchdog = watchdog("an_append_refused_on_the_submitter_thread_leaves_its_handle_usable", 20);
    let dir = temp_dir("attack4-refused-claim");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("the portable backend opens");
    // Shared through `Arc`s: a `Store` clone would be a new handle, with a lane of its own.
    let first = Arc::new(store.clone());
    let second = Arc::new(store.clone());
    // Both handles have made their lane already.
    for handle in [&*first, &*second] {
        handle
            .append("warm-up", ExpectedVersion::Any, [Event::new("Warm", "")])
            .expect("append")
            .wait()
            .expect("durable");
    }
    let waker = Arc::new(TwoHandlesWaker {
        handles: Mutex::new(Some((first.clone(), second.clone()))),
        outcomes: Mutex::new(Vec::new()),
    });
    let ticket = append_with_registered_waker(&store, || Event::new("Task", ""), &waker, 1000);
    ticket.wait().expect("the task's append is durable");
    // The waker runs on the submitter thread once the task's append is durable (just after
    // `wait` may have returned).
    let mut outcomes = Vec::new();
    for _ in 0..1000 {
        outcomes = std::mem::take(&mut *waker.outcomes.lock().expect("outcomes"));
        if !outcomes.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(outcomes.len(), 2, "the waker ran");
    assert!(outcomes[0].is_ok(), "the first handle's append from the waker: {:?}", outcomes[0]);
    match &outcomes[1] {
        Ok(()) | Err(Error::QueueFull { .. }) => {}
        other => panic!("the second handle's append from the waker: {other:?}"),
    }
    println!("the second handle's append on the submitter thread: {:?}", outcomes[1]);
    // The second handle must still work, from an ordinary thread.
    for i in 0..3 {
        second
            .append("shared", ExpectedVersion::Any, [Event::new("After", format!("{i}"))])
            .expect("append")
            .wait()
            .expect("the second handle's appends after the refusal are durable");
    }
    drop((first, second));
    store.close().expect("close");
}
