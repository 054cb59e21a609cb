//! Fuzz targets run as property tests (cargo-fuzz needs a nightly compiler): the
//! readers of what a server or a file says are fed random and mutated input and
//! must return, never panic or hang, and keep their promises. Each property runs a
//! few seconds in a debug build; `PROPTEST_CASES=N` runs more of them.
//!
//! - the IMAP response parser (`imap::parse::parse_response`);
//! - the mbox reader and writer (`mbox::parse`, `mbox::Reader`, `mbox::write_message`);
//! - the backup manifest reader (`backup::each_manifest_line`, `manifest_entry_at`)
//!   and an mbox backup directory read through `MboxSource`;
//! - the POP3 client (`pop3::Client`) driven from an in-memory stream.

use std::io::{BufReader, Cursor, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config;

use mailferry::backup::{self, Entry};
use mailferry::mbox::{self, Dialect};

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Run `f` on its own thread; a case that runs longer than `limit` is a hang.
fn returns<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not return within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("panicked"),
    }
}

/// One change to a valid input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Repeat(usize, usize),
}

/// Bytes that matter to the readers, to insert more often than chance would.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\"",
    b"\\",
    b"(",
    b")",
    b"[",
    b"]",
    b"{",
    b"}",
    b"{0}\r\n",
    b"{5}\r\n",
    b"{4294967296}\r\n",
    b"{18446744073709551616}\r\n",
    b"~{3}\r\n",
    b"NIL",
    b"*",
    b"+",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b"From ",
    b">From ",
    b".",
    b"\r\n.\r\n",
    b"+OK ",
    b"-ERR ",
    b"4294967295",
    b"0",
    b"-1",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = prop_oneof![
        3 => prop::sample::select(TOKENS).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), bytes).prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1..16usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..64usize).prop_map(|(p, n)| Mutation::Repeat(p, n)),
    ]
}

fn mutate(mut data: Vec<u8>, changes: &[Mutation]) -> Vec<u8> {
    for m in changes {
        let len = data.len();
        let at = |p: usize| if len == 0 { 0 } else { p % (len + 1) };
        match m {
            Mutation::Flip(p, b) if len > 0 => data[p % len] ^= b | 1,
            Mutation::Flip(..) => {}
            Mutation::Insert(p, b) => {
                let p = at(*p);
                data.splice(p..p, b.iter().copied());
            }
            Mutation::Delete(p, n) => {
                let p = at(*p);
                let end = (p + n).min(len);
                data.drain(p..end);
            }
            Mutation::Truncate(p) => data.truncate(at(*p)),
            Mutation::Repeat(p, n) => {
                let p = at(*p);
                let end = (p + n).min(len);
                let copy = data[p..end].to_vec();
                data.splice(end..end, copy);
            }
        }
    }
    data
}

// ------------------------------------------------------------------ IMAP parser

