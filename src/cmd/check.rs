//! `mailferry check URL`: log in and show what the server offers. Any source the
//! copy takes works: an IMAP account (capabilities, folders, counts from STATUS),
//! a POP3 mailbox or mbox files and backup directories (folders and counts, read
//! through the same `Source` as the copy); and any target it writes: an IMAP
//! account as above, a Maildir tree (`maildir:DIR`, read through the same `Target`
//! as `backup --format maildir`).

use serde::Serialize;

use crate::cli::CheckArgs;
use crate::endpoint::Server;
use crate::engine::decode_name;
use crate::error::EXIT_OK;
use crate::imap::client::Part;
use crate::imap::parse::Response;
use crate::imap::session;
use crate::plan::{CheckPlan, Checked, SourcePlan, TargetPlan};
use crate::secret::Credentials;

#[derive(Serialize)]
struct FolderInfo {
    name: String,
    messages: Option<u64>,
    attributes: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    account: String,
    capabilities: Vec<String>,
    folders: Vec<FolderInfo>,
}

pub fn run(a: &CheckArgs) -> anyhow::Result<i32> {
    let plan = CheckPlan::new(a)?;
    match &plan.checked {
        Checked::Imap(server, credentials) => run_imap(server, credentials, &plan),
        Checked::Source(source) => run_source(source, &plan),
        Checked::Target(target) => run_target(target, &plan),
    }
}

/// An IMAP account: capabilities, and the folders with counts from STATUS.
fn run_imap(server: &Server, credentials: &Credentials, plan: &CheckPlan) -> anyhow::Result<i32> {
    let mut s = session::open_with(server, credentials, &plan.net, "server")?;
    let list = s.list()?;
    let mut folders = Vec::new();
    for e in &list {
        let mut messages = None;
        if !e.has_attr("\\Noselect") && !e.has_attr("\\NonExistent") {
            // The name as a literal: whatever the server called it, it is data.
            let parts = [
                Part::Text(b"STATUS "),
                Part::Literal(&e.raw),
                Part::Text(b" (MESSAGES)"),
            ];
            s.run("STATUS", &parts, |r| {
                if let Response::Data { name, rest } = r {
                    if name == "STATUS" {
                        if let Some(l) = rest.get(1).and_then(|v| v.as_list()) {
                            messages = l.get(1).and_then(|v| v.as_u64());
                        }
                    }
                }
                Ok(())
            })?;
        }
        folders.push(FolderInfo {
            name: decode_name(&e.raw),
            messages,
            attributes: e.attrs.clone(),
        });
    }
    let report = Report {
        account: server.to_string(),
        capabilities: s.capabilities().to_vec(),
        folders,
    };
    s.logout();
    print(&report, plan.json)
}

/// A POP3 mailbox or mbox files: what the copy would read, folder by folder.
fn run_source(source: &SourcePlan, plan: &CheckPlan) -> anyhow::Result<i32> {
    let mut src = source.open(&plan.net)?;
    let tree = src.folders()?;
    let mut folders = Vec::new();
    for e in &tree.entries {
        src.open(&e.raw)?;
        // Counted by listing, as a copy would.
        let mut n = 0u64;
        let mut page = 0;
        while let Some(list) = src.listing_page(page, crate::engine::LISTING_PAGE)? {
            page += 1;
            n += list.len() as u64;
        }
        folders.push(FolderInfo {
            name: decode_name(&e.raw),
            messages: Some(n),
            attributes: e.attrs.clone(),
        });
    }
    for (folder, what) in src.take_anomalies() {
        crate::log::warn(format!("{folder}: {what}"));
    }
    let report = Report {
        account: src.describe(),
        capabilities: Vec::new(),
        folders,
    };
    src.close();
    print(&report, plan.json)
}

/// A target mailferry writes that no source reads (a Maildir tree from `backup
/// --format maildir`): its folders and counts, read through the `Target` trait as
/// `verify` reads it.
fn run_target(target: &TargetPlan, plan: &CheckPlan) -> anyhow::Result<i32> {
    let mut tgt = target.open_read(&plan.net)?;
    let layout = tgt.layout()?;
    let opts = crate::engine::Options::default();
    let mut paths = layout.existing.clone();
    paths.sort();
    let mut folders = Vec::new();
    for path in &paths {
        let name = tgt.folder_name(path, &layout);
        let held = tgt.held(&name, crate::dedupe::Mode::None, &opts)?;
        folders.push(FolderInfo {
            name,
            messages: held.map(|h| h.len() as u64),
            attributes: Vec::new(),
        });
    }
    let report = Report {
        account: tgt.describe(),
        capabilities: Vec::new(),
        folders,
    };
    tgt.close();
    print(&report, plan.json)
}

fn print(report: &Report, json: bool) -> anyhow::Result<i32> {
    if json {
        crate::progress::out(&serde_json::to_string_pretty(report)?);
    } else {
        let ok = if report.capabilities.is_empty() && !report.account.contains("://") {
            "readable"
        } else {
            "login OK"
        };
        crate::progress::out(&format!("{}: {ok}", report.account));
        if !report.capabilities.is_empty() {
            crate::progress::out(&format!("capabilities: {}", report.capabilities.join(" ")));
        }
        crate::progress::out("folders:");
        for f in &report.folders {
            let count = f.messages.map_or("-".to_string(), |m| m.to_string());
            crate::progress::out(&format!(
                "  {:<40} {:>8}  {}",
                f.name,
                count,
                f.attributes.join(" ")
            ));
        }
    }
    Ok(EXIT_OK)
}
