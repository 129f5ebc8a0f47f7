//! evstore-bench: the seed workload (and a low-load probe) against evstore, a naive port of the
//! seed's design and the raw disk, all measured in the same run on the same file system.
//! How we measure: ../shared/BENCH.md. Results and the commands behind them: docs/results.md.

mod machine;
mod naive;
mod raw;
mod report;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use evstore::{Backend, Event, ExpectedVersion, Options, SegmentPrepare, Store, SyncMode};
use hdrhistogram::Histogram;

use report::{histogram, Outcome};

/// The seed's event: type and JSON data (38 bytes).
const EVENT_TYPE: &str = "ItemCreated";
const EVENT_DATA: &[u8] = br#"{"Type":"ItemCreated","ItemId":"1324"}"#;

#[derive(Parser)]
#[command(name = "evstore-bench", about = "evstore beside a naive baseline and the raw disk, in one run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seed workload: streams x events, producers append a stream's events then wait for all.
    Seed(SeedArgs),
    /// Low load: one small event at a time, each waited before the next (space and latency).
    Lowload(LowloadArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SyncArg {
    Dsync,
    Fdatasync,
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

#[derive(clap::Args, Clone)]
struct Common {
    /// Parent directory of the data directories (each system gets a fresh one).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    #[arg(long, value_enum, default_value = "dsync")]
    sync: SyncArg,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    #[arg(long, value_enum, default_value = "zeroed")]
    segment_prepare: PrepareArg,
    #[arg(long, default_value_t = 256)]
    segment_mib: u64,
    #[arg(long, default_value_t = 4096)]
    group_kib: usize,
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    #[arg(long, default_value_t = 64)]
    busy_group_kib: usize,
    /// One JSON object per system per line instead of the table.
    #[arg(long)]
    json: bool,
    /// Keep the data directories.
    #[arg(long)]
    keep: bool,
    /// Where to write <system>.hgrm percentile files.
    #[arg(long, default_value = ".")]
    hgrm_dir: PathBuf,
}

#[derive(clap::Args)]
struct SeedArgs {
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    #[arg(long, default_value_t = 1_000)]
    events_per_stream: usize,
    /// Producer threads (default: available cores).
    #[arg(long)]
    producers: Option<usize>,
    /// Comma-separated: evstore, naive, raw.
    #[arg(long, default_value = "evstore,naive,raw")]
    systems: String,
    /// Streams appended (per system) before timing starts; not counted.
    #[arg(long, default_value_t = 100)]
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Seed(args) => seed(args),
        Command::Lowload(args) => lowload(args),
    };
    if let Err(message) = result {
        eprintln!("evstore-bench: {message}");
        std::process::exit(1);
    }
}

impl Common {
    fn options(&self) -> Options {
        let mut options = Options::default();
        options.sync = match self.sync {
            SyncArg::Dsync => SyncMode::Dsync,
            SyncArg::Fdatasync => SyncMode::Fdatasync,
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

    fn sync_label(&self) -> &'static str {
        self.options().sync.label()
    }

    fn data_dir(&self, system: &str) -> PathBuf {
        self.dir.join(format!("evstore-bench-data-{}-{system}", std::process::id()))
    }

    fn print_machine(&self, workload: &str) {
        if self.json {
            return;
        }
        println!("# evstore-bench {workload}");
        println!(
            "# machine: kernel {}, {} cores, file system {} at {}, device write cache: {}",
            machine::kernel(),
            machine::cores(),
            machine::file_system(&self.dir),
            self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone()).display(),
            machine::write_cache(&self.dir)
        );
        let o = self.options();
        println!(
            "# evstore options: sync {}, backend {:?}, segment {} MiB ({:?}), group max {} KiB, groups in flight {}, busy group min {} KiB, queue {} appends",
            o.sync.label(),
            o.backend,
            o.segment_bytes >> 20,
            o.segment_prepare,
            o.group_bytes_max >> 10,
            o.groups_in_flight_max,
            o.busy_group_bytes_min >> 10,
            o.queue_appends_max
        );
        if o.sync == SyncMode::None {
            println!("# WARNING: sync none is NOT DURABLE; its figures are for comparison only");
        }
    }

    fn print(&self, outcomes: &[Outcome]) {
        if self.json {
            for o in outcomes {
                println!("{}", o.json());
            }
            return;
        }
        println!("{}", Outcome::header());
        for o in outcomes {
            println!("{}", o.row());
        }
        for o in outcomes {
            match o.write_hgrm(&self.hgrm_dir) {
                Ok(path) => println!("# {} latency distribution: {}", o.system, path.display()),
                Err(e) => eprintln!("# could not write {}.hgrm: {e}", o.system),
            }
        }
    }

    fn cleanup(&self, dir: &Path) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs the seed client: each producer takes the next stream, appends its events without
/// waiting, then waits for all of them. Latency: from just before `append` to the return of
/// the wait that told the caller.
#[allow(clippy::too_many_arguments)]
fn drive<S, P, T, A, W>(
    streams: usize,
    events: usize,
    producers: usize,
    prefix: &str,
    sender: S,
    append: A,
    wait: W,
) -> (f64, Histogram<u64>)
where
    S: Fn() -> P + Sync,
    A: Fn(&P, &str) -> T + Sync,
    W: Fn(T) + Sync,
{
    let next = AtomicUsize::new(0);
    let merged = Mutex::new(histogram());
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..producers {
            scope.spawn(|| {
                let producer = sender();
                let mut hist = histogram();
                let mut pending: Vec<(Instant, T)> = Vec::with_capacity(events);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= streams {
                        break;
                    }
                    let stream = format!("{prefix}{i}");
                    for _ in 0..events {
                        let start = Instant::now();
                        pending.push((start, append(&producer, &stream)));
                    }
                    for (start, done) in pending.drain(..) {
                        wait(done);
                        hist.record(start.elapsed().as_micros().max(1) as u64).expect("latency in range");
                    }
                }
                merged.lock().expect("histogram lock").add(&hist).expect("same bounds");
            });
        }
    });
    (t0.elapsed().as_secs_f64(), merged.into_inner().expect("histogram lock"))
}

