//! `mailferry addresses check FILE.csv`: the target host's address rules applied to
//! a list of addresses, every bad one reported with its row and reason.
//!
//! `mailferry addresses create FILE.csv --mail-hosting ID`: the same check, then
//! the missing addresses created through the Infomaniak API (`crate::provision`),
//! each with the CSV's password or a generated one kept in an owner-only file, and
//! a CSV that `batch` reads. A password file is written before its address is
//! created and reused by the next run, so a run can stop anywhere and run again:
//! nothing is created twice, nothing is lost.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::address;
use crate::batch::sniff_delimiter;
use crate::cli::{AddressesCheckArgs, AddressesCreateArgs};
use crate::cmd::batch::spreadsheet_safe;
use crate::error::{input, local, retry_class, Retry, EXIT_INPUT, EXIT_OK, EXIT_PARTIAL};
use crate::provision::{self, Action, Added, PasswordFrom};
use crate::secret::{self, Password};

/// A list of addresses read from a CSV file: a table with a header, or a bare
/// one-column list.
struct Table {
    /// The header's cells as written (none for a bare list).
    header: Option<Vec<String>>,
    /// The cell that holds the address.
    column: usize,
    /// The rows that are not empty, with their line numbers (header = 1).
    rows: Vec<(usize, csv::StringRecord)>,
    delimiter: u8,
}

impl Table {
    /// The header's cells lower-cased (empty for a bare list).
    fn names(&self) -> Vec<String> {
        self.header
            .iter()
            .flatten()
            .map(|c| c.to_ascii_lowercase())
            .collect()
    }
}

fn read_table(file: &Path, column: Option<&str>) -> anyhow::Result<Table> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| input(format!("cannot read {}: {e}", file.display())))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let delimiter = sniff_delimiter(text);
    let mut rd = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = rd.records();
    let first = match records.next() {
        Some(r) => r.map_err(|e| input(format!("{}: {e}", file.display())))?,
        None => return Err(input(format!("{} is empty", file.display()))),
    };
    let header: Vec<String> = first.iter().map(|c| c.to_ascii_lowercase()).collect();
    // A bare list (one column, no --column): the first line is a header only when it
    // reads like a column name, so a bad first address is checked, not skipped.
    let bare = column.is_none() && header.len() == 1 && !is_column_name(&header[0]);
    let column = if bare {
        0
    } else if let Some(name) = column {
        header
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                input(format!(
                    "{} has no column {name:?}; its columns are {}",
                    file.display(),
                    header.join(", ")
                ))
            })?
    } else if let Some(i) = header
        .iter()
        .position(|c| ["address", "email", "target_user"].contains(&c.as_str()))
    {
        i
    } else if header.len() == 1 {
        0
    } else {
        return Err(input(format!(
            "{}: say which column holds the addresses with --column (columns: {})",
            file.display(),
            header.join(", ")
        )));
    };
    let mut rows = Vec::new();
    if bare {
        rows.push((1, first.clone()));
    }
    for (i, rec) in records.enumerate() {
        let rec = rec.map_err(|e| input(format!("{}: {e}", file.display())))?;
        let row = rec.position().map(|p| p.line() as usize).unwrap_or(i + 2);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        rows.push((row, rec));
    }
    Ok(Table {
        header: (!bare).then(|| first.iter().map(str::to_string).collect()),
        column,
        rows,
        delimiter,
    })
}

pub fn check(a: &AddressesCheckArgs) -> anyhow::Result<i32> {
    let table = read_table(&a.file, a.column.as_deref())?;
    let mut checked = 0;
    let mut bad = 0;
    for (row, rec) in &table.rows {
        let addr = rec.get(table.column).unwrap_or("");
        checked += 1;
        if let Some(why) = address_problem(addr) {
            bad += 1;
            crate::progress::out(&format!("row {row}: {why}"));
        }
    }
    let skipped = if table.header.is_none() {
        String::new()
    } else {
        format!(
            " (line 1 taken as the header: {})",
            table.names().join(", ")
        )
    };
    crate::progress::out(&format!(
        "{checked} addresses checked, {bad} break the host's rules{skipped}"
    ));
    Ok(if bad == 0 { EXIT_OK } else { EXIT_INPUT })
}

