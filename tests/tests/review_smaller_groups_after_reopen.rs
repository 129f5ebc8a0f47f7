//! A bit flip in the middle of the newest segment of a cleanly closed store must be reported,
//! whatever options the store is opened with. Recovery judges what follows the last valid group
//! within a window of `(w + 1) × g` bytes, `g` the larger `group_bytes_max` of the segment header
//! (the run that started the segment) and of the options of the open. A run with larger groups
//! that continued the segment is in neither: its groups lie further apart than that window.
//! Here run B (8 KiB groups) starts the segment, run C (256 KiB groups) appends ten events of
//! 200 KB into it and closes cleanly, one bit of its fourth group flips, and the store is opened
//! with run B's options again: recovery sees no valid group and no close marker within 40 KiB of
//! the damage, takes it for a torn tail, zeroes it, and opens with 3 of 11 acknowledged events,
//! without a word. design.md says a pipeline changed across restarts can only make a torn tail
//! look like damage ("the error is on the safe side"), and that a store closed cleanly has no
//! crash window; this is the other way round, after a clean close. (Opened with run C's options,
//! the same damage is reported as `Corrupted`.) Since the fix, a run whose pipeline window is
//! larger than the active segment's header says moves to a new segment at open, so run C's
//! groups lie in a segment whose header names their window: that is asserted too.

use evstore::{Backend, Error, Event, ExpectedVersion, Options, Store};
use evstore_tests::{
    append_one, damage, dir_changes, dir_files, groups_on_disk, open, read_all, segment_path, small_options, temp_dir,
    watchdog,
};

fn options(group_bytes_max: usize) -> Options {
    let mut options = small_options(Backend::Portable);
    options.group_bytes_max = group_bytes_max;
    options.segment_bytes = 4 << 20;
    options
}

#[test]
fn a_bit_flip_after_a_run_with_larger_groups_is_not_cut_as_a_torn_tail() {
    let _watchdog = watchdog("a_bit_flip_after_a_run_with_larger_groups_is_not_cut_as_a_torn_tail", 60);
    let dir = temp_dir("smaller-groups");
    let store = open(dir.path(), options(8192)).expect("the portable backend opens");
    append_one(&store, "b", ExpectedVersion::Any, b"run b").expect("durable");
    store.close().expect("close");
    let store = Store::open(dir.path(), options(256 << 10)).expect("run C opens");
    for i in 0..10u8 {
        let event = Event::new("C", vec![i; 200_000]);
        store.append("c", ExpectedVersion::Any, [event]).expect("append").wait().expect("durable");
    }
    let acknowledged = read_all(&store).len();
    store.close().expect("a clean close");

    assert_eq!(groups_on_disk(&segment_path(dir.path(), 0)).len(), 1, "run B's group alone in segment 0");
    let segment = segment_path(dir.path(), 1);
    let groups = groups_on_disk(&segment);
    assert_eq!(groups.len(), 10, "run C's groups in a segment of their own");
    let at = groups[3].offset + 32 + 5000;
    let byte = std::fs::read(&segment).expect("read")[at];
    damage(&segment, at as u64, &[byte ^ 1]);
    let files = dir_files(dir.path());

    // With run C's options the damage is found (and nothing changes).
    assert!(
        matches!(Store::open(dir.path(), options(256 << 10)), Err(Error::Corrupted { segment: 1, .. })),
        "with the options of the run that wrote the groups, the flip is damage"
    );
    assert_eq!(dir_changes(&files, &dir_files(dir.path())), None);
    // With run B's options it must be found too.
    match Store::open(dir.path(), options(8192)) {
        Err(Error::Corrupted { segment: 1, .. }) => {}
        Ok(store) => {
            let events = read_all(&store).len();
            // Only the files that were there: the new store's preparer may be creating one right now.
            let changed: Vec<&String> = files
                .iter()
                .filter(|(name, bytes)| std::fs::read(dir.path().join(name)).ok().as_ref() != Some(*bytes))
                .map(|(name, _)| name)
                .collect();
            store.close().expect("close");
            panic!(
                "a cleanly closed store with one flipped bit opened with {events} of {acknowledged} acknowledged \
                 events; the open deleted or changed {changed:?}"
            );
        }
        Err(other) => panic!("expected Corrupted in segment 1, got {other:?}"),
    }
    assert_eq!(dir_changes(&files, &dir_files(dir.path())), None, "a refused open changes no file");
}
