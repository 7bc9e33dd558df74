//! What every external identity provider shares: the [`IdentityProvider`]
//! trait, the per-sign-in [`PendingAuthorization`] held server-side between
//! [`IdentityProvider::start`] and [`IdentityProvider::finish`], the
//! redirect's [`Callback`], the resulting [`ExternalIdentity`], and
//! [`IdpError`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::email::EmailAddress;
use crate::error::{Category, ConfigError};
use crate::http::{HttpClient, HttpError};
use crate::keys::{self, Purpose};
use crate::random::{self, SecureRandom};
use crate::secret::{Digest, SecretString, constant_time_eq};

/// Shortest secret [`BindingKey::new`] accepts, in bytes.
pub const MIN_BINDING_SECRET_LEN: usize = 32;
/// Longest query string [`Callback::parse`] reads, in bytes.
pub const MAX_CALLBACK_LEN: usize = 16 * 1024;
/// Longest decoded value of one callback parameter, in bytes.
pub const MAX_CALLBACK_PARAM_LEN: usize = 4 * 1024;
/// How long after [`IdentityProvider::start`] a callback is still accepted.
pub const AUTHORIZATION_MAX_AGE: time::Duration = time::Duration::minutes(30);

/// How much of an OAuth `error` code an [`IdpError`] quotes, in characters.
const MAX_ERROR_CODE_CHARS: usize = 64;
/// How much of an `error_description` an [`IdpError`] quotes, in characters.
const MAX_DESCRIPTION_CHARS: usize = 256;

/// The key that binds a sign-in's `nonce` and PKCE `code_verifier` to its
/// [`PendingAuthorization`].
///
/// Neither value is stored: both are HMAC-SHA256 of a label and the pending
/// authorization's random salt under this key, so a leaked flow record does
/// not let anyone finish the sign-in. The service takes it from its
/// [`KeyRing`](crate::keys::KeyRing) (a key derived from the signing key);
/// hosts and tests can build one with [`BindingKey::new`].
///
/// `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct BindingKey(hmac::Key);

impl BindingKey {
    /// A binding key derived (HKDF-SHA256, purpose
    /// `guestpass/federation-binding/v1`) from `secret`, which must hold at
    /// least [`MIN_BINDING_SECRET_LEN`] bytes from a CSPRNG. The same secret
    /// gives the same key as a [`KeyRing`](crate::keys::KeyRing) signing with
    /// it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `binding_key` when the secret is too
    /// short.
    ///
    /// ```
    /// use guestpass::idp::BindingKey;
    /// assert!(BindingKey::new(&[7u8; 32]).is_ok());
    /// assert!(BindingKey::new(b"short").is_err());
    /// ```
    pub fn new(secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < MIN_BINDING_SECRET_LEN {
            return Err(ConfigError::Invalid {
                field: "binding_key",
                reason: format!("must be at least {MIN_BINDING_SECRET_LEN} bytes"),
            });
        }
        Ok(Self(keys::derive(secret, Purpose::Federation)))
    }

    pub(crate) fn from_key(key: hmac::Key) -> Self {
        Self(key)
    }

    /// HMAC-SHA256 over `label ‖ salt`, base64url without padding (43
    /// characters).
    fn derive(&self, label: &[u8], salt: &[u8; 32]) -> SecretString {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(label);
        ctx.update(salt);
        SecretString::new(URL_SAFE_NO_PAD.encode(ctx.sign().as_ref()))
    }
}

impl fmt::Debug for BindingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindingKey(..)")
    }
}

/// What a provider needs for one call: the injected effects and time.
///
/// The core never reads the system clock: `now` decides every expiry check.
pub struct IdpContext<'a> {
    /// Carries the provider's HTTP exchanges (discovery, keys, token, userinfo).
    pub http: &'a dyn HttpClient,
    /// Draws `state` and the salt of each sign-in.
    pub rng: &'a dyn SecureRandom,
    /// The current instant.
    pub now: OffsetDateTime,
    /// Binds the `nonce` and PKCE verifier to the pending authorization.
    pub binding_key: &'a BindingKey,
}

impl fmt::Debug for IdpContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpContext")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// An external identity provider a guest signs in with.
///
/// A sign-in is a pair of calls: [`start`](IdentityProvider::start) returns
/// the URL to send the browser to and a [`PendingAuthorization`] the host
/// keeps server-side (in the flow record); when the browser comes back to
/// the redirect URI, [`finish`](IdentityProvider::finish) takes that pending
/// authorization and the parsed [`Callback`] and returns the verified
/// [`ExternalIdentity`].
///
/// The trait is object safe: hosts hold `Arc<dyn IdentityProvider>`.
#[async_trait::async_trait]
pub trait IdentityProvider: Send + Sync + fmt::Debug {
    /// The provider's configured id, such as `google` (1 to 64 characters of
    /// `A-Z a-z 0-9 . _ -`).
    fn id(&self) -> &str;

    /// The issuer its identities carry, or `None` when it depends on the
    /// tenant the user signs in from (multi-tenant issuers).
    fn issuer(&self) -> Option<&str>;