fn payload_per_event(stream: &str) -> u64 {
    (stream.len() + EVENT_TYPE.len() + EVENT_DATA.len()) as u64
}

fn run_evstore(args: &SeedArgs, producers: usize) -> Result<Outcome, String> {
    let common = &args.common;
    let dir = common.data_dir("evstore");
    let _ = std::fs::remove_dir_all(&dir);
    let store =
        Store::open(&dir, common.options()).map_err(|e| format!("opening evstore in {}: {e}", dir.display()))?;
    let append = |store: &Store, stream: &str| {
        store
            .append(stream, ExpectedVersion::Any, [Event::new(EVENT_TYPE, EVENT_DATA.to_vec())])
            .expect("append accepted")
    };
    let wait = |ticket: evstore::Ticket| {
        ticket.wait().expect("append durable");
    };
    if args.warmup_streams > 0 {
        drive(args.warmup_streams, args.events_per_stream, producers, "warmup/", || store.clone(), append, wait);
    }
    let before = store.stats();
    let (seconds, latency_us) =
        drive(args.streams, args.events_per_stream, producers, "users/", || store.clone(), append, wait);
    let after = store.stats();
    let backend = store.backend();
    store.close().map_err(|e| format!("closing evstore: {e}"))?;
    common.cleanup(&dir);
    if !common.json {
        println!("# evstore backend in use: {backend:?}");
    }
    Ok(Outcome {
        system: "evstore".into(),
        sync: common.sync_label().into(),
        producers,
        events: after.events - before.events,
        seconds,
        payload_bytes: after.payload_bytes - before.payload_bytes,
        disk_bytes: after.disk_bytes - before.disk_bytes,
        record_bytes: after.record_bytes - before.record_bytes,
        syncs: after.syncs - before.syncs,
        groups: after.groups - before.groups,
        latency_us,
    })
}

fn run_naive(args: &SeedArgs, producers: usize) -> Result<Outcome, String> {
    let common = &args.common;
    let dir = common.data_dir("naive");
    let _ = std::fs::remove_dir_all(&dir);
    let store = naive::Naive::open(&dir).map_err(|e| format!("opening the naive store: {e}"))?;
    let append = |sender: &std::sync::mpsc::Sender<naive::Message>, stream: &str| {
        naive::Naive::append(sender, stream, EVENT_TYPE, EVENT_DATA)
    };
    let wait = |done: std::sync::mpsc::Receiver<()>| done.recv().expect("naive writer completed the event");
    if args.warmup_streams > 0 {
        drive(args.warmup_streams, args.events_per_stream, producers, "warmup/", || store.sender(), append, wait);
    }
    let c = &store.counters;
    let (syncs0, records0, events0) =
        (c.syncs.load(Ordering::SeqCst), c.record_bytes.load(Ordering::SeqCst), c.events.load(Ordering::SeqCst));
    let (seconds, latency_us) =
        drive(args.streams, args.events_per_stream, producers, "users/", || store.sender(), append, wait);
    let events = c.events.load(Ordering::SeqCst) - events0;
    let record_bytes = c.record_bytes.load(Ordering::SeqCst) - records0;
    let syncs = c.syncs.load(Ordering::SeqCst) - syncs0;
    store.close().map_err(|e| format!("closing the naive store: {e}"))?;
    common.cleanup(&dir);
    let payload: u64 = (0..args.streams).map(|i| payload_per_event(&format!("users/{i}"))).sum::<u64>()
        * args.events_per_stream as u64;
    Ok(Outcome {
        system: "naive".into(),
        sync: "fdatasync".into(),
        producers,
        events,
        seconds,
        payload_bytes: payload,
        // A buffered append-only file: what is written is exactly the records.
        disk_bytes: record_bytes,
        record_bytes,
        syncs,
        groups: syncs,
        latency_us,
    })
}

