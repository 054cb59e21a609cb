//! A hostile or broken IMAP server can make a run fail, never make it lie or act on
//! the target. Each test plays one class of attack or breakage with the scripted
//! server of `common::fake_imap` (on one side) and a real Dovecot (on the other),
//! runs the real binary, bounded in time and memory, and checks what a user
//! would: the target's folders and messages, the summary, the exit code.

use std::time::Duration;

use crate::common::fake_imap::*;
use crate::common::*;

const DST: &str = "vic@target.test";
const SRC: &str = "src@source.test";

fn msg(n: u32) -> Vec<u8> {
    format!(
        "From: a@example.test\r\nMessage-ID: <hostile-{n}@example.test>\r\nSubject: message {n}\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

/// `migrate` from a fake source into the Dovecot account DST.
fn from_fake(fake: &FakeImap, d: &Dovecot, state: &std::path::Path) -> Run {
    Run::new("migrate")
        .from(fake.url("u@fake.test"))
        .to(d.imaps_url(DST))
        .passwords(d)
        .ca(d)
        .state(state)
        .args(["--allow-plaintext", "--retries", "0"])
}

fn bounded(run: &Run, secs: u64) -> Bounded {
    let b = run_bounded(run.command(), Duration::from_secs(secs));
    assert!(
        !b.killed,
        "mailferry had to be killed after {:.0} s at {} MB peak: {}",
        b.secs,
        b.peak_mb,
        text(&b.out)
    );
    b
}

fn folders(d: &Dovecot, user: &str) -> Vec<String> {
    d.snapshot(user).0.keys().cloned().collect()
}

fn bodies(d: &Dovecot, user: &str, folder: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = d
        .snapshot(user)
        .0
        .get(folder)
        .map(|m| m.iter().map(|m| m.body.clone()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A literal with CRLF in it, wherever a server value goes into a command.
fn literal(s: &str) -> Vec<u8> {
    format!("{{{}}}\r\n{s}", s.len()).into_bytes()
}

#[test]
fn values_from_the_source_never_become_commands_on_the_target() {
    let d = Dovecot::start(&[DST]);
    let mut dated = FakeMsg::new(2, &msg(2));
    // The attack: INTERNALDATE as a literal that closes the quote and adds
    // commands of its own.
    dated.date =
        literal("01-Jan-2020 10:00:00 +0000\"\r\nX1 CREATE hostile_injected\r\nX2 NOOP \"");
    let mut flagged = FakeMsg::new(3, &msg(3));
    let mut f = b"(\\Seen ".to_vec();
    f.extend(literal("x)\r\nX3 CREATE hostile_flag\r\nX4 NOOP (y"));
    f.push(b')');
    flagged.flags = f;
    let fake = FakeImap::start(vec![FakeBox::new(
        "INBOX",
        vec![FakeMsg::new(1, &msg(1)), dated, flagged],
    )]);
    let state = d.dir.path().join("state.sqlite");
    let b = bounded(&from_fake(&fake, &d, &state).arg("--json"), 60);
    let out = text(&b.out);
    let names = folders(&d, DST);
    assert!(
        !names.iter().any(|n| n.contains("hostile")),
        "a command from the source ran on the target: {names:?}"
    );
    assert_eq!(b.out.status.code(), Some(1), "{out}");
    // The good message arrived exactly; the two with hostile values failed, each
    // named with the value that was refused, escaped.
    assert_eq!(bodies(&d, DST, "INBOX"), vec![msg(1)]);
    let json: serde_json::Value = serde_json::from_slice(&b.out.stdout).expect("JSON summary");
    let failed = json["failed"].as_array().unwrap();
    let reason_of = |id: &str| {
        failed
            .iter()
            .find(|f| f["id"] == id && f["folder"] == "INBOX")
            .map(|f| f["reason"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("message {id} not reported failed: {out}"))
    };
    assert!(reason_of("2").contains("INTERNALDATE"), "{out}");
    assert!(reason_of("2").contains("\\r\\nX1 CREATE"), "escaped: {out}");
    assert!(reason_of("3").contains("not an IMAP flag"), "{out}");
}

#[test]
fn a_folder_name_with_line_breaks_arrives_as_a_name() {
    let d = Dovecot::start(&[DST]);
    let mut evil = FakeBox::new("", vec![FakeMsg::new(1, &msg(4))]);
    evil.name = b"Evil\r\nX5 CREATE hostile_name".to_vec();
    evil.wire = literal("Evil\r\nX5 CREATE hostile_name");
    let fake = FakeImap::start(vec![FakeBox::new("INBOX", vec![]), evil]);
    let state = d.dir.path().join("state.sqlite");
    let b = bounded(&from_fake(&fake, &d, &state), 60);
    let out = text(&b.out);
    let names = folders(&d, DST);
    assert!(!names.iter().any(|n| n.starts_with("hostile")), "{names:?}");
    assert_eq!(b.out.status.code(), Some(0), "{out}");
    // Its control characters are made `_` (no server takes them in a name), and
    // its message is there.
    assert!(
        names.contains(&"Evil__X5 CREATE hostile_name".to_string()),
        "{names:?}"
    );
    assert_eq!(
        bodies(&d, DST, "Evil__X5 CREATE hostile_name"),
        vec![msg(4)]
    );
}

#[test]
fn a_stray_paren_or_deep_nesting_fails_the_run_quickly_in_bounded_memory() {
    let d = Dovecot::start(&[DST]);
    let state = d.dir.path().join("state.sqlite");
    for (answer, says) in [
        (b"* 1 FETCH (UID 1) )\r\n".to_vec(), "closes no list"),
        (
            {
                let mut v = b"* 1 FETCH (UID 1 X ".to_vec();
                v.extend(std::iter::repeat_n(b'(', 50_000));
                v.extend(std::iter::repeat_n(b')', 50_001));
                v.extend_from_slice(b"\r\n");
                v
            },
            "more than 64 deep",
        ),
    ] {
        let fake = FakeImap::start(vec![FakeBox::new("INBOX", vec![FakeMsg::new(1, &msg(1))])])
            .with(|s| {
                s.hook = Some(std::sync::Arc::new(move |c: &Cmd, _: &mut _| {
                    (c.name == "UID FETCH").then(|| {
                        let mut v = answer.clone();
                        v.extend(format!("{} OK done\r\n", c.tag).into_bytes());
                        v
                    })
                }))
            });
        let b = bounded(&from_fake(&fake, &d, &state), 60);
        let out = text(&b.out);
        assert_eq!(b.out.status.code(), Some(3), "{out}");
        assert!(out.contains(says), "{out}");
        assert!(b.peak_mb < 100, "peak {} MB", b.peak_mb);
    }
}

#[test]
fn a_huge_uid_range_is_paged_never_expanded_and_never_taken_for_empty() {
    let d = Dovecot::start(&[DST]);
    let state = d.dir.path().join("state.sqlite");
    // Dovecot's ordinary answer for a folder of 1,000,002 messages, of which the
    // server then delivers three: the three are copied, the rest is reported.
    let mut inbox = FakeBox::new("INBOX", (1..=3).map(|n| FakeMsg::new(n, &msg(n))).collect());
    inbox.exists_says = Some(1_000_002);
    let fake = FakeImap::start(vec![inbox]).with(|s| {
        s.hook = Some(std::sync::Arc::new(|c: &Cmd, _: &mut _| {
            (c.name == "UID SEARCH").then(|| {
                format!(
                    "* ESEARCH (TAG \"{0}\") UID ALL 1:1000002\r\n{0} OK done\r\n",
                    c.tag
                )
                .into_bytes()
            })
        }))
    });
    let b = bounded(&from_fake(&fake, &d, &state), 180);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(1), "{out}");
    assert_eq!(bodies(&d, DST, "INBOX").len(), 3, "{out}");
    // Page 1 (UIDs 1:2000) gave 3; pages 2–4 gave nothing, so the listing stops
    // there and says how much it did not read.
    assert!(
        out.contains("SEARCH listed 7997 UIDs that FETCH did not return (the first: 4)"),
        "{out}"
    );
    assert!(
        out.contains("FETCH returned nothing for 3 pages in a row of what SEARCH listed; the remaining 992002 UIDs are not listed"),
        "{out}"
    );
    assert!(b.peak_mb < 60, "peak {} MB", b.peak_mb);
    // The listing went page by page (2,000 UIDs a command), never one expanded set,
    // and stopped.
    let fetches: Vec<String> = fake
        .log()
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .filter(|l| l.contains("UID FETCH"))
        .collect();
    assert!(
        fetches.iter().any(|l| l.contains("UID FETCH 1:2000 ")),
        "{fetches:?}"
    );
    assert!(fetches.len() < 10, "{fetches:?}");

    // A range a folder of 3 messages cannot have: said, and not paged through
    // (EXISTS says more than one listing page, so SEARCH is asked first).
    let mut forged_box = FakeBox::new("INBOX", (1..=3).map(|n| FakeMsg::new(n, &msg(n))).collect());
    forged_box.exists_says = Some(2001);
    let forged = FakeImap::start(vec![forged_box]).with(|s| {
        s.hook = Some(std::sync::Arc::new(|c: &Cmd, _: &mut _| {
            (c.name == "UID SEARCH").then(|| {
                format!(
                    "* ESEARCH (TAG \"{0}\") UID ALL 1:4294967295\r\n{0} OK done\r\n",
                    c.tag
                )
                .into_bytes()
            })
        }))
    });
    let b = bounded(&from_fake(&forged, &d, &state), 60);
    let out = text(&b.out);
    assert_ne!(b.out.status.code(), Some(0), "{out}");
    assert!(
        out.contains("SEARCH listed 4294967295 UIDs but the folder has 2001 messages"),
        "{out}"
    );
    assert!(
        out.contains("only the first 10000000 are listed (limit)"),
        "{out}"
    );
    assert!(b.secs < 30.0, "took {:.1} s", b.secs);
}

#[test]
fn endless_lines_are_cut_at_the_limit_before_and_after_login() {
    let d = Dovecot::start(&[DST]);
    let state = d.dir.path().join("state.sqlite");
    fn endless(w: &mut std::net::TcpStream) {
        let chunk = vec![b'A'; 64 * 1024];
        while std::io::Write::write_all(w, &chunk).is_ok() {}
    }
    // Before login: the greeting never ends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut c, b"* OK ");
                endless(&mut c);
            });
        }
    });
    let run = Run::new("migrate")
        .from(format!("imap://u@fake.test@localhost:{port}"))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(&state)
        .args(["--allow-plaintext", "--retries", "0"]);
    let b = bounded(&run, 60);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(3), "{out}");
    assert!(
        out.contains("longer than 65536 bytes (limit before login)"),
        "{out}"
    );
    assert!(b.peak_mb < 60, "peak {} MB", b.peak_mb);

    // After login: a LIST answer whose line never ends.
    let fake = FakeImap::start(vec![FakeBox::new("INBOX", vec![])]).with(|s| {
        s.hook = Some(std::sync::Arc::new(
            move |c: &Cmd, w: &mut std::net::TcpStream| {
                (c.name == "LIST").then(|| {
                    let _ = std::io::Write::write_all(w, b"* LIST () \"/\" ");
                    endless(w);
                    Vec::new()
                })
            },
        ))
    });
    let b = bounded(&from_fake(&fake, &d, &state), 120);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(3), "{out}");
    assert!(out.contains("longer than 16777216 bytes (limit)"), "{out}");
    assert!(b.peak_mb < 80, "peak {} MB", b.peak_mb);
}

