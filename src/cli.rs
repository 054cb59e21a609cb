//! What the user typed: clap structures only, no I/O (ripgrep's "low args").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::dedupe::Mode;

#[derive(Debug, Parser)]
#[command(
    name = "mailferry",
    version,
    about = "Move and back up whole mailboxes: IMAP, POP3 and mbox, resumable and duplicate-free"
)]
pub struct Cli {
    /// More output: -v what is done per folder, -vv also the protocol (secrets masked).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy every folder of one account into another.
    Migrate(MigrateArgs),
    /// Log in, show capabilities and folders with counts and special-use attributes.
    Check(CheckArgs),
    /// Compare source and target folder by folder; exit 1 when something is missing.
    Verify(VerifyArgs),
    /// Back up an IMAP or POP3 account to mbox files (one per folder) or one mbox file.
    Backup(BackupArgs),
    /// Restore mbox files (a backup directory, or any mbox file) into an IMAP account.
    Restore(RestoreArgs),
    /// Move many accounts listed in a CSV file, in parallel.
    Batch(BatchArgs),
    /// Work with lists of addresses.
    Addresses {
        #[command(subcommand)]
        command: AddressesCommand,
    },
    /// Print the shell completion script for SHELL to stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout, or write one page per subcommand with --dir.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write mailferry.1 and one page per subcommand (mailferry-migrate.1, ...) into DIR instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AddressesCommand {
    /// Check every address of a CSV file against the target host's rules.
    Check(AddressesCheckArgs),
    /// Create the missing addresses of a CSV file on an Infomaniak mail hosting (API), with their passwords.
    Create(AddressesCreateArgs),
}

