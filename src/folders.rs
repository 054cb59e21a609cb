//! Folder mapping: source folder names → target folder names. Pure functions.
//!
//! Names are handled decoded (UTF-8) and split into path components by each side's
//! hierarchy delimiter; the user sees and writes them with `/` as the separator
//! (`--folder-map`, `--include`, `--exclude`). Rules, in order:
//! 1. the source's personal namespace prefix is removed and the target's is added;
//! 2. `--folder-map SRC=DST` (longest matching prefix of components wins, so the
//!    children of a mapped folder follow it);
//! 3. INBOX stays INBOX; a special-use folder (RFC 6154 `\Sent \Drafts \Trash \Junk
//!    \Archive`, or a well-known name when the source has no attributes) goes to the
//!    target's folder with the same attribute, else to a well-known name there, else
//!    to the standard name; its children follow it;
//! 4. a component that contains the target's delimiter gets that character replaced
//!    by `_` (it would otherwise split into two levels), and so does a control
//!    character (CR, LF, NUL, ESC…: no server takes them in a name, and a name a
//!    server chose must not carry them on).

use std::collections::HashMap;

/// A folder as the mapping sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Path components, decoded.
    pub path: Vec<String>,
    /// Special-use role (`\Sent`, …), if any.
    pub role: Option<String>,
}

impl Folder {
    pub fn display(&self) -> String {
        self.path.join("/")
    }
}

pub const ROLES: &[&str] = &["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"];

/// Names that mean a role when a server gives no special-use attributes.
fn role_by_name(name: &str) -> Option<&'static str> {
    let n = name.to_lowercase();
    Some(match n.as_str() {
        "sent" | "sent items" | "sent messages" | "sent mail" | "envoyés" | "gesendet" => "\\Sent",
        "drafts" | "draft" | "brouillons" | "entwürfe" => "\\Drafts",
        "trash" | "deleted items" | "deleted messages" | "corbeille" | "papierkorb" => "\\Trash",
        "junk" | "spam" | "junk e-mail" | "junk email" | "bulk mail" => "\\Junk",
        "archive" | "archives" => "\\Archive",
        _ => return None,
    })
}

pub fn standard_name(role: &str) -> &'static str {
    match role {
        "\\Sent" => "Sent",
        "\\Drafts" => "Drafts",
        "\\Trash" => "Trash",
        "\\Junk" => "Spam",
        _ => "Archive",
    }
}

/// The special-use role of a folder from its LIST attributes, else from its name
/// when it is a top-level folder.
pub fn role_of(attrs: &[String], path: &[String]) -> Option<String> {
    for a in attrs {
        if let Some(r) = ROLES.iter().find(|r| r.eq_ignore_ascii_case(a)) {
            return Some(r.to_string());
        }
    }
    if path.len() == 1 {
        return role_by_name(&path[0]).map(str::to_string);
    }
    None
}

/// Split a decoded name into components, dropping the namespace prefix.
pub fn split(name: &str, delim: Option<char>, prefix: &str) -> Vec<String> {
    let name = if !prefix.is_empty() && name.len() > prefix.len() && name.starts_with(prefix) {
        &name[prefix.len()..]
    } else {
        name
    };
    match delim {
        Some(d) => name.split(d).map(str::to_string).collect(),
        None => vec![name.to_string()],
    }
}

/// What the target looks like.
#[derive(Debug, Clone, Default)]
pub struct TargetLayout {
    pub delim: Option<char>,
    pub prefix: String,
    /// Existing target folders (decoded paths) by special-use role.
    pub roles: HashMap<String, Vec<String>>,
    /// Existing target folders, decoded paths.
    pub existing: Vec<Vec<String>>,
}

/// User adjustments.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `--folder-map SRC=DST`, both in `/` notation.
    pub map: Vec<(Vec<String>, Vec<String>)>,
}

pub fn parse_map(text: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let (s, d) = text
        .split_once('=')
        .ok_or_else(|| format!("--folder-map {text:?} needs the form SOURCE=TARGET"))?;
    let split =
        |x: &str| -> Vec<String> { x.trim_matches('/').split('/').map(str::to_string).collect() };
    if s.trim().is_empty() || d.trim().is_empty() {
        return Err(format!(
            "--folder-map {text:?}: both sides must name a folder"
        ));
    }
    Ok((split(s), split(d)))
}

fn is_inbox(path: &[String]) -> bool {
    path.len() == 1 && path[0].eq_ignore_ascii_case("INBOX")
}

