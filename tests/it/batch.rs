//! `mailferry batch` and `mailferry addresses check` against a real Dovecot.

use std::collections::BTreeSet;
use std::process::Output;

use crate::common::*;

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

fn src_user(i: usize) -> String {
    format!("src{i:02}@source.test")
}
fn dst_user(i: usize) -> String {
    format!("dst{i:02}@target.test")
}

/// A Dovecot with `n` source accounts (3 messages each, one of them twice) and `n`
/// empty target accounts.
fn setup(n: usize) -> Dovecot {
    let mut users: Vec<String> = (0..n).map(src_user).collect();
    users.extend((0..n).map(dst_user));
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let d = Dovecot::start(&refs);
    for i in 0..n {
        let seed = format!("acct{i}");
        d.seed_args(
            &src_user(i),
            &["--generate", "3", "--folder", "INBOX", "--seed", &seed],
        );
        // "Keep a copy on the server": the first message again.
        d.seed_args(
            &src_user(i),
            &["--generate", "1", "--folder", "INBOX", "--seed", &seed],
        );
    }
    d
}

/// Rows: even accounts come over POP3S, odd ones over IMAPS; targets are IMAPS.
fn csv(
    d: &Dovecot,
    n: usize,
    source_host: &str,
    source_ports: (u16, u16),
    target_port: u16,
    bad_password_row: Option<usize>,
) -> String {
    let mut out = String::from(
        "source;source_protocol;source_user;source_password;target;target_user;target_password\n",
    );
    for i in 0..n {
        let (proto, port) = if i % 2 == 0 {
            ("pop3s", source_ports.0)
        } else {
            ("imaps", source_ports.1)
        };
        let pw = if Some(i) == bad_password_row {
            "wrong-password".to_string()
        } else {
            format!("file:{}", s(&d.pwfile()))
        };
        out.push_str(&format!(
            "{source_host}:{port};{proto};{};{pw};localhost:{target_port};{};env:MF_TEST_TARGET_PW\n",
            src_user(i),
            dst_user(i)
        ));
    }
    out
}

fn batch(d: &Dovecot, csv_path: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let state = d.dir.path().join("state.sqlite");
    let mut c = Run::new("batch")
        .arg(csv_path)
        .ca(d)
        .state(&state)
        .args(extra)
        .command();
    c.env("MF_TEST_TARGET_PW", PASSWORD);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Each target INBOX holds its source's distinct messages (three, or more when a
/// test added mail), once each; from an IMAP source (odd accounts) with their flags
/// and INTERNALDATE too (POP3 has neither: its messages are dated from headers).
fn assert_accounts_copied(d: &Dovecot, n: usize, skip: Option<usize>) {
    for i in (0..n).filter(|i| Some(*i) != skip) {
        let view = |user: &str| -> BTreeSet<(Vec<u8>, Vec<String>, i64)> {
            d.snapshot(user).0["INBOX"]
                .iter()
                .map(|m| {
                    if i % 2 == 1 {
                        (m.body.clone(), m.flags.clone(), m.date)
                    } else {
                        (m.body.clone(), Vec::new(), 0)
                    }
                })
                .collect()
        };
        let src = view(&src_user(i));
        let dst_count = d.snapshot(&dst_user(i)).0["INBOX"].len();
        let dst = view(&dst_user(i));
        assert!(src.len() >= 3);
        assert_eq!(
            dst_count,
            src.len(),
            "account {i}: {dst_count} messages on the target"
        );
        assert_eq!(src, dst, "account {i}: messages, flags or dates differ");
    }
}

#[test]
fn twenty_mixed_accounts_with_one_bad_password_and_a_report() {
    let n = 20;
    let d = setup(n);
    let path = d.dir.path().join("accounts.csv");
    std::fs::write(
        &path,
        csv(&d, n, "localhost", (d.pop3s, d.imaps), d.imaps, Some(7)),
    )
    .unwrap();
    let report = d.dir.path().join("report.csv");
    let out = batch(
        &d,
        &path,
        &["--jobs", "4", "--report", &s(&report)],
        &[("MAILFERRY_PROGRESS_EVERY_MS", "100")],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "one account failed: {}",
        text(&out)
    );
    // Off a terminal: plain progress lines while it runs, one line per account as it
    // ends, and the report's rows again at the end.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("batch: ")
            && l.contains(" accounts done, ")
            && l.contains(" MB/s")),
        "no periodic progress line in:\n{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with('[') && l.contains("] row "))
            .count(),
        n,
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "row 3: imaps://{}@localhost:{} ok: 3 copied, 1 duplicates",
            dst_user(1),
            d.imaps
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "row 9: imaps://{}@localhost:{} failed",
            dst_user(7),
            d.imaps
        )),
        "{stdout}"
    );
    assert!(stdout.contains("batch: 19 of 20 accounts ok"), "{stdout}");
    assert_accounts_copied(&d, n, Some(7));
    assert_eq!(d.count(&dst_user(7)), 0);

    let rep = std::fs::read_to_string(&report).unwrap();
    let mut lines = rep.lines();
    assert_eq!(
        lines.next().unwrap(),
        "row,source,target,status,copied,duplicates,failed,bytes,seconds,error,would_copy,would_copy_bytes,failed_folders,renamed,changed"
    );
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(rep.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), n);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], (i + 2).to_string());
        assert!(r[1].contains(&src_user(i)), "{r:?}");
        assert!(r[2].contains(&dst_user(i)), "{r:?}");
        let bytes: u64 = r[7].parse().unwrap();
        let seconds: f64 = r[8].parse().unwrap();
        assert!(seconds > 0.0, "{r:?}");
        if i == 7 {
            assert_eq!(r[3], "failed");
            assert!(
                r[9].contains("AUTH") || r[9].contains("refused"),
                "server's words: {r:?}"
            );
            assert_eq!((r[4].as_str(), r[7].as_str()), ("0", "0"), "{r:?}");
        } else {
            assert_eq!(
                (r[3].as_str(), r[4].as_str(), r[5].as_str(), r[6].as_str()),
                ("ok", "3", "1", "0"),
                "{r:?}"
            );
            let want: u64 = d.snapshot(&dst_user(i)).0["INBOX"]
                .iter()
                .map(|m| m.body.len() as u64)
                .sum();
            assert_eq!(bytes, want, "{r:?}");
        }
    }
    for secret in [PASSWORD, "wrong-password"] {
        assert!(
            !rep.contains(secret) && !text(&out).contains(secret),
            "a password leaked"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&report).unwrap().permissions().mode() & 0o077,
            0
        );
    }

    // Re-running resumes: nothing is copied twice, and new mail is picked up.
    d.seed_args(
        &src_user(5),
        &["--generate", "1", "--folder", "INBOX", "--seed", "later"],
    );
    let out = batch(&d, &path, &["--jobs", "4", "--json"], &[]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copied: u64 = j
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["copied"].as_u64().unwrap())
        .sum();
    assert_eq!(copied, 1, "only the new message: {}", text(&out));
    assert_eq!(d.count(&dst_user(5)), 4);
    assert_accounts_copied(&d, n, Some(7));
}

