//! Test support, a module per concern: `dovecot` (a throwaway Dovecot per test,
//! seeded by the independent Python seeder), `servers` (Cyrus and Courier),
//! `accounts` (the fixture mailbox and what it should give), `runs` (the real
//! binary, flag by flag, bounded), `checks` (what a user checks, read back by an
//! independent reader), `proxies` (counting and fault-injecting forwarders), and
//! scripted servers for what no real server does on demand (`fake_imap`,
//! `fake_pop3`, `fake_api`, `scripted_pop3`).
#![allow(dead_code)]

mod accounts;
mod checks;
mod dovecot;
pub mod fake_api;
pub mod fake_imap;
pub mod fake_pop3;
mod proxies;
mod runs;
mod scripted_pop3;
pub mod servers;

pub use accounts::*;
pub use checks::*;
pub use dovecot::*;
pub use proxies::*;
pub use runs::*;
pub use scripted_pop3::*;
