//! What a copied folder writes into the index and the summary: a source message
//! done (copied, or a duplicate of a message already there), failed (with the
//! reason, tried again next run), and what the run learnt about target messages.
//! Rows are only built here; the copy writes them once the target made the batch
//! durable.

use crate::decide::Meta;
use crate::index::{Outcome, Record};
use crate::log;
use crate::summary::{Failure, Summary};

/// Builds the rows of one source folder copied into one target folder.
pub(super) struct Rows<'a> {
    pub job_id: i64,
    /// The target's identity, as the index keys its messages.
    pub target: &'a str,
    pub folder: &'a str,
    pub uidvalidity: u32,
    pub target_folder: &'a str,
    /// The target folder's UIDVALIDITY, when its UIDs may be recorded.
    pub target_uidvalidity: Option<u32>,
}

impl Rows<'_> {
    /// A source message handled: a duplicate (`flags` `None`), or copied with
    /// these flags, as target UID `uid` where the target said it.
    pub fn done(
        &self,
        meta: &Meta,
        key: &str,
        outcome: Outcome,
        uid: Option<u32>,
        flags: Option<&[String]>,
    ) -> Record {
        Record::Done {
            job: self.job_id,
            folder: self.folder.to_string(),
            uidvalidity: self.uidvalidity,
            id: meta.id.clone(),
            key: key.to_string(),
            outcome,
            target_folder: self.target_folder.to_string(),
            target_uid: uid,
            target_uidvalidity: uid.and(self.target_uidvalidity),
            flags: flags.map(<[String]>::to_vec),
        }
    }

    /// A failed message: said, in the summary, and recorded (tried again next run).
    pub fn fail(&self, summary: &mut Summary, meta: &Meta, reason: &str) -> Record {
        log::warn(format!("{} message {}: {reason}", self.folder, meta.id));
        summary.failed.push(Failure {
            folder: self.folder.to_string(),
            id: meta.id.clone(),
            reason: reason.to_string(),
        });
        Record::Failed {
            job: self.job_id,
            folder: self.folder.to_string(),
            uidvalidity: self.uidvalidity,
            id: meta.id.clone(),
            reason: reason.to_string(),
        }
    }

    /// A target message known by its key; nothing when the target's UIDs are not
    /// trusted (or it has none).
    pub fn known(&self, uid: Option<u32>, key: &str) -> Option<Record> {
        Some(Record::TargetKnown {
            target: self.target.to_string(),
            folder: self.target_folder.to_string(),
            uidvalidity: self.target_uidvalidity?,
            uid: uid?,
            key: key.to_string(),
        })
    }

    /// A target message stored other than as sent: the key of what is stored.
    pub fn changed(&self, uid: Option<u32>, stored_key: &str) -> Option<Record> {
        Some(Record::TargetChanged {
            target: self.target.to_string(),
            folder: self.target_folder.to_string(),
            uidvalidity: self.target_uidvalidity?,
            uid: uid?,
            stored_key: stored_key.to_string(),
        })
    }
}
