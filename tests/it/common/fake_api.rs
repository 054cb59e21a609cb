//! A stand-in for the part of the Infomaniak API that `addresses create` uses, on
//! 127.0.0.1 over plain HTTP/1.1, as published (developer.infomaniak.com: "List
//! mailboxes", "Display a mailbox", "Add a mailbox"):
//!
//! - `GET /1/mail_hostings/{id}/mailboxes?page=P&per_page=N`: `{"result":"success",
//!   "data":[{"mailbox_name",…}],"total","page","pages","items_per_page"}`, pages of
//!   at most `page_size` whatever `per_page` asks (sent chunked, as a real server may);
//! - `GET /1/mail_hostings/{id}/mailboxes/{name}`: the mailbox, or a 404 error;
//! - `POST /1/mail_hostings/{id}/mailboxes` with `{"mailbox_name","password"}`: adds
//!   it and appends `address:{PLAIN}password::::::` to a Dovecot passwd file, so
//!   the password really logs in;
//! - errors as `{"result":"error","error":{"code","description"}}`: 401 without the
//!   right Bearer token, 404 for another mail hosting, 422 for a refused or taken
//!   name; a 429 with `Retry-After: 1` every `rate_limit_every` requests; a 502 after
//!   adding `lose_answer_of` (the add happened, its answer is lost); every request a
//!   401 once `revoke_after_adds` mailboxes were added (a token revoked mid-run).
//!
//! The mail hosting's domain shows only where the published API shows it: in each
//! mailbox's full address (`mailbox`, `mailbox_idn`); the published API has no
//! "display a mail hosting" route, so neither has this one.
//!
//! Connections are served one after the other, one request each.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

pub struct FakeApi {
    pub port: u16,
    pub state: Arc<Mutex<ApiState>>,
}

pub struct ApiState {
    pub token: String,
    pub hosting: u64,
    pub domain: String,
    /// mailbox_name → the password it was added with (none for those there before).
    pub mailboxes: BTreeMap<String, Option<String>>,
    /// Names the API refuses: (code, description).
    pub refuse: BTreeMap<String, (String, String)>,
    /// Every N-th request is answered 429 (and not served).
    pub rate_limit_every: Option<usize>,
    /// A name whose add takes effect but is answered 502.
    pub lose_answer_of: Option<String>,
    /// After this many adds, every request is answered 401 (the token revoked).
    pub revoke_after_adds: Option<usize>,
    /// Mailboxes added so far.
    pub adds: usize,
    /// Items per listing page at most.
    pub page_size: usize,
    /// Dovecot's passwd file, where added mailboxes become users.
    pub passwd: Option<PathBuf>,
    /// "METHOD target → status" per request (never a header or a body).
    pub log: Vec<String>,
    /// Requests received.
    pub requests: usize,
    pub rate_limited: usize,
}