    /// Begins a sign-in whose callback arrives at `redirect_uri` (which must
    /// be registered with the provider exactly as given).
    async fn start(&self, ctx: &IdpContext<'_>, redirect_uri: &str) -> Result<AuthorizationStart, IdpError>;

    /// Completes the sign-in begun with `pending`, from the redirect's
    /// `callback`.
    async fn finish(
        &self,
        ctx: &IdpContext<'_>,
        pending: &PendingAuthorization,
        callback: &Callback,
    ) -> Result<ExternalIdentity, IdpError>;
}

/// Where to send the browser, and what to keep until it comes back.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationStart {
    /// The provider's authorization URL with this sign-in's parameters.
    pub url: Url,
    /// What the host stores server-side for [`IdentityProvider::finish`].
    pub pending: PendingAuthorization,
}

/// The URL's query carries `state`: `Debug` shows the URL without it.
impl fmt::Debug for AuthorizationStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationStart")
            .field("url", &without_query(&self.url))
            .field("pending", &self.pending)
            .finish()
    }
}

/// `url` with its query shown as `?..`.
fn without_query(url: &Url) -> String {
    let mut shown = url.clone();
    let had_query = shown.query().is_some();
    shown.set_query(None);
    let mut out = String::from(shown);
    if had_query {
        out.push_str("?..");
    }
    out
}

/// The authorization request a browser is sent to: its query carries the
/// sign-in's `state`, `nonce` and PKCE challenge, so `Debug` shows it
/// without the query (pages and logs that print a step stay clean).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationUrl(Url);

impl AuthorizationUrl {
    /// The URL to redirect the browser to.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The URL as a string, for a `Location` header.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URL.
    pub fn into_url(self) -> Url {
        self.0
    }
}

impl From<Url> for AuthorizationUrl {
    fn from(url: Url) -> Self {
        Self(url)
    }
}

impl fmt::Debug for AuthorizationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AuthorizationUrl")
            .field(&without_query(&self.0))
            .finish()
    }
}

/// One sign-in in progress, held server-side between
/// [`IdentityProvider::start`] and [`IdentityProvider::finish`].
///
/// It holds no secret usable on its own: the random `state` sent to the
/// provider is kept only as its SHA-256, and the `nonce` and PKCE
/// `code_verifier` are not kept at all but derived from `salt` with the
/// [`BindingKey`]. `Debug` does not show the salt.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingAuthorization {
    /// The provider the sign-in was started with.
    pub provider_id: String,
    /// SHA-256 of the `state` parameter.
    pub state_hash: Digest,
    /// 32 random bytes (base64url in JSON) the nonce and verifier derive from.
    #[serde(with = "salt_base64")]
    pub salt: [u8; 32],
    /// The redirect URI the authorization request named; the token request
    /// repeats it.
    pub redirect_uri: String,
    /// When the sign-in was started.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
}

impl PendingAuthorization {
    /// A fresh sign-in: random `state` (returned, to put into the URL) and
    /// salt from `ctx.rng`. For providers written by hosts: store the
    /// pending authorization (the flow keeps it), send the `state`, and
    /// check the callback with [`check_callback`](Self::check_callback).
    ///
    /// # Errors
    ///
    /// [`IdpError::RandomUnavailable`].
    pub fn generate(
        ctx: &IdpContext<'_>,
        provider_id: &str,
        redirect_uri: &str,
    ) -> Result<(Self, SecretString), IdpError> {
        let state_bytes = random::bytes::<32>(ctx.rng).map_err(|_| IdpError::RandomUnavailable)?;
        let salt = random::bytes::<32>(ctx.rng).map_err(|_| IdpError::RandomUnavailable)?;
        let state = SecretString::new(URL_SAFE_NO_PAD.encode(state_bytes));
        let pending = Self {
            provider_id: provider_id.to_owned(),
            state_hash: Digest::sha256(state.expose().as_bytes()),
            salt,
            redirect_uri: redirect_uri.to_owned(),
            issued_at: ctx.now,
        };
        Ok((pending, state))
    }

    /// The checks every provider runs on its callback before any I/O, for
    /// providers written by hosts: the pending authorization is
    /// `provider_id`'s, the provider reported no error, `state` matches (in
    /// constant time), the sign-in is at most [`AUTHORIZATION_MAX_AGE`] old,
    /// `iss` (when present, RFC 9207) is `issuer`, and a `code` is present.
    /// Returns the code.
    ///
    /// # Errors
    ///
    /// The [`IdpError`] of the first check that fails.
    pub fn check_callback<'c>(
        &self,
        provider_id: &str,
        issuer: &str,
        callback: &'c Callback,
        now: OffsetDateTime,
    ) -> Result<&'c SecretString, IdpError> {
        check_callback(provider_id, ExpectedIssuer::Exact(issuer), self, callback, now)
    }

    /// The OpenID Connect `nonce`: base64url(HMAC(key, `nonce` ‖ salt)).
    pub(crate) fn nonce(&self, key: &BindingKey) -> SecretString {
        key.derive(b"nonce", &self.salt)
    }

    /// The PKCE `code_verifier` (RFC 7636): base64url(HMAC(key, `pkce` ‖
    /// salt)), 43 characters of the unreserved set.
    pub(crate) fn code_verifier(&self, key: &BindingKey) -> SecretString {
        key.derive(b"pkce", &self.salt)
    }

    /// The S256 `code_challenge`: base64url(SHA-256(verifier)).
    pub(crate) fn code_challenge(&self, key: &BindingKey) -> String {
        let verifier = self.code_verifier(key);
        URL_SAFE_NO_PAD.encode(Digest::sha256(verifier.expose().as_bytes()).0)
    }
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("provider_id", &self.provider_id)
            .field("state_hash", &self.state_hash)
            .field("redirect_uri", &self.redirect_uri)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

