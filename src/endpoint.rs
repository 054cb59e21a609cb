//! Endpoints: `imaps://USER@HOST[:PORT]`, `imap://…` (STARTTLS required),
//! `pop3s://…`, `pop3://…` (STLS required), `mbox:PATH`, and a bare address meaning
//! the default host (Infomaniak IMAPS, see shared INFOMANIAK.md).
//!
//! The user part is usually a full address, so the *last* `@` separates it from the
//! host; percent-encoding is decoded. An endpoint never holds a password, so its
//! `Display` form is safe to log, to store in the index and to print in reports.

use std::fmt;
use std::path::PathBuf;

use crate::error::input;
use crate::sasl::Mech;

pub const DEFAULT_HOST: &str = "mail.infomaniak.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Imap,
    Pop3,
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    /// TLS from the first byte (imaps, pop3s).
    Implicit,
    /// Plain connection upgraded with STARTTLS/STLS, which is required unless the
    /// user allows plaintext.
    StartTls,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Server {
    pub proto: Proto,
    pub security: Security,
    pub user: String,
    pub host: String,
    pub port: u16,
    /// The SASL mechanism the address forces (`USER;AUTH=NAME@HOST`, RFC 5092
    /// and RFC 2384); `None`: chosen from the server's capabilities.
    pub mech: Option<Mech>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Server(Server),
    Mbox(PathBuf),
}

impl Server {
    pub fn scheme(&self) -> &'static str {
        match (self.proto, self.security) {
            (Proto::Imap, Security::Implicit) => "imaps",
            (Proto::Imap, Security::StartTls) => "imap",
            (Proto::Pop3, Security::Implicit) => "pop3s",
            (Proto::Pop3, Security::StartTls) => "pop3",
        }
    }

    pub fn is_default_host(&self) -> bool {
        self.host.eq_ignore_ascii_case(DEFAULT_HOST)
    }

    /// The one line for a refused login: the server's words and what to check
    /// (at the default host: the full address and the address's own password).
    /// As [`Server::login_refused`], with what to check for an admin login or a
    /// token instead of the password.
    pub fn login_refused_as(
        &self,
        server_words: &str,
        credentials: &crate::secret::Credentials,
    ) -> String {
        match credentials.refused_hint(server_words) {
            None => self.login_refused(server_words),
            Some(hint) => format!(
                "login as {} at {}:{} refused: {server_words}; {hint}",
                self.user, self.host, self.port
            ),
        }
    }

    pub fn login_refused(&self, server_words: &str) -> String {
        let hint = if self.is_default_host() {
            "the username must be the full email address and the password that of the address itself (not of the Infomaniak user account)"
        } else {
            "check the username and the password"
        };
        format!(
            "login as {} at {}:{} refused: {server_words}; {hint}",
            self.user, self.host, self.port
        )
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "{}://{}@{}:{}",
            self.scheme(),
            self.user,
            host,
            self.port
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Server(s) => s.fmt(f),
            Endpoint::Mbox(p) => write!(f, "mbox:{}", p.display()),
        }
    }
}

/// Why a text is not an endpoint: the reason, and the part of the text it is about
/// (kept apart, so a CSV cell's reason can be given without any of its text).
struct Why {
    reason: &'static str,
    value: Option<String>,
}

impl Why {
    fn new(reason: &'static str) -> Why {
        Why {
            reason,
            value: None,
        }
    }
    fn about(reason: &'static str, value: &str) -> Why {
        Why {
            reason,
            value: Some(value.to_string()),
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} {v:?}", self.reason),
            None => f.write_str(self.reason),
        }
    }
}

fn percent_decode(s: &str) -> Result<String, Why> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Why::about("bad percent-encoding in", s))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Why::about("percent-encoding that is not UTF-8 in", s))
}

/// Parse what the user typed for `--from`/`--to` or a CSV cell.
pub fn parse(text: &str) -> anyhow::Result<Endpoint> {
    parse_inner(text).map_err(|why| {
        input(format!(
            "invalid endpoint {:?}: {why}. Use imaps://USER@HOST[:PORT], imap://, pop3s://, pop3://, mbox:PATH or a bare address",
            redact(text)
        ))
    })
}

