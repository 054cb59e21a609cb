//! An IMAP account as a source: folders from LIST, read with EXAMINE and BODY.PEEK so
//! nothing on the server changes, not even `\Seen`.
//!
//! What the server announces is checked against what it delivers, and every
//! disagreement is an anomaly (see `Source::take_anomalies`), never a silent skip:
//! - no (or a zero) UIDVALIDITY: the folder's UIDs are not stable, so its
//!   checkpoints are not trusted and every message is checked by its dedupe key;
//! - no EXISTS: the folder is listed anyway (never taken for empty);
//! - SEARCH listing more UIDs than EXISTS (a folder cannot hold more messages
//!   than it has); the listing then goes on, but stops after a few pages in a
//!   row that FETCH answers with nothing, so a forged range cannot make a run
//!   page through billions of UIDs;
//! - FETCH leaving out UIDs that SEARCH listed (and that still exist: a message
//!   expunged meanwhile by another client is not a disagreement), or giving UIDs
//!   nobody asked for (dropped as they arrive).

use super::{Opened, Source, Tree};
use crate::decide::Meta;
use crate::engine::{decode_name, fetch_bodies, layout_of, listing, listing_first, listing_within};
use crate::imap::session::Session;
use crate::imap::types::UidSet;
use crate::limits::{EMPTY_PAGES, MAX_FOLDER_UIDS};

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
    /// Pages in a row that FETCH answered with nothing.
    empty_pages: u32,
    anomalies: Vec<(String, String)>,
    /// The account's namespaces, from [`Source::folders`].
    namespaces: Option<crate::imap::Namespaces>,
    /// How the account is treated (see [`crate::provider`]); `Auto` until
    /// [`Source::folders`] detected it.
    preset: crate::provider::Preset,
    /// Gmail's All Mail (`\All`), as LIST named it: only messages no other folder
    /// holds are listed there.
    all_mail: std::collections::HashSet<Vec<u8>>,
    /// Whether the open folder is one of `all_mail`.
    unlabelled_only: bool,
    /// Messages of All Mail left out because another folder holds them, in its
    /// latest listing.
    labelled: u64,
    notes: Vec<String>,
    /// Whether [`Source::folders`] ran on this connection.
    listed: bool,
    /// `--gmail-labels keyword` (for a Gmail account).
    labels_as_keywords: bool,
    /// Gmail: the labels whose folders are copied ([`crate::provider::label_of`]).
    copied_labels: std::collections::HashSet<String>,
    /// Messages the listing of the open folder left out on purpose so far.
    left_out: u64,
    /// `--newest-first`: pages from the newest UID down.
    newest_first: bool,
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
            empty_pages: 0,
            anomalies: Vec::new(),
            namespaces: None,
            preset: crate::provider::Preset::Auto,
            all_mail: Default::default(),
            unlabelled_only: false,
            labelled: 0,
            notes: Vec::new(),
            listed: false,
            labels_as_keywords: false,
            copied_labels: Default::default(),
            left_out: 0,
            newest_first: false,
        }
    }

    /// Treat the account as `preset` (`--from-preset`) instead of detecting it,
    /// and Gmail's labels as `labels` says (`--gmail-labels`).
    pub fn with_preset(
        mut self,
        preset: crate::provider::Preset,
        labels: crate::provider::GmailLabels,
    ) -> ImapSource {
        self.preset = preset;
        self.labels_as_keywords = labels == crate::provider::GmailLabels::Keyword;
        self
    }

    /// The folders as a move treats them under the account's preset: views and
    /// non-mail folders left out (and said), Gmail's All Mail kept as an Archive
    /// that lists only messages no other folder holds.
    fn apply_preset(
        &mut self,
        entries: Vec<crate::imap::ListEntry>,
        prefix: &str,
        delim: Option<char>,
    ) -> Vec<crate::imap::ListEntry> {
        use crate::provider::{self, Treatment};
        let path = |e: &crate::imap::ListEntry| {
            crate::folders::split(&decode_name(&e.raw), e.delim.or(delim), prefix)
        };
        let tops: Vec<String> = entries
            .iter()
            .filter_map(|e| path(e).into_iter().next())
            .collect();
        let caps = self.session.capabilities().to_vec();
        let greeting = self.session.greeting_text().to_string();
        self.preset = provider::detect(self.preset, &caps, &greeting, &tops);
        let keywords = self.keywords();
        let mut kept = Vec::with_capacity(entries.len());
        for mut e in entries {
            let mut treatment = provider::treat(self.preset, &path(&e), &e.attrs);
            if keywords {
                treatment = provider::treat_labels_as_keywords(&path(&e), &e.attrs, treatment);
            }
            match treatment {
                Treatment::Copy => {
                    let raw = String::from_utf8_lossy(&e.raw).into_owned();
                    if !e.has_attr("\\Noselect") && !e.has_attr("\\NonExistent") {
                        self.copied_labels
                            .extend(provider::label_of(&raw, &e.attrs));
                    }
                    kept.push(e)
                }
                Treatment::Skip(why) => {
                    if !e.has_attr("\\Noselect") && !e.has_attr("\\NonExistent") {
                        self.notes
                            .push(format!("{}: left out: {why}", decode_name(&e.raw)));
                    }
                }
                Treatment::Unlabelled => {
                    self.notes.push(format!(
                        "{}: only the messages no other folder holds (archived mail), into the target's Archive",
                        decode_name(&e.raw)
                    ));
                    self.all_mail.insert(e.raw.clone());
                    e.attrs.retain(|a| !a.eq_ignore_ascii_case("\\All"));
                    e.attrs.push("\\Archive".into());
                    kept.push(e);
                }
            }
        }
        kept
    }

    /// Of a page of All Mail, the messages no other folder holds (by X-GM-LABELS).
    /// `--newest-first`: list each folder from its newest UID down, page by page.
    pub fn newest_first(mut self, yes: bool) -> ImapSource {
        self.newest_first = yes;
        self
    }

    /// `--gmail-labels keyword` on a Gmail account.
    fn keywords(&self) -> bool {
        self.labels_as_keywords && self.preset == crate::provider::Preset::Gmail
    }

    /// A listed page as Gmail's labels make it (read with one `X-GM-LABELS`
    /// FETCH): All Mail keeps only what no folder copied as a folder holds, and with
    /// `--gmail-labels keyword` every message carries its labels as keywords.
    fn gmail_page(&mut self, mut page: Vec<Meta>) -> anyhow::Result<Vec<Meta>> {
        if page.is_empty() {
            return Ok(page);
        }
        let set = UidSet::from_uids(page.iter().map(|m| m.order as u32).collect());
        let mut labels_of = std::collections::HashMap::new();
        self.session
            .uid_fetch(&set.to_string(), "(UID X-GM-LABELS)", |f| {
                if let (Some(uid), Some(labels)) = (f.uid, f.labels) {
                    labels_of.insert(u64::from(uid), labels);
                }
                Ok(())
            })?;
        let keywords = self.keywords();
        if self.unlabelled_only {
            let copied = &self.copied_labels;
            let elsewhere = |l: &Vec<String>| crate::provider::labelled_elsewhere(l, copied);
            let before = page.len();
            page.retain(|m| !labels_of.get(&m.order).is_some_and(elsewhere));
            self.labelled += (before - page.len()) as u64;
            self.left_out += (before - page.len()) as u64;
        }
        if keywords {
            for m in &mut page {
                let labels = labels_of.get(&m.order).map(Vec::as_slice).unwrap_or(&[]);
                for k in crate::provider::label_keywords(labels) {
                    if !m.flags.contains(&k) {
                        m.flags.push(k);
                    }
                }
            }
        }
        Ok(page)
    }

    fn anomaly(&mut self, what: String) {
        self.anomalies.push((self.folder.clone(), what));
    }

    /// The first listing page of a folder that fits in one, without the UID
    /// SEARCH a larger one needs first (a round trip saved per folder): a folder
    /// of 1 to `max` messages (EXISTS) is listed with `UID FETCH 1:*`, of which
    /// at most `max` are taken (more than EXISTS is said as a disagreement).
    /// `None`: the usual way (EXISTS 0 or not announced, a larger folder, or
    /// FETCH gave fewer messages than EXISTS said, which SEARCH then sorts out:
    /// deleted meanwhile, or unreadable and said).
    fn first_page(&mut self, max: u64) -> anyhow::Result<Option<Option<Vec<Meta>>>> {
        // EXISTS 0 is checked with SEARCH all the same: a server may say its
        // folder is empty while it holds mail.
        let exists = match self.session.exists() {
            Some(e) if e > 0 && u64::from(e) <= max => u64::from(e),
            _ => return Ok(None),
        };
        let (delivered, unasked) = listing_first(&mut self.session, exists, max)?;
        // EXISTS as the server says it now (new mail during the FETCH counts).
        let now = u64::from(self.session.exists().unwrap_or(0));
        if (delivered.len() as u64) < now.min(max) {
            return Ok(None);
        }
        self.unasked += unasked;
        if delivered.len() as u64 > now {
            self.anomaly(format!(
                "FETCH listed {} messages but the folder has {now} messages (EXISTS)",
                delivered.len()
            ));
        }
        self.uids = UidSet::from_uids(delivered.iter().map(|m| m.order as u32).collect());
        Ok(Some(Some(self.handed(delivered)?)))
    }

    /// A listed page as the engine gets it: with Gmail's treatment of labels
    /// where it applies.
    fn handed(&mut self, delivered: Vec<Meta>) -> anyhow::Result<Vec<Meta>> {
        if self.unlabelled_only || self.keywords() {
            return self.gmail_page(delivered);
        }
        Ok(delivered)
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
        self.listed = true;
        self.namespaces = self.session.namespaces()?;
        let (prefix, delim) = layout_of(&mut self.session, &entries)?;
        let entries = self.apply_preset(entries, &prefix, delim);
        Ok(Tree {
            entries,
            prefix,
            delim,
        })
    }

    fn open(&mut self, raw: &[u8]) -> anyhow::Result<Opened> {
        if !self.listed {
            // A connection opened for a parallel copy: the preset's treatment of
            // folders (Gmail's All Mail) must be known before one is read.
            self.folders()?;
        }
        self.settle_listing();
        self.uids = UidSet::default();
        self.folder = decode_name(raw);
        self.unlabelled_only = self.all_mail.contains(raw);
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
            self.empty_pages = 0;
            self.left_out = 0;
            if self.unlabelled_only {
                // Counted once per folder: planning and copying both list it.
                self.labelled = 0;
            }
            if let Some(first) = self.first_page(max)? {
                return Ok(first);
            }
            self.uids = self.session.uid_search_all()?;
            // A folder holds at most EXISTS messages: more UIDs is a disagreement
            // (said), and the listing below stops where FETCH delivers nothing.
            let listed = self.uids.len();
            let said = match self.session.exists() {
                Some(e) if listed > u64::from(e) => Some(format!("the folder has {e} messages (EXISTS)")),
                None if listed > UNANNOUNCED_MAX => Some(format!(
                    "the folder announced no EXISTS, and {UNANNOUNCED_MAX} is the most believed then (limit)"
                )),
                _ => None,
            };
            if let Some(said) = said {
                self.anomaly(format!("SEARCH listed {listed} UIDs but {said}"));
            }
            if listed > MAX_FOLDER_UIDS {
                self.anomaly(format!(
                    "SEARCH listed {listed} UIDs; only the first {MAX_FOLDER_UIDS} are listed (limit)"
                ));
            }
        }
        let total = self.uids.len().min(MAX_FOLDER_UIDS);
        let (skip, take) = page_window(total, page as u64, max, self.newest_first);
        let wanted = self.uids.window(skip, take);
        if wanted.is_empty() {
            self.settle_listing();
            return Ok(None);
        }
        let (delivered, unasked) = listing_within(&mut self.session, &wanted)?;
        self.unasked += unasked;
        if (delivered.len() as u64) < wanted.len() {
            // What FETCH left out may have been expunged meanwhile (another client
            // deleting mail): only what still exists is a disagreement.
            let have: std::collections::HashSet<u64> = delivered.iter().map(|m| m.order).collect();
            let left_out = UidSet::from_uids(
                wanted
                    .iter()
                    .filter(|&u| !have.contains(&u64::from(u)))
                    .collect(),
            );
            let still = self.session.uid_search_within(&left_out)?;
            // Only what was asked counts, and only `left_out` (a page) is walked:
            // the answer may be any set at all.
            let still = UidSet::from_uids(left_out.iter().filter(|&u| still.contains(u)).collect());
            if let Some(first) = still.iter().next() {
                self.first_missing.get_or_insert(first);
            }
            self.missing += still.len();
        }
        if delivered.is_empty() {
            self.empty_pages += 1;
            if self.empty_pages >= EMPTY_PAGES {
                let rest = total.saturating_sub((page as u64 + 1) * max);
                self.anomaly(format!(
                    "FETCH returned nothing for {EMPTY_PAGES} pages in a row of what SEARCH listed; the remaining {rest} UIDs are not listed"
                ));
                self.settle_listing();
                return Ok(None);
            }
        } else {
            self.empty_pages = 0;
        }
        Ok(Some(self.handed(delivered)?))
    }

    fn fetch(&mut self, metas: &[Meta], each: &mut dyn FnMut(&str, Vec<u8>)) -> anyhow::Result<()> {
        let mut uids: Vec<u32> = metas.iter().map(|m| m.order as u32).collect();
        uids.sort_unstable();
        let expected = metas.iter().map(|m| m.size).sum();
        fetch_bodies(&mut self.session, &uids, expected, |uid, body| {
            each(&uid.to_string(), body)
        })?;
        Ok(())
    }

    fn stable_ids(&self) -> bool {
        self.stable
    }

    fn left_out(&self) -> u64 {
        self.left_out
    }

    fn parts(&self) -> bool {
        true
    }

    fn round_trip(&mut self) -> Option<std::time::Duration> {
        crate::engine::noop_time(&mut self.session)
    }

    fn namespaces(&self) -> Option<crate::imap::Namespaces> {
        self.namespaces.clone()
    }

    fn take_notes(&mut self) -> Vec<String> {
        if self.labelled > 0 {
            self.notes.push(format!(
                "{} messages of All Mail are in other folders too and were copied there only",
                std::mem::take(&mut self.labelled)
            ));
        }
        std::mem::take(&mut self.notes)
    }

    fn take_anomalies(&mut self) -> Vec<(String, String)> {
        self.settle_listing();
        std::mem::take(&mut self.anomalies)
    }

    fn close(&mut self) {
        self.session.logout();
    }
}
/// Page `page` of `total` UIDs, `max` a page, as (skip, take) in ascending order:
/// from the lowest UID up, or with `newest_first` from the highest down.
fn page_window(total: u64, page: u64, max: u64, newest_first: bool) -> (u64, u64) {
    let done = page.saturating_mul(max);
    if done >= total {
        return (total, 0);
    }
    let take = max.min(total - done);
    match newest_first {
        false => (done, take),
        true => (total - done - take, take),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_from_either_end() {
        // (total, page, max, newest first) → (skip, take)
        let table = [
            (10, 0, 4, false, (0, 4)),
            (10, 2, 4, false, (8, 2)),
            (10, 3, 4, false, (10, 0)),
            (10, 0, 4, true, (6, 4)),
            (10, 1, 4, true, (2, 4)),
            (10, 2, 4, true, (0, 2)),
            (10, 3, 4, true, (10, 0)),
            (0, 0, 4, true, (0, 0)),
        ];
        for (total, page, max, newest, want) in table {
            assert_eq!(
                page_window(total, page, max, newest),
                want,
                "{total} {page} {max} {newest}"
            );
        }
    }
}
