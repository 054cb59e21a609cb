//! mbox from the real world (issue 15): files written the way Python's mailbox,
//! Thunderbird, Google Takeout, mutt/Solaris (mboxcl2), UW-IMAP and MMDF writers
//! write them (scripts/mbox_real.py), each restored into a real Dovecot and compared
//! message by message with what Python's mailbox reads in the same file; backups a
//! mail client rewrote (mutt's `Status:`, Dovecot's X-UID/X-Keywords/Content-Length)
//! restored whole; incremental backups that record flag changes; inputs that are no
//! mailbox refused with exit 2.

use crate::common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const USER: &str = "real@mbox.test";
const SRC: &str = "src@mbox.test";

/// The files of scripts/mbox_real.py, written into a new directory of `d`.
fn written(d: &Dovecot) -> PathBuf {
    let dir = d.dir.path().join("real");
    let ok = Command::new("python3")
        .arg(root().join("scripts/mbox_real.py"))
        .arg("write")
        .arg(&dir)
        .status()
        .expect("python3")
        .success();
    assert!(ok, "scripts/mbox_real.py write failed");
    dir
}

/// What Python's mailbox finds in `file` (kind: mbox or mmdf): each message's bytes.
fn python_reads(kind: &str, file: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("python3")
        .arg(root().join("scripts/mbox_real.py"))
        .args(["read", kind])
        .arg(file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let h = m["hex"].as_str().unwrap().as_bytes();
            h.chunks(2)
                .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
                .collect()
        })
        .collect()
}

/// mboxo unquoting of what Python read (Python's reader leaves `>From ` as it is).
fn unquote_o(msg: &[u8]) -> Vec<u8> {
    mailferry::mbox::unquote_o(msg)
}

fn restore(d: &Dovecot, from: &Path, extra: &[&str]) -> Output {
    Run::restore_into(d, from, USER)
        .state(d.dir.path().join("state.sqlite"))
        .arg("--json")
        .args(extra)
        .run()
}

fn restored_ok(d: &Dovecot, from: &Path, extra: &[&str]) -> serde_json::Value {
    let out = restore(d, from, extra);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    json(&out)
}

/// The message of `folder` whose Subject is `subject`.
fn find<'a>(snap: &'a Snapshot, folder: &str, subject: &str) -> &'a Msg {
    snap.0
        .get(folder)
        .unwrap_or_else(|| panic!("no folder {folder:?} in {:?}", snap.0.keys()))
        .iter()
        .find(|m| m.subject() == format!("Subject: {subject}"))
        .unwrap_or_else(|| panic!("{subject:?} not in {folder:?}"))
}

fn flags(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Every message Python reads (after `map`) is in `folder`, byte for byte, and
/// nothing else is.
fn same_as_python(
    snap: &Snapshot,
    folder: &str,
    python: &[Vec<u8>],
    map: impl Fn(&[u8]) -> Vec<u8>,
) {
    let got = &snap.0[folder];
    assert_eq!(got.len(), python.len(), "{folder}: message count");
    for p in python {
        let want = crlf(&map(p));
        assert!(
            got.iter().any(|g| g.body == want),
            "{folder}: not restored byte-identical: {:?}\ngot: {:?}",
            String::from_utf8_lossy(&want),
            got.iter()
                .map(|g| String::from_utf8_lossy(&g.body).into_owned())
                .collect::<Vec<_>>()
        );
    }
}

/// Python's mailbox writes mboxo: `>>From ` lines must come back as written,
/// `>From ` (quoted by Python) as `From `; Status:/X-Status: become flags.
#[test]
fn python_mailbox_files_are_mboxo() {
    let d = Dovecot::start(&[USER]);
    let file = written(&d).join("python.mbox");
    let j = restored_ok(&d, &file, &[]);
    assert_eq!(j["copied"].as_u64(), Some(3), "{j}");
    let snap = d.snapshot(USER);
    same_as_python(&snap, "python", &python_reads("mbox", &file), unquote_o);
    let m = find(&snap, "python", "python bytes");
    let body = String::from_utf8_lossy(&m.body);
    // mboxo: Python quoted only `From `; `>>From ` comes back as written (mboxrd would take a `>` off).
    assert!(body.contains("\r\n>>From two quotes already\r\n"), "{body}");
    assert_eq!(
        find(&snap, "python", "python flags RA").flags,
        flags(&["\\Answered", "\\Seen"])
    );
    assert_eq!(
        find(&snap, "python", "python flags F").flags,
        flags(&["\\Flagged"])
    );
    // -v states the dialect and why.
    let out = Run::restore_into(&d, &file, USER)
        .state(d.dir.path().join("state.sqlite"))
        .arg("--dry-run")
        .arg("-v")
        .run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("python.mbox: mboxo"), "{}", text(&out));
}

