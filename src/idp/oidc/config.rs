//! [`OidcConfig`] and its validation into the settings a provider runs with.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use crate::error::ConfigError;
use crate::http::HttpLimits;
use crate::idp::provider::{ExpectedIssuer, TENANT_PLACEHOLDER, sanitize, valid_tenant_id};
use crate::idp::wire;
use crate::secret::SecretString;

/// The leeway for `exp`, `nbf` and `iat` unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// The largest leeway accepted.
pub const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);
/// The timeout of each HTTP exchange unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response body read unless configured otherwise, in bytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// The range accepted for [`OidcConfig::max_response_bytes`].
pub const MAX_RESPONSE_BYTES_RANGE: std::ops::RangeInclusive<usize> = 4 * 1024..=1024 * 1024;

/// Authorization parameters the provider sets itself; extras may not
/// override them.
const PROTOCOL_PARAMS: [&str; 13] = [
    "response_type",
    "response_mode",
    "client_id",
    "client_secret",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "request",
    "request_uri",
];

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded client id
    /// and secret (RFC 6749 §2.3.1). The default.
    #[default]
    SecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    SecretPost,
}

impl ClientAuth {
    /// The name in discovery's `token_endpoint_auth_methods_supported`.
    pub fn method_name(self) -> &'static str {
        match self {
            ClientAuth::SecretBasic => "client_secret_basic",
            ClientAuth::SecretPost => "client_secret_post",
        }
    }
}

/// The configuration of an OpenID Connect provider, checked by
/// [`OidcProvider::new`](super::OidcProvider::new).
///
/// Start from [`OidcConfig::new`] (which fills in the defaults), then set
/// fields directly or with the `with_*` methods. `Debug` does not show the
/// client secret.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OidcConfig {
    /// The provider's id (1 to 64 characters of `A-Z a-z 0-9 . _ -`), such
    /// as `google`; also [`ExternalIdentity::provider_id`](crate::idp::ExternalIdentity).
    pub id: String,
    /// The issuer identifier, compared exactly (no normalisation) with
    /// discovery's `issuer`, the callback's `iss` and the ID token's `iss`:
    /// `https`, or `http` on a loopback host; no query or fragment. For a
    /// multi-tenant issuer it may be the template itself.
    pub issuer: String,
    /// Where the discovery document is (default
    /// `{issuer}/.well-known/openid-configuration`); required with
    /// [`issuer_template`](Self::issuer_template).
    pub discovery_url: Option<String>,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret registered with the provider.
    pub client_secret: SecretString,
    /// How the client authenticates at the token endpoint.
    pub client_auth: ClientAuth,
    /// The scopes requested (default `openid email profile`); must contain
    /// `openid`.
    pub scopes: Vec<String>,
    /// The JWS algorithms accepted for ID tokens (default `RS256`, `ES256`).
    /// Any of `RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA`;
    /// `none` and the HMAC algorithms are refused.
    pub allowed_algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 60 s, at most
    /// 5 minutes).
    pub leeway: Duration,
    /// Whether to call the userinfo endpoint after the token exchange;
    /// `None` (the default) calls it when discovery names one.
    pub use_userinfo: Option<bool>,
    /// More authorization request parameters (`prompt`, `login_hint`,
    /// `domain_hint`, `hd`, ...). They may not set a parameter the protocol
    /// uses (`state`, `nonce`, `redirect_uri`, `scope`, ...).
    pub extra_authorize_params: Vec<(String, String)>,
    /// A multi-tenant issuer with a `{tenantid}` placeholder, such as
    /// `https://login.microsoftonline.com/{tenantid}/v2.0`: the ID token's
    /// `iss` must be the template with the token's `tid` put in.
    pub issuer_template: Option<String>,
    /// With [`issuer_template`](Self::issuer_template): the tenants whose
    /// users may sign in (`tid` values); `None` admits every tenant.
    pub allowed_tenants: Option<Vec<String>>,
    /// When set, the ID token's `hd` claim (Google Workspace domain) must be
    /// this domain.
    pub required_hosted_domain: Option<String>,
    /// The email domains this provider is the authority for (direct
    /// federation); stored as lowercase A-labels.
    pub authority_domains: Vec<String>,
    /// Timeout of each HTTP exchange (default 10 s, at most 60 s).
    pub timeout: Duration,
    /// Largest response body read (default 256 KiB; 4 KiB to 1 MiB).
    pub max_response_bytes: usize,
}

