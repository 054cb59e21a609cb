//! Copying one folder group into a target folder: make sure the target folder
//! exists, open it, then for each fetched batch: check the target for copies the
//! index does not know, decide (pure, `crate::decide::sort_batch`), store, make
//! durable, record. Progress is recorded only after the target made it safe.

use std::collections::HashSet;

use super::claims::{Claim, Claims, Held};
use super::fetch::{self, Checkpoints, Fetched};
use super::record::Rows;
use super::{note_anomalies, note_target_anomalies, FolderPlan, FolderRefused, Options, Stop};
use crate::decide::{self, Action, Decision, Meta};
use crate::dedupe::{self, Mode};
use crate::folders;
use crate::imap::types::ImapDate;
use crate::index::{Index, Outcome, Record};
use crate::log;
use crate::progress::Progress;
use crate::source::Source;
use crate::summary::Summary;
use crate::target::{CreateError, Outgoing, Sent, Stored, Target};

/// What every connection pair of a copy shares.
pub(super) struct GroupCtx<'a> {
    pub opts: &'a Options,
    pub job_id: i64,
    /// The target's identity ([`Target::describe`]).
    pub target_id: String,
    /// The target's hierarchy delimiter.
    pub delim: Option<char>,
    pub progress: &'a Progress,
    /// The account's rate cap, shared by its connection pairs.
    pub cap: Option<crate::rate::Cap>,
    /// Keys being stored by the connection pairs, per target folder.
    pub claims: Claims,
    /// Message bytes the pairs' fetchers may hold at once.
    pub budget: std::sync::Arc<super::fetch::Budget>,
    /// One lock per target folder being made sure of, so two pairs starting
    /// parts of one new folder do not both send CREATE (the second waits, then
    /// finds it there).
    pub creating: Creating,
}

/// Locks by target folder name ([`GroupCtx::creating`]).
#[derive(Default)]
pub(super) struct Creating(
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<std::sync::Mutex<()>>>>,
);

impl Creating {
    fn lock_for(&self, name: &str) -> std::sync::Arc<std::sync::Mutex<()>> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(name.to_string()).or_default().clone()
    }
}