fn seed(args: SeedArgs) -> Result<(), String> {
    let producers = args.producers.unwrap_or_else(machine::cores).max(1);
    let common = &args.common;
    std::fs::create_dir_all(&common.dir).map_err(|e| format!("creating {}: {e}", common.dir.display()))?;
    common.print_machine(&format!(
        "seed: {} streams x {} events of {} B, {producers} producers, {} warm-up streams",
        args.streams,
        args.events_per_stream,
        EVENT_DATA.len(),
        args.warmup_streams
    ));
    let systems: Vec<&str> = args.systems.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut outcomes = Vec::new();
    for system in &systems {
        match *system {
            "evstore" => outcomes.push(run_evstore(&args, producers)?),
            "naive" => outcomes.push(run_naive(&args, producers)?),
            "raw" => {}
            other => return Err(format!("unknown system {other:?} (use evstore, naive, raw)")),
        }
    }
    if systems.contains(&"raw") {
        // Same bytes and group size as evstore wrote, else ~96 B per event in 256 KiB writes.
        let engine = outcomes.iter().find(|o| o.system == "evstore");
        let total_bytes = engine.map(|o| o.disk_bytes).unwrap_or((args.streams * args.events_per_stream * 96) as u64);
        let write_bytes =
            engine.filter(|o| o.groups > 0).map(|o| (o.disk_bytes / o.groups) as usize).unwrap_or(256 << 10);
        let plan = raw::RawPlan {
            total_bytes,
            write_bytes,
            depth: common.in_flight,
            dsync: common.sync == SyncArg::Dsync,
            sync: common.sync != SyncArg::None,
        };
        let dir = common.data_dir("raw");
        let outcome = raw::run(&dir, &plan).map_err(|e| format!("raw disk baseline: {e}"))?;
        common.cleanup(&dir);
        if !common.json {
            println!(
                "# raw: {} writes of {} B, {} in flight (its 'events' are writes)",
                outcome.events,
                write_bytes.div_ceil(4096) * 4096,
                plan.depth
            );
        }
        outcomes.push(outcome);
    }
    common.print(&outcomes);
    if !common.json {
        let find = |name: &str| outcomes.iter().find(|o| o.system == name);
        if let (Some(engine), Some(naive)) = (find("evstore"), find("naive")) {
            println!("# evstore / naive events/s: {:.2}x", engine.events_per_sec() / naive.events_per_sec());
        }
        if let (Some(engine), Some(raw)) = (find("evstore"), find("raw")) {
            println!(
                "# evstore disk MB/s / raw disk MB/s (same bytes, same write size): {:.1} / {:.1} = {:.2}",
                engine.disk_mb_per_sec(),
                raw.disk_mb_per_sec(),
                engine.disk_mb_per_sec() / raw.disk_mb_per_sec()
            );
        }
    }
    Ok(())
}

fn lowload(args: LowloadArgs) -> Result<(), String> {
    let common = &args.common;
    std::fs::create_dir_all(&common.dir).map_err(|e| format!("creating {}: {e}", common.dir.display()))?;
    common.print_machine(&format!("lowload: {} events, one at a time, each waited", args.events));
    let dir = common.data_dir("evstore");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir, common.options()).map_err(|e| format!("opening evstore: {e}"))?;
    // Warm-up: the first append waits for the first segment to be prepared.
    store
        .append("warmup", ExpectedVersion::Any, [Event::new(EVENT_TYPE, EVENT_DATA.to_vec())])
        .and_then(|t| t.wait())
        .map_err(|e| format!("warm-up append: {e}"))?;
    let before = store.stats();
    let mut latency_us = histogram();
    let t0 = Instant::now();
    for i in 0..args.events {
        let start = Instant::now();
        store
            .append(&format!("users/{}", i % 100), ExpectedVersion::Any, [Event::new(EVENT_TYPE, EVENT_DATA.to_vec())])
            .and_then(|t| t.wait())
            .map_err(|e| format!("append: {e}"))?;
        latency_us.record(start.elapsed().as_micros().max(1) as u64).expect("latency in range");
    }
    let seconds = t0.elapsed().as_secs_f64();
    let after = store.stats();
    store.close().map_err(|e| format!("closing evstore: {e}"))?;
    common.cleanup(&dir);
    let engine = Outcome {
        system: "evstore".into(),
        sync: common.sync_label().into(),
        producers: 1,
        events: after.events - before.events,
        seconds,
        payload_bytes: after.payload_bytes - before.payload_bytes,
        disk_bytes: after.disk_bytes - before.disk_bytes,
        record_bytes: after.record_bytes - before.record_bytes,
        syncs: after.syncs - before.syncs,
        groups: after.groups - before.groups,
        latency_us,
    };
    let plan = raw::RawPlan {
        total_bytes: args.events as u64 * 4096,
        write_bytes: 4096,
        depth: 1,
        dsync: common.sync == SyncArg::Dsync,
        sync: common.sync != SyncArg::None,
    };
    let raw_dir = common.data_dir("raw");
    let raw = raw::run(&raw_dir, &plan).map_err(|e| format!("raw disk baseline: {e}"))?;
    common.cleanup(&raw_dir);
    common.print(&[engine, raw]);
    Ok(())
}