#[derive(Debug, Args)]
pub struct AddressesCreateArgs {
    /// The addresses: a batch CSV (target_user, and target_password where known) or a list of addresses.
    pub file: PathBuf,
    /// The column with the addresses [default: target_user, address or email, or the only column].
    #[arg(long, value_name = "NAME")]
    pub column: Option<String>,
    /// The mail hosting (the number in the Manager's address of the mail service).
    #[arg(long, value_name = "ID")]
    pub mail_hosting: u64,
    /// File whose first line is the API token (else MAILFERRY_API_TOKEN, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// The API's base URL (plain http:// only to this machine).
    #[arg(long, value_name = "URL", default_value = crate::provision::DEFAULT_API_URL)]
    pub api_url: String,
    /// Write the CSV that `batch` reads: the same rows, each target_password a file: cell.
    #[arg(long, value_name = "FILE.csv")]
    pub out: Option<PathBuf>,
    /// Where the password files go (owner-only) [default: FILE's name + "-passwords", beside FILE].
    #[arg(long, value_name = "DIR")]
    pub password_dir: Option<PathBuf>,
    /// Write one CSV row per address: row, address, status, code, description, password_file.
    #[arg(long, value_name = "FILE.csv")]
    pub report: Option<PathBuf>,
    /// List what would be created; create and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Debug, Args)]
pub struct AddressesCheckArgs {
    /// The CSV file (comma or semicolon separated, with a header; a bare list of addresses works too).
    pub file: PathBuf,
    /// The column with the addresses [default: address, email or target_user, or the only column].
    #[arg(long, value_name = "NAME")]
    pub column: Option<String>,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The accounts: a CSV file with a header row (see README for the columns).
    pub csv: PathBuf,
    /// Accounts copied at the same time.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// At most N of our connections to any one server at a time.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_per_host: usize,
    /// At most this many bytes a second read from any one source host, for all its accounts together (500K, 10M).
    #[arg(long, value_name = "RATE")]
    pub host_max_bytes_per_sec: Option<String>,
    /// Write one CSV row per account: status, counts, bytes, seconds, error, and with
    /// --dry-run what would be copied.
    #[arg(long, value_name = "FILE.csv")]
    pub report: Option<PathBuf>,
    /// Run the valid rows even if some rows are bad (the bad ones are listed and skipped).
    #[arg(long)]
    pub skip_invalid: bool,
    /// Run only the K-th of N shares of the rows, so N machines can split one file.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// The index (SQLite) [default: $XDG_STATE_HOME/mailferry/index.sqlite].
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetArgs,
    /// The folder rules and dedupe mode of every row (a row's own `folder_map` cell
    /// wins over --folder-map for the same folder).
    #[command(flatten)]
    pub folders: FolderArgs,
    /// Put a single-folder source (POP3, one mbox file) into this target folder instead of INBOX, for every row.
    #[arg(long, value_name = "NAME")]
    pub to_folder: Option<String>,
    /// Connection pairs per account (folders copied in parallel); each counts against --max-per-host [default: the host's connections shared by the accounts that can run side by side (more per account as fewer are left), each account taking what its measured round trip can use].
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Show per account what would be copied; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the per-account results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Connection settings shared by every command.
#[derive(Debug, Args, Clone)]
pub struct NetArgs {
    /// Trust this PEM certificate (a private CA or a self-signed server) besides the system roots.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify certificates (for broken servers; prints a warning on every run).
    #[arg(long)]
    pub insecure: bool,
    /// Allow logging in without TLS when an imap:// server offers no STARTTLS.
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Seconds before a connect, read or write is given up.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// After a transient failure (connection lost, server busy), try again this many times.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,
    /// Seconds to wait before the first retry (at least 1; doubled each time, at most 60).
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub retry_wait: u64,
    /// Start no retry once this many seconds have passed since the first attempt.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub deadline: u64,
    /// COMPRESS=DEFLATE on IMAP connections whose server offers it: auto (when the server is not on this machine), yes, no.
    #[arg(long, value_enum, default_value = "auto")]
    pub compress: crate::net::Compress,
}

/// Source and target with their password sources.
#[derive(Debug, Args, Clone)]
pub struct PairArgs {
    /// Source: imaps://USER@HOST[:PORT], imap://… (STARTTLS), pop3s://…, pop3://… (STLS), mbox:PATH, or a bare address (Infomaniak).
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Target: imaps://USER@HOST[:PORT], imap://…, or a bare address (Infomaniak IMAPS); `verify` also reads mbox:DIR (a backup) and maildir:DIR.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// File whose first line is the source password (else MAILFERRY_FROM_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// File whose first line is the target password (else MAILFERRY_TO_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Log in to the source mailbox as this administrator (master user; SASL PLAIN with the mailbox as authorization identity); the password is the admin's (MAILFERRY_FROM_PASSWORD or a prompt, or the password file).
    #[arg(long, value_name = "USER")]
    pub from_admin: Option<String>,
    /// Run this command (sh -c) at every source login for an OAuth2 access token (its first line of output), sent with XOAUTH2 or OAUTHBEARER instead of a password.
    #[arg(long, value_name = "CMD")]
    pub from_token_cmd: Option<String>,
    /// Fetch OAuth2 tokens for the source from a provider's token endpoint as this JSON config file says (Microsoft app-only or refresh token, Google service account; see the README, "OAuth2 tokens"); cached in memory, refreshed before they expire.
    #[arg(long, value_name = "FILE")]
    pub from_oauth2: Option<PathBuf>,
    /// Log in to the target mailbox as this administrator (master user; SASL PLAIN with the mailbox as authorization identity); the password is the admin's (MAILFERRY_TO_PASSWORD or a prompt, or the password file).
    #[arg(long, value_name = "USER")]
    pub to_admin: Option<String>,
    /// Run this command (sh -c) at every target login for an OAuth2 access token (its first line of output), sent with XOAUTH2 or OAUTHBEARER instead of a password.
    #[arg(long, value_name = "CMD")]
    pub to_token_cmd: Option<String>,
    /// Fetch OAuth2 tokens for the target from a provider's token endpoint as this JSON config file says (Microsoft app-only or refresh token, Google service account; see the README, "OAuth2 tokens"); cached in memory, refreshed before they expire.
    #[arg(long, value_name = "FILE")]
    pub to_oauth2: Option<PathBuf>,
}

impl PairArgs {
    pub fn from_auth(&self) -> crate::plan::Auth<'_> {
        crate::plan::Auth {
            password_file: self.from_password_file.as_deref(),
            admin: self.from_admin.as_deref(),
            token_cmd: self.from_token_cmd.as_deref(),
            oauth2: self.from_oauth2.as_deref(),
        }
    }
    pub fn to_auth(&self) -> crate::plan::Auth<'_> {
        crate::plan::Auth {
            password_file: self.to_password_file.as_deref(),
            admin: self.to_admin.as_deref(),
            token_cmd: self.to_token_cmd.as_deref(),
            oauth2: self.to_oauth2.as_deref(),
        }
    }
}

