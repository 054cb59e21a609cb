//! Typed values of what a server said, made at the edge (imap-codec's habit): a
//! value that could not be written back safely cannot be constructed, so the
//! command writer never has to trust text that came from a server.
//!
//! - [`ImapDate`]: an INTERNALDATE (RFC 3501 `date-time`), parsed into a date and
//!   written back in our own canonical form, never as the server's text;
//! - [`valid_flag`]: a flag is `\Word` or a keyword atom (RFC 3501 `flag`);
//! - [`shown`]: a server value quoted for an error message, escaped and cut short.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};

/// An INTERNALDATE: `dd-Mon-yyyy hh:mm:ss +zzzz` (the day may be one digit or
/// space-padded, as servers send it). Its `Display` is the canonical form with a
/// two-digit day, made from the parsed numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapDate(DateTime<FixedOffset>);

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    (s.len() >= min && s.len() <= max && s.bytes().all(|c| c.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl ImapDate {
    /// Parse a server's (or a manifest's) date-time; anything else is `None`.
    pub fn parse(text: &str) -> Option<ImapDate> {
        let text = text.strip_prefix(' ').unwrap_or(text);
        let mut parts = text.split(' ');
        let (date, time, zone) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let mut d = date.split('-');
        let day = digits(d.next()?, 1, 2)?;
        let mon = d.next()?;
        let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as u32 + 1;
        let year = digits(d.next()?, 4, 4)?;
        if d.next().is_some() {
            return None;
        }
        let mut t = time.split(':');
        let h = digits(t.next()?, 2, 2)?;
        let m = digits(t.next()?, 2, 2)?;
        let s = digits(t.next()?, 2, 2)?;
        if t.next().is_some() {
            return None;
        }
        let (sign, z) = match zone.as_bytes().first()? {
            b'+' => (1, &zone[1..]),
            b'-' => (-1, &zone[1..]),
            _ => return None,
        };
        let z = digits(z, 4, 4)?;
        let (zh, zm) = (z / 100, z % 100);
        if zh > 23 || zm > 59 {
            return None;
        }
        let offset = FixedOffset::east_opt(sign * (zh as i32 * 3600 + zm as i32 * 60))?;
        // A leap second (23:59:60) is a valid time of day.
        let naive = match s {
            60 => NaiveDate::from_ymd_opt(year as i32, month, day)?
                .and_hms_milli_opt(h, m, 59, 1_000)?,
            _ => NaiveDate::from_ymd_opt(year as i32, month, day)?.and_hms_opt(h, m, s)?,
        };
        Some(ImapDate(offset.from_local_datetime(&naive).single()?))
    }

    pub fn from_datetime(d: DateTime<FixedOffset>) -> Option<ImapDate> {
        let y = chrono::Datelike::year(&d);
        (1000..=9999).contains(&y).then_some(ImapDate(d))
    }

    /// The day of the date-time in its own zone (what IMAP's SEARCH SINCE and
    /// BEFORE compare).
    pub fn day(&self) -> chrono::NaiveDate {
        self.0.date_naive()
    }

    pub fn datetime(&self) -> DateTime<FixedOffset> {
        self.0
    }
}

impl fmt::Display for ImapDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%d-%b-%Y %H:%M:%S %z"))
    }
}

impl serde::Serialize for ImapDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether `f` is a flag an APPEND may carry as it is: `\Word` (a system flag or a
/// flag-extension) or a keyword atom (RFC 3501: no control characters, space,
/// 8-bit, or `( ) { % * " \ ]`).
pub fn valid_flag(f: &str) -> bool {
    let atom = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|c| {
                c > 0x20
                    && c < 0x7f
                    && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
            })
    };
    match f.strip_prefix('\\') {
        Some(rest) => atom(rest),
        None => atom(f),
    }
}

/// A set of UIDs (RFC 3501 `sequence-set` of `nz-number`s, no `*`), kept as sorted,
/// disjoint ranges: `1:1000002` is one range, never a million numbers in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UidSet(Vec<(u32, u32)>);

/// Ranges one set may hold (a 16 MiB line holds at most about 2 million).
const MAX_RANGES: usize = 4_000_000;

impl UidSet {
    /// Parse `1:3,7,10:11` (either end of a range may come first). Anything else —
    /// `*`, 0, numbers over 2^32-1, signs, empty parts — is `None`.
    pub fn parse(text: &str) -> Option<UidSet> {
        let num = |s: &str| digits(s, 1, 10).filter(|&n| n > 0);
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(part)?, num(part)?),
            };
            ranges.push((a.min(b), a.max(b)));
            if ranges.len() > MAX_RANGES {
                return None;
            }
        }
        Some(UidSet::from_ranges(ranges))
    }

    /// From UIDs in any order, duplicates allowed.
    pub fn from_uids(mut uids: Vec<u32>) -> UidSet {
        uids.sort_unstable();
        UidSet::from_ranges(uids.into_iter().map(|u| (u, u)).collect())
    }

    fn from_ranges(mut r: Vec<(u32, u32)>) -> UidSet {
        r.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(r.len());
        for (a, b) in r {
            match out.last_mut() {
                Some(last) if u64::from(a) <= u64::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        UidSet(out)
    }

    /// How many UIDs (up to 2^32 - 1, so a u64).
    pub fn len(&self) -> u64 {
        self.0.iter().map(|&(a, b)| u64::from(b - a) + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, uid: u32) -> bool {
        let i = self.0.partition_point(|&(_, b)| b < uid);
        self.0.get(i).is_some_and(|&(a, _)| a <= uid)
    }

    /// The UIDs `skip .. skip + max` in ascending order, as a set (a page of a
    /// listing), without expanding the rest.
    pub fn window(&self, skip: u64, max: u64) -> UidSet {
        let (mut skip, mut left) = (skip, max);
        let mut out = Vec::new();
        for &(a, b) in &self.0 {
            if left == 0 {
                break;
            }
            let n = u64::from(b - a) + 1;
            if skip >= n {
                skip -= n;
                continue;
            }
            let start = u64::from(a) + skip;
            let take = (n - skip).min(left);
            out.push((start as u32, (start + take - 1) as u32));
            left -= take;
            skip = 0;
        }
        UidSet(out)
    }

    /// Every UID, ascending (for small sets: a page, an APPENDUID).
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|&(a, b)| a..=b)
    }
}

