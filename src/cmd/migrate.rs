//! `mailferry migrate --from URL --to URL`: copy every folder of one account into another.

use crate::cli::MigrateArgs;
use crate::engine::{self, Job};
use crate::error::{EXIT_OK, EXIT_PARTIAL};
use crate::imap::session;
use crate::index::{self, Index};
use crate::plan;
use crate::source::imap::ImapSource;

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
    let mut src = ImapSource {
        session: session::open(&pair.source, &pair.source_password, &net, "source")?,
        name: pair.source.to_string(),
    };
    let job = Job {
        target: &pair.target,
        target_password: &pair.target_password,
        net: &net,
        opts: &opts,
    };
    let summary = engine::migrate(&mut src, &job, &mut index)?;
    summary.print(a.json);
    Ok(if summary.ok() { EXIT_OK } else { EXIT_PARTIAL })
}
