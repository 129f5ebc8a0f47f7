//! Positions and versions are stored in 48 bits. A log that ends near that limit (here a segment
//! whose header says it starts 2 events below it) must refuse the append that would pass it with
//! `Error::LogFull`, and keep working for appends that fit. Without the check, the submitter
//! panicked on its first append past the limit (found by the fuzz target over recovery), taking
//! the store down with it.

use evstore::{Error, Event, ExpectedVersion, Store};
use evstore_tests::{small_options, temp_dir, watchdog};

const POSITION_LIMIT: u64 = 1 << 48;

/// A used, empty segment 0 of `segment_bytes` bytes whose log starts at `first_position`.
fn segment_starting_at(dir: &std::path::Path, first_position: u64, segment_bytes: u64, group_bytes_max: u32) {
    let mut file = vec![0u8; segment_bytes as usize];
    file[0..8].copy_from_slice(b"EVSEGMNT");
    file[8..12].copy_from_slice(&1u32.to_le_bytes());
    file[16..24].copy_from_slice(&0u64.to_le_bytes());
    file[24..32].copy_from_slice(&first_position.to_le_bytes());
    file[32..40].copy_from_slice(&segment_bytes.to_le_bytes());
    file[48..52].copy_from_slice(&4u32.to_le_bytes());
    file[52..56].copy_from_slice(&group_bytes_max.to_le_bytes());
    let crc = crc32c::crc32c(&file[16..56]);
    file[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.join(format!("{:020}.evs", 0)), file).expect("write segment");
}

#[test]
fn appends_past_the_48_bit_position_limit_are_refused() {
    let _watchdog = watchdog("appends_past_the_48_bit_position_limit_are_refused", 30);
    let dir = temp_dir("log-full");
    let options = small_options(evstore::Backend::Portable);
    segment_starting_at(dir.path(), POSITION_LIMIT - 2, options.segment_bytes, options.group_bytes_max as u32);
    let store = Store::open(dir.path(), options.clone()).expect("open");
    assert_eq!(store.durable_position(), POSITION_LIMIT - 2);
    let append = |events: usize| {
        store
            .append("edge", ExpectedVersion::Any, (0..events).map(|k| Event::new("E", vec![k as u8])))
            .and_then(|ticket| ticket.wait())
    };
    assert_eq!(append(1).expect("fits").position, POSITION_LIMIT - 2);
    match append(2) {
        Err(Error::LogFull { what: "log", max }) => assert_eq!(max, POSITION_LIMIT),
        other => panic!("an append past the limit: expected LogFull, got {other:?}"),
    }
    assert_eq!(append(1).expect("the last position fits").position, POSITION_LIMIT - 1);
    assert!(matches!(append(1), Err(Error::LogFull { .. })), "nothing fits any more");
    store.close().expect("close: the store was not poisoned");
    let store = Store::open(dir.path(), options).expect("reopen");
    assert_eq!(store.durable_position(), POSITION_LIMIT);
    assert_eq!(store.stream_version("edge"), Some(1));
    store.close().expect("close");
}
