//! With `linger` = 1 s, appends nobody waits on stay in their lanes. Closing the store (or
//! dropping its last handle) must still place and write every one of them: `close()` returns
//! Ok, every ticket kept past the close resolves Ok, and after reopening every acknowledged
//! event is there, in each handle's call order. Handles on many threads (more than the 128
//! lanes, so some share one), some tickets dropped, some kept; the last handle dropped on another
//! thread; a close that races appends still being made (each then either acknowledged, and kept,
//! or refused with `Closed`, never hanging). Both backends, and polling mode.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use evstore::{Backend, Error, Event, ExpectedVersion, Options, Store, Ticket};
use evstore_tests::{backends, open, read_stream, temp_dir, watchdog};

const THREADS: usize = 6;
const HANDLES_PER_THREAD: usize = 24;
const APPENDS_PER_HANDLE: usize = 8;

fn options(backend: Backend, polling: bool) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.linger = Duration::from_secs(1);
    options.polling = polling;
    options.queue_bytes = 64 << 10;
    options.segment_bytes = 4 << 20;
    options.group_bytes_max = 64 << 10;
    options.grow_segments = false;
    options
}

/// Appends through `THREADS x HANDLES_PER_THREAD` handles (past the 128 lanes) without waiting;
/// returns the tickets kept (every other one) with their stream and index.
fn fill_lanes(store: &Store) -> Vec<(Ticket, String, usize)> {
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let handles: Vec<Store> = (0..HANDLES_PER_THREAD).map(|_| store.clone()).collect();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..APPENDS_PER_HANDLE {
                    for (h, handle) in handles.iter().enumerate() {
                        let stream = format!("t{t}h{h}");
                        let ticket = handle
                            .append(&stream, ExpectedVersion::Any, [Event::new("E", format!("{i}"))])
                            .expect("append");
                        if (i + h) % 2 == 0 {
                            kept.push((ticket, stream, i));
                        }
                    }
                }
                kept
            })
        })
        .collect();
    threads.into_iter().flat_map(|thread| thread.join().expect("producer")).collect()
}

fn check_reopened(dir: &std::path::Path, backend: Backend, what: &str) {
    let store = open(dir, options(backend, false)).expect("reopen");
    for t in 0..THREADS {
        for h in 0..HANDLES_PER_THREAD {
            let stream = format!("t{t}h{h}");
            let events = read_stream(&store, &stream);
            assert_eq!(events.len(), APPENDS_PER_HANDLE, "{what}: {stream} after reopening");
            for (i, event) in events.iter().enumerate() {
                assert_eq!(event.data, format!("{i}").into_bytes(), "{what}: {stream} event {i}");
            }
        }
    }
    store.close().expect("close the reopened store");
}

#[test]
fn close_writes_every_append_left_in_the_lanes() {
    let _watchdog = watchdog("close_writes_every_append_left_in_the_lanes", 60);
    for backend in backends() {
        for polling in [false, true] {
            let what = format!("{backend:?}, polling {polling}, close");
            let dir = temp_dir("attack6-close-lanes");
            let Some(store) = open(dir.path(), options(backend, polling)) else { continue };
            let kept = fill_lanes(&store);
            store.close().unwrap_or_else(|e| panic!("{what}: close: {e}"));
            for (ticket, stream, i) in kept {
                let appended = ticket.wait().unwrap_or_else(|e| panic!("{what}: {stream} {i}: {e}"));
                assert_eq!(appended.version, i as u64, "{what}: {stream} {i}");
            }
            check_reopened(dir.path(), backend, &what);
        }
    }
}

#[test]
fn dropping_the_last_handle_on_another_thread_writes_every_append_left_in_the_lanes() {
    let _watchdog = watchdog("dropping_the_last_handle_on_another_thread_writes_every_append_left_in_the_lanes", 60);
    for backend in backends() {
        let what = format!("{backend:?}, last handle dropped");
        let dir = temp_dir("attack6-drop-lanes");
        let Some(store) = open(dir.path(), options(backend, false)) else { continue };
        let kept = fill_lanes(&store);
        std::thread::spawn(move || drop(store)).join().expect("drop");
        for (ticket, stream, i) in kept {
            let appended = ticket.wait().unwrap_or_else(|e| panic!("{what}: {stream} {i}: {e}"));
            assert_eq!(appended.version, i as u64, "{what}: {stream} {i}");
        }
        check_reopened(dir.path(), backend, &what);
    }
}

#[test]
fn a_close_racing_appends_keeps_every_acknowledged_one() {
    let _watchdog = watchdog("a_close_racing_appends_keeps_every_acknowledged_one", 60);
    for backend in backends() {
        let dir = temp_dir("attack6-close-race");
        let Some(store) = open(dir.path(), options(backend, false)) else { continue };
        let start = Arc::new(Barrier::new(5));
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let store = store.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut tickets = Vec::new();
                    for i in 0..100_000usize {
                        match store.append(&format!("p{p}"), ExpectedVersion::Any, [Event::new("E", format!("{i}"))]) {
                            Ok(ticket) => tickets.push((ticket, i)),
                            Err(Error::Closed) => break,
                            Err(e) => panic!("p{p} append {i}: {e}"),
                        }
                    }
                    // Acknowledged appends form a prefix: a lane is placed in order.
                    let mut acknowledged = 0;
                    for (ticket, i) in tickets {
                        match ticket.wait() {
                            Ok(appended) => {
                                assert_eq!(i, acknowledged, "p{p}: append {i} acknowledged after a refused one");
                                assert_eq!(appended.version, i as u64, "p{p} append {i}");
                                acknowledged += 1;
                            }
                            Err(Error::Closed) => {}
                            Err(e) => panic!("p{p} append {i}: {e}"),
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        start.wait();
        std::thread::sleep(Duration::from_millis(30));
        store.clone().close().expect("close");
        let acknowledged: Vec<usize> = producers.into_iter().map(|p| p.join().expect("producer")).collect();
        drop(store);
        let store = open(dir.path(), options(backend, false)).expect("reopen");
        for (p, count) in acknowledged.iter().enumerate() {
            let events = read_stream(&store, &format!("p{p}"));
            assert!(
                events.len() >= *count,
                "{backend:?}: p{p}: {count} acknowledged, {} after reopening",
                events.len()
            );
            for (i, event) in events.iter().enumerate() {
                assert_eq!(event.data, format!("{i}").into_bytes(), "{backend:?}: p{p} event {i}");
            }
        }
        println!("{backend:?}: acknowledged before the close: {acknowledged:?}");
        store.close().expect("close");
    }
}
