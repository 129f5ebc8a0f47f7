//! Damage to the header block of the newest used segment, with acknowledged groups behind it,
//! must stop `Store::open` with `Error::Corrupted` naming that segment, and must leave every file
//! of the directory as it was, so that undoing the damage gives everything back. A torn header
//! is only possible in a segment that holds no group yet (the header is synced before the first
//! group is written into it). Without this, recovery took a flipped bit in the header (or a
//! zeroed header block) for a crash while the segment was being started, deleted the segment,
//! and opened with half of the acknowledged events gone for good.

use std::path::Path;

use evstore::{Error, Event, ExpectedVersion, Options, RecordedEvent, Store};
use evstore_tests::{
    backends, damage, dir_changes, dir_files, open, read_all, segment_path, small_options, temp_dir, used_segments,
    watchdog,
};

const EVENTS: usize = 60;
const EVENT_BYTES: usize = 30_000;

/// 60 acknowledged events of 30 KB, one group each: 31 fit in a 1 MiB segment, so segment 0 is
/// full and segment 1, the newest used one, holds the other 29.
fn fill(store: &Store) -> Vec<RecordedEvent> {
    for i in 0..EVENTS {
        let stream = format!("h-{}", i % 3);
        store
            .append(&stream, ExpectedVersion::Any, [Event::new("Big", vec![i as u8; EVENT_BYTES])])
            .expect("append")
            .wait()
            .expect("durable");
    }
    read_all(store)
}

/// Opens `dir` and expects `Corrupted` in segment 1 at an offset in `range`, with no file of the
/// directory changed.
fn expect_corrupted(dir: &Path, options: Options, range: std::ops::RangeInclusive<u64>, what: &str) {
    let before = dir_files(dir);
    match Store::open(dir, options) {
        Err(Error::Corrupted { segment, offset, reason }) => {
            assert_eq!(segment, 1, "{what}: the damaged segment is named ({reason})");
            assert!(range.contains(&offset), "{what}: offset {offset} is not at the damage, {range:?} ({reason})");
        }
        Ok(store) => {
            let events = read_all(&store).len();
            store.close().expect("close");
            let changes = dir_changes(&before, &dir_files(dir)).unwrap_or_else(|| "no file changed".into());
            panic!("{what}: the store opened with {events} of {EVENTS} acknowledged events; {changes}");
        }
        Err(other) => panic!("{what}: expected Corrupted in segment 1, got {other:?}"),
    }
    if let Some(changes) = dir_changes(&before, &dir_files(dir)) {
        panic!("{what}: the refused open changed the directory: {changes}");
    }
}

/// Writes two used segments, applies `harm` to segment 1, expects the open to be refused
/// (twice: a refused open repairs nothing), undoes the harm and expects every event back.
fn refused_then_recovered(name: &str, damaged: std::ops::RangeInclusive<u64>, harm: fn(&Path)) {
    for backend in backends() {
        let dir = temp_dir(name);
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        let before = fill(&store);
        store.close().expect("close");
        assert_eq!(before.len(), EVENTS);
        assert_eq!(used_segments(dir.path()).len(), 2, "{backend:?}: the events fill two segments");

        let segment = segment_path(dir.path(), 1);
        let original = std::fs::read(&segment).expect("read segment 1");
        harm(&segment);
        let what = format!("{name} {backend:?}");
        expect_corrupted(dir.path(), small_options(backend), damaged.clone(), &what);
        expect_corrupted(dir.path(), small_options(backend), damaged.clone(), &what);

        damage(&segment, 0, &original[..4096]);
        let store = Store::open(dir.path(), small_options(backend)).expect("open once the damage is undone");
        assert_eq!(read_all(&store), before, "{what}: every acknowledged event is back");
        store.close().expect("close");
    }
}

#[test]
fn a_flipped_bit_in_the_newest_segment_header_is_corruption() {
    let _watchdog = watchdog("a_flipped_bit_in_the_newest_segment_header_is_corruption", 60);
    // Byte 44 is inside the creation time, which the header CRC covers.
    refused_then_recovered("header-bit", 0..=44, |segment| {
        let bytes = std::fs::read(segment).expect("read segment");
        damage(segment, 44, &[bytes[44] ^ 1]);
    });
}

#[test]
fn a_zeroed_header_block_of_the_newest_used_segment_is_corruption() {
    let _watchdog = watchdog("a_zeroed_header_block_of_the_newest_used_segment_is_corruption", 60);
    // All zero is what a prepared, never used segment looks like; groups behind it say otherwise.
    refused_then_recovered("header-zeroed", 0..=4095, |segment| damage(segment, 0, &[0; 4096]));
}
