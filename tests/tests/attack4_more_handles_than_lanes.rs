//! At most 128 lanes exist per store; past that, handles share lanes (one producer at a time
//! per lane). Without care, two handles on one lane would interleave their encoding in the ring,
//! one handle's ticket would read the other's result slot, or the cross-lane order of a stream
//! would break. Here 200 threads with a handle each, and 16 threads sharing one handle through
//! an `Arc<Store>`, append concurrently, each to its own stream with exact expected versions
//! (any reordering or lost append fails one) and to one shared stream; every ticket must
//! report its own event.

use std::sync::Arc;

use evstore::{Backend, Event, ExpectedVersion, Store};
use evstore_tests::{check_log_shape, open, read_stream, small_options, temp_dir, watchdog};

const OWN_THREADS: usize = 200;
const SHARING_THREADS: usize = 16;
const APPENDS: u64 = 150;

fn producer(store: &Store, name: String) -> u64 {
    let mut tickets = Vec::new();
    for v in 0..APPENDS {
        let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v - 1) };
        let ticket = store.append(&name, expected, [Event::new("Own", format!("{name}:{v}"))]).expect("append");
        tickets.push((v, ticket));
        drop(store.append("shared", ExpectedVersion::Any, [Event::new("Shared", name.clone())]).expect("append"));
        if v % 10 == 9 {
            for (v, ticket) in tickets.drain(..) {
                let appended = ticket.wait().unwrap_or_else(|e| panic!("{name} v{v}: {e}"));
                assert_eq!(appended.version, v, "{name}: a ticket reports another append");
            }
        }
    }
    for (v, ticket) in tickets {
        assert_eq!(ticket.wait().expect("durable").version, v);
    }
    APPENDS
}

#[test]
fn handles_past_the_lane_limit_keep_every_append_and_its_order() {
    let _watchdog = watchdog("handles_past_the_lane_limit_keep_every_append_and_its_order", 300);
    for backend in [Backend::IoUring, Backend::Portable] {
        let dir = temp_dir("attack4-many-handles");
        let mut options = small_options(backend);
        options.segment_bytes = 32 << 20;
        options.queue_bytes = 64 << 10;
        let Some(store) = open(dir.path(), options) else { continue };
        let shared_handle = Arc::new(store.clone());
        let mut threads = Vec::new();
        for t in 0..OWN_THREADS {
            let handle = store.clone();
            threads.push(std::thread::spawn(move || producer(&handle, format!("own-{t}"))));
        }
        for t in 0..SHARING_THREADS {
            let handle = shared_handle.clone();
            threads.push(std::thread::spawn(move || producer(&handle, format!("sharing-{t}"))));
        }
        let total: u64 = threads.into_iter().map(|t| t.join().expect("producer")).sum();
        for t in 0..OWN_THREADS {
            let name = format!("own-{t}");
            let events = read_stream(&store, &name);
            assert_eq!(events.len() as u64, APPENDS, "{name}");
            for (v, e) in events.iter().enumerate() {
                assert_eq!(e.data, format!("{name}:{v}").into_bytes());
            }
        }
        assert_eq!(read_stream(&store, "shared").len() as u64, total);
        assert_eq!(check_log_shape(&store), 2 * total);
        drop(shared_handle);
        store.close().expect("close");
    }
}
