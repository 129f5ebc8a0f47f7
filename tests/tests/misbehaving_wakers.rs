//! Wakers are the caller's code, and the submitter thread calls them. A waker that panics, or one
//! that polls its task inline (as some executors do), must neither take the store down nor hang
//! other waiters: before this was guarded, a panicking waker killed the submitter silently (later
//! appends were accepted and never resolved) and an inline poll deadlocked it on the waker list.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use evstore::{Event, ExpectedVersion, Store, Ticket};
use evstore_tests::{append_one, backends, open, small_options, temp_dir, watchdog};

struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("this waker panics on purpose");
    }
}

/// Polls the ticket it holds, from inside `wake`, on whatever thread wakes it.
struct InlinePollingWaker {
    ticket: Mutex<Option<Ticket>>,
    polls: AtomicUsize,
}

impl Wake for InlinePollingWaker {
    fn wake(self: Arc<Self>) {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let waker = Waker::from(self.clone());
        let mut slot = self.ticket.lock().expect("ticket slot");
        if let Some(ticket) = slot.as_mut() {
            if Pin::new(ticket).poll(&mut Context::from_waker(&waker)).is_ready() {
                *slot = None;
            }
        }
    }
}

fn append(store: &Store, i: u8) -> Ticket {
    store.append("wakers", ExpectedVersion::Any, [Event::new("E", vec![i])]).expect("append")
}

#[test]
fn a_panicking_waker_does_not_stop_the_store() {
    let _watchdog = watchdog("a_panicking_waker_does_not_stop_the_store", 30);
    for backend in backends() {
        let dir = temp_dir("panicking-waker");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        let mut ticket = append(&store, 0);
        let waker = Waker::from(Arc::new(PanickingWaker));
        // Whether it is pending (the waker is registered and will panic) or already durable,
        // the store must go on working.
        let _ = Pin::new(&mut ticket).poll(&mut Context::from_waker(&waker));
        for i in 1..50 {
            append_one(&store, "wakers", ExpectedVersion::Any, &[i]).expect("appends after a panicking waker");
        }
        assert!(ticket.wait().is_ok(), "the ticket whose waker panicked still resolves");
        assert_eq!(store.read_stream("wakers", 0).expect("read").count(), 50);
        store.close().expect("a clean close");
    }
}

#[test]
fn a_waker_that_polls_inline_does_not_deadlock() {
    let _watchdog = watchdog("a_waker_that_polls_inline_does_not_deadlock", 30);
    for backend in backends() {
        let dir = temp_dir("inline-waker");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        for round in 0..50u8 {
            // The earlier append nearly fills a group (64 KiB in these options), so the later
            // one goes into the next group, and the earlier group's publication wakes the later
            // ticket's waker (registered before its append was placed) while that append is not
            // durable yet: the inline poll registers again, from inside the submitter's wake-up.
            let earlier = store
                .append("wakers-big", ExpectedVersion::Any, [Event::new("Big", vec![round; 60_000])])
                .expect("append");
            let waker =
                Arc::new(InlinePollingWaker { ticket: Mutex::new(Some(append(&store, round))), polls: 0.into() });
            waker.clone().wake();
            earlier.wait().expect("the earlier append");
            append_one(&store, "wakers", ExpectedVersion::Any, &[round]).expect("appends while a waker polls inline");
            // The later append is durable now, but the submitter may call the inline waker just
            // after it woke this thread: wait for the inline poll to see it (the watchdog turns a
            // waker that is never called, or a deadlock, into a failure).
            while waker.ticket.lock().expect("ticket slot").is_some() {
                std::thread::yield_now();
            }
            assert!(waker.polls.load(Ordering::SeqCst) >= 1);
        }
        store.close().expect("a clean close");
    }
}
