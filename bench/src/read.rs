//! `evstore-bench read`: the read side over the seed's events, beside the same reads done the
//! simplest way in the same run.
//!
//! - Stream reads (all events of one stream, random streams): evstore's zero-copy `read_stream`
//!   beside `pread` of the very same record bytes (one call per record, at the offsets evstore
//!   put them) and SQLite's `SELECT ... WHERE stream = ? ORDER BY version` on a table holding
//!   the same events. Warm (page cache hot) and cold (`posix_fadvise(DONTNEED)` first; evstore's
//!   mappings dropped too, SQLite's connection reopened).
//! - `read_all` over the whole store (record bytes per second) beside `pread` of the segment
//!   files in 1 MiB chunks.
//! - Subscription catch-up from position 0 to a handler that only counts (the batch form).
//! - Live delivery: a writer appends at half the rate the build phase reached; a subscriber
//!   measures from the moment the durable watermark moved (stored by the submitter just before it
//!   publishes) to the moment the events are handed to it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evstore::testing::bench::{drop_mappings, now_ns, published_ns, stream_record_spans};
use evstore::{Event, ExpectedVersion, Store};
use hdrhistogram::Histogram;
use rusqlite::{params, Connection};
use serde_json::json;

use crate::progress::Progress;
use crate::workload::{drive, EvstoreClient, Shape, EVENT_DATA, EVENT_TYPE};
use crate::{machine, sqlite, Common};

#[derive(clap::Args)]
pub struct ReadArgs {
    /// Streams of the seed workload written before reading.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Events per stream.
    #[arg(long, default_value_t = 1_000)]
    events_per_stream: usize,
    /// Warm stream reads timed (random streams, each read whole).
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Cold stream reads timed (each after dropping the page cache of the files).
    #[arg(long, default_value_t = 30)]
    cold_samples: usize,
    /// How long the live-delivery phase runs.
    #[arg(long, default_value_t = 5)]
    live_seconds: u64,
    /// The writer's rate in the live-delivery phase, events/s [default: half the rate the
    /// build phase reached].
    #[arg(long)]
    live_rate: Option<f64>,
    /// Skip the SQLite baseline (building its table takes a while at 10 million events).
    #[arg(long)]
    no_sqlite: bool,
    #[command(flatten)]
    common: Common,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn us(d: Duration) -> u64 {
    d.as_micros().max(1) as u64
}

/// Evicts `path`'s pages from the page cache (after syncing, so none are dirty).
fn drop_cache(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    // SAFETY: fdatasync and posix_fadvise on a valid, open file descriptor.
    let rc = unsafe {
        libc::fdatasync(file.as_raw_fd());
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
    };
    if rc != 0 {
        return Err(format!("posix_fadvise(DONTNEED) on {}: errno {rc}", path.display()));
    }
    Ok(())
}

fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("listing {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "evs"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads a whole stream through evstore's zero-copy API; returns (events, bytes touched).
fn evstore_stream(store: &Store, stream: &str) -> Result<(u64, u64), String> {
    let mut events = store.read_stream(stream, 0).map_err(|e| e.to_string())?;
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(event) = events.next_ref() {
        let event = event.map_err(|e| format!("reading {stream}: {e}"))?;
        count += 1;
        // Touch the data, as a reader that uses it would.
        bytes += event.data().len() as u64 + u64::from(event.data().first().copied().unwrap_or(0) & 1);
    }
    Ok((count, bytes))
}

/// The same records with one `pread` each into a reused buffer.
struct Pread {
    files: Vec<(PathBuf, File)>,
    buffer: Vec<u8>,
}

impl Pread {
    fn read(&mut self, spans: &[(PathBuf, u64, usize)]) -> Result<u64, String> {
        let mut bytes = 0;
        for (path, offset, len) in spans {
            let file = match self.files.iter().find(|(p, _)| p == path) {
                Some((_, file)) => file,
                None => {
                    let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
                    self.files.push((path.clone(), file));
                    &self.files.last().expect("just pushed").1
                }
            };
            self.buffer.resize(*len, 0);
            file.read_exact_at(&mut self.buffer, *offset).map_err(|e| format!("pread {}: {e}", path.display()))?;
            bytes += self.buffer.len() as u64;
        }
        Ok(bytes)
    }
}

fn sqlite_stream(connection: &Connection, stream: &str) -> Result<(u64, u64), String> {
    let mut statement = connection
        .prepare_cached("SELECT position, version, event_type, data FROM events WHERE stream = ?1 ORDER BY version")
        .map_err(|e| e.to_string())?;
    let mut rows = statement.query(params![stream]).map_err(|e| e.to_string())?;
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let data = row.get_ref(3).map_err(|e| e.to_string())?.as_blob().map_err(|e| e.to_string())?;
        count += 1;
        bytes += data.len() as u64;
    }
    Ok((count, bytes))
}

/// Builds the SQLite baseline's table from the store's log, in log order (not durable while
/// building: it is only read afterwards).
fn build_sqlite(store: &Store, path: &Path) -> Result<Connection, String> {
    let connection = Connection::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    connection
        .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
        .map_err(|e| format!("pragmas: {e}"))?;
    connection.execute_batch(sqlite::SCHEMA).map_err(|e| format!("schema: {e}"))?;
    connection.execute_batch("BEGIN").map_err(|e| e.to_string())?;
    {
        let mut insert = connection.prepare(sqlite::INSERT).map_err(|e| e.to_string())?;
        let mut events = store.read_all(0).map_err(|e| e.to_string())?;
        while let Some(event) = events.next_ref() {
            let event = event.map_err(|e| e.to_string())?;
            insert
                .execute(params![event.stream(), event.version() as i64, event.event_type(), event.data()])
                .map_err(|e| format!("insert: {e}"))?;
        }
    }
    connection.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);").map_err(|e| e.to_string())?;
    Ok(connection)
}

