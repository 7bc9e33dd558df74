//! The OpenID Connect relying party ([`OidcProvider`]) against the local
//! OpenID provider (`tests/support/oidc_op.rs`) over real loopback HTTP,
//! driven directly through [`IdentityProvider::start`] and
//! [`IdentityProvider::finish`]: the OpenID Foundation's basic relying-party
//! test plan (positive and negative ID token cases, key rotation, nonce and
//! code replay, userinfo and discovery mix-ups) and more attacks on the
//! code flow (state, PKCE, provider errors, unreachable, slow and oversized
//! providers, clock edges, client authentication, redaction).
//!
//! Every refusal asserts the exact [`IdpError`] variant, and most run a
//! successful sign-in first against the same provider, so that the refusal
//! is caused by the one thing the test changes.

#![cfg(feature = "reqwest")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/oidc_op.rs"]
mod oidc_op;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use guestpass::http::{HttpError, ReqwestClient};
use guestpass::idp::{
    AuthorizationStart, BindingKey, Callback, ClientAuth, ExternalIdentity, IdTokenError, IdentityProvider,
    IdpContext, IdpError, OidcConfig, OidcProvider, PendingAuthorization,
};
use guestpass::random::SeededRandom;
use oidc_op::{
    ACCESS_DENIED_DESCRIPTION, EC_KID, Endpoint, Misbehaviour, OidcTestProvider, OpOptions, RSA_KID,
    RSA_ROTATED_KID, RSA_UNPUBLISHED_KID, SigningAlg, TOKEN_LIFETIME, TestClient, TestUser, WRONG_ISSUER,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The provider's and the relying party's clock, Unix seconds.
const T0: i64 = 1_700_000_000;
const PROVIDER_ID: &str = "partner";
const CLIENT_ID: &str = "attack-rp";
const CLIENT_SECRET: &str = "attack-rp-secret-Zq81xW";
const REDIRECT_URI: &str = "https://rp.example/oidc/callback";
/// The relying party's default leeway, seconds.
const LEEWAY: i64 = 60;
/// `guestpass::idp::oidc::JWKS_REFETCH_INTERVAL` plus one second.
const PAST_REFETCH_INTERVAL: i64 = 31;

// ---------------------------------------------------------------- harness

/// One relying party and the provider it trusts.
struct Rp {
    op: OidcTestProvider,
    provider: OidcProvider,
    http: ReqwestClient,
    rng: SeededRandom,
    key: BindingKey,
    /// The relying party's clock (the provider's is set separately).
    now: OffsetDateTime,
}

/// What one sign-in left behind up to the callback.
struct Begun {
    start: AuthorizationStart,
    /// The callback's query, as the browser brings it back.
    query: String,
    callback: Callback,
}

impl Begun {
    fn pending(&self) -> &PendingAuthorization {
        &self.start.pending
    }

    fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    }
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn op_options() -> OpOptions {
    OpOptions {
        clients: vec![TestClient::new(CLIENT_ID, CLIENT_SECRET, &[REDIRECT_URI])],
        user: TestUser::new("alice-sub-1", "alice@fabrikam.example"),
        now: Some(T0),
        ..OpOptions::default()
    }
}

fn config_for(issuer: &str) -> OidcConfig {
    OidcConfig::new(PROVIDER_ID, issuer, CLIENT_ID, CLIENT_SECRET)
}

impl Rp {
    async fn new() -> Self {
        Self::with(op_options(), |c| c).await
    }

    async fn with(options: OpOptions, config: impl FnOnce(OidcConfig) -> OidcConfig) -> Self {
        let op = OidcTestProvider::start(options).await;
        let provider = OidcProvider::new(config(config_for(&op.issuer()))).unwrap();
        Self {
            op,
            provider,
            http: ReqwestClient::builder().no_proxy().build().unwrap(),
            rng: SeededRandom::new(0x5eed),
            key: BindingKey::new(&[7u8; 32]).unwrap(),
            now: at(T0),
        }
    }

    /// Sets both clocks.
    fn set_now(&mut self, unix: i64) {
        self.op.set_now(unix);
        self.now = at(unix);
    }

    fn ctx(&self) -> IdpContext<'_> {
        IdpContext {
            http: &self.http,
            rng: &self.rng,
            now: self.now,
            binding_key: &self.key,
        }
    }

    async fn start(&self) -> Result<AuthorizationStart, IdpError> {
        self.provider.start(&self.ctx(), REDIRECT_URI).await
    }

    /// `start`, then the browser's visit to the authorization URL (the
    /// provider signs its current user in at once), then the callback.
    async fn begin(&self) -> Begun {
        let start = self.start().await.expect("start");
        let query = authorize(&start.url).await;
        let callback = Callback::parse(&query).expect("the callback parses");
        Begun {
            start,
            query,
            callback,
        }
    }

    async fn finish(
        &self,
        pending: &PendingAuthorization,
        callback: &Callback,
    ) -> Result<ExternalIdentity, IdpError> {
        self.provider.finish(&self.ctx(), pending, callback).await
    }

    /// One whole sign-in.
    async fn sign_in(&self) -> Result<ExternalIdentity, IdpError> {
        let begun = self.begin().await;
        self.finish(begun.pending(), &begun.callback).await
    }

    fn count(&self, endpoint: Endpoint) -> usize {
        self.op.requests(endpoint)
    }
}

