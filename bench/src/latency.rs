//! `evstore-bench latency`: open-loop latency at a fixed rate (BENCH.md rules 3 and 4).
//!
//! Appends are scheduled at a fixed rate: append k is due at `t0 + k / rate`, whichever producer
//! thread takes it (the producers share one schedule). A producer sends each append when it is
//! due (at once if it is already late) and hands its ticket to its own waiter thread, which
//! waits for the tickets in order and records, for each, the time from its *scheduled* send
//! time to the moment the waiter learned it was durable: an append sent late (the producer was
//! blocked by backpressure, or descheduled) counts its lateness, so a stall shows in the
//! percentiles instead of hiding as fewer samples (no coordinated omission).
//!
//! `--rate 50%` is half the maximum measured at the start of the same run, on the same store:
//! a closed-loop phase (the matrix's load, one event per call, `--max-seconds` long) that also
//! serves as the warm-up. The first system in `--systems` sets that maximum; every system then
//! runs the same schedule. Each also reports its own closed-loop maximum.

use std::cell::Cell as ValueCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::peers::{self, Driven, PeerKind};
use crate::progress::Progress;
use crate::report::histogram;
use crate::workload::{drive_windowed, run_producers, Client, Events, EvstoreClient, Load, Streams};
use crate::Common;

/// A producer stops sending while this many of its events are sent and not yet known durable:
/// memory stays bounded when a system falls behind the schedule, and the appends it holds back
/// still count from their scheduled times.
const OUTSTANDING_EVENTS_MAX: u64 = 100_000;

/// The closed-loop phase's window per producer (as the matrix's default).
const MAX_PHASE_WINDOW_EVENTS: u64 = 1_000;

#[derive(clap::Args)]
pub struct LatencyArgs {
    /// Appends per second (one event each), or a share of the maximum measured first by the
    /// first system in --systems, e.g. `50%`.
    #[arg(long, default_value = "50%")]
    rate: String,
    /// Length of the open-loop phase, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    seconds: f64,
    /// Length of the closed-loop phase that measures the maximum (and warms up), in seconds.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    max_seconds: f64,
    /// Producer threads sharing the schedule (each with its own handle and waiter thread).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Data bytes per event.
    #[arg(long, default_value_t = 64, value_parser = crate::matrix::parse_bytes, value_name = "BYTES")]
    size: u64,
    /// Comma-separated, from: evstore, naive, sqlite, okaywal, rocksdb (only in a build with the
    /// `rocksdb` feature); the first one's maximum sets a `%` rate.
    #[arg(long, default_value = "evstore,naive")]
    systems: String,
    /// evstore only: also write an index checkpoint (`Store::checkpoint`) every this many
    /// milliseconds during the open loop (0: only the store's own), to see what checkpoints
    /// cost the appends waited on meanwhile.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    checkpoint_every_ms: u64,
    #[command(flatten)]
    common: Common,
}

/// Runs `phase` while another thread writes an index checkpoint of `store` every `every_ms`
/// milliseconds (none with 0), and notes how many it wrote and how long they took.
fn with_checkpoints(store: &evstore::Store, every_ms: u64, common: &Common, phase: impl FnOnce() -> Driven) -> Driven {
    if every_ms == 0 {
        return phase();
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let (driven, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut written = Vec::new();
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(every_ms));
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let started = Instant::now();
                let result = store.checkpoint();
                written.push((started.elapsed(), result.map_err(|e| e.to_string())));
            }
            written
        });
        let driven = phase();
        done.store(true, Ordering::SeqCst);
        (driven, writer.join().unwrap_or_default())
    });
    let failed: Vec<&String> = written.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    let longest = written.iter().map(|(t, _)| *t).max().unwrap_or_default();
    common.note(&format!(
        "evstore: {} index checkpoints written during the open loop (one every {every_ms} ms), the longest in {:.1} ms{}",
        written.len(),
        longest.as_secs_f64() * 1e3,
        if failed.is_empty() { String::new() } else { format!("; {} failed: {}", failed.len(), failed[0]) }
    ));
    driven
}

