//! One module per subcommand, each exposing `run`, which returns the exit code.

pub mod check;
pub mod migrate;
pub mod verify;
