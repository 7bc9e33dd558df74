//! API connectors: calls from a sign-up user flow to a web API the tenant
//! runs, in Entra's wire format.
//!
//! A connector runs at one of two steps of a self-service sign-up flow:
//!
//! - [`ConnectorStep::PostFederationSignup`], right after the user signed in
//!   with an identity provider. The API may let the flow continue (and return
//!   claims that pre-fill the attribute collection page) or block it.
//! - [`ConnectorStep::PostAttributeCollection`], before the user is created.
//!   The API may continue (returned claims override the collected values),
//!   block, or answer with a validation error that sends the user back to the
//!   form.
//!
//! Everything here is pure except [`call`]: [`build_request`] turns a
//! [`ConnectorConfig`] and a [`ConnectorInput`] into an
//! [`HttpRequest`], [`parse_response`] turns the
//! answer into a [`ConnectorOutcome`], and [`next_step`] decides whether a
//! failed attempt is retried. [`call`] drives the three with an
//! [`HttpClient`].
//!
//! # Wire format
//!
//! The request is a `POST` with a JSON object body: `email`, `identities`
//! (`signInType`, `issuer`, `issuerAssignedId`), one key per collected claim
//! (built-in names such as `givenName`, custom attributes as
//! `extension_<appId>_<name>`), `step` (`PostFederationSignup` or
//! `PostAttributeCollection`), `client_id` and `ui_locales`. Claims without a
//! value are left out.
//!
//! The API answers with one of:
//!
//! ```text
//! 200 {"version":"1.0.0","action":"Continue", "postalCode":"12349", ...}
//! 200 {"version":"1.0.0","action":"ShowBlockPage","userMessage":"..."}
//! 400 {"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"..."}
//! ```
//!
//! Every other answer is [`ConnectorOutcome::Malformed`] (the API answered,
//! but not in this format) or [`ConnectorOutcome::Unavailable`] (it did not
//! answer, or answered with a server error). Both block the sign-up with the
//! message configured in [`OnUnavailable`]: a broken connector never lets a
//! sign-up through.
//!
//! # Timeouts and retries
//!
//! Each attempt may take at most [`ConnectorConfig::timeout`] (20 seconds
//! unless configured shorter). A timeout, a connection failure or a `5xx`
//! status is retried once, at once; nothing else is retried.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use url::Url;

use crate::error::{ConfigError, Error};
use crate::http::{
    ClientCertificate, HeaderMap, HeaderValue, HttpClient, HttpError, HttpLimits, HttpRequest, HttpResponse,
    Method, StatusCode, header,
};
use crate::secret::SecretString;

/// A claim value: a JSON string, boolean, number or array of strings.
///
/// The same type as `serde_json::Value`, named here so callers need no direct
/// dependency on `serde_json`.
pub type ClaimValue = Value;

/// The only response `version` this library accepts.
pub const RESPONSE_VERSION: &str = "1.0.0";
/// The timeout of one attempt unless configured otherwise (Entra's value).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest timeout a connector may be configured with.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts per call: the first one plus one retry.
pub const MAX_ATTEMPTS: u32 = 2;
/// The largest response body read, in bytes.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// The longest `userMessage`, and the longest configured message, in characters.
pub const MAX_USER_MESSAGE_CHARS: usize = 1024;
/// The most claims a `Continue` response may return.
pub const MAX_RETURNED_CLAIMS: usize = 64;
/// The longest claim name, in bytes.
pub const MAX_CLAIM_NAME_LEN: usize = 128;
/// The longest string claim value (or array element), in characters.
pub const MAX_CLAIM_VALUE_CHARS: usize = 1024;
/// The most elements of an array claim value.
pub const MAX_CLAIM_ARRAY_LEN: usize = 64;

/// Longest display name, certificate name, user name and input field, in characters.
const MAX_NAME_CHARS: usize = 256;
/// How much of an offending value a reason quotes, in characters.
const QUOTE_CHARS: usize = 64;
/// Keys of the request body that are not claims.
const REQUEST_KEYS: [&str; 5] = ["email", "identities", "step", "client_id", "ui_locales"];
/// Keys of the answer itself; a `Continue` response may not use them, nor
/// [`REQUEST_KEYS`], as claim names.
const RESPONSE_KEYS: [&str; 4] = ["version", "action", "status", "userMessage"];

/// Why a connector configuration or input cannot be used.
///
/// Messages never contain the password, the `Authorization` header or the
/// target URL's query string.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectorError {
    /// A configuration field has an unusable value.
    #[error("connector configuration field `{field}` is invalid: {reason}")]
    InvalidConfig {
        /// The field, in its camelCase spelling.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A field of the [`ConnectorInput`] has an unusable value.
    #[error("connector input field `{field}` is invalid: {reason}")]
    InvalidInput {
        /// The field, as it appears in the request body.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A claim name is not a plain claim name.
    #[error("claim name `{name}` is invalid")]
    InvalidClaimName {
        /// The name (shortened if long).
        name: String,
    },
    /// A claim uses a name the request body needs for itself.
    #[error("claim `{name}` is reserved in connector requests")]
    ReservedClaim {
        /// The name.
        name: String,
    },
    /// A claim value is not a string, boolean, number or array of strings.
    #[error("claim `{name}` has an unsupported value: {problem}")]
    UnsupportedClaimValue {
        /// The claim name.
        name: String,
        /// What is wrong with the value.
        problem: &'static str,
    },
    /// The HTTP request could not be assembled.
    #[error("could not build the connector request: {reason}")]
    Request {
        /// Why.
        reason: String,
    },
}

impl From<ConnectorError> for Error {
    fn from(e: ConnectorError) -> Self {
        match e {
            ConnectorError::InvalidConfig { field, reason } => {
                Error::Config(ConfigError::Invalid { field, reason })
            }
            other => Error::Config(ConfigError::Invalid {
                field: "apiConnector",
                reason: other.to_string(),
            }),
        }
    }
}

/// The point of the sign-up flow a connector runs at.
///
/// Configured in camelCase (`postFederationSignup`), sent in the request's
/// `step` field in PascalCase (`PostFederationSignup`), as Entra does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectorStep {
    /// After the user signed in with an identity provider, before the
    /// attribute collection page.
    PostFederationSignup,
    /// After the attribute collection page, before the user is created.
    PostAttributeCollection,
}

impl ConnectorStep {
    /// The value of the request's `step` field.
    pub fn wire_name(self) -> &'static str {
        match self {
            ConnectorStep::PostFederationSignup => "PostFederationSignup",
            ConnectorStep::PostAttributeCollection => "PostAttributeCollection",
        }
    }

    /// Whether the API may answer with a validation error at this step.
    pub fn allows_validation_error(self) -> bool {
        matches!(self, ConnectorStep::PostAttributeCollection)
    }
}

/// How the library authenticates to the API.
///
/// `Debug` never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorAuth {
    /// HTTP Basic authentication.
    Basic {
        /// The user name; must not contain `:`.
        username: String,
        /// The password.
        password: SecretString,
    },
    /// A TLS client certificate.
    ///
    /// The core does no TLS: the request carries a
    /// [`ClientCertificate`] extension with
    /// this name, and the host's [`HttpClient`] resolves it to a certificate
    /// and key from its own store.
    ClientCertificate {
        /// The certificate's name in the host's store.
        certificate: String,
    },
}

/// A message in a default language plus translations, chosen by `ui_locales`.
///
/// ```
/// use guestpass::flow::connector::LocalizedMessage;
///
/// let message = LocalizedMessage::new("Sign-up is not available right now")?
///     .with_locale("fr", "L'inscription n'est pas disponible pour le moment")?;
/// assert!(message.for_locales(Some("fr-CA")).starts_with("L'inscription"));
/// assert!(message.for_locales(Some("de-DE")).starts_with("Sign-up"));
/// assert!(message.for_locales(None).starts_with("Sign-up"));
/// # Ok::<(), guestpass::flow::connector::ConnectorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawLocalizedMessage")]
pub struct LocalizedMessage {
    default: String,
    localized: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLocalizedMessage {
    default: String,
    #[serde(default)]
    localized: BTreeMap<String, String>,
}

impl TryFrom<RawLocalizedMessage> for LocalizedMessage {
    type Error = ConnectorError;

