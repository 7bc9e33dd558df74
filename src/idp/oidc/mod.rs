//! The relying-party side of OpenID Connect: the authorization code flow
//! with PKCE, for any certified provider (Microsoft, Google, a partner's
//! own identity provider).
//!
//! [`OidcProvider::new`] checks an [`OidcConfig`]; the provider then
//! implements [`IdentityProvider`]. The pure steps (URL building, token
//! request and response, claim checks) are plain functions; `start` and
//! `finish` only sequence them with [`IdpContext::http`].
//!
//! # What is checked, in order
//!
//! On first use the **discovery document** is fetched and cached (a day):
//! its `issuer` must be the configured issuer exactly (or the multi-tenant
//! template), its endpoints `https`, `code` among its response types.
//!
//! [`start`](IdentityProvider::start) draws a random `state` and salt; the
//! `nonce` and PKCE verifier are derived from the salt with the
//! [`BindingKey`](crate::idp::BindingKey) (see
//! [`PendingAuthorization`]).
//!
//! [`finish`](IdentityProvider::finish) checks:
//!
//! 1. the callback: an `error` first (`access_denied` is
//!    [`IdpError::AccessDenied`]), then `state` against its stored hash
//!    (constant time), the sign-in's age, `iss` when present (RFC 9207;
//!    required when discovery says the provider sends it), and `code`;
//! 2. the token response: a success status (else
//!    [`IdpError::TokenEndpoint`] with the OAuth error code), `token_type`
//!    `Bearer`, an `id_token`;
//! 3. the ID token's signature: `alg` among the allowed algorithms (never
//!    `none` or HMAC), the key chosen by `kid` from the cached JWKS, which is
//!    re-fetched once when the `kid` is unknown (at most once per 30 s per
//!    provider, so forged tokens cannot make us hammer the provider); a token
//!    without `kid` needs a set with exactly one fitting key;
//! 4. the ID token's claims against [`IdpContext::now`]: `iss`, `aud`,
//!    `azp`, `exp`, `iat`, `nbf`, `nonce`, `sub`, then `tid` and `hd` when
//!    configured;
//! 5. userinfo, when used: its `sub` must be the ID token's.
//!
//! Steps 3 and 4 are also available on their own, without HTTP, through an
//! [`IdTokenValidator`] over a key set the caller holds
//! ([`OidcProvider::id_token_validator`]).
//!
//! # Claims from userinfo
//!
//! The ID token's claims win: userinfo only fills in what the ID token
//! lacks. `email` and `email_verified` are taken as a pair from one source,
//! so a verified flag never attaches to an address from the other. An
//! `email` that is not a valid [`EmailAddress`](crate::email::EmailAddress)
//! is dropped.

pub(crate) mod claims;
mod config;
mod discovery;
mod jwks;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jsonwebtoken::jwk::JwkSet;
use time::OffsetDateTime;

pub use config::{
    ClientAuth, DEFAULT_LEEWAY, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, MAX_LEEWAY,
    MAX_RESPONSE_BYTES_RANGE, MAX_TIMEOUT, OidcConfig,
};

use self::claims::{AuthorizeParams, Expectations};
use self::config::{IssuerRule, Settings};
use self::discovery::Discovery;
use crate::error::ConfigError;
use crate::http::Method;
use crate::idp::provider::{
    AuthorizationStart, Callback, ExternalIdentity, IdentityProvider, IdpContext, IdpError,
    PendingAuthorization, check_callback,
};
use crate::idp::wire;
use crate::secret::SecretString;

/// How long a fetched discovery document is used.
pub const DISCOVERY_MAX_AGE: time::Duration = time::Duration::hours(24);
/// How long a fetched key set is used before it is fetched again.
pub const JWKS_MAX_AGE: time::Duration = time::Duration::hours(1);
/// The shortest time between two fetches of the key set caused by an
/// unknown `kid`.
pub const JWKS_REFETCH_INTERVAL: time::Duration = time::Duration::seconds(30);

