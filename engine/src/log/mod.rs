//! What is on disk, used by both paths: records and groups (their encoding), segment files, the
//! in-memory index of streams and groups, its checkpoints, copies of recent groups for live readers, and recovery at open.

pub(crate) mod checkpoint;
pub(crate) mod index;
pub(crate) mod recent;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod segment;