/// Follows `url` without following the redirect back and returns the query
/// of its `Location`, which must be the registered redirect URI.
async fn authorize(url: &url::Url) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let response = browser.get(url.as_str()).send().await.unwrap();
    assert_eq!(response.status(), 302, "the provider redirects back");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{REDIRECT_URI}?")), "{location}");
    url::Url::parse(&location)
        .unwrap()
        .query()
        .unwrap_or_default()
        .to_owned()
}

/// A fresh relying party, one successful sign-in (the positive control),
/// then `mode` and a second sign-in, whose error is returned. The second
/// sign-in must not reach userinfo.
async fn refused_after_control(mode: Misbehaviour) -> IdpError {
    let rp = Rp::new().await;
    rp.sign_in().await.expect("the control sign-in succeeds");
    rp.op.set_mode(mode);
    let error = rp.sign_in().await.expect_err("refused");
    assert_eq!(rp.count(Endpoint::Token), 2, "{error:?}");
    assert_eq!(
        rp.count(Endpoint::Userinfo),
        1,
        "refused before userinfo: {error:?}"
    );
    error
}

fn id_token_header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

fn query_without(query: &str, name: &str) -> String {
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(n, _)| n != name)
        .collect();
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish()
}

fn query_with(query: &str, name: &str, value: &str) -> String {
    let changed: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .map(|(n, v)| if n == name { (n, value.to_owned()) } else { (n, v) })
        .collect();
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(changed)
        .finish()
}

fn user_with_claim(name: &str, value: Value) -> TestUser {
    let mut user = op_options().user;
    user.extra_claims.insert(name.to_owned(), value);
    user
}

// ---------------------------------------------------------------- positive cases

fn assert_identity(identity: &ExternalIdentity, rp: &Rp) {
    assert_eq!(identity.provider_id, PROVIDER_ID);
    assert_eq!(identity.issuer, rp.op.issuer());
    assert_eq!(identity.subject, "alice-sub-1");
    assert_eq!(
        identity.email.as_ref().map(|e| e.as_str()),
        Some("alice@fabrikam.example")
    );
    assert!(identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some("Test User"));
    assert_eq!(identity.given_name.as_deref(), Some("Test"));
    assert_eq!(identity.family_name.as_deref(), Some("User"));
    assert_eq!(identity.tenant_id, None);
    assert_eq!(identity.hosted_domain, None);
    assert_eq!(identity.home_tenant_id, None);
    assert_eq!(identity.object_id, None);
    assert!(identity.amr.is_empty());
}

#[tokio::test]
async fn happy_path_rs256() {
    let rp = Rp::new().await;
    let identity = rp.sign_in().await.unwrap();
    assert_identity(&identity, &rp);
    let header = id_token_header(&rp.op.last_id_token().unwrap());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], RSA_KID);
    for (endpoint, expected) in [
        (Endpoint::Discovery, 1),
        (Endpoint::Authorize, 1),
        (Endpoint::Token, 1),
        (Endpoint::Jwks, 1),
        (Endpoint::Userinfo, 1),
    ] {
        assert_eq!(rp.count(endpoint), expected, "{endpoint:?}");
    }
    // The authorization request used PKCE S256 and a nonce, which the token
    // request's verifier and the ID token answered.
    let authorize = rp.op.last_authorize_request().unwrap();
    assert_eq!(authorize.param("code_challenge_method"), Some("S256"));
    assert_eq!(authorize.param("response_type"), Some("code"));
    assert_eq!(authorize.param("redirect_uri"), Some(REDIRECT_URI));
    let verifier = rp
        .op
        .last_token_request()
        .unwrap()
        .param("code_verifier")
        .unwrap()
        .to_owned();
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    assert_eq!(authorize.param("code_challenge"), Some(challenge.as_str()));
    assert!(authorize.param("nonce").is_some_and(|n| n.len() >= 43));
    // A second sign-in reuses the cached discovery document and keys.
    assert_identity(&rp.sign_in().await.unwrap(), &rp);
    assert_eq!(rp.count(Endpoint::Discovery), 1);
    assert_eq!(rp.count(Endpoint::Jwks), 1);
}

