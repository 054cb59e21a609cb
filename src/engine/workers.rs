//! Folder groups over connection pairs. Folders that land in one target folder
//! form a group, copied by one connection pair in order, so their dedupe sees each
//! other. With `--connections N` (and a source and target that can open more
//! connections), N pairs each take the next piece of work; one pair's stop (over
//! quota, a lost connection) halts the others after their current piece.
//!
//! A group of one large folder is cut into parts by UID range ([`parts`]), taken
//! by different pairs at once: the pairs storing into one target folder share
//! their dedupe through `super::claims`, so identical messages in different parts
//! are stored once.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::copy::GroupCtx;
use super::{FolderPlan, Part, Reopen, Stop};
use crate::index::Index;
use crate::log;
use crate::source::Source;
use crate::summary::Summary;
use crate::target::{Connector, Target};

/// One piece of work for a connection pair: a folder group, or a part of a
/// large folder.
type Item<'g> = Vec<Cow<'g, FolderPlan>>;

/// A source and a target connection, opened for a pair.
type Pair = (Box<dyn Source>, Box<dyn Target>);

/// Connection pairs opened while the folders are planned: the logins of the
/// extra pairs (a TLS handshake, the login, the folder list: several round trips
/// each) need not wait for the plan. The pairs that start take them; those left
/// unused are closed.
pub(super) struct Spares<'scope> {
    opening: Mutex<Vec<std::thread::ScopedJoinHandle<'scope, anyhow::Result<Pair>>>>,
}

impl<'scope> Spares<'scope> {
    pub fn none() -> Spares<'scope> {
        Spares {
            opening: Mutex::new(Vec::new()),
        }
    }

    /// Start opening `n` pairs, each on a thread of `scope`.
    pub fn open<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        n: usize,
        reopen: &'env Reopen<'env>,
        connect: &'env Connector,
    ) -> Spares<'scope> {
        let opening = (0..n)
            .map(|_| {
                scope.spawn(move || -> anyhow::Result<Pair> {
                    let mut src = reopen()?;
                    // The folders too, which a parallel connection learns before
                    // it reads one.
                    src.folders()?;
                    Ok((src, connect()?))
                })
            })
            .collect();
        Spares {
            opening: Mutex::new(opening),
        }
    }

    /// A pair opened ahead, once its logins are done; `None` when none is left.
    fn take(&self) -> Option<anyhow::Result<Pair>> {
        self.beyond(0)
    }

    /// One of the pairs beyond the first `n` still held, once its logins are
    /// done; `None` when no more than `n` are held.
    fn beyond(&self, n: usize) -> Option<anyhow::Result<Pair>> {
        let handle = {
            let mut opening = self.opening.lock().unwrap_or_else(|e| e.into_inner());
            if opening.len() <= n {
                return None;
            }
            opening.pop()?
        };
        Some(
            handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("opening a connection pair panicked"))),
        )
    }

    /// Log out of the pairs no one took.
    pub fn close(&self) {
        self.keep(0);
    }

    /// Log out of all but `n` pairs (the run needs fewer than were opened).
    fn keep(&self, n: usize) {
        while let Some(pair) = self.beyond(n) {
            if let Ok((mut s, mut t)) = pair {
                t.close();
                s.close();
            }
        }
    }
}

/// How many pairs to open while the folders are planned: `--connections N` less
/// the one open, or without it, over a link of 15 ms or more, as many as the
/// round trip asks for ([`auto_pairs`] before the work is known) less one; none
/// for a dry run, `--delete-after` (one pair), or a source that cannot be read
/// in parts.
pub(super) fn spare_count(
    opts: &super::Options,
    src: &mut dyn Source,
    tgt: &mut dyn Target,
) -> usize {
    if opts.dry_run || opts.delete_after || !src.parts() {
        return 0;
    }
    let pairs = match opts.connections {
        // Chosen by the round trip: ahead of the plan only over a link where a
        // login costs much (15 ms and more); nearby, the pairs the work turns out
        // to need log in quickly after it, and none is opened for nothing.
        0 => match src.round_trip().into_iter().chain(tgt.round_trip()).max() {
            Some(rtt) if rtt >= Duration::from_millis(15) => {
                let most = opts.max_pairs.clamp(1, AUTO_MAX);
                auto_pairs(Some(rtt), &[u64::MAX], opts.batch_count, most)
            }
            _ => 1,
        },
        n => n,
    };
    pairs.saturating_sub(1)
}

