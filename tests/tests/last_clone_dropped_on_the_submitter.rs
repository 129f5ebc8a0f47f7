//! The last `Store` clone may be dropped on the submitter thread itself: an executor whose waker
//! polls the task inline runs the task there, and a task that owns the last clone drops it when
//! its append resolves. The drop must not panic, and the directory must stay locked until that
//! submitter has finished writing what was queued: a second `Store::open` returns
//! `Error::Locked` until then, and once it succeeds it sees every acknowledged append. Without
//! this, the drop tried to join the submitter thread from itself (a panic, swallowed as a
//! panicking waker), released the directory lock on the way out while the old submitter went on
//! writing the queued appends, and a second store opened the directory under it: appends the old
//! submitter acknowledged afterwards were missing from the new store, and later from the disk.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use evstore::{Backend, Error, Event, ExpectedVersion, Store, Ticket};
use evstore_tests::{backends, open, read_all, small_options, temp_dir, watchdog};

/// Appends queued behind the task's append: work the submitter still has when the last clone
/// is dropped.
const BEHIND: usize = 3000;

/// A waker that holds the submitter thread (which calls it) until the test opens the gate, so
/// that the test can queue appends and poll the task while nothing becomes durable.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    fn wait_until_held(&self) {
        let state = self.state.lock().expect("gate");
        drop(self.changed.wait_while(state, |(held, _)| !*held).expect("gate"));
    }

    fn open(&self) {
        self.state.lock().expect("gate").1 = true;
        self.changed.notify_all();
    }
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        let mut state = self.state.lock().expect("gate");
        state.0 = true;
        self.changed.notify_all();
        drop(self.changed.wait_while(state, |(_, open)| !*open).expect("gate"));
    }
}

/// A task that owns the last clone of the store and drops it when its append resolves.
struct LastClone {
    store: Option<Store>,
    ticket: Ticket,
}

impl Future for LastClone {
    /// The append's outcome and the thread the store was dropped on.
    type Output = (evstore::Result<evstore::Appended>, String);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.ticket).poll(cx) {
            Poll::Ready(outcome) => {
                let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
                drop(self.store.take());
                Poll::Ready((outcome, thread))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// An executor of one task whose waker polls the task inline, on the thread that wakes it.
struct InlineExecutor {
    task: Mutex<Option<Pin<Box<LastClone>>>>,
    outcome: Mutex<Option<(evstore::Result<evstore::Appended>, String)>>,
    panic: Mutex<Option<String>>,
}

impl Wake for InlineExecutor {
    fn wake(self: Arc<Self>) {
        let waker = Waker::from(self.clone());
        let mut slot = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(task) = slot.as_mut() else { return };
        match std::panic::catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(&mut Context::from_waker(&waker)))) {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(outcome)) => {
                *slot = None;
                *self.outcome.lock().expect("outcome") = Some(outcome);
            }
            Err(panic) => {
                *slot = None;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                *self.panic.lock().expect("panic") = Some(message);
            }
        }
    }
}

/// Live threads of this process named like the submitter (`comm` keeps 15 bytes of the name).
fn submitter_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("evstore-submit"))
        .count()
}

fn data(tag: &str, i: usize, bytes: usize) -> Vec<u8> {
    let mut data = format!("{tag} {i}:").into_bytes();
    data.resize(bytes, b'.');
    data
}

