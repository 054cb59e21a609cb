//! `mailferry batch ACCOUNTS.csv`: every row checked first, then the accounts run on
//! a pool of `--jobs` workers with at most `--max-per-host` connections to any one
//! server; a failing account is reported and never stops the others. With
//! `--dry-run`, a pre-flight first logs in to every target account and says how
//! each login went.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use crate::batch::{self, Account};
use crate::cli::BatchArgs;
use crate::endpoint::Endpoint;
use crate::error::{input, EXIT_INPUT, EXIT_OK, EXIT_PARTIAL};
use crate::index::{self, Index};
use crate::net::NetOptions;
use crate::plan::{BatchPlan, Plan};
use crate::progress;

/// Connections per server: an account waits until every server it needs has room.
pub struct HostLimiter {
    max: usize,
    used: Mutex<HashMap<String, usize>>,
    freed: Condvar,
}

pub struct HostGuard<'a> {
    limiter: &'a HostLimiter,
    hosts: Vec<String>,
}

impl HostLimiter {
    pub fn new(max: usize) -> Self {
        HostLimiter {
            max,
            used: Mutex::new(HashMap::new()),
            freed: Condvar::new(),
        }
    }

    /// Take one slot per entry of `hosts` (a host listed twice takes two).
    pub fn acquire(&self, hosts: Vec<String>) -> HostGuard<'_> {
        let mut need: HashMap<&str, usize> = HashMap::new();
        for h in &hosts {
            *need.entry(h).or_default() += 1;
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while need
            .iter()
            .any(|(h, n)| used.get(*h).copied().unwrap_or(0) + n > self.max)
        {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        for (h, n) in &need {
            *used.entry(h.to_string()).or_default() += n;
        }
        drop(used);
        HostGuard {
            limiter: self,
            hosts,
        }
    }
}

impl Drop for HostGuard<'_> {
    fn drop(&mut self) {
        let mut used = self.limiter.used.lock().unwrap_or_else(|e| e.into_inner());
        for h in &self.hosts {
            if let Some(n) = used.get_mut(h) {
                *n -= 1;
            }
        }
        self.limiter.freed.notify_all();
    }
}

/// The servers an account connects to, as [`HostLimiter`] keys: target first,
/// each `pairs` times (one per connection pair).
fn hosts_of(a: &Account, servers: &Servers, pairs: usize) -> Vec<String> {
    let mut v = vec![servers.key(&a.target.host)];
    if let Endpoint::Server(s) = &a.source {
        v.push(servers.key(&s.host));
    }
    v.iter().cycle().take(v.len() * pairs).cloned().collect()
}

/// One key per server, however its name is written: each host name is resolved
/// once, before the run, and known by its lowest address, so `localhost` and
/// `127.0.0.1` are one server (and so is a name written in two cases). The names
/// are looked up side by side, for at most `wait`; a name that does not resolve in
/// time keeps its own key (connecting will say what is wrong). The lookup only
/// makes keys: connections still go to the names as written.
struct Servers(HashMap<String, String>);

