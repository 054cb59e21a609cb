//! One large folder cut into UID-range parts over `--connections`: several
//! connection pairs copy into one target folder at once, and identical messages that
//! fall into different parts are still stored once. Checked against real Dovecot
//! with the independent reader: bytes, flags, INTERNALDATE, counts, no duplicate;
//! and after a crash in the middle, a rerun ends in the same state.

use std::collections::BTreeSet;
use std::process::Output;

use crate::common::*;

const SRC: &str = "gina@source.test";
const DST: &str = "gina@target.test";

/// INBOX of 3 × `n` synthetic messages: seeds A, B, then A again, so each of the
/// first `n` has an identical copy 2 × `n` UIDs later (another part).
fn seeded(n: usize) -> Dovecot {
    let d = Dovecot::start(&[SRC, DST]);
    for seed in ["split-a", "split-b", "split-a"] {
        d.seed_args(
            SRC,
            &[
                "--generate",
                &n.to_string(),
                "--folder",
                "INBOX",
                "--seed",
                seed,
            ],
        );
    }
    d
}

/// The source's INBOX as the target should hold it: each message once.
fn expected_inbox(d: &Dovecot) -> Snapshot {
    let mut snap = d.snapshot(SRC);
    snap.0.retain(|name, _| name == "INBOX");
    let inbox = snap.0.get_mut("INBOX").unwrap();
    inbox.dedup();
    snap
}

fn migrate(d: &Dovecot, env: &[(&str, &str)]) -> Output {
    let mut cmd = Run::migrate_within(d, SRC, DST)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--json", "-v", "--connections", "4"])
        .command();
    cmd.env("MAILFERRY_BATCH_COUNT", "20");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// The connection pairs that copied a part of INBOX, from the `-v` lines.
fn pairs_that_copied(out: &Output) -> BTreeSet<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("INBOX: part "))
        .filter(|l| !l.contains("): 0 copied"))
        .filter_map(|l| l.rsplit("connection pair ").next().map(str::to_string))
        .collect()
}

fn assert_copied_once(d: &Dovecot, n: usize) {
    let got = d.snapshot(DST);
    let want = expected_inbox(d);
    assert_eq!(want.0["INBOX"].len(), 2 * n);
    assert_same(&got, &want);
    // No message twice: every body on the target is distinct.
    let bodies: BTreeSet<&Vec<u8>> = got.0["INBOX"].iter().map(|m| &m.body).collect();
    assert_eq!(
        bodies.len(),
        got.0["INBOX"].len(),
        "a message is there twice"
    );
}

