//! Restoring mbox files of the dialects found in the wild (fixtures/mbox/, written by
//! fixtures/mbox/generate.py) into a real Dovecot: every message byte-identical, with
//! its flags from Status:/X-Status: and its INTERNALDATE from the `From ` line, in the
//! folder named after the file; a second run copies nothing.

use crate::common::*;

use std::path::{Path, PathBuf};
use std::process::Output;

fn fixtures() -> PathBuf {
    root().join("fixtures/mbox")
}

fn restore(d: &Dovecot, from: &Path, user: &str, state: &Path, extra: &[&str]) -> Output {
    Run::restore_into(d, from, user)
        .state(state)
        .arg("--json")
        .args(extra)
        .run()
}

/// The messages fixtures/mbox/expected/<stem>/ says a correct reader yields, as the
/// server serves them (CRLF), sorted like a snapshot folder.
fn expected_msgs(stem: &str) -> Vec<Msg> {
    let dir = fixtures().join("expected").join(stem);
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{stem}/{name}: {e}"))
    };
    let flags = read("flags.txt");
    let dates = read("dates.txt");
    let flags: Vec<&str> = flags.lines().collect();
    let dates: Vec<&str> = dates.lines().collect();
    assert_eq!(flags.len(), dates.len(), "{stem}: flags.txt vs dates.txt");
    assert!(!flags.is_empty(), "{stem}: no expected messages");
    let mut msgs: Vec<Msg> = flags
        .iter()
        .zip(&dates)
        .enumerate()
        .map(|(i, (f, t))| {
            let eml = dir.join(format!("{:02}.eml", i + 1));
            let body = std::fs::read(&eml).unwrap_or_else(|e| panic!("{}: {e}", eml.display()));
            let mut flags: Vec<String> = f.split_whitespace().map(str::to_string).collect();
            flags.sort();
            Msg {
                body: crlf(&body),
                flags,
                date: t
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{stem}: date {t:?}: {e}")),
            }
        })
        .collect();
    msgs.sort();
    msgs
}

/// Restore fixtures/mbox/<stem>.mbox into an empty account and compare with
/// expected/<stem>/; then restore again and expect nothing copied.
fn check(stem: &str, extra: &[&str]) {
    let user = format!("{stem}@mbox.test");
    let d = Dovecot::start(&[&user]);
    // A copy, so nothing is ever written next to the fixture.
    let file = d.dir.path().join(format!("{stem}.mbox"));
    std::fs::copy(fixtures().join(format!("{stem}.mbox")), &file).unwrap();
    let state = d.dir.path().join("state.sqlite");
    let want = expected_msgs(stem);

    let out = restore(&d, &file, &user, &state, extra);
    assert_eq!(out.status.code(), Some(0), "{stem}: {}", text(&out));
    let j = json(&out);
    assert_eq!(j["copied"].as_u64(), Some(want.len() as u64), "{stem}: {j}");

    let snap = d.snapshot(&user);
    for (folder, msgs) in &snap.0 {
        assert!(
            folder == stem || msgs.is_empty(),
            "{stem}: {} message(s) landed in {folder:?}: {:?}",
            msgs.len(),
            msgs.iter().map(Msg::subject).collect::<Vec<_>>()
        );
    }
    let got = snap
        .0
        .get(stem)
        .unwrap_or_else(|| panic!("{stem}: no folder {stem:?} in {:?}", snap.0.keys()));
    let subjects = |v: &[Msg]| v.iter().map(Msg::subject).collect::<Vec<_>>();
    assert_eq!(
        got.len(),
        want.len(),
        "{stem}: message count: got {:?}, want {:?}",
        subjects(got),
        subjects(&want)
    );
    for w in &want {
        let Some(g) = got.iter().find(|g| g.body == w.body) else {
            let near = got.iter().find(|g| g.subject() == w.subject());
            panic!(
                "{stem}: {} not restored byte-identical\nwant: {:?}\ngot:  {:?}",
                w.subject(),
                String::from_utf8_lossy(&w.body),
                near.map(|g| String::from_utf8_lossy(&g.body).into_owned())
            );
        };
        assert_eq!(g.flags, w.flags, "{stem}: flags of {}", w.subject());
        assert_eq!(g.date, w.date, "{stem}: INTERNALDATE of {}", w.subject());
    }
    assert_eq!(got, &want, "{stem}: folder contents");

    // Resume/idempotence: the same restore again copies nothing and changes nothing.
    let out = restore(&d, &file, &user, &state, extra);
    assert_eq!(out.status.code(), Some(0), "{stem} (again): {}", text(&out));
    let j = json(&out);
    assert_eq!(j["copied"].as_u64(), Some(0), "{stem} (again): {j}");
    assert_eq!(
        d.snapshot(&user).0.get(stem),
        Some(&want),
        "{stem}: the second restore changed the folder"
    );
}

#[test]
fn mboxrd_quoting() {
    check("mboxrd", &[]);
}

#[test]
fn mboxo_quoting() {
    check("mboxo", &["--mbox-format", "mboxo"]);
}

#[test]
fn crlf_line_endings() {
    check("crlf", &[]);
}

#[test]
fn utf8_bom() {
    check("bom", &[]);
}

#[test]
fn unquoted_from_lines_in_bodies() {
    check("from-in-body", &[]);
}

#[test]
fn last_message_without_final_newline() {
    check("no-final-newline", &[]);
}

#[test]
fn written_by_python_mailbox() {
    check("python", &[]);
}

#[test]
fn mutt_status_headers() {
    check("mutt-status", &[]);
}

/// A file without a single valid separator is no mbox file: an input error naming
/// the file (exit 2), never "copied: 0" with exit 0 (issue 15).
#[test]
fn no_separator_is_an_input_error() {
    const USER: &str = "empty@mbox.test";
    let d = Dovecot::start(&[USER]);
    let file = d.dir.path().join("notes.mbox");
    std::fs::write(
        &file,
        "Subject: no separator\n\nFrom here on, we go\n\nFrom someone\njunk\nFrom a@x Thu Jan  1 00:00:00 1970\nx\n",
    )
    .unwrap();
    let state = d.dir.path().join("state.sqlite");
    let out = restore(&d, &file, USER, &state, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notes.mbox") && err.contains("not an mbox file"),
        "{}",
        text(&out)
    );
    assert_eq!(d.count(USER), 0, "{:?}", d.snapshot(USER));
}

/// A --from path that does not exist is an input error: exit code 2, one line on stderr.
#[test]
fn missing_file_is_an_input_error() {
    const USER: &str = "missing@mbox.test";
    let d = Dovecot::start(&[USER]);
    let file = d.dir.path().join("does-not-exist.mbox");
    let state = d.dir.path().join("state.sqlite");
    let out = restore(&d, &file, USER, &state, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim_end();
    assert!(
        !err.is_empty() && !err.contains('\n'),
        "want one line on stderr: {}",
        text(&out)
    );
    assert!(err.contains("does-not-exist.mbox"), "{}", text(&out));
    assert_eq!(d.count(USER), 0);
}
