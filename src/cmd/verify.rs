//! `mailferry verify --from URL --to URL`: compare source and target folder by
//! folder by dedupe keys; list what is missing or extra; exit 1 when something is
//! missing. Reads both sides, writes nothing.

use std::collections::HashSet;

use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::engine::{folder_keys, layout_of, map_folders, target_layout};
use crate::error::{EXIT_OK, EXIT_PARTIAL};
use crate::imap::{session, utf7};
use crate::plan;

#[derive(Serialize)]
struct FolderResult {
    folder: String,
    target_folder: String,
    source_messages: usize,
    target_messages: usize,
    /// Source UIDs whose message is not on the target.
    missing: Vec<u32>,
    /// Target UIDs whose message is not in the source folder.
    extra: Vec<u32>,
    /// Source UIDs whose message the target stored changed (8-bit header bytes
    /// made `X`, a final CRLF added): there, not missing.
    changed: Vec<u32>,
}

pub fn run(a: &VerifyArgs) -> anyhow::Result<i32> {
    let pair = plan::pair(&a.pair)?;
    let opts = plan::options(&a.folders, false)?;
    let net = plan::net(&a.net);
    let mut src = session::open(&pair.source, &pair.source_password, &net, "source")?;
    let mut tgt = session::open(&pair.target, &pair.target_password, &net, "target")?;
    let src_list = src.list()?;
    let (sp, sd) = layout_of(&mut src, &src_list)?;
    let tgt_list = tgt.list()?;
    let (tp, td) = layout_of(&mut tgt, &tgt_list)?;
    let layout = target_layout(&tgt_list, tp, td);
    let mut results = Vec::new();
    for (raw, display, target_name) in map_folders(&src_list, &sp, sd, &layout, &opts) {
        let skeys = folder_keys(&mut src, &raw, a.folders.dedupe, &opts)?.unwrap_or_default();
        let tkeys = folder_keys(
            &mut tgt,
            utf7::encode(&target_name).as_bytes(),
            a.folders.dedupe,
            &opts,
        )?
        .unwrap_or_default();
        let tset: HashSet<&String> = tkeys.iter().map(|(_, k, _)| k).collect();
        let sset: HashSet<&String> = skeys.iter().map(|(_, k, _)| k).collect();
        let tloose: HashSet<u128> = tkeys.iter().map(|(_, _, l)| *l).collect();
        let sloose: HashSet<u128> = skeys.iter().map(|(_, _, l)| *l).collect();
        let (changed, missing): (Vec<_>, Vec<_>) = skeys
            .iter()
            .filter(|(_, k, _)| !tset.contains(k))
            .partition(|(_, _, l)| tloose.contains(l));
        results.push(FolderResult {
            folder: display,
            target_folder: target_name,
            source_messages: skeys.len(),
            target_messages: tkeys.len(),
            missing: missing.iter().map(|(u, _, _)| *u).collect(),
            extra: tkeys
                .iter()
                .filter(|(_, k, l)| !sset.contains(k) && !sloose.contains(l))
                .map(|(u, _, _)| *u)
                .collect(),
            changed: changed.iter().map(|(u, _, _)| *u).collect(),
        });
    }
    src.logout();
    tgt.logout();
    let missing: usize = results.iter().map(|r| r.missing.len()).sum();
    if a.json {
        crate::progress::out(&serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
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
            if !r.changed.is_empty() {
                crate::progress::out(&format!(
                    "         source UIDs the target stored changed: {}",
                    crate::decide::uid_set(&r.changed)
                ));
            }
            if !r.missing.is_empty() {
                crate::progress::out(&format!(
                    "         missing source UIDs: {}",
                    crate::decide::uid_set(&r.missing)
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
    }
    Ok(if missing == 0 { EXIT_OK } else { EXIT_PARTIAL })
}
