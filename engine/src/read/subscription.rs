//! Subscriptions: the log (or one stream) from a position (or version) on, history first, then
//! live events as they become durable, each flagged historic or live.
//!
//! Layout: a subscription is a read cursor (`LogCursor` or `StreamCursor`, shared with the
//! snapshot reads) whose end moves with the durable watermark, plus a bounded buffer of
//! [`Envelope`]s. Nothing is pushed to a subscription: it pulls from the mapping, so the writer
//! never waits for a subscriber, and a slow one simply reads further behind.
//!
//! Invariants:
//! - Every position (every version of a stream subscription) is handed exactly once, in order:
//!   history and live events come out of the one cursor, so the switch between them can neither
//!   skip nor repeat an event.
//! - Only durable events are handed (the cursor's end is the durable watermark, or the durable
//!   end location for a stream).
//! - Memory is bounded: the buffer holds at most one batch (`SUBSCRIPTION_BATCH_MAX`); an
//!   envelope holds a reference to its segment's mapping or to its group's in-memory copy, and
//!   those copies are bounded as a whole (log/recent.rs).
//! - `historic()` is false for events read after the subscription has reached the durable end
//!   (it read everything durable when it last looked), and true again once more than
//!   `LIVE_LAG_GROUPS_MAX` groups have become durable since it last reached the end (a slow
//!   subscriber replays from the mapping, as history, until it catches up). Lag is counted in
//!   groups, not events: a subscriber that keeps up is handed whole groups, and one group may
//!   hold tens of thousands of events. A stream subscription counts its own stream's unread
//!   events instead (`LIVE_LAG_STREAM_EVENTS_MAX`): most groups hold other streams' events.
//!   Events read while catching up are historic; a subscription made at the durable end (nothing
//!   to catch up on, or `END`) is live from its first event.
//! - Waiting costs the writer nothing but a look at the waker list once per durable group: a
//!   caught-up subscription registers a waker for the next position (shared.rs), exactly as a
//!   ticket does for its append, and is woken by the submitter's publication. A subscription
//!   keeps at most one registration and removes it when dropped, so dropped subscriptions do not
//!   pile up in the store's waker list.
//! - When the store has closed (or was poisoned) and everything durable was handed, iteration
//!   ends (after one `Error::Poisoned` for a poisoned store).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::constants::{LIVE_LAG_GROUPS_MAX, LIVE_LAG_STREAM_EVENTS_MAX, SUBSCRIPTION_BATCH_MAX};
use crate::error::{Error, Result};
use crate::read::reader::{last_durable_version, EventRef, Held, Located, LogCursor, StreamCursor, END};
use crate::shared::{Shared, ThreadWaker};
use crate::RecordedEvent;

/// One event handed by a [`Subscription`]: the event, where it is in the log, and whether it was
/// delivered while catching up (`historic`) or live. The fields borrow the mapped log, or, for a
/// group read live, the in-memory copy of that group (log/recent.rs); the envelope keeps either
/// alive, so it may be kept as long as needed. Keeping one costs no copy of the event, but a kept
/// envelope of a group read live holds that group's copy: copies alive are bounded as a whole
/// (`RECENT_LIVE_BYTES_MAX`, past which groups are read through the mapping instead). To keep
/// many events for long, [`Envelope::to_recorded`] copies one out.
#[derive(Clone)]
pub struct Envelope {
    map: Held,
    at: Located,
    historic: bool,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("position", &self.position())
            .field("historic", &self.historic)
            .field("stream", &self.stream())
            .field("version", &self.version())
            .field("event_type", &self.event_type())
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// The event, borrowing the mapping this envelope holds.
    pub fn event(&self) -> EventRef<'_> {
        self.at.event(&self.map)
    }

    /// Position in the log (events count from 0). The position to resume from after this event
    /// (a checkpoint) is `position() + 1` for [`crate::Store::subscribe_all`].
    pub fn position(&self) -> u64 {
        self.at.position
    }

    /// True if the event was handed while the subscription was catching up (reading history),
    /// false if it was handed live, as it became durable.
    pub fn historic(&self) -> bool {
        self.historic
    }

    /// The stream id.
    pub fn stream(&self) -> &str {
        self.event().stream()
    }

    /// Version in its stream (versions count from 0 per stream).
    pub fn version(&self) -> u64 {
        self.at.version
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        self.event().event_type()
    }

    /// The event's data.
    pub fn data(&self) -> &[u8] {
        self.event().data()
    }

    /// The event's metadata (empty if none was given).
    pub fn metadata(&self) -> &[u8] {
        self.event().metadata()
    }

    /// When the group holding the event was built, in microseconds since the Unix epoch.
    pub fn timestamp_us(&self) -> u64 {
        self.at.timestamp_us
    }

    /// The event copied out of the mapping.
    pub fn to_recorded(&self) -> RecordedEvent {
        self.event().to_recorded()
    }
}

enum Source {
    All(LogCursor),
    Stream(StreamCursor),
}

