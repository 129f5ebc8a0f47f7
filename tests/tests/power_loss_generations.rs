//! Power loss in every generation of a store's life, with its options changing between them.
//! Each generation opens what the previous one's crash left (so recovery of a recovered log, and
//! writes after a cut, are exercised), with a random backend, sync mode, pipeline window, group
//! size and segment size, appends from three threads while recording its I/O, ends with a clean
//! close or a drop, and is cut by a power loss at a random point of its journal: half the time
//! right around a segment header or an end marker write (a rollover, a close), the moments the
//! end-marker rules of engine/src/log/recovery.rs are about. The next generation's open must keep every append
//! acknowledged before the crash and show a prefix of what the crashed generation wrote.
//! Without this, a rule that holds for one fresh store could break the second time round: a
//! rollover left half done, a segment started under another window than its header names, a
//! marker overwritten by the next run's first group.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use evstore::testing::{FaultPlan, JournalEntry};
use evstore::{Backend, Event, ExpectedVersion, Options, Store, SyncMode};
use evstore_tests::power_loss::{fresh_dir, image_root, io_uring_works, seed};
use evstore_tests::{check_log_shape, read_all, segment_path, watchdog, Rng};

/// Runs per test run, and generations per run.
const RUNS: u64 = 20;
const GENERATIONS: usize = 6;
/// Sector size for torn writes.
const SECTOR_BYTES: usize = 512;

/// Makes `target` hold exactly the segment files (`*.evs`) of `source`.
fn copy_segments(source: &Path, target: &Path) {
    for entry in std::fs::read_dir(target).expect("read target") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::remove_file(path).expect("clear target");
        }
    }
    for entry in std::fs::read_dir(source).expect("read source") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if name.ends_with(".evs") {
            std::fs::copy(&path, target.join(&name)).expect("copy segment");
        }
    }
}

fn random_options(rng: &mut Rng, uring: bool, plan: &FaultPlan) -> Options {
    let mut options = Options::default();
    options.backend = if uring && rng.below(2) == 0 { Backend::IoUring } else { Backend::Portable };
    options.groups_in_flight_max = 1 + rng.below(4) as usize;
    options.group_bytes_max = [8usize << 10, 16 << 10, 64 << 10][rng.below(3) as usize];
    options.segment_bytes = [64u64 << 10, 128 << 10, 256 << 10][rng.below(3) as usize];
    options.segment_bytes = options.segment_bytes.max(options.group_bytes_max as u64 + 8192);
    options.sync = if rng.below(2) == 0 { SyncMode::Fdatasync } else { SyncMode::Dsync };
    options.allow_volatile = true;
    options.faults = Some(plan.clone());
    options
}

/// Appends from three threads, a few tickets at a time; returns, per acknowledged append, the
/// log end it reached and the journal length read right after its ticket resolved.
fn appends(store: &Store, plan: &FaultPlan, rng: &mut Rng, group_bytes_max: u64) -> Vec<(u64, usize)> {
    let threads: Vec<_> = (0..3u64)
        .map(|thread| {
            let store = store.clone();
            let plan = plan.clone();
            let mut rng = Rng::new(rng.next_u64());
            std::thread::spawn(move || {
                let mut acks = Vec::new();
                for _ in 0..5 + rng.below(15) {
                    let mut tickets = Vec::new();
                    for _ in 0..1 + rng.below(4) {
                        let events: Vec<_> = (0..1 + rng.below(3))
                            .map(|i| {
                                Event::new("E", vec![b'a' + i as u8; 50 + rng.below(group_bytes_max / 4) as usize])
                            })
                            .collect();
                        let stream = format!("t{thread}-{}", rng.below(3));
                        tickets.push(store.append(&stream, ExpectedVersion::Any, events).expect("append"));
                    }
                    for ticket in tickets {
                        let appended = ticket.wait().expect("durable");
                        acks.push((appended.position + 1, plan.journal_len()));
                    }
                }
                acks
            })
        })
        .collect();
    threads.into_iter().flat_map(|thread| thread.join().expect("appending thread")).collect()
}

/// The files a power loss at journal index `t` leaves: the generation's starting files
/// (`snapshot`, taken at journal index `start`), segments created since, every write durable by
/// `t`, and each write in flight at `t` with probability 1/2, torn by sector.
fn build_image(
    snapshot: &Path,
    image: &Path,
    journal: &[JournalEntry],
    start: usize,
    t: usize,
    rng: &mut Rng,
) -> usize {
    copy_segments(snapshot, image);
    let mut durable = std::collections::HashSet::new();
    for entry in &journal[..t] {
        if let JournalEntry::Durable { id } = entry {
            durable.insert(*id);
        }
    }
    let mut files: HashMap<u64, File> = HashMap::new();
    let mut torn = 0;
    for entry in &journal[start..t] {
        match entry {
            JournalEntry::Created { segment, bytes } => {
                let file = File::create(segment_path(image, *segment)).expect("create segment");
                file.set_len(*bytes).expect("size segment");
                files.insert(*segment, file);
            }
            JournalEntry::Write { id, segment, offset, data } => {
                let file = files.entry(*segment).or_insert_with(|| {
                    std::fs::OpenOptions::new().write(true).open(segment_path(image, *segment)).expect("open segment")
                });
                if durable.contains(id) {
                    file.write_all_at(data, *offset).expect("apply write");
                } else if rng.below(2) == 0 {
                    torn += 1;
                    for sector in 0..data.len().div_ceil(SECTOR_BYTES) {
                        if rng.below(2) == 0 {
                            let range = sector * SECTOR_BYTES..((sector + 1) * SECTOR_BYTES).min(data.len());
                            file.write_all_at(&data[range.clone()], offset + range.start as u64).expect("torn write");
                        }
                    }
                }
            }
            JournalEntry::Durable { .. } => {}
        }
    }
    torn
}

