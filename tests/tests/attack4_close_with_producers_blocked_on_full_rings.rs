//! Closing while producers are blocked on full rings (backpressure) must neither hang (a
//! producer waiting for room the stopped submitter will never make, a ticket waiting for a
//! placement that never comes) nor lose an acknowledged append, nor acknowledge one that is not
//! in the log. Every ticket must resolve to durable (and the event is then found after a
//! reopen, at the reported position) or to `Closed`; every later append fails with `Closed`.
//! Tickets are waited on after the last handle is gone, from other threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use evstore::{Backend, Error, Event, ExpectedVersion, Store};
use evstore_tests::{check_log_shape, open, small_options, temp_dir, watchdog};

#[test]
fn close_with_producers_blocked_on_full_rings_resolves_every_ticket_truthfully() {
    let _watchdog = watchdog("close_with_producers_blocked_on_full_rings_resolves_every_ticket_truthfully", 240);
    for backend in [Backend::IoUring, Backend::Portable] {
        let dir = temp_dir("attack4-close-blocked");
        let mut options = small_options(backend);
        options.queue_bytes = 64 << 10;
        options.groups_in_flight_max = 1;
        options.segment_bytes = 64 << 20;
        let Some(store) = open(dir.path(), options.clone()) else { continue };
        let started = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..8)
            .map(|t| {
                let handle = store.clone();
                let started = started.clone();
                std::thread::spawn(move || {
                    let name = format!("p-{t}");
                    let mut tickets = Vec::new();
                    for i in 0u64.. {
                        // Inline, nearly a quarter of the ring: four fill it.
                        let data =
                            format!("{name}:{i}:").into_bytes().into_iter().chain([b'x'; 15_000]).collect::<Vec<u8>>();
                        match handle.append(&name, ExpectedVersion::Any, [Event::new("E", data)]) {
                            Ok(ticket) => tickets.push((i, ticket)),
                            Err(Error::Closed) => break,
                            Err(e) => panic!("{name}: append {i}: {e}"),
                        }
                        if i == 20 {
                            started.store(true, Ordering::SeqCst);
                        }
                    }
                    drop(handle);
                    (name, tickets)
                })
            })
            .collect();
        while !started.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
        store.close().expect("close");
        let mut durable = Vec::new();
        let mut closed = 0;
        for producer in producers {
            let (name, tickets) = producer.join().expect("producer");
            // Waited on from another thread, after every handle is gone.
            let outcomes = std::thread::spawn(move || {
                tickets.into_iter().map(|(i, ticket)| (i, ticket.wait())).collect::<Vec<_>>()
            })
            .join()
            .expect("waiter");
            for (i, outcome) in outcomes {
                match outcome {
                    Ok(appended) => durable.push((name.clone(), i, appended.position)),
                    Err(Error::Closed) => closed += 1,
                    Err(e) => panic!("{name} {i}: {e}"),
                }
            }
        }
        println!("{backend:?}: {} durable, {closed} refused at close", durable.len());
        let store: Store = open(dir.path(), options).expect("reopen");
        let events = check_log_shape(&store);
        assert_eq!(events, durable.len() as u64, "the log holds exactly the acknowledged appends");
        for (name, i, position) in durable {
            let event = store.read_all(position).expect("read").next().expect("an event").expect("read");
            assert_eq!(event.stream, name);
            assert!(event.data.starts_with(format!("{name}:{i}:").as_bytes()), "{name} {i} at {position}");
        }
        store.close().expect("close");
    }
}
