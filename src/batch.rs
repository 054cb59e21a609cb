//! Many accounts from one CSV file: rows checked before any connection, then run
//! on a pool of workers; one failing account never stops the others.
//!
//! The CSV has a header row; columns (names fixed, order free): `source` (a URL, or
//! a host with a `source_protocol` column), `source_user`, `source_password`,
//! `target_user`, `target_password`, optional `target` (default: the Infomaniak IMAPS
//! host), optional `source_protocol` and `folder_map` (`SRC=DST` pairs separated by
//! `|`), and optional `since`, `before` (days, as `--since`) and `max_size` (as
//! `--max-size`), each winning over the batch's flag for its row. Comma and
//! semicolon delimiters both work. A password cell holds the secret,
//! `env:NAME` or `file:PATH`. Rows are numbered as lines of the file (the header is
//! row 1). Every bad row is reported with its row, column and the rule it breaks.
//!
//! Per-row logins (optional columns): `source_admin` / `target_admin` name an
//! administrator (master user) whose password is then in the password cell;
//! `source_token_cmd` / `target_token_cmd` give a command printing an OAuth2 access
//! token, and the password cell stays empty. A row giving both, a token command
//! with a password, or an admin without one is refused before anything runs.
//! `source_oauth2` / `target_oauth2` name an OAuth2 provider config file (relative
//! to the CSV file's directory, see [`crate::oauth2`]); every row naming the same
//! file shares one token cache, so one app registration serves every row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::address;
use crate::endpoint::{self, Endpoint, Proto, Server, DEFAULT_HOST};
use crate::error::input;
use crate::folders;
use crate::secret::{self, Credentials, Password};

pub const COLUMNS: &[&str] = &[
    "source",
    "source_protocol",
    "source_user",
    "source_password",
    "target",
    "target_user",
    "target_password",
    "folder_map",
    "source_admin",
    "source_token_cmd",
    "target_admin",
    "target_token_cmd",
    "source_oauth2",
    "target_oauth2",
    "since",
    "before",
    "max_size",
];

/// One valid row.
#[derive(Debug, Clone)]
pub struct Account {
    /// Line of the CSV file (header = 1).
    pub row: usize,
    /// Position among the data rows (0-based), for `--shard`.
    pub position: usize,
    pub source: Endpoint,
    /// None for an mbox source.
    pub source_credentials: Option<Credentials>,
    pub target: Server,
    pub target_credentials: Credentials,
    pub folder_map: Vec<(Vec<String>, Vec<String>)>,
    /// The row's own `since`, `before` and `max_size` cells (each wins over the
    /// batch's flag).
    pub select: RowSelect,
}

/// A row's message filters; `None`: the batch's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowSelect {
    pub since: Option<chrono::NaiveDate>,
    pub before: Option<chrono::NaiveDate>,
    pub max_size: Option<u64>,
}

/// A bad row (or a bad header: row 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub row: usize,
    /// Position among the data rows (for `--shard`); none for the header.
    pub position: Option<usize>,
    pub column: String,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "row {}, column {}: {}",
            self.row, self.column, self.message
        )
    }
}

/// `;` when the header has more semicolons than commas, else `,`.
pub fn sniff_delimiter(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or("");
    if header.matches(';').count() > header.matches(',').count() {
        b';'
    } else {
        b','
    }
}

/// Read a password cell: the secret itself, `env:NAME` or `file:PATH`.
fn password_cell(cell: &str, base: &Path) -> Result<Password, String> {
    if let Some(name) = cell.strip_prefix("env:") {
        return match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Password::new(v)),
            _ => Err(format!("the environment variable {name} is not set")),
        };
    }
    if let Some(path) = cell.strip_prefix("file:") {
        let p = base.join(path);
        return secret::from_file(&p).map_err(|e| e.to_string());
    }
    Ok(Password::new(cell))
}

/// One side's login cells of a row (`side` is "source" or "target").
struct SideCells {
    side: &'static str,
    password: String,
    admin: String,
    token_cmd: String,
    oauth2: String,
}

impl SideCells {
    /// The side's four login cells of a row.
    fn read(cells: &Cells, side: &'static str) -> Self {
        SideCells {
            side,
            password: cells.get(&format!("{side}_password")),
            admin: cells.get(&format!("{side}_admin")),
            token_cmd: cells.get(&format!("{side}_token_cmd")),
            oauth2: cells.get(&format!("{side}_oauth2")),
        }
    }
}

