//! One account, IMAP to IMAP: folders → listing → decide → fetch → append → record.
//!
//! Invariants:
//! - the source is only ever EXAMINEd and read with `BODY.PEEK`, so nothing on it
//!   changes (not even `\Seen`);
//! - a source message is recorded as done only after the target's tagged OK for its
//!   APPEND (or after it was found on the target already);
//! - a message whose record was lost (crash between APPEND and commit) is found
//!   again on the target by its dedupe key before anything is appended: the target
//!   messages the index does not know are hashed when they could match;
//! - at most three batches of message bodies are held in memory (being fetched,
//!   waiting, being appended), and no listing of a huge folder is held whole.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::decide::{self, Action, Meta};
use crate::dedupe::{self, Mode};
use crate::endpoint::Server;
use crate::error::Retry;
use crate::folders::{self, Folder, Rules, TargetLayout};
use crate::imap::session::{self, Session};
use crate::imap::types::{ImapDate, UidSet};
use crate::imap::{utf7, Append, ImapError, ListEntry};
use crate::index::{Index, Outcome, Record};
use crate::log;
use crate::net::NetOptions;
use crate::secret::Credentials;
use crate::source::Source;
use crate::summary::{Failure, Planned, Summary};

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
    /// Connection pairs per account: folders are copied in parallel over them.
    pub connections: usize,
    /// `--include-shared TREE`: other users' and shared folders go under TREE;
    /// `None`: only the account's own folders are copied.
    pub include_shared: Option<Vec<String>>,
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
}

/// Listings are read this many messages at a time, so memory does not grow with
/// the size of a folder.
pub const LISTING_PAGE: usize = 2_000;

/// Planning keeps the listings of at most this many messages for the copy (saving a
/// second listing); beyond, folders are listed again page by page as they are copied.
pub const KEEP_LISTED: usize = 5_000;

/// The messages of the open folder not yet handled, one page at a time, in order:
/// `not_done` drops the handled ones of a page (asked only when the source's ids are
/// stable); `each` returns false to stop. Returns how many messages were listed.
pub fn pending_pages(
    src: &mut dyn Source,
    dedupe: Mode,
    mut not_done: impl FnMut(Vec<Meta>) -> anyhow::Result<Vec<Meta>>,
    mut each: impl FnMut(&mut dyn Source, Vec<Meta>) -> anyhow::Result<bool>,
) -> anyhow::Result<u64> {
    let mut page = 0;
    let mut listed = 0u64;
    let (size, _) = crate::faults::listing_sizes(LISTING_PAGE, KEEP_LISTED);
    while let Some(list) = src.listing_page(page, size)? {
        page += 1;
        listed += list.len() as u64;
        // Asked after listing: a POP3 server shows only then whether it has UIDL.
        let mut pending = if src.stable_ids() {
            not_done(list)?
        } else if dedupe == Mode::None {
            // No checkpoints and no dedupe: every run would copy everything again.
            return Err(crate::error::input(format!(
                "{} has no stable message ids (a POP3 server without UIDL, or an IMAP folder without UIDVALIDITY), so only the dedupe keys can tell what was copied; --dedupe none would copy every message again on every run. Use --dedupe exact (the default)",
                src.describe()
            )));
        } else {
            list
        };
        pending.sort_by_key(|m| m.order);
        if !each(src, pending)? {
            break;
        }
    }
    Ok(listed)
}

