//! An in-memory [`Source`] and [`Target`] (tests only), so the engine's promises
//! are tested fast and exhaustively over small cases: every crash point of a run,
//! then a rerun, leaves the target equal to the source with nothing doubled;
//! identical copies inside a folder are stored once; a message the target refused
//! is taken again by the next run.
//!
//! The target behaves like an IMAP account with UIDs: what it stored stays stored
//! (or, where the test says a crash loses it, is gone), and it knows nothing of the
//! index, so a message stored whose record was lost must be found again by its key
//! (`may_hold` by size, `check` by hashing), never stored twice.

use std::collections::{BTreeMap, HashSet};

use super::{copy_into, Options};
use crate::decide::Meta;
use crate::dedupe::{self, Mode};
use crate::folders::TargetLayout;
use crate::imap::{utf7, ListEntry};
use crate::index::Index;
use crate::source::{Opened as SourceOpened, Source, Tree};
use crate::summary::Summary;
use crate::target::{CreateError, Opened, Outgoing, Refusal, Stored, Target};

/// Folders of messages, by name; a message's id is its position + 1.
#[derive(Clone)]
pub struct MemSource {
    pub folders: Vec<(String, Vec<Vec<u8>>)>,
    open: usize,
}

impl MemSource {
    pub fn new(folders: &[(&str, &[&[u8]])]) -> MemSource {
        let folders = folders
            .iter()
            .map(|(name, msgs)| (name.to_string(), msgs.iter().map(|m| m.to_vec()).collect()))
            .collect();
        MemSource { folders, open: 0 }
    }
}

impl Source for MemSource {
    fn describe(&self) -> String {
        "mem:source".into()
    }

    fn folders(&mut self) -> anyhow::Result<Tree> {
        let entries = self
            .folders
            .iter()
            .map(|(name, _)| ListEntry {
                attrs: Vec::new(),
                delim: Some('/'),
                raw: utf7::encode(name).into_bytes(),
            })
            .collect();
        Ok(Tree {
            entries,
            prefix: String::new(),
            delim: Some('/'),
        })
    }

    fn open(&mut self, raw: &[u8]) -> anyhow::Result<SourceOpened> {
        let name = utf7::decode(raw).map_err(anyhow::Error::msg)?;
        self.open = self.folders.iter().position(|(n, _)| *n == name).unwrap();
        Ok(SourceOpened {
            uidvalidity: 1,
            count: self.folders[self.open].1.len() as u64,
        })
    }

    fn listing(&mut self) -> anyhow::Result<Vec<Meta>> {
        let msgs = &self.folders[self.open].1;
        Ok(msgs
            .iter()
            .enumerate()
            .map(|(i, body)| Meta {
                id: (i + 1).to_string(),
                order: i as u64 + 1,
                size: body.len() as u64,
                flags: vec!["\\Seen".into()],
                internal_date: None,
                problem: None,
                flags_missing: false,
            })
            .collect())
    }

    fn fetch(&mut self, metas: &[Meta], each: &mut dyn FnMut(&str, Vec<u8>)) -> anyhow::Result<()> {
        for m in metas {
            let at: usize = m.id.parse()?;
            each(&m.id, self.folders[self.open].1[at - 1].clone());
        }
        Ok(())
    }

    fn close(&mut self) {}
}

/// Where a run of [`MemTarget`] stops, as a crash would stop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Before the n-th message (from 0, over the whole run) is stored.
    BeforeStore(usize),
    /// After the n-th message is stored, its answer lost.
    AfterStore(usize),
    /// At the n-th `durable`: what was stored since the last one is lost.
    Durable(usize),
    /// After the n-th `durable` made the batch safe, before the index records it.
    AfterDurable(usize),
}

/// A folder: (UID, body, flags) of what it holds.
type Folder = Vec<(u32, Vec<u8>, Vec<String>)>;

/// An account in memory with UIDs (UIDVALIDITY 1).
#[derive(Default)]
pub struct MemTarget {
    pub folders: BTreeMap<String, Folder>,
    /// Bodies the target refuses (a message too big, say).
    pub refuse: HashSet<Vec<u8>>,
    pub crash: Option<Crash>,
    /// Whether the crash happened.
    pub crashed: bool,
    open: String,
    next_uid: u32,
    stores: usize,
    durables: usize,
    /// (folder, UID) stored since the last `durable`.
    pending: Vec<(String, u32)>,
    /// UIDs of the open folder not yet looked at by `check`, by size.
    unchecked: Vec<(u64, u32)>,
}

impl MemTarget {
    /// The bodies of every folder, sorted.
    pub fn bodies(&self) -> BTreeMap<String, Vec<Vec<u8>>> {
        self.folders
            .iter()
            .map(|(name, f)| {
                let mut b: Vec<Vec<u8>> = f.iter().map(|(_, b, _)| b.clone()).collect();
                b.sort();
                (name.clone(), b)
            })
            .collect()
    }