/// MMDF (Python's mailbox.MMDF): four ^A around each message.
#[test]
fn mmdf_files() {
    let d = Dovecot::start(&[USER]);
    let file = written(&d).join("mmdf.mbox");
    let j = restored_ok(&d, &file, &[]);
    assert_eq!(j["copied"].as_u64(), Some(2), "{j}");
    let snap = d.snapshot(USER);
    same_as_python(&snap, "mmdf", &python_reads("mmdf", &file), |m| m.to_vec());
    assert_eq!(find(&snap, "mmdf", "mmdf two").flags, flags(&["\\Seen"]));
}

/// mboxcl2: Content-Length gives each body; an unquoted separator-shaped `From `
/// line inside it is body. (Python's mbox ignores Content-Length and splits there,
/// so here the oracle is the length the file states.)
#[test]
fn mboxcl2_content_length() {
    let d = Dovecot::start(&[USER]);
    let file = written(&d).join("mboxcl2.mbox");
    assert!(
        python_reads("mbox", &file).len() > 2,
        "Python splits at the body's From lines"
    );
    let j = restored_ok(&d, &file, &[]);
    assert_eq!(j["copied"].as_u64(), Some(2), "{j}");
    let snap = d.snapshot(USER);
    let one = find(&snap, "mboxcl2", "cl2 one");
    let body = String::from_utf8_lossy(&one.body);
    assert!(
        body.ends_with("\r\n\r\nFrom bob@example.net Tue Jan 16 10:00:05 2024\r\nSubject: looks like a message\r\n\r\nbut is body\r\n"),
        "{body:?}"
    );
    assert_eq!(one.flags, flags(&["\\Answered", "\\Seen"]));
    let two = String::from_utf8_lossy(&find(&snap, "mboxcl2", "cl2 two").body).into_owned();
    assert!(
        two.ends_with("\r\n\r\nFrom the desk of Carol\r\n>From stays as written\r\n"),
        "{two:?}"
    );
}

/// Google Takeout without --labels-as-folders: one folder, labels as flags and keywords.
#[test]
fn takeout_labels_become_flags_and_keywords() {
    let d = Dovecot::start(&[USER]);
    let file = written(&d).join("takeout.mbox");
    let j = restored_ok(&d, &file, &[]);
    assert_eq!(j["copied"].as_u64(), Some(6), "{j}");
    let snap = d.snapshot(USER);
    same_as_python(&snap, "takeout", &python_reads("mbox", &file), unquote_o);
    let f = &find(&snap, "takeout", "takeout inbox work").flags;
    for want in ["\\Seen", "$Important", "Inbox", "Work"] {
        assert!(f.contains(&want.to_string()), "{want} in {f:?}");
    }
    assert!(!find(&snap, "takeout", "takeout inbox unread")
        .flags
        .contains(&"\\Seen".to_string()));
    assert!(find(&snap, "takeout", "takeout trash starred")
        .flags
        .contains(&"\\Flagged".to_string()));
}

