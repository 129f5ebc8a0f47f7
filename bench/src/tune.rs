//! `evstore-bench tune` (`just tune`): evstore's options that matter, swept one at a time from
//! the given flags (each setting one fresh store, the seed workload at a reduced size), with a
//! table of events/s, p99 and CPU per event, then the best value of each option for this
//! machine. One run per setting: re-run the winners to confirm before trusting a small margin.
//!
//! An option joins the sweep as one `Knob`: its flag, the values tried, and how it is set.

use clap::ValueEnum;
use serde_json::json;

use crate::progress::Progress;
use crate::report::Outcome;
use crate::workload::{drive, EvstoreClient, Shape};
use crate::{Common, PrepareArg, SyncArg};

#[derive(clap::Args)]
pub struct TuneArgs {
    /// Streams of the seed workload per setting (the seed's 10,000 reduced for a quick sweep).
    #[arg(long, default_value_t = 1_000)]
    streams: usize,
    /// Events appended to each stream (one call each, the seed's 38-byte event).
    #[arg(long, default_value_t = 1_000)]
    events_per_stream: usize,
    /// Producer threads [default: available cores].
    #[arg(long)]
    producers: Option<usize>,
    /// Runs per setting; the table shows the median by events/s (one run is noisy on a shared
    /// machine: the baseline's spread across the sweep is printed at the end).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Baseline flags (--in-flight, --group-kib, ...): each knob is swept from these.
    #[command(flatten)]
    common: Common,
}

/// One option of the sweep.
struct Knob {
    flag: &'static str,
    values: &'static [&'static str],
    set: fn(&mut Common, &str) -> Result<(), String>,
    /// The value the flags gave (the baseline), as `values` spells it.
    get: fn(&Common) -> String,
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{flag} {value}: not a number"))
}

/// The sweep, in order.
const KNOBS: &[Knob] = &[
    Knob {
        flag: "--in-flight",
        values: &["1", "2", "4", "8", "16"],
        get: |c| c.in_flight.to_string(),
        set: |c, v| {
            c.in_flight = number("--in-flight", v)?;
            Ok(())
        },
    },
    Knob {
        flag: "--group-kib",
        values: &["256", "1024", "4096", "16384"],
        get: |c| c.group_kib.to_string(),
        set: |c, v| {
            c.group_kib = number("--group-kib", v)?;
            Ok(())
        },
    },
    Knob {
        flag: "--sync",
        values: &["dsync", "fdatasync"],
        get: |c| format!("{:?}", c.sync).to_lowercase(),
        set: |c, v| {
            c.sync = SyncArg::from_str(v, true)?;
            Ok(())
        },
    },
    Knob {
        flag: "--segment-mib",
        values: &["64", "256", "1024"],
        get: |c| c.segment_mib.to_string(),
        set: |c, v| {
            c.segment_mib = number("--segment-mib", v)?;
            Ok(())
        },
    },
    Knob {
        flag: "--segment-prepare",
        values: &["auto", "zeroed", "fallocated"],
        get: |c| format!("{:?}", c.segment_prepare).to_lowercase(),
        set: |c, v| {
            c.segment_prepare = PrepareArg::from_str(v, true)?;
            Ok(())
        },
    },
    Knob {
        flag: "--queue-kib",
        values: &["64", "256", "1024"],
        get: |c| c.queue_kib.to_string(),
        set: |c, v| {
            c.queue_kib = number("--queue-kib", v)?;
            Ok(())
        },
    },
    Knob {
        flag: "--linger-us",
        values: &["100", "1000", "10000"],
        get: |c| c.linger_us.to_string(),
        set: |c, v| {
            c.linger_us = number("--linger-us", v)?;
            Ok(())
        },
    },
    Knob {
        flag: "--polling",
        values: &["off", "on"],
        get: |c| if c.polling { "on" } else { "off" }.to_string(),
        set: |c, v| {
            c.polling = match v {
                "on" => true,
                "off" => false,
                other => return Err(format!("--polling {other}: on or off")),
            };
            Ok(())
        },
    },
    Knob {
        flag: "--poll-small-writes",
        values: &["on", "off"],
        get: |c| if c.no_poll_small_writes { "off" } else { "on" }.to_string(),
        set: |c, v| {
            c.no_poll_small_writes = match v {
                "on" => false,
                "off" => true,
                other => return Err(format!("--poll-small-writes {other}: on or off")),
            };
            Ok(())
        },
    },
];

struct Setting {
    flag: &'static str,
    value: &'static str,
    /// The value is the baseline's: every knob that lists it runs the baseline once more.
    baseline: bool,
    outcome: Outcome,
}

