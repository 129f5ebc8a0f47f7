//! `Store::open` over arbitrary segment files (a property test): whatever the directory holds,
//! open returns `Ok` or an `Err` and never panics, on the caller's thread or on one of the
//! store's own; and a store that opens can be read through and closed. The files are random
//! bytes, zeros, valid-looking segment headers (random fields, correct CRC32C) followed by
//! valid-looking groups and records (random fields, correct CRCs, so that the checks behind the
//! checksums are reached), and cuts (with a flipped byte) of a real store's files, under random
//! segment names; a store that opens takes one more append. Without this, only the damage the
//! hand-written corruption tests thought of would be checked: short files, for one, panicked in
//! the group header decoder, and a segment header claiming a first position of 2^48 or more
//! opened, after which the first append panicked the submitter (positions are stored in 48 bits).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{dir_files, temp_dir, watchdog};
use proptest::prelude::*;

const BLOCK: usize = 4096;

/// Small groups and segments, so that a few blocks of input make whole segments.
fn options() -> Options {
    let mut options = Options::default();
    options.backend = Backend::Portable;
    options.group_bytes_max = 8192;
    options.segment_bytes = 8 * BLOCK as u64;
    options.allow_volatile = true;
    options.allow_buffered_io = true;
    options
}

/// A fresh directory, on tmpfs where there is one (no disk flushes for hundreds of opens).
fn fresh_dir(name: &str) -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        tempfile::Builder::new().prefix(&format!("evstore-{name}-")).tempdir_in("/dev/shm").expect("tmpfs dir")
    } else {
        temp_dir(name)
    }
}

/// The segment files of a real store: three used segments of several groups, and a prepared one.
fn real_files() -> &'static Vec<Vec<u8>> {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = fresh_dir("arbitrary-real");
        let store = Store::open(dir.path(), options()).expect("open a real store");
        for i in 0..40usize {
            let events = (0..1 + i % 3).map(|k| Event::new("Real", vec![(i + k) as u8; 100 + i * 37]));
            store
                .append(["a", "b", "c"][i % 3], ExpectedVersion::Any, events)
                .expect("append")
                .wait()
                .expect("durable");
        }
        store.close().expect("close");
        dir_files(dir.path()).into_iter().filter(|(name, _)| name.ends_with(".evs")).map(|(_, bytes)| bytes).collect()
    })
}

/// One record with a correct CRC (see docs/format.md); fields are random but plausible.
#[derive(Debug, Clone)]
struct Record {
    position: u64,
    version: u64,
    stream: Vec<u8>,
    event_type: Vec<u8>,
    metadata_len: usize,
    data_len: usize,
    commit: bool,
    /// Replaces the length field (the CRC is computed over the replaced value).
    length_override: Option<u32>,
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let len = 32 + self.stream.len() + self.event_type.len() + self.metadata_len + self.data_len;
        let length_field = self.length_override.unwrap_or(len as u32 | if self.commit { 1 << 31 } else { 0 });
        out.extend_from_slice(&length_field.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.position.to_le_bytes()[..6]);
        out.extend_from_slice(&self.version.to_le_bytes()[..6]);
        out.push(self.stream.len() as u8);
        out.push(self.event_type.len() as u8);
        out.extend_from_slice(&(self.metadata_len as u16).to_le_bytes());
        out.extend_from_slice(&1_700_000_000_000_000u64.to_le_bytes());
        out.extend_from_slice(&self.stream);
        out.extend_from_slice(&self.event_type);
        out.extend(std::iter::repeat_n(b'm', self.metadata_len));
        out.extend(std::iter::repeat_n(b'd', self.data_len));
        let record = &mut out[start..];
        let crc =
            crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&record[32..]), &record[8..32]), &record[0..4]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// What starts at a block boundary after the segment header block.
#[derive(Debug, Clone)]
enum Piece {
    /// A group header with a correct CRC, its records, and `pad` more bytes (zeros).
    Group {
        seq: u64,
        first_position: u64,
        body_bytes: Option<u32>,
        events: Option<u32>,
        records: Vec<Record>,
    },
    Random(Vec<u8>),
    Zeros(usize),
}

