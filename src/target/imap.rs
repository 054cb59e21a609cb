//! An IMAP account as a target. A message is stored when the server's tagged OK
//! for its APPEND arrived (that is what makes it durable); MULTIAPPEND sends a
//! batch in one transaction where offered. What the folder holds is what the
//! index knows of its UIDs (still present), plus the messages the index does not
//! know, grouped by Message-ID and size so a source message can find the ones that
//! could be its copy and hash only those. A folder without a valid UIDVALIDITY is
//! used, but its UIDs are neither trusted nor recorded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{
    Connector, CreateError, FlagChange, Held, Opened, Outgoing, Refusal, Sent, Stored, Target,
    Updated,
};
use crate::dedupe::{self, Mode};
use crate::endpoint::Server;
use crate::engine::{fetch_bodies, layout_of, target_layout, Options};
use crate::error::Retry;
use crate::folders::TargetLayout;
use crate::imap::session::{self, Session};
use crate::imap::types::UidSet;
use crate::imap::{utf7, Append, AppendUid, ImapError};
use crate::index::Index;
use crate::log;
use crate::net::NetOptions;
use crate::secret::Credentials;

/// A logged-in target account.
pub struct ImapTarget {
    s: Session,
    server: Server,
    credentials: Credentials,
    net: NetOptions,
    /// Target folders known to exist (listed at the start, or created since:
    /// `true`, empty when created), shared by every connection of the run.
    existing: Arc<Mutex<HashMap<Vec<u8>, bool>>>,
    /// The open folder: decoded name, wire name, UIDVALIDITY.
    name: String,
    raw: Vec<u8>,
    uidvalidity: u32,
    trusted: bool,
    unknown: Unknown,
    anomalies: Vec<(String, String)>,
}

impl ImapTarget {
    /// Connect and log in.
    pub fn connect(
        server: &Server,
        credentials: &Credentials,
        net: &NetOptions,
    ) -> anyhow::Result<ImapTarget> {
        Self::connect_sharing(server, credentials, net, Arc::default())
    }

    fn connect_sharing(
        server: &Server,
        credentials: &Credentials,
        net: &NetOptions,
        existing: Arc<Mutex<HashMap<Vec<u8>, bool>>>,
    ) -> anyhow::Result<ImapTarget> {
        let s = session::open_with(server, credentials, net, "target")?;
        Ok(ImapTarget {
            s,
            server: server.clone(),
            credentials: credentials.clone(),
            net: net.clone(),
            existing,
            name: String::new(),
            raw: Vec::new(),
            uidvalidity: 0,
            trusted: false,
            unknown: Unknown::default(),
            anomalies: Vec::new(),
        })
    }

