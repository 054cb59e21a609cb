//! Which messages a run copies: `--since`, `--before`, `--max-size`, the target's
//! APPENDLIMIT and `--newest-first`, against real Dovecot instances. What is left
//! on the source is counted in the summary with its reason and copied by a later
//! run without the filter, never twice.

use std::path::Path;
use std::process::Output;

use crate::common::*;

const SRC: &str = "anna@source.test";
const DST: &str = "anna@target.test";

fn migrate(src: &Dovecot, dst: &Dovecot, state: &Path, extra: &[&str]) -> Output {
    Run::migrate_between(src, SRC, dst, DST)
        .state(state)
        .arg("--json")
        .args(extra)
        .run()
}

fn left(j: &serde_json::Value) -> Vec<(String, u64)> {
    j["left"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// A date window, then a size cap, then nothing: each run copies what its filters
/// let through, counts the rest per reason, and the last run fills the target with
/// every message once — except the 3 MB one, larger than the target's APPENDLIMIT,
/// which is left on the source with that reason (not failed: exit 0).
#[test]
fn date_window_size_cap_and_appendlimit_leave_messages_on_the_source() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start_with(
        &[DST],
        Config {
            max_mail_size: Some("1M"),
            append_limit: Some("1048576"),
            ..Config::default()
        },
    );
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let all = dated_fixtures().len() as u64;
    let (since, before) = (20130409, 20240305);
    let in_window = |day: u32| day >= since && day < before;
    let small = |size: usize| size <= 1_048_576;

    // 1: the window 2013-04-09 ..< 2024-03-05 (the 3 MB fixture is of 2024-03-04).
    let out = migrate(
        &src,
        &dst,
        &state,
        &["--since", "2013-04-09", "--before", "5-Mar-2024"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    let r = dated_fixtures();
    let older = r
        .iter()
        .filter(|x| x.day < since && small(x.body.len()))
        .count() as u64;
    let newer = r
        .iter()
        .filter(|x| x.day >= before && small(x.body.len()))
        .count() as u64;
    let mut want_left = vec![
        ("dated --before 2024-03-05 or later".to_string(), newer),
        ("dated before --since 2013-04-09".to_string(), older),
        (
            "larger than the target accepts (its APPENDLIMIT, 1048576 bytes)".to_string(),
            1,
        ),
    ];
    want_left.sort();
    assert_eq!(left(&j), want_left, "{j}");
    assert!(older > 0 && newer > 0, "the window must cut both ends");
    let copied_1 = j["copied"].as_u64().unwrap() + j["duplicates"].as_u64().unwrap();
    assert_eq!(copied_1 + older + newer + 1, all, "{j}");
    assert_same(
        &non_empty(dst.snapshot(DST)),
        &expected_where(|day, body| in_window(day) && small(body.len())),
    );

    // 2: no window, at most 4000 bytes: the small ones outside the window come.
    let out = migrate(&src, &dst, &state, &["--max-size", "4000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    let larger = r
        .iter()
        .filter(|x| !in_window(x.day) && x.body.len() > 4000)
        .count() as u64;
    assert_eq!(
        left(&j),
        vec![(
            "larger than --max-size (4000 bytes)".to_string(),
            larger + 1
        )],
        "{j}"
    );
    assert_same(
        &non_empty(dst.snapshot(DST)),
        &expected_where(|day, body| (in_window(day) || body.len() <= 4000) && small(body.len())),
    );

    // 3: no filter: the rest, nothing twice; the 3 MB message is still left.
    let out = migrate(&src, &dst, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        left(&j),
        vec![(
            "larger than the target accepts (its APPENDLIMIT, 1048576 bytes)".to_string(),
            1
        )],
        "{j}"
    );
    assert_same(
        &non_empty(dst.snapshot(DST)),
        &expected_where(|_, body| small(body.len())),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!stdout.contains("\"failed\": [\n"), "{stdout}");
}

/// A dry run names what the filters leave, in its text summary.
#[test]
fn a_dry_run_counts_what_the_filters_leave() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start(&[DST]);
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let out = Run::new("migrate")
        .from(src.imaps_url(SRC))
        .to(dst.imaps_url(DST))
        .passwords(&src)
        .ca(&src)
        .state(&state)
        .args(["--dry-run", "--since", "2024-01-01"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let older = dated_fixtures().iter().filter(|x| x.day < 20240101).count();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "left on the source: {older} dated before --since 2024-01-01"
        )),
        "{stdout}"
    );
    assert_eq!(dst.count(DST), 0);
}

/// Bad values are named with what to write instead (exit 2), before any login.
#[test]
fn bad_filter_values_are_refused_with_the_flag_named() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--since", "yesterday"],
            "--since: \"yesterday\" is not a date",
        ),
        (
            &["--max-size", "12.5M"],
            "--max-size: \"12.5M\" is not a size",
        ),
        (
            &["--since", "2024-02-01", "--before", "2024-01-01"],
            "--since 2024-02-01 is not before --before 2024-01-01",
        ),
    ];
    for (args, want) in cases {
        let mut argv = vec![
            "migrate",
            "--from",
            "imaps://a@127.0.0.1:1",
            "--to",
            "imaps://b@127.0.0.1:1",
        ];
        argv.extend_from_slice(args);
        let out = mailferry(&argv);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

/// `--newest-first`: the target receives each folder's messages from the newest
/// source UID down (its UIDs rise as the source's fall).
#[test]
fn newest_first_appends_the_newest_messages_first() {
    newest_first_with(&[]);
}

/// As above with listings read in pages of 5 and not kept from planning: the pages
/// themselves come from the newest UID down.
#[test]
fn newest_first_holds_across_listing_pages() {
    newest_first_with(&[
        ("MAILFERRY_LISTING_PAGE", "5"),
        ("MAILFERRY_KEEP_LISTED", "0"),
    ]);
}

fn newest_first_with(env: &[(&str, &str)]) {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start(&[DST]);
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let out = Run::new("migrate")
        .from(src.imaps_url(SRC))
        .to(dst.imaps_url(DST))
        .passwords(&src)
        .ca(&src)
        .state(&state)
        .args(["--newest-first", "--dedupe", "none"])
        .command()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let order = |d: &Dovecot, user: &str| -> Vec<Vec<u8>> {
        let out = std::process::Command::new("python3")
            .arg(root().join("scripts/bench_measure.py"))
            .args([
                "dump",
                "--host",
                "localhost",
                "--port",
                &d.imaps.to_string(),
                "--user",
                user,
            ])
            .arg("--password-file")
            .arg(d.pwfile())
            .arg("--ca-file")
            .arg(d.ca())
            .output()
            .unwrap();
        assert!(out.status.success());
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        j["INBOX"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().as_bytes().to_vec())
            .collect()
    };
    let mut source = order(&src, SRC);
    let target = order(&dst, DST);
    assert!(source.len() > 3);
    source.reverse();
    assert_eq!(
        target, source,
        "target INBOX in UID order = source INBOX newest first"
    );
}

/// POP3 has no INTERNALDATE: `--since` / `--before` judge each message by its
/// `Date:` header once it is downloaded. Three messages of 2019, 2021 and 2023 on a
/// real Dovecot POP3S: only 2021 is copied, the others are counted as left.
#[test]
fn pop3_messages_are_judged_by_their_headers() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start(&[DST]);
    let script = format!(
        "import imaplib, ssl\n\
         ctx = ssl.create_default_context(cafile={ca:?})\n\
         im = imaplib.IMAP4_SSL('localhost', {port}, ssl_context=ctx)\n\
         im.login({user:?}, open({pw:?}).read().strip())\n\
         for y in (2019, 2021, 2023):\n    \
             m = ('From: a@example.test\\r\\nDate: 1 Jul %d 10:00:00 +0000\\r\\nSubject: from %d\\r\\n\\r\\nbody %d\\r\\n' % (y, y, y)).encode()\n    \
             assert im.append('INBOX', None, None, m)[0] == 'OK'\n\
         im.logout()\n",
        ca = src.ca().display().to_string(),
        port = src.imaps,
        user = SRC,
        pw = src.pwfile().display().to_string(),
    );
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let out = Run::new("migrate")
        .from(format!("pop3s://{SRC}@localhost:{}", src.pop3s))
        .to(dst.imaps_url(DST))
        .passwords(&src)
        .ca(&src)
        .state(src.dir.path().join("state.sqlite"))
        .args(["--json", "--since", "2020-06-01", "--before", "2022-12-31"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        left(&j),
        vec![
            ("dated --before 2022-12-31 or later".to_string(), 1),
            ("dated before --since 2020-06-01".to_string(), 1),
        ],
        "{j}"
    );
    let got = dst.snapshot(DST);
    let subjects: Vec<String> = got.0["INBOX"].iter().map(Msg::subject).collect();
    assert_eq!(subjects, vec!["Subject: from 2021"], "{got:?}");
}
