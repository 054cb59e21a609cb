//! The SQLite index: what is safely on the target, dedupe keys, failures.
//!
//! Invariants:
//! - schema changes are an append-only list of migrations tracked by
//!   `PRAGMA user_version`, each applied in one transaction, never reordered;
//! - a source message is recorded as done only after the target acknowledged it (or
//!   it was found there already): the caller records after the APPEND's tagged OK;
//! - writes are batched in transactions and idempotent (`ON CONFLICT`), so replaying
//!   a batch after a crash is harmless;
//! - no secret is ever stored: endpoints are stored in their password-free form.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::input;

/// 'MFER': marks a file as a mailferry index.
const APPLICATION_ID: i64 = 0x4D46_4552;

/// The schema, one migration per entry. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, per-message outcomes, what is known on targets, failures.
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (source, target)
    );
    CREATE TABLE done (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        key TEXT NOT NULL,
        outcome TEXT NOT NULL,
        target_folder TEXT NOT NULL,
        target_uid INTEGER,
        at TEXT NOT NULL,
        PRIMARY KEY (job_id, folder, uidvalidity, uid)
    ) WITHOUT ROWID;
    CREATE TABLE target_messages (
        target TEXT NOT NULL,
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (target, folder, uidvalidity, uid)
    ) WITHOUT ROWID;
    CREATE TABLE failures (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (job_id, folder, uidvalidity, uid)
    ) WITHOUT ROWID;",
    // 2: source messages are named by text ids (IMAP UIDs in decimal, POP3 UIDLs,
    // mbox positions), so every kind of source shares one checkpoint table.
    "CREATE TABLE source_done (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        id TEXT NOT NULL,
        key TEXT NOT NULL,
        outcome TEXT NOT NULL,
        target_folder TEXT NOT NULL,
        target_uid INTEGER,
        at TEXT NOT NULL,
        PRIMARY KEY (job_id, folder, uidvalidity, id)
    ) WITHOUT ROWID;
    INSERT INTO source_done
        SELECT job_id, folder, uidvalidity, CAST(uid AS TEXT), key, outcome, target_folder, target_uid, at FROM done;
    DROP TABLE done;
    CREATE TABLE source_failures (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        id TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (job_id, folder, uidvalidity, id)
    ) WITHOUT ROWID;
    INSERT INTO source_failures
        SELECT job_id, folder, uidvalidity, CAST(uid AS TEXT), reason, at FROM failures;
    DROP TABLE failures;",
    // 3: target messages the target stored other than as sent (Cyrus's 8-bit
    // header bytes, Courier's final CRLF): the key of what it stores, beside the
    // key of what was sent (in target_messages).
    "CREATE TABLE target_changed (
        target TEXT NOT NULL,
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        stored_key TEXT NOT NULL,
        PRIMARY KEY (target, folder, uidvalidity, uid)
    ) WITHOUT ROWID;",
    // 4: what a copy was stored with, for the delta pass: the flags set on the
    // target's copy (space-separated; NULL for rows written before) and the
    // target folder's UIDVALIDITY its UID belongs to.
    "ALTER TABLE source_done ADD COLUMN flags TEXT;
    ALTER TABLE source_done ADD COLUMN target_uidvalidity INTEGER;",
    // 5: the delta pass asks who still holds a copy by target folder and key.
    "CREATE INDEX source_done_by_target_key ON source_done (target_folder, key);",
];

/// What happened to a source message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Copied,
    Duplicate,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Copied => "copied",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// One write, applied in batches by [`Index::record`].
#[derive(Debug, Clone)]
pub enum Record {
    Done {
        job: i64,
        folder: String,
        uidvalidity: u32,
        id: String,
        key: String,
        outcome: Outcome,
        target_folder: String,
        target_uid: Option<u32>,
        /// The target folder's UIDVALIDITY that `target_uid` belongs to.
        target_uidvalidity: Option<u32>,
        /// The flags the target's copy was stored with (copies only).
        flags: Option<Vec<String>>,
    },
    /// The flags of a target copy were set to these (the delta pass).
    Flags {
        job: i64,
        folder: String,
        uidvalidity: u32,
        id: String,
        flags: Vec<String>,
    },
    /// A source message gone from the source, and its target copy (if any)
    /// removed (`--sync-deletes`): its row goes.
    Gone {
        job: i64,
        folder: String,
        uidvalidity: u32,
        id: String,
        /// The target copy removed: (target, folder, UIDVALIDITY, UID).
        target_copy: Option<(String, String, u32, u32)>,
    },
    TargetKnown {
        target: String,
        folder: String,
        uidvalidity: u32,
        uid: u32,
        key: String,
    },
    /// A target message stored other than as sent: the key of what is stored.
    TargetChanged {
        target: String,
        folder: String,
        uidvalidity: u32,
        uid: u32,
        stored_key: String,
    },
    Failed {
        job: i64,
        folder: String,
        uidvalidity: u32,
        id: String,
        reason: String,
    },
}