/// What is wrong with an address cell, in words for the user; the cell itself is
/// shown only when it reads as an address (in a file with shifted columns it may
/// be a password).
fn address_problem(addr: &str) -> Option<String> {
    if !crate::batch::looks_like_address(addr) {
        Some(crate::batch::NOT_AN_ADDRESS.to_string())
    } else {
        address::check(addr)
            .err()
            .map(|why| format!("{addr:?}: {why}"))
    }
}

// ---------------------------------------------------------------------------
// `mailferry addresses create`

/// A password cell of the CSV: the secret, `env:NAME` or `file:PATH` (as `batch`
/// reads them).
#[derive(Debug, Clone)]
enum Cell {
    Literal,
    Env,
    /// The file, resolved against the CSV's directory.
    File(PathBuf),
}

/// One valid row.
struct Entry {
    row: usize,
    /// The row's cells, as read.
    record: csv::StringRecord,
    address: String,
    local: String,
    csv_password: Option<(Cell, Password)>,
}

/// The outcome of one row, for the terminal and `--report`.
#[derive(Debug, Clone)]
struct RowResult {
    row: usize,
    address: String,
    /// created, existed, failed; with --dry-run: would-create, exists
    status: String,
    /// The API's error code (failed rows).
    code: String,
    /// The API's words, or what else happened; never a secret.
    description: String,
    /// The file holding the password, when mailferry wrote one.
    password_file: String,
}

impl RowResult {
    fn line(&self) -> String {
        let mut l = format!("row {}: {} {}", self.row, self.address, self.status);
        match (self.code.is_empty(), self.description.is_empty()) {
            (false, _) => l.push_str(&format!(": {}: {}", self.code, self.description)),
            (true, false) => l.push_str(&format!(" ({})", self.description)),
            _ => {}
        }
        l
    }
}

const UNKNOWN_PASSWORD: &str =
    "its password is not known to mailferry: put it in the target_password column of the CSV";

