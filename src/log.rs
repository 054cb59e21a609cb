//! Verbosity-gated diagnostics on stderr. `-v` shows what is done per folder, `-vv`
//! adds the protocol trace. Nothing here ever receives a secret: the protocol code
//! masks credentials before it calls [`trace`].

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(0);

pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

pub fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

/// A line for `-v`.
pub fn info(msg: impl AsRef<str>) {
    if level() >= 1 {
        crate::progress::eprintln(msg.as_ref());
    }
}

/// A protocol line for `-vv`; `who` names the connection.
pub fn trace(who: &str, dir: &str, line: &[u8]) {
    if level() >= 2 {
        let mut text = String::from_utf8_lossy(line).into_owned();
        while text.ends_with(['\r', '\n']) {
            text.pop();
        }
        if text.len() > 300 {
            let mut cut = 300;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text = format!("{}… ({} bytes)", &text[..cut], line.len());
        }
        crate::progress::eprintln(&format!("{who} {dir} {text}"));
    }
}

/// Text for a terminal: control characters (ESC and the rest of C0 but line feed
/// and tab, DEL, C1) are shown escaped (`\u{1b}`), so what a server said can never
/// move the cursor, recolour or retitle the user's terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, false)
}

/// As [`printable`] for a line of its own (a warning, an error): line feeds are
/// escaped too, so a server's text cannot fake a line of mailferry's.
pub fn printable_line(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, true)
}

/// Unicode format characters that reorder or hide text (bidi overrides and
/// isolates, zero-width ones, the BOM).
fn format_char(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn escaped(text: &str, lines: bool) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        (c.is_control() && c != '\t' && (lines || c != '\n')) || c == '\u{7f}' || format_char(c)
    };
    if !text.chars().any(bad) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A warning: always shown.
pub fn warn(msg: impl AsRef<str>) {
    crate::progress::eprintln(&format!("warning: {}", msg.as_ref()));
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        for (text, want) in [
            ("plain words", "plain words"),
            (
                "red \u{1b}[31malert\u{1b}[0m",
                "red \\u{1b}[31malert\\u{1b}[0m",
            ),
            ("bell\u{7}\r", "bell\\u{7}\\u{d}"),
            ("c1 \u{9b}2J", "c1 \\u{9b}2J"),
            ("del\u{7f}", "del\\u{7f}"),
            ("two\nlines\ttab", "two\nlines\ttab"),
            ("rtl \u{202e}fdp.exe", "rtl \\u{202e}fdp.exe"),
            ("ünïcode ✓", "ünïcode ✓"),
        ] {
            assert_eq!(super::printable(text), want, "{text:?}");
        }
    }
}
