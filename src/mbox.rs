//! mbox files: write messages as mboxrd and read mboxrd or mboxo back, byte-exact.
//!
//! Invariants. The writer never changes a message's bytes except for mboxrd quoting
//! (a line matching `^>*From ` gets one more `>`, the first line included) and one
//! `\n` added when a non-empty message does not end with `\n`; line endings inside
//! the message (CRLF from IMAP, LF from files) are kept as they are. Each message is
//! followed by one empty line, so `parse(write_message(m)) == m` for every message
//! that ends with `\n` (or is empty); a message without a final newline comes back
//! with that `\n` appended, and the caller trims it using the size it recorded.
//! The reader splits only on a `From ` line that starts the file or follows an empty
//! line and that looks like a real separator (a sender, a time and a 4-digit year),
//! so unquoted `From ` lines some writers leave in bodies stay in the message. It
//! returns the last message of the file too, removes exactly one blank line before
//! each separator (and at the end of the file), and unquotes per [`Dialect`].

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};
use std::io::{self, Read, Write};

const BOM: &[u8] = b"\xEF\xBB\xBF";
const FROM: &[u8] = b"From ";

/// How quoted `From ` lines are unquoted when reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// mboxrd: every line matching `^>+From ` loses one `>`.
    Rd,
    /// mboxo: only `>From ` (exactly one `>`) becomes `From `.
    O,
}

/// One message read from an mbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The separator line without its line ending, e.g. b"From alice@x Thu Jan  1 00:00:00 1970".
    pub from_line: Vec<u8>,
    /// The message bytes, unquoted, with the separator's blank line removed.
    pub message: Vec<u8>,
    /// Byte offset of the separator line in the file.
    pub offset: u64,
}

// ---------------------------------------------------------------- lines

/// The lines of `data`, each with its `\n` (the last one may have none).
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split_inclusive(|&b| b == b'\n')
}

/// A line without its `\n` or `\r\n`.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// An empty line: `\n` or `\r\n`.
fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// The line matches `^>*From `.
fn is_quotable(line: &[u8]) -> bool {
    let n = line.iter().take_while(|&&b| b == b'>').count();
    line[n..].starts_with(FROM)
}

/// `body` without one trailing empty line (`\n` or `\r\n` after a line ending, or
/// the whole body if it is just that line).
fn drop_trailing_blank(body: &[u8]) -> &[u8] {
    for blank in [&b"\r\n"[..], b"\n"] {
        if let Some(head) = body.strip_suffix(blank) {
            if head.is_empty() || head.ends_with(b"\n") {
                return head;
            }
        }
    }
    body
}

// ---------------------------------------------------------------- quoting

