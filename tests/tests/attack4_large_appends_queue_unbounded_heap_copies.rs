//! `Options::queue_bytes` is documented as what bounds the memory of a handle's queue ("memory
//! is bounded by 128 x queue_bytes"; a full queue blocks its producer). An append larger than a
//! quarter of the ring is queued as a heap copy, and its ring entry took only 64 bytes: a ring
//! of 64 KiB held a thousand such entries, each owning a copy of up to `group_bytes_max`. A
//! producer that does not wait on its tickets, faster than the disk, so queued a thousand heap
//! copies per handle before any backpressure (64 MiB here for 64 KiB appends; gigabytes with
//! larger appends and 128 handles). The extra heap while a handle streams large appends must
//! stay within a small multiple of the ring and one group, whatever the number of appends.

use evstore::{Backend, Event, ExpectedVersion, Options};
use evstore_tests::{heap_bytes_alive, open, temp_dir, watchdog, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const QUEUE_BYTES: usize = 64 << 10;
const GROUP_BYTES: usize = 1 << 20;
/// Heap-copied: larger than a quarter of the ring.
const APPEND_BYTES: usize = 64 << 10;
const APPENDS: usize = 3000;

#[test]
fn large_appends_do_not_queue_more_heap_than_the_ring_bounds() {
    let _watchdog = watchdog("large_appends_do_not_queue_more_heap_than_the_ring_bounds", 300);
    let dir = temp_dir("attack4-heap-copies");
    let mut options = Options::default();
    options.backend = Backend::Portable;
    options.queue_bytes = QUEUE_BYTES;
    options.group_bytes_max = GROUP_BYTES;
    options.segment_bytes = 64 << 20;
    options.grow_segments = false;
    options.checkpoint_log_bytes = 0;
    let store = open(dir.path(), options).expect("the portable backend opens");
    let data = vec![3u8; APPEND_BYTES];
    // The handle's lane is made at its first append.
    store.append("big", ExpectedVersion::Any, [Event::new("Big", &data[..])]).expect("append").wait().expect("durable");
    let baseline = heap_bytes_alive();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0isize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(heap_bytes_alive());
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            peak
        })
    };
    let mut last = None;
    for _ in 0..APPENDS {
        // Tickets dropped: the producer never waits, only the queue's backpressure slows it.
        last = Some(store.append("big", ExpectedVersion::Any, [Event::new("Big", &data[..])]).expect("append"));
    }
    last.expect("appended").wait().expect("durable");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak = sampler.join().expect("sampler") - baseline;
    println!("peak heap beyond the open store: {} KiB", peak / 1024);
    // Generous: the ring, a group's worth of copies, and whatever the index grows by.
    let bound = (QUEUE_BYTES + 4 * GROUP_BYTES) as isize;
    assert!(
        peak <= bound,
        "queued appends held {} KiB of heap beyond the open store; the queue's bound is about {} KiB",
        peak / 1024,
        bound / 1024
    );
    store.close().expect("close");
}
