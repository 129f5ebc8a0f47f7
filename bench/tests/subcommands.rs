//! Every matrix subcommand (`append`, `latency`, `raw`, `tune`) runs end to end on tiny sizes and
//! prints what its readers parse: one JSON object per line with the machine header's fields and
//! its own figures, and the files it promises. Bad flags end in a message, never a panic.
//!
//! Without these, a renamed JSON key or a subcommand that fails only outside the developer's own
//! flags would reach docs/bench-matrix.md's readers and plotting scripts first. No test here
//! asserts on a speed: the figures only have to be there and be counts that add up.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A fresh directory under cargo's target directory (a real file system: evstore refuses tmpfs).
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("subcommands-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bench(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evstore-bench")).args(args).arg("--dir").arg(dir).output().expect("the bench runs")
}

/// Runs a subcommand with `--json` and returns its lines, parsed; fails with its stderr.
fn json_lines(args: &[&str], dir: &Path) -> Vec<Value> {
    let mut args = args.to_vec();
    args.push("--json");
    let output = bench(&args, dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?} failed: {:?}\nstderr:\n{stderr}", output.status);
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}")))
        .collect()
}

fn has_keys(line: &Value, keys: &[&str]) {
    for key in keys {
        assert!(line.get(key).is_some_and(|v| !v.is_null()), "no {key:?} in {line}");
    }
}

/// The machine header (BENCH.md rule 6) on every line.
const MACHINE: &[&str] = &["workload", "kernel", "cores", "file_system", "write_cache"];

