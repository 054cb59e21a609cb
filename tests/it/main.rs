//! The black-box tests, one crate (one binary to build and link), a module per
//! concern, each against real servers started by the test support in `common`
//! (Dovecot, Cyrus and Courier; scripted servers only for what no real server does
//! on demand). Results are read back by an independent reader, never by
//! mailferry's own client. Run one concern with `cargo test --test it migrate::`.

mod common;

mod any_source;
mod bad_input;
mod batch;
mod completions;
mod compress;
mod cross_server;
mod cutover;
mod faults;
mod filters;
mod folder_failures;
mod fuzz;
mod hostile_files;
mod hostile_imap;
mod hostile_pop3;
mod logins;
mod maildir;
mod mbox_import;
mod mbox_real;
mod memory;
mod migrate;
mod options;
mod pop3_mbox;
mod providers;
mod provision;
mod rate;
mod readme;
mod refusals;
mod round_trips;
mod split;
mod throttling;
mod verify_targets;