impl Servers {
    fn resolve<'a>(hosts: impl Iterator<Item = &'a str>, wait: Duration) -> Servers {
        use std::net::ToSocketAddrs;
        let mut names: Vec<String> = hosts.map(str::to_ascii_lowercase).collect();
        names.sort();
        names.dedup();
        let (tx, rx) = std::sync::mpsc::channel();
        for name in &names {
            let (tx, name) = (tx.clone(), name.clone());
            // Detached: a lookup that hangs past `wait` is left behind, not waited for.
            std::thread::spawn(move || {
                let ip = (name.as_str(), 0u16)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|addrs| addrs.map(|a| a.ip()).min());
                let _ = tx.send((name, ip));
            });
        }
        drop(tx);
        let deadline = Instant::now() + wait;
        let mut map: HashMap<String, String> =
            names.iter().map(|n| (n.clone(), n.clone())).collect();
        for _ in 0..names.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((name, Some(ip))) => {
                    map.insert(name, ip.to_string());
                }
                Ok((_, None)) => {}
                Err(_) => break,
            }
        }
        Servers(map)
    }

    fn key(&self, host: &str) -> String {
        let name = host.to_ascii_lowercase();
        self.0.get(&name).cloned().unwrap_or(name)
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct AccountResult {
    pub row: usize,
    pub source: String,
    pub target: String,
    /// ok, partial (some messages failed), failed, invalid
    pub status: String,
    pub copied: u64,
    pub duplicates: u64,
    pub failed: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// The reason, in the server's words where there are any; never a password.
    pub error: String,
    /// `--dry-run`: what a real run would copy (messages, bytes); 0 otherwise.
    pub would_copy: u64,
    pub would_copy_bytes: u64,
    /// Folders that failed as a whole (names, `; `-separated).
    pub failed_folders: String,
    /// Folders put under another name, and messages the target stored changed.
    pub renamed: u64,
    pub changed: u64,
    #[serde(skip)]
    dry_run: bool,
}

impl AccountResult {
    fn new(row: usize, source: String, target: String) -> Self {
        AccountResult {
            row,
            source,
            target,
            status: String::new(),
            copied: 0,
            duplicates: 0,
            failed: 0,
            bytes: 0,
            seconds: 0.0,
            error: String::new(),
            would_copy: 0,
            would_copy_bytes: 0,
            failed_folders: String::new(),
            renamed: 0,
            changed: 0,
            dry_run: false,
        }
    }

    /// The one line printed for an account when it ends, and in the final summary.
    fn line(&self) -> String {
        match self.status.as_str() {
            "ok" if self.dry_run => format!(
                "row {}: {} dry run: would copy {} messages ({} bytes)",
                self.row, self.target, self.would_copy, self.would_copy_bytes
            ),
            "ok" => format!(
                "row {}: {} ok: {} copied, {} duplicates, {} bytes in {:.1}s",
                self.row, self.target, self.copied, self.duplicates, self.bytes, self.seconds
            ),
            "invalid" => format!("row {}: invalid: {}", self.row, self.error),
            s => format!(
                "row {}: {} {s}: {} copied, {} failed: {}",
                self.row, self.target, self.copied, self.failed, self.error
            ),
        }
    }
}

fn run_account(acc: &Account, plan: &Plan) -> (crate::summary::Summary, anyhow::Result<()>) {
    let mut summary = crate::summary::Summary::default();
    let state = plan
        .state
        .as_deref()
        .expect("a batch row's plan names the index");
    let mut index = match Index::open(state) {
        Ok(i) => i,
        Err(e) => return (summary, Err(e)),
    };
    // --connections pairs per account (1 by default: the batch runs accounts side
    // by side); the host limiter took that many slots on each server.
    let started = std::time::Instant::now();
    let what = format!("row {}", acc.row);
    let result = super::migrate::copy(plan, &what, &mut index, &mut summary);
    summary.finish(started);
    // What the account did is kept whatever ended it.
    (summary, result)
}

/// Run one account and turn whatever happened (a panic included: it is a bug, but
/// it must not take the other accounts down) into its report row.
fn account_result(acc: &Account, plan: &Plan) -> AccountResult {
    let t = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_account(acc, plan)));
    let mut r = AccountResult::new(acc.row, acc.source.to_string(), acc.target.to_string());
    r.seconds = t.elapsed().as_secs_f64();
    match outcome {
        Ok((s, result)) => {
            r.copied = s.copied;
            r.duplicates = s.duplicates;
            r.failed = s.failed.len() as u64;
            r.bytes = s.bytes;
            r.would_copy = s.planned.iter().map(|p| p.messages).sum();
            r.would_copy_bytes = s.planned.iter().map(|p| p.bytes).sum();
            r.status = if s.ok() { "ok" } else { "partial" }.into();
            r.error = s
                .stopped
                .clone()
                .or_else(|| {
                    s.failed
                        .first()
                        .map(|f| format!("{} message {}: {}", f.folder, f.id, f.reason))
                })
                .or_else(|| {
                    s.failed_folders
                        .first()
                        .map(|f| format!("folder {}: {}", f.folder, f.reason))
                })
                .or_else(|| {
                    s.anomalies.first().map(|a| {
                        format!("{}: the server disagreed with itself: {}", a.folder, a.what)
                    })
                })
                .unwrap_or_default();
            r.dry_run = s.dry_run;
            r.failed_folders = s
                .failed_folders
                .iter()
                .map(|f| f.folder.clone())
                .collect::<Vec<_>>()
                .join("; ");
            r.renamed = s.renamed.len() as u64;
            r.changed = s.changed.len() as u64;
            if let Err(e) = result {
                r.status = "failed".into();
                r.error = format!("{e:#}");
            }
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            r.status = "failed".into();
            r.error = format!("internal error (a mailferry bug, please report it): {what}");
        }
    }
    // One line per cell, so report files merge with line tools.
    r.error = r.error.replace(['\r', '\n'], " ");
    r
}