/// Which folders go where, and when two messages are the same.
#[derive(Debug, Args, Clone)]
pub struct FolderArgs {
    /// Put source folder SRC into target folder DST (names with / as separator); repeatable.
    #[arg(long, value_name = "SRC=DST")]
    pub folder_map: Vec<String>,
    /// Copy only folders matching this glob (* within a level, ** across); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip folders matching this glob (and their children); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Also copy other users' and shared folders (IMAP namespaces), into the target folder TREE (only the account's own folders are copied by default).
    #[arg(long, value_name = "TREE")]
    pub include_shared: Option<String>,
    /// When two messages are the same: exact bytes, Message-ID plus body, or never.
    #[arg(long, value_enum, default_value = "exact")]
    pub dedupe: Mode,
    /// Copy only messages of this day or later (INTERNALDATE; 2024-03-01 or 1-Mar-2024).
    #[arg(long, value_name = "DAY", help_heading = "Messages")]
    pub since: Option<String>,
    /// Copy only messages of days before this one (INTERNALDATE).
    #[arg(long, value_name = "DAY", help_heading = "Messages")]
    pub before: Option<String>,
    /// Leave messages larger than this on the source (bytes, or 25M, 1G) [default: the target's APPENDLIMIT when it announces one].
    #[arg(long, value_name = "SIZE", help_heading = "Messages")]
    pub max_size: Option<String>,
    /// How to treat the source account: as Gmail or Microsoft 365 (views and non-mail folders left out), as a plain folder tree, or decided from what the server announces.
    #[arg(long, value_enum, default_value = "auto", value_name = "PRESET")]
    pub from_preset: crate::provider::Preset,
    /// Gmail: each label a folder (a message once in each), or `keyword`: each message once, in INBOX, Sent, Drafts, Spam, Trash or else Archive, with its labels as keywords.
    #[arg(long, value_enum, default_value = "folders", value_name = "AS")]
    pub gmail_labels: crate::provider::GmailLabels,
    /// Copy each folder's newest messages first.
    #[arg(long, help_heading = "Messages")]
    pub newest_first: bool,
    /// Copy at most this many bytes a second, for the account as a whole (500K, 10M).
    #[arg(long, value_name = "RATE", help_heading = "Rate")]
    pub max_bytes_per_sec: Option<String>,
    /// Copy at most this many messages a second, for the account as a whole.
    #[arg(long, value_name = "N", help_heading = "Rate")]
    pub max_msgs_per_sec: Option<u64>,
    /// On a re-run, remove from the target the messages this job copied there that are gone from the source (never anything it did not copy).
    #[arg(long, help_heading = "Messages")]
    pub sync_deletes: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub copy: CopyArgs,
}

/// Flags of every command that copies or backs up: connections, the index, folders.
#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// The index (SQLite) with checkpoints and dedupe keys [default: $XDG_STATE_HOME/mailferry/index.sqlite].
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub folders: FolderArgs,
}

