//! `evstore-bench raw`: the disk alone, in this process, at given write sizes: what every
//! other figure is divided by. Three ways per size, each into a freshly pre-written file:
//! - `dsync qd1`: io_uring O_DIRECT writes carrying RWF_DSYNC, one at a time (the best a single
//!   waiting caller can get);
//! - `dsync qdN`: the same, `--in-flight` at a time (pipelined, as evstore keeps its groups);
//! - `pwrite+fdatasync`: buffered `pwrite` then `fdatasync`, one at a time (the naive way).

use std::path::PathBuf;

use serde_json::json;

use crate::progress::Progress;
use crate::raw::{self, RawPlan, RawSync};
use crate::report::Outcome;

#[derive(clap::Args)]
pub struct RawArgs {
    /// Write sizes, comma-separated; a k or m suffix means KiB or MiB. Rounded up to 4 KiB.
    /// The default spans the group sizes evstore reaches in the matrix.
    #[arg(long, value_delimiter = ',', value_parser = crate::matrix::parse_bytes, default_value = "4k,64k,256k,1m")]
    sizes: Vec<u64>,
    /// Writes in flight for the pipelined way (evstore's default groups in flight).
    #[arg(long, default_value_t = evstore::Options::default().groups_in_flight_max)]
    in_flight: usize,
    /// Bytes written per size per way, in MiB, at most...
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    mib: u64,
    /// ...and at most this many writes.
    #[arg(long, default_value_t = 4_000)]
    writes: u64,
    /// Parent directory of the data directory (removed at the end and on Ctrl-C). Use the disk
    /// the store would use.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// One JSON object per line on stdout (notes go to stderr).
    #[arg(long)]
    json: bool,
    /// Keep the data directories (their paths are printed on stderr).
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &RawArgs) -> Result<(), String> {
    if args.sizes.is_empty() {
        return Err("--sizes needs at least one size".into());
    }
    if args.in_flight == 0 || args.in_flight > 1024 || args.mib == 0 || args.writes == 0 {
        return Err("--in-flight (1 to 1024), --mib and --writes must be at least 1".into());
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("creating {}: {e}", args.dir.display()))?;
    let context = crate::print_machine(
        &args.dir,
        args.json,
        &format!("raw: write sizes {:?} B, pipelined {} in flight", args.sizes, args.in_flight),
    );
    if !args.json {
        println!(
            "{:>9} {:<18} {:>5} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8}",
            "write B", "way", "depth", "writes", "MB/s ↑", "writes/s ↑", "p50 µs", "p99 µs", "max µs"
        );
    }
    for &size in &args.sizes {
        let write_bytes = size as usize;
        let total_bytes = (args.mib << 20).min(args.writes * size).max(size);
        for (way, depth) in [("dsync", 1), ("dsync", args.in_flight), ("pwrite+fdatasync", 1)] {
            let plan = RawPlan { total_bytes, write_bytes, depth, sync: RawSync::Dsync };
            let dir = crate::cleanup::DataDir::create(&args.dir, "raw", args.keep)?;
            let progress = Progress::start("raw", plan.writes(), "writes");
            let outcome = if way == "dsync" {
                raw::run(&dir.path, &plan, &progress)
            } else {
                raw::run_pwrite(&dir.path, &plan, &progress)
            }
            .map_err(|e| format!("raw {way} writes of {} B: {e}", plan.write_bytes()))?;
            progress.finish();
            print(args, &context, &plan, way, &outcome);
        }
    }
    if !args.json {
        println!(
            "# legend: way dsync = io_uring O_DIRECT + RWF_DSYNC; pwrite+fdatasync = buffered pwrite, then fdatasync"
        );
        println!("#   MB/s = 10^6 bytes written per second; p50 .. max per write, from submission to completion");
    }
    Ok(())
}

fn print(args: &RawArgs, context: &serde_json::Map<String, serde_json::Value>, plan: &RawPlan, way: &str, o: &Outcome) {
    let mb_per_sec = o.disk_mb_per_sec();
    if args.json {
        let mut fields = context.clone();
        fields.insert("way".into(), json!(way));
        fields.insert("write_bytes".into(), json!(plan.write_bytes()));
        fields.insert("depth".into(), json!(o.in_flight));
        fields.insert("writes".into(), json!(o.events));
        fields.insert("seconds".into(), json!(o.seconds));
        fields.insert("mb_per_sec".into(), json!(mb_per_sec));
        fields.insert("writes_per_sec".into(), json!(o.events_per_sec()));
        fields.insert("p50_us".into(), json!(o.pct(0.5)));
        fields.insert("p99_us".into(), json!(o.pct(0.99)));
        fields.insert("max_us".into(), json!(o.latency_us.max()));
        fields.insert("cpu_ns_per_write".into(), json!(o.cpu_ns_per_event()));
        println!("{}", serde_json::Value::Object(fields));
    } else {
        println!(
            "{:>9} {:<18} {:>5} {:>7} {:>10.1} {:>10.0} {:>8} {:>8} {:>8}",
            plan.write_bytes(),
            way,
            o.in_flight,
            o.events,
            mb_per_sec,
            o.events_per_sec(),
            o.pct(0.5),
            o.pct(0.99),
            o.latency_us.max()
        );
    }
}
