//! Parsing of IMAP4rev1 server responses (RFC 3501 section 9), byte-exact.
//!
//! The reader hands this module one complete response: its text, and either every
//! literal inlined after its announcement (`{N}\r\n` then exactly N bytes) or the
//! literals read apart, in order ([`parse_response_with`]), which are then moved into
//! the values without a copy. Literal bytes never pass through a text conversion:
//! message bodies stay opaque.
//! Status responses (`OK`/`NO`/`BAD`/`BYE`/`PREAUTH`) keep the server's own words and
//! response code so errors can show them to the user.
//!
//! The server is not trusted: every loop here consumes input or stops, lists nest
//! at most [`MAX_DEPTH`] deep, a response holds at most [`MAX_VALUES`] values, a
//! quoted string never spans a line, and numbers that must be UIDs are non-zero
//! 32-bit values or the response is refused. A `* SEARCH` answer is read straight
//! into UIDs (4 bytes each), not into values.

use std::fmt;

use super::types::{shown, valid_flag, ImapDate, UidSet};
use crate::limits::{MAX_DEPTH, MAX_LITERAL, MAX_VALUES};

/// One parsed token of a response.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom (also flags like `\Seen` and section specs like `BODY[]`).
    Atom(Vec<u8>),
    /// A quoted string or a literal, unescaped.
    Str(Vec<u8>),
    Nil,
    List(Vec<Value>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Atom(a) => write!(f, "{}", String::from_utf8_lossy(a)),
            Value::Str(s) if s.len() > 80 => write!(f, "<{} bytes>", s.len()),
            Value::Str(s) => write!(f, "{:?}", String::from_utf8_lossy(s)),
            Value::Nil => write!(f, "NIL"),
            Value::List(l) => f.debug_list().entries(l).finish(),
        }
    }
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(b) | Value::Str(b) => Some(b),
            _ => None,
        }
    }
    /// The bytes of an atom or string, moved out.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Value::Atom(b) | Value::Str(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Atom(b) if !b.is_empty() && b.iter().all(u8::is_ascii_digit) => {
                std::str::from_utf8(b).ok()?.parse().ok()
            }
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn is_atom(&self, word: &str) -> bool {
        matches!(self, Value::Atom(a) if a.eq_ignore_ascii_case(word.as_bytes()))
    }
}

/// The status part of `OK`/`NO`/`BAD`/`BYE`/`PREAUTH` responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub kind: StatusKind,
    /// The bracketed response code without brackets, e.g. `APPENDUID 38505 3955`.
    pub code: Option<String>,
    /// The human-readable text, as the server sent it.
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

impl Status {
    /// The first word of the response code, upper-cased (`APPENDUID`, `OVERQUOTA`, …).
    pub fn code_name(&self) -> Option<String> {
        self.code
            .as_ref()
            .map(|c| c.split(' ').next().unwrap_or("").to_ascii_uppercase())
    }
    /// Arguments of the response code after its name.
    pub fn code_args(&self) -> Vec<&str> {
        self.code
            .as_deref()
            .map(|c| c.split(' ').skip(1).collect())
            .unwrap_or_default()
    }
    /// "[CODE] text" as the server said it.
    pub fn describe(&self) -> String {
        match &self.code {
            Some(c) => format!("[{c}] {}", self.text),
            None => self.text.clone(),
        }
    }
}

