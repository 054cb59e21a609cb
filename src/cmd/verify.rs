//! `mailferry verify --from URL --to URL`: compare source and target folder by
//! folder by dedupe keys; list what is missing, extra, or stored changed by the
//! target; exit 1 when something is missing. Reads both sides, writes nothing.
//!
//! The source is any source the copy takes (IMAP, POP3, mbox files, a backup
//! directory), read through the same `Source` trait as the copy, with the same
//! folder rules (`--include`, `--exclude`, `--folder-map`, `--include-shared`).

use std::collections::HashSet;

use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::dedupe;
use crate::engine::{
    folder_keys, layout_of, map_folders, own_folders, target_layout, Options, LISTING_PAGE,
};
use crate::error::{EXIT_OK, EXIT_PARTIAL};
use crate::imap::{session, utf7};
use crate::plan;
use crate::source::Source;

#[derive(Serialize)]
struct FolderResult {
    folder: String,
    target_folder: String,
    source_messages: usize,
    target_messages: usize,
    /// Source messages (IMAP UIDs, POP3 UIDLs, mbox positions) not on the target.
    missing: Vec<String>,
    /// Target UIDs whose message is not in the source folder.
    extra: Vec<u32>,
    /// Source messages the target stored changed (8-bit header bytes made `X`, a
    /// final CRLF added): there, not missing.
    changed: Vec<String>,
}

/// (id, exact key, the keys of the forms a server may store it in) of a source
/// message (see `dedupe::stored_variants`).
type Keyed = (String, String, Vec<String>);

pub fn run(a: &VerifyArgs) -> anyhow::Result<i32> {
    let opts = plan::options(&a.folders, false)?;
    let source = crate::endpoint::parse(&a.pair.from)?;
    if let crate::endpoint::Endpoint::Mbox(path) = &source {
        crate::source::mbox::check_path(path)?;
    }
    plan::check_auth(a.pair.from_auth(), "from-")?;
    plan::check_auth(a.pair.to_auth(), "to-")?;
    let source_credentials = plan::source_credentials(&source, a.pair.from_auth())?;
    let (target, target_credentials) = plan::target(&a.pair.to, a.pair.to_auth())?;
    let net = plan::net(&a.net);
    let mut src = plan::open_endpoint(
        &source,
        source_credentials.as_ref(),
        &net,
        plan::mbox_options(crate::cli::MboxFormat::Auto, false),
    )?;
    let mut tgt = session::open_with(&target, &target_credentials, &net, "target")?;
    let tree = src.folders()?;
    let (tree, opts) = own_folders(tree, src.namespaces().as_ref(), &opts);
    let tgt_list = tgt.list()?;
    let (tp, td) = layout_of(&mut tgt, &tgt_list)?;
    let layout = target_layout(&tgt_list, tp, td);
    let mut results = Vec::new();
    for (raw, display, mut target_name) in
        map_folders(&tree.entries, &tree.prefix, tree.delim, &layout, &opts)
    {
        let skeys = source_keys(src.as_mut(), &raw, a.folders.dedupe, &opts)?;
        let mode = a.folders.dedupe;
        let mut tkeys = folder_keys(&mut tgt, utf7::encode(&target_name).as_bytes(), mode, &opts)?;
        // A folder the copy had to rename (a name the target refused).
        let plain = crate::folders::plain_name(&target_name, layout.delim);
        if tkeys.is_none() && plain != target_name {
            tkeys = folder_keys(&mut tgt, utf7::encode(&plain).as_bytes(), mode, &opts)?;
            if tkeys.is_some() {
                target_name = plain;
            }
        }
        let tkeys = tkeys.unwrap_or_default();
        results.push(compare(display, target_name, &skeys, &tkeys));
    }
    src.close();
    tgt.logout();
    print(&results, a.json)
}

/// The keys of every message of a source folder, read in bounded batches.
fn source_keys(
    src: &mut dyn Source,
    raw: &[u8],
    mode: dedupe::Mode,
    opts: &Options,
) -> anyhow::Result<Vec<Keyed>> {
    src.open(raw)?;
    let mut out = Vec::new();
    let mut page = 0;
    while let Some(list) = src.listing_page(page, LISTING_PAGE)? {
        page += 1;
        let sizes: Vec<u64> = list.iter().map(|m| m.size).collect();
        for range in crate::decide::batches(&sizes, opts.batch_bytes, opts.batch_count) {
            src.fetch(&list[range], &mut |id, body| {
                out.push((
                    id.to_string(),
                    dedupe::key(&body, mode),
                    dedupe::stored_variants(&body, mode),
                ))
            })?;
        }
    }
    for (folder, what) in src.take_anomalies() {
        crate::log::warn(format!("{folder}: {what}"));
    }
    Ok(out)
}

fn compare(
    folder: String,
    target_folder: String,
    skeys: &[Keyed],
    tkeys: &[(u32, String)],
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
            .map(|(u, _)| *u)
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
            crate::progress::out(&format!(
                "         extra target UIDs (not in the source): {}",
                crate::decide::uid_set(&r.extra)
            ));
        }
    }
    crate::progress::out(&format!(
        "{} folders, {missing} messages missing on the target",
        results.len()
    ));
    Ok(if missing == 0 { EXIT_OK } else { EXIT_PARTIAL })
}
