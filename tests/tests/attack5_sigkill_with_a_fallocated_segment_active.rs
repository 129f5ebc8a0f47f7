//! `SegmentPrepare::Auto` (the default) writes large groups into segments that were only
//! fallocated: their unwritten extents read as zeros, and recovery must take them exactly as it
//! takes zeroed ones. A writer process appends groups of 512 KiB and more (so Auto asks for
//! fallocated segments) across several rollovers and prints every append it was told is durable;
//! we SIGKILL it at a random moment, check that a segment file with unwritten extents was left
//! behind (else the test proved nothing about them), reopen with another `segment_prepare` each
//! round, and check that every acknowledged event is there, byte for byte. Without this, a
//! recovery that mistook an unwritten tail (or an unused, fallocated next segment) for damage
//! would refuse to open after a crash of the default configuration, or a reopen with other
//! options would lose what the fallocated segment held.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use evstore::{Backend, Event, ExpectedVersion, Options, SegmentPrepare, Store};
use evstore_tests::{open, seed_from_env, temp_dir, watchdog, Rng};

mod attack5_fiemap;
use attack5_fiemap::{has_unwritten_extents, segment_files};

/// Set in the child: the store directory the writer appends to.
const CHILD_DIR: &str = "EVSTORE_ATTACK5_FALLOCATED_CHILD_DIR";
const CHILD_BACKEND: &str = "EVSTORE_ATTACK5_FALLOCATED_CHILD_BACKEND";
const CHILD_GROW: &str = "EVSTORE_ATTACK5_FALLOCATED_CHILD_GROW";
const EVENT_BYTES: usize = 512 << 10;

fn options(backend: Backend, grow: bool, prepare: SegmentPrepare) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.segment_prepare = prepare;
    options.grow_segments = grow;
    options.segment_bytes = 8 << 20;
    options.group_bytes_max = 2 << 20;
    options
}

/// Event `version` of `stream`: its bytes tell which event it is, all through.
fn data(stream: &str, version: u64) -> Vec<u8> {
    let tag = (version as u8) ^ stream.bytes().fold(0x5a, |h, b| h ^ b);
    let mut bytes = vec![tag; EVENT_BYTES];
    bytes[..8].copy_from_slice(&version.to_le_bytes());
    bytes
}

