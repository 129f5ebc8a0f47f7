//! `SegmentPrepare::Auto` decides each segment's preparation from the groups written into the
//! one before it, so a workload that alternates phases of large groups (fallocated next segment)
//! and small ones (zeroed next segment) gets a log of both kinds, rolled over many times, with
//! and without growing segments, on both backends. Every event must read back in order, byte for
//! byte, before and after a reopen with each `segment_prepare`. Without this, a segment chosen
//! one way and written as if it were the other (a group written past an unwritten extent, an end
//! marker or a header in one) could lose or garble events only in the default configuration.

use evstore::{Event, ExpectedVersion, Options, SegmentPrepare, Store};
use evstore_tests::{backends, check_log_shape, open, read_all, temp_dir, watchdog};

mod attack5_fiemap;
use attack5_fiemap::{fallocated_segments, segment_files};

fn options(backend: evstore::Backend, grow: bool, prepare: SegmentPrepare) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.segment_prepare = prepare;
    options.grow_segments = grow;
    options.segment_bytes = 4 << 20;
    options.group_bytes_max = 1 << 20;
    options
}

/// Event `i` of the run: large or small, its bytes telling which it is.
fn data(i: usize, large: bool) -> Vec<u8> {
    let mut bytes = vec![(i % 251) as u8; if large { 600 << 10 } else { 1000 }];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    bytes
}

/// Appends one phase: six large events, each waited for (a group of 600 KiB each), or 300
/// small ones, each waited for (a group of one block each). Returns what was appended.
fn phase(store: &Store, first: usize, large: bool) -> Vec<(String, Vec<u8>)> {
    let count = if large { 6 } else { 300 };
    (first..first + count)
        .map(|i| {
            let stream = format!("s-{}", i % 5);
            let bytes = data(i, large);
            store
                .append(&stream, ExpectedVersion::Any, [Event::new("E", bytes.clone())])
                .expect("append")
                .wait()
                .unwrap_or_else(|e| panic!("append {i} (large: {large}): {e}"));
            (stream, bytes)
        })
        .collect()
}

fn assert_log(store: &Store, expected: &[(String, Vec<u8>)], what: &str) {
    check_log_shape(store);
    let log = read_all(store);
    assert_eq!(log.len(), expected.len(), "{what}: events in the log");
    for (event, (stream, bytes)) in log.iter().zip(expected) {
        assert_eq!(&event.stream, stream, "{what}: stream at position {}", event.position);
        assert!(&event.data == bytes, "{what}: the bytes at position {} differ", event.position);
    }
}

#[test]
fn alternating_large_and_small_groups_read_back_across_rollovers_and_reopens() {
    let _watchdog = watchdog("alternating_large_and_small_groups_read_back_across_rollovers_and_reopens", 300);
    for backend in backends() {
        for grow in [false, true] {
            let what = format!("{backend:?}, grow {grow}");
            let dir = temp_dir("attack5-alternating");
            let Some(store) = open(dir.path(), options(backend, grow, SegmentPrepare::Auto)) else { continue };
            let mut expected = Vec::new();
            for round in 0..10 {
                let appended = phase(&store, expected.len(), round % 2 == 0);
                expected.extend(appended);
            }
            let segments = store.stats().segments;
            assert_log(&store, &expected, &what);
            store.close().expect("close");
            let fallocated = fallocated_segments(dir.path());
            println!(
                "{what}: {segments} segments, {} files, {fallocated} with unwritten extents",
                segment_files(dir.path()).len()
            );
            assert!(segments >= 5, "{what}: only {segments} segments: the test rolled over too little");
            assert!(fallocated >= 1, "{what}: Auto never fallocated a segment after phases of 600 KiB groups");
            for prepare in [SegmentPrepare::Zeroed, SegmentPrepare::Fallocated, SegmentPrepare::Auto] {
                let what = format!("{what}, reopened with {prepare:?}");
                let store = Store::open(dir.path(), options(backend, grow, prepare))
                    .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
                assert_log(&store, &expected, &what);
                for large in [true, false, true] {
                    let appended = phase(&store, expected.len(), large);
                    expected.extend(appended);
                }
                assert_log(&store, &expected, &what);
                store.close().expect("close");
            }
            let store = Store::open(dir.path(), options(backend, grow, SegmentPrepare::Auto)).expect("last reopen");
            assert_log(&store, &expected, &format!("{what}, last reopen"));
            store.close().expect("close");
        }
    }
}
