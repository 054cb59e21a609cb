//! Backup to mbox: one mboxrd file per folder under a directory (nested like the
//! folder tree), or every folder in one file; plus a manifest. This module is the
//! backup's format (layout, manifest, repair); the copy engine writes it through
//! [`crate::target::backup::BackupTarget`].
//!
//! Files: `DIR/<folder path>.mbox` and `DIR/mailferry-manifest.jsonl`, or `FILE.mbox`
//! and `FILE.mbox.manifest.jsonl`. The manifest has one JSON line per message: its
//! folder, file, byte range in the file, size, SHA-256, flags, INTERNALDATE, the
//! source's UIDVALIDITY and id. Message bytes are stored unchanged (only mboxrd
//! `>From ` quoting, which a reader reverses); flags and dates live in the manifest,
//! so the messages are not touched, and a restore brings them back.
//!
//! Invariants (write, then record):
//! - messages are appended to the mbox file and the file is synced before their
//!   manifest lines are written and synced, and the index is written last;
//! - the manifest is the truth for what a file holds: on start, a file longer than
//!   its last manifest entry lost a crash's unfinished tail, which is cut off; a torn
//!   last manifest line is dropped; so a resumed backup never holds a torn or doubled
//!   message.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dedupe;
use crate::engine::Options;
use crate::error::{input, local};
use crate::index::Index;
use crate::log;
use crate::source::Source;
use crate::summary::Summary;

pub const DIR_MANIFEST: &str = "mailferry-manifest.jsonl";

/// One message in a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// The folder name, `/` as separator.
    pub folder: String,
    /// The mbox file, relative to the manifest's directory.
    pub file: String,
    /// Where the message's `From ` line starts, and how many bytes it takes there.
    pub offset: u64,
    pub length: u64,
    /// The message's own size and SHA-256 (before quoting).
    pub size: u64,
    pub sha256: String,
    pub flags: Vec<String>,
    pub internaldate: Option<String>,
    pub uidvalidity: u32,
    pub id: String,
    /// The dedupe key under which it was stored.
    pub key: String,
    /// Set for a copy of a message stored earlier in the same folder (no bytes written).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Where a backup goes.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The directory that holds the manifest and the files.
    pub base: PathBuf,
    pub manifest: PathBuf,
    /// `Some(name)` when every folder goes into one file.
    pub single: Option<String>,
}

impl Layout {
    /// `--out PATH`: a path ending in `.mbox` (or an existing file) is one file,
    /// anything else a directory.
    pub fn for_out(out: &Path) -> Layout {
        let single = out.is_file() || out.extension().is_some_and(|e| e == "mbox");
        if single {
            Layout::for_file(out)
        } else {
            Layout {
                base: out.to_path_buf(),
                manifest: out.join(DIR_MANIFEST),
                single: None,
            }
        }
    }

    /// Every folder in the one file `path`, its manifest beside it.
    pub fn for_file(path: &Path) -> Layout {
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        Layout {
            manifest: base.join(format!("{name}.manifest.jsonl")),
            base,
            single: Some(name),
        }
    }

    /// The file (relative to `base`) for a folder.
    pub fn file_for(&self, folder: &str) -> String {
        if let Some(name) = &self.single {
            return name.clone();
        }
        let parts: Vec<String> = folder
            .split('/')
            .map(|c| {
                let c: String = c
                    .chars()
                    .map(|ch| {
                        if ch == '\\' || ch == '\0' || ch.is_control() {
                            '_'
                        } else {
                            ch
                        }
                    })
                    .collect();
                if c.is_empty() || c == "." || c == ".." {
                    format!("_{c}")
                } else {
                    c
                }
            })
            .collect();
        format!("{}.mbox", parts.join("/"))
    }
}

/// Read a manifest, ignoring a torn last line; with `repair` (only a backup that
/// is about to write) also cut it off the file. Readers never write. (Runs read it
/// as a stream: [`each_manifest_entry`].)
#[cfg(test)]
pub fn read_manifest(path: &Path, repair: bool) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    each_manifest_entry(path, repair, |e| out.push(e))?;
    Ok(out)
}

