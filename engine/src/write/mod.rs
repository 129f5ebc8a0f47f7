//! The write path: the bounded append queue, the submitter thread that orders, encodes, writes
//! and acknowledges appends, and the I/O backends behind it. It never imports the read path.

pub(crate) mod io;
pub(crate) mod queue;
pub(crate) mod submitter;
