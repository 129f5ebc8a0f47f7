//! Recovery zeroes a torn tail only within the pipeline window it computes from the segment
//! header and the options of the open that recovers, not the window of the run that crashed. A
//! run that wrote into a segment started by an earlier run with a smaller `groups_in_flight_max`
//! can leave in-flight groups further out than that; when the store is then opened with the
//! smaller value again, its recovery accepts the tail but leaves those stale groups in place.
//! Once the new run's sequence numbers pass theirs, every later open (even after a clean close,
//! and with the larger options, the remedy design.md gives for a pipeline changed across
//! restarts) refuses the store: `Corrupted`, "group N lies at offset X, where no write of the log
//! could have put it". design.md ("The durability argument", point 8) says that the cut bytes are
//! zeroed so that a stale group from the lost pipeline can never be read later; here it is, and
//! `Store::repair` then reports as dropped events that were never part of the log.
//!
//! The crash image is built from real runs: run B (4 groups in flight) starts segment 0; run C
//! (8 groups in flight) writes 8 groups of 64 KiB (since the fix, into a segment of its own); a crash while all 8 were in flight can
//! lose the writes of the first five and keep the last three, and leaves no close marker (here the
//! first five and the marker are zeroed). None of the eight was acknowledged. Run D opens with 4
//! groups in flight, appends six small events and closes cleanly.

use evstore::{Backend, Error, Event, ExpectedVersion, Options, Store};
use evstore_tests::{
    append_one, damage, groups_on_disk, open, read_all, segment_path, small_options, temp_dir, watchdog,
};

fn options(groups_in_flight_max: usize) -> Options {
    let mut options = small_options(Backend::Portable);
    options.groups_in_flight_max = groups_in_flight_max;
    options
}

#[test]
fn a_crash_with_a_larger_pipeline_leaves_no_stale_groups_behind() {
    let _watchdog = watchdog("a_crash_with_a_larger_pipeline_leaves_no_stale_groups_behind", 60);
    let dir = temp_dir("stale-pipeline");
    // Run B starts segment 0: its header says 4 groups in flight.
    let store = open(dir.path(), options(4)).expect("the portable backend opens");
    append_one(&store, "b", ExpectedVersion::Any, b"run b").expect("durable");
    store.close().expect("close");
    // Run C: 8 groups in flight, 8 groups of exactly 64 KiB (16 blocks) each.
    let store = Store::open(dir.path(), options(8)).expect("run C opens");
    for i in 0..8u8 {
        store
            .append("c", ExpectedVersion::Any, [Event::new("C", vec![i; 65_000])])
            .expect("append")
            .wait()
            .expect("ok");
    }
    store.close().expect("close");
    // Since the fix, run C (a larger window than segment 0's header names) moved to segment 1 at
    // open, whose header names its window.
    assert_eq!(groups_on_disk(&segment_path(dir.path(), 0)).len(), 1, "run B's group alone in segment 0");
    let segment = segment_path(dir.path(), 1);
    let groups = groups_on_disk(&segment);
    assert_eq!(groups.len(), 8, "run C's eight");
    assert!(groups.windows(2).all(|g| g[1].offset - g[0].offset == 65_536), "run C's groups are 64 KiB apart");
    // The crash image: run C's first five groups and its close marker never reached the disk.
    let marker = groups[7].end.div_ceil(4096) * 4096;
    damage(&segment, marker as u64, &[0; 4096]);
    damage(&segment, groups[0].offset as u64, &vec![0; 5 * 65_536]);

    // Run D, with the old pipeline again: the tail is a torn one, recovery cuts it.
    // (Should this open refuse the tail, design.md's remedy is to open with the larger values.)
    let store = match Store::open(dir.path(), options(4)) {
        Err(Error::Corrupted { .. }) => Store::open(dir.path(), options(8)).expect("run D opens with run C's options"),
        opened => opened.expect("run D opens the crash image"),
    };
    assert_eq!(store.durable_position(), 1, "only run B's event was acknowledged");
    for i in 0..6 {
        append_one(&store, "d", ExpectedVersion::Any, format!("d {i}").as_bytes()).expect("durable");
    }
    let expected: Vec<Vec<u8>> = read_all(&store).into_iter().map(|event| event.data).collect();
    store.close().expect("a clean close");

    let mut refusals = Vec::new();
    for groups_in_flight_max in [4, 8, 64] {
        match Store::open(dir.path(), options(groups_in_flight_max)) {
            Ok(store) => {
                let data: Vec<Vec<u8>> = read_all(&store).into_iter().map(|event| event.data).collect();
                store.close().expect("close");
                assert_eq!(data, expected, "groups_in_flight_max {groups_in_flight_max}: the log run D closed");
            }
            Err(Error::Corrupted { segment, offset, reason }) => refusals.push(format!(
                "groups_in_flight_max {groups_in_flight_max}: Corrupted in segment {segment} at {offset}: {reason}"
            )),
            Err(other) => panic!("groups_in_flight_max {groups_in_flight_max}: {other:?}"),
        }
    }
    assert!(refusals.is_empty(), "a store closed cleanly after a crash refuses to open:\n{}", refusals.join("\n"));
}
