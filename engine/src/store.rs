//! The store handle: open (checks, lock, recovery, the submitter), append (validate and encode on
//! the caller's core, push on the queue), reads, repair and close. The protocol between
//! producers, the submitter and readers is in shared.rs; tickets are in ticket.rs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use crate::constants::*;
use crate::error::{Error, Result};
use crate::lock::DirLock;
use crate::log::index::{stream_hash, Index};
use crate::log::record;
use crate::log::recovery::{self, RepairReport};
use crate::platform;
use crate::read::reader::{AllEvents, StreamEvents};
use crate::read::subscription::Subscription;
use crate::shared::{Counters, Shared};
use crate::ticket::{Local, Ticket};
use crate::write::lane::{self, EntryHeader, EntryKind, Lanes};
use crate::write::submitter;
use crate::{Backend, Event, ExpectedVersion, Options, RecordedEvent, END};

/// What the store did since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Durable events appended.
    pub events: u64,
    /// Durable appends (calls).
    pub appends: u64,
    /// Groups written (one write each).
    pub groups: u64,
    /// Durability operations: fdatasyncs, or RWF_DSYNC writes in `Dsync` mode.
    pub syncs: u64,
    /// Bytes written for groups, padding included (segment headers and pre-zeroing excluded).
    pub disk_bytes: u64,
    /// Bytes of encoded records (headers included, padding excluded).
    pub record_bytes: u64,
    /// Bytes of stream ids, event types, metadata and data.
    pub payload_bytes: u64,
    /// Segments started.
    pub segments: u64,
}

/// The unique owner of the submitter thread; dropping the last `Store` clone drops it.
///
/// The directory lock is not here: the submitter thread owns it and releases it as it exits, so
/// that no second `Store` can open the directory while this one's submitter may still write,
/// whichever thread drops the last clone (see `shutdown`).
struct Handle {
    shared: Arc<Shared>,
    submitter: Mutex<Option<JoinHandle<()>>>,
}