/// Each entry of a manifest in turn, ignoring a torn last line; with `repair` (only
/// a backup that is about to write) also cut it off the file. Readers never write.
pub fn each_manifest_entry(
    path: &Path,
    repair: bool,
    mut each: impl FnMut(Entry),
) -> anyhow::Result<()> {
    each_manifest_line(path, repair, |_, e| each(e))
}

/// As [`each_manifest_entry`], with where each entry's line starts in the file (for
/// [`manifest_entry_at`]).
pub fn each_manifest_line(
    path: &Path,
    repair: bool,
    mut each: impl FnMut(u64, Entry),
) -> anyhow::Result<()> {
    let Ok(f) = File::open(path) else {
        return Ok(());
    };
    let mut good_len = 0u64;
    let mut reader = BufReader::new(f);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        n += 1;
        let complete = line.ends_with(b"\n");
        match serde_json::from_slice::<Entry>(&line) {
            Ok(e) if complete => {
                each(good_len, e);
                good_len += read as u64;
            }
            _ if !complete => {
                if repair {
                    log::warn(format!(
                        "{}: dropping an unfinished last line left by an interrupted run",
                        path.display()
                    ));
                    OpenOptions::new()
                        .write(true)
                        .open(path)
                        .and_then(|f| f.set_len(good_len))
                        .map_err(|e| local(format!("cannot repair {}: {e}", path.display())))?;
                }
                break;
            }
            Err(e) => {
                return Err(input(format!(
                    "{} line {n} is not a mailferry manifest entry ({e}); the backup was changed outside mailferry",
                    path.display()
                )))
            }
            Ok(_) => unreachable!(),
        }
    }
    Ok(())
}

/// The entry whose line starts at `at` in a manifest read through `reader`, which
/// stands at `*pos` (updated). Entries are mostly asked for in the order of their
/// lines, so the reader usually moves forward within its buffer instead of seeking.
pub fn manifest_entry_at<R: Read + Seek>(
    reader: &mut BufReader<R>,
    pos: &mut u64,
    at: u64,
) -> anyhow::Result<Entry> {
    if at >= *pos {
        reader.seek_relative((at - *pos) as i64)?;
    } else {
        reader.seek(SeekFrom::Start(at))?;
    }
    let mut line = Vec::new();
    let read = reader.read_until(b'\n', &mut line)?;
    *pos = at + read as u64;
    serde_json::from_slice(&line).map_err(|e| {
        input(format!(
            "the manifest changed while it was read (byte {at}: {e}); run again"
        ))
    })
}

/// The fingerprint of "this folder's message `id` under `uidvalidity` is stored".
pub(crate) fn stored(folder: &str, uidvalidity: u32, id: &str) -> u128 {
    dedupe::fingerprint(&format!("{folder}\0{uidvalidity}\0{id}"))
}

/// The flags a backup records for a message: IMAP flags, not `\Recent`.
pub(crate) fn kept_flags(flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent") && crate::imap::types::valid_flag(f))
        .cloned()
        .collect()
}

/// A fingerprint of a set of flags (order and case do not matter).
pub(crate) fn flags_fingerprint(flags: &[String]) -> u128 {
    let mut v: Vec<String> = flags.iter().map(|f| f.to_ascii_lowercase()).collect();
    v.sort();
    v.dedup();
    dedupe::fingerprint(&v.join(" "))
}

/// Record new flags of messages already backed up: for each (manifest line, new
/// flags), the entry again with the new flags, appended (a later line for the same
/// message replaces the earlier one when the backup is read). Synced.
pub(crate) fn record_flag_changes(
    layout: &Layout,
    changed: &[(u64, Vec<String>)],
) -> anyhow::Result<()> {
    let name = || layout.manifest.display().to_string();
    let f =
        File::open(&layout.manifest).map_err(|e| local(format!("cannot read {}: {e}", name())))?;
    let mut reader = BufReader::new(f);
    let mut pos = 0;
    let mut lines = Vec::new();
    for (at, flags) in changed {
        let mut e = manifest_entry_at(&mut reader, &mut pos, *at)?;
        e.flags = flags.clone();
        serde_json::to_writer(&mut lines, &e)?;
        lines.push(b'\n');
    }
    let mut out = OpenOptions::new()
        .append(true)
        .open(&layout.manifest)
        .map_err(|e| local(format!("cannot write {}: {e}", name())))?;
    out.write_all(&lines)
        .and_then(|()| out.sync_data())
        .map_err(|e| local(format!("cannot write {}: {e}", name())))
}

