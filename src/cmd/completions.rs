//! `completions` and `man`: shell completion scripts and man pages, generated from the
//! one clap definition in `cli.rs`, so they cannot drift from what the parser accepts.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// Print the completion script for the chosen shell to stdout.
pub fn completions(a: &CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "mailferry", &mut script);
    print(&script)
}

/// Print the man page of mailferry to stdout, or with --dir write it and one page per
/// subcommand (mailferry-migrate.1, mailferry-addresses-check.1, ...) into that folder.
pub fn man(a: &ManArgs) -> anyhow::Result<i32> {
    // No page for the generated `help` subcommand: `--help` is on every page.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    match &a.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            print(&page)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut out = String::new();
            write_pages(&cmd, dir, &mut out)?;
            print(out.as_bytes())
        }
    }
}

/// Write the page of `cmd` and of each of its subcommands (depth first) into `dir`,
/// adding each written path to `out`, one a line.
fn write_pages(cmd: &clap::Command, dir: &Path, out: &mut String) -> anyhow::Result<()> {
    let path = clap_mangen::Man::new(cmd.clone())
        .generate_to(dir)
        .with_context(|| format!("cannot write a man page into {}", dir.display()))?;
    out.push_str(&format!("{}\n", path.display()));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, out)?;
    }
    Ok(())
}

/// Write to stdout; a reader that stops early (`| head`) is not an error.
fn print(bytes: &[u8]) -> anyhow::Result<i32> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}