mod salt_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(salt: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(salt))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map_err(|_| de::Error::custom("salt must be base64url without padding"))?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| de::Error::custom("salt must be 32 bytes"))
    }
}

/// The parameters of the redirect back from the provider.
///
/// Built by [`Callback::parse`] from the redirect's query string (or from a
/// `form_post` body, which uses the same encoding). `Debug` does not show
/// `code` or `state`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Callback {
    code: Option<SecretString>,
    state: Option<SecretString>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    error_uri: Option<String>,
}

impl Callback {
    /// Parses a query string (with or without its leading `?`): the
    /// parameters `code`, `state`, `iss`, `error`, `error_description` and
    /// `error_uri`, percent-decoded (`+` is a space). Unknown parameters are
    /// ignored.
    ///
    /// The parser is total and bounded: it reads at most
    /// [`MAX_CALLBACK_LEN`] bytes, and each known value may decode to at most
    /// [`MAX_CALLBACK_PARAM_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`IdpError::Callback`] when the query is too long, a known parameter
    /// is repeated, too long, or not percent-encoded UTF-8.
    ///
    /// ```
    /// use guestpass::idp::Callback;
    ///
    /// let callback = Callback::parse("?code=SplxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj&iss=https%3A%2F%2Fid.example")?;
    /// assert!(callback.has_code());
    /// assert_eq!(callback.issuer(), Some("https://id.example"));
    /// assert!(!format!("{callback:?}").contains("SplxlOBeZQQYbYS6WxSbIA"));
    /// assert!(Callback::parse("code=a&code=b").is_err());
    /// # Ok::<(), guestpass::idp::IdpError>(())
    /// ```
    pub fn parse(query: &str) -> Result<Self, IdpError> {
        if query.len() > MAX_CALLBACK_LEN {
            return Err(callback_error(format!(
                "the query is longer than {MAX_CALLBACK_LEN} bytes"
            )));
        }
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut callback = Callback::default();
        for pair in query.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let Ok(name) = percent_decode(raw_name) else {
                continue;
            };
            let name = match name.as_str() {
                "code" | "state" | "iss" | "error" | "error_description" | "error_uri" => name,
                _ => continue,
            };
            let value = percent_decode(raw_value)
                .map_err(|problem| callback_error(format!("parameter `{name}` {problem}")))?;
            if value.len() > MAX_CALLBACK_PARAM_LEN {
                return Err(callback_error(format!(
                    "parameter `{name}` is longer than {MAX_CALLBACK_PARAM_LEN} bytes"
                )));
            }
            let repeated = match name.as_str() {
                "code" => replace(&mut callback.code, SecretString::new(value)),
                "state" => replace(&mut callback.state, SecretString::new(value)),
                "iss" => replace(&mut callback.iss, value),
                "error" => replace(&mut callback.error, value),
                "error_description" => replace(&mut callback.error_description, value),
                _ => replace(&mut callback.error_uri, value),
            };
            if repeated {
                return Err(callback_error(format!("parameter `{name}` is repeated")));
            }
        }
        Ok(callback)
    }

    /// Whether the callback carries an authorization `code`.
    pub fn has_code(&self) -> bool {
        self.code.is_some()
    }

    /// Whether the callback carries a `state`.
    pub fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// The `iss` parameter (RFC 9207), if present.
    pub fn issuer(&self) -> Option<&str> {
        self.iss.as_deref()
    }

    /// The OAuth `error` code, if the provider reported one (as received).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The provider's `error_description`, if any (as received: untrusted text).
    pub fn error_description(&self) -> Option<&str> {
        self.error_description.as_deref()
    }

    /// The provider's `error_uri`, if any (as received: untrusted text).
    pub fn error_uri(&self) -> Option<&str> {
        self.error_uri.as_deref()
    }
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<SecretString>| v.as_ref().map(|_| "..");
        f.debug_struct("Callback")
            .field("code", &hidden(&self.code))
            .field("state", &hidden(&self.state))
            .field("iss", &self.iss)
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .field("error_uri", &self.error_uri)
            .finish()
    }
}

/// Sets `slot`; true when it was already set.
fn replace<T>(slot: &mut Option<T>, value: T) -> bool {
    slot.replace(value).is_some()
}