#[tokio::test]
async fn happy_path_es256() {
    let rp = Rp::with(
        OpOptions {
            signing_alg: SigningAlg::Es256,
            ..op_options()
        },
        |c| c,
    )
    .await;
    let identity = rp.sign_in().await.unwrap();
    assert_identity(&identity, &rp);
    let header = id_token_header(&rp.op.last_id_token().unwrap());
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], EC_KID);
    assert_eq!(rp.count(Endpoint::Jwks), 1);
}

#[tokio::test]
async fn only_the_configured_algorithms_are_accepted() {
    // A relying party that allows RS256 only refuses the provider's ES256
    // tokens, even though the key is published.
    let rp = Rp::with(
        OpOptions {
            signing_alg: SigningAlg::Es256,
            ..op_options()
        },
        |c| c.with_allowed_algorithms(["RS256"]),
    )
    .await;
    assert_eq!(
        rp.sign_in().await,
        Err(IdpError::AlgorithmNotAllowed { alg: "ES256".into() })
    );
    rp.op.set_signing_alg(SigningAlg::Rs256);
    rp.sign_in().await.expect("RS256 is accepted");
}

// ---------------------------------------------------------------- ID token claims

#[tokio::test]
async fn wrong_issuer_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::WrongIssuer).await,
        IdpError::IdToken(IdTokenError::WrongIssuer)
    );
}

#[tokio::test]
async fn missing_audience_is_refused() {
    // The provider cannot leave `aud` out; `null` and `[]` are read as absent.
    for aud in [Value::Null, json!([])] {
        let rp = Rp::new().await;
        rp.sign_in().await.expect("control");
        rp.op.set_user(user_with_claim("aud", aud.clone()));
        assert_eq!(
            rp.sign_in().await,
            Err(IdpError::IdToken(IdTokenError::MissingAudience)),
            "aud {aud}"
        );
    }
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::WrongAudience).await,
        IdpError::IdToken(IdTokenError::WrongAudience)
    );
}

#[tokio::test]
async fn extra_audience_without_azp_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::ExtraAudience { azp: false }).await,
        IdpError::IdToken(IdTokenError::AzpMismatch)
    );
}

#[tokio::test]
async fn extra_audience_with_azp_is_accepted() {
    let rp = Rp::new().await;
    rp.op.set_mode(Misbehaviour::ExtraAudience { azp: true });
    let identity = rp.sign_in().await.unwrap();
    assert_identity(&identity, &rp);
    let token = rp.op.last_id_token().unwrap();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["aud"], json!([CLIENT_ID, oidc_op::EXTRA_AUDIENCE]));
    assert_eq!(claims["azp"], CLIENT_ID);
    // An `azp` naming another client is refused even with one audience.
    rp.op.clear_modes();
    rp.op.set_user(user_with_claim("azp", json!("another-client")));
    assert_eq!(
        rp.sign_in().await,
        Err(IdpError::IdToken(IdTokenError::AzpMismatch))
    );
}

#[tokio::test]
async fn missing_sub_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::MissingSub).await,
        IdpError::IdToken(IdTokenError::MissingSubject)
    );
}

#[tokio::test]
async fn missing_iat_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::MissingIat).await,
        IdpError::IdToken(IdTokenError::MissingIssuedAt)
    );
}

#[tokio::test]
async fn missing_exp_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::MissingExp).await,
        IdpError::IdToken(IdTokenError::MissingExpiry)
    );
}

// ---------------------------------------------------------------- signatures and algorithms

#[tokio::test]
async fn bad_signature_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::BadSignature).await,
        IdpError::BadSignature
    );
    let rp = Rp::with(
        OpOptions {
            signing_alg: SigningAlg::Es256,
            ..op_options()
        },
        |c| c,
    )
    .await;
    rp.sign_in().await.expect("control");
    rp.op.set_mode(Misbehaviour::BadSignature);
    assert_eq!(rp.sign_in().await, Err(IdpError::BadSignature));
}

