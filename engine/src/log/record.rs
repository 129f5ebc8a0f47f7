//! Records and group headers: encoding, sealing and checked decoding.
//!
//! Record layout (little-endian, 32-byte fixed header, see docs/format.md):
//! ```text
//!  0 u32 length of the whole record in the low 31 bits; bit 31 = COMMIT (last event of its append)
//!  4 u32 CRC32C, computed over bytes [32, length), then [8, 32), then [0, 4)
//!  8 u48 position     14 u48 stream version
//! 20 u8 stream id length   21 u8 event type length   22 u16 metadata length
//! 24 u64 timestamp, microseconds since the Unix epoch
//! 32 stream id, event type, metadata, data
//! ```
//! The CRC runs over the body first so that a producer can checksum the body on its own core
//! and the submitter only has to extend it over the 28 header bytes it fills in.
//!
//! Group header (32 bytes at the start of every group, which starts on a 4 KiB boundary):
//! ```text
//!  0 u32 magic "EVGR"   4 u32 CRC32C of bytes [8, 32)
//!  8 u64 group sequence number   16 u64 first position
//! 24 u32 bytes of records after the header   28 u32 number of records
//! ```

use crate::constants::{GROUP_HEADER_BYTES, POSITION_MAX, RECORD_HEADER_BYTES};

/// Encoded records outside a lane (tests).
#[cfg(test)]
pub(crate) type RecordBytes = Vec<u8>;

pub(crate) const COMMIT_FLAG: u32 = 1 << 31;
pub(crate) const GROUP_MAGIC: u32 = u32::from_le_bytes(*b"EVGR");

