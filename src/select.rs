//! Which messages a run copies at all: `--since`, `--before`, `--max-size` (and the
//! target's APPENDLIMIT, RFC 7889), and in which order (`--newest-first`). Pure:
//! parsing the user's values and the verdict on one listed message, table-tested.
//!
//! A message left out is never recorded in the index: a later run with other
//! filters copies it. Each one is counted in the summary with its reason.
//!
//! Dates are compared as IMAP's SEARCH SINCE/BEFORE define them (RFC 3501: the
//! day of the INTERNALDATE, "disregarding time and timezone"), on the
//! INTERNALDATE mailferry already lists, so every kind of source (IMAP, POP3 by
//! its messages' headers, mbox by their `From ` lines) gives the same answer for
//! the same window, whatever the server's own clock zone is.

use chrono::NaiveDate;

use crate::imap::types::ImapDate;

/// The user's selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Select {
    /// Only messages of this day or later.
    pub since: Option<NaiveDate>,
    /// Only messages of days before this one.
    pub before: Option<NaiveDate>,
    /// Only messages of at most this many bytes (`--max-size`).
    pub max_size: Option<u64>,
    /// The most a target takes in one APPEND (its APPENDLIMIT), set once it is known.
    pub target_limit: Option<u64>,
    /// Copy each folder's newest messages first.
    pub newest_first: bool,
}

/// Why a message is left on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Left {
    /// Its day is before `--since`.
    Older,
    /// Its day is `--before` or later.
    Newer,
    /// Larger than `--max-size`.
    Larger,
    /// Larger than the target accepts (APPENDLIMIT).
    OverLimit,
}

impl Select {
    /// Whether any filter is set (the order is not a filter).
    pub fn filters(&self) -> bool {
        self.since.is_some()
            || self.before.is_some()
            || self.max_size.is_some()
            || self.target_limit.is_some()
    }

    /// Whether a message of `size` bytes dated `date` is copied; `None` when it is,
    /// or why not. A message without a date yet (POP3 before its headers are read)
    /// passes the date filters here and is judged again with its date.
    pub fn verdict(&self, size: u64, date: Option<&ImapDate>) -> Option<Left> {
        if let Some(limit) = self.target_limit {
            if size > limit && self.max_size.is_none_or(|m| m >= limit) {
                return Some(Left::OverLimit);
            }
        }
        if self.max_size.is_some_and(|m| size > m) {
            return Some(Left::Larger);
        }
        let day = date.map(ImapDate::day)?;
        if self.since.is_some_and(|s| day < s) {
            return Some(Left::Older);
        }
        if self.before.is_some_and(|b| day >= b) {
            return Some(Left::Newer);
        }
        None
    }

    /// How the summary names a reason, with the value it was judged against.
    pub fn reason(&self, why: Left) -> String {
        match why {
            Left::Older => format!("dated before --since {}", day_text(self.since)),
            Left::Newer => format!("dated --before {} or later", day_text(self.before)),
            Left::Larger => format!(
                "larger than --max-size ({} bytes)",
                self.max_size.unwrap_or(0)
            ),
            Left::OverLimit => format!(
                "larger than the target accepts (its APPENDLIMIT, {} bytes)",
                self.target_limit.unwrap_or(0)
            ),
        }
    }
}

fn day_text(d: Option<NaiveDate>) -> String {
    d.map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string())
}

/// `--since` / `--before`: `2024-03-01` or IMAP's `1-Mar-2024`.
pub fn parse_day(text: &str) -> Result<NaiveDate, String> {
    let t = text.trim();
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%d-%b-%Y"))
        .map_err(|_| format!("{text:?} is not a date; write it as 2024-03-01 (or 1-Mar-2024)"))
}

/// `--max-size`: bytes, or with a unit: `500K`, `25M`, `201MB`, `1G` (powers of 1024;
/// `B` after the unit is allowed).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad =
        || format!("{text:?} is not a size; write it as bytes or with K, M or G (25M, 201MB, 1G)");
    let t = text.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (digits, shift) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = digits.trim().parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).filter(|&n| n > 0).ok_or_else(bad)
}

