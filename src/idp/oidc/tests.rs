//! Tests of the OpenID Connect relying party against a fake provider that
//! answers from memory (no network).

use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use url::Url;

use super::*;
use crate::http::{FnHttpClient, HttpError, HttpRequest, HttpResponse, StatusCode, header};
use crate::idp::{BindingKey, IdTokenError};
use crate::random::SeededRandom;

const ISSUER: &str = "https://id.test";
const CLIENT_ID: &str = "client-1";
const SECRET: &str = "s3cret-value";
const REDIRECT: &str = "https://app.example/cb/test";
const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const TEMPLATE: &str = "https://login.test/{tenantid}/v2.0";

// TEST-ONLY RSA 2048 key (PKCS#1 DER, base64), generated with openssl for
// these tests.
const RSA_PKCS1_B64: &str = "
MIIEpAIBAAKCAQEAppPsJZz+reBV9X+V4mYhSGXn+bKVZGeEwDD8P2Ia60+uNckG
SG8vCVwlXZ3+Mnh1ES5vhtB04l/0W1VqdOVpJowITEuvoZh+wnNFAoonUmdl0UAh
PZGjlYih9Sgvs9FiqIEaIndskwvO3/HPxWDPKge5mx6Ik/tJqyJlJCUn74lcaOPM
0GKhzIJKUDXDwaps5vmSfFRdFmhEJvyeIT3hUL+yUt42GpPGCWeIcfZ5i77TXDQv
K2+5m9qB66kCmnMIFczQDm4O6wLKwRBt/RMfHdJzbk01jP/yGoJ4HMkFCDfqbUCR
OF5o91ywjVXjwYp7U/9S7XZPGmUzHEdwx1fsewIDAQABAoIBAAy5+m25O9/u5sJV
2A6u/NX6KynxkeZU3liMpYj2JtZZhRbI3/kCvZY6ewRXAMe8Wj1QzeZ/4J429IVR
1ktOB6WRR0UE90siSnTyt5AFHBH4olfFTYTVrqjLAoynYFWdpqr3ChceBqaJXWnQ
oK4Uwl8UrgKC565eoXc4rn9/cziip2MbE4SU4HCU0CorIONH5oPFQiv0KW/rrefp
FYvIbUzdhsXq99y0+UwtuaxV1Z/Hd5FOMriNymasq+TcIz197Wyvv30pR9lZnDyz
zQbLaoa0r3++WkWdaPDf5dP+15Dg7EGaNXrIaEWA1cuXto2WlijD2wcbhUupoXUR
Bw5jAMECgYEA1AAXpxgoO0xkbSTgXKnHv7TEsEiICGokxybYIdZusPhZmSPHJddN
nt6zfjqJI55HQ+lxDD0mff9s4BCEe5tNbDKWrzGxelfQQndt4nkYBX9IRpT8oaN4
HAqrf4DYsf6FiOJwt8eev8KNolosBqVhnpfPtJnhXiEW+hu7RARxGCECgYEAySZ1
z4jc78HAq3kv7DX1tO7u5EmqAOubFIPZjx1BWrdAOw8y/ass5TQPAUQUu2/xLVgv
/M07H6vQbzYzZoyPPpkRAArdwx7oatJZs2qZOVAL+tLHJM/US761CXyqP+4dFEKl
W4L0x9Y3PWuvgYYKGImRcA6h9VyMsgnhF8cKQRsCgYEAgfcgiPZ9S4UUl/igdw46
f6MhZXTBuG7h5xlALNZZe7J0szZE00T/t+KNJVhbVHOm+tI01Kz0WQ/qvh5CKcjW
mPsWd4a+Z+NHsEepHMrh2BTkyShzC+C8NGyyIHNr5QrE8FrpgTEmeCacT6h6DwT6
KJCm6+/eQqeEf4XasuMKNiECgYEAvNk/+EV9cBeO5S5U4MbUVTeRz4CdfFm28m7L
XgLQbfPn+MrPS7te3h2fDMg3UrbJTpIiE403OgfcG91eKqRChDm+7TRGeb9V45xz
nO+yxU0ywh0L3LLGlQqJ+0swp+7NHE1p492yJMAogqDMWKVYaysVAYirY6mtaiW+
T82OAgsCgYAzM8RDlV4pDEfOiMmmpzxQ8YSy+wtNQcGA8QJyjfi/quv3JZgCST01
Wj4JoHtQRMrmKJawK63QIOHmv2XfngBhqUb7GInwpYVmYStywwrFprWNG+SRB72h
swq0cZigo6duktfZYUhoqeYV1JCB6zX2cC1O+6QKMROlXWQ/oD557A==
";

// ------------------------------------------------------------- signing keys

struct Signer {
    alg: Algorithm,
    kid: Option<String>,
    key: EncodingKey,
    jwk: Jwk,
}

