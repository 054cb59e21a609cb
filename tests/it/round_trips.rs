//! No step waits a round trip per message or per small batch (issue 16): over a
//! WAN link each one costs tens of milliseconds. The commands a step sends are
//! counted in the `-vv` trace of runs against a real Dovecot, and the copies
//! checked as users check them.

use crate::common::*;

const SRC: &str = "anna@source.test";
const DST: &str = "anna@target.test";

/// How many commands of side `who` ("source", "target") in a `-vv` trace contain `what`.
fn commands(err: &str, who: &str, what: &str) -> usize {
    let prefix = format!("{who} C: ");
    err.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(what))
        .count()
}

/// A migrate of `d`'s SRC into DST with batches of `batch` messages, `-vv`.
fn migrate(d: &Dovecot, state: &str, batch: usize) -> std::process::Output {
    Run::migrate_within(d, SRC, DST)
        .state(d.dir.path().join(state))
        .args(["--json", "-vv", "--connections", "1"])
        .command()
        .env("MAILFERRY_BATCH_COUNT", batch.to_string())
        .output()
        .unwrap()
}

/// A run whose index is lost (a new `--state`) finds every message on the target
/// by hashing the target's candidates: one FETCH of bodies per batch, not one per
/// message, and nothing appended again.
#[test]
fn a_lost_index_checks_the_target_once_per_batch_not_once_per_message() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "60", "--folder", "INBOX", "--seed", "r"],
    );
    let first = migrate(&d, "first.sqlite", 250);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let copied = d.snapshot(DST);
    assert_same(&copied, &d.snapshot(SRC));

    let again = migrate(&d, "lost.sqlite", 20);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(json(&again)["copied"].as_u64(), Some(0), "{}", text(&again));
    assert_same(&d.snapshot(DST), &copied);
    let err = String::from_utf8_lossy(&again.stderr);
    let fetches = commands(&err, "target", "(UID BODY.PEEK[])");
    assert!(
        (1..=3).contains(&fetches),
        "60 messages in batches of 20: one FETCH of the target's candidates per batch, not per message; got {fetches}"
    );
}

/// What the target stored is checked (sizes, and the bytes of messages a server
/// may change) once for several batches, not after each one: 60 messages in
/// batches of 10 take one size check, and the copy is exact.
#[test]
fn the_stored_check_runs_once_for_several_batches() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "60", "--folder", "INBOX", "--seed", "s"],
    );
    let out = migrate(&d, "state.sqlite", 10);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&d.snapshot(DST), &d.snapshot(SRC));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        commands(&err, "target", "APPEND") >= 6,
        "batches of 10: {err:.3000}"
    );
    let checks = commands(&err, "target", "(UID RFC822.SIZE)");
    assert_eq!(checks, 1, "one size check for the six batches");
}

/// The longest run of `who`'s commands in a `-vv` trace sent before an answer of
/// that side came back: 1 when every command waits for its answer.
fn longest_burst(err: &str, who: &str, what: &str) -> usize {
    let (sent, answer) = (format!("{who} C: "), format!("{who} S: "));
    let (mut run, mut most) = (0, 0);
    for l in err.lines() {
        if l.starts_with(&sent) && l.contains(what) {
            run += 1;
            most = most.max(run);
        } else if l.starts_with(&answer) {
            run = 0;
        }
    }
    most
}

/// A POP3 source (Dovecot announces PIPELINING) is read a window of commands at
/// a time, not one round trip per message, and every message arrives whole.
#[test]
fn a_pop3_source_is_read_a_window_of_messages_at_a_time() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "40", "--folder", "INBOX", "--seed", "p"],
    );
    let out = Run::new("migrate")
        .from(format!("pop3s://{SRC}@localhost:{}", d.pop3s))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--json", "-vv"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let burst = longest_burst(&err, "source", "TOP ");
    assert!(
        burst >= 20,
        "40 messages: their TOP commands go out together, not one per answer; longest burst {burst}"
    );
    let bodies = |s: &Snapshot| {
        let mut v: Vec<Vec<u8>> = s.0["INBOX"].iter().map(|m| m.body.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(bodies(&d.snapshot(DST)), bodies(&d.snapshot(SRC)));
    assert_eq!(d.snapshot(DST).0["INBOX"].len(), 40);
}

/// Over a link with a round trip (30 ms through `scripts/wanproxy.py`), choosing
/// the pairs costs no NOOP (the round trip is read off the commands already sent),
/// and the other pairs log in while the folders are planned, not after; the copy
/// is exact.
#[test]
fn the_other_pairs_log_in_while_planning_and_no_noop_measures_the_link() {
    let d = Dovecot::start(&[SRC, DST]);
    for f in ["INBOX", "Archive", "Lists", "Work"] {
        d.seed_args(SRC, &["--generate", "30", "--folder", f, "--seed", f]);
    }
    let wan = Wan::start(d.dir.path(), d.imaps, 30);
    let out = Run::new("migrate")
        .from(format!("imaps://{SRC}@127.0.0.1:{}", wan.port))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--json", "-vv"])
        .command()
        .env("MAILFERRY_BATCH_COUNT", "10")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&d.snapshot(DST), &d.snapshot(SRC));
    let err = String::from_utf8_lossy(&out.stderr);
    let noops = commands(&err, "source", "NOOP") + commands(&err, "target", "NOOP");
    assert_eq!(noops, 0, "the round trip costs no command of its own");
    let lines: Vec<&str> = err.lines().collect();
    let planned = lines
        .iter()
        .rposition(|l| l.contains(" not yet copied"))
        .unwrap_or_else(|| panic!("no plan said: {err:.3000}"));
    let logins = lines[..planned]
        .iter()
        .filter(|l| l.starts_with("source C: ") && l.contains("AUTHENTICATE"))
        .count();
    assert!(
        logins >= 2,
        "besides the first, other pairs logged in while the folders were planned: {logins}"
    );
}