impl Handle {
    fn shutdown(&self) -> Result<()> {
        if !self.shared.closing.swap(true, Ordering::SeqCst) {
            tracing::info!(
                path = %self.shared.dir.display(),
                appended_since_open = self.shared.counters.events.load(Ordering::Relaxed),
                "closing the store"
            );
        }
        let submitter_thread = self.shared.submitter_thread.get();
        self.shared.wake_submitter_now();
        if submitter_thread.is_some_and(|thread| thread.id() == std::thread::current().id()) {
            // The last clone was dropped (or `close` called) on the submitter thread itself: a
            // waker that polls its task inline, and the task owned the store. A thread cannot
            // join itself. It sees `closing` when this returns, makes every queued append
            // durable, exits, and only then releases the directory lock.
            return match self.shared.poisoned.get() {
                Some(cause) => Err(Error::Poisoned { cause: cause.clone() }),
                None => Ok(()),
            };
        }
        let handle = self.submitter.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                return Err(Error::Poisoned { cause: "the submitter thread panicked".into() });
            }
        }
        match self.shared.poisoned.get() {
            Some(cause) => Err(Error::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// An open event store. Cheap to clone; all clones share one store. Give each producer thread
/// (or task) its own clone: each clone appends through its own queue (a ring it encodes into,
/// taken at its first append; see `Options::queue_bytes`), so producers share nothing per
/// append. One clone shared by many threads works too; their appends then take turns on its
/// queue. An append to a stream made after another append to it returned is placed after it,
/// whichever clones, threads or tasks made them. Dropping the last clone closes it cleanly
/// (pending appends are still made durable).
pub struct Store {
    handle: Arc<Handle>,
    local: Arc<Local>,
}

impl Clone for Store {
    fn clone(&self) -> Store {
        Store { handle: self.handle.clone(), local: Local::new(&self.handle.shared) }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.handle.shared.dir).finish_non_exhaustive()
    }
}

fn validate_options(options: &Options) -> Result<()> {
    let bad = |name: &'static str, reason: String| Err(Error::InvalidOption { name, reason });
    if options.group_bytes_max < 2 * BLOCK_BYTES || options.group_bytes_max % BLOCK_BYTES != 0 {
        return bad(
            "group_bytes_max",
            format!("{} is not a multiple of {BLOCK_BYTES} of at least {}", options.group_bytes_max, 2 * BLOCK_BYTES),
        );
    }
    if options.group_bytes_max > GROUP_BYTES_LIMIT {
        return bad("group_bytes_max", format!("{} is over {GROUP_BYTES_LIMIT}", options.group_bytes_max));
    }
    if options.segment_bytes % BLOCK_BYTES as u64 != 0
        || options.segment_bytes < (options.group_bytes_max + 2 * BLOCK_BYTES) as u64
        || options.segment_bytes > SEGMENT_BYTES_LIMIT
    {
        return bad(
            "segment_bytes",
            format!(
                "{} must be a multiple of {BLOCK_BYTES}, at least group_bytes_max + 8192 ({}) and at most {SEGMENT_BYTES_LIMIT}",
                options.segment_bytes,
                options.group_bytes_max + 2 * BLOCK_BYTES
            ),
        );
    }
    if options.groups_in_flight_max == 0 || options.groups_in_flight_max > GROUPS_IN_FLIGHT_LIMIT {
        return bad(
            "groups_in_flight_max",
            format!("{} is not in 1..={GROUPS_IN_FLIGHT_LIMIT}", options.groups_in_flight_max),
        );
    }
    if !options.queue_bytes.is_power_of_two()
        || options.queue_bytes < QUEUE_BYTES_MIN
        || options.queue_bytes > QUEUE_BYTES_LIMIT
    {
        return bad(
            "queue_bytes",
            format!("{} is not a power of two from {QUEUE_BYTES_MIN} to {QUEUE_BYTES_LIMIT}", options.queue_bytes),
        );
    }
    if options.linger > LINGER_LIMIT {
        return bad("linger", format!("{:?} is over {LINGER_LIMIT:?}", options.linger));
    }
    if options.busy_group_bytes_min > GROUP_BYTES_LIMIT {
        return bad("busy_group_bytes_min", format!("{} is over {GROUP_BYTES_LIMIT}", options.busy_group_bytes_min));
    }
    Ok(())
}

/// The checks shared by `open` and `repair`: options, the directory, its file system, the lock.
fn prepare_dir(path: &Path, options: &Options) -> Result<(PathBuf, DirLock, bool)> {
    validate_options(options)?;
    let dir = path.to_path_buf();
    // Checked first: `create_dir_all` on a file says only "File exists (os error 17)".
    if dir.exists() && !dir.is_dir() {
        return Err(Error::NotADirectory { path: dir });
    }
    std::fs::create_dir_all(&dir).map_err(|e| match e.kind() {
        // A file in the way of a parent, or one created in between.
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
            Error::NotADirectory { path: dir.clone() }
        }
        _ => Error::io(format!("creating {}", dir.display()), e),
    })?;
    let (magic, fs) = platform::file_system(&dir)?;
    if platform::is_volatile(magic) && !options.allow_volatile {
        return Err(Error::VolatileFileSystem { path: dir, fs });
    }
    let lock = DirLock::acquire(&dir)?;
    let direct = if platform::direct_io_works(&dir)? {
        true
    } else if options.allow_buffered_io {
        tracing::warn!(path = %dir.display(), %fs, "O_DIRECT refused; using buffered I/O");
        false
    } else {
        return Err(Error::DirectIoUnsupported { path: dir, fs });
    };
    Ok((dir, lock, direct))
}

