//! Benchmarks of ID token validation with the signing keys already in
//! memory (no HTTP in the measured loop), beside the raw jsonwebtoken decode
//! of the same token.
//!
//! - `id_token_validate_rs256`: one [`IdTokenValidator::validate`] of an
//!   RS256 (2048-bit) ID token: the header's `alg` and `kid`, the key chosen
//!   from a two-key set, the signature, then `iss`, `aud`, `azp`, `exp`,
//!   `iat`, `nbf`, `nonce`, `sub` and the profile claims, returning the
//!   [`ExternalIdentity`](guestpass::idp::ExternalIdentity).
//! - `id_token_validate_es256`: the same for an ES256 (P-256) token.
//! - `baseline_jsonwebtoken_decode_rs256`: `jsonwebtoken::decode` of the
//!   very RS256 token with the same public key (built once, outside the
//!   loop) and a comparable `Validation`: algorithm pinned, `iss` and `aud`
//!   checked, `exp`, `iat`, `iss`, `aud` and `sub` required, 60 s leeway,
//!   claims read into a JSON map. No `nonce` check: jsonwebtoken has none.
//!
//! The target: `id_token_validate_rs256` within 1.3x of
//! `baseline_jsonwebtoken_decode_rs256`.
//!
//! Run with `cargo bench --bench idp`.

// Benchmark setup may stop on a broken fixture; this is not library code.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::Criterion;
use guestpass::idp::oidc::IdTokenValidator;
use guestpass::idp::{OidcConfig, OidcProvider};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair as _;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

const ISSUER: &str = "https://login.fabrikam.example";
const CLIENT_ID: &str = "guestpass-bench-client";
const NONCE: &str = "n-0S6_WzA2Mj-bench-nonce-0123456789abcdefghi";
const RSA_KID: &str = "rsa-1";
const EC_KID: &str = "ec-1";

// TEST-ONLY RSA 2048 private key (PKCS#8), copied from
// tests/support/oidc_op.rs. It protects nothing; never use it anywhere else.
const RSA_PRIMARY_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCIYrgJ1cgzwNPS
DREvy1Iak7vRt5m/cmtz2yYXU6zMKse8c57vj7R+Huj6QiR0yCbHBoj32gSs56HI
nyoCWvHmoBJrcigk5zeN9h18R/pF/woII8BpREqbLtI2/NyoaStp5AFc208P8wyU
rZ3A1WXydRAinZYakuMHN66awCjuwQZr3SNf94xnjC8+1CTvUaYPgq1JJfkvQbig
472RwfnEWyRnnurryv/OMlmSqc+w+xL9UoKST3Buj/17XGLDQOZ8u3HYebeCXSf8
7dcX56yU5h6gB0128YjfPNUAw7QPTgx6/cEKZbRwKVJEyKBXYP0sNWCXLZ0Dkito
ijdaNK4DAgMBAAECggEAA3t3H35/N3MQ9X1dQaR7Wtpdd/lWyktC8G5ZW/cdo7OO
mK01varO/PllEXQRjOR0uQLdtGuzUDGJ2/Qpv8L6sjIcG5+Kjtv90HjG6p7GhnWr
QpHxyROepApfVlrBIjutNBhHlfYI4BYLQts7+pR4Secwm5xSciiV9gqMlr7uofSa
Mx/CT+CNYj/+KkLl3D+rvQ9JrQCW/Rx5hB28BoPJGzT/XdCvoLr7vxhUqVyKjbLM
qiZ1eU8IFuBnklZ+dNDai9DxA7ypv1k2LmjWnWdCxP16Wt4XXff3PmMjRzFJXf+c
5bmU/ns9IiCnEJKL3ow1vqULTEm3qj6t8Mhd0CweAQKBgQC/07ykk96nJCl6LM7S
kuW8uuq//l4uVsQ51e+OeYqOOb8/Vi6KaQIAAGkodj4w/Q3wVxx0+1BNWGKjwJM5
YQD+i2/C5UC+tjQ9ha/p/3WRsLkziAv6isP47CbfDePWuJ3Vo92hJD6lPrGdveMj
sQgtImjLeOApnUyY8jQr/i8qwQKBgQC2Aus9X8BgpyCNj4MpSWu1nFdA4ZYFiW0u
vZsFcZclhmlSLWBzD4rqRYNDNfA4+ujl67MnH5av86DWwqEPLOlPdseUH9el+mti
d2RSimPMuh3sd/1uCxTmFCzBk4cLwJwwT+mnIXnvkhY47d2q/aPVhF/4QTuB410A
ffBEZH9dwwKBgGcmi5UQMrU7+9XHzHttJH6FIICXXruaSrAy+zto3fm20cFULXie
GMY5clKgqrabDOjFXvcEwNymf3xArKo5IFjAUBvEPTmQLq06eyrgBK+QETbFnHNg
NRtgmVJuXKr04WKlWCMzo0AmY0pIdqCVrKjgjOuFFz0paawA6c8SQvjBAoGAfFhQ
J9TTk/R5q9yAqeMr/524im3TVSMHAWitkLGCpjNGnsq7WsAiklw9Cdy+qd7Y38L/
2Nme08QofK/o4no3Rn+KZ6q9Y/pKBLI2SqGa/tGkAdoTvGs7stfTn8fO+ftzeRoP
MYwQRthR8ECpMNkpZYSTIAJIyjrvXZesXr0duosCgYANx5Jke9/MNYWiY6BTSv1O
Juev9dInCcs5b1HPXz1LWmHDg3oRkr46S264yyeSaaBCXH0VPc0TSChl+CwSP5S+
OmBq0DDDqrxFN37T3V/7Xz1p4n3+IUjFIbivYOZhkR3ILsEK2p8JwmI4mYZjIkAn
ieUVE6ZBfgC+cobYfSf7GQ==
-----END PRIVATE KEY-----
";