/// One complete server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `TAG OK|NO|BAD ...`
    Tagged { tag: String, status: Status },
    /// `* OK|NO|BAD|BYE|PREAUTH ...`
    UntaggedStatus(Status),
    /// `* N EXISTS|RECENT|EXPUNGE|FETCH ...`: the number and the rest.
    Numbered {
        num: u32,
        name: String,
        rest: Vec<Value>,
    },
    /// `* NAME ...` (CAPABILITY, LIST, FLAGS, SEARCH, NAMESPACE, STATUS, ENABLED, …).
    Data { name: String, rest: Vec<Value> },
    /// `+ text`
    Continue(String),
    /// `* SEARCH n n n …`: the UIDs (or sequence numbers), as a set of ranges.
    Search(UidSet),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    /// Literals read apart from the text, taken in order; `None`: inlined in `b`.
    apart: Option<std::collections::VecDeque<Vec<u8>>>,
    depth: usize,
    values: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }
    fn at_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r') | Some(b'\n'))
    }
    /// Up to the next space (or end of line), for the tag and response names.
    fn word(&mut self) -> &'a [u8] {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\r' || c == b'\n' {
                break;
            }
            self.pos += 1;
        }
        &self.b[start..self.pos]
    }
    fn rest_of_line(&mut self) -> &'a [u8] {
        let start = self.pos;
        let mut end = self.b.len();
        while end > start && matches!(self.b[end - 1], b'\r' | b'\n') {
            end -= 1;
        }
        self.pos = self.b.len();
        &self.b[start..end]
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        self.skip_spaces();
        self.values += 1;
        if self.values > MAX_VALUES {
            return err(format!(
                "the response has more than {MAX_VALUES} values (limit)"
            ));
        }
        match self.peek() {
            None => err("response ended where a value was expected"),
            Some(b'(') => self.list(),
            Some(b')') => err("a ')' that closes no list"),
            Some(b'"') => self.quoted(),
            Some(b'{') | Some(b'~') => self.literal(),
            Some(_) => self.atom(),
        }
    }

    /// A parenthesized list, at its `(`; nested at most [`MAX_DEPTH`] deep.
    fn list(&mut self) -> Result<Value, ParseError> {
        self.pos += 1;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(format!(
                "the response nests lists more than {MAX_DEPTH} deep (limit)"
            ));
        }
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Value::List(items));
                }
                None | Some(b'\r') | Some(b'\n') => return err("unterminated list"),
                _ => items.push(self.value()?),
            }
        }
    }

    /// A quoted string, at its `"`, with its backslash escapes undone.
    fn quoted(&mut self) -> Result<Value, ParseError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return err("unterminated quoted string"),
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => out.push(c),
                        None => return err("unterminated quoted string"),
                    }
                    self.pos += 1;
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Value::Str(out));
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// An atom (brackets kept whole: `BODY[HEADER.FIELDS (A B)]`), or NIL.
    fn atom(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' | b'(' | b')' if depth == 0 => break,
                b'\r' | b'\n' => break,
                _ => {}
            }
            self.pos += 1;
        }
        let atom = &self.b[start..self.pos];
        if atom.is_empty() {
            // Nothing consumed: refuse rather than loop.
            return err("a value was expected");
        }
        if atom.eq_ignore_ascii_case(b"NIL") {
            Ok(Value::Nil)
        } else {
            Ok(Value::Atom(atom.to_vec()))
        }
    }

    fn literal(&mut self) -> Result<Value, ParseError> {
        if self.peek() == Some(b'~') {
            self.pos += 1;
        }
        if self.peek() != Some(b'{') {
            return err("a '~' that starts no literal");
        }
        self.pos += 1;
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let len: usize = std::str::from_utf8(&self.b[start..self.pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ParseError("bad literal length".into()))?;
        if len > MAX_LITERAL {
            return err(format!(
                "a literal of {len} bytes, more than {MAX_LITERAL} (limit)"
            ));
        }
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        if self.b.get(self.pos..self.pos + 3) != Some(b"}\r\n") {
            return err("bad literal header");
        }
        self.pos += 3;
        if let Some(apart) = &mut self.apart {
            return match apart.pop_front() {
                Some(data) if data.len() == len => Ok(Value::Str(data)),
                _ => err("literal missing or of the wrong length"),
            };
        }
        let end = self.pos + len;
        if end > self.b.len() {
            return err("literal longer than the response");
        }
        let data = self.b[self.pos..end].to_vec();
        self.pos = end;
        Ok(Value::Str(data))
    }

    fn values(&mut self) -> Result<Vec<Value>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_spaces();
            if self.at_end() {
                return Ok(out);
            }
            out.push(self.value()?);
        }
    }

    fn status(&mut self, kind: StatusKind) -> Status {
        self.skip_spaces();
        let mut code = None;
        if self.peek() == Some(b'[') {
            let start = self.pos + 1;
            let mut depth = 0usize;
            while let Some(c) = self.peek() {
                if c == b'[' {
                    depth += 1;
                } else if c == b']' {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                } else if c == b'\r' || c == b'\n' {
                    break;
                }
                self.pos += 1;
            }
            code = Some(
                String::from_utf8_lossy(&self.b[start..self.pos.min(self.b.len())]).into_owned(),
            );
            if self.peek() == Some(b']') {
                self.pos += 1;
            }
            self.skip_spaces();
        }
        let text = String::from_utf8_lossy(self.rest_of_line()).into_owned();
        Status { kind, code, text }
    }
}

