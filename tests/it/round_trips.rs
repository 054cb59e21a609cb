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
