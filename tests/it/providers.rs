//! Moves from Gmail and Microsoft 365, played by the scripted server of
//! `common::fake_imap` as the source (what no real server here does: labels,
//! views, non-mail folders) into a real Dovecot: each message once per label
//! folder, archived mail into Archive, nothing from the views or the non-mail
//! folders, starred mail flagged, and the summary saying what was left out.

use crate::common::fake_imap::*;
use crate::common::*;

const DST: &str = "dst@target.test";

fn msg(n: u32, subject: &str) -> Vec<u8> {
    format!(
        "From: a@example.test\r\nMessage-ID: <gm-{n}@example.test>\r\nSubject: {subject}\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

/// A Gmail message as one label folder shows it.
fn gm(uid: u32, n: u32, subject: &str, labels: &str, flags: &str) -> FakeMsg {
    let mut m = FakeMsg::new(uid, &msg(n, subject));
    m.labels = labels.as_bytes().to_vec();
    m.flags = flags.as_bytes().to_vec();
    m.gm_msgid = 1_000 + u64::from(n);
    m
}

fn subjects(d: &Dovecot) -> std::collections::BTreeMap<String, Vec<String>> {
    d.snapshot(DST)
        .0
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            let mut s: Vec<String> = v
                .iter()
                .map(|m| m.subject().trim_start_matches("Subject: ").to_string())
                .collect();
            s.sort();
            (k, s)
        })
        .collect()
}

