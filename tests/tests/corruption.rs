//! Damage on disk: a flipped byte in the middle of the log, with acknowledged groups after it,
//! must stop `Store::open` with `Error::Corrupted` naming the segment and an offset at or before
//! the damage, and must not destroy anything (undo the damage and everything is back); a torn
//! last group, as a crash in the middle of a write leaves it, must be cut quietly, keeping every
//! earlier event and letting the log go on; but the same damage in a store that was closed
//! cleanly (its close marker says where the log ended) is corruption, never a shorter log.
//! Without this, recovery could treat bit rot as a torn
//! tail and silently drop every acknowledged event after it, or refuse to open after an ordinary
//! crash, or leave the torn bytes behind to be misread later.

use std::path::Path;

use evstore::{Error, Event, ExpectedVersion, Options, Store};
use evstore_tests::{
    backends, check_log_shape, damage, groups_on_disk, open, read_all, read_stream, segment_path, small_options,
    temp_dir, used_segments, watchdog,
};

/// Appends `appends` appends of two events of `bytes` bytes, waiting for every `wait_every`-th.
fn fill(store: &Store, appends: usize, bytes: usize, wait_every: usize) {
    let mut tickets = Vec::new();
    for i in 0..appends {
        let stream = format!("c-{}", i % 5);
        let events = (0..2).map(|k| Event::new("Filled", vec![(i * 2 + k) as u8; bytes]));
        tickets.push(store.append(&stream, ExpectedVersion::Any, events).expect("append"));
        if tickets.len() == wait_every {
            for ticket in tickets.drain(..) {
                ticket.wait().expect("durable");
            }
        }
    }
    for ticket in tickets {
        ticket.wait().expect("durable");
    }
}

/// Flips one byte of `path` at `offset` (flipping it again undoes the damage).
fn flip(path: &Path, offset: u64) {
    let bytes = std::fs::read(path).expect("read segment");
    damage(path, offset, &[bytes[offset as usize] ^ 0x20]);
}

/// Opens `dir` and expects `Corrupted` in `segment` at an offset in `range`.
fn expect_corrupted(dir: &Path, options: Options, segment: u64, range: std::ops::RangeInclusive<u64>) {
    match Store::open(dir, options) {
        Err(Error::Corrupted { segment: got, offset, reason }) => {
            assert_eq!(got, segment, "the damaged segment is named ({reason})");
            assert!(range.contains(&offset), "offset {offset} points at the damage in {range:?} ({reason})");
            assert!(!reason.is_empty());
        }
        Ok(_) => panic!("a store with a damaged record in the middle of the log opened as if nothing happened"),
        Err(other) => panic!("damaged log: expected Corrupted, got {other:?}"),
    }
}

#[test]
fn a_damaged_record_in_an_early_segment_is_corruption() {
    let _watchdog = watchdog("a_damaged_record_in_an_early_segment_is_corruption", 30);
    for backend in backends() {
        let dir = temp_dir("corrupt-early");
        let mut options = small_options(backend);
        options.segment_bytes = 128 << 10;
        let Some(store) = open(dir.path(), options.clone()) else { continue };
        fill(&store, 80, 3000, 4);
        let before = read_all(&store);
        store.close().expect("close");
        assert!(used_segments(dir.path()).len() >= 3, "the damage must have segments after it");

        // Inside the data of the first record of the first group.
        let first = segment_path(dir.path(), 0);
        let at = 4096 + 32 + 32 + 200;
        flip(&first, at);
        expect_corrupted(dir.path(), options.clone(), 0, 4096..=at);
        // A second attempt sees the same: the failed open did not "repair" anything.
        expect_corrupted(dir.path(), options.clone(), 0, 4096..=at);

        flip(&first, at);
        let store = Store::open(dir.path(), options).expect("open once the damage is undone");
        assert_eq!(read_all(&store), before, "{backend:?}: nothing was lost to the failed opens");
        store.close().expect("close");
    }
}

#[test]
fn a_damaged_group_with_acknowledged_groups_after_it_is_corruption() {
    let _watchdog = watchdog("a_damaged_group_with_acknowledged_groups_after_it_is_corruption", 30);
    for backend in backends() {
        let dir = temp_dir("corrupt-last");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        // One group per append: each is waited for before the next.
        fill(&store, 30, 100, 1);
        let before = read_all(&store);
        store.close().expect("close");
        let segments = used_segments(dir.path());
        assert_eq!(segments.len(), 1);
        let groups = groups_on_disk(&segments[0].1);
        assert!(groups.len() >= 20, "expected a group per append, found {}", groups.len());

        // The second group, with 28 acknowledged groups after it in the same (last) segment:
        // far more than the writer could have had in flight, so it cannot be a torn tail.
        let group = groups[1];
        let at = (group.offset + 32 + 40) as u64;
        flip(&segments[0].1, at);
        expect_corrupted(dir.path(), small_options(backend), 0, group.offset as u64..=at);

        flip(&segments[0].1, at);
        let store = Store::open(dir.path(), small_options(backend)).expect("open once the damage is undone");
        assert_eq!(read_all(&store), before, "{backend:?}: nothing was lost to the failed open");
        store.close().expect("close");
    }
}

