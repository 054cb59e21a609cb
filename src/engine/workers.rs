//! Folder groups over connection pairs. Folders that land in one target folder
//! form a group, copied by one connection pair in order, so their dedupe sees each
//! other. With `--connections N` (and a source and target that can open more
//! connections), N pairs each take the next group; one pair's stop (over quota, a
//! lost connection) halts the others after their current group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::copy::GroupCtx;
use super::{FolderPlan, Reopen, Stop};
use crate::index::Index;
use crate::source::Source;
use crate::summary::Summary;
use crate::target::{Connector, Target};

/// Copy every planned folder; returns the source ids whose copy the target
/// confirmed (for `--delete-after`).
pub(super) fn run(
    ctx: &GroupCtx<'_>,
    plans: &[FolderPlan],
    src: &mut dyn Source,
    tgt: &mut dyn Target,
    reopen: Option<&Reopen<'_>>,
    index: &mut Index,
    summary: &mut Summary,
) -> anyhow::Result<Vec<String>> {
    let groups = groups(plans);
    let busy = groups
        .iter()
        .filter(|g| g.iter().any(|p| p.count > 0))
        .count();
    let workers = ctx.opts.connections.max(1).min(busy.max(1));
    let mut confirmed = Vec::new();
    let parallel = reopen
        .filter(|_| workers > 1 && !ctx.opts.delete_after)
        .zip(tgt.connector());
    let Some((reopen, connect)) = parallel else {
        for group in &groups {
            match ctx.run(group, src, tgt, index, summary, &mut confirmed) {
                Ok(()) => {}
                Err(Stop::Account(why)) => {
                    summary.stopped = Some(why);
                    break;
                }
                Err(Stop::Error(e)) => return Err(e),
            }
        }
        return Ok(confirmed);
    };
    let pool = Pool {
        ctx,
        queue: Mutex::new(groups.iter()),
        halt: AtomicBool::new(false),
        first_error: Mutex::new(None),
        stopped: Mutex::new(None),
    };
    let index_path = index.path().to_path_buf();
    let extra: Vec<(Summary, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..workers)
            .map(|_| {
                let (pool, connect, index_path) = (&pool, &connect, &index_path);
                scope.spawn(move || pool.worker(reopen, connect, index_path))
            })
            .collect();
        while let Some(group) = pool.next() {
            let r = ctx.run(group, src, tgt, index, summary, &mut confirmed);
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
    queue: Mutex<std::slice::Iter<'g, Vec<&'g FolderPlan>>>,
    halt: AtomicBool,
    first_error: Mutex<Option<anyhow::Error>>,
    stopped: Mutex<Option<String>>,
}

impl<'g> Pool<'_, '_, 'g> {
    fn next(&self) -> Option<&'g Vec<&'g FolderPlan>> {
        if self.halt.load(Ordering::SeqCst) {
            return None;
        }
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).next()
    }

    /// Whether the pair goes on after a group's result.
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

    /// One more connection pair (and index connection), taking groups until none
    /// is left; returns what it did.
    fn worker(
        &self,
        reopen: &Reopen<'_>,
        connect: &Connector,
        index_path: &std::path::Path,
    ) -> (Summary, Vec<String>) {
        let mut part = Summary::default();
        let mut done = Vec::new();
        let opened =
            (|| -> anyhow::Result<_> { Ok((reopen()?, connect()?, Index::open(index_path)?)) })();
        match opened {
            Ok((mut s, mut t, mut i)) => {
                while let Some(group) = self.next() {
                    let r =
                        self.ctx
                            .run(group, s.as_mut(), t.as_mut(), &mut i, &mut part, &mut done);
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
