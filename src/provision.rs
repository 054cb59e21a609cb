//! Creating the target addresses before a bulk move, through the Infomaniak REST
//! API: list the mailboxes of a mail hosting, add the missing ones. The decisions
//! (create or not, which password, next page, how long to wait) are pure functions
//! with table tests; [`Api`] only talks.
//!
//! The API as published (developer.infomaniak.com, "List mailboxes" and "Add a
//! mailbox", looked up for issue 17; the OpenAPI description behind it is also
//! what public generated clients such as an openapi-generator Java client
//! `MailboxManagementApi` and an n8n node are built from):
//! - `GET /1/mail_hostings/{mail_hosting_id}/mailboxes` answers
//!   `{"result":"success","data":[{"mailbox_name":"user","mailbox":"user@…",…}],
//!   "total":221,"page":2,"pages":15,"items_per_page":15}`; `total`, `page`,
//!   `pages` and `items_per_page` are "added when using query parameter page". The
//!   page-size parameter's name is not on that page: `per_page` is what the
//!   Infomaniak clients found send, so we send `page` and `per_page` and follow
//!   `pages` (a server that pages by its own size is followed all the same).
//! - The mail hosting's domain: each listed mailbox carries its full address
//!   (`mailbox`, and `mailbox_idn`; both required in the `Mailbox` schema of
//!   Infomaniak's OpenAPI description of the mail API, as carried by the generated
//!   n8n node sitrifix/n8n-nodes-infomaniak-api, api/infomaniak_api_mail.json). That
//!   description has no `GET /1/mail_hostings/{mail_hosting_id}` (its mail_hostings
//!   routes are the sub-resources: mailboxes, redirections, preferences, …); the
//!   hosting's `fqdn`/`main_fqdn` that some tools show come from the Manager's
//!   private API, not from a token's. So the domain is learnt from the listing,
//!   and a hosting without a mailbox has none to learn: see [`domain_problem`].
//! - `GET /1/mail_hostings/{id}/mailboxes/{mailbox_name}` displays one mailbox
//!   (used only to find out whether an add whose answer was lost took effect).
//! - `POST /1/mail_hostings/{id}/mailboxes` with the JSON body
//!   `{"mailbox_name": LOCAL_PART, "password": …}` (both required; optional
//!   `link_to_current_user`, `target` are not sent) answers
//!   `{"result":"success","data":{"mailbox":{"mailbox_name":…}}}`.
//! - Every answer has `result` = `success`, `error` or `asynchronous`; an error
//!   carries `"error":{"code":…,"description":…}` (the shape in shared
//!   INFOMANIAK.md and in the public clients; the exact codes are not published,
//!   so none is matched: a refusal is reported with its code and description).
//! - Bearer token authentication; 60 requests a minute ("API rules" on the
//!   getting-started page): requests are paced to that, and a 429 is waited out
//!   (`Retry-After`), 5xx answers and lost connections are retried with backoff.
//!
//! Secrets: the token goes only into the `Authorization` header and a password only
//! into a POST body; neither is traced (`-vv` shows method, path and status), and
//! server text that is shown has both masked.

use std::collections::VecDeque;
use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::error::{connect, connect_final, connect_with, input, retry_class, Retry};
use crate::http::{self, Url};
use crate::net::NetOptions;
use crate::secret::Password;

pub const DEFAULT_API_URL: &str = "https://api.infomaniak.com";
/// The API's published rate limit.
pub const REQUESTS_PER_MINUTE: usize = 60;
/// Mailboxes asked for per listing page.
pub const PER_PAGE: usize = 100;
/// Pages followed at most (a server that never says "last page" cannot loop us).
pub const MAX_PAGES: u32 = 10_000;
/// 429 answers waited out for one request before giving up.
pub const MAX_RATE_LIMITED: u32 = 10;
/// The longest wait a `Retry-After` may impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Passwords

/// Length of a generated password: the host asks for at least 16 characters for
/// device passwords (shared INFOMANIAK.md); 20 leave a margin.
pub const GENERATED_LEN: usize = 20;
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";
/// Specials that need no quoting in JSON, an IMAP quoted string, a shell word or
/// a Dovecot passwd-file line (no `"`, `\`, `'`, `$`, `:`, space, `%`, `*`).
const SPECIAL: &[u8] = b"-_.!#+=~";

