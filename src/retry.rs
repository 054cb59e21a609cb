//! Retrying a whole copy after a transient failure. Every attempt reconnects and
//! resumes from the index, so the message that was in flight is found on the target
//! (by its dedupe key) instead of being appended again. The error's retry class comes
//! from the protocol (`error::retry_class`), never from its text.

use std::time::{Duration, Instant};

use crate::error::{retry_class, Retry};
use crate::net::NetOptions;

/// Wait before attempt `n` (1-based count of failures so far): `base` doubled each
/// time, capped at a minute; a server that asked to be left alone (`Later`) waits
/// four times as long.
pub fn backoff(base: Duration, failures: u32, class: Retry) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(6);
    let d = base * factor * if class == Retry::Later { 4 } else { 1 };
    d.min(Duration::from_secs(60))
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Wait(Duration),
    /// Stop, saying why (empty: the error is final and speaks for itself).
    GiveUp(String),
}

/// The decision after a failure (pure; table-tested): `failures` counts the
/// failures of this kind so far (requests to slow down, or the others), `elapsed` the time since the
/// first attempt. A server's request to slow down waits as long as it asked (or a
/// "later" backoff when it did not say), does not use up `--retries` and is
/// bounded by `--deadline` only.
pub fn next(
    net: &NetOptions,
    class: Retry,
    throttle: Option<crate::throttle::Throttle>,
    failures: u32,
    elapsed: Duration,
) -> Next {
    if class == Retry::Final {
        return Next::GiveUp(String::new());
    }
    let wait = match throttle {
        Some(t) => t
            .wait
            .unwrap_or_else(|| backoff(net.retry_wait, failures.max(1), Retry::Later)),
        None => backoff(net.retry_wait, failures, class),
    };
    if throttle.is_none() && failures > net.retries {
        return Next::GiveUp(format!(
            "giving up after {failures} attempt{} (--retries {})",
            if failures == 1 { "" } else { "s" },
            net.retries
        ));
    }
    if elapsed + wait > net.deadline {
        return Next::GiveUp(match throttle {
            Some(_) => format!(
                "giving up: the server asked to wait {:.0?}, which would end after --deadline ({}s)",
                wait,
                net.deadline.as_secs()
            ),
            None => format!(
                "giving up: another attempt would end after --deadline ({}s)",
                net.deadline.as_secs()
            ),
        });
    }
    Next::Wait(wait)
}

