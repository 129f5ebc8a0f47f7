//! Helper process for tests/crash.rs: appends from several threads until it is killed, and
//! prints one line per append it was told is durable:
//! `ACK <stream> <first version> <count> <position>`.
//!
//! Usage: crash_writer <dir> <seed> <threads> <io-uring|portable>
//!
//! Thread `t` writes streams `s<t>-<k>` (k < STREAMS_PER_THREAD), which live on across runs:
//! each run continues every stream from the version recovered on disk. An append starting at
//! version v carries `append_count(stream, v)` events with `payload(stream, version, seed)` data,
//! so a checker that knows the seed can recompute every byte and every append boundary. Any
//! failure is printed as `ERR <message>` and ends the process, so the test can tell a refused
//! append from a kill.

use std::io::Write as _;
use std::process::exit;

use evstore::{Backend, ExpectedVersion, Store};
use evstore_tests::{append_count, event, small_options, Rng};

const STREAMS_PER_THREAD: u64 = 16;

fn fail(message: String) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ERR {message}");
    let _ = out.flush();
    exit(2)
}

fn write(store: &Store, seed: u64, thread: u64) {
    // The versions this thread's streams have on disk; nobody else writes them.
    let mut versions: Vec<u64> =
        (0..STREAMS_PER_THREAD).map(|k| store.stream_version(&format!("s{thread}-{k}")).map_or(0, |v| v + 1)).collect();
    // Vary which streams get the appends from run to run (the durable position differs).
    let mut rng = Rng::new(seed ^ store.durable_position().wrapping_mul(31) ^ thread);
    loop {
        let k = rng.below(STREAMS_PER_THREAD);
        let stream = format!("s{thread}-{k}");
        let version = versions[k as usize];
        let count = append_count(&stream, version);
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version - 1) };
        let events: Vec<_> = (0..count).map(|i| event(&stream, version + i, seed)).collect();
        let appended = match store.append(&stream, expected, events).and_then(|ticket| ticket.wait()) {
            Ok(appended) => appended,
            Err(e) => fail(format!("append to {stream} at version {version}: {e}")),
        };
        if appended.version != version + count - 1 {
            fail(format!("append to {stream} at version {version} reported version {}", appended.version));
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {stream} {version} {count} {}", appended.position).expect("stdout");
        out.flush().expect("stdout");
        versions[k as usize] += count;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: crash_writer <dir> <seed> <threads> <io-uring|portable>");
        exit(1);
    }
    let dir = &args[1];
    let seed: u64 = args[2].parse().expect("seed");
    let threads: u64 = args[3].parse().expect("threads");
    let backend = match args[4].as_str() {
        "io-uring" => Backend::IoUring,
        "portable" => Backend::Portable,
        other => fail(format!("unknown backend {other}")),
    };
    let mut options = small_options(backend);
    // tests/tests/attack_sigkill_during_background_checkpoints.rs: checkpoints all the time.
    if let Some(bytes) = std::env::var("EVSTORE_CHECKPOINT_LOG_BYTES").ok().and_then(|v| v.parse().ok()) {
        options.checkpoint_log_bytes = bytes;
    }
    let store = Store::open(dir, options).unwrap_or_else(|e| fail(format!("open: {e}")));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || write(&store, seed, thread))
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}
