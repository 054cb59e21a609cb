//! Pure decisions of the copy: what to fetch, what to append, with which flags, in
//! which batches. No I/O here; every function has a table test.

/// What the cheap listing says about one source message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The source's stable id: an IMAP UID in decimal, a POP3 UIDL, an mbox position.
    pub id: String,
    /// Position in the source (IMAP UID, POP3 message number, mbox ordinal).
    pub order: u64,
    pub size: u64,
    pub flags: Vec<String>,
    pub internal_date: Option<crate::imap::types::ImapDate>,
    /// Why this message cannot be copied as the source described it (a value the
    /// server sent that is not what it must be): it is failed with this reason,
    /// never copied with the value, and tried again on the next run.
    pub problem: Option<String>,
    /// The server sent no FLAGS for it (asked for): copied without flags, but its
    /// flags are not known, so the delta pass leaves its copy's flags alone.
    pub flags_missing: bool,
}

/// What to do with a fetched source message, given its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Already on the target (known to the index) or copied earlier in this run.
    Skip,
    /// The target has messages the index does not know that could be this one
    /// (same Message-ID, or same size where there is none): hash them first.
    CheckTarget,
    Append,
}

pub fn action(
    dedupe: bool,
    key_seen_in_run: bool,
    key_known_on_target: bool,
    unknown_target_candidates: bool,
) -> Action {
    match (
        dedupe,
        key_seen_in_run || key_known_on_target,
        unknown_target_candidates,
    ) {
        (false, _, _) => Action::Append,
        (true, true, _) => Action::Skip,
        (true, false, true) => Action::CheckTarget,
        (true, false, false) => Action::Append,
    }
}

/// What to do with one message of a fetched batch, once the target was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not fetched, or not copyable as listed: failed, tried again next run.
    Fail,
    /// Already on the target, or copied earlier in this run: a duplicate.
    Skip,
    /// Store it.
    Append,
    /// An identical copy of the message stored as item `i` of this batch: a
    /// duplicate once that one is stored, failed with it if it is refused.
    With(usize),
}

/// Decide a whole batch, in order. `keys[i]`: the fingerprint of item i's dedupe
/// key, `None` when it has no body to copy (not returned, or a problem). `seen`
/// (keys stored in this run) grows by what is appended; `known`: keys the target
/// folder holds. Without dedupe, everything with a body is appended.
pub fn sort_batch(
    dedupe: bool,
    keys: &[Option<u128>],
    seen: &mut std::collections::HashSet<u128>,
    known: &std::collections::HashSet<u128>,
) -> Vec<Decision> {
    let mut first_of: std::collections::HashMap<u128, usize> = Default::default();
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let Some(fp) = *key else {
                return Decision::Fail;
            };
            match action(dedupe, seen.contains(&fp), known.contains(&fp), false) {
                Action::Skip => match first_of.get(&fp) {
                    Some(&j) => Decision::With(j),
                    None => Decision::Skip,
                },
                _ => {
                    seen.insert(fp);
                    first_of.entry(fp).or_insert(i);
                    Decision::Append
                }
            }
        })
        .collect()
}

