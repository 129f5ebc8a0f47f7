//! Reads racing appends: while writers append to a few streams without waiting for each append,
//! readers tailing the same streams must never get an error, and must get each stream's events as
//! contiguous versions from the version they asked for, each with the data that was written. The
//! stream table learns a record's location when the submitter places it in a group, before the
//! group is written, so a reader can be handed the location of a record that is not on disk yet.
//! Without this, a reader decoded such a record (zeros, or a group still being written) before
//! comparing its position with the durable watermark and returned
//! `Corrupted("record length 0 out of range")` for a store that was perfectly fine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evstore::{Backend, Event, ExpectedVersion, Store};
use evstore_tests::{backends, open, payload, small_options, temp_dir, watchdog, Rng};

const STREAMS: usize = 4;
const WRITERS: usize = 2;
const READERS: usize = 3;
/// How long the writers append, per backend.
const RUN: Duration = Duration::from_secs(2);
/// Appends a writer keeps unresolved before it waits for the oldest.
const WINDOW: usize = 64;
const SEED: u64 = 7;

fn stream_name(stream: usize) -> String {
    format!("race-{stream}")
}

/// Appends to its own streams (writer `w` owns streams `w`, `w + WRITERS`, ...), so each stream's
/// versions follow the order of its writer's appends; returns how many it appended per stream.
fn writer(store: Store, w: usize, stop: Arc<AtomicBool>) -> Vec<(usize, u64)> {
    let streams: Vec<usize> = (w..STREAMS).step_by(WRITERS).collect();
    let mut next = vec![0u64; streams.len()];
    let mut tickets = std::collections::VecDeque::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let k = i % streams.len();
        let name = stream_name(streams[k]);
        let event = Event::new("Raced", payload(&name, next[k], SEED));
        let expected = next[k].checked_sub(1).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        tickets.push_back(store.append(&name, expected, [event]).expect("append"));
        next[k] += 1;
        i += 1;
        if tickets.len() > WINDOW {
            tickets.pop_front().expect("a ticket").wait().expect("durable");
        }
    }
    for ticket in tickets {
        ticket.wait().expect("durable");
    }
    streams.into_iter().zip(next).collect()
}

struct ReadStats {
    reads: u64,
    events: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Tails random streams: reads from a little before the last version it saw, and checks what
/// comes back.
fn reader(store: Store, r: usize, stop: Arc<AtomicBool>, seen: Arc<[AtomicU64; STREAMS]>) -> ReadStats {
    let mut rng = Rng::new(SEED ^ (r as u64 + 1) << 32);
    let mut stats = ReadStats { reads: 0, events: 0, errors: 0, first_error: None };
    while !stop.load(Ordering::Relaxed) {
        let stream = rng.below(STREAMS as u64) as usize;
        let name = stream_name(stream);
        let known = seen[stream].load(Ordering::Relaxed);
        let from = known.saturating_sub(rng.below(4));
        stats.reads += 1;
        let mut expected = from;
        for event in store.read_stream(&name, from).expect("read_stream") {
            let problem = match event {
                Err(e) => Some(format!("read_stream({name}, {from}) failed at version {expected}: {e}")),
                Ok(event) if event.version != expected || event.stream != name => Some(format!(
                    "read_stream({name}, {from}): expected version {expected}, got {}@{}",
                    event.stream, event.version
                )),
                Ok(event) if event.data != payload(&name, expected, SEED) => {
                    Some(format!("read_stream({name}, {from}): wrong data at version {expected}"))
                }
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                stats.errors += 1;
                stats.first_error.get_or_insert(problem);
                break;
            }
            expected += 1;
            stats.events += 1;
        }
        seen[stream].fetch_max(expected, Ordering::Relaxed);
    }
    stats
}

fn race(backend: Backend) {
    let dir = temp_dir("reads-racing");
    let Some(store) = open(dir.path(), small_options(backend)) else { return };
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new([(); STREAMS].map(|()| AtomicU64::new(0)));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || writer(store, w, stop))
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (store, stop, seen) = (store.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || reader(store, r, stop, seen))
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < RUN {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let written: Vec<(usize, u64)> = writers.into_iter().flat_map(|w| w.join().expect("writer")).collect();
    let stats: Vec<ReadStats> = readers.into_iter().map(|r| r.join().expect("reader")).collect();
    let reads: u64 = stats.iter().map(|s| s.reads).sum();
    let events: u64 = stats.iter().map(|s| s.events).sum();
    let errors: u64 = stats.iter().map(|s| s.errors).sum();
    println!("{backend:?}: {reads} reads returned {events} events; {errors} went wrong");
    let first = stats.iter().find_map(|s| s.first_error.clone());
    assert_eq!(
        errors,
        0,
        "{backend:?}: {errors} of {reads} reads went wrong; the first: {}",
        first.unwrap_or_default()
    );
    // Everything written reads back once the writers are done.
    for (stream, count) in written {
        let name = stream_name(stream);
        let versions: Vec<u64> =
            store.read_stream(&name, 0).expect("read").map(|e| e.expect("event").version).collect();
        assert_eq!(versions, (0..count).collect::<Vec<_>>(), "{backend:?}: {name} after the race");
    }
    store.close().expect("close");
}

#[test]
fn reads_racing_appends_see_only_durable_events() {
    let _watchdog = watchdog("reads_racing_appends_see_only_durable_events", 120);
    for backend in backends() {
        race(backend);
    }
}
