//! The fixture mailbox (`fixtures/mail/manifest.tsv`) and the snapshot it should
//! give on a target.

use std::collections::BTreeMap;

use super::*;

/// One manifest row.
pub struct Fixture {
    pub folder: String,
    pub file: String,
    pub flags: Vec<String>,
    pub date: i64,
}

pub fn manifest() -> Vec<Fixture> {
    let text = std::fs::read_to_string(root().join("fixtures/mail/manifest.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let mut flags: Vec<String> = cols[2].split_whitespace().map(str::to_string).collect();
            flags.sort();
            Fixture {
                folder: cols[0].into(),
                file: cols[1].into(),
                flags,
                date: parse_date(cols[3]),
            }
        })
        .collect()
}

/// The snapshot the fixtures should produce, with folders renamed by `map` and
/// identical copies inside one folder collapsed (the first one's flags and date win).
pub fn expected(map: impl Fn(&str) -> String) -> Snapshot {
    expected_with(map, true)
}

/// As seeded: every manifest row, duplicates included.
pub fn seeded() -> Snapshot {
    expected_with(|f| f.to_string(), false)
}

pub fn expected_with(map: impl Fn(&str) -> String, collapse: bool) -> Snapshot {
    let mut out: BTreeMap<String, Vec<Msg>> = BTreeMap::new();
    for f in manifest() {
        let body = crlf(&std::fs::read(root().join("fixtures/mail").join(&f.file)).unwrap());
        let folder = out.entry(map(&f.folder)).or_default();
        if collapse && folder.iter().any(|m| m.body == body) {
            continue;
        }
        folder.push(Msg {
            body,
            flags: f.flags,
            date: f.date,
        });
    }
    for v in out.values_mut() {
        v.sort();
    }
    Snapshot(out)
}

/// One manifest row: its folder, its bytes as a server serves them, and the day of
/// its INTERNALDATE (yyyymmdd, in the date's own zone), read from the manifest's
/// text, not through mailferry's date code.
pub struct DatedFixture {
    pub folder: String,
    pub body: Vec<u8>,
    pub day: u32,
}

pub fn dated_fixtures() -> Vec<DatedFixture> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let text = std::fs::read_to_string(root().join("fixtures/mail/manifest.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let d: Vec<&str> = c[3].split(' ').next().unwrap().split('-').collect();
            let month = MONTHS.iter().position(|m| *m == d[1]).unwrap() as u32 + 1;
            let day =
                d[2].parse::<u32>().unwrap() * 10_000 + month * 100 + d[0].parse::<u32>().unwrap();
            DatedFixture {
                folder: c[0].to_string(),
                body: crlf(&std::fs::read(root().join("fixtures/mail").join(c[1])).unwrap()),
                day,
            }
        })
        .collect()
}

/// The fixtures' expected snapshot (identical copies in a folder collapsed),
/// keeping only the messages whose row `keep(day, body)` selects; folders left
/// empty are dropped.
pub fn expected_where(keep: impl Fn(u32, &[u8]) -> bool) -> Snapshot {
    let mut want = expected(|f| f.to_string());
    let rows = dated_fixtures();
    for (folder, msgs) in want.0.iter_mut() {
        msgs.retain(|m| {
            rows.iter()
                .any(|r| r.folder == *folder && r.body == m.body && keep(r.day, &r.body))
        });
    }
    want.0.retain(|_, msgs| !msgs.is_empty());
    want
}

/// A snapshot without its empty folders.
pub fn non_empty(s: Snapshot) -> Snapshot {
    Snapshot(s.0.into_iter().filter(|(_, m)| !m.is_empty()).collect())
}
