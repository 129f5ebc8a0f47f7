//! The one error type a caller matches on. Every variant says what happened and, in its message,
//! what the caller can do about it. Errors are `Clone` because one failure (a poisoned store) is
//! reported to every waiting ticket.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in evstore.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid stream id {stream:?}: {reason}")]
    InvalidStreamId { stream: String, reason: &'static str },
    #[error("invalid event type {event_type:?}: {reason}")]
    InvalidEventType { event_type: String, reason: &'static str },
    #[error("an append needs at least one event")]
    EmptyAppend,
    #[error("event of {size} bytes is larger than the maximum of {max} bytes (raise Options::group_bytes_max)")]
    EventTooLarge { size: usize, max: usize },
    #[error("append of {events} events and {size} bytes exceeds the maximum of {max} bytes or {events_max} events (raise Options::group_bytes_max or split it)")]
    AppendTooLarge { events: usize, size: usize, max: usize, events_max: usize },
    #[error("metadata of {size} bytes is larger than the maximum of {max} bytes")]
    MetadataTooLarge { size: usize, max: usize },
    #[error("wrong expected version for stream {stream:?}: expected {expected}, actual {}", match actual { Some(v) => v.to_string(), None => "no stream".to_string() })]
    WrongExpectedVersion { stream: String, expected: crate::ExpectedVersion, actual: Option<u64> },
    #[error("the {what} is full: it holds at most {max} events (positions and versions are stored in 48 bits)")]
    LogFull { what: &'static str, max: u64 },
    #[error("the append queue ({capacity} appends) is full, and this append was made on evstore's submitter thread (from a waker that polls its task inline), which cannot wait for room; append from another thread, or wake the task elsewhere")]
    QueueFull { capacity: usize },
    #[error("the store is closed")]
    Closed,
    #[error("the store stopped accepting appends after a failed write or sync ({cause}); reopen it to recover the last durable state")]
    Poisoned { cause: String },
    #[error("{path} is locked by another Store (in this or another process); close it first")]
    Locked { path: PathBuf },
    #[error("corrupted log in segment {segment} at offset {offset}: {reason}")]
    Corrupted { segment: u64, offset: u64, reason: String },
    #[error("{path} is on {fs}, which refuses O_DIRECT; set Options::allow_buffered_io to use buffered I/O there")]
    DirectIoUnsupported { path: PathBuf, fs: String },
    #[error("{path} is on {fs}, which does not survive a power loss; set Options::allow_volatile to use it anyway")]
    VolatileFileSystem { path: PathBuf, fs: String },
    #[error("{path} is not a directory (a store is a directory; give the path of one, or of one to create)")]
    NotADirectory { path: PathBuf },
    #[error("io_uring is unavailable (errno {errno}: {}); use Backend::Auto or Backend::Portable", std::io::Error::from_raw_os_error(*errno))]
    IoUringUnavailable { errno: i32 },
    #[error("disk full while {context}; free space and retry (nothing acknowledged was lost)")]
    DiskFull { context: String },
    #[error("invalid option {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
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
