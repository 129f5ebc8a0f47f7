//! Recovery checks that used segments are contiguous, but not that the log starts with segment 0:
//! evstore never removes a segment (no retention), so a log whose oldest file is segment 1 lost
//! segment 0, as surely as a log with segment 1 missing between 0 and 2 (which is reported as
//! `Error::Corrupted`). Today, when no stream continues across the lost segment (one stream per
//! aggregate, each written by one append), the store opens without a word, with every event of
//! segment 0 gone, its streams unknown and `durable_position` unchanged.
//!
//! And in a log that starts above position 0 (which recovery accepts: `log_full.rs` opens one
//! starting near 2^48), `read_all(0)` returns nothing at all: the group directory is searched for
//! the group holding position 0, there is none, and the iterator ends, although the log holds
//! events from its first position on.

use std::path::Path;

use evstore::{Backend, Error, Event, ExpectedVersion, Options, Store};
use evstore_tests::{
    open, read_all, segment_path, small_options, temp_dir, used_segments, watchdog, write_empty_segment_0,
};

fn options() -> Options {
    let mut options = small_options(Backend::Portable);
    options.segment_bytes = 128 << 10;
    options
}

/// 45 aggregates of one append of two 3,000-byte events each, over three 128 KiB segments.
fn fill(dir: &Path) -> u64 {
    let store = open(dir, options()).expect("the portable backend opens");
    for i in 0..45u32 {
        let events = (0..2).map(|k| Event::new("Created", vec![(i * 2 + k) as u8; 3000]));
        store
            .append(&format!("order-{i}"), ExpectedVersion::NoStream, events)
            .expect("append")
            .wait()
            .expect("durable");
    }
    let events = read_all(&store).len() as u64;
    store.close().expect("close");
    assert!(used_segments(dir).len() >= 3);
    events
}

#[test]
fn a_missing_oldest_segment_is_corruption() {
    let _watchdog = watchdog("a_missing_oldest_segment_is_corruption", 60);
    let dir = temp_dir("missing-oldest");
    let acknowledged = fill(dir.path());
    std::fs::remove_file(segment_path(dir.path(), 0)).expect("remove segment 0");
    match Store::open(dir.path(), options()) {
        Err(Error::Corrupted { .. }) => {}
        Ok(store) => {
            let readable = store.read_all(0).expect("read_all").count();
            let from_first = read_all(&store).len();
            let order_0 = store.stream_version("order-0");
            let durable = store.durable_position();
            store.close().expect("close");
            panic!(
                "segment 0 is gone, yet the store opened: durable_position {durable} (of {acknowledged} acknowledged), \
                 read_all(0) yields {readable} events ({from_first} through the helper), stream order-0 has version \
                 {order_0:?}"
            );
        }
        Err(other) => panic!("expected Corrupted, got {other:?}"),
    }
}

#[test]
fn read_all_from_before_the_first_position_reads_the_log() {
    let _watchdog = watchdog("read_all_from_before_the_first_position_reads_the_log", 60);
    let dir = temp_dir("log-above-zero");
    let options = options();
    write_empty_segment_0(dir.path(), 1000, &options);
    let store = Store::open(dir.path(), options).expect("a log starting at 1000 opens");
    for i in 0..5u8 {
        let appended = store.append("s", ExpectedVersion::Any, [Event::new("E", vec![i])]).expect("append").wait();
        assert_eq!(appended.expect("durable").position, 1000 + u64::from(i));
    }
    assert_eq!(store.read_all(1000).expect("read_all").count(), 5, "read_all from the first position");
    let from_zero: Vec<u64> =
        store.read_all(0).expect("read_all").map(|event| event.expect("an event").position).collect();
    store.close().expect("close");
    assert_eq!(from_zero, (1000..1005).collect::<Vec<_>>(), "read_all(0) must read the log from its first event");
}
