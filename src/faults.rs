//! Crash points for the crash tests (like isync's `-Tj<N>`), set by environment
//! variables; without them these are no-ops.
//! - `MAILFERRY_CRASH_AFTER_APPENDS=N`: abort right after the target acknowledged the
//!   N-th APPEND (or the N-th message was written to an mbox), before the index
//!   records it: the worst moment for a resume.
//! - `MAILFERRY_CRASH_IN_COMMIT=N`: abort inside the N-th index transaction, after
//!   its rows were written and before the commit.
//! - `MAILFERRY_PAUSE_AFTER_APPENDS=N`: sleep 3 s after the N-th APPEND, so a test can
//!   restart the server in the middle of a run.
//! - `MAILFERRY_LISTING_PAGE=N`, `MAILFERRY_KEEP_LISTED=N`: list folders N messages at
//!   a time / keep at most N planned messages for the copy, so small test folders
//!   take the paths of huge ones (listed again page by page).
//! - `MAILFERRY_BATCH_COUNT=N`: fetch and append at most N messages per batch, so a
//!   small test folder is copied in many batches, as a big one is.
//! - `MAILFERRY_PROGRESS_EVERY_MS=N`: a batch that is not on a terminal logs its
//!   progress line every N ms instead of every 30 s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static APPENDS: AtomicU64 = AtomicU64::new(0);
static COMMITS: AtomicU64 = AtomicU64::new(0);

fn env_number(name: &'static str, cell: &'static OnceLock<Option<u64>>) -> Option<u64> {
    *cell.get_or_init(|| std::env::var(name).ok().and_then(|v| v.parse().ok()))
}

/// Called after each acknowledged APPEND.
pub fn after_append() {
    static CRASH: OnceLock<Option<u64>> = OnceLock::new();
    static PAUSE: OnceLock<Option<u64>> = OnceLock::new();
    let crash = env_number("MAILFERRY_CRASH_AFTER_APPENDS", &CRASH);
    let pause = env_number("MAILFERRY_PAUSE_AFTER_APPENDS", &PAUSE);
    if crash.is_none() && pause.is_none() {
        return;
    }
    let count = APPENDS.fetch_add(1, Ordering::SeqCst) + 1;
    if crash.is_some_and(|n| count >= n) {
        eprintln!(
            "mailferry: crash point reached after {count} appends (MAILFERRY_CRASH_AFTER_APPENDS)"
        );
        std::process::abort();
    }
    if pause == Some(count) {
        eprintln!("mailferry: pausing after {count} appends (MAILFERRY_PAUSE_AFTER_APPENDS)");
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
}

/// Called inside each index transaction, before it commits.
pub fn in_commit() {
    static CRASH: OnceLock<Option<u64>> = OnceLock::new();
    if let Some(n) = env_number("MAILFERRY_CRASH_IN_COMMIT", &CRASH) {
        if COMMITS.fetch_add(1, Ordering::SeqCst) + 1 >= n {
            eprintln!("mailferry: crash point reached inside index commit {n} (MAILFERRY_CRASH_IN_COMMIT)");
            std::process::abort();
        }
    }
}

/// The listing page size and how many planned messages to keep, unless a test says.
pub fn listing_sizes(page: usize, keep: usize) -> (usize, usize) {
    static PAGE: OnceLock<Option<u64>> = OnceLock::new();
    static KEEP: OnceLock<Option<u64>> = OnceLock::new();
    (
        env_number("MAILFERRY_LISTING_PAGE", &PAGE).map_or(page, |n| (n as usize).max(1)),
        env_number("MAILFERRY_KEEP_LISTED", &KEEP).map_or(keep, |n| n as usize),
    )
}

/// How often a batch off a terminal logs its progress line, unless a test says.
pub fn progress_every(default: std::time::Duration) -> std::time::Duration {
    static EVERY: OnceLock<Option<u64>> = OnceLock::new();
    env_number("MAILFERRY_PROGRESS_EVERY_MS", &EVERY)
        .map_or(default, std::time::Duration::from_millis)
}

/// Messages per fetch/append batch, unless a test says.
pub fn batch_count(default: usize) -> usize {
    static COUNT: OnceLock<Option<u64>> = OnceLock::new();
    env_number("MAILFERRY_BATCH_COUNT", &COUNT).map_or(default, |n| (n as usize).max(1))
}
