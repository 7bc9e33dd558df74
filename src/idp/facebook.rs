//! Facebook Login: OAuth 2.0 authorization code flow with `state` and PKCE,
//! then the Graph API's `/me`. Facebook Login is not OpenID Connect, so
//! there is no ID token: the identity is what Graph answers with the access
//! token.
//!
//! # What is checked, in order
//!
//! 1. the callback, as for every provider: `error` first, `state` against
//!    its stored hash, the sign-in's age, `iss` (if Facebook ever sends one)
//!    must be `https://www.facebook.com`, a `code`;
//! 2. the token response (a form `POST` with `client_id`, `client_secret`,
//!    `redirect_uri`, `code`, `code_verifier`): a success status, an
//!    `access_token`, `token_type` `bearer` when given;
//! 3. Graph `/me?fields=id,name,email&appsecret_proof=...` with the access
//!    token as Bearer: `appsecret_proof` is hex(HMAC-SHA256(app secret,
//!    access token)), so a leaked token is useless without the secret; `id`
//!    must be the app-scoped user id (digits).
//!
//! # Email addresses are not verified
//!
//! Graph offers no flag saying whether Facebook verified the address it
//! returns (and may return none), so identities from Facebook always have
//! `email_verified: false`. A host that needs a proven address asks for an
//! email one-time passcode as well.

use std::fmt;
use std::time::Duration;

use ring::hmac;
use serde_json::Value;
use url::Url;

use crate::error::ConfigError;
use crate::http::{HttpLimits, HttpResponse, Method};
use crate::idp::oidc::claims::{AuthorizeParams, authorization_url, token_response};
use crate::idp::provider::{
    AuthorizationStart, Callback, ExpectedIssuer, ExternalIdentity, IdentityProvider, IdpContext, IdpError,
    PendingAuthorization, check_callback, sanitize,
};
use crate::idp::wire;
use crate::secret::SecretString;

/// The issuer Facebook identities carry.
pub const FACEBOOK_ISSUER: &str = "facebook.com";
/// The authorization dialog.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://www.facebook.com/v19.0/dialog/oauth";
/// The token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://graph.facebook.com/v19.0/oauth/access_token";
/// The Graph endpoint for the signed-in user.
pub const DEFAULT_GRAPH_ME_URL: &str = "https://graph.facebook.com/me";
/// The `iss` a callback may carry (Facebook's OpenID issuer).
const CALLBACK_ISSUER: &str = "https://www.facebook.com";

/// The configuration of Facebook Login, checked by [`FacebookProvider::new`].
///
/// `Debug` does not show the app secret.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FacebookConfig {
    /// The provider's id (default `facebook`).
    pub id: String,
    /// The App ID from the Meta app dashboard.
    pub app_id: String,
    /// The App Secret from the Meta app dashboard.
    pub app_secret: SecretString,
    /// The permissions requested (default `email`, `public_profile`).
    pub scopes: Vec<String>,
    /// The authorization dialog (default [`DEFAULT_AUTHORIZE_URL`]).
    pub authorize_url: String,
    /// The token endpoint (default [`DEFAULT_TOKEN_URL`]).
    pub token_url: String,
    /// The Graph `/me` endpoint (default [`DEFAULT_GRAPH_ME_URL`]).
    pub graph_me_url: String,
    /// Timeout of each HTTP exchange (default 10 s, at most 60 s).
    pub timeout: Duration,
    /// Largest response body read (default 256 KiB; 4 KiB to 1 MiB).
    pub max_response_bytes: usize,
}

