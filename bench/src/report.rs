//! One measured system: its counters, its latency histogram, and how they are printed.

use std::io::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

pub struct Outcome {
    pub system: String,
    /// Sync mode label; a non-durable mode says so in every line it prints.
    pub sync: String,
    pub producers: usize,
    pub events: u64,
    pub seconds: f64,
    /// Stream id + type + data + metadata bytes (for `raw`: bytes written).
    pub payload_bytes: u64,
    pub disk_bytes: u64,
    pub record_bytes: u64,
    pub syncs: u64,
    pub groups: u64,
    /// Append-to-durable latency in microseconds (for `raw`: per write).
    pub latency_us: Histogram<u64>,
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

impl Outcome {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.payload_bytes as f64 / self.seconds / 1e6
    }

    pub fn disk_mb_per_sec(&self) -> f64 {
        self.disk_bytes as f64 / self.seconds / 1e6
    }

    fn pct(&self, q: f64) -> u64 {
        self.latency_us.value_at_quantile(q)
    }

    pub fn header() -> String {
        format!(
            "{:<8} {:<20} {:>10} {:>7} {:>11} {:>8} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}",
            "system",
            "sync",
            "events",
            "secs",
            "events/s",
            "MB/s",
            "syncs",
            "ev/group",
            "disk/rec",
            "p50us",
            "p90us",
            "p99us",
            "p99.9us",
            "p99.99us",
            "max_us"
        )
    }

    pub fn row(&self) -> String {
        let per_group = if self.groups > 0 { self.events as f64 / self.groups as f64 } else { 0.0 };
        let ratio = if self.record_bytes > 0 { self.disk_bytes as f64 / self.record_bytes as f64 } else { 0.0 };
        format!(
            "{:<8} {:<20} {:>10} {:>7.3} {:>11.0} {:>8.1} {:>9} {:>9.1} {:>9.4} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}",
            self.system,
            self.sync,
            self.events,
            self.seconds,
            self.events_per_sec(),
            self.mb_per_sec(),
            self.syncs,
            per_group,
            ratio,
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(0.999),
            self.pct(0.9999),
            self.latency_us.max()
        )
    }

    pub fn json(&self) -> String {
        serde_json::json!({
            "system": self.system,
            "sync": self.sync,
            "producers": self.producers,
            "events": self.events,
            "seconds": self.seconds,
            "events_per_sec": self.events_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
            "p50_us": self.pct(0.5),
            "p90_us": self.pct(0.9),
            "p99_us": self.pct(0.99),
            "p999_us": self.pct(0.999),
            "p9999_us": self.pct(0.9999),
            "max_us": self.latency_us.max(),
            "fdatasyncs": self.syncs,
            "groups": self.groups,
            "disk_bytes": self.disk_bytes,
            "record_bytes": self.record_bytes,
            "payload_bytes": self.payload_bytes,
        })
        .to_string()
    }

    /// Writes the full percentile distribution in HdrHistogram's classic `.hgrm` layout.
    pub fn write_hgrm(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        let path = dir.join(format!("{}.hgrm", self.system));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
        for v in self.latency_us.iter_quantiles(1) {
            let q = v.quantile_iterated_to();
            let inverse = if q < 1.0 { format!("{:>14.2}", 1.0 / (1.0 - q)) } else { format!("{:>14}", "inf") };
            writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10} {}",
                v.value_iterated_to() as f64,
                q,
                v.count_since_last_iteration(),
                inverse
            )?;
        }
        let h = &self.latency_us;
        writeln!(out, "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]", h.mean(), h.stdev())?;
        writeln!(out, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64, h.len())?;
        writeln!(out, "#[unit = microseconds, system = {}, sync = {}]", self.system, self.sync)?;
        out.flush()?;
        Ok(path)
    }
}
