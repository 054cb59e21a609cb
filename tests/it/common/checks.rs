//! What a user checks, read independently: the snapshot of an account by
//! `scripts/bench_measure.py dump` (Python's imaplib, never mailferry's client),
//! and its comparison with what is expected.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::*;

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
