//! `evstore-bench append`: the matrix. Every cell (event size x producers x events per append
//! call) runs evstore and each peer in turn, each in a fresh data directory, with the same
//! closed-loop load (`workload::Load`): each producer appends to its own streams without waiting
//! and waits for its oldest call once its window is full. Each system first runs a short warm-up
//! (a tenth of the budget, at most a fifth of the time limit), not counted. Then the raw disk
//! writes evstore's average group size, pipelined as evstore's groups are, and evstore's disk
//! throughput is divided by it.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::peers::{self, PeerKind};
use crate::progress::Progress;
use crate::raw::{self, RawPlan};
use crate::report::Outcome;
use crate::workload::{drive_windowed, Events, EvstoreClient, Load};
use crate::Common;

/// The event type of the matrix's events (its data is `--sizes` bytes of 0x5a).
pub const MATRIX_EVENT_TYPE: &str = "Bench";

#[cfg(not(feature = "rocksdb"))]
const SYSTEMS_DEFAULT: &str = "evstore,naive,sqlite,okaywal";
#[cfg(feature = "rocksdb")]
const SYSTEMS_DEFAULT: &str = "evstore,naive,sqlite,okaywal,rocksdb";

/// The raw reference writes at most this many bytes and this many writes per group size.
const RAW_REFERENCE_BYTES_MAX: u64 = 256 << 20;
const RAW_REFERENCE_WRITES_MAX: u64 = 2_000;

/// Bytes per event besides its data that a group must have room for: evstore's record header,
/// the stream id and the type, rounded up generously.
const EVENT_OVERHEAD_BYTES_MAX: usize = evstore::RECORD_HEADER_BYTES + 64;

#[derive(clap::Args)]
pub struct AppendArgs {
    /// Event sizes (data bytes per event), comma-separated; a k or m suffix means KiB or MiB.
    #[arg(long, value_delimiter = ',', value_parser = parse_bytes, default_value = "64,256,1k,4k,64k")]
    sizes: Vec<u64>,
    /// Producer threads, comma-separated; each appends through its own handle (a `Store` clone)
    /// to its own streams of 1,000 events.
    #[arg(long, value_delimiter = ',', default_value = "1,2,8,64")]
    producers: Vec<usize>,
    /// Events per append call, comma-separated (one atomic append of that many events). Lowered
    /// in a cell where that many events would not fit one group (`--group-kib`); the line says so.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    batch: Vec<usize>,
    /// Budget per system per cell, in events (all producers together); also bounded by `--mib`
    /// and `--seconds-max`.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Budget per system per cell, in MiB of event data.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    mib: u64,
    /// Time limit per system per cell, in seconds: producers stop taking new calls then, and the
    /// figures cover what they did (a slow peer does not make a cell take minutes).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    seconds_max: f64,
    /// The window of each producer: it waits for its oldest outstanding call once this many
    /// events are outstanding...
    #[arg(long, default_value_t = 1_000)]
    window_events: u64,
    /// ...or this many KiB of event data (at least one call is always outstanding).
    #[arg(long, default_value_t = 4_096, value_name = "KIB")]
    window_kib: u64,
    /// Comma-separated, from: evstore, naive, sqlite, okaywal, rocksdb (only in a build with the
    /// `rocksdb` feature). Evstore is divided by the best of the others in each cell.
    #[arg(long, default_value = SYSTEMS_DEFAULT)]
    systems: String,
    #[command(flatten)]
    common: Common,
}

/// `64`, `4k`, `4KiB`, `1m`, `1MiB`: bytes (k and m are powers of 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, shift) = match lower.strip_suffix('k') {
        Some(digits) => (digits, 10),
        None => match lower.strip_suffix('m') {
            Some(digits) => (digits, 20),
            None => (lower, 0),
        },
    };
    let value: u64 = digits.trim().parse().map_err(|_| format!("{text:?} is not a size (e.g. 64, 4k, 1m)"))?;
    if value == 0 {
        return Err(format!("{text:?}: a size must be at least 1 byte"));
    }
    value.checked_shl(shift).filter(|v| v >> shift == value).ok_or_else(|| format!("{text:?} is too large"))
}