fn callback_error(reason: String) -> IdpError {
    IdpError::Callback { reason }
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX`
/// a byte; the result must be UTF-8.
fn percent_decode(raw: &str) -> Result<String, &'static str> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or("has a truncated percent escape")?;
                let text = std::str::from_utf8(hex).map_err(|_| "has an invalid percent escape")?;
                let value = u8::from_str_radix(text, 16).map_err(|_| "has an invalid percent escape")?;
                out.push(value);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "is not valid utf-8")
}

/// Which issuer a callback's `iss` parameter must name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ExpectedIssuer<'a> {
    /// Exactly this string.
    Exact(&'a str),
    /// The template with `{tenantid}` replaced by a tenant id, optionally
    /// one of a list.
    Template {
        template: &'a str,
        allowed_tenants: Option<&'a [String]>,
    },
}

/// The placeholder of multi-tenant issuer templates.
pub(crate) const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// The tenant id `issuer` fills `template` with, if it fits.
pub(crate) fn match_template<'i>(template: &str, issuer: &'i str) -> Option<&'i str> {
    let (prefix, suffix) = template.split_once(TENANT_PLACEHOLDER)?;
    let tenant = issuer.strip_prefix(prefix)?.strip_suffix(suffix)?;
    valid_tenant_id(tenant).then_some(tenant)
}

/// A tenant id: 1 to 64 characters of `A-Z a-z 0-9 -` (Entra uses GUIDs).
pub(crate) fn valid_tenant_id(tenant: &str) -> bool {
    !tenant.is_empty() && tenant.len() <= 64 && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The callback checks every provider runs before any I/O, in order:
/// the pending authorization is this provider's; provider-reported errors;
/// `state` present and matching (constant time); the sign-in not older than
/// [`AUTHORIZATION_MAX_AGE`]; `iss`, when present, the expected issuer; a
/// non-empty `code`. Returns the code.
pub(crate) fn check_callback<'c>(
    provider_id: &str,
    expected_issuer: ExpectedIssuer<'_>,
    pending: &PendingAuthorization,
    callback: &'c Callback,
    now: OffsetDateTime,
) -> Result<&'c SecretString, IdpError> {
    if pending.provider_id != provider_id {
        return Err(callback_error(format!(
            "the sign-in was started with provider `{}`, not `{provider_id}`",
            sanitize(&pending.provider_id, 64)
        )));
    }
    if let Some(error) = &callback.error {
        if error.is_empty() {
            return Err(callback_error("parameter `error` is empty".into()));
        }
        let description = callback
            .error_description
            .as_deref()
            .map(|d| sanitize(d, MAX_DESCRIPTION_CHARS))
            .filter(|d| !d.is_empty());
        if error == "access_denied" {
            return Err(IdpError::AccessDenied { description });
        }
        return Err(IdpError::ProviderError {
            error: sanitize(error, MAX_ERROR_CODE_CHARS),
            description,
        });
    }
    let state = callback.state.as_ref().ok_or(IdpError::StateMismatch)?;
    if !Digest::sha256(state.expose().as_bytes()).ct_eq(&pending.state_hash) {
        return Err(IdpError::StateMismatch);
    }
    if now > pending.issued_at.saturating_add(AUTHORIZATION_MAX_AGE) {
        return Err(IdpError::AuthorizationExpired);
    }
    if let Some(iss) = &callback.iss {
        match expected_issuer {
            ExpectedIssuer::Exact(expected) => {
                if !constant_time_eq(iss.as_bytes(), expected.as_bytes()) {
                    return Err(IdpError::IssuerMismatch {
                        expected: expected.to_owned(),
                        actual: sanitize(iss, 256),
                    });
                }
            }
            ExpectedIssuer::Template {
                template,
                allowed_tenants,
            } => {
                let tenant = match_template(template, iss).ok_or_else(|| IdpError::IssuerMismatch {
                    expected: template.to_owned(),
                    actual: sanitize(iss, 256),
                })?;
                if let Some(allowed) = allowed_tenants
                    && !allowed.iter().any(|t| t.eq_ignore_ascii_case(tenant))
                {
                    return Err(IdpError::TenantNotAllowed {
                        tenant_id: tenant.to_owned(),
                    });
                }
            }
        }
    }
    match &callback.code {
        None => Err(callback_error("parameter `code` is missing".into())),
        Some(code) if code.expose().is_empty() => Err(callback_error("parameter `code` is empty".into())),
        Some(code) => Ok(code),
    }
}

/// Shortens untrusted `text` to `max_chars` characters for an error
/// message, dropping control characters, the formatting characters that
/// reorder text, and backticks.
pub(crate) fn sanitize(text: &str, max_chars: usize) -> String {
    let is_dropped = |c: char| {
        c.is_control()
            || c == '`'
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    let mut kept = text.chars().filter(|&c| !is_dropped(c));
    let mut out: String = kept.by_ref().take(max_chars).collect();
    if kept.next().is_some() {
        out.push_str("...");
    }
    out
}

