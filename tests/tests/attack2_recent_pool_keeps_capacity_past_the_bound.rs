//! log/recent.rs promises that at most `RECENT_GROUP_BYTES_MAX` (16 MiB) of group copies are
//! kept, and reuses the buffers of dropped copies (a pool of up to 16). The bound is counted in
//! `len()` of the copies, but a reused buffer keeps its `capacity()`: a buffer that once held a
//! 4 MiB group and now holds a 100-byte one counts 100 bytes. With a mixed load (bursts of big
//! groups, a batch import, between single small events of a few KB) the ring fills with small copies sitting
//! in 4 MiB buffers, new 4 MiB buffers are allocated for the next burst, and the pool fills with
//! 16 of them: the memory held grows to about 18 x `group_bytes_max` (~72 MiB with the default
//! 4 MiB groups; ~280 MiB with `group_bytes_max` = 16 MiB), whatever the bound says.
//!
//! Expected: the memory of the copies (kept plus pooled) stays within the 16 MiB bound (plus
//! small overhead): count capacity, not length, or shrink/drop a pooled buffer much larger than
//! the group it is reused for. Severity: medium-low (memory, bounded by ~18 groups, only while a
//! subscription is open), but the bound is the module's stated invariant.
//!
//! The program opens a store with default group sizes and an idle subscription, then appends 12
//! rounds of (5 groups of ~4 MiB, 35 groups of one 4 KB event), each append waited (one group
//! each), and measures the heap (a counting global allocator).

use evstore::{Backend, Event, ExpectedVersion, Options};
use evstore_tests::{heap_bytes_alive, open, temp_dir, watchdog, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn the_copies_of_recent_groups_stay_within_their_bound() {
    let _watchdog = watchdog("the_copies_of_recent_groups_stay_within_their_bound", 300);
    let dir = temp_dir("attack2-recent-pool");
    let mut options = Options::default();
    options.backend = Backend::Portable;
    options.segment_bytes = 64 << 20;
    let store = open(dir.path(), options).expect("portable opens");
    let sub = store.subscribe_all(evstore::END).unwrap();
    let before = heap_bytes_alive();
    for round in 0..12u32 {
        for b in 0..5u32 {
            // ~4 MiB - 10 KiB in one append: one big group.
            let events: Vec<Event> =
                (0..3_990).map(|k| Event::new("Import", vec![(round + b + k) as u8; 1_000])).collect();
            store.append(&format!("import-{round}-{b}"), ExpectedVersion::Any, events).unwrap().wait().unwrap();
        }
        for s in 0..35u32 {
            store
                .append(&format!("small-{s}"), ExpectedVersion::Any, [Event::new("Tick", vec![7u8; 4_000])])
                .unwrap()
                .wait()
                .unwrap();
        }
    }
    let held = heap_bytes_alive() - before;
    drop(sub);
    let after_unsubscribe = heap_bytes_alive() - before;
    store.close().unwrap();
    println!(
        "heap held for the copies with a subscription open: {} MiB; after it is dropped: {} MiB",
        held >> 20,
        after_unsubscribe >> 20
    );
    assert!(
        held < 24 << 20,
        "{} MiB of heap held by the recent-group copies (kept + pool), bound {} MiB",
        held >> 20,
        16
    );
}
