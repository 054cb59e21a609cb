//! A Maildir++ tree as a target (`backup --format maildir`), laid out as Dovecot
//! and mbsync read it: `DIR/{cur,new,tmp}` is INBOX, `DIR/.Name.Sub/{cur,new,tmp}`
//! (with a `maildirfolder` file) the folder `Name/Sub`. Folder names are written in
//! modified UTF-7, as Dovecot's Maildir++ layout stores them, with `.` as the
//! hierarchy separator: a `.` inside a source folder's name cannot be told from it,
//! so it becomes `_` (`v1.2` → `v1_2`, as when copying to an IMAP server whose
//! delimiter is `.`); a name the layout cannot hold at all (a `/`, an empty level)
//! is refused, and the engine stores the folder under its plain name and says so.
//! A backup keeps the source's folder names (no special-use renaming).
//!
//! Each message is written to `tmp/`, synced, given INTERNALDATE as its mtime, and
//! renamed into `cur/` under a unique name with the `:2,` info: the flags as
//! Maildir letters in ASCII order (`D` \Draft, `F` \Flagged, `P` $Forwarded, `R`
//! \Answered, `S` \Seen, `T` \Deleted), then keywords as the letters `a`–`z` that
//! the folder's `dovecot-keywords` file assigns (Dovecot's scheme; a folder holds at
//! most 26 keywords, further ones are left out and said). Message bytes are stored
//! as they are.
//!
//! Invariants: a message is in `cur/` whole or not at all (the rename), the
//! keywords file names its keywords before the message is renamed, and the batch's
//! renames are synced (the `cur/` directory fsync'd) before the index records it.
//! What a folder already holds is found by size and hashed when a message to store
//! has that size, so a run whose records were lost (a crash, a deleted index)
//! stores nothing twice. Files and directories made are their owner's only.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{CreateError, Held, Opened, Outgoing, Stored, Target};
use crate::dedupe::{self, Mode};
use crate::engine::Options;
use crate::error::{input, local};
use crate::folders::TargetLayout;
use crate::imap::utf7;
use crate::index::Index;
use crate::log;

/// The Maildir letters of system flags (and `$Forwarded`, mbsync's "passed").
const LETTERS: &[(&str, char)] = &[
    ("\\Draft", 'D'),
    ("\\Flagged", 'F'),
    ("$Forwarded", 'P'),
    ("\\Answered", 'R'),
    ("\\Seen", 'S'),
    ("\\Deleted", 'T'),
];

/// The keywords file of a Maildir folder, as Dovecot reads and writes it.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";

/// A Maildir++ tree being written.
pub struct MaildirTarget {
    root: PathBuf,
    /// The open folder's directory and name.
    dir: PathBuf,
    name: String,
    /// Its keywords, by letter (`a` is the first).
    keywords: Vec<String>,
    /// Files of the open folder not yet hashed, by size.
    by_size: HashMap<u64, Vec<PathBuf>>,
    /// Whether a rename into `cur/` is not yet synced.
    unsynced: bool,
    /// For unique file names.
    counter: u64,
    host: String,
}

impl MaildirTarget {
    /// The tree at `root`; with `write`, its INBOX directories are made (a dry run
    /// writes nothing).
    pub fn new(root: &Path, write: bool) -> anyhow::Result<MaildirTarget> {
        let root =
            std::path::absolute(root).map_err(|e| input(format!("{}: {e}", root.display())))?;
        if write {
            for sub in ["", "cur", "new", "tmp"] {
                private_dir(&root.join(sub))?;
            }
        }
        Ok(MaildirTarget {
            dir: root.clone(),
            root,
            name: String::new(),
            keywords: Vec::new(),
            by_size: HashMap::new(),
            unsynced: false,
            counter: 0,
            host: host_name(),
        })
    }

    /// The directory of folder `name` (decoded, `.` between levels).
    fn folder_dir(&self, name: &str) -> PathBuf {
        if name.eq_ignore_ascii_case("INBOX") {
            self.root.clone()
        } else {
            self.root.join(format!(".{}", utf7::encode(name)))
        }
    }