/// mboxrd quoting: every line matching `^>*From ` gets one more `>`.
pub fn quote(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 16);
    for line in lines(msg) {
        if is_quotable(line) {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    out
}

/// mboxrd unquoting: every line matching `^>+From ` loses one `>`.
pub fn unquote_rd(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in lines(body) {
        if line.starts_with(b">") && is_quotable(line) {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// mboxo unquoting: only a line starting `>From ` (exactly one `>`) loses its `>`.
pub fn unquote_o(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in lines(body) {
        if line.starts_with(b">From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

// ---------------------------------------------------------------- writer

/// The sender token of a separator: `MAILER-DAEMON` when empty, whitespace made `_`
/// (a space would end the token, a line break would end the line).
fn sender_token(sender: &str) -> String {
    if sender.is_empty() {
        return "MAILER-DAEMON".to_string();
    }
    sender
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// C asctime form of the UTC time, e.g. `Thu Jan  1 00:00:00 1970`.
///
/// The year must come out as 4 digits, or the line is no separator to a reader
/// (this one included) and the message would be read as part of the one before: a
/// time whose UTC year is before 0 or after 9999 (`01-Jan-0000 00:00:00 +0100` is
/// an INTERNALDATE a server may send) is written as the first or last second of
/// that range. A backup's manifest keeps the exact date.
fn asctime(date: Option<DateTime<FixedOffset>>) -> String {
    let utc = match date {
        Some(d) => d.with_timezone(&Utc),
        None => DateTime::<Utc>::UNIX_EPOCH,
    };
    let utc = match utc.year() {
        ..=-1 => Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
        10000.. => Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        _ => utc,
    };
    utc.format("%a %b %e %H:%M:%S %Y").to_string()
}

/// The separator line, with its `\n`.
fn separator(sender: &str, date: Option<DateTime<FixedOffset>>) -> String {
    format!("From {} {}\n", sender_token(sender), asctime(date))
}

/// Write one message: a `From ` separator line, the message with mboxrd quoting
/// (every line matching ^>*From  gets one more '>'), a final '\n' if the message does
/// not end with '\n', then one empty line '\n'. Returns the number of bytes written.
///
/// An empty message gets no added `\n` (it has no line to end), so it reads back empty.
pub fn write_message<W: Write>(
    w: &mut W,
    sender: &str,
    date: Option<DateTime<FixedOffset>>,
    msg: &[u8],
) -> io::Result<u64> {
    let sep = separator(sender, date);
    let body = quote(msg);
    let newline: &[u8] = if body.is_empty() || body.ends_with(b"\n") {
        b""
    } else {
        b"\n"
    };
    let mut written = 0u64;
    for part in [sep.as_bytes(), &body, newline, b"\n"] {
        w.write_all(part)?;
        written += part.len() as u64;
    }
    Ok(written)
}

// ---------------------------------------------------------------- dates

/// What one whitespace- or comma-separated word of a From line's date is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Month(u32),
    /// A 1- or 2-digit number.
    Day(u32),
    Time(u32, u32, u32),
    Year(i32),
    /// Offset east of UTC in seconds.
    Zone(i32),
    Other,
}

fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

fn number(s: &[u8]) -> Option<u32> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn month(word: &[u8]) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let w = std::str::from_utf8(word).ok()?.to_ascii_lowercase();
    let i = MONTHS
        .iter()
        .position(|m| w == *m || (w.len() == 3 && m.starts_with(&w)))?;
    Some(i as u32 + 1)
}

/// `H:MM`, `HH:MM` or `HH:MM:SS`.
fn time(word: &[u8]) -> Option<(u32, u32, u32)> {
    let parts: Vec<&[u8]> = word.split(|&b| b == b':').collect();
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| all_digits(p)) {
        return None;
    }
    if parts[0].len() > 2 || parts[1..].iter().any(|p| p.len() != 2) {
        return None;
    }
    let sec = parts.get(2).map_or(Some(0), |s| number(s))?;
    Some((number(parts[0])?, number(parts[1])?, sec))
}

/// `+hhmm` / `-hhmm`, `UTC`/`GMT`/`UT`/`Z` and the RFC 822 US zones.
fn zone(word: &[u8]) -> Option<i32> {
    if let [sign @ (b'+' | b'-'), digits @ ..] = word {
        if digits.len() != 4 || !all_digits(digits) {
            return None;
        }
        let n = number(digits)? as i32;
        let secs = (n / 100) * 3600 + (n % 100) * 60;
        return Some(if *sign == b'-' { -secs } else { secs });
    }
    let hours = match word.to_ascii_uppercase().as_slice() {
        b"UTC" | b"GMT" | b"UT" | b"Z" => 0,
        b"EDT" => -4,
        b"EST" | b"CDT" => -5,
        b"CST" | b"MDT" => -6,
        b"MST" | b"PDT" => -7,
        b"PST" => -8,
        _ => return None,
    };
    Some(hours * 3600)
}

fn classify(word: &[u8]) -> Word {
    if all_digits(word) {
        match word.len() {
            1 | 2 => return number(word).map_or(Word::Other, Word::Day),
            4 => return number(word).map_or(Word::Other, |y| Word::Year(y as i32)),
            _ => return Word::Other,
        }
    }
    if let Some((h, m, s)) = time(word) {
        return Word::Time(h, m, s);
    }
    if let Some(z) = zone(word) {
        return Word::Zone(z);
    }
    month(word).map_or(Word::Other, Word::Month)
}

/// The classified words of what follows the sender token of a From line, or None if
/// the line is not `From ` plus a non-empty sender.
fn date_words(from_line: &[u8]) -> Option<Vec<Word>> {
    let rest = from_line.strip_prefix(FROM)?;
    let sender_len = rest.iter().take_while(|b| !b.is_ascii_whitespace()).count();
    if sender_len == 0 {
        return None;
    }
    let words = rest[sender_len..]
        .split(|&b| b.is_ascii_whitespace() || b == b',')
        .filter(|w| !w.is_empty())
        .map(classify)
        .collect();
    Some(words)
}

/// A real separator: `From `, a sender, then a time and a 4-digit year.
fn looks_like_separator(line: &[u8]) -> bool {
    date_words(line).is_some_and(|words| {
        words.iter().any(|w| matches!(w, Word::Time(..)))
            && words.iter().any(|w| matches!(w, Word::Year(_)))
    })
}

/// The date of a From line (asctime form, optionally followed by a zone or year variants), if it has one.
///
/// Words may come in any order (`Thu Jan  1 00:00:00 1970`, `... 00:00 PST 1970`,
/// `... 1970 +0100`, `Thu, 1 Jan 1970 00:00:00 +0000`); a month, a day, a time and a
/// 4-digit year are needed. Without a known zone the time is taken as UTC.
pub fn from_line_date(from_line: &[u8]) -> Option<DateTime<FixedOffset>> {
    let words = date_words(strip_eol(from_line))?;
    let first = |f: fn(&Word) -> Option<Word>| words.iter().find_map(f);
    let Word::Month(mon) = first(|w| matches!(w, Word::Month(_)).then_some(*w))? else {
        return None;
    };
    let Word::Day(day) = first(|w| matches!(w, Word::Day(_)).then_some(*w))? else {
        return None;
    };
    let Word::Time(h, m, s) = first(|w| matches!(w, Word::Time(..)).then_some(*w))? else {
        return None;
    };
    let Word::Year(year) = first(|w| matches!(w, Word::Year(_)).then_some(*w))? else {
        return None;
    };
    let zone = match first(|w| matches!(w, Word::Zone(_)).then_some(*w)) {
        Some(Word::Zone(z)) => z,
        _ => 0,
    };
    let naive = NaiveDate::from_ymd_opt(year, mon, day)?.and_hms_opt(h, m, s)?;
    FixedOffset::east_opt(zone)?
        .from_local_datetime(&naive)
        .single()
}

// ---------------------------------------------------------------- formats

/// How `>From ` lines of a file are unquoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// mboxrd: `^>+From ` loses one `>`.
    Rd,
    /// mboxo and mboxcl: only `>From ` loses its `>`.
    O,
    /// mboxcl2 and MMDF: nothing is quoted, nothing unquoted.
    None,
}

/// How a file's messages are framed and quoted: the dialects found in the wild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub quoting: Quoting,
    /// mboxcl/mboxcl2: a `Content-Length:` header gives the body's length, and a
    /// `From ` line inside that length is body. A length that does not end at a
    /// separator (or the end of the file) is ignored for that message.
    pub content_length: bool,
    /// MMDF: each message between two lines of four `^A`.
    pub mmdf: bool,
    /// Separators without a date (`From 1844347792267117879@xxx`, `From -`): a
    /// `From ` line with one word after an empty line starts a message too.
    pub dateless: bool,
}

impl Format {
    pub fn plain(dialect: Dialect) -> Format {
        Format {
            quoting: match dialect {
                Dialect::Rd => Quoting::Rd,
                Dialect::O => Quoting::O,
            },
            content_length: false,
            mmdf: false,
            dateless: false,
        }
    }

    pub const MBOXCL: Format = Format {
        quoting: Quoting::O,
        content_length: true,
        mmdf: false,
        dateless: false,
    };
    pub const MBOXCL2: Format = Format {
        quoting: Quoting::None,
        content_length: true,
        mmdf: false,
        dateless: false,
    };
    pub const MMDF: Format = Format {
        quoting: Quoting::None,
        content_length: false,
        mmdf: true,
        dateless: false,
    };

    /// The dialect's usual name, as `-v` states it.
    pub fn name(&self) -> String {
        let base = match (self.mmdf, self.content_length, self.quoting) {
            (true, ..) => "MMDF",
            (_, true, Quoting::None) => "mboxcl2",
            (_, true, _) => "mboxcl",
            (_, _, Quoting::Rd) => "mboxrd",
            (_, _, Quoting::O) => "mboxo",
            (_, _, Quoting::None) => "mbox without quoting",
        };
        if self.dateless {
            format!("{base} with dateless separators")
        } else {
            base.to_string()
        }
    }
}

/// What [`detect`] found: the format, and why, in words for `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub format: Format,
    pub why: String,
    pub crlf: bool,
}

/// How many bytes of a file [`detect`] looks at.
pub const SAMPLE: usize = 1 << 20;

const MMDF_SEP: &[u8] = b"\x01\x01\x01\x01";

fn is_mmdf_sep(line: &[u8]) -> bool {
    strip_eol(line) == MMDF_SEP
}

/// A separator of the dateless kind: `From ` and one word (`-`, an address, a
/// Takeout id), nothing after it.
fn looks_like_bare_separator(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(FROM) else {
        return false;
    };
    let rest = rest.trim_ascii();
    !rest.is_empty() && !rest.iter().any(u8::is_ascii_whitespace)
}

/// Whether `line` (without its line ending) starts a message under `f`.
fn starts_message(f: &Format, line: &[u8]) -> bool {
    line.starts_with(FROM)
        && (looks_like_separator(line) || (f.dateless && looks_like_bare_separator(line)))
}

/// One header of a header block (unfolded value), if present.
fn header_in(block: &[u8], name: &str) -> Option<Vec<u8>> {
    crate::dedupe::header(block, name)
}

/// Decide a file's dialect from its first bytes (`sample`, at most [`SAMPLE`];
/// `whole`: the sample is the whole file). `Err` when the sample is no mailbox of
/// any kind (the words say what was found instead). An empty file is an mbox with
/// no messages.
///
/// The rules, in order: four `^A` first → MMDF; the first line must otherwise be
/// a `From ` line (a date is not required: without one, dateless separators are
/// read); `Content-Length:` headers that each end exactly at the next separator →
/// mboxcl2 (or mboxcl when bodies show `>From ` and never an unquoted `From `);
/// marks that only mboxo writers leave → mboxo: Thunderbird's `X-Mozilla-Status`
/// or `From - ` separators, procmail/formail's two spaces after the sender, mutt's,
/// Pine's and Python's `Status:`/`X-Status:` on most messages, Python's
/// `From MAILER-DAEMON` on every one; otherwise mboxrd.
pub fn detect(sample: &[u8], whole: bool) -> Result<Detected, String> {
    let data = sample.strip_prefix(BOM).unwrap_or(sample);
    let start = data
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(data.len());
    let data = &data[start..];
    let plain = |format: Format, why: &str| Detected {
        format,
        why: why.to_string(),
        crlf: false,
    };
    if data.is_empty() {
        return Ok(plain(Format::plain(Dialect::Rd), "empty"));
    }
    let first = lines(data).next().unwrap_or_default();
    let crlf = first.ends_with(b"\r\n");
    if is_mmdf_sep(first) {
        return Ok(Detected {
            crlf,
            ..plain(Format::MMDF, "lines of four ^A around each message")
        });
    }
    let first = strip_eol(first);
    if !first.starts_with(FROM) || first.trim_ascii() == b"From" {
        return Err(not_an_mbox(first));
    }
    let dateless = !looks_like_separator(first);
    let f = Format {
        dateless,
        ..Format::plain(Dialect::Rd)
    };
    let msgs = sample_messages(data, &f);
    let cl = content_lengths(data, &msgs, whole);
    let (format, why) = if cl.ok > 0 && cl.bad == 0 {
        if cl.quoted_from && !cl.unquoted_from {
            (
                Format {
                    dateless,
                    ..Format::MBOXCL
                },
                "Content-Length headers that end at each separator, and >From quoting",
            )
        } else {
            (
                Format {
                    dateless,
                    ..Format::MBOXCL2
                },
                "Content-Length headers that end at each separator",
            )
        }
    } else {
        match mboxo_mark(&msgs) {
            Some(why) => (
                Format {
                    dateless,
                    ..Format::plain(Dialect::O)
                },
                why,
            ),
            None => (
                f,
                "no mark of an mboxo writer (read as mboxrd; --mbox-format mboxo if it is not)",
            ),
        }
    };
    Ok(Detected {
        crlf,
        ..plain(format, why)
    })
}

/// Why a file whose first line is `first` (no line ending) is not a mailbox: its
/// first 40 bytes shown, control characters as `?`.
fn not_an_mbox(first: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&first[..first.len().min(40)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    format!(
        "not an mbox file: it starts with {shown:?}, not with a `From ` line (mbox) or four ^A (MMDF)"
    )
}

/// A message of [`detect`]'s sample: separator, header block, where the body starts.
struct SampleMsg<'a> {
    sep: &'a [u8],
    headers: &'a [u8],
    body: usize,
}

/// The messages of a sample whose header block ends in it, read under `f`.
fn sample_messages<'a>(data: &'a [u8], f: &Format) -> Vec<SampleMsg<'a>> {
    let mut msgs = Vec::new();
    let mut pos = 0;
    let mut after_blank = true;
    let mut in_headers: Option<(usize, usize)> = None; // (sep index, headers start)
    for line in lines(data) {
        let here = pos;
        pos += line.len();
        let bare = strip_eol(line);
        if let Some((sep, hstart)) = in_headers {
            if is_blank(line) || !line.ends_with(b"\n") {
                msgs.push(SampleMsg {
                    sep: strip_eol(&data[sep..])
                        .split(|&b| b == b'\n')
                        .next()
                        .unwrap_or_default(),
                    headers: &data[hstart..pos],
                    body: pos,
                });
                in_headers = None;
            }
        } else if after_blank && starts_message(f, bare) {
            in_headers = Some((here, pos));
        }
        after_blank = is_blank(line);
    }
    msgs
}

