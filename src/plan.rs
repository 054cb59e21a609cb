//! From what the user typed to what a command runs on (ripgrep's "high args"):
//! endpoints parsed, passwords resolved, rules checked, before any connection.

use std::time::Duration;

use std::path::Path;

use crate::cli::{CopyArgs, FolderArgs, MboxFormat, NetArgs, PairArgs};
use crate::endpoint::{self, Endpoint, Proto, Server};
use crate::engine::Options;
use crate::error::input;
use crate::folders::{self, Rules};
use crate::mbox::Dialect;
use crate::net::NetOptions;
use crate::secret::{self, Password};
use crate::source::imap::ImapSource;
use crate::source::mbox::{MboxSource, ReadOptions};
use crate::source::pop3::Pop3Source;
use crate::source::Source;

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
    }
}

/// An IMAP server endpoint, or an input error naming the flag.
pub fn imap_server(text: &str, flag: &str) -> anyhow::Result<Server> {
    match endpoint::parse(text)? {
        Endpoint::Server(s) if s.proto == Proto::Imap => Ok(s),
        Endpoint::Server(s) => Err(input(format!(
            "{flag} {s}: {} cannot be used here; give an imaps:// or imap:// account",
            s.scheme()
        ))),
        Endpoint::Mbox(p) => Err(input(format!(
            "{flag} mbox:{}: give an IMAP account here; `mailferry backup --out` writes mbox files",
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

/// The source's password (none for mbox files), resolved once per run so a retry
/// never prompts again.
pub fn source_password(
    ep: &Endpoint,
    password_file: Option<&Path>,
) -> anyhow::Result<Option<Password>> {
    Ok(match ep {
        Endpoint::Server(server) => Some(secret::resolve(
            password_file,
            "MAILFERRY_FROM_PASSWORD",
            "source",
            &server.to_string(),
        )?),
        Endpoint::Mbox(_) => None,
    })
}

/// Open a parsed source endpoint with its (already resolved) password.
pub fn open_endpoint(
    ep: &Endpoint,
    password: Option<&Password>,
    net: &NetOptions,
    mbox: impl Into<ReadOptions>,
) -> anyhow::Result<Box<dyn Source>> {
    match ep {
        Endpoint::Mbox(path) => Ok(Box::new(MboxSource::open_with(path, mbox.into())?)),
        Endpoint::Server(server) => {
            let password = password.ok_or_else(|| input(format!("no password for {server}")))?;
            let name = server.to_string();
            Ok(match server.proto {
                Proto::Imap => Box::new(ImapSource::new(
                    crate::imap::session::open(server, password, net, "source")?,
                    name,
                )),
                Proto::Pop3 => Box::new(Pop3Source::new(
                    crate::pop3::open(server, password, net, "source")?,
                    name,
                )),
            })
        }
    }
}

/// The target server of a copy and its password.
pub fn target(text: &str, password_file: Option<&Path>) -> anyhow::Result<(Server, Password)> {
    let target = imap_server(text, "--to")?;
    let password = secret::resolve(
        password_file,
        "MAILFERRY_TO_PASSWORD",
        "target",
        &target.to_string(),
    )?;
    Ok((target, password))
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
    }
}

/// Options of a copy, checked: `--delete-after` only for POP3 sources and never
/// with `--dry-run`; `--to-folder` becomes a folder mapping of INBOX.
pub fn copy_options(f: &FolderArgs, c: &CopyArgs, source: &str) -> anyhow::Result<Options> {
    let mut opts = options(f, c.dry_run)?;
    if c.connections == 0 {
        return Err(input("--connections must be at least 1"));
    }
    opts.connections = c.connections;
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
    Ok(Options {
        dedupe: f.dedupe,
        include_shared,
        dry_run,
        include: f.include.clone(),
        exclude: f.exclude.clone(),
        rules: Rules { map },
        ..Options::default()
    })
}