/// What servers say, one complete response each (literals inlined).
const IMAP_RESPONSES: &[&[u8]] = &[
    b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] Dovecot ready.\r\n",
    b"* CAPABILITY IMAP4rev1 IDLE UIDPLUS MOVE ESEARCH LITERAL+ ENABLE\r\n",
    b"A1 OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n",
    b"* LIST (\\HasNoChildren) \"/\" INBOX\r\n",
    b"* LIST (\\HasChildren \\Noselect) \".\" \"Archive\"\r\n",
    b"* LIST (\\HasNoChildren \\Sent) \"/\" {9}\r\nSent Mail\r\n",
    b"* LIST () NIL \"&BBAEQARFBDgEMg-\"\r\n",
    b"* NAMESPACE ((\"\" \"/\")) NIL ((\"#shared/\" \"/\"))\r\n",
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n",
    b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n",
    b"* 23 EXISTS\r\n",
    b"* 0 RECENT\r\n",
    b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n",
    b"* OK [UIDNEXT 4392] Predicted next UID\r\n",
    b"A2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n",
    b"* SEARCH 1 2 3 5 8 13 4294967295\r\n",
    b"* ESEARCH (TAG \"A3\") UID ALL 1:5,7,9:12\r\n",
    b"* 1 FETCH (UID 7 RFC822.SIZE 1234 FLAGS (\\Seen $Label1) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n",
    b"* 2 FETCH (UID 8 RFC822.SIZE 5 FLAGS () INTERNALDATE \" 1-Jan-2020 00:00:00 +0000\" BODY[] {5}\r\nhello)\r\n",
    b"* 3 FETCH (UID 9 BODY[HEADER.FIELDS (MESSAGE-ID)] {23}\r\nMessage-ID: <a@b.c>\r\n\r\n)\r\n",
    b"* 4 FETCH (FLAGS (\\Seen \\Recent))\r\n",
    b"* 5 EXPUNGE\r\n",
    b"+ Ready for literal data\r\n",
    b"+ \r\n",
    b"A4 OK [APPENDUID 1700000000 4392] Append completed.\r\n",
    b"A5 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n",
    b"A6 NO [TRYCREATE] Mailbox doesn't exist: Foo\r\n",
    b"A7 BAD Error in IMAP command UID: Invalid arguments.\r\n",
    b"* BYE Server shutting down.\r\n",
    b"* STATUS \"INBOX\" (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1)\r\n",
    b"* ENABLED UTF8=ACCEPT\r\n",
    b"* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n",
    b"* OK [ALERT] System shutdown in 10 minutes\r\n",
    b"* PREAUTH IMAP4rev1 server logged in as Smith\r\n",
    b"* 6 FETCH (UID 10 BODY[] ~{3}\r\n\x00\x01\x02)\r\n",
];

/// Random bytes, and valid responses changed a few times: the parser returns.
/// Runs on its own thread with a time limit, so a hang is a failure, not a stuck CI.
#[test]
fn imap_parser_returns_on_random_and_mutated_responses() {
    proptest!(config(3000), |(
        random in prop::collection::vec(any::<u8>(), 0..256),
        base in prop::sample::select(IMAP_RESPONSES),
        changes in prop::collection::vec(mutation(), 1..6),
    )| {
        let mutated = mutate(base.to_vec(), &changes);
        returns(Duration::from_secs(5), move || {
            let _ = mailferry::imap::parse::parse_response(&random);
            let _ = mailferry::imap::parse::parse_response(&mutated);
            // Without its final CRLF, as a reader may hand it over.
            let bare = mutated.strip_suffix(b"\r\n").unwrap_or(&mutated);
            let _ = mailferry::imap::parse::parse_response(bare);
        });
    });
}

/// The smallest case the property above found: a response ending in `~` (a
/// literal8 marker with nothing after it) panicked in the parser's literal reader.
#[test]
fn imap_parser_does_not_panic_on_a_trailing_literal8_marker() {
    for r in [
        &b"* 6 FETCH (UID 10 BODY[] ~"[..],
        b"* 6 FETCH (BODY[] ~)\r\n",
        b"* 1 FETCH (BODY[] {",
    ] {
        let r = r.to_vec();
        returns(Duration::from_secs(5), move || {
            let _ = mailferry::imap::parse::parse_response(&r);
        });
    }
}

/// The valid responses parse (the mutations above start from something real).
#[test]
fn imap_corpus_parses() {
    for r in IMAP_RESPONSES {
        assert!(
            mailferry::imap::parse::parse_response(r).is_ok(),
            "{}",
            String::from_utf8_lossy(r)
        );
    }
}

// ------------------------------------------------------------------ mbox

/// Pieces mbox files and messages are made of.
fn mbox_piece() -> impl Strategy<Value = Vec<u8>> {
    const PIECES: &[&[u8]] = &[
        b"From ",
        b">From ",
        b">>From ",
        b"From a@b Thu Jan  1 00:00:00 1970",
        b"From MAILER-DAEMON Sat Feb 29 12:34:56 2020 +0100",
        b"From x 12:00 2024",
        b"\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"\n\n",
        b">",
        b"Subject: hi\n",
        b"body",
        b" ",
        b"\xEF\xBB\xBF",
    ];
    prop_oneof![
        4 => prop::sample::select(PIECES).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..6),
    ]
}

