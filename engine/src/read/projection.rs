//! Projections: a read model fed by a subscription, written in batches, each batch stored with
//! its checkpoint.
//!
//! Protocol: the user implements [`Projection`] over their storage: `checkpoint` loads the
//! position to resume from, `wants` says which events matter, `flush` writes a batch of wanted
//! events together with the checkpoint (in one transaction where the storage has them). A
//! [`ProjectionRunner`] subscribes to the whole log from the loaded checkpoint and buffers the
//! wanted envelopes. It flushes (the seed's policy, [`FlushPolicy`]):
//! - once `historic_batch_events` wanted events are buffered while catching up (default 100),
//!   `live_batch_events` when live (default 1: every event);
//! - once the oldest buffered event has waited `flush_interval`, if set (looked at between
//!   subscription batches);
//! - before it would wait for new events (the subscription caught up), when stopped, and when
//!   the store closes, so nothing sits in the buffer while the runner sleeps;
//! - with an empty batch once `skipped_checkpoint_events` events were skipped since the last
//!   flush, so a projection that wants few events does not replay many on restart.
//!
//! Invariants:
//! - The checkpoint handed with a batch is the position after the last event the runner has
//!   looked at (wanted or skipped): every event before it is either in this batch or in an
//!   earlier flushed one, or unwanted. Checkpoints strictly increase from flush to flush.
//! - Each event is in at most one flushed batch per run, in position order (the subscription hands
//!   every position once); after a restart, events after the stored checkpoint come again, and
//!   none before it. So a projection whose flush is atomic sees every wanted event exactly once.
//! - Skipped events cost no write, except the bounded checkpoint-only flushes above.
//! - Memory is bounded: the buffer holds at most the larger batch size, itself at most
//!   [`PROJECTION_BATCH_EVENTS_MAX`]; envelopes share the log's mappings, they copy nothing.
//! - After any error the runner forgets its buffer and its subscription; the next `run` loads
//!   the stored checkpoint again, so a failed flush is retried from what the storage holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::constants::{
    PROJECTION_BATCH_EVENTS_MAX, PROJECTION_HISTORIC_BATCH_EVENTS_DEFAULT, PROJECTION_LIVE_BATCH_EVENTS_DEFAULT,
    PROJECTION_SKIPPED_CHECKPOINT_EVENTS_DEFAULT, SUBSCRIPTION_BATCH_MAX,
};
use crate::error::Error;
use crate::read::subscription::{Envelope, Subscription};
use crate::shared::ThreadWaker;
use crate::store::Store;

/// A read model that a [`ProjectionRunner`] keeps up to date: the user's side of the protocol.
///
/// `flush` must store the batch's effect and the checkpoint together (one transaction), so that
/// after a crash the stored checkpoint says exactly which events the stored state holds.
pub trait Projection {
    /// The storage's error, handed back as [`ProjectionError::Handler`].
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoint stored by the last flush: the position to resume from (0 if none yet).
    /// Called when the runner starts, and again after an error.
    fn checkpoint(&mut self) -> Result<u64, Self::Error>;

    /// Whether this event matters to the projection. Unwanted events are skipped: never handed
    /// to `flush`, never the reason for a write. Default: every event is wanted.
    fn wants(&self, envelope: &Envelope) -> bool {
        let _ = envelope;
        true
    }

    /// Writes the effect of `batch` (wanted events, in position order; empty only for a
    /// checkpoint-only flush, see [`FlushPolicy::skipped_checkpoint_events`]) and `checkpoint`
    /// (the position to resume from) in one transaction. Aggregate here if the storage allows it
    /// (one statement per key instead of one per event).
    fn flush(&mut self, batch: &[Envelope], checkpoint: u64) -> Result<(), Self::Error>;
}

