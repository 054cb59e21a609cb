//! Test support: a throwaway Dovecot per test (scripts/testbed.sh), the independent
//! seeder (scripts/seed.py), the real binary, and a reader that fetches what a
//! user would check (bytes, flags, INTERNALDATE, folder names).
#![allow(dead_code)]

pub mod fake_api;
pub mod fake_imap;
pub mod fake_pop3;
pub mod servers;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mailferry::endpoint::{Proto, Security, Server};

use mailferry::imap::session;
use mailferry::net::NetOptions;
use mailferry::secret::Password;

pub const PASSWORD: &str = "s3cret-Pa55word-XYZZY";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Write a self-signed certificate `cert.pem` and its key `key.pem` into `dir`, for
/// the common name `cn` and the subjectAltName list `san` ("DNS:a,IP:1.2.3.4").
pub fn self_signed_cert(dir: &Path, cn: &str, san: &str) {
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
        ])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-addext")
        .arg(format!("subjectAltName={san}"))
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl could not make a certificate");
}

/// One certificate for the whole test process (key generation is the slow part).
fn cert_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mailferry-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        self_signed_cert(&dir, "localhost", "DNS:localhost,IP:127.0.0.1");
        dir
    })
}

#[derive(Default, Clone)]
pub struct Config {
    pub separator: Option<&'static str>,
    pub ns_prefix: Option<&'static str>,
    pub sent: Option<&'static str>,
    pub trash: Option<&'static str>,
    pub junk: Option<&'static str>,
    pub drafts: Option<&'static str>,
    /// Name of an `\Archive` folder (none by default).
    pub archive: Option<&'static str>,
    /// No special-use folders and no `\Sent`… attributes at all (`NO_SPECIAL_USE=1`).
    pub no_special_use: bool,
    pub plaintext_only: bool,
    pub quota: Option<&'static str>,
    pub max_mail_size: Option<&'static str>,
    /// Announce `APPENDLIMIT=n` after login (`APPEND_LIMIT`).
    pub append_limit: Option<&'static str>,
    /// Use this directory's cert.pem/key.pem instead of the shared test certificate.
    pub cert_dir: Option<PathBuf>,
    /// Dovecot's `mail_location` (`MAIL_LOCATION`), e.g. an mbox directory; the
    /// default is a maildir per user in the server's own directory.
    pub mail_location: Option<String>,
    /// `ADMIN:PASSWORD` of a master user that logs in to any mailbox (`MASTER_USER`).
    pub master_user: Option<String>,
    /// Where Dovecot POSTs OAuth2 tokens to check them (`OAUTH2_INTROSPECT_URL`):
    /// XOAUTH2 and OAUTHBEARER logins are offered.
    pub oauth2_introspect_url: Option<String>,
    /// The OAuth2 mechanisms offered (`OAUTH2_MECHANISMS`, default both).
    pub oauth2_mechanisms: Option<&'static str>,
}

/// A running Dovecot; stopped when dropped (also when the test panics).
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    /// No TLS at all (`Config::plaintext_only`).
    pub plaintext: bool,
}

impl Dovecot {
    pub fn start(users: &[&str]) -> Dovecot {
        Self::start_with(users, Config::default())
    }

    pub fn start_with(users: &[&str], cfg: Config) -> Dovecot {
        // A port picked free can be taken by another test before Dovecot binds it:
        // try again with new ports, and show Dovecot's own log if it still fails.
        let mut last = String::new();
        for _ in 0..4 {
            match Self::try_start(users, &cfg) {
                Ok(d) => return d,
                Err(e) => {
                    eprintln!("testbed did not start, trying other ports: {e}");
                    last = e;
                }
            }
        }
        panic!("testbed: {last}");
    }

