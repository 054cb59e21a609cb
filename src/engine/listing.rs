//! IMAP reads the copy shares between source and target sessions: the cheap listing
//! of a folder, and bodies fetched by UID with BODY.PEEK (nothing changes on the
//! server). What a server sends beyond what was asked is dropped as it arrives.

use std::collections::HashSet;

use super::Options;
use crate::decide::{self, Meta};
use crate::dedupe::{self, Mode};
use crate::imap::session::Session;
use crate::imap::types::UidSet;
use crate::imap::ImapError;

/// The cheap listing of the selected folder: UID, size, flags, INTERNALDATE.
pub fn listing(s: &mut Session) -> Result<Vec<Meta>, ImapError> {
    listing_of(s, "1:*")
}

/// A listed message as its FETCH response gives it.
fn meta_of(uid: u32, f: crate::imap::parse::Fetch) -> Meta {
    Meta {
        id: uid.to_string(),
        order: u64::from(uid),
        size: f.size.unwrap_or(0),
        flags_missing: f.flags.is_none(),
        flags: f.flags.unwrap_or_default(),
        internal_date: f.internal_date,
        problem: f.problem,
    }
}

/// The cheap listing of the messages of a UID set, in UID order.
pub fn listing_of(s: &mut Session, set: &str) -> Result<Vec<Meta>, ImapError> {
    let mut out = Vec::new();
    s.uid_fetch(set, "(UID RFC822.SIZE FLAGS INTERNALDATE)", |f| {
        if let Some(uid) = f.uid {
            out.push(meta_of(uid, f));
        }
        Ok(())
    })?;
    out.sort_by_key(|m| m.order);
    Ok(out)
}

/// The cheap listing of the whole selected folder (`UID FETCH 1:*`), in UID
/// order, for a folder EXISTS says holds `exists` (at most `max`): at most
/// `max` messages are taken, what the server sends beyond them or twice is
/// dropped as it arrives and counted (the second number). The command's budget
/// grows with `exists` messages, not `max`.
pub fn listing_first(
    s: &mut Session,
    exists: u64,
    max: u64,
) -> Result<(Vec<Meta>, u64), ImapError> {
    listing_kept(s, "1:*", exists.min(max), |_, taken| taken < max)
}

/// The cheap listing of the messages of `wanted`, in UID order: what the server
/// sends for UIDs not asked for, or twice, is dropped as it arrives (and counted,
/// the second number), so a server cannot make a page hold more than it asked.
pub fn listing_within(s: &mut Session, wanted: &UidSet) -> Result<(Vec<Meta>, u64), ImapError> {
    listing_kept(s, &wanted.to_string(), wanted.len(), |uid, _| {
        wanted.contains(uid)
    })
}

/// The cheap listing of `set`, keeping each UID once and only where `keep(uid,
/// taken so far)` says; the rest is dropped as it arrives and counted. The
/// command's budget grows with `messages` (about 200 bytes each).
fn listing_kept(
    s: &mut Session,
    set: &str,
    messages: u64,
    mut keep: impl FnMut(u32, u64) -> bool,
) -> Result<(Vec<Meta>, u64), ImapError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut unasked = 0u64;
    s.expect(messages.saturating_mul(256));
    s.uid_fetch(set, "(UID RFC822.SIZE FLAGS INTERNALDATE)", |f| {
        match f.uid {
            Some(uid) if keep(uid, seen.len() as u64) && seen.insert(uid) => {
                out.push(meta_of(uid, f))
            }
            _ => unasked += 1,
        }
        Ok(())
    })?;
    out.sort_by_key(|m| m.order);
    Ok((out, unasked))
}

/// Fetch bodies of `uids` (sorted) from the selected folder, one call per body;
/// `expected`: about how many bytes they are (the command's budget grows with
/// them). A body for a UID not asked for, or a second one, is dropped at once.
pub fn fetch_bodies(
    s: &mut Session,
    uids: &[u32],
    expected: u64,
    mut each: impl FnMut(u32, Vec<u8>),
) -> Result<(), ImapError> {
    if uids.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::new();
    s.expect(expected);
    s.uid_fetch(&decide::uid_set(uids), "(UID BODY.PEEK[])", |f| {
        if let (Some(uid), Some(body)) = (f.uid, f.body) {
            if uids.binary_search(&uid).is_ok() && seen.insert(uid) {
                each(uid, body);
            }
        }
        Ok(())
    })
}

/// The dedupe key of every message of a folder (bodies fetched in bounded batches).
/// `None` when the folder does not exist.
pub fn folder_keys(
    s: &mut Session,
    raw: &[u8],
    mode: Mode,
    opts: &Options,
) -> anyhow::Result<Option<Vec<(u32, String)>>> {
    match s.select(raw, true) {
        Ok(_) => {}
        // A folder that does not exist (no code, [NONEXISTENT], or [CANNOT]: a
        // name the server cannot hold, RFC 5530); a refusal for another reason
        // is an error, not an empty folder.
        Err(e @ ImapError::No { .. })
            if matches!(
                e.code().as_deref(),
                None | Some("NONEXISTENT") | Some("CANNOT")
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    }
    let list = listing(s)?;
    let sizes: Vec<u64> = list.iter().map(|m| m.size).collect();
    let mut out = Vec::with_capacity(list.len());
    for range in decide::batches(&sizes, opts.batch_bytes, opts.batch_count) {
        let uids: Vec<u32> = list[range.clone()].iter().map(|m| m.order as u32).collect();
        let expected = list[range.clone()].iter().map(|m| m.size).sum();
        fetch_bodies(s, &uids, expected, |uid, body| {
            out.push((uid, dedupe::key(&body, mode)))
        })?;
    }
    Ok(Some(out))
}