/// A server that answers a command with one keep-alive byte every 200 ms forever.
fn trickle(w: &mut std::net::TcpStream) {
    for &b in b"* OK still working\r\n".iter().cycle() {
        if std::io::Write::write_all(w, &[b]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_trickling_server_is_cut_by_the_command_deadline_on_either_side() {
    let d = Dovecot::start(&[SRC, DST]);
    let state = d.dir.path().join("state.sqlite");
    // The source trickles its answer to the body FETCH.
    let fake =
        FakeImap::start(vec![FakeBox::new("INBOX", vec![FakeMsg::new(1, &msg(1))])]).with(|s| {
            s.hook = Some(std::sync::Arc::new(
                |c: &Cmd, w: &mut std::net::TcpStream| {
                    (c.name == "UID FETCH" && c.raw.windows(11).any(|x| x == b"BODY.PEEK[]")).then(
                        || {
                            trickle(w);
                            Vec::new()
                        },
                    )
                },
            ))
        });
    let b = bounded(&from_fake(&fake, &d, &state).args(["--timeout", "1"]), 60);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(3), "{out}");
    assert!(out.contains("for one command"), "{out}");
    assert!(b.secs < 20.0, "took {:.1} s", b.secs);

    // The target trickles its answer to APPEND.
    let mut s = d.session(SRC);
    for n in 1..=2 {
        s.append(&mailferry::imap::Append {
            mailbox: b"INBOX",
            flags: &[],
            internal_date: None,
            body: &msg(n),
        })
        .unwrap();
    }
    s.logout();
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])]).with(|s| {
        s.hook = Some(std::sync::Arc::new(
            |c: &Cmd, w: &mut std::net::TcpStream| {
                (c.name == "APPEND").then(|| {
                    trickle(w);
                    Vec::new()
                })
            },
        ))
    });
    let run = Run::new("migrate")
        .from(d.imaps_url(SRC))
        .to(target.url("t@fake.test"))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state2.sqlite"))
        .args([
            "--allow-plaintext",
            "--retries",
            "0",
            "--timeout",
            "1",
            "--include",
            "INBOX",
        ]);
    let b = bounded(&run, 60);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(3), "{out}");
    assert!(out.contains("for one command"), "{out}");
    assert!(b.secs < 20.0, "took {:.1} s", b.secs);
}