/// The target UIDVALIDITY of a copy's UID (in `source_done d`): as recorded, or for
/// rows recorded before it was (schema 3), from what the index knows of the target
/// message with that UID and the same key.
const TARGET_UIDVALIDITY: &str = "COALESCE(d.target_uidvalidity, (
    SELECT t.uidvalidity FROM target_messages t JOIN jobs j ON t.target = j.target
    WHERE j.id = d.job_id AND t.folder = d.target_folder AND t.uid = d.target_uid AND t.key = d.key
    ORDER BY t.uidvalidity DESC LIMIT 1))";

/// A target copy this job made of a source message (see [`Index::copies`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRow {
    pub id: String,
    pub key: String,
    pub target_folder: String,
    pub target_uidvalidity: u32,
    pub target_uid: u32,
    /// The flags it was stored with; `None`: recorded before they were kept.
    pub flags: Option<Vec<String>>,
}

fn copy_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CopyRow> {
    let flags: Option<String> = r.get(5)?;
    Ok(CopyRow {
        id: r.get(0)?,
        key: r.get(1)?,
        target_folder: r.get(2)?,
        target_uidvalidity: r.get(3)?,
        target_uid: r.get(4)?,
        flags: flags.map(|f| f.split_whitespace().map(str::to_string).collect()),
    })
}

/// A handled source message gone from the source (see [`Index::gone`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneRow {
    pub id: String,
    pub key: String,
    pub target_folder: String,
    /// Its copy, when this job made one: (target UIDVALIDITY, UID).
    pub copy: Option<(u32, u32)>,
}

pub struct Index {
    conn: Connection,
    path: PathBuf,
}

