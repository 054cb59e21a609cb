//! The delta pass of a re-run (the cutover): flags changed on the source since
//! the last run are carried to the target's copies, and with `--sync-deletes`
//! the copies of messages gone from the source are removed from the target.
//!
//! Invariants:
//! - only copies this job made are touched: rows recorded as copied, with the
//!   target UID the target gave (APPENDUID) and its folder's UIDVALIDITY, checked
//!   again before anything is sent; a message found on the target (not copied by
//!   mailferry) is never changed or removed;
//! - a flag is added or removed only when the source changed it since it was
//!   stored (a three-way comparison), so what the user changed on the target stays;
//! - a copy is removed only when every source message this job recorded for its
//!   key in that target folder is gone (a duplicate still on the source keeps it),
//!   and only from a source folder listed whole in this run (the number of
//!   messages it announced was listed, nothing was said to be left out);
//! - the index is updated only after the target's OK.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::decide::{self, Meta};
use crate::index::{CopyRow, GoneRow, Index, Record};
use crate::summary::Summary;
use crate::target::{FlagChange, Target};

/// A source message, as the index names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Src {
    folder: String,
    uidvalidity: u32,
    id: String,
}

/// What the pass found for one target folder (and the UIDVALIDITY its copies'
/// UIDs belong to).
#[derive(Debug, Default)]
struct Folder {
    flags: Vec<(Src, FlagChange)>,
    gone: Vec<(Src, GoneRow)>,
}

/// What the delta pass gathers while folders are planned.
#[derive(Debug, Default)]
pub struct Delta {
    folders: BTreeMap<(String, u32), Folder>,
    /// Gone rows that hold no copy of this job's (duplicates, or messages found on
    /// the target): their rows go once their whole key group is gone.
    plain_gone: Vec<(Src, GoneRow)>,
    /// Ids listed in the folder being planned (only with `--sync-deletes`).
    listed: HashSet<String>,
    sync_deletes: bool,
}

impl Delta {
    pub fn new(sync_deletes: bool) -> Delta {
        Delta {
            sync_deletes,
            ..Delta::default()
        }
    }

    /// A listed page of source folder `folder`: the copies whose source flags
    /// changed are noted (and, with `--sync-deletes`, the ids kept to find what
    /// is gone).
    pub fn page(
        &mut self,
        index: &Index,
        job: i64,
        (folder, uidvalidity): (&str, u32),
        page: &[Meta],
    ) -> anyhow::Result<()> {
        if self.sync_deletes {
            self.listed.extend(page.iter().map(|m| m.id.clone()));
        }
        let by_id: HashMap<&str, &Meta> = page.iter().map(|m| (m.id.as_str(), m)).collect();
        let copies = index.copies(job, folder, uidvalidity, by_id.keys().copied())?;
        for row in copies {
            let meta = by_id[row.id.as_str()];
            if meta.flags_missing {
                continue;
            }
            let now = decide::append_flags(&meta.flags, &[]).0;
            let (add, remove) = decide::flag_delta(row.flags.as_deref(), &now);
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            let CopyRow {
                id,
                target_folder,
                target_uidvalidity,
                target_uid,
                flags,
                ..
            } = row;
            let src = Src {
                folder: folder.to_string(),
                uidvalidity,
                id,
            };
            let change = FlagChange {
                uid: target_uid,
                add,
                remove,
                base: flags.unwrap_or_default(),
            };
            self.folders
                .entry((target_folder, target_uidvalidity))
                .or_default()
                .flags
                .push((src, change));
        }
        Ok(())
    }

    /// The source folder was listed: with `--sync-deletes`, what the index holds of
    /// it that the listing did not name is gone — when the listing is whole
    /// (`whole`: as many messages as announced, no disagreement said).
    pub fn listed(
        &mut self,
        index: &Index,
        job: i64,
        (folder, uidvalidity): (&str, u32),
        whole: bool,
    ) -> anyhow::Result<Option<String>> {
        let listed = std::mem::take(&mut self.listed);
        if !self.sync_deletes {
            return Ok(None);
        }
        if !whole {
            return Ok(Some(format!(
                "{folder}: --sync-deletes removes nothing here: the source did not list the whole folder"
            )));
        }
        for row in index.gone(job, folder, uidvalidity, &listed)? {
            let src = Src {
                folder: folder.to_string(),
                uidvalidity,
                id: row.id.clone(),
            };
            match row.copy {
                Some((tuv, _)) => self
                    .folders
                    .entry((row.target_folder.clone(), tuv))
                    .or_default()
                    .gone
                    .push((src, row)),
                None => self.plain_gone.push((src, row)),
            }
        }
        Ok(None)
    }