#[tokio::test]
async fn alg_none_is_refused_before_any_key_is_fetched() {
    let rp = Rp::new().await;
    rp.op.set_mode(Misbehaviour::AlgNone);
    assert_eq!(
        rp.sign_in().await,
        Err(IdpError::AlgorithmNotAllowed { alg: "none".into() })
    );
    let token = rp.op.last_id_token().unwrap();
    assert!(token.ends_with('.'), "an unsigned token: {token}");
    assert_eq!(rp.count(Endpoint::Jwks), 0, "the header is refused first");
    assert_eq!(rp.count(Endpoint::Userinfo), 0);
    // Positive control on the same provider.
    rp.op.clear_modes();
    rp.sign_in().await.expect("a signed token is accepted");
    assert_eq!(rp.count(Endpoint::Jwks), 1);
    // And `none` cannot be configured.
    let error = OidcProvider::new(config_for(&rp.op.issuer()).with_allowed_algorithms(["none"])).unwrap_err();
    assert!(
        matches!(
            error,
            guestpass::error::ConfigError::Invalid {
                field: "allowed_algorithms",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn hs256_key_confusion_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::Hs256KeyConfusion).await,
        IdpError::AlgorithmNotAllowed { alg: "HS256".into() }
    );
    // HMAC algorithms cannot be configured either.
    let error =
        OidcProvider::new(config_for("https://id.example").with_allowed_algorithms(["RS256", "HS256"]))
            .unwrap_err();
    assert!(
        matches!(
            error,
            guestpass::error::ConfigError::Invalid {
                field: "allowed_algorithms",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn kid_absent_with_one_key_published_is_accepted() {
    let rp = Rp::new().await;
    rp.op.set_mode(Misbehaviour::SingleKeyJwks);
    rp.op.add_mode(Misbehaviour::OmitKid);
    let identity = rp.sign_in().await.unwrap();
    assert_identity(&identity, &rp);
    assert!(
        id_token_header(&rp.op.last_id_token().unwrap())
            .get("kid")
            .is_none()
    );
    assert_eq!(rp.op.jwks()["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn kid_absent_with_several_keys_is_refused() {
    // Two RSA keys published: a token without `kid` could be either's.
    let rp = Rp::new().await;
    rp.op.publish_rotated_key();
    rp.sign_in().await.expect("control with a kid");
    rp.op.set_mode(Misbehaviour::OmitKid);
    assert_eq!(rp.sign_in().await, Err(IdpError::AmbiguousKey));
    assert_eq!(
        rp.count(Endpoint::Jwks),
        1,
        "an ambiguous key is not a reason to re-fetch"
    );
    assert_eq!(rp.count(Endpoint::Userinfo), 1);
}

#[tokio::test]
async fn rotated_key_is_found_with_exactly_one_refetch() {
    let mut rp = Rp::new().await;
    rp.sign_in().await.expect("control with the first key");
    assert_eq!(rp.count(Endpoint::Jwks), 1);
    // The provider rotates: new tokens carry a kid the cached set lacks.
    rp.op.publish_rotated_key();
    rp.op.set_mode(Misbehaviour::RotatedKey);
    rp.set_now(T0 + PAST_REFETCH_INTERVAL);
    let identity = rp.sign_in().await.unwrap();
    assert_identity(&identity, &rp);
    assert_eq!(
        id_token_header(&rp.op.last_id_token().unwrap())["kid"],
        RSA_ROTATED_KID
    );
    assert_eq!(rp.count(Endpoint::Jwks), 2, "exactly one re-fetch");
    // The re-fetched set is cached: the next rotated token needs no fetch.
    rp.sign_in().await.unwrap();
    assert_eq!(rp.count(Endpoint::Jwks), 2);
}

#[tokio::test]
async fn unknown_kid_after_refetch_is_refused_and_refetch_is_rate_limited() {
    let mut rp = Rp::new().await;
    rp.sign_in().await.expect("control");
    rp.op.set_mode(Misbehaviour::UnpublishedKey);
    rp.set_now(T0 + PAST_REFETCH_INTERVAL);
    let unknown = IdpError::UnknownKey {
        kid: Some(RSA_UNPUBLISHED_KID.into()),
    };
    assert_eq!(rp.sign_in().await, Err(unknown.clone()));
    assert_eq!(rp.count(Endpoint::Jwks), 2, "one re-fetch");
    // Right after: refused again without fetching (a forged kid must not
    // make us hammer the provider).
    rp.set_now(T0 + PAST_REFETCH_INTERVAL + 5);
    assert_eq!(rp.sign_in().await, Err(unknown.clone()));
    assert_eq!(rp.count(Endpoint::Jwks), 2, "rate limited");
    // Once the interval has passed, one more look is allowed.
    rp.set_now(T0 + 2 * PAST_REFETCH_INTERVAL);
    assert_eq!(rp.sign_in().await, Err(unknown));
    assert_eq!(rp.count(Endpoint::Jwks), 3);
    assert_eq!(rp.count(Endpoint::Userinfo), 1);
}

// ---------------------------------------------------------------- nonce, replay, state

#[tokio::test]
async fn wrong_nonce_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::WrongNonce).await,
        IdpError::IdToken(IdTokenError::NonceMismatch)
    );
}

#[tokio::test]
async fn missing_nonce_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::MissingNonce).await,
        IdpError::IdToken(IdTokenError::NonceMismatch)
    );
}

#[tokio::test]
async fn replayed_callback_fails_the_second_time() {
    let rp = Rp::new().await;
    let begun = rp.begin().await;
    rp.finish(begun.pending(), &begun.callback)
        .await
        .expect("first finish");
    // The same pending authorization and callback again: the code is spent.
    assert_eq!(
        rp.finish(begun.pending(), &begun.callback).await,
        Err(IdpError::TokenEndpoint {
            status: 400,
            error: Some("invalid_grant".into()),
        })
    );
    assert_eq!(rp.count(Endpoint::Token), 2);
    assert_eq!(rp.count(Endpoint::Userinfo), 1);
}

#[tokio::test]
async fn callback_of_one_sign_in_is_refused_with_another_pending() {
    let rp = Rp::new().await;
    let a = rp.begin().await;
    let b = rp.begin().await;
    assert_ne!(a.pending().state_hash, b.pending().state_hash);
    assert_eq!(
        rp.finish(b.pending(), &a.callback).await,
        Err(IdpError::StateMismatch)
    );
    assert_eq!(rp.count(Endpoint::Token), 0, "refused before the token request");
    // Each callback with its own sign-in works.
    rp.finish(b.pending(), &b.callback).await.expect("b");
    rp.finish(a.pending(), &a.callback).await.expect("a");
}

#[tokio::test]
async fn missing_state_is_refused() {
    let rp = Rp::new().await;
    let begun = rp.begin().await;
    assert!(begun.param("state").is_some());
    let without = Callback::parse(&query_without(&begun.query, "state")).unwrap();
    assert!(without.has_code() && !without.has_state());
    assert_eq!(
        rp.finish(begun.pending(), &without).await,
        Err(IdpError::StateMismatch)
    );
    assert_eq!(rp.count(Endpoint::Token), 0);
    rp.finish(begun.pending(), &begun.callback)
        .await
        .expect("the genuine callback");
}

#[tokio::test]
async fn state_replayed_across_flows_is_refused() {
    let rp = Rp::new().await;
    let a = rp.begin().await;
    rp.finish(a.pending(), &a.callback).await.expect("sign-in a");
    // A later sign-in's callback carrying the earlier sign-in's state.
    let b = rp.begin().await;
    let old_state = a.param("state").unwrap();
    assert_ne!(b.param("state").unwrap(), old_state);
    let replayed = Callback::parse(&query_with(&b.query, "state", &old_state)).unwrap();
    assert_eq!(
        rp.finish(b.pending(), &replayed).await,
        Err(IdpError::StateMismatch)
    );
    assert_eq!(rp.count(Endpoint::Token), 1, "b's code was not sent");
    rp.finish(b.pending(), &b.callback)
        .await
        .expect("b with its own state");
}

#[tokio::test]
async fn pkce_verifier_mismatch_is_refused_by_the_token_endpoint() {
    let rp = Rp::new().await;
    let begun = rp.begin().await;
    // The salt the verifier is derived from is tampered with (the state
    // hash stays, so the callback checks pass).
    let mut tampered = begun.pending().clone();
    tampered.salt[0] ^= 0x80;
    assert_eq!(
        rp.finish(&tampered, &begun.callback).await,
        Err(IdpError::TokenEndpoint {
            status: 400,
            error: Some("invalid_grant".into()),
        })
    );
    let sent = rp.op.last_token_request().unwrap();
    let verifier = sent.param("code_verifier").unwrap();
    assert_eq!(verifier.len(), 43);
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    let expected = rp.op.last_authorize_request().unwrap();
    assert_ne!(expected.param("code_challenge"), Some(challenge.as_str()));
    assert_eq!(rp.count(Endpoint::Jwks), 0);
    // The provider spends a code on any attempt, so a new sign-in proves
    // the untampered path.
    rp.sign_in().await.expect("control");
}

#[tokio::test]
async fn callback_access_denied_is_reported_with_its_description() {
    let rp = Rp::new().await;
    rp.op.set_mode(Misbehaviour::AuthorizeAccessDenied);
    let begun = rp.begin().await;
    assert_eq!(begun.callback.error(), Some("access_denied"));
    assert!(!begun.callback.has_code());
    assert_eq!(
        rp.finish(begun.pending(), &begun.callback).await,
        Err(IdpError::AccessDenied {
            description: Some(ACCESS_DENIED_DESCRIPTION.into()),
        })
    );
    assert_eq!(rp.count(Endpoint::Token), 0);
    rp.op.clear_modes();
    rp.sign_in().await.expect("control");
}

#[tokio::test]
async fn token_endpoint_invalid_grant_is_reported() {
    assert_eq!(
        refused_after_control(Misbehaviour::TokenInvalidGrant).await,
        IdpError::TokenEndpoint {
            status: 400,
            error: Some("invalid_grant".into()),
        }
    );
}

// ---------------------------------------------------------------- userinfo and discovery

#[tokio::test]
async fn userinfo_subject_mismatch_is_refused() {
    let rp = Rp::new().await;
    rp.sign_in().await.expect("control");
    rp.op.set_mode(Misbehaviour::UserinfoOtherSub);
    assert_eq!(rp.sign_in().await, Err(IdpError::UserinfoSubjectMismatch));
    assert_eq!(rp.count(Endpoint::Userinfo), 2);
}

#[tokio::test]
async fn discovery_issuer_mismatch_is_refused() {
    let rp = Rp::new().await;
    rp.op.set_mode(Misbehaviour::DiscoveryWrongIssuer);
    assert_eq!(
        rp.start().await.map(|_| ()),
        Err(IdpError::DiscoveryIssuerMismatch {
            expected: rp.op.issuer(),
            actual: WRONG_ISSUER.into(),
        })
    );
    assert_eq!(rp.count(Endpoint::Authorize), 0);
    // A refused document is not cached: the corrected one is fetched.
    rp.op.clear_modes();
    rp.sign_in().await.expect("control");
    assert_eq!(rp.count(Endpoint::Discovery), 2);
}

// ---------------------------------------------------------------- transport

#[tokio::test]
async fn unreachable_provider_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let provider = OidcProvider::new(config_for(&format!("http://127.0.0.1:{port}"))).unwrap();
    let http = ReqwestClient::builder().no_proxy().build().unwrap();
    let rng = SeededRandom::new(1);
    let key = BindingKey::new(&[7u8; 32]).unwrap();
    let ctx = IdpContext {
        http: &http,
        rng: &rng,
        now: at(T0),
        binding_key: &key,
    };
    let error = provider.start(&ctx, REDIRECT_URI).await.unwrap_err();
    assert!(
        matches!(&error, IdpError::Unreachable(HttpError::Connect { message }) if message.contains(&port.to_string())),
        "{error:?}"
    );
    assert!(!error.to_string().contains(CLIENT_SECRET));
}