/// As [`parse`], for a cell of a CSV file: the reason alone, with no part of the
/// cell's text (a shifted column could have put a password there).
pub fn parse_cell(text: &str) -> Result<Endpoint, String> {
    parse_inner(text).map_err(|why| {
        format!(
            "not a valid URL: {}; use imaps://USER@HOST[:PORT], imap://, pop3s://, pop3:// or mbox:PATH",
            why.reason
        )
    })
}

/// The text with anything between `scheme://user:` and the last `@` masked, so a
/// password typed into a URL by mistake is never echoed.
fn redact(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://") {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    text.to_string()
}

fn parse_inner(text: &str) -> Result<Endpoint, Why> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Why::new("it is empty"));
    }
    if let Some(path) = text.strip_prefix("mbox:") {
        if path.is_empty() {
            return Err(Why::new("mbox: needs a path"));
        }
        return Ok(Endpoint::Mbox(PathBuf::from(path)));
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return bare_address(text);
    };
    let (proto, security, default_port) = scheme_of(scheme)?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('?') {
        return Err(Why::new("a path or query is not allowed after the host"));
    }
    let (user, hostport) = rest
        .rsplit_once('@')
        .ok_or_else(|| Why::new("no user name (USER@HOST)"))?;
    if user.contains(':') {
        return Err(Why::new(
            "a password must not be written in the URL; use a password file or the environment",
        ));
    }
    let (user, mech) = user_and_mech(user)?;
    let user = percent_decode(user)?;
    if user.is_empty() {
        return Err(Why::new("empty user name"));
    }
    let (host, port) = host_and_port(hostport, default_port)?;
    Ok(Endpoint::Server(Server {
        proto,
        security,
        user,
        host,
        port,
        mech,
    }))
}

/// A text without a scheme: a bare address means the default host over IMAPS.
fn bare_address(text: &str) -> Result<Endpoint, Why> {
    if text.contains('@') && !text.contains('/') && !text.contains(':') {
        let user = percent_decode(text)?;
        return Ok(Endpoint::Server(Server {
            proto: Proto::Imap,
            security: Security::Implicit,
            user,
            host: DEFAULT_HOST.into(),
            port: 993,
            mech: None,
        }));
    }
    Err(Why::new("no scheme"))
}

/// A URL scheme's protocol, security and default port.
fn scheme_of(scheme: &str) -> Result<(Proto, Security, u16), Why> {
    Ok(match scheme.to_ascii_lowercase().as_str() {
        "imaps" => (Proto::Imap, Security::Implicit, 993),
        "imap" => (Proto::Imap, Security::StartTls, 143),
        "pop3s" => (Proto::Pop3, Security::Implicit, 995),
        "pop3" => (Proto::Pop3, Security::StartTls, 110),
        other => return Err(Why::about("unknown scheme", other)),
    })
}

/// The user part split from its mechanism: RFC 5092 / RFC 2384 `USER;AUTH=MECH`
/// (`*`: any, as without it).
fn user_and_mech(user: &str) -> Result<(&str, Option<Mech>), Why> {
    Ok(match user.rfind(';') {
        Some(i) if user[i + 1..].len() >= 5 && user[i + 1..i + 6].eq_ignore_ascii_case("AUTH=") => {
            let name = &user[i + 6..];
            let mech = match name {
                "*" => None,
                _ => Some(Mech::parse(name).ok_or_else(|| {
                    Why::about(
                        "unknown ;AUTH= mechanism (PLAIN, XOAUTH2, OAUTHBEARER or *)",
                        name,
                    )
                })?),
            };
            (&user[..i], mech)
        }
        _ => (user, None),
    })
}

