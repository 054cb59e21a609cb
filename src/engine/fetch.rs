//! Fetching: the source lists and fetches the next batch while the target stores
//! this one. A fetcher thread hands batches over a channel of one, so at most three
//! batches of bodies are in memory (being fetched, waiting, being stored). Dedupe
//! keys are computed on the fetcher thread, off the one that waits on the target.
//!
//! With several connection pairs, their fetchers share one [`Budget`] of body
//! bytes: a fetcher waits before a batch that would go over it, unless its pair
//! holds nothing (so each pair always makes progress, and a message larger than
//! the budget is still copied).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;

use super::plan::{not_done, Listed};
use super::{pending_pages, FolderPlan, Options, Part, KEEP_LISTED, LISTING_PAGE};
use crate::decide::{self, Meta};
use crate::dedupe;
use crate::index::Index;
use crate::source::Source;
use crate::target::StoredIds;

/// One fetched batch: the listing of its messages, the bodies the source returned
/// (id → (dedupe key, bytes)), and those it refused to hand over (id → reason).
pub(super) struct Fetched {
    pub metas: Vec<Meta>,
    pub bodies: HashMap<String, (String, Vec<u8>)>,
    pub refused: HashMap<String, String>,
    /// The bodies' share of the [`Budget`], given back when the batch is dropped.
    pub lease: Option<Lease>,
}

/// Body bytes the fetchers of one account's connection pairs may hold at once.
pub(super) struct Budget {
    held: Mutex<u64>,
    freed: Condvar,
    limit: u64,
}

/// What the account's pairs hold of message bodies at most (besides one batch
/// per pair that holds nothing): with the rest of a run, under 50 MB. 8 MB, not
/// 16: over 30 ms / 100 Mbit four pairs were as fast or faster with it (small
/// corpus 7.5-7.9 s against 8.0-8.2 s) and peaked at 51 MB instead of 56 MB.
pub(super) const BUDGET: u64 = 8 << 20;

impl Default for Budget {
    fn default() -> Self {
        Budget::new(BUDGET)
    }
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            held: Mutex::new(0),
            freed: Condvar::new(),
            limit,
        }
    }

    /// Take `n` bytes for a fetcher whose pair holds `own` bytes now: waits while
    /// they would go over the limit and the pair holds something.
    fn take(self: &Arc<Self>, n: u64, own: &Arc<AtomicU64>) -> Lease {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while *held + n > self.limit && own.load(Ordering::SeqCst) > 0 {
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        *held += n;
        own.fetch_add(n, Ordering::SeqCst);
        Lease {
            budget: Arc::clone(self),
            own: Arc::clone(own),
            n,
        }
    }
}

/// A batch's share of a [`Budget`].
pub(super) struct Lease {
    budget: Arc<Budget>,
    own: Arc<AtomicU64>,
    n: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = self.budget.held.lock().unwrap_or_else(|e| e.into_inner());
        *held -= self.n;
        self.own.fetch_sub(self.n, Ordering::SeqCst);
        drop(held);
        self.budget.freed.notify_all();
    }
}

/// `Ok(None)` marks the end; a closed channel without it is a failure.
type Message = anyhow::Result<Option<Fetched>>;

/// Where the fetcher learns which listed messages are already handled, when the
/// folder is listed again page by page: the index of the run's job.
pub(super) struct Checkpoints {
    pub index_path: PathBuf,
    pub job_id: i64,
    /// What the target records as stored itself ([`crate::target::Target::stored_ids`]).
    pub stored: Option<StoredIds>,
    /// The body bytes shared by the account's pairs.
    pub budget: Arc<Budget>,
}

/// Where a fetcher sends its batches, and its pair's share of the budget.
struct Out {
    tx: SyncSender<Message>,
    budget: Arc<Budget>,
    /// Body bytes this fetcher's batches hold now.
    own: Arc<AtomicU64>,
}

/// Start the fetcher for `plan`'s pending messages (its kept listing, or the
/// folder listed again page by page, minus what the index records).
pub(super) fn start<'scope, 'env: 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    src: &'env mut dyn Source,
    plan: &'env FolderPlan,
    opts: &'env Options,
    checkpoints: Checkpoints,
) -> Receiver<Message> {
    let (tx, rx) = sync_channel::<Message>(1);
    scope.spawn(move || {
        let out = Out {
            tx,
            budget: Arc::clone(&checkpoints.budget),
            own: Arc::default(),
        };
        let finished = match &plan.kept {
            Some(kept) => send(&out, src, kept, opts),
            None => match relist(&out, src, plan, opts, &checkpoints) {
                Ok(all) => all,
                Err(e) => {
                    let _ = out.tx.send(Err(e));
                    false
                }
            },
        };
        if finished {
            let _ = out.tx.send(Ok(None));
        }
    });
    rx
}

