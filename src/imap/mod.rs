//! IMAP: the protocol client ([`client`]), response parsing ([`parse`]), mailbox
//! name encoding ([`utf7`]) and the error type that keeps the server's words.

pub mod client;
pub mod parse;
pub mod session;
pub mod types;
pub mod utf7;

use crate::error::Retry;
pub use client::{Append, AppendUid, Client, ListEntry, Namespaces, Selected};
use parse::Status;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server refused {command}: {}", status.describe())]
    No { command: String, status: Status },
    #[error("the server rejected {command} as malformed: {}", status.describe())]
    Bad { command: String, status: Status },
    #[error("the server closed the connection: {0}")]
    Bye(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The server sent more than a documented limit allows (`crate::limits`).
    #[error("the server's answer is over a limit: {0}")]
    Limit(String),
    /// A command that would carry CR, LF or NUL outside a literal, refused before
    /// a byte of it was sent.
    #[error("{0}")]
    Unsafe(String),
}

impl ImapError {
    pub fn from_status(command: &str, status: Status) -> Self {
        let command = command.to_string();
        match status.kind {
            parse::StatusKind::Bad => ImapError::Bad { command, status },
            _ => ImapError::No { command, status },
        }
    }

    /// The response code name of a NO/BAD, upper-cased.
    pub fn code(&self) -> Option<String> {
        match self {
            ImapError::No { status, .. } | ImapError::Bad { status, .. } => status.code_name(),
            _ => None,
        }
    }

    /// A request to slow down (Microsoft's "Request is throttled", Gmail's
    /// `[THROTTLED]`), in a NO, a BAD or a BYE.
    pub fn throttle(&self) -> Option<crate::throttle::Throttle> {
        match self {
            ImapError::No { status, .. } | ImapError::Bad { status, .. } => {
                crate::throttle::from_words(status.code_name().as_deref(), &status.text)
            }
            ImapError::Bye(text) => crate::throttle::from_words(None, text),
            _ => None,
        }
    }

    /// How this failure may be retried, from the protocol (RFC 5530 response codes);
    /// a request to slow down is "later" whatever its words.
    pub fn retry(&self) -> Retry {
        if self.throttle().is_some() {
            return Retry::Later;
        }
        match self {
            ImapError::Io(_) | ImapError::Bye(_) => Retry::Now,
            ImapError::Protocol(_) => Retry::Now,
            ImapError::Limit(_) | ImapError::Unsafe(_) => Retry::Final,
            ImapError::Bad { .. } => Retry::Final,
            ImapError::No { .. } => match self.code().as_deref() {
                Some("UNAVAILABLE") | Some("INUSE") | Some("OVERQUOTA") | Some("SERVERBUG") => {
                    Retry::Later
                }
                _ => Retry::Final,
            },
        }
    }

    /// Whether this failure concerns one message only (the server refused it, or
    /// mailferry refused to send it), so the others of a batch go on.
    pub fn per_message(&self) -> bool {
        matches!(
            self,
            ImapError::No { .. } | ImapError::Bad { .. } | ImapError::Unsafe(_)
        ) && self.throttle().is_none()
    }

    /// The server's own words for a refusal (for reports), or the error text.
    pub fn server_words(&self) -> String {
        match self {
            ImapError::No { status, .. } | ImapError::Bad { status, .. } => status.describe(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{connect, input, retry_class};
    use parse::StatusKind;

    fn no(kind: StatusKind, code: Option<&str>) -> ImapError {
        ImapError::from_status(
            "APPEND",
            Status {
                kind,
                code: code.map(str::to_string),
                text: "words".into(),
            },
        )
    }

    #[test]
    fn retry_classes_come_from_the_protocol() {
        use StatusKind::{Bad, No};
        // RFC 5530 codes that mean "not now": later; anything else refused: final.
        for (err, want) in [
            (no(No, Some("UNAVAILABLE")), Retry::Later),
            (no(No, Some("INUSE")), Retry::Later),
            (no(No, Some("SERVERBUG")), Retry::Later),
            (no(No, Some("OVERQUOTA")), Retry::Later),
            (no(No, Some("LIMIT")), Retry::Final),
            (no(No, Some("CANNOT")), Retry::Final),
            (no(No, Some("AUTHENTICATIONFAILED")), Retry::Final),
            (no(No, None), Retry::Final),
            (no(Bad, Some("UNAVAILABLE")), Retry::Final),
            (ImapError::Bye("shutting down".into()), Retry::Now),
            (ImapError::Protocol("garbage".into()), Retry::Now),
            (
                ImapError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
                Retry::Now,
            ),
        ] {
            assert_eq!(err.retry(), want, "{err}");
        }
    }

    #[test]
    fn the_class_is_found_through_added_context() {
        let imap = anyhow::Error::from(no(StatusKind::No, Some("UNAVAILABLE")))
            .context("copying INBOX")
            .context("row 3");
        assert_eq!(retry_class(&imap), Retry::Later);
        let io = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
            .context("fetching");
        assert_eq!(retry_class(&io), Retry::Now);
        assert_eq!(retry_class(&input("bad flag").context("x")), Retry::Final);
        assert_eq!(retry_class(&connect("gone")), Retry::Later);
        assert_eq!(retry_class(&anyhow::anyhow!("anything else")), Retry::Final);
    }
}