/// How one side logs in, as its cells say (nothing read yet).
#[derive(Debug, PartialEq, Eq)]
enum Login<'a> {
    /// An OAuth2 provider config file (relative to the CSV's directory).
    OAuth2(&'a str),
    TokenCmd(&'a str),
    /// The mailbox's password cell.
    Password(&'a str),
    /// An admin and the admin's password cell.
    Admin {
        admin: &'a str,
        password: &'a str,
    },
}

/// Which login a side's cells give, or the column and rule they break: a token
/// command (the password cell empty), an admin with its password, or the mailbox's
/// password. A cell's text is never repeated in a message: after a column mix-up it
/// could be a secret.
fn login_kind(c: &SideCells) -> Result<Login<'_>, (String, String)> {
    let side = c.side;
    if !c.oauth2.is_empty() {
        let col = format!("{side}_oauth2");
        for (cell, other) in [
            (&c.password, format!("{side}_password")),
            (&c.admin, format!("{side}_admin")),
            (&c.token_cmd, format!("{side}_token_cmd")),
        ] {
            if !cell.is_empty() {
                return Err((other, format!("must be empty: {col} gives the tokens")));
            }
        }
        return Ok(Login::OAuth2(&c.oauth2));
    }
    let (pw_col, admin_col, cmd_col) = (
        format!("{side}_password"),
        format!("{side}_admin"),
        format!("{side}_token_cmd"),
    );
    if !c.admin.is_empty() && !c.token_cmd.is_empty() {
        return Err((
            cmd_col.clone(),
            format!("give {admin_col} or {cmd_col}, not both: an admin logs in with its password, a token command replaces any password"),
        ));
    }
    if !c.token_cmd.is_empty() {
        if !c.password.is_empty() {
            return Err((
                pw_col,
                format!("must be empty: {cmd_col} gives a token instead of a password"),
            ));
        }
        return Ok(Login::TokenCmd(&c.token_cmd));
    }
    if c.password.is_empty() {
        let why = if c.admin.is_empty() {
            "empty".to_string()
        } else {
            format!("empty; with {admin_col} it holds the admin's password")
        };
        return Err((pw_col, why));
    }
    Ok(if c.admin.is_empty() {
        Login::Password(&c.password)
    } else {
        Login::Admin {
            admin: &c.admin,
            password: &c.password,
        }
    })
}

/// The OAuth2 sources loaded so far, by config file: every row naming the same
/// file shares one token cache.
type OAuth2Sources = HashMap<PathBuf, std::sync::Arc<crate::oauth2::Source>>;

/// One side's login from its cells (see [`login_kind`]), its password cell or
/// OAuth2 config read; each problem reported through `bad`.
fn credentials_cells(
    c: &SideCells,
    sources: &mut OAuth2Sources,
    base: &Path,
    bad: &mut impl FnMut(&str, String),
) -> Option<Credentials> {
    let login = match login_kind(c) {
        Ok(login) => login,
        Err((column, why)) => {
            bad(&column, why);
            return None;
        }
    };
    let (admin, cell) = match login {
        Login::OAuth2(file) => return oauth2_source(c.side, file, sources, base, bad),
        Login::TokenCmd(cmd) => return Some(Credentials::TokenCmd(cmd.to_string())),
        Login::Password(cell) => (None, cell),
        Login::Admin { admin, password } => (Some(admin), password),
    };
    match (password_cell(cell, base), admin) {
        (Ok(p), None) => Some(Credentials::Password(p)),
        (Ok(p), Some(admin)) => Some(Credentials::Admin {
            admin: admin.to_string(),
            password: p,
        }),
        (Err(e), _) => {
            bad(&format!("{}_password", c.side), e);
            None
        }
    }
}

/// The OAuth2 source of a config file, loaded once and shared by every row that
/// names it.
fn oauth2_source(
    side: &str,
    file: &str,
    sources: &mut OAuth2Sources,
    base: &Path,
    bad: &mut impl FnMut(&str, String),
) -> Option<Credentials> {
    let path = base.join(file);
    if let Some(s) = sources.get(&path) {
        return Some(Credentials::OAuth2(s.clone()));
    }
    match crate::oauth2::Source::load(&path) {
        Ok(s) => {
            let s = std::sync::Arc::new(s);
            sources.insert(path, s.clone());
            Some(Credentials::OAuth2(s))
        }
        Err(e) => {
            bad(&format!("{side}_oauth2"), format!("{e:#}"));
            None
        }
    }
}

/// Parse and check a CSV text. `base` resolves relative `file:` paths.
pub fn parse(text: &str, base: &Path) -> (Vec<Account>, Vec<RowError>) {
    let mut errors = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rd = csv::ReaderBuilder::new()
        .delimiter(sniff_delimiter(text))
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match rd.headers() {
        Ok(h) => h.iter().map(|c| c.to_ascii_lowercase()).collect(),
        Err(e) => {
            errors.push(header_error("-", format!("cannot read the header: {e}")));
            return (Vec::new(), errors);
        }
    };
    errors.extend(header_errors(&header));
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let mut rows = Rows {
        header,
        base,
        targets: HashMap::new(),
        sources: HashMap::new(),
    };
    let mut accounts = Vec::new();
    for (position, rec) in rd.records().enumerate() {
        let row = position + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(RowError {
                    row,
                    position: Some(position),
                    column: "-".into(),
                    message: format!("not valid CSV: {e}"),
                });
                continue;
            }
        };
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let row = rec.position().map(|p| p.line() as usize).unwrap_or(row);
        // A row with cells missing would shift every later cell into the wrong
        // column (a password read as an address, and then printed): refuse it.
        if rec.len() != rows.header.len() {
            errors.push(RowError {
                row,
                position: Some(position),
                column: "-".into(),
                message: format!(
                    "{} cells but the header has {} columns; every row needs one cell per column (empty cells too)",
                    rec.len(),
                    rows.header.len()
                ),
            });
            continue;
        }
        let (account, row_errors) = rows.account(row, position, &rec);
        accounts.extend(account);
        errors.extend(row_errors);
    }
    (accounts, errors)
}

