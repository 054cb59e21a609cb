//! Backups someone else has changed, against real Dovecot instances: a manifest is
//! a file anyone may edit, so what it says reaches the target server only as typed
//! values (a parsed date, IMAP flags, a harmless folder name), and `restore` reads
//! only files inside the backup directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;
use mailferry::mbox::{self, Dialect};
use serde_json::{json, Value};

const SRC: &str = "hannah@source.test";
const DST: &str = "hannah@target.test";

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn backup(d: &Dovecot, out: &Path, state: &Path) -> Output {
    Run::new("backup")
        .from(d.imaps_url(SRC))
        .opt("--out", out)
        .from_password_file(d.pwfile())
        .ca(d)
        .state(state)
        .arg("--json")
        .run()
}

fn restore(d: &Dovecot, from: &Path, state: &Path) -> Output {
    Run::restore_into(d, from, DST)
        .state(state)
        .arg("--json")
        .run()
}

fn read_manifest(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_manifest(path: &Path, entries: &[Value]) {
    let mut text = String::new();
    for e in entries {
        text.push_str(&serde_json::to_string(e).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The message an entry of a backup in `dir` records, as it was stored.
fn message_of(dir: &Path, e: &Value) -> Vec<u8> {
    let data = std::fs::read(dir.join(e["file"].as_str().unwrap())).unwrap();
    let (offset, length) = (
        e["offset"].as_u64().unwrap() as usize,
        e["length"].as_u64().unwrap() as usize,
    );
    let mut m = mbox::parse(&data[offset..offset + length], Dialect::Rd)
        .remove(0)
        .message;
    m.truncate(e["size"].as_u64().unwrap() as usize);
    m
}

/// An mbox file holding one message, and the manifest entry that records it as
/// `file` in folder INBOX.
fn one_message_file(path: &Path, file: &str, subject: &str) -> Value {
    let msg = format!("From: a@example.com\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n");
    let mut data = Vec::new();
    let length = mbox::write_message(&mut data, "a@example.com", None, msg.as_bytes()).unwrap();
    std::fs::write(path, &data).unwrap();
    json!({
        "folder": "INBOX",
        "file": file,
        "offset": 0,
        "length": length,
        "size": msg.len(),
        "sha256": mailferry::dedupe::sha256_hex(msg.as_bytes()),
        "flags": ["\\Seen"],
        "internaldate": "01-Feb-2021 10:00:00 +0000",
        "uidvalidity": 1,
        "id": subject,
        "key": subject,
    })
}

/// A backup whose manifest was edited to carry IMAP commands in a date, a flag and
/// a folder name: none of them reaches the target as a command; the message with
/// the bad date fails (named, exit 1), the others arrive byte-identical.
#[test]
fn an_edited_manifest_cannot_steer_the_restore() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let dir = d.dir.path().join("backup");
    let state = d.dir.path().join("state.sqlite");
    let out = backup(&d, &dir, &state);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let manifest = dir.join("mailferry-manifest.jsonl");
    let mut entries = read_manifest(&manifest);
    let inbox: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i]["folder"] == "INBOX" && entries[i]["duplicate"] != true)
        .collect();
    let (bad_date, bad_flag) = (inbox[0], inbox[1]);
    let bad_date_body = message_of(&dir, &entries[bad_date]);
    let bad_flag_body = message_of(&dir, &entries[bad_flag]);
    entries[bad_date]["internaldate"] =
        json!("01-Jan-2020 10:00:00 +0000\"\r\nX1 CREATE hostile_injected\r\nX2 NOOP \"");
    entries[bad_flag]["flags"] = json!(["\\Seen\r\nX3 CREATE hostile_flag"]);
    let evil_folder = "Sent\"\r\nX4 CREATE hostile_folder\r\nX5 NOOP \"";
    for e in entries.iter_mut().filter(|e| e["folder"] == "Sent") {
        e["folder"] = json!(evil_folder);
    }
    write_manifest(&manifest, &entries);

    let out = restore(&d, &dir, &state);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json_out(&out);
    let failed = j["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{j}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert_eq!(failed[0]["folder"], "INBOX", "{j}");
    assert!(
        reason.contains("internaldate") && !reason.contains('\r') && !reason.contains('\n'),
        "{reason:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not IMAP flags") && !stderr.contains("\nX3 CREATE"),
        "the dropped flag is named, escaped: {}",
        text(&out)
    );

    let got = d.snapshot(DST);
    for name in got.0.keys() {
        assert!(
            !["hostile_injected", "hostile_flag", "hostile_folder"]
                .iter()
                .any(|h| name.trim() == *h || name.lines().any(|l| l.trim() == *h)),
            "a command from the manifest reached the server: folder {name:?} in {:?}",
            got.0.keys().collect::<Vec<_>>()
        );
    }
    // What the backup held, less the message with the bad date, the flagged one
    // without its flags, Sent under the name made safe.
    let mut want = expected(|f| {
        if f == "Sent" {
            "Sent\"__X4 CREATE hostile_folder__X5 NOOP \"".to_string()
        } else {
            f.to_string()
        }
    });
    let inbox = want.0.get_mut("INBOX").unwrap();
    let before = inbox.len();
    inbox.retain(|m| m.body != bad_date_body);
    assert_eq!(inbox.len(), before - 1);
    let m = inbox.iter_mut().find(|m| m.body == bad_flag_body).unwrap();
    m.flags.clear();
    inbox.sort();
    assert_same(&got, &want);

    // Run again: the bad message fails again (it is not lost silently), nothing
    // else is copied twice.
    let out = restore(&d, &dir, &state);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json_out(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["failed"].as_array().map(Vec::len)),
        (Some(0), Some(1)),
        "{j}"
    );
    assert_same(&d.snapshot(DST), &want);
}

