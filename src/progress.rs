//! The only code that knows about terminals. A bar (messages, bytes, rate, ETA) on
//! stderr when stderr is a terminal and no `-v` log is running; nothing otherwise.
//! Log lines go through [`eprintln`] so they never tear the bar.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Start the bar for `bytes` to copy in `messages` messages.
pub fn start(messages: u64, bytes: u64) -> Progress {
    let visible = std::io::stderr().is_terminal() && crate::log::level() == 0;
    let bar = ProgressBar::with_draw_target(
        Some(bytes),
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {msg} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let p = Progress {
        bar: bar.clone(),
        messages_total: messages,
        messages_done: 0,
    };
    p.bar.set_message(format!("0/{messages} msgs"));
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    p
}

pub struct Progress {
    bar: ProgressBar,
    messages_total: u64,
    messages_done: u64,
}

impl Progress {
    pub fn advance(&mut self, messages: u64, bytes: u64) {
        self.messages_done += messages;
        self.bar.inc(bytes);
        self.bar.set_message(format!(
            "{}/{} msgs",
            self.messages_done, self.messages_total
        ));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Print a line on stderr without tearing the bar.
pub fn eprintln(line: &str) {
    let guard = BAR.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// Print a line on stdout; a closed pipe (`| head`) is not an error, so write
/// failures are ignored rather than turned into a panic.
pub fn out(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
