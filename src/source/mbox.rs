//! mbox files as a source: a backup directory written by `mailferry backup` (with its
//! manifest), a single mbox file, a directory of mbox files from another tool, or a
//! Thunderbird profile's folder tree.
//!
//! **Dialects.** Each file's dialect is decided from its contents ([`mbox::detect`]:
//! mboxrd, mboxo, mboxcl/mboxcl2 with `Content-Length:`, MMDF, dateless separators,
//! CRLF) and stated with `-v`; `--mbox-format` forces one. A file that is none of
//! them is an input error naming it, and so is a directory with no mailbox in it:
//! a readable-looking input never restores nothing in silence.
//!
//! **A backup's manifest is checked against its files, not trusted.** On opening a
//! file, every recorded message is read at its offset and its SHA-256 compared. If
//! all match, the manifest gives each message its folder, flags, INTERNALDATE and
//! exact size (the writer adds a final newline to a message that had none; the size
//! takes it off again); bytes after the last recorded message are an interrupted
//! backup's tail and are left out. If anything differs (mutt added `Status:`,
//! Dovecot served the file, a message was removed), the whole file is read as a
//! plain mbox and nothing is cut: each message is matched to the manifest by its
//! content — as it is, or without the headers mail clients add
//! ([`mbox::without_client_headers`]; Dovecot's bare `\n` ending a CRLF header
//! block undone, [`mbox::other_blank_line`]), in which case the message is
//! restored as it was backed up — and a match keeps the manifest's folder, flags
//! and date; the others take them from their own headers. The summary says so.
//!
//! **Without a manifest**, the folder is the file's path (`Archive/2019.mbox` →
//! `Archive/2019`, `INBOX.mbox` → INBOX, Thunderbird's `Archives.sbd/2019` →
//! `Archives/2019`), flags come from the headers mail clients write
//! ([`mbox::marks`]: mutt, Pine, Python, Dovecot, Thunderbird, Takeout) and the date
//! from the `From ` line (else `Received:`/`Date:`). Thunderbird's deleted messages
//! and UW-IMAP's folder-data placeholder are skipped and counted. With
//! `--labels-as-folders`, a Takeout file is presented as one folder per label, each
//! listing the file's messages that carry it.
//!
//! Message ids are the byte offset and a hash of the message. Files are read as
//! streams, one message at a time, so memory is bounded by the largest message.
//!
//! A manifest is a file anyone may have edited, so nothing in it is trusted as text:
//! - a `file` must be a relative path inside the directory, without `..`, and not a
//!   symlink leading out of it (checked on the canonical path): anything else stops
//!   the run before a message is copied, with the manifest line and the rule;
//! - an `internaldate` is parsed into a date; one that is not an IMAP date-time
//!   fails its message (named in the summary, exit 1), never reaches a command;
//! - `flags` must be IMAP flags (`\Word` or an atom); others are left out with a
//!   warning, the message is copied;
//! - a `folder` has its control characters made `_` and its empty, `.` and `..`
//!   components made `_`, `_.`, `_..` (as the backup names its files), with a
//!   warning; two folders that would end up with one name stop the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Take};
use std::path::{Component, Path, PathBuf};

use super::{Opened, Source, Tree};
use crate::backup::{self, Entry, Layout};
use crate::decide::Meta;
use crate::dedupe;
use crate::error::input;
use crate::imap::types::{shown, valid_flag, ImapDate};
use crate::imap::{utf7, ListEntry};
use crate::mbox::{self, Dialect, Format};

/// How mbox files are to be read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// `--mbox-format`: `None` decides per file from its contents.
    pub format: Option<Format>,
    /// `--labels-as-folders`: Takeout's labels become folders.
    pub labels_as_folders: bool,
    /// `--from-preset`, for an IMAP source opened with these options.
    pub preset: crate::provider::Preset,
    /// `--gmail-labels`, likewise.
    pub gmail_labels: crate::provider::GmailLabels,
    /// `--newest-first`: an IMAP source lists its pages from the newest UID down.
    pub newest_first: bool,
}

impl From<Dialect> for ReadOptions {
    fn from(d: Dialect) -> ReadOptions {
        ReadOptions {
            format: Some(Format::plain(d)),
            ..ReadOptions::default()
        }
    }
}

/// A folder of the source.
#[derive(Debug, Clone)]
struct Spec {
    folder: String,
    /// Relative to `base`.
    file: String,
    /// `--labels-as-folders`: the folder lists the file's messages with this label folder.
    label: bool,
    attrs: Vec<String>,
}

/// What is known of a file once it was first opened.
#[derive(Debug, Clone)]
struct FileState {
    format: Format,
    /// How many bytes hold messages (a backup's interrupted tail does not).
    len: u64,
    /// A backup file that no longer fits its manifest, read as a plain mbox.
    rewritten: bool,
    /// In a rewritten file of several folders: the folder of each message the
    /// manifest no longer knows (the folder of the recorded message before it).
    assigned: HashMap<u64, String>,
}

