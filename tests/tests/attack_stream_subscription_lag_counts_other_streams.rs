//! A stream subscription's "historic again" rule counts groups of the whole store.
//!
//! `Subscription::fill` turns a live subscription historic once more than
//! `LIVE_LAG_GROUPS_MAX` groups were published since it last reached the durable end, whatever
//! those groups hold. For `subscribe_stream` most of them belong to other streams: a subscriber
//! that has handed every event of its stream and takes a moment to handle the last one (16 other
//! appends at low load are 16 groups: a few milliseconds) gets the next event of its stream,
//! made durable after it caught up and delivered with nothing of its stream before it, flagged
//! `historic() == true`.
//!
//! subscription.rs says: true again "if it then falls more than LIVE_LAG_MAX events behind", and
//! the issue: historic while "catching up". This subscriber is 0 events behind on what it
//! follows. A projection that batches historic events (the seed's policy) delays a quiet
//! stream's live events whenever the rest of the store is busy.
//!
//! Expected: the lag of a stream subscription is measured in its own stream's events (or
//! groups), so the event below is live.

use evstore::{Backend, Event, ExpectedVersion, Store, LIVE_LAG_GROUPS_MAX};
use evstore_tests::{open, small_options, temp_dir, watchdog};

fn append(store: &Store, stream: &str) {
    store.append(stream, ExpectedVersion::Any, [Event::new("T", "x")]).unwrap().wait().unwrap();
}

#[test]
fn a_caught_up_stream_subscriber_is_not_historic_because_other_streams_were_busy() {
    let _watchdog = watchdog("a_caught_up_stream_subscriber_is_not_historic_because_other_streams_were_busy", 60);
    let dir = temp_dir("attack-stream-lag");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    let mut sub = store.subscribe_stream("quiet", 0).unwrap();
    // Look once, so that the subscription has seen the (empty) durable end of its stream.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(sub.poll_next_batch(&mut cx, 16).is_pending());
    append(&store, "quiet");
    let first = sub.next().unwrap().unwrap();
    assert!(!first.historic(), "appended after subscribing to an empty stream: live");
    assert!(sub.caught_up());
    // While the subscriber handles quiet@0, the rest of the store is busy.
    for _ in 0..=LIVE_LAG_GROUPS_MAX {
        append(&store, "busy");
    }
    assert!(sub.caught_up(), "nothing of `quiet` is waiting: the subscription is caught up");
    append(&store, "quiet");
    let second = sub.next().unwrap().unwrap();
    assert_eq!(second.version(), 1);
    assert!(
        !second.historic(),
        "quiet@1 was made durable after the subscription caught up, and is the only event of its \
         stream it has not handed: it is live, yet flagged historic"
    );
    store.close().unwrap();
}