/// The first block of a file.
#[derive(Debug, Clone)]
enum Head {
    /// Magic, version, CRC over random but plausible fields; `segment_bytes: None` means "the
    /// file's length", filled in at the end.
    Valid {
        version: u32,
        number: Option<u64>,
        first_position: u64,
        segment_bytes: Option<u64>,
        window: (u32, u32),
    },
    Random(Vec<u8>),
    Zeros,
}

#[derive(Debug, Clone)]
enum Content {
    Built {
        head: Head,
        pieces: Vec<Piece>,
        len: Option<usize>,
    },
    /// A cut of a real segment file (by default the one of the same number), with a byte flipped.
    Real {
        file: Option<usize>,
        len: usize,
        flip: Option<(usize, u8)>,
    },
    Random(Vec<u8>),
    Zeros(usize),
}

fn record() -> impl Strategy<Value = Record> {
    (
        0u64..8,
        0u64..4,
        prop_oneof![Just(b"a".to_vec()), Just(b"b".to_vec()), prop::collection::vec(any::<u8>(), 0..4)],
        prop_oneof![Just(b"T".to_vec()), prop::collection::vec(any::<u8>(), 0..4)],
        prop_oneof![3 => Just(0usize), 1 => 0usize..300],
        prop_oneof![3 => 0usize..200, 1 => 0usize..9000],
        any::<bool>(),
        prop_oneof![8 => Just(None), 1 => any::<u32>().prop_map(Some)],
    )
        .prop_map(|(position, version, stream, event_type, metadata_len, data_len, commit, length_override)| {
            Record { position, version, stream, event_type, metadata_len, data_len, commit, length_override }
        })
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        6 => (
            0u64..4,
            0u64..8,
            prop_oneof![4 => Just(None), 1 => any::<u32>().prop_map(Some)],
            prop_oneof![4 => Just(None), 1 => (0u32..5).prop_map(Some)],
            prop::collection::vec(record(), 0..4),
        )
            .prop_map(|(seq, first_position, body_bytes, events, records)| Piece::Group {
                seq,
                first_position,
                body_bytes,
                events,
                records
            }),
        1 => prop::collection::vec(any::<u8>(), 0..2 * BLOCK).prop_map(Piece::Random),
        1 => (0..2 * BLOCK).prop_map(Piece::Zeros),
    ]
}

fn head() -> impl Strategy<Value = Head> {
    let valid = (
        prop_oneof![8 => Just(2u32), 1 => any::<u32>()],
        prop_oneof![4 => Just(None), 1 => any::<u64>().prop_map(Some)],
        prop_oneof![4 => 0u64..8, 1 => any::<u64>()],
        prop_oneof![4 => Just(None), 1 => any::<u64>().prop_map(Some)],
        prop_oneof![4 => Just((4u32, 8192u32)), 1 => (any::<u32>(), any::<u32>())],
    )
        .prop_map(|(version, number, first_position, segment_bytes, window)| Head::Valid {
            version,
            number,
            first_position,
            segment_bytes,
            window,
        });
    prop_oneof![
        6 => valid,
        1 => prop::collection::vec(any::<u8>(), 0..BLOCK).prop_map(Head::Random),
        1 => Just(Head::Zeros),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        6 => (head(), prop::collection::vec(piece(), 0..5), prop_oneof![3 => Just(None), 1 => (0..4 * BLOCK).prop_map(Some)])
            .prop_map(|(head, pieces, len)| Content::Built { head, pieces, len }),
        3 => (prop::option::weighted(0.2, 0usize..4), 0usize..(8 * BLOCK + 1), prop::option::of((0usize..8 * BLOCK, 1u8..=255)))
            .prop_map(|(file, len, flip)| Content::Real { file, len, flip }),
        1 => prop::collection::vec(any::<u8>(), 0..3 * BLOCK).prop_map(Content::Random),
        1 => (0..3 * BLOCK).prop_map(Content::Zeros),
    ]
}

fn segment_number() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..5, 1 => ((1u64 << 24) - 3)..((1 << 24) + 2), 1 => any::<u64>()]
}