pub fn create(a: &AddressesCreateArgs) -> anyhow::Result<i32> {
    // Phase 1: every row checked, before the API is asked anything.
    let table = read_table(&a.file, a.column.as_deref())?;
    let base = csv_dir(&a.file);
    let names = table.names();
    let password_column = names.iter().position(|c| c == "target_password");
    let Checked {
        entries,
        problems,
        domain,
    } = check_rows(&table, &names, password_column, &base);
    if !problems.is_empty() {
        return Ok(refuse_rows(&problems, table.rows.len()));
    }
    if entries.is_empty() {
        return Err(input(format!("{} has no addresses", a.file.display())));
    }
    let token = api_token(a)?;
    let net = crate::plan::net(&a.net);
    let mut api = provision::Api::new(&a.api_url, &token, a.mail_hosting, &net)?;
    let dir = password_dir(a, &base)?;
    let report = a.report.clone().filter(|_| !a.dry_run);

    // Phase 2: what exists, and in which domain; then the CSV's passwords.
    let existing = existing_mailboxes(&mut api, a.mail_hosting, domain)?;
    let weak = weak_passwords(&entries, &existing);
    if !weak.is_empty() {
        return Ok(refuse_rows(&weak, table.rows.len()));
    }
    // Each row goes into the report as soon as it is done, so a run that stops
    // (a revoked token, a full disk, Ctrl-C) leaves the record of what it did.
    let mut report_rows = match &report {
        Some(path) => Some(ReportWriter::create(path)?),
        None => None,
    };
    let rows = Rows {
        dir: &dir,
        existing: &existing,
        password_column,
        dry_run: a.dry_run,
    };
    let mut done = create_rows(&entries, &rows, &mut api, &mut report_rows);

    let write_out =
        |out: &Path, cells: &[String]| write_batch_csv(out, &table, &names, &entries, cells, &base);
    if let Some(err) = done.stopped.take() {
        // The rows finished are in the report already; the batch CSV gets them too.
        let kept = match &a.out {
            Some(out) if !a.dry_run && !done.cells.is_empty() => write_out(out, &done.cells)
                .map(|()| format!("; batch CSV of those rows: {}", out.display()))
                .unwrap_or_default(),
            _ => String::new(),
        };
        crate::progress::out(&stopped_line(
            &done,
            entries.len(),
            &kept,
            report.as_deref(),
        ));
        return Err(err);
    }
    if a.dry_run {
        crate::progress::out(&dry_run_line(&done));
        return Ok(EXIT_OK);
    }
    if let Some(out) = &a.out {
        write_out(out, &done.cells)?;
    }
    if let Some(w) = report_rows.take() {
        w.finish()?;
    }
    crate::progress::out(&summary_line(&done, &dir, a.out.as_deref()));
    Ok(if done.count("failed") == 0 {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

/// The CSV's directory, against which its relative `file:` cells are read.
fn csv_dir(file: &Path) -> PathBuf {
    file.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The rows of `create` that passed phase 1, the problems of those that did not,
/// and the domain of the first good row (with its row number).
struct Checked {
    entries: Vec<Entry>,
    problems: Vec<String>,
    domain: Option<(String, usize)>,
}

/// Phase 1 of `create`: every row checked, each bad one as `row N: why`.
fn check_rows(
    table: &Table,
    names: &[String],
    password_column: Option<usize>,
    base: &Path,
) -> Checked {
    let mut checker = RowChecker {
        columns: if table.header.is_some() {
            names.len()
        } else {
            0
        },
        column: table.column,
        password_column,
        base,
        seen: HashMap::new(),
        domain: None,
    };
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (row, rec) in &table.rows {
        match checker.check(*row, rec) {
            Ok(e) => entries.push(e),
            Err(why) => problems.push(format!("row {row}: {why}")),
        }
    }
    Checked {
        entries,
        problems,
        domain: checker.domain,
    }
}

/// Checks the rows of `create` one after the other, remembering the addresses and
/// the domain seen so far.
struct RowChecker<'a> {
    /// The header's column count (0 for a bare list).
    columns: usize,
    /// The cell that holds the address.
    column: usize,
    password_column: Option<usize>,
    /// The CSV's directory, for relative `file:` cells.
    base: &'a Path,
    /// Each address seen (lower-cased), with its row.
    seen: HashMap<String, usize>,
    /// The domain of the first good row, lower-cased, with its row.
    domain: Option<(String, usize)>,
}

impl RowChecker<'_> {
    /// One row: its entry, or what is wrong with it (without the `row N: ` prefix).
    fn check(&mut self, row: usize, rec: &csv::StringRecord) -> Result<Entry, String> {
        if self.columns > 1 && rec.len() != self.columns {
            return Err(format!(
                "{} cells but the header has {} columns; every row needs one cell per column (empty cells too)",
                rec.len(),
                self.columns
            ));
        }
        let addr = rec.get(self.column).unwrap_or("");
        if let Some(why) = address_problem(addr) {
            return Err(why);
        }
        let (local, dom) = addr.rsplit_once('@').unwrap_or((addr, ""));
        let key = addr.to_ascii_lowercase();
        if let Some(first) = self.seen.get(&key) {
            return Err(format!(
                "{addr:?} is already in row {first}; each address may appear once"
            ));
        }
        self.seen.insert(key, row);
        match &self.domain {
            Some((d, first)) if !d.eq_ignore_ascii_case(dom) => {
                return Err(format!(
                    "{addr:?} is not in the domain {d} of row {first}; a mail hosting holds one domain's addresses: give each domain its own file and --mail-hosting"
                ));
            }
            Some(_) => {}
            None => self.domain = Some((dom.to_ascii_lowercase(), row)),
        }
        let csv_password = match self
            .password_column
            .and_then(|i| rec.get(i))
            .filter(|c| !c.is_empty())
        {
            None => None,
            Some(cell) => Some(
                password_cell(cell, self.base)
                    .map_err(|why| format!("column target_password: {why}"))?,
            ),
        };
        Ok(Entry {
            row,
            record: rec.clone(),
            address: addr.to_string(),
            local: local.to_string(),
            csv_password,
        })
    }
}

/// Print the bad rows and that nothing was created; the exit code for bad input.
fn refuse_rows(problems: &[String], rows: usize) -> i32 {
    for p in problems {
        crate::progress::out(p);
    }
    crate::progress::out(&format!(
        "{} of {rows} rows are bad; nothing was created",
        problems.len(),
    ));
    EXIT_INPUT
}

/// `--password-dir`, or `STEM-passwords` beside the CSV; made absolute and
/// refused when others can open it.
fn password_dir(a: &AddressesCreateArgs, base: &Path) -> anyhow::Result<PathBuf> {
    let dir = match &a.password_dir {
        Some(d) => d.clone(),
        None => {
            let stem = a
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "addresses".into());
            base.join(format!("{stem}-passwords"))
        }
    };
    let dir = std::path::absolute(&dir)
        .map_err(|e| input(format!("--password-dir {}: {e}", dir.display())))?;
    check_password_dir(&dir)?;
    Ok(dir)
}

/// The mail hosting's mailboxes (local parts, lower-cased), once its domain is
/// known to be the CSV's: a wrong --mail-hosting would create real mailboxes in
/// another domain (only `mailbox_name` is sent).
fn existing_mailboxes(
    api: &mut provision::Api,
    hosting: u64,
    domain: Option<(String, usize)>,
) -> anyhow::Result<HashSet<String>> {
    let listing = api.list()?;
    let csv_domain = domain.map(|(d, _)| d).unwrap_or_default();
    if let Some(why) = provision::domain_problem(&csv_domain, hosting, &listing.domains) {
        return Err(input(why));
    }
    let existing: HashSet<String> = listing.names.into_iter().collect();
    crate::log::info(format!(
        "mail hosting {hosting} ({csv_domain}): {} mailboxes exist",
        existing.len()
    ));
    Ok(existing)
}

/// The CSV's passwords of the addresses to create, against the rules generated
/// ones meet: every bad row at once, before anything is created (an address that
/// exists keeps the password it has, so its cell is not judged).
fn weak_passwords(entries: &[Entry], existing: &HashSet<String>) -> Vec<String> {
    entries
        .iter()
        .filter(|e| !existing.contains(&e.local.to_ascii_lowercase()))
        .filter_map(|e| {
            let (_, pw) = e.csv_password.as_ref()?;
            let why = provision::rule_broken(pw.expose())?;
            Some(format!(
                "row {}: column target_password: the password {why}; the host asks for at least 16 characters with a lower-case and an upper-case letter, a digit and a special character",
                e.row
            ))
        })
        .collect()
}

/// What every row of `create` shares.
struct Rows<'a> {
    /// Where password files go.
    dir: &'a Path,
    /// The mailboxes that exist (local parts, lower-cased).
    existing: &'a HashSet<String>,
    password_column: Option<usize>,
    dry_run: bool,
}

