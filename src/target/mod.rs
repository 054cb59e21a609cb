//! Where messages go: an IMAP account ([`imap`]), a backup directory of mbox files and
//! a manifest ([`backup`]), or a Maildir++ tree ([`maildir`]).
//! The engine needs little of a destination, and this trait is all of it: who it
//! is (for the index and the summary), how its folders are laid out, making sure a
//! folder exists, what a folder already holds (for dedupe), storing a batch with a
//! result per message, and making a batch durable before the index records it.
//!
//! Invariants every target keeps:
//! - [`Target::store`] answers each message of a batch, in order: stored (with the
//!   target's UID when it has one), refused (with the target's own words; the
//!   message fails and the next run tries again), or a fatal error (the run stops;
//!   what was stored before it in the batch is still answered as stored);
//! - a message answered as stored is safe once [`Target::durable`] returned: only
//!   then does the engine record it in the index;
//! - a target never decides what to copy: the engine's pure decisions
//!   (`crate::decide`) do, from what [`Target::open`] and [`Target::check`] say.

pub mod backup;
pub mod imap;
pub mod maildir;

use std::collections::HashSet;
use std::sync::Arc;

use crate::dedupe::Mode;
use crate::engine::Options;
use crate::folders::TargetLayout;
use crate::imap::types::ImapDate;
use crate::index::Index;

/// A target folder opened for storing.
#[derive(Debug, Default)]
pub struct Opened {
    /// The folder's UIDVALIDITY when its UIDs may be trusted and recorded in the
    /// index; `None` for a target without UIDs (Maildir) or whose UIDVALIDITY is
    /// missing or invalid.
    pub uidvalidity: Option<u32>,
    /// The flags the folder keeps (IMAP PERMANENTFLAGS; empty: any), as
    /// [`crate::decide::append_flags`] takes them.
    pub permanent_flags: Vec<String>,
    /// Fingerprints ([`crate::dedupe::fingerprint`]) of the dedupe keys of the
    /// messages known to be in the folder now (for IMAP: the index's keys of the
    /// UIDs still present).
    pub known: HashSet<u128>,
}

/// One message to store.
pub struct Outgoing<'a> {
    /// The source's id of the message, and its folder's UIDVALIDITY.
    pub id: &'a str,
    pub uidvalidity: u32,
    /// The flags to store ([`crate::decide::append_flags`] of what was listed).
    pub flags: &'a [String],
    /// The flags as the source listed them.
    pub listed_flags: &'a [String],
    pub date: Option<&'a ImapDate>,
    pub body: &'a [u8],
    /// Its dedupe key.
    pub key: &'a str,
}

/// What [`Target::check_stored`] needs to know of a message it stored: its
/// sizes and key, not its bytes (the check runs once for several batches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its UID on the target.
    pub uid: u32,
    /// Its size as sent, and with bare LFs counted as CRLF.
    pub len: u64,
    pub crlf_len: u64,
    /// A server might store it other than as sent ([`crate::dedupe::may_be_changed`]).
    pub may_change: bool,
    /// The key sent.
    pub key: String,
}

impl Sent {
    pub fn new(uid: u32, body: &[u8], key: &str) -> Sent {
        Sent {
            uid,
            len: body.len() as u64,
            crlf_len: crate::dedupe::crlf_len(body),
            may_change: crate::dedupe::may_be_changed(body),
            key: key.to_string(),
        }
    }
}

/// Whether a target itself records a source message as stored, by (target folder,
/// source UIDVALIDITY, source id): a backup's manifest, the truth for its files.
pub type StoredIds = Arc<dyn Fn(&str, u32, &str) -> bool + Send + Sync>;

/// What the target did with one message of a batch.
pub enum Stored {
    /// Stored, with its UID there when the target has UIDs it vouches for.
    Ok(Option<u32>),
    /// Refused: this message fails (and is tried again on the next run).
    Refused(Refusal),
    /// The connection or the file system failed: the run stops here.
    Fatal(anyhow::Error),
}

/// A target's refusal of one message.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The reason as the summary shows it, the target's own words in it.
    pub why: String,
    /// `Some(words)` when the target is over quota: the account stops cleanly.
    pub over_quota: Option<String>,
}

/// Why a folder could not be created.
pub enum CreateError {
    /// Over quota: the account stops cleanly, with the target's words.
    OverQuota(String),
    /// A final refusal of this name (the target's words): the engine tries the
    /// name again as [`crate::folders::plain_name`] makes it.
    Refused(String),
    /// Anything else (a lost connection, "try later"): the run's retry decides.
    Other(anyhow::Error),
}

/// What [`Target::held`] found in a folder: (target id, dedupe key) per message,
/// or `None` for a folder that does not exist.
pub type Held = Option<Vec<(String, String)>>;

/// Opens another connection to the same target, for copying folders in parallel.
pub type Connector = Box<dyn Fn() -> anyhow::Result<Box<dyn Target>> + Send + Sync>;

/// `Send`, so parallel copies can each own a connection.
/// A copy's flags to change (the delta pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub uid: u32,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// The flags it was stored with (or last set to).
    pub base: Vec<String>,
}

/// What [`Target::update`] did.
#[derive(Debug, Default)]
pub struct Updated {
    /// The copies whose flags were set, with the flags they now have.
    pub flags: Vec<(u32, Vec<String>)>,
    /// Whether the copies named for removal were removed.
    pub removed: bool,
    /// Why something was not done (for the summary).
    pub note: Option<String>,
}

