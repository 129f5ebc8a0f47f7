//! State shared by producers, the submitter and readers: the durable watermark (as a position
//! and as a location), the wakers of waiting tickets, the poisoned and closing flags, the index
//! and the counters. It stands below both the write path and the read path.
//!
//! Protocol (completion by watermark): the submitter writes an append's first position into its
//! request when it places it in a group, and publishes the durable watermark (`durable`: the
//! number of durable events) once that group and every earlier one are durable. A ticket is done
//! when `first + events <= durable`: one atomic store per group, not one channel per event. A
//! caller that must wait registers a waker with the log end its append needs (0 while the append
//! is not placed yet: woken at the next publication); the submitter wakes only the wakers whose
//! target the new watermark reached.
//!
//! Invariants: `durable` and `durable_end` only grow; nothing past them is acknowledged or
//! returned to a reader; after `poisoned` is set they never move again. `durable_end` (the same
//! end, as a location, which bounds stream reads) is stored just before `durable`, so that a
//! caller whose ticket resolved always finds its events in a stream read; a stream read may thus
//! return a durable group an instant before `durable_position()` counts it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Wake, Waker};
use std::thread::Thread;

use crate::log::index::Index;
use crate::write::lane::Lanes;
use crate::{Backend, Options};

#[derive(Default)]
pub(crate) struct Counters {
    pub events: AtomicU64,
    pub appends: AtomicU64,
    pub groups: AtomicU64,
    pub syncs: AtomicU64,
    pub disk_bytes: AtomicU64,
    pub record_bytes: AtomicU64,
    pub payload_bytes: AtomicU64,
    pub segments: AtomicU64,
}

pub(crate) struct Shared {
    pub options: Options,
    pub dir: PathBuf,
    pub direct: bool,
    /// The producers' queues (write/lane.rs).
    pub lanes: Lanes,
    pub durable: AtomicU64,
    /// The durable end as a location (see log/index.rs): every record located below it is durable.
    /// Stored before `durable`, and like it only ever grows.
    pub durable_end: AtomicU64,
    /// When `durable` last moved (`platform::monotonic_ns`), stored just before it: what the
    /// bench measures live delivery from.
    pub published_ns: AtomicU64,
    pub closing: AtomicBool,
    /// The submitter has exited: nothing more will become durable.
    pub stopped: AtomicBool,
    pub poisoned: OnceLock<String>,
    /// `AWAKE`, `LINGERING` (asleep with an open group, until its linger time ends), `IDLE`
    /// or `IO_WAIT` (asleep until a write completes): also the futex word it sleeps on.
    pub submitter_sleeping: AtomicU32,
    pub submitter_thread: OnceLock<Thread>,
    /// (target, waker, owner): owner 0 for tickets, a subscription's own token for it.
    pub wakers: Mutex<Vec<(u64, Waker, u64)>>,
    /// Tokens for subscriptions' waker registrations (from 1).
    pub waker_owners: AtomicU64,
    pub wakers_waiting: AtomicUsize,
    pub index: Index,
    pub counters: Counters,
    pub backend: OnceLock<Backend>,
}