/// `batch --dry-run`'s pre-flight: log in to every target account (and out), at
/// most `--max-per-host` connections per server at a time, and say on stderr how
/// each went, in row order. Returns the rows whose login failed, with the reason.
fn preflight(
    accounts: &[Account],
    net: &NetOptions,
    pool: &rayon::ThreadPool,
    limiter: &HostLimiter,
    servers: &Servers,
) -> HashMap<usize, String> {
    let mut results: Vec<(usize, String, Option<String>)> = pool.install(|| {
        accounts
            .par_iter()
            .map(|acc| {
                let _slot = limiter.acquire(vec![servers.key(&acc.target.host)]);
                let login = crate::retry::run(net, &format!("row {} pre-flight", acc.row), || {
                    let mut s = crate::imap::session::open_with(
                        &acc.target,
                        &acc.target_credentials,
                        net,
                        "target",
                    )?;
                    s.logout();
                    Ok(())
                });
                let why = login
                    .err()
                    .map(|e| format!("{e:#}").replace(['\r', '\n'], " "));
                (acc.row, acc.target.to_string(), why)
            })
            .collect()
    });
    results.sort_by_key(|r| r.0);
    for (row, target, why) in &results {
        progress::eprintln(&match why {
            None => format!("pre-flight: row {row}: {target}: login ok"),
            Some(why) => format!("pre-flight: row {row}: {target}: login failed: {why}"),
        });
    }
    let ok = results.iter().filter(|r| r.2.is_none()).count();
    progress::eprintln(&format!(
        "pre-flight: {ok} of {} target logins ok",
        results.len()
    ));
    results
        .into_iter()
        .filter_map(|(row, _, why)| why.map(|w| (row, w)))
        .collect()
}

impl AccountResult {
    /// An account the pre-flight could not log in to: not looked at further.
    fn login_refused(acc: &Account, why: &str) -> AccountResult {
        let mut r = AccountResult::new(acc.row, acc.source.to_string(), acc.target.to_string());
        r.status = "failed".into();
        r.error = format!("target login failed (pre-flight): {why}");
        r.dry_run = true;
        r
    }

    /// The row as the report holds it: its text cells spreadsheet-safe.
    fn for_csv(&self) -> AccountResult {
        let mut r = self.clone();
        for cell in [
            &mut r.source,
            &mut r.target,
            &mut r.status,
            &mut r.error,
            &mut r.failed_folders,
        ] {
            *cell = spreadsheet_safe(cell);
        }
        r
    }
}