fn mbox_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(mbox_piece(), 0..max).prop_map(|v| v.concat())
}

/// Whether `line` matches `^>*From `.
fn quotable(line: &[u8]) -> bool {
    let n = line.iter().take_while(|&&b| b == b'>').count();
    line[n..].starts_with(b"From ")
}

/// Each message is the file's bytes after its separator line, up to the next
/// message, with at most one `>` taken off lines the dialect unquotes.
fn assert_derived(data: &[u8], entries: &[mbox::Entry], dialect: Dialect) {
    for (i, e) in entries.iter().enumerate() {
        let start = e.offset as usize;
        let end = entries.get(i + 1).map_or(data.len(), |n| n.offset as usize);
        assert!(start < end && end <= data.len(), "offsets {start}..{end}");
        assert!(
            data[start..].starts_with(&e.from_line),
            "separator at {start}"
        );
        let mut pos = start + e.from_line.len();
        for eol in [&b"\r\n"[..], b"\n"] {
            if data[pos..].starts_with(eol) {
                pos += eol.len();
                break;
            }
        }
        for line in e.message.split_inclusive(|&b| b == b'\n') {
            let unquotes = match dialect {
                Dialect::Rd => quotable(line),
                Dialect::O => line.starts_with(b"From "),
            };
            if data[pos..end].starts_with(line) {
                pos += line.len();
            } else if unquotes
                && data[pos..end].starts_with(b">")
                && data[pos + 1..end].starts_with(line)
            {
                pos += line.len() + 1;
            } else {
                panic!(
                    "message {i} line {:?} is not the file's bytes at {pos}: {:?}",
                    String::from_utf8_lossy(line),
                    String::from_utf8_lossy(&data[pos..end.min(pos + 40)])
                );
            }
        }
        assert!(pos <= end);
    }
}

/// Random and mutated files: the reader returns every message as bytes of the file
/// (its separator at its offset, the lines in order, only quoting undone); the
/// streaming reader with any buffer size gives the same, and so does starting at a
/// message's offset (how a fetch reads it).
#[test]
fn mbox_reader_on_random_and_mutated_files() {
    proptest!(config(5000), |(
        data in mbox_bytes(40),
        changes in prop::collection::vec(mutation(), 0..4),
        buffer in 1..64usize,
        rd in any::<bool>(),
    )| {
        let data = mutate(data, &changes);
        let dialect = if rd { Dialect::Rd } else { Dialect::O };
        let entries = mbox::parse(&data, dialect);
        assert_derived(&data, &entries, dialect);

        let mut r = mbox::Reader::new(BufReader::with_capacity(buffer, &data[..]), dialect, 0);
        let mut streamed = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            streamed.push(e);
        }
        prop_assert_eq!(&streamed, &entries);

        for e in &entries {
            let at = e.offset as usize;
            let mut r = mbox::Reader::new(BufReader::with_capacity(buffer, &data[at..]), dialect, e.offset);
            let first = r.next_entry().unwrap();
            prop_assert_eq!(first.as_ref(), Some(e));
        }
        for e in &entries {
            let _ = mbox::from_line_date(&e.from_line);
        }
    });
}

fn date() -> impl Strategy<Value = Option<DateTime<FixedOffset>>> {
    // Year 0 to 9999 (as an INTERNALDATE may say), any offset a FixedOffset holds.
    // The ends of that range too, where the UTC time a separator holds leaves it.
    let secs = prop_oneof![
        4 => -62_167_219_200i64..253_402_300_800i64,
        1 => -62_167_219_200i64 - 86_400..-62_167_219_200 + 86_400,
        1 => 253_402_300_800i64 - 86_400..253_402_300_800 + 86_400,
    ];
    prop::option::of((secs, -86_399i32..86_400).prop_map(|(s, z)| {
        FixedOffset::east_opt(z)
            .unwrap()
            .timestamp_opt(s, 0)
            .single()
            .unwrap()
    }))
}

