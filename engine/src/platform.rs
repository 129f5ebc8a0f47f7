//! What the file system under the store can do: its name, whether it survives power loss, and
//! whether it accepts O_DIRECT. Probed once at open.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::buffer::AlignedBuf;
use crate::constants::BLOCK_BYTES;
use crate::error::{Error, Result};

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The statfs magic of the file system holding `path` and its usual name.
pub(crate) fn file_system(path: &Path) -> Result<(i64, String)> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidOption { name: "path", reason: "contains a NUL byte".into() })?;
    // SAFETY: statfs is plain old data; zeroed is a valid value to be overwritten.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(Error::io(format!("statfs {}", path.display()), std::io::Error::last_os_error()));
    }
    let magic = stat.f_type as i64;
    Ok((magic, file_system_name(magic)))
}

pub(crate) fn file_system_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        TMPFS_MAGIC => "tmpfs".into(),
        RAMFS_MAGIC => "ramfs".into(),
        0x794c_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        0x6573_5546 => "fuse".into(),
        other => format!("file system {other:#x}"),
    }
}

/// tmpfs and ramfs keep data in memory only: nothing there survives a power loss.
pub(crate) fn is_volatile(magic: i64) -> bool {
    magic == TMPFS_MAGIC || magic == RAMFS_MAGIC
}

/// Whether O_DIRECT open and an aligned write work in `dir`. EINVAL from either means no.
pub(crate) fn direct_io_works(dir: &Path) -> Result<bool> {
    let path = dir.join(".direct-io-probe");
    let _ = std::fs::remove_file(&path);
    let opened = OpenOptions::new().create(true).truncate(true).write(true).custom_flags(libc::O_DIRECT).open(&path);
    let result = match opened {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(Error::io(format!("probing O_DIRECT in {}", dir.display()), e)),
        Ok(file) => {
            let buf = AlignedBuf::new(BLOCK_BYTES);
            match file.write_at(buf.as_slice(), 0) {
                Ok(_) => Ok(true),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
                Err(e) => Err(Error::io(format!("probing O_DIRECT in {}", dir.display()), e)),
            }
        }
    };
    let _ = std::fs::remove_file(&path);
    result
}

/// fsync a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let file = std::fs::File::open(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    file.sync_all().map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// CLOCK_MONOTONIC in nanoseconds: comparable between threads of one process (the bench's
/// live-delivery latency compares the submitter's publication with a subscriber's hand-over).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps while `word` holds `expected`, at most `timeout` (a private futex wait; spurious
/// returns are possible and harmless: callers look again).
pub(crate) fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32, timeout: std::time::Duration) {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the futex word is a live u32 for the whole call; the timeout is a valid timespec.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &timeout as *const libc::timespec,
        )
    };
}

/// Wakes every thread (and io_uring futex wait) sleeping on `word`.
pub(crate) fn futex_wake_all(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: FUTEX_WAKE only reads the address to find its waiters.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX) };
}
