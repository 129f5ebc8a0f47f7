//! The operator's way out of `Error::Corrupted`: `Store::repair` cuts the log at its first damage,
//! reports exactly which positions it dropped, and saves every file it changes or removes first.
//! Without it, one bad sector would leave a store that never opens again, or an operator deleting
//! files by hand; with a repair that guessed, it could drop more than the damage, or drop events
//! silently. It must also never touch a healthy store.

use std::collections::BTreeMap;
use std::path::Path;

use evstore::{Error, Event, ExpectedVersion, Store};
use evstore_tests::small_segment_options as options;
use evstore_tests::{
    check_log_shape, damage, filled_store, groups_on_disk, read_all, segment_path, temp_dir, used_segments, watchdog,
};

/// Every file in `dir` (not in subdirectories) with its contents.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_file())
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).expect("read")))
        .collect()
}

/// A store over several 128 KiB segments, closed; returns its events.
fn filled(dir: &Path) -> Vec<evstore::RecordedEvent> {
    let events = filled_store(dir, 60);
    assert!(used_segments(dir).len() >= 3, "the damage needs segments after it");
    events
}

#[test]
fn repair_cuts_at_the_first_damage_and_reports_what_it_dropped() {
    let _watchdog = watchdog("repair_cuts_at_the_first_damage_and_reports_what_it_dropped", 60);
    let dir = temp_dir("repair-record");
    let before = filled(dir.path());
    let segment = segment_path(dir.path(), 1);
    let group = groups_on_disk(&segment)[1];
    let original = std::fs::read(&segment).expect("read");
    let at = group.offset + 32 + 100;
    damage(&segment, at as u64, &[original[at] ^ 0x01]);

    match Store::open(dir.path(), options()) {
        Err(Error::Corrupted { segment: 1, offset, .. }) => assert!(offset <= at as u64),
        other => panic!("expected Corrupted in segment 1, got {other:?}"),
    }
    let damaged = files(dir.path());
    let report = Store::repair(dir.path(), options()).expect("repair").expect("damage found");
    assert_eq!(report.segment, 1);
    assert_eq!(report.offset, group.offset as u64, "{report:?}");
    assert_eq!(report.dropped, group.first_position..before.len() as u64, "{report:?}");
    assert_eq!(report.dropped_events(), before.len() as u64 - group.first_position);
    // What was changed or removed is saved, byte for byte as it was.
    let saved = files(&report.saved_to);
    for (name, bytes) in &saved {
        assert_eq!(Some(bytes), damaged.get(name), "{name} saved as it was");
    }
    assert!(saved.contains_key(&format!("{:020}.evs", 1)), "the damaged segment is saved");

    let store = Store::open(dir.path(), options()).expect("open after repair");
    assert_eq!(read_all(&store), before[..group.first_position as usize], "the log is cut exactly at the damage");
    check_log_shape(&store);
    // The log goes on from the cut, and that survives a reopen.
    let appended =
        store.append("after", ExpectedVersion::NoStream, [Event::new("After", b"x".to_vec())]).expect("append").wait();
    assert_eq!(appended.expect("durable").position, group.first_position);
    store.close().expect("close");
    let store = Store::open(dir.path(), options()).expect("reopen");
    assert_eq!(check_log_shape(&store), group.first_position + 1);
    store.close().expect("close");
    assert_eq!(Store::repair(dir.path(), options()).expect("second repair"), None, "nothing left to repair");
}

#[test]
fn repair_of_a_damaged_segment_header_drops_that_segment_and_the_later_ones() {
    let _watchdog = watchdog("repair_of_a_damaged_segment_header_drops_that_segment_and_the_later_ones", 60);
    let dir = temp_dir("repair-header");
    let before = filled(dir.path());
    let first_of_two = groups_on_disk(&segment_path(dir.path(), 2))[0].first_position;
    damage(&segment_path(dir.path(), 2), 0, &[0u8; 4096]);
    assert!(matches!(Store::open(dir.path(), options()), Err(Error::Corrupted { segment: 2, offset: 0, .. })));
    let report = Store::repair(dir.path(), options()).expect("repair").expect("damage found");
    assert_eq!((report.segment, report.offset), (2, 0));
    assert_eq!(report.dropped, first_of_two..before.len() as u64, "{report:?}");
    let store = Store::open(dir.path(), options()).expect("open after repair");
    assert_eq!(read_all(&store), before[..first_of_two as usize]);
    store.close().expect("close");
}

#[test]
fn repair_leaves_a_healthy_store_alone() {
    let _watchdog = watchdog("repair_leaves_a_healthy_store_alone", 60);
    let dir = temp_dir("repair-healthy");
    let before = filled(dir.path());
    let files_before = files(dir.path());
    assert_eq!(Store::repair(dir.path(), options()).expect("repair"), None);
    assert_eq!(files(dir.path()), files_before, "no file changed");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count(), 0);
    let store = Store::open(dir.path(), options()).expect("open");
    assert_eq!(read_all(&store), before);
    // While a store is open, repair is refused like a second open.
    assert!(matches!(Store::repair(dir.path(), options()), Err(Error::Locked { .. })));
    store.close().expect("close");
}