#[test]
fn a_missing_or_zero_uidvalidity_rechecks_by_key_so_reused_uids_lose_nothing() {
    for validity in [None, Some("0".to_string())] {
        let d = Dovecot::start(&[DST]);
        let state = d.dir.path().join("state.sqlite");
        let mut inbox = FakeBox::new("INBOX", vec![FakeMsg::new(1, &msg(1))]);
        inbox.uidvalidity = validity.clone();
        let fake = FakeImap::start(vec![inbox]);
        let b = bounded(&from_fake(&fake, &d, &state), 60);
        let out = text(&b.out);
        assert_eq!(b.out.status.code(), Some(1), "{validity:?}: {out}");
        assert!(out.contains("no valid UIDVALIDITY"), "{out}");
        assert_eq!(bodies(&d, DST, "INBOX"), vec![msg(1)]);
        // The mailbox is recreated: UID 1 is now another message, and 1 is gone.
        fake.state.lock().unwrap().boxes[0].messages = vec![FakeMsg::new(1, &msg(2))];
        let b = bounded(&from_fake(&fake, &d, &state), 60);
        let out = text(&b.out);
        assert_eq!(b.out.status.code(), Some(1), "{out}");
        assert_eq!(
            bodies(&d, DST, "INBOX"),
            vec![msg(1), msg(2)],
            "{validity:?}: the new message behind a reused UID was skipped: {out}"
        );
        // And a third run copies nothing twice.
        bounded(&from_fake(&fake, &d, &state), 60);
        assert_eq!(bodies(&d, DST, "INBOX").len(), 2);
    }
}

