//! `mailferry batch ACCOUNTS.csv`: every row checked first, then the accounts run on
//! a pool of `--jobs` workers with at most `--max-per-host` connections to any one
//! server; a failing account is reported and never stops the others.

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
use crate::engine::{self, Job, Options};
use crate::error::{input, EXIT_INPUT, EXIT_OK, EXIT_PARTIAL};
use crate::folders::Rules;
use crate::index::{self, Index};
use crate::mbox::Dialect;
use crate::net::NetOptions;
use crate::{plan, progress};

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

fn hosts_of(a: &Account) -> Vec<String> {
    let mut v = vec![a.target.host.to_ascii_lowercase()];
    if let Endpoint::Server(s) = &a.source {
        v.push(s.host.to_ascii_lowercase());
    }
    v
}

/// One row of the report.
#[derive(Debug, Serialize)]
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
}

fn run_account(
    a: &Account,
    base: &Options,
    net: &NetOptions,
    state: &Path,
) -> anyhow::Result<crate::summary::Summary> {
    let mut index = Index::open(state)?;
    let mut opts = base.clone();
    opts.rules = Rules {
        map: a.folder_map.clone(),
    };
    // One connection pair per account: the batch runs accounts side by side, and
    // --max-per-host counts one source and one target connection per account.
    let job = Job {
        target: &a.target,
        target_password: &a.target_password,
        net,
        opts: &opts,
        reopen: None,
    };
    let started = std::time::Instant::now();
    let mut summary = crate::summary::Summary::default();
    crate::retry::run(net, &format!("row {}", a.row), || {
        let mut src = plan::open_endpoint(&a.source, a.source_password.as_ref(), net, Dialect::Rd)?;
        engine::migrate_into(src.as_mut(), &job, &mut index, &mut summary)
    })?;
    summary.finish(started);
    Ok(summary)
}