/// The identity an external provider vouched for.
///
/// Accounts are keyed on `issuer` + `subject`, never on `email` (which the
/// user may change at the provider). `email_verified` is true only when the
/// provider said so for this very address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalIdentity {
    /// The configured id of the provider that signed the user in.
    pub provider_id: String,
    /// The issuer of the identity (the ID token's `iss`, or `facebook.com`).
    pub issuer: String,
    /// The user's stable identifier at the issuer.
    pub subject: String,
    /// The email address the provider reported, if it parses.
    pub email: Option<EmailAddress>,
    /// Whether the provider asserted that it verified `email`.
    pub email_verified: bool,
    /// The full name, if reported.
    pub name: Option<String>,
    /// The given name, if reported.
    pub given_name: Option<String>,
    /// The family name, if reported.
    pub family_name: Option<String>,
    /// The tenant (`tid`) the user signed in from, for multi-tenant issuers.
    pub tenant_id: Option<String>,
    /// The Google Workspace domain (`hd`), if the account belongs to one.
    pub hosted_domain: Option<String>,
    /// The user's home organisation (an Entra tenant id, a lowercase GUID), only when the
    /// token's issuer is an Entra issuer naming its `tid`
    /// (`https://login.microsoftonline.com/{tid}/v2.0`, its national-cloud twins, or
    /// `https://sts.windows.net/{tid}/`), whether configured exactly or as a template. Any other
    /// issuer (one that merely asserts a `tid`, an Azure AD B2C tenant, a realm named by a
    /// GUID) names no organisation, and the service also drops it for providers not registered
    /// as an Entra organisation.
    ///
    /// For a guest in the issuing tenant, the token's `idp` claim names the home tenant's
    /// issuer (`https://sts.windows.net/{home-tid}/` or
    /// `https://login.microsoftonline.com/{home-tid}/v2.0`): then this is that tenant. Without
    /// `idp` it is `tid`; when `idp` names a non-Entra issuer (such as `live.com` or
    /// `google.com`) it is `None`.
    ///
    /// Cross-organisation access settings trust a partner organisation's MFA claim only for
    /// users whose home is that organisation; read this, never `tenant_id`, for that decision,
    /// or a direct-federation or social provider could claim any `tid` and pass as a trusted
    /// partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_tenant_id: Option<String>,
    /// The user's object id in the issuing tenant (`oid`), if given (at most 64 characters,
    /// else dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// How the user authenticated at the provider (`amr`, as strings; at most 16 entries of at
    /// most 32 characters each are kept, others dropped; a non-array `amr` is ignored, not an
    /// error). An `mfa` entry speaks for the partner only together with `home_tenant_id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

/// Why an ID token was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdTokenError {
    /// `iss` is missing or not the provider's issuer.
    #[error("id token issuer is not the provider's issuer")]
    WrongIssuer,
    /// `aud` is missing.
    #[error("id token has no audience")]
    MissingAudience,
    /// `aud` does not name this client.
    #[error("id token is not issued to this client")]
    WrongAudience,
    /// `azp` is missing although there are several audiences, or names
    /// another client.
    #[error("id token authorized party is not this client")]
    AzpMismatch,
    /// `sub` is missing or empty.
    #[error("id token has no subject")]
    MissingSubject,
    /// `exp` is missing.
    #[error("id token has no expiry")]
    MissingExpiry,
    /// `iat` is missing.
    #[error("id token has no issue time")]
    MissingIssuedAt,
    /// `tid` is missing although the issuer is multi-tenant.
    #[error("id token has no tenant id")]
    MissingTenantId,
    /// `exp` has passed (beyond the leeway).
    #[error("id token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("id token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("id token is issued in the future")]
    IssuedInFuture,
    /// `nonce` is missing or not this sign-in's.
    #[error("id token nonce does not match this sign-in")]
    NonceMismatch,
    /// The token does not decode, or a claim has the wrong form.
    #[error("id token is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

/// Why a sign-in with an external identity provider failed.
///
/// Messages never contain the client secret, the authorization code, a
/// token, or `state`. Text from the provider (error codes, descriptions,
/// issuers) is shortened and stripped of control characters.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdpError {
    /// The provider's configuration, or an argument from the host, is unusable.
    #[error("identity provider configuration field `{field}` is invalid: {reason}")]
    Config {
        /// The field or argument.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The OpenID discovery document could not be fetched or used.
    #[error("openid discovery failed: {reason}")]
    Discovery {
        /// Why.
        reason: String,
    },
    /// The discovery document names another issuer than the configured one.
    #[error("discovery document names issuer `{actual}` instead of `{expected}`")]
    DiscoveryIssuerMismatch {
        /// The configured issuer (or template).
        expected: String,
        /// The document's `issuer`.
        actual: String,
    },
    /// The callback's `iss` names another issuer than this provider's
    /// (RFC 9207 mix-up defence), or the ID token's issuer differs from it.
    #[error("authorization response is from issuer `{actual}`, not `{expected}`")]
    IssuerMismatch {
        /// The issuer (or template) expected.
        expected: String,
        /// The issuer the response names.
        actual: String,
    },
    /// The provider's key set could not be fetched or used.
    #[error("signing key set is unusable: {reason}")]
    Jwks {
        /// Why.
        reason: String,
    },
    /// No key of the key set (even after one re-fetch) matches the token.
    #[error("no signing key matches {}", describe_kid(kid.as_deref()))]
    UnknownKey {
        /// The token's `kid`, if it named one.
        kid: Option<String>,
    },
    /// The token names no `kid` and several keys could verify it.
    #[error("the id token names no key id and several keys could verify it")]
    AmbiguousKey,
    /// The key the token names is not a key for the token's algorithm.
    #[error("{} cannot verify `{alg}` signatures", describe_kid(kid.as_deref()))]
    KeyAlgorithmMismatch {
        /// The token's `kid`, if it named one.
        kid: Option<String>,
        /// The token's `alg`.
        alg: String,
    },
    /// The token's `alg` is not allowed (`none` and HMAC never are).
    #[error("signing algorithm `{alg}` is not allowed")]
    AlgorithmNotAllowed {
        /// The token's `alg`.
        alg: String,
    },
    /// The ID token's signature does not verify.
    #[error("id token signature does not verify")]
    BadSignature,
    /// The callback is malformed or incomplete.
    #[error("invalid callback: {reason}")]
    Callback {
        /// What is wrong.
        reason: String,
    },
    /// The callback's `state` is missing or not this sign-in's.
    #[error("callback state does not match this sign-in")]
    StateMismatch,
    /// The sign-in was started too long ago ([`AUTHORIZATION_MAX_AGE`]).
    #[error("the sign-in has expired")]
    AuthorizationExpired,
    /// The user (or the provider on their behalf) declined (`access_denied`).
    #[error("sign-in was declined at the identity provider")]
    AccessDenied {
        /// The provider's `error_description`, shortened.
        description: Option<String>,
    },
    /// The provider reported another OAuth error in the callback.
    #[error("identity provider reported error `{error}`{}", describe(description.as_deref()))]
    ProviderError {
        /// The OAuth `error` code, shortened.
        error: String,
        /// The provider's `error_description`, shortened.
        description: Option<String>,
    },
    /// The token endpoint refused the code.
    #[error("token endpoint answered with status {status}{}", describe_code(error.as_deref()))]
    TokenEndpoint {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code, if it sent a well-formed one.
        error: Option<String>,
    },
    /// The token endpoint's successful answer is unusable.
    #[error("token response is invalid: {reason}")]
    TokenResponse {
        /// What is wrong.
        reason: String,
    },
    /// The ID token was refused.
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    /// The userinfo response is about another subject than the ID token.
    #[error("userinfo subject differs from the id token subject")]
    UserinfoSubjectMismatch,
    /// The userinfo (or profile) request failed.
    #[error("userinfo request failed: {reason}")]
    Userinfo {
        /// Why.
        reason: String,
    },
    /// The user's tenant is not one of the allowed tenants.
    #[error("tenant `{tenant_id}` is not allowed")]
    TenantNotAllowed {
        /// The tenant id.
        tenant_id: String,
    },
    /// The account does not belong to the required hosted domain (Google `hd`).
    #[error("the account's hosted domain {} is not allowed", describe_domain(hosted_domain.as_deref()))]
    HostedDomainNotAllowed {
        /// The token's `hd`, if any.
        hosted_domain: Option<String>,
    },
    /// The provider could not be reached.
    #[error("identity provider unreachable: {0}")]
    Unreachable(HttpError),
    /// A provider response exceeds the configured size limit.
    #[error("identity provider response is too large")]
    ResponseTooLarge,
    /// The random generator failed.
    #[error("secure random generator unavailable")]
    RandomUnavailable,
}

