//! Listing and planning: which source folders go where (folder rules, roles, the
//! target's layout), and what each holds that is not yet copied. Listings are read
//! a page at a time ([`LISTING_PAGE`]); planning keeps them for the copy only while
//! the run's total stays small ([`KEEP_LISTED`]), so no huge folder is held whole.

use std::collections::{HashMap, HashSet};

use super::{FolderPlan, Options, KEEP_LISTED, LISTING_PAGE};
use crate::decide::Meta;
use crate::dedupe::Mode;
use crate::folders::{self, Folder, TargetLayout};
use crate::imap::session::Session;
use crate::imap::{utf7, ListEntry};
use crate::index::Index;
use crate::log;
use crate::source::Source;
use crate::summary::Summary;
use crate::target::{StoredIds, Target};

/// The messages of the open folder not yet handled and selected (`--since`, …),
/// one page at a time, in order (`--newest-first`: newest first): `not_done` drops
/// the handled ones of a page (asked only when the source's ids are stable); `each`
/// returns false to stop. Returns how many messages were listed.
pub fn pending_pages(
    src: &mut dyn Source,
    opts: &Options,
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
        } else if opts.dedupe == Mode::None {
            // No checkpoints and no dedupe: every run would copy everything again.
            return Err(crate::error::input(format!(
                "{} has no stable message ids (a POP3 server without UIDL, or an IMAP folder without UIDVALIDITY), so only the dedupe keys can tell what was copied; --dedupe none would copy every message again on every run. Use --dedupe exact (the default)",
                src.describe()
            )));
        } else {
            list
        };
        pending.retain(|m| {
            opts.select
                .verdict(m.size, m.internal_date.as_ref())
                .is_none()
        });
        pending.sort_by_key(|m| m.order);
        if opts.select.newest_first {
            pending.reverse();
        }
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
    /// Messages left on the source by the selection, by reason.
    pub left: std::collections::BTreeMap<crate::select::Left, u64>,
    /// Where a large folder can be cut into parts without listing it again: the
    /// order (UID) of every `every`th pending message (a batch), with the
    /// listing page it was on ([`FolderPlan::marks`]).
    pub marks: Vec<(u64, usize)>,
    every: usize,
    /// Pages counted so far.
    pages: usize,
}

impl Tally {
    pub fn new() -> Tally {
        Tally::marking(250)
    }

    /// A tally that marks every `every`th pending message (a batch: a folder of
    /// 100,000 messages in batches of 250 has 400 marks, 6 KB).
    pub fn marking(every: usize) -> Tally {
        Tally {
            every: every.max(1),
            count: 0,
            bytes: 0,
            kept: Some(Vec::new()),
            left: Default::default(),
            marks: Vec::new(),
            pages: 0,
        }
    }

