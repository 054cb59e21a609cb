//! `check` and `verify` take every source the copy takes: an IMAP account, a POP3
//! mailbox, mbox files. Against real Dovecot instances.

use crate::common::*;

const SRC: &str = "any@source.test";
const DST: &str = "any@target.test";

fn pop3s_url(d: &Dovecot, user: &str) -> String {
    format!("pop3s://{user}@localhost:{}", d.pop3s)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_and_verify_take_pop3_and_mbox_sources() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let inbox = d.snapshot(SRC).0["INBOX"].len();

    // check a POP3 mailbox: its one folder and how many messages a copy would read.
    let out = Run::new("check")
        .arg(pop3s_url(&d, SRC))
        .opt("--password-file", d.pwfile())
        .ca(&d)
        .arg("--json")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["folders"][0]["name"], "INBOX", "{j}");
    assert_eq!(j["folders"][0]["messages"], inbox as u64, "{j}");

    // Copy it, then verify it: nothing missing.
    let state = d.dir.path().join("s.sqlite");
    let out = Run::new("migrate")
        .from(pop3s_url(&d, SRC))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(&state)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = Run::new("verify")
        .from(pop3s_url(&d, SRC))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("0 messages missing on the target"),
        "{}",
        text(&out)
    );

    // An mbox file with a message the target does not have: check reads it,
    // verify names it missing (exit 1).
    let file = d.dir.path().join("extra.mbox");
    std::fs::write(
        &file,
        "From a@example.test Mon Jan  1 10:00:00 2024\nFrom: a@example.test\nMessage-ID: <any-extra@example.test>\nSubject: not copied\n\nbody\n",
    )
    .unwrap();
    let out = Run::new("check")
        .arg(format!("mbox:{}", file.display()))
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("readable"), "{}", text(&out));
    assert!(stdout(&out).contains("extra"), "{}", text(&out));
    let out = Run::new("verify")
        .from(format!("mbox:{}", file.display()))
        .to(d.imaps_url(DST))
        .to_password_file(d.pwfile())
        .ca(&d)
        .arg("--json")
        .run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j[0]["missing"].as_array().unwrap().len(), 1, "{j}");
}
