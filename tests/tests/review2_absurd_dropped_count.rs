//! `RepairReport::dropped` is "the end of the log as the group and segment headers after the
//! damage tell it". Repair also believes any end marker it finds there: a "closed" marker with a
//! valid CRC that names position 2^40 (a stray block from another store, a crafted file) makes
//! repair report a trillion dropped events for a log of 100, though no event is smaller than a
//! 32-byte record header and the whole log holds a few hundred KiB. An operator reading the
//! report is told of a loss that cannot have happened; a count that the files cannot hold should
//! not be reported (the ordinary bound: no more events than the bytes after the cut could hold).

use std::path::Path;

use evstore::{Store, RECORD_HEADER_BYTES};
use evstore_tests::small_segment_options as options;
use evstore_tests::{damage, filled_store, groups_on_disk, read_all, segment_path, temp_dir, used_segments, watchdog};

fn fill(dir: &Path) -> usize {
    filled_store(dir, 50).len()
}

fn closed_marker(next_seq: u64, next_position: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..4].copy_from_slice(b"EVCL");
    b[8..16].copy_from_slice(&next_seq.to_le_bytes());
    b[16..24].copy_from_slice(&next_position.to_le_bytes());
    let crc = crc32c::crc32c(&b[8..32]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn repair_does_not_report_more_dropped_events_than_the_files_can_hold() {
    let _watchdog = watchdog("repair_does_not_report_more_dropped_events_than_the_files_can_hold", 60);
    let dir = temp_dir("review2-absurd-dropped");
    let events = fill(dir.path()) as u64;
    let (last, path) = used_segments(dir.path()).last().expect("segments").clone();
    let end = (groups_on_disk(&path).last().expect("groups").end.div_ceil(4096) * 4096) as u64;
    // Two blocks past the real close marker: a valid "closed" marker naming a far later end.
    damage(&path, end + 8192, &closed_marker(1 << 20, 1 << 40));
    assert!(matches!(Store::open(dir.path(), options()), Err(evstore::Error::Corrupted { .. })));

    let log_bytes: u64 = (0..=last).map(|n| std::fs::metadata(segment_path(dir.path(), n)).expect("size").len()).sum();
    let report = Store::repair(dir.path(), options()).expect("repair").expect("damage found");
    let store = Store::open(dir.path(), options()).expect("open after repair");
    assert_eq!(read_all(&store).len() as u64, events, "every event kept");
    store.close().expect("close");
    assert!(
        report.dropped_events() <= log_bytes / RECORD_HEADER_BYTES as u64,
        "repair reports {} dropped events; the {log_bytes} bytes of the log could hold at most {} ({report:?})",
        report.dropped_events(),
        log_bytes / RECORD_HEADER_BYTES as u64
    );
}