/// The stored check asks for the sizes of what was stored and the bytes of the
/// messages a server may change (8-bit header bytes, no final line end: the
/// fixtures have both) in one round trip: both FETCH commands go out before the
/// first answer. The copy is exact.
#[test]
fn sizes_and_bytes_of_the_stored_check_go_out_together() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let out = migrate(&d, "state.sqlite", 250);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The fixtures' identical copies within a folder are stored once.
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let together = lines.windows(2).any(|w| {
        w[0].starts_with("target C: ")
            && w[0].contains("(UID RFC822.SIZE)")
            && w[1].starts_with("target C: ")
            && w[1].contains("(UID BODY.PEEK[])")
    });
    assert!(together, "{err:.4000}");
}

/// A folder of one listing page (up to 2,000 messages) is listed with one
/// `UID FETCH 1:*`, without a UID SEARCH first; a folder of more pages, and an
/// empty one (a server may say EXISTS 0 and hold mail), still SEARCH first.
#[test]
fn a_folder_of_one_listing_page_is_listed_without_search() {
    let d = Dovecot::start(&[SRC, DST]);
    for f in ["INBOX", "Archive"] {
        d.seed_args(SRC, &["--generate", "30", "--folder", f, "--seed", f]);
    }
    let out = migrate(&d, "state.sqlite", 250);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&d.snapshot(DST), &d.snapshot(SRC));
    let err = String::from_utf8_lossy(&out.stderr);
    let searches: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("source C: ") && l.contains("UID SEARCH"))
        .collect();
    // Only the empty special folders (Drafts, Junk, Sent, Trash) are searched.
    let empty = err
        .lines()
        .filter(|l| l.contains(": 0 messages, 0 not yet copied"))
        .count();
    assert_eq!(searches.len(), empty, "{searches:?}");
    assert!(commands(&err, "source", "UID FETCH 1:* (UID RFC822.SIZE") >= 2);
}

/// The source (here 80 ms away) and the target are connected side by side, not
/// one after the other: the target's login goes out before the source's login is
/// answered. A folder created on the target goes out with its SUBSCRIBE in one
/// write, and is subscribed.
#[test]
fn both_sides_connect_at_once_and_create_goes_with_subscribe() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(SRC, &["--generate", "5", "--folder", "Work", "--seed", "w"]);
    let wan = Wan::start(d.dir.path(), d.imaps, 80);
    let out = Run::new("migrate")
        .from(format!("imaps://{SRC}@127.0.0.1:{}", wan.port))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--json", "-vv", "--connections", "1"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&d.snapshot(DST), &d.snapshot(SRC));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let at = |p: &dyn Fn(&str) -> bool| lines.iter().position(|l| p(l));
    let target_login = at(&|l| l.starts_with("target C: M0001 AUTHENTICATE"));
    let source_logged_in = at(&|l| l.starts_with("source S: M0001 OK"));
    assert!(
        matches!((target_login, source_logged_in), (Some(t), Some(s)) if t < s),
        "the target's login waited for the source's: {err:.3000}"
    );
    let together = lines.windows(2).any(|w| {
        w[0].starts_with("target C: ")
            && w[0].contains("CREATE \"Work\"")
            && w[1].starts_with("target C: ")
            && w[1].contains("SUBSCRIBE \"Work\"")
    });
    assert!(together, "{err:.4000}");
    assert!(
        d.subscribed(DST).contains(&"Work".to_string()),
        "{:?}",
        d.subscribed(DST)
    );
}
