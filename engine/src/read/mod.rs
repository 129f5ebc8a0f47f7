//! The read path: snapshot reads of one stream and of the whole log through the segment
//! mappings (reader.rs), subscriptions that follow the log as it grows (subscription.rs), and
//! projections that batch a subscription's events into a read model with checkpoints
//! (projection.rs).
//! It never imports the write path.

pub(crate) mod projection;
pub(crate) mod reader;
pub(crate) mod subscription;
