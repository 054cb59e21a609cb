//! Rate caps: `--max-bytes-per-sec` and `--max-msgs-per-sec` for one account (all
//! its connection pairs together), and in `batch` `--host-max-bytes-per-sec` for
//! every account reading from one source host (Gmail's and Microsoft's daily
//! caps, a hoster's fair-use rules).
//!
//! A cap is kept on average since the run started, one batch at a time: a batch
//! goes when what went before it is within the cap, so the first batch goes at
//! once and the long-run rate never exceeds the cap. The engine asks before each
//! batch is stored (the reader stays at most a batch or two ahead), so the source
//! is read at the same pace. The wait is [`delay`], a pure function.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A cap shared by whoever copies under it.
#[derive(Debug)]
pub struct Cap {
    bytes_per_sec: Option<u64>,
    msgs_per_sec: Option<u64>,
    /// (start, bytes, messages) admitted so far.
    state: Mutex<Option<(Instant, u64, u64)>>,
    /// A cap above this one (a host's, over an account's).
    over: Option<Arc<Cap>>,
}

impl Cap {
    pub fn new(bytes_per_sec: Option<u64>, msgs_per_sec: Option<u64>) -> Cap {
        Cap {
            bytes_per_sec,
            msgs_per_sec,
            state: Mutex::new(None),
            over: None,
        }
    }

    /// This cap, also held to `over` (a host's).
    pub fn under(mut self, over: Option<Arc<Cap>>) -> Cap {
        self.over = over;
        self
    }

    /// Wait until a batch of `bytes` in `msgs` messages may go, and count it.
    pub fn admit(&self, bytes: u64, msgs: u64) {
        let wait = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (start, done_bytes, done_msgs) = st.get_or_insert((Instant::now(), 0, 0));
            let elapsed = start.elapsed();
            let wait = delay(self.bytes_per_sec, *done_bytes, elapsed).max(delay(
                self.msgs_per_sec,
                *done_msgs,
                elapsed,
            ));
            *done_bytes += bytes;
            *done_msgs += msgs;
            wait
        };
        if !wait.is_zero() {
            crate::log::info(format!(
                "rate cap: waiting {:.1}s before the next batch",
                wait.as_secs_f64()
            ));
            std::thread::sleep(wait);
        }
        if let Some(over) = &self.over {
            over.admit(bytes, msgs);
        }
    }
}

/// How long to wait before more goes, when `done` units went in `elapsed` under a
/// cap of `per_sec` units a second (`None`: no cap).
pub fn delay(per_sec: Option<u64>, done: u64, elapsed: Duration) -> Duration {
    let Some(rate) = per_sec.filter(|&r| r > 0) else {
        return Duration::ZERO;
    };
    let due = Duration::from_secs_f64(done as f64 / rate as f64);
    due.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_keeps_the_average_within_the_cap() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (cap, done, elapsed) → wait
        let table = [
            (None, 1_000_000, s(0), s(0)),
            (Some(0), 5, s(0), s(0)),
            (Some(100), 0, s(0), s(0)),
            (Some(100), 100, s(0), s(1)),
            (Some(100), 100, ms(400), ms(600)),
            (Some(100), 100, s(2), s(0)),
            (Some(10), 25, s(1), ms(1500)),
        ];
        for (cap, done, elapsed, want) in table {
            assert_eq!(
                delay(cap, done, elapsed),
                want,
                "{cap:?} {done} {elapsed:?}"
            );
        }
    }

    #[test]
    fn a_cap_counts_what_it_admits_and_passes_it_up() {
        let host = Arc::new(Cap::new(None, None));
        let account = Cap::new(None, Some(1_000_000)).under(Some(host.clone()));
        account.admit(10, 2);
        account.admit(5, 1);
        let counted = |c: &Cap| c.state.lock().unwrap().map(|(_, b, m)| (b, m));
        assert_eq!(counted(&account), Some((15, 3)));
        assert_eq!(counted(&host), Some((15, 3)));
    }
}
