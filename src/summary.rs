//! The end-of-run summary, printed for people or as JSON (`--json`).

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub folder: String,
    /// The source message: IMAP UID, POP3 UIDL or mbox position.
    pub id: String,
    /// The server's own words.
    pub reason: String,
}

/// A disagreement between what a server announced and what it delivered (counts,
/// UIDs, UIDVALIDITY, POP3 STAT/LIST/UIDL, APPENDUID). Never silent: it is listed in
/// the summary and makes the exit code 1, even when every message was copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// The folder it concerns (empty for the whole account).
    pub folder: String,
    pub what: String,
}

/// A folder the servers refused (CREATE, SELECT, EXAMINE, FETCH): its messages
/// are not copied in this run and are tried again in the next.
#[derive(Debug, Clone, Serialize)]
pub struct FolderFailure {
    pub folder: String,
    pub target_folder: String,
    /// The server's own words.
    pub reason: String,
}

/// A message the target stored other than as it was sent (Cyrus turns 8-bit
/// header bytes into `X`, Courier adds a final CRLF): on the target, not lost, and
/// not appended again; `verify` reports it as changed.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub folder: String,
    pub id: String,
    pub target_folder: String,
    pub target_uid: u32,
}

/// A folder that went to another name than the usual one, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renamed {
    pub folder: String,
    pub target_folder: String,
    pub why: String,
}

/// What a dry run would do for one folder.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub folder: String,
    pub target_folder: String,
    pub messages: u64,
    pub bytes: u64,
}

/// Disagreements listed one by one; beyond, they are counted.
pub const MAX_ANOMALIES: usize = 100;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub source: String,
    pub target: String,
    pub dry_run: bool,
    pub folders: usize,
    pub copied: u64,
    pub duplicates: u64,
    pub failed: Vec<Failure>,
    /// Folders that failed as a whole (see [`FolderFailure`]).
    pub failed_folders: Vec<FolderFailure>,
    /// Folders put under another name than the usual one.
    pub renamed: Vec<Renamed>,
    /// Messages the target stored changed (see [`Changed`]).
    pub changed: Vec<Changed>,
    /// What the servers said that did not add up (see [`Anomaly`]), the first
    /// [`MAX_ANOMALIES`] of them.
    pub anomalies: Vec<Anomaly>,
    /// Disagreements beyond those listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub anomalies_more: u64,
    #[serde(skip)]
    anomalies_seen: std::collections::HashSet<(String, String)>,
    pub bytes: u64,
    pub seconds: f64,
    pub messages_per_second: f64,
    pub bytes_per_second: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<Planned>,
    /// Messages deleted from the source (`--delete-after`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<u64>,
    /// The error that ended the run, when one did (the summary then says what
    /// was done before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the source was read, where the user should know it (an mbox backup
    /// that no longer matched its manifest, messages left out on purpose).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Set when the run stopped early (e.g. the target is over quota).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Messages left on the source on purpose (`--since`, `--before`,
    /// `--max-size`, the target's APPENDLIMIT), by reason; not recorded, so a run
    /// with other filters copies them.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub left: std::collections::BTreeMap<String, u64>,
    /// The delta pass: copies whose flags were set to the source's (a dry run:
    /// would be).
    #[serde(skip_serializing_if = "is_zero")]
    pub flags_updated: u64,
    /// `--sync-deletes`: copies removed from the target (a dry run: would be).
    #[serde(skip_serializing_if = "is_zero")]
    pub removed_on_target: u64,
}

impl Summary {
    pub fn finish(&mut self, started: std::time::Instant) {
        self.seconds = started.elapsed().as_secs_f64();
        if self.seconds > 0.0 {
            self.messages_per_second = (self.copied + self.duplicates) as f64 / self.seconds;
            self.bytes_per_second = self.bytes as f64 / self.seconds;
        }
    }

