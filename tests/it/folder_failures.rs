//! A folder is the unit of failure: a folder the target refuses fails alone (with
//! the server's words and the folder's name), the others are copied, the exit code
//! says so and the next run tries it again; a name the target cannot hold is
//! renamed and listed; CREATE of a folder that exists is success whatever the
//! server's words; a summary is printed whatever ends the run.

use std::time::Duration;

use crate::common::fake_imap::*;
use crate::common::*;
use mailferry::imap::Append;

const SRC: &str = "fold@source.test";
const DST: &str = "fold@target.test";

fn msg(n: u32) -> Vec<u8> {
    format!("From: a@example.test\r\nMessage-ID: <fold-{n}@example.test>\r\nSubject: {n}\r\n\r\nbody {n}\r\n")
        .into_bytes()
}

/// Source folders (created on the Dovecot account SRC), one message each.
fn source_folders(d: &Dovecot, names: &[&str]) {
    let mut s = d.session(SRC);
    for (i, name) in names.iter().enumerate() {
        if *name != "INBOX" {
            s.create(name.as_bytes()).unwrap();
        }
        s.append(&Append {
            mailbox: name.as_bytes(),
            flags: &[],
            internal_date: None,
            body: &msg(i as u32 + 1),
        })
        .unwrap();
    }
    s.logout();
}

fn into_fake(d: &Dovecot, target: &FakeImap, state: &str) -> Run {
    Run::new("migrate")
        .from(d.imaps_url(SRC))
        .to(target.url("t@fake.test"))
        .passwords(d)
        .ca(d)
        .state(d.dir.path().join(state))
        .args(["--allow-plaintext", "--retries", "0", "--json"])
}

fn run(r: &Run) -> std::process::Output {
    let b = run_bounded(r.command(), Duration::from_secs(120));
    assert!(!b.killed, "{}", text(&b.out));
    b.out
}

#[test]
fn a_folder_the_target_refuses_fails_alone_and_is_tried_again() {
    let d = Dovecot::start(&[SRC]);
    source_folders(&d, &["INBOX", "Alpha", "Refused", "Zulu"]);
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])])
        .with(|s| s.refuse_create = vec![b"Refused".to_vec()]);
    let out = run(&into_fake(&d, &target, "s.sqlite"));
    let j = json(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failed = j["failed_folders"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{j}");
    assert_eq!(failed[0]["folder"], "Refused");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("[CANNOT] Invalid mailbox name"),
        "{j}"
    );
    // The folders before and after it were copied.
    for name in ["INBOX", "Alpha", "Zulu"] {
        assert_eq!(target.messages(name).len(), 1, "{name}: {}", text(&out));
    }
    assert!(target.messages("Refused").is_empty());
    // The target takes it now: the next run copies it, and nothing else again.
    target.state.lock().unwrap().refuse_create.clear();
    let out = run(&into_fake(&d, &target, "s.sqlite"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["copied"], 1);
    for name in ["INBOX", "Alpha", "Refused", "Zulu"] {
        assert_eq!(target.messages(name).len(), 1, "{name}");
    }
}

#[test]
fn a_name_the_target_cannot_hold_is_renamed_and_listed() {
    // Dovecot's Maildir++ takes no `.` in a name even with `/` as its delimiter.
    let d = Dovecot::start(&[DST]);
    let dir = d.dir.path().join("mboxes");
    std::fs::create_dir(&dir).unwrap();
    for (file, n) in [("2019.01.mbox", 1), ("Other.mbox", 2)] {
        let mut data = b"From a@example.test Tue Jan  1 10:00:00 2019\n".to_vec();
        data.extend(msg(n).iter().filter(|&&c| c != b'\r'));
        data.push(b'\n');
        std::fs::write(dir.join(file), data).unwrap();
    }
    let out = run(&Run::restore_into(&d, &dir, DST)
        .state(d.dir.path().join("r.sqlite"))
        .arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    let renamed = j["renamed"].as_array().unwrap();
    assert_eq!(renamed.len(), 1, "{j}");
    assert_eq!(
        (
            renamed[0]["folder"].as_str(),
            renamed[0]["target_folder"].as_str()
        ),
        (Some("2019.01"), Some("2019_01"))
    );
    let snap = d.snapshot(DST);
    assert_eq!(
        snap.0.get("2019_01").map(Vec::len),
        Some(1),
        "{:?}",
        snap.0.keys()
    );
    assert_eq!(snap.0.get("Other").map(Vec::len), Some(1));
    // verify finds the renamed folder, nothing missing.
    let out = run(&Run::new("verify")
        .from(format!("mbox:{}", dir.display()))
        .to(d.imaps_url(DST))
        .to_password_file(d.pwfile())
        .ca(&d));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Run again: it goes to the same folder, nothing twice, still listed.
    let out = run(&Run::restore_into(&d, &dir, DST)
        .state(d.dir.path().join("r.sqlite"))
        .arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["renamed"].as_array().unwrap().len(), 1);
    assert_eq!(d.snapshot(DST).0.get("2019_01").map(Vec::len), Some(1));
}

#[test]
fn two_folders_into_one_on_a_target_that_says_exists_in_its_own_words() {
    let d = Dovecot::start(&[SRC]);
    source_folders(&d, &["Trash", "Deleted Items"]);
    // The target answers a CREATE of an existing folder as Cyrus does, without
    // a response code.
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])]);
    let out = run(&into_fake(&d, &target, "s.sqlite").args([
        "--folder-map",
        "Trash=Old",
        "--folder-map",
        "Deleted Items=Old",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(target.messages("Old").len(), 2, "{}", text(&out));
    let creates = target
        .log()
        .iter()
        .filter(|l| String::from_utf8_lossy(l).contains("CREATE \"Old\""))
        .count();
    assert_eq!(creates, 1, "CREATE sent once");
}

#[test]
fn special_use_folders_are_created_with_use_where_offered() {
    let d = Dovecot::start(&[SRC]);
    source_folders(&d, &["Sent"]);
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])]).with(|s| {
        s.caps =
            "IMAP4rev1 LITERAL+ UIDPLUS NAMESPACE ESEARCH SPECIAL-USE CREATE-SPECIAL-USE".into()
    });
    let out = run(&into_fake(&d, &target, "s.sqlite").args(["--include", "Sent"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log: Vec<String> = target
        .log()
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert!(
        log.iter()
            .any(|l| l.contains("CREATE \"Sent\" (USE (\\Sent))")),
        "{log:?}"
    );
    assert_eq!(target.messages("Sent").len(), 1);
}

#[test]
fn a_summary_is_printed_whatever_ends_the_run() {
    let d = Dovecot::start(&[SRC]);
    source_folders(&d, &["INBOX", "Later"]);
    // The target breaks the protocol on the second folder's SELECT.
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])]).with(|s| {
        s.hook = Some(std::sync::Arc::new(|c: &Cmd, _: &mut _| {
            (c.name == "SELECT" && String::from_utf8_lossy(&c.raw).contains("Later"))
                .then(|| b"* 1 FETCH (UID 1) )\r\n".to_vec())
        }))
    });
    let out = run(&into_fake(&d, &target, "s.sqlite"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let j = json(&out);
    assert_eq!(j["copied"], 1, "{j}");
    assert!(
        j["error"].as_str().unwrap().contains("closes no list"),
        "{j}"
    );
    // And in text: what was done, then the error.
    let text_run = Run::new("migrate")
        .from(d.imaps_url(SRC))
        .to(target.url("t@fake.test"))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("t.sqlite"))
        .args(["--allow-plaintext", "--retries", "0"]);
    let out = run(&text_run);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("skipped as duplicates: 1"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("ended by an error:"), "{}", text(&out));
}

