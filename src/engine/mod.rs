//! One account: folders → listing → decide → fetch → store → record, into any
//! [`Target`] (an IMAP account, a Maildir tree).
//!
//! The rooms: [`plan`] maps folders and lists what is not yet copied; [`copy`]
//! copies one folder batch by batch, with the decisions taken by the pure
//! functions of `crate::decide`; [`fetch`] reads the next batch on its own thread;
//! [`record`] turns outcomes into index rows; [`workers`] spreads folders (and
//! parts of a large folder) over connection pairs, whose dedupe in one target
//! folder [`claims`] keeps shared; [`listing`] holds the IMAP reads source and
//! target share.
//!
//! Invariants:
//! - the source is only ever read (IMAP: EXAMINE and `BODY.PEEK`), so nothing on it
//!   changes (not even `\Seen`);
//! - a source message is recorded as done only after the target stored it and made
//!   it durable (IMAP: the tagged OK for its APPEND), or after it was found on the
//!   target already;
//! - a message whose record was lost (crash between storing and commit) is found
//!   again on the target by its dedupe key before anything is stored: the target
//!   messages the index does not know are hashed when they could match;
//! - at most three batches of message bodies are held in memory (being fetched,
//!   waiting, being stored) per connection pair, and the pairs together hold at
//!   most `fetch::BUDGET` besides one batch each; no listing of a huge folder is
//!   held whole.

mod claims;
mod copy;
mod delta;
mod fetch;
pub mod listing;
#[cfg(test)]
mod memory;
pub mod plan;
mod record;
mod workers;

use std::time::Instant;

pub use listing::{fetch_bodies, folder_keys, listing, listing_first, listing_of, listing_within};
pub use plan::{
    decode_name, layout_of, map_folders, map_folders_with_roles, own_folders, pending_pages,
    target_layout, with_to_folder, Tally,
};

use crate::decide::Meta;
use crate::dedupe::Mode;
use crate::endpoint::Server;
use crate::error::Retry;
use crate::folders::Rules;
use crate::imap::ImapError;
use crate::index::Index;
use crate::net::NetOptions;
use crate::secret::Credentials;
use crate::source::Source;
use crate::summary::Summary;
use crate::target::Target;

/// How a run copies.
#[derive(Debug, Clone)]
pub struct Options {
    pub dedupe: Mode,
    pub dry_run: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub rules: Rules,
    /// Upper bound of message bytes held per fetch batch.
    pub batch_bytes: u64,
    pub batch_count: usize,
    /// POP3 only: delete from the source what the target confirmed in this run.
    pub delete_after: bool,
    /// `--to-folder`: the target folder (path) of a single-folder source.
    pub to_folder: Option<Vec<String>>,
    /// Connection pairs per account: folders are copied in parallel over them;
    /// 0: chosen from the measured round-trip time (`workers::auto_pairs`).
    pub connections: usize,
    /// `--include-shared TREE`: other users' and shared folders go under TREE;
    /// `None`: only the account's own folders are copied.
    pub include_shared: Option<Vec<String>>,
    /// `--from-preset`: how an IMAP source account is treated.
    pub preset: crate::provider::Preset,
    /// `--gmail-labels`.
    pub gmail_labels: crate::provider::GmailLabels,
    /// Which messages are copied at all, and in which order.
    pub select: crate::select::Select,
    /// `--sync-deletes`: remove from the target this job's copies of messages gone
    /// from the source.
    pub sync_deletes: bool,
    /// `--max-bytes-per-sec`, `--max-msgs-per-sec`: caps for the account.
    pub max_bytes_per_sec: Option<u64>,
    pub max_msgs_per_sec: Option<u64>,
    /// With `connections` 0 (chosen from the round trip): at most this many pairs
    /// (a batch's share of the host's connections).
    pub max_pairs: usize,
    /// A cap the account shares with others (batch: its source host's).
    pub shared_cap: Option<std::sync::Arc<crate::rate::Cap>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dedupe: Mode::Exact,
            dry_run: false,
            include: Vec::new(),
            exclude: Vec::new(),
            rules: Rules::default(),
            batch_bytes: 4 << 20,
            batch_count: crate::faults::batch_count(250),
            delete_after: false,
            to_folder: None,
            connections: 1,
            include_shared: None,
            preset: crate::provider::Preset::Auto,
            gmail_labels: crate::provider::GmailLabels::Folders,
            select: crate::select::Select::default(),
            sync_deletes: false,
            max_bytes_per_sec: None,
            max_msgs_per_sec: None,
            max_pairs: workers::AUTO_MAX,
            shared_cap: None,
        }
    }
}