    /// Write one message: tmp/, synced, mtime, renamed into cur/.
    fn write(&mut self, o: &Outgoing<'_>) -> anyhow::Result<()> {
        let info = self.info(o.flags)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.counter += 1;
        let base = format!(
            "{}.M{}P{}Q{}.{},S={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.counter,
            self.host,
            o.body.len()
        );
        let tmp = self.dir.join("tmp").join(&base);
        let cur = self.dir.join("cur").join(format!("{base}:2,{info}"));
        let fail = |e: std::io::Error| local(format!("cannot write {}: {e}", tmp.display()));
        let mut f = private_file(&tmp).map_err(fail)?;
        f.write_all(o.body)
            .and_then(|()| f.sync_all())
            .map_err(fail)?;
        if let Some(d) = o.date {
            let secs = d.datetime().timestamp();
            let at = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
            f.set_modified(at).map_err(fail)?;
        }
        drop(f);
        fs::rename(&tmp, &cur)
            .map_err(|e| local(format!("cannot write {}: {e}", cur.display())))?;
        self.unsynced = true;
        Ok(())
    }

    /// The `:2,` info of a message's flags; new keywords are added to the
    /// folder's keywords file first.
    fn info(&mut self, flags: &[String]) -> anyhow::Result<String> {
        let mut letters = Vec::new();
        let mut added = false;
        for f in flags {
            if let Some((_, l)) = LETTERS.iter().find(|(n, _)| n.eq_ignore_ascii_case(f)) {
                letters.push(*l);
                continue;
            }
            if f.starts_with('\\') {
                continue;
            }
            let at = match self.keywords.iter().position(|k| k.eq_ignore_ascii_case(f)) {
                Some(at) => at,
                None if self.keywords.len() < 26 => {
                    self.keywords.push(f.clone());
                    added = true;
                    self.keywords.len() - 1
                }
                None => {
                    log::warn(format!(
                        "{}: a Maildir folder holds at most 26 keywords; {f} is left out",
                        self.name
                    ));
                    continue;
                }
            };
            letters.push((b'a' + at as u8) as char);
        }
        if added {
            self.write_keywords()?;
        }
        letters.sort_unstable();
        letters.dedup();
        Ok(letters.into_iter().collect())
    }

    /// `dovecot-keywords`: "N keyword" a line, replaced whole and synced.
    fn write_keywords(&self) -> anyhow::Result<()> {
        let path = self.dir.join(KEYWORDS_FILE);
        let tmp = self.dir.join(format!("{KEYWORDS_FILE}.mailferry-tmp"));
        let text: String = self
            .keywords
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{i} {k}\n"))
            .collect();
        private_file(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&tmp, &path))
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|e| local(format!("cannot write {}: {e}", path.display())))
    }

    /// Whether `dir` is inside the tree (not reached through a link leading out).
    fn inside(&self, dir: &Path) -> anyhow::Result<()> {
        let (Ok(root), Ok(real)) = (self.root.canonicalize(), dir.canonicalize()) else {
            return Ok(());
        };
        if real.starts_with(&root) {
            return Ok(());
        }
        Err(input(format!(
            "{} leads out of the Maildir {} (through a symbolic link, to {}); a backup writes only inside its directory",
            dir.display(),
            self.root.display(),
            real.display()
        )))
    }
}

impl Target for MaildirTarget {
    fn describe(&self) -> String {
        format!("maildir:{}", self.root.display())
    }