    fn try_from(raw: RawLocalizedMessage) -> Result<Self, Self::Error> {
        let mut message = LocalizedMessage::new(raw.default)?;
        for (locale, text) in raw.localized {
            message = message.with_locale(&locale, text)?;
        }
        Ok(message)
    }
}

impl LocalizedMessage {
    /// A message with only its default text.
    ///
    /// The text must be plain text: not empty, at most
    /// [`MAX_USER_MESSAGE_CHARS`] characters, without control characters.
    pub fn new(default: impl Into<String>) -> Result<Self, ConnectorError> {
        let default = default.into();
        check_message(&default).map_err(|problem| ConnectorError::InvalidConfig {
            field: "onUnavailable",
            reason: format!("message {problem}"),
        })?;
        Ok(Self {
            default,
            localized: BTreeMap::new(),
        })
    }

    /// Adds the text for a language tag such as `fr` or `pt-BR` (compared
    /// case-insensitively).
    pub fn with_locale(mut self, locale: &str, text: impl Into<String>) -> Result<Self, ConnectorError> {
        let text = text.into();
        let valid_tag = !locale.is_empty()
            && locale.len() <= 35
            && locale.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid_tag {
            return Err(ConnectorError::InvalidConfig {
                field: "onUnavailable",
                reason: format!("`{}` is not a language tag", quote(locale)),
            });
        }
        check_message(&text).map_err(|problem| ConnectorError::InvalidConfig {
            field: "onUnavailable",
            reason: format!("message for `{locale}` {problem}"),
        })?;
        let key = locale.to_ascii_lowercase();
        if self.localized.contains_key(&key) {
            return Err(ConnectorError::InvalidConfig {
                field: "onUnavailable",
                reason: format!("language `{locale}` is given twice"),
            });
        }
        self.localized.insert(key, text);
        Ok(self)
    }

    /// The default text.
    pub fn default_text(&self) -> &str {
        &self.default
    }

    /// The text for the first language of `ui_locales` (a space- or
    /// comma-separated list of tags) that has one: an exact tag first, then
    /// its primary language (`fr` for `fr-CA`); the default text otherwise.
    pub fn for_locales(&self, ui_locales: Option<&str>) -> &str {
        let tags = ui_locales
            .unwrap_or("")
            .split([' ', ','])
            .filter_map(|t| t.split(';').next())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        for tag in tags {
            let tag = tag.to_ascii_lowercase();
            if let Some(text) = self.localized.get(&tag) {
                return text;
            }
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(text) = self.localized.get(primary) {
                return text;
            }
        }
        &self.default
    }
}

/// What happens when the API cannot be used: it does not answer, fails, or
/// answers outside the wire format.
///
/// The only choice is to block the sign-up with a configured message; there
/// is deliberately no way to let the sign-up continue unchecked.
///
/// In configuration: `"onUnavailable": {"block": {"default": "...",
/// "localized": {"fr": "..."}}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum OnUnavailable {
    /// Show a block page with this message.
    Block(LocalizedMessage),
}

impl OnUnavailable {
    /// The block page message.
    pub fn message(&self) -> &LocalizedMessage {
        match self {
            OnUnavailable::Block(message) => message,
        }
    }
}

/// An API connector: where to call, how to authenticate, at which step, and
/// what to show when the API cannot be used.
///
/// Built with [`ConnectorConfig::new`] or deserialized (camelCase):
///
/// ```
/// use guestpass::flow::connector::{ConnectorConfig, ConnectorStep};
///
/// let config: ConnectorConfig = serde_json::from_str(r#"{
///     "displayName": "Check approval status",
///     "targetUrl": "https://approvals.example.com/api/check",
///     "authentication": {"type": "basic", "username": "guestpass", "password": "s3cret-pw"},
///     "step": "postAttributeCollection",
///     "timeoutSeconds": 10,
///     "onUnavailable": {"block": {"default": "Sign-up is not available right now"}}
/// }"#)?;
/// assert_eq!(config.step(), ConnectorStep::PostAttributeCollection);
/// assert_eq!(config.timeout().as_secs(), 10);
/// assert!(!format!("{config:?}").contains("s3cret-pw"));
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// The target URL must be `https`, or `http` on a loopback host (for local
/// tests); it may not carry user information or a fragment. A query string is
/// allowed (and sent) but hidden in `Debug` and error messages, since some
/// hosting platforms put an access key there.
///
/// The configuration is not `Serialize`: it holds a password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawConnectorConfig")]
pub struct ConnectorConfig {
    display_name: String,
    target_url: Url,
    authentication: ConnectorAuth,
    step: ConnectorStep,
    timeout: Duration,
    on_unavailable: OnUnavailable,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConnectorConfig {
    display_name: String,
    target_url: String,
    authentication: RawAuth,
    step: ConnectorStep,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    on_unavailable: OnUnavailable,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
enum RawAuth {
    Basic { username: String, password: String },
    ClientCertificate { certificate: String },
}

impl TryFrom<RawConnectorConfig> for ConnectorConfig {
    type Error = ConnectorError;

    fn try_from(raw: RawConnectorConfig) -> Result<Self, Self::Error> {
        let authentication = match raw.authentication {
            RawAuth::Basic { username, password } => ConnectorAuth::Basic {
                username,
                password: SecretString::new(password),
            },
            RawAuth::ClientCertificate { certificate } => ConnectorAuth::ClientCertificate { certificate },
        };
        let config = ConnectorConfig::new(
            raw.display_name,
            &raw.target_url,
            authentication,
            raw.step,
            raw.on_unavailable,
        )?;
        match raw.timeout_seconds {
            None => Ok(config),
            Some(seconds) => config.with_timeout(Duration::from_secs(seconds)),
        }
    }
}

impl ConnectorConfig {
    /// A connector with the default timeout ([`DEFAULT_TIMEOUT`]).
    ///
    /// ```
    /// use guestpass::flow::connector::{
    ///     ConnectorAuth, ConnectorConfig, ConnectorStep, LocalizedMessage, OnUnavailable,
    /// };
    ///
    /// let config = ConnectorConfig::new(
    ///     "Check approval status",
    ///     "https://approvals.example.com/api/check",
    ///     ConnectorAuth::Basic { username: "guestpass".into(), password: "s3cret-pw".into() },
    ///     ConnectorStep::PostFederationSignup,
    ///     OnUnavailable::Block(LocalizedMessage::new("Sign-up is not available right now")?),
    /// )?;
    /// assert_eq!(config.timeout().as_secs(), 20);
    ///
    /// let plain_http = ConnectorConfig::new(
    ///     "Check approval status",
    ///     "http://approvals.example.com/api/check",
    ///     config.authentication().clone(),
    ///     ConnectorStep::PostFederationSignup,
    ///     config.on_unavailable().clone(),
    /// );
    /// assert!(plain_http.is_err());
    /// # Ok::<(), guestpass::flow::connector::ConnectorError>(())
    /// ```
    pub fn new(
        display_name: impl Into<String>,
        target_url: &str,
        authentication: ConnectorAuth,
        step: ConnectorStep,
        on_unavailable: OnUnavailable,
    ) -> Result<Self, ConnectorError> {
        let display_name = display_name.into();
        check_name(&display_name).map_err(|problem| ConnectorError::InvalidConfig {
            field: "displayName",
            reason: problem.to_owned(),
        })?;
        let target_url = check_target_url(target_url)?;
        check_auth(&authentication)?;
        Ok(Self {
            display_name,
            target_url,
            authentication,
            step,
            timeout: DEFAULT_TIMEOUT,
            on_unavailable,
        })
    }

    /// The same connector with another per-attempt timeout, greater than zero
    /// and at most [`MAX_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, ConnectorError> {
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(ConnectorError::InvalidConfig {
                field: "timeoutSeconds",
                reason: format!(
                    "must be more than 0 and at most {} seconds",
                    MAX_TIMEOUT.as_secs()
                ),
            });
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// The name administrators know the connector by.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// The endpoint called. Its query string may hold a secret.
    pub fn target_url(&self) -> &Url {
        &self.target_url
    }

    /// How the library authenticates to the API.
    pub fn authentication(&self) -> &ConnectorAuth {
        &self.authentication
    }

    /// The step of the user flow the connector runs at.
    pub fn step(&self) -> ConnectorStep {
        self.step
    }

    /// The timeout of each attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What happens when the API cannot be used.
    pub fn on_unavailable(&self) -> &OnUnavailable {
        &self.on_unavailable
    }

    /// The limits handed to the [`HttpClient`] for each attempt.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits::new(self.timeout, MAX_RESPONSE_BODY)
    }
}

impl fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorConfig")
            .field("display_name", &self.display_name)
            .field("target_url", &redacted_url(&self.target_url))
            .field("authentication", &self.authentication)
            .field("step", &self.step)
            .field("timeout", &self.timeout)
            .field("on_unavailable", &self.on_unavailable)
            .finish()
    }
}

