//! OAuth2 access tokens fetched by mailferry itself from a provider's token
//! endpoint, configured by a small JSON file per provider (`--from-oauth2 FILE`,
//! `--to-oauth2 FILE`):
//! - Microsoft app-only: the client-credentials grant with a `client_secret`, or
//!   with a certificate (`certificate_file`: a client assertion JWT signed PS256,
//!   header `x5t#S256`, as Microsoft's "certificate credentials" page says), scope
//!   `https://outlook.office365.com/.default`; the mailbox is the SASL user;
//! - Microsoft delegated: the refresh-token grant (`refresh_token`);
//! - Google: a service account with domain-wide delegation, the jwt-bearer grant
//!   with a JWT signed RS256 by the account's key (`sub` = the mailbox).
//!
//! Invariants: tokens live in memory only (never written anywhere, not even a
//! rotated refresh token); a cached token is used only until `expires_in` minus a
//! margin, and one the server refused is dropped ([`Source::forget`]) so the next
//! connection fetches a fresh one; no secret (client secret, refresh token, key,
//! assertion, access token) appears in an error, and every secrets file is checked
//! for owner-only permissions (a warning, never an error).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::error::{connect_final, connect_with, input, Retry};
use crate::http::{self, Request, Url};
use crate::net::NetOptions;
use crate::secret::Password;

pub const MICROSOFT_APP_SCOPE: &str = "https://outlook.office365.com/.default";
pub const MICROSOFT_USER_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/POP.AccessAsUser.All offline_access";
pub const GOOGLE_SCOPE: &str = "https://mail.google.com/";
/// A JWT assertion's life (Google accepts at most an hour).
const JWT_LIFE: u64 = 3600;

/// The config file as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    provider: String,
    tenant: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    refresh_token: Option<String>,
    refresh_token_file: Option<PathBuf>,
    scope: Option<String>,
    token_url: Option<String>,
    key_file: Option<PathBuf>,
    /// Microsoft app-only with a certificate: its PEM (which may hold the key).
    certificate_file: Option<PathBuf>,
    /// The certificate's private key (PEM), when not in `certificate_file`.
    private_key_file: Option<PathBuf>,
}

/// Google's service-account key file (the fields used; the others are ignored).
#[derive(Deserialize)]
struct GoogleKey {
    client_email: String,
    private_key: String,
    token_uri: Option<String>,
}

enum Flow {
    ClientCredentials {
        client_id: String,
        secret: Password,
    },
    /// Client credentials, the app proven by a JWT signed with its certificate's key.
    Certificate {
        client_id: String,
        key: openssl::pkey::PKey<openssl::pkey::Private>,
        /// Base64url SHA-256 of the certificate's DER (`x5t#S256`).
        thumbprint: String,
    },
    RefreshToken {
        client_id: String,
        secret: Option<Password>,
        /// The newest refresh token (Microsoft may hand out a new one each time).
        refresh: Mutex<Password>,
    },
    JwtBearer {
        client_email: String,
        key: openssl::pkey::PKey<openssl::pkey::Private>,
    },
}

/// One provider config, with its token cache (shared by every connection and row
/// that uses the same file).
pub struct Source {
    /// The config file, for messages.
    file: PathBuf,
    provider: &'static str,
    token_url: Url,
    scope: String,
    flow: Flow,
    /// Mailbox (for Google) or "" (Microsoft's tokens serve every mailbox) → token.
    cache: Mutex<HashMap<String, (Password, Instant)>>,
    /// Users whose last token came from the cache (see [`Source::forget`]).
    served_cached: Mutex<std::collections::HashSet<String>>,
    fetches: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OAuth2({} config {})",
            self.provider,
            self.file.display()
        )
    }
}

/// Warn when a file holding a secret can be read by others than its owner.
pub fn check_private(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                crate::log::warn(format!(
                    "{what} {} can be read by other users (mode {:o}); make it owner-only: chmod 600 {}",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ));
            }
        }
    }
}

fn read_secret_file(base: &Path, path: &Path, what: &str) -> anyhow::Result<Password> {
    let p = base.join(path);
    check_private(&p, what);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| input(format!("cannot read the {what} {}: {e}", p.display())))?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(input(format!("the {what} {} is empty", p.display())));
    }
    Ok(Password::new(line))
}

