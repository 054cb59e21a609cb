//! `mailferry batch` and `mailferry addresses check` against a real Dovecot.

mod common;

use std::collections::BTreeSet;
use std::process::Output;

use common::*;

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
            "{source_host}:{port};{proto};{};{pw};localhost:{};{};env:MF_TEST_TARGET_PW\n",
            src_user(i),
            d.imaps,
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

/// Each target INBOX holds its source's three distinct messages, once each.
fn assert_accounts_copied(d: &Dovecot, n: usize, skip: Option<usize>) {
    for i in (0..n).filter(|i| Some(*i) != skip) {
        let src: BTreeSet<Vec<u8>> = d.snapshot(&src_user(i)).0["INBOX"]
            .iter()
            .map(|m| m.body.clone())
            .collect();
        let dst = &d.snapshot(&dst_user(i)).0["INBOX"];
        let dst_set: BTreeSet<Vec<u8>> = dst.iter().map(|m| m.body.clone()).collect();
        assert_eq!(src.len(), 3);
        assert_eq!(
            dst.len(),
            3,
            "account {i}: {} messages on the target",
            dst.len()
        );
        assert_eq!(src, dst_set, "account {i}: messages differ");
    }
}

#[test]
fn twenty_mixed_accounts_with_one_bad_password_and_a_report() {
    let n = 20;
    let d = setup(n);
    let path = d.dir.path().join("accounts.csv");
    std::fs::write(&path, csv(&d, n, "localhost", (d.pop3s, d.imaps), Some(7))).unwrap();
    let report = d.dir.path().join("report.csv");
    let out = batch(&d, &path, &["--jobs", "4", "--report", &s(&report)], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one account failed: {}",
        text(&out)
    );
    assert_accounts_copied(&d, n, Some(7));
    assert_eq!(d.count(&dst_user(7)), 0);

    let rep = std::fs::read_to_string(&report).unwrap();
    let mut lines = rep.lines();
    assert_eq!(
        lines.next().unwrap(),
        "row,source,target,status,copied,duplicates,failed,bytes,seconds,error"
    );
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(rep.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), n);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], (i + 2).to_string());
        assert!(r[2].contains(&dst_user(i)), "{r:?}");
        if i == 7 {
            assert_eq!(r[3], "failed");
            assert!(
                r[9].contains("AUTH") || r[9].contains("refused"),
                "server's words: {r:?}"
            );
        } else {
            assert_eq!(
                (r[3].as_str(), r[4].as_str(), r[5].as_str()),
                ("ok", "3", "1"),
                "{r:?}"
            );
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

    // Re-running resumes: nothing is copied twice.
    let out = batch(&d, &path, &["--jobs", "4", "--json"], &[]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copied: u64 = j
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["copied"].as_u64().unwrap())
        .sum();
    assert_eq!(copied, 0, "{}", text(&out));
    assert_accounts_copied(&d, n, Some(7));
}

#[test]
fn interrupted_batch_resumes_with_nothing_lost_or_doubled() {
    let n = 8;
    let d = setup(n);
    let path = d.dir.path().join("accounts.csv");
    std::fs::write(&path, csv(&d, n, "localhost", (d.pop3s, d.imaps), None)).unwrap();
    for (var, n) in [
        ("MAILFERRY_CRASH_AFTER_APPENDS", "9"),
        ("MAILFERRY_CRASH_IN_COMMIT", "3"),
        ("MAILFERRY_CRASH_AFTER_APPENDS", "2"),
    ] {
        let out = batch(&d, &path, &["--jobs", "4"], &[(var, n)]);
        assert_ne!(
            out.status.code(),
            Some(0),
            "the crash point {var}={n} was not reached: {}",
            text(&out)
        );
    }
    let out = batch(&d, &path, &["--jobs", "4"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_accounts_copied(&d, n, None);
}

#[test]
fn max_per_host_is_respected_on_the_server_side() {
    let n = 8;
    let d = setup(n);
    let counter = ConnCounter::default();
    let pop = CountingProxy::start(d.pop3s, &counter);
    let imap = CountingProxy::start(d.imaps, &counter);
    // Both proxies stand for one source server, 127.0.0.1; targets are on "localhost".
    let path = d.dir.path().join("accounts.csv");
    std::fs::write(&path, csv(&d, n, "127.0.0.1", (pop.port, imap.port), None)).unwrap();
    let out = batch(&d, &path, &["--jobs", "6", "--max-per-host", "2"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    use std::sync::atomic::Ordering;
    assert_eq!(
        counter.total.load(Ordering::SeqCst),
        n,
        "one source connection per account"
    );
    // At any moment, POP3 and IMAP together: at most 2 connections to the source server,
    // and the workers did run side by side.
    assert_eq!(counter.peak.load(Ordering::SeqCst), 2);
    assert_accounts_copied(&d, n, None);
}

#[test]
fn bad_rows_are_all_listed_and_nothing_runs() {
    let d = Dovecot::start(&["dst00@target.test"]);
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

    std::fs::write(
        &path,
        "source,source_protocol,source_user,source_password,target_user,target_password\n\
         localhost:1,ftp,u,p,one@example.ch,p\n\
         imaps://localhost:1,,u,p,anna..alpha@example.ch,p\n\
         imaps://localhost:1,,u,p,two@example.ch,\n\
         imaps://localhost:1,,u,p,one@example.ch,p\n\
         imaps://localhost:1,,u,p,dst00@target.test,p\n",
    )
    .unwrap();
    let out = batch(&d, &path, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "row 2, column source_protocol: unknown protocol \"ftp\"",
        "row 3, column target_user: \"anna..alpha@example.ch\" breaks the host's address rules: the part before @ has two dots in a row",
        "row 4, column target_password: empty",
        "row 5, column target_user: the same target",
        "4 bad rows",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("row 6"), "row 6 is valid: {err}");
}

#[test]
fn shards_cover_every_row_exactly_once() {
    let n = 7;
    let d = setup(n);
    let path = d.dir.path().join("accounts.csv");
    std::fs::write(&path, csv(&d, n, "localhost", (d.pop3s, d.imaps), None)).unwrap();
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
        seen.extend(
            j.as_array()
                .unwrap()
                .iter()
                .map(|r| r["row"].as_u64().unwrap()),
        );
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
}