/// What `--rate` asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rate {
    PerSecond(f64),
    ShareOfMax(f64),
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("--rate {text:?}: give events per second (e.g. 200000) or a share of the maximum (e.g. 50%)");
    let rate = match text.trim().strip_suffix('%') {
        Some(share) => Rate::ShareOfMax(share.trim().parse::<f64>().map_err(|_| bad())? / 100.0),
        None => Rate::PerSecond(text.trim().parse::<f64>().map_err(|_| bad())?),
    };
    match rate {
        Rate::PerSecond(r) | Rate::ShareOfMax(r) if r > 0.0 && r.is_finite() => Ok(rate),
        _ => Err(bad()),
    }
}

pub fn run(args: &LatencyArgs) -> Result<(), String> {
    let common = &args.common;
    let requested = parse_rate(&args.rate)?;
    let mut allowed = vec!["evstore"];
    allowed.extend(PeerKind::ALL.iter().map(|p| p.name()));
    let systems = peers::runnable(peers::parse_systems(&args.systems, &allowed)?, common);
    if args.producers == 0 || args.producers > 1024 {
        return Err(format!("--producers {}: use 1 to 1024", args.producers));
    }
    for (flag, value) in [("--seconds", args.seconds), ("--max-seconds", args.max_seconds)] {
        if !(value > 0.0 && value.is_finite()) {
            return Err(format!("{flag} {value}: use a positive number of seconds"));
        }
    }
    std::fs::create_dir_all(&common.dir).map_err(|e| format!("creating {}: {e}", common.dir.display()))?;
    let context = common.print_machine(&format!(
        "latency: open loop at --rate {}, {} s, {} producers sharing the schedule, events of {} B, systems {}",
        args.rate,
        args.seconds,
        args.producers,
        args.size,
        systems.join(",")
    ));
    let data = vec![0x5au8; args.size as usize];
    let events = Events { event_type: crate::matrix::MATRIX_EVENT_TYPE, data: &data, count: 1 };
    let closed_loop = Load {
        producers: args.producers,
        events,
        events_per_producer: u64::MAX,
        deadline: Duration::from_secs_f64(args.max_seconds),
        window_events: MAX_PHASE_WINDOW_EVENTS,
        window_bytes: u64::MAX,
    };
    // Set by the first system's closed-loop phase when the rate is a share of it.
    let rate = ValueCell::new(match requested {
        Rate::PerSecond(r) => Some(r),
        Rate::ShareOfMax(_) => None,
    });
    let mut outcomes = Vec::new();
    let mut maxima = Vec::new();
    for system in &systems {
        let max = ValueCell::new(0.0);
        let measure_max = |client: &dyn Fn(&Load, &Progress) -> Driven| -> Result<(), String> {
            let (seconds, latency_us) = client(&closed_loop, &Progress::hidden())?;
            let events_per_sec = latency_us.len() as f64 / seconds;
            max.set(events_per_sec);
            if let (None, Rate::ShareOfMax(share)) = (rate.get(), requested) {
                rate.set(Some(events_per_sec * share));
            }
            Ok(())
        };
        let open_loop = |client: &dyn Fn(f64, &Progress) -> Driven| -> Driven {
            let rate = rate.get().expect("the rate is known once the first closed-loop phase ran");
            let progress = Progress::start(system, (rate * args.seconds) as u64, "events");
            let driven = client(rate, &progress);
            progress.finish();
            driven
        };
        let outcome = if system == "evstore" {
            crate::measure_evstore(
                common,
                args.producers,
                |store| measure_max(&|load, progress| drive_windowed(&EvstoreClient(store), load, "max/", progress)),
                |store| {
                    with_checkpoints(store, args.checkpoint_every_ms, common, || {
                        open_loop(&|rate, progress| {
                            drive_open_loop(&EvstoreClient(store), events, rate, args.seconds, args.producers, progress)
                        })
                    })
                },
            )?
        } else {
            let kind = PeerKind::parse(system).ok_or_else(|| format!("unknown system {system}"))?;
            peers::measure(
                common,
                kind,
                args.producers,
                |client| measure_max(&|load, progress| drive_windowed(client, load, "max/", progress)),
                |client| {
                    open_loop(&|rate, progress| {
                        drive_open_loop(client, events, rate, args.seconds, args.producers, progress)
                    })
                },
            )?
            .0
        };
        maxima.push(max.get());
        outcomes.push(outcome);
    }
    let rate = rate.get().unwrap_or(0.0);
    let mut contexts = Vec::new();
    for (outcome, max) in outcomes.iter().zip(&maxima) {
        let mut fields = context.clone();
        fields.insert("rate_requested".into(), json!(args.rate));
        fields.insert("rate_events_per_sec".into(), json!(rate));
        fields.insert("closed_loop_max_events_per_sec".into(), json!(max));
        fields.insert("event_bytes".into(), json!(args.size));
        fields.insert("open_loop_seconds".into(), json!(args.seconds));
        contexts.push((outcome, fields));
    }
    if common.json {
        for (outcome, fields) in &contexts {
            println!("{}", outcome.json(fields));
        }
        common.print_hgrm(&outcomes, "latency-");
    } else {
        common.print(&outcomes, &context, "latency-");
    }
    for (outcome, max) in outcomes.iter().zip(&maxima) {
        common.note(&format!(
            "{}: closed-loop maximum {:.0} events/s; open loop at {:.0} events/s ({:.0}% of it): {:.0} events/s \
             achieved, p99 {} µs, p99.9 {} µs{}",
            outcome.system,
            max,
            rate,
            100.0 * rate / max.max(1.0),
            outcome.events_per_sec(),
            outcome.pct(0.99),
            outcome.pct(0.999),
            common.durability_tag()
        ));
    }
    Ok(())
}

