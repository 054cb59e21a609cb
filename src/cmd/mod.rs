//! One module per subcommand, each exposing `run`, which returns the exit code.

pub mod addresses;
pub mod backup;
pub mod batch;
pub mod check;
pub mod completions;
pub mod migrate;
pub mod restore;
pub mod verify;
