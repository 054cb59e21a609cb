//! A backup directory as a target: one mboxrd file per folder (or every folder in
//! one file) and the line manifest `crate::backup` defines, written through the
//! copy engine like any other target.
//!
//! Invariants (write, then record):
//! - a batch's messages are appended to the folder's file and the file is synced
//!   before their manifest lines are written and synced ([`Target::durable`]); the
//!   engine writes the index only after that;
//! - the manifest is the truth for what a file holds: on start, a torn last manifest
//!   line is dropped, and before a folder is written, a file longer than its last
//!   manifest entry loses the unfinished tail an interrupted run left; so a resumed
//!   backup never holds a torn or doubled message. A message the manifest records
//!   is never written again, whatever the index says;
//! - the backup keeps the source's folder names (only `--folder-map` renames), and
//!   an identical copy inside a folder is a manifest line with `duplicate: true` and
//!   no bytes; new flags of messages it holds are later lines of their own.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CreateError, Held, Opened, Outgoing, Stored, StoredIds, Target};
use crate::backup::{self, Entry, Layout};
use crate::decide::Meta;
use crate::dedupe::{self, Mode};
use crate::engine::Options;
use crate::error::{input, local};
use crate::folders::TargetLayout;
use crate::imap::utf7;
use crate::index::Index;
use crate::source::mbox::{MboxSource, ReadOptions};
use crate::source::{each_message, Source};

/// The stored messages of a backup: [`backup::stored`] fingerprint → where its
/// latest manifest line starts, and the fingerprint of the flags that line records.
type Done = HashMap<u128, (u64, u128)>;

/// A backup being written.
pub struct BackupTarget {
    out: PathBuf,
    layout: Layout,
    /// The manifest existed when the run started: files may be repaired.
    in_backup: bool,
    done: Arc<Done>,
    /// Keys (fingerprints) stored per folder, where each file's data ends.
    keys: HashMap<String, HashSet<u128>>,
    ends: HashMap<String, u64>,
    /// (manifest line, new flags) of messages backed up before whose flags changed.
    changed: Vec<(u64, Vec<String>)>,
    manifest: Option<File>,
    /// The open folder: its name, file, the file open for appending, where it ends.
    folder: String,
    file: String,
    mbox: Option<File>,
    offset: u64,
    /// Entries written but not yet made durable.
    entries: Vec<Entry>,
    /// The read side: the backup as `restore` reads it (opened at the first
    /// [`Target::held`]).
    reader: Option<Box<MboxSource>>,
}

impl BackupTarget {
    /// The backup at `--out PATH` (a directory, or one `.mbox` file). Unless
    /// `dry_run`, its directory is made and a torn last manifest line cut off.
    pub fn new(out: &Path, dry_run: bool) -> anyhow::Result<BackupTarget> {
        let layout = Layout::for_out(out);
        if !dry_run {
            backup::private_dirs(&layout.base)
                .map_err(|e| input(format!("cannot create {}: {e}", layout.base.display())))?;
        }
        let in_backup = layout.manifest.exists();
        // What the manifest says, in compact form (fingerprints, 16 bytes a message).
        let mut done = Done::new();
        let mut keys: HashMap<String, HashSet<u128>> = HashMap::new();
        let mut ends = HashMap::new();
        backup::each_manifest_line(&layout.manifest, !dry_run, |at, e| {
            let flags = backup::flags_fingerprint(&e.flags);
            done.insert(backup::stored(&e.folder, e.uidvalidity, &e.id), (at, flags));
            backup::note_end(&mut ends, &e);
            keys.entry(e.folder)
                .or_default()
                .insert(dedupe::fingerprint(&e.key));
        })?;
        Ok(BackupTarget {
            out: out.to_path_buf(),
            layout,
            in_backup,
            done: Arc::new(done),
            keys,
            ends,
            changed: Vec::new(),
            manifest: None,
            folder: String::new(),
            file: String::new(),
            mbox: None,
            offset: 0,
            entries: Vec::new(),
            reader: None,
        })
    }

    fn holds(&self, o: &Outgoing<'_>) -> bool {
        self.done
            .contains_key(&backup::stored(&self.folder, o.uidvalidity, o.id))
    }