#[tokio::test]
async fn slow_provider_times_out() {
    let rp = Rp::with(op_options(), |c| c.with_timeout(Duration::from_millis(500))).await;
    rp.sign_in().await.expect("control within the timeout");
    let begun = rp.begin().await;
    // The provider stalls on the token request, beyond the timeout.
    rp.op.set_mode(Misbehaviour::Slow(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    assert_eq!(
        rp.finish(begun.pending(), &begun.callback).await,
        Err(IdpError::Unreachable(HttpError::Timeout))
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rp.count(Endpoint::Token), 2);
}

#[tokio::test]
async fn oversized_jwks_is_refused() {
    let rp = Rp::new().await;
    rp.op.set_mode(Misbehaviour::OversizedJwks);
    assert_eq!(rp.sign_in().await, Err(IdpError::ResponseTooLarge));
    assert_eq!(rp.count(Endpoint::Jwks), 1);
    assert_eq!(rp.count(Endpoint::Userinfo), 0);
    // Nothing was cached: once the set is normal again it is fetched.
    rp.op.clear_modes();
    rp.sign_in().await.expect("control");
    assert_eq!(rp.count(Endpoint::Jwks), 2);
}

// ---------------------------------------------------------------- identity fields and clocks

#[tokio::test]
async fn unverified_email_is_reported_as_unverified() {
    let rp = Rp::new().await;
    let mut user = op_options().user;
    user.email_verified = false;
    rp.op.set_user(user);
    let identity = rp.sign_in().await.unwrap();
    assert_eq!(
        identity.email.as_ref().map(|e| e.as_str()),
        Some("alice@fabrikam.example")
    );
    assert!(!identity.email_verified);
    // The control: the same user, verified.
    rp.op.set_user(op_options().user);
    assert!(rp.sign_in().await.unwrap().email_verified);
}

#[tokio::test]
async fn expired_token_beyond_leeway_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::Expired).await,
        IdpError::IdToken(IdTokenError::Expired)
    );
}