    fn try_start(users: &[&str], cfg: &Config) -> Result<Dovecot, String> {
        let dir = tempfile::Builder::new()
            .prefix("mf-dovecot-")
            .tempdir()
            .unwrap();
        let d = Dovecot {
            imap: free_port(),
            imaps: free_port(),
            pop3: free_port(),
            pop3s: free_port(),
            plaintext: cfg.plaintext_only,
            dir,
        };
        let mut cmd = Command::new(root().join("scripts/testbed.sh"));
        cmd.arg("start").arg(d.dir.path());
        for u in users {
            cmd.arg(format!("{u}:{PASSWORD}"));
        }
        cmd.env("IMAP_PORT", d.imap.to_string())
            .env("IMAPS_PORT", d.imaps.to_string())
            .env("POP3_PORT", d.pop3.to_string())
            .env("POP3S_PORT", d.pop3s.to_string())
            .env("CERT_DIR", cfg.cert_dir.as_deref().unwrap_or(cert_dir()));
        for (k, v) in [
            ("SEPARATOR", cfg.separator),
            ("NS_PREFIX", cfg.ns_prefix),
            ("SENT", cfg.sent),
            ("TRASH", cfg.trash),
            ("JUNK", cfg.junk),
            ("DRAFTS", cfg.drafts),
            ("ARCHIVE", cfg.archive),
            ("QUOTA", cfg.quota),
            ("MAX_MAIL_SIZE", cfg.max_mail_size),
            ("APPEND_LIMIT", cfg.append_limit),
        ] {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        if let Some(loc) = &cfg.mail_location {
            cmd.env("MAIL_LOCATION", loc);
        }
        if let Some(m) = &cfg.master_user {
            cmd.env("MASTER_USER", m);
        }
        if let Some(url) = &cfg.oauth2_introspect_url {
            cmd.env("OAUTH2_INTROSPECT_URL", url);
        }
        if let Some(m) = cfg.oauth2_mechanisms {
            cmd.env("OAUTH2_MECHANISMS", m);
        }
        if cfg.plaintext_only {
            cmd.env("PLAINTEXT_ONLY", "1");
        }
        if cfg.no_special_use {
            cmd.env("NO_SPECIAL_USE", "1");
        }
        let out = cmd.output().expect("run testbed.sh");
        if !out.status.success() {
            return Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                d.log()
            ));
        }
        // Wait until the IMAPS port answers.
        let probe = if cfg.plaintext_only { d.imap } else { d.imaps };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", probe)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::write(d.dir.path().join("pw"), format!("{PASSWORD}\n")).unwrap();
        // Owner-only, as a password file should be (else mailferry warns).
        std::fs::set_permissions(
            d.pwfile(),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        Ok(d)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
    pub fn pwfile(&self) -> PathBuf {
        self.dir.path().join("pw")
    }
    pub fn imaps_url(&self, user: &str) -> String {
        format!("imaps://{user}@localhost:{}", self.imaps)
    }
    pub fn imap_url(&self, user: &str) -> String {
        format!("imap://{user}@localhost:{}", self.imap)
    }
    /// Stop the server and start it again with the same files and ports.
    /// Restart the server as a crash and a restart would: the master stopped and
    /// every process of the instance killed (its open sessions too), then started
    /// again on the same ports and files.
    pub fn restart(&self) {
        let out = Command::new(root().join("scripts/testbed.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        // Process titles carry the instance name: "dovecot-mailferry-DIR-PID/imap".
        let instance = format!(
            "dovecot-mailferry-{}-",
            self.dir.path().file_name().unwrap().to_string_lossy()
        );
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &instance])
            .status();
        // Killed is not yet gone: wait until none is left holding the ports.
        for _ in 0..100 {
            let left = Command::new("pgrep")
                .args(["-f", &instance])
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            if !left {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let ok = Command::new("dovecot")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "dovecot did not start again");
        let port = if self.plaintext {
            self.imap
        } else {
            self.imaps
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Rewrite a setting of the running server's config and reload it.
    pub fn reconfigure(&self, from: &str, to: &str) {
        let conf = self.dir.path().join("dovecot.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(text.contains(from), "{from} not in the config");
        std::fs::write(&conf, text.replace(from, to)).unwrap();
        let pid = std::fs::read_to_string(self.dir.path().join("run/master.pid")).unwrap();
        let ok = Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Put the fixture mailbox into `user` with the independent Python seeder.
    pub fn seed(&self, user: &str) {
        self.seed_args(user, &[]);
    }

    pub fn seed_args(&self, user: &str, extra: &[&str]) {
        let out = Command::new("python3")
            .arg(root().join("scripts/seed.py"))
            .args(["--host", "localhost", "--user", user])
            .args(if self.plaintext {
                vec![
                    "--port".to_string(),
                    self.imap.to_string(),
                    "--plaintext".into(),
                ]
            } else {
                vec!["--port".to_string(), self.imaps.to_string()]
            })
            .arg("--password-file")
            .arg(self.pwfile())
            .arg("--ca-file")
            .arg(self.ca())
            .arg("--manifest")
            .arg(root().join("fixtures/mail/manifest.tsv"))
            .args(extra)
            .output()
            .expect("python3 seed.py");
        assert!(
            out.status.success(),
            "seed.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn server(&self, user: &str) -> Server {
        Server {
            proto: Proto::Imap,
            security: if self.plaintext {
                Security::StartTls
            } else {
                Security::Implicit
            },
            user: user.into(),
            host: "localhost".into(),
            port: if self.plaintext {
                self.imap
            } else {
                self.imaps
            },
            mech: None,
        }
    }

    pub fn session(&self, user: &str) -> session::Session {
        let net = NetOptions {
            ca_file: Some(self.ca()),
            allow_plaintext: self.plaintext,
            ..NetOptions::default()
        };
        session::open(&self.server(user), &Password::new(PASSWORD), &net, "test").unwrap()
    }

    /// Everything a user would check, folder by folder (decoded names with `/`).
    pub fn snapshot(&self, user: &str) -> Snapshot {
        let port = if self.plaintext {
            self.imap
        } else {
            self.imaps
        };
        dump(port, user, &self.pwfile(), &self.ca(), self.plaintext)
    }

    pub fn count(&self, user: &str) -> usize {
        self.snapshot(user).0.values().map(Vec::len).sum()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/testbed.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Msg {
    pub body: Vec<u8>,
    pub flags: Vec<String>,
    /// INTERNALDATE as seconds since the epoch (servers may change the zone).
    pub date: i64,
}

impl Msg {
    pub fn subject(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.lines()
            .find(|l| l.to_ascii_lowercase().starts_with("subject:"))
            .unwrap_or("")
            .to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<String, Vec<Msg>>);

pub fn parse_date(s: &str) -> i64 {
    chrono::DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z")
        .unwrap_or_else(|e| panic!("bad INTERNALDATE {s:?}: {e}"))
        .timestamp()
}

/// The bytes a server serves for a stored file: every line ending CRLF.
pub fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 40);
    for (i, &c) in data.iter().enumerate() {
        if c == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}

/// One manifest row.
pub struct Fixture {
    pub folder: String,
    pub file: String,
    pub flags: Vec<String>,
    pub date: i64,
}

pub fn manifest() -> Vec<Fixture> {
    let text = std::fs::read_to_string(root().join("fixtures/mail/manifest.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let mut flags: Vec<String> = cols[2].split_whitespace().map(str::to_string).collect();
            flags.sort();
            Fixture {
                folder: cols[0].into(),
                file: cols[1].into(),
                flags,
                date: parse_date(cols[3]),
            }
        })
        .collect()
}

/// The snapshot the fixtures should produce, with folders renamed by `map` and
/// identical copies inside one folder collapsed (the first one's flags and date win).
pub fn expected(map: impl Fn(&str) -> String) -> Snapshot {
    expected_with(map, true)
}

/// As seeded: every manifest row, duplicates included.
pub fn seeded() -> Snapshot {
    expected_with(|f| f.to_string(), false)
}

pub fn expected_with(map: impl Fn(&str) -> String, collapse: bool) -> Snapshot {
    let mut out: BTreeMap<String, Vec<Msg>> = BTreeMap::new();
    for f in manifest() {
        let body = crlf(&std::fs::read(root().join("fixtures/mail").join(&f.file)).unwrap());
        let folder = out.entry(map(&f.folder)).or_default();
        if collapse && folder.iter().any(|m| m.body == body) {
            continue;
        }
        folder.push(Msg {
            body,
            flags: f.flags,
            date: f.date,
        });
    }
    for v in out.values_mut() {
        v.sort();
    }
    Snapshot(out)
}

/// Run the real binary.
pub fn mailferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .args(args)
        .env_remove("MAILFERRY_FROM_PASSWORD")
        .env_remove("MAILFERRY_TO_PASSWORD")
        .output()
        .expect("run mailferry")
}

/// One run of the real binary, spelled out flag by flag: each method adds the flag
/// it is named after (`.from(url)` adds `--from URL`, `.state(path)` adds
/// `--state PATH`), so a test still reads as the command line it passes. Only
/// `passwords` and `ca` take a [`Dovecot`] and add its files.
#[derive(Clone, Debug)]
pub struct Run {
    argv: Vec<String>,
}

// The methods are named after the flags they add (`--from-password-file`,
// `--to-password-file`), not after conversions.
#[allow(clippy::wrong_self_convention)]
impl Run {
    /// `mailferry COMMAND`.
    pub fn new(command: &str) -> Run {
        Run {
            argv: vec![command.to_string()],
        }
    }

    /// `migrate` from one account of `d` to another over IMAPS, with `d`'s password
    /// and CA files.
    pub fn migrate_within(d: &Dovecot, from_user: &str, to_user: &str) -> Run {
        Run::new("migrate")
            .from(d.imaps_url(from_user))
            .to(d.imaps_url(to_user))
            .passwords(d)
            .ca(d)
    }

    /// `restore --from FROM` into `user`'s account on `d` over IMAPS, with `d`'s
    /// password and CA files.
    pub fn restore_into(d: &Dovecot, from: impl AsRef<OsStr>, user: &str) -> Run {
        Run::new("restore")
            .from(from)
            .to(d.imaps_url(user))
            .to_password_file(d.pwfile())
            .ca(d)
    }

    /// One argument as it is: a flag, a positional argument or a value.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        let arg = arg.as_ref();
        let arg = arg
            .to_str()
            .unwrap_or_else(|| panic!("argument is not UTF-8: {arg:?}"));
        self.argv.push(arg.to_string());
        self
    }

    /// Several arguments as they are.
    pub fn args<A: AsRef<OsStr>>(self, args: impl IntoIterator<Item = A>) -> Run {
        args.into_iter().fold(self, Run::arg)
    }

    /// `FLAG VALUE`.
    pub fn opt(self, flag: &str, value: impl AsRef<OsStr>) -> Run {
        self.arg(flag).arg(value)
    }

    /// `--from SOURCE`: a URL, or the mbox file or directory `restore` reads.
    pub fn from(self, source: impl AsRef<OsStr>) -> Run {
        self.opt("--from", source)
    }

    /// `--to URL`.
    pub fn to(self, target: impl AsRef<OsStr>) -> Run {
        self.opt("--to", target)
    }

    /// `--from-password-file FILE`.
    pub fn from_password_file(self, file: impl AsRef<OsStr>) -> Run {
        self.opt("--from-password-file", file)
    }

    /// `--to-password-file FILE`.
    pub fn to_password_file(self, file: impl AsRef<OsStr>) -> Run {
        self.opt("--to-password-file", file)
    }

    /// `--from-password-file` and `--to-password-file`, both `d.pwfile()`.
    pub fn passwords(self, d: &Dovecot) -> Run {
        self.from_password_file(d.pwfile())
            .to_password_file(d.pwfile())
    }

    /// `--ca-file PEM`.
    pub fn ca_file(self, pem: impl AsRef<OsStr>) -> Run {
        self.opt("--ca-file", pem)
    }

    /// `--ca-file d.ca()`.
    pub fn ca(self, d: &Dovecot) -> Run {
        self.ca_file(d.ca())
    }

    /// `--state PATH`.
    pub fn state(self, path: impl AsRef<OsStr>) -> Run {
        self.opt("--state", path)
    }

    /// The arguments after the program name.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Run it through [`mailferry`] (no password in the environment) and wait.
    pub fn run(&self) -> Output {
        mailferry(&self.argv.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The binary with these arguments and nothing else set, for a test that adds
    /// environment variables or output pipes, or spawns it.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailferry"));
        c.args(&self.argv);
        c
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An account's folders as an independent reader sees them: `scripts/bench_measure.py
/// dump` (Python's imaplib), never mailferry's own IMAP code, so a bug in the client
/// cannot hide a bug in the copy. Folder names decoded, with `/` as separator;
/// messages sorted; `\Recent` left out of the flags.
pub fn dump(port: u16, user: &str, pwfile: &Path, ca: &Path, plaintext: bool) -> Snapshot {
    let mut c = Command::new("python3");
    c.arg(root().join("scripts/bench_measure.py"))
        .args([
            "dump",
            "--host",
            "localhost",
            "--port",
            &port.to_string(),
            "--user",
            user,
        ])
        .arg("--password-file")
        .arg(pwfile)
        .arg("--ca-file")
        .arg(ca);
    if plaintext {
        c.arg("--plaintext");
    }
    let out = c.output().expect("python3");
    assert!(
        out.status.success(),
        "the dump of {user} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: BTreeMap<String, Vec<serde_json::Value>> =
        serde_json::from_slice(&out.stdout).expect("the dump's JSON");
    let folders = json
        .into_iter()
        .map(|(name, msgs)| {
            let mut msgs: Vec<Msg> = msgs
                .iter()
                .map(|m| Msg {
                    body: openssl::base64::decode_block(m["body"].as_str().unwrap()).unwrap(),
                    flags: m["flags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f.as_str().unwrap().to_string())
                        .collect(),
                    date: m["date"].as_i64().unwrap(),
                })
                .collect();
            msgs.sort();
            (name, msgs)
        })
        .collect();
    Snapshot(folders)
}

/// Compare two snapshots folder by folder with a readable message.
/// Empty folders are compared by the callers that care about them.
pub fn assert_same(got: &Snapshot, want: &Snapshot) {
    let gk: Vec<&String> = got
        .0
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k)
        .collect();
    let wk: Vec<&String> = want
        .0
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(gk, wk, "folder names differ");
    for (name, w) in want.0.iter().filter(|(_, v)| !v.is_empty()) {
        let g = &got.0[name];
        assert_eq!(
            g.len(),
            w.len(),
            "{name}: message count ({:?} vs {:?})",
            g.iter().map(Msg::subject).collect::<Vec<_>>(),
            w.iter().map(Msg::subject).collect::<Vec<_>>()
        );
        for (a, b) in g.iter().zip(w) {
            assert!(a.body == b.body, "{name}: bytes differ for {}", b.subject());
            assert_eq!(a.flags, b.flags, "{name}: flags of {}", b.subject());
            assert_eq!(a.date, b.date, "{name}: INTERNALDATE of {}", b.subject());
        }
    }
}

/// When a connection was accepted, and when its close was seen.
type Span = (Instant, Option<Instant>);

/// Counts connections through one or more [`CountingProxy`]s: the total, and when
/// each was open, for [`ConnCounter::peak`].
#[derive(Clone, Default)]
pub struct ConnCounter {
    pub total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    spans: std::sync::Arc<std::sync::Mutex<Vec<Span>>>,
}

impl ConnCounter {
    /// The proxy learns of a close only when its thread reads the end of the stream,
    /// a moment after the client closed (and perhaps already opened its next
    /// connection); a close is taken as this much earlier than it was seen.
    pub const CLOSE_SLACK: Duration = Duration::from_millis(100);

    /// The most connections open at once. A client that really held one too many
    /// for longer than [`ConnCounter::CLOSE_SLACK`] is seen.
    pub fn peak(&self) -> usize {
        let spans = self.spans.lock().unwrap();
        let mut events: Vec<(Instant, i32)> = Vec::new();
        for &(open, closed) in spans.iter() {
            match closed {
                Some(c) => {
                    let c = c.checked_sub(Self::CLOSE_SLACK).unwrap_or(c);
                    if c > open {
                        events.push((open, 1));
                        events.push((c, -1));
                    }
                }
                None => events.push((open, 1)),
            }
        }
        // At one instant, closes count before opens.
        events.sort();
        let (mut now, mut peak) = (0i32, 0i32);
        for (_, delta) in events {
            now += delta;
            peak = peak.max(now);
        }
        peak as usize
    }
}

/// A TCP forwarder in front of a server port that counts the connections the
/// server sees, for `--max-per-host` tests.
pub struct CountingProxy {
    pub port: u16,
}

impl CountingProxy {
    pub fn start(server_port: u16, counter: &ConnCounter) -> CountingProxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let c = counter.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                c.total.fetch_add(1, Ordering::SeqCst);
                let spans = c.spans.clone();
                let me = {
                    let mut spans = spans.lock().unwrap();
                    spans.push((Instant::now(), None));
                    spans.len() - 1
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let (mut c, mut s) = (c2, s2);
                    let _ = std::io::copy(&mut c, &mut s);
                    spans.lock().unwrap()[me].1 = Some(Instant::now());
                    let _ = s.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut c, mut s) = (client, server);
                    let _ = std::io::copy(&mut s, &mut c);
                    let _ = c.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CountingProxy { port }
    }
}

/// What a [`FaultProxy`] does, once, to whichever connection reaches the point first.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Cut both ways once the client sent this many bytes (e.g. inside an APPEND literal).
    CutAfterClientBytes(usize),
    /// Cut once the server sent this many bytes (e.g. inside a FETCH literal).
    CutAfterServerBytes(usize),
    /// Cut when the server's data holds `text` for the `nth` time, before the client
    /// sees that chunk (the server did the work; its OK never arrives).
    CutOnServerText(&'static str, usize),
    /// Stop forwarding (without closing) once the server sent this many bytes.
    StallAfterServerBytes(usize),
    /// When a chunk from the server holds `text` for the `nth` time (counted within
    /// chunks), forward it up to the end of that line, send the client the line
    /// `bye` (e.g. a provider's `* BYE … AccessTokenExpired`) and close both ways.
    ByeOnServerText(&'static str, usize, &'static str),
}

/// A TCP forwarder that injects one fault into the first connection to reach it
/// (with `--connections N` any of the open ones may carry the big message) and lets
/// everything else through untouched. Plaintext servers make `CutOnServerText` work.
pub struct FaultProxy {
    pub port: u16,
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultProxy {
    pub fn start(server_port: u16, fault: Fault) -> FaultProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        let fired = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let fault = (!fired.load(Ordering::SeqCst)).then(|| fault.clone());
                // Only one connection may fire it, even when two reach it together.
                let fire = {
                    let fired = fired.clone();
                    move || !fired.swap(true, Ordering::SeqCst)
                };
                let cut = Arc::new(AtomicBool::new(false));
                let kill: Arc<dyn Fn() + Send + Sync> = {
                    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    Arc::new(move || {
                        let _ = c.shutdown(std::net::Shutdown::Both);
                        let _ = s.shutdown(std::net::Shutdown::Both);
                    })
                };
                // client -> server
                {
                    let (mut c, mut s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let (fault, cut, kill) = (fault.clone(), cut.clone(), kill.clone());
                    let fire = fire.clone();
                    std::thread::spawn(move || {
                        let mut sent = 0usize;
                        let mut buf = [0u8; 4096];
                        loop {
                            let n = match c.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let mut take = n;
                            if let Some(Fault::CutAfterClientBytes(limit)) = fault {
                                if sent + n >= limit && fire() {
                                    take = limit - sent;
                                    let _ = s.write_all(&buf[..take]);
                                    cut.store(true, Ordering::SeqCst);
                                    kill();
                                    break;
                                }
                            }
                            if cut.load(Ordering::SeqCst) || s.write_all(&buf[..take]).is_err() {
                                break;
                            }
                            sent += take;
                        }
                        let _ = s.shutdown(std::net::Shutdown::Write);
                    });
                }
                // server -> client
                {
                    let (mut c, mut s) = (client, server);
                    std::thread::spawn(move || {
                        let mut got = 0usize;
                        let mut seen = 0usize;
                        let mut tail: Vec<u8> = Vec::new();
                        let mut buf = [0u8; 4096];
                        loop {
                            let n = match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let chunk = &buf[..n];
                            match &fault {
                                Some(Fault::CutAfterServerBytes(limit))
                                    if got + n >= *limit && fire() =>
                                {
                                    let _ = c.write_all(&chunk[..limit - got]);
                                    kill();
                                    break;
                                }
                                Some(Fault::StallAfterServerBytes(limit))
                                    if got + n >= *limit && fire() =>
                                {
                                    let _ = c.write_all(&chunk[..limit - got]);
                                    // Hold both sockets open and forward nothing more.
                                    std::thread::sleep(std::time::Duration::from_secs(600));
                                    break;
                                }
                                Some(Fault::ByeOnServerText(text, nth, bye)) => {
                                    let at: Vec<usize> = chunk
                                        .windows(text.len())
                                        .enumerate()
                                        .filter(|(_, w)| *w == text.as_bytes())
                                        .map(|(i, _)| i)
                                        .collect();
                                    if seen + at.len() >= *nth && fire() {
                                        let i = at[*nth - seen - 1];
                                        let end = chunk[i..]
                                            .windows(2)
                                            .position(|w| w == b"\r\n")
                                            .map_or(chunk.len(), |p| i + p + 2);
                                        let _ = c.write_all(&chunk[..end]);
                                        let _ = c.write_all(format!("{bye}\r\n").as_bytes());
                                        kill();
                                        break;
                                    }
                                    seen += at.len();
                                }
                                Some(Fault::CutOnServerText(text, nth)) => {
                                    tail.extend_from_slice(chunk);
                                    let hits = tail
                                        .windows(text.len())
                                        .filter(|w| *w == text.as_bytes())
                                        .count();
                                    if seen + hits >= *nth && fire() {
                                        kill();
                                        break;
                                    }
                                    seen += hits;
                                    let keep = tail.len().saturating_sub(text.len() - 1);
                                    tail.drain(..keep);
                                }
                                _ => {}
                            }
                            if c.write_all(chunk).is_err() {
                                break;
                            }
                            got += n;
                        }
                        let _ = c.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        FaultProxy { port, connections }
    }
}

/// A scripted POP3 server for what Dovecot cannot be made to do (a server without
/// UIDL): plaintext, USER/PASS, STAT, LIST, RETR (dot-stuffed), QUIT; UIDL and
/// anything else answer -ERR. Serves connections one after the other.
pub struct ScriptedPop3 {
    pub port: u16,
}

impl ScriptedPop3 {
    pub fn start(messages: Vec<Vec<u8>>) -> ScriptedPop3 {
        use std::io::{BufRead, BufReader, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let _ = w.write_all(b"+OK scripted POP3 ready\r\n");
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let cmd: Vec<&str> = line.trim_end().split(' ').collect();
                    let reply: Vec<u8> = match cmd[0].to_ascii_uppercase().as_str() {
                        "CAPA" => b"+OK\r\nUSER\r\nTOP\r\n.\r\n".to_vec(),
                        "USER" | "PASS" | "NOOP" => b"+OK\r\n".to_vec(),
                        "STAT" => format!(
                            "+OK {} {}\r\n",
                            messages.len(),
                            messages.iter().map(Vec::len).sum::<usize>()
                        )
                        .into_bytes(),
                        "LIST" => {
                            let mut v = b"+OK\r\n".to_vec();
                            for (i, m) in messages.iter().enumerate() {
                                v.extend_from_slice(
                                    format!("{} {}\r\n", i + 1, m.len()).as_bytes(),
                                );
                            }
                            v.extend_from_slice(b".\r\n");
                            v
                        }
                        "RETR" => match cmd
                            .get(1)
                            .and_then(|n| n.parse::<usize>().ok())
                            .and_then(|n| messages.get(n.wrapping_sub(1)))
                        {
                            Some(m) => {
                                let mut v = b"+OK\r\n".to_vec();
                                for l in m.split_inclusive(|&c| c == b'\n') {
                                    if l.starts_with(b".") {
                                        v.push(b'.');
                                    }
                                    v.extend_from_slice(l);
                                }
                                v.extend_from_slice(b".\r\n");
                                v
                            }
                            None => b"-ERR no such message\r\n".to_vec(),
                        },
                        "QUIT" => {
                            let _ = w.write_all(b"+OK bye\r\n");
                            break;
                        }
                        _ => b"-ERR unknown command\r\n".to_vec(),
                    };
                    if w.write_all(&reply).is_err() {
                        break;
                    }
                }
            }
        });
        ScriptedPop3 { port }
    }
}

/// How a bounded run ended.
pub struct Bounded {
    pub out: Output,
    pub secs: f64,
    /// Peak resident memory (VmHWM), MB.
    pub peak_mb: u64,
    /// Whether it had to be killed at the limit.
    pub killed: bool,
}

/// Run mailferry, sampling its peak memory, killed after `limit` (so a test of a
/// hang or a runaway fails instead of hanging or eating the machine; also killed
/// past 2 GB of memory).
pub fn run_bounded(cmd: Command, limit: Duration) -> Bounded {
    run_bounded_mem(cmd, limit, 2048)
}

/// As [`run_bounded`], killed past `max_mb` of resident memory instead.
pub fn run_bounded_mem(mut cmd: Command, limit: Duration, max_mb: u64) -> Bounded {
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let (mut peak_kb, mut killed) = (0u64, false);
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit || peak_kb / 1024 > max_mb {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Bounded {
        out,
        secs: started.elapsed().as_secs_f64(),
        peak_mb: peak_kb / 1024,
        killed,
    }
}
