//! FIEMAP for the attack5 tests: whether a segment file still has unwritten extents (fallocated,
//! never written), which tells a segment that `SegmentPrepare::Auto` only fallocated from one it
//! zeroed.

// Each test file that includes this module uses only part of it.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Whether some extent of `path` is still unwritten; `None` if the file system has no FIEMAP.
pub fn has_unwritten_extents(path: &Path) -> Option<bool> {
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const EXTENTS: usize = 64;
    // struct fiemap (32 bytes) followed by EXTENTS struct fiemap_extent (56 bytes each), in u64
    // words so that it is aligned: word 1 is fm_length, word 2 fm_flags | fm_mapped_extents << 32,
    // word 3 fm_extent_count.
    let mut words = vec![0u64; (32 + 56 * EXTENTS) / 8];
    words[1] = u64::MAX;
    words[3] = EXTENTS as u64;
    let file = std::fs::File::open(path).expect("open segment for FIEMAP");
    // SAFETY: `words` is a valid, writable struct fiemap with room for EXTENTS extents.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, words.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    let mapped = ((words[2] >> 32) as usize).min(EXTENTS);
    // fe_flags is the u32 at byte 40 of each 56-byte extent: word 5 of 7, low half.
    Some((0..mapped).any(|i| {
        let flags = words[4 + 7 * i + 5] as u32;
        flags & FIEMAP_EXTENT_UNWRITTEN != 0
    }))
}

/// The `.evs` files of `dir`, by name.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "evs"))
        .collect();
    files.sort();
    files
}

/// How many `.evs` files of `dir` have unwritten extents.
pub fn fallocated_segments(dir: &Path) -> usize {
    segment_files(dir).iter().filter(|path| has_unwritten_extents(path) == Some(true)).count()
}