/// The bytes of a file for `content` named `number`.
fn bytes_of(content: &Content, number: u64) -> Vec<u8> {
    match content {
        Content::Random(bytes) => bytes.clone(),
        Content::Zeros(len) => vec![0; *len],
        Content::Real { file, len, flip } => {
            let files = real_files();
            let file = file.unwrap_or(number as usize);
            let mut bytes = files[file % files.len()].clone();
            bytes.truncate(*len);
            if let Some((at, mask)) = flip {
                if let Some(byte) = bytes.get_mut(*at) {
                    *byte ^= mask;
                }
            }
            bytes
        }
        Content::Built { head, pieces, len } => {
            let mut out = match head {
                Head::Random(bytes) => bytes.clone(),
                Head::Zeros | Head::Valid { .. } => vec![0; BLOCK],
            };
            for piece in pieces {
                out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
                match piece {
                    Piece::Random(bytes) => out.extend_from_slice(bytes),
                    Piece::Zeros(len) => out.resize(out.len() + len, 0),
                    Piece::Group { seq, first_position, body_bytes, events, records } => {
                        let mut body = Vec::new();
                        for record in records {
                            record.encode(&mut body);
                        }
                        let mut header = [0u8; 32];
                        header[0..4].copy_from_slice(b"EVGR");
                        header[8..16].copy_from_slice(&seq.to_le_bytes());
                        header[16..24].copy_from_slice(&first_position.to_le_bytes());
                        header[24..28].copy_from_slice(&body_bytes.unwrap_or(body.len() as u32).to_le_bytes());
                        header[28..32].copy_from_slice(&events.unwrap_or(records.len() as u32).to_le_bytes());
                        let crc = crc32c::crc32c(&header[8..32]);
                        header[4..8].copy_from_slice(&crc.to_le_bytes());
                        out.extend_from_slice(&header);
                        out.extend_from_slice(&body);
                    }
                }
            }
            match len {
                Some(len) => out.resize(*len, 0),
                // A whole segment, as the store makes them, once anything follows the header.
                None if out.len() > BLOCK => out.resize(out.len().max(8 * BLOCK).div_ceil(BLOCK) * BLOCK, 0),
                None => {}
            }
            if let Head::Valid { version, number: named, first_position, segment_bytes, window } = head {
                let mut header = [0u8; 56];
                header[0..8].copy_from_slice(b"EVSEGMNT");
                header[8..12].copy_from_slice(&version.to_le_bytes());
                header[16..24].copy_from_slice(&named.unwrap_or(number).to_le_bytes());
                header[24..32].copy_from_slice(&first_position.to_le_bytes());
                header[32..40].copy_from_slice(&segment_bytes.unwrap_or(out.len() as u64).to_le_bytes());
                header[40..48].copy_from_slice(&1_700_000_000_000_000u64.to_le_bytes());
                header[48..52].copy_from_slice(&window.0.to_le_bytes());
                header[52..56].copy_from_slice(&window.1.to_le_bytes());
                let crc = crc32c::crc32c(&header[16..56]);
                header[12..16].copy_from_slice(&crc.to_le_bytes());
                let n = header.len().min(out.len());
                out[..n].copy_from_slice(&header[..n]);
            }
            out
        }
    }
}

/// Panics anywhere in the process since the hook was installed (the engine's threads included).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default_hook(info);
        }));
    });
}

/// Writes the files, opens, and reads through whatever opened.
fn open_over(files: &[(u64, Content)]) -> Result<(), TestCaseError> {
    let dir = fresh_dir("arbitrary");
    for (number, content) in files {
        std::fs::write(dir.path().join(format!("{number:020}.evs")), bytes_of(content, *number)).expect("write file");
    }
    let panics = PANICS.load(Ordering::SeqCst);
    if let Ok(store) = Store::open(dir.path(), options()) {
        let _ = store.read_all(0).map(|events| events.count());
        for stream in ["a", "b", "c"] {
            let _ = store.read_stream(stream, 0).map(|events| events.count());
            let _ = store.stream_version(stream);
        }
        // The recovered state must also be one the submitter can go on from.
        if let Ok(ticket) = store.append("a", ExpectedVersion::Any, [Event::new("After", b"open".to_vec())]) {
            let _ = ticket.wait();
        }
        let _ = store.close();
    }
    prop_assert_eq!(PANICS.load(Ordering::SeqCst), panics, "a thread of the store panicked (see above)");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn open_over_arbitrary_segment_files_never_panics(
        files in prop::collection::vec((segment_number(), content()), 1..=3),
    ) {
        let _watchdog = watchdog("open_over_arbitrary_segment_files_never_panics", 120);
        count_panics();
        open_over(&files)?;
    }
}
