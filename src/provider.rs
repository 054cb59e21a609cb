//! Provider presets: what a Gmail or Microsoft 365 source shows over IMAP that is
//! not a plain folder tree, and how a move treats it (`--from-preset
//! gmail|microsoft|none`, detected when not given).
//!
//! - Gmail shows each message once per label folder and again in `[Gmail]/All
//!   Mail` (`\All`); `[Gmail]/Important` (`\Important`) and `[Gmail]/Starred`
//!   (`\Flagged`) are views, not places. A move copies the label folders (and the
//!   system ones by their special use), skips the views (starred messages keep
//!   `\Flagged`), and takes from All Mail only the messages no other copied folder
//!   holds (archived mail), into the target's Archive.
//! - Microsoft 365 lists Calendar, Contacts, Tasks, Notes, Journal, Sync Issues,
//!   Conversation History and other non-mail folders: copied they would be empty
//!   mail folders at the target, so they are skipped and listed in the summary.
//!
//! Pure functions of what the server announced, table-tested below.

/// How a source is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Preset {
    /// Decided from the server (Gmail's `X-GM-EXT-1`, Microsoft's greeting or folder set).
    #[default]
    Auto,
    Gmail,
    Microsoft,
    /// A plain folder tree.
    None,
}

/// What becomes of one source folder under a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    Copy,
    /// Left out, for this reason (said in the summary).
    Skip(&'static str),
    /// Gmail's All Mail: only the messages no other copied folder holds, into the
    /// target's Archive.
    Unlabelled,
}

/// The preset of a source: `chosen` unless it is `Auto`; then Gmail when the server
/// announces `X-GM-EXT-1`, Microsoft when its greeting names Microsoft Exchange or
/// Outlook, or when its top-level folders include at least three of Microsoft's
/// non-mail folders; else none.
pub fn detect(chosen: Preset, caps: &[String], greeting: &str, top_folders: &[String]) -> Preset {
    if chosen != Preset::Auto {
        return chosen;
    }
    if caps.iter().any(|c| c.eq_ignore_ascii_case("X-GM-EXT-1")) {
        return Preset::Gmail;
    }
    let g = greeting.to_ascii_lowercase();
    if g.contains("microsoft exchange") || g.contains("outlook") || g.contains("office365") {
        return Preset::Microsoft;
    }
    let non_mail = top_folders
        .iter()
        .filter(|f| MICROSOFT_NON_MAIL.iter().any(|n| n.eq_ignore_ascii_case(f)))
        .count();
    if non_mail >= 3 {
        Preset::Microsoft
    } else {
        Preset::None
    }
}

/// Microsoft's top-level folders that hold no mail (English, German and French
/// names; other languages: `--exclude`).
const MICROSOFT_NON_MAIL: &[&str] = &[
    "Calendar",
    "Contacts",
    "Tasks",
    "Notes",
    "Journal",
    "Sync Issues",
    "Conversation History",
    "Conversation Action Settings",
    "Quick Step Settings",
    "RSS Feeds",
    "RSS Subscriptions",
    "Social Activity Notifications",
    "Yammer Root",
    "Files",
    "ExternalContacts",
    "PersonMetadata",
    "Recipient Cache",
    "Kalender",
    "Kontakte",
    "Aufgaben",
    "Notizen",
    "Synchronisierungsprobleme",
    "Unterhaltungsverlauf",
    "Calendrier",
    "Tâches",
    "Problèmes de synchronisation",
    "Historique des conversations",
];

/// What becomes of the folder at `path` (components, namespace prefix removed)
/// with LIST attributes `attrs` under `preset`.
pub fn treat(preset: Preset, path: &[String], attrs: &[String]) -> Treatment {
    let has = |a: &str| attrs.iter().any(|x| x.eq_ignore_ascii_case(a));
    match preset {
        Preset::Gmail => {
            if has("\\All") {
                Treatment::Unlabelled
            } else if has("\\Important") {
                Treatment::Skip("Gmail's Important is a view of messages kept in other folders")
            } else if has("\\Flagged") {
                Treatment::Skip(
                    "Gmail's Starred is a view: its messages are copied with \\Flagged in their folders",
                )
            } else {
                Treatment::Copy
            }
        }
        Preset::Microsoft => {
            let top = path.first().map(String::as_str).unwrap_or("");
            if MICROSOFT_NON_MAIL
                .iter()
                .any(|n| n.eq_ignore_ascii_case(top))
            {
                Treatment::Skip(
                    "a Microsoft 365 folder that holds no mail (calendar, contacts, tasks, notes…)",
                )
            } else {
                Treatment::Copy
            }
        }
        Preset::Auto | Preset::None => Treatment::Copy,
    }
}

/// `--gmail-labels`: Gmail's labels as folders (a message once in each), or as
/// keywords (each message once: in its place, else in Archive, with its labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GmailLabels {
    #[default]
    Folders,
    Keyword,
}