/// The host (an IPv6 address in `[…]`) and port (`default_port` when none is given).
fn host_and_port(hostport: &str, default_port: u16) -> Result<(String, u16), Why> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| Why::new("unclosed [ in host"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(Why::new("garbage after ]")),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(Why::new("empty host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| Why::about("bad port", p))?,
        None => default_port,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> Server {
        match parse(text).unwrap() {
            Endpoint::Server(s) => s,
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn hosts_and_ports() {
        for (hostport, want) in [
            ("h", Ok(("h", 993))),
            ("h:143", Ok(("h", 143))),
            ("[::1]", Ok(("::1", 993))),
            ("[::1]:10143", Ok(("::1", 10143))),
            ("[::1", Err("unclosed [ in host")),
            ("[::1]x", Err("garbage after ]")),
            (":143", Err("empty host")),
            ("h:0", Err("bad port \"0\"")),
            ("h:x", Err("bad port \"x\"")),
        ] {
            let got = host_and_port(hostport, 993).map_err(|w| w.to_string());
            assert_eq!(
                got,
                want.map(|(h, p)| (h.to_string(), p))
                    .map_err(str::to_string),
                "{hostport:?}"
            );
        }
    }

    #[test]
    fn users_and_mechanisms() {
        for (user, want) in [
            ("anna", Ok(("anna", None))),
            ("anna;AUTH=*", Ok(("anna", None))),
            ("anna;auth=PLAIN", Ok(("anna", Some(Mech::Plain)))),
            ("a;b", Ok(("a;b", None))),
            (
                "anna;AUTH=NTLM",
                Err("unknown ;AUTH= mechanism (PLAIN, XOAUTH2, OAUTHBEARER or *) \"NTLM\""),
            ),
        ] {
            let got = user_and_mech(user).map_err(|w| w.to_string());
            assert_eq!(got, want.map_err(str::to_string), "{user:?}");
        }
    }

    #[test]
    fn table() {
        for (text, want) in [
            (
                "imaps://anna@example.ch@mail.example.ch",
                "imaps://anna@example.ch@mail.example.ch:993",
            ),
            (
                "imap://anna%40example.ch@localhost:10143",
                "imap://anna@example.ch@localhost:10143",
            ),
            (
                "pop3s://bob@pop.example.com",
                "pop3s://bob@pop.example.com:995",
            ),
            (
                "pop3://bob@pop.example.com",
                "pop3://bob@pop.example.com:110",
            ),
            ("IMAPS://x@[::1]:1993/", "imaps://x@[::1]:1993"),
            (
                "imaps://anna@example.ch;AUTH=xoauth2@outlook.office365.com",
                // The mechanism is how to log in, not which mailbox: not shown,
                // so the index and reports know the account by the same name.
                "imaps://anna@example.ch@outlook.office365.com:993",
            ),
            (
                "pop3s://bob;auth=*@pop.example.com",
                "pop3s://bob@pop.example.com:995",
            ),
            (
                "alice@example.ch",
                "imaps://alice@example.ch@mail.infomaniak.com:993",
            ),
        ] {
            assert_eq!(server(text).to_string(), want, "{text}");
        }
        assert_eq!(
            parse("mbox:/tmp/a.mbox").unwrap(),
            Endpoint::Mbox("/tmp/a.mbox".into())
        );
    }

    #[test]
    fn auth_names_a_mechanism() {
        assert_eq!(
            server("imaps://a;AUTH=OAUTHBEARER@h").mech,
            Some(Mech::OAuthBearer)
        );
        assert_eq!(server("imaps://a;auth=plain@h").mech, Some(Mech::Plain));
        assert_eq!(server("imaps://a;AUTH=*@h").mech, None);
        assert_eq!(server("imaps://a@h").mech, None);
    }

    #[test]
    fn user_keeps_every_at_but_the_last() {
        let s = server("imaps://a@b@c@host:1");
        assert_eq!(
            (s.user.as_str(), s.host.as_str(), s.port),
            ("a@b@c", "host", 1)
        );
    }

    #[test]
    fn rejects() {
        for (text, why) in [
            ("", "empty"),
            ("ftp://a@b", "unknown scheme"),
            ("imaps://host", "no user"),
            ("imaps://a:secret@host", "password must not"),
            ("imaps://a@host:99999", "bad port"),
            ("imaps://a@host:0", "bad port"),
            ("imaps://a;AUTH=GSSAPI@host", "unknown ;AUTH= mechanism"),
            ("imaps://;AUTH=PLAIN@host", "empty user name"),
            ("imaps://a@host/INBOX", "path"),
            ("imaps://a%zz@host", "percent"),
            ("mbox:", "needs a path"),
            ("localhost", "no scheme"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