/// Writing messages and reading them back is the identity (a message without a
/// final newline gets one, which the caller trims by its recorded size); each
/// separator's date reads back as written when it has a 4-digit year.
#[test]
fn mbox_write_then_read_is_the_identity() {
    let sender = prop_oneof![
        Just(String::new()),
        "[a-z@.]{1,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect::<String>()),
    ];
    proptest!(config(4000), |(
        msgs in prop::collection::vec((mbox_bytes(12), sender, date()), 0..6),
    )| {
        let mut file = Vec::new();
        let mut offsets = Vec::new();
        for (msg, sender, when) in &msgs {
            offsets.push(file.len() as u64);
            let n = mbox::write_message(&mut file, sender, *when, msg).unwrap();
            prop_assert_eq!(n, file.len() as u64 - offsets.last().unwrap());
        }
        let entries = mbox::parse(&file, Dialect::Rd);
        prop_assert_eq!(entries.len(), msgs.len(), "{:?}", String::from_utf8_lossy(&file));
        for (((msg, _, when), e), offset) in msgs.iter().zip(&entries).zip(&offsets) {
            let mut want = msg.clone();
            if !want.is_empty() && !want.ends_with(b"\n") {
                want.push(b'\n');
            }
            prop_assert_eq!(&e.message, &want);
            prop_assert_eq!(e.offset, *offset);
            let read = mbox::from_line_date(&e.from_line);
            let read = read.map(|r| r.timestamp());
            match when {
                Some(d) if (0..=9999).contains(&d.with_timezone(&Utc).year()) => {
                    prop_assert_eq!(read, Some(d.timestamp()));
                }
                // Outside the years a separator can hold: the nearest second it can.
                Some(d) => {
                    let r = read.unwrap();
                    prop_assert!((r - d.timestamp()).abs() < 86_400, "{:?}", String::from_utf8_lossy(&e.from_line));
                }
                None => prop_assert_eq!(read, Some(0)),
            }
        }
    });
}

// ------------------------------------------------------------------ manifest

fn entry() -> impl Strategy<Value = Entry> {
    (
        (
            any::<String>(),
            "[A-Za-z/ ]{1,12}\\.mbox",
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            "[0-9a-f]{64}",
            prop::collection::vec(any::<String>(), 0..3),
            prop::option::of(any::<String>()),
            any::<u32>(),
            any::<String>(),
            any::<String>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (folder, file, offset, length, size),
                (sha256, flags, internaldate, uidvalidity, id, key, duplicate),
            )| Entry {
                folder,
                file,
                offset,
                length,
                size,
                sha256,
                flags,
                internaldate,
                uidvalidity,
                id,
                key,
                duplicate,
            },
        )
}

fn line(e: &Entry) -> Vec<u8> {
    let mut v = serde_json::to_vec(e).unwrap();
    v.push(b'\n');
    v
}