/// An OpenID Connect provider: an [`IdentityProvider`] for the
/// authorization code flow with PKCE.
///
/// ```
/// use std::sync::Arc;
/// use guestpass::idp::{IdentityProvider, OidcConfig, OidcProvider};
///
/// let config = OidcConfig::new(
///     "fabrikam",
///     "https://login.fabrikam.example",
///     "guestpass-client",
///     "client-secret-from-the-registration",
/// )
/// .with_authority_domain("fabrikam.example")
/// .with_authorize_param("prompt", "select_account");
/// let provider: Arc<dyn IdentityProvider> = Arc::new(OidcProvider::new(config)?);
/// assert_eq!(provider.issuer(), Some("https://login.fabrikam.example"));
///
/// let plain_http = OidcConfig::new("x", "http://login.fabrikam.example", "c", "s");
/// assert!(OidcProvider::new(plain_http).is_err());
/// # Ok::<(), guestpass::error::ConfigError>(())
/// ```
pub struct OidcProvider {
    settings: Settings,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    discovery: Option<(Arc<Discovery>, OffsetDateTime)>,
    jwks: Option<(Arc<JwkSet>, OffsetDateTime)>,
    /// When the key set was last fetched, successfully or not.
    last_jwks_fetch: Option<OffsetDateTime>,
}

