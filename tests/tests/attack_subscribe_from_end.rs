//! `subscribe_all(evstore::END)`: END (u64::MAX) is the crate's public name for "from the end"
//! (read_all_backwards, read_stream_backwards), so a user who wants only live events passes it
//! to `subscribe_all` too. Once the subscription is caught up (immediately: nothing lies at or
//! after u64::MAX), `Subscription::wake_target` computes `cursor.next_position() + 1`, which
//! overflows: a panic ("attempt to add with overflow") in a debug build, and in a release build a
//! wrap to target 0, i.e. a waker woken at every publication forever.
//!
//! Expected: no panic. Either END means "live from the current end" (the natural reading), or
//! the subscription simply waits (Pending) for a position that will never come; in both cases
//! the wake target must saturate. The same holds for any `from_position` near u64::MAX and for
//! the blocking iterator (`next`), which goes through the same code.

use std::task::{Context, Waker};

use evstore::{Backend, Event, ExpectedVersion, END};
use evstore_tests::{open, small_options, temp_dir, watchdog};

#[test]
fn subscribing_from_end_does_not_panic() {
    let _watchdog = watchdog("subscribing_from_end_does_not_panic", 30);
    let dir = temp_dir("attack-sub-end");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    store.append("a", ExpectedVersion::Any, [Event::new("T", "x")]).unwrap().wait().unwrap();
    for from in [END, END - 1] {
        let mut sub = store.subscribe_all(from).expect("subscribe");
        let mut cx = Context::from_waker(Waker::noop());
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sub.poll_next_batch(&mut cx, 10).is_pending()));
        assert!(polled.is_ok(), "poll_next_batch on subscribe_all({from}) panicked");
        assert!(polled.unwrap(), "nothing lies at or after {from}: the subscription waits");
    }
    store.close().unwrap();
}