#[test]
fn append_prints_every_system_of_every_cell_with_raw_and_best_peer() {
    let dir = scratch("append");
    let out = dir.join("out");
    let args = [
        "append",
        "--sizes",
        "64,4k",
        "--producers",
        "1,2",
        "--batch",
        "1,3",
        "--events",
        "120",
        "--seconds-max",
        "5",
        "--systems",
        "evstore,naive,sqlite,okaywal",
        "--out",
        out.to_str().unwrap(),
    ];
    let lines = json_lines(&args, &dir);
    assert_eq!(lines.len(), 2 * 2 * 2 * 4, "one line per system per cell");
    for line in &lines {
        has_keys(line, MACHINE);
        has_keys(
            line,
            &[
                "system",
                "event_bytes",
                "producers",
                "events_per_call",
                "events_per_sec",
                "mb_per_sec",
                "fdatasyncs",
                "average_group_bytes",
                "cpu_ns_per_event",
                "p50_us",
                "p99_us",
                "p999_us",
                "max_us",
            ],
        );
        assert!(line["events"].as_u64().unwrap() >= 120, "the whole budget was appended: {line}");
        if line["system"] == "evstore" {
            has_keys(
                line,
                &["raw_mb_per_sec", "raw_write_bytes", "disk_mb_per_sec_per_raw", "best_peer", "evstore_per_best_peer"],
            );
            assert!(["naive", "sqlite", "okaywal"].contains(&line["best_peer"].as_str().unwrap()), "{line}");
        }
    }
    let systems: Vec<&str> = lines.iter().take(4).map(|l| l["system"].as_str().unwrap()).collect();
    assert_eq!(systems, ["evstore", "naive", "sqlite", "okaywal"]);
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("data")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn append_lowers_a_batch_that_would_not_fit_one_group_and_says_so() {
    let dir = scratch("append-fit");
    let args = [
        "append",
        "--sizes",
        "64k",
        "--producers",
        "1",
        "--batch",
        "100",
        "--group-kib",
        "256",
        "--events",
        "6",
        "--systems",
        "evstore",
    ];
    let lines = json_lines(&args, &dir);
    assert_eq!(lines.len(), 1);
    let per_call = lines[0]["events_per_call"].as_u64().unwrap();
    assert!((1..4).contains(&per_call), "{}", lines[0]);
    assert_eq!(lines[0]["events_per_call_requested"], 100);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn latency_times_from_the_schedule_and_writes_one_hgrm_per_system() {
    let dir = scratch("latency");
    let out = dir.join("out");
    for rate in ["50%", "2000"] {
        let args = [
            "latency",
            "--rate",
            rate,
            "--seconds",
            "0.3",
            "--max-seconds",
            "0.2",
            "--producers",
            "2",
            "--out",
            out.to_str().unwrap(),
        ];
        let lines = json_lines(&args, &dir);
        assert_eq!(lines.len(), 2, "evstore and naive by default");
        for line in &lines {
            has_keys(line, MACHINE);
            has_keys(
                line,
                &[
                    "p50_us",
                    "p90_us",
                    "p99_us",
                    "p999_us",
                    "p9999_us",
                    "max_us",
                    "rate_events_per_sec",
                    "closed_loop_max_events_per_sec",
                ],
            );
            // Every scheduled append was made and timed: rate x seconds, rounded up.
            let rate = line["rate_events_per_sec"].as_f64().unwrap();
            assert!(rate > 0.0);
            assert_eq!(line["events"].as_u64().unwrap(), (rate * 0.3).ceil() as u64, "{line}");
        }
        assert_eq!(lines[0]["rate_events_per_sec"], lines[1]["rate_events_per_sec"], "one schedule for both");
        for system in ["evstore", "naive"] {
            let hgrm = std::fs::read_to_string(out.join(format!("latency-{system}.hgrm"))).unwrap();
            assert!(hgrm.contains("Percentile") && hgrm.contains(&format!("system = {system}")), "{hgrm}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn raw_measures_three_ways_at_each_size() {
    let dir = scratch("raw");
    let lines = json_lines(&["raw", "--sizes", "4k,8k", "--writes", "16", "--in-flight", "3"], &dir);
    assert_eq!(lines.len(), 6);
    for line in &lines {
        has_keys(line, MACHINE);
        has_keys(line, &["way", "write_bytes", "depth", "mb_per_sec", "writes_per_sec", "p50_us", "p99_us", "max_us"]);
        assert_eq!(line["writes"], 16);
    }
    let ways: Vec<(String, u64)> =
        lines.iter().map(|l| (l["way"].as_str().unwrap().to_string(), l["depth"].as_u64().unwrap())).collect();
    assert_eq!(ways[..3], [("dsync".into(), 1), ("dsync".into(), 3), ("pwrite+fdatasync".into(), 1)]);
    assert_eq!(lines[3]["write_bytes"], 8192);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tune_sweeps_each_option_and_names_the_best() {
    let dir = scratch("tune");
    let args = ["tune", "--streams", "4", "--events-per-stream", "50", "--producers", "2", "--repeat", "1", "--json"];
    let output = bench(&args, &dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr:\n{stderr}");
    let lines: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let options: Vec<&str> = lines.iter().map(|l| l["option"].as_str().unwrap()).collect();
    let knobs = [
        "in-flight",
        "group-kib",
        "sync",
        "segment-mib",
        "segment-prepare",
        "queue-kib",
        "linger-us",
        "polling",
        "poll-small-writes",
    ];
    for option in knobs {
        assert!(options.contains(&option), "{option} not swept: {options:?}");
    }
    for line in &lines {
        has_keys(line, MACHINE);
        has_keys(line, &["value", "baseline", "events_per_sec", "p99_us", "cpu_ns_per_event"]);
        assert_eq!(line["events"], 200);
    }
    // The defaults are in every knob's list: the baseline runs once per option, and its spread is printed.
    assert_eq!(lines.iter().filter(|l| l["baseline"] == true).count(), knobs.len());
    assert!(stderr.contains("best for this machine") && stderr.contains("noise:"), "stderr:\n{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_seed_runs_okaywal_beside_evstore_when_durable() {
    let dir = scratch("seed-okaywal");
    let args = ["seed", "--systems", "evstore,okaywal", "--streams", "4", "--events-per-stream", "50", "--out"];
    let out = dir.join("out");
    let mut args = args.to_vec();
    args.push(out.to_str().unwrap());
    let lines = json_lines(&args, &dir);
    let systems: Vec<&str> = lines.iter().map(|l| l["system"].as_str().unwrap()).collect();
    assert_eq!(systems, ["evstore", "okaywal"]);
    assert_eq!(lines[1]["events"], 200);
    // okaywal always syncs: under --sync none it is left out, not run under a false label.
    args.push("--sync");
    args.push("none");
    let lines = json_lines(&args, &dir);
    let systems: Vec<&str> = lines.iter().map(|l| l["system"].as_str().unwrap()).collect();
    assert_eq!(systems, ["evstore"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_flags_end_in_a_message_not_a_panic() {
    let dir = scratch("bad-flags");
    for args in [
        &["append", "--sizes", "0"][..],
        &["append", "--sizes", "lots"],
        &["append", "--producers", "0"],
        &["append", "--batch", "0"],
        &["append", "--systems", "evstore,mongodb"],
        &["append", "--sizes", "8m"],
        &["latency", "--rate", "fast"],
        &["latency", "--rate", "0%"],
        &["latency", "--seconds", "-1"],
        &["raw", "--sizes", "4k", "--in-flight", "0"],
        &["tune", "--sync", "none"],
        &["seed", "--systems", "raw,leveldb"],
    ] {
        let output = bench(args, &dir);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
        assert!(stderr.contains("error"), "{args:?} says nothing:\n{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