#[test]
fn what_the_server_announced_but_did_not_deliver_is_never_silent() {
    let d = Dovecot::start(&[DST]);
    let three = || {
        (1..=3)
            .map(|n| FakeMsg::new(n, &msg(n)))
            .collect::<Vec<_>>()
    };
    // SEARCH lists 1:3, the listing FETCH leaves 2 out.
    let fake = FakeImap::start(vec![FakeBox::new("INBOX", three())]).with(|s| {
        s.hook = Some(std::sync::Arc::new(|c: &Cmd, _: &mut _| {
            let t = String::from_utf8_lossy(&c.raw);
            (c.name == "UID FETCH" && t.contains("RFC822.SIZE FLAGS")).then(|| {
                let mut v = Vec::new();
                for n in [1u32, 3] {
                    v.extend(format!("* {n} FETCH (UID {n} RFC822.SIZE {} FLAGS (\\Seen) INTERNALDATE \"01-Jan-2020 10:00:00 +0000\")\r\n", msg(n).len()).into_bytes());
                }
                v.extend(format!("{} OK done\r\n", c.tag).into_bytes());
                v
            })
        }))
    });
    let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("a.sqlite")), 60);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(1), "{out}");
    assert!(
        out.contains("SEARCH listed 1 UIDs that FETCH did not return (the first: 2)"),
        "{out}"
    );
    assert_eq!(bodies(&d, DST, "INBOX"), vec![msg(1), msg(3)]);

    // No EXISTS: the folder is listed anyway, never taken for empty.
    let d = Dovecot::start(&[DST]);
    let mut inbox = FakeBox::new("INBOX", three());
    inbox.exists = false;
    let fake = FakeImap::start(vec![inbox]);
    let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("b.sqlite")), 60);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(1), "{out}");
    assert!(out.contains("no EXISTS"), "{out}");
    assert_eq!(bodies(&d, DST, "INBOX").len(), 3, "{out}");

    // A UID above 2^32 - 1, a negative one, zero: refused, not truncated or skipped.
    for uid in ["4294967297", "-1", "0"] {
        let d = Dovecot::start(&[DST]);
        let fake = FakeImap::start(vec![FakeBox::new("INBOX", three())]).with(|s| {
            let uid = uid.to_string();
            s.hook = Some(std::sync::Arc::new(move |c: &Cmd, _: &mut _| {
                let t = String::from_utf8_lossy(&c.raw);
                (c.name == "UID FETCH" && t.contains("RFC822.SIZE FLAGS")).then(|| {
                    format!("* 1 FETCH (UID {uid} RFC822.SIZE 10 FLAGS () INTERNALDATE \"01-Jan-2020 10:00:00 +0000\")\r\n{} OK done\r\n", c.tag).into_bytes()
                })
            }))
        });
        let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("c.sqlite")), 60);
        let out = text(&b.out);
        assert_ne!(b.out.status.code(), Some(0), "UID {uid}: {out}");
        assert!(out.contains("which is not a UID"), "UID {uid}: {out}");
    }
    // A plain SEARCH answer with a negative number (EXISTS says more than one
    // listing page, so the folder is listed with SEARCH first).
    let d = Dovecot::start(&[DST]);
    let mut inbox = FakeBox::new("INBOX", three());
    inbox.exists_says = Some(2001);
    let fake = FakeImap::start(vec![inbox]).with(|s| {
        s.hook = Some(std::sync::Arc::new(|c: &Cmd, _: &mut _| {
            (c.name == "UID SEARCH")
                .then(|| format!("* SEARCH 1 -2 3\r\n{} OK done\r\n", c.tag).into_bytes())
        }))
    });
    let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("d.sqlite")), 60);
    let out = text(&b.out);
    assert_ne!(b.out.status.code(), Some(0), "{out}");
    assert!(out.contains("which is not a UID"), "{out}");
}