/// What the sample's `Content-Length:` headers say: how many end at a separator
/// (or may, past the sample's end) and how many do not, and whether the bodies
/// they delimit show `From ` lines unquoted or quoted.
#[derive(Debug, Default, PartialEq, Eq)]
struct ContentLengths {
    ok: usize,
    bad: usize,
    unquoted_from: bool,
    quoted_from: bool,
}

/// Every length seen in the sample checked: it must end at a separator.
fn content_lengths(data: &[u8], msgs: &[SampleMsg], whole: bool) -> ContentLengths {
    let mut cl = ContentLengths::default();
    for m in msgs {
        let body = m.body;
        let Some(len) = header_in(m.headers, "Content-Length")
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<usize>().ok())
        else {
            continue;
        };
        let Some(end) = body.checked_add(len) else {
            cl.bad += 1;
            continue;
        };
        if end > data.len() {
            if whole {
                cl.bad += 1;
            }
            continue;
        }
        let mut rest = &data[end..];
        while let Some(r) = rest
            .strip_prefix(b"\n")
            .or_else(|| rest.strip_prefix(b"\r\n"))
        {
            rest = r;
        }
        let at_sep = rest.starts_with(FROM) || (rest.is_empty() && (whole || end < data.len()));
        if at_sep || (rest.len() < 5 && !whole) {
            cl.ok += 1;
            for l in lines(&data[body..end]) {
                cl.unquoted_from |= l.starts_with(FROM);
                cl.quoted_from |= l.starts_with(b">") && is_quotable(l);
            }
        } else {
            cl.bad += 1;
        }
    }
    cl
}

/// The mark only an mboxo writer leaves, found in the sample's messages, in words
/// for `-v`; `None` when there is none.
fn mboxo_mark(msgs: &[SampleMsg]) -> Option<&'static str> {
    let n = msgs.len().max(1);
    let count = |name: &str| {
        msgs.iter()
            .filter(|m| header_in(m.headers, name).is_some())
            .count()
    };
    let seps: Vec<Vec<u8>> = msgs.iter().map(|m| strip_eol(m.sep).to_vec()).collect();
    if count("X-Mozilla-Status") > 0 {
        Some("X-Mozilla-Status headers: written by Thunderbird")
    } else if seps
        .iter()
        .any(|s| s.starts_with(b"From - ") || s.as_slice() == b"From -")
    {
        Some("`From - ` separators: written by Thunderbird")
    } else if seps.iter().any(|s| two_spaces_after_sender(s)) {
        Some("two spaces after the sender in separators: written by procmail or formail")
    } else if (count("Status") + count("X-Status")) * 2 > n || count("Status") * 2 > n {
        Some("Status:/X-Status: headers: written by mutt, Pine, Python's mailbox or Dovecot")
    } else if !seps.is_empty() && seps.iter().all(|s| s.starts_with(b"From MAILER-DAEMON ")) {
        Some("`From MAILER-DAEMON` separators: written by Python's mailbox")
    } else {
        None
    }
}

/// A separator with exactly two spaces after the sender, as procmail and formail
/// write them.
fn two_spaces_after_sender(sep: &[u8]) -> bool {
    let rest = &sep[FROM.len()..];
    let token = rest.iter().take_while(|b| !b.is_ascii_whitespace()).count();
    rest[token..].starts_with(b"  ") && !rest[token..].starts_with(b"   ")
}

// ---------------------------------------------------------------- reader

/// Read every message of an mbox file (see the module docs for the rules).
pub fn parse(data: &[u8], dialect: Dialect) -> Vec<Entry> {
    parse_format(data, Format::plain(dialect))
}

/// Read every message of a file in `format`.
pub fn parse_format(data: &[u8], format: Format) -> Vec<Entry> {
    let mut r = Reader::with_format(data, format, 0);
    let mut out = Vec::new();
    while let Ok(Some(e)) = r.next_entry() {
        out.push(e);
    }
    out
}

/// A Content-Length above this is not believed (the message is read by its
/// separators), so a bad header never makes the reader hold more than this.
pub const MAX_CONTENT_LENGTH: u64 = 256 << 20;

/// Reads an mbox stream one message at a time, by the rules of [`parse`], holding
/// only the message being read: a file of any size in memory bounded by its largest
/// message.
pub struct Reader<R> {
    r: R,
    format: Format,
    /// Offset in the file of the next byte to read.
    at: u64,
    started: bool,
    after_blank: bool,
    /// The separator line (without line ending) and offset of the message being read.
    current: Option<(Vec<u8>, u64)>,
    line: Vec<u8>,
    /// Bytes read ahead and given back (a Content-Length that did not fit): read
    /// again before `r`.
    back: Vec<u8>,
    back_at: usize,
}

/// Where the message being read stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Headers,
    Body,
    /// Its Content-Length was honoured: the lines up to the next separator are not
    /// part of it.
    Done,
}

impl<R: std::io::BufRead> Reader<R> {
    /// Read from `r`, which is positioned at byte `start` of the file. Reading may
    /// start at a separator line (the offset of an [`Entry`]) or at the file's start.
    pub fn new(r: R, dialect: Dialect, start: u64) -> Self {
        Reader::with_format(r, Format::plain(dialect), start)
    }

    /// As [`Reader::new`], for a file in `format`.
    pub fn with_format(r: R, format: Format, start: u64) -> Self {
        Reader {
            r,
            format,
            at: start,
            started: start != 0,
            // The start of the file, or of a message, counts as following an empty line.
            after_blank: true,
            current: None,
            line: Vec::new(),
            back: Vec::new(),
            back_at: 0,
        }
    }

