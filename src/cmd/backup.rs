//! `mailferry backup --from URL --out DIR|FILE.mbox [--format maildir]`: an account into
//! mbox files and a manifest, or into a Maildir++ tree (through the copy engine, with
//! the tree as its target).

use crate::cli::BackupArgs;
use crate::plan::{Plan, TargetPlan};
use crate::target::maildir::MaildirTarget;

pub fn run(a: &BackupArgs) -> anyhow::Result<i32> {
    // Phase 1: the arguments and the password, before the index or a connection.
    let plan = Plan::backup(a)?;
    let (_lock, mut index) = plan.open_index()?;
    let started = std::time::Instant::now();
    let mut summary = crate::summary::Summary::default();
    let mut maildir = match &plan.target {
        TargetPlan::Maildir(out) => Some(MaildirTarget::new(out, !plan.dry_run)?),
        _ => None,
    };
    let opts = &plan.opts;
    let result = crate::retry::run(&plan.net, &plan.source.text, || {
        let mut src = plan.source.open(&plan.net)?;
        match (maildir.as_mut(), &plan.target) {
            (Some(tgt), _) => {
                crate::engine::copy_into(src.as_mut(), tgt, opts, None, &mut index, &mut summary)
            }
            (None, TargetPlan::Backup(out)) => {
                crate::backup::backup_into(src.as_mut(), out, opts, &mut index, &mut summary)
            }
            (None, _) => anyhow::bail!("internal error: a backup plan without a backup target"),
        }
    });
    super::ended(summary, started, result, plan.json)
}