/// The URL without its query string (replaced by `?..`).
fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    let had_query = shown.query().is_some();
    shown.set_query(None);
    let mut text = String::from(shown);
    if had_query {
        text.push_str("?..");
    }
    text
}

fn check_target_url(target_url: &str) -> Result<Url, ConnectorError> {
    let invalid = |reason: String| ConnectorError::InvalidConfig {
        field: "targetUrl",
        reason,
    };
    let url = Url::parse(target_url).map_err(|e| invalid(e.to_string()))?;
    if url.host().is_none() {
        return Err(invalid("has no host".into()));
    }
    let loopback = crate::config::is_loopback(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                "must use https (plain http is allowed only on loopback hosts)".into(),
            ));
        }
        other => return Err(invalid(format!("scheme `{}` is not allowed", quote(other)))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not contain user information".into()));
    }
    if url.fragment().is_some() {
        return Err(invalid("must not contain a fragment".into()));
    }
    Ok(url)
}

fn check_auth(auth: &ConnectorAuth) -> Result<(), ConnectorError> {
    let invalid = |reason: &str| ConnectorError::InvalidConfig {
        field: "authentication",
        reason: reason.to_owned(),
    };
    match auth {
        ConnectorAuth::Basic { username, password } => {
            check_name(username).map_err(|problem| invalid(&format!("username {problem}")))?;
            if username.contains(':') {
                return Err(invalid("username must not contain `:`"));
            }
            let password = password.expose();
            if password.is_empty() {
                return Err(invalid("password is empty"));
            }
            if password.chars().any(char::is_control) {
                return Err(invalid("password contains control characters"));
            }
        }
        ConnectorAuth::ClientCertificate { certificate } => {
            check_name(certificate).map_err(|problem| invalid(&format!("certificate name {problem}")))?;
        }
    }
    Ok(())
}

/// A short single-line name: display name, user name, certificate name.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.trim().is_empty() {
        Err("is empty")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Err("is too long")
    } else if name.chars().any(is_forbidden_char) {
        Err("contains control characters")
    } else {
        Ok(())
    }
}

/// Control characters, and the formatting characters that reorder text.
fn is_forbidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a plain-text message shown to the user.
fn check_message(text: &str) -> Result<(), &'static str> {
    if text.trim().is_empty() {
        Err("is empty")
    } else if text.chars().count() > MAX_USER_MESSAGE_CHARS {
        Err("is too long")
    } else if text.chars().any(is_forbidden_char) {
        Err("contains control characters")
    } else {
        Ok(())
    }
}

/// Whether `name` is a plain claim name: an ASCII letter, then ASCII letters,
/// digits and `_`, at most [`MAX_CLAIM_NAME_LEN`] bytes. Built-in names
/// (`givenName`) and custom attributes (`extension_<appId>_<name>`) are.
///
/// ```
/// use guestpass::flow::connector::is_valid_claim_name;
///
/// assert!(is_valid_claim_name("postalCode"));
/// assert!(is_valid_claim_name("extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_LoyaltyId"));
/// assert!(!is_valid_claim_name("_hidden"));
/// assert!(!is_valid_claim_name("postal-code"));
/// ```
pub fn is_valid_claim_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_CLAIM_NAME_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Shortens `text` for quoting in a reason or error, dropping control
/// characters and backticks.
pub(crate) fn quote(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|&c| !is_forbidden_char(c) && c != '`')
        .take(QUOTE_CHARS)
        .collect();
    if text.chars().count() > QUOTE_CHARS {
        out.push_str("...");
    }
    out
}

/// One identity of the user, as Graph's `objectIdentity`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorIdentity {
    /// How the identity signs in, as on the user's `identities`: sign-up
    /// flows send `federated`, with issuer `mail` for an email one-time
    /// passcode identity.
    pub sign_in_type: String,
    /// The identity provider, such as `facebook.com` or `mail`.
    pub issuer: String,
    /// The user's identifier at the issuer.
    pub issuer_assigned_id: String,
}

impl ConnectorIdentity {
    /// An identity.
    pub fn new(
        sign_in_type: impl Into<String>,
        issuer: impl Into<String>,
        issuer_assigned_id: impl Into<String>,
    ) -> Self {
        Self {
            sign_in_type: sign_in_type.into(),
            issuer: issuer.into(),
            issuer_assigned_id: issuer_assigned_id.into(),
        }
    }
}

/// What the flow knows about the user when the connector runs.
///
/// Claims are keyed by their claim name (`givenName`,
/// `extension_<appId>_<name>`); values are strings, booleans, numbers or
/// arrays of strings. A `null` claim has no value and is not sent.
///
/// ```
/// use guestpass::flow::connector::{ConnectorIdentity, ConnectorInput};
///
/// let input = ConnectorInput::new("93fd07aa-333c-409d-955d-96008fd08dd9")
///     .with_email("alice@fabrikam.example")
///     .with_identity(ConnectorIdentity::new("federated", "facebook.com", "0123456789"))
///     .with_claim("givenName", "Alice")
///     .with_claim("extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_Newsletter", true)
///     .with_ui_locales("en-US");
/// assert_eq!(input.claims.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ConnectorInput {
    /// The application the user signs up to (`client_id`).
    pub client_id: String,
    /// The user's email address (`email`), if known.
    pub email: Option<String>,
    /// The user's identities (`identities`); left out when empty.
    pub identities: Vec<ConnectorIdentity>,
    /// The collected claims, by claim name.
    pub claims: BTreeMap<String, ClaimValue>,
    /// The user's languages (`ui_locales`), such as `en-US`.
    pub ui_locales: Option<String>,
}

impl ConnectorInput {
    /// Input for a user signing up to the application `client_id`.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            ..Self::default()
        }
    }

    /// Sets the email address.
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Adds an identity.
    pub fn with_identity(mut self, identity: ConnectorIdentity) -> Self {
        self.identities.push(identity);
        self
    }

    /// Sets a claim.
    pub fn with_claim(mut self, name: impl Into<String>, value: impl Into<ClaimValue>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Sets the user's languages.
    pub fn with_ui_locales(mut self, ui_locales: impl Into<String>) -> Self {
        self.ui_locales = Some(ui_locales.into());
        self
    }
}

fn check_input_field(field: &'static str, value: &str) -> Result<(), ConnectorError> {
    check_name(value).map_err(|problem| ConnectorError::InvalidInput {
        field,
        reason: problem.to_owned(),
    })
}

fn check_request_claim(name: &str, value: &Value) -> Result<(), ConnectorError> {
    if !is_valid_claim_name(name) {
        return Err(ConnectorError::InvalidClaimName { name: quote(name) });
    }
    if REQUEST_KEYS.contains(&name) {
        return Err(ConnectorError::ReservedClaim {
            name: name.to_owned(),
        });
    }
    let unsupported = |problem| ConnectorError::UnsupportedClaimValue {
        name: name.to_owned(),
        problem,
    };
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(()),
        Value::Array(_) => Err(unsupported("an array may hold only strings")),
        Value::Object(_) => Err(unsupported("objects are not claim values")),
    }
}

