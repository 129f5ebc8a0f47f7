//! A ticket polled as a future counts as a blocked caller of its lane while it is pending (the
//! lane is then drained whole, at once). Futures polled once and then dropped, or kept pending
//! and polled again after their append became durable, or polled and then waited with `wait()`,
//! must all resolve correctly, and leave the lane's count of blocked callers as it was: an append
//! made through that handle afterwards, that nobody waits on, is still written within its linger
//! time (and a later `wait()` still wakes the submitter).
//!
//! Then large appends in the smallest ring (64 KiB: an append over 16 KiB goes to the heap, and
//! its entry takes a quarter of the ring): two such entries fill exactly half of the ring (not
//! "over half full": no early drain), three more than half; runs of them, mixed with small ones
//! around the ring's wrap, nobody waiting, with `linger` at 1 ms, 50 ms and in polling mode, must
//! all be written within a bounded time and read back in order.

use std::future::Future as _;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use evstore::{Event, ExpectedVersion, Options, Ticket};
use evstore_tests::{backends, open, read_stream, temp_dir, watchdog};

struct CountingWaker(std::sync::atomic::AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn poll_once(ticket: &mut Ticket, waker: &Waker) -> Poll<evstore::Result<evstore::Appended>> {
    std::pin::Pin::new(ticket).poll(&mut Context::from_waker(waker))
}

fn poll_until_done(ticket: &Ticket, bound: Duration, what: &str) {
    let started = Instant::now();
    while !ticket.is_done() {
        assert!(started.elapsed() < bound, "{what}: not durable after {:?}", started.elapsed());
        std::thread::sleep(Duration::from_micros(300));
    }
}

#[test]
fn futures_dropped_kept_or_waited_resolve_and_leave_no_blocked_caller() {
    let _watchdog = watchdog("futures_dropped_kept_or_waited_resolve_and_leave_no_blocked_caller", 60);
    for backend in backends() {
        let dir = temp_dir("attack6-futures");
        let mut options = Options::default();
        options.backend = backend;
        options.linger = Duration::from_millis(50);
        options.segment_bytes = 8 << 20;
        options.grow_segments = false;
        let Some(store) = open(dir.path(), options) else { continue };
        let waker_state = Arc::new(CountingWaker(Default::default()));
        let waker = Waker::from(waker_state.clone());
        let mut version = 0u64;
        for round in 0..12u64 {
            let mut kept = store.append("s", expected(version as usize), [Event::new("E", "k")]).expect("append");
            let mut dropped =
                store.append("s", ExpectedVersion::Exact(version), [Event::new("E", "d")]).expect("append");
            version += 2;
            let _ = poll_once(&mut kept, &waker);
            let _ = poll_once(&mut dropped, &waker);
            drop(dropped);
            match round % 3 {
                // Poll again until ready (the waker only counts; poll in a loop).
                0 => loop {
                    if let Poll::Ready(outcome) = poll_once(&mut kept, &waker) {
                        assert_eq!(outcome.expect("durable").version, version - 2, "round {round}");
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(100));
                },
                // Then wait().
                1 => assert_eq!(kept.wait().expect("durable").version, version - 2, "round {round}"),
                // Polled once, then left pending (dropped unfinished).
                _ => drop(kept),
            }
            // Nobody waits on this one: it goes at its linger time, not never (a blocked count left
            // behind would not hang it, but a negative or stuck count must not break anything).
            let lone = store.append("s", ExpectedVersion::Exact(version - 1), [Event::new("E", "l")]).expect("append");
            version += 1;
            poll_until_done(&lone, Duration::from_secs(5), &format!("{backend:?}, round {round}"));
            assert_eq!(lone.wait().expect("durable").version, version - 1);
        }
        // A final wait() is answered at once, lingering or not.
        let last = store.append("s", ExpectedVersion::Exact(version - 1), [Event::new("E", "w")]).expect("append");
        assert_eq!(last.wait().expect("durable").version, version);
        assert_eq!(read_stream(&store, "s").len() as u64, version + 1);
        store.close().expect("close");
    }
}

#[test]
fn large_appends_in_the_smallest_ring_are_written_without_a_waiter() {
    let _watchdog = watchdog("large_appends_in_the_smallest_ring_are_written_without_a_waiter", 60);
    for backend in backends() {
        for (linger, polling) in
            [(Duration::from_millis(1), false), (Duration::from_millis(50), false), (Duration::from_millis(50), true)]
        {
            let what = format!("{backend:?}, linger {linger:?}, polling {polling}");
            let dir = temp_dir("attack6-indirect");
            let mut options = Options::default();
            options.backend = backend;
            options.linger = linger;
            options.polling = polling;
            options.queue_bytes = 64 << 10;
            options.segment_bytes = 4 << 20;
            options.group_bytes_max = 64 << 10;
            options.grow_segments = false;
            let Some(store) = open(dir.path(), options) else { continue };
            let mut count = 0usize;
            // Runs of 1, 2, 3, 4, 5 large appends, each run followed by small ones that walk the
            // ring's tail around its wrap; nobody waits, the last ticket is only polled.
            for run in 1..=5usize {
                for _ in 0..3 {
                    let mut last = None;
                    for _ in 0..run {
                        let data = vec![count as u8; 20_000];
                        last = Some(store.append("big", expected(count), [Event::new("E", data)]));
                        count += 1;
                    }
                    for small in 0..(run * 37) % 50 {
                        let data = vec![count as u8; 100 + small * 13];
                        last = Some(store.append("big", expected(count), [Event::new("E", data)]));
                        count += 1;
                    }
                    let last = last.expect("a run").expect("append");
                    poll_until_done(&last, linger * 4 + Duration::from_secs(3), &what);
                    assert_eq!(last.wait().unwrap_or_else(|e| panic!("{what}: {e}")).version + 1, count as u64);
                }
            }
            let events = read_stream(&store, "big");
            assert_eq!(events.len(), count, "{what}");
            for (i, event) in events.iter().enumerate() {
                assert!(event.data.iter().all(|&b| b == i as u8), "{what}: event {i}");
            }
            store.close().expect("close");
        }
    }
}

/// `Exact(count - 1)`, or `NoStream` for the first append.
fn expected(count: usize) -> ExpectedVersion {
    match count {
        0 => ExpectedVersion::NoStream,
        _ => ExpectedVersion::Exact(count as u64 - 1),
    }
}