    /// Count a page; keep its listing while the kept total stays within `room`.
    pub fn add(&mut self, page: Vec<Meta>, room: usize) {
        let first = self.count as usize;
        for (i, m) in page.iter().enumerate() {
            if (first + i).is_multiple_of(self.every) {
                self.marks.push((m.order, self.pages));
            }
        }
        self.pages += 1;
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
    map_folders_as(src_list, src_prefix, src_delim, target, opts, None)
}

/// A source folder to copy: (wire name, name shown, target name, special-use role).
pub type Mapped = (Vec<u8>, String, String, Option<String>);

/// How a target that keeps the source's names names a folder path.
pub type NameOf<'a> = dyn Fn(&[String]) -> String + 'a;

/// As [`map_folders_with_roles`]; with `keep_names` (a backup target's way of
/// naming a path, [`crate::target::Target::folder_name`]) a folder keeps its source
/// name (only `--folder-map` renames) and no role.
pub fn map_folders_as(
    src_list: &[ListEntry],
    src_prefix: &str,
    src_delim: Option<char>,
    target: &TargetLayout,
    opts: &Options,
    keep_names: Option<&NameOf<'_>>,
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
            if let Some(name_of) = keep_names {
                // The source's name as shown, its levels split at `/` (as before).
                let path: Vec<String> = f.display().split('/').map(str::to_string).collect();
                let tpath = folders::apply_map(&path, &opts.rules).unwrap_or(path);
                return (raw, f.display(), name_of(&tpath), None);
            }
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

/// Phase 1 of a copy: open and list every mapped folder (page by page), counting
/// what the index does not record as copied. A folder the source refuses fails
/// alone; a count of 0 is listed anyway (a server's "empty" with mail in the
/// folder would otherwise skip it silently).
pub(super) fn plan_folders(
    src: &mut dyn Source,
    tgt: &mut dyn Target,
    mapped: Vec<(Vec<u8>, String, String, Option<String>)>,
    opts: &Options,
    (index, job_id): (&Index, i64),
    summary: &mut Summary,
    delta: &mut Option<super::delta::Delta>,
) -> anyhow::Result<Vec<FolderPlan>> {
    let mut plans = Vec::new();
    let mut kept_total = 0usize;
    let (_, keep_listed) = crate::faults::listing_sizes(LISTING_PAGE, KEEP_LISTED);
    for (raw, display, target_name, role) in mapped {
        let room = keep_listed.saturating_sub(kept_total);
        let planned = src.open(&raw).and_then(|opened| {
            let folder = Listed {
                display: &display,
                target_name: &target_name,
                uidvalidity: opened.uidvalidity,
            };
            let (listed, tally) = plan_one(
                src,
                tgt,
                opts,
                (index, job_id),
                &folder,
                room,
                delta.as_mut(),
            )?;
            Ok((opened, listed, tally))
        });
        let disagreed = summary.anomalies.len() as u64 + summary.anomalies_more;
        super::note_anomalies(src, summary);
        let disagreed = summary.anomalies.len() as u64 + summary.anomalies_more > disagreed;
        let (opened, listed, tally) = match planned {
            Ok(p) => p,
            Err(e) if super::folder_refusal(&e) => {
                summary.folder_failed(&display, &target_name, format!("{e:#}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(d) = delta.as_mut() {
            // What the source left out on purpose (Gmail's labelled All Mail) was
            // listed too, only not handed over.
            let whole = !disagreed && listed + src.left_out() >= opened.count && src.stable_ids();
            let key = (display.as_str(), opened.uidvalidity);
            if let Some(note) = d.listed(index, job_id, key, whole)? {
                summary.note(note);
            }
        }
        kept_total += tally.kept_len();
        for (why, n) in &tally.left {
            summary.left(&opts.select.reason(*why), *n);
        }
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
            marks: tally.marks,
            part: None,
        });
    }
    Ok(plans)
}

/// A folder being planned: its source name, where it goes, its UIDVALIDITY.
pub(super) struct Listed<'a> {
    pub display: &'a str,
    pub target_name: &'a str,
    pub uidvalidity: u32,
}

/// List one open folder's pending messages into a [`Tally`]; says when the
/// folder's UIDVALIDITY changed since the last run. Returns (listed, tally).
fn plan_one(
    src: &mut dyn Source,
    tgt: &mut dyn Target,
    opts: &Options,
    (index, job_id): (&Index, i64),
    f: &Listed<'_>,
    room: usize,
    mut delta: Option<&mut super::delta::Delta>,
) -> anyhow::Result<(u64, Tally)> {
    let (display, uidvalidity) = (f.display, f.uidvalidity);
    if !index.any_done(job_id, display, uidvalidity)? {
        if let Some(old) = index.other_uidvalidity(job_id, display, uidvalidity)? {
            log::warn(format!(
                "{display}: UIDVALIDITY changed ({old} → {uidvalidity}); every message is checked against the target by its dedupe key, nothing is copied twice"
            ));
        }
    }
    let stored = tgt.stored_ids();
    let mut tally = Tally::marking(opts.batch_count);
    let mut left = std::collections::BTreeMap::new();
    let listed = pending_pages(
        src,
        opts,
        |list| {
            tgt.listed(f.target_name, uidvalidity, &list);
            if let Some(d) = delta.as_deref_mut() {
                d.page(index, job_id, (f.display, uidvalidity), &list)?;
            }
            let pending = not_done(index, job_id, f, stored.as_ref(), list)?;
            for m in &pending {
                if let Some(why) = opts.select.verdict(m.size, m.internal_date.as_ref()) {
                    *left.entry(why).or_insert(0u64) += 1;
                }
            }
            Ok(pending)
        },
        |_, page| {
            tally.add(page, room);
            Ok(true)
        },
    )?;
    if opts.select.newest_first {
        if let Some(kept) = tally.kept.as_mut() {
            kept.sort_by_key(|m| std::cmp::Reverse(m.order));
        }
    }
    tally.left = left;
    Ok((listed, tally))
}

/// The messages of a listed page not yet handled: those the index does not
/// record; and, for a target that records what it stores (a backup's manifest,
/// the truth for its files), also those it does not hold, whatever the index says.
pub(super) fn not_done(
    index: &Index,
    job_id: i64,
    f: &Listed<'_>,
    stored: Option<&StoredIds>,
    list: Vec<Meta>,
) -> anyhow::Result<Vec<Meta>> {
    let Some(stored) = stored else {
        return index.not_done(job_id, f.display, f.uidvalidity, list);
    };
    let open: HashSet<String> = index
        .not_done(job_id, f.display, f.uidvalidity, list.clone())?
        .into_iter()
        .map(|m| m.id)
        .collect();
    Ok(list
        .into_iter()
        .filter(|m| open.contains(&m.id) || !stored(f.target_name, f.uidvalidity, &m.id))
        .collect())
}

/// A target that keeps the source's names (a backup) keeps folders apart: two
/// source folders in one of its folders would share message ids.
pub(super) fn apart(mapped: &[(Vec<u8>, String, String, Option<String>)]) -> anyhow::Result<()> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (_, display, target_name, _) in mapped {
        if let Some(other) = names.insert(target_name, display) {
            return Err(crate::error::input(format!(
                "--folder-map puts both {other:?} and {display:?} into backup folder {target_name:?}; a backup keeps folders apart, so map them to different names"
            )));
        }
    }
    Ok(())
}

/// What a dry run reports: per folder, what would be copied where.
pub(super) fn planned(plans: &[FolderPlan], tgt: &dyn Target) -> Vec<crate::summary::Planned> {
    plans
        .iter()
        .map(|p| crate::summary::Planned {
            folder: p.display.clone(),
            target_folder: tgt.planned_name(&p.target_name),
            messages: p.count,
            bytes: p.bytes,
        })
        .collect()
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
                flags_missing: false,
            })
            .collect()
    }

    #[test]
    fn tally_marks_every_batch_of_pending_messages_with_its_page() {
        let mut t = Tally::marking(250);
        // Pages of 300, 0 (all copied already) and 400 pending messages, UIDs from 1.
        for (first, n) in [(1u64, 300u64), (0, 0), (1001, 400)] {
            let page: Vec<Meta> = (first..first + n)
                .map(|uid| Meta {
                    order: uid,
                    ..metas(&[1])[0].clone()
                })
                .collect();
            t.add(page, 0);
        }
        // Pending positions 0, 250 (page 0), 500 (page 2: UID 1001 + 200).
        assert_eq!(t.marks, vec![(1, 0), (251, 0), (1201, 2)]);
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