pub struct MboxSource {
    name: String,
    /// The directory the files are in, canonical.
    base: PathBuf,
    /// The one file the user named (`FILE.mbox`), which may be a link to anywhere.
    single: Option<String>,
    opts: ReadOptions,
    folders: Vec<Spec>,
    /// A backup's manifest, held compactly: (file number, message offset) → where
    /// the entry's line starts in the manifest, read again when the message is
    /// listed or fetched. About 30 bytes per message instead of the whole entry.
    manifest: HashMap<(u32, u64), u64>,
    /// File name → its number in `manifest`.
    file_ids: HashMap<String, u32>,
    /// File name → how many messages the manifest records in it.
    recorded: HashMap<String, u64>,
    manifest_path: PathBuf,
    /// The manifest, and where its reader stands.
    manifest_reader: Option<(BufReader<File>, u64)>,
    /// For a mailferry backup: where each file's recorded messages end.
    ends: Option<HashMap<String, u64>>,
    /// Formats decided while opening (files without a manifest).
    detected: HashMap<String, Format>,
    files: HashMap<String, FileState>,
    /// The open folder.
    current: Option<OpenFile>,
    /// The listing in progress: its reader and the ordinal of its next message.
    lister: Option<(mbox::Reader<BufReader<Take<File>>>, u64)>,
    /// Messages left out on purpose, per file: (Thunderbird-deleted, placeholders).
    skipped: BTreeMap<String, (HashSet<u64>, HashSet<u64>)>,
    notes: Vec<String>,
}

struct OpenFile {
    spec: Spec,
    path: PathBuf,
    state: FileState,
}

/// Names that are never mailboxes in a mail client's directory.
fn never_a_mailbox(name: &str) -> bool {
    const EXT: &[&str] = &[
        ".msf",
        ".dat",
        ".json",
        ".sqlite",
        ".sqlite-wal",
        ".sqlite-shm",
        ".html",
        ".js",
        ".mozlz4",
        ".lz4",
        ".log",
        ".ini",
        ".xml",
        ".db",
        ".txt",
        ".jsonl",
        ".rdf",
        ".bak",
        ".lock",
        ".tmp",
    ];
    let lower = name.to_ascii_lowercase();
    name.starts_with('.') || EXT.iter().any(|e| lower.ends_with(e)) || lower.contains(".manifest.")
}

/// The files of a directory tree that may be mailboxes: `.mbox` files, and (outside
/// a backup) other files that are not known to be something else, such as
/// Thunderbird's extension-less folder files.
fn walk(dir: &Path, rel: &str, only_mbox: bool, out: &mut Vec<String>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel_name = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if e.file_type()?.is_dir() {
            walk(&e.path(), &rel_name, only_mbox, out)?;
        } else if name.ends_with(".mbox") || (!only_mbox && !never_a_mailbox(&name)) {
            out.push(rel_name);
        }
    }
    Ok(())
}

/// The folder a file stands for: its path without `.mbox`, Thunderbird's `.sbd`
/// directories as the folders they hold; `inbox` is INBOX.
fn folder_of_file(file: &str) -> String {
    let stem = file.strip_suffix(".mbox").unwrap_or(file);
    let parts: Vec<&str> = stem
        .split('/')
        .map(|p| p.strip_suffix(".sbd").unwrap_or(p))
        .collect();
    let stem = parts.join("/");
    if stem.eq_ignore_ascii_case("inbox") {
        "INBOX".into()
    } else {
        safe_folder(&stem)
    }
}

/// The first bytes of a file, at most [`mbox::SAMPLE`], and whether that is all of it.
fn sample(path: &Path) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    File::open(path)?
        .take(mbox::SAMPLE as u64 + 1)
        .read_to_end(&mut buf)?;
    let whole = buf.len() <= mbox::SAMPLE;
    buf.truncate(mbox::SAMPLE);
    Ok((buf, whole))
}

/// The candidate originals of a message read from a rewritten backup file: as it
/// is, without the newline the writer added, and the same without the headers
/// mail clients add; each also with the empty line that ends the header block in
/// the other line ending (Dovecot writes it as `\n` when it rewrites the headers
/// of a message whose lines end `\r\n`). Only a candidate whose SHA-256 the
/// manifest records is ever used. The flag says whether client headers were removed.
fn originals(msg: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut push = |m: Vec<u8>, stripped: bool| {
        let other = mbox::other_blank_line(&m);
        for m in std::iter::once(m).chain(other) {
            if let Some(short) = m.strip_suffix(b"\n") {
                let short = short.to_vec();
                out.push((m, stripped));
                out.push((short, stripped));
            } else {
                out.push((m, stripped));
            }
        }
    };
    push(msg.to_vec(), false);
    if let Some(s) = mbox::without_client_headers(msg) {
        push(s, true);
    }
    out
}

/// A folder name from a file (a manifest, a file name) made harmless: control
/// characters (a line break would forge a line of output) become `_`, and empty,
/// `.` and `..` components `_`, `_.`, `_..` (as [`Layout::file_for`] names files),
/// so a target that maps folders to directories is never asked for `..`.
pub fn safe_folder(name: &str) -> String {
    name.split('/')
        .map(|c| {
            let c: String = c
                .chars()
                .map(|ch| if ch.is_control() { '_' } else { ch })
                .collect();
            if c.is_empty() || c == "." || c == ".." {
                format!("_{c}")
            } else {
                c
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The path of `rel`, a file named by a manifest or found in the directory, if it
/// lies inside `base` (canonical): a relative path without `..` whose canonical path
/// (symlinks followed) is under `base` and is a regular file. A file that does not
/// exist is returned as it is (reading it says so). Otherwise the rule it breaks.
pub fn inside(base: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if rel.is_empty() {
        return Err("the file name is empty".into());
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "{} has a `..` component, which could lead out of the backup directory",
                    shown(rel.as_bytes())
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{} is an absolute path, not a file of the backup directory",
                    shown(rel.as_bytes())
                ))
            }
        }
    }
    let joined = base.join(p);
    match joined.canonicalize() {
        Ok(real) if !real.starts_with(base) => Err(format!(
            "{} leads out of the backup directory (through a symbolic link, to {})",
            shown(rel.as_bytes()),
            shown(real.as_os_str().as_encoded_bytes())
        )),
        Ok(real) if !real.is_file() => {
            Err(format!("{} is not a regular file", shown(rel.as_bytes())))
        }
        Ok(real) => Ok(real),
        Err(_) => Ok(joined),
    }
}