/// --labels-as-folders: one folder per label, each message once per folder;
/// Sent, Spam and Trash to the target's special-use folders, the unlabelled to Archive.
#[test]
fn takeout_labels_as_folders() {
    let d = Dovecot::start(&[USER]);
    let file = written(&d).join("takeout.mbox");
    let j = restored_ok(&d, &file, &["--labels-as-folders"]);
    // INBOX+Work, Sent+Projects, Archive, Spam, Trash, INBOX+Work.
    assert_eq!(j["copied"].as_u64(), Some(9), "{j}");
    let snap = d.snapshot(USER);
    let count = |f: &str| snap.0.get(f).map_or(0, Vec::len);
    assert_eq!(count("INBOX"), 2, "{:?}", snap.0.keys());
    assert_eq!(count("Work"), 2);
    assert_eq!(count("Projects/2024, Q1"), 1, "{:?}", snap.0.keys());
    assert_eq!(count("Archive"), 1);
    assert_eq!(
        count("Sent") + count("Trash") + count("Spam") + count("Junk"),
        3,
        "{:?}",
        snap.0.keys()
    );
    let m = find(&snap, "INBOX", "takeout inbox work");
    assert_eq!(m.flags, flags(&["$Important", "\\Seen"]));
    assert_eq!(
        find(&snap, "INBOX", "takeout inbox unread").flags,
        flags(&["\\Flagged"])
    );
    assert_eq!(
        find(&snap, "Archive", "takeout archived").flags,
        flags(&["Category_Updates", "\\Seen"])
    );
    // Again: nothing more.
    assert_eq!(
        restored_ok(&d, &file, &["--labels-as-folders"])["copied"].as_u64(),
        Some(0)
    );
}

/// Dateless separators (`From 1844347792267117879@xxx`) and Thunderbird's bare
/// `From - `: every message is found, dated from its own headers.
#[test]
fn dateless_and_bare_separators() {
    let d = Dovecot::start(&[USER]);
    let dir = written(&d);
    for (stem, n) in [("dateless", 6), ("bare", 2)] {
        let file = dir.join(format!("{stem}.mbox"));
        let j = restored_ok(&d, &file, &[]);
        assert_eq!(j["copied"].as_u64(), Some(n), "{stem}: {j}");
        let snap = d.snapshot(USER);
        same_as_python(&snap, stem, &python_reads("mbox", &file), unquote_o);
    }
    let snap = d.snapshot(USER);
    let m = find(&snap, "bare", "bare separator 1");
    assert_eq!(m.date, parse_date("14-Jan-2024 10:00:00 +0000"));
}

/// UW-IMAP's folder-data placeholder is left out (and said); X-Keywords become keywords.
#[test]
fn uw_imap_placeholder_is_skipped() {
    let d = Dovecot::start(&[USER]);
    let file = written(&d).join("uw-imap.mbox");
    let j = restored_ok(&d, &file, &[]);
    assert_eq!(j["copied"].as_u64(), Some(2), "{j}");
    assert!(
        j["notes"].to_string().contains("FOLDER INTERNAL DATA"),
        "{j}"
    );
    let snap = d.snapshot(USER);
    assert_eq!(
        find(&snap, "uw-imap", "uw one").flags,
        flags(&["$Label2", "\\Flagged", "\\Seen", "work"])
    );
}

