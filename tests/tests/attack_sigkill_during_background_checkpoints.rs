//! SIGKILL while background index checkpoints are being written all the time (the crash writer
//! with `checkpoint_log_bytes` = 8 KiB, so the checkpointer thread is almost always writing one,
//! across segment rollovers of 1 MiB segments): the reopened store must answer exactly as a
//! full scan of the same files (the same directory without its checkpoint) does: read_all,
//! every stream's version and read_stream, and appends that continue the streams.
//! A checkpoint half written, renamed over, or covering a group that the kill then cut, must
//! never be trusted in part.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use evstore::{Backend, RecordedEvent, Store};
use evstore_tests::{check_log_shape, read_all, read_stream, seed_from_env, small_options, temp_dir, watchdog, Rng};

const ROUNDS: usize = 12;

fn copy_dir_without_checkpoint(source: &Path, target: &Path) {
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.is_file() && name.ends_with(".evs") {
            std::fs::copy(&path, target.join(&name)).unwrap();
        }
    }
}

/// Every stream's name, version and events.
type StreamAnswers = Vec<(String, Option<u64>, Vec<RecordedEvent>)>;

fn answers(store: &Store) -> (Vec<RecordedEvent>, StreamAnswers) {
    let log = read_all(store);
    let mut streams: Vec<String> = log.iter().map(|e| e.stream.clone()).collect();
    streams.sort();
    streams.dedup();
    let per_stream =
        streams.into_iter().map(|s| (s.clone(), store.stream_version(&s), read_stream(store, &s))).collect();
    (log, per_stream)
}

#[test]
fn sigkill_while_background_checkpoints_are_written_answers_as_a_full_scan() {
    let _watchdog = watchdog("sigkill_while_background_checkpoints_are_written_answers_as_a_full_scan", 300);
    let seed = seed_from_env("EVSTORE_ATTACK_SEED");
    let mut rng = Rng::new(seed);
    let dir = temp_dir("attack-kill-checkpoint");
    let mut checkpoints_seen = 0;
    let mut previous = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .args([dir.path().to_str().unwrap(), &seed.to_string(), "3", "portable"])
            .env("EVSTORE_CHECKPOINT_LOG_BYTES", "8192")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn crash_writer");
        std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
        child.kill().expect("SIGKILL");
        let mut output = String::new();
        child.stdout.take().unwrap().read_to_string(&mut output).unwrap();
        child.wait().unwrap();
        assert!(!output.contains("ERR "), "round {round}: the writer failed: {output:.2000}");
        let covered = std::fs::read(dir.path().join("index.checkpoint"))
            .ok()
            .map(|bytes| u64::from_le_bytes(bytes[32..40].try_into().unwrap()));

        let scanned = temp_dir("attack-kill-checkpoint-scan");
        copy_dir_without_checkpoint(dir.path(), scanned.path());
        let full = Store::open(scanned.path(), small_options(Backend::Portable)).expect("full scan opens");
        let expected = answers(&full);
        full.close().unwrap();

        let store = Store::open(dir.path(), small_options(Backend::Portable))
            .unwrap_or_else(|e| panic!("round {round}: reopen with the checkpoint failed: {e}"));
        check_log_shape(&store);
        let got = answers(&store);
        assert_eq!(got.0.len(), expected.0.len(), "round {round}: events");
        assert!(got == expected, "round {round}: the checkpointed open answers differently from a full scan");
        store.close().unwrap();
        println!("round {round}: {} events, the checkpoint left by the kill covers {covered:?}", got.0.len());
        // Written by the killed writer (not the previous round's close): it covers more than
        // the previous round left.
        checkpoints_seen += covered.is_some_and(|c| c > previous) as usize;
        previous = got.0.len() as u64;
    }
    println!("{checkpoints_seen} of {ROUNDS} kills left a checkpoint written in the background");
    assert!(checkpoints_seen > 0, "no background checkpoint was written: the test checked nothing");
}
