//! `mailferry check URL`: log in and show what the server offers.

use serde::Serialize;

use crate::cli::CheckArgs;
use crate::engine::decode_name;
use crate::error::EXIT_OK;
use crate::imap::client::Part;
use crate::imap::parse::Response;
use crate::imap::session;
use crate::{plan, secret};

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
    let server = plan::imap_server(&a.url, "URL")?;
    let password = secret::resolve(
        a.password_file.as_deref(),
        "MAILFERRY_PASSWORD",
        "account",
        &server.to_string(),
    )?;
    let net = plan::net(&a.net);
    let mut s = session::open(&server, &password, &net, "server")?;
    let list = s.list()?;
    let mut folders = Vec::new();
    for e in &list {
        let mut messages = None;
        if !e.has_attr("\\Noselect") && !e.has_attr("\\NonExistent") {
            let mut cmd = b"STATUS ".to_vec();
            cmd.push(b'"');
            for &c in &e.raw {
                if c == b'"' || c == b'\\' {
                    cmd.push(b'\\');
                }
                cmd.push(c);
            }
            cmd.extend_from_slice(b"\" (MESSAGES)");
            s.run("STATUS", &[Part::Text(&cmd)], |r| {
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
    if a.json {
        crate::progress::out(&serde_json::to_string_pretty(&report)?);
    } else {
        crate::progress::out(&format!("{}: login OK", report.account));
        crate::progress::out(&format!("capabilities: {}", report.capabilities.join(" ")));
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