impl OidcProvider {
    /// Checks `config` and builds the provider. Nothing is fetched yet.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first unusable field: a bad `id`, an
    /// issuer or URL that is not `https` (or `http` on loopback), scopes
    /// without `openid`, `none` or an HMAC algorithm among
    /// `allowed_algorithms`, a leeway over five minutes, an extra parameter
    /// that would override a protocol parameter, tenants without a template,
    /// an unusable domain or limit.
    pub fn new(config: OidcConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            settings: Settings::validate(config)?,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The email domains this provider is the authority for (direct
    /// federation), as lowercase A-labels.
    pub fn authority_domains(&self) -> &[String] {
        &self.settings.authority_domains
    }

    /// The client id registered with the provider.
    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }

    /// Also accepts `alias` as the `iss` of ID tokens, reported as the
    /// configured issuer (for providers documented to use two spellings).
    pub(crate) fn with_issuer_alias(mut self, alias: &str) -> Self {
        self.settings.issuer_aliases.push(alias.to_owned());
        self
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached discovery document, fetched when absent or older than
    /// [`DISCOVERY_MAX_AGE`].
    async fn discovery(&self, ctx: &IdpContext<'_>) -> Result<Arc<Discovery>, IdpError> {
        if let Some((doc, fetched_at)) = &self.lock().discovery
            && fresh(*fetched_at, DISCOVERY_MAX_AGE, ctx.now)
        {
            return Ok(Arc::clone(doc));
        }
        let request = discovery::request(&self.settings)?;
        let response = wire::execute(ctx, request, self.settings.limits).await?;
        let doc = Arc::new(discovery::parse(&self.settings, &response)?);
        self.lock().discovery = Some((Arc::clone(&doc), ctx.now));
        Ok(doc)
    }

    /// The cached key set, fetched when absent or older than
    /// [`JWKS_MAX_AGE`]; also whether this call fetched it.
    async fn jwks(&self, ctx: &IdpContext<'_>, doc: &Discovery) -> Result<(Arc<JwkSet>, bool), IdpError> {
        if let Some((set, fetched_at)) = &self.lock().jwks
            && fresh(*fetched_at, JWKS_MAX_AGE, ctx.now)
        {
            return Ok((Arc::clone(set), false));
        }
        self.fetch_jwks(ctx, doc).await.map(|set| (set, true))
    }

    async fn fetch_jwks(&self, ctx: &IdpContext<'_>, doc: &Discovery) -> Result<Arc<JwkSet>, IdpError> {
        self.lock().last_jwks_fetch = Some(ctx.now);
        let request = wire::request(Method::GET, &doc.jwks_uri, Vec::new())?;
        let response = wire::execute(ctx, request, self.settings.limits).await?;
        let set = Arc::new(jwks::parse(&response)?);
        self.lock().jwks = Some((Arc::clone(&set), ctx.now));
        Ok(set)
    }

    /// Claims the one re-fetch an unknown `kid` may cause, unless the set
    /// was fetched less than [`JWKS_REFETCH_INTERVAL`] ago.
    fn may_refetch(&self, now: OffsetDateTime) -> bool {
        let mut cache = self.lock();
        let allowed = cache
            .last_jwks_fetch
            .is_none_or(|last| now >= last.saturating_add(JWKS_REFETCH_INTERVAL));
        if allowed {
            cache.last_jwks_fetch = Some(now);
        }
        allowed
    }

    /// Verifies the ID token's signature and returns its claims.
    async fn verify_id_token(
        &self,
        ctx: &IdpContext<'_>,
        doc: &Discovery,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, IdpError> {
        let header = jwks::read_header(token, &self.settings.algorithms)?;
        let (set, fetched_now) = self.jwks(ctx, doc).await?;
        let key = match jwks::select_key(&set, &header) {
            Err(IdpError::UnknownKey { .. }) if !fetched_now && self.may_refetch(ctx.now) => {
                // The provider may have rotated its keys: one fresh look.
                let set = self.fetch_jwks(ctx, doc).await?;
                jwks::select_key(&set, &header)?
            }
            other => other?,
        };
        jwks::verify(token, &key, header.alg)
    }
}

impl OidcProvider {
    /// A validator of this provider's ID tokens that trusts the keys of
    /// `jwks`, a JWKS document (the body the provider's `jwks_uri` serves),
    /// read the way [`finish`](IdentityProvider::finish) reads it: keys it
    /// cannot parse are skipped, at most 100 keys.
    ///
    /// For hosts that obtain ID tokens some other way (a token a front end
    /// received, a test, a benchmark): it performs no HTTP and keeps no
    /// cache, so it never re-fetches the set.
    ///
    /// # Errors
    ///
    /// [`IdpError::Jwks`] when `jwks` is not a key set or has no readable
    /// key.
    pub fn id_token_validator(&self, jwks: &[u8]) -> Result<IdTokenValidator, IdpError> {
        Ok(IdTokenValidator {
            settings: self.settings.clone(),
            keys: jwks::parse_body(jwks)?,
        })
    }
}

/// Checks one provider's ID tokens against a key set held in memory, with
/// the same code and in the same order as
/// [`finish`](IdentityProvider::finish) (steps 3 and 4 of the module
/// documentation): the header's `alg` among the configured algorithms, the
/// key chosen by `kid`, the signature, then `iss`, `aud`, `azp`, `exp`,
/// `iat`, `nbf`, `nonce`, `sub`, `tid` and `hd` against the `now` given.
///
/// Built by [`OidcProvider::id_token_validator`]. A token whose `kid` is
/// not in the set is [`IdpError::UnknownKey`]; nothing is fetched. `Debug`
/// shows the provider id, the issuer and the key ids only.
///
/// ```
/// use guestpass::idp::{IdTokenError, IdpError, OidcConfig, OidcProvider};
/// use time::macros::datetime;
///
/// let provider = OidcProvider::new(OidcConfig::new("corp", "https://id.example", "client", "secret"))?;
/// // RFC 7517 appendix A.1's P-256 key.
/// let jwks = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"1","use":"sig",
///     "x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
///     "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#;
/// let validator = provider.id_token_validator(jwks)?;
/// let now = datetime!(2026-03-01 12:00 UTC);
/// assert!(matches!(
///     validator.validate("not-a-token", "nonce", now),
///     Err(IdpError::IdToken(IdTokenError::Malformed { .. }))
/// ));
/// assert!(provider.id_token_validator(b"{}").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct IdTokenValidator {
    settings: Settings,
    keys: JwkSet,
}

impl IdTokenValidator {
    /// Verifies `id_token` and checks its claims for the sign-in whose
    /// `nonce` was `expected_nonce`, at `now`. Returns the identity the
    /// token vouches for, from its claims alone (no userinfo).
    ///
    /// # Errors
    ///
    /// The [`IdpError`] [`finish`](IdentityProvider::finish) would report
    /// for the same token: [`IdpError::AlgorithmNotAllowed`],
    /// [`IdpError::UnknownKey`], [`IdpError::AmbiguousKey`],
    /// [`IdpError::KeyAlgorithmMismatch`], [`IdpError::BadSignature`],
    /// [`IdpError::IdToken`], [`IdpError::TenantNotAllowed`],
    /// [`IdpError::HostedDomainNotAllowed`], [`IdpError::Jwks`] for a key
    /// that is no valid public key.
    pub fn validate(
        &self,
        id_token: &str,
        expected_nonce: &str,
        now: OffsetDateTime,
    ) -> Result<ExternalIdentity, IdpError> {
        let settings = &self.settings;
        let header = jwks::read_header(id_token, &settings.algorithms)?;
        let key = jwks::select_key(&self.keys, &header)?;
        let token_claims = jwks::verify(id_token, &key, header.alg)?;
        let nonce = SecretString::new(expected_nonce);
        let checked = claims::check_claims(&token_claims, &Expectations::new(settings, &nonce, now))?;
        Ok(claims::identity(&settings.id, checked, None))
    }

    /// How many keys of the set were read.
    pub fn key_count(&self) -> usize {
        self.keys.keys.len()
    }
}

impl fmt::Debug for IdTokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<Option<&str>> = self
            .keys
            .keys
            .iter()
            .map(|k| k.common.key_id.as_deref())
            .collect();
        f.debug_struct("IdTokenValidator")
            .field("id", &self.settings.id)
            .field("issuer", &self.settings.issuer)
            .field("key_ids", &kids)
            .finish_non_exhaustive()
    }
}