/// Flags of every command that copies.
#[derive(Debug, Args, Clone)]
pub struct CopyArgs {
    /// Show per folder what would be copied; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Put a single-folder source (POP3, one mbox file) into this target folder instead of INBOX.
    #[arg(long, value_name = "NAME")]
    pub to_folder: Option<String>,
    /// POP3 source only: afterwards delete from the server the messages whose copy the target confirmed in this run.
    #[arg(long)]
    pub delete_after: bool,
    /// Connections to each side: folders (and parts of a large folder) are copied in
    /// parallel over this many pairs [default: chosen from the measured round-trip
    /// time: 1 on this machine or a LAN, up to 4 over a slower link; -v says why].
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// The dialect of mbox input: auto (decided per file from its contents, said with -v),
    /// or forced: mboxrd (`>From ` unquoted at every level), mboxo (one level),
    /// mboxcl (Content-Length, one level), mboxcl2 (Content-Length, no quoting), mmdf.
    #[arg(long, value_enum, default_value = "auto")]
    pub mbox_format: MboxFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MboxFormat {
    Auto,
    Mboxrd,
    Mboxo,
    Mboxcl,
    Mboxcl2,
    Mmdf,
}

/// `backup --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackupFormat {
    Mbox,
    Maildir,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Source: imaps://, imap://, pop3s://, pop3:// or a bare address.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// A directory (one mbox file per folder) or a FILE.mbox (every folder in one file); with --format maildir, the Maildir++ directory.
    #[arg(long, value_name = "DIR|FILE.mbox")]
    pub out: PathBuf,
    /// What the backup is written as: mbox files and a manifest, or a Maildir++ tree (as Dovecot and mbsync read it).
    #[arg(long, value_enum, default_value_t = BackupFormat::Mbox)]
    pub format: BackupFormat,
    /// File whose first line is the source password (else MAILFERRY_FROM_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Log in to the source mailbox as this administrator (master user; SASL PLAIN with the mailbox as authorization identity); the password is the admin's (MAILFERRY_FROM_PASSWORD or a prompt, or the password file).
    #[arg(long, value_name = "USER")]
    pub from_admin: Option<String>,
    /// Run this command (sh -c) at every source login for an OAuth2 access token (its first line of output), sent with XOAUTH2 or OAUTHBEARER instead of a password.
    #[arg(long, value_name = "CMD")]
    pub from_token_cmd: Option<String>,
    /// Fetch OAuth2 tokens for the source from a provider's token endpoint as this JSON config file says (Microsoft app-only or refresh token, Google service account; see the README, "OAuth2 tokens"); cached in memory, refreshed before they expire.
    #[arg(long, value_name = "FILE")]
    pub from_oauth2: Option<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
    /// Show per folder what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup directory, a FILE.mbox, or a directory of .mbox files.
    #[arg(long, value_name = "DIR|FILE.mbox")]
    pub from: PathBuf,
    /// Target: imaps://USER@HOST[:PORT], imap://…, or a bare address (Infomaniak IMAPS).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// File whose first line is the target password (else MAILFERRY_TO_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Log in to the target mailbox as this administrator (master user; SASL PLAIN with the mailbox as authorization identity); the password is the admin's (MAILFERRY_TO_PASSWORD or a prompt, or the password file).
    #[arg(long, value_name = "USER")]
    pub to_admin: Option<String>,
    /// Run this command (sh -c) at every target login for an OAuth2 access token (its first line of output), sent with XOAUTH2 or OAUTHBEARER instead of a password.
    #[arg(long, value_name = "CMD")]
    pub to_token_cmd: Option<String>,
    /// Fetch OAuth2 tokens for the target from a provider's token endpoint as this JSON config file says (Microsoft app-only or refresh token, Google service account; see the README, "OAuth2 tokens"); cached in memory, refreshed before they expire.
    #[arg(long, value_name = "FILE")]
    pub to_oauth2: Option<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub copy: CopyArgs,
    /// Google Takeout: put each message into one folder per X-Gmail-Labels label
    /// (Inbox to INBOX, Sent, Spam and Trash to theirs, the unlabelled to Archive);
    /// without it, labels become keywords.
    #[arg(long)]
    pub labels_as_folders: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The account: imaps://USER@HOST[:PORT], imap://… or a bare address.
    pub url: String,
    /// File whose first line is the password (else MAILFERRY_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Log in to the mailbox as this administrator (master user); the password is the admin's.
    #[arg(long, value_name = "USER")]
    pub admin: Option<String>,
    /// Run this command (sh -c) for an OAuth2 access token (its first line of output) instead of a password.
    #[arg(long, value_name = "CMD")]
    pub token_cmd: Option<String>,
    /// Fetch OAuth2 tokens from a provider's token endpoint as this JSON config file says (see the README, "OAuth2 tokens").
    #[arg(long, value_name = "FILE")]
    pub oauth2: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub folders: FolderArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}
