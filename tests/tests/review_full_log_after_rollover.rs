//! A log that reached the 48-bit position limit refuses further appends with `Error::LogFull`
//! (log_full.rs). But when such an append does not fit in the active segment, the submitter
//! moves to a new segment before it checks the limit, and writes that segment's header with
//! first position 2^48, which `SegmentHeader::check` rejects (positions end at 2^48 - 1). The
//! append is refused; the clean close then writes its close marker after that header. At the next
//! open the new segment has an invalid header with something written after it: `Corrupted`. A
//! full store that was closed cleanly never opens again without `Store::repair`.

use evstore::{Backend, Error, Event, ExpectedVersion, Options, Store};
use evstore_tests::{segment_path, small_options, temp_dir, watchdog};

const POSITION_LIMIT: u64 = 1 << 48;

/// Segment 0, used and empty, of a log that starts at `first_position` (as log_full.rs makes it).
fn segment_starting_at(dir: &std::path::Path, first_position: u64, options: &Options) {
    let mut file = vec![0u8; options.segment_bytes as usize];
    file[0..8].copy_from_slice(b"EVSEGMNT");
    file[8..12].copy_from_slice(&1u32.to_le_bytes());
    file[24..32].copy_from_slice(&first_position.to_le_bytes());
    file[32..40].copy_from_slice(&options.segment_bytes.to_le_bytes());
    file[48..52].copy_from_slice(&(options.groups_in_flight_max as u32).to_le_bytes());
    file[52..56].copy_from_slice(&(options.group_bytes_max as u32).to_le_bytes());
    let crc = crc32c::crc32c(&file[16..56]);
    file[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(segment_path(dir, 0), file).expect("write segment 0");
}

#[test]
fn a_full_log_closed_cleanly_opens_again() {
    let _watchdog = watchdog("a_full_log_closed_cleanly_opens_again", 60);
    let dir = temp_dir("full-log-rollover");
    // Segments of a header block and three more: two 6 KB events do not fit in one.
    let mut options = small_options(Backend::Portable);
    options.group_bytes_max = 8192;
    options.segment_bytes = 16384;
    segment_starting_at(dir.path(), POSITION_LIMIT - 1, &options);
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
