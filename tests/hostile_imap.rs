//! A hostile or broken IMAP server can make a run fail, never make it lie or act on
//! the target. Each test plays one class of attack or breakage with the scripted
//! server of `common::fake_imap` (on one side) and a real Dovecot (on the other),
//! runs the real binary, bounded in time and memory, and checks what a user
//! would: the target's folders and messages, the summary, the exit code.

mod common;

use std::time::Duration;

use common::fake_imap::*;
use common::*;

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
    assert!(
        out.contains("SEARCH listed 999999 UIDs that FETCH did not return"),
        "{out}"
    );
    assert!(b.peak_mb < 60, "peak {} MB", b.peak_mb);
    // The listing went page by page (2,000 UIDs a command), never one expanded set.
    let fetches = fake
        .log()
        .iter()
        .filter(|l| l.windows(9).any(|w| w == b"UID FETCH"))
        .count();
    assert!(fetches >= 500, "{fetches} FETCH commands");

    // A range a folder of 3 messages cannot have: refused at once, not paged.
    let forged = FakeImap::start(vec![FakeBox::new(
        "INBOX",
        (1..=3).map(|n| FakeMsg::new(n, &msg(n))).collect(),
    )])
    .with(|s| {
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
        out.contains("SEARCH listed 4294967295 UIDs but the folder has 3 messages"),
        "{out}"
    );
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
    // A plain SEARCH answer with a negative number.
    let d = Dovecot::start(&[DST]);
    let fake = FakeImap::start(vec![FakeBox::new("INBOX", three())]).with(|s| {
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