/// A source folder ready to copy.
#[derive(Debug, Clone)]
pub struct FolderPlan {
    pub raw: Vec<u8>,
    pub display: String,
    pub target_name: String,
    /// The special-use role the target folder should get if it is created.
    pub role: Option<String>,
    pub uidvalidity: u32,
    /// Messages not yet copied, and their bytes, when the folder was planned.
    pub count: u64,
    pub bytes: u64,
    /// Their listing, kept from planning while the run's total stays small;
    /// `None`: listed again, page by page, when the folder is copied.
    pub kept: Option<Vec<Meta>>,
    /// The order (UID) of the first message of each batch not yet copied, in
    /// listing order, with the listing page it was on: where the folder can be cut
    /// into parts without listing it again.
    pub marks: Vec<(u64, usize)>,
    /// `Some`: only a part of the folder, copied by one of several connection
    /// pairs at once (`workers`).
    pub part: Option<Part>,
}

/// A part of a large folder cut over connection pairs: the messages whose order
/// (IMAP UID) is within `orders`. Listed again, its listing starts at page
/// `from_page`, one page before where it began when it was cut (so messages
/// expunged meanwhile by another client cannot move one of it out of reach).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub orders: std::ops::Range<u64>,
    pub from_page: usize,
    /// Part `k` (from 1) of `n`, for what `-v` says.
    pub k: usize,
    pub n: usize,
}

/// Listings are read this many messages at a time, so memory does not grow with
/// the size of a folder.
pub const LISTING_PAGE: usize = 2_000;

/// Planning keeps the listings of at most this many messages for the copy (saving a
/// second listing); beyond, folders are listed again page by page as they are copied.
pub const KEEP_LISTED: usize = 5_000;

/// Opens another connection to the source, for copying folders in parallel.
pub type Reopen<'a> = dyn Fn() -> anyhow::Result<Box<dyn Source>> + Sync + 'a;

/// Everything a copy into an IMAP account needs to know besides the source.
pub struct Job<'a> {
    pub target: &'a Server,
    /// How the target is logged in to, at every (re)connect.
    pub target_credentials: &'a Credentials,
    pub net: &'a NetOptions,
    pub opts: &'a Options,
    /// Opens another connection to the source, for copying folders in parallel.
    pub reopen: Option<&'a Reopen<'a>>,
}

/// Open the source (with `open`) and connect to the job's IMAP target side by
/// side: each is a TLS handshake and a login, several round trips, and neither
/// needs the other. The source's error is said first when both fail.
pub fn connect_both(
    open: &Reopen<'_>,
    job: &Job<'_>,
) -> anyhow::Result<(Box<dyn Source>, crate::target::imap::ImapTarget)> {
    let (tgt, src) = side_by_side(
        || crate::target::imap::ImapTarget::connect(job.target, job.target_credentials, job.net),
        open,
    );
    Ok((src?, tgt?))
}

/// `there` on a thread of its own while `here` runs on this one; both results.
/// A panic on the thread is an error.
fn side_by_side<A: Send, B>(
    there: impl FnOnce() -> anyhow::Result<A> + Send,
    here: impl FnOnce() -> anyhow::Result<B>,
) -> (anyhow::Result<A>, anyhow::Result<B>) {
    std::thread::scope(|scope| {
        let there = scope.spawn(there);
        let here = here();
        let there = there
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a thread of this run panicked")));
        (there, here)
    })
}

/// Copy every selected folder of a source into the job's IMAP account (`tgt`,
/// connected by [`connect_both`]), adding to `summary`, so a retried run reports
/// what every attempt did.
pub fn migrate_into(
    src: &mut dyn Source,
    tgt: &mut crate::target::imap::ImapTarget,
    job: &Job<'_>,
    index: &mut Index,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    summary.source = src.describe();
    summary.target = job.target.to_string();
    copy_into(src, tgt, job.opts, job.reopen, index, summary)
}

