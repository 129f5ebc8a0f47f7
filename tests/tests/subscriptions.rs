//! Subscriptions: history then live, every position exactly once and in order across the switch
//! while appends run at full speed; historic flags as in the seed; a slow subscriber turns
//! historic again and never holds up the writer; resuming from a checkpoint; the batch form; the
//! async form; the end of iteration when the store closes.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use evstore::{Backend, Envelope, Event, ExpectedVersion, Store, Subscription, LIVE_LAG_GROUPS_MAX};
use evstore_tests::{backends, open, small_options, temp_dir, watchdog};

fn append(store: &Store, stream: &str, event_type: &str) {
    store.append(stream, ExpectedVersion::Any, [Event::new(event_type.to_string(), "x")]).unwrap().wait().unwrap();
}

fn next(sub: &mut Subscription) -> Envelope {
    sub.next().expect("the store is open").expect("no error")
}

#[test]
fn history_then_live_as_in_the_seed() {
    let _watchdog = watchdog("history_then_live_as_in_the_seed", 60);
    for backend in backends() {
        let dir = temp_dir("sub-seed");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        let history: Vec<_> = (0..3500).map(|_| Event::new("WatchedVideo", "1")).collect();
        for chunk in history.chunks(500) {
            store.append("videos", ExpectedVersion::Any, chunk.to_vec()).unwrap().wait().unwrap();
        }
        store
            .append("videos", ExpectedVersion::Any, (0..50).map(|_| Event::new("BookmarkedVideo", "1")))
            .unwrap()
            .wait()
            .unwrap();
        let mut sub = store.subscribe_all(0).unwrap();
        for position in 0..3550 {
            let envelope = next(&mut sub);
            assert_eq!(envelope.position(), position);
            assert!(envelope.historic(), "position {position} was appended before subscribing");
        }
        assert!(sub.caught_up() || store.durable_position() == 3550);
        for i in 0..100u64 {
            append(&store, "videos", "WatchedVideo");
            let envelope = next(&mut sub);
            assert_eq!((envelope.position(), envelope.version()), (3550 + i, 3550 + i));
            assert!(!envelope.historic(), "event {i} was appended after the subscription caught up");
            assert_eq!(
                (envelope.stream(), envelope.event_type(), envelope.data()),
                ("videos", "WatchedVideo", &b"x"[..])
            );
            assert!(sub.caught_up());
        }
        drop(sub);
        store.close().unwrap();
    }
}

