//! The one error type a caller matches on. Every variant says what happened and, in its message,
//! what the caller can do about it. Errors are `Clone` because one failure (a poisoned store) is
//! reported to every waiting ticket.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in evstore.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream id is empty or longer than 255 bytes.
    #[error("invalid stream id {stream:?}: {reason}")]
    InvalidStreamId {
        /// The stream id (cut to 64 characters).
        stream: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The event type is empty or longer than 255 bytes.
    #[error("invalid event type {event_type:?}: {reason}")]
    InvalidEventType {
        /// The event type (cut to 64 characters).
        event_type: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An append with no events.
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// One event does not fit in a group (`Options::group_bytes_max`).
    #[error("event of {size} bytes is larger than the maximum of {max} bytes (raise Options::group_bytes_max)")]
    EventTooLarge {
        /// The encoded event, in bytes.
        size: usize,
        /// The most an append may take, in bytes.
        max: usize,
    },
    /// An append has too many events or bytes to be written as one group.
    #[error("append of {events} events and {size} bytes exceeds the maximum of {max} bytes or {events_max} events (raise Options::group_bytes_max or split it)")]
    AppendTooLarge {
        /// Events in the append (as far as it was read).
        events: usize,
        /// Encoded bytes (as far as it was read).
        size: usize,
        /// The most an append may take, in bytes.
        max: usize,
        /// The most events an append may hold.
        events_max: usize,
    },
    /// An event's metadata is longer than 65,535 bytes.
    #[error("metadata of {size} bytes is larger than the maximum of {max} bytes")]
    MetadataTooLarge {
        /// The metadata, in bytes.
        size: usize,
        /// The most it may take.
        max: usize,
    },
    /// The expected-version check failed; nothing of the append was written.
    #[error("wrong expected version for stream {stream:?}: expected {expected}, actual {}", match actual { Some(v) => v.to_string(), None => "no stream".to_string() })]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: String,
        /// What the append expected.
        expected: crate::ExpectedVersion,
        /// The version of the stream's last event when the check ran (`None`: no stream).
        actual: Option<u64>,
    },
    /// Positions or a stream's versions would pass 2^48.
    #[error("the {what} is full: it holds at most {max} events (positions and versions are stored in 48 bits)")]
    LogFull {
        /// "log" or "stream".
        what: &'static str,
        /// The most events it can hold.
        max: u64,
    },
    /// The queue is full and the append was made on evstore's own submitter thread, which cannot wait.
    #[error("the handle's append queue ({capacity} bytes) is full (or busy), and this append was made on evstore's submitter thread (from a waker that polls its task inline), which cannot wait for room; append from another thread, or wake the task elsewhere")]
    QueueFull {
        /// The queue's capacity, in bytes (`Options::queue_bytes`).
        capacity: usize,
    },
    /// The store was closed (or every clone dropped) before the append was taken.
    #[error("the store is closed")]
    Closed,
    /// A write or sync failed: the store takes no more appends; reopen it.
    #[error("the store stopped accepting appends after a failed write or sync ({cause}); reopen it to recover the last durable state")]
    Poisoned {
        /// What failed.
        cause: String,
    },
    /// Another `Store` (in this or another process) has the directory open.
    #[error("{path} is locked by another Store (in this or another process); close it first")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The log holds damage a crash cannot explain; see `Store::repair`.
    #[error("corrupted log in segment {segment} at offset {offset}: {reason}")]
    Corrupted {
        /// The segment file's number.
        segment: u64,
        /// Byte offset of the damage in it.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The file system refuses O_DIRECT and `Options::allow_buffered_io` is off.
    #[error("{path} is on {fs}, which refuses O_DIRECT; set Options::allow_buffered_io to use buffered I/O there")]
    DirectIoUnsupported {
        /// The directory.
        path: PathBuf,
        /// The file system's name.
        fs: String,
    },
    /// The directory is on a file system that does not survive power loss (tmpfs).
    #[error("{path} is on {fs}, which does not survive a power loss; set Options::allow_volatile to use it anyway")]
    VolatileFileSystem {
        /// The directory.
        path: PathBuf,
        /// The file system's name.
        fs: String,
    },
    /// The store's path (or a parent of it) is a file.
    #[error("{path} is not a directory (a store is a directory; give the path of one, or of one to create)")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// `Backend::IoUring` was asked for and the kernel (or a seccomp filter) refuses io_uring.
    #[error("io_uring is unavailable (errno {errno}: {}); use Backend::Auto or Backend::Portable", std::io::Error::from_raw_os_error(*errno))]
    IoUringUnavailable {
        /// The error `io_uring_setup` returned.
        errno: i32,
    },
    /// The disk is full (ENOSPC); nothing acknowledged was lost.
    #[error("disk full while {context}; free space and retry (nothing acknowledged was lost)")]
    DiskFull {
        /// What was being done.
        context: String,
    },
    /// An option is out of range.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option's field name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// Any other I/O error.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error from the system.
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an `io::Error`, turning ENOSPC into `DiskFull` so callers can match on it.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        let context = context.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return Error::DiskFull { context };
        }
        Error::Io { context, source: Arc::new(source) }
    }

    pub(crate) fn from_errno(context: impl Into<String>, errno: i32) -> Error {
        Error::io(context, std::io::Error::from_raw_os_error(errno))
    }
}
