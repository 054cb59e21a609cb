//! A small blocking HTTP/1.1 client for JSON APIs (the Infomaniak API now, OAuth2
//! token endpoints later): one request per connection (`Connection: close`), over
//! any `Read + Write` stream, so a unit test replays a server's transcript and the
//! same code runs over TLS ([`connect`] uses `crate::net`).
//!
//! Invariants: a request that could not be written back safely cannot be sent (a
//! CR, LF or NUL in the target or a header value, a method that is not a token, is
//! refused before a byte is written); everything read is bounded — the status line
//! and headers together by [`MAX_HEAD`], at most [`MAX_HEADERS`] header lines, a
//! body (Content-Length, chunked, or up to the end of the stream) by the caller's
//! `max_body` — and each limit is named in its error. Time is bounded by the
//! socket's `--timeout` and, per request, by [`crate::limits::Paced`]. This module
//! never logs: the caller knows which header holds a secret.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use crate::limits;
use crate::net::{self, NetOptions, Stream};

/// Status line and header lines of one response, together.
pub const MAX_HEAD: usize = limits::MAX_LINE_PRE_LOGIN;
/// Header lines of one response.
pub const MAX_HEADERS: usize = 200;
/// A JSON answer of an API: far more than any listing page needs.
pub const MAX_BODY: usize = limits::MAX_LINE;
/// Interim (1xx) responses skipped before the real one.
const MAX_INTERIM: usize = 10;
/// One chunk-size line (`1a2b;ext=...`).
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug)]
pub enum Error {
    /// The request itself is unsafe to send (nothing was written).
    Request(String),
    /// The connection failed, timed out or ended early.
    Io(io::Error),
    /// The server's answer is not HTTP/1.x as RFC 9112 writes it.
    Malformed(String),
    /// The server's answer is over one of this module's limits.
    TooLarge(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Request(m) => write!(f, "refused to send the request: {m}"),
            Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                write!(
                    f,
                    "the server closed the connection before its answer ended"
                )
            }
            Error::Io(e) => write!(f, "{e}"),
            Error::Malformed(m) => write!(f, "not a valid HTTP answer: {m}"),
            Error::TooLarge(m) => write!(f, "the server's answer is too large: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        if limits::is_limit(&e) {
            // Over a line limit of `limits::read_line`.
            Error::TooLarge(e.to_string())
        } else {
            Error::Io(e)
        }
    }
}

