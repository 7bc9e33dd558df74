//! Completion tokens through the public API (invariant 9): round trips,
//! algorithm pinning (`none`, HMAC with the public key, a header that names
//! another algorithm), `kid` handling, issuer, audience and time checks
//! against the injected time, key rotation, the JWKS document, and keys that
//! never show their private half.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use guestpass::directory::UserType;
use guestpass::email::EmailAddress;
use guestpass::flow::token::{
    self, CompletionClaims, Jwks, MAX_TOKEN_LEN, TokenAlgorithm, TokenError, TokenKeys, TokenSigningKey,
    TokenVerifier,
};
use guestpass::id::Id;
use guestpass::random::SeededRandom;
use proptest::prelude::*;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde_json::json;
use time::{Duration, OffsetDateTime, macros::datetime};

const ISSUER: &str = "https://login.contoso.example/5b3e8a34-8f52-4b8c-9a43-1a2b3c4d5e6f/v2.0";
const CLIENT: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);
const BOTH: [TokenAlgorithm; 2] = [TokenAlgorithm::Es256, TokenAlgorithm::EdDsa];

fn key(kid: &str, alg: TokenAlgorithm, seed: u64) -> TokenSigningKey {
    TokenSigningKey::generate(kid, alg, &SeededRandom::new(seed)).unwrap()
}

fn claims(seed: u64) -> CompletionClaims {
    let rng = SeededRandom::new(seed);
    CompletionClaims {
        issuer: ISSUER.into(),
        audience: CLIENT.into(),
        subject: Id::random(&rng).unwrap(),
        tenant_id: "5b3e8a34-8f52-4b8c-9a43-1a2b3c4d5e6f".parse().unwrap(),
        email: EmailAddress::parse("alice@fabrikam.example").unwrap(),
        identity_provider: "mail".into(),
        user_type: UserType::Guest,
        amr: vec!["otp".into()],
        acr: None,
        nonce: None,
        token_id: token::new_token_id(&rng).unwrap(),
        lifetime: token::DEFAULT_TOKEN_LIFETIME,
    }
}

fn verifier(keys: &TokenKeys) -> TokenVerifier {
    TokenVerifier::from_keys(keys, ISSUER, CLIENT).unwrap()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn payload_of(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The error must not quote the token or any part of it.
fn rejects(verifier: &TokenVerifier, token: &str, now: OffsetDateTime) -> TokenError {
    let err = verifier.verify(token, now).unwrap_err();
    let shown = format!("{err} {err:?}");
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!shown.contains(part), "error `{shown}` quotes the token");
    }
    err
}

#[test]
fn round_trip_with_both_algorithms() {
    for alg in BOTH {
        let keys = TokenKeys::new(key("k1", alg, 1));
        let mut c = claims(2);
        c.amr = vec!["pwd".into(), "mfa".into()];
        c.acr = Some("c1".into());
        c.nonce = Some("nonce-123".into());
        c.user_type = UserType::Member;
        c.lifetime = Duration::minutes(10);
        let jwt = token::issue(&keys, &c, NOW).unwrap();
        let v = verifier(&keys)
            .verify_with_nonce(&jwt, "nonce-123", NOW + Duration::minutes(9))
            .unwrap();
        assert_eq!(v.key_id, "k1");
        assert_eq!(v.algorithm, alg);
        assert_eq!(v.issuer, ISSUER);
        assert_eq!(v.audience, [CLIENT]);
        assert_eq!(v.subject, c.subject);
        assert_eq!(v.tenant_id, c.tenant_id);
        assert_eq!(v.email, "alice@fabrikam.example");
        assert_eq!(v.identity_provider, "mail");
        assert_eq!(v.user_type, UserType::Member);
        assert_eq!(v.amr, ["pwd", "mfa"]);
        assert_eq!(v.acr.as_deref(), Some("c1"));
        assert_eq!(v.nonce.as_deref(), Some("nonce-123"));
        assert_eq!(v.token_id, c.token_id);
        assert_eq!(v.issued_at, NOW);
        assert_eq!(v.not_before, NOW);
        assert_eq!(v.expires_at, NOW + Duration::minutes(10));
        assert_eq!(payload_of(&jwt)["ver"], "2.0");
    }
}