/// Durable events from a position (or a stream's version) on: history, then live events as they
/// become durable. Made by [`crate::Store::subscribe_all`] and [`crate::Store::subscribe_stream`].
///
/// - As an [`Iterator`] of `Result<Envelope>`, `next` blocks while the subscription is caught up.
/// - As a `futures_core::Stream`, it waits without blocking, in any executor.
/// - [`Subscription::next_batch`] (and [`Subscription::poll_next_batch`]) hand a slice of
///   envelopes at once: the fast way to catch up.
///
/// Iteration ends once the store is closed and every durable event was handed. Dropping a
/// subscription and subscribing again from the position after the last event handled (a
/// checkpoint) resumes exactly there.
pub struct Subscription {
    shared: Arc<Shared>,
    source: Source,
    live: bool,
    /// Durable groups counted when the subscription last reached the durable end.
    groups_at_end: u64,
    buffer: VecDeque<Envelope>,
    /// Envelopes at the front of `buffer` handed out by the last batch call: dropped at the next.
    handed: usize,
    /// The poisoning was reported: iteration is over.
    ended: bool,
    /// This subscription's token in the store's waker list: it has at most one entry there,
    /// removed when it is dropped, so that dropped subscriptions do not pile up.
    owner: u64,
    /// The waker of the thread that last blocked on this subscription.
    thread_waker: Option<(std::thread::ThreadId, Waker)>,
}

impl Subscription {
    /// `from_position` [`END`]: from the durable end now (live events only).
    pub(crate) fn all(shared: Arc<Shared>, from_position: u64) -> Subscription {
        let from = match from_position {
            END => shared.durable.load(Ordering::Acquire),
            from => from,
        };
        Subscription::new(shared, Source::All(LogCursor::new(from)))
    }

    /// `from_version` [`END`]: from the stream's durable end now (live events only).
    pub(crate) fn stream(shared: Arc<Shared>, stream: &str, from_version: u64) -> Subscription {
        let from = match from_version {
            END => last_durable_version(&shared, stream).map_or(0, |version| version + 1),
            from => from,
        };
        Subscription::new(shared, Source::Stream(StreamCursor::new(stream, from)))
    }

    fn new(shared: Arc<Shared>, source: Source) -> Subscription {
        shared.index.recent.subscribe();
        let owner = shared.waker_owners.fetch_add(1, Ordering::Relaxed);
        let groups_at_end = shared.counters.groups.load(Ordering::Acquire);
        let mut subscription = Subscription {
            shared,
            source,
            live: false,
            groups_at_end,
            buffer: VecDeque::new(),
            handed: 0,
            ended: false,
            thread_waker: None,
            owner,
        };
        // Nothing to catch up on: what it is handed is live from the first event.
        subscription.live = subscription.backlog() == 0;
        subscription
    }

    /// Whether the subscription has handed every event that was durable when it last looked:
    /// the next call would wait for new events. A consumer that buffers events (a projection)
    /// flushes when this becomes true.
    pub fn caught_up(&self) -> bool {
        // Not `self.live`: a batch that ended exactly at the durable end has not set it yet.
        self.buffer.len() == self.handed && self.backlog() == 0
    }

    /// Events durable but not yet read by the cursor.
    fn backlog(&self) -> u64 {
        match &self.source {
            Source::All(cursor) => self.shared.durable.load(Ordering::Acquire).saturating_sub(cursor.next_position()),
            Source::Stream(cursor) => cursor.backlog(&self.shared, self.shared.durable_end.load(Ordering::Acquire)),
        }
    }

    /// Reads up to `max` durable events into the buffer without waiting. Returns how many.
    fn fill(&mut self, max: usize) -> Result<usize> {
        self.buffer.drain(..self.handed);
        self.handed = 0;
        let max = max.clamp(1, SUBSCRIPTION_BATCH_MAX);
        if !self.buffer.is_empty() {
            return Ok(self.buffer.len());
        }
        // Read before the end is: a group published meanwhile counts towards the next fill.
        let groups = self.shared.counters.groups.load(Ordering::Acquire);
        let fallen_behind = match &self.source {
            Source::All(_) => groups - self.groups_at_end > LIVE_LAG_GROUPS_MAX,
            // Most groups hold other streams' events: a stream's lag is its own backlog.
            Source::Stream(_) => self.live && self.backlog() > LIVE_LAG_STREAM_EVENTS_MAX,
        };
        if self.live && fallen_behind {
            // Fallen behind: what it reads now is history again, until it catches up.
            self.live = false;
        }
        let historic = !self.live;
        let mut reached_end = false;
        let shared = &*self.shared;
        match &mut self.source {
            Source::All(cursor) => {
                let end = shared.durable.load(Ordering::Acquire);
                while self.buffer.len() < max {
                    let Some(at) = cursor.advance(shared, end)? else {
                        reached_end = true;
                        break;
                    };
                    self.buffer.push_back(Envelope { map: cursor.held().clone(), at, historic });
                }
            }
            Source::Stream(cursor) => {
                let end = shared.durable_end.load(Ordering::Acquire);
                while self.buffer.len() < max {
                    let Some(at) = cursor.advance(shared, end)? else {
                        reached_end = true;
                        break;
                    };
                    self.buffer.push_back(Envelope { map: Held::Map(cursor.map().clone()), at, historic });
                }
            }
        }
        if reached_end {
            // Everything durable was read: what becomes durable from now on is live.
            self.live = true;
            self.groups_at_end = groups;
        }
        Ok(self.buffer.len())
    }

