//! POP3 sources, backup to mbox and restore, against real Dovecot instances.

use std::process::Output;

use crate::common::*;

const SRC: &str = "paul@source.test";
const DST: &str = "paul@target.test";

fn pop3s_url(d: &Dovecot, user: &str) -> String {
    format!("pop3s://{user}@localhost:{}", d.pop3s)
}

/// `migrate` from `from` to DST over IMAPS, with `d`'s password and CA files.
fn migrate(d: &Dovecot, from: String, state: &std::path::Path) -> Run {
    Run::new("migrate")
        .from(from)
        .to(d.imaps_url(DST))
        .passwords(d)
        .ca(d)
        .state(state)
}

/// The INBOX as seeded, with identical copies collapsed (what a copy must give).
fn distinct_inbox() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = expected(|f| f.to_string()).0["INBOX"]
        .iter()
        .map(|m| m.body.clone())
        .collect();
    v.sort();
    v
}

fn bodies(snap: &Snapshot, folder: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = snap
        .0
        .get(folder)
        .map(|m| m.iter().map(|m| m.body.clone()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// POP3 → IMAP: every distinct message arrives once, byte-identical, dated from its
/// headers; duplicates are counted; a re-run copies nothing; the source is intact.
#[test]
fn pop3_to_imap_collapses_duplicates_and_resumes() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    // "Keep a copy on the server": the same five messages twice more.
    d.seed_args(
        SRC,
        &["--generate", "5", "--folder", "INBOX", "--seed", "dup"],
    );
    d.seed_args(
        SRC,
        &["--generate", "5", "--folder", "INBOX", "--seed", "dup"],
    );
    let state = d.dir.path().join("state.sqlite");
    let run = |extra: &[&str]| {
        migrate(&d, pop3s_url(&d, SRC), &state)
            .arg("--json")
            .args(extra)
            .run()
    };
    // What an IMAP client of the source sees: bytes and flags (the snapshot leaves
    // \Recent aside).
    let source_view = || -> Vec<(Vec<u8>, Vec<String>)> {
        d.snapshot(SRC).0["INBOX"]
            .iter()
            .map(|m| (m.body.clone(), m.flags.clone()))
            .collect()
    };
    let source_before = source_view();
    assert!(
        source_before
            .iter()
            .any(|(_, f)| !f.iter().any(|f| f == "\\Seen")),
        "the test needs unread source messages"
    );

    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    let want_distinct = distinct_inbox().len() + 5;
    assert_eq!(j["copied"].as_u64(), Some(want_distinct as u64), "{j}");
    assert_eq!(j["duplicates"].as_u64(), Some(1 + 5), "{j}");

    let snap = d.snapshot(DST);
    let inbox = &snap.0["INBOX"];
    assert_eq!(inbox.len(), want_distinct);
    let got = bodies(&snap, "INBOX");
    for mut b in distinct_inbox() {
        // POP3 cannot carry a message without a final line ending (RETR ends with
        // CRLF.CRLF), so the server adds one: the only change POP3 makes.
        if !b.ends_with(b"\r\n") {
            b.extend_from_slice(b"\r\n");
        }
        assert!(
            got.contains(&b),
            "a fixture message is missing or changed: {}",
            String::from_utf8_lossy(&b[..200.min(b.len())])
        );
    }
    // No INTERNALDATE in POP3: the generated messages carry only a Date header.
    for m in inbox
        .iter()
        .filter(|m| m.subject().contains("synthetic message"))
    {
        let text = String::from_utf8_lossy(&m.body);
        let date = text.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
        let want = chrono::DateTime::parse_from_rfc2822(date.trim())
            .unwrap()
            .timestamp();
        assert_eq!(m.date, want, "INTERNALDATE from the Date header");
    }

    let out = run(&[]);
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(0), Some(0)),
        "UIDL checkpoints: {j}"
    );
    assert_eq!(d.snapshot(DST).0["INBOX"].len(), want_distinct);
    // The POP3 source was not changed: same messages, none marked read (Dovecot
    // marks messages fetched with RETR as \Seen; mailferry reads them with TOP).
    assert_eq!(source_view().len(), 20 + 10);
    assert!(
        source_view() == source_before,
        "the source's messages or flags changed"
    );

    // --delete-after is refused with --dry-run, before anything happens.
    let out = run(&["--delete-after", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(d.snapshot(SRC).0["INBOX"].len(), 30);
}

/// --delete-after removes from the POP3 server only what the target confirmed, and
/// pop3:// with STLS works.
#[test]
fn pop3_stls_and_delete_after() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "4", "--folder", "INBOX", "--seed", "a"],
    );
    let state = d.dir.path().join("state.sqlite");
    let out = migrate(&d, format!("pop3://{SRC}@localhost:{}", d.pop3), &state)
        .args(["--json", "--delete-after", "--to-folder", "From POP"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["deleted"].as_u64()),
        (Some(4), Some(4)),
        "{j}"
    );
    let snap = d.snapshot(DST);
    assert_eq!(snap.0["From POP"].len(), 4);
    assert_eq!(
        d.snapshot(SRC).0["INBOX"].len(),
        0,
        "confirmed messages deleted from the POP3 server"
    );
}