fn describe_kid(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("key id `{kid}`"),
        None => "a token without key id".to_owned(),
    }
}

fn describe(description: Option<&str>) -> String {
    description.map(|d| format!(": {d}")).unwrap_or_default()
}

fn describe_code(error: Option<&str>) -> String {
    error.map(|e| format!(" (`{e}`)")).unwrap_or_default()
}

fn describe_domain(domain: Option<&str>) -> String {
    match domain {
        Some(d) => format!("`{d}`"),
        None => "(none)".to_owned(),
    }
}

impl IdpError {
    /// The category (and so the HTTP status) of this error: bad callback
    /// input is 400, a declined sign-in or a refused tenant 403, an expired
    /// sign-in 410, an unreachable provider 503, a provider that answered
    /// with something unusable 502, configuration faults 500.
    ///
    /// ```
    /// use guestpass::error::Category;
    /// use guestpass::idp::IdpError;
    /// assert_eq!(IdpError::StateMismatch.category(), Category::BadRequest);
    /// assert_eq!(IdpError::AccessDenied { description: None }.category(), Category::Forbidden);
    /// ```
    pub fn category(&self) -> Category {
        match self {
            IdpError::Callback { .. } | IdpError::StateMismatch | IdpError::IssuerMismatch { .. } => {
                Category::BadRequest
            }
            IdpError::ProviderError { error, .. } => match error.as_str() {
                "temporarily_unavailable" => Category::Unavailable,
                "server_error" => Category::BadGateway,
                _ => Category::BadRequest,
            },
            // A reused or expired code: the browser replayed the callback.
            IdpError::TokenEndpoint { error, .. } if error.as_deref() == Some("invalid_grant") => {
                Category::BadRequest
            }
            IdpError::AccessDenied { .. }
            | IdpError::TenantNotAllowed { .. }
            | IdpError::HostedDomainNotAllowed { .. } => Category::Forbidden,
            IdpError::AuthorizationExpired => Category::Gone,
            IdpError::Unreachable(_) => Category::Unavailable,
            IdpError::Discovery { .. }
            | IdpError::DiscoveryIssuerMismatch { .. }
            | IdpError::Jwks { .. }
            | IdpError::UnknownKey { .. }
            | IdpError::AmbiguousKey
            | IdpError::KeyAlgorithmMismatch { .. }
            | IdpError::AlgorithmNotAllowed { .. }
            | IdpError::BadSignature
            | IdpError::TokenEndpoint { .. }
            | IdpError::TokenResponse { .. }
            | IdpError::IdToken(_)
            | IdpError::UserinfoSubjectMismatch
            | IdpError::Userinfo { .. }
            | IdpError::ResponseTooLarge => Category::BadGateway,
            IdpError::Config { .. } | IdpError::RandomUnavailable => Category::Internal,
        }
    }
}