/// Where the index lives when `--state` is not given.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("mailferry").join("index.sqlite")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Index {
    /// Open (creating if needed) and migrate. The file is readable by its owner only.
    pub fn open(path: &Path) -> anyhow::Result<Index> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| input(format!("cannot create {}: {e}", dir.display())))?;
        }
        let fresh = !path.exists();
        if fresh {
            create_private(path)?;
        }
        let not_index = |e: rusqlite::Error| {
            input(format!(
                "{} is not a usable mailferry index ({e}); give another --state path or move the file away",
                path.display()
            ))
        };
        let conn = Connection::open(path).map_err(not_index)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(not_index)?;
        let app: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(not_index)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(not_index)?;
        let has_tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(not_index)?;
        if app != APPLICATION_ID && (version != 0 || has_tables != 0) {
            return Err(input(format!(
                "{} is an SQLite file but not a mailferry index; give another --state path",
                path.display()
            )));
        }
        if version as usize > MIGRATIONS.len() {
            return Err(input(format!(
                "{} was written by a newer mailferry (schema {version}); upgrade mailferry",
                path.display()
            )));
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(not_index)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(not_index)?;
        let mut index = Index {
            conn,
            path: path.to_path_buf(),
        };
        index.migrate(version as usize)?;
        Ok(index)
    }

    fn migrate(&mut self, from: usize) -> anyhow::Result<()> {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("index migration {}", i + 1))?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of the job copying `source` into `target`, created on first use.
    pub fn job(&self, source: &str, target: &str) -> anyhow::Result<i64> {
        self.conn.execute(
            "INSERT INTO jobs (source, target, created) VALUES (?1, ?2, ?3)
             ON CONFLICT (source, target) DO NOTHING",
            params![source, target, now()],
        )?;
        Ok(self.conn.query_row(
            "SELECT id FROM jobs WHERE source = ?1 AND target = ?2",
            params![source, target],
            |r| r.get(0),
        )?)
    }

    /// Ids of the source messages of this folder and UIDVALIDITY that are safely handled
    /// (the whole set, for tests; runs ask [`Index::not_done`] page by page).
    #[cfg(test)]
    pub fn done_ids(
        &self,
        job: i64,
        folder: &str,
        uidvalidity: u32,
    ) -> anyhow::Result<std::collections::HashSet<String>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id FROM source_done WHERE job_id = ?1 AND folder = ?2 AND uidvalidity = ?3",
        )?;
        let rows = st.query_map(params![job, folder, uidvalidity], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The messages of `metas` the index does not record as handled, in their order:
    /// one indexed lookup each, so nothing of the folder is held in memory.
    pub fn not_done(
        &self,
        job: i64,
        folder: &str,
        uidvalidity: u32,
        metas: Vec<crate::decide::Meta>,
    ) -> anyhow::Result<Vec<crate::decide::Meta>> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM source_done WHERE job_id = ?1 AND folder = ?2 AND uidvalidity = ?3 AND id = ?4",
        )?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            if !st.exists(params![job, folder, uidvalidity, m.id])? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// The target copies this job made of `ids` (copied, with a target UID), for
    /// the delta pass: one indexed lookup each.
    pub fn copies<'a>(
        &self,
        job: i64,
        folder: &str,
        uidvalidity: u32,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Vec<CopyRow>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT id, key, target_folder, {TARGET_UIDVALIDITY}, target_uid, flags FROM source_done d
             WHERE job_id = ?1 AND folder = ?2 AND uidvalidity = ?3 AND id = ?4
               AND outcome = 'copied' AND target_uid IS NOT NULL AND {TARGET_UIDVALIDITY} IS NOT NULL"
        ))?;
        let mut out = Vec::new();
        for id in ids {
            let row = st
                .query_row(params![job, folder, uidvalidity, id], copy_row)
                .optional()?;
            out.extend(row);
        }
        Ok(out)
    }

    /// Every handled source message of this folder and UIDVALIDITY not in `listed`
    /// (gone from the source), as (id, key, target folder, its copy if this job
    /// made one: (target UIDVALIDITY, UID)).
    pub fn gone(
        &self,
        job: i64,
        folder: &str,
        uidvalidity: u32,
        listed: &std::collections::HashSet<String>,
    ) -> anyhow::Result<Vec<GoneRow>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT id, key, target_folder, outcome, {TARGET_UIDVALIDITY}, target_uid FROM source_done d
             WHERE job_id = ?1 AND folder = ?2 AND uidvalidity = ?3"
        ))?;
        let rows = st.query_map(params![job, folder, uidvalidity], |r| {
            let copied = r.get::<_, String>(3)? == "copied";
            let tuv: Option<u32> = r.get(4)?;
            let tuid: Option<u32> = r.get(5)?;
            Ok(GoneRow {
                id: r.get(0)?,
                key: r.get(1)?,
                target_folder: r.get(2)?,
                copy: tuv.zip(tuid).filter(|_| copied),
            })
        })?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            if !listed.contains(&row.id) {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// How many handled source messages, in any folder and of any job into the same
    /// target as `job`, went to `target_folder` with dedupe key `key`: another job's
    /// source message found there as a duplicate holds the copy as well.
    pub fn holders(&self, job: i64, target_folder: &str, key: &str) -> anyhow::Result<u64> {
        let mut st = self.conn.prepare_cached(
            "SELECT count(*) FROM source_done d JOIN jobs j ON j.id = d.job_id
             WHERE j.target = (SELECT target FROM jobs WHERE id = ?1)
               AND d.target_folder = ?2 AND d.key = ?3",
        )?;
        Ok(st.query_row(params![job, target_folder, key], |r| r.get(0))?)
    }

    /// Whether any message of this folder and UIDVALIDITY is recorded as handled.
    pub fn any_done(&self, job: i64, folder: &str, uidvalidity: u32) -> anyhow::Result<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM source_done WHERE job_id = ?1 AND folder = ?2 AND uidvalidity = ?3 LIMIT 1",
        )?;
        Ok(st.exists(params![job, folder, uidvalidity])?)
    }

    /// Whether this folder was copied before under another UIDVALIDITY.
    pub fn other_uidvalidity(
        &self,
        job: i64,
        folder: &str,
        uidvalidity: u32,
    ) -> anyhow::Result<Option<u32>> {
        Ok(self
            .conn
            .query_row(
                "SELECT uidvalidity FROM source_done WHERE job_id = ?1 AND folder = ?2 AND uidvalidity != ?3 LIMIT 1",
                params![job, folder, uidvalidity],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Dedupe keys of the target folder's messages known to the index, by UID, as
    /// fingerprints ([`crate::dedupe::fingerprint`]: 16 bytes a message in memory).
    pub fn target_keys(
        &self,
        target: &str,
        folder: &str,
        uidvalidity: u32,
    ) -> anyhow::Result<HashMap<u32, u128>> {
        let mut st = self.conn.prepare_cached(
            "SELECT uid, key FROM target_messages WHERE target = ?1 AND folder = ?2 AND uidvalidity = ?3",
        )?;
        let rows = st.query_map(params![target, folder, uidvalidity], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                crate::dedupe::fingerprint(&r.get::<_, String>(1)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Failures recorded for a job (folder, id, reason), for reports.
    pub fn failures(&self, job: i64) -> anyhow::Result<Vec<(String, String, String)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT folder, id, reason FROM source_failures WHERE job_id = ?1 ORDER BY folder, id",
        )?;
        let rows = st.query_map(params![job], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Apply a batch of writes in one transaction.
    pub fn record(&mut self, batch: &[Record]) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let at = now();
        let tx = self.conn.transaction()?;
        for r in batch {
            match r {
                Record::Done { .. } | Record::Failed { .. } => write_done(&tx, r, &at)?,
                Record::Flags { .. } | Record::Gone { .. } => write_delta(&tx, r)?,
                Record::TargetKnown { .. } | Record::TargetChanged { .. } => write_target(&tx, r)?,
            }
        }
        crate::faults::in_commit();
        tx.commit()?;
        Ok(())
    }
}

/// A source message handled, or failed.
fn write_done(tx: &rusqlite::Transaction<'_>, r: &Record, at: &str) -> rusqlite::Result<()> {
    match r {
        Record::Done {
            job,
            folder,
            uidvalidity,
            id,
            key,
            outcome,
            target_folder,
            target_uid,
            target_uidvalidity,
            flags,
        } => {
            let flags = flags.as_ref().map(|f| f.join(" "));
            tx.prepare_cached(
                "INSERT INTO source_done (job_id, folder, uidvalidity, id, key, outcome, target_folder, target_uid, at, flags, target_uidvalidity)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![job, folder, uidvalidity, id, key, outcome.as_str(), target_folder, target_uid, at, flags, target_uidvalidity])?;
            tx.prepare_cached(
                "DELETE FROM source_failures WHERE job_id = ?1 AND folder = ?2 AND uidvalidity = ?3 AND id = ?4",
            )?
            .execute(params![job, folder, uidvalidity, id])?;
        }
        Record::Failed {
            job,
            folder,
            uidvalidity,
            id,
            reason,
        } => {
            tx.prepare_cached(
                "INSERT INTO source_failures (job_id, folder, uidvalidity, id, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO UPDATE SET reason = excluded.reason, at = excluded.at",
            )?
            .execute(params![job, folder, uidvalidity, id, reason, at])?;
        }
        _ => {}
    }
    Ok(())
}

/// The delta pass: flags set on a copy, a source message gone (and its copy).
fn write_delta(tx: &rusqlite::Transaction<'_>, r: &Record) -> rusqlite::Result<()> {
    match r {
        Record::Flags {
            job,
            folder,
            uidvalidity,
            id,
            flags,
        } => {
            tx.prepare_cached(
                "UPDATE source_done SET flags = ?5 WHERE job_id = ?1 AND folder = ?2 AND uidvalidity = ?3 AND id = ?4",
            )?
            .execute(params![job, folder, uidvalidity, id, flags.join(" ")])?;
        }
        Record::Gone {
            job,
            folder,
            uidvalidity,
            id,
            target_copy,
        } => {
            tx.prepare_cached(
                "DELETE FROM source_done WHERE job_id = ?1 AND folder = ?2 AND uidvalidity = ?3 AND id = ?4",
            )?
            .execute(params![job, folder, uidvalidity, id])?;
            if let Some((target, tfolder, tuidvalidity, tuid)) = target_copy {
                for table in ["target_messages", "target_changed"] {
                    tx.prepare_cached(&format!(
                        "DELETE FROM {table} WHERE target = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4"
                    ))?
                    .execute(params![target, tfolder, tuidvalidity, tuid])?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// What is known of a target message.
fn write_target(tx: &rusqlite::Transaction<'_>, r: &Record) -> rusqlite::Result<()> {
    match r {
        Record::TargetKnown {
            target,
            folder,
            uidvalidity,
            uid,
            key,
        } => {
            tx.prepare_cached(
                "INSERT INTO target_messages (target, folder, uidvalidity, uid, key)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET key = excluded.key",
            )?
            .execute(params![target, folder, uidvalidity, uid, key])?;
        }
        Record::TargetChanged {
            target,
            folder,
            uidvalidity,
            uid,
            stored_key,
        } => {
            tx.prepare_cached(
                "INSERT INTO target_changed (target, folder, uidvalidity, uid, stored_key)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET stored_key = excluded.stored_key",
            )?
            .execute(params![target, folder, uidvalidity, uid, stored_key])?;
        }
        _ => {}
    }
    Ok(())
}

/// An exclusive claim on an index for the life of a run: two runs on one index at
/// the same time are refused rather than left to race. The lock is the kernel's
/// (flock), so it dies with the process; the `.lock` file may stay behind harmlessly.
pub struct Lock {
    _file: std::fs::File,
}

pub fn lock(path: &Path) -> anyhow::Result<Lock> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| input(format!("cannot create {}: {e}", dir.display())))?;
    }
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let file = o
        .open(&lock_path)
        .map_err(|e| input(format!("cannot create {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(input(format!(
            "another mailferry run is using the index {}; wait until it ends, or give this run its own --state",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(input(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

/// Create an empty file readable and writable by its owner only.
fn create_private(path: &Path) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .map_err(|e| input(format!("cannot create the index {}: {e}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn records_are_idempotent_and_failures_cleared_by_success() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let job = ix.job("imaps://a@h:993", "imaps://b@h:993").unwrap();
        assert_eq!(job, ix.job("imaps://a@h:993", "imaps://b@h:993").unwrap());
        let fail = Record::Failed {
            job,
            folder: "INBOX".into(),
            uidvalidity: 5,
            id: "9".into(),
            reason: "[LIMIT] too big".into(),
        };
        ix.record(&[fail.clone(), fail]).unwrap();
        assert_eq!(ix.failures(job).unwrap().len(), 1);
        let done = Record::Done {
            job,
            folder: "INBOX".into(),
            uidvalidity: 5,
            id: "9".into(),
            key: "x:ab".into(),
            outcome: Outcome::Copied,
            target_folder: "INBOX".into(),
            target_uid: Some(1),
            target_uidvalidity: Some(3),
            flags: Some(vec!["\\Seen".into()]),
        };
        ix.record(&[done.clone(), done]).unwrap();
        assert_eq!(
            ix.done_ids(job, "INBOX", 5).unwrap(),
            HashSet::from(["9".to_string()])
        );
        assert!(ix.done_ids(job, "INBOX", 6).unwrap().is_empty());
        let meta = |id: &str| crate::decide::Meta {
            id: id.to_string(),
            order: id.parse().unwrap(),
            size: 1,
            flags: Vec::new(),
            internal_date: None,
            problem: None,
            flags_missing: false,
        };
        let left = ix
            .not_done(job, "INBOX", 5, vec![meta("8"), meta("9"), meta("10")])
            .unwrap();
        assert_eq!(
            left.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["8", "10"]
        );
        assert_eq!(
            ix.not_done(job, "INBOX", 6, vec![meta("9")]).unwrap().len(),
            1
        );
        assert!(ix.any_done(job, "INBOX", 5).unwrap());
        assert!(!ix.any_done(job, "INBOX", 6).unwrap());
        assert_eq!(ix.other_uidvalidity(job, "INBOX", 6).unwrap(), Some(5));
        assert!(ix.failures(job).unwrap().is_empty());
    }

    #[test]
    fn migration_2_carries_schema_1_checkpoints_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.sqlite");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute_batch(
                "INSERT INTO jobs VALUES (1, 's', 't', 'now');
                 INSERT INTO done VALUES (1, 'INBOX', 7, 42, 'x:aa', 'copied', 'INBOX', 3, 'now');
                 INSERT INTO failures VALUES (1, 'INBOX', 7, 43, 'NO [LIMIT] big', 'now');",
            )
            .unwrap();
        }
        let ix = Index::open(&p).unwrap();
        assert_eq!(
            ix.done_ids(1, "INBOX", 7).unwrap(),
            HashSet::from(["42".to_string()])
        );
        assert_eq!(
            ix.failures(1).unwrap(),
            vec![(
                "INBOX".to_string(),
                "43".to_string(),
                "NO [LIMIT] big".to_string()
            )]
        );
    }

    #[test]
    fn a_second_run_on_the_same_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.sqlite");
        let first = lock(&p).unwrap();
        let e = lock(&p).err().unwrap().to_string();
        assert!(
            e.contains("another mailferry run is using the index"),
            "{e}"
        );
        drop(first);
        lock(&p).unwrap();
    }

    #[test]
    fn reopening_keeps_data_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.sqlite");
        {
            let ix = Index::open(&p).unwrap();
            ix.job("s", "t").unwrap();
        }
        let ix = Index::open(&p).unwrap();
        assert_eq!(ix.job("s", "t").unwrap(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "index must be private, mode {mode:o}");
        }

        let other = dir.path().join("other.sqlite");
        let c = Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE t (x)").unwrap();
        drop(c);
        let e = Index::open(&other).err().unwrap().to_string();
        assert!(e.contains("not a mailferry index"), "{e}");

        let junk = dir.path().join("junk.sqlite");
        std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
        let e = Index::open(&junk).err().unwrap().to_string();
        assert!(e.contains("not a usable mailferry index"), "{e}");
    }
}