/// Builds the request for one attempt: a `POST` to the target URL with
/// `Content-Type: application/json`, the credentials, and the JSON body
/// described in the [module documentation](self).
///
/// With Basic authentication the `Authorization` header is marked sensitive
/// (its `Debug` shows `Sensitive`). With a client certificate the request
/// carries a [`ClientCertificate`] extension for the host's client.
///
/// ```
/// use guestpass::flow::connector::{
///     build_request, ConnectorAuth, ConnectorConfig, ConnectorInput, ConnectorStep, LocalizedMessage,
///     OnUnavailable,
/// };
///
/// let config = ConnectorConfig::new(
///     "Check approval status",
///     "https://approvals.example.com/api/check",
///     ConnectorAuth::Basic { username: "user".into(), password: "pass".into() },
///     ConnectorStep::PostAttributeCollection,
///     OnUnavailable::Block(LocalizedMessage::new("Sign-up is not available right now")?),
/// )?;
/// let input = ConnectorInput::new("app-1").with_email("alice@fabrikam.example").with_claim("city", "Oslo");
/// let request = build_request(&config, &input)?;
/// assert_eq!(request.method(), "POST");
/// assert_eq!(request.headers()["authorization"], "Basic dXNlcjpwYXNz");
/// let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
/// assert_eq!(body["step"], "PostAttributeCollection");
/// assert_eq!(body["city"], "Oslo");
/// # Ok::<(), guestpass::flow::connector::ConnectorError>(())
/// ```
pub fn build_request(
    config: &ConnectorConfig,
    input: &ConnectorInput,
) -> Result<HttpRequest, ConnectorError> {
    check_input_field("client_id", &input.client_id)?;
    let mut body = serde_json::Map::new();
    if let Some(email) = &input.email {
        check_input_field("email", email)?;
        body.insert("email".into(), Value::String(email.clone()));
    }
    if !input.identities.is_empty() {
        for identity in &input.identities {
            check_input_field("identities", &identity.sign_in_type)?;
            check_input_field("identities", &identity.issuer)?;
            check_input_field("identities", &identity.issuer_assigned_id)?;
        }
        let identities = serde_json::to_value(&input.identities).map_err(|e| ConnectorError::Request {
            reason: e.to_string(),
        })?;
        body.insert("identities".into(), identities);
    }
    for (name, value) in &input.claims {
        check_request_claim(name, value)?;
        if !value.is_null() {
            body.insert(name.clone(), value.clone());
        }
    }
    body.insert("step".into(), Value::String(config.step.wire_name().into()));
    body.insert("client_id".into(), Value::String(input.client_id.clone()));
    if let Some(ui_locales) = &input.ui_locales {
        check_input_field("ui_locales", ui_locales)?;
        body.insert("ui_locales".into(), Value::String(ui_locales.clone()));
    }
    let body = serde_json::to_vec(&Value::Object(body)).map_err(|e| ConnectorError::Request {
        reason: e.to_string(),
    })?;

    let mut request = HttpRequest::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = config
        .target_url
        .as_str()
        .parse()
        .map_err(|_| ConnectorError::Request {
            reason: "the target url is not a valid request uri".into(),
        })?;
    let headers = request.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    match &config.authentication {
        ConnectorAuth::Basic { username, password } => {
            let credentials = format!("{username}:{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials.as_bytes());
            let mut value =
                HeaderValue::try_from(format!("Basic {encoded}")).map_err(|_| ConnectorError::Request {
                    reason: "the credentials do not fit in a header".into(),
                })?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        ConnectorAuth::ClientCertificate { certificate } => {
            request
                .extensions_mut()
                .insert(ClientCertificate::new(certificate.clone()));
        }
    }
    Ok(request)
}

/// What the API decided, or why its answer could not be used.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnectorOutcome {
    /// Go on with the flow. The claims pre-fill the attribute collection page
    /// (after [`ConnectorStep::PostFederationSignup`]) or override the
    /// collected values (after [`ConnectorStep::PostAttributeCollection`]).
    ///
    /// The names are valid claim names and not one of the request's own
    /// keys, but may name any claim: the caller keeps only the claims its
    /// flow collects, and checks each value against the attribute's type.
    Continue {
        /// Returned claims by name; each value a string, boolean, number or
        /// array of strings.
        claims: BTreeMap<String, ClaimValue>,
    },
    /// End the flow on a block page showing `user_message`.
    Block {
        /// Plain text from the API (trimmed, not empty, without control
        /// characters); escape it before putting it in HTML.
        user_message: String,
    },
    /// Return to the attribute collection page and show `user_message`.
    ValidationError {
        /// Plain text from the API, as for [`ConnectorOutcome::Block`].
        user_message: String,
    },
    /// The API did not answer, or failed. The flow blocks with the
    /// configured message.
    Unavailable {
        /// What happened, for logs.
        reason: UnavailableReason,
    },
    /// The API answered outside the wire format. The flow blocks with the
    /// configured message.
    Malformed {
        /// What was wrong, for logs.
        reason: MalformedReason,
    },
}

impl ConnectorOutcome {
    /// The outcome as the flow at `step` must treat it: a validation error is
    /// only meaningful after attribute collection, elsewhere it is
    /// [`MalformedReason::ValidationErrorNotAllowed`].
    pub fn at_step(self, step: ConnectorStep) -> Self {
        match self {
            ConnectorOutcome::ValidationError { .. } if !step.allows_validation_error() => {
                ConnectorOutcome::Malformed {
                    reason: MalformedReason::ValidationErrorNotAllowed,
                }
            }
            other => other,
        }
    }

    /// The message of the block page this outcome ends the flow with: the
    /// API's message for [`ConnectorOutcome::Block`], the configured one
    /// (in the user's language) when the API was unavailable or malformed,
    /// and `None` when the flow goes on.
    ///
    /// ```
    /// use guestpass::flow::connector::{
    ///     ConnectorOutcome, LocalizedMessage, OnUnavailable, UnavailableReason,
    /// };
    ///
    /// let on_unavailable = OnUnavailable::Block(LocalizedMessage::new("Try again later")?);
    /// let outcome = ConnectorOutcome::Unavailable { reason: UnavailableReason::Timeout };
    /// assert_eq!(outcome.block_message(&on_unavailable, Some("en")), Some("Try again later"));
    /// # Ok::<(), guestpass::flow::connector::ConnectorError>(())
    /// ```
    pub fn block_message<'a>(
        &'a self,
        on_unavailable: &'a OnUnavailable,
        ui_locales: Option<&str>,
    ) -> Option<&'a str> {
        match self {
            ConnectorOutcome::Block { user_message } => Some(user_message),
            ConnectorOutcome::Unavailable { .. } | ConnectorOutcome::Malformed { .. } => {
                Some(on_unavailable.message().for_locales(ui_locales))
            }
            ConnectorOutcome::Continue { .. } | ConnectorOutcome::ValidationError { .. } => None,
        }
    }
}

/// Why the API counts as unavailable. Nothing here contains a secret.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnavailableReason {
    /// The API answered with a `5xx` status.
    #[error("connector answered with server error status {status}")]
    ServerError {
        /// The status code.
        status: u16,
    },
    /// No answer within the timeout.
    #[error("connector did not answer in time")]
    Timeout,
    /// No connection could be made.
    #[error("could not connect to the connector: {message}")]
    Connect {
        /// From the [`HttpClient`].
        message: String,
    },
    /// The exchange failed otherwise.
    #[error("connector exchange failed: {message}")]
    Transport {
        /// From the [`HttpClient`].
        message: String,
    },
}

