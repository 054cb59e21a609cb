//! `mailferry migrate`, `check` and `verify` against real Dovecot instances.

use crate::common::*;

const SRC: &str = "anna@source.test";
const DST: &str = "anna@target.test";

/// `migrate` between `urls` with each side's password file, the source's CA file
/// and `state`.
fn migrate(src: &Dovecot, dst: &Dovecot, state: &str, urls: &[String; 2]) -> Run {
    Run::new("migrate")
        .from(&urls[0])
        .to(&urls[1])
        .from_password_file(src.pwfile())
        .to_password_file(dst.pwfile())
        .ca(src)
        .state(state)
}

/// Where the fixtures' folders land on a target with other special-use names.
fn target_name(folder: &str) -> String {
    match folder {
        "Sent" => "Sent Items".into(),
        "Trash" => "Deleted Items".into(),
        "Junk" => "Spam".into(),
        other => other.into(),
    }
}

/// Source with `/`, target with `.` as delimiter and other special-use names: the
/// whole fixture mailbox arrives byte-identical with flags, dates and folder tree;
/// a second run copies nothing; verify agrees; new mail is picked up.
#[test]
fn full_migration_is_faithful_and_resumable() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start_with(
        &[DST],
        Config {
            separator: Some("."),
            sent: Some("Sent Items"),
            trash: Some("Deleted Items"),
            junk: Some("Spam"),
            ..Config::default()
        },
    );
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let state = state.to_str().unwrap();
    // Both instances share the test certificate, so one --ca-file serves both.
    let urls = [src.imaps_url(SRC), dst.imaps_url(DST)];

    // Three connection pairs: folders are copied in parallel.
    let out = migrate(&src, &dst, state, &urls)
        .args(["--json", "--connections", "3"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    let manifest = manifest();
    assert_eq!(j["copied"], 30, "{j}");
    assert_eq!(
        j["duplicates"], 1,
        "the exact duplicate in INBOX is copied once: {j}"
    );
    assert_eq!(j["failed"].as_array().unwrap().len(), 0);
    assert_eq!(manifest.len(), 31);

    let got = dst.snapshot(DST);
    assert_same(&got, &expected(target_name));
    // Two different messages with one Message-ID are both there.
    let inbox = &got.0["INBOX"];
    assert_eq!(
        inbox
            .iter()
            .filter(|m| String::from_utf8_lossy(&m.body)
                .contains("Message-ID: <same-id-twice@example.test>"))
            .count(),
        2,
        "same Message-ID, different bodies: both kept"
    );
    // Folder tree: nested and non-ASCII names exist with the target's delimiter.
    for name in [
        "Projects",
        "Projects/2024",
        "Projects/2024/Q1",
        "Données/Été 2024",
        "Архив",
        "Bills & Receipts",
        "Sent Items",
        "Deleted Items",
        "Spam",
        "Drafts",
    ] {
        assert!(
            got.0.contains_key(name),
            "folder {name} missing: {:?}",
            got.0.keys()
        );
    }
    assert!(
        !got.0.contains_key("Sent") && !got.0.contains_key("Trash") && !got.0.contains_key("Junk"),
        "special-use folders must be mapped, not recreated: {:?}",
        got.0.keys()
    );
    // The source is untouched (BODY.PEEK: no \Seen added).
    assert_same(&src.snapshot(SRC), &seeded());

    // A second run copies nothing.
    let out = migrate(&src, &dst, state, &urls).arg("--json").run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(0), Some(0)),
        "{j}"
    );
    assert_same(&dst.snapshot(DST), &expected(target_name));

    // verify agrees.
    let out = Run::new("verify")
        .from(&urls[0])
        .to(&urls[1])
        .from_password_file(src.pwfile())
        .to_password_file(dst.pwfile())
        .ca(&src)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 messages missing"),
        "{}",
        text(&out)
    );

    // New mail on the source is picked up, and only it.
    src.seed_args(
        SRC,
        &["--generate", "3", "--folder", "Projects", "--seed", "7"],
    );
    let out = migrate(&src, &dst, state, &urls).arg("--json").run();
    let j = json(&out);
    assert_eq!(j["copied"], 3, "{}", text(&out));
    assert_eq!(dst.snapshot(DST).0["Projects"].len(), 4);
}