#[test]
fn a_torn_last_group_is_cut_and_the_log_goes_on() {
    let _watchdog = watchdog("a_torn_last_group_is_cut_and_the_log_goes_on", 30);
    for backend in backends() {
        let dir = temp_dir("corrupt-torn");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        fill(&store, 20, 300, 1);
        // The last append: three events in a group of their own.
        let tail = [b"one".to_vec(), vec![b'x'; 700], b"three".to_vec()];
        store
            .append("tail", ExpectedVersion::NoStream, tail.iter().map(|d| Event::new("Tail", d.clone())))
            .expect("append")
            .wait()
            .expect("durable");
        let before = read_all(&store);
        store.close().expect("close");

        let (_, last_segment) = used_segments(dir.path()).pop().expect("a used segment");
        let last = *groups_on_disk(&last_segment).last().expect("groups");
        assert_eq!(last.first_position + last.events as u64, before.len() as u64, "the last group ends the log");
        assert!(last.end - last.offset > 132, "the last group is long enough to tear");
        // A torn write: the end of the last group never made it, garbage is there instead. And
        // the crash came before the close: no close marker after the last group.
        let garbage: Vec<u8> = (0..100u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        damage(&last_segment, (last.end - 100) as u64, &garbage);
        damage(&last_segment, last.end.div_ceil(4096) as u64 * 4096, &[0u8; 4096]);

        let store = Store::open(dir.path(), small_options(backend)).expect("a torn tail is not corruption");
        let kept = last.first_position as usize;
        assert_eq!(read_all(&store), before[..kept], "{backend:?}: everything before the torn group is kept");
        assert_eq!(store.durable_position(), kept as u64);
        assert!(read_stream(&store, "tail").is_empty(), "the torn append is gone as a whole");
        assert_eq!(store.stream_version("tail"), None);

        // The log goes on where the torn group was, and that survives another reopen.
        let appended = store
            .append("tail", ExpectedVersion::NoStream, [Event::new("Tail", b"again".to_vec())])
            .expect("append")
            .wait()
            .expect("durable");
        assert_eq!((appended.position, appended.version), (kept as u64, 0));
        fill(&store, 10, 300, 1);
        let after = read_all(&store);
        store.close().expect("close");

        let store = Store::open(dir.path(), small_options(backend)).expect("reopen after the cut");
        assert_eq!(read_all(&store), after, "{backend:?}: appends after the cut survive a reopen");
        assert_eq!(check_log_shape(&store), kept as u64 + 1 + 20);
        assert_eq!(read_stream(&store, "tail")[0].data, b"again");
        store.close().expect("close");
    }
}

#[test]
fn damage_in_the_last_group_of_a_cleanly_closed_store_is_corruption() {
    let _watchdog = watchdog("damage_in_the_last_group_of_a_cleanly_closed_store_is_corruption", 30);
    for backend in backends() {
        let dir = temp_dir("corrupt-closed");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        fill(&store, 10, 300, 1);
        let before = read_all(&store);
        store.close().expect("close");
        let (number, last_segment) = used_segments(dir.path()).pop().expect("a used segment");
        let last = *groups_on_disk(&last_segment).last().expect("groups");
        // A flipped bit in the last, acknowledged group. Without the marker this looks exactly
        // like a torn write (the crash window) and the group would be cut: 2 events lost.
        let at = (last.end - 10) as u64;
        flip(&last_segment, at);
        expect_corrupted(dir.path(), small_options(backend), number, last.offset as u64..=at);
        flip(&last_segment, at);
        let store = Store::open(dir.path(), small_options(backend)).expect("open once the damage is undone");
        assert_eq!(read_all(&store), before, "{backend:?}: nothing was lost to the failed open");
        store.close().expect("close");
    }
}

#[test]
fn a_group_found_where_no_write_could_have_put_it_is_corruption() {
    let _watchdog = watchdog("a_group_found_where_no_write_could_have_put_it_is_corruption", 30);
    for backend in backends() {
        let dir = temp_dir("corrupt-misplaced");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        fill(&store, 10, 300, 1);
        store.close().expect("close");
        let (number, last_segment) = used_segments(dir.path()).pop().expect("a used segment");
        let last = *groups_on_disk(&last_segment).last().expect("groups");
        let padded = last.end.div_ceil(4096) * 4096;
        let bytes = std::fs::read(&last_segment).expect("read")[last.offset..padded].to_vec();
        // As if the process had crashed before the close (no marker), and the last group's write
        // had landed two blocks further on instead of at its own place: a crash tears writes, it
        // does not move them, so this is not a torn tail to cut.
        damage(&last_segment, last.offset as u64, &vec![0u8; padded - last.offset + 4096]);
        damage(&last_segment, (padded + 2 * 4096) as u64, &bytes);
        expect_corrupted(dir.path(), small_options(backend), number, last.offset as u64..=last.offset as u64);
    }
}
