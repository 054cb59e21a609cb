//! How each side logs in: the login flags checked (combinations that make no
//! sense refused without I/O) and turned into `secret::Credentials`, a password
//! resolved once per run.

use std::path::Path;

use crate::endpoint::{self, Endpoint, Proto, Server};
use crate::error::input;
use crate::secret::{self, Credentials};

/// An IMAP server endpoint, or an input error naming the flag.
pub fn imap_server(text: &str, flag: &str) -> anyhow::Result<Server> {
    match endpoint::parse(text)? {
        Endpoint::Server(s) if s.proto == Proto::Imap => Ok(s),
        Endpoint::Server(s) => Err(input(format!(
            "{flag} {s}: {} cannot be used here; give an imaps:// or imap:// account",
            s.scheme()
        ))),
        Endpoint::Mbox(p) => Err(input(format!(
            "{flag} mbox:{}: give an IMAP account here; `mailferry backup --out` writes mbox files",
            p.display()
        ))),
    }
}

/// How one side logs in, as the user typed it: `--{side}password-file`,
/// `--{side}admin USER`, `--{side}token-cmd CMD`.
#[derive(Clone, Copy, Default)]
pub struct Auth<'a> {
    pub password_file: Option<&'a Path>,
    pub admin: Option<&'a str>,
    pub token_cmd: Option<&'a str>,
    /// `--{side}oauth2 FILE`: a provider config for tokens fetched by mailferry.
    pub oauth2: Option<&'a Path>,
}

/// One side's credentials: a token command as given (run at every connect), or
/// a password (the admin's with `admin`) resolved now, once per run, so a retry
/// never prompts again. `flag` is the flags' prefix ("from-", "to-", "") and
/// `env_var`/`what` name the password's variable and the side in messages.
pub fn credentials(
    auth: Auth<'_>,
    flag: &str,
    env_var: &str,
    what: &str,
    server: &Server,
) -> anyhow::Result<Credentials> {
    check_auth(auth, flag)?;
    if let Some(mech) = server.mech {
        let bearer = auth.token_cmd.is_some() || auth.oauth2.is_some();
        if bearer != (mech != crate::sasl::Mech::Plain) {
            return Err(input(format!(
                "{server}: ;AUTH={} does not go with {}: PLAIN is for a password or an admin login, XOAUTH2 and OAUTHBEARER for a token (--{flag}token-cmd, --{flag}oauth2)",
                mech.name(),
                if bearer { "an OAuth2 token" } else { "a password" }
            )));
        }
    }
    if let Some(cmd) = auth.token_cmd {
        return Ok(Credentials::TokenCmd(cmd.to_string()));
    }
    if let Some(file) = auth.oauth2 {
        return Ok(Credentials::OAuth2(std::sync::Arc::new(
            crate::oauth2::Source::load(file)?,
        )));
    }
    if let Some(admin) = auth.admin {
        let password = secret::resolve(
            auth.password_file,
            env_var,
            what,
            &format!("{server} (the password of the admin {admin})"),
        )?;
        return Ok(Credentials::Admin {
            admin: admin.to_string(),
            password,
        });
    }
    Ok(Credentials::Password(secret::resolve(
        auth.password_file,
        env_var,
        what,
        &server.to_string(),
    )?))
}

/// The combinations of login flags that make no sense, refused without I/O.
pub fn check_auth(auth: Auth<'_>, flag: &str) -> anyhow::Result<()> {
    if auth.admin.is_some() && auth.token_cmd.is_some() {
        return Err(input(format!(
            "--{flag}admin and --{flag}token-cmd do not go together: an admin logs in with its password, a token command replaces any password"
        )));
    }
    if auth.token_cmd.is_some() && auth.password_file.is_some() {
        return Err(input(format!(
            "--{flag}token-cmd replaces the password: drop --{flag}password-file"
        )));
    }
    if auth.oauth2.is_some() {
        if auth.token_cmd.is_some() {
            return Err(input(format!(
                "--{flag}oauth2 and --{flag}token-cmd do not go together: give one source of tokens"
            )));
        }
        if auth.admin.is_some() {
            return Err(input(format!(
                "--{flag}oauth2 and --{flag}admin do not go together: an admin logs in with its password, OAuth2 with a token"
            )));
        }
        if auth.password_file.is_some() {
            return Err(input(format!(
                "--{flag}oauth2 replaces the password: drop --{flag}password-file"
            )));
        }
    }
    if auth.admin.is_some_and(|a| a.trim().is_empty()) {
        return Err(input(format!("--{flag}admin needs the admin's user name")));
    }
    if auth.token_cmd.is_some_and(|c| c.trim().is_empty()) {
        return Err(input(format!("--{flag}token-cmd needs a command")));
    }
    Ok(())
}

/// The source's credentials (none for mbox files), see [`credentials`].
pub fn source_credentials(ep: &Endpoint, auth: Auth<'_>) -> anyhow::Result<Option<Credentials>> {
    match ep {
        Endpoint::Server(server) => Ok(Some(credentials(
            auth,
            "from-",
            "MAILFERRY_FROM_PASSWORD",
            "source",
            server,
        )?)),
        Endpoint::Mbox(p) => {
            if auth.admin.is_some() || auth.token_cmd.is_some() || auth.oauth2.is_some() {
                return Err(input(format!(
                    "mbox:{} is read from files: --from-admin, --from-token-cmd and --from-oauth2 are for an IMAP or POP3 source",
                    p.display()
                )));
            }
            Ok(None)
        }
    }
}

/// The target server of a copy and its credentials.
pub fn target(text: &str, auth: Auth<'_>) -> anyhow::Result<(Server, Credentials)> {
    let target = imap_server(text, "--to")?;
    let credentials = credentials(auth, "to-", "MAILFERRY_TO_PASSWORD", "target", &target)?;
    Ok((target, credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_flags_that_do_not_go_together_are_refused() {
        let file = Path::new("pw.txt");
        let cases: [(Auth<'_>, Option<&str>); 6] = [
            (Auth::default(), None),
            (
                Auth {
                    admin: Some("admin"),
                    password_file: Some(file),
                    ..Auth::default()
                },
                None,
            ),
            (
                Auth {
                    token_cmd: Some("tok"),
                    ..Auth::default()
                },
                None,
            ),
            (
                Auth {
                    admin: Some("admin"),
                    token_cmd: Some("tok"),
                    ..Auth::default()
                },
                Some("--from-admin and --from-token-cmd do not go together"),
            ),
            (
                Auth {
                    token_cmd: Some("tok"),
                    password_file: Some(file),
                    ..Auth::default()
                },
                Some("--from-token-cmd replaces the password"),
            ),
            (
                Auth {
                    admin: Some(" "),
                    ..Auth::default()
                },
                Some("--from-admin needs the admin's user name"),
            ),
        ];
        for (auth, refused) in cases {
            match (check_auth(auth, "from-"), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(says)) => assert!(e.to_string().contains(says), "{e}"),
                (got, want) => panic!("{:?} but {want:?}", got.map_err(|e| e.to_string())),
            }
        }
    }
}