    /// The manifest entry of a message of the open folder.
    fn entry(&self, o: &Outgoing<'_>, length: u64, duplicate: bool) -> Entry {
        Entry {
            folder: self.folder.clone(),
            file: self.file.clone(),
            offset: self.offset,
            length,
            size: o.body.len() as u64,
            sha256: dedupe::sha256_hex(o.body),
            flags: backup::kept_flags(o.listed_flags),
            internaldate: o.date.map(|d| d.to_string()),
            uidvalidity: o.uidvalidity,
            id: o.id.to_string(),
            key: o.key.to_string(),
            duplicate,
        }
    }

    /// Append one message to the open folder's file.
    fn write(&mut self, o: &Outgoing<'_>) -> anyhow::Result<()> {
        let path = self.layout.base.join(&self.file);
        let mut buf = Vec::with_capacity(o.body.len() + 128);
        crate::mbox::write_message(
            &mut buf,
            &backup::sender_of(o.body),
            o.date.map(|d| d.datetime()),
            o.body,
        )?;
        let mbox = self.mbox.as_mut().expect("a folder is open");
        mbox.write_all(&buf)
            .map_err(|e| local(format!("cannot write {}: {e}", path.display())))?;
        let e = self.entry(o, buf.len() as u64, false);
        self.offset += buf.len() as u64;
        self.entries.push(e);
        Ok(())
    }
}

impl Target for BackupTarget {
    fn describe(&self) -> String {
        format!("mbox:{}", self.out.display())
    }

    fn layout(&mut self) -> anyhow::Result<TargetLayout> {
        Ok(TargetLayout {
            delim: Some('/'),
            ..TargetLayout::default()
        })
    }

    fn keeps_names(&self) -> bool {
        true
    }

    /// The manifest names a folder as the source does, levels joined with `/`
    /// (its file name is made safe by [`Layout::file_for`]).
    fn folder_name(&self, path: &[String], _layout: &TargetLayout) -> String {
        path.join("/")
    }

    /// Every folder's file is made ready (created, repaired) by [`Target::create`].
    fn exists(&self, _name: &str) -> bool {
        false
    }

    fn create(&mut self, name: &str, _role: Option<&str>) -> Result<(), CreateError> {
        let file = self.layout.file_for(name);
        let path = self.layout.base.join(&file);
        let ready = (|| -> anyhow::Result<()> {
            if let Some(dir) = path.parent() {
                backup::private_dirs(dir)
                    .map_err(|e| local(format!("cannot create {}: {e}", dir.display())))?;
            }
            if self.layout.single.is_none() {
                backup::stays_inside(&self.layout.base, &path)?;
            }
            let mbox = open_rw(&path)?;
            backup::private(&path);
            let end = self.ends.get(&file).copied().unwrap_or(0);
            backup::repair_file(&mbox, &path, end, self.in_backup)
        })();
        ready.map_err(CreateError::Other)
    }