    /// One line into `self.line` (given-back bytes first); its length.
    fn read_line(&mut self) -> io::Result<usize> {
        self.line.clear();
        if self.back_at < self.back.len() {
            let rest = &self.back[self.back_at..];
            let n = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |p| p + 1);
            self.line.extend_from_slice(&rest[..n]);
            self.back_at += n;
            if self.back_at == self.back.len() {
                self.back.clear();
                self.back_at = 0;
                if !self.line.ends_with(b"\n") {
                    let more = self.r.read_until(b'\n', &mut self.line)?;
                    return Ok(n + more);
                }
            }
            return Ok(n);
        }
        self.r.read_until(b'\n', &mut self.line)
    }

    /// Up to `n` bytes (fewer only at the end of the stream).
    fn read_bytes(&mut self, n: usize, out: &mut Vec<u8>) -> io::Result<usize> {
        let mut got = 0;
        if self.back_at < self.back.len() {
            let take = (self.back.len() - self.back_at).min(n);
            out.extend_from_slice(&self.back[self.back_at..self.back_at + take]);
            self.back_at += take;
            got += take;
            if self.back_at == self.back.len() {
                self.back.clear();
                self.back_at = 0;
            }
        }
        let before = out.len();
        (&mut self.r)
            .take((n - got) as u64)
            .read_to_end(out)
            .map(|k| {
                debug_assert_eq!(out.len() - before, k);
                got + k
            })
    }

    /// Give bytes back: they are read again next.
    fn give_back(&mut self, bytes: &[u8]) {
        let mut v = bytes.to_vec();
        v.extend_from_slice(&self.back[self.back_at..]);
        self.back = v;
        self.back_at = 0;
        self.at -= bytes.len() as u64;
    }

    /// The next message, or `None` at the end of the stream.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        // A BOM is looked for in the file's first line, not in what the first read
        // happened to buffer (a small buffer or a short read holds less than it).
        let mut first_line = !self.started;
        self.started = true;
        let mut body = Vec::new();
        let mut part = Part::Headers;
        let mut length: Option<u64> = None;
        loop {
            let mut n = self.read_line()?;
            if n == 0 {
                return Ok(self.current.take().map(|c| self.finish(c, &body, part)));
            }
            if std::mem::take(&mut first_line) && self.line.starts_with(BOM) {
                self.line.drain(..BOM.len());
                self.at += BOM.len() as u64;
                n -= BOM.len();
            }
            let offset = self.at;
            self.at += n as u64;
            if self.format.mmdf {
                if is_mmdf_sep(&self.line) {
                    match self.current.take() {
                        // The line end before the closing ^A belongs to the file,
                        // as Python's MMDF reader and writer have it.
                        Some(done) => return Ok(Some(self.finish(done, &body, Part::Body))),
                        None => self.current = Some((Vec::new(), offset)),
                    }
                } else if let Some((from_line, _)) = self.current.as_mut() {
                    // Python's MMDF (and some MTAs) put a `From ` line first.
                    if body.is_empty() && from_line.is_empty() && self.line.starts_with(FROM) {
                        *from_line = strip_eol(&self.line).to_vec();
                    } else {
                        body.extend_from_slice(&self.line);
                    }
                }
                continue;
            }
            let line = &self.line;
            let is_sep = (self.after_blank || part == Part::Done)
                && starts_message(&self.format, strip_eol(line));
            self.after_blank = is_blank(line);
            if is_sep {
                let sep = (strip_eol(line).to_vec(), offset);
                if let Some(done) = self.current.replace(sep) {
                    return Ok(Some(self.finish(done, &body, part)));
                }
                continue;
            }
            if self.current.is_none() || part == Part::Done {
                continue;
            }
            body.extend_from_slice(line);
            if part != Part::Headers {
                continue;
            }
            if !is_blank(line) {
                continue;
            }
            part = Part::Body;
            if !self.format.content_length {
                continue;
            }
            if length.is_none() {
                length = crate::dedupe::header(&body, "Content-Length")
                    .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<u64>().ok());
            }
            if let Some(len) = length.filter(|&l| l <= MAX_CONTENT_LENGTH) {
                if self.take_counted(len as usize, &mut body)? {
                    part = Part::Done;
                    self.after_blank = true;
                }
            }
        }
    }

    /// Read a body of `len` bytes into `body` if it ends at a separator or at the
    /// end of the stream (blank lines between are allowed); else give everything
    /// read back. Whether it did.
    fn take_counted(&mut self, len: usize, body: &mut Vec<u8>) -> io::Result<bool> {
        let mut chunk = Vec::with_capacity(len.min(1 << 20));
        let got = self.read_bytes(len, &mut chunk)?;
        self.at += got as u64;
        let mut ahead: Vec<u8> = Vec::new();
        let fits = if got < len {
            false
        } else {
            // What follows: blank lines, then a `From ` line or the end.
            loop {
                let n = self.read_line()?;
                self.at += n as u64;
                ahead.extend_from_slice(&self.line);
                if n == 0 {
                    break true;
                }
                if is_blank(&self.line) {
                    continue;
                }
                break self.line.starts_with(FROM);
            }
        };
        if fits {
            body.extend_from_slice(&chunk);
            self.give_back(&ahead);
        } else {
            let mut all = chunk;
            all.extend_from_slice(&ahead);
            self.give_back(&all);
        }
        Ok(fits)
    }

    fn finish(&self, (from_line, offset): (Vec<u8>, u64), body: &[u8], part: Part) -> Entry {
        let body = if part == Part::Done {
            body
        } else {
            drop_trailing_blank(body)
        };
        Entry {
            from_line,
            message: match self.format.quoting {
                Quoting::Rd => unquote_rd(body),
                Quoting::O => unquote_o(body),
                Quoting::None => body.to_vec(),
            },
            offset,
        }
    }
}

// ---------------------------------------------------------------- marks

/// What mail clients wrote into a message's headers about its state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// IMAP flags and keywords, in the order found, without repeats.
    pub flags: Vec<String>,
    /// Thunderbird deleted it (X-Mozilla-Status 0x0008) but had not compacted the
    /// folder yet: it is not a message of the folder.
    pub deleted: bool,
    /// UW-IMAP's and Dovecot's "DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA"
    /// first message: folder state, not mail.
    pub placeholder: bool,
    /// Google Takeout's `X-Gmail-Labels`, as written (nested labels keep their `/`).
    pub labels: Vec<String>,
}

fn push_flag(flags: &mut Vec<String>, f: &str) {
    if !flags.iter().any(|g| g.eq_ignore_ascii_case(f)) {
        flags.push(f.to_string());
    }
}

/// A keyword made of `word`: characters an IMAP atom cannot hold become `_`.
pub fn keyword(word: &str) -> Option<String> {
    let k: String = word
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '(' | ')' | '{' | '%' | '*' | '"' | '\\' | ']')
            {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!k.is_empty()).then_some(k)
}

