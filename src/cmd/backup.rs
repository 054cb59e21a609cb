//! `mailferry backup --from URL --out DIR|FILE.mbox [--format maildir]`: an account into
//! mbox files and a manifest, or into a Maildir++ tree (through the copy engine, with
//! the tree as its target).

use crate::cli::{BackupArgs, BackupFormat};
use crate::endpoint::{self, Endpoint};
use crate::error::{input, EXIT_OK, EXIT_PARTIAL};
use crate::index::{self, Index};
use crate::mbox::Dialect;
use crate::plan;
use crate::target::maildir::MaildirTarget;

pub fn run(a: &BackupArgs) -> anyhow::Result<i32> {
    // Phase 1: the arguments and the password, before the index or a connection.
    let source = endpoint::parse(&a.from)?;
    if let Endpoint::Mbox(_) = source {
        return Err(input(
            "backup reads from an IMAP or POP3 account; to copy mbox files, copy the files",
        ));
    }
    let opts = plan::options(&a.job.folders, a.dry_run)?;
    let source_credentials = plan::source_credentials(
        &source,
        plan::Auth {
            password_file: a.from_password_file.as_deref(),
            admin: a.from_admin.as_deref(),
            token_cmd: a.from_token_cmd.as_deref(),
            oauth2: a.from_oauth2.as_deref(),
        },
    )?;
    let net = plan::net(&a.job.net);
    let state = a.job.state.clone().unwrap_or_else(index::default_path);
    let _lock = index::lock(&state)?;
    let mut index = Index::open(&state)?;
    // On stderr even with --json (stdout holds the JSON): where the state lives.
    eprintln!("index: {}", state.display());
    let started = std::time::Instant::now();
    let mut summary = crate::summary::Summary::default();
    let mut maildir = match a.format {
        BackupFormat::Maildir => Some(MaildirTarget::new(&a.out, !a.dry_run)?),
        BackupFormat::Mbox => None,
    };
    let result = crate::retry::run(&net, &a.from, || {
        let read = crate::source::mbox::ReadOptions {
            preset: opts.preset,
            gmail_labels: opts.gmail_labels,
            ..Dialect::Rd.into()
        };
        let mut src = plan::open_endpoint(&source, source_credentials.as_ref(), &net, read)?;
        match maildir.as_mut() {
            Some(tgt) => {
                crate::engine::copy_into(src.as_mut(), tgt, &opts, None, &mut index, &mut summary)
            }
            None => {
                crate::backup::backup_into(src.as_mut(), &a.out, &opts, &mut index, &mut summary)
            }
        }
    });
    summary.finish(started);
    if let Err(e) = result {
        // Whatever ended the run, what it did is said (and the error after it).
        summary.error = Some(format!("{e:#}"));
        if a.json || !summary.source.is_empty() {
            summary.print(a.json);
        }
        return Err(e);
    }
    summary.print(a.json);
    Ok(if summary.ok() { EXIT_OK } else { EXIT_PARTIAL })
}
