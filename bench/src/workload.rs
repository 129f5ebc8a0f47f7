//! The seed's client, written once for every system: each producer thread takes the next stream
//! from a shared counter, appends that stream's events one call per event without waiting, then
//! waits for all of them, then takes the next stream.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use evstore::{Event, ExpectedVersion, Store, Ticket};
use hdrhistogram::Histogram;

use crate::progress::Progress;
use crate::report::histogram;

/// The seed's event: type and JSON data (38 bytes).
pub const EVENT_TYPE: &str = "ItemCreated";
pub const EVENT_DATA: &[u8] = br#"{"Type":"ItemCreated","ItemId":"1324"}"#;

/// What one `append` call carries: `count` events of one type, each with the same data.
#[derive(Clone, Copy)]
pub struct Events<'a> {
    pub event_type: &'static str,
    pub data: &'a [u8],
    pub count: usize,
}

/// The seed's append: one seed event.
pub const SEED_EVENTS: Events<'static> = Events { event_type: EVENT_TYPE, data: EVENT_DATA, count: 1 };

/// A system as the seed's client sees it: append now, learn about durability later.
pub trait Client: Sync {
    /// What each producer thread appends through (a store handle, a channel sender).
    type Producer;
    /// What an append hands back and the caller later waits on.
    type Pending;