/// When a [`ProjectionRunner`] flushes. `FlushPolicy::default()` is the seed's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushPolicy {
    /// Flush once this many wanted events are buffered while catching up (historic events).
    /// Default 100; 1 to [`PROJECTION_BATCH_EVENTS_MAX`].
    pub historic_batch_events: usize,
    /// Flush once this many wanted events are buffered while live. Default 1 (every event, for
    /// the freshest read model); 1 to [`PROJECTION_BATCH_EVENTS_MAX`].
    pub live_batch_events: usize,
    /// Flush once the oldest buffered event has waited this long, whatever the count. Looked at
    /// between subscription batches. Default `None` (the buffer is flushed anyway before the
    /// runner waits for new events, so this only matters during a long catch-up).
    pub flush_interval: Option<Duration>,
    /// After this many skipped events since the last flush, flush (with an empty batch if
    /// nothing is buffered) so the stored checkpoint moves past them. Default `Some(10_000)`;
    /// `None` never writes for skipped events (a restart then reads them again, and skips them
    /// again).
    pub skipped_checkpoint_events: Option<u64>,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            historic_batch_events: PROJECTION_HISTORIC_BATCH_EVENTS_DEFAULT,
            live_batch_events: PROJECTION_LIVE_BATCH_EVENTS_DEFAULT,
            flush_interval: None,
            skipped_checkpoint_events: Some(PROJECTION_SKIPPED_CHECKPOINT_EVENTS_DEFAULT),
        }
    }
}

impl FlushPolicy {
    fn validate(&self) -> Result<(), Error> {
        let bad = |name: &'static str, value: usize| {
            if value == 0 || value > PROJECTION_BATCH_EVENTS_MAX {
                return Err(Error::InvalidOption {
                    name,
                    reason: format!("{value} is not in 1..={PROJECTION_BATCH_EVENTS_MAX}"),
                });
            }
            Ok(())
        };
        bad("FlushPolicy::historic_batch_events", self.historic_batch_events)?;
        bad("FlushPolicy::live_batch_events", self.live_batch_events)?;
        if self.skipped_checkpoint_events == Some(0) {
            return Err(Error::InvalidOption {
                name: "FlushPolicy::skipped_checkpoint_events",
                reason: "0 is not allowed: use None to never flush for skipped events".into(),
            });
        }
        Ok(())
    }

    /// The most events the buffer can hold under this policy.
    fn buffer_events_max(&self) -> usize {
        self.historic_batch_events.max(self.live_batch_events)
    }
}

/// Why [`ProjectionRunner::run`] failed: the store, or the user's projection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError<E: std::error::Error + 'static> {
    /// Reading the log failed (a poisoned or corrupted store), or the [`FlushPolicy`] was
    /// invalid (`Error::InvalidOption`). Nothing was lost: run again once the cause is fixed.
    #[error("projection: {0}")]
    Store(#[source] Error),
    /// The projection's `checkpoint` or `flush` failed. Its storage holds the last batch that
    /// was flushed successfully; the next `run` resumes from its checkpoint.
    #[error("projection handler: {0}")]
    Handler(#[source] E),
    /// The stored checkpoint is past the end of the log: the projection's storage was built
    /// from another store, or [`Store::repair`] cut the log below it. Its state holds events this
    /// log does not have; rebuild it from checkpoint 0.
    #[error("the projection's checkpoint {checkpoint} is past the end of the log ({durable} durable events): its storage was built from another store or before Store::repair cut the log; rebuild it from 0")]
    CheckpointAhead {
        /// The checkpoint the projection's storage holds.
        checkpoint: u64,
        /// The log's durable events.
        durable: u64,
    },
}

/// Why [`ProjectionRunner::run`] (or [`ProjectionRunner::run_until_caught_up`]) returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunEnd {
    /// Every durable event was handled and flushed (`run_until_caught_up` only).
    CaughtUp,
    /// [`StopHandle::stop`] (or [`StopHandle::stop_when_caught_up`]) was called; what was
    /// buffered was flushed.
    Stopped,
    /// The store was closed and every durable event was handled and flushed.
    StoreClosed,
}