#[test]
fn no_gap_and_no_duplicate_at_the_switch_while_appends_run_at_full_speed() {
    let _watchdog = watchdog("no_gap_and_no_duplicate_at_the_switch_while_appends_run_at_full_speed", 120);
    let dir = temp_dir("sub-race");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    let history: Vec<_> = (0..2000)
        .map(|i| store.append(&format!("s-{}", i % 7), ExpectedVersion::Any, [Event::new("H", "h")]).unwrap())
        .collect();
    history.into_iter().for_each(|t| {
        t.wait().unwrap();
    });
    const PER_PRODUCER: u64 = 20_000;
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut tickets = Vec::new();
                for i in 0..PER_PRODUCER {
                    let events = (0..1 + i % 3).map(|_| Event::new("L", "live"));
                    tickets.push(store.append(&format!("p{p}-{}", i % 11), ExpectedVersion::Any, events).unwrap());
                    if tickets.len() == 256 {
                        tickets.drain(..).for_each(|t| {
                            t.wait().unwrap();
                        });
                    }
                }
                tickets.into_iter().for_each(|t| {
                    t.wait().unwrap();
                });
            })
        })
        .collect();
    // Three subscribers started at different moments, one reading in batches.
    let total = 2000 + 2 * (0..PER_PRODUCER).map(|i| 1 + i % 3).sum::<u64>();
    let subscribers: Vec<_> = (0..3)
        .map(|k| {
            let mut sub = store.subscribe_all(0).unwrap();
            std::thread::sleep(Duration::from_millis(3));
            std::thread::spawn(move || {
                let mut expected = 0u64;
                let mut saw_live = false;
                while expected < total {
                    if k == 2 {
                        let batch = sub.next_batch(100).expect("open").expect("no error");
                        assert!(!batch.is_empty() && batch.len() <= 100);
                        for envelope in batch {
                            assert_eq!(envelope.position(), expected, "subscriber {k}");
                            saw_live |= !envelope.historic();
                            expected += 1;
                        }
                    } else {
                        let envelope = sub.next().expect("open").expect("no error");
                        assert_eq!(envelope.position(), expected, "subscriber {k}");
                        if expected < 2000 {
                            assert!(envelope.historic(), "appended before subscribing: historic");
                        }
                        saw_live |= !envelope.historic();
                        expected += 1;
                    }
                }
                saw_live
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    assert_eq!(store.durable_position(), total);
    for subscriber in subscribers {
        subscriber.join().expect("every position exactly once, in order");
    }
    store.close().unwrap();
}

#[test]
fn a_slow_subscriber_turns_historic_again_and_never_holds_up_the_writer() {
    let _watchdog = watchdog("a_slow_subscriber_turns_historic_again_and_never_holds_up_the_writer", 60);
    let dir = temp_dir("sub-slow");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    append(&store, "s", "A");
    let mut sub = store.subscribe_all(0).unwrap();
    assert!(next(&mut sub).historic());
    append(&store, "s", "A");
    assert!(!next(&mut sub).historic(), "caught up: live");
    // The subscriber does not read while the writer appends far more than LIVE_LAG_GROUPS_MAX
    // groups (each append is waited for: a group each): every append completes (the writer never
    // waits for a subscriber).
    let behind = (LIVE_LAG_GROUPS_MAX + 10) * 100;
    let events: Vec<_> = (0..100).map(|_| Event::new("B", "b")).collect();
    for _ in 0..behind / 100 {
        store.append("s", ExpectedVersion::Any, events.clone()).unwrap().wait().unwrap();
    }
    let mut position = 2;
    let first = next(&mut sub);
    assert_eq!(first.position(), position);
    assert!(first.historic(), "fallen {behind} events behind: historic again");
    while position + 1 < 2 + behind {
        position += 1;
        let envelope = next(&mut sub);
        assert_eq!(envelope.position(), position);
        assert!(envelope.historic());
    }
    append(&store, "s", "C");
    let live = next(&mut sub);
    assert_eq!((live.position(), live.event_type()), (2 + behind, "C"));
    assert!(!live.historic(), "caught up again: live");
    // A few groups (fewer than LIVE_LAG_GROUPS_MAX) of many events each while it does not read:
    // still live, however many events they hold.
    let big: Vec<_> = (0..900).map(|_| Event::new("D", "d")).collect();
    for _ in 0..3 {
        store.append("s", ExpectedVersion::Any, big.clone()).unwrap().wait().unwrap();
    }
    for k in 0..2700 {
        assert!(!next(&mut sub).historic(), "event {k} of 3 groups handed live");
    }
    store.close().unwrap();
}

#[test]
fn resubscribing_from_a_checkpoint_resumes_exactly_after_it() {
    let _watchdog = watchdog("resubscribing_from_a_checkpoint_resumes_exactly_after_it", 60);
    let dir = temp_dir("sub-resume");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    let tickets: Vec<_> = (0..300)
        .map(|i| {
            store.append(&format!("s-{}", i % 3), ExpectedVersion::Any, [Event::new("E", format!("{i}"))]).unwrap()
        })
        .collect();
    tickets.into_iter().for_each(|t| {
        t.wait().unwrap();
    });
    append(&store, "s-0", "E");
    let mut checkpoint = 0;
    let mut seen = Vec::new();
    for round in 0..10 {
        let mut sub = store.subscribe_all(checkpoint).unwrap();
        for _ in 0..7 + round * 3 {
            let envelope = next(&mut sub);
            seen.push(envelope.position());
            checkpoint = envelope.position() + 1;
        }
    }
    assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());

    // A stream subscription resumes from a version.
    let mut version_checkpoint = 0;
    let mut versions = Vec::new();
    for _ in 0..5 {
        let mut sub = store.subscribe_stream("s-1", version_checkpoint).unwrap();
        for _ in 0..9 {
            let envelope = next(&mut sub);
            assert_eq!(envelope.stream(), "s-1");
            versions.push(envelope.version());
            version_checkpoint = envelope.version() + 1;
        }
    }
    assert_eq!(versions, (0..45).collect::<Vec<_>>());
    store.close().unwrap();
}

#[test]
fn a_stream_subscription_hands_its_stream_only_history_then_live() {
    let _watchdog = watchdog("a_stream_subscription_hands_its_stream_only_history_then_live", 60);
    let dir = temp_dir("sub-stream");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    for i in 0..200 {
        append(&store, if i % 4 == 0 { "mine" } else { "other" }, "E");
    }
    let mut sub = store.subscribe_stream("mine", 10).unwrap();
    for version in 10..50 {
        let envelope = next(&mut sub);
        assert_eq!((envelope.stream(), envelope.version()), ("mine", version));
        assert!(envelope.historic());
    }
    // Other streams' appends wake it but hand it nothing; its own arrive live.
    let store2 = store.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..60 {
            append(&store2, if i % 3 == 0 { "mine" } else { "other" }, "L");
        }
    });
    for version in 50..70 {
        let envelope = next(&mut sub);
        assert_eq!((envelope.stream(), envelope.version(), envelope.event_type()), ("mine", version, "L"));
    }
    writer.join().unwrap();
    store.close().unwrap();
}

