//! Several threads share one handle (one lane, one set of 4,096 result slots) through an
//! `Arc<Store>`, each keeping thousands of tickets, some of refused appends, while other threads
//! drop tickets of the same lane: producers move live outcomes to `held`, tickets read and
//! release their slots, and the submitter writes them, all at once. A race there shows up as a
//! ticket that reports another append's position (or an error it did not get), or one that
//! never resolves. Each ticket is checked against the event at the position it reports.

use std::sync::mpsc;
use std::sync::Arc;

use evstore::{Backend, Error, Event, ExpectedVersion, Ticket};
use evstore_tests::{open, small_options, temp_dir, watchdog, Rng};

const THREADS: usize = 4;
const APPENDS: u64 = 6_000;

#[test]
fn tickets_of_a_shared_handle_each_report_their_own_append() {
    let _watchdog = watchdog("tickets_of_a_shared_handle_each_report_their_own_append", 240);
    let seed = evstore_tests::seed_from_env("ATTACK4_SEED");
    for backend in [Backend::IoUring, Backend::Portable] {
        let dir = temp_dir("attack4-shared-slots");
        let mut options = small_options(backend);
        options.segment_bytes = 32 << 20;
        let Some(store) = open(dir.path(), options) else { continue };
        let handle = Arc::new(store.clone());
        let (drops, dropped) = mpsc::channel::<Ticket>();
        let dropper = std::thread::spawn(move || {
            let mut n = 0u64;
            for ticket in dropped {
                drop(ticket);
                n += 1;
            }
            n
        });
        let producers: Vec<_> = (0..THREADS)
            .map(|t| {
                let handle = handle.clone();
                let drops = drops.clone();
                std::thread::spawn(move || {
                    let mut rng = Rng::new(seed ^ t as u64);
                    let name = format!("t-{t}");
                    let mut kept: Vec<(u64, bool, Ticket)> = Vec::new();
                    for i in 0..APPENDS {
                        let refused = rng.below(4) == 0;
                        let expected =
                            if refused { ExpectedVersion::Exact(u64::MAX - 1) } else { ExpectedVersion::Any };
                        let ticket =
                            handle.append(&name, expected, [Event::new("E", format!("{name}:{i}"))]).expect("append");
                        if rng.below(3) == 0 {
                            drops.send(ticket).expect("dropper");
                        } else {
                            kept.push((i, refused, ticket));
                        }
                        // Now and then resolve a random old one, while later appends reuse slots.
                        if rng.below(50) == 0 && !kept.is_empty() {
                            let at = rng.below(kept.len() as u64) as usize;
                            let (i, refused, ticket) = kept.swap_remove(at);
                            check(&handle, &name, i, refused, ticket);
                        }
                    }
                    for at in (1..kept.len()).rev() {
                        kept.swap(at, rng.below(at as u64 + 1) as usize);
                    }
                    for (i, refused, ticket) in kept {
                        check(&handle, &name, i, refused, ticket);
                    }
                })
            })
            .collect();
        drop(drops);
        for producer in producers {
            producer.join().expect("producer");
        }
        assert!(dropper.join().expect("dropper") > 0);
        drop(handle);
        store.close().expect("close");
    }
}

fn check(store: &evstore::Store, name: &str, i: u64, refused: bool, ticket: Ticket) {
    match (ticket.wait(), refused) {
        (Ok(appended), false) => {
            let event = store.read_all(appended.position).expect("read").next().expect("event").expect("read");
            assert_eq!(
                String::from_utf8_lossy(&event.data),
                format!("{name}:{i}"),
                "the ticket of {name}:{i} reports position {} (version {})",
                appended.position,
                appended.version
            );
            assert_eq!(event.version, appended.version);
        }
        (Err(Error::WrongExpectedVersion { .. }), true) => {}
        (outcome, refused) => panic!("{name}:{i} (refused: {refused}): {outcome:?}"),
    }
}