/// A report cell as text a spreadsheet program will not run: a cell that starts
/// with `=`, `+`, `-`, `@`, tab or CR (a formula, for Excel, LibreOffice and Google
/// Sheets) gets a leading `'`, the usual neutraliser (OWASP "CSV injection"). Folder
/// names and server words reach the report, and a server chooses those.
pub fn spreadsheet_safe(cell: &str) -> String {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

pub fn run(a: &BatchArgs) -> anyhow::Result<i32> {
    // Phase 1: the flags, then the whole file, checked before any connection is
    // opened; each row's plan is the batch's with the row's cells.
    let plan = BatchPlan::new(a)?;
    let shard = plan.shard;
    let (accounts, errors) = load_rows(&plan)?;
    let invalid = invalid_results(&errors, shard);
    let accounts: Vec<Account> = accounts
        .into_iter()
        .filter(|acc| shard.is_none_or(|s| batch::in_shard(acc.position, s)))
        .collect();
    let net = &plan.net;
    let servers = resolve_servers(&accounts, net);
    let host_caps = host_caps(&plan, &accounts, &servers);
    check_connections(
        &accounts,
        &servers,
        plan.connections.unwrap_or(1),
        plan.max_per_host,
    )?;
    let state = &plan.state;
    // Create and migrate the index once, before the workers open it.
    let _lock = index::lock(state)?;
    Index::open(state)?;
    let report = open_report(plan.report.as_deref(), &invalid)?;
    // On stderr even with --json (stdout holds the JSON).
    progress::eprintln(&format!(
        "index: {}\n{} accounts, {} at a time, at most {} connections per server",
        state.display(),
        accounts.len(),
        plan.jobs,
        plan.max_per_host
    ));

    let limiter = HostLimiter::new(plan.max_per_host);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.jobs)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the workers: {e}"))?;
    // Pre-flight (`--dry-run`): every target login is tried and reported before
    // any account is looked at; an account whose target refuses fails with that.
    let refused: HashMap<usize, String> = if plan.dry_run {
        preflight(&accounts, net, &pool, &limiter, &servers)
    } else {
        HashMap::new()
    };

    // Phase 2: the accounts, in parallel.
    let started = Instant::now();
    let workers = Workers {
        pool: &pool,
        limiter: &limiter,
        servers: &servers,
        refused: &refused,
        plan: &plan,
        host_caps: &host_caps,
        report: report.as_ref(),
    };
    let mut all = workers.run(&accounts, started);
    all.extend(invalid);
    all.sort_by_key(|r| r.row);
    if let Some(rep) = report {
        // The rows are all in the file already; only their order is at stake.
        if let Err(e) = rep.finish(&all) {
            progress::eprintln(&format!(
                "mailferry: warning: {e:#}; the report keeps its rows in the order the accounts ended"
            ));
        }
    }
    if plan.json {
        progress::out(&serde_json::to_string_pretty(&all)?);
    } else {
        // The report's rows, then the totals.
        for r in &all {
            progress::out(&r.line());
        }
        progress::out(&totals_line(&all, started.elapsed(), plan.dry_run));
    }
    Ok(exit_code(&all))
}

/// The CSV's good rows and its problems, every problem printed on stderr; bad rows
/// stop the batch unless `--skip-invalid`.
fn load_rows(a: &BatchPlan) -> anyhow::Result<(Vec<Account>, Vec<batch::RowError>)> {
    let (accounts, errors) = batch::load(&a.csv)?;
    for e in &errors {
        progress::eprintln(&format!("mailferry: {}: {e}", a.csv.display()));
    }
    if !errors.is_empty() && !a.skip_invalid {
        let bad_rows = errors
            .iter()
            .map(|e| e.row)
            .collect::<std::collections::HashSet<_>>()
            .len();
        return Err(input(format!(
            "{}: {bad_rows} bad rows (listed above); nothing was started. Fix them, or pass --skip-invalid to run the {} good rows",
            a.csv.display(),
            accounts.len()
        )));
    }
    Ok((accounts, errors))
}

/// One report row per bad row of this shard (all shards list every problem on
/// stderr, since every machine checks the whole file), its problems joined: a
/// row's problems come one after another.
fn invalid_results(
    errors: &[batch::RowError],
    shard: Option<(usize, usize)>,
) -> Vec<AccountResult> {
    let mut invalid: Vec<AccountResult> = Vec::new();
    for e in errors.iter().filter(|e| {
        e.position
            .is_none_or(|p| shard.is_none_or(|s| batch::in_shard(p, s)))
    }) {
        match invalid.last_mut() {
            Some(r) if r.row == e.row => r
                .error
                .push_str(&format!("; column {}: {}", e.column, e.message)),
            _ => {
                let mut r = AccountResult::new(e.row, String::new(), String::new());
                r.status = "invalid".into();
                r.error = format!("column {}: {}", e.column, e.message);
                invalid.push(r);
            }
        }
    }
    invalid
}