    /// Whether nothing went wrong.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
            && self.failed_folders.is_empty()
            && self.stopped.is_none()
            && self.anomalies.is_empty()
            && self.anomalies_more == 0
    }

    /// A folder failed as a whole (said at once as a warning).
    pub fn folder_failed(&mut self, folder: &str, target_folder: &str, reason: String) {
        crate::log::warn(format!("{folder}: the folder is not copied: {reason}"));
        self.failed_folders.push(FolderFailure {
            folder: folder.to_string(),
            target_folder: target_folder.to_string(),
            reason,
        });
    }

    /// A folder went to another name (said at once as a warning).
    pub fn renamed(&mut self, folder: &str, target_folder: &str, why: &str) {
        let r = Renamed {
            folder: folder.to_string(),
            target_folder: target_folder.to_string(),
            why: why.to_string(),
        };
        if !self.renamed.contains(&r) {
            crate::log::warn(format!("{folder} goes into {target_folder}: {why}"));
            self.renamed.push(r);
        }
    }

    /// Count `n` messages left on the source for `reason`.
    pub fn left(&mut self, reason: &str, n: u64) {
        *self.left.entry(reason.to_string()).or_insert(0) += n;
    }

    /// The messages left on the source, a line per reason, and the delta pass.
    fn left_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .left
            .iter()
            .map(|(why, n)| format!("  left on the source: {n} {why}"))
            .collect();
        let would = if self.dry_run { "would be " } else { "" };
        if self.flags_updated > 0 {
            lines.push(format!(
                "  flags {would}set on the target as changed on the source: {} messages",
                self.flags_updated
            ));
        }
        if self.removed_on_target > 0 {
            lines.push(format!(
                "  {would}removed from the target (gone from the source, --sync-deletes): {} messages",
                self.removed_on_target
            ));
        }
        lines
    }

    /// Note how the source was read (once; not a failure).
    pub fn note(&mut self, what: String) {
        if !self.notes.contains(&what) {
            self.notes.push(what);
        }
    }

    /// Note a disagreement of a server's (also said at once as a warning).
    pub fn anomaly(&mut self, folder: &str, what: impl Into<String>) {
        let key = (folder.to_string(), what.into());
        if !self.anomalies_seen.insert(key.clone()) {
            return;
        }
        if self.anomalies.len() >= MAX_ANOMALIES {
            self.anomalies_more += 1;
            return;
        }
        crate::log::warn(format!("{}: {}", key.0, key.1));
        self.anomalies.push(Anomaly {
            folder: key.0,
            what: key.1,
        });
    }

    /// The summary on stdout: JSON, or the lines of [`Summary::lines`].
    pub fn print(&self, json: bool) {
        if json {
            crate::progress::out(&serde_json::to_string_pretty(self).unwrap_or_default());
            return;
        }
        for line in self.lines() {
            crate::progress::out(&line);
        }
    }

    /// The summary as text, a line each: what a dry run would copy, or what the run
    /// did (totals, failures, what the target and the server did, how it ended).
    fn lines(&self) -> Vec<String> {
        if self.dry_run {
            return self.plan_lines();
        }
        let mut lines = self.totals_lines();
        lines.extend(self.left_lines());
        lines.extend(self.failure_lines());
        lines.extend(self.server_lines());
        lines.extend(self.ending_lines());
        lines
    }

    /// A dry run's lines: each folder's plan, then the total.
    fn plan_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "dry run: {} → {} (nothing written)",
            self.source, self.target
        )];
        for p in &self.planned {
            lines.push(format!(
                "  {:<30} → {:<30} {:>7} messages {:>12} bytes",
                p.folder, p.target_folder, p.messages, p.bytes
            ));
        }
        let (m, b) = self
            .planned
            .iter()
            .fold((0, 0), |(m, b), p| (m + p.messages, b + p.bytes));
        lines.push(format!(
            "  would copy up to {m} messages, {b} bytes (duplicates are found while copying)"
        ));
        lines.extend(self.left_lines());
        lines
    }

    /// The run's counts, bytes, time and rates.
    fn totals_lines(&self) -> Vec<String> {
        vec![
            format!("{} → {}", self.source, self.target),
            format!(
                "  folders: {}  copied: {}  skipped as duplicates: {}  failed: {}",
                self.folders,
                self.copied,
                self.duplicates,
                self.failed.len()
            ),
            format!(
                "  bytes: {}  time: {:.1}s  rate: {:.1} msg/s, {:.2} MB/s",
                self.bytes,
                self.seconds,
                self.messages_per_second,
                self.bytes_per_second / 1e6
            ),
        ]
    }

    /// The messages and folders that failed, and that they are retried.
    fn failure_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for f in &self.failed {
            lines.push(format!(
                "  failed: {} message {}: {}",
                f.folder, f.id, f.reason
            ));
        }
        if !self.failed.is_empty() {
            lines.push("  failed messages are retried on the next run".into());
        }
        for f in &self.failed_folders {
            lines.push(format!(
                "  failed folder: {} → {}: {}",
                f.folder, f.target_folder, f.reason
            ));
        }
        if !self.failed_folders.is_empty() {
            lines.push("  failed folders are retried on the next run".into());
        }
        lines
    }

    /// What the target stored changed, the folders renamed, and the servers'
    /// disagreements.
    fn server_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.changed.is_empty() {
            lines.push(format!(
                "  stored changed by the target: {} (copied; the server altered what it stored)",
                self.changed.len()
            ));
        }
        for c in &self.changed {
            lines.push(format!(
                "  changed: {} message {} → {} UID {}",
                c.folder, c.id, c.target_folder, c.target_uid
            ));
        }
        for r in &self.renamed {
            lines.push(format!(
                "  renamed: {} → {} ({})",
                r.folder, r.target_folder, r.why
            ));
        }
        for a in &self.anomalies {
            lines.push(format!("  server disagreement: {}: {}", a.folder, a.what));
        }
        if self.anomalies_more > 0 {
            lines.push(format!(
                "  … and {} more server disagreements",
                self.anomalies_more
            ));
        }
        if !self.anomalies.is_empty() {
            lines.push(
                "  the server contradicted itself; what it did not deliver is tried again on the next run".into(),
            );
        }
        lines
    }

    /// The notes, the source messages deleted, and how the run ended.
    fn ending_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for n in &self.notes {
            lines.push(format!("  note: {n}"));
        }
        if let Some(n) = self.deleted {
            lines.push(format!(
                "  deleted from the source after the copy was confirmed: {n}"
            ));
        }
        if let Some(s) = &self.stopped {
            lines.push(format!("  stopped: {s}"));
        }
        if let Some(e) = &self.error {
            lines.push(format!("  ended by an error: {e}"));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_a_run_and_of_a_dry_run() {
        let mut s = Summary {
            source: "s".into(),
            target: "t".into(),
            folders: 2,
            copied: 3,
            ..Default::default()
        };
        s.failed.push(Failure {
            folder: "INBOX".into(),
            id: "7".into(),
            reason: "refused".into(),
        });
        s.stopped = Some("Ctrl-C".into());
        assert_eq!(
            s.lines(),
            [
                "s → t",
                "  folders: 2  copied: 3  skipped as duplicates: 0  failed: 1",
                "  bytes: 0  time: 0.0s  rate: 0.0 msg/s, 0.00 MB/s",
                "  failed: INBOX message 7: refused",
                "  failed messages are retried on the next run",
                "  stopped: Ctrl-C",
            ]
        );
        s.dry_run = true;
        s.planned.push(Planned {
            folder: "INBOX".into(),
            target_folder: "INBOX".into(),
            messages: 4,
            bytes: 100,
        });
        let lines = s.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], "dry run: s → t (nothing written)");
        assert_eq!(
            lines[2],
            "  would copy up to 4 messages, 100 bytes (duplicates are found while copying)"
        );
    }
}
