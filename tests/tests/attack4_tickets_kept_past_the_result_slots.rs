//! A lane has 4,096 result slots; the outcome of a ticket kept alive past 4,096 later appends of
//! its handle is moved aside (`held`), and a failed append's error lives there while its ticket
//! does. Without that, a caller that keeps many tickets (a batch importer that waits at the
//! end, in any order) would read another append's outcome, or never resolve. Here one handle
//! keeps 20,000 tickets, a fifth of them refused (wrong expected version), some dropped on other
//! threads, and waits on the rest in a random order: each must report its own append. Then a
//! long run of refused appends whose tickets are dropped unread must not grow the heap (an
//! error left in `held` per dropped ticket would).

use std::collections::HashMap;

use evstore::{Backend, Error, Event, ExpectedVersion, Ticket};
use evstore_tests::{heap_bytes_alive, open, read_stream, small_options, temp_dir, watchdog, CountingAllocator, Rng};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const APPENDS: u64 = 20_000;

#[test]
fn every_kept_ticket_reports_its_own_append_and_dropped_errors_do_not_pile_up() {
    let _watchdog = watchdog("every_kept_ticket_reports_its_own_append_and_dropped_errors_do_not_pile_up", 240);
    let mut rng = Rng::new(evstore_tests::seed_from_env("ATTACK4_SEED"));
    for backend in [Backend::IoUring, Backend::Portable] {
        let dir = temp_dir("attack4-kept-tickets");
        let mut options = small_options(backend);
        options.segment_bytes = 16 << 20;
        let Some(store) = open(dir.path(), options) else { continue };
        // (ticket, Some(data) for an append that must succeed, None for one that must fail)
        let mut kept: Vec<(Ticket, Option<u64>)> = Vec::new();
        let mut dropped_elsewhere = Vec::new();
        let mut version = None::<u64>;
        for i in 0..APPENDS {
            if i % 5 == 4 {
                // Refused: the stream is never at version u64::MAX - 1.
                let ticket = store
                    .append("kept", ExpectedVersion::Exact(u64::MAX - 1), [Event::new("Refused", format!("{i}"))])
                    .expect("append");
                if i % 3 == 0 {
                    dropped_elsewhere.push(ticket);
                } else {
                    kept.push((ticket, None));
                }
                continue;
            }
            let expected = match version {
                None => ExpectedVersion::NoStream,
                Some(v) => ExpectedVersion::Exact(v),
            };
            version = Some(version.map_or(0, |v| v + 1));
            let ticket = store.append("kept", expected, [Event::new("Kept", format!("{i}"))]).expect("append");
            if i % 7 == 3 {
                dropped_elsewhere.push(ticket);
            } else {
                kept.push((ticket, Some(i)));
            }
        }
        let dropper = std::thread::spawn(move || drop(dropped_elsewhere));
        // Random order.
        for at in (1..kept.len()).rev() {
            kept.swap(at, rng.below(at as u64 + 1) as usize);
        }
        let events = read_stream(&store, "kept");
        let by_version: HashMap<u64, String> =
            events.iter().map(|e| (e.version, String::from_utf8_lossy(&e.data).into_owned())).collect();
        let mut ok = 0;
        for (ticket, expected) in kept {
            match (ticket.wait(), expected) {
                (Ok(appended), Some(i)) => {
                    let data = match by_version.get(&appended.version) {
                        Some(data) => data.clone(),
                        None => {
                            let event = store.read_stream("kept", appended.version).expect("read").next();
                            String::from_utf8_lossy(&event.expect("event").expect("read").data).into_owned()
                        }
                    };
                    assert_eq!(data, i.to_string(), "the ticket of append {i} names another append's event");
                    ok += 1;
                }
                (Err(Error::WrongExpectedVersion { .. }), None) => {}
                (outcome, expected) => panic!("append {expected:?}: {outcome:?}"),
            }
        }
        dropper.join().expect("dropper");
        assert!(ok > 10_000);
        assert_eq!(store.stream_version("kept"), version);

        // Refused appends whose tickets are dropped unread, far past the slots: the heap stays.
        let before = heap_bytes_alive();
        for round in 0..20 {
            for _ in 0..10_000 {
                drop(store.append("kept", ExpectedVersion::NoStream, [Event::new("Refused", "")]).expect("append"));
            }
            store.append("kept", ExpectedVersion::Any, [Event::new("Sync", "")]).expect("append").wait().expect("ok");
            if round == 1 {
                // After the first rounds: the index and tables have grown to their working size.
                let settled = heap_bytes_alive();
                assert!(settled - before < 4 << 20, "{} KiB after 20,000 refused appends", (settled - before) / 1024);
            }
        }
        let grown = heap_bytes_alive() - before;
        assert!(grown < 4 << 20, "200,000 refused appends with dropped tickets grew the heap by {} KiB", grown / 1024);
        store.close().expect("close");
    }
}
