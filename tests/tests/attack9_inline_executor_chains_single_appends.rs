//! `Options::poll_small_writes`: the submitter publishes small groups (and so wakes tasks) from
//! inside its polls (`poll_io` reaps completions in its loop). An executor whose waker polls the
//! task inline then runs the task on the submitter thread, in the middle of that poll: the most
//! ordinary task appends its next single event and polls its ticket (registering the same
//! waker), so every append of the chain is made, and waited on, from the submitter thread while
//! it spins; the task drops its clone of the store on that thread when done, racing the side
//! thread below for the last drop (the test's own clone is dropped as soon as the chain starts).
//!
//! Every append of the chain must resolve (no lost wake-up: the chain would stop, and the test
//! fail on its bound), the store must close on its own (the directory lock is released, a
//! reopen succeeds) and hold the whole chain. Both backends, the option on and off; alongside,
//! a thread appends one event and waits, so that groups are small and in flight meanwhile.

use std::future::Future as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use evstore::{Backend, Event, ExpectedVersion, Options, Store, Ticket};
use evstore_tests::{backends, open, read_stream, reopen_when_unlocked, small_options, temp_dir, watchdog};

const CHAIN: u64 = 4000;
const BOUND: Duration = Duration::from_secs(60);

fn options(backend: Backend, poll_small_writes: bool) -> Options {
    small_options(backend).poll_small_writes(poll_small_writes)
}

struct Task {
    store: Option<Store>,
    ticket: Option<Ticket>,
    next: u64,
    done: Option<mpsc::Sender<Result<u64, String>>>,
    /// Set as the task ends: the side thread stops and drops its clone.
    ended: Arc<AtomicBool>,
}

/// A task that appends version `next` of "chain", awaits it, and appends the next, until
/// `CHAIN`; its waker polls it inline, on whatever thread wakes it.
struct InlineTask(Mutex<Task>);

impl InlineTask {
    fn run(self: &Arc<Self>) {
        let waker = Waker::from(self.clone());
        let mut context = Context::from_waker(&waker);
        let mut task = self.0.lock().expect("task");
        loop {
            let Some(ticket) = task.ticket.as_mut() else { return };
            match std::pin::Pin::new(ticket).poll(&mut context) {
                Poll::Pending => return,
                Poll::Ready(outcome) => {
                    task.ticket = None;
                    let version = task.next;
                    if let Err(e) = outcome.map_err(|e| e.to_string()).and_then(|appended| {
                        if appended.version == version {
                            Ok(())
                        } else {
                            Err(format!("append {version} got version {}", appended.version))
                        }
                    }) {
                        task.store = None;
                        let _ = task.done.take().expect("not done yet").send(Err(e));
                        return;
                    }
                    task.next += 1;
                    if task.next == CHAIN {
                        // Perhaps the last clone: dropped on the submitter thread.
                        task.ended.store(true, Ordering::SeqCst);
                        task.store = None;
                        let _ = task.done.take().expect("not done yet").send(Ok(task.next));
                        return;
                    }
                    let next = task.next;
                    let store = task.store.as_ref().expect("store");
                    match store.append(
                        "chain",
                        ExpectedVersion::Exact(next - 1),
                        [Event::new("E", next.to_le_bytes().to_vec())],
                    ) {
                        Ok(ticket) => task.ticket = Some(ticket),
                        Err(e) => {
                            task.store = None;
                            let _ = task.done.take().expect("not done yet").send(Err(format!("append {next}: {e}")));
                            return;
                        }
                    }
                }
            }
        }
    }
}

impl Wake for InlineTask {
    fn wake(self: Arc<Self>) {
        self.run();
    }
}

#[test]
fn a_task_polled_inline_by_the_submitter_chains_single_appends() {
    let _watchdog = watchdog("a_task_polled_inline_by_the_submitter_chains_single_appends", 300);
    for backend in backends() {
        for poll_small_writes in [true, false] {
            let what = format!("{backend:?}, poll_small_writes {poll_small_writes}");
            let dir = temp_dir("attack9-inline-chain");
            let Some(store) = open(dir.path(), options(backend, poll_small_writes)) else { continue };
            // Alongside: one event appended and waited, again and again, until the chain ends.
            let ended = Arc::new(AtomicBool::new(false));
            let side = {
                let store = store.clone();
                let ended = ended.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !ended.load(Ordering::SeqCst) && n < 50_000 {
                        store
                            .append("side", ExpectedVersion::Any, [Event::new("E", "s")])
                            .and_then(Ticket::wait)
                            .expect("side append");
                        n += 1;
                        std::thread::sleep(Duration::from_micros(n % 200));
                    }
                    n
                })
            };
            let (done, finished) = mpsc::channel();
            let first =
                store.append("chain", ExpectedVersion::NoStream, [Event::new("E", 0u64.to_le_bytes().to_vec())]);
            let task = Arc::new(InlineTask(Mutex::new(Task {
                store: Some(store.clone()),
                ticket: Some(first.expect("first append")),
                next: 0,
                done: Some(done),
                ended: ended.clone(),
            })));
            task.run();
            drop(task);
            drop(store);
            let outcome = finished
                .recv_timeout(BOUND)
                .unwrap_or_else(|e| panic!("{what}: the chain stopped: no wake-up for a pending append ({e:?})"));
            assert_eq!(outcome.unwrap_or_else(|e| panic!("{what}: {e}")), CHAIN, "{what}");
            let side_appends = side.join().expect("side thread");
            let store = reopen_when_unlocked(dir.path(), options(backend, poll_small_writes));
            let chain = read_stream(&store, "chain");
            assert_eq!(chain.len() as u64, CHAIN, "{what}: the chain after a reopen");
            for (version, event) in chain.iter().enumerate() {
                assert_eq!(event.data, (version as u64).to_le_bytes(), "{what}: version {version}");
            }
            assert_eq!(read_stream(&store, "side").len() as u64, side_appends, "{what}: side events");
            store.close().expect("close");
        }
    }
}
