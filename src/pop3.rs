//! A small POP3 client (RFC 1939, CAPA RFC 2449, AUTH RFC 5034 with PLAIN, XOAUTH2 and
//! OAUTHBEARER, STLS RFC 2595),
//! generic over `Read + Write` like the IMAP client, so unit tests replay a server
//! transcript and the same code runs over TLS for real; [`open`] gives a logged-in
//! session for an endpoint.
//!
//! Invariants:
//! - multi-line answers are read line by line, never assuming a whole answer arrives
//!   in one read, and every read is bounded ([`crate::limits`]): a line before login
//!   (greeting, CAPA, STLS, AUTH) by `MAX_LINE_PRE_LOGIN`, after login by `MAX_LINE`;
//!   a message (RETR/TOP) in total by `MAX_LITERAL`; a LIST, UIDL or CAPA answer by
//!   `MAX_POP3_LIST_LINES` lines (CAPA also by `MAX_LINE_PRE_LOGIN` bytes in all).
//!   Over a limit is a [`Pop3Error::Limit`] naming it; nothing beyond it is held;
//! - every command (and the greeting) has a time budget ([`crate::limits::Paced`]),
//!   so a server trickling keep-alive bytes cannot hold a run;
//! - LIST and UIDL answers are checked: a message number that is not one (0,
//!   negative, over 32 bits) or one listed twice is a protocol error, never skipped;
//! - RETR/TOP return the message byte-exact: only the dot-stuffing is undone (a line
//!   starting with `..` loses one `.`) and the terminating `.` line is dropped; CRLF,
//!   bare LF and 8-bit bytes are kept as they came. A bare-LF terminator (`.\n`) from
//!   a sloppy server is accepted, and a line with one leading `.` that the server
//!   forgot to stuff keeps its dot;
//! - `-ERR` answers keep the server's words and the RFC 2449/3206 response code, which
//!   alone decides how a failure may be retried;
//! - credentials never reach the trace: `PASS` and `AUTH` lines and SASL responses
//!   are masked before logging, and message bodies are traced as a size only;
//! - no command with a line break in it is ever sent (no injection via user names);
//! - after STLS, bytes the server sent ahead of the TLS handshake are refused, not
//!   carried into the encrypted session.

use std::io::{BufReader, Read, Write};
use std::time::Duration;

use crate::endpoint::Server;
use crate::error::{connect, connect_final, connect_with, Retry};
use crate::imap::types::shown;
use crate::limits::{self, Paced, MAX_LINE, MAX_LINE_PRE_LOGIN, MAX_LITERAL, MAX_POP3_LIST_LINES};
use crate::log;
use crate::net::connect::{self as connector, Handshake};
use crate::net::{NetOptions, Stream};
use crate::sasl::{self, Login, Mech};
use crate::secret::{Credentials, Password};

#[derive(Debug, thiserror::Error)]
pub enum Pop3Error {
    /// (Not the error's `source`: its text is already in this one's, and the
    /// error chain printed with `{:#}` would say it twice.)
    #[error("connection error: {0}")]
    Io(std::io::Error),
    /// `-ERR` with the server's words (`text`, verbatim after `-ERR `, response code
    /// included); `code` is the RFC 2449/3206 response code in brackets if any
    /// ("AUTH", "IN-USE", "SYS/TEMP", "SYS/PERM", "LOGIN-DELAY"), upper-cased.
    #[error("the server refused {command}: {}", words(text))]
    Err {
        command: String,
        code: Option<String>,
        text: String,
    },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The server sent more than a limit of [`crate::limits`] allows (the text
    /// names the limit); the session cannot go on.
    #[error("{0}")]
    Limit(String),
}

impl From<std::io::Error> for Pop3Error {
    fn from(e: std::io::Error) -> Self {
        Pop3Error::Io(e)
    }
}

fn words(text: &str) -> &str {
    if text.is_empty() {
        "(no reason given)"
    } else {
        text
    }
}

impl Pop3Error {
    /// How this failure may be retried, from the protocol (RFC 2449 / RFC 3206 codes).
    pub fn retry(&self) -> Retry {
        match self {
            Pop3Error::Io(_) | Pop3Error::Protocol(_) => Retry::Now,
            // The same server sends the same oversized answer again.
            Pop3Error::Limit(_) => Retry::Final,
            Pop3Error::Err { code, text, .. } => {
                let code = code.as_deref().unwrap_or("");
                let is = |c: &str| code == c || code.starts_with(&format!("{c}/"));
                let throttled = crate::throttle::from_words(Some(code), text).is_some();
                if throttled || is("IN-USE") || is("LOGIN-DELAY") || is("SYS/TEMP") {
                    Retry::Later
                } else {
                    Retry::Final
                }
            }
        }
    }

    /// A request to slow down in a `-ERR` (see [`crate::throttle`]).
    pub fn throttle(&self) -> Option<crate::throttle::Throttle> {
        match self {
            Pop3Error::Err { code, text, .. } => crate::throttle::from_words(code.as_deref(), text),
            _ => None,
        }
    }

