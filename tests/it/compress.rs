//! COMPRESS=DEFLATE (RFC 4978) against a real Dovecot with its imap_zlib plugin:
//! asked for where the server offers it and the link is not loopback (or with
//! `--compress yes`), both directions compressed, the copy exact, a connection cut
//! mid-stream resumed with nothing lost or doubled.

use crate::common::*;

const SRC: &str = "anna@source.test";
const DST: &str = "anna@target.test";

fn migrate(d: &Dovecot, from_port: u16, extra: &[&str]) -> std::process::Output {
    Run::new("migrate")
        .from(format!("imap://{SRC}@127.0.0.1:{from_port}"))
        .to(format!("imap://{DST}@127.0.0.1:{}", d.imap))
        .passwords(d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--allow-plaintext", "-vv", "--retry-wait", "1"])
        .args(extra)
        .run()
}

/// `--compress yes`: the source and the target connections both switch to DEFLATE
/// after login (the trace shows `COMPRESS DEFLATE` and nothing readable after it),
/// the wire carries fewer bytes than the protocol, and the target holds every
/// message byte for byte with its flags and INTERNALDATE.
#[test]
fn both_sides_compress_and_the_copy_is_exact() {
    let d = Dovecot::start_with(
        &[SRC, DST],
        Config {
            plaintext_only: true,
            ..Config::default()
        },
    );
    d.seed(SRC);
    // Text compresses well: 300 more messages of repetitive mail.
    d.seed_args(
        SRC,
        &["--generate", "300", "--folder", "Lists", "--seed", "z"],
    );
    let out = migrate(&d, d.imap, &["--compress", "yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source C: M") && err.contains("COMPRESS DEFLATE"),
        "the source asked: {err:.2000}"
    );
    assert!(
        err.contains("target: COMPRESS=DEFLATE on") && err.contains("source: COMPRESS=DEFLATE on"),
        "both sides: {}",
        err.lines()
            .filter(|l| l.contains("COMPRESS"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every COMPRESS=DEFLATE line of -v: "X MB received as Y MB, Z MB sent as W MB".
    let saved: Vec<(f64, f64, f64, f64)> = err
        .lines()
        .filter_map(|l| l.split("COMPRESS=DEFLATE: ").nth(1))
        .map(|l| {
            let n: Vec<f64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (n[0], n[1], n[2], n[3])
        })
        .collect();
    assert!(
        saved.len() >= 2,
        "a line per compressed connection: {saved:?}"
    );
    let (plain, wire): (f64, f64) = saved
        .iter()
        .fold((0.0, 0.0), |(p, w), s| (p + s.0 + s.2, w + s.1 + s.3));
    assert!(
        wire < plain * 0.8,
        "compressed: {wire} MB on the wire for {plain} MB of IMAP"
    );
    let mut want = expected(|f| f.to_string());
    want.0
        .extend(d.snapshot(SRC).0.into_iter().filter(|(k, _)| k == "Lists"));
    assert_same(&d.snapshot(DST), &want);
}

/// `--compress auto` (the default) leaves loopback alone; `--compress no` never asks.
#[test]
fn loopback_and_no_are_not_compressed() {
    let d = Dovecot::start_with(
        &[SRC, DST],
        Config {
            plaintext_only: true,
            ..Config::default()
        },
    );
    d.seed(SRC);
    for extra in [&[][..], &["--compress", "no"][..]] {
        let out = migrate(&d, d.imap, extra);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("COMPRESS DEFLATE"),
            "{extra:?}: not asked"
        );
    }
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
}

/// A compressed source connection cut in the middle of a body: the run reconnects
/// (compressed again, a fresh DEFLATE context) and ends exact, nothing doubled.
#[test]
fn a_compressed_connection_cut_mid_stream_resumes_exactly() {
    let d = Dovecot::start_with(
        &[SRC, DST],
        Config {
            plaintext_only: true,
            ..Config::default()
        },
    );
    d.seed(SRC);
    let proxy = FaultProxy::start(d.imap, Fault::CutAfterServerBytes(40_000));
    let out = migrate(&d, proxy.port, &["--compress", "yes", "--retries", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retrying"),
        "the cut was not hit: {}",
        text(&out)
    );
    assert!(proxy.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
}