const SYSTEM_FLAGS: &[&str] = &["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// Whether a keyword is a valid IMAP atom (RFC 3501 `flag-keyword`).
fn valid_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.bytes().all(|c| {
            c > 0x20
                && c < 0x7f
                && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

/// The flags to APPEND: system flags except `\Recent`, and keywords the target can
/// store (PERMANENTFLAGS has `\*` or names them) that are valid atoms. Unknown
/// backslash flags are dropped. Returns (kept, dropped).
pub fn append_flags(flags: &[String], permanent: &[String]) -> (Vec<String>, Vec<String>) {
    let any_keyword = permanent.is_empty() || permanent.iter().any(|f| f == "\\*");
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for f in flags {
        if let Some(sys) = SYSTEM_FLAGS.iter().find(|s| s.eq_ignore_ascii_case(f)) {
            kept.push(sys.to_string());
        } else if f.starts_with('\\') {
            if !f.eq_ignore_ascii_case("\\Recent") {
                dropped.push(f.clone());
            }
        } else if valid_keyword(f)
            && (any_keyword || permanent.iter().any(|p| p.eq_ignore_ascii_case(f)))
        {
            kept.push(f.clone());
        } else {
            dropped.push(f.clone());
        }
    }
    (kept, dropped)
}

/// The delta pass's decision for one copy: the flags to add to the target's copy
/// and those to remove, from the flags it was stored with (`base`; `None` when
/// not recorded, by an older mailferry: then flags are only added) and the
/// source's flags now, both as [`append_flags`] makes them. Flags the source did
/// not change are left alone, so what the user changed on the target stays.
pub fn flag_delta(base: Option<&[String]>, now: &[String]) -> (Vec<String>, Vec<String>) {
    // Flags and keywords are compared without case (as servers do). `\Deleted` is
    // not carried: a client on the target could expunge what the source only marked.
    let has = |set: &[String], f: &String| set.iter().any(|g| g.eq_ignore_ascii_case(f));
    let carried = |f: &&String| !f.eq_ignore_ascii_case("\\Deleted");
    let base_set = base.unwrap_or(&[]);
    let add = now.iter().filter(carried).filter(|f| !has(base_set, f));
    let remove = base_set.iter().filter(carried).filter(|f| !has(now, f));
    let tidy = |it: &mut dyn Iterator<Item = &String>| {
        let mut v: Vec<String> = it.cloned().collect();
        v.sort_by_key(|f| f.to_ascii_lowercase());
        v.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        v
    };
    let add = tidy(&mut { add });
    let remove = match base {
        Some(_) => tidy(&mut { remove }),
        None => Vec::new(),
    };
    (add, remove)
}

/// Split messages into consecutive batches of at most `max_bytes` (a single larger
/// message is a batch of its own) and `max_count`. Returns index ranges.
pub fn batches(sizes: &[u64], max_bytes: u64, max_count: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &s) in sizes.iter().enumerate() {
        if i > start && (bytes + s > max_bytes || i - start >= max_count) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// A compact UID set (`1:3,7,9:10`) for the given sorted UIDs.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && Some(uids[i + 1]) == end.checked_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn flag_delta_carries_only_what_the_source_changed() {
        let v = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        // (stored with, source now) → (add, remove)
        let table: &[(Option<&str>, &str, &str, &str)] = &[
            (Some(""), "", "", ""),
            (Some("\\Seen"), "\\Seen", "", ""),
            (Some(""), "\\Seen", "\\Seen", ""),
            (Some("\\Seen \\Flagged"), "\\Seen", "", "\\Flagged"),
            (
                Some("\\Seen Work"),
                "\\Answered \\Seen Home",
                "Home \\Answered",
                "Work",
            ),
            // Not recorded (an older index): only added, never removed.
            (None, "\\Seen", "\\Seen", ""),
            (None, "", "", ""),
            (Some("a"), "a a b b", "b", ""),
            // Without case; \\Deleted never carried either way.
            (Some("work \\seen"), "Work \\Seen", "", ""),
            (Some("\\Seen"), "\\Seen \\Deleted", "", ""),
            (Some("\\Seen \\Deleted"), "\\Seen", "", ""),
        ];
        for &(base, now, add, remove) in table {
            let base = base.map(v);
            let (mut want_add, mut want_remove) = (v(add), v(remove));
            want_add.sort_by_key(|f| f.to_ascii_lowercase());
            want_remove.sort_by_key(|f| f.to_ascii_lowercase());
            assert_eq!(
                flag_delta(base.as_deref(), &v(now)),
                (want_add, want_remove),
                "{base:?} → {now}"
            );
        }
    }

    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn action_table() {
        use Action::*;
        // (dedupe, seen in run, known on target, unknown candidates) -> action
        for (d, seen, known, cand, want) in [
            (false, true, true, true, Append),
            (false, false, false, false, Append),
            (true, true, false, false, Skip),
            (true, false, true, false, Skip),
            (true, false, true, true, Skip),
            (true, false, false, true, CheckTarget),
            (true, false, false, false, Append),
        ] {
            assert_eq!(
                action(d, seen, known, cand),
                want,
                "{d} {seen} {known} {cand}"
            );
        }
    }

    #[test]
    fn flags_table() {
        for (flags, perm, kept, dropped) in [
            (
                s(&["\\Seen", "\\Recent", "$Label1"]),
                s(&["\\Seen", "\\*"]),
                s(&["\\Seen", "$Label1"]),
                s(&[]),
            ),
            (
                s(&["\\seen", "Work"]),
                s(&["\\Seen"]),
                s(&["\\Seen"]),
                s(&["Work"]),
            ),
            (s(&["Work"]), s(&["\\Seen", "Work"]), s(&["Work"]), s(&[])),
            (
                s(&["\\Unknown", "bad\"kw"]),
                s(&["\\*"]),
                s(&[]),
                s(&["\\Unknown", "bad\"kw"]),
            ),
            (s(&["$Label1"]), s(&[]), s(&["$Label1"]), s(&[])),
        ] {
            assert_eq!(
                append_flags(&flags, &perm),
                (kept, dropped),
                "{flags:?} {perm:?}"
            );
        }
    }

    #[test]
    fn batches_table() {
        for (sizes, max_b, max_n, want) in [
            (vec![], 10, 10, vec![]),
            (vec![3, 3, 3, 3], 6, 10, vec![0..2, 2..4]),
            (vec![20, 1, 1], 6, 10, vec![0..1, 1..3]),
            (vec![1, 1, 1], 100, 2, vec![0..2, 2..3]),
            (vec![1, 50, 1], 10, 10, vec![0..1, 1..2, 2..3]),
        ] {
            assert_eq!(batches(&sizes, max_b, max_n), want, "{sizes:?}");
        }
    }

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }
    #[test]
    fn sort_batch_table() {
        use Decision::*;
        // (dedupe, keys, seen before, known) -> decisions
        type Row = (
            bool,
            &'static [Option<u128>],
            &'static [u128],
            &'static [u128],
            &'static [Decision],
        );
        let table: &[Row] = &[
            (true, &[], &[], &[], &[]),
            (true, &[None, Some(1)], &[], &[], &[Fail, Append]),
            // Known on the target, or stored earlier in the run: duplicates.
            (true, &[Some(1), Some(2)], &[1], &[2], &[Skip, Skip]),
            // Twice in one batch: the second waits on the first.
            (
                true,
                &[Some(1), Some(2), Some(1), Some(1)],
                &[],
                &[],
                &[Append, Append, With(0), With(0)],
            ),
            // A failed copy does not make a later identical one a duplicate.
            (true, &[None, Some(3)], &[], &[], &[Fail, Append]),
            // Without dedupe everything with a body is appended, even twice.
            (
                false,
                &[Some(1), Some(1), None],
                &[1],
                &[1],
                &[Append, Append, Fail],
            ),
        ];
        for &(dedupe, keys, seen, known, want) in table {
            let mut seen: std::collections::HashSet<u128> = seen.iter().copied().collect();
            let known = known.iter().copied().collect();
            assert_eq!(
                sort_batch(dedupe, keys, &mut seen, &known),
                want,
                "{dedupe} {keys:?}"
            );
        }
    }
}