/// Copy every planned folder; returns the source ids whose copy the target
/// confirmed (for `--delete-after`). `connect` opens target connections for
/// more pairs, `spares` holds pairs opened ahead.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    ctx: &GroupCtx<'_>,
    plans: &[FolderPlan],
    src: &mut dyn Source,
    tgt: &mut dyn Target,
    (reopen, connect): (Option<&Reopen<'_>>, Option<&Connector>),
    spares: &Spares<'_>,
    index: &mut Index,
    summary: &mut Summary,
) -> anyhow::Result<Vec<String>> {
    let groups = groups(plans);
    let pairs = match ctx.opts.connections {
        0 => choose(&groups, ctx.opts, src, tgt),
        n => n,
    };
    let mut confirmed = Vec::new();
    let parallel = reopen
        .filter(|_| pairs > 1 && !ctx.opts.delete_after)
        .zip(connect);
    let items: Vec<Item<'_>> = match parallel {
        Some(_) => {
            let mut items = split(groups, pairs, ctx.opts, src);
            // The largest first, so no pair is left with a large one at the end.
            items.sort_by_key(|i| std::cmp::Reverse(i.iter().map(|p| p.count).sum::<u64>()));
            items
        }
        None => groups
            .into_iter()
            .map(|g| g.into_iter().map(Cow::Borrowed).collect())
            .collect(),
    };
    let busy = items
        .iter()
        .filter(|i| i.iter().any(|p| p.count > 0))
        .count();
    let workers = pairs.min(busy.max(1));
    spares.keep(if parallel.is_some() { workers - 1 } else { 0 });
    let Some((reopen, connect)) = parallel.filter(|_| workers > 1) else {
        serial(ctx, &items, src, tgt, index, summary, &mut confirmed)?;
        return Ok(confirmed);
    };
    // Bodies of megabytes freed by one pair's threads go back to the system.
    return_large_blocks();
    let pool = Pool {
        ctx,
        queue: Mutex::new(items.iter()),
        halt: AtomicBool::new(false),
        first_error: Mutex::new(None),
        stopped: Mutex::new(None),
    };
    let index_path = index.path().to_path_buf();
    let extra: Vec<(Summary, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..workers)
            .map(|n| {
                let (pool, index_path) = (&pool, &index_path);
                scope.spawn(move || pool.worker(n + 1, (reopen, connect), spares, index_path))
            })
            .collect();
        while let Some(item) = pool.next() {
            let r = pool.take(1, item, src, tgt, index, summary, &mut confirmed);
            if !pool.settle(r) {
                break;
            }
        }
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (part, done) in extra {
        merge(summary, part);
        confirmed.extend(done);
    }
    if let Some(e) = pool
        .first_error
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
    {
        return Err(e);
    }
    summary.stopped = pool.stopped.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(confirmed)
}