/// What the rows' loop did: each row's result, each created or existing row's
/// batch-CSV cell, and the error that stopped the loop, if one did.
#[derive(Default)]
struct Done {
    results: Vec<RowResult>,
    cells: Vec<String>,
    stopped: Option<anyhow::Error>,
}

impl Done {
    /// How many rows ended with this status.
    fn count(&self, status: &str) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }
}

/// Every row in turn, each printed and written to the report as soon as it is
/// done; what stops the run (every other row would fail the same way) ends the loop.
fn create_rows(
    entries: &[Entry],
    rows: &Rows,
    api: &mut provision::Api,
    report: &mut Option<ReportWriter>,
) -> Done {
    let mut done = Done::default();
    for e in entries {
        let pw_path = rows
            .dir
            .join(format!("{}.pw", e.address.to_ascii_lowercase()));
        let saved = pw_path.is_file();
        let action = provision::decide(
            rows.existing.contains(&e.local.to_ascii_lowercase()),
            e.csv_password.is_some(),
            saved,
        );
        if rows.dry_run {
            let r = dry_run_row(e, action);
            crate::progress::out(&r.line());
            done.results.push(r);
            continue;
        }
        let (r, cell) = match create_row(e, action, &pw_path, rows, api) {
            Ok(v) => v,
            Err(err) => {
                done.stopped = Some(err);
                break;
            }
        };
        crate::progress::out(&r.line());
        done.results.push(r);
        done.cells.push(cell);
        if let (Some(w), Some(r)) = (report.as_mut(), done.results.last()) {
            if let Err(err) = w.row(r) {
                done.stopped = Some(err);
                break;
            }
        }
    }
    done
}

/// A row's result with nothing done yet.
fn blank_result(e: &Entry) -> RowResult {
    RowResult {
        row: e.row,
        address: e.address.clone(),
        status: String::new(),
        code: String::new(),
        description: String::new(),
        password_file: String::new(),
    }
}

