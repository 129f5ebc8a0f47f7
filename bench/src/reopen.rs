//! `evstore-bench reopen`: how long `Store::open` takes on a store holding the seed workload
//! (10,000 streams of 1,000 events by default), and how much memory its index takes.
//!
//! One run, in order, on one store:
//! 1. seed it (the seed's client, default options: background checkpoints at rollovers) and
//!    report the index's resident bytes per event, then close it (the close writes the final
//!    checkpoint);
//! 2. `clean_reopen_ms`: open it again, page cache warm (median of three opens); also cold, after
//!    `posix_fadvise(DONTNEED)` on every file of the store (`clean_reopen_cold_ms`);
//! 3. `full_scan_reopen_ms`: the same open with the checkpoint moved away, the way every open
//!    worked before checkpoints (a full scan, every record's CRC);
//! 4. `crash_reopen_ms`: a child process (this binary, `--crash-child`) opens the store, appends
//!    `--crash-events` more seed events, waits until they are durable and sends itself SIGKILL:
//!    no close, no close marker, no final checkpoint. The open after it loads the last
//!    checkpoint and scans the log after it (`crash_tail_events` events);
//! 5. a second store of `--single-streams` streams of one event each (the index's worst case per
//!    event): its resident bytes per event, and its clean reopen.

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use evstore::{Options, Store};
use serde_json::json;

use crate::cleanup::DataDir;
use crate::progress::Progress;
use crate::workload::{drive, EvstoreClient, Shape};

/// The seed's events per stream.
const EVENTS_PER_STREAM: u64 = 1_000;

#[derive(clap::Args)]
pub struct ReopenArgs {
    /// Events of the seed workload in the store (streams of 1,000 events).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Events appended by the child that is killed (after the last clean close).
    #[arg(long, default_value_t = 1_000_000)]
    crash_events: u64,
    /// Streams of one event each in the second store (0: skip it).
    #[arg(long, default_value_t = 1_000_000)]
    single_streams: u64,
    /// Producer threads [default: available cores].
    #[arg(long)]
    producers: Option<usize>,
    /// Parent directory of the data directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// One JSON object on stdout (notes go to stderr).
    #[arg(long)]
    json: bool,
    /// Keep the data directory.
    #[arg(long)]
    keep: bool,
    /// Internal: run as the child that appends to this store and is killed.
    #[arg(long, hide = true)]
    crash_child: Option<PathBuf>,
}

