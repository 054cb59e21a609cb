//! Logins beyond a mailbox's own password, against real Dovecot instances: an
//! administrator (master user) logging in to a mailbox by SASL PLAIN with an
//! authorization identity, and OAuth2 access tokens from a token command sent with
//! XOAUTH2, checked by Dovecot at an introspection endpoint played by this test.
//! No secret of these (the admin password, a token) may show in any output, even
//! `-vv`, or in the index.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

const SRC: &str = "anna@source.test";
const DST: &str = "anna@target.test";
const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "Adm1n-master-PW-QUUX";

/// Every file of the index (the database and its journal files) as one text.
fn index_text(state: &Path) -> String {
    let dir = state.parent().unwrap();
    let name = state.file_name().unwrap().to_string_lossy().to_string();
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with(&name) {
            all.extend(std::fs::read(e.path()).unwrap());
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Assert that `secret` is nowhere in a run's output or the index.
fn assert_hidden(secret: &str, out: &std::process::Output, state: &Path, what: &str) {
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(secret),
        "{what} on stdout"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(secret),
        "{what} on stderr"
    );
    assert!(!index_text(state).contains(secret), "{what} in the index");
}

fn master() -> Config {
    Config {
        master_user: Some(format!("{ADMIN}:{ADMIN_PASSWORD}")),
        ..Config::default()
    }
}

/// An administrator moves a mailbox whose password nobody gave: the mail arrives
/// whole; the admin password shows nowhere, not even in the `-vv` trace (nor its
/// SASL blob); POP3 takes the same admin login; a wrong admin password is one
/// clear error (exit 3).
#[test]
fn admin_login_migrates_without_the_user_password() {
    let src = Dovecot::start_with(&[SRC], master());
    let dst = Dovecot::start(&[DST]);
    src.seed(SRC);
    let admin_pw = src.dir.path().join("admin-pw");
    std::fs::write(&admin_pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let state = src.dir.path().join("state.sqlite");

    let out = Run::new("migrate")
        .from(src.imaps_url(SRC))
        .opt("--from-admin", ADMIN)
        .from_password_file(&admin_pw)
        .to(dst.imaps_url(DST))
        .to_password_file(dst.pwfile())
        .ca(&src)
        .state(&state)
        .args(["-vv", "--json"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&dst.snapshot(DST), &expected_with(|f| f.to_string(), true));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AUTHENTICATE PLAIN <credentials masked>"),
        "-vv traces the SASL exchange masked"
    );
    assert_hidden(ADMIN_PASSWORD, &out, &state, "the admin password");
    let blob =
        mailferry::imap::client::base64(format!("{SRC}\0{ADMIN}\0{ADMIN_PASSWORD}").as_bytes());
    assert_hidden(&blob, &out, &state, "the admin's SASL blob");

    // POP3: the same admin login.
    let pop3 = format!("pop3s://{SRC}@localhost:{}", src.pop3s);
    let out = Run::new("check")
        .arg(&pop3)
        .opt("--admin", ADMIN)
        .opt("--password-file", &admin_pw)
        .ca(&src)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A wrong admin password: one error naming what to check, exit 3, no retries.
    let wrong = src.dir.path().join("wrong-pw");
    std::fs::write(&wrong, "not-the-admin-password\n").unwrap();
    let started = Instant::now();
    let out = Run::new("migrate")
        .from(src.imaps_url(SRC))
        .opt("--from-admin", ADMIN)
        .from_password_file(&wrong)
        .to(dst.imaps_url(DST))
        .to_password_file(dst.pwfile())
        .ca(&src)
        .state(&state)
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("login as {SRC} at localhost:{}", src.imaps))
            && err.contains("refused")
            && err.contains("check the admin user admin and its password"),
        "{}",
        text(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a refused login is final, not retried"
    );

    // Flags that do not go together are refused before anything runs.
    let out = Run::new("migrate")
        .from(src.imaps_url(SRC))
        .opt("--from-admin", ADMIN)
        .opt("--from-token-cmd", "true")
        .to(dst.imaps_url(DST))
        .to_password_file(dst.pwfile())
        .state(src.dir.path().join("other.sqlite"))
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        !src.dir.path().join("other.sqlite").exists(),
        "no index made"
    );
}

/// The test's OAuth2 authority: `GET /token?user=U[&ttl=S]` issues a fresh token for
/// U, valid S seconds (default 300); `POST /introspect` (Dovecot's check, body
/// `token=…`) answers `{"active":true,"username":U}` only for a token it issued and
/// only until it expires, `{"active":false}` otherwise.
///
/// It is also the token endpoint of the providers (`POST /oauth2/microsoft`,
/// `POST /oauth2/google`): see [`Grants`].
struct Authority {
    port: u16,
    issued: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    checks: Arc<Mutex<usize>>,
    grants: Arc<Grants>,
}