/// What planning gathers about one folder's pending messages: how many, their
/// bytes, and their listing while the run keeps few enough ([`KEEP_LISTED`]).
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
    pub kept: Option<Vec<Meta>>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            count: 0,
            bytes: 0,
            kept: Some(Vec::new()),
        }
    }

    /// Count a page; keep its listing while the kept total stays within `room`.
    pub fn add(&mut self, page: Vec<Meta>, room: usize) {
        self.count += page.len() as u64;
        self.bytes += page.iter().map(|m| m.size).sum::<u64>();
        self.kept = match self.kept.take() {
            Some(mut k) if k.len() + page.len() <= room => {
                k.extend(page);
                Some(k)
            }
            _ => None,
        };
    }

    /// How many messages' listings are kept.
    pub fn kept_len(&self) -> usize {
        self.kept.as_ref().map_or(0, Vec::len)
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

/// Decode a wire name; a name that is not valid modified UTF-7 is shown lossily
/// but still addressed by its raw bytes.
pub fn decode_name(raw: &[u8]) -> String {
    utf7::decode(raw).unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
}

/// The personal namespace prefix (decoded) and the delimiter of a session.
pub fn layout_of(s: &mut Session, list: &[ListEntry]) -> anyhow::Result<(String, Option<char>)> {
    let ns = s.personal_namespace()?;
    let delim = ns
        .as_ref()
        .and_then(|(_, d)| *d)
        .or_else(|| list.iter().find_map(|e| e.delim));
    let prefix = ns.map(|(p, _)| decode_name(&p)).unwrap_or_default();
    Ok((prefix, delim))
}

/// The source folders to copy with their target names, in a stable order.
pub fn map_folders(
    src_list: &[ListEntry],
    src_prefix: &str,
    src_delim: Option<char>,
    target: &TargetLayout,
    opts: &Options,
) -> Vec<(Vec<u8>, String, String)> {
    map_folders_with_roles(src_list, src_prefix, src_delim, target, opts)
        .into_iter()
        .map(|(raw, display, target_name, _)| (raw, display, target_name))
        .collect()
}

/// As [`map_folders`], with each folder's special-use role (`\Sent`, …) if any.
pub fn map_folders_with_roles(
    src_list: &[ListEntry],
    src_prefix: &str,
    src_delim: Option<char>,
    target: &TargetLayout,
    opts: &Options,
) -> Vec<(Vec<u8>, String, String, Option<String>)> {
    let mut folders = Vec::new();
    let mut roles = HashMap::new();
    // Roles the source marks by attribute are not also guessed from names.
    let attributed: HashSet<String> = src_list
        .iter()
        .flat_map(|e| folders::role_of(&e.attrs, &[]))
        .collect();
    for e in src_list {
        if e.has_attr("\\Noselect") || e.has_attr("\\NonExistent") {
            continue;
        }
        let name = decode_name(&e.raw);
        let path = folders::split(&name, e.delim.or(src_delim), src_prefix);
        let role = folders::role_of(&e.attrs, &path)
            .filter(|r| folders::role_of(&e.attrs, &[]).is_some() || !attributed.contains(r));
        if let Some(r) = &role {
            roles.entry(path.clone()).or_insert_with(|| r.clone());
        }
        folders.push((e.raw.clone(), Folder { path, role }));
    }
    let mut out: Vec<(Vec<u8>, String, String, Option<String>)> = folders
        .into_iter()
        .filter(|(_, f)| folders::selected(&f.display(), &opts.include, &opts.exclude))
        .map(|(raw, f)| {
            let tpath = folders::map_folder(&f, &opts.rules, target, &roles);
            // A role is the account's own: not for a folder a rule put elsewhere
            // (--folder-map, --include-shared).
            let role = f.role.clone().filter(|_| {
                f.path.len() == 1 && folders::apply_map(&f.path, &opts.rules).is_none()
            });
            (raw, f.display(), folders::join_target(&tpath, target), role)
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    // Two source folders that land in one target folder (a name the target cannot
    // hold, such as `a.b` on a target whose delimiter is `.`, becomes `a_b`; or a
    // --folder-map): say so, since their messages are put together there.
    let mut sources_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (_, display, target_name, _) in &out {
        sources_of.entry(target_name).or_default().push(display);
    }
    let mut shared: Vec<_> = sources_of
        .into_iter()
        .filter(|(_, s)| s.len() > 1)
        .collect();
    shared.sort();
    for (target_name, sources) in shared {
        log::warn(format!(
            "folders {} all go into {target_name} on the target: their messages are put together there (identical copies once); use --folder-map SRC=DST to keep them apart",
            sources.join(", ")
        ));
    }
    out
}

/// Only the account's own folders, unless `--include-shared TREE`: then the
/// others (other users', shared) too, each under TREE with its whole name as its
/// path there, and never as a special-use folder of the account's.
pub fn own_folders(
    tree: crate::source::Tree,
    namespaces: Option<&crate::imap::Namespaces>,
    opts: &Options,
) -> (crate::source::Tree, Options) {
    let mut opts = opts.clone();
    let Some(ns) = namespaces else {
        return (tree, opts);
    };
    let (foreign, own): (Vec<ListEntry>, Vec<ListEntry>) = tree
        .entries
        .into_iter()
        .partition(|e| ns.is_foreign(&e.raw));
    let mut entries = own;
    match &opts.include_shared {
        None if !foreign.is_empty() => log::warn(format!(
            "{} folders of other users or shared folders are not copied ({}); use --include-shared TREE to copy them under TREE",
            foreign.len(),
            foreign
                .iter()
                .take(3)
                .map(|e| decode_name(&e.raw))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => {}
        Some(under) => {
            for mut e in foreign {
                let whole = decode_name(&e.raw);
                let path: Vec<String> = match e.delim.or(tree.delim) {
                    Some(d) => whole.split(d).map(str::to_string).collect(),
                    None => vec![whole],
                };
                let src_path = folders::split(&decode_name(&e.raw), e.delim.or(tree.delim), &tree.prefix);
                opts.rules.map.push((src_path, under.iter().cloned().chain(path).collect()));
                e.attrs.retain(|a| folders::role_of(std::slice::from_ref(a), &[]).is_none());
                entries.push(e);
            }
        }
    }
    (
        crate::source::Tree {
            entries,
            prefix: tree.prefix,
            delim: tree.delim,
        },
        opts,
    )
}

/// `--to-folder` as a folder mapping: the source's one folder, whatever its name
/// (INBOX for POP3, the file's name for an mbox file), goes there.
pub fn with_to_folder(opts: &Options, tree: &crate::source::Tree) -> anyhow::Result<Options> {
    let mut opts = opts.clone();
    if let Some(to) = opts.to_folder.clone() {
        let selectable: Vec<&ListEntry> = tree
            .entries
            .iter()
            .filter(|e| !e.has_attr("\\Noselect") && !e.has_attr("\\NonExistent"))
            .filter(|e| {
                let path =
                    folders::split(&decode_name(&e.raw), e.delim.or(tree.delim), &tree.prefix);
                folders::selected(&path.join("/"), &opts.include, &opts.exclude)
            })
            .collect();
        if selectable.len() != 1 {
            return Err(crate::error::input(format!(
                "--to-folder needs a source with one folder, and this one has {}; use --folder-map SRC=DST instead",
                selectable.len()
            )));
        }
        let e = selectable[0];
        let path = folders::split(&decode_name(&e.raw), e.delim.or(tree.delim), &tree.prefix);
        opts.rules.map.push((path, to));
    }
    Ok(opts)
}

/// What the target looks like, from its LIST.
pub fn target_layout(list: &[ListEntry], prefix: String, delim: Option<char>) -> TargetLayout {
    let mut t = TargetLayout {
        delim,
        prefix: prefix.clone(),
        ..TargetLayout::default()
    };
    for e in list {
        let path = folders::split(&decode_name(&e.raw), e.delim.or(delim), &prefix);
        for a in &e.attrs {
            if let Some(r) = folders::ROLES.iter().find(|r| r.eq_ignore_ascii_case(a)) {
                t.roles.entry(r.to_string()).or_insert_with(|| path.clone());
            }
        }
        t.existing.push(path);
    }
    t
}

/// The cheap listing of the selected folder: UID, size, flags, INTERNALDATE.
pub fn listing(s: &mut Session) -> Result<Vec<Meta>, ImapError> {
    listing_of(s, "1:*")
}

/// The cheap listing of the messages of a UID set, in UID order.
pub fn listing_of(s: &mut Session, set: &str) -> Result<Vec<Meta>, ImapError> {
    let mut out = Vec::new();
    s.uid_fetch(set, "(UID RFC822.SIZE FLAGS INTERNALDATE)", |f| {
        if let Some(uid) = f.uid {
            out.push(Meta {
                id: uid.to_string(),
                order: u64::from(uid),
                size: f.size.unwrap_or(0),
                flags: f.flags.unwrap_or_default(),
                internal_date: f.internal_date,
                problem: f.problem,
            });
        }
        Ok(())
    })?;
    out.sort_by_key(|m| m.order);
    Ok(out)
}

/// The cheap listing of the messages of `wanted`, in UID order: what the server
/// sends for UIDs not asked for, or twice, is dropped as it arrives (and counted,
/// the second number), so a server cannot make a page hold more than it asked.
pub fn listing_within(s: &mut Session, wanted: &UidSet) -> Result<(Vec<Meta>, u64), ImapError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut unasked = 0u64;
    // About 200 bytes a message: the command's budget grows with them.
    s.expect(wanted.len().saturating_mul(256));
    s.uid_fetch(
        &wanted.to_string(),
        "(UID RFC822.SIZE FLAGS INTERNALDATE)",
        |f| {
            match f.uid {
                Some(uid) if wanted.contains(uid) && seen.insert(uid) => out.push(Meta {
                    id: uid.to_string(),
                    order: u64::from(uid),
                    size: f.size.unwrap_or(0),
                    flags: f.flags.unwrap_or_default(),
                    internal_date: f.internal_date,
                    problem: f.problem,
                }),
                _ => unasked += 1,
            }
            Ok(())
        },
    )?;
    out.sort_by_key(|m| m.order);
    Ok((out, unasked))
}

/// Fetch bodies of `uids` (sorted) from the selected folder, one call per body;
/// `expected`: about how many bytes they are (the command's budget grows with
/// them). A body for a UID not asked for, or a second one, is dropped at once.
pub fn fetch_bodies(
    s: &mut Session,
    uids: &[u32],
    expected: u64,
    mut each: impl FnMut(u32, Vec<u8>),
) -> Result<(), ImapError> {
    if uids.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::new();
    s.expect(expected);
    s.uid_fetch(&decide::uid_set(uids), "(UID BODY.PEEK[])", |f| {
        if let (Some(uid), Some(body)) = (f.uid, f.body) {
            if uids.binary_search(&uid).is_ok() && seen.insert(uid) {
                each(uid, body);
            }
        }
        Ok(())
    })
}

/// Target messages the index does not know, grouped so a source message can find
/// the ones that could be its copy: by Message-ID, and by size for those without.
#[derive(Default)]
struct Unknown {
    /// Message-ID fingerprint ([`dedupe::fingerprint_bytes`]) → the first UID with it; further UIDs in `more_by_id`
    /// (rare), so a folder of 100,000 unknown messages costs about 2.5 MB here.
    by_id: HashMap<u128, u32>,
    more_by_id: HashMap<u128, Vec<u32>>,
    by_size: HashMap<u64, Vec<u32>>,
    /// Every UID the target folder has now (known to the index or not).
    present: HashSet<u32>,
}

impl Unknown {
    fn add_id(&mut self, id: &[u8], uid: u32) {
        let key = dedupe::fingerprint_bytes(id);
        match self.by_id.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.more_by_id.entry(key).or_default().push(uid)
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(uid);
            }
        }
    }

    /// Without a Message-ID, by size: as the bytes are, and with bare LFs counted as
    /// CRLF (servers differ in which one RFC822.SIZE reports).
    fn candidates(&self, msg: &[u8]) -> Vec<u32> {
        match dedupe::message_id(msg) {
            Some(id) => {
                let key = dedupe::fingerprint_bytes(&id);
                self.by_id
                    .get(&key)
                    .into_iter()
                    .chain(self.more_by_id.get(&key).into_iter().flatten())
                    .copied()
                    .collect()
            }
            None => {
                let mut v = self
                    .by_size
                    .get(&(msg.len() as u64))
                    .cloned()
                    .unwrap_or_default();
                let crlf = dedupe::crlf_len(msg);
                let mut sizes = vec![crlf];
                // A server that adds a final CRLF (Courier) stores 2 bytes more.
                if !msg.ends_with(b"\n") {
                    sizes.extend([msg.len() as u64 + 2, crlf + 2]);
                }
                sizes.sort_unstable();
                sizes.dedup();
                for size in sizes.into_iter().filter(|&n| n != msg.len() as u64) {
                    v.extend(self.by_size.get(&size).into_iter().flatten());
                }
                v
            }
        }
    }
    fn forget(&mut self, uids: &[u32]) {
        self.by_id.retain(|_, u| !uids.contains(u));
        for v in self
            .more_by_id
            .values_mut()
            .chain(self.by_size.values_mut())
        {
            v.retain(|u| !uids.contains(u));
        }
    }
}

fn target_unknown(s: &mut Session, known: &HashMap<u32, u128>) -> Result<Unknown, ImapError> {
    let mut u = Unknown::default();
    // A Message-ID header and its size: about 200 bytes a message.
    s.expect(u64::from(s.exists().unwrap_or(0)).saturating_mul(256));
    s.uid_fetch(
        "1:*",
        "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
        |f| {
            let Some(uid) = f.uid else { return Ok(()) };
            u.present.insert(uid);
            if known.contains_key(&uid) {
                return Ok(());
            }
            match f.header_fields.as_deref().and_then(dedupe::message_id) {
                Some(id) => u.add_id(&id, uid),
                None => u.by_size.entry(f.size.unwrap_or(0)).or_default().push(uid),
            }
            Ok(())
        },
    )?;
    Ok(u)
}

/// Everything a copy needs to know about the job besides the source.
pub struct Job<'a> {
    pub target: &'a Server,
    /// How the target is logged in to, at every (re)connect.
    pub target_credentials: &'a Credentials,
    pub net: &'a NetOptions,
    pub opts: &'a Options,
    /// Opens another connection to the source, for copying folders in parallel.
    pub reopen: Option<&'a (dyn Fn() -> anyhow::Result<Box<dyn Source>> + Sync)>,
}

/// Copy every selected folder of a source into an IMAP account.
pub fn migrate(src: &mut dyn Source, job: &Job<'_>, index: &mut Index) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    migrate_into(src, job, index, &mut summary)?;
    Ok(summary)
}

/// As [`migrate`], adding to `summary`, so a retried run reports what every attempt did.
pub fn migrate_into(
    src: &mut dyn Source,
    job: &Job<'_>,
    index: &mut Index,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let started = Instant::now();
    summary.source = src.describe();
    summary.target = job.target.to_string();
    summary.dry_run = job.opts.dry_run;
    summary.failed.clear();
    summary.failed_folders.clear();
    summary.stopped = None;
    let mut tgt = session::open_with(job.target, job.target_credentials, job.net, "target")?;

    let tree = src.folders()?;
    let (tree, own_opts) = own_folders(tree, src.namespaces().as_ref(), job.opts);
    let tgt_list = tgt.list()?;
    let (tgt_prefix, tgt_delim) = layout_of(&mut tgt, &tgt_list)?;
    let layout = target_layout(&tgt_list, tgt_prefix, tgt_delim);
    let opts = with_to_folder(&own_opts, &tree)?;
    let mapped = map_folders_with_roles(&tree.entries, &tree.prefix, tree.delim, &layout, &opts);
    // A \Noselect placeholder is no folder to copy into: it is created (or fails).
    let tgt_existing: HashSet<Vec<u8>> = tgt_list
        .iter()
        .filter(|e| !e.has_attr("\\Noselect") && !e.has_attr("\\NonExistent"))
        .map(|e| e.raw.clone())
        .collect();

    let job_id = index.job(&summary.source, &summary.target)?;

    // Phase 1: plan every folder (cheap listings, page by page), for totals and dry
    // runs. Listings are kept for phase 2 only while they are few.
    let mut plans = Vec::new();
    let mut kept_total = 0usize;
    let (_, keep_listed) = crate::faults::listing_sizes(LISTING_PAGE, KEEP_LISTED);
    for (raw, display, target_name, role) in mapped {
        // A folder the source refuses (EXAMINE, FETCH) fails alone, here too.
        let opened = match src.open(&raw) {
            Ok(o) => o,
            Err(e) if folder_refusal(&e) => {
                summary.folder_failed(&display, &target_name, format!("{e:#}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut tally = Tally::new();
        // Listed even when the server says it is empty: a count of 0 with mail
        // in the folder would otherwise skip it silently.
        let listed = match (|| -> anyhow::Result<u64> {
            let uidvalidity = opened.uidvalidity;
            if !index.any_done(job_id, &display, uidvalidity)? {
                if let Some(old) = index.other_uidvalidity(job_id, &display, uidvalidity)? {
                    log::warn(format!(
                        "{display}: UIDVALIDITY changed ({old} → {uidvalidity}); every message is checked against the target by its dedupe key, nothing is copied twice"
                    ));
                }
            }
            let room = keep_listed.saturating_sub(kept_total);
            pending_pages(
                src,
                opts.dedupe,
                |list| index.not_done(job_id, &display, uidvalidity, list),
                |_, page| {
                    tally.add(page, room);
                    Ok(true)
                },
            )
        })() {
            Ok(n) => n,
            Err(e) if folder_refusal(&e) => {
                summary.folder_failed(&display, &target_name, format!("{e:#}"));
                note_anomalies(src, summary);
                continue;
            }
            Err(e) => return Err(e),
        };
        kept_total += tally.kept_len();
        note_anomalies(src, summary);
        log::info(format!(
            "{display} → {target_name}: {listed} messages, {} not yet copied",
            tally.count
        ));
        plans.push(FolderPlan {
            raw,
            display,
            target_name,
            role,
            uidvalidity: opened.uidvalidity,
            count: tally.count,
            bytes: tally.bytes,
            kept: tally.kept,
        });
    }
    summary.folders = plans.len();

    if job.opts.dry_run {
        summary.planned = plans
            .iter()
            .map(|p| Planned {
                folder: p.display.clone(),
                target_folder: p.target_name.clone(),
                messages: p.count,
                bytes: p.bytes,
            })
            .collect();
        src.close();
        tgt.logout();
        summary.finish(started);
        return Ok(());
    }

    let total_msgs: u64 = plans.iter().map(|p| p.count).sum();
    let total_bytes: u64 = plans.iter().map(|p| p.bytes).sum();
    let progress = crate::progress::start(&summary.target, total_msgs, total_bytes);
    let mut confirmed = Vec::new();

    // Folders that land in one target folder are copied by one connection, in
    // order, so their dedupe sees each other.
    let mut groups: Vec<Vec<&FolderPlan>> = Vec::new();
    for plan in &plans {
        match groups
            .iter_mut()
            .find(|g| g[0].target_name == plan.target_name)
        {
            Some(g) => g.push(plan),
            None => groups.push(vec![plan]),
        }
    }
    let busy = groups
        .iter()
        .filter(|g| g.iter().any(|p| p.count > 0))
        .count();
    let workers = job.opts.connections.max(1).min(busy.max(1));
    let ctx = GroupCtx {
        job,
        job_id,
        delim: layout.delim,
        tgt_existing: std::sync::Mutex::new(tgt_existing),
        progress: &progress,
    };
    match job.reopen.filter(|_| workers > 1 && !job.opts.delete_after) {
        None => {
            for group in &groups {
                match ctx.run(group, src, &mut tgt, index, summary, &mut confirmed) {
                    Ok(()) => {}
                    Err(Stop::Account(why)) => {
                        summary.stopped = Some(why);
                        break;
                    }
                    Err(Stop::Error(e)) => return Err(e),
                }
            }
        }
        Some(reopen) => {
            // Several connection pairs, each taking the next group of folders.
            let queue = std::sync::Mutex::new(groups.iter());
            let halt = std::sync::atomic::AtomicBool::new(false);
            let first_error: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
            let stopped: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
            let next = || {
                if halt.load(std::sync::atomic::Ordering::SeqCst) {
                    return None;
                }
                queue.lock().unwrap_or_else(|e| e.into_inner()).next()
            };
            let settle = |r: Result<(), Stop>| match r {
                Ok(()) => true,
                Err(Stop::Account(why)) => {
                    halt.store(true, std::sync::atomic::Ordering::SeqCst);
                    *stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    false
                }
                Err(Stop::Error(e)) => {
                    halt.store(true, std::sync::atomic::Ordering::SeqCst);
                    first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                    false
                }
            };
            let index_path = index.path().to_path_buf();
            let extra: Vec<(Summary, Vec<String>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = (1..workers)
                    .map(|_| {
                        let (ctx, next, settle, index_path) = (&ctx, &next, &settle, &index_path);
                        scope.spawn(move || {
                            let mut part = Summary::default();
                            let mut done = Vec::new();
                            let opened = (|| -> anyhow::Result<_> {
                                let s = reopen()?;
                                let t = session::open_with(
                                    job.target,
                                    job.target_credentials,
                                    job.net,
                                    "target",
                                )?;
                                let i = Index::open(index_path)?;
                                Ok((s, t, i))
                            })();
                            match opened {
                                Ok((mut s, mut t, mut i)) => {
                                    while let Some(group) = next() {
                                        let r = ctx.run(
                                            group,
                                            s.as_mut(),
                                            &mut t,
                                            &mut i,
                                            &mut part,
                                            &mut done,
                                        );
                                        if !settle(r) {
                                            break;
                                        }
                                    }
                                    t.logout();
                                    s.close();
                                }
                                Err(e) => {
                                    settle(Err(Stop::Error(e)));
                                }
                            }
                            (part, done)
                        })
                    })
                    .collect();
                while let Some(group) = next() {
                    let r = ctx.run(group, src, &mut tgt, index, summary, &mut confirmed);
                    if !settle(r) {
                        break;
                    }
                }
                handles.into_iter().filter_map(|h| h.join().ok()).collect()
            });
            for (part, done) in extra {
                summary.copied += part.copied;
                summary.duplicates += part.duplicates;
                summary.bytes += part.bytes;
                summary.failed.extend(part.failed);
                summary.failed_folders.extend(part.failed_folders);
                summary.changed.extend(part.changed);
                for r in part.renamed {
                    summary.renamed(&r.folder, &r.target_folder, &r.why);
                }
                for a in part.anomalies {
                    summary.anomaly(&a.folder, a.what);
                }
                summary.anomalies_more += part.anomalies_more;
                confirmed.extend(done);
            }
            if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
                return Err(e);
            }
            summary.stopped = stopped.into_inner().unwrap_or_else(|e| e.into_inner());
        }
    }
    drop(progress);
    tgt.logout();
    if job.opts.delete_after && summary.stopped.is_none() {
        let n = src.delete(&confirmed)?;
        summary.deleted = Some(n as u64);
    }
    src.close();
    summary.finish(started);
    Ok(())
}

/// Without a trusted target UIDVALIDITY, nothing is recorded about target UIDs.
fn untrusted(records: &mut Vec<Record>, trust_target: bool) {
    if !trust_target {
        records.retain(|r| !matches!(r, Record::TargetKnown { .. } | Record::TargetChanged { .. }));
    }
}

/// Move what the source noticed it was told wrongly into the summary.
pub fn note_anomalies(src: &mut dyn Source, summary: &mut Summary) {
    for (folder, what) in src.take_anomalies() {
        summary.anomaly(&folder, what);
    }
}

/// What every connection pair of a copy shares.
struct GroupCtx<'a, 'j> {
    job: &'a Job<'j>,
    job_id: i64,
    /// The target's hierarchy delimiter.
    delim: Option<char>,
    /// Target folders known to exist (listed at the start, or created since).
    tgt_existing: std::sync::Mutex<HashSet<Vec<u8>>>,
    progress: &'a crate::progress::Progress,
}

impl GroupCtx<'_, '_> {
    /// Copy one group of folders (all going to one target folder) over one
    /// source and one target connection.
    fn run(
        &self,
        group: &[&FolderPlan],
        src: &mut dyn Source,
        tgt: &mut Session,
        index: &mut Index,
        summary: &mut Summary,
        confirmed: &mut Vec<String>,
    ) -> Result<(), Stop> {
        for plan in group {
            match self.folder(plan, src, tgt, index, summary, confirmed) {
                Ok(()) => {}
                // The server refused something about this folder (CREATE, SELECT,
                // EXAMINE, FETCH): the folder fails with its words, the others go on,
                // and the next run tries it again.
                Err(Stop::Error(e)) if folder_refusal(&e) => {
                    summary.folder_failed(&plan.display, &plan.target_name, format!("{e:#}"));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    fn folder(
        &self,
        plan: &FolderPlan,
        src: &mut dyn Source,
        tgt: &mut Session,
        index: &mut Index,
        summary: &mut Summary,
        confirmed: &mut Vec<String>,
    ) -> Result<(), Stop> {
        let target_name = self.ensure(plan, tgt, summary)?;
        let renamed;
        let plan = if target_name != plan.target_name {
            renamed = FolderPlan {
                target_name,
                ..plan.clone()
            };
            &renamed
        } else {
            plan
        };
        if plan.count == 0 {
            return Ok(());
        }
        let mut copy = FolderCopy {
            job: self.job,
            job_id: self.job_id,
            plan,
            target_raw: utf7::encode(&plan.target_name).into_bytes(),
            summary: &mut *summary,
            index: &mut *index,
            confirmed: &mut *confirmed,
        };
        let r = copy.copy(src, tgt, self.progress);
        note_anomalies(src, summary);
        r
    }

    /// Make sure the plan's target folder exists; returns the name it has. A name
    /// the target refuses is tried again as [`folders::plain_name`] makes it (the
    /// target's own rules, learnt from its answer), and the folder is listed in the
    /// summary as renamed.
    fn ensure(
        &self,
        plan: &FolderPlan,
        tgt: &mut Session,
        summary: &mut Summary,
    ) -> Result<String, Stop> {
        let exists = |name: &str| {
            self.tgt_existing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(utf7::encode(name).as_bytes())
        };
        let delim = self.delim;
        let plain = folders::plain_name(&plan.target_name, delim);
        if exists(&plan.target_name) {
            return Ok(plan.target_name.clone());
        }
        // The name as it is, first: only a final refusal of it (not "over
        // quota", not "try later") leads to the plain name.
        match self.create(&plan.target_name, plan.role.as_deref(), tgt) {
            Ok(()) => Ok(plan.target_name.clone()),
            Err(e) if e.code().as_deref() == Some("OVERQUOTA") => Err(Stop::Account(format!(
                "the target {} is over quota ({}); free space or raise the quota, then run again",
                self.job.target,
                e.server_words()
            ))),
            Err(e) if e.retry() != Retry::Final || !e.per_message() => Err(Stop::Error(e.into())),
            Err(e) if plain != plan.target_name => {
                if !exists(&plain) {
                    self.create(&plain, plan.role.as_deref(), tgt)
                        .map_err(|_| e_context(&e, plan))?;
                }
                summary.renamed(
                    &plan.display,
                    &plain,
                    &format!(
                        "the target refused {:?}: {}",
                        plan.target_name,
                        e.server_words()
                    ),
                );
                Ok(plain)
            }
            Err(e) => Err(Stop::Error(e_context(&e, plan))),
        }
    }

    fn create(&self, name: &str, role: Option<&str>, tgt: &mut Session) -> Result<(), ImapError> {
        let raw = utf7::encode(name).into_bytes();
        log::info(format!("creating {name}"));
        tgt.create_with_role(&raw, role)?;
        if let Err(e) = tgt.subscribe(&raw) {
            log::warn(format!("could not subscribe to {name}: {e}"));
        }
        self.tgt_existing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(raw);
        Ok(())
    }
}

/// A refusal of CREATE, with the folder named.
fn e_context(e: &ImapError, plan: &FolderPlan) -> anyhow::Error {
    FolderRefused(format!(
        "the target refused to create {}: {}",
        plan.target_name,
        e.server_words()
    ))
    .into()
}

/// The server's refusal of one folder.
#[derive(Debug)]
struct FolderRefused(String);

impl std::fmt::Display for FolderRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FolderRefused {}

/// Whether an error is a server's final refusal concerning one folder (a NO or BAD
/// that is not "try later", or a CREATE that failed), not a lost connection, a
/// busy server or a broken protocol.
fn folder_refusal(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<FolderRefused>()
            || c.downcast_ref::<ImapError>().is_some_and(|i| {
                matches!(i, ImapError::No { .. } | ImapError::Bad { .. })
                    && i.retry() == Retry::Final
            })
    })
}

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

struct FolderCopy<'a, 'j> {
    job: &'a Job<'j>,
    job_id: i64,
    plan: &'a FolderPlan,
    target_raw: Vec<u8>,
    summary: &'a mut Summary,
    index: &'a mut Index,
    /// Source ids whose copy the target confirmed in this run.
    confirmed: &'a mut Vec<String>,
}

impl FolderCopy<'_, '_> {
    fn copy(
        &mut self,
        src: &mut dyn Source,
        tgt: &mut Session,
        progress: &crate::progress::Progress,
    ) -> Result<(), Stop> {
        let plan = self.plan;
        let opts = self.job.opts;
        let target_id = self.job.target.to_string();
        let opened = src.open(&plan.raw)?;
        if opened.uidvalidity != plan.uidvalidity {
            return Err(Stop::Error(crate::error::connect(format!(
                "{}: the source folder's UIDVALIDITY changed during the run; run again",
                plan.display
            ))));
        }
        let tsel = tgt.select(&self.target_raw, false)?;
        // A target folder without a valid UIDVALIDITY may reuse UIDs: what the
        // index knows of its UIDs is not trusted, and none is recorded.
        let trust_target = tsel.uidvalidity_announced;
        if !trust_target {
            self.summary.anomaly(
                &plan.target_name,
                "the target gave no valid UIDVALIDITY: its UIDs are neither trusted nor recorded; copies there are found by their keys",
            );
        }
        let known = if trust_target {
            self.index
                .target_keys(&target_id, &plan.target_name, tsel.uidvalidity)?
        } else {
            HashMap::new()
        };
        let dedupe = opts.dedupe != Mode::None;
        let mut unknown = if dedupe {
            target_unknown(tgt, &known)?
        } else {
            Unknown::default()
        };
        // Only what is on the target now counts: a copy someone deleted there since
        // the last run must not make its message a "duplicate". Keys are held as
        // fingerprints (16 bytes), so these sets stay small for huge folders.
        let mut known_keys: HashSet<u128> = known
            .iter()
            .filter(|(uid, _)| unknown.present.contains(uid))
            .map(|(_, k)| *k)
            .collect();
        drop(known);
        let mut seen_in_run: HashSet<u128> = HashSet::new();
        let headers_date = src.dates_from_headers();
        if headers_date {
            log::info(format!(
                "{}: the source has no INTERNALDATE; each message is dated from its topmost Received: header, else its Date: header, else the target's clock",
                plan.display
            ));
        }
        let index_path = self.index.path().to_path_buf();
        let job_id = self.job_id;

        // The source lists and fetches the next batch while the target stores this
        // one: a fetcher thread hands batches over a channel of one, so at most three
        // batches of bodies are in memory (being fetched, waiting, being appended).
        // `Ok(None)` marks the end; a closed channel without it is a failure.
        type Batch = (
            Vec<Meta>,
            HashMap<String, (String, Vec<u8>)>,
            HashMap<String, String>,
        );
        std::thread::scope(|scope| -> Result<(), Stop> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<anyhow::Result<Option<Batch>>>(1);
            scope.spawn(move || {
                // Fetch `metas` in batches; false when the receiver is gone or on error.
                let send = |src: &mut dyn Source, metas: &[Meta]| -> bool {
                    let sizes: Vec<u64> = metas.iter().map(|m| m.size).collect();
                    for range in decide::batches(&sizes, opts.batch_bytes, opts.batch_count) {
                        // Keys are computed here, off the thread that waits on the target.
                        let mut bodies = HashMap::new();
                        let res = src.fetch(&metas[range.clone()], &mut |id, body| {
                            let key = dedupe::key(&body, opts.dedupe);
                            bodies.insert(id.to_string(), (key, body));
                        });
                        let refused: HashMap<String, String> =
                            src.take_refused().into_iter().collect();
                        let failed = res.is_err();
                        let msg = res.map(|()| Some((metas[range].to_vec(), bodies, refused)));
                        if tx.send(msg).is_err() || failed {
                            return false;
                        }
                    }
                    true
                };
                let finished = match &plan.kept {
                    Some(kept) => send(src, kept),
                    None => {
                        let listed = (|| -> anyhow::Result<bool> {
                            let index = Index::open(&index_path)?;
                            let mut all = true;
                            pending_pages(
                                src,
                                opts.dedupe,
                                |list| {
                                    index.not_done(job_id, &plan.display, plan.uidvalidity, list)
                                },
                                |src, page| {
                                    all = send(src, &page);
                                    Ok(all)
                                },
                            )?;
                            Ok(all)
                        })();
                        match listed {
                            Ok(all) => all,
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                false
                            }
                        }
                    }
                };
                if finished {
                    let _ = tx.send(Ok(None));
                }
            });
            loop {
                let (batch, bodies, refused) = match rx.recv() {
                    Ok(Ok(Some(b))) => b,
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => return Err(Stop::Error(e)),
                    Err(_) => {
                        return Err(Stop::Error(anyhow::anyhow!(
                            "the source reader stopped unexpectedly"
                        )))
                    }
                };

                let mut records = Vec::new();
                // Messages to append (meta, key, flags, date), and duplicates waiting on one of them.
                let mut to_append: Vec<(&Meta, String, Vec<String>, Option<ImapDate>)> = Vec::new();
                let mut waiting: HashMap<String, Vec<&Meta>> = HashMap::new();
                let mut batch_bytes = 0u64;
                for meta in &batch {
                    if let Some(problem) = &meta.problem {
                        self.fail(&mut records, meta, problem);
                        continue;
                    }
                    let Some((key, body)) = bodies.get(&meta.id) else {
                        // Not a silent skip: the run is partial and the next run tries again.
                        let why = refused.get(&meta.id).map_or(
                            "the source did not return this message (deleted meanwhile, or the server could not read it)",
                            String::as_str,
                        );
                        self.fail(&mut records, meta, why);
                        continue;
                    };
                    batch_bytes += meta.size;
                    let key = key.clone();
                    let fp = dedupe::fingerprint(&key);
                    let mut act = decide::action(
                        dedupe,
                        seen_in_run.contains(&fp),
                        known_keys.contains(&fp),
                        !unknown.candidates(body).is_empty(),
                    );
                    if act == Action::CheckTarget {
                        let mut cands = unknown.candidates(body);
                        cands.sort_unstable();
                        let mut found = Vec::new();
                        let expected = body.len() as u64 * cands.len() as u64;
                        fetch_bodies(tgt, &cands, expected, |uid, tbody| {
                            found.push((uid, dedupe::key(&tbody, opts.dedupe)));
                        })?;
                        let variants = dedupe::stored_variants(body, opts.dedupe);
                        for (uid, k) in &found {
                            // A copy the target stored changed (an earlier run's,
                            // with the index lost) is this message: known under
                            // the key of what was sent, the stored one kept apart.
                            let changed = *k != key && variants.contains(k);
                            records.push(Record::TargetKnown {
                                target: target_id.clone(),
                                folder: plan.target_name.clone(),
                                uidvalidity: tsel.uidvalidity,
                                uid: *uid,
                                key: if changed { key.clone() } else { k.clone() },
                            });
                            if changed {
                                records.push(Record::TargetChanged {
                                    target: target_id.clone(),
                                    folder: plan.target_name.clone(),
                                    uidvalidity: tsel.uidvalidity,
                                    uid: *uid,
                                    stored_key: k.clone(),
                                });
                                known_keys.insert(fp);
                            }
                            known_keys.insert(dedupe::fingerprint(k));
                        }
                        unknown.forget(&cands);
                        act = decide::action(
                            dedupe,
                            seen_in_run.contains(&fp),
                            known_keys.contains(&fp),
                            false,
                        );
                    }
                    match act {
                        Action::Skip if to_append.iter().any(|(_, k, _, _)| *k == key) => {
                            waiting.entry(key).or_default().push(meta);
                        }
                        Action::Skip => {
                            self.summary.duplicates += 1;
                            records.push(self.done(meta, &key, Outcome::Duplicate, None));
                        }
                        _ => {
                            let (flags, dropped) =
                                decide::append_flags(&meta.flags, &tsel.permanent_flags);
                            if !dropped.is_empty() {
                                log::info(format!(
                                    "{} message {}: flags the target cannot store are left out: {}",
                                    plan.display,
                                    meta.id,
                                    dropped.join(" ")
                                ));
                            }
                            let date = meta.internal_date.or_else(|| {
                                if headers_date {
                                    dedupe::header_date(body)
                                } else {
                                    None
                                }
                            });
                            seen_in_run.insert(fp);
                            to_append.push((meta, key, flags, date));
                        }
                    }
                }

                let appends: Vec<Append> = to_append
                    .iter()
                    .map(|(meta, _, flags, date)| Append {
                        mailbox: &self.target_raw,
                        flags,
                        internal_date: date.as_ref(),
                        body: &bodies[&meta.id].1,
                    })
                    .collect();
                // One MULTIAPPEND per batch where offered: the server stores the batch in
                // one transaction. It is all or nothing, so a refusal is sorted out by
                // appending the batch one message at a time.
                let results = if appends.len() > 1 && tgt.has_cap("MULTIAPPEND") {
                    match tgt.append_multi(&self.target_raw, &appends) {
                        Ok(uids) => uids.into_iter().map(Ok).collect(),
                        Err(e) if e.per_message() => tgt.append_many(&appends)?,
                        Err(e) => return Err(Stop::Error(e.into())),
                    }
                } else {
                    tgt.append_many(&appends)?
                };
                let mut stop = None;
                let mut stored: Vec<(&Meta, &str, u32)> = Vec::new();
                for ((meta, key, flags, date), result) in to_append.iter().zip(results) {
                    let result = match result {
                        Err(e)
                            if e.retry() == Retry::Final
                                && flags.iter().any(|f| !f.starts_with('\\')) =>
                        {
                            // An invalid keyword must not fail the message: retry with system flags only.
                            let system: Vec<String> = flags
                                .iter()
                                .filter(|f| f.starts_with('\\'))
                                .cloned()
                                .collect();
                            log::warn(format!(
                            "{} message {}: target refused the keywords ({}); copying with system flags only",
                            plan.display,
                            meta.id,
                            e.server_words()
                        ));
                            tgt.append(&Append {
                                mailbox: &self.target_raw,
                                flags: &system,
                                internal_date: date.as_ref(),
                                body: &bodies[&meta.id].1,
                            })
                        }
                        other => other,
                    };
                    let waiters = waiting.remove(key).unwrap_or_default();
                    // APPENDUID of another UIDVALIDITY than the folder's names no
                    // message we can find again: not recorded, and said.
                    let result = result.map(|au| {
                        au.filter(|au| {
                            let same = au.uidvalidity == tsel.uidvalidity;
                            if !same {
                                self.summary.anomaly(
                                    &plan.target_name,
                                    format!(
                                        "the target's APPENDUID names UIDVALIDITY {} but the folder has {}; its UIDs are not recorded",
                                        au.uidvalidity, tsel.uidvalidity
                                    ),
                                );
                            }
                            same
                        })
                        .map(|au| au.uid)
                    });
                    match result {
                        Ok(tuid) => {
                            crate::faults::after_append();
                            if let Some(uid) = tuid {
                                stored.push((meta, key.as_str(), uid));
                            }
                            self.summary.copied += 1;
                            self.summary.bytes += meta.size;
                            records.push(self.done(meta, key, Outcome::Copied, tuid));
                            if let Some(uid) = tuid {
                                records.push(Record::TargetKnown {
                                    target: target_id.clone(),
                                    folder: plan.target_name.clone(),
                                    uidvalidity: tsel.uidvalidity,
                                    uid,
                                    key: key.to_string(),
                                });
                            }
                            for w in waiters {
                                self.summary.duplicates += 1;
                                records.push(self.done(w, key, Outcome::Duplicate, None));
                            }
                        }
                        Err(e) if e.per_message() => {
                            let reason = e.server_words();
                            let why = match &e {
                                ImapError::Unsafe(w) => format!("not sent: {w}"),
                                _ => format!("the target refused it: {reason}"),
                            };
                            seen_in_run.remove(&dedupe::fingerprint(key));
                            for m in std::iter::once(*meta).chain(waiters) {
                                self.fail(&mut records, m, &why);
                            }
                            if e.code().as_deref() == Some("OVERQUOTA") {
                                stop = Some(format!(
                                "the target {} is over quota ({reason}); free space or raise the quota, then run again",
                                self.job.target
                            ));
                            }
                        }
                        Err(e) => {
                            untrusted(&mut records, trust_target);
                            self.index.record(&records)?;
                            return Err(Stop::Error(e.into()));
                        }
                    }
                }
                untrusted(&mut records, trust_target);
                self.index.record(&records)?;
                // What the target stored, checked once the batch is recorded (a
                // connection lost here loses no record of what was appended).
                if stop.is_none() && trust_target {
                    let changed = self.check_stored(tgt, &stored, &bodies, tsel.uidvalidity)?;
                    self.index.record(&changed)?;
                }
                if opts.delete_after {
                    for r in &records {
                        if let Record::Done { id, .. } = r {
                            self.confirmed.push(id.clone());
                        }
                    }
                }
                progress.advance(batch.len() as u64, batch_bytes);
                if let Some(why) = stop {
                    return Err(Stop::Account(why));
                }
            }
            Ok(())
        })
    }

    /// What the target stored of the messages just appended (`stored`: source
    /// message, key sent, new UID): sizes are compared for all, bytes for those
    /// whose size differs or that a server may change (8-bit header bytes, no
    /// final line end). A message stored other than as sent is counted as
    /// "stored changed by the target" and its stored key recorded.
    fn check_stored(
        &mut self,
        tgt: &mut Session,
        stored: &[(&Meta, &str, u32)],
        bodies: &HashMap<String, (String, Vec<u8>)>,
        uidvalidity: u32,
    ) -> Result<Vec<Record>, ImapError> {
        if stored.is_empty() {
            return Ok(Vec::new());
        }
        let mut sizes: HashMap<u32, u64> = HashMap::new();
        let set = crate::imap::types::UidSet::from_uids(stored.iter().map(|s| s.2).collect());
        for attempt in 0..2 {
            tgt.uid_fetch(&set.to_string(), "(UID RFC822.SIZE)", |f| {
                if let (Some(uid), Some(size)) = (f.uid, f.size) {
                    sizes.insert(uid, size);
                }
                Ok(())
            })?;
            if sizes.len() >= stored.len() || attempt == 1 {
                break;
            }
            // Courier shows new messages to FETCH only after a NOOP.
            tgt.simple("NOOP", &[crate::imap::client::Part::Text(b"NOOP")])?;
        }
        if sizes.len() < stored.len() {
            self.summary.anomaly(
                &self.plan.target_name,
                format!(
                    "the target's APPENDUID named {} new UIDs that FETCH does not show",
                    stored.len() - sizes.len()
                ),
            );
        }
        let suspects: Vec<u32> = stored
            .iter()
            .filter(|(meta, _, uid)| {
                let body = &bodies[&meta.id].1;
                let size = sizes.get(uid).copied();
                let same = size == Some(body.len() as u64) || size == Some(dedupe::crlf_len(body));
                !same || dedupe::may_be_changed(body)
            })
            .map(|s| s.2)
            .collect();
        let mut stored_keys = HashMap::new();
        let expected: u64 = stored
            .iter()
            .filter(|s| suspects.contains(&s.2))
            .map(|s| bodies[&s.0.id].1.len() as u64)
            .sum();
        let mut suspects = suspects;
        suspects.sort_unstable();
        fetch_bodies(tgt, &suspects, expected, |uid, tbody| {
            stored_keys.insert(uid, dedupe::key(&tbody, self.job.opts.dedupe));
        })?;
        let mut records = Vec::new();
        for (meta, key, uid) in stored {
            match stored_keys.get(uid) {
                Some(k) if k != key => {
                    self.summary.changed.push(crate::summary::Changed {
                        folder: self.plan.display.clone(),
                        id: meta.id.clone(),
                        target_folder: self.plan.target_name.clone(),
                        target_uid: *uid,
                    });
                    records.push(Record::TargetChanged {
                        target: self.job.target.to_string(),
                        folder: self.plan.target_name.clone(),
                        uidvalidity,
                        uid: *uid,
                        stored_key: k.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(records)
    }

    fn done(&self, meta: &Meta, key: &str, outcome: Outcome, target_uid: Option<u32>) -> Record {
        Record::Done {
            job: self.job_id,
            folder: self.plan.display.clone(),
            uidvalidity: self.plan.uidvalidity,
            id: meta.id.clone(),
            key: key.to_string(),
            outcome,
            target_folder: self.plan.target_name.clone(),
            target_uid,
        }
    }

    fn fail(&mut self, records: &mut Vec<Record>, meta: &Meta, reason: &str) {
        log::warn(format!(
            "{} message {}: {reason}",
            self.plan.display, meta.id
        ));
        self.summary.failed.push(Failure {
            folder: self.plan.display.clone(),
            id: meta.id.clone(),
            reason: reason.to_string(),
        });
        records.push(Record::Failed {
            job: self.job_id,
            folder: self.plan.display.clone(),
            uidvalidity: self.plan.uidvalidity,
            id: meta.id.clone(),
            reason: reason.to_string(),
        });
    }
}

/// The dedupe key of every message of a folder (bodies fetched in bounded batches).
/// `None` when the folder does not exist.
pub fn folder_keys(
    s: &mut Session,
    raw: &[u8],
    mode: Mode,
    opts: &Options,
) -> anyhow::Result<Option<Vec<(u32, String)>>> {
    match s.select(raw, true) {
        Ok(_) => {}
        // A folder that does not exist (no code, [NONEXISTENT], or [CANNOT]: a
        // name the server cannot hold, RFC 5530); a refusal for another reason
        // is an error, not an empty folder.
        Err(e @ ImapError::No { .. })
            if matches!(
                e.code().as_deref(),
                None | Some("NONEXISTENT") | Some("CANNOT")
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    }
    let list = listing(s)?;
    let sizes: Vec<u64> = list.iter().map(|m| m.size).collect();
    let mut out = Vec::with_capacity(list.len());
    for range in decide::batches(&sizes, opts.batch_bytes, opts.batch_count) {
        let uids: Vec<u32> = list[range.clone()].iter().map(|m| m.order as u32).collect();
        let expected = list[range.clone()].iter().map(|m| m.size).sum();
        fetch_bodies(s, &uids, expected, |uid, body| {
            out.push((uid, dedupe::key(&body, mode)))
        })?;
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metas(sizes: &[u64]) -> Vec<Meta> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Meta {
                id: i.to_string(),
                order: i as u64,
                size,
                flags: Vec::new(),
                internal_date: None,
                problem: None,
            })
            .collect()
    }

    #[test]
    fn tally_counts_every_page_and_keeps_only_within_room() {
        // (pages, room) → (count, bytes, kept)
        type Row = (&'static [&'static [u64]], usize, u64, u64, Option<usize>);
        let table: &[Row] = &[
            (&[], 5, 0, 0, Some(0)),
            (&[&[1, 2], &[3]], 3, 3, 6, Some(3)),
            (&[&[1, 2], &[3]], 2, 3, 6, None),
            // Once dropped, a listing is not kept again for a later small page.
            (&[&[1, 2, 3], &[4]], 2, 4, 10, None),
            (&[&[7]], 0, 1, 7, None),
        ];
        for &(pages, room, count, bytes, kept) in table {
            let mut t = Tally::new();
            for p in pages {
                t.add(metas(p), room);
            }
            assert_eq!(
                (t.count, t.bytes, t.kept.as_ref().map(Vec::len)),
                (count, bytes, kept),
                "{pages:?} room {room}"
            );
            assert_eq!(t.kept_len(), kept.unwrap_or(0));
        }
    }
}