impl Signer {
    fn es256(kid: Option<&str>) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        Self::new(Algorithm::ES256, kid, EncodingKey::from_ec_der(pkcs8.as_ref()))
    }

    fn rs256(kid: Option<&str>) -> Self {
        use base64::Engine as _;
        let text: String = RSA_PKCS1_B64.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        Self::new(Algorithm::RS256, kid, EncodingKey::from_rsa_der(&der))
    }

    fn new(alg: Algorithm, kid: Option<&str>, key: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = kid.map(str::to_owned);
        Self {
            alg,
            kid: kid.map(str::to_owned),
            key,
            jwk,
        }
    }

    fn sign(&self, claims: &Map<String, Value>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn jwks(signers: &[&Signer]) -> Value {
    serde_json::to_value(JwkSet {
        keys: signers.iter().map(|s| s.jwk.clone()).collect(),
    })
    .unwrap()
}

fn b64(value: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

// ------------------------------------------------------------ fake provider

/// A provider answering from memory; every request is recorded.
struct Op {
    discovery: Value,
    /// Served in order; the last one repeats.
    jwks: Vec<Value>,
    token: (u16, Value),
    userinfo: (u16, Value),
    fail: Option<HttpError>,
    oversized_jwks: bool,
    requests: Vec<HttpRequest>,
    jwks_served: usize,
}

fn discovery_doc() -> Value {
    json!({
        "issuer": ISSUER,
        "authorization_endpoint": "https://id.test/authorize",
        "token_endpoint": "https://id.test/token",
        "jwks_uri": "https://id.test/jwks",
        "userinfo_endpoint": "https://id.test/userinfo",
        "response_types_supported": ["code", "id_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    })
}

fn respond(status: u16, body: &Value) -> HttpResponse {
    let mut response = HttpResponse::new(serde_json::to_vec(body).unwrap());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

impl Op {
    fn answer(&mut self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        self.requests.push(request.clone());
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        let path = request.uri().path().to_owned();
        Ok(if path.ends_with("/openid-configuration") {
            respond(200, &self.discovery)
        } else if path == "/jwks" {
            if self.oversized_jwks {
                return Ok(HttpResponse::new(vec![b' '; DEFAULT_MAX_RESPONSE_BYTES + 1]));
            }
            let index = self.jwks_served.min(self.jwks.len() - 1);
            self.jwks_served += 1;
            respond(200, &self.jwks[index])
        } else if path == "/token" {
            respond(self.token.0, &self.token.1)
        } else if path == "/userinfo" {
            respond(self.userinfo.0, &self.userinfo.1)
        } else {
            respond(404, &json!({}))
        })
    }
}

struct Harness {
    op: Arc<Mutex<Op>>,
    http: FnHttpClient,
    rng: SeededRandom,
    key: BindingKey,
    provider: OidcProvider,
    runtime: tokio::runtime::Runtime,
}

struct Started {
    start: AuthorizationStart,
    state: String,
    nonce: String,
}

fn config() -> OidcConfig {
    OidcConfig::new("test-op", ISSUER, CLIENT_ID, SECRET)
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn claims(nonce: &str) -> Map<String, Value> {
    let now = NOW.unix_timestamp();
    let Value::Object(map) = json!({
        "iss": ISSUER,
        "sub": "user-1",
        "aud": CLIENT_ID,
        "exp": now + 600,
        "iat": now - 10,
        "nonce": nonce,
        "email": "alice@example.com",
        "email_verified": true,
        "name": "Alice Example",
    }) else {
        unreachable!()
    };
    map
}

impl Harness {
    fn new(config: OidcConfig, signers: &[&Signer]) -> Self {
        let op = Arc::new(Mutex::new(Op {
            discovery: discovery_doc(),
            jwks: vec![jwks(signers)],
            token: (200, json!({})),
            userinfo: (200, json!({"sub": "user-1"})),
            fail: None,
            oversized_jwks: false,
            requests: Vec::new(),
            jwks_served: 0,
        }));
        let shared = Arc::clone(&op);
        let http = FnHttpClient::new(move |_, request| shared.lock().unwrap().answer(request));
        Self {
            op,
            http,
            rng: SeededRandom::new(42),
            key: BindingKey::new(&[7u8; 32]).unwrap(),
            provider: OidcProvider::new(config).unwrap(),
            runtime: tokio::runtime::Builder::new_current_thread().build().unwrap(),
        }
    }

    fn op(&self) -> std::sync::MutexGuard<'_, Op> {
        self.op.lock().unwrap()
    }

    fn ctx(&self, now: OffsetDateTime) -> IdpContext<'_> {
        IdpContext {
            http: &self.http,
            rng: &self.rng,
            now,
            binding_key: &self.key,
        }
    }

    fn paths(&self) -> Vec<String> {
        self.op()
            .requests
            .iter()
            .map(|r| r.uri().path().to_owned())
            .collect()
    }

    fn count(&self, path: &str) -> usize {
        self.paths().iter().filter(|p| p.as_str() == path).count()
    }

    fn start_at(&self, now: OffsetDateTime) -> Started {
        let start = self
            .runtime
            .block_on(self.provider.start(&self.ctx(now), REDIRECT))
            .unwrap();
        let state = query_param(&start.url, "state").unwrap();
        let nonce = query_param(&start.url, "nonce").unwrap();
        Started { start, state, nonce }
    }

    fn finish_at(
        &self,
        now: OffsetDateTime,
        started: &Started,
        query: &str,
    ) -> Result<ExternalIdentity, IdpError> {
        let callback = Callback::parse(query)?;
        self.runtime.block_on(
            self.provider
                .finish(&self.ctx(now), &started.start.pending, &callback),
        )
    }

    /// Serves `token` from the token endpoint.
    fn serve_id_token(&self, token: &str) {
        self.op().token = (
            200,
            json!({"access_token": "at-123", "token_type": "Bearer", "expires_in": 3600, "id_token": token}),
        );
    }

    /// A whole sign-in at `now`: start, an ID token with the default claims
    /// edited by `edit` and signed by `signer`, the callback, finish.
    fn sign_in_at(
        &self,
        now: OffsetDateTime,
        signer: &Signer,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<ExternalIdentity, IdpError> {
        let started = self.start_at(now);
        let mut c = claims(&started.nonce);
        edit(&mut c);
        self.serve_id_token(&signer.sign(&c));
        self.finish_at(now, &started, &format!("code=code-1&state={}", started.state))
    }

    fn sign_in(
        &self,
        signer: &Signer,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<ExternalIdentity, IdpError> {
        self.sign_in_at(NOW, signer, edit)
    }
}

fn id_token_error(result: Result<ExternalIdentity, IdpError>) -> IdTokenError {
    match result {
        Err(IdpError::IdToken(e)) => e,
        other => panic!("expected an id token error, got {other:?}"),
    }
}

fn es256_harness() -> (Harness, Signer) {
    let signer = Signer::es256(Some("ec-1"));
    let h = Harness::new(config().with_userinfo(false), &[&signer]);
    (h, signer)
}

// ------------------------------------------------------------- happy paths

#[test]
fn happy_path_rs256() {
    let signer = Signer::rs256(Some("rsa-1"));
    let h = Harness::new(config(), &[&signer]);
    let identity = h.sign_in(&signer, |_| {}).unwrap();
    assert_eq!(
        identity,
        ExternalIdentity {
            provider_id: "test-op".into(),
            issuer: ISSUER.into(),
            subject: "user-1".into(),
            email: Some(crate::email::EmailAddress::parse("alice@example.com").unwrap()),
            email_verified: true,
            name: Some("Alice Example".into()),
            given_name: None,
            family_name: None,
            tenant_id: None,
            hosted_domain: None,
            home_tenant_id: None,
            object_id: None,
            amr: vec![],
        }
    );
    assert_eq!(
        h.paths(),
        [
            "/.well-known/openid-configuration",
            "/token",
            "/jwks",
            "/userinfo"
        ]
    );
}

#[test]
fn happy_path_es256() {
    let (h, signer) = es256_harness();
    let identity = h.sign_in(&signer, |_| {}).unwrap();
    assert_eq!(identity.subject, "user-1");
    assert!(identity.email_verified);
    assert_eq!(h.count("/userinfo"), 0, "userinfo turned off");
}

#[test]
fn discovery_and_keys_are_cached() {
    let (h, signer) = es256_harness();
    h.sign_in(&signer, |_| {}).unwrap();
    h.sign_in(&signer, |_| {}).unwrap();
    assert_eq!(h.count("/.well-known/openid-configuration"), 1);
    assert_eq!(h.count("/jwks"), 1);
    // After their maximum age both are fetched again.
    h.sign_in_at(NOW + JWKS_MAX_AGE, &signer, |c| {
        let later = (NOW + JWKS_MAX_AGE).unix_timestamp();
        c.insert("iat".into(), json!(later));
        c.insert("exp".into(), json!(later + 600));
    })
    .unwrap();
    assert_eq!(h.count("/jwks"), 2);
    assert_eq!(h.count("/.well-known/openid-configuration"), 1);
}

// ------------------------------------------------------------ claim checks

#[test]
fn wrong_issuer_is_refused() {
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.insert("iss".into(), json!("https://id.test/"));
    });
    assert_eq!(id_token_error(result), IdTokenError::WrongIssuer);
}

#[test]
fn missing_aud_is_refused() {
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.remove("aud");
    });
    assert_eq!(id_token_error(result), IdTokenError::MissingAudience);
}

#[test]
fn wrong_aud_is_refused() {
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.insert("aud".into(), json!("client-2"));
    });
    assert_eq!(id_token_error(result), IdTokenError::WrongAudience);
}

#[test]
fn several_audiences_without_azp_are_refused() {
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.insert("aud".into(), json!([CLIENT_ID, "other-api"]));
    });
    assert_eq!(id_token_error(result), IdTokenError::AzpMismatch);
}