/// The writer, run in a child process by the test below (a no-op when run as a test on its own):
/// two threads, each appending runs of two 512 KiB events to its stream (groups of 512 KiB to
/// 1 MiB: each event makes a group due on its own) and waiting for them, printing
/// `ACK stream version position` for each event.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let backend =
        if std::env::var(CHILD_BACKEND).as_deref() == Ok("io-uring") { Backend::IoUring } else { Backend::Portable };
    let grow = std::env::var(CHILD_GROW).as_deref() == Ok("1");
    let store = Store::open(Path::new(&dir), options(backend, grow, SegmentPrepare::Auto)).expect("child open");
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let stream = format!("big-{t}");
                let mut version = store.stream_version(&stream).map_or(0, |v| v + 1);
                loop {
                    let tickets: Vec<_> = (0..2)
                        .map(|k| {
                            let event = Event::new("Big", data(&stream, version + k));
                            store.append(&stream, ExpectedVersion::Any, [event]).expect("child append")
                        })
                        .collect();
                    for (k, ticket) in tickets.into_iter().enumerate() {
                        let appended = ticket.wait().expect("child wait");
                        assert_eq!(appended.version, version + k as u64);
                        println!("ACK {stream} {} {}", appended.version, appended.position);
                    }
                    version += 2;
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

#[test]
fn acknowledged_large_groups_in_fallocated_segments_survive_sigkill() {
    let _watchdog = watchdog("acknowledged_large_groups_in_fallocated_segments_survive_sigkill", 240);
    let seed = seed_from_env("EVSTORE_ATTACK5_SEED");
    let mut rng = Rng::new(seed);
    let uring = {
        let probe = temp_dir("attack5-probe");
        open(probe.path(), options(Backend::IoUring, false, SegmentPrepare::Auto)).is_some_and(|s| s.close().is_ok())
    };
    let prepares = [SegmentPrepare::Zeroed, SegmentPrepare::Fallocated, SegmentPrepare::Auto];
    let mut unwritten_seen = 0;
    for grow in [false, true] {
        let dir = temp_dir("attack5-fallocated-sigkill");
        // (stream, version) -> position of every acknowledged event, in every round so far.
        let mut acked: std::collections::HashMap<(String, u64), u64> = Default::default();
        for round in 0..4 {
            let writer = if uring && round % 2 == 0 { "io-uring" } else { "portable" };
            let mut child = Command::new(std::env::current_exe().expect("test binary"))
                .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_DIR, dir.path())
                .env(CHILD_BACKEND, writer)
                .env(CHILD_GROW, if grow { "1" } else { "0" })
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn the writer");
            std::thread::sleep(Duration::from_millis(200 + rng.below(400)));
            child.kill().expect("SIGKILL the writer");
            let mut output = String::new();
            child.stdout.take().expect("stdout").read_to_string(&mut output).expect("read acks");
            child.wait().expect("reap the writer");
            let mut round_acks = 0;
            for line in output.lines() {
                let parts: Vec<&str> = line.split(' ').collect();
                if parts.len() == 4 && parts[0] == "ACK" {
                    if let (Ok(version), Ok(position)) = (parts[2].parse::<u64>(), parts[3].parse::<u64>()) {
                        acked.insert((parts[1].to_string(), version), position);
                        round_acks += 1;
                    }
                }
            }
            let unwritten: Vec<_> = segment_files(dir.path())
                .into_iter()
                .filter(|path| has_unwritten_extents(path) == Some(true))
                .collect();
            unwritten_seen += unwritten.len();
            let prepare = prepares[round % prepares.len()];
            let checker = if uring && round % 2 == 1 { Backend::IoUring } else { Backend::Portable };
            println!(
                "grow {grow}, round {round}: {writer} writer, {round_acks} acknowledged events, {} segment files \
                 with unwritten extents; reopened with {prepare:?} on {checker:?}",
                unwritten.len()
            );
            let store = Store::open(dir.path(), options(checker, grow, prepare)).unwrap_or_else(|e| {
                panic!("grow {grow}, round {round}: reopen after the kill failed (unwritten: {unwritten:?}): {e}")
            });
            // One pass over the log, without holding it in memory: positions and versions
            // contiguous, every event's bytes its own, and where each one is.
            let mut found: std::collections::HashMap<(String, u64), u64> = Default::default();
            let mut versions: std::collections::HashMap<String, u64> = Default::default();
            let mut n = 0u64;
            for event in store.read_all(0).expect("read_all") {
                let event = event.unwrap_or_else(|e| panic!("grow {grow}, round {round}: read_all: {e}"));
                assert_eq!(event.position, n, "grow {grow}, round {round}: positions are contiguous");
                let next = versions.entry(event.stream.clone()).or_insert(0);
                assert_eq!(
                    event.version, *next,
                    "grow {grow}, round {round}: versions of {} are contiguous",
                    event.stream
                );
                *next += 1;
                assert!(
                    event.data == data(&event.stream, event.version),
                    "grow {grow}, round {round}: the bytes of {}@{} differ",
                    event.stream,
                    event.version
                );
                found.insert((event.stream, event.version), event.position);
                n += 1;
            }
            assert_eq!(
                store.durable_position(),
                n,
                "grow {grow}, round {round}: read_all ends at the durable position"
            );
            for ((stream, version), position) in &acked {
                assert_eq!(
                    found.get(&(stream.clone(), *version)),
                    Some(position),
                    "grow {grow}, round {round}: acknowledged {stream}@{version} at {position} is lost or moved (log ends at {n})"
                );
            }
            // The store goes on where the writer stopped, with this round's preparation.
            for k in 0..3 {
                let stream = "between-rounds";
                let version = store.stream_version(stream).map_or(0, |v| v + 1);
                let appended = store
                    .append(stream, ExpectedVersion::Any, [Event::new("Big", data(stream, version))])
                    .expect("append")
                    .wait()
                    .unwrap_or_else(|e| panic!("grow {grow}, round {round}: append {k} after reopen: {e}"));
                acked.insert((stream.to_string(), appended.version), appended.position);
            }
            store.close().expect("close");
        }
        assert!(acked.len() > 20, "grow {grow}: the writer hardly acknowledged anything");
    }
    assert!(unwritten_seen > 0, "no segment with unwritten extents was ever left: Auto never fallocated one here");
}
