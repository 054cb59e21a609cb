//! From what the user typed to what a command runs on (ripgrep's "high args"):
//! every command, and every row of a batch, turns its flags into one [`Plan`]
//! (endpoints parsed, credentials resolved, folder rules, filters, connections and
//! limits checked) before any index is opened or connection made; everything the
//! run needs is built from the plan. Every input error is raised here, as one line
//! (exit 2).

mod auth;
mod batch;
mod check;
mod ends;
mod flags;

use std::path::PathBuf;

use crate::cli::{
    BackupArgs, BackupFormat, CopyArgs, JobArgs, MigrateArgs, RestoreArgs, VerifyArgs,
};
use crate::endpoint::Endpoint;
use crate::engine::Options;
use crate::error::input;
use crate::index::{self, Index};
use crate::mbox::Dialect;
use crate::net::NetOptions;
use crate::source::mbox::ReadOptions;

pub use auth::{check_auth, credentials, imap_server, source_credentials, target, Auth};
pub use batch::BatchPlan;
pub use check::{CheckPlan, Checked};
pub use ends::{SourcePlan, TargetPlan};
pub use flags::{copy_options, mbox_options, net, options};

/// One run of one account, validated: what `migrate`, `restore`, `backup`,
/// `verify` and each batch row run on.
pub struct Plan {
    pub source: SourcePlan,
    pub target: TargetPlan,
    pub net: NetOptions,
    /// Folder rules, filters, connections, rates, deletions.
    pub opts: Options,
    /// The index; `None` for a command that keeps none (`verify`).
    pub state: Option<PathBuf>,
    /// `--json`: the summary as JSON on stdout.
    pub json: bool,
    /// `--dry-run` (also in `opts`).
    pub dry_run: bool,
}

/// What `migrate` and `restore` have in common: two ends and the copy flags.
struct Pair<'a> {
    from: &'a str,
    from_auth: Auth<'a>,
    to: &'a str,
    to_auth: Auth<'a>,
}

impl Plan {
    pub fn migrate(a: &MigrateArgs) -> anyhow::Result<Plan> {
        let pair = Pair {
            from: &a.pair.from,
            from_auth: a.pair.from_auth(),
            to: &a.pair.to,
            to_auth: a.pair.to_auth(),
        };
        Plan::copy(pair, &a.job, &a.copy, false)
    }

    /// `restore --from PATH`: `migrate --from mbox:PATH`.
    pub fn restore(a: &RestoreArgs) -> anyhow::Result<Plan> {
        let from = format!("mbox:{}", a.from.display());
        let pair = Pair {
            from: &from,
            from_auth: Auth::default(),
            to: &a.to,
            to_auth: Auth {
                password_file: a.to_password_file.as_deref(),
                admin: a.to_admin.as_deref(),
                token_cmd: a.to_token_cmd.as_deref(),
                oauth2: a.to_oauth2.as_deref(),
            },
        };
        Plan::copy(pair, &a.job, &a.copy, a.labels_as_folders)
    }

    /// A copy into an IMAP account. The source's password is asked for first,
    /// once (not on every retry; a token command runs at every connect); bad
    /// combinations of login flags are refused before any is asked for.
    fn copy(p: Pair<'_>, job: &JobArgs, c: &CopyArgs, labels: bool) -> anyhow::Result<Plan> {
        let opts = copy_options(&job.folders, c, p.from)?;
        let read = ReadOptions {
            preset: opts.preset,
            gmail_labels: opts.gmail_labels,
            newest_first: opts.select.newest_first,
            ..mbox_options(c.mbox_format, labels)
        };
        let source = pair_source(&p, read)?;
        let (server, credentials) = target(p.to, p.to_auth)?;
        Ok(Plan {
            source,
            target: TargetPlan::Imap(server, credentials),
            net: net(&job.net),
            opts,
            state: Some(state_path(job.state.as_ref())),
            json: c.json,
            dry_run: c.dry_run,
        })
    }

    /// `backup --from URL --out PATH [--format maildir]`: an account into files.
    pub fn backup(a: &BackupArgs) -> anyhow::Result<Plan> {
        let endpoint = crate::endpoint::parse(&a.from)?;
        if let Endpoint::Mbox(_) = endpoint {
            return Err(input(
                "backup reads from an IMAP or POP3 account; to copy mbox files, copy the files",
            ));
        }
        let opts = options(&a.job.folders, a.dry_run)?;
        let auth = Auth {
            password_file: a.from_password_file.as_deref(),
            admin: a.from_admin.as_deref(),
            token_cmd: a.from_token_cmd.as_deref(),
            oauth2: a.from_oauth2.as_deref(),
        };
        let source = SourcePlan {
            text: a.from.clone(),
            credentials: source_credentials(&endpoint, auth)?,
            endpoint,
            read: ReadOptions {
                preset: opts.preset,
                gmail_labels: opts.gmail_labels,
                newest_first: opts.select.newest_first,
                ..Dialect::Rd.into()
            },
        };
        let target = match a.format {
            BackupFormat::Maildir => TargetPlan::Maildir(a.out.clone()),
            BackupFormat::Mbox => TargetPlan::Backup(a.out.clone()),
        };
        Ok(Plan {
            source,
            target,
            net: net(&a.job.net),
            opts,
            state: Some(state_path(a.job.state.as_ref())),
            json: a.json,
            dry_run: a.dry_run,
        })
    }

    /// `verify --from URL --to URL`: both ends read, nothing written. The source
    /// is read as the copy reads it (`--from-preset`, `--gmail-labels`).
    pub fn verify(a: &VerifyArgs) -> anyhow::Result<Plan> {
        let opts = options(&a.folders, false)?;
        let pair = Pair {
            from: &a.pair.from,
            from_auth: a.pair.from_auth(),
            to: &a.pair.to,
            to_auth: a.pair.to_auth(),
        };
        // The source is read as the copy read it (its preset and Gmail labels), so
        // what the copy left out on purpose is not called missing.
        let read = ReadOptions {
            preset: opts.preset,
            gmail_labels: opts.gmail_labels,
            ..mbox_options(crate::cli::MboxFormat::Auto, false)
        };
        let source = pair_source(&pair, read)?;
        let target = TargetPlan::parse_read(pair.to, pair.to_auth, "to-")?;
        Ok(Plan {
            source,
            target,
            net: net(&a.net),
            opts,
            state: None,
            json: a.json,
            dry_run: false,
        })
    }

    /// The index, locked against another run on it, and said on stderr (even
    /// with `--json`: stdout holds the JSON). The lock lives as long as the run.
    pub fn open_index(&self) -> anyhow::Result<(index::Lock, Index)> {
        let state = self
            .state
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("this command keeps no index"))?;
        let lock = index::lock(state)?;
        let index = Index::open(state)?;
        eprintln!("index: {}", state.display());
        Ok((lock, index))
    }
}

/// The source of a pair, parsed and checked, both sides' login flags checked, then
/// the source's credentials resolved.
fn pair_source(p: &Pair<'_>, read: ReadOptions) -> anyhow::Result<SourcePlan> {
    let mut source = SourcePlan::parse(p.from, read)?;
    check_auth(p.from_auth, "from-")?;
    check_auth(p.to_auth, "to-")?;
    source.credentials = source_credentials(&source.endpoint, p.from_auth)?;
    Ok(source)
}

/// `--state PATH`, or the default index.
fn state_path(state: Option<&PathBuf>) -> PathBuf {
    state.cloned().unwrap_or_else(index::default_path)
}

#[cfg(test)]
mod tests;