/// Whether something fetched at `fetched_at` may still be used at `now`.
fn fresh(fetched_at: OffsetDateTime, max_age: time::Duration, now: OffsetDateTime) -> bool {
    now < fetched_at.saturating_add(max_age)
}

impl fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("OidcProvider")
            .field("id", &s.id)
            .field("issuer", &s.issuer)
            .field("discovery_url", &s.discovery_url.as_str())
            .field("client_id", &s.client_id)
            .field("client_auth", &s.client_auth)
            .field("scope", &s.scope)
            .field("authority_domains", &s.authority_domains)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl IdentityProvider for OidcProvider {
    fn id(&self) -> &str {
        &self.settings.id
    }

    fn issuer(&self) -> Option<&str> {
        match &self.settings.rule {
            IssuerRule::Exact(issuer) => Some(issuer),
            IssuerRule::Template { .. } => None,
        }
    }

    async fn start(&self, ctx: &IdpContext<'_>, redirect_uri: &str) -> Result<AuthorizationStart, IdpError> {
        wire::redirect_uri(redirect_uri)?;
        let doc = self.discovery(ctx).await?;
        let (pending, state) = PendingAuthorization::generate(ctx, &self.settings.id, redirect_uri)?;
        let nonce = pending.nonce(ctx.binding_key);
        let challenge = pending.code_challenge(ctx.binding_key);
        let params = AuthorizeParams {
            client_id: &self.settings.client_id,
            redirect_uri,
            scope: &self.settings.scope,
            state: state.expose(),
            nonce: Some(nonce.expose()),
            code_challenge: &challenge,
        };
        let url =
            claims::authorization_url(&doc.authorization_endpoint, &params, &self.settings.extra_params);
        Ok(AuthorizationStart { url, pending })
    }

    async fn finish(
        &self,
        ctx: &IdpContext<'_>,
        pending: &PendingAuthorization,
        callback: &Callback,
    ) -> Result<ExternalIdentity, IdpError> {
        let settings = &self.settings;
        let code = check_callback(&settings.id, settings.rule.expected(), pending, callback, ctx.now)?;
        let doc = self.discovery(ctx).await?;
        if doc.iss_parameter_supported && callback.issuer().is_none() {
            return Err(IdpError::Callback {
                reason: "parameter `iss` is missing although the provider sends it".into(),
            });
        }

        let verifier = pending.code_verifier(ctx.binding_key);
        let request = claims::token_request(
            settings,
            &doc.token_endpoint,
            code,
            &pending.redirect_uri,
            &verifier,
        )?;
        let response = wire::execute(ctx, request, settings.limits).await?;
        let tokens = claims::token_response(&response, true)?;
        let id_token = tokens.id_token.ok_or_else(|| IdpError::TokenResponse {
            reason: "there is no `id_token`".into(),
        })?;

        let token_claims = self.verify_id_token(ctx, &doc, id_token.expose()).await?;
        let nonce = pending.nonce(ctx.binding_key);
        let checked = claims::check_claims(&token_claims, &Expectations::new(settings, &nonce, ctx.now))?;
        if let Some(iss) = callback.issuer()
            && iss != checked.issuer
        {
            return Err(IdpError::IssuerMismatch {
                expected: checked.issuer,
                actual: crate::idp::provider::sanitize(iss, 256),
            });
        }

        let userinfo = match (&doc.userinfo_endpoint, settings.use_userinfo) {
            (Some(endpoint), None | Some(true)) => {
                let request = claims::userinfo_request(endpoint, &tokens.access_token)?;
                let response = wire::execute(ctx, request, settings.limits).await?;
                Some(claims::userinfo_response(&response, &checked.subject)?)
            }
            (None, Some(true)) => {
                return Err(IdpError::Userinfo {
                    reason: "the discovery document names no userinfo endpoint".into(),
                });
            }
            _ => None,
        };
        Ok(claims::identity(&settings.id, checked, userinfo))
    }
}
