//! A server asking to slow down, read from its own words: Microsoft 365's
//! `NO Request is throttled. Suggested Backoff Time: 299961 milliseconds` (no
//! response code), Gmail's `[THROTTLED]`, and the like over POP3. Such a refusal
//! is transient however it is worded: the run waits as long as the server asked
//! (bounded by `--deadline`) and resumes; it never fails a message or a folder.
//!
//! Pure functions on the server's text, table-tested below.

use std::time::Duration;

/// A request to slow down, and how long the server asked to wait, if it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub wait: Option<Duration>,
}

/// The longest wait taken from a server's words (a garbled number must not stop a
/// run for days; `--deadline` bounds the run anyway).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Whether a refusal with response code `code` (upper-cased, without brackets)
/// and text `text` is a request to slow down.
pub fn from_words(code: Option<&str>, text: &str) -> Option<Throttle> {
    let lower = text.to_ascii_lowercase();
    let coded = matches!(code, Some("THROTTLED")) || lower.contains("[throttled]");
    if !coded && !lower.contains("throttled") && !lower.contains("suggested backoff time") {
        return None;
    }
    Some(Throttle {
        wait: suggested_wait(&lower),
    })
}

/// Microsoft's "Suggested Backoff Time: N milliseconds" (also `~N ms`, or
/// seconds when it says so), at most [`MAX_WAIT`].
fn suggested_wait(lower: &str) -> Option<Duration> {
    let rest = &lower[lower.find("suggested backoff time")? + "suggested backoff time".len()..];
    let rest = rest.trim_start_matches([':', ' ', '~', '=']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = rest[digits.len()..].trim_start();
    let seconds = unit.starts_with("sec") || (unit.starts_with('s') && !unit.starts_with("ms"));
    let wait = if seconds {
        Duration::from_secs(n)
    } else {
        Duration::from_millis(n)
    };
    Some(wait.min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_words_read_as_requests_to_wait() {
        let ms = |n| {
            Some(Throttle {
                wait: Some(Duration::from_millis(n)),
            })
        };
        let none = Some(Throttle { wait: None });
        for (code, text, want) in [
            (
                None,
                "Request is throttled. Suggested Backoff Time: 299961 milliseconds",
                ms(299_961),
            ),
            (
                None,
                "Request is throttled. Suggested Backoff Time: ~300000 ms",
                ms(300_000),
            ),
            (
                None,
                "request is THROTTLED. suggested backoff time: 5 seconds",
                ms(5_000),
            ),
            (
                None,
                "Request is throttled. Suggested Backoff Time: 99999999999 milliseconds",
                Some(Throttle {
                    wait: Some(MAX_WAIT),
                }),
            ),
            (
                Some("THROTTLED"),
                "Account exceeded command or bandwidth limits",
                none,
            ),
            (None, "[THROTTLED] Too many simultaneous connections", none),
            (None, "Request is throttled.", none),
            (Some("OVERQUOTA"), "Quota exceeded", None),
            (None, "Mailbox does not exist", None),
            (None, "Suggested Backoff Time: soon", none),
        ] {
            assert_eq!(from_words(code, text), want, "{code:?} {text}");
        }
    }
}
