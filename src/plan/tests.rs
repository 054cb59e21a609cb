//! Plan construction as tables: command lines to the plan's fields, or to the
//! exact one-line refusal. Logins are token commands (nothing is prompted for or
//! read); an mbox source is a file made for the test.

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};
use crate::mbox::Format;

/// The plan of a command line (`@MBOX` stands for an existing mbox file).
fn plan_of(args: &str, mbox: &std::path::Path) -> anyhow::Result<Plan> {
    let argv = std::iter::once("mailferry".to_string()).chain(
        args.split(' ')
            .map(|a| a.replace("@MBOX", &mbox.display().to_string())),
    );
    let cli = Cli::try_parse_from(argv).expect("the test's command line parses");
    match &cli.command {
        Command::Migrate(a) => Plan::migrate(a),
        Command::Restore(a) => Plan::restore(a),
        Command::Backup(a) => Plan::backup(a),
        Command::Verify(a) => Plan::verify(a),
        _ => unreachable!("a command that copies or compares"),
    }
}

/// The fields that differ from one command line to another, in one line.
fn fields(p: &Plan, mbox: &std::path::Path) -> String {
    let format = match p.source.read.format {
        None => "auto".to_string(),
        Some(f) if f == Format::plain(Dialect::Rd) => "rd".into(),
        Some(f) if f == Format::plain(crate::mbox::Dialect::O) => "o".into(),
        Some(f) => format!("{f:?}"),
    };
    let target = match &p.target {
        TargetPlan::Imap(s, _) => s.to_string(),
        TargetPlan::Backup(d) => format!("backup {}", d.display()),
        TargetPlan::Maildir(d) => format!("maildir {}", d.display()),
    };
    let line = format!(
        "{} creds={} format={format} labels={} preset={:?}/{:?} -> {target} conns={} state={} json={} dry={}",
        p.source.endpoint,
        p.source.credentials.is_some(),
        p.source.read.labels_as_folders,
        p.source.read.preset,
        p.source.read.gmail_labels,
        p.opts.connections,
        p.state.is_some(),
        p.json,
        p.dry_run,
    );
    line.replace(&mbox.display().to_string(), "@MBOX")
}

const TO: &str = "--to imaps://u@mail.example --to-token-cmd t";
const FROM: &str = "--from imaps://s@old.example --from-token-cmd t";

#[test]
fn command_lines_become_plans() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("in.mbox");
    std::fs::write(&mbox, "From a\r\nSubject: x\r\n\r\nx\r\n").unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            format!("migrate --from mbox:@MBOX {TO}"),
            "mbox:@MBOX creds=false format=auto labels=false preset=Auto/Folders -> imaps://u@mail.example:993 conns=0 state=true json=false dry=false",
        ),
        (
            format!("migrate {FROM} {TO} --connections 3 --json --dry-run --from-preset gmail --gmail-labels keyword"),
            "imaps://s@old.example:993 creds=true format=auto labels=false preset=Gmail/Keyword -> imaps://u@mail.example:993 conns=3 state=true json=true dry=true",
        ),
        (
            format!("migrate --from mbox:@MBOX {TO} --mbox-format mboxo"),
            "mbox:@MBOX creds=false format=o labels=false preset=Auto/Folders -> imaps://u@mail.example:993 conns=0 state=true json=false dry=false",
        ),
        (
            format!("restore --from @MBOX {TO} --labels-as-folders"),
            "mbox:@MBOX creds=false format=auto labels=true preset=Auto/Folders -> imaps://u@mail.example:993 conns=0 state=true json=false dry=false",
        ),
        (
            format!("backup {FROM} --out /b --json"),
            "imaps://s@old.example:993 creds=true format=rd labels=false preset=Auto/Folders -> backup /b conns=1 state=true json=true dry=false",
        ),
        (
            format!("backup {FROM} --out /m --format maildir --dry-run"),
            "imaps://s@old.example:993 creds=true format=rd labels=false preset=Auto/Folders -> maildir /m conns=1 state=true json=false dry=true",
        ),
        (
            "verify --from mbox:@MBOX --to maildir:/m".to_string(),
            "mbox:@MBOX creds=false format=auto labels=false preset=Auto/Folders -> maildir /m conns=1 state=false json=false dry=false",
        ),
        (
            format!("verify {FROM} --to mbox:/b --from-preset gmail --gmail-labels keyword"),
            "imaps://s@old.example:993 creds=true format=auto labels=false preset=Gmail/Keyword -> backup /b conns=1 state=false json=false dry=false",
        ),
    ];
    for (args, want) in cases {
        let plan = plan_of(&args, &mbox).unwrap_or_else(|e| panic!("{args}: {e:#}"));
        assert_eq!(fields(&plan, &mbox), want, "{args}");
    }
}