pub trait Target: Send {
    /// The password-free identity, as stored in the index and shown in reports
    /// (`imaps://user@host:993`, `maildir:/path`).
    fn describe(&self) -> String;
    /// The folder layout: delimiter, personal prefix, folders by special-use role,
    /// existing folders.
    fn layout(&mut self) -> anyhow::Result<TargetLayout>;
    /// Whether the folder `name` (decoded, the target's delimiter) is known to exist.
    fn exists(&self, name: &str) -> bool;
    /// Create the folder `name`, with a special-use role where the target has them.
    fn create(&mut self, name: &str, role: Option<&str>) -> Result<(), CreateError>;
    /// Open a folder for storing, and say what it holds (see [`Opened`]). A
    /// refusal concerning this folder only is an error that
    /// `crate::engine::folder_refusal` recognises: the folder fails alone.
    fn open(&mut self, name: &str, index: &Index, dedupe: Mode) -> anyhow::Result<Opened>;
    /// Whether the open folder holds messages not in [`Opened::known`] that could be
    /// a copy of `body` (same Message-ID, or same size): [`Target::check`] them.
    fn may_hold(&self, body: &[u8]) -> bool;
    /// The keys of the messages [`Target::may_hold`] named for any of `bodies`,
    /// as (UID, key), each once; they are not named again. One call for a whole
    /// batch: an IMAP target fetches them all in one command.
    fn check(
        &mut self,
        bodies: &[&[u8]],
        dedupe: Mode,
    ) -> anyhow::Result<Vec<(Option<u32>, String)>>;
    /// Store a batch into the open folder; one answer per message, in order.
    fn store(&mut self, batch: &[Outgoing<'_>]) -> Vec<Stored>;
    /// Identical copies of messages the folder holds (duplicates): a target that
    /// keeps a record of every source message (a backup's manifest) notes them.
    fn duplicates(&mut self, batch: &[Outgoing<'_>]) -> anyhow::Result<()> {
        let _ = batch;
        Ok(())
    }
    /// Make what [`Target::store`] answered as stored durable (IMAP: the tagged OK
    /// already is; files: synced), before the index records it.
    fn durable(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// After batches are recorded: of the messages they stored, those the target
    /// stored other than as sent, as (UID, stored key).
    fn check_stored(
        &mut self,
        stored: &[Sent],
        dedupe: Mode,
    ) -> anyhow::Result<Vec<(u32, String)>> {
        let _ = (stored, dedupe);
        Ok(Vec::new())
    }
    /// Whether folders keep the source's names (a backup: no special-use
    /// renaming; `--folder-map` still applies).
    fn keeps_names(&self) -> bool {
        false
    }
    /// Which source messages the target records as stored itself; `None`: only
    /// the index knows.
    fn stored_ids(&self) -> Option<StoredIds> {
        None
    }
    /// Planning listed `page` of the source folder going to `folder` (a backup
    /// notes new flags of messages it holds).
    fn listed(&mut self, folder: &str, uidvalidity: u32, page: &[crate::decide::Meta]) {
        let _ = (folder, uidvalidity, page);
    }
    /// Planning is over: what the target did or would do about it (a note for the
    /// summary), written only when not `dry_run`.
    fn planned(&mut self, dry_run: bool) -> anyhow::Result<Option<String>> {
        let _ = dry_run;
        Ok(None)
    }
    /// Where a dry run says a folder would go (a backup: its file).
    fn planned_name(&self, folder: &str) -> String {
        folder.to_string()
    }
    /// The run copied everything it would: a target's closing writes (a backup's
    /// summary manifest).
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// The name of the folder at `path` (levels), as the target writes it:
    /// joined with its delimiter, a level's own delimiters and control characters
    /// made `_` ([`crate::folders::join_target`]).
    fn folder_name(&self, path: &[String], layout: &TargetLayout) -> String {
        crate::folders::join_target(path, layout)
    }
    /// Whether copies can be changed after they were stored (flags set, copies
    /// removed): what the delta pass needs. IMAP: yes.
    fn updates(&self) -> bool {
        false
    }
    /// The delta pass in one folder: set the flags of copies and remove copies by
    /// UID, only while the folder's UIDVALIDITY is still `uidvalidity`.
    fn update(
        &mut self,
        folder: &str,
        uidvalidity: u32,
        flags: &[FlagChange],
        remove: &[u32],
    ) -> anyhow::Result<Updated> {
        let _ = (folder, uidvalidity, flags, remove);
        Ok(Updated::default())
    }
    /// The largest message the target takes (IMAP's APPENDLIMIT, RFC 7889);
    /// `None`: it names none.
    fn append_limit(&self) -> Option<u64> {
        None
    }
    /// The time of one round trip to the server (IMAP: a NOOP), when it can be
    /// measured; `None` for a target on this machine (files).
    fn round_trip(&mut self) -> Option<std::time::Duration> {
        None
    }
    /// How to open more connections for parallel copies; `None`: one only.
    fn connector(&self) -> Option<Connector> {
        None
    }
    /// Disagreements noticed since the last call, as (folder, what).
    fn take_anomalies(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The read side (`verify`, `check`): every message the folder `name` holds
    /// now, as (the target's id for it, its dedupe key in mode `dedupe`), read
    /// from what is stored (not from a record of it) in batches bounded as
    /// `opts` says; `None` when there is no such folder. The id is a UID where
    /// the target has them (digits only), else a file or a position in one.
    fn held(&mut self, name: &str, dedupe: Mode, opts: &Options) -> anyhow::Result<Held> {
        let _ = (name, dedupe, opts);
        Err(crate::error::input(format!(
            "{} cannot be read back",
            self.describe()
        )))
    }
    fn close(&mut self);
}