/// Whether a password meets the host's rules as mailferry generates them: at
/// least 16 printable ASCII characters, with a lower-case and an upper-case
/// letter, a digit and a special character.
pub fn meets_rules(pw: &str) -> bool {
    rule_broken(pw).is_none()
}

/// The first of [`meets_rules`]' rules that `pw` breaks, in words that never
/// show the password.
pub fn rule_broken(pw: &str) -> Option<&'static str> {
    let b = pw.as_bytes();
    if pw.chars().count() < 16 {
        Some("has fewer than 16 characters")
    } else if !b.iter().all(u8::is_ascii_graphic) {
        Some("has a space, a control character or a non-ASCII character")
    } else if !b.iter().any(u8::is_ascii_lowercase) {
        Some("has no lower-case letter")
    } else if !b.iter().any(u8::is_ascii_uppercase) {
        Some("has no upper-case letter")
    } else if !b.iter().any(u8::is_ascii_digit) {
        Some("has no digit")
    } else if b.iter().all(u8::is_ascii_alphanumeric) {
        Some("has no special character (such as - _ . ! # + = ~)")
    } else {
        None
    }
}

/// A new password from the operating system's random source.
pub fn generate() -> anyhow::Result<Password> {
    let mut f = std::fs::File::open("/dev/urandom")
        .map_err(|e| crate::error::local(format!("cannot open /dev/urandom: {e}")))?;
    generate_from(&mut f)
}

/// A password of [`GENERATED_LEN`] characters drawn uniformly (rejection
/// sampling: no modulo bias) from `rng`'s bytes, drawn again until it meets
/// [`meets_rules`].
pub fn generate_from(rng: &mut impl Read) -> anyhow::Result<Password> {
    let alphabet: Vec<u8> = [LOWER, UPPER, DIGITS, SPECIAL].concat();
    let n = alphabet.len();
    let limit = 256 - 256 % n; // bytes at or above this are drawn again
    let mut buf = [0u8; 64];
    for _ in 0..1000 {
        let mut pw = String::with_capacity(GENERATED_LEN);
        while pw.len() < GENERATED_LEN {
            rng.read_exact(&mut buf)
                .map_err(|e| crate::error::local(format!("cannot read random bytes: {e}")))?;
            for &b in &buf {
                if (b as usize) < limit && pw.len() < GENERATED_LEN {
                    pw.push(alphabet[b as usize % n] as char);
                }
            }
        }
        if meets_rules(&pw) {
            return Ok(Password::new(pw));
        }
    }
    Err(crate::error::local(
        "the random source gave no usable password in 1000 draws; is it random?",
    ))
}

// ---------------------------------------------------------------------------
// Decisions

/// Where the password of an address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordFrom {
    /// The CSV's target_password cell (a secret, `env:` or `file:`).
    Csv,
    /// The file an earlier run wrote (it generated the password, and may or may
    /// not have got to create the address).
    Saved,
    /// A new one.
    Generate,
    /// The address exists and nothing says its password.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create(PasswordFrom),
    Existed(PasswordFrom),
}

/// What to do with one address: whether it exists on the host, whether the CSV
/// gives a password, whether an earlier run saved one. The CSV wins (the admin
/// said so); a saved password is reused, so a run resumed after a crash between
/// writing the file and creating the address creates it with that password.
pub fn decide(exists: bool, csv: bool, saved: bool) -> Action {
    let from = if csv {
        PasswordFrom::Csv
    } else if saved {
        PasswordFrom::Saved
    } else if exists {
        PasswordFrom::Unknown
    } else {
        PasswordFrom::Generate
    };
    if exists {
        Action::Existed(from)
    } else {
        Action::Create(from)
    }
}

/// The page to ask for after `page` (1-based), which brought `got` items of the
/// `per_page` asked for; `pages` is the server's count when it gave one.
pub fn next_page(page: u32, pages: Option<u64>, got: usize, per_page: usize) -> Option<u32> {
    if got == 0 || page >= MAX_PAGES {
        return None;
    }
    match pages {
        Some(pages) => (u64::from(page) < pages).then_some(page + 1),
        None => (got >= per_page).then_some(page + 1),
    }
}