    fn crashed(&mut self) -> anyhow::Error {
        self.crashed = true;
        crate::error::connect(format!("crash {:?}", self.crash))
    }

    fn store_one(&mut self, o: &Outgoing<'_>) -> Stored {
        let n = self.stores;
        self.stores += 1;
        if self.crash == Some(Crash::BeforeStore(n)) {
            return Stored::Fatal(self.crashed());
        }
        if self.refuse.contains(o.body) {
            return Stored::Refused(Refusal {
                why: "the target refused it: [TOOBIG] too big".into(),
                over_quota: None,
            });
        }
        self.next_uid += 1;
        let uid = self.next_uid;
        let folder = self.folders.get_mut(&self.open).unwrap();
        folder.push((uid, o.body.to_vec(), o.flags.to_vec()));
        self.pending.push((self.open.clone(), uid));
        if self.crash == Some(Crash::AfterStore(n)) {
            return Stored::Fatal(self.crashed());
        }
        Stored::Ok(Some(uid))
    }
}

impl Target for MemTarget {
    fn describe(&self) -> String {
        "mem:target".into()
    }

    fn layout(&mut self) -> anyhow::Result<TargetLayout> {
        Ok(TargetLayout {
            delim: Some('/'),
            existing: self
                .folders
                .keys()
                .map(|n| n.split('/').map(str::to_string).collect())
                .collect(),
            ..TargetLayout::default()
        })
    }

    fn exists(&self, name: &str) -> bool {
        self.folders.contains_key(name)
    }

    fn create(&mut self, name: &str, _role: Option<&str>) -> Result<(), CreateError> {
        self.folders.entry(name.to_string()).or_default();
        Ok(())
    }

    fn open(&mut self, name: &str, _index: &Index, _dedupe: Mode) -> anyhow::Result<Opened> {
        self.open = name.to_string();
        let folder = self.folders.entry(name.to_string()).or_default();
        self.unchecked = folder
            .iter()
            .map(|(uid, b, _)| (b.len() as u64, *uid))
            .collect();
        Ok(Opened {
            uidvalidity: Some(1),
            ..Opened::default()
        })
    }

    fn may_hold(&self, body: &[u8]) -> bool {
        self.unchecked.iter().any(|(s, _)| *s == body.len() as u64)
    }

    fn check(
        &mut self,
        bodies: &[&[u8]],
        dedupe: Mode,
    ) -> anyhow::Result<Vec<(Option<u32>, String)>> {
        let sizes: Vec<u64> = bodies.iter().map(|b| b.len() as u64).collect();
        let (hit, rest) = self.unchecked.iter().partition(|(s, _)| sizes.contains(s));
        self.unchecked = rest;
        let folder = &self.folders[&self.open];
        Ok(hit
            .into_iter()
            .filter_map(|(_, uid): (u64, u32)| folder.iter().find(|(u, _, _)| *u == uid))
            .map(|(uid, b, _)| (Some(*uid), dedupe::key(b, dedupe)))
            .collect())
    }

