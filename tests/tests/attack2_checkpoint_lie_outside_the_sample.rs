//! `checkpoint::streams_match` (20b0b2e) checks a checkpoint's stream table against the log at
//! open, but only for a sample: every `ceil(streams / 1024)`-th stream, and for each only its
//! LAST location. The very lie of tests/tests/attack_checkpoint_that_lies_with_valid_checksums.rs
//! (the last location of one stream moved to another, CRCs sealed again) goes through unchanged
//! as soon as the store has more than 1024 streams and the two streams are not in the sample
//! (here: 2,048 streams, the sample is the even ids, the lie is between ids 1 and 3). The
//! consequences are the ones that test describes: `stream_version` answers wrong, an append with
//! the right expected version is refused, and `read_stream` of an intact log fails.
//!
//! A lie in the middle of a stream's locations (two streams swapping a location each, counts and
//! last locations kept) is not looked at whatever the number of streams.
//!
//! docs/design.md: a stale or corrupt checkpoint "falls back to scanning, with a warning, never
//! to wrong answers". Expected: a checkpoint that disagrees with the log is not trusted (e.g. a
//! check of every stream's last record, or a CRC over the table computed from the log's own
//! records, or at the least a sample drawn at random per open so that a lie is not always
//! missed). Severity: low (a checkpoint-writer bug or a crafted file), as the original attack.

use std::path::Path;

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{open, small_options, temp_dir, watchdog};

const STREAMS: usize = 2048;

fn options() -> Options {
    let mut options = small_options(Backend::Portable);
    options.segment_bytes = 8 << 20;
    options
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Moves the last location of entry `from` to the end of entry `to`, keeping every section
/// increasing and the event count the same, and seals the file again (layout: as in
/// attack_checkpoint_that_lies_with_valid_checksums.rs).
/// Each stream's name and locations.
type Streams = Vec<(String, Vec<u64>)>;

fn entries(dir: &Path) -> (Vec<u8>, usize, Streams) {
    let path = dir.join("index.checkpoint");
    let file = std::fs::read(&path).expect("a clean close leaves a checkpoint");
    let header = 128;
    let (segments, groups, streams) = (u64_at(&file, 56), u64_at(&file, 64), u64_at(&file, 72));
    assert_eq!(streams as usize, STREAMS);
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
    (file, header + segments as usize * 48 + groups as usize * 16, entries)
}

fn lie(dir: &Path, from: usize, to: usize) {
    let path = dir.join("index.checkpoint");
    let (mut file, table_at, mut entries) = entries(dir);
    let header = 128;
    assert_eq!(entries[from].1.len(), 2);
    assert_eq!(entries[to].1.len(), 1);
    let moved = entries[from].1.pop().unwrap();
    assert!(moved > entries[to].1[0]);
    entries[to].1.push(moved);
    file.truncate(table_at);
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
    std::fs::write(&path, &file).unwrap();
}

#[test]
fn a_lying_checkpoint_with_more_than_1024_streams_is_not_trusted() {
    let _watchdog = watchdog("a_lying_checkpoint_with_more_than_1024_streams_is_not_trusted", 120);
    let dir = temp_dir("attack2-lying-checkpoint-sample");
    let store = open(dir.path(), options()).expect("portable opens");
    let tickets: Vec<_> = (0..STREAMS)
        .map(|i| store.append(&format!("s{i}"), ExpectedVersion::Any, [Event::new("T", "x")]).unwrap())
        .collect();
    for ticket in tickets {
        ticket.wait().unwrap();
    }
    store.close().unwrap();
    // The entries at ids 1 and 3: not in the sample (ids 0, 2, 4, ... are).
    let (_, _, table) = entries(dir.path());
    let (one, three) = (table[1].0.clone(), table[3].0.clone());
    let store = open(dir.path(), options()).expect("portable opens");
    store.append(&one, ExpectedVersion::Exact(0), [Event::new("T", "y")]).unwrap().wait().unwrap();
    store.close().unwrap();
    lie(dir.path(), 1, 3);

    let store = Store::open(dir.path(), options()).expect("open");
    let version_1 = store.stream_version(&one);
    let version_3 = store.stream_version(&three);
    let read_3: Result<Vec<_>, _> = store.read_stream(&three, 0).unwrap().collect();
    let append_1 = store.append(&one, ExpectedVersion::Exact(1), [Event::new("T", "z")]).unwrap().wait();
    store.close().unwrap();
    println!(
        "ids 1 and 3 are {one} and {three}: stream_version {one}={version_1:?} {three}={version_3:?}; read_stream({three}): {:?}; append {one}@Exact(1): {:?}",
        read_3.as_ref().map(Vec::len),
        append_1.as_ref().map(|a| a.version)
    );
    assert_eq!((version_1, version_3), (Some(1), Some(0)), "stream versions as the log holds them");
    assert!(read_3.is_ok(), "read_stream(s3) of an intact log: {:?}", read_3.err());
    assert!(append_1.is_ok(), "s1 holds versions 0 and 1: expected version 1 holds, got {:?}", append_1.err());
}