/// A rate in bytes a second for `flag` (`--max-bytes-per-sec`): written as a
/// size ([`parse_size`]); the error names the flag.
pub fn parse_rate(text: &str, flag: &str) -> Result<u64, String> {
    parse_size(text).map_err(|_| {
        format!(
            "{flag}: {text:?} is not a rate; write it as bytes or with K, M or G (25M, 201MB, 1G)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        parse_day(s).unwrap()
    }

    #[test]
    fn verdicts_follow_imap_search_days_and_sizes() {
        let sel = Select {
            since: Some(day("2024-03-01")),
            before: Some(day("2024-04-01")),
            max_size: Some(1000),
            ..Select::default()
        };
        // (size, date) → verdict
        let table: &[(u64, Option<&str>, Option<Left>)] = &[
            (10, Some("01-Mar-2024 00:00:00 +0000"), None),
            // The day in the date's own zone counts, not UTC's.
            (10, Some("01-Mar-2024 00:30:00 +0200"), None),
            (10, Some("29-Feb-2024 23:59:59 -1000"), Some(Left::Older)),
            (10, Some("31-Mar-2024 23:59:59 +0000"), None),
            (10, Some("01-Apr-2024 00:00:00 -0800"), Some(Left::Newer)),
            (1000, Some("15-Mar-2024 12:00:00 +0000"), None),
            (1001, Some("15-Mar-2024 12:00:00 +0000"), Some(Left::Larger)),
            // Size first: a large old message is left for its size.
            (1001, Some("01-Jan-2020 12:00:00 +0000"), Some(Left::Larger)),
            // No date yet: judged again once its headers are read.
            (10, None, None),
        ];
        for &(size, date, want) in table {
            let d = date.map(|d| ImapDate::parse(d).unwrap());
            assert_eq!(sel.verdict(size, d.as_ref()), want, "{size} {date:?}");
        }
        assert_eq!(Select::default().verdict(u64::MAX, None), None);
    }

    #[test]
    fn the_targets_limit_applies_unless_max_size_is_smaller() {
        // (max_size, target_limit, size) → verdict
        type Row = (Option<u64>, Option<u64>, u64, Option<Left>);
        let table: &[Row] = &[
            (None, Some(100), 100, None),
            (None, Some(100), 101, Some(Left::OverLimit)),
            (Some(50), Some(100), 101, Some(Left::Larger)),
            (Some(50), Some(100), 60, Some(Left::Larger)),
            (Some(500), Some(100), 101, Some(Left::OverLimit)),
            (Some(500), None, 501, Some(Left::Larger)),
        ];
        for &(max_size, target_limit, size, want) in table {
            let sel = Select {
                max_size,
                target_limit,
                ..Select::default()
            };
            assert_eq!(
                sel.verdict(size, None),
                want,
                "{max_size:?} {target_limit:?} {size}"
            );
        }
    }

    #[test]
    fn days_and_sizes_are_parsed_or_named() {
        assert_eq!(day("2024-03-01"), day("1-Mar-2024"));
        assert_eq!(
            day(" 2024-12-31 "),
            NaiveDate::from_ymd_opt(2024, 12, 31).unwrap()
        );
        for bad in ["2024-13-01", "yesterday", "", "01/03/2024"] {
            assert!(
                parse_day(bad).unwrap_err().contains("is not a date"),
                "{bad}"
            );
        }
        let table: &[(&str, u64)] = &[
            ("1000", 1000),
            ("500K", 500 << 10),
            ("25M", 25 << 20),
            ("201MB", 201 << 20),
            ("201mb", 201 << 20),
            ("1G", 1 << 30),
            ("1gb", 1 << 30),
            ("7B", 7),
        ];
        for &(text, want) in table {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in ["", "M", "-1", "1T", "0", "12.5M", "99999999999999999999G"] {
            assert!(
                parse_size(bad).unwrap_err().contains("is not a size"),
                "{bad}"
            );
        }
    }
}