/// Count `e` in `ends`, where the last recorded message of each file ends (bytes
/// past that were written by an interrupted backup and are not messages).
pub fn note_end(ends: &mut HashMap<String, u64>, e: &Entry) {
    let end = ends.entry(e.file.clone()).or_default();
    *end = (*end).max(e.offset.saturating_add(e.length));
}

/// Bring a file back to what the manifest records: bytes after the last recorded
/// message were written by an interrupted run and are cut off. Only done inside a
/// backup (the manifest existed); a foreign file is never touched.
pub(crate) fn repair_file(
    mbox: &File,
    path: &Path,
    end: u64,
    in_backup: bool,
) -> anyhow::Result<()> {
    let len = mbox.metadata()?.len();
    if len > end {
        if !in_backup {
            return Err(input(format!(
                "{} already exists and is not part of a mailferry backup; choose a new --out",
                path.display()
            )));
        }
        log::warn(format!(
            "{}: cutting off {} bytes an interrupted run wrote but did not record",
            path.display(),
            len - end
        ));
        mbox.set_len(end)
            .map_err(|e| local(format!("cannot repair {}: {e}", path.display())))?;
    } else if len < end {
        return Err(input(format!(
            "{} is shorter than its manifest says ({len} < {end} bytes): it was changed outside mailferry",
            path.display()
        )));
    }
    Ok(())
}

pub(crate) fn sender_of(msg: &[u8]) -> String {
    dedupe::header(msg, "Return-Path")
        .map(|v| {
            String::from_utf8_lossy(&v)
                .trim_matches(|c| c == '<' || c == '>' || c == ' ')
                .to_string()
        })
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .unwrap_or_else(|| "MAILER-DAEMON".to_string())
}

/// Back up every selected folder of `src`.
pub fn backup(
    src: &mut dyn Source,
    out: &Path,
    opts: &Options,
    index: &mut Index,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    backup_into(src, out, opts, index, &mut summary)?;
    Ok(summary)
}

/// As [`backup`], adding to `summary`, so a retried run reports what every attempt did.
/// The copy engine does the work, with the backup directory as its target
/// ([`crate::target::backup::BackupTarget`]): what is written, in which order, and
/// what the index records are the engine's rules.
pub fn backup_into(
    src: &mut dyn Source,
    out: &Path,
    opts: &Options,
    index: &mut Index,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut target = crate::target::backup::BackupTarget::new(out, opts.dry_run)?;
    crate::engine::copy_into(src, &mut target, opts, None, index, summary)
}