/// A Thunderbird profile directory: its folder tree, X-Mozilla-Status flags and
/// X-Mozilla-Keys keywords, deleted messages left out and counted, .msf and .dat
/// files skipped.
#[test]
fn thunderbird_profile() {
    let d = Dovecot::start(&[USER]);
    let dir = written(&d).join("thunderbird");
    let j = restored_ok(&d, &dir, &[]);
    assert_eq!(j["copied"].as_u64(), Some(6), "{j}");
    assert!(
        j["notes"]
            .to_string()
            .contains("1 messages Thunderbird marks as deleted"),
        "{j}"
    );
    let snap = d.snapshot(USER);
    let inbox: Vec<Vec<u8>> = python_reads("mbox", &dir.join("Inbox"))
        .into_iter()
        .filter(|m| !String::from_utf8_lossy(m).contains("tb deleted"))
        .collect();
    same_as_python(&snap, "INBOX", &inbox, unquote_o);
    let body = String::from_utf8_lossy(&find(&snap, "INBOX", "tb read").body).into_owned();
    assert!(
        body.contains("\r\nFrom me, quoted by Thunderbird\r\n>>From stays\r\n"),
        "{body}"
    );
    assert_eq!(find(&snap, "INBOX", "tb read").flags, flags(&["\\Seen"]));
    assert_eq!(
        find(&snap, "INBOX", "tb replied").flags,
        flags(&["\\Answered", "\\Seen"])
    );
    assert_eq!(
        find(&snap, "INBOX", "tb flagged tagged").flags,
        flags(&["$label1", "\\Flagged", "\\Seen", "work"])
    );
    assert!(find(&snap, "INBOX", "tb unread").flags.is_empty());
    assert_eq!(snap.0["Sent"].len(), 1);
    assert_eq!(snap.0["Archives/2019"].len(), 1, "{:?}", snap.0.keys());
}

/// Inputs that are no mailbox: an error naming the file, exit 2, nothing copied.
#[test]
fn no_mailbox_is_an_input_error() {
    let d = Dovecot::start(&[USER]);
    let dir = d.dir.path().join("inputs");
    std::fs::create_dir_all(dir.join("empty-profile")).unwrap();
    std::fs::write(
        dir.join("letter.mbox"),
        "Subject: a letter\n\nnot a mailbox\n",
    )
    .unwrap();
    std::fs::write(dir.join("empty-profile/Inbox.msf"), "// mork\n").unwrap();
    std::fs::write(dir.join("empty-profile/notes.txt"), "hello\n").unwrap();
    for (path, words) in [
        (dir.join("letter.mbox"), "letter.mbox: not an mbox file"),
        (dir.join("empty-profile"), "no mailbox to restore"),
    ] {
        let out = restore(&d, &path, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(words),
            "{}",
            text(&out)
        );
    }
    assert_eq!(d.count(USER), 0);
}

/// A backup of the fixtures, written by `mailferry backup` into `d`'s `dir`.
fn backed_up(d: &Dovecot, dir: &Path) {
    d.seed(SRC);
    let out = Run::new("backup")
        .from(d.imaps_url(SRC))
        .opt("--out", dir)
        .from_password_file(d.pwfile())
        .ca(d)
        .state(d.dir.path().join("backup.sqlite"))
        .arg("--json")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Rewrite every message of an mbox file as a mail client does: `headers(i)` is
/// inserted at the end of message i's header block.
fn rewrite(path: &Path, headers: impl Fn(usize) -> String) {
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_headers = false;
    let mut after_blank = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if after_blank && line.starts_with(b"From ") {
            in_headers = true;
            out.extend_from_slice(line);
            after_blank = false;
            continue;
        }
        if in_headers && (line == b"\n" || line == b"\r\n") {
            out.extend_from_slice(headers(i).as_bytes());
            i += 1;
            in_headers = false;
        }
        after_blank = line == b"\n";
        out.extend_from_slice(line);
    }
    std::fs::write(path, out).unwrap();
}

