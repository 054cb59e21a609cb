//! Dedupe across connection pairs that store into one target folder at the same
//! time (a large folder cut into UID-range parts, see `workers`). Before a pair
//! stores a message, it claims the message's key in its target folder; a key
//! another pair holds is waited for, then known (that pair stored it) or free again
//! (its store was refused or failed).
//!
//! Invariants:
//! - a key is claimed by at most one pair at a time, and counts as stored only once
//!   the target confirmed that pair's copy and made it durable: so two identical
//!   source messages in different parts are stored once, and a copy that failed
//!   never makes the other message a "duplicate";
//! - a pair never waits while it holds claims (it settles its own batch first), and
//!   a batch's claims are released when it ends in any way ([`Held`]'s drop), so
//!   no pair waits for ever on another.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};

/// The keys being stored, and those stored, per target folder, for the whole run.
#[derive(Default)]
pub(super) struct Claims {
    folders: Mutex<HashMap<String, Folder>>,
    settled: Condvar,
}

#[derive(Default)]
struct Folder {
    /// Claimed, not yet settled.
    flying: HashSet<u128>,
    /// Stored by some pair in this run, durable on the target.
    stored: HashSet<u128>,
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// Claimed: this pair stores it.
    Mine,
    /// Another pair stored it in this run: a duplicate.
    Stored,
    /// Another pair is storing it: wait ([`Claims::wait`]), then claim again.
    Flying,
}

impl Claims {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Folder>> {
        self.folders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claim the keys `fps` of `folder` for one batch.
    pub fn claim<'a>(
        &'a self,
        folder: &str,
        fps: impl IntoIterator<Item = u128>,
    ) -> (Held<'a>, HashMap<u128, Claim>) {
        let mut all = self.lock();
        let f = all.entry(folder.to_string()).or_default();
        let mut held = Held {
            claims: self,
            folder: folder.to_string(),
            mine: HashSet::new(),
            ok: Vec::new(),
        };
        let mut found = HashMap::new();
        for fp in fps {
            let c = if held.mine.contains(&fp) {
                Claim::Mine
            } else if f.stored.contains(&fp) {
                Claim::Stored
            } else if f.flying.insert(fp) {
                held.mine.insert(fp);
                Claim::Mine
            } else {
                Claim::Flying
            };
            found.insert(fp, c);
        }
        (held, found)
    }

    /// Wait until no pair holds `fp` of `folder`.
    pub fn wait(&self, folder: &str, fp: u128) {
        let mut all = self.lock();
        while all.get(folder).is_some_and(|f| f.flying.contains(&fp)) {
            all = self.settled.wait(all).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn settle(&self, folder: &str, mine: &HashSet<u128>, stored: &[u128]) {
        if mine.is_empty() {
            return;
        }
        let mut all = self.lock();
        if let Some(f) = all.get_mut(folder) {
            for fp in mine {
                f.flying.remove(fp);
            }
            f.stored
                .extend(stored.iter().filter(|fp| mine.contains(fp)));
        }
        drop(all);
        self.settled.notify_all();
    }
}

/// One batch's claims: settled when dropped, as stored for the keys
/// [`Held::durable`] confirmed, as free for the others.
pub(super) struct Held<'a> {
    claims: &'a Claims,
    folder: String,
    mine: HashSet<u128>,
    /// Keys the target answered as stored, not yet durable.
    ok: Vec<u128>,
}

impl Held<'_> {
    /// The target answered this key's message as stored.
    pub fn ok(&mut self, fp: u128) {
        self.ok.push(fp);
    }

    /// What the target answered as stored is durable: settle the batch's claims.
    pub fn durable(&mut self) {
        let mine = std::mem::take(&mut self.mine);
        self.claims.settle(&self.folder, &mine, &self.ok);
        self.ok.clear();
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mine = std::mem::take(&mut self.mine);
        self.claims.settle(&self.folder, &mine, &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_stored_once_and_a_failed_claim_frees_it() {
        let c = Claims::default();
        let (mut a, got) = c.claim("INBOX", [1, 2, 1]);
        assert_eq!((got[&1], got[&2]), (Claim::Mine, Claim::Mine));
        // Another pair, same folder: both keys are in flight; another folder is apart.
        let (_, got) = c.claim("INBOX", [1, 3]);
        assert_eq!((got[&1], got[&3]), (Claim::Flying, Claim::Mine));
        let (_, got) = c.claim("Sent", [1]);
        assert_eq!(got[&1], Claim::Mine);
        // 1 stored and durable, 2 not answered (refused): 1 is known, 2 free again.
        a.ok(1);
        a.durable();
        drop(a);
        let (_, got) = c.claim("INBOX", [1, 2]);
        assert_eq!((got[&1], got[&2]), (Claim::Stored, Claim::Mine));
    }

    #[test]
    fn a_batch_that_ends_early_frees_its_keys_and_wakes_the_waiters() {
        let c = Claims::default();
        let (mut a, _) = c.claim("INBOX", [7]);
        a.ok(7); // answered, never made durable: not stored
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                c.wait("INBOX", 7);
                c.claim("INBOX", [7]).1[&7]
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(a);
            assert_eq!(waiter.join().unwrap(), Claim::Mine);
        });
    }
}