    fn open(&mut self, name: &str, _index: &Index, _dedupe: Mode) -> anyhow::Result<Opened> {
        if self.manifest.is_none() {
            let m = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.layout.manifest)
                .map_err(|e| {
                    input(format!(
                        "cannot write {}: {e}",
                        self.layout.manifest.display()
                    ))
                })?;
            backup::private(&self.layout.manifest);
            self.manifest = Some(m);
        }
        self.folder = name.to_string();
        self.file = self.layout.file_for(name);
        let path = self.layout.base.join(&self.file);
        let mut mbox = open_rw(&path)?;
        self.offset = mbox
            .seek(SeekFrom::End(0))
            .map_err(|e| local(format!("cannot read {}: {e}", path.display())))?;
        self.mbox = Some(mbox);
        Ok(Opened {
            uidvalidity: None,
            permanent_flags: Vec::new(),
            known: self.keys.get(name).cloned().unwrap_or_default(),
        })
    }

    fn may_hold(&self, _body: &[u8]) -> bool {
        false
    }

    fn check(
        &mut self,
        _bodies: &[&[u8]],
        _dedupe: Mode,
    ) -> anyhow::Result<Vec<(Option<u32>, String)>> {
        Ok(Vec::new())
    }

    fn store(&mut self, batch: &[Outgoing<'_>]) -> Vec<Stored> {
        let mut out = Vec::with_capacity(batch.len());
        for o in batch {
            // Recorded in the manifest already (the index had lost it): not again.
            if self.holds(o) {
                out.push(Stored::Ok(None));
                continue;
            }
            match self.write(o) {
                Ok(()) => out.push(Stored::Ok(None)),
                Err(e) => {
                    out.push(Stored::Fatal(e));
                    break;
                }
            }
        }
        out
    }

    fn duplicates(&mut self, batch: &[Outgoing<'_>]) -> anyhow::Result<()> {
        for o in batch {
            if !self.holds(o) {
                let e = self.entry(o, 0, true);
                self.entries.push(e);
            }
        }
        Ok(())
    }

    /// Data synced before the manifest, the manifest before the index.
    fn durable(&mut self) -> anyhow::Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let path = self.layout.base.join(&self.file);
        if let Some(mbox) = &self.mbox {
            mbox.sync_data()
                .map_err(|e| local(format!("cannot write {}: {e}", path.display())))?;
        }
        let mut lines = Vec::new();
        for e in self.entries.drain(..) {
            serde_json::to_writer(&mut lines, &e)?;
            lines.push(b'\n');
        }
        let manifest = self.manifest.as_mut().expect("opened with the folder");
        manifest
            .write_all(&lines)
            .and_then(|()| manifest.sync_data())
            .map_err(|e| {
                local(format!(
                    "cannot write {}: {e}",
                    self.layout.manifest.display()
                ))
            })?;
        self.ends.insert(self.file.clone(), self.offset);
        Ok(())
    }

    fn stored_ids(&self) -> Option<StoredIds> {
        let done = self.done.clone();
        Some(Arc::new(move |folder: &str, uidvalidity: u32, id: &str| {
            done.contains_key(&backup::stored(folder, uidvalidity, id))
        }))
    }

    /// Messages stored before whose flags changed at the source.
    fn listed(&mut self, folder: &str, uidvalidity: u32, page: &[Meta]) {
        for m in page {
            if let Some((at, was)) = self.done.get(&backup::stored(folder, uidvalidity, &m.id)) {
                let now = backup::kept_flags(&m.flags);
                if backup::flags_fingerprint(&now) != *was {
                    self.changed.push((*at, now));
                }
            }
        }
    }

    fn planned(&mut self, dry_run: bool) -> anyhow::Result<Option<String>> {
        if self.changed.is_empty() {
            return Ok(None);
        }
        if !dry_run {
            backup::record_flag_changes(&self.layout, &self.changed)?;
        }
        let verb = if dry_run { "would record" } else { "recorded" };
        Ok(Some(format!(
            "{} messages backed up before have new flags at the source; the manifest {verb} them",
            self.changed.len()
        )))
    }

    fn planned_name(&self, folder: &str) -> String {
        self.layout.file_for(folder)
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        backup::write_summary_manifest(&self.layout)
    }

    /// Read as `restore` reads a backup (its files checked against the manifest,
    /// matched by content where they differ); ids are positions in the file.
    fn held(&mut self, name: &str, dedupe: Mode, opts: &Options) -> anyhow::Result<Held> {
        if self.reader.is_none() {
            let reader = MboxSource::open_with(&self.out, ReadOptions::default())?;
            self.reader = Some(Box::new(reader));
        }
        let reader = self.reader.as_deref_mut().expect("opened above");
        let raw = utf7::encode(name).into_bytes();
        if !reader.folders()?.entries.iter().any(|e| e.raw == raw) {
            return Ok(None);
        }
        let mut out = Vec::new();
        each_message(reader, &raw, opts, &mut |id, body| {
            out.push((id.to_string(), dedupe::key(&body, dedupe)))
        })?;
        Ok(Some(out))
    }

    fn close(&mut self) {
        self.mbox = None;
        if let Some(mut r) = self.reader.take() {
            r.close();
        }
    }
}