/// An mbox source's path must exist: checked on opening, and by commands before
/// they open the index.
pub fn check_path(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(input(format!("{} does not exist", path.display())))
    }
}

impl MboxSource {
    pub fn open_path(path: &Path, dialect: Dialect) -> anyhow::Result<MboxSource> {
        MboxSource::open_with(path, dialect.into())
    }

    pub fn open_with(path: &Path, opts: ReadOptions) -> anyhow::Result<MboxSource> {
        let layout = open_layout(path)?;
        let in_backup = layout.manifest.exists();
        let Recorded {
            mut folders,
            manifest,
            file_ids,
            recorded,
            ends,
        } = read_manifest(&layout)?;
        let manifest_reader = if in_backup {
            let f = File::open(&layout.manifest)
                .map_err(|e| input(format!("cannot read {}: {e}", layout.manifest.display())))?;
            Some((BufReader::with_capacity(64 * 1024, f), 0))
        } else {
            None
        };
        let files: Vec<String> = match &layout.single {
            Some(name) => vec![name.clone()],
            None => {
                let mut v = Vec::new();
                walk(&layout.base, "", in_backup, &mut v)?;
                v
            }
        };
        let had_folders = !folders.is_empty();
        let (detected, not_mailboxes) = scan_files(&layout, files, in_backup, opts, &mut folders)?;
        if !had_folders && detected.is_empty() {
            return Err(input(format!(
                "{}: no mailbox to restore: {}",
                path.display(),
                no_mailbox_why(&not_mailboxes)
            )));
        }
        Ok(MboxSource {
            name: format!("mbox:{}", path.display()),
            base: layout.base,
            single: layout.single,
            opts,
            folders,
            manifest,
            file_ids,
            recorded,
            manifest_path: layout.manifest,
            manifest_reader,
            ends: in_backup.then_some(ends),
            detected,
            files: HashMap::new(),
            current: None,
            lister: None,
            skipped: BTreeMap::new(),
            notes: Vec::new(),
        })
    }

    fn file(&self) -> anyhow::Result<&OpenFile> {
        self.current
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no mbox folder is open"))
    }

    /// The open file, for reading.
    fn open_file(&self) -> anyhow::Result<File> {
        let of = self.file()?;
        File::open(&of.path).map_err(|e| input(format!("cannot read {}: {e}", of.path.display())))
    }

    /// A reader of `f`, the open file, from byte `offset` (a message's start, or 0)
    /// to where its messages end, buffering `buffer` bytes.
    fn reader<F: Read + Seek>(
        &self,
        mut f: F,
        offset: u64,
        buffer: usize,
    ) -> anyhow::Result<mbox::Reader<BufReader<Take<F>>>> {
        f.seek(SeekFrom::Start(offset))?;
        let state = &self.file()?.state;
        let rest = state.len.saturating_sub(offset);
        Ok(mbox::Reader::with_format(
            BufReader::with_capacity(buffer, f.take(rest)),
            state.format,
            offset,
        ))
    }

    /// The manifest entry whose line starts at `at`.
    fn entry_at(&mut self, at: u64) -> anyhow::Result<Entry> {
        let (r, pos) = self
            .manifest_reader
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no manifest"))?;
        backup::manifest_entry_at(r, pos, at)
    }

    /// What a file is, decided when a folder of it is first opened: for a file of a
    /// backup, whether the manifest still fits it (see the module docs).
    fn state_for(&mut self, file: &str, path: &Path) -> anyhow::Result<FileState> {
        let file_len = std::fs::metadata(path)
            .map_err(|e| input(format!("cannot read {}: {e}", path.display())))?
            .len();
        let Some(end) = self
            .ends
            .as_ref()
            .and_then(|ends| ends.get(file).copied())
            .filter(|_| self.recorded.contains_key(file))
        else {
            let format = self
                .detected
                .get(file)
                .copied()
                .or(self.opts.format)
                .unwrap_or(Format::plain(Dialect::Rd));
            return Ok(FileState {
                format,
                len: file_len,
                rewritten: false,
                assigned: HashMap::new(),
            });
        };
        let format = self.opts.format.unwrap_or(Format::plain(Dialect::Rd));
        if self.manifest_fits(file, path, end, format, file_len)? {
            crate::log::info(format!(
                "{}: mailferry backup (mboxrd), every message as the manifest records it",
                path.display()
            ));
            if file_len > end {
                let what = format!(
                    "{}: {} bytes after the last recorded message were left out (an interrupted backup wrote them and did not record them)",
                    path.display(),
                    file_len - end
                );
                crate::log::warn(&what);
                self.note(what);
            }
            return Ok(FileState {
                format,
                len: end,
                rewritten: false,
                assigned: HashMap::new(),
            });
        }
        // Rewritten: every message of the file, matched to the manifest by content.
        self.rematch(file, path, format, file_len)
    }