/// A backup that mutt rewrote (`Status: RO` in every message) and one that Dovecot
/// rewrote (X-IMAPbase, X-UID, Status, X-Keywords, Content-Length): restored whole,
/// every message as it was backed up, with its flags and date, and the summary says
/// the manifest no longer matched.
#[test]
fn rewritten_backups_restore_whole() {
    for client in ["mutt", "dovecot"] {
        let d = Dovecot::start(&[SRC, USER]);
        let dir = d.dir.path().join("backup");
        backed_up(&d, &dir);
        let mut files = Vec::new();
        let mut dirs = vec![dir.clone()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "mbox") {
                    files.push(path);
                }
            }
        }
        for path in files {
            match client {
                "mutt" => rewrite(&path, |_| "Status: RO\n".to_string()),
                _ => rewrite(&path, |i| {
                    let base = if i == 0 {
                        "X-IMAPbase: 1700000000 0000000042\n"
                    } else {
                        ""
                    };
                    format!(
                        "{base}Status: O\nX-Keywords: \nContent-Length: 0\nX-UID: {}\n",
                        i + 1
                    )
                }),
            }
        }
        let j = restored_ok(&d, &dir, &[]);
        assert!(
            j["notes"]
                .to_string()
                .contains("no longer matches its manifest"),
            "{client}: {j}"
        );
        let mut want = seeded();
        // What mutt says: read.
        if client == "mutt" {
            for msgs in want.0.values_mut() {
                for m in msgs.iter_mut() {
                    if !m.flags.contains(&"\\Seen".to_string()) {
                        m.flags.push("\\Seen".into());
                        m.flags.sort();
                    }
                }
                msgs.sort();
            }
        }
        // Identical copies in one folder are stored once in a backup.
        let want = Snapshot(
            want.0
                .into_iter()
                .map(|(f, v)| {
                    let mut seen: Vec<Msg> = Vec::new();
                    for m in v {
                        if !seen.iter().any(|s| s.body == m.body) {
                            seen.push(m);
                        }
                    }
                    (f, seen)
                })
                .collect(),
        );
        assert_same(&d.snapshot(USER), &want);
    }
}

/// An incremental backup records new flags of messages it backed up before.
#[test]
fn incremental_backup_records_flag_changes() {
    use mailferry::imap::client::Part;
    let d = Dovecot::start(&[SRC, USER]);
    let dir = d.dir.path().join("backup");
    backed_up(&d, &dir);
    let mut s = d.session(SRC);
    s.select(b"INBOX", false).unwrap();
    s.simple(
        "STORE",
        &[Part::Text(b"UID STORE 1:* +FLAGS (\\Flagged $Changed)")],
    )
    .unwrap();
    s.logout();
    let out = Run::new("backup")
        .from(d.imaps_url(SRC))
        .opt("--out", &dir)
        .from_password_file(d.pwfile())
        .ca(&d)
        .state(d.dir.path().join("backup.sqlite"))
        .arg("--json")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        json(&out)["notes"].to_string().contains("have new flags"),
        "{}",
        text(&out)
    );
    restored_ok(&d, &dir, &[]);
    let snap = d.snapshot(USER);
    let inbox = &snap.0["INBOX"];
    assert!(!inbox.is_empty());
    for m in inbox {
        assert!(
            m.flags.contains(&"\\Flagged".to_string()) && m.flags.contains(&"$Changed".to_string()),
            "{}: {:?}",
            m.subject(),
            m.flags
        );
    }
    assert_eq!(snap.0["Sent"], d.snapshot(SRC).0["Sent"]);
}