/// What `--dry-run` says of a row: its status and where its password would come from.
fn dry_run_words(action: Action) -> (&'static str, &'static str) {
    let (status, from) = match action {
        Action::Create(from) => ("would be created", from),
        Action::Existed(from) => ("exists", from),
    };
    let description = match from {
        PasswordFrom::Csv => "password from the CSV",
        PasswordFrom::Saved => "password from an earlier run's file",
        PasswordFrom::Generate => "password to be generated",
        PasswordFrom::Unknown => UNKNOWN_PASSWORD,
    };
    (status, description)
}

/// A row's result under `--dry-run`: nothing is read, written or created.
fn dry_run_row(e: &Entry, action: Action) -> RowResult {
    let (status, description) = dry_run_words(action);
    RowResult {
        status: status.into(),
        description: description.into(),
        ..blank_result(e)
    }
}

/// What a row's target_password cell in the batch CSV becomes.
#[derive(Debug, PartialEq)]
enum OutCell<'a> {
    /// The row's own cell (an `env:` reference).
    Own,
    /// The CSV's `file:` cell, made absolute.
    File(&'a Path),
    /// Nothing: the password is not known.
    Empty,
    /// mailferry's password file; `save`: written now (else an earlier run wrote it).
    PasswordFile { save: bool },
}

/// Where a row's batch-CSV password cell points, given where its password comes
/// from and what its CSV cell was.
fn out_cell(from: PasswordFrom, csv: Option<&Cell>) -> OutCell<'_> {
    match (from, csv) {
        (PasswordFrom::Csv, Some(Cell::Env)) => OutCell::Own,
        (PasswordFrom::Csv, Some(Cell::File(p))) => OutCell::File(p),
        (PasswordFrom::Unknown, _) => OutCell::Empty,
        _ => OutCell::PasswordFile {
            save: from != PasswordFrom::Saved,
        },
    }
}

/// One row for real: its password found or made, saved before the address exists
/// (a run stopped between the two creates the address with the same password next
/// time), then the address created unless it exists. The row's result and its
/// batch-CSV cell; an error stops the run.
fn create_row(
    e: &Entry,
    action: Action,
    pw_path: &Path,
    rows: &Rows,
    api: &mut provision::Api,
) -> anyhow::Result<(RowResult, String)> {
    let mut r = blank_result(e);
    let from = match action {
        Action::Create(f) | Action::Existed(f) => f,
    };
    let password = match from {
        PasswordFrom::Csv => e.csv_password.as_ref().map(|(_, p)| p.clone()),
        PasswordFrom::Saved => Some(secret::from_file(pw_path)?),
        PasswordFrom::Generate => Some(provision::generate()?),
        PasswordFrom::Unknown => None,
    };
    let cell = match out_cell(from, e.csv_password.as_ref().map(|(c, _)| c)) {
        OutCell::Own => csv_cell(e, rows.password_column),
        OutCell::File(p) => format!("file:{}", p.display()),
        OutCell::Empty => String::new(),
        OutCell::PasswordFile { save } => {
            let pw = password.as_ref().expect("a password");
            if save {
                save_password(rows.dir, pw_path, pw)?;
            }
            r.password_file = pw_path.display().to_string();
            format!("file:{}", pw_path.display())
        }
    };
    match action {
        Action::Existed(from) => {
            r.status = "existed".into();
            if from == PasswordFrom::Unknown {
                r.description = UNKNOWN_PASSWORD.into();
            }
        }
        Action::Create(_) => {
            let pw = password.as_ref().expect("a password to create with");
            match api.add(&e.local, pw) {
                Ok(Added::Created) => r.status = "created".into(),
                Ok(Added::Refused { code, description }) => {
                    r.status = "failed".into();
                    r.code = code;
                    r.description = description;
                }
                // The token or the mail hosting refused: every other row would
                // be refused too.
                Err(err) if retry_class(&err) == Retry::Final => return Err(err),
                Err(err) => {
                    r.status = "failed".into();
                    r.code = "-".into();
                    r.description = format!("{err:#}");
                }
            }
        }
    }
    r.description = r.description.replace(['\r', '\n'], " ");
    Ok((r, cell))
}

