//! The one connector for IMAP and POP3: TCP, then TLS from the first byte
//! (`imaps://`, `pop3s://`) or a plain greeting upgraded by the protocol's own
//! exchange (IMAP `STARTTLS`, POP3 `STLS`, RFC 2595), and plaintext only where
//! `--allow-plaintext` lets a server without the upgrade go.
//!
//! The policy is one pure function, [`decide`], table-tested; [`connect`] applies
//! it. A protocol brings only what differs ([`Handshake`]): its client, its
//! greeting, whether the upgrade is offered, and the upgrade exchange.
//!
//! Invariants:
//! - nothing is sent on a plain connection of a `StartTls` endpoint before the
//!   policy allowed it: either the upgrade, or (`--allow-plaintext`) a warning;
//! - the connector never sees a secret: it returns a greeted, secured client and
//!   the protocol logs in afterwards through [`crate::secret::Credentials`].

use crate::endpoint::{Proto, Security, Server};
use crate::error::connect_final;

use super::{tcp, tls, NetOptions, Socket, Stream};

/// How a connection is secured: the policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secure {
    /// TLS from the first byte (`imaps://`, `pop3s://`).
    Tls,
    /// The server offers `STARTTLS`/`STLS`: upgrade before anything else is said.
    Upgrade,
    /// No upgrade offered, plaintext allowed: go on unencrypted, with this warning.
    Plain(String),
    /// No upgrade offered and plaintext not allowed: stop with these words.
    Refuse(String),
}

/// The policy, pure: an endpoint's security, whether the server offered the
/// upgrade in its greeting or capabilities (not consulted for implicit TLS), and
/// `--allow-plaintext`.
pub fn decide(server: &Server, offers_upgrade: bool, allow_plaintext: bool) -> Secure {
    let (verb, tls_scheme) = match server.proto {
        Proto::Imap => ("STARTTLS", "imaps:// (port 993)"),
        Proto::Pop3 => ("STLS", "pop3s:// (port 995)"),
    };
    match server.security {
        Security::Implicit => Secure::Tls,
        Security::StartTls if offers_upgrade => Secure::Upgrade,
        Security::StartTls if allow_plaintext => Secure::Plain(format!(
            "{server} offers no {verb}: logging in without encryption because of --allow-plaintext"
        )),
        Security::StartTls => Secure::Refuse(format!(
            "{server} offers no {verb}, so the password would cross the network unencrypted; use {tls_scheme} or pass --allow-plaintext if you accept that"
        )),
    }
}

/// What a protocol does on a new connection before it logs in.
pub trait Handshake {
    /// The protocol's client over a [`Stream`].
    type Client;
    /// A client on `stream`, held to `--timeout` and to each command's deadline.
    fn client(&self, stream: Stream) -> Self::Client;
    /// Read the greeting (and the capabilities, where the protocol reads them
    /// before securing the connection).
    fn greet(&self, client: &mut Self::Client) -> anyhow::Result<()>;
    /// Whether the greeted server offers the upgrade (`STARTTLS`, `STLS`).
    fn offers_upgrade(&self, client: &Self::Client) -> bool;
    /// The upgrade exchange; once the server agreed, the plain stream back,
    /// nothing the server sent ahead of the handshake carried over.
    fn upgrade(&self, client: Self::Client) -> anyhow::Result<Stream>;
    /// On the new TLS stream of an upgraded connection: capabilities afresh.
    fn upgraded(&self, client: &mut Self::Client) -> anyhow::Result<()>;
}

/// Connect to `server`, secured as [`decide`] says; a greeted client, not
/// logged in.
pub fn connect<H: Handshake>(
    server: &Server,
    opts: &NetOptions,
    proto: &H,
) -> anyhow::Result<H::Client> {
    let socket = tcp(&server.host, server.port, opts)?;
    if server.security == Security::Implicit {
        let mut c = proto.client(tls(socket, &server.host, server.port, opts)?);
        proto.greet(&mut c)?;
        return Ok(c);
    }
    let mut c = proto.client(Stream::Plain(socket));
    proto.greet(&mut c)?;
    match decide(server, proto.offers_upgrade(&c), opts.allow_plaintext) {
        Secure::Tls | Secure::Upgrade => {
            let socket = plain_socket(proto.upgrade(c)?)?;
            let mut c = proto.client(tls(socket, &server.host, server.port, opts)?);
            proto.upgraded(&mut c)?;
            Ok(c)
        }
        Secure::Plain(warning) => {
            crate::log::warn(warning);
            Ok(c)
        }
        Secure::Refuse(why) => Err(connect_final(why)),
    }
}

fn plain_socket(stream: Stream) -> anyhow::Result<Socket> {
    match stream {
        Stream::Plain(socket) => Ok(socket),
        _ => Err(connect_final(
            "the connection was already secured or closed before the upgrade",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str) -> Server {
        match crate::endpoint::parse(url).unwrap() {
            crate::endpoint::Endpoint::Server(s) => s,
            other => panic!("not a server: {other:?}"),
        }
    }

    #[test]
    fn the_policy_by_scheme_offer_and_flag() {
        use Secure::*;
        let imap_refused = "imap://u@h.test:143 offers no STARTTLS, so the password would cross the network unencrypted; use imaps:// (port 993) or pass --allow-plaintext if you accept that";
        let pop3_refused = "pop3://u@h.test:110 offers no STLS, so the password would cross the network unencrypted; use pop3s:// (port 995) or pass --allow-plaintext if you accept that";
        let imap_warned = "imap://u@h.test:143 offers no STARTTLS: logging in without encryption because of --allow-plaintext";
        let pop3_warned = "pop3://u@127.0.0.1:1110 offers no STLS: logging in without encryption because of --allow-plaintext";
        // (url, server offers the upgrade, --allow-plaintext) → decision
        let table: &[(&str, bool, bool, Secure)] = &[
            ("imaps://u@h.test", false, false, Tls),
            ("imaps://u@h.test", true, true, Tls),
            ("pop3s://u@h.test", false, false, Tls),
            ("pop3s://u@127.0.0.1:9995", false, true, Tls),
            ("imap://u@h.test", true, false, Upgrade),
            ("imap://u@h.test", true, true, Upgrade),
            ("pop3://u@h.test", true, false, Upgrade),
            ("imap://u@h.test", false, false, Refuse(imap_refused.into())),
            ("pop3://u@h.test", false, false, Refuse(pop3_refused.into())),
            // Loopback is no exception: only the flag lets plaintext through.
            (
                "imap://u@127.0.0.1",
                false,
                false,
                Refuse(imap_refused.replace("h.test", "127.0.0.1")),
            ),
            ("imap://u@h.test", false, true, Plain(imap_warned.into())),
            (
                "pop3://u@127.0.0.1:1110",
                false,
                true,
                Plain(pop3_warned.into()),
            ),
        ];
        for (url, offered, allow, want) in table {
            let got = decide(&server(url), *offered, *allow);
            assert_eq!(&got, want, "{url} offered={offered} allow={allow}");
        }
    }
}