struct Percentiles {
    p50: u64,
    p99: u64,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles { p50: h.value_at_quantile(0.5), p99: h.value_at_quantile(0.99) }
}

/// splitmix64, for picking streams reproducibly.
fn pick(state: &mut u64, n: usize) -> usize {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % n as u64) as usize
}

pub fn run(args: &ReadArgs) -> Result<(), String> {
    let common = &args.common;
    let context = common.print_machine("read");
    let data = common.data_dir("read")?;
    let store = Store::open(&data.path, common.options())
        .map_err(|e| format!("opening evstore in {}: {e}", data.path.display()))?;
    let shape = Shape { streams: args.streams, events_per_stream: args.events_per_stream, producers: machine::cores() };
    let total = (args.streams * args.events_per_stream) as u64;
    common.note(&format!("writing {} streams x {} seed events ...", args.streams, args.events_per_stream));
    let progress = Progress::start("write", total, "events");
    let (seconds, _) = drive(&EvstoreClient(&store), shape, "stream-", &progress)?;
    progress.finish();
    let append_rate = total as f64 / seconds;
    common.note(&format!("written in {seconds:.1} s ({append_rate:.0} events/s)"));
    let segments = segment_files(&data.path)?;

    // read_all, twice: the first pass maps and faults the pages in (warm), the second is timed.
    let mut record_bytes = 0u64;
    let mut read_all_seconds = 0.0;
    for _ in 0..2 {
        let t0 = Instant::now();
        let mut events = store.read_all(0).map_err(|e| e.to_string())?;
        let (mut count, mut bytes) = (0u64, 0u64);
        while let Some(event) = events.next_ref() {
            let event = event.map_err(|e| format!("read_all: {e}"))?;
            count += 1;
            bytes += (evstore::RECORD_HEADER_BYTES
                + event.stream().len()
                + event.event_type().len()
                + event.metadata().len()
                + event.data().len()) as u64;
        }
        read_all_seconds = t0.elapsed().as_secs_f64();
        if count != total {
            return Err(format!("read_all returned {count} events, expected {total}"));
        }
        record_bytes = bytes;
    }
    let read_all_mb = record_bytes as f64 / 1e6 / read_all_seconds;
    let read_all_events = total as f64 / read_all_seconds;
    // The baseline: the segment files' bytes (padding and unused tail included) in 1 MiB preads.
    let t0 = Instant::now();
    let mut file_bytes = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    for path in &segments {
        let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let mut offset = 0;
        loop {
            let n = file.read_at(&mut buffer, offset).map_err(|e| format!("pread: {e}"))?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            file_bytes += n as u64;
        }
    }
    let pread_all_mb = file_bytes as f64 / 1e6 / t0.elapsed().as_secs_f64();

    // Catch-up through a subscription, batch form, counting only.
    let t0 = Instant::now();
    let mut subscription = store.subscribe_all(0).map_err(|e| e.to_string())?;
    let mut caught = 0u64;
    while caught < total {
        match subscription.next_batch(evstore::SUBSCRIPTION_BATCH_MAX) {
            Some(Ok(batch)) => caught += batch.len() as u64,
            Some(Err(e)) => return Err(format!("subscription: {e}")),
            None => return Err("the subscription ended early".into()),
        }
    }
    let catchup_events = total as f64 / t0.elapsed().as_secs_f64();
    drop(subscription);

    // Stream reads.
    let sqlite_dir = data.path.join("sqlite");
    let connection = if args.no_sqlite {
        None
    } else {
        std::fs::create_dir_all(&sqlite_dir).map_err(|e| e.to_string())?;
        common.note("building the SQLite baseline's table from the log ...");
        let t0 = Instant::now();
        let connection = build_sqlite(&store, &sqlite_dir.join("events.db"))?;
        common.note(&format!("built in {:.1} s", t0.elapsed().as_secs_f64()));
        Some(connection)
    };
    let stream_name = |i: usize| format!("stream-{i}");
    let mut pread = Pread { files: Vec::new(), buffer: Vec::new() };
    let (mut warm_evstore, mut warm_pread, mut warm_sqlite) = (histogram(), histogram(), histogram());
    let mut state = 42u64;
    // One untimed pass over the sampled streams per system, so every one is warm.
    let sampled: Vec<String> = (0..args.samples.max(1)).map(|_| stream_name(pick(&mut state, args.streams))).collect();
    let spans: Vec<Vec<(PathBuf, u64, usize)>> = sampled
        .iter()
        .map(|stream| stream_record_spans(&store, stream).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    for (stream, spans) in sampled.iter().zip(&spans) {
        evstore_stream(&store, stream)?;
        pread.read(spans)?;
        if let Some(connection) = &connection {
            sqlite_stream(connection, stream)?;
        }
    }
    for (stream, spans) in sampled.iter().zip(&spans) {
        let t0 = Instant::now();
        let (count, _) = evstore_stream(&store, stream)?;
        warm_evstore.saturating_record(us(t0.elapsed()));
        if count != args.events_per_stream as u64 {
            return Err(format!("{stream}: {count} events read, expected {}", args.events_per_stream));
        }
        let t0 = Instant::now();
        pread.read(spans)?;
        warm_pread.saturating_record(us(t0.elapsed()));
        if let Some(connection) = &connection {
            let t0 = Instant::now();
            let (count, _) = sqlite_stream(connection, stream)?;
            warm_sqlite.saturating_record(us(t0.elapsed()));
            if count != args.events_per_stream as u64 {
                return Err(format!("SQLite {stream}: {count} rows, expected {}", args.events_per_stream));
            }
        }
    }
    let (mut cold_evstore, mut cold_pread, mut cold_sqlite) = (histogram(), histogram(), histogram());
    let db_path = sqlite_dir.join("events.db");
    let mut connection = connection;
    for (stream, spans) in sampled.iter().zip(&spans).take(args.cold_samples) {
        drop_mappings(&store);
        segments.iter().try_for_each(|path| drop_cache(path))?;
        let t0 = Instant::now();
        evstore_stream(&store, stream)?;
        cold_evstore.saturating_record(us(t0.elapsed()));
        pread.files.clear();
        // evstore's mapping of the pages it just read would keep them cached.
        drop_mappings(&store);
        segments.iter().try_for_each(|path| drop_cache(path))?;
        let t0 = Instant::now();
        pread.read(spans)?;
        cold_pread.saturating_record(us(t0.elapsed()));
        if connection.is_some() {
            drop(connection.take());
            drop_cache(&db_path)?;
            let fresh = Connection::open(&db_path).map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            sqlite_stream(&fresh, stream)?;
            cold_sqlite.saturating_record(us(t0.elapsed()));
            connection = Some(fresh);
        }
    }
    drop(connection);

    // Live delivery with the writer at half the rate reached above.
    let live_rate = args.live_rate.unwrap_or(append_rate / 2.0);
    let live_time = Duration::from_secs(args.live_seconds);
    let (live, live_events) = live_delivery(&store, live_rate, live_time)?;
    store.close().map_err(|e| format!("close: {e}"))?;

    let (w, wp, ws) = (percentiles(&warm_evstore), percentiles(&warm_pread), percentiles(&warm_sqlite));
    let (c, cp, cs) = (percentiles(&cold_evstore), percentiles(&cold_pread), percentiles(&cold_sqlite));
    let l = percentiles(&live);
    let sqlite_ran = !args.no_sqlite;
    let opt = |ran: bool, value: u64| if ran { json!(value) } else { json!(null) };
    let rows = [
        json!({"system": "evstore", "events": total,
            "stream_read_p50_us": w.p50, "stream_read_p99_us": w.p99, "stream_read_cold_p50_us": c.p50,
            "read_all_mb_per_sec": read_all_mb.round(), "read_all_events_per_sec": read_all_events.round(),
            "catchup_events_per_sec": catchup_events.round(),
            "live_delivery_p50_us": l.p50, "live_delivery_p99_us": l.p99, "live_events": live_events,
            "live_writer_events_per_sec": live_rate.round()}),
        json!({"system": "pread", "events": total,
            "stream_read_p50_us": wp.p50, "stream_read_p99_us": wp.p99, "stream_read_cold_p50_us": cp.p50,
            "read_all_mb_per_sec": pread_all_mb.round()}),
        json!({"system": "sqlite", "events": total,
            "stream_read_p50_us": opt(sqlite_ran, ws.p50), "stream_read_p99_us": opt(sqlite_ran, ws.p99),
            "stream_read_cold_p50_us": opt(sqlite_ran, cs.p50)}),
    ];
    if common.json {
        for row in rows {
            let mut row = row.as_object().cloned().expect("an object");
            row.extend(context.clone());
            println!("{}", serde_json::Value::Object(row));
        }
        return Ok(());
    }
    let na = |ran: bool, v: u64| if ran { v.to_string() } else { "-".into() };
    println!("{:<44} {:>12} {:>12} {:>12}", "measure (better: < lower, > higher)", "evstore", "pread", "sqlite");
    let row = |name: &str, a: String, b: String, c: String| println!("{name:<44} {a:>12} {b:>12} {c:>12}");
    let events = args.events_per_stream;
    row(
        &format!("stream read, {events} events, warm p50 us <"),
        w.p50.to_string(),
        wp.p50.to_string(),
        na(sqlite_ran, ws.p50),
    );
    row(
        &format!("stream read, {events} events, warm p99 us <"),
        w.p99.to_string(),
        wp.p99.to_string(),
        na(sqlite_ran, ws.p99),
    );
    row(
        &format!("stream read, {events} events, cold p50 us <"),
        c.p50.to_string(),
        cp.p50.to_string(),
        na(sqlite_ran, cs.p50),
    );
    row("read_all, MB/s of record bytes >", format!("{read_all_mb:.0}"), format!("{pread_all_mb:.0}"), "-".into());
    row("read_all, events/s >", format!("{read_all_events:.0}"), "-".into(), "-".into());
    row("catch-up (subscription, batches), events/s >", format!("{catchup_events:.0}"), "-".into(), "-".into());
    row("live delivery p50 us <", l.p50.to_string(), "-".into(), "-".into());
    row("live delivery p99 us <", l.p99.to_string(), "-".into(), "-".into());
    common.note(&format!(
        "{total} events, {} MB of records; pread read_all reads the segment files whole ({} MB, padding and \
         unused tails included); live: writer at {live_rate:.0} events/s (build rate {append_rate:.0}), \
         {live_events} events handed live",
        record_bytes / 1_000_000,
        file_bytes / 1_000_000,
    ));
    Ok(())
}

/// Appends seed events at `rate` events/s for `duration` from one thread (one append per event,
/// waited in batches, as the seed's client does), while a subscriber records, for every event it
/// is handed live, the time since the durable watermark last moved.
fn live_delivery(store: &Store, rate: f64, duration: Duration) -> Result<(Histogram<u64>, u64), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let from = store.durable_position();
    let mut subscription = store.subscribe_all(from).map_err(|e| e.to_string())?;
    let subscriber_stop = stop.clone();
    let subscriber_store = store.clone();
    let subscriber = std::thread::spawn(move || -> Result<(Histogram<u64>, u64), String> {
        let mut latency = histogram();
        let mut live = 0u64;
        while !subscriber_stop.load(Ordering::Relaxed) {
            match subscription.next_batch(evstore::SUBSCRIPTION_BATCH_MAX) {
                Some(Ok(batch)) => {
                    let handed = now_ns();
                    let published = published_ns(&subscriber_store);
                    let live_here = batch.iter().filter(|e| !e.historic()).count() as u64;
                    if live_here > 0 {
                        latency
                            .record_n((handed.saturating_sub(published) / 1000).max(1), live_here)
                            .map_err(|e| e.to_string())?;
                        live += live_here;
                    }
                }
                Some(Err(e)) => return Err(format!("subscription: {e}")),
                None => break,
            }
        }
        Ok((latency, live))
    });
    // Ticks of 1 ms: each appends its share of events without waiting, then waits for them.
    let per_tick = (rate / 1000.0).max(1.0);
    let t0 = Instant::now();
    let mut owed = 0.0;
    let mut tick = 0u64;
    let mut tickets = Vec::new();
    while t0.elapsed() < duration {
        tick += 1;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let stream = format!("live-{}", tick % 1000);
            tickets.push(
                store
                    .append(&stream, ExpectedVersion::Any, [Event::new(EVENT_TYPE, EVENT_DATA)])
                    .map_err(|e| e.to_string())?,
            );
        }
        for ticket in tickets.drain(..) {
            ticket.wait().map_err(|e| e.to_string())?;
        }
        let next = t0 + Duration::from_millis(tick);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // One last event wakes the subscriber so that it sees `stop`.
    stop.store(true, Ordering::Relaxed);
    store
        .append("live-stop", ExpectedVersion::Any, [Event::new("Stop", "")])
        .map_err(|e| e.to_string())?
        .wait()
        .map_err(|e| e.to_string())?;
    subscriber.join().map_err(|_| "the subscriber panicked".to_string())?
}