/// A config file being checked: its path (for messages) and its directory (for
/// the files it names).
struct Config<'a> {
    path: &'a Path,
    base: &'a Path,
}

impl Config<'_> {
    /// An input error naming the config file.
    fn bad(&self, why: String) -> anyhow::Error {
        input(format!("OAuth2 config file {}: {why}", self.path.display()))
    }

    /// A secret given inline (`key`) or in a file (`key_file`), not both; `None`
    /// when neither is given.
    fn secret(
        &self,
        inline: Option<String>,
        file: Option<PathBuf>,
        what: &str,
        key: &str,
    ) -> anyhow::Result<Option<Password>> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(self.bad(format!("give {key} or {key}_file, not both"))),
            (Some(s), None) if !s.trim().is_empty() => Ok(Some(Password::new(s.trim()))),
            (Some(_), None) => Err(self.bad(format!("{key} is empty"))),
            (None, Some(p)) => read_secret_file(self.base, &p, what).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The token endpoint's URL parsed.
    fn url(&self, u: String) -> anyhow::Result<Url> {
        Url::parse(&u).map_err(|e| self.bad(format!("token_url: {e}")))
    }

    /// A Microsoft config: app-only with a client secret or a certificate, or
    /// delegated with a refresh token.
    fn microsoft(
        &self,
        f: File,
        secret: Option<Password>,
        refresh: Option<Password>,
    ) -> anyhow::Result<Source> {
        if f.key_file.is_some() {
            return Err(self.bad("key_file is for provider google".into()));
        }
        let client_id = f
            .client_id
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                self.bad(
                    "client_id is missing (the app registration's Application (client) ID)".into(),
                )
            })?;
        let token_url = self
            .url(microsoft_token_url(f.token_url, f.tenant).map_err(|why| self.bad(why.into()))?)?;
        let certificate = match f.certificate_file {
            Some(c) => {
                if secret.is_some() || refresh.is_some() {
                    return Err(self.bad("certificate_file is for app-only logins without client_secret or refresh_token: give one credential".into()));
                }
                Some(load_certificate(
                    self.base,
                    &c,
                    f.private_key_file.as_deref(),
                )?)
            }
            None if f.private_key_file.is_some() => {
                return Err(self.bad("private_key_file goes with certificate_file".into()))
            }
            None => None,
        };
        let (flow, scope) = match (certificate, refresh) {
            (Some((key, thumbprint)), _) => (
                Flow::Certificate {
                    client_id,
                    key,
                    thumbprint,
                },
                MICROSOFT_APP_SCOPE,
            ),
            (None, Some(r)) => (
                Flow::RefreshToken {
                    client_id,
                    secret,
                    refresh: Mutex::new(r),
                },
                MICROSOFT_USER_SCOPE,
            ),
            (None, None) => (
                Flow::ClientCredentials {
                    client_id,
                    secret: secret.ok_or_else(|| {
                        self.bad("client_secret, client_secret_file or certificate_file is missing (app-only), or give refresh_token (delegated)".into())
                    })?,
                },
                MICROSOFT_APP_SCOPE,
            ),
        };
        Ok(Source::new(
            self.path,
            "Microsoft",
            token_url,
            f.scope.unwrap_or_else(|| scope.into()),
            flow,
        ))
    }

    /// A Google config: a service account's key, nothing else.
    fn google(
        &self,
        f: File,
        secret: Option<Password>,
        refresh: Option<Password>,
    ) -> anyhow::Result<Source> {
        if f.certificate_file.is_some() || f.private_key_file.is_some() {
            return Err(self
                .bad("certificate_file is for provider microsoft; Google takes key_file".into()));
        }
        if secret.is_some() || refresh.is_some() || f.tenant.is_some() {
            return Err(self.bad("provider google takes key_file (the service account's JSON key), not tenant, client_secret or refresh_token".into()));
        }
        let key_path = self.base.join(f.key_file.ok_or_else(|| {
            self.bad("key_file is missing (the service account's JSON key file)".into())
        })?);
        let (key, pkey) = read_google_key(&key_path)?;
        let token_url = self.url(
            f.token_url
                .or(key.token_uri)
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
        )?;
        Ok(Source::new(
            self.path,
            "Google",
            token_url,
            f.scope.unwrap_or_else(|| GOOGLE_SCOPE.into()),
            Flow::JwtBearer {
                client_email: key.client_email,
                key: pkey,
            },
        ))
    }
}