impl FacebookConfig {
    /// A configuration for the app `app_id` with the defaults listed on
    /// each field.
    pub fn new(app_id: impl Into<String>, app_secret: impl Into<SecretString>) -> Self {
        Self {
            id: "facebook".into(),
            app_id: app_id.into(),
            app_secret: app_secret.into(),
            scopes: vec!["email".into(), "public_profile".into()],
            authorize_url: DEFAULT_AUTHORIZE_URL.into(),
            token_url: DEFAULT_TOKEN_URL.into(),
            graph_me_url: DEFAULT_GRAPH_ME_URL.into(),
            timeout: crate::idp::oidc::DEFAULT_TIMEOUT,
            max_response_bytes: crate::idp::oidc::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Replaces the three endpoints (for tests against a local server, or a
    /// newer Graph API version).
    pub fn with_endpoints(
        mut self,
        authorize_url: impl Into<String>,
        token_url: impl Into<String>,
        graph_me_url: impl Into<String>,
    ) -> Self {
        self.authorize_url = authorize_url.into();
        self.token_url = token_url.into();
        self.graph_me_url = graph_me_url.into();
        self
    }
}

/// Facebook Login as an [`IdentityProvider`].
///
/// ```
/// use guestpass::idp::{FacebookConfig, FacebookProvider, IdentityProvider};
///
/// let facebook = FacebookProvider::new(FacebookConfig::new("1234567890", "app-secret"))?;
/// assert_eq!(facebook.issuer(), Some("facebook.com"));
/// assert!(!format!("{facebook:?}").contains("app-secret"));
/// # Ok::<(), guestpass::error::ConfigError>(())
/// ```
pub struct FacebookProvider {
    id: String,
    app_id: String,
    app_secret: SecretString,
    scope: String,
    authorize_url: Url,
    token_url: Url,
    graph_me_url: Url,
    limits: HttpLimits,
}

impl FacebookProvider {
    /// Checks `config` and builds the provider.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first unusable field.
    pub fn new(config: FacebookConfig) -> Result<Self, ConfigError> {
        wire::check_provider_id(&config.id)?;
        wire::check_client_id("app_id", &config.app_id)?;
        wire::check_secret("app_secret", &config.app_secret)?;
        let mut scopes: Vec<&str> = Vec::new();
        for scope in &config.scopes {
            let valid = !scope.is_empty()
                && scope.len() <= 64
                && scope.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(ConfigError::Invalid {
                    field: "scopes",
                    reason: format!("`{}` is not a permission name", sanitize(scope, 64)),
                });
            }
            if !scopes.contains(&scope.as_str()) {
                scopes.push(scope);
            }
        }
        if config.timeout.is_zero() || config.timeout > crate::idp::oidc::MAX_TIMEOUT {
            return Err(ConfigError::Invalid {
                field: "timeout",
                reason: "must be more than 0 and at most 60 seconds".into(),
            });
        }
        if !crate::idp::oidc::MAX_RESPONSE_BYTES_RANGE.contains(&config.max_response_bytes) {
            return Err(ConfigError::Invalid {
                field: "max_response_bytes",
                reason: "must be 4096 to 1048576 bytes".into(),
            });
        }
        Ok(Self {
            id: config.id,
            app_id: config.app_id,
            app_secret: config.app_secret,
            scope: scopes.join(","),
            authorize_url: wire::config_endpoint("authorize_url", &config.authorize_url)?,
            token_url: wire::config_endpoint("token_url", &config.token_url)?,
            graph_me_url: wire::config_endpoint("graph_me_url", &config.graph_me_url)?,
            limits: HttpLimits::new(config.timeout, config.max_response_bytes),
        })
    }
}

impl fmt::Debug for FacebookProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FacebookProvider")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("scope", &self.scope)
            .field("authorize_url", &self.authorize_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("graph_me_url", &self.graph_me_url.as_str())
            .finish_non_exhaustive()
    }
}

/// `appsecret_proof`: lowercase hex of HMAC-SHA256 keyed with the app
/// secret over the access token.
pub(crate) fn appsecret_proof(app_secret: &SecretString, access_token: &SecretString) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret.expose().as_bytes());
    let tag = hmac::sign(&key, access_token.expose().as_bytes());
    let mut out = String::with_capacity(64);
    crate::secret::push_hex(&mut out, tag.as_ref());
    out
}

/// The Graph `/me` URL with `fields` and `appsecret_proof`.
pub(crate) fn graph_me_url(base: &Url, proof: &str) -> Url {
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("fields", "id,name,email")
        .append_pair("appsecret_proof", proof);
    url
}

/// Reads Graph's `/me` answer into an identity.
pub(crate) fn graph_identity(
    provider_id: &str,
    response: &HttpResponse,
) -> Result<ExternalIdentity, IdpError> {
    let failed = |reason: String| IdpError::Userinfo { reason };
    if !response.status().is_success() {
        let kind = wire::json_object(response.body())
            .ok()
            .and_then(|b| b.get("error").and_then(|e| wire::oauth_error_code(e.get("type"))));
        return Err(failed(match kind {
            Some(kind) => format!(
                "graph answered with status {} (`{kind}`)",
                response.status().as_u16()
            ),
            None => format!("graph answered with status {}", response.status().as_u16()),
        }));
    }
    let body = wire::json_object(response.body()).map_err(failed)?;
    let id = match body.get("id") {
        Some(Value::String(id))
            if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_digit()) =>
        {
            id.clone()
        }
        _ => return Err(failed("graph answered without a valid user `id`".into())),
    };
    let email = body
        .get("email")
        .and_then(Value::as_str)
        .and_then(|e| crate::email::EmailAddress::parse(e).ok());
    Ok(ExternalIdentity {
        provider_id: provider_id.to_owned(),
        issuer: FACEBOOK_ISSUER.to_owned(),
        subject: id,
        email,
        email_verified: false,
        name: wire::profile_string(body.get("name")),
        given_name: None,
        family_name: None,
        tenant_id: None,
        hosted_domain: None,
        home_tenant_id: None,
        object_id: None,
        amr: vec![],
    })
}

