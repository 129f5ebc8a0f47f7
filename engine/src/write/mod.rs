//! The write path: the producers' bounded queues (lanes), the submitter thread that orders, encodes, writes
//! and acknowledges appends, and the I/O backends behind it. It never imports the read path.

pub(crate) mod io;
pub(crate) mod lane;
pub(crate) mod submitter;