impl GroupCtx<'_> {
    /// Copy one group of folders (all going to one target folder) over one
    /// source and one target connection.
    pub fn run(
        &self,
        group: &[&FolderPlan],
        src: &mut dyn Source,
        tgt: &mut dyn Target,
        index: &mut Index,
        summary: &mut Summary,
        confirmed: &mut Vec<String>,
    ) -> Result<(), Stop> {
        for plan in group {
            match self.folder(plan, src, tgt, index, summary, confirmed) {
                Ok(()) => {}
                // The target refused something about this folder (CREATE, SELECT,
                // EXAMINE, FETCH): the folder fails with its words, the others go on,
                // and the next run tries it again.
                Err(Stop::Error(e)) if super::folder_refusal(&e) => {
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
        tgt: &mut dyn Target,
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
            ctx: self,
            plan,
            summary: &mut *summary,
            index: &mut *index,
            confirmed: &mut *confirmed,
        };
        let r = copy.copy(src, tgt);
        note_anomalies(src, summary);
        note_target_anomalies(tgt, summary);
        r
    }

    /// Make sure the plan's target folder exists; returns the name it has. A name
    /// the target refuses is tried again as [`folders::plain_name`] makes it (the
    /// target's own rules, learnt from its answer), and the folder is listed in the
    /// summary as renamed.
    fn ensure(
        &self,
        plan: &FolderPlan,
        tgt: &mut dyn Target,
        summary: &mut Summary,
    ) -> Result<String, Stop> {
        let plain = folders::plain_name(&plan.target_name, self.delim);
        let lock = self.creating.lock_for(&plan.target_name);
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        if tgt.exists(&plan.target_name) {
            return Ok(plan.target_name.clone());
        }
        // The name as it is, first: only a final refusal of it (not "over
        // quota", not "try later") leads to the plain name.
        let refused = |words: &str| -> anyhow::Error {
            FolderRefused(format!(
                "the target refused to create {}: {words}",
                plan.target_name
            ))
            .into()
        };
        match tgt.create(&plan.target_name, plan.role.as_deref()) {
            Ok(()) => Ok(plan.target_name.clone()),
            Err(CreateError::OverQuota(words)) => Err(Stop::Account(format!(
                "the target {} is over quota ({words}); free space or raise the quota, then run again",
                self.target_id
            ))),
            Err(CreateError::Other(e)) => Err(Stop::Error(e)),
            Err(CreateError::Refused(words)) if plain != plan.target_name => {
                if !tgt.exists(&plain) {
                    tgt.create(&plain, plan.role.as_deref())
                        .map_err(|_| refused(&words))?;
                }
                let why = format!("the target refused {:?}: {words}", plan.target_name);
                summary.renamed(&plan.display, &plain, &why);
                Ok(plain)
            }
            Err(CreateError::Refused(words)) => Err(Stop::Error(refused(&words))),
        }
    }
}

/// One folder being copied.
struct FolderCopy<'a, 'c> {
    ctx: &'a GroupCtx<'c>,
    plan: &'a FolderPlan,
    summary: &'a mut Summary,
    index: &'a mut Index,
    /// Source ids whose copy the target confirmed in this run.
    confirmed: &'a mut Vec<String>,
}

/// What the copy of one folder knows as it goes.
struct State<'h> {
    /// Keys (fingerprints) the target folder holds.
    known: HashSet<u128>,
    /// Keys stored in this run.
    seen: HashSet<u128>,
    uidvalidity: Option<u32>,
    permanent_flags: Vec<String>,
    /// Dates come from the messages' headers (POP3).
    headers_date: bool,
    /// The claims of the batch being stored ([`Claims`]).
    held: Option<Held<'h>>,
    /// Messages stored and recorded whose stored form is not checked yet, with
    /// their source ids ([`FolderCopy::check_stored`]).
    unchecked: Vec<(Sent, String)>,
}

/// What the target stored is checked once this many messages are waiting (and
/// at the end of each folder or part): two round trips for several batches
/// instead of two per batch, at about 150 bytes a message held meanwhile.
const CHECK_EVERY: usize = 1_000;

/// Messages of a batch left for later, and the keys (being stored by another
/// connection pair) they wait for.
type Later = (Fetched, HashSet<u128>);

/// A message of the batch to store, with what is sent.
struct Pending {
    item: usize,
    flags: Vec<String>,
    date: Option<ImapDate>,
}

impl<'a, 'c> FolderCopy<'a, 'c> {
    fn copy(&mut self, src: &mut dyn Source, tgt: &mut dyn Target) -> Result<(), Stop> {
        let (plan, opts) = (self.plan, self.ctx.opts);
        let opened = src.open(&plan.raw)?;
        if opened.uidvalidity != plan.uidvalidity {
            return Err(Stop::Error(crate::error::connect(format!(
                "{}: the source folder's UIDVALIDITY changed during the run; run again",
                plan.display
            ))));
        }
        let headers_date = src.dates_from_headers();
        if headers_date {
            log::info(format!(
                "{}: the source has no INTERNALDATE; each message is dated from its topmost Received: header, else its Date: header, else the target's clock",
                plan.display
            ));
        }
        let checkpoints = Checkpoints {
            index_path: self.index.path().to_path_buf(),
            job_id: self.ctx.job_id,
            stored: tgt.stored_ids(),
            budget: std::sync::Arc::clone(&self.ctx.budget),
        };
        std::thread::scope(|scope| -> Result<(), Stop> {
            // The source fetches the first batch while the target folder is
            // opened: the two sides' round trips overlap.
            let rx = fetch::start(scope, src, plan, opts, checkpoints);
            let t = tgt.open(&plan.target_name, self.index, opts.dedupe)?;
            note_target_anomalies(tgt, self.summary);
            let mut st = State {
                known: t.known,
                seen: HashSet::new(),
                uidvalidity: t.uidvalidity,
                permanent_flags: t.permanent_flags,
                headers_date,
                held: None,
                unchecked: Vec::new(),
            };
            let mut copied = Ok(());
            while let Some(batch) = fetch::next(&rx)? {
                if let Some(cap) = &self.ctx.cap {
                    let bytes = batch.bodies.values().map(|(_, b)| b.len() as u64).sum();
                    cap.admit(bytes, batch.bodies.len() as u64);
                }
                copied = self.batch(tgt, &mut st, batch);
                if copied.is_err() {
                    break;
                }
            }
            // Also when the account stops cleanly (over quota): the connection
            // still works.
            if matches!(copied, Ok(()) | Err(Stop::Account(_))) {
                self.check_stored(tgt, &mut st)?;
            }
            copied
        })
    }

