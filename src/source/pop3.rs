//! A POP3 mailbox as a source: one folder (INBOX), messages named by their UIDL.
//!
//! POP3 has no INTERNALDATE and no flags: the date is taken from the message
//! (topmost `Received:`, else `Date:`). A server without UIDL has no stable ids:
//! then every run downloads every message, and the dedupe keys alone keep copies out
//! (`stable_ids` is false, so no checkpoint is trusted). Nothing is deleted unless
//! `--delete-after` asked for it, and then only messages whose copy the target
//! confirmed in this run. Messages are read with TOP where the server offers it, so
//! they are not marked read either ([`crate::pop3::Client::peek`]).

use std::collections::HashMap;

use super::{Opened, Source, Tree};
use crate::decide::Meta;
use crate::imap::ListEntry;
use crate::pop3::Session;

pub struct Pop3Source {
    pub session: Option<Session>,
    pub name: String,
    /// Message number by id, from the last listing.
    numbers: HashMap<String, u32>,
    has_uidl: bool,
}

impl Pop3Source {
    pub fn new(session: Session, name: String) -> Self {
        Pop3Source {
            session: Some(session),
            name,
            numbers: HashMap::new(),
            has_uidl: true,
        }
    }

    fn s(&mut self) -> anyhow::Result<&mut Session> {
        self.session
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the POP3 session is already closed"))
    }
}

impl Source for Pop3Source {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn folders(&mut self) -> anyhow::Result<Tree> {
        Ok(Tree {
            entries: vec![ListEntry {
                attrs: Vec::new(),
                delim: None,
                raw: b"INBOX".to_vec(),
            }],
            prefix: String::new(),
            delim: None,
        })
    }

    fn open(&mut self, _raw: &[u8]) -> anyhow::Result<Opened> {
        let (count, _) = self.s()?.stat()?;
        Ok(Opened {
            uidvalidity: 0,
            count: u64::from(count),
        })
    }

    fn listing(&mut self) -> anyhow::Result<Vec<Meta>> {
        let sizes = self.s()?.list()?;
        let uidls = self.s()?.uidl()?;
        if uidls.is_none() && self.has_uidl {
            crate::log::warn(format!(
                "{}: the server has no UIDL, so messages have no stable ids: every run downloads every message and only the dedupe keys keep copies out",
                self.name
            ));
        }
        self.has_uidl = uidls.is_some();
        let uidl: HashMap<u32, String> = uidls.unwrap_or_default().into_iter().collect();
        self.numbers.clear();
        let mut out = Vec::with_capacity(sizes.len());
        for (n, size) in sizes {
            let id = uidl.get(&n).cloned().unwrap_or_else(|| format!("#{n}"));
            self.numbers.insert(id.clone(), n);
            out.push(Meta {
                id,
                order: u64::from(n),
                size,
                flags: Vec::new(),
                internal_date: None,
                problem: None,
            });
        }
        Ok(out)
    }

    fn fetch(&mut self, metas: &[Meta], each: &mut dyn FnMut(&str, Vec<u8>)) -> anyhow::Result<()> {
        for m in metas {
            let body = self.s()?.peek(m.order as u32, m.size)?;
            each(&m.id, body);
        }
        Ok(())
    }

    fn dates_from_headers(&self) -> bool {
        true
    }

    fn stable_ids(&self) -> bool {
        self.has_uidl
    }

    fn delete(&mut self, ids: &[String]) -> anyhow::Result<usize> {
        let numbers: Vec<u32> = ids
            .iter()
            .filter_map(|id| self.numbers.get(id).copied())
            .collect();
        let s = self.s()?;
        for &n in &numbers {
            s.dele(n)?;
        }
        // QUIT commits the deletions (RFC 1939 UPDATE state).
        s.quit()?;
        self.session = None;
        Ok(numbers.len())
    }

    fn close(&mut self) {
        if let Some(mut s) = self.session.take() {
            let _ = s.quit();
        }
    }
}
