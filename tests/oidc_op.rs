//! The local OpenID provider (`tests/support/oidc_op.rs`) and the reqwest
//! `HttpClient`, over real loopback HTTP.

#![cfg(feature = "reqwest")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/oidc_op.rs"]
mod oidc_op;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use guestpass::error::ConfigError;
use guestpass::http::{
    ClientCertificate, HttpClient, HttpError, HttpLimits, HttpRequest, HttpResponse, Method, ReqwestClient,
    StatusCode, header,
};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oidc_op::*;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// RFC 7636 Appendix B: this verifier's S256 challenge is the one below.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const STATE: &str = "state-0123456789";
const NONCE: &str = "nonce-abcdefghij";
const NOW: i64 = 1_700_000_000;

// TEST-ONLY client certificate and key (P-256, self-signed, CN
// guestpass-test-client), generated with openssl for this file.
const CLIENT_IDENTITY_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggJVStr/RECi8aSCz
shUJ7pLoQHUm19JCIBnlrDlJ0duhRANCAAQARsVYj89dELkxV3SEdsnL3/vSO0ES
XbI5CTtAsPPOYFnrK6tR0WPrbqgVk16uU8V9XpXXtryrOxJVgX+40N+B
-----END PRIVATE KEY-----
-----BEGIN CERTIFICATE-----
MIIBmDCCAT2gAwIBAgIUIRkRILBdRprdoOmvXt6WP5GwS6wwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVZ3Vlc3RwYXNzLXRlc3QtY2xpZW50MCAXDTI2MTIwMjAxMzY0
NloYDzIxMjYxMTA4MDEzNjQ2WjAgMR4wHAYDVQQDDBVndWVzdHBhc3MtdGVzdC1j
bGllbnQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQARsVYj89dELkxV3SEdsnL
3/vSO0ESXbI5CTtAsPPOYFnrK6tR0WPrbqgVk16uU8V9XpXXtryrOxJVgX+40N+B
o1MwUTAdBgNVHQ4EFgQUER1kZanbRWx3PvwBkh9DI1OXeK4wHwYDVR0jBBgwFoAU
ER1kZanbRWx3PvwBkh9DI1OXeK4wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNJADBGAiEAnab46pjwLUTGwiyIbvF4m9mbr9Q+Ce+rRsQWpfuBSqcCIQCHQGuA
Wwpc87egyC0QeVWVqktWVh7nvV46YuJcAsp+Yg==
-----END CERTIFICATE-----
";

// ---------------------------------------------------------------- helpers

fn client() -> ReqwestClient {
    ReqwestClient::builder().no_proxy().build().unwrap()
}

fn limits() -> HttpLimits {
    HttpLimits::new(Duration::from_secs(10), 4 * 1024 * 1024)
}

fn request(method: Method, url: &str, body: Vec<u8>) -> HttpRequest {
    let mut request = HttpRequest::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = url.parse().unwrap();
    request
}

async fn get(client: &ReqwestClient, url: &str) -> HttpResponse {
    client
        .execute(request(Method::GET, url, Vec::new()), limits())
        .await
        .unwrap()
}

fn body_json(response: &HttpResponse) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

fn location(response: &HttpResponse) -> url::Url {
    assert_eq!(response.status(), StatusCode::FOUND);
    url::Url::parse(response.headers()[header::LOCATION].to_str().unwrap()).unwrap()
}

fn query(url: &url::Url) -> Vec<(String, String)> {
    url.query_pairs().into_owned().collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn default_authorize_params() -> Vec<(String, String)> {
    pairs(&[
        ("response_type", "code"),
        ("client_id", DEFAULT_CLIENT_ID),
        ("redirect_uri", DEFAULT_REDIRECT_URI),
        ("scope", "openid email profile"),
        ("state", STATE),
        ("nonce", NONCE),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ])
}

/// The default parameters with `changes` applied: a value replaces the
/// parameter, `None` removes it.
fn authorize_params(changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut params = default_authorize_params();
    for (name, value) in changes {
        match value {
            Some(value) => match params.iter_mut().find(|(n, _)| n == name) {
                Some(param) => param.1 = (*value).to_owned(),
                None => params.push(((*name).to_owned(), (*value).to_owned())),
            },
            None => params.retain(|(n, _)| n != name),
        }
    }
    params
}

fn authorize_url(op: &OidcTestProvider, params: &[(String, String)]) -> String {
    let mut url = url::Url::parse(&op.url(Endpoint::Authorize)).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// Runs `/authorize` with the default parameters and returns the code.
async fn code(op: &OidcTestProvider, client: &ReqwestClient) -> String {
    let response = get(client, &authorize_url(op, &default_authorize_params())).await;
    let params = query(&location(&response));
    params.iter().find(|(n, _)| n == "code").unwrap().1.clone()
}

/// RFC 6749 §2.3.1: id and secret form-urlencoded, then Basic.
fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

async fn post_form(
    client: &ReqwestClient,
    url: &str,
    form: &[(String, String)],
    authorization: Option<String>,
) -> HttpResponse {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
        .into_bytes();
    let mut request = request(Method::POST, url, body);
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, value.parse().unwrap());
    }
    client.execute(request, limits()).await.unwrap()
}

fn token_form(code: &str, verifier: &str) -> Vec<(String, String)> {
    pairs(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", DEFAULT_REDIRECT_URI),
        ("code_verifier", verifier),
    ])
}

/// Redeems `code` with client_secret_basic.
async fn redeem(op: &OidcTestProvider, client: &ReqwestClient, code: &str, verifier: &str) -> HttpResponse {
    post_form(
        client,
        &op.url(Endpoint::Token),
        &token_form(code, verifier),
        Some(basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)),
    )
    .await
}

/// The whole flow; returns the token response JSON.
async fn sign_in(op: &OidcTestProvider, client: &ReqwestClient) -> Value {
    let code = code(op, client).await;
    let response = redeem(op, client, &code, VERIFIER).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(response.body())
    );
    body_json(&response)
}

async fn id_token(op: &OidcTestProvider, client: &ReqwestClient) -> String {
    sign_in(op, client).await["id_token"].as_str().unwrap().to_owned()
}

fn assert_oauth_error(response: &HttpResponse, status: StatusCode, error: &str) {
    assert_eq!(
        response.status(),
        status,
        "{}",
        String::from_utf8_lossy(response.body())
    );
    assert_eq!(body_json(response)["error"], error);
}

async fn fetch_jwks(op: &OidcTestProvider, client: &ReqwestClient) -> JwkSet {
    serde_json::from_slice(get(client, &op.url(Endpoint::Jwks)).await.body()).unwrap()
}