    /// Flag changes and removals found, for a dry run's summary.
    pub fn counts(&self, index: &Index, job: i64) -> anyhow::Result<(u64, u64)> {
        let removable = removable(self, index, job)?;
        let flags = self.folders.values().map(|f| f.flags.len() as u64).sum();
        let gone = self
            .folders
            .values()
            .flat_map(|f| f.gone.iter())
            .filter(|(_, g)| removable.contains(&(g.target_folder.clone(), g.key.clone())))
            .count() as u64;
        Ok((flags, gone))
    }

    /// Carry it out on the target, recording each step after the target's OK.
    pub fn apply(
        self,
        tgt: &mut dyn Target,
        index: &mut Index,
        job: i64,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        let mut removable = removable(&self, index, job)?;
        // A message moved to another folder is removed from the first only once its
        // copy in the other is safe: not after a run in which something failed.
        let failures = !summary.failed.is_empty() || !summary.failed_folders.is_empty();
        if !removable.is_empty() && failures {
            summary.note(
                "--sync-deletes removed nothing in this run: some messages or folders failed, and a message moved on the source may be among them; the next run without failures removes what is gone".to_string(),
            );
            removable.clear();
        }
        let target = tgt.describe();
        for ((folder, tuv), f) in self.folders {
            let remove: Vec<&(Src, GoneRow)> = f
                .gone
                .iter()
                .filter(|(_, g)| removable.contains(&(g.target_folder.clone(), g.key.clone())))
                .collect();
            let uids: Vec<u32> = remove
                .iter()
                .filter_map(|(_, g)| g.copy.map(|c| c.1))
                .collect();
            let changes: Vec<FlagChange> = f.flags.iter().map(|(_, c)| c.clone()).collect();
            if changes.is_empty() && uids.is_empty() {
                continue;
            }
            let done = tgt.update(&folder, tuv, &changes, &uids)?;
            if let Some(note) = done.note {
                summary.note(note);
            }
            let mut records = Vec::new();
            for (uid, flags) in done.flags {
                let Some((src, _)) = f.flags.iter().find(|(_, c)| c.uid == uid) else {
                    continue;
                };
                summary.flags_updated += 1;
                records.push(Record::Flags {
                    job,
                    folder: src.folder.clone(),
                    uidvalidity: src.uidvalidity,
                    id: src.id.clone(),
                    flags,
                });
            }
            if done.removed {
                summary.removed_on_target += uids.len() as u64;
                for (src, g) in &remove {
                    records.push(gone_record(
                        job,
                        src,
                        g.copy
                            .map(|(_, uid)| (target.clone(), folder.clone(), tuv, uid)),
                    ));
                }
            }
            index.record(&records)?;
        }
        let plain: Vec<Record> = self
            .plain_gone
            .iter()
            .filter(|(_, g)| removable.contains(&(g.target_folder.clone(), g.key.clone())))
            .map(|(src, _)| gone_record(job, src, None))
            .collect();
        index.record(&plain)?;
        Ok(())
    }
}

fn gone_record(job: i64, src: &Src, target_copy: Option<(String, String, u32, u32)>) -> Record {
    Record::Gone {
        job,
        folder: src.folder.clone(),
        uidvalidity: src.uidvalidity,
        id: src.id.clone(),
        target_copy,
    }
}

/// The (target folder, key) groups every one of whose recorded source messages
/// is gone: only their copies are removed.
fn removable(delta: &Delta, index: &Index, job: i64) -> anyhow::Result<HashSet<(String, String)>> {
    let mut gone: HashMap<(String, String), u64> = HashMap::new();
    let rows = delta
        .folders
        .values()
        .flat_map(|f| f.gone.iter())
        .chain(delta.plain_gone.iter());
    for (_, g) in rows {
        *gone
            .entry((g.target_folder.clone(), g.key.clone()))
            .or_insert(0) += 1;
    }
    let mut out = HashSet::new();
    for ((folder, key), n) in gone {
        if whole_group(index.holders(job, &folder, &key)?, n) {
            out.insert((folder, key));
        }
    }
    Ok(out)
}

/// Whether a key group may go: every holder the index records is gone.
fn whole_group(holders: u64, gone: u64) -> bool {
    gone > 0 && gone >= holders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_goes_only_with_its_whole_group() {
        // (holders recorded, gone) → removable
        let table = [
            (1, 1, true),
            (2, 1, false),
            (2, 2, true),
            (0, 0, false),
            (3, 0, false),
        ];
        for (holders, gone, want) in table {
            assert_eq!(whole_group(holders, gone), want, "{holders} {gone}");
        }
    }
}