/// Messages the target stores changed (Cyrus: 8-bit header bytes made `X`;
/// Courier: a final CRLF added) are counted as such, not appended again by a
/// later run (even with a fresh index), and `verify` calls them changed, not
/// missing.
#[test]
fn what_the_target_changes_is_known_not_lost_and_not_appended_again() {
    for (alter, body) in [
        (
            cyrus_alter as fn(&[u8]) -> Vec<u8>,
            "From: a@example.test\r\nMessage-ID: <8bit@example.test>\r\nSubject: Grüße\r\n\r\nbody\r\n".as_bytes().to_vec(),
        ),
        (
            courier_alter,
            b"From: a@example.test\r\nMessage-ID: <noend@example.test>\r\nSubject: x\r\n\r\nno final line end".to_vec(),
        ),
        // No Message-ID: found again by its size, 2 bytes more on the target.
        (
            courier_alter,
            b"From: a@example.test\r\nSubject: no id\r\n\r\nno final line end".to_vec(),
        ),
    ] {
        let d = Dovecot::start(&[SRC]);
        let mut s = d.session(SRC);
        for b in [&body, &msg(1)] {
            s.append(&Append { mailbox: b"INBOX", flags: &[], internal_date: None, body: b }).unwrap();
        }
        s.logout();
        let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])]).with(|s| s.alter = Some(alter));
        let first = into_fake(&d, &target, "a.sqlite").args(["--include", "INBOX"]);
        let out = run(&first);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let j = json(&out);
        assert_eq!(j["copied"], 2, "{j}");
        let changed = j["changed"].as_array().unwrap();
        assert_eq!(changed.len(), 1, "{j}");
        assert_eq!(changed[0]["folder"], "INBOX");
        assert_eq!(target.messages("INBOX").len(), 2);
        // Again with the same index, then with a fresh one: nothing appended.
        for state in ["a.sqlite", "fresh.sqlite"] {
            let out = run(&into_fake(&d, &target, state).args(["--include", "INBOX"]));
            assert_eq!(out.status.code(), Some(0), "{state}: {}", text(&out));
            assert_eq!(target.messages("INBOX").len(), 2, "{state}: appended again: {}", text(&out));
        }
        // verify: changed, not missing.
        let out = run(&Run::new("verify")
            .from(d.imaps_url(SRC))
            .to(target.url("t@fake.test"))
            .passwords(&d)
            .ca(&d)
            .args(["--allow-plaintext", "--include", "INBOX", "--json"]));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[0]["missing"].as_array().unwrap().len(), 0, "{v}");
        assert_eq!(v[0]["changed"].as_array().unwrap().len(), 1, "{v}");
    }
}

