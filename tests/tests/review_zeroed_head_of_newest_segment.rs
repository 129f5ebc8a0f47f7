//! Damage to the first two blocks of the newest used segment (its header block and the block where
//! its first group starts), with acknowledged groups further on, must stop `Store::open` with
//! `Error::Corrupted` and change no file. Today recovery classifies a segment file by its first
//! 8 KiB only: a zero (or invalid) header block with a zero block after it is taken for a segment
//! that was prepared but never used, or whose header write a crash tore, so the file is deleted and
//! the store opens without every acknowledged event it held. Here a cleanly closed store loses the
//! 30 events of its newest segment, and the file that held them is gone: nothing is left to repair.
//! Groups (or a close marker) anywhere after the header block prove the segment was used; a
//! prepared segment is zeros from end to end.

use std::path::Path;

use evstore::{Error, RecordedEvent, Store};
use evstore_tests::small_segment_options as options;
use evstore_tests::{
    damage, dir_changes, dir_files, filled_store, groups_on_disk, read_all, temp_dir, used_segments, watchdog,
};

/// 128 KiB segments: 45 appends of two 3,000-byte events (one group of two blocks each) fill
/// segments 0 and 1 and put 15 groups into segment 2.
fn fill(dir: &Path) -> Vec<RecordedEvent> {
    filled_store(dir, 45)
}

fn expect_refused(name: &str, harm: fn(&Path)) {
    let dir = temp_dir(name);
    let before = fill(dir.path());
    let (newest, segment) = used_segments(dir.path()).last().cloned().expect("used segments");
    let groups = groups_on_disk(&segment);
    assert!(groups.len() > 2 && groups[1].offset >= 8192, "{name}: groups lie behind the first two blocks");
    harm(&segment);
    let files = dir_files(dir.path());
    match Store::open(dir.path(), options()) {
        Err(Error::Corrupted { segment, .. }) => assert_eq!(segment, newest, "{name}: the damaged segment is named"),
        Ok(store) => {
            let events = read_all(&store).len();
            // Only the files that were there: the new store's preparer may be creating one right now.
            let changes: Vec<String> = files
                .iter()
                .filter(|(name, bytes)| std::fs::read(dir.path().join(name)).ok().as_ref() != Some(*bytes))
                .map(|(name, _)| name.clone())
                .collect();
            store.close().expect("close");
            panic!(
                "{name}: the store opened with {events} of {} acknowledged events (the {} groups of segment {newest} \
                 are gone); the open deleted or changed {changes:?}",
                before.len(),
                groups.len()
            );
        }
        Err(other) => panic!("{name}: expected Corrupted in segment {newest}, got {other:?}"),
    }
    if let Some(changes) = dir_changes(&files, &dir_files(dir.path())) {
        panic!("{name}: the refused open changed the directory: {changes}");
    }
}

#[test]
fn zeroed_header_and_first_block_of_the_newest_segment_is_corruption() {
    let _watchdog = watchdog("zeroed_header_and_first_block_of_the_newest_segment_is_corruption", 60);
    expect_refused("zeroed-head", |segment| damage(segment, 0, &[0; 8192]));
}

#[test]
fn garbage_header_and_zeroed_first_block_of_the_newest_segment_is_corruption() {
    let _watchdog = watchdog("garbage_header_and_zeroed_first_block_of_the_newest_segment_is_corruption", 60);
    expect_refused("garbage-head", |segment| {
        let mut head = vec![0u8; 8192];
        head[..64].fill(0x5a);
        damage(segment, 0, &head);
    });
}
