//! A handle's ring holds inline entries (up to a quarter of it) and entries of heap copies
//! (larger appends), never wrapped: a skip entry fills the ring's end when the next entry does
//! not fit before it. Sizes just under and over the quarter, at every offset of the ring, are
//! where an entry that wraps, a skip entry misread as an append, or a heap copy freed twice (or
//! never) would show: as a corrupted or missing event, or a crash. Every event is read back and
//! compared, on both backends, with the smallest ring.

use evstore::{Backend, Event, ExpectedVersion};
use evstore_tests::{open, read_stream, small_options, temp_dir, watchdog, Rng};

const QUEUE_BYTES: usize = 64 << 10;

#[test]
fn appends_of_every_size_around_the_inline_limit_survive_the_ring_wrap() {
    let _watchdog = watchdog("appends_of_every_size_around_the_inline_limit_survive_the_ring_wrap", 240);
    let seed = evstore_tests::seed_from_env("ATTACK4_SEED");
    for backend in [Backend::IoUring, Backend::Portable] {
        let dir = temp_dir("attack4-ring-wrap");
        let mut options = small_options(backend);
        options.queue_bytes = QUEUE_BYTES;
        options.segment_bytes = 64 << 20;
        let Some(store) = open(dir.path(), options) else { continue };
        let mut rng = Rng::new(seed);
        let mut expected = Vec::new();
        let mut tickets = Vec::new();
        for i in 0..3_000u64 {
            // Around the quarter (16 KiB), small ones to shift the offsets, a few large ones.
            let len = match rng.below(4) {
                0 => 16_300 + rng.below(200) as usize,
                1 => rng.below(3_000) as usize,
                2 => 5_000 + rng.below(12_000) as usize,
                _ => 16_384 + rng.below(40_000) as usize,
            };
            let data: Vec<u8> = (0..len).map(|k| (k as u64 ^ i).wrapping_mul(31) as u8).collect();
            let events: Vec<Event> = if rng.below(5) == 0 {
                vec![Event::new("A", data[..len / 2].to_vec()), Event::new("B", data[len / 2..].to_vec())]
            } else {
                vec![Event::new("A", data.clone())]
            };
            for event in &events {
                expected.push(event.data.to_vec());
            }
            tickets.push(store.append("wrap", ExpectedVersion::Any, events).expect("append"));
            if rng.below(100) == 0 {
                for ticket in tickets.drain(..) {
                    ticket.wait().expect("durable");
                }
            }
        }
        for ticket in tickets {
            ticket.wait().expect("durable");
        }
        let events = read_stream(&store, "wrap");
        assert_eq!(events.len(), expected.len());
        for (k, (event, data)) in events.iter().zip(&expected).enumerate() {
            assert!(event.data == *data, "{backend:?}: event {k} ({} bytes) differs", data.len());
        }
        store.close().expect("close");
    }
}