#[test]
fn an_appenduid_of_another_uidvalidity_is_reported_not_recorded() {
    let d = Dovecot::start(&[SRC]);
    d.seed(SRC);
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])])
        .with(|s| s.appenduid_validity = Some("999".into()));
    let run = Run::new("migrate")
        .from(d.imaps_url(SRC))
        .to(target.url("t@fake.test"))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--allow-plaintext", "--retries", "0", "--include", "INBOX"]);
    let b = bounded(&run, 60);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(1), "{out}");
    assert!(
        out.contains("APPENDUID names UIDVALIDITY 999 but the folder has 1700000000"),
        "{out}"
    );
    let copied = target.messages("INBOX").len();
    assert!(copied > 0, "{out}");
    // A second run appends nothing again (the copies are found by their keys).
    bounded(&run, 60);
    assert_eq!(target.messages("INBOX").len(), copied);
}

#[test]
fn server_text_reaches_the_terminal_escaped() {
    let d = Dovecot::start(&[DST]);
    let fake = FakeImap::start(vec![]).with(|s| {
        s.hook = Some(std::sync::Arc::new(|c: &Cmd, _: &mut _| {
            (c.name == "AUTHENTICATE" || c.name == "LOGIN").then(|| {
                format!(
                    "{} NO [AUTHENTICATIONFAILED] \x1b]0;pwned\x07\x1b[2J\u{9b}31m wrong\r\n",
                    c.tag
                )
                .into_bytes()
            })
        }))
    });
    let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("s.sqlite")), 60);
    let err = String::from_utf8_lossy(&b.out.stderr).into_owned();
    assert_eq!(b.out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{9b}31m wrong"),
        "{err}"
    );
    assert!(
        !err.contains('\x1b') && !err.contains('\x07') && !err.contains('\u{9b}'),
        "raw control characters reached the terminal: {err:?}"
    );
}

