//! Tickets: an append's handle, resolved once its events are durable, by a blocking `wait()` or
//! as a future in any executor (see shared.rs for the watermark protocol they follow).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::shared::{Shared, ThreadWaker};
use crate::write::lane::{Lane, Outcome};
use crate::Appended;

/// What a `Store` handle and its tickets hold on to: the store, and the handle's lane (its own
/// queue to the submitter, taken at its first append; see write/lane.rs). Each clone of a
/// `Store` gets its own, so producers on different threads (each with its own clone) share no
/// queue tail and no reference count.
pub(crate) struct Local {
    pub(crate) shared: Arc<Shared>,
    lane: OnceLock<(Arc<Lane>, bool)>,
}

impl Local {
    pub(crate) fn new(shared: &Arc<Shared>) -> Arc<Local> {
        Arc::new(Local { shared: shared.clone(), lane: OnceLock::new() })
    }

    /// This handle's lane, taken from the store's lanes at the first call.
    #[inline]
    pub(crate) fn lane(&self) -> &Arc<Lane> {
        &self.lane.get_or_init(|| self.shared.lanes.acquire()).0
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // The handle and all its tickets are gone: the next handle may use the lane (entries
        // still in it are written all the same).
        if let Some((lane, true)) = self.lane.take() {
            self.shared.lanes.give_back(lane);
        }
    }
}

/// Resolves once the append is durable (`wait()` blocks; `.await` works in any executor).
///
/// Dropping a ticket does **not** cancel the append: it was queued when `append` returned and
/// becomes durable all the same; only the caller no longer learns when (or whether) it did.
#[must_use = "an append is only known durable once its ticket resolves"]
pub struct Ticket {
    local: Arc<Local>,
    /// The append's sequence number in its lane.
    seq: u64,
    events: u32,
    /// Whether this ticket counts as a blocked caller of its lane (see write/submitter.rs).
    blocked: bool,
}

impl Drop for Ticket {
    #[inline]
    fn drop(&mut self) {
        self.unblock();
        self.lane().release_ticket(self.seq);
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("seq", &self.seq).field("events", &self.events).finish()
    }
}

impl Ticket {
    /// The ticket of append `seq` of `local`'s lane, just published.
    #[inline]
    pub(crate) fn new(local: Arc<Local>, seq: u64, events: u32) -> Ticket {
        Ticket { local, seq, events, blocked: false }
    }

    #[inline]
    fn shared(&self) -> &Shared {
        &self.local.shared
    }

    #[inline]
    fn lane(&self) -> &Lane {
        self.local.lane()
    }

    /// The outcome, if known. `seq_cst` for the re-check done before sleeping.
    #[inline]
    fn check(&self, ordering: Ordering) -> Option<Result<Appended>> {
        match self.lane().outcome(self.seq) {
            Outcome::Failed(error) => return Some(Err(error)),
            Outcome::Placed { position, version } => {
                if position + self.events as u64 <= self.shared().durable.load(ordering) {
                    return Some(Ok(Appended { position, version }));
                }
            }
            Outcome::Pending => {}
        }
        if let Some(cause) = self.shared().poisoned.get() {
            return Some(Err(Error::Poisoned { cause: cause.clone() }));
        }
        if self.shared().stopped.load(Ordering::SeqCst) {
            // The submitter exited without taking this append: the store was closed first.
            return Some(Err(Error::Closed));
        }
        None
    }

    /// Counts this caller as blocked on its lane, so the submitter writes the lane's appends
    /// without waiting for more bytes, and wakes it if it sleeps. Called before the final check
    /// that precedes a sleep.
    fn block(&mut self) {
        if !self.blocked {
            self.blocked = true;
            // The flush mark first: the submitter reads it once it sees the count.
            self.lane().flush_mark.fetch_max(self.seq + 1, Ordering::SeqCst);
            // SeqCst: either the submitter sees the count, or this caller sees the watermark
            // the submitter published before looking.
            self.lane().blocked.fetch_add(1, Ordering::SeqCst);
            self.shared().ring_doorbell(true);
        }
    }

    #[inline]
    fn unblock(&mut self) {
        if self.blocked {
            self.blocked = false;
            self.lane().blocked.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Blocks until the append is durable (or failed).
    pub fn wait(mut self) -> Result<Appended> {
        if let Some(outcome) = self.check(Ordering::Acquire) {
            return outcome;
        }
        self.block();
        if self.shared().options.polling {
            // Polling mode: no waker, no park; yield between looks (see `Options::polling`).
            loop {
                if let Some(outcome) = self.check(Ordering::Acquire) {
                    return outcome;
                }
                std::thread::yield_now();
            }
        }
        let waker = ThreadWaker::current();
        let outcome = loop {
            self.register(&waker);
            if let Some(outcome) = self.check(Ordering::SeqCst) {
                break outcome;
            }
            // Woken by the submitter once the watermark reaches this ticket's target (or at the
            // next publication while the append is not placed); a spurious return just loops.
            std::thread::park();
        };
        // `Drop` takes this caller off its lane's blocked count.
        outcome
    }

    /// Registers `waker` to be woken once the watermark reaches this ticket's end, or at the
    /// next publication while the submitter has not placed the append yet (target 0).
    fn register(&self, waker: &Waker) {
        let target = match self.lane().outcome(self.seq) {
            Outcome::Placed { position, .. } => position + self.events as u64,
            _ => 0,
        };
        self.shared().register_waker(target, waker);
    }

    /// Whether the outcome is already known (durable or failed).
    #[inline]
    pub fn is_done(&self) -> bool {
        self.check(Ordering::SeqCst).is_some()
    }
}

impl Future for Ticket {
    type Output = Result<Appended>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A Ticket holds only pointers and a flag: it is Unpin.
        let this = self.get_mut();
        if let Some(outcome) = this.check(Ordering::Acquire) {
            this.unblock();
            return Poll::Ready(outcome);
        }
        this.block();
        this.register(cx.waker());
        match this.check(Ordering::SeqCst) {
            Some(outcome) => {
                this.unblock();
                Poll::Ready(outcome)
            }
            None => Poll::Pending,
        }
    }
}
