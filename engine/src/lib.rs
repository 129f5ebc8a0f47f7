//! evstore: an embedded, durable event store for Linux.
//!
//! Producers on any thread [`Store::append`] events to named streams and get a [`Ticket`] that
//! resolves only once the events are on disk. One submitter thread drains the producers' bounded
//! lock-free queues (one ring per handle), checks expected versions, encodes records into 4 KiB-aligned buffers and writes them
//! with O_DIRECT through io_uring into pre-written segment files (group commit, pipelined).
//! Reads go through mmap and only ever see durable events.
//!
//! ```no_run
//! let store = evstore::Store::open("data", evstore::Options::default())?;
//! let ticket = store.append("users/42", evstore::ExpectedVersion::Any,
//!     [evstore::Event::new("ItemCreated", br#"{"ItemId":"1324"}"#)])?;
//! let appended = ticket.wait()?;
//! for event in store.read_stream("users/42", 0)? {
//!     let event = event?;
//!     println!("{} v{} {}", event.position, event.version, event.event_type);
//! }
//! store.close()?;
//! # Ok::<(), evstore::Error>(())
//! ```
//!
//! The architecture and the durability argument are in `docs/design.md`, the on-disk format byte
//! by byte in `docs/format.md`.

#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "evstore runs on Linux only: it writes with O_DIRECT through io_uring (or pwritev2) and relies on \
     Linux's statfs, fallocate and page-cache behaviour; there is no port to this target"
);

mod buffer;
mod constants;
mod error;
mod lock;
mod log;
mod platform;
mod read;
mod shared;
mod store;
#[doc(hidden)]
pub mod testing;
mod ticket;
mod write;

use std::borrow::Cow;
use std::fmt;

pub use constants::{
    APPEND_EVENTS_MAX, EVENT_TYPE_BYTES_MAX, GROUPS_IN_FLIGHT_LIMIT, GROUP_BYTES_LIMIT, LINGER_LIMIT,
    LIVE_LAG_GROUPS_MAX, LIVE_LAG_STREAM_EVENTS_MAX, METADATA_BYTES_MAX, PROJECTION_BATCH_EVENTS_MAX,
    QUEUE_BYTES_LIMIT, RECORD_HEADER_BYTES, SEGMENT_BYTES_LIMIT, STREAM_ID_BYTES_MAX, SUBSCRIPTION_BATCH_MAX,
};
pub use error::{Error, Result};
pub use log::recovery::RepairReport;
pub use read::projection::{FlushPolicy, Projection, ProjectionError, ProjectionRunner, RunEnd, StopHandle};
pub use read::reader::{AllEvents, EventRef, StreamEvents, END};
pub use read::subscription::{Envelope, Subscription};
pub use store::{Stats, Store};
pub use ticket::Ticket;

/// How a group of appends is made durable before its waiters are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncMode {
    /// Write, then `fdatasync` ordered after it (linked on the ring).
    Fdatasync,
    /// Each write carries `RWF_DSYNC`: the write completes only once it is durable.
    Dsync,
    /// NOT DURABLE: acknowledge once written, never flush. For comparisons only.
    None,
}

impl SyncMode {
    /// A short label; `None` says loudly that it is not durable.
    pub fn label(self) -> &'static str {
        match self {
            SyncMode::Fdatasync => "fdatasync",
            SyncMode::Dsync => "dsync",
            SyncMode::None => "none (NOT DURABLE)",
        }
    }
}

/// Which I/O backend writes the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// io_uring when the kernel (and any seccomp filter) allows it, else the portable backend
    /// with a warning logged through `tracing`.
    Auto,
    /// io_uring or fail with [`Error::IoUringUnavailable`].
    IoUring,
    /// pwritev2 + fdatasync from the submitter thread; works everywhere.
    Portable,
}

/// How segment files are prepared ahead of use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentPrepare {
    /// Write zeros over the whole file in the background, so a later fdatasync never has to
    /// journal extent conversions (the fast default on ext4).
    Zeroed,
    /// Only `fallocate`: cheaper to create, slower to sync (unwritten extents).
    Fallocated,
    /// Each segment as the log's writes call for, decided when it is asked for: `Zeroed` while
    /// the active segment's groups average under 384 KiB (small writes, where a sync that
    /// converts extents costs most), `Fallocated` once they are larger (the log then writes
    /// near the disk's bandwidth, and zeroing a segment would write every byte twice:
    /// measured, it halved the throughput of 64 KiB events). The default.
    Auto,
}