#[test]
fn a_folder_name_reaches_the_report_as_text_not_as_a_formula() {
    let d = Dovecot::start(&[DST]);
    let mut bad = FakeMsg::new(1, &msg(1));
    bad.date = b"\"not a date\"".to_vec();
    let fake = FakeImap::start(vec![FakeBox::new("=SUM(1+1)*HYPERLINK(0)", vec![bad])]);
    let csv = d.dir.path().join("accounts.csv");
    let pw = d.pwfile();
    std::fs::write(
        &csv,
        format!(
            "source;source_protocol;source_user;source_password;target;target_user;target_password\nlocalhost:{};imap;u@fake.test;file:{};localhost:{};{DST};file:{}\n",
            fake.port,
            pw.display(),
            d.imaps,
            pw.display()
        ),
    )
    .unwrap();
    let report = d.dir.path().join("report.csv");
    let run = Run::new("batch")
        .arg(&csv)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .opt("--report", &report)
        .args(["--allow-plaintext", "--retries", "0"]);
    let b = bounded(&run, 60);
    let out = text(&b.out);
    let rep = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(rep.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 1, "{rep}\n{out}");
    let error = &rows[0][9];
    assert!(error.starts_with("'=SUM(1+1)"), "{error:?}\n{out}");
    // On the terminal it stays as it is (escaped for control characters only).
    assert!(out.contains("failed: =SUM(1+1)"), "{out}");
}

/// A proxy to `to` whose server→client bytes trickle one every 500 ms once the
/// client has sent `after` TLS application-data records (0: from the start, so the
/// handshake itself trickles).
fn tls_trickle_proxy(to: u16, after: usize) -> u16 {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let s = std::net::TcpStream::connect(("127.0.0.1", to)).unwrap();
            let app = std::sync::Arc::new(AtomicUsize::new(0));
            let (mut c1, mut s1) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            let a1 = app.clone();
            std::thread::spawn(move || {
                // Client → server, counting application-data records (type 23).
                let (mut hdr, mut left, mut buf) = (Vec::new(), 0usize, [0u8; 4096]);
                loop {
                    let n = match c1.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    for &b in &buf[..n] {
                        if left > 0 {
                            left -= 1;
                            continue;
                        }
                        hdr.push(b);
                        if hdr.len() == 5 {
                            if hdr[0] == 23 {
                                a1.fetch_add(1, Ordering::SeqCst);
                            }
                            left = u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
                            hdr.clear();
                        }
                    }
                    if s1.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            let (mut s2, mut c2) = (s, c);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let n = match s2.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if app.load(Ordering::SeqCst) >= after {
                        for &b in &buf[..n] {
                            if c2.write_all(&[b]).is_err() {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    } else if c2.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Inside TLS a read waits for a whole record: the deadline is enforced on the
/// socket under TLS, so a server trickling a record (or its handshake) one byte
/// every half second is cut at the command's budget (4 × --timeout = 8 s), over
/// IMAPS and POP3S.
#[test]
fn a_trickle_inside_tls_is_cut_by_the_command_deadline() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    for (scheme, port, after) in [
        ("imaps", d.imaps, 0),
        ("imaps", d.imaps, 2),
        // TLS 1.3: the client's Finished is an application-data record too.
        ("pop3s", d.pop3s, 2),
    ] {
        let proxy = tls_trickle_proxy(port, after);
        let run = Run::new("migrate")
            .from(format!("{scheme}://{SRC}@localhost:{proxy}"))
            .to(d.imaps_url(DST))
            .passwords(&d)
            .ca(&d)
            .state(d.dir.path().join(format!("{scheme}{after}.sqlite")))
            .args(["--retries", "0", "--timeout", "2"]);
        let b = bounded(&run, 45);
        let out = text(&b.out);
        assert_eq!(
            b.out.status.code(),
            Some(3),
            "{scheme} after {after}: {out}"
        );
        assert!(
            out.contains("timed out") || out.contains("within 2s"),
            "{scheme} after {after}: {out}"
        );
        assert!(
            b.secs < 20.0,
            "{scheme} after {after}: took {:.1} s",
            b.secs
        );
    }
}

/// A folder of one listing page is listed with `UID FETCH 1:*` (no SEARCH
/// first): a server whose EXISTS says fewer messages than FETCH gives has every
/// one copied, the disagreement said; one whose FETCH gives fewer than EXISTS
/// is listed with SEARCH after all, and what it withholds is said.
#[test]
fn a_one_page_folder_listed_without_search_still_says_disagreements() {
    let three = || {
        (1..=3)
            .map(|n| FakeMsg::new(n, &msg(n)))
            .collect::<Vec<_>>()
    };
    let d = Dovecot::start(&[DST]);
    let mut inbox = FakeBox::new("INBOX", three());
    inbox.exists_says = Some(2);
    let fake = FakeImap::start(vec![inbox]);
    let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("m.sqlite")), 60);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FETCH listed 3 messages but the folder has 2 messages (EXISTS)"),
        "{out}"
    );
    assert_eq!(bodies(&d, DST, "INBOX"), vec![msg(1), msg(2), msg(3)]);

    let d = Dovecot::start(&[DST]);
    let mut inbox = FakeBox::new("INBOX", three());
    inbox.exists_says = Some(4);
    let fake = FakeImap::start(vec![inbox]);
    let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("f.sqlite")), 60);
    let out = text(&b.out);
    let searched = fake
        .log()
        .iter()
        .any(|l| String::from_utf8_lossy(l).contains("UID SEARCH"));
    assert!(searched, "fewer than EXISTS: listed with SEARCH after all");
    assert_eq!(
        bodies(&d, DST, "INBOX"),
        vec![msg(1), msg(2), msg(3)],
        "{out}"
    );
}

