//! The only code that knows about terminals. On a terminal (and without `-v`): one
//! bar per copy (messages, bytes, rate, ETA) on stderr, and in a batch one overall bar
//! plus one line per running account. Elsewhere nothing is drawn; a batch prints
//! plain periodic lines instead. Log lines go through [`eprintln`] so they never tear
//! the bars.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Single-copy bar, or the batch's MultiProgress: what log lines must suspend.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);
static MULTI: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Totals over every copy of the process (for the batch's overall line).
pub static MESSAGES: AtomicU64 = AtomicU64::new(0);
pub static BYTES: AtomicU64 = AtomicU64::new(0);

pub fn visible() -> bool {
    std::io::stderr().is_terminal() && crate::log::level() == 0
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Start the bar of one copy (`label` names the account in a batch).
pub fn start(label: &str, messages: u64, bytes: u64) -> Progress {
    let multi = MULTI.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let bar = match &multi {
        Some(m) => {
            let b = m.add(ProgressBar::new(bytes));
            b.set_style(style(
                "  {prefix:30!} {bar:20} {msg} {bytes}/{total_bytes} {bytes_per_sec}",
            ));
            b.set_prefix(label.to_string());
            b
        }
        None => {
            let b = ProgressBar::with_draw_target(
                Some(bytes),
                if visible() {
                    ProgressDrawTarget::stderr()
                } else {
                    ProgressDrawTarget::hidden()
                },
            );
            b.set_style(style(
                "{spinner} [{elapsed_precise}] {wide_bar} {msg} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            ));
            *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(b.clone());
            b
        }
    };
    bar.set_message(format!("0/{messages} msgs"));
    Progress {
        bar,
        in_multi: multi.is_some(),
        messages_total: messages,
        messages_done: AtomicU64::new(0),
    }
}

/// One copy's bar; shared by reference between the connections of one account.
pub struct Progress {
    bar: ProgressBar,
    in_multi: bool,
    messages_total: u64,
    messages_done: AtomicU64,
}

impl Progress {
    pub fn advance(&self, messages: u64, bytes: u64) {
        let done = self.messages_done.fetch_add(messages, Ordering::Relaxed) + messages;
        MESSAGES.fetch_add(messages, Ordering::Relaxed);
        BYTES.fetch_add(bytes, Ordering::Relaxed);
        self.bar.inc(bytes);
        self.bar
            .set_message(format!("{done}/{} msgs", self.messages_total));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        if !self.in_multi {
            *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// The batch's display: an overall bar over accounts; per-account bars join it.
pub struct Batch {
    pub overall: ProgressBar,
}

pub fn start_batch(accounts: u64) -> Batch {
    let multi = MultiProgress::with_draw_target(if visible() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let overall = multi.add(ProgressBar::new(accounts));
    overall.set_style(style(
        "[{elapsed_precise}] accounts {pos}/{len} {wide_bar} {msg} ETA {eta}",
    ));
    *MULTI.lock().unwrap_or_else(|e| e.into_inner()) = Some(multi);
    Batch { overall }
}

impl Batch {
    pub fn account_done(&self) {
        self.overall.inc(1);
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.overall.finish_and_clear();
        *MULTI.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The batch's overall line: "3/20 accounts done, 4 running; 1234 msgs, 56.7 MB,
/// 2.1 MB/s" (messages and bytes so far in this process, the rate over the run).
pub fn batch_line(done: usize, total: usize, running: usize, elapsed: Duration) -> String {
    let bytes = BYTES.load(Ordering::Relaxed) as f64;
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { bytes / secs } else { 0.0 };
    format!(
        "{done}/{total} accounts done, {running} running; {} msgs, {:.1} MB, {:.1} MB/s",
        MESSAGES.load(Ordering::Relaxed),
        bytes / 1e6,
        rate / 1e6
    )
}

/// Print a line on stderr without tearing the bars.
pub fn eprintln(line: &str) {
    let line: &str = &crate::log::printable_line(line);
    if let Some(m) = MULTI.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        m.suspend(|| eprintln!("{line}"));
        return;
    }
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
    let line: &str = &crate::log::printable(line);
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