/// Microsoft's token endpoint: `token_url` when given, else the tenant's (a tenant
/// ID or domain); the rule broken otherwise.
fn microsoft_token_url(
    token_url: Option<String>,
    tenant: Option<String>,
) -> Result<String, &'static str> {
    match (token_url, tenant) {
        (Some(u), _) => Ok(u),
        (None, Some(t))
            if !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')) =>
        {
            Ok(format!(
                "https://login.microsoftonline.com/{t}/oauth2/v2.0/token"
            ))
        }
        (None, Some(_)) => Err("tenant must be a tenant ID or domain"),
        (None, None) => Err("tenant is missing (the Directory (tenant) ID)"),
    }
}

/// A Google service account's key file read: its fields, and its private key,
/// which must be an RSA key in PEM.
fn read_google_key(
    key_path: &Path,
) -> anyhow::Result<(GoogleKey, openssl::pkey::PKey<openssl::pkey::Private>)> {
    check_private(key_path, "service account key file");
    let bad_key = |why: String| {
        input(format!(
            "service account key file {}: {why}",
            key_path.display()
        ))
    };
    let text =
        std::fs::read_to_string(key_path).map_err(|e| bad_key(format!("cannot read it: {e}")))?;
    let key: GoogleKey = serde_json::from_str(&text)
        .map_err(|e| bad_key(format!("not a service account key: {e}")))?;
    let pkey = openssl::pkey::PKey::private_key_from_pem(key.private_key.as_bytes())
        .map_err(|_| bad_key("its private_key is not a PEM private key".into()))?;
    if pkey.rsa().is_err() {
        return Err(bad_key(
            "its private_key is not an RSA key (RS256 needs one)".into(),
        ));
    }
    Ok((key, pkey))
}

/// The lifetime of a token answer in seconds: `expires_in` as a number or a string
/// of digits, an hour when it is absent; `None` when it is unreadable.
fn token_life(json: &serde_json::Value) -> Option<u64> {
    match json.get("expires_in") {
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok())),
        None => Some(3600),
    }
}

/// Whether a refusal from the token endpoint may pass later: a server error or
/// too many requests may; anything else is final.
fn refusal_retry(status: u16) -> Retry {
    if status >= 500 || status == 429 {
        Retry::Later
    } else {
        Retry::Final
    }
}

impl Source {
    /// Read and check a config file (relative file names in it are relative to
    /// the config file's directory).
    pub fn load(path: &Path) -> anyhow::Result<Source> {
        check_private(path, "OAuth2 config file");
        let c = Config {
            path,
            base: path.parent().unwrap_or(Path::new(".")),
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| c.bad(format!("cannot read it: {e}")))?;
        // serde_json's messages quote no value, only positions and field names.
        let mut f: File =
            serde_json::from_str(&text).map_err(|e| c.bad(format!("not valid: {e}")))?;
        let secret = c.secret(
            f.client_secret.take(),
            f.client_secret_file.take(),
            "client secret file",
            "client_secret",
        )?;
        let refresh = c.secret(
            f.refresh_token.take(),
            f.refresh_token_file.take(),
            "refresh token file",
            "refresh_token",
        )?;
        match std::mem::take(&mut f.provider).as_str() {
            "microsoft" => c.microsoft(f, secret, refresh),
            "google" => c.google(f, secret, refresh),
            other => Err(c.bad(format!(
                "provider must be \"microsoft\" or \"google\", not {other:?}"
            ))),
        }
    }

    fn new(
        file: &Path,
        provider: &'static str,
        token_url: Url,
        scope: String,
        flow: Flow,
    ) -> Source {
        Source {
            file: file.to_path_buf(),
            provider,
            token_url,
            scope,
            flow,
            cache: Mutex::default(),
            served_cached: Mutex::default(),
            fetches: Default::default(),
        }
    }

