//! `mailferry migrate --from URL --to URL`: copy every folder of one account into another.

use crate::cli::MigrateArgs;
use crate::engine::{self, Job};
use crate::error::{EXIT_OK, EXIT_PARTIAL};
use crate::index::{self, Index};
use crate::plan;

pub fn run(a: &MigrateArgs) -> anyhow::Result<i32> {
    let pair = plan::pair(&a.pair)?;
    let opts = plan::options(&a.folders, a.dry_run)?;
    let net = plan::net(&a.net);
    let state = a.state.clone().unwrap_or_else(index::default_path);
    let mut index = Index::open(&state)?;
    crate::log::info(format!("index: {}", state.display()));
    if !a.json {
        eprintln!("index: {}", state.display());
    }
    let job = Job {
        source: &pair.source,
        source_password: &pair.source_password,
        target: &pair.target,
        target_password: &pair.target_password,
        net: &net,
        opts: &opts,
    };
    let summary = engine::migrate(&job, &mut index)?;
    summary.print(a.json);
    Ok(if summary.ok() { EXIT_OK } else { EXIT_PARTIAL })
}
