//! mbox files as a source: a backup directory written by `mailferry backup` (with its
//! manifest), a single mbox file, or a directory of mbox files from another tool.
//!
//! With a manifest, each message gets back its folder, flags, INTERNALDATE and exact
//! size (the writer adds a final newline to a message that had none; the size cuts it
//! off again) and its SHA-256 is checked. Without one, the folder is the file's path
//! (`Archive/2019.mbox` → `Archive/2019`, `INBOX.mbox` → INBOX), flags come from
//! `Status:`/`X-Status:` headers and the date from the `From ` line. Message ids are
//! the byte offset and a hash of the message: a file rewritten by another program
//! (compacted, exported again) gets new ids where its content changed.
//! Files are read as streams, one message at a time: listing a folder reads its file
//! once (for sizes, hashes, flags and dates) and fetching seeks to each message's
//! offset, so memory is bounded by the largest message, not by the file.
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

use std::collections::{HashMap, HashSet};
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
use crate::mbox::{self, Dialect};

pub struct MboxSource {
    name: String,
    /// The directory the files are in, canonical.
    base: PathBuf,
    /// The one file the user named (`FILE.mbox`), which may be a link to anywhere.
    single: Option<String>,
    dialect: Dialect,
    /// Folder name → file (relative to `base`).
    folders: Vec<(String, String)>,
    /// A backup's manifest, held compactly: (file number, message offset) → where
    /// the entry's line starts in the manifest, read again when the message is
    /// listed or fetched. About 30 bytes per message instead of the whole entry.
    manifest: HashMap<(u32, u64), u64>,
    /// File name → its number in `manifest`.
    file_ids: HashMap<String, u32>,
    /// The manifest, and where its reader stands.
    manifest_reader: Option<(BufReader<File>, u64)>,
    /// For a mailferry backup: where each file's recorded messages end. Bytes past
    /// that were written by an interrupted backup and are not messages.
    ends: Option<HashMap<String, u64>>,
    /// The open folder.
    current: Option<OpenFile>,
    /// The listing in progress: its reader and the ordinal of its next message.
    lister: Option<(mbox::Reader<BufReader<Take<File>>>, u64)>,
}

struct OpenFile {
    folder: String,
    /// Relative to `base`, as the manifest names it.
    file: String,
    path: PathBuf,
    /// How many bytes of the file hold messages (a backup's unrecorded tail is not).
    len: u64,
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
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
            walk(&e.path(), &rel_name, out)?;
        } else if name.ends_with(".mbox") {
            out.push(rel_name);
        }
    }
    Ok(())
}