    fn cache_key<'a>(&self, user: &'a str) -> &'a str {
        match self.flow {
            Flow::JwtBearer { .. } => user,
            _ => "",
        }
    }

    /// An access token for `user`: the cached one while it is fresh, else a new one.
    pub fn token(&self, user: &str, net: &NetOptions) -> anyhow::Result<Password> {
        let key = self.cache_key(user);
        if let Some((t, until)) = self.cache.lock().unwrap().get(key) {
            if Instant::now() < *until {
                self.served_cached.lock().unwrap().insert(user.to_string());
                return Ok(t.clone());
            }
        }
        self.served_cached.lock().unwrap().remove(user);
        let (token, life) = self.fetch(user, net)?;
        // Refresh before it expires: a margin of a third of its life, at most 5 min.
        let margin = (life / 3).min(Duration::from_secs(300));
        self.cache.lock().unwrap().insert(
            key.to_string(),
            (token.clone(), Instant::now() + life - margin),
        );
        Ok(token)
    }

    /// Drop `user`'s cached token (the server refused it): the next login fetches
    /// one. True when the refused token had come from the cache, so a fresh one
    /// may pass; false when it was fresh from the endpoint (retrying cannot help).
    pub fn forget(&self, user: &str) -> bool {
        self.cache.lock().unwrap().remove(self.cache_key(user));
        self.served_cached.lock().unwrap().remove(user)
    }

    /// How many tokens were fetched (for tests and the trace).
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A fresh token from the endpoint and its life; a rotated refresh token is kept.
    fn fetch(&self, user: &str, net: &NetOptions) -> anyhow::Result<(Password, Duration)> {
        if !self.token_url.tls && !self.token_url.is_loopback() {
            return Err(connect_final(format!(
                "the {} token endpoint {} must be https:// (http:// only on this machine)",
                self.provider, self.token_url
            )));
        }
        let form = self.form(user)?;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let where_ = format!("the {} token endpoint {}", self.provider, self.token_url);
        let resp = self.post(form, net, &where_)?;
        let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        let field = |k: &str| json.get(k).and_then(|v| v.as_str()).unwrap_or("");
        if resp.status != 200 {
            return Err(self.refusal(
                &where_,
                resp.status,
                field("error"),
                field("error_description"),
            ));
        }
        let token = field("access_token");
        if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(connect_final(format!(
                "{where_} answered without a usable access_token"
            )));
        }
        let life = token_life(&json).ok_or_else(|| {
            connect_final(format!("{where_} answered with an unreadable expires_in"))
        })?;
        if let (Flow::RefreshToken { refresh, .. }, new) = (&self.flow, field("refresh_token")) {
            if !new.is_empty() {
                *refresh.lock().unwrap() = Password::new(new);
            }
        }
        Ok((Password::new(token), Duration::from_secs(life)))
    }

    /// The token request's form for the flow (`user`: the mailbox, for Google).
    fn form(&self, user: &str) -> anyhow::Result<Form> {
        let mut form = Form::default();
        match &self.flow {
            Flow::ClientCredentials { client_id, secret } => {
                form.add("grant_type", "client_credentials");
                form.add("client_id", client_id);
                form.add("client_secret", secret.expose());
                form.add("scope", &self.scope);
            }
            Flow::Certificate {
                client_id,
                key,
                thumbprint,
            } => {
                let jwt = self.client_assertion(client_id, key, thumbprint)?;
                form.add("grant_type", "client_credentials");
                form.add("client_id", client_id);
                form.add(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                );
                form.add("client_assertion", jwt.expose());
                form.add("scope", &self.scope);
            }
            Flow::RefreshToken {
                client_id,
                secret,
                refresh,
            } => {
                form.add("grant_type", "refresh_token");
                form.add("client_id", client_id);
                if let Some(s) = secret {
                    form.add("client_secret", s.expose());
                }
                form.add("refresh_token", refresh.lock().unwrap().expose());
                form.add("scope", &self.scope);
            }
            Flow::JwtBearer { client_email, key } => {
                let jwt = self.jwt(client_email, key, user)?;
                form.add("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
                form.add("assertion", jwt.expose());
            }
        }
        Ok(form)
    }

    /// The form POSTed to the token endpoint (`where_` names it in errors).
    fn post(&self, form: Form, net: &NetOptions, where_: &str) -> anyhow::Result<http::Response> {
        let stream = http::connect(&self.token_url, net)
            .map_err(|e| connect_with(format!("{where_}: {e:#}"), Retry::Later))?;
        let target = if self.token_url.base.is_empty() {
            "/".to_string()
        } else {
            self.token_url.base.clone()
        };
        let host = self.token_url.authority();
        let body = Password::new(form.0);
        http::exchange(
            stream,
            &host,
            &Request {
                method: "POST",
                target: &target,
                headers: &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Accept", "application/json"),
                ],
                body: body.expose().as_bytes(),
            },
            http::MAX_BODY,
        )
        .map_err(|e| connect_with(format!("{where_}: {e}"), Retry::Later))
    }

    /// The error for a token endpoint's refusal: its status, error code and words
    /// (control characters left out, 300 at most) and a hint of what to check.
    fn refusal(&self, where_: &str, status: u16, error: &str, description: &str) -> anyhow::Error {
        let description: String = description
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        let hint = self.error_hint(error);
        let text = format!(
            "{where_} refused to issue a token (HTTP {}{}{}){hint}",
            status,
            if error.is_empty() {
                String::new()
            } else {
                format!(", {error}")
            },
            if description.is_empty() {
                String::new()
            } else {
                format!(": {description}")
            },
        );
        connect_with(text, refusal_retry(status))
    }

    fn error_hint(&self, error: &str) -> String {
        let h = match error {
            "invalid_client" => match self.flow {
                Flow::Certificate { .. } => "the client ID is wrong, or the certificate is not (or no longer) uploaded to the app registration, expired or revoked",
                _ => "the client ID or client secret is wrong, expired or revoked (check the app registration and its secret)",
            },
            "unauthorized_client" => "the app is not allowed this grant: revoked, disabled, or (Google) no domain-wide delegation for this client ID and scope",
            "invalid_grant" => match self.flow {
                Flow::RefreshToken { .. } => "the refresh token is expired or revoked: sign in again for a new one",
                Flow::JwtBearer { .. } => "the service account's assertion was refused (the mailbox, the key, or the clock)",
                Flow::ClientCredentials { .. } | Flow::Certificate { .. } => "the grant was refused",
            },
            "invalid_scope" => "the scope is wrong for this app",
            "invalid_request" => "check tenant, client_id and scope in the config file",
            _ => return String::new(),
        };
        format!("; {h}")
    }

    /// The RS256-signed JWT of the jwt-bearer grant for mailbox `user`.
    fn jwt(
        &self,
        client_email: &str,
        key: &openssl::pkey::PKey<openssl::pkey::Private>,
        user: &str,
    ) -> anyhow::Result<Password> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": client_email,
            "sub": user,
            "scope": self.scope,
            "aud": self.token_url.to_string(),
            "iat": now,
            "exp": now + JWT_LIFE,
        });
        sign_jwt(&header, &claims, key, false)
            .map_err(|_| connect_final("cannot sign the service account's JWT with its key"))
    }

    /// Microsoft's client assertion for certificate credentials: PS256, the
    /// certificate named by `x5t#S256`; `aud` the token endpoint, `iss` = `sub` =
    /// the client ID, a fresh `jti`, valid ten minutes.
    fn client_assertion(
        &self,
        client_id: &str,
        key: &openssl::pkey::PKey<openssl::pkey::Private>,
        thumbprint: &str,
    ) -> anyhow::Result<Password> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut jti = [0u8; 16];
        openssl::rand::rand_bytes(&mut jti)
            .map_err(|_| connect_final("no random bytes for the client assertion"))?;
        let header = serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": thumbprint});
        let claims = serde_json::json!({
            "aud": self.token_url.to_string(),
            "iss": client_id,
            "sub": client_id,
            "jti": b64url(&jti),
            "nbf": now,
            "iat": now,
            "exp": now + 600,
        });
        sign_jwt(&header, &claims, key, true).map_err(|_| {
            connect_final("cannot sign the client assertion with the certificate's key")
        })
    }
}