/// The servers of every account (targets and server sources), each known by one key.
fn resolve_servers(accounts: &[Account], net: &NetOptions) -> Servers {
    Servers::resolve(
        accounts.iter().flat_map(|a| {
            let source = match &a.source {
                Endpoint::Server(s) => Some(s.host.as_str()),
                _ => None,
            };
            std::iter::once(a.target.host.as_str()).chain(source)
        }),
        net.timeout.min(Duration::from_secs(10)),
    )
}

/// `--host-max-bytes-per-sec`: a cap for each source server of the batch.
fn host_caps(
    plan: &BatchPlan,
    accounts: &[Account],
    servers: &Servers,
) -> HashMap<String, Arc<crate::rate::Cap>> {
    let Some(rate) = plan.host_max_bytes_per_sec else {
        return HashMap::new();
    };
    accounts
        .iter()
        .filter_map(|acc| match &acc.source {
            Endpoint::Server(s) => Some(servers.key(&s.host)),
            Endpoint::Mbox(_) => None,
        })
        .map(|key| (key, Arc::new(crate::rate::Cap::new(Some(rate), None))))
        .collect()
}

/// How many connections one pair of an account puts on its busiest server (2 when
/// source and target are one server), from its hosts for one pair.
fn most_on_one_host(hosts: &[String]) -> usize {
    hosts
        .iter()
        .map(|h| hosts.iter().filter(|g| *g == h).count())
        .max()
        .unwrap_or(1)
}

/// Connection pairs for an account starting now when `--connections` is not given:
/// the `max_per_host` connections of a server shared by the accounts that can run
/// side by side (`jobs`, or fewer when fewer are left, this one included), each pair
/// putting `per_pair` connections there; at least 1, at most the engine's most.
fn spread(max_per_host: usize, per_pair: usize, jobs: usize, not_started: usize) -> usize {
    let side_by_side = jobs.min(not_started).max(1);
    (max_per_host / per_pair.max(1) / side_by_side).clamp(1, crate::engine::AUTO_PAIRS)
}

/// When an account's connections (`hosts`, one entry per connection) put more than
/// `max` on one server: how many they put there, and whether source and target are
/// the same server.
fn too_many_connections(hosts: &[String], pairs: usize, max: usize) -> Option<(usize, bool)> {
    let most = hosts
        .iter()
        .map(|x| hosts.iter().filter(|y| *y == x).count())
        .max()
        .unwrap_or(0);
    (most > max).then(|| (most, hosts.len() > pairs && hosts[0] == hosts[1]))
}

/// An account needs all its connections at once on each of its servers: the first
/// that cannot fit under `--max-per-host` is refused up front.
fn check_connections(
    accounts: &[Account],
    servers: &Servers,
    pairs: usize,
    max: usize,
) -> anyhow::Result<()> {
    for acc in accounts {
        let h = hosts_of(acc, servers, pairs);
        if let Some((most, same)) = too_many_connections(&h, pairs, max) {
            return Err(input(format!(
                "row {}: the account needs {most} connections to {} at once ({}{} pair{}); --max-per-host must be at least {most}",
                acc.row,
                acc.target.host,
                if same { "source and target are on the same server, " } else { "" },
                pairs,
                if pairs == 1 { "" } else { "s" }
            )));
        }
    }
    Ok(())
}

/// `--report`, created with the bad rows of this shard in it.
fn open_report(path: Option<&Path>, invalid: &[AccountResult]) -> anyhow::Result<Option<Report>> {
    let report = match path {
        Some(p) => Some(Report::create(p)?),
        None => None,
    };
    if let Some(rep) = &report {
        for r in invalid {
            rep.add(r)?;
        }
    }
    Ok(report)
}

