//! `Options::queue_bytes` said the producer queues' memory "is bounded by 128 x queue_bytes"
//! (at most 128 lanes); it now says `128 x (queue_bytes + 128 KiB)`, which this checks. But each lane also allocates 4,096 result slots (24 bytes) and as many
//! ticket-ownership words (8 bytes): 128 KiB per lane whatever `queue_bytes` is, half again the
//! default ring (256 KiB) and twice the smallest (64 KiB). A user who sizes memory by the
//! documented bound is off by 16 MiB (32 MiB at the smallest rings: 24 MiB used where 8 MiB
//! were promised). Either the bound or the allocation must change; here 200 handles (more than
//! the lane limit) append, and the heap they add must fit the documented bound, plus a little
//! for the index of what they appended.

use evstore::{Backend, Event, ExpectedVersion};
use evstore_tests::{heap_bytes_alive, open, small_options, temp_dir, watchdog, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn the_lanes_of_many_handles_fit_the_documented_memory_bound() {
    let _watchdog = watchdog("the_lanes_of_many_handles_fit_the_documented_memory_bound", 120);
    for queue_bytes in [64 << 10, 256 << 10] {
        let dir = temp_dir("attack4-lane-memory");
        let mut options = small_options(Backend::Portable);
        options.queue_bytes = queue_bytes;
        let store = open(dir.path(), options).expect("the portable backend opens");
        store.append("warm", ExpectedVersion::Any, [Event::new("E", "")]).expect("append").wait().expect("durable");
        let before = heap_bytes_alive();
        let handles: Vec<_> = (0..200).map(|_| store.clone()).collect();
        let threads: Vec<_> = handles
            .into_iter()
            .enumerate()
            .map(|(i, handle)| {
                std::thread::spawn(move || {
                    let name = format!("s-{i}");
                    handle
                        .append(&name, ExpectedVersion::Any, [Event::new("E", "x")])
                        .expect("append")
                        .wait()
                        .expect("ok");
                    handle
                })
            })
            .collect();
        let handles: Vec<_> = threads.into_iter().map(|t| t.join().expect("producer")).collect();
        let grown = heap_bytes_alive() - before;
        let bound = 128 * (queue_bytes as isize + (128 << 10)) + (2 << 20);
        println!(
            "queue_bytes {} KiB: 200 handles added {} KiB (bound {} KiB)",
            queue_bytes >> 10,
            grown >> 10,
            bound >> 10
        );
        assert!(
            grown <= bound,
            "queue_bytes {} KiB: the lanes of 200 handles take {} KiB, over the documented 128 x (queue_bytes + 128 KiB) ({} KiB)",
            queue_bytes >> 10,
            grown >> 10,
            (128 * (queue_bytes + (128 << 10))) >> 10
        );
        drop(handles);
        store.close().expect("close");
    }
}
