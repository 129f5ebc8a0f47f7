//! Limits and sizes, with their unit last. Every limit the engine enforces lives here and is
//! checked at compile time against the others where they depend on each other.

/// O_DIRECT alignment unit: every write offset, length and buffer address is a multiple of it.
pub const BLOCK_BYTES: usize = 4096;
/// Bytes of the segment header block at the start of every segment file.
pub const SEGMENT_HEADER_BYTES: usize = BLOCK_BYTES;
/// Fixed bytes of a record header (see docs/format.md).
pub const RECORD_HEADER_BYTES: usize = 32;
/// Fixed bytes of a group header (see docs/format.md).
pub const GROUP_HEADER_BYTES: usize = 32;

/// Longest stream id, in bytes of UTF-8 (it is stored in one byte).
pub const STREAM_ID_BYTES_MAX: usize = 255;
/// Longest event type, in bytes of UTF-8 (it is stored in one byte).
pub const EVENT_TYPE_BYTES_MAX: usize = 255;
/// Largest metadata of one event, in bytes (it is stored in two bytes).
pub const METADATA_BYTES_MAX: usize = u16::MAX as usize;
/// Events in one append call.
pub const APPEND_EVENTS_MAX: usize = 65_536;

/// Positions and versions are stored in 48 bits.
pub const POSITION_MAX: u64 = (1 << 48) - 1;

/// Upper bound for `Options::groups_in_flight_max`. Recovery uses it to tell a torn tail (groups
/// that were in flight together) from a bad record in the middle of the log.
pub const GROUPS_IN_FLIGHT_LIMIT: usize = 64;
/// Locations pack the segment number in the top 24 bits and the byte offset in the low 40.
pub const LOCATION_OFFSET_BITS: u32 = 40;
/// Largest segment a location can address.
pub const SEGMENT_BYTES_LIMIT: u64 = 1 << LOCATION_OFFSET_BITS;
/// Largest segment number a location can address.
pub const SEGMENT_NUMBER_MAX: u64 = (1 << (64 - LOCATION_OFFSET_BITS)) - 1;

/// Largest `Options::group_bytes_max`: the submitter allocates `groups_in_flight_max + 1`
/// buffers of this size at open.
pub const GROUP_BYTES_LIMIT: usize = 256 << 20;
/// Largest `Options::queue_bytes` (each producer handle's queue ring).
pub const QUEUE_BYTES_LIMIT: usize = 64 << 20;
/// Smallest `Options::queue_bytes`.
pub const QUEUE_BYTES_MIN: usize = 64 << 10;
/// Producer queues (lanes) a store makes at most; past that, new handles share them.
pub const LANES_MAX: usize = 128;
/// Result slots of each lane: tickets of up to this many of a handle's latest appends find
/// their outcome in place; older live tickets' outcomes are kept aside (write/lane.rs).
pub const LANE_RESULT_SLOTS: usize = 4096;
/// Longest `Options::linger`.
pub const LINGER_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Streams a store holds: stream ids are `u32` in memory (log/index.rs). An append that would
/// create one more fails with `Error::LogFull`.
pub const STREAMS_MAX: usize = u32::MAX as usize;
/// Default `Options::checkpoint_log_bytes`: an index checkpoint after every 256 MiB of log
/// (one default segment), so a crash rescans at most that much.
pub const CHECKPOINT_LOG_BYTES_DEFAULT: u64 = 256 << 20;
/// Locations a checkpoint writer copies per hold of the stream table's read lock: the
/// submitter's publication waits at most for one such copy (tens of microseconds).
pub const CHECKPOINT_CHUNK_LOCATIONS: usize = 1 << 16;
/// An index checkpoint is made durable a slice of this many bytes at a time (log/checkpoint.rs).
pub const CHECKPOINT_SYNC_BYTES: u64 = 1 << 20;
/// Segment mappings kept for readers (see log/index.rs); far below `vm.max_map_count`.
pub const SEGMENT_MAPS_MAX: usize = 256;
/// Most bytes of recent durable groups kept in memory for live readers while a subscription is
/// open (log/recent.rs).
pub const RECENT_GROUP_BYTES_MAX: usize = 16 << 20;
/// Most bytes of such copies alive at once, kept or held by readers and envelopes.
pub const RECENT_LIVE_BYTES_MAX: usize = 32 << 20;
/// Most envelopes a subscription buffers (and hands in one batch): its memory bound.
pub const SUBSCRIPTION_BATCH_MAX: usize = 4096;
/// A live subscription turns historic again, until it catches up, once more than this many
/// groups have become durable since it last reached the durable end (see read/subscription.rs).
pub const LIVE_LAG_GROUPS_MAX: u64 = 16;
/// A live stream subscription turns historic again, until it catches up, once more than this
/// many events of its stream are durable and not read yet (most groups hold other streams').
pub const LIVE_LAG_STREAM_EVENTS_MAX: u64 = 4096;
/// Most wanted events a projection buffers before it flushes them (the bound on
/// `FlushPolicy::historic_batch_events` and `live_batch_events`): its memory bound.
pub const PROJECTION_BATCH_EVENTS_MAX: usize = 65_536;
/// Defaults of `FlushPolicy` (seed 003's policy): batches of 100 while catching up, every event
/// once live, a checkpoint-only flush after 10,000 skipped events.
pub const PROJECTION_HISTORIC_BATCH_EVENTS_DEFAULT: usize = 100;
pub const PROJECTION_LIVE_BATCH_EVENTS_DEFAULT: usize = 1;
pub const PROJECTION_SKIPPED_CHECKPOINT_EVENTS_DEFAULT: u64 = 10_000;

