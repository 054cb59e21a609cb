//! mailferry: move and back up whole mailboxes.
//!
//! Data takes one road: plan → source → index → target → report. See README.md for
//! the user's view and each module's first paragraph for its job and invariants.

pub(crate) mod address;
pub mod backup;
pub(crate) mod batch;
pub mod cli;
pub(crate) mod cmd;
pub(crate) mod decide;
pub mod dedupe;
pub mod endpoint;
pub mod engine;
pub mod error;
pub(crate) mod faults;
pub mod folders;
pub(crate) mod http;
pub mod imap;
pub(crate) mod index;
pub(crate) mod limits;
pub mod log;
pub mod mbox;
pub mod net;
pub(crate) mod oauth2;
pub(crate) mod plan;
pub mod pop3;
pub(crate) mod progress;
pub(crate) mod provider;
pub(crate) mod provision;
pub(crate) mod rate;
pub(crate) mod retry;
pub(crate) mod sasl;
pub mod secret;
pub(crate) mod select;
pub mod source;
pub(crate) mod summary;
pub(crate) mod target;
pub(crate) mod throttle;

use cli::{Cli, Command};

/// Run the parsed command line; the result is the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    log::set_level(cli.verbose);
    match &cli.command {
        Command::Migrate(a) => cmd::migrate::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Backup(a) => cmd::backup::run(a),
        Command::Restore(a) => cmd::restore::run(a),
        Command::Batch(a) => cmd::batch::run(a),
        Command::Addresses { command } => match command {
            cli::AddressesCommand::Check(a) => cmd::addresses::check(a),
            cli::AddressesCommand::Create(a) => cmd::addresses::create(a),
        },
        Command::Completions(a) => cmd::completions::completions(a),
        Command::Man(a) => cmd::completions::man(a),
    }
}
