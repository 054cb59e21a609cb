//! Faults between mailferry and Dovecot (an in-process proxy cuts or stalls the
//! connection at chosen points): every run ends with the target equal to the source,
//! nothing lost and nothing twice. The server speaks plaintext here so the proxy can
//! see the protocol; mailferry is told `--allow-plaintext`.

use crate::common::*;

const SRC: &str = "fiona@source.test";
const DST: &str = "fiona@target.test";

fn plain() -> Dovecot {
    let d = Dovecot::start_with(
        &[SRC, DST],
        Config {
            plaintext_only: true,
            ..Config::default()
        },
    );
    d.seed(SRC);
    d
}

fn migrate(d: &Dovecot, src_port: u16, dst_port: u16, extra: &[&str]) -> std::process::Output {
    let mut run = Run::new("migrate")
        .from(format!("imap://{SRC}@127.0.0.1:{src_port}"))
        .to(format!("imap://{DST}@127.0.0.1:{dst_port}"))
        .passwords(d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--allow-plaintext", "--retry-wait", "1", "--json"]);
    if !extra.contains(&"--retries") {
        run = run.args(["--retries", "3"]);
    }
    run.args(extra).run()
}

fn check_recovered(d: &Dovecot, out: &std::process::Output, proxy: &FaultProxy) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retrying"),
        "the fault was not hit: {}",
        text(out)
    );
    assert!(proxy.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
}

#[test]
fn cut_inside_a_fetch_literal() {
    let d = plain();
    // The 3 MB message of INBOX is far beyond the first 600 kB the source sends.
    let p = FaultProxy::start(d.imap, Fault::CutAfterServerBytes(600_000));
    let out = migrate(&d, p.port, d.imap, &[]);
    check_recovered(&d, &out, &p);
}

#[test]
fn cut_inside_an_append_literal() {
    let d = plain();
    let p = FaultProxy::start(d.imap, Fault::CutAfterClientBytes(1_500_000));
    // With two connection pairs: a cut on one stops the copy, the retry resumes all.
    let out = migrate(&d, d.imap, p.port, &["--connections", "2"]);
    check_recovered(&d, &out, &p);
}

#[test]
fn cut_after_the_servers_ok_before_mailferry_reads_it() {
    let d = plain();
    // The 3rd APPEND command is stored by the server, but its tagged OK never arrives.
    let p = FaultProxy::start(d.imap, Fault::CutOnServerText("APPENDUID", 3));
    let out = migrate(&d, d.imap, p.port, &[]);
    check_recovered(&d, &out, &p);
}

#[test]
fn a_stalled_server_times_out_and_the_run_goes_on() {
    let d = plain();
    let p = FaultProxy::start(d.imap, Fault::StallAfterServerBytes(300_000));
    let out = migrate(&d, p.port, d.imap, &["--timeout", "2"]);
    check_recovered(&d, &out, &p);
}

#[test]
fn retries_are_bounded() {
    let d = plain();
    // Nothing listens here: every attempt fails, three retries, then exit 3.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = std::time::Instant::now();
    let out = migrate(&d, closed, d.imap, &["--retries", "2"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("retrying").count(), 2, "{err}");
    assert!(
        err.contains("giving up after 3 attempts (--retries 2)"),
        "{err}"
    );
    assert!(t.elapsed().as_secs() < 20);

    // Many retries allowed, but a 6 s --deadline: a refused connection waits four
    // times --retry-wait (4 s), which fits; the next wait (8 s) would not.
    let t = std::time::Instant::now();
    let out = migrate(&d, closed, d.imap, &["--retries", "50", "--deadline", "6"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("retrying").count(), 1, "{err}");
    assert!(
        err.contains("giving up: another attempt would end after --deadline (6s)"),
        "{err}"
    );
    assert!(t.elapsed().as_secs() < 15);
}

/// Dovecot is restarted in the middle of a run: whatever the open connections then
/// see (a BYE, a reset, nothing), the run finishes with nothing lost or doubled.
#[test]
fn dovecot_restarted_in_the_middle_of_a_run() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let mut child = Run::migrate_within(&d, SRC, DST)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--retries", "5", "--retry-wait", "1", "--json"])
        .command()
        .env("MAILFERRY_PAUSE_AFTER_APPENDS", "5")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The run pauses for 3 s after its 5th APPEND: restart the server as soon as it
    // says so, while its connections are open.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("pausing") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the run never reached its pause");
    d.restart();
    let out = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The restart cut the open connections: the run reconnected and resumed.
    assert!(
        err.contains("retrying"),
        "no reconnect after the restart: {err}"
    );
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
}

/// A server that accepts the connection and then says nothing, in the middle of the
/// TLS handshake: the handshake times out (--timeout), the run reconnects and
/// finishes. (Through TLS, so the proxy cannot see the protocol: it stalls the
/// first connection before the server's first byte.)
#[test]
fn a_tls_handshake_that_stalls_is_retried() {
    let d = Dovecot::start(&[SRC, DST]);
    d.seed(SRC);
    let p = FaultProxy::start(d.imaps, Fault::StallAfterServerBytes(0));
    let out = Run::new("migrate")
        .from(format!("imaps://{SRC}@localhost:{}", p.port))
        .to(d.imaps_url(DST))
        .passwords(&d)
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args(["--timeout", "2", "--retry-wait", "1", "--json"])
        .run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS handshake with localhost") && err.contains("timed out"),
        "{err}"
    );
    check_recovered(&d, &out, &p);
}

/// A server whose connection queue is full never completes the TCP handshake: the
/// connect is bounded by --timeout (and retried, then given up), so a dead server
/// never hangs a run.
#[test]
fn a_connect_that_never_completes_is_bounded_by_the_timeout() {
    use std::io::BufRead;
    // A listener with a queue of one, already taken: later SYNs are dropped.
    let mut server = std::process::Command::new("python3")
        .arg("-c")
        .arg("import socket,time\nl=socket.socket(); l.bind(('127.0.0.1',0)); l.listen(0)\nc=socket.create_connection(l.getsockname())\nprint(l.getsockname()[1], flush=True)\ntime.sleep(60)")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let d = plain();
    let t = std::time::Instant::now();
    let out = Run::new("migrate")
        .from(format!("imap://{SRC}@127.0.0.1:{port}"))
        .to(d.imap_url(DST))
        .passwords(&d)
        .state(d.dir.path().join("state.sqlite"))
        .args([
            "--allow-plaintext",
            "--timeout",
            "1",
            "--retries",
            "1",
            "--retry-wait",
            "1",
        ])
        .run();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{port}")) && err.contains("timed out"),
        "{err}"
    );
    assert_eq!(err.matches("retrying").count(), 1, "{err}");
    // Two attempts of 1 s and one wait of 4 s, not the system's minutes-long default.
    assert!(t.elapsed().as_secs() < 15, "{:?}", t.elapsed());
}
