//! Odd messages and odd folder names, copied exactly or reported — never a crash.

use crate::common::*;

const SRC: &str = "otto@source.test";
const DST: &str = "otto@target.test";

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Folder names with spaces, quotes, backslashes, `&`, non-ASCII, names that differ
/// only by case, and nesting, from a `.` server to a `/` server. (A `/` inside a
/// name on a `.` server becomes `_`: a unit test of `folders` covers it, since
/// Dovecot's Maildir++ layout cannot store such a name.)
#[test]
fn odd_folder_names_survive_a_delimiter_change() {
    let src = Dovecot::start_with(
        &[SRC],
        Config {
            separator: Some("."),
            ..Config::default()
        },
    );
    let dst = Dovecot::start(&[DST]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("fixtures/mail/01-plain-lf.eml"),
        dir.path().join("m.eml"),
    )
    .unwrap();
    let folders = [
        "Quote \"me\"",
        "Back\\slash",
        "A & B",
        "Ünïcödé/Sub ß",
        "case",
        "Case",
        "Deep/er/still",
        "Spaces  in  name",
        "Tab&-ish &AOk-",
    ];
    let mut manifest = String::from("folder\tfile\tflags\tinternaldate\n");
    for f in folders {
        manifest.push_str(&format!("{f}\tm.eml\t\\Seen\t01-Jan-2020 10:00:00 +0000\n"));
    }
    std::fs::write(dir.path().join("manifest.tsv"), manifest).unwrap();
    src.seed_args(SRC, &["--manifest", &s(&dir.path().join("manifest.tsv"))]);
    let state = dir.path().join("state.sqlite");
    let out = Run::new("migrate")
        .from(src.imaps_url(SRC))
        .to(dst.imaps_url(DST))
        .from_password_file(src.pwfile())
        .to_password_file(dst.pwfile())
        .ca(&src)
        .state(&state)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = dst.snapshot(DST);
    for f in folders {
        let want = f.to_string();
        assert_eq!(
            got.0.get(&want).map(Vec::len),
            Some(1),
            "folder {want:?} missing; target has {:?}",
            got.0.keys()
        );
    }
}

fn mbox_of(messages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        mailferry::mbox::write_message(&mut out, "x@example.test", None, m).unwrap();
    }
    out
}

