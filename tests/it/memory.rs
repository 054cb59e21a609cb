//! Memory: what mailferry holds is bounded by its batches and the largest single
//! message, not by the size of a folder or of the account.

use std::os::unix::fs::chown;

use crate::common::*;

const SRC: &str = "mona@source.test";
const DST: &str = "mona@target.test";

/// Put a message straight into the source's Maildir INBOX (fast, no IMAP).
fn drop_into_maildir(d: &Dovecot, user: &str, name: &str, data: &[u8]) {
    let (uid, gid) = {
        let meta = std::fs::metadata(d.dir.path().join("mail")).unwrap();
        use std::os::unix::fs::MetadataExt;
        (meta.uid(), meta.gid())
    };
    let base = d.dir.path().join("mail").join(user);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(base.join(sub)).unwrap();
        chown(base.join(sub), Some(uid), Some(gid)).unwrap();
    }
    chown(&base, Some(uid), Some(gid)).unwrap();
    let path = base.join("cur").join(format!("{name}:2,S"));
    std::fs::write(&path, data).unwrap();
    chown(&path, Some(uid), Some(gid)).unwrap();
}

/// Run mailferry and sample its peak resident memory (VmHWM) until it exits.
fn run_measured(run: Run) -> (std::process::Output, u64) {
    let b = run_bounded_mem(
        run.command(),
        std::time::Duration::from_secs(3600),
        u64::MAX,
    );
    (b.out, b.peak_mb)
}

#[test]
fn a_50_mb_message_is_copied_exactly_in_bounded_memory() {
    let d = Dovecot::start(&[SRC, DST]);
    let mut msg = b"From: big@example.test\r\nSubject: fifty megabytes\r\nMessage-ID: <big@example.test>\r\n\r\n".to_vec();
    let mut x: u32 = 12345;
    while msg.len() < 50 << 20 {
        for _ in 0..76 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            msg.push(b'A' + (x >> 16) as u8 % 26);
        }
        msg.extend_from_slice(b"\r\n");
    }
    drop_into_maildir(&d, SRC, "1700000000.big.host", &msg);
    let state = d.dir.path().join("state.sqlite");
    let (out, peak_mb) = run_measured(Run::migrate_within(&d, SRC, DST).state(&state));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = d.snapshot(DST);
    assert!(
        got.0["INBOX"].len() == 1 && got.0["INBOX"][0].body == msg,
        "the 50 MB message arrived changed"
    );
    eprintln!("peak RSS for a 50 MB message: {peak_mb} MB");
    // The message is held once while it is copied (read straight into its own
    // buffer, written from it straight to the socket): the message plus a fixed
    // overhead, never a multiple of it (two copies would already break the bound).
    assert!(
        peak_mb < 50 + 40,
        "peak RSS {peak_mb} MB for a 50 MB message"
    );
}

