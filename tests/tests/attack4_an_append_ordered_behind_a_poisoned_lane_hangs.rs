//! An append to a stream another handle appended to just before waits (the cross-lane order
//! table) until that other append is placed, so that a stream's appends keep their call order
//! across handles. If the store is poisoned meanwhile (a failed write), the submitter stops and
//! never places the other append: the waiting append spun forever, ringing a doorbell nobody
//! listens to, instead of failing with `Poisoned` as every other wait of a producer does. Its
//! thread, and every thread later blocked behind its handle, hung (the test fails instead of
//! waiting). The submitter is held inside a waker (an inline-polling executor) while the two
//! appends are queued, so that the order of events is certain.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::Wake;
use std::time::Duration;

use evstore::testing::FaultPlan;
use evstore::{Backend, Error, Event, ExpectedVersion};
use evstore_tests::{append_with_registered_waker, open, small_options, temp_dir, watchdog};

/// Holds the submitter thread (which runs it) until told to let go.
#[derive(Default)]
struct HoldingWaker {
    /// (the waker is running, it may return)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Wake for HoldingWaker {
    fn wake(self: Arc<Self>) {
        let mut state = self.state.lock().expect("state");
        if state.0 {
            return;
        }
        state.0 = true;
        self.changed.notify_all();
        let _ = self.changed.wait_timeout_while(state, Duration::from_secs(20), |state| !state.1).expect("state");
    }
}

#[test]
fn an_append_waiting_behind_another_handles_append_fails_when_the_store_is_poisoned() {
    let _watchdog = watchdog("an_append_waiting_behind_another_handles_append_fails_when_the_store_is_poisoned", 40);
    let dir = temp_dir("attack4-order-poisoned");
    let plan = FaultPlan::new();
    let mut options = small_options(Backend::Portable);
    options.groups_in_flight_max = 1;
    options.faults = Some(plan.clone());
    let store = open(dir.path(), options).expect("the portable backend opens");
    let first = Arc::new(store.clone());
    let second = Arc::new(store.clone());
    for handle in [&*first, &*second] {
        handle
            .append("warm-up", ExpectedVersion::Any, [Event::new("Warm", "")])
            .expect("append")
            .wait()
            .expect("durable");
    }
    // A task whose waker holds the submitter thread.
    let holder = Arc::new(HoldingWaker::default());
    let _ticket = append_with_registered_waker(&store, || Event::new("Task", ""), &holder, 1000);
    drop(holder.changed.wait_while(holder.state.lock().expect("state"), |state| !state.0).expect("state"));

    // The submitter is held. From now on every group write fails.
    plan.fail_writes_after(0, libc::EIO);
    // The first handle queues three appends of 40 KiB (each group holds one: the third waits
    // for the failed write of the first, which poisons the store) and then one to `shared`.
    let big = vec![7u8; 40 << 10];
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(first.append("big", ExpectedVersion::Any, [Event::new("Big", big.clone())]).expect("append"));
    }
    queued.push(first.append("shared", ExpectedVersion::Any, [Event::new("First", "")]).expect("append"));
    // The second handle appends to `shared` too: it must come after the first handle's append.
    let (sender, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let result = second
            .append("shared", ExpectedVersion::Any, [Event::new("Second", "")])
            .and_then(|ticket| ticket.wait().map(drop));
        let _ = sender.send(result);
    });
    // Let the second handle's append reach its wait, then let the submitter go.
    std::thread::sleep(Duration::from_millis(300));
    {
        let mut state = holder.state.lock().expect("state");
        state.1 = true;
        holder.changed.notify_all();
    }
    let result = outcome.recv_timeout(Duration::from_secs(15)).expect(
        "the second handle's append never returned: it waits for an append the poisoned store will never place",
    );
    match result {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("the second handle's append on a poisoned store: {other:?}"),
    }
    for ticket in queued {
        assert!(ticket.wait().is_err(), "nothing is durable after the failed write");
    }
    assert!(matches!(store.close(), Err(Error::Poisoned { .. })));
}