struct Fixture {
    validator: IdTokenValidator,
    rs256: String,
    es256: String,
    rsa_key: DecodingKey,
    validation: Validation,
    now: OffsetDateTime,
}

fn claims(now: i64) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "AItOawmwtWwcT0k51BayewNvutrJUqsvl6qs7A4",
        "aud": CLIENT_ID,
        "azp": CLIENT_ID,
        "exp": now + 24 * 3600,
        "iat": now,
        "nonce": NONCE,
        "email": "alice@fabrikam.example",
        "email_verified": true,
        "name": "Alice Example",
        "given_name": "Alice",
        "family_name": "Example",
    })
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("the token signs")
}

fn fixture() -> Fixture {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;

    // jsonwebtoken checks `exp` against the system clock, so the tokens are
    // issued at the system's now and the validator checks at the same now.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds");
    let claims = claims(now.unix_timestamp());

    let rsa_private = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PRIMARY_PEM).expect("the test rsa key");
    let rsa_der = rsa_private.to_pkcs1_der().expect("pkcs1 der");
    let rsa_public = rsa::RsaPublicKey::from(&rsa_private);
    let n = URL_SAFE_NO_PAD.encode(rsa_public.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(rsa_public.e().to_bytes_be());
    let rs256 = sign(
        Algorithm::RS256,
        RSA_KID,
        &EncodingKey::from_rsa_der(rsa_der.as_bytes()),
        &claims,
    );

    let ring_rng = ring::rand::SystemRandom::new();
    let p256 = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(p256, &ring_rng).expect("p-256 key");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(p256, pkcs8.as_ref(), &ring_rng).expect("p-256 key");
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    let (x, y) = (&point[1..33], &point[33..65]);
    let es256 = sign(
        Algorithm::ES256,
        EC_KID,
        &EncodingKey::from_ec_der(pkcs8.as_ref()),
        &claims,
    );

    // A provider's usual set: one RSA and one EC key.
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": RSA_KID, "alg": "RS256", "use": "sig", "n": n, "e": e},
        {"kty": "EC", "kid": EC_KID, "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)},
    ]});
    let provider = OidcProvider::new(OidcConfig::new("fabrikam", ISSUER, CLIENT_ID, "bench-secret"))
        .expect("the provider configuration is valid");
    let validator = provider
        .id_token_validator(jwks.to_string().as_bytes())
        .expect("the key set reads");

    let rsa_key = DecodingKey::from_rsa_components(&n, &e).expect("rsa components");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = 60;

    Fixture {
        validator,
        rs256,
        es256,
        rsa_key,
        validation,
        now,
    }
}

fn bench_idp(c: &mut Criterion) {
    let f = fixture();

    // Sanity: every path succeeds on its token, so the success path is
    // what is measured.
    for token in [&f.rs256, &f.es256] {
        let identity = f.validator.validate(token, NONCE, f.now);
        assert!(
            identity
                .as_ref()
                .is_ok_and(|i| i.issuer == ISSUER && i.email_verified && i.name.is_some()),
            "{identity:?}"
        );
    }
    let baseline = jsonwebtoken::decode::<Map<String, Value>>(&f.rs256, &f.rsa_key, &f.validation);
    assert!(
        baseline
            .as_ref()
            .is_ok_and(|d| d.claims.get("nonce").and_then(Value::as_str) == Some(NONCE)),
        "{baseline:?}"
    );
    assert!(
        f.validator.validate(&f.rs256, "another nonce", f.now).is_err(),
        "the nonce is checked"
    );

    let mut group = c.benchmark_group("idp");
    group.bench_function("id_token_validate_rs256", |b| {
        b.iter(|| {
            f.validator
                .validate(black_box(&f.rs256), black_box(NONCE), black_box(f.now))
        })
    });
    group.bench_function("id_token_validate_es256", |b| {
        b.iter(|| {
            f.validator
                .validate(black_box(&f.es256), black_box(NONCE), black_box(f.now))
        })
    });
    group.bench_function("baseline_jsonwebtoken_decode_rs256", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Map<String, Value>>(
                black_box(&f.rs256),
                black_box(&f.rsa_key),
                black_box(&f.validation),
            )
        })
    });
    group.finish();
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, without the
    // undocumented public function the group macro generates.
    let mut criterion = Criterion::default().configure_from_args();
    bench_idp(&mut criterion);
    criterion.final_summary();
}
