//! The flags that are not endpoints or logins: network settings, folder rules,
//! filters, rates and connections (into `engine::Options`), how mbox files are read.

use std::time::Duration;

use crate::cli::{CopyArgs, FolderArgs, MboxFormat, NetArgs};
use crate::endpoint::{self, Endpoint, Proto};
use crate::engine::Options;
use crate::error::input;
use crate::folders::{self, Rules};
use crate::mbox::Dialect;
use crate::net::NetOptions;
use crate::source::mbox::ReadOptions;

pub fn net(a: &NetArgs) -> NetOptions {
    if a.insecure {
        crate::log::warn("--insecure: certificates are NOT verified; anyone on the network path can read the passwords and the mail");
    }
    NetOptions {
        ca_file: a.ca_file.clone(),
        insecure: a.insecure,
        allow_plaintext: a.allow_plaintext,
        timeout: Duration::from_secs(a.timeout.max(1)),
        retries: a.retries,
        // At least a second: after a dropped connection the server may still be
        // storing APPENDs it had received; the retry must see them to skip them.
        retry_wait: Duration::from_secs(a.retry_wait.max(1)),
        deadline: Duration::from_secs(a.deadline),
        compress: a.compress,
    }
}

/// How mbox input is read: `--mbox-format` (`auto`: decided per file) and
/// `--labels-as-folders`.
pub fn mbox_options(f: MboxFormat, labels_as_folders: bool) -> ReadOptions {
    use crate::mbox::Format;
    let format = match f {
        MboxFormat::Auto => None,
        MboxFormat::Mboxrd => Some(Format::plain(Dialect::Rd)),
        MboxFormat::Mboxo => Some(Format::plain(Dialect::O)),
        MboxFormat::Mboxcl => Some(Format::MBOXCL),
        MboxFormat::Mboxcl2 => Some(Format::MBOXCL2),
        MboxFormat::Mmdf => Some(Format::MMDF),
    };
    ReadOptions {
        format,
        labels_as_folders,
        ..ReadOptions::default()
    }
}

/// Options of a copy, checked: `--delete-after` only for POP3 sources and never
/// with `--dry-run`; `--to-folder` becomes a folder mapping of INBOX.
pub fn copy_options(f: &FolderArgs, c: &CopyArgs, source: &str) -> anyhow::Result<Options> {
    let mut opts = options(f, c.dry_run)?;
    if c.connections == Some(0) {
        return Err(input("--connections must be at least 1"));
    }
    // 0: chosen by the engine from the measured round-trip time.
    opts.connections = c.connections.unwrap_or(0);
    if c.delete_after {
        if c.dry_run {
            return Err(input(
                "--delete-after and --dry-run do not go together: a dry run copies nothing, so nothing may be deleted",
            ));
        }
        let pop3 =
            matches!(endpoint::parse(source), Ok(Endpoint::Server(s)) if s.proto == Proto::Pop3);
        if !pop3 {
            return Err(input(
                "--delete-after works only with a pop3:// or pop3s:// source",
            ));
        }
        opts.delete_after = true;
    }
    if let Some(to) = &c.to_folder {
        let (_, dst) = folders::parse_map(&format!("X={to}")).map_err(input)?;
        opts.to_folder = Some(dst);
    }
    Ok(opts)
}

pub fn options(f: &FolderArgs, dry_run: bool) -> anyhow::Result<Options> {
    let map = f
        .folder_map
        .iter()
        .map(|m| folders::parse_map(m).map_err(input))
        .collect::<Result<Vec<_>, _>>()?;
    let include_shared = f
        .include_shared
        .as_ref()
        .map(|t| folders::parse_map(&format!("X={t}")).map(|(_, dst)| dst))
        .transpose()
        .map_err(input)?;
    let day = |d: &Option<String>, flag: &str| {
        d.as_deref()
            .map(|d| crate::select::parse_day(d).map_err(|e| input(format!("--{flag}: {e}"))))
            .transpose()
    };
    let select = crate::select::Select {
        since: day(&f.since, "since")?,
        before: day(&f.before, "before")?,
        max_size: f
            .max_size
            .as_deref()
            .map(|s| crate::select::parse_size(s).map_err(|e| input(format!("--max-size: {e}"))))
            .transpose()?,
        target_limit: None,
        newest_first: f.newest_first,
    };
    if let (Some(s), Some(b)) = (select.since, select.before) {
        if s >= b {
            return Err(input(format!(
                "--since {s} is not before --before {b}: no message could be copied; give a window whose start is before its end"
            )));
        }
    }
    Ok(Options {
        select,
        preset: f.from_preset,
        gmail_labels: f.gmail_labels,
        sync_deletes: f.sync_deletes,
        max_bytes_per_sec: f
            .max_bytes_per_sec
            .as_deref()
            .map(|s| crate::select::parse_rate(s, "--max-bytes-per-sec").map_err(input))
            .transpose()?,
        max_msgs_per_sec: match f.max_msgs_per_sec {
            Some(0) => return Err(input("--max-msgs-per-sec must be at least 1")),
            n => n,
        },
        dedupe: f.dedupe,
        include_shared,
        dry_run,
        include: f.include.clone(),
        exclude: f.exclude.clone(),
        rules: Rules { map },
        ..Options::default()
    })
}
