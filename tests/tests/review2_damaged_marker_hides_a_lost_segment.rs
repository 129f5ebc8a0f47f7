//! The "continued" end marker is what tells recovery that a newer segment existed: without it, a
//! lost newest segment file would pass for a rollover that never happened. But recovery only
//! trusts a marker whose CRC checks out; a marker block that holds the marker magic "EVNX" with a
//! bad CRC (one bit flipped in the marker's sequence field) is taken for the torn tail of the
//! groups that were in flight, and cut. A crash cannot tear a marker (32 bytes inside one 512-byte
//! sector, written once into a zero block while no group is in flight), so such a block is
//! damage. Here the newest segment file is missing as well, and `open` accepts the store and
//! silently drops every acknowledged event of that segment, where each damage alone is reported.

use std::os::unix::fs::FileExt as _;
use std::path::Path;

use evstore::Store;
use evstore_tests::small_segment_options as options;
use evstore_tests::{damage, filled_store, groups_on_disk, read_all, segment_path, temp_dir, used_segments, watchdog};

fn fill(dir: &Path) -> usize {
    filled_store(dir, 50).len()
}

#[test]
fn a_damaged_continued_marker_does_not_hide_a_lost_newest_segment() {
    let _watchdog = watchdog("a_damaged_continued_marker_does_not_hide_a_lost_newest_segment", 60);
    let dir = temp_dir("review2-marker-lost-segment");
    let acknowledged = fill(dir.path());
    let used = used_segments(dir.path());
    assert!(used.len() >= 3);
    let (newest, newest_path) = used.last().expect("segments").clone();
    let previous = segment_path(dir.path(), newest - 1);
    let marker_at = (groups_on_disk(&previous).last().expect("groups").end.div_ceil(4096) * 4096) as u64;
    let mut marker = [0u8; 32];
    std::fs::File::open(&previous).expect("open").read_exact_at(&mut marker, marker_at).expect("read");
    assert_eq!(&marker[..4], b"EVNX", "the continued marker follows the last group");
    std::fs::remove_file(&newest_path).expect("lose the newest segment");
    damage(&previous, marker_at + 9, &[marker[9] ^ 0x01]);

    match Store::open(dir.path(), options()) {
        Err(evstore::Error::Corrupted { .. }) => {}
        Err(e) => panic!("open failed with {e}, not Corrupted"),
        Ok(store) => {
            let kept = read_all(&store).len();
            store.close().expect("close");
            assert_eq!(
                kept,
                acknowledged,
                "open accepted the store without segment {newest} and dropped {} acknowledged events silently",
                acknowledged - kept
            );
        }
    }
}