    fn existing(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, bool>> {
        self.existing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A result of APPEND as the engine takes it: an APPENDUID of another
    /// UIDVALIDITY than the folder's names no message we can find again, so it is
    /// not recorded, and said.
    fn answer(&mut self, result: Result<Option<AppendUid>, ImapError>) -> Stored {
        match result {
            Ok(au) => Stored::Ok(au.and_then(|au| {
                if au.uidvalidity == self.uidvalidity {
                    return Some(au.uid);
                }
                self.anomalies.push((
                    self.name.clone(),
                    format!(
                        "the target's APPENDUID names UIDVALIDITY {} but the folder has {}; its UIDs are not recorded",
                        au.uidvalidity, self.uidvalidity
                    ),
                ));
                None
            })),
            Err(e) if e.per_message() => {
                let words = e.server_words();
                Stored::Refused(Refusal {
                    why: match &e {
                        ImapError::Unsafe(w) => format!("not sent: {w}"),
                        _ => format!("the target refused it: {words}"),
                    },
                    over_quota: (e.code().as_deref() == Some("OVERQUOTA")).then_some(words),
                })
            }
            Err(e) => Stored::Fatal(e.into()),
        }
    }

    /// An invalid keyword must not fail its message: a final refusal of a message
    /// with keywords is tried again with its system flags only.
    fn without_keywords(
        &mut self,
        o: &Outgoing<'_>,
        result: Result<Option<AppendUid>, ImapError>,
    ) -> Result<Option<AppendUid>, ImapError> {
        match result {
            Err(e) if e.retry() == Retry::Final && o.flags.iter().any(|f| !f.starts_with('\\')) => {
                let system: Vec<String> = o
                    .flags
                    .iter()
                    .filter(|f| f.starts_with('\\'))
                    .cloned()
                    .collect();
                log::warn(format!(
                    "{} message {}: target refused the keywords ({}); copying with system flags only",
                    self.name,
                    o.id,
                    e.server_words()
                ));
                self.s.append(&Append {
                    mailbox: &self.raw,
                    flags: &system,
                    internal_date: o.date,
                    body: o.body,
                })
            }
            other => other,
        }
    }
}

impl Target for ImapTarget {
    fn describe(&self) -> String {
        self.server.to_string()
    }

    fn layout(&mut self) -> anyhow::Result<TargetLayout> {
        let list = self.s.list()?;
        let (prefix, delim) = layout_of(&mut self.s, &list)?;
        // A \Noselect placeholder is no folder to copy into: it is created (or fails).
        self.existing().extend(
            list.iter()
                .filter(|e| !e.has_attr("\\Noselect") && !e.has_attr("\\NonExistent"))
                .map(|e| (e.raw.clone(), false)),
        );
        Ok(target_layout(&list, prefix, delim))
    }

    fn updates(&self) -> bool {
        true
    }

    fn update(
        &mut self,
        folder: &str,
        uidvalidity: u32,
        flags: &[FlagChange],
        remove: &[u32],
    ) -> anyhow::Result<Updated> {
        let raw = utf7::encode(folder).into_bytes();
        let sel = self.s.select(&raw, false)?;
        // The folder may be selected again for copying: forget what `open` knew.
        self.name.clear();
        if !sel.uidvalidity_announced || sel.uidvalidity != uidvalidity {
            return Ok(Updated {
                note: Some(format!(
                    "{folder}: the target folder's UIDVALIDITY changed since the copies were made, so their flags and deletions are not carried (the copies' UIDs no longer name them)"
                )),
                ..Updated::default()
            });
        }
        let mut done = Updated::default();
        for ((add, rm), uids) in flag_groups(flags, &sel.permanent_flags) {
            let set = UidSet::from_uids(uids.clone());
            // Removed first: a flag in both (another case) ends up set.
            if !rm.is_empty() {
                self.s.uid_store(&set, false, &rm)?;
            }
            if !add.is_empty() {
                self.s.uid_store(&set, true, &add)?;
            }
            for uid in uids {
                let base = &flags.iter().find(|c| c.uid == uid).expect("grouped").base;
                let mut now: Vec<String> = base
                    .iter()
                    .filter(|f| !rm.iter().any(|r| r.eq_ignore_ascii_case(f)))
                    .cloned()
                    .collect();
                now.extend(add.iter().cloned());
                now.sort();
                now.dedup();
                done.flags.push((uid, now));
            }
        }
        if !remove.is_empty() {
            if !self.s.has_cap("UIDPLUS") {
                done.note = Some(format!(
                    "{folder}: the target does not offer UIDPLUS (UID EXPUNGE), so --sync-deletes removes nothing there (an EXPUNGE would also remove what others marked deleted)"
                ));
                return Ok(done);
            }
            let set = UidSet::from_uids(remove.to_vec());
            self.s.uid_store(&set, true, &["\\Deleted".to_string()])?;
            self.s.uid_expunge(&set)?;
            done.removed = true;
        }
        Ok(done)
    }

    fn append_limit(&self) -> Option<u64> {
        self.s.append_limit()
    }

    fn exists(&self, name: &str) -> bool {
        self.existing().contains_key(utf7::encode(name).as_bytes())
    }

    fn create(&mut self, name: &str, role: Option<&str>) -> Result<(), CreateError> {
        let raw = utf7::encode(name).into_bytes();
        log::info(format!("creating {name}"));
        let created = match self.s.create_subscribed(&raw, role) {
            Ok((created, Ok(()))) => created,
            Ok((created, Err(e))) => {
                log::warn(format!("could not subscribe to {name}: {e}"));
                created
            }
            Err(e) if e.code().as_deref() == Some("OVERQUOTA") => {
                return Err(CreateError::OverQuota(e.server_words()))
            }
            // Only a final refusal of the name (not "try later") leads to another name.
            Err(e) if e.retry() != Retry::Final || !e.per_message() => {
                return Err(CreateError::Other(e.into()))
            }
            Err(e) => return Err(CreateError::Refused(e.server_words())),
        };
        // Another pair of this run may have created it a moment before (this
        // CREATE then found it there): created by the run all the same.
        *self.existing().entry(raw).or_insert(false) |= created;
        Ok(())
    }

    fn open(&mut self, name: &str, index: &Index, dedupe: Mode) -> anyhow::Result<Opened> {
        self.name = name.to_string();
        self.raw = utf7::encode(name).into_bytes();
        let tsel = self.s.select(&self.raw, false)?;
        self.uidvalidity = tsel.uidvalidity;
        // A target folder without a valid UIDVALIDITY may reuse UIDs: what the
        // index knows of its UIDs is not trusted, and none is recorded.
        self.trusted = tsel.uidvalidity_announced;
        if !self.trusted {
            self.anomalies.push((
                name.to_string(),
                "the target gave no valid UIDVALIDITY: its UIDs are neither trusted nor recorded; copies there are found by their keys".to_string(),
            ));
        }
        let known = if self.trusted {
            index.target_keys(&self.describe(), name, tsel.uidvalidity)?
        } else {
            HashMap::new()
        };
        // A folder this run created holds nothing it did not store (what other
        // pairs stored is in their claims): no listing of it is needed.
        let created = self.existing().get(&self.raw).copied().unwrap_or(false);
        self.unknown = if dedupe != Mode::None && !created {
            target_unknown(&mut self.s, &known)?
        } else {
            Unknown::default()
        };
        // Only what is on the target now counts: a copy someone deleted there since
        // the last run must not make its message a "duplicate". Keys are held as
        // fingerprints (16 bytes), so this set stays small for huge folders.
        let known = known
            .iter()
            .filter(|(uid, _)| self.unknown.present.contains(uid))
            .map(|(_, k)| *k)
            .collect();
        Ok(Opened {
            uidvalidity: self.trusted.then_some(tsel.uidvalidity),
            permanent_flags: tsel.permanent_flags,
            known,
        })
    }

    fn may_hold(&self, body: &[u8]) -> bool {
        !self.unknown.candidates(body).is_empty()
    }

    fn check(
        &mut self,
        bodies: &[&[u8]],
        dedupe: Mode,
    ) -> anyhow::Result<Vec<(Option<u32>, String)>> {
        let mut cands = Vec::new();
        let mut expected = 0u64;
        for body in bodies {
            let c = self.unknown.candidates(body);
            expected += body.len() as u64 * c.len() as u64;
            cands.extend(c);
        }
        cands.sort_unstable();
        cands.dedup();
        let mut found = Vec::new();
        fetch_bodies(&mut self.s, &cands, expected, |uid, tbody| {
            found.push((Some(uid), dedupe::key(&tbody, dedupe)));
        })?;
        self.unknown.forget(&cands);
        Ok(found)
    }

    fn store(&mut self, batch: &[Outgoing<'_>]) -> Vec<Stored> {
        let raw = self.raw.clone();
        let appends: Vec<Append> = batch
            .iter()
            .map(|o| Append {
                mailbox: &raw,
                flags: o.flags,
                internal_date: o.date,
                body: o.body,
            })
            .collect();
        // One MULTIAPPEND per batch where offered: the server stores the batch in
        // one transaction. It is all or nothing, so a refusal is sorted out by
        // appending the batch one message at a time.
        let results = if appends.len() > 1 && self.s.has_cap("MULTIAPPEND") {
            match self.s.append_multi(&raw, &appends) {
                Ok(uids) => Ok(uids.into_iter().map(Ok).collect()),
                Err(e) if e.per_message() => self.s.append_many(&appends),
                Err(e) => Err(e),
            }
        } else {
            self.s.append_many(&appends)
        };
        drop(appends);
        match results {
            Ok(results) => batch
                .iter()
                .zip(results)
                .map(|(o, r)| {
                    let r = self.without_keywords(o, r);
                    self.answer(r)
                })
                .collect(),
            Err(e) => vec![Stored::Fatal(e.into())],
        }
    }

    /// What the target stored of the messages appended since the last check:
    /// sizes are compared for all, bytes for those whose size differs or that a
    /// server may change (8-bit header bytes, no final line end). The sizes and
    /// the bytes of the second kind are asked for in one round trip.
    fn check_stored(
        &mut self,
        stored: &[Sent],
        dedupe: Mode,
    ) -> anyhow::Result<Vec<(u32, String)>> {
        if stored.is_empty() || !self.trusted {
            return Ok(Vec::new());
        }
        let mut may: Vec<u32> = stored
            .iter()
            .filter(|s| s.may_change)
            .map(|s| s.uid)
            .collect();
        may.sort_unstable();
        let (mut sizes, mut keys) = (HashMap::new(), HashMap::new());
        self.sizes_and_keys(stored, &may, dedupe, (&mut sizes, &mut keys))?;
        if sizes.len() < stored.len() {
            // Courier shows new messages to FETCH only after a NOOP.
            self.s
                .simple("NOOP", &[crate::imap::client::Part::Text(b"NOOP")])?;
            self.sizes_and_keys(stored, &may, dedupe, (&mut sizes, &mut keys))?;
        }
        if sizes.len() < stored.len() {
            self.anomalies.push((
                self.name.clone(),
                format!(
                    "the target's APPENDUID named {} new UIDs that FETCH does not show",
                    stored.len() - sizes.len()
                ),
            ));
        }
        // A size other than sent: the bytes tell what the target made of it.
        let mut differ: Vec<&Sent> = stored
            .iter()
            .filter(|s| {
                let size = sizes.get(&s.uid).copied();
                let same = size == Some(s.len) || size == Some(s.crlf_len);
                !same && !keys.contains_key(&s.uid)
            })
            .collect();
        differ.sort_unstable_by_key(|s| s.uid);
        let uids: Vec<u32> = differ.iter().map(|s| s.uid).collect();
        let expected = differ.iter().map(|s| s.len).sum();
        fetch_bodies(&mut self.s, &uids, expected, |uid, tbody| {
            keys.insert(uid, dedupe::key(&tbody, dedupe));
        })?;
        Ok(stored
            .iter()
            .filter_map(|s| match keys.remove(&s.uid) {
                Some(k) if k != s.key => Some((s.uid, k)),
                _ => None,
            })
            .collect())
    }

    fn connector(&self) -> Option<Connector> {
        let (server, credentials, net) = (
            self.server.clone(),
            self.credentials.clone(),
            self.net.clone(),
        );
        let existing = self.existing.clone();
        Some(Box::new(move || {
            let t = ImapTarget::connect_sharing(&server, &credentials, &net, existing.clone())?;
            Ok(Box::new(t) as Box<dyn Target>)
        }))
    }

    fn take_anomalies(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.anomalies)
    }

    /// The folder examined read-only, every body fetched and hashed; ids are UIDs.
    fn held(&mut self, name: &str, dedupe: Mode, opts: &Options) -> anyhow::Result<Held> {
        let raw = utf7::encode(name);
        let keys = crate::engine::folder_keys(&mut self.s, raw.as_bytes(), dedupe, opts)?;
        Ok(keys.map(|k| {
            k.into_iter()
                .map(|(uid, key)| (uid.to_string(), key))
                .collect()
        }))
    }

    fn round_trip(&mut self) -> Option<std::time::Duration> {
        crate::engine::noop_time(&mut self.s)
    }

    fn close(&mut self) {
        self.s.logout();
    }
}

impl ImapTarget {
    /// RFC822.SIZE of the `stored` UIDs, and the key of each message of `may`
    /// (sorted), in one round trip ([`crate::imap::client::Client::uid_fetch_many`]).
    fn sizes_and_keys(
        &mut self,
        stored: &[Sent],
        may: &[u32],
        dedupe: Mode,
        (sizes, keys): (&mut HashMap<u32, u64>, &mut HashMap<u32, String>),
    ) -> anyhow::Result<()> {
        let all = UidSet::from_uids(stored.iter().map(|s| s.uid).collect()).to_string();
        let bytes = crate::decide::uid_set(may);
        let mut fetches = vec![(all.as_str(), "(UID RFC822.SIZE)")];
        if !may.is_empty() {
            fetches.push((bytes.as_str(), "(UID BODY.PEEK[])"));
        }
        let expected = stored.iter().filter(|s| s.may_change).map(|s| s.len).sum();
        self.s.expect(expected);
        self.s.uid_fetch_many(&fetches, |f| {
            if let (Some(uid), Some(size)) = (f.uid, f.size) {
                sizes.insert(uid, size);
            }
            if let (Some(uid), Some(body)) = (f.uid, f.body.as_deref()) {
                if may.binary_search(&uid).is_ok() {
                    keys.insert(uid, dedupe::key(body, dedupe));
                }
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// Target messages the index does not know, grouped so a source message can find
/// the ones that could be its copy: by Message-ID, and by size for those without.
#[derive(Default)]
pub(crate) struct Unknown {
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

/// Flag changes grouped by what is sent ((added, removed) as the folder can store
/// them), so one STORE serves every copy with the same change.
fn flag_groups(
    changes: &[FlagChange],
    permanent: &[String],
) -> std::collections::BTreeMap<(Vec<String>, Vec<String>), Vec<u32>> {
    let mut groups: std::collections::BTreeMap<_, Vec<u32>> = Default::default();
    for c in changes {
        let add = crate::decide::append_flags(&c.add, permanent).0;
        let rm: Vec<String> = c
            .remove
            .iter()
            .filter(|f| crate::imap::types::valid_flag(f))
            .cloned()
            .collect();
        if add.is_empty() && rm.is_empty() {
            continue;
        }
        groups.entry((add, rm)).or_default().push(c.uid);
    }
    groups
}
