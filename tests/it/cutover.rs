//! The cutover: copy first, let the source change (flags read, set and cleared,
//! keywords, a message deleted, one moved to another folder), then a last delta
//! pass. The re-run leaves the target equal to the source; `--sync-deletes` removes
//! only mailferry's own copies of what is gone, and a message mailferry did not
//! copy survives. Changes on the source are made with Python's imaplib, and the
//! results read back with the independent reader.

use std::path::Path;
use std::process::Output;

use crate::common::*;

const SRC: &str = "anna@source.test";
const DST: &str = "anna@target.test";

fn migrate(src: &Dovecot, dst: &Dovecot, state: &Path, extra: &[&str]) -> Output {
    Run::migrate_between(src, SRC, dst, DST)
        .state(state)
        .args(extra)
        .run()
}

/// Run Python imaplib statements against `user` (logged in as `im`, nothing selected).
fn imaplib(d: &Dovecot, user: &str, code: &str) {
    let script = format!(
        "import imaplib, ssl, sys\n\
         ctx = ssl.create_default_context(cafile={ca:?})\n\
         im = imaplib.IMAP4_SSL('localhost', {port}, ssl_context=ctx)\n\
         im.login({user:?}, open({pw:?}).read().strip())\n\
         def ok(r):\n    assert r[0] == 'OK', r\n    return r\n\
         {code}\n\
         im.logout()\n",
        ca = d.ca().display().to_string(),
        port = d.imaps,
        pw = d.pwfile().display().to_string(),
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "imaplib: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the target should hold: the source as it is, identical copies within a
/// folder collapsed (the first one's flags win), plus `extra` in INBOX.
fn source_as_target(src: &Snapshot, extra: Option<&Msg>) -> Snapshot {
    let mut want = Snapshot(Default::default());
    for (folder, msgs) in &src.0 {
        let mut kept: Vec<Msg> = Vec::new();
        for m in msgs {
            if !kept.iter().any(|k| k.body == m.body) {
                kept.push(m.clone());
            }
        }
        want.0.insert(folder.clone(), kept);
    }
    if let Some(m) = extra {
        want.0.get_mut("INBOX").unwrap().push(m.clone());
    }
    for v in want.0.values_mut() {
        v.sort();
    }
    want
}

#[test]
fn the_delta_pass_carries_flags_and_deletions_and_spares_foreign_messages() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start(&[DST]);
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let out = migrate(&src, &dst, &state, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // On the target: a message mailferry did not copy, and a keyword the user set
    // on a copy whose source flags do not change.
    imaplib(
        &dst,
        DST,
        "ok(im.append('INBOX', '(\\\\Seen)', imaplib.Time2Internaldate(1700000000), b'From: x@y\\r\\nSubject: foreign\\r\\n\\r\\nnot copied by mailferry\\r\\n'))\n\
         ok(im.select('Sent'))\n\
         ok(im.uid('STORE', '1', '+FLAGS', '($TargetOnly)'))",
    );
    // On the source: INBOX UID 1 loses \Seen and gains \Flagged; UID 2 is read and
    // gets a keyword; UID 3 is deleted; UID 5 moves to Projects; Sent is untouched.
    imaplib(
        &src,
        SRC,
        "ok(im.select('INBOX'))\n\
         ok(im.uid('STORE', '1', '-FLAGS', '(\\\\Seen)'))\n\
         ok(im.uid('STORE', '1', '+FLAGS', '(\\\\Flagged)'))\n\
         ok(im.uid('STORE', '2', '+FLAGS', '(\\\\Seen Later)'))\n\
         ok(im.uid('COPY', '5', 'Projects'))\n\
         ok(im.uid('STORE', '3,5', '+FLAGS', '(\\\\Deleted)'))\n\
         ok(im.expunge())",
    );

    // A dry run says what would change, and changes nothing.
    let before = dst.snapshot(DST);
    let out = migrate(&src, &dst, &state, &["--dry-run", "--sync-deletes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("flags would be set on the target as changed on the source: 2 messages"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "would be removed from the target (gone from the source, --sync-deletes): 2 messages"
        ),
        "{stdout}"
    );
    assert_eq!(dst.snapshot(DST), before, "a dry run writes nothing");

    // The delta pass.
    let out = migrate(&src, &dst, &state, &["--json", "--sync-deletes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(j["flags_updated"], 2, "{j}");
    assert_eq!(j["removed_on_target"], 2, "{j}");
    assert_eq!(j["copied"], 1, "the moved message, in Projects: {j}");

    let foreign = dst
        .snapshot(DST)
        .0
        .get("INBOX")
        .unwrap()
        .iter()
        .find(|m| m.body.ends_with(b"not copied by mailferry\r\n"))
        .cloned()
        .expect("the foreign message survives");
    let mut want = source_as_target(&src.snapshot(SRC), Some(&foreign));
    // The keyword the user set on the target stays: the source did not change it.
    let sent = want.0.get_mut("Sent").unwrap();
    let first_sent = dst.snapshot(DST).0["Sent"]
        .iter()
        .find(|m| m.flags.contains(&"$TargetOnly".to_string()))
        .cloned()
        .expect("the target-only keyword is kept");
    let i = sent.iter().position(|m| m.body == first_sent.body).unwrap();
    sent[i].flags = first_sent.flags.clone();
    assert_same(&dst.snapshot(DST), &want);

    // A third run has nothing left to do.
    let out = migrate(&src, &dst, &state, &["--json", "--sync-deletes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (
            j["copied"].as_u64(),
            j.get("flags_updated"),
            j.get("removed_on_target")
        ),
        (Some(0), None, None),
        "{j}"
    );
    assert_same(&dst.snapshot(DST), &want);
}

/// Without `--sync-deletes` nothing is removed from the target, but flags still
/// follow the source; a message still on the source in duplicate keeps its copy.
#[test]
fn without_sync_deletes_nothing_is_removed_and_a_remaining_duplicate_keeps_its_copy() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start(&[DST]);
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let out = migrate(&src, &dst, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let copied = dst.snapshot(DST);
    // INBOX holds the fixture 07 twice (an exact duplicate, copied once): delete
    // the first of the two on the source, and another message.
    let inbox = &src.snapshot(SRC).0["INBOX"];
    let dup = inbox
        .iter()
        .find(|m| inbox.iter().filter(|n| n.body == m.body).count() == 2)
        .expect("the fixture holds an exact duplicate")
        .clone();
    let uids = find_uids(&src, SRC, "INBOX", &dup.body);
    assert_eq!(uids.len(), 2);
    imaplib(
        &src,
        SRC,
        &format!(
            "ok(im.select('INBOX'))\n\
             ok(im.uid('STORE', '{},4', '+FLAGS', '(\\\\Deleted)'))\n\
             ok(im.expunge())",
            uids[0]
        ),
    );
    let out = migrate(&src, &dst, &state, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out).get("removed_on_target"), None);
    assert_eq!(
        dst.snapshot(DST),
        copied,
        "nothing removed without --sync-deletes"
    );

    let out = migrate(&src, &dst, &state, &["--json", "--sync-deletes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["removed_on_target"], 1, "{}", text(&out));
    let got = dst.snapshot(DST);
    assert!(
        got.0["INBOX"].iter().any(|m| m.body == dup.body),
        "the duplicate still on the source keeps its copy"
    );
    assert_same(&got, &source_as_target(&src.snapshot(SRC), None));
}

/// The UIDs of the messages of `folder` whose body is `body` (read with imaplib).
fn find_uids(d: &Dovecot, user: &str, folder: &str, body: &[u8]) -> Vec<u32> {
    let dir = tempfile::tempdir().unwrap();
    let want = dir.path().join("body");
    std::fs::write(&want, body).unwrap();
    let out_file = dir.path().join("uids");
    imaplib(
        d,
        user,
        &format!(
            "ok(im.select({folder:?}, readonly=True))\n\
             want = open({want:?}, 'rb').read()\n\
             typ, data = ok(im.uid('FETCH', '1:*', '(BODY.PEEK[])'))\n\
             uids = [int(p[0].split(b'UID ')[1].split()[0]) for p in data if isinstance(p, tuple) and p[1] == want]\n\
             open({out:?}, 'w').write(' '.join(map(str, uids)))",
            want = want.display().to_string(),
            out = out_file.display().to_string(),
        ),
    );
    std::fs::read_to_string(out_file)
        .unwrap()
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect()
}

/// A message that was on the target before mailferry came (found there, so not its
/// copy), deleted on the source later: `--sync-deletes` leaves it on the target.
#[test]
fn a_message_found_on_the_target_is_never_removed() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start(&[DST]);
    src.seed(SRC);
    // The target holds INBOX's first fixture already (another tool put it there).
    let body = std::fs::read(root().join("fixtures/mail/01-plain-lf.eml")).unwrap();
    let body = crlf(&body);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.eml");
    std::fs::write(&file, &body).unwrap();
    imaplib(
        &dst,
        DST,
        &format!(
            "ok(im.append('INBOX', '(\\\\Seen)', imaplib.Time2Internaldate(1136196007), open({:?}, 'rb').read()))",
            file.display().to_string()
        ),
    );
    let state = src.dir.path().join("state.sqlite");
    let out = migrate(&src, &dst, &state, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        json(&out)["duplicates"].as_u64().unwrap() >= 1,
        "{}",
        text(&out)
    );
    // Deleted on the source; the target's own copy stays.
    let uids = find_uids(&src, SRC, "INBOX", &body);
    assert_eq!(uids.len(), 1);
    imaplib(
        &src,
        SRC,
        &format!(
            "ok(im.select('INBOX'))\n\
             ok(im.uid('STORE', '{}', '+FLAGS', '(\\\\Deleted)'))\n\
             ok(im.expunge())",
            uids[0]
        ),
    );
    let out = migrate(&src, &dst, &state, &["--json", "--sync-deletes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out).get("removed_on_target"), None, "{}", text(&out));
    let inbox = &dst.snapshot(DST).0["INBOX"];
    assert_eq!(inbox.iter().filter(|m| m.body == body).count(), 1);
}

/// Two source accounts moved into one target account: the second job finds every
/// message there already. A message deleted from the first source only keeps its
/// copy, which the second source still holds.
#[test]
fn a_copy_another_job_relies_on_is_kept() {
    let (a, b) = ("anna@source.test", "bert@source.test");
    let src = Dovecot::start(&[a, b]);
    let dst = Dovecot::start(&[DST]);
    src.seed(a);
    src.seed(b);
    let state = src.dir.path().join("state.sqlite");
    let run = |user: &str, extra: &[&str]| {
        Run::new("migrate")
            .from(src.imaps_url(user))
            .to(dst.imaps_url(DST))
            .from_password_file(src.pwfile())
            .to_password_file(dst.pwfile())
            .ca(&src)
            .state(&state)
            .arg("--json")
            .args(extra)
            .run()
    };
    for user in [a, b] {
        let out = run(user, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let before = dst.snapshot(DST);
    imaplib(
        &src,
        a,
        "ok(im.select('INBOX'))\n\
         ok(im.uid('STORE', '2', '+FLAGS', '(\\\\Deleted)'))\n\
         ok(im.expunge())",
    );
    let out = run(a, &["--sync-deletes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out).get("removed_on_target"), None, "{}", text(&out));
    assert_eq!(dst.snapshot(DST), before, "bert's source still holds it");
}

/// `--sync-deletes` from a POP3 source is refused before anything is written:
/// POP3 servers delete mail on their own schedule.
#[test]
fn sync_deletes_is_refused_for_a_pop3_source() {
    let src = Dovecot::start(&[SRC]);
    let dst = Dovecot::start(&[DST]);
    src.seed(SRC);
    let out = Run::new("migrate")
        .from(format!("pop3s://{SRC}@localhost:{}", src.pop3s))
        .to(dst.imaps_url(DST))
        .passwords(&src)
        .ca(&src)
        .state(src.dir.path().join("state.sqlite"))
        .arg("--sync-deletes")
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--sync-deletes does not work with pop3s://"),
        "{}",
        text(&out)
    );
    assert_eq!(dst.count(DST), 0);
}
