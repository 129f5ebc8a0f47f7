//! An index checkpoint is written to `index.checkpoint.tmp`, made durable 1 MiB at a time
//! (`CHECKPOINT_SYNC_BYTES`), its header written last at offset 0, synced, then renamed over
//! `index.checkpoint`. A kill between slices leaves a temporary file whose synced body prefix
//! is valid and whose header is still zeros; a kill after the last sync but before the rename
//! leaves a whole, valid one. In every case open must keep the old checkpoint, remove the temporary file, and answer exactly as a full scan
//! of the same segments does; the next close must leave a checkpoint that answers the same.

use std::path::Path;

use evstore::{Event, ExpectedVersion, Options, RecordedEvent, Store};
use evstore_tests::{read_all, read_stream, temp_dir, watchdog};

const CHECKPOINT: &str = "index.checkpoint";
const TEMP: &str = "index.checkpoint.tmp";
const STREAMS: [&str; 5] = ["a", "b", "c", "d", "e"];
const SLICE: usize = 1 << 20;
const HEADER_BYTES: usize = 128;

fn options() -> Options {
    let mut options = Options::default();
    options.checkpoint_log_bytes = 0;
    options
}

fn fill(store: &Store, appends: usize, tag: usize) {
    for i in 0..appends {
        let events = (0..1000).map(|k| Event::new("Tiny", vec![(i + k + tag) as u8; 8]));
        store
            .append(STREAMS[i % STREAMS.len()], ExpectedVersion::Any, events)
            .expect("append")
            .wait()
            .expect("durable");
    }
}

fn copy_segments(source: &Path, target: &Path) {
    for entry in std::fs::read_dir(source).expect("list") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if path.is_file() && name.ends_with(".evs") {
            std::fs::copy(&path, target.join(&name)).expect("copy");
        }
    }
}

type Answers = (Vec<RecordedEvent>, Vec<(Vec<RecordedEvent>, Option<u64>)>, u64);

fn answers(store: &Store) -> Answers {
    let streams = STREAMS.iter().map(|s| (read_stream(store, s), store.stream_version(s))).collect();
    (read_all(store), streams, store.durable_position())
}

#[test]
fn a_checkpoint_cut_between_its_sync_slices_is_never_trusted() {
    let _watchdog = watchdog("a_checkpoint_cut_between_its_sync_slices_is_never_trusted", 300);
    let dir = temp_dir("attack7-slices");
    let store = Store::open(dir.path(), options()).expect("open");
    fill(&store, 20, 0);
    store.close().expect("close");
    let old = std::fs::read(dir.path().join(CHECKPOINT)).expect("the first checkpoint");
    let store = Store::open(dir.path(), options()).expect("reopen");
    fill(&store, 255, 7);
    store.close().expect("close");
    let new = std::fs::read(dir.path().join(CHECKPOINT)).expect("the second checkpoint");
    assert!(new.len() > 2 * SLICE + HEADER_BYTES, "a checkpoint of {} bytes spans three slices", new.len());
    assert!(new[..HEADER_BYTES].iter().any(|&b| b != 0));

    let scan = temp_dir("attack7-slices-scan");
    copy_segments(dir.path(), scan.path());
    let full = Store::open(scan.path(), options()).expect("full scan");
    let expected = answers(&full);
    full.close().expect("close");
    assert_eq!(expected.0.len(), 275_000);

    let zero_header = |mut bytes: Vec<u8>| {
        bytes[..HEADER_BYTES].fill(0);
        bytes
    };
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("killed after two slices", zero_header(new[..2 * SLICE].to_vec())),
        ("killed before the rename", new.clone()),
    ];
    for (what, temp) in variants {
        let case = temp_dir("attack7-slices-case");
        copy_segments(dir.path(), case.path());
        std::fs::write(case.path().join(CHECKPOINT), &old).expect("write");
        std::fs::write(case.path().join(TEMP), &temp).expect("write");
        let store = Store::open(case.path(), options()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        assert!(!case.path().join(TEMP).exists(), "{what}: the temporary file is left at open");
        assert!(answers(&store) == expected, "{what}: the store answers differently from a full scan");
        store
            .append("a", ExpectedVersion::Exact(expected.1[0].1.expect("a")), [Event::new("After", "x")])
            .expect("append")
            .wait()
            .unwrap_or_else(|e| panic!("{what}: the next append of a: {e}"));
        store.close().expect("close");
        let store = Store::open(case.path(), options()).expect("reopen");
        assert_eq!(store.stream_version("a"), Some(expected.1[0].1.expect("a") + 1), "{what}: after reopening");
        assert_eq!(store.durable_position(), expected.2 + 1, "{what}");
        store.close().expect("close");
    }
}