/// The target path (components) for a source folder.
pub fn map_folder(
    src: &Folder,
    rules: &Rules,
    target: &TargetLayout,
    source_roles: &HashMap<Vec<String>, String>,
) -> Vec<String> {
    // 2. explicit map, longest prefix first.
    if let Some(out) = apply_map(&src.path, rules) {
        return out;
    }
    // 3. INBOX, then roles (a folder under a role folder follows it).
    if is_inbox(&src.path) {
        return vec!["INBOX".into()];
    }
    for cut in (1..=src.path.len()).rev() {
        if let Some(role) = source_roles.get(&src.path[..cut].to_vec()) {
            let mut out = target_for_role(role, target);
            out.extend_from_slice(&src.path[cut..]);
            return out;
        }
    }
    src.path.clone()
}

/// `--folder-map` alone: the mapped path when a rule matches (the longest `SRC`
/// that is the folder or one of its parents wins).
pub fn apply_map(path: &[String], rules: &Rules) -> Option<Vec<String>> {
    let (from, to) = rules
        .map
        .iter()
        .filter(|(from, _)| path.len() >= from.len() && path[..from.len()] == from[..])
        .max_by_key(|(from, _)| from.len())?;
    let mut out = to.clone();
    out.extend_from_slice(&path[from.len()..]);
    Some(out)
}

/// The target folder for a special-use role.
pub fn target_for_role(role: &str, target: &TargetLayout) -> Vec<String> {
    if let Some(p) = target.roles.get(role) {
        return p.clone();
    }
    if let Some(p) = target
        .existing
        .iter()
        .find(|p| p.len() == 1 && role_by_name(&p[0]) == Some(role))
    {
        return p.clone();
    }
    vec![standard_name(role).to_string()]
}

/// Join target components into the decoded target name (rule 1 and 4).
pub fn join_target(path: &[String], target: &TargetLayout) -> String {
    if is_inbox(path) {
        return "INBOX".into();
    }
    // On a target whose personal namespace is "INBOX.", a child of INBOX is the
    // same folder as the top-level one: do not nest it twice.
    let bare_prefix = target.prefix.trim_end_matches(|c| Some(c) == target.delim);
    let path =
        if path.len() > 1 && !bare_prefix.is_empty() && path[0].eq_ignore_ascii_case(bare_prefix) {
            &path[1..]
        } else {
            path
        };
    let parts: Vec<String> = path
        .iter()
        .map(|c| c.replace(|ch: char| ch.is_control() || Some(ch) == target.delim, "_"))
        .collect();
    let joined = match target.delim {
        Some(d) => parts.join(&d.to_string()),
        None => parts.join("_"),
    };
    format!("{}{}", target.prefix, joined)
}