/// Copy every selected folder of a source into any target, adding to `summary`.
/// `reopen` (with a target that can open more connections) lets
/// `--connections N` copy folders in parallel.
pub fn copy_into(
    src: &mut dyn Source,
    tgt: &mut dyn Target,
    opts: &Options,
    reopen: Option<&Reopen<'_>>,
    index: &mut Index,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let started = Instant::now();
    summary.source = src.describe();
    summary.target = tgt.describe();
    summary.dry_run = opts.dry_run;
    summary.failed.clear();
    summary.failed_folders.clear();
    summary.stopped = None;

    if opts.sync_deletes && src.forgets() {
        return Err(crate::error::input(format!(
            "--sync-deletes does not work with {}: POP3 servers delete mail on their own (\"keep for N days\", other clients, --delete-after), so what is gone from it may still be wanted; leave out --sync-deletes",
            src.describe()
        )));
    }
    if opts.sync_deletes && !tgt.updates() {
        return Err(crate::error::input(format!(
            "--sync-deletes removes copies from an IMAP target; {} is not one (a backup keeps what it holds)",
            tgt.describe()
        )));
    }
    let Mapped {
        folders: mapped,
        opts,
        layout,
    } = map_into(src, tgt, opts)?;
    let job_id = index.job(&summary.source, &summary.target)?;
    let connect = tgt.connector();
    let spare = match (reopen, connect.as_ref()) {
        (Some(reopen), Some(connect)) => {
            Some((reopen, connect, workers::spare_count(&opts, src, tgt)))
        }
        _ => None,
    };
    std::thread::scope(|scope| {
        let spares = match spare {
            Some((reopen, connect, n)) if n > 0 => workers::Spares::open(scope, n, reopen, connect),
            _ => workers::Spares::none(),
        };
        let r = copy_planned(
            src,
            tgt,
            (&opts, &layout, mapped, job_id),
            (reopen, connect.as_ref()),
            &spares,
            index,
            summary,
        );
        spares.close();
        r
    })?;
    summary.finish(started);
    Ok(())
}