/// A problem of the header (row 1) in `column`.
fn header_error(column: &str, message: String) -> RowError {
    RowError {
        row: 1,
        position: None,
        column: column.into(),
        message,
    }
}

/// The header's problems: unknown columns, then the required ones missing (rows
/// whose target logs in with a token need no password column).
fn header_errors(header: &[String]) -> Vec<RowError> {
    let mut errors = Vec::new();
    for c in header {
        if !COLUMNS.contains(&c.as_str()) {
            errors.push(header_error(
                c,
                format!("unknown column; the columns are {}", COLUMNS.join(", ")),
            ));
        }
    }
    let token_target = header
        .iter()
        .any(|c| c == "target_token_cmd" || c == "target_oauth2");
    for required in ["source", "target_user", "target_password"] {
        if required == "target_password" && token_target {
            continue;
        }
        if !header.iter().any(|c| c == required) {
            errors.push(header_error(required, "required column is missing".into()));
        }
    }
    errors
}

/// A data row's cells, read by column name.
struct Cells<'a> {
    /// The header, lower-cased.
    header: &'a [String],
    rec: &'a csv::StringRecord,
}

impl Cells<'_> {
    /// The cell of a column ("" when the file has no such column).
    fn get(&self, name: &str) -> String {
        self.header
            .iter()
            .position(|c| c == name)
            .and_then(|i| self.rec.get(i))
            .unwrap_or("")
            .to_string()
    }
}

/// The data rows of one file, checked in turn: what a row needs of the rows before
/// it (target accounts seen, OAuth2 sources loaded).
struct Rows<'a> {
    /// The header, lower-cased.
    header: Vec<String>,
    /// The CSV's directory, for relative `file:` paths.
    base: &'a Path,
    /// Each target account (`user@host`, lower-cased) with its row.
    targets: HashMap<String, usize>,
    sources: OAuth2Sources,
}

impl Rows<'_> {
    /// One data row (as many cells as the header): its account when every cell is
    /// good, and every problem of its cells.
    fn account(
        &mut self,
        row: usize,
        position: usize,
        rec: &csv::StringRecord,
    ) -> (Option<Account>, Vec<RowError>) {
        let cells = Cells {
            header: &self.header,
            rec,
        };
        let mut row_errors: Vec<RowError> = Vec::new();
        let mut bad = |column: &str, message: String| {
            row_errors.push(RowError {
                row,
                position: Some(position),
                column: column.into(),
                message,
            })
        };

        // Source.
        let source = source_endpoint(&cells, &mut bad);
        let source_credentials = match &source {
            Some(Endpoint::Server(_)) => credentials_cells(
                &SideCells::read(&cells, "source"),
                &mut self.sources,
                self.base,
                &mut bad,
            ),
            Some(Endpoint::Mbox(_)) => {
                mbox_takes_no_login(&cells, &mut bad);
                None
            }
            None => None,
        };

        // Target.
        let target_user = cells.get("target_user");
        if let Some(why) = target_user_problem(&target_user) {
            bad("target_user", why);
        }
        let target = target_server(&cells.get("target"), &target_user, &mut bad);
        if let Some(t) = &target {
            // One mailbox is the same whatever scheme or port reaches it.
            let key = format!("{}@{}", t.user, t.host).to_ascii_lowercase();
            if let Some(first) = self.targets.insert(key, row) {
                bad("target_user", format!("the same target account (on the same server) is already in row {first}; each target account may appear once"));
            }
        }
        let target_credentials = credentials_cells(
            &SideCells::read(&cells, "target"),
            &mut self.sources,
            self.base,
            &mut bad,
        );
        let folder_map = folder_map_cell(&cells.get("folder_map"), &mut bad);
        let select = select_cells(&cells, &mut bad);
        let account = match (row_errors.is_empty(), source, target, target_credentials) {
            (true, Some(source), Some(target), Some(target_credentials)) => Some(Account {
                row,
                position,
                source,
                source_credentials,
                target,
                target_credentials,
                folder_map,
                select,
            }),
            _ => None,
        };
        (account, row_errors)
    }
}