#[test]
fn several_audiences_with_wrong_azp_are_refused() {
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.insert("aud".into(), json!([CLIENT_ID, "other-api"]));
        c.insert("azp".into(), json!("other-api"));
    });
    assert_eq!(id_token_error(result), IdTokenError::AzpMismatch);
    let single = h.sign_in(&signer, |c| {
        c.insert("azp".into(), json!("other-api"));
    });
    assert_eq!(
        id_token_error(single),
        IdTokenError::AzpMismatch,
        "azp checked when present"
    );
    h.sign_in(&signer, |c| {
        c.insert("aud".into(), json!([CLIENT_ID, "other-api"]));
        c.insert("azp".into(), json!(CLIENT_ID));
    })
    .unwrap();
}

#[test]
fn missing_sub_is_refused() {
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.remove("sub");
    });
    assert_eq!(id_token_error(result), IdTokenError::MissingSubject);
    let empty = h.sign_in(&signer, |c| {
        c.insert("sub".into(), json!(""));
    });
    assert_eq!(id_token_error(empty), IdTokenError::MissingSubject);
    let long = h.sign_in(&signer, |c| {
        c.insert("sub".into(), json!("x".repeat(256)));
    });
    assert!(matches!(id_token_error(long), IdTokenError::Malformed { .. }));
}

#[test]
fn missing_iat_is_refused() {
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.remove("iat");
    });
    assert_eq!(id_token_error(result), IdTokenError::MissingIssuedAt);
}

#[test]
fn missing_exp_is_refused() {
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.remove("exp");
    });
    assert_eq!(id_token_error(result), IdTokenError::MissingExpiry);
}

#[test]
fn iat_in_the_future_is_refused() {
    let (h, signer) = es256_harness();
    let now = NOW.unix_timestamp();
    let result = h.sign_in(&signer, |c| {
        c.insert("iat".into(), json!(now + 61));
    });
    assert_eq!(id_token_error(result), IdTokenError::IssuedInFuture);
    h.sign_in(&signer, |c| {
        c.insert("iat".into(), json!(now + 59));
    })
    .unwrap();
}

#[test]
fn expired_beyond_leeway_is_refused() {
    let (h, signer) = es256_harness();
    let now = NOW.unix_timestamp();
    let result = h.sign_in(&signer, |c| {
        c.insert("iat".into(), json!(now - 600));
        c.insert("exp".into(), json!(now - 61));
    });
    assert_eq!(id_token_error(result), IdTokenError::Expired);
}

#[test]
fn expired_within_leeway_is_accepted() {
    let (h, signer) = es256_harness();
    let now = NOW.unix_timestamp();
    h.sign_in(&signer, |c| {
        c.insert("iat".into(), json!(now - 600));
        c.insert("exp".into(), json!(now - 30));
    })
    .unwrap();
    // A float NumericDate is read too.
    h.sign_in(&signer, |c| {
        c.insert("exp".into(), json!(now as f64 + 0.5));
    })
    .unwrap();
}

#[test]
fn nbf_in_the_future_is_refused() {
    let (h, signer) = es256_harness();
    let now = NOW.unix_timestamp();
    let result = h.sign_in(&signer, |c| {
        c.insert("nbf".into(), json!(now + 120));
    });
    assert_eq!(id_token_error(result), IdTokenError::NotYetValid);
    h.sign_in(&signer, |c| {
        c.insert("nbf".into(), json!(now + 30));
    })
    .unwrap();
}

#[test]
fn wrong_nonce_is_refused() {
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.insert("nonce".into(), json!("not-the-nonce"));
    });
    assert_eq!(id_token_error(result), IdTokenError::NonceMismatch);
    let missing = h.sign_in(&signer, |c| {
        c.remove("nonce");
    });
    assert_eq!(id_token_error(missing), IdTokenError::NonceMismatch);
}

// ------------------------------------------------------- signatures and keys

#[test]
fn bad_signature_is_refused() {
    let signer = Signer::es256(Some("ec-1"));
    let impostor = Signer::es256(Some("ec-1"));
    let h = Harness::new(config().with_userinfo(false), &[&signer]);
    assert_eq!(h.sign_in(&impostor, |_| {}), Err(IdpError::BadSignature));
}

#[test]
fn alg_none_is_refused() {
    let (h, _) = es256_harness();
    let started = h.start_at(NOW);
    let token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&Value::Object(claims(&started.nonce)))
    );
    h.serve_id_token(&token);
    let result = h.finish_at(NOW, &started, &format!("code=c&state={}", started.state));
    assert_eq!(result, Err(IdpError::AlgorithmNotAllowed { alg: "none".into() }));
    assert_eq!(h.count("/jwks"), 0, "refused before any key is looked at");
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let signer = Signer::rs256(Some("rsa-1"));
    let h = Harness::new(config().with_userinfo(false), &[&signer]);
    let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &signer.jwk.algorithm else {
        unreachable!()
    };
    let forged = Signer {
        alg: Algorithm::HS256,
        kid: Some("rsa-1".into()),
        key: EncodingKey::from_secret(rsa.n.as_bytes()),
        jwk: signer.jwk.clone(),
    };
    assert_eq!(
        h.sign_in(&forged, |_| {}),
        Err(IdpError::AlgorithmNotAllowed { alg: "HS256".into() })
    );
}

#[test]
fn algorithm_not_in_the_allowed_list_is_refused() {
    let signer = Signer::es256(Some("ec-1"));
    let h = Harness::new(
        config().with_userinfo(false).with_allowed_algorithms(["RS256"]),
        &[&signer],
    );
    assert_eq!(
        h.sign_in(&signer, |_| {}),
        Err(IdpError::AlgorithmNotAllowed { alg: "ES256".into() })
    );
}

#[test]
fn key_of_another_type_than_the_alg_is_refused() {
    let rsa = Signer::rs256(Some("k"));
    let ec = Signer::es256(Some("k"));
    // The set publishes `k` as an RSA key; the token claims ES256 with kid `k`.
    let h = Harness::new(config().with_userinfo(false), &[&rsa]);
    assert_eq!(
        h.sign_in(&ec, |_| {}),
        Err(IdpError::KeyAlgorithmMismatch {
            kid: Some("k".into()),
            alg: "ES256".into()
        })
    );
}

#[test]
fn kid_absent_with_one_key_is_accepted() {
    let signer = Signer::es256(None);
    let h = Harness::new(config().with_userinfo(false), &[&signer]);
    h.sign_in(&signer, |_| {}).unwrap();
}

#[test]
fn kid_absent_with_two_keys_is_ambiguous() {
    let signer = Signer::es256(None);
    let other = Signer::es256(Some("ec-2"));
    let h = Harness::new(config().with_userinfo(false), &[&signer, &other]);
    assert_eq!(h.sign_in(&signer, |_| {}), Err(IdpError::AmbiguousKey));
    // One RSA and one EC key: only one fits ES256, so it is not ambiguous.
    let rsa = Signer::rs256(Some("rsa-1"));
    let h = Harness::new(config().with_userinfo(false), &[&signer, &rsa]);
    h.sign_in(&signer, |_| {}).unwrap();
}