/// Stops a [`ProjectionRunner`] from any thread, also while it waits for new events: at once
/// ([`StopHandle::stop`]) or once it has caught up ([`StopHandle::stop_when_caught_up`]).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<StopState>);

#[derive(Debug)]
struct StopState {
    requested: AtomicBool,
    /// Stop at the next wait for events, not before.
    requested_when_caught_up: AtomicBool,
    /// Wakes the runner's thread if it waits for events.
    waker: Mutex<Option<Waker>>,
}

impl StopHandle {
    /// Asks the runner to stop: it flushes what it buffered and returns [`RunEnd::Stopped`] once
    /// the batch in hand is done. Final: later runs return `Stopped` at once.
    pub fn stop(&self) {
        // SeqCst pairs with the runner, which installs its waker before it looks at the flag:
        // either it sees the flag or this sees the waker.
        self.0.requested.store(true, Ordering::SeqCst);
        if let Some(waker) = self.0.waker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            waker.wake_by_ref();
        }
    }

    /// Asks the runner to stop once it has handled and flushed every durable event: at the
    /// point where it would wait for new ones. For a graceful shutdown after the last append.
    /// Final, like `stop`.
    pub fn stop_when_caught_up(&self) {
        self.0.requested_when_caught_up.store(true, Ordering::SeqCst);
        if let Some(waker) = self.0.waker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            waker.wake_by_ref();
        }
    }

    fn requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    fn requested_when_caught_up(&self) -> bool {
        self.0.requested_when_caught_up.load(Ordering::SeqCst)
    }
}

/// Keeps a [`Projection`] up to date with the whole log: subscribes from its stored checkpoint,
/// batches the wanted events and flushes them with their checkpoint as [`FlushPolicy`] says.
///
/// ```
/// use std::collections::HashMap;
/// use evstore::{Envelope, Event, ExpectedVersion, Options, Projection, ProjectionRunner, Store};
///
/// /// View counts per viewer, kept in memory here; a real one writes to a database.
/// #[derive(Default)]
/// struct ViewCounts { counts: HashMap<String, u64>, checkpoint: u64 }
///
/// impl Projection for ViewCounts {
///     type Error = std::convert::Infallible;
///     fn checkpoint(&mut self) -> Result<u64, Self::Error> { Ok(self.checkpoint) }
///     fn wants(&self, envelope: &Envelope) -> bool { envelope.event_type() == "WatchedVideo" }
///     fn flush(&mut self, batch: &[Envelope], checkpoint: u64) -> Result<(), Self::Error> {
///         // One transaction: the counts and the checkpoint together.
///         for envelope in batch {
///             *self.counts.entry(envelope.stream().to_string()).or_default() += 1;
///         }
///         self.checkpoint = checkpoint;
///         Ok(())
///     }
/// }
///
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), Options::default())?;
/// store.append("viewer-1", ExpectedVersion::Any, [Event::new("WatchedVideo", "video-1")])?.wait()?;
/// store.append("viewer-1", ExpectedVersion::Any, [Event::new("BookmarkedVideo", "video-1")])?.wait()?;
///
/// let mut runner = ProjectionRunner::new(&store, ViewCounts::default());
/// runner.run_until_caught_up()?;        // or run() until stopped (stop_handle) or the store closes
/// assert_eq!(runner.projection().counts["viewer-1"], 1);
/// // One flush, when it caught up: the view at position 0, with checkpoint 2. The bookmark at
/// // position 1 was skipped (no write of its own); the checkpoint covers it.
/// assert_eq!(runner.checkpoint(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProjectionRunner<P: Projection> {
    store: Store,
    projection: P,
    policy: FlushPolicy,
    stop: StopHandle,
    /// `None` until the first run, and again after an error: the next run loads the checkpoint.
    subscription: Option<Subscription>,
    batch: Batch,
}