    /// Whether a backup file still fits its manifest: it reaches `end`, every message
    /// before `end` is the one recorded at its offset (size and SHA-256), and every
    /// recorded message is there.
    fn manifest_fits(
        &mut self,
        file: &str,
        path: &Path,
        end: u64,
        format: Format,
        file_len: u64,
    ) -> anyhow::Result<bool> {
        let fid = self.file_ids.get(file).copied();
        let want = self.recorded.get(file).copied().unwrap_or(0);
        let mut r = mbox::Reader::with_format(
            BufReader::with_capacity(256 * 1024, open_for_reading(path)?),
            format,
            0,
        );
        let mut ok = 0u64;
        let mut fits = file_len >= end;
        while fits {
            let Some(m) = r.next_entry()? else { break };
            if m.offset >= end {
                break;
            }
            let at = fid.and_then(|id| self.manifest.get(&(id, m.offset)).copied());
            let Some(at) = at else {
                fits = false;
                break;
            };
            let e = self.entry_at(at)?;
            let mut body = m.message;
            body.truncate(e.size.min(body.len() as u64) as usize);
            if body.len() as u64 != e.size || dedupe::sha256_hex(&body) != e.sha256 {
                fits = false;
            } else {
                ok += 1;
            }
        }
        Ok(fits && ok == want)
    }

    /// The manifest lines of a file's messages by content: each message's SHA-256
    /// fingerprint → where its lines start, in the order of their offsets.
    fn recorded_by_content(&self, file: &str) -> anyhow::Result<HashMap<u128, Vec<u64>>> {
        let mut by_offset: HashMap<u64, (u64, String)> = HashMap::new();
        backup::each_manifest_line(&self.manifest_path, false, |at, e| {
            if e.file == file && !e.duplicate {
                by_offset.insert(e.offset, (at, e.sha256));
            }
        })?;
        let mut by_sha: HashMap<u128, Vec<u64>> = HashMap::new();
        let mut sorted: Vec<(u64, (u64, String))> = by_offset.into_iter().collect();
        sorted.sort();
        for (_, (at, sha)) in sorted {
            by_sha
                .entry(dedupe::fingerprint(&sha))
                .or_default()
                .push(at);
        }
        Ok(by_sha)
    }

    /// A backup file that no longer fits its manifest, read as a plain mbox: each
    /// message matched to the manifest by its content; in a file of several folders,
    /// a message not found takes the folder of the recorded message before it.
    fn rematch(
        &mut self,
        file: &str,
        path: &Path,
        format: Format,
        file_len: u64,
    ) -> anyhow::Result<FileState> {
        let by_sha = self.recorded_by_content(file)?;
        let next = self.file_ids.len() as u32;
        let fid = *self.file_ids.entry(file.to_string()).or_insert(next);
        self.manifest.retain(|(id, _), _| *id != fid);
        let of_file: Vec<String> = self
            .folders
            .iter()
            .filter(|s| s.file == file)
            .map(|s| s.folder.clone())
            .collect();
        let several = of_file.len() > 1;
        let mut last = of_file.first().cloned().unwrap_or_default();
        let mut assigned = HashMap::new();
        let mut uses: HashMap<u128, usize> = HashMap::new();
        let (mut total, mut matched) = (0u64, 0u64);
        let mut r = mbox::Reader::with_format(
            BufReader::with_capacity(256 * 1024, open_for_reading(path)?),
            format,
            0,
        );
        while let Some(m) = r.next_entry()? {
            total += 1;
            let hit = originals(&m.message).iter().find_map(|(o, _)| {
                take_match(
                    &by_sha,
                    &mut uses,
                    dedupe::fingerprint(&dedupe::sha256_hex(o)),
                )
            });
            match hit {
                Some(at) => {
                    matched += 1;
                    self.manifest.insert((fid, m.offset), at);
                    if several {
                        last = safe_folder(&self.entry_at(at)?.folder);
                    }
                }
                None if several => {
                    assigned.insert(m.offset, last.clone());
                }
                None => {}
            }
        }
        let what = format!(
            "{}: the file no longer matches its manifest (another program changed it after the backup, e.g. mutt or Dovecot); it was read as a plain mbox and nothing was left out: {total} messages, {matched} found in the manifest by their content (restored as backed up, with the manifest's flags and dates), {} with flags and dates from their own headers",
            path.display(),
            total - matched
        );
        crate::log::warn(&what);
        self.note(what);
        Ok(FileState {
            format,
            len: file_len,
            rewritten: true,
            assigned,
        })
    }

    fn note(&mut self, what: String) {
        if !self.notes.contains(&what) {
            self.notes.push(what);
        }
    }

    /// The message's metadata and bytes, or `None` when it belongs to another folder
    /// or is no message (Thunderbird-deleted, a folder-data placeholder).
    /// `listing`: warnings about the message are given (not again when fetching).
    fn entry(
        &mut self,
        n: u64,
        m: mbox::Entry,
        listing: bool,
    ) -> anyhow::Result<Option<(Meta, Vec<u8>)>> {
        let of = self.file()?;
        let (spec, path) = (of.spec.clone(), of.path.clone());
        let at = self
            .file_ids
            .get(&spec.file)
            .and_then(|id| self.manifest.get(&(*id, m.offset)))
            .copied();
        let recorded: Option<Entry> = match at {
            Some(at) if self.manifest_reader.is_some() => Some(self.entry_at(at)?),
            _ => None,
        };
        Ok(match recorded {
            Some(e) if safe_folder(&e.folder) != spec.folder => None,
            Some(e) => Some(recorded_message(n, m, e, &path, listing)),
            None => self
                .unrecorded_meta(n, &m, &spec, &path, listing)?
                .map(|meta| (meta, m.message)),
        })
    }