impl Authority {
    fn start() -> Authority {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued: Arc<Mutex<HashMap<String, (String, Instant)>>> = Arc::default();
        let checks: Arc<Mutex<usize>> = Arc::default();
        let (tokens, counter) = (issued.clone(), checks.clone());
        let grants = Arc::new(Grants::new(port));
        let endpoint = grants.clone();
        std::thread::spawn(move || {
            let mut serial = 0u64;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                serial += 1;
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                if r.read_line(&mut request).is_err() {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = r.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut status = "200 OK";
                let answer = if path.starts_with("/oauth2/") {
                    let (ok, answer) = endpoint.answer(&path, &body);
                    match ok {
                        Ok((token, user, ttl)) => {
                            tokens
                                .lock()
                                .unwrap()
                                .insert(token, (user, Instant::now() + Duration::from_secs(ttl)));
                        }
                        Err(s) => status = s,
                    }
                    answer
                } else if let Some(query) = path.strip_prefix("/token?") {
                    let arg = |k: &str| {
                        query
                            .split('&')
                            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                            .map(str::to_string)
                    };
                    let user = arg("user").unwrap_or_default();
                    let ttl: u64 = arg("ttl").and_then(|t| t.parse().ok()).unwrap_or(300);
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .subsec_nanos();
                    let token = format!("ya29-test-{serial}-{nanos:09}-tOkEn");
                    tokens.lock().unwrap().insert(
                        token.clone(),
                        (user, Instant::now() + Duration::from_secs(ttl)),
                    );
                    format!("{token}\n")
                } else if path.starts_with("/introspect") {
                    *counter.lock().unwrap() += 1;
                    // `/introspect?as=U`: app-only tokens (no user of their own)
                    // are answered as U, the mailbox the app was granted here.
                    let as_user = path.split_once("?as=").map(|(_, u)| u.to_string());
                    let token = body
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("token="))
                        .unwrap_or("");
                    match tokens.lock().unwrap().get(token) {
                        Some((user, until)) if Instant::now() < *until => {
                            let user = match (&as_user, user.as_str()) {
                                (Some(u), APP_ONLY) => u.as_str(),
                                _ => user.as_str(),
                            };
                            format!("{{\"active\":true,\"username\":\"{user}\"}}")
                        }
                        _ => "{\"active\":false}".to_string(),
                    }
                } else {
                    "{}".to_string()
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Authority {
            port,
            issued,
            checks,
            grants,
        }
    }

    fn introspect_url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.port)
    }

    fn config(&self) -> Config {
        Config {
            oauth2_introspect_url: Some(self.introspect_url()),
            ..Config::default()
        }
    }

    /// A token command (a file in `dir`) asking this authority for a token for `user`.
    fn token_cmd(&self, dir: &Path, user: &str, ttl: u64) -> String {
        let script = dir.join("token.py");
        std::fs::write(
            &script,
            format!(
                "import sys, urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:{}/token?user=' + sys.argv[1] + '&ttl=' + sys.argv[2]).read().decode().strip())\n",
                self.port
            ),
        )
        .unwrap();
        format!("python3 {} {user} {ttl}", script.display())
    }

    fn tokens(&self) -> Vec<String> {
        self.issued.lock().unwrap().keys().cloned().collect()
    }
}

/// Both sides log in with OAuth2 tokens from token commands (XOAUTH2): the mail
/// arrives whole, every connection asked for its own token, Dovecot checked them
/// at the test's introspection endpoint; no token shows in any output or the
/// index; POP3 takes a token too; an expired token and a failing token command are
/// each one clear error.
#[test]
fn token_commands_log_in_with_xoauth2() {
    let auth = Authority::start();
    let src = Dovecot::start_with(&[SRC], auth.config());
    let dst = Dovecot::start_with(&[DST], auth.config());
    src.seed(SRC);
    let state = src.dir.path().join("state.sqlite");
    let from_cmd = auth.token_cmd(src.dir.path(), SRC, 300);
    let to_cmd = auth.token_cmd(dst.dir.path(), DST, 300);

    let out = Run::new("migrate")
        .from(src.imaps_url(SRC))
        .opt("--from-token-cmd", &from_cmd)
        .to(dst.imaps_url(DST))
        .opt("--to-token-cmd", &to_cmd)
        .ca(&src)
        .state(&state)
        .args(["-vv", "--json", "--connections", "2"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&dst.snapshot(DST), &expected_with(|f| f.to_string(), true));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AUTHENTICATE XOAUTH2 <credentials masked>"),
        "XOAUTH2, masked in the trace"
    );
    let tokens = auth.tokens();
    assert!(
        tokens.len() >= 4,
        "a token per connection (2 pairs): {}",
        tokens.len()
    );
    assert!(*auth.checks.lock().unwrap() >= 4, "Dovecot checked them");
    for t in &tokens {
        assert_hidden(t, &out, &state, "a token");
        for user in [SRC, DST] {
            let blob = mailferry::imap::client::base64(
                format!("user={user}\x01auth=Bearer {t}\x01\x01").as_bytes(),
            );
            assert_hidden(&blob, &out, &state, "a token's SASL blob");
        }
    }

    // POP3 with a token (the response on its own line after AUTH XOAUTH2).
    let out = Run::new("check")
        .arg(format!("pop3s://{SRC}@localhost:{}", src.pop3s))
        .opt("--token-cmd", &from_cmd)
        .ca(&src)
        .args(["-vv"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for t in auth.tokens() {
        assert!(!String::from_utf8_lossy(&out.stderr).contains(&t));
    }

    // A token that expired (issued for one second): refused, one clear error.
    let short = auth.token_cmd(dst.dir.path(), SRC, 1);
    let expired = std::process::Command::new("sh")
        .args(["-c", &short])
        .output()
        .unwrap();
    let expired = String::from_utf8(expired.stdout)
        .unwrap()
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let file = src.dir.path().join("expired-token");
    std::fs::write(&file, format!("{expired}\n")).unwrap();
    let out = Run::new("check")
        .arg(src.imaps_url(SRC))
        .opt("--token-cmd", format!("cat {}", file.display()))
        .ca(&src)
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused") && err.contains("check that the token command gives a valid"),
        "{}",
        text(&out)
    );
    assert!(!err.contains(&expired), "the expired token is a secret too");

    // A failing token command: one clear error, exit 3, the command's text (it
    // may hold a secret) not repeated.
    let out = Run::new("check")
        .arg(src.imaps_url(SRC))
        .opt("--token-cmd", "exit 7 # --client-secret=Cmd-Secret-42")
        .ca(&src)
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the token command failed"), "{}", text(&out));
    assert!(!err.contains("Cmd-Secret-42"), "{}", text(&out));

    // A token command that hangs is stopped at --timeout: one clear error.
    let started = Instant::now();
    let out = Run::new("check")
        .arg(src.imaps_url(SRC))
        .opt("--token-cmd", "sleep 60")
        .ca(&src)
        .args(["--timeout", "2"])
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the token command did not finish within 2 s"),
        "{}",
        text(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// A server offering only OAUTHBEARER (RFC 7628) gets the token that way, over
/// IMAP and POP3; the trace names the mechanism and masks the exchange.
#[test]
fn oauthbearer_where_it_is_the_only_bearer_mechanism() {
    let auth = Authority::start();
    let src = Dovecot::start_with(
        &[SRC],
        Config {
            oauth2_mechanisms: Some("oauthbearer"),
            ..auth.config()
        },
    );
    let cmd = auth.token_cmd(src.dir.path(), SRC, 300);
    for (url, says) in [
        (src.imaps_url(SRC), "AUTHENTICATE OAUTHBEARER"),
        (
            format!("pop3s://{SRC}@localhost:{}", src.pop3s),
            "AUTH OAUTHBEARER",
        ),
    ] {
        let out = Run::new("check")
            .arg(&url)
            .opt("--token-cmd", &cmd)
            .ca(&src)
            .arg("-vv")
            .run();
        assert_eq!(out.status.code(), Some(0), "{url}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(says) && err.contains("<credentials masked>"),
            "{err}"
        );
        for t in auth.tokens() {
            assert!(!err.contains(&t), "a token in the trace");
        }
    }
    assert_eq!(auth.tokens().len(), 2, "one token per login");
}

/// `;AUTH=NAME` in the address forces the mechanism (RFC 5092, RFC 2384): against
/// a Dovecot offering PLAIN, XOAUTH2 and OAUTHBEARER, each forced one is the one
/// sent, over IMAP and POP3; one the server does not offer, or one that does not
/// go with the login, is refused before anything is sent, in one line.
#[test]
fn the_address_can_force_the_mechanism() {
    let auth = Authority::start();
    let src = Dovecot::start_with(&[SRC], auth.config());
    let cmd = auth.token_cmd(src.dir.path(), SRC, 300);
    let imaps = |mech: &str| format!("imaps://{SRC};AUTH={mech}@localhost:{}", src.imaps);
    let pop3s = |mech: &str| format!("pop3s://{SRC};AUTH={mech}@localhost:{}", src.pop3s);
    for (url, token, says) in [
        (imaps("OAUTHBEARER"), true, "AUTHENTICATE OAUTHBEARER"),
        (imaps("XOAUTH2"), true, "AUTHENTICATE XOAUTH2"),
        (pop3s("OAUTHBEARER"), true, "AUTH OAUTHBEARER"),
        (pop3s("XOAUTH2"), true, "AUTH XOAUTH2"),
        (imaps("PLAIN"), false, "AUTHENTICATE PLAIN"),
        (pop3s("PLAIN"), false, "AUTH PLAIN"),
    ] {
        let mut run = Run::new("check").arg(&url).ca(&src).arg("-vv");
        run = if token {
            run.opt("--token-cmd", &cmd)
        } else {
            run.opt("--password-file", src.pwfile())
        };
        let out = run.run();
        assert_eq!(out.status.code(), Some(0), "{url}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{url}: {err}");
        for other in ["AUTHENTICATE", "AUTH "] {
            let sent: Vec<&str> = err
                .lines()
                .filter(|l| l.contains("C: ") && l.contains(other))
                .collect();
            assert!(sent.len() <= 1, "{url}: one login: {sent:?}");
        }
    }
    // What cannot be: refused before a byte of a login is sent.
    let gssapi = Run::new("check")
        .arg(format!("imaps://{SRC};AUTH=GSSAPI@localhost:{}", src.imaps))
        .ca(&src)
        .opt("--password-file", src.pwfile())
        .run();
    assert_eq!(gssapi.status.code(), Some(2), "{}", text(&gssapi));
    assert!(
        text(&gssapi).contains("unknown ;AUTH= mechanism"),
        "{}",
        text(&gssapi)
    );
    let mismatch = Run::new("check")
        .arg(imaps("XOAUTH2"))
        .ca(&src)
        .opt("--password-file", src.pwfile())
        .arg("-vv")
        .run();
    assert_eq!(mismatch.status.code(), Some(2), "{}", text(&mismatch));
    let t = text(&mismatch);
    assert!(
        t.contains(";AUTH=XOAUTH2 does not go with a password"),
        "{t}"
    );
    assert!(!t.contains("S: "), "refused before connecting: {t}");
}

/// A batch of 20 accounts with one admin login for every source and a token
/// command for every target, no user password anywhere; one row with a wrong
/// admin password fails alone with one clear error; bad combinations in the CSV
/// are refused before anything runs.
#[test]
fn batch_rows_with_one_admin_login_and_token_commands() {
    let n = 20;
    let auth = Authority::start();
    let src_user = |i: usize| format!("src{i:02}@source.test");
    let dst_user = |i: usize| format!("dst{i:02}@target.test");
    let mut users: Vec<String> = (0..n).map(src_user).collect();
    users.extend((0..n).map(dst_user));
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let d = Dovecot::start_with(
        &refs,
        Config {
            master_user: Some(format!("{ADMIN}:{ADMIN_PASSWORD}")),
            oauth2_introspect_url: Some(auth.introspect_url()),
            ..Config::default()
        },
    );
    for i in 0..n {
        let seed = format!("acct{i}");
        d.seed_args(
            &src_user(i),
            &["--generate", "3", "--folder", "INBOX", "--seed", &seed],
        );
    }
    let admin_pw = d.dir.path().join("admin-pw");
    std::fs::write(&admin_pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let wrong = d.dir.path().join("wrong-pw");
    std::fs::write(&wrong, "not-the-admin-password\n").unwrap();
    let bad_row = 7;
    let mut csv = String::from(
        "source;source_user;source_admin;source_password;target;target_user;target_token_cmd\n",
    );
    for i in 0..n {
        let pw = if i == bad_row { &wrong } else { &admin_pw };
        // The token command asks for a token for the row's target user.
        let cmd = auth.token_cmd(d.dir.path(), &dst_user(i), 300);
        csv.push_str(&format!(
            "imaps://localhost:{};{};{ADMIN};file:{};localhost:{};{};{cmd}\n",
            d.imaps,
            src_user(i),
            pw.display(),
            d.imaps,
            dst_user(i),
        ));
    }
    let path = d.dir.path().join("accounts.csv");
    std::fs::write(&path, &csv).unwrap();
    let state = d.dir.path().join("state.sqlite");
    let report = d.dir.path().join("report.csv");
    let out = Run::new("batch")
        .arg(&path)
        .ca(&d)
        .state(&state)
        .args(["--jobs", "4", "-vv"])
        .opt("--report", &report)
        .run();
    assert_eq!(out.status.code(), Some(1), "one row failed: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("batch: {} of {n} accounts ok", n - 1)),
        "{stdout}"
    );
    for i in 0..n {
        let want = if i == bad_row { 0 } else { 3 };
        assert_eq!(d.count(&dst_user(i)), want, "account {i}");
    }
    let rep = std::fs::read_to_string(&report).unwrap();
    let failed: Vec<&str> = rep
        .lines()
        .skip(1)
        .filter(|l| l.contains(",failed,"))
        .collect();
    assert_eq!(failed.len(), 1, "{rep}");
    assert!(
        failed[0].contains(&src_user(bad_row))
            && failed[0].contains("check the admin user admin and its password"),
        "{rep}"
    );
    let tokens = auth.tokens();
    assert!(tokens.len() >= n - 1, "a token per target login");
    for t in &tokens {
        assert_hidden(t, &out, &state, "a token");
        assert!(!rep.contains(t.as_str()), "a token in the report");
    }
    assert_hidden(ADMIN_PASSWORD, &out, &state, "the admin password");
    assert!(
        !rep.contains(ADMIN_PASSWORD),
        "the admin password in the report"
    );

    // Bad combinations: refused before anything runs (exit 2), one line per row.
    let bad = d.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "source;source_user;source_admin;source_password;source_token_cmd;target_user;target_password\n\
             imaps://localhost:{0};{1};{ADMIN};;;{2};file:{3}\n\
             imaps://localhost:{0};{1};{ADMIN};file:{3};true;{4};file:{3}\n",
            d.imaps,
            src_user(0),
            dst_user(18),
            d.pwfile().display(),
            dst_user(19),
        ),
    )
    .unwrap();
    let out = Run::new("batch")
        .arg(&bad)
        .ca(&d)
        .state(d.dir.path().join("bad.sqlite"))
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "row 2, column source_password: empty; with source_admin it holds the admin's password"
        ) && err.contains(
            "row 3, column source_token_cmd: give source_admin or source_token_cmd, not both"
        ),
        "{}",
        text(&out)
    );
}

/// Tokens that live two seconds and a connection that stalls until the run gives
/// up on it: the reconnection runs the token command again (the first token has
/// expired by then, and Dovecot would refuse it), and the copy ends complete and
/// exact. (Dovecot checks a token at login only, so the cut is what makes the run
/// outlive its tokens.)
#[test]
fn a_reconnection_asks_for_a_fresh_token() {
    let auth = Authority::start();
    let d = Dovecot::start_with(
        &[SRC, DST],
        Config {
            plaintext_only: true,
            ..auth.config()
        },
    );
    d.seed(SRC);
    let proxy = FaultProxy::start(d.imap, Fault::StallAfterServerBytes(300_000));
    let out = Run::new("migrate")
        .from(format!("imap://{SRC}@127.0.0.1:{}", proxy.port))
        .opt("--from-token-cmd", auth.token_cmd(d.dir.path(), SRC, 2))
        .to(format!("imap://{DST}@127.0.0.1:{}", d.imap))
        .opt("--to-token-cmd", auth.token_cmd(d.dir.path(), DST, 2))
        .state(d.dir.path().join("state.sqlite"))
        .args(["--allow-plaintext", "--retry-wait", "1", "--timeout", "3"])
        .args(["--retries", "3", "--json"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retrying"),
        "the stall was not hit: {}",
        text(&out)
    );
    assert!(proxy.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert!(
        auth.tokens().len() >= 4,
        "a fresh token for each side at each connection: {}",
        auth.tokens().len()
    );
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
}

/// Microsoft ends a session whose token expired with `* BYE Session invalidated -
/// AccessTokenExpired` between two commands. The run shows the server's words,
/// reconnects with a fresh token (the command runs again) and ends complete and
/// exact: nothing lost, nothing doubled.
#[test]
fn a_session_ended_for_an_expired_token_resumes_with_a_fresh_one() {
    let auth = Authority::start();
    let d = Dovecot::start_with(
        &[SRC, DST],
        Config {
            plaintext_only: true,
            ..auth.config()
        },
    );
    d.seed(SRC);
    let proxy = FaultProxy::start(
        d.imap,
        Fault::ByeOnServerText(
            "OK Fetch completed",
            3,
            "* BYE Session invalidated - AccessTokenExpired",
        ),
    );
    let out = Run::new("migrate")
        .from(format!("imap://{SRC}@127.0.0.1:{}", proxy.port))
        .opt("--from-token-cmd", auth.token_cmd(d.dir.path(), SRC, 300))
        .to(format!("imap://{DST}@127.0.0.1:{}", d.imap))
        .opt("--to-token-cmd", auth.token_cmd(d.dir.path(), DST, 300))
        .state(d.dir.path().join("state.sqlite"))
        .args(["--allow-plaintext", "--retry-wait", "1", "--retries", "3"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AccessTokenExpired") && err.contains("retrying"),
        "the BYE was not met or not shown: {}",
        text(&out)
    );
    assert!(proxy.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let source_tokens = auth
        .issued
        .lock()
        .unwrap()
        .values()
        .filter(|(u, _)| u.as_str() == SRC)
        .count();
    assert!(
        source_tokens >= 2,
        "the reconnection asked for a fresh token: {source_tokens}"
    );
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
}

/// Introspection's user for app-only tokens (client credentials): they have none.
const APP_ONLY: &str = "<app-only>";
const CLIENT_ID: &str = "5b0c2f4e-test-client-id";
const CLIENT_SECRET: &str = "cS3cr3t~App-Secret-ZZTOP";
const REFRESH_TOKEN: &str = "0.ARefresh-Token-QWERTY";
const SA_EMAIL: &str = "ferry@project.iam.gserviceaccount.com";

/// The providers' token endpoint: Microsoft's client-credentials and refresh-token
/// grants (`/oauth2/microsoft`) and Google's jwt-bearer grant (`/oauth2/google`,
/// the JWT's RS256 signature checked with the test key's public half, and its
/// `iss`, `sub`, `scope`, `aud`, `iat`/`exp`). Tokens live `ttl` seconds; a revoked
/// app gets 400 `invalid_client` (Microsoft) or `unauthorized_client` (Google).
struct Grants {
    port: u16,
    ttl: std::sync::atomic::AtomicU64,
    revoked: std::sync::atomic::AtomicBool,
    public_key: Mutex<Option<openssl::pkey::PKey<openssl::pkey::Public>>>,
    /// The app registration's uploaded certificate (certificate credentials).
    app_cert: Mutex<Option<openssl::x509::X509>>,
    /// Client assertions' `jti`s seen (a replayed assertion is refused).
    jtis: Mutex<std::collections::HashSet<String>>,
    /// "grant user" per token issued.
    log: Mutex<Vec<String>>,
    /// Everything secret that crossed the endpoint: assertions, refresh tokens.
    secrets: Mutex<Vec<String>>,
    refresh: Mutex<String>,
    serial: std::sync::atomic::AtomicU64,
}

fn form(body: &str) -> HashMap<String, String> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1
                }
                c => {
                    out.push(c);
                    i += 1
                }
            }
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn b64url_decode(s: &str) -> Vec<u8> {
    let mut t = s.replace('-', "+").replace('_', "/");
    while !t.len().is_multiple_of(4) {
        t.push('=');
    }
    openssl::base64::decode_block(&t).unwrap()
}

type Grant = Result<(String, String, u64), &'static str>;

impl Grants {
    fn new(port: u16) -> Grants {
        Grants {
            port,
            ttl: 300.into(),
            revoked: false.into(),
            public_key: Mutex::new(None),
            app_cert: Mutex::new(None),
            jtis: Mutex::default(),
            log: Mutex::default(),
            secrets: Mutex::default(),
            refresh: Mutex::new(REFRESH_TOKEN.into()),
            serial: 0.into(),
        }
    }

    fn url(&self, provider: &str) -> String {
        format!("http://127.0.0.1:{}/oauth2/{provider}", self.port)
    }

    fn error(code: &str, description: &str) -> (Grant, String) {
        (
            Err("400 Bad Request"),
            format!("{{\"error\":\"{code}\",\"error_description\":\"{description}\"}}"),
        )
    }

    fn answer(&self, path: &str, body: &str) -> (Grant, String) {
        use std::sync::atomic::Ordering::SeqCst;
        let f = form(body);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
        let revoked = self.revoked.load(SeqCst);
        let (user, grant) = match (path, get("grant_type")) {
            ("/oauth2/microsoft", "client_credentials") if f.contains_key("client_assertion") => {
                match self.check_assertion(
                    get("client_id"),
                    get("client_assertion_type"),
                    get("client_assertion"),
                ) {
                    _ if revoked => {
                        return Self::error("invalid_client", "AADSTS7000215: revoked.")
                    }
                    Err(why) => return Self::error("invalid_client", why),
                    Ok(()) => {}
                }
                if get("scope") != "https://outlook.office365.com/.default" {
                    return Self::error("invalid_scope", "AADSTS1002012: wrong scope");
                }
                (APP_ONLY.to_string(), "client_assertion")
            }
            ("/oauth2/microsoft", "client_credentials") => {
                if revoked || get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET
                {
                    return Self::error(
                        "invalid_client",
                        "AADSTS7000215: Invalid client secret provided.",
                    );
                }
                if get("scope") != "https://outlook.office365.com/.default" {
                    return Self::error("invalid_scope", "AADSTS1002012: wrong scope");
                }
                (APP_ONLY.to_string(), "client_credentials")
            }
            ("/oauth2/microsoft", "refresh_token") => {
                if revoked || get("client_id") != CLIENT_ID {
                    return Self::error("invalid_client", "AADSTS700016: Application not found.");
                }
                if get("refresh_token") != *self.refresh.lock().unwrap() {
                    return Self::error("invalid_grant", "AADSTS70000: refresh token not valid");
                }
                if !get("scope").contains("https://outlook.office.com/IMAP.AccessAsUser.All") {
                    return Self::error("invalid_scope", "no IMAP scope");
                }
                (SRC.to_string(), "refresh_token")
            }
            ("/oauth2/google", "urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                if revoked {
                    return Self::error("unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.");
                }
                let jwt = get("assertion");
                self.secrets.lock().unwrap().push(jwt.to_string());
                let parts: Vec<&str> = jwt.split('.').collect();
                assert_eq!(parts.len(), 3, "a JWT has three parts");
                let header: serde_json::Value =
                    serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
                assert_eq!(header["alg"], "RS256");
                let key = self.public_key.lock().unwrap().clone().expect("a test key");
                let mut v =
                    openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key)
                        .unwrap();
                let signed = format!("{}.{}", parts[0], parts[1]);
                if !v
                    .verify_oneshot(&b64url_decode(parts[2]), signed.as_bytes())
                    .unwrap()
                {
                    return Self::error("invalid_grant", "Invalid JWT Signature.");
                }
                let c: serde_json::Value =
                    serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
                let aud = self.url("google");
                if c["iss"] != SA_EMAIL
                    || c["scope"] != "https://mail.google.com/"
                    || c["aud"] != aud.as_str()
                    || exp <= now
                    || exp - iat > 3600
                    || iat > now + 5
                {
                    return Self::error("invalid_grant", "Invalid JWT claims");
                }
                (c["sub"].as_str().unwrap().to_string(), "jwt-bearer")
            }
            _ => return Self::error("unsupported_grant_type", "no such grant"),
        };
        let n = self.serial.fetch_add(1, SeqCst);
        let token = format!("EwB-access-{n}-{}-tOkEn", grant.len() * 7919 + n as usize);
        let ttl = self.ttl.load(SeqCst);
        self.log.lock().unwrap().push(format!("{grant} {user}"));
        let mut extra = String::new();
        if grant == "refresh_token" {
            // Microsoft may rotate the refresh token: the newest must be used next.
            let next = format!("0.ARefresh-Rotated-{n}-QWERTY");
            self.secrets.lock().unwrap().push(next.clone());
            *self.refresh.lock().unwrap() = next.clone();
            extra = format!(",\"refresh_token\":\"{next}\"");
        }
        (
            Ok((token.clone(), user, ttl)),
            format!(
                "{{\"token_type\":\"Bearer\",\"expires_in\":{ttl},\"access_token\":\"{token}\"{extra}}}"
            ),
        )
    }

    /// Microsoft's certificate credentials: a JWT whose header names the uploaded
    /// certificate by `x5t#S256`, signed PS256 with its key; `aud` this endpoint,
    /// `iss` = `sub` = the client ID, unexpired, at most 10 minutes long, `jti` new.
    fn check_assertion(&self, client_id: &str, kind: &str, jwt: &str) -> Result<(), &'static str> {
        self.secrets.lock().unwrap().push(jwt.to_string());
        if client_id != CLIENT_ID {
            return Err("AADSTS700016: Application not found in the directory.");
        }
        if kind != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
            return Err("AADSTS50027: wrong client_assertion_type");
        }
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "a JWT has three parts");
        let header: serde_json::Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
        let cert = self
            .app_cert
            .lock()
            .unwrap()
            .clone()
            .expect("a test certificate");
        let der = cert.to_der().unwrap();
        let thumb = openssl::hash::hash(openssl::hash::MessageDigest::sha256(), &der).unwrap();
        if header["alg"] != "PS256" || header["typ"] != "JWT" {
            return Err("AADSTS5002730: unsupported alg");
        }
        if header["x5t#S256"].as_str().map(b64url_decode) != Some(thumb.to_vec()) {
            return Err("AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.");
        }
        let key = cert.public_key().unwrap();
        let mut v =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
        v.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS).unwrap();
        v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH)
            .unwrap();
        v.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
            .unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        if !v
            .verify_oneshot(&b64url_decode(parts[2]), signed.as_bytes())
            .unwrap_or(false)
        {
            return Err("AADSTS700027: Client assertion failed signature validation.");
        }
        let c: serde_json::Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (nbf, exp) = (
            c["nbf"].as_u64().unwrap_or(0),
            c["exp"].as_u64().unwrap_or(0),
        );
        if c["aud"] != self.url("microsoft").as_str()
            || c["iss"] != CLIENT_ID
            || c["sub"] != CLIENT_ID
            || exp <= now
            || nbf > now + 5
            || exp - nbf > 600
        {
            return Err("AADSTS700024: Client assertion is not within its valid time range or has wrong claims.");
        }
        let jti = c["jti"].as_str().unwrap_or("").to_string();
        if jti.is_empty() || !self.jtis.lock().unwrap().insert(jti) {
            return Err("AADSTS700025: Client assertion jti replayed.");
        }
        Ok(())
    }

    fn served(&self, grant: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(grant))
            .count()
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The provider config files of a test: Microsoft app-only (client secret in a
/// file), Microsoft delegated (refresh token), Google (a service-account key made
/// with `openssl genpkey`, its public half given to the token endpoint).
struct Providers {
    app_only: std::path::PathBuf,
    /// Microsoft app-only with certificate credentials (cert and key in one PEM).
    app_cert: std::path::PathBuf,
    delegated: std::path::PathBuf,
    google: std::path::PathBuf,
    /// The private key's PEM body lines.
    key_lines: Vec<String>,
}

impl Authority {
    fn providers(&self, dir: &Path) -> Providers {
        let pem = dir.join("sa-key.pem");
        let ok = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl genpkey");
        let pem_text = std::fs::read_to_string(&pem).unwrap();
        let key = openssl::pkey::PKey::private_key_from_pem(pem_text.as_bytes()).unwrap();
        let public =
            openssl::pkey::PKey::public_key_from_pem(&key.public_key_to_pem().unwrap()).unwrap();
        *self.grants.public_key.lock().unwrap() = Some(public);
        let key_json = dir.join("service-account.json");
        write_private(
            &key_json,
            &serde_json::json!({
                "type": "service_account",
                "project_id": "project",
                "private_key_id": "0123abcd",
                "private_key": pem_text,
                "client_email": SA_EMAIL,
                "client_id": "1234567890",
                "token_uri": self.grants.url("google"),
            })
            .to_string(),
        );
        let secret_file = dir.join("client-secret");
        write_private(&secret_file, &format!("{CLIENT_SECRET}\n"));
        let app_only = dir.join("microsoft-app.json");
        write_private(
            &app_only,
            &serde_json::json!({
                "provider": "microsoft",
                "tenant": "contoso.onmicrosoft.com",
                "client_id": CLIENT_ID,
                "client_secret_file": "client-secret",
                "token_url": self.grants.url("microsoft"),
            })
            .to_string(),
        );
        let cert_pem = dir.join("app-cert.pem");
        let ok = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=mailferry-test-app", "-keyout"])
            .arg(dir.join("app-key.pem"))
            .arg("-out")
            .arg(&cert_pem)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl req");
        let cert_text = std::fs::read_to_string(&cert_pem).unwrap();
        let app_key_text = std::fs::read_to_string(dir.join("app-key.pem")).unwrap();
        *self.grants.app_cert.lock().unwrap() =
            Some(openssl::x509::X509::from_pem(cert_text.as_bytes()).unwrap());
        // As admins keep it: the certificate and its key in one owner-only file.
        write_private(&dir.join("app.pem"), &format!("{cert_text}{app_key_text}"));
        std::fs::remove_file(dir.join("app-key.pem")).unwrap();
        let app_cert = dir.join("microsoft-app-cert.json");
        write_private(
            &app_cert,
            &serde_json::json!({
                "provider": "microsoft",
                "tenant": "contoso.onmicrosoft.com",
                "client_id": CLIENT_ID,
                "certificate_file": "app.pem",
                "token_url": self.grants.url("microsoft"),
            })
            .to_string(),
        );
        let delegated = dir.join("microsoft-user.json");
        write_private(
            &delegated,
            &serde_json::json!({
                "provider": "microsoft",
                "tenant": "common",
                "client_id": CLIENT_ID,
                "refresh_token": REFRESH_TOKEN,
                "token_url": self.grants.url("microsoft"),
            })
            .to_string(),
        );
        let google = dir.join("google.json");
        write_private(
            &google,
            &serde_json::json!({"provider": "google", "key_file": "service-account.json"})
                .to_string(),
        );
        Providers {
            app_only,
            app_cert,
            delegated,
            google,
            key_lines: pem_text
                .lines()
                .chain(app_key_text.lines())
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_string)
                .collect(),
        }
    }

    /// Every secret of the providers' flows seen so far.
    fn all_secrets(&self, p: &Providers) -> Vec<String> {
        let mut all = vec![CLIENT_SECRET.to_string(), REFRESH_TOKEN.to_string()];
        all.extend(self.grants.secrets.lock().unwrap().iter().cloned());
        all.extend(self.tokens());
        all.extend(p.key_lines.iter().cloned());
        all
    }
}