/// Why the CSV's addresses (all in `csv_domain`) must not be created in mail
/// hosting `hosting`, whose listed mailboxes are in `listed` (the domains of their
/// full addresses), or none. A hosting without mailboxes shows no domain (the
/// published API has no field for it): refused, since a wrong `--mail-hosting`
/// would create real mailboxes in another domain.
pub fn domain_problem(
    csv_domain: &str,
    hosting: u64,
    listed: &std::collections::BTreeSet<String>,
) -> Option<String> {
    let csv_domain = csv_domain.to_ascii_lowercase();
    if listed.contains(&csv_domain) {
        return None;
    }
    Some(if listed.is_empty() {
        format!(
            "mail hosting {hosting} has no mailbox yet, so its domain cannot be checked against the CSV's ({csv_domain}) and nothing was created; create one address of {csv_domain} in the Manager (for instance the CSV's first), then run again"
        )
    } else {
        let theirs: Vec<&str> = listed.iter().map(String::as_str).collect();
        format!(
            "the CSV's addresses are in {csv_domain} but mail hosting {hosting} holds {}'s; nothing was created: check --mail-hosting (the number in the Manager's address of {csv_domain}'s mail service)",
            theirs.join(", ")
        )
    })
}

/// A `Retry-After` value (RFC 9110 10.2.3): seconds, or an HTTP date, relative to
/// `now`; capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(value: Option<&str>, now: SystemTime) -> Option<Duration> {
    let v = value?.trim();
    let wait = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at.timestamp().max(0) as u64);
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// An API answer, by status and body.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `result` success (or asynchronous: accepted): the whole JSON document.
    Success(Value),
    /// The API said no: its code and description (`-` and the HTTP reason when
    /// the body is not the API's JSON).
    Refused {
        status: u16,
        code: String,
        description: String,
    },
    /// 429: wait and ask again.
    RateLimited,
    /// 5xx: the server's trouble; ask again later.
    Unavailable { status: u16, detail: String },
}

pub fn classify(status: u16, reason: &str, body: &[u8]) -> Answer {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let error = |json: &Option<Value>| {
        let e = json.as_ref().and_then(|j| j.get("error"));
        let text = |k: &str| {
            e.and_then(|e| e.get(k)).map(|v| match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
        };
        (
            text("code").unwrap_or_else(|| "-".into()),
            text("description").unwrap_or_else(|| {
                if json.is_some() {
                    format!("HTTP {status} {reason}")
                } else {
                    format!("HTTP {status} {reason} (the answer is not the API's JSON)")
                }
            }),
        )
    };
    if status == 429 {
        return Answer::RateLimited;
    }
    if (500..600).contains(&status) {
        let (code, description) = error(&json);
        return Answer::Unavailable {
            status,
            detail: format!("HTTP {status} {reason}: {code}: {description}"),
        };
    }
    let result = json
        .as_ref()
        .and_then(|j| j.get("result"))
        .and_then(Value::as_str);
    if (200..300).contains(&status) && matches!(result, Some("success" | "asynchronous")) {
        return Answer::Success(json.unwrap_or(Value::Null));
    }
    let (code, description) = error(&json);
    Answer::Refused {
        status,
        code,
        description,
    }
}

/// `text` with every secret replaced by `***` (server text is shown to the user).
pub fn mask(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(*s, "***");
    }
    out
}

// ---------------------------------------------------------------------------
// The client

/// A mail hosting's mailboxes, as listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every mailbox's local part (`mailbox_name`), lower-cased, sorted.
    pub names: Vec<String>,
    /// The domains of their full addresses (`mailbox`, `mailbox_idn`),
    /// lower-cased.
    pub domains: std::collections::BTreeSet<String>,
}

/// What an add came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    Created,
    Refused { code: String, description: String },
}

pub struct Api<'a> {
    url: Url,
    token: &'a Password,
    net: &'a NetOptions,
    hosting: u64,
    /// When the last [`REQUESTS_PER_MINUTE`] requests were sent.
    sent: VecDeque<Instant>,
}

