//! `backup --format maildir` against a real Dovecot as the source, and a second,
//! independent Dovecot serving the written Maildir++ tree as its mail store: what it
//! serves (bytes, flags, INTERNALDATE, folder names and hierarchy, counts) is what the
//! source holds. A second run copies nothing; runs killed after a message was stored
//! but before it was recorded, or inside an index commit, then resumed (also with the
//! index lost) leave every message exactly once.

use crate::common::*;
use std::path::Path;
use std::process::{Command, Output};

const SRC: &str = "src@maildir.test";
const DOVE: &str = "dove@maildir.test";

/// `backup --format maildir` of SRC into `dir`, with `env` set.
fn backup(d: &Dovecot, dir: &Path, state: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Run::new("backup")
        .from(d.imaps_url(SRC))
        .opt("--out", dir)
        .opt("--format", "maildir")
        .from_password_file(d.pwfile())
        .ca(d)
        .state(state)
        .arg("--json")
        .command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A copy of the tree `dir` served by a Dovecot of its own (`mail_location =
/// maildir:COPY`), as user DOVE.
fn served(d: &Dovecot, dir: &Path, name: &str) -> Dovecot {
    let copy = d.dir.path().join(name);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(&copy)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {}", dir.display());
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root_user {
        // testbed.sh runs the mail processes as `mail` under root.
        let ok = Command::new("chown")
            .args(["-R", "mail:mail"])
            .arg(&copy)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown {}", copy.display());
    }
    Dovecot::start_with(
        &[DOVE],
        Config {
            mail_location: Some(format!("maildir:{}", copy.display())),
            // Dovecot would create Sent, Drafts… folders of its own in the tree.
            no_special_use: true,
            ..Config::default()
        },
    )
}

/// Every file of the tree's cur/ and new/ directories, as (folder dir, name).
fn message_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with('.') && e.path().is_dir() {
            folders.push(e.path());
        }
    }
    for f in folders {
        for sub in ["cur", "new"] {
            for e in std::fs::read_dir(f.join(sub)).unwrap().flatten() {
                let folder = f.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((folder, e.file_name().to_string_lossy().into_owned()));
            }
        }
    }
    out.sort();
    out
}

/// The backup, served by a real Dovecot, is the source: every message byte for byte
/// with its flags (keywords through `dovecot-keywords`) and INTERNALDATE (the file's
/// mtime), in folders of the same names and places in the tree (modified UTF-7 on
/// disk, non-ASCII and `&` names, three levels, a \Noselect parent), identical copies
/// inside a folder once. A second run copies nothing.
#[test]
fn maildir_backup_served_by_dovecot_is_the_source_and_a_second_run_copies_nothing() {
    let d = Dovecot::start(&[SRC]);
    d.seed(SRC);
    let dir = d.dir.path().join("maildir");
    let state = d.dir.path().join("state.sqlite");
    let want = expected(|f| f.to_string());
    let total: usize = want.0.values().map(Vec::len).sum();

    let out = backup(&d, &dir, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        json(&out)["copied"].as_u64(),
        Some(total as u64),
        "{}",
        text(&out)
    );
    assert!(
        json(&out)["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("maildir:/")),
        "{}",
        text(&out)
    );

    // The layout Dovecot and mbsync read: Maildir++ directories, modified UTF-7.
    for sub in [
        "cur",
        "new",
        "tmp",
        ".Projects.2024.Q1/cur",
        ".Donn&AOk-es.&AMk-t&AOk- 2024/cur",
        ".Bills &- Receipts/maildirfolder",
        ".&BBAEQARFBDgEMg-/cur",
    ] {
        assert!(
            dir.join(sub).exists(),
            "{sub} missing: {:?}",
            message_files(&dir)
        );
    }
    let files = message_files(&dir);
    assert_eq!(files.len(), total, "{files:?}");
    // Flags in the file names, in Maildir letter order; keywords a letter each.
    let drafts: Vec<_> = files.iter().filter(|(f, _)| f == ".Drafts").collect();
    assert!(drafts[0].1.ends_with(":2,DS"), "{drafts:?}");
    let keywords = std::fs::read_to_string(dir.join(".Projects/dovecot-keywords")).unwrap();
    assert_eq!(keywords, "0 Work\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(".Projects"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "a backup is its owner's only: {mode:o}");
    }

    let again = backup(&d, &dir, &state, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(json(&again)["copied"].as_u64(), Some(0), "{}", text(&again));
    assert_eq!(message_files(&dir), files);

    let dove = served(&d, &dir, "served");
    assert_same(&dove.snapshot(DOVE), &want);
}

/// Killed right after a message was stored (renamed into cur/) and before the index
/// recorded it, again later, and inside an index commit; then resumed: every message
/// is there exactly once. With the index deleted, a further run finds every message
/// by hashing the files and stores nothing.
#[test]
fn a_killed_maildir_backup_resumes_with_every_message_once() {
    let d = Dovecot::start(&[SRC]);
    d.seed(SRC);
    let dir = d.dir.path().join("maildir");
    let state = d.dir.path().join("state.sqlite");
    let want = expected(|f| f.to_string());
    let total: usize = want.0.values().map(Vec::len).sum();
    let small = [("MAILFERRY_BATCH_COUNT", "3")];
    for (var, n) in [
        ("MAILFERRY_CRASH_AFTER_APPENDS", "2"),
        ("MAILFERRY_CRASH_AFTER_APPENDS", "7"),
        ("MAILFERRY_CRASH_IN_COMMIT", "3"),
    ] {
        let crash = backup(&d, &dir, &state, &[small[0], (var, n)]);
        assert_ne!(
            crash.status.code(),
            Some(0),
            "the crash point {var}={n} was not reached: {}",
            text(&crash)
        );
    }
    let stored_before = message_files(&dir).len();
    assert!(
        stored_before > 0 && stored_before < total,
        "{stored_before}"
    );

    let out = backup(&d, &dir, &state, &small);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(message_files(&dir).len(), total, "{}", text(&out));

    // The index lost: the files are hashed, nothing is stored again.
    std::fs::remove_file(&state).unwrap();
    let out = backup(&d, &dir, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["copied"].as_u64(), Some(0), "{}", text(&out));
    assert_eq!(message_files(&dir).len(), total);

    let dove = served(&d, &dir, "served");
    assert_same(&dove.snapshot(DOVE), &want);
}