/// A migration longer than the tokens' life (three seconds), its source logged in
/// app-only (Microsoft client credentials, the mailbox address as the user) and
/// its target by a Google service account (jwt-bearer, `sub` = the mailbox): a
/// connection stalls, the run reconnects after the tokens expired and fetches
/// fresh ones (cached ones are reused only while fresh), and the copy ends complete
/// and exact; no client secret, key, assertion or token shows anywhere, even -vv.
#[test]
fn app_only_and_service_account_tokens_refresh_during_a_long_migration() {
    let auth = Authority::start();
    auth.grants
        .ttl
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let d = Dovecot::start_with(
        &[SRC, DST],
        Config {
            plaintext_only: true,
            // The app is granted the source mailbox.
            oauth2_introspect_url: Some(format!("{}?as={SRC}", auth.introspect_url())),
            ..Config::default()
        },
    );
    d.seed(SRC);
    let p = auth.providers(d.dir.path());
    let proxy = FaultProxy::start(d.imap, Fault::StallAfterServerBytes(300_000));
    let state = d.dir.path().join("state.sqlite");
    let started = Instant::now();
    let out = Run::new("migrate")
        .from(format!("imap://{SRC}@127.0.0.1:{}", proxy.port))
        .opt("--from-oauth2", &p.app_only)
        .to(format!("imap://{DST}@127.0.0.1:{}", d.imap))
        .opt("--to-oauth2", &p.google)
        .state(&state)
        .args(["--allow-plaintext", "--retry-wait", "1", "--timeout", "3"])
        .args(["--retries", "3", "--json", "-vv"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "outlived a token"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retrying"),
        "the stall was not hit: {}",
        text(&out)
    );
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
    let (app, jwt) = (
        auth.grants.served("client_credentials"),
        auth.grants.served("jwt-bearer"),
    );
    assert!(
        app >= 2 && jwt >= 2,
        "tokens refreshed: {app} app-only, {jwt} jwt-bearer"
    );
    assert!(
        auth.grants
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("jwt-bearer"))
            .all(|l| l == &format!("jwt-bearer {DST}")),
        "sub is the target mailbox"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AUTHENTICATE XOAUTH2 <credentials masked>"),
        "XOAUTH2, masked"
    );
    assert!(
        !err.contains("can be read by other users"),
        "owner-only files: no warning"
    );
    for s in auth.all_secrets(&p) {
        assert_hidden(&s, &out, &state, "a secret of the OAuth2 flows");
    }
}