/// A server saying its folder is empty (EXISTS 0) while SEARCH and FETCH give
/// mail: the folder is listed anyway, the mail copied, the disagreement said.
#[test]
fn an_empty_folder_that_is_not_is_listed_and_said() {
    let d = Dovecot::start(&[DST]);
    let mut inbox = FakeBox::new(
        "INBOX",
        vec![FakeMsg::new(1, &msg(1)), FakeMsg::new(2, &msg(2))],
    );
    inbox.exists_says = Some(0);
    let fake = FakeImap::start(vec![inbox]);
    let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("e.sqlite")), 60);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(1), "{out}");
    assert!(
        out.contains("SEARCH listed 2 UIDs but the folder has 0 messages"),
        "{out}"
    );
    assert_eq!(bodies(&d, DST, "INBOX"), vec![msg(1), msg(2)]);
}

/// Mail deleted by another client while the run lists the folder (FETCH leaves it
/// out, SEARCH no longer finds it) is not a disagreement.
#[test]
fn mail_expunged_meanwhile_is_not_a_disagreement() {
    let d = Dovecot::start(&[DST]);
    let fake = FakeImap::start(vec![FakeBox::new(
        "INBOX",
        (1..=3).map(|n| FakeMsg::new(n, &msg(n))).collect(),
    )]);
    let st = fake.state.clone();
    fake.state.lock().unwrap().hook = Some(std::sync::Arc::new(move |c: &Cmd, _: &mut _| {
        // The listing FETCH: UID 2 is expunged just before it is answered.
        let t = String::from_utf8_lossy(&c.raw);
        if c.name == "UID FETCH" && t.contains("RFC822.SIZE FLAGS") {
            if let Ok(mut s) = st.try_lock() {
                s.boxes[0].messages.retain(|m| m.uid != 2);
            }
        }
        None
    }));
    let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("x.sqlite")), 60);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(0), "{out}");
    assert_eq!(bodies(&d, DST, "INBOX"), vec![msg(1), msg(3)]);
}

