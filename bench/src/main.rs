//! evstore-bench: the seed workload (and a low-load probe) against evstore, a naive port of the
//! seed's design, SQLite used as an event store and the raw disk, all measured in the same run on
//! the same file system.
//! How we measure: shared/BENCH.md. Results and the commands behind them: docs/results.md.

mod channel;
mod cleanup;
mod disk;
mod latency;
mod machine;
mod matrix;
mod naive;
mod okaywal_peer;
mod peers;
mod plot;
mod progress;
mod projection_costs;
mod raw;
mod read;
mod reopen;
mod report;
#[cfg(feature = "rocksdb")]
mod rocksdb_peer;
mod sqlite;
mod tune;
mod workload;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use evstore::{Backend, Event, ExpectedVersion, Options, SegmentPrepare, Stats, Store, SyncMode};
use serde_json::{json, Map, Value};

use cleanup::DataDir;
use peers::{Driven, PeerKind};
use progress::Progress;
use raw::{RawPlan, RawSync};
use report::{histogram, process_cpu_seconds, Outcome};
use workload::{drive, EvstoreClient, Shape, EVENT_DATA, EVENT_TYPE};

/// Bytes per event the raw baseline assumes when evstore did not run to say how much it wrote.
const RAW_BYTES_PER_EVENT_GUESS: u64 = 96;
/// Raw write size when evstore did not run to say what group size it achieved.
const RAW_WRITE_BYTES_DEFAULT: usize = 256 << 10;

/// The seed's systems by default: every peer this build has, and the raw disk.
#[cfg(not(feature = "rocksdb"))]
const SEED_SYSTEMS_DEFAULT: &str = "evstore,naive,sqlite,okaywal,raw";
#[cfg(feature = "rocksdb")]
const SEED_SYSTEMS_DEFAULT: &str = "evstore,naive,sqlite,okaywal,rocksdb,raw";

/// Where `.hgrm` files go unless `--out` says otherwise: beside cargo's build output, never in
/// the repository's tree.
const OUT_DIR_DEFAULT: &str = "target/evstore-bench";

/// Printed under `--help`: what is measured and against what, so a first reader knows what the
/// table's rows are before running it.
const ABOUT_LONG: &str = "\
evstore measured beside its peers and the raw disk, in one run, on one file system.

Every figure is printed beside baselines measured in the same process run: quote the ratios,
not the absolute numbers (the machine is shared and noisy). An event counts only once its
caller has been told it is durable.