/// Verifies `token` as an ID token for the default client: the key is
/// chosen by `kid` from `jwks`, the algorithm pinned to `alg`. `exp` is
/// checked against the system clock, so the provider must follow it.
fn verify(
    op: &OidcTestProvider,
    jwks: &JwkSet,
    token: &str,
    alg: Algorithm,
) -> Result<Map<String, Value>, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.expect("token has a kid");
    let jwk = jwks.find(&kid).expect("kid is published");
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(alg);
    validation.set_audience(&[DEFAULT_CLIENT_ID]);
    validation.set_issuer(&[op.issuer()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    Ok(jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)?.claims)
}

/// The parts of a compact JWS, decoded without any verification.
fn parts(token: &str) -> (Value, Value, Vec<u8>) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    (
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap(),
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap(),
        URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    )
}

fn claims(token: &str) -> Value {
    parts(token).1
}

async fn start() -> OidcTestProvider {
    OidcTestProvider::start(OpOptions::default()).await
}

async fn start_at_now() -> OidcTestProvider {
    OidcTestProvider::start(OpOptions {
        now: Some(NOW),
        ..OpOptions::default()
    })
    .await
}

/// A hand-written HTTP/1.1 server: for every connection it reads the
/// request head, writes `parts` one by one (flushing each), then either
/// holds the connection open for a minute or closes it.
struct RawServer {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_server(parts: Vec<Vec<u8>>, hold_open: bool) -> RawServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let parts = parts.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                for part in parts {
                    if stream.write_all(&part).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
                if hold_open {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            });
        }
    });
    RawServer {
        port,
        connections,
        task,
    }
}

fn chunk(size: usize) -> Vec<u8> {
    let mut out = format!("{size:x}\r\n").into_bytes();
    out.extend(std::iter::repeat_n(b'x', size));
    out.extend_from_slice(b"\r\n");
    out
}

// ---------------------------------------------------------------- discovery and keys