/// Defaults for `Options`.
pub const SEGMENT_BYTES_DEFAULT: u64 = 256 << 20;
pub const GROUP_BYTES_MAX_DEFAULT: usize = 4 << 20;
pub const GROUPS_IN_FLIGHT_MAX_DEFAULT: usize = 4;
pub const BUSY_GROUP_BYTES_MIN_DEFAULT: usize = 256 << 10;
pub const QUEUE_BYTES_DEFAULT: usize = 256 << 10;
pub const LINGER_DEFAULT: std::time::Duration = std::time::Duration::from_millis(1);
/// With `SegmentPrepare::Auto`, the next segment is fallocated rather than zeroed once the
/// active segment's groups average at least this many bytes.
pub const AUTO_FALLOCATE_GROUP_BYTES: u64 = 384 << 10;
/// Ring bytes the submitter drains from one lane before it looks at the next (fairness).
pub const DRAIN_LANE_BYTES: u64 = 64 << 10;
/// Size of the zero buffer used to pre-write segments.
pub const ZERO_CHUNK_BYTES: usize = 1 << 20;

const _: () = assert!(SEGMENT_HEADER_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(GROUP_BYTES_MAX_DEFAULT % BLOCK_BYTES == 0);
const _: () = assert!(SEGMENT_BYTES_DEFAULT % BLOCK_BYTES as u64 == 0);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_LIMIT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT as usize > GROUP_BYTES_MAX_DEFAULT + SEGMENT_HEADER_BYTES);
const _: () = assert!(GROUPS_IN_FLIGHT_MAX_DEFAULT <= GROUPS_IN_FLIGHT_LIMIT);
const _: () = assert!(GROUP_BYTES_LIMIT % BLOCK_BYTES == 0 && GROUP_BYTES_LIMIT <= u32::MAX as usize / 2);
const _: () = assert!(GROUP_BYTES_MAX_DEFAULT <= GROUP_BYTES_LIMIT);
const _: () = assert!(
    QUEUE_BYTES_DEFAULT.is_power_of_two()
        && QUEUE_BYTES_DEFAULT >= QUEUE_BYTES_MIN
        && QUEUE_BYTES_DEFAULT <= QUEUE_BYTES_LIMIT
);
const _: () = assert!(
    PROJECTION_HISTORIC_BATCH_EVENTS_DEFAULT >= 1
        && PROJECTION_HISTORIC_BATCH_EVENTS_DEFAULT <= PROJECTION_BATCH_EVENTS_MAX
);
const _: () = assert!(
    PROJECTION_LIVE_BATCH_EVENTS_DEFAULT >= 1 && PROJECTION_LIVE_BATCH_EVENTS_DEFAULT <= PROJECTION_BATCH_EVENTS_MAX
);
const _: () = assert!(PROJECTION_SKIPPED_CHECKPOINT_EVENTS_DEFAULT >= 1);
const _: () = assert!(ZERO_CHUNK_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(STREAM_ID_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(EVENT_TYPE_BYTES_MAX <= u8::MAX as usize);
