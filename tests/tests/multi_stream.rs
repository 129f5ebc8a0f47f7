//! Many threads appending to many streams at once: every stream must read back in version
//! order with its own data, and the log must hold positions 0..n with no gap or duplicate.
//! Half the threads share one `Store` value (one append-queue shard), the other half each use
//! their own clone (their own shard): appends through one value must keep their order either
//! way, since every append here expects the exact version its predecessor created.
//! Without this, a race in the submitter's ordering or in the watermark would go unseen by the
//! single-threaded tests.

use std::sync::Arc;

use evstore::ExpectedVersion;
use evstore_tests::{backends, event, open, payload, small_options, temp_dir, watchdog};

const THREADS: usize = 4;
const STREAMS_PER_THREAD: usize = 20;
const EVENTS_PER_STREAM: u64 = 50;

#[test]
fn concurrent_producers_keep_every_stream_in_order() {
    let _watchdog = watchdog("concurrent_producers_keep_every_stream_in_order", 120);
    for backend in backends() {
        let dir = temp_dir("multi");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        let store = Arc::new(store);
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let own_clone = (t % 2 == 0).then(|| (*store).clone());
                    let store: &evstore::Store = own_clone.as_ref().unwrap_or(&store);
                    // Interleave streams: one event per stream per pass, without waiting.
                    let mut tickets = Vec::new();
                    for version in 0..EVENTS_PER_STREAM {
                        for s in 0..STREAMS_PER_THREAD {
                            let stream = format!("t{t}-s{s}");
                            let expected = if version == 0 {
                                ExpectedVersion::NoStream
                            } else {
                                ExpectedVersion::Exact(version - 1)
                            };
                            tickets
                                .push(store.append(&stream, expected, [event(&stream, version, 7)]).expect("append"));
                        }
                    }
                    for ticket in tickets {
                        ticket.wait().expect("durable");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("producer");
        }
        for t in 0..THREADS {
            for s in 0..STREAMS_PER_THREAD {
                let stream = format!("t{t}-s{s}");
                let events: Vec<_> =
                    store.read_stream(&stream, 0).expect("read").collect::<Result<_, _>>().expect("events");
                assert_eq!(events.len() as u64, EVENTS_PER_STREAM, "{stream}");
                for (v, e) in events.iter().enumerate() {
                    assert_eq!(e.version, v as u64);
                    assert_eq!(e.data, payload(&stream, v as u64, 7));
                }
            }
        }
        let n = evstore_tests::check_log_shape(&store);
        assert_eq!(n, THREADS as u64 * STREAMS_PER_THREAD as u64 * EVENTS_PER_STREAM);
    }
}