/// How an answer departs from the wire format. Quoted values are shortened
/// and stripped of control characters.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MalformedReason {
    /// A status other than 200, 400 and `5xx`.
    #[error("unexpected status {status}")]
    UnexpectedStatus {
        /// The status code.
        status: u16,
    },
    /// The body exceeds [`MAX_RESPONSE_BODY`].
    #[error("response body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The `Content-Type` is not JSON.
    #[error("content type `{content_type}` is not json")]
    NotJson {
        /// The header value.
        content_type: String,
    },
    /// The body does not parse as JSON.
    #[error("response body is not valid json (line {line}, column {column})")]
    InvalidJson {
        /// Where parsing stopped.
        line: usize,
        /// Where parsing stopped.
        column: usize,
    },
    /// The body is JSON but not an object.
    #[error("response body is not a json object")]
    NotAnObject,
    /// A key appears twice in the object.
    #[error("field `{field}` appears more than once")]
    DuplicateField {
        /// The key.
        field: String,
    },
    /// A required field is missing.
    #[error("field `{field}` is missing")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// The expected type.
        expected: &'static str,
    },
    /// `version` is not [`RESPONSE_VERSION`].
    #[error("unsupported version `{version}`")]
    UnsupportedVersion {
        /// The version found.
        version: String,
    },
    /// `action` is none of `Continue`, `ShowBlockPage`, `ValidationError`.
    #[error("unknown action `{action}`")]
    UnknownAction {
        /// The action found.
        action: String,
    },
    /// The action came with the wrong HTTP status (`Continue` and
    /// `ShowBlockPage` need 200, `ValidationError` needs 400).
    #[error("action `{action}` is not allowed with status {status}")]
    ActionStatusMismatch {
        /// The action.
        action: &'static str,
        /// The HTTP status.
        status: u16,
    },
    /// A `ValidationError` whose `status` field is not `400` or `"400"`.
    #[error("field `status` must be 400")]
    StatusFieldMismatch,
    /// `userMessage` is unusable.
    #[error("field `userMessage` {problem}")]
    InvalidUserMessage {
        /// What is wrong: empty, too long, or has control characters.
        problem: &'static str,
    },
    /// A field that the action does not allow (a claim in a `ShowBlockPage`,
    /// a `userMessage` in a `Continue`, ...).
    #[error("field `{field}` is not allowed with action `{action}`")]
    UnexpectedField {
        /// The field.
        field: String,
        /// The action.
        action: &'static str,
    },
    /// A returned claim name is not a plain claim name.
    #[error("claim name `{name}` is invalid")]
    InvalidClaimName {
        /// The name.
        name: String,
    },
    /// More claims than [`MAX_RETURNED_CLAIMS`].
    #[error("more than {limit} claims returned")]
    TooManyClaims {
        /// The limit.
        limit: usize,
    },
    /// A returned claim value is unusable.
    #[error("claim `{name}` has an unsupported value: {problem}")]
    InvalidClaimValue {
        /// The claim name.
        name: String,
        /// What is wrong with the value.
        problem: &'static str,
    },
    /// A `ValidationError` at [`ConnectorStep::PostFederationSignup`], where
    /// the user has no form to correct.
    #[error("action `ValidationError` is only allowed after attribute collection")]
    ValidationErrorNotAllowed,
}

/// The top level of a response body: its entries if it is an object (with
/// the first repeated key, if any), or that it is something else.
enum TopLevel {
    Object {
        entries: BTreeMap<String, Value>,
        duplicate: Option<String>,
    },
    NotObject,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut entries = BTreeMap::new();
        let mut duplicate = None;
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            match entries.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    duplicate.get_or_insert_with(|| slot.key().clone());
                }
            }
        }
        Ok(TopLevel::Object { entries, duplicate })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }
}

fn parse_object(body: &[u8]) -> Result<BTreeMap<String, Value>, MalformedReason> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = TopLevel::deserialize(&mut deserializer).and_then(|top| deserializer.end().map(|()| top));
    match parsed {
        Err(e) => Err(MalformedReason::InvalidJson {
            line: e.line(),
            column: e.column(),
        }),
        Ok(TopLevel::NotObject) => Err(MalformedReason::NotAnObject),
        Ok(TopLevel::Object {
            duplicate: Some(field),
            ..
        }) => Err(MalformedReason::DuplicateField { field: quote(&field) }),
        Ok(TopLevel::Object { entries, .. }) => Ok(entries),
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), MalformedReason> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let media_type = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(MalformedReason::NotJson {
            content_type: quote(&text),
        })
    }
}

