//! Runs of the real binary: flag by flag ([`Run`]), bounded in time and memory.

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::*;

/// A run's `--json` summary on stdout, or a panic showing what it printed.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// Run the real binary.
pub fn mailferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .args(args)
        .env_remove("MAILFERRY_FROM_PASSWORD")
        .env_remove("MAILFERRY_TO_PASSWORD")
        .output()
        .expect("run mailferry")
}

/// One run of the real binary, spelled out flag by flag: each method adds the flag
/// it is named after (`.from(url)` adds `--from URL`, `.state(path)` adds
/// `--state PATH`), so a test still reads as the command line it passes. Only
/// `passwords` and `ca` take a [`Dovecot`] and add its files.
#[derive(Clone, Debug)]
pub struct Run {
    argv: Vec<String>,
}

// The methods are named after the flags they add (`--from-password-file`,
// `--to-password-file`), not after conversions.
#[allow(clippy::wrong_self_convention)]
impl Run {
    /// `mailferry COMMAND`.
    pub fn new(command: &str) -> Run {
        Run {
            argv: vec![command.to_string()],
        }
    }

    /// `migrate` from one account of `d` to another over IMAPS, with `d`'s password
    /// and CA files.
    pub fn migrate_within(d: &Dovecot, from_user: &str, to_user: &str) -> Run {
        Run::new("migrate")
            .from(d.imaps_url(from_user))
            .to(d.imaps_url(to_user))
            .passwords(d)
            .ca(d)
    }

    /// `migrate` from `from_user` on `src` to `to_user` on `dst` over IMAPS, each side
    /// with its own password file (the test certificate is shared by every Dovecot).
    pub fn migrate_between(src: &Dovecot, from_user: &str, dst: &Dovecot, to_user: &str) -> Run {
        Run::new("migrate")
            .from(src.imaps_url(from_user))
            .to(dst.imaps_url(to_user))
            .from_password_file(src.pwfile())
            .to_password_file(dst.pwfile())
            .ca(src)
    }

    /// `restore --from FROM` into `user`'s account on `d` over IMAPS, with `d`'s
    /// password and CA files.
    pub fn restore_into(d: &Dovecot, from: impl AsRef<OsStr>, user: &str) -> Run {
        Run::new("restore")
            .from(from)
            .to(d.imaps_url(user))
            .to_password_file(d.pwfile())
            .ca(d)
    }

    /// One argument as it is: a flag, a positional argument or a value.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        let arg = arg.as_ref();
        let arg = arg
            .to_str()
            .unwrap_or_else(|| panic!("argument is not UTF-8: {arg:?}"));
        self.argv.push(arg.to_string());
        self
    }

    /// Several arguments as they are.
    pub fn args<A: AsRef<OsStr>>(self, args: impl IntoIterator<Item = A>) -> Run {
        args.into_iter().fold(self, Run::arg)
    }

    /// `FLAG VALUE`.
    pub fn opt(self, flag: &str, value: impl AsRef<OsStr>) -> Run {
        self.arg(flag).arg(value)
    }

    /// `--from SOURCE`: a URL, or the mbox file or directory `restore` reads.
    pub fn from(self, source: impl AsRef<OsStr>) -> Run {
        self.opt("--from", source)
    }

    /// `--to URL`.
    pub fn to(self, target: impl AsRef<OsStr>) -> Run {
        self.opt("--to", target)
    }

    /// `--from-password-file FILE`.
    pub fn from_password_file(self, file: impl AsRef<OsStr>) -> Run {
        self.opt("--from-password-file", file)
    }

    /// `--to-password-file FILE`.
    pub fn to_password_file(self, file: impl AsRef<OsStr>) -> Run {
        self.opt("--to-password-file", file)
    }

    /// `--from-password-file` and `--to-password-file`, both `d.pwfile()`.
    pub fn passwords(self, d: &Dovecot) -> Run {
        self.from_password_file(d.pwfile())
            .to_password_file(d.pwfile())
    }

    /// `--ca-file PEM`.
    pub fn ca_file(self, pem: impl AsRef<OsStr>) -> Run {
        self.opt("--ca-file", pem)
    }

    /// `--ca-file d.ca()`.
    pub fn ca(self, d: &Dovecot) -> Run {
        self.ca_file(d.ca())
    }

    /// `--state PATH`.
    pub fn state(self, path: impl AsRef<OsStr>) -> Run {
        self.opt("--state", path)
    }

    /// The arguments after the program name.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Run it through [`mailferry`] (no password in the environment) and wait.
    pub fn run(&self) -> Output {
        mailferry(&self.argv.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The binary with these arguments and nothing else set, for a test that adds
    /// environment variables or output pipes, or spawns it.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailferry"));
        c.args(&self.argv);
        c
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// How a bounded run ended.
pub struct Bounded {
    pub out: Output,
    pub secs: f64,
    /// Peak resident memory (VmHWM), MB.
    pub peak_mb: u64,
    /// Whether it had to be killed at the limit.
    pub killed: bool,
}

/// Run mailferry, sampling its peak memory, killed after `limit` (so a test of a
/// hang or a runaway fails instead of hanging or eating the machine; also killed
/// past 2 GB of memory).
pub fn run_bounded(cmd: Command, limit: Duration) -> Bounded {
    run_bounded_mem(cmd, limit, 2048)
}

/// As [`run_bounded`], killed past `max_mb` of resident memory instead.
pub fn run_bounded_mem(mut cmd: Command, limit: Duration, max_mb: u64) -> Bounded {
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let (mut peak_kb, mut killed) = (0u64, false);
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit || peak_kb / 1024 > max_mb {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Bounded {
        out,
        secs: started.elapsed().as_secs_f64(),
        peak_mb: peak_kb / 1024,
        killed,
    }
}
