//! The seed's client, written once for every system: each producer thread takes the next stream
//! from a shared counter, appends that stream's events one call per event without waiting, then
//! waits for all of them, then takes the next stream.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use evstore::{Event, ExpectedVersion, Store, Ticket};
use hdrhistogram::Histogram;

use crate::progress::Progress;
use crate::report::histogram;

/// The seed's event: type and JSON data (38 bytes).
pub const EVENT_TYPE: &str = "ItemCreated";
pub const EVENT_DATA: &[u8] = br#"{"Type":"ItemCreated","ItemId":"1324"}"#;

/// A system as the seed's client sees it: append now, learn about durability later.
pub trait Client: Sync {
    /// What each producer thread appends through (a store handle, a channel sender).
    type Producer;
    /// What an append hands back and the caller later waits on.
    type Pending;

    fn producer(&self) -> Self::Producer;
    fn append(&self, producer: &Self::Producer, stream: &str) -> Result<Self::Pending, String>;
    /// Returns once the append is durable (or has failed); `Ok(true)` when it had to block,
    /// `Ok(false)` when the outcome was already known.
    fn wait(&self, pending: Self::Pending) -> Result<bool, String>;
}

/// The seed workload's shape.
#[derive(Clone, Copy)]
pub struct Shape {
    pub streams: usize,
    pub events_per_stream: usize,
    pub producers: usize,
}

/// Runs the workload on streams `{prefix}{i}`. Returns the wall time and the latency of every
/// event in microseconds: from just before its `append` call (or one of the 15 before it) to the return of the wait that told
/// the caller. Tickets are waited in order, so one that became durable early is counted when the
/// caller learns about it — which is what a caller of the seed's client sees. `progress` is told
/// after each stream's events are all durable.
pub fn drive<C: Client>(
    client: &C,
    shape: Shape,
    prefix: &str,
    progress: &Progress,
) -> Result<(f64, Histogram<u64>), String> {
    let next = AtomicUsize::new(0);
    // Set by the first failing producer so the others stop taking streams.
    let failed = AtomicBool::new(false);
    let t0 = Instant::now();
    let results: Vec<Result<Histogram<u64>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..shape.producers.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let result = produce(client, shape, prefix, &next, &failed, progress);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a producer thread panicked".into()))).collect()
    });
    let seconds = t0.elapsed().as_secs_f64();
    let mut merged = histogram();
    for result in results {
        merged.add(result?).map_err(|e| format!("merging latency histograms: {e}"))?;
    }
    Ok((seconds, merged))
}

fn produce<C: Client>(
    client: &C,
    shape: Shape,
    prefix: &str,
    next: &AtomicUsize,
    failed: &AtomicBool,
    progress: &Progress,
) -> Result<Histogram<u64>, String> {
    let producer = client.producer();
    let mut latency_us = histogram();
    let mut pending = Vec::with_capacity(shape.events_per_stream);
    while !failed.load(Ordering::Relaxed) {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= shape.streams {
            break;
        }
        let stream = format!("{prefix}{i}");
        // The clock is read before every `CLOCK_REUSE_MAX`th append and that reading serves the
        // appends up to the next one: an append is timed from at most that many appends early
        // (never late), so a latency is over-stated by at most a few microseconds, and the
        // clock reads no longer cost as much CPU as the appends they time.
        let mut start = Instant::now();
        for k in 0..shape.events_per_stream {
            if k % (CLOCK_REUSE_MAX as usize) == 0 && k > 0 {
                start = Instant::now();
            }
            pending.push((start, client.append(&producer, &stream)?));
        }
        // When the caller learned of each append's durability. Reading the clock costs about as
        // much as an append here, so it is read again after every wait that blocked and after
        // every `CLOCK_REUSE_MAX` waits that did not: an append found already durable is
        // timed at most that many (nanosecond) checks early.
        let mut learned = Instant::now();
        let mut reused = 0;
        for (start, done) in pending.drain(..) {
            let blocked = client.wait(done)?;
            if blocked || reused >= CLOCK_REUSE_MAX {
                learned = Instant::now();
                reused = 0;
            } else {
                reused += 1;
            }
            latency_us.saturating_record(learned.saturating_duration_since(start).as_micros() as u64);
        }
        progress.add(shape.events_per_stream as u64);
    }
    Ok(latency_us)
}

/// Appends, and waits found already done, that may share one reading of the clock.
const CLOCK_REUSE_MAX: u32 = 16;

/// evstore through its public API, one event per `append` call, `ExpectedVersion::Any`.
pub struct EvstoreClient<'a>(pub &'a Store);

impl Client for EvstoreClient<'_> {
    type Producer = Store;
    type Pending = Ticket;

    fn producer(&self) -> Store {
        self.0.clone()
    }

    fn append(&self, store: &Store, stream: &str) -> Result<Ticket, String> {
        store
            .append(stream, ExpectedVersion::Any, [Event::new(EVENT_TYPE, EVENT_DATA)])
            .map_err(|e| format!("evstore append to {stream}: {e}"))
    }

    fn wait(&self, ticket: Ticket) -> Result<bool, String> {
        let blocked = !ticket.is_done();
        ticket.wait().map(|_| blocked).map_err(|e| format!("evstore append not durable: {e}"))
    }
}

/// Stream id + type + data bytes of one seed event (the seed's events carry no metadata).
pub fn payload_per_event(stream: &str) -> u64 {
    (stream.len() + EVENT_TYPE.len() + EVENT_DATA.len()) as u64
}
