//! Servers: a throwaway Dovecot per test (scripts/testbed.sh) with its ports,
//! passwords and certificate, restarted or reconfigured at will, and seeded by the
//! independent Python seeder (scripts/seed.py).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mailferry::endpoint::{Proto, Security, Server};
use mailferry::imap::session;
use mailferry::net::NetOptions;
use mailferry::secret::Password;

use super::*;

pub const PASSWORD: &str = "s3cret-Pa55word-XYZZY";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
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
pub fn cert_dir() -> &'static Path {
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

    /// The folders `user` subscribes to (LSUB, read with Python's imaplib over
    /// IMAPS), as the server names them.
    pub fn subscribed(&self, user: &str) -> Vec<String> {
        let script = format!(
            "import imaplib, ssl\n\
             ctx = ssl.create_default_context(cafile={ca:?})\n\
             im = imaplib.IMAP4_SSL('localhost', {port}, ssl_context=ctx)\n\
             im.login({user:?}, open({pw:?}).read().strip())\n\
             for l in im.lsub()[1] or []:\n    \
                 print(l.decode().rsplit(' ', 1)[1].strip('\"'))\n\
             im.logout()\n",
            ca = self.ca().display().to_string(),
            port = self.imaps,
            pw = self.pwfile().display().to_string(),
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "LSUB of {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
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
