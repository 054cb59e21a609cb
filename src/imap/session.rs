//! Opening a logged-in IMAP session for an endpoint: secured by the one connector
//! ([`crate::net::connect`]: implicit TLS or STARTTLS, plaintext refused unless
//! allowed), logged in through [`Credentials`], login errors explained for the user.

use super::{Client, ImapError};
use crate::endpoint::Server;
use crate::error::{connect_final, connect_with};
use crate::net::connect::{connect, Handshake};
use crate::net::{NetOptions, Stream};
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
    let mut client = connect(server, opts, &Imap { server, opts, who })?;
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

/// IMAP's part of the connector: its greeting (capabilities asked where it did
/// not list them) and `STARTTLS`.
struct Imap<'a> {
    server: &'a Server,
    opts: &'a NetOptions,
    who: &'a str,
}

impl Handshake for Imap<'_> {
    type Client = Session;

    fn client(&self, stream: Stream) -> Session {
        let deadline = stream.deadline();
        let mut c = Client::new(stream, self.who);
        c.set_timeout(self.opts.timeout);
        c.share_deadline(deadline);
        c
    }

    fn greet(&self, c: &mut Session) -> anyhow::Result<()> {
        c.greeting().map_err(|e| {
            connect_final(format!(
                "{}: no IMAP greeting ({e}); check that port {} is an IMAP port (993 for imaps://, 143 for imap://)",
                self.server, self.server.port
            ))
        })?;
        if c.capabilities().is_empty() {
            c.capability()?;
        }
        Ok(())
    }

    fn offers_upgrade(&self, c: &Session) -> bool {
        c.has_cap("STARTTLS")
    }

    fn upgrade(&self, mut c: Session) -> anyhow::Result<Stream> {
        c.starttls()?;
        Ok(c.into_inner())
    }

    fn upgraded(&self, c: &mut Session) -> anyhow::Result<()> {
        Ok(c.capability()?)
    }
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
