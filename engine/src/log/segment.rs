//! Segment files: fixed-size, pre-written files named `<number:020>.evs`, prepared under the name
//! `<number:020>.evs.partial` and renamed once whole, so that every `.evs` file was once a whole,
//! synced segment.
//!
//! Layout: block 0 (4 KiB) is the segment header, written by the submitter when it starts using
//! the segment; groups follow from byte 4096, each on a 4 KiB boundary. A segment whose header
//! block is all zero was prepared but never used.
//!
//! Segment header:
//! ```text
//!  0 [u8; 8] magic "EVSEGMNT"   8 u32 format version   12 u32 CRC32C of bytes [16, 56)
//! 16 u64 segment number   24 u64 first position   32 u64 segment bytes   40 u64 created, us
//! 48 u32 groups in flight max   52 u32 group bytes max   (the writer's pipeline window)
//! ```
//! Invariants: a segment is handed to the submitter only once its full size is allocated (and,
//! with `SegmentPrepare::Zeroed`, written with zeros), fsynced, and its directory entry fsynced,
//! so later fdatasyncs of the data never wait on file-system metadata. One segment is prepared
//! ahead, in the background, by the preparer thread.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::buffer::AlignedBuf;
use crate::constants::{
    BLOCK_BYTES, GROUPS_IN_FLIGHT_LIMIT, POSITION_MAX, SEGMENT_BYTES_LIMIT, SEGMENT_HEADER_BYTES, SEGMENT_NUMBER_MAX,
    ZERO_CHUNK_BYTES,
};
use crate::error::{Error, Result};
use crate::platform;
use crate::testing::FaultPlan;
use crate::SegmentPrepare;

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"EVSEGMNT";
/// 2: end markers after the last group of a segment and the last block kept for them (a store
/// of version 1 has neither, so this build's recovery would take it for damaged).
pub(crate) const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub number: u64,
    pub first_position: u64,
    pub segment_bytes: u64,
    pub created_us: u64,
    pub groups_in_flight_max: u32,
    pub group_bytes_max: u32,
}

impl SegmentHeader {
    pub(crate) fn encode(&self, out: &mut [u8]) {
        out[..SEGMENT_HEADER_BYTES].fill(0);
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.number.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_position.to_le_bytes());
        out[32..40].copy_from_slice(&self.segment_bytes.to_le_bytes());
        out[40..48].copy_from_slice(&self.created_us.to_le_bytes());
        out[48..52].copy_from_slice(&self.groups_in_flight_max.to_le_bytes());
        out[52..56].copy_from_slice(&self.group_bytes_max.to_le_bytes());
        let crc = crc32c::crc32c(&out[16..56]);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
    }

    /// `Ok(None)`: the header block is all zero (prepared, never used). `bytes` shorter than a
    /// header block is all-zero (`Ok(None)`) or invalid: never a panic, whatever the file holds.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Option<SegmentHeader>, String> {
        if bytes.iter().take(SEGMENT_HEADER_BYTES).all(|&b| b == 0) {
            return Ok(None);
        }
        let Some(block) = bytes.get(..SEGMENT_HEADER_BYTES) else {
            return Err(format!("segment header cut short: {} of {SEGMENT_HEADER_BYTES} bytes", bytes.len()));
        };
        if block[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".into());
        }
        let version = u32::from_le_bytes(block[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(format!("unsupported format version {version} (this build reads {FORMAT_VERSION})"));
        }
        let crc = u32::from_le_bytes(block[12..16].try_into().expect("4 bytes"));
        if crc32c::crc32c(&block[16..56]) != crc {
            return Err("segment header checksum mismatch".into());
        }
        let u64_at = |at: usize| u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"));
        let header = SegmentHeader {
            number: u64_at(16),
            first_position: u64_at(24),
            segment_bytes: u64_at(32),
            created_us: u64_at(40),
            groups_in_flight_max: u32::from_le_bytes(block[48..52].try_into().expect("4 bytes")),
            group_bytes_max: u32::from_le_bytes(block[52..56].try_into().expect("4 bytes")),
        };
        header.check()?;
        Ok(Some(header))
    }

    /// Fields behind a valid CRC can still be absurd (a bug, or a crafted file); recovery sizes
    /// its scans from them, so they are held to the limits `Options` are held to.
    fn check(&self) -> Result<(), String> {
        let block = BLOCK_BYTES as u64;
        if self.segment_bytes % block != 0 || self.segment_bytes < 3 * block || self.segment_bytes > SEGMENT_BYTES_LIMIT
        {
            return Err(format!("segment header says the segment has {} bytes", self.segment_bytes));
        }
        if self.groups_in_flight_max == 0 || self.groups_in_flight_max as usize > GROUPS_IN_FLIGHT_LIMIT {
            return Err(format!("segment header says {} groups in flight", self.groups_in_flight_max));
        }
        if self.group_bytes_max as usize % BLOCK_BYTES != 0 || (self.group_bytes_max as usize) < 2 * BLOCK_BYTES {
            return Err(format!("segment header says groups of {} bytes", self.group_bytes_max));
        }
        // A segment may start at the very end of a full log (2^48): it then holds no group.
        if self.first_position > POSITION_MAX + 1 {
            return Err(format!("segment header says it starts at position {}", self.first_position));
        }
        if self.number > SEGMENT_NUMBER_MAX {
            return Err(format!("segment header names segment {}", self.number));
        }
        Ok(())
    }
}

pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.evs"))
}

/// Where segment `number` is prepared before it is renamed to its real name.
pub(crate) fn partial_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.evs.partial"))
}

/// Leftovers of preparations a crash interrupted (`*.evs.partial`): they never held data.
pub(crate) fn list_partials(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        if entry.file_name().to_str().is_some_and(|name| name.ends_with(".evs.partial")) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Segment files in `dir`, sorted by number.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".evs") else { continue };
        // Exactly 20 ASCII digits: `parse` alone would also take `+0000000000000000001`, a
        // stray file that would then pass for a second segment 1.
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(number) = stem.parse::<u64>() {
                out.push((number, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Opens a segment for writing (O_DIRECT unless the file system refuses it).
pub(crate) fn open_for_write(path: &Path, direct: bool) -> Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    options.open(path).map_err(|e| Error::io(format!("opening segment {}", path.display()), e))
}

/// A segment ready for use: allocated, zeroed (if asked), durable in its directory.
pub(crate) struct PreparedSegment {
    pub number: u64,
    pub file: File,
    /// Its size in bytes (see [`segment_size`]).
    pub bytes: u64,
}

/// The size of segment `number`: segments grow, doubling from the smallest that holds one
/// largest group (`group_bytes_max` plus the header block and the block kept for an end marker)
/// up to `segment_bytes`, so that a store of a handful of events costs megabytes, not a whole
/// `segment_bytes` (256 MiB by default), while a big log reaches full-size segments after a few.
/// A function of the number alone: recovery needs no record of it (each header states its size).
pub(crate) fn segment_size(number: u64, segment_bytes: u64, group_bytes_max: usize) -> u64 {
    let smallest = (group_bytes_max + 2 * BLOCK_BYTES) as u64;
    smallest
        .checked_shl(number.min(63) as u32)
        .filter(|&size| size >> number.min(63) == smallest)
        .map_or(segment_bytes, |size| size.clamp(smallest.min(segment_bytes), segment_bytes))
}

/// Creates segment `number` of `bytes` bytes. Runs on the preparer thread (and in recovery).
pub(crate) fn prepare(
    dir: &Path,
    number: u64,
    bytes: u64,
    mode: SegmentPrepare,
    direct: bool,
    faults: Option<&FaultPlan>,
    zeros: &AlignedBuf,
) -> Result<PreparedSegment> {
    let path = segment_path(dir, number);
    let partial = partial_path(dir, number);
    let context = || format!("creating segment {}", path.display());
    if let Some(errno) = faults.and_then(|f| f.segment_errno()) {
        return Err(Error::from_errno(context(), errno));
    }
    if number > SEGMENT_NUMBER_MAX {
        // Locations hold 24 bits of segment number; a file past them would only be in the way.
        return Err(Error::LogFull { what: "segment numbering", max: SEGMENT_NUMBER_MAX + 1 });
    }
    // The segment is prepared under a temporary name and renamed only once it is allocated,
    // zeroed and synced: a `.evs` file is always a whole segment, so recovery can tell a
    // truncated segment (damage) from a crash during preparation (a leftover `.evs.partial`).
    let _ = std::fs::remove_file(&partial);
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = options.open(&partial).map_err(|e| Error::io(context(), e))?;
    let result = (|| {
        // SAFETY: fallocate on a valid descriptor; mode 0 allocates and extends the file.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
        if rc != 0 {
            return Err(Error::io(context(), std::io::Error::last_os_error()));
        }
        if mode == SegmentPrepare::Zeroed {
            // Writing real zeros turns the extents from "unwritten" into "written", so the
            // fdatasync after each group does not also have to journal an extent conversion.
            let mut offset = 0u64;
            while offset < bytes {
                let chunk = (bytes - offset).min(zeros.capacity() as u64) as usize;
                file.write_all_at(&zeros.as_slice()[..chunk], offset).map_err(|e| Error::io(context(), e))?;
                offset += chunk as u64;
            }
        }
        file.sync_all().map_err(|e| Error::io(context(), e))?;
        std::fs::rename(&partial, &path).map_err(|e| Error::io(context(), e))?;
        platform::sync_dir(dir)
    })();
    if let Err(e) = result {
        drop(file);
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    // Tests' I/O journal (testing.rs): from here on a crash finds this file, all zeros.
    if let Some(plan) = faults {
        plan.record_created(number, bytes);
    }
    Ok(PreparedSegment { number, file, bytes })
}

/// The background thread that keeps one segment prepared ahead of the submitter.
pub(crate) struct Preparer {
    pub receiver: Receiver<Result<PreparedSegment>>,
    /// Tells the thread to prepare the next segment (see [`Preparer::request`]).
    go: SyncSender<bool>,
    /// A request is out and its segment not taken yet.
    requested: bool,
    handle: Option<JoinHandle<()>>,
}

pub(crate) struct PreparerConfig {
    pub dir: PathBuf,
    pub first_number: u64,
    pub segment_bytes: u64,
    pub group_bytes_max: usize,
    pub grow: bool,
    pub mode: SegmentPrepare,
    pub direct: bool,
    pub faults: Option<FaultPlan>,
}

impl Preparer {
    pub(crate) fn start(config: PreparerConfig) -> Result<Preparer> {
        // Rendezvous channel: the preparer finishes one segment and waits until it is taken, so
        // at most one segment is ready ahead. It starts a segment only when asked (`request`):
        // the submitter asks once the active segment is a quarter full, so a small store has no
        // unused segment on disk, and a big writer still finds the next one ready. After a
        // failure it sends the error and, once that was taken, tries again without being asked:
        // a caller that receives twice always gets a fresh attempt.
        let (sender, receiver) = std::sync::mpsc::sync_channel(0);
        let (go, go_receiver) = std::sync::mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("evstore-preparer".into())
            .spawn(move || run_preparer(config, go_receiver, sender))
            .map_err(|e| Error::io("spawning the segment preparer thread", e))?;
        Ok(Preparer { receiver, go, requested: false, handle: Some(handle) })
    }

    /// Asks for the next segment to be prepared in the background (once per segment); `zeroed`
    /// decides how under `SegmentPrepare::Auto`.
    pub(crate) fn request(&mut self, zeroed: bool) {
        if !self.requested {
            self.requested = true;
            // A full channel holds a request already; a closed one means the thread is gone,
            // which the next receive reports.
            let _ = self.go.try_send(zeroed);
        }
    }

    /// Takes the next prepared segment, asking for it first if nobody did (`zeroed` as in
    /// `request`); waits while it is being prepared.
    pub(crate) fn take(
        &mut self,
        zeroed: bool,
    ) -> std::result::Result<Result<PreparedSegment>, std::sync::mpsc::RecvError> {
        self.request(zeroed);
        let taken = self.receiver.recv();
        if matches!(taken, Ok(Ok(_))) {
            self.requested = false;
        }
        taken
    }

    /// Stops the thread and waits for it (see `Drop`).
    pub(crate) fn stop(self) {
        drop(self);
    }
}

impl Drop for Preparer {
    /// Dropping the receiver makes the thread's next send fail; joining it means no segment file
    /// is still being created once the store (and its directory lock) is gone, even when the
    /// submitter failed while starting.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.receiver, std::sync::mpsc::sync_channel(0).1));
        // And the thread waiting for a request wakes to find the channel closed.
        drop(std::mem::replace(&mut self.go, std::sync::mpsc::sync_channel::<bool>(1).0));
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn run_preparer(config: PreparerConfig, go: Receiver<bool>, sender: SyncSender<Result<PreparedSegment>>) {
    let zeros = AlignedBuf::new(ZERO_CHUNK_BYTES);
    let mut number = config.first_number;
    let mut asked = false;
    let mut zeroed = true;
    loop {
        if !asked {
            match go.recv() {
                Ok(wanted) => zeroed = wanted,
                // The store closed.
                Err(_) => return,
            }
        }
        let mode = match config.mode {
            SegmentPrepare::Auto if zeroed => SegmentPrepare::Zeroed,
            SegmentPrepare::Auto => SegmentPrepare::Fallocated,
            mode => mode,
        };
        let bytes = match config.grow {
            true => segment_size(number, config.segment_bytes, config.group_bytes_max),
            false => config.segment_bytes,
        };
        let result = prepare(&config.dir, number, bytes, mode, config.direct, config.faults.as_ref(), &zeros);
        let ok = result.is_ok();
        if sender.send(result).is_err() {
            // The store closed. An unused prepared segment is harmless: recovery removes it.
            return;
        }
        if ok {
            number += 1;
        }
        // After a failure, the next attempt goes without a new request (see `start`).
        asked = !ok;
    }
}

#[cfg(test)]
mod size_tests {
    use super::segment_size;

    #[test]
    fn segments_double_from_one_largest_group_up_to_segment_bytes() {
        let (full, group) = (256u64 << 20, 4usize << 20);
        let smallest = (4u64 << 20) + 8192;
        let sizes: Vec<u64> = (0..8).map(|n| segment_size(n, full, group)).collect();
        assert_eq!(&sizes[..4], &[smallest, 2 * smallest, 4 * smallest, 8 * smallest]);
        assert_eq!(sizes[6..], [full, full], "capped at segment_bytes");
        assert!(sizes.iter().all(|size| size % 4096 == 0));
        // Huge numbers neither overflow nor panic; a segment_bytes equal to the smallest stays.
        assert_eq!(segment_size(u64::MAX, full, group), full);
        assert_eq!(segment_size(70, full, group), full);
        assert_eq!(segment_size(0, smallest, group), smallest);
        assert_eq!(segment_size(5, smallest, group), smallest);
    }
}