#[test]
fn bad_command_lines_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("in.mbox");
    std::fs::write(&mbox, "From a\r\nSubject: x\r\n\r\nx\r\n").unwrap();
    let cases: Vec<(String, &str)> = vec![
        (format!("migrate {FROM} {TO} --connections 0"), "--connections must be at least 1"),
        (
            format!("migrate {FROM} {TO} --delete-after"),
            "--delete-after works only with a pop3:// or pop3s:// source",
        ),
        (
            format!("migrate {FROM} {TO} --delete-after --dry-run"),
            "--delete-after and --dry-run do not go together: a dry run copies nothing, so nothing may be deleted",
        ),
        (
            format!("migrate {FROM} {TO} --since 2024-03-02 --before 2024-03-01"),
            "--since 2024-03-02 is not before --before 2024-03-01: no message could be copied; give a window whose start is before its end",
        ),
        (
            format!("migrate {FROM} {TO} --from-admin a"),
            "--from-admin and --from-token-cmd do not go together: an admin logs in with its password, a token command replaces any password",
        ),
        (
            format!("migrate {FROM} --to imaps://u@mail.example --to-token-cmd t --to-password-file p"),
            "--to-token-cmd replaces the password: drop --to-password-file",
        ),
        (
            format!("migrate --from mbox:@MBOX --from-token-cmd t {TO}"),
            "mbox:@MBOX is read from files: --from-admin, --from-token-cmd and --from-oauth2 are for an IMAP or POP3 source",
        ),
        (
            format!("migrate {FROM} --to mbox:/b"),
            "--to mbox:/b: give an IMAP account here; `mailferry backup --out` writes mbox files",
        ),
        (
            "backup --from mbox:/nowhere --out /b".to_string(),
            "backup reads from an IMAP or POP3 account; to copy mbox files, copy the files",
        ),
        (
            format!("verify {FROM} --to maildir:/m --to-token-cmd t"),
            "--to-password-file, --to-admin, --to-token-cmd and --to-oauth2 are for an IMAP account, not files",
        ),
    ];
    for (args, want) in cases {
        match plan_of(&args, &mbox) {
            Ok(_) => panic!("{args}: planned, but should say {want:?}"),
            Err(e) => {
                assert_eq!(
                    crate::error::exit_code(&e),
                    crate::error::EXIT_INPUT,
                    "{args}: {e:#}"
                );
                assert_eq!(
                    format!("{e:#}").replace(&mbox.display().to_string(), "@MBOX"),
                    want,
                    "{args}"
                );
            }
        }
    }
}

fn batch_plan(args: &str) -> anyhow::Result<BatchPlan> {
    let argv = std::iter::once("mailferry").chain(args.split(' '));
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Batch(a) => BatchPlan::new(&a),
        _ => unreachable!(),
    }
}

#[test]
fn batch_flags_are_refused_before_the_file_is_read() {
    let cases = [
        (
            "batch a.csv --jobs 0",
            "--jobs and --max-per-host must be at least 1",
        ),
        (
            "batch a.csv --shard 3/2",
            "--shard \"3/2\": give K/N with 1 <= K <= N, e.g. 2/5",
        ),
        (
            "batch a.csv --connections 0",
            "--connections must be at least 1",
        ),
        (
            "batch a.csv --host-max-bytes-per-sec 0",
            "--host-max-bytes-per-sec: \"0\" is not a rate; write it as bytes or with K, M or G (25M, 201MB, 1G)",
        ),
        (
            "batch a.csv --folder-map nothing",
            "--folder-map \"nothing\" needs the form SOURCE=TARGET",
        ),
    ];
    for (args, want) in cases {
        let e = batch_plan(args)
            .err()
            .unwrap_or_else(|| panic!("{args}: planned"));
        assert_eq!(
            crate::error::exit_code(&e),
            crate::error::EXIT_INPUT,
            "{args}"
        );
        assert_eq!(format!("{e:#}"), want, "{args}");
    }
}

/// A row's plan is the batch's, with the row's ends, logins and cells winning.
#[test]
fn a_row_plan_is_the_batch_plan_with_its_cells() {
    let plan = batch_plan(
        "batch a.csv --since 2024-01-01 --max-size 1M --folder-map A=B --folder-map C=D --connections 2 --dry-run",
    )
    .unwrap();
    let day = |d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
    let Ok(Endpoint::Server(target)) = crate::endpoint::parse("imaps://u@mail.example") else {
        unreachable!()
    };
    let path = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
    let acc = crate::batch::Account {
        row: 2,
        position: 0,
        source: Endpoint::Mbox("/in.mbox".into()),
        source_credentials: None,
        target,
        target_credentials: crate::secret::Credentials::TokenCmd("t".into()),
        folder_map: vec![(path("A"), path("E"))],
        select: crate::batch::RowSelect {
            since: day("2024-02-01"),
            before: day("2024-03-01"),
            max_size: None,
        },
    };
    let row = plan.row(&acc);
    assert_eq!(row.source.text, "mbox:/in.mbox");
    assert_eq!(row.source.read.format, Some(Format::plain(Dialect::Rd)));
    assert!(matches!(&row.target, TargetPlan::Imap(s, _) if s.host == "mail.example"));
    let sel = &row.opts.select;
    assert_eq!(
        (sel.since, sel.before),
        (day("2024-02-01"), day("2024-03-01"))
    );
    assert_eq!(
        sel.max_size, plan.opts.select.max_size,
        "the batch's, the row has none"
    );
    // The batch's maps, then the row's: for A the row's (later) wins.
    let map: Vec<_> = row
        .opts
        .rules
        .map
        .iter()
        .map(|(s, d)| (s.join("/"), d.join("/")))
        .collect();
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(map, pairs(&[("A", "B"), ("C", "D"), ("A", "E")]));
    assert_eq!(
        (row.opts.connections, row.dry_run, row.opts.dry_run),
        (2, true, true)
    );
    assert_eq!(row.state.as_deref(), Some(plan.state.as_path()));
}
