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
use crate::secret::{self, Credentials, Password};
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
        compress: a.compress,
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

/// How one side logs in, as the user typed it: `--{side}password-file`,
/// `--{side}admin USER`, `--{side}token-cmd CMD`.
#[derive(Clone, Copy, Default)]
pub struct Auth<'a> {
    pub password_file: Option<&'a Path>,
    pub admin: Option<&'a str>,
    pub token_cmd: Option<&'a str>,
    /// `--{side}oauth2 FILE`: a provider config for tokens fetched by mailferry.
    pub oauth2: Option<&'a Path>,
}

/// One side's credentials: a token command as given (run at every connect), or
/// a password (the admin's with `admin`) resolved now, once per run, so a retry
/// never prompts again. `flag` is the flags' prefix ("from-", "to-", "") and
/// `env_var`/`what` name the password's variable and the side in messages.
pub fn credentials(
    auth: Auth<'_>,
    flag: &str,
    env_var: &str,
    what: &str,
    server: &Server,
) -> anyhow::Result<Credentials> {
    check_auth(auth, flag)?;
    if let Some(mech) = server.mech {
        let bearer = auth.token_cmd.is_some() || auth.oauth2.is_some();
        if bearer != (mech != crate::sasl::Mech::Plain) {
            return Err(input(format!(
                "{server}: ;AUTH={} does not go with {}: PLAIN is for a password or an admin login, XOAUTH2 and OAUTHBEARER for a token (--{flag}token-cmd, --{flag}oauth2)",
                mech.name(),
                if bearer { "an OAuth2 token" } else { "a password" }
            )));
        }
    }
    if let Some(cmd) = auth.token_cmd {
        return Ok(Credentials::TokenCmd(cmd.to_string()));
    }
    if let Some(file) = auth.oauth2 {
        return Ok(Credentials::OAuth2(std::sync::Arc::new(
            crate::oauth2::Source::load(file)?,
        )));
    }
    if let Some(admin) = auth.admin {
        let password = secret::resolve(
            auth.password_file,
            env_var,
            what,
            &format!("{server} (the password of the admin {admin})"),
        )?;
        return Ok(Credentials::Admin {
            admin: admin.to_string(),
            password,
        });
    }
    Ok(Credentials::Password(secret::resolve(
        auth.password_file,
        env_var,
        what,
        &server.to_string(),
    )?))
}

/// The combinations of login flags that make no sense, refused without I/O.
pub fn check_auth(auth: Auth<'_>, flag: &str) -> anyhow::Result<()> {
    if auth.admin.is_some() && auth.token_cmd.is_some() {
        return Err(input(format!(
            "--{flag}admin and --{flag}token-cmd do not go together: an admin logs in with its password, a token command replaces any password"
        )));
    }
    if auth.token_cmd.is_some() && auth.password_file.is_some() {
        return Err(input(format!(
            "--{flag}token-cmd replaces the password: drop --{flag}password-file"
        )));
    }
    if auth.oauth2.is_some() {
        if auth.token_cmd.is_some() {
            return Err(input(format!(
                "--{flag}oauth2 and --{flag}token-cmd do not go together: give one source of tokens"
            )));
        }
        if auth.admin.is_some() {
            return Err(input(format!(
                "--{flag}oauth2 and --{flag}admin do not go together: an admin logs in with its password, OAuth2 with a token"
            )));
        }
        if auth.password_file.is_some() {
            return Err(input(format!(
                "--{flag}oauth2 replaces the password: drop --{flag}password-file"
            )));
        }
    }
    if auth.admin.is_some_and(|a| a.trim().is_empty()) {
        return Err(input(format!("--{flag}admin needs the admin's user name")));
    }
    if auth.token_cmd.is_some_and(|c| c.trim().is_empty()) {
        return Err(input(format!("--{flag}token-cmd needs a command")));
    }
    Ok(())
}

/// The source's credentials (none for mbox files), see [`credentials`].
pub fn source_credentials(ep: &Endpoint, auth: Auth<'_>) -> anyhow::Result<Option<Credentials>> {
    match ep {
        Endpoint::Server(server) => Ok(Some(credentials(
            auth,
            "from-",
            "MAILFERRY_FROM_PASSWORD",
            "source",
            server,
        )?)),
        Endpoint::Mbox(p) => {
            if auth.admin.is_some() || auth.token_cmd.is_some() || auth.oauth2.is_some() {
                return Err(input(format!(
                    "mbox:{} is read from files: --from-admin, --from-token-cmd and --from-oauth2 are for an IMAP or POP3 source",
                    p.display()
                )));
            }
            Ok(None)
        }
    }
}

/// Open a parsed source endpoint with its (already resolved) credentials.
pub fn open_endpoint(
    ep: &Endpoint,
    credentials: Option<&Credentials>,
    net: &NetOptions,
    mbox: impl Into<ReadOptions>,
) -> anyhow::Result<Box<dyn Source>> {
    let read: ReadOptions = mbox.into();
    match ep {
        Endpoint::Mbox(path) => Ok(Box::new(MboxSource::open_with(path, read)?)),
        Endpoint::Server(server) => {
            let credentials =
                credentials.ok_or_else(|| input(format!("no password for {server}")))?;
            let name = server.to_string();
            Ok(match server.proto {
                Proto::Imap => Box::new(
                    ImapSource::new(
                        crate::imap::session::open_with(server, credentials, net, "source")?,
                        name,
                    )
                    .with_preset(read.preset),
                ),
                Proto::Pop3 => Box::new(Pop3Source::new(
                    crate::pop3::open_with(server, credentials, net, "source")?,
                    name,
                )),
            })
        }
    }
}

/// The target server of a copy and its credentials.
pub fn target(text: &str, auth: Auth<'_>) -> anyhow::Result<(Server, Credentials)> {
    let target = imap_server(text, "--to")?;
    let credentials = credentials(auth, "to-", "MAILFERRY_TO_PASSWORD", "target", &target)?;
    Ok((target, credentials))
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
        sync_deletes: f.sync_deletes,
        dedupe: f.dedupe,
        include_shared,
        dry_run,
        include: f.include.clone(),
        exclude: f.exclude.clone(),
        rules: Rules { map },
        ..Options::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_flags_that_do_not_go_together_are_refused() {
        let file = Path::new("pw.txt");
        let cases: [(Auth<'_>, Option<&str>); 6] = [
            (Auth::default(), None),
            (
                Auth {
                    admin: Some("admin"),
                    password_file: Some(file),
                    ..Auth::default()
                },
                None,
            ),
            (
                Auth {
                    token_cmd: Some("tok"),
                    ..Auth::default()
                },
                None,
            ),
            (
                Auth {
                    admin: Some("admin"),
                    token_cmd: Some("tok"),
                    ..Auth::default()
                },
                Some("--from-admin and --from-token-cmd do not go together"),
            ),
            (
                Auth {
                    token_cmd: Some("tok"),
                    password_file: Some(file),
                    ..Auth::default()
                },
                Some("--from-token-cmd replaces the password"),
            ),
            (
                Auth {
                    admin: Some(" "),
                    ..Auth::default()
                },
                Some("--from-admin needs the admin's user name"),
            ),
        ];
        for (auth, refused) in cases {
            match (check_auth(auth, "from-"), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(says)) => assert!(e.to_string().contains(says), "{e}"),
                (got, want) => panic!("{:?} but {want:?}", got.map_err(|e| e.to_string())),
            }
        }
    }
}