/// Run `attempt` until it succeeds, fails for good, runs out of `--retries`, or the
/// `--deadline` would pass during the next wait (see [`next`]).
pub fn run<T>(
    net: &NetOptions,
    what: &str,
    mut attempt: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut failures = 0;
    let mut throttled = 0;
    loop {
        let e = match attempt() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let throttle = crate::error::throttle(&e);
        if throttle.is_some() {
            throttled += 1;
        } else {
            failures += 1;
        }
        // Unsaid waits grow with the requests to slow down, backoffs with the failures.
        let count = if throttle.is_some() {
            throttled
        } else {
            failures
        };
        match next(net, retry_class(&e), throttle, count, started.elapsed()) {
            Next::GiveUp(why) => {
                if !why.is_empty() {
                    crate::log::warn(format!("{what}: {why}"));
                }
                return Err(e);
            }
            Next::Wait(wait) if throttle.is_some() => {
                let how = match throttle.and_then(|t| t.wait) {
                    Some(_) => "as it asked",
                    None => "(it named no time)",
                };
                crate::log::warn(format!(
                    "{what}: the server asks to slow down ({e:#}); waiting {wait:.0?} {how}, then resuming"
                ));
                std::thread::sleep(wait);
            }
            Next::Wait(wait) => {
                crate::log::warn(format!(
                    "{what}: {e:#}; retrying in {:.0?} (attempt {} of {})",
                    wait,
                    failures + 1,
                    net.retries + 1
                ));
                std::thread::sleep(wait);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{connect, connect_final};

    fn net(retries: u32) -> NetOptions {
        NetOptions {
            retries,
            retry_wait: Duration::from_millis(1),
            deadline: Duration::from_secs(10),
            ..NetOptions::default()
        }
    }

    #[test]
    fn transient_errors_are_retried_final_ones_are_not() {
        // (error kind per attempt, retries) -> attempts made, success?
        for (errs, retries, attempts, ok) in [
            (vec!["later", "later"], 3, 3, true),
            (vec!["later", "later", "later", "later"], 3, 4, false),
            (vec!["final"], 3, 1, false),
            (vec!["later", "final"], 3, 2, false),
            (vec![], 0, 1, true),
            (vec!["later"], 0, 1, false),
        ] {
            let mut n = 0;
            let r = run(&net(retries), "test", || {
                n += 1;
                match errs.get(n - 1) {
                    Some(&"later") => Err(connect("gone")),
                    Some(_) => Err(connect_final("refused")),
                    None => Ok(()),
                }
            });
            assert_eq!((n, r.is_ok()), (attempts, ok), "{errs:?} {retries}");
        }
    }

    #[test]
    fn the_deadline_ends_retries_before_they_run_out() {
        // 1,000 retries allowed, but 1.5 s in all. A lost connection waits four
        // times --retry-wait (50 ms), doubled each time: 200 + 400 + 800 = 1.4 s of
        // waits, so four attempts (three on a machine slow enough to eat the 100 ms
        // left), then the deadline; never the 1,000.
        let net = NetOptions {
            retries: 1000,
            retry_wait: Duration::from_millis(50),
            deadline: Duration::from_millis(1500),
            ..NetOptions::default()
        };
        let started = Instant::now();
        let mut n = 0;
        let r: anyhow::Result<()> = run(&net, "test", || {
            n += 1;
            Err(connect("gone"))
        });
        assert!(r.is_err());
        assert!((3..=4).contains(&n), "{n} attempts");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_request_to_slow_down_waits_as_asked_within_the_deadline_only() {
        use crate::throttle::Throttle;
        let net = NetOptions {
            retries: 2,
            retry_wait: Duration::from_secs(2),
            deadline: Duration::from_secs(600),
            ..NetOptions::default()
        };
        let asked = |s| {
            Some(Throttle {
                wait: Some(Duration::from_secs(s)),
            })
        };
        let unsaid = Some(Throttle { wait: None });
        let s = Duration::from_secs;
        // (class, throttle, failures, elapsed) -> wait, or a piece of the reason to stop
        for (class, throttle, failures, elapsed, want) in [
            (Retry::Later, asked(300), 1, s(0), Ok(s(300))),
            // Far beyond the 60 s cap of a backoff, and beyond --retries: still waits.
            (Retry::Later, asked(300), 9, s(100), Ok(s(300))),
            (
                Retry::Later,
                asked(300),
                1,
                s(400),
                Err("asked to wait 300s"),
            ),
            (Retry::Later, unsaid, 1, s(0), Ok(s(8))),
            (Retry::Now, None, 1, s(0), Ok(s(2))),
            (Retry::Now, None, 3, s(0), Err("--retries 2")),
            (Retry::Later, None, 1, s(599), Err("--deadline")),
            (Retry::Final, asked(5), 1, s(0), Err("")),
        ] {
            let got = next(&net, class, throttle, failures, elapsed);
            match (&got, want) {
                (Next::Wait(d), Ok(w)) => assert_eq!(*d, w, "{throttle:?}"),
                (Next::GiveUp(why), Err(w)) => assert!(why.contains(w), "{why}"),
                _ => panic!("{class:?} {throttle:?} {failures}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_secs(2);
        assert_eq!(backoff(b, 1, Retry::Now), Duration::from_secs(2));
        assert_eq!(backoff(b, 2, Retry::Now), Duration::from_secs(4));
        assert_eq!(backoff(b, 2, Retry::Later), Duration::from_secs(16));
        assert_eq!(backoff(b, 30, Retry::Now), Duration::from_secs(60));
    }
}
