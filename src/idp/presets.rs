//! Ready-made providers for the identity providers Entra External ID
//! offers guests: Microsoft accounts, Entra organisations, Google, Facebook,
//! and direct federation with a partner's own OpenID provider.
//!
//! Each function documents what to register at the provider. In every case
//! the **redirect URI** registered there must be exactly the one the host
//! passes to [`IdentityProvider::start`](crate::idp::IdentityProvider::start)
//! (scheme, host, port, path; no wildcard), for instance
//! `https://app.example/auth/callback/google`.
//!
//! The Microsoft and Google presets do not call userinfo: their ID tokens
//! carry every claim used, signed, and one round trip fewer is faster.

use crate::error::ConfigError;
use crate::idp::facebook::{FacebookConfig, FacebookProvider};
use crate::idp::oidc::{OidcConfig, OidcProvider};
use crate::secret::SecretString;

/// The id of the [`microsoft_account`] provider.
pub const MICROSOFT_ACCOUNT_ID: &str = "microsoft-account";
/// The id of the [`entra_organizations`] provider.
pub const ENTRA_ID: &str = "entra";
/// The id of the [`google`] provider.
pub const GOOGLE_ID: &str = "google";

/// The issuer of personal Microsoft accounts (the consumers tenant).
pub const MICROSOFT_ACCOUNT_ISSUER: &str =
    "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";
/// Where the consumers tenant's discovery document is.
pub const MICROSOFT_ACCOUNT_DISCOVERY: &str =
    "https://login.microsoftonline.com/consumers/v2.0/.well-known/openid-configuration";
/// The issuer template of Entra organisations (work and school accounts).
pub const ENTRA_ISSUER_TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
/// Where the organizations endpoint's discovery document is.
pub const ENTRA_DISCOVERY: &str =
    "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration";
/// Google's issuer.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Personal Microsoft accounts (outlook.com, hotmail.com, live.com, ...).
///
/// Register the app in the Microsoft Entra admin center, *App
/// registrations* > *New registration*:
///
/// - *Supported account types*: "Personal Microsoft accounts only" (or
///   "Accounts in any organizational directory and personal Microsoft
///   accounts" to share one registration with [`entra_organizations`]);
/// - *Redirect URI*: platform *Web*, the callback URL;
/// - copy *Application (client) ID* into `client_id`;
/// - *Certificates & secrets* > *New client secret*: copy its **Value** (not
///   the Secret ID) into `client_secret`, and renew it before it expires;
/// - *API permissions*: the delegated Microsoft Graph permissions `openid`,
///   `email`, `profile` (no admin consent needed).
///
/// Microsoft ID tokens carry no `email_verified` claim, so these identities
/// have `email_verified: false`: prove the address another way (an email
/// one-time passcode) where it matters.
///
/// # Errors
///
/// [`ConfigError`] for an unusable client id or secret.
pub fn microsoft_account(
    client_id: impl Into<String>,
    client_secret: impl Into<SecretString>,
) -> Result<OidcProvider, ConfigError> {
    OidcProvider::new(
        OidcConfig::new(
            MICROSOFT_ACCOUNT_ID,
            MICROSOFT_ACCOUNT_ISSUER,
            client_id,
            client_secret,
        )
        .with_discovery_url(MICROSOFT_ACCOUNT_DISCOVERY)
        .with_userinfo(false),
    )
}

/// Work and school accounts of any Entra tenant (multi-tenant), optionally
/// limited to `allowed_tenants` (directory ids, the `tid` claim).
///
/// Register the app as for [`microsoft_account`], with *Supported account
/// types* "Accounts in any organizational directory (Any Microsoft Entra ID
/// tenant - Multitenant)". Users of another tenant consent on first sign-in
/// unless their administrator blocks user consent; `allowed_tenants` then
/// restricts who gets in. The ID token's `iss` must be
/// `https://login.microsoftonline.com/{tid}/v2.0` for its own `tid`;
/// identities report the tenant as `tenant_id`, and their issuer is the
/// tenant's issuer. As with Microsoft accounts, `email_verified` is false.
///
/// # Errors
///
/// [`ConfigError`] for an unusable client id or secret, an empty tenant
/// list, or a tenant id that is not one.
pub fn entra_organizations(
    client_id: impl Into<String>,
    client_secret: impl Into<SecretString>,
    allowed_tenants: Option<Vec<String>>,
) -> Result<OidcProvider, ConfigError> {
    let mut config = OidcConfig::new(ENTRA_ID, ENTRA_ISSUER_TEMPLATE, client_id, client_secret)
        .with_discovery_url(ENTRA_DISCOVERY)
        .with_issuer_template(ENTRA_ISSUER_TEMPLATE)
        .with_userinfo(false);
    config.allowed_tenants = allowed_tenants;
    OidcProvider::new(config)
}

