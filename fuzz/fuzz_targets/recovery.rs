//! Recovery over arbitrary segment files: the input becomes one to three segment files of a
//! fresh store directory (on tmpfs), then `Store::open` runs and, if it opens, the whole log is
//! read (and, if the input asks, one more event appended). Whatever the files hold, this must
//! return `Ok` or an `Err` and never panic, on the caller's thread or on one of the store's
//! (libfuzzer-sys aborts on a panic in any thread).
//!
//! Input layout, so that short inputs reach the group and record checks:
//! ```text
//! byte 0     flags: bits 0-1 number of files - 1 (mod 3); bit 2 give each file a valid segment
//!            header block; bit 3 fix the CRCs of group headers (at block boundaries) and of
//!            their records; bit 4 pad each file with zeros to the segment size; bit 5 append
//!            one event after a successful open; bit 6 first positions are u64, not u16
//! per file   u8 segment number (mod 8), u16 (or u64) first position (for bit 2), u16 length of
//!            its bytes (the last file takes the rest)
//! rest       the files' bytes, one after the other (after the header block with bit 2)
//! ```

#![no_main]

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use libfuzzer_sys::fuzz_target;

const BLOCK: usize = 4096;
const GROUP_BYTES_MAX: usize = 8192;
const SEGMENT_BYTES: usize = 8 * BLOCK;

fn options() -> Options {
    let mut options = Options::default();
    options.backend = Backend::Portable;
    options.group_bytes_max = GROUP_BYTES_MAX;
    options.segment_bytes = SEGMENT_BYTES as u64;
    options.allow_volatile = true;
    options.allow_buffered_io = true;
    options
}

/// Reads the input front to back; missing bytes read as zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes([0; 8].map(|_: u8| self.u8()))
    }
}

fn segment_header(number: u64, first_position: u64) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK];
    block[0..8].copy_from_slice(b"EVSEGMNT");
    block[8..12].copy_from_slice(&2u32.to_le_bytes()); // the format version
    block[16..24].copy_from_slice(&number.to_le_bytes());
    block[24..32].copy_from_slice(&first_position.to_le_bytes());
    block[32..40].copy_from_slice(&(SEGMENT_BYTES as u64).to_le_bytes());
    block[40..48].copy_from_slice(&1_700_000_000_000_000u64.to_le_bytes());
    block[48..52].copy_from_slice(&4u32.to_le_bytes());
    block[52..56].copy_from_slice(&(GROUP_BYTES_MAX as u32).to_le_bytes());
    let crc = crc32c::crc32c(&block[16..56]);
    block[12..16].copy_from_slice(&crc.to_le_bytes());
    block
}

/// Recomputes the CRC of every group header at a block boundary after the header block, and of
/// the records that follow it as far as their length fields lead (see docs/format.md).
fn fix_crcs(file: &mut [u8]) {
    let mut group = BLOCK;
    while group + 32 <= file.len() {
        if &file[group..group + 4] == b"EVGR" {
            let crc = crc32c::crc32c(&file[group + 8..group + 32]);
            file[group + 4..group + 8].copy_from_slice(&crc.to_le_bytes());
            let events = u32::from_le_bytes(file[group + 28..group + 32].try_into().expect("4 bytes")).min(64);
            let mut at = group + 32;
            for _ in 0..events {
                if at + 32 > file.len() {
                    break;
                }
                let len = (u32::from_le_bytes(file[at..at + 4].try_into().expect("4 bytes")) & !(1 << 31)) as usize;
                if len < 32 || at + len > file.len() {
                    break;
                }
                let record = &mut file[at..at + len];
                let crc = crc32c::crc32c_append(
                    crc32c::crc32c_append(crc32c::crc32c(&record[32..]), &record[8..32]),
                    &record[0..4],
                );
                record[4..8].copy_from_slice(&crc.to_le_bytes());
                at += len;
            }
        }
        group += BLOCK;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.u8();
    let files = 1 + usize::from(flags & 3) % 3;
    let described: Vec<(u64, u64, usize)> = (0..files)
        .map(|_| {
            let number = u64::from(input.u8() % 8);
            let first_position = if flags & 64 != 0 { input.u64() } else { u64::from(input.u16()) };
            (number, first_position, usize::from(input.u16()))
        })
        .collect();
    let dir = tempfile::Builder::new().prefix("evstore-fuzz-").tempdir_in("/dev/shm").expect("tmpfs dir");
    for (index, &(number, first_position, len)) in described.iter().enumerate() {
        let bytes = if index + 1 == files { input.take(usize::MAX) } else { input.take(len) };
        let mut file = if flags & 4 != 0 { segment_header(number, first_position) } else { Vec::new() };
        file.extend_from_slice(bytes);
        if flags & 8 != 0 {
            fix_crcs(&mut file);
        }
        if flags & 16 != 0 && file.len() < SEGMENT_BYTES {
            file.resize(SEGMENT_BYTES, 0);
        }
        std::fs::write(dir.path().join(format!("{number:020}.evs")), &file).expect("write segment");
    }
    if let Ok(store) = Store::open(dir.path(), options()) {
        if let Ok(events) = store.read_all(0) {
            for event in events {
                if event.is_err() {
                    break;
                }
            }
        }
        for stream in ["a", "b"] {
            if let Ok(events) = store.read_stream(stream, 0) {
                let _ = events.count();
            }
            let _ = store.stream_version(stream);
        }
        if flags & 32 != 0 {
            if let Ok(ticket) = store.append("a", ExpectedVersion::Any, [Event::new("Fuzz", b"after".to_vec())]) {
                let _ = ticket.wait();
            }
        }
        let _ = store.close();
    }
});
