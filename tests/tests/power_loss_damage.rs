//! Damage on recorded disks, in the power loss harness: from the journals of seeded random runs
//! we build images of acknowledged state (every write durable, nothing in flight) and damage
//! them: a flipped bit in a group's records or padding, a zeroed 4 KiB block, a flipped bit or a
//! zeroed block in a used segment's header, a group write that landed at another block than its
//! own, a segment file cut short. A crash can only tear the last `groups_in_flight_max` groups of
//! the last segment, so damage anywhere else in the log must make `Store::open` fail with
//! `Error::Corrupted` naming the damaged segment, at or before the damage, and leave every
//! segment file byte for byte as it was (so that an operator can still save what is there).
//! Damage inside that window may be cut as a torn tail, keeping every acknowledged event before
//! the window, unless the store was closed cleanly: then its close marker says where the log
//! ends, there is no window, and any damage to a group must be `Corrupted`; a flip in the padding of a group outside it may open, with every acknowledged
//! event intact. In no case may an event be invented or changed.
//!
//! Without this, recovery could take bit rot or a misdirected write for a torn tail and silently
//! drop acknowledged events after it, delete a segment whose header it cannot read, or "repair"
//! (zero or remove) the evidence before refusing to open.

use std::time::Instant;

use evstore::{Backend, Error};
use evstore_tests::power_loss::{
    classify, damage, file_changes, fresh_dir, image_root, io_uring_works, kept_dir, mix, only_run, open_catching,
    points_at_damage, record_run, seed, verify_store, DiskImage, Failures, Layout, RunConfig, Timeline, DAMAGE_KINDS,
};
use evstore_tests::{watchdog, Rng};

/// Recorded runs per test run (backends and sync modes take turns).
const RUNS: usize = 4;
/// Damaged images per run.
const CASES_PER_RUN: usize = 80;
/// Distinguishes this test's runs from those of power_loss.rs under the same seed.
const SALT: u64 = 0xda6a_9e00;