/// Microsoft app-only with certificate credentials (no client secret): the
/// token endpoint checks the PS256 client assertion against the uploaded
/// certificate; with tokens living three seconds and a stalled connection, the
/// run signs a fresh assertion (new `jti`) for each token and ends exact. The key
/// and the assertions show nowhere. A certificate the app registration does not
/// know is one clear error; a key that does not belong to the certificate is
/// refused before any connection.
#[test]
fn certificate_credentials_log_in_app_only() {
    let auth = Authority::start();
    auth.grants
        .ttl
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let d = Dovecot::start_with(
        &[SRC, DST],
        Config {
            plaintext_only: true,
            oauth2_introspect_url: Some(format!("{}?as={SRC}", auth.introspect_url())),
            ..Config::default()
        },
    );
    d.seed(SRC);
    let p = auth.providers(d.dir.path());
    let proxy = FaultProxy::start(d.imap, Fault::StallAfterServerBytes(300_000));
    let state = d.dir.path().join("state.sqlite");
    let migrate = |from_port: u16, config: &Path| {
        Run::new("migrate")
            .from(format!("imap://{SRC}@127.0.0.1:{from_port}"))
            .opt("--from-oauth2", config)
            .to(format!("imap://{DST}@127.0.0.1:{}", d.imap))
            .to_password_file(d.pwfile())
            .state(&state)
            .args(["--allow-plaintext", "--retry-wait", "1", "--timeout", "3"])
            .args(["--retries", "3", "-vv"])
            .run()
    };
    let out = migrate(proxy.port, &p.app_cert);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retrying"),
        "the stall was not hit: {}",
        text(&out)
    );
    assert_same(&d.snapshot(DST), &expected(|f| f.to_string()));
    assert!(
        auth.grants.served("client_assertion") >= 2,
        "a fresh assertion per token: {:?}",
        auth.grants.log.lock().unwrap()
    );
    assert_eq!(auth.grants.served("client_credentials"), 0);
    for s in auth.all_secrets(&p) {
        assert_hidden(&s, &out, &state, "a secret of the certificate flow");
    }
    // The registration's certificate replaced: the old one is refused, by name.
    let other = d.dir.path().join("other.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=other"])
        .arg("-keyout")
        .arg(&other)
        .arg("-out")
        .arg(d.dir.path().join("other-cert.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let cert = std::fs::read(d.dir.path().join("other-cert.pem")).unwrap();
    *auth.grants.app_cert.lock().unwrap() = Some(openssl::x509::X509::from_pem(&cert).unwrap());
    let out = migrate(d.imap, &p.app_cert);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("AADSTS700027") && t.contains("certificate is not (or no longer) uploaded"),
        "{t}"
    );
    // A key that does not belong to the certificate: refused before connecting.
    let mixed = d.dir.path().join("mixed.json");
    write_private(
        &mixed,
        &serde_json::json!({
            "provider": "microsoft",
            "tenant": "contoso.onmicrosoft.com",
            "client_id": CLIENT_ID,
            "certificate_file": "app.pem",
            "private_key_file": "other.pem",
            "token_url": auth.grants.url("microsoft"),
        })
        .to_string(),
    );
    let out = migrate(d.imap, &mixed);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the private key does not belong to this certificate"),
        "{}",
        text(&out)
    );
}