    /// The response code of a `-ERR`, upper-cased.
    pub fn code(&self) -> Option<&str> {
        match self {
            Pop3Error::Err { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The server's own words for a refusal (for reports), or the error text.
    pub fn server_words(&self) -> String {
        match self {
            Pop3Error::Err { text, .. } => words(text).to_string(),
            other => other.to_string(),
        }
    }
}

/// The response code at the start of `-ERR` text: `[SYS/TEMP] busy` gives `SYS/TEMP`.
fn response_code(text: &str) -> Option<String> {
    let rest = text.strip_prefix('[')?;
    let end = rest.find(']')?;
    let code = &rest[..end];
    if code.is_empty() || code.contains(char::is_whitespace) {
        return None;
    }
    Some(code.to_ascii_uppercase())
}

/// The text of a command line as it may appear in the trace: the arguments of PASS
/// and AUTH are replaced, everything else is shown as is.
fn masked(line: &str) -> String {
    let upper = line.to_ascii_uppercase();
    if upper.starts_with("PASS ") || upper == "PASS" {
        "PASS <credentials masked>".to_string()
    } else if upper.starts_with("AUTH ") {
        let mut w = line.split(' ');
        let _auth = w.next();
        match w.next() {
            Some(mech) => format!("AUTH {mech} <credentials masked>"),
            None => "AUTH <credentials masked>".to_string(),
        }
    } else {
        line.to_string()
    }
}

/// Whether a line is a SASL continuation (`+ challenge` or a bare `+`).
fn is_continuation(line: &[u8]) -> bool {
    line.starts_with(b"+ ") || trim_eol(line) == b"+"
}

/// Undo dot-stuffing of one line of a multi-line answer. `None` for the terminator.
fn unstuff(line: &[u8]) -> Option<&[u8]> {
    match line {
        b".\r\n" | b".\n" => None,
        [b'.', b'.', ..] => Some(&line[1..]),
        _ => Some(line),
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_num<T: std::str::FromStr>(
    s: Option<&str>,
    what: &str,
    line: &str,
) -> Result<T, Pop3Error> {
    s.filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Pop3Error::Protocol(format!("bad {what} in {}", shown(line.as_bytes()))))
}

/// A message number of a LIST or UIDL line: 1 to 2^32-1 (RFC 1939 numbers from 1).
fn msg_number(s: Option<&str>, command: &str, line: &str) -> Result<u32, Pop3Error> {
    let digits = s.filter(|s| s.bytes().all(|c| c.is_ascii_digit()));
    match digits.and_then(|s| s.parse::<u32>().ok()) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(Pop3Error::Protocol(format!(
            "{command} gave the line {}, whose message number is not a number from 1 to {}",
            shown(line.as_bytes()),
            u32::MAX
        ))),
    }
}

/// The first message number listed twice in `numbers`, if any.
fn listed_twice(numbers: impl Iterator<Item = u32>) -> Option<u32> {
    let mut v: Vec<u32> = numbers.collect();
    v.sort_unstable();
    v.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Whether a message as RETR/TOP gave it agrees with the size LIST gave. Servers
/// count CRLF line endings; one that stores bare LF may send them unconverted (one
/// byte a line less), and a last line without its line ending gets one (two bytes
/// more). Anything beyond that is a message the server did not deliver as listed.
/// Whether a message is far from LIST's size: under half of it, or over twice it
/// and 1 KiB more. Not the message (a server's notice in its place), so not
/// copied. Estimated sizes (Exchange's) stay well within these bounds.
pub fn size_far_off(body: &[u8], listed_size: u64) -> bool {
    let len = body.len() as u64;
    !size_agrees(body, listed_size) && (len * 2 < listed_size || len > listed_size * 2 + 1024)
}

pub fn size_agrees(body: &[u8], listed_size: u64) -> bool {
    let len = body.len() as u64;
    let lines = memchr::memchr_iter(b'\n', body).count() as u64;
    len.abs_diff(listed_size) <= lines + 2
}

/// How much of a multi-line answer may arrive.
#[derive(Clone, Copy)]
struct Bounds {
    lines: usize,
    bytes: usize,
}

/// A message (RETR, TOP).
const MESSAGE: Bounds = Bounds {
    lines: usize::MAX,
    bytes: MAX_LITERAL,
};
/// A listing (LIST, UIDL).
const LISTING: Bounds = Bounds {
    lines: MAX_POP3_LIST_LINES,
    bytes: MAX_LITERAL,
};
/// A capability list: before login, so held to the pre-login size in all.
const CAPABILITIES: Bounds = Bounds {
    lines: MAX_POP3_LIST_LINES,
    bytes: MAX_LINE_PRE_LOGIN,
};

/// The budget of each command before [`Client::set_timeout`] sets `--timeout`'s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A status line: `+OK text` gives the text, `-ERR` an error for `command`.
fn parse_status(buf: &[u8], command: &str) -> Result<String, Pop3Error> {
    let line = String::from_utf8_lossy(trim_eol(buf)).into_owned();
    if let Some(rest) = line.strip_prefix("+OK") {
        if rest.is_empty() || rest.starts_with(' ') {
            return Ok(rest.trim_start().to_string());
        }
    }
    if let Some(rest) = line.strip_prefix("-ERR") {
        if rest.is_empty() || rest.starts_with(' ') {
            let text = rest.trim_start().to_string();
            return Err(Pop3Error::Err {
                command: command.to_string(),
                code: response_code(&text),
                text,
            });
        }
    }
    Err(Pop3Error::Protocol(format!(
        "expected +OK or -ERR for {command}, got {line:?}"
    )))
}

pub struct Client<S: Read + Write> {
    stream: BufReader<Paced<S>>,
    /// Logged in: lines may be up to `MAX_LINE` long from now on.
    logged_in: bool,
    /// The command being answered, for errors ("RETR 3", "the greeting").
    doing: String,
    /// Capability lines from the last CAPA; `None` when not asked yet (or reset by
    /// STLS). A server without CAPA gives an empty list.
    caps: Option<Vec<String>>,
    who: String,
    /// How TOP has fared in this session, for [`Client::peek`].
    top: TopState,
    /// [`Client::peek`] already warned that it fell back to RETR.
    warned_retr: bool,
    /// Bytes the next command is expected to read (a message's LIST size).
    expect_next: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TopState {
    Untried,
    Works,
    Refused,
}

/// Whether TOP's answer is the whole message LIST sized.
fn whole(body: &[u8], listed_size: u64) -> bool {
    let len = body.len() as u64;
    len == listed_size || (len == listed_size + 2 && body.ends_with(b"\r\n"))
}

/// Most commands of one pipelined window ([`Client::peek_many`]), and most bytes
/// (as LIST gave them) it asks for, beyond its first message: enough to keep a
/// link of 100 Mbit at 80 ms busy with small messages, little for the server to
/// have in flight.
pub const WINDOW: usize = 64;
pub const WINDOW_BYTES: u64 = 2 << 20;

/// Where the window starting at `at` ends (exclusive): at most [`WINDOW`]
/// messages, and no more than [`WINDOW_BYTES`] after the first.
fn window_end(msgs: &[(u32, u64)], at: usize) -> usize {
    let mut bytes = 0u64;
    let mut end = at;
    while end < msgs.len() && end - at < WINDOW {
        if end > at && bytes + msgs[end].1 > WINDOW_BYTES {
            break;
        }
        bytes += msgs[end].1;
        end += 1;
    }
    end
}

/// A line count no message reaches (a line is at least CRLF, so this is 2 GB of
/// empty lines), and one that 32-bit parsers of TOP's argument accept.
const WHOLE_MESSAGE_LINES: u32 = 1_000_000_000;

impl<S: Read + Write> Client<S> {
    /// Wrap a connected stream; `who` names it in traces ("source", "target").
    /// Each command has the time budget of a [`DEFAULT_TIMEOUT`] until
    /// [`Client::set_timeout`].
    pub fn new(stream: S, who: &str) -> Self {
        Client {
            stream: BufReader::with_capacity(64 * 1024, Paced::new(stream, DEFAULT_TIMEOUT)),
            logged_in: false,
            doing: "the greeting".to_string(),
            caps: None,
            who: who.to_string(),
            top: TopState::Untried,
            warned_retr: false,
            expect_next: 0,
        }
    }

    /// Each command from now on has the time budget of `timeout` (`--timeout`;
    /// see [`crate::limits::Paced`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.stream.get_mut().set_timeout(timeout);
    }

    /// Let the socket under TLS enforce each command's deadline.
    pub fn share_deadline(&mut self, d: std::sync::Arc<limits::Deadline>) {
        self.stream.get_mut().share(d);
    }

    pub fn get_mut(&mut self) -> &mut S {
        self.stream.get_mut().get_mut()
    }

    /// Give back the stream (for STLS). Only valid when nothing is buffered, which
    /// [`Client::stls`] checks.
    pub fn into_inner(self) -> S {
        self.stream.into_inner().into_inner()
    }

    /// An I/O error while answering the current command: a limit of ours is a
    /// [`Pop3Error::Limit`] naming the command.
    fn io_error(&self, e: std::io::Error) -> Pop3Error {
        if limits::is_limit(&e) {
            Pop3Error::Limit(format!("{}: {e}", self.doing))
        } else {
            Pop3Error::Io(e)
        }
    }

    /// The capability lines of the last CAPA (empty when not asked or not supported).
    pub fn capabilities(&self) -> &[String] {
        self.caps.as_deref().unwrap_or(&[])
    }

    /// Whether a capability is advertised. `name` is a capability word optionally
    /// followed by arguments that must all be listed on its line: "UIDL", "TOP",
    /// "STLS", "SASL PLAIN" (true for the line "SASL PLAIN LOGIN").
    pub fn has_cap(&self, name: &str) -> bool {
        let mut want = name.split_whitespace();
        let Some(first) = want.next() else {
            return false;
        };
        let want: Vec<&str> = want.collect();
        self.capabilities().iter().any(|line| {
            let mut have = line.split_whitespace();
            have.next().is_some_and(|c| c.eq_ignore_ascii_case(first)) && {
                let args: Vec<&str> = have.collect();
                want.iter()
                    .all(|w| args.iter().any(|a| a.eq_ignore_ascii_case(w)))
            }
        })
    }

    /// Read one line, with its line ending, at most `MAX_LINE_PRE_LOGIN` bytes
    /// before login and `MAX_LINE` after. EOF is an error.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<(), Pop3Error> {
        let max = if self.logged_in {
            MAX_LINE
        } else {
            MAX_LINE_PRE_LOGIN
        };
        let n = limits::read_line(&mut self.stream, buf, max).map_err(|e| self.io_error(e))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Err(Pop3Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        Ok(())
    }

    /// Read a status line: `+OK text` gives the text, `-ERR` an error for `command`.
    fn read_status(&mut self, command: &str) -> Result<String, Pop3Error> {
        let mut buf = Vec::new();
        self.read_line(&mut buf)?;
        log::trace(&self.who, "S:", &buf);
        parse_status(&buf, command)
    }

    /// Read the body of a multi-line answer, handing each unstuffed line (with its
    /// line ending) to `each`; the trace gets the number of lines and bytes only.
    /// More than `bounds` allows is a [`Pop3Error::Limit`].
    fn read_multi(
        &mut self,
        bounds: Bounds,
        mut each: impl FnMut(&[u8]) -> Result<(), Pop3Error>,
    ) -> Result<(), Pop3Error> {
        let mut buf = Vec::new();
        let (mut lines, mut bytes) = (0usize, 0usize);
        loop {
            self.read_line(&mut buf)?;
            match unstuff(&buf) {
                None => break,
                Some(line) => {
                    lines += 1;
                    bytes += line.len();
                    if lines > bounds.lines {
                        return Err(Pop3Error::Limit(format!(
                            "{}: the server's answer has more than {} lines (limit)",
                            self.doing, bounds.lines
                        )));
                    }
                    if bytes > bounds.bytes {
                        return Err(Pop3Error::Limit(format!(
                            "{}: the server's answer is longer than {} bytes (limit)",
                            self.doing, bounds.bytes
                        )));
                    }
                    each(line)?;
                }
            }
        }
        log::trace(
            &self.who,
            "S:",
            format!("<{lines} lines, {bytes} bytes>").as_bytes(),
        );
        Ok(())
    }

    /// Send one command line (CRLF added), masked in the trace.
    fn send(&mut self, line: &str) -> Result<(), Pop3Error> {
        if line.contains(['\r', '\n', '\0']) {
            return Err(Pop3Error::Protocol(format!(
                "refusing to send a command with a line break: {:?}",
                masked(line.split(['\r', '\n', '\0']).next().unwrap_or(""))
            )));
        }
        log::trace(&self.who, "C:", masked(line).as_bytes());
        // A fresh time budget for this command and its answer.
        self.doing = masked(line)
            .split(' ')
            .take(2)
            .filter(|w| *w != "<credentials")
            .collect::<Vec<_>>()
            .join(" ");
        let expected = std::mem::take(&mut self.expect_next);
        let s = self.stream.get_mut();
        s.begin();
        s.expect(expected);
        let mut out = Vec::with_capacity(line.len() + 2);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        s.write_all(&out)?;
        s.flush()?;
        Ok(())
    }

    /// Send one SASL response line (CRLF added): the trace shows only that
    /// credentials went, the time budget is the command's.
    fn send_secret(&mut self, line: &str) -> Result<(), Pop3Error> {
        if line.contains(['\r', '\n', '\0']) {
            return Err(Pop3Error::Protocol(
                "refusing to send a SASL response with a line break".into(),
            ));
        }
        log::trace(&self.who, "C:", b"<credentials masked>");
        let s = self.stream.get_mut();
        s.write_all(format!("{line}\r\n").as_bytes())?;
        s.flush()?;
        Ok(())
    }

    /// Send a command and read its status line; `name` names it in errors.
    fn simple(&mut self, name: &str, line: &str) -> Result<String, Pop3Error> {
        self.send(line)?;
        self.read_status(name)
    }

    /// Read the server greeting (`+OK text`).
    /// `UTF8` (RFC 6856), in the AUTHORIZATION state, before logging in.
    pub fn utf8(&mut self) -> Result<(), Pop3Error> {
        self.simple("UTF8", "UTF8").map(|_| ())
    }

    pub fn greeting(&mut self) -> Result<String, Pop3Error> {
        self.doing = "the greeting".to_string();
        self.stream.get_mut().begin();
        self.read_status("the greeting")
    }

    /// CAPA; a server without CAPA (`-ERR`) gives an empty list.
    pub fn capa(&mut self) -> Result<Vec<String>, Pop3Error> {
        let caps = match self.simple("CAPA", "CAPA") {
            Ok(_) => {
                let mut caps = Vec::new();
                let who = self.who.clone();
                self.read_multi(CAPABILITIES, |line| {
                    log::trace(&who, "S:", line);
                    let text = String::from_utf8_lossy(trim_eol(line)).trim().to_string();
                    if !text.is_empty() {
                        caps.push(text);
                    }
                    Ok(())
                })?;
                caps
            }
            Err(Pop3Error::Err { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        self.caps = Some(caps.clone());
        Ok(caps)
    }

    /// STLS; afterwards the caller wraps [`Client::into_inner`] in TLS, makes a new
    /// client and asks CAPA again.
    pub fn stls(&mut self) -> Result<(), Pop3Error> {
        self.simple("STLS", "STLS")?;
        self.caps = None;
        if !self.stream.buffer().is_empty() {
            return Err(Pop3Error::Protocol(
                "the server sent data before the TLS handshake; refusing to go on".into(),
            ));
        }
        Ok(())
    }

    /// Log in with the mailbox's password: AUTH PLAIN with an initial response when
    /// the server advertises "SASL PLAIN", USER/PASS otherwise. Asks CAPA first if
    /// not done yet.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), Pop3Error> {
        self.authenticate(user, &Login::Password(password))
    }

    /// Log in to the mailbox `user`: with its password (see [`Client::login`]), as
    /// an administrator (AUTH PLAIN, authzid = `user`), or with an OAuth2 token
    /// (AUTH XOAUTH2 where offered, else OAUTHBEARER; the response on its own line
    /// after the command, as Microsoft requires). A mechanism the server does not
    /// announce is refused before anything is sent.
    pub fn authenticate(&mut self, user: &str, login: &Login<'_>) -> Result<(), Pop3Error> {
        self.authenticate_as(user, login, None)
    }

    /// [`Client::authenticate`] with the mechanism `forced` (an endpoint's
    /// `;AUTH=NAME`) instead of the usual choice ([`sasl::choose`]).
    pub fn authenticate_as(
        &mut self,
        user: &str,
        login: &Login<'_>,
        forced: Option<Mech>,
    ) -> Result<(), Pop3Error> {
        if self.caps.is_none() {
            self.capa()?;
        }
        let way = sasl::choose(login, forced, |m| self.has_cap(&format!("SASL {m}")), true)
            .map_err(Pop3Error::Protocol)?;
        match (way, login) {
            (sasl::Way::Command, Login::Password(password)) => {
                self.simple("USER", &format!("USER {user}"))?;
                self.simple("PASS", &format!("PASS {password}"))?;
            }
            (sasl::Way::Command, _) => unreachable!("only a password goes by USER/PASS"),
            (sasl::Way::Sasl(Mech::Plain), _) => {
                let response = sasl::initial_response(Mech::Plain, user, login);
                self.send(&format!("AUTH PLAIN {response}"))?;
                let mut buf = Vec::new();
                self.read_line(&mut buf)?;
                log::trace(&self.who, "S:", &buf);
                if is_continuation(&buf) {
                    // A continuation although the initial response was given: cancel.
                    self.send("*")?;
                    let _ = self.read_status("AUTH");
                    return Err(Pop3Error::Protocol(
                        "the server asked for more after AUTH PLAIN with an initial response"
                            .into(),
                    ));
                }
                parse_status(&buf, "AUTH PLAIN")?;
            }
            (sasl::Way::Sasl(mech), _) => {
                let name = mech.name();
                let command = format!("AUTH {name}");
                self.send(&command)?;
                let mut pending = Some(sasl::initial_response(mech, user, login));
                let mut aborted = false;
                loop {
                    let mut buf = Vec::new();
                    self.read_line(&mut buf)?;
                    log::trace(&self.who, "S:", &buf);
                    if !is_continuation(&buf) {
                        parse_status(&buf, &command)?;
                        break;
                    }
                    let reply = match pending.take() {
                        Some(r) => r,
                        None if !aborted => {
                            aborted = true;
                            mech.abort_line().to_string()
                        }
                        None => {
                            return Err(Pop3Error::Protocol(format!(
                            "{command}: the server asked for more after the exchange was aborted"
                        )))
                        }
                    };
                    self.send_secret(&reply)?;
                }
            }
        }
        self.logged_in = true;
        Ok(())
    }

    /// STAT: number of messages and total size in octets.
    pub fn stat(&mut self) -> Result<(u32, u64), Pop3Error> {
        let text = self.simple("STAT", "STAT")?;
        let mut w = text.split_whitespace();
        let count = parse_num(w.next(), "message count", &text)?;
        let size = parse_num(w.next(), "size", &text)?;
        Ok((count, size))
    }

    /// LIST: message number and size in octets of every message. A number that is
    /// not one (0, negative, over 32 bits) or one listed twice is a protocol error.
    pub fn list(&mut self) -> Result<Vec<(u32, u64)>, Pop3Error> {
        self.simple("LIST", "LIST")?;
        let mut out = Vec::new();
        self.read_multi(LISTING, |line| {
            let text = String::from_utf8_lossy(trim_eol(line));
            let mut w = text.split_whitespace();
            let n = msg_number(w.next(), "LIST", &text)?;
            let size = parse_num(w.next(), "size", &text)?;
            out.push((n, size));
            Ok(())
        })?;
        if let Some(n) = listed_twice(out.iter().map(|&(n, _)| n)) {
            return Err(Pop3Error::Protocol(format!("LIST names message {n} twice")));
        }
        Ok(out)
    }

    /// UIDL: message number and unique id of every message; `None` when the server
    /// answers `-ERR` (no UIDL support).
    pub fn uidl(&mut self) -> Result<Option<Vec<(u32, String)>>, Pop3Error> {
        match self.simple("UIDL", "UIDL") {
            Ok(_) => {}
            Err(Pop3Error::Err { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut out = Vec::new();
        self.read_multi(LISTING, |line| {
            let text = String::from_utf8_lossy(trim_eol(line));
            let mut w = text.split_whitespace();
            let n = msg_number(w.next(), "UIDL", &text)?;
            let uid = w.next().ok_or_else(|| {
                Pop3Error::Protocol(format!("no unique id in {}", shown(text.as_bytes())))
            })?;
            out.push((n, uid.to_string()));
            Ok(())
        })?;
        if let Some(n) = listed_twice(out.iter().map(|(n, _)| *n)) {
            return Err(Pop3Error::Protocol(format!("UIDL names message {n} twice")));
        }
        Ok(Some(out))
    }

    fn fetch(&mut self, name: &str, line: &str) -> Result<Vec<u8>, Pop3Error> {
        self.simple(name, line)?;
        let mut out = Vec::new();
        self.read_multi(MESSAGE, |l| {
            out.extend_from_slice(l);
            Ok(())
        })?;
        Ok(out)
    }

    /// RETR: the whole message, byte-exact (see the module invariants).
    pub fn retr(&mut self, n: u32) -> Result<Vec<u8>, Pop3Error> {
        self.fetch("RETR", &format!("RETR {n}"))
    }

    /// TOP: the header, the empty line and the first `lines` body lines.
    pub fn top(&mut self, n: u32, lines: u32) -> Result<Vec<u8>, Pop3Error> {
        self.fetch("TOP", &format!("TOP {n} {lines}"))
    }

    /// One whole message (`listed_size`: its size from LIST), leaving it unread
    /// where the server allows. RETR makes servers such as Dovecot mark the message
    /// read (\Seen, visible over IMAP) at the next QUIT; TOP with more lines than
    /// any message has returns the same bytes without that. So TOP, when the server
    /// advertises it, and its answer is taken only when it has exactly the size
    /// LIST gave (or two bytes more ending in CRLF: a last line without its line
    /// ending gets one); otherwise RETR for that message. A server that refuses
    /// the first TOP gets RETR for the rest of the session. Falling back to RETR
    /// is said once per session, since it may mark messages read.
    pub fn peek(&mut self, n: u32, listed_size: u64) -> Result<Vec<u8>, Pop3Error> {
        if self.top != TopState::Refused && self.has_cap("TOP") {
            self.expect_next = listed_size;
            match self.top(n, WHOLE_MESSAGE_LINES) {
                Ok(body) if whole(&body, listed_size) => {
                    self.top = TopState::Works;
                    return Ok(body);
                }
                Ok(body) => self.retr_instead(&format!(
                    "message {n}: TOP gave {} bytes where LIST said {listed_size}",
                    body.len()
                )),
                Err(e @ Pop3Error::Err { .. }) => {
                    if self.top == TopState::Untried {
                        self.top = TopState::Refused;
                    }
                    self.retr_instead(&e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        self.expect_next = listed_size;
        self.retr(n)
    }

    /// Whole messages (number, size from LIST), each handed to `each` in order
    /// with its index in `msgs`, as [`Client::peek`] fetches them. A server that
    /// announces PIPELINING (RFC 2449) gets the commands of a window (at most
    /// [`WINDOW`] messages or [`WINDOW_BYTES`] listed bytes) in one write and
    /// answers them in order, so a window costs one round trip instead of one
    /// per message; a TOP answer that is not the whole message is fetched again
    /// with RETR once its window is read. Without PIPELINING, or before TOP is
    /// known to work, one command at a time. A `-ERR` for a message is returned
    /// after its window is read, so the session stays in step.
    pub fn peek_many(
        &mut self,
        msgs: &[(u32, u64)],
        each: &mut dyn FnMut(usize, Vec<u8>),
    ) -> Result<(), Pop3Error> {
        let mut at = 0;
        while at < msgs.len() {
            let top = self.top == TopState::Works && self.has_cap("TOP");
            let known = top || self.top == TopState::Refused || !self.has_cap("TOP");
            if !self.has_cap("PIPELINING") || !known {
                let (n, size) = msgs[at];
                each(at, self.peek(n, size)?);
                at += 1;
                continue;
            }
            let end = window_end(msgs, at);
            self.pipelined(&msgs[at..end], top, &mut |i, body| each(at + i, body))?;
            at = end;
        }
        Ok(())
    }

    /// One window of [`Client::peek_many`]: every command written at once, the
    /// answers read in order.
    fn pipelined(
        &mut self,
        msgs: &[(u32, u64)],
        top: bool,
        each: &mut dyn FnMut(usize, Vec<u8>),
    ) -> Result<(), Pop3Error> {
        let command = |n: u32| match top {
            true => format!("TOP {n} {WHOLE_MESSAGE_LINES}"),
            false => format!("RETR {n}"),
        };
        let mut out = Vec::new();
        for &(n, _) in msgs {
            let line = command(n);
            log::trace(&self.who, "C:", line.as_bytes());
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let s = self.stream.get_mut();
        // One time budget for the window, paced by what it should bring.
        s.begin();
        s.expect(msgs.iter().map(|m| m.1).sum());
        s.write_all(&out)?;
        s.flush()?;
        let (mut again, mut first_err) = (Vec::new(), None);
        for (i, &(n, size)) in msgs.iter().enumerate() {
            self.doing = command(n).split(' ').take(2).collect::<Vec<_>>().join(" ");
            let name = if top { "TOP" } else { "RETR" };
            let body = match self.read_status(name) {
                Ok(_) => {
                    let mut body = Vec::new();
                    self.read_multi(MESSAGE, |l| {
                        body.extend_from_slice(l);
                        Ok(())
                    })?;
                    body
                }
                Err(e @ Pop3Error::Err { .. }) if top => {
                    self.retr_instead(&e.to_string());
                    again.push(i);
                    continue;
                }
                Err(e @ Pop3Error::Err { .. }) => {
                    first_err.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if top && !whole(&body, size) {
                self.retr_instead(&format!(
                    "message {n}: TOP gave {} bytes where LIST said {size}",
                    body.len()
                ));
                again.push(i);
                continue;
            }
            if first_err.is_none() {
                each(i, body);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        for i in again {
            let (n, size) = msgs[i];
            self.expect_next = size;
            each(i, self.retr(n)?);
        }
        Ok(())
    }

    fn retr_instead(&mut self, why: &str) {
        if !self.warned_retr {
            self.warned_retr = true;
            log::warn(format!(
                "{}: {why}; fetching with RETR instead, which may mark messages read on this server (said once)",
                self.who
            ));
        }
    }

    /// DELE: mark a message deleted; only QUIT makes it so.
    pub fn dele(&mut self, n: u32) -> Result<(), Pop3Error> {
        self.simple("DELE", &format!("DELE {n}")).map(|_| ())
    }

    /// QUIT: ends the session and commits deletions; `-ERR` means some failed.
    pub fn quit(&mut self) -> Result<(), Pop3Error> {
        self.simple("QUIT", "QUIT").map(|_| ())
    }
}

pub type Session = Client<Stream>;

/// Connect, secure (implicit TLS or STLS) and log in with the mailbox's password.
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
    let mut client = connector::connect(server, opts, &Pop3 { server, opts, who })?;
    // RFC 6856: a server that offers UTF8 may serve messages with raw UTF-8 in
    // their headers only once it is enabled (Courier serves a notice instead).
    if client.has_cap("UTF8") {
        if let Err(e) = client.utf8() {
            log::warn(format!(
                "{server}: the server offers UTF8 but refused it: {e}"
            ));
        }
    }
    credentials
        .with_login(&server.user, opts, |login| {
            client.authenticate_as(&server.user, login, server.mech)
        })?
        .map_err(|e| login_error(server, credentials, e))?;
    Ok(client)
}

/// POP3's part of the connector ([`crate::net::connect`]): its greeting and
/// CAPA, and `STLS`.
struct Pop3<'a> {
    server: &'a Server,
    opts: &'a NetOptions,
    who: &'a str,
}

impl Handshake for Pop3<'_> {
    type Client = Session;

    /// A client on the stream, held to --timeout and to each command's deadline
    /// (enforced on the socket, under TLS too).
    fn client(&self, stream: Stream) -> Session {
        let deadline = stream.deadline();
        let mut c = Client::new(stream, self.who);
        c.set_timeout(self.opts.timeout);
        c.share_deadline(deadline);
        c
    }

    fn greet(&self, c: &mut Session) -> anyhow::Result<()> {
        c.greeting()
            .map_err(|e| greeting_error(self.server, self.opts, e))?;
        c.capa().map_err(|e| command_failed(self.server, e))?;
        Ok(())
    }

    fn offers_upgrade(&self, c: &Session) -> bool {
        c.has_cap("STLS")
    }

    fn upgrade(&self, mut c: Session) -> anyhow::Result<Stream> {
        c.stls().map_err(|e| command_failed(self.server, e))?;
        Ok(c.into_inner())
    }

    fn upgraded(&self, c: &mut Session) -> anyhow::Result<()> {
        c.capa().map_err(|e| command_failed(self.server, e))?;
        Ok(())
    }
}

/// The error for a greeting that did not come: refused, too long, or none in time
/// (the port is likely not a POP3 port, or a TLS-only one).
fn greeting_error(server: &Server, opts: &NetOptions, e: Pop3Error) -> anyhow::Error {
    match e {
        Pop3Error::Err { .. } => connect_with(
            format!("{server} refused the connection: {}", e.server_words()),
            e.retry(),
        ),
        Pop3Error::Limit(_) => connect_final(format!("{server}: {e}")),
        Pop3Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            connect_final(format!(
                "{server}: no POP3 greeting within {}s; check that port {} is a POP3 port (995 for pop3s://, 110 for pop3://); a pop3:// endpoint on a TLS-only port waits like this",
                opts.timeout.as_secs(),
                server.port
            ))
        }
        e => connect_final(format!(
            "{server}: no POP3 greeting ({e}); check that port {} is a POP3 port (995 for pop3s://, 110 for pop3://)",
            server.port
        )),
    }
}

/// The error for a command that failed before the login (CAPA, STLS).
fn command_failed(server: &Server, e: Pop3Error) -> anyhow::Error {
    match e {
        Pop3Error::Limit(_) => connect_final(format!("{server}: {e}")),
        e => connect(format!("{server}: {e}")),
    }
}

fn login_error(server: &Server, credentials: &Credentials, e: Pop3Error) -> anyhow::Error {
    // A refused token that came from the cache may have expired early (or been
    // revoked): dropped, and the run reconnects at once with a fresh one.
    let stale = credentials.refused(&server.user);
    match &e {
        Pop3Error::Err { .. } => connect_with(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::client::base64;
    use std::io::Cursor;

    /// A replayed server: reads come from the transcript, writes are recorded.
    struct Replay {
        input: Cursor<Vec<u8>>,
        written: Vec<u8>,
        /// How long each read takes (a slow server).
        delay: Duration,
        /// At each read, how many lines had been written.
        seen: Vec<usize>,
    }
    impl Read for Replay {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.delay);
            let lines = self.written.iter().filter(|&&c| c == b'\n').count();
            self.seen.push(lines);
            // Small reads, so no answer arrives in one piece.
            let n = buf.len().min(7);
            self.input.read(&mut buf[..n])
        }
    }
    impl Write for Replay {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    fn replay_bytes(server: &[u8]) -> Client<Replay> {
        Client::new(
            Replay {
                input: Cursor::new(server.to_vec()),
                written: Vec::new(),
                delay: Duration::ZERO,
                seen: Vec::new(),
            },
            "test",
        )
    }
    /// A replayed server whose every read (of 7 bytes at most) takes `delay`,
    /// each command with the budget of `timeout`.
    fn replay_slow(server: &[u8], delay: Duration, timeout: Duration) -> Client<Replay> {
        let mut c = Client::new(
            Replay {
                input: Cursor::new(server.to_vec()),
                written: Vec::new(),
                delay,
                seen: Vec::new(),
            },
            "test",
        );
        c.set_timeout(timeout);
        c
    }
    fn replay(server: &str) -> Client<Replay> {
        replay_bytes(server.as_bytes())
    }
    fn written(c: &mut Client<Replay>) -> String {
        String::from_utf8(c.get_mut().written.clone()).unwrap()
    }

    const DOVECOT_CAPA: &str = concat!(
        "+OK\r\n",
        "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n",
        "STLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n",
    );

    #[test]
    fn peek_many_pipelines_a_window_where_the_server_allows() {
        let msg = |i: usize| format!("Subject: {i}\r\n\r\nbody {i}\r\n");
        let n = msg(1).len() as u64;
        let four = [(1, n), (2, n), (3, n), (4, n)];
        let answers: String = (1..=4).map(|i| format!("+OK\r\n{}.\r\n", msg(i))).collect();
        let want: Vec<(usize, Vec<u8>)> = (0..4).map(|i| (i, msg(i + 1).into_bytes())).collect();
        let top = |i: usize| format!("TOP {i} 1000000000\r\n");
        // PIPELINING: the first message alone (is TOP whole here?), then the other
        // three written at once before any answer is read.
        let mut c = replay(&format!("{DOVECOT_CAPA}{answers}"));
        c.capa().unwrap();
        let mut got = Vec::new();
        c.peek_many(&four, &mut |i, b| got.push((i, b))).unwrap();
        assert_eq!(got, want);
        let all: String = (1..=4).map(top).collect();
        assert_eq!(written(&mut c), format!("CAPA\r\n{all}"));
        let seen = c.get_mut().seen.clone();
        // Lines written at each read: CAPA (1), TOP 1 (2), then all five.
        assert!(seen.iter().all(|&l| l <= 2 || l == 5), "{seen:?}");
        assert!(seen.contains(&5), "{seen:?}");
        // Without PIPELINING: one command, one answer.
        let capa = DOVECOT_CAPA.replace("PIPELINING\r\n", "");
        let mut c = replay(&format!("{capa}{answers}"));
        c.capa().unwrap();
        let mut got = Vec::new();
        c.peek_many(&four, &mut |i, b| got.push((i, b))).unwrap();
        assert_eq!(got, want);
        let seen = c.get_mut().seen.clone();
        assert!((1..=5).all(|l| seen.contains(&l)), "{seen:?}");
        // A TOP answer in a window that is not the whole message: RETR for it once
        // the window is read, every message handed over in order.
        let short = "+OK\r\nSubject: 3\r\n\r\n.\r\n";
        let mut c = replay(&format!(
            "{DOVECOT_CAPA}+OK\r\n{}.\r\n+OK\r\n{}.\r\n{short}+OK\r\n{}.\r\n+OK\r\n{}.\r\n",
            msg(1),
            msg(2),
            msg(4),
            msg(3)
        ));
        c.capa().unwrap();
        let mut got = Vec::new();
        c.peek_many(&four, &mut |i, b| got.push((i, b))).unwrap();
        got.sort();
        assert_eq!(got, want);
        assert!(written(&mut c).ends_with(&format!("{}{}{}RETR 3\r\n", top(2), top(3), top(4))));
        // RETR only (TOP not offered): a -ERR in a window is returned once the
        // window is read, nothing after it is handed over, and the session stays
        // in step (the next command reads its own answer).
        let mut c = replay(&format!(
            "+OK\r\nPIPELINING\r\n.\r\n+OK\r\n{}.\r\n-ERR gone\r\n+OK\r\n{}.\r\n+OK\r\n{}.\r\n+OK deleted\r\n",
            msg(1),
            msg(3),
            msg(4)
        ));
        c.capa().unwrap();
        let mut got = Vec::new();
        let e = c
            .peek_many(&four, &mut |i, b| got.push((i, b)))
            .unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
        assert_eq!(got, want[..1].to_vec());
        c.dele(1).unwrap();
    }

    #[test]
    fn window_end_table() {
        // (sizes, from) -> end
        let table: &[(&[u64], usize, usize)] = &[
            (&[], 0, 0),
            (&[10, 10, 10], 0, 3),
            (&[10, 10, 10], 2, 3),
            // A message over the byte cap still goes, alone, first in its window.
            (&[WINDOW_BYTES * 3, 10], 0, 1),
            (&[10, WINDOW_BYTES, 10], 0, 1),
            (&[WINDOW_BYTES / 2, WINDOW_BYTES / 2, 1], 0, 2),
        ];
        for &(sizes, at, want) in table {
            let msgs: Vec<(u32, u64)> = sizes.iter().map(|&s| (1, s)).collect();
            assert_eq!(window_end(&msgs, at), want, "{sizes:?} from {at}");
        }
        let many = vec![(1u32, 10u64); WINDOW * 2 + 1];
        assert_eq!(window_end(&many, 0), WINDOW);
        assert_eq!(window_end(&many, WINDOW * 2), WINDOW * 2 + 1);
    }

    #[test]
    fn peek_uses_top_where_it_returns_the_whole_message() {
        let msg = "Subject: a\r\n\r\nbody\r\n";
        // TOP advertised and complete: no RETR.
        let mut c = replay(&format!("{DOVECOT_CAPA}+OK\r\n{msg}.\r\n"));
        c.capa().unwrap();
        assert_eq!(c.peek(1, msg.len() as u64).unwrap(), msg.as_bytes());
        assert!(written(&mut c).ends_with("TOP 1 1000000000\r\n"));
        // TOP shorter than LIST said (a capped line count): RETR for that message.
        let mut c = replay(&format!(
            "{DOVECOT_CAPA}+OK\r\nSubject: a\r\n\r\n.\r\n+OK\r\n{msg}.\r\n"
        ));
        c.capa().unwrap();
        assert_eq!(c.peek(2, msg.len() as u64).unwrap(), msg.as_bytes());
        assert!(written(&mut c).ends_with("TOP 2 1000000000\r\nRETR 2\r\n"));
        // TOP longer than LIST said (a server that adds bytes): RETR.
        let mut c = replay(&format!(
            "{DOVECOT_CAPA}+OK\r\nX-Added: 1\r\n{msg}.\r\n+OK\r\n{msg}.\r\n"
        ));
        c.capa().unwrap();
        assert_eq!(c.peek(2, msg.len() as u64).unwrap(), msg.as_bytes());
        assert!(written(&mut c).ends_with("TOP 2 1000000000\r\nRETR 2\r\n"));
        // Two bytes more ending in CRLF: the line ending POP3 adds to a last line.
        let mut c = replay(&format!("{DOVECOT_CAPA}+OK\r\n{msg}.\r\n"));
        c.capa().unwrap();
        assert_eq!(c.peek(1, msg.len() as u64 - 2).unwrap(), msg.as_bytes());
        // The first TOP refused: RETR, and RETR only from then on.
        let mut c = replay(&format!(
            "{DOVECOT_CAPA}-ERR no such command\r\n+OK\r\n{msg}.\r\n+OK\r\n{msg}.\r\n"
        ));
        c.capa().unwrap();
        let n = msg.len() as u64;
        assert_eq!(c.peek(1, n).unwrap(), msg.as_bytes());
        assert_eq!(c.peek(2, n).unwrap(), msg.as_bytes());
        assert!(written(&mut c).ends_with("TOP 1 1000000000\r\nRETR 1\r\nRETR 2\r\n"));
        // A later TOP refused (one message gone): RETR for that one, TOP again next.
        let mut c = replay(&format!(
            "{DOVECOT_CAPA}+OK\r\n{msg}.\r\n-ERR no such message\r\n-ERR no such message\r\n+OK\r\n{msg}.\r\n"
        ));
        c.capa().unwrap();
        assert_eq!(c.peek(1, n).unwrap(), msg.as_bytes());
        assert!(c.peek(2, n).is_err());
        assert_eq!(c.peek(3, n).unwrap(), msg.as_bytes());
        assert!(written(&mut c)
            .ends_with("TOP 1 1000000000\r\nTOP 2 1000000000\r\nRETR 2\r\nTOP 3 1000000000\r\n"));
        // Not advertised: RETR.
        let mut c = replay(&format!("+OK\r\nUIDL\r\n.\r\n+OK\r\n{msg}.\r\n"));
        c.capa().unwrap();
        assert_eq!(c.peek(3, 5).unwrap(), msg.as_bytes());
        assert_eq!(written(&mut c), "CAPA\r\nRETR 3\r\n");
    }

    #[test]
    fn greeting_capa_and_auth_plain() {
        let mut c = replay(&format!(
            "+OK Dovecot (Debian) ready.\r\n{DOVECOT_CAPA}+OK Logged in.\r\n"
        ));
        assert_eq!(c.greeting().unwrap(), "Dovecot (Debian) ready.");
        let caps = c.capa().unwrap();
        assert_eq!(caps.len(), 9);
        assert_eq!(caps[8], "SASL PLAIN LOGIN");
        for cap in ["UIDL", "TOP", "STLS", "SASL PLAIN", "sasl login", "SASL"] {
            assert!(c.has_cap(cap), "{cap}");
        }
        for cap in ["SASL CRAM-MD5", "EXPIRE", "SASL PLAIN XOAUTH2", ""] {
            assert!(!c.has_cap(cap), "{cap}");
        }
        c.login("a@b.ch", "pw").unwrap();
        assert_eq!(
            written(&mut c),
            format!("CAPA\r\nAUTH PLAIN {}\r\n", base64(b"\0a@b.ch\0pw"))
        );
    }

    const OAUTH_CAPA: &str =
        "+OK\r\nCAPA\r\nUIDL\r\nUSER\r\nSASL PLAIN XOAUTH2 OAUTHBEARER\r\n.\r\n";

    #[test]
    fn admin_login_sends_plain_with_the_mailbox_as_authzid() {
        let mut c = replay(&format!("+OK ready\r\n{DOVECOT_CAPA}+OK Logged in.\r\n"));
        c.greeting().unwrap();
        let login = Login::Admin {
            admin: "admin",
            password: "s3cret",
        };
        c.authenticate("anna@x.ch", &login).unwrap();
        assert_eq!(
            written(&mut c),
            format!(
                "CAPA\r\nAUTH PLAIN {}\r\n",
                base64(b"anna@x.ch\0admin\0s3cret")
            )
        );
    }

    #[test]
    fn admin_login_needs_sasl_plain_and_sends_nothing_without_it() {
        let mut c = replay("+OK ready\r\n+OK\r\nUSER\r\n.\r\n");
        c.greeting().unwrap();
        c.capa().unwrap();
        let before = written(&mut c);
        let login = Login::Admin {
            admin: "admin",
            password: "s3cret",
        };
        let err = c.authenticate("anna@x.ch", &login).unwrap_err();
        assert!(err.to_string().contains("SASL PLAIN"), "{err}");
        assert_eq!(written(&mut c), before);
    }

    #[test]
    fn a_token_goes_on_its_own_line_after_auth_xoauth2() {
        let mut c = replay(&format!(
            "+OK ready\r\n{OAUTH_CAPA}+ \r\n+OK Logged in.\r\n"
        ));
        c.greeting().unwrap();
        c.authenticate("anna@x.ch", &Login::Bearer("tok")).unwrap();
        assert_eq!(
            written(&mut c),
            format!(
                "CAPA\r\nAUTH XOAUTH2\r\n{}\r\n",
                base64(b"user=anna@x.ch\x01auth=Bearer tok\x01\x01")
            )
        );
    }

    #[test]
    fn a_token_goes_with_oauthbearer_when_only_it_is_offered() {
        let mut c =
            replay("+OK ready\r\n+OK\r\nUIDL\r\nSASL OAUTHBEARER\r\n.\r\n+\r\n+OK Logged in.\r\n");
        c.greeting().unwrap();
        c.authenticate("anna@x.ch", &Login::Bearer("tok")).unwrap();
        assert_eq!(
            written(&mut c),
            format!(
                "CAPA\r\nAUTH OAUTHBEARER\r\n{}\r\n",
                base64(b"n,a=anna@x.ch,\x01auth=Bearer tok\x01\x01")
            )
        );
    }

    #[test]
    fn a_refused_token_is_acknowledged_and_keeps_the_server_words() {
        let mut c = replay(&format!(
            "+OK ready\r\n{OAUTH_CAPA}+ \r\n+ eyJzdGF0dXMiOiI0MDEifQ==\r\n-ERR [AUTH] AccessTokenExpired\r\n"
        ));
        c.greeting().unwrap();
        let err = c
            .authenticate("anna@x.ch", &Login::Bearer("tok"))
            .unwrap_err();
        assert_eq!(err.retry(), Retry::Final);
        assert!(err.to_string().contains("AccessTokenExpired"), "{err}");
        assert!(
            written(&mut c).ends_with("\r\n\r\n"),
            "an empty line aborts"
        );
    }

    #[test]
    fn a_token_needs_a_bearer_mechanism_and_sends_nothing_without_it() {
        let mut c = replay(&format!("+OK ready\r\n{DOVECOT_CAPA}"));
        c.greeting().unwrap();
        c.capa().unwrap();
        let err = c
            .authenticate("anna@x.ch", &Login::Bearer("tok"))
            .unwrap_err();
        assert!(err.to_string().contains("XOAUTH2"), "{err}");
        assert_eq!(written(&mut c), "CAPA\r\n");
    }

    #[test]
    fn user_pass_without_sasl_plain() {
        let mut c = replay(concat!(
            "+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n",
            "+OK Capability list follows\r\nTOP\r\nUSER\r\nSASL CRAM-MD5\r\nUIDL\r\n.\r\n",
            "+OK\r\n",
            "+OK maildrop locked and ready\r\n",
        ));
        c.greeting().unwrap();
        c.capa().unwrap();
        assert!(!c.has_cap("SASL PLAIN"));
        c.login("bob", "p w").unwrap();
        assert_eq!(written(&mut c), "CAPA\r\nUSER bob\r\nPASS p w\r\n");
    }

    #[test]
    fn no_capa_support_means_user_pass() {
        let mut c = replay(concat!(
            "+OK ready\r\n",
            "-ERR unknown command\r\n",
            "+OK\r\n",
            "+OK\r\n",
        ));
        c.greeting().unwrap();
        // login asks CAPA itself when not done yet.
        c.login("bob", "pw").unwrap();
        assert!(c.capabilities().is_empty());
        assert_eq!(written(&mut c), "CAPA\r\nUSER bob\r\nPASS pw\r\n");
    }

    #[test]
    fn login_failure_keeps_server_words() {
        let mut c = replay(&format!(
            "+OK ready\r\n{DOVECOT_CAPA}-ERR [AUTH] Authentication failed.\r\n"
        ));
        c.greeting().unwrap();
        c.capa().unwrap();
        let err = c.login("a@b.ch", "secret").unwrap_err();
        match &err {
            Pop3Error::Err {
                command,
                code,
                text,
            } => {
                assert_eq!(command, "AUTH PLAIN");
                assert_eq!(code.as_deref(), Some("AUTH"));
                assert_eq!(text, "[AUTH] Authentication failed.");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.retry(), Retry::Final);
        assert_eq!(err.server_words(), "[AUTH] Authentication failed.");
        assert!(err.to_string().contains("[AUTH] Authentication failed."));
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn pass_failure_after_user() {
        let mut c = replay(concat!(
            "+OK ready\r\n",
            "+OK\r\nUSER\r\n.\r\n",
            "+OK\r\n",
            "-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n",
        ));
        c.greeting().unwrap();
        let err = c.login("bob", "pw").unwrap_err();
        assert!(matches!(&err, Pop3Error::Err { command, .. } if command == "PASS"));
        assert_eq!(err.retry(), Retry::Later);
    }

    #[test]
    fn retry_classification() {
        let err = |text: &str| Pop3Error::Err {
            command: "X".into(),
            code: response_code(text),
            text: text.into(),
        };
        assert_eq!(err("[IN-USE] locked").retry(), Retry::Later);
        assert_eq!(err("[LOGIN-DELAY] wait").retry(), Retry::Later);
        assert_eq!(err("[SYS/TEMP] busy").retry(), Retry::Later);
        assert_eq!(err("[sys/temp] busy").retry(), Retry::Later);
        assert_eq!(err("[SYS/PERM] broken").retry(), Retry::Final);
        assert_eq!(err("[AUTH] bad").retry(), Retry::Final);
        assert_eq!(err("no such message").retry(), Retry::Final);
        assert_eq!(err("[ not a code").code(), None);
        assert_eq!(Pop3Error::Protocol("x".into()).retry(), Retry::Now);
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "t");
        assert_eq!(Pop3Error::from(io).retry(), Retry::Now);
    }

    #[test]
    fn uidl_parsing() {
        let mut c = replay(concat!(
            "+OK\r\n",
            "1 000000017a8b2c3d\r\n",
            "2 QhdPYR:00WBw1Ph7x7\r\n",
            "10 whqtswO00WBw418f9t5JxYwZ\r\n",
            ".\r\n",
        ));
        let ids = c.uidl().unwrap().unwrap();
        assert_eq!(
            ids,
            vec![
                (1, "000000017a8b2c3d".to_string()),
                (2, "QhdPYR:00WBw1Ph7x7".to_string()),
                (10, "whqtswO00WBw418f9t5JxYwZ".to_string()),
            ]
        );
        assert_eq!(written(&mut c), "UIDL\r\n");
    }

    #[test]
    fn uidl_err_is_none() {
        let mut c = replay("-ERR Unknown command.\r\n");
        assert_eq!(c.uidl().unwrap(), None);
    }

    #[test]
    fn retr_is_byte_exact() {
        let mut wire = b"+OK 97 octets\r\n".to_vec();
        wire.extend_from_slice(b"Subject: caf\xc3\xa9 \xe9\r\n");
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(b"..From the start\r\n");
        wire.extend_from_slice(b"..\r\n");
        wire.extend_from_slice(b"...\r\n");
        wire.extend_from_slice(b"..hidden\r\n");
        wire.extend_from_slice(b".sloppy, not stuffed\r\n");
        wire.extend_from_slice(b"bare lf\n");
        wire.extend_from_slice(b"\x00\xff 8-bit\r\n");
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(b".\r\n");
        wire.extend_from_slice(b"+OK 0 0\r\n");
        let mut c = replay_bytes(&wire);
        let msg = c.retr(3).unwrap();
        let mut want = b"Subject: caf\xc3\xa9 \xe9\r\n\r\n".to_vec();
        want.extend_from_slice(b".From the start\r\n.\r\n..\r\n.hidden\r\n");
        want.extend_from_slice(b".sloppy, not stuffed\r\nbare lf\n\x00\xff 8-bit\r\n\r\n");
        assert_eq!(msg, want);
        // The terminator was consumed exactly: the next answer parses.
        assert_eq!(c.stat().unwrap(), (0, 0));
        assert_eq!(written(&mut c), "RETR 3\r\nSTAT\r\n");
    }

    #[test]
    fn retr_accepts_bare_lf_terminator() {
        let mut c = replay("+OK\nline one\nline two\n.\n");
        assert_eq!(c.retr(1).unwrap(), b"line one\nline two\n");
    }

    #[test]
    fn retr_of_empty_message_and_errors() {
        let mut c = replay(concat!(
            "+OK 0 octets\r\n.\r\n",
            "-ERR no such message\r\n",
            "+OK\r\nSubject: x\r\n",
        ));
        assert_eq!(c.retr(1).unwrap(), b"");
        let err = c.retr(9).unwrap_err();
        assert!(matches!(&err, Pop3Error::Err { command, code: None, .. } if command == "RETR"));
        // The connection ends in the middle of a message: an I/O error, not a message.
        let err = c.retr(2).unwrap_err();
        assert!(matches!(err, Pop3Error::Io(_)), "{err:?}");
        assert_eq!(err.retry(), Retry::Now);
    }

    #[test]
    fn top_sends_line_count() {
        let mut c = replay("+OK\r\nSubject: x\r\n\r\n.\r\n");
        assert_eq!(c.top(4, 0).unwrap(), b"Subject: x\r\n\r\n");
        assert_eq!(written(&mut c), "TOP 4 0\r\n");
    }

    #[test]
    fn stat_and_list() {
        let mut c = replay(concat!(
            "+OK 2 320\r\n",
            "+OK 2 messages (320 octets)\r\n",
            "1 120\r\n",
            "2 200\r\n",
            ".\r\n",
        ));
        assert_eq!(c.stat().unwrap(), (2, 320));
        assert_eq!(c.list().unwrap(), vec![(1, 120), (2, 200)]);
        assert_eq!(written(&mut c), "STAT\r\nLIST\r\n");
    }

    #[test]
    fn malformed_answers_are_protocol_errors() {
        let mut c = replay("+OK lots\r\n* OK IMAP4rev1 ready\r\n");
        assert!(matches!(c.stat().unwrap_err(), Pop3Error::Protocol(_)));
        let err = c.greeting().unwrap_err();
        assert!(matches!(err, Pop3Error::Protocol(_)), "{err:?}");
        assert!(err.to_string().contains("* OK IMAP4rev1"));
    }

    #[test]
    fn dele_and_quit() {
        let mut c = replay(concat!(
            "+OK message 1 deleted\r\n",
            "-ERR message 1 already deleted\r\n",
            "+OK dewey POP3 server signing off (maildrop empty)\r\n",
        ));
        c.dele(1).unwrap();
        assert!(c.dele(1).is_err());
        c.quit().unwrap();
        assert_eq!(written(&mut c), "DELE 1\r\nDELE 1\r\nQUIT\r\n");
    }

    #[test]
    fn stls_refuses_data_sent_ahead_of_tls() {
        let mut c = replay("+OK Begin TLS negotiation now.\r\n");
        c.stls().unwrap();
        assert!(c.capabilities().is_empty());
        let mut c = replay("+OK Begin TLS\r\n+OK injected\r\n");
        assert!(matches!(c.stls().unwrap_err(), Pop3Error::Protocol(_)));
    }

    #[test]
    fn line_breaks_are_never_sent() {
        let mut c = replay("-ERR\r\n");
        let err = c.login("bob\r\nDELE 1", "pw").unwrap_err();
        assert!(matches!(err, Pop3Error::Protocol(_)));
        let err = c.simple("PASS", "PASS hunter\n2").unwrap_err();
        assert!(matches!(err, Pop3Error::Protocol(_)));
        assert!(!err.to_string().contains("hunter"), "{err}");
        // Only the CAPA that login asked first was written.
        assert_eq!(written(&mut c), "CAPA\r\n");
    }

    #[test]
    fn credentials_are_masked_in_the_trace() {
        let blob = base64(b"\0a@b.ch\0hunter2");
        for (line, want) in [
            ("PASS hunter2".to_string(), "PASS <credentials masked>"),
            ("pass hunter2".to_string(), "PASS <credentials masked>"),
            (
                format!("AUTH PLAIN {blob}"),
                "AUTH PLAIN <credentials masked>",
            ),
            ("USER a@b.ch".to_string(), "USER a@b.ch"),
            ("RETR 1".to_string(), "RETR 1"),
        ] {
            let m = masked(&line);
            assert_eq!(m, want);
            assert!(!m.contains("hunter2") && !m.contains(&blob));
        }
    }

    #[test]
    fn unstuffing() {
        assert_eq!(unstuff(b".\r\n"), None);
        assert_eq!(unstuff(b".\n"), None);
        assert_eq!(unstuff(b"..\r\n"), Some(&b".\r\n"[..]));
        assert_eq!(unstuff(b". \r\n"), Some(&b". \r\n"[..]));
        assert_eq!(unstuff(b"x.\r\n"), Some(&b"x.\r\n"[..]));
    }

    fn limit_text(e: &Pop3Error) -> String {
        match e {
            Pop3Error::Limit(t) => t.clone(),
            other => panic!("not a limit error: {other:?}"),
        }
    }

    #[test]
    fn lines_before_login_are_held_to_the_pre_login_limit() {
        // A greeting one byte over the limit fails naming it; nothing more is held.
        let long = |n: usize| format!("+OK {}\r\n", "x".repeat(n - 6));
        let mut c = replay(&long(MAX_LINE_PRE_LOGIN + 1));
        let err = c.greeting().unwrap_err();
        let t = limit_text(&err);
        assert!(t.contains(&MAX_LINE_PRE_LOGIN.to_string()), "{t}");
        assert!(t.contains("the greeting") && t.contains("limit"), "{t}");
        assert_eq!(err.retry(), Retry::Final);
        // Exactly at the limit is fine.
        let mut c = replay(&long(MAX_LINE_PRE_LOGIN));
        c.greeting().unwrap();
        // A capability line and an AUTH answer are pre-login too.
        let mut c = replay(&format!("+OK\r\nUSER\r\nX-{}\r\n.\r\n", "y".repeat(70_000)));
        assert!(limit_text(&c.capa().unwrap_err()).contains("CAPA"));
        let mut c = replay(&format!("{DOVECOT_CAPA}{}", long(MAX_LINE_PRE_LOGIN + 1)));
        c.capa().unwrap();
        let t = limit_text(&c.login("a", "secret").unwrap_err());
        assert!(t.contains("AUTH PLAIN") && !t.contains("secret"), "{t}");
    }

    #[test]
    fn capa_is_held_to_the_pre_login_size_in_all() {
        // Many short capability lines, together over the pre-login limit.
        let mut wire = "+OK\r\n".to_string();
        for i in 0..(MAX_LINE_PRE_LOGIN / 8) {
            wire.push_str(&format!("X-{i:05}\r\n"));
        }
        wire.push_str(".\r\n");
        let mut c = replay(&wire);
        let t = limit_text(&c.capa().unwrap_err());
        assert!(t.contains(&MAX_LINE_PRE_LOGIN.to_string()), "{t}");
    }

    #[test]
    fn after_login_lines_may_be_longer_up_to_the_line_limit() {
        let line = "z".repeat(MAX_LINE_PRE_LOGIN * 2);
        let mut c = replay(&format!("+OK\r\n+OK\r\n+OK\r\n+OK\r\n{line}\r\n.\r\n"));
        // Unadvertised CAPA: USER/PASS.
        c.login("u", "p").unwrap_err();
        let mut c = replay(&format!(
            "+OK\r\nUSER\r\n.\r\n+OK\r\n+OK\r\n+OK\r\n{line}\r\n.\r\n"
        ));
        c.login("u", "p").unwrap();
        assert_eq!(c.retr(1).unwrap(), format!("{line}\r\n").as_bytes());
    }

    #[test]
    fn a_line_over_the_limit_after_login_fails_without_being_held() {
        // The limit itself is 16 MiB; one just over it, in a message.
        let mut wire = b"+OK\r\nUSER\r\n.\r\n+OK\r\n+OK\r\n+OK\r\n".to_vec();
        wire.resize(wire.len() + MAX_LINE + 1, b'q');
        wire.extend_from_slice(b"\r\n.\r\n");
        let mut c = replay_bytes(&wire);
        c.login("u", "p").unwrap();
        let t = limit_text(&c.retr(7).unwrap_err());
        assert!(
            t.contains("RETR 7") && t.contains(&MAX_LINE.to_string()),
            "{t}"
        );
    }

    #[test]
    fn multi_line_answers_are_bounded_in_lines_and_bytes() {
        let mut c = replay("+OK\r\na\r\nb\r\nc\r\nd\r\n.\r\n");
        c.simple("LIST", "LIST").unwrap();
        let bounds = Bounds {
            lines: 3,
            bytes: 100,
        };
        let t = limit_text(&c.read_multi(bounds, |_| Ok(())).unwrap_err());
        assert!(t.contains("more than 3 lines") && t.contains("LIST"), "{t}");
        let mut c = replay("+OK\r\n0123456789\r\n0123456789\r\n.\r\n");
        c.simple("RETR", "RETR 2").unwrap();
        let bounds = Bounds {
            lines: 100,
            bytes: 20,
        };
        let t = limit_text(&c.read_multi(bounds, |_| Ok(())).unwrap_err());
        assert!(
            t.contains("longer than 20 bytes") && t.contains("RETR 2"),
            "{t}"
        );
        // The real bounds: a message by MAX_LITERAL, listings by line count.
        assert_eq!(MESSAGE.bytes, MAX_LITERAL);
        assert_eq!(LISTING.lines, MAX_POP3_LIST_LINES);
        assert_eq!(CAPABILITIES.lines, MAX_POP3_LIST_LINES);
    }

    #[test]
    fn each_command_has_a_time_budget_and_the_greeting_too() {
        // Budget: 4 × 150 ms plus 1 s per 4 KiB. A 700-byte greeting read 7 bytes at
        // a time, 20 ms a read, needs 2 s: cut.
        let greeting = format!("+OK {}\r\n", "k".repeat(700));
        let ms = Duration::from_millis;
        let mut c = replay_slow(greeting.as_bytes(), ms(20), ms(150));
        let err = c.greeting().unwrap_err();
        assert!(
            matches!(&err, Pop3Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut),
            "{err:?}"
        );
        assert!(err.to_string().contains("one command"), "{err}");
        // Six short commands, about 60 ms each, 360 ms in all: each within its own
        // budget of 600 ms, so none is cut although together they took longer.
        let mut c = replay_slow("+OK 0 0\r\n".repeat(7).as_bytes(), ms(20), ms(150));
        c.greeting().unwrap();
        std::thread::sleep(ms(700));
        for _ in 0..6 {
            assert_eq!(c.stat().unwrap(), (0, 0));
        }
    }

    #[test]
    fn list_and_uidl_numbers_are_checked() {
        for bad in ["0 100", "-1 100", "4294967296 100", "x 100", "+1 100"] {
            let mut c = replay(&format!("+OK\r\n1 10\r\n{bad}\r\n.\r\n"));
            let err = c.list().unwrap_err();
            assert!(matches!(err, Pop3Error::Protocol(_)), "{bad}: {err:?}");
            let t = err.to_string();
            assert!(t.contains("message number") && t.contains(bad), "{t}");
            let bad_uidl = bad.replace(" 100", " uid-b");
            let mut c = replay(&format!("+OK\r\n1 uid-a\r\n{bad_uidl}\r\n.\r\n"));
            let err = c.uidl().unwrap_err();
            assert!(matches!(err, Pop3Error::Protocol(_)), "{bad}: {err:?}");
        }
        let mut c = replay("+OK\r\n1 10\r\n2 20\r\n1 30\r\n.\r\n");
        let t = c.list().unwrap_err().to_string();
        assert!(t.contains("LIST names message 1 twice"), "{t}");
        let mut c = replay("+OK\r\n2 a\r\n2 b\r\n.\r\n");
        let t = c.uidl().unwrap_err().to_string();
        assert!(t.contains("UIDL names message 2 twice"), "{t}");
        // A negative size is no size either.
        let mut c = replay("+OK\r\n1 -5\r\n.\r\n");
        assert!(matches!(c.list().unwrap_err(), Pop3Error::Protocol(_)));
        // Control characters of the server reach the error text escaped.
        let mut c = replay("+OK\r\n0\x1b[2J 1\r\n.\r\n");
        let t = c.list().unwrap_err().to_string();
        assert!(!t.contains('\x1b') && t.contains("\\x1b"), "{t}");
        // Two messages may share a UIDL: that is for the source to sort out.
        let mut c = replay("+OK\r\n1 same\r\n2 same\r\n.\r\n");
        assert_eq!(c.uidl().unwrap().unwrap().len(), 2);
    }

    #[test]
    fn message_sizes_agree_with_list_within_line_ending_slack() {
        let crlf = b"a\r\nbb\r\n"; // 7 bytes, 2 lines
        for (body, listed, agrees) in [
            (&crlf[..], 7, true),
            (&crlf[..], 5, true), // two bytes more: a last line ending added
            (&crlf[..], 9, true), // one byte a line less: bare LF sent as is
            (&crlf[..], 12, false),
            (&crlf[..], 2, false),
            (&b""[..], 2, true),
            (&b""[..], 3, false),
            (&b"x\n"[..], 5000, false), // cut short
        ] {
            assert_eq!(size_agrees(body, listed), agrees, "{body:?} {listed}");
        }
    }

    #[test]
    fn far_off_sizes_are_not_the_message() {
        let body = b"Subject: x\r\n\r\nbody\r\n".to_vec(); // 20 bytes, 3 lines
        for (listed, far) in [
            (20, false),
            (23, false), // within the line-ending allowance
            (21, false),
            (2_000, true), // a notice in place of a 2 KB message
            (30, false),   // an estimate 50 % off
            (41, true),
            (0, false),
            (9, false),
        ] {
            assert_eq!(size_far_off(&body, listed), far, "{listed}");
        }
    }

    #[test]
    fn utf8_is_sent_as_a_command() {
        let mut c = replay("+OK UTF8 enabled\r\n");
        c.utf8().unwrap();
        assert_eq!(written(&mut c), "UTF8\r\n");
    }
}
