//! A small IMAP4rev1 client, generic over `Read + Write` (as rust-imap is), so unit
//! tests replay a server transcript and the same code runs over TLS for real.
//!
//! Invariants:
//! - one response is held in memory at a time: untagged responses are handed to the
//!   caller as they arrive (a `UID FETCH` of a whole folder streams);
//! - a command's literals use LITERAL+ when the server offers it and wait for the
//!   continuation request otherwise;
//! - APPENDs can be pipelined (LITERAL+ only): all are written, then the tagged
//!   answers are matched back to them in order;
//! - credentials never reach the trace: the login line is masked before logging;
//! - what the server sends is bounded (`crate::limits`): a line before login, a line
//!   after, a literal, the literals of a response, and each command's time;
//! - no text part of a command carries CR, LF or NUL: the writer refuses the whole
//!   command before a byte of it is sent, so no value can start a command of its own.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};

use super::parse::{self, parse_fetch, Fetch, Response, Status, StatusKind};
use super::types::{ImapDate, UidSet};
use super::ImapError;
use crate::limits::{self, Paced};
use crate::log;
use crate::sasl::{self, Login, Mech};

/// One part of a command: plain text or a literal.
#[derive(Clone, Copy)]
pub enum Part<'a> {
    Text(&'a [u8]),
    Literal(&'a [u8]),
}

/// A mailbox as LIST reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub attrs: Vec<String>,
    pub delim: Option<char>,
    /// The name as on the wire (modified UTF-7).
    pub raw: Vec<u8>,
}

impl ListEntry {
    pub fn has_attr(&self, attr: &str) -> bool {
        self.attrs.iter().any(|a| a.eq_ignore_ascii_case(attr))
    }
}

/// A namespace's prefix (on the wire) and hierarchy delimiter (RFC 2342).
pub type Namespace = (Vec<u8>, Option<char>);

/// The namespaces of an account: the user's own, and the others (other users',
/// shared), which are not the user's mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub personal: Vec<Namespace>,
    pub others: Vec<Namespace>,
}

impl Namespaces {
    /// Whether a mailbox (on the wire) belongs to another user or is shared: the
    /// namespace with the longest prefix it starts with (or equals, without the
    /// trailing delimiter) decides, personal winning ties; INBOX is personal.
    pub fn is_foreign(&self, raw: &[u8]) -> bool {
        if raw.eq_ignore_ascii_case(b"INBOX") {
            return false;
        }
        let fits = |(p, d): &Namespace| -> Option<usize> {
            let bare = match d {
                Some(d) if p.ends_with(&[*d as u8]) => &p[..p.len() - 1],
                _ => &p[..],
            };
            (raw.starts_with(p) || (!bare.is_empty() && raw == bare)).then_some(p.len())
        };
        let own = self.personal.iter().filter_map(fits).max();
        let other = self.others.iter().filter_map(fits).max();
        match (own, other) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(o), Some(f)) => f > o,
        }
    }
}

/// What SELECT / EXAMINE tells about a mailbox.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    pub exists: u32,
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    /// `* N EXISTS`; `None` when the server did not say (a disagreement).
    pub exists_announced: bool,
    /// `[UIDVALIDITY n]`; `None` when missing (or 0: not a valid UIDVALIDITY).
    pub uidvalidity_announced: bool,
    /// PERMANENTFLAGS; `\*` means new keywords may be created.
    pub permanent_flags: Vec<String>,
}

/// One APPEND: mailbox on the wire, flags, INTERNALDATE and the message bytes.
pub struct Append<'a> {
    pub mailbox: &'a [u8],
    pub flags: &'a [String],
    pub internal_date: Option<&'a ImapDate>,
    pub body: &'a [u8],
}

/// What APPENDUID (RFC 4315) says of one appended message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendUid {
    pub uidvalidity: u32,
    pub uid: u32,
}

pub struct Client<S: Read + Write> {
    stream: BufReader<Paced<S>>,
    /// The longest response line accepted now (shorter before login).
    max_line: usize,
    /// The last `* N EXISTS` of the selected mailbox.
    exists: Option<u32>,
    /// Bytes the next command is expected to read (see [`Client::expect`]).
    expect_next: u64,
    next_tag: u32,
    caps: Vec<String>,
    /// The greeting's text (at most 200 characters), for recognising a provider.
    greeting: String,
    who: String,
    out: Vec<u8>,
    /// The quickest command so far, from its write to its tagged answer: a round
    /// trip plus a little server time ([`Client::round_trip`]).
    fastest: Option<std::time::Duration>,
    /// The NAMESPACE answer, asked once a session (it does not change).
    namespaces: Option<Option<Namespaces>>,
}

fn quote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
    out
}

/// Whether `s` can go in a quoted string (no CR, LF, NUL, no 8-bit).
fn quotable(s: &[u8]) -> bool {
    s.iter()
        .all(|&c| c != 0 && c != b'\r' && c != b'\n' && c < 0x80)
}

/// A mailbox name as a command part: quoted where possible, a literal otherwise.
/// `quoted` is scratch space that must outlive the part.
fn mailbox_part<'a>(mailbox: &'a [u8], quoted: &'a mut Vec<u8>) -> Part<'a> {
    if quotable(mailbox) {
        *quoted = quote(mailbox);
        Part::Text(quoted)
    } else {
        Part::Literal(mailbox)
    }
}

/// `APPENDLIMIT=n` among capabilities: n when it is a number of at most 19 digits
/// (a bare `APPENDLIMIT` names limits per mailbox, not read here).
pub fn append_limit(caps: &[String]) -> Option<u64> {
    caps.iter().find_map(|c| {
        let (name, n) = c.split_once('=')?;
        if !name.eq_ignore_ascii_case("APPENDLIMIT") || n.is_empty() || n.len() > 19 {
            return None;
        }
        n.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| n.parse().ok())?
    })
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Literals at least this long are written to the stream directly, not via `out`.
const LARGE_LITERAL: usize = 64 * 1024;

impl<S: Read + Write> Client<S> {
    /// Wrap a connected stream; `who` names it in traces ("source", "target").
    pub fn new(stream: S, who: &str) -> Self {
        Client {
            stream: BufReader::with_capacity(
                64 * 1024,
                Paced::new(stream, std::time::Duration::from_secs(60)),
            ),
            max_line: limits::MAX_LINE_PRE_LOGIN,
            exists: None,
            expect_next: 0,
            fastest: None,
            namespaces: None,
            next_tag: 1,
            caps: Vec::new(),
            greeting: String::new(),
            who: who.to_string(),
            out: Vec::new(),
        }
    }

    pub fn get_mut(&mut self) -> &mut S {
        self.stream.get_mut().get_mut()
    }

    /// Give back the stream (for STARTTLS). Only valid when nothing is buffered.
    pub fn into_inner(self) -> S {
        self.stream.into_inner().into_inner()
    }

    /// `--timeout`: bounds each read and write (on the socket) and, times
    /// [`limits::COMMAND_TIMEOUTS`], each command.
    pub fn set_timeout(&mut self, timeout: std::time::Duration) {
        self.stream.get_mut().set_timeout(timeout);
    }

    /// A command starts: its time budget starts afresh.
    fn begin(&mut self) {
        self.stream.get_mut().begin();
    }

    /// Let the socket under TLS enforce each command's deadline.
    pub fn share_deadline(&mut self, d: std::sync::Arc<limits::Deadline>) {
        self.stream.get_mut().share(d);
    }

    /// The next command will read about this many bytes of bodies (its budget
    /// grows with them as they arrive).
    pub fn expect(&mut self, bytes: u64) {
        self.expect_next = bytes;
    }

    /// The last `* N EXISTS` the server sent for the selected mailbox.
    pub fn exists(&self) -> Option<u32> {
        self.exists
    }

    pub fn capabilities(&self) -> &[String] {
        &self.caps
    }

    /// The server's greeting text (its first 200 characters).
    pub fn greeting_text(&self) -> &str {
        &self.greeting
    }

    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// The largest message the server takes in one APPEND, from its
    /// `APPENDLIMIT=n` capability (RFC 7889); `None` when it names none.
    pub fn append_limit(&self) -> Option<u64> {
        append_limit(&self.caps)
    }

    fn set_caps_from_code(&mut self, status: &Status) {
        if status.code_name().as_deref() == Some("CAPABILITY") {
            self.caps = status.code_args().iter().map(|s| s.to_string()).collect();
        }
    }

