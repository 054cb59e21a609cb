//! The plan of a batch: the batch-wide flags checked once (the same folder rules,
//! filters and connections as `migrate`'s, through the same code), and each valid
//! row's [`Plan`] made from it and the row's own cells.

use std::path::PathBuf;

use crate::batch::Account;
use crate::cli::{BatchArgs, CopyArgs, MboxFormat};
use crate::engine::Options;
use crate::error::input;
use crate::folders::Rules;
use crate::mbox::Dialect;
use crate::net::NetOptions;
use crate::source::mbox::ReadOptions;

use super::{copy_options, net, state_path, Plan, SourcePlan, TargetPlan};

/// `batch`'s flags, checked: what every row shares, and how the pool runs.
pub struct BatchPlan {
    pub csv: PathBuf,
    /// `--shard K/N`: run only the K-th of N shares of the rows.
    pub shard: Option<(usize, usize)>,
    pub jobs: usize,
    pub max_per_host: usize,
    /// `--host-max-bytes-per-sec`, in bytes.
    pub host_max_bytes_per_sec: Option<u64>,
    pub report: Option<PathBuf>,
    pub skip_invalid: bool,
    /// Connection pairs per account.
    /// `--connections`; `None`: spread per account as it starts.
    pub connections: Option<usize>,
    pub net: NetOptions,
    /// Every row's options before its own cells.
    pub opts: Options,
    pub read: ReadOptions,
    pub state: PathBuf,
    pub json: bool,
    pub dry_run: bool,
}

impl BatchPlan {
    /// The flags alone, before the CSV file is read.
    pub fn new(a: &BatchArgs) -> anyhow::Result<BatchPlan> {
        let shard = a
            .shard
            .as_deref()
            .map(crate::batch::parse_shard)
            .transpose()
            .map_err(input)?;
        if a.jobs == 0 || a.max_per_host == 0 {
            return Err(input("--jobs and --max-per-host must be at least 1"));
        }
        let net = net(&a.net);
        // Every row is one road: the options every command builds, from the same flags.
        let copy = CopyArgs {
            dry_run: a.dry_run,
            json: a.json,
            to_folder: a.to_folder.clone(),
            delete_after: false,
            connections: a.connections,
            mbox_format: MboxFormat::Auto,
        };
        let opts = copy_options(&a.folders, &copy, "")?;
        let host_max_bytes_per_sec = a
            .host_max_bytes_per_sec
            .as_deref()
            .map(|text| crate::select::parse_rate(text, "--host-max-bytes-per-sec").map_err(input))
            .transpose()?;
        Ok(BatchPlan {
            csv: a.csv.clone(),
            shard,
            jobs: a.jobs,
            max_per_host: a.max_per_host,
            host_max_bytes_per_sec,
            report: a.report.clone(),
            skip_invalid: a.skip_invalid,
            connections: a.connections,
            net,
            read: ReadOptions {
                preset: opts.preset,
                gmail_labels: opts.gmail_labels,
                newest_first: opts.select.newest_first,
                ..Dialect::Rd.into()
            },
            opts,
            state: state_path(a.state.as_ref()),
            json: a.json,
            dry_run: a.dry_run,
        })
    }

    /// One valid row's plan: the batch's, with the row's ends and logins, and
    /// its `since`, `before`, `max_size` and `folder_map` cells winning over the
    /// batch's flags.
    pub fn row(&self, acc: &Account) -> Plan {
        let mut opts = self.opts.clone();
        let sel = &acc.select;
        opts.select.since = sel.since.or(opts.select.since);
        opts.select.before = sel.before.or(opts.select.before);
        opts.select.max_size = sel.max_size.or(opts.select.max_size);
        // The batch's --folder-map, then the row's own folder_map cell: for the
        // same folder the later (the row's) wins.
        opts.rules = Rules {
            map: self
                .opts
                .rules
                .map
                .iter()
                .chain(&acc.folder_map)
                .cloned()
                .collect(),
        };
        Plan {
            source: SourcePlan {
                text: acc.source.to_string(),
                endpoint: acc.source.clone(),
                credentials: acc.source_credentials.clone(),
                read: self.read,
            },
            target: TargetPlan::Imap(acc.target.clone(), acc.target_credentials.clone()),
            net: self.net.clone(),
            opts,
            state: Some(self.state.clone()),
            json: self.json,
            dry_run: self.dry_run,
        }
    }
}
