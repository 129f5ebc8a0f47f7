//! A lane has 4,096 result slots. A producer that keeps the tickets of more than 4,096 appends
//! (a batch importer that waits at the end) must, before it publishes append `n`, wait until the
//! submitter has placed append `n - 4096` of its own lane, so that it can move that outcome
//! aside (`Producer::claim`, `Wait::Slot`). It rings the doorbell as urgent while it waits.
//!
//! Since the submitter drains a lane only when someone waits on it, when its ring is over half
//! full, or after `linger`, that producer is "someone waiting" the submitter did not count: with
//! a ring large enough that 4,096 small appends fill less than half of it (here 1 MiB: 4,096
//! entries of 96 bytes take 384 KiB), the producer sat in `Wait::Slot` until the lane's linger
//! time was up, once per 4,096 appends: with `linger` = 1 s, appending 4 x 4,096 + 1 events
//! without waiting took over 3 s, where it takes milliseconds when the lane is drained for it.
//! Its doorbell also woke the submitter every 50 us for nothing (it looked, found no lane due, and
//! slept again).
//!
//! The bound below is in lingers, not in machine speed: four result-slot wraps must not cost
//! anything near three linger times.

use std::time::{Duration, Instant};

use evstore::{Backend, Event, ExpectedVersion, Options};
use evstore_tests::{open, read_stream, temp_dir, watchdog};

const LINGER: Duration = Duration::from_secs(1);
const RESULT_SLOTS: u64 = 4096;
const APPENDS: u64 = 4 * RESULT_SLOTS + 1;

fn options(backend: Backend) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.linger = LINGER;
    // 4,096 entries of 96 bytes fill 384 KiB: less than half of the ring.
    options.queue_bytes = 1 << 20;
    options.segment_bytes = 16 << 20;
    options.grow_segments = false;
    options
}

#[test]
fn a_producer_waiting_for_its_own_result_slot_does_not_wait_a_linger_time() {
    let _watchdog = watchdog("a_producer_waiting_for_its_own_result_slot_does_not_wait_a_linger_time", 60);
    let dir = temp_dir("attack6-own-slot");
    let store = match open(dir.path(), options(Backend::IoUring)) {
        Some(store) => store,
        None => open(dir.path(), options(Backend::Portable)).expect("the portable backend opens"),
    };
    let started = Instant::now();
    let mut tickets = Vec::with_capacity(APPENDS as usize);
    for i in 0..APPENDS {
        tickets.push(store.append("importer", ExpectedVersion::Any, [Event::new("E", [i as u8])]).expect("append"));
    }
    let appending = started.elapsed();
    for (i, ticket) in tickets.into_iter().enumerate() {
        let appended = ticket.wait().unwrap_or_else(|e| panic!("append {i}: {e}"));
        assert_eq!(appended.version, i as u64, "append {i} resolved with another append's version");
    }
    let total = started.elapsed();
    println!("{APPENDS} appends kept: appending took {appending:?}, all durable after {total:?}");
    assert_eq!(read_stream(&store, "importer").len() as u64, APPENDS);
    store.close().expect("close");
    // Correct: a few ms per wrap. Broken: about one linger per wrap after the first (three).
    assert!(
        appending < LINGER * 3 / 2,
        "appending {APPENDS} events (four result-slot wraps) without waiting took {appending:?} with \
         linger {LINGER:?}: the producer waited for its own lane's linger time at each wrap"
    );
}