/// One pair copies every item in turn; an account's stop ends the run cleanly.
fn serial(
    ctx: &GroupCtx<'_>,
    items: &[Item<'_>],
    src: &mut dyn Source,
    tgt: &mut dyn Target,
    index: &mut Index,
    summary: &mut Summary,
    confirmed: &mut Vec<String>,
) -> anyhow::Result<()> {
    for item in items {
        let group: Vec<&FolderPlan> = item.iter().map(|p| p.as_ref()).collect();
        match ctx.run(&group, src, tgt, index, summary, confirmed) {
            Ok(()) => {}
            Err(Stop::Account(why)) => {
                summary.stopped = Some(why);
                break;
            }
            Err(Stop::Error(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Most connection pairs chosen when `--connections` is not given.
pub(super) const AUTO_MAX: usize = 4;

/// Connection pairs when `--connections` is not given, from the round trip to
/// the slower side (`rtt`), the pending messages of each folder group and the
/// batch size: two over a fast link (under 15 ms: this machine, a LAN, a nearby
/// data centre), where the servers' CPU is soon the floor (measured on loopback:
/// two pairs 30 % faster than one on the small corpus, 15 % on the mixed one,
/// four no faster than two and 50 MB instead of 35); over a slower link `max`,
/// to hide the round trips of each; one when no side is a server (files);
/// never more than the pieces the work can be cut into (a group with messages,
/// a batch of a large folder, see [`parts`]).
pub(super) fn auto_pairs(
    rtt: Option<Duration>,
    pending: &[u64],
    batch: usize,
    max: usize,
) -> usize {
    let link = match rtt {
        Some(t) if t >= Duration::from_millis(15) => max,
        Some(_) => 2,
        None => 1,
    };
    let batch = batch.max(1) as u64;
    let pieces: u64 = pending
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| if n > 2 * batch { n / batch } else { 1 })
        .sum();
    link.min(max).min(pieces.max(1) as usize)
}

/// Measure the round trips and choose the pairs ([`auto_pairs`]); `-v` says why.
fn choose(
    groups: &[Vec<&FolderPlan>],
    opts: &super::Options,
    src: &mut dyn Source,
    tgt: &mut dyn Target,
) -> usize {
    let (batch, most) = (opts.batch_count, opts.max_pairs.clamp(1, AUTO_MAX));
    let rtt = src.round_trip().into_iter().chain(tgt.round_trip()).max();
    let pending: Vec<u64> = groups
        .iter()
        .map(|g| g.iter().map(|p| p.count).sum())
        .collect();
    let pairs = auto_pairs(rtt, &pending, batch, most);
    let link = match rtt {
        Some(t) => format!("a round trip takes {:.1} ms", t.as_secs_f64() * 1000.0),
        None => "a side is on this machine".to_string(),
    };
    let busy = pending.iter().filter(|&&n| n > 0).count();
    log::info(format!(
        "connection pairs: {pairs} ({link}; {busy} folders with messages to copy; 2 under 15 ms, else up to {most}; --connections N sets it)"
    ));
    pairs
}

/// Give message-sized blocks back to the system when they are freed (glibc:
/// `M_MMAP_THRESHOLD` fixed at 128 KiB). Left to itself, glibc raises that
/// threshold to the largest block freed so far, after which each pair's threads
/// keep bodies of megabytes in arenas of their own: with four pairs on the mixed
/// corpus, a peak of 66 MB instead of 52 MB on loopback.
fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only sets a parameter of glibc's allocator; it is safe to
        // call at any time from any thread, and a refusal (0) changes nothing.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// How many parts a folder of `pending` messages is cut into, when the run has
/// `total` pending messages for `pairs` connection pairs and fetches `batch`
/// messages at a time: enough that no part is much more than half a pair's fair
/// share of the run, at most two per pair, each of at least a batch, and none for
/// a folder of two batches or less. Half shares let the pairs, taking the largest
/// piece left each time, end close together (a part costs a few round trips to
/// open: measured over 30 ms, the small corpus's pairs ended 2 s apart with whole
/// shares).
pub(super) fn parts(pending: u64, total: u64, pairs: usize, batch: usize) -> usize {
    let batch = batch.max(1) as u64;
    if pairs < 2 || pending <= 2 * batch {
        return 1;
    }
    let most = 2 * pairs as u64;
    let share = total.max(pending).div_ceil(most);
    let n = pending.div_ceil(share).min(pending / batch).min(most);
    n.max(1) as usize
}

/// The groups as pieces of work: a group of one large folder (see [`parts`]) cut
/// into parts, from a source that can be read in parts.
fn split<'g>(
    groups: Vec<Vec<&'g FolderPlan>>,
    pairs: usize,
    opts: &super::Options,
    src: &mut dyn Source,
) -> Vec<Item<'g>> {
    let (batch, newest_first) = (opts.batch_count, opts.select.newest_first);
    let total: u64 = groups.iter().flatten().map(|p| p.count).sum();
    let mut items = Vec::new();
    for g in groups {
        let n = match g.as_slice() {
            // --newest-first copies in one order, which parts would not keep.
            [one] if src.parts() && !newest_first => parts(one.count, total, pairs, batch),
            _ => 1,
        };
        let cut = match (n, g[0].kept.as_deref()) {
            (1, _) => None,
            (n, Some(kept)) => Some(cut_kept(g[0], kept, n)),
            (n, None) if src.stable_ids() && g[0].marks.len() >= n => cut_marked(g[0], n, batch),
            (_, None) => None,
        };
        match cut {
            Some(parts) => {
                log::info(format!(
                    "{}: {} messages to copy, cut into {} parts by UID over the connection pairs",
                    g[0].display,
                    g[0].count,
                    parts.len()
                ));
                items.extend(parts.into_iter().map(|p| vec![Cow::Owned(p)]));
            }
            None => items.push(g.into_iter().map(Cow::Borrowed).collect()),
        }
    }
    items
}

/// A folder whose listing planning kept, cut into `n` parts of about equal count.
fn cut_kept(plan: &FolderPlan, kept: &[crate::decide::Meta], n: usize) -> Vec<FolderPlan> {
    let size = kept.len().div_ceil(n).max(1);
    let chunks: Vec<_> = kept.chunks(size).collect();
    let n = chunks.len();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let lo = if i == 0 { 0 } else { chunk[0].order };
            let hi = chunks.get(i + 1).map_or(u64::MAX, |c| c[0].order);
            FolderPlan {
                count: chunk.len() as u64,
                bytes: chunk.iter().map(|m| m.size).sum(),
                kept: Some(chunk.to_vec()),
                marks: Vec::new(),
                part: Some(Part {
                    orders: lo..hi,
                    from_page: 0,
                    k: i + 1,
                    n,
                }),
                ..plan.clone()
            }
        })
        .collect()
}

/// A folder listed again as it is copied, cut into `n` parts of about equal
/// count at the marks planning left ([`FolderPlan::marks`], one every `every`
/// messages: a batch), without a round trip.
/// Each part's listing starts a page before its first mark's page, as
/// [`Part::from_page`] says. `None`: the marks are not in ascending order.
fn cut_marked(plan: &FolderPlan, n: usize, every: usize) -> Option<Vec<FolderPlan>> {
    let marks = &plan.marks;
    if marks.windows(2).any(|w| w[0].0 >= w[1].0) {
        return None;
    }
    // The index of the first mark of each part.
    let firsts: Vec<usize> = (0..n).map(|k| k * marks.len() / n).collect();
    let every = every.max(1) as u64;
    let parts = firsts
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let next = firsts.get(i + 1).copied();
            let count = match next {
                Some(end) => (end - at) as u64 * every,
                None => plan.count.saturating_sub(at as u64 * every),
            };
            let lo = if i == 0 { 0 } else { marks[at].0 };
            let hi = next.map_or(u64::MAX, |end| marks[end].0);
            FolderPlan {
                count,
                bytes: plan.bytes * count / plan.count.max(1),
                kept: None,
                marks: Vec::new(),
                part: Some(Part {
                    orders: lo..hi,
                    from_page: if i == 0 {
                        0
                    } else {
                        marks[at].1.saturating_sub(1)
                    },
                    k: i + 1,
                    n,
                }),
                ..plan.clone()
            }
        })
        .collect();
    Some(parts)
}

