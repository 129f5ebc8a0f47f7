//! A segment in the middle of the log whose file grew by a block of zeros (a copy or restore tool,
//! a stray `fallocate`, a hand edit) has lost nothing: every group in it and in every later
//! segment is intact. `open` rightly refuses it (a length that is not the header's is damage), and
//! `Store::repair` is the way out; but repair "cuts the log at the damage", which it places at the
//! end of that segment's groups, and so it moves every later segment aside: here half of the
//! acknowledged events (60 of 120, three segments' worth) leave the store over 4 KiB of zeros that
//! damaged no event. Restoring the segment to its header's size (as repair does anyway) is all
//! this damage needs; dropping intact events after it loses acknowledged data for nothing.

use std::path::Path;

use evstore::RecordedEvent;
use evstore_tests::small_segment_options as options;
use evstore_tests::{assert_nothing_lost_to, filled_store, segment_path, temp_dir, used_segments, watchdog};

fn fill(dir: &Path) -> Vec<RecordedEvent> {
    let events = filled_store(dir, 60);
    assert!(used_segments(dir).len() >= 4, "segments after the extended one");
    events
}

#[test]
fn repair_of_an_extended_middle_segment_keeps_every_event() {
    let _watchdog = watchdog("repair_of_an_extended_middle_segment_keeps_every_event", 60);
    let dir = temp_dir("repair-extended");
    let before = fill(dir.path());
    let segment = segment_path(dir.path(), 1);
    let len = std::fs::metadata(&segment).expect("metadata").len();
    std::fs::OpenOptions::new().write(true).open(&segment).expect("open").set_len(len + 4096).expect("extend");
    assert_nothing_lost_to(dir.path(), &options(), &before, "a segment grown by 4 KiB of zeros");
}