#[test]
fn interrupted_batch_resumes_with_nothing_lost_or_doubled() {
    let n = 8;
    let d = setup(n);
    let path = d.dir.path().join("accounts.csv");
    std::fs::write(
        &path,
        csv(&d, n, "localhost", (d.pop3s, d.imaps), d.imaps, None),
    )
    .unwrap();
    let report = d.dir.path().join("report.csv");
    for (var, n) in [
        // 8 accounts of 3 appends, 4 at a time, one message per APPEND (so at most 4
        // are in flight when a run aborts). After 14 acknowledged appends at least
        // one account has ended (at most 4 × 3 belong to running ones); at most 17
        // messages are on the target, so the next run has at least 7 to append and
        // reaches its 2nd; that leaves at least 2, so the last run has work to
        // record and reaches its first index commit.
        ("MAILFERRY_CRASH_AFTER_APPENDS", "14"),
        ("MAILFERRY_CRASH_AFTER_APPENDS", "2"),
        ("MAILFERRY_CRASH_IN_COMMIT", "1"),
    ] {
        let out = batch(
            &d,
            &path,
            &["--jobs", "4", "--report", &s(&report)],
            &[(var, n), ("MAILFERRY_BATCH_COUNT", "1")],
        );
        assert!(
            out.status.code() != Some(0)
                && String::from_utf8_lossy(&out.stderr).contains("crash point reached"),
            "the crash point {var}={n} was not reached: {}",
            text(&out)
        );
        if n == "14" {
            // The report grows as accounts end, so a killed batch still has one.
            let rep = std::fs::read_to_string(&report).unwrap();
            let rows: Vec<&str> = rep.lines().skip(1).collect();
            assert!(!rows.is_empty(), "{rep}");
            assert!(rows.iter().all(|r| r.contains(",ok,3,")), "{rep}");
        }
    }
    let out = batch(&d, &path, &["--jobs", "4"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_accounts_copied(&d, n, None);
}

#[test]
fn max_per_host_is_respected_on_the_server_side() {
    let n = 8;
    let d = setup(n);
    // Every connection of the batch goes through these proxies, all on one machine:
    // the sources are written "127.0.0.1" in the CSV, the targets "localhost", so
    // mailferry must see that they are one server.
    let counter = ConnCounter::default();
    let pop = CountingProxy::start(d.pop3s, &counter);
    let imap = CountingProxy::start(d.imaps, &counter);
    let target = CountingProxy::start(d.imaps, &counter);
    let path = d.dir.path().join("accounts.csv");
    std::fs::write(
        &path,
        csv(&d, n, "127.0.0.1", (pop.port, imap.port), target.port, None),
    )
    .unwrap();
    let out = batch(&d, &path, &["--jobs", "6", "--max-per-host", "4"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    use std::sync::atomic::Ordering;
    assert_eq!(
        counter.total.load(Ordering::SeqCst),
        2 * n,
        "one source and one target connection per account"
    );
    // At any moment at most 4 connections to the one server (two accounts, each with
    // a source and a target connection), and the workers did run side by side (one
    // account at a time would make 2).
    let peak = counter.peak();
    assert!((3..=4).contains(&peak), "peak {peak} connections");
    assert_accounts_copied(&d, n, None);
}

#[test]
fn bad_rows_are_all_listed_and_nothing_runs() {
    let d = setup(1);
    let path = d.dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "source,source_protocol,source_user,source_password,target_user,target_password,colour\n\
         imaps://h,,u,p,ok@example.ch,p,blue\n",
    )
    .unwrap();
    let out = batch(&d, &path, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("row 1, column colour: unknown column"),
        "{}",
        text(&out)
    );

    // Four bad rows and a good one, whose source goes through a counting proxy.
    let counter = ConnCounter::default();
    let proxy = CountingProxy::start(d.imaps, &counter);
    std::fs::write(
        &path,
        format!(
            "source,source_protocol,source_user,source_password,target,target_user,target_password\n\
             localhost:1,ftp,u,p,,one@example.ch,p\n\
             imaps://localhost:1,,u,p,,anna..alpha@example.ch,p\n\
             imaps://localhost:1,,u,p,,two@example.ch,\n\
             imaps://localhost:1,,u,p,,one@example.ch,p\n\
             imaps://localhost:{},,{},file:{},imaps://localhost:{},{},env:MF_TEST_TARGET_PW\n",
            proxy.port,
            src_user(0),
            s(&d.pwfile()),
            d.imaps,
            dst_user(0)
        ),
    )
    .unwrap();
    let out = batch(&d, &path, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "row 2, column source_protocol: unknown protocol; use imaps, imap, pop3s or pop3",
        "row 3, column target_user: \"anna..alpha@example.ch\" breaks the host's address rules: the part before @ has two dots in a row",
        "row 4, column target_password: empty",
        "row 5, column target_user: the same target account (on the same server) is already in row 2",
        "4 bad rows (listed above); nothing was started",
        "--skip-invalid to run the 1 good rows",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("row 6"), "row 6 is valid: {err}");
    use std::sync::atomic::Ordering;
    assert_eq!(
        counter.total.load(Ordering::SeqCst),
        0,
        "a connection was opened"
    );
    assert_eq!(d.count(&dst_user(0)), 0);

    // --skip-invalid: the good row runs (one pair: one connection to count), the
    // bad ones are in the report as invalid.
    let report = d.dir.path().join("report.csv");
    let out = batch(
        &d,
        &path,
        &[
            "--skip-invalid",
            "--connections",
            "1",
            "--report",
            &s(&report),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(counter.total.load(Ordering::SeqCst), 1);
    assert_accounts_copied(&d, 1, None);
    let rows: Vec<csv::StringRecord> = csv::Reader::from_path(&report)
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (&r[0], &r[3])).collect();
    assert_eq!(
        got,
        [
            ("2", "invalid"),
            ("3", "invalid"),
            ("4", "invalid"),
            ("5", "invalid"),
            ("6", "ok")
        ]
    );
    assert!(
        rows[0][9].contains("column source_protocol: unknown protocol"),
        "{rows:?}"
    );
    assert_eq!(&rows[4][4], "3", "{rows:?}");
}

#[test]
fn shards_cover_every_row_exactly_once() {
    let n = 7;
    let d = setup(n);
    let path = d.dir.path().join("accounts.csv");
    std::fs::write(
        &path,
        csv(&d, n, "localhost", (d.pop3s, d.imaps), d.imaps, None),
    )
    .unwrap();
    let mut seen = Vec::new();
    for k in 1..=3 {
        let out = batch(
            &d,
            &path,
            &["--dry-run", "--json", "--shard", &format!("{k}/3")],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for r in j.as_array().unwrap() {
            seen.push(r["row"].as_u64().unwrap());
            // A dry run says what a real run would copy: the four messages listed
            // (the duplicate is only known once fetched), nothing yet copied.
            assert_eq!(
                (
                    r["status"].as_str(),
                    r["would_copy"].as_u64(),
                    r["copied"].as_u64()
                ),
                (Some("ok"), Some(4), Some(0)),
                "{r}"
            );
            assert!(r["would_copy_bytes"].as_u64().unwrap() > 400, "{r}");
        }
    }
    seen.sort();
    assert_eq!(seen, (2..2 + n as u64).collect::<Vec<_>>());
    for i in 0..n {
        assert_eq!(d.count(&dst_user(i)), 0, "a dry run wrote to the target");
    }
}

#[test]
fn addresses_check_lists_every_bad_address() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("new.csv");
    std::fs::write(&f, "name;email\nAnna;anna.alpha@example.ch\nBad;anna..alpha@example.ch\nZoe;zoë@example.ch\nOk;bob_b-1@example.ch\nSpace;a b@example.ch\n").unwrap();
    let out = mailferry(&["addresses", "check", &s(&f)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(
        o.contains("row 3: \"anna..alpha@example.ch\": the part before @ has two dots in a row"),
        "{o}"
    );
    assert!(
        o.contains("row 4: \"zoë@example.ch\"") && o.contains("non-ASCII"),
        "{o}"
    );
    assert!(
        o.contains("row 6: \"a b@example.ch\"") && o.contains("a space"),
        "{o}"
    );
    assert!(o.contains("5 addresses checked, 3 break"), "{o}");
    std::fs::write(&f, "anna@example.ch\nbob@example.ch\n").unwrap();
    let out = mailferry(&["addresses", "check", &s(&f)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("2 addresses checked, 0 break the host's rules\n"),
        "{}",
        text(&out)
    );
    // A bare list whose first address is bad: checked, not taken for a header.
    std::fs::write(&f, "anna..x.example.ch\nbob@example.ch\n").unwrap();
    let out = mailferry(&["addresses", "check", &s(&f)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(
        o.contains("row 1: not an address (something@domain.tld)"),
        "{o}"
    );
    assert!(o.contains("2 addresses checked, 1 break"), "{o}");
    // --column picks one of several columns.
    std::fs::write(
        &f,
        "Login,Forwarding address\nanna@example.ch,anna..old@example.ch\nbob@example.ch,bob@example.ch\n",
    )
    .unwrap();
    let out = mailferry(&[
        "addresses",
        "check",
        &s(&f),
        "--column",
        "forwarding ADDRESS",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(o.contains("row 2: \"anna..old@example.ch\""), "{o}");
    assert!(o.contains("2 addresses checked, 1 break"), "{o}");
    let out = mailferry(&["addresses", "check", &s(&f), "--column", "email"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("has no column \"email\"; its columns are login, forwarding address"),
        "{}",
        text(&out)
    );
}

/// Batch rows take the folder rules of `migrate` (they could not before): for every
/// row `--exclude`, `--folder-map` (a row's own `folder_map` cell wins for the same
/// folder, children follow their parent) and `--connections 2`; `--to-folder` puts a
/// POP3 row's mail into that folder. An account whose connection pairs cannot fit
/// under --max-per-host is refused before anything runs.
#[test]
fn rows_take_the_folder_rules_of_migrate() {
    let (a, b, pop, t1, t2, t3) = (
        "anna@source.test",
        "bert@source.test",
        "carl@source.test",
        "anna@target.test",
        "bert@target.test",
        "carl@target.test",
    );
    let d = Dovecot::start(&[a, b, pop, t1, t2, t3]);
    for u in [a, b, pop] {
        d.seed(u);
    }
    let pw = format!("file:{}", s(&d.pwfile()));
    let csv_path = d.dir.path().join("rules.csv");
    std::fs::write(
        &csv_path,
        format!(
            "source;source_protocol;source_user;source_password;target;target_user;target_password;folder_map\n\
             localhost:{imaps};imaps;{a};{pw};localhost:{imaps};{t1};env:MF_TEST_TARGET_PW;\n\
             localhost:{imaps};imaps;{b};{pw};localhost:{imaps};{t2};env:MF_TEST_TARGET_PW;Projects=Old Projects\n",
            imaps = d.imaps
        ),
    )
    .unwrap();
    let rules = [
        "--exclude",
        "Junk",
        "--exclude",
        "Trash",
        "--folder-map",
        "Projects=Work",
        "--connections",
        "2",
    ];
    // Two pairs per account, source and target on one server: four connections.
    let out = batch(
        &d,
        &csv_path,
        &[&rules[..], &["--max-per-host", "3"]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the account needs 4 connections")
            && text(&out).contains("--max-per-host must be at least 4"),
        "{}",
        text(&out)
    );
    assert!(
        d.snapshot(t1).0.values().all(|v| v.is_empty()),
        "nothing ran"
    );

    let out = batch(
        &d,
        &csv_path,
        &[&rules[..], &["--max-per-host", "4"]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let moved = |projects: &'static str| {
        let mut want = expected(move |f| match f.strip_prefix("Projects") {
            Some(rest) => format!("{projects}{rest}"),
            None => f.to_string(),
        });
        want.0.retain(|k, _| k != "Junk" && k != "Trash");
        want
    };
    let got1 = d.snapshot(t1);
    assert_same(&got1, &moved("Work"));
    assert!(!got1.0.contains_key("Junk") || got1.0["Junk"].is_empty());
    assert_same(&d.snapshot(t2), &moved("Old Projects"));

    // A POP3 row into the folder --to-folder names.
    let csv_path = d.dir.path().join("pop.csv");
    std::fs::write(
        &csv_path,
        format!(
            "source;source_protocol;source_user;source_password;target;target_user;target_password\n\
             localhost:{};pop3s;{pop};{pw};localhost:{};{t3};env:MF_TEST_TARGET_PW\n",
            d.pop3s, d.imaps
        ),
    )
    .unwrap();
    let out = batch(&d, &csv_path, &["--to-folder", "From POP"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = d.snapshot(t3);
    let inbox: BTreeSet<Vec<u8>> = expected(|f| f.to_string()).0["INBOX"]
        .iter()
        .map(|m| m.body.clone())
        .collect();
    let landed: BTreeSet<Vec<u8>> = got.0["From POP"].iter().map(|m| m.body.clone()).collect();
    // Compared by subject and count: Dovecot's POP3 renders a few fixtures its own
    // way (the final line end), which tests/pop3_mbox.rs covers; here the folder is
    // what is tested.
    let subjects = |set: &BTreeSet<Vec<u8>>| -> Vec<String> {
        set.iter()
            .map(|b| {
                Msg {
                    body: b.clone(),
                    flags: vec![],
                    date: 0,
                }
                .subject()
            })
            .collect()
    };
    assert_eq!(
        subjects(&landed),
        subjects(&inbox),
        "the POP3 mailbox, once each, in From POP"
    );
    assert_eq!(got.0["From POP"].len(), inbox.len());
    assert!(got.0.get("INBOX").is_none_or(|v| v.is_empty()));
}

/// Rows take message filters, their own cells winning over the batch's flags:
/// row 1 `since` 2019-01-01 (with the batch's `--before 2024-03-01`), row 2
/// `max_size` 4000 bytes (and the batch's `--before`), row 3 only the batch's.
/// Each target holds exactly the fixtures its filters let through, once.
#[test]
fn rows_take_message_filters_of_their_own_or_the_batchs() {
    let (a, b, c, t1, t2, t3) = (
        "anna@source.test",
        "bert@source.test",
        "cora@source.test",
        "anna@target.test",
        "bert@target.test",
        "cora@target.test",
    );
    let d = Dovecot::start(&[a, b, c, t1, t2, t3]);
    for u in [a, b, c] {
        d.seed(u);
    }
    let pw = format!("file:{}", s(&d.pwfile()));
    let csv_path = d.dir.path().join("filters.csv");
    std::fs::write(
        &csv_path,
        format!(
            "source;source_user;source_password;target;target_user;target_password;since;max_size\n\
             imaps://localhost:{i};{a};{pw};localhost:{i};{t1};env:MF_TEST_TARGET_PW;2019-01-01;\n\
             imaps://localhost:{i};{b};{pw};localhost:{i};{t2};env:MF_TEST_TARGET_PW;;4000\n\
             imaps://localhost:{i};{c};{pw};localhost:{i};{t3};env:MF_TEST_TARGET_PW;;\n",
            i = d.imaps
        ),
    )
    .unwrap();
    let out = batch(&d, &csv_path, &["--before", "2024-03-01"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let before = |day: u32| day < 20240301;
    assert_same(
        &non_empty(d.snapshot(t1)),
        &expected_where(|day, _| day >= 20190101 && before(day)),
    );
    assert_same(
        &non_empty(d.snapshot(t2)),
        &expected_where(|day, body| body.len() <= 4000 && before(day)),
    );
    assert_same(
        &non_empty(d.snapshot(t3)),
        &expected_where(|day, _| before(day)),
    );
}
