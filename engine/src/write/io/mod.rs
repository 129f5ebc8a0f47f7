//! The I/O behind the submitter: one trait, two backends (io_uring and portable), and a
//! fault-injecting wrapper for tests.
//!
//! Protocol: the submitter hands a backend a [`GroupWrite`] naming a slot of the buffer pool;
//! the backend owns that buffer until it reports the slot's [`Completion`]. Completions may
//! arrive in any order; the submitter restores log order. With `SyncMode::Fdatasync` the sync is
//! ordered after the write (linked on the ring), so a slot completes only once both are done.
//!
//! `FaultyIo` also keeps the plan's I/O journal when it is on (see `testing.rs`): a write is
//! recorded before it reaches the backend, and as durable once its completion comes back Ok in
//! a durable sync mode, after any injected sync fault, so before the submitter can acknowledge it.

pub(crate) mod portable;
pub(crate) mod uring;

use std::os::fd::RawFd;

use crate::testing::FaultPlan;
use crate::SyncMode;

/// One group write: `len` bytes from buffer `slot` at `offset` of `fd`, segment `segment`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupWrite {
    pub slot: usize,
    pub fd: RawFd,
    /// The number of the segment `fd` belongs to (only the I/O journal needs it).
    pub segment: u64,
    pub buf: *const u8,
    pub len: usize,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Write,
    Sync,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    pub slot: usize,
    /// `Err((stage, errno))`; a short write counts as EIO on the write.
    pub result: Result<(), (Stage, i32)>,
    /// Whether a separate sync operation ran (counted as an fdatasync).
    pub synced: bool,
}

pub(crate) trait IoBackend: Send {
    /// Starts the write (and its sync). The buffer must stay untouched until its completion.
    fn submit(&mut self, write: GroupWrite, sync: SyncMode) -> std::io::Result<()>;
    /// Appends finished writes to `out`, blocking until at least `wait_for` have finished
    /// (0: never block).
    fn complete(&mut self, wait_for: usize, out: &mut Vec<Completion>) -> std::io::Result<()>;
    /// Sleeps until a write completes or `word` stops holding `value` (a producer's doorbell,
    /// a futex wake), then returns; completions are then collected with `complete(0, ..)`.
    /// `Ok(false)`: this backend cannot wait on both; the caller waits for a completion alone.
    fn sleep(&mut self, word: &std::sync::atomic::AtomicU32, value: u32) -> std::io::Result<bool> {
        let _ = (word, value);
        Ok(false)
    }
    /// Makes finished writes visible to `complete(0, ..)` without blocking, where the backend
    /// needs a call into the kernel for that (io_uring runs its completion work there).
    fn poll(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Wraps a backend and injects the faults of a [`FaultPlan`].
pub(crate) struct FaultyIo {
    pub inner: Box<dyn IoBackend>,
    pub plan: FaultPlan,
    failed_writes: Vec<Completion>,
    /// Per slot, the journal id of the write in flight in it, if its sync mode makes it durable
    /// on completion (`SyncMode::None` never does).
    journal_ids: Vec<Option<u64>>,
}

impl FaultyIo {
    pub(crate) fn new(inner: Box<dyn IoBackend>, plan: FaultPlan) -> FaultyIo {
        FaultyIo { inner, plan, failed_writes: Vec::new(), journal_ids: Vec::new() }
    }
}

impl IoBackend for FaultyIo {
    fn submit(&mut self, write: GroupWrite, sync: SyncMode) -> std::io::Result<()> {
        if let Some(errno) = self.plan.on_write() {
            // The write never reaches the device, as when the device rejects it.
            self.failed_writes.push(Completion { slot: write.slot, result: Err((Stage::Write, errno)), synced: false });
            return Ok(());
        }
        if self.plan.recording() {
            // SAFETY: the submitter keeps the slot's buffer alive and untouched from submit until
            // its completion is reaped; it is only read here, before the backend gets it.
            let data = unsafe { std::slice::from_raw_parts(write.buf, write.len) };
            let id = self.plan.record_write(write.segment, write.offset, data);
            if self.journal_ids.len() <= write.slot {
                self.journal_ids.resize(write.slot + 1, None);
            }
            self.journal_ids[write.slot] = id.filter(|_| sync != SyncMode::None);
        }
        self.inner.submit(write, sync)
    }

    fn complete(&mut self, wait_for: usize, out: &mut Vec<Completion>) -> std::io::Result<()> {
        let injected = self.failed_writes.len();
        out.append(&mut self.failed_writes);
        let start = out.len();
        self.inner.complete(wait_for.saturating_sub(injected), out)?;
        for completion in &mut out[start..] {
            if completion.result.is_ok() {
                if let Some(errno) = self.plan.on_sync() {
                    completion.result = Err((Stage::Sync, errno));
                }
            }
            let id = self.journal_ids.get_mut(completion.slot).and_then(Option::take);
            if let (Some(id), Ok(())) = (id, completion.result) {
                self.plan.record_durable(id);
            }
        }
        Ok(())
    }

    fn sleep(&mut self, word: &std::sync::atomic::AtomicU32, value: u32) -> std::io::Result<bool> {
        if !self.failed_writes.is_empty() {
            // An injected failure is a completion already there.
            return Ok(true);
        }
        self.inner.sleep(word, value)
    }

    fn poll(&mut self) -> std::io::Result<()> {
        self.inner.poll()
    }
}
