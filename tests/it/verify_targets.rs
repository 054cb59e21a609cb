//! `verify` and `check` read every target mailferry writes through the `Target`
//! trait: a backup directory of mbox files and its manifest (`mbox:DIR`) and a
//! Maildir tree (`maildir:DIR`), as well as an IMAP account. Against a real Dovecot
//! as the source: after a backup nothing is missing; after one message is taken
//! out of the backup, exactly that one is named missing and the exit code is 1.

use crate::common::*;
use std::path::Path;
use std::process::Output;

const SRC: &str = "src@verify.test";

fn backup(d: &Dovecot, out: &Path, format: &str) {
    let o = Run::new("backup")
        .from(d.imaps_url(SRC))
        .opt("--out", out)
        .opt("--format", format)
        .from_password_file(d.pwfile())
        .ca(d)
        .state(d.dir.path().join(format!("{format}.sqlite")))
        .run();
    assert_eq!(o.status.code(), Some(0), "backup: {}", text(&o));
}

fn verify(d: &Dovecot, to: String) -> Output {
    Run::new("verify")
        .from(d.imaps_url(SRC))
        .to(to)
        .from_password_file(d.pwfile())
        .ca(d)
        .arg("--json")
        .run()
}

/// (folder, missing, extra) of every folder of a `verify --json` answer, and the
/// folder count.
fn tally(v: &serde_json::Value) -> (Vec<(String, usize, usize)>, usize) {
    let rows = v.as_array().unwrap_or_else(|| panic!("{v}"));
    let len = |r: &serde_json::Value, k: &str| r[k].as_array().unwrap().len();
    let bad = rows
        .iter()
        .filter(|r| len(r, "missing") + len(r, "extra") > 0)
        .map(|r| {
            let name = r["folder"].as_str().unwrap().to_string();
            (name, len(r, "missing"), len(r, "extra"))
        })
        .collect();
    (bad, rows.len())
}

/// The source's folders with at least one message, and how many distinct
/// messages (by bytes) its folders hold: a backup stores a folder's identical
/// copies once.
fn source_counts(d: &Dovecot) -> (usize, usize) {
    let snap = d.snapshot(SRC);
    let full = snap.0.values().filter(|m| !m.is_empty()).count();
    let distinct = snap
        .0
        .values()
        .map(|msgs| {
            let bodies: std::collections::HashSet<&[u8]> =
                msgs.iter().map(|m| m.body.as_slice()).collect();
            bodies.len()
        })
        .sum();
    (full, distinct)
}

/// Take the second message out of an mbox file (mboxrd: a line starting with
/// `From ` separates messages).
fn drop_second_message(file: &Path) {
    let data = std::fs::read(file).unwrap();
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| (i == 0 || data[i - 1] == b'\n') && data[i..].starts_with(b"From "))
        .collect();
    assert!(starts.len() >= 3, "{}: too few messages", file.display());
    let mut kept = data[..starts[1]].to_vec();
    kept.extend_from_slice(&data[starts[2]..]);
    std::fs::write(file, kept).unwrap();
}

#[test]
fn verify_reads_a_backup_directory_back_and_names_a_message_taken_out() {
    let d = Dovecot::start(&[SRC]);
    d.seed(SRC);
    let (full, total) = source_counts(&d);
    let out = d.dir.path().join("backup");
    backup(&d, &out, "mbox");

    let v = verify(&d, format!("mbox:{}", out.display()));
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let (bad, folders) = tally(&json(&v));
    assert!(bad.is_empty(), "{bad:?}: {}", text(&v));
    assert!(
        folders >= full,
        "{folders} folders for {full}: {}",
        text(&v)
    );
    let held: u64 = json(&v)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target_messages"].as_u64().unwrap())
        .sum();
    assert_eq!(held as usize, total, "{}", text(&v));

    drop_second_message(&out.join("INBOX.mbox"));
    let v = verify(&d, format!("mbox:{}", out.display()));
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    let (bad, _) = tally(&json(&v));
    assert_eq!(bad, vec![("INBOX".to_string(), 1, 0)], "{}", text(&v));
}

#[test]
fn verify_and_check_read_a_maildir_tree_back_and_name_a_message_taken_out() {
    let d = Dovecot::start(&[SRC]);
    d.seed(SRC);
    let (full, total) = source_counts(&d);
    let out = d.dir.path().join("maildir");
    backup(&d, &out, "maildir");

    let v = verify(&d, format!("maildir:{}", out.display()));
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let (bad, folders) = tally(&json(&v));
    assert!(bad.is_empty(), "{bad:?}: {}", text(&v));
    assert!(
        folders >= full,
        "{folders} folders for {full}: {}",
        text(&v)
    );

    // check reads the tree through the same Target: every message counted.
    let c = Run::new("check")
        .arg(format!("maildir:{}", out.display()))
        .arg("--json")
        .run();
    assert_eq!(c.status.code(), Some(0), "{}", text(&c));
    let counted: u64 = json(&c)["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(counted as usize, total, "{}", text(&c));

    let mut cur: Vec<_> = std::fs::read_dir(out.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cur.sort();
    std::fs::remove_file(&cur[0]).unwrap();
    let v = verify(&d, format!("maildir:{}", out.display()));
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    let (bad, _) = tally(&json(&v));
    assert_eq!(bad, vec![("INBOX".to_string(), 1, 0)], "{}", text(&v));
}

/// Files are not logged in to: a password file for a backup target is refused.
#[test]
fn a_file_target_takes_no_login_flags() {
    let dir = tempfile::tempdir().unwrap();
    let o = Run::new("verify")
        .from(format!("mbox:{}", dir.path().display()))
        .to(format!("maildir:{}", dir.path().display()))
        .to_password_file(dir.path().join("pw"))
        .run();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not files"), "{}", text(&o));
}