impl FakeApi {
    pub fn start(token: &str, hosting: u64, domain: &str, existing: &[&str]) -> FakeApi {
        let state = Arc::new(Mutex::new(ApiState {
            token: token.into(),
            hosting,
            domain: domain.into(),
            mailboxes: existing.iter().map(|n| (n.to_string(), None)).collect(),
            refuse: BTreeMap::new(),
            rate_limit_every: None,
            lose_answer_of: None,
            revoke_after_adds: None,
            adds: 0,
            page_size: 7,
            passwd: None,
            log: Vec::new(),
            requests: 0,
            rate_limited: 0,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let _ = serve(conn, &st);
            }
        });
        FakeApi { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut ApiState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// POST requests that reached the handler (429s not counted).
    pub fn posts(&self) -> usize {
        self.with(|s| {
            s.log
                .iter()
                .filter(|l| l.starts_with("POST ") && !l.ends_with("429"))
                .count()
        })
    }
}

fn serve(conn: std::net::TcpStream, state: &Arc<Mutex<ApiState>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let mut s = state.lock().unwrap();
    let (status, extra, answer, chunked) = handle(&mut s, &method, &target, &headers, &body);
    s.log.push(format!("{method} {target} {status}"));
    drop(s);
    let text = answer.to_string();
    let reason = match status {
        200 => "OK",
        201 => "Created",
        401 => "Unauthorized",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        _ => "Bad Gateway",
    };
    let mut out =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}");
    if chunked {
        out.push_str("Transfer-Encoding: chunked\r\n\r\n");
        for piece in text.as_bytes().chunks(50) {
            out.push_str(&format!(
                "{:x}\r\n{}\r\n",
                piece.len(),
                String::from_utf8_lossy(piece)
            ));
        }
        out.push_str("0\r\n\r\n");
    } else {
        out.push_str(&format!("Content-Length: {}\r\n\r\n{text}", text.len()));
    }
    w.write_all(out.as_bytes())?;
    w.flush()
}

fn error(code: &str, description: &str) -> Value {
    json!({"result": "error", "error": {"code": code, "description": description}})
}

type Answer = (u16, String, Value, bool);

fn handle(
    s: &mut ApiState,
    method: &str,
    target: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Answer {
    s.requests += 1;
    if s.rate_limit_every
        .is_some_and(|n| s.requests.is_multiple_of(n))
    {
        s.rate_limited += 1;
        return (
            429,
            "Retry-After: 1\r\n".into(),
            error("too_many_request", "Too many requests"),
            false,
        );
    }
    let revoked = s.revoke_after_adds.is_some_and(|n| s.adds >= n);
    if revoked || headers.get("authorization") != Some(&format!("Bearer {}", s.token)) {
        return (
            401,
            String::new(),
            error("not_authorized", "Authorization required"),
            false,
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let prefix = format!("/1/mail_hostings/{}/mailboxes", s.hosting);
    let Some(rest) = path.strip_prefix(&prefix) else {
        return (
            404,
            String::new(),
            error("object_not_found", "This object does not exist"),
            false,
        );
    };
    match (method, rest) {
        ("GET", "") => {
            let q: BTreeMap<&str, usize> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                .collect();
            let per = q
                .get("per_page")
                .copied()
                .unwrap_or(15)
                .min(s.page_size)
                .max(1);
            let page = q.get("page").copied().unwrap_or(1).max(1);
            let names: Vec<&String> = s.mailboxes.keys().collect();
            let total = names.len();
            let pages = total.div_ceil(per).max(1);
            let data: Vec<Value> = names
                .iter()
                .skip((page - 1) * per)
                .take(per)
                .map(|n| {
                    json!({
                        "mailbox_name": n,
                        "mailbox": format!("{n}@{}", s.domain),
                        "mailbox_idn": format!("{n}@{}", s.domain),
                        "is_limited": false,
                        "is_free_mail": false
                    })
                })
                .collect();
            (
                200,
                String::new(),
                json!({"result": "success", "data": data, "total": total, "page": page, "pages": pages, "items_per_page": per}),
                true,
            )
        }
        ("GET", name) => {
            let name = name.trim_start_matches('/');
            if s.mailboxes.contains_key(name) {
                (
                    200,
                    String::new(),
                    json!({"result": "success", "data": {"mailbox_name": name, "mailbox": format!("{name}@{}", s.domain)}}),
                    false,
                )
            } else {
                (
                    404,
                    String::new(),
                    error("object_not_found", "This mailbox does not exist"),
                    false,
                )
            }
        }
        ("POST", "") => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let (Some(name), Some(pw)) = (
                v.get("mailbox_name").and_then(Value::as_str),
                v.get("password").and_then(Value::as_str),
            ) else {
                return (
                    422,
                    String::new(),
                    error(
                        "validation_failed",
                        "mailbox_name and password are required",
                    ),
                    false,
                );
            };
            if let Some((code, description)) = s.refuse.get(name) {
                return (422, String::new(), error(code, description), false);
            }
            if s.mailboxes.contains_key(name) {
                return (
                    422,
                    String::new(),
                    error("mailbox_already_exists", "This mailbox already exists"),
                    false,
                );
            }
            s.mailboxes.insert(name.to_string(), Some(pw.to_string()));
            s.adds += 1;
            if let Some(passwd) = &s.passwd {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(passwd)
                    .unwrap();
                writeln!(f, "{name}@{}:{{PLAIN}}{pw}::::::", s.domain).unwrap();
            }
            if s.lose_answer_of.as_deref() == Some(name) {
                return (502, String::new(), json!("<html>bad gateway</html>"), false);
            }
            (
                201,
                String::new(),
                json!({"result": "success", "data": {"mailbox": {"mailbox_name": name, "mailbox_idn": format!("{name}@{}", s.domain), "is_limited": false, "is_free_mail": false}}}),
                false,
            )
        }
        _ => (
            404,
            String::new(),
            error("route_not_found", "No such route"),
            false,
        ),
    }
}