fn backup(
    d: &Dovecot,
    user: &str,
    out: &std::path::Path,
    state: &std::path::Path,
    env: &[(&str, String)],
) -> Output {
    let mut c = Run::new("backup")
        .from(d.imaps_url(user))
        .opt("--out", out)
        .from_password_file(d.pwfile())
        .ca(d)
        .state(state)
        .arg("--json")
        .command();
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn restore(
    d: &Dovecot,
    from: &std::path::Path,
    user: &str,
    state: &std::path::Path,
    env: &[(&str, String)],
) -> Output {
    let mut c = Run::restore_into(d, from, user)
        .state(state)
        .arg("--json")
        .command();
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Count messages per mbox file with Python's mailbox module (a standard reader).
fn python_counts(dir: &std::path::Path) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import mailbox,sys,pathlib\nfor p in sorted(pathlib.Path(sys.argv[1]).rglob('*.mbox')):\n  print(p.relative_to(sys.argv[1]), len(mailbox.mbox(str(p))))")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// IMAP → backup (interrupted, resumed) → restore into an empty account
/// (interrupted, resumed): byte-identical messages, flags, dates, folder names.
#[test]
fn backup_and_restore_round_trip_survive_crashes() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let dir = d.dir.path().join("backup");
    let state = d.dir.path().join("state.sqlite");

    // Killed after the 2nd, 7th and 3rd message written (each run resumes the last),
    // and inside an index commit. Every run lists folders 3 messages at a time and
    // keeps nothing from planning: the path of a folder of 100,000 messages.
    let paged = |extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("MAILFERRY_LISTING_PAGE", "3".to_string()),
            ("MAILFERRY_KEEP_LISTED", "0".to_string()),
        ];
        env.extend_from_slice(extra);
        env
    };
    for (var, n) in [
        ("MAILFERRY_CRASH_AFTER_APPENDS", "2"),
        ("MAILFERRY_CRASH_AFTER_APPENDS", "7"),
        ("MAILFERRY_CRASH_IN_COMMIT", "2"),
        ("MAILFERRY_CRASH_AFTER_APPENDS", "3"),
    ] {
        let crash = backup(&d, SRC, &dir, &state, &paged(&[(var, n.into())]));
        assert_ne!(
            crash.status.code(),
            Some(0),
            "the crash point {var}={n} was not reached: {}",
            text(&crash)
        );
    }
    let out = backup(&d, SRC, &dir, &state, &paged(&[]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let counts = python_counts(&dir);
    for line in [
        "INBOX.mbox 19",
        "Projects/2024/Q1.mbox 1",
        "Données/Été 2024.mbox 1",
        "Sent.mbox 2",
        "Bills & Receipts.mbox 1",
        "Архив.mbox 1",
    ] {
        assert!(
            counts.lines().any(|l| l == line),
            "python's mailbox reads {line:?}? got:\n{counts}"
        );
    }
    // A second backup writes nothing new.
    let out = backup(&d, SRC, &dir, &state, &[]);
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(0), Some(0)),
        "{j}"
    );
    assert!(dir.join("mailferry-manifest.json").exists());

    for n in ["5", "1", "2"] {
        let crash = restore(
            &d,
            &dir,
            DST,
            &state,
            &[("MAILFERRY_CRASH_AFTER_APPENDS", n.into())],
        );
        assert_ne!(crash.status.code(), Some(0), "{}", text(&crash));
    }
    let out = restore(&d, &dir, DST, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));

    // New mail on the source: the next backup appends just that.
    d.seed_args(
        SRC,
        &["--generate", "2", "--folder", "INBOX", "--seed", "new"],
    );
    let out = backup(&d, SRC, &dir, &state, &[]);
    assert_eq!(json(&out)["copied"].as_u64(), Some(2), "{}", text(&out));
    assert!(python_counts(&dir).lines().any(|l| l == "INBOX.mbox 21"));
}

