//! Helper process for tests/crash.rs: appends from several threads until it is killed, and
//! prints one line per append it was told is durable:
//! `ACK <stream> <first version> <count> <position>`.
//!
//! Usage: crash_writer <dir> <seed> <threads> <io-uring|portable>
//! Streams are named `r<seed>-t<thread>-<k>`; an append at version v carries
//! `append_count(stream, v)` events with `payload(stream, version, seed)` data, so a checker can
//! recompute every byte and every append boundary.

use std::io::Write as _;

use evstore::{Backend, ExpectedVersion};
use evstore_tests::{append_count, event, small_options};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(args.len(), 5, "usage: crash_writer <dir> <seed> <threads> <io-uring|portable>");
    let dir = &args[1];
    let seed: u64 = args[2].parse().expect("seed");
    let threads: usize = args[3].parse().expect("threads");
    let backend = if args[4] == "portable" { Backend::Portable } else { Backend::IoUring };
    let store = evstore::Store::open(dir, small_options(backend)).expect("open");
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                for k in 0.. {
                    let stream = format!("r{seed}-t{thread}-{k}");
                    let mut version = 0u64;
                    // A few appends per stream, then the next stream.
                    for _ in 0..8 {
                        let count = append_count(&stream, version);
                        let expected =
                            if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version - 1) };
                        let events: Vec<_> = (0..count).map(|i| event(&stream, version + i, seed)).collect();
                        let appended =
                            store.append(&stream, expected, events).expect("append").wait().expect("durable");
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {stream} {version} {count} {}", appended.position).expect("stdout");
                        out.flush().expect("stdout");
                        version += count;
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}