/// An mbox source is read from files: each login cell given is refused.
fn mbox_takes_no_login(cells: &Cells, bad: &mut impl FnMut(&str, String)) {
    for column in ["source_admin", "source_token_cmd", "source_oauth2"] {
        if !cells.get(column).is_empty() {
            bad(
                column,
                "an mbox source is read from files: it takes no login".into(),
            );
        }
    }
}

/// A login for a URL's user part: `%` and `@` escaped.
fn escape_user(user: &str) -> String {
    user.replace('%', "%25").replace('@', "%40")
}

/// Whether a source cell is a URL (`scheme://…` or `mbox:…`) rather than a host.
fn is_source_url(source: &str) -> bool {
    source.contains("://") || source.starts_with("mbox:")
}

/// The source URL a row's cells make: `source` a URL (with `source_user` put in
/// when it names none), or a host with `source_protocol` and `source_user`; else
/// the column and the rule broken.
fn source_url(
    source: &str,
    proto: &str,
    user: &str,
) -> Result<String, (&'static str, &'static str)> {
    if source.is_empty() {
        Err((
            "source",
            "empty; give a URL (imaps://USER@HOST) or a host with source_protocol",
        ))
    } else if is_source_url(source) {
        Ok(match (source.split_once("://"), user.is_empty()) {
            (Some((scheme, rest)), false) if !rest.contains('@') => {
                format!("{scheme}://{}@{rest}", escape_user(user))
            }
            _ => source.to_string(),
        })
    } else if proto.is_empty() {
        Err(("source_protocol", "source is a host name (no scheme://), so source_protocol (imaps, imap, pop3s or pop3) is needed"))
    } else if !["imaps", "imap", "pop3s", "pop3"].contains(&proto) {
        Err((
            "source_protocol",
            "unknown protocol; use imaps, imap, pop3s or pop3",
        ))
    } else if user.is_empty() {
        Err(("source_user", "empty; the source login is needed"))
    } else {
        Ok(format!("{proto}://{}@{source}", escape_user(user)))
    }
}

/// The row's source, from `source`, `source_protocol` and `source_user`.
fn source_endpoint(cells: &Cells, bad: &mut impl FnMut(&str, String)) -> Option<Endpoint> {
    let source = cells.get("source");
    let user = cells.get("source_user");
    let proto = cells.get("source_protocol").to_ascii_lowercase();
    if is_source_url(&source) && !proto.is_empty() {
        bad(
            "source_protocol",
            "give either a URL in source or a protocol, not both".into(),
        );
    }
    match source_url(&source, &proto, &user) {
        Ok(url) => match endpoint::parse_cell(&url) {
            Ok(ep) => Some(ep),
            Err(why) => {
                bad("source", why);
                None
            }
        },
        Err((column, why)) => {
            bad(column, why.into());
            None
        }
    }
}

/// What is wrong with a target_user cell, if anything.
fn target_user_problem(target_user: &str) -> Option<String> {
    if target_user.is_empty() {
        Some("empty; the target address is needed".into())
    } else if !looks_like_address(target_user) {
        Some(NOT_AN_ADDRESS.into())
    } else {
        address::check(target_user)
            .err()
            .map(|why| format!("{target_user:?} breaks the host's address rules: {why}"))
    }
}

/// The target URL of a row: the `target` cell (a host, `imaps://HOST` or
/// `imap://HOST`; empty: the Infomaniak host) with target_user as the login; else
/// what is wrong with the `target` cell.
fn target_url(target: &str, target_user: &str) -> Result<String, &'static str> {
    let (scheme, hostport) = match target.split_once("://") {
        Some((s, h)) => (s.to_ascii_lowercase(), h.to_string()),
        None if target.is_empty() => ("imaps".into(), format!("{DEFAULT_HOST}:993")),
        None => ("imaps".into(), target.to_string()),
    };
    if hostport.contains('@') {
        Err("give the host only; the login is target_user")
    } else if scheme != "imaps" && scheme != "imap" {
        Err("only imaps:// or imap:// can be a target")
    } else {
        Ok(format!(
            "{scheme}://{}@{hostport}",
            escape_user(target_user)
        ))
    }
}

/// The row's target server, from `target` and `target_user`.
fn target_server(
    target: &str,
    target_user: &str,
    bad: &mut impl FnMut(&str, String),
) -> Option<Server> {
    let url = match target_url(target, target_user) {
        Ok(url) => url,
        Err(why) => {
            bad("target", why.into());
            return None;
        }
    };
    match endpoint::parse_cell(&url) {
        Ok(Endpoint::Server(s)) if s.proto == Proto::Imap => Some(s),
        Ok(_) => None,
        Err(why) => {
            bad("target", why);
            None
        }
    }
}

