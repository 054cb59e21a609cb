//! SASL messages shared by the IMAP and POP3 clients: PLAIN with an authorization
//! identity (RFC 4616), XOAUTH2 (Google's and Microsoft's) and OAUTHBEARER
//! (RFC 7628), and which of them a server's mechanisms allow.
//!
//! Invariants:
//! - these bytes are secrets: callers send them base64-encoded and trace them only
//!   as `<credentials masked>`;
//! - the mechanism is chosen from what the server announces, never guessed: a login
//!   the server cannot take is refused before a byte of it is sent.

/// What one connection logs in with: asked afresh at every (re)connect from the
/// side's [`crate::secret::Credentials`].
pub enum Login<'a> {
    /// The mailbox's own password: PLAIN (or LOGIN/USER+PASS) as always.
    Password(&'a str),
    /// An administrator (master user) logging in to the mailbox: PLAIN with
    /// authzid = the mailbox, authcid = `admin`.
    Admin { admin: &'a str, password: &'a str },
    /// An OAuth2 access token: XOAUTH2 or OAUTHBEARER.
    Bearer(&'a str),
}

/// A SASL mechanism mailferry speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mech {
    Plain,
    XOAuth2,
    OAuthBearer,
}

impl Mech {
    /// The mechanism named `name` (as in a URL's `;AUTH=NAME`, any case).
    pub fn parse(name: &str) -> Option<Mech> {
        [Mech::Plain, Mech::XOAuth2, Mech::OAuthBearer]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::XOAuth2 => "XOAUTH2",
            Mech::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// What the client answers to a challenge after its response was refused,
    /// so the server can end the exchange with its tagged/status failure:
    /// XOAUTH2 an empty response, OAUTHBEARER `%x01` (RFC 7628 3.2.3), PLAIN
    /// a cancel (`*`, as a raw line).
    pub fn abort_line(self) -> &'static str {
        match self {
            Mech::XOAuth2 => "",
            Mech::OAuthBearer => "AQ==",
            Mech::Plain => "*",
        }
    }
}

/// The bearer mechanism to use with a server offering `offers` (a predicate on
/// a mechanism name): XOAUTH2 where offered (Microsoft offers only it, Google
/// both), OAUTHBEARER otherwise; `None` when neither is.
pub fn bearer_mech(offers: impl Fn(&str) -> bool) -> Option<Mech> {
    if offers("XOAUTH2") {
        Some(Mech::XOAuth2)
    } else if offers("OAUTHBEARER") {
        Some(Mech::OAuthBearer)
    } else {
        None
    }
}

/// How one login goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The protocol's own password command: IMAP `LOGIN`, POP3 `USER`/`PASS`.
    Command,
    /// `AUTHENTICATE`/`AUTH` with this mechanism.
    Sasl(Mech),
}

/// Choose how to log in (a pure decision, table-tested below): `offers` says
/// whether the server announces a SASL mechanism, `plain_first` whether a
/// password should go by SASL PLAIN when offered (IMAP: with SASL-IR only, so
/// it costs no extra round trip; POP3: always), `forced` is the mechanism the
/// endpoint names (`;AUTH=NAME`). The error says what is missing, in words for
/// the user; nothing has been sent then.
pub fn choose(
    login: &Login<'_>,
    forced: Option<Mech>,
    offers: impl Fn(&str) -> bool,
    plain_first: bool,
) -> Result<Way, String> {
    let bearer = matches!(login, Login::Bearer(_));
    if let Some(m) = forced {
        if bearer != (m != Mech::Plain) {
            return Err(format!(
                ";AUTH={} does not go with {}: PLAIN is for a password or an admin login, XOAUTH2 and OAUTHBEARER for an OAuth2 token",
                m.name(),
                if bearer { "an OAuth2 token" } else { "a password" }
            ));
        }
        if !offers(m.name()) {
            return Err(format!(
                "the server does not offer {} (asked for by ;AUTH={} in the address)",
                m.name(),
                m.name()
            ));
        }
        return Ok(Way::Sasl(m));
    }
    match login {
        Login::Password(_) if offers("PLAIN") && plain_first => Ok(Way::Sasl(Mech::Plain)),
        Login::Password(_) => Ok(Way::Command),
        Login::Admin { .. } if offers("PLAIN") => Ok(Way::Sasl(Mech::Plain)),
        Login::Admin { .. } => Err(
            "the server does not offer SASL PLAIN, which an admin login needs (authorization identity = the mailbox)".into(),
        ),
        Login::Bearer(_) => bearer_mech(offers).map(Way::Sasl).ok_or_else(|| {
            "the server offers neither XOAUTH2 nor OAUTHBEARER, which an OAuth2 token needs".into()
        }),
    }
}

