//! From what the user typed to what a command runs on (ripgrep's "high args"):
//! endpoints parsed, passwords resolved, rules checked, before any connection.

use std::time::Duration;

use crate::cli::{FolderArgs, NetArgs, PairArgs};
use crate::endpoint::{self, Endpoint, Proto, Server};
use crate::engine::Options;
use crate::error::input;
use crate::folders::{self, Rules};
use crate::net::NetOptions;
use crate::secret::{self, Password};

pub fn net(a: &NetArgs) -> NetOptions {
    if a.insecure {
        crate::log::warn("--insecure: certificates are NOT verified; anyone on the network path can read the passwords and the mail");
    }
    NetOptions {
        ca_file: a.ca_file.clone(),
        insecure: a.insecure,
        allow_plaintext: a.allow_plaintext,
        timeout: Duration::from_secs(a.timeout.max(1)),
    }
}

/// An IMAP server endpoint, or an input error naming the flag.
pub fn imap_server(text: &str, flag: &str) -> anyhow::Result<Server> {
    match endpoint::parse(text)? {
        Endpoint::Server(s) if s.proto == Proto::Imap => Ok(s),
        Endpoint::Server(s) => Err(input(format!(
            "{flag} {s}: {} is not supported here yet; use an imaps:// or imap:// endpoint",
            s.scheme()
        ))),
        Endpoint::Mbox(p) => Err(input(format!(
            "{flag} mbox:{}: mbox files are not supported here yet",
            p.display()
        ))),
    }
}

/// Source and target servers with their passwords.
pub struct Pair {
    pub source: Server,
    pub source_password: Password,
    pub target: Server,
    pub target_password: Password,
}

pub fn pair(a: &PairArgs) -> anyhow::Result<Pair> {
    let source = imap_server(&a.from, "--from")?;
    let target = imap_server(&a.to, "--to")?;
    let source_password = secret::resolve(
        a.from_password_file.as_deref(),
        "MAILFERRY_FROM_PASSWORD",
        "source",
        &source.to_string(),
    )?;
    let target_password = secret::resolve(
        a.to_password_file.as_deref(),
        "MAILFERRY_TO_PASSWORD",
        "target",
        &target.to_string(),
    )?;
    Ok(Pair {
        source,
        source_password,
        target,
        target_password,
    })
}

pub fn options(f: &FolderArgs, dry_run: bool) -> anyhow::Result<Options> {
    let map = f
        .folder_map
        .iter()
        .map(|m| folders::parse_map(m).map_err(input))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Options {
        dedupe: f.dedupe,
        dry_run,
        include: f.include.clone(),
        exclude: f.exclude.clone(),
        rules: Rules { map },
        ..Options::default()
    })
}