/// `mailferry-manifest.json` / `FILE.mbox.manifest.json`: per folder its file,
/// message count, bytes and UIDVALIDITY, rebuilt from the line manifest.
pub(crate) fn write_summary_manifest(layout: &Layout) -> anyhow::Result<()> {
    #[derive(Serialize, Default)]
    struct Folder {
        folder: String,
        file: String,
        messages: u64,
        duplicates_skipped: u64,
        bytes: u64,
        uidvalidity: u32,
    }
    let mut folders: Vec<Folder> = Vec::new();
    // A message whose flags changed has a later line of its own: counted once.
    let mut counted: HashSet<u128> = HashSet::new();
    each_manifest_entry(&layout.manifest, false, |e| {
        if !counted.insert(stored(&e.folder, e.uidvalidity, &e.id)) {
            return;
        }
        let i = match folders.iter().position(|f| f.folder == e.folder) {
            Some(i) => i,
            None => {
                folders.push(Folder {
                    folder: e.folder.clone(),
                    file: e.file.clone(),
                    ..Folder::default()
                });
                folders.len() - 1
            }
        };
        let f = &mut folders[i];
        f.uidvalidity = e.uidvalidity;
        if e.duplicate {
            f.duplicates_skipped += 1;
        } else {
            f.messages += 1;
            f.bytes += e.size;
        }
    })?;
    let path = layout.manifest.with_extension("json");
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(&serde_json::json!({ "folders": folders }))?;
    create_private(&tmp)
        .and_then(|mut f| f.write_all(&data))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| local(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

/// A backup writes only inside its directory: `path` (a folder's file, its
/// directories made) must not be, or lie under, a symbolic link leading out of
/// `base` (someone else's file would be appended to).
pub(crate) fn stays_inside(base: &Path, path: &Path) -> anyhow::Result<()> {
    let real_base = base
        .canonicalize()
        .map_err(|e| local(format!("cannot read {}: {e}", base.display())))?;
    // Not there yet: its directory decides.
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(_) => match path.parent().map(Path::canonicalize) {
            Some(Ok(dir)) => dir,
            _ => return Ok(()),
        },
    };
    if real.starts_with(&real_base) {
        return Ok(());
    }
    Err(input(format!(
        "{} leads out of the backup directory {} (through a symbolic link, to {}); a backup writes only inside its directory",
        path.display(),
        base.display(),
        real.display()
    )))
}

/// Create a directory and its missing parents, those it creates open to their
/// owner only (folder names are private too); existing ones are left as they are.
pub(crate) fn private_dirs(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Create (or empty) a file readable by its owner only, from its first byte on.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o.open(path)?;
    // An existing file keeps its mode through open: set it.
    private(path);
    Ok(f)
}

/// Make a file readable by its owner only.
pub fn private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64, length: u64) -> Entry {
        Entry {
            folder: "INBOX".into(),
            file: "INBOX.mbox".into(),
            offset,
            length,
            size: length - 10,
            sha256: "00".repeat(32),
            flags: vec!["\\Seen".into()],
            internaldate: None,
            uidvalidity: 7,
            id: format!("{offset}"),
            key: "k".into(),
            duplicate: false,
        }
    }

    fn line(e: &Entry) -> String {
        format!("{}\n", serde_json::to_string(e).unwrap())
    }

    #[test]
    fn a_torn_last_manifest_line_is_ignored_and_only_a_backup_cuts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DIR_MANIFEST);
        let good = format!("{}{}", line(&entry(0, 100)), line(&entry(100, 50)));
        let torn = &line(&entry(150, 70))[..40];
        std::fs::write(&path, format!("{good}{torn}")).unwrap();

        // A reader (restore, verify) sees the two whole entries and writes nothing.
        let read = read_manifest(&path, false).unwrap();
        assert_eq!(read, vec![entry(0, 100), entry(100, 50)]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{good}{torn}")
        );

        // A backup about to write cuts the torn line off first.
        let read = read_manifest(&path, true).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), good);
        let mut ends = HashMap::new();
        for e in &read {
            note_end(&mut ends, e);
        }
        assert_eq!(ends["INBOX.mbox"], 150);
    }

    #[test]
    fn a_damaged_manifest_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DIR_MANIFEST);
        std::fs::write(
            &path,
            format!(
                "{}{{\"folder\": 1}}\n{}",
                line(&entry(0, 100)),
                line(&entry(100, 50))
            ),
        )
        .unwrap();
        let err = read_manifest(&path, true).unwrap_err().to_string();
        assert!(
            err.contains("line 2 is not a mailferry manifest entry")
                && err.contains("changed outside mailferry"),
            "{err}"
        );
        // Nothing was cut.
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with(&line(&entry(100, 50))));
    }

    #[test]
    fn an_unrecorded_tail_is_cut_and_a_short_or_foreign_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("INBOX.mbox");
        let recorded = b"From a@b Thu Jan  1 00:00:00 2024\nSubject: one\n\nbody\n\n";
        let half = b"From a@b Thu Jan  1 00:00:00 2024\nSubject: two\n\nhal";
        std::fs::write(&path, [&recorded[..], &half[..]].concat()).unwrap();
        let end = recorded.len() as u64;
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap()
        };

        // Outside a backup (a file that happens to exist): refused, untouched.
        let err = repair_file(&open(), &path, end, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not part of a mailferry backup"), "{err}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            end + half.len() as u64
        );

        // In a backup: the half-written message is cut off, the recorded one kept.
        repair_file(&open(), &path, end, true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), recorded);
        // Already right: nothing to do.
        repair_file(&open(), &path, end, true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), recorded);

        // Shorter than the manifest says: someone changed it; refused.
        let err = repair_file(&open(), &path, end + 5, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is shorter than its manifest says"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), recorded);
    }
}
