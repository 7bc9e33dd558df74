//! The validated configuration of a [`GuestPass`](crate::GuestPass).

use time::Duration;
use url::Url;

use crate::email::to_a_label;
use crate::error::ConfigError;
use crate::flow::config::SignUpConfig;
use crate::flow::token::TokenKeys;
use crate::id::Id;
use crate::idp::PasscodePolicy;
use crate::keys::KeyRing;
use crate::mail::templates::Language;
use crate::policy::CollaborationSettings;

/// Default lifetime of a redemption ticket.
pub const DEFAULT_TICKET_LIFETIME: Duration = Duration::days(30);
/// Default lifetime of a redemption flow (from opening to completion).
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::hours(1);

/// Everything a [`GuestPass`](crate::GuestPass) needs to know about its
/// tenant. Built and checked by [`GuestPassBuilder`](crate::GuestPassBuilder).
#[derive(Debug)]
pub struct Config {
    pub(crate) tenant_id: String,
    pub(crate) tenant_name: String,
    pub(crate) tenant_domain: String,
    pub(crate) public_base_url: Url,
    pub(crate) privacy_statement_url: Option<Url>,
    pub(crate) keys: KeyRing,
    pub(crate) redirect_urls: Vec<String>,
    pub(crate) default_language: Language,
    pub(crate) ticket_lifetime: Duration,
    pub(crate) session_lifetime: Duration,
    pub(crate) passcode: PasscodePolicy,
    pub(crate) collaboration: CollaborationSettings,
    pub(crate) sign_up: SignUpConfig,
    pub(crate) token_keys: Option<TokenKeys>,
    pub(crate) token_issuer: String,
    pub(crate) tenant_object_id: Id,
    pub(crate) terms_of_use: Option<crate::policy::TermsOfUse>,
    pub(crate) policies: crate::policy::CompiledPolicies,
    pub(crate) cross_tenant: crate::policy::CrossTenantSettings,
    pub(crate) agreements: Vec<crate::policy::TermsOfUse>,
    pub(crate) step_up: crate::flow::access::StepUpMethods,
}

impl Config {
    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The organisation name shown to guests.
    pub fn tenant_name(&self) -> &str {
        &self.tenant_name
    }

    /// The public base URL every link is built from.
    pub fn public_base_url(&self) -> &Url {
        &self.public_base_url
    }

    /// The registered redirect URLs.
    pub fn redirect_urls(&self) -> &[String] {
        &self.redirect_urls
    }

    /// The passcode limits.
    pub fn passcode_policy(&self) -> &PasscodePolicy {
        &self.passcode
    }

    /// The collaboration settings.
    pub fn collaboration(&self) -> &CollaborationSettings {
        &self.collaboration
    }

    /// The sign-up configuration: applications and user flows.
    pub fn sign_up(&self) -> &SignUpConfig {
        &self.sign_up
    }

    /// The keys completion tokens are signed with, if configured.
    pub fn token_keys(&self) -> Option<&TokenKeys> {
        self.token_keys.as_ref()
    }

    /// The `iss` of completion tokens.
    pub fn token_issuer(&self) -> &str {
        &self.token_issuer
    }

    /// The compiled conditional access policies.
    pub fn conditional_access(&self) -> &crate::policy::CompiledPolicies {
        &self.policies
    }

    /// The cross-organisation access settings.
    pub fn cross_tenant_access(&self) -> &crate::policy::CrossTenantSettings {
        &self.cross_tenant
    }

    /// The terms of use policies may require (and the tenant's own).
    pub fn agreements(&self) -> &[crate::policy::TermsOfUse] {
        &self.agreements
    }

    /// The access environment flows are evaluated in.
    pub(crate) fn access_env(&self) -> crate::flow::access::AccessEnv<'_> {
        crate::flow::access::AccessEnv {
            policies: &self.policies,
            cross_tenant: &self.cross_tenant,
            agreements: &self.agreements,
            step_up: self.step_up,
        }
    }

    /// The tenant's object id, the `tid` of completion tokens.
    pub fn tenant_object_id(&self) -> Id {
        self.tenant_object_id
    }

    /// The redemption link for a ticket: `{public_base_url}redeem?ticket=…`.
    /// Built from configuration only, never from a request's `Host`.
    pub fn redeem_url(&self, ticket: &str) -> String {
        let mut url = self.public_base_url.clone();
        url.set_path(&format!("{}redeem", self.public_base_url.path()));
        url.query_pairs_mut().append_pair("ticket", ticket);
        url.to_string()
    }
}

pub(crate) fn check_tenant_id(id: &str) -> Result<(), ConfigError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(ConfigError::Invalid {
            field: "tenant_id",
            reason: "must be 1 to 64 characters of A-Z a-z 0-9 - _ .".to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn check_name(field: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(ConfigError::Invalid {
            field,
            reason: "must be 1 to 256 characters without control characters".to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn check_domain(domain: &str) -> Result<String, ConfigError> {
    to_a_label(domain).map_err(|e| ConfigError::Invalid {
        field: "tenant_domain",
        reason: e.to_string(),
    })
}

/// Whether `url`'s host is the loopback interface: `localhost`, an address
/// in `127.0.0.0/8`, or `::1`. Such hosts are the only ones a URL of the
/// configuration may reach over plain `http`.
///
/// ```
/// use guestpass::config::is_loopback;
/// use url::Url;
///
/// assert!(is_loopback(&Url::parse("http://127.0.0.1:8080/")?));
/// assert!(is_loopback(&Url::parse("http://LocalHost/")?));
/// assert!(!is_loopback(&Url::parse("https://guests.contoso.example/")?));
/// # Ok::<(), url::ParseError>(())
/// ```
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks an absolute URL: `https`, or `http` on a loopback host; no
/// credentials, no fragment.
pub(crate) fn check_url(field: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| ConfigError::Invalid {
        field,
        reason: format!("`{raw}` is not an absolute url: {e}"),
    })?;
    let invalid = |reason: &str| ConfigError::Invalid {
        field,
        reason: format!("`{raw}` {reason}"),
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        _ => return Err(invalid("must use https (http only on a loopback host)")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry credentials"));
    }
    if url.fragment().is_some() {
        return Err(invalid("must not have a fragment"));
    }
    Ok(url)
}

/// The public base URL: as [`check_url`], with no query, ending in `/`.
pub(crate) fn check_base_url(raw: &str) -> Result<Url, ConfigError> {
    let mut url = check_url("public_base_url", raw)?;
    if url.query().is_some() {
        return Err(ConfigError::Invalid {
            field: "public_base_url",
            reason: format!("`{raw}` must not have a query"),
        });
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

pub(crate) fn check_lifetime(
    field: &'static str,
    d: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if d < min || d > max {
        return Err(ConfigError::Invalid {
            field,
            reason: format!("must be between {min} and {max}"),
        });
    }
    Ok(())
}