/// Messages already on the target (another tool, an earlier run with a lost
/// index) are not appended again; dry-run writes nothing at all.
#[test]
fn dedupes_against_the_target_and_dry_run_writes_nothing() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    d.seed(DST); // the target already holds every message
    let before = d.snapshot(DST);
    let state = d.dir.path().join("state.sqlite");
    let state = state.to_str().unwrap();
    let urls = [d.imaps_url(SRC), d.imaps_url(DST)];

    let out = migrate(&d, &d, state, &urls)
        .args(["--dry-run", "--json"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    let planned: u64 = j["planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(planned, 31, "{j}");
    assert_eq!(d.snapshot(DST), before, "dry run changed the target");

    let out = migrate(&d, &d, state, &urls).arg("--json").run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(0), Some(31)),
        "{j}"
    );
    let after = d.snapshot(DST);
    // Seeding twice put the INBOX duplicate on the target twice; nothing was added.
    assert_eq!(
        after, before,
        "messages already on the target were appended again"
    );
}

/// Kill the process right after the target acknowledged the N-th APPEND and before
/// the index recorded it, for many N; resume each time; the target ends up equal
/// to the source with nothing twice.
#[test]
fn crash_after_any_append_then_resume_loses_and_doubles_nothing() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start(&[DST]);
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let state = state.to_str().unwrap();
    let urls = [src.imaps_url(SRC), dst.imaps_url(DST)];
    let run = migrate(&src, &dst, state, &urls).arg("--json");
    let mut crashes = 0;
    // Folders listed 3 messages at a time and none kept from planning: the paths a
    // folder of hundreds of thousands of messages takes.
    let paged = |out: &mut std::process::Command| {
        out.env("MAILFERRY_LISTING_PAGE", "3")
            .env("MAILFERRY_KEEP_LISTED", "0");
    };
    for n in [1, 2, 4] {
        let mut cmd = run.command();
        paged(&mut cmd);
        let out = cmd
            .env("MAILFERRY_CRASH_IN_COMMIT", n.to_string())
            .output()
            .unwrap();
        if out.status.code() != Some(0) {
            crashes += 1;
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("inside index commit"),
                "{}",
                text(&out)
            );
        }
    }
    for n in [1, 2, 5, 9, 17] {
        let mut cmd = run.command();
        if n % 2 == 1 {
            paged(&mut cmd);
        }
        let out = cmd
            .env("MAILFERRY_CRASH_AFTER_APPENDS", n.to_string())
            .output()
            .unwrap();
        if out.status.code() != Some(0) {
            crashes += 1;
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("crash point"),
                "{}",
                text(&out)
            );
        }
    }
    assert!(crashes >= 5, "the crash points were not reached");
    // The last run pages too, so what the paged runs left out would show.
    let mut cmd = run.command();
    paged(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&dst.snapshot(DST), &expected(|f| f.to_string()));
}

#[test]
fn bad_password_untrusted_certificate_and_unreachable_host_are_clear() {
    let d = Dovecot::start(&[SRC]);
    let bad = d.dir.path().join("bad-pw");
    std::fs::write(&bad, "wrong-password\n").unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let url = d.imaps_url(SRC);

    let out = Run::new("check")
        .arg(&url)
        .opt("--password-file", &bad)
        .ca(&d)
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused") && err.contains("AUTHENTICATIONFAILED"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("wrong-password"));

    let out = Run::new("check")
        .arg(&url)
        .opt("--password-file", d.pwfile())
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not trusted") && err.contains("--ca-file"),
        "{err}"
    );

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = Run::new("check")
        .arg(format!("imaps://{SRC}@127.0.0.1:{closed}"))
        .opt("--password-file", d.pwfile())
        .opt("--timeout", "5")
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out)
    );

    // An IMAPS client on the plain port: names the port problem.
    let out = Run::new("check")
        .arg(format!("imaps://{SRC}@localhost:{}", d.imap))
        .opt("--password-file", d.pwfile())
        .ca(&d)
        .opt("--timeout", "5")
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // Usage errors: exit 2 and no password echoed.
    let out = Run::new("check")
        .arg("imaps://anna:hunter2@localhost")
        .opt("--password-file", d.pwfile())
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!text(&out).contains("hunter2"), "{}", text(&out));
    let out = mailferry(&["check", &url, "--password-file", "/nonexistent/pw"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn starttls_endpoint_check_and_migration() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "5", "--folder", "INBOX", "--seed", "1"],
    );
    let out = Run::new("check")
        .arg(d.imap_url(SRC))
        .opt("--password-file", d.pwfile())
        .ca(&d)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("login OK") && stdout.contains("\\Sent") && stdout.contains("UIDPLUS"),
        "{stdout}"
    );
    // Each folder with its message count and special-use attributes.
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}: {stdout}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("INBOX").first(), Some(&"5"), "{stdout}");
    let sent = row("Sent");
    assert!(sent[0] == "0" && sent.contains(&"\\Sent"), "{stdout}");

    let state = d.dir.path().join("s.sqlite");
    let urls = [d.imap_url(SRC), d.imap_url(DST)];
    let out = migrate(&d, &d, state.to_str().unwrap(), &urls)
        .arg("--json")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["copied"], 5);
    assert_eq!(d.snapshot(DST).0["INBOX"], d.snapshot(SRC).0["INBOX"]);
}