/// The last line of a run that stopped: what it did of how many rows, and where
/// the report and the batch CSV (`kept`) are.
fn stopped_line(done: &Done, total: usize, kept: &str, report: Option<&Path>) -> String {
    format!(
        "addresses: stopped after {} of {} rows: {} created, {} existed, {} failed{}{kept}",
        done.results.len(),
        total,
        done.count("created"),
        done.count("existed"),
        done.count("failed"),
        report
            .map(|p| format!("; report: {}", p.display()))
            .unwrap_or_default(),
    )
}

/// The last line of a `--dry-run`.
fn dry_run_line(done: &Done) -> String {
    format!(
        "addresses: dry run: {} would be created, {} exist, of {}; nothing was changed",
        done.count("would be created"),
        done.count("exists"),
        done.results.len()
    )
}

/// The last line of a run that went through every row.
fn summary_line(done: &Done, dir: &Path, out: Option<&Path>) -> String {
    let unknown = done
        .results
        .iter()
        .filter(|r| r.description == UNKNOWN_PASSWORD)
        .count();
    format!(
        "addresses: {} created, {} existed, {} failed, of {}; password files in {}{}{}",
        done.count("created"),
        done.count("existed"),
        done.count("failed"),
        done.results.len(),
        dir.display(),
        out.map(|o| format!("; batch CSV: {}", o.display()))
            .unwrap_or_default(),
        if unknown > 0 {
            format!("; {unknown} existing addresses have no known password (their target_password cells are empty)")
        } else {
            String::new()
        }
    )
}

/// The row's own target_password cell.
fn csv_cell(e: &Entry, column: Option<usize>) -> String {
    column
        .and_then(|i| e.record.get(i))
        .unwrap_or("")
        .to_string()
}

/// Read a password cell as `batch` does: the secret, `env:NAME` or `file:PATH`
/// (relative to the CSV's directory). Errors never show the cell.
fn password_cell(cell: &str, base: &Path) -> Result<(Cell, Password), String> {
    let (kind, pw) = if let Some(name) = cell.strip_prefix("env:") {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => (Cell::Env, Password::new(v)),
            _ => return Err(format!("the environment variable {name} is not set")),
        }
    } else if let Some(path) = cell.strip_prefix("file:") {
        let p = base.join(path);
        let pw = secret::from_file(&p).map_err(|e| e.to_string())?;
        (Cell::File(std::path::absolute(&p).unwrap_or(p)), pw)
    } else {
        (Cell::Literal, Password::new(cell))
    };
    if pw.expose().contains(['\r', '\n']) {
        return Err("the password has a line break; a password file holds one line".into());
    }
    Ok((kind, pw))
}

/// The API token: `--api-token-file`, else `MAILFERRY_API_TOKEN`, else a prompt on
/// a terminal. Never a command-line argument.
fn api_token(a: &AddressesCreateArgs) -> anyhow::Result<Password> {
    if let Some(f) = &a.api_token_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            input(format!(
                "cannot read the API token file {}: {e}",
                f.display()
            ))
        })?;
        let line = text.lines().next().unwrap_or("").trim();
        if line.is_empty() {
            return Err(input(format!(
                "the API token file {} is empty; put the token on its first line",
                f.display()
            )));
        }
        return Ok(Password::new(line));
    }
    if let Ok(v) = std::env::var("MAILFERRY_API_TOKEN") {
        if !v.trim().is_empty() {
            return Ok(Password::new(v.trim()));
        }
    }
    if std::io::stdin().is_terminal() {
        let t = rpassword::prompt_password("Infomaniak API token: ")
            .map_err(|e| input(format!("cannot read the API token: {e}")))?;
        return Ok(Password::new(t.trim()));
    }
    Err(input(
        "no API token: give --api-token-file FILE or set MAILFERRY_API_TOKEN (an Infomaniak API token with the mail scope)",
    ))
}