/// Plans grouped by target folder, in plan order.
fn groups(plans: &[FolderPlan]) -> Vec<Vec<&FolderPlan>> {
    let mut groups: Vec<Vec<&FolderPlan>> = Vec::new();
    for plan in plans {
        match groups
            .iter_mut()
            .find(|g| g[0].target_name == plan.target_name)
        {
            Some(g) => g.push(plan),
            None => groups.push(vec![plan]),
        }
    }
    groups
}

/// What the connection pairs of a parallel copy share.
struct Pool<'a, 'c, 'g> {
    ctx: &'a GroupCtx<'c>,
    queue: Mutex<std::slice::Iter<'g, Item<'g>>>,
    halt: AtomicBool,
    first_error: Mutex<Option<anyhow::Error>>,
    stopped: Mutex<Option<String>>,
}

impl<'g> Pool<'_, '_, 'g> {
    fn next(&self) -> Option<&'g Item<'g>> {
        if self.halt.load(Ordering::SeqCst) {
            return None;
        }
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).next()
    }

    /// Copy one piece of work over connection pair `pair`; a part says with `-v`
    /// what the pair copied of it.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        pair: usize,
        item: &Item<'_>,
        src: &mut dyn Source,
        tgt: &mut dyn Target,
        index: &mut Index,
        summary: &mut Summary,
        done: &mut Vec<String>,
    ) -> Result<(), Stop> {
        let group: Vec<&FolderPlan> = item.iter().map(|p| p.as_ref()).collect();
        let before = summary.copied;
        let r = self.ctx.run(&group, src, tgt, index, summary, done);
        if let [FolderPlan {
            display,
            part: Some(p),
            ..
        }] = group.as_slice()
        {
            let hi = match p.orders.end {
                u64::MAX => "*".to_string(),
                end => (end - 1).to_string(),
            };
            log::info(format!(
                "{display}: part {} of {} (UIDs {}:{hi}): {} copied over connection pair {pair}",
                p.k,
                p.n,
                p.orders.start.max(1),
                summary.copied - before
            ));
        }
        r
    }

    /// Whether the pair goes on after a piece's result.
    fn settle(&self, r: Result<(), Stop>) -> bool {
        match r {
            Ok(()) => true,
            Err(Stop::Account(why)) => {
                self.halt.store(true, Ordering::SeqCst);
                *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                false
            }
            Err(Stop::Error(e)) => {
                self.halt.store(true, Ordering::SeqCst);
                self.first_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
                false
            }
        }
    }

    /// One more connection pair (number `pair`, and an index connection), taking
    /// pieces of work until none is left; returns what it did.
    fn worker(
        &self,
        pair: usize,
        (reopen, connect): (&Reopen<'_>, &Connector),
        spares: &Spares<'_>,
        index_path: &std::path::Path,
    ) -> (Summary, Vec<String>) {
        let mut part = Summary::default();
        let mut done = Vec::new();
        let opened = (|| -> anyhow::Result<_> {
            let (s, t) = match spares.take() {
                Some(pair) => pair?,
                None => (reopen()?, connect()?),
            };
            Ok((s, t, Index::open(index_path)?))
        })();
        match opened {
            Ok((mut s, mut t, mut i)) => {
                while let Some(item) = self.next() {
                    let r = self.take(
                        pair,
                        item,
                        s.as_mut(),
                        t.as_mut(),
                        &mut i,
                        &mut part,
                        &mut done,
                    );
                    if !self.settle(r) {
                        break;
                    }
                }
                t.close();
                s.close();
            }
            Err(e) => {
                self.settle(Err(Stop::Error(e)));
            }
        }
        (part, done)
    }
}