/// verify exits 1 and names what is missing when the target lost a message.
#[test]
fn verify_reports_missing_messages() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "4", "--folder", "INBOX", "--seed", "3"],
    );
    d.seed_args(
        DST,
        &["--generate", "3", "--folder", "INBOX", "--seed", "3"],
    );
    // And one on the target that the source does not have.
    d.seed_args(
        DST,
        &["--generate", "1", "--folder", "INBOX", "--seed", "other"],
    );
    let out = Run::new("verify")
        .from(d.imaps_url(SRC))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .opt("--include", "INBOX")
        .run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "MISSING  INBOX → INBOX: source 4, target 4, missing 1, extra 1",
        "missing source UIDs: 4\n",
        "extra target UIDs (not in the source): 4\n",
        "1 folders, 1 messages missing on the target",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
}

/// The source INBOX's UIDVALIDITY changes (its index is rebuilt): the next run
/// warns, re-checks every message against the target by key and copies nothing twice.
#[test]
fn uidvalidity_change_copies_nothing_twice() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let state = d.dir.path().join("state.sqlite");
    let state = state.to_str().unwrap();
    let urls = [d.imaps_url(SRC), d.imaps_url(DST)];
    let out = migrate(&d, &d, state, &urls)
        .args(["--json", "--include", "INBOX"])
        .run();
    assert_eq!(json(&out)["copied"], 19, "{}", text(&out));
    let before = d.snapshot(DST);

    let maildir = d.dir.path().join("mail").join(SRC);
    for f in std::fs::read_dir(&maildir).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        if name == "dovecot-uidlist" || name.starts_with("dovecot.index") {
            std::fs::remove_file(maildir.join(name)).unwrap();
        }
    }
    let out = migrate(&d, &d, state, &urls)
        .args(["--json", "--include", "INBOX"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UIDVALIDITY changed"),
        "{}",
        text(&out)
    );
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(0), Some(20)),
        "{j}"
    );
    assert_eq!(d.snapshot(DST), before);
}

/// A target whose personal namespace is `INBOX.` with `.` as delimiter: folders go
/// under INBOX; `--folder-map`, `--include` and `--exclude` shape what is copied;
/// `-vv` traces the protocol with the credentials masked.
#[test]
fn namespace_prefix_folder_rules_and_masked_trace() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start_with(
        &[DST],
        Config {
            separator: Some("."),
            ns_prefix: Some("INBOX."),
            ..Config::default()
        },
    );
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let state = state.to_str().unwrap();
    let urls = [src.imaps_url(SRC), dst.imaps_url(DST)];
    let out = migrate(&src, &dst, state, &urls)
        .args([
            "-vv",
            "--exclude",
            "Trash",
            "--exclude",
            "Projects/2024",
            "--include",
            "*",
            "--include",
            "Données/**",
            "--folder-map",
            "Bills & Receipts=Finance/Bills",
        ])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<credentials masked>") && err.contains("APPEND"),
        "-vv traces the protocol"
    );
    assert!(
        !err.contains(PASSWORD) && !String::from_utf8_lossy(&out.stdout).contains(PASSWORD),
        "password in the trace"
    );
    let b64 = mailferry::imap::client::base64(format!("\0{SRC}\0{PASSWORD}").as_bytes());
    assert!(!err.contains(&b64), "the SASL blob is the password too");

    let got = dst.snapshot(DST);
    let names: Vec<&str> = got
        .0
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "INBOX",
            "INBOX/Données/Été 2024",
            "INBOX/Drafts",
            "INBOX/Finance/Bills",
            "INBOX/Junk",
            "INBOX/Projects",
            "INBOX/Sent",
            "INBOX/Архив"
        ],
        "folders: {:?}",
        got.0.keys()
    );
    assert!(
        !got.0
            .keys()
            .any(|k| k.contains("2024/Q1") || k.ends_with("Projects/2024")),
        "excluded with its children"
    );
    assert_eq!(got.0["INBOX/Finance/Bills"].len(), 1);
}