/// The `since`, `before` and `max_size` cells (empty: the batch's flags).
fn select_cells(cells: &Cells, bad: &mut impl FnMut(&str, String)) -> RowSelect {
    let mut day = |column: &str| {
        let cell = cells.get(column);
        let cell = cell.trim();
        if cell.is_empty() {
            return None;
        }
        // The reason only: the cell's text could be a shifted password.
        crate::select::parse_day(cell)
            .map_err(|_| {
                bad(
                    column,
                    "not a day; write it as 2024-03-01 (or 1-Mar-2024)".into(),
                )
            })
            .ok()
    };
    let (since, before) = (day("since"), day("before"));
    let cell = cells.get("max_size");
    let max_size = match cell.trim() {
        "" => None,
        text => crate::select::parse_size(text)
            .map_err(|_| {
                bad(
                    "max_size",
                    "not a size; write it as bytes or with K, M or G (25M, 1G)".into(),
                )
            })
            .ok(),
    };
    if let (Some(s), Some(b)) = (since, before) {
        if s >= b {
            bad(
                "before",
                format!("{b} is not after since {s}: no message could be copied"),
            );
        }
    }
    RowSelect {
        since,
        before,
        max_size,
    }
}

/// The folder_map cell's `SRC=DST` pairs (separated by `|`).
fn folder_map_cell(
    cell: &str,
    bad: &mut impl FnMut(&str, String),
) -> Vec<(Vec<String>, Vec<String>)> {
    let mut folder_map = Vec::new();
    for m in cell.split('|').filter(|m| !m.trim().is_empty()) {
        match folders::parse_map(m.trim()) {
            Ok(pair) => folder_map.push(pair),
            // The reason only: the cell's text could be a shifted password.
            Err(_) => bad(
                "folder_map",
                "not SRC=DST pairs separated by |, both sides naming a folder".into(),
            ),
        }
    }
    folder_map
}

/// A cell that does not read as an address is not shown: when columns are shifted,
/// it may hold a password.
pub const NOT_AN_ADDRESS: &str = "not an address (something@domain.tld); the cell is not shown, since a shifted column could have put a password there";

/// Whether a cell reads as an address, and so may be shown in a message: one `@`,
/// something before it, and after it a domain of letters, digits, `-` and `.`
/// ending in a top-level domain of two letters or more.
pub fn looks_like_address(cell: &str) -> bool {
    let Some((local, domain)) = cell.split_once('@') else {
        return false;
    };
    let tld = domain.rsplit('.').next().unwrap_or("");
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
}

/// Read and check a CSV file.
pub fn load(path: &Path) -> anyhow::Result<(Vec<Account>, Vec<RowError>)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input(format!("cannot read {}: {e}", path.display())))?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(parse(&text, &base))
}

