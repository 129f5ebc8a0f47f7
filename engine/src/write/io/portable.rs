//! The portable backend: `pwritev2` (with RWF_DSYNC in `Dsync` mode) or `pwrite` + `fdatasync`,
//! done synchronously on the submitter thread. No pipelining, but it works wherever Linux
//! does, including containers whose seccomp filter forbids io_uring.

use super::{Completion, GroupWrite, IoBackend, Stage};
use crate::SyncMode;

#[derive(Default)]
pub(crate) struct PortableIo {
    done: Vec<Completion>,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

impl IoBackend for PortableIo {
    fn submit(&mut self, write: GroupWrite, sync: SyncMode) -> std::io::Result<()> {
        let flags = if sync == SyncMode::Dsync { libc::RWF_DSYNC } else { 0 };
        let mut written = 0usize;
        let mut result = Ok(());
        while written < write.len {
            let iov = libc::iovec {
                // SAFETY: the submitter keeps the buffer alive and untouched until completion.
                iov_base: unsafe { write.buf.add(written) } as *mut libc::c_void,
                iov_len: write.len - written,
            };
            // SAFETY: one valid iovec, a valid descriptor, an in-range offset.
            let n = unsafe { libc::pwritev2(write.fd, &iov, 1, (write.offset + written as u64) as libc::off_t, flags) };
            if n < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                result = Err((Stage::Write, e));
                break;
            }
            if n == 0 {
                result = Err((Stage::Write, libc::EIO));
                break;
            }
            written += n as usize;
        }
        let mut synced = false;
        if result.is_ok() && sync == SyncMode::Fdatasync {
            synced = true;
            // SAFETY: fdatasync on a valid descriptor.
            if unsafe { libc::fdatasync(write.fd) } != 0 {
                result = Err((Stage::Sync, errno()));
            }
        }
        self.done.push(Completion { slot: write.slot, result, synced });
        Ok(())
    }

    fn complete(&mut self, _wait_for: usize, out: &mut Vec<Completion>) -> std::io::Result<()> {
        out.append(&mut self.done);
        Ok(())
    }
}