#[test]
fn iteration_ends_when_the_store_closes_after_every_durable_event() {
    let _watchdog = watchdog("iteration_ends_when_the_store_closes_after_every_durable_event", 30);
    let dir = temp_dir("sub-close");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    for _ in 0..10 {
        append(&store, "s", "E");
    }
    let sub = store.subscribe_all(0).unwrap();
    let stream_sub = store.subscribe_stream("s", 0).unwrap();
    let reader = std::thread::spawn(move || sub.map(|e| e.unwrap().position()).collect::<Vec<_>>());
    let stream_reader = std::thread::spawn(move || stream_sub.map(|e| e.unwrap().version()).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..5 {
        append(&store, "s", "E");
    }
    store.close().unwrap();
    assert_eq!(reader.join().unwrap(), (0..15).collect::<Vec<_>>(), "blocked while open, ends at close");
    assert_eq!(stream_reader.join().unwrap(), (0..15).collect::<Vec<_>>());
}

struct FlagWaker(AtomicBool, std::thread::Thread);

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
        self.1.unpark();
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let flag = Arc::new(FlagWaker(AtomicBool::new(false), std::thread::current()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// `futures_core::Stream::poll_next` as a future, without the `futures` crate.
struct NextItem<'a>(&'a mut Subscription);

impl Future for NextItem<'_> {
    type Output = Option<evstore::Result<Envelope>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        futures_core::Stream::poll_next(Pin::new(&mut *self.0), cx)
    }
}

#[test]
fn the_async_stream_waits_without_blocking_and_is_woken_by_new_events() {
    let _watchdog = watchdog("the_async_stream_waits_without_blocking_and_is_woken_by_new_events", 30);
    let dir = temp_dir("sub-async");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    append(&store, "s", "A");
    let mut sub = store.subscribe_all(0).unwrap();
    let first = block_on(NextItem(&mut sub)).unwrap().unwrap();
    assert!(first.historic());
    // Nothing more: the stream is pending, and a waker is registered.
    let flag = Arc::new(FlagWaker(AtomicBool::new(false), std::thread::current()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(futures_core::Stream::poll_next(Pin::new(&mut sub), &mut cx).is_pending());
    append(&store, "s", "B");
    // The ticket may resolve an instant before the submitter calls the subscription's waker.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !flag.0.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(10));
    }
    assert!(flag.0.load(Ordering::SeqCst), "the append woke the task");
    match futures_core::Stream::poll_next(Pin::new(&mut sub), &mut cx) {
        Poll::Ready(Some(Ok(envelope))) => {
            assert_eq!((envelope.position(), envelope.event_type()), (1, "B"));
            assert!(!envelope.historic());
        }
        other => panic!("expected the live event, got {other:?}"),
    }
    // The batch form, async.
    for _ in 0..3 {
        append(&store, "s", "C");
    }
    match sub.poll_next_batch(&mut cx, 10) {
        Poll::Ready(Some(Ok(batch))) => {
            assert_eq!(batch.iter().map(Envelope::position).collect::<Vec<_>>(), vec![2, 3, 4]);
        }
        other => panic!("expected a batch, got {:?}", other.map(|o| o.map(|r| r.map(<[Envelope]>::len)))),
    }
    let closer = store.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        drop(closer);
    });
    drop(store);
    assert!(block_on(NextItem(&mut sub)).is_none(), "closed: the stream ends");
}

/// While a subscription is open, live readers read recent groups from in-memory copies (at most
/// 16 MiB of them, oldest dropped): a subscriber that reads after more than that was written gets
/// the old groups from the mapping and the recent ones from memory, and both agree with the log.
#[test]
fn groups_read_from_memory_and_from_the_mapping_agree_with_the_log() {
    let _watchdog = watchdog("groups_read_from_memory_and_from_the_mapping_agree_with_the_log", 60);
    let dir = temp_dir("sub-recent");
    let store = open(dir.path(), small_options(Backend::Portable)).expect("portable opens");
    let mut sub = store.subscribe_all(0).unwrap();
    let mut stream_sub = store.subscribe_stream("big-1", 0).unwrap();
    // About 24 MiB in groups of about 60 KiB, every append waited: more than the copies kept.
    for i in 0..400u32 {
        let data = vec![(i % 251) as u8; 60_000];
        store
            .append(&format!("big-{}", i % 3), ExpectedVersion::Any, [Event::new("Big", data)])
            .unwrap()
            .wait()
            .unwrap();
    }
    let log = evstore_tests::read_all(&store);
    assert_eq!(log.len(), 400);
    for expected in &log {
        assert_eq!(&next(&mut sub).to_recorded(), expected);
    }
    for expected in log.iter().filter(|e| e.stream == "big-1") {
        assert_eq!(&next(&mut stream_sub).to_recorded(), expected);
    }
    store.close().unwrap();
}