    /// A message the manifest does not record: its metadata from its own headers
    /// and `From ` line, or `None` when it is another folder's (a rewritten file's
    /// assignment, a label) or no message (counted when `listing`).
    fn unrecorded_meta(
        &mut self,
        n: u64,
        m: &mbox::Entry,
        spec: &Spec,
        path: &Path,
        listing: bool,
    ) -> anyhow::Result<Option<Meta>> {
        let state = &self.file()?.state;
        if state.rewritten
            && !state.assigned.is_empty()
            && state.assigned.get(&m.offset) != Some(&spec.folder)
        {
            return Ok(None);
        }
        let marks = mbox::marks(&m.message, spec.label);
        if marks.deleted || marks.placeholder {
            if listing {
                let counts = self.skipped.entry(path.display().to_string()).or_default();
                let set = if marks.deleted {
                    &mut counts.0
                } else {
                    &mut counts.1
                };
                set.insert(m.offset);
            }
            return Ok(None);
        }
        if spec.label {
            let (folders, _, _) = mbox::label_folders(&marks.labels);
            if !folders.iter().any(|(f, _)| safe_folder(f) == spec.folder) {
                return Ok(None);
            }
        }
        let date = mbox::from_line_date(&m.from_line)
            .and_then(ImapDate::from_datetime)
            .or_else(|| dedupe::header_date(&m.message));
        Ok(Some(Meta {
            id: format!("{}:{}", m.offset, &dedupe::sha256_hex(&m.message)[..16]),
            order: n,
            size: m.message.len() as u64,
            flags: marks.flags.into_iter().filter(|f| valid_flag(f)).collect(),
            internal_date: date,
            problem: None,
            flags_missing: false,
        }))
    }
}

const BOM_BYTES: &[u8] = b"\xEF\xBB\xBF";

/// The label folders of a Takeout file's messages, in order of first use; empty
/// when no message has `X-Gmail-Labels`.
fn label_folders_of(
    path: &Path,
    format: Format,
) -> anyhow::Result<Vec<(String, Option<&'static str>)>> {
    let f = File::open(path).map_err(|e| input(format!("cannot read {}: {e}", path.display())))?;
    let mut r = mbox::Reader::with_format(BufReader::with_capacity(256 * 1024, f), format, 0);
    let mut out: Vec<(String, Option<&'static str>)> = Vec::new();
    let mut any = false;
    while let Some(m) = r.next_entry()? {
        let marks = mbox::marks(&m.message, true);
        if marks.deleted || marks.placeholder {
            continue;
        }
        any |= !marks.labels.is_empty();
        for (f, role) in mbox::label_folders(&marks.labels).0 {
            if !out.iter().any(|(g, _)| *g == f) {
                out.push((f, role));
            }
        }
    }
    Ok(if any { out } else { Vec::new() })
}

/// Where a source path's files and manifest are, its directory made canonical.
fn open_layout(path: &Path) -> anyhow::Result<Layout> {
    check_path(path)?;
    let mut layout = if path.is_dir() {
        Layout::for_out(path)
    } else {
        Layout::for_file(path)
    };
    layout.base = layout
        .base
        .canonicalize()
        .map_err(|e| input(format!("cannot read {}: {e}", layout.base.display())))?;
    Ok(layout)
}

/// A file named by the manifest or found in the directory, checked to be inside it
/// (the one file the user named may be anywhere); the rule broken otherwise.
fn checked_file(layout: &Layout, file: &str) -> Result<(), String> {
    if layout.single.as_deref() == Some(file) {
        return Ok(());
    }
    inside(&layout.base, file).map(drop)
}

/// What a backup's manifest records, read once on opening (all empty without one).
#[derive(Default)]
struct Recorded {
    folders: Vec<Spec>,
    /// (file number, message offset) → where the entry's line starts.
    manifest: HashMap<(u32, u64), u64>,
    file_ids: HashMap<String, u32>,
    /// File name → how many messages the manifest records in it.
    recorded: HashMap<String, u64>,
    /// Where the last recorded message of each file ends.
    ends: HashMap<String, u64>,
}

/// Reads a manifest a line at a time: each file checked once, each folder name
/// made safe; the first bad line stops it.
struct ManifestRead<'a> {
    layout: &'a Layout,
    out: Recorded,
    /// Each folder name as the manifest has it → the name used (made safe).
    names: HashMap<String, String>,
    line: u64,
    bad: Option<String>,
    seen_files: HashSet<String>,
}

impl ManifestRead<'_> {
    /// One manifest line (its entry starts at `at`); nothing more after a bad one.
    fn line(&mut self, at: u64, e: Entry) {
        self.line += 1;
        if self.bad.is_some() {
            return;
        }
        if let Err(why) = self.take(at, e) {
            self.bad = Some(why);
        }
    }

    /// One entry recorded, or what is wrong with its line.
    fn take(&mut self, at: u64, e: Entry) -> Result<(), String> {
        if !self.seen_files.contains(&e.file) {
            self.seen_files.insert(e.file.clone());
            checked_file(self.layout, &e.file).map_err(|rule| {
                format!(
                    "{} line {}: the file {rule}; restore reads only files inside {} (the manifest was changed outside mailferry)",
                    self.layout.manifest.display(),
                    self.line,
                    self.layout.base.display()
                )
            })?;
        }
        let folder = self.folder_name(&e.folder)?;
        let out = &mut self.out;
        if !out.folders.iter().any(|s| s.folder == folder) {
            out.folders.push(Spec {
                folder,
                file: e.file.clone(),
                label: false,
                attrs: Vec::new(),
            });
        }
        backup::note_end(&mut out.ends, &e);
        if !e.duplicate {
            let next = out.file_ids.len() as u32;
            let id = *out.file_ids.entry(e.file.clone()).or_insert(next);
            // A later line for the same message (new flags) replaces the earlier.
            if out.manifest.insert((id, e.offset), at).is_none() {
                *out.recorded.entry(e.file).or_default() += 1;
            }
        }
        Ok(())
    }

    /// The name a manifest folder is restored as (made safe, with a warning when that
    /// changes it); two folders that would get one name are refused.
    fn folder_name(&mut self, folder: &str) -> Result<String, String> {
        if let Some(f) = self.names.get(folder) {
            return Ok(f.clone());
        }
        let manifest = self.layout.manifest.display();
        let line = self.line;
        let safe = safe_folder(folder);
        if let Some((other, _)) = self.names.iter().find(|(_, s)| **s == safe) {
            return Err(format!(
                "{manifest} line {line}: folders {} and {} would both be restored as {}; rename one in the manifest",
                shown(other.as_bytes()),
                shown(folder.as_bytes()),
                shown(safe.as_bytes())
            ));
        }
        if safe != folder {
            crate::log::warn(format!(
                "{manifest} line {line}: folder {} is restored as {} (a folder name has no control characters and no empty, . or .. parts)",
                shown(folder.as_bytes()),
                shown(safe.as_bytes())
            ));
        }
        self.names.insert(folder.to_string(), safe.clone());
        Ok(safe)
    }
}

