//! A middle segment whose file grew past its header's size (a copy or restore tool, a stray
//! `fallocate` or append) lost nothing of the log: every group of it and of every later segment
//! is intact. Since the last review, `Store::repair` gives such a segment back its size and drops
//! nothing, but only if the bytes past the end are zero. If they are not, the scan of the segment
//! reads its "rest" through the whole file, past the size its header names, takes the bytes
//! outside the segment for something written after its last group, and repair cuts the log at
//! the end of that segment's groups: here every later segment (100 of 160 acknowledged, intact
//! events) leaves the store for 4 KiB that are not even part of the segment.

use std::path::Path;

use evstore::RecordedEvent;
use evstore_tests::small_segment_options as options;
use evstore_tests::{assert_nothing_lost_to, filled_store, segment_path, temp_dir, used_segments, watchdog};

fn fill(dir: &Path) -> Vec<RecordedEvent> {
    let events = filled_store(dir, 80);
    assert!(used_segments(dir).len() >= 4, "segments after the extended one");
    events
}

#[test]
fn repair_of_a_middle_segment_extended_by_nonzero_bytes_keeps_every_event() {
    let _watchdog = watchdog("repair_of_a_middle_segment_extended_by_nonzero_bytes_keeps_every_event", 60);
    let dir = temp_dir("review2-extended-junk");
    let before = fill(dir.path());
    let segment = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&segment).expect("read segment 1");
    bytes.extend(std::iter::repeat_n(0xA5u8, 4096));
    std::fs::write(&segment, &bytes).expect("extend segment 1");
    assert_nothing_lost_to(dir.path(), &options(), &before, "bytes past the end of a segment");
}
