//! Providers that throttle: Microsoft 365 answers `NO Request is throttled.
//! Suggested Backoff Time: N milliseconds` (no response code), Gmail `[THROTTLED]`.
//! Played by the scripted server of `common::fake_imap` on one side, a real Dovecot
//! on the other: the run waits as long as the server asked (not its usual backoff,
//! and without using up `--retries`), resumes, and ends complete, each message
//! once; nothing is recorded as failed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::fake_imap::*;
use crate::common::*;

const SRC: &str = "src@source.test";
const DST: &str = "dst@target.test";

fn msg(n: u32) -> Vec<u8> {
    format!(
        "From: a@example.test\r\nMessage-ID: <throttle-{n}@example.test>\r\nSubject: message {n}\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn bodies(d: &Dovecot, user: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = d
        .snapshot(user)
        .0
        .values()
        .flatten()
        .map(|m| m.body.clone())
        .collect();
    v.sort();
    v
}

/// A Microsoft-like source throttles the second body FETCH once and asks for 3 s:
/// the run waits those 3 s (its own backoff would be 1 s; `--retries 0` would allow
/// no retry at all), then copies everything, once.
#[test]
fn a_microsoft_backoff_is_waited_out_and_the_copy_completes() {
    let d = Dovecot::start(&[DST]);
    let messages: Vec<FakeMsg> = (1..=40).map(|n| FakeMsg::new(n, &msg(n))).collect();
    let fetches = Arc::new(AtomicUsize::new(0));
    let seen = fetches.clone();
    let fake = FakeImap::start(vec![FakeBox::new("INBOX", messages)]).with(|s| {
        s.hook = Some(Arc::new(move |c: &Cmd, _: &mut std::net::TcpStream| {
            let body = c.name == "UID FETCH" && c.raw.windows(4).any(|w| w == b"BODY");
            (body && seen.fetch_add(1, Ordering::SeqCst) == 1).then(|| {
                format!(
                    "{} NO Request is throttled. Suggested Backoff Time: 3000 milliseconds\r\n",
                    c.tag
                )
                .into_bytes()
            })
        }))
    });
    let started = Instant::now();
    let out = Run::new("migrate")
        .from(fake.url(SRC))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        // Small batches, so the throttled FETCH is one of several.
        .args(["--allow-plaintext", "--retries", "0", "--retry-wait", "1"])
        .command()
        .env("MAILFERRY_BATCH_COUNT", "10")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Request is throttled") && err.contains("waiting 3s as it asked"),
        "{err}"
    );
    assert!(took >= Duration::from_secs(3), "waited only {took:?}");
    assert!(fetches.load(Ordering::SeqCst) >= 3, "the throttle was hit");
    let want: Vec<Vec<u8>> = {
        let mut v: Vec<Vec<u8>> = (1..=40).map(msg).collect();
        v.sort();
        v
    };
    assert_eq!(bodies(&d, DST), want, "every message once");
    assert!(!err.contains("failed"), "nothing failed: {err}");
}

/// A Gmail-like target answers an APPEND with `NO [THROTTLED]` (no time given):
/// the message is not failed (that would be a refusal of its content); the run
/// backs off, reconnects and stores it, each message once.
#[test]
fn a_throttled_append_is_retried_not_failed() {
    let d = Dovecot::start(&[SRC]);
    d.seed_args(
        SRC,
        &["--generate", "12", "--folder", "INBOX", "--seed", "t"],
    );
    let appends = Arc::new(AtomicUsize::new(0));
    let seen = appends.clone();
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])]).with(|s| {
        s.hook = Some(Arc::new(move |c: &Cmd, _: &mut std::net::TcpStream| {
            (c.name == "APPEND" && seen.fetch_add(1, Ordering::SeqCst) == 2).then(|| {
                format!(
                    "{} NO [THROTTLED] Account exceeded command or bandwidth limits. (Failure)\r\n",
                    c.tag
                )
                .into_bytes()
            })
        }))
    });
    let out = Run::new("migrate")
        .from(d.imaps_url(SRC))
        .to(target.url("t@fake.test"))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--allow-plaintext", "--retries", "0", "--retry-wait", "1"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[THROTTLED]") && err.contains("slow down"),
        "{err}"
    );
    let stored = target.messages("INBOX");
    let source = d.snapshot(SRC).0["INBOX"].clone();
    assert_eq!(stored.len(), source.len(), "each message once");
    let mut got: Vec<Vec<u8>> = stored.into_iter().map(|m| m.body).collect();
    let mut want: Vec<Vec<u8>> = source.into_iter().map(|m| m.body).collect();
    got.sort();
    want.sort();
    assert!(got == want, "the same bytes");
}