/// `header.claims.signature`, signed with SHA-256: RSASSA-PSS (PS256, salt as long
/// as the digest) when `pss`, else PKCS#1 v1.5 (RS256).
fn sign_jwt(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    pss: bool,
) -> Result<Password, openssl::error::ErrorStack> {
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), key)?;
    if pss {
        signer.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS)?;
        signer.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH)?;
        signer.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())?;
    }
    let sig = signer.sign_oneshot_to_vec(signing_input.as_bytes())?;
    Ok(Password::new(format!("{signing_input}.{}", b64url(&sig))))
}

/// The certificate of an app registration and its private key: the key from
/// `key_file`, else from the certificate's own PEM; it must be RSA and match the
/// certificate. Gives the key and the certificate's `x5t#S256` thumbprint.
fn load_certificate(
    base: &Path,
    cert_file: &Path,
    key_file: Option<&Path>,
) -> anyhow::Result<(openssl::pkey::PKey<openssl::pkey::Private>, String)> {
    let cert_path = base.join(cert_file);
    let bad = |why: String| input(format!("certificate file {}: {why}", cert_path.display()));
    let pem = std::fs::read(&cert_path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let cert = openssl::x509::X509::from_pem(&pem)
        .map_err(|_| bad("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()))?;
    let (key_path, key_pem) = match key_file {
        Some(k) => {
            let p = base.join(k);
            let text = std::fs::read(&p).map_err(|e| {
                input(format!(
                    "cannot read the private key file {}: {e}",
                    p.display()
                ))
            })?;
            (p, text)
        }
        None => (cert_path.clone(), pem),
    };
    check_private(&key_path, "certificate private key file");
    let key = openssl::pkey::PKey::private_key_from_pem(&key_pem).map_err(|_| {
        input(format!(
            "{}: no PEM private key in it (give private_key_file when the key is apart)",
            key_path.display()
        ))
    })?;
    if key.rsa().is_err() {
        return Err(bad("its key is not an RSA key (PS256 needs one)".into()));
    }
    let matches = cert
        .public_key()
        .map(|public| public.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err(bad(
            "the private key does not belong to this certificate".into()
        ));
    }
    let der = cert
        .to_der()
        .map_err(|_| bad("cannot encode the certificate".into()))?;
    let digest = openssl::hash::hash(openssl::hash::MessageDigest::sha256(), &der)
        .map_err(|_| bad("cannot hash the certificate".into()))?;
    Ok((key, b64url(&digest)))
}

/// Base64url without padding (RFC 7515).
pub fn b64url(data: &[u8]) -> String {
    openssl::base64::encode_block(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// An `application/x-www-form-urlencoded` body.
#[derive(Default)]
struct Form(String);

impl Form {
    fn add(&mut self, k: &str, v: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        for (i, s) in [k, v].into_iter().enumerate() {
            if i == 1 {
                self.0.push('=');
            }
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    self.0.push(b as char);
                } else {
                    self.0.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_token_url_from_token_url_or_tenant() {
        let s = |v: &str| Some(v.to_string());
        for (token_url, tenant, want) in [
            (s("http://127.0.0.1:9/t"), None, Ok("http://127.0.0.1:9/t")),
            (
                s("http://127.0.0.1:9/t"),
                s("bad tenant"),
                Ok("http://127.0.0.1:9/t"),
            ),
            (
                None,
                s("contoso.onmicrosoft.com"),
                Ok("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"),
            ),
            (None, s("a/b"), Err("tenant must be a tenant ID or domain")),
            (None, s(""), Err("tenant must be a tenant ID or domain")),
            (
                None,
                None,
                Err("tenant is missing (the Directory (tenant) ID)"),
            ),
        ] {
            assert_eq!(
                microsoft_token_url(token_url.clone(), tenant.clone()),
                want.map(str::to_string),
                "{token_url:?} {tenant:?}"
            );
        }
    }

    #[test]
    fn token_life_and_retry_of_answers() {
        for (json, want) in [
            (r#"{"expires_in": 600}"#, Some(600)),
            (r#"{"expires_in": "600"}"#, Some(600)),
            (r#"{}"#, Some(3600)),
            (r#"{"expires_in": "soon"}"#, None),
            (r#"{"expires_in": -1}"#, None),
        ] {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(token_life(&v), want, "{json}");
        }
        for (status, want) in [
            (400, Retry::Final),
            (401, Retry::Final),
            (429, Retry::Later),
            (500, Retry::Later),
            (503, Retry::Later),
        ] {
            assert_eq!(refusal_retry(status), want, "{status}");
        }
    }

    #[test]
    fn forms_and_base64url_encode_as_the_rfcs_say() {
        let mut f = Form::default();
        f.add("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
        f.add("scope", "https://a/b c");
        assert_eq!(
            f.0,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&scope=https%3A%2F%2Fa%2Fb%20c"
        );
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn bad_configs_are_refused_without_echoing_secrets() {
        let dir = std::env::temp_dir().join(format!("mailferry-oauth2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("c.json");
        for (text, says) in [
            (r#"{"provider":"yahoo"}"#, "provider must be"),
            (
                r#"{"provider":"microsoft","tenant":"t","client_secret":"S3CRET-x"}"#,
                "client_id is missing",
            ),
            (
                r#"{"provider":"microsoft","client_id":"c","client_secret":"S3CRET-x"}"#,
                "tenant is missing",
            ),
            (
                r#"{"provider":"microsoft","tenant":"t","client_id":"c"}"#,
                "client_secret, client_secret_file or certificate_file",
            ),
            (
                r#"{"provider":"microsoft","tenant":"t","client_id":"c","client_secret":"S3CRET-x","certificate_file":"a.pem"}"#,
                "give one credential",
            ),
            (
                r#"{"provider":"microsoft","tenant":"t","client_id":"c","private_key_file":"k.pem"}"#,
                "private_key_file goes with certificate_file",
            ),
            (
                r#"{"provider":"microsoft","tenant":"t","client_id":"c","certificate_file":"none.pem"}"#,
                "cannot read it",
            ),
            (
                r#"{"provider":"google","certificate_file":"a.pem"}"#,
                "certificate_file is for provider microsoft",
            ),
            (
                r#"{"provider":"google","client_secret":"S3CRET-x"}"#,
                "key_file",
            ),
            (
                r#"{"provider":"microsoft","client_secret":"S3CRET-x","bogus":1}"#,
                "unknown field",
            ),
        ] {
            std::fs::write(&cfg, text).unwrap();
            let err = format!("{:#}", Source::load(&cfg).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
            assert!(!err.contains("S3CRET"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A token endpoint on 127.0.0.1 answering each POST with a new token.
    fn endpoint(expires_in: u64) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                let mut r = std::io::BufReader::new(c.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                assert!(String::from_utf8_lossy(&body).contains("grant_type=client_credentials"));
                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let a = format!("{{\"access_token\":\"tok{n}\",\"expires_in\":{expires_in}}}");
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{a}",
                    a.len()
                );
            }
        });
        (port, served)
    }

    #[test]
    fn tokens_are_cached_until_near_expiry_and_a_refused_cached_one_is_replaced() {
        let (port, served) = endpoint(3600);
        let dir = std::env::temp_dir().join(format!("mailferry-oauth2c-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("ms.json");
        std::fs::write(
            &cfg,
            format!(r#"{{"provider":"microsoft","client_id":"c","client_secret":"s","token_url":"http://127.0.0.1:{port}/t"}}"#),
        )
        .unwrap();
        let src = Source::load(&cfg).unwrap();
        let net = NetOptions::default();
        assert_eq!(src.token("a@x", &net).unwrap().expose(), "tok0");
        assert_eq!(
            src.token("b@x", &net).unwrap().expose(),
            "tok0",
            "app-only: one token for all"
        );
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(
            src.forget("b@x"),
            "b's token came from the cache: a fresh one may pass"
        );
        assert_eq!(src.token("b@x", &net).unwrap().expose(), "tok1");
        assert!(
            !src.forget("b@x"),
            "a fresh token refused: retrying cannot help"
        );

        // A token living 3 s is refreshed after 2 s (a third of its life as margin).
        let (port, _) = endpoint(3);
        std::fs::write(
            &cfg,
            format!(r#"{{"provider":"microsoft","client_id":"c","client_secret":"s","token_url":"http://127.0.0.1:{port}/t"}}"#),
        )
        .unwrap();
        let src = Source::load(&cfg).unwrap();
        assert_eq!(src.token("a@x", &net).unwrap().expose(), "tok0");
        assert_eq!(src.token("a@x", &net).unwrap().expose(), "tok0");
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(src.token("a@x", &net).unwrap().expose(), "tok1");
        assert_eq!(src.fetches(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