/// Google accounts, optionally only those of one Google Workspace domain.
///
/// Register the app in the Google Cloud console, *APIs & Services*:
///
/// - *OAuth consent screen*: the scopes `openid`, `email`, `profile` (all
///   non-sensitive); for a Workspace-only app, user type *Internal*;
/// - *Credentials* > *Create credentials* > *OAuth client ID*, type *Web
///   application*, with the callback URL under *Authorized redirect URIs*;
/// - copy the *Client ID* and *Client secret*.
///
/// With `hosted_domain`, the sign-in page is limited to that domain (`hd`
/// parameter) and, since a user can remove the parameter, the ID token's
/// `hd` claim is enforced as well; identities report it as
/// `hosted_domain`. Google's `email_verified` claim is passed through.
/// ID tokens whose `iss` is `accounts.google.com` (without scheme, which
/// Google documents as equivalent) are accepted and reported with the
/// canonical issuer [`GOOGLE_ISSUER`].
///
/// # Errors
///
/// [`ConfigError`] for an unusable client id, secret, or domain.
pub fn google(
    client_id: impl Into<String>,
    client_secret: impl Into<SecretString>,
    hosted_domain: Option<String>,
) -> Result<OidcProvider, ConfigError> {
    let mut config = OidcConfig::new(GOOGLE_ID, GOOGLE_ISSUER, client_id, client_secret).with_userinfo(false);
    if let Some(domain) = hosted_domain {
        let a_label = crate::email::to_a_label(&domain).map_err(|e| ConfigError::Invalid {
            field: "hosted_domain",
            reason: e.to_string(),
        })?;
        config = config
            .with_authorize_param("hd", a_label.clone())
            .with_hosted_domain(a_label);
    }
    Ok(OidcProvider::new(config)?.with_issuer_alias("accounts.google.com"))
}

/// Facebook Login.
///
/// Create an app in the Meta app dashboard (use case "Authenticate and
/// request data from users with Facebook Login"):
///
/// - *Facebook Login* > *Settings*: the callback URL under *Valid OAuth
///   Redirect URIs*, *Use Strict Mode for redirect URIs* on;
/// - *App settings* > *Basic*: copy the *App ID* and *App Secret*;
/// - *Advanced*: *Require App Secret* on (every Graph call sends
///   `appsecret_proof`).
///
/// Facebook email addresses are never treated as verified (see
/// [`facebook`](crate::idp::facebook)).
///
/// # Errors
///
/// [`ConfigError`] for an unusable app id or secret.
pub fn facebook(
    app_id: impl Into<String>,
    app_secret: impl Into<SecretString>,
) -> Result<FacebookProvider, ConfigError> {
    FacebookProvider::new(FacebookConfig::new(app_id, app_secret))
}

/// A partner's own OpenID provider, the authority for the email domain
/// `domain` (direct federation): guests with an address at that domain
/// redeem with it.
///
/// Ask the partner to register a confidential web client with the callback
/// URL as redirect URI and the scopes `openid email profile`, and to send
/// its issuer (discovery must be at `{issuer}/.well-known/openid-configuration`),
/// client id and client secret. The domain is stored as a lowercase A-label
/// ([`OidcProvider::authority_domains`]).
///
/// # Errors
///
/// [`ConfigError`] for an unusable id, domain, issuer, client id or secret.
pub fn direct_federation(
    id: impl Into<String>,
    domain: &str,
    issuer: impl Into<String>,
    client_id: impl Into<String>,
    client_secret: impl Into<SecretString>,
) -> Result<OidcProvider, ConfigError> {
    OidcProvider::new(OidcConfig::new(id, issuer, client_id, client_secret).with_authority_domain(domain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::IdentityProvider;

    #[test]
    fn presets_build() {
        let msa = microsoft_account("00000000-0000-0000-0000-000000000001", "secret").unwrap();
        assert_eq!(msa.issuer(), Some(MICROSOFT_ACCOUNT_ISSUER));
        assert_eq!(msa.id(), MICROSOFT_ACCOUNT_ID);
        let entra = entra_organizations(
            "c",
            "s",
            Some(vec!["72f988bf-86f1-41af-91ab-2d7cd011db47".into()]),
        )
        .unwrap();
        assert_eq!(entra.issuer(), None, "multi-tenant");
        assert!(entra_organizations("c", "s", Some(vec![])).is_err());
        assert!(entra_organizations("c", "s", Some(vec!["not/a-tenant".into()])).is_err());
        assert_eq!(google("c", "s", None).unwrap().issuer(), Some(GOOGLE_ISSUER));
        assert!(google("c", "s", Some("not a domain".into())).is_err());
        assert_eq!(facebook("1", "s").unwrap().issuer(), Some("facebook.com"));
    }

    #[test]
    fn direct_federation_stores_the_domain_as_an_a_label() {
        let p = direct_federation(
            "fabrikam",
            "Bücher.Example",
            "https://login.fabrikam.example",
            "c",
            "s",
        )
        .unwrap();
        assert_eq!(p.authority_domains(), ["xn--bcher-kva.example"]);
        assert!(
            direct_federation(
                "fabrikam",
                "not a domain",
                "https://login.fabrikam.example",
                "c",
                "s"
            )
            .is_err()
        );
    }
}