fn producers(args: &ReopenArgs) -> usize {
    args.producers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

fn note(args: &ReopenArgs, line: &str) {
    if args.json {
        eprintln!("# {line}");
    } else {
        println!("# {line}");
    }
}

fn open(dir: &Path) -> Result<(Store, f64), String> {
    let started = Instant::now();
    let store = Store::open(dir, Options::default()).map_err(|e| format!("opening {}: {e}", dir.display()))?;
    Ok((store, started.elapsed().as_secs_f64() * 1e3))
}

fn seed(store: &Store, events: u64, producers: usize, prefix: &str, per_stream: u64) -> Result<f64, String> {
    let shape = Shape { streams: (events / per_stream) as usize, events_per_stream: per_stream as usize, producers };
    let progress = Progress::start(prefix.trim_end_matches('/'), events, "events");
    let (seconds, _) = drive(&EvstoreClient(store), shape, prefix, &progress)?;
    progress.finish();
    Ok(seconds)
}

/// Drops the page cache of every file of `dir` (clean pages only; no privilege needed).
fn drop_cache(dir: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if !path.is_file() {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        // SAFETY: fadvise on a descriptor we own; it only drops clean cached pages.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}

/// The position the checkpoint in `dir` covers (format.md: the `u64` at byte 32 of its header).
fn checkpoint_position(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join("index.checkpoint")).ok()?;
    Some(u64::from_le_bytes(bytes.get(32..40)?.try_into().ok()?))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn reopen(args: &ReopenArgs) -> Result<(), String> {
    if let Some(dir) = &args.crash_child {
        return crash_child(args, dir);
    }
    let producers = producers(args);
    // Removed on return and on Ctrl-C unless --keep (cleanup.rs).
    let root = DataDir::create_at(args.dir.join(format!("evstore-bench-reopen-{}", std::process::id())), args.keep)?;
    measure(args, &root.path, producers)
}

fn measure(args: &ReopenArgs, root: &Path, producers: usize) -> Result<(), String> {
    let dir = root.join("seed");
    note(args, &format!("evstore-bench reopen: {} seed events, {producers} producers, default options", args.events));
    let (store, _) = open(&dir)?;
    let seed_seconds = seed(&store, args.events, producers, "users/", EVENTS_PER_STREAM)?;
    let events = store.durable_position();
    let index_bytes = store.index_bytes();
    let started = Instant::now();
    store.close().map_err(|e| format!("close: {e}"))?;
    let close_ms = started.elapsed().as_secs_f64() * 1e3;
    let checkpoint_bytes = std::fs::metadata(dir.join("index.checkpoint")).map(|m| m.len()).unwrap_or(0);
    note(args, &format!(
        "seeded {events} events in {seed_seconds:.1} s; index {:.2} bytes/event; close (with its checkpoint of {checkpoint_bytes} bytes) {close_ms:.0} ms",
        index_bytes as f64 / events as f64
    ));

    let mut warm = Vec::new();
    for _ in 0..3 {
        let (store, ms) = open(&dir)?;
        if store.durable_position() != events {
            return Err(format!("reopened with {} events, expected {events}", store.durable_position()));
        }
        warm.push(ms);
        store.close().map_err(|e| format!("close: {e}"))?;
    }
    let clean_reopen_ms = median(warm);
    drop_cache(&dir)?;
    let (store, clean_reopen_cold_ms) = open(&dir)?;
    store.close().map_err(|e| format!("close: {e}"))?;
    note(args, &format!("clean reopen: {clean_reopen_ms:.1} ms warm (median of 3), {clean_reopen_cold_ms:.1} ms cold"));

    let aside = root.join("index.checkpoint.aside");
    std::fs::rename(dir.join("index.checkpoint"), &aside).map_err(|e| format!("moving the checkpoint: {e}"))?;
    let (store, full_scan_reopen_ms) = open(&dir)?;
    // Its close writes a checkpoint again, covering the same log.
    store.close().map_err(|e| format!("close: {e}"))?;
    let _ = std::fs::remove_file(&aside);
    note(args, &format!("reopen without a checkpoint (full scan): {full_scan_reopen_ms:.1} ms"));

    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let mut child = std::process::Command::new(exe)
        .args(["reopen", "--crash-events", &args.crash_events.to_string(), "--producers", &producers.to_string()])
        .arg("--crash-child")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the crash child: {e}"))?;
    let mut durable = None;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            if let Some(value) = line.map_err(|e| e.to_string())?.strip_prefix("durable ") {
                durable = value.trim().parse::<u64>().ok();
            }
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for the crash child: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    if status.signal() != Some(libc::SIGKILL) {
        return Err(format!("the crash child was not killed by SIGKILL: {status}"));
    }
    let durable = durable.ok_or("the crash child did not report its durable position")?;
    let covered = checkpoint_position(&dir).unwrap_or(0);
    let (store, crash_reopen_ms) = open(&dir)?;
    if store.durable_position() < durable {
        return Err(format!(
            "lost acknowledged events: {} after the crash, {durable} acknowledged",
            store.durable_position()
        ));
    }
    let crash_tail_events = store.durable_position() - covered;
    store.close().map_err(|e| format!("close: {e}"))?;
    note(args, &format!(
        "reopen after SIGKILL: {crash_reopen_ms:.1} ms, scanning {crash_tail_events} events after the checkpoint (at position {covered})"
    ));

    let (mut single_index_bytes_per_event, mut single_clean_reopen_ms) = (0.0, 0.0);
    if args.single_streams > 0 {
        let single = root.join("single");
        let (store, _) = open(&single)?;
        seed(&store, args.single_streams, producers, "single/", 1)?;
        single_index_bytes_per_event = store.index_bytes() as f64 / store.durable_position() as f64;
        store.close().map_err(|e| format!("close: {e}"))?;
        let (store, ms) = open(&single)?;
        single_clean_reopen_ms = ms;
        store.close().map_err(|e| format!("close: {e}"))?;
        note(
            args,
            &format!(
                "{} streams of one event: index {single_index_bytes_per_event:.1} bytes/event, clean reopen {ms:.1} ms",
                args.single_streams
            ),
        );
    }
    let index_bytes_per_event = index_bytes as f64 / events as f64;
    if args.json {
        let line = json!({
            "events": events,
            "clean_reopen_ms": clean_reopen_ms,
            "clean_reopen_cold_ms": clean_reopen_cold_ms,
            "full_scan_reopen_ms": full_scan_reopen_ms,
            "crash_reopen_ms": crash_reopen_ms,
            "crash_tail_events": crash_tail_events,
            "index_bytes_per_event": index_bytes_per_event,
            "checkpoint_bytes": checkpoint_bytes,
            "close_ms": close_ms,
            "single_stream_events": args.single_streams,
            "single_index_bytes_per_event": single_index_bytes_per_event,
            "single_clean_reopen_ms": single_clean_reopen_ms,
            "producers": producers,
        });
        println!("{line}");
    } else {
        println!("events {events}  clean_reopen_ms {clean_reopen_ms:.1}  crash_reopen_ms {crash_reopen_ms:.1}  index_bytes_per_event {index_bytes_per_event:.2}");
    }
    Ok(())
}

/// The child: appends to the seeded store, reports what is durable, and is killed.
fn crash_child(args: &ReopenArgs, dir: &Path) -> Result<(), String> {
    let (store, _) = open(dir)?;
    seed(&store, args.crash_events, producers(args), "users/", EVENTS_PER_STREAM)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "durable {}", store.durable_position()).map_err(|e| e.to_string())?;
    stdout.flush().map_err(|e| e.to_string())?;
    // SAFETY: kill on our own pid; SIGKILL ends the process at once, without running destructors
    // (no close, no close marker, no final checkpoint): what a crash leaves.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL is not caught");
}