/// Phases 1 and 2 of [`copy_into`]: plan, then copy (with `spares` opened while
/// planning).
fn copy_planned(
    src: &mut dyn Source,
    tgt: &mut dyn Target,
    (opts, layout, mapped, job_id): (
        &Options,
        &crate::folders::TargetLayout,
        Vec<MappedFolder>,
        i64,
    ),
    (reopen, connect): (Option<&Reopen<'_>>, Option<&crate::target::Connector>),
    spares: &workers::Spares<'_>,
    index: &mut Index,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    // Phase 1: plan every folder (cheap listings, page by page), for totals and dry
    // runs. Listings are kept for phase 2 only while they are few.
    // The delta pass of a re-run: on targets whose copies can be changed, from
    // sources whose ids are stable.
    let mut delta =
        (tgt.updates() && !opts.delete_after).then(|| delta::Delta::new(opts.sync_deletes));
    let plans = plan::plan_folders(src, tgt, mapped, opts, (index, job_id), summary, &mut delta)?;
    summary.folders = plans.len();
    if let Some(d) = delta.as_ref().filter(|_| opts.dry_run) {
        (summary.flags_updated, summary.removed_on_target) = d.counts(index, job_id)?;
    }
    if let Some(note) = tgt.planned(opts.dry_run)? {
        summary.note(note);
    }
    if opts.dry_run {
        summary.planned = plan::planned(&plans, tgt);
        src.close();
        tgt.close();
        return Ok(());
    }

    // Phase 2: copy, folder group by folder group.
    let total_msgs: u64 = plans.iter().map(|p| p.count).sum();
    let total_bytes: u64 = plans.iter().map(|p| p.bytes).sum();
    let progress = crate::progress::start(&summary.target, total_msgs, total_bytes);
    let ctx = copy::GroupCtx {
        opts,
        job_id,
        target_id: summary.target.clone(),
        delim: layout.delim,
        progress: &progress,
        cap: cap_of(opts),
        claims: Default::default(),
        budget: Default::default(),
        creating: Default::default(),
    };
    let confirmed = workers::run(
        &ctx,
        &plans,
        src,
        tgt,
        (reopen, connect),
        spares,
        index,
        summary,
    )?;
    drop(progress);
    if let Some(d) = delta.filter(|_| summary.stopped.is_none()) {
        d.apply(tgt, index, job_id, summary)?;
    }
    if summary.stopped.is_none() {
        tgt.finish()?;
    }
    tgt.close();
    if opts.delete_after && summary.stopped.is_none() {
        let n = src.delete(&confirmed)?;
        summary.deleted = Some(n as u64);
    }
    src.close();
    Ok(())
}

/// A source folder mapped: (source wire name, source name shown, target name,
/// special-use role).
pub type MappedFolder = (Vec<u8>, String, String, Option<String>);

/// The source's folders mapped to the target's: what [`copy_into`] copies and
/// `verify` compares.
pub struct Mapped {
    pub folders: Vec<MappedFolder>,
    /// The options with the source's own namespace and `--to-folder` applied.
    pub opts: Options,
    pub layout: crate::folders::TargetLayout,
}

/// Map the source's folders onto the target as the copy does: own folders only
/// (unless `--include-shared`), the folder rules, the target's layout and roles,
/// or the source's names for a target that keeps them.
pub fn map_into(
    src: &mut dyn Source,
    tgt: &mut dyn Target,
    opts: &Options,
) -> anyhow::Result<Mapped> {
    // Both sides' folder lists at once (LIST and NAMESPACE on each: round trips
    // that need not wait for each other).
    let t = &mut *tgt;
    let (layout, tree) = side_by_side(move || t.layout(), || src.folders());
    let (tree, layout) = (tree?, layout?);
    let (tree, own_opts) = own_folders(tree, src.namespaces().as_ref(), opts);
    let mut opts = with_to_folder(&own_opts, &tree)?;
    opts.select.target_limit = tgt.append_limit();
    if let Some(limit) = opts.select.target_limit {
        crate::log::info(format!(
            "the target takes messages of up to {limit} bytes (APPENDLIMIT); larger ones are left on the source"
        ));
    }
    let keep = tgt.keeps_names();
    let name_of = |path: &[String]| tgt.folder_name(path, &layout);
    let keep_names = keep.then_some(&name_of as &plan::NameOf<'_>);
    let folders = plan::map_folders_as(
        &tree.entries,
        &tree.prefix,
        tree.delim,
        &layout,
        &opts,
        keep_names,
    );
    if keep {
        plan::apart(&folders)?;
    }
    Ok(Mapped {
        folders,
        opts,
        layout,
    })
}

/// The account's rate cap (`--max-bytes-per-sec`, `--max-msgs-per-sec`, a shared
/// host cap), if any.
fn cap_of(opts: &Options) -> Option<crate::rate::Cap> {
    let any = opts.max_bytes_per_sec.is_some()
        || opts.max_msgs_per_sec.is_some()
        || opts.shared_cap.is_some();
    any.then(|| {
        crate::rate::Cap::new(opts.max_bytes_per_sec, opts.max_msgs_per_sec)
            .under(opts.shared_cap.clone())
    })
}

/// The shortest of two NOOP round trips on an IMAP session; `None` if one fails
/// (the copy then finds out what is wrong).
pub fn noop_time(s: &mut crate::imap::session::Session) -> Option<std::time::Duration> {
    // The session's quickest command so far (login, LIST, NAMESPACE, …) already
    // is a round trip: no NOOP needed (two round trips saved per side).
    if let Some(t) = s.round_trip() {
        return Some(t);
    }
    (0..2)
        .map(|_| {
            let t = Instant::now();
            s.simple("NOOP", &[crate::imap::client::Part::Text(b"NOOP")])
                .ok()
                .map(|_| t.elapsed())
        })
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

/// The most connection pairs the engine takes when it chooses them itself.
pub const AUTO_PAIRS: usize = workers::AUTO_MAX;

/// Move what the source noticed it was told wrongly into the summary.
pub fn note_anomalies(src: &mut dyn Source, summary: &mut Summary) {
    for (folder, what) in src.take_anomalies() {
        summary.anomaly(&folder, what);
    }
}

/// Move what the target noticed into the summary.
fn note_target_anomalies(tgt: &mut dyn Target, summary: &mut Summary) {
    for (folder, what) in tgt.take_anomalies() {
        summary.anomaly(&folder, what);
    }
}

/// The server's refusal of one folder.
#[derive(Debug)]
pub struct FolderRefused(pub String);

impl std::fmt::Display for FolderRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FolderRefused {}

/// Whether an error is a target's final refusal concerning one folder (a NO or
/// BAD that is not "try later", or a CREATE that failed), not a lost connection, a
/// busy server or a broken protocol.
pub fn folder_refusal(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<FolderRefused>()
            || c.downcast_ref::<ImapError>().is_some_and(|i| {
                matches!(i, ImapError::No { .. } | ImapError::Bad { .. })
                    && i.retry() == Retry::Final
            })
    })
}

/// How copying a folder group ended, when not well.
enum Stop {
    /// Stop this account cleanly with a message (over quota).
    Account(String),
    Error(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Error(e.into())
    }
}
