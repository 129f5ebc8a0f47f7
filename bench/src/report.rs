//! One measured system: its counters, its latency histogram, and how they are printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

pub struct Outcome {
    pub system: String,
    /// Sync mode label; a non-durable mode says NOT DURABLE in it, so every row carries it.
    pub sync: String,
    /// The I/O path actually used.
    pub backend: String,
    pub producers: usize,
    /// Groups (evstore) or writes (raw) allowed in flight; 1 for the naive and sqlite writers.
    pub in_flight: usize,
    /// Events (for `raw`: writes).
    pub events: u64,
    pub seconds: f64,
    /// Stream id + type + data + metadata bytes (for `raw`: bytes written).
    pub payload_bytes: u64,
    pub disk_bytes: u64,
    pub record_bytes: u64,
    pub syncs: u64,
    /// Writes to disk: groups (evstore), drained batches (naive; sqlite: one transaction each), writes (raw).
    pub groups: u64,
    /// Append-to-durable latency in microseconds (for `raw`: per write).
    pub latency_us: Histogram<u64>,
    /// CPU time (user + system) of the whole bench process during the timed part, in seconds:
    /// the producers, evstore's threads and the kernel's work on their behalf.
    pub cpu_seconds: Option<f64>,
}

/// User + system CPU time of this process so far, in seconds (all threads, getrusage).
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value to be overwritten; getrusage only writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The largest latency a histogram holds: one hour, in microseconds.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// Latencies in microseconds, 3 significant digits (BENCH.md rule 3), up to an hour.
///
/// Fixed bounds on purpose: in hdrhistogram 7 `saturating_record` on an auto-resizing histogram
/// (`Histogram::new`) never resizes; it clamps every value past the initial range to 2.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds")
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl Outcome {
    pub fn events_per_sec(&self) -> f64 {
        ratio(self.events as f64, self.seconds)
    }

    pub fn mb_per_sec(&self) -> f64 {
        ratio(self.payload_bytes as f64 / 1e6, self.seconds)
    }

    pub fn disk_mb_per_sec(&self) -> f64 {
        ratio(self.disk_bytes as f64 / 1e6, self.seconds)
    }

    pub fn events_per_group(&self) -> f64 {
        ratio(self.events as f64, self.groups as f64)
    }

    /// Write amplification of the record format: bytes on disk per encoded record byte.
    pub fn disk_per_record(&self) -> f64 {
        ratio(self.disk_bytes as f64, self.record_bytes as f64)
    }

    pub fn pct(&self, q: f64) -> u64 {
        self.latency_us.value_at_quantile(q)
    }

    /// The table's header: a name per column, with an arrow for the figures where one
    /// direction is better (explained by `legend`).
    /// Process CPU time per event (per write for raw) in nanoseconds, if measured.
    pub fn cpu_ns_per_event(&self) -> Option<f64> {
        self.cpu_seconds.map(|cpu| cpu * 1e9 / self.events.max(1) as f64)
    }

    pub fn header() -> String {
        format!(
            "{:<8} {:<20} {:>10} {:>7} {:>11} {:>14} {:>9} {:>12} {:>13} {:>14} {:>8} {:>8} {:>8} {:>10} {:>11} {:>9}",
            "system",
            "sync",
            "events",
            "seconds",
            "events/s ↑",
            "payload MB/s ↑",
            "syncs",
            "events/group",
            "disk/record ↓",
            "CPU ns/event ↓",
            "p50 µs ↓",
            "p90 µs ↓",
            "p99 µs ↓",
            "p99.9 µs ↓",
            "p99.99 µs ↓",
            "max µs ↓"
        )
    }

    pub fn row(&self) -> String {
        format!(
            "{:<8} {:<20} {:>10} {:>7.3} {:>11.0} {:>14.1} {:>9} {:>12.1} {:>13.4} {:>14} {:>8} {:>8} {:>8} {:>10} {:>11} {:>9}",
            self.system,
            self.sync,
            self.events,
            self.seconds,
            self.events_per_sec(),
            self.mb_per_sec(),
            self.syncs,
            self.events_per_group(),
            self.disk_per_record(),
            self.cpu_ns_per_event().map_or("-".to_string(), |ns| format!("{ns:.0}")),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(0.999),
            self.pct(0.9999),
            self.latency_us.max()
        )
    }

    /// What the columns mean, printed under the table (as `#` lines). Says what `raw`'s
    /// figures mean only when a raw row is in the table.
    pub fn legend(outcomes: &[Outcome]) -> Vec<String> {
        let mut lines = vec![
            "legend: ↑ higher is better, ↓ lower is better; figures cover the timed part only".to_string(),
            "  events/s       events made durable per second of wall time".to_string(),
            "  payload MB/s   payload bytes (stream id + event type + data + metadata) per second, \
             MB = 10^6 bytes; disk bytes are in disk/record"
                .to_string(),
            "  syncs          durability operations: fdatasync calls, or RWF_DSYNC writes with --sync dsync \
             (sqlite: committed transactions; okaywal, rocksdb: commits, which may share a sync)"
                .to_string(),
            "  events/group   events per write to disk (per group commit; naive, sqlite: per drained batch); \
             larger groups amortise each sync"
                .to_string(),
            "  disk/record    bytes on disk per encoded record byte (block padding, SQLite's pages and WAL); \
             1.0 means no overhead"
                .to_string(),
            "  CPU ns/event   user + system CPU time of the whole bench process (producers, the system's \
             threads, the kernel on their behalf) during the timed part, per event (raw: per write)"
                .to_string(),
            "  p50 .. max µs  append-to-durable latency from the caller's view, in microseconds \
             (HDR histogram, 3 significant digits)"
                .to_string(),
        ];
        if outcomes.iter().any(|o| o.system == "raw") {
            lines.push(
                "  raw            the disk alone: its events are writes, its payload is the bytes written, \
                 its latency is per write"
                    .to_string(),
            );
        }
        lines
    }

    /// One JSON object: the figures, then `context` (machine and options) merged in.
    pub fn json(&self, context: &Map<String, Value>) -> String {
        let mut object = json!({
            "system": self.system,
            "sync": self.sync,
            "backend": self.backend,
            "producers": self.producers,
            "in_flight": self.in_flight,
            "events": self.events,
            "seconds": self.seconds,
            "events_per_sec": self.events_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
            "disk_mb_per_sec": self.disk_mb_per_sec(),
            "p50_us": self.pct(0.5),
            "p90_us": self.pct(0.9),
            "p99_us": self.pct(0.99),
            "p999_us": self.pct(0.999),
            "p9999_us": self.pct(0.9999),
            "max_us": self.latency_us.max(),
            "fdatasyncs": self.syncs,
            "groups": self.groups,
            "events_per_group": self.events_per_group(),
            "disk_bytes": self.disk_bytes,
            "record_bytes": self.record_bytes,
            "disk_per_record": self.disk_per_record(),
            "cpu_ns_per_event": self.cpu_ns_per_event(),
            "payload_bytes": self.payload_bytes,
        });
        if let Value::Object(fields) = &mut object {
            for (k, v) in context {
                fields.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        object.to_string()
    }

    /// Writes the full percentile distribution in HdrHistogram's classic `.hgrm` layout
    /// (Value, Percentile, TotalCount, 1/(1-Percentile); the 100% line has no last column).
    /// The file is `<dir>/<prefix><system>.hgrm`.
    pub fn write_hgrm(&self, dir: &Path, prefix: &str) -> std::io::Result<PathBuf> {
        let path = dir.join(format!("{prefix}{}.hgrm", self.system));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
        let mut total = 0u64;
        for v in self.latency_us.iter_quantiles(1) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64;
            if q < 1.0 {
                writeln!(out, "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}", 1.0 / (1.0 - q))?;
            } else {
                writeln!(out, "{value:>12.3} {q:>2.12} {total:>10}")?;
            }
        }
        let h = &self.latency_us;
        writeln!(out, "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]", h.mean(), h.stdev())?;
        writeln!(out, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64, h.len())?;
        writeln!(out, "#[unit = microseconds, system = {}, sync = {}]", self.system, self.sync)?;
        out.flush()?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(latency_us: Histogram<u64>) -> Outcome {
        Outcome {
            system: "test".into(),
            sync: "dsync".into(),
            backend: "none".into(),
            producers: 1,
            in_flight: 1,
            events: latency_us.len(),
            seconds: 1.0,
            payload_bytes: 0,
            disk_bytes: 0,
            record_bytes: 0,
            syncs: 0,
            groups: 0,
            latency_us,
            cpu_seconds: None,
        }
    }

    #[test]
    fn large_latencies_are_kept_not_clamped() {
        let mut h = histogram();
        for v in [5_000, 100_000, 3_000_000] {
            h.saturating_record(v);
        }
        assert!(h.min() >= 4_990, "min {}", h.min());
        assert!(h.max() >= 2_990_000, "max {}", h.max());
    }

    #[test]
    fn hgrm_total_count_is_cumulative() {
        let mut h = histogram();
        for v in 1..=1000 {
            h.saturating_record(v);
        }
        let dir = std::env::temp_dir().join(format!("evstore-bench-hgrm-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = outcome(h).write_hgrm(&dir, "").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let rows: Vec<Vec<&str>> =
            text.lines().skip(2).filter(|l| !l.starts_with('#')).map(|l| l.split_whitespace().collect()).collect();
        let totals: Vec<u64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
        assert!(totals.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*totals.last().unwrap(), 1000);
        // The 100% line has no 1/(1-Percentile) column.
        assert_eq!(rows.last().unwrap().len(), 3);
    }
}