/// The Gmail account of the tests (see the first test's comment).
fn gmail_boxes() -> Vec<FakeBox> {
    let inbox = r#"("\\Inbox")"#;
    let all = vec![
        gm(
            1,
            1,
            "one inbox important",
            r#"("\\Inbox" "\\Important")"#,
            r"(\Seen)",
        ),
        gm(
            2,
            2,
            "two inbox starred",
            r#"("\\Inbox" "\\Starred")"#,
            r"(\Seen \Flagged)",
        ),
        gm(3, 3, "three receipts", r#"("Receipts")"#, r"(\Seen)"),
        gm(4, 4, "four archived", "()", r"(\Seen)"),
        gm(5, 5, "five archived important", r#"("\\Important")"#, r"()"),
        gm(6, 6, "six sent", r#"("\\Sent")"#, r"(\Seen)"),
    ];
    vec![
        FakeBox::new(
            "INBOX",
            vec![
                gm(1, 1, "one inbox important", inbox, r"(\Seen)"),
                gm(2, 2, "two inbox starred", inbox, r"(\Seen \Flagged)"),
            ],
        ),
        FakeBox::new(
            "Receipts",
            vec![gm(1, 3, "three receipts", "()", r"(\Seen)")],
        ),
        FakeBox::new("[Gmail]", vec![]).attrs(r"\Noselect \HasChildren"),
        FakeBox::new("[Gmail]/All Mail", all).attrs(r"\All \HasNoChildren"),
        FakeBox::new(
            "[Gmail]/Important",
            vec![gm(1, 1, "one inbox important", inbox, r"(\Seen)")],
        )
        .attrs(r"\Important \HasNoChildren"),
        FakeBox::new(
            "[Gmail]/Starred",
            vec![gm(1, 2, "two inbox starred", inbox, r"(\Seen \Flagged)")],
        )
        .attrs(r"\Flagged \HasNoChildren"),
        FakeBox::new(
            "[Gmail]/Sent Mail",
            vec![gm(1, 6, "six sent", "()", r"(\Seen)")],
        )
        .attrs(r"\Sent \HasNoChildren"),
    ]
}

/// Gmail: INBOX (1, 2), the label Receipts (3), Sent Mail (6), the views Important (1) and Starred (2), and All Mail
/// holding everything (1–6), of which 4 and 5 carry no label (archived). The
/// target gets INBOX 1 2, Receipts 3, Sent 6, Archive 4 5; 2 keeps its star as
/// \Flagged; no Important, Starred or All Mail folder; a second run copies nothing.
#[test]
fn a_gmail_account_moves_once_per_label_with_archived_mail_in_archive() {
    let d = Dovecot::start_with(
        &[DST],
        Config {
            archive: Some("Archive"),
            ..Config::default()
        },
    );
    let boxes = gmail_boxes();
    let fake = FakeImap::start(boxes).with(|s| {
        s.caps = "IMAP4rev1 UIDPLUS NAMESPACE X-GM-EXT-1 SPECIAL-USE".into();
    });
    let run = || {
        Run::new("migrate")
            .from(fake.url("anna@gmail.test"))
            .to(d.imaps_url(DST))
            .passwords(&d)
            .ca(&d)
            .state(d.dir.path().join("state.sqlite"))
            .args(["--allow-plaintext", "--json"])
            .run()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = subjects(&d);
    let want: std::collections::BTreeMap<String, Vec<String>> = [
        ("INBOX", vec!["one inbox important", "two inbox starred"]),
        ("Receipts", vec!["three receipts"]),
        ("Sent", vec!["six sent"]),
        ("Archive", vec!["five archived important", "four archived"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(got, want, "{}", text(&out));
    let snap = d.snapshot(DST);
    let starred = snap.0["INBOX"]
        .iter()
        .find(|m| m.subject().contains("starred"))
        .unwrap();
    assert!(
        starred.flags.iter().any(|f| f == "\\Flagged"),
        "{:?}",
        starred.flags
    );
    let all = text(&out);
    assert!(
        all.contains("Important: left out") && all.contains("Starred: left out"),
        "the views are named: {all}"
    );
    assert!(all.contains("archived mail"), "{all}");
    // Nothing again.
    let again = run();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(subjects(&d), want, "a second run copies nothing");
}

/// Microsoft 365: Calendar, Contacts, Tasks, Notes and Sync Issues (with
/// children) are not mail: left out and named; the mail folders move, Microsoft's
/// names for Sent, Deleted and Junk landing in the target's own.
#[test]
fn a_microsoft_account_moves_without_its_non_mail_folders() {
    let d = Dovecot::start(&[DST]);
    let one = |n: u32, s: &str| vec![FakeMsg::new(1, &msg(n, s))];
    let boxes = vec![
        FakeBox::new("INBOX", one(1, "inbox")),
        FakeBox::new("Sent Items", one(2, "sent")),
        FakeBox::new("Deleted Items", one(3, "deleted")),
        FakeBox::new("Junk Email", one(4, "junk")),
        FakeBox::new("Projects", one(5, "project")),
        FakeBox::new("Calendar", vec![]),
        FakeBox::new("Calendar/Birthdays", vec![]),
        FakeBox::new("Contacts", vec![]),
        FakeBox::new("Tasks", vec![]),
        FakeBox::new("Notes", one(6, "a note item")),
        FakeBox::new("Sync Issues", vec![]),
        FakeBox::new("Sync Issues/Conflicts", vec![]),
    ];
    let fake = FakeImap::start(boxes);
    let out = Run::new("migrate")
        .from(fake.url("anna@contoso.test"))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--allow-plaintext"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = subjects(&d);
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["INBOX", "Junk", "Projects", "Sent", "Trash"],
        "{}",
        text(&out)
    );
    let folders: Vec<String> = d.snapshot(DST).0.into_keys().collect();
    for gone in ["Calendar", "Contacts", "Tasks", "Notes", "Sync Issues"] {
        assert!(
            !folders.iter().any(|f| f.starts_with(gone)),
            "{gone} was created: {folders:?}"
        );
        assert!(
            text(&out).contains(&format!("{gone}: left out")),
            "{}",
            text(&out)
        );
    }
}

fn gmail_run(d: &Dovecot, extra: &[&str]) -> std::process::Output {
    gmail_run_with(d, gmail_boxes(), extra, &[])
}

fn gmail_run_with(
    d: &Dovecot,
    boxes: Vec<FakeBox>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let fake = FakeImap::start(boxes).with(|s| {
        s.caps = "IMAP4rev1 UIDPLUS NAMESPACE X-GM-EXT-1 SPECIAL-USE".into();
    });
    Run::new("migrate")
        .from(fake.url("anna@gmail.test"))
        .to(d.imaps_url(DST))
        .passwords(d)
        .ca(d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--allow-plaintext", "--json"])
        .args(extra)
        .command()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn archive_dovecot() -> Dovecot {
    Dovecot::start_with(
        &[DST],
        Config {
            archive: Some("Archive"),
            ..Config::default()
        },
    )
}

/// With several connection pairs, each connection knows All Mail for what it is:
/// Archive still gets only the unlabelled messages (a connection opened for a
/// parallel copy used to read All Mail whole).
#[test]
fn with_parallel_connections_all_mail_still_gives_only_archived_mail() {
    let d = archive_dovecot();
    // A large INBOX keeps the first connection busy, so the others take the
    // folders after it (All Mail among them).
    let mut boxes = gmail_boxes();
    let inbox = r#"("\\Inbox")"#;
    boxes[0] = FakeBox::new(
        "INBOX",
        (1..=600)
            .map(|n| gm(n, 100 + n, &format!("inbox {n}"), inbox, r"(\Seen)"))
            .collect(),
    );
    // Listings not kept from planning: each connection lists its folder itself.
    let out = gmail_run_with(
        &d,
        boxes,
        &["--connections", "4"],
        &[("MAILFERRY_KEEP_LISTED", "0")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = subjects(&d);
    assert_eq!(
        got.get("Archive"),
        Some(&vec![
            "five archived important".to_string(),
            "four archived".to_string()
        ]),
        "Archive"
    );
    assert_eq!(got["INBOX"].len(), 600);
    assert_eq!(
        got.values().map(Vec::len).sum::<usize>(),
        600 + 4,
        "{:?}",
        got.keys()
    );
}

/// `--from-preset none`: the Gmail account is copied as the folder tree IMAP shows,
/// views and All Mail included; `--from-preset gmail` is what detection does.
#[test]
fn the_preset_can_be_forced_or_turned_off() {
    let d = archive_dovecot();
    let out = gmail_run(&d, &["--from-preset", "none"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = subjects(&d);
    let folders: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        folders,
        [
            "INBOX",
            "Receipts",
            "Sent",
            "[Gmail]/All Mail",
            "[Gmail]/Important",
            "[Gmail]/Starred"
        ],
        "{got:?}"
    );
    assert_eq!(got["[Gmail]/All Mail"].len(), 6);

    let d = archive_dovecot();
    let out = gmail_run(&d, &["--from-preset", "gmail"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = subjects(&d);
    assert_eq!(got.get("Archive").map(Vec::len), Some(2), "{got:?}");
    assert!(!got.contains_key("[Gmail]/Important"), "{got:?}");
}

/// Gmail as the source ends the session with `BYE [THROTTLED]` once a few kilobytes
/// of bodies went out (its bandwidth cap, small here): the run reconnects after
/// waiting, resumes, and the target gets every message once, in its label folders.
#[test]
fn a_gmail_source_that_throttles_after_some_bytes_is_waited_out() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let d = archive_dovecot();
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let tripped = std::sync::Arc::new(AtomicBool::new(false));
    let mut boxes = gmail_boxes();
    let inbox = r#"("\\Inbox")"#;
    boxes[0] = FakeBox::new(
        "INBOX",
        (1..=60)
            .map(|n| gm(n, 100 + n, &format!("inbox {n}"), inbox, r"(\Seen)"))
            .collect(),
    );
    let (count, trip) = (sent.clone(), tripped.clone());
    let fake = FakeImap::start(boxes).with(move |s| {
        s.caps = "IMAP4rev1 UIDPLUS NAMESPACE X-GM-EXT-1 SPECIAL-USE".into();
        s.hook = Some(std::sync::Arc::new(
            move |c: &Cmd, stream: &mut std::net::TcpStream| {
                use std::io::Write;
                let body = c.name == "UID FETCH" && c.raw.windows(4).any(|w| w == b"BODY");
                // About 90 bytes a message, 10 a batch: the cap is hit on the third.
                if body
                    && count.fetch_add(900, Ordering::SeqCst) >= 1800
                    && !trip.swap(true, Ordering::SeqCst)
                {
                    // As Gmail does: BYE, then the connection is closed.
                    let _ = stream.write_all(
                        b"* BYE [THROTTLED] Account exceeded command or bandwidth limits\r\n",
                    );
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return Some(Vec::new());
                }
                None
            },
        ));
    });
    let out = Run::new("migrate")
        .from(fake.url("anna@gmail.test"))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args([
            "--allow-plaintext",
            "--json",
            "--retries",
            "0",
            "--retry-wait",
            "1",
        ])
        .command()
        .env("MAILFERRY_BATCH_COUNT", "10")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(tripped.load(Ordering::SeqCst), "the throttle was hit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[THROTTLED]")
            && err.contains("waiting")
            && err.contains("(it named no time)"),
        "{err}"
    );
    let got = subjects(&d);
    assert_eq!(got["INBOX"].len(), 60, "every INBOX message once");
    assert_eq!(
        got.get("Archive").map(Vec::len),
        Some(2),
        "{:?}",
        got.keys()
    );
    assert_eq!(got.get("Receipts").map(Vec::len), Some(1));
    assert_eq!(got.get("Sent").map(Vec::len), Some(1));
}

/// `--gmail-labels keyword`: each message once — in INBOX or Sent where Gmail has
/// it, else in Archive — with its user labels as keywords; no label folders.
#[test]
fn gmail_labels_as_keywords_put_each_message_once() {
    let d = archive_dovecot();
    let one = r#"("\\Inbox" "Work")"#;
    let boxes = vec![
        FakeBox::new("INBOX", vec![gm(1, 1, "one inbox work", one, r"(\Seen)")]),
        FakeBox::new("Work", vec![gm(1, 1, "one inbox work", one, r"(\Seen)")]),
        FakeBox::new(
            "Receipts",
            vec![gm(
                1,
                3,
                "three receipts",
                r#"("Receipts" "My Label")"#,
                r"(\Seen)",
            )],
        ),
        FakeBox::new("[Gmail]", vec![]).attrs(r"\Noselect \HasChildren"),
        FakeBox::new(
            "[Gmail]/All Mail",
            vec![
                gm(1, 1, "one inbox work", one, r"(\Seen)"),
                gm(
                    2,
                    3,
                    "three receipts",
                    r#"("Receipts" "My Label")"#,
                    r"(\Seen)",
                ),
                gm(3, 4, "four archived", "()", r"()"),
                gm(4, 6, "six sent", r#"("\\Sent")"#, r"(\Seen)"),
            ],
        )
        .attrs(r"\All \HasNoChildren"),
        FakeBox::new(
            "[Gmail]/Sent Mail",
            vec![gm(1, 6, "six sent", r#"("\\Sent")"#, r"(\Seen)")],
        )
        .attrs(r"\Sent \HasNoChildren"),
    ];
    let out = gmail_run_with(&d, boxes, &["--gmail-labels", "keyword"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = subjects(&d);
    let want: std::collections::BTreeMap<String, Vec<String>> = [
        ("INBOX", vec!["one inbox work"]),
        ("Sent", vec!["six sent"]),
        ("Archive", vec!["four archived", "three receipts"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(got, want, "{}", text(&out));
    let snap = d.snapshot(DST);
    let flags = |folder: &str, subject: &str| {
        snap.0[folder]
            .iter()
            .find(|m| m.subject().contains(subject))
            .unwrap()
            .flags
            .clone()
    };
    assert_eq!(flags("INBOX", "one"), vec!["Work", "\\Seen"]);
    assert_eq!(
        flags("Archive", "three"),
        vec!["My_Label", "Receipts", "\\Seen"]
    );
    assert_eq!(flags("Archive", "four"), Vec::<String>::new());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("a Gmail label: its messages carry it as a keyword"),
        "{}",
        text(&out)
    );
}

/// A label hidden from IMAP (Gmail's "Show in IMAP" unticked) has no folder: a
/// message carrying only it is copied from All Mail into Archive, not lost between
/// the two.
#[test]
fn a_message_whose_only_label_is_hidden_comes_from_all_mail() {
    let d = archive_dovecot();
    let boxes = vec![
        FakeBox::new(
            "INBOX",
            vec![gm(1, 1, "one inbox", r#"("\\Inbox")"#, r"(\Seen)")],
        ),
        FakeBox::new("[Gmail]", vec![]).attrs(r"\Noselect \HasChildren"),
        FakeBox::new(
            "[Gmail]/All Mail",
            vec![
                gm(1, 1, "one inbox", r#"("\\Inbox")"#, r"(\Seen)"),
                gm(2, 7, "seven hidden label", r#"("Hidden")"#, r"(\Seen)"),
            ],
        )
        .attrs(r"\All \HasNoChildren"),
    ];
    let out = gmail_run_with(&d, boxes, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = subjects(&d);
    assert_eq!(
        got.get("Archive"),
        Some(&vec!["seven hidden label".to_string()]),
        "{got:?}"
    );
    assert_eq!(
        got.get("INBOX"),
        Some(&vec!["one inbox".to_string()]),
        "{got:?}"
    );
}

/// Microsoft 365 told by its greeting: an account showing only one of its non-mail
/// folders (too few to tell it by its folders) still has that folder left out.
#[test]
fn a_microsoft_account_is_recognised_by_its_greeting() {
    let run = |greeting: Option<&str>| {
        let d = Dovecot::start(&[DST]);
        let boxes = vec![
            FakeBox::new("INBOX", vec![FakeMsg::new(1, &msg(1, "inbox"))]),
            FakeBox::new("Calendar", vec![FakeMsg::new(1, &msg(2, "an appointment"))]),
        ];
        let greeting = greeting.map(|g| g.as_bytes().to_vec());
        let fake = FakeImap::start(boxes).with(move |s| {
            if let Some(g) = &greeting {
                s.greeting = Some(g.clone());
            }
        });
        let out = Run::new("migrate")
            .from(fake.url("anna@contoso.test"))
            .to(d.imaps_url(DST))
            .passwords(&d)
            .ca(&d)
            .state(d.dir.path().join("state.sqlite"))
            .args(["--allow-plaintext"])
            .run();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        subjects(&d).into_keys().collect::<Vec<_>>()
    };
    assert_eq!(
        run(Some("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] The Microsoft Exchange IMAP4 service is ready.\r\n")),
        ["INBOX"]
    );
    assert_eq!(
        run(None),
        ["Calendar", "INBOX"],
        "a plain server keeps its Calendar"
    );
}