/// Write a password file readable by its owner only (its directory too), through
/// a temporary file renamed over it, so a crash leaves the old file or the new one.
fn save_password(dir: &Path, path: &Path, pw: &Password) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| {
        local(format!(
            "cannot write the password file {}: {e}",
            path.display()
        ))
    };
    if !dir.is_dir() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("pw.partial");
    let mut f = crate::backup::create_private(&tmp).map_err(fail)?;
    f.write_all(format!("{}\n", pw.expose()).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// A relative `file:` cell made absolute (the output CSV may live elsewhere).
fn absolute_file_cell(cell: &str, base: &Path) -> String {
    match cell.strip_prefix("file:") {
        Some(p) if Path::new(p).is_relative() => {
            let full = base.join(p);
            format!(
                "file:{}",
                std::path::absolute(&full).unwrap_or(full).display()
            )
        }
        _ => cell.to_string(),
    }
}

/// The CSV that `batch` reads: a batch CSV keeps its columns and rows, with the
/// target_password cells replaced; a list becomes a batch CSV whose source
/// columns are left for the admin to fill in. Owner-only, written beside and
/// renamed over.
fn write_batch_csv(
    out: &Path,
    table: &Table,
    names: &[String],
    entries: &[Entry],
    cells: &[String],
    base: &Path,
) -> anyhow::Result<()> {
    let batch_shaped = table.header.is_some()
        && names.iter().any(|c| c == "target_user")
        && names
            .iter()
            .all(|c| crate::batch::COLUMNS.contains(&c.as_str()));
    let fail = |e: &dyn std::fmt::Display| local(format!("cannot write {}: {e}", out.display()));
    let tmp = out.with_extension("csv.partial");
    let file = crate::backup::create_private(&tmp).map_err(|e| fail(&e))?;
    let mut w = csv::WriterBuilder::new()
        .delimiter(table.delimiter)
        .from_writer(file);
    if batch_shaped {
        let mut header: Vec<String> = table.header.clone().unwrap_or_default();
        let pw_col = match names.iter().position(|c| c == "target_password") {
            Some(i) => i,
            None => {
                header.push("target_password".into());
                header.len() - 1
            }
        };
        w.write_record(&header).map_err(|e| fail(&e))?;
        for (e, cell) in entries.iter().zip(cells) {
            let mut rec: Vec<String> = e.record.iter().map(str::to_string).collect();
            rec.resize(header.len(), String::new());
            for (i, name) in names.iter().enumerate() {
                if name == "source_password" {
                    rec[i] = absolute_file_cell(&rec[i], base);
                }
            }
            rec[pw_col] = cell.clone();
            w.write_record(&rec).map_err(|e| fail(&e))?;
        }
    } else {
        w.write_record([
            "source",
            "source_protocol",
            "source_user",
            "source_password",
            "target_user",
            "target_password",
        ])
        .map_err(|e| fail(&e))?;
        for (e, cell) in entries.iter().zip(cells) {
            w.write_record(["", "", "", "", e.address.as_str(), cell.as_str()])
                .map_err(|e| fail(&e))?;
        }
    }
    w.flush().map_err(|e| fail(&e))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(|e| fail(&e))
}

/// `--report`, written a row at a time (owner-only): the header at once, each
/// row flushed to the file as soon as it is done.
struct ReportWriter {
    path: PathBuf,
    w: csv::Writer<std::fs::File>,
}

impl ReportWriter {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let file = crate::backup::create_private(path).map_err(|e| Self::fail(path, &e))?;
        let mut w = csv::Writer::from_writer(file);
        w.write_record([
            "row",
            "address",
            "status",
            "code",
            "description",
            "password_file",
        ])
        .and_then(|()| w.flush().map_err(csv::Error::from))
        .map_err(|e| Self::fail(path, &e))?;
        Ok(ReportWriter {
            path: path.to_path_buf(),
            w,
        })
    }

    fn fail(path: &Path, e: &dyn std::fmt::Display) -> anyhow::Error {
        input(format!("cannot write the report {}: {e}", path.display()))
    }

    fn row(&mut self, r: &RowResult) -> anyhow::Result<()> {
        let mut r = r.clone();
        for cell in [&mut r.code, &mut r.description] {
            *cell = spreadsheet_safe(cell);
        }
        let row = r.row.to_string();
        self.w
            .write_record([
                row.as_str(),
                &r.address,
                &r.status,
                &r.code,
                &r.description,
                &r.password_file,
            ])
            .and_then(|()| self.w.flush().map_err(csv::Error::from))
            .map_err(|e| Self::fail(&self.path, &e))
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.w
            .flush()
            .and_then(|()| self.w.get_ref().sync_all())
            .map_err(|e| Self::fail(&self.path, &e))
    }
}

