//! Events appended after `subscribe_all`/`subscribe_stream` returned, at a moment when the
//! subscription was already at the durable end, are flagged `historic() == true` if the
//! subscription had not been polled yet.
//!
//! A `Subscription` starts with `live: false` and only becomes live in its first `fill`, so the
//! first batch it reads is historic by construction, even when everything in it became durable
//! after the subscription was made from the durable end (`subscribe_all(durable_position())`,
//! or a stream subscription on a stream that does not exist yet). The usual pattern "subscribe,
//! then start producing, then consume" thus sees the first events as history. The issue: "historic()
//! is true for events delivered while the subscription is catching up", and a subscription made
//! at the end has nothing to catch up on.
//!
//! Expected: a subscription that starts at the durable end (nothing durable after its start
//! when it was made) is live from the start: the events below are live. (Severity: low; a
//! consumer that flushes on `caught_up()` still works, one that batches historic events delays
//! them.)

use evstore::{Backend, Event, ExpectedVersion, Store};
use evstore_tests::{open, small_options, temp_dir, watchdog};

fn append(store: &Store, stream: &str) {
    store.append(stream, ExpectedVersion::Any, [Event::new("T", "x")]).unwrap().wait().unwrap();
}

#[test]
fn events_appended_after_subscribing_at_the_end_are_live() {
    let _watchdog = watchdog("events_appended_after_subscribing_at_the_end_are_live", 60);
    let dir = temp_dir("attack-first-live");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    append(&store, "before");
    let mut all = store.subscribe_all(store.durable_position()).unwrap();
    let mut stream = store.subscribe_stream("not-yet", 0).unwrap();
    append(&store, "not-yet");
    let from_all = all.next().unwrap().unwrap();
    let from_stream = stream.next().unwrap().unwrap();
    assert_eq!((from_all.position(), from_stream.version()), (1, 0));
    assert!(!from_all.historic(), "appended after subscribe_all(durable_position()): live, got historic");
    assert!(!from_stream.historic(), "appended after subscribing to a stream that did not exist: live, got historic");
    store.close().unwrap();
}