The seed workload (`seed`): 10,000 streams x 1,000 events of 38 bytes (type \"ItemCreated\",
data {\"Type\":\"ItemCreated\",\"ItemId\":\"1324\"}), one producer thread per core. Each producer
takes the next stream, appends its 1,000 events one call each without waiting, waits until all
are durable, then takes the next stream. It is the workload of the seed project evstore grew
from.

The systems (`--systems`):
  evstore  this crate: one submitter thread group-commits appends with O_DIRECT writes through
           io_uring into pre-written segment files.
  naive    the seed's own design, ported: one channel message per event to one writer thread,
           a buffered append-only file, one fdatasync per drained batch.
  sqlite   SQLite (bundled) as an event store: WAL, synchronous=FULL, one writer connection,
           one transaction per drained batch.
  okaywal  okaywal, a Rust write-ahead log with group commit: 4 committer threads, each drained
           batch one entry, committed (written, then fdatasync shared by concurrent commits).
  rocksdb  (only in a build with `--features rocksdb`) RocksDB, one key per event, each drained
           batch one WriteBatch written with sync=true by one of 4 committer threads.
  raw      the disk itself: io_uring O_DIRECT writes of evstore's average group size, as many
           bytes as evstore wrote, each made durable the same way. Its \"events\" are writes and
           its latency is per write.

The matrix (`append`), latency at a fixed rate without coordinated omission (`latency`), the disk
alone (`raw`) and an option sweep (`tune`): docs/bench-matrix.md.

Progress goes to stderr (only when it is a terminal); results to stdout (`--json`: one object
per line). The data directories are removed at the end and on Ctrl-C (`--keep` keeps them).
How we measure: shared/BENCH.md; figures and the commands behind them: docs/results.md.";

#[derive(Parser)]
#[command(
    name = "evstore-bench",
    version,
    about = "evstore beside a naive port of the seed, SQLite and the raw disk, measured in one run",
    long_about = ABOUT_LONG
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seed workload against evstore, naive, sqlite and raw (see `--help` for what each is).
    ///
    /// Producers each take a stream, append its events without waiting, then wait for all of
    /// them. Prints one row per system: throughput, syncs, group size, space and
    /// append-to-durable latency percentiles; writes each system's full latency distribution
    /// to `<out>/<system>.hgrm`.
    Seed(SeedArgs),
    /// Low load: one small event at a time, each waited before the next (space and latency),
    /// beside one 4 KiB durable write at a time on the raw disk.
    Lowload(LowloadArgs),
    /// The read side over the seed's events: stream reads (warm, cold), read_all, subscription
    /// catch-up and live delivery, beside pread and SQLite.
    Read(read::ReadArgs),
    /// Reopen times (clean, after SIGKILL, without a checkpoint) and index bytes per event.
    Reopen(reopen::ReopenArgs),
    /// Seed 003's four projection strategies through ProjectionRunner, with the seed's cost model.
    ProjectionCosts(projection_costs::ProjectionCostsArgs),
    /// Draws `.hgrm` files and `--json` output as SVG charts: latency by percentile per system,
    /// and throughput per system.
    Plot(plot::PlotArgs),
    /// The matrix: event size x producers x events per append call, evstore beside every peer
    /// and the raw disk at the group size evstore reached, one line per system per cell.
    Append(matrix::AppendArgs),
    /// Open-loop latency: appends scheduled at a fixed rate (or a share of the maximum measured
    /// first), each timed from its scheduled time; percentiles and a `.hgrm` file per system.
    Latency(latency::LatencyArgs),
    /// The disk alone at given write sizes: O_DIRECT + RWF_DSYNC one at a time and pipelined,
    /// and plain pwrite + fdatasync.
    Raw(disk::RawArgs),
    /// Sweeps evstore's options one at a time on a reduced seed workload; prints a table and the
    /// best value of each for this machine.
    Tune(tune::TuneArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum SyncArg {
    /// fdatasync after each write (evstore links it to the write in io_uring).
    Fdatasync,
    /// Each write carries RWF_DSYNC / O_DSYNC: durable when it completes.
    Dsync,
    /// NOT DURABLE: for comparison only.
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// io_uring when the kernel allows it, else the portable backend (with a warning).
    Auto,
    /// io_uring or fail.
    IoUring,
    /// pwrite + fdatasync from the submitter thread.
    Portable,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PrepareArg {
    /// Segments are written with zeros ahead of use (no extent conversion on the hot path).
    Zeroed,
    /// Segments are only fallocated (cheaper to prepare; first writes convert extents).
    Fallocated,
    /// Zeroed while groups are small, fallocated once they average 384 KiB or more.
    Auto,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Parent directory of the data directories (each system gets a fresh one, removed at the
    /// end and on Ctrl-C). Use a real disk: evstore refuses tmpfs.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// How appends are made durable (`none` is NOT DURABLE, for comparison only).
    #[arg(long, value_enum, default_value = "dsync")]
    sync: SyncArg,
    /// evstore's I/O backend.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// How evstore prepares its segments ahead of use.
    #[arg(long, value_enum, default_value = "auto")]
    segment_prepare: PrepareArg,
    /// evstore's segment size, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    segment_mib: u64,
    /// evstore's largest group (one write), in KiB.
    #[arg(long, default_value_t = 4096, value_name = "KIB")]
    group_kib: usize,
    /// Groups in flight in evstore; writes in flight in the raw baseline.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// evstore writes the open group once it holds this many KiB, even if nobody waits on it.
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    busy_group_kib: usize,
    /// How long evstore's open group waits for more appends when nobody waits on it, in
    /// microseconds (Options::linger).
    #[arg(long, default_value_t = 1000, value_name = "US")]
    linger_us: u64,
    /// evstore's polling mode: its submitter and waiting producers spin with yields instead of
    /// sleeping (Options::polling; more CPU for more throughput).
    #[arg(long)]
    polling: bool,
    /// Turn off evstore's polling around small writes (Options::poll_small_writes, on by
    /// default: the submitter polls, with yields, for the completion of a group of at most 8
    /// appends and briefly for the next awaited append, instead of sleeping).
    #[arg(long)]
    no_poll_small_writes: bool,
    /// Bytes of each evstore producer handle's queue, in KiB (Options::queue_bytes; a power of two).
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    queue_kib: usize,
    /// One JSON object per system per line on stdout (notes and progress go to stderr).
    #[arg(long)]
    json: bool,
    /// Keep the data directories (their paths are printed on stderr).
    #[arg(long)]
    keep: bool,
    /// Directory for the `<system>.hgrm` latency distributions (created if missing).
    #[arg(long, alias = "hgrm-dir", default_value = OUT_DIR_DEFAULT)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct SeedArgs {
    /// Streams in the workload.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Events appended to each stream (one `append` call each, 38-byte data).
    #[arg(long, default_value_t = 1_000)]
    events_per_stream: usize,
    /// Producer threads [default: available cores].
    #[arg(long)]
    producers: Option<usize>,
    /// Comma-separated, from: evstore, naive, sqlite, okaywal, rocksdb (only in a build with the
    /// `rocksdb` feature), raw (raw always runs last: it copies evstore's byte volume and group size).
    #[arg(long, default_value = SEED_SYSTEMS_DEFAULT)]
    systems: String,
    /// Streams appended to evstore before timing starts; not counted.
    #[arg(long, default_value_t = 0)]
    warmup_streams: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct LowloadArgs {
    /// Events appended, one at a time, each waited before the next (100 streams in turn), by
    /// evstore, then by the naive port and SQLite the same way, then the raw disk's 4 KiB writes.
    #[arg(long, default_value_t = 2_000)]
    events: usize,
    #[command(flatten)]
    common: Common,
}

fn main() {
    cleanup::install_handler();
    let result = match Cli::parse().command {
        Command::Seed(args) => seed(&args),
        Command::Lowload(args) => lowload(&args),
        Command::Read(args) => read::run(&args),
        Command::Reopen(args) => reopen::reopen(&args),
        Command::ProjectionCosts(args) => projection_costs::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Append(args) => matrix::run(&args),
        Command::Latency(args) => latency::run(&args),
        Command::Raw(args) => disk::run(&args),
        Command::Tune(args) => tune::run(&args),
    };
    if let Err(message) = result {
        eprintln!("evstore-bench: error: {message}");
        std::process::exit(1);
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
            PrepareArg::Auto => SegmentPrepare::Auto,
        };
        options.segment_bytes = self.segment_mib << 20;
        options.group_bytes_max = self.group_kib << 10;
        options.groups_in_flight_max = self.in_flight;
        options.busy_group_bytes_min = self.busy_group_kib << 10;
        options.linger = std::time::Duration::from_micros(self.linger_us);
        options.polling = self.polling;
        options.poll_small_writes = !self.no_poll_small_writes;
        options.queue_bytes = self.queue_kib << 10;
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

    /// A `#` line for humans (see `note`).
    fn note(&self, line: &str) {
        note(self.json, line);
    }

    /// The machine and the engine options (BENCH.md rule 6), as printed and as JSON fields.
    fn print_machine(&self, workload: &str) -> Map<String, Value> {
        let o = self.options();
        let mut context = print_machine(&self.dir, self.json, workload);
        self.note(&format!(
            "evstore options: sync {}, backend {:?}, segment {} MiB ({:?}), group max {} KiB, groups in flight {}, \
             busy group min {} KiB, queue {} KiB per producer, linger {} us, poll small writes {}{}",
            o.sync.label(),
            o.backend,
            o.segment_bytes >> 20,
            o.segment_prepare,
            o.group_bytes_max >> 10,
            o.groups_in_flight_max,
            o.busy_group_bytes_min >> 10,
            o.queue_bytes >> 10,
            o.linger.as_micros(),
            if o.poll_small_writes { "on" } else { "off" },
            if o.polling { ", POLLING" } else { "" }
        ));
        if !self.durable() {
            self.note("WARNING: sync none is NOT DURABLE; its figures are for comparison only");
        }
        let options = json!({
            "segment_mib": o.segment_bytes >> 20,
            "segment_prepare": format!("{:?}", o.segment_prepare),
            "group_kib": o.group_bytes_max >> 10,
            "groups_in_flight_max": o.groups_in_flight_max,
            "busy_group_kib": o.busy_group_bytes_min >> 10,
            "queue_kib": o.queue_bytes >> 10,
            "linger_us": o.linger.as_micros() as u64,
            "polling": o.polling,
            "poll_small_writes": o.poll_small_writes,
            "sync_mode": o.sync.label(),
        });
        if let Value::Object(fields) = options {
            context.extend(fields);
        }
        context
    }

    /// The table (or JSON lines), then the `.hgrm` files, named `<hgrm_prefix><system>.hgrm`.
    fn print(&self, outcomes: &[Outcome], context: &Map<String, Value>, hgrm_prefix: &str) {
        if self.json {
            for o in outcomes {
                println!("{}", o.json(context));
            }
        } else {
            println!("{}", Outcome::header());
            for o in outcomes {
                println!("{}", o.row());
            }
            for line in Outcome::legend(outcomes) {
                println!("# {line}");
            }
        }
        self.print_hgrm(outcomes, hgrm_prefix);
    }

    /// Writes each outcome's full latency distribution to `<out>/<hgrm_prefix><system>.hgrm`.
    fn print_hgrm(&self, outcomes: &[Outcome], hgrm_prefix: &str) {
        if let Err(e) = std::fs::create_dir_all(&self.out) {
            eprintln!("# could not create {}: {e}; no .hgrm files written", self.out.display());
            return;
        }
        for o in outcomes {
            match o.write_hgrm(&self.out, hgrm_prefix) {
                Ok(path) => self.note(&format!("{} latency distribution: {}", o.system, path.display())),
                Err(e) => eprintln!("# could not write {}.hgrm in {}: {e}", o.system, self.out.display()),
            }
        }
    }
}

/// A `#` line for humans: on stdout beside the table, on stderr in JSON mode so that stdout
/// stays one JSON object per line.
fn note(json: bool, line: &str) {
    if json {
        eprintln!("# {line}");
    } else {
        println!("# {line}");
    }
}

/// The machine (BENCH.md rule 6), printed as `#` lines and returned as JSON fields.
fn print_machine(dir: &Path, json: bool, workload: &str) -> Map<String, Value> {
    let (kernel, cores) = (machine::kernel(), machine::cores());
    let (file_system, write_cache) = (machine::file_system(dir), machine::write_cache(dir));
    let shown = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    note(json, &format!("evstore-bench {workload}"));
    note(
        json,
        &format!(
            "machine: kernel {kernel}, {cores} cores, file system {file_system} at {}, device write cache: {write_cache}",
            shown.display()
        ),
    );
    let mut context = Map::new();
    context.insert("workload".into(), json!(workload));
    context.insert("kernel".into(), json!(kernel));
    context.insert("cores".into(), json!(cores));
    context.insert("file_system".into(), json!(file_system));
    context.insert("write_cache".into(), json!(write_cache));
    context
}

/// Events in a run of the seed workload.
fn events(shape: Shape) -> u64 {
    (shape.streams * shape.events_per_stream) as u64
}

/// An evstore outcome from the stats before and after the measured part.
fn evstore_outcome(
    common: &Common,
    backend: Backend,
    producers: usize,
    seconds: f64,
    (before, after): (Stats, Stats),
    latency_us: hdrhistogram::Histogram<u64>,
    cpu_seconds: f64,
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
        cpu_seconds: Some(cpu_seconds),
    }
}

/// Runs evstore in a fresh data directory with the options of `common`: `warmup` first (not
/// counted), then `run`, timed, with the store's stats and the process's CPU time around it.
fn measure_evstore(
    common: &Common,
    producers: usize,
    warmup: impl FnOnce(&Store) -> Result<(), String>,
    run: impl FnOnce(&Store) -> Driven,
) -> Result<Outcome, String> {
    let data = common.data_dir("evstore")?;
    let store = Store::open(&data.path, common.options())
        .map_err(|e| format!("opening evstore in {}: {e}", data.path.display()))?;
    warmup(&store)?;
    let before = store.stats();
    let cpu_start = process_cpu_seconds();
    let driven = run(&store);
    let cpu_seconds = process_cpu_seconds() - cpu_start;
    let after = store.stats();
    let backend = store.backend();
    let closed = store.close().map_err(|e| format!("closing evstore: {e}"));
    let (seconds, latency_us) = driven?;
    closed?;
    Ok(evstore_outcome(common, backend, producers, seconds, (before, after), latency_us, cpu_seconds))
}

fn run_evstore(args: &SeedArgs, shape: Shape) -> Result<Outcome, String> {
    let warmup = |store: &Store| {
        if args.warmup_streams > 0 {
            let warmup = Shape { streams: args.warmup_streams, ..shape };
            let progress = Progress::start("warm-up", events(warmup), "events");
            drive(&EvstoreClient(store), warmup, "warmup/", &progress)?;
            progress.finish();
        }
        Ok(())
    };
    let outcome = measure_evstore(&args.common, shape.producers, warmup, |store| {
        let progress = Progress::start("evstore", events(shape), "events");
        let driven = drive(&EvstoreClient(store), shape, "users/", &progress);
        progress.finish();
        driven
    })?;
    args.common.note(&format!("evstore backend in use: {}", outcome.backend));
    note_waits(&args.common, "evstore");
    Ok(outcome)
}

/// How many of the last run's streams made their caller block more than once (see
/// `workload::STREAMS_WAITED_AGAIN`): a run of appends that went out in more than one write.
fn note_waits(common: &Common, system: &str) {
    let again = workload::STREAMS_WAITED_AGAIN.load(std::sync::atomic::Ordering::Relaxed);
    let driven = workload::STREAMS_DRIVEN.load(std::sync::atomic::Ordering::Relaxed);
    common.note(&format!(
        "{system}: {again} of {driven} streams made their caller block more than once (the stream's events were not all durable when its first blocking wait returned)"
    ));
    let mean_us = |phase: usize| {
        workload::STREAM_PHASES_NS[phase].load(std::sync::atomic::Ordering::Relaxed) / driven.max(1) / 1000
    };
    common.note(&format!(
        "{system}: per stream (means): appending {} µs, then waiting for its first append {} µs, then for the others {} µs",
        mean_us(0),
        mean_us(1),
        mean_us(2)
    ));
}

/// A peer through the seed's client, no warm-up (as the seed measured them).
fn run_peer(common: &Common, kind: PeerKind, shape: Shape) -> Result<Outcome, String> {
    let (outcome, note) = peers::measure(
        common,
        kind,
        shape.producers,
        |_| Ok(()),
        |client| {
            let progress = Progress::start(kind.name(), events(shape), "events");
            let driven = drive(client, shape, "users/", &progress);
            progress.finish();
            driven
        },
    )?;
    note_waits(common, kind.name());
    if let Some(note) = note {
        common.note(&format!("{note}{}", common.durability_tag()));
    }
    Ok(outcome)
}

fn seed(args: &SeedArgs) -> Result<(), String> {
    let common = &args.common;
    let shape = Shape {
        streams: args.streams,
        events_per_stream: args.events_per_stream,
        producers: args.producers.unwrap_or_else(machine::cores).max(1),
    };
    let mut allowed = vec!["evstore", "raw"];
    allowed.extend(PeerKind::ALL.iter().map(|p| p.name()));
    let systems = peers::runnable(peers::parse_systems(&args.systems, &allowed)?, common);
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
        match (system.as_str(), PeerKind::parse(system)) {
            ("evstore", _) => outcomes.push(run_evstore(args, shape)?),
            (_, Some(kind)) => outcomes.push(run_peer(&args.common, kind, shape)?),
            _ => {}
        }
    }
    if systems.iter().any(|s| s == "raw") {
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
        let progress = Progress::start("raw", plan.writes(), "writes");
        let outcome = raw::run(&data.path, &plan, &progress).map_err(|e| format!("raw disk baseline: {e}"))?;
        progress.finish();
        common.note(&format!(
            "raw: {} writes of {} B, {} in flight (its events are writes, its latency is per write)",
            outcome.events,
            plan.write_bytes(),
            outcome.in_flight
        ));
        outcomes.push(outcome);
    }
    common.print(&outcomes, &context, "");
    let find = |name: &str| outcomes.iter().find(|o| o.system == name);
    let tag = common.durability_tag();
    for peer in PeerKind::ALL.iter().map(|p| p.name()) {
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
        let progress = Progress::start("evstore", args.events as u64, "events");
        let cpu_start = process_cpu_seconds();
        let t0 = Instant::now();
        for i in 0..args.events {
            let stream = format!("users/{}", i % 100);
            let start = Instant::now();
            append(&stream)?;
            latency_us.saturating_record(start.elapsed().as_micros() as u64);
            progress.add(1);
        }
        let seconds = t0.elapsed().as_secs_f64();
        progress.finish();
        let after = store.stats();
        let backend = store.backend();
        store.close().map_err(|e| format!("closing evstore: {e}"))?;
        let cpu_seconds = process_cpu_seconds() - cpu_start;
        evstore_outcome(common, backend, 1, seconds, (before, after), latency_us, cpu_seconds)
    };
    // The disk's answer to the same question: one 4 KiB write made durable at a time.
    let plan = RawPlan { total_bytes: args.events as u64 * 4096, write_bytes: 4096, depth: 1, sync: common.raw_sync() };
    let raw = {
        let data = common.data_dir("raw")?;
        let progress = Progress::start("raw", plan.writes(), "writes");
        let outcome = raw::run(&data.path, &plan, &progress).map_err(|e| format!("raw disk baseline: {e}"))?;
        progress.finish();
        outcome
    };
    // The peers, the same way: one event per append, each waited before the next.
    let one_at_a_time = Shape { streams: args.events, events_per_stream: 1, producers: 1 };
    let naive = run_peer(common, PeerKind::Naive, one_at_a_time)?;
    let sqlite = run_peer(common, PeerKind::Sqlite, one_at_a_time)?;
    let tag = common.durability_tag();
    let outcomes = [engine, naive, sqlite, raw];
    common.print(&outcomes, &context, "");
    let [engine, naive, sqlite, raw] = &outcomes;
    for outcome in [engine, naive, sqlite] {
        common.note(&format!(
            "{} disk bytes per record byte: {:.2} ({} B written for {} B of records){tag}",
            outcome.system,
            outcome.disk_per_record(),
            outcome.disk_bytes,
            outcome.record_bytes
        ));
    }
    common.note(&format!(
        "evstore p50 / raw 4 KiB write p50: {} / {} us = {:.2}{tag}",
        engine.pct(0.5),
        raw.pct(0.5),
        engine.pct(0.5) as f64 / raw.pct(0.5).max(1) as f64
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every subcommand and every flag says what it is: a first reader learns the bench from
    /// `--help`, not from the source.
    #[test]
    fn every_subcommand_and_flag_has_help() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        for command in cli.get_subcommands() {
            if command.get_about().is_none() {
                missing.push(command.get_name().to_string());
            }
            for arg in command.get_arguments() {
                let builtin = ["help", "version"].contains(&arg.get_id().as_str());
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                    missing.push(format!("{} --{}", command.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn the_help_names_the_seed_workload_and_every_peer() {
        let help = Cli::command().render_long_help().to_string();
        for needle in ["seed workload", "10,000 streams", "naive", "sqlite", "raw", "evstore"] {
            assert!(help.contains(needle), "--help does not mention {needle:?}");
        }
        assert!(Cli::command().get_version().is_some(), "--version");
    }

    #[test]
    fn hgrm_files_default_to_the_target_directory() {
        let cli = Cli::try_parse_from(["evstore-bench", "seed"]).unwrap();
        let Command::Seed(args) = cli.command else { panic!("seed") };
        assert_eq!(args.common.out, PathBuf::from(OUT_DIR_DEFAULT));
        let cli = Cli::try_parse_from(["evstore-bench", "lowload", "--hgrm-dir", "x"]).unwrap();
        let Command::Lowload(args) = cli.command else { panic!("lowload") };
        assert_eq!(args.common.out, PathBuf::from("x"), "the old flag still works");
    }
}