pub fn run(args: &TuneArgs) -> Result<(), String> {
    let base = &args.common;
    if !base.durable() {
        return Err("tune compares durable settings: drop --sync none".into());
    }
    if args.repeat == 0 || args.streams == 0 || args.events_per_stream == 0 {
        return Err("--repeat, --streams and --events-per-stream must be at least 1".into());
    }
    let shape = Shape {
        streams: args.streams,
        events_per_stream: args.events_per_stream,
        producers: args.producers.unwrap_or_else(crate::machine::cores).max(1),
    };
    std::fs::create_dir_all(&base.dir).map_err(|e| format!("creating {}: {e}", base.dir.display()))?;
    let context = base.print_machine(&format!(
        "tune: seed workload of {} streams x {} events, {} producers, {} run(s) per setting; each option swept \
         from the options above",
        shape.streams, shape.events_per_stream, shape.producers, args.repeat
    ));
    if !base.json {
        println!("{:<34} {:>11} {:>9} {:>15}", "setting", "events/s ↑", "p99 µs ↓", "CPU ns/event ↓");
    }
    let mut settings = Vec::new();
    for knob in KNOBS {
        for &value in knob.values {
            let mut common = base.clone();
            (knob.set)(&mut common, value)?;
            let baseline = (knob.get)(base) == value;
            let mut runs = (0..args.repeat).map(|_| run_setting(&common, shape)).collect::<Result<Vec<_>, _>>()?;
            runs.sort_by(|a, b| a.events_per_sec().total_cmp(&b.events_per_sec()));
            let outcome = runs.swap_remove(runs.len() / 2);
            if base.json {
                let mut fields = context.clone();
                fields.insert("option".into(), json!(knob.flag.trim_start_matches("--")));
                fields.insert("value".into(), json!(value));
                fields.insert("runs".into(), json!(args.repeat));
                fields.insert("baseline".into(), json!(baseline));
                println!("{}", outcome.json(&fields));
            } else {
                println!(
                    "{:<34} {:>11.0} {:>9} {:>15}",
                    format!("{} {value}{}", knob.flag, if baseline { " (baseline)" } else { "" }),
                    outcome.events_per_sec(),
                    outcome.pct(0.99),
                    outcome.cpu_ns_per_event().map_or("-".into(), |ns| format!("{ns:.0}"))
                );
            }
            settings.push(Setting { flag: knob.flag, value, baseline, outcome });
        }
    }
    // The baseline runs once per knob that lists its value: their spread is this sweep's noise,
    // and a value is named best only when it beats the baseline's best run.
    let baseline_rates: Vec<f64> = settings.iter().filter(|s| s.baseline).map(|s| s.outcome.events_per_sec()).collect();
    let baseline_best = baseline_rates.iter().copied().fold(0.0, f64::max);
    if baseline_rates.len() >= 2 {
        let baseline_worst = baseline_rates.iter().copied().fold(f64::INFINITY, f64::min);
        base.note(&format!(
            "noise: the baseline ran {} times in this sweep, {baseline_worst:.0} to {baseline_best:.0} events/s \
             ({:.0}% apart); a smaller margin says nothing",
            baseline_rates.len(),
            100.0 * (baseline_best - baseline_worst) / baseline_worst.max(1.0)
        ));
    }
    let mut flags = Vec::new();
    for knob in KNOBS {
        let tried = settings.iter().filter(|s| s.flag == knob.flag);
        let Some(best) = tried.max_by(|a, b| a.outcome.events_per_sec().total_cmp(&b.outcome.events_per_sec())) else {
            continue;
        };
        let line = format!(
            "{} {}: {:.0} events/s, p99 {} µs, {} CPU ns/event",
            best.flag,
            best.value,
            best.outcome.events_per_sec(),
            best.outcome.pct(0.99),
            best.outcome.cpu_ns_per_event().map_or("-".into(), |ns| format!("{ns:.0}"))
        );
        if best.baseline || best.outcome.events_per_sec() > baseline_best {
            flags.push(format!("{} {}", best.flag, best.value));
            base.note(&format!("  {line}"));
        } else {
            flags.push(format!("{} {}", knob.flag, (knob.get)(base)));
            base.note(&format!("  {line}: not above the baseline's best run, keep {}", (knob.get)(base)));
        }
    }
    base.note(&format!("best for this machine (highest events/s per option): {}", flags.join(" ")));
    base.note("confirm a margin with `just bench-seed` and these flags before changing a default");
    Ok(())
}

fn run_setting(common: &Common, shape: Shape) -> Result<Outcome, String> {
    crate::measure_evstore(
        common,
        shape.producers,
        |_| Ok(()),
        |store| drive(&EvstoreClient(store), shape, "users/", &Progress::hidden()),
    )
}
