//! Growing segments promise that a session of a few appends writes megabytes, not segments
//! (segment_growth.rs checks it, but only for a store whose active segment is under a quarter
//! full). Past a quarter, the first group written after `open` asks the preparer for the next
//! segment (submitter.rs `write_group`: `write_offset >= bytes / 4`), the preparer zeroes a whole
//! segment of twice the active one's size (up to `segment_bytes`, 256 MiB by default), `close`
//! waits for that zeroing to finish, and the next `open` deletes the segment as unused
//! (recovery.rs removes trailing unused segments). So every open / one append / close cycle on
//! such a store writes a full next segment that is never used: here 16 MiB for a 7 MiB store; for
//! a store in full-size segments, 256 MiB per session, and `close` blocks for the zeroing.
//!
//! Expected: a session that appends a few bytes writes about that much (a request made after
//! reopen should be based on what this session wrote, or recovery should keep a whole prepared
//! segment for reuse instead of deleting it).
//!
//! One test function in this binary, so /proc/self/io counts only its own writes.

use evstore::{Event, ExpectedVersion, Options, Store};
use evstore_tests::{process_written_bytes, temp_dir};

#[test]
fn a_one_append_session_writes_no_unused_segment() {
    let dir = temp_dir("a3-session");
    let path = dir.path().join("store");
    // Default options: segment 0 holds 4 MiB + 8 KiB, segment 1 8 MiB + 16 KiB.
    let store = Store::open(&path, Options::default()).expect("open");
    for i in 0..7u8 {
        store
            .append("big", ExpectedVersion::Any, [Event::new("Blob", vec![i; 1 << 20])])
            .expect("append")
            .wait()
            .expect("durable");
    }
    store.close().expect("close");
    // Reopen once so that the leftover of the first session is gone.
    Store::open(&path, Options::default()).expect("open").close().expect("close");

    for session in 0..3 {
        let before = process_written_bytes();
        let started = std::time::Instant::now();
        let store = Store::open(&path, Options::default()).expect("open");
        store
            .append("small", ExpectedVersion::Any, [Event::new("Tiny", "{}")])
            .expect("append")
            .wait()
            .expect("durable");
        store.close().expect("close");
        let wrote = process_written_bytes() - before;
        println!("session {session}: open, one tiny append, close wrote {wrote} bytes in {:?}", started.elapsed());
        assert!(
            wrote < 4 << 20,
            "session {session}: open + one 2-byte append + close wrote {wrote} bytes: a whole next segment, \
             deleted unused by the next open"
        );
    }
}