/// A base URL: `https://host[:port][/path]`, or `http://` for a loopback host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path prefix without a trailing `/` (empty for the root).
    pub base: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let bad = |why: &str| format!("{text:?} is not a usable API URL: {why}");
        let (tls, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("it must start with https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("no user or password in the URL"));
        }
        if path.contains(['?', '#']) {
            return Err(bad("no query or fragment"));
        }
        if path
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || !b.is_ascii())
        {
            return Err(bad("the path has spaces, control or non-ASCII characters"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("junk after ]")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        {
            return Err(bad("bad host name"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Url {
            tls,
            host,
            port,
            base: path.trim_end_matches('/').to_string(),
        })
    }

    /// `localhost`, 127.0.0.0/8 or ::1: a connection that never leaves the machine.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The `Host:` header value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.base)
    }
}

/// One request. `target` is the path and query (`/1/x?page=2`); `Host`,
/// `Content-Length` and `Connection: close` are added.
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Names as sent; look them up with [`Response::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (names compare without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Write `req` for `host` (the `Host:` value). Nothing is written when the request
/// is unsafe.
pub fn write_request<W: Write>(w: &mut W, host: &str, req: &Request) -> Result<(), Error> {
    if !is_token(req.method) {
        return Err(Error::Request("the method is not an HTTP token".into()));
    }
    if !req.target.starts_with('/')
        || req
            .target
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || !b.is_ascii())
    {
        return Err(Error::Request(
            "the request target must be an absolute path without spaces or control characters"
                .into(),
        ));
    }
    let bad_value = |v: &str| v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if bad_value(host) {
        return Err(Error::Request("the host has a line break".into()));
    }
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
        req.method, req.target
    );
    for (name, value) in req.headers {
        if !is_token(name) || bad_value(value) {
            // The header's name only: its value may be a secret.
            return Err(Error::Request(format!(
                "header {name:?} has a bad name or a line break in its value"
            )));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !req.body.is_empty() || !matches!(req.method, "GET" | "HEAD" | "DELETE") {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(req.body);
    w.write_all(&out)?;
    w.flush()?;
    Ok(())
}

/// Read one response to a `method` request. Interim 1xx answers are skipped.
pub fn read_response<R: BufRead>(
    r: &mut R,
    method: &str,
    max_body: usize,
) -> Result<Response, Error> {
    for _ in 0..=MAX_INTERIM {
        let (status, reason, headers) = read_head(r)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut resp = Response {
            status,
            reason,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || status == 204 || status == 304 || status == 101 {
            return Ok(resp);
        }
        resp.body = read_body(r, &resp, max_body)?;
        return Ok(resp);
    }
    Err(Error::Malformed(format!(
        "more than {MAX_INTERIM} interim (1xx) answers"
    )))
}

type Head = (u16, String, Vec<(String, String)>);

fn read_head<R: BufRead>(r: &mut R) -> Result<Head, Error> {
    let mut budget = MAX_HEAD;
    let mut line = Vec::new();
    let mut next_line = |r: &mut R, line: &mut Vec<u8>| -> Result<(), Error> {
        let n = limits::read_line(r, line, budget).map_err(|e| {
            if limits::is_limit(&e) {
                Error::TooLarge(format!(
                    "status line and headers over {MAX_HEAD} bytes (limit)"
                ))
            } else {
                Error::Io(e)
            }
        })?;
        if n == 0 || !line.ends_with(b"\n") {
            return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        budget -= n;
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        Ok(())
    };
    next_line(r, &mut line)?;
    let text = String::from_utf8_lossy(&line).into_owned();
    let shown: String = text.chars().take(80).collect();
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let reason = parts.next().unwrap_or("").to_string();
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(Error::Malformed(format!(
            "the status line {shown:?} is not HTTP/1.x"
        )));
    }
    let status = match code.parse::<u16>() {
        Ok(s) if code.len() == 3 && (100..600).contains(&s) => s,
        _ => {
            return Err(Error::Malformed(format!(
                "the status line {shown:?} has no 3-digit status"
            )))
        }
    };
    let mut headers = Vec::new();
    loop {
        next_line(r, &mut line)?;
        if line.is_empty() {
            return Ok((status, reason, headers));
        }
        if headers.len() == MAX_HEADERS {
            return Err(Error::TooLarge(format!(
                "more than {MAX_HEADERS} header lines (limit)"
            )));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(Error::Malformed(
                "a folded header line (obsolete, RFC 9112 5.2)".into(),
            ));
        }
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(Error::Malformed("a header line without ':'".into()));
        };
        if !is_token(name) {
            return Err(Error::Malformed(format!(
                "the header name {:?} is not a token",
                name.chars().take(40).collect::<String>()
            )));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

fn read_body<R: BufRead>(r: &mut R, resp: &Response, max: usize) -> Result<Vec<u8>, Error> {
    let too_large =
        |what: &str| Error::TooLarge(format!("{what} over {max} bytes (limit for one answer)"));
    if let Some(te) = resp.header("transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        if last.eq_ignore_ascii_case("chunked") {
            return read_chunked(r, max);
        }
        // Another coding last: the body runs to the end of the stream.
        return read_to_end(r, max).map_err(|e| match e {
            Error::TooLarge(_) => too_large("a body"),
            e => e,
        });
    }
    let lengths: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            return Err(Error::Malformed("Content-Length values disagree".into()));
        }
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Malformed(format!(
                "Content-Length {:?} is not a number",
                first.chars().take(30).collect::<String>()
            )));
        }
        let len: usize = first
            .parse()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| too_large("Content-Length"))?;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    read_to_end(r, max).map_err(|e| match e {
        Error::TooLarge(_) => too_large("a body"),
        e => e,
    })
}

fn read_to_end<R: Read>(r: &mut R, max: usize) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    r.take(max as u64 + 1).read_to_end(&mut body)?;
    if body.len() > max {
        return Err(Error::TooLarge(String::new()));
    }
    Ok(body)
}

fn read_chunked<R: BufRead>(r: &mut R, max: usize) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    let read_line = |r: &mut R, line: &mut Vec<u8>| -> Result<(), Error> {
        let n = limits::read_line(r, line, MAX_CHUNK_LINE).map_err(|e| {
            if limits::is_limit(&e) {
                Error::TooLarge(format!(
                    "a chunk-size or trailer line over {MAX_CHUNK_LINE} bytes (limit)"
                ))
            } else {
                Error::Io(e)
            }
        })?;
        if n == 0 || !line.ends_with(b"\n") {
            return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        Ok(())
    };
    loop {
        read_line(r, &mut line)?;
        let size_text = line.split(|b| *b == b';').next().unwrap_or(b"");
        let size_text = String::from_utf8_lossy(size_text).trim().to_string();
        let size = match usize::from_str_radix(&size_text, 16) {
            Ok(s) if !size_text.is_empty() && !size_text.starts_with('+') => s,
            _ => {
                return Err(Error::Malformed(format!(
                    "the chunk size {:?} is not hexadecimal",
                    size_text.chars().take(30).collect::<String>()
                )))
            }
        };
        if size == 0 {
            // Trailers, up to the empty line; dropped.
            for _ in 0..=MAX_HEADERS {
                read_line(r, &mut line)?;
                if line.is_empty() {
                    return Ok(body);
                }
            }
            return Err(Error::TooLarge(format!(
                "more than {MAX_HEADERS} trailer lines (limit)"
            )));
        }
        if body.len().checked_add(size).is_none_or(|n| n > max) {
            return Err(Error::TooLarge(format!(
                "a chunked body over {max} bytes (limit for one answer)"
            )));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(Error::Malformed(
                "a chunk is not followed by CRLF (its size is wrong)".into(),
            ));
        }
    }
}

/// Send `req` over `stream` and read the answer (the connection is not reused).
pub fn exchange<S: Read + Write>(
    stream: S,
    host: &str,
    req: &Request,
    max_body: usize,
) -> Result<Response, Error> {
    let mut r = BufReader::new(stream);
    write_request(r.get_mut(), host, req)?;
    read_response(&mut r, req.method, max_body)
}

/// A connection to `url`'s server: TLS (verified as for IMAP: `--ca-file`,
/// `--insecure`) or, for `http://`, plain TCP; with `--timeout` on every read and
/// write, and the whole request held to a time budget ([`limits::Paced`]).
pub fn connect(url: &Url, net: &NetOptions) -> anyhow::Result<limits::Paced<Stream>> {
    let tcp = net::tcp(&url.host, url.port, net)?;
    let stream = if url.tls {
        net::tls(tcp, &url.host, url.port, net)?
    } else {
        Stream::Plain(tcp)
    };
    Ok(limits::Paced::new(stream, net.timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that serves `input` and keeps what is written.
    struct Replay {
        input: io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }
    impl Read for Replay {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // A byte or a few at a time: parsing must hold across short reads.
            let n = buf.len().min(3);
            self.input.read(&mut buf[..n])
        }
    }
    impl Write for Replay {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn replay(answer: &[u8], max: usize) -> (Result<Response, Error>, Vec<u8>) {
        let mut s = Replay {
            input: io::Cursor::new(answer.to_vec()),
            written: Vec::new(),
        };
        let req = Request {
            method: "POST",
            target: "/1/x?page=2",
            headers: &[
                ("Authorization", "Bearer T0ken"),
                ("Content-Type", "application/json"),
            ],
            body: b"{\"a\":1}",
        };
        let res = exchange(&mut s, "api.example.ch", &req, max);
        (res, s.written)
    }

    #[test]
    fn the_request_is_written_as_http_1_1() {
        let (res, written) = replay(b"HTTP/1.1 204 No Content\r\n\r\n", 100);
        assert_eq!(res.unwrap().status, 204);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            "POST /1/x?page=2 HTTP/1.1\r\nHost: api.example.ch\r\nConnection: close\r\n\
             Authorization: Bearer T0ken\r\nContent-Type: application/json\r\n\
             Content-Length: 7\r\n\r\n{\"a\":1}"
        );
    }

    #[test]
    fn bodies_by_length_chunks_or_end_of_stream() {
        // (answer, max body) -> body, or a word of the error
        type Row<'a> = (&'a [u8], usize, Result<&'a [u8], &'a str>);
        let table: &[Row] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 100, Ok(b"hello")),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello, and more", 100, Ok(b"hello")),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", 100, Ok(b"hello")),
            (b"HTTP/1.0 200 OK\r\n\r\nto the end", 100, Ok(b"to the end")),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n, 10 bytes\r\n0\r\nTrailer: t\r\n\r\n",
                100,
                Ok(b"hello, 10 bytes"),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
                100,
                Ok(b"x"),
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 100, Ok(b"ok")),
            (b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n", 100, Ok(b"")),
            // Oversize, whichever way the size is told.
            (b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", 100, Err("too large")),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", 100, Err("too large")),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n", 10, Err("too large")),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 10, Err("not hexadecimal")),
            (b"HTTP/1.1 200 OK\r\n\r\n0123456789ab", 10, Err("too large")),
            // Broken framing.
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 100, Err("closed the connection")),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", 100, Err("disagree")),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello", 100, Err("not a number")),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 100, Err("not hexadecimal")),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 100, Err("not followed by CRLF")),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", 100, Err("closed the connection")),
        ];
        for (answer, max, want) in table {
            let (got, _) = replay(answer, *max);
            match (got, want) {
                (Ok(r), Ok(body)) => {
                    assert_eq!(&r.body[..], *body, "{}", String::from_utf8_lossy(answer))
                }
                (Err(e), Err(word)) => assert!(e.to_string().contains(word), "{e} (wanted {word})"),
                (got, want) => panic!(
                    "{}: got {got:?}, wanted {want:?}",
                    String::from_utf8_lossy(answer)
                ),
            }
        }
    }

    #[test]
    fn bad_status_lines_and_headers() {
        let long_header = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let many_headers = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        let table: &[(&[u8], &str)] = &[
            (b"HTTP/2 200 OK\r\n\r\n", "not HTTP/1.x"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP/1.x"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "3-digit"),
            (b"HTTP/1.1 OK\r\n\r\n", "3-digit"),
            (b"HTTP/1.1 099 x\r\n\r\n", "3-digit"),
            (b"", "closed the connection"),
            (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "without ':'"),
            (b"HTTP/1.1 200 OK\r\nX: a\r\n  folded\r\n\r\n", "folded"),
            (b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n", "not a token"),
            (long_header.as_bytes(), "over"),
            (many_headers.as_bytes(), "header lines"),
        ];
        for (answer, word) in table {
            let (got, _) = replay(answer, 100);
            let e = got.expect_err(&String::from_utf8_lossy(&answer[..answer.len().min(60)]));
            assert!(e.to_string().contains(word), "{e} (wanted {word})");
        }
        let (got, _) = replay(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n",
            100,
        );
        let r = got.unwrap();
        assert_eq!((r.status, r.reason.as_str()), (429, "Too Many Requests"));
        assert_eq!(r.header("retry-after"), Some("3"));
    }

    #[test]
    fn an_unsafe_request_is_not_sent() {
        for (method, target, header) in [
            ("GET", "/a\r\nX: injected", ("A", "b")),
            ("GET", "/a b", ("A", "b")),
            ("GET", "a", ("A", "b")),
            ("G T", "/a", ("A", "b")),
            ("GET", "/a", ("Authorization", "Bearer x\r\nX: injected")),
            ("GET", "/a", ("Bad Name", "b")),
        ] {
            let mut out = Vec::new();
            let req = Request {
                method,
                target,
                headers: &[header],
                body: b"",
            };
            let e = write_request(&mut out, "h", &req).unwrap_err();
            assert!(matches!(e, Error::Request(_)), "{e}");
            assert!(!e.to_string().contains("Bearer"), "{e}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn urls() {
        let u = Url::parse("https://api.infomaniak.com").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.base.as_str()),
            (true, "api.infomaniak.com", 443, "")
        );
        assert!(!u.is_loopback());
        assert_eq!(u.to_string(), "https://api.infomaniak.com");
        let u = Url::parse("http://127.0.0.1:8080/api/").unwrap();
        assert_eq!((u.tls, u.port, u.base.as_str()), (false, 8080, "/api"));
        assert!(u.is_loopback());
        assert_eq!(u.authority(), "127.0.0.1:8080");
        assert!(Url::parse("http://localhost").unwrap().is_loopback());
        assert!(Url::parse("http://[::1]:99").unwrap().is_loopback());
        assert!(!Url::parse("http://10.0.0.1").unwrap().is_loopback());
        for bad in [
            "ftp://x",
            "api.infomaniak.com",
            "https://user:pw@host",
            "https://host:0",
            "https://host:99999",
            "https://ho st",
            "https://host/a?b",
            "https://",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