/// The layout's manifest read and checked (nothing when there is none).
fn read_manifest(layout: &Layout) -> anyhow::Result<Recorded> {
    let mut rd = ManifestRead {
        layout,
        out: Recorded::default(),
        names: HashMap::new(),
        line: 0,
        bad: None,
        seen_files: HashSet::new(),
    };
    backup::each_manifest_line(&layout.manifest, false, |at, e| rd.line(at, e))?;
    match rd.bad {
        Some(bad) => Err(input(bad)),
        None => Ok(rd.out),
    }
}

/// The files no manifest line names: each that is a mailbox gets its format, and its
/// folder (or, with `--labels-as-folders`, its label folders) in `folders`. The
/// formats, and the files that are not mailboxes.
fn scan_files(
    layout: &Layout,
    files: Vec<String>,
    in_backup: bool,
    opts: ReadOptions,
    folders: &mut Vec<Spec>,
) -> anyhow::Result<(HashMap<String, Format>, Vec<String>)> {
    let mut detected = HashMap::new();
    let mut not_mailboxes = Vec::new();
    for f in files {
        if folders.iter().any(|s| s.file == f) {
            continue;
        }
        if in_backup {
            // No manifest entry: the unrecorded first file of an interrupted
            // backup, or a file added to the directory by hand.
            crate::log::warn(format!(
                "{}: skipped, the backup's manifest records no message in it (an interrupted backup, or a file added later: restore it on its own)",
                layout.base.join(&f).display()
            ));
            continue;
        }
        let Some((format, full)) = detect_file(layout, &f, opts)? else {
            not_mailboxes.push(f);
            continue;
        };
        detected.insert(f.clone(), format);
        add_folders(folders, f, &full, format, opts.labels_as_folders)?;
    }
    Ok((detected, not_mailboxes))
}

/// A file without a manifest, read as a mailbox: its format and full path, or
/// `None` when it is not one (skipped, said with `-v`) or is empty with nothing
/// saying it is one.
fn detect_file(
    layout: &Layout,
    f: &str,
    opts: ReadOptions,
) -> anyhow::Result<Option<(Format, PathBuf)>> {
    if let Err(rule) = checked_file(layout, f) {
        return Err(input(format!(
            "{}: the file {rule}; mailferry reads only files inside the directory it is given (copy the file in instead of linking to it)",
            layout.base.display()
        )));
    }
    let full = layout.base.join(f);
    // A file the user named, or a `.mbox` file, must be a mailbox; other
    // files in a directory (a mail client's indexes and settings) may not be.
    let named = layout.single.is_some() || f.ends_with(".mbox");
    let (data, whole) =
        sample(&full).map_err(|e| input(format!("cannot read {}: {e}", full.display())))?;
    let d = match mbox::detect(&data, whole) {
        Ok(d) => d,
        Err(why) if named => {
            return Err(input(format!("{}: {why}", full.display())));
        }
        Err(why) => {
            crate::log::info(format!("{}: skipped, {why}", full.display()));
            return Ok(None);
        }
    };
    let empty = data
        .iter()
        .all(|b| b.is_ascii_whitespace() || BOM_BYTES.contains(b));
    if empty && !named && !layout.base.join(format!("{f}.msf")).exists() {
        return Ok(None);
    }
    let format = chosen_format(opts.format, d.format);
    if !empty {
        crate::log::info(format!(
            "{}: {}{} ({}){}",
            full.display(),
            format.name(),
            if d.crlf { ", CRLF line endings" } else { "" },
            if opts.format.is_some() {
                "as --mbox-format says".to_string()
            } else {
                d.why
            },
            ""
        ));
    }
    Ok(Some((format, full)))
}

/// The format a file is read in: `--mbox-format` when given (dateless when the
/// file's separators are), else the one detected.
fn chosen_format(forced: Option<Format>, detected: Format) -> Format {
    match forced {
        Some(forced) => Format {
            dateless: forced.dateless || detected.dateless,
            ..forced
        },
        None => detected,
    }
}

/// A mailbox file's folders: its own, named after the file, or with
/// `--labels-as-folders` and labels in it, one per label not listed yet.
fn add_folders(
    folders: &mut Vec<Spec>,
    f: String,
    full: &Path,
    format: Format,
    labels_as_folders: bool,
) -> anyhow::Result<()> {
    let own = folder_of_file(&f);
    if labels_as_folders {
        let labels = label_folders_of(full, format)?;
        if !labels.is_empty() {
            for (label, role) in labels {
                let folder = safe_folder(&label);
                if folders.iter().any(|s| s.folder == folder) {
                    continue;
                }
                folders.push(Spec {
                    folder,
                    file: f.clone(),
                    label: true,
                    attrs: role.map(|r| vec![r.to_string()]).unwrap_or_default(),
                });
            }
            return Ok(());
        }
    }
    folders.push(Spec {
        folder: own,
        file: f,
        label: false,
        attrs: Vec::new(),
    });
    Ok(())
}

