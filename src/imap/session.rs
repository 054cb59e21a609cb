//! Opening a logged-in IMAP session for an endpoint: implicit TLS or STARTTLS,
//! plaintext refused unless allowed, login errors explained for the user.

use super::{Client, ImapError};
use crate::endpoint::{Security, Server};
use crate::error::{connect_final, connect_with};
use crate::net::{self, NetOptions, Stream};
use crate::secret::{Credentials, Password};

pub type Session = Client<Stream>;

/// Connect, secure and log in with the mailbox's password.
pub fn open(
    server: &Server,
    password: &Password,
    opts: &NetOptions,
    who: &str,
) -> anyhow::Result<Session> {
    open_with(server, &Credentials::Password(password.clone()), opts, who)
}

/// Connect, secure and log in with a side's credentials (a token command runs
/// now, once the connection is secured).
pub fn open_with(
    server: &Server,
    credentials: &Credentials,
    opts: &NetOptions,
    who: &str,
) -> anyhow::Result<Session> {
    let tcp = net::tcp(&server.host, server.port, opts)?;
    let hint_port = |e: ImapError| {
        connect_final(format!(
            "{server}: no IMAP greeting ({e}); check that port {} is an IMAP port (993 for imaps://, 143 for imap://)",
            server.port
        ))
    };
    // A client on the stream, held to --timeout and to each command's deadline
    // (enforced on the socket, under TLS too).
    let client = |stream: Stream| {
        let deadline = stream.deadline();
        let mut c = Client::new(stream, who);
        c.set_timeout(opts.timeout);
        c.share_deadline(deadline);
        c
    };
    let mut client = match server.security {
        Security::Implicit => {
            let mut c = client(net::tls(tcp, &server.host, server.port, opts)?);
            c.greeting().map_err(hint_port)?;
            c
        }
        Security::StartTls => {
            let mut c = client(Stream::Plain(tcp));
            c.greeting().map_err(hint_port)?;
            if c.capabilities().is_empty() {
                c.capability()?;
            }
            if c.has_cap("STARTTLS") {
                c.starttls()?;
                let Stream::Plain(tcp) = c.into_inner() else {
                    unreachable!("a fresh connection is plain")
                };
                let mut c = client(net::tls(tcp, &server.host, server.port, opts)?);
                c.capability()?;
                c
            } else if opts.allow_plaintext {
                crate::log::warn(format!(
                    "{server} offers no STARTTLS: logging in without encryption because of --allow-plaintext"
                ));
                c
            } else {
                return Err(connect_final(format!(
                    "{server} offers no STARTTLS, so the password would cross the network unencrypted; use imaps:// (port 993) or pass --allow-plaintext if you accept that"
                )));
            }
        }
    };
    if client.capabilities().is_empty() {
        client.capability()?;
    }
    if client.has_cap("LOGINDISABLED") {
        return Err(connect_final(format!(
            "{server} does not allow logging in on this connection (LOGINDISABLED); use imaps:// or a server that offers STARTTLS"
        )));
    }
    credentials
        .with_login(&server.user, opts, |login| {
            client.authenticate_as(&server.user, login, server.mech)
        })?
        .map_err(|e| login_error(server, credentials, e))?;
    client.compress(opts.compress)?;
    Ok(client)
}

fn login_error(server: &Server, credentials: &Credentials, e: ImapError) -> anyhow::Error {
    // A refused token that came from the cache may have expired early (or been
    // revoked): dropped, and the run reconnects at once with a fresh one.
    let stale = credentials.refused(&server.user);
    match &e {
        ImapError::No { .. } | ImapError::Bad { .. } => connect_with(
            server.login_refused_as(&e.server_words(), credentials),
            if stale {
                crate::error::Retry::Now
            } else {
                e.retry()
            },
        ),
        other => connect_with(format!("{server}: login failed: {other}"), other.retry()),
    }
}
