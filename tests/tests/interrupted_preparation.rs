//! A crash while the preparer creates a segment leaves a half-made file; a segment cut short by
//! an operator or a broken disk must not look like one. Segments are prepared as
//! `<number>.evs.partial` and renamed once whole, so a leftover `.partial` is removed quietly at
//! open, while a `.evs` file too short to be a segment (even an empty one, the newest) is damage:
//! without the rename, an emptied newest segment looked exactly like an interrupted preparation
//! and recovery deleted it, with every acknowledged event in it.

use evstore::{Backend, Error, Event, ExpectedVersion, Store};
use evstore_tests::{read_all, segment_path, small_options, temp_dir, used_segments, watchdog};

fn two_segments(dir: &std::path::Path) -> Vec<evstore::RecordedEvent> {
    let mut options = small_options(Backend::Portable);
    options.segment_bytes = 128 << 10;
    let store = Store::open(dir, options).expect("open");
    for i in 0..30u8 {
        store
            .append("p", ExpectedVersion::Any, [Event::new("E", vec![i; 6000])])
            .expect("append")
            .wait()
            .expect("durable");
    }
    let events = read_all(&store);
    store.close().expect("close");
    assert_eq!(used_segments(dir).len(), 2);
    events
}

fn options() -> evstore::Options {
    let mut options = small_options(Backend::Portable);
    options.segment_bytes = 128 << 10;
    options
}

#[test]
fn a_leftover_partial_segment_is_removed_and_nothing_is_lost() {
    let _watchdog = watchdog("a_leftover_partial_segment_is_removed_and_nothing_is_lost", 30);
    let dir = temp_dir("partial-leftover");
    let before = two_segments(dir.path());
    let partial = dir.path().join(format!("{:020}.evs.partial", 2));
    std::fs::write(&partial, vec![0u8; 1000]).expect("write partial");
    let store = Store::open(dir.path(), options()).expect("a crash during preparation is not damage");
    assert_eq!(read_all(&store), before);
    store.close().expect("close");
    assert!(!partial.exists(), "the leftover is removed");
}

#[test]
fn an_emptied_newest_segment_is_damage_not_an_interrupted_preparation() {
    let _watchdog = watchdog("an_emptied_newest_segment_is_damage_not_an_interrupted_preparation", 30);
    for len in [0u64, 100, 4096, 8191] {
        let dir = temp_dir("emptied-segment");
        two_segments(dir.path());
        let newest = segment_path(dir.path(), 1);
        std::fs::OpenOptions::new().write(true).open(&newest).expect("open").set_len(len).expect("truncate");
        match Store::open(dir.path(), options()) {
            Err(Error::Corrupted { segment: 1, offset, .. }) => assert!(offset <= len, "offset {offset} past the cut"),
            other => panic!("segment 1 cut to {len} bytes: expected Corrupted at segment 1, got {other:?}"),
        }
        assert_eq!(std::fs::metadata(&newest).expect("still there").len(), len, "the damaged file is left alone");
    }
}