fn take_string(
    entries: &mut BTreeMap<String, Value>,
    field: &'static str,
) -> Result<String, MalformedReason> {
    match entries.remove(field) {
        None => Err(MalformedReason::MissingField { field }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(MalformedReason::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn take_user_message(entries: &mut BTreeMap<String, Value>) -> Result<String, MalformedReason> {
    let message = take_string(entries, "userMessage")?;
    check_message(&message).map_err(|problem| MalformedReason::InvalidUserMessage { problem })?;
    Ok(message.trim().to_owned())
}

fn reject_rest(entries: BTreeMap<String, Value>, action: &'static str) -> Result<(), MalformedReason> {
    match entries.into_keys().next() {
        None => Ok(()),
        Some(field) => Err(MalformedReason::UnexpectedField {
            field: quote(&field),
            action,
        }),
    }
}

fn check_claim_string(text: &str) -> Result<(), &'static str> {
    if text.chars().count() > MAX_CLAIM_VALUE_CHARS {
        Err("string too long")
    } else if text.chars().any(is_forbidden_char) {
        Err("string contains control characters")
    } else {
        Ok(())
    }
}

fn check_returned_claim(name: &str, value: &Value) -> Result<(), MalformedReason> {
    if !is_valid_claim_name(name) {
        return Err(MalformedReason::InvalidClaimName { name: quote(name) });
    }
    if RESPONSE_KEYS.contains(&name) || REQUEST_KEYS.contains(&name) {
        return Err(MalformedReason::UnexpectedField {
            field: name.to_owned(),
            action: "Continue",
        });
    }
    let invalid = |problem| MalformedReason::InvalidClaimValue {
        name: name.to_owned(),
        problem,
    };
    match value {
        Value::Bool(_) | Value::Number(_) => Ok(()),
        Value::String(text) => check_claim_string(text).map_err(invalid),
        Value::Array(items) => {
            if items.len() > MAX_CLAIM_ARRAY_LEN {
                return Err(invalid("array too long"));
            }
            for item in items {
                match item {
                    Value::String(text) => check_claim_string(text).map_err(invalid)?,
                    _ => return Err(invalid("an array may hold only strings")),
                }
            }
            Ok(())
        }
        Value::Null => Err(invalid("null is not a claim value")),
        Value::Object(_) => Err(invalid("objects are not claim values")),
    }
}

fn parse_body(status: StatusCode, body: &[u8]) -> Result<ConnectorOutcome, MalformedReason> {
    let mut entries = parse_object(body)?;
    let version = take_string(&mut entries, "version")?;
    if version != RESPONSE_VERSION {
        return Err(MalformedReason::UnsupportedVersion {
            version: quote(&version),
        });
    }
    let action_text = take_string(&mut entries, "action")?;
    let (action, wanted_status) = match action_text.as_str() {
        "Continue" => ("Continue", StatusCode::OK),
        "ShowBlockPage" => ("ShowBlockPage", StatusCode::OK),
        "ValidationError" => ("ValidationError", StatusCode::BAD_REQUEST),
        other => return Err(MalformedReason::UnknownAction { action: quote(other) }),
    };
    if status != wanted_status {
        return Err(MalformedReason::ActionStatusMismatch {
            action,
            status: status.as_u16(),
        });
    }
    match action {
        "ShowBlockPage" => {
            let user_message = take_user_message(&mut entries)?;
            reject_rest(entries, action)?;
            Ok(ConnectorOutcome::Block { user_message })
        }
        "ValidationError" => {
            let status_ok = match entries.remove("status") {
                None => return Err(MalformedReason::MissingField { field: "status" }),
                Some(Value::Number(n)) => n.as_u64() == Some(400),
                Some(Value::String(s)) => s == "400",
                Some(_) => false,
            };
            if !status_ok {
                return Err(MalformedReason::StatusFieldMismatch);
            }
            let user_message = take_user_message(&mut entries)?;
            reject_rest(entries, action)?;
            Ok(ConnectorOutcome::ValidationError { user_message })
        }
        _ => {
            if entries.len() > MAX_RETURNED_CLAIMS {
                return Err(MalformedReason::TooManyClaims {
                    limit: MAX_RETURNED_CLAIMS,
                });
            }
            for (name, value) in &entries {
                check_returned_claim(name, value)?;
            }
            Ok(ConnectorOutcome::Continue { claims: entries })
        }
    }
}

/// Reads the API's answer. Total: any status, headers and bytes give an
/// outcome, never a panic.
///
/// - `5xx` is [`ConnectorOutcome::Unavailable`]; any status but 200 and 400
///   is [`MalformedReason::UnexpectedStatus`].
/// - The body may be at most [`MAX_RESPONSE_BODY`] bytes; a `Content-Type`,
///   if present, must be JSON.
/// - The body must be one JSON object with no repeated key, `version`
///   exactly `"1.0.0"` and `action` exactly `Continue`, `ShowBlockPage` or
///   `ValidationError` (keys and values are case-sensitive).
/// - `ShowBlockPage` (status 200) holds `userMessage` and nothing else;
///   `ValidationError` (status 400) holds `status` (`400` or `"400"`) and
///   `userMessage` and nothing else. The message is trimmed; it must not be
///   empty, be longer than [`MAX_USER_MESSAGE_CHARS`] characters, or hold
///   control characters.
/// - `Continue` (status 200) may return up to [`MAX_RETURNED_CLAIMS`]
///   claims with [valid names](is_valid_claim_name) and values that are
///   strings (up to [`MAX_CLAIM_VALUE_CHARS`] characters, no control
///   characters), booleans, numbers or arrays of such strings (up to
///   [`MAX_CLAIM_ARRAY_LEN`]). `userMessage`, `status` and the request's own
///   keys (`email`, `identities`, `step`, `client_id`, `ui_locales`) are not
///   claims.
///
/// Whether a validation error is allowed depends on the step; see
/// [`ConnectorOutcome::at_step`].
///
/// ```
/// use guestpass::flow::connector::{parse_response, ConnectorOutcome};
/// use guestpass::http::{HeaderMap, StatusCode};
///
/// let body = br#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":"Your request is pending"}"#;
/// let outcome = parse_response(StatusCode::OK, &HeaderMap::new(), body);
/// assert_eq!(outcome, ConnectorOutcome::Block { user_message: "Your request is pending".into() });
///
/// let outcome = parse_response(StatusCode::OK, &HeaderMap::new(), b"<html>");
/// assert!(matches!(outcome, ConnectorOutcome::Malformed { .. }));
/// ```
pub fn parse_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ConnectorOutcome {
    if status.is_server_error() {
        return ConnectorOutcome::Unavailable {
            reason: UnavailableReason::ServerError {
                status: status.as_u16(),
            },
        };
    }
    let checked = if status != StatusCode::OK && status != StatusCode::BAD_REQUEST {
        Err(MalformedReason::UnexpectedStatus {
            status: status.as_u16(),
        })
    } else if body.len() > MAX_RESPONSE_BODY {
        Err(MalformedReason::BodyTooLarge {
            limit: MAX_RESPONSE_BODY,
        })
    } else {
        check_content_type(headers).and_then(|()| parse_body(status, body))
    };
    checked.unwrap_or_else(|reason| ConnectorOutcome::Malformed { reason })
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send the request again.
    Retry,
    /// Stop with this outcome.
    Done(ConnectorOutcome),
}

/// Decides after attempt number `attempt` (1 for the first) with its result.
///
/// A timeout, a connection failure or a `5xx` status is retried while fewer
/// than [`MAX_ATTEMPTS`] attempts were made, and becomes
/// [`ConnectorOutcome::Unavailable`] after that. Any other result, including
/// every `4xx` and `2xx` status, is final at once.
///
/// ```
/// use guestpass::flow::connector::{next_step, ConnectorOutcome, Decision, UnavailableReason};
/// use guestpass::http::HttpError;
///
/// assert_eq!(next_step(1, &Err(HttpError::Timeout)), Decision::Retry);
/// assert_eq!(
///     next_step(2, &Err(HttpError::Timeout)),
///     Decision::Done(ConnectorOutcome::Unavailable { reason: UnavailableReason::Timeout }),
/// );
/// ```
pub fn next_step(attempt: u32, result: &Result<HttpResponse, HttpError>) -> Decision {
    let transient = match result {
        Ok(response) => response.status().is_server_error(),
        Err(HttpError::Timeout | HttpError::Connect { .. }) => true,
        Err(HttpError::BodyTooLarge { .. } | HttpError::Other { .. }) => false,
    };
    if transient && attempt < MAX_ATTEMPTS {
        return Decision::Retry;
    }
    let outcome = match result {
        Ok(response) => parse_response(response.status(), response.headers(), response.body()),
        Err(HttpError::Timeout) => ConnectorOutcome::Unavailable {
            reason: UnavailableReason::Timeout,
        },
        Err(HttpError::Connect { message }) => ConnectorOutcome::Unavailable {
            reason: UnavailableReason::Connect {
                message: message.clone(),
            },
        },
        Err(HttpError::Other { message }) => ConnectorOutcome::Unavailable {
            reason: UnavailableReason::Transport {
                message: message.clone(),
            },
        },
        Err(HttpError::BodyTooLarge { limit }) => ConnectorOutcome::Malformed {
            reason: MalformedReason::BodyTooLarge { limit: *limit },
        },
    };
    Decision::Done(outcome)
}

/// Calls the connector: builds the request, executes it with the
/// configured limits, retries once if [`next_step`] says so, and returns the
/// outcome for the connector's step (see [`ConnectorOutcome::at_step`]).
///
/// The error is returned only when the request cannot be built from
/// `input`; nothing was sent then. Every failure of the API itself is an
/// outcome, which blocks the flow unless it is `Continue` or
/// `ValidationError`.
///
/// ```
/// use guestpass::flow::connector::{
///     call, ConnectorAuth, ConnectorConfig, ConnectorInput, ConnectorOutcome, ConnectorStep,
///     LocalizedMessage, OnUnavailable,
/// };
/// use guestpass::http::{FnHttpClient, HttpResponse};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let config = ConnectorConfig::new(
///     "Check approval status",
///     "https://approvals.example.com/api/check",
///     ConnectorAuth::ClientCertificate { certificate: "approvals".into() },
///     ConnectorStep::PostFederationSignup,
///     OnUnavailable::Block(LocalizedMessage::new("Sign-up is not available right now")?),
/// )?;
/// let client = FnHttpClient::new(|_, _| {
///     Ok(HttpResponse::new(br#"{"version":"1.0.0","action":"Continue","city":"Oslo"}"#.to_vec()))
/// });
/// let outcome = call(&client, &config, &ConnectorInput::new("app-1")).await?;
/// let ConnectorOutcome::Continue { claims } = outcome else { panic!("{outcome:?}") };
/// assert_eq!(claims["city"], "Oslo");
/// # Ok::<(), guestpass::flow::connector::ConnectorError>(())
/// # }).unwrap();
/// ```
pub async fn call(
    client: &dyn HttpClient,
    config: &ConnectorConfig,
    input: &ConnectorInput,
) -> Result<ConnectorOutcome, ConnectorError> {
    let request = build_request(config, input)?;
    let limits = config.http_limits();
    let mut attempt = 1;
    loop {
        let result = client.execute(request.clone(), limits).await;
        match next_step(attempt, &result) {
            Decision::Retry => attempt += 1,
            Decision::Done(outcome) => return Ok(outcome.at_step(config.step)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PASSWORD: &str = "pw-Tr0ub4dor&3";

    fn message() -> OnUnavailable {
        OnUnavailable::Block(LocalizedMessage::new("Sign-up is unavailable").unwrap())
    }

    fn basic() -> ConnectorAuth {
        ConnectorAuth::Basic {
            username: "svc".into(),
            password: SecretString::new(PASSWORD),
        }
    }

    fn config(url: &str) -> Result<ConnectorConfig, ConnectorError> {
        ConnectorConfig::new(
            "Approvals",
            url,
            basic(),
            ConnectorStep::PostAttributeCollection,
            message(),
        )
    }

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers
    }

    fn parse(status: u16, body: &str) -> ConnectorOutcome {
        parse_response(
            StatusCode::from_u16(status).unwrap(),
            &json_headers(),
            body.as_bytes(),
        )
    }

    fn malformed(status: u16, body: &str) -> MalformedReason {
        match parse(status, body) {
            ConnectorOutcome::Malformed { reason } => reason,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn numbers_parse_exactly_and_survive_a_round_trip() {
        // The nearest double to the text, so the value the app receives
        // prints back as the connector sent it.
        let body = r#"{"version":"1.0.0","action":"Continue","n":3.777777777777778e+100}"#;
        let ConnectorOutcome::Continue { claims } = parse(200, body) else {
            panic!("expected continue");
        };
        assert_eq!(claims["n"].as_f64(), Some(3.777777777777778e100));
        let again = format!(r#"{{"version":"1.0.0","action":"Continue","n":{}}}"#, claims["n"]);
        assert_eq!(parse(200, &again), ConnectorOutcome::Continue { claims });
    }

    #[test]
    fn target_url_rules() {
        assert!(config("https://api.example.com/check?code=abc").is_ok());
        assert!(config("http://localhost:8080/check").is_ok());
        assert!(config("http://127.0.0.1:8080/check").is_ok());
        assert!(config("http://[::1]:8080/check").is_ok());
        for bad in [
            "http://api.example.com/check",
            "http://10.0.0.1/check",
            "ftp://api.example.com/",
            "https://user:pw@api.example.com/",
            "https://user@api.example.com/",
            "https://api.example.com/check#frag",
            "https://api.example.com/check#",
            "not a url",
            "file:///etc/passwd",
        ] {
            let err = config(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConnectorError::InvalidConfig {
                        field: "targetUrl",
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn auth_rules() {
        let with = |auth| {
            ConnectorConfig::new(
                "A",
                "https://a.example/",
                auth,
                ConnectorStep::PostFederationSignup,
                message(),
            )
        };
        assert!(
            with(ConnectorAuth::Basic {
                username: "a:b".into(),
                password: "x".into()
            })
            .is_err()
        );
        assert!(
            with(ConnectorAuth::Basic {
                username: "a".into(),
                password: "".into()
            })
            .is_err()
        );
        assert!(
            with(ConnectorAuth::Basic {
                username: "".into(),
                password: "x".into()
            })
            .is_err()
        );
        assert!(
            with(ConnectorAuth::ClientCertificate {
                certificate: " ".into()
            })
            .is_err()
        );
        assert!(
            with(ConnectorAuth::ClientCertificate {
                certificate: "cert".into()
            })
            .is_ok()
        );
    }

    #[test]
    fn timeout_bounds() {
        let c = config("https://a.example/").unwrap();
        assert_eq!(c.timeout(), Duration::from_secs(20));
        assert!(c.clone().with_timeout(Duration::ZERO).is_err());
        assert!(c.clone().with_timeout(Duration::from_millis(20_001)).is_err());
        assert_eq!(
            c.with_timeout(Duration::from_millis(500)).unwrap().http_limits(),
            HttpLimits::new(Duration::from_millis(500), MAX_RESPONSE_BODY)
        );
    }

    #[test]
    fn debug_hides_password_and_query() {
        let c = config("https://api.example.com/check?code=fn-key-123").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(!shown.contains("fn-key-123"), "{shown}");
        assert!(shown.contains("https://api.example.com/check?.."), "{shown}");
        assert!(shown.contains("SecretString(..)"), "{shown}");
    }

    #[test]
    fn localized_message_selection() {
        let m = LocalizedMessage::new("default")
            .unwrap()
            .with_locale("fr", "fr")
            .unwrap()
            .with_locale("pt-BR", "pt-BR")
            .unwrap();
        assert_eq!(m.for_locales(Some("pt-br")), "pt-BR");
        assert_eq!(m.for_locales(Some("pt-PT")), "default");
        assert_eq!(m.for_locales(Some("de fr-CA")), "fr");
        assert_eq!(m.for_locales(Some("fr;q=0.9")), "fr");
        assert_eq!(m.for_locales(Some("")), "default");
        assert!(m.clone().with_locale("FR", "again").is_err());
        assert!(m.clone().with_locale("f r", "x").is_err());
        assert!(LocalizedMessage::new("").is_err());
        assert!(LocalizedMessage::new("a\u{7}b").is_err());
        assert!(LocalizedMessage::new("x".repeat(MAX_USER_MESSAGE_CHARS + 1)).is_err());
    }

    #[test]
    fn request_shape() {
        let c = config("https://api.example.com/check").unwrap();
        let input = ConnectorInput::new("client-1")
            .with_email("a@b.example")
            .with_identity(ConnectorIdentity::new("federated", "google.com", "123"))
            .with_claim("givenName", "Ann")
            .with_claim("extension_abc_Tags", json!(["x", "y"]))
            .with_claim("surname", Value::Null)
            .with_ui_locales("en-US");
        let request = build_request(&c, &input).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "https://api.example.com/check");
        assert_eq!(request.headers()[header::CONTENT_TYPE], "application/json");
        assert!(request.headers()[header::AUTHORIZATION].is_sensitive());
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(
            body,
            json!({
                "email": "a@b.example",
                "identities": [{"signInType": "federated", "issuer": "google.com", "issuerAssignedId": "123"}],
                "givenName": "Ann",
                "extension_abc_Tags": ["x", "y"],
                "step": "PostAttributeCollection",
                "client_id": "client-1",
                "ui_locales": "en-US",
            })
        );
        assert!(!format!("{request:?}").contains(PASSWORD));
    }

    #[test]
    fn request_rejects_bad_claims() {
        let c = config("https://api.example.com/check").unwrap();
        let build =
            |name: &str, value: Value| build_request(&c, &ConnectorInput::new("c").with_claim(name, value));
        assert!(matches!(
            build("step", json!("x")),
            Err(ConnectorError::ReservedClaim { .. })
        ));
        assert!(matches!(
            build("given-name", json!("x")),
            Err(ConnectorError::InvalidClaimName { .. })
        ));
        assert!(matches!(
            build("a", json!({"k": 1})),
            Err(ConnectorError::UnsupportedClaimValue { .. })
        ));
        assert!(matches!(
            build("a", json!([1])),
            Err(ConnectorError::UnsupportedClaimValue { .. })
        ));
        assert!(build("a", json!(12)).is_ok());
        assert!(matches!(
            build_request(&c, &ConnectorInput::new("")),
            Err(ConnectorError::InvalidInput {
                field: "client_id",
                ..
            })
        ));
    }

    #[test]
    fn client_certificate_goes_to_extensions() {
        let c = ConnectorConfig::new(
            "A",
            "https://a.example/",
            ConnectorAuth::ClientCertificate {
                certificate: "approvals".into(),
            },
            ConnectorStep::PostFederationSignup,
            message(),
        )
        .unwrap();
        let request = build_request(&c, &ConnectorInput::new("c")).unwrap();
        assert!(request.headers().get(header::AUTHORIZATION).is_none());
        assert_eq!(
            request.extensions().get::<ClientCertificate>(),
            Some(&ClientCertificate::new("approvals"))
        );
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(body, json!({"step": "PostFederationSignup", "client_id": "c"}));
    }

    #[test]
    fn documented_responses() {
        assert_eq!(
            parse(
                200,
                r#"{"version":"1.0.0","action":"Continue","postalCode":"12349"}"#
            ),
            ConnectorOutcome::Continue {
                claims: BTreeMap::from([("postalCode".to_owned(), json!("12349"))])
            }
        );
        assert_eq!(
            parse(
                200,
                r#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":" No. "}"#
            ),
            ConnectorOutcome::Block {
                user_message: "No.".into()
            }
        );
        for status in [r#"400"#, r#""400""#] {
            let body = format!(
                r#"{{"version":"1.0.0","status":{status},"action":"ValidationError","userMessage":"Bad code"}}"#
            );
            assert_eq!(
                parse(400, &body),
                ConnectorOutcome::ValidationError {
                    user_message: "Bad code".into()
                }
            );
        }
    }

    #[test]
    fn malformed_responses_name_the_problem() {
        use MalformedReason as M;
        let cases: Vec<(u16, &str, M)> = vec![
            (200, "{", M::InvalidJson { line: 1, column: 1 }),
            (200, "[1,2]", M::NotAnObject),
            (200, r#""Continue""#, M::NotAnObject),
            (
                200,
                r#"{"action":"Continue"}"#,
                M::MissingField { field: "version" },
            ),
            (
                200,
                r#"{"version":1,"action":"Continue"}"#,
                M::WrongType {
                    field: "version",
                    expected: "a string",
                },
            ),
            (
                200,
                r#"{"version":"2.0.0","action":"Continue"}"#,
                M::UnsupportedVersion {
                    version: "2.0.0".into(),
                },
            ),
            (200, r#"{"version":"1.0.0"}"#, M::MissingField { field: "action" }),
            (
                200,
                r#"{"version":"1.0.0","action":"continue"}"#,
                M::UnknownAction {
                    action: "continue".into(),
                },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"Continue","action":"ShowBlockPage"}"#,
                M::DuplicateField {
                    field: "action".into(),
                },
            ),
            (
                400,
                r#"{"version":"1.0.0","action":"Continue"}"#,
                M::ActionStatusMismatch {
                    action: "Continue",
                    status: 400,
                },
            ),
            (
                200,
                r#"{"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"x"}"#,
                M::ActionStatusMismatch {
                    action: "ValidationError",
                    status: 200,
                },
            ),
            (
                400,
                r#"{"version":"1.0.0","status":200,"action":"ValidationError","userMessage":"x"}"#,
                M::StatusFieldMismatch,
            ),
            (
                400,
                r#"{"version":"1.0.0","action":"ValidationError","userMessage":"x"}"#,
                M::MissingField { field: "status" },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"ShowBlockPage"}"#,
                M::MissingField { field: "userMessage" },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":"  "}"#,
                M::InvalidUserMessage { problem: "is empty" },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":"a\u0000b"}"#,
                M::InvalidUserMessage {
                    problem: "contains control characters",
                },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":"x","city":"Oslo"}"#,
                M::UnexpectedField {
                    field: "city".into(),
                    action: "ShowBlockPage",
                },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"Continue","userMessage":"hi"}"#,
                M::UnexpectedField {
                    field: "userMessage".into(),
                    action: "Continue",
                },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"Continue","bad-name":"x"}"#,
                M::InvalidClaimName {
                    name: "bad-name".into(),
                },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"Continue","a":null}"#,
                M::InvalidClaimValue {
                    name: "a".into(),
                    problem: "null is not a claim value",
                },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"Continue","a":{"b":1}}"#,
                M::InvalidClaimValue {
                    name: "a".into(),
                    problem: "objects are not claim values",
                },
            ),
            (
                200,
                r#"{"version":"1.0.0","action":"Continue","a":[1]}"#,
                M::InvalidClaimValue {
                    name: "a".into(),
                    problem: "an array may hold only strings",
                },
            ),
            (
                201,
                r#"{"version":"1.0.0","action":"Continue"}"#,
                M::UnexpectedStatus { status: 201 },
            ),
            (302, "", M::UnexpectedStatus { status: 302 }),
            (401, "", M::UnexpectedStatus { status: 401 }),
        ];
        for (status, body, expected) in cases {
            assert_eq!(malformed(status, body), expected, "{status} {body}");
        }
    }

    #[test]
    fn message_length_bound_is_inclusive() {
        let body = |n: usize| {
            json!({"version":"1.0.0","action":"ShowBlockPage","userMessage":"é".repeat(n)}).to_string()
        };
        assert!(matches!(
            parse(200, &body(MAX_USER_MESSAGE_CHARS)),
            ConnectorOutcome::Block { .. }
        ));
        assert_eq!(
            malformed(200, &body(MAX_USER_MESSAGE_CHARS + 1)),
            MalformedReason::InvalidUserMessage {
                problem: "is too long"
            }
        );
    }

    #[test]
    fn claim_count_bound() {
        let mut object = serde_json::Map::new();
        object.insert("version".into(), json!("1.0.0"));
        object.insert("action".into(), json!("Continue"));
        for i in 0..MAX_RETURNED_CLAIMS {
            object.insert(format!("c{i}"), json!(i));
        }
        let at_limit = Value::Object(object.clone()).to_string();
        assert!(
            matches!(parse(200, &at_limit), ConnectorOutcome::Continue { claims } if claims.len() == MAX_RETURNED_CLAIMS)
        );
        object.insert("extra".into(), json!(1));
        assert_eq!(
            malformed(200, &Value::Object(object).to_string()),
            MalformedReason::TooManyClaims {
                limit: MAX_RETURNED_CLAIMS
            }
        );
    }

    #[test]
    fn body_size_and_content_type() {
        let huge = format!(
            r#"{{"version":"1.0.0","action":"ShowBlockPage","userMessage":"x","pad":"{}"}}"#,
            " ".repeat(MAX_RESPONSE_BODY)
        );
        assert_eq!(
            malformed(200, &huge),
            MalformedReason::BodyTooLarge {
                limit: MAX_RESPONSE_BODY
            }
        );

        let ok = r#"{"version":"1.0.0","action":"Continue"}"#;
        let mut html = HeaderMap::new();
        html.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        assert_eq!(
            parse_response(StatusCode::OK, &html, ok.as_bytes()),
            ConnectorOutcome::Malformed {
                reason: MalformedReason::NotJson {
                    content_type: "text/html".into()
                }
            }
        );
        let mut problem = HeaderMap::new();
        problem.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        assert!(matches!(
            parse_response(StatusCode::OK, &problem, ok.as_bytes()),
            ConnectorOutcome::Continue { .. }
        ));
        assert!(matches!(
            parse_response(StatusCode::OK, &HeaderMap::new(), ok.as_bytes()),
            ConnectorOutcome::Continue { .. }
        ));
    }

    #[test]
    fn server_errors_are_unavailable() {
        assert_eq!(
            parse(503, "<html>down</html>"),
            ConnectorOutcome::Unavailable {
                reason: UnavailableReason::ServerError { status: 503 }
            }
        );
    }

    #[test]
    fn retry_policy() {
        let response = |status: u16| {
            let mut r = HttpResponse::new(Vec::new());
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok(r)
        };
        let connect = Err(HttpError::Connect {
            message: "refused".into(),
        });
        assert_eq!(next_step(1, &Err(HttpError::Timeout)), Decision::Retry);
        assert_eq!(next_step(1, &connect), Decision::Retry);
        assert_eq!(next_step(1, &response(500)), Decision::Retry);
        assert_eq!(
            next_step(2, &response(502)),
            Decision::Done(ConnectorOutcome::Unavailable {
                reason: UnavailableReason::ServerError { status: 502 }
            })
        );
        assert_eq!(
            next_step(2, &connect),
            Decision::Done(ConnectorOutcome::Unavailable {
                reason: UnavailableReason::Connect {
                    message: "refused".into()
                }
            })
        );
        for final_result in [
            response(400),
            response(404),
            response(200),
            Err(HttpError::BodyTooLarge { limit: 1 }),
            Err(HttpError::Other {
                message: "reset".into(),
            }),
        ] {
            assert!(
                matches!(next_step(1, &final_result), Decision::Done(_)),
                "{final_result:?}"
            );
        }
    }

    #[test]
    fn validation_error_only_after_attribute_collection() {
        let outcome = ConnectorOutcome::ValidationError {
            user_message: "x".into(),
        };
        assert_eq!(
            outcome.clone().at_step(ConnectorStep::PostAttributeCollection),
            outcome
        );
        assert_eq!(
            outcome.at_step(ConnectorStep::PostFederationSignup),
            ConnectorOutcome::Malformed {
                reason: MalformedReason::ValidationErrorNotAllowed
            }
        );
    }

    #[test]
    fn block_messages() {
        let on_unavailable = OnUnavailable::Block(
            LocalizedMessage::new("later")
                .unwrap()
                .with_locale("nl", "later (nl)")
                .unwrap(),
        );
        let malformed = ConnectorOutcome::Malformed {
            reason: MalformedReason::NotAnObject,
        };
        assert_eq!(
            malformed.block_message(&on_unavailable, Some("nl-BE")),
            Some("later (nl)")
        );
        let block = ConnectorOutcome::Block {
            user_message: "no".into(),
        };
        assert_eq!(block.block_message(&on_unavailable, None), Some("no"));
        let cont = ConnectorOutcome::Continue {
            claims: BTreeMap::new(),
        };
        assert_eq!(cont.block_message(&on_unavailable, None), None);
    }

    #[test]
    fn quoted_values_are_bounded_and_clean() {
        let long_action = format!(r#"{{"version":"1.0.0","action":"{}\n`x"}}"#, "A".repeat(500));
        let MalformedReason::UnknownAction { action } = malformed(200, &long_action) else {
            panic!("wrong reason");
        };
        assert!(action.chars().count() <= QUOTE_CHARS + 3);
        assert!(!action.contains('\n') && !action.contains('`'));
    }

    #[test]
    fn errors_convert_to_config_errors() {
        let e = Error::from(config("http://a.example/").unwrap_err());
        assert_eq!(e.category(), crate::error::Category::Internal);
        assert!(
            e.to_string()
                .starts_with("configuration field `targetUrl` is invalid"),
            "{e}"
        );
    }
}
