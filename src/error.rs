//! Error kinds that decide exit codes and retries.
//!
//! Protocol errors keep the server's words (see `imap::ImapError`); this module only
//! says what kind of failure something is, so `main` can pick the exit code and the
//! engine can decide whether to retry. Retry decisions never match on message text.

use std::fmt;

/// Exit codes, documented in README.
pub const EXIT_OK: i32 = 0;
pub const EXIT_PARTIAL: i32 = 1;
pub const EXIT_INPUT: i32 = 2;
pub const EXIT_CONNECT: i32 = 3;
pub const EXIT_OTHER: i32 = 4;

/// How a failure may be retried (isync's FAIL_TEMP / FAIL_WAIT / FAIL_FINAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retry {
    /// A fresh connection may succeed at once (connection dropped, timeout).
    Now,
    /// The same request may succeed later (server busy, over quota, in use).
    Later,
    /// Retrying the same request cannot help (refused content, bad credentials).
    Final,
}

/// A failure caused by what the user gave us: bad flags, a bad URL, a missing file.
#[derive(Debug)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for InputError {}

/// A failure to reach or log in to a server, and whether trying again may help.
#[derive(Debug)]
pub struct ConnectError {
    pub message: String,
    pub retry: Retry,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for ConnectError {}

/// A failure of this machine (a full disk, a file that cannot be written): not the
/// user's input, not the network, and not worth retrying at once.
#[derive(Debug)]
pub struct LocalError(pub String);

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for LocalError {}

pub fn local(msg: impl Into<String>) -> anyhow::Error {
    LocalError(msg.into()).into()
}

pub fn input(msg: impl Into<String>) -> anyhow::Error {
    InputError(msg.into()).into()
}

/// A connection failure that may pass (server down, connection lost).
pub fn connect(msg: impl Into<String>) -> anyhow::Error {
    connect_with(msg, Retry::Later)
}

/// A connection failure that trying again cannot fix (wrong password, untrusted
/// certificate, wrong port, no TLS offered).
pub fn connect_final(msg: impl Into<String>) -> anyhow::Error {
    connect_with(msg, Retry::Final)
}

pub fn connect_with(msg: impl Into<String>, retry: Retry) -> anyhow::Error {
    ConnectError {
        message: msg.into(),
        retry,
    }
    .into()
}

/// How an error that ended a run may be retried, from the typed errors in its
/// chain (never from its text).
pub fn retry_class(err: &anyhow::Error) -> Retry {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<ConnectError>() {
            return c.retry;
        }
        if let Some(e) = cause.downcast_ref::<crate::imap::ImapError>() {
            return e.retry();
        }
        if let Some(e) = cause.downcast_ref::<crate::pop3::Pop3Error>() {
            return e.retry();
        }
        if cause.is::<std::io::Error>() {
            return Retry::Now;
        }
        if cause.is::<InputError>() || cause.is::<LocalError>() {
            return Retry::Final;
        }
    }
    Retry::Final
}

/// A server's request to slow down somewhere in `err`'s chain (see
/// [`crate::throttle`]).
pub fn throttle(err: &anyhow::Error) -> Option<crate::throttle::Throttle> {
    err.chain().find_map(|cause| {
        cause
            .downcast_ref::<crate::imap::ImapError>()
            .and_then(|e| e.throttle())
            .or_else(|| {
                cause
                    .downcast_ref::<crate::pop3::Pop3Error>()
                    .and_then(|e| e.throttle())
            })
    })
}

/// The exit code for an error that ended the run.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<LocalError>() {
            return EXIT_OTHER;
        }
        if cause.is::<InputError>() || cause.is::<clap::Error>() {
            return EXIT_INPUT;
        }
        if cause.is::<ConnectError>()
            || cause.is::<crate::imap::ImapError>()
            || cause.is::<crate::pop3::Pop3Error>()
            || cause.is::<std::io::Error>()
        {
            return EXIT_CONNECT;
        }
    }
    EXIT_OTHER
}
