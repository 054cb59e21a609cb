//! What the server refuses, and what must never leak: messages the target rejects
//! are reported with the server's words and retried on the next run; a full quota
//! stops the account cleanly; certificates are checked; no password is ever written.

use crate::common::*;

const SRC: &str = "rita@source.test";
const DST: &str = "rita@target.test";

fn migrate(
    src: &Dovecot,
    dst: &Dovecot,
    state: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    Run::migrate_between(src, SRC, dst, DST)
        .state(state)
        .arg("--json")
        .args(extra)
        .run()
}

/// The 3 MB fixture is over the target's size limit: it fails with the server's
/// own NO text, everything else is copied, the exit code says so, and the next run
/// tries it again (and copies nothing else twice).
#[test]
fn a_refused_message_is_reported_and_retried_not_dropped() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start_with(
        &[DST],
        Config {
            max_mail_size: Some("1M"),
            ..Config::default()
        },
    );
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let out = migrate(&src, &dst, &state, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json(&out);
    assert_eq!(j["copied"], 29, "{j}");
    let failed = j["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{j}");
    assert_eq!(failed[0]["folder"], "INBOX");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("[LIMIT]") && reason.contains("larger than the maximum size"),
        "the server's words: {reason}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than the maximum size"));

    let out = migrate(&src, &dst, &state, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["failed"].as_array().unwrap().len()),
        (Some(0), 1),
        "retried, still refused: {j}"
    );
    let mut want = expected(|f| f.to_string());
    want.0
        .get_mut("INBOX")
        .unwrap()
        .retain(|m| m.body.len() < 1_000_000);
    assert_same(&dst.snapshot(DST), &want);
}

/// The target's quota runs out half-way: the account stops with a clear message
/// (exit 1); once the quota is raised, the next run copies the rest, nothing twice.
#[test]
fn over_quota_stops_cleanly_and_the_next_run_finishes() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start_with(
        &[DST],
        Config {
            quota: Some("60k"),
            ..Config::default()
        },
    );
    src.seed_args(
        SRC,
        &["--generate", "30", "--folder", "INBOX", "--seed", "q"],
    );
    let state = src.dir.path().join("state.sqlite");
    let out = migrate(&src, &dst, &state, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json(&out);
    let stopped = j["stopped"].as_str().unwrap_or_else(|| panic!("{j}"));
    assert!(
        stopped.contains("over quota") && stopped.contains("OVERQUOTA"),
        "{stopped}"
    );
    let first = j["copied"].as_u64().unwrap();
    assert!(first > 0 && first < 30, "{j}");

    dst.reconfigure("quota_rule = *:storage=60k", "quota_rule = *:storage=10M");
    let out = migrate(&src, &dst, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let inbox_src = &src.snapshot(SRC).0["INBOX"];
    let inbox_dst = &dst.snapshot(DST).0["INBOX"];
    assert_eq!(
        inbox_dst, inbox_src,
        "every message once, with flags and dates"
    );
}

/// A certificate for another name is refused even when it is trusted.
#[test]
fn hostname_mismatch_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    self_signed_cert(certs.path(), "other.example", "DNS:other.example");
    let d = Dovecot::start_with(
        &[SRC],
        Config {
            cert_dir: Some(certs.path().to_path_buf()),
            ..Config::default()
        },
    );
    let out = Run::new("check")
        .arg(d.imaps_url(SRC))
        .opt("--password-file", d.pwfile())
        .ca_file(certs.path().join("cert.pem"))
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS handshake")
            && err.contains("the certificate is not valid for the name localhost"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Run every command with a recognisable password (and the trace on), then search
/// everything written for it: stdout, stderr, the index, reports, backup files.
#[test]
fn no_password_is_ever_written_anywhere() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "3", "--folder", "INBOX", "--seed", "pw"],
    );
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state.sqlite");
    let (src, dst) = (d.imaps_url(SRC), d.imaps_url(DST));
    let pop = format!("pop3s://{SRC}@localhost:{}", d.pop3s);
    let backup = work.path().join("backup");
    let csv = work.path().join("accounts.csv");
    std::fs::write(&csv, format!("source,source_password,target,target_user,target_password\n{src},{PASSWORD},localhost:{},{DST},{PASSWORD}\n", d.imaps)).unwrap();
    // A CSV whose columns are shifted: the password sits where the address should.
    let shifted = work.path().join("shifted.csv");
    std::fs::write(&shifted, format!("source,source_password,target,target_user,target_password\n{src},{PASSWORD},localhost:{},{PASSWORD},{DST}\n", d.imaps)).unwrap();
    let report = work.path().join("report.csv");
    let wrong = work.path().join("wrong");
    std::fs::write(&wrong, "wrong-Pa55word-QUUX\n").unwrap();
    let runs = [
        Run::new("check")
            .arg(&src)
            .opt("--password-file", d.pwfile())
            .ca(&d)
            .arg("-vv"),
        Run::new("check")
            .arg(&src)
            .opt("--password-file", &wrong)
            .ca(&d)
            .arg("-vv"),
        Run::new("migrate")
            .from(&src)
            .to(&dst)
            .passwords(&d)
            .ca(&d)
            .state(&state)
            .arg("-vv"),
        Run::new("migrate")
            .from(&pop)
            .to(&dst)
            .passwords(&d)
            .ca(&d)
            .state(&state)
            .args(["-vv", "--json"]),
        Run::new("backup")
            .from(&src)
            .opt("--out", &backup)
            .from_password_file(d.pwfile())
            .ca(&d)
            .state(&state)
            .arg("-vv"),
        Run::new("verify")
            .from(&src)
            .to(&dst)
            .passwords(&d)
            .ca(&d)
            .arg("-vv"),
        Run::new("batch")
            .arg(&csv)
            .ca(&d)
            .state(&state)
            .opt("--report", &report)
            .arg("-vv"),
        Run::new("batch").arg(&shifted).ca(&d).state(&state),
        Run::restore_into(&d, &backup, DST).state(&state).arg("-vv"),
        Run::new("addresses").arg("check").arg(&shifted),
    ];
    let secrets: Vec<Vec<u8>> = vec![
        PASSWORD.as_bytes().to_vec(),
        b"wrong-Pa55word-QUUX".to_vec(),
        mailferry::imap::client::base64(format!("\0{SRC}\0{PASSWORD}").as_bytes()).into_bytes(),
        mailferry::imap::client::base64(format!("\0{DST}\0{PASSWORD}").as_bytes()).into_bytes(),
    ];
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let mut traced = false;
    for r in &runs {
        let out = r.run();
        traced |= String::from_utf8_lossy(&out.stderr).contains("<credentials masked>");
        for sec in &secrets {
            assert!(
                !contains(&out.stdout, sec) && !contains(&out.stderr, sec),
                "{:?} printed a secret:\n{}",
                r.argv()[0],
                text(&out)
            );
        }
    }
    assert!(traced, "the -vv trace ran");
    let mut files = Vec::new();
    fn walk(p: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                walk(&e, out)
            } else {
                out.push(e)
            }
        }
    }
    walk(work.path(), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("state.sqlite"))
            && files.iter().any(|f| f.ends_with("report.csv"))
    );
    for f in files.iter().filter(|f| {
        !f.ends_with("accounts.csv") && !f.ends_with("shifted.csv") && !f.ends_with("wrong")
    }) {
        let data = std::fs::read(f).unwrap();
        for sec in &secrets {
            assert!(!contains(&data, sec), "{} holds a secret", f.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if f.ends_with("state.sqlite") || f.ends_with("report.csv") || f.starts_with(&backup) {
                let mode = std::fs::metadata(f).unwrap().permissions().mode();
                assert_eq!(
                    mode & 0o077,
                    0,
                    "{} is readable by others ({mode:o})",
                    f.display()
                );
            }
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the backup directory is open to others ({mode:o})"
        );
    }
}

