//! `completions` and `man` seen from outside: the scripts and pages the binary prints
//! are generated from the clap definition, parse, complete what the parser accepts,
//! and name every subcommand; a shell clap does not know is refused with exit 2.

use std::path::Path;
use std::process::{Command, Output};

use clap::CommandFactory;

fn mailferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .args(args)
        .output()
        .expect("run mailferry")
}

/// stdout of a run that must succeed.
fn stdout_ok(args: &[&str]) -> String {
    let o = mailferry(args);
    assert!(
        o.status.success(),
        "mailferry {args:?}: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// The subcommands as the parser knows them, each as its path of names
/// (["migrate"], ["addresses", "check"], ...), without clap's `help`.
fn subcommand_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&mailferry::cli::Cli::command(), &[], &mut out);
    // The walk must see the commands this file was written against, so a broken walk
    // cannot make the loops below check nothing.
    for known in [
        "migrate",
        "check",
        "verify",
        "backup",
        "restore",
        "batch",
        "addresses",
        "completions",
        "man",
    ] {
        assert!(
            out.contains(&vec![known.to_string()]),
            "{known} not in {out:?}"
        );
    }
    assert!(out.contains(&vec!["addresses".to_string(), "create".to_string()]));
    out
}

/// Run the bash completion function of `script` as bash would for the words typed
/// so far (the last one being completed) and return the candidates.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}' || exit 9\n\
         COMP_WORDS=({})\nCOMP_CWORD={cword}\n\
         _mailferry mailferry '{}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words[cword],
    );
    let o = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        o.status.success(),
        "bash: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completions_parse_and_complete_subcommands_and_options() {
    let script = stdout_ok(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mailferry.bash");
    std::fs::write(&file, &script).unwrap();

    // `bash -n` has teeth: it refuses a truncated copy of the same script.
    let syntax = |path: &Path| {
        Command::new("bash")
            .arg("-n")
            .arg(path)
            .output()
            .expect("run bash -n")
    };
    let o = syntax(&file);
    assert!(
        o.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let broken = dir.path().join("broken.bash");
    std::fs::write(&broken, &script[..script.len() / 2]).unwrap();
    assert!(
        !syntax(&broken).status.success(),
        "bash -n accepted half a script"
    );

    assert!(script.contains("complete -F _mailferry"), "{script}");
    for path in subcommand_paths() {
        let name = path.last().unwrap();
        assert!(script.contains(name.as_str()), "bash script lacks {name}");
    }
    assert!(script.contains("--from-oauth2"));

    // And it completes what the parser accepts.
    assert_eq!(bash_complete(&file, &["mailferry", "mi"]), ["migrate"]);
    assert_eq!(
        bash_complete(&file, &["mailferry", "migrate", "--from-oa"]),
        ["--from-oauth2"]
    );
    assert_eq!(
        bash_complete(&file, &["mailferry", "addresses", "c"]),
        ["check", "create"]
    );
    let shells = bash_complete(&file, &["mailferry", "completions", ""]);
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        assert!(
            shells.iter().any(|s| s == shell),
            "{shell} not in {shells:?}"
        );
    }
}

#[test]
fn every_shell_gets_a_script_naming_the_options() {
    let zsh = stdout_ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef mailferry\n"), "{zsh}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = stdout_ok(&["completions", shell]);
        for word in ["migrate", "restore", "from-oauth2", "dedupe"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    let fish = stdout_ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c mailferry"), "{fish}");
}

/// Check a generated page: roff whose first macro is `.TH NAME 1`, with the sections
/// clap_mangen writes.
fn assert_page(page: &str, name: &str) {
    let first_macro = page
        .lines()
        .find(|l| l.starts_with('.') && !l.starts_with(".ie") && !l.starts_with(".el"))
        .unwrap_or("");
    assert!(
        first_macro.starts_with(&format!(".TH {name} 1 ")),
        "{name}: first macro is {first_macro:?}"
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS"] {
        assert!(page.contains(section), "{name} lacks {section}");
    }
}

#[test]
fn man_page_names_every_subcommand() {
    let page = stdout_ok(&["man"]);
    assert_page(&page, "mailferry");
    let source = format!("\"mailferry {}\"", env!("CARGO_PKG_VERSION"));
    assert!(page.contains(&source), "no {source} in the .TH line");
    for path in subcommand_paths().iter().filter(|p| p.len() == 1) {
        // roff escapes the hyphen: mailferry\-migrate(1)
        let reference = format!("mailferry\\-{}(1)", path[0]);
        assert!(page.contains(&reference), "man page lacks {reference}");
    }
    assert!(page.contains("\\-\\-verbose"));
    assert!(
        !page.contains("mailferry\\-help"),
        "a page for clap's help subcommand"
    );
}

#[test]
fn man_dir_writes_one_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1"); // not there yet: created
    let listed = stdout_ok(&["man", "--dir", out.to_str().unwrap()]);

    let mut expected = vec!["mailferry".to_string()];
    for path in subcommand_paths() {
        expected.push(format!("mailferry-{}", path.join("-")));
    }
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    let mut want: Vec<String> = expected.iter().map(|n| format!("{n}.1")).collect();
    want.sort();
    assert_eq!(written, want);

    for name in &expected {
        let path = out.join(format!("{name}.1"));
        assert!(
            listed.lines().any(|l| Path::new(l) == path),
            "{} not listed in {listed}",
            path.display()
        );
        assert_page(&std::fs::read_to_string(&path).unwrap(), name);
    }
    let migrate = std::fs::read_to_string(out.join("mailferry-migrate.1")).unwrap();
    assert!(migrate.contains("\\-\\-from\\-oauth2"), "{migrate}");
    // The page printed without --dir is the one written as mailferry.1.
    assert_eq!(
        std::fs::read_to_string(out.join("mailferry.1")).unwrap(),
        stdout_ok(&["man"])
    );
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let o = mailferry(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("invalid value 'tcsh' for '<SHELL>'"),
        "not clap's error: {err}"
    );
    assert!(
        err.contains("[possible values: bash, elvish, fish, powershell, zsh]"),
        "{err}"
    );

    let o = mailferry(&["completions"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("<SHELL>"));
}
