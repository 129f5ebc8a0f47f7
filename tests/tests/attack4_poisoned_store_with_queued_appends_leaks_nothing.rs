//! A store poisoned (a failed write) while appends are still queued in its handles' rings, some
//! of them heap copies (appends larger than a quarter of the ring): the submitter stops, and
//! nothing will ever consume those entries. They must not hang anybody (every ticket and every
//! later append fails with `Poisoned`), and the heap copies must be freed when the store goes,
//! or an application that reopens after each failure leaks them every time.

use evstore::testing::FaultPlan;
use evstore::{Backend, Error, Event, ExpectedVersion};
use evstore_tests::{heap_bytes_alive, open, small_options, temp_dir, watchdog, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn poisoned_cycle(backend: Backend) -> bool {
    let dir = temp_dir("attack4-poison-leak");
    let plan = FaultPlan::new();
    let mut options = small_options(backend);
    options.queue_bytes = 64 << 10;
    options.groups_in_flight_max = 1;
    options.faults = Some(plan.clone());
    let Some(store) = open(dir.path(), options) else { return false };
    store.append("warm", ExpectedVersion::Any, [Event::new("W", "")]).expect("append").wait().expect("durable");
    plan.fail_writes_after(0, libc::EIO);
    let handles: Vec<_> = (0..4).map(|_| store.clone()).collect();
    let big = vec![1u8; 60 << 10];
    let mut tickets = Vec::new();
    for handle in &handles {
        for _ in 0..8 {
            match handle.append("big", ExpectedVersion::Any, [Event::new("Big", &big[..])]) {
                Ok(ticket) => tickets.push(ticket),
                Err(Error::Poisoned { .. }) => break,
                Err(e) => panic!("append: {e}"),
            }
        }
    }
    for ticket in tickets {
        assert!(matches!(ticket.wait(), Err(Error::Poisoned { .. })));
    }
    assert!(matches!(store.append("after", ExpectedVersion::Any, [Event::new("A", "")]), Err(Error::Poisoned { .. })));
    drop(handles);
    assert!(matches!(store.close(), Err(Error::Poisoned { .. })));
    true
}

#[test]
fn a_poisoned_store_frees_the_appends_left_in_its_rings() {
    let _watchdog = watchdog("a_poisoned_store_frees_the_appends_left_in_its_rings", 120);
    for backend in [Backend::IoUring, Backend::Portable] {
        if !poisoned_cycle(backend) {
            continue;
        }
        let after_first = heap_bytes_alive();
        for _ in 0..5 {
            poisoned_cycle(backend);
        }
        let grown = heap_bytes_alive() - after_first;
        println!("{backend:?}: heap grew by {} KiB over five poisoned stores", grown / 1024);
        assert!(grown < 1 << 20, "{backend:?}: five poisoned stores leaked {} KiB", grown / 1024);
    }
}
