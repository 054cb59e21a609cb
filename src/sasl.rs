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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    Plain,
    XOAuth2,
    OAuthBearer,
}

impl Mech {
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
    fn xoauth2_is_preferred_then_oauthbearer() {
        assert_eq!(bearer_mech(|m| m == "XOAUTH2"), Some(Mech::XOAuth2));
        assert_eq!(bearer_mech(|_| true), Some(Mech::XOAuth2));
        assert_eq!(bearer_mech(|m| m == "OAUTHBEARER"), Some(Mech::OAuthBearer));
        assert_eq!(bearer_mech(|m| m == "PLAIN"), None);
    }
}
