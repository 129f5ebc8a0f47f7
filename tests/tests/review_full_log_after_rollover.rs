//! A log that reached the 48-bit position limit refuses further appends with `Error::LogFull`
//! (log_full.rs). But when such an append does not fit in the active segment, the submitter
//! moves to a new segment before it checks the limit, and writes that segment's header with
//! first position 2^48, which `SegmentHeader::check` rejects (positions end at 2^48 - 1). The
//! append is refused; the clean close then writes its close marker after that header. At the next
//! open the new segment has an invalid header with something written after it: `Corrupted`. A
//! full store that was closed cleanly never opens again without `Store::repair`.

use evstore::{Backend, Error, Event, ExpectedVersion, Store};
use evstore_tests::{small_options, temp_dir, watchdog, write_empty_segment_0};

const POSITION_LIMIT: u64 = 1 << 48;

#[test]
fn a_full_log_closed_cleanly_opens_again() {
    let _watchdog = watchdog("a_full_log_closed_cleanly_opens_again", 60);
    let dir = temp_dir("full-log-rollover");
    // Segments of a header block and three more: two 6 KB events do not fit in one.
    let mut options = small_options(Backend::Portable);
    options.group_bytes_max = 8192;
    options.segment_bytes = 16384;
    write_empty_segment_0(dir.path(), POSITION_LIMIT - 1, &options);
    let store = Store::open(dir.path(), options.clone()).expect("open");
    let append = || store.append("edge", ExpectedVersion::Any, [Event::new("E", vec![1; 6000])]).and_then(|t| t.wait());
    assert_eq!(append().expect("the last position").position, POSITION_LIMIT - 1);
    assert!(matches!(append(), Err(Error::LogFull { .. })), "the log is full");
    store.close().expect("close: nothing failed");
    match Store::open(dir.path(), options) {
        Ok(store) => {
            assert_eq!(store.durable_position(), POSITION_LIMIT);
            store.close().expect("close");
        }
        Err(e) => panic!("a full log closed cleanly does not open again: {e}"),
    }
}