/// A folder the source refuses to open (EXAMINE answered NO) fails alone, also
/// while the run is being planned; the others are copied.
#[test]
fn a_folder_the_source_refuses_fails_alone() {
    let d = Dovecot::start(&[DST]);
    let source = FakeImap::start(vec![
        FakeBox::new("INBOX", vec![FakeMsg::new(1, &msg(1))]),
        FakeBox::new("Locked", vec![FakeMsg::new(1, &msg(2))]),
        FakeBox::new("Zeta", vec![FakeMsg::new(1, &msg(3))]),
    ])
    .with(|s| {
        s.hook = Some(std::sync::Arc::new(|c: &Cmd, _: &mut _| {
            (c.name == "EXAMINE" && String::from_utf8_lossy(&c.raw).contains("Locked"))
                .then(|| format!("{} NO [NOPERM] Permission denied\r\n", c.tag).into_bytes())
        }))
    });
    let out = run(&Run::new("migrate")
        .from(source.url("s@fake.test"))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("x.sqlite"))
        .args(["--allow-plaintext", "--retries", "0", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json(&out);
    let failed = j["failed_folders"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{j}");
    assert_eq!(failed[0]["folder"], "Locked");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("[NOPERM] Permission denied"),
        "{j}"
    );
    let snap = d.snapshot(DST);
    assert_eq!(snap.0.get("INBOX").map(Vec::len), Some(1));
    assert_eq!(snap.0.get("Zeta").map(Vec::len), Some(1));
}

/// A CREATE refused for a passing reason (over quota) is not a name the target
/// cannot hold: no plain-name folder is made, the account stops cleanly.
#[test]
fn an_over_quota_create_stops_and_renames_nothing() {
    let d = Dovecot::start(&[SRC]);
    source_folders(&d, &["v1:2"]);
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])]).with(|s| {
        s.hook = Some(std::sync::Arc::new(|c: &Cmd, _: &mut _| {
            (c.name == "CREATE")
                .then(|| format!("{} NO [OVERQUOTA] Quota exceeded\r\n", c.tag).into_bytes())
        }))
    });
    let out = run(&into_fake(&d, &target, "q.sqlite").args(["--include", "v1:2"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json(&out);
    assert!(
        j["stopped"]
            .as_str()
            .unwrap_or_default()
            .contains("over quota"),
        "{j}"
    );
    assert_eq!(j["renamed"].as_array().unwrap().len(), 0, "{j}");
    let creates: Vec<String> = target
        .log()
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .filter(|l| l.contains("CREATE"))
        .collect();
    assert!(creates.iter().all(|l| !l.contains("v1_2")), "{creates:?}");
}

/// In a batch, a folder the target refuses is named in the report's
/// `failed_folders` cell, and the account is partial, not failed.
#[test]
fn a_batch_report_names_failed_folders() {
    let d = Dovecot::start(&[SRC]);
    source_folders(&d, &["INBOX", "Refused"]);
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])])
        .with(|s| s.refuse_create = vec![b"Refused".to_vec()]);
    let csv = d.dir.path().join("accounts.csv");
    let pw = d.pwfile();
    std::fs::write(
        &csv,
        format!(
            "source;source_protocol;source_user;source_password;target;target_user;target_password\nlocalhost:{};imaps;{SRC};file:{};imap://localhost:{};t@fake.test;file:{}\n",
            d.imaps,
            pw.display(),
            target.port,
            pw.display()
        ),
    )
    .unwrap();
    let report = d.dir.path().join("report.csv");
    let out = run(&Run::new("batch")
        .arg(&csv)
        .ca(&d)
        .state(d.dir.path().join("b.sqlite"))
        .opt("--report", &report)
        .args(["--allow-plaintext", "--retries", "0"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rep = std::fs::read_to_string(&report).unwrap();
    let mut rd = csv::Reader::from_reader(rep.as_bytes());
    let header = rd.headers().unwrap().clone();
    let row = rd.records().next().unwrap().unwrap();
    let cell = |name: &str| row[header.iter().position(|h| h == name).unwrap()].to_string();
    assert_eq!(cell("status"), "partial", "{rep}");
    assert_eq!(cell("failed_folders"), "Refused", "{rep}");
    assert_eq!(cell("copied"), "1", "{rep}");
}