/// Every folder into one file, and back; and back again with a fresh index.
#[test]
fn single_file_backup_and_restore() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let file = d.dir.path().join("all.mbox");
    let state = d.dir.path().join("state.sqlite");
    let out = backup(&d, SRC, &file, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(file.is_file());
    let out = restore(&d, &file, DST, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));

    // Restored again with a new index (another machine, a lost state file): the
    // messages already there are found by their dedupe keys, none appended twice.
    let fresh = d.dir.path().join("fresh.sqlite");
    let out = restore(&d, &file, DST, &fresh, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(j["copied"].as_u64(), Some(0), "{j}");
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
}

/// A POP3 server without UIDL (scripted: Dovecot always has UIDL): mailferry says
/// so, copies each distinct message once, and on the next run the dedupe keys alone
/// keep every copy out.
#[test]
fn pop3_server_without_uidl_relies_on_dedupe_keys() {
    let d = Dovecot::start(&[DST]);
    let a = b"From: a@example.test\r\nSubject: first\r\nMessage-ID: <a@x>\r\n\r\n.leading dot line\r\nbody\r\n".to_vec();
    let b = b"From: b@example.test\r\nSubject: second\r\n\r\nno message-id here\r\n".to_vec();
    let pop = ScriptedPop3::start(vec![a.clone(), b.clone(), a.clone()]);
    let state = d.dir.path().join("state.sqlite");
    let run = || {
        migrate(&d, format!("pop3://x@127.0.0.1:{}", pop.port), &state)
            .args(["--allow-plaintext", "--json"])
            .run()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no UIDL"),
        "{}",
        text(&out)
    );
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(2), Some(1)),
        "{j}"
    );
    let out = run();
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(0), Some(3)),
        "{j}"
    );
    let mut got = bodies(&d.snapshot(DST), "INBOX");
    got.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(got, want, "byte-identical, dot-unstuffed, once each");

    // Without UIDL, --dedupe none would copy everything on every run: refused.
    let out = migrate(&d, format!("pop3://x@127.0.0.1:{}", pop.port), &state)
        .args(["--allow-plaintext", "--json", "--dedupe", "none"])
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("has no stable message ids (a POP3 server without UIDL"),
        "{}",
        text(&out)
    );
    assert_eq!(d.count(DST), 2);
}