impl From<ConfigError> for IdpError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Missing { field } => IdpError::Config {
                field,
                reason: "is required".into(),
            },
            ConfigError::Invalid { field, reason } => IdpError::Config { field, reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::http::{FnHttpClient, HttpResponse};
    use crate::random::SeededRandom;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn pending_and_state() -> (PendingAuthorization, SecretString, BindingKey) {
        let http = FnHttpClient::new(|_, _| Ok(HttpResponse::new(Vec::new())));
        let rng = SeededRandom::new(3);
        let key = BindingKey::new(&[9u8; 32]).unwrap();
        let ctx = IdpContext {
            http: &http,
            rng: &rng,
            now: NOW,
            binding_key: &key,
        };
        let (pending, state) =
            PendingAuthorization::generate(&ctx, "corp", "https://app.example/cb").unwrap();
        (pending, state, key)
    }

    fn check(callback: &Callback, pending: &PendingAuthorization) -> Result<String, IdpError> {
        check_callback(
            "corp",
            ExpectedIssuer::Exact("https://id.example"),
            pending,
            callback,
            NOW,
        )
        .map(|c| c.expose().to_owned())
    }

    #[test]
    fn pkce_verifier_is_rfc7636_and_challenge_is_its_s256() {
        let (pending, _, key) = pending_and_state();
        let verifier = pending.code_verifier(&key);
        assert_eq!(verifier.expose().len(), 43);
        assert!(
            verifier
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        );
        let expected = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.expose().as_bytes(),
        ));
        assert_eq!(pending.code_challenge(&key), expected);
        assert_ne!(pending.nonce(&key), verifier, "nonce and verifier are separate");
        let other = BindingKey::new(&[8u8; 32]).unwrap();
        assert_ne!(pending.code_verifier(&other), verifier, "bound to the key");
    }

    #[test]
    fn binding_key_matches_the_key_ring_for_the_same_secret() {
        let ring = crate::keys::KeyRing::new(crate::keys::SigningKey::new("k1", [5u8; 32]).unwrap()).unwrap();
        let (pending, _, _) = pending_and_state();
        let from_ring = ring.binding_key();
        let direct = BindingKey::new(&[5u8; 32]).unwrap();
        assert_eq!(pending.nonce(&from_ring), pending.nonce(&direct));
    }

    #[test]
    fn pending_round_trips_and_hides_the_salt() {
        let (pending, state, _) = pending_and_state();
        let json = serde_json::to_string(&pending).unwrap();
        assert!(json.contains("\"stateHash\""), "{json}");
        assert!(json.contains("\"issuedAt\":\"2026-03-01T12:00:00Z\""), "{json}");
        assert!(!json.contains(state.expose()));
        let back: PendingAuthorization = serde_json::from_str(&json).unwrap();
        assert_eq!(back, pending);
        let shown = format!("{pending:?}");
        assert!(!shown.contains("salt"), "{shown}");
        assert!(!shown.contains(&URL_SAFE_NO_PAD.encode(pending.salt)), "{shown}");
        let bad = json.replace(&URL_SAFE_NO_PAD.encode(pending.salt), "AAAA");
        assert!(serde_json::from_str::<PendingAuthorization>(&bad).is_err());
    }

    #[test]
    fn callback_parses_and_decodes() {
        let cb = Callback::parse("?code=a%2Bb+c&state=s&iss=https%3A%2F%2Fid.example&unknown=1&unknown=2")
            .unwrap();
        assert_eq!(cb.code.as_ref().map(|c| c.expose()), Some("a+b c"));
        assert_eq!(cb.issuer(), Some("https://id.example"));
        assert!(cb.has_state());
        assert_eq!(Callback::parse("").unwrap(), Callback::default());
    }

    #[test]
    fn callback_rejects_duplicates_bad_encoding_and_oversize() {
        for query in ["state=a&state=b", "code=1&x=2&code=1", "iss=a&iss=a"] {
            assert!(
                matches!(Callback::parse(query), Err(IdpError::Callback { ref reason }) if reason.contains("repeated")),
                "{query}"
            );
        }
        for query in ["code=%", "code=%4", "code=%zz", "code=%ff"] {
            assert!(
                matches!(Callback::parse(query), Err(IdpError::Callback { .. })),
                "{query}"
            );
        }
        let long_value = format!("code={}", "a".repeat(MAX_CALLBACK_PARAM_LEN + 1));
        assert!(
            matches!(Callback::parse(&long_value), Err(IdpError::Callback { ref reason }) if reason.contains("longer"))
        );
        let at_limit = format!("code={}", "a".repeat(MAX_CALLBACK_PARAM_LEN));
        assert!(Callback::parse(&at_limit).is_ok());
        let long_query = format!("x={}", "a".repeat(MAX_CALLBACK_LEN));
        assert!(
            matches!(Callback::parse(&long_query), Err(IdpError::Callback { ref reason }) if reason.contains("query"))
        );
    }

    #[test]
    fn callback_debug_hides_code_and_state() {
        let cb = Callback::parse("code=TOPSECRETCODE&state=STATESECRET").unwrap();
        let shown = format!("{cb:?}");
        assert!(
            !shown.contains("TOPSECRETCODE") && !shown.contains("STATESECRET"),
            "{shown}"
        );
    }

    #[test]
    fn callback_without_state_is_a_state_mismatch() {
        let (pending, _, _) = pending_and_state();
        let cb = Callback::parse("code=abc").unwrap();
        assert_eq!(check(&cb, &pending), Err(IdpError::StateMismatch));
    }

    #[test]
    fn callback_with_wrong_state_is_a_state_mismatch() {
        let (pending, state, _) = pending_and_state();
        let cb = Callback::parse(&format!("code=abc&state={}x", state.expose())).unwrap();
        assert_eq!(check(&cb, &pending), Err(IdpError::StateMismatch));
        let good = Callback::parse(&format!("code=abc&state={}", state.expose())).unwrap();
        assert_eq!(check(&good, &pending), Ok("abc".to_owned()));
    }

    #[test]
    fn callback_access_denied_comes_first() {
        let (pending, _, _) = pending_and_state();
        let cb = Callback::parse("error=access_denied&error_description=User+said+%60no%60%0A").unwrap();
        assert_eq!(
            check(&cb, &pending),
            Err(IdpError::AccessDenied {
                description: Some("User said no".into())
            })
        );
    }

    #[test]
    fn callback_other_error_is_bounded_and_quoted_safely() {
        let (pending, _, _) = pending_and_state();
        let long = "x".repeat(500);
        let cb = Callback::parse(&format!("error=invalid_scope%60%1B&error_description={long}")).unwrap();
        let Err(IdpError::ProviderError { error, description }) = check(&cb, &pending) else {
            panic!("expected a provider error");
        };
        assert_eq!(error, "invalid_scope");
        assert_eq!(
            description.as_deref().map(str::len),
            Some(MAX_DESCRIPTION_CHARS + 3)
        );
        let e = IdpError::ProviderError {
            error: "server_error".into(),
            description: None,
        };
        assert_eq!(e.to_string(), "identity provider reported error `server_error`");
        assert_eq!(e.category(), Category::BadGateway);
    }

    #[test]
    fn callback_iss_mismatch_is_refused() {
        let (pending, state, _) = pending_and_state();
        let cb = Callback::parse(&format!(
            "code=abc&state={}&iss=https://evil.example",
            state.expose()
        ))
        .unwrap();
        assert_eq!(
            check(&cb, &pending),
            Err(IdpError::IssuerMismatch {
                expected: "https://id.example".into(),
                actual: "https://evil.example".into()
            })
        );
    }

    #[test]
    fn callback_without_code_or_for_another_provider_is_refused() {
        let (pending, state, _) = pending_and_state();
        let cb = Callback::parse(&format!("state={}", state.expose())).unwrap();
        assert!(matches!(check(&cb, &pending), Err(IdpError::Callback { .. })));
        let no_error = Callback::parse(&format!("state={}&code=c&error=", state.expose())).unwrap();
        assert!(matches!(
            check(&no_error, &pending),
            Err(IdpError::Callback { .. })
        ));
        let empty = Callback::parse(&format!("state={}&code=", state.expose())).unwrap();
        assert!(matches!(check(&empty, &pending), Err(IdpError::Callback { .. })));
        let mut other = pending.clone();
        other.provider_id = "google".into();
        let good = Callback::parse(&format!("state={}&code=c", state.expose())).unwrap();
        assert!(
            matches!(check(&good, &other), Err(IdpError::Callback { ref reason }) if reason.contains("google"))
        );
    }

    #[test]
    fn stale_sign_ins_are_refused() {
        let (pending, state, _) = pending_and_state();
        let cb = Callback::parse(&format!("state={}&code=c", state.expose())).unwrap();
        let later = NOW + AUTHORIZATION_MAX_AGE + time::Duration::seconds(1);
        let result = check_callback("corp", ExpectedIssuer::Exact("x"), &pending, &cb, later);
        assert_eq!(result.map(|_| ()), Err(IdpError::AuthorizationExpired));
    }

    #[test]
    fn template_issuers_match_tenants() {
        let template = "https://login.example/{tenantid}/v2.0";
        assert_eq!(
            match_template(template, "https://login.example/abc-1/v2.0"),
            Some("abc-1")
        );
        assert_eq!(match_template(template, "https://login.example//v2.0"), None);
        assert_eq!(match_template(template, "https://login.example/a/b/v2.0"), None);
        assert_eq!(match_template(template, "https://other.example/abc/v2.0"), None);
    }

    #[test]
    fn error_messages_are_lowercase_without_period_and_categorised() {
        let cases = [
            (IdpError::StateMismatch, 400),
            (IdpError::AccessDenied { description: None }, 403),
            (IdpError::Unreachable(HttpError::Timeout), 503),
            (IdpError::BadSignature, 502),
            (
                IdpError::TokenEndpoint {
                    status: 400,
                    error: Some("invalid_grant".into()),
                },
                400,
            ),
            (
                IdpError::TokenEndpoint {
                    status: 500,
                    error: None,
                },
                502,
            ),
            (IdpError::AuthorizationExpired, 410),
            (IdpError::IdToken(IdTokenError::Expired), 502),
            (
                IdpError::UnknownKey {
                    kid: Some("k1".into()),
                },
                502,
            ),
            (
                IdpError::TenantNotAllowed {
                    tenant_id: "t".into(),
                },
                403,
            ),
            (IdpError::RandomUnavailable, 500),
        ];
        for (e, status) in cases {
            let m = e.to_string();
            assert!(m.starts_with(|c: char| c.is_lowercase()), "{m}");
            assert!(!m.ends_with('.'), "{m}");
            assert_eq!(e.category().status().as_u16(), status, "{m}");
        }
        assert_eq!(
            IdpError::UnknownKey { kid: None }.to_string(),
            "no signing key matches a token without key id"
        );
    }
}