/// Options for [`Store::open`]. Start from `Options::default()` and change what you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// How appends are made durable. Default: [`SyncMode::Dsync`] (measured faster here, see
    /// docs/results.md).
    pub sync: SyncMode,
    /// Which I/O backend to use. Default: [`Backend::Auto`].
    pub backend: Backend,
    /// Size of each segment file in bytes: a multiple of 4096, at least `group_bytes_max + 8192`,
    /// at most [`SEGMENT_BYTES_LIMIT`]. Default 256 MiB.
    pub segment_bytes: u64,
    /// How segments are prepared. Default: [`SegmentPrepare::Auto`] (zeroed for small writes, fallocated for large ones).
    pub segment_prepare: SegmentPrepare,
    /// Segments grow: the first holds one largest group (`group_bytes_max` + 8 KiB), each next
    /// one is twice the last, up to `segment_bytes`; so a store of a handful of events takes a
    /// few MiB on disk, not `segment_bytes`. Off: every segment has `segment_bytes`. Default: on.
    pub grow_segments: bool,
    /// Largest group (one write) in bytes, multiple of 4096, at most [`GROUP_BYTES_LIMIT`]; also
    /// bounds the largest append. Default 4 MiB.
    pub group_bytes_max: usize,
    /// How many groups may be written and flushing at once. Default 4, at most
    /// [`GROUPS_IN_FLIGHT_LIMIT`] (64). Recovery relies on it: after a crash only this many
    /// groups at the end of the log can be torn.
    pub groups_in_flight_max: usize,
    /// The open group is written once it holds at least this many bytes, even if nobody waits
    /// on it yet (it is also written when a caller waits on an append in it, when its
    /// `linger` time is up, and when it is full), as soon as fewer than `groups_in_flight_max`
    /// groups are in flight. At most [`GROUP_BYTES_LIMIT`]; above `group_bytes_max`, only full
    /// groups go for their size. Default 256 KiB.
    pub busy_group_bytes_min: usize,
    /// Bytes of each producer handle's queue (a ring the handle encodes its appends into and
    /// the submitter drains; see [`Store`] on handles): a power of two from 64 KiB to
    /// [`QUEUE_BYTES_LIMIT`]. An append larger than a quarter of it is queued as a heap copy
    /// that takes a quarter of the ring (so at most four are queued per handle). A full queue
    /// blocks its handle's appends (backpressure). Allocated at a handle's first append, with
    /// 128 KiB of result slots for its tickets; at most 128 queues exist per store (past that,
    /// handles share them), so memory is bounded by `128 x (queue_bytes + 128 KiB)`, plus the
    /// heap copies of queued large appends. Default 256 KiB.
    pub queue_bytes: usize,
    /// How long appends nobody waits on wait for more: in their handle's queue (so that a
    /// producer's run of appends is written whole when it starts waiting, not cut into another
    /// producer's group) and in the open group when it is not full or large (see
    /// `busy_group_bytes_min`). The bound, counted from the first append of a handle's run (the
    /// first one made after its queue was drained), on how long an append whose caller does not
    /// wait (a dropped ticket, one checked later) stays unwritten. A handle's appends are taken
    /// and written at once when a caller waits on one of them (`wait()`, `.await`). At most 1 s.
    /// Default 1 ms.
    pub linger: std::time::Duration,
    /// Polling mode: the submitter and callers waiting on tickets spin with `yield_now` instead
    /// of sleeping and being woken. More throughput and lower latency with few producers, at the
    /// price of keeping cores busy while idle (the submitter uses a whole core forever). For a
    /// machine that does nothing else; measured in docs/results.md. Default: off.
    pub polling: bool,
    /// Spin briefly instead of sleeping around small writes: while a group of at most 8 appends
    /// is being written, the submitter waits for its completion by polling (up to 500 us), and
    /// after publishing one it polls up to 100 us for the next append someone waits on (less
    /// often while such polls find nothing). Only while no producer is in the middle of a run
    /// of appends. A caller that appends one event and waits, again and again, then skips one
    /// or two wake-ups of a sleeping thread per append (20-50 us each on a virtual machine), at
    /// the price of the submitter's core being busy for about the duration of each such write.
    /// Large groups, and producers that come back rarely, are not affected. Measured in
    /// docs/results.md; `polling` goes further (every wait spins, producers too). Default: on.
    pub poll_small_writes: bool,
    /// Write an index checkpoint in the background once this many bytes of log (and at least as
    /// many as the last checkpoint file holds) became durable since the last one, so that an
    /// open after a crash scans only the log after it; one is also written at every clean close.
    /// 0: only at close (and on [`Store::checkpoint`]). Default 256 MiB.
    pub checkpoint_log_bytes: u64,
    /// Allow a directory on a file system that does not survive power loss (tmpfs, ramfs).
    pub allow_volatile: bool,
    /// Allow buffered I/O where the file system refuses O_DIRECT.
    pub allow_buffered_io: bool,
    /// Test hook: inject I/O faults. Not part of the stable API.
    #[doc(hidden)]
    pub faults: Option<testing::FaultPlan>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncMode::Dsync,
            backend: Backend::Auto,
            segment_bytes: constants::SEGMENT_BYTES_DEFAULT,
            segment_prepare: SegmentPrepare::Auto,
            grow_segments: true,
            group_bytes_max: constants::GROUP_BYTES_MAX_DEFAULT,
            groups_in_flight_max: constants::GROUPS_IN_FLIGHT_MAX_DEFAULT,
            busy_group_bytes_min: constants::BUSY_GROUP_BYTES_MIN_DEFAULT,
            queue_bytes: constants::QUEUE_BYTES_DEFAULT,
            linger: constants::LINGER_DEFAULT,
            polling: false,
            poll_small_writes: true,
            checkpoint_log_bytes: constants::CHECKPOINT_LOG_BYTES_DEFAULT,
            allow_volatile: false,
            allow_buffered_io: false,
            faults: None,
        }
    }
}

