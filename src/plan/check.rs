//! The plan of `check URL`: one account or tree, read to show what it holds.

use crate::cli::{CheckArgs, MboxFormat};
use crate::endpoint::{self, Endpoint, Proto, Server};
use crate::error::input;
use crate::net::NetOptions;
use crate::secret::Credentials;

use super::{
    check_auth, credentials, imap_server, mbox_options, net, Auth, SourcePlan, TargetPlan,
};

/// What `check` looks at.
pub enum Checked {
    /// An IMAP account: capabilities, folders, counts from STATUS.
    Imap(Server, Credentials),
    /// A POP3 mailbox or mbox files: read as the copy reads them.
    Source(SourcePlan),
    /// A tree only a target writes (`maildir:DIR`): read as `verify` reads it.
    Target(TargetPlan),
}

pub struct CheckPlan {
    pub checked: Checked,
    pub net: NetOptions,
    pub json: bool,
}

/// How `check` logs in: `--password-file`, `--admin`, `--token-cmd`, `--oauth2`.
fn auth(a: &CheckArgs) -> Auth<'_> {
    Auth {
        password_file: a.password_file.as_deref(),
        admin: a.admin.as_deref(),
        token_cmd: a.token_cmd.as_deref(),
        oauth2: a.oauth2.as_deref(),
    }
}

impl CheckPlan {
    pub fn new(a: &CheckArgs) -> anyhow::Result<CheckPlan> {
        let checked = if a.url.starts_with("maildir:") {
            Checked::Target(TargetPlan::parse_read(&a.url, auth(a), "")?)
        } else {
            match endpoint::parse(&a.url)? {
                Endpoint::Server(s) if s.proto == Proto::Imap => {
                    let server = imap_server(&a.url, "URL")?;
                    let credentials =
                        credentials(auth(a), "", "MAILFERRY_PASSWORD", "account", &server)?;
                    Checked::Imap(server, credentials)
                }
                other => Checked::Source(source(a, other)?),
            }
        };
        Ok(CheckPlan {
            checked,
            net: net(&a.net),
            json: a.json,
        })
    }
}

/// A POP3 mailbox or mbox files, with its credentials (none for files).
fn source(a: &CheckArgs, endpoint: Endpoint) -> anyhow::Result<SourcePlan> {
    let credentials = match &endpoint {
        Endpoint::Server(server) => Some(credentials(
            auth(a),
            "",
            "MAILFERRY_PASSWORD",
            "account",
            server,
        )?),
        Endpoint::Mbox(path) => {
            check_auth(auth(a), "")?;
            if a.admin.is_some() || a.token_cmd.is_some() || a.oauth2.is_some() {
                return Err(input(
                    "--admin, --token-cmd and --oauth2 are for an IMAP or POP3 account, not mbox files",
                ));
            }
            crate::source::mbox::check_path(path)?;
            None
        }
    };
    Ok(SourcePlan {
        text: a.url.clone(),
        endpoint,
        credentials,
        read: mbox_options(MboxFormat::Auto, false),
    })
}
