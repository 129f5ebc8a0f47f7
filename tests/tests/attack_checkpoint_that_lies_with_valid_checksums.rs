//! An index checkpoint whose checksums are right but whose stream table lies is trusted.
//!
//! Recovery checks a checkpoint's CRCs, that its segments are the same files (number, first
//! position, creation and modification times), that its last group is still there byte for
//! byte, that each stream's locations increase and that the streams hold as many events as the
//! end says. It never checks that a location holds the stream (and the version) the table says.
//! A checkpoint written by a buggy writer (one that attributes a record to the wrong stream: the
//! kind of bug the CRC cannot catch, since it is computed over the wrong table) is loaded as
//! the truth:
//!
//! - `stream_version` answers from it (wrong), the submitter's expected-version table is built
//!   from it, so an append with the right expected version is refused with
//!   `WrongExpectedVersion`, and an `Any` append would write a version the stream already has;
//! - `read_stream` of the other stream fails with `Corrupted` although the log is intact.
//!
//! docs/design.md and the issue: a stale or corrupt checkpoint "falls back to scanning, with a
//! warning, never to wrong answers". Expected: recovery cross-checks what it can afford (e.g.
//! the record at each stream's last location, one read per stream, names the stream and the
//! version the table says), and falls back to a full scan when it does not.
//!
//! Severity: low (it takes a writer bug or a crafted file), but it is the one case the
//! checkpoint's design says cannot produce a wrong answer.

use std::path::Path;

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{open, small_options, temp_dir, watchdog};

fn options() -> Options {
    small_options(Backend::Portable)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Moves the last location of the first stream entry (`a`: versions 0 and 1) to the end of the
/// second (`b`: version 0), keeping every section increasing and the event count the same, and
/// seals the file again with correct CRCs (layout: engine/src/log/checkpoint.rs).
fn lie(dir: &Path) {
    let path = dir.join("index.checkpoint");
    let mut file = std::fs::read(&path).expect("a clean close leaves a checkpoint");
    let header = 128;
    let (segments, groups, streams) = (u64_at(&file, 56), u64_at(&file, 64), u64_at(&file, 72));
    assert_eq!(streams, 2);
    let mut at = header + segments as usize * 48 + groups as usize * 16;
    let mut entries = Vec::new();
    for _ in 0..streams {
        let name_len = file[at] as usize;
        let name = String::from_utf8(file[at + 1..at + 1 + name_len].to_vec()).unwrap();
        let n = u64_at(&file, at + 1 + name_len) as usize;
        let locations: Vec<u64> = (0..n).map(|i| u64_at(&file, at + 9 + name_len + 8 * i)).collect();
        entries.push((name, locations));
        at += 9 + name_len + 8 * n;
    }
    assert_eq!(at, file.len());
    assert_eq!(
        (entries[0].0.as_str(), entries[0].1.len(), entries[1].0.as_str(), entries[1].1.len()),
        ("a", 2, "b", 1)
    );
    let moved = entries[0].1.pop().unwrap();
    assert!(moved > entries[1].1[0], "a@1 lies after b@0: b's locations still increase");
    entries[1].1.push(moved);
    file.truncate(header + segments as usize * 48 + groups as usize * 16);
    for (name, locations) in &entries {
        file.push(name.len() as u8);
        file.extend_from_slice(name.as_bytes());
        file.extend_from_slice(&(locations.len() as u64).to_le_bytes());
        for location in locations {
            file.extend_from_slice(&location.to_le_bytes());
        }
    }
    let body_crc = crc32c::crc32c(&file[header..]);
    file[24..28].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&file[16..header]);
    file[12..16].copy_from_slice(&header_crc.to_le_bytes());
    // Keep the file's times as they are for the segments; the checkpoint's own time is not checked.
    std::fs::write(&path, &file).unwrap();
}

#[test]
fn a_checkpoint_with_valid_checksums_and_a_lying_stream_table_is_not_trusted() {
    let _watchdog = watchdog("a_checkpoint_with_valid_checksums_and_a_lying_stream_table_is_not_trusted", 60);
    let dir = temp_dir("attack-lying-checkpoint");
    let store = open(dir.path(), options()).expect("portable opens");
    for stream in ["a", "b", "a"] {
        store.append(stream, ExpectedVersion::Any, [Event::new("T", stream)]).unwrap().wait().unwrap();
    }
    store.close().unwrap();
    lie(dir.path());

    let store = Store::open(dir.path(), options()).expect("open");
    let version_a = store.stream_version("a");
    let version_b = store.stream_version("b");
    let read_b: Result<Vec<_>, _> = store.read_stream("b", 0).unwrap().collect();
    let append_a = store.append("a", ExpectedVersion::Exact(1), [Event::new("T", "a")]).unwrap().wait();
    store.close().unwrap();
    println!(
        "stream_version a={version_a:?} b={version_b:?}; read_stream(b): {:?}; append a@Exact(1): {:?}",
        read_b.as_ref().map(Vec::len),
        append_a.as_ref().map(|a| a.version)
    );
    assert_eq!((version_a, version_b), (Some(1), Some(0)), "stream versions as the log holds them");
    assert!(read_b.is_ok(), "read_stream(b) of an intact log: {:?}", read_b.err());
    assert!(append_a.is_ok(), "a holds versions 0 and 1: expected version 1 holds, got {:?}", append_a.err());
}
