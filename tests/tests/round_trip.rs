//! The basic promise: what was appended and acknowledged reads back exactly, through both read
//! paths, with the positions and versions the tickets reported; and a ticket works both as a
//! blocking `wait()` and as a `Future`. Without this, nothing else matters.

use evstore::{Error, Event, ExpectedVersion};
use evstore_tests::{backends, block_on, open, small_options, temp_dir, watchdog};

#[test]
fn appended_events_read_back_exactly() {
    let _watchdog = watchdog("appended_events_read_back_exactly", 30);
    for backend in backends() {
        let dir = temp_dir("round-trip");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        let first = store
            .append(
                "users/42",
                ExpectedVersion::Any,
                [Event::new("ItemCreated", br#"{"ItemId":"1324"}"#.to_vec()).with_metadata(b"meta".to_vec())],
            )
            .expect("append")
            .wait()
            .expect("durable");
        assert_eq!((first.position, first.version), (0, 0));
        let second = store
            .append(
                "users/42",
                ExpectedVersion::Exact(0),
                [Event::new("ItemRenamed", b"a".to_vec()), Event::new("ItemDeleted", Vec::new())],
            )
            .expect("append")
            .wait()
            .expect("durable");
        assert_eq!((second.position, second.version), (1, 2), "position of the first event, version of the last");

        let events: Vec<_> = store.read_stream("users/42", 0).expect("read").collect::<Result<_, _>>().expect("events");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event_type, "ItemCreated");
        assert_eq!(events[0].data, br#"{"ItemId":"1324"}"#);
        assert_eq!(events[0].metadata, b"meta");
        assert_eq!(events[0].stream, "users/42");
        assert_eq!(events[1].event_type, "ItemRenamed");
        assert_eq!(events[2].data, b"");
        assert_eq!(events.iter().map(|e| (e.position, e.version)).collect::<Vec<_>>(), vec![(0, 0), (1, 1), (2, 2)]);
        assert!(events[0].timestamp_us > 0);

        let from_one: Vec<_> =
            store.read_stream("users/42", 1).expect("read").map(|e| e.expect("event").version).collect();
        assert_eq!(from_one, vec![1, 2]);
        let all: Vec<_> = store.read_all(1).expect("read_all").map(|e| e.expect("event").position).collect();
        assert_eq!(all, vec![1, 2]);
        assert_eq!(store.read_stream("nobody", 0).expect("read").count(), 0, "an unknown stream reads as empty");
        assert_eq!(store.stream_version("users/42"), Some(2));
        assert_eq!(store.stream_version("nobody"), None);
        assert_eq!(store.durable_position(), 3);
        assert_eq!(store.backend(), backend);
        store.close().expect("close");
    }
}

#[test]
fn tickets_are_futures() {
    let _watchdog = watchdog("tickets_are_futures", 30);
    for backend in backends() {
        let dir = temp_dir("future");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        let tickets: Vec<_> = (0..100)
            .map(|i| store.append("async", ExpectedVersion::Any, [Event::new("E", vec![i as u8])]).expect("append"))
            .collect();
        let versions: Vec<u64> = tickets.into_iter().map(|ticket| block_on(ticket).expect("durable").version).collect();
        assert_eq!(versions, (0..100).collect::<Vec<u64>>());
        // A refused append resolves too, through the same waker path.
        let refused = store.append("async", ExpectedVersion::NoStream, [Event::new("E", vec![0])]).expect("append");
        match block_on(refused) {
            Err(Error::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, Some(99)),
            other => panic!("a refused append's future resolved to {other:?}"),
        }
        let data: Vec<u8> = store.read_stream("async", 0).expect("read").map(|e| e.expect("event").data[0]).collect();
        assert_eq!(data, (0..100).map(|i| i as u8).collect::<Vec<_>>());
    }
}