/// Copies deleted on the target since the last run are not "duplicates": the next
/// run copies them again, and --delete-after only then removes them from POP3.
#[test]
fn delete_after_trusts_the_target_not_the_index() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "3", "--folder", "INBOX", "--seed", "stale"],
    );
    // Two different UIDLs with the same content: dedupe, not checkpoints, decide.
    d.seed_args(
        SRC,
        &["--generate", "3", "--folder", "INBOX", "--seed", "stale"],
    );
    let state = d.dir.path().join("state.sqlite");
    let run = |extra: &[&str]| {
        migrate(&d, pop3s_url(&d, SRC), &state)
            .arg("--json")
            .args(extra)
            .run()
    };
    let out = run(&[]);
    assert_eq!(json(&out)["copied"].as_u64(), Some(3), "{}", text(&out));
    // Someone empties the target INBOX.
    let mut t = d.session(DST);
    t.select(b"INBOX", false).unwrap();
    t.simple(
        "STORE",
        &[mailferry::imap::client::Part::Text(
            b"UID STORE 1:* +FLAGS.SILENT (\\Deleted)",
        )],
    )
    .unwrap();
    t.simple(
        "EXPUNGE",
        &[mailferry::imap::client::Part::Text(b"EXPUNGE")],
    )
    .unwrap();
    t.logout();
    assert_eq!(d.count(DST), 0);
    // Seed the same three again under new UIDLs; the run must copy them, not call
    // them duplicates of copies that are gone, before deleting anything.
    d.seed_args(
        SRC,
        &["--generate", "3", "--folder", "INBOX", "--seed", "stale"],
    );
    let out = run(&["--delete-after"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(j["copied"].as_u64(), Some(3), "{j}");
    assert_eq!(d.snapshot(DST).0["INBOX"].len(), 3);
    assert_eq!(
        j["deleted"].as_u64(),
        Some(3),
        "only what this run confirmed: {j}"
    );
}

/// A file from elsewhere goes into --to-folder, whatever the file is called; a
/// backup interrupted mid-run restores only what it recorded.
#[test]
fn to_folder_for_an_mbox_file_and_restoring_an_interrupted_backup() {
    let d = Dovecot::start(&[SRC, DST]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Takeout.mbox");
    let mut data = Vec::new();
    for i in 0..3 {
        mailferry::mbox::write_message(
            &mut data,
            "x@example.test",
            None,
            format!("Subject: takeout {i}\r\n\r\nbody {i}\r\n").as_bytes(),
        )
        .unwrap();
    }
    std::fs::write(&file, data).unwrap();
    let state = dir.path().join("state.sqlite");
    let out = restore(&d, &file, DST, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = Run::restore_into(&d, &file, SRC)
        .state(&state)
        .opt("--to-folder", "Gmail archive")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(d.snapshot(SRC).0["Gmail archive"].len(), 3);

    // A backup killed after writing the 7th message (before recording it).
    d.seed(SRC);
    let bdir = dir.path().join("backup");
    let crash = backup(
        &d,
        SRC,
        &bdir,
        &state,
        &[("MAILFERRY_CRASH_AFTER_APPENDS", "7".into())],
    );
    assert_ne!(crash.status.code(), Some(0), "{}", text(&crash));
    let recorded = std::fs::read_to_string(bdir.join("mailferry-manifest.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("\"duplicate\":true"))
        .count();
    let out = restore(&d, &bdir, DST, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        j["copied"].as_u64(),
        Some(recorded as u64),
        "only recorded messages: {j}"
    );
}

/// `--delete-after` deletes nothing the target does not hold: a message the target
/// refuses stays on the POP3 server, and a run that is killed deletes nothing.
#[test]
fn delete_after_keeps_what_the_target_refused_and_a_killed_run_deletes_nothing() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start_with(
        &[DST],
        Config {
            max_mail_size: Some("1M"),
            ..Config::default()
        },
    );
    src.seed_args(
        SRC,
        &["--generate", "6", "--folder", "INBOX", "--seed", "keep"],
    );
    // The fixtures' INBOX holds a message over 1 MB, which the target refuses.
    src.seed(SRC);
    let before = bodies(&src.snapshot(SRC), "INBOX");
    let big: Vec<Vec<u8>> = before
        .iter()
        .filter(|b| b.len() > 1 << 20)
        .cloned()
        .collect();
    assert_eq!(
        big.len(),
        1,
        "the fixtures have one message over 1 MB in INBOX"
    );
    let state = src.dir.path().join("state.sqlite");
    let run = |env: &[(&str, &str)]| {
        let mut c = Run::new("migrate")
            .from(pop3s_url(&src, SRC))
            .to(dst.imaps_url(DST))
            .from_password_file(src.pwfile())
            .to_password_file(dst.pwfile())
            .ca(&src)
            .state(&state)
            .args(["--json", "--delete-after"])
            .command();
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };

    // Killed after the 4th APPEND: nothing is deleted.
    let out = run(&[("MAILFERRY_CRASH_AFTER_APPENDS", "4")]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("crash point reached"),
        "{}",
        text(&out)
    );
    assert_eq!(
        bodies(&src.snapshot(SRC), "INBOX"),
        before,
        "a killed run deleted mail"
    );

    // Every message but the big one reaches the target; exactly those are deleted.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json(&out);
    let failed = j["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{j}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("larger than the maximum size"),
        "{j}"
    );
    assert_eq!(
        bodies(&src.snapshot(SRC), "INBOX"),
        big,
        "only the refused message stays on the POP3 server"
    );
    let mut distinct = before.clone();
    distinct.dedup();
    assert_eq!(dst.snapshot(DST).0["INBOX"].len(), distinct.len() - 1);
    assert_eq!(j["deleted"].as_u64(), Some(before.len() as u64 - 1), "{j}");
}

/// A POP3 → IMAP run killed at several points (after an APPEND the index has not
/// recorded, inside an index commit) and resumed, listing 3 messages at a time and
/// copying 4 at a time: every distinct message ends up on the target once.
#[test]
fn pop3_run_killed_and_resumed_copies_everything_once() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    d.seed_args(
        SRC,
        &["--generate", "5", "--folder", "INBOX", "--seed", "dup"],
    );
    d.seed_args(
        SRC,
        &["--generate", "5", "--folder", "INBOX", "--seed", "dup"],
    );
    let state = d.dir.path().join("state.sqlite");
    let run = |env: &[(&str, &str)]| {
        let mut c = migrate(&d, pop3s_url(&d, SRC), &state)
            .arg("--json")
            .command();
        c.env("MAILFERRY_LISTING_PAGE", "3");
        c.env("MAILFERRY_KEEP_LISTED", "0");
        // Batches of 4 messages, so the crash points fall between batches.
        c.env("MAILFERRY_BATCH_COUNT", "4");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    for (var, n) in [
        ("MAILFERRY_CRASH_AFTER_APPENDS", "2"),
        ("MAILFERRY_CRASH_IN_COMMIT", "2"),
        ("MAILFERRY_CRASH_AFTER_APPENDS", "5"),
    ] {
        let out = run(&[(var, n)]);
        assert!(
            out.status.code() != Some(0)
                && String::from_utf8_lossy(&out.stderr).contains("crash point reached"),
            "the crash point {var}={n} was not reached: {}",
            text(&out)
        );
    }
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = bodies(&d.snapshot(DST), "INBOX");
    let mut want = bodies(&d.snapshot(SRC), "INBOX");
    for b in want.iter_mut() {
        // What POP3 delivers: a last line without its line ending gets one.
        if !b.ends_with(b"\r\n") {
            b.extend_from_slice(b"\r\n");
        }
    }
    want.sort();
    want.dedup();
    assert_eq!(got.len(), want.len(), "a message is missing or doubled");
    assert!(
        got == want,
        "the target's messages differ from the source's"
    );
    // And a further run has nothing to do.
    let j = json(&run(&[]));
    assert_eq!(
        (j["copied"].as_u64(), j["failed"].as_array().map(Vec::len)),
        (Some(0), Some(0)),
        "{j}"
    );
}

/// Undo mboxrd quoting: a line `>From `, `>>From `… loses one `>`.
fn unquote_rd(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for line in data.split_inclusive(|&b| b == b'\n') {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if quotes > 0 && line[quotes..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// A POP3 mailbox backed up to mbox: dry run first (writes nothing), then the
/// backup, whose manifest is checked line by line against the files (offsets,
/// sizes, SHA-256) and the source (every message once, dated from its headers);
/// then a dry-run restore (writes nothing) and the restore.
#[test]
fn pop3_backup_manifest_matches_files_and_source() {
    use sha2::Digest;
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "6", "--folder", "INBOX", "--seed", "pb"],
    );
    d.seed_args(
        SRC,
        &["--generate", "2", "--folder", "INBOX", "--seed", "pb"],
    );
    let dir = d.dir.path().join("pop-backup");
    let state = d.dir.path().join("state.sqlite");
    let backup = |extra: &[&str]| {
        Run::new("backup")
            .from(pop3s_url(&d, SRC))
            .opt("--out", &dir)
            .from_password_file(d.pwfile())
            .ca(&d)
            .state(&state)
            .arg("--json")
            .args(extra)
            .run()
    };

    let out = backup(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(j["planned"][0]["messages"].as_u64(), Some(8), "{j}");
    assert!(!dir.exists(), "a dry run created the backup directory");

    let out = backup(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(6), Some(2)),
        "{j}"
    );
    assert_eq!(python_counts(&dir), "INBOX.mbox 6\n");

    // The source as POP3 delivers it, and its Date headers.
    let source: Vec<Vec<u8>> = bodies(&d.snapshot(SRC), "INBOX");
    let manifest = std::fs::read_to_string(dir.join("mailferry-manifest.jsonl")).unwrap();
    let mut stored = Vec::new();
    for line in manifest.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["duplicate"].as_bool() == Some(true) {
            continue;
        }
        assert_eq!(
            (e["folder"].as_str(), e["file"].as_str()),
            (Some("INBOX"), Some("INBOX.mbox"))
        );
        let file = std::fs::read(dir.join("INBOX.mbox")).unwrap();
        let (offset, length) = (
            e["offset"].as_u64().unwrap() as usize,
            e["length"].as_u64().unwrap() as usize,
        );
        let chunk = &file[offset..offset + length];
        assert!(chunk.starts_with(b"From "), "{e}");
        let nl = chunk.iter().position(|&b| b == b'\n').unwrap();
        let msg = unquote_rd(&chunk[nl + 1..]);
        let size = e["size"].as_u64().unwrap() as usize;
        let msg = &msg[..size];
        assert_eq!(
            e["sha256"].as_str().unwrap(),
            format!("{:x}", sha2::Sha256::digest(msg)),
            "{e}"
        );
        assert!(source.iter().any(|s| s == msg), "not a source message: {e}");
        // POP3 has no INTERNALDATE: the date is the message's Date header.
        let text = String::from_utf8_lossy(msg);
        let header = text.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
        let want = chrono::DateTime::parse_from_rfc2822(header.trim()).unwrap();
        let got = e["internaldate"].as_str().unwrap();
        let got = chrono::DateTime::parse_from_rfc3339(got)
            .or_else(|_| chrono::DateTime::parse_from_str(got, "%d-%b-%Y %H:%M:%S %z"))
            .unwrap_or_else(|err| panic!("{got:?}: {err}"));
        assert_eq!(got.timestamp(), want.timestamp(), "{e}");
        stored.push(msg.to_vec());
    }
    stored.sort();
    let mut distinct = source.clone();
    distinct.dedup();
    assert_eq!(
        stored, distinct,
        "every distinct source message stored once"
    );

    // Restore: a dry run writes nothing, then every message arrives.
    let restore = |extra: &[&str]| {
        Run::restore_into(&d, &dir, DST)
            .state(&state)
            .arg("--json")
            .args(extra)
            .run()
    };
    let out = restore(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["planned"][0]["messages"].as_u64(), Some(6));
    assert_eq!(d.count(DST), 0, "a dry run wrote to the target");
    let out = restore(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let snap = d.snapshot(DST);
    assert_eq!(bodies(&snap, "INBOX"), distinct);
    for m in &snap.0["INBOX"] {
        let text = String::from_utf8_lossy(&m.body);
        let header = text.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
        let want = chrono::DateTime::parse_from_rfc2822(header.trim()).unwrap();
        assert_eq!(
            m.date,
            want.timestamp(),
            "INTERNALDATE restored from the manifest"
        );
    }

    // A run killed while writing left half a message and half a manifest line: the
    // next backup cuts both off before it appends the new mail.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("INBOX.mbox"))
        .unwrap();
    f.write_all(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\nSubject: half\n\nhal")
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("mailferry-manifest.jsonl"))
        .unwrap();
    f.write_all(b"{\"folder\":\"INBOX\",\"file\":\"INB")
        .unwrap();
    d.seed_args(
        SRC,
        &["--generate", "1", "--folder", "INBOX", "--seed", "later"],
    );
    let out = backup(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["copied"].as_u64(), Some(1), "{}", text(&out));
    assert_eq!(python_counts(&dir), "INBOX.mbox 7\n");
    let manifest = std::fs::read_to_string(dir.join("mailferry-manifest.jsonl")).unwrap();
    assert!(
        manifest.ends_with('\n') && !manifest.contains("\"INB{"),
        "{manifest}"
    );
}

/// POP3 has no INTERNALDATE: a message is dated from its topmost Received: header,
/// else its Date: header, else the target's clock; `-v` says so.
#[test]
fn pop3_dates_come_from_received_then_date() {
    use mailferry::imap::client::Append;
    let d = Dovecot::start(&[SRC, DST]);
    let received = b"Received: from mx.example.net by mail.example.com; Tue, 3 Mar 2020 10:00:00 +0000\r\nReceived: from laptop by mx.example.net; Mon, 2 Mar 2020 09:00:00 +0000\r\nDate: Sun, 1 Mar 2020 08:00:00 +0000\r\nSubject: received wins\r\n\r\nbody\r\n";
    let date_only = b"Date: Wed, 4 Mar 2020 11:30:00 +0100\r\nSubject: date only\r\n\r\nbody\r\n";
    let neither = b"Subject: no date at all\r\n\r\nbody\r\n";
    let mut s = d.session(SRC);
    let date = mailferry::imap::types::ImapDate::parse("01-Jan-2001 00:00:00 +0000").unwrap();
    for body in [&received[..], &date_only[..], &neither[..]] {
        s.append(&Append {
            mailbox: b"INBOX",
            flags: &[],
            internal_date: Some(&date),
            body,
        })
        .unwrap();
    }
    s.logout();
    let state = d.dir.path().join("state.sqlite");
    let before = chrono::Utc::now().timestamp();
    let out = migrate(&d, pop3s_url(&d, SRC), &state).arg("-v").run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the source has no INTERNALDATE; each message is dated from its topmost Received: header"),
        "{}",
        text(&out)
    );
    let snap = d.snapshot(DST);
    let date_of = |subject: &str| {
        snap.0["INBOX"]
            .iter()
            .find(|m| m.subject() == format!("Subject: {subject}"))
            .unwrap_or_else(|| panic!("{subject} missing"))
            .date
    };
    let ts = |s: &str| chrono::DateTime::parse_from_rfc2822(s).unwrap().timestamp();
    assert_eq!(
        date_of("received wins"),
        ts("Tue, 3 Mar 2020 10:00:00 +0000")
    );
    assert_eq!(date_of("date only"), ts("Wed, 4 Mar 2020 11:30:00 +0100"));
    let now = date_of("no date at all");
    assert!(
        (before - 5..=chrono::Utc::now().timestamp() + 5).contains(&now),
        "the target's clock: {now}"
    );
}