    fn producer(&self) -> Self::Producer;
    /// Appends `events` to `stream` in one call (atomically, where the system can).
    fn append(&self, producer: &Self::Producer, stream: &str, events: Events<'_>) -> Result<Self::Pending, String>;
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

/// Streams of the last `drive` whose caller blocked more than once while waiting for their events
/// (in order): their run of appends was not all durable when the first blocking wait returned,
/// so it went out in more than one write as the caller saw it. And the streams it drove.
pub static STREAMS_WAITED_AGAIN: AtomicU64 = AtomicU64::new(0);
pub static STREAMS_DRIVEN: AtomicU64 = AtomicU64::new(0);
/// The last `drive`'s round trip per stream, summed over its streams, in nanoseconds: making the
/// stream's appends, waiting for the first one, and for the rest (in order) after that.
pub static STREAM_PHASES_NS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

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
    STREAMS_WAITED_AGAIN.store(0, Ordering::Relaxed);
    STREAMS_DRIVEN.store(0, Ordering::Relaxed);
    for phase in &STREAM_PHASES_NS {
        phase.store(0, Ordering::Relaxed);
    }
    run_producers(shape.producers, |_, _, failed| produce(client, shape, prefix, &next, failed, progress))
}

/// Runs `producers` threads of `produce(index, t0, failed)` from one start time `t0`; `failed`
/// is set by the first producer that fails, so that the others stop early. Returns the wall
/// time until the last producer ended and the producers' latency histograms merged.
pub fn run_producers<F>(producers: usize, produce: F) -> Result<(f64, Histogram<u64>), String>
where
    F: Fn(usize, Instant, &AtomicBool) -> Result<Histogram<u64>, String> + Sync,
{
    let failed = AtomicBool::new(false);
    let t0 = Instant::now();
    let results: Vec<Result<Histogram<u64>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..producers.max(1))
            .map(|index| {
                let (failed, produce) = (&failed, &produce);
                scope.spawn(move || {
                    let result = produce(index, t0, failed);
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
        let mut started = StartClock::new();
        let appending = Instant::now();
        for _ in 0..shape.events_per_stream {
            pending.push((started.before_append(), client.append(&producer, &stream, SEED_EVENTS)?));
        }
        let appended = Instant::now();
        let mut first_done = appended;
        let mut learned = LearnedClock::new();
        let mut blocking_waits = 0u32;
        for (k, (start, done)) in pending.drain(..).enumerate() {
            let blocked = client.wait(done)?;
            if k == 0 {
                first_done = Instant::now();
            }
            blocking_waits += u32::from(blocked);
            let learned_at = learned.after_wait(blocked);
            latency_us.saturating_record(learned_at.saturating_duration_since(start).as_micros() as u64);
        }
        if blocking_waits > 1 {
            STREAMS_WAITED_AGAIN.fetch_add(1, Ordering::Relaxed);
        }
        let phases = [appended - appending, first_done - appended, first_done.elapsed()];
        for (sum, phase) in STREAM_PHASES_NS.iter().zip(phases) {
            sum.fetch_add(phase.as_nanos() as u64, Ordering::Relaxed);
        }
        STREAMS_DRIVEN.fetch_add(1, Ordering::Relaxed);
        progress.add(shape.events_per_stream as u64);
    }
    Ok(latency_us)
}

/// Appends, and waits found already done, that may share one reading of the clock.
const CLOCK_REUSE_MAX: u32 = 16;

/// When an append started, from the caller's view. The clock is read before every
/// `CLOCK_REUSE_MAX`th append and that reading serves the appends up to the next one: an append
/// is timed from at most that many appends early (never late), so a latency is over-stated by at
/// most a few microseconds, and the clock reads no longer cost as much CPU as the appends they time.
pub struct StartClock {
    at: Instant,
    served: u32,
}

impl StartClock {
    pub fn new() -> StartClock {
        StartClock { at: Instant::now(), served: 0 }
    }

    /// The start time of the append about to be made.
    pub fn before_append(&mut self) -> Instant {
        if self.served == CLOCK_REUSE_MAX {
            self.at = Instant::now();
            self.served = 0;
        }
        self.served += 1;
        self.at
    }

    /// The next append reads the clock again (the caller was blocked since the last reading).
    pub fn expire(&mut self) {
        self.served = CLOCK_REUSE_MAX;
    }
}

/// When the caller learned of an append's durability. Reading the clock costs about as much as
/// an append, so it is read again after every wait that blocked and after every
/// `CLOCK_REUSE_MAX` waits that did not: an append found already durable is timed at most that
/// many (nanosecond) checks early.
pub struct LearnedClock {
    at: Instant,
    reused: u32,
}

impl LearnedClock {
    pub fn new() -> LearnedClock {
        LearnedClock { at: Instant::now(), reused: 0 }
    }

    /// The time the caller learned of the append it just waited for; `blocked` as `Client::wait` says.
    pub fn after_wait(&mut self, blocked: bool) -> Instant {
        if blocked || self.reused >= CLOCK_REUSE_MAX {
            self.at = Instant::now();
            self.reused = 0;
        } else {
            self.reused += 1;
        }
        self.at
    }
}

/// evstore through its public API, one event per `append` call, `ExpectedVersion::Any`.
pub struct EvstoreClient<'a>(pub &'a Store);

impl Client for EvstoreClient<'_> {
    type Producer = Store;
    type Pending = Ticket;

    fn producer(&self) -> Store {
        self.0.clone()
    }

    fn append(&self, store: &Store, stream: &str, events: Events<'_>) -> Result<Ticket, String> {
        let batch = (0..events.count).map(|_| Event::new(events.event_type, events.data));
        store.append(stream, ExpectedVersion::Any, batch).map_err(|e| format!("evstore append to {stream}: {e}"))
    }

    fn wait(&self, ticket: Ticket) -> Result<bool, String> {
        let blocked = !ticket.is_done();
        ticket.wait().map(|_| blocked).map_err(|e| format!("evstore append not durable: {e}"))
    }
}

/// Events appended to one stream before a producer of the matrix moves on to its next stream.
pub const STREAM_EVENTS_MAX: u64 = 1_000;

/// The streams of one producer of the matrix: `{prefix}{producer}/{n}`, each taking
/// `STREAM_EVENTS_MAX` events (whole append calls) before the next begins; no other producer
/// appends to them.
pub struct Streams {
    prefix: String,
    producer: usize,
    number: u64,
    events: u64,
    name: String,
}

impl Streams {
    pub fn new(prefix: &str, producer: usize) -> Streams {
        Streams { prefix: prefix.into(), producer, number: 0, events: 0, name: format!("{prefix}{producer}/0") }
    }

