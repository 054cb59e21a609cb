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

/// A warning: always shown.
pub fn warn(msg: impl AsRef<str>) {
    crate::progress::eprintln(&format!("warning: {}", msg.as_ref()));
}
