//! Passwords: read from a file, the environment or a terminal prompt, never from
//! the command line. [`Password`] prints as `***` in every Debug/Display form, so a
//! stray `{:?}` cannot leak it.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use crate::error::input;

#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Read a password file: the first line, without its line ending.
pub fn from_file(path: &Path) -> anyhow::Result<Password> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input(format!("cannot read password file {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(input(format!(
            "password file {} is empty; put the password on its first line",
            path.display()
        )));
    }
    Ok(Password(line.to_string()))
}

/// Resolve a password: file, then environment variable, then a prompt when stdin
/// is a terminal. `what` names the account in messages ("source", "target").
pub fn resolve(
    file: Option<&Path>,
    env_var: &str,
    what: &str,
    account: &str,
) -> anyhow::Result<Password> {
    if let Some(f) = file {
        return from_file(f);
    }
    if let Ok(v) = std::env::var(env_var) {
        if !v.is_empty() {
            return Ok(Password(v));
        }
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password(format!("Password for {what} {account}: "))
            .map_err(|e| input(format!("cannot read the password: {e}")))?;
        return Ok(Password(p));
    }
    Err(input(format!(
        "no password for the {what} {account}: give --{what_flag}-password-file FILE or set {env_var}",
        what_flag = if what == "source" { "from" } else if what == "target" { "to" } else { "" }
    )
    .replace("---password-file", "--password-file")))
}