    fn store(&mut self, batch: &[Outgoing<'_>]) -> Vec<Stored> {
        let mut out = Vec::new();
        for o in batch {
            let stored = self.store_one(o);
            let fatal = matches!(stored, Stored::Fatal(_));
            out.push(stored);
            if fatal {
                break;
            }
        }
        out
    }

    fn durable(&mut self) -> anyhow::Result<()> {
        let n = self.durables;
        self.durables += 1;
        if self.crash == Some(Crash::Durable(n)) {
            for (folder, uid) in std::mem::take(&mut self.pending) {
                self.folders
                    .get_mut(&folder)
                    .unwrap()
                    .retain(|(u, _, _)| *u != uid);
            }
            return Err(self.crashed());
        }
        self.pending.clear();
        if self.crash == Some(Crash::AfterDurable(n)) {
            return Err(self.crashed());
        }
        Ok(())
    }

    fn close(&mut self) {}
}

/// One run of the engine from `src` into `tgt` with the index at `state`
/// (opened afresh, as a new process would).
pub fn run(
    src: &MemSource,
    tgt: &mut MemTarget,
    opts: &Options,
    state: &std::path::Path,
) -> (anyhow::Result<()>, Summary) {
    let mut index = Index::open(state).unwrap();
    let mut summary = Summary::default();
    let mut src = src.clone();
    let result = copy_into(&mut src, tgt, opts, None, &mut index, &mut summary);
    (result, summary)
}

/// What the target must hold after a complete copy: each folder's distinct
/// messages, once each, sorted.
pub fn expected(src: &MemSource) -> BTreeMap<String, Vec<Vec<u8>>> {
    src.folders
        .iter()
        .map(|(name, msgs)| {
            let mut b: Vec<Vec<u8>> = msgs.clone();
            b.sort();
            b.dedup();
            (name.clone(), b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"Subject: a\r\n\r\none\r\n";
    const B: &[u8] = b"Subject: b\r\n\r\ntwo\r\n";
    const C: &[u8] = b"Subject: c\r\n\r\nthree, longer\r\n";
    const D: &[u8] = b"Subject: d\r\n\r\nfour\r\n";

    fn opts(batch_count: usize) -> Options {
        Options {
            batch_count,
            ..Options::default()
        }
    }

    fn state() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        (dir, path)
    }

    #[test]
    fn a_run_copies_each_distinct_message_once_and_a_second_run_nothing() {
        // A and its identical copy in INBOX; A again in Archive (another folder).
        let src = MemSource::new(&[("INBOX", &[A, B, A]), ("Archive", &[A, C])]);
        let (_dir, state) = state();
        let mut tgt = MemTarget::default();
        let (r, s) = run(&src, &mut tgt, &opts(2), &state);
        r.unwrap();
        assert_eq!((s.copied, s.duplicates, s.ok()), (4, 1, true));
        assert_eq!(tgt.bodies(), expected(&src));
        let (r, s) = run(&src, &mut tgt, &opts(2), &state);
        r.unwrap();
        assert_eq!((s.copied, s.ok()), (0, true));
        assert_eq!(tgt.bodies(), expected(&src));
    }

    /// Every crash point of every batch size: the first run stops there, the
    /// rerun ends complete with nothing doubled, and a third run copies nothing.
    #[test]
    fn every_crash_point_then_a_rerun_leaves_the_target_equal_to_the_source() {
        // A, B and D have one size: a lost record must be found by hashing.
        let src = MemSource::new(&[("INBOX", &[A, B, D]), ("Archive", &[C])]);
        let want = expected(&src);
        let mut fired = 0;
        let crashes = (0..5).flat_map(|n| {
            [
                Crash::BeforeStore(n),
                Crash::AfterStore(n),
                Crash::Durable(n),
                Crash::AfterDurable(n),
            ]
        });
        for crash in crashes {
            for batch in 1..=4 {
                let case = format!("{crash:?}, batches of {batch}");
                let (_dir, state) = state();
                let mut tgt = MemTarget {
                    crash: Some(crash),
                    ..MemTarget::default()
                };
                let (r, s) = run(&src, &mut tgt, &opts(batch), &state);
                assert!(r.is_err() || !s.ok() || tgt.bodies() == want, "{case}");
                assert_eq!(tgt.crashed, r.is_err(), "{case}: {r:?}");
                fired += usize::from(tgt.crashed);
                tgt.crash = None;
                let (r, s) = run(&src, &mut tgt, &opts(batch), &state);
                assert!(r.is_ok() && s.ok(), "{case}: {r:?}");
                assert_eq!(tgt.bodies(), want, "{case}");
                let (r, s) = run(&src, &mut tgt, &opts(batch), &state);
                assert!(r.is_ok() && s.copied == 0, "{case}: {r:?}");
                assert_eq!(tgt.bodies(), want, "{case}");
            }
        }
        // Each point is reached: 4 stores a run; 4, 3, 2 and 2 batches (INBOX's 3
        // messages in batches of 1 to 4, Archive's one).
        assert_eq!(
            fired,
            4 * 4 * 2 + (4 + 3 + 2 + 2) * 2,
            "crashes that happened"
        );
    }

    /// A crash after the records were lost too (a deleted index): the rerun
    /// still finds every stored message on the target by its key.
    #[test]
    fn with_the_index_lost_a_rerun_stores_nothing_twice() {
        let src = MemSource::new(&[("INBOX", &[A, B, D, A])]);
        for n in 0..4 {
            let (_dir, state) = state();
            let mut tgt = MemTarget {
                crash: Some(Crash::AfterStore(n)),
                ..MemTarget::default()
            };
            let _ = run(&src, &mut tgt, &opts(1), &state);
            tgt.crash = None;
            let (_fresh, fresh) = self::state();
            let (r, s) = run(&src, &mut tgt, &opts(1), &fresh);
            assert!(r.is_ok() && s.ok(), "crash after store {n}: {r:?}");
            assert_eq!(tgt.bodies(), expected(&src), "crash after store {n}");
        }
    }

    #[test]
    fn a_refused_message_fails_alone_and_the_next_run_takes_it() {
        let src = MemSource::new(&[("INBOX", &[A, C, B])]);
        let (_dir, state) = state();
        let mut tgt = MemTarget::default();
        tgt.refuse.insert(C.to_vec());
        let (r, s) = run(&src, &mut tgt, &opts(2), &state);
        r.unwrap();
        assert_eq!((s.copied, s.failed.len()), (2, 1));
        assert!(s.failed[0].reason.contains("TOOBIG"), "{:?}", s.failed[0]);
        assert_eq!(tgt.bodies()["INBOX"], vec![A.to_vec(), B.to_vec()]);
        tgt.refuse.clear();
        let (r, s) = run(&src, &mut tgt, &opts(2), &state);
        r.unwrap();
        assert_eq!((s.copied, s.ok()), (1, true));
        assert_eq!(tgt.bodies(), expected(&src));
    }
}