    fn layout(&mut self) -> anyhow::Result<TargetLayout> {
        let mut existing = vec![vec!["INBOX".to_string()]];
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(folder) = name.strip_prefix('.').filter(|n| !n.is_empty()) else {
                    continue;
                };
                if e.path().join("cur").is_dir() {
                    let decoded = crate::engine::decode_name(folder.as_bytes());
                    existing.push(decoded.split('.').map(str::to_string).collect());
                }
            }
        }
        Ok(TargetLayout {
            delim: Some('.'),
            prefix: String::new(),
            roles: HashMap::new(),
            existing,
        })
    }

    fn exists(&self, name: &str) -> bool {
        self.folder_dir(name).join("cur").is_dir()
    }

    fn create(&mut self, name: &str, _role: Option<&str>) -> Result<(), CreateError> {
        if name.is_empty() || name.contains('/') || name.split('.').any(str::is_empty) {
            return Err(CreateError::Refused(format!(
                "{name:?} cannot be a Maildir++ folder name (a `/` or an empty level)"
            )));
        }
        let dir = self.folder_dir(name);
        log::info(format!("creating {name} ({})", dir.display()));
        let made = (|| -> anyhow::Result<()> {
            private_dir(&dir)?;
            self.inside(&dir)?;
            for sub in ["cur", "new", "tmp"] {
                private_dir(&dir.join(sub))?;
            }
            private_file(&dir.join("maildirfolder"))
                .map_err(|e| local(format!("cannot create {}: {e}", dir.display())))?;
            sync_dir(&self.root)
                .map_err(|e| local(format!("cannot sync {}: {e}", self.root.display())))
        })();
        made.map_err(CreateError::Other)
    }

    fn open(&mut self, name: &str, _index: &Index, dedupe: Mode) -> anyhow::Result<Opened> {
        self.name = name.to_string();
        self.dir = self.folder_dir(name);
        self.inside(&self.dir)?;
        self.keywords = read_keywords(&self.dir.join(KEYWORDS_FILE));
        self.by_size.clear();
        if dedupe != Mode::None {
            for sub in ["cur", "new"] {
                let Ok(entries) = fs::read_dir(self.dir.join(sub)) else {
                    continue;
                };
                for e in entries.flatten() {
                    if let Some(size) = e.metadata().ok().filter(|m| m.is_file()).map(|m| m.len()) {
                        self.by_size.entry(size).or_default().push(e.path());
                    }
                }
            }
        }
        // Maildir has no UIDs: what the folder holds is found by hashing.
        Ok(Opened::default())
    }

    fn may_hold(&self, body: &[u8]) -> bool {
        sizes_of(body).iter().any(|s| self.by_size.contains_key(s))
    }

    fn check(
        &mut self,
        bodies: &[&[u8]],
        dedupe: Mode,
    ) -> anyhow::Result<Vec<(Option<u32>, String)>> {
        let mut found = Vec::new();
        for size in bodies.iter().flat_map(|b| sizes_of(b)) {
            for path in self.by_size.remove(&size).unwrap_or_default() {
                // A file renamed or removed meanwhile (a mail client) is simply not there.
                if let Ok(data) = fs::read(&path) {
                    found.push((None, dedupe::key(&data, dedupe)));
                }
            }
        }
        Ok(found)
    }

    fn store(&mut self, batch: &[Outgoing<'_>]) -> Vec<Stored> {
        let mut out = Vec::with_capacity(batch.len());
        for o in batch {
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

    fn durable(&mut self) -> anyhow::Result<()> {
        if std::mem::take(&mut self.unsynced) {
            let cur = self.dir.join("cur");
            sync_dir(&cur).map_err(|e| local(format!("cannot sync {}: {e}", cur.display())))?;
        }
        Ok(())
    }

    fn keeps_names(&self) -> bool {
        true
    }

    /// The files of the folder's `cur/` and `new/`, one at a time; ids are
    /// `cur/NAME` or `new/NAME`.
    fn held(&mut self, name: &str, dedupe: Mode, _opts: &Options) -> anyhow::Result<Held> {
        let dir = self.folder_dir(name);
        if !dir.join("cur").is_dir() {
            return Ok(None);
        }
        self.inside(&dir)?;
        let mut out = Vec::new();
        for sub in ["cur", "new"] {
            let Ok(entries) = fs::read_dir(dir.join(sub)) else {
                continue;
            };
            let mut files: Vec<_> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name())
                .collect();
            files.sort();
            for file in files {
                // A file renamed or removed meanwhile (a mail client) is not there.
                if let Ok(data) = fs::read(dir.join(sub).join(&file)) {
                    let id = format!("{sub}/{}", file.to_string_lossy());
                    out.push((id, dedupe::key(&data, dedupe)));
                }
            }
        }
        Ok(Some(out))
    }

    fn close(&mut self) {}
}

/// The sizes a stored copy of `body` may have: as it is, or with CRLF line ends.
fn sizes_of(body: &[u8]) -> Vec<u64> {
    let mut v = vec![body.len() as u64, dedupe::crlf_len(body)];
    v.dedup();
    v
}

/// A folder's keywords by letter, from its `dovecot-keywords` ("N keyword" lines);
/// none when there is no such file.
fn read_keywords(path: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Ok(text) = fs::read_to_string(path) else {
        return out;
    };
    let mut by_number: Vec<(usize, String)> = text
        .lines()
        .filter_map(|l| {
            let (n, k) = l.split_once(' ')?;
            Some((n.parse().ok().filter(|&n: &usize| n < 26)?, k.to_string()))
        })
        .collect();
    by_number.sort();
    let mut taken = HashSet::new();
    for (n, k) in by_number {
        if taken.insert(n) {
            // A gap keeps its letter unused: a placeholder nobody matches.
            while out.len() < n {
                out.push(format!("\\unused{}", out.len()));
            }
            out.push(k);
        }
    }
    out
}

/// This machine's name, as Maildir file names carry it (`/` and `:` cannot be in one).
fn host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if host.is_empty() {
        "mailferry".into()
    } else {
        host
    }
}

