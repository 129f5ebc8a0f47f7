//! Async callers: tasks of a multi-thread executor (a small one here, as tokio's work stealing
//! would: a woken task runs on whichever worker is free) await tickets, so a task's appends are
//! made from different threads over its life, through the task's own handle, and some tasks
//! poll a ticket once and drop it (a `select!` that lost). A dropped pending ticket must not
//! leave its lane counted as waited on or its outcome behind, and a task that awaits must always
//! be woken: any lost wake-up hangs a task (the watchdog ends the test), any misordering fails
//! an exact expected version.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use evstore::{Backend, Event, ExpectedVersion, Store};
use evstore_tests::{check_log_shape, open, small_options, temp_dir, watchdog};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Task {
    future: Mutex<Option<BoxFuture>>,
    executor: Arc<Executor>,
}

#[derive(Default)]
struct Executor {
    queue: Mutex<VecDeque<Arc<Task>>>,
    ready: Condvar,
    alive: AtomicUsize,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        let executor = self.executor.clone();
        executor.queue.lock().expect("queue").push_back(self);
        executor.ready.notify_one();
    }
}

impl Executor {
    fn spawn(self: &Arc<Self>, future: impl Future<Output = ()> + Send + 'static) {
        self.alive.fetch_add(1, Ordering::SeqCst);
        Arc::new(Task { future: Mutex::new(Some(Box::pin(future))), executor: self.clone() }).wake();
    }

    fn work(self: &Arc<Self>) {
        loop {
            let task = {
                let mut queue = self.queue.lock().expect("queue");
                loop {
                    if let Some(task) = queue.pop_front() {
                        break task;
                    }
                    if self.alive.load(Ordering::SeqCst) == 0 {
                        return;
                    }
                    queue = self.ready.wait_timeout(queue, std::time::Duration::from_millis(10)).expect("queue").0;
                }
            };
            let mut slot = task.future.lock().expect("future");
            let Some(mut future) = slot.take() else { continue };
            let waker = Waker::from(task.clone());
            match future.as_mut().poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(()) => {
                    if self.alive.fetch_sub(1, Ordering::SeqCst) == 1 {
                        self.ready.notify_all();
                    }
                }
                Poll::Pending => *slot = Some(future),
            }
        }
    }
}

/// Polls `future` once, then drops it.
struct PollOnce<F>(Option<F>);

impl<F: Future + Unpin> Future for PollOnce<F> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(mut future) = self.0.take() {
            let _ = Pin::new(&mut future).poll(cx);
        }
        Poll::Ready(())
    }
}

#[test]
fn async_tasks_that_move_between_threads_and_drop_pending_tickets_all_finish() {
    let _watchdog = watchdog("async_tasks_that_move_between_threads_and_drop_pending_tickets_all_finish", 240);
    for backend in [Backend::IoUring, Backend::Portable] {
        let dir = temp_dir("attack4-async");
        let mut options = small_options(backend);
        options.segment_bytes = 32 << 20;
        let Some(store) = open(dir.path(), options) else { continue };
        let executor = Arc::new(Executor::default());
        const TASKS: usize = 64;
        const APPENDS: u64 = 200;
        for t in 0..TASKS {
            let store: Store = store.clone();
            executor.spawn(async move {
                let name = format!("task-{t}");
                let mut version = None::<u64>;
                for i in 0..APPENDS {
                    let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let ticket = store.append(&name, expected, [Event::new("E", format!("{i}"))]).expect("append");
                    version = Some(version.map_or(0, |v| v + 1));
                    if i % 3 == 1 {
                        // A `select!` that lost: polled once, dropped. The append still happens.
                        PollOnce(Some(ticket)).await;
                    } else {
                        let appended = ticket.await.expect("durable");
                        assert_eq!(Some(appended.version), version, "{name}");
                    }
                }
                // The last one, awaited: everything before it is durable too.
                let ticket = store.append(&name, ExpectedVersion::Exact(APPENDS - 1), [Event::new("E", "end")]);
                ticket.expect("append").await.expect("durable");
            });
        }
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let executor = executor.clone();
                std::thread::spawn(move || executor.work())
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker");
        }
        assert_eq!(check_log_shape(&store), TASKS as u64 * (APPENDS + 1));
        store.close().expect("close");
    }
}