/// The next batch; `None` at the end.
pub(super) fn next(rx: &Receiver<Message>) -> anyhow::Result<Option<Fetched>> {
    match rx.recv() {
        Ok(m) => m,
        Err(_) => Err(anyhow::anyhow!("the source reader stopped unexpectedly")),
    }
}

/// List the open folder again, page by page, and send what is pending.
fn relist(
    out: &Out,
    src: &mut dyn Source,
    plan: &FolderPlan,
    opts: &Options,
    c: &Checkpoints,
) -> anyhow::Result<bool> {
    let index = Index::open(&c.index_path)?;
    let listed = Listed {
        display: &plan.display,
        target_name: &plan.target_name,
        uidvalidity: plan.uidvalidity,
    };
    if let Some(part) = &plan.part {
        return relist_part(out, src, part, opts, |list| {
            not_done(&index, c.job_id, &listed, c.stored.as_ref(), list)
        });
    }
    let mut all = true;
    pending_pages(
        src,
        opts,
        |list| not_done(&index, c.job_id, &listed, c.stored.as_ref(), list),
        |src, page| {
            all = send(out, src, &page, opts);
            Ok(all)
        },
    )?;
    Ok(all)
}

/// List a part of the open folder again ([`Part`]): from its first page to the
/// first page that goes beyond it, keeping only its messages not yet handled.
fn relist_part(
    out: &Out,
    src: &mut dyn Source,
    part: &Part,
    opts: &Options,
    mut not_done: impl FnMut(Vec<Meta>) -> anyhow::Result<Vec<Meta>>,
) -> anyhow::Result<bool> {
    let (size, _) = crate::faults::listing_sizes(LISTING_PAGE, KEEP_LISTED);
    let mut page = part.from_page;
    // Page 0 starts a listing over (IMAP: its SEARCH), whichever page is wanted.
    if page > 0 && src.listing_page(0, size)?.is_none() {
        return Ok(true);
    }
    while let Some(list) = src.listing_page(page, size)? {
        page += 1;
        let beyond = list.iter().any(|m| m.order >= part.orders.end);
        let list: Vec<Meta> = list
            .into_iter()
            .filter(|m| part.orders.contains(&m.order))
            .collect();
        // Parts are cut only from sources with stable ids, and not for
        // --newest-first (checked by `workers`); the selection as in
        // `pending_pages`.
        let mut pending = not_done(list)?;
        pending.retain(|m| {
            opts.select
                .verdict(m.size, m.internal_date.as_ref())
                .is_none()
        });
        pending.sort_by_key(|m| m.order);
        if !send(out, src, &pending, opts) {
            return Ok(false);
        }
        if beyond {
            break;
        }
    }
    Ok(true)
}

/// Fetch `metas` in batches and send them; false when the receiver is gone or on
/// error (sent).
fn send(out: &Out, src: &mut dyn Source, metas: &[Meta], opts: &Options) -> bool {
    let sizes: Vec<u64> = metas.iter().map(|m| m.size).collect();
    for range in decide::batches(&sizes, opts.batch_bytes, opts.batch_count) {
        let lease = out.budget.take(sizes[range.clone()].iter().sum(), &out.own);
        let mut bodies = HashMap::new();
        let res = src.fetch(&metas[range.clone()], &mut |id, body| {
            let key = dedupe::key(&body, opts.dedupe);
            bodies.insert(id.to_string(), (key, body));
        });
        let refused: HashMap<String, String> = src.take_refused().into_iter().collect();
        let failed = res.is_err();
        let msg = res.map(|()| {
            Some(Fetched {
                metas: metas[range].to_vec(),
                bodies,
                refused,
                lease: Some(lease),
            })
        });
        if out.tx.send(msg).is_err() || failed {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_waits_over_its_limit_unless_the_pair_holds_nothing() {
        let budget = Arc::new(Budget::new(10));
        let (a, b) = (Arc::<AtomicU64>::default(), Arc::<AtomicU64>::default());
        // A pair that holds nothing may always take a batch, even one too large.
        let first = budget.take(8, &a);
        let big = budget.take(30, &b);
        assert_eq!(*budget.held.lock().unwrap(), 38);
        drop(big);
        // Pair `a` holds 8: 5 more would go over 10, so it waits until a batch
        // of its own (or another pair's) is given back.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| budget.take(5, &a).n);
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiter.is_finished(), "took 5 over the budget");
            drop(first);
            assert_eq!(waiter.join().unwrap(), 5);
        });
        assert_eq!(*budget.held.lock().unwrap(), 0);
        assert_eq!(a.load(Ordering::SeqCst), 0);
    }
}