    /// Read one complete response: its text (literal announcements kept) and its
    /// literals apart, each read straight into a buffer of its own exact size, so a
    /// message body is held once.
    fn read_raw(&mut self) -> Result<(Vec<u8>, Vec<Vec<u8>>), ImapError> {
        let mut buf = Vec::new();
        let mut literals = Vec::new();
        loop {
            let start = buf.len();
            // The text of one response, all its lines together, is bounded.
            let room = self.max_line.saturating_sub(start);
            let n = limits::append_line(&mut self.stream, &mut buf, room).map_err(|e| {
                if limits::is_limit(&e) {
                    ImapError::Limit(format!(
                        "the server sent a response line longer than {} bytes (limit{})",
                        self.max_line,
                        if self.max_line == limits::MAX_LINE_PRE_LOGIN {
                            " before login"
                        } else {
                            ""
                        }
                    ))
                } else {
                    ImapError::Io(e)
                }
            })?;
            if n == 0 {
                return Err(eof());
            }
            match parse::trailing_literal(&buf[start..]) {
                Some(len) => {
                    if len > limits::MAX_LITERAL {
                        return Err(ImapError::Limit(format!(
                            "the server announced a literal of {len} bytes, more than {} (limit)",
                            limits::MAX_LITERAL
                        )));
                    }
                    let held: usize = literals.iter().map(Vec::len).sum();
                    if held.saturating_add(len) > limits::MAX_LITERAL {
                        return Err(ImapError::Limit(format!(
                            "the server sent more than {} bytes of literals in one response (limit)",
                            limits::MAX_LITERAL
                        )));
                    }
                    if literals.len() >= limits::MAX_LITERALS {
                        return Err(ImapError::Limit(format!(
                            "the server sent more than {} literals in one response (limit)",
                            limits::MAX_LITERALS
                        )));
                    }
                    // Reserved as announced up to 64 MiB, grown beyond as bytes
                    // really arrive: an announcement alone allocates little.
                    let mut data = Vec::new();
                    data.try_reserve_exact(len.min(64 << 20)).map_err(|_| {
                        ImapError::Protocol(format!(
                            "the server announced a literal of {len} bytes, more than this machine can hold"
                        ))
                    })?;
                    (&mut self.stream).take(len as u64).read_to_end(&mut data)?;
                    if data.len() < len {
                        return Err(eof());
                    }
                    literals.push(data);
                }
                None => {
                    log::trace(&self.who, "S:", &buf);
                    return Ok((buf, literals));
                }
            }
        }
    }

    fn read_response(&mut self) -> Result<Response, ImapError> {
        let (text, literals) = self.read_raw()?;
        parse::parse_response_with(&text, literals).map_err(|e| ImapError::Protocol(e.0))
    }

    /// Read the server greeting; PREAUTH and BYE are reported.
    pub fn greeting(&mut self) -> Result<StatusKind, ImapError> {
        self.begin();
        match self.read_response()? {
            Response::UntaggedStatus(s) => {
                self.set_caps_from_code(&s);
                self.greeting = s.text.chars().take(200).collect();
                match s.kind {
                    StatusKind::Bye => Err(ImapError::Bye(s.describe())),
                    k => Ok(k),
                }
            }
            other => Err(ImapError::Protocol(format!(
                "expected a greeting, got {other:?}"
            ))),
        }
    }

    fn tag(&mut self) -> String {
        let t = format!("M{:04}", self.next_tag);
        self.next_tag += 1;
        t
    }

    fn flush_out(&mut self) -> Result<(), ImapError> {
        let out = std::mem::take(&mut self.out);
        let s = self.stream.get_mut();
        s.write_all(&out)?;
        s.flush()?;
        self.out = out;
        self.out.clear();
        Ok(())
    }

    /// Write one command (tag + parts + CRLF) to the output buffer; a synchronizing
    /// literal (no LITERAL+) first waits for the server's continuation. `secret`:
    /// the command's text is masked in the trace.
    fn write_command(
        &mut self,
        tag: &str,
        parts: &[Part<'_>],
        secret: bool,
    ) -> Result<(), ImapError> {
        // Checked whole before anything is written: a refused command leaves no
        // half of itself on the wire.
        if let Some(what) = forbidden_byte(parts) {
            return Err(ImapError::Unsafe(format!(
                "refusing to send a command with {what} outside a literal (a value that came from a server must never start a command of its own)",
            )));
        }
        let literal_plus = self.has_cap("LITERAL+");
        let mut line = format!("{tag} ").into_bytes();
        let mut traced = line.clone();
        for part in parts {
            match part {
                Part::Text(t) => {
                    line.extend_from_slice(t);
                    if !secret {
                        traced.extend_from_slice(t);
                    }
                }
                Part::Literal(data) => {
                    line.extend_from_slice(literal_header(data.len(), literal_plus).as_bytes());
                    traced.extend_from_slice(format!("<literal {} bytes>", data.len()).as_bytes());
                    self.write_literal(&line, data, literal_plus)?;
                    line.clear();
                }
            }
        }
        line.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&line);
        if secret {
            traced.extend_from_slice(b"<credentials masked>");
        }
        log::trace(&self.who, "C:", &traced);
        Ok(())
    }

    /// The command so far (`line`, ending in the literal's header), then the
    /// literal: a synchronizing one once the server says to go on; a large one
    /// straight to the socket.
    fn write_literal(
        &mut self,
        line: &[u8],
        data: &[u8],
        literal_plus: bool,
    ) -> Result<(), ImapError> {
        self.out.extend_from_slice(line);
        if !literal_plus {
            self.flush_out()?;
            match self.read_response()? {
                Response::Continue(_) => {}
                Response::Tagged { status, .. } => {
                    return Err(ImapError::from_status("literal", status))
                }
                other => {
                    return Err(ImapError::Protocol(format!(
                        "expected a continuation, got {other:?}"
                    )))
                }
            }
        }
        if data.len() >= LARGE_LITERAL {
            // A large body goes straight to the socket, not copied first.
            self.flush_out()?;
            self.stream.get_mut().write_all(data)?;
        } else {
            self.out.extend_from_slice(data);
            if self.out.len() > 1 << 20 {
                // Large commands go out as they are built, not held whole.
                self.flush_out()?;
            }
        }
        Ok(())
    }