/// A folder's file, opened to read its length and append (created if missing).
fn open_rw(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| input(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Options;
    use crate::imap::ListEntry;
    use crate::source::{Opened as SourceOpened, Source, Tree};

    /// An in-memory INBOX whose `fetch` leaves out the ids in `withheld`.
    struct Mem {
        msgs: Vec<(&'static str, &'static [u8])>,
        withheld: Vec<&'static str>,
    }

    impl Source for Mem {
        fn describe(&self) -> String {
            "mem:".into()
        }
        fn folders(&mut self) -> anyhow::Result<Tree> {
            Ok(Tree {
                entries: vec![ListEntry {
                    attrs: Vec::new(),
                    delim: Some('/'),
                    raw: b"INBOX".to_vec(),
                }],
                prefix: String::new(),
                delim: Some('/'),
            })
        }
        fn open(&mut self, _raw: &[u8]) -> anyhow::Result<SourceOpened> {
            Ok(SourceOpened {
                uidvalidity: 7,
                count: self.msgs.len() as u64,
            })
        }
        fn listing(&mut self) -> anyhow::Result<Vec<Meta>> {
            Ok(self
                .msgs
                .iter()
                .enumerate()
                .map(|(i, (id, body))| Meta {
                    id: id.to_string(),
                    order: i as u64,
                    size: body.len() as u64,
                    flags: vec!["\\Seen".into()],
                    internal_date: None,
                    problem: None,
                    flags_missing: false,
                })
                .collect())
        }
        fn fetch(
            &mut self,
            metas: &[Meta],
            each: &mut dyn FnMut(&str, Vec<u8>),
        ) -> anyhow::Result<()> {
            for m in metas {
                let (id, body) = self.msgs.iter().find(|(id, _)| *id == m.id).unwrap();
                if !self.withheld.contains(id) {
                    each(id, body.to_vec());
                }
            }
            Ok(())
        }
        fn close(&mut self) {}
    }

    fn manifest_ids(dir: &Path) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        backup::each_manifest_entry(&dir.join(backup::DIR_MANIFEST), false, |e| {
            out.push((e.id, e.duplicate))
        })
        .unwrap();
        out
    }

    /// The drift issue 11 names: a message the source does not return is failed in
    /// the index (as `migrate` does), not only in the summary; the next run takes
    /// it. An identical copy is a manifest line of no bytes; with the index lost,
    /// the manifest still says what the files hold and nothing is written twice.
    #[test]
    fn a_message_the_source_withholds_is_failed_in_the_index_and_taken_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b");
        let state = dir.path().join("state.sqlite");
        let mut src = Mem {
            msgs: vec![
                ("1", b"Subject: one\r\n\r\nbody\r\n"),
                ("2", b"Subject: two\r\n\r\nbody\r\n"),
                ("3", b"Subject: one\r\n\r\nbody\r\n"),
            ],
            withheld: vec!["2"],
        };
        let opts = Options::default();
        let mut index = Index::open(&state).unwrap();
        let s = backup::backup(&mut src, &out, &opts, &mut index).unwrap();
        assert_eq!((s.copied, s.duplicates, s.failed.len()), (1, 1, 1));
        let job = index
            .job("mem:", &format!("mbox:{}", out.display()))
            .unwrap();
        let failures = index.failures(job).unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(
            (failures[0].0.as_str(), failures[0].1.as_str()),
            ("INBOX", "2")
        );
        assert_eq!(
            manifest_ids(&out),
            [("1".into(), false), ("3".into(), true)]
        );

        src.withheld.clear();
        let s = backup::backup(&mut src, &out, &opts, &mut index).unwrap();
        assert_eq!((s.copied, s.failed.len()), (1, 0));
        assert!(index.failures(job).unwrap().is_empty());
        let ids = manifest_ids(&out);
        assert_eq!(ids.len(), 3, "{ids:?}");

        // The index lost: the manifest is the truth, nothing is written again.
        let mbox_len = std::fs::metadata(out.join("INBOX.mbox")).unwrap().len();
        let mut fresh = Index::open(&dir.path().join("fresh.sqlite")).unwrap();
        let s = backup::backup(&mut src, &out, &opts, &mut fresh).unwrap();
        assert_eq!(s.copied, 0);
        assert_eq!(manifest_ids(&out), ids);
        assert_eq!(
            std::fs::metadata(out.join("INBOX.mbox")).unwrap().len(),
            mbox_len
        );
    }
}