/// A folder of 100,000 small messages: copied completely, and memory stays far
/// below what holding the folder would take: the folder is listed 2,000 messages at
/// a time, bodies are fetched in 4 MB batches, and what grows is the run's dedupe
/// fingerprints (16 bytes a message) and the folder's UIDs (4 bytes).
#[test]
fn a_folder_of_100_000_messages_in_bounded_memory() {
    let d = Dovecot::start(&[SRC, DST]);
    let n = 100_000;
    let total = fill_inbox(&d, SRC, n, "m");
    let state = d.dir.path().join("state.sqlite");
    // One pair: what is held per message, not per pair (two pairs, the default
    // on this machine, hold a second pair's batches: measured 40 MB).
    let (out, peak_mb) = run_measured(Run::migrate_within(&d, SRC, DST).state(&state).args([
        "--json",
        "--connections",
        "1",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["copied"].as_u64(), Some(n as u64), "{j}");
    eprintln!(
        "peak RSS for {n} messages ({} MB): {peak_mb} MB",
        total >> 20
    );
    // Holding the listing (~200 bytes a message) would alone take 20 MB more.
    assert!(peak_mb < 40, "peak RSS {peak_mb} MB for {n} messages");
    // The count on the target, from the server itself.
    let mut s = d.session(DST);
    assert_eq!(s.select(b"INBOX", true).unwrap().exists as usize, n);
}

/// The `i`-th small test message, Message-ID `<{tag}{i}@example.test>`.
fn small_message(tag: &str, i: usize) -> String {
    format!("From: f{i}@example.test\r\nSubject: small {i}\r\nMessage-ID: <{tag}{i}@example.test>\r\n\r\n{}\r\n", "z".repeat(200 + i % 300))
}

/// Write `n` small messages ([`small_message`]) straight into
/// `user`'s Maildir INBOX; returns their total size.
fn fill_inbox(d: &Dovecot, user: &str, n: usize, tag: &str) -> usize {
    let mut total = 0usize;
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(d.dir.path().join("mail")).unwrap();
        (meta.uid(), meta.gid())
    };
    let base = d.dir.path().join("mail").join(user);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(base.join(sub)).unwrap();
    }
    for i in 0..n {
        let msg = small_message(tag, i);
        total += msg.len();
        std::fs::write(
            base.join("cur")
                .join(format!("{}.{tag}{i}.host:2,S", 1_600_000_000 + i)),
            msg,
        )
        .unwrap();
    }
    for entry in walk(&base) {
        chown(&entry, Some(uid), Some(gid)).unwrap();
    }
    total
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![p.to_path_buf()];
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}

