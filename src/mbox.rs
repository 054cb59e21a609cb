//! mbox reading and writing (in progress).