    /// Run a command and hand each untagged response to `on_data`. Returns the
    /// tagged OK status; NO/BAD become errors carrying the server's words.
    pub fn run(
        &mut self,
        name: &str,
        parts: &[Part<'_>],
        mut on_data: impl FnMut(Response) -> Result<(), ImapError>,
    ) -> Result<Status, ImapError> {
        self.run_inner(name, parts, false, &mut on_data)
    }

    fn run_inner(
        &mut self,
        name: &str,
        parts: &[Part<'_>],
        secret: bool,
        on_data: &mut dyn FnMut(Response) -> Result<(), ImapError>,
    ) -> Result<Status, ImapError> {
        let tag = self.tag();
        self.begin();
        let expected = std::mem::take(&mut self.expect_next);
        self.stream.get_mut().expect(expected);
        self.write_command(&tag, parts, secret)?;
        let sent = std::time::Instant::now();
        self.flush_out()?;
        let status = self.wait_tagged(&tag, name, on_data)?;
        let took = sent.elapsed();
        self.fastest = Some(self.fastest.map_or(took, |f| f.min(took)));
        Ok(status)
    }

    /// The quickest command's time from write to answer so far (`None` before
    /// any): after a few commands that ask little of the server (LIST, NAMESPACE,
    /// SELECT), the round trip to it, measured without a command of its own.
    pub fn round_trip(&self) -> Option<std::time::Duration> {
        self.fastest
    }

    fn wait_tagged(
        &mut self,
        tag: &str,
        name: &str,
        on_data: &mut dyn FnMut(Response) -> Result<(), ImapError>,
    ) -> Result<Status, ImapError> {
        self.wait_any(&[(tag, name)], on_data)?.1
    }

    /// Read until one of the `pending` commands (tag, name) is answered; returns
    /// which, and its result (a NO or BAD as that command's error). A server may
    /// answer commands written together in any order (RFC 3501 5.5); a tag that
    /// is none of them is a protocol error.
    #[allow(clippy::type_complexity)]
    fn wait_any(
        &mut self,
        pending: &[(&str, &str)],
        on_data: &mut dyn FnMut(Response) -> Result<(), ImapError>,
    ) -> Result<(usize, Result<Status, ImapError>), ImapError> {
        let mut bye: Option<String> = None;
        loop {
            let resp = match self.read_response() {
                Ok(r) => r,
                Err(ImapError::Io(e)) if bye.is_some() => {
                    let _ = e;
                    return Err(ImapError::Bye(bye.unwrap()));
                }
                Err(e) => return Err(e),
            };
            match resp {
                Response::Tagged { tag: t, status } => {
                    let Some(i) = pending.iter().position(|(p, _)| *p == t) else {
                        let waiting = pending.first().map_or("", |p| p.0);
                        return Err(ImapError::Protocol(format!(
                            "answer for unknown tag {t} while waiting for {waiting}"
                        )));
                    };
                    self.set_caps_from_code(&status);
                    let result = match status.kind {
                        StatusKind::Ok => Ok(status),
                        _ => Err(ImapError::from_status(pending[i].1, status)),
                    };
                    return Ok((i, result));
                }
                Response::UntaggedStatus(s) if s.kind == StatusKind::Bye => {
                    bye = Some(s.describe());
                }
                Response::Numbered { num, ref name, .. } if name == "EXISTS" => {
                    self.exists = Some(num);
                    on_data(resp)?;
                }
                Response::Data { ref name, ref rest } if name == "CAPABILITY" => {
                    self.caps = rest
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect();
                }
                Response::Continue(text) => {
                    return Err(ImapError::Protocol(format!(
                        "unexpected continuation request: {text}"
                    )))
                }
                other => on_data(other)?,
            }
        }
    }

    /// Read the answers of commands written together, in whatever order they
    /// come: one result each, in the order of `pending`. A NO or BAD is that
    /// command's result; anything else (the connection lost) ends them all.
    fn wait_all(
        &mut self,
        pending: &[(&str, &str)],
        on_data: &mut dyn FnMut(Response) -> Result<(), ImapError>,
    ) -> Result<Vec<Result<Status, ImapError>>, ImapError> {
        let mut results: Vec<Option<Result<Status, ImapError>>> =
            pending.iter().map(|_| None).collect();
        let mut left: Vec<(usize, (&str, &str))> = pending.iter().copied().enumerate().collect();
        while !left.is_empty() {
            let waiting: Vec<(&str, &str)> = left.iter().map(|(_, p)| *p).collect();
            let (i, r) = self.wait_any(&waiting, on_data)?;
            let r = match r {
                Err(e @ (ImapError::No { .. } | ImapError::Bad { .. })) => Err(e),
                Err(e) => return Err(e),
                Ok(s) => Ok(s),
            };
            results[left[i].0] = Some(r);
            left.remove(i);
        }
        Ok(results.into_iter().flatten().collect())
    }

    pub fn simple(&mut self, name: &str, parts: &[Part<'_>]) -> Result<Status, ImapError> {
        self.run(name, parts, |_| Ok(()))
    }

    pub fn capability(&mut self) -> Result<(), ImapError> {
        self.simple("CAPABILITY", &[Part::Text(b"CAPABILITY")])?;
        Ok(())
    }

    /// Log in with the mailbox's password: AUTHENTICATE PLAIN with SASL-IR where
    /// offered, LOGIN otherwise. Refuses when the server says LOGINDISABLED.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), ImapError> {
        self.authenticate(user, &Login::Password(password))
    }

    /// Log in to the mailbox `user`: with its password (see [`Client::login`]), as
    /// an administrator (AUTHENTICATE PLAIN, authzid = `user`), or with an OAuth2
    /// token (AUTHENTICATE XOAUTH2 where offered, else OAUTHBEARER). A mechanism the
    /// server does not announce is refused before anything is sent.
    pub fn authenticate(&mut self, user: &str, login: &Login<'_>) -> Result<(), ImapError> {
        self.authenticate_as(user, login, None)
    }

    /// [`Client::authenticate`] with the mechanism `forced` (an endpoint's
    /// `;AUTH=NAME`) instead of the usual choice ([`sasl::choose`]).
    pub fn authenticate_as(
        &mut self,
        user: &str,
        login: &Login<'_>,
        forced: Option<Mech>,
    ) -> Result<(), ImapError> {
        if self.caps.is_empty() {
            self.capability()?;
        }
        if self.has_cap("LOGINDISABLED") && !self.has_cap("AUTH=PLAIN") {
            return Err(ImapError::Protocol(
                "the server does not allow logging in on this connection (LOGINDISABLED)".into(),
            ));
        }
        let plain_first = self.has_cap("SASL-IR") || self.has_cap("LOGINDISABLED");
        let way = sasl::choose(
            login,
            forced,
            |m| self.has_cap(&format!("AUTH={m}")),
            plain_first,
        )
        .map_err(ImapError::Protocol)?;
        let status = match (way, login) {
            (sasl::Way::Command, Login::Password(password)) => {
                let (u, p) = (quote(user.as_bytes()), quote(password.as_bytes()));
                let mut parts = vec![Part::Text(b"LOGIN ")];
                parts.push(if quotable(user.as_bytes()) {
                    Part::Text(&u)
                } else {
                    Part::Literal(user.as_bytes())
                });
                parts.push(Part::Text(b" "));
                parts.push(if quotable(password.as_bytes()) {
                    Part::Text(&p)
                } else {
                    Part::Literal(password.as_bytes())
                });
                self.run_inner("LOGIN", &parts, true, &mut |_| Ok(()))?
            }
            (sasl::Way::Sasl(mech), _) => self.sasl(mech, user, login)?,
            (sasl::Way::Command, _) => unreachable!("only a password goes by LOGIN"),
        };
        self.max_line = limits::MAX_LINE;
        if status.code_name().as_deref() != Some("CAPABILITY") {
            self.capability()?;
        }
        Ok(())
    }

    /// One SASL exchange (RFC 3501 AUTHENTICATE): the initial response on the
    /// command line with SASL-IR, after the first continuation otherwise; a
    /// further challenge (a refused token's error details) is answered with the
    /// mechanism's abort so the server sends its tagged NO. The trace shows the
    /// mechanism and the server's lines, never the client's responses.
    fn sasl(&mut self, mech: Mech, user: &str, login: &Login<'_>) -> Result<Status, ImapError> {
        let tag = self.tag();
        self.begin();
        let response = sasl::initial_response(mech, user, login);
        let name = mech.name();
        let mut pending = Some(response);
        let mut line = format!("{tag} AUTHENTICATE {name}");
        if self.has_cap("SASL-IR") {
            line.push(' ');
            line.push_str(&pending.take().unwrap_or_default());
            log::trace(
                &self.who,
                "C:",
                format!("{tag} AUTHENTICATE {name} <credentials masked>").as_bytes(),
            );
        } else {
            log::trace(
                &self.who,
                "C:",
                format!("{tag} AUTHENTICATE {name}").as_bytes(),
            );
        }
        line.push_str("\r\n");
        self.out.extend_from_slice(line.as_bytes());
        self.flush_out()?;
        let mut aborted = false;
        loop {
            match self.read_response()? {
                Response::Continue(_) => {
                    let reply = match pending.take() {
                        Some(r) => r,
                        None if !aborted => {
                            aborted = true;
                            mech.abort_line().to_string()
                        }
                        None => {
                            return Err(ImapError::Protocol(format!(
                                "AUTHENTICATE {name}: the server asked for more after the exchange was aborted"
                            )))
                        }
                    };
                    log::trace(&self.who, "C:", b"<credentials masked>");
                    self.out.extend_from_slice(reply.as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                    self.flush_out()?;
                }
                Response::Tagged { tag: t, status } if t == tag => {
                    self.set_caps_from_code(&status);
                    return match status.kind {
                        StatusKind::Ok => Ok(status),
                        _ => Err(ImapError::from_status("AUTHENTICATE", status)),
                    };
                }
                Response::Tagged { tag: t, .. } => {
                    return Err(ImapError::Protocol(format!(
                        "answer for unknown tag {t} while waiting for {tag}"
                    )))
                }
                Response::UntaggedStatus(s) if s.kind == StatusKind::Bye => {
                    return Err(ImapError::Bye(s.describe()))
                }
                Response::Data { ref name, ref rest } if name == "CAPABILITY" => {
                    self.caps = rest
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect();
                }
                _ => {}
            }
        }
    }

    /// `STARTTLS`; afterwards the caller wraps the stream and calls `capability`.
    pub fn starttls(&mut self) -> Result<(), ImapError> {
        self.simple("STARTTLS", &[Part::Text(b"STARTTLS")])?;
        self.caps.clear();
        Ok(())
    }

    /// All mailboxes, with special-use attributes where the server has them; at
    /// most [`limits::MAX_FOLDERS`].
    pub fn list(&mut self) -> Result<Vec<ListEntry>, ImapError> {
        let cmd: &[u8] = if self.has_cap("SPECIAL-USE") && self.has_cap("LIST-EXTENDED") {
            b"LIST \"\" \"*\" RETURN (SPECIAL-USE)"
        } else {
            b"LIST \"\" \"*\""
        };
        let mut out = Vec::new();
        self.run("LIST", &[Part::Text(cmd)], |r| {
            if let Response::Data { name, rest } = r {
                if name == "LIST" {
                    if out.len() >= limits::MAX_FOLDERS {
                        return Err(ImapError::Limit(format!(
                            "the server listed more than {} folders (limit)",
                            limits::MAX_FOLDERS
                        )));
                    }
                    out.push(list_entry(&rest)?);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The personal namespace's prefix and delimiter (RFC 2342), if announced.
    pub fn personal_namespace(&mut self) -> Result<Option<Namespace>, ImapError> {
        Ok(self
            .namespaces()?
            .and_then(|n| n.personal.into_iter().next()))
    }

    /// Every namespace the server announces (RFC 2342): personal, other users',
    /// shared; `None` without NAMESPACE.
    pub fn namespaces(&mut self) -> Result<Option<Namespaces>, ImapError> {
        if !self.has_cap("NAMESPACE") {
            return Ok(None);
        }
        if let Some(known) = &self.namespaces {
            return Ok(known.clone());
        }
        let mut found = None;
        self.run("NAMESPACE", &[Part::Text(b"NAMESPACE")], |r| {
            if let Response::Data { name, rest } = r {
                if name == "NAMESPACE" {
                    let group = |i: usize| -> Vec<Namespace> {
                        rest.get(i)
                            .and_then(|v| v.as_list())
                            .unwrap_or(&[])
                            .iter()
                            .filter_map(|ns| ns.as_list())
                            .map(|ns| {
                                let prefix = ns.first().and_then(|v| v.as_bytes()).unwrap_or(b"");
                                let delim = ns
                                    .get(1)
                                    .and_then(|v| v.as_bytes())
                                    .and_then(|b| b.first())
                                    .map(|&c| c as char);
                                (prefix.to_vec(), delim)
                            })
                            .collect()
                    };
                    found = Some(Namespaces {
                        personal: group(0),
                        others: group(1).into_iter().chain(group(2)).collect(),
                    });
                }
            }
            Ok(())
        })?;
        self.namespaces = Some(found.clone());
        Ok(found)
    }

    /// SELECT (read-write) or EXAMINE (read-only) a mailbox.
    pub fn select(&mut self, mailbox: &[u8], readonly: bool) -> Result<Selected, ImapError> {
        let verb: &[u8] = if readonly { b"EXAMINE " } else { b"SELECT " };
        let mut q = Vec::new();
        let parts = [Part::Text(verb), mailbox_part(mailbox, &mut q)];
        let mut sel = Selected::default();
        self.exists = None;
        let status = self.run(if readonly { "EXAMINE" } else { "SELECT" }, &parts, |r| {
            match r {
                Response::Numbered { num, name, .. } if name == "EXISTS" => {
                    sel.exists = num;
                    sel.exists_announced = true;
                }
                Response::UntaggedStatus(s) => apply_select_code(&mut sel, &s),
                _ => {}
            }
            Ok(())
        })?;
        apply_select_code(&mut sel, &status);
        Ok(sel)
    }

    /// CREATE a mailbox. A refusal is checked with LIST: a mailbox that turns out
    /// to exist (whatever the server's words: Dovecot says `[ALREADYEXISTS]`,
    /// Cyrus "Mailbox already exists", Courier "Cannot create this folder.") is
    /// success.
    pub fn create(&mut self, mailbox: &[u8]) -> Result<(), ImapError> {
        self.create_with_role(mailbox, None)
    }

    /// CREATE, with `(USE (\Role))` (RFC 6154) where the server offers
    /// CREATE-SPECIAL-USE and a role is given; a refused USE falls back to a plain
    /// CREATE.
    pub fn create_with_role(
        &mut self,
        mailbox: &[u8],
        role: Option<&str>,
    ) -> Result<(), ImapError> {
        self.create_as(mailbox, role, false).map(|_| ())
    }

    /// [`Client::create_with_role`] and SUBSCRIBE in one round trip: each CREATE
    /// goes out with a SUBSCRIBE of the same name behind it. Returns the CREATE's
    /// result: whether this CREATE made the mailbox (`false`: it was there
    /// already), and the SUBSCRIBE's result (a refused subscription is no reason
    /// to fail the folder). A SUBSCRIBE that went out for a mailbox that could
    /// not be created is taken back with UNSUBSCRIBE.
    pub fn create_subscribed(
        &mut self,
        mailbox: &[u8],
        role: Option<&str>,
    ) -> Result<(bool, Result<(), ImapError>), ImapError> {
        self.create_as(mailbox, role, true)
    }

    /// CREATE (with a role where it can be given), each CREATE followed in the
    /// same write by a SUBSCRIBE when `subscribe`. A refusal is checked with LIST:
    /// a mailbox that turns out to exist is success (`false`: not made now).
    fn create_as(
        &mut self,
        mailbox: &[u8],
        role: Option<&str>,
        subscribe: bool,
    ) -> Result<(bool, Result<(), ImapError>), ImapError> {
        let mut q = Vec::new();
        let name = mailbox_part(mailbox, &mut q);
        let sub = [Part::Text(b"SUBSCRIBE "), name];
        let sub = subscribe.then_some(&sub[..]);
        let role = role.filter(|r| {
            self.has_cap("CREATE-SPECIAL-USE") && super::types::valid_flag(r) && r.starts_with('\\')
        });
        if let Some(r) = role {
            let with_use = format!(" (USE ({r}))");
            let create = [
                Part::Text(b"CREATE "),
                name,
                Part::Text(with_use.as_bytes()),
            ];
            if let (Ok(_), subscribed) = self.create_then(&create, sub)? {
                return Ok((true, subscribed));
            }
        }
        let create = [Part::Text(b"CREATE "), name];
        let (created, subscribed) = self.create_then(&create, sub)?;
        match created {
            Ok(_) => Ok((true, subscribed)),
            Err(e) => {
                if self.listed(mailbox)? {
                    return Ok((false, subscribed));
                }
                if sub.is_some() && subscribed.is_ok() {
                    let _ = self.simple("UNSUBSCRIBE", &[Part::Text(b"UNSUBSCRIBE "), name]);
                }
                Err(e)
            }
        }
    }

    /// One CREATE, and the SUBSCRIBE `sub` in the same write if given: the
    /// CREATE's answer and the SUBSCRIBE's (success when none was sent).
    #[allow(clippy::type_complexity)]
    fn create_then(
        &mut self,
        create: &[Part<'_>],
        sub: Option<&[Part<'_>]>,
    ) -> Result<(Result<Status, ImapError>, Result<(), ImapError>), ImapError> {
        let mut commands = vec![("CREATE", create)];
        commands.extend(sub.map(|s| ("SUBSCRIBE", s)));
        let mut answers = self.pipelined(&commands, &mut |_| Ok(()))?.into_iter();
        let created = answers.next().expect("an answer per command");
        Ok((created, answers.next().map_or(Ok(()), |s| s.map(|_| ()))))
    }

    /// Commands written at once, their answers read in whatever order the server
    /// sends them ([`Client::wait_all`]): one round trip for all. Untagged data
    /// goes to `on_data`; one result per command, in order.
    fn pipelined(
        &mut self,
        commands: &[(&str, &[Part<'_>])],
        on_data: &mut dyn FnMut(Response) -> Result<(), ImapError>,
    ) -> Result<Vec<Result<Status, ImapError>>, ImapError> {
        self.begin();
        let expected = std::mem::take(&mut self.expect_next);
        self.stream.get_mut().expect(expected);
        let mut tags = Vec::with_capacity(commands.len());
        for (_, parts) in commands {
            let tag = self.tag();
            self.write_command(&tag, parts, false)?;
            tags.push(tag);
        }
        self.flush_out()?;
        let pending: Vec<(&str, &str)> = tags
            .iter()
            .zip(commands)
            .map(|(t, (name, _))| (t.as_str(), *name))
            .collect();
        self.wait_all(&pending, on_data)
    }

    /// Whether LIST shows this exact mailbox.
    pub fn listed(&mut self, mailbox: &[u8]) -> Result<bool, ImapError> {
        let mut q = Vec::new();
        let parts = [Part::Text(b"LIST \"\" "), mailbox_part(mailbox, &mut q)];
        let mut found = false;
        self.run("LIST", &parts, |r| {
            if let Response::Data { name, rest } = r {
                if name == "LIST" {
                    let e = list_entry(&rest)?;
                    found |= e.raw == mailbox
                        && !e.has_attr("\\NonExistent")
                        && !e.has_attr("\\Noselect");
                }
            }
            Ok(())
        })?;
        Ok(found)
    }

    pub fn subscribe(&mut self, mailbox: &[u8]) -> Result<(), ImapError> {
        let mut q = Vec::new();
        let parts = [Part::Text(b"SUBSCRIBE "), mailbox_part(mailbox, &mut q)];
        self.simple("SUBSCRIBE", &parts).map(|_| ())
    }

    /// `UID FETCH set items`, each FETCH response handed to `each` as it arrives.
    /// `set` and `items` are made by mailferry, never taken from a server.
    pub fn uid_fetch(
        &mut self,
        set: &str,
        items: &str,
        mut each: impl FnMut(Fetch) -> Result<(), ImapError>,
    ) -> Result<(), ImapError> {
        let cmd = format!("UID FETCH {set} {items}");
        self.run("UID FETCH", &[Part::Text(cmd.as_bytes())], |r| {
            if let Response::Numbered { num, name, rest } = r {
                if name == "FETCH" {
                    let f = parse_fetch(num, rest).map_err(|e| ImapError::Protocol(e.0))?;
                    each(f)?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Several `UID FETCH set items` written at once and answered in any order:
    /// one round trip instead of one each. Every FETCH response goes to `each`
    /// (its UID tells which it answers). A NO or BAD for one command is returned
    /// once every answer is read, so the session stays in step.
    pub fn uid_fetch_many(
        &mut self,
        fetches: &[(&str, &str)],
        mut each: impl FnMut(Fetch) -> Result<(), ImapError>,
    ) -> Result<(), ImapError> {
        let lines: Vec<String> = fetches
            .iter()
            .map(|(set, items)| format!("UID FETCH {set} {items}"))
            .collect();
        let parts: Vec<[Part<'_>; 1]> = lines.iter().map(|l| [Part::Text(l.as_bytes())]).collect();
        let commands: Vec<(&str, &[Part<'_>])> =
            parts.iter().map(|p| ("UID FETCH", &p[..])).collect();
        let answers = self.pipelined(&commands, &mut |r| {
            if let Response::Numbered { num, name, rest } = r {
                if name == "FETCH" {
                    let f = parse_fetch(num, rest).map_err(|e| ImapError::Protocol(e.0))?;
                    each(f)?;
                }
            }
            Ok(())
        })?;
        match answers.into_iter().find(Result::is_err) {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// `UID STORE set +FLAGS.SILENT (flags)` (`add`) or `-FLAGS.SILENT`. Flags that
    /// are not valid flag atoms are refused here, never sent.
    pub fn uid_store(
        &mut self,
        set: &UidSet,
        add: bool,
        flags: &[String],
    ) -> Result<(), ImapError> {
        if let Some(bad) = flags.iter().find(|f| !super::types::valid_flag(f)) {
            return Err(ImapError::Protocol(format!(
                "{bad:?} is not a flag that can be sent"
            )));
        }
        let sign = if add { '+' } else { '-' };
        let cmd = format!("UID STORE {set} {sign}FLAGS.SILENT ({})", flags.join(" "));
        self.simple("UID STORE", &[Part::Text(cmd.as_bytes())])
            .map(|_| ())
    }

    /// `UID EXPUNGE set` (UIDPLUS, RFC 4315): removes only these messages, whatever
    /// else is marked `\Deleted`.
    pub fn uid_expunge(&mut self, set: &UidSet) -> Result<(), ImapError> {
        let cmd = format!("UID EXPUNGE {set}");
        self.simple("UID EXPUNGE", &[Part::Text(cmd.as_bytes())])
            .map(|_| ())
    }

    /// Every UID of the selected folder: `UID SEARCH RETURN (ALL) ALL` (RFC 4731, a
    /// compact set) where ESEARCH is offered, else `UID SEARCH ALL`. Kept as ranges.
    pub fn uid_search_all(&mut self) -> Result<UidSet, ImapError> {
        self.uid_search("ALL")
    }

    /// Which UIDs of `set` still exist in the selected folder.
    pub fn uid_search_within(&mut self, set: &UidSet) -> Result<UidSet, ImapError> {
        self.uid_search(&format!("UID {set}"))
    }

    /// `UID SEARCH criteria` (made by mailferry, never from a server).
    fn uid_search(&mut self, criteria: &str) -> Result<UidSet, ImapError> {
        let esearch = self.has_cap("ESEARCH");
        let cmd = if esearch {
            format!("UID SEARCH RETURN (ALL) {criteria}")
        } else {
            format!("UID SEARCH {criteria}")
        };
        let cmd = cmd.as_bytes();
        let mut out: Option<UidSet> = None;
        let mut answers = 0;
        self.run("UID SEARCH", &[Part::Text(cmd)], |r| {
            match r {
                Response::Search(set) => {
                    answers += 1;
                    out = Some(set);
                }
                Response::Data { name, rest } if name == "ESEARCH" => {
                    answers += 1;
                    // (TAG "x") UID ALL set: the set follows the ALL atom.
                    let mut set = UidSet::default();
                    let mut it = rest.iter();
                    while let Some(v) = it.next() {
                        if v.is_atom("ALL") {
                            let text = it.next().and_then(|v| v.as_str()).unwrap_or("");
                            set = UidSet::parse(text).ok_or_else(|| {
                                ImapError::Protocol(format!(
                                    "ESEARCH answered ALL {}, which is not a set of UIDs",
                                    super::types::shown(text.as_bytes())
                                ))
                            })?;
                        }
                    }
                    out = Some(set);
                }
                _ => {}
            }
            Ok(())
        })?;
        if answers > 1 {
            return Err(ImapError::Protocol(format!(
                "the server answered one UID SEARCH {answers} times"
            )));
        }
        // No answer at all is an empty result (RFC 3501 always sends `* SEARCH`,
        // but servers with ESEARCH may omit an empty one).
        Ok(out.unwrap_or_default())
    }

    fn write_append(&mut self, tag: &str, a: &Append<'_>) -> Result<(), ImapError> {
        let mut head = b"APPEND ".to_vec();
        let quoted = quotable(a.mailbox);
        if quoted {
            head.extend_from_slice(&quote(a.mailbox));
        }
        let mut mid = Vec::new();
        if !a.flags.is_empty() {
            mid.extend_from_slice(b" (");
            mid.extend_from_slice(a.flags.join(" ").as_bytes());
            mid.push(b')');
        }
        if let Some(d) = a.internal_date {
            mid.extend_from_slice(format!(" \"{d}\"").as_bytes());
        }
        mid.push(b' ');
        let mut parts = vec![Part::Text(&head)];
        if !quoted {
            parts.push(Part::Literal(a.mailbox));
        }
        parts.push(Part::Text(&mid));
        parts.push(Part::Literal(a.body));
        self.write_command(tag, &parts, false)
    }

    /// APPEND one message; returns the new UID when the server reports APPENDUID.
    pub fn append(&mut self, a: &Append<'_>) -> Result<Option<AppendUid>, ImapError> {
        let tag = self.tag();
        self.begin();
        self.write_append(&tag, a)?;
        self.flush_out()?;
        let status = self.wait_tagged(&tag, "APPEND", &mut |_| Ok(()))?;
        Ok(appenduid(&status))
    }

    /// MULTIAPPEND (RFC 3502): several messages to one mailbox in one command, which
    /// the server stores in one transaction (all or none). Returns the new UIDs in
    /// order when the server reports APPENDUID with a UID set of the batch's size
    /// (a set of another size is ignored: the copies are found by key later).
    pub fn append_multi(
        &mut self,
        mailbox: &[u8],
        batch: &[Append<'_>],
    ) -> Result<Vec<Option<AppendUid>>, ImapError> {
        let mut q = Vec::new();
        let mut parts = vec![Part::Text(b"APPEND "), mailbox_part(mailbox, &mut q)];
        let mut heads = Vec::with_capacity(batch.len());
        for a in batch {
            let mut h = Vec::new();
            if !a.flags.is_empty() {
                h.extend_from_slice(b" (");
                h.extend_from_slice(a.flags.join(" ").as_bytes());
                h.push(b')');
            }
            if let Some(d) = a.internal_date {
                h.extend_from_slice(format!(" \"{d}\"").as_bytes());
            }
            h.push(b' ');
            heads.push(h);
        }
        for (h, a) in heads.iter().zip(batch) {
            parts.push(Part::Text(h));
            parts.push(Part::Literal(a.body));
        }
        let tag = self.tag();
        self.begin();
        self.write_command(&tag, &parts, false)?;
        self.flush_out()?;
        let status = self.wait_tagged(&tag, "APPEND", &mut |_| Ok(()))?;
        let uids: Vec<AppendUid> = match appenduid_set(&status) {
            Some((uidvalidity, set)) if set.len() == batch.len() as u64 => set
                .iter()
                .map(|uid| AppendUid { uidvalidity, uid })
                .collect(),
            _ => Vec::new(),
        };
        Ok((0..batch.len()).map(|i| uids.get(i).copied()).collect())
    }

    /// APPEND several messages. With LITERAL+ they are pipelined: all written at
    /// once, then the answers read in order. One result per message, in order; an
    /// error that is not a NO/BAD for one message (connection lost) ends the batch.
    pub fn append_many(
        &mut self,
        batch: &[Append<'_>],
    ) -> Result<Vec<Result<Option<AppendUid>, ImapError>>, ImapError> {
        if !self.has_cap("LITERAL+") {
            let mut out = Vec::new();
            for a in batch {
                match self.append(a) {
                    Err(e) if e.per_message() => out.push(Err(e)),
                    Err(e) => return Err(e),
                    Ok(uid) => out.push(Ok(uid)),
                }
            }
            return Ok(out);
        }
        let mut tags = Vec::with_capacity(batch.len());
        let mut results: HashMap<String, Result<Option<AppendUid>, ImapError>> = HashMap::new();
        self.begin();
        for a in batch {
            let tag = self.tag();
            match self.write_append(&tag, a) {
                // Refused before a byte was written: this message fails, the rest go on.
                Err(e @ ImapError::Unsafe(_)) => {
                    results.insert(tag.clone(), Err(e));
                }
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            if self.out.len() > 256 * 1024 {
                self.flush_out()?;
            }
            tags.push(tag);
        }
        self.flush_out()?;
        for tag in &tags {
            if results.contains_key(tag) {
                continue;
            }
            loop {
                match self.read_response()? {
                    Response::Tagged { tag: t, status } => {
                        if !tags.contains(&t) || results.contains_key(&t) {
                            return Err(ImapError::Protocol(format!(
                                "answer for unknown or already answered tag {}",
                                super::types::shown(t.as_bytes())
                            )));
                        }
                        let r = match status.kind {
                            StatusKind::Ok => Ok(appenduid(&status)),
                            _ => Err(ImapError::from_status("APPEND", status)),
                        };
                        let done = &t == tag;
                        results.insert(t, r);
                        // Each answer starts the next one's budget: a slow but
                        // steady target is not cut for the size of a batch.
                        self.begin();
                        if done {
                            break;
                        }
                    }
                    Response::UntaggedStatus(s) if s.kind == StatusKind::Bye => {
                        return Err(ImapError::Bye(s.describe()))
                    }
                    _ => {}
                }
            }
        }
        Ok(tags
            .iter()
            .map(|t| {
                results
                    .remove(t)
                    .unwrap_or_else(|| Err(ImapError::Protocol(format!("no answer for {t}"))))
            })
            .collect())
    }

    pub fn logout(&mut self) {
        let _ = self.simple("LOGOUT", &[Part::Text(b"LOGOUT")]);
    }
}

fn eof() -> ImapError {
    ImapError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the server closed the connection",
    ))
}

/// `[APPENDUID uidvalidity set]` (RFC 4315): the set lists the new UIDs in append
/// order. A malformed one is no APPENDUID (the copies are then found by key).
fn appenduid_set(status: &Status) -> Option<(u32, UidSet)> {
    if status.code_name().as_deref() != Some("APPENDUID") {
        return None;
    }
    let args = status.code_args();
    let validity = UidSet::parse(args.first()?)?;
    let set = UidSet::parse(args.get(1)?)?;
    (validity.len() == 1 && args.len() == 2).then(|| (validity.iter().next().unwrap_or(0), set))
}

fn appenduid(status: &Status) -> Option<AppendUid> {
    let (uidvalidity, set) = appenduid_set(status)?;
    let uid = set.iter().next().filter(|_| set.len() == 1)?;
    Some(AppendUid { uidvalidity, uid })
}

fn apply_select_code(sel: &mut Selected, s: &Status) {
    let args = s.code_args();
    match s.code_name().as_deref() {
        Some("UIDVALIDITY") => {
            // A non-zero 32-bit number (RFC 3501 `nz-number`); anything else is none.
            let v = args
                .first()
                .and_then(|a| UidSet::parse(a))
                .filter(|s| s.len() == 1);
            sel.uidvalidity = v.and_then(|s| s.iter().next()).unwrap_or(0);
            sel.uidvalidity_announced = sel.uidvalidity != 0;
        }
        Some("UIDNEXT") => sel.uidnext = args.first().and_then(|a| a.parse().ok()),
        Some("PERMANENTFLAGS") => {
            sel.permanent_flags = args
                .iter()
                .map(|a| a.trim_matches(|c| c == '(' || c == ')').to_string())
                .filter(|a| !a.is_empty())
                .collect()
        }
        _ => {}
    }
}

fn list_entry(rest: &[parse::Value]) -> Result<ListEntry, ImapError> {
    let bad = || ImapError::Protocol(format!("malformed LIST response: {rest:?}"));
    let attrs = rest
        .first()
        .and_then(|v| v.as_list())
        .ok_or_else(bad)?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let delim = match rest.get(1).ok_or_else(bad)? {
        parse::Value::Nil => None,
        v => v.as_bytes().and_then(|b| b.first()).map(|&c| c as char),
    };
    let raw = rest
        .get(2)
        .and_then(|v| v.as_bytes())
        .ok_or_else(bad)?
        .to_vec();
    Ok(ListEntry { attrs, delim, raw })
}

impl Client<crate::net::Stream> {
    /// COMPRESS DEFLATE (RFC 4978) where the server offers it and `wanted` says so
    /// for this connection (see [`crate::net::Compress`]); true when the stream is
    /// now compressed. A server that refuses keeps the connection uncompressed
    /// (said with `-v`); one that sends data after its OK, before compression,
    /// breaks the protocol.
    pub fn compress(&mut self, policy: crate::net::Compress) -> Result<bool, ImapError> {
        let stream = self.get_mut();
        if stream.is_compressed()
            || !policy.wanted(stream.is_loopback())
            || !self.has_cap("COMPRESS=DEFLATE")
        {
            return Ok(false);
        }
        match self.simple("COMPRESS", &[Part::Text(b"COMPRESS DEFLATE")]) {
            Ok(_) => {}
            Err(e @ (ImapError::No { .. } | ImapError::Bad { .. })) => {
                log::info(format!(
                    "{}: COMPRESS=DEFLATE refused ({}); going on uncompressed",
                    self.who,
                    e.server_words()
                ));
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        if !self.stream.buffer().is_empty() {
            return Err(ImapError::Protocol(
                "the server sent data after its OK to COMPRESS, before compressing".into(),
            ));
        }
        self.get_mut().start_deflate();
        log::info(format!("{}: COMPRESS=DEFLATE on", self.who));
        Ok(true)
    }
}

/// The first byte a command's text may not hold (CR, LF or NUL, named), if any:
/// only a literal may carry them.
fn forbidden_byte(parts: &[Part<'_>]) -> Option<&'static str> {
    parts.iter().find_map(|part| match part {
        Part::Text(t) => t.iter().find_map(|&c| match c {
            b'\r' => Some("CR"),
            b'\n' => Some("LF"),
            0 => Some("NUL"),
            _ => None,
        }),
        Part::Literal(_) => None,
    })
}

/// A literal's header: `{N+}` with LITERAL+ (non-synchronizing), else `{N}`.
fn literal_header(len: usize, literal_plus: bool) -> String {
    if literal_plus {
        format!("{{{len}+}}\r\n")
    } else {
        format!("{{{len}}}\r\n")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn append_limit_is_read_from_the_capabilities() {
        let caps = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // capabilities → limit
        let table: &[(&[&str], Option<u64>)] = &[
            (&["IMAP4rev1", "APPENDLIMIT=210763776"], Some(210_763_776)),
            (&["appendlimit=5"], Some(5)),
            (&["APPENDLIMIT"], None),
            (&["APPENDLIMIT="], None),
            (&["APPENDLIMIT=-1"], None),
            (&["APPENDLIMIT=12x"], None),
            (&["APPENDLIMIT=99999999999999999999"], None),
            (&["XAPPENDLIMIT=5"], None),
            (&[], None),
        ];
        for &(c, want) in table {
            assert_eq!(append_limit(&caps(c)), want, "{c:?}");
        }
    }

    use super::*;
    use crate::error::Retry;
    use std::io::Cursor;

    /// A replayed server: reads come from the transcript, writes are recorded.
    struct Replay {
        input: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }
    impl Read for Replay {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
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
    fn replay(server: &str) -> Client<Replay> {
        Client::new(
            Replay {
                input: Cursor::new(server.as_bytes().to_vec()),
                written: Vec::new(),
            },
            "test",
        )
    }

    #[test]
    fn command_text_never_holds_line_breaks_or_nul() {
        for (parts, want) in [
            (vec![Part::Text(b"LOGIN a b")], None),
            (vec![Part::Text(b"A\r\nB")], Some("CR")),
            (vec![Part::Text(b"A"), Part::Text(b"B\nC\r")], Some("LF")),
            (vec![Part::Text(b"A\0")], Some("NUL")),
            (vec![Part::Literal(b"x\r\ny\0"), Part::Text(b" ok")], None),
        ] {
            assert_eq!(forbidden_byte(&parts), want);
        }
        assert_eq!(literal_header(12, true), "{12+}\r\n");
        assert_eq!(literal_header(0, false), "{0}\r\n");
    }

    #[test]
    fn login_uses_sasl_ir_and_reads_capabilities() {
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN] ready\r\n",
            "M0001 OK [CAPABILITY IMAP4rev1 UIDPLUS LITERAL+ SPECIAL-USE] Logged in\r\n",
        ));
        c.greeting().unwrap();
        c.login("a@b.ch", "pw").unwrap();
        assert_eq!(
            String::from_utf8(c.get_mut().written.clone()).unwrap(),
            format!("M0001 AUTHENTICATE PLAIN {}\r\n", base64(b"\0a@b.ch\0pw"))
        );
        assert!(c.has_cap("UIDPLUS"));
    }

    #[test]
    fn commands_written_together_may_be_answered_in_any_order() {
        // The second FETCH answered first: both answers taken, every FETCH handed on.
        let mut c = replay(concat!(
            "* 1 FETCH (UID 5 RFC822.SIZE 10)\r\n",
            "M0002 OK second\r\n",
            "* 2 FETCH (UID 6 RFC822.SIZE 12)\r\n",
            "M0001 OK first\r\n",
        ));
        let mut seen = Vec::new();
        c.uid_fetch_many(
            &[("5", "(UID RFC822.SIZE)"), ("6", "(UID RFC822.SIZE)")],
            |f| {
                seen.push((f.uid, f.size));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, vec![(Some(5), Some(10)), (Some(6), Some(12))]);
        // A NO for one of them is returned once both are answered.
        let mut c = replay("M0002 OK second\r\nM0001 NO [SERVERBUG] broken\r\n");
        let e = c
            .uid_fetch_many(&[("5", "(UID)"), ("6", "(UID)")], |_| Ok(()))
            .unwrap_err();
        assert!(e.server_words().contains("broken"), "{e}");
        // CREATE and SUBSCRIBE answered the other way round.
        let mut c = replay("M0002 OK subscribed\r\nM0001 OK created\r\n");
        assert!(matches!(
            c.create_subscribed(b"Work", None),
            Ok((true, Ok(())))
        ));
        // A tag that is none of ours is a protocol error.
        let mut c = replay("M0009 OK what\r\n");
        let e = c
            .uid_fetch_many(&[("5", "(UID)"), ("6", "(UID)")], |_| Ok(()))
            .unwrap_err();
        assert!(e.to_string().contains("unknown tag M0009"), "{e}");
    }

    #[test]
    fn create_goes_out_with_its_subscribe_and_a_failed_one_is_taken_back() {
        // Created: one write of both, both answers read.
        let mut c = replay("M0001 OK created\r\nM0002 OK subscribed\r\n");
        assert!(matches!(
            c.create_subscribed(b"Work", None),
            Ok((true, Ok(())))
        ));
        assert_eq!(
            written(&mut c),
            "M0001 CREATE \"Work\"\r\nM0002 SUBSCRIBE \"Work\"\r\n"
        );
        // Refused and not there (LIST shows nothing): the subscription is taken
        // back and the CREATE's refusal returned with the server's words.
        let mut c = replay(concat!(
            "M0001 NO [CANNOT] bad name\r\n",
            "M0002 OK subscribed\r\n",
            "M0003 OK listed\r\n",
            "M0004 OK unsubscribed\r\n",
        ));
        let e = c.create_subscribed(b"a/b", None).unwrap_err();
        assert!(e.server_words().contains("bad name"), "{e}");
        assert!(written(&mut c).ends_with("M0004 UNSUBSCRIBE \"a/b\"\r\n"));
        // Refused because it exists: success, subscribed.
        let mut c = replay(concat!(
            "M0001 NO [ALREADYEXISTS] exists\r\n",
            "M0002 OK subscribed\r\n",
            "* LIST () \"/\" Work\r\n",
            "M0003 OK listed\r\n",
        ));
        assert!(matches!(
            c.create_subscribed(b"Work", None),
            Ok((false, Ok(())))
        ));
        // A refused SUBSCRIBE does not fail the folder: it is handed back inside.
        let mut c = replay("M0001 OK created\r\nM0002 NO not now\r\n");
        assert!(matches!(
            c.create_subscribed(b"Work", None),
            Ok((true, Err(_)))
        ));
        // CREATE-SPECIAL-USE: USE first; refused, the plain CREATE (subscribed again).
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 CREATE-SPECIAL-USE] ready\r\n",
            "M0001 NO [USEATTR] no\r\n",
            "M0002 OK subscribed\r\n",
            "M0003 OK created\r\n",
            "M0004 OK subscribed\r\n",
        ));
        c.greeting().unwrap();
        assert!(matches!(
            c.create_subscribed(b"Sent", Some("\\Sent")),
            Ok((true, Ok(())))
        ));
        assert_eq!(
            written(&mut c),
            concat!(
                "M0001 CREATE \"Sent\" (USE (\\Sent))\r\nM0002 SUBSCRIBE \"Sent\"\r\n",
                "M0003 CREATE \"Sent\"\r\nM0004 SUBSCRIBE \"Sent\"\r\n"
            )
        );
    }

    #[test]
    fn namespace_is_asked_once_a_session() {
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 NAMESPACE] ready\r\n",
            "* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"#shared.\" \".\"))\r\n",
            "M0001 OK done\r\n",
        ));
        c.greeting().unwrap();
        let first = c.namespaces().unwrap().expect("announced");
        assert_eq!(first.personal, vec![(b"INBOX.".to_vec(), Some('.'))]);
        // Asked again (the layout, the shared-folder filter): from memory.
        assert_eq!(c.namespaces().unwrap(), Some(first.clone()));
        assert_eq!(
            c.personal_namespace().unwrap(),
            Some((b"INBOX.".to_vec(), Some('.')))
        );
        assert_eq!(written(&mut c), "M0001 NAMESPACE\r\n");
    }

    fn written(c: &mut Client<Replay>) -> String {
        String::from_utf8(c.get_mut().written.clone()).unwrap()
    }

    #[test]
    fn admin_login_sends_plain_with_the_mailbox_as_authzid() {
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n",
            "M0001 OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n",
        ));
        c.greeting().unwrap();
        let login = Login::Admin {
            admin: "admin",
            password: "s3cret",
        };
        c.authenticate("anna@x.ch", &login).unwrap();
        assert_eq!(
            written(&mut c),
            format!(
                "M0001 AUTHENTICATE PLAIN {}\r\n",
                base64(b"anna@x.ch\0admin\0s3cret")
            )
        );
    }

    #[test]
    fn admin_login_without_sasl_ir_waits_for_the_continuation() {
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n",
            "+ \r\n",
            "M0001 OK [CAPABILITY IMAP4rev1] Logged in\r\n",
        ));
        c.greeting().unwrap();
        let login = Login::Admin {
            admin: "admin",
            password: "s3cret",
        };
        c.authenticate("anna@x.ch", &login).unwrap();
        assert_eq!(
            written(&mut c),
            format!(
                "M0001 AUTHENTICATE PLAIN\r\n{}\r\n",
                base64(b"anna@x.ch\0admin\0s3cret")
            )
        );
    }

    #[test]
    fn admin_login_needs_auth_plain_and_sends_nothing_without_it() {
        let mut c = replay("* OK [CAPABILITY IMAP4rev1 AUTH=LOGIN] ready\r\n");
        c.greeting().unwrap();
        let login = Login::Admin {
            admin: "admin",
            password: "s3cret",
        };
        let err = c.authenticate("anna@x.ch", &login).unwrap_err();
        assert!(err.to_string().contains("SASL PLAIN"), "{err}");
        assert!(c.get_mut().written.is_empty());
    }

    #[test]
    fn a_token_goes_with_xoauth2_where_offered() {
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER] ready\r\n",
            "M0001 OK Logged in\r\n",
            "* CAPABILITY IMAP4rev1 UIDPLUS\r\nM0002 OK done\r\n",
        ));
        c.greeting().unwrap();
        c.authenticate("anna@x.ch", &Login::Bearer("tok")).unwrap();
        assert_eq!(
            written(&mut c),
            format!(
                "M0001 AUTHENTICATE XOAUTH2 {}\r\nM0002 CAPABILITY\r\n",
                base64(b"user=anna@x.ch\x01auth=Bearer tok\x01\x01")
            )
        );
        assert!(c.has_cap("UIDPLUS"));
    }

    #[test]
    fn a_token_goes_with_oauthbearer_when_only_it_is_offered() {
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 AUTH=OAUTHBEARER] ready\r\n",
            "+ \r\n",
            "M0001 OK [CAPABILITY IMAP4rev1] Logged in\r\n",
        ));
        c.greeting().unwrap();
        c.authenticate("anna@x.ch", &Login::Bearer("tok")).unwrap();
        assert_eq!(
            written(&mut c),
            format!(
                "M0001 AUTHENTICATE OAUTHBEARER\r\n{}\r\n",
                base64(b"n,a=anna@x.ch,\x01auth=Bearer tok\x01\x01")
            )
        );
    }

    #[test]
    fn a_refused_token_is_acknowledged_and_keeps_the_server_words() {
        // The server's error challenge (base64 JSON) is answered with an empty
        // line (XOAUTH2) or AQ== (OAUTHBEARER); then the tagged NO comes.
        for (caps, mech, abort) in [
            ("AUTH=XOAUTH2", "XOAUTH2", ""),
            ("AUTH=OAUTHBEARER", "OAUTHBEARER", "AQ=="),
        ] {
            let mut c = replay(&format!(
                "* OK [CAPABILITY IMAP4rev1 SASL-IR {caps}] ready\r\n\
                 + eyJzdGF0dXMiOiI0MDEifQ==\r\n\
                 M0001 NO [AUTHENTICATIONFAILED] AccessTokenExpired\r\n"
            ));
            c.greeting().unwrap();
            let err = c
                .authenticate("anna@x.ch", &Login::Bearer("tok"))
                .unwrap_err();
            assert!(matches!(err, ImapError::No { .. }), "{err}");
            assert!(err.to_string().contains("AccessTokenExpired"), "{err}");
            assert_eq!(err.retry(), Retry::Final);
            let w = written(&mut c);
            assert!(w.starts_with(&format!("M0001 AUTHENTICATE {mech} ")), "{w}");
            assert!(w.ends_with(&format!("\r\n{abort}\r\n")), "{w}");
        }
    }

    #[test]
    fn a_token_needs_a_bearer_mechanism_and_sends_nothing_without_it() {
        let mut c = replay("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n");
        c.greeting().unwrap();
        let err = c
            .authenticate("anna@x.ch", &Login::Bearer("tok"))
            .unwrap_err();
        assert!(err.to_string().contains("XOAUTH2"), "{err}");
        assert!(c.get_mut().written.is_empty());
    }

    /// Dovecot treats loopback connections as secure and never announces
    /// LOGINDISABLED to the test bed, so this one is a transcript.
    #[test]
    fn logindisabled_means_no_credentials_are_sent() {
        let mut c = replay("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED STARTTLS] ready\r\n");
        c.greeting().unwrap();
        let err = c.login("a@b.ch", "pw").unwrap_err();
        assert!(err.to_string().contains("LOGINDISABLED"), "{err}");
        assert!(c.get_mut().written.is_empty(), "nothing was sent");
    }

    #[test]
    fn login_failure_keeps_server_words() {
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 AUTH=LOGIN] ready\r\n",
            "M0001 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        ));
        c.greeting().unwrap();
        let err = c.login("a@b.ch", "p\"w").unwrap_err();
        assert!(matches!(err, ImapError::No { .. }));
        assert!(err
            .to_string()
            .contains("[AUTHENTICATIONFAILED] Authentication failed."));
        assert_eq!(
            String::from_utf8(c.get_mut().written.clone()).unwrap(),
            "M0001 LOGIN \"a@b.ch\" \"p\\\"w\"\r\n"
        );
    }

    #[test]
    fn uid_search_all_reads_esearch_sets_and_plain_lists() {
        // Dovecot's answer with ESEARCH (RFC 4731): one compact set.
        let mut c = replay(concat!(
            "* ESEARCH (TAG \"M0001\") UID ALL 1:3,7,10:11\r\n",
            "M0001 OK Search completed.\r\n",
        ));
        c.caps = vec!["IMAP4rev1".into(), "ESEARCH".into()];
        assert_eq!(c.uid_search_all().unwrap().to_string(), "1:3,7,10:11");
        assert_eq!(
            c.get_mut().written,
            b"M0001 UID SEARCH RETURN (ALL) ALL\r\n"
        );
        // Without ESEARCH: every UID listed, in any order.
        let mut c = replay("* SEARCH 9 4 5\r\nM0001 OK done\r\n");
        assert_eq!(c.uid_search_all().unwrap().to_string(), "4:5,9");
        assert_eq!(c.get_mut().written, b"M0001 UID SEARCH ALL\r\n");
        // An empty folder: ESEARCH without ALL.
        let mut c = replay("* ESEARCH (TAG \"M0001\") UID\r\nM0001 OK done\r\n");
        c.caps = vec!["ESEARCH".into()];
        assert!(c.uid_search_all().unwrap().is_empty());
    }

    #[test]
    fn select_reads_uidvalidity_and_permanent_flags() {
        let mut c = replay(concat!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n",
            "* 3 EXISTS\r\n",
            "* OK [UIDVALIDITY 1700000001] UIDs valid\r\n",
            "* OK [UIDNEXT 4] Predicted next UID\r\n",
            "M0001 OK [READ-ONLY] Examine completed.\r\n",
        ));
        let sel = c.select(b"INBOX", true).unwrap();
        assert_eq!(sel.exists, 3);
        assert_eq!(sel.uidvalidity, 1700000001);
        assert_eq!(sel.uidnext, Some(4));
        assert!(sel.permanent_flags.contains(&"\\*".to_string()));
        assert_eq!(c.get_mut().written, b"M0001 EXAMINE \"INBOX\"\r\n");
    }

    #[test]
    fn pipelined_appends_match_answers_in_order() {
        let date = ImapDate::parse("01-Jan-2020 10:00:00 +0000").unwrap();
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n",
            "M0001 OK [APPENDUID 7 10] Append completed.\r\n",
            "M0002 NO [LIMIT] Message too large\r\n",
            "M0003 OK [APPENDUID 7 11] Append completed.\r\n",
        ));
        c.greeting().unwrap();
        let flags = vec!["\\Seen".to_string()];
        let msgs: Vec<Append> = [&b"a\r\n"[..], b"bb\r\n", b"ccc\r\n"]
            .iter()
            .map(|b| Append {
                mailbox: b"INBOX",
                flags: &flags,
                internal_date: Some(&date),
                body: b,
            })
            .collect();
        let res = c.append_many(&msgs).unwrap();
        assert_eq!(res[0].as_ref().unwrap().unwrap().uid, 10);
        assert!(res[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("Message too large"));
        assert_eq!(res[2].as_ref().unwrap().unwrap().uid, 11);
        let w = String::from_utf8(c.get_mut().written.clone()).unwrap();
        assert!(w.starts_with(
            "M0001 APPEND \"INBOX\" (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {3+}\r\na\r\n\r\n"
        ));
    }

    #[test]
    fn multiappend_sends_one_command_and_maps_the_uid_set() {
        let date = ImapDate::parse("01-Jan-2020 10:00:00 +0000").unwrap();
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND] ready\r\n",
            "M0001 OK [APPENDUID 7 10:11] Append completed.\r\n",
        ));
        c.greeting().unwrap();
        let flags = vec!["\\Seen".to_string()];
        let msgs = [
            Append {
                mailbox: b"INBOX",
                flags: &flags,
                internal_date: None,
                body: b"a\r\n",
            },
            Append {
                mailbox: b"INBOX",
                flags: &[],
                internal_date: Some(&date),
                body: b"bb\r\n",
            },
        ];
        assert_eq!(
            c.append_multi(b"INBOX", &msgs).unwrap(),
            vec![
                Some(AppendUid {
                    uidvalidity: 7,
                    uid: 10
                }),
                Some(AppendUid {
                    uidvalidity: 7,
                    uid: 11
                })
            ]
        );
        assert_eq!(
            String::from_utf8(c.get_mut().written.clone()).unwrap(),
            "M0001 APPEND \"INBOX\" (\\Seen) {3+}\r\na\r\n \"01-Jan-2020 10:00:00 +0000\" {4+}\r\nbb\r\n\r\n"
        );
    }

    #[test]
    fn synchronizing_literal_waits_for_continuation() {
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1] ready\r\n",
            "+ go ahead\r\n",
            "M0001 OK Append completed.\r\n",
        ));
        c.greeting().unwrap();
        let uid = c
            .append(&Append {
                mailbox: b"INBOX",
                flags: &[],
                internal_date: None,
                body: b"x\r\n",
            })
            .unwrap();
        assert_eq!(uid, None);
        assert_eq!(
            c.get_mut().written,
            b"M0001 APPEND \"INBOX\" {3}\r\nx\r\n\r\n"
        );
    }

    #[test]
    fn a_command_with_a_line_break_outside_a_literal_is_never_sent() {
        let mut c = replay("* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n");
        c.greeting().unwrap();
        for text in [&b"NOOP\r\nX1 CREATE evil"[..], b"NOOP\nX", b"NOOP\0"] {
            let err = c.simple("NOOP", &[Part::Text(text)]).unwrap_err();
            assert!(matches!(err, ImapError::Unsafe(_)), "{err}");
            assert_eq!(err.retry(), Retry::Final);
        }
        assert!(c.get_mut().written.is_empty(), "nothing was sent");
        // In a pipelined batch only the message with the bad value fails; its
        // neighbours go, and nothing of it is on the wire.
        let mut c = replay(concat!(
            "* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n",
            "M0001 OK [APPENDUID 7 1] done\r\n",
            "M0003 OK [APPENDUID 7 2] done\r\n",
        ));
        c.greeting().unwrap();
        let good = vec!["\\Seen".to_string()];
        let bad = vec!["\\Seen\r\nX CREATE evil".to_string()];
        let msgs: Vec<Append> = [&good, &bad, &good]
            .iter()
            .map(|f| Append {
                mailbox: b"INBOX",
                flags: f,
                internal_date: None,
                body: b"x\r\n",
            })
            .collect();
        let res = c.append_many(&msgs).unwrap();
        assert!(res[0].is_ok() && res[2].is_ok());
        assert!(matches!(res[1], Err(ImapError::Unsafe(_))));
        let w = String::from_utf8(c.get_mut().written.clone()).unwrap();
        assert!(!w.contains("evil") && !w.contains("M0002"), "{w}");
    }

    #[test]
    fn lines_and_literals_are_bounded() {
        // Before login: 64 KiB.
        let long = format!("* OK {}\r\n", "a".repeat(70_000));
        let err = replay(&long).greeting().unwrap_err();
        assert!(matches!(err, ImapError::Limit(_)), "{err}");
        assert!(
            err.to_string().contains("65536 bytes (limit before login)"),
            "{err}"
        );
        assert_eq!(err.retry(), Retry::Final);
        // After login the same line is fine.
        let mut c = replay(&format!("{long}M0001 OK done\r\n"));
        c.max_line = limits::MAX_LINE;
        c.simple("NOOP", &[Part::Text(b"NOOP")]).unwrap();
        // A literal over the limit is refused from its announcement.
        let mut c = replay("* 1 FETCH (BODY[] {1073741825}\r\nxx");
        c.max_line = limits::MAX_LINE;
        let err = c.simple("NOOP", &[Part::Text(b"NOOP")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("1073741825 bytes, more than 1073741824"),
            "{err}"
        );
        // An announcement alone allocates nothing big: the stream ends first.
        let mut c = replay("* 1 FETCH (BODY[] {1000000000}\r\nxx");
        c.max_line = limits::MAX_LINE;
        let err = c.simple("NOOP", &[Part::Text(b"NOOP")]).unwrap_err();
        assert!(matches!(err, ImapError::Io(_)), "{err}");
    }

    #[test]
    fn appenduid_is_read_with_its_uidvalidity_and_malformed_ones_are_none() {
        for (code, want) in [
            ("APPENDUID 7 10", Some((7, 10))),
            ("APPENDUID 4294967295 1", Some((4294967295, 1))),
            ("APPENDUID 0 10", None),
            ("APPENDUID 7 0", None),
            ("APPENDUID 7 -1", None),
            ("APPENDUID 7 4294967296", None),
            ("APPENDUID 7 10:11", None),
            ("APPENDUID 7", None),
            ("APPENDUID 7 10 11", None),
            ("UIDNEXT 10", None),
        ] {
            let status = Status {
                kind: StatusKind::Ok,
                code: Some(code.into()),
                text: String::new(),
            };
            assert_eq!(
                appenduid(&status).map(|a| (a.uidvalidity, a.uid)),
                want,
                "{code}"
            );
        }
    }

    #[test]
    fn uidvalidity_and_exists_say_whether_they_were_announced() {
        for (lines, validity, announced, exists) in [
            ("* 2 EXISTS\r\n* OK [UIDVALIDITY 9] x\r\n", 9, true, Some(2)),
            ("* 2 EXISTS\r\n", 0, false, Some(2)),
            (
                "* 2 EXISTS\r\n* OK [UIDVALIDITY 0] x\r\n",
                0,
                false,
                Some(2),
            ),
            ("* OK [UIDVALIDITY -3] x\r\n", 0, false, None),
            ("* OK [UIDVALIDITY 4294967296] x\r\n", 0, false, None),
        ] {
            let mut c = replay(&format!("{lines}M0001 OK done\r\n"));
            let sel = c.select(b"INBOX", true).unwrap();
            assert_eq!(
                (sel.uidvalidity, sel.uidvalidity_announced),
                (validity, announced),
                "{lines}"
            );
            assert_eq!(
                sel.exists_announced.then_some(sel.exists),
                exists,
                "{lines}"
            );
            assert_eq!(c.exists(), exists);
        }
    }

    #[test]
    fn foreign_folders_are_told_by_the_longest_namespace_prefix() {
        let ns = |p: &[(&str, char)], o: &[(&str, char)]| Namespaces {
            personal: p
                .iter()
                .map(|(x, d)| (x.as_bytes().to_vec(), Some(*d)))
                .collect(),
            others: o
                .iter()
                .map(|(x, d)| (x.as_bytes().to_vec(), Some(*d)))
                .collect(),
        };
        // Cyrus default: shared has the empty prefix.
        let cyrus = ns(&[("INBOX.", '.')], &[("user.", '.'), ("", '.')]);
        // Cyrus altnamespace.
        let alt = ns(
            &[("", '/')],
            &[("Other Users/", '/'), ("Shared Folders/", '/')],
        );
        for (n, raw, foreign) in [
            (&cyrus, "INBOX", false),
            (&cyrus, "INBOX.Sent", false),
            (&cyrus, "user.bob.Shared", true),
            (&cyrus, "user", true),
            (&cyrus, "Company News", true),
            (&alt, "Sent", false),
            (&alt, "Other Users/bob/Shared", true),
            (&alt, "Shared Folders/News", true),
            (&alt, "Other Users", true),
            (&alt, "Other Usersx", false),
        ] {
            assert_eq!(n.is_foreign(raw.as_bytes()), foreign, "{raw}");
        }
    }

    #[test]
    fn bye_then_eof_is_reported_as_bye() {
        let mut c = replay("* BYE Server shutting down.\r\n");
        let err = c.simple("NOOP", &[Part::Text(b"NOOP")]).unwrap_err();
        assert!(matches!(err, ImapError::Bye(ref t) if t.contains("shutting down")));
    }
}