impl Store {
    /// Opens (creating if needed) the store in directory `path`, recovering after a crash.
    ///
    /// Damage that a crash cannot explain (a bad checksum with acknowledged data after it, a
    /// truncated or missing segment, ...) makes it fail with [`Error::Corrupted`] naming the
    /// segment and offset, without changing any file; see [`Store::repair`].
    ///
    /// ```
    /// # let temp = tempfile::tempdir().unwrap();
    /// use evstore::{Options, Store, SyncMode};
    ///
    /// let store = Store::open(temp.path().join("events"), Options::default().sync(SyncMode::Dsync))?;
    /// assert_eq!(store.durable_position(), 0);
    /// store.close()?;
    /// # Ok::<(), evstore::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let (dir, lock, direct) = prepare_dir(path.as_ref(), &options)?;
        let recovered = recovery::recover(&dir, &options, direct)?;
        let shared = Arc::new(Shared {
            lanes: Lanes::new(options.queue_bytes),
            durable: AtomicU64::new(recovered.next_position),
            durable_end: AtomicU64::new(recovered.durable_end),
            published_ns: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            poisoned: OnceLock::new(),
            submitter_sleeping: AtomicU32::new(crate::shared::AWAKE),
            submitter_thread: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
            waker_owners: AtomicU64::new(1),
            wakers_waiting: AtomicUsize::new(0),
            index: Index::new(dir.clone(), options.faults.clone()),
            counters: Counters::default(),
            backend: OnceLock::new(),
            options,
            dir,
            direct,
        });
        let submitter = submitter::start(shared.clone(), recovered, lock)?;
        tracing::info!(
            path = %shared.dir.display(),
            events = shared.durable.load(Ordering::Relaxed),
            backend = ?shared.backend.get().copied().unwrap_or(Backend::Portable),
            direct_io = shared.direct,
            sync = shared.options.sync.label(),
            "opened the store"
        );
        let local = Local::new(&shared);
        Ok(Store { handle: Arc::new(Handle { shared, submitter: Mutex::new(Some(submitter)) }), local })
    }

    /// The operator's way out of [`Error::Corrupted`]: cuts the log in `path` at its first
    /// damage, dropping every event from there on, so that [`Store::open`] works again.
    ///
    /// Before it changes or removes a segment file it saves it into a new directory
    /// `damaged-<microseconds>` inside `path`. Returns what it dropped (`Ok(None)`: the log has
    /// no damage and nothing was changed; a torn tail after a crash is not damage, `open` cuts
    /// it). Never called by evstore itself: losing events must be an explicit decision.
    pub fn repair(path: impl AsRef<Path>, options: Options) -> Result<Option<RepairReport>> {
        let (dir, _lock, _direct) = prepare_dir(path.as_ref(), &options)?;
        recovery::repair(&dir, &options)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Appends `events` atomically to `stream` if `expected` holds. Returns at once (blocking only
    /// while the queue is full); the ticket resolves once the events are durable.
    ///
    /// Called on evstore's submitter thread (from a waker that polls its task inline) while the
    /// queue is full, it cannot block: it fails with [`Error::QueueFull`] instead.
    ///
    /// Dropping the ticket does not cancel the append. [`crate::Appended::position`] is the
    /// first event's position, [`crate::Appended::version`] the last event's version.
    ///
    /// ```
    /// # let temp = tempfile::tempdir().unwrap();
    /// use evstore::{Error, Event, ExpectedVersion, Options, Store};
    ///
    /// let store = Store::open(temp.path(), Options::default())?;
    /// let appended = store
    ///     .append("cart/7", ExpectedVersion::NoStream, [Event::new("Created", "{}"), Event::new("ItemAdded", "{}")])?
    ///     .wait()?;
    /// assert_eq!((appended.position, appended.version), (0, 1));
    /// // The expected-version check fails that append alone.
    /// let stale = store.append("cart/7", ExpectedVersion::Exact(0), [Event::new("ItemAdded", "{}")])?.wait();
    /// assert!(matches!(stale, Err(Error::WrongExpectedVersion { actual: Some(1), .. })));
    /// # Ok::<(), evstore::Error>(())
    /// ```
    pub fn append<'a, I>(&self, stream: &str, expected: ExpectedVersion, events: I) -> Result<Ticket>
    where
        I: IntoIterator<Item = Event<'a>>,
    {
        let shared = self.shared();
        if let Some(cause) = shared.poisoned.get() {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        if shared.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        validate_stream(stream)?;
        let append_bytes_max = shared.options.group_bytes_max - GROUP_HEADER_BYTES;
        // The events are collected (on the stack for up to 4) and checked before anything is
        // written: the ring is then written once, straight from the caller's bytes. One event
        // (the common call) skips the collection.
        let mut events = events.into_iter();
        let Some(first) = events.next() else { return Err(Error::EmptyAppend) };
        let mut record_bytes = check_event(stream, &first, (0, 0), append_bytes_max)?;
        let one;
        let mut many: smallvec::SmallVec<[Event<'a>; 4]> = smallvec::SmallVec::new();
        let batch: &[Event<'a>] = match events.next() {
            None => {
                one = first;
                std::slice::from_ref(&one)
            }
            Some(second) => {
                many.push(first);
                for event in std::iter::once(second).chain(events) {
                    if many.len() >= APPEND_EVENTS_MAX {
                        return Err(Error::AppendTooLarge {
                            events: many.len() + 1,
                            size: record_bytes,
                            max: append_bytes_max,
                            events_max: APPEND_EVENTS_MAX,
                        });
                    }
                    record_bytes += check_event(stream, &event, (many.len(), record_bytes), append_bytes_max)?;
                    many.push(event);
                }
                &many
            }
        };
        let local = &self.local;
        let lane = local.lane();
        let (entry_bytes, inline) = lane::entry_bytes(record_bytes, lane.capacity());
        // On the submitter thread (a waker polling its task inline) nothing may wait for the
        // submitter: a full queue (or one held by a producer waiting for room) is an error.
        let on_submitter = submitter::on_submitter_of(shared);
        let full = || Error::QueueFull { capacity: shared.options.queue_bytes };
        let mut producer = lane.produce(on_submitter).ok_or_else(full)?;
        let mut spins = 0u32;
        let entry = loop {
            if let Ok(entry) = producer.reserve(entry_bytes) {
                // The reservation stands until it is published: taking it again is a no-op.
                if producer.claim().is_ok() {
                    break entry;
                }
            }
            // Backpressure: the ring is full (or a result slot's append is not placed yet):
            // wait for the submitter to drain, never grow memory.
            if let Some(cause) = shared.poisoned.get() {
                return Err(Error::Poisoned { cause: cause.clone() });
            }
            if on_submitter {
                return Err(full());
            }
            if shared.stopped.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            shared.ring_doorbell(true);
            spins += 1;
            if spins < 64 || shared.options.polling {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        };
        let hash = stream_hash(stream);
        // After every earlier append to this stream through another handle (write/lane.rs).
        let ordered = shared.lanes.order(hash, lane, producer.next_seq(), !on_submitter, || {
            shared.ring_doorbell(true);
            std::thread::yield_now();
        });
        if ordered.is_err() {
            return Err(full());
        }
        let header = EntryHeader {
            entry_bytes: entry_bytes as u32,
            kind: if inline { EntryKind::Inline } else { EntryKind::Indirect },
            expected,
            stream_len: stream.len() as u16,
            events: batch.len() as u32,
            record_bytes: record_bytes as u32,
            hash,
        };
        producer.write_header(entry, &header);
        if inline {
            let body = producer.entry_mut(entry + lane::ENTRY_HEADER_BYTES as u64, record_bytes);
            encode_events(body, stream, batch);
        } else {
            // Large appends are encoded on the heap (the allocation is small beside the copy).
            let mut records = vec![0u8; record_bytes].into_boxed_slice();
            encode_events(&mut records, stream, batch);
            producer.write_indirect(entry, records);
        }
        let seq = producer.publish(entry, entry_bytes);
        let urgent = producer.half_full();
        drop(producer);
        shared.ring_doorbell(urgent);
        Ok(Ticket::new(local.clone(), seq, batch.len() as u32))
    }

    /// Events of `stream` from version `from_version` on, oldest first; only durable events.
    /// A stream that does not exist reads as empty. The read is a snapshot: it sees the events
    /// durable when it was made. Limit it with [`StreamEvents::max_count`]; read without copying
    /// with [`StreamEvents::next_ref`].
    ///
    /// ```
    /// # let temp = tempfile::tempdir().unwrap();
    /// # use evstore::{Event, ExpectedVersion, Options, Store};
    /// # let store = Store::open(temp.path(), Options::default())?;
    /// # for i in 0..3 { store.append("users/1", ExpectedVersion::Any, [Event::new("Seen", format!("{i}"))])?.wait()?; }
    /// let versions: Vec<u64> = store.read_stream("users/1", 1)?.map(|e| e.map(|e| e.version)).collect::<Result<_, _>>()?;
    /// assert_eq!(versions, [1, 2]);
    /// // Without copying: each event borrows the mapped log until the next call.
    /// let mut events = store.read_stream("users/1", 0)?.max_count(2);
    /// while let Some(event) = events.next_ref() {
    ///     let event = event?;
    ///     assert_eq!(event.event_type(), "Seen");
    /// }
    /// # Ok::<(), evstore::Error>(())
    /// ```
    pub fn read_stream(&self, stream: &str, from_version: u64) -> Result<StreamEvents> {
        validate_stream(stream)?;
        Ok(StreamEvents::new(self.shared().clone(), stream, from_version, false))
    }

    /// Events of `stream` from version `from_version` down to version 0, newest first; from the
    /// last durable event if `from_version` is past it (pass [`crate::END`]).
    pub fn read_stream_backwards(&self, stream: &str, from_version: u64) -> Result<StreamEvents> {
        validate_stream(stream)?;
        Ok(StreamEvents::new(self.shared().clone(), stream, from_version, true))
    }

    /// The last durable event of `stream`, or `None` if it has none.
    pub fn last_event(&self, stream: &str) -> Result<Option<RecordedEvent>> {
        self.read_stream_backwards(stream, END)?.next().transpose()
    }

    /// Every durable event from `from_position` on, in log order. The read is a snapshot: it
    /// sees the events durable when it was made (follow the log with [`Store::subscribe_all`]).
    ///
    /// ```
    /// # let temp = tempfile::tempdir().unwrap();
    /// # use evstore::{Event, ExpectedVersion, Options, Store, END};
    /// # let store = Store::open(temp.path(), Options::default())?;
    /// # for s in ["a", "b", "a"] { store.append(s, ExpectedVersion::Any, [Event::new("E", "")])?.wait()?; }
    /// assert_eq!(store.read_all(0)?.count(), 3);
    /// let newest: Vec<String> = store.read_all_backwards(END)?.max_count(2).map(|e| e.map(|e| e.stream)).collect::<Result<_, _>>()?;
    /// assert_eq!(newest, ["a", "b"]);
    /// # Ok::<(), evstore::Error>(())
    /// ```
    pub fn read_all(&self, from_position: u64) -> Result<AllEvents> {
        Ok(AllEvents::new(self.shared().clone(), from_position, false))
    }

    /// Every durable event from `from_position` down to position 0, newest first; from the last
    /// durable event if `from_position` is past it (pass [`crate::END`]).
    pub fn read_all_backwards(&self, from_position: u64) -> Result<AllEvents> {
        Ok(AllEvents::new(self.shared().clone(), from_position, true))
    }

    /// Follows the whole log from `from_position` on: every durable event from there (history,
    /// flagged historic), then every event as it becomes durable (live), each exactly once, in
    /// position order. To resume after a restart, pass the position after the last event handled;
    /// pass [`crate::END`] for live events only (from the durable end when it is called).
    ///
    /// ```
    /// # let temp = tempfile::tempdir().unwrap();
    /// # use evstore::{Event, ExpectedVersion, Options, Store};
    /// # let store = Store::open(temp.path(), Options::default())?;
    /// store.append("a", ExpectedVersion::Any, [Event::new("Old", "")])?.wait()?;
    /// let mut subscription = store.subscribe_all(0)?;
    /// let old = subscription.next().unwrap()?;
    /// assert!(old.historic());
    /// store.append("a", ExpectedVersion::Any, [Event::new("New", "")])?.wait()?;
    /// let new = subscription.next().unwrap()?; // blocks until an event is durable
    /// assert_eq!((new.position(), new.event_type(), new.historic()), (1, "New", false));
    /// # Ok::<(), evstore::Error>(())
    /// ```
    pub fn subscribe_all(&self, from_position: u64) -> Result<Subscription> {
        Ok(Subscription::all(self.shared().clone(), from_position))
    }

    /// Follows `stream` from version `from_version` on, as [`Store::subscribe_all`] follows the
    /// log: history, then live events, each version exactly once, in order ([`crate::END`]: from
    /// the stream's durable end when it is called).
    pub fn subscribe_stream(&self, stream: &str, from_version: u64) -> Result<Subscription> {
        validate_stream(stream)?;
        Ok(Subscription::stream(self.shared().clone(), stream, from_version))
    }

    /// Number of durable events, which is also the position the next event will get.
    pub fn durable_position(&self) -> u64 {
        self.shared().durable.load(Ordering::Acquire)
    }

    /// Version of the last durable event of `stream`, or `None` if it has none.
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        crate::read::reader::last_durable_version(self.shared(), stream)
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        let c = &self.shared().counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            events: get(&c.events),
            appends: get(&c.appends),
            groups: get(&c.groups),
            syncs: get(&c.syncs),
            disk_bytes: get(&c.disk_bytes),
            record_bytes: get(&c.record_bytes),
            payload_bytes: get(&c.payload_bytes),
            segments: get(&c.segments),
        }
    }

    /// Resident bytes of the in-memory index (both stream tables, their shared names, the group
    /// directory), estimated from the capacities of its tables. It walks every stream under the
    /// readers' lock: a diagnostic, not for a hot loop.
    pub fn index_bytes(&self) -> u64 {
        self.shared().index.resident_bytes() as u64
    }

    /// Writes an index checkpoint of the durable log now, on this thread, and waits until it is
    /// durable (checkpoints are also written in the background and at close; see
    /// `Options::checkpoint_log_bytes`). Does nothing if the checkpoint on disk is already up to
    /// date, the log is empty, or the store runs with `SyncMode::None`. Fails with
    /// [`Error::Poisoned`] on a poisoned store, [`Error::Closed`] once the store is closed,
    /// [`Error::Io`] if the file cannot be written (the log is unaffected).
    pub fn checkpoint(&self) -> Result<()> {
        if let Some(cause) = self.shared().poisoned.get() {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        crate::log::checkpoint::write(self.shared()).map(|_| ())
    }

    /// The backend in use (`IoUring` or `Portable`; `Auto` is resolved at open).
    pub fn backend(&self) -> Backend {
        *self.shared().backend.get().unwrap_or(&Backend::Portable)
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.shared().dir
    }

    /// Stops accepting appends, makes every queued append durable and waits for the submitter.
    /// Other clones of this store then fail appends with [`Error::Closed`].
    ///
    /// Called on the submitter thread itself (from a waker that polls its task inline), it cannot
    /// wait: it returns at once, and the submitter finishes the queued appends, then exits and
    /// releases the directory lock on its own.
    pub fn close(self) -> Result<()> {
        self.handle.shutdown()
    }
}

#[inline]
fn validate_stream(stream: &str) -> Result<()> {
    if stream.is_empty() {
        return Err(Error::InvalidStreamId { stream: String::new(), reason: "it is empty" });
    }
    if stream.len() > STREAM_ID_BYTES_MAX {
        return Err(Error::InvalidStreamId {
            stream: stream.chars().take(64).collect::<String>() + "...",
            reason: "it is longer than 255 bytes",
        });
    }
    Ok(())
}

/// Checks one event of an append whose earlier `so_far.0` events take `so_far.1` record bytes;
/// returns its record's size. Checked before any copy: a 2 GiB event is refused without
/// touching its bytes.
#[inline]
fn check_event(stream: &str, event: &Event<'_>, so_far: (usize, usize), append_bytes_max: usize) -> Result<usize> {
    let (events_before, so_far) = so_far;
    if event.event_type.is_empty() {
        return Err(Error::InvalidEventType { event_type: String::new(), reason: "it is empty" });
    }
    if event.event_type.len() > EVENT_TYPE_BYTES_MAX {
        return Err(Error::InvalidEventType {
            event_type: event.event_type.chars().take(64).collect::<String>() + "...",
            reason: "it is longer than 255 bytes",
        });
    }
    if event.metadata.len() > METADATA_BYTES_MAX {
        return Err(Error::MetadataTooLarge { size: event.metadata.len(), max: METADATA_BYTES_MAX });
    }
    let size = record::record_len(stream, &event.event_type, &event.metadata, &event.data);
    if size > append_bytes_max {
        return Err(Error::EventTooLarge { size, max: append_bytes_max });
    }
    if so_far + size > append_bytes_max {
        return Err(Error::AppendTooLarge {
            events: events_before + 1,
            size: so_far + size,
            max: append_bytes_max,
            events_max: APPEND_EVENTS_MAX,
        });
    }
    Ok(size)
}

/// Encodes the checked `events` one after another into `out` (exactly their records' bytes);
/// the last one carries the commit flag.
#[inline]
fn encode_events(out: &mut [u8], stream: &str, events: &[Event<'_>]) {
    let mut at = 0;
    for (k, event) in events.iter().enumerate() {
        at += record::encode_unsealed_into(
            &mut out[at..],
            stream,
            &event.event_type,
            &event.metadata,
            &event.data,
            k + 1 == events.len(),
        );
    }
    debug_assert_eq!(at, out.len());
}