fn check_split(env: &[(&str, &str)]) {
    let n = 150;
    let d = seeded(n);
    let out = migrate(&d, env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut into 8 parts by UID"), "{err}");
    let pairs = pairs_that_copied(&out);
    assert!(pairs.len() > 1, "one pair copied everything: {err}");
    let j = json(&out);
    assert_eq!(j["copied"], 2 * n, "{j}");
    assert_eq!(j["duplicates"], n, "{j}");
    assert_copied_once(&d, n);

    // A second run has nothing to do.
    let out = migrate(&d, env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["copied"], 0);
    assert_copied_once(&d, n);
}

/// Planning kept the listing: the parts are cut from it.
#[test]
fn a_large_folder_is_copied_in_parts_by_several_pairs_and_nothing_twice() {
    check_split(&[]);
}

/// A folder listed again page by page as it is copied: the cuts are at UIDs
/// planning marked (the first of each batch), each part lists only its pages.
#[test]
fn a_large_folder_listed_page_by_page_is_cut_too() {
    check_split(&[
        ("MAILFERRY_LISTING_PAGE", "40"),
        ("MAILFERRY_KEEP_LISTED", "0"),
    ]);
}

/// A crash after some appends of the parallel parts (messages of every part in
/// flight), then a rerun: the same end state, nothing lost, nothing twice.
#[test]
fn a_crash_in_the_middle_of_a_split_copy_resumes_without_doubles() {
    let n = 150;
    let d = seeded(n);
    for (crash, page) in [("90", "40"), ("40", "1000")] {
        let out = migrate(
            &d,
            &[
                ("MAILFERRY_CRASH_AFTER_APPENDS", crash),
                ("MAILFERRY_LISTING_PAGE", page),
                ("MAILFERRY_KEEP_LISTED", "0"),
            ],
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("crash point reached"),
            "{}",
            text(&out)
        );
    }
    let out = migrate(&d, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_copied_once(&d, n);
}

/// Without `--connections`, the pairs are chosen from the measured round trip: over
/// a 30 ms link, as many as the work can use (up to 4), said with `-v`.
#[test]
fn without_connections_the_pairs_follow_the_round_trip() {
    let n = 40;
    let d = seeded(n);
    let wan = Wan::start(d.dir.path(), d.imaps, 30);
    let out = Run::new("migrate")
        .from(format!("imaps://{SRC}@127.0.0.1:{}", wan.port))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--json", "-v"])
        .command()
        .env("MAILFERRY_BATCH_COUNT", "10")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let chosen = err
        .lines()
        .find(|l| l.starts_with("connection pairs: "))
        .unwrap_or_else(|| panic!("the choice is not said: {err}"));
    assert!(
        chosen.starts_with("connection pairs: 4 (a round trip takes "),
        "{chosen}"
    );
    assert!(pairs_that_copied(&out).len() > 1, "{err}");
    assert_copied_once(&d, n);
}

/// `batch` without `--connections`: an account takes its share of the host's
/// connections — with one account left and `--max-per-host 4` on a server that is
/// both source and target (2 connections a pair), 2 pairs — and within it what its
/// 30 ms round trip can use. The other pair count is never exceeded.
#[test]
fn a_batch_account_alone_takes_its_share_of_the_host() {
    let n = 40;
    let d = seeded(n);
    let wan = Wan::start(d.dir.path(), d.imaps, 30);
    let csv = d.dir.path().join("one.csv");
    let pw = format!("file:{}", d.pwfile().display());
    std::fs::write(
        &csv,
        format!(
            "source;source_user;source_password;target;target_user;target_password\n\
             imaps://127.0.0.1:{};{SRC};{pw};localhost:{};{DST};{pw}\n",
            wan.port, d.imaps
        ),
    )
    .unwrap();
    let out = Run::new("batch")
        .arg(&csv)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["-v", "--max-per-host", "4"])
        .command()
        .env("MAILFERRY_BATCH_COUNT", "10")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let chosen = err
        .lines()
        .find(|l| l.starts_with("connection pairs: "))
        .unwrap_or_else(|| panic!("the choice is not said: {err}"));
    assert!(chosen.starts_with("connection pairs: 2 ("), "{chosen}");
    assert!(chosen.contains("else up to 2;"), "{chosen}");
    let pairs = pairs_that_copied(&out);
    assert!(pairs.len() == 2, "{pairs:?}: {err}");
    assert_copied_once(&d, n);
}

/// A folder the run creates on the target is not listed there (it holds only
/// what the run stores), yet cut into parts over several pairs its identical
/// messages are still stored once (the pairs' claims), also on a second run.
#[test]
fn a_new_target_folder_is_not_listed_and_its_parts_store_each_message_once() {
    let n = 150;
    let d = Dovecot::start(&[SRC, DST]);
    for seed in ["split-a", "split-b", "split-a"] {
        d.seed_args(
            SRC,
            &[
                "--generate",
                &n.to_string(),
                "--folder",
                "Big",
                "--seed",
                seed,
            ],
        );
    }
    for round in 0..2 {
        let out = Run::migrate_within(&d, SRC, DST)
            .state(d.dir.path().join("state.sqlite"))
            .args(["--json", "-vv", "--connections", "4"])
            .command()
            .env("MAILFERRY_BATCH_COUNT", "20")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        if round == 0 {
            assert!(err.contains("cut into 8 parts by UID"), "{err:.3000}");
            assert!(
                !err.lines()
                    .any(|l| l.starts_with("target C: ") && l.contains("HEADER.FIELDS")),
                "a folder created by this run is not listed on the target"
            );
            assert_eq!(json(&out)["copied"], 2 * n);
        } else {
            assert_eq!(json(&out)["copied"], 0);
        }
        let got = d.snapshot(DST);
        let mut want = d.snapshot(SRC);
        want.0.retain(|name, _| name == "Big");
        want.0.get_mut("Big").unwrap().dedup();
        assert_eq!(got.0["Big"].len(), 2 * n);
        assert_same(&got, &want);
    }
}