fn status_kind(word: &[u8]) -> Option<StatusKind> {
    match word.to_ascii_uppercase().as_slice() {
        b"OK" => Some(StatusKind::Ok),
        b"NO" => Some(StatusKind::No),
        b"BAD" => Some(StatusKind::Bad),
        b"BYE" => Some(StatusKind::Bye),
        b"PREAUTH" => Some(StatusKind::Preauth),
        _ => None,
    }
}

/// Parse one complete response (literals inlined, final CRLF included or not).
pub fn parse_response(b: &[u8]) -> Result<Response, ParseError> {
    parse(Cursor {
        b,
        pos: 0,
        apart: None,
        depth: 0,
        values: 0,
    })
}

/// Parse one response whose text `b` keeps each literal's announcement but not its
/// bytes, which are `literals`, in order: they are moved into the result, not copied.
pub fn parse_response_with(b: &[u8], literals: Vec<Vec<u8>>) -> Result<Response, ParseError> {
    parse(Cursor {
        b,
        pos: 0,
        apart: Some(literals.into()),
        depth: 0,
        values: 0,
    })
}

fn parse(mut c: Cursor<'_>) -> Result<Response, ParseError> {
    let b = c.b;
    let tag = c.word();
    c.skip_spaces();
    match tag {
        b"+" => Ok(Response::Continue(
            String::from_utf8_lossy(c.rest_of_line()).into_owned(),
        )),
        b"*" => {
            let word = c.word();
            if let Some(kind) = status_kind(word) {
                return Ok(Response::UntaggedStatus(c.status(kind)));
            }
            if let Some(num) = std::str::from_utf8(word).ok().and_then(|s| s.parse().ok()) {
                c.skip_spaces();
                let name = String::from_utf8_lossy(c.word()).to_ascii_uppercase();
                let rest = c.values()?;
                return Ok(Response::Numbered { num, name, rest });
            }
            let name = String::from_utf8_lossy(word).to_ascii_uppercase();
            if name == "SEARCH" {
                return search_numbers(c.rest_of_line()).map(Response::Search);
            }
            let rest = c.values()?;
            Ok(Response::Data { name, rest })
        }
        _ => {
            let tag = String::from_utf8_lossy(tag).into_owned();
            let word = c.word();
            match status_kind(word) {
                Some(kind) => Ok(Response::Tagged {
                    tag,
                    status: c.status(kind),
                }),
                None => err(format!(
                    "unexpected response: {}",
                    String::from_utf8_lossy(&b[..b.len().min(200)])
                )),
            }
        }
    }
}

/// The numbers of a `* SEARCH` answer: each a non-zero 32-bit number.
fn search_numbers(line: &[u8]) -> Result<UidSet, ParseError> {
    let mut out = Vec::new();
    for word in line.split(|&c| c == b' ').filter(|w| !w.is_empty()) {
        match std::str::from_utf8(word)
            .ok()
            .and_then(|w| w.parse::<u32>().ok())
        {
            Some(n) if n > 0 && word.iter().all(u8::is_ascii_digit) => out.push(n),
            _ => {
                return err(format!(
                    "SEARCH answered {}, which is not a UID (a number from 1 to 4294967295)",
                    shown(word)
                ))
            }
        }
    }
    Ok(UidSet::from_uids(out))
}

/// A UID: a non-zero 32-bit number written as digits (RFC 3501 `nz-number`).
pub fn nz_number(v: &Value) -> Option<u32> {
    let b = v.as_bytes().filter(|_| matches!(v, Value::Atom(_)))?;
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok().filter(|&n| n > 0)
}