    /// The stream for the next call of `count` events.
    pub fn next(&mut self, count: usize) -> &str {
        if self.events >= STREAM_EVENTS_MAX {
            self.number += 1;
            self.events = 0;
            self.name = format!("{}{}/{}", self.prefix, self.producer, self.number);
        }
        self.events += count as u64;
        &self.name
    }
}

/// A closed-loop load with a bounded window: each producer appends `events.count` events per
/// call to its own streams without waiting, and waits for its oldest outstanding call once
/// `window_events` events or `window_bytes` bytes of event data are outstanding (so at least one
/// call is always outstanding). It stops at `events_per_producer` events or at `deadline`.
#[derive(Clone, Copy)]
pub struct Load<'a> {
    pub producers: usize,
    pub events: Events<'a>,
    pub events_per_producer: u64,
    pub deadline: std::time::Duration,
    pub window_events: u64,
    pub window_bytes: u64,
}

/// Runs `load` on streams under `prefix`; returns the wall time (until the last producer learned
/// of its last append) and every event's latency in microseconds, from its call (as `StartClock`
/// reads it) to when its producer learned it was durable (`LearnedClock`). `progress` is told
/// per call waited.
pub fn drive_windowed<C: Client>(
    client: &C,
    load: &Load<'_>,
    prefix: &str,
    progress: &Progress,
) -> Result<(f64, Histogram<u64>), String> {
    run_producers(load.producers, |p, t0, failed| produce_windowed(client, load, prefix, p, t0, failed, progress))
}

fn produce_windowed<C: Client>(
    client: &C,
    load: &Load<'_>,
    prefix: &str,
    producer_index: usize,
    t0: Instant,
    failed: &AtomicBool,
    progress: &Progress,
) -> Result<Histogram<u64>, String> {
    let producer = client.producer();
    let mut streams = Streams::new(prefix, producer_index);
    let mut latency_us = histogram();
    let call_events = load.events.count as u64;
    let call_bytes = (load.events.data.len() * load.events.count) as u64;
    let mut outstanding = std::collections::VecDeque::new();
    let (mut outstanding_events, mut outstanding_bytes) = (0u64, 0u64);
    let mut started = StartClock::new();
    let mut learned = LearnedClock::new();
    let mut sent = 0u64;
    let mut wait_oldest = |outstanding: &mut std::collections::VecDeque<(Instant, C::Pending)>,
                           events: &mut u64,
                           bytes: &mut u64|
     -> Result<bool, String> {
        let Some((start, pending)) = outstanding.pop_front() else { return Ok(false) };
        let blocked = client.wait(pending)?;
        let micros = learned.after_wait(blocked).saturating_duration_since(start).as_micros() as u64;
        latency_us.saturating_record_n(micros, call_events);
        *events -= call_events;
        *bytes -= call_bytes;
        progress.add(call_events);
        Ok(blocked)
    };
    while sent < load.events_per_producer && !failed.load(Ordering::Relaxed) {
        while !outstanding.is_empty()
            && (outstanding_events + call_events > load.window_events
                || outstanding_bytes + call_bytes > load.window_bytes)
        {
            if wait_oldest(&mut outstanding, &mut outstanding_events, &mut outstanding_bytes)? {
                // A reading from before the wait would time the next appends from too early.
                started.expire();
            }
        }
        let start = started.before_append();
        if start.saturating_duration_since(t0) >= load.deadline {
            break;
        }
        let stream = streams.next(load.events.count);
        outstanding.push_back((start, client.append(&producer, stream, load.events)?));
        outstanding_events += call_events;
        outstanding_bytes += call_bytes;
        sent += call_events;
    }
    while !outstanding.is_empty() {
        wait_oldest(&mut outstanding, &mut outstanding_events, &mut outstanding_bytes)?;
    }
    Ok(latency_us)
}