/// Copy a directory tree (files keep their mode).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// The `.mbox` files under `dir`, relative to it, sorted.
fn mbox_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "mbox") {
                let rel = path.strip_prefix(dir).unwrap();
                out.push(rel.to_str().unwrap().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The header block of an mbox message, as text.
fn header_block(msg: &[u8]) -> String {
    let end = msg
        .windows(2)
        .position(|w| w == b"\n\n" || w == b"\n\r")
        .map_or(msg.len(), |p| p + 1);
    String::from_utf8_lossy(&msg[..end]).into_owned()
}

/// Issue 15's "served by Dovecot", with a real Dovecot: a backup of the fixtures is
/// served as Dovecot's own mbox folders (`mail_location = mbox:COPY:INBOX=COPY/INBOX.mbox`,
/// the backup's files and manifest copied into COPY), every folder is selected and
/// flags are changed on some messages (odd ones `\Seen $Rewritten`, the second
/// `\Flagged`), so Dovecot rewrites every file in place: X-IMAPbase, X-UID, Status,
/// X-Status, X-Keywords and Content-Length headers inserted, and — found by this
/// test — the empty line that ends each header block written as `\n` where the
/// message had `\r\n`. Then COPY, with its original manifest, is restored into a
/// third account: every message comes back byte for byte as it was backed up (the
/// headers Dovecot added taken off, its line ending undone), with its date, its
/// flags from the manifest plus those Dovecot's headers now carry, and none cut.
///
/// Against a7f00d5 this fails: its restore trusted the manifest. It took each
/// message at the manifest's offset and cut it to the manifest's size ("copying it
/// as it is"), and cut each file at the manifest's end as an interrupted backup's
/// tail. Dovecot's inserted headers move every message but the first: the first
/// came back cut by as many bytes as Dovecot added to it (the end of its body
/// lost), the others were read with Dovecot's headers in them and without the
/// manifest's flags, and the messages pushed past the manifest's end were dropped
/// (tried by hand with a7f00d5's binary on such a directory: 16 of INBOX's 19
/// messages, none byte-identical). The restore before this test's fix (a7e7828)
/// failed too: its content match did not see through the `\n` header end, so no
/// message matched the manifest and every one came back with Dovecot's headers
/// and without the manifest's flags.
#[test]
fn backup_served_by_real_dovecot_restores_whole() {
    use mailferry::imap::client::Part;
    const DOVE: &str = "dove@mbox.test";
    let d = Dovecot::start(&[SRC, USER]);
    let dir = d.dir.path().join("backup");
    backed_up(&d, &dir);
    let files = mbox_files(&dir);
    assert!(files.len() > 5, "{files:?}");

    // The backup's own files, manifest included, in a directory Dovecot owns.
    let copy = d.dir.path().join("served");
    let control = d.dir.path().join("served-control");
    copy_tree(&dir, &copy);
    std::fs::create_dir_all(&control).unwrap();
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root_user {
        // testbed.sh runs the mail processes as `mail` under root.
        for p in [&copy, &control] {
            let ok = Command::new("chown")
                .args(["-R", "mail:mail"])
                .arg(p)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {}", p.display());
        }
    }
    let location = format!(
        "mbox:{c}:INBOX={c}/INBOX.mbox:INDEX=MEMORY:CONTROL={}:UTF-8",
        control.display(),
        c = copy.display()
    );
    let dove = Dovecot::start_with(
        &[DOVE],
        Config {
            mail_location: Some(location),
            // Dovecot would create Sent, Drafts… files in the backup.
            no_special_use: true,
            ..Config::default()
        },
    );

    // The manifest: each file's messages in file order (sequence numbers), skipping
    // the records of identical copies stored once.
    let manifest = std::fs::read_to_string(dir.join("mailferry-manifest.jsonl")).unwrap();
    let mut by_file: std::collections::BTreeMap<String, Vec<(u64, String, String)>> =
        Default::default();
    for line in manifest.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["duplicate"].as_bool() == Some(true) {
            continue;
        }
        by_file
            .entry(e["file"].as_str().unwrap().to_string())
            .or_default()
            .push((
                e["offset"].as_u64().unwrap(),
                e["folder"].as_str().unwrap().to_string(),
                e["sha256"].as_str().unwrap().to_string(),
            ));
    }
    for v in by_file.values_mut() {
        v.sort();
    }
    assert_eq!(by_file.keys().cloned().collect::<Vec<_>>(), files);

    // Log in, select every folder that is a file of the backup, change flags.
    let mut added: std::collections::HashMap<(String, String), Vec<&str>> = Default::default();
    let mut served = Vec::new();
    let mut s = dove.session(DOVE);
    for e in s.list().unwrap() {
        if e.has_attr("\\Noselect") || e.has_attr("\\NonExistent") {
            continue;
        }
        let mut name = mailferry::engine::decode_name(&e.raw);
        if let Some(sep) = e.delim {
            name = name.replace(sep, "/");
        }
        let file = if name == "INBOX" {
            "INBOX.mbox".to_string()
        } else if name.ends_with(".mbox") {
            name
        } else {
            continue; // the manifest files, seen as folders
        };
        let sel = s.select(&e.raw, false).unwrap();
        let msgs = &by_file[&file];
        assert_eq!(
            sel.exists as usize,
            msgs.len(),
            "{file}: Dovecot sees another number of messages\n{}",
            dove.log()
        );
        for (i, (_, folder, sha)) in msgs.iter().enumerate() {
            let seq = i + 1;
            let flags: &[&str] = match seq {
                2 => &["\\Flagged"],
                n if n % 2 == 1 => &["\\Seen", "$Rewritten"],
                _ => continue,
            };
            let cmd = format!("STORE {seq} +FLAGS ({})", flags.join(" "));
            s.simple("STORE", &[Part::Text(cmd.as_bytes())]).unwrap();
            added.insert((folder.clone(), sha.clone()), flags.to_vec());
        }
        s.simple("CLOSE", &[Part::Text(b"CLOSE")]).unwrap();
        served.push(file);
    }
    s.logout();
    drop(dove);
    served.sort();
    assert_eq!(
        served, files,
        "every file of the backup is a Dovecot folder"
    );

    // Dovecot rewrote every file in place: its headers are in every message, and
    // they carry the flags set above.
    for file in &files {
        let before = std::fs::read(dir.join(file)).unwrap();
        let after = std::fs::read(copy.join(file)).unwrap();
        assert_ne!(before, after, "{file}: Dovecot did not rewrite it");
        let msgs = mailferry::mbox::parse(&after, mailferry::mbox::Dialect::Rd);
        assert_eq!(msgs.len(), by_file[file].len(), "{file}");
        for (i, m) in msgs.iter().enumerate() {
            let h = header_block(&m.message);
            assert!(h.contains("X-UID: "), "{file} #{}: {h}", i + 1);
            if i == 0 {
                assert!(h.contains("X-IMAPbase: "), "{file}: {h}");
            }
            if i % 2 == 0 {
                assert!(h.contains("Status: RO"), "{file} #{}: {h}", i + 1);
                assert!(
                    h.lines()
                        .any(|l| l.starts_with("X-Keywords:") && l.contains("$Rewritten")),
                    "{file} #{}: {h}",
                    i + 1
                );
            } else if i == 1 {
                assert!(h.contains("X-Status: F"), "{file} #2: {h}");
            }
        }
    }

    // Restore the rewritten directory, with its original manifest.
    let j = restored_ok(&d, &copy, &[]);
    // Each file is said to be read whole, every message found in the manifest.
    let rewritten: Vec<&str> = j["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| n.contains("no longer matches its manifest"))
        .collect();
    assert_eq!(rewritten.len(), files.len(), "{j}");
    for n in rewritten {
        assert!(
            n.ends_with(", 0 with flags and dates from their own headers"),
            "{n}"
        );
    }
    // What was backed up (identical copies in one folder stored once), with the
    // manifest's flags plus those Dovecot's headers now carry.
    let mut want = seeded();
    for (folder, msgs) in want.0.iter_mut() {
        let mut seen: Vec<Msg> = Vec::new();
        for mut m in std::mem::take(msgs) {
            if seen.iter().any(|s| s.body == m.body) {
                continue;
            }
            let key = (folder.clone(), mailferry::dedupe::sha256_hex(&m.body));
            for f in added.get(&key).into_iter().flatten() {
                if !m.flags.iter().any(|g| g == f) {
                    m.flags.push(f.to_string());
                }
            }
            m.flags.sort();
            seen.push(m);
        }
        seen.sort();
        *msgs = seen;
    }
    assert!(added.len() >= files.len(), "{added:?}");
    assert_same(&d.snapshot(USER), &want);
}