/// One cell of the matrix.
#[derive(Clone, Copy)]
struct Cell {
    size: usize,
    producers: usize,
    batch_requested: usize,
    batch: usize,
}

impl Cell {
    fn label(&self) -> String {
        format!("{} B x {} producers x {} per call", self.size, self.producers, self.batch)
    }

    fn fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("event_bytes".into(), json!(self.size));
        fields.insert("producers".into(), json!(self.producers));
        fields.insert("events_per_call".into(), json!(self.batch));
        fields.insert("events_per_call_requested".into(), json!(self.batch_requested));
        fields
    }
}

pub fn run(args: &AppendArgs) -> Result<(), String> {
    let common = &args.common;
    let mut allowed = vec!["evstore"];
    allowed.extend(PeerKind::ALL.iter().map(|p| p.name()));
    let systems = peers::runnable(peers::parse_systems(&args.systems, &allowed)?, common);
    validate(args)?;
    std::fs::create_dir_all(&common.dir).map_err(|e| format!("creating {}: {e}", common.dir.display()))?;
    let group_room = common.options().group_bytes_max.saturating_sub(2 * evstore::RECORD_HEADER_BYTES);
    let mut cells = Vec::new();
    for &size in &args.sizes {
        let size = size as usize;
        if size + EVENT_OVERHEAD_BYTES_MAX > group_room {
            return Err(format!(
                "an event of {size} B does not fit evstore's largest group ({} KiB): raise --group-kib",
                common.group_kib
            ));
        }
        for &producers in &args.producers {
            for &batch in &args.batch {
                let fits = (group_room / (size + EVENT_OVERHEAD_BYTES_MAX)).max(1);
                cells.push(Cell { size, producers, batch_requested: batch, batch: batch.min(fits) });
            }
        }
    }
    let context = common.print_machine(&format!(
        "append: sizes {:?} B x producers {:?} x events per call {:?}; per system per cell at most {} events, \
         {} MiB, {} s; window {} events or {} KiB per producer; systems {}",
        args.sizes,
        args.producers,
        args.batch,
        args.events,
        args.mib,
        args.seconds_max,
        args.window_events,
        args.window_kib,
        systems.join(",")
    ));
    if !common.json {
        println!("{}", header());
    }
    let mut raw_cache: HashMap<usize, Outcome> = HashMap::new();
    for cell in &cells {
        if cell.batch < cell.batch_requested {
            common.note(&format!(
                "{}: {} events of {} B per call would not fit one group of {} KiB; {} per call instead",
                cell.label(),
                cell.batch_requested,
                cell.size,
                common.group_kib,
                cell.batch
            ));
        }
        run_cell(args, &systems, cell, &context, &mut raw_cache)?;
    }
    if !common.json {
        for line in legend() {
            println!("# {line}");
        }
    }
    Ok(())
}

fn validate(args: &AppendArgs) -> Result<(), String> {
    if args.sizes.is_empty() || args.producers.is_empty() || args.batch.is_empty() {
        return Err("--sizes, --producers and --batch each need at least one value".into());
    }
    if let Some(p) = args.producers.iter().find(|&&p| p == 0 || p > 1024) {
        return Err(format!("--producers {p}: use 1 to 1024 producer threads"));
    }
    if let Some(b) = args.batch.iter().find(|&&b| b == 0 || b > evstore::APPEND_EVENTS_MAX) {
        return Err(format!("--batch {b}: use 1 to {} events per call", evstore::APPEND_EVENTS_MAX));
    }
    if !(args.seconds_max > 0.0 && args.seconds_max.is_finite()) {
        return Err(format!("--seconds-max {}: use a positive number of seconds", args.seconds_max));
    }
    if args.events == 0 || args.mib == 0 || args.window_events == 0 || args.window_kib == 0 {
        return Err("--events, --mib, --window-events and --window-kib must be at least 1".into());
    }
    Ok(())
}