/// What the workers of phase 2 share.
struct Workers<'a> {
    pool: &'a rayon::ThreadPool,
    limiter: &'a HostLimiter,
    servers: &'a Servers,
    /// The rows whose target refused the pre-flight login, with the reason.
    refused: &'a HashMap<usize, String>,
    /// The batch's plan, from which each row's is made.
    plan: &'a BatchPlan,
    /// `--host-max-bytes-per-sec`: one cap per source server, shared by its accounts.
    host_caps: &'a HashMap<String, Arc<crate::rate::Cap>>,
    report: Option<&'a Report>,
}

/// Accounts ended and running, out of `total`, for the progress line.
struct Counters {
    done: AtomicUsize,
    running: AtomicUsize,
    total: usize,
}

/// Stops the ticker however the scope is left (a panic included), so the scope
/// never waits for it forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Workers<'_> {
    /// Every account on the pool, a progress ticker beside them; the results in
    /// the order the accounts ended.
    fn run(&self, accounts: &[Account], started: Instant) -> Vec<AccountResult> {
        let display = progress::start_batch(accounts.len() as u64);
        let counters = Counters {
            done: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            total: accounts.len(),
        };
        let stop_ticker = AtomicBool::new(false);
        let results: Vec<AccountResult> = std::thread::scope(|scope| {
            let _stop = StopOnDrop(&stop_ticker);
            scope.spawn(|| ticker(&stop_ticker, &counters, started, &display));
            self.pool.install(|| {
                accounts
                    .par_iter()
                    .map(|acc| self.account(acc, &counters, &display))
                    .collect::<Vec<_>>()
            })
        });
        drop(display);
        results
    }

    /// One account, once its servers have room: copied (or failed with its
    /// pre-flight refusal), added to the report and printed.
    fn account(
        &self,
        acc: &Account,
        counters: &Counters,
        display: &progress::Batch,
    ) -> AccountResult {
        let pairs = self.plan.connections.unwrap_or_else(|| {
            let started =
                counters.done.load(Ordering::Relaxed) + counters.running.load(Ordering::Relaxed);
            let per_pair = most_on_one_host(&hosts_of(acc, self.servers, 1));
            spread(
                self.plan.max_per_host,
                per_pair,
                self.plan.jobs,
                counters.total - started,
            )
        });
        let _slots = self.limiter.acquire(hosts_of(acc, self.servers, pairs));
        counters.running.fetch_add(1, Ordering::Relaxed);
        let r = match self.refused.get(&acc.row) {
            Some(why) => AccountResult::login_refused(acc, why),
            None => {
                let mut plan = self.plan.row(acc);
                // Without --connections the engine takes what the round trip can
                // use, within the account's share of the host.
                plan.opts.max_pairs = pairs;
                if let Endpoint::Server(s) = &acc.source {
                    plan.opts.shared_cap = self.host_caps.get(&self.servers.key(&s.host)).cloned();
                }
                account_result(acc, &plan)
            }
        };
        counters.running.fetch_sub(1, Ordering::Relaxed);
        let n = counters.done.fetch_add(1, Ordering::Relaxed) + 1;
        display.account_done();
        if let Some(rep) = self.report {
            // The report grows as accounts end, so a batch stopped
            // overnight still says what it did.
            if let Err(e) = rep.add(&r) {
                progress::eprintln(&format!("mailferry: {e:#}"));
            }
        }
        progress::eprintln(&format!("[{n}/{}] {}", counters.total, r.line()));
        r
    }
}

/// Progress between account ends, until `stop`: the bar's line on a terminal, a
/// plain log line every `progress_every` elsewhere.
fn ticker(stop: &AtomicBool, counters: &Counters, started: Instant, display: &progress::Batch) {
    let every = crate::faults::progress_every(Duration::from_secs(30));
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100).min(every));
        let line = progress::batch_line(
            counters.done.load(Ordering::Relaxed),
            counters.total,
            counters.running.load(Ordering::Relaxed),
            started.elapsed(),
        );
        if progress::visible() {
            display.overall.set_message(line);
        } else if last.elapsed() >= every {
            last = Instant::now();
            progress::eprintln(&format!("batch: {line}"));
        }
    }
}