/// A slow but steady target (each APPEND answered after 300 ms, 30 messages
/// pipelined, --timeout 1): each answer starts the next one's budget, so it is
/// not cut for the size of the batch.
#[test]
fn a_slow_steady_target_is_not_cut() {
    let d = Dovecot::start(&[SRC]);
    let mut s = d.session(SRC);
    for n in 1..=30 {
        s.append(&mailferry::imap::Append {
            mailbox: b"INBOX",
            flags: &[],
            internal_date: None,
            body: &msg(n),
        })
        .unwrap();
    }
    s.logout();
    let target = FakeImap::start(vec![FakeBox::new("INBOX", vec![])]).with(|s| {
        s.hook = Some(std::sync::Arc::new(|c: &Cmd, _: &mut _| {
            if c.name == "APPEND" {
                std::thread::sleep(Duration::from_millis(300));
            }
            None
        }))
    });
    let run = Run::new("migrate")
        .from(d.imaps_url(SRC))
        .to(target.url("t@fake.test"))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("slow.sqlite"))
        .args([
            "--allow-plaintext",
            "--retries",
            "0",
            "--timeout",
            "1",
            "--include",
            "INBOX",
        ]);
    let b = bounded(&run, 120);
    assert_eq!(b.out.status.code(), Some(0), "{}", text(&b.out));
    assert_eq!(target.messages("INBOX").len(), 30);
}

/// A server streaming what nobody asked for, fast (untagged `* OK` lines at full
/// speed), buys itself no time: the command is cut at its base budget.
#[test]
fn a_fast_stream_of_unasked_data_is_cut_too() {
    let d = Dovecot::start(&[DST]);
    let fake =
        FakeImap::start(vec![FakeBox::new("INBOX", vec![FakeMsg::new(1, &msg(1))])]).with(|s| {
            s.hook = Some(std::sync::Arc::new(
                |c: &Cmd, w: &mut std::net::TcpStream| {
                    // The listing, whichever way it is asked (SEARCH first, or
                    // FETCH 1:* for a folder of one page).
                    let listing = c.name == "UID SEARCH"
                        || (c.name == "UID FETCH"
                            && String::from_utf8_lossy(&c.raw).contains("RFC822.SIZE FLAGS"));
                    listing.then(|| {
                        let line = b"* OK still searching\r\n".repeat(1000);
                        while std::io::Write::write_all(w, &line).is_ok() {}
                        Vec::new()
                    })
                },
            ))
        });
    let b = bounded(
        &from_fake(&fake, &d, &d.dir.path().join("f.sqlite")).args(["--timeout", "1"]),
        60,
    );
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(3), "{out}");
    assert!(out.contains("for one command"), "{out}");
    assert!(b.secs < 20.0, "took {:.1} s", b.secs);
    assert!(b.peak_mb < 60, "peak {} MB", b.peak_mb);
}

/// Unasked bodies and flag floods are dropped or refused as they arrive: a page
/// of listing cannot be made to hold gigabytes.
#[test]
fn unasked_bodies_and_flag_floods_stay_out_of_memory() {
    let d = Dovecot::start(&[DST]);
    let fake =
        FakeImap::start(vec![FakeBox::new("INBOX", vec![FakeMsg::new(1, &msg(1))])]).with(|s| {
            s.hook = Some(std::sync::Arc::new(
                |c: &Cmd, w: &mut std::net::TcpStream| {
                    let t = String::from_utf8_lossy(&c.raw).into_owned();
                    if c.name == "UID FETCH" && t.contains("BODY.PEEK[]") {
                        // 40 bodies of 8 MB for UIDs nobody asked for, then UID 1.
                        let big = vec![b'x'; 8 << 20];
                        for n in 100..140 {
                            let head = format!("* {n} FETCH (UID {n} BODY[] {{{}}}\r\n", big.len());
                            let _ = std::io::Write::write_all(w, head.as_bytes());
                            let _ = std::io::Write::write_all(w, &big);
                            let _ = std::io::Write::write_all(w, b")\r\n");
                        }
                        let m = msg(1);
                        let mut v =
                            format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n", m.len()).into_bytes();
                        v.extend_from_slice(&m);
                        v.extend(format!(")\r\n{} OK done\r\n", c.tag).into_bytes());
                        return Some(v);
                    }
                    None
                },
            ))
        });
    let b = bounded(&from_fake(&fake, &d, &d.dir.path().join("u.sqlite")), 120);
    let out = text(&b.out);
    assert_eq!(b.out.status.code(), Some(0), "{out}");
    assert_eq!(bodies(&d, DST, "INBOX"), vec![msg(1)]);
    assert!(
        b.peak_mb < 100,
        "peak {} MB: unasked bodies were held",
        b.peak_mb
    );
}
