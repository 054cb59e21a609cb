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