/// The buffer and the counters of the flush policy, apart from the subscription that hands the
/// envelopes (so one can be borrowed while the other changes).
struct Batch {
    envelopes: Vec<Envelope>,
    /// When the oldest buffered envelope was buffered.
    buffered_at: Option<Instant>,
    /// The position after the last event looked at: the checkpoint of the next flush.
    next_checkpoint: u64,
    /// The checkpoint the projection stored last (or loaded at start).
    stored_checkpoint: u64,
    /// Events skipped since the last flush.
    skipped_events: u64,
}

impl<P: Projection> ProjectionRunner<P> {
    /// A runner for `projection` over `store`'s whole log, with the default [`FlushPolicy`].
    /// Nothing is read until [`ProjectionRunner::run`].
    pub fn new(store: &Store, projection: P) -> ProjectionRunner<P> {
        ProjectionRunner {
            store: store.clone(),
            projection,
            policy: FlushPolicy::default(),
            stop: StopHandle(Arc::new(StopState {
                requested: AtomicBool::new(false),
                requested_when_caught_up: AtomicBool::new(false),
                waker: Mutex::new(None),
            })),
            subscription: None,
            batch: Batch {
                envelopes: Vec::new(),
                buffered_at: None,
                next_checkpoint: 0,
                stored_checkpoint: 0,
                skipped_events: 0,
            },
        }
    }

    /// The same runner with `policy` (checked when the run starts).
    pub fn with_policy(mut self, policy: FlushPolicy) -> ProjectionRunner<P> {
        self.policy = policy;
        self
    }

    /// A handle that stops this runner from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The projection (to read its state between runs).
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The runner's projection, given back.
    pub fn into_projection(self) -> P {
        self.projection
    }

    /// The checkpoint stored by the last successful flush (or loaded when the run started).
    pub fn checkpoint(&self) -> u64 {
        self.batch.stored_checkpoint
    }

    /// Follows the log until [`StopHandle::stop`] is called ([`RunEnd::Stopped`]) or the store
    /// closes ([`RunEnd::StoreClosed`]), blocking the thread while there is nothing new. On an
    /// error, call `run` again to resume from the stored checkpoint.
    pub fn run(&mut self) -> Result<RunEnd, ProjectionError<P::Error>> {
        self.run_while(false)
    }

    /// Handles and flushes every event durable so far, then returns [`RunEnd::CaughtUp`]
    /// (or `Stopped`, `StoreClosed`). A later `run` continues live from there.
    pub fn run_until_caught_up(&mut self) -> Result<RunEnd, ProjectionError<P::Error>> {
        self.run_while(true)
    }

    fn run_while(&mut self, until_caught_up: bool) -> Result<RunEnd, ProjectionError<P::Error>> {
        let result = self.run_inner(until_caught_up);
        if result.is_err() {
            // What is buffered and where the subscription stands may be ahead of the storage:
            // start again from what the storage holds.
            self.subscription = None;
            self.batch.envelopes.clear();
            self.batch.buffered_at = None;
        }
        result
    }

