//! Appends to one stream through different handles are placed in call order (the cross-lane
//! order table): an `ExpectedVersion::Exact` chain built without waiting holds across handles.
//! Since the submitter drains a lane only when someone waits on it, an append ordered behind
//! another handle's append that nobody waits on raises that lane's drain mark; without it each
//! such append would wait for the other lane's linger time.
//!
//! With `linger` = 1 s, two handles take turns on one stream (and, on a second pair, on two
//! streams that share an order-table bucket), 300 appends each, chained with `Exact` versions,
//! no ticket waited on until the end: every append succeeds with the next version, and the
//! appending does not take a linger time per turn (the bound is two linger times for all 600
//! turns). Then four threads, each with its own handle, append to one stream with `Any`: each
//! thread's events are in the stream in its call order.

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use evstore::{Backend, Event, ExpectedVersion, Options, Store, Ticket};
use evstore_tests::{open, read_stream, temp_dir, watchdog};

const LINGER: Duration = Duration::from_secs(1);
const TURNS: u64 = 300;

fn options(backend: Backend) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.linger = LINGER;
    options.segment_bytes = 8 << 20;
    options.group_bytes_max = 256 << 10;
    options.grow_segments = false;
    options
}

/// The order table's bucket of `stream`, as the engine computes it (log/index.rs and
/// write/lane.rs); only used to pick two colliding names.
fn bucket(stream: &str) -> u64 {
    (foldhash::fast::FixedState::with_seed(0x5eed_e7e5_70e0_0001).hash_one(stream.as_bytes()) >> 40) % 4096
}

/// Two distinct stream names in one order-table bucket.
fn colliding_streams() -> (String, String) {
    let mut seen = std::collections::HashMap::new();
    for i in 0.. {
        let name = format!("collide-{i}");
        if let Some(other) = seen.insert(bucket(&name), name.clone()) {
            return (other, name);
        }
    }
    unreachable!()
}

fn open_store(dir: &std::path::Path) -> Store {
    match open(dir, options(Backend::IoUring)) {
        Some(store) => store,
        None => open(dir, options(Backend::Portable)).expect("the portable backend opens"),
    }
}

#[test]
fn exact_chains_alternating_between_handles_hold_without_a_linger_per_turn() {
    let _watchdog = watchdog("exact_chains_alternating_between_handles_hold_without_a_linger_per_turn", 60);
    let dir = temp_dir("attack6-chains");
    let store = open_store(dir.path());
    let handles = [store.clone(), store.clone()];
    let (x, y) = colliding_streams();
    println!("streams {x} and {y} share an order bucket");
    let started = Instant::now();
    let mut tickets: Vec<(Ticket, &str, u64)> = Vec::new();
    // One stream, two handles taking turns.
    for v in 0..TURNS {
        let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v - 1) };
        let handle = &handles[v as usize % 2];
        let ticket = handle.append("chain", expected, [Event::new("E", format!("{v}"))]).expect("append");
        tickets.push((ticket, "chain", v));
    }
    // Two streams of one bucket: handle 0 only on `x`, handle 1 only on `y`.
    for v in 0..TURNS {
        let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v - 1) };
        for (handle, stream) in [(&handles[0], x.as_str()), (&handles[1], y.as_str())] {
            let ticket = handle.append(stream, expected, [Event::new("E", format!("{v}"))]).expect("append");
            tickets.push((ticket, stream, v));
        }
    }
    let appending = started.elapsed();
    for (ticket, stream, v) in tickets {
        let appended = ticket.wait().unwrap_or_else(|e| panic!("{stream} version {v}: {e}"));
        assert_eq!(appended.version, v, "{stream}: the chain broke");
    }
    println!("{} turns appended in {appending:?}, durable after {:?}", 3 * TURNS, started.elapsed());
    for stream in ["chain", x.as_str(), y.as_str()] {
        let events = read_stream(&store, stream);
        assert_eq!(events.len() as u64, TURNS, "{stream}");
        for (v, event) in events.iter().enumerate() {
            assert_eq!(event.data, format!("{v}").into_bytes(), "{stream} version {v}");
        }
    }
    assert!(
        appending < LINGER * 2,
        "{} appends taking turns between two handles took {appending:?} with linger {LINGER:?}: \
         an append ordered behind another handle's waited for that handle's linger",
        3 * TURNS
    );
    drop(handles);
    store.close().expect("close");
}

#[test]
fn threads_with_their_own_handles_keep_their_call_order_on_one_stream() {
    let _watchdog = watchdog("threads_with_their_own_handles_keep_their_call_order_on_one_stream", 60);
    let dir = temp_dir("attack6-order");
    let store = open_store(dir.path());
    let started = Instant::now();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let tickets: Vec<_> = (0..200u32)
                    .map(|i| {
                        if i % 50 == 0 {
                            std::thread::yield_now();
                        }
                        store
                            .append("shared", ExpectedVersion::Any, [Event::new("E", format!("{t}:{i}"))])
                            .expect("append")
                    })
                    .collect();
                for ticket in tickets {
                    ticket.wait().expect("durable");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("producer");
    }
    let elapsed = started.elapsed();
    let mut next = [0u32; 4];
    for event in read_stream(&store, "shared") {
        let text = String::from_utf8(event.data).expect("utf-8");
        let (t, i) = text.split_once(':').expect("t:i");
        let (t, i): (usize, u32) = (t.parse().expect("t"), i.parse().expect("i"));
        assert_eq!(i, next[t], "thread {t}'s events out of call order");
        next[t] += 1;
    }
    assert_eq!(next, [200; 4]);
    println!("4 x 200 appends to one stream through 4 handles: {elapsed:?}");
    assert!(elapsed < LINGER * 4, "{elapsed:?} with linger {LINGER:?}: appends waited for other lanes' lingers");
    store.close().expect("close");
}
