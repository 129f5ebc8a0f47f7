//! The read path: reads of one stream and of the whole log through the segment mappings. It
//! never imports the write path.

pub(crate) mod reader;