#[test]
fn token_ids_are_unique() {
    let rng = SeededRandom::new(3);
    let ids: std::collections::HashSet<String> =
        (0..100).map(|_| token::new_token_id(&rng).unwrap()).collect();
    assert_eq!(ids.len(), 100);
    assert!(ids.iter().all(|id| id.len() == 22));
}

#[test]
fn alg_none_is_never_accepted() {
    let keys = TokenKeys::new(key("k1", TokenAlgorithm::Es256, 1));
    let genuine = token::issue(&keys, &claims(2), NOW).unwrap();
    let payload = genuine.split('.').nth(1).unwrap();
    for alg in ["none", "None", "NONE", "nOnE"] {
        for sig in ["", "AAAA"] {
            let forged = format!(
                "{}.{payload}.{sig}",
                b64(format!(r#"{{"alg":"{alg}","kid":"k1","typ":"JWT"}}"#))
            );
            assert!(
                matches!(
                    rejects(&verifier(&keys), &forged, NOW),
                    TokenError::UnsupportedAlgorithm { .. }
                ),
                "{alg}"
            );
        }
    }
    // Without a kid too, and with the signature part dropped.
    let forged = format!("{}.{payload}.", b64(r#"{"alg":"none"}"#));
    assert!(matches!(
        rejects(&verifier(&keys), &forged, NOW),
        TokenError::UnsupportedAlgorithm { .. }
    ));
    let forged = format!("{}.{payload}", b64(r#"{"alg":"none"}"#));
    assert!(matches!(
        rejects(&verifier(&keys), &forged, NOW),
        TokenError::Malformed(_)
    ));
}

#[test]
fn hmac_signed_with_the_public_key_is_rejected() {
    let signing = key("k1", TokenAlgorithm::Es256, 1);
    let keys = TokenKeys::new(signing.clone());
    let jwks_text = serde_json::to_string(&keys.jwks()).unwrap();
    let jwks: Jwks = serde_json::from_str(&jwks_text).unwrap();
    let jwk_text = serde_json::to_string(&jwks.keys[0]).unwrap();
    let x = URL_SAFE_NO_PAD.decode(jwks.keys[0].x.as_ref().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwks.keys[0].y.as_ref().unwrap()).unwrap();
    let point = [&[0x04u8][..], &x, &y].concat();
    let verifier = TokenVerifier::from_jwks(&jwks, ISSUER, CLIENT).unwrap();

    let body = payload_of(&token::issue(&keys, &claims(2), NOW).unwrap());
    // Every public form an attacker could guess the verifier feeds to HMAC.
    let secrets: [&[u8]; 4] = [
        &point,
        &[x.clone(), y.clone()].concat(),
        jwk_text.as_bytes(),
        jwks_text.as_bytes(),
    ];
    for alg in [
        jsonwebtoken::Algorithm::HS256,
        jsonwebtoken::Algorithm::HS384,
        jsonwebtoken::Algorithm::HS512,
    ] {
        for secret in secrets {
            let mut header = jsonwebtoken::Header::new(alg);
            header.kid = Some("k1".into());
            let forged =
                jsonwebtoken::encode(&header, &body, &jsonwebtoken::EncodingKey::from_secret(secret))
                    .unwrap();
            match rejects(&verifier, &forged, NOW) {
                TokenError::UnsupportedAlgorithm { alg: named } => {
                    assert!(named.starts_with("HS"), "{named}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn a_symmetric_key_in_a_jwks_is_refused() {
    let jwks: Jwks = serde_json::from_value(json!({
        "keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1", "alg": "HS256"}]
    }))
    .unwrap();
    assert!(matches!(
        TokenVerifier::from_jwks(&jwks, ISSUER, CLIENT),
        Err(TokenError::InvalidJwks { .. })
    ));
}

#[test]
fn another_key_under_the_same_kid_is_rejected() {
    for alg in BOTH {
        let genuine = TokenKeys::new(key("k1", alg, 1));
        let impostor = TokenKeys::new(key("k1", alg, 99));
        let forged = token::issue(&impostor, &claims(2), NOW).unwrap();
        assert_eq!(
            rejects(&verifier(&genuine), &forged, NOW),
            TokenError::BadSignature
        );
        assert!(verifier(&impostor).verify(&forged, NOW).is_ok());
    }
}

#[test]
fn a_header_naming_another_algorithm_than_the_key_is_rejected() {
    // An EdDSA token whose kid names an ES256 key in the verifier's set.
    let es = key("es", TokenAlgorithm::Es256, 1);
    let ed = key("ed", TokenAlgorithm::EdDsa, 2);
    let keys = TokenKeys::new(es);
    let attacker = TokenKeys::new(
        TokenSigningKey::from_pkcs8_der("es", TokenAlgorithm::EdDsa, ed.export_pkcs8_der().expose()).unwrap(),
    );
    let forged = token::issue(&attacker, &claims(2), NOW).unwrap();
    match rejects(&verifier(&keys), &forged, NOW) {
        TokenError::AlgorithmMismatch { kid, expected, found } => {
            assert_eq!(
                (kid.as_str(), expected, found.as_str()),
                ("es", TokenAlgorithm::Es256, "EdDSA")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn issuer_audience_and_times_are_checked() {
    let keys = TokenKeys::new(key("k1", TokenAlgorithm::Es256, 1));
    let jwt = token::issue(&keys, &claims(2), NOW).unwrap();
    let good = verifier(&keys);
    assert!(good.verify(&jwt, NOW).is_ok());

    let other_aud = TokenVerifier::from_keys(&keys, ISSUER, "another-app").unwrap();
    assert_eq!(rejects(&other_aud, &jwt, NOW), TokenError::WrongAudience);
    // Exact issuer match: no prefix, case or trailing-slash leniency.
    for iss in [
        "https://login.contoso.example/5b3e8a34-8f52-4b8c-9a43-1a2b3c4d5e6f/v2.0/",
        "https://LOGIN.contoso.example/5b3e8a34-8f52-4b8c-9a43-1a2b3c4d5e6f/v2.0",
        "https://login.contoso.example/5b3e8a34-8f52-4b8c-9a43-1a2b3c4d5e6f",
    ] {
        let other_iss = TokenVerifier::from_keys(&keys, iss, CLIENT).unwrap();
        assert_eq!(rejects(&other_iss, &jwt, NOW), TokenError::WrongIssuer, "{iss}");
    }

    let leeway = good.leeway();
    assert_eq!(leeway, token::DEFAULT_LEEWAY);
    let exp = NOW + token::DEFAULT_TOKEN_LIFETIME;
    assert!(good.verify(&jwt, exp).is_ok(), "within leeway");
    assert_eq!(rejects(&good, &jwt, exp + leeway), TokenError::Expired);
    assert_eq!(
        rejects(&good, &jwt, exp + Duration::days(365)),
        TokenError::Expired
    );
    assert!(good.verify(&jwt, NOW - leeway).is_ok(), "within leeway");
    assert_eq!(
        rejects(&good, &jwt, NOW - leeway - Duration::seconds(1)),
        TokenError::NotYetValid
    );
    assert_eq!(
        rejects(&good, &jwt, NOW - Duration::days(1)),
        TokenError::NotYetValid
    );

    let tolerant = verifier(&keys).with_leeway(token::MAX_LEEWAY).unwrap();
    assert!(tolerant.verify(&jwt, exp + Duration::minutes(4)).is_ok());
    assert!(verifier(&keys).with_leeway(Duration::minutes(6)).is_err());
}

#[test]
fn kid_is_required_and_must_be_known() {
    let keys = TokenKeys::new(key("k1", TokenAlgorithm::Es256, 1));
    let stranger = TokenKeys::new(key("k9", TokenAlgorithm::Es256, 1));
    let jwt = token::issue(&stranger, &claims(2), NOW).unwrap();
    assert_eq!(
        rejects(&verifier(&keys), &jwt, NOW),
        TokenError::UnknownKey { kid: "k9".into() }
    );

    // The same signature and payload with the kid removed from the header.
    let rest = jwt.split_once('.').unwrap().1;
    let no_kid = format!("{}.{rest}", b64(r#"{"typ":"JWT","alg":"ES256"}"#));
    assert_eq!(rejects(&verifier(&keys), &no_kid, NOW), TokenError::MissingKeyId);
    let bad_kid = format!(
        "{}.{rest}",
        b64(r#"{"typ":"JWT","alg":"ES256","kid":"../../etc/passwd"}"#)
    );
    assert!(matches!(
        rejects(&verifier(&keys), &bad_kid, NOW),
        TokenError::Malformed(_)
    ));
}

#[test]
fn tampering_breaks_the_signature() {
    for alg in BOTH {
        let keys = TokenKeys::new(key("k1", alg, 1));
        let jwt = token::issue(&keys, &claims(2), NOW).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();

        let mut body = payload_of(&jwt);
        body["email"] = json!("mallory@evil.example");
        let tampered = format!("{}.{}.{}", parts[0], b64(body.to_string()), parts[2]);
        assert_eq!(
            rejects(&verifier(&keys), &tampered, NOW),
            TokenError::BadSignature
        );

        let mut body = payload_of(&jwt);
        body["userType"] = json!("Member");
        let tampered = format!("{}.{}.{}", parts[0], b64(body.to_string()), parts[2]);
        assert_eq!(
            rejects(&verifier(&keys), &tampered, NOW),
            TokenError::BadSignature
        );

        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let tampered = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
        assert_eq!(
            rejects(&verifier(&keys), &tampered, NOW),
            TokenError::BadSignature
        );

        let truncated = format!("{}.{}.{}", parts[0], parts[1], b64(&sig[..32]));
        assert_eq!(
            rejects(&verifier(&keys), &truncated, NOW),
            TokenError::BadSignature
        );
    }
}

#[test]
fn malformed_and_oversized_tokens_are_rejected_before_parsing() {
    let keys = TokenKeys::new(key("k1", TokenAlgorithm::Es256, 1));
    let v = verifier(&keys);
    for bad in ["", ".", "..", "a.b.c", "a.b.c.d", "!!!.e30.sig", "e30.e30.sig"] {
        let err = v.verify(bad, NOW).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{bad}: {err:?}");
    }

    let jwt = token::issue(&keys, &claims(2), NOW).unwrap();
    let oversized = format!("{jwt}{}", "A".repeat(MAX_TOKEN_LEN + 1 - jwt.len()));
    assert_eq!(
        rejects(&v, &oversized, NOW),
        TokenError::TooLong {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        }
    );
    // At the limit the size check passes and the signature check decides.
    let at_limit = &oversized[..MAX_TOKEN_LEN];
    assert_ne!(
        v.verify(at_limit, NOW).unwrap_err(),
        TokenError::TooLong {
            len: MAX_TOKEN_LEN,
            max: MAX_TOKEN_LEN
        }
    );
    let huge = "A".repeat(10 * 1024 * 1024);
    assert!(matches!(v.verify(&huge, NOW), Err(TokenError::TooLong { .. })));
}

#[test]
fn rotation_keeps_old_tokens_valid_until_the_old_key_is_removed() {
    let old = TokenKeys::new(key("2026-01", TokenAlgorithm::Es256, 1));
    let old_token = token::issue(&old, &claims(2), NOW).unwrap();
    let old_verifier = verifier(&old);

    let mut rotated = old.rotate(key("2026-02", TokenAlgorithm::EdDsa, 2)).unwrap();
    assert_eq!(rotated.signing_key().kid(), "2026-02");
    let kids: Vec<&str> = rotated.public_keys().map(|k| k.kid()).collect();
    assert_eq!(kids, ["2026-02", "2026-01"]);
    let new_token = token::issue(&rotated, &claims(3), NOW).unwrap();

    let v = TokenVerifier::from_jwks(&rotated.jwks(), ISSUER, CLIENT).unwrap();
    assert_eq!(v.verify(&old_token, NOW).unwrap().key_id, "2026-01");
    assert_eq!(v.verify(&new_token, NOW).unwrap().key_id, "2026-02");
    // A verifier that has not refreshed its JWKS does not know the new key.
    assert_eq!(
        rejects(&old_verifier, &new_token, NOW),
        TokenError::UnknownKey {
            kid: "2026-02".into()
        }
    );

    assert!(rotated.remove_verification_key("2026-01"));
    assert!(!rotated.remove_verification_key("2026-01"));
    assert!(
        !rotated.remove_verification_key("2026-02"),
        "the signing key stays"
    );
    assert_eq!(rotated.jwks().keys.len(), 1);
    let v = TokenVerifier::from_jwks(&rotated.jwks(), ISSUER, CLIENT).unwrap();
    assert_eq!(
        rejects(&v, &old_token, NOW),
        TokenError::UnknownKey {
            kid: "2026-01".into()
        }
    );
    assert!(v.verify(&new_token, NOW).is_ok());

    // A public key added on its own (say, from another instance) verifies too.
    let other = key("other", TokenAlgorithm::Es256, 7);
    let with_other = rotated
        .clone()
        .with_verification_key(other.public_key().clone())
        .unwrap();
    let other_token = token::issue(&TokenKeys::new(other), &claims(4), NOW).unwrap();
    assert!(verifier(&with_other).verify(&other_token, NOW).is_ok());
    assert!(matches!(
        verifier(&rotated).verify(&other_token, NOW),
        Err(TokenError::UnknownKey { .. })
    ));
}

#[test]
fn jwks_has_the_exact_shape_and_verifies_after_a_round_trip() {
    let es = key("es-1", TokenAlgorithm::Es256, 1);
    let ed = key("ed-1", TokenAlgorithm::EdDsa, 2);
    // The public halves computed independently, by ring, from the private keys.
    let ring_es = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        es.export_pkcs8_der().expose(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let point = ring_es.public_key().as_ref().to_vec();
    let ring_ed = Ed25519KeyPair::from_pkcs8_maybe_unchecked(ed.export_pkcs8_der().expose()).unwrap();

    let keys = TokenKeys::new(es)
        .with_verification_key(ed.public_key().clone())
        .unwrap();
    let text = serde_json::to_string(&keys.jwks()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value,
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
             "kid": "es-1", "use": "sig", "alg": "ES256"},
            {"kty": "OKP", "crv": "Ed25519", "x": b64(ring_ed.public_key()),
             "kid": "ed-1", "use": "sig", "alg": "EdDSA"},
        ]})
    );
    assert!(
        text.starts_with(r#"{"keys":[{"kty":"EC","crv":"P-256","x":""#),
        "{text}"
    );
    assert!(!text.contains("\"d\""));

    let parsed: Jwks = serde_json::from_str(&text).unwrap();
    let v = TokenVerifier::from_jwks(&parsed, ISSUER, CLIENT).unwrap();
    let es_token = token::issue(&keys, &claims(3), NOW).unwrap();
    let ed_token = token::issue(&TokenKeys::new(ed), &claims(4), NOW).unwrap();
    assert_eq!(v.verify(&es_token, NOW).unwrap().algorithm, TokenAlgorithm::Es256);
    assert_eq!(v.verify(&ed_token, NOW).unwrap().algorithm, TokenAlgorithm::EdDsa);

    // Unknown members (as other publishers add) are ignored on reading.
    let mut extended = value.clone();
    extended["keys"][0]["x5t"] = json!("abc");
    extended["keys"][0]["key_ops"] = json!(["verify"]);
    let parsed: Jwks = serde_json::from_value(extended).unwrap();
    assert!(TokenVerifier::from_jwks(&parsed, ISSUER, CLIENT).is_ok());
}

#[test]
fn debug_never_shows_private_material() {
    for alg in BOTH {
        let signing = key("k1", alg, 11);
        let der = signing.export_pkcs8_der();
        let pem = signing.export_pkcs8_pem();
        // The private scalar or seed is the 32 bytes that end every PKCS#8
        // this library writes for Ed25519 and that follow `04 20` for P-256.
        let secret: Vec<u8> = match alg {
            TokenAlgorithm::EdDsa => der.expose()[der.len() - 32..].to_vec(),
            _ => {
                let at = der
                    .expose()
                    .windows(5)
                    .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
                    .unwrap();
                der.expose()[at + 5..at + 37].to_vec()
            }
        };
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let keys = TokenKeys::new(signing.clone());
        let shown = format!(
            "{signing:?} {signing:#?} {keys:?} {keys:#?} {:?} {:?} {der:?} {pem:?}",
            verifier(&keys),
            keys.signing_key().public_key(),
        );
        assert!(shown.contains("k1"), "{shown}");
        for needle in [
            hex.clone(),
            hex.to_uppercase(),
            b64(&secret),
            base64::engine::general_purpose::STANDARD.encode(&secret),
            format!("{:?}", &secret[..8]).trim_end_matches(']').to_owned(),
            pem.expose().lines().nth(1).unwrap().to_owned(),
        ] {
            assert!(!shown.contains(&needle), "{alg}: debug shows `{needle}`");
        }
    }
}

#[test]
fn imported_pem_keys_sign_like_the_original() {
    for alg in BOTH {
        let original = key("k1", alg, 21);
        let pem = original.export_pkcs8_pem();
        let imported = TokenSigningKey::from_pkcs8_pem("k1", alg, pem.expose()).unwrap();
        let token = token::issue(&TokenKeys::new(imported), &claims(5), NOW).unwrap();
        assert!(verifier(&TokenKeys::new(original)).verify(&token, NOW).is_ok());
    }
}

fn amr_entry() -> impl Strategy<Value = String> {
    "[a-z]{1,8}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_claims_round_trip(
        seed in any::<u64>(),
        local in "[a-z][a-z0-9]{0,7}(\\.[a-z0-9]{1,6})?",
        idp in "[ -~]{1,40}",
        amr in proptest::collection::vec(amr_entry(), 1..4),
        acr in proptest::option::of("[ -~]{1,20}"),
        nonce in proptest::option::of("[ -~]{1,64}"),
        lifetime_s in 1i64..=86_400,
        offset_s in 0i64..=86_400,
        ed in any::<bool>(),
        member in any::<bool>(),
    ) {
        let alg = if ed { TokenAlgorithm::EdDsa } else { TokenAlgorithm::Es256 };
        let keys = TokenKeys::new(key("p", alg, seed));
        let mut c = claims(seed);
        c.email = EmailAddress::parse(&format!("{local}x@fabrikam.example")).unwrap();
        c.identity_provider = idp.clone();
        c.amr = amr.clone();
        c.acr = acr.clone();
        c.nonce = nonce.clone();
        c.lifetime = Duration::seconds(lifetime_s);
        c.user_type = if member { UserType::Member } else { UserType::Guest };
        let now = NOW + Duration::seconds(offset_s);
        let jwt = token::issue(&keys, &c, now).unwrap();
        let v = verifier(&keys);
        let got = match &nonce {
            Some(n) => v.verify_with_nonce(&jwt, n, now).unwrap(),
            None => v.verify(&jwt, now).unwrap(),
        };
        prop_assert_eq!(got.email, c.email.as_str());
        prop_assert_eq!(got.identity_provider, idp);
        prop_assert_eq!(got.amr, amr);
        prop_assert_eq!(got.acr, acr);
        prop_assert_eq!(got.nonce, nonce);
        prop_assert_eq!(got.user_type, c.user_type);
        prop_assert_eq!(got.subject, c.subject);
        prop_assert_eq!(got.expires_at - got.issued_at, c.lifetime);
        let end = now + c.lifetime + v.leeway();
        prop_assert_eq!(v.verify(&jwt, end), Err(TokenError::Expired));
    }
}
