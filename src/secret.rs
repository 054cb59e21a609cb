//! Passwords: read from a file, the environment or a terminal prompt, never from
//! the command line. [`Password`] prints as `***` in every Debug/Display form, so a
//! stray `{:?}` cannot leak it. [`Credentials`] says how a side logs in (password, admin
//! login, token command) and is asked at every (re)connect.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use std::sync::Arc;
use std::time::Duration;

use crate::error::input;
use crate::net::NetOptions;
use crate::oauth2::Source;
use crate::sasl::Login;

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
    crate::oauth2::check_private(path, "password file");
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

/// How one side logs in. Asked at every (re)connect, not once per run: a token
/// command runs afresh each time, so a long run never reconnects with an expired
/// token. Prints no secret in any form (`Password` is `***`; a token command's
/// text is not shown either: it may hold a secret).
#[derive(Clone)]
pub enum Credentials {
    /// The mailbox's own password.
    Password(Password),
    /// An administrator (master user) and its password, logging in to the mailbox
    /// by SASL PLAIN with the mailbox as authorization identity.
    Admin { admin: String, password: Password },
    /// A command whose first stdout line is an OAuth2 access token (mbsync's PassCmd).
    TokenCmd(String),
    /// Tokens fetched from a provider's token endpoint (`--from-oauth2 FILE`),
    /// cached in memory and shared by every connection and row using that file.
    OAuth2(Arc<Source>),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Password(_) => f.write_str("Password(***)"),
            Credentials::Admin { admin, .. } => write!(f, "Admin({admin}, ***)"),
            Credentials::TokenCmd(_) => f.write_str("TokenCmd(***)"),
            Credentials::OAuth2(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<Password> for Credentials {
    fn from(p: Password) -> Self {
        Credentials::Password(p)
    }
}

impl Credentials {
    /// Run `f` with what one connection to mailbox `user` logs in with; a token
    /// command runs now (within `net.timeout`), an OAuth2 config gives its cached
    /// token or fetches one. A failing token command is a final connect error
    /// (retrying cannot help).
    pub fn with_login<T>(
        &self,
        user: &str,
        net: &NetOptions,
        f: impl FnOnce(&Login<'_>) -> T,
    ) -> anyhow::Result<T> {
        Ok(match self {
            Credentials::Password(p) => f(&Login::Password(p.expose())),
            Credentials::Admin { admin, password } => f(&Login::Admin {
                admin,
                password: password.expose(),
            }),
            Credentials::TokenCmd(cmd) => {
                let token = run_token_cmd(cmd, net.timeout)?;
                f(&Login::Bearer(token.expose()))
            }
            Credentials::OAuth2(source) => {
                let token = source.token(user, net)?;
                f(&Login::Bearer(token.expose()))
            }
        })
    }

    /// The server refused the login of `user`: a cached token is not used again.
    /// True when the refused token came from the cache (a fresh one may pass).
    pub fn refused(&self, user: &str) -> bool {
        match self {
            Credentials::OAuth2(source) => source.forget(user),
            _ => false,
        }
    }

    /// What to check when the server refused the login with `words` (the end of
    /// a message); `None`: the usual username-and-password hint. Known causes
    /// (Microsoft's and Google's words) are named; this chooses a hint only, never
    /// whether to retry.
    pub fn refused_hint(&self, words: &str) -> Option<String> {
        let w = words.to_ascii_lowercase();
        if w.contains("application-specific password required") {
            return Some(
                "the account takes no plain password: use an app password (where the provider still allows one) or an OAuth2 token (--from-token-cmd/--to-token-cmd, see \"OAuth2 tokens\")"
                    .to_string(),
            );
        }
        match self {
            Credentials::Password(_) => None,
            Credentials::Admin { admin, .. } => Some(format!(
                "check the admin user {admin} and its password, and that the server lets it log in to other mailboxes (a master user)"
            )),
            Credentials::TokenCmd(_) | Credentials::OAuth2(_) if w.contains("authenticated but not connected") => Some(
                "the token was accepted but gives no access to this mailbox: grant the app access to it (Exchange Online: the service principal registered with New-ServicePrincipal and given FullAccess with Add-MailboxPermission) and check the mailbox address in the URL"
                    .to_string(),
            ),
            Credentials::TokenCmd(_) if w.contains("accesstokenexpired") || w.contains("token expired") => Some(
                "the token has expired: the token command must print a fresh (or refreshed) access token each time it runs"
                    .to_string(),
            ),
            Credentials::TokenCmd(_) => Some(
                "check that the token command gives a valid, unexpired access token for this mailbox (its scope, its tenant, the mailbox permission of the app)"
                    .to_string(),
            ),
            Credentials::OAuth2(_) if w.contains("accesstokenexpired") || w.contains("token expired") => Some(
                "the token expired; the next connection fetches a fresh one".to_string(),
            ),
            Credentials::OAuth2(_) => Some(
                "the token endpoint issued a token this server does not accept: check the config file's tenant and scope, the app's IMAP.AccessAsApp/POP.AccessAsApp permission (Microsoft) or the domain-wide delegation of https://mail.google.com/ (Google), and the app's access to this mailbox"
                    .to_string(),
            ),
        }
    }
}

/// Run a token command (`sh -c CMD`, stdin closed, stderr the user's) for at
/// most `timeout`: its first stdout line, trimmed, is the token. Neither the token
/// nor the command's text (it may hold a secret) appears in an error.
pub fn run_token_cmd(cmd: &str, timeout: Duration) -> anyhow::Result<Password> {
    use crate::error::connect_final;
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(|e| connect_final(format!("cannot run the token command: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        // At most 64 KiB: a token, not a stream.
        let _ = (&mut stdout).take(64 * 1024).read_to_end(&mut out);
        let _ = tx.send(out);
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                // The whole process group: sh and whatever it started.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(std::process::Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return Err(connect_final(format!(
                    "the token command did not finish within {} s (--timeout); no token, no login",
                    timeout.as_secs()
                )));
            }
        }
    };
    if !status.success() {
        return Err(connect_final(format!(
            "the token command failed ({status}); no token, no login"
        )));
    }
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let out = rx
        .recv_timeout(left.max(Duration::from_millis(200)))
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&out);
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(connect_final(
            "the token command printed no token (its first line of output is the access token)",
        ));
    }
    if token.chars().any(|c| c.is_control()) {
        return Err(connect_final(
            "the token command printed a first line with control characters; it must be the access token alone",
        ));
    }
    Ok(Password(token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_command_runs_at_every_login_and_its_first_line_is_the_token() {
        let dir = std::env::temp_dir().join(format!("mailferry-tokcmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count = dir.join("count");
        let cmd = format!(
            "echo x >> {0}; echo tok$(wc -l < {0} | tr -d ' '); echo second line",
            count.display()
        );
        let c = Credentials::TokenCmd(cmd);
        let seen = |c: &Credentials| {
            c.with_login("u", &NetOptions::default(), |l| match l {
                Login::Bearer(t) => t.to_string(),
                _ => panic!("not a bearer login"),
            })
            .unwrap()
        };
        assert_eq!(seen(&c), "tok1");
        assert_eq!(seen(&c), "tok2");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_or_silent_token_command_is_a_final_error() {
        for (cmd, says) in [
            ("echo $((6 * 7))-leaked; exit 3", "failed"),
            ("true", "printed no token"),
        ] {
            let err = Credentials::TokenCmd(cmd.into())
                .with_login("u", &NetOptions::default(), |_| ())
                .unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(says), "{text}");
            assert!(!text.contains("42-leaked"), "{text}");
            assert_eq!(crate::error::retry_class(&err), crate::error::Retry::Final);
        }
    }

    #[test]
    fn a_hanging_token_command_is_stopped_at_the_timeout_and_never_quoted() {
        let started = std::time::Instant::now();
        let err = run_token_cmd("sleep 30 # SeCrEt-in-cmd", Duration::from_secs(1)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("did not finish within 1 s"), "{text}");
        assert!(!text.contains("SeCrEt"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = run_token_cmd("exit 2 # SeCrEt-in-cmd", Duration::from_secs(5)).unwrap_err();
        assert!(!format!("{err:#}").contains("SeCrEt"));
        assert!(!format!("{:?}", Credentials::TokenCmd("x SeCrEt".into())).contains("SeCrEt"));
    }

    #[test]
    fn known_refusals_are_named() {
        let token = Credentials::TokenCmd("get-token".into());
        let password = Credentials::Password(Password::new("pw"));
        let cases: [(&Credentials, &str, Option<&str>); 5] = [
            (&password, "[AUTHENTICATIONFAILED] Authentication failed.", None),
            (
                &password,
                "[ALERT] Application-specific password required: https://support.google.com/accounts/answer/185833 (Failure)",
                Some("app password"),
            ),
            (
                &token,
                "User is authenticated but not connected.",
                Some("Add-MailboxPermission"),
            ),
            (&token, "AccessTokenExpired", Some("has expired")),
            (&token, "AUTHENTICATE failed.", Some("valid, unexpired access token")),
        ];
        for (c, words, want) in cases {
            let got = c.refused_hint(words);
            match want {
                None => assert_eq!(got, None, "{words}"),
                Some(w) => assert!(got.as_deref().unwrap_or("").contains(w), "{words}: {got:?}"),
            }
        }
    }

    #[test]
    fn credentials_never_print_a_secret() {
        let c = Credentials::Admin {
            admin: "admin".into(),
            password: Password::new("s3cret"),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