fn run_cell(
    args: &AppendArgs,
    systems: &[String],
    cell: &Cell,
    context: &Map<String, Value>,
    raw_cache: &mut HashMap<usize, Outcome>,
) -> Result<(), String> {
    let common = &args.common;
    let data = vec![0x5au8; cell.size];
    let events = Events { event_type: MATRIX_EVENT_TYPE, data: &data, count: cell.batch };
    let budget = args.events.min((args.mib << 20) / cell.size as u64).max((cell.producers * cell.batch) as u64);
    let per_producer = budget.div_ceil(cell.producers as u64).div_ceil(cell.batch as u64) * cell.batch as u64;
    let load = Load {
        producers: cell.producers,
        events,
        events_per_producer: per_producer,
        deadline: Duration::from_secs_f64(args.seconds_max),
        window_events: args.window_events,
        window_bytes: args.window_kib << 10,
    };
    let warmup = Load {
        events_per_producer: (per_producer / 10).div_ceil(cell.batch as u64) * cell.batch as u64,
        deadline: load.deadline / 5,
        ..load
    };
    let total = per_producer * cell.producers as u64;
    let mut outcomes = Vec::new();
    for system in systems {
        let outcome = if system == "evstore" {
            crate::measure_evstore(
                common,
                cell.producers,
                |store| drive_windowed(&EvstoreClient(store), &warmup, "warmup/", &Progress::hidden()).map(|_| ()),
                |store| {
                    let progress = Progress::start("evstore", total, "events");
                    let driven = drive_windowed(&EvstoreClient(store), &load, "p", &progress);
                    progress.finish();
                    driven
                },
            )?
        } else {
            let kind = PeerKind::parse(system).ok_or_else(|| format!("unknown system {system}"))?;
            peers::measure(
                common,
                kind,
                cell.producers,
                |client| drive_windowed(client, &warmup, "warmup/", &Progress::hidden()).map(|_| ()),
                |client| {
                    let progress = Progress::start(kind.name(), total, "events");
                    let driven = drive_windowed(client, &load, "p", &progress);
                    progress.finish();
                    driven
                },
            )?
            .0
        };
        outcomes.push(outcome);
    }
    // The disk's answer at evstore's average group size, pipelined as evstore's groups are.
    let raw = match outcomes.iter().find(|o| o.system == "evstore").filter(|o| o.groups > 0) {
        Some(engine) => {
            let write_bytes = average_group_bytes(engine).ceil() as usize;
            let plan = RawPlan {
                total_bytes: engine.disk_bytes.min(RAW_REFERENCE_BYTES_MAX),
                write_bytes,
                depth: common.in_flight,
                sync: common.raw_sync(),
            };
            let plan = RawPlan {
                total_bytes: plan.total_bytes.min(RAW_REFERENCE_WRITES_MAX * plan.write_bytes() as u64),
                ..plan
            };
            match raw_cache.entry(plan.write_bytes()) {
                Entry::Occupied(known) => Some(&*known.into_mut()),
                Entry::Vacant(slot) => {
                    let dir = common.data_dir("raw")?;
                    let progress = Progress::start("raw", plan.writes(), "writes");
                    let outcome =
                        raw::run(&dir.path, &plan, &progress).map_err(|e| format!("raw disk reference: {e}"))?;
                    progress.finish();
                    Some(&*slot.insert(outcome))
                }
            }
        }
        None => None,
    };
    let best_peer = outcomes
        .iter()
        .filter(|o| o.system != "evstore")
        .max_by(|a, b| a.events_per_sec().total_cmp(&b.events_per_sec()));
    for outcome in &outcomes {
        let mut fields = cell.fields();
        fields.insert("average_group_bytes".into(), json!(average_group_bytes(outcome)));
        if outcome.system == "evstore" {
            if let Some(raw) = raw {
                fields.insert("raw_write_bytes".into(), json!(raw.payload_bytes / raw.events.max(1)));
                fields.insert("raw_in_flight".into(), json!(raw.in_flight));
                fields.insert("raw_mb_per_sec".into(), json!(raw.disk_mb_per_sec()));
                fields
                    .insert("disk_mb_per_sec_per_raw".into(), json!(outcome.disk_mb_per_sec() / raw.disk_mb_per_sec()));
            }
            if let Some(best) = best_peer {
                fields.insert("best_peer".into(), json!(best.system));
                fields.insert("best_peer_events_per_sec".into(), json!(best.events_per_sec()));
                fields.insert("evstore_per_best_peer".into(), json!(outcome.events_per_sec() / best.events_per_sec()));
            }
        }
        for (k, v) in context {
            fields.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if common.json {
            println!("{}", outcome.json(&fields));
        } else {
            println!("{}", row(cell, outcome, raw, best_peer));
        }
    }
    Ok(())
}

fn average_group_bytes(outcome: &Outcome) -> f64 {
    outcome.disk_bytes as f64 / outcome.groups.max(1) as f64
}

fn header() -> String {
    format!(
        "{:>7} {:>5} {:>5} {:<8} {:>11} {:>8} {:>8} {:>10} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7} {:>8} {:>16}",
        "size B",
        "prod",
        "batch",
        "system",
        "events/s ↑",
        "MB/s ↑",
        "syncs",
        "group B",
        "CPU ns↓",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "raw MB/s",
        "/raw ↑",
        "/best ↑",
        "best peer"
    )
}

fn row(cell: &Cell, o: &Outcome, raw: Option<&Outcome>, best: Option<&Outcome>) -> String {
    let engine = o.system == "evstore";
    let (raw_mb, per_raw) = match raw.filter(|_| engine) {
        Some(raw) => {
            (format!("{:.1}", raw.disk_mb_per_sec()), format!("{:.2}", o.disk_mb_per_sec() / raw.disk_mb_per_sec()))
        }
        None => ("-".into(), "-".into()),
    };
    let (per_best, best_name) = match best.filter(|_| engine) {
        Some(best) => (
            format!("{:.2}", o.events_per_sec() / best.events_per_sec()),
            format!("{} {:.0}/s", best.system, best.events_per_sec()),
        ),
        None => ("-".into(), "-".into()),
    };
    format!(
        "{:>7} {:>5} {:>5} {:<8} {:>11.0} {:>8.1} {:>8} {:>10.0} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7} {:>8} {:>16}",
        cell.size,
        cell.producers,
        cell.batch,
        o.system,
        o.events_per_sec(),
        o.mb_per_sec(),
        o.syncs,
        average_group_bytes(o),
        o.cpu_ns_per_event().map_or("-".to_string(), |ns| format!("{ns:.0}")),
        o.pct(0.5),
        o.pct(0.99),
        o.pct(0.999),
        o.latency_us.max(),
        raw_mb,
        per_raw,
        per_best,
        best_name
    )
}

fn legend() -> Vec<String> {
    vec![
        "legend: one line per system per cell; ↑ higher is better, ↓ lower is better".into(),
        "  size B, prod, batch  event data bytes, producer threads, events per append call".into(),
        "  events/s, MB/s       durable events per second; payload (stream id + type + data) MB per second, MB = 10^6 B".into(),
        "  syncs                durability operations (evstore: RWF_DSYNC writes or fdatasyncs; okaywal, rocksdb: commits)".into(),
        "  group B              bytes written per write to disk (disk bytes / groups; peers: per drained batch)".into(),
        "  CPU ns               user + system CPU of the whole process per event during the timed part".into(),
        "  p50 .. max µs        append-to-durable latency of each event, from its call to when its producer learned it".into(),
        "  raw MB/s, /raw       the disk alone at evstore's group size with as many writes in flight as evstore's \
         groups (--in-flight); evstore's disk MB/s divided by it"
            .into(),
        "  /best, best peer     evstore's events/s divided by the best peer's in the same cell, and that peer".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_nonsense() {
        assert_eq!(parse_bytes("64"), Ok(64));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("1M"), Ok(1 << 20));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("99999999999999999999m").is_err());
    }
}