#[tokio::test]
async fn discovery_document_is_served_and_consistent() {
    let op = start().await;
    let client = client();
    let issuer = op.issuer();
    assert_eq!(issuer, format!("http://127.0.0.1:{}", op.port()));

    let response = get(&client, &op.url(Endpoint::Discovery)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let doc = body_json(&response);
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["authorization_endpoint"], format!("{issuer}/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(doc["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(doc["userinfo_endpoint"], format!("{issuer}/userinfo"));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256"])
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(doc["scopes_supported"], json!(["openid", "email", "profile"]));
    assert_eq!(op.requests(Endpoint::Discovery), 1);
    assert_eq!(op.requests(Endpoint::Jwks), 0);
}

#[tokio::test]
async fn jwks_publishes_one_rsa_and_one_ec_signing_key() {
    let op = start().await;
    let client = client();
    let response = get(&client, &op.url(Endpoint::Jwks)).await;
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/jwk-set+json"
    );
    let jwks = body_json(&response);
    assert_eq!(jwks, op.jwks());
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], RSA_KID);
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["e"], "AQAB");
    // 2048-bit modulus: 256 bytes, 342 base64url characters.
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(keys[0]["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );
    assert_eq!(keys[1]["kid"], EC_KID);
    assert_eq!(keys[1]["kty"], "EC");
    assert_eq!(keys[1]["alg"], "ES256");
    assert_eq!(keys[1]["use"], "sig");
    assert_eq!(keys[1]["crv"], "P-256");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(keys[1]["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(keys[1]["y"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    // No private parts.
    for key in keys {
        assert!(key.get("d").is_none());
    }
    // A second provider shares the RSA key but generates its own EC key.
    let other = start().await;
    assert_eq!(other.jwks()["keys"][0], keys[0]);
    assert_ne!(other.jwks()["keys"][1]["x"], keys[1]["x"]);
}

// ---------------------------------------------------------------- authorize

#[tokio::test]
async fn authorize_redirects_with_code_state_and_iss() {
    let op = start().await;
    let client = client();
    let response = get(&client, &authorize_url(&op, &default_authorize_params())).await;
    let target = location(&response);
    assert_eq!(
        format!(
            "{}://{}{}",
            target.scheme(),
            target.host_str().unwrap(),
            target.path()
        ),
        DEFAULT_REDIRECT_URI
    );
    let params = query(&target);
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["code", "state", "iss"]);
    assert_eq!(URL_SAFE_NO_PAD.decode(&params[0].1).unwrap().len(), 32);
    assert_eq!(params[1].1, STATE);
    assert_eq!(params[2].1, op.issuer());
    assert_eq!(
        op.last_authorize_request().unwrap().params,
        default_authorize_params()
    );
    assert_eq!(op.requests(Endpoint::Authorize), 1);

    // Every code is new.
    let again = query(&location(
        &get(&client, &authorize_url(&op, &default_authorize_params())).await,
    ));
    assert_ne!(again[0].1, params[0].1);
}

#[tokio::test]
async fn authorize_refuses_unknown_clients_and_unregistered_redirect_uris_without_redirecting() {
    let op = start().await;
    let client = client();
    let cases = [
        authorize_params(&[("client_id", Some("nobody"))]),
        authorize_params(&[("client_id", None)]),
        authorize_params(&[("redirect_uri", Some("https://app.example/idp/callback/"))]),
        authorize_params(&[("redirect_uri", Some("https://app.example/idp/callback?x=1"))]),
        authorize_params(&[("redirect_uri", Some("https://evil.example/idp/callback"))]),
        authorize_params(&[("redirect_uri", None)]),
    ];
    for params in cases {
        let response = get(&client, &authorize_url(&op, &params)).await;
        assert_oauth_error(&response, StatusCode::BAD_REQUEST, "invalid_request");
        assert!(response.headers().get(header::LOCATION).is_none());
    }
    // A repeated parameter is refused too.
    let mut repeated = default_authorize_params();
    repeated.push(("redirect_uri".into(), "https://evil.example/cb".into()));
    let response = get(&client, &authorize_url(&op, &repeated)).await;
    assert_oauth_error(&response, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn authorize_reports_bad_requests_to_the_redirect_uri() {
    let op = start().await;
    let client = client();
    let cases = [
        (
            authorize_params(&[("response_type", Some("token"))]),
            "unsupported_response_type",
        ),
        (
            authorize_params(&[("scope", Some("email profile"))]),
            "invalid_scope",
        ),
        (
            authorize_params(&[("code_challenge_method", Some("plain"))]),
            "invalid_request",
        ),
        (
            authorize_params(&[("code_challenge_method", None)]),
            "invalid_request",
        ),
        (authorize_params(&[("code_challenge", None)]), "invalid_request"),
        (
            authorize_params(&[("code_challenge", Some("short"))]),
            "invalid_request",
        ),
    ];
    for (params, error) in cases {
        let params = query(&location(&get(&client, &authorize_url(&op, &params)).await));
        let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(get("error").as_deref(), Some(error));
        assert_eq!(get("state").as_deref(), Some(STATE));
        assert_eq!(get("iss"), Some(op.issuer()));
        assert_eq!(get("code"), None);
    }
}

// ---------------------------------------------------------------- token

#[tokio::test]
async fn code_exchange_with_the_right_verifier_returns_a_verifiable_id_token() {
    let op = start().await;
    let client = client();
    let tokens = sign_in(&op, &client).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    assert_eq!(tokens["scope"], "openid email profile");
    assert_eq!(tokens.as_object().unwrap().len(), 5);
    let token = tokens["id_token"].as_str().unwrap();
    assert_eq!(op.last_id_token().as_deref(), Some(token));

    let (header, _, _) = parts(token);
    assert_eq!(header, json!({"typ": "JWT", "alg": "RS256", "kid": RSA_KID}));
    let jwks = fetch_jwks(&op, &client).await;
    let claims = verify(&op, &jwks, token, Algorithm::RS256).unwrap();
    assert_eq!(claims["iss"], op.issuer());
    assert_eq!(claims["sub"], "alice-sub");
    assert_eq!(claims["aud"], DEFAULT_CLIENT_ID);
    assert_eq!(claims["nonce"], NONCE);
    assert_eq!(claims["email"], "alice@fabrikam.example");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["given_name"], "Alice");
    assert_eq!(claims["family_name"], "Example");
    assert!(claims.get("tid").is_none());
    assert!(claims.get("hd").is_none());
    assert!(claims.get("nbf").is_none());
    assert!(claims.get("azp").is_none());
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + TOKEN_LIFETIME);
    assert!((iat - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);

    // The token response is not cacheable.
    let response = redeem(&op, &client, &code(&op, &client).await, VERIFIER).await;
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[header::PRAGMA], "no-cache");
}

#[tokio::test]
async fn es256_tokens_verify_against_the_published_ec_key() {
    let op = start().await;
    op.set_signing_alg(SigningAlg::Es256);
    let client = client();
    let token = id_token(&op, &client).await;
    let (header, _, signature) = parts(&token);
    assert_eq!(header, json!({"typ": "JWT", "alg": "ES256", "kid": EC_KID}));
    assert_eq!(signature.len(), 64);
    let jwks = fetch_jwks(&op, &client).await;
    let claims = verify(&op, &jwks, &token, Algorithm::ES256).unwrap();
    assert_eq!(claims["sub"], "alice-sub");
    // Pinned to RS256, the same token is refused.
    assert!(verify(&op, &jwks, &token, Algorithm::RS256).is_err());
}

#[tokio::test]
async fn the_provider_clock_sets_iat_and_exp() {
    let op = start_at_now().await;
    let client = client();
    let token = id_token(&op, &client).await;
    assert_eq!(claims(&token)["iat"], NOW);
    assert_eq!(claims(&token)["exp"], NOW + TOKEN_LIFETIME);
    op.advance(42);
    assert_eq!(op.now(), NOW + 42);
    let token = id_token(&op, &client).await;
    assert_eq!(claims(&token)["iat"], NOW + 42);
    op.set_now(5);
    assert_eq!(claims(&op.id_token_for(DEFAULT_CLIENT_ID, None))["iat"], 5);
    op.use_system_clock();
    assert!((op.now() - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
}

#[tokio::test]
async fn codes_expire_by_the_provider_clock() {
    let op = start_at_now().await;
    let client = client();
    let code = code(&op, &client).await;
    op.advance(CODE_LIFETIME + 1);
    assert_oauth_error(
        &redeem(&op, &client, &code, VERIFIER).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

#[tokio::test]
async fn a_wrong_or_missing_verifier_is_invalid_grant_and_spends_the_code() {
    let op = start().await;
    let client = client();
    let code = code(&op, &client).await;
    let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
    assert_oauth_error(
        &redeem(&op, &client, &code, wrong).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    // The code is gone, even with the right verifier now.
    assert_oauth_error(
        &redeem(&op, &client, &code, VERIFIER).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );

    let code = self::code(&op, &client).await;
    let mut form = token_form(&code, VERIFIER);
    form.retain(|(n, _)| n != "code_verifier");
    let response = post_form(
        &client,
        &op.url(Endpoint::Token),
        &form,
        Some(basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)),
    )
    .await;
    assert_oauth_error(&response, StatusCode::BAD_REQUEST, "invalid_grant");

    // The challenge itself is not a verifier.
    let code = self::code(&op, &client).await;
    assert_oauth_error(
        &redeem(&op, &client, &code, CHALLENGE).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

#[tokio::test]
async fn a_code_is_redeemed_once() {
    let op = start().await;
    let client = client();
    let code = code(&op, &client).await;
    assert_eq!(
        redeem(&op, &client, &code, VERIFIER).await.status(),
        StatusCode::OK
    );
    assert_oauth_error(
        &redeem(&op, &client, &code, VERIFIER).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_oauth_error(
        &redeem(&op, &client, "made-up-code", VERIFIER).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(op.requests(Endpoint::Token), 3);
}

#[tokio::test]
async fn the_redirect_uri_must_match_the_one_authorized() {
    let op = OidcTestProvider::start(OpOptions {
        clients: vec![TestClient::new(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            &[DEFAULT_REDIRECT_URI, "https://app.example/other"],
        )],
        ..OpOptions::default()
    })
    .await;
    let client = client();
    let code = code(&op, &client).await;
    let mut form = token_form(&code, VERIFIER);
    form[2].1 = "https://app.example/other".into();
    let response = post_form(
        &client,
        &op.url(Endpoint::Token),
        &form,
        Some(basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)),
    )
    .await;
    assert_oauth_error(&response, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn a_code_belongs_to_the_client_it_was_issued_to() {
    let op = start().await;
    op.add_client(TestClient::new(
        "second",
        "second-secret",
        &[DEFAULT_REDIRECT_URI],
    ));
    let client = client();
    let code = code(&op, &client).await;
    let response = post_form(
        &client,
        &op.url(Endpoint::Token),
        &token_form(&code, VERIFIER),
        Some(basic("second", "second-secret")),
    )
    .await;
    assert_oauth_error(&response, StatusCode::BAD_REQUEST, "invalid_grant");
    // ... and it is still there for its own client.
    assert_eq!(
        redeem(&op, &client, &code, VERIFIER).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn client_secret_basic_and_post_are_accepted_and_wrong_secrets_rejected() {
    let op = start().await;
    let client = client();
    let token_url = op.url(Endpoint::Token);

    // client_secret_basic
    let code = code(&op, &client).await;
    let response = post_form(
        &client,
        &token_url,
        &token_form(&code, VERIFIER),
        Some(basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let recorded = op.last_token_request().unwrap();
    assert_eq!(
        recorded.authorization,
        Some(basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
    );
    assert_eq!(recorded.params, token_form(&code, VERIFIER));
    assert_eq!(recorded.param("code_verifier"), Some(VERIFIER));

    // client_secret_post
    let code = self::code(&op, &client).await;
    let mut form = token_form(&code, VERIFIER);
    form.push(("client_id".into(), DEFAULT_CLIENT_ID.into()));
    form.push(("client_secret".into(), DEFAULT_CLIENT_SECRET.into()));
    let response = post_form(&client, &token_url, &form, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let recorded = op.last_token_request().unwrap();
    assert_eq!(recorded.authorization, None);
    assert_eq!(recorded.param("client_secret"), Some(DEFAULT_CLIENT_SECRET));

    // Wrong secrets, either way; the code survives for the real client.
    let code = self::code(&op, &client).await;
    let response = post_form(
        &client,
        &token_url,
        &token_form(&code, VERIFIER),
        Some(basic(DEFAULT_CLIENT_ID, "wrong")),
    )
    .await;
    assert_oauth_error(&response, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Basic realm=\"oidc-test-provider\""
    );
    let mut form = token_form(&code, VERIFIER);
    form.push(("client_id".into(), DEFAULT_CLIENT_ID.into()));
    form.push(("client_secret".into(), "wrong".into()));
    assert_oauth_error(
        &post_form(&client, &token_url, &form, None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    // No authentication at all.
    assert_oauth_error(
        &post_form(&client, &token_url, &token_form(&code, VERIFIER), None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    // Both methods at once.
    let mut form = token_form(&code, VERIFIER);
    form.push(("client_secret".into(), DEFAULT_CLIENT_SECRET.into()));
    assert_oauth_error(
        &post_form(
            &client,
            &token_url,
            &form,
            Some(basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_eq!(
        redeem(&op, &client, &code, VERIFIER).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_before_base64() {
    let id = "client:with space";
    let secret = "s&c=r+t%/é";
    let op = OidcTestProvider::start(OpOptions {
        clients: vec![TestClient::new(id, secret, &[DEFAULT_REDIRECT_URI])],
        ..OpOptions::default()
    })
    .await;
    let client = client();
    let params = authorize_params(&[("client_id", Some(id))]);
    let target = location(&get(&client, &authorize_url(&op, &params)).await);
    let code = query(&target)[0].1.clone();
    let token_url = op.url(Endpoint::Token);

    // Unencoded: `client` / `with space:s&c=r+t%/é` is not the client.
    let raw = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    assert_oauth_error(
        &post_form(&client, &token_url, &token_form(&code, VERIFIER), Some(raw)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let response = post_form(
        &client,
        &token_url,
        &token_form(&code, VERIFIER),
        Some(basic(id, secret)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        claims(body_json(&response)["id_token"].as_str().unwrap())["aud"],
        id
    );
}

#[tokio::test]
async fn userinfo_answers_the_bearer_tokens_user() {
    let op = start().await;
    let mut user = TestUser::new("bob-sub", "bob@contoso.example");
    user.tid = Some("tenant-1".into());
    user.hd = Some("contoso.example".into());
    user.extra_claims.insert("groups".into(), json!(["a", "b"]));
    op.set_user(user);
    let client = client();
    let tokens = sign_in(&op, &client).await;
    let access = tokens["access_token"].as_str().unwrap();
    // A later user change does not affect tokens already issued.
    op.set_user(TestUser::default());

    let mut request = request(Method::GET, &op.url(Endpoint::Userinfo), Vec::new());
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, format!("Bearer {access}").parse().unwrap());
    let response = client.execute(request, limits()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body_json(&response),
        json!({
            "sub": "bob-sub",
            "email": "bob@contoso.example",
            "email_verified": true,
            "name": "Test User",
            "given_name": "Test",
            "family_name": "User",
            "tid": "tenant-1",
            "hd": "contoso.example",
            "groups": ["a", "b"],
        })
    );
    let id_claims = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_claims["tid"], "tenant-1");
    assert_eq!(id_claims["hd"], "contoso.example");
    assert_eq!(id_claims["groups"], json!(["a", "b"]));

    // Without or with an unknown token: 401.
    let response = get(&client, &op.url(Endpoint::Userinfo)).await;
    assert_oauth_error(&response, StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    let mut request = self::request(Method::GET, &op.url(Endpoint::Userinfo), Vec::new());
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
    assert_eq!(
        client.execute(request, limits()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(op.requests(Endpoint::Userinfo), 3);

    // Misbehaving: another subject.
    op.set_mode(Misbehaviour::UserinfoOtherSub);
    let mut request = self::request(Method::GET, &op.url(Endpoint::Userinfo), Vec::new());
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, format!("Bearer {access}").parse().unwrap());
    let body = body_json(&client.execute(request, limits()).await.unwrap());
    assert_eq!(body["sub"], OTHER_SUB);
    assert_eq!(body["email"], "bob@contoso.example");
}

// ---------------------------------------------------------------- misbehaviour

#[tokio::test]
async fn claim_misbehaviours_change_exactly_their_claim() {
    let op = start_at_now().await;
    let normal = claims(&op.id_token_for(DEFAULT_CLIENT_ID, Some(NONCE)));
    assert_eq!(
        normal,
        json!({
            "iss": op.issuer(), "sub": "alice-sub", "aud": DEFAULT_CLIENT_ID,
            "exp": NOW + 300, "iat": NOW, "nonce": NONCE,
            "email": "alice@fabrikam.example", "email_verified": true,
            "name": "Alice Example", "given_name": "Alice", "family_name": "Example",
        })
    );
    let with = |mode: Misbehaviour| {
        op.set_mode(mode);
        claims(&op.id_token_for(DEFAULT_CLIENT_ID, Some(NONCE)))
    };
    let changed = |changes: Value, removed: &[&str]| {
        let mut expected = normal.clone();
        for (name, value) in changes.as_object().unwrap() {
            expected[name] = value.clone();
        }
        for name in removed {
            expected.as_object_mut().unwrap().remove(*name);
        }
        expected
    };
    assert_eq!(
        with(Misbehaviour::WrongIssuer),
        changed(json!({"iss": WRONG_ISSUER}), &[])
    );
    assert_eq!(
        with(Misbehaviour::WrongAudience),
        changed(json!({"aud": WRONG_AUDIENCE}), &[])
    );
    assert_eq!(
        with(Misbehaviour::ExtraAudience { azp: false }),
        changed(json!({"aud": [DEFAULT_CLIENT_ID, EXTRA_AUDIENCE]}), &[])
    );
    assert_eq!(
        with(Misbehaviour::ExtraAudience { azp: true }),
        changed(
            json!({"aud": [DEFAULT_CLIENT_ID, EXTRA_AUDIENCE], "azp": DEFAULT_CLIENT_ID}),
            &[]
        )
    );
    assert_eq!(with(Misbehaviour::MissingSub), changed(json!({}), &["sub"]));
    assert_eq!(with(Misbehaviour::MissingIat), changed(json!({}), &["iat"]));
    assert_eq!(with(Misbehaviour::MissingExp), changed(json!({}), &["exp"]));
    assert_eq!(with(Misbehaviour::MissingNonce), changed(json!({}), &["nonce"]));
    assert_eq!(
        with(Misbehaviour::WrongNonce),
        changed(json!({"nonce": WRONG_NONCE}), &[])
    );
    assert_eq!(
        with(Misbehaviour::IatInFuture),
        changed(json!({"iat": NOW + 600, "exp": NOW + 900}), &[])
    );
    assert_eq!(
        with(Misbehaviour::Expired),
        changed(json!({"iat": NOW - 900, "exp": NOW - 600}), &[])
    );
    assert_eq!(
        with(Misbehaviour::NbfInFuture),
        changed(json!({"nbf": NOW + 600}), &[])
    );

    // Modes combine and clear.
    op.set_mode(Misbehaviour::WrongIssuer);
    op.add_mode(Misbehaviour::MissingSub);
    assert_eq!(op.modes(), [Misbehaviour::WrongIssuer, Misbehaviour::MissingSub]);
    assert_eq!(
        claims(&op.id_token_for(DEFAULT_CLIENT_ID, Some(NONCE))),
        changed(json!({"iss": WRONG_ISSUER}), &["sub"])
    );
    op.clear_modes();
    assert_eq!(claims(&op.id_token_for(DEFAULT_CLIENT_ID, Some(NONCE))), normal);
}

#[tokio::test]
async fn misbehaving_tokens_come_out_of_the_token_endpoint_too() {
    let op = start().await;
    let client = client();
    op.set_mode(Misbehaviour::WrongNonce);
    let token = id_token(&op, &client).await;
    assert_eq!(claims(&token)["nonce"], WRONG_NONCE);
    let jwks = fetch_jwks(&op, &client).await;
    // Correctly signed, otherwise valid.
    assert!(verify(&op, &jwks, &token, Algorithm::RS256).is_ok());

    op.set_mode(Misbehaviour::WrongAudience);
    let token = id_token(&op, &client).await;
    let error = verify(&op, &jwks, &token, Algorithm::RS256).unwrap_err();
    assert_eq!(error.kind(), &jsonwebtoken::errors::ErrorKind::InvalidAudience);
}

#[tokio::test]
async fn bad_signature_flips_one_byte_of_an_otherwise_valid_token() {
    let op = start_at_now().await;
    // RS256 signatures are deterministic: the same claims sign the same.
    let good = op.id_token_for(DEFAULT_CLIENT_ID, Some(NONCE));
    op.set_mode(Misbehaviour::BadSignature);
    let bad = op.id_token_for(DEFAULT_CLIENT_ID, Some(NONCE));
    let (good_header, good_claims, good_signature) = parts(&good);
    let (bad_header, bad_claims, bad_signature) = parts(&bad);
    assert_eq!(good_header, bad_header);
    assert_eq!(good_claims, bad_claims);
    assert_eq!(good_signature.len(), bad_signature.len());
    assert_eq!(bad_signature[0], good_signature[0] ^ 0x01);
    assert_eq!(bad_signature[1..], good_signature[1..]);

    let jwks: JwkSet = serde_json::from_value(op.jwks()).unwrap();
    let key = DecodingKey::from_jwk(jwks.find(RSA_KID).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[DEFAULT_CLIENT_ID]);
    validation.validate_exp = false;
    assert!(jsonwebtoken::decode::<Value>(&good, &key, &validation).is_ok());
    let error = jsonwebtoken::decode::<Value>(&bad, &key, &validation).unwrap_err();
    assert_eq!(error.kind(), &jsonwebtoken::errors::ErrorKind::InvalidSignature);
}

#[tokio::test]
async fn alg_none_tokens_have_no_signature_part() {
    let op = start().await;
    op.set_mode(Misbehaviour::AlgNone);
    let client = client();
    let token = id_token(&op, &client).await;
    assert!(token.ends_with('.'));
    let (header, claims, signature) = parts(&token);
    assert_eq!(header, json!({"alg": "none", "typ": "JWT", "kid": RSA_KID}));
    assert_eq!(claims["sub"], "alice-sub");
    assert_eq!(claims["nonce"], NONCE);
    assert!(signature.is_empty());
    // jsonwebtoken does not even parse the header.
    assert!(jsonwebtoken::decode_header(&token).is_err());
}

#[tokio::test]
async fn hs256_key_confusion_tokens_verify_with_hmac_over_the_public_key() {
    let op = start().await;
    op.set_mode(Misbehaviour::Hs256KeyConfusion);
    let client = client();
    let token = id_token(&op, &client).await;
    let (header, _, signature) = parts(&token);
    assert_eq!(header, json!({"typ": "JWT", "alg": "HS256", "kid": RSA_KID}));
    assert_eq!(signature.len(), 32);

    let pem = op.rsa_public_key_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[DEFAULT_CLIENT_ID]);
    let claims =
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_secret(pem.as_bytes()), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], "alice-sub");
    // The public key it abuses is the published one.
    {
        use rsa::pkcs8::DecodePublicKey as _;
        use rsa::traits::PublicKeyParts as _;
        let public = rsa::RsaPublicKey::from_public_key_pem(&pem).unwrap();
        let published = &op.jwks()["keys"][0];
        assert_eq!(published["kid"], RSA_KID);
        assert_eq!(published["n"], URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()));
        assert_eq!(published["e"], URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()));
    }
    let jwks = fetch_jwks(&op, &client).await;
    let error = verify(&op, &jwks, &token, Algorithm::RS256).unwrap_err();
    assert_eq!(error.kind(), &jsonwebtoken::errors::ErrorKind::InvalidAlgorithm);
}

#[tokio::test]
async fn omitted_kid_with_both_keys_or_a_single_key_published() {
    let op = start().await;
    let client = client();
    op.set_mode(Misbehaviour::OmitKid);
    let token = id_token(&op, &client).await;
    let (header, _, _) = parts(&token);
    assert_eq!(header, json!({"typ": "JWT", "alg": "RS256"}));
    assert_eq!(fetch_jwks(&op, &client).await.keys.len(), 2);

    op.add_mode(Misbehaviour::SingleKeyJwks);
    let jwks = fetch_jwks(&op, &client).await;
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), Some(RSA_KID));
    // The only key verifies it.
    let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[DEFAULT_CLIENT_ID]);
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &validation).is_ok());

    op.set_signing_alg(SigningAlg::Es256);
    let jwks = fetch_jwks(&op, &client).await;
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), Some(EC_KID));
    let (header, _, _) = parts(&id_token(&op, &client).await);
    assert_eq!(header, json!({"typ": "JWT", "alg": "ES256"}));
}

#[tokio::test]
async fn rotated_key_is_absent_from_the_jwks_until_published() {
    let op = start().await;
    let client = client();
    op.set_mode(Misbehaviour::RotatedKey);
    let token = id_token(&op, &client).await;
    let (header, _, _) = parts(&token);
    assert_eq!(header["kid"], RSA_ROTATED_KID);
    let jwks = fetch_jwks(&op, &client).await;
    assert!(jwks.find(RSA_ROTATED_KID).is_none());
    assert_eq!(jwks.keys.len(), 2);
    // Not signed by the primary key either.
    let primary = DecodingKey::from_jwk(jwks.find(RSA_KID).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[DEFAULT_CLIENT_ID]);
    assert!(jsonwebtoken::decode::<Value>(&token, &primary, &validation).is_err());

    op.publish_rotated_key();
    let jwks = fetch_jwks(&op, &client).await;
    assert_eq!(jwks.keys.len(), 4);
    assert!(jwks.find(RSA_KID).is_some());
    assert!(jwks.find(EC_ROTATED_KID).is_some());
    assert_eq!(
        verify(&op, &jwks, &token, Algorithm::RS256).unwrap()["sub"],
        "alice-sub"
    );
    assert_eq!(op.requests(Endpoint::Jwks), 2);

    op.set_signing_alg(SigningAlg::Es256);
    let token = id_token(&op, &client).await;
    assert_eq!(parts(&token).0["kid"], EC_ROTATED_KID);
    assert!(verify(&op, &jwks, &token, Algorithm::ES256).is_ok());
}

#[tokio::test]
async fn unpublished_key_is_never_published() {
    let op = start().await;
    let client = client();
    op.set_mode(Misbehaviour::UnpublishedKey);
    op.publish_rotated_key();
    let token = id_token(&op, &client).await;
    assert_eq!(parts(&token).0["kid"], RSA_UNPUBLISHED_KID);
    let jwks = fetch_jwks(&op, &client).await;
    assert!(jwks.find(RSA_UNPUBLISHED_KID).is_none());
    op.set_signing_alg(SigningAlg::Es256);
    assert_eq!(parts(&id_token(&op, &client).await).0["kid"], EC_UNPUBLISHED_KID);
    let keys: Vec<String> = fetch_jwks(&op, &client)
        .await
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert_eq!(keys, [RSA_KID, EC_KID, RSA_ROTATED_KID, EC_ROTATED_KID]);
}

#[tokio::test]
async fn discovery_can_name_another_issuer() {
    let op = start().await;
    op.set_mode(Misbehaviour::DiscoveryWrongIssuer);
    let doc = body_json(&get(&client(), &op.url(Endpoint::Discovery)).await);
    assert_eq!(doc["issuer"], WRONG_ISSUER);
    assert_eq!(doc["token_endpoint"], op.url(Endpoint::Token));
    // ID tokens keep the real issuer.
    assert_eq!(
        claims(&op.id_token_for(DEFAULT_CLIENT_ID, None))["iss"],
        op.issuer()
    );
}

#[tokio::test]
async fn authorize_can_deny_access() {
    let op = start().await;
    op.set_mode(Misbehaviour::AuthorizeAccessDenied);
    let target = location(&get(&client(), &authorize_url(&op, &default_authorize_params())).await);
    assert_eq!(
        query(&target),
        pairs(&[
            ("error", "access_denied"),
            ("error_description", ACCESS_DENIED_DESCRIPTION),
            ("state", STATE),
            ("iss", &op.issuer()),
        ])
    );
}

#[tokio::test]
async fn token_endpoint_can_answer_invalid_grant_and_keep_the_code() {
    let op = start().await;
    let client = client();
    let code = code(&op, &client).await;
    op.set_mode(Misbehaviour::TokenInvalidGrant);
    let response = redeem(&op, &client, &code, VERIFIER).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(&response),
        json!({"error": "invalid_grant", "error_description": INVALID_GRANT_DESCRIPTION})
    );
    op.clear_modes();
    assert_eq!(
        redeem(&op, &client, &code, VERIFIER).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn slow_mode_makes_the_client_time_out() {
    let op = start().await;
    op.set_mode(Misbehaviour::Slow(Duration::from_secs(3)));
    let client = client();
    let started = Instant::now();
    let result = client
        .execute(
            request(Method::GET, &op.url(Endpoint::Discovery), Vec::new()),
            HttpLimits::new(Duration::from_millis(300), 1 << 20),
        )
        .await;
    assert_eq!(result.unwrap_err(), HttpError::Timeout);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(op.requests(Endpoint::Discovery), 1);

    // Every endpoint is slow, and a patient client gets the answer.
    op.set_mode(Misbehaviour::Slow(Duration::from_millis(200)));
    let started = Instant::now();
    let response = get(&client, &op.url(Endpoint::Jwks)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn oversized_jwks_triggers_body_too_large() {
    let op = start().await;
    op.set_mode(Misbehaviour::OversizedJwks);
    let client = client();
    let result = client
        .execute(
            request(Method::GET, &op.url(Endpoint::Jwks), Vec::new()),
            HttpLimits::new(Duration::from_secs(10), 64 * 1024),
        )
        .await;
    assert_eq!(result.unwrap_err(), HttpError::BodyTooLarge { limit: 64 * 1024 });

    // With room for it, it is a real JWKS over 2 MiB with the real keys first.
    let response = get(&client, &op.url(Endpoint::Jwks)).await;
    assert!(response.body().len() > OVERSIZED_JWKS_BYTES);
    let length: usize = response.headers()[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, response.body().len());
    let jwks: JwkSet = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), Some(RSA_KID));
    assert!(jwks.keys.len() > 1000);
}

#[tokio::test]
async fn request_counts_are_per_endpoint() {
    let op = start().await;
    let client = client();
    get(&client, &op.url(Endpoint::Discovery)).await;
    get(&client, &op.url(Endpoint::Jwks)).await;
    get(&client, &op.url(Endpoint::Jwks)).await;
    sign_in(&op, &client).await;
    assert_eq!(op.requests(Endpoint::Discovery), 1);
    assert_eq!(op.requests(Endpoint::Jwks), 2);
    assert_eq!(op.requests(Endpoint::Authorize), 1);
    assert_eq!(op.requests(Endpoint::Token), 1);
    assert_eq!(op.requests(Endpoint::Userinfo), 0);
    op.reset_request_counts();
    assert_eq!(op.requests(Endpoint::Jwks), 0);
}

#[tokio::test]
async fn the_server_stops_on_shutdown_and_on_drop() {
    let client = client();
    let op = start().await;
    let url = op.url(Endpoint::Discovery);
    assert_eq!(get(&client, &url).await.status(), StatusCode::OK);
    op.shutdown().await;
    let fresh = self::client();
    let error = fresh
        .execute(request(Method::GET, &url, Vec::new()), limits())
        .await
        .unwrap_err();
    assert!(matches!(error, HttpError::Connect { .. }), "{error:?}");

    let op = start().await;
    let url = op.url(Endpoint::Discovery);
    drop(op);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let error = self::client()
        .execute(request(Method::GET, &url, Vec::new()), limits())
        .await
        .unwrap_err();
    assert!(matches!(error, HttpError::Connect { .. }), "{error:?}");
}

// ---------------------------------------------------------------- ReqwestClient

#[tokio::test]
async fn reqwest_client_returns_status_headers_and_body_and_sends_method_and_body() {
    let op = start().await;
    let client = client();
    // POST with a form body and no credentials: the provider's 401 comes back whole.
    let mut request = request(
        Method::POST,
        &op.url(Endpoint::Token),
        b"grant_type=authorization_code".to_vec(),
    );
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let response = client.execute(request, limits()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Basic realm=\"oidc-test-provider\""
    );
    assert_eq!(
        body_json(&response),
        json!({"error": "invalid_client", "error_description": "client authentication is required"})
    );
    assert_eq!(
        op.last_token_request().unwrap().params,
        pairs(&[("grant_type", "authorization_code")])
    );
}

#[tokio::test]
async fn reqwest_client_does_not_follow_redirects() {
    let op = start().await;
    let client = client();
    // The provider's own 302 to the (unreachable) app comes back as it is.
    let response = get(&client, &authorize_url(&op, &default_authorize_params())).await;
    assert_eq!(response.status(), StatusCode::FOUND);

    // A redirect to a live endpoint is not followed either.
    let jwks = op.url(Endpoint::Jwks);
    let server = raw_server(
        vec![
            format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {jwks}\r\nContent-Length: 0\r\n\r\n")
                .into_bytes(),
        ],
        false,
    )
    .await;
    let response = client
        .execute(
            request(
                Method::POST,
                &format!("http://127.0.0.1:{}/start", server.port),
                b"secret".to_vec(),
            ),
            limits(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()[header::LOCATION], jwks.as_str());
    assert!(response.body().is_empty());
    assert_eq!(op.requests(Endpoint::Jwks), 0);
}

#[tokio::test]
async fn reqwest_client_times_out_a_slow_body_too() {
    // Headers at once, then the body stalls: the deadline covers the body.
    let server = raw_server(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec()],
        true,
    )
    .await;
    let started = Instant::now();
    let result = client()
        .execute(
            request(
                Method::GET,
                &format!("http://127.0.0.1:{}/", server.port),
                Vec::new(),
            ),
            HttpLimits::new(Duration::from_millis(300), 1024),
        )
        .await;
    assert_eq!(result.unwrap_err(), HttpError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn reqwest_client_refuses_a_declared_content_length_over_the_limit_before_reading() {
    // The server declares 10 MB and then sends nothing: only an up-front
    // check can answer BodyTooLarge instead of Timeout.
    let server = raw_server(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_vec()],
        true,
    )
    .await;
    let result = client()
        .execute(
            request(
                Method::GET,
                &format!("http://127.0.0.1:{}/", server.port),
                Vec::new(),
            ),
            HttpLimits::new(Duration::from_secs(5), 1000),
        )
        .await;
    assert_eq!(result.unwrap_err(), HttpError::BodyTooLarge { limit: 1000 });
}

#[tokio::test]
async fn reqwest_client_stops_reading_a_chunked_body_once_over_the_limit() {
    // 3 × 4096 bytes, then the server stalls without ending the body: the
    // client must give up as soon as it has more than the limit.
    let server = raw_server(
        vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            chunk(4096),
            chunk(4096),
            chunk(4096),
        ],
        true,
    )
    .await;
    let started = Instant::now();
    let result = client()
        .execute(
            request(
                Method::GET,
                &format!("http://127.0.0.1:{}/", server.port),
                Vec::new(),
            ),
            HttpLimits::new(Duration::from_secs(5), 10_000),
        )
        .await;
    assert_eq!(result.unwrap_err(), HttpError::BodyTooLarge { limit: 10_000 });
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn reqwest_client_accepts_a_chunked_body_of_exactly_the_limit() {
    let server = raw_server(
        vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            chunk(6000),
            chunk(4000),
            b"0\r\n\r\n".to_vec(),
        ],
        false,
    )
    .await;
    let response = client()
        .execute(
            request(
                Method::GET,
                &format!("http://127.0.0.1:{}/", server.port),
                Vec::new(),
            ),
            HttpLimits::new(Duration::from_secs(5), 10_000),
        )
        .await
        .unwrap();
    assert_eq!(response.body().len(), 10_000);
    assert!(response.body().iter().all(|b| *b == b'x'));

    let server = raw_server(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10001\r\n\r\n".to_vec()],
        true,
    )
    .await;
    let result = client()
        .execute(
            request(
                Method::GET,
                &format!("http://127.0.0.1:{}/", server.port),
                Vec::new(),
            ),
            HttpLimits::new(Duration::from_secs(5), 10_000),
        )
        .await;
    assert_eq!(result.unwrap_err(), HttpError::BodyTooLarge { limit: 10_000 });
}

#[tokio::test]
async fn reqwest_client_reports_connection_refused_as_connect_without_the_query() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://user:pw@127.0.0.1:{port}/private/path?token=s3cr3t-query");
    let error = client()
        .execute(request(Method::GET, &url, Vec::new()), limits())
        .await
        .unwrap_err();
    let HttpError::Connect { message } = &error else {
        panic!("expected Connect, got {error:?}");
    };
    assert!(message.starts_with(&format!("127.0.0.1:{port}: ")), "{message}");
    assert!(message.to_lowercase().contains("connection refused"), "{message}");
    for secret in ["s3cr3t", "token", "private", "pw@", "user"] {
        assert!(!message.contains(secret), "{message}");
        assert!(!error.to_string().contains(secret), "{error}");
    }
}

#[tokio::test]
async fn reqwest_client_reports_a_failed_tls_handshake_as_connect() {
    // https to a plain-http server: the handshake fails, nothing is delivered.
    let op = start().await;
    let url = format!("https://127.0.0.1:{}/token?client_secret=s3cr3t", op.port());
    let error = client()
        .execute(
            request(Method::POST, &url, b"client_secret=s3cr3t".to_vec()),
            limits(),
        )
        .await
        .unwrap_err();
    let HttpError::Connect { message } = &error else {
        panic!("expected Connect, got {error:?}");
    };
    assert!(
        message.starts_with(&format!("127.0.0.1:{}: ", op.port())),
        "{message}"
    );
    assert!(!message.contains("s3cr3t"), "{message}");
    assert_eq!(op.requests(Endpoint::Token), 0);
}

#[tokio::test]
async fn reqwest_client_rejects_relative_urls_as_other() {
    let error = client()
        .execute(request(Method::GET, "/relative?secret=1", Vec::new()), limits())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, HttpError::Other { message } if !message.contains("secret")),
        "{error:?}"
    );
}

#[tokio::test]
async fn reqwest_client_never_sends_without_the_certificate_a_request_asks_for() {
    let op = start().await;
    let client = ReqwestClient::builder()
        .client_certificate("approvals-cert", CLIENT_IDENTITY_PEM.as_bytes())
        .unwrap()
        .no_proxy()
        .build()
        .unwrap();
    assert_eq!(
        client.client_certificate_names().collect::<Vec<_>>(),
        ["approvals-cert"]
    );

    let mut unknown = request(Method::GET, &op.url(Endpoint::Discovery), Vec::new());
    unknown
        .extensions_mut()
        .insert(ClientCertificate::new("other-cert"));
    assert_eq!(
        client.execute(unknown, limits()).await.unwrap_err(),
        HttpError::Connect {
            message: "client certificate `other-cert` is not configured".into()
        }
    );
    // A plain client has no certificates at all.
    let mut asks = request(Method::GET, &op.url(Endpoint::Discovery), Vec::new());
    asks.extensions_mut()
        .insert(ClientCertificate::new("approvals-cert"));
    assert!(matches!(
        self::client().execute(asks, limits()).await,
        Err(HttpError::Connect { .. })
    ));
    assert_eq!(op.requests(Endpoint::Discovery), 0);

    // The configured one goes out (over plain http the certificate is moot,
    // but the request is sent by that certificate's client).
    let mut known = request(Method::GET, &op.url(Endpoint::Discovery), Vec::new());
    known
        .extensions_mut()
        .insert(ClientCertificate::new("approvals-cert"));
    assert_eq!(
        client.execute(known, limits()).await.unwrap().status(),
        StatusCode::OK
    );
    // And requests without the extension use the plain client.
    assert_eq!(
        get(&client, &op.url(Endpoint::Discovery)).await.status(),
        StatusCode::OK
    );
    assert_eq!(op.requests(Endpoint::Discovery), 2);
}

#[tokio::test]
async fn reqwest_client_builder_rejects_bad_certificates_without_echoing_them() {
    let not_pem = ReqwestClient::builder()
        .client_certificate(
            "c1",
            b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
    assert!(matches!(
        &not_pem,
        ConfigError::Invalid {
            field: "client_certificate",
            ..
        }
    ));
    assert!(not_pem.to_string().contains("`c1`"), "{not_pem}");
    assert!(!not_pem.to_string().contains("not base64"), "{not_pem}");

    // A key without its certificate.
    let key_only = CLIENT_IDENTITY_PEM
        .split("-----BEGIN CERTIFICATE-----")
        .next()
        .unwrap();
    assert!(matches!(
        ReqwestClient::builder().client_certificate("c2", key_only.as_bytes()),
        Err(ConfigError::Invalid {
            field: "client_certificate",
            ..
        })
    ));

    let twice = ReqwestClient::builder()
        .client_certificate("c3", CLIENT_IDENTITY_PEM.as_bytes())
        .unwrap()
        .client_certificate("c3", CLIENT_IDENTITY_PEM.as_bytes())
        .unwrap_err();
    assert_eq!(
        twice,
        ConfigError::Invalid {
            field: "client_certificate",
            reason: "certificate `c3` is configured twice".into()
        }
    );
    assert!(matches!(
        ReqwestClient::builder().client_certificate("", CLIENT_IDENTITY_PEM.as_bytes()),
        Err(ConfigError::Invalid {
            field: "client_certificate",
            ..
        })
    ));
}

#[tokio::test]
async fn reqwest_client_debug_shows_names_not_keys() {
    let builder = ReqwestClient::builder()
        .client_certificate("approvals-cert", CLIENT_IDENTITY_PEM.as_bytes())
        .unwrap();
    let builder_debug = format!("{builder:?}");
    let client = builder.build().unwrap();
    let client_debug = format!("{client:?}");
    for debug in [&builder_debug, &client_debug] {
        assert!(debug.contains("approvals-cert"), "{debug}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        assert!(!debug.contains("MIGHAgEA"), "{debug}");
    }
    assert_eq!(
        client_debug,
        "ReqwestClient { client_certificates: [\"approvals-cert\"], .. }"
    );
    let plain = ReqwestClient::new().unwrap();
    assert_eq!(
        format!("{plain:?}"),
        "ReqwestClient { client_certificates: [], .. }"
    );
}

#[tokio::test]
async fn reqwest_client_is_object_safe_and_shareable_across_tasks() {
    let op = start().await;
    let client: Arc<dyn HttpClient> = Arc::new(client());
    let url = op.url(Endpoint::Jwks);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            client
                .execute(request(Method::GET, &url, Vec::new()), limits())
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(op.requests(Endpoint::Jwks), 8);
}

#[tokio::test]
async fn raw_server_counts_connections() {
    // The helper itself: one connection per request when the server closes.
    let server = raw_server(
        vec![b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_vec()],
        false,
    )
    .await;
    let client = client();
    for _ in 0..2 {
        let response = get(&client, &format!("http://127.0.0.1:{}/", server.port)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}
