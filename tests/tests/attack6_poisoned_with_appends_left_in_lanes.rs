//! With `linger` = 1 s, appends nobody waits on sit in their lanes when a write fails and the
//! store is poisoned. Every ticket must then resolve with an error (`Poisoned`), through
//! `wait()`, `is_done()` and `.await` alike, without waiting for anything that will never come;
//! later appends fail at once; `close()` reports the poisoning. An append ordered behind another
//! handle's undrained append to the same stream must not hang either. Both backends.

use std::time::{Duration, Instant};

use evstore::testing::FaultPlan;
use evstore::{Backend, Error, Event, ExpectedVersion, Options};
use evstore_tests::{backends, block_on, open, temp_dir, watchdog};

fn options(backend: Backend, plan: &FaultPlan) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.linger = Duration::from_secs(1);
    options.faults = Some(plan.clone());
    options.segment_bytes = 4 << 20;
    options.group_bytes_max = 64 << 10;
    options.grow_segments = false;
    options
}

#[test]
fn tickets_of_appends_left_in_lanes_fail_when_the_store_is_poisoned() {
    let _watchdog = watchdog("tickets_of_appends_left_in_lanes_fail_when_the_store_is_poisoned", 60);
    for backend in backends() {
        let dir = temp_dir("attack6-poisoned-lanes");
        let plan = FaultPlan::new();
        let Some(store) = open(dir.path(), options(backend, &plan)) else { continue };
        let handles: Vec<_> = (0..6).map(|_| store.clone()).collect();
        for handle in &handles {
            handle
                .append("warm", ExpectedVersion::Any, [Event::new("E", "")])
                .expect("append")
                .wait()
                .expect("durable");
        }
        plan.fail_writes_after(0, libc::EIO);
        // Appends nobody waits on, left in every lane (linger 1 s).
        let mut polled = Vec::new();
        let mut awaited = Vec::new();
        let mut waited = Vec::new();
        for (h, handle) in handles.iter().enumerate() {
            for i in 0..20 {
                let ticket = handle.append(&format!("h{h}"), ExpectedVersion::Any, [Event::new("E", format!("{i}"))]);
                let ticket = ticket.expect("append before the failure");
                match (h + i) % 4 {
                    0 => polled.push(ticket),
                    1 => awaited.push(ticket),
                    2 => waited.push(ticket),
                    _ => drop(ticket),
                }
            }
        }
        // One append to a stream another handle just appended to (ordered behind an undrained
        // append of another lane).
        let behind = handles[1].append("h0", ExpectedVersion::Any, [Event::new("E", "behind")]).expect("append");
        waited.push(behind);
        let started = Instant::now();
        // A caller starts waiting: its lane is drained and written; the write fails.
        let first = waited.pop().expect("a ticket");
        assert!(matches!(first.wait(), Err(Error::Poisoned { .. })), "{backend:?}: the failed write's waiter");
        for ticket in waited {
            let outcome = ticket.wait();
            assert!(matches!(outcome, Err(Error::Poisoned { .. })), "{backend:?}: wait() gave {outcome:?}");
        }
        let async_waiter = std::thread::spawn(move || {
            awaited.into_iter().map(block_on).all(|outcome| matches!(outcome, Err(Error::Poisoned { .. })))
        });
        for ticket in &polled {
            assert!(ticket.is_done(), "{backend:?}: is_done() on a poisoned store");
        }
        assert!(async_waiter.join().expect("async waiter"), "{backend:?}: .await on a poisoned store");
        for ticket in polled {
            assert!(matches!(ticket.wait(), Err(Error::Poisoned { .. })));
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{backend:?}: the errors took {:?}", started.elapsed());
        for handle in &handles {
            let refused = handle.append("after", ExpectedVersion::Any, [Event::new("E", "")]);
            assert!(matches!(refused, Err(Error::Poisoned { .. })), "{backend:?}: an append after poisoning");
        }
        drop(handles);
        assert!(matches!(store.close(), Err(Error::Poisoned { .. })), "{backend:?}: close of a poisoned store");
    }
}