impl OidcConfig {
    /// A configuration with the defaults listed on each field.
    pub fn new(
        id: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        Self {
            id: id.into(),
            issuer: issuer.into(),
            discovery_url: None,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            client_auth: ClientAuth::default(),
            scopes: ["openid", "email", "profile"].map(String::from).to_vec(),
            allowed_algorithms: ["RS256", "ES256"].map(String::from).to_vec(),
            leeway: DEFAULT_LEEWAY,
            use_userinfo: None,
            extra_authorize_params: Vec::new(),
            issuer_template: None,
            allowed_tenants: None,
            required_hosted_domain: None,
            authority_domains: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Sets [`discovery_url`](Self::discovery_url).
    pub fn with_discovery_url(mut self, url: impl Into<String>) -> Self {
        self.discovery_url = Some(url.into());
        self
    }

    /// Sets [`client_auth`](Self::client_auth).
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Sets [`scopes`](Self::scopes).
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`allowed_algorithms`](Self::allowed_algorithms).
    pub fn with_allowed_algorithms<S: Into<String>>(
        mut self,
        algorithms: impl IntoIterator<Item = S>,
    ) -> Self {
        self.allowed_algorithms = algorithms.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`leeway`](Self::leeway).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Sets [`use_userinfo`](Self::use_userinfo).
    pub fn with_userinfo(mut self, use_userinfo: bool) -> Self {
        self.use_userinfo = Some(use_userinfo);
        self
    }

    /// Adds one of [`extra_authorize_params`](Self::extra_authorize_params).
    pub fn with_authorize_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_authorize_params.push((name.into(), value.into()));
        self
    }

    /// Sets [`issuer_template`](Self::issuer_template).
    pub fn with_issuer_template(mut self, template: impl Into<String>) -> Self {
        self.issuer_template = Some(template.into());
        self
    }

    /// Sets [`allowed_tenants`](Self::allowed_tenants).
    pub fn with_allowed_tenants<S: Into<String>>(mut self, tenants: impl IntoIterator<Item = S>) -> Self {
        self.allowed_tenants = Some(tenants.into_iter().map(Into::into).collect());
        self
    }

    /// Sets [`required_hosted_domain`](Self::required_hosted_domain).
    pub fn with_hosted_domain(mut self, domain: impl Into<String>) -> Self {
        self.required_hosted_domain = Some(domain.into());
        self
    }

    /// Adds one of [`authority_domains`](Self::authority_domains).
    pub fn with_authority_domain(mut self, domain: impl Into<String>) -> Self {
        self.authority_domains.push(domain.into());
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`max_response_bytes`](Self::max_response_bytes).
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }
}

/// How the issuer of a response is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IssuerRule {
    /// Exactly this issuer.
    Exact(String),
    /// The template with the token's `tid`.
    Template {
        template: String,
        allowed_tenants: Option<Vec<String>>,
    },
}

impl IssuerRule {
    pub(crate) fn expected(&self) -> ExpectedIssuer<'_> {
        match self {
            IssuerRule::Exact(issuer) => ExpectedIssuer::Exact(issuer),
            IssuerRule::Template {
                template,
                allowed_tenants,
            } => ExpectedIssuer::Template {
                template,
                allowed_tenants: allowed_tenants.as_deref(),
            },
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) id: String,
    pub(crate) issuer: String,
    pub(crate) rule: IssuerRule,
    pub(crate) discovery_url: Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) client_auth: ClientAuth,
    /// Space-separated.
    pub(crate) scope: String,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) leeway: time::Duration,
    pub(crate) use_userinfo: Option<bool>,
    pub(crate) extra_params: Vec<(String, String)>,
    pub(crate) hosted_domain: Option<String>,
    pub(crate) authority_domains: Vec<String>,
    /// Other spellings of the exact issuer accepted in ID tokens (Google's
    /// `accounts.google.com`); set by presets only.
    pub(crate) issuer_aliases: Vec<String>,
    pub(crate) limits: HttpLimits,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Parses an algorithm name the configuration may allow.