/// The batch's last line: accounts ok and the sums of every row.
fn totals_line(all: &[AccountResult], elapsed: Duration, dry_run: bool) -> String {
    let ok = all.iter().filter(|r| r.status == "ok").count();
    format!(
        "batch: {ok} of {} accounts ok in {:.1}s; {} copied, {} duplicates, {} failed messages, {} bytes{}",
        all.len(),
        elapsed.as_secs_f64(),
        all.iter().map(|r| r.copied).sum::<u64>(),
        all.iter().map(|r| r.duplicates).sum::<u64>(),
        all.iter().map(|r| r.failed).sum::<u64>(),
        all.iter().map(|r| r.bytes).sum::<u64>(),
        if dry_run {
            format!(
                "; dry run: would copy {} messages ({} bytes)",
                all.iter().map(|r| r.would_copy).sum::<u64>(),
                all.iter().map(|r| r.would_copy_bytes).sum::<u64>()
            )
        } else {
            String::new()
        }
    )
}

/// The batch's exit code: every row ok, every row invalid (bad input), or partial.
fn exit_code(all: &[AccountResult]) -> i32 {
    let ok = all.iter().filter(|r| r.status == "ok").count();
    if ok == all.len() {
        EXIT_OK
    } else if all.iter().all(|r| r.status == "invalid") && !all.is_empty() {
        EXIT_INPUT
    } else {
        EXIT_PARTIAL
    }
}

/// `--report FILE.csv`: rows are appended as accounts end (in the order they end);
/// at the end the file is rewritten in row order. Owner-only, like the index.
struct Report {
    path: std::path::PathBuf,
    out: Mutex<csv::Writer<std::fs::File>>,
}

fn private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    crate::backup::create_private(path)
        .map_err(|e| input(format!("cannot write the report {}: {e}", path.display())))
}

impl Report {
    fn create(path: &Path) -> anyhow::Result<Report> {
        let mut w = csv::Writer::from_writer(private_file(path)?);
        // The header alone, so an empty report still names its columns.
        w.write_record(REPORT_COLUMNS)?;
        w.flush()?;
        let w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?);
        Ok(Report {
            path: path.to_path_buf(),
            out: Mutex::new(w),
        })
    }

    fn add(&self, r: &AccountResult) -> anyhow::Result<()> {
        let mut w = self.out.lock().unwrap_or_else(|e| e.into_inner());
        w.serialize(r.for_csv())?;
        w.flush()
            .map_err(|e| anyhow::anyhow!("cannot write the report {}: {e}", self.path.display()))
    }

    /// Rewrite the whole report in row order (beside it, then renamed over it).
    fn finish(self, all: &[AccountResult]) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("csv.partial");
        let mut w = csv::Writer::from_writer(private_file(&tmp)?);
        for r in all {
            w.serialize(r.for_csv())?;
        }
        w.flush()?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| anyhow::anyhow!("cannot write the report {}: {e}", self.path.display()))
    }
}

