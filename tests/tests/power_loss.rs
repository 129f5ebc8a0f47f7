//! Power loss at any moment of a run, simulated on a recorded disk: seeded random workloads (1 to
//! 5 events per append, every expected-version kind, some wrong on purpose, 1 to 3 producers,
//! tiny segments, 1 to 8 groups in flight, both sync modes, both backends) run on a fresh store
//! whose I/O is journaled; from each journal we build crash images (the segments created by then,
//! every write durable by then, any subset of the writes still in flight, whole or torn at sector
//! granularity, sometimes a half-prepared next segment) and open each with the real
//! `Store::open`. Every append acknowledged before the crash must come back byte for byte at its
//! position and versions, nothing never appended or refused may appear, every append must be
//! whole, read paths must agree, and the log must go on and survive a reopen.
//!
//! The SIGKILL test (crash.rs) only ever sees the states a killed process leaves, where the page
//! cache survives and every write that returned is on disk. Without this test, an engine that
//! acknowledged before its write was durable, relied on an in-flight write landing whole or in
//! order, wrote the next segment before the previous one was durable, or mistook a torn group for
//! the end of the log (or the end of the log for damage) would pass every other test.

use std::time::Instant;

use evstore::{Backend, Error};
use evstore_tests::power_loss::{
    fresh_dir, image_root, io_uring_works, kept_dir, mix, only_run, open_catching, record_run, seed, verify_store,
    CrashImage, Failures, RunConfig, Timeline,
};
use evstore_tests::{watchdog, Rng};

/// Recorded runs per test run: backends and sync modes take turns (see `RunConfig::new`).
const RUNS: usize = 12;
/// Crash images built from each run's journal.
const IMAGES_PER_RUN: usize = 100;

#[test]
fn every_crash_image_keeps_every_acknowledged_append() {
    let _watchdog = watchdog("every_crash_image_keeps_every_acknowledged_append", 300);
    let started = Instant::now();
    let seed = seed();
    let uring = io_uring_works();
    let root = image_root();
    let mut failures = Failures::new("power_loss", seed);
    let (mut runs, mut images, mut opened, mut cut, mut corrupted) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for run in 0..RUNS {
        if only_run().is_some_and(|only| only != run) {
            continue;
        }
        runs += 1;
        let config = RunConfig::new(seed, run, uring);
        let (recording, oracle) = record_run(&config, &root, run, &mut failures);
        let timeline = Timeline::new(&recording.journal);
        let in_flight = timeline.in_flight_points();
        println!(
            "{}: journal of {} entries ({} writes, {} segments, at most {} writes in flight), {} appends, {} events",
            config.describe(),
            timeline.len,
            timeline.writes.len(),
            timeline.created.len(),
            timeline.in_flight.iter().max().copied().unwrap_or(0),
            recording.appends.len(),
            oracle.truth.len()
        );
        let mut rng = Rng::new(mix(config.seed, 0x1a6e));
        for index in 0..IMAGES_PER_RUN {
            // Mostly moments with writes in flight: that is where torn and lost writes are.
            let t = if !in_flight.is_empty() && rng.below(4) != 0 {
                in_flight[rng.below(in_flight.len() as u64) as usize]
            } else {
                rng.below(timeline.len as u64 + 1) as usize
            };
            let image = CrashImage::random(&timeline, t, config.segment_bytes, &mut rng);
            let dir = fresh_dir(&root, "pl-image");
            image.write(&recording.journal, &timeline, dir.path());
            images += 1;
            let backend = if uring && rng.below(2) == 0 { Backend::IoUring } else { Backend::Portable };
            let options = config.image_options(backend);
            let required_end = oracle.required_end(t);
            // Only for the failures shown: rebuild the image, untouched by recovery, where it stays.
            let detail = |problem: &str| {
                let kept = kept_dir(&format!("seed{seed}-run{run}-image{index}"));
                image.write(&recording.journal, &timeline, &kept);
                format!(
                    "{}\n  {}; appends acknowledged by then end at position {required_end}; opened with {backend:?}\n  \
                     {problem}\n  the image before recovery is kept at {} (open it with the run's options above)",
                    config.describe(),
                    image.describe(&timeline),
                    kept.display()
                )
            };
            match open_catching(dir.path(), options.clone()) {
                Err(panic) => failures.add("Store::open panicked on a crash image", run, || detail(&panic)),
                Ok(Err(error)) => {
                    if matches!(error, Error::Corrupted { .. }) {
                        corrupted += 1;
                    }
                    failures.add("Store::open refused a crash image", run, || detail(&error.to_string()));
                }
                Ok(Ok(store)) => match verify_store(store, dir.path(), &options, &oracle, required_end, u64::MAX) {
                    Ok(n) => {
                        opened += 1;
                        if n < image.written_end(&timeline) {
                            cut += 1;
                        }
                    }
                    Err((kind, problem)) => failures.add(kind, run, || detail(&problem)),
                },
            }
        }
    }
    println!(
        "power loss: {images} crash images from {runs} runs: opened {opened} (cut {cut}), corrupted {corrupted}, \
         failed checks {}, {:.1} s",
        failures.count(),
        started.elapsed().as_secs_f64()
    );
    failures.finish();
    if only_run().is_none() {
        assert!(images >= 1000, "only {images} crash images: the test checked less than it claims");
    }
}