/// Whole entries and a torn last line (an interrupted backup): the entries are read,
/// the torn line ignored, and cut off only with `repair`; each entry can be read
/// again from where its line starts, in any order.
#[test]
fn manifest_with_a_torn_last_line() {
    proptest!(config(400), |(
        entries in prop::collection::vec(entry(), 0..8),
        torn in entry(),
        cut in any::<prop::sample::Index>(),
        order in any::<u64>(),
    )| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(backup::DIR_MANIFEST);
        let whole: Vec<u8> = entries.iter().flat_map(line).collect();
        let torn = line(&torn);
        let torn = &torn[..cut.index(torn.len())]; // never the whole line: no newline
        std::fs::write(&path, [&whole[..], torn].concat()).unwrap();

        let mut read = Vec::new();
        backup::each_manifest_line(&path, false, |at, e| read.push((at, e))).unwrap();
        prop_assert_eq!(read.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), entries.clone());
        prop_assert_eq!(std::fs::read(&path).unwrap().len(), whole.len() + torn.len());

        // Each entry again from where its line starts, in a shuffled order.
        let mut reader = BufReader::new(std::fs::File::open(&path).unwrap());
        let mut pos = 0;
        let mut shuffled = read.clone();
        let n = shuffled.len();
        for i in 0..n {
            shuffled.swap(i, (order as usize).wrapping_add(i * 7) % n);
        }
        for (at, e) in &shuffled {
            prop_assert_eq!(&backup::manifest_entry_at(&mut reader, &mut pos, *at).unwrap(), e);
        }

        let mut again = Vec::new();
        backup::each_manifest_entry(&path, true, |e| again.push(e)).unwrap();
        prop_assert_eq!(&again, &entries);
        prop_assert_eq!(std::fs::read(&path).unwrap(), whole);
    });
}

/// Random and mutated manifests: the reader returns (entries, or an error that
/// names a line); a reader never changes the file.
#[test]
fn manifest_reader_on_random_and_mutated_lines() {
    proptest!(config(400), |(
        entries in prop::collection::vec(entry(), 0..5),
        changes in prop::collection::vec(mutation(), 0..5),
        random in prop::collection::vec(any::<u8>(), 0..200),
        use_random in any::<bool>(),
    )| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(backup::DIR_MANIFEST);
        let data = if use_random {
            random
        } else {
            mutate(entries.iter().flat_map(line).collect(), &changes)
        };
        std::fs::write(&path, &data).unwrap();
        let mut n = 0;
        match backup::each_manifest_line(&path, false, |_, _| n += 1) {
            Ok(()) => {}
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.contains(&format!("line {}", n + 1)), "{}", e);
            }
        }
        prop_assert_eq!(std::fs::read(&path).unwrap(), data);
    });
}

/// An mbox backup directory whose manifest was edited at random (offsets, sizes,
/// dates, flags, folders, files): opening, listing and fetching every folder
/// returns, and every date and flag a message carries on is a valid IMAP one.
#[test]
fn mbox_source_on_an_edited_backup() {
    use mailferry::source::mbox::MboxSource;
    use mailferry::source::Source;
    proptest!(config(400), |(
        msgs in prop::collection::vec(mbox_bytes(8), 1..5),
        edits in prop::collection::vec((any::<prop::sample::Index>(), entry()), 0..4),
        fields in prop::collection::vec(0..9u8, 0..4),
    )| {
        let dir = tempfile::tempdir().unwrap();
        let mut file = Vec::new();
        let mut entries = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let offset = file.len() as u64;
            let length = mbox::write_message(&mut file, "a@b", None, m).unwrap();
            entries.push(Entry {
                folder: if i % 2 == 0 { "INBOX".into() } else { "Other".into() },
                file: "INBOX.mbox".into(),
                offset,
                length,
                size: m.len() as u64,
                sha256: mailferry::dedupe::sha256_hex(m),
                flags: vec!["\\Seen".into()],
                internaldate: Some("01-Jan-2020 10:00:00 +0000".into()),
                uidvalidity: 1,
                id: i.to_string(),
                key: i.to_string(),
                duplicate: false,
            });
        }
        for ((which, other), field) in edits.iter().zip(fields.iter().cycle()) {
            let e = &mut entries[which.index(msgs.len())];
            match field {
                0 => e.offset = other.offset % (file.len() as u64 + 2),
                1 => e.size = other.size % (file.len() as u64 + 2),
                2 => e.internaldate = other.internaldate.clone(),
                3 => e.flags = other.flags.clone(),
                4 => e.folder = other.folder.clone(),
                5 => e.length = other.length,
                6 => e.duplicate = other.duplicate,
                7 => e.offset = other.offset,
                _ => e.file = other.file.clone(),
            }
        }
        std::fs::write(dir.path().join("INBOX.mbox"), &file).unwrap();
        let manifest: Vec<u8> = entries.iter().flat_map(line).collect();
        std::fs::write(dir.path().join(backup::DIR_MANIFEST), manifest).unwrap();

        let Ok(mut src) = MboxSource::open_path(dir.path(), Dialect::Rd) else {
            return Ok(());
        };
        let tree = src.folders().unwrap();
        for f in &tree.entries {
            let Ok(_) = src.open(&f.raw) else { continue };
            let Ok(list) = src.listing() else { continue };
            for m in &list {
                prop_assert!(m.flags.iter().all(|f| mailferry::imap::types::valid_flag(f)), "{:?}", m.flags);
                if let Some(d) = &m.internal_date {
                    prop_assert!(mailferry::imap::types::ImapDate::parse(&d.to_string()).is_some());
                }
            }
            let _ = src.fetch(&list, &mut |_, _| {});
        }
    });
}

