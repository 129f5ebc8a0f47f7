//! One bit flipped in the "continued" end marker of a middle segment (32 bytes of metadata,
//! inside one sector) damages no event: every group of that segment and of every later segment is
//! intact, the next segment's header names the position and number the marker named, and its
//! groups go on with the right sequence numbers. `open` rightly reports the damage, but
//! `Store::repair` cuts the log at the marker and moves every later segment aside: here 40 of 100
//! intact acknowledged events. As for an extended segment (which repair now gives back its size
//! without dropping anything), restoring what the damage hit (the marker, which the next
//! segment's header and groups vouch for, as recovery writes a missing one after a crash) is all
//! this damage needs.

use std::os::unix::fs::FileExt as _;
use std::path::Path;

use evstore::RecordedEvent;
use evstore_tests::small_segment_options as options;
use evstore_tests::{
    assert_nothing_lost_to, damage, filled_store, groups_on_disk, segment_path, temp_dir, used_segments, watchdog,
};

fn fill(dir: &Path) -> Vec<RecordedEvent> {
    let events = filled_store(dir, 50);
    assert!(used_segments(dir).len() >= 4, "segments after the damaged marker");
    events
}

#[test]
fn repair_of_a_flipped_bit_in_a_middle_segment_marker_keeps_every_event() {
    let _watchdog = watchdog("repair_of_a_flipped_bit_in_a_middle_segment_marker_keeps_every_event", 60);
    let dir = temp_dir("review2-middle-marker");
    let before = fill(dir.path());
    let segment = segment_path(dir.path(), 1);
    let at = (groups_on_disk(&segment).last().expect("groups").end.div_ceil(4096) * 4096) as u64;
    let mut marker = [0u8; 32];
    std::fs::File::open(&segment).expect("open").read_exact_at(&mut marker, at).expect("read marker");
    assert_eq!(&marker[..4], b"EVNX", "segment 1 ends with its continued marker");
    damage(&segment, at + 17, &[marker[17] ^ 0x04]);
    assert_nothing_lost_to(dir.path(), &options(), &before, "one flipped bit in an end marker");
}