    fn run_inner(&mut self, until_caught_up: bool) -> Result<RunEnd, ProjectionError<P::Error>> {
        if self.subscription.is_none() {
            self.policy.validate().map_err(ProjectionError::Store)?;
            let from = self.projection.checkpoint().map_err(ProjectionError::Handler)?;
            // Durable events never go away, so a checkpoint past the end was not made here.
            let durable = self.store.durable_position();
            if from > durable {
                return Err(ProjectionError::CheckpointAhead { checkpoint: from, durable });
            }
            let subscription = self.store.subscribe_all(from).map_err(ProjectionError::Store)?;
            self.batch.envelopes = Vec::with_capacity(self.policy.buffer_events_max());
            self.batch.buffered_at = None;
            self.batch.next_checkpoint = from;
            self.batch.stored_checkpoint = from;
            self.batch.skipped_events = 0;
            self.subscription = Some(subscription);
        }
        let Some(subscription) = self.subscription.as_mut() else { unreachable!("subscribed above") };
        let batch = &mut self.batch;
        let projection = &mut self.projection;
        let policy = &self.policy;

        // One waker for this thread, for the subscription (new durable events) and the stop
        // handle alike: both unpark the thread, which then looks at both.
        let waker = ThreadWaker::current();
        *self.stop.0.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
        let mut context = Context::from_waker(&waker);
        loop {
            if self.stop.requested() {
                batch.flush(projection)?;
                return Ok(RunEnd::Stopped);
            }
            match subscription.poll_next_batch(&mut context, SUBSCRIPTION_BATCH_MAX) {
                Poll::Ready(Some(Ok(envelopes))) => {
                    for envelope in envelopes {
                        batch.take(envelope, projection, policy)?;
                    }
                    if let (Some(interval), Some(buffered_at)) = (policy.flush_interval, batch.buffered_at) {
                        if buffered_at.elapsed() >= interval {
                            batch.flush(projection)?;
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    // The buffered events were read intact: keep the work done on them.
                    batch.flush(projection)?;
                    return Err(ProjectionError::Store(e));
                }
                Poll::Ready(None) => {
                    batch.flush(projection)?;
                    return Ok(RunEnd::StoreClosed);
                }
                Poll::Pending => {
                    // Caught up: nothing may wait in the buffer while the thread sleeps.
                    batch.flush(projection)?;
                    if until_caught_up {
                        return Ok(RunEnd::CaughtUp);
                    }
                    if self.stop.requested_when_caught_up() {
                        return Ok(RunEnd::Stopped);
                    }
                    if !self.stop.requested() {
                        // Woken by new durable events or by the stop handle; a spurious wake
                        // just looks again.
                        std::thread::park();
                    }
                }
            }
        }
    }
}

impl Batch {
    /// Looks at one envelope: buffers it if wanted, and flushes if the policy says so.
    fn take<P: Projection>(
        &mut self,
        envelope: &Envelope,
        projection: &mut P,
        policy: &FlushPolicy,
    ) -> Result<(), ProjectionError<P::Error>> {
        assert_eq!(envelope.position(), self.next_checkpoint, "the subscription skipped or repeated a position");
        self.next_checkpoint = envelope.position() + 1;
        if !projection.wants(envelope) {
            self.skipped_events += 1;
            if policy.skipped_checkpoint_events.is_some_and(|max| self.skipped_events >= max) {
                return self.flush_even_empty(projection);
            }
            return Ok(());
        }
        if self.envelopes.is_empty() {
            // Only looked at when a flush interval is set: an Instant per batch, not per event.
            self.buffered_at = policy.flush_interval.map(|_| Instant::now());
        }
        self.envelopes.push(envelope.clone());
        let batch_events = if envelope.historic() { policy.historic_batch_events } else { policy.live_batch_events };
        if self.envelopes.len() >= batch_events {
            self.flush(projection)?;
        }
        debug_assert!(self.envelopes.len() < policy.buffer_events_max());
        Ok(())
    }

    /// Flushes what is buffered, if anything.
    fn flush<P: Projection>(&mut self, projection: &mut P) -> Result<(), ProjectionError<P::Error>> {
        if self.envelopes.is_empty() {
            return Ok(());
        }
        self.flush_even_empty(projection)
    }

    fn flush_even_empty<P: Projection>(&mut self, projection: &mut P) -> Result<(), ProjectionError<P::Error>> {
        let checkpoint = self.next_checkpoint;
        assert!(checkpoint > self.stored_checkpoint, "a flush must move the checkpoint forward");
        assert!(self.envelopes.last().is_none_or(|last| last.position() < checkpoint));
        projection.flush(&self.envelopes, checkpoint).map_err(ProjectionError::Handler)?;
        self.stored_checkpoint = checkpoint;
        self.envelopes.clear();
        self.buffered_at = None;
        self.skipped_events = 0;
        Ok(())
    }
}
