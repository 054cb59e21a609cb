//! `mailferry migrate --from URL --to URL`: copy every folder of an IMAP account, a
//! POP3 mailbox or mbox files into an IMAP account.

use crate::cli::MigrateArgs;
use crate::engine::{self, Job};
use crate::error::{EXIT_OK, EXIT_PARTIAL};
use crate::index::{self, Index};
use crate::plan;

pub fn run(a: &MigrateArgs) -> anyhow::Result<i32> {
    copy(
        &a.pair.from,
        a.pair.from_auth(),
        &a.pair.to,
        a.pair.to_auth(),
        &a.job,
        &a.copy,
        false,
    )
}

/// The common road of `migrate` and `restore`.
pub fn copy(
    from: &str,
    from_auth: plan::Auth<'_>,
    to: &str,
    to_auth: plan::Auth<'_>,
    job: &crate::cli::JobArgs,
    c: &crate::cli::CopyArgs,
    labels_as_folders: bool,
) -> anyhow::Result<i32> {
    let (net_args, state, folders) = (&job.net, job.state.as_deref(), &job.folders);
    // Phase 1: everything the user typed is checked (and the passwords read, the
    // source's first) before the index is opened or any connection made.
    let opts = plan::copy_options(folders, c, from)?;
    let source = crate::endpoint::parse(from)?;
    if let crate::endpoint::Endpoint::Mbox(path) = &source {
        crate::source::mbox::check_path(path)?;
    }
    // The password is asked for once, not on every retry (a token command runs
    // at every connect). Bad combinations of login flags are refused first.
    plan::check_auth(from_auth, "from-")?;
    plan::check_auth(to_auth, "to-")?;
    let source_credentials = plan::source_credentials(&source, from_auth)?;
    let (target, target_credentials) = plan::target(to, to_auth)?;
    let net = plan::net(net_args);
    let state = state
        .map(|p| p.to_path_buf())
        .unwrap_or_else(index::default_path);
    let _lock = index::lock(&state)?;
    let mut index = Index::open(&state)?;
    // On stderr even with --json (stdout holds the JSON): where the state lives.
    eprintln!("index: {}", state.display());
    // Phase 2: connections; a transient failure reconnects and resumes.
    let mbox = crate::source::mbox::ReadOptions {
        preset: opts.preset,
        gmail_labels: opts.gmail_labels,
        ..plan::mbox_options(c.mbox_format, labels_as_folders)
    };
    let open = || plan::open_endpoint(&source, source_credentials.as_ref(), &net, mbox);
    let job = Job {
        target: &target,
        target_credentials: &target_credentials,
        net: &net,
        opts: &opts,
        reopen: Some(&open),
    };
    let started = std::time::Instant::now();
    let mut summary = crate::summary::Summary::default();
    let result = crate::retry::run(&net, from, || {
        let mut src = open()?;
        let done = engine::migrate_into(src.as_mut(), &job, &mut index, &mut summary);
        // How an mbox source was read (a rewritten backup, messages left out).
        for note in src.take_notes() {
            summary.note(note);
        }
        done
    });
    summary.finish(started);
    if let Err(e) = result {
        // Whatever ended the run, what it did is said (and the error after it).
        summary.error = Some(format!("{e:#}"));
        if c.json || !summary.source.is_empty() {
            summary.print(c.json);
        }
        return Err(e);
    }
    summary.print(c.json);
    Ok(if summary.ok() { EXIT_OK } else { EXIT_PARTIAL })
}