#[async_trait::async_trait]
impl IdentityProvider for FacebookProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn issuer(&self) -> Option<&str> {
        Some(FACEBOOK_ISSUER)
    }

    async fn start(&self, ctx: &IdpContext<'_>, redirect_uri: &str) -> Result<AuthorizationStart, IdpError> {
        wire::redirect_uri(redirect_uri)?;
        let (pending, state) = PendingAuthorization::generate(ctx, &self.id, redirect_uri)?;
        let challenge = pending.code_challenge(ctx.binding_key);
        let params = AuthorizeParams {
            client_id: &self.app_id,
            redirect_uri,
            scope: &self.scope,
            state: state.expose(),
            nonce: None,
            code_challenge: &challenge,
        };
        let url = authorization_url(&self.authorize_url, &params, &[]);
        Ok(AuthorizationStart { url, pending })
    }

    async fn finish(
        &self,
        ctx: &IdpContext<'_>,
        pending: &PendingAuthorization,
        callback: &Callback,
    ) -> Result<ExternalIdentity, IdpError> {
        let code = check_callback(
            &self.id,
            ExpectedIssuer::Exact(CALLBACK_ISSUER),
            pending,
            callback,
            ctx.now,
        )?;
        let verifier = pending.code_verifier(ctx.binding_key);
        let request = wire::form_post(
            &self.token_url,
            &[
                ("client_id", &self.app_id),
                ("client_secret", self.app_secret.expose()),
                ("redirect_uri", &pending.redirect_uri),
                ("code", code.expose()),
                ("code_verifier", verifier.expose()),
            ],
        )?;
        let response = wire::execute(ctx, request, self.limits).await?;
        let tokens = token_response(&response, false)?;

        let proof = appsecret_proof(&self.app_secret, &tokens.access_token);
        let mut request = wire::request(Method::GET, &graph_me_url(&self.graph_me_url, &proof), Vec::new())?;
        wire::authorize(&mut request, "Bearer", tokens.access_token.expose())?;
        let response = wire::execute(ctx, request, self.limits).await?;
        graph_identity(&self.id, &response)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;
    use crate::http::{FnHttpClient, HttpRequest, StatusCode, header};
    use crate::idp::BindingKey;
    use crate::random::SeededRandom;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn provider() -> FacebookProvider {
        FacebookProvider::new(
            FacebookConfig::new("1234567890", "fb-app-secret-value").with_endpoints(
                "https://fb.test/dialog/oauth",
                "https://graph.fb.test/oauth/access_token",
                "https://graph.fb.test/me",
            ),
        )
        .unwrap()
    }

    fn json(status: u16, body: &str) -> HttpResponse {
        let mut response = HttpResponse::new(body.as_bytes().to_vec());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
    }

    fn query_param(url: &Url, name: &str) -> Option<String> {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn form(request: &HttpRequest) -> Vec<(String, String)> {
        url::form_urlencoded::parse(request.body()).into_owned().collect()
    }

    type Responder = Box<dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync>;

    fn sign_in(
        respond: Responder,
    ) -> (
        Result<ExternalIdentity, IdpError>,
        Vec<HttpRequest>,
        PendingAuthorization,
    ) {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let http = FnHttpClient::new(move |_, request| {
            seen.lock().unwrap().push(request.clone());
            Ok(respond(request))
        });
        let rng = SeededRandom::new(11);
        let key = BindingKey::new(&[4u8; 32]).unwrap();
        let ctx = IdpContext {
            http: &http,
            rng: &rng,
            now: NOW,
            binding_key: &key,
        };
        let facebook = provider();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let start = runtime
            .block_on(facebook.start(&ctx, "https://app.example/cb/facebook"))
            .unwrap();
        let state = query_param(&start.url, "state").unwrap();
        let callback = Callback::parse(&format!("code=fb-code&state={state}")).unwrap();
        let result = runtime.block_on(facebook.finish(&ctx, &start.pending, &callback));
        let requests = requests.lock().unwrap().clone();
        (result, requests, start.pending)
    }

    #[test]
    fn appsecret_proof_matches_the_rfc4231_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let proof = appsecret_proof(
            &SecretString::new("Jefe"),
            &SecretString::new("what do ya want for nothing?"),
        );
        assert_eq!(
            proof,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn authorization_url_carries_state_and_pkce() {
        let http = FnHttpClient::new(|_, _| Ok(HttpResponse::new(Vec::new())));
        let rng = SeededRandom::new(1);
        let key = BindingKey::new(&[4u8; 32]).unwrap();
        let ctx = IdpContext {
            http: &http,
            rng: &rng,
            now: NOW,
            binding_key: &key,
        };
        let start = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(provider().start(&ctx, "https://app.example/cb/facebook"))
            .unwrap();
        assert_eq!(start.url.path(), "/dialog/oauth");
        assert_eq!(
            query_param(&start.url, "client_id").as_deref(),
            Some("1234567890")
        );
        assert_eq!(query_param(&start.url, "response_type").as_deref(), Some("code"));
        assert_eq!(
            query_param(&start.url, "scope").as_deref(),
            Some("email,public_profile")
        );
        assert_eq!(
            query_param(&start.url, "code_challenge_method").as_deref(),
            Some("S256")
        );
        assert_eq!(
            query_param(&start.url, "code_challenge"),
            Some(start.pending.code_challenge(&key))
        );
        assert_eq!(query_param(&start.url, "nonce"), None);
        assert_eq!(http.calls(), 0, "no discovery for facebook");
    }

    #[test]
    fn sign_in_exchanges_the_code_and_calls_graph_with_the_proof() {
        let (result, requests, _) = sign_in(Box::new(|request| match request.uri().path() {
            "/oauth/access_token" => json(
                200,
                r#"{"access_token":"EAAG-token","token_type":"bearer","expires_in":5183944}"#,
            ),
            "/me" => json(
                200,
                r#"{"id":"10158000000000001","name":"Alice Example","email":"alice@example.com"}"#,
            ),
            _ => json(404, "{}"),
        }));
        let identity = result.unwrap();
        assert_eq!(identity.issuer, "facebook.com");
        assert_eq!(identity.subject, "10158000000000001");
        assert_eq!(
            identity.email.as_ref().map(|e| e.as_str()),
            Some("alice@example.com")
        );
        assert!(
            !identity.email_verified,
            "facebook emails are never treated as verified"
        );
        assert_eq!(identity.name.as_deref(), Some("Alice Example"));

        assert_eq!(requests.len(), 2);
        let token = &requests[0];
        assert_eq!(token.method(), Method::POST);
        let body = form(token);
        for (name, value) in [
            ("client_id", "1234567890"),
            ("client_secret", "fb-app-secret-value"),
            ("redirect_uri", "https://app.example/cb/facebook"),
            ("code", "fb-code"),
        ] {
            assert!(body.contains(&(name.into(), value.into())), "{name}");
        }
        assert!(body.iter().any(|(k, v)| k == "code_verifier" && v.len() == 43));

        let graph = &requests[1];
        assert_eq!(graph.method(), Method::GET);
        assert_eq!(graph.uri().host(), Some("graph.fb.test"));
        assert_eq!(graph.uri().path(), "/me");
        let graph_url = Url::parse(&graph.uri().to_string()).unwrap();
        assert_eq!(
            query_param(&graph_url, "fields").as_deref(),
            Some("id,name,email")
        );
        let expected_proof = appsecret_proof(
            &SecretString::new("fb-app-secret-value"),
            &SecretString::new("EAAG-token"),
        );
        assert_eq!(query_param(&graph_url, "appsecret_proof"), Some(expected_proof));
        assert_eq!(
            query_param(&graph_url, "access_token"),
            None,
            "token only in the header"
        );
        let auth = graph.headers().get(header::AUTHORIZATION).unwrap();
        assert_eq!(auth, "Bearer EAAG-token");
        assert!(auth.is_sensitive());
    }

    #[test]
    fn token_errors_report_the_facebook_error_type() {
        let (result, _, _) = sign_in(Box::new(|_| {
            json(
                400,
                r#"{"error":{"message":"code was used: fb-code","type":"OAuthException","code":100}}"#,
            )
        }));
        assert_eq!(
            result,
            Err(IdpError::TokenEndpoint {
                status: 400,
                error: Some("OAuthException".into())
            })
        );
    }

    #[test]
    fn graph_answers_without_a_numeric_id_are_refused() {
        let (result, _, _) = sign_in(Box::new(|request| match request.uri().path() {
            "/oauth/access_token" => json(200, r#"{"access_token":"EAAG-token","token_type":"bearer"}"#),
            _ => json(200, r#"{"id":"../admin","name":"x"}"#),
        }));
        assert!(matches!(result, Err(IdpError::Userinfo { .. })), "{result:?}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!(
            "{:?} {:?}",
            provider(),
            FacebookConfig::new("1", "fb-app-secret-value")
        );
        assert!(!shown.contains("fb-app-secret-value"), "{shown}");
    }
}