/// Add what another connection pair did to the run's summary.
fn merge(summary: &mut Summary, part: Summary) {
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
    for (why, n) in part.left {
        summary.left(&why, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pairs_table() {
        let ms = |n| Some(Duration::from_millis(n));
        // (round trip, pending per group, batch, max) -> pairs
        type Row = (Option<Duration>, &'static [u64], usize, usize, usize);
        let table: &[Row] = &[
            // No server on either side (files): one pair, whatever the work.
            (None, &[10_000, 5_000], 250, 4, 1),
            // This machine, a LAN, a nearby data centre: two.
            (ms(0), &[10_000, 5_000], 250, 4, 2),
            (ms(4), &[10_000], 250, 4, 2),
            (ms(14), &[100, 100, 100], 250, 4, 2),
            // ... within the account's share of a batch.
            (ms(0), &[10_000], 250, 1, 1),
            // Over a WAN: up to the maximum ...
            (ms(15), &[10_000], 250, 4, 4),
            (ms(80), &[300, 300, 300, 300, 300], 250, 4, 4),
            (ms(30), &[10_000], 250, 8, 8),
            // ... but no more than the pieces of work: one small folder, or a
            // folder of two batches and one with nothing to copy.
            (ms(30), &[100], 250, 4, 1),
            (ms(30), &[500, 0], 250, 4, 1),
            (ms(30), &[600, 10], 250, 4, 3),
            (ms(30), &[], 250, 4, 1),
        ];
        for &(rtt, pending, batch, max, want) in table {
            assert_eq!(
                auto_pairs(rtt, pending, batch, max),
                want,
                "{rtt:?} {pending:?} {batch} {max}"
            );
        }
    }

    #[test]
    fn marked_folders_are_cut_at_marks_without_gaps_or_overlaps() {
        let plan = |count: u64, marks: Vec<(u64, usize)>| FolderPlan {
            raw: b"INBOX".to_vec(),
            display: "INBOX".into(),
            target_name: "INBOX".into(),
            role: None,
            uidvalidity: 7,
            count,
            bytes: count * 10,
            kept: None,
            marks,
            part: None,
        };
        // 1,000 pending messages, UIDs 1..=1000 on pages of 2,000 (one page).
        let one_page: Vec<(u64, usize)> = (0..4).map(|k| (1 + k * 250, 0)).collect();
        let parts = cut_marked(&plan(1000, one_page), 2, 250).expect("ascending");
        let got: Vec<_> = parts
            .iter()
            .map(|p| (p.part.clone().unwrap(), p.count, p.bytes))
            .collect();
        let part = |orders: std::ops::Range<u64>, from_page, k| Part {
            orders,
            from_page,
            k,
            n: 2,
        };
        assert_eq!(
            got,
            vec![
                (part(0..501, 0, 1), 500, 5000),
                (part(501..u64::MAX, 0, 2), 500, 5000),
            ]
        );
        // Marks on later pages: a part's listing starts a page before its first mark.
        let pages = vec![(10, 0), (300, 0), (4000, 2), (4300, 3), (9000, 5)];
        let parts = cut_marked(&plan(1200, pages), 3, 250).expect("ascending");
        let got: Vec<_> = parts
            .iter()
            .map(|p| {
                let q = p.part.clone().unwrap();
                (q.orders, q.from_page, p.count)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0..300, 0, 250),
                (300..4300, 0, 500),
                (4300..u64::MAX, 2, 450)
            ]
        );
        // Marks out of order (a listing not in UID order): not cut this way.
        assert!(cut_marked(&plan(500, vec![(9, 0), (3, 0)]), 2, 250).is_none());
    }

    #[test]
    fn parts_table() {
        // (pending in the folder, pending in the run, pairs, batch) -> parts
        for (pending, total, pairs, batch, want) in [
            // One pair, or a folder of two batches or less: never cut.
            (10_000, 10_000, 1, 250, 1),
            (500, 500, 4, 250, 1),
            // One big folder alone: two parts per pair, each of a batch at least.
            (10_000, 10_000, 4, 250, 8),
            (600, 600, 4, 250, 2),
            (900, 900, 4, 20, 8),
            (900, 900, 2, 20, 4),
            // A big folder among small ones: still two parts per pair.
            (10_000, 10_500, 4, 250, 8),
            // Folders of an eighth of the run keep four pairs busy uncut ...
            (1_000, 10_000, 4, 250, 1),
            // ... a bit more than that is cut in two.
            (1_600, 10_000, 4, 250, 2),
            // A folder of half the run: four parts, the other pairs copy the rest.
            (5_000, 10_000, 4, 250, 4),
            (5_000, 10_000, 8, 250, 8),
        ] {
            assert_eq!(
                parts(pending, total, pairs, batch),
                want,
                "{pending} of {total}, {pairs} pairs, batches of {batch}"
            );
        }
    }
}