/// `--shard K/N`: (K, N) with 1 ≤ K ≤ N.
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard {text:?}: give K/N with 1 <= K <= N, e.g. 2/5");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// Whether a data row belongs to shard K of N: row positions are dealt out in turn.
pub fn in_shard(position: usize, (k, n): (usize, usize)) -> bool {
    position % n == k - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(csv: &str) -> Vec<String> {
        parse(csv, Path::new("."))
            .1
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn good_rows_both_delimiters() {
        for csv in [
            "source,source_user,source_password,target_user,target_password\nimaps://old.example.com,anna@old.example.com,pw1,anna@example.ch,pw2\n",
            "target_user;target_password;source;source_protocol;source_user;source_password;target;folder_map\nbob@example.ch;pw;pop.example.com:995;pop3s;bob;pw;imap://localhost:1143;Old=Archive|Sent Items=Sent\n",
        ] {
            let (acc, e) = parse(csv, Path::new("."));
            assert!(e.is_empty(), "{e:?}");
            assert_eq!(acc.len(), 1);
            assert_eq!(acc[0].row, 2);
        }
        let (acc, _) = parse("source,source_user,source_password,target_user,target_password\nimaps://old.example.com,anna@old.example.com,pw1,anna@example.ch,pw2\n", Path::new("."));
        assert_eq!(
            acc[0].source.to_string(),
            "imaps://anna@old.example.com@old.example.com:993"
        );
        assert_eq!(
            acc[0].target.to_string(),
            "imaps://anna@example.ch@mail.infomaniak.com:993"
        );
    }

    #[test]
    fn per_row_logins_admin_or_token_command() {
        let csv = "source,source_user,source_password,source_admin,source_token_cmd,target_user,target_password,target_admin,target_token_cmd\n\
            imaps://h1,u1,adminpw,admin,,one@example.ch,,,get-token one\n\
            imaps://h2,u2,,,get-token u2,two@example.ch,adminpw,admin,\n\
            imaps://h3,u3,pw,,,three@example.ch,pw,,\n";
        let (acc, e) = parse(csv, Path::new("."));
        assert!(e.is_empty(), "{e:?}");
        assert!(matches!(
            &acc[0].source_credentials,
            Some(Credentials::Admin { admin, password }) if admin == "admin" && password.expose() == "adminpw"
        ));
        assert!(
            matches!(&acc[0].target_credentials, Credentials::TokenCmd(c) if c == "get-token one")
        );
        assert!(
            matches!(&acc[1].source_credentials, Some(Credentials::TokenCmd(c)) if c == "get-token u2")
        );
        assert!(matches!(
            &acc[1].target_credentials,
            Credentials::Admin { .. }
        ));
        assert!(matches!(
            &acc[2].source_credentials,
            Some(Credentials::Password(_))
        ));
        // Only token commands on the target: no target_password column needed.
        let (acc, e) = parse(
            "source,source_user,source_password,target_user,target_token_cmd\nimaps://h1,u1,pw,one@example.ch,get-token\n",
            Path::new("."),
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(acc.len(), 1);
    }

    #[test]
    fn bad_login_combinations_are_refused_one_line_each() {
        let csv = "source,source_user,source_password,source_admin,source_token_cmd,target_user,target_password,target_admin,target_token_cmd\n\
            imaps://h1,u1,S3cret!pw,admin,get-token,one@example.ch,pw,,\n\
            imaps://h2,u2,S3cret!pw,,get-token,two@example.ch,pw,,\n\
            imaps://h3,u3,,admin,,three@example.ch,pw,,\n\
            imaps://h4,u4,pw,,,four@example.ch,N3w#Pass!,,get-token\n\
            mbox:/tmp/x.mbox,,,admin,,five@example.ch,pw,,\n";
        let e = errs(csv);
        assert_eq!(
            e,
            [
                "row 2, column source_token_cmd: give source_admin or source_token_cmd, not both: an admin logs in with its password, a token command replaces any password",
                "row 3, column source_password: must be empty: source_token_cmd gives a token instead of a password",
                "row 4, column source_password: empty; with source_admin it holds the admin's password",
                "row 5, column target_password: must be empty: target_token_cmd gives a token instead of a password",
                "row 6, column source_admin: an mbox source is read from files: it takes no login",
            ]
        );
        for x in &e {
            assert!(!x.contains("S3cret") && !x.contains("N3w#"), "{x}");
        }
    }

    #[test]
    fn every_bad_row_is_named_with_column_and_rule() {
        let csv =
            "source,source_protocol,source_user,source_password,target_user,target_password\n\
            imaps://h1,,u1,p,ok.one@example.ch,p\n\
            h2,ftp,u2,p,two@example.ch,p\n\
            h3,,u3,p,three@example.ch,p\n\
            imaps://h4,,u4,,four@example.ch,p\n\
            imaps://h5,,u5,p,anna..alpha@example.ch,p\n\
            imaps://h6,,u6,p,ok.one@example.ch,p\n\
            imaps://h7,,u7,p,seven@example.ch,\n\
            imaps://h8,,u8,env:MAILFERRY_TEST_UNSET_VAR,eight@example.ch,p\n\
            imaps://h9,,u9,p,zoë@example.ch,p\n";
        let e = errs(csv);
        for want in [
            "row 3, column source_protocol: unknown protocol; use imaps",
            "row 4, column source_protocol: source is a host name",
            "row 5, column source_password: empty",
            "row 6, column target_user: \"anna..alpha@example.ch\" breaks the host's address rules: the part before @ has two dots in a row",
            "row 7, column target_user: the same target account",
            "row 8, column target_password: empty",
            "row 9, column source_password: the environment variable MAILFERRY_TEST_UNSET_VAR is not set",
            "row 10, column target_user: \"zoë@example.ch\" breaks the host's address rules",
        ] {
            assert!(e.iter().any(|x| x.starts_with(want)), "missing {want:?} in {e:#?}");
        }
        assert_eq!(e.len(), 8, "{e:#?}");
    }

    #[test]
    fn filter_cells_are_read_or_named_without_their_text() {
        let csv = "source,source_user,source_password,target_user,target_password,since,before,max_size\n\
            imaps://h1,u1,p,one@example.ch,p,2024-01-01,1-Jun-2024,25M\n\
            imaps://h2,u2,p,two@example.ch,p,,,\n\
            imaps://h3,u3,p,three@example.ch,p,secret-pw,2024-01-01,12.5M\n\
            imaps://h4,u4,p,four@example.ch,p,2024-02-01,2024-01-01,\n";
        let (acc, e) = parse(csv, Path::new("."));
        let e: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        let day = |s: &str| crate::select::parse_day(s).ok();
        assert_eq!(
            acc.iter()
                .map(|a| (a.row, a.select.clone()))
                .collect::<Vec<_>>(),
            vec![
                (
                    2,
                    RowSelect {
                        since: day("2024-01-01"),
                        before: day("2024-06-01"),
                        max_size: Some(25 << 20),
                    }
                ),
                (3, RowSelect::default()),
            ]
        );
        for want in [
            "row 4, column since: not a day",
            "row 4, column max_size: not a size",
            "row 5, column before: 2024-01-01 is not after since 2024-02-01",
        ] {
            assert!(
                e.iter().any(|x| x.starts_with(want)),
                "missing {want:?} in {e:#?}"
            );
        }
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(
            !e.iter()
                .any(|x| x.contains("secret-pw") || x.contains("12.5M")),
            "{e:#?}"
        );
    }

    #[test]
    fn one_target_account_written_two_ways_is_caught() {
        let e = errs(
            "source,source_user,source_password,target_user,target_password,target\n\
            imaps://h1,u1,p,d@example.ch,p,\n\
            imaps://h2,u2,p,D@Example.ch,p,imap://MAIL.infomaniak.com:143\n\
            imaps://h3,u3,p,d@example.ch,p,imaps://other.example.net\n",
        );
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].starts_with("row 3, column target_user: the same target account (on the same server) is already in row 2"),
            "{e:#?}"
        );
    }

    #[test]
    fn malformed_urls_are_named() {
        let e = errs(
            "source,source_user,source_password,target_user,target_password,target\n\
            imaps://h1:99999,u1,p,a@example.ch,p,\n\
            imaps://,u2,p,b@example.ch,p,\n\
            imaps://h3,u3,p,c@example.ch,p,imaps://t.example.net:x\n\
            pop3s://h4,u4,p,d@example.ch,p,pop3s://t.example.net\n",
        );
        for want in [
            "row 2, column source:",
            "row 3, column source:",
            "row 4, column target:",
            "row 5, column target: only imaps:// or imap:// can be a target",
        ] {
            assert!(
                e.iter().any(|x| x.starts_with(want)),
                "missing {want:?} in {e:#?}"
            );
        }
        assert_eq!(e.len(), 4, "{e:#?}");
    }

    #[test]
    fn a_shifted_password_is_never_echoed() {
        // Passwords in the wrong columns (a header that does not match its rows).
        let e = errs(
            "source,source_protocol,source_user,source_password,target_user,target_password,target,folder_map\n\
            Src:S3cret,imaps,u,p,Tgt-S3cret,anna@example.ch,,\n\
            imaps://h,,u,p,b@example.ch,p,\"imaps://host:Port\"\"S3cret\",\n\
            imaps://h,Proto-S3cret,u,p,c@example.ch,p,,\n\
            imaps://u%zzS3cret@h,,,p,d@example.ch,p,,\n\
            Host-S3cret,,u,p,e@example.ch,p,,\n\
            imaps://h,,u,p,P@ss.S3cret,p,,\n\
            imaps://h,,u,p,g@example.ch,p,,S3cret-no-pair\n",
        );
        for err in &e {
            assert!(!err.contains("S3cret"), "a cell was echoed: {err}");
        }
        for want in [
            "row 2, column source: not a valid URL: bad port;",
            "row 2, column target_user: not an address",
            "row 3, column target: not a valid URL: bad port;",
            "row 4, column source_protocol: give either a URL",
            "row 5, column source: not a valid URL: bad percent-encoding in;",
            "row 6, column source_protocol: source is a host name",
            "row 7, column target_user: not an address",
            "row 8, column folder_map: not SRC=DST pairs",
        ] {
            assert!(
                e.iter().any(|x| x.starts_with(want)),
                "missing {want:?} in {e:#?}"
            );
        }
        assert_eq!(e.len(), 8, "{e:#?}");
    }

    #[test]
    fn what_reads_as_an_address() {
        for (cell, shown) in [
            ("anna@example.ch", true),
            ("anna..alpha@example.ch", true),
            ("zoë@example.ch", true),
            ("a b@mail.example.com", true),
            ("S3cret", false),
            ("P@ss.w0rd", false),
            ("pa@ss@example.ch", false),
            ("@example.ch", false),
            ("anna@localhost", false),
            ("x@y.c", false),
        ] {
            assert_eq!(looks_like_address(cell), shown, "{cell:?}");
        }
    }

    #[test]
    fn a_short_row_is_refused_without_echoing_its_cells() {
        let e = errs("source,source_user,source_password,target_user,target_password\nimaps://old.example.com,S3cret!pw,anna@example.ch,N3w#Pass!\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("4 cells but the header has 5 columns"),
            "{e:?}"
        );
        assert!(
            !e[0].contains("S3cret") && !e[0].contains("N3w#Pass"),
            "{e:?}"
        );
    }

    #[test]
    fn header_problems() {
        let e = errs("source,target_user,passwd\nx,y,z\n");
        assert!(
            e.iter()
                .any(|x| x.contains("column passwd: unknown column")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|x| x.contains("column target_password: required column is missing")),
            "{e:?}"
        );
    }

    #[test]
    fn login_kind_of_each_cell_combination() {
        let side = |password: &str, admin: &str, token_cmd: &str, oauth2: &str| SideCells {
            side: "target",
            password: password.into(),
            admin: admin.into(),
            token_cmd: token_cmd.into(),
            oauth2: oauth2.into(),
        };
        let err = |col: &str, why: &str| Err((col.to_string(), why.to_string()));
        for (cells, want) in [
            (side("pw", "", "", ""), Ok(Login::Password("pw"))),
            (
                side("pw", "root", "", ""),
                Ok(Login::Admin {
                    admin: "root",
                    password: "pw",
                }),
            ),
            (side("", "", "get-token", ""), Ok(Login::TokenCmd("get-token"))),
            (side("", "", "", "p.toml"), Ok(Login::OAuth2("p.toml"))),
            (
                side("", "root", "", "p.toml"),
                err("target_admin", "must be empty: target_oauth2 gives the tokens"),
            ),
            (
                side("pw", "root", "get-token", ""),
                err("target_token_cmd", "give target_admin or target_token_cmd, not both: an admin logs in with its password, a token command replaces any password"),
            ),
            (
                side("pw", "", "get-token", ""),
                err("target_password", "must be empty: target_token_cmd gives a token instead of a password"),
            ),
            (side("", "", "", ""), err("target_password", "empty")),
            (
                side("", "root", "", ""),
                err("target_password", "empty; with target_admin it holds the admin's password"),
            ),
        ] {
            assert_eq!(
                login_kind(&cells),
                want,
                "{:?}",
                (&cells.password, &cells.admin, &cells.token_cmd, &cells.oauth2)
            );
        }
    }

    #[test]
    fn source_url_from_cells() {
        for (source, proto, user, want) in [
            ("imaps://h", "", "a@b", Ok("imaps://a%40b@h")),
            ("imaps://u@h", "", "a", Ok("imaps://u@h")),
            ("mbox:/m", "", "", Ok("mbox:/m")),
            ("h:995", "pop3s", "a%b", Ok("pop3s://a%25b@h:995")),
            ("", "", "", Err(("source", "empty; give a URL (imaps://USER@HOST) or a host with source_protocol"))),
            ("h", "", "a", Err(("source_protocol", "source is a host name (no scheme://), so source_protocol (imaps, imap, pop3s or pop3) is needed"))),
            ("h", "smtp", "a", Err(("source_protocol", "unknown protocol; use imaps, imap, pop3s or pop3"))),
            ("h", "imap", "", Err(("source_user", "empty; the source login is needed"))),
        ] {
            assert_eq!(
                source_url(source, proto, user),
                want.map(str::to_string),
                "{source:?} {proto:?} {user:?}"
            );
        }
    }

    #[test]
    fn target_url_from_cells() {
        for (target, want) in [
            ("", Ok("imaps://a%40b.ch@mail.infomaniak.com:993")),
            ("h:143", Ok("imaps://a%40b.ch@h:143")),
            ("IMAP://h", Ok("imap://a%40b.ch@h")),
            (
                "imaps://x@h",
                Err("give the host only; the login is target_user"),
            ),
            ("pop3s://h", Err("only imaps:// or imap:// can be a target")),
        ] {
            assert_eq!(
                target_url(target, "a@b.ch"),
                want.map(str::to_string),
                "{target:?}"
            );
        }
        assert_eq!(
            target_user_problem(""),
            Some("empty; the target address is needed".into())
        );
        assert_eq!(target_user_problem("pw123"), Some(NOT_AN_ADDRESS.into()));
        assert_eq!(target_user_problem("anna@example.ch"), None);
    }

    #[test]
    fn shards_cover_every_row_once() {
        assert_eq!(parse_shard("2/5"), Ok((2, 5)));
        for bad in ["0/3", "4/3", "x/2", "1", "1/0"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        for n in 1..6 {
            for pos in 0..50 {
                let owners = (1..=n).filter(|&k| in_shard(pos, (k, n))).count();
                assert_eq!(owners, 1);
            }
        }
    }

    #[test]
    fn password_cells() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
        assert_eq!(
            password_cell("file:pw", dir.path()).unwrap().expose(),
            "from-file"
        );
        assert_eq!(
            password_cell("plain", dir.path()).unwrap().expose(),
            "plain"
        );
        assert!(password_cell("file:missing", dir.path()).is_err());
    }
}
