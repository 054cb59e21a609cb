//! Where messages come from: IMAP folders, a POP3 mailbox, mbox files. A few small
//! operations are enough for the engine: list the folders, open one, list its
//! messages cheaply, fetch bodies in bounded batches. Sources are only ever read
//! (POP3's opt-in `--delete-after` is the one exception, done after verification).

pub mod imap;
pub mod mbox;
pub mod pop3;

use crate::decide::Meta;
use crate::imap::ListEntry;

/// What opening a folder tells.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    /// IMAP UIDVALIDITY; 0 for sources whose ids never change meaning.
    pub uidvalidity: u32,
    pub count: u64,
}

/// The folder tree of a source: entries as an IMAP LIST gives them, and the
/// personal namespace prefix and delimiter.
pub struct Tree {
    pub entries: Vec<ListEntry>,
    pub prefix: String,
    pub delim: Option<char>,
}

/// `Send`, so the engine can read the next batch on its own thread while the
/// target stores the current one.
pub trait Source: Send {
    /// The password-free endpoint, as stored in the index and shown in reports.
    fn describe(&self) -> String;
    fn folders(&mut self) -> anyhow::Result<Tree>;
    fn open(&mut self, raw: &[u8]) -> anyhow::Result<Opened>;
    /// Id, size, flags and INTERNALDATE of every message of the open folder.
    fn listing(&mut self) -> anyhow::Result<Vec<Meta>>;
    /// The listing one page at a time: page 0, 1, … of at most `max` messages each,
    /// in the source's order, then `None`; a huge folder is never listed whole.
    /// Page 0 starts over. Sources that cannot page give everything as page 0.
    fn listing_page(&mut self, page: usize, max: usize) -> anyhow::Result<Option<Vec<Meta>>> {
        let _ = max;
        Ok(if page == 0 {
            Some(self.listing()?)
        } else {
            None
        })
    }
    /// Bodies of the given messages of the open folder, each handed to `each` with
    /// its id. A message that vanished meanwhile is simply not handed over.
    fn fetch(&mut self, metas: &[Meta], each: &mut dyn FnMut(&str, Vec<u8>)) -> anyhow::Result<()>;
    /// Whether a folder can be copied in parts by several connections at once:
    /// any connection fetches any message by its id, and listing pages can be
    /// read apart (page N right after page 0, by position in the folder).
    fn parts(&self) -> bool {
        false
    }
    /// The time of one round trip to the server (IMAP: a NOOP), when it can be
    /// measured; `None` for a source on this machine (a file).
    fn round_trip(&mut self) -> Option<std::time::Duration> {
        None
    }
    /// Whether INTERNALDATE must be taken from the message's headers (POP3).
    fn dates_from_headers(&self) -> bool {
        false
    }
    /// Whether message ids survive between sessions (POP3 without UIDL: no), so
    /// checkpoints may be trusted.
    fn stable_ids(&self) -> bool {
        true
    }
    /// Whether messages leave this source on their own (a POP3 server's "keep for N
    /// days", another client's `DELE`, `--delete-after`): then being gone from it
    /// says nothing about the user's wish, and `--sync-deletes` is refused.
    fn forgets(&self) -> bool {
        false
    }
    /// Messages of the folder being listed that the source left out on purpose
    /// (Gmail's All Mail: the labelled ones), since its listing began: with what was
    /// listed they make the whole folder.
    fn left_out(&self) -> u64 {
        0
    }
    /// Delete messages (POP3 `--delete-after` only).
    fn delete(&mut self, _ids: &[String]) -> anyhow::Result<usize> {
        Err(crate::error::input(
            "this source does not support --delete-after",
        ))
    }
    /// The account's namespaces (IMAP NAMESPACE, RFC 2342), known after
    /// [`Source::folders`]; `None` for sources without them.
    fn namespaces(&self) -> Option<crate::imap::Namespaces> {
        None
    }
    /// Messages the last [`Source::fetch`] did not hand over because what came is
    /// not the message, as (id, reason): failed with that reason, tried again.
    fn take_refused(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// What the run should say in its summary about how the source was read (an
    /// mbox backup that no longer matched its manifest, messages left out on
    /// purpose), since the last call. Not failures: the exit code stays as it is.
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Disagreements between what the server announced and what it delivered,
    /// noticed since the last call, as (folder, what): the engine puts them in the
    /// summary (they make the exit code non-zero).
    fn take_anomalies(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn close(&mut self);
}

/// Every message of the source folder `raw`, handed to `each` with its id, read as
/// the copy reads it: the listing page by page, bodies fetched in batches of at
/// most `opts.batch_bytes` / `opts.batch_count` (for `verify` and the read side
/// of a backup target).
pub fn each_message(
    src: &mut dyn Source,
    raw: &[u8],
    opts: &crate::engine::Options,
    each: &mut dyn FnMut(&str, Vec<u8>),
) -> anyhow::Result<()> {
    src.open(raw)?;
    let mut page = 0;
    while let Some(list) = src.listing_page(page, crate::engine::LISTING_PAGE)? {
        page += 1;
        let sizes: Vec<u64> = list.iter().map(|m| m.size).collect();
        for range in crate::decide::batches(&sizes, opts.batch_bytes, opts.batch_count) {
            src.fetch(&list[range], each)?;
        }
    }
    Ok(())
}