impl Shared {
    /// Wakes blocked and async waiters whose appends may have completed.
    ///
    /// The wakers are called after the lock is released (a waker that polls its task inline
    /// would otherwise re-enter `Ticket::register` and deadlock), and a waker that panics is
    /// contained: it is the caller's code, running on the submitter thread.
    pub(crate) fn wake_waiters(&self, everyone: bool) {
        // Pairs with the SeqCst store of `wakers_waiting` in `Ticket::register`: a request's
        // state is stored with Release ordering before this call, and the fence makes a waiter
        // that registered too late for us to see it see that state in its re-check.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !everyone && self.wakers_waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let durable = self.durable.load(Ordering::SeqCst);
        let mut due: smallvec::SmallVec<[Waker; 8]> = smallvec::SmallVec::new();
        {
            let mut wakers = self.lock_wakers();
            let mut index = 0;
            while index < wakers.len() {
                if everyone || wakers[index].0 <= durable {
                    due.push(wakers.swap_remove(index).1);
                } else {
                    index += 1;
                }
            }
            self.wakers_waiting.store(wakers.len(), Ordering::SeqCst);
        }
        for waker in due {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake())).is_err() {
                tracing::error!("a waker of an evstore ticket panicked; its task was not woken");
            }
        }
    }

    /// The wakers list. A panic while it was held (only a waker's `clone` or `will_wake` can
    /// panic there) leaves the list itself intact, so poisoning is ignored.
    pub(crate) fn lock_wakers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Waker, u64)>> {
        self.wakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `waker` to be woken once the durable watermark reaches `target` (0: at the next
    /// publication). A caller registers, then re-checks what it waits for with `SeqCst`, then
    /// sleeps: either the submitter sees the waker, or the re-check sees the new watermark.
    pub(crate) fn register_waker(&self, target: u64, waker: &Waker) {
        let mut wakers = self.lock_wakers();
        // A waiter registered again without being woken must not pile up copies of its waker.
        if !wakers.iter().any(|(t, w, owner)| *owner == 0 && *t == target && w.will_wake(waker)) {
            wakers.push((target, waker.clone(), 0));
        }
        // SeqCst pairs with the submitter's SeqCst store of `durable` (and of a request's
        // FAILED state): either it sees this waker, or the caller's re-check sees the outcome.
        self.wakers_waiting.store(wakers.len(), Ordering::SeqCst);
    }

    /// Registers `waker` for `target` as `owner`'s one registration (a subscription's token),
    /// replacing the one it had. Entries of different owners are never merged, so that one
    /// owner's [`Shared::unregister_waker`] cannot take another's wake-up (two subscriptions
    /// polled by one task share its waker and often their target).
    pub(crate) fn register_owned_waker(&self, owner: u64, target: u64, waker: &Waker) {
        let mut wakers = self.lock_wakers();
        match wakers.iter_mut().find(|(_, _, o)| *o == owner) {
            Some(entry) => {
                entry.0 = target;
                if !entry.1.will_wake(waker) {
                    entry.1 = waker.clone();
                }
            }
            None => wakers.push((target, waker.clone(), owner)),
        }
        self.wakers_waiting.store(wakers.len(), Ordering::SeqCst);
    }

    /// Removes `owner`'s registration, if it has not been woken (and so removed) already.
    pub(crate) fn unregister_waker(&self, owner: u64) {
        let mut wakers = self.lock_wakers();
        if let Some(at) = wakers.iter().position(|(_, _, o)| *o == owner) {
            wakers.swap_remove(at);
        }
        self.wakers_waiting.store(wakers.len(), Ordering::SeqCst);
    }

    pub(crate) fn poison(&self, cause: String) {
        if self.poisoned.set(cause.clone()).is_ok() {
            tracing::error!(%cause, "evstore poisoned: no more appends are accepted");
        }
        self.wake_waiters(true);
    }

    /// Wakes the submitter if it sleeps and this is worth waking it for: anything when it is
    /// idle, only an `urgent` matter (a caller started waiting, a ring is half full) while it
    /// lingers on an open group, whose appends it drains when the group's time is up. So a
    /// producer appending a run of events wakes it at most once, not once per append.
    #[inline]
    pub(crate) fn ring_doorbell(&self, urgent: bool) {
        loop {
            let state = self.submitter_sleeping.load(Ordering::SeqCst);
            if !(state == IDLE || (urgent && state != AWAKE)) {
                return;
            }
            // The word is changed before the wake, as the futex protocol wants: a wake that lands
            // after the submitter's last look but before it sleeps would be lost, while a changed
            // word makes its futex wait return at once (a lost wake cost a waiter a whole linger
            // time, up to 1 s). Whoever changes it wakes; a failed exchange means the submitter
            // woke or another producer woke it: look again.
            if self.submitter_sleeping.compare_exchange(state, AWAKE, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                crate::platform::futex_wake_all(&self.submitter_sleeping);
                return;
            }
        }
    }

    /// Wakes the submitter wherever it sleeps (closing).
    pub(crate) fn wake_submitter_now(&self) {
        self.submitter_sleeping.store(AWAKE, Ordering::SeqCst);
        crate::platform::futex_wake_all(&self.submitter_sleeping);
        if let Some(thread) = self.submitter_thread.get() {
            thread.unpark();
        }
    }
}

/// `Shared::submitter_sleeping`: the submitter is running.
pub(crate) const AWAKE: u32 = 0;
/// The submitter sleeps until an open group's linger time ends (or something urgent).
pub(crate) const LINGERING: u32 = 1;
/// The submitter sleeps with nothing to do.
pub(crate) const IDLE: u32 = 2;
/// The submitter sleeps until a write completes (or something urgent).
pub(crate) const IO_WAIT: u32 = 3;

/// Wakes a thread blocked in `Ticket::wait` or in a blocking read of a subscription.
pub(crate) struct ThreadWaker(pub std::thread::Thread);

impl ThreadWaker {
    /// A waker that unparks the current thread.
    pub(crate) fn current() -> Waker {
        Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())))
    }
}

impl Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.unpark();
    }
}
