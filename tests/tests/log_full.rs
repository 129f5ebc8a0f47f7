//! Positions and versions are stored in 48 bits. A log that ends near that limit (here a segment
//! whose header says it starts 2 events below it) must refuse the append that would pass it with
//! `Error::LogFull`, and keep working for appends that fit. Without the check, the submitter
//! panicked on its first append past the limit (found by the fuzz target over recovery), taking
//! the store down with it.

use evstore::{Error, Event, ExpectedVersion, Store};
use evstore_tests::{small_options, temp_dir, watchdog, write_empty_segment_0};

const POSITION_LIMIT: u64 = 1 << 48;

#[test]
fn appends_past_the_48_bit_position_limit_are_refused() {
    let _watchdog = watchdog("appends_past_the_48_bit_position_limit_are_refused", 30);
    let dir = temp_dir("log-full");
    let options = small_options(evstore::Backend::Portable);
    write_empty_segment_0(dir.path(), POSITION_LIMIT - 2, &options);
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
