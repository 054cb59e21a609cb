//! A hostile or broken POP3 server can neither steer mailferry nor make it lose
//! mail silently: endless lines and trickled answers end the run in bounded memory
//! and time with an error naming the limit, and what the server gets wrong about
//! its own mailbox (STAT against LIST, shared UIDLs) is reported with exit 1 while
//! every message still arrives. The source is a scripted server
//! ([`common::fake_pop3`]), the target a real Dovecot.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::fake_pop3::{FakePop3, Pop3Script, Retr};
use crate::common::*;

const DST: &str = "paul@target.test";

/// `migrate` from the fake server to DST over IMAPS.
fn migrate(d: &Dovecot, pop: &FakePop3) -> Run {
    Run::new("migrate")
        .from(pop.url())
        .to(d.imaps_url(DST))
        .passwords(d)
        .ca(d)
        .state(d.dir.path().join("state.sqlite"))
        .arg("--allow-plaintext")
}

/// What a bounded run gave: its output, its peak resident memory in MB (VmHWM) and
/// how long it took.
struct Measured {
    out: Output,
    peak_mb: u64,
    took: Duration,
}

/// Run mailferry, sampling its peak memory, and kill it once it passes `deadline`
/// or `max_mb` (the code before the limits held endless lines in memory and
/// waited on trickles for ever): the test then fails with what was seen.
fn run_bounded(run: Run, deadline: Duration, max_mb: u64) -> Measured {
    let b = run_bounded_mem(run.command(), deadline, max_mb);
    if b.killed {
        panic!(
            "mailferry was killed after {:.1} s (limits {deadline:?}, {max_mb} MB; peak {} MB)\n{}",
            b.secs,
            b.peak_mb,
            text(&b.out)
        );
    }
    eprintln!("peak {} MB, {:.1} s\n{}", b.peak_mb, b.secs, text(&b.out));
    Measured {
        out: b.out,
        peak_mb: b.peak_mb,
        took: Duration::from_secs_f64(b.secs),
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn msg(n: usize) -> Vec<u8> {
    format!(
        "From: a{n}@example.test\r\nSubject: message {n}\r\nMessage-ID: <m{n}@example.test>\r\nDate: Mon, 1 Jan 2024 10:00:0{n} +0000\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn bodies(snap: &Snapshot) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = snap
        .0
        .get("INBOX")
        .map(|m| m.iter().map(|m| m.body.clone()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A greeting line that never ends: the run fails at the pre-login line limit
/// (64 KiB), naming it, without holding the line.
#[test]
fn an_endless_greeting_fails_at_the_pre_login_limit_in_small_memory() {
    let d = Dovecot::start(&[DST]);
    let pop = FakePop3::start(Pop3Script::new(vec![msg(1)]).endless_greeting());
    let m = run_bounded(
        migrate(&d, &pop).args(["--retries", "0"]),
        Duration::from_secs(60),
        1024,
    );
    assert_ne!(m.out.status.code(), Some(0), "{}", text(&m.out));
    let err = stderr(&m.out);
    assert!(
        err.contains("longer than 65536 bytes (limit)") && err.contains("greeting"),
        "{}",
        text(&m.out)
    );
    assert!(m.peak_mb < 100, "peak {} MB", m.peak_mb);
    assert_eq!(d.count(DST), 0);
}

/// After login, a message line that never ends: the run fails at the line limit
/// (16 MiB), naming it, in bounded memory; nothing half-read is copied.
#[test]
fn an_endless_line_in_a_message_fails_at_the_line_limit_in_bounded_memory() {
    let d = Dovecot::start(&[DST]);
    let pop = FakePop3::start(
        Pop3Script::new(vec![msg(1)])
            .with_uidls()
            .retr(Retr::EndlessLine),
    );
    let m = run_bounded(
        migrate(&d, &pop).args(["--retries", "0"]),
        Duration::from_secs(120),
        1024,
    );
    assert_ne!(m.out.status.code(), Some(0), "{}", text(&m.out));
    let err = stderr(&m.out);
    assert!(
        err.contains("RETR 1") && err.contains("longer than 16777216 bytes (limit)"),
        "{}",
        text(&m.out)
    );
    // The 16 MiB line buffer, not the gigabytes the server would send.
    assert!(m.peak_mb < 200, "peak {} MB", m.peak_mb);
    assert_eq!(d.count(DST), 0);
}

/// A server that answers RETR with one keep-alive byte every 300 ms: each read
/// succeeds within --timeout, but the command's budget (4 × --timeout plus the
/// time its bytes need) runs out, and with --retries 0 the run ends.
#[test]
fn a_trickling_server_is_cut_by_the_command_budget() {
    let d = Dovecot::start(&[DST]);
    let pop = FakePop3::start(
        Pop3Script::new(vec![msg(1)])
            .with_uidls()
            .retr(Retr::Trickle),
    );
    let m = run_bounded(
        migrate(&d, &pop).args(["--timeout", "1", "--retries", "0"]),
        Duration::from_secs(60),
        1024,
    );
    assert!(m.took < Duration::from_secs(30), "took {:?}", m.took);
    assert_ne!(m.out.status.code(), Some(0), "{}", text(&m.out));
    assert!(
        stderr(&m.out).contains("timed out") && stderr(&m.out).contains("one command"),
        "{}",
        text(&m.out)
    );
    assert_eq!(d.count(DST), 0);
}

/// STAT says three messages, LIST lists two: both are copied, and the summary
/// names the disagreement with exit 1.
#[test]
fn stat_disagreeing_with_list_is_reported_with_exit_1() {
    let d = Dovecot::start(&[DST]);
    let pop = FakePop3::start(
        Pop3Script::new(vec![msg(1), msg(2)])
            .with_uidls()
            .stat_count(3),
    );
    let out = migrate(&d, &pop).run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        all.contains("server disagreement: INBOX: STAT said 3 messages but LIST listed 2"),
        "{}",
        text(&out)
    );
    assert_eq!(bodies(&d.snapshot(DST)), vec![msg(1), msg(2)]);
}

/// Two messages with one UIDL are two messages: both arrive on the target, the
/// shared UIDL is reported (exit 1), and a second run copies nothing again.
#[test]
fn messages_sharing_a_uidl_both_arrive_and_are_reported() {
    let d = Dovecot::start(&[DST]);
    let pop = FakePop3::start(
        Pop3Script::new(vec![msg(1), msg(2), msg(3)]).uidls(&["same", "other", "same"]),
    );
    let out = migrate(&d, &pop).arg("--json").run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(3), Some(0)),
        "{j}"
    );
    let what = j["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}: {}", a["folder"], a["what"]))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        what.contains("messages (numbers 1, 3) share the UIDL \\\"same\\\""),
        "{what}"
    );
    assert!(what.contains("\"INBOX\""), "{what}");
    assert_eq!(bodies(&d.snapshot(DST)), vec![msg(1), msg(2), msg(3)]);

    // The ids are stable: nothing is copied again, the sharing is still said.
    let out = migrate(&d, &pop).arg("--json").run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(0), Some(0)),
        "{j}"
    );
    assert_eq!(d.count(DST), 3);
}