impl fmt::Display for UidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}:{b}")?;
            }
        }
        Ok(())
    }
}

/// A server's value for an error message: escaped (no control characters reach
/// the terminal or a log line) and cut to 60 bytes.
pub fn shown(v: &[u8]) -> String {
    let cut = &v[..v.len().min(60)];
    let mut s: String = cut.escape_ascii().to_string();
    if v.len() > cut.len() {
        s.push_str(&format!("… ({} bytes)", v.len()));
    }
    format!("\"{s}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_leniently_and_print_canonically() {
        for (text, want) in [
            (
                "17-Jul-1996 02:44:25 -0700",
                Some("17-Jul-1996 02:44:25 -0700"),
            ),
            (
                " 1-Jan-2020 10:00:00 +0000",
                Some("01-Jan-2020 10:00:00 +0000"),
            ),
            (
                "1-jan-2020 10:00:00 +0000",
                Some("01-Jan-2020 10:00:00 +0000"),
            ),
            (
                "01-Jan-2020 10:00:00 +0530",
                Some("01-Jan-2020 10:00:00 +0530"),
            ),
            (
                "31-Dec-2016 23:59:60 +0000",
                Some("31-Dec-2016 23:59:60 +0000"),
            ),
            ("01-Jan-2020 10:00:00 +0000\"\r\nX1 CREATE evil", None),
            ("01-Jan-2020 10:00:00 +0000 extra", None),
            ("31-Feb-2020 10:00:00 +0000", None),
            ("01-Foo-2020 10:00:00 +0000", None),
            ("01-Jan-20 10:00:00 +0000", None),
            ("01-Jan-2020 25:00:00 +0000", None),
            ("01-Jan-2020 10:00:00 0000", None),
            ("01-Jan-2020 10:00:00 +9999", None),
            ("01-Jan-2020 1:00:00 +0000", None),
            ("", None),
        ] {
            assert_eq!(
                ImapDate::parse(text).map(|d| d.to_string()).as_deref(),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn flags_are_atoms() {
        for (f, ok) in [
            ("\\Seen", true),
            ("\\Answered", true),
            ("$Label1", true),
            ("NonJunk", true),
            ("\\", false),
            ("", false),
            ("two words", false),
            ("a\r\nX CREATE b", false),
            ("par(en", false),
            ("quo\"te", false),
            ("caf\u{e9}", false),
            ("\\Se\\en", false),
        ] {
            assert_eq!(valid_flag(f), ok, "{f:?}");
        }
    }

    #[test]
    fn uid_sets_stay_ranges() {
        for (text, want, len) in [
            ("1:3,7,10:11", Some("1:3,7,10:11"), 6),
            ("7,5:3", Some("3:5,7"), 4),
            ("1:1000002", Some("1:1000002"), 1_000_002),
            ("1:4294967295", Some("1:4294967295"), 4_294_967_295),
            ("2,1,3", Some("1:3"), 3),
            ("0:5", None, 0),
            ("1:*", None, 0),
            ("4294967296", None, 0),
            ("-1", None, 0),
            ("+1", None, 0),
            ("1,,2", None, 0),
            ("", None, 0),
        ] {
            let set = UidSet::parse(text);
            assert_eq!(
                set.as_ref().map(|s| s.to_string()).as_deref(),
                want,
                "{text}"
            );
            if let Some(s) = set {
                assert_eq!(s.len(), len, "{text}");
            }
        }
        let s = UidSet::parse("1:3,7,10:11").unwrap();
        assert_eq!(s.window(0, 2).to_string(), "1:2");
        assert_eq!(s.window(2, 3).to_string(), "3,7,10");
        assert_eq!(s.window(5, 10).to_string(), "11");
        assert!(s.window(6, 10).is_empty());
        assert!(s.contains(7) && s.contains(11) && !s.contains(8) && !s.contains(12));
        let huge = UidSet::parse("1:4294967295").unwrap();
        assert_eq!(huge.window(4_294_967_294, 5).to_string(), "4294967295");
        assert_eq!(UidSet::from_uids(vec![9, 4, 5, 4]).to_string(), "4:5,9");
    }

    #[test]
    fn shown_values_are_escaped_and_short() {
        assert_eq!(shown(b"a\r\n\x1b"), "\"a\\r\\n\\x1b\"");
        assert!(shown(&[b'x'; 100]).ends_with("… (100 bytes)\""));
    }
}