#[test]
fn unknown_kid_refetches_once_and_accepts_the_rotated_key() {
    let old = Signer::es256(Some("old"));
    let new = Signer::es256(Some("new"));
    let h = Harness::new(config().with_userinfo(false), &[&old]);
    h.op().jwks.push(jwks(&[&old, &new]));
    h.sign_in(&old, |_| {}).unwrap();
    assert_eq!(h.count("/jwks"), 1);

    let later = NOW + time::Duration::minutes(5);
    let identity = h
        .sign_in_at(later, &new, |c| {
            c.insert("iat".into(), json!(later.unix_timestamp()));
        })
        .unwrap();
    assert_eq!(identity.subject, "user-1");
    assert_eq!(h.count("/jwks"), 2, "exactly one re-fetch");
}

#[test]
fn still_unknown_kid_is_refused_without_a_second_refetch() {
    let known = Signer::es256(Some("known"));
    let stranger = Signer::es256(Some("stranger"));
    let h = Harness::new(config().with_userinfo(false), &[&known]);
    h.sign_in(&known, |_| {}).unwrap();

    let later = NOW + time::Duration::minutes(5);
    let result = h.sign_in_at(later, &stranger, |_| {});
    assert_eq!(
        result,
        Err(IdpError::UnknownKey {
            kid: Some("stranger".into())
        })
    );
    assert_eq!(h.count("/jwks"), 2, "one re-fetch for the unknown kid");

    // Within the re-fetch interval another unknown kid causes no fetch.
    let soon = later + time::Duration::seconds(10);
    let again = h.sign_in_at(soon, &stranger, |_| {});
    assert_eq!(
        again,
        Err(IdpError::UnknownKey {
            kid: Some("stranger".into())
        })
    );
    assert_eq!(h.count("/jwks"), 2, "rate limited");

    // After it, one more.
    let much_later = later + JWKS_REFETCH_INTERVAL;
    assert!(h.sign_in_at(much_later, &stranger, |_| {}).is_err());
    assert_eq!(h.count("/jwks"), 3);
}

#[test]
fn unknown_kid_right_after_the_first_fetch_is_not_refetched() {
    let known = Signer::es256(Some("known"));
    let stranger = Signer::es256(Some("stranger"));
    let h = Harness::new(config().with_userinfo(false), &[&known]);
    let result = h.sign_in(&stranger, |_| {});
    assert_eq!(
        result,
        Err(IdpError::UnknownKey {
            kid: Some("stranger".into())
        })
    );
    assert_eq!(h.count("/jwks"), 1, "the set was fetched for this very token");
}

#[test]
fn oversized_jwks_is_refused() {
    let (h, signer) = es256_harness();
    h.op().oversized_jwks = true;
    assert_eq!(h.sign_in(&signer, |_| {}), Err(IdpError::ResponseTooLarge));
}

#[test]
fn jwks_with_unreadable_keys_keeps_the_readable_ones() {
    let (h, signer) = es256_harness();
    let mut set = jwks(&[&signer]);
    set["keys"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"kty": "future-kty", "kid": "x"}));
    h.op().jwks = vec![set];
    h.sign_in(&signer, |_| {}).unwrap();
    h.op().jwks = vec![json!({"keys": [{"kty": "future-kty"}]})];
    let fresh = Harness::new(config().with_userinfo(false), &[]);
    fresh.op().jwks = vec![json!({"keys": [{"kty": "future-kty"}]})];
    assert!(matches!(
        fresh.sign_in(&signer, |_| {}),
        Err(IdpError::Jwks { .. })
    ));
}

// ----------------------------------------------------------------- userinfo

#[test]
fn userinfo_sub_mismatch_is_refused() {
    let signer = Signer::es256(Some("ec-1"));
    let h = Harness::new(config(), &[&signer]);
    h.op().userinfo = (
        200,
        json!({"sub": "someone-else", "email": "mallory@example.com"}),
    );
    assert_eq!(h.sign_in(&signer, |_| {}), Err(IdpError::UserinfoSubjectMismatch));
}

#[test]
fn userinfo_is_called_with_the_access_token_and_fills_gaps_only() {
    let signer = Signer::es256(Some("ec-1"));
    let h = Harness::new(config(), &[&signer]);
    h.op().userinfo = (
        200,
        json!({
            "sub": "user-1",
            "email": "other@example.com",
            "email_verified": true,
            "name": "Userinfo Name",
            "given_name": "Alice",
            "family_name": "Example",
        }),
    );
    let identity = h
        .sign_in(&signer, |c| {
            c.insert("email_verified".into(), json!(false));
        })
        .unwrap();
    // The ID token's email and its (false) verification win as a pair.
    assert_eq!(
        identity.email.as_ref().map(|e| e.as_str()),
        Some("alice@example.com")
    );
    assert!(!identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some("Alice Example"));
    assert_eq!(identity.given_name.as_deref(), Some("Alice"));
    assert_eq!(identity.family_name.as_deref(), Some("Example"));
    let request = h.op().requests.last().cloned().unwrap();
    assert_eq!(request.uri().path(), "/userinfo");
    let auth = request.headers().get(header::AUTHORIZATION).unwrap();
    assert_eq!(auth, "Bearer at-123");
    assert!(auth.is_sensitive());

    // Without an email in the ID token, userinfo's pair is used.
    let identity = h
        .sign_in(&signer, |c| {
            c.remove("email");
        })
        .unwrap();
    assert_eq!(
        identity.email.as_ref().map(|e| e.as_str()),
        Some("other@example.com")
    );
    assert!(identity.email_verified);
}

#[test]
fn email_verified_string_true_is_accepted_and_bad_emails_are_dropped() {
    let (h, signer) = es256_harness();
    let identity = h
        .sign_in(&signer, |c| {
            c.insert("email_verified".into(), json!("true"));
        })
        .unwrap();
    assert!(identity.email_verified);
    let identity = h
        .sign_in(&signer, |c| {
            c.insert("email_verified".into(), json!(1));
        })
        .unwrap();
    assert!(!identity.email_verified);
    let identity = h
        .sign_in(&signer, |c| {
            c.insert("email".into(), json!("not an address"));
        })
        .unwrap();
    assert_eq!(identity.email, None);
    assert!(!identity.email_verified, "no address, nothing verified");
}

// ---------------------------------------------------------------- discovery

#[test]
fn discovery_issuer_mismatch_is_refused() {
    let (h, _) = es256_harness();
    h.op().discovery["issuer"] = json!("https://evil.test");
    let result = h.runtime.block_on(h.provider.start(&h.ctx(NOW), REDIRECT));
    assert_eq!(
        result.map(|_| ()),
        Err(IdpError::DiscoveryIssuerMismatch {
            expected: ISSUER.into(),
            actual: "https://evil.test".into()
        })
    );
}

#[test]
fn discovery_needs_https_endpoints_and_the_code_flow() {
    for (field, value) in [
        ("token_endpoint", json!("http://id.test/token")),
        ("jwks_uri", json!(null)),
        ("response_types_supported", json!(["id_token"])),
        ("code_challenge_methods_supported", json!(["plain"])),
        (
            "token_endpoint_auth_methods_supported",
            json!(["private_key_jwt"]),
        ),
        ("authorization_endpoint", json!(7)),
        // A remote provider may not point the server at its own loopback.
        ("token_endpoint", json!("https://127.0.0.1:8500/token")),
        ("userinfo_endpoint", json!("http://localhost/userinfo")),
        ("jwks_uri", json!("https://[::1]/jwks")),
    ] {
        let (h, _) = es256_harness();
        h.op().discovery[field] = value;
        let result = h.runtime.block_on(h.provider.start(&h.ctx(NOW), REDIRECT));
        assert!(
            matches!(result, Err(IdpError::Discovery { .. })),
            "{field}: {result:?}"
        );
    }
}