#[tokio::test]
async fn expired_token_within_leeway_is_accepted() {
    // The provider's clock stays at T0 (tokens expire at T0 + lifetime);
    // the relying party's runs ahead.
    let exp = T0 + TOKEN_LIFETIME;
    let mut rp = Rp::new().await;
    rp.now = at(exp + LEEWAY - 1);
    let identity = rp.sign_in().await.unwrap();
    assert_identity(&identity, &rp);
    rp.now = at(exp + LEEWAY);
    assert_eq!(rp.sign_in().await, Err(IdpError::IdToken(IdTokenError::Expired)));
}

#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::NbfInFuture).await,
        IdpError::IdToken(IdTokenError::NotYetValid)
    );
}

#[tokio::test]
async fn iat_in_the_future_is_refused() {
    assert_eq!(
        refused_after_control(Misbehaviour::IatInFuture).await,
        IdpError::IdToken(IdTokenError::IssuedInFuture)
    );
    // Within the leeway, a provider clock slightly ahead is tolerated.
    let mut rp = Rp::new().await;
    rp.now = at(T0 - LEEWAY);
    rp.sign_in().await.expect("iat exactly at the leeway");
    rp.now = at(T0 - LEEWAY - 1);
    assert_eq!(
        rp.sign_in().await,
        Err(IdpError::IdToken(IdTokenError::IssuedInFuture))
    );
}

