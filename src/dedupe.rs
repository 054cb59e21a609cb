//! Dedupe keys: when two messages count as the same message.
//!
//! A key must never merge two distinct messages. Real corpora reuse one Message-ID
//! for different messages and many messages have none, so the Message-ID alone is
//! never a key. Line endings are normalised to CRLF before hashing, because servers
//! store bare-LF messages and serve them with CRLF.
//!
//! Modes (`--dedupe`):
//! - `exact` (default): `x:` + SHA-256 of the whole message. Only byte-identical
//!   copies (after CRLF normalisation) are the same.
//! - `message-id`: `m:` + SHA-256 of the Message-ID and the body (everything after the
//!   header block). Catches copies whose headers a tool or a delivery rewrote (an
//!   added `X-TUID:`, `Received:` or `Status:` line) while two messages that share a
//!   Message-ID but differ in body stay distinct. Without a Message-ID it falls back
//!   to `exact`.
//! - `none`: no dedupe; only the checkpoints stop a message being copied twice.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Exact,
    MessageId,
    None,
}

/// Feed `data` to the hasher with every bare LF (and lone CR) written as CRLF.
fn hash_crlf(h: &mut Sha256, data: &[u8]) {
    let mut start = 0;
    for i in memchr::memchr2_iter(b'\n', b'\r', data) {
        let c = data[i];
        let bare_lf = c == b'\n' && (i == 0 || data[i - 1] != b'\r');
        let lone_cr = c == b'\r' && data.get(i + 1) != Some(&b'\n');
        if bare_lf || lone_cr {
            h.update(&data[start..i]);
            h.update(b"\r\n");
            start = i + 1;
        }
    }
    h.update(&data[start..]);
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The length with every bare LF counted as CRLF: what a server that stores
/// bare-LF messages reports as RFC822.SIZE.
pub fn crlf_len(data: &[u8]) -> u64 {
    let bare = memchr::memchr_iter(b'\n', data)
        .filter(|&i| i == 0 || data[i - 1] != b'\r')
        .count();
    (data.len() + bare) as u64
}

/// A dedupe key as 128 bits (the start of its SHA-256), for the sets a run keeps in
/// memory: 16 bytes a message instead of a 66-byte string. Two distinct keys share
/// a fingerprint with odds near 2^-128 per pair; the index keeps the whole keys.
pub fn fingerprint(key: &str) -> u128 {
    fingerprint_bytes(key.as_bytes())
}

/// As [`fingerprint`], for bytes that need not be UTF-8 (a Message-ID as sent).
pub fn fingerprint_bytes(data: &[u8]) -> u128 {
    let d = Sha256::digest(data);
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

/// The keys of the forms a server is known to store this message in, other than
/// as sent: Cyrus turns 8-bit header bytes into `X`, Courier adds a final CRLF
/// to a message without one (and both, on such a server pair). Empty when no
/// server would change it. One way only: a stored message matches when it is one
/// of these forms of the source message, so two messages that differ in anything
/// but those header bytes never match each other.
pub fn stored_variants(msg: &[u8], mode: Mode) -> Vec<String> {
    let split = body_offset(msg);
    let eight_bit = msg[..split].iter().any(|&c| c >= 0x80);
    let no_end = !msg.ends_with(b"\n");
    let mut out = Vec::new();
    let cyrus = |m: &[u8]| -> Vec<u8> {
        let mut v: Vec<u8> = m[..split]
            .iter()
            .map(|&c| if c >= 0x80 { b'X' } else { c })
            .collect();
        v.extend_from_slice(&m[split..]);
        v
    };
    let courier = |m: &[u8]| -> Vec<u8> {
        let mut v = m.to_vec();
        v.extend_from_slice(b"\r\n");
        v
    };
    if eight_bit {
        out.push(key(&cyrus(msg), mode));
    }
    if no_end {
        out.push(key(&courier(msg), mode));
        if eight_bit {
            out.push(key(&courier(&cyrus(msg)), mode));
        }
    }
    out.retain(|k| *k != key(msg, mode));
    out
}

/// Whether a server might store this message other than as sent (8-bit bytes in
/// its header, or no final line end), so that only its bytes can tell.
pub fn may_be_changed(msg: &[u8]) -> bool {
    !msg.ends_with(b"\n") || msg[..body_offset(msg)].iter().any(|&c| c >= 0x80)
}

/// SHA-256 of the bytes exactly as they are, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Where the header block ends and the body starts (after the first empty line).
pub fn body_offset(msg: &[u8]) -> usize {
    let mut i = 0;
    while i < msg.len() {
        let line_end = msg[i..].iter().position(|&c| c == b'\n').map(|p| i + p + 1);
        let Some(end) = line_end else {
            return msg.len();
        };
        let line = &msg[i..end];
        if line == b"\n" || line == b"\r\n" {
            return end;
        }
        i = end;
    }
    msg.len()
}

/// The unfolded value of the first header called `name` (case-insensitive).
pub fn header(msg: &[u8], name: &str) -> Option<Vec<u8>> {
    let headers = &msg[..body_offset(msg)];
    let mut value: Option<Vec<u8>> = None;
    let prefix = format!("{name}:");
    for line in headers.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = value.as_mut() {
            if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii_start());
                continue;
            }
            break;
        }
        if line.len() >= prefix.len()
            && line[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        {
            value = Some(line[prefix.len()..].trim_ascii().to_vec());
        }
    }
    value
}

