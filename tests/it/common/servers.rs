//! Test beds beyond Dovecot: Cyrus IMAP 3.6 (with its POP3 server) in two layouts and
//! Courier-IMAP 5.0 with Courier POP3, started per test like `Dovecot` by
//! `scripts/testbed-cyrus.sh` and `scripts/testbed-courier.sh` on free loopback ports,
//! with the shared self-signed test certificate (trusted through `ca()`, never by
//! turning verification off). `scripts/install-deps.sh` unpacks both servers beside
//! Dovecot.
//!
//! A [`MailServer`] offers what tests use of a `Dovecot`: URLs, the CA and password
//! files, seeding with `scripts/seed.py`, and a [`Snapshot`] read back over IMAPS. The
//! snapshot holds the personal namespace only, with the personal prefix (`INBOX.` on
//! Cyrus's default layout and Courier) taken off and `/` as separator, so it compares
//! with a Dovecot snapshot and with [`expected`] directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{cert_dir, free_port, root, Msg, Snapshot, PASSWORD};
use mailferry::endpoint::{Proto, Security, Server};
use mailferry::engine::decode_name;
use mailferry::imap::session;
use mailferry::net::NetOptions;
use mailferry::secret::Password;

/// Cyrus's namespace layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Cyrus's default: personal folders under `INBOX.`, `.` as separator; other
    /// users' folders under `user.`, shared folders at the top level.
    Default,
    /// `altnamespace: yes` + `unixhierarchysep: yes`: no prefix, `/` as separator;
    /// `Other Users/` and `Shared Folders/`.
    AltNamespace,
}

/// A server family of the test bed (Dovecot is `Dovecot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Cyrus(Layout),
    Courier,
}

impl Family {
    /// Every family besides Dovecot, for tests that run against each.
    pub const ALL: [Family; 3] = [
        Family::Cyrus(Layout::Default),
        Family::Cyrus(Layout::AltNamespace),
        Family::Courier,
    ];

    pub fn start(self, users: &[&str]) -> MailServer {
        match self {
            Family::Cyrus(layout) => Cyrus::start(users, layout),
            Family::Courier => Courier::start(users),
        }
    }

    /// A short name for messages: `cyrus`, `cyrus-altnamespace`, `courier`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Cyrus(Layout::Default) => "cyrus",
            Family::Cyrus(Layout::AltNamespace) => "cyrus-altnamespace",
            Family::Courier => "courier",
        }
    }

    /// The personal namespace prefix as the server spells it.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Cyrus(Layout::AltNamespace) => "",
            _ => "INBOX.",
        }
    }

    pub fn separator(self) -> char {
        match self {
            Family::Cyrus(Layout::AltNamespace) => '/',
            _ => '.',
        }
    }

    fn script(self) -> &'static str {
        match self {
            Family::Cyrus(_) => "scripts/testbed-cyrus.sh",
            Family::Courier => "scripts/testbed-courier.sh",
        }
    }
}

/// Cyrus IMAP + Cyrus POP3 (`scripts/testbed-cyrus.sh`).
pub struct Cyrus;

impl Cyrus {
    /// Users log in as given (`user@domain`) with [`PASSWORD`]; each has INBOX, Sent,
    /// Drafts, Trash and Junk (special-use), created by Cyrus at the first login.
    pub fn start(users: &[&str], layout: Layout) -> MailServer {
        MailServer::start(Family::Cyrus(layout), users)
    }
}

/// Courier-IMAP + Courier POP3 (`scripts/testbed-courier.sh`).
pub struct Courier;

impl Courier {
    /// Users log in as given with [`PASSWORD`]; each has INBOX, INBOX.Sent,
    /// INBOX.Drafts, INBOX.Trash and INBOX.Junk (Courier has no special-use).
    pub fn start(users: &[&str]) -> MailServer {
        MailServer::start(Family::Courier, users)
    }
}

/// A running Cyrus or Courier; stopped when dropped (also when the test panics).
pub struct MailServer {
    pub family: Family,
    pub dir: tempfile::TempDir,
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
}