/// The labels of an `X-Gmail-Labels` value: comma-separated, a label holding a
/// comma in double quotes.
pub fn split_labels(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// What a Gmail label means for a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelUse {
    /// A folder, with its special-use role if it has one.
    Folder(String, Option<&'static str>),
    /// A flag or keyword (`Opened`, `Starred`, `Important`, `Category …`).
    Flag(String),
    /// `Unread`: no `\Seen`, whatever else says so.
    Unread,
    /// `Archived`: out of the inbox; a message with no folder label goes to the archive.
    Archived,
}

pub fn label_use(label: &str) -> LabelUse {
    match label.to_ascii_lowercase().as_str() {
        "inbox" => LabelUse::Folder("INBOX".into(), None),
        "sent" | "sent mail" => LabelUse::Folder("Sent".into(), Some("\\Sent")),
        "spam" => LabelUse::Folder("Spam".into(), Some("\\Junk")),
        "trash" => LabelUse::Folder("Trash".into(), Some("\\Trash")),
        "drafts" | "draft" => LabelUse::Folder("Drafts".into(), Some("\\Drafts")),
        "opened" => LabelUse::Flag("\\Seen".into()),
        "starred" => LabelUse::Flag("\\Flagged".into()),
        "important" => LabelUse::Flag("$Important".into()),
        "unread" => LabelUse::Unread,
        "archived" => LabelUse::Archived,
        l if l.starts_with("category ") => {
            LabelUse::Flag(keyword(label).unwrap_or_else(|| "Category".into()))
        }
        _ => LabelUse::Folder(label.to_string(), None),
    }
}

/// The folder of the messages no folder label names (Takeout's "Archived").
pub const ARCHIVE: &str = "Archive";

/// A folder a label stands for, with its special-use role.
pub type LabelFolder = (String, Option<&'static str>);

/// The folders a message goes to under `--labels-as-folders` (each once; the
/// archive when no label names a folder) and the flags its labels give.
pub fn label_folders(labels: &[String]) -> (Vec<LabelFolder>, Vec<String>, bool) {
    let mut folders: Vec<LabelFolder> = Vec::new();
    let mut flags = Vec::new();
    let mut unread = false;
    for l in labels {
        match label_use(l) {
            LabelUse::Folder(f, role) => {
                if !folders.iter().any(|(g, _)| *g == f) {
                    folders.push((f, role));
                }
            }
            LabelUse::Flag(f) => push_flag(&mut flags, &f),
            LabelUse::Unread => unread = true,
            LabelUse::Archived => {}
        }
    }
    if folders.is_empty() {
        folders.push((ARCHIVE.to_string(), Some("\\Archive")));
    }
    (folders, flags, unread)
}

/// Flags, keywords, Thunderbird's deletion mark and Gmail's labels from a
/// message's headers: mutt/Pine/Python/Dovecot `Status:` (R: `\Seen`) and
/// `X-Status:` (A F T D: `\Answered \Flagged \Draft \Deleted`), Dovecot's and
/// UW-IMAP's `X-Keywords:`, Thunderbird's `X-Mozilla-Status` (0x1 read, 0x2
/// replied, 0x4 flagged, 0x8 deleted, 0x1000 forwarded), `X-Mozilla-Status2`
/// (0x00200000 IMAP-deleted) and `X-Mozilla-Keys:`, and Takeout's `X-Gmail-Labels`
/// (Opened, Starred, Important and Category labels; the others become keywords
/// unless `labels_are_folders`).
pub fn marks(msg: &[u8], labels_are_folders: bool) -> Marks {
    use crate::dedupe::header;
    let mut m = Marks::default();
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).trim().to_string();
    let status = header(msg, "Status").map(text).unwrap_or_default();
    let x = header(msg, "X-Status").map(text).unwrap_or_default();
    if status.contains('R') {
        push_flag(&mut m.flags, "\\Seen");
    }
    for (c, f) in [
        ('A', "\\Answered"),
        ('F', "\\Flagged"),
        ('T', "\\Draft"),
        ('D', "\\Deleted"),
    ] {
        if x.contains(c) {
            push_flag(&mut m.flags, f);
        }
    }
    let hex = |name: &str| {
        header(msg, name)
            .map(text)
            .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
    };
    if let Some(s) = hex("X-Mozilla-Status") {
        for (bit, f) in [
            (0x1, "\\Seen"),
            (0x2, "\\Answered"),
            (0x4, "\\Flagged"),
            (0x1000, "$Forwarded"),
        ] {
            if s & bit != 0 {
                push_flag(&mut m.flags, f);
            }
        }
        m.deleted = s & 0x8 != 0;
    }
    if hex("X-Mozilla-Status2").is_some_and(|s| s & 0x0020_0000 != 0) {
        push_flag(&mut m.flags, "\\Deleted");
    }
    for name in ["X-Mozilla-Keys", "X-Keywords"] {
        if let Some(v) = header(msg, name).map(text) {
            for k in v.split([' ', ',', '\t']).filter_map(keyword) {
                push_flag(&mut m.flags, &k);
            }
        }
    }
    if let Some(v) = header(msg, "X-Gmail-Labels").map(text) {
        m.labels = split_labels(&v);
        let mut unread = false;
        for l in &m.labels {
            match label_use(l) {
                LabelUse::Flag(f) => push_flag(&mut m.flags, &f),
                LabelUse::Unread => unread = true,
                LabelUse::Folder(..) | LabelUse::Archived if !labels_are_folders => {
                    if let Some(k) = keyword(l) {
                        push_flag(&mut m.flags, &k);
                    }
                }
                _ => {}
            }
        }
        if unread {
            m.flags.retain(|f| f != "\\Seen");
        }
    }
    m.placeholder = header(msg, "Subject")
        .is_some_and(|s| text(s).starts_with("DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA"))
        && (header(msg, "X-IMAP").is_some() || header(msg, "X-IMAPbase").is_some());
    m
}

/// Headers a mail client adds to an mbox message it reads or serves (mutt, Pine,
/// Dovecot, UW-IMAP, Thunderbird): without them a message comes back as it was
/// stored.
const CLIENT_HEADERS: &[&str] = &[
    "status",
    "x-status",
    "x-keywords",
    "x-uid",
    "x-imap",
    "x-imapbase",
    "content-length",
    "lines",
    "x-mozilla-status",
    "x-mozilla-status2",
    "x-mozilla-keys",
];

/// `msg` without the header fields mail clients add ([`CLIENT_HEADERS`], with
/// their continuation lines), or `None` when it has none.
pub fn without_client_headers(msg: &[u8]) -> Option<Vec<u8>> {
    let end = crate::dedupe::body_offset(msg);
    let mut out = Vec::with_capacity(msg.len());
    let mut dropping = false;
    let mut dropped = false;
    for line in lines(&msg[..end]) {
        let folded = line.first().is_some_and(|c| *c == b' ' || *c == b'\t');
        if !folded {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            dropping = line.contains(&b':')
                && CLIENT_HEADERS
                    .iter()
                    .any(|h| name.eq_ignore_ascii_case(h.as_bytes()));
        }
        if dropping {
            dropped = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&msg[end..]);
    dropped.then_some(out)
}

/// `msg` with the empty line that ends its header block written with the other
/// line ending (`\r\n` for `\n` and back), or `None` when it has no such line.
/// Dovecot, when it rewrites the headers of an mbox message (X-UID, Status…),
/// writes that line as a bare `\n` even in a message whose lines end `\r\n`.
pub fn other_blank_line(msg: &[u8]) -> Option<Vec<u8>> {
    let end = crate::dedupe::body_offset(msg);
    let head = &msg[..end];
    let start = head[..head.len().saturating_sub(1)]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let other: &[u8] = match &head[start..] {
        b"\n" => b"\r\n",
        b"\r\n" => b"\n",
        _ => return None,
    };
    let mut out = Vec::with_capacity(msg.len() + 1);
    out.extend_from_slice(&head[..start]);
    out.extend_from_slice(other);
    out.extend_from_slice(&msg[end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Bytes = &'static [u8];

    fn date(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn messages(entries: &[Entry]) -> Vec<&[u8]> {
        entries.iter().map(|e| e.message.as_slice()).collect()
    }

    #[test]
    fn procmail_separators_have_two_spaces_after_the_sender() {
        for (sep, want) in [
            (&b"From a@b  Mon Jan  1 00:00:00 2001"[..], true),
            (b"From a@b Mon Jan  1 00:00:00 2001", false),
            (b"From a@b   Mon Jan  1 00:00:00 2001", false),
            (b"From a@b", false),
        ] {
            assert_eq!(
                two_spaces_after_sender(sep),
                want,
                "{}",
                String::from_utf8_lossy(sep)
            );
        }
    }

    #[test]
    fn content_lengths_must_end_at_a_separator() {
        let sep = "From a@b Mon Jan  1 00:00:00 2001\n";
        let f = Format::plain(Dialect::Rd);
        let cl = |text: &str, whole: bool| {
            content_lengths(
                text.as_bytes(),
                &sample_messages(text.as_bytes(), &f),
                whole,
            )
        };
        let good = format!("{sep}Content-Length: 4\n\nabc\n\n{sep}Content-Length: 2\n\nx\n");
        assert_eq!(
            cl(&good, true),
            ContentLengths {
                ok: 2,
                ..Default::default()
            }
        );
        let short = format!("{sep}Content-Length: 2\n\nabc\n\n{sep}\nx\n");
        assert_eq!(cl(&short, true).bad, 1);
        // Past the end of a sample that is not the whole file: not judged.
        let cut = format!("{sep}Content-Length: 99\n\nabc\n");
        assert_eq!(cl(&cut, false), ContentLengths::default());
        assert_eq!(cl(&cut, true).bad, 1);
        let quoted = format!("{sep}Content-Length: 11\n\n>From x\nab\n\n{sep}\nx\n");
        let got = cl(&quoted, true);
        assert!(got.quoted_from && !got.unquoted_from, "{got:?}");
    }

    #[test]
    fn round_trip() {
        let binary: Vec<u8> = (0x80..=0xffu8).chain(*b"\n").collect();
        let table: &[(&str, &str, Option<&str>, &[u8])] = &[
            ("crlf", "alice@x", Some("2024-03-05T07:08:09+02:00"), b"From: a@x\r\nSubject: hi\r\n\r\nbody\r\n"),
            ("lf", "bob@y", None, b"From: b@y\nSubject: lf\n\nbody\n"),
            ("no final newline", "", Some("1999-12-31T23:59:59Z"), b"Subject: n\n\nno newline"),
            ("from lines", "a b", Some("2010-10-10T10:10:10-05:00"), b"Subject: q\n\nFrom here\n>From there\n>>From everywhere\nFrom\n>From\n"),
            ("crlf from lines", "c", None, b"Subject: q\r\n\r\nFrom me\r\n\r\n>From you\r\n\r\nFrom x Thu Jan  1 00:00:00 1970\r\n"),
            ("first line From", "d", None, b"From x\nSubject: y\n\nb\n"),
            ("first line >From", "d", None, b">From x\nSubject: y\n\nb\n"),
            ("empty body", "e", None, b"Subject: e\r\n\r\n"),
            ("trailing blank lines", "f", None, b"Subject: f\n\nbody\n\n\n"),
            ("empty message", "g", None, b""),
            ("only a newline", "h", None, b"\n"),
            ("binary", "i", Some("2038-01-19T03:14:08Z"), &binary),
        ];
        let mut file = Vec::new();
        let mut offsets = Vec::new();
        for (name, sender, when, msg) in table {
            let before = file.len();
            offsets.push(before as u64);
            let n = write_message(&mut file, sender, when.map(date), msg).unwrap();
            assert_eq!(n, (file.len() - before) as u64, "{name}");
        }
        let entries = parse(&file, Dialect::Rd);
        assert_eq!(entries.len(), table.len());
        for (((name, _, when, msg), entry), offset) in table.iter().zip(&entries).zip(offsets) {
            let mut want = msg.to_vec();
            if !want.is_empty() && !want.ends_with(b"\n") {
                want.push(b'\n'); // the caller trims using the size it recorded
            }
            assert_eq!(entry.message, want, "{name}");
            assert_eq!(entry.offset, offset, "{name}");
            let want_date = when.map_or(DateTime::<Utc>::UNIX_EPOCH, |d| date(d).to_utc());
            let got = from_line_date(&entry.from_line).unwrap().to_utc();
            assert_eq!(got, want_date, "{name}");
        }
        assert_eq!(
            entries[0].from_line,
            b"From alice@x Tue Mar  5 05:08:09 2024"
        );
        assert_eq!(
            entries[2].from_line,
            b"From MAILER-DAEMON Fri Dec 31 23:59:59 1999"
        );
        assert_eq!(entries[3].from_line, b"From a_b Sun Oct 10 15:10:10 2010");
        assert_eq!(entries[1].from_line, b"From bob@y Thu Jan  1 00:00:00 1970");
    }

    #[test]
    fn write_exact_bytes() {
        let table: &[(&[u8], &[u8])] = &[
            (b"a\n", b"From s Thu Jan  1 00:00:00 1970\na\n\n"),
            (b"a", b"From s Thu Jan  1 00:00:00 1970\na\n\n"),
            (b"", b"From s Thu Jan  1 00:00:00 1970\n\n"),
            (
                b"From x\r\n",
                b"From s Thu Jan  1 00:00:00 1970\n>From x\r\n\n",
            ),
        ];
        for (msg, want) in table {
            let mut out = Vec::new();
            write_message(&mut out, "s", None, msg).unwrap();
            assert_eq!(out, *want, "{:?}", String::from_utf8_lossy(msg));
        }
    }

    /// A date whose UTC year has no 4 digits (found by tests/it/fuzz.rs): the separator
    /// still reads as one, so the message is not glued to the one before.
    #[test]
    fn separator_years_stay_four_digits() {
        for (date, year) in [
            ("0000-01-01T00:30:00+01:00", "0000"),
            ("9999-12-31T23:30:00-01:00", "9999"),
            ("0999-06-01T00:00:00Z", "0999"),
        ] {
            let mut file = Vec::new();
            write_message(&mut file, "a", None, b"one\n").unwrap();
            write_message(&mut file, "b", Some(super::tests::date(date)), b"two\n").unwrap();
            let entries = parse(&file, Dialect::Rd);
            assert_eq!(messages(&entries), [&b"one\n"[..], b"two\n"], "{date}");
            assert!(entries[1].from_line.ends_with(year.as_bytes()), "{date}");
            assert!(from_line_date(&entries[1].from_line).is_some(), "{date}");
        }
    }

    /// A BOM is found in the first line whatever the reader's buffer holds (found
    /// by tests/it/fuzz.rs: a 1- or 2-byte buffer missed it, and every message).
    #[test]
    fn bom_with_a_small_buffer() {
        let file = b"\xEF\xBB\xBFFrom a Thu Jan  1 00:00:00 1970\none\n\n";
        for cap in 1..8 {
            let mut r = Reader::new(
                std::io::BufReader::with_capacity(cap, &file[..]),
                Dialect::Rd,
                0,
            );
            let e = r.next_entry().unwrap().unwrap();
            assert_eq!(
                (e.message.as_slice(), e.offset),
                (&b"one\n"[..], 3),
                "{cap}"
            );
            assert!(r.next_entry().unwrap().is_none());
        }
    }

    #[test]
    fn quote_and_unquote() {
        // (input, quote, unquote_rd, unquote_o)
        let table: &[(Bytes, Bytes, Bytes, Bytes)] = &[
            (b"From a\n", b">From a\n", b"From a\n", b"From a\n"),
            (b">From a\n", b">>From a\n", b"From a\n", b"From a\n"),
            (
                b">>From a\r\n",
                b">>>From a\r\n",
                b">From a\r\n",
                b">>From a\r\n",
            ),
            (b"x\nFrom a", b"x\n>From a", b"x\nFrom a", b"x\nFrom a"),
            (
                b"From\n>From\nfrom a\n",
                b"From\n>From\nfrom a\n",
                b"From\n>From\nfrom a\n",
                b"From\n>From\nfrom a\n",
            ),
            (
                b" From a\n>x From a\n",
                b" From a\n>x From a\n",
                b" From a\n>x From a\n",
                b" From a\n>x From a\n",
            ),
            (b"", b"", b"", b""),
        ];
        for (input, q, rd, o) in table {
            let name = String::from_utf8_lossy(input);
            assert_eq!(quote(input), *q, "quote {name:?}");
            assert_eq!(unquote_rd(input), *rd, "unquote_rd {name:?}");
            assert_eq!(unquote_o(input), *o, "unquote_o {name:?}");
            assert_eq!(unquote_rd(&quote(input)), *input, "rd inverse {name:?}");
        }
    }

    const THREE: &[u8] = b"From a@x Thu Jan  1 00:00:00 1970\nSubject: 1\n\none\n\n\
From b@x Fri Jan  2 00:00:00 1970\nSubject: 2\n\ntwo\n\n\
From c@x Sat Jan  3 00:00:00 1970\nSubject: 3\n\nthree";

    #[test]
    fn last_message_is_returned() {
        // (file ending, last message)
        let table: &[(&[u8], &[u8])] = &[
            (b"", b"Subject: 3\n\nthree"),
            (b"\n", b"Subject: 3\n\nthree\n"),
            (b"\n\n", b"Subject: 3\n\nthree\n"),
            (b"\n\n\n", b"Subject: 3\n\nthree\n\n"),
        ];
        for (ending, last) in table {
            let file = [THREE, ending].concat();
            let entries = parse(&file, Dialect::Rd);
            assert_eq!(
                messages(&entries),
                [&b"Subject: 1\n\none\n"[..], b"Subject: 2\n\ntwo\n", last],
                "{ending:?}"
            );
            assert_eq!(entries[2].from_line, b"From c@x Sat Jan  3 00:00:00 1970");
            assert_eq!(&file[entries[1].offset as usize..][..7], b"From b@");
        }
    }

    #[test]
    fn dialects() {
        let file = b"From a Thu Jan  1 00:00:00 1970\n>From x\n>>From y\n>>>From z\n\n";
        let table = [
            (Dialect::O, &b"From x\n>>From y\n>>>From z\n"[..]),
            (Dialect::Rd, b"From x\n>From y\n>>From z\n"),
        ];
        for (dialect, want) in table {
            assert_eq!(messages(&parse(file, dialect)), [want], "{dialect:?}");
        }
    }

    #[test]
    fn crlf_file() {
        let file = b"From a Thu Jan  1 00:00:00 1970\r\nSubject: 1\r\n\r\none\r\n\r\n\
From b Thu Jan  1 00:00:01 1970\r\nSubject: 2\r\n\r\n>From two\r\n\r\n";
        let entries = parse(file, Dialect::Rd);
        assert_eq!(
            messages(&entries),
            [
                &b"Subject: 1\r\n\r\none\r\n"[..],
                b"Subject: 2\r\n\r\nFrom two\r\n"
            ]
        );
        assert_eq!(entries[1].from_line, b"From b Thu Jan  1 00:00:01 1970");
        assert_eq!(
            from_line_date(&entries[1].from_line).unwrap().timestamp(),
            1
        );
    }

    #[test]
    fn leading_material() {
        // (file, messages, first offset)
        let table: &[(Bytes, &[Bytes], u64)] = &[
            (
                b"\xEF\xBB\xBFFrom a Thu Jan  1 00:00:00 1970\nx\n\n",
                &[b"x\n"],
                3,
            ),
            (
                b"\xEF\xBB\xBF\n\r\nFrom a Thu Jan  1 00:00:00 1970\nx\n",
                &[b"x\n"],
                6,
            ),
            (b"\n\nFrom a Thu Jan  1 00:00:00 1970\nx\n", &[b"x\n"], 2),
            (
                b"junk\n\nFrom a Thu Jan  1 00:00:00 1970\nx\n",
                &[b"x\n"],
                6,
            ),
            (b"", &[], 0),
            (b"\xEF\xBB\xBF", &[], 0),
            (b"Subject: no separator\n\nFrom here on, we go\n", &[], 0),
            (b"junk\nFrom a Thu Jan  1 00:00:00 1970\nx\n", &[], 0),
        ];
        for (file, want, offset) in table {
            let entries = parse(file, Dialect::Rd);
            assert_eq!(
                messages(&entries),
                *want,
                "{:?}",
                String::from_utf8_lossy(file)
            );
            if let Some(first) = entries.first() {
                assert_eq!(first.offset, *offset);
            }
        }
    }

    #[test]
    fn unquoted_from_in_body() {
        let file = b"From a Thu Jan  1 00:00:00 1970\nSubject: s\n\nhi\n\n\
From here on, we go at 10:30 sharp.\nFrom b Thu Jan  1 00:00:00 1970\nstill body\n\n\
From c Thu Jan  1 00:00:00 1970\nlast\n";
        let entries = parse(file, Dialect::Rd);
        assert_eq!(
            messages(&entries),
            [
                &b"Subject: s\n\nhi\n\nFrom here on, we go at 10:30 sharp.\nFrom b Thu Jan  1 00:00:00 1970\nstill body\n"[..],
                b"last\n"
            ]
        );
    }

    #[test]
    fn separator_shapes() {
        let table: &[(&str, bool)] = &[
            ("From a@x Thu Jan  1 00:00:00 1970", true),
            ("From a@x Thu Jan 1 00:00 1970", true),
            ("From a@x Thu, 1 Jan 1970 00:00:00 +0000", true),
            ("From a@x Thu Jan  1 00:00:00 1970 remote from y", true),
            ("From here on, we...", false),
            ("From  Thu Jan  1 00:00:00 1970", false),
            ("From a@x Thu Jan  1 00:00:00 +0100", false),
            ("From a@x Thu Jan  1 1970", false),
            ("From a@x", false),
            ("From ", false),
            ("from a@x Thu Jan  1 00:00:00 1970", false),
        ];
        for (line, want) in table {
            assert_eq!(looks_like_separator(line.as_bytes()), *want, "{line}");
        }
    }

    #[test]
    fn from_line_dates() {
        let table: &[(&str, Option<&str>)] = &[
            (
                "From a Thu Jan  1 00:00:00 1970",
                Some("1970-01-01T00:00:00+00:00"),
            ),
            (
                "From a Tue Mar  5 05:08:09 2024\r\n",
                Some("2024-03-05T05:08:09+00:00"),
            ),
            (
                "From a Tue Mar  5 05:08 2024",
                Some("2024-03-05T05:08:00+00:00"),
            ),
            (
                "From a Tue Mar  5 05:08:09 2024 +0200",
                Some("2024-03-05T05:08:09+02:00"),
            ),
            (
                "From a Tue Mar  5 05:08:09 PST 2024",
                Some("2024-03-05T05:08:09-08:00"),
            ),
            (
                "From a Tue Mar  5 05:08:09 -0130 2024",
                Some("2024-03-05T05:08:09-01:30"),
            ),
            (
                "From a Tue, 5 Mar 2024 05:08:09 GMT",
                Some("2024-03-05T05:08:09+00:00"),
            ),
            (
                "From a Tue March 5 05:08:09 2024",
                Some("2024-03-05T05:08:09+00:00"),
            ),
            ("From a Tue Feb 30 05:08:09 2024", None),
            ("From a Tue Mar  5 25:08:09 2024", None),
            ("From a Tue Mar  5 2024", None),
            ("From here on, we...", None),
            ("Subject: Tue Mar  5 05:08:09 2024", None),
        ];
        for (line, want) in table {
            assert_eq!(from_line_date(line.as_bytes()), want.map(date), "{line}");
        }
    }

    #[test]
    fn drop_trailing_blank_table() {
        let table: &[(&[u8], &[u8])] = &[
            (b"x\n\n", b"x\n"),
            (b"x\r\n\r\n", b"x\r\n"),
            (b"x\r\n\n", b"x\r\n"),
            (b"x\n", b"x\n"),
            (b"x", b"x"),
            (b"\n", b""),
            (b"\r\n", b""),
            (b"", b""),
        ];
        for (body, want) in table {
            assert_eq!(drop_trailing_blank(body), *want, "{body:?}");
        }
    }

    /// Each dialect decided from a file's contents: (name, sample, whole, format,
    /// CRLF, words of the reason).
    #[test]
    fn detect_table() {
        let dateless = |f: Format| Format {
            dateless: true,
            ..f
        };
        let rd = Format::plain(Dialect::Rd);
        let o = Format::plain(Dialect::O);
        let cl2_body = "x\n\nFrom b@x Thu Jan  1 00:00:00 1970\nSubject: quoted\n\nbody\n";
        let cl2 = format!(
            "From a@x Thu Jan  1 00:00:00 1970\nSubject: 1\nContent-Length: {}\n\n{cl2_body}\n\
             From c@x Thu Jan  1 00:00:01 1970\nSubject: 2\nContent-Length: 2\n\nx\n\n",
            cl2_body.len()
        );
        let cl_body = ">From quoted\n";
        let cl = format!(
            "From a@x Thu Jan  1 00:00:00 1970\nContent-Length: {}\n\n{cl_body}\n\
             From c@x Thu Jan  1 00:00:01 1970\nContent-Length: 2\n\nx\n",
            cl_body.len()
        );
        // A Content-Length that does not end at a separator: not mboxcl.
        let cl_wrong = "From a@x Thu Jan  1 00:00:00 1970\nContent-Length: 3\n\none two\n\n\
             From c@x Thu Jan  1 00:00:01 1970\nContent-Length: 2\n\nx\n";
        // In a sample (not the whole file), a length past its end is not held against it.
        let cl_past_sample =
            format!("{cl2}From d@x Thu Jan  1 00:00:02 1970\nContent-Length: 900\n\nx");
        let two = |a: &str, b: &str| format!("{a}Subject: 1\n\none\n\n{b}Subject: 2\n\ntwo\n");
        let table: Vec<(&str, String, bool, Format, bool, &str)> = vec![
            ("empty", String::new(), true, rd, false, "empty"),
            ("only line ends", "\n\r\n".into(), true, rd, false, "empty"),
            (
                "mboxrd",
                two(
                    "From a@x Thu Jan  1 00:00:00 1970\n",
                    "From b@x Thu Jan  1 00:00:01 1970\n",
                ),
                true,
                rd,
                false,
                "no mark of an mboxo writer",
            ),
            (
                "crlf",
                two(
                    "From a@x Thu Jan  1 00:00:00 1970\r\n",
                    "From b@x Thu Jan  1 00:00:01 1970\r\n",
                ),
                true,
                rd,
                true,
                "no mark",
            ),
            (
                "bom and blank lines first",
                format!(
                    "\u{feff}\n\n{}",
                    two(
                        "From a@x Thu Jan  1 00:00:00 1970\n",
                        "From b@x Thu Jan  1 00:00:01 1970\n"
                    )
                ),
                true,
                rd,
                false,
                "no mark",
            ),
            (
                "MMDF",
                "\x01\x01\x01\x01\nSubject: 1\n\none\n\x01\x01\x01\x01\n".into(),
                true,
                Format::MMDF,
                false,
                "four ^A",
            ),
            (
                "MMDF crlf",
                "\x01\x01\x01\x01\r\nSubject: 1\r\n\r\none\r\n\x01\x01\x01\x01\r\n".into(),
                true,
                Format::MMDF,
                true,
                "four ^A",
            ),
            (
                "mboxcl2",
                cl2.clone(),
                true,
                Format::MBOXCL2,
                false,
                "Content-Length",
            ),
            (
                "mboxcl2 sample",
                cl_past_sample,
                false,
                Format::MBOXCL2,
                false,
                "Content-Length",
            ),
            ("mboxcl", cl, true, Format::MBOXCL, false, ">From quoting"),
            (
                "Content-Length not at a separator",
                cl_wrong.into(),
                true,
                rd,
                false,
                "no mark",
            ),
            (
                "Thunderbird",
                two(
                    "From - Mon Jan 15 09:30:00 2024\nX-Mozilla-Status: 0001\n",
                    "From - Mon Jan 15 09:30:01 2024\n",
                ),
                true,
                o,
                false,
                "X-Mozilla-Status",
            ),
            (
                "bare From -",
                two("From - \n", "From - \n"),
                true,
                dateless(o),
                false,
                "`From - `",
            ),
            (
                "procmail",
                two(
                    "From a@x  Thu Jan  1 00:00:00 1970\n",
                    "From b@x  Thu Jan  1 00:00:01 1970\n",
                ),
                true,
                o,
                false,
                "procmail",
            ),
            (
                "mutt Status",
                two(
                    "From a@x Thu Jan  1 00:00:00 1970\nStatus: RO\n",
                    "From b@x Thu Jan  1 00:00:01 1970\nStatus: O\n",
                ),
                true,
                o,
                false,
                "Status:",
            ),
            (
                "Status on one of three",
                format!(
                    "{}From c@x Thu Jan  1 00:00:02 1970\nSubject: 3\n\nthree\n",
                    two(
                        "From a@x Thu Jan  1 00:00:00 1970\nStatus: RO\n",
                        "From b@x Thu Jan  1 00:00:01 1970\n"
                    )
                ),
                true,
                rd,
                false,
                "no mark",
            ),
            (
                "Python",
                two(
                    "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n",
                    "From MAILER-DAEMON Thu Jan  1 00:00:01 1970\n",
                ),
                true,
                o,
                false,
                "MAILER-DAEMON",
            ),
            (
                "dateless Takeout",
                two(
                    "From 1844347792267117879@xxx\n",
                    "From 1844347792267117880@xxx\n",
                ),
                true,
                dateless(rd),
                false,
                "no mark",
            ),
        ];
        for (name, sample, whole, format, crlf, why) in table {
            let got = detect(sample.as_bytes(), whole).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.format, format, "{name}: {}", got.why);
            assert_eq!(got.crlf, crlf, "{name}");
            assert!(got.why.contains(why), "{name}: {}", got.why);
        }
        // No mailbox of any kind: the words say what the file starts with.
        for (name, sample) in [
            (
                "a single message",
                &b"Subject: a letter\n\nnot a mailbox\n"[..],
            ),
            ("a bare From line", b"From\nSubject: x\n\n"),
            ("binary", b"\x00\x01\x02PK\x03\x04"),
        ] {
            let e = detect(sample, true).expect_err(name);
            assert!(
                e.starts_with("not an mbox file: it starts with"),
                "{name}: {e}"
            );
        }
    }

    /// A Content-Length is honoured only where it ends at a separator (or the end of
    /// the file); otherwise that message, and only that one, is read by separators.
    #[test]
    fn content_length_fallback() {
        let honoured = "x\n\nFrom b@x Thu Jan  1 00:00:00 1970\nnot a message\n";
        let file = format!(
            // Too short: it ends in the middle of "one two".
            "From a@x Thu Jan  1 00:00:00 1970\nContent-Length: 3\nSubject: 1\n\none two\n\n\
             From c@x Thu Jan  1 00:00:01 1970\nContent-Length: {}\n\n{honoured}\n\
             From d@x Thu Jan  1 00:00:02 1970\nContent-Length: x7\n\nnot a number\n\n\
             From e@x Thu Jan  1 00:00:03 1970\nContent-Length: 0\n\n\n\
             From f@x Thu Jan  1 00:00:04 1970\nContent-Length: 999\n\npast the end\n",
            honoured.len()
        );
        let second = format!("Content-Length: {}\n\n{honoured}", honoured.len());
        let want: [&[u8]; 5] = [
            b"Content-Length: 3\nSubject: 1\n\none two\n",
            second.as_bytes(),
            b"Content-Length: x7\n\nnot a number\n",
            b"Content-Length: 0\n\n",
            b"Content-Length: 999\n\npast the end\n",
        ];
        for format in [Format::MBOXCL2, Format::MBOXCL] {
            let entries = parse_format(file.as_bytes(), format);
            assert_eq!(messages(&entries), want, "{}", format.name());
            assert_eq!(
                &file.as_bytes()[entries[2].offset as usize..][..8],
                b"From d@x"
            );
            // Read through a tiny buffer (the bytes given back cross reads).
            let mut r = Reader::with_format(
                std::io::BufReader::with_capacity(3, file.as_bytes()),
                format,
                0,
            );
            let mut got = Vec::new();
            while let Some(e) = r.next_entry().unwrap() {
                got.push(e.message);
            }
            assert_eq!(
                got,
                want.map(<[u8]>::to_vec),
                "{} small buffer",
                format.name()
            );
        }
        // Without Content-Length reading, the body's separator splits the message.
        assert_eq!(parse(file.as_bytes(), Dialect::O).len(), 6);
    }

    #[test]
    fn without_client_headers_table() {
        let table: &[(&str, Bytes, Option<Bytes>)] = &[
            ("none", b"Subject: s\n\nStatus: RO\n", None),
            (
                "Dovecot's",
                b"X-IMAPbase: 1 2 $k\nSubject: s\nX-UID: 1   \nStatus: RO\nX-Status: F\n\
X-Keywords: $k             \nContent-Length: 5\n\nbody\nX-UID: 1\n",
                Some(b"Subject: s\n\nbody\nX-UID: 1\n"),
            ),
            (
                "folded, CRLF, any case",
                b"x-keywords: a\r\n\tb\r\nSubject: s\r\n c\r\nX-MOZILLA-STATUS: 0001\r\n\r\nb",
                Some(b"Subject: s\r\n c\r\n\r\nb"),
            ),
            (
                "Thunderbird, mutt",
                b"X-Mozilla-Status: 0001\nX-Mozilla-Status2: 00000000\nX-Mozilla-Keys: work\n\
Lines: 3\nX-IMAP: 1 2\nSubject: s\n\n",
                Some(b"Subject: s\n\n"),
            ),
            (
                "names that only start alike",
                b"Status-Report: x\nX-UIDL: 3\nLines-Of-Code: 4\nContent-Length-X: 1\n\n",
                None,
            ),
            ("only client headers", b"Status: O\n\nbody", Some(b"\nbody")),
            (
                "no empty line",
                b"Subject: s\nStatus: O\n",
                Some(b"Subject: s\n"),
            ),
            ("empty", b"", None),
            ("body only", b"\nStatus: RO\n", None),
        ];
        for (name, msg, want) in table {
            assert_eq!(without_client_headers(msg).as_deref(), *want, "{name}");
        }
    }

    #[test]
    fn other_blank_line_table() {
        let table: &[(Bytes, Option<Bytes>)] = &[
            (b"A: b\r\n\r\nbody\r\n\r\n", Some(b"A: b\r\n\nbody\r\n\r\n")),
            (b"A: b\r\n\nbody", Some(b"A: b\r\n\r\nbody")),
            (b"A: b\n\nbody\n", Some(b"A: b\n\r\nbody\n")),
            (b"\r\nbody", Some(b"\nbody")),
            (b"\n", Some(b"\r\n")),
            (b"A: b\r\n", None),
            (b"A: b", None),
            (b"", None),
        ];
        for (msg, want) in table {
            assert_eq!(other_blank_line(msg).as_deref(), *want, "{msg:?}");
        }
        // What Dovecot does to a CRLF message it serves from an mbox file, undone.
        let orig = b"From: a@x\r\nSubject: s\r\n\r\nbody\r\n";
        let served =
            b"From: a@x\r\nSubject: s\r\nX-UID: 1   \nStatus: RO\nX-Keywords: $k  \n\nbody\r\n";
        let stripped = without_client_headers(served).unwrap();
        assert_eq!(other_blank_line(&stripped).unwrap(), orig);
    }

    /// Manual check against Python: `MBOX_OUT=/tmp/x.mbox cargo test --lib write_sample -- --ignored`
    /// then `python3 -c "import mailbox; print(len(mailbox.mbox('/tmp/x.mbox')))"`.
    #[test]
    #[ignore]
    fn write_sample() {
        let path = std::env::var("MBOX_OUT").unwrap_or("/tmp/mailferry-sample.mbox".into());
        let mut file = Vec::new();
        for msg in [
            &b"Subject: a\r\n\r\nFrom x\r\n"[..],
            b"From y\n",
            b"no newline",
            b"",
        ] {
            write_message(&mut file, "s", None, msg).unwrap();
        }
        std::fs::write(path, file).unwrap();
    }
}