/// An INTERNALDATE for a message that has none (POP3): the date of the topmost
/// `Received:` header (after its `;`), else the `Date:` header, in IMAP form.
pub fn header_date(msg: &[u8]) -> Option<crate::imap::types::ImapDate> {
    let parse = |v: &[u8]| {
        let text = String::from_utf8_lossy(v);
        let text = text.split(" (").next().unwrap_or("").trim();
        let d = chrono::DateTime::parse_from_rfc2822(text).ok()?;
        crate::imap::types::ImapDate::from_datetime(d)
    };
    header(msg, "Received")
        .and_then(|r| r.rsplit(|&c| c == b';').next().and_then(parse))
        .or_else(|| header(msg, "Date").and_then(|d| parse(&d)))
}

/// The value of the first Message-ID header (unfolded, trimmed), if any.
pub fn message_id(msg: &[u8]) -> Option<Vec<u8>> {
    let headers = &msg[..body_offset(msg)];
    let mut value: Option<Vec<u8>> = None;
    for line in headers.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = value.as_mut() {
            if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
                v.extend_from_slice(line);
                continue;
            }
            break;
        }
        if line.len() >= 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            value = Some(line[11..].to_vec());
        }
    }
    let v = value?;
    let trimmed: Vec<u8> = v
        .iter()
        .copied()
        .skip_while(|c| c.is_ascii_whitespace())
        .collect();
    let end = trimmed
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    let id = trimmed[..end].to_vec();
    (!id.is_empty()).then_some(id)
}

