//! Crash safety with real processes: a writer appends from several threads and prints every
//! append it was told is durable; we SIGKILL it at a random moment, reopen, and check that
//! every acknowledged event is there, byte for byte, in order, with contiguous versions, and
//! that every multi-event append is all or nothing. Without this, an engine that acknowledged
//! before the data was durable, reordered acknowledgements, or recovered a torn group as valid
//! would pass every in-process test. The same directory is reused across rounds, so recovery
//! of an already recovered log is exercised too; rounds alternate io_uring and portable.

use std::collections::HashMap;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use evstore::Backend;
use evstore_tests::{append_count, payload, seed_from_env, small_options, temp_dir, Rng};

const ROUNDS: usize = 24;

struct Ack {
    stream: String,
    first_version: u64,
    count: u64,
    position: u64,
}

fn parse_acks(output: &str) -> Vec<Ack> {
    output
        .lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() != 5 || parts[0] != "ACK" {
                return None; // the last line may be cut by the kill
            }
            Some(Ack {
                stream: parts[1].to_string(),
                first_version: parts[2].parse().ok()?,
                count: parts[3].parse().ok()?,
                position: parts[4].parse().ok()?,
            })
        })
        .collect()
}

/// The seed a stream was written with: streams are named r<seed>-t<thread>-<k>.
fn stream_seed(stream: &str) -> u64 {
    stream[1..stream.find('-').expect("stream name")].parse().expect("seed in stream name")
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let seed = seed_from_env("EVSTORE_CRASH_SEED");
    let mut rng = Rng::new(seed);
    let dir = temp_dir("crash");
    let mut total_acks = 0usize;
    for round in 0..ROUNDS {
        let round_seed = rng.next() >> 1;
        let backend = if round % 2 == 0 { "io-uring" } else { "portable" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .args([dir.path().to_str().expect("utf-8 path"), &round_seed.to_string(), "3", backend])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn crash_writer");
        std::thread::sleep(Duration::from_millis(20 + rng.below(280)));
        child.kill().expect("SIGKILL the writer");
        let mut output = String::new();
        child.stdout.take().expect("stdout").read_to_string(&mut output).expect("read acks");
        child.wait().expect("reap the writer");
        let acks = parse_acks(&output);
        total_acks += acks.len();

        let options = small_options(if round % 2 == 0 { Backend::Portable } else { Backend::IoUring });
        let store =
            evstore::Store::open(dir.path(), options).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        // Every acknowledged append is there, byte for byte, at its position.
        for ack in &acks {
            let events: Vec<_> = store
                .read_stream(&ack.stream, ack.first_version)
                .expect("read_stream")
                .take(ack.count as usize)
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("round {round}: reading {}: {e}", ack.stream));
            assert_eq!(events.len() as u64, ack.count, "round {round}: acknowledged append of {} lost", ack.stream);
            for (i, event) in events.iter().enumerate() {
                let version = ack.first_version + i as u64;
                assert_eq!(event.version, version);
                assert_eq!(
                    event.position,
                    ack.position + i as u64,
                    "round {round}: position of {}@{version}",
                    ack.stream
                );
                assert_eq!(
                    event.data,
                    payload(&ack.stream, version, stream_seed(&ack.stream)),
                    "round {round}: bytes differ"
                );
            }
        }
        // Every event in the log is intact and every append is whole.
        let mut streams: HashMap<String, u64> = HashMap::new();
        for event in store.read_all(0).expect("read_all") {
            let event = event.unwrap_or_else(|e| panic!("round {round}: read_all: {e}"));
            *streams.entry(event.stream.clone()).or_insert(0) += 1;
            assert_eq!(
                event.data,
                payload(&event.stream, event.version, stream_seed(&event.stream)),
                "round {round}: bytes differ"
            );
        }
        for (stream, len) in &streams {
            let mut version = 0;
            while version < *len {
                version += append_count(stream, version);
            }
            assert_eq!(version, *len, "round {round}: stream {stream} ends inside an append ({len} events)");
        }
        evstore_tests::check_log_shape(&store);
        store.close().expect("close");
    }
    println!("{ROUNDS} rounds, {total_acks} acknowledged appends checked");
    assert!(total_acks > 0, "the writer never acknowledged anything: the test checked nothing");
}