/// A server without STARTTLS: imap:// and pop3:// refuse to send the password in
/// clear unless --allow-plaintext.
#[test]
fn plaintext_login_is_refused_unless_allowed() {
    let d = Dovecot::start_with(
        &[SRC],
        Config {
            plaintext_only: true,
            ..Config::default()
        },
    );
    for url in [
        d.imap_url(SRC),
        format!("pop3://{SRC}@localhost:{}", d.pop3),
    ] {
        let out = Run::new("backup")
            .from(&url)
            .opt("--out", d.dir.path().join("b"))
            .from_password_file(d.pwfile())
            .state(d.dir.path().join("state.sqlite"))
            .arg("--dry-run")
            .run();
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("STARTTLS") || err.contains("STLS"), "{err}");
        assert!(err.contains("--allow-plaintext"), "{err}");
    }
    let out = Run::new("check")
        .arg(d.imap_url(SRC))
        .opt("--password-file", d.pwfile())
        .arg("--allow-plaintext")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without encryption"),
        "{}",
        text(&out)
    );
}

/// `-v` logs what is done per folder (planned, created); without it, none of that.
#[test]
fn verbose_logs_each_folder() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let run = |state: &str, extra: &[&str]| {
        Run::migrate_within(&d, SRC, DST)
            .state(d.dir.path().join(state))
            .args(extra)
            .opt("--include", "INBOX")
            .opt("--include", "Projects/**")
            .run()
    };
    let out = run("quiet.sqlite", &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("not yet copied"), "{err}");

    let out = run("state.sqlite", &["-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "INBOX → INBOX: 20 messages, 20 not yet copied",
        "Projects/2024 → Projects/2024: 1 messages, 1 not yet copied",
        "Projects/2024/Q1 → Projects/2024/Q1: 1 messages, 1 not yet copied",
        "creating Projects/2024/Q1",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("Sent"),
        "an excluded folder was logged: {err}"
    );
}

/// SIGKILL from outside at arbitrary moments (not at instrumented points: in the
/// middle of a FETCH, an APPEND literal, a MULTIAPPEND, an index commit, wherever
/// the clock says), resuming each time: the target ends equal to the source,
/// bytes, flags and dates, every message once.
#[test]
fn killed_at_arbitrary_moments_then_resumed_loses_and_doubles_nothing() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start(&[DST]);
    for (folder, n) in [("INBOX", "500"), ("Archive/2020", "250"), ("Sent", "100")] {
        src.seed_args(
            SRC,
            &["--generate", n, "--folder", folder, "--seed", folder],
        );
    }
    let state = src.dir.path().join("state.sqlite");
    let state = state.to_str().unwrap();
    let urls = [src.imaps_url(SRC), dst.imaps_url(DST)];
    let run = migrate(&src, &dst, state, &urls);
    // Kill sooner than a whole copy takes, each time a little later, until a run
    // gets to finish on its own.
    let mut killed = 0;
    for delay_ms in (0..20).map(|i| 60 + 35 * i) {
        let mut cmd = run.command();
        // Small batches and pages: many round trips, so a kill lands mid-work.
        cmd.env("MAILFERRY_BATCH_COUNT", "3")
            .env("MAILFERRY_LISTING_PAGE", "7")
            .env("MAILFERRY_KEEP_LISTED", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        killed += 1;
        child.wait().unwrap();
    }
    eprintln!("{killed} runs killed mid-way");
    assert!(killed >= 5, "only {killed} runs were killed mid-way");
    let out = run.arg("--json").run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&dst.snapshot(DST), &src.snapshot(SRC));
}
