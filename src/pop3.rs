//! POP3 client (in progress).