// ---------------------------------------------------------------- client authentication

#[tokio::test]
async fn client_secret_basic_sends_the_credentials_in_the_header() {
    let rp = Rp::with(op_options(), |c| c.with_client_auth(ClientAuth::SecretBasic)).await;
    rp.sign_in().await.unwrap();
    let sent = rp.op.last_token_request().unwrap();
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    assert_eq!(sent.authorization.as_deref(), Some(expected.as_str()));
    assert_eq!(sent.param("client_secret"), None);
    assert_eq!(sent.param("grant_type"), Some("authorization_code"));
    assert_eq!(sent.param("redirect_uri"), Some(REDIRECT_URI));
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_in_the_form() {
    let rp = Rp::with(op_options(), |c| c.with_client_auth(ClientAuth::SecretPost)).await;
    rp.sign_in().await.unwrap();
    let sent = rp.op.last_token_request().unwrap();
    assert_eq!(sent.authorization, None);
    assert_eq!(sent.param("client_id"), Some(CLIENT_ID));
    assert_eq!(sent.param("client_secret"), Some(CLIENT_SECRET));
}

#[tokio::test]
async fn wrong_client_secret_is_refused_by_the_token_endpoint() {
    let rp = Rp::new().await;
    let provider = OidcProvider::new(OidcConfig::new(
        PROVIDER_ID,
        rp.op.issuer(),
        CLIENT_ID,
        "not-the-secret",
    ))
    .unwrap();
    let start = provider.start(&rp.ctx(), REDIRECT_URI).await.unwrap();
    let callback = Callback::parse(&authorize(&start.url).await).unwrap();
    assert_eq!(
        provider.finish(&rp.ctx(), &start.pending, &callback).await,
        Err(IdpError::TokenEndpoint {
            status: 401,
            error: Some("invalid_client".into()),
        })
    );
}

// ---------------------------------------------------------------- redaction

#[tokio::test]
async fn debug_and_errors_never_show_secrets_codes_states_or_tokens() {
    let rp = Rp::new().await;
    let begun = rp.begin().await;
    let identity = rp.finish(begun.pending(), &begun.callback).await.unwrap();
    let code = begun.param("code").unwrap();
    let state = begun.param("state").unwrap();
    let id_token = rp.op.last_id_token().unwrap();
    let signature = id_token.rsplit('.').next().unwrap().to_owned();
    let token_request = rp.op.last_token_request().unwrap();
    let verifier = token_request.param("code_verifier").unwrap().to_owned();
    let nonce = rp
        .op
        .last_authorize_request()
        .unwrap()
        .param("nonce")
        .unwrap()
        .to_owned();
    let salt = URL_SAFE_NO_PAD.encode(begun.pending().salt);
    let basic = token_request.authorization.clone().unwrap();
    let basic = basic.trim_start_matches("Basic ").to_owned();

    // Errors from several failure paths, each carrying provider input.
    let mut errors = vec![rp.finish(begun.pending(), &begun.callback).await.unwrap_err()];
    let other = rp.begin().await;
    errors.push(rp.finish(other.pending(), &begun.callback).await.unwrap_err());
    for mode in [
        Misbehaviour::BadSignature,
        Misbehaviour::WrongNonce,
        Misbehaviour::UnpublishedKey,
        Misbehaviour::AuthorizeAccessDenied,
        Misbehaviour::UserinfoOtherSub,
    ] {
        rp.op.set_mode(mode);
        errors.push(rp.sign_in().await.unwrap_err());
    }
    assert_eq!(errors.len(), 7);

    let config = config_for(&rp.op.issuer());
    let shown = [
        format!("{:?}", rp.provider),
        format!("{config:?}"),
        format!("{:?}", begun.start),
        format!("{:?}", begun.pending()),
        format!("{:?}", begun.callback),
        format!("{:?}", rp.ctx()),
        format!("{:?}", rp.key),
        format!("{identity:?}"),
        format!("{errors:?}"),
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    ];
    let secrets = [
        ("client secret", CLIENT_SECRET),
        ("basic credentials", basic.as_str()),
        ("code", code.as_str()),
        ("state", state.as_str()),
        ("id token signature", signature.as_str()),
        ("id token", id_token.as_str()),
        ("code verifier", verifier.as_str()),
        ("nonce", nonce.as_str()),
        ("salt", salt.as_str()),
    ];
    for text in &shown {
        for (what, secret) in secrets {
            assert!(secret.len() >= 20, "{what} is long enough to be searched for");
            assert!(!text.contains(secret), "{what} shown in {text}");
        }
    }
    // The Debug output does say what it is about.
    assert!(shown[0].contains(PROVIDER_ID) && shown[0].contains(CLIENT_ID));
    assert!(shown[2].contains("/authorize?.."), "{}", shown[2]);
}

// ---------------------------------------------------------------- the home organisation

/// A partner organisation's Entra tenant id.
const PARTNER_TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// A provider whose issuer names no tenant (a direct federation, a social
/// provider) claims a partner's `tid`, an `idp` of that tenant and MFA: it
/// names no home organisation, so a partner's trusted MFA cannot apply.
#[tokio::test]
async fn a_provider_claiming_a_partners_tid_names_no_home_organisation() {
    let rp = Rp::new().await;
    assert_identity(&rp.sign_in().await.expect("control"), &rp);
    let mut user = op_options().user;
    user.tid = Some(PARTNER_TID.into());
    user.extra_claims.insert("amr".into(), json!(["pwd", "mfa"]));
    user.extra_claims.insert("oid".into(), json!("oid-of-alice"));
    user.extra_claims.insert(
        "idp".into(),
        json!(format!("https://sts.windows.net/{PARTNER_TID}/")),
    );
    rp.op.set_user(user);
    let identity = rp.sign_in().await.unwrap();
    assert_eq!(identity.home_tenant_id, None);
    assert_eq!(identity.tenant_id.as_deref(), Some(PARTNER_TID));
    assert_eq!(identity.amr, ["pwd", "mfa"]);
    assert_eq!(identity.object_id.as_deref(), Some("oid-of-alice"));
}

// ---------------------------------------------------------------- the offline validator

#[tokio::test]
async fn id_token_validator_agrees_with_finish() {
    let rp = Rp::new().await;
    let begun = rp.begin().await;
    let via_finish = rp.finish(begun.pending(), &begun.callback).await.unwrap();
    let nonce = rp
        .op
        .last_authorize_request()
        .unwrap()
        .param("nonce")
        .unwrap()
        .to_owned();
    let token = rp.op.last_id_token().unwrap();
    let jwks = rp.op.jwks().to_string();
    let validator = rp.provider.id_token_validator(jwks.as_bytes()).unwrap();
    assert_eq!(validator.key_count(), 2);
    let via_validator = validator.validate(&token, &nonce, rp.now).unwrap();
    // The validator reads the ID token only; the provider's userinfo agrees
    // with it here, so the identities are the same.
    assert_eq!(via_validator, via_finish);
    assert!(!format!("{validator:?}").contains(CLIENT_SECRET));
    assert_eq!(
        validator.validate(&token, "another-nonce", rp.now),
        Err(IdpError::IdToken(IdTokenError::NonceMismatch))
    );
    assert_eq!(
        validator.validate(&token, &nonce, at(T0 + TOKEN_LIFETIME + LEEWAY)),
        Err(IdpError::IdToken(IdTokenError::Expired))
    );
    // Nothing is fetched: a kid outside the set is unknown.
    rp.op.set_mode(Misbehaviour::RotatedKey);
    let rotated = rp.op.id_token_for(CLIENT_ID, Some(&nonce));
    assert_eq!(
        validator.validate(&rotated, &nonce, rp.now),
        Err(IdpError::UnknownKey {
            kid: Some(RSA_ROTATED_KID.into())
        })
    );
    assert_eq!(rp.count(Endpoint::Jwks), 1);
    for mode in [Misbehaviour::AlgNone, Misbehaviour::Hs256KeyConfusion] {
        rp.op.set_mode(mode);
        let forged = rp.op.id_token_for(CLIENT_ID, Some(&nonce));
        assert!(
            matches!(
                validator.validate(&forged, &nonce, rp.now),
                Err(IdpError::AlgorithmNotAllowed { .. })
            ),
            "{forged}"
        );
    }
    assert!(matches!(
        rp.provider.id_token_validator(b"{\"keys\":[]}"),
        Err(IdpError::Jwks { .. })
    ));
}
