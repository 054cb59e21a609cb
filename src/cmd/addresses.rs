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
    let base = a
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let names = table.names();
    let password_column = names.iter().position(|c| c == "target_password");
    let mut problems: Vec<String> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut domain: Option<(String, usize)> = None;
    for (row, rec) in &table.rows {
        let row = *row;
        let mut bad = |why: String| problems.push(format!("row {row}: {why}"));
        if table.header.is_some() && names.len() > 1 && rec.len() != names.len() {
            bad(format!(
                "{} cells but the header has {} columns; every row needs one cell per column (empty cells too)",
                rec.len(),
                names.len()
            ));
            continue;
        }
        let addr = rec.get(table.column).unwrap_or("");
        if let Some(why) = address_problem(addr) {
            bad(why);
            continue;
        }
        let (local, dom) = addr.rsplit_once('@').unwrap_or((addr, ""));
        let key = addr.to_ascii_lowercase();
        if let Some(first) = seen.get(&key) {
            bad(format!(
                "{addr:?} is already in row {first}; each address may appear once"
            ));
            continue;
        }
        seen.insert(key, row);
        match &domain {
            Some((d, first)) if !d.eq_ignore_ascii_case(dom) => {
                bad(format!(
                    "{addr:?} is not in the domain {d} of row {first}; a mail hosting holds one domain's addresses: give each domain its own file and --mail-hosting"
                ));
                continue;
            }
            Some(_) => {}
            None => domain = Some((dom.to_ascii_lowercase(), row)),
        }
        let csv_password = match password_column
            .and_then(|i| rec.get(i))
            .filter(|c| !c.is_empty())
        {
            None => None,
            Some(cell) => match password_cell(cell, &base) {
                Ok(p) => Some(p),
                Err(why) => {
                    bad(format!("column target_password: {why}"));
                    continue;
                }
            },
        };
        entries.push(Entry {
            row,
            record: rec.clone(),
            address: addr.to_string(),
            local: local.to_string(),
            csv_password,
        });
    }
    if !problems.is_empty() {
        for p in &problems {
            crate::progress::out(p);
        }
        crate::progress::out(&format!(
            "{} of {} rows are bad; nothing was created",
            problems.len(),
            table.rows.len()
        ));
        return Ok(EXIT_INPUT);
    }
    if entries.is_empty() {
        return Err(input(format!("{} has no addresses", a.file.display())));
    }
    let token = api_token(a)?;
    let net = crate::plan::net(&a.net);
    let mut api = provision::Api::new(&a.api_url, &token, a.mail_hosting, &net)?;
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
    let report = match (&a.report, a.dry_run) {
        (Some(p), false) => Some(p.clone()),
        _ => None,
    };

    // Phase 2: what exists, and in which domain: a wrong --mail-hosting would
    // create real mailboxes in another domain (only `mailbox_name` is sent).
    let listing = api.list()?;
    let csv_domain = domain.map(|(d, _)| d).unwrap_or_default();
    if let Some(why) = provision::domain_problem(&csv_domain, a.mail_hosting, &listing.domains) {
        return Err(input(why));
    }
    let existing: HashSet<String> = listing.names.into_iter().collect();
    crate::log::info(format!(
        "mail hosting {} ({csv_domain}): {} mailboxes exist",
        a.mail_hosting,
        existing.len()
    ));
    // The CSV's passwords of the addresses to create, against the rules generated
    // ones meet: every bad row at once, before anything is created (an address that
    // exists keeps the password it has, so its cell is not judged).
    let weak: Vec<String> = entries
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
        .collect();
    if !weak.is_empty() {
        for p in &weak {
            crate::progress::out(p);
        }
        crate::progress::out(&format!(
            "{} of {} rows are bad; nothing was created",
            weak.len(),
            table.rows.len()
        ));
        return Ok(EXIT_INPUT);
    }
    let mut results: Vec<RowResult> = Vec::new();
    let mut cells: Vec<String> = Vec::new();
    // Each row goes into the report as soon as it is done, so a run that stops
    // (a revoked token, a full disk, Ctrl-C) leaves the record of what it did.
    let mut report_rows = match &report {
        Some(path) => Some(ReportWriter::create(path)?),
        None => None,
    };
    let mut stopped: Option<anyhow::Error> = None;
    // What stops the run (every other row would fail the same way) ends the loop.
    macro_rules! or_stop {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(err) => {
                    stopped = Some(err);
                    break;
                }
            }
        };
    }
    for e in &entries {
        let pw_path = dir.join(format!("{}.pw", e.address.to_ascii_lowercase()));
        let saved = pw_path.is_file();
        let action = provision::decide(
            existing.contains(&e.local.to_ascii_lowercase()),
            e.csv_password.is_some(),
            saved,
        );
        let mut r = RowResult {
            row: e.row,
            address: e.address.clone(),
            status: String::new(),
            code: String::new(),
            description: String::new(),
            password_file: String::new(),
        };
        if a.dry_run {
            let (status, from) = match action {
                Action::Create(from) => ("would be created", from),
                Action::Existed(from) => ("exists", from),
            };
            r.status = status.into();
            r.description = match from {
                PasswordFrom::Csv => "password from the CSV",
                PasswordFrom::Saved => "password from an earlier run's file",
                PasswordFrom::Generate => "password to be generated",
                PasswordFrom::Unknown => UNKNOWN_PASSWORD,
            }
            .into();
            crate::progress::out(&r.line());
            results.push(r);
            continue;
        }
        // The password, on disk before the address exists: a run stopped between
        // the two creates the address with the same password next time.
        let from = match action {
            Action::Create(f) | Action::Existed(f) => f,
        };
        let password = match from {
            PasswordFrom::Csv => e.csv_password.as_ref().map(|(_, p)| p.clone()),
            PasswordFrom::Saved => Some(or_stop!(secret::from_file(&pw_path))),
            PasswordFrom::Generate => Some(or_stop!(provision::generate())),
            PasswordFrom::Unknown => None,
        };
        let cell = match (&from, &e.csv_password) {
            (PasswordFrom::Csv, Some((Cell::Env, _))) => csv_cell(e, password_column),
            (PasswordFrom::Csv, Some((Cell::File(p), _))) => format!("file:{}", p.display()),
            (PasswordFrom::Unknown, _) => String::new(),
            _ => {
                let pw = password.as_ref().expect("a password");
                let fresh = from != PasswordFrom::Saved;
                if fresh {
                    or_stop!(save_password(&dir, &pw_path, pw));
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
                    Err(err) if retry_class(&err) == Retry::Final => {
                        stopped = Some(err);
                        break;
                    }
                    Err(err) => {
                        r.status = "failed".into();
                        r.code = "-".into();
                        r.description = format!("{err:#}");
                    }
                }
            }
        }
        r.description = r.description.replace(['\r', '\n'], " ");
        crate::progress::out(&r.line());
        results.push(r);
        cells.push(cell);
        if let (Some(w), Some(r)) = (report_rows.as_mut(), results.last()) {
            or_stop!(w.row(r));
        }
    }

    let count = |s: &str| results.iter().filter(|r| r.status == s).count();
    if let Some(err) = stopped {
        // The rows finished are in the report already; the batch CSV gets them too.
        let kept = match &a.out {
            Some(out) if !a.dry_run && !cells.is_empty() => {
                write_batch_csv(out, &table, &names, &entries, &cells, &base)
                    .map(|()| format!("; batch CSV of those rows: {}", out.display()))
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        crate::progress::out(&format!(
            "addresses: stopped after {} of {} rows: {} created, {} existed, {} failed{}{kept}",
            results.len(),
            entries.len(),
            count("created"),
            count("existed"),
            count("failed"),
            report
                .as_ref()
                .map(|p| format!("; report: {}", p.display()))
                .unwrap_or_default(),
        ));
        return Err(err);
    }
    if a.dry_run {
        crate::progress::out(&format!(
            "addresses: dry run: {} would be created, {} exist, of {}; nothing was changed",
            count("would be created"),
            count("exists"),
            results.len()
        ));
        return Ok(EXIT_OK);
    }
    if let Some(out) = &a.out {
        write_batch_csv(out, &table, &names, &entries, &cells, &base)?;
    }
    if let Some(w) = report_rows.take() {
        w.finish()?;
    }
    let unknown = results
        .iter()
        .filter(|r| r.description == UNKNOWN_PASSWORD)
        .count();
    let failed = count("failed");
    crate::progress::out(&format!(
        "addresses: {} created, {} existed, {failed} failed, of {}; password files in {}{}{}",
        count("created"),
        count("existed"),
        results.len(),
        dir.display(),
        a.out
            .as_ref()
            .map(|o| format!("; batch CSV: {}", o.display()))
            .unwrap_or_default(),
        if unknown > 0 {
            format!("; {unknown} existing addresses have no known password (their target_password cells are empty)")
        } else {
            String::new()
        }
    ));
    Ok(if failed == 0 { EXIT_OK } else { EXIT_PARTIAL })
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
            assert_eq!(super::is_column_name(cell), header, "{cell:?}");
        }
    }
}
