//! `mailferry migrate --from URL --to URL`: copy every folder of an IMAP account, a
//! POP3 mailbox or mbox files into an IMAP account.

use crate::cli::MigrateArgs;
use crate::engine::{self, Job};
use crate::index::Index;
use crate::plan::{Plan, TargetPlan};
use crate::summary::Summary;

pub fn run(a: &MigrateArgs) -> anyhow::Result<i32> {
    run_plan(&Plan::migrate(a)?)
}

/// The common road of `migrate` and `restore`: phase 1 (the plan: everything the
/// user typed checked, the passwords read) is done; then the index, and the
/// connections, where a transient failure reconnects and resumes.
pub fn run_plan(plan: &Plan) -> anyhow::Result<i32> {
    let (_lock, mut index) = plan.open_index()?;
    let started = std::time::Instant::now();
    let mut summary = Summary::default();
    let result = copy(plan, &plan.source.text, &mut index, &mut summary);
    super::ended(summary, started, result, plan.json)
}

/// Copy a plan's source into its IMAP target, retried as `retry::run` decides
/// (`what` names the account in its messages). Also a batch row's run.
pub fn copy(
    plan: &Plan,
    what: &str,
    index: &mut Index,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let TargetPlan::Imap(target, target_credentials) = &plan.target else {
        anyhow::bail!("internal error: a copy plan without an IMAP target");
    };
    let open = || plan.source.open(&plan.net);
    let job = Job {
        target,
        target_credentials,
        net: &plan.net,
        opts: &plan.opts,
        reopen: Some(&open),
    };
    crate::retry::run(&plan.net, what, || {
        let (mut src, mut tgt) = engine::connect_both(&open, &job)?;
        let done = engine::migrate_into(src.as_mut(), &mut tgt, &job, index, summary);
        // How an mbox source was read (a rewritten backup, messages left out).
        for note in src.take_notes() {
            summary.note(note);
        }
        done
    })
}
