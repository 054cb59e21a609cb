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
        let naive = NaiveDate::from_ymd_opt(year as i32, month, day)?.and_hms_opt(h, m, s)?;
        Some(ImapDate(offset.from_local_datetime(&naive).single()?))
    }

    pub fn from_datetime(d: DateTime<FixedOffset>) -> Option<ImapDate> {
        let y = chrono::Datelike::year(&d);
        (1000..=9999).contains(&y).then_some(ImapDate(d))
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
    fn shown_values_are_escaped_and_short() {
        assert_eq!(shown(b"a\r\n\x1b"), "\"a\\r\\n\\x1b\"");
        assert!(shown(&[b'x'; 100]).ends_with("… (100 bytes)\""));
    }
}