fn folder_of_file(file: &str) -> String {
    let stem = file.strip_suffix(".mbox").unwrap_or(file);
    if stem.eq_ignore_ascii_case("inbox") {
        "INBOX".into()
    } else {
        safe_folder(stem)
    }
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

/// Flags from mutt/Thunderbird-style `Status:` and `X-Status:` headers.
fn flags_from_headers(msg: &[u8]) -> Vec<String> {
    let mut flags = Vec::new();
    let status = dedupe::header(msg, "Status").unwrap_or_default();
    let x = dedupe::header(msg, "X-Status").unwrap_or_default();
    let has = |v: &[u8], c: u8| v.contains(&c);
    if has(&status, b'R') {
        flags.push("\\Seen".to_string());
    }
    for (c, f) in [
        (b'A', "\\Answered"),
        (b'F', "\\Flagged"),
        (b'T', "\\Draft"),
        (b'D', "\\Deleted"),
    ] {
        if has(&x, c) {
            flags.push(f.to_string());
        }
    }
    flags
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
        let in_backup = layout.manifest.exists();
        let mut folders: Vec<(String, String)> = Vec::new();
        let mut manifest = HashMap::new();
        let mut file_ids: HashMap<String, u32> = HashMap::new();
        // Where the last recorded message of each file ends.
        let mut ends: HashMap<String, u64> = HashMap::new();
        // Each folder name as the manifest has it → the name used (made safe).
        let mut names: HashMap<String, String> = HashMap::new();
        let mut line = 0u64;
        let mut bad: Option<String> = None;
        let mut seen_files: HashSet<String> = HashSet::new();
        let checked = |file: &str| -> Result<(), String> {
            if layout.single.as_deref() == Some(file) {
                return Ok(());
            }
            inside(&layout.base, file).map(drop)
        };
        backup::each_manifest_line(&layout.manifest, false, |at, e| {
            line += 1;
            if bad.is_some() {
                return;
            }
            if !seen_files.contains(&e.file) {
                seen_files.insert(e.file.clone());
                if let Err(rule) = checked(&e.file) {
                    bad = Some(format!(
                        "{} line {line}: the file {rule}; restore reads only files inside {} (the manifest was changed outside mailferry)",
                        layout.manifest.display(),
                        layout.base.display()
                    ));
                    return;
                }
            }
            let folder = match names.get(&e.folder) {
                Some(f) => f.clone(),
                None => {
                    let safe = safe_folder(&e.folder);
                    if let Some((other, _)) = names.iter().find(|(_, s)| **s == safe) {
                        bad = Some(format!(
                            "{} line {line}: folders {} and {} would both be restored as {}; rename one in the manifest",
                            layout.manifest.display(),
                            shown(other.as_bytes()),
                            shown(e.folder.as_bytes()),
                            shown(safe.as_bytes())
                        ));
                        return;
                    }
                    if safe != e.folder {
                        crate::log::warn(format!(
                            "{} line {line}: folder {} is restored as {} (a folder name has no control characters and no empty, . or .. parts)",
                            layout.manifest.display(),
                            shown(e.folder.as_bytes()),
                            shown(safe.as_bytes())
                        ));
                    }
                    names.insert(e.folder.clone(), safe.clone());
                    safe
                }
            };
            if !folders.iter().any(|(f, _)| *f == folder) {
                folders.push((folder, e.file.clone()));
            }
            backup::note_end(&mut ends, &e);
            if !e.duplicate {
                let next = file_ids.len() as u32;
                let id = *file_ids.entry(e.file).or_insert(next);
                manifest.insert((id, e.offset), at);
            }
        })?;
        if let Some(bad) = bad {
            return Err(input(bad));
        }
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
                walk(&layout.base, "", &mut v)?;
                v
            }
        };
        for f in files {
            if !folders.iter().any(|(_, file)| *file == f) {
                if let Err(rule) = checked(&f) {
                    return Err(input(format!(
                        "{}: the file {rule}; mailferry reads only files inside the directory it is given (copy the file in instead of linking to it)",
                        layout.base.display()
                    )));
                }
                folders.push((folder_of_file(&f), f));
            }
        }
        Ok(MboxSource {
            name: format!("mbox:{}", path.display()),
            base: layout.base,
            single: layout.single,
            dialect,
            folders,
            manifest,
            file_ids,
            manifest_reader,
            ends: in_backup.then_some(ends),
            current: None,
            lister: None,
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
        let rest = self.file()?.len.saturating_sub(offset);
        Ok(mbox::Reader::new(
            BufReader::with_capacity(buffer, f.take(rest)),
            self.dialect,
            offset,
        ))
    }

    /// The message's metadata and bytes, or `None` when the manifest files it under
    /// another folder.
    /// `listing`: warnings about the message are given (not again when fetching).
    fn entry(
        &mut self,
        n: u64,
        m: mbox::Entry,
        listing: bool,
    ) -> anyhow::Result<Option<(Meta, Vec<u8>)>> {
        let of = self.file()?;
        let (folder, path) = (of.folder.clone(), of.path.clone());
        let at = self
            .file_ids
            .get(&of.file)
            .and_then(|id| self.manifest.get(&(*id, m.offset)))
            .copied();
        let recorded: Option<Entry> = match (at, self.manifest_reader.as_mut()) {
            (Some(at), Some((r, pos))) => Some(backup::manifest_entry_at(r, pos, at)?),
            _ => None,
        };
        let mut body = m.message;
        let meta = match recorded {
            Some(e) if safe_folder(&e.folder) != folder => return Ok(None),
            Some(e) => {
                if (body.len() as u64) > e.size {
                    body.truncate(e.size as usize);
                }
                let sha = dedupe::sha256_hex(&body);
                if sha != e.sha256 && listing {
                    crate::log::warn(format!(
                        "{}: the message at byte {} differs from what the manifest recorded; copying it as it is",
                        path.display(),
                        m.offset
                    ));
                }
                // The manifest is a file anyone may have edited: its date is
                // parsed, never copied into a command as text.
                let date = e.internaldate.as_deref().map(|d| {
                    ImapDate::parse(d).ok_or_else(|| {
                        format!(
                            "the manifest's internaldate {} is not an IMAP date-time",
                            crate::imap::types::shown(d.as_bytes())
                        )
                    })
                });
                let problem = date.as_ref().and_then(|d| d.as_ref().err().cloned());
                // Its flags too: only IMAP flags go on; the message is still copied.
                let (flags, bad): (Vec<String>, Vec<String>) =
                    e.flags.into_iter().partition(|f| valid_flag(f));
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
                Meta {
                    id: format!("{}:{}", m.offset, &sha[..16]),
                    order: n,
                    size: body.len() as u64,
                    flags,
                    internal_date: date.and_then(Result::ok),
                    problem,
                }
            }
            None => Meta {
                id: format!("{}:{}", m.offset, &dedupe::sha256_hex(&body)[..16]),
                order: n,
                size: body.len() as u64,
                flags: flags_from_headers(&body),
                internal_date: mbox::from_line_date(&m.from_line).and_then(ImapDate::from_datetime),
                problem: None,
            },
        };
        Ok(Some((meta, body)))
    }
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
                .map(|(f, _)| ListEntry {
                    attrs: Vec::new(),
                    delim: Some('/'),
                    raw: utf7::encode(f).into_bytes(),
                })
                .collect(),
            prefix: String::new(),
            delim: Some('/'),
        })
    }

    fn open(&mut self, raw: &[u8]) -> anyhow::Result<Opened> {
        let folder =
            utf7::decode(raw).unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned());
        let file = self
            .folders
            .iter()
            .find(|(f, _)| *f == folder)
            .map(|(_, file)| file.clone())
            .ok_or_else(|| input(format!("no folder {folder} in {}", self.name)))?;
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
        let mut len = std::fs::metadata(&path)
            .map_err(|e| input(format!("cannot read {}: {e}", path.display())))?
            .len();
        if let Some(ends) = &self.ends {
            let end = ends.get(&file).copied().unwrap_or(0);
            if len > end {
                crate::log::warn(format!(
                    "{}: ignoring {} bytes after the last recorded message (an interrupted backup left them)",
                    path.display(),
                    len - end
                ));
                len = end;
            }
        }
        self.lister = None;
        self.current = Some(OpenFile {
            folder,
            file,
            path,
            len,
        });
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

    fn close(&mut self) {
        self.current = None;
        self.lister = None;
    }
}
