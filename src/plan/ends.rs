//! The two ends of a plan: the source (an endpoint, its credentials, how it is
//! read) and the target (an IMAP account with its credentials, a backup
//! directory, a Maildir tree), and how each is opened once the plan is whole.

use std::path::PathBuf;

use crate::endpoint::{self, Endpoint, Proto, Server};
use crate::error::input;
use crate::net::NetOptions;
use crate::secret::Credentials;
use crate::source::imap::ImapSource;
use crate::source::mbox::{MboxSource, ReadOptions};
use crate::source::pop3::Pop3Source;
use crate::source::Source;
use crate::target::backup::BackupTarget;
use crate::target::imap::ImapTarget;
use crate::target::maildir::MaildirTarget;
use crate::target::Target;

use super::Auth;

/// Where the mail comes from.
#[derive(Clone)]
pub struct SourcePlan {
    /// As the user wrote it (named in retry messages).
    pub text: String,
    pub endpoint: Endpoint,
    /// None for mbox files.
    pub credentials: Option<Credentials>,
    /// How mbox files are read; for IMAP, the preset and Gmail labels.
    pub read: ReadOptions,
}

impl SourcePlan {
    /// `text` parsed; mbox files must be there.
    pub fn parse(text: &str, read: ReadOptions) -> anyhow::Result<SourcePlan> {
        let endpoint = endpoint::parse(text)?;
        if let Endpoint::Mbox(path) = &endpoint {
            crate::source::mbox::check_path(path)?;
        }
        Ok(SourcePlan {
            text: text.to_string(),
            endpoint,
            credentials: None,
            read,
        })
    }

    /// Open it with its (already resolved) credentials: a connection, or the
    /// files. A new kind of source is one arm here.
    pub fn open(&self, net: &NetOptions) -> anyhow::Result<Box<dyn Source>> {
        let read = self.read;
        match &self.endpoint {
            Endpoint::Mbox(path) => Ok(Box::new(MboxSource::open_with(path, read)?)),
            Endpoint::Server(server) => {
                let credentials = self
                    .credentials
                    .as_ref()
                    .ok_or_else(|| input(format!("no password for {server}")))?;
                let name = server.to_string();
                Ok(match server.proto {
                    Proto::Imap => Box::new(
                        ImapSource::new(
                            crate::imap::session::open_with(server, credentials, net, "source")?,
                            name,
                        )
                        .with_preset(read.preset, read.gmail_labels)
                        .newest_first(read.newest_first),
                    ),
                    Proto::Pop3 => Box::new(Pop3Source::new(
                        crate::pop3::open_with(server, credentials, net, "source")?,
                        name,
                    )),
                })
            }
        }
    }
}

/// Where the mail goes (or, for `verify` and `check`, what is read back).
#[derive(Clone)]
pub enum TargetPlan {
    Imap(Server, Credentials),
    /// `backup --out`, or `mbox:DIR` (`mbox:FILE.mbox`) read back: mbox files
    /// and a manifest.
    Backup(PathBuf),
    /// `backup --format maildir --out DIR`, or `maildir:DIR` read back.
    Maildir(PathBuf),
}

impl TargetPlan {
    /// A target `verify` and `check` read: `maildir:DIR`, `mbox:PATH`, or an IMAP
    /// account with its credentials. `flags` is the login flags' prefix.
    pub fn parse_read(text: &str, auth: Auth<'_>, flags: &str) -> anyhow::Result<TargetPlan> {
        let files = |path: PathBuf, kind: fn(PathBuf) -> TargetPlan| {
            if auth.password_file.is_some()
                || auth.admin.is_some()
                || auth.token_cmd.is_some()
                || auth.oauth2.is_some()
            {
                return Err(input(format!(
                    "--{flags}password-file, --{flags}admin, --{flags}token-cmd and --{flags}oauth2 are for an IMAP account, not files"
                )));
            }
            Ok(kind(path))
        };
        if let Some(path) = text.strip_prefix("maildir:") {
            return files(PathBuf::from(path), TargetPlan::Maildir);
        }
        match endpoint::parse(text)? {
            Endpoint::Mbox(path) => files(path, TargetPlan::Backup),
            Endpoint::Server(_) => {
                let (server, credentials) = super::target(text, auth)?;
                Ok(TargetPlan::Imap(server, credentials))
            }
        }
    }

    /// Open it for reading: nothing is created or repaired.
    pub fn open_read(&self, net: &NetOptions) -> anyhow::Result<Box<dyn Target>> {
        Ok(match self {
            TargetPlan::Imap(server, credentials) => {
                Box::new(ImapTarget::connect(server, credentials, net)?)
            }
            TargetPlan::Backup(path) => {
                crate::source::mbox::check_path(path)?;
                Box::new(BackupTarget::new(path, true)?)
            }
            TargetPlan::Maildir(path) => {
                if !path.join("cur").is_dir() {
                    return Err(input(format!(
                        "{} is not a Maildir (no cur/ directory in it)",
                        path.display()
                    )));
                }
                Box::new(MaildirTarget::new(path, false)?)
            }
        })
    }
}