pub fn run(a: &BatchArgs) -> anyhow::Result<i32> {
    // Phase 1: the whole file is checked before any connection is opened.
    let shard = a
        .shard
        .as_deref()
        .map(batch::parse_shard)
        .transpose()
        .map_err(input)?;
    if a.jobs == 0 || a.max_per_host == 0 {
        return Err(input("--jobs and --max-per-host must be at least 1"));
    }
    let (accounts, errors) = batch::load(&a.csv)?;
    for e in &errors {
        progress::eprintln(&format!("mailferry: {}: {e}", a.csv.display()));
    }
    if !errors.is_empty() && !a.skip_invalid {
        return Err(input(format!(
            "{}: {} bad rows (listed above); nothing was started. Fix them, or pass --skip-invalid to run the {} good rows",
            a.csv.display(),
            errors.len(),
            accounts.len()
        )));
    }
    let accounts: Vec<Account> = accounts
        .into_iter()
        .filter(|acc| shard.is_none_or(|s| batch::in_shard(acc.position, s)))
        .collect();
    if let Some(acc) = accounts.iter().find(|acc| {
        let h = hosts_of(acc);
        h.len() == 2 && h[0] == h[1]
    }) {
        if a.max_per_host < 2 {
            return Err(input(format!(
                "row {}: source and target are on the same server {}, so the account needs two connections there; --max-per-host must be at least 2",
                acc.row, acc.target.host
            )));
        }
    }
    let opts = Options {
        dedupe: a.dedupe,
        dry_run: a.dry_run,
        ..Options::default()
    };
    let net = plan::net(&a.net);
    let state = a.state.clone().unwrap_or_else(index::default_path);
    // Create and migrate the index once, before the workers open it.
    let _lock = index::lock(&state)?;
    Index::open(&state)?;
    let mut report = match &a.report {
        Some(p) => Some(open_report(p)?),
        None => None,
    };
    if !a.json {
        progress::eprintln(&format!(
            "index: {}\n{} accounts, {} at a time, at most {} connections per server",
            state.display(),
            accounts.len(),
            a.jobs,
            a.max_per_host
        ));
    }

    // Phase 2: the accounts, in parallel.
    let started = Instant::now();
    let limiter = HostLimiter::new(a.max_per_host);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.jobs)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the workers: {e}"))?;
    let display = progress::start_batch(accounts.len() as u64);
    let done = AtomicUsize::new(0);
    let total = accounts.len();
    let stop_ticker = Arc::new(AtomicBool::new(false));
    let ticker = (!progress::visible()).then(|| {
        let stop = stop_ticker.clone();
        std::thread::spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= Duration::from_secs(30) {
                    last = Instant::now();
                    progress::eprintln(&format!("batch: {} so far", progress::totals()));
                }
            }
        })
    });
    let results: Vec<AccountResult> = pool.install(|| {
        accounts
            .par_iter()
            .map(|acc| {
                let _slots = limiter.acquire(hosts_of(acc));
                let t = Instant::now();
                let outcome = run_account(acc, &opts, &net, &state);
                let seconds = t.elapsed().as_secs_f64();
                let mut r = AccountResult {
                    row: acc.row,
                    source: acc.source.to_string(),
                    target: acc.target.to_string(),
                    status: String::new(),
                    copied: 0,
                    duplicates: 0,
                    failed: 0,
                    bytes: 0,
                    seconds,
                    error: String::new(),
                };
                match outcome {
                    Ok(s) => {
                        r.copied = s.copied;
                        r.duplicates = s.duplicates;
                        r.failed = s.failed.len() as u64;
                        r.bytes = s.bytes;
                        r.status = if s.ok() { "ok" } else { "partial" }.into();
                        r.error = s
                            .stopped
                            .clone()
                            .or_else(|| {
                                s.failed
                                    .first()
                                    .map(|f| format!("{} message {}: {}", f.folder, f.id, f.reason))
                            })
                            .unwrap_or_default();
                    }
                    Err(e) => {
                        r.status = "failed".into();
                        r.error = format!("{e:#}");
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                display.account_done();
                let line = match r.status.as_str() {
                    "ok" => format!(
                        "[{n}/{total}] row {}: {} ok: {} copied, {} duplicates",
                        r.row, r.target, r.copied, r.duplicates
                    ),
                    s => format!("[{n}/{total}] row {}: {} {s}: {}", r.row, r.target, r.error),
                };
                progress::eprintln(&line);
                r
            })
            .collect()
    });
    stop_ticker.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    drop(display);

    let mut all = results;
    // Each shard reports the bad rows of its own share (all shards list them all on
    // stderr, since every machine checks the whole file).
    for e in errors.iter().filter(|e| {
        e.position
            .is_none_or(|p| shard.is_none_or(|s| batch::in_shard(p, s)))
    }) {
        all.push(AccountResult {
            row: e.row,
            source: String::new(),
            target: String::new(),
            status: "invalid".into(),
            copied: 0,
            duplicates: 0,
            failed: 0,
            bytes: 0,
            seconds: 0.0,
            error: format!("column {}: {}", e.column, e.message),
        });
    }
    all.sort_by_key(|r| r.row);
    if let Some(w) = report.as_mut() {
        for r in &all {
            w.serialize(r)?;
        }
        w.flush()?;
    }
    let ok = all.iter().filter(|r| r.status == "ok").count();
    if a.json {
        progress::out(&serde_json::to_string_pretty(&all)?);
    } else {
        progress::out(&format!(
            "batch: {ok} of {} accounts ok in {:.1}s; {} copied, {} duplicates, {} failed messages, {} bytes",
            all.len(),
            started.elapsed().as_secs_f64(),
            all.iter().map(|r| r.copied).sum::<u64>(),
            all.iter().map(|r| r.duplicates).sum::<u64>(),
            all.iter().map(|r| r.failed).sum::<u64>(),
            all.iter().map(|r| r.bytes).sum::<u64>()
        ));
        for r in all.iter().filter(|r| r.status != "ok") {
            progress::out(&format!(
                "  row {} {} {}: {}",
                r.row, r.target, r.status, r.error
            ));
        }
    }
    Ok(if ok == all.len() {
        EXIT_OK
    } else if all.iter().all(|r| r.status == "invalid") && !all.is_empty() {
        EXIT_INPUT
    } else {
        EXIT_PARTIAL
    })
}

fn open_report(path: &Path) -> anyhow::Result<csv::Writer<std::fs::File>> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o
        .open(path)
        .map_err(|e| input(format!("cannot write the report {}: {e}", path.display())))?;
    crate::backup::private(path);
    Ok(csv::Writer::from_writer(f))
}

#[cfg(test)]
mod tests {
    use super::*;

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
