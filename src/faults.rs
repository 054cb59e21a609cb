//! Crash points for the crash tests (like isync's `-Tj<N>`): with the environment
//! variable `MAILFERRY_CRASH_AFTER_APPENDS=N`, the process aborts right after the
//! target acknowledged the N-th APPEND, before the index records it: the worst
//! moment for a resume. Without the variable these are no-ops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static APPENDS: AtomicU64 = AtomicU64::new(0);

fn limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("MAILFERRY_CRASH_AFTER_APPENDS")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// Called after each acknowledged APPEND.
pub fn after_append() {
    if let Some(n) = limit() {
        if APPENDS.fetch_add(1, Ordering::SeqCst) + 1 >= n {
            eprintln!(
                "mailferry: crash point reached after {n} appends (MAILFERRY_CRASH_AFTER_APPENDS)"
            );
            std::process::abort();
        }
    }
}