/// Two runs on one index at the same time: the second is refused with a clear line.
#[test]
fn a_second_run_on_the_same_state_is_refused() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "2", "--folder", "INBOX", "--seed", "lock"],
    );
    // The first run hangs on a stalled source connection while it holds the index.
    let stall = FaultProxy::start(d.imaps, Fault::StallAfterServerBytes(0));
    let state = d.dir.path().join("state.sqlite");
    let mut first = Run::new("migrate")
        .from(format!("imaps://{SRC}@localhost:{}", stall.port))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(&state)
        .args(["--timeout", "20", "--retries", "0"])
        .command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let out = migrate(&d, &d, &state, &[]);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another mailferry run is using the index"),
        "{err}"
    );
    assert_eq!(d.count(DST), 0);
    // Once the first run is gone, the index is free again.
    let out = migrate(&d, &d, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A keyword the target refuses (Dovecot: longer than 50 characters, "[CANNOT]
/// Keyword length too long") does not fail the message: it is copied with its system
/// flags, the keyword left out with a note. The long keyword comes from a backup's
/// manifest, since no Dovecot would store it.
#[test]
fn a_keyword_the_target_refuses_does_not_fail_the_message() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let dir = d.dir.path().join("backup");
    let state = d.dir.path().join("state.sqlite");
    let out = Run::new("backup")
        .from(d.imaps_url(SRC))
        .opt("--out", &dir)
        .from_password_file(d.pwfile())
        .ca(&d)
        .state(&state)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let long = format!("$Label{}", "x".repeat(60));
    let manifest = dir.join("mailferry-manifest.jsonl");
    let text_of = std::fs::read_to_string(&manifest).unwrap();
    assert!(text_of.contains("\"$Label1\""));
    std::fs::write(
        &manifest,
        text_of.replace("\"$Label1\"", &format!("\"{long}\"")),
    )
    .unwrap();

    let out = Run::restore_into(&d, &dir, DST)
        .state(&state)
        .arg("--json")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("target refused the keywords") && err.contains("Keyword length too long"),
        "{err}"
    );
    // Every message arrived, byte for byte; those that had the long keyword carry
    // their system flags and no keyword; the others all their flags.
    let want = expected(|f| f.to_string());
    let got = d.snapshot(DST);
    let mut refused = 0;
    for (folder, msgs) in &want.0 {
        let have = &got.0[folder];
        assert_eq!(have.len(), msgs.len(), "{folder}");
        for m in msgs {
            let h = have
                .iter()
                .find(|h| h.body == m.body)
                .unwrap_or_else(|| panic!("{folder}: a message is missing or changed"));
            // The snapshot's flags are sorted, \Recent left aside.
            let flags: Vec<&String> = h.flags.iter().collect();
            let mut want_flags: Vec<&String> = if m.flags.iter().any(|f| f == "$Label1") {
                refused += 1;
                m.flags.iter().filter(|f| f.starts_with('\\')).collect()
            } else {
                m.flags.iter().collect()
            };
            want_flags.sort();
            assert_eq!(flags, want_flags, "{folder}: {}", m.subject());
            assert_eq!(h.date, m.date, "{folder}: {}", m.subject());
        }
    }
    assert_eq!(refused, 5, "the fixtures have five messages with $Label1");
}