pub(crate) fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let shown = sanitize(name, 32);
    if name.eq_ignore_ascii_case("none") {
        return Err("the `none` algorithm is never accepted".into());
    }
    if name
        .as_bytes()
        .get(..2)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"HS"))
    {
        return Err(format!(
            "`{shown}` is an HMAC algorithm; id tokens must be signed with a published key"
        ));
    }
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        _ => Err(format!("`{shown}` is not a supported signature algorithm")),
    }
}

/// The JWS name of `alg`.
pub(crate) fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// An issuer identifier: an endpoint URL without query; `{tenantid}` is
/// allowed when `template` is set.
fn check_issuer(field: &'static str, raw: &str, template: bool) -> Result<(), ConfigError> {
    let has_placeholder = raw.contains(TENANT_PLACEHOLDER);
    if has_placeholder && !template {
        return Err(invalid(
            field,
            "contains `{tenantid}`, which only an `issuer_template` may",
        ));
    }
    if template && field == "issuer_template" && raw.matches(TENANT_PLACEHOLDER).count() != 1 {
        return Err(invalid(field, "must contain `{tenantid}` exactly once"));
    }
    let sample = raw.replace(TENANT_PLACEHOLDER, "00000000-0000-0000-0000-000000000000");
    let url = wire::config_endpoint(field, &sample)?;
    if url.query().is_some() {
        return Err(invalid(field, "must not have a query"));
    }
    if raw.len() > 512 {
        return Err(invalid(field, "is longer than 512 bytes"));
    }
    Ok(())
}