/// Why a path holds no mailbox: no files, or the files that are not mbox files
/// (the first five named).
fn no_mailbox_why(not_mailboxes: &[String]) -> String {
    if not_mailboxes.is_empty() {
        "it holds no files".to_string()
    } else {
        format!(
            "none of its {} files is an mbox file (mbox, mboxcl, MMDF, a Thunderbird folder): {}",
            not_mailboxes.len(),
            not_mailboxes
                .iter()
                .take(5)
                .map(|f| shown(f.as_bytes()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// A file opened for reading; the error names it.
fn open_for_reading(path: &Path) -> anyhow::Result<File> {
    File::open(path).map_err(|e| input(format!("cannot read {}: {e}", path.display())))
}

/// The next manifest line for a message with this content (`fp`): the k-th message
/// with the same content takes the k-th line recorded with it, the last one again
/// once they run out.
fn take_match(
    by_sha: &HashMap<u128, Vec<u64>>,
    uses: &mut HashMap<u128, usize>,
    fp: u128,
) -> Option<u64> {
    by_sha.get(&fp).map(|ats| {
        let k = uses.entry(fp).or_default();
        let at = ats[(*k).min(ats.len() - 1)];
        *k += 1;
        at
    })
}

/// A manifest's internaldate parsed: the manifest is a file anyone may have edited,
/// so its date is parsed, never copied into a command as text.
fn manifest_date(internaldate: Option<&str>) -> Option<Result<ImapDate, String>> {
    internaldate.map(|d| {
        ImapDate::parse(d).ok_or_else(|| {
            format!(
                "the manifest's internaldate {} is not an IMAP date-time",
                crate::imap::types::shown(d.as_bytes())
            )
        })
    })
}

/// A recorded message's flags: the manifest's IMAP flags, then each of `extra` (from
/// headers a mail client added) not there yet, whatever its case; and the manifest's
/// flags that are not IMAP flags, left out.
fn manifest_flags(recorded: Vec<String>, extra: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (mut flags, bad): (Vec<String>, Vec<String>) =
        recorded.into_iter().partition(|f| valid_flag(f));
    for f in extra {
        if !flags.iter().any(|g| g.eq_ignore_ascii_case(&f)) {
            flags.push(f);
        }
    }
    (flags, bad)
}

/// A message the manifest records, as it was backed up: the original found inside
/// it (without the headers mail clients add, their flags kept), else the message
/// whole; the manifest's flags and date. `listing`: warnings are given.
fn recorded_message(
    n: u64,
    m: mbox::Entry,
    e: Entry,
    path: &Path,
    listing: bool,
) -> (Meta, Vec<u8>) {
    let pick = originals(&m.message)
        .into_iter()
        .find(|(o, _)| o.len() as u64 == e.size && dedupe::sha256_hex(o) == e.sha256);
    let (body, extra) = match pick {
        Some((o, stripped)) => {
            let extra = if stripped {
                mbox::marks(&m.message, false).flags
            } else {
                Vec::new()
            };
            (o, extra)
        }
        None => {
            if listing {
                crate::log::warn(format!(
                    "{}: the message at byte {} differs from what the manifest recorded; copying it whole as it is",
                    path.display(),
                    m.offset
                ));
            }
            (m.message, Vec::new())
        }
    };
    let date = manifest_date(e.internaldate.as_deref());
    let problem = date.as_ref().and_then(|d| d.as_ref().err().cloned());
    // Its flags too: only IMAP flags go on; the message is still copied.
    let (flags, bad) = manifest_flags(e.flags, extra);
    if !bad.is_empty() && listing {
        crate::log::warn(format!(
            "{}: the message at byte {} is copied without the manifest's flags {}, which are not IMAP flags",
            path.display(),
            m.offset,
            bad.iter()
                .map(|f| shown(f.as_bytes()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let sha = dedupe::sha256_hex(&body);
    (
        Meta {
            id: format!("{}:{}", m.offset, &sha[..16]),
            order: n,
            size: body.len() as u64,
            flags,
            internal_date: date.and_then(Result::ok),
            problem,
            flags_missing: false,
        },
        body,
    )
}

impl Source for MboxSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn folders(&mut self) -> anyhow::Result<Tree> {
        Ok(Tree {
            entries: self
                .folders
                .iter()
                .map(|s| ListEntry {
                    attrs: s.attrs.clone(),
                    delim: Some('/'),
                    raw: utf7::encode(&s.folder).into_bytes(),
                })
                .collect(),
            prefix: String::new(),
            delim: Some('/'),
        })
    }

    fn open(&mut self, raw: &[u8]) -> anyhow::Result<Opened> {
        let folder =
            utf7::decode(raw).unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned());
        let spec = self
            .folders
            .iter()
            .find(|s| s.folder == folder)
            .cloned()
            .ok_or_else(|| input(format!("no folder {folder} in {}", self.name)))?;
        let file = spec.file.clone();
        // Checked again on opening: the directory may have changed since.
        let path = if self.single.as_deref() == Some(file.as_str()) {
            self.base.join(&file)
        } else {
            inside(&self.base, &file).map_err(|rule| {
                input(format!(
                    "{}: the file {rule}; restore reads only files inside {}",
                    self.name,
                    self.base.display()
                ))
            })?
        };
        self.lister = None;
        self.current = None;
        let state = match self.files.get(&file) {
            Some(s) => s.clone(),
            None => {
                let s = self.state_for(&file, &path)?;
                self.files.insert(file.clone(), s.clone());
                s
            }
        };
        let len = state.len;
        self.current = Some(OpenFile { spec, path, state });
        // How many messages the file holds is known only once it is read: say 1
        // for a file with bytes in it (the engine lists it), 0 for an empty one.
        Ok(Opened {
            uidvalidity: 0,
            count: u64::from(len > 0),
        })
    }

    fn listing(&mut self) -> anyhow::Result<Vec<Meta>> {
        let mut all = Vec::new();
        let mut page = 0;
        while let Some(p) = self.listing_page(page, crate::engine::LISTING_PAGE)? {
            all.extend(p);
            page += 1;
        }
        Ok(all)
    }

    fn listing_page(&mut self, page: usize, max: usize) -> anyhow::Result<Option<Vec<Meta>>> {
        if page == 0 {
            self.lister = Some((self.reader(self.open_file()?, 0, 256 * 1024)?, 0));
        }
        let Some((mut reader, mut n)) = self.lister.take() else {
            return Ok(None);
        };
        let mut out = Vec::new();
        let mut read = 0;
        while read < max.max(1) {
            let Some(m) = reader.next_entry()? else { break };
            read += 1;
            if let Some((meta, _)) = self.entry(n, m, true)? {
                out.push(meta);
            }
            n += 1;
        }
        if read == 0 {
            return Ok(None);
        }
        self.lister = Some((reader, n));
        Ok(Some(out))
    }

    fn fetch(&mut self, metas: &[Meta], each: &mut dyn FnMut(&str, Vec<u8>)) -> anyhow::Result<()> {
        // One open file for the batch, read from each message's offset.
        let f = self.open_file()?;
        for want in metas {
            let Some(offset) = want.id.split(':').next().and_then(|o| o.parse().ok()) else {
                continue;
            };
            let Some(m) = self.reader(&f, offset, 64 * 1024)?.next_entry()? else {
                continue;
            };
            // Only the message that was listed: a file changed since is not trusted.
            if let Some((meta, body)) = self.entry(want.order, m, false)? {
                if meta.id == want.id {
                    each(&want.id, body);
                }
            }
        }
        Ok(())
    }

    fn take_notes(&mut self) -> Vec<String> {
        let mut notes = std::mem::take(&mut self.notes);
        for (path, (deleted, placeholders)) in std::mem::take(&mut self.skipped) {
            if !deleted.is_empty() {
                notes.push(format!(
                    "{path}: {} messages Thunderbird marks as deleted (not yet compacted away) were left out",
                    deleted.len()
                ));
            }
            if !placeholders.is_empty() {
                notes.push(format!(
                    "{path}: the \"DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\" placeholder (UW-IMAP, Dovecot) was left out"
                ));
            }
        }
        notes
    }

    fn close(&mut self) {
        self.current = None;
        self.lister = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_format_keeps_dateless_separators() {
        let rd = Format::plain(Dialect::Rd);
        let o = Format::plain(Dialect::O);
        let dateless = |f: Format| Format {
            dateless: true,
            ..f
        };
        for (forced, detected, want) in [
            (None, o, o),
            (None, dateless(o), dateless(o)),
            (Some(rd), o, rd),
            (Some(rd), dateless(o), dateless(rd)),
            (Some(dateless(rd)), o, dateless(rd)),
        ] {
            assert_eq!(
                chosen_format(forced, detected),
                want,
                "{forced:?} {detected:?}"
            );
        }
    }

    #[test]
    fn same_content_takes_the_recorded_lines_in_turn() {
        let by_sha = HashMap::from([(1u128, vec![10, 20]), (2, vec![30])]);
        let mut uses = HashMap::new();
        let got: Vec<_> = [1, 2, 1, 1, 3, 2]
            .into_iter()
            .map(|fp| take_match(&by_sha, &mut uses, fp))
            .collect();
        assert_eq!(
            got,
            [Some(10), Some(30), Some(20), Some(20), None, Some(30)]
        );
    }

    #[test]
    fn manifest_flags_are_imap_flags_and_client_flags_added() {
        let v = |s: &[&str]| s.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        for (recorded, extra, flags, bad) in [
            (v(&["\\Seen"]), v(&[]), v(&["\\Seen"]), v(&[])),
            (
                v(&["\\Seen", "bad flag", "$Label1"]),
                v(&[]),
                v(&["\\Seen", "$Label1"]),
                v(&["bad flag"]),
            ),
            (
                v(&["\\Seen"]),
                v(&["\\SEEN", "\\Flagged"]),
                v(&["\\Seen", "\\Flagged"]),
                v(&[]),
            ),
        ] {
            assert_eq!(
                manifest_flags(recorded.clone(), extra.clone()),
                (flags, bad),
                "{recorded:?} {extra:?}"
            );
        }
    }

    #[test]
    fn manifest_dates_are_parsed_or_named() {
        assert!(manifest_date(None).is_none());
        assert!(matches!(
            manifest_date(Some("01-Jan-2020 10:00:00 +0000")),
            Some(Ok(_))
        ));
        assert_eq!(
            manifest_date(Some("yesterday")).and_then(Result::err),
            Some("the manifest's internaldate \"yesterday\" is not an IMAP date-time".into())
        );
    }

    #[test]
    fn why_no_mailbox() {
        assert_eq!(no_mailbox_why(&[]), "it holds no files");
        let files: Vec<String> = (1..=7).map(|i| format!("f{i}")).collect();
        let why = no_mailbox_why(&files);
        assert!(
            why.starts_with("none of its 7 files is an mbox file"),
            "{why}"
        );
        assert!(why.contains("f5") && !why.contains("f6"), "{why}");
    }
}