/// Two source folders that land in one target folder (here by --folder-map; also
/// when a name the target cannot hold, such as `a.b` on a `.` target, becomes
/// `a_b` beside a real `a_b`): mailferry says so, and both folders' messages
/// arrive there. (Dovecot's Maildir refuses `.` in names, so the renaming itself is
/// covered by the unit test `folders::tests`, "a.b/c" → "INBOX.a_b.c".)
#[test]
fn two_folders_into_one_are_reported() {
    let d = Dovecot::start(&[SRC, DST]);
    for (folder, seed) in [("Old", "old"), ("Older", "older"), ("plain", "p")] {
        d.seed_args(
            SRC,
            &["--generate", "2", "--folder", folder, "--seed", seed],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Run::migrate_within(&d, SRC, DST)
        .state(dir.path().join("state.sqlite"))
        .opt("--folder-map", "Old=Archive")
        .opt("--folder-map", "Older=Archive")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("folders Old, Older all go into Archive on the target"),
        "{err}"
    );
    assert!(!err.contains("plain"), "{err}");
    let got = d.snapshot(DST);
    assert_eq!(
        got.0.get("Archive").map(Vec::len),
        Some(4),
        "{:?}",
        got.0.keys()
    );
    assert_eq!(got.0.get("plain").map(Vec::len), Some(2));
}

/// Messages real mailboxes contain: no headers at all, a 1.5 MB line without a
/// newline, broken MIME, 8-bit headers that are not UTF-8, an over-long header line,
/// a NUL byte. Each arrives byte-identical, or (NUL, which IMAP forbids outside
/// BINARY) is reported with the server's words; the run never stops on one.
#[test]
fn odd_messages_are_copied_exactly_or_reported() {
    let d = Dovecot::start(&[DST]);
    let dir = tempfile::tempdir().unwrap();
    let huge_line = {
        let mut v = b"Subject: one long line\r\n\r\n".to_vec();
        v.extend(std::iter::repeat_n(b'x', 1_500_000));
        v
    };
    let long_header = format!(
        "X-Long: {}\r\nSubject: long header\r\n\r\nbody\r\n",
        "y".repeat(5000)
    )
    .into_bytes();
    let messages: Vec<&[u8]> = vec![
        b"just text, no header block at all\r\nsecond line\r\n",
        &huge_line,
        b"Subject: broken mime\r\nContent-Type: multipart/mixed; boundary=\"missing\r\n\r\n--nothing\r\npart without end\r\n",
        b"Subject: caf\xe9 cr\xe8me\r\nFrom: \xff\xfe <a@b>\r\n\r\nlatin-1 \xe9\r\n",
        &long_header,
        b"Subject: nul\r\n\r\nbefore\x00after\r\n",
    ];
    let file = dir.path().join("odd.mbox");
    std::fs::write(&file, mbox_of(&messages)).unwrap();
    let state = dir.path().join("state.sqlite");
    let out = Run::restore_into(&d, &file, DST)
        .state(&state)
        .arg("--json")
        .run();
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let failed = j["failed"].as_array().unwrap();
    let copied = j["copied"].as_u64().unwrap() as usize;
    assert_eq!(copied + failed.len(), messages.len(), "{j}");
    for f in failed {
        assert!(
            f["reason"].as_str().unwrap().len() > 3,
            "a refusal carries the server's words: {f}"
        );
    }
    assert_eq!(
        out.status.code(),
        Some(if failed.is_empty() { 0 } else { 1 }),
        "{}",
        text(&out)
    );
    let got = d.snapshot(DST);
    let folder = &got.0["odd"];
    for (i, m) in messages.iter().enumerate() {
        let mut want = crlf(m);
        if !want.ends_with(b"\n") {
            want.extend_from_slice(b"\r\n");
        }
        // Dovecot stores a NUL byte as sent (BINARY.PEEK[] returns it) but shows it
        // as 0x80 in BODY[], which the snapshot reads.
        let shown: Vec<u8> = want
            .iter()
            .map(|&b| if b == 0 { 0x80 } else { b })
            .collect();
        let present = folder
            .iter()
            .any(|g| g.body == want || g.body == crlf(m) || g.body == shown);
        // Only the NUL message may be missing, and then it is the one reported.
        let refused = m.contains(&0) && failed.len() == 1;
        assert!(present || refused, "message {i} missing or changed: {j}");
    }
    // Nothing arrived changed or twice: what is there is what was copied.
    assert_eq!(folder.len(), copied, "{j}");
}

/// Password files and state files that cannot be used: each is one line naming the
/// file and what to do, exit 2, and nothing is opened or written.
#[test]
fn unusable_password_and_state_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret-pw\n").unwrap();
    let empty = dir.path().join("empty-pw");
    std::fs::write(&empty, "\nsecond line is not read\n").unwrap();
    for f in [&pw, &empty] {
        // Owner-only, as password files should be (else a warning line).
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let missing = dir.path().join("no-such-pw");
    let text_state = dir.path().join("notes.txt");
    std::fs::write(&text_state, "shopping list: milk, eggs\n".repeat(200)).unwrap();
    let other_db = dir.path().join("other.sqlite");
    {
        // An SQLite file of some other program.
        let c = sqlite_of_another_program(&other_db);
        assert!(c, "could not make an SQLite file with python3");
    }
    // Nothing listens on port 1: had anything been connected, this would say so.
    let run = |from_pw: &std::path::Path, state: &std::path::Path| {
        Run::new("migrate")
            .from("imaps://a@example.test@127.0.0.1:1")
            .to("imaps://b@example.test@127.0.0.1:1")
            .from_password_file(from_pw)
            .to_password_file(&pw)
            .state(state)
            .run()
    };
    let fresh = dir.path().join("fresh.sqlite");
    for (from_pw, state, want) in [
        (
            &empty,
            &fresh,
            format!(
                "password file {} is empty; put the password on its first line",
                s(&empty)
            ),
        ),
        (
            &missing,
            &fresh,
            format!("cannot read password file {}: No such file", s(&missing)),
        ),
        (
            &pw,
            &text_state,
            format!(
                "{} is not a usable mailferry index (file is not a database); give another --state path or move the file away",
                s(&text_state)
            ),
        ),
        (
            &pw,
            &other_db,
            format!(
                "{} is an SQLite file but not a mailferry index; give another --state path",
                s(&other_db)
            ),
        ),
    ] {
        let out = run(from_pw, state);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(&want), "want {want:?}, got {err}");
        assert!(!err.contains("127.0.0.1:1"), "it tried to connect: {err}");
    }
    assert!(
        !fresh.exists(),
        "the index was created before the input was checked"
    );
    // The foreign files are untouched.
    assert_eq!(
        std::fs::read_to_string(&text_state).unwrap(),
        "shopping list: milk, eggs\n".repeat(200)
    );
}

/// An SQLite database with a table of its own, written by Python's sqlite3.
fn sqlite_of_another_program(path: &std::path::Path) -> bool {
    std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table notes(t)'); c.commit()")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}
