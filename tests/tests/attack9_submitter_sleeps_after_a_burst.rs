//! `Options::poll_small_writes` makes the submitter spin (with yields) around small groups: up
//! to 500 us for a write's completion, up to 100 us after publishing one, backing off while
//! such polls find nothing. Once the appends stop, it must go back to sleep: a polling loop
//! that never ends (or re-arms itself without new appends) would keep a core busy forever.
//!
//! After a burst of single-event appends, each waited on (from 1 and from 4 threads, and with
//! one last append nobody waits on), with no more appends, the process's CPU time (user +
//! system, every thread: getrusage RUSAGE_SELF) over an idle 500 ms must stay small: under
//! 100 ms, where a submitter spinning the whole time would take about 500 ms. The same with the
//! option off, as a reference, and on both backends. Alone in its binary (the measure counts
//! every thread of the process), with its cases run one after another in a single test.

use std::time::Duration;

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{backends, open, read_all, small_options, temp_dir, watchdog, Rng};

const IDLE: Duration = Duration::from_millis(500);
const IDLE_CPU_MAX: Duration = Duration::from_millis(100);

/// User + system CPU time of the whole process so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

fn options(backend: Backend, poll_small_writes: bool) -> Options {
    small_options(backend).poll_small_writes(poll_small_writes)
}

/// `threads` threads append `per_thread` single events each, waiting on each, with pauses of
/// 0 to 100 us (close enough for the idle poll to find the next one, mostly).
fn burst(store: &Store, threads: u64, per_thread: u64, seed: u64) {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ t);
                for i in 0..per_thread {
                    if rng.below(2) == 0 {
                        std::thread::sleep(Duration::from_micros(rng.below(101)));
                    }
                    store
                        .append(&format!("t{t}"), ExpectedVersion::Any, [Event::new("E", format!("{t}:{i}"))])
                        .and_then(evstore::Ticket::wait)
                        .expect("append");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("appender");
    }
}

/// CPU time of the process over `IDLE` with nothing to do.
fn idle_cpu() -> Duration {
    let before = process_cpu();
    std::thread::sleep(IDLE);
    process_cpu().saturating_sub(before)
}

#[test]
fn the_submitter_sleeps_once_single_appends_stop() {
    let _watchdog = watchdog("the_submitter_sleeps_once_single_appends_stop", 120);
    let mut failures = Vec::new();
    for backend in backends() {
        for poll_small_writes in [true, false] {
            for (threads, per_thread, unwaited_last) in [(1, 2000, false), (4, 500, false), (1, 1000, true)] {
                let what = format!(
                    "{backend:?}, poll_small_writes {poll_small_writes}, {threads} threads x {per_thread}{}",
                    if unwaited_last { ", then one append nobody waits on" } else { "" }
                );
                let dir = temp_dir("attack9-idle-cpu");
                let Some(store) = open(dir.path(), options(backend, poll_small_writes)) else { continue };
                burst(&store, threads, per_thread, 7);
                if unwaited_last {
                    drop(store.append("last", ExpectedVersion::Any, [Event::new("E", "last")]).expect("append"));
                }
                // The first idle stretch takes in the linger of the unwaited append, the last
                // polls and a background checkpoint, if any: measure twice, keep the second
                // (and report both).
                let first = idle_cpu();
                let second = idle_cpu();
                println!("{what}: CPU over idle {IDLE:?}: {first:?}, then {second:?}");
                if second >= IDLE_CPU_MAX {
                    failures.push(format!("{what}: {second:?} of CPU over an idle {IDLE:?} (first {first:?})"));
                }
                let expected_events = threads * per_thread + u64::from(unwaited_last);
                assert_eq!(read_all(&store).len() as u64, expected_events, "{what}: events");
                store.close().expect("close");
            }
        }
    }
    assert!(failures.is_empty(), "the submitter kept a core busy with nothing to do:\n{}", failures.join("\n"));
}