/// PLAIN: `authzid NUL authcid NUL password` (an empty authzid: log in as authcid).
pub fn plain(authzid: &str, authcid: &str, password: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(authzid.len() + authcid.len() + password.len() + 2);
    b.extend_from_slice(authzid.as_bytes());
    b.push(0);
    b.extend_from_slice(authcid.as_bytes());
    b.push(0);
    b.extend_from_slice(password.as_bytes());
    b
}

/// XOAUTH2: `user=USER ^A auth=Bearer TOKEN ^A ^A`.
pub fn xoauth2(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// OAUTHBEARER (RFC 7628): a GS2 header naming the user (`,` and `=` escaped as
/// `=2C` and `=3D`), then `auth=Bearer TOKEN`, each key/value ended by `^A`.
pub fn oauthbearer(user: &str, token: &str) -> Vec<u8> {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    format!("n,a={user},\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// The initial response of `mech` for `user`, base64-encoded.
pub fn initial_response(mech: Mech, user: &str, login: &Login<'_>) -> String {
    let raw = match (mech, login) {
        (Mech::Plain, Login::Password(p)) => plain("", user, p),
        (Mech::Plain, Login::Admin { admin, password }) => plain(user, admin, password),
        (Mech::XOAuth2, Login::Bearer(t)) => xoauth2(user, t),
        (Mech::OAuthBearer, Login::Bearer(t)) => oauthbearer(user, t),
        // Never chosen: a token goes only with a bearer mechanism, a password
        // only with PLAIN.
        _ => Vec::new(),
    };
    crate::imap::client::base64(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_byte_exact() {
        assert_eq!(plain("anna@x.ch", "admin", "pw"), b"anna@x.ch\0admin\0pw");
        assert_eq!(plain("", "anna", "pw"), b"\0anna\0pw");
        assert_eq!(
            xoauth2("anna@x.ch", "tok"),
            b"user=anna@x.ch\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            oauthbearer("a,b=c@x.ch", "tok"),
            b"n,a=a=2Cb=3Dc@x.ch,\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn how_each_login_goes() {
        use Mech::*;
        let pw = Login::Password("pw");
        let admin = Login::Admin {
            admin: "a",
            password: "pw",
        };
        let tok = Login::Bearer("t");
        let all = |_: &str| true;
        let none = |_: &str| false;
        let plain_only = |m: &str| m == "PLAIN";
        let bearer_only = |m: &str| m == "OAUTHBEARER";
        // (login, forced, offers, plain_first) -> way or a piece of the error
        type Case<'a> = (
            &'a Login<'a>,
            Option<Mech>,
            &'a dyn Fn(&str) -> bool,
            bool,
            Result<Way, &'a str>,
        );
        let cases: [Case; 14] = [
            (&pw, None, &all, true, Ok(Way::Sasl(Plain))),
            (&pw, None, &all, false, Ok(Way::Command)),
            (&pw, None, &none, true, Ok(Way::Command)),
            (&pw, Some(Plain), &plain_only, false, Ok(Way::Sasl(Plain))),
            (&pw, Some(Plain), &none, true, Err("does not offer PLAIN")),
            (
                &pw,
                Some(XOAuth2),
                &all,
                true,
                Err("does not go with a password"),
            ),
            (&admin, None, &plain_only, false, Ok(Way::Sasl(Plain))),
            (&admin, None, &none, true, Err("admin login needs")),
            (&tok, None, &all, true, Ok(Way::Sasl(XOAuth2))),
            (&tok, None, &bearer_only, true, Ok(Way::Sasl(OAuthBearer))),
            (
                &tok,
                None,
                &plain_only,
                true,
                Err("neither XOAUTH2 nor OAUTHBEARER"),
            ),
            (
                &tok,
                Some(OAuthBearer),
                &all,
                true,
                Ok(Way::Sasl(OAuthBearer)),
            ),
            (
                &tok,
                Some(XOAuth2),
                &bearer_only,
                true,
                Err("does not offer XOAUTH2"),
            ),
            (
                &tok,
                Some(Plain),
                &all,
                true,
                Err("does not go with an OAuth2 token"),
            ),
        ];
        for (i, (login, forced, offers, plain_first, want)) in cases.into_iter().enumerate() {
            let got = choose(login, forced, offers, plain_first);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "case {i}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "case {i}: {g}"),
                (g, w) => panic!("case {i}: got {g:?}, want {w:?}"),
            }
        }
        assert_eq!(Mech::parse("xoauth2"), Some(XOAuth2));
        assert_eq!(Mech::parse("GSSAPI"), None);
    }

    #[test]
    fn xoauth2_is_preferred_then_oauthbearer() {
        assert_eq!(bearer_mech(|m| m == "XOAUTH2"), Some(Mech::XOAuth2));
        assert_eq!(bearer_mech(|_| true), Some(Mech::XOAuth2));
        assert_eq!(bearer_mech(|m| m == "OAUTHBEARER"), Some(Mech::OAuthBearer));
        assert_eq!(bearer_mech(|m| m == "PLAIN"), None);
    }
}
