//! `mailferry addresses create` against a stand-in of the Infomaniak API
//! (tests/common/fake_api.rs), and the CSV it writes driving a real `batch` into
//! Dovecot accounts that the stand-in created.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::fake_api::FakeApi;
use crate::common::*;

const TOKEN: &str = "tok-Zq81-API-SECRET-x7Rk";
const HOSTING: u64 = 67452;

struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::Builder::new()
            .prefix("mf-prov-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        Work { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `addresses create CSV --mail-hosting … --api-url … --api-token-file …` and more.
fn create(api: &FakeApi, w: &Work, csv: &Path, extra: &[&str]) -> Output {
    Run::new("addresses")
        .arg("create")
        .arg(csv)
        .opt("--mail-hosting", HOSTING.to_string())
        .opt("--api-url", api.url())
        .opt("--api-token-file", w.path("token"))
        .opt("--retry-wait", "1")
        .args(extra)
        .command()
        .env_remove("MAILFERRY_API_TOKEN")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn addr(i: usize) -> String {
    format!("user{i:02}@example.ch")
}

/// The password files of a directory: (address, password).
fn password_files(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pw"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let pw = std::fs::read_to_string(&p).unwrap().trim_end().to_string();
            (name, pw)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn thirty_addresses_ten_existing_twenty_created_then_none() {
    let existing: Vec<String> = (0..10).map(|i| format!("user{i:02}")).collect();
    let refs: Vec<&str> = existing.iter().map(String::as_str).collect();
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &refs);
    let w = Work::new();
    let list: String = (0..30).map(|i| format!("{}\n", addr(i))).collect();
    let csv = w.write("new.csv", &list);
    let out_csv = w.path("accounts.csv");

    let out = create(&api, &w, &csv, &["--out", &s(&out_csv)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let o = stdout(&out);
    assert!(
        o.contains("addresses: 20 created, 10 existed, 0 failed, of 30"),
        "{o}"
    );
    assert!(o.contains(&format!("row 1: {} existed", addr(0))), "{o}");
    assert!(o.contains(&format!("row 11: {} created", addr(10))), "{o}");
    // 30 mailboxes over 7-item pages: every page was read.
    let pages = api.with(|s| {
        s.log
            .iter()
            .filter(|l| l.starts_with("GET /1/mail_hostings/67452/mailboxes?page="))
            .count()
    });
    assert_eq!(pages, 2, "10 mailboxes in pages of 7");
    assert_eq!(api.posts(), 20);
    // Each created address's password is in its own owner-only file, as sent.
    let dir = w.path("new-passwords");
    assert_eq!(mode(&dir), 0o700);
    let files = password_files(&dir);
    assert_eq!(files.len(), 20);
    api.with(|st| {
        for (address, pw) in &files {
            let name = address.split('@').next().unwrap();
            assert_eq!(
                st.mailboxes[name].as_deref(),
                Some(pw.as_str()),
                "{address}"
            );
            assert!(pw.len() >= 16, "{address}");
        }
        assert_eq!(st.mailboxes.len(), 30);
    });
    // The batch CSV: every row, created ones with their file, existing ones empty.
    let rows: Vec<Vec<String>> = csv::Reader::from_path(&out_csv)
        .unwrap()
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 30);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[4], addr(i));
        if i < 10 {
            assert_eq!(r[5], "", "{r:?}");
        } else {
            assert_eq!(
                r[5],
                format!("file:{}", s(&dir.join(format!("{}.pw", addr(i)))))
            );
        }
    }

    // Again: nothing to create; the files and the CSV say the same.
    let out = create(&api, &w, &csv, &["--out", &s(&out_csv)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("addresses: 0 created, 30 existed, 0 failed, of 30"),
        "{}",
        text(&out)
    );
    assert_eq!(api.posts(), 20, "the second run created something");
    assert_eq!(password_files(&dir), files);
}

#[test]
fn a_bad_token_is_one_clear_error_and_nothing_is_created() {
    let api = FakeApi::start("the-right-token", HOSTING, "example.ch", &[]);
    let w = Work::new();
    let csv = w.write("new.csv", "address\nanna@example.ch\nbob@example.ch\n");
    let out = create(&api, &w, &csv, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "the API refused the token (HTTP 401, not_authorized: Authorization required)"
        ),
        "{err}"
    );
    assert!(!err.contains(TOKEN) && !stdout(&out).contains(TOKEN));
    assert_eq!(api.posts(), 0);
    assert!(
        !w.path("new-passwords").exists(),
        "a password was generated for nothing"
    );
}

#[test]
fn a_refused_name_fails_its_row_with_the_api_words_and_the_others_are_created() {
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &["info"]);
    api.with(|s| {
        s.refuse.insert(
            "postmaster".into(),
            (
                "mailbox_name_reserved".into(),
                "This name is reserved".into(),
            ),
        );
        // This one is added, but its answer is lost (502): looked up, not re-sent.
        s.lose_answer_of = Some("carol".into());
    });
    let w = Work::new();
    let csv = w.write(
        "new.csv",
        "email\nanna@example.ch\npostmaster@example.ch\ncarol@example.ch\nbob@example.ch\n",
    );
    let report = w.path("report.csv");
    let out = create(&api, &w, &csv, &["--report", &s(&report)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let o = stdout(&out);
    assert!(
        o.contains(
            "row 3: postmaster@example.ch failed: mailbox_name_reserved: This name is reserved"
        ),
        "{o}"
    );
    assert!(
        o.contains("row 4: carol@example.ch created"),
        "{}",
        text(&out)
    );
    assert!(
        o.contains("addresses: 3 created, 0 existed, 1 failed, of 4"),
        "{o}"
    );
    api.with(|s| {
        let names: Vec<&String> = s.mailboxes.keys().collect();
        assert_eq!(names, ["anna", "bob", "carol", "info"]);
        assert!(
            s.log
                .iter()
                .any(|l| l == "GET /1/mail_hostings/67452/mailboxes/carol 200"),
            "{:?}",
            s.log
        );
    });
    assert_eq!(api.posts(), 4, "carol's add was sent twice");
    let rep = std::fs::read_to_string(&report).unwrap();
    assert_eq!(mode(&report), 0o600);
    assert!(
        rep.starts_with("row,address,status,code,description,password_file\n"),
        "{rep}"
    );
    assert!(
        rep.contains("3,postmaster@example.ch,failed,mailbox_name_reserved,This name is reserved,"),
        "{rep}"
    );
    // Run again once the name is allowed: only the failed row is created.
    api.with(|s| s.refuse.clear());
    let out = create(&api, &w, &csv, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("addresses: 1 created, 3 existed, 0 failed"),
        "{}",
        text(&out)
    );
    // With the password generated the first time, kept in its file.
    let pw = std::fs::read_to_string(w.path("new-passwords/postmaster@example.ch.pw")).unwrap();
    api.with(|s| assert_eq!(s.mailboxes["postmaster"].as_deref(), Some(pw.trim_end())));
}

#[test]
fn rate_limits_are_waited_out() {
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &["info"]);
    api.with(|s| s.rate_limit_every = Some(4));
    let w = Work::new();
    let list: String = (0..8).map(|i| format!("{}\n", addr(i))).collect();
    let csv = w.write("new.csv", &list);
    let out = create(&api, &w, &csv, &["-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("addresses: 8 created"),
        "{}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("too many requests (HTTP 429): waiting 1 s"),
        "{err}"
    );
    assert!(api.with(|s| s.rate_limited) >= 2);
    assert_eq!(api.with(|s| s.mailboxes.len()), 9);
}

#[test]
fn a_dry_run_creates_and_writes_nothing() {
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &["anna"]);
    let w = Work::new();
    let csv = w.write(
        "new.csv",
        "source,source_user,source_password,target_user,target_password\n\
         imaps://old.example.com,a,pw,anna@example.ch,\n\
         imaps://old.example.com,b,pw,bob@example.ch,Given-Passw0rd-1234\n\
         imaps://old.example.com,c,pw,carol@example.ch,\n",
    );
    let out_csv = w.path("out.csv");
    let out = create(&api, &w, &csv, &["--dry-run", "--out", &s(&out_csv)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let o = stdout(&out);
    for want in [
        "row 2: anna@example.ch exists (its password is not known to mailferry",
        "row 3: bob@example.ch would be created (password from the CSV)",
        "row 4: carol@example.ch would be created (password to be generated)",
        "addresses: dry run: 2 would be created, 1 exist, of 3; nothing was changed",
    ] {
        assert!(o.contains(want), "missing {want:?} in {o}");
    }
    assert!(!o.contains("Given-Passw0rd"));
    assert_eq!(api.posts(), 0);
    assert!(!out_csv.exists());
    assert!(!w.path("new-passwords").exists());
}

#[test]
fn bad_rows_are_all_listed_and_nothing_is_asked() {
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &[]);
    let w = Work::new();
    let csv = w.write(
        "new.csv",
        "address\nanna@example.ch\nanna..x@example.ch\nANNA@example.ch\nbob@other.ch\nS3cret-not-an-address\n",
    );
    let out = create(&api, &w, &csv, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let o = stdout(&out);
    for want in [
        "row 3: \"anna..x@example.ch\": the part before @ has two dots in a row",
        "row 4: \"ANNA@example.ch\" is already in row 2",
        "row 5: \"bob@other.ch\" is not in the domain example.ch of row 2",
        "row 6: not an address",
        "4 of 5 rows are bad; nothing was created",
    ] {
        assert!(o.contains(want), "missing {want:?} in {o}");
    }
    assert!(!o.contains("S3cret"));
    assert!(api.with(|s| s.log.is_empty()), "the API was asked");
}

#[test]
fn the_token_never_goes_to_another_machine_over_plain_http() {
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &["info"]);
    let w = Work::new();
    let csv = w.write("new.csv", "anna@example.ch\n");
    let out = Run::new("addresses")
        .arg("create")
        .arg(&csv)
        .opt("--mail-hosting", "1")
        .opt("--api-url", "http://api.example.com")
        .opt("--api-token-file", w.path("token"))
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("would cross the network unencrypted"),
        "{}",
        text(&out)
    );
    // The token comes from the environment too.
    let out = Run::new("addresses")
        .arg("create")
        .arg(&csv)
        .opt("--mail-hosting", HOSTING.to_string())
        .opt("--api-url", api.url())
        .command()
        .env("MAILFERRY_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn secrets_stay_out_of_output_logs_and_reports() {
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &["info"]);
    api.with(|s| {
        s.rate_limit_every = Some(3);
        // A server that repeats the password in its refusal: masked.
        s.refuse.insert(
            "zed".into(),
            (
                "weak_password".into(),
                "Given-Passw0rd-5678 is too weak".into(),
            ),
        );
    });
    let w = Work::new();
    let csv = w.write(
        "new.csv",
        "target_user;target_password;source\n\
         anna@example.ch;;imaps://old.example.com\n\
         bob@example.ch;Given-Passw0rd-1234;imaps://old.example.com\n\
         zed@example.ch;Given-Passw0rd-5678;imaps://old.example.com\n",
    );
    let report = w.path("report.csv");
    let out_csv = w.path("out/accounts.csv");
    std::fs::create_dir(w.path("out")).unwrap();
    let out = create(
        &api,
        &w,
        &csv,
        &["-vv", "--report", &s(&report), "--out", &s(&out_csv)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("api > POST /1/mail_hostings/67452/mailboxes"),
        "no trace: {all}"
    );
    assert!(
        all.contains("zed@example.ch failed: weak_password: *** is too weak"),
        "{all}"
    );
    let dir = w.path("new-passwords");
    let mut secrets: Vec<String> = password_files(&dir).into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        secrets.len(),
        3,
        "anna's generated one, bob's and zed's from the CSV"
    );
    secrets.push(TOKEN.into());
    for file in [&report, &out_csv] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    for f in std::fs::read_dir(&dir).unwrap() {
        assert_eq!(mode(&f.unwrap().path()), 0o600);
    }
    let texts = [
        all,
        std::fs::read_to_string(&report).unwrap(),
        std::fs::read_to_string(&out_csv).unwrap(),
    ];
    for secret in &secrets {
        for t in &texts {
            assert!(!t.contains(secret.as_str()), "a secret leaked into:\n{t}");
        }
    }
    // The batch CSV keeps its delimiter and columns and refers to the files.
    let out_text = &texts[2];
    assert!(
        out_text.starts_with("target_user;target_password;source\n"),
        "{out_text}"
    );
    assert!(
        out_text.contains(&format!(
            "bob@example.ch;file:{};",
            s(&dir.join("bob@example.ch.pw"))
        )),
        "{out_text}"
    );
}

#[test]
fn the_output_csv_drives_a_batch_into_the_created_accounts() {
    let n = 3;
    let src = |i: usize| format!("src{i}@source.test");
    let dst = |i: usize| format!("dst{i}@target.test");
    let users: Vec<String> = (0..n).map(src).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let d = Dovecot::start(&refs);
    for i in 0..n {
        d.seed_args(
            &src(i),
            &[
                "--generate",
                "3",
                "--folder",
                "INBOX",
                "--seed",
                &format!("p{i}"),
            ],
        );
    }
    let api = FakeApi::start(TOKEN, HOSTING, "target.test", &["postmaster"]);
    api.with(|s| s.passwd = Some(d.dir.path().join("users")));
    let w = Work::new();
    std::fs::copy(d.pwfile(), w.path("source.pw")).unwrap();
    // Source passwords as a file relative to the CSV; one target password given.
    let mut csv = String::from(
        "source;source_protocol;source_user;source_password;target;target_user;target_password\n",
    );
    for i in 0..n {
        let given = if i == 1 { "Given-Passw0rd-1234" } else { "" };
        csv.push_str(&format!(
            "localhost:{};imaps;{};file:source.pw;localhost:{};{};{given}\n",
            d.imaps,
            src(i),
            d.imaps,
            dst(i)
        ));
    }
    let input = w.write("accounts.csv", &csv);
    std::fs::create_dir(w.path("out")).unwrap();
    let out_csv = w.path("out/ready.csv");
    let out = create(&api, &w, &input, &["--out", &s(&out_csv)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Dovecot looks at its passwd file at most once a second (db-passwd-file.c,
    // `last_sync_time`): users added in the second of its last look are seen from
    // the next one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The pre-flight logs in with every created password before anything runs.
    let state = w.path("state.sqlite");
    let dry = Run::new("batch")
        .arg(&out_csv)
        .ca(&d)
        .state(&state)
        .arg("--dry-run")
        .run();
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let err = String::from_utf8_lossy(&dry.stderr);
    for i in 0..n {
        assert!(
            err.contains(&format!(
                "pre-flight: row {}: imaps://{}@localhost:{}: login ok",
                i + 2,
                dst(i),
                d.imaps
            )),
            "{err}"
        );
    }
    assert!(err.contains("pre-flight: 3 of 3 target logins ok"), "{err}");

    let run = Run::new("batch").arg(&out_csv).ca(&d).state(&state).run();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    for i in 0..n {
        let want: Vec<Vec<u8>> = d.snapshot(&src(i)).0["INBOX"]
            .iter()
            .map(|m| m.body.clone())
            .collect();
        assert_eq!(want.len(), 3);
        // The target is read with its own (created) password.
        let pw =
            std::fs::read_to_string(w.path(&format!("accounts-passwords/{}.pw", dst(i)))).unwrap();
        let net = mailferry::net::NetOptions {
            ca_file: Some(d.ca()),
            ..Default::default()
        };
        let mut sess = mailferry::imap::session::open(
            &d.server(&dst(i)),
            &mailferry::secret::Password::new(pw.trim_end()),
            &net,
            "test",
        )
        .unwrap();
        sess.select(b"INBOX", true).unwrap();
        let metas = mailferry::engine::listing(&mut sess).unwrap();
        assert_eq!(metas.len(), 3, "account {i}");
        sess.logout();
    }
}

#[test]
fn a_failed_target_login_is_reported_by_the_pre_flight() {
    let d = Dovecot::start(&["src@source.test", "dst@target.test"]);
    let w = Work::new();
    let csv = w.write(
        "accounts.csv",
        &format!(
            "source,source_user,source_password,target,target_user,target_password\n\
             imaps://localhost:{p},src@source.test,file:{pw},localhost:{p},dst@target.test,file:{pw}\n\
             imaps://localhost:{p},src@source.test,file:{pw},localhost:{p},nobody@target.test,file:{pw}\n",
            p = d.imaps,
            pw = s(&d.pwfile())
        ),
    );
    let out = Run::new("batch")
        .arg(&csv)
        .ca(&d)
        .state(w.path("state.sqlite"))
        .arg("--dry-run")
        .run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pre-flight: row 2: "), "{err}");
    assert!(
        err.contains("pre-flight: row 3: imaps://nobody@target.test@localhost"),
        "{err}"
    );
    assert!(err.contains("login failed"), "{err}");
    assert!(err.contains("pre-flight: 1 of 2 target logins ok"), "{err}");
    let o = stdout(&out);
    assert!(o.contains("target login failed (pre-flight)"), "{o}");
}

#[test]
fn a_hosting_of_another_domain_is_refused_before_anything_is_created() {
    // The CSV is for example.ch; mail hosting 67452 holds example.org's mailboxes.
    let api = FakeApi::start(TOKEN, HOSTING, "example.org", &["info"]);
    let w = Work::new();
    let csv = w.write("new.csv", "address\nanna@example.ch\nbob@example.ch\n");
    for extra in [&[][..], &["--dry-run"][..]] {
        let out = create(&api, &w, &csv, extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(
                "the CSV's addresses are in example.ch but mail hosting 67452 holds example.org's"
            ),
            "{err}"
        );
    }
    assert_eq!(api.posts(), 0);
    assert!(!w.path("new-passwords").exists());
    api.with(|s| assert_eq!(s.mailboxes.len(), 1));

    // An empty mail hosting says no domain (the published API has no field for
    // it): refused, with what to do.
    let api = FakeApi::start(TOKEN, HOSTING, "example.org", &[]);
    let out = create(&api, &w, &csv, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("mail hosting 67452 has no mailbox yet, so its domain cannot be checked against the CSV's (example.ch)"),
        "{err}"
    );
    assert_eq!(api.posts(), 0);
}

#[test]
fn a_run_stopped_by_the_api_leaves_a_report_of_the_rows_it_finished() {
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &["info"]);
    // The token is revoked after two creations: the third add gets a 401.
    api.with(|s| s.revoke_after_adds = Some(2));
    let w = Work::new();
    let list: String = (0..5).map(|i| format!("{}\n", addr(i))).collect();
    let csv = w.write("new.csv", &list);
    let report = w.path("report.csv");
    let out_csv = w.path("ready.csv");
    let out = create(
        &api,
        &w,
        &csv,
        &["--report", &s(&report), "--out", &s(&out_csv)],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("the API refused the token"),
        "{}",
        text(&out)
    );
    assert_eq!(api.with(|s| s.adds), 2);
    let rep = std::fs::read_to_string(&report).expect("no report of the rows finished");
    assert_eq!(mode(&report), 0o600);
    let lines: Vec<&str> = rep.lines().collect();
    assert_eq!(
        lines,
        [
            "row,address,status,code,description,password_file",
            &format!(
                "1,{},created,,,{}",
                addr(0),
                s(&w.path(&format!("new-passwords/{}.pw", addr(0))))
            ),
            &format!(
                "2,{},created,,,{}",
                addr(1),
                s(&w.path(&format!("new-passwords/{}.pw", addr(1))))
            ),
        ],
        "{rep}"
    );
    // The batch CSV lists the rows finished, each with its password file.
    let ready = std::fs::read_to_string(&out_csv).expect("no batch CSV of the rows finished");
    assert_eq!(mode(&out_csv), 0o600);
    assert_eq!(ready.lines().count(), 3, "{ready}");
    for i in 0..2 {
        assert!(
            ready.contains(&format!(
                "{},file:{}",
                addr(i),
                s(&w.path(&format!("new-passwords/{}.pw", addr(i))))
            )),
            "{ready}"
        );
    }
    assert!(!ready.contains(&addr(2)), "{ready}");
}

#[test]
fn csv_passwords_that_break_the_rules_are_all_listed_and_nothing_is_created() {
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &["info"]);
    let w = Work::new();
    w.write("carol.pw", "Carol-Passw0rd\n");
    let csv = w.write(
        "new.csv",
        "target_user,target_password\n\
         anna@example.ch,Good-Passw0rd-1234\n\
         bob@example.ch,short-Pw1\n\
         carol@example.ch,file:carol.pw\n\
         dave@example.ch,all-lower-case-passw0rd\n\
         erin@example.ch,NoDigits-In-This-One\n\
         frank@example.ch,NoSpecials1InThisOne\n\
         gina@example.ch,Sp ace-Passw0rd-1234\n\
         hugo@example.ch,\n",
    );
    let out = create(&api, &w, &csv, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let o = stdout(&out);
    for want in [
        "row 3: column target_password: the password has fewer than 16 characters",
        "row 4: column target_password: the password has fewer than 16 characters",
        "row 5: column target_password: the password has no upper-case letter",
        "row 6: column target_password: the password has no digit",
        "row 7: column target_password: the password has no special character",
        "row 8: column target_password: the password has a space, a control character or a non-ASCII character",
        "6 of 8 rows are bad; nothing was created",
    ] {
        assert!(o.contains(want), "missing {want:?} in {o}");
    }
    assert_eq!(o.lines().count(), 7, "{o}");
    for secret in [
        "Good-Passw0rd",
        "short-Pw1",
        "Carol-Passw0rd",
        "all-lower",
        "NoDigits",
        "NoSpecials",
        "Sp ace",
    ] {
        assert!(!text(&out).contains(secret), "{secret} shown");
    }
    // Only the listing was asked (it says which addresses exist: their passwords
    // are the host's, not judged here).
    assert_eq!(api.posts(), 0);
    assert!(!w.path("new-passwords").exists());
}

#[test]
fn a_password_dir_that_others_can_open_is_refused() {
    let api = FakeApi::start(TOKEN, HOSTING, "example.ch", &["info"]);
    let w = Work::new();
    let csv = w.write("new.csv", "anna@example.ch\n");
    let dir = w.path("secrets");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = create(&api, &w, &csv, &["--password-dir", &s(&dir)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "--password-dir {}: other users can open it (mode 0755); make it yours only (chmod 700 {})",
            s(&dir),
            s(&dir)
        )),
        "{err}"
    );
    assert_eq!(api.posts(), 0);
    assert_eq!(mode(&dir), 0o755, "changed behind the user's back");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // Once it is the user's only, the run goes ahead.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = create(&api, &w, &csv, &["--password-dir", &s(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(password_files(&dir).len(), 1);
}
