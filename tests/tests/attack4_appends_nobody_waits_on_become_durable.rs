//! An append whose caller never waits (its ticket dropped) is written when its group's linger
//! time is up; nobody rings for it. If the submitter lingered on a deadline it then missed
//! (slept past it as idle, or never woke), such appends would stay in memory until some other
//! caller waited, or until close: lost in a crash that a caller reasonably thought they were
//! safe from, long after `linger`. Here, with linger 0, the default, and the maximum of 1 s, on
//! both backends, a producer appends and drops its tickets, and the events must become durable
//! on their own (the bound, 10 s, only tells a hang from slowness); the same in polling mode
//! with more producers than cores, each waiting on its own appends.

use std::time::{Duration, Instant};

use evstore::{Backend, Event, ExpectedVersion};
use evstore_tests::{check_log_shape, open, small_options, temp_dir, watchdog};

#[test]
fn dropped_tickets_appends_become_durable_within_the_linger_time_and_a_write() {
    let _watchdog = watchdog("dropped_tickets_appends_become_durable_within_the_linger_time_and_a_write", 240);
    for backend in [Backend::IoUring, Backend::Portable] {
        for linger in [Duration::ZERO, Duration::from_micros(100), Duration::from_secs(1)] {
            let dir = temp_dir("attack4-linger");
            let mut options = small_options(backend);
            options.linger = linger;
            let Some(store) = open(dir.path(), options) else { continue };
            for round in 0..3u64 {
                let appended = Instant::now();
                // A single append, then a burst, both with tickets dropped.
                let burst = [1u64, 50][round as usize % 2];
                for _ in 0..burst {
                    drop(store.append("quiet", ExpectedVersion::Any, [Event::new("E", "x")]).expect("append"));
                }
                loop {
                    if store.durable_position() >= store_expected(round) {
                        break;
                    }
                    assert!(
                        appended.elapsed() < Duration::from_secs(10) + linger,
                        "{backend:?}, linger {linger:?}: appends nobody waits on not durable after {:?}",
                        appended.elapsed()
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            check_log_shape(&store);
            store.close().expect("close");
        }
    }
}

/// Events appended by the end of round `round` (1, then 50, then 1).
fn store_expected(round: u64) -> u64 {
    [1, 51, 52][round as usize]
}

#[test]
fn polling_with_more_producers_than_cores_makes_progress() {
    let _watchdog = watchdog("polling_with_more_producers_than_cores_makes_progress", 240);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for backend in [Backend::IoUring, Backend::Portable] {
        let dir = temp_dir("attack4-polling");
        let mut options = small_options(backend);
        options.polling = true;
        options.segment_bytes = 16 << 20;
        let Some(store) = open(dir.path(), options) else { continue };
        let threads: Vec<_> = (0..cores * 4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let name = format!("p-{t}");
                    for v in 0..300u64 {
                        let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v - 1) };
                        let appended = store.append(&name, expected, [Event::new("E", "x")]).expect("append").wait();
                        assert_eq!(appended.expect("durable").version, v);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("producer");
        }
        assert_eq!(check_log_shape(&store), cores as u64 * 4 * 300);
        store.close().expect("close");
    }
}