#[test]
fn default_discovery_url_has_no_double_slash() {
    let signer = Signer::es256(Some("ec-1"));
    let h = Harness::new(
        OidcConfig::new("x", "https://id.test/tenant/", CLIENT_ID, SECRET),
        &[&signer],
    );
    let _ = h.runtime.block_on(h.provider.start(&h.ctx(NOW), REDIRECT));
    assert_eq!(
        h.op().requests[0].uri().to_string(),
        "https://id.test/tenant/.well-known/openid-configuration"
    );
}

#[test]
fn provider_unreachable_is_reported() {
    let (h, _) = es256_harness();
    h.op().fail = Some(HttpError::Connect {
        message: "connection refused".into(),
    });
    let result = h.runtime.block_on(h.provider.start(&h.ctx(NOW), REDIRECT));
    assert_eq!(
        result.map(|_| ()),
        Err(IdpError::Unreachable(HttpError::Connect {
            message: "connection refused".into()
        }))
    );
}

// --------------------------------------------------------- start and token

#[test]
fn authorization_url_has_every_protocol_parameter() {
    let signer = Signer::es256(Some("ec-1"));
    let h = Harness::new(
        config().with_authorize_param("prompt", "select_account"),
        &[&signer],
    );
    let started = h.start_at(NOW);
    let url = &started.start.url;
    assert_eq!(url.as_str().split('?').next(), Some("https://id.test/authorize"));
    for (name, value) in [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("scope", "openid email profile"),
        ("code_challenge_method", "S256"),
        ("prompt", "select_account"),
    ] {
        assert_eq!(query_param(url, name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(started.state.len(), 43);
    assert_eq!(
        started.start.pending.state_hash,
        crate::secret::Digest::sha256(started.state.as_bytes())
    );
    assert_eq!(started.nonce, started.start.pending.nonce(&h.key).expose());
    assert_eq!(started.start.pending.redirect_uri, REDIRECT);
    assert_eq!(started.start.pending.issued_at, NOW);
    assert_eq!(started.start.pending.provider_id, "test-op");
    // Each sign-in draws its own state and salt.
    let second = h.start_at(NOW);
    assert_ne!(second.state, started.state);
    assert_ne!(second.nonce, started.nonce);
}

#[test]
fn start_refuses_an_unusable_redirect_uri() {
    let (h, _) = es256_harness();
    for uri in ["http://app.example/cb", "/cb", "https://app.example/cb#x"] {
        let result = h.runtime.block_on(h.provider.start(&h.ctx(NOW), uri));
        assert!(
            matches!(
                result,
                Err(IdpError::Config {
                    field: "redirect_uri",
                    ..
                })
            ),
            "{uri}"
        );
    }
}

#[test]
fn pkce_token_request_carries_the_verifier_of_the_challenge() {
    use base64::Engine as _;
    let (h, signer) = es256_harness();
    let started = h.start_at(NOW);
    let challenge = query_param(&started.start.url, "code_challenge").unwrap();
    h.serve_id_token(&signer.sign(&claims(&started.nonce)));
    h.finish_at(NOW, &started, &format!("code=the-code&state={}", started.state))
        .unwrap();
    let token = h
        .op()
        .requests
        .iter()
        .find(|r| r.uri().path() == "/token")
        .cloned()
        .unwrap();
    assert_eq!(token.method(), crate::http::Method::POST);
    assert_eq!(
        token.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/x-www-form-urlencoded"
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(token.body()).into_owned().collect();
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("authorization_code"));
    assert_eq!(get("code"), Some("the-code"));
    assert_eq!(get("redirect_uri"), Some(REDIRECT));
    assert_eq!(get("client_secret"), None, "basic auth by default");
    let verifier = get("code_verifier").unwrap();
    assert_eq!(verifier.len(), 43);
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
        challenge
    );
}

#[test]
fn client_secret_basic_encodes_special_characters() {
    use base64::Engine as _;
    let signer = Signer::es256(Some("ec-1"));
    let h = Harness::new(
        OidcConfig::new("x", ISSUER, "id:with space", "p@ss:w+rd%").with_userinfo(false),
        &[&signer],
    );
    let started = h.start_at(NOW);
    let _ = h.finish_at(NOW, &started, &format!("code=c&state={}", started.state));
    let token = h
        .op()
        .requests
        .iter()
        .find(|r| r.uri().path() == "/token")
        .cloned()
        .unwrap();
    let auth = token.headers().get(header::AUTHORIZATION).unwrap();
    assert!(auth.is_sensitive());
    let encoded = auth.to_str().unwrap().strip_prefix("Basic ").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        "id%3Awith+space:p%40ss%3Aw%2Brd%25"
    );
}

#[test]
fn client_secret_post_sends_the_secret_in_the_body() {
    let signer = Signer::es256(Some("ec-1"));
    let h = Harness::new(
        config()
            .with_userinfo(false)
            .with_client_auth(ClientAuth::SecretPost),
        &[&signer],
    );
    h.sign_in(&signer, |_| {}).unwrap();
    let token = h
        .op()
        .requests
        .iter()
        .find(|r| r.uri().path() == "/token")
        .cloned()
        .unwrap();
    assert!(token.headers().get(header::AUTHORIZATION).is_none());
    let form: Vec<(String, String)> = url::form_urlencoded::parse(token.body()).into_owned().collect();
    assert!(form.contains(&("client_id".into(), CLIENT_ID.into())));
    assert!(form.contains(&("client_secret".into(), SECRET.into())));
}

#[test]
fn token_endpoint_invalid_grant_is_reported_without_description() {
    let (h, _) = es256_harness();
    let started = h.start_at(NOW);
    h.op().token = (
        400,
        json!({"error": "invalid_grant", "error_description": "code the-code was already redeemed"}),
    );
    let result = h.finish_at(NOW, &started, &format!("code=the-code&state={}", started.state));
    let err = result.unwrap_err();
    assert_eq!(
        err,
        IdpError::TokenEndpoint {
            status: 400,
            error: Some("invalid_grant".into())
        }
    );
    assert!(!err.to_string().contains("the-code"));
    assert_eq!(err.category(), crate::error::Category::BadRequest);
}

#[test]
fn token_type_must_be_bearer() {
    let (h, signer) = es256_harness();
    let started = h.start_at(NOW);
    let token = signer.sign(&claims(&started.nonce));
    h.op().token = (
        200,
        json!({"access_token": "at", "token_type": "mac", "id_token": token}),
    );
    let result = h.finish_at(NOW, &started, &format!("code=c&state={}", started.state));
    assert!(
        matches!(result, Err(IdpError::TokenResponse { .. })),
        "{result:?}"
    );
    h.op().token = (200, json!({"access_token": "at", "token_type": "bearer"}));
    let result = h.finish_at(NOW, &started, &format!("code=c&state={}", started.state));
    assert_eq!(
        result,
        Err(IdpError::TokenResponse {
            reason: "there is no `id_token`".into()
        })
    );
}

// ----------------------------------------------------------------- callback

#[test]
fn callback_problems_stop_before_the_token_request() {
    let (h, _) = es256_harness();
    let started = h.start_at(NOW);
    let state = &started.state;
    let cases: Vec<(String, IdpError)> = vec![
        ("code=c".into(), IdpError::StateMismatch),
        (format!("code=c&state={state}x"), IdpError::StateMismatch),
        (
            format!("error=access_denied&state={state}"),
            IdpError::AccessDenied { description: None },
        ),
        (
            format!("error=login_required&error_description=Sign+in&state={state}"),
            IdpError::ProviderError {
                error: "login_required".into(),
                description: Some("Sign in".into()),
            },
        ),
        (
            format!("code=c&state={state}&iss=https%3A%2F%2Fevil.test"),
            IdpError::IssuerMismatch {
                expected: ISSUER.into(),
                actual: "https://evil.test".into(),
            },
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(h.finish_at(NOW, &started, &query), Err(expected), "{query}");
    }
    for query in [
        format!("code=c&code=d&state={state}"),
        format!("code={}&state={state}", "a".repeat(20_000)),
    ] {
        assert!(matches!(
            h.finish_at(NOW, &started, &query),
            Err(IdpError::Callback { .. })
        ));
    }
    assert_eq!(h.count("/token"), 0);
}

#[test]
fn callback_iss_of_the_provider_is_accepted_and_required_when_advertised() {
    let (h, signer) = es256_harness();
    h.op().discovery["authorization_response_iss_parameter_supported"] = json!(true);
    let started = h.start_at(NOW);
    h.serve_id_token(&signer.sign(&claims(&started.nonce)));
    let without = h.finish_at(NOW, &started, &format!("code=c&state={}", started.state));
    assert!(matches!(without, Err(IdpError::Callback { ref reason }) if reason.contains("iss")));
    h.finish_at(
        NOW,
        &started,
        &format!("code=c&state={}&iss=https%3A%2F%2Fid.test", started.state),
    )
    .unwrap();
}

// ------------------------------------------------------- tenants and domains

fn entra_harness(allowed: Option<Vec<String>>) -> (Harness, Signer) {
    let signer = Signer::rs256(Some("rsa-1"));
    let mut config = OidcConfig::new("entra", TEMPLATE, CLIENT_ID, SECRET)
        .with_discovery_url("https://login.test/organizations/v2.0/.well-known/openid-configuration")
        .with_issuer_template(TEMPLATE)
        .with_userinfo(false);
    config.allowed_tenants = allowed;
    let h = Harness::new(config, &[&signer]);
    h.op().discovery["issuer"] = json!(TEMPLATE);
    (h, signer)
}

fn tenant(c: &mut Map<String, Value>, tid: &str) {
    c.insert("iss".into(), json!(format!("https://login.test/{tid}/v2.0")));
    c.insert("tid".into(), json!(tid));
}

#[test]
fn entra_template_accepts_an_allowed_tenant() {
    let (h, signer) = entra_harness(Some(vec!["tenant-a".into()]));
    assert_eq!(h.provider.issuer(), None);
    let identity = h.sign_in(&signer, |c| tenant(c, "tenant-a")).unwrap();
    assert_eq!(identity.tenant_id.as_deref(), Some("tenant-a"));
    assert_eq!(identity.issuer, "https://login.test/tenant-a/v2.0");
}

#[test]
fn entra_template_refuses_a_denied_tenant() {
    let (h, signer) = entra_harness(Some(vec!["tenant-a".into()]));
    assert_eq!(
        h.sign_in(&signer, |c| tenant(c, "tenant-b")),
        Err(IdpError::TenantNotAllowed {
            tenant_id: "tenant-b".into()
        })
    );
    // The callback's `iss` already names the tenant: refused before the code is redeemed.
    let started = h.start_at(NOW);
    let query = format!(
        "code=c&state={}&iss=https%3A%2F%2Flogin.test%2Ftenant-b%2Fv2.0",
        started.state
    );
    assert_eq!(
        h.finish_at(NOW, &started, &query),
        Err(IdpError::TenantNotAllowed {
            tenant_id: "tenant-b".into()
        })
    );
}

#[test]
fn entra_template_needs_iss_to_match_tid() {
    let (h, signer) = entra_harness(None);
    let result = h.sign_in(&signer, |c| {
        tenant(c, "tenant-a");
        c.insert("tid".into(), json!("tenant-b"));
    });
    assert_eq!(id_token_error(result), IdTokenError::WrongIssuer);
    let result = h.sign_in(&signer, |c| {
        tenant(c, "tenant-a");
        c.remove("tid");
    });
    assert_eq!(id_token_error(result), IdTokenError::MissingTenantId);
    h.sign_in(&signer, |c| tenant(c, "any-tenant")).unwrap();
}

// --------------------------------------------------- the home organisation

const PARTNER_TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const GUEST_HOME_TID: &str = "0c9e2a7d-4b1f-4e8a-9d3c-5a6b7c8d9e0f";

const CLOUD_TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

/// A multi-tenant provider with Entra's own issuer template.
fn cloud_harness() -> (Harness, Signer) {
    let signer = Signer::rs256(Some("rsa-1"));
    let config = OidcConfig::new("entra", CLOUD_TEMPLATE, CLIENT_ID, SECRET)
        .with_discovery_url("https://login.test/organizations/v2.0/.well-known/openid-configuration")
        .with_issuer_template(CLOUD_TEMPLATE)
        .with_userinfo(false);
    let h = Harness::new(config, &[&signer]);
    h.op().discovery["issuer"] = json!(CLOUD_TEMPLATE);
    (h, signer)
}

fn cloud_tenant(c: &mut Map<String, Value>, tid: &str) {
    c.insert(
        "iss".into(),
        json!(format!("https://login.microsoftonline.com/{tid}/v2.0")),
    );
    c.insert("tid".into(), json!(tid));
}

#[test]
fn a_template_that_is_not_entras_binds_no_home_tenant() {
    // Any issuer may put a GUID where the template has `{tenantid}` (an
    // Azure AD B2C tenant, a realm named by a GUID) and say anything in
    // `idp`: only Entra's issuers name an organisation.
    let (h, signer) = entra_harness(None);
    let identity = h
        .sign_in(&signer, |c| {
            tenant(c, PARTNER_TID);
            c.insert("amr".into(), json!(["mfa"]));
            c.insert(
                "idp".into(),
                json!(format!("https://sts.windows.net/{GUEST_HOME_TID}/")),
            );
        })
        .unwrap();
    assert_eq!(identity.home_tenant_id, None);
    assert_eq!(identity.tenant_id.as_deref(), Some(PARTNER_TID), "unchanged");
}

/// A single-tenant provider with the exact issuer `issuer`.
fn exact_harness(issuer: &str) -> (Harness, Signer) {
    let signer = Signer::rs256(Some("rsa-1"));
    let config = OidcConfig::new("org", issuer, CLIENT_ID, SECRET).with_userinfo(false);
    let h = Harness::new(config, &[&signer]);
    h.op().discovery["issuer"] = json!(issuer);
    (h, signer)
}

#[test]
fn template_issuer_binds_the_home_tenant_and_keeps_amr_and_oid() {
    let (h, signer) = cloud_harness();
    let identity = h
        .sign_in(&signer, |c| {
            cloud_tenant(c, PARTNER_TID);
            c.insert("amr".into(), json!(["pwd", "mfa"]));
            c.insert("oid".into(), json!("00000000-0000-0000-66f3-3332eca7ea81"));
        })
        .unwrap();
    assert_eq!(identity.home_tenant_id.as_deref(), Some(PARTNER_TID));
    assert_eq!(identity.tenant_id.as_deref(), Some(PARTNER_TID));
    assert_eq!(identity.amr, ["pwd", "mfa"]);
    assert_eq!(
        identity.object_id.as_deref(),
        Some("00000000-0000-0000-66f3-3332eca7ea81")
    );
    // Stored lowercase; `tenant_id` keeps the token's spelling.
    let upper = PARTNER_TID.to_ascii_uppercase();
    let identity = h.sign_in(&signer, |c| cloud_tenant(c, &upper)).unwrap();
    assert_eq!(identity.home_tenant_id.as_deref(), Some(PARTNER_TID));
    assert_eq!(identity.tenant_id.as_deref(), Some(upper.as_str()));
    assert!(identity.amr.is_empty());
    assert_eq!(identity.object_id, None);
}

#[test]
fn exact_entra_issuer_with_the_tid_in_its_path_binds_the_home_tenant() {
    for issuer in [
        format!("https://login.microsoftonline.com/{PARTNER_TID}/v2.0"),
        format!("https://sts.windows.net/{}/", PARTNER_TID.to_ascii_uppercase()),
    ] {
        let (h, signer) = exact_harness(&issuer);
        let iss = issuer.clone();
        let identity = h
            .sign_in(&signer, |c| {
                c.insert("iss".into(), json!(iss));
                c.insert("tid".into(), json!(PARTNER_TID));
            })
            .unwrap();
        assert_eq!(identity.home_tenant_id.as_deref(), Some(PARTNER_TID), "{issuer}");
        // The issuer names another tenant than the token's `tid`.
        let iss = issuer.clone();
        let identity = h
            .sign_in(&signer, |c| {
                c.insert("iss".into(), json!(iss));
                c.insert("tid".into(), json!(GUEST_HOME_TID));
            })
            .unwrap();
        assert_eq!(identity.home_tenant_id, None, "{issuer}");
        assert_eq!(identity.tenant_id.as_deref(), Some(GUEST_HOME_TID));
    }
}

#[test]
fn a_provider_asserting_a_partner_tid_names_no_home_tenant() {
    // A direct-federation provider claims to be the partner, with MFA.
    for issuer in [
        ISSUER.to_owned(),
        "https://idp.example.com".to_owned(),
        format!("https://idp.example.com/x{PARTNER_TID}/v2.0"),
    ] {
        let (h, signer) = exact_harness(&issuer);
        let iss = issuer.clone();
        let identity = h
            .sign_in(&signer, |c| {
                c.insert("iss".into(), json!(iss));
                c.insert("tid".into(), json!(PARTNER_TID));
                c.insert("amr".into(), json!(["mfa"]));
                c.insert(
                    "idp".into(),
                    json!(format!("https://sts.windows.net/{PARTNER_TID}/")),
                );
            })
            .unwrap();
        assert_eq!(identity.home_tenant_id, None, "{issuer}");
        assert_eq!(identity.tenant_id.as_deref(), Some(PARTNER_TID), "unchanged");
        assert_eq!(identity.amr, ["mfa"]);
    }
}

#[test]
fn a_guests_idp_names_the_home_tenant() {
    let (h, signer) = cloud_harness();
    let guest = |idp: Value| {
        h.sign_in(&signer, |c| {
            cloud_tenant(c, PARTNER_TID);
            c.insert("idp".into(), idp);
        })
        .unwrap()
        .home_tenant_id
    };
    assert_eq!(
        guest(json!(format!("https://sts.windows.net/{GUEST_HOME_TID}/"))).as_deref(),
        Some(GUEST_HOME_TID)
    );
    let upper = GUEST_HOME_TID.to_ascii_uppercase();
    assert_eq!(
        guest(json!(format!("https://login.microsoftonline.com/{upper}/v2.0"))).as_deref(),
        Some(GUEST_HOME_TID)
    );
    // The issuing tenant's own issuer: a member.
    assert_eq!(
        guest(json!(format!("https://sts.windows.net/{PARTNER_TID}/"))).as_deref(),
        Some(PARTNER_TID)
    );
    for other in [
        json!("live.com"),
        json!("google.com"),
        json!("https://accounts.google.com"),
        json!(format!("https://sts.windows.net/{GUEST_HOME_TID}")),
        json!(format!("https://sts.windows.net/{GUEST_HOME_TID}/x/")),
        json!(format!("https://evil.example/{GUEST_HOME_TID}/v2.0")),
        json!("https://sts.windows.net/not-a-guid/"),
        json!(42),
    ] {
        assert_eq!(guest(other.clone()), None, "{other}");
    }
}

#[test]
fn malformed_amr_oid_and_tid_are_dropped_not_refused() {
    let (h, signer) = entra_harness(None);
    let sign_in = |edit: &dyn Fn(&mut Map<String, Value>)| {
        h.sign_in(&signer, |c| {
            tenant(c, PARTNER_TID);
            edit(c);
        })
        .unwrap()
    };
    let amr = |value: Value| {
        sign_in(&|c| {
            c.insert("amr".into(), value.clone());
        })
        .amr
    };
    assert!(amr(json!("mfa")).is_empty());
    assert!(amr(json!({"mfa": true})).is_empty());
    let seventeen: Vec<String> = (0..17).map(|i| format!("m{i}")).collect();
    assert_eq!(amr(json!(seventeen)), seventeen[..16]);
    let long = "x".repeat(40);
    let longest = "y".repeat(32);
    assert_eq!(
        amr(json!(["mfa", long, longest, 7, "", "a\u{0}b", null])),
        ["mfa", longest.as_str()]
    );

    let oid = |value: Value| {
        sign_in(&|c| {
            c.insert("oid".into(), value.clone());
        })
        .object_id
    };
    assert_eq!(oid(json!("o".repeat(64))), Some("o".repeat(64)));
    assert_eq!(oid(json!("o".repeat(65))), None);
    assert_eq!(oid(json!(12)), None);

    // A tid that is no GUID: the tenant is reported as before, no home.
    for tid in [
        "tenant-a",
        "72f988bf86f141af91ab2d7cd011db47",
        "72f988bf-86f1-41af-91ab-2d7cd011db4g",
        "72f988bf-86f1-41af-91ab2-d7cd011db47",
    ] {
        let identity = h.sign_in(&signer, |c| tenant(c, tid)).unwrap();
        assert_eq!(identity.home_tenant_id, None, "{tid}");
        assert_eq!(identity.tenant_id.as_deref(), Some(tid));
    }
}

#[test]
fn lowercase_guid_accepts_the_8_4_4_4_12_form_only() {
    use super::claims::lowercase_guid;
    assert_eq!(
        lowercase_guid("72F988BF-86f1-41AF-91ab-2D7CD011DB47").as_deref(),
        Some(PARTNER_TID)
    );
    for bad in [
        "",
        "72f988bf86f141af91ab2d7cd011db47",
        "{72f988bf-86f1-41af-91ab-2d7cd011db47}",
        "72f988bf-86f1-41af-91ab-2d7cd011db47 ",
        "72f988bf-86f1-41af-91ab-2d7cd011db4\u{e9}",
        "72f988bf-86f1-41af-91ab+2d7cd011db47",
        "72f988bf-86f1-41af-91ab-2d7cd011db47-",
    ] {
        assert_eq!(lowercase_guid(bad), None, "{bad:?}");
    }
}

#[test]
fn google_hosted_domain_is_sent_and_enforced() {
    let signer = Signer::rs256(Some("g-1"));
    let mut h = Harness::new(config(), &[&signer]);
    h.provider = crate::idp::presets::google(CLIENT_ID, SECRET, Some("Fabrikam.Example".into())).unwrap();
    h.op().discovery["issuer"] = json!("https://accounts.google.com");
    let google = |c: &mut Map<String, Value>| {
        c.insert("iss".into(), json!("https://accounts.google.com"));
    };
    let started = h.start_at(NOW);
    assert_eq!(
        query_param(&started.start.url, "hd").as_deref(),
        Some("fabrikam.example")
    );
    assert_eq!(
        h.op().requests[0].uri().to_string(),
        "https://accounts.google.com/.well-known/openid-configuration"
    );

    let result = h.sign_in(&signer, |c| {
        google(c);
        c.insert("hd".into(), json!("contoso.example"));
    });
    assert_eq!(
        result,
        Err(IdpError::HostedDomainNotAllowed {
            hosted_domain: Some("contoso.example".into())
        })
    );
    let result = h.sign_in(&signer, google);
    assert_eq!(
        result,
        Err(IdpError::HostedDomainNotAllowed { hosted_domain: None })
    );
    let identity = h
        .sign_in(&signer, |c| {
            google(c);
            c.insert("hd".into(), json!("fabrikam.example"));
        })
        .unwrap();
    assert_eq!(identity.hosted_domain.as_deref(), Some("fabrikam.example"));
    assert_eq!(
        h.count("/userinfo"),
        0,
        "the google preset reads the id token only"
    );
}

#[test]
fn google_issuer_without_scheme_is_reported_canonically() {
    let signer = Signer::rs256(Some("g-1"));
    let mut h = Harness::new(config(), &[&signer]);
    h.provider = crate::idp::presets::google(CLIENT_ID, SECRET, None).unwrap();
    h.op().discovery["issuer"] = json!("https://accounts.google.com");
    let identity = h
        .sign_in(&signer, |c| {
            c.insert("iss".into(), json!("accounts.google.com"));
        })
        .unwrap();
    assert_eq!(identity.issuer, "https://accounts.google.com");
    // The alias is Google's only: other providers stay exact.
    let (h, signer) = es256_harness();
    let result = h.sign_in(&signer, |c| {
        c.insert("iss".into(), json!("accounts.google.com"));
    });
    assert_eq!(id_token_error(result), IdTokenError::WrongIssuer);
}

// ------------------------------------------------------------ configuration

#[test]
fn configuration_is_validated_naming_the_field() {
    let field = |c: OidcConfig| match OidcProvider::new(c) {
        Err(ConfigError::Invalid { field, .. } | ConfigError::Missing { field }) => field,
        Ok(_) => "accepted",
    };
    assert_eq!(field(config()), "accepted");
    assert_eq!(field(OidcConfig::new("bad id", ISSUER, CLIENT_ID, SECRET)), "id");
    assert_eq!(
        field(OidcConfig::new("x".repeat(65), ISSUER, CLIENT_ID, SECRET)),
        "id"
    );
    assert_eq!(
        field(OidcConfig::new("x", "http://id.test", CLIENT_ID, SECRET)),
        "issuer"
    );
    assert_eq!(
        field(OidcConfig::new("x", "http://127.0.0.1:8080", CLIENT_ID, SECRET)),
        "accepted"
    );
    assert_eq!(
        field(OidcConfig::new("x", "https://id.test?a=b", CLIENT_ID, SECRET)),
        "issuer"
    );
    assert_eq!(field(OidcConfig::new("x", TEMPLATE, CLIENT_ID, SECRET)), "issuer");
    assert_eq!(field(OidcConfig::new("x", ISSUER, "", SECRET)), "client_id");
    assert_eq!(
        field(OidcConfig::new("x", ISSUER, CLIENT_ID, "")),
        "client_secret"
    );
    assert_eq!(field(config().with_scopes(["email", "profile"])), "scopes");
    assert_eq!(field(config().with_scopes(["openid", "openid"])), "scopes");
    assert_eq!(
        field(config().with_allowed_algorithms(["none"])),
        "allowed_algorithms"
    );
    assert_eq!(
        field(config().with_allowed_algorithms(["HS256"])),
        "allowed_algorithms"
    );
    assert_eq!(
        field(config().with_allowed_algorithms(Vec::<String>::new())),
        "allowed_algorithms"
    );
    assert_eq!(
        field(config().with_allowed_algorithms(["PS256", "EdDSA", "ES384"])),
        "accepted"
    );
    assert_eq!(
        field(config().with_leeway(std::time::Duration::from_secs(301))),
        "leeway"
    );
    assert_eq!(field(config().with_leeway(MAX_LEEWAY)), "accepted");
    assert_eq!(
        field(config().with_authorize_param("state", "x")),
        "extra_authorize_params"
    );
    assert_eq!(
        field(config().with_authorize_param("Redirect_URI", "x")),
        "extra_authorize_params"
    );
    assert_eq!(
        field(config().with_authorize_param("domain_hint", "fabrikam.example")),
        "accepted"
    );
    assert_eq!(field(config().with_allowed_tenants(["t"])), "allowed_tenants");
    assert_eq!(
        field(OidcConfig::new("x", TEMPLATE, CLIENT_ID, SECRET).with_issuer_template(TEMPLATE)),
        "discovery_url"
    );
    assert_eq!(
        field(config().with_discovery_url("http://id.test/x")),
        "discovery_url"
    );
    assert_eq!(field(config().with_timeout(std::time::Duration::ZERO)), "timeout");
    assert_eq!(field(config().with_max_response_bytes(1)), "max_response_bytes");
    assert_eq!(
        field(config().with_authority_domain("no_domain")),
        "authority_domains"
    );

    let none = OidcProvider::new(config().with_allowed_algorithms(["none"])).unwrap_err();
    assert!(
        none.to_string().contains("`none` algorithm is never accepted"),
        "{none}"
    );
    let hmac = OidcProvider::new(config().with_allowed_algorithms(["HS256"])).unwrap_err();
    assert!(hmac.to_string().contains("HMAC"), "{hmac}");
}

#[test]
fn debug_reveals_no_secret() {
    let (h, signer) = es256_harness();
    let started = h.start_at(NOW);
    h.serve_id_token(&signer.sign(&claims(&started.nonce)));
    let callback = Callback::parse(&format!("code=code-secret-1&state={}", started.state)).unwrap();
    let shown = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        h.provider,
        config(),
        started.start,
        started.start.pending,
        callback,
        h.ctx(NOW)
    );
    for secret in [
        SECRET,
        "code-secret-1",
        started.state.as_str(),
        started.nonce.as_str(),
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    let verifier = started.start.pending.code_verifier(&h.key);
    assert!(!shown.contains(verifier.expose()));
}