/// One round; `None` if the gate's append was durable before its waker was registered (then
/// the submitter cannot be held, and the round is tried again).
fn round(backend: Backend) -> Option<Vec<String>> {
    let dir = temp_dir("drop-on-submitter");
    // The handle's queue must hold every append queued while the gate holds the submitter
    // (3,000 of about 1 KiB): with the default 256 KiB ring, the test's own thread blocked on
    // the full queue (backpressure, as documented) before it could open the gate, and hung.
    let mut options = small_options(backend);
    options.queue_bytes = 8 << 20;
    let store = open(dir.path(), options)?;
    let append = |stream: &str, data: Vec<u8>| {
        store.append(stream, ExpectedVersion::Any, [Event::new("E", data)]).expect("append")
    };
    let mut tickets: Vec<(Vec<u8>, Ticket)> = Vec::new();
    let gate_data = data("gate", 0, 60_000);
    let mut gate_ticket = append("gate", gate_data.clone());
    let gate = Arc::new(Gate::default());
    if Pin::new(&mut gate_ticket).poll(&mut Context::from_waker(&Waker::from(gate.clone()))).is_ready() {
        println!("{backend:?}: the gate's append was durable before its waker was registered; trying again");
        return None;
    }
    tickets.push((gate_data, gate_ticket));
    gate.wait_until_held();

    // The submitter is held: nothing below becomes durable until the gate opens.
    let task_data = data("task", 0, 10);
    let task_ticket = append("task", task_data.clone());
    for i in 0..BEHIND {
        let data = data("behind", i, 1_000);
        tickets.push((data.clone(), append(&format!("behind-{}", i % 4), data)));
    }
    assert_eq!(submitter_threads(), 1, "only this store's submitter runs");
    // The task takes the last clone; its first poll registers the inline waker.
    let executor = Arc::new(InlineExecutor {
        task: Mutex::new(Some(Box::pin(LastClone { store: Some(store.clone()), ticket: task_ticket }))),
        outcome: Mutex::new(None),
        panic: Mutex::new(None),
    });
    executor.clone().wake();
    assert!(executor.task.lock().expect("task").is_some(), "the task's append cannot be durable yet");
    drop(store);
    gate.open();

    // Try to open the directory again until it works.
    let second = loop {
        match Store::open(dir.path(), small_options(backend)) {
            Err(Error::Locked { .. }) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Ok(second) => break second,
            Err(other) => panic!("{backend:?}: second open: {other:?}"),
        }
    };
    let pending_at_open = tickets.iter().filter(|(_, ticket)| !ticket.is_done()).count();
    let old_submitter_alive = submitter_threads() > 1;

    let mut problems = Vec::new();
    if let Some(message) = executor.panic.lock().expect("panic").take() {
        problems.push(format!("dropping the last clone on the submitter thread panicked: {message}"));
    }
    let mut acknowledged = Vec::new();
    match executor.outcome.lock().expect("outcome").take() {
        Some((Ok(_), thread)) => {
            if !thread.starts_with("evstore-submit") {
                println!("{backend:?}: the waker was called on thread {thread}, so the last clone was dropped there");
            }
            acknowledged.push(task_data);
        }
        Some((Err(e), _)) => problems.push(format!("the task's append failed: {e}")),
        None if problems.is_empty() => problems.push("the task never completed".into()),
        None => {}
    }
    if pending_at_open > 0 {
        problems.push(format!(
            "the second open succeeded while {pending_at_open} appends of the first store were still pending \
             (its submitter thread {} alive)",
            if old_submitter_alive { "still" } else { "no longer" }
        ));
    }
    for (data, ticket) in tickets {
        if ticket.wait().is_ok() {
            acknowledged.push(data);
        }
    }
    let missing = |store: &Store| {
        let present: BTreeSet<Vec<u8>> = read_all(store).into_iter().map(|e| e.data).collect();
        acknowledged.iter().filter(|data| !present.contains(*data)).count()
    };
    let missing_second = missing(&second);
    if missing_second > 0 {
        problems.push(format!(
            "{missing_second} of {} acknowledged appends are missing from the second store",
            acknowledged.len()
        ));
    }
    second.close().expect("close the second store");
    match Store::open(dir.path(), small_options(backend)) {
        Ok(third) => {
            let missing_third = missing(&third);
            third.close().expect("close the third store");
            if missing_third > 0 {
                problems.push(format!(
                    "{missing_third} of {} acknowledged appends are missing after one more reopen",
                    acknowledged.len()
                ));
            }
        }
        Err(e) => problems.push(format!("one more reopen fails: {e}")),
    }
    Some(problems)
}

#[test]
fn the_last_clone_dropped_on_the_submitter_keeps_the_directory_locked() {
    let _watchdog = watchdog("the_last_clone_dropped_on_the_submitter_keeps_the_directory_locked", 120);
    for backend in backends() {
        let problems = (0..5).find_map(|_| round(backend)).expect("the gate never held the submitter");
        assert!(problems.is_empty(), "{backend:?}:\n{}", problems.join("\n"));
    }
}