impl<'a> Api<'a> {
    /// A client for `url` (checked: plain `http://` only to a loopback host, so the
    /// token never crosses a network unencrypted).
    pub fn new(
        url: &str,
        token: &'a Password,
        hosting: u64,
        net: &'a NetOptions,
    ) -> anyhow::Result<Self> {
        let url = Url::parse(url).map_err(|e| input(format!("--api-url: {e}")))?;
        if !url.tls && !url.is_loopback() {
            return Err(input(format!(
                "--api-url {url}: the API token would cross the network unencrypted; use https:// (plain http:// is allowed only to this machine: localhost, 127.0.0.1, ::1)"
            )));
        }
        if token.expose().bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(input(
                "the API token has spaces, line breaks or non-ASCII characters; check the token file",
            ));
        }
        Ok(Api {
            url,
            token,
            net,
            hosting,
            sent: VecDeque::new(),
        })
    }

    fn mailboxes_path(&self) -> String {
        format!(
            "{}/1/mail_hostings/{}/mailboxes",
            self.url.base, self.hosting
        )
    }

    /// Wait, if needed, so that no more than [`REQUESTS_PER_MINUTE`] requests go
    /// out in any minute.
    fn pace(&mut self) {
        let minute = Duration::from_secs(60);
        while self.sent.front().is_some_and(|t| t.elapsed() >= minute) {
            self.sent.pop_front();
        }
        if self.sent.len() >= REQUESTS_PER_MINUTE {
            if let Some(first) = self.sent.front() {
                let wait = minute.saturating_sub(first.elapsed());
                crate::log::info(format!(
                    "api: {REQUESTS_PER_MINUTE} requests in the last minute (the API's limit): waiting {:.0} s",
                    wait.as_secs_f64()
                ));
                std::thread::sleep(wait);
            }
            self.sent.pop_front();
        }
        self.sent.push_back(Instant::now());
    }

    /// One request on a fresh connection. `hide` are this request's secrets
    /// besides the token (a password): masked in whatever server text is traced.
    fn once(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
        hide: &[&str],
    ) -> anyhow::Result<http::Response> {
        self.pace();
        crate::log::trace("api", ">", format!("{method} {target}").as_bytes());
        if !body.is_empty() {
            crate::log::trace(
                "api",
                ">",
                format!(
                    "(a JSON body of {} bytes, not shown: it holds a password)",
                    body.len()
                )
                .as_bytes(),
            );
        }
        let stream = http::connect(&self.url, self.net)?;
        let bearer = format!("Bearer {}", self.token.expose());
        let agent = concat!("mailferry/", env!("CARGO_PKG_VERSION"));
        let mut headers = vec![
            ("Authorization", bearer.as_str()),
            ("Accept", "application/json"),
            ("User-Agent", agent),
        ];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        let req = http::Request {
            method,
            target,
            headers: &headers,
            body,
        };
        let resp =
            http::exchange(stream, &self.url.authority(), &req, http::MAX_BODY).map_err(|e| {
                let msg = format!("{} {method} {target}: {e}", self.url);
                match e {
                    http::Error::Request(_) => input(msg),
                    http::Error::Io(_) => connect_with(msg, Retry::Now),
                    _ => connect(msg),
                }
            })?;
        crate::log::trace(
            "api",
            "<",
            format!(
                "HTTP {} {} ({} bytes)",
                resp.status,
                resp.reason,
                resp.body.len()
            )
            .as_bytes(),
        );
        if crate::log::level() >= 2 {
            let text = String::from_utf8_lossy(&resp.body);
            let mut secrets = vec![self.token.expose()];
            secrets.extend_from_slice(hide);
            crate::log::trace("api", "<", mask(&text, &secrets).as_bytes());
        }
        Ok(resp)
    }

    /// A request (`hide`: as for [`Api::once`]) with 429 waited out and, when `retry` is set, 5xx answers and
    /// lost connections retried (`--retries`, `--retry-wait`, `--deadline`). An
    /// answer that is neither comes back as it is.
    fn send(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
        hide: &[&str],
        retry: bool,
    ) -> anyhow::Result<http::Response> {
        let started = Instant::now();
        let mut failures = 0u32;
        let mut limited = 0u32;
        loop {
            let failure = match self.once(method, target, body, hide) {
                Ok(resp) if resp.status == 429 => {
                    limited += 1;
                    let wait = retry_after(resp.header("retry-after"), SystemTime::now())
                        .unwrap_or_else(|| {
                            crate::retry::backoff(self.net.retry_wait, limited, Retry::Later)
                        });
                    if limited > MAX_RATE_LIMITED || started.elapsed() + wait > self.net.deadline {
                        return Err(connect(format!(
                            "{method} {target}: the API still says \"too many requests\" (HTTP 429) after {limited} waits; try again later"
                        )));
                    }
                    crate::log::info(format!(
                        "api: too many requests (HTTP 429): waiting {:.0} s as the server asks",
                        wait.as_secs_f64()
                    ));
                    std::thread::sleep(wait);
                    continue;
                }
                Ok(resp) if (500..600).contains(&resp.status) => {
                    let detail = match classify(resp.status, &resp.reason, &resp.body) {
                        Answer::Unavailable { detail, .. } => detail,
                        _ => format!("HTTP {}", resp.status),
                    };
                    connect(format!(
                        "{method} {target}: {}",
                        mask(&detail, &[&[self.token.expose()], hide].concat())
                    ))
                }
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            let class = retry_class(&failure);
            failures += 1;
            let wait = crate::retry::backoff(self.net.retry_wait, failures, class);
            if !retry
                || class == Retry::Final
                || failures > self.net.retries
                || started.elapsed() + wait > self.net.deadline
            {
                return Err(failure);
            }
            crate::log::warn(format!(
                "api: {failure:#}; retrying in {:.0?} (attempt {} of {})",
                wait,
                failures + 1,
                self.net.retries + 1
            ));
            std::thread::sleep(wait);
        }
    }

    /// The error for an answer that refuses the whole run (a bad token, a wrong
    /// mail hosting ID), or none.
    fn fatal(&self, status: u16, code: &str, description: &str) -> Option<anyhow::Error> {
        let said = mask(&format!("{code}: {description}"), &[self.token.expose()]);
        match status {
            401 => Some(connect_final(format!(
                "the API refused the token (HTTP 401, {said}); check --api-token-file (or MAILFERRY_API_TOKEN): an Infomaniak API token with the mail scope"
            ))),
            403 => Some(connect_final(format!(
                "the API refused access to mail hosting {} with this token (HTTP 403, {said}); the token needs the mail scope and its user admin rights on that mail hosting",
                self.hosting
            ))),
            404 => Some(input(format!(
                "the API knows no mail hosting {} (HTTP 404, {said}); --mail-hosting is the number in the Manager's address of the mail service",
                self.hosting
            ))),
            _ => None,
        }
    }

    /// Every mailbox's local part (`mailbox_name`) and the domains of their full
    /// addresses, page by page.
    pub fn list(&mut self) -> anyhow::Result<Listing> {
        let mut names = Vec::new();
        let mut domains = std::collections::BTreeSet::new();
        let mut page = 1u32;
        loop {
            let target = format!("{}?page={page}&per_page={PER_PAGE}", self.mailboxes_path());
            let resp = self.send("GET", &target, b"", &[], true)?;
            let doc = match classify(resp.status, &resp.reason, &resp.body) {
                Answer::Success(doc) => doc,
                Answer::Refused {
                    status,
                    code,
                    description,
                } => {
                    return Err(self.fatal(status, &code, &description).unwrap_or_else(|| {
                        connect_final(format!(
                            "listing the mailboxes of mail hosting {} failed: HTTP {status}, {}",
                            self.hosting,
                            mask(&format!("{code}: {description}"), &[self.token.expose()])
                        ))
                    }))
                }
                other => return Err(connect(format!("listing the mailboxes: {other:?}"))),
            };
            let Some(items) = doc.get("data").and_then(Value::as_array) else {
                return Err(connect_final(
                    "listing the mailboxes: the answer has no \"data\" list (not the published API?)",
                ));
            };
            for item in items {
                for key in ["mailbox", "mailbox_idn"] {
                    if let Some((_, d)) = item
                        .get(key)
                        .and_then(Value::as_str)
                        .and_then(|m| m.rsplit_once('@'))
                    {
                        if !d.is_empty() {
                            domains.insert(d.to_lowercase());
                        }
                    }
                }
                let name = item
                    .get("mailbox_name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| {
                        item.get("mailbox")
                            .and_then(Value::as_str)
                            .and_then(|m| m.split('@').next())
                            .map(str::to_string)
                    });
                match name {
                    Some(n) => names.push(n.to_ascii_lowercase()),
                    None => {
                        return Err(connect_final(
                            "listing the mailboxes: an entry has neither \"mailbox_name\" nor \"mailbox\"",
                        ))
                    }
                }
            }
            let pages = doc.get("pages").and_then(Value::as_u64);
            match next_page(page, pages, items.len(), PER_PAGE) {
                Some(p) => page = p,
                None => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(Listing { names, domains })
    }

    /// Whether the mailbox `name` exists (one GET).
    pub fn exists(&mut self, name: &str) -> anyhow::Result<bool> {
        let target = format!("{}/{name}", self.mailboxes_path());
        let resp = self.send("GET", &target, b"", &[], true)?;
        match classify(resp.status, &resp.reason, &resp.body) {
            Answer::Success(_) => Ok(true),
            Answer::Refused { status: 404, .. } => Ok(false),
            Answer::Refused {
                status,
                code,
                description,
            } => Err(self.fatal(status, &code, &description).unwrap_or_else(|| {
                connect(format!(
                    "looking up mailbox {name}: HTTP {status}, {}",
                    mask(&format!("{code}: {description}"), &[self.token.expose()])
                ))
            })),
            other => Err(connect(format!("looking up mailbox {name}: {other:?}"))),
        }
    }

    /// Add the mailbox `name` (a local part that passed `address::check`). An add
    /// whose answer was lost (5xx, a dropped connection) is looked up before it is
    /// sent again, so it never runs twice.
    pub fn add(&mut self, name: &str, password: &Password) -> anyhow::Result<Added> {
        let body = serde_json::to_vec(&serde_json::json!({
            "mailbox_name": name,
            "password": password.expose(),
        }))?;
        let target = self.mailboxes_path();
        let secrets = [self.token.expose(), password.expose()];
        let mut failures = 0u32;
        loop {
            match self.send("POST", &target, &body, &[password.expose()], false) {
                Ok(resp) => {
                    return match classify(resp.status, &resp.reason, &resp.body) {
                        Answer::Success(_) => Ok(Added::Created),
                        Answer::Refused {
                            status,
                            code,
                            description,
                        } => match status {
                            401 | 403 => Err(self
                                .fatal(status, &code, &description)
                                .unwrap_or_else(|| input(""))),
                            _ => Ok(Added::Refused {
                                code: mask(&code, &secrets),
                                description: mask(&description, &secrets),
                            }),
                        },
                        other => Err(connect(format!("adding mailbox {name}: {other:?}"))),
                    };
                }
                Err(e) if retry_class(&e) != Retry::Final && failures < self.net.retries => {
                    failures += 1;
                    let wait =
                        crate::retry::backoff(self.net.retry_wait, failures, retry_class(&e));
                    crate::log::warn(format!(
                        "api: adding mailbox {name}: {e:#}; checking in {wait:.0?} whether it was added before trying again"
                    ));
                    std::thread::sleep(wait);
                    if self.exists(name)? {
                        return Ok(Added::Created);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_to_do_with_each_address() {
        use Action::*;
        use PasswordFrom::*;
        // (exists, csv password, saved password) -> action
        for (exists, csv, saved, want) in [
            (false, false, false, Create(Generate)),
            (false, false, true, Create(Saved)),
            (false, true, false, Create(Csv)),
            (false, true, true, Create(Csv)),
            (true, false, false, Existed(Unknown)),
            (true, false, true, Existed(Saved)),
            (true, true, false, Existed(Csv)),
            (true, true, true, Existed(Csv)),
        ] {
            assert_eq!(decide(exists, csv, saved), want, "{exists} {csv} {saved}");
        }
    }

    #[test]
    fn pages_are_followed_to_the_last() {
        // (page, pages, got, per_page) -> next
        for (page, pages, got, per, want) in [
            (1, Some(3), 100, 100, Some(2)),
            (3, Some(3), 100, 100, None),
            (1, Some(3), 15, 100, Some(2)), // the server pages by 15: follow `pages`
            (1, Some(1), 30, 100, None),
            (1, None, 100, 100, Some(2)),
            (1, None, 99, 100, None),
            (2, Some(5), 0, 100, None), // an empty page ends it whatever `pages` says
            (MAX_PAGES, Some(u64::MAX), 100, 100, None),
            (1, Some(0), 10, 100, None),
        ] {
            assert_eq!(
                next_page(page, pages, got, per),
                want,
                "{page} {pages:?} {got}"
            );
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        for (v, want) in [
            (Some("3"), Some(3)),
            (Some(" 0 "), Some(0)),
            (Some("99999999999999999999999"), Some(120)),
            (Some("Sun, 06 Nov 1994 08:49:47 GMT"), Some(10)),
            (Some("Sun, 06 Nov 1994 08:49:00 GMT"), Some(0)),
            (Some("soon"), None),
            (Some("-1"), None),
            (None, None),
        ] {
            assert_eq!(retry_after(v, now).map(|d| d.as_secs()), want, "{v:?}");
        }
    }

    #[test]
    fn answers_are_classified_by_status_and_result() {
        let ok = br#"{"result":"success","data":[]}"#;
        let err = br#"{"result":"error","error":{"code":"invalid_mailbox_name","description":"The name is reserved"}}"#;
        assert!(matches!(classify(200, "OK", ok), Answer::Success(_)));
        assert!(matches!(
            classify(201, "Created", br#"{"result":"asynchronous"}"#),
            Answer::Success(_)
        ));
        assert_eq!(
            classify(422, "Unprocessable", err),
            Answer::Refused {
                status: 422,
                code: "invalid_mailbox_name".into(),
                description: "The name is reserved".into()
            }
        );
        // A 200 that says error is a refusal; a body that is not JSON says so.
        assert!(matches!(
            classify(200, "OK", err),
            Answer::Refused { status: 200, .. }
        ));
        match classify(400, "Bad Request", b"<html>") {
            Answer::Refused {
                code, description, ..
            } => {
                assert_eq!(code, "-");
                assert!(description.contains("not the API's JSON"), "{description}");
            }
            a => panic!("{a:?}"),
        }
        assert_eq!(classify(429, "Too Many", err), Answer::RateLimited);
        match classify(503, "Unavailable", err) {
            Answer::Unavailable { status, detail } => {
                assert_eq!(status, 503);
                assert!(
                    detail.contains("invalid_mailbox_name: The name is reserved"),
                    "{detail}"
                );
            }
            a => panic!("{a:?}"),
        }
        // A numeric code is shown as it is.
        match classify(
            400,
            "x",
            br#"{"result":"error","error":{"code":12,"description":"d"}}"#,
        ) {
            Answer::Refused { code, .. } => assert_eq!(code, "12"),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn generated_passwords_meet_the_rules_and_differ() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = generate().unwrap();
            assert!(meets_rules(p.expose()), "{}", p.expose());
            assert_eq!(p.expose().len(), GENERATED_LEN);
            assert!(p.expose().bytes().all(|b| !b":\"\\' $%*".contains(&b)));
            assert!(seen.insert(p.expose().to_string()));
        }
        // The password type never shows itself.
        assert_eq!(
            format!("{:?} {}", generate().unwrap(), generate().unwrap()),
            "*** ***"
        );
    }

    #[test]
    fn a_source_without_the_needed_classes_is_drawn_again() {
        // A fixed pseudo-random byte stream (xorshift): a usable password comes out.
        let mut x: u32 = 2463534242;
        let bytes: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        let p = generate_from(&mut bytes.as_slice()).unwrap();
        assert!(meets_rules(p.expose()));
        // Only lower-case letters forever: refused after bounded tries, not a loop.
        let mut only_a = std::io::repeat(0);
        assert!(generate_from(&mut only_a).is_err());
        // A source that ends is an error.
        let mut empty: &[u8] = b"";
        assert!(generate_from(&mut empty).is_err());
    }

    #[test]
    fn the_rules() {
        for (pw, ok) in [
            ("Abcdefgh1234567-", true),
            ("Abcdefgh123456-", false), // 15
            ("abcdefgh1234567-", false),
            ("ABCDEFGH1234567-", false),
            ("Abcdefghijklmno-", false),
            ("Abcdefgh12345678", false),
            ("Abcdefgh 1234567-", false),
            ("Abcdéfgh1234567-", false),
        ] {
            assert_eq!(meets_rules(pw), ok, "{pw}");
        }
    }

    #[test]
    fn the_rule_a_password_breaks_is_named() {
        for (pw, want) in [
            ("Abcdefgh1234567-", None),
            ("Abcdefgh123456-", Some("fewer than 16")),
            ("Abcdéfgh123456-", Some("fewer than 16")), // 15 characters, 16 bytes
            ("Abcdéfgh1234567-", Some("non-ASCII")),
            ("Abcdefgh 1234567-", Some("a space")),
            ("Abcdefgh\t1234567-", Some("a control")),
            ("ABCDEFGH1234567-", Some("no lower-case")),
            ("abcdefgh1234567-", Some("no upper-case")),
            ("Abcdefghijklmno-", Some("no digit")),
            ("Abcdefgh12345678", Some("no special")),
        ] {
            let got = rule_broken(pw);
            match want {
                None => assert_eq!(got, None, "{pw}"),
                Some(w) => assert!(got.is_some_and(|g| g.contains(w)), "{pw}: {got:?}"),
            }
            assert_eq!(meets_rules(pw), want.is_none(), "{pw}");
        }
    }

    #[test]
    fn the_csv_domain_must_be_the_hosting_s() {
        let set = |d: &[&str]| d.iter().map(|s| s.to_string()).collect();
        assert_eq!(domain_problem("example.ch", 7, &set(&["example.ch"])), None);
        assert_eq!(domain_problem("Example.CH", 7, &set(&["example.ch"])), None);
        // Either spelling of an internationalised domain matches.
        assert_eq!(
            domain_problem(
                "xn--bcher-kva.ch",
                7,
                &set(&["bücher.ch", "xn--bcher-kva.ch"])
            ),
            None
        );
        let other = domain_problem("example.ch", 7, &set(&["example.org"])).unwrap();
        assert!(
            other.starts_with(
                "the CSV's addresses are in example.ch but mail hosting 7 holds example.org's;"
            ),
            "{other}"
        );
        let empty = domain_problem("example.ch", 7, &set(&[])).unwrap();
        assert!(empty.contains("has no mailbox yet"), "{empty}");
        assert!(!empty.contains('\n') && !other.contains('\n'));
    }

    #[test]
    fn secrets_are_masked_in_server_text() {
        assert_eq!(
            mask(
                "bad password Xy12-secret for tok3n-abc",
                &["Xy12-secret", "tok3n-abc", ""]
            ),
            "bad password *** for ***"
        );
    }

    #[test]
    fn the_token_never_goes_over_plain_http_to_another_machine() {
        let net = NetOptions::default();
        let tok = Password::new("t0ken");
        for (url, ok) in [
            ("https://api.infomaniak.com", true),
            ("http://127.0.0.1:8080", true),
            ("http://localhost:1", true),
            ("http://[::1]:1", true),
            ("http://api.infomaniak.com", false),
            ("http://192.168.1.10", false),
        ] {
            let r = Api::new(url, &tok, 1, &net);
            assert_eq!(r.is_ok(), ok, "{url}");
            if let Err(e) = r {
                assert!(e.to_string().contains("unencrypted"), "{e}");
            }
        }
        let bad = Password::new("t0ken\r\nX-Injected: 1");
        assert!(Api::new(DEFAULT_API_URL, &bad, 1, &net).is_err());
    }
}
