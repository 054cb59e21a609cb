//! Rate caps against a real Dovecot: a capped run copies everything, and it is
//! never faster than its cap allows (a lower bound only: how fast mailferry is
//! otherwise is measured by the benchmark, not here).

use std::time::Instant;

use crate::common::*;

const SRC: &str = "anna@source.test";
const DST: &str = "anna@target.test";

/// 30 fixture messages in batches of 2 at 10 messages a second: at least 2.8 s
/// (the first batch goes at once), and every message arrives once.
#[test]
fn an_account_cap_paces_the_copy_and_loses_nothing() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let started = Instant::now();
    let out = Run::new("migrate")
        .from(d.imaps_url(SRC))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--max-msgs-per-sec", "10", "--json"])
        .command()
        .env("MAILFERRY_BATCH_COUNT", "2")
        .output()
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
    let messages = manifest().len() as f64;
    assert!(
        took >= (messages - 2.0) / 10.0,
        "{messages} messages at 10/s took {took:.2}s"
    );
}

/// Two accounts of one source host under `--host-max-bytes-per-sec 1M`, run side by
/// side: together they read about 6.2 MB, of which only the very first batch (two
/// small messages) goes at once, so the batch takes at least about 5.9 s. A cap of
/// 1M for each account alone would let the two run side by side in about 3 s
/// (each account's 3.1 MB less its first batch).
#[test]
fn a_host_cap_is_shared_by_the_accounts_of_a_batch() {
    let (a, b, t1, t2) = (
        "anna@source.test",
        "bert@source.test",
        "anna@target.test",
        "bert@target.test",
    );
    let d = Dovecot::start(&[a, b, t1, t2]);
    d.seed(a);
    d.seed(b);
    let pw = format!("file:{}", d.pwfile().display());
    let csv = d.dir.path().join("accounts.csv");
    std::fs::write(
        &csv,
        format!(
            "source;source_user;source_password;target;target_user;target_password\n\
             imaps://localhost:{i};{a};{pw};localhost:{i};{t1};{pw}\n\
             imaps://localhost:{i};{b};{pw};localhost:{i};{t2};{pw}\n",
            i = d.imaps
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Run::new("batch")
        .arg(&csv)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--jobs", "2", "--host-max-bytes-per-sec", "1M"])
        .command()
        .env("MAILFERRY_BATCH_COUNT", "2")
        .output()
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let want = expected(|f| f.to_string());
    assert_same(&d.snapshot(t1), &want);
    assert_same(&d.snapshot(t2), &want);
    let bytes: usize = want
        .0
        .values()
        .flatten()
        .map(|m| m.body.len())
        .sum::<usize>()
        * 2;
    // Only the very first batch goes free: at most two messages of 100 KB.
    let floor = (bytes as f64 - 200_000.0) / (1 << 20) as f64;
    let alone = (bytes as f64 / 2.0) / (1 << 20) as f64;
    assert!(
        floor > alone + 2.0,
        "a shared cap must be told from one per account: {bytes} bytes"
    );
    assert!(took >= floor, "{bytes} bytes at 1 MiB/s took {took:.2}s");
}

/// Bad caps are refused before anything runs, naming the flag.
#[test]
fn bad_caps_are_named() {
    for (args, want) in [
        (
            &["--max-bytes-per-sec", "fast"][..],
            "--max-bytes-per-sec: \"fast\" is not a rate",
        ),
        (
            &["--max-msgs-per-sec", "0"][..],
            "--max-msgs-per-sec must be at least 1",
        ),
    ] {
        let mut argv = vec![
            "migrate",
            "--from",
            "imaps://a@127.0.0.1:1",
            "--to",
            "imaps://b@127.0.0.1:1",
        ];
        argv.extend_from_slice(args);
        let out = mailferry(&argv);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{}",
            text(&out)
        );
    }
}
