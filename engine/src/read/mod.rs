//! The read path: snapshot reads of one stream and of the whole log through the segment
//! mappings (reader.rs), and subscriptions that follow the log as it grows (subscription.rs).
//! It never imports the write path.

pub(crate) mod reader;
pub(crate) mod subscription;
