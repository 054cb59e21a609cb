//! An IMAP account as a source: folders from LIST, read with EXAMINE and BODY.PEEK so
//! nothing on the server changes, not even `\Seen`.

use super::{Opened, Source, Tree};
use crate::decide::Meta;
use crate::engine::{fetch_bodies, layout_of, listing, listing_of};
use crate::imap::session::Session;

pub struct ImapSource {
    pub session: Session,
    pub name: String,
    /// The open folder's UIDs, for [`Source::listing_page`] (4 bytes a message).
    uids: Vec<u32>,
}

impl ImapSource {
    pub fn new(session: Session, name: String) -> ImapSource {
        ImapSource {
            session,
            name,
            uids: Vec::new(),
        }
    }
}

impl Source for ImapSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn folders(&mut self) -> anyhow::Result<Tree> {
        let entries = self.session.list()?;
        let (prefix, delim) = layout_of(&mut self.session, &entries)?;
        Ok(Tree {
            entries,
            prefix,
            delim,
        })
    }

    fn open(&mut self, raw: &[u8]) -> anyhow::Result<Opened> {
        self.uids = Vec::new();
        let sel = self.session.select(raw, true)?;
        Ok(Opened {
            uidvalidity: sel.uidvalidity,
            count: u64::from(sel.exists),
        })
    }

    fn listing(&mut self) -> anyhow::Result<Vec<Meta>> {
        Ok(listing(&mut self.session)?)
    }

    fn listing_page(&mut self, page: usize, max: usize) -> anyhow::Result<Option<Vec<Meta>>> {
        if page == 0 {
            self.uids = self.session.uid_search_all()?;
        }
        let Some(uids) = self.uids.chunks(max.max(1)).nth(page) else {
            return Ok(None);
        };
        let set = crate::decide::uid_set(uids);
        Ok(Some(listing_of(&mut self.session, &set)?))
    }

    fn fetch(&mut self, metas: &[Meta], each: &mut dyn FnMut(&str, Vec<u8>)) -> anyhow::Result<()> {
        let mut uids: Vec<u32> = metas.iter().map(|m| m.order as u32).collect();
        uids.sort_unstable();
        fetch_bodies(&mut self.session, &uids, |uid, body| {
            each(&uid.to_string(), body)
        })?;
        Ok(())
    }

    fn close(&mut self) {
        self.session.logout();
    }
}
