//! An IMAP account as a source: folders from LIST, read with EXAMINE and BODY.PEEK so
//! nothing on the server changes, not even `\Seen`.
//!
//! What the server announces is checked against what it delivers, and every
//! disagreement is an anomaly (see `Source::take_anomalies`), never a silent skip:
//! - no (or a zero) UIDVALIDITY: the folder's UIDs are not stable, so its
//!   checkpoints are not trusted and every message is checked by its dedupe key;
//! - no EXISTS: the folder is listed anyway (never taken for empty);
//! - SEARCH listing more UIDs than EXISTS: refused (a folder cannot hold more
//!   messages than it has), so a forged range cannot make a run page through
//!   billions of UIDs;
//! - FETCH leaving out UIDs that SEARCH listed, or giving UIDs nobody asked for.

use super::{Opened, Source, Tree};
use crate::decide::Meta;
use crate::engine::{decode_name, fetch_bodies, layout_of, listing, listing_of};
use crate::imap::session::Session;
use crate::imap::types::UidSet;
use crate::imap::ImapError;

/// UIDs a SEARCH may list in a folder whose size the server did not announce.
pub const UNANNOUNCED_MAX: u64 = 1_000_000;

pub struct ImapSource {
    pub session: Session,
    pub name: String,
    /// The open folder's UIDs, for [`Source::listing_page`], as ranges.
    uids: UidSet,
    /// The open folder's name, for anomalies.
    folder: String,
    /// Whether the open folder's UIDs can be trusted between runs.
    stable: bool,
    /// UIDs SEARCH listed and FETCH did not deliver, in the open folder's listing.
    missing: u64,
    first_missing: Option<u32>,
    /// UIDs FETCH delivered that were not asked for.
    unasked: u64,
    anomalies: Vec<(String, String)>,
}

impl ImapSource {
    pub fn new(session: Session, name: String) -> ImapSource {
        ImapSource {
            session,
            name,
            uids: UidSet::default(),
            folder: String::new(),
            stable: true,
            missing: 0,
            first_missing: None,
            unasked: 0,
            anomalies: Vec::new(),
        }
    }

    fn anomaly(&mut self, what: String) {
        self.anomalies.push((self.folder.clone(), what));
    }

    /// Say what the listing of the open folder missed, once per listing.
    fn settle_listing(&mut self) {
        if self.missing > 0 {
            let what = format!(
                "SEARCH listed {} UIDs that FETCH did not return (the first: {}); they are not copied in this run",
                self.missing,
                self.first_missing.unwrap_or(0)
            );
            self.anomaly(what);
        }
        if self.unasked > 0 {
            let what = format!(
                "FETCH returned {} messages that were not asked for; they are ignored",
                self.unasked
            );
            self.anomaly(what);
        }
        self.missing = 0;
        self.first_missing = None;
        self.unasked = 0;
    }
}

impl Source for ImapSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn folders(&mut self) -> anyhow::Result<Tree> {
        let entries = self.session.list()?;
        let (prefix, delim) = layout_of(&mut self.session, &entries)?;
        Ok(Tree {
            entries,
            prefix,
            delim,
        })
    }

    fn open(&mut self, raw: &[u8]) -> anyhow::Result<Opened> {
        self.settle_listing();
        self.uids = UidSet::default();
        self.folder = decode_name(raw);
        let sel = self.session.select(raw, true)?;
        self.stable = sel.uidvalidity_announced;
        if !sel.uidvalidity_announced {
            self.anomaly(
                "the server gave no valid UIDVALIDITY, so its UIDs may be reused: every message is checked against the target by its dedupe key instead of trusting the checkpoints".into(),
            );
        }
        let count = if sel.exists_announced {
            u64::from(sel.exists)
        } else {
            self.anomaly("the server did not say how many messages the folder has (no EXISTS); it is listed anyway".into());
            u64::MAX
        };
        Ok(Opened {
            uidvalidity: if self.stable { sel.uidvalidity } else { 0 },
            count,
        })
    }

    fn listing(&mut self) -> anyhow::Result<Vec<Meta>> {
        Ok(listing(&mut self.session)?)
    }

    fn listing_page(&mut self, page: usize, max: usize) -> anyhow::Result<Option<Vec<Meta>>> {
        let max = max.max(1) as u64;
        if page == 0 {
            self.settle_listing();
            self.uids = self.session.uid_search_all()?;
            // A folder holds at most EXISTS messages; without EXISTS, at most
            // UNANNOUNCED_MAX are believed.
            let (cap, said) = match self.session.exists() {
                Some(e) => (u64::from(e), format!("the folder has {e} messages (EXISTS)")),
                None => (
                    UNANNOUNCED_MAX,
                    format!("the folder announced no EXISTS, and {UNANNOUNCED_MAX} is the most believed then (limit)"),
                ),
            };
            if self.uids.len() > cap {
                let what = format!(
                    "SEARCH listed {} UIDs but {said}; the folder is not copied",
                    self.uids.len()
                );
                self.uids = UidSet::default();
                self.anomaly(what.clone());
                return Err(ImapError::Protocol(format!("{}: {what}", self.folder)).into());
            }
        }
        let wanted = self.uids.window(page as u64 * max, max);
        if wanted.is_empty() {
            self.settle_listing();
            return Ok(None);
        }
        let got = listing_of(&mut self.session, &wanted.to_string())?;
        let mut delivered = Vec::with_capacity(got.len());
        for m in got {
            if wanted.contains(m.order as u32) {
                delivered.push(m);
            } else {
                self.unasked += 1;
            }
        }
        delivered.dedup_by_key(|m| m.order);
        if (delivered.len() as u64) < wanted.len() {
            let have: std::collections::HashSet<u64> = delivered.iter().map(|m| m.order).collect();
            let missing = wanted.iter().filter(|&u| !have.contains(&u64::from(u)));
            let mut n = 0;
            for u in missing {
                n += 1;
                self.first_missing.get_or_insert(u);
            }
            self.missing += n;
        }
        Ok(Some(delivered))
    }

    fn fetch(&mut self, metas: &[Meta], each: &mut dyn FnMut(&str, Vec<u8>)) -> anyhow::Result<()> {
        let mut uids: Vec<u32> = metas.iter().map(|m| m.order as u32).collect();
        uids.sort_unstable();
        fetch_bodies(&mut self.session, &uids, |uid, body| {
            each(&uid.to_string(), body)
        })?;
        Ok(())
    }

    fn stable_ids(&self) -> bool {
        self.stable
    }

    fn take_anomalies(&mut self) -> Vec<(String, String)> {
        self.settle_listing();
        std::mem::take(&mut self.anomalies)
    }

    fn close(&mut self) {
        self.session.logout();
    }
}
