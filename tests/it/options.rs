//! Options seen from outside, against real Dovecot instances: `--insecure`, the
//! password environment variables, what `check` says about a wrong port, the
//! `--dedupe` modes end to end, and special-use folders on a target without
//! special-use attributes.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

const SRC: &str = "anna@source.test";
const DST: &str = "anna@target.test";

const INSECURE_WARNING: &str = "warning: --insecure: certificates are NOT verified; anyone on the network path can read the passwords and the mail";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run with none of mailferry's password variables set except `vars`.
fn run_env(run: &Run, vars: &[(&str, &str)]) -> Output {
    let mut cmd = run.command();
    for v in [
        "MAILFERRY_PASSWORD",
        "MAILFERRY_FROM_PASSWORD",
        "MAILFERRY_TO_PASSWORD",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run mailferry")
}

/// A self-signed certificate for `other.example` only (not for localhost).
fn other_name_cert() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    self_signed_cert(certs.path(), "other.example", "DNS:other.example");
    certs
}

/// Without `--ca-file` the test server's self-signed certificate is refused (exit
/// 3, the "not trusted" hint); with `--insecure` `check` logs in and warns, a server
/// whose certificate carries another name is accepted too, and a whole migration
/// runs with one warning.
#[test]
fn insecure_skips_certificate_checks_and_warns() {
    let src = Dovecot::start(&[SRC]);
    src.seed_args(
        SRC,
        &["--generate", "2", "--folder", "INBOX", "--seed", "ins"],
    );
    let certs = other_name_cert();
    let dst = Dovecot::start_with(
        &[DST],
        Config {
            cert_dir: Some(certs.path().to_path_buf()),
            ..Config::default()
        },
    );

    // Not trusted: exit 3, one line naming the problem and --ca-file, no warning.
    let out = Run::new("check")
        .arg(src.imaps_url(SRC))
        .opt("--password-file", src.pwfile())
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let line = err.trim_end();
    assert!(
        line.starts_with(&format!(
            "mailferry: error: TLS handshake with localhost:{} failed: ",
            src.imaps
        )) && line.contains("certificate verify failed")
            && line.ends_with(": the server's certificate is not trusted; if it is signed by a private CA, pass that CA with --ca-file PEM"),
        "{err}"
    );
    assert_eq!(stdout(&out), "", "{}", text(&out));

    // --insecure: logged in, and the warning is all of stderr.
    let out = Run::new("check")
        .arg(src.imaps_url(SRC))
        .opt("--password-file", src.pwfile())
        .arg("--insecure")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stderr(&out), format!("{INSECURE_WARNING}\n"));
    assert!(
        stdout(&out).starts_with(&format!("{}: login OK\n", src.imaps_url(SRC))),
        "{}",
        text(&out)
    );

    // A certificate for another name: refused even when trusted, accepted with --insecure.
    let out = Run::new("check")
        .arg(dst.imaps_url(DST))
        .opt("--password-file", dst.pwfile())
        .ca_file(certs.path().join("cert.pem"))
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr(&out).trim_end().ends_with(
            ": the certificate is not valid for the name localhost; connect by the name the certificate carries"
        ),
        "{}",
        text(&out)
    );
    let out = Run::new("check")
        .arg(dst.imaps_url(DST))
        .opt("--password-file", dst.pwfile())
        .arg("--insecure")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stderr(&out), format!("{INSECURE_WARNING}\n"));

    // A migration between the two, neither certificate verified: one warning per run.
    let state = src.dir.path().join("state.sqlite");
    let urls = [src.imaps_url(SRC), dst.imaps_url(DST)];
    let out = Run::new("migrate")
        .from(&urls[0])
        .to(&urls[1])
        .from_password_file(src.pwfile())
        .to_password_file(dst.pwfile())
        .state(&state)
        .args(["--insecure", "--json"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(2), Some(0)),
        "{j}"
    );
    assert_eq!(
        stderr(&out).matches(INSECURE_WARNING).count(),
        1,
        "{}",
        text(&out)
    );
    let out = Run::new("verify")
        .from(&urls[0])
        .to(&urls[1])
        .from_password_file(src.pwfile())
        .to_password_file(dst.pwfile())
        .arg("--insecure")
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("0 messages missing"),
        "{}",
        text(&out)
    );
    assert_eq!(
        stderr(&out).matches(INSECURE_WARNING).count(),
        1,
        "{}",
        text(&out)
    );
}