/// Restoring a 150 MB mbox file (1,500 messages of 100 kB, as another tool wrote it):
/// the file is read as a stream, one message at a time, so memory stays far below
/// the file's size; every message arrives byte for byte.
#[test]
fn a_150_mb_mbox_file_is_restored_in_bounded_memory() {
    let d = Dovecot::start(&[DST]);
    let n = 1_500;
    let mut file = Vec::new();
    let mut want = Vec::new();
    let mut x: u32 = 7;
    for i in 0..n {
        let mut msg = format!(
            "From: m{i}@example.test\nSubject: part {i}\nMessage-ID: <p{i}@example.test>\n\n"
        )
        .into_bytes();
        while msg.len() < 100_000 {
            for _ in 0..70 {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                msg.push(b'a' + (x >> 16) as u8 % 26);
            }
            msg.push(b'\n');
        }
        file.extend_from_slice(b"From m@example.test Thu Jan  1 00:00:00 2015\n");
        file.extend_from_slice(&msg);
        file.push(b'\n');
        want.push(msg);
    }
    let path = d.dir.path().join("big.mbox");
    std::fs::write(&path, &file).unwrap();
    drop(file);
    let state = d.dir.path().join("state.sqlite");
    let (out, peak_mb) = run_measured(
        Run::restore_into(&d, &path, DST)
            .opt("--to-folder", "INBOX")
            .state(&state),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    eprintln!("peak RSS restoring a 150 MB mbox file: {peak_mb} MB");
    // Holding the file would alone take 150 MB.
    assert!(peak_mb < 60, "peak RSS {peak_mb} MB for a 150 MB mbox file");
    // A server that stores bare-LF messages serves them with CRLF.
    let mut got: Vec<Vec<u8>> = d.snapshot(DST).0["INBOX"]
        .iter()
        .map(|m| {
            String::from_utf8(m.body.clone())
                .unwrap()
                .replace("\r\n", "\n")
                .into_bytes()
        })
        .collect();
    got.sort();
    want.sort();
    assert!(got == want, "the restored messages differ from the file's");
}

/// Restoring a mailferry backup of 100,000 messages: the manifest (flags, dates,
/// sizes, hashes: a few hundred bytes a message) is indexed by where each entry
/// starts, about 30 bytes a message, and read again per message. Checked with a dry
/// run, which lists (and checks against the manifest) every message of the backup.
#[test]
fn a_backup_of_100_000_messages_is_listed_in_bounded_memory() {
    use sha2::Digest;
    use std::io::Write;
    let d = Dovecot::start(&[DST]);
    let n = 100_000u64;
    let dir = d.dir.path().join("backup");
    std::fs::create_dir_all(&dir).unwrap();
    let mut mbox = std::io::BufWriter::new(std::fs::File::create(dir.join("INBOX.mbox")).unwrap());
    let mut manifest = std::io::BufWriter::new(
        std::fs::File::create(dir.join("mailferry-manifest.jsonl")).unwrap(),
    );
    let mut offset = 0u64;
    for i in 0..n {
        let msg = format!(
            "From: f{i}@example.test\nSubject: small {i}\nMessage-ID: <b{i}@example.test>\n\n{}\n",
            "y".repeat(100 + (i % 200) as usize)
        );
        let from = "From f@example.test Thu Jan  1 00:00:00 2015\n";
        let length = (from.len() + msg.len() + 1) as u64;
        writeln!(mbox, "{from}{msg}").unwrap();
        let entry = serde_json::json!({
            "folder": "INBOX",
            "file": "INBOX.mbox",
            "offset": offset,
            "length": length,
            "size": msg.len(),
            "sha256": format!("{:x}", sha2::Sha256::digest(msg.as_bytes())),
            "flags": ["\\Seen", "$Label1"],
            "internaldate": "01-Jan-2015 00:00:00 +0000",
            "uidvalidity": 1_700_000_000u32,
            "id": (i + 1).to_string(),
            "key": format!("mid:<b{i}@example.test>:{:x}", sha2::Sha256::digest(msg.as_bytes())),
        });
        writeln!(manifest, "{entry}").unwrap();
        offset += length;
    }
    mbox.flush().unwrap();
    manifest.flush().unwrap();
    drop((mbox, manifest));
    let state = d.dir.path().join("state.sqlite");
    let (out, peak_mb) = run_measured(
        Run::restore_into(&d, &dir, DST)
            .state(&state)
            .args(["--dry-run", "--json"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["planned"][0]["messages"].as_u64(), Some(n), "{j}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("differs from what the manifest recorded"),
        "{}",
        text(&out)
    );
    eprintln!("peak RSS listing a backup of {n} messages: {peak_mb} MB");
    // Holding the manifest's entries would alone take 30 MB more.
    assert!(
        peak_mb < 30,
        "peak RSS {peak_mb} MB for a backup of {n} messages"
    );
}

/// Copying into a target folder that already holds 100,000 messages the index does
/// not know (another tool's copy, a lost state file): what mailferry keeps of them to
/// find duplicates (a fingerprint of each Message-ID, or the size, and the UID) stays
/// small, and a message already there is not appended again.
#[test]
fn a_target_folder_of_100_000_unknown_messages_in_bounded_memory() {
    let d = Dovecot::start(&[SRC, DST]);
    let n = 100_000;
    fill_inbox(&d, DST, n, "t");
    // The source: 5 new messages, and 2 the target already has.
    let mut s = d.session(SRC);
    for i in [0usize, 1, 2, 3, 4, 7, 99_999] {
        let tag = if i < 5 { "new" } else { "t" };
        let msg = small_message(tag, i);
        s.append(&mailferry::imap::client::Append {
            mailbox: b"INBOX",
            flags: &[],
            internal_date: None,
            body: msg.as_bytes(),
        })
        .unwrap();
    }
    s.logout();
    let state = d.dir.path().join("state.sqlite");
    let (out, peak_mb) = run_measured(
        Run::migrate_within(&d, SRC, DST)
            .state(&state)
            .arg("--json"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (j["copied"].as_u64(), j["duplicates"].as_u64()),
        (Some(5), Some(2)),
        "{j}"
    );
    eprintln!("peak RSS copying into a folder of {n} unknown messages: {peak_mb} MB");
    assert!(
        peak_mb < 30,
        "peak RSS {peak_mb} MB next to {n} unknown messages"
    );
    let mut s = d.session(DST);
    assert_eq!(s.select(b"INBOX", true).unwrap().exists as usize, n + 5);
}