impl Settings {
    pub(crate) fn validate(config: OidcConfig) -> Result<Self, ConfigError> {
        wire::check_provider_id(&config.id)?;

        let rule = match &config.issuer_template {
            Some(template) => {
                check_issuer("issuer_template", template, true)?;
                check_issuer("issuer", &config.issuer, true)?;
                let allowed_tenants = match &config.allowed_tenants {
                    None => None,
                    Some(tenants) if tenants.is_empty() => {
                        return Err(invalid(
                            "allowed_tenants",
                            "is empty; leave it unset to allow every tenant",
                        ));
                    }
                    Some(tenants) => {
                        if let Some(bad) = tenants.iter().find(|t| !valid_tenant_id(t)) {
                            return Err(invalid(
                                "allowed_tenants",
                                format!("`{}` is not a tenant id", sanitize(bad, 64)),
                            ));
                        }
                        Some(tenants.clone())
                    }
                };
                IssuerRule::Template {
                    template: template.clone(),
                    allowed_tenants,
                }
            }
            None => {
                check_issuer("issuer", &config.issuer, false)?;
                if config.allowed_tenants.is_some() {
                    return Err(invalid("allowed_tenants", "needs an `issuer_template`"));
                }
                IssuerRule::Exact(config.issuer.clone())
            }
        };

        let discovery_url = match &config.discovery_url {
            Some(url) => wire::config_endpoint("discovery_url", url)?,
            None if config.issuer_template.is_some() => {
                return Err(ConfigError::Missing {
                    field: "discovery_url",
                });
            }
            None => {
                let default = format!(
                    "{}/.well-known/openid-configuration",
                    config.issuer.trim_end_matches('/')
                );
                wire::config_endpoint("discovery_url", &default)?
            }
        };

        wire::check_client_id("client_id", &config.client_id)?;
        wire::check_secret("client_secret", &config.client_secret)?;

        let scope = check_scopes(&config.scopes)?;

        if config.allowed_algorithms.is_empty() {
            return Err(invalid("allowed_algorithms", "is empty"));
        }
        let mut algorithms = Vec::new();
        for name in &config.allowed_algorithms {
            let alg = parse_algorithm(name).map_err(|reason| invalid("allowed_algorithms", reason))?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }

        if config.leeway > MAX_LEEWAY {
            return Err(invalid(
                "leeway",
                format!("must be at most {} seconds", MAX_LEEWAY.as_secs()),
            ));
        }
        let leeway =
            time::Duration::try_from(config.leeway).map_err(|_| invalid("leeway", "is out of range"))?;

        let extra_params = check_extra_params(&config.extra_authorize_params)?;

        let hosted_domain = match &config.required_hosted_domain {
            None => None,
            Some(domain) => {
                Some(crate::email::to_a_label(domain).map_err(|e| invalid("hosted_domain", e.to_string()))?)
            }
        };

        let mut authority_domains = Vec::new();
        for domain in &config.authority_domains {
            let a_label =
                crate::email::to_a_label(domain).map_err(|e| invalid("authority_domains", e.to_string()))?;
            if !authority_domains.contains(&a_label) {
                authority_domains.push(a_label);
            }
        }

        if config.timeout.is_zero() || config.timeout > MAX_TIMEOUT {
            return Err(invalid(
                "timeout",
                format!(
                    "must be more than 0 and at most {} seconds",
                    MAX_TIMEOUT.as_secs()
                ),
            ));
        }
        if !MAX_RESPONSE_BYTES_RANGE.contains(&config.max_response_bytes) {
            return Err(invalid(
                "max_response_bytes",
                format!(
                    "must be {} to {} bytes",
                    MAX_RESPONSE_BYTES_RANGE.start(),
                    MAX_RESPONSE_BYTES_RANGE.end()
                ),
            ));
        }

        Ok(Self {
            id: config.id,
            issuer: config.issuer,
            rule,
            discovery_url,
            client_id: config.client_id,
            client_secret: config.client_secret,
            client_auth: config.client_auth,
            scope,
            algorithms,
            leeway,
            use_userinfo: config.use_userinfo,
            extra_params,
            hosted_domain,
            authority_domains,
            issuer_aliases: Vec::new(),
            limits: HttpLimits::new(config.timeout, config.max_response_bytes),
        })
    }
}

/// Scope tokens (RFC 6749 §3.3 characters), no duplicates, `openid` among
/// them; returned space-separated.
pub(crate) fn check_scopes(scopes: &[String]) -> Result<String, ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for scope in scopes {
        let valid = !scope.is_empty()
            && scope.len() <= 256
            && scope
                .bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E) && b != b'`');
        if !valid {
            return Err(invalid(
                "scopes",
                format!("`{}` is not a scope token", sanitize(scope, 64)),
            ));
        }
        if seen.contains(&scope.as_str()) {
            return Err(invalid("scopes", format!("`{scope}` is given twice")));
        }
        seen.push(scope);
    }
    if !seen.contains(&"openid") {
        return Err(invalid("scopes", "must contain `openid`"));
    }
    Ok(seen.join(" "))
}

fn check_extra_params(params: &[(String, String)]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in params {
        let shown = sanitize(name, 64);
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid_name {
            return Err(invalid(
                "extra_authorize_params",
                format!("`{shown}` is not a parameter name"),
            ));
        }
        if PROTOCOL_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name)) {
            return Err(invalid(
                "extra_authorize_params",
                format!("`{shown}` is set by the protocol and may not be overridden"),
            ));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(invalid(
                "extra_authorize_params",
                format!("`{shown}` is given twice"),
            ));
        }
        if value.chars().count() > 1024 || value.chars().any(char::is_control) {
            return Err(invalid(
                "extra_authorize_params",
                format!("the value of `{shown}` must be at most 1024 characters without control characters"),
            ));
        }
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}