/// Create a directory (and missing parents) open to its owner only.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| local(format!("cannot create {}: {e}", dir.display())))
}

/// Create a new file readable by its owner only.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// fsync a directory, so the renames and creations in it are durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_become_letters_in_ascii_order_and_keywords_letters_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = MaildirTarget::new(dir.path(), true).unwrap();
        // (flags, info, keywords file after)
        let table: &[(&[&str], &str, &str)] = &[
            (&[], "", ""),
            (&["\\Seen", "\\Answered", "\\Flagged"], "FRS", ""),
            (
                &["\\Deleted", "\\Draft", "\\Recent", "$Forwarded"],
                "DPT",
                "",
            ),
            (&["\\Seen", "Work", "$Label1"], "Sab", "0 Work\n1 $Label1\n"),
            (&["$label1", "Other"], "bc", "0 Work\n1 $Label1\n2 Other\n"),
        ];
        for (flags, info, file) in table {
            assert_eq!(t.info(&s(flags)).unwrap(), *info, "{flags:?}");
            let written = fs::read_to_string(dir.path().join(KEYWORDS_FILE)).unwrap_or_default();
            assert_eq!(written, *file, "{flags:?}");
        }
        assert_eq!(
            read_keywords(&dir.path().join(KEYWORDS_FILE)),
            s(&["Work", "$Label1", "Other"])
        );
    }

    #[test]
    fn folder_names_map_to_maildir_plus_plus_directories() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = MaildirTarget::new(dir.path(), true).unwrap();
        for (name, want) in [
            ("INBOX", ""),
            ("Projects.2024.Q1", ".Projects.2024.Q1"),
            ("Données.Été 2024", ".Donn&AOk-es.&AMk-t&AOk- 2024"),
            ("Bills & Receipts", ".Bills &- Receipts"),
        ] {
            let want = if want.is_empty() {
                dir.path().to_path_buf()
            } else {
                dir.path().join(want)
            };
            assert_eq!(t.folder_dir(name), want, "{name}");
        }
        for bad in ["a/b", "a..b", ""] {
            assert!(
                matches!(t.create(bad, None), Err(CreateError::Refused(_))),
                "{bad}"
            );
        }
        assert!(t.create("Projects.2024", None).is_ok());
        assert!(
            t.exists("Projects.2024") && dir.path().join(".Projects.2024/maildirfolder").is_file()
        );
        let layout = t.layout().unwrap();
        assert!(layout.existing.contains(&s(&["Projects", "2024"])));
        // A `.` inside a level cannot be told from the separator: it becomes `_`.
        assert_eq!(
            t.folder_name(&s(&["Archive", "v1.2"]), &layout),
            "Archive.v1_2"
        );
    }
}