/// Manifest entries naming files outside the backup directory (`..`, an absolute
/// path, a symbolic link out of it), and a linked file in a plain mbox directory:
/// the run stops before anything is copied, the error names the line and the rule.
#[test]
fn restore_reads_only_files_inside_the_backup_directory() {
    let d = Dovecot::start(&[DST]);
    let root = d.dir.path().join("files");
    let dir = root.join("a").join("backup");
    std::fs::create_dir_all(&dir).unwrap();
    let state = d.dir.path().join("state.sqlite");
    let outside = root.join("outside.mbox");
    let secret = one_message_file(&outside, "unused", "outside secret");
    let good = one_message_file(&dir.join("INBOX.mbox"), "INBOX.mbox", "inside");
    let manifest = dir.join("mailferry-manifest.jsonl");

    let with_file = |file: &str| {
        let mut e = secret.clone();
        e["file"] = json!(file);
        e["folder"] = json!("Stolen");
        e
    };
    let absolute = outside.to_str().unwrap().to_string();
    std::os::unix::fs::symlink(&outside, dir.join("link.mbox")).unwrap();
    for (file, rule) in [
        ("../../outside.mbox", "`..`"),
        (absolute.as_str(), "absolute path"),
        ("link.mbox", "symbolic link"),
    ] {
        write_manifest(&manifest, &[good.clone(), with_file(file)]);
        let out = restore(&d, &dir, &state);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("line 2") && err.contains(rule) && err.contains("restore reads only"),
            "{file}: {}",
            text(&out)
        );
        assert_eq!(d.count(DST), 0, "{file}: something was restored");
    }

    // A directory of mbox files without a manifest: a link out of it is refused too.
    std::fs::remove_file(&manifest).unwrap();
    let out = restore(&d, &dir, &state);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("link.mbox"),
        "{}",
        text(&out)
    );
    assert_eq!(d.count(DST), 0);

    // Without the link, the directory restores (the rule stops only what it must).
    std::fs::remove_file(dir.join("link.mbox")).unwrap();
    write_manifest(&manifest, std::slice::from_ref(&good));
    let out = restore(&d, &dir, &state);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let snap = d.snapshot(DST);
    assert_eq!(snap.0["INBOX"].len(), 1);
    assert!(snap.0["INBOX"][0].subject().contains("inside"));
    assert!(snap
        .0
        .values()
        .flatten()
        .all(|m| !m.subject().contains("secret")));
}

/// A backup directory where a folder's file was replaced by a link to a file
/// elsewhere: the next backup refuses to append through it.
#[test]
fn backup_does_not_write_through_a_link_out_of_its_directory() {
    let d = Dovecot::start(&[SRC]);
    d.seed(SRC);
    let dir = d.dir.path().join("backup");
    let state = d.dir.path().join("state.sqlite");
    let out = backup(&d, &dir, &state);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // INBOX.mbox becomes a link to a copy elsewhere (same bytes, so nothing looks torn).
    let elsewhere: PathBuf = d.dir.path().join("elsewhere.mbox");
    std::fs::copy(dir.join("INBOX.mbox"), &elsewhere).unwrap();
    std::fs::remove_file(dir.join("INBOX.mbox")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("INBOX.mbox")).unwrap();
    let before = std::fs::read(&elsewhere).unwrap();

    d.seed_args(
        SRC,
        &["--generate", "2", "--folder", "INBOX", "--seed", "new"],
    );
    let out = backup(&d, &dir, &state);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("leads out of the backup directory"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(&elsewhere).unwrap(),
        before,
        "written through the link"
    );
}