/// Chainable setters, one per field: `Options::default().sync(SyncMode::Fdatasync).segment_bytes(64 << 20)`.
/// (`Options` is `#[non_exhaustive]`, so a struct literal with `..Default::default()` does not
/// compile outside this crate.) Values are checked by [`Store::open`], which names the option it
/// refuses ([`Error::InvalidOption`]).
///
/// ```
/// use evstore::{Options, SyncMode};
///
/// let options = Options::default().sync(SyncMode::Fdatasync).segment_bytes(64 << 20).groups_in_flight_max(8);
/// assert_eq!((options.sync, options.segment_bytes, options.groups_in_flight_max), (SyncMode::Fdatasync, 64 << 20, 8));
/// ```
impl Options {
    /// How appends are made durable (see the field). Returns the options, so that setters chain.
    pub fn sync(mut self, sync: SyncMode) -> Options {
        self.sync = sync;
        self
    }

    /// Which I/O backend writes the log (see the field). Returns the options, so that setters chain.
    pub fn backend(mut self, backend: Backend) -> Options {
        self.backend = backend;
        self
    }

    /// Size of each segment file in bytes (see the field for its bounds). Returns the options, so that setters chain.
    pub fn segment_bytes(mut self, segment_bytes: u64) -> Options {
        self.segment_bytes = segment_bytes;
        self
    }

    /// How segments are prepared ahead of use. Returns the options, so that setters chain.
    pub fn segment_prepare(mut self, segment_prepare: SegmentPrepare) -> Options {
        self.segment_prepare = segment_prepare;
        self
    }

    /// Whether segments grow from small to `segment_bytes` (see the field). Returns the
    /// options, so that setters chain.
    pub fn grow_segments(mut self, grow_segments: bool) -> Options {
        self.grow_segments = grow_segments;
        self
    }

    /// Largest group (one write) in bytes; also bounds the largest append. Returns the options, so that setters chain.
    pub fn group_bytes_max(mut self, group_bytes_max: usize) -> Options {
        self.group_bytes_max = group_bytes_max;
        self
    }

    /// How many groups may be written and flushing at once. Returns the options, so that setters chain.
    pub fn groups_in_flight_max(mut self, groups_in_flight_max: usize) -> Options {
        self.groups_in_flight_max = groups_in_flight_max;
        self
    }

    /// Bytes a group needs to be submitted early while another is in flight. Returns the options, so that setters chain.
    pub fn busy_group_bytes_min(mut self, busy_group_bytes_min: usize) -> Options {
        self.busy_group_bytes_min = busy_group_bytes_min;
        self
    }

    /// Bytes of each producer handle's queue. Returns the options, so that setters chain.
    pub fn queue_bytes(mut self, queue_bytes: usize) -> Options {
        self.queue_bytes = queue_bytes;
        self
    }

    /// How long an open group nobody waits on waits for more appends. Returns the options, so
    /// that setters chain.
    pub fn linger(mut self, linger: std::time::Duration) -> Options {
        self.linger = linger;
        self
    }

    /// Polling mode (see the field). Returns the options, so that setters chain.
    pub fn polling(mut self, polling: bool) -> Options {
        self.polling = polling;
        self
    }

    /// Polling around small writes (see the field). Returns the options, so that setters chain.
    pub fn poll_small_writes(mut self, poll_small_writes: bool) -> Options {
        self.poll_small_writes = poll_small_writes;
        self
    }

    /// Log bytes between background index checkpoints. Returns the options, so that setters chain.
    pub fn checkpoint_log_bytes(mut self, checkpoint_log_bytes: u64) -> Options {
        self.checkpoint_log_bytes = checkpoint_log_bytes;
        self
    }