// ------------------------------------------------------------------ POP3

/// A server's bytes to read, and what the client wrote.
struct Scripted {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Scripted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const POP3_SESSION: &[u8] = b"+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n\
+OK Capability list follows\r\nUSER\r\nTOP\r\nUIDL\r\n.\r\n\
+OK\r\n+OK Logged in.\r\n\
+OK 2 320\r\n\
+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n\
+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n\
+OK 120 octets\r\nSubject: one\r\n\r\n..dot-stuffed\r\nbody\r\n.\r\n\
+OK\r\nSubject: two\r\n\r\n.\r\n\
+OK\r\n+OK bye\r\n";

/// A whole session against a server that says random or mutated things: every
/// call returns (an answer or an error), none panics or waits forever.
#[test]
fn pop3_client_on_random_and_mutated_sessions() {
    proptest!(config(4000), |(
        changes in prop::collection::vec(mutation(), 1..6),
        random in prop::collection::vec(any::<u8>(), 0..300),
        use_random in any::<bool>(),
    )| {
        let input = if use_random { random } else { mutate(POP3_SESSION.to_vec(), &changes) };
        returns(Duration::from_secs(5), move || {
            let stream = Scripted { input: Cursor::new(input), output: Vec::new() };
            let mut c = mailferry::pop3::Client::new(stream, "fuzz");
            let _ = c.greeting();
            let _ = c.capa();
            let _ = c.login("user", "password");
            let _ = c.stat();
            let _ = c.list();
            let _ = c.uidl();
            let _ = c.retr(1);
            let _ = c.top(2, 0);
            let _ = c.dele(1);
            let _ = c.quit();
        });
    });
}

/// The unchanged session works (the mutations start from something real).
#[test]
fn pop3_session_works() {
    let stream = Scripted {
        input: Cursor::new(POP3_SESSION.to_vec()),
        output: Vec::new(),
    };
    let mut c = mailferry::pop3::Client::new(stream, "fuzz");
    c.greeting().unwrap();
    c.capa().unwrap();
    c.login("user", "password").unwrap();
    assert_eq!(c.stat().unwrap(), (2, 320));
    assert_eq!(c.list().unwrap(), vec![(1, 120), (2, 200)]);
    assert_eq!(c.uidl().unwrap().map(|u| u.len()), Some(2));
    assert_eq!(
        c.retr(1).unwrap(),
        b"Subject: one\r\n\r\n.dot-stuffed\r\nbody\r\n".to_vec()
    );
    let _ = c.top(2, 0).unwrap();
    c.dele(1).unwrap();
    c.quit().unwrap();
}

/// An IMAP session as the client reads it in production (`read_raw`: lines, then
/// literals read apart, then `parse_response_with`).
const IMAP_SESSION: &[u8] = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN] ready\r\n\
M0001 OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS NAMESPACE ESEARCH MULTIAPPEND] in\r\n\
* NAMESPACE ((\"\" \"/\")) ((\"Other Users/\" \"/\")) NIL\r\n\
M0002 OK done\r\n\
* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\Sent) \"/\" {4}\r\nSent\r\n\
M0003 OK done\r\n\
* FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [PERMANENTFLAGS (\\Seen \\*)] ok\r\n\
M0004 OK [READ-ONLY] done\r\n\
* ESEARCH (TAG \"M0005\") UID ALL 1:2\r\nM0005 OK done\r\n\
* 1 FETCH (UID 1 RFC822.SIZE 12 FLAGS (\\Seen $k) INTERNALDATE \" 1-Jan-2020 10:00:00 +0000\")\r\n\
* 2 FETCH (UID 2 RFC822.SIZE 5 FLAGS () INTERNALDATE \"02-Jan-2020 10:00:00 +0000\")\r\n\
M0006 OK done\r\n\
* 1 FETCH (UID 1 BODY[] {12}\r\nSubject: x\r\n)\r\n* 2 EXPUNGE\r\nM0007 OK done\r\n\
M0008 OK [APPENDUID 7 3] done\r\nM0009 OK [APPENDUID 7 4:5] done\r\n* BYE bye\r\nM0010 OK done\r\n";

/// Runs the session; what a clean one gives: (folders, EXISTS, UIDs, bodies).
fn imap_session(input: Vec<u8>) -> (usize, u32, String, usize) {
    use mailferry::imap::types::{ImapDate, UidSet};
    use mailferry::imap::{Append, Client};
    let stream = Scripted {
        input: Cursor::new(input),
        output: Vec::new(),
    };
    let mut c = Client::new(stream, "fuzz");
    let _ = c.greeting();
    let _ = c.login("user", "password");
    let _ = c.namespaces();
    let folders = c.list().map(|l| l.len()).unwrap_or(0);
    let exists = c.select(b"INBOX", true).map(|s| s.exists).unwrap_or(0);
    let set = c.uid_search_all().unwrap_or_default();
    // Walk the set as a listing does: a window, never the whole range.
    let page = set.window(0, 2000);
    let _ = c.uid_fetch(
        &page.to_string(),
        "(UID RFC822.SIZE FLAGS INTERNALDATE)",
        |_| Ok(()),
    );
    let mut bodies = 0;
    let _ = c.uid_fetch("1", "(UID BODY.PEEK[])", |f| {
        bodies += usize::from(f.body.is_some());
        Ok(())
    });
    let date = ImapDate::parse("01-Jan-2020 10:00:00 +0000");
    let flags = vec!["\\Seen".to_string()];
    let one = Append {
        mailbox: b"INBOX",
        flags: &flags,
        internal_date: date.as_ref(),
        body: b"x\r\n",
    };
    let _ = c.append(&one);
    let two = Append {
        mailbox: b"INBOX",
        flags: &flags,
        internal_date: None,
        body: b"y\r\n",
    };
    let _ = c.append_multi(b"INBOX", &[one, two]);
    let _ = UidSet::parse("1:2");
    c.logout();
    (folders, exists, set.to_string(), bodies)
}

/// A whole IMAP session through the production reader, against a server saying
/// random or mutated things: every call returns, none panics or waits forever.
#[test]
fn imap_client_on_random_and_mutated_sessions() {
    proptest!(config(3000), |(
        changes in prop::collection::vec(mutation(), 1..6),
        random in prop::collection::vec(any::<u8>(), 0..400),
        use_random in any::<bool>(),
    )| {
        let input = if use_random { random } else { mutate(IMAP_SESSION.to_vec(), &changes) };
        returns(Duration::from_secs(5), move || { imap_session(input); });
    });
}

/// The unchanged IMAP session goes through (the mutations start from something real).
#[test]
fn imap_session_works() {
    assert_eq!(
        imap_session(IMAP_SESSION.to_vec()),
        (2, 2, "1:2".to_string(), 1)
    );
}
