//! `mailferry verify --from URL --to URL`: compare source and target folder by
//! folder by dedupe keys; list what is missing, extra, or stored changed by the
//! target; exit 1 when something is missing. Reads both sides, writes nothing.
//!
//! Both ends are read through the traits the copy writes with: the source is any
//! `Source` (IMAP, POP3, mbox files, a backup directory), the target any `Target`
//! mailferry writes, read back by [`Target::held`]: an IMAP account, a backup
//! directory of mbox files and its manifest (`--to mbox:DIR`, read as `restore`
//! reads it), or a Maildir tree (`--to maildir:DIR`). Folders are mapped as the copy
//! maps them ([`crate::engine::map_into`]), with the same folder rules.

use std::collections::HashSet;

use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::dedupe;
use crate::engine::{map_into, Options};
use crate::error::{EXIT_OK, EXIT_PARTIAL};
use crate::plan::Plan;
use crate::source::{each_message, Source};
use crate::target::Target;

#[derive(Serialize)]
struct FolderResult {
    folder: String,
    target_folder: String,
    source_messages: usize,
    target_messages: usize,
    /// Source messages (IMAP UIDs, POP3 UIDLs, mbox positions) not on the target.
    missing: Vec<String>,
    /// Target messages (IMAP UIDs, files, positions in a file) whose message is
    /// not in the source folder.
    extra: Vec<TargetId>,
    /// Source messages the target stored changed (8-bit header bytes made `X`, a
    /// final CRLF added): there, not missing.
    changed: Vec<String>,
}

/// A target's id of a message: a UID (a number in JSON), or a file or position.
#[derive(Serialize)]
#[serde(untagged)]
enum TargetId {
    Uid(u32),
    Other(String),
}

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetId::Uid(u) => write!(f, "{u}"),
            TargetId::Other(s) => f.write_str(s),
        }
    }
}

impl TargetId {
    fn of(id: &str) -> TargetId {
        match id.parse() {
            Ok(uid) if id.bytes().all(|b| b.is_ascii_digit()) => TargetId::Uid(uid),
            _ => TargetId::Other(id.to_string()),
        }
    }
}

/// (id, exact key, the keys of the forms a server may store it in) of a source
/// message (see `dedupe::stored_variants`).
type Keyed = (String, String, Vec<String>);

pub fn run(a: &VerifyArgs) -> anyhow::Result<i32> {
    let plan = Plan::verify(a)?;
    let mut src = plan.source.open(&plan.net)?;
    let mut tgt = plan.target.open_read(&plan.net)?;
    let mapped = map_into(src.as_mut(), tgt.as_mut(), &plan.opts)?;
    let mut results = Vec::new();
    for (raw, display, target_name, _) in mapped.folders {
        let skeys = source_keys(src.as_mut(), &raw, &mapped.opts)?;
        let delim = mapped.layout.delim;
        let (target_name, tkeys) = target_keys(tgt.as_mut(), target_name, delim, &mapped.opts)?;
        results.push(compare(display, target_name, &skeys, &tkeys));
    }
    src.close();
    tgt.close();
    print(&results, plan.json)
}

/// The keys of every message of a source folder, read in bounded batches.
fn source_keys(src: &mut dyn Source, raw: &[u8], opts: &Options) -> anyhow::Result<Vec<Keyed>> {
    let mode = opts.dedupe;
    let mut out = Vec::new();
    each_message(src, raw, opts, &mut |id, body| {
        out.push((
            id.to_string(),
            dedupe::key(&body, mode),
            dedupe::stored_variants(&body, mode),
        ))
    })?;
    for (folder, what) in src.take_anomalies() {
        crate::log::warn(format!("{folder}: {what}"));
    }
    Ok(out)
}

/// What the target folder holds, under the name the copy gave it, or the plain
/// name a copy falls back to when the target refused that name. A folder the
/// target does not have holds nothing.
fn target_keys(
    tgt: &mut dyn Target,
    name: String,
    delim: Option<char>,
    opts: &Options,
) -> anyhow::Result<(String, Vec<(String, String)>)> {
    if let Some(keys) = tgt.held(&name, opts.dedupe, opts)? {
        return Ok((name, keys));
    }
    let plain = crate::folders::plain_name(&name, delim);
    if plain != name {
        if let Some(keys) = tgt.held(&plain, opts.dedupe, opts)? {
            return Ok((plain, keys));
        }
    }
    Ok((name, Vec::new()))
}

fn compare(
    folder: String,
    target_folder: String,
    skeys: &[Keyed],
    tkeys: &[(String, String)],
) -> FolderResult {
    let tset: HashSet<&String> = tkeys.iter().map(|(_, k)| k).collect();
    // The source's keys, and the forms a server may have stored them in.
    let sset: HashSet<&String> = skeys
        .iter()
        .flat_map(|(_, k, v)| std::iter::once(k).chain(v))
        .collect();
    let (changed, missing): (Vec<_>, Vec<_>) = skeys
        .iter()
        .filter(|(_, k, _)| !tset.contains(k))
        .partition(|(_, _, v)| v.iter().any(|k| tset.contains(k)));
    FolderResult {
        folder,
        target_folder,
        source_messages: skeys.len(),
        target_messages: tkeys.len(),
        missing: missing.iter().map(|(id, _, _)| id.clone()).collect(),
        extra: tkeys
            .iter()
            .filter(|(_, k)| !sset.contains(k))
            .map(|(id, _)| TargetId::of(id))
            .collect(),
        changed: changed.iter().map(|(id, _, _)| id.clone()).collect(),
    }
}

/// Source ids for a line: IMAP UIDs as a compact set, others as they are.
fn ids(list: &[String]) -> (&'static str, String) {
    let uids: Option<Vec<u32>> = list.iter().map(|i| i.parse().ok()).collect();
    match uids {
        Some(u) => ("UIDs", crate::decide::uid_set(&u)),
        None => ("messages", list.join(", ")),
    }
}

fn print(results: &[FolderResult], json: bool) -> anyhow::Result<i32> {
    let missing: usize = results.iter().map(|r| r.missing.len()).sum();
    if json {
        crate::progress::out(&serde_json::to_string_pretty(results)?);
        return Ok(if missing == 0 { EXIT_OK } else { EXIT_PARTIAL });
    }
    for r in results {
        let state = if r.missing.is_empty() {
            "ok"
        } else {
            "MISSING"
        };
        crate::progress::out(&format!(
            "{state:<8} {} → {}: source {}, target {}, missing {}, extra {}, stored changed by the target {}",
            r.folder,
            r.target_folder,
            r.source_messages,
            r.target_messages,
            r.missing.len(),
            r.extra.len(),
            r.changed.len()
        ));
        if !r.missing.is_empty() {
            let (what, list) = ids(&r.missing);
            crate::progress::out(&format!("         missing source {what}: {list}"));
        }
        if !r.changed.is_empty() {
            let (what, list) = ids(&r.changed);
            crate::progress::out(&format!(
                "         source {what} the target stored changed: {list}"
            ));
        }
        if !r.extra.is_empty() {
            let extra: Vec<String> = r.extra.iter().map(TargetId::to_string).collect();
            let (what, list) = ids(&extra);
            crate::progress::out(&format!(
                "         extra target {what} (not in the source): {list}"
            ));
        }
    }
    crate::progress::out(&format!(
        "{} folders, {missing} messages missing on the target",
        results.len()
    ));
    Ok(if missing == 0 { EXIT_OK } else { EXIT_PARTIAL })
}
