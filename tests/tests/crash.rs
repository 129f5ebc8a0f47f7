//! Crash safety with real processes: a writer appends multi-event appends from several threads
//! and prints every append it was told is durable; we SIGKILL it at a random moment, reopen, and
//! check that every append ever acknowledged (in this round or an earlier one) is there, byte for
//! byte, at its position and versions, that positions and versions are contiguous, and that every
//! multi-event append is all or nothing. Without this, an engine that acknowledged before the data
//! was durable, reordered acknowledgements, recovered a torn group as valid, or cut too much of
//! the tail would pass every in-process test. The same directory is reused across rounds and the
//! writer continues its streams from the recovered versions, so recovery of an already recovered
//! log is exercised too; rounds alternate io_uring and portable, for the writer and the checker.

use std::collections::HashMap;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use evstore::{Backend, Error, Store};
use evstore_tests::{append_count, check_log_shape, payload, read_all, seed_from_env, small_options, temp_dir, Rng};

const ROUNDS: usize = 24;
const WRITER_THREADS: &str = "3";

struct Ack {
    stream: String,
    first_version: u64,
    count: u64,
    position: u64,
}

/// The ACK lines of the writer's output; panics on an ERR line (the writer refused or failed an
/// append on its own, which is an engine failure, not the kill).
fn parse_acks(round: usize, output: &str) -> Vec<Ack> {
    let mut acks = Vec::new();
    for line in output.lines() {
        if let Some(message) = line.strip_prefix("ERR ") {
            panic!("round {round}: the writer failed before it was killed: {message}");
        }
        let parts: Vec<&str> = line.split(' ').collect();
        // The last line may be cut short by the kill.
        let parsed = (|| {
            if parts.len() != 5 || parts[0] != "ACK" {
                return None;
            }
            Some(Ack {
                stream: parts[1].to_string(),
                first_version: parts[2].parse().ok()?,
                count: parts[3].parse().ok()?,
                position: parts[4].parse().ok()?,
            })
        })();
        acks.extend(parsed);
    }
    acks
}

fn io_uring_works() -> bool {
    let dir = temp_dir("crash-probe");
    match Store::open(dir.path(), small_options(Backend::IoUring)) {
        Ok(store) => store.close().is_ok(),
        Err(Error::IoUringUnavailable { errno }) => {
            let cause = std::io::Error::from_raw_os_error(errno);
            println!("skipped io_uring: unavailable here ({cause}); every round uses the portable backend");
            false
        }
        Err(e) => panic!("probe open: {e}"),
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let _watchdog = evstore_tests::watchdog("acknowledged_appends_survive_sigkill", 300);
    let seed = seed_from_env("EVSTORE_CRASH_SEED");
    let mut rng = Rng::new(seed);
    let uring = io_uring_works();
    let dir = temp_dir("crash");
    let mut acks: Vec<Ack> = Vec::new();
    for round in 0..ROUNDS {
        let (writer, checker) = match (uring, round % 2 == 0) {
            (true, true) => ("io-uring", Backend::Portable),
            (true, false) => ("portable", Backend::IoUring),
            (false, _) => ("portable", Backend::Portable),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .args([dir.path().to_str().expect("utf-8 path"), &seed.to_string(), WRITER_THREADS, writer])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn crash_writer");
        std::thread::sleep(Duration::from_millis(20 + rng.below(280)));
        child.kill().expect("SIGKILL the writer");
        let mut output = String::new();
        child.stdout.take().expect("stdout").read_to_string(&mut output).expect("read acks");
        child.wait().expect("reap the writer");
        let round_acks = parse_acks(round, &output);
        println!("round {round}: {writer} writer, {} acknowledged appends", round_acks.len());
        acks.extend(round_acks);

        let store = evstore::Store::open(dir.path(), small_options(checker))
            .unwrap_or_else(|e| panic!("round {round}: reopen after the kill failed: {e}"));
        // Positions 0..n, versions from 0 without gaps, both read paths agree.
        let n = check_log_shape(&store);
        let log = read_all(&store);
        assert_eq!(log.len() as u64, n);
        // Every event in the log is intact.
        let mut lengths: HashMap<&str, u64> = HashMap::new();
        for event in &log {
            assert_eq!(
                event.data,
                payload(&event.stream, event.version, seed),
                "round {round}: bytes of {}@{} at position {} differ",
                event.stream,
                event.version,
                event.position
            );
            *lengths.entry(event.stream.as_str()).or_insert(0) += 1;
        }
        // Every append is whole: each stream ends on an append boundary.
        for (stream, len) in &lengths {
            let mut version = 0;
            while version < *len {
                version += append_count(stream, version);
            }
            assert_eq!(version, *len, "round {round}: stream {stream} ends inside a multi-event append ({len} events)");
        }
        // Every append acknowledged so far, in any round, is there at its position.
        for ack in &acks {
            for i in 0..ack.count {
                let version = ack.first_version + i;
                let position = ack.position + i;
                let event = log.get(position as usize).unwrap_or_else(|| {
                    panic!(
                        "round {round}: acknowledged {}@{version} at position {position} is lost (log ends at {n})",
                        ack.stream
                    )
                });
                assert_eq!(
                    (event.stream.as_str(), event.version),
                    (ack.stream.as_str(), version),
                    "round {round}: position {position} holds another event than was acknowledged"
                );
            }
        }
        store.close().expect("close");
    }
    println!("{ROUNDS} rounds, {} acknowledged appends checked", acks.len());
    assert!(acks.len() >= ROUNDS, "the writer hardly acknowledged anything: the test checked next to nothing");
}