#[test]
fn every_generation_survives_its_power_loss() {
    let _watchdog = watchdog("every_generation_survives_its_power_loss", 300);
    let seed = seed();
    let uring = io_uring_works();
    let root = image_root();
    let mut failures = Vec::new();
    let mut crashes = 0;
    'runs: for run in 0..RUNS {
        let mut rng = Rng::new(seed ^ run.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let work = fresh_dir(&root, "pl-gen-work");
        let snapshot = fresh_dir(&root, "pl-gen-snapshot");
        let image = fresh_dir(&root, "pl-gen-image");
        let mut history = Vec::new();
        // What the previous generation wrote, and how much of it was acknowledged by its crash.
        let mut previous: Option<(usize, Vec<Vec<u8>>)> = None;
        // One more open than generations: the last one only checks the last power loss.
        for generation in 0..=GENERATIONS {
            let plan = FaultPlan::new();
            plan.record_io();
            let options = random_options(&mut rng, uring, &plan);
            let close = rng.below(3) == 0;
            history.push(format!(
                "generation {generation}: {:?} {:?}, {} in flight, groups {} B, segments {} B, {}",
                options.backend,
                options.sync,
                options.groups_in_flight_max,
                options.group_bytes_max,
                options.segment_bytes,
                if close { "closed" } else { "dropped" }
            ));
            if generation > 0 {
                copy_segments(image.path(), work.path());
            }
            let fail = |problem: String, history: &[String]| {
                format!("seed {seed} run {run}: {problem}\n    {}", history.join("\n    "))
            };
            let store = match Store::open(work.path(), options.clone()) {
                Ok(store) => store,
                Err(e) => {
                    failures.push(fail(format!("open failed: {e}"), &history));
                    continue 'runs;
                }
            };
            let recovered: Vec<Vec<u8>> = read_all(&store).into_iter().map(|event| event.data).collect();
            if let Some((required, written)) = &previous {
                let prefix = recovered.len() <= written.len() && recovered[..] == written[..recovered.len()];
                if recovered.len() < *required || !prefix {
                    let problem = format!(
                        "recovered {} events, {required} were acknowledged before the crash, of {} written (a prefix of them: {prefix})",
                        recovered.len(),
                        written.len()
                    );
                    failures.push(fail(problem, &history));
                    continue 'runs;
                }
            }
            check_log_shape(&store);
            if generation == GENERATIONS {
                store.close().expect("close");
                break;
            }
            // The generation's starting state: its journal from here on is what changes it. (The
            // preparer may create a segment meanwhile; its `Created` entry recreates it.)
            let start = plan.journal_len();
            copy_segments(work.path(), snapshot.path());
            let acks = appends(&store, &plan, &mut rng, options.group_bytes_max as u64);
            let written: Vec<Vec<u8>> = read_all(&store).into_iter().map(|event| event.data).collect();
            if close {
                store.close().expect("close");
            } else {
                drop(store);
            }
            let journal = plan.journal();
            let mut t = start + rng.below((journal.len() - start + 1) as u64) as usize;
            let moments: Vec<usize> = (start..journal.len())
                .filter(|&i| match &journal[i] {
                    JournalEntry::Write { offset: 0, .. } => true,
                    JournalEntry::Write { data, .. } => data.starts_with(b"EVNX") || data.starts_with(b"EVCL"),
                    _ => false,
                })
                .collect();
            if !moments.is_empty() && rng.below(2) == 0 {
                t = (moments[rng.below(moments.len() as u64) as usize] + rng.below(3) as usize).min(journal.len());
            }
            let required = acks.iter().filter(|(_, len)| *len <= t).map(|(end, _)| *end as usize).max().unwrap_or(0);
            let required = required.max(recovered.len());
            let torn = build_image(snapshot.path(), image.path(), &journal, start, t, &mut rng);
            crashes += 1;
            history.push(format!(
                "  power loss at journal index {t} of {} (generation started at {start}), {torn} writes torn, {required} of {} events acknowledged",
                journal.len(),
                written.len()
            ));
            previous = Some((required, written));
        }
    }
    println!("power loss generations: {RUNS} runs, {crashes} power losses, {} failures", failures.len());
    for failure in &failures {
        println!("FAILED {failure}\n  replay with EVSTORE_POWER_LOSS_SEED={seed}");
    }
    assert!(failures.is_empty(), "{} of {RUNS} runs failed (details above)", failures.len());
}