/// `MAILFERRY_FROM_PASSWORD` / `MAILFERRY_TO_PASSWORD` (and `MAILFERRY_PASSWORD`
/// for `check`) log in without password files; a password file wins over the
/// variable; without either the missing one is named (exit 2); a wrong password
/// gives exit 3 with the server's words; no password ever shows in the output
/// (the protocol trace is on throughout).
#[test]
fn password_variables_wrong_passwords_and_no_leak() {
    const WRONG: &str = "wrong-Env-Pa55word-QUUX";
    let d = Dovecot::start(&[SRC, DST]);
    d.seed_args(
        SRC,
        &["--generate", "3", "--folder", "INBOX", "--seed", "env"],
    );
    let state = d.dir.path().join("state.sqlite");
    let (src, dst) = (d.imaps_url(SRC), d.imaps_url(DST));
    let migrate = Run::new("migrate")
        .from(&src)
        .to(&dst)
        .ca(&d)
        .state(&state)
        .args(["--json", "-vv"]);
    let mut outputs = Vec::new();

    // Neither variable: refused before any connection (stdin is not a terminal).
    let out = run_env(&migrate, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).starts_with("mailferry: error: no password for the ")
            && stderr(&out).lines().count() == 1,
        "{}",
        text(&out)
    );
    outputs.push(out);
    // Only one of them: the other is named with its flag and its variable.
    let out = run_env(&migrate, &[("MAILFERRY_TO_PASSWORD", PASSWORD)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Both passwords are read before the index is opened: one line, no index.
    assert_eq!(
        stderr(&out),
        format!("mailferry: error: no password for the source {src}: give --from-password-file FILE or set MAILFERRY_FROM_PASSWORD\n"),
        "{}",
        text(&out)
    );
    assert!(
        !state.exists(),
        "the index was created before the input was checked"
    );
    outputs.push(out);
    // An empty variable counts as unset.
    let out = run_env(
        &migrate,
        &[
            ("MAILFERRY_FROM_PASSWORD", PASSWORD),
            ("MAILFERRY_TO_PASSWORD", ""),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        stderr(&out),
        format!("mailferry: error: no password for the target {dst}: give --to-password-file FILE or set MAILFERRY_TO_PASSWORD\n")
    );
    outputs.push(out);

    // Both right: everything copied, with the protocol trace on.
    let out = run_env(
        &migrate,
        &[
            ("MAILFERRY_FROM_PASSWORD", PASSWORD),
            ("MAILFERRY_TO_PASSWORD", PASSWORD),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j = json(&out);
    assert_eq!(
        (j["copied"].as_u64(), j["failed"].as_array().map(Vec::len)),
        (Some(3), Some(0)),
        "{j}"
    );
    assert!(
        stderr(&out).contains("<credentials masked>"),
        "-vv traces the login"
    );
    assert_eq!(d.snapshot(DST).0["INBOX"], d.snapshot(SRC).0["INBOX"]);
    outputs.push(out);

    // A password file wins over the variable (here a wrong one).
    let out = run_env(
        &migrate.clone().to_password_file(d.pwfile()),
        &[
            ("MAILFERRY_FROM_PASSWORD", PASSWORD),
            ("MAILFERRY_TO_PASSWORD", WRONG),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["copied"], 0, "{}", text(&out));
    outputs.push(out);

    // check reads MAILFERRY_PASSWORD.
    let check = Run::new("check").arg(&src).ca(&d).arg("-vv");
    let out = run_env(&check, &[("MAILFERRY_PASSWORD", PASSWORD)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).starts_with(&format!("{src}: login OK\n")),
        "{}",
        text(&out)
    );
    outputs.push(out);

    // A wrong password: exit 3 and the server's words. Last, and only once: Dovecot
    // delays every login from an address after a failed one (2 s, then 4, 8…).
    let out = run_env(
        &migrate,
        &[
            ("MAILFERRY_FROM_PASSWORD", PASSWORD),
            ("MAILFERRY_TO_PASSWORD", WRONG),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(
        stderr(&out).lines().last(),
        Some(
            format!(
                "mailferry: error: login as {DST} at localhost:{} refused: [AUTHENTICATIONFAILED] Authentication failed.; check the username and the password",
                d.imaps
            )
            .as_str()
        ),
        "{}",
        text(&out)
    );
    outputs.push(out);

    // No password, plain or as a SASL PLAIN blob, in anything written.
    let mut secrets = vec![PASSWORD.to_string(), WRONG.to_string()];
    for user in [SRC, DST] {
        for pw in [PASSWORD, WRONG] {
            secrets.push(mailferry::imap::client::base64(
                format!("\0{user}\0{pw}").as_bytes(),
            ));
        }
    }
    for out in &outputs {
        let all = text(out);
        for s in &secrets {
            assert!(!all.contains(s.as_str()), "{s:?} written:\n{all}");
        }
    }
}

/// `check` on the wrong kind of port says which port problem it is: an imaps://
/// URL at the plain IMAP port (and a pop3s:// one at the plain POP3 port) fails the
/// TLS handshake at once; an imap:// URL at the IMAPS port gets no greeting.
#[test]
fn check_names_the_port_problem() {
    let d = Dovecot::start(&[SRC]);
    let tls_hint = |port: u16| {
        format!(
            ": port {port} does not speak TLS; use the implicit-TLS port (993 for IMAPS, 995 for POP3S) or the imap:// / pop3:// scheme for STARTTLS"
        )
    };

    let out = Run::new("check")
        .arg(format!("imaps://{SRC}@localhost:{}", d.imap))
        .opt("--password-file", d.pwfile())
        .ca(&d)
        .opt("--timeout", "20")
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with(&format!(
            "mailferry: error: TLS handshake with localhost:{} failed: ",
            d.imap
        )) && err.trim_end().ends_with(&tls_hint(d.imap)),
        "{err}"
    );

    // The same hint for POP3 (check is IMAP only; a backup dry run connects the same way).
    let out = Run::new("backup")
        .from(format!("pop3s://{SRC}@localhost:{}", d.pop3))
        .opt("--out", d.dir.path().join("backup"))
        .from_password_file(d.pwfile())
        .ca(&d)
        .state(d.dir.path().join("state.sqlite"))
        .arg("--dry-run")
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr(&out).trim_end().ends_with(&tls_hint(d.pop3)),
        "{}",
        text(&out)
    );

    // STARTTLS at the implicit-TLS port: the server waits for a ClientHello, no greeting.
    let out = Run::new("check")
        .arg(format!("imap://{SRC}@localhost:{}", d.imaps))
        .opt("--password-file", d.pwfile())
        .ca(&d)
        .opt("--timeout", "1")
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with(&format!(
            "mailferry: error: imap://{SRC}@localhost:{}: no IMAP greeting (",
            d.imaps
        )) && err.trim_end().ends_with(&format!(
            "); check that port {} is an IMAP port (993 for imaps://, 143 for imap://)",
            d.imaps
        )) && err.contains("timed out: the server sent nothing within --timeout"),
        "{err}"
    );
}

/// The hint for a refused login at the default host (Infomaniak), which cannot be
/// reached from a test: the line `session::open` and the POP3 login report, built by
/// `Server::login_refused` (library level; the live path is covered on localhost by
/// `password_variables_wrong_passwords_and_no_leak`).
#[test]
fn login_refused_at_the_default_host_names_the_full_address() {
    use mailferry::endpoint::{parse, Endpoint};
    let server = |url: &str| match parse(url).unwrap() {
        Endpoint::Server(s) => s,
        e => panic!("{e:?}"),
    };
    let words = "[AUTHENTICATIONFAILED] Authentication failed.";
    let infomaniak = "the username must be the full email address and the password that of the address itself (not of the Infomaniak user account)";
    for url in [
        "anna@example.ch",
        "imaps://anna@example.ch@mail.infomaniak.com",
        "imap://anna@example.ch@MAIL.Infomaniak.COM:143",
        "pop3s://anna@example.ch@mail.infomaniak.com",
    ] {
        let s = server(url);
        assert_eq!(
            s.login_refused(words),
            format!(
                "login as anna@example.ch at {}:{} refused: {words}; {infomaniak}",
                s.host, s.port
            ),
            "{url}"
        );
    }
    let s = server("imaps://anna@mail.example.ch");
    assert_eq!(
        s.login_refused(words),
        format!("login as anna at mail.example.ch:993 refused: {words}; check the username and the password")
    );
}

/// One row of a seed manifest: folder, message file, flags, INTERNALDATE.
struct Row {
    folder: &'static str,
    file: PathBuf,
    flags: &'static str,
    date: &'static str,
}

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/mail").join(name)
}

fn row(folder: &'static str, file: PathBuf, flags: &'static str, date: &'static str) -> Row {
    Row {
        folder,
        file,
        flags,
        date,
    }
}

/// Write a manifest for `scripts/seed.py` (absolute file paths) and return its path.
fn write_manifest(dir: &Path, name: &str, rows: &[Row]) -> PathBuf {
    let mut text = String::from("folder\tfile\tflags\tinternaldate\n");
    for r in rows {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            r.folder,
            r.file.display(),
            r.flags,
            r.date
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn seed_rows(d: &Dovecot, user: &str, dir: &Path, rows: &[Row]) {
    let manifest = write_manifest(dir, &format!("{user}.tsv"), rows);
    d.seed_args(user, &["--manifest", manifest.to_str().unwrap()]);
}

/// What a user should see for `rows`, folders renamed by `map`.
fn snapshot_of<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
    map: impl Fn(&str) -> String,
) -> Snapshot {
    let mut out: std::collections::BTreeMap<String, Vec<Msg>> = Default::default();
    for r in rows {
        let mut flags: Vec<String> = r.flags.split_whitespace().map(str::to_string).collect();
        flags.sort();
        out.entry(map(r.folder)).or_default().push(Msg {
            body: crlf(&std::fs::read(&r.file).unwrap()),
            flags,
            date: parse_date(r.date),
        });
    }
    for v in out.values_mut() {
        v.sort();
    }
    Snapshot(out)
}

/// `file` with `line` added right after its first header line starting with `after`.
fn with_header(dir: &Path, file: &str, after: &str, line: &str, name: &str) -> PathBuf {
    let data = std::fs::read(fixture(file)).unwrap();
    let text = String::from_utf8(data).unwrap();
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let at = text.find(after).expect("header");
    let end = at + text[at..].find('\n').unwrap() + 1;
    let out = format!("{}{line}{eol}{}", &text[..end], &text[end..]);
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

/// One source INBOX holding: two different messages with one Message-ID (05, 06),
/// an identical copy twice (07), a message and its copy with an added `X-TUID:`
/// header (same Message-ID and body), and a message without Message-ID with such a
/// copy. Each mode into a fresh target account:
/// - `none`: every source message arrives, identical copies included (8);
/// - `exact`: identical copies collapse, everything else arrives (7);
/// - `message-id`: also the X-TUID copy merges into its original; the two messages
///   that share a Message-ID but differ in body both stay, and so does the copy
///   without Message-ID (which falls back to `exact`) (6).
///
/// A second `none` run copies nothing: the checkpoints hold.
#[test]
fn dedupe_modes_end_to_end() {
    const NONE: &str = "none@target.test";
    const MID: &str = "mid@target.test";
    const EXACT: &str = "exact@target.test";
    let d = Dovecot::start(&[SRC, NONE, MID, EXACT]);
    let work = tempfile::tempdir().unwrap();
    let tuid = with_header(
        work.path(),
        "02-plain-crlf.eml",
        "Message-ID:",
        "X-TUID: 3kQx9Lz0aBcD",
        "02-tuid.eml",
    );
    let no_id_tuid = with_header(
        work.path(),
        "03-no-message-id.eml",
        "Subject:",
        "X-TUID: 7pRt2Mn4eFgH",
        "03-tuid.eml",
    );
    let rows = vec![
        row(
            "INBOX",
            fixture("05-same-message-id-a.eml"),
            "\\Seen",
            "09-Apr-2013 09:00:03 +0200",
        ),
        row(
            "INBOX",
            fixture("06-same-message-id-b.eml"),
            "\\Seen \\Flagged",
            "09-Apr-2013 09:05:41 +0200",
        ),
        row(
            "INBOX",
            fixture("07-exact-duplicate.eml"),
            "",
            "18-Oct-2019 08:00:12 +0200",
        ),
        row(
            "INBOX",
            fixture("07-exact-duplicate.eml"),
            "",
            "18-Oct-2019 08:00:12 +0200",
        ),
        row(
            "INBOX",
            fixture("02-plain-crlf.eml"),
            "\\Seen",
            "03-Jan-2006 06:31:02 -0800",
        ),
        row("INBOX", tuid, "\\Seen", "03-Jan-2006 06:31:02 -0800"),
        row(
            "INBOX",
            fixture("03-no-message-id.eml"),
            "",
            "14-Mar-2010 03:00:05 +0000",
        ),
        row("INBOX", no_id_tuid, "", "14-Mar-2010 03:00:05 +0000"),
    ];
    seed_rows(&d, SRC, work.path(), &rows);
    let same = |f: &str| f.to_string();
    assert_same(&d.snapshot(SRC), &snapshot_of(&rows, same));

    // (mode, target, rows that must arrive, copied, skipped as duplicates)
    let cases: [(&str, &str, Vec<usize>, u64, u64); 3] = [
        ("none", NONE, (0..8).collect(), 8, 0),
        ("exact", EXACT, vec![0, 1, 2, 4, 5, 6, 7], 7, 1),
        ("message-id", MID, vec![0, 1, 2, 4, 6, 7], 6, 2),
    ];
    for (mode, user, keep, copied, dups) in &cases {
        let state = work.path().join(format!("{mode}.sqlite"));
        let run = Run::migrate_within(&d, SRC, user)
            .state(&state)
            .args(["--json", "--dedupe", mode]);
        let out = run.run();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", text(&out));
        let j = json(&out);
        assert_eq!(
            (j["copied"].as_u64(), j["duplicates"].as_u64()),
            (Some(*copied), Some(*dups)),
            "{mode}: {j}"
        );
        let got = d.snapshot(user);
        let want = snapshot_of(keep.iter().map(|&i| &rows[i]), same);
        assert_same(&got, &want);
        // Both messages that share a Message-ID but differ in body arrive in every mode.
        let shared = got.0["INBOX"]
            .iter()
            .filter(|m| {
                String::from_utf8_lossy(&m.body)
                    .contains("Message-ID: <same-id-twice@example.test>")
            })
            .count();
        assert_eq!(shared, 2, "{mode}: same Message-ID, different bodies");

        if *mode == "none" {
            let out = run.run();
            assert_eq!(out.status.code(), Some(0), "{mode} again: {}", text(&out));
            let j = json(&out);
            assert_eq!(
                (j["copied"].as_u64(), j["duplicates"].as_u64()),
                (Some(0), Some(0)),
                "{mode} again: {j}"
            );
            assert_eq!(d.snapshot(user), got, "{mode} again changed the target");
        }
    }
}

/// The source marks its special-use folders only by attribute, under names no rule
/// knows (`Outgoing` \Sent, `Unfinished` \Drafts, `Bin` \Trash, `Unwanted` \Junk,
/// `Kept` \Archive, with a child `Kept/2019`). The target has no special-use
/// attributes at all:
/// - where it has conventionally named folders (`Sent Items`, `Brouillons`,
///   `Deleted Items`, `Spam`, `Archives`), the mail goes into them;
/// - where it has none, into the standard names (`Sent`, `Drafts`, `Trash`, `Spam`,
///   `Archive`).
///
/// Children follow their parent; ordinary folders keep their name.
#[test]
fn special_use_folders_map_by_name_on_a_target_without_attributes() {
    const NAMED: &str = "named@target.test";
    const EMPTY: &str = "empty@target.test";
    let src = Dovecot::start_with(
        &[SRC],
        Config {
            sent: Some("Outgoing"),
            drafts: Some("Unfinished"),
            trash: Some("Bin"),
            junk: Some("Unwanted"),
            archive: Some("Kept"),
            ..Config::default()
        },
    );
    let dst = Dovecot::start_with(
        &[NAMED, EMPTY],
        Config {
            no_special_use: true,
            ..Config::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    let rows = vec![
        row(
            "INBOX",
            fixture("01-plain-lf.eml"),
            "\\Seen",
            "02-Jan-2006 11:00:07 +0100",
        ),
        row(
            "Outgoing",
            fixture("19-sent-reply.eml"),
            "\\Seen",
            "09-Apr-2013 08:00:02 +0000",
        ),
        row(
            "Unfinished",
            fixture("21-draft.eml"),
            "\\Draft \\Seen",
            "02-Feb-2024 21:30:00 -0330",
        ),
        row(
            "Bin",
            fixture("22-trash.eml"),
            "\\Seen",
            "30-Jun-2019 19:00:22 -0500",
        ),
        row(
            "Unwanted",
            fixture("23-junk-cp1251.eml"),
            "",
            "11-Feb-2015 00:33:40 +0000",
        ),
        row(
            "Kept",
            fixture("24-projects.eml"),
            "\\Seen Work",
            "06-Jun-2019 09:31:00 +0200",
        ),
        row(
            "Kept/2019",
            fixture("28-bills-receipt.eml"),
            "\\Seen $Label1",
            "14-Jul-2021 21:00:28 +0000",
        ),
        row(
            "Projects",
            fixture("25-projects-q1.eml"),
            "\\Flagged Work",
            "29-Mar-2024 16:00:25 +0000",
        ),
    ];
    seed_rows(&src, SRC, work.path(), &rows);
    // The named target already holds one message in each conventionally named folder.
    let existing: Vec<Row> = [
        "Sent Items",
        "Brouillons",
        "Deleted Items",
        "Spam",
        "Archives",
    ]
    .into_iter()
    .map(|f| {
        row(
            f,
            fixture("29-empty-body.eml"),
            "\\Answered",
            "24-Dec-2023 11:00:29 +0000",
        )
    })
    .collect();
    seed_rows(&dst, NAMED, work.path(), &existing);

    // The set-up is what the test claims: attributes on the source, none on the target.
    let attrs = |d: &Dovecot, user: &str| -> Vec<(String, Vec<String>)> {
        let mut s = d.session(user);
        let list = s.list().unwrap();
        s.logout();
        list.into_iter()
            .map(|e| (mailferry::engine::decode_name(&e.raw), e.attrs))
            .collect()
    };
    let src_attrs = attrs(&src, SRC);
    for (name, role) in [
        ("Outgoing", "\\Sent"),
        ("Unfinished", "\\Drafts"),
        ("Bin", "\\Trash"),
        ("Unwanted", "\\Junk"),
        ("Kept", "\\Archive"),
    ] {
        assert!(
            src_attrs
                .iter()
                .any(|(n, a)| n == name && a.iter().any(|x| x == role)),
            "source {name} lacks {role}: {src_attrs:?}"
        );
    }
    let dst_attrs = attrs(&dst, NAMED);
    assert!(
        dst_attrs
            .iter()
            .all(|(_, a)| !a.iter().any(|x| mailferry::folders::ROLES
                .iter()
                .any(|r| r.eq_ignore_ascii_case(x)))),
        "the target must have no special-use attributes: {dst_attrs:?}"
    );

    for (user, map) in [
        (
            NAMED,
            [
                ("Outgoing", "Sent Items"),
                ("Unfinished", "Brouillons"),
                ("Bin", "Deleted Items"),
                ("Unwanted", "Spam"),
                ("Kept", "Archives"),
                ("Kept/2019", "Archives/2019"),
            ],
        ),
        (
            EMPTY,
            [
                ("Outgoing", "Sent"),
                ("Unfinished", "Drafts"),
                ("Bin", "Trash"),
                ("Unwanted", "Spam"),
                ("Kept", "Archive"),
                ("Kept/2019", "Archive/2019"),
            ],
        ),
    ] {
        let state = work.path().join(format!("{user}.sqlite"));
        let out = Run::new("migrate")
            .from(src.imaps_url(SRC))
            .to(dst.imaps_url(user))
            .from_password_file(src.pwfile())
            .to_password_file(dst.pwfile())
            .ca(&src)
            .state(&state)
            .arg("--json")
            .run();
        assert_eq!(out.status.code(), Some(0), "{user}: {}", text(&out));
        assert_eq!(json(&out)["copied"], rows.len(), "{user}: {}", text(&out));
        let rename = |f: &str| {
            map.iter()
                .find(|(s, _)| *s == f)
                .map_or(f.to_string(), |(_, t)| t.to_string())
        };
        let mut want = snapshot_of(&rows, rename);
        if user == NAMED {
            for (k, v) in snapshot_of(&existing, |f| f.to_string()).0 {
                let folder = want.0.entry(k).or_default();
                folder.extend(v);
                folder.sort();
            }
        }
        let got = dst.snapshot(user);
        assert_same(&got, &want);
        // The source's names were not recreated, not even empty.
        for name in ["Outgoing", "Unfinished", "Bin", "Unwanted", "Kept"] {
            assert!(
                !got.0
                    .keys()
                    .any(|k| k == name || k.starts_with(&format!("{name}/"))),
                "{user}: {name} recreated on the target: {:?}",
                got.0.keys()
            );
        }
    }
}