    fn rows(&self, st: &State) -> Rows<'a> {
        let (ctx, plan): (&'a GroupCtx<'c>, &'a FolderPlan) = (self.ctx, self.plan);
        Rows {
            job_id: ctx.job_id,
            target: &ctx.target_id,
            folder: &plan.display,
            uidvalidity: plan.uidvalidity,
            target_folder: &plan.target_name,
            target_uidvalidity: st.uidvalidity,
        }
    }

    /// One fetched batch: check, decide, store, make durable, record. Messages
    /// identical to one another connection pair is storing into the same target
    /// folder wait until it settled, then are decided again.
    fn batch(&mut self, tgt: &mut dyn Target, st: &mut State<'a>, b: Fetched) -> Result<(), Stop> {
        let b = self.select_dated(b);
        let count = b.metas.len() as u64;
        let bytes = b
            .metas
            .iter()
            .filter(|m| b.bodies.contains_key(&m.id) && m.problem.is_none())
            .map(|m| m.size)
            .sum();
        let mut next = Some(b);
        let mut stop = None;
        while let Some(b) = next.take() {
            let (why, later) = self.round(tgt, st, b)?;
            stop = stop.or(why);
            if let Some((later, flying)) = later.filter(|_| stop.is_none()) {
                for fp in flying {
                    self.ctx.claims.wait(&self.plan.target_name, fp);
                }
                next = Some(later);
            }
        }
        self.ctx.progress.advance(count, bytes);
        match stop {
            Some(why) => Err(Stop::Account(why)),
            None => Ok(()),
        }
    }

    /// Check, claim, decide, store the part of `b` no other pair is storing;
    /// returns why the account stops (over quota), and the messages left for
    /// later with the keys they wait for.
    fn round(
        &mut self,
        tgt: &mut dyn Target,
        st: &mut State<'a>,
        b: Fetched,
    ) -> Result<(Option<String>, Option<Later>), Stop> {
        let mut records = self.check_target(tgt, st, &b)?;
        let dedupe = self.ctx.opts.dedupe != Mode::None;
        let (b, later) = self.claim(st, b, dedupe);
        let decisions = decide::sort_batch(dedupe, &keys_of(&b), &mut st.seen, &st.known);
        let (mut pending, mut skipped) = (Vec::new(), Vec::new());
        for (i, (meta, d)) in b.metas.iter().zip(&decisions).enumerate() {
            match d {
                Decision::Fail => records.push(self.fail(st, meta, &b)),
                Decision::Skip => {
                    self.summary.duplicates += 1;
                    let key = &b.bodies[&meta.id].0;
                    records.push(
                        self.rows(st)
                            .done(meta, key, Outcome::Duplicate, None, None),
                    );
                    skipped.push(self.outgoing(st, i, meta, &b));
                }
                Decision::Append => pending.push(self.outgoing(st, i, meta, &b)),
                Decision::With(_) => {}
            }
        }
        let stop = self.store(tgt, st, &b, &decisions, (&pending, skipped), &mut records);
        st.held = None;
        Ok((stop?, later))
    }

