//! Appends to one stream through different handles (one thread using two handles, or an async
//! task that moves between threads and handles) must be placed in call order, or an append with
//! the expected version its caller just made would be refused: the cross-lane order table
//! keeps it. Here one thread alternates three handles on one stream with exact expected
//! versions and never waits until the end; then a "task" hops between threads, each with its own
//! handle, passing the stream along through a channel. Every append must succeed, in order.

use std::sync::mpsc;

use evstore::{Backend, Event, ExpectedVersion};
use evstore_tests::{open, read_stream, small_options, temp_dir, watchdog};

const APPENDS: u64 = 20_000;

#[test]
fn appends_through_alternating_handles_keep_their_call_order() {
    let _watchdog = watchdog("appends_through_alternating_handles_keep_their_call_order", 240);
    for backend in [Backend::IoUring, Backend::Portable] {
        let dir = temp_dir("attack4-alternating");
        let mut options = small_options(backend);
        options.segment_bytes = 16 << 20;
        let Some(store) = open(dir.path(), options) else { continue };
        let handles = [store.clone(), store.clone(), store.clone()];
        let mut tickets = Vec::new();
        for v in 0..APPENDS {
            let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v - 1) };
            // An irregular pattern, so that runs on one handle alternate with switches.
            let handle = &handles[((v * v + v / 3) % 3) as usize];
            tickets.push(handle.append("one", expected, [Event::new("E", format!("{v}"))]).expect("append"));
        }
        for (v, ticket) in tickets.into_iter().enumerate() {
            assert_eq!(ticket.wait().unwrap_or_else(|e| panic!("append {v}: {e}")).version, v as u64);
        }

        // The hopping task: each hop appends through the hop thread's own handle, no waiting.
        let hops = 8;
        let (first_sender, mut receiver) = mpsc::channel::<(u64, Vec<evstore::Ticket>)>();
        let mut threads = Vec::new();
        for _ in 0..hops {
            let (sender, next) = mpsc::channel();
            let handle = store.clone();
            let input = std::mem::replace(&mut receiver, next);
            threads.push(std::thread::spawn(move || {
                for (v, mut tickets) in input {
                    let ticket = handle
                        .append("hop", ExpectedVersion::Exact(v), [Event::new("Hop", format!("{}", v + 1))])
                        .expect("append");
                    tickets.push(ticket);
                    if sender.send((v + 1, tickets)).is_err() {
                        break;
                    }
                }
            }));
        }
        let first = store.append("hop", ExpectedVersion::NoStream, [Event::new("Hop", "0")]).expect("append");
        first_sender.send((0, vec![first])).expect("send");
        let mut last = 0;
        let mut all = Vec::new();
        // Around the ring of threads a few hundred times.
        for _ in 0..400 {
            let (v, tickets) = receiver.recv().expect("hop");
            last = v;
            if v >= 2_000 {
                all = tickets;
                break;
            }
            first_sender.send((v, tickets)).expect("send");
        }
        drop(first_sender);
        for t in threads {
            t.join().expect("hop thread");
        }
        for (v, ticket) in all.into_iter().enumerate() {
            assert_eq!(ticket.wait().unwrap_or_else(|e| panic!("hop {v}: {e}")).version, v as u64);
        }
        assert!(last > 0);
        let events = read_stream(&store, "one");
        assert_eq!(events.len() as u64, APPENDS);
        drop(handles);
        store.close().expect("close");
    }
}