/// A glob over `/`-notation folder names: `*` matches within one level, `**` across.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => (0..=n.len()).any(|i| go(&p[2..], &n[i..])),
            Some(b'*') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != b'/')
                .any(|i| go(&p[1..], &n[i..])),
            Some(b'?') => !n.is_empty() && n[0] != b'/' && go(&p[1..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Whether a folder is selected by `--include`/`--exclude` (a folder also matches a
/// pattern that matches one of its parents, so `--exclude Archive` drops its children).
pub fn selected(name: &str, include: &[String], exclude: &[String]) -> bool {
    let matches_any = |pats: &[String]| {
        let comps: Vec<&str> = name.split('/').collect();
        (1..=comps.len()).any(|k| {
            let prefix = comps[..k].join("/");
            pats.iter().any(|p| glob_matches(p, &prefix))
        })
    };
    (include.is_empty() || matches_any(include)) && !matches_any(exclude)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('/').map(str::to_string).collect()
    }

    fn layout() -> TargetLayout {
        let mut roles = HashMap::new();
        roles.insert("\\Sent".into(), p("Sent"));
        roles.insert("\\Trash".into(), p("Trash"));
        TargetLayout {
            delim: Some('.'),
            prefix: "INBOX.".into(),
            roles,
            existing: vec![p("Sent"), p("Trash"), p("Junk")],
        }
    }

    #[test]
    fn mapping_table() {
        let mut src_roles = HashMap::new();
        src_roles.insert(p("Sent Messages"), "\\Sent".to_string());
        src_roles.insert(p("Deleted Items"), "\\Trash".to_string());
        src_roles.insert(p("Spam"), "\\Junk".to_string());
        src_roles.insert(p("Old Drafts"), "\\Drafts".to_string());
        let rules = Rules {
            map: vec![
                (p("Customers"), p("Clients")),
                (p("Customers/Old"), p("Archive/Customers")),
            ],
        };
        let t = layout();
        for (src, want) in [
            ("INBOX", "INBOX"),
            ("Sent Messages", "INBOX.Sent"),
            ("Sent Messages/2019", "INBOX.Sent.2019"),
            ("Deleted Items", "INBOX.Trash"),
            ("Spam", "INBOX.Junk"),
            ("Old Drafts", "INBOX.Drafts"),
            ("Customers/Acme", "INBOX.Clients.Acme"),
            ("Customers/Old/X", "INBOX.Archive.Customers.X"),
            ("Projects/2024/Q1", "INBOX.Projects.2024.Q1"),
            ("a.b/c", "INBOX.a_b.c"),
            ("Données/Été 2024", "INBOX.Données.Été 2024"),
            ("INBOX/Sub", "INBOX.Sub"),
        ] {
            let f = Folder {
                path: p(src),
                role: None,
            };
            let got = join_target(&map_folder(&f, &rules, &t, &src_roles), &t);
            assert_eq!(got, want, "{src}");
        }
    }

    #[test]
    fn roles_from_attributes_and_names() {
        assert_eq!(
            role_of(
                &["\\HasNoChildren".into(), "\\Sent".into()],
                &p("Gesendete")
            ),
            Some("\\Sent".into())
        );
        assert_eq!(role_of(&[], &p("Deleted Items")), Some("\\Trash".into()));
        assert_eq!(role_of(&[], &p("Projects/Sent")), None);
        assert_eq!(role_of(&[], &p("Projects")), None);
    }

    #[test]
    fn split_with_prefix_and_delimiters() {
        assert_eq!(
            split("INBOX.Sent.2019", Some('.'), "INBOX."),
            p("Sent/2019")
        );
        assert_eq!(split("INBOX", Some('.'), "INBOX."), p("INBOX"));
        assert_eq!(split("a/b", Some('/'), ""), p("a/b"));
        assert_eq!(split("flat", None, ""), p("flat"));
    }

    #[test]
    fn globs() {
        for (pat, name, want) in [
            ("Projects", "Projects", true),
            ("Proj*", "Projects", true),
            ("Proj*", "Projects/2024", false),
            ("Projects/**", "Projects/2024/Q1", true),
            ("*/Q?", "2024/Q1", true),
            ("INBOX", "INBOX2", false),
        ] {
            assert_eq!(glob_matches(pat, name), want, "{pat} {name}");
        }
        assert!(!selected("Archive/2019", &[], &["Archive".into()]));
        assert!(selected("Projects/2024", &["Projects".into()], &[]));
        assert!(!selected("Trash", &["Projects".into()], &[]));
        assert!(selected("INBOX", &[], &["Trash".into()]));
    }

    #[test]
    fn folder_map_parsing() {
        assert_eq!(parse_map("A/B=C").unwrap(), (p("A/B"), p("C")));
        assert!(parse_map("nope").is_err());
        assert!(parse_map("=x").is_err());
    }
}

/// A target name in plain characters: in each level (split by `delim`), every
/// character but letters, digits, space, `-` and `_` becomes `_`. Tried when a
/// target refuses a name (Dovecot's Maildir++ takes no `.` even with `/` as its
/// delimiter, `v1.2`; other servers refuse other characters), so that the folder
/// still arrives, under a name that stays the same from run to run.
pub fn plain_name(name: &str, delim: Option<char>) -> String {
    let plain = |level: &str| -> String {
        level
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == ' ' || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    match delim {
        Some(d) => name
            .split(d)
            .map(plain)
            .collect::<Vec<_>>()
            .join(&d.to_string()),
        None => plain(name),
    }
}

#[cfg(test)]
mod plain_tests {
    #[test]
    fn plain_names_keep_levels_and_letters() {
        for (name, delim, want) in [
            ("v1.2", Some('/'), "v1_2"),
            ("Archive/2019.01", Some('/'), "Archive/2019_01"),
            ("INBOX.a+b", Some('.'), "INBOX.a_b"),
            ("Café Crème", None, "Café Crème"),
            ("x:y*z", Some('/'), "x_y_z"),
            ("plain", Some('/'), "plain"),
        ] {
            assert_eq!(super::plain_name(name, delim), want, "{name}");
        }
    }
}
