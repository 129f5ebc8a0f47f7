//! evstore-bench: the seed workload (and a low-load probe) against evstore, a naive port of the
//! seed's design, SQLite used as an event store and the raw disk, all measured in the same run on
//! the same file system.
//! How we measure: shared/BENCH.md. Results and the commands behind them: docs/results.md.

mod channel;
mod machine;
mod naive;
mod projection_costs;
mod raw;
mod read;
mod reopen;
mod report;
mod sqlite;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use evstore::{Backend, Event, ExpectedVersion, Options, SegmentPrepare, Stats, Store, SyncMode};
use serde_json::{json, Map, Value};

use raw::{RawPlan, RawSync};
use report::{histogram, Outcome};
use workload::{drive, payload_per_event, EvstoreClient, Shape, EVENT_DATA, EVENT_TYPE};

/// Bytes per event the raw baseline assumes when evstore did not run to say how much it wrote.
const RAW_BYTES_PER_EVENT_GUESS: u64 = 96;
/// Raw write size when evstore did not run to say what group size it achieved.
const RAW_WRITE_BYTES_DEFAULT: usize = 256 << 10;

#[derive(Parser)]
#[command(name = "evstore-bench", about = "evstore beside a naive baseline and the raw disk, in one run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seed workload: producers each take a stream, append its events without waiting, then
    /// wait for all of them.
    Seed(SeedArgs),
    /// Low load: one small event at a time, each waited before the next (space and latency).
    Lowload(LowloadArgs),
    /// The read side over the seed's events: stream reads (warm, cold), read_all, subscription
    /// catch-up and live delivery, beside pread and SQLite.
    Read(read::ReadArgs),
    /// Reopen times (clean, after SIGKILL, without a checkpoint) and index bytes per event.
    Reopen(reopen::ReopenArgs),
    /// Seed 003's four projection strategies through ProjectionRunner, with the seed's cost model.
    ProjectionCosts(projection_costs::ProjectionCostsArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SyncArg {
    Fdatasync,
    Dsync,
    /// NOT DURABLE: for comparison only.
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Auto,
    IoUring,
    Portable,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrepareArg {
    Zeroed,
    Fallocated,
}

#[derive(clap::Args)]
struct Common {
    /// Parent directory of the data directories (each system gets a fresh one).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// How appends are made durable (`none` is NOT DURABLE, for comparison only).
    #[arg(long, value_enum, default_value = "dsync")]
    sync: SyncArg,
    /// evstore's I/O backend.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// How evstore prepares its segments ahead of use.
    #[arg(long, value_enum, default_value = "zeroed")]
    segment_prepare: PrepareArg,
    /// evstore segment size.
    #[arg(long, default_value_t = 256)]
    segment_mib: u64,
    /// evstore's largest group (one write).
    #[arg(long, default_value_t = 4096)]
    group_kib: usize,
    /// Groups in flight in evstore; writes in flight in the raw baseline.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// While a group is in flight, the next is submitted early once it holds this much.
    #[arg(long, default_value_t = 256)]
    busy_group_kib: usize,
    /// One JSON object per system per line on stdout (notes go to stderr).
    #[arg(long)]
    json: bool,
    /// Keep the data directories.
    #[arg(long)]
    keep: bool,
    /// Where to write the `<system>.hgrm` percentile distributions.
    #[arg(long, default_value = ".")]
    hgrm_dir: PathBuf,
}

#[derive(clap::Args)]
struct SeedArgs {
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    #[arg(long, default_value_t = 1_000)]
    events_per_stream: usize,
    /// Producer threads [default: available cores].
    #[arg(long)]
    producers: Option<usize>,
    /// Comma-separated, from: evstore, naive, sqlite, raw (raw always runs last: it copies
    /// evstore's byte volume and group size).
    #[arg(long, default_value = "evstore,naive,sqlite,raw")]
    systems: String,
    /// Streams appended to evstore before timing starts; not counted.
    #[arg(long, default_value_t = 0)]
    warmup_streams: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct LowloadArgs {
    #[arg(long, default_value_t = 2_000)]
    events: usize,
    #[command(flatten)]
    common: Common,
}

fn main() {
    let result = match Cli::parse().command {
        Command::Seed(args) => seed(&args),
        Command::Lowload(args) => lowload(&args),
        Command::Read(args) => read::run(&args),
        Command::Reopen(args) => reopen::reopen(&args),
        Command::ProjectionCosts(args) => projection_costs::run(&args),
    };
    if let Err(message) = result {
        eprintln!("evstore-bench: error: {message}");
        std::process::exit(1);
    }
}

/// A fresh data directory for one system, removed when dropped (also on error) unless `--keep`.
struct DataDir {
    path: PathBuf,
    keep: bool,
}

impl DataDir {
    fn create(parent: &Path, system: &str, keep: bool) -> Result<DataDir, String> {
        let path = parent.join(format!("evstore-bench-data-{}-{system}", std::process::id()));
        // Never reuse (or delete) a directory this run did not create.
        std::fs::create_dir(&path).map_err(|e| format!("creating the data directory {}: {e}", path.display()))?;
        Ok(DataDir { path, keep })
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("# kept {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("# could not remove {}: {e}", self.path.display());
        }
    }
}

impl Common {
    fn options(&self) -> Options {
        let mut options = Options::default();
        options.sync = match self.sync {
            SyncArg::Fdatasync => SyncMode::Fdatasync,
            SyncArg::Dsync => SyncMode::Dsync,
            SyncArg::None => SyncMode::None,
        };
        options.backend = match self.backend {
            BackendArg::Auto => Backend::Auto,
            BackendArg::IoUring => Backend::IoUring,
            BackendArg::Portable => Backend::Portable,
        };
        options.segment_prepare = match self.segment_prepare {
            PrepareArg::Zeroed => SegmentPrepare::Zeroed,
            PrepareArg::Fallocated => SegmentPrepare::Fallocated,
        };
        options.segment_bytes = self.segment_mib << 20;
        options.group_bytes_max = self.group_kib << 10;
        options.groups_in_flight_max = self.in_flight;
        options.busy_group_bytes_min = self.busy_group_kib << 10;
        options
    }

    fn durable(&self) -> bool {
        self.sync != SyncArg::None
    }

    fn raw_sync(&self) -> RawSync {
        match self.sync {
            SyncArg::Fdatasync => RawSync::Fdatasync,
            SyncArg::Dsync => RawSync::Dsync,
            SyncArg::None => RawSync::None,
        }
    }

    /// Appended to every note line that carries a figure when nothing was made durable.
    fn durability_tag(&self) -> &'static str {
        if self.durable() {
            ""
        } else {
            " [sync none: NOT DURABLE]"
        }
    }

    fn data_dir(&self, system: &str) -> Result<DataDir, String> {
        DataDir::create(&self.dir, system, self.keep)
    }

    /// A `#` line for humans: on stdout beside the table, on stderr in JSON mode so that stdout
    /// stays one JSON object per line.
    fn note(&self, line: &str) {
        if self.json {
            eprintln!("# {line}");
        } else {
            println!("# {line}");
        }
    }

    /// The machine and the engine options (BENCH.md rule 6), as printed and as JSON fields.
    fn print_machine(&self, workload: &str) -> Map<String, Value> {
        let o = self.options();
        let (kernel, cores) = (machine::kernel(), machine::cores());
        let (file_system, write_cache) = (machine::file_system(&self.dir), machine::write_cache(&self.dir));
        let dir = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
        self.note(&format!("evstore-bench {workload}"));
        self.note(&format!(
            "machine: kernel {kernel}, {cores} cores, file system {file_system} at {}, device write cache: {write_cache}",
            dir.display()
        ));
        self.note(&format!(
            "evstore options: sync {}, backend {:?}, segment {} MiB ({:?}), group max {} KiB, groups in flight {}, \
             busy group min {} KiB, queue {} appends",
            o.sync.label(),
            o.backend,
            o.segment_bytes >> 20,
            o.segment_prepare,
            o.group_bytes_max >> 10,
            o.groups_in_flight_max,
            o.busy_group_bytes_min >> 10,
            o.queue_appends_max
        ));
        if !self.durable() {
            self.note("WARNING: sync none is NOT DURABLE; its figures are for comparison only");
        }
        let context = json!({
            "workload": workload,
            "kernel": kernel,
            "cores": cores,
            "file_system": file_system,
            "write_cache": write_cache,
            "segment_mib": o.segment_bytes >> 20,
            "segment_prepare": format!("{:?}", o.segment_prepare),
            "group_kib": o.group_bytes_max >> 10,
            "groups_in_flight_max": o.groups_in_flight_max,
            "busy_group_kib": o.busy_group_bytes_min >> 10,
            "queue_appends_max": o.queue_appends_max,
        });
        match context {
            Value::Object(map) => map,
            _ => unreachable!("json! of an object literal is an object"),
        }
    }

    /// The table (or JSON lines), then the `.hgrm` files.
    fn print(&self, outcomes: &[Outcome], context: &Map<String, Value>) {
        if self.json {
            for o in outcomes {
                println!("{}", o.json(context));
            }
        } else {
            println!("{}", Outcome::header());
            for o in outcomes {
                println!("{}", o.row());
            }
        }
        for o in outcomes {
            match o.write_hgrm(&self.hgrm_dir) {
                Ok(path) => self.note(&format!("{} latency distribution: {}", o.system, path.display())),
                Err(e) => eprintln!("# could not write {}.hgrm in {}: {e}", o.system, self.hgrm_dir.display()),
            }
        }
    }
}

/// An evstore outcome from the stats before and after the measured part.
fn evstore_outcome(
    common: &Common,
    backend: Backend,
    producers: usize,
    seconds: f64,
    before: Stats,
    after: Stats,
    latency_us: hdrhistogram::Histogram<u64>,
) -> Outcome {
    Outcome {
        system: "evstore".into(),
        sync: common.options().sync.label().into(),
        backend: format!("{backend:?}"),
        producers,
        in_flight: common.in_flight,
        events: after.events - before.events,
        seconds,
        payload_bytes: after.payload_bytes - before.payload_bytes,
        disk_bytes: after.disk_bytes - before.disk_bytes,
        record_bytes: after.record_bytes - before.record_bytes,
        syncs: after.syncs - before.syncs,
        groups: after.groups - before.groups,
        latency_us,
    }
}

fn run_evstore(args: &SeedArgs, shape: Shape) -> Result<Outcome, String> {
    let common = &args.common;
    let data = common.data_dir("evstore")?;
    let store = Store::open(&data.path, common.options())
        .map_err(|e| format!("opening evstore in {}: {e}", data.path.display()))?;
    let client = EvstoreClient(&store);
    if args.warmup_streams > 0 {
        drive(&client, Shape { streams: args.warmup_streams, ..shape }, "warmup/")?;
    }
    let before = store.stats();
    let (seconds, latency_us) = drive(&client, shape, "users/")?;
    let after = store.stats();
    let backend = store.backend();
    store.close().map_err(|e| format!("closing evstore: {e}"))?;
    common.note(&format!("evstore backend in use: {backend:?}"));
    Ok(evstore_outcome(common, backend, shape.producers, seconds, before, after, latency_us))
}

fn run_naive(args: &SeedArgs, shape: Shape) -> Result<Outcome, String> {
    let common = &args.common;
    let data = common.data_dir("naive")?;
    let naive =
        naive::Naive::open(&data.path, common.durable()).map_err(|e| format!("opening the naive store: {e}"))?;
    let driven = drive(&naive.client, shape, "users/");
    let counters = naive.counters();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (events, syncs, batches, record_bytes) =
        (load(&counters.events), load(&counters.syncs), load(&counters.batches), load(&counters.record_bytes));
    // Close first: if the writer failed, its error explains the producers' failure.
    let file_bytes = naive.close().map_err(|e| format!("the naive writer: {e}"))?;
    let (seconds, latency_us) = driven?;
    let payload_bytes = (0..shape.streams).map(|i| payload_per_event(&format!("users/{i}"))).sum::<u64>()
        * shape.events_per_stream as u64;
    Ok(Outcome {
        system: "naive".into(),
        // It always uses fdatasync when durable, whatever --sync says.
        sync: if common.durable() { "fdatasync" } else { "none (NOT DURABLE)" }.into(),
        backend: "BufWriter + sync_data".into(),
        producers: shape.producers,
        in_flight: 1,
        events,
        seconds,
        payload_bytes,
        disk_bytes: file_bytes,
        record_bytes,
        syncs,
        groups: batches,
        latency_us,
    })
}

fn run_sqlite(args: &SeedArgs, shape: Shape) -> Result<Outcome, String> {
    let common = &args.common;
    let data = common.data_dir("sqlite")?;
    let sqlite = sqlite::Sqlite::open(&data.path, common.durable())?;
    let driven = drive(&sqlite.client, shape, "users/");
    let counters = sqlite.counters();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (events, syncs, batches, record_bytes) =
        (load(&counters.events), load(&counters.syncs), load(&counters.batches), load(&counters.record_bytes));
    // Close first: if the writer failed, its error explains the producers' failure.
    let files = sqlite.close().map_err(|e| format!("the sqlite writer: {e}"))?;
    let (seconds, latency_us) = driven?;
    common.note(&format!(
        "sqlite: events.db {} B + events.db-wal {} B at the end of the run, {} transactions{}",
        files.db_bytes,
        files.wal_bytes,
        batches,
        common.durability_tag()
    ));
    let payload_bytes = (0..shape.streams).map(|i| payload_per_event(&format!("users/{i}"))).sum::<u64>()
        * shape.events_per_stream as u64;
    Ok(Outcome {
        system: "sqlite".into(),
        sync: sqlite::sync_label(common.durable()).into(),
        backend: format!("SQLite {} (bundled)", rusqlite::version()),
        producers: shape.producers,
        in_flight: 1,
        events,
        seconds,
        payload_bytes,
        disk_bytes: files.total(),
        record_bytes,
        // One durable commit per transaction; SQLite's checkpoint syncs are not counted.
        syncs,
        groups: batches,
        latency_us,
    })
}

fn seed(args: &SeedArgs) -> Result<(), String> {
    let common = &args.common;
    let shape = Shape {
        streams: args.streams,
        events_per_stream: args.events_per_stream,
        producers: args.producers.unwrap_or_else(machine::cores).max(1),
    };
    let systems: Vec<&str> = args.systems.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if let Some(unknown) = systems.iter().find(|s| !["evstore", "naive", "sqlite", "raw"].contains(s)) {
        return Err(format!("unknown system {unknown:?} in --systems (use evstore, naive, sqlite, raw)"));
    }
    std::fs::create_dir_all(&common.dir).map_err(|e| format!("creating {}: {e}", common.dir.display()))?;
    let context = common.print_machine(&format!(
        "seed: {} streams x {} events of {} B, {} producers, {} warm-up streams (evstore)",
        shape.streams,
        shape.events_per_stream,
        EVENT_DATA.len(),
        shape.producers,
        args.warmup_streams
    ));
    let mut outcomes = Vec::new();
    for system in &systems {
        match *system {
            "evstore" => outcomes.push(run_evstore(args, shape)?),
            "naive" => outcomes.push(run_naive(args, shape)?),
            "sqlite" => outcomes.push(run_sqlite(args, shape)?),
            _ => {}
        }
    }
    if systems.contains(&"raw") {
        // The same bytes in writes of the average group size evstore achieved.
        let engine = outcomes.iter().find(|o| o.system == "evstore");
        let total_bytes = engine
            .map(|o| o.disk_bytes)
            .unwrap_or((shape.streams * shape.events_per_stream) as u64 * RAW_BYTES_PER_EVENT_GUESS);
        let write_bytes = engine
            .filter(|o| o.groups > 0)
            .map(|o| o.disk_bytes.div_ceil(o.groups) as usize)
            .unwrap_or(RAW_WRITE_BYTES_DEFAULT);
        let plan = RawPlan { total_bytes, write_bytes, depth: common.in_flight, sync: common.raw_sync() };
        let data = common.data_dir("raw")?;
        let outcome = raw::run(&data.path, &plan).map_err(|e| format!("raw disk baseline: {e}"))?;
        common.note(&format!(
            "raw: {} writes of {} B, {} in flight (its events are writes, its latency is per write)",
            outcome.events,
            plan.write_bytes(),
            outcome.in_flight
        ));
        outcomes.push(outcome);
    }
    common.print(&outcomes, &context);
    let find = |name: &str| outcomes.iter().find(|o| o.system == name);
    let tag = common.durability_tag();
    for peer in ["naive", "sqlite"] {
        if let (Some(engine), Some(other)) = (find("evstore"), find(peer)) {
            common.note(&format!(
                "evstore / {peer} events/s: {:.0} / {:.0} = {:.2}x{tag}",
                engine.events_per_sec(),
                other.events_per_sec(),
                engine.events_per_sec() / other.events_per_sec()
            ));
        }
    }
    if let (Some(engine), Some(raw)) = (find("evstore"), find("raw")) {
        common.note(&format!(
            "evstore disk MB/s / raw disk MB/s (same bytes, same write size): {:.1} / {:.1} = {:.2}{tag}",
            engine.disk_mb_per_sec(),
            raw.disk_mb_per_sec(),
            engine.disk_mb_per_sec() / raw.disk_mb_per_sec()
        ));
    }
    Ok(())
}

fn lowload(args: &LowloadArgs) -> Result<(), String> {
    let common = &args.common;
    std::fs::create_dir_all(&common.dir).map_err(|e| format!("creating {}: {e}", common.dir.display()))?;
    let context = common.print_machine(&format!("lowload: {} events, one at a time, each waited", args.events));
    let engine = {
        let data = common.data_dir("evstore")?;
        let store = Store::open(&data.path, common.options())
            .map_err(|e| format!("opening evstore in {}: {e}", data.path.display()))?;
        let append = |stream: &str| {
            store
                .append(stream, ExpectedVersion::Any, [Event::new(EVENT_TYPE, EVENT_DATA)])
                .and_then(|ticket| ticket.wait())
                .map_err(|e| format!("evstore append to {stream}: {e}"))
        };
        // Warm-up, not counted: the first append waits for the first segment to be prepared.
        append("warmup")?;
        let before = store.stats();
        let mut latency_us = histogram();
        let t0 = Instant::now();
        for i in 0..args.events {
            let stream = format!("users/{}", i % 100);
            let start = Instant::now();
            append(&stream)?;
            latency_us.saturating_record(start.elapsed().as_micros() as u64);
        }
        let seconds = t0.elapsed().as_secs_f64();
        let after = store.stats();
        let backend = store.backend();
        store.close().map_err(|e| format!("closing evstore: {e}"))?;
        evstore_outcome(common, backend, 1, seconds, before, after, latency_us)
    };
    // The disk's answer to the same question: one 4 KiB write made durable at a time.
    let plan = RawPlan { total_bytes: args.events as u64 * 4096, write_bytes: 4096, depth: 1, sync: common.raw_sync() };
    let raw = {
        let data = common.data_dir("raw")?;
        raw::run(&data.path, &plan).map_err(|e| format!("raw disk baseline: {e}"))?
    };
    let tag = common.durability_tag();
    let outcomes = [engine, raw];
    common.print(&outcomes, &context);
    let [engine, raw] = &outcomes;
    common.note(&format!(
        "evstore disk bytes per record byte: {:.2} ({} B on disk for {} B of records){tag}",
        engine.disk_per_record(),
        engine.disk_bytes,
        engine.record_bytes
    ));
    common.note(&format!(
        "evstore p50 / raw 4 KiB write p50: {} / {} us = {:.2}{tag}",
        engine.pct(0.5),
        raw.pct(0.5),
        engine.pct(0.5) as f64 / raw.pct(0.5).max(1) as f64
    ));
    Ok(())
}