/// A LIST answer that never ends is cut at the line-count limit; the run fails
/// naming it and holds no more than the listing of that many lines.
#[test]
fn an_endless_list_is_cut_at_the_line_count_limit() {
    let d = Dovecot::start(&[DST]);
    let pop = FakePop3::start(Pop3Script::new(vec![msg(1)]).with_uidls().endless_list());
    let m = run_bounded(
        migrate(&d, &pop).args(["--retries", "0"]),
        Duration::from_secs(300),
        100,
    );
    assert_ne!(m.out.status.code(), Some(0), "{}", text(&m.out));
    assert!(
        stderr(&m.out).contains("LIST")
            && stderr(&m.out).contains("more than 1000000 lines (limit)"),
        "{}",
        text(&m.out)
    );
    assert_eq!(d.count(DST), 0);
}

/// A message with raw UTF-8 in its header, from a server that serves it only once
/// UTF8 (RFC 6856) is enabled, as Courier POP3 does: mailferry enables it where
/// CAPA offers it, and the message arrives byte for byte.
#[test]
fn utf8_is_enabled_where_offered_so_raw_utf8_headers_arrive() {
    let d = Dovecot::start(&[DST]);
    let utf8 = "From: Zoë <zoe@example.test>\r\nSubject: Grüße aus Zürich\r\nMessage-ID: <utf8@example.test>\r\n\r\nbody\r\n"
        .as_bytes()
        .to_vec();
    let pop = FakePop3::start(
        Pop3Script::new(vec![utf8.clone(), msg(2)])
            .with_uidls()
            .courier_utf8(),
    );
    let out = migrate(&d, &pop).run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut want = vec![utf8, msg(2)];
    want.sort();
    assert_eq!(bodies(&d.snapshot(DST)), want);
}

/// A server that sends something else than the message (far from LIST's size): the
/// message fails with the reason, nothing is stored, and the next run tries again.
#[test]
fn a_notice_in_place_of_a_message_fails_it() {
    let d = Dovecot::start(&[DST]);
    let pop = FakePop3::start(
        Pop3Script::new(vec![msg(1)])
            .with_uidls()
            .retr(Retr::Notice),
    );
    for _ in 0..2 {
        let out = migrate(&d, &pop).arg("--json").run();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let j = json(&out);
        let reason = j["failed"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(reason.contains("so this is not the message"), "{j}");
        assert_eq!(d.count(DST), 0);
    }
}

/// STAT saying 0 while LIST has mail: the mailbox is listed anyway, the mail
/// copied, the disagreement said (exit 1).
#[test]
fn stat_zero_with_mail_in_list_is_listed_and_said() {
    let d = Dovecot::start(&[DST]);
    let pop = FakePop3::start(
        Pop3Script::new(vec![msg(1), msg(2)])
            .with_uidls()
            .stat_count(0),
    );
    let out = migrate(&d, &pop).run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("STAT said 0 messages but LIST listed 2"),
        "{}",
        text(&out)
    );
    assert_eq!(bodies(&d.snapshot(DST)), vec![msg(1), msg(2)]);
}

/// A flood of disagreements (UIDL naming 40,000 messages LIST does not have) is
/// said in a bounded number of lines and does not slow the run down.
#[test]
fn a_flood_of_disagreements_is_said_briefly() {
    let d = Dovecot::start(&[DST]);
    let uidls: Vec<String> = (1..=40_000).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = uidls.iter().map(String::as_str).collect();
    let pop = FakePop3::start(Pop3Script::new(vec![msg(1)]).uidls(&refs));
    let started = Instant::now();
    let out = migrate(&d, &pop).run();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(all.lines().count() < 100, "{} lines", all.lines().count());
    assert!(
        all.contains("UIDL gave 39989 more messages which LIST does not list"),
        "{all}"
    );
    assert_eq!(d.count(DST), 1);
}