    /// Allow a directory on a file system that does not survive power loss. Returns the options, so that setters chain.
    pub fn allow_volatile(mut self, allow_volatile: bool) -> Options {
        self.allow_volatile = allow_volatile;
        self
    }

    /// Allow buffered I/O where the file system refuses O_DIRECT. Returns the options, so that setters chain.
    pub fn allow_buffered_io(mut self, allow_buffered_io: bool) -> Options {
        self.allow_buffered_io = allow_buffered_io;
        self
    }
}

/// An event to append: a type, the data and optional metadata (opaque bytes).
///
/// The fields borrow where they can (`Cow`): an event type that is a string literal, or data
/// that lives elsewhere for the duration of the `append` call, is never copied onto the heap;
/// `append` encodes the event before it returns, so the borrow ends there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event's type (1 to 255 bytes), e.g. `"ItemCreated"`.
    pub event_type: Cow<'a, str>,
    /// The event's data: opaque bytes (JSON, protobuf, ...), at most what a group holds.
    pub data: Cow<'a, [u8]>,
    /// Opaque metadata (at most 65,535 bytes; empty if none).
    pub metadata: Cow<'a, [u8]>,
}

impl<'a> Event<'a> {
    /// An event of `event_type` (a `&str` or a `String`) with `data` (bytes or text, borrowed or
    /// owned: see [`EventBytes`]) and no metadata.
    pub fn new(event_type: impl Into<Cow<'a, str>>, data: impl Into<EventBytes<'a>>) -> Event<'a> {
        Event { event_type: event_type.into(), data: data.into().0, metadata: Cow::Borrowed(&[]) }
    }

    /// The same event with `metadata` (bytes or text, borrowed or owned).
    pub fn with_metadata(mut self, metadata: impl Into<EventBytes<'a>>) -> Event<'a> {
        self.metadata = metadata.into().0;
        self
    }
}

/// Data or metadata handed to [`Event::new`]: made from `Vec<u8>`, `String`, `[u8; N]`,
/// `&[u8]`, `&[u8; N]`, `&str`, `&Vec<u8>` or `&String`. Borrowed bytes are not copied until `append`
/// encodes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBytes<'a>(pub Cow<'a, [u8]>);

impl From<Vec<u8>> for EventBytes<'_> {
    fn from(bytes: Vec<u8>) -> Self {
        EventBytes(Cow::Owned(bytes))
    }
}

impl From<String> for EventBytes<'_> {
    fn from(text: String) -> Self {
        EventBytes(Cow::Owned(text.into_bytes()))
    }
}

impl<'a> From<&'a [u8]> for EventBytes<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        EventBytes(Cow::Borrowed(bytes))
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for EventBytes<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        EventBytes(Cow::Borrowed(bytes))
    }
}

impl<const N: usize> From<[u8; N]> for EventBytes<'_> {
    fn from(bytes: [u8; N]) -> Self {
        EventBytes(Cow::Owned(bytes.to_vec()))
    }
}

impl<'a> From<&'a str> for EventBytes<'a> {
    fn from(text: &'a str) -> Self {
        EventBytes(Cow::Borrowed(text.as_bytes()))
    }
}

impl<'a> From<&'a Vec<u8>> for EventBytes<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        EventBytes(Cow::Borrowed(bytes))
    }
}

impl<'a> From<&'a String> for EventBytes<'a> {
    fn from(text: &'a String) -> Self {
        EventBytes(Cow::Borrowed(text.as_bytes()))
    }
}

impl<'a> From<Cow<'a, [u8]>> for EventBytes<'a> {
    fn from(bytes: Cow<'a, [u8]>) -> Self {
        EventBytes(bytes)
    }
}

/// The optimistic concurrency check of an append, run on the submitter thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version (versions start at 0).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// What a durable append reports. Note the asymmetry: `position` is the append's *first*
/// event's, `version` its *last* event's (the one to expect in the next append to the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Global log position of the first event of the append (positions count events from 0).
    pub position: u64,
    /// Stream version of the last event of the append (versions count from 0 per stream).
    pub version: u64,
}

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Position in the log (events count from 0).
    pub position: u64,
    /// The stream id.
    pub stream: String,
    /// Version in its stream (versions count from 0 per stream).
    pub version: u64,
    /// The event type.
    pub event_type: String,
    /// The event's data.
    pub data: Vec<u8>,
    /// The event's metadata (empty if none was given).
    pub metadata: Vec<u8>,
    /// When the group holding the event was built, in microseconds since the Unix epoch.
    pub timestamp_us: u64,
}
