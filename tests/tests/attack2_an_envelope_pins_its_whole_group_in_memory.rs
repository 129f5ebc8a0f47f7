//! Since 1e695b6 a live subscription reads recent groups from in-memory copies
//! (log/recent.rs), and its envelopes hold `Held::Copy(Arc<Vec<u8>>)`: the heap copy of the
//! WHOLE group (up to `group_bytes_max`, 4 MiB by default, copies up to 16 MiB), not a
//! reference to the segment mapping. The ring drops its reference after 16 MiB of newer groups,
//! but an envelope kept by the consumer keeps its group's buffer alive, and the bound
//! `RECENT_GROUP_BYTES_MAX` no longer holds.
//!
//! The public docs promise the opposite: `Envelope` "may be kept as long as needed (it costs no
//! copy, only a reference count)", and read/subscription.rs "Memory is bounded ... an envelope
//! holds a reference to its segment's mapping, not a copy of the event". A consumer that keeps
//! one small event per group (the last event per stream, a dedup window, the
//! `ProjectionRunner`'s buffer of wanted events between flushes: wanted events are sparse, so
//! each buffered one sits in its own group) pins `group size` bytes of anonymous heap per kept
//! event, and that heap is not reclaimable like page cache.
//!
//! The program keeps one 1 KB envelope out of each of 24 live groups of ~3.6 MB and measures
//! (with a counting global allocator) how much heap those 24 envelopes keep alive. Found before
//! the fix: ~70 MB (20 evicted groups pinned whole). The fix counts every copy alive, kept or
//! held, and makes no new copy while they add up to `RECENT_LIVE_BYTES_MAX` (32 MiB): later
//! groups are then read through the mapping. Expected now: what the envelopes pin stays within
//! that bound, whatever they keep.

use evstore::{Backend, Event, ExpectedVersion, Options};
use evstore_tests::{heap_bytes_alive, open, temp_dir, watchdog, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const GROUPS: usize = 24;
const EVENTS_PER_GROUP: usize = 3_500;
const EVENT_BYTES: usize = 1_000;

#[test]
fn kept_envelopes_pin_no_more_than_their_events() {
    let _watchdog = watchdog("kept_envelopes_pin_no_more_than_their_events", 120);
    let dir = temp_dir("attack2-envelope-pins");
    let mut options = Options::default();
    options.backend = Backend::Portable;
    options.segment_bytes = 128 << 20;
    let store = open(dir.path(), options).expect("portable opens");
    let mut sub = store.subscribe_all(evstore::END).unwrap();

    let mut kept = Vec::new();
    for g in 0..GROUPS {
        let events: Vec<Event> =
            (0..EVENTS_PER_GROUP).map(|k| Event::new("Tick", vec![(g + k) as u8; EVENT_BYTES])).collect();
        // One append, waited: one group of ~3.6 MB, read live (from its copy) just after.
        store.append(&format!("stream-{g}"), ExpectedVersion::Any, events).unwrap().wait().unwrap();
        for k in 0..EVENTS_PER_GROUP {
            let envelope = sub.next().expect("open").expect("readable");
            assert!(!envelope.historic(), "read live");
            if k == 0 {
                // Keep one small event of this group: the last event of its stream, say.
                kept.push(envelope);
            }
        }
    }

    let with_kept = heap_bytes_alive();
    let kept_event_bytes: usize = kept.iter().map(|e| e.data().len()).sum();
    drop(kept);
    let without_kept = heap_bytes_alive();
    let pinned = with_kept - without_kept;
    drop(sub);
    store.close().unwrap();
    println!("{GROUPS} kept envelopes ({kept_event_bytes} bytes of events) kept {pinned} bytes of heap alive");
    // 32 MiB: RECENT_LIVE_BYTES_MAX, the bound on copies alive (plus the events' own bytes).
    assert!(
        pinned <= (32 << 20) + 4 * kept_event_bytes as isize,
        "{GROUPS} kept envelopes of {EVENT_BYTES} bytes each pinned {} MiB of heap (whole group copies), \
         past the 32 MiB bound on copies alive",
        pinned >> 20
    );
}