/// Microsoft's delegated flow (refresh token, rotated by the endpoint) into a
/// batch whose targets log in by the Google service account (one config file for
/// every row); then the apps are revoked: each run fails with one clear error
/// naming the cause; a config file others can read draws a warning.
#[test]
fn refresh_tokens_batches_and_revoked_apps() {
    use std::os::unix::fs::PermissionsExt;
    let auth = Authority::start();
    let dst2 = "bert@target.test";
    let d = Dovecot::start_with(&[SRC, DST, dst2], auth.config());
    d.seed(SRC);
    let p = auth.providers(d.dir.path());
    let state = d.dir.path().join("state.sqlite");
    let out = Run::new("migrate")
        .from(d.imaps_url(SRC))
        .opt("--from-oauth2", &p.delegated)
        .to(d.imaps_url(DST))
        .opt("--to-oauth2", &p.google)
        .ca(&d)
        .state(&state)
        .args(["-vv", "--connections", "2"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&d.snapshot(DST), &expected_with(|f| f.to_string(), true));
    assert!(auth.grants.served("refresh_token") >= 1);
    for s in auth.all_secrets(&p) {
        assert_hidden(&s, &out, &state, "a secret of the OAuth2 flows");
    }

    // A batch: the password column is gone; the target_oauth2 cell names the config.
    let csv = d.dir.path().join("accounts.csv");
    std::fs::write(
        &csv,
        format!(
            "source,source_user,source_password,target,target_user,target_oauth2\n\
             imaps://localhost:{0},{SRC},file:{1},localhost:{0},{dst2},google.json\n",
            d.imaps,
            d.pwfile().display(),
        ),
    )
    .unwrap();
    let report = d.dir.path().join("report.csv");
    let bstate = d.dir.path().join("batch.sqlite");
    let out = Run::new("batch")
        .arg(&csv)
        .ca(&d)
        .state(&bstate)
        .args(["-vv"])
        .opt("--report", &report)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(d.count(dst2) > 0);
    let rep = std::fs::read_to_string(&report).unwrap();
    for s in auth.all_secrets(&p) {
        assert_hidden(&s, &out, &bstate, "a secret of the OAuth2 flows");
        assert!(!rep.contains(s.as_str()), "a secret in the report");
    }

    // Revoked: one clear error each, nothing copied, no secret shown.
    auth.grants
        .revoked
        .store(true, std::sync::atomic::Ordering::SeqCst);
    std::fs::set_permissions(&p.app_only, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (flag, config, says) in [
        ("--from-oauth2", &p.app_only, "invalid_client"),
        ("--to-oauth2", &p.google, "unauthorized_client"),
    ] {
        let mut run = Run::new("migrate")
            .from(d.imaps_url(SRC))
            .to(d.imaps_url(DST))
            .ca(&d)
            .state(d.dir.path().join("revoked.sqlite"))
            .opt(flag, config);
        run = if flag == "--from-oauth2" {
            run.to_password_file(d.pwfile())
        } else {
            run.from_password_file(d.pwfile())
        };
        let out = run.args(["-vv"]).run();
        assert_ne!(out.status.code(), Some(0), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(says)
                && err.contains("refused to issue a token")
                && err.contains("revoked"),
            "{}",
            text(&out)
        );
        assert_eq!(
            err.contains("warning: OAuth2 config file")
                && err.contains("can be read by other users"),
            flag == "--from-oauth2",
            "{err}"
        );
        for s in auth.all_secrets(&p) {
            assert!(!text(&out).contains(s.as_str()), "a secret shown");
        }
    }
}
