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

/// Run `attempt` until it succeeds, fails for good, runs out of `--retries`, or the
/// `--deadline` would pass during the next wait.
pub fn run<T>(
    net: &NetOptions,
    what: &str,
    mut attempt: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) => {
                let class = retry_class(&e);
                failures += 1;
                let wait = backoff(net.retry_wait, failures, class);
                if class == Retry::Final {
                    return Err(e);
                }
                if failures > net.retries {
                    crate::log::warn(format!(
                        "{what}: giving up after {failures} attempt{} (--retries {})",
                        if failures == 1 { "" } else { "s" },
                        net.retries
                    ));
                    return Err(e);
                }
                if started.elapsed() + wait > net.deadline {
                    crate::log::warn(format!(
                        "{what}: giving up: another attempt would end after --deadline ({}s)",
                        net.deadline.as_secs()
                    ));
                    return Err(e);
                }
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
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_secs(2);
        assert_eq!(backoff(b, 1, Retry::Now), Duration::from_secs(2));
        assert_eq!(backoff(b, 2, Retry::Now), Duration::from_secs(4));
        assert_eq!(backoff(b, 2, Retry::Later), Duration::from_secs(16));
        assert_eq!(backoff(b, 30, Retry::Now), Duration::from_secs(60));
    }
}