#[cfg(test)]
fn u48_to_bytes(value: u64) -> [u8; 6] {
    debug_assert!(value < 1 << 48);
    let b = value.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

fn u48_from(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&bytes[..6]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Pieces shorter than this go to [`crc_short`]; longer ones to the crc32c crate, whose 3-way
/// interleaved loop wins once a piece is a few hundred bytes long.
const CRC_SHORT_MAX: usize = 256;

/// CRC32C of `bytes` continuing from `crc`, as `crc32c::crc32c_append` computes it.
///
/// Why not always the crate: it walks to an 8-byte boundary one byte at a time (3 cycles of
/// latency each) and finishes the tail the same way, before and after its 8-byte loop. Records
/// are packed back to back, so their three checksummed pieces start anywhere, and for a seed
/// event's 90-byte record those byte steps were a third of the cost of reading it (a 1,000-event
/// stream read: 62 us with the crate's CRC, 39 us with none). Unaligned 8-byte loads cost nothing
/// extra on x86-64, so short pieces take 8 bytes at a time from wherever they start.
#[inline]
pub(crate) fn crc_append(crc: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() < CRC_SHORT_MAX && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: SSE 4.2 is present (checked just above; std caches the answer).
        return unsafe { crc_short(crc, bytes) };
    }
    crc32c::crc32c_append(crc, bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc_short(crc: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut state = u64::from(!crc);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        state = _mm_crc32_u64(state, u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    }
    let mut state = state as u32;
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        state = _mm_crc32_u32(state, u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        state = _mm_crc32_u16(state, u16::from_le_bytes(rest[..2].try_into().expect("2 bytes")));
        rest = &rest[2..];
    }
    if let Some(&last) = rest.first() {
        state = _mm_crc32_u8(state, last);
    }
    !state
}

/// The CRC of a record of `len` bytes at the start of `bytes`: its body, then bytes [8, 32),
/// then bytes [0, 4).
#[inline]
pub(crate) fn record_crc(bytes: &[u8], len: usize) -> u32 {
    crc_append(crc_append(crc_append(0, &bytes[RECORD_HEADER_BYTES..len]), &bytes[8..32]), &bytes[0..4])
}

/// Encoded length of one event's record.
#[inline]
pub(crate) fn record_len(stream: &str, event_type: &str, metadata: &[u8], data: &[u8]) -> usize {
    RECORD_HEADER_BYTES + stream.len() + event_type.len() + metadata.len() + data.len()
}

/// Producer side: appends a record whose position, version and timestamp are still zero and
/// whose CRC field holds the CRC of the body only. [`seal`] finishes it on the submitter.
#[cfg(test)]
pub(crate) fn encode_unsealed(
    out: &mut RecordBytes,
    stream: &str,
    event_type: &str,
    metadata: &[u8],
    data: &[u8],
    commit: bool,
) {
    let len = record_len(stream, event_type, metadata, data);
    let start = out.len();
    out.resize(start + len, 0);
    encode_unsealed_into(&mut out[start..], stream, event_type, metadata, data, commit);
}

/// [`encode_unsealed`] into the first `record_len(..)` bytes of `target` (a producer's queue
/// ring, write/lane.rs): every byte of the record is written, none is read.
#[inline]
pub(crate) fn encode_unsealed_into(
    target: &mut [u8],
    stream: &str,
    event_type: &str,
    metadata: &[u8],
    data: &[u8],
    commit: bool,
) -> usize {
    let len = record_len(stream, event_type, metadata, data);
    let mut length_field = len as u32;
    debug_assert!(length_field & COMMIT_FLAG == 0);
    if commit {
        length_field |= COMMIT_FLAG;
    }
    let record = &mut target[..len];
    // The header is built on the stack and every part goes in with one copy.
    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[0..4].copy_from_slice(&length_field.to_le_bytes());
    header[20] = stream.len() as u8;
    header[21] = event_type.len() as u8;
    header[22..24].copy_from_slice(&(metadata.len() as u16).to_le_bytes());
    let mut at = RECORD_HEADER_BYTES;
    for field in [stream.as_bytes(), event_type.as_bytes(), metadata, data] {
        record[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    let body_crc = crc_append(0, &record[RECORD_HEADER_BYTES..]);
    header[4..8].copy_from_slice(&body_crc.to_le_bytes());
    record[..RECORD_HEADER_BYTES].copy_from_slice(&header);
    len
}

/// Fills in position, version and timestamp of the unsealed record at the start of `record` and
/// finishes its CRC, in place and byte by byte: the reference that [`seal_into`] (the
/// submitter's) is tested against. Returns the record's length.
#[cfg(test)]
pub(crate) fn seal(record: &mut [u8], position: u64, version: u64, timestamp_us: u64) -> usize {
    let len = (u32_at(record, 0) & !COMMIT_FLAG) as usize;
    let body_crc = u32_at(record, 4);
    record[8..14].copy_from_slice(&u48_to_bytes(position));
    record[14..20].copy_from_slice(&u48_to_bytes(version));
    record[24..32].copy_from_slice(&timestamp_us.to_le_bytes());
    let crc = crc_append(crc_append(body_crc, &record[8..32]), &record[0..4]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    len
}

/// Submitter side: copies the unsealed record at the start of `source` to the start of `target`,
/// with its position, version and timestamp filled in and its CRC finished (as `seal` does in
/// place). Returns the record's length.
///
/// The header is built in registers and `target` is only written, never read back: `target` is
/// a group buffer whose cache lines the device last read, and checksumming them in place after
/// the copy (as an earlier version did) stalled the submitter on every record; profiles of the
/// seed workload showed that CRC as half of the submitter's time. Building the 24 sealed bytes
/// as three words (rather than on the stack, byte-wise) took the seal from about 170 to about 100
/// instructions per seed record, its body's copy included (callgrind).
pub(crate) fn seal_into(target: &mut [u8], source: &[u8], position: u64, version: u64, timestamp_us: u64) -> usize {
    let length_field = u32_at(source, 0);
    let len = (length_field & !COMMIT_FLAG) as usize;
    let body_crc = u32_at(source, 4);
    debug_assert!(position < 1 << 48 && version < 1 << 48);
    // Bytes [8, 32) as three little-endian words, built in registers: position (6 bytes) and
    // the low 2 bytes of the version; its high 4 bytes and the producer's three field lengths
    // (bytes [20, 24)); the timestamp. The CRC is extended over them without a byte-wise pass.
    let words = [position | version << 48, version >> 16 | u64::from(u32_at(source, 20)) << 32, timestamp_us];
    let crc = crc_header_words(body_crc, words, length_field);
    target[0..4].copy_from_slice(&length_field.to_le_bytes());
    target[4..8].copy_from_slice(&crc.to_le_bytes());
    for (k, word) in words.iter().enumerate() {
        target[8 + 8 * k..16 + 8 * k].copy_from_slice(&word.to_le_bytes());
    }
    target[RECORD_HEADER_BYTES..len].copy_from_slice(&source[RECORD_HEADER_BYTES..len]);
    len
}

/// The record CRC from its body's CRC: extended over header bytes [8, 32) (`words`, little-endian)
/// and then bytes [0, 4) (`length_field`), as [`record_crc`] computes it from the bytes.
#[inline]
fn crc_header_words(body_crc: u32, words: [u64; 3], length_field: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: SSE 4.2 is present (checked just above; std caches the answer).
        return unsafe { crc_header_words_sse42(body_crc, words, length_field) };
    }
    let mut bytes = [0u8; 24];
    for (k, word) in words.iter().enumerate() {
        bytes[8 * k..8 * k + 8].copy_from_slice(&word.to_le_bytes());
    }
    crc32c::crc32c_append(crc32c::crc32c_append(body_crc, &bytes), &length_field.to_le_bytes())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc_header_words_sse42(body_crc: u32, words: [u64; 3], length_field: u32) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    let mut state = u64::from(!body_crc);
    for word in words {
        state = _mm_crc32_u64(state, word);
    }
    !_mm_crc32_u32(state as u32, length_field)
}

/// A checked view of one record inside a mapped segment or a buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordView<'a> {
    pub len: usize,
    pub commit: bool,
    pub position: u64,
    pub version: u64,
    pub timestamp_us: u64,
    pub stream: &'a [u8],
    pub event_type: &'a [u8],
    pub metadata: &'a [u8],
    pub data: &'a [u8],
}

/// Decodes and verifies the record at the start of `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<RecordView<'_>, String> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(format!("record header cut short: {} bytes left", bytes.len()));
    }
    let length_field = u32_at(bytes, 0);
    let len = (length_field & !COMMIT_FLAG) as usize;
    if len < RECORD_HEADER_BYTES || len > bytes.len() {
        return Err(format!("record length {len} out of range (at most {} bytes left)", bytes.len()));
    }
    let stored_crc = u32_at(bytes, 4);
    let crc = record_crc(bytes, len);
    if crc != stored_crc {
        return Err(format!("record checksum mismatch: stored {stored_crc:#010x}, computed {crc:#010x}"));
    }
    let stream_len = bytes[20] as usize;
    let type_len = bytes[21] as usize;
    let metadata_len = u16::from_le_bytes([bytes[22], bytes[23]]) as usize;
    let body = &bytes[RECORD_HEADER_BYTES..len];
    if stream_len + type_len + metadata_len > body.len() {
        return Err("record field lengths exceed the record".to_string());
    }
    let (stream, rest) = body.split_at(stream_len);
    let (event_type, rest) = rest.split_at(type_len);
    let (metadata, data) = rest.split_at(metadata_len);
    Ok(RecordView {
        len,
        commit: length_field & COMMIT_FLAG != 0,
        position: u48_from(&bytes[8..]),
        version: u48_from(&bytes[14..]),
        timestamp_us: u64_at(bytes, 24),
        stream,
        event_type,
        metadata,
        data,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupHeader {
    pub seq: u64,
    pub first_position: u64,
    pub body_bytes: u32,
    pub events: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GroupHeaderError {
    /// All zero: nothing was ever written here.
    Zero,
    /// Something is there but it is not a valid group header.
    Invalid(&'static str),
}

impl GroupHeader {
    pub(crate) fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&GROUP_MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_position.to_le_bytes());
        out[24..28].copy_from_slice(&self.body_bytes.to_le_bytes());
        out[28..32].copy_from_slice(&self.events.to_le_bytes());
        let crc = crc32c::crc32c(&out[8..GROUP_HEADER_BYTES]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes the group header at the start of `bytes`. Input shorter than a header is
    /// `Zero` if all of it is zero (nothing written), `Invalid` otherwise: recovery meets both at
    /// the end of damaged or truncated files and must never panic there.
    pub(crate) fn decode(bytes: &[u8]) -> Result<GroupHeader, GroupHeaderError> {
        let Some(bytes) = bytes.get(..GROUP_HEADER_BYTES) else {
            if bytes.iter().all(|&b| b == 0) {
                return Err(GroupHeaderError::Zero);
            }
            return Err(GroupHeaderError::Invalid("group header cut short"));
        };
        if bytes.iter().all(|&b| b == 0) {
            return Err(GroupHeaderError::Zero);
        }
        if u32_at(bytes, 0) != GROUP_MAGIC {
            return Err(GroupHeaderError::Invalid("bad group magic"));
        }
        if crc32c::crc32c(&bytes[8..]) != u32_at(bytes, 4) {
            return Err(GroupHeaderError::Invalid("group header checksum mismatch"));
        }
        let header = GroupHeader {
            seq: u64_at(bytes, 8),
            first_position: u64_at(bytes, 16),
            body_bytes: u32_at(bytes, 24),
            events: u32_at(bytes, 28),
        };
        // Behind a valid CRC these can still be absurd (a bug, or a crafted file): every record
        // takes at least a header's bytes, which also bounds what recovery allocates per group.
        if header.events == 0 || header.events as usize > header.body_bytes as usize / RECORD_HEADER_BYTES {
            return Err(GroupHeaderError::Invalid("group event count does not fit its length"));
        }
        if header.first_position > POSITION_MAX {
            return Err(GroupHeaderError::Invalid("group position out of range"));
        }
        Ok(header)
    }
}

/// An end marker: 32 bytes at the start of the block right after the last group of a segment,
/// saying how the log goes on from there:
/// ```text
///  0 u32 magic: "EVCL" (closed) or "EVNX" (continued)   4 u32 CRC32C of bytes [8, 32)
///  8 u64 sequence number of the next group   16 u64 next position
/// 24 u64 closed: when, in microseconds since the Unix epoch; continued: the next segment's number
/// ```
/// - **Closed**: written (and synced) when the store closes cleanly with every group durable. It
///   tells recovery that the log was complete up to there, so that damage in the last groups,
///   which after a crash could be a torn write, is reported instead of cut. The next group written
///   after a reopen starts in the same block and overwrites it.
/// - **Continued**: written (and synced) at a rollover, after the next segment's header is durable
///   and before any group goes there. It vouches for the next segment: a newest segment whose
///   header block (and more) was zeroed or destroyed cannot pass for one that a crash left unused.
///
/// The writer keeps the last block of every segment free, so there is always room for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndMarker {
    pub kind: MarkerKind,
    pub next_seq: u64,
    pub next_position: u64,
    /// Closed: when, in microseconds since the Unix epoch. Continued: the next segment's number.
    pub value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkerKind {
    Closed,
    Continued,
}

pub(crate) const CLOSED_MAGIC: u32 = u32::from_le_bytes(*b"EVCL");
pub(crate) const CONTINUED_MAGIC: u32 = u32::from_le_bytes(*b"EVNX");

/// Whether `bytes` start with an end marker's magic (valid or not).
pub(crate) fn has_marker_magic(bytes: &[u8]) -> bool {
    bytes.get(..4).is_some_and(|magic| {
        let magic = u32_at(magic, 0);
        magic == CLOSED_MAGIC || magic == CONTINUED_MAGIC
    })
}

impl EndMarker {
    pub(crate) fn encode(&self, out: &mut [u8]) {
        let magic = match self.kind {
            MarkerKind::Closed => CLOSED_MAGIC,
            MarkerKind::Continued => CONTINUED_MAGIC,
        };
        out[0..4].copy_from_slice(&magic.to_le_bytes());
        out[8..16].copy_from_slice(&self.next_seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.next_position.to_le_bytes());
        out[24..32].copy_from_slice(&self.value.to_le_bytes());
        let crc = crc32c::crc32c(&out[8..GROUP_HEADER_BYTES]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    /// The marker at the start of `bytes`, if there is a valid one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<EndMarker> {
        let bytes = bytes.get(..GROUP_HEADER_BYTES)?;
        let kind = match u32_at(bytes, 0) {
            CLOSED_MAGIC => MarkerKind::Closed,
            CONTINUED_MAGIC => MarkerKind::Continued,
            _ => return None,
        };
        if crc32c::crc32c(&bytes[8..]) != u32_at(bytes, 4) {
            return None;
        }
        Some(EndMarker { kind, next_seq: u64_at(bytes, 8), next_position: u64_at(bytes, 16), value: u64_at(bytes, 24) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_decode_round_trips() {
        let mut out = RecordBytes::new();
        encode_unsealed(&mut out, "users/42", "ItemCreated", b"meta", b"{\"a\":1}", true);
        let len = seal(&mut out, 7, 3, 99);
        assert_eq!(len, out.len());
        let view = decode(&out).expect("valid record");
        assert_eq!(view.position, 7);
        assert_eq!(view.version, 3);
        assert_eq!(view.timestamp_us, 99);
        assert!(view.commit);
        assert_eq!(view.stream, b"users/42");
        assert_eq!(view.event_type, b"ItemCreated");
        assert_eq!(view.metadata, b"meta");
        assert_eq!(view.data, b"{\"a\":1}");
    }

    #[test]
    fn sealing_a_copy_equals_sealing_in_place() {
        let mut source = RecordBytes::new();
        encode_unsealed(&mut source, "users/7", "ItemCreated", b"", b"{\"b\":2}", false);
        encode_unsealed(&mut source, "users/7", "ItemRenamed", b"m", b"{}", true);
        let mut in_place = source.clone();
        let first = seal(&mut in_place, 10, 4, 123);
        seal(&mut in_place[first..], 11, 5, 123);
        let mut target = vec![0xAAu8; source.len()];
        let first_copy = seal_into(&mut target, &source, 10, 4, 123);
        assert_eq!(first_copy, first);
        seal_into(&mut target[first..], &source[first..], 11, 5, 123);
        assert_eq!(&target[..], &in_place[..]);
        assert!(decode(&target[first..]).expect("second record").commit);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut out = RecordBytes::new();
        encode_unsealed(&mut out, "s", "t", b"", b"data", false);
        seal(&mut out, 1, 0, 5);
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut copy = out.clone();
                copy[byte] ^= 1 << bit;
                assert!(decode(&copy).is_err(), "flip of byte {byte} bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn group_header_round_trips_and_rejects_damage() {
        let header = GroupHeader { seq: 5, first_position: 1000, body_bytes: 4000, events: 40 };
        let mut bytes = [0u8; 32];
        assert_eq!(GroupHeader::decode(&bytes), Err(GroupHeaderError::Zero));
        assert_eq!(GroupHeader::decode(&bytes[..7]), Err(GroupHeaderError::Zero));
        assert!(matches!(GroupHeader::decode(&[1u8; 31]), Err(GroupHeaderError::Invalid(_))));
        header.encode(&mut bytes);
        assert_eq!(GroupHeader::decode(&bytes), Ok(header));
        bytes[20] ^= 1;
        assert!(matches!(GroupHeader::decode(&bytes), Err(GroupHeaderError::Invalid(_))));
    }

    #[test]
    fn end_markers_round_trip_and_are_no_group() {
        for kind in [MarkerKind::Closed, MarkerKind::Continued] {
            let marker = EndMarker { kind, next_seq: 9, next_position: 77, value: 5 };
            let mut bytes = [0u8; 4096];
            marker.encode(&mut bytes);
            assert_eq!(EndMarker::decode(&bytes), Some(marker));
            assert!(matches!(GroupHeader::decode(&bytes), Err(GroupHeaderError::Invalid(_))));
            bytes[17] ^= 4;
            assert_eq!(EndMarker::decode(&bytes), None);
            assert_eq!(EndMarker::decode(&bytes[..31]), None);
        }
    }

    /// attack8: the word-wise `seal_into` against the byte-wise `seal` and an independent CRC
    /// (the crc32c crate over the sealed bytes) at the values where its three words split the
    /// fields: positions and versions at 0, 2^16, 2^32, 2^47 and 2^48 - 1 (and their neighbours),
    /// timestamps at 0 and u64::MAX, every field length at its extremes (the three length bytes
    /// [20, 24) ride in the second word with the version's high bits), and a target longer than
    /// the record, whose bytes past it must stay untouched.
    #[test]
    fn seal_into_equals_seal_at_the_field_boundaries() {
        let edges: [u64; 14] = [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_0001,
            0xffff_ffff,
            0x1_0000_0000,
            0xffff_ffff_ffff >> 1,
            1 << 47,
            0xaaaa_aaaa_aaaa,
            0x5555_5555_5555,
            0xffff_0000_ffff,
            POSITION_MAX - 1,
            POSITION_MAX,
        ];
        let long_stream = "s".repeat(255);
        let long_type = "\u{e9}".repeat(127) + "t";
        assert_eq!(long_type.len(), 255);
        let metadata_max = vec![0xfeu8; u16::MAX as usize];
        let shapes: [(&str, &str, &[u8], &[u8]); 6] = [
            ("s", "t", b"", b""),
            (&long_stream, &long_type, b"", b""),
            ("s", &long_type, &metadata_max, b"x"),
            (&long_stream, "t", &metadata_max[..256], b"12345678"),
            (&long_stream, &long_type, &metadata_max, b"data"),
            ("s", "t", &metadata_max[..255], b""),
        ];
        for (stream, event_type, metadata, data) in shapes {
            for commit in [false, true] {
                let mut source = RecordBytes::new();
                encode_unsealed(&mut source, stream, event_type, metadata, data, commit);
                let len = source.len();
                for &position in &edges {
                    for &version in &edges {
                        for timestamp_us in [0, 1, 1 << 63, u64::MAX] {
                            let mut in_place = source.clone();
                            assert_eq!(seal(&mut in_place, position, version, timestamp_us), len);
                            let mut target = vec![0x5au8; len + 40];
                            assert_eq!(seal_into(&mut target, &source, position, version, timestamp_us), len);
                            let what = format!(
                                "position {position:#x} version {version:#x} timestamp {timestamp_us:#x} \
                                 lengths ({}, {}, {}, {}) commit {commit}",
                                stream.len(),
                                event_type.len(),
                                metadata.len(),
                                data.len()
                            );
                            assert!(target[..len] == in_place[..], "seal_into differs from seal: {what}");
                            assert!(target[len..].iter().all(|&b| b == 0x5a), "bytes past the record written: {what}");
                            let crc = crc32c::crc32c_append(
                                crc32c::crc32c_append(
                                    crc32c::crc32c(&target[RECORD_HEADER_BYTES..len]),
                                    &target[8..32],
                                ),
                                &target[0..4],
                            );
                            assert_eq!(crc, u32_at(&target, 4), "stored CRC is not the crate's: {what}");
                            assert_eq!(target[20..24], source[20..24], "field lengths changed: {what}");
                            let view = decode(&target).unwrap_or_else(|e| panic!("{what}: {e}"));
                            assert_eq!(
                                (view.position, view.version, view.timestamp_us, view.commit, view.len),
                                (position, version, timestamp_us, commit, len),
                                "{what}"
                            );
                            assert_eq!(view.stream, stream.as_bytes(), "{what}");
                            assert_eq!(view.event_type, event_type.as_bytes(), "{what}");
                            assert_eq!(view.metadata, metadata, "{what}");
                            assert_eq!(view.data, data, "{what}");
                        }
                    }
                }
            }
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// The short-piece CRC equals the crate's, for every length, start and seed.
            #[test]
            fn crc_append_equals_the_crates(
                bytes in prop::collection::vec(any::<u8>(), 0..600),
                start in 0usize..9,
                seed in any::<u32>(),
            ) {
                let piece = &bytes[start.min(bytes.len())..];
                prop_assert_eq!(crc_append(seed, piece), crc32c::crc32c_append(seed, piece));
            }

            /// The submitter's word-wise seal equals the byte-wise reference for any position,
            /// version and timestamp in range.
            #[test]
            fn seal_into_equals_seal_in_place(
                position in 0u64..1 << 48,
                version in 0u64..1 << 48,
                timestamp_us in any::<u64>(),
                data in prop::collection::vec(any::<u8>(), 0..300),
                metadata in prop::collection::vec(any::<u8>(), 0..40),
                commit in any::<bool>(),
            ) {
                let mut source = RecordBytes::new();
                encode_unsealed(&mut source, "users/42", "ItemCreated", &metadata, &data, commit);
                let mut in_place = source.clone();
                let len = seal(&mut in_place, position, version, timestamp_us);
                let mut target = vec![0xa5u8; source.len()];
                prop_assert_eq!(seal_into(&mut target, &source, position, version, timestamp_us), len);
                prop_assert_eq!(&target, &in_place);
                let view = decode(&target).expect("a sealed record decodes");
                prop_assert_eq!((view.position, view.version, view.timestamp_us), (position, version, timestamp_us));
            }

            /// The decoder meets torn and damaged bytes in recovery and on every read: whatever
            /// it is given, it returns an error or a view inside the input, and never panics.
            #[test]
            fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                if let Ok(view) = decode(&bytes) {
                    prop_assert!(view.len <= bytes.len());
                }
                let _ = GroupHeader::decode(&bytes);
            }

            /// The same with a valid checksum over random header fields, so that the decoder's
            /// checks behind the CRC (field lengths against the record length) are reached.
            #[test]
            fn decode_checks_lengths_behind_a_valid_crc(
                mut bytes in prop::collection::vec(any::<u8>(), RECORD_HEADER_BYTES..400),
                length in RECORD_HEADER_BYTES..400usize,
            ) {
                let length = length.min(bytes.len());
                bytes[0..4].copy_from_slice(&(length as u32).to_le_bytes());
                let crc = crc32c::crc32c_append(
                    crc32c::crc32c_append(crc32c::crc32c(&bytes[RECORD_HEADER_BYTES..length]), &bytes[8..32]),
                    &bytes[0..4],
                );
                bytes[4..8].copy_from_slice(&crc.to_le_bytes());
                if let Ok(view) = decode(&bytes) {
                    prop_assert_eq!(view.len, length);
                    let fields = view.stream.len() + view.event_type.len() + view.metadata.len() + view.data.len();
                    prop_assert_eq!(fields, length - RECORD_HEADER_BYTES);
                }
            }

            /// Every record the writer can make decodes to what was put in, sealed in place or
            /// copied, alone or after other records.
            #[test]
            fn records_round_trip(
                stream in "[a-z0-9/-]{1,60}",
                event_type in "[A-Za-z]{1,40}",
                metadata in prop::collection::vec(any::<u8>(), 0..80),
                data in prop::collection::vec(any::<u8>(), 0..3000),
                position in 0u64..(1 << 48),
                version in 0u64..(1 << 48),
                timestamp_us in any::<u64>(),
                commit in any::<bool>(),
                before in 0usize..3,
            ) {
                let mut source = RecordBytes::new();
                for _ in 0..before {
                    encode_unsealed(&mut source, "x", "y", b"", b"earlier", false);
                }
                let start = source.len();
                encode_unsealed(&mut source, &stream, &event_type, &metadata, &data, commit);
                let mut target = vec![0u8; source.len() - start];
                let len = seal_into(&mut target, &source[start..], position, version, timestamp_us);
                prop_assert_eq!(len, target.len());
                let view = decode(&target).expect("a sealed record decodes");
                prop_assert_eq!(
                    (view.position, view.version, view.timestamp_us, view.commit),
                    (position, version, timestamp_us, commit)
                );
                prop_assert_eq!(view.stream, stream.as_bytes());
                prop_assert_eq!(view.event_type, event_type.as_bytes());
                prop_assert_eq!(view.metadata, &metadata[..]);
                prop_assert_eq!(view.data, &data[..]);
            }
        }
    }
}