const REPORT_COLUMNS: [&str; 15] = [
    "row",
    "source",
    "target",
    "status",
    "copied",
    "duplicates",
    "failed",
    "bytes",
    "seconds",
    "error",
    "would_copy",
    "would_copy_bytes",
    "failed_folders",
    "renamed",
    "changed",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn formula_cells_are_neutralised() {
        for (cell, want) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("INBOX message 3: refused", "INBOX message 3: refused"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(spreadsheet_safe(cell), want, "{cell:?}");
        }
    }

    #[test]
    fn bad_rows_of_this_shard_become_one_invalid_row_each() {
        let e = |row: usize, position: Option<usize>, column: &str| batch::RowError {
            row,
            position,
            column: column.into(),
            message: "bad".into(),
        };
        let errors = [
            e(1, None, "x"),
            e(2, Some(0), "source"),
            e(2, Some(0), "target"),
            e(3, Some(1), "source"),
            e(4, Some(2), "target_user"),
        ];
        let rows = |shard| {
            invalid_results(&errors, shard)
                .into_iter()
                .map(|r| (r.row, r.status, r.error))
                .collect::<Vec<_>>()
        };
        let row = |n: usize, error: &str| (n, "invalid".to_string(), error.to_string());
        assert_eq!(
            rows(None),
            [
                row(1, "column x: bad"),
                row(2, "column source: bad; column target: bad"),
                row(3, "column source: bad"),
                row(4, "column target_user: bad"),
            ]
        );
        // The header's problems are every shard's; a data row is its shard's only.
        for k in 1..=2 {
            let mine = rows(Some((k, 2)));
            assert_eq!(mine[0], row(1, "column x: bad"));
            let others = rows(Some((3 - k, 2)));
            assert_eq!(mine.len() + others.len(), 5);
        }
    }

    #[test]
    fn an_accounts_share_grows_as_fewer_are_left() {
        // (max per host, connections a pair puts on one server, jobs, not started) → pairs
        let table = [
            (8, 1, 4, 40, 2),
            (8, 2, 4, 40, 1),
            (8, 1, 4, 2, 4),
            (8, 2, 4, 1, 4),
            (8, 2, 4, 2, 2),
            (3, 2, 4, 1, 1),
            (100, 1, 1, 1, 4),
            (1, 1, 4, 0, 1),
        ];
        for (max, per_pair, jobs, left, want) in table {
            assert_eq!(
                spread(max, per_pair, jobs, left),
                want,
                "{max} {per_pair} {jobs} {left}"
            );
        }
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(most_on_one_host(&h(&["a", "b"])), 1);
        assert_eq!(most_on_one_host(&h(&["a", "a"])), 2);
    }

    #[test]
    fn connections_that_cannot_fit_under_max_per_host() {
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (hosts, pairs, max, want) in [
            (h(&["t", "s"]), 1, 1, None),
            (h(&["t", "s", "t", "s"]), 2, 2, None),
            (h(&["t", "s", "t", "s"]), 2, 1, Some((2, false))),
            (h(&["t", "t"]), 1, 1, Some((2, true))),
            (h(&["t", "t", "t", "t"]), 2, 3, Some((4, true))),
            (h(&["t", "t", "t"]), 3, 2, Some((3, false))),
        ] {
            assert_eq!(
                too_many_connections(&hosts, pairs, max),
                want,
                "{hosts:?} {pairs} {max}"
            );
        }
    }

    #[test]
    fn exit_code_of_the_rows() {
        let r = |status: &str| {
            let mut r = AccountResult::new(2, String::new(), String::new());
            r.status = status.into();
            r
        };
        for (statuses, want) in [
            (&[][..], EXIT_OK),
            (&["ok", "ok"][..], EXIT_OK),
            (&["ok", "failed"][..], EXIT_PARTIAL),
            (&["ok", "invalid"][..], EXIT_PARTIAL),
            (&["invalid", "invalid"][..], EXIT_INPUT),
        ] {
            let all: Vec<_> = statuses.iter().map(|s| r(s)).collect();
            assert_eq!(exit_code(&all), want, "{statuses:?}");
        }
    }

    #[test]
    fn report_columns_are_the_fields_of_a_row() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(AccountResult::new(2, "s".into(), "t".into()))
            .unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next(), Some(REPORT_COLUMNS.join(",").as_str()));
    }

    #[test]
    fn one_server_one_key_however_it_is_written() {
        let s = Servers::resolve(
            [
                "localhost",
                "127.0.0.1",
                "LocalHost",
                "no-such-host.invalid",
            ]
            .into_iter(),
            Duration::from_secs(10),
        );
        assert_eq!(s.key("localhost"), "127.0.0.1");
        assert_eq!(s.key("LOCALHOST"), "127.0.0.1");
        assert_eq!(s.key("127.0.0.1"), "127.0.0.1");
        assert_eq!(s.key("no-such-host.invalid"), "no-such-host.invalid");
        // A name not seen before the run keeps its own key.
        assert_eq!(s.key("Other.Example"), "other.example");
    }

    #[test]
    fn limiter_never_exceeds_its_bound() {
        let l = Arc::new(HostLimiter::new(2));
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (l, peak, now) = (l.clone(), peak.clone(), now.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _g = l.acquire(vec!["h".into()]);
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