/// `--gmail-labels keyword`: a Gmail folder `treat` would copy is left out when it
/// is a label of the user's (not INBOX, and none of the places Sent, Drafts,
/// Spam, Trash): its messages come from where they are, carrying it as a keyword.
pub fn treat_labels_as_keywords(path: &[String], attrs: &[String], base: Treatment) -> Treatment {
    let place = ["\\Sent", "\\Drafts", "\\Junk", "\\Trash"]
        .iter()
        .any(|p| attrs.iter().any(|a| a.eq_ignore_ascii_case(p)));
    let inbox = path.len() == 1 && path[0].eq_ignore_ascii_case("INBOX");
    match base {
        Treatment::Copy if !place && !inbox => Treatment::Skip(
            "a Gmail label: its messages carry it as a keyword (--gmail-labels keyword)",
        ),
        other => other,
    }
}

/// `--gmail-labels keyword`: a message's user labels as IMAP keywords (system
/// labels, `\Inbox` …, are places or flags, not keywords). A label's characters
/// that a keyword cannot hold (space, `( ) { % * " \ ]`, controls) become `_`;
/// non-ASCII labels come as Gmail sends them (modified UTF-7, ASCII).
pub fn label_keywords(labels: &[String]) -> Vec<String> {
    let mut out: Vec<String> = labels
        .iter()
        .map(|l| l.trim_matches('"'))
        .filter(|l| !l.is_empty() && !l.starts_with('\\'))
        .map(|l| {
            l.chars()
                .map(|c| match c {
                    c if !c.is_ascii() || c.is_ascii_control() => '_',
                    ' ' | '(' | ')' | '{' | '%' | '*' | '"' | '\\' | ']' => '_',
                    c => c,
                })
                .collect()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Gmail: the label whose messages a copied folder holds: INBOX `\Inbox`, the
/// special-use folders their system label (`\Sent`, `\Draft`, `\Spam`,
/// `\Trash`), any other folder its own name (as LIST sent it); none for the views
/// and All Mail. As a key for [`labelled_elsewhere`].
pub fn label_of(raw_name: &str, attrs: &[String]) -> Option<String> {
    let has = |a: &str| attrs.iter().any(|x| x.eq_ignore_ascii_case(a));
    let system = if raw_name.eq_ignore_ascii_case("INBOX") {
        "\\Inbox"
    } else if has("\\Sent") {
        "\\Sent"
    } else if has("\\Drafts") {
        "\\Draft"
    } else if has("\\Junk") {
        "\\Spam"
    } else if has("\\Trash") {
        "\\Trash"
    } else if has("\\All") || has("\\Important") || has("\\Flagged") {
        return None;
    } else {
        return Some(raw_name.to_string());
    };
    Some(label_key(system))
}

/// System labels are compared without case, user labels as they are.
fn label_key(label: &str) -> String {
    let l = label.trim_matches('"');
    if l.starts_with('\\') {
        l.to_ascii_lowercase()
    } else {
        l.to_string()
    }
}

/// Gmail: whether a message of All Mail with labels `labels` (X-GM-LABELS, as the
/// server sent them) is copied through another folder: one of its labels names a
/// folder of `copied` ([`label_of`] of each folder copied). A label hidden from
/// IMAP, or left out of the copy, does not count: its message is copied from All
/// Mail, never lost between the two. The views (`\Important`, `\Starred`) never
/// count.
pub fn labelled_elsewhere(labels: &[String], copied: &std::collections::HashSet<String>) -> bool {
    labels.iter().any(|l| copied.contains(&label_key(l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn presets_are_detected_from_what_the_server_announces() {
        let ms_folders = v(&["INBOX", "Calendar", "Contacts", "Tasks", "Sent Items"]);
        for (chosen, caps, greeting, folders, want) in [
            (
                Preset::Auto,
                v(&["IMAP4rev1", "X-GM-EXT-1"]),
                "Gimap ready",
                v(&["INBOX"]),
                Preset::Gmail,
            ),
            (
                Preset::Auto,
                v(&["IMAP4rev1"]),
                "The Microsoft Exchange IMAP4 service is ready.",
                v(&[]),
                Preset::Microsoft,
            ),
            (
                Preset::Auto,
                v(&["IMAP4rev1"]),
                "ready",
                ms_folders.clone(),
                Preset::Microsoft,
            ),
            (
                Preset::Auto,
                v(&["IMAP4rev1"]),
                "ready",
                v(&["INBOX", "Calendar"]),
                Preset::None,
            ),
            (Preset::None, v(&["X-GM-EXT-1"]), "", v(&[]), Preset::None),
            (Preset::Microsoft, v(&[]), "", v(&[]), Preset::Microsoft),
            (
                Preset::Auto,
                v(&["IMAP4rev1"]),
                "Dovecot ready.",
                v(&["INBOX", "Sent"]),
                Preset::None,
            ),
        ] {
            assert_eq!(
                detect(chosen, &caps, greeting, &folders),
                want,
                "{greeting} {folders:?}"
            );
        }
    }

    #[test]
    fn labels_as_keywords_keep_places_and_turn_labels_into_atoms() {
        use Treatment::*;
        let skip = |t: Treatment| matches!(t, Skip(_));
        // (path, attrs) → left out under keyword mode
        let table = [
            (v(&["INBOX"]), v(&[]), false),
            (v(&["[Gmail]", "Sent Mail"]), v(&["\\Sent"]), false),
            (v(&["[Gmail]", "Spam"]), v(&["\\Junk"]), false),
            (v(&["[Gmail]", "Trash"]), v(&["\\Trash"]), false),
            (v(&["[Gmail]", "Drafts"]), v(&["\\Drafts"]), false),
            (v(&["Receipts"]), v(&[]), true),
            (v(&["Work", "Projects"]), v(&[]), true),
        ];
        for (path, attrs, left) in table {
            assert_eq!(
                skip(treat_labels_as_keywords(&path, &attrs, Copy)),
                left,
                "{path:?}"
            );
        }
        assert_eq!(
            treat_labels_as_keywords(&v(&["X"]), &[], Unlabelled),
            Unlabelled
        );
        assert_eq!(
            label_keywords(&v(&[
                "\\Inbox",
                "\"My Label\"",
                "Work/Projects",
                "a]b",
                "Work/Projects",
                "caf&AOk-"
            ])),
            v(&["My_Label", "Work/Projects", "a_b", "caf&AOk-"])
        );
    }

    #[test]
    fn each_folder_is_copied_skipped_or_filtered() {
        use Treatment::*;
        for (preset, path, attrs, want) in [
            (
                Preset::Gmail,
                v(&["[Gmail]", "All Mail"]),
                v(&["\\All", "\\HasNoChildren"]),
                Unlabelled,
            ),
            (
                Preset::Gmail,
                v(&["[Gmail]", "Important"]),
                v(&["\\Important"]),
                Skip(""),
            ),
            (
                Preset::Gmail,
                v(&["[Gmail]", "Starred"]),
                v(&["\\Flagged"]),
                Skip(""),
            ),
            (
                Preset::Gmail,
                v(&["[Gmail]", "Sent Mail"]),
                v(&["\\Sent"]),
                Copy,
            ),
            (Preset::Gmail, v(&["Receipts"]), v(&[]), Copy),
            (Preset::Microsoft, v(&["Calendar"]), v(&[]), Skip("")),
            (
                Preset::Microsoft,
                v(&["Calendar", "Birthdays"]),
                v(&[]),
                Skip(""),
            ),
            (
                Preset::Microsoft,
                v(&["Sync Issues", "Conflicts"]),
                v(&[]),
                Skip(""),
            ),
            (Preset::Microsoft, v(&["kalender"]), v(&[]), Skip("")),
            (
                Preset::Microsoft,
                v(&["Projects", "Calendar"]),
                v(&[]),
                Copy,
            ),
            (Preset::Microsoft, v(&["Junk Email"]), v(&["\\Junk"]), Copy),
            (Preset::None, v(&["Calendar"]), v(&[]), Copy),
            (
                Preset::None,
                v(&["[Gmail]", "All Mail"]),
                v(&["\\All"]),
                Copy,
            ),
        ] {
            let got = treat(preset, &path, &attrs);
            match (got, want) {
                (Skip(why), Skip(_)) => assert!(!why.is_empty()),
                (g, w) => assert_eq!(g, w, "{preset:?} {path:?}"),
            }
        }
    }

    #[test]
    fn all_mail_keeps_only_what_a_copied_folder_holds() {
        let attrs = |a: &[&str]| v(a);
        let copied: std::collections::HashSet<String> = [
            ("INBOX", attrs(&[])),
            ("[Gmail]/Sent Mail", attrs(&["\\Sent"])),
            ("[Gmail]/All Mail", attrs(&["\\All"])),
            ("[Gmail]/Important", attrs(&["\\Important"])),
            ("Receipts", attrs(&[])),
            ("Work/2024", attrs(&["\\HasNoChildren"])),
        ]
        .iter()
        .filter_map(|(name, a)| label_of(name, a))
        .collect();
        for (labels, elsewhere) in [
            (v(&[]), false),
            (v(&["\\Important"]), false),
            (v(&["\\Important", "\\Starred"]), false),
            (v(&["\\Inbox"]), true),
            (v(&["\\INBOX"]), true),
            (v(&["\\Sent", "\\Important"]), true),
            (v(&["Receipts"]), true),
            (v(&["\"Work/2024\""]), true),
            // Drafts, Spam, Trash and the label Hidden are not copied here.
            (v(&["\\Draft"]), false),
            (v(&["\\Spam", "Hidden"]), false),
            (v(&["receipts"]), false),
        ] {
            assert_eq!(
                labelled_elsewhere(&labels, &copied),
                elsewhere,
                "{labels:?}"
            );
        }
    }
}
