//! Tickets: an append's handle, resolved once its events are durable, by a blocking `wait()` or
//! as a future in any executor (see shared.rs for the watermark protocol they follow).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::shared::{Shared, ThreadWaker};
use crate::write::queue::{Request, FAILED, PENDING};
use crate::Appended;

/// What the tickets of one `Store` value hold on to. Each clone of a `Store` gets its own, so
/// producers on different threads (each with its own clone) do not bounce one shared reference
/// count between their cores on every append and every wait: profiles of the seed workload
/// showed those two atomic operations as the hottest instructions of `append` and `wait`.
pub(crate) struct Local {
    pub(crate) shared: Arc<Shared>,
}

impl Local {
    pub(crate) fn new(shared: &Arc<Shared>) -> Arc<Local> {
        Arc::new(Local { shared: shared.clone() })
    }
}

/// Resolves once the append is durable (`wait()` blocks; `.await` works in any executor).
///
/// Dropping a ticket does **not** cancel the append: it was queued when `append` returned and
/// becomes durable all the same; only the caller no longer learns when (or whether) it did.
#[must_use = "an append is only known durable once its ticket resolves"]
pub struct Ticket {
    request: Arc<Request>,
    local: Arc<Local>,
    /// Whether this ticket counts as a blocked caller of its shard (see write/queue.rs).
    blocked: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.unblock();
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("state", &self.request.state.load(Ordering::Relaxed)).finish()
    }
}

impl Ticket {
    /// The ticket of `request`, just pushed on the queue by a producer holding `local`.
    pub(crate) fn new(request: Arc<Request>, local: Arc<Local>) -> Ticket {
        Ticket { request, local, blocked: false }
    }

    fn shared(&self) -> &Shared {
        &self.local.shared
    }

    /// The outcome, if known. `seq_cst` for the re-check done before sleeping.
    fn check(&self, ordering: Ordering) -> Option<Result<Appended>> {
        let state = self.request.state.load(ordering);
        if state == FAILED {
            return Some(Err(self.request.error.get().cloned().unwrap_or(Error::Closed)));
        }
        if state != PENDING {
            let end = state + self.request.events as u64;
            if end <= self.shared().durable.load(ordering) {
                return Some(Ok(Appended { position: state, version: self.request.version.load(Ordering::Acquire) }));
            }
        }
        if let Some(cause) = self.shared().poisoned.get() {
            return Some(Err(Error::Poisoned { cause: cause.clone() }));
        }
        if self.shared().stopped.load(Ordering::SeqCst) {
            // The submitter exited without taking this request: the store was closed first.
            return Some(Err(Error::Closed));
        }
        None
    }

    /// Counts this caller as blocked on its append's shard, so the submitter writes the shard's appends
    /// without waiting for more bytes. Called before the final check that precedes a sleep.
    fn block(&mut self) {
        if !self.blocked {
            self.blocked = true;
            self.shared().queue.enter_blocked(self.request.shard);
        }
    }

    fn unblock(&mut self) {
        if self.blocked {
            self.blocked = false;
            self.shared().queue.leave_blocked(self.request.shard);
        }
    }

    /// Blocks until the append is durable (or failed).
    pub fn wait(mut self) -> Result<Appended> {
        if let Some(outcome) = self.check(Ordering::Acquire) {
            return outcome;
        }
        self.block();
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
        // `Drop` takes this caller off its shard's blocked count.
        outcome
    }

    /// Registers `waker` to be woken once the watermark reaches this ticket's end, or at the
    /// next publication while the submitter has not placed the append yet (target 0).
    fn register(&self, waker: &Waker) {
        let state = self.request.state.load(Ordering::Acquire);
        let target = if state == PENDING || state == FAILED { 0 } else { state + self.request.events as u64 };
        self.shared().register_waker(target, waker);
    }

    /// Whether the outcome is already known (durable or failed).
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
