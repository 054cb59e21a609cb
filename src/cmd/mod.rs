//! One module per subcommand, each exposing `run`, which returns the exit code.

pub mod addresses;
pub mod backup;
pub mod batch;
pub mod check;
pub mod completions;
pub mod migrate;
pub mod restore;
pub mod verify;

use crate::error::{EXIT_OK, EXIT_PARTIAL};
use crate::summary::Summary;

/// The end of a copy or backup: what it did is said whatever ended it (and the
/// error after it); the exit code says whether every message made it.
pub(crate) fn ended(
    mut summary: Summary,
    started: std::time::Instant,
    result: anyhow::Result<()>,
    json: bool,
) -> anyhow::Result<i32> {
    summary.finish(started);
    if let Err(e) = result {
        summary.error = Some(format!("{e:#}"));
        if json || !summary.source.is_empty() {
            summary.print(json);
        }
        return Err(e);
    }
    summary.print(json);
    Ok(if summary.ok() { EXIT_OK } else { EXIT_PARTIAL })
}
