//! The binary: parse, run, turn the result into an exit code.

use clap::Parser;

fn main() {
    let cli = mailferry::cli::Cli::parse();
    let code = match mailferry::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mailferry: error: {err:#}");
            mailferry::error::exit_code(&err)
        }
    };
    std::process::exit(code);
}