impl MailServer {
    fn start(family: Family, users: &[&str]) -> MailServer {
        // As for Dovecot: a port picked free can be taken before the server binds it.
        let mut last = String::new();
        for _ in 0..4 {
            match Self::try_start(family, users) {
                Ok(s) => return s,
                Err(e) => {
                    eprintln!("{} did not start, trying other ports: {e}", family.name());
                    last = e;
                }
            }
        }
        panic!("{}: {last}", family.name());
    }

    fn try_start(family: Family, users: &[&str]) -> Result<MailServer, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mf-{}-", family.name()))
            .tempdir()
            .unwrap();
        // A port picked free can also be taken by another test's server, which then
        // answers in place of this one, with the same user names and password: a
        // user only this instance has, logged in first (by the start script over
        // IMAPS, and below over POP3S), proves the ports are this instance's.
        let sentinel = format!(
            "bed-{}@testbed.test",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "")
        );
        let users: Vec<&str> = std::iter::once(sentinel.as_str())
            .chain(users.iter().copied())
            .collect();
        let s = MailServer {
            family,
            imap: free_port(),
            imaps: free_port(),
            pop3: free_port(),
            pop3s: free_port(),
            dir,
        };
        let mut cmd = Command::new(root().join(family.script()));
        cmd.arg("start").arg(s.dir.path());
        for u in users {
            cmd.arg(format!("{u}:{PASSWORD}"));
        }
        cmd.env("IMAP_PORT", s.imap.to_string())
            .env("IMAPS_PORT", s.imaps.to_string())
            .env("POP3_PORT", s.pop3.to_string())
            .env("POP3S_PORT", s.pop3s.to_string())
            .env("CERT_DIR", cert_dir());
        if let Family::Cyrus(layout) = family {
            cmd.env(
                "LAYOUT",
                match layout {
                    Layout::Default => "default",
                    Layout::AltNamespace => "altnamespace",
                },
            );
        }
        let out = cmd.output().expect("run the test bed script");
        if !out.status.success() {
            // Drop stops whatever did start.
            return Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                s.log()
            ));
        }
        std::fs::write(s.dir.path().join("pw"), format!("{PASSWORD}\n")).unwrap();
        let pop = Command::new("python3")
            .arg("-c")
            .arg(
                r#"
import poplib, ssl, sys
port, ca, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
pop = poplib.POP3_SSL("localhost", port, context=ssl.create_default_context(cafile=ca), timeout=10)
pop.user(user)
pop.pass_(pw)
pop.quit()
"#,
            )
            .arg(s.pop3s.to_string())
            .arg(s.ca())
            .arg(&sentinel)
            .arg(PASSWORD)
            .output()
            .expect("python3");
        if !pop.status.success() {
            return Err(format!(
                "POP3S port {} is not this instance's: {}",
                s.pop3s,
                String::from_utf8_lossy(&pop.stderr)
            ));
        }
        Ok(s)
    }

    pub fn name(&self) -> &'static str {
        self.family.name()
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
    pub fn pop3s_url(&self, user: &str) -> String {
        format!("pop3s://{user}@localhost:{}", self.pop3s)
    }

    /// What the daemons printed (Courier: everything it logs; Cyrus logs to syslog,
    /// so only the master's own start-up messages).
    pub fn log(&self) -> String {
        let file = match self.family {
            Family::Cyrus(_) => "cyrus.log",
            Family::Courier => "courier.log",
        };
        std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }

    /// The server's own name of a folder given with `/` (as in the manifest):
    /// `Projects/2024` is `INBOX.Projects.2024` on Courier.
    pub fn folder(&self, name: &str) -> String {
        if name.eq_ignore_ascii_case("INBOX") {
            return "INBOX".into();
        }
        format!(
            "{}{}",
            self.family.prefix(),
            name.replace('/', &self.family.separator().to_string())
        )
    }

    /// Put the fixture mailbox into `user` with the independent Python seeder.
    pub fn seed(&self, user: &str) {
        self.seed_args(user, &[]);
    }

    pub fn seed_args(&self, user: &str, extra: &[&str]) {
        let out = Command::new("python3")
            .arg(root().join("scripts/seed.py"))
            .args(["--host", "localhost", "--user", user])
            .args(["--port", &self.imaps.to_string()])
            .args(["--folder-prefix", self.family.prefix()])
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
            "seed.py into {}: {}",
            self.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run IMAP commands as `user` with Python's imaplib over IMAPS (independent of
    /// mailferry): each `(command, args)` pair must answer OK. For set-ups the seeder
    /// does not cover (ACLs, folders with odd names).
    pub fn imap_commands(&self, user: &str, commands: &[(&str, &str)]) {
        let script = r#"
import imaplib, ssl, sys
port, ca, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
imap = imaplib.IMAP4_SSL("localhost", port, ssl_context=ssl.create_default_context(cafile=ca))
imap.login(user, pw)
args = sys.argv[5:]
for cmd, arg in zip(args[0::2], args[1::2]):
    typ, data = imap._simple_command(cmd, arg) if arg else imap._simple_command(cmd)
    if typ != "OK":
        sys.exit("%s %s: %s %r" % (cmd, arg, typ, data))
imap.logout()
"#;
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(script)
            .arg(self.imaps.to_string())
            .arg(self.ca())
            .arg(user)
            .arg(PASSWORD);
        for (c, a) in commands {
            cmd.arg(c).arg(a);
        }
        let out = cmd.output().expect("python3");
        assert!(
            out.status.success(),
            "IMAP commands on {}: {}",
            self.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// APPEND `message` to the server's folder `folder` (its own spelling, see
    /// [`MailServer::folder`]) as `user`, with imaplib; the folder is created first
    /// when missing.
    pub fn append(&self, user: &str, folder: &str, message: &[u8]) {
        append_over_imaps(self.imaps, &self.ca(), user, folder, message);
    }

    pub fn server(&self, user: &str) -> Server {
        Server {
            proto: Proto::Imap,
            security: Security::Implicit,
            user: user.into(),
            host: "localhost".into(),
            port: self.imaps,
            mech: None,
        }
    }

    pub fn session(&self, user: &str) -> session::Session {
        let net = NetOptions {
            ca_file: Some(self.ca()),
            ..NetOptions::default()
        };
        session::open(&self.server(user), &Password::new(PASSWORD), &net, "test").unwrap()
    }

    /// The personal folder of a LIST name, with `/` as separator and the personal
    /// prefix taken off; `None` for other users' and shared folders.
    fn personal(&self, name: &str, delim: Option<char>) -> Option<String> {
        if name.eq_ignore_ascii_case("INBOX") {
            return Some("INBOX".into());
        }
        let rest = match self.family {
            Family::Cyrus(Layout::AltNamespace) => {
                if name.starts_with("Other Users/") || name.starts_with("Shared Folders/") {
                    return None;
                }
                name
            }
            _ => name.strip_prefix(self.family.prefix())?,
        };
        Some(match delim {
            Some(d) => rest.replace(d, "/"),
            None => rest.to_string(),
        })
    }

    /// Everything a user would check in the personal namespace, folder by folder
    /// (names as in the manifest: `/` as separator, no `INBOX.` prefix), read by
    /// the independent reader ([`super::dump`]), not by mailferry's own client.
    pub fn snapshot(&self, user: &str) -> Snapshot {
        let all = super::dump(self.imaps, user, &self.pwfile(), &self.ca(), false);
        let prefix = self.family.prefix().replace(self.family.separator(), "/");
        Snapshot(
            all.0
                .into_iter()
                .filter_map(|(name, msgs)| {
                    let personal = if name.eq_ignore_ascii_case("INBOX") {
                        Some("INBOX".to_string())
                    } else if name.starts_with("Other Users/")
                        || name.starts_with("Shared Folders/")
                    {
                        None
                    } else {
                        name.strip_prefix(prefix.as_str()).map(str::to_string)
                    };
                    personal.map(|n| (n, msgs))
                })
                .collect(),
        )
    }

    /// Every folder LIST shows `user`, as the server spells it (decoded), other
    /// users' and shared folders included.
    pub fn folders(&self, user: &str) -> Vec<String> {
        let mut s = self.session(user);
        let mut v: Vec<String> = s
            .list()
            .unwrap()
            .iter()
            .map(|e| decode_name(&e.raw))
            .collect();
        s.logout();
        v.sort();
        v
    }

    /// The special-use attributes of the personal folders (names as in
    /// [`MailServer::snapshot`]), lower-cased: Cyrus spells them `\sent`.
    pub fn special_use(&self, user: &str) -> BTreeMap<String, Vec<String>> {
        let mut s = self.session(user);
        let mut out = BTreeMap::new();
        for e in s.list().unwrap() {
            let Some(name) = self.personal(&decode_name(&e.raw), e.delim) else {
                continue;
            };
            let uses: Vec<String> = e
                .attrs
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .filter(|a| {
                    [
                        "\\sent",
                        "\\drafts",
                        "\\trash",
                        "\\junk",
                        "\\archive",
                        "\\all",
                        "\\flagged",
                    ]
                    .contains(&a.as_str())
                })
                .collect();
            if !uses.is_empty() {
                out.insert(name, uses);
            }
        }
        s.logout();
        out
    }

    /// Cyrus only: every mailbox of the instance (its internal name, `domain!user.name`)
    /// with its unique id (the MAILBOXID), read from the mailbox list with
    /// `ctl_mboxlist -d`. Cyrus 3.6 keeps a mailbox's files in a directory named after
    /// that id, so two mailboxes sharing one share their messages.
    pub fn mailbox_ids(&self) -> Vec<(String, String)> {
        assert!(
            matches!(self.family, Family::Cyrus(_)),
            "mailbox_ids: Cyrus only"
        );
        let cyrus = std::env::var("MAILFERRY_TESTBED_ROOT")
            .unwrap_or_else(|_| "/opt/mailferry-testbed".into())
            + "/cyrus";
        let out = Command::new(format!("{cyrus}/usr/lib/cyrus/bin/ctl_mboxlist"))
            .arg("-C")
            .arg(self.dir.path().join("imapd.conf"))
            .arg("-d")
            .env(
                "LD_LIBRARY_PATH",
                format!("{cyrus}/usr/lib/x86_64-linux-gnu"),
            )
            .output()
            .expect("ctl_mboxlist");
        assert!(out.status.success(), "ctl_mboxlist: {}", text_of(&out));
        let dump: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ctl_mboxlist -d: {e}: {}", text_of(&out)));
        dump.as_object()
            .expect("ctl_mboxlist -d gives an object")
            .iter()
            .map(|(name, e)| {
                (
                    name.clone(),
                    e["uniqueid"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    pub fn count(&self, user: &str) -> usize {
        self.snapshot(user).0.values().map(Vec::len).sum()
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = Command::new(root().join(self.family.script()))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn text_of(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `migrate` between any two servers of the test bed over IMAPS: the password files
/// of both sides (they hold the same [`PASSWORD`]) and a CA file that trusts both
/// (they share the test certificate).
pub fn migrate_between(from: String, to: String, pwfile: PathBuf, ca: PathBuf) -> super::Run {
    super::Run::new("migrate")
        .from(from)
        .to(to)
        .from_password_file(&pwfile)
        .to_password_file(&pwfile)
        .ca_file(ca)
}

/// APPEND `message` to `folder` (the server's own spelling) of `user` on the IMAPS
/// port `port` of localhost with Python's imaplib (independent of mailferry),
/// creating the folder first when LIST does not show it. Any test server will do
/// (Dovecot too: `append_over_imaps(d.imaps, &d.ca(), …)`).
pub fn append_over_imaps(port: u16, ca: &Path, user: &str, folder: &str, message: &[u8]) {
    let script = r#"
import imaplib, ssl, sys
port, ca, user, pw, folder, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
imap = imaplib.IMAP4_SSL("localhost", port, ssl_context=ssl.create_default_context(cafile=ca))
imap.login(user, pw)
q = '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
typ, data = imap.list('""', q)
if not [d for d in data if d]:
    typ, data = imap.create(q)
    if typ != "OK":
        sys.exit("CREATE %s: %r" % (q, data))
typ, data = imap.append(q, None, None, open(path, "rb").read())
if typ != "OK":
    sys.exit("APPEND %s: %r" % (q, data))
imap.logout()
"#;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), message).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(ca)
        .arg(user)
        .arg(PASSWORD)
        .arg(folder)
        .arg(file.path())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "append to {folder} on port {port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The special-use attributes of `d`'s folders (names as in [`Dovecot::snapshot`]),
/// lower-cased, as [`MailServer::special_use`] gives them.
pub fn dovecot_special_use(d: &super::Dovecot, user: &str) -> BTreeMap<String, Vec<String>> {
    let mut s = d.session(user);
    let mut out = BTreeMap::new();
    for e in s.list().unwrap() {
        let mut name = decode_name(&e.raw);
        if let Some(delim) = e.delim {
            name = name.replace(delim, "/");
        }
        let uses: Vec<String> = e
            .attrs
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .filter(|a| SPECIAL_USES.contains(&a.as_str()))
            .collect();
        if !uses.is_empty() {
            out.insert(name, uses);
        }
    }
    s.logout();
    out
}

const SPECIAL_USES: [&str; 7] = [
    "\\sent",
    "\\drafts",
    "\\trash",
    "\\junk",
    "\\archive",
    "\\all",
    "\\flagged",
];

/// The fixtures' special-use folders and the attribute each stands for.
pub const FIXTURE_SPECIAL: [(&str, &str); 4] = [
    ("Sent", "\\sent"),
    ("Drafts", "\\drafts"),
    ("Trash", "\\trash"),
    ("Junk", "\\junk"),
];

/// Any server of the test bed, Dovecot included, behind one interface, for tests
/// that run the same case between every pair of families.
pub enum Bed {
    /// A Dovecot with `.` as separator and special-use folders named `Sent Items`,
    /// `Drafts`, `Deleted Items` and `Spam` (not the fixtures' names, so that the
    /// special-use mapping shows in both directions).
    Dovecot(super::Dovecot),
    Other(MailServer),
}

impl Bed {
    /// Dovecot's special-use folder names on a [`Bed::dovecot`].
    pub const DOVECOT_SPECIAL: [(&'static str, &'static str); 4] = [
        ("Sent Items", "\\sent"),
        ("Drafts", "\\drafts"),
        ("Deleted Items", "\\trash"),
        ("Spam", "\\junk"),
    ];

    pub fn dovecot(users: &[&str]) -> Bed {
        Bed::Dovecot(super::Dovecot::start_with(
            users,
            super::Config {
                separator: Some("."),
                sent: Some("Sent Items"),
                trash: Some("Deleted Items"),
                junk: Some("Spam"),
                ..super::Config::default()
            },
        ))
    }

    pub fn start(family: Family, users: &[&str]) -> Bed {
        Bed::Other(family.start(users))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Bed::Dovecot(_) => "dovecot",
            Bed::Other(s) => s.name(),
        }
    }

    pub fn family(&self) -> Option<Family> {
        match self {
            Bed::Dovecot(_) => None,
            Bed::Other(s) => Some(s.family),
        }
    }

    pub fn imaps_url(&self, user: &str) -> String {
        match self {
            Bed::Dovecot(d) => d.imaps_url(user),
            Bed::Other(s) => s.imaps_url(user),
        }
    }

    pub fn pop3s_url(&self, user: &str) -> String {
        match self {
            Bed::Dovecot(d) => format!("pop3s://{user}@localhost:{}", d.pop3s),
            Bed::Other(s) => s.pop3s_url(user),
        }
    }

    pub fn pwfile(&self) -> PathBuf {
        match self {
            Bed::Dovecot(d) => d.pwfile(),
            Bed::Other(s) => s.pwfile(),
        }
    }

    pub fn ca(&self) -> PathBuf {
        match self {
            Bed::Dovecot(d) => d.ca(),
            Bed::Other(s) => s.ca(),
        }
    }

    pub fn dir(&self) -> &Path {
        match self {
            Bed::Dovecot(d) => d.dir.path(),
            Bed::Other(s) => s.dir.path(),
        }
    }

    pub fn log(&self) -> String {
        match self {
            Bed::Dovecot(d) => d.log(),
            Bed::Other(s) => s.log(),
        }
    }

    /// The personal folders with their messages (names with `/`, no prefix).
    pub fn snapshot(&self, user: &str) -> Snapshot {
        match self {
            Bed::Dovecot(d) => d.snapshot(user),
            Bed::Other(s) => s.snapshot(user),
        }
    }

    /// Special-use attributes by folder (empty on Courier, which has none).
    pub fn special_use(&self, user: &str) -> BTreeMap<String, Vec<String>> {
        match self {
            Bed::Dovecot(d) => dovecot_special_use(d, user),
            Bed::Other(s) => s.special_use(user),
        }
    }

    /// Whether the server marks its special-use folders (RFC 6154).
    pub fn has_special_use(&self) -> bool {
        self.family() != Some(Family::Courier)
    }

    /// The folder (snapshot form) the user has for a special use (`\sent`…):
    /// where a mail client, and mailferry, put that mail on this server.
    pub fn special(&self, usage: &str) -> &'static str {
        let table: &[(&'static str, &str)] = match self {
            Bed::Dovecot(_) => &Self::DOVECOT_SPECIAL,
            Bed::Other(_) => &FIXTURE_SPECIAL,
        };
        table
            .iter()
            .find(|(_, u)| *u == usage)
            .map(|(f, _)| *f)
            .unwrap_or_else(|| panic!("no {usage} folder"))
    }

    /// The fixture folder `folder` as seeded on this server: the special-use ones
    /// go to the server's own special-use folders.
    pub fn seeded_name(&self, folder: &str) -> String {
        match FIXTURE_SPECIAL.iter().find(|(f, _)| *f == folder) {
            Some((_, usage)) => self.special(usage).to_string(),
            None => folder.to_string(),
        }
    }

    /// The bytes this server keeps of a message APPENDed to it: Cyrus turns every
    /// 8-bit byte of the header into `X`, Courier adds a final CRLF to a message
    /// without one; Dovecot keeps every byte.
    pub fn stores(&self, body: &[u8]) -> Vec<u8> {
        match self.family() {
            None => body.to_vec(),
            Some(Family::Cyrus(_)) => {
                let end = body
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(body.len());
                let mut out = body.to_vec();
                for c in &mut out[..end] {
                    if *c >= 0x80 {
                        *c = b'X';
                    }
                }
                out
            }
            Some(Family::Courier) => {
                let mut out = body.to_vec();
                if !out.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                }
                out
            }
        }
    }

    /// APPEND `message` to `folder` (the server's own spelling) of `user`, with
    /// imaplib (see [`append_over_imaps`]).
    pub fn append(&self, user: &str, folder: &str, message: &[u8]) {
        match self {
            Bed::Dovecot(d) => append_over_imaps(d.imaps, &d.ca(), user, folder, message),
            Bed::Other(s) => s.append(user, folder, message),
        }
    }

    /// Put the fixture mailbox into `user` with seed.py, the special-use folders
    /// under this server's names (see [`Bed::seeded_name`]).
    pub fn seed(&self, user: &str) {
        let text = std::fs::read_to_string(root().join("fixtures/mail/manifest.tsv")).unwrap();
        let fixtures = root().join("fixtures/mail");
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            let cols: Vec<&str> = line.split('\t').collect();
            if i == 0 || cols.len() < 4 {
                out.push_str(line);
            } else {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}",
                    self.seeded_name(cols[0]),
                    fixtures.join(cols[1]).display(),
                    cols[2],
                    cols[3]
                ));
            }
            out.push('\n');
        }
        let manifest = self.dir().join(format!("manifest-{user}.tsv"));
        std::fs::write(&manifest, out).unwrap();
        let manifest = manifest.to_str().unwrap();
        match self {
            Bed::Dovecot(d) => d.seed_args(user, &["--manifest", manifest]),
            Bed::Other(s) => s.seed_args(user, &["--manifest", manifest]),
        }
    }

    /// What [`Bed::seed`] leaves on this server, as its snapshot shows it: the
    /// fixtures under [`Bed::seeded_name`], as [`Bed::stores`] keeps them.
    pub fn seeded(&self) -> Snapshot {
        let mut out: BTreeMap<String, Vec<Msg>> = BTreeMap::new();
        for (folder, msgs) in super::seeded().0 {
            let v = out.entry(self.seeded_name(&folder)).or_default();
            for m in msgs {
                v.push(Msg {
                    body: self.stores(&m.body),
                    ..m
                });
            }
        }
        for v in out.values_mut() {
            v.sort();
        }
        Snapshot(out)
    }
}
