//! A segment file shorter than it was made (a truncation by hand, a bad copy, a file system
//! repair) must stop `Store::open` with `Error::Corrupted` naming the segment, without changing
//! any file, and never with a panic: every segment is allocated to its full size before its
//! header is written, so a short used segment has lost acknowledged data. Without this, recovery
//! read the end of the file as the end of the log and opened with only the events before the cut
//! (1 of 10 here, the rest lost for good once new appends overwrite the place), and a cut within
//! 32 bytes of a block boundary panicked in the group header decoder.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use evstore::{Backend, Error, Event, ExpectedVersion, Store};
use evstore_tests::{
    backends, dir_changes, dir_files, open, read_all, small_options, temp_dir, used_segments, watchdog,
};

const EVENTS: usize = 10;

/// The files of a store holding 10 acknowledged events, one group (one 4 KiB block) each, in
/// segment 0: groups at 4096, 8192, ..., 40960.
fn pristine(backend: Backend) -> Option<BTreeMap<String, Vec<u8>>> {
    let dir = temp_dir("truncated-pristine");
    let store = open(dir.path(), small_options(backend))?;
    for i in 0..EVENTS {
        store
            .append("t", ExpectedVersion::Any, [Event::new("T", format!("event {i}"))])
            .expect("append")
            .wait()
            .expect("durable");
    }
    store.close().expect("close");
    assert_eq!(used_segments(dir.path()).len(), 1);
    Some(dir_files(dir.path()))
}

/// A fresh directory holding `files`, with segment 0 cut to `len` bytes.
fn truncated_copy(files: &BTreeMap<String, Vec<u8>>, len: usize) -> tempfile::TempDir {
    let dir = temp_dir("truncated");
    for (name, bytes) in files {
        let bytes = if name == "00000000000000000000.evs" { &bytes[..len] } else { &bytes[..] };
        std::fs::write(dir.path().join(name), bytes).expect("write file");
    }
    dir
}

/// What is wrong with opening a store whose segment 0 was cut, if anything.
fn problem(dir: &Path, backend: Backend) -> Option<String> {
    let opened = std::panic::catch_unwind(AssertUnwindSafe(|| Store::open(dir, small_options(backend))));
    match opened {
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("panicked: {message}"))
        }
        Ok(Err(Error::Corrupted { segment: 0, .. })) => None,
        Ok(Err(other)) => Some(format!("expected Corrupted in segment 0, got {other:?}")),
        Ok(Ok(store)) => {
            let events = read_all(&store).len();
            store.close().expect("close");
            Some(format!("opened with {events} of {EVENTS} acknowledged events"))
        }
    }
}

#[test]
fn a_segment_cut_after_its_first_group_is_corruption() {
    let _watchdog = watchdog("a_segment_cut_after_its_first_group_is_corruption", 60);
    for backend in backends() {
        let Some(files) = pristine(backend) else { continue };
        let dir = truncated_copy(&files, 8192);
        let before = dir_files(dir.path());
        if let Some(problem) = problem(dir.path(), backend) {
            let changes = dir_changes(&before, &dir_files(dir.path())).unwrap_or_else(|| "no file changed".into());
            panic!("{backend:?}: segment 0 cut to 8192 bytes: {problem}; {changes}");
        }
        if let Some(changes) = dir_changes(&before, &dir_files(dir.path())) {
            panic!("{backend:?}: the refused open changed the directory: {changes}");
        }
    }
}

#[test]
fn a_segment_cut_anywhere_is_corruption_never_a_panic() {
    let _watchdog = watchdog("a_segment_cut_anywhere_is_corruption_never_a_panic", 120);
    // Lengths within 32 bytes of a block boundary, where a group header is cut short: just past
    // the segment header block, and inside the groups (whose first bytes are never zero).
    let mut lengths: Vec<usize> = (4096..=4127).collect();
    for block in [2, 6, 10] {
        lengths.extend((1..32).map(|k| block * 4096 + k));
    }
    // One line per panic instead of a backtrace each (the panics are caught and reported below).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    let mut problems = Vec::new();
    for backend in backends() {
        let Some(files) = pristine(backend) else { continue };
        let segment = &files["00000000000000000000.evs"];
        for &len in &lengths {
            if len % 4096 != 0 {
                assert!(segment[len / 4096 * 4096..len].iter().any(|&b| b != 0), "cut {len} keeps non-zero bytes");
            }
            let dir = truncated_copy(&files, len);
            if let Some(problem) = problem(dir.path(), backend) {
                problems.push(format!("{backend:?}, cut to {len} bytes: {problem}"));
            }
        }
    }
    std::panic::set_hook(default_hook);
    assert!(
        problems.is_empty(),
        "{} of {} truncations were not refused as Corrupted:\n{}",
        problems.len(),
        2 * lengths.len(),
        problems.join("\n")
    );
}