/// An existing `--password-dir` must be its owner's only: password files in a
/// directory others can list or write into could be read by name, or planted
/// (a planted file's password would be reused to create the address). Refused,
/// not tightened: the directory is the user's, and may be meant for more.
fn check_password_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() && mode & 0o077 != 0 {
                return Err(input(format!(
                    "--password-dir {}: other users can open it (mode {mode:04o}); make it yours only (chmod 700 {}) or choose another directory",
                    dir.display(),
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// A header cell: a word or words, no `@` and no `.` (which every address has).
fn is_column_name(cell: &str) -> bool {
    !cell.is_empty()
        && cell
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_says_where_the_password_comes_from() {
        for (action, status, description) in [
            (
                Action::Create(PasswordFrom::Csv),
                "would be created",
                "password from the CSV",
            ),
            (
                Action::Create(PasswordFrom::Generate),
                "would be created",
                "password to be generated",
            ),
            (
                Action::Existed(PasswordFrom::Saved),
                "exists",
                "password from an earlier run's file",
            ),
            (
                Action::Existed(PasswordFrom::Unknown),
                "exists",
                UNKNOWN_PASSWORD,
            ),
        ] {
            assert_eq!(dry_run_words(action), (status, description), "{action:?}");
        }
    }

    #[test]
    fn batch_cell_of_each_password_source() {
        let file = PathBuf::from("/csv/pw.txt");
        let cell_file = Cell::File(file.clone());
        for (from, csv, want) in [
            (PasswordFrom::Csv, Some(&Cell::Env), OutCell::Own),
            (PasswordFrom::Csv, Some(&cell_file), OutCell::File(&file)),
            (
                PasswordFrom::Csv,
                Some(&Cell::Literal),
                OutCell::PasswordFile { save: true },
            ),
            (PasswordFrom::Unknown, None, OutCell::Empty),
            (
                PasswordFrom::Saved,
                None,
                OutCell::PasswordFile { save: false },
            ),
            (
                PasswordFrom::Generate,
                None,
                OutCell::PasswordFile { save: true },
            ),
        ] {
            assert_eq!(out_cell(from, csv), want, "{from:?} {csv:?}");
        }
    }

    #[test]
    fn rows_checked_one_after_another() {
        let mut checker = RowChecker {
            columns: 2,
            column: 0,
            password_column: None,
            base: Path::new("."),
            seen: HashMap::new(),
            domain: None,
        };
        let rows: [(&[&str], Result<(), &str>); 5] = [
            (&["anna@example.ch", ""], Ok(())),
            (
                &["bob@example.ch"],
                Err("1 cells but the header has 2 columns; every row needs one cell per column (empty cells too)"),
            ),
            (
                &["ANNA@example.ch", ""],
                Err("\"ANNA@example.ch\" is already in row 1; each address may appear once"),
            ),
            (
                &["carl@example.org", ""],
                Err("\"carl@example.org\" is not in the domain example.ch of row 1; a mail hosting holds one domain's addresses: give each domain its own file and --mail-hosting"),
            ),
            (&["dora@Example.CH", ""], Ok(())),
        ];
        for (i, (cells, want)) in rows.into_iter().enumerate() {
            let rec = csv::StringRecord::from(cells.to_vec());
            let got = checker.check(i + 1, &rec);
            match (got, want) {
                (Ok(e), Ok(())) => assert_eq!(e.address, cells[0]),
                (Err(why), Err(w)) => assert_eq!(why, w),
                (Ok(_), Err(w)) => panic!("row {}: passed, wanted {w}", i + 1),
                (Err(why), Ok(())) => panic!("row {}: {why}", i + 1),
            }
        }
    }

    #[test]
    fn header_or_address() {
        for (cell, header) in [
            ("address", true),
            ("e-mail", true),
            ("target_user", true),
            ("adresse e-mail", true),
            ("anna@example.ch", false),
            ("anna..x.example.ch", false),
            ("anna", true),
            ("", false),
        ] {
            assert_eq!(is_column_name(cell), header, "{cell:?}");
        }
    }
}