#[test]
fn damage_outside_a_torn_tail_is_refused_without_changing_a_byte() {
    let _watchdog = watchdog("damage_outside_a_torn_tail_is_refused_without_changing_a_byte", 300);
    let started = Instant::now();
    let seed = seed();
    let uring = io_uring_works();
    let root = image_root();
    let mut failures = Failures::new("power_loss_damage", seed);
    let (mut cases, mut must, mut corrupted, mut opened) = (0usize, 0usize, 0usize, 0usize);
    let mut per_kind = [0usize; DAMAGE_KINDS.len()];
    for run in 0..RUNS {
        if only_run().is_some_and(|only| only != run) {
            continue;
        }
        let config = RunConfig::new(seed ^ SALT, run, uring);
        let (recording, oracle) = record_run(&config, &root, run, &mut failures);
        let timeline = Timeline::new(&recording.journal);
        // The end of the run, and moments in the middle where nothing was in flight.
        let quiet = timeline.quiescent_points();
        println!(
            "{}: journal of {} entries ({} writes, {} segments), {} appends, {} events, {} quiet moments",
            config.describe(),
            timeline.len,
            timeline.writes.len(),
            timeline.created.len(),
            recording.appends.len(),
            oracle.truth.len(),
            quiet.len()
        );
        let mut rng = Rng::new(mix(config.seed, 0xda));
        for index in 0..CASES_PER_RUN {
            let t = if index % 2 == 0 || quiet.is_empty() {
                timeline.len
            } else {
                quiet[rng.below(quiet.len() as u64) as usize]
            };
            let layout = Layout::at(&timeline, t, config.groups_in_flight_max);
            let pristine = DiskImage::durable_state(&recording.journal, &timeline, t);
            let kind_index = rng.below(DAMAGE_KINDS.len() as u64) as usize;
            let kind = DAMAGE_KINDS[kind_index];
            let mut damaged = pristine.clone();
            let Some(what) = damage(&mut damaged, &layout, &timeline, &recording.journal, kind, &mut rng) else {
                continue;
            };
            let acked_end = oracle.required_end(t);
            let verdict = classify(&pristine, &damaged, &layout, acked_end);
            if verdict.changed.is_empty() {
                continue;
            }
            cases += 1;
            per_kind[kind_index] += 1;
            must += usize::from(verdict.must_corrupt);
            let dir = fresh_dir(&root, "pl-damage");
            damaged.write_to(dir.path());
            let before = DiskImage::files(dir.path());
            let backend = if uring && rng.below(2) == 0 { Backend::IoUring } else { Backend::Portable };
            let options = config.image_options(backend);
            let detail = |problem: &str| {
                let kept = kept_dir(&format!("seed{seed}-damage-run{run}-case{index}"));
                damaged.write_to(&kept);
                format!(
                    "{}\n  image at journal index {t} of {} ({} groups, segments {:?} in use, log end {}, \
                     acknowledged end {acked_end}); {what}; changed: {}; {}; opened with {backend:?}\n  {problem}\n  \
                     the damaged image is kept at {} (open it with the run's options above)",
                    config.describe(),
                    timeline.len,
                    layout.groups.len(),
                    layout.headers.keys().collect::<Vec<_>>(),
                    layout.end_position(),
                    verdict.places.join(", "),
                    if verdict.must_corrupt {
                        "no crash leaves this: must be Corrupted".to_string()
                    } else {
                        format!("Corrupted, or open keeping the log up to {}", verdict.required_end)
                    },
                    kept.display()
                )
            };
            // Failures are counted per kind of check and kind of damage.
            let kind_of = |check: &str| format!("{check} [{kind:?}]");
            match open_catching(dir.path(), options.clone()) {
                Err(panic) => failures.add(&kind_of("Store::open panicked on a damaged image"), run, || detail(&panic)),
                Ok(Err(Error::Corrupted { segment, offset, reason })) => {
                    corrupted += 1;
                    let (changes, only_unused) = file_changes(&before, &DiskImage::files(dir.path()));
                    if !changes.is_empty() {
                        let check = if only_unused {
                            "a refused open removed an unused (prepared, zero) segment"
                        } else {
                            "a refused open changed segment files"
                        };
                        failures.add(&kind_of(check), run, || {
                            detail(&format!(
                                "Corrupted (segment {segment} offset {offset}: {reason}), but the files changed: {}",
                                changes.join(", ")
                            ))
                        });
                    }
                    if !points_at_damage(&verdict, segment, offset) {
                        failures.add(&kind_of("Corrupted does not point at the damage"), run, || {
                            detail(&format!(
                                "Corrupted names segment {segment} offset {offset} ({reason}); the changed bytes \
                                 are {:?}",
                                verdict.changed
                            ))
                        });
                    }
                }
                Ok(Err(error)) => {
                    let check = "Store::open failed on a damaged image with another error than Corrupted";
                    failures.add(&kind_of(check), run, || detail(&error.to_string()))
                }
                Ok(Ok(store)) if verdict.must_corrupt => {
                    // Say what the accepted log looks like: often acknowledged events are gone.
                    let log = match verify_store(store, dir.path(), &options, &oracle, acked_end, layout.end_position())
                    {
                        Ok(n) => format!("it opened with {n} events, every acknowledged one intact"),
                        Err((check, problem)) => format!("it opened: {check}: {problem}"),
                    };
                    failures.add(&kind_of("a damaged image that no crash leaves was opened"), run, || detail(&log));
                }
                Ok(Ok(store)) => {
                    let limit = layout.end_position();
                    match verify_store(store, dir.path(), &options, &oracle, verdict.required_end, limit) {
                        Ok(_) => opened += 1,
                        Err((check, problem)) => failures.add(&kind_of(check), run, || detail(&problem)),
                    }
                }
            }
        }
    }
    let kinds: Vec<String> = DAMAGE_KINDS.iter().zip(per_kind).map(|(kind, n)| format!("{kind:?} {n}")).collect();
    println!(
        "power loss damage: {cases} damaged images ({}), {must} that no crash leaves: corrupted {corrupted}, \
         opened {opened}, failed checks {}, {:.1} s",
        kinds.join(", "),
        failures.count(),
        started.elapsed().as_secs_f64()
    );
    failures.finish();
}