    /// Claim the keys of `b` that are new in this target folder ([`Claims`]): those
    /// another pair stored are known; the messages whose key another pair is
    /// storing are taken out of the batch, for later.
    fn claim(&self, st: &mut State<'a>, mut b: Fetched, dedupe: bool) -> (Fetched, Option<Later>) {
        if !dedupe {
            return (b, None);
        }
        let keys = keys_of(&b);
        let fresh = keys
            .iter()
            .flatten()
            .filter(|fp| !st.seen.contains(fp) && !st.known.contains(fp))
            .copied();
        let (held, found) = self.ctx.claims.claim(&self.plan.target_name, fresh);
        st.held = Some(held);
        let mut flying = HashSet::new();
        for (fp, c) in found {
            match c {
                Claim::Stored => drop(st.known.insert(fp)),
                Claim::Flying => drop(flying.insert(fp)),
                Claim::Mine => {}
            }
        }
        if flying.is_empty() {
            return (b, None);
        }
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut b.metas)
            .into_iter()
            .zip(keys)
            .partition(|(_, k)| !k.is_some_and(|fp| flying.contains(&fp)));
        let later: Vec<Meta> = later.into_iter().map(|(m, _)| m).collect();
        b.metas = now.into_iter().map(|(m, _)| m).collect();
        let bodies = later
            .iter()
            .filter_map(|m| b.bodies.remove_entry(&m.id))
            .collect();
        let later = Fetched {
            metas: later,
            bodies,
            refused: Default::default(),
            lease: b.lease.take(),
        };
        (b, Some((later, flying)))
    }

    /// Messages the listing had no date for (POP3, an mbox `From ` line without
    /// one) are judged by `--since` / `--before` once their headers are here: those
    /// outside the window are left on the source (counted, not recorded).
    fn select_dated(&mut self, mut b: Fetched) -> Fetched {
        let sel = &self.ctx.opts.select;
        if sel.since.is_none() && sel.before.is_none() {
            return b;
        }
        let summary = &mut *self.summary;
        let bodies = &b.bodies;
        b.metas.retain(|m| {
            let body = bodies.get(&m.id).filter(|_| m.internal_date.is_none());
            let Some((_, body)) = body else {
                return true;
            };
            match sel.verdict(m.size, dedupe::header_date(body).as_ref()) {
                Some(why) => {
                    summary.left(&sel.reason(why), 1);
                    false
                }
                None => true,
            }
        });
        b
    }

    /// Failed: a problem the listing named, or not returned by the source.
    fn fail(&mut self, st: &State, meta: &Meta, b: &Fetched) -> Record {
        // Not a silent skip: the run is partial and the next run tries again.
        let why = match &meta.problem {
            Some(p) => p.as_str(),
            None => b.refused.get(&meta.id).map_or(
                "the source did not return this message (deleted meanwhile, or the server could not read it)",
                String::as_str,
            ),
        };
        let rows = self.rows(st);
        rows.fail(self.summary, meta, why)
    }

    /// The flags and date a message is stored with.
    fn outgoing(&self, st: &State, item: usize, meta: &Meta, b: &Fetched) -> Pending {
        let (flags, dropped) = decide::append_flags(&meta.flags, &st.permanent_flags);
        if !dropped.is_empty() {
            log::info(format!(
                "{} message {}: flags the target cannot store are left out: {}",
                self.plan.display,
                meta.id,
                dropped.join(" ")
            ));
        }
        let date = meta.internal_date.or_else(|| {
            st.headers_date
                .then(|| dedupe::header_date(&b.bodies[&meta.id].1))
                .flatten()
        });
        Pending { item, flags, date }
    }

    /// Target messages the index does not know that could be copies of this
    /// batch's messages are hashed, all in one go: what is found is known from
    /// now on (and recorded, with a copy the target stored changed kept apart).
    fn check_target(
        &mut self,
        tgt: &mut dyn Target,
        st: &mut State,
        b: &Fetched,
    ) -> Result<Vec<Record>, Stop> {
        let mode = self.ctx.opts.dedupe;
        let mut bodies: Vec<&[u8]> = Vec::new();
        // A form the target may have stored a message in → the key sent.
        let mut variants: std::collections::HashMap<String, &str> = Default::default();
        let (mut asked, mut sent) = (HashSet::new(), HashSet::new());
        for meta in b.metas.iter().filter(|m| m.problem.is_none()) {
            let Some((key, body)) = b.bodies.get(&meta.id) else {
                continue;
            };
            let fp = dedupe::fingerprint(key);
            let (seen, known) = (st.seen.contains(&fp), st.known.contains(&fp));
            if decide::action(mode != Mode::None, seen, known, tgt.may_hold(body))
                != Action::CheckTarget
                || !asked.insert(fp)
            {
                continue;
            }
            bodies.push(body);
            sent.insert(key.as_str());
            for v in dedupe::stored_variants(body, mode) {
                variants.insert(v, key.as_str());
            }
        }
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let found = tgt.check(&bodies, mode)?;
        let rows = self.rows(st);
        let mut records = Vec::new();
        for (uid, k) in &found {
            // A copy the target stored changed (an earlier run's, with the index
            // lost) is its message: known under the key of what was sent, the
            // stored one kept apart. A key one of the batch's messages has as it
            // is counts as that message, not as another's changed copy.
            match variants
                .get(k.as_str())
                .filter(|_| !sent.contains(k.as_str()))
            {
                Some(&sent_key) => {
                    records.extend(rows.known(*uid, sent_key));
                    records.extend(rows.changed(*uid, k));
                    st.known.insert(dedupe::fingerprint(sent_key));
                }
                None => records.extend(rows.known(*uid, k)),
            }
            st.known.insert(dedupe::fingerprint(k));
        }
        Ok(records)
    }

    /// Store the batch's pending messages, make them durable, record the batch
    /// (`records` holds its other rows), then check what the target stored.
    /// Returns why the account must stop cleanly (over quota).
    fn store(
        &mut self,
        tgt: &mut dyn Target,
        st: &mut State,
        b: &Fetched,
        decisions: &[Decision],
        (pending, mut skipped): (&[Pending], Vec<Pending>),
        records: &mut Vec<Record>,
    ) -> Result<Option<String>, Stop> {
        let uidvalidity = self.plan.uidvalidity;
        let results = if pending.is_empty() {
            Vec::new()
        } else {
            tgt.store(&outgoing(b, pending, uidvalidity))
        };
        let rows = self.rows(st);
        let (mut stop, mut fatal) = (None, None);
        // (target UID, source id) of what was stored with a UID, for check_stored.
        let mut stored: Vec<(u32, &str)> = Vec::new();
        for (p, result) in pending.iter().zip(results) {
            let meta = &b.metas[p.item];
            let key = &b.bodies[&meta.id].0;
            let waiters = decisions
                .iter()
                .enumerate()
                .filter(|(_, d)| **d == Decision::With(p.item))
                .map(|(i, _)| (i, &b.metas[i]));
            match result {
                Stored::Ok(uid) => {
                    if let Some(h) = st.held.as_mut() {
                        h.ok(dedupe::fingerprint(key));
                    }
                    crate::faults::after_append();
                    self.summary.copied += 1;
                    self.summary.bytes += meta.size;
                    records.push(rows.done(meta, key, Outcome::Copied, uid, Some(&p.flags)));
                    records.extend(rows.known(uid, key));
                    stored.extend(uid.map(|u| (u, meta.id.as_str())));
                    for (i, w) in waiters {
                        self.summary.duplicates += 1;
                        records.push(rows.done(w, key, Outcome::Duplicate, None, None));
                        skipped.push(self.outgoing(st, i, w, b));
                    }
                }
                Stored::Refused(r) => {
                    st.seen.remove(&dedupe::fingerprint(key));
                    for m in std::iter::once(meta).chain(waiters.map(|(_, w)| w)) {
                        records.push(rows.fail(self.summary, m, &r.why));
                    }
                    if let Some(words) = r.over_quota {
                        stop = Some(self.over_quota(&words));
                    }
                }
                Stored::Fatal(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        // Write, then record: durable on the target before the index says so.
        tgt.duplicates(&outgoing(b, &skipped, uidvalidity))?;
        tgt.durable()?;
        if let Some(h) = st.held.as_mut() {
            h.durable();
        }
        self.index.record(records)?;
        if let Some(e) = fatal {
            return Err(Stop::Error(e));
        }
        // What the target stored, checked once the batch is recorded (a
        // connection lost here loses no record of what was stored), every few
        // batches.
        if stop.is_none() && st.uidvalidity.is_some() {
            st.unchecked.extend(stored.iter().map(|&(uid, id)| {
                let (key, body) = &b.bodies[id];
                (Sent::new(uid, body, key), id.to_string())
            }));
            if st.unchecked.len() >= CHECK_EVERY {
                self.check_stored(tgt, st)?;
            }
        }
        self.confirm(records);
        Ok(stop)
    }

    /// Why the account stops when the target is over quota.
    fn over_quota(&self, words: &str) -> String {
        format!(
            "the target {} is over quota ({words}); free space or raise the quota, then run again",
            self.ctx.target_id
        )
    }

    /// With `--delete-after`, the source messages this batch recorded as done.
    fn confirm(&mut self, records: &[Record]) {
        if self.ctx.opts.delete_after {
            for r in records {
                if let Record::Done { id, .. } = r {
                    self.confirmed.push(id.clone());
                }
            }
        }
    }

    /// A message the target stored other than as sent is counted as "stored
    /// changed by the target" and its stored key recorded.
    fn check_stored(&mut self, tgt: &mut dyn Target, st: &mut State) -> Result<(), Stop> {
        if st.unchecked.is_empty() {
            return Ok(());
        }
        let unchecked = std::mem::take(&mut st.unchecked);
        let (sent, ids): (Vec<Sent>, Vec<String>) = unchecked.into_iter().unzip();
        let rows = self.rows(st);
        let mut records = Vec::new();
        for (uid, stored_key) in tgt.check_stored(&sent, self.ctx.opts.dedupe)? {
            let Some(at) = sent.iter().position(|s| s.uid == uid) else {
                continue;
            };
            self.summary.changed.push(crate::summary::Changed {
                folder: self.plan.display.clone(),
                id: ids[at].clone(),
                target_folder: self.plan.target_name.clone(),
                target_uid: uid,
            });
            records.extend(rows.changed(Some(uid), &stored_key));
        }
        self.index.record(&records)?;
        Ok(())
    }
}

/// The fingerprints of a batch's dedupe keys, `None` for a message without a body
/// to copy (not returned, or a problem).
fn keys_of(b: &Fetched) -> Vec<Option<u128>> {
    b.metas
        .iter()
        .map(|m| match (&m.problem, b.bodies.get(&m.id)) {
            (None, Some((key, _))) => Some(dedupe::fingerprint(key)),
            _ => None,
        })
        .collect()
}

/// What is sent of the batch's pending messages.
fn outgoing<'b>(b: &'b Fetched, pending: &'b [Pending], uidvalidity: u32) -> Vec<Outgoing<'b>> {
    pending
        .iter()
        .map(|p| {
            let m = &b.metas[p.item];
            let (key, body) = &b.bodies[&m.id];
            Outgoing {
                id: &m.id,
                uidvalidity,
                flags: &p.flags,
                listed_flags: &m.flags,
                date: p.date.as_ref(),
                body,
                key,
            }
        })
        .collect()
}