/// The open-loop run: `rate` appends per second for `seconds`, shared by `producers` threads,
/// each with a waiter thread. Returns the wall time until the last append was known durable and
/// every append's latency from its scheduled time, in microseconds.
fn drive_open_loop<C: Client>(
    client: &C,
    events: Events<'_>,
    rate: f64,
    seconds: f64,
    producers: usize,
    progress: &Progress,
) -> Driven
where
    C::Pending: Send,
{
    let total = (rate * seconds).ceil().max(1.0) as u64;
    let interval_ns = 1e9 / rate;
    let next = AtomicU64::new(0);
    run_producers(producers, |p, t0, failed| {
        let (sender, receiver) = mpsc::channel::<(Instant, C::Pending)>();
        let outstanding = AtomicU64::new(0);
        std::thread::scope(|scope| {
            let outstanding = &outstanding;
            let waiter = scope.spawn(move || {
                let mut latency_us = histogram();
                for (due, pending) in receiver {
                    client.wait(pending)?;
                    latency_us.saturating_record(due.elapsed().as_micros() as u64);
                    outstanding.fetch_sub(1, Ordering::Release);
                    progress.add(1);
                }
                Ok(latency_us)
            });
            let sent = (|| {
                let handle = client.producer();
                let mut streams = Streams::new("open/", p);
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= total || failed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let due = t0 + Duration::from_nanos((k as f64 * interval_ns) as u64);
                    sleep_until(due);
                    while outstanding.load(Ordering::Acquire) >= OUTSTANDING_EVENTS_MAX {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    let pending = client.append(&handle, streams.next(1), events)?;
                    outstanding.fetch_add(1, Ordering::Release);
                    sender.send((due, pending)).map_err(|_| "the waiter thread stopped".to_string())?;
                }
            })();
            // Ends the waiter's loop once it has waited for everything sent.
            drop(sender);
            let waited = waiter.join().unwrap_or_else(|_| Err("a waiter thread panicked".into()));
            sent.and(waited)
        })
    })
}

/// Returns at `due` or just after: sleeps while it is far, then yields. A due time in the past
/// returns at once (the append is late, and its latency will say so).
fn sleep_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_events_per_second_or_a_share() {
        assert_eq!(parse_rate("200000"), Ok(Rate::PerSecond(200_000.0)));
        assert_eq!(parse_rate("50%"), Ok(Rate::ShareOfMax(0.5)));
        for bad in ["", "fast", "0", "-5", "0%", "NaN"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }
}