/// If `line` (ending in CRLF or LF) ends with a literal announcement `{N}` / `{N+}` /
/// `~{N}`, the number of bytes that follow.
pub fn trailing_literal(line: &[u8]) -> Option<usize> {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    let l = &line[..end];
    if l.last() != Some(&b'}') {
        return None;
    }
    let open = l.iter().rposition(|&c| c == b'{')?;
    let mut digits = &l[open + 1..l.len() - 1];
    if digits.last() == Some(&b'+') {
        digits = &digits[..digits.len() - 1];
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The attributes of one `* N FETCH (...)` response.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub seq: u32,
    pub uid: Option<u32>,
    pub flags: Option<Vec<String>>,
    pub internal_date: Option<ImapDate>,
    /// A value of this message that is not what it must be (see `Meta::problem`).
    pub problem: Option<String>,
    pub size: Option<u64>,
    /// `BODY[]` / `BINARY[]` / `RFC822`: the whole message.
    pub body: Option<Vec<u8>>,
    /// `BODY[HEADER.FIELDS (...)]`: the requested header lines.
    pub header_fields: Option<Vec<u8>>,
    /// Gmail's `X-GM-LABELS`: the message's labels (atoms or strings, as text).
    pub labels: Option<Vec<String>>,
}

/// A value for an error message, escaped and short.
fn shown_value(v: &Value) -> String {
    match v {
        Value::Atom(b) | Value::Str(b) => shown(b),
        Value::Nil => "NIL".into(),
        Value::List(_) => "a list".into(),
    }
}

/// The attributes of a FETCH response; takes the values so a message body is moved
/// out, not copied.
pub fn parse_fetch(seq: u32, rest: Vec<Value>) -> Result<Fetch, ParseError> {
    let items = match rest.into_iter().next() {
        Some(Value::List(l)) => l,
        _ => return err("FETCH response without a list"),
    };
    let mut f = Fetch {
        seq,
        ..Fetch::default()
    };
    let mut it = items.into_iter();
    while let Some(key) = it.next() {
        let key = match key {
            Value::Atom(a) => String::from_utf8_lossy(&a).to_ascii_uppercase(),
            _ => return err("FETCH item name is not an atom"),
        };
        let val = it
            .next()
            .ok_or_else(|| ParseError(format!("FETCH item {key} has no value")))?;
        fetch_item(&mut f, &key, val)?;
    }
    Ok(f)
}

/// One FETCH item (`key` upper-cased) into `f`: a value the server got wrong
/// becomes the message's problem (the first one kept), or an error when the
/// response cannot be read on.
fn fetch_item(f: &mut Fetch, key: &str, val: Value) -> Result<(), ParseError> {
    match key {
        "UID" => {
            f.uid = Some(nz_number(&val).ok_or_else(|| {
                ParseError(format!(
                    "FETCH gave the UID {}, which is not a UID (a number from 1 to 4294967295)",
                    shown_value(&val)
                ))
            })?)
        }
        "RFC822.SIZE" => match val.as_u64().filter(|_| matches!(val, Value::Atom(_))) {
            Some(n) => f.size = Some(n),
            None => {
                f.problem.get_or_insert(format!(
                    "the server's RFC822.SIZE {} is not a size",
                    shown_value(&val)
                ));
            }
        },
        "INTERNALDATE" => {
            // A quoted date-time (RFC 3501); parsed, never kept as the server's text.
            match val
                .as_bytes()
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(ImapDate::parse)
            {
                Some(d) => f.internal_date = Some(d),
                None => {
                    f.problem.get_or_insert(format!(
                        "the server's INTERNALDATE {} is not an IMAP date-time",
                        shown_value(&val)
                    ));
                }
            }
        }
        "FLAGS" => fetch_flags(f, &val)?,
        "X-GM-LABELS" => fetch_labels(f, &val)?,
        k if k.starts_with("BODY[HEADER.FIELDS") => f.header_fields = val.into_bytes(),
        k if k == "RFC822" || k.starts_with("BODY[]") || k.starts_with("BINARY[]") => {
            f.body = val.into_bytes()
        }
        _ => {}
    }
    Ok(())
}

/// Gmail's X-GM-LABELS into `f`: each label as text (atoms like `\\Inbox`, strings
/// for user labels), at most [`crate::limits::MAX_FLAGS`] of them.
fn fetch_labels(f: &mut Fetch, val: &Value) -> Result<(), ParseError> {
    let Some(list) = val.as_list() else {
        return err("FETCH X-GM-LABELS is not a list");
    };
    if list.len() > crate::limits::MAX_FLAGS {
        return err("FETCH X-GM-LABELS has more labels than the limit of flags");
    }
    let labels = list
        .iter()
        .filter_map(|v| v.as_bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    f.labels = Some(labels);
    Ok(())
}

/// FETCH FLAGS into `f`: the IMAP flags of the list; a flag that is not one, or
/// more than [`crate::limits::MAX_FLAGS`] of them, is the message's problem.
fn fetch_flags(f: &mut Fetch, val: &Value) -> Result<(), ParseError> {
    let Some(list) = val.as_list() else {
        return err("FETCH FLAGS is not a list");
    };
    if list.len() > crate::limits::MAX_FLAGS {
        f.problem.get_or_insert(format!(
            "the server sent {} flags for one message, more than {} (limit)",
            list.len(),
            crate::limits::MAX_FLAGS
        ));
        return Ok(());
    }
    let mut flags = Vec::with_capacity(list.len());
    for v in list {
        // A flag is an atom (RFC 3501): a string or literal is not one.
        match v {
            Value::Atom(a) if valid_flag(&String::from_utf8_lossy(a)) => {
                flags.push(String::from_utf8_lossy(a).into_owned())
            }
            other => {
                f.problem.get_or_insert(format!(
                    "the server sent a flag that is not an IMAP flag: {}",
                    shown_value(other)
                ));
            }
        }
    }
    f.flags = Some(flags);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_status_keeps_code_and_text() {
        let r = parse_response(b"A3 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n")
            .unwrap();
        let Response::Tagged { tag, status } = r else {
            panic!()
        };
        assert_eq!(tag, "A3");
        assert_eq!(status.kind, StatusKind::No);
        assert_eq!(status.code_name().as_deref(), Some("OVERQUOTA"));
        assert_eq!(status.text, "Quota exceeded (mailbox for user is full)");
    }

    #[test]
    fn appenduid_code_args() {
        let r = parse_response(b"A4 OK [APPENDUID 1700000000 42] Append completed.\r\n").unwrap();
        let Response::Tagged { status, .. } = r else {
            panic!()
        };
        assert_eq!(status.code_args(), vec!["1700000000", "42"]);
    }

    #[test]
    fn gmail_labels_are_read_as_text() {
        let line = b"* 3 FETCH (UID 9 X-GM-LABELS (\\Inbox \"Work/2024\" Receipts) X-GM-MSGID 1278455344230334865)\r\n";
        let Response::Numbered { num, rest, .. } = parse_response(line).unwrap() else {
            panic!()
        };
        let f = parse_fetch(num, rest).unwrap();
        assert_eq!(f.uid, Some(9));
        assert_eq!(f.labels.unwrap(), vec!["\\Inbox", "Work/2024", "Receipts"]);
        let empty = b"* 4 FETCH (UID 10 X-GM-LABELS ())\r\n";
        let Response::Numbered { num, rest, .. } = parse_response(empty).unwrap() else {
            panic!()
        };
        assert_eq!(parse_fetch(num, rest).unwrap().labels, Some(vec![]));
        let bad = b"* 4 FETCH (UID 10 X-GM-LABELS Inbox)\r\n";
        let Response::Numbered { num, rest, .. } = parse_response(bad).unwrap() else {
            panic!()
        };
        assert!(parse_fetch(num, rest).is_err());
    }

    #[test]
    fn fetch_with_literal_body_is_byte_exact() {
        let body = b"From: a\r\n\r\n\x00\xff\"(){}\r\n";
        let mut line = format!(
            "* 7 FETCH (UID 42 RFC822.SIZE {} FLAGS (\\Seen $Label1) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" BODY[] {{{}}}\r\n",
            body.len(),
            body.len()
        )
        .into_bytes();
        line.extend_from_slice(body);
        line.extend_from_slice(b")\r\n");
        let Response::Numbered { num, name, rest } = parse_response(&line).unwrap() else {
            panic!()
        };
        assert_eq!((num, name.as_str()), (7, "FETCH"));
        let f = parse_fetch(num, rest).unwrap();
        assert_eq!(f.uid, Some(42));
        assert_eq!(f.size, Some(body.len() as u64));
        assert_eq!(f.flags.unwrap(), vec!["\\Seen", "$Label1"]);
        assert_eq!(
            f.internal_date.unwrap().to_string(),
            "17-Jul-1996 02:44:25 -0700"
        );
        assert_eq!(f.body.unwrap(), body.to_vec());
    }

    #[test]
    fn literals_read_apart_are_moved_in_order_and_checked() {
        let body = b"Subject: x\r\n\r\n{5}\r\n".to_vec();
        let text = format!("* 3 FETCH (UID 9 BODY[] {{{}}}\r\n)\r\n", body.len());
        let given = body.clone();
        let at = given.as_ptr();
        let Response::Numbered { num, rest, .. } =
            parse_response_with(text.as_bytes(), vec![given]).unwrap()
        else {
            panic!()
        };
        let got = parse_fetch(num, rest).unwrap().body.unwrap();
        assert_eq!(got, body);
        assert_eq!(got.as_ptr(), at, "the literal was copied, not moved");
        // A literal of another length than announced, or none at all, is an error.
        assert!(parse_response_with(text.as_bytes(), vec![b"short".to_vec()]).is_err());
        assert!(parse_response_with(text.as_bytes(), vec![]).is_err());
    }

    #[test]
    fn header_fields_section_with_spaces() {
        let mut line =
            b"* 1 FETCH (UID 3 BODY[HEADER.FIELDS (MESSAGE-ID)] {21}\r\nMessage-ID: <a@b>\r\n\r\n)\r\n"
                .to_vec();
        line.truncate(line.len());
        let Response::Numbered { rest, .. } = parse_response(&line).unwrap() else {
            panic!()
        };
        let f = parse_fetch(1, rest).unwrap();
        assert_eq!(
            f.header_fields.unwrap(),
            b"Message-ID: <a@b>\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn list_response_with_quoted_name_and_escapes() {
        let r = parse_response(b"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent \\\"Items\\\"\"\r\n")
            .unwrap();
        let Response::Data { name, rest } = r else {
            panic!()
        };
        assert_eq!(name, "LIST");
        assert_eq!(rest[1].as_bytes().unwrap(), b"/");
        assert_eq!(rest[2].as_bytes().unwrap(), b"Sent \"Items\"");
    }

    #[test]
    fn nil_delimiter_and_continuation() {
        let Response::Data { rest, .. } = parse_response(b"* LIST () NIL INBOX\r\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(rest[1], Value::Nil);
        assert_eq!(
            parse_response(b"+ OK\r\n").unwrap(),
            Response::Continue("OK".into())
        );
    }

    #[test]
    fn every_loop_makes_progress_or_stops() {
        // (response, what the error says); each must end, and quickly.
        let deep = format!(
            "* 1 FETCH ({}{}\r\n",
            "(".repeat(50_000),
            ")".repeat(50_001)
        );
        let many = format!("* 1 FETCH (X ({}))\r\n", "a ".repeat(MAX_VALUES + 1));
        for (input, says) in [
            ("* 1 FETCH (UID 1) )\r\n", "closes no list"),
            ("* LIST ) \"/\" INBOX\r\n", "closes no list"),
            ("* 1 FETCH (BINARY[] ~", "starts no literal"),
            ("* 1 FETCH (BINARY[] ~x\r\n", "starts no literal"),
            ("* 1 FETCH (UID 1 FLAGS (\\Seen)))\r\n", "closes no list"),
            (deep.as_str(), "more than 64 deep"),
            (many.as_str(), "more than 100000 values"),
            (
                "* LIST () \"/\" \"a\r\nb\"\r\n",
                "unterminated quoted string",
            ),
            (
                "* 1 FETCH (BODY[] {999999999999999999999}\r\n)\r\n",
                "bad literal length",
            ),
            ("* 1 FETCH (BODY[] {2000000000}\r\n)\r\n", "(limit)"),
        ] {
            let started = std::time::Instant::now();
            let e = parse_response(input.as_bytes()).unwrap_err();
            assert!(e.0.contains(says), "{e} for {:.60}", input);
            assert!(started.elapsed().as_secs() < 2);
        }
        // Nesting up to the limit is fine.
        let ok = format!("* 1 FETCH (X {}{})\r\n", "(".repeat(62), ")".repeat(62));
        assert!(parse_response(ok.as_bytes()).is_ok());
    }

    #[test]
    fn search_numbers_are_uids_or_the_answer_is_refused() {
        let Response::Search(set) = parse_response(b"* SEARCH 5 1 2 3 9\r\n").unwrap() else {
            panic!()
        };
        assert_eq!(set.to_string(), "1:3,5,9");
        let Response::Search(set) = parse_response(b"* SEARCH\r\n").unwrap() else {
            panic!()
        };
        assert!(set.is_empty());
        for bad in [
            "* SEARCH 1 -2\r\n",
            "* SEARCH 0\r\n",
            "* SEARCH 4294967296\r\n",
            "* SEARCH +4\r\n",
            "* SEARCH (MODSEQ 3)\r\n",
        ] {
            let e = parse_response(bad.as_bytes()).unwrap_err();
            assert!(e.0.contains("not a UID"), "{bad}: {e}");
        }
    }

    #[test]
    fn fetch_values_are_typed_or_refused() {
        let fetch = |items: &str| {
            let Response::Numbered { num, rest, .. } =
                parse_response(format!("* 1 FETCH ({items})\r\n").as_bytes()).unwrap()
            else {
                panic!()
            };
            parse_fetch(num, rest)
        };
        // A UID that is not a non-zero 32-bit number ends the FETCH.
        for uid in ["0", "-1", "4294967296", "+5", "NIL", "\"5\""] {
            let e = fetch(&format!("UID {uid}")).unwrap_err();
            assert!(e.0.contains("not a UID"), "{uid}: {e}");
        }
        assert_eq!(fetch("UID 4294967295").unwrap().uid, Some(4294967295));
        // A date or flag that is not one makes the message's problem, escaped.
        let f =
            fetch("UID 2 INTERNALDATE {38}\r\n01-Jan-2020 10:00:00 +0000\"\r\nX1 NOOP \"").unwrap();
        assert_eq!(f.internal_date, None);
        let p = f.problem.unwrap();
        assert!(
            p.contains("INTERNALDATE") && p.contains("\\r\\nX1 NOOP"),
            "{p}"
        );
        let f = fetch("UID 3 FLAGS (\\Seen {9}\r\nx\r\nX CR y)").unwrap();
        assert!(f.problem.unwrap().contains("not an IMAP flag"));
        let f = fetch("UID 3 FLAGS (\\Seen \"quoted\")").unwrap();
        assert!(f.problem.is_some());
        let f = fetch("UID 3 RFC822.SIZE -5").unwrap();
        assert!(f.problem.unwrap().contains("RFC822.SIZE"));
        let f = fetch("UID 4 FLAGS (\\Seen $Label1) INTERNALDATE \" 1-Jan-2020 10:00:00 +0000\"")
            .unwrap();
        assert_eq!(f.problem, None);
        assert_eq!(
            f.internal_date.unwrap().to_string(),
            "01-Jan-2020 10:00:00 +0000"
        );
        assert!(fetch("UID 1 FLAGS NIL").is_err());
    }

    #[test]
    fn trailing_literal_detection() {
        for (line, want) in [
            (&b"* 1 FETCH (BODY[] {12}\r\n"[..], Some(12)),
            (b"* 1 FETCH (BODY[] {12+}\r\n", Some(12)),
            (b"* 1 FETCH (BINARY[] ~{5}\r\n", Some(5)),
            (b"A1 OK done {x}\r\n", None),
            (b"A1 OK done\r\n", None),
            (b"* OK {}\r\n", None),
        ] {
            assert_eq!(
                trailing_literal(line),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