    /// The watermark that, once reached, may hold a new event for this subscription.
    fn wake_target(&self) -> u64 {
        match &self.source {
            Source::All(cursor) => cursor.next_position().saturating_add(1),
            // A stream subscription cannot know which position its stream's next event gets:
            // any new durable group may hold it.
            Source::Stream(_) => self.shared.durable.load(Ordering::SeqCst) + 1,
        }
    }

    /// Fills the buffer, or registers `waker` and reports `Pending` if nothing is durable yet.
    /// `Ready(Ok(0))`: the store is closed and everything was handed.
    fn poll_fill(&mut self, waker: &Waker, max: usize) -> Poll<Result<usize>> {
        if self.ended {
            return Poll::Ready(Ok(0));
        }
        loop {
            let filled = self.fill(max)?;
            if filled > 0 {
                return Poll::Ready(Ok(filled));
            }
            // Read before registering: if the store stops after this, the waker is woken.
            let stopped = self.shared.stopped.load(Ordering::SeqCst);
            if let Some(cause) = self.shared.poisoned.get() {
                self.ended = true;
                return Poll::Ready(Err(Error::Poisoned { cause: cause.clone() }));
            }
            if stopped {
                // One more look: events made durable just before the submitter stopped.
                if self.fill(max)? > 0 {
                    return Poll::Ready(Ok(self.buffer.len()));
                }
                self.ended = true;
                return Poll::Ready(Ok(0));
            }
            let target = self.wake_target();
            self.register(target, waker);
            if self.backlog() > 0 || self.shared.stopped.load(Ordering::SeqCst) || self.shared.poisoned.get().is_some()
            {
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Registers `waker` for `target`, replacing this subscription's previous registration.
    fn register(&mut self, target: u64, waker: &Waker) {
        self.shared.register_owned_waker(self.owner, target, waker);
    }

    /// Fills the buffer, blocking the thread while the subscription is caught up.
    fn fill_blocking(&mut self, max: usize) -> Result<usize> {
        let thread = std::thread::current().id();
        let waker = match &self.thread_waker {
            Some((id, waker)) if *id == thread => waker.clone(),
            _ => {
                let waker = ThreadWaker::current();
                self.thread_waker = Some((thread, waker.clone()));
                waker
            }
        };
        loop {
            match self.poll_fill(&waker, max) {
                Poll::Ready(result) => return result,
                // Woken by the submitter's publication; a spurious wake just looks again.
                Poll::Pending => std::thread::park(),
            }
        }
    }

    /// Hands up to `max` envelopes at once (at most `SUBSCRIPTION_BATCH_MAX`), blocking while
    /// caught up. `None` once the store is closed and every durable event was handed. The slice
    /// is valid until the next call on this subscription.
    pub fn next_batch(&mut self, max: usize) -> Option<Result<&[Envelope]>> {
        match self.fill_blocking(max) {
            Ok(0) => None,
            Ok(_) => Some(Ok(self.hand(max))),
            Err(e) => Some(Err(e)),
        }
    }

    /// The batch form of `poll_next`, for async consumers: `Ready(Some(Ok(slice)))` with up to
    /// `max` envelopes, `Pending` while caught up (the task is woken when events become durable).
    pub fn poll_next_batch(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Option<Result<&[Envelope]>>> {
        match self.poll_fill(cx.waker(), max) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => Poll::Ready(None),
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(self.hand(max)))),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }

    fn hand(&mut self, max: usize) -> &[Envelope] {
        let count = self.buffer.len().min(max.max(1));
        self.handed = count;
        &self.buffer.make_contiguous()[..count]
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.unregister_waker(self.owner);
        self.shared.index.recent.unsubscribe();
    }
}

impl Iterator for Subscription {
    type Item = Result<Envelope>;

    /// The next envelope, blocking while the subscription is caught up.
    fn next(&mut self) -> Option<Self::Item> {
        match self.fill_blocking(SUBSCRIPTION_BATCH_MAX) {
            Ok(0) => None,
            Ok(_) => self.buffer.pop_front().map(Ok),
            Err(e) => Some(Err(e)),
        }
    }
}

impl futures_core::Stream for Subscription {
    type Item = Result<Envelope>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // A Subscription holds no self-reference: it is Unpin.
        let this = self.get_mut();
        match this.poll_fill(cx.waker(), SUBSCRIPTION_BATCH_MAX) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => Poll::Ready(None),
            Poll::Ready(Ok(_)) => Poll::Ready(this.buffer.pop_front().map(Ok)),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }
}
