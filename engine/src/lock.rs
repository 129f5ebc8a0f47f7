//! The directory lock: an exclusive `flock` on `<dir>/LOCK`, held for the life of the store.
//!
//! flock locks belong to the open file description, so a second `Store::open` of the same
//! directory fails both from another process and from this one. The kernel drops the lock when
//! the process dies, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::Locked { path: dir.to_path_buf() });
            }
            return Err(Error::io(format!("locking {}", path.display()), err));
        }
        Ok(DirLock { _file: file })
    }
}