/// The dedupe key of a message under `mode` (`none` still yields the exact key,
/// which `verify` and the index use).
pub fn key(msg: &[u8], mode: Mode) -> String {
    if mode == Mode::MessageId {
        if let Some(id) = message_id(msg) {
            let mut h = Sha256::new();
            h.update(&id);
            h.update([0u8]);
            hash_crlf(&mut h, &msg[body_offset(msg)..]);
            return format!("m:{}", hex(&h.finalize()));
        }
    }
    let mut h = Sha256::new();
    hash_crlf(&mut h, msg);
    format!("x:{}", hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_variants_are_what_servers_make_of_a_message_and_nothing_else() {
        let sent = "Subject: Grüße\r\n\r\nbody".as_bytes();
        let cyrus = b"Subject: GrXXXXe\r\n\r\nbody";
        let courier = "Subject: Grüße\r\n\r\nbody\r\n".as_bytes();
        let both = b"Subject: GrXXXXe\r\n\r\nbody\r\n";
        let v = stored_variants(sent, Mode::Exact);
        for stored in [&cyrus[..], courier, &both[..]] {
            assert!(
                v.contains(&key(stored, Mode::Exact)),
                "{:?}",
                String::from_utf8_lossy(stored)
            );
        }
        // Another message is never one of them: another body, another 8-bit
        // character where the server keeps bytes (the body), or the other way
        // round (X in the source, 8-bit on the target).
        for other in [
            "Subject: Grüße\r\n\r\nbodY".as_bytes(),
            "Subject: Grüße\r\n\r\nbödy".as_bytes(),
        ] {
            assert!(!v.contains(&key(other, Mode::Exact)));
        }
        assert!(!stored_variants(cyrus, Mode::Exact).contains(&key(sent, Mode::Exact)));
        // A plain message with a final line end: no server changes it.
        assert!(stored_variants(b"S: a\r\n\r\nb\r\n", Mode::Exact).is_empty());
        assert!(may_be_changed(sent) && may_be_changed(b"S: a\r\n\r\nno end"));
        assert!(!may_be_changed(b"S: a\r\n\r\nb\r\n"));
    }

    const A: &[u8] = b"Message-ID: <1@x>\r\nSubject: a\r\n\r\nbody one\r\n";
    const A_LF: &[u8] = b"Message-ID: <1@x>\nSubject: a\n\nbody one\n";
    const A_OTHER_BODY: &[u8] = b"Message-ID: <1@x>\r\nSubject: a\r\n\r\nbody two\r\n";
    const A_TUID: &[u8] = b"Message-ID: <1@x>\r\nSubject: a\r\nX-TUID: abc\r\n\r\nbody one\r\n";
    const NO_ID: &[u8] = b"Subject: a\r\n\r\nbody one\r\n";

    #[test]
    fn table() {
        // (left, right, mode, same?)
        for (i, (l, r, mode, same)) in [
            (A, A, Mode::Exact, true),
            (A, A_LF, Mode::Exact, true),
            (A, A_OTHER_BODY, Mode::Exact, false),
            (A, A_OTHER_BODY, Mode::MessageId, false),
            (A, A_TUID, Mode::Exact, false),
            (A, A_TUID, Mode::MessageId, true),
            (NO_ID, NO_ID, Mode::MessageId, true),
            (NO_ID, A, Mode::MessageId, false),
            (b"".as_slice(), b"".as_slice(), Mode::Exact, true),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(key(l, mode) == key(r, mode), same, "case {i}");
        }
    }

    #[test]
    fn message_id_parsing() {
        for (msg, want) in [
            (&b"message-id:   <a@b>  \r\n\r\n"[..], Some(&b"<a@b>"[..])),
            (b"Message-Id:\r\n <folded@b>\r\n\r\n", Some(b"<folded@b>")),
            (b"Subject: x\r\n\r\nMessage-ID: <in-body@b>\r\n", None),
            (b"Message-ID: \r\n\r\n", None),
            (b"no headers at all", None),
        ] {
            assert_eq!(message_id(msg).as_deref(), want);
        }
    }

    #[test]
    fn dates_from_headers() {
        for (msg, want) in [
            (
                &b"Received: from a by b; Tue, 2 Jan 2024 10:00:00 +0100 (CET)\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\n\r\nx"[..],
                Some("02-Jan-2024 10:00:00 +0100"),
            ),
            (b"Received: from a\r\n\tby b; Wed, 3 Jan 2024 11:12:13 -0500\r\n\r\n", Some("03-Jan-2024 11:12:13 -0500")),
            (b"Date: Mon, 1 Jan 2024 09:00:00 +0000\n\nx", Some("01-Jan-2024 09:00:00 +0000")),
            (b"Received: garbage\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\n\r\n", Some("01-Jan-2024 09:00:00 +0000")),
            (b"Date: the day after tomorrow\r\n\r\n", None),
            (b"Subject: none\r\n\r\n", None),
        ] {
            assert_eq!(header_date(msg).map(|d| d.to_string()).as_deref(), want, "{}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn crlf_length_counts_bare_lf_twice() {
        for (data, want) in [(&b"a\r\nb\n"[..], 6), (b"\n\n", 4), (b"", 0), (b"x", 1)] {
            assert_eq!(crlf_len(data), want);
        }
    }

    #[test]
    fn lone_cr_and_lf_normalise_alike() {
        assert_eq!(key(b"a\rb\r\n", Mode::Exact), key(b"a\nb\n", Mode::Exact));
        assert_ne!(key(b"ab\r\n", Mode::Exact), key(b"a\nb\r\n", Mode::Exact));
    }
}
