//! The binary: parse, run, turn the result into an exit code.

use clap::Parser;

fn main() {
    let cli = mailferry::cli::Cli::parse();
    let code = match mailferry::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let text = format!("{err:#}");
            eprintln!(
                "mailferry: error: {}",
                mailferry::log::printable_line(&text)
            );
            mailferry::error::exit_code(&err)
        }
    };
    std::process::exit(code);
}
