//! Fuzzes the OpenID Connect callback parser and the ID token checks.
//!
//! Every input is used three ways:
//!
//! 1. **Callback, raw**: the bytes as a query string go to
//!    `Callback::parse`, as UTF-8 when they are, and lossily converted.
//!    Nothing may panic; a refusal is `IdpError::Callback`; anything
//!    accepted is within `MAX_CALLBACK_LEN`, its values within
//!    `MAX_CALLBACK_PARAM_LEN`; a leading `?` changes nothing.
//! 2. **ID token, raw**: the (lossy) text goes to
//!    `IdTokenValidator::validate` over a fixed key set (an RSA, an EC and a
//!    symmetric key) at a fixed time.
//! 3. **Structured** (`arbitrary`): either a callback assembled from
//!    parameters (percent-encoded here), whose parse must give back exactly
//!    those parameters, or refuse repeats and oversized values, and whose
//!    `Debug` must not show `code` or `state`; or an ID token assembled
//!    from a header, claims and a signature choice (signed with the
//!    fixture's P-256 key, or not) into `base64url.base64url.sig`, or laid
//!    out wrongly.
//!
//! Whatever token is accepted, raw or structured, is checked again here
//! with independent code: a three-part compact JWS whose header has `alg`
//! RS256 or ES256, no `crit`, a `kid` (if any) naming a key of that type,
//! a signature that verifies with ring under that key; claims with the
//! expected `iss`, an `aud` naming the client (with `azp` when several),
//! `exp` not passed, `iat` and `nbf` not in the future (60 s leeway), the
//! expected `nonce` and `sub`; and an identity that repeats them. A
//! structured token that meets every rule must be accepted.

#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use guestpass::idp::oidc::IdTokenValidator;
use guestpass::idp::{
    Callback, ExternalIdentity, IdpError, MAX_CALLBACK_LEN, MAX_CALLBACK_PARAM_LEN, OidcConfig, OidcProvider,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ring::signature::{self as sig, KeyPair as _};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const PROVIDER_ID: &str = "fabrikam";
const ISSUER: &str = "https://login.fabrikam.example";
const CLIENT_ID: &str = "guestpass-fuzz-client";
const NONCE: &str = "n-0S6_WzA2Mj-fuzz-nonce";
const SUBJECT: &str = "alice-sub";
const RSA_KID: &str = "rsa-1";
const EC_KID: &str = "ec-1";
const OCT_KID: &str = "oct-1";
const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
/// The provider's default leeway, seconds.
const LEEWAY: i64 = 60;
const KNOWN_PARAMS: [&str; 6] = ["code", "state", "iss", "error", "error_description", "error_uri"];

// TEST-ONLY keys: protect nothing, never use them anywhere else. The RSA
// key is copied from tests/support/oidc_op.rs; the P-256 key (PKCS#8) was
// generated with `openssl genpkey -algorithm EC -pkeyopt
// ec_paramgen_curve:P-256` for this target. Fixed keys let the seeds carry
// genuine tokens.
const RSA_PKCS8_PEM: &str = r"-----BEGIN PRIVATE KEY-----
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
const EC_PKCS8_B64: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgqdpTqbYxCzkiHNZc1fcGw9nYJExzj/3pvsOELRZH65ChRANCAAQqMe18fl1mXn7wTDhQxsUxResQRsFwmpVMA3s4iEOLFhkuxg9ZElpQA6kArHaS6ReBlRGLzWOMKwhY7KmnuJnG";

struct Fixture {
    validator: IdTokenValidator,
    ec: sig::EcdsaKeyPair,
    ec_public: Vec<u8>,
    rsa_public: sig::RsaPublicKeyComponents<Vec<u8>>,
    rng: ring::rand::SystemRandom,
    /// `Debug` of an empty callback: the text every callback shows.
    callback_skeleton: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rng = ring::rand::SystemRandom::new();
    let ec_der = STANDARD.decode(EC_PKCS8_B64).expect("base64");
    let ec = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &ec_der, &rng)
        .expect("p-256 key");
    let ec_public = ec.public_key().as_ref().to_vec();
    let rsa_der: String = RSA_PKCS8_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let rsa_der = STANDARD.decode(rsa_der).expect("base64");
    let rsa = sig::RsaKeyPair::from_pkcs8(&rsa_der).expect("rsa key");
    let rsa_public: sig::RsaPublicKeyComponents<Vec<u8>> = rsa.public().into();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": RSA_KID, "alg": "RS256", "use": "sig",
         "n": URL_SAFE_NO_PAD.encode(&rsa_public.n), "e": URL_SAFE_NO_PAD.encode(&rsa_public.e)},
        {"kty": "EC", "kid": EC_KID, "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": URL_SAFE_NO_PAD.encode(&ec_public[1..33]), "y": URL_SAFE_NO_PAD.encode(&ec_public[33..65])},
        {"kty": "oct", "kid": OCT_KID, "k": URL_SAFE_NO_PAD.encode(b"a symmetric key never verifies")},
    ]});
    let provider =
        OidcProvider::new(OidcConfig::new(PROVIDER_ID, ISSUER, CLIENT_ID, "fuzz-secret")).expect("provider");
    let validator = provider
        .id_token_validator(jwks.to_string().as_bytes())
        .expect("key set");
    assert_eq!(validator.key_count(), 3);
    Fixture {
        validator,
        ec,
        ec_public,
        rsa_public,
        rng,
        callback_skeleton: format!("{:?}", Callback::default()),
    }
});

// ---------------------------------------------------------------- callbacks

/// The raw-input checks of `Callback::parse`.
fn check_callback_text(query: &str) {
    let parsed = Callback::parse(query);
    match &parsed {
        Ok(callback) => {
            assert!(
                query.len() <= MAX_CALLBACK_LEN,
                "accepted a query of {} bytes",
                query.len()
            );
            for value in [
                callback.issuer(),
                callback.error(),
                callback.error_description(),
                callback.error_uri(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(value.len() <= MAX_CALLBACK_PARAM_LEN);
            }
        }
        Err(IdpError::Callback { reason }) => {
            assert!(!reason.is_empty() && !reason.ends_with('.'), "{reason:?}");
        }
        Err(other) => panic!("a callback refused with {other:?}"),
    }
    if !query.starts_with('?') && query.len() < MAX_CALLBACK_LEN {
        assert_eq!(
            Callback::parse(&format!("?{query}")),
            parsed,
            "a leading `?` matters"
        );
    }
}

#[derive(Arbitrary, Debug)]
enum Param<'a> {
    Code,
    State,
    Iss,
    Error,
    ErrorDescription,
    ErrorUri,
    Other(&'a str),
}

impl<'a> Param<'a> {
    fn name(&self) -> &'a str {
        match self {
            Param::Code => "code",
            Param::State => "state",
            Param::Iss => "iss",
            Param::Error => "error",
            Param::ErrorDescription => "error_description",
            Param::ErrorUri => "error_uri",
            Param::Other(name) => name,
        }
    }
}

/// `application/x-www-form-urlencoded`, escaping everything but the
/// unreserved characters (a space as `+` when `plus`).
fn form_encode(text: &str, plus: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(b)),
            b' ' if plus => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A callback from parameters: the parse must give back exactly the known
/// parameters, or refuse a repeated or oversized one.
fn check_callback_params(params: &[(Param<'_>, &str)], question_mark: bool, plus: bool) {
    let mut query = String::from(if question_mark { "?" } else { "" });
    for (i, (param, value)) in params.iter().enumerate() {
        if i > 0 {
            query.push('&');
        }
        query.push_str(&form_encode(param.name(), plus));
        query.push('=');
        query.push_str(&form_encode(value, plus));
    }
    check_callback_text(&query);

    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut refused = query.len() > MAX_CALLBACK_LEN;
    for (param, value) in params {
        let name = param.name();
        if !KNOWN_PARAMS.contains(&name) {
            continue;
        }
        if value.len() > MAX_CALLBACK_PARAM_LEN || seen.iter().any(|(n, _)| *n == name) {
            refused = true;
        }
        seen.push((name, value));
    }
    let value_of = |name: &str| seen.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    match Callback::parse(&query) {
        Err(IdpError::Callback { .. }) if refused => {}
        Ok(callback) if !refused => {
            assert_eq!(callback.has_code(), value_of("code").is_some());
            assert_eq!(callback.has_state(), value_of("state").is_some());
            assert_eq!(callback.issuer(), value_of("iss"));
            assert_eq!(callback.error(), value_of("error"));
            assert_eq!(callback.error_description(), value_of("error_description"));
            assert_eq!(callback.error_uri(), value_of("error_uri"));
            let f = &*FIXTURE;
            let shown = format!("{callback:?}");
            let visible = [
                f.callback_skeleton.clone(),
                format!("{:?}", callback.issuer()),
                format!("{:?}", callback.error()),
                format!("{:?}", callback.error_description()),
                format!("{:?}", callback.error_uri()),
            ];
            for hidden in [value_of("code"), value_of("state")].into_iter().flatten() {
                let searchable = hidden.len() >= 8 && hidden.bytes().all(|b| b.is_ascii_alphanumeric());
                if searchable && !visible.iter().any(|v| v.contains(hidden)) {
                    assert!(!shown.contains(hidden), "`Debug` shows a code or state: {shown}");
                }
            }
        }
        other => panic!("expected refused={refused} for {query:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- ID tokens

#[derive(Arbitrary, Debug)]
enum Alg<'a> {
    Es256,
    Rs256,
    None,
    Hs256,
    Ps256,
    EdDsa,
    Other(&'a str),
    Missing,
    Number(i64),
}

#[derive(Arbitrary, Debug)]
enum Kid<'a> {
    Ec,
    Rsa,
    Oct,
    Missing,
    Empty,
    Other(&'a str),
    Number(i64),
    Long,
}

#[derive(Arbitrary, Debug)]
struct HeaderCase<'a> {
    alg: Alg<'a>,
    kid: Kid<'a>,
    typ: Option<&'a str>,
    crit: bool,
    extra: Option<(&'a str, &'a str)>,
}

/// A claim: the expected value, or something else.
#[derive(Arbitrary, Debug)]
enum Claim<'a> {
    Expected,
    /// An array holding the expected value and these.
    ExpectedAmong(Vec<&'a str>),
    Missing,
    Null,
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Array(Vec<&'a str>),
}

/// A NumericDate claim.
#[derive(Arbitrary, Debug)]
enum Time<'a> {
    /// `NOW` plus this many seconds.
    Offset(i32),
    Missing,
    Null,
    Int(i64),
    Float(f64),
    Str(&'a str),
}

#[derive(Arbitrary, Debug)]
struct ClaimsCase<'a> {
    iss: Claim<'a>,
    aud: Claim<'a>,
    azp: Claim<'a>,
    sub: Claim<'a>,
    nonce: Claim<'a>,
    exp: Time<'a>,
    iat: Time<'a>,
    nbf: Time<'a>,
    email: Claim<'a>,
    email_verified: Claim<'a>,
    name: Option<&'a str>,
    /// Inserted first: the claims above override them.
    extra: Vec<(&'a str, &'a str)>,
}

#[derive(Arbitrary, Debug)]
enum Signature<'a> {
    /// ES256 with the fixture's P-256 key over the assembled parts.
    Ec,
    /// These bytes, base64url.
    Raw(&'a [u8]),
    /// This text as the third part.
    Text(&'a str),
    Empty,
}

#[derive(Arbitrary, Debug)]
enum Layout<'a> {
    Compact,
    /// These bytes instead of the header JSON.
    RawHeader(&'a [u8]),
    /// These bytes instead of the claims JSON.
    RawClaims(&'a [u8]),
    /// Header and claims base64url with padding.
    Padded,
    /// `.` and this text appended.
    Appended(&'a str),
    /// Only `header.claims`.
    TwoParts,
}

fn claim(c: &Claim<'_>, expected: &str) -> Option<Value> {
    match c {
        Claim::Expected => Some(json!(expected)),
        Claim::ExpectedAmong(others) => {
            let mut items = vec![json!(expected)];
            items.extend(others.iter().map(|o| json!(o)));
            Some(Value::Array(items))
        }
        Claim::Missing => None,
        Claim::Null => Some(Value::Null),
        Claim::Str(s) => Some(json!(s)),
        Claim::Int(i) => Some(json!(i)),
        Claim::Bool(b) => Some(json!(b)),
        Claim::Array(items) => Some(json!(items)),
    }
}

fn time(t: &Time<'_>) -> Option<Value> {
    match t {
        Time::Offset(seconds) => Some(json!(NOW.unix_timestamp() + i64::from(*seconds))),
        Time::Missing => None,
        Time::Null => Some(Value::Null),
        Time::Int(i) => Some(json!(i)),
        // NaN and infinities have no JSON form: `json!` makes them `null`.
        Time::Float(f) => Some(json!(f)),
        Time::Str(s) => Some(json!(s)),
    }
}

fn put(map: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            map.insert(name.to_owned(), v);
        }
        None => {
            map.remove(name);
        }
    }
}

fn header_json(h: &HeaderCase<'_>) -> Value {
    let mut header = Map::new();
    if let Some((name, value)) = h.extra {
        header.insert(name.to_owned(), json!(value));
    }
    if let Some(typ) = h.typ {
        header.insert("typ".into(), json!(typ));
    }
    if h.crit {
        header.insert("crit".into(), json!(["exp"]));
    }
    let alg = match &h.alg {
        Alg::Es256 => Some(json!("ES256")),
        Alg::Rs256 => Some(json!("RS256")),
        Alg::None => Some(json!("none")),
        Alg::Hs256 => Some(json!("HS256")),
        Alg::Ps256 => Some(json!("PS256")),
        Alg::EdDsa => Some(json!("EdDSA")),
        Alg::Other(s) => Some(json!(s)),
        Alg::Missing => None,
        Alg::Number(n) => Some(json!(n)),
    };
    put(&mut header, "alg", alg);
    let kid = match &h.kid {
        Kid::Ec => Some(json!(EC_KID)),
        Kid::Rsa => Some(json!(RSA_KID)),
        Kid::Oct => Some(json!(OCT_KID)),
        Kid::Missing => None,
        Kid::Empty => Some(json!("")),
        Kid::Other(s) => Some(json!(s)),
        Kid::Number(n) => Some(json!(n)),
        Kid::Long => Some(json!("k".repeat(300))),
    };
    put(&mut header, "kid", kid);
    Value::Object(header)
}

fn claims_json(c: &ClaimsCase<'_>) -> Value {
    let mut claims = Map::new();
    for (name, value) in &c.extra {
        claims.insert((*name).to_owned(), json!(value));
    }
    put(&mut claims, "iss", claim(&c.iss, ISSUER));
    put(&mut claims, "aud", claim(&c.aud, CLIENT_ID));
    put(&mut claims, "azp", claim(&c.azp, CLIENT_ID));
    put(&mut claims, "sub", claim(&c.sub, SUBJECT));
    put(&mut claims, "nonce", claim(&c.nonce, NONCE));
    put(&mut claims, "exp", time(&c.exp));
    put(&mut claims, "iat", time(&c.iat));
    put(&mut claims, "nbf", time(&c.nbf));
    put(&mut claims, "email", claim(&c.email, "alice@fabrikam.example"));
    put(&mut claims, "email_verified", claim(&c.email_verified, "true"));
    if let Some(name) = c.name {
        claims.insert("name".into(), json!(name));
    }
    Value::Object(claims)
}

fn sign_ec(signing_input: &str) -> String {
    let f = &*FIXTURE;
    let signature = f.ec.sign(&f.rng, signing_input.as_bytes()).expect("ecdsa signs");
    URL_SAFE_NO_PAD.encode(signature.as_ref())
}

fn assemble(header: &Value, claims: &Value, signature: &Signature<'_>, layout: &Layout<'_>) -> String {
    let encode = |bytes: &[u8]| match layout {
        Layout::Padded => URL_SAFE.encode(bytes),
        _ => URL_SAFE_NO_PAD.encode(bytes),
    };
    let header_part = match layout {
        Layout::RawHeader(bytes) => encode(bytes),
        _ => encode(header.to_string().as_bytes()),
    };
    let claims_part = match layout {
        Layout::RawClaims(bytes) => encode(bytes),
        _ => encode(claims.to_string().as_bytes()),
    };
    let signing_input = format!("{header_part}.{claims_part}");
    if let Layout::TwoParts = layout {
        return signing_input;
    }
    let signature = match signature {
        Signature::Ec => sign_ec(&signing_input),
        Signature::Raw(bytes) => URL_SAFE_NO_PAD.encode(bytes),
        Signature::Text(text) => (*text).to_owned(),
        Signature::Empty => String::new(),
    };
    let mut token = format!("{signing_input}.{signature}");
    if let Layout::Appended(text) = layout {
        token.push('.');
        token.push_str(text);
    }
    token
}

/// Whether a structured token meets every rule, so that it must be
/// accepted (a conservative subset: no extras, plain offsets).
fn must_accept(
    header: &HeaderCase<'_>,
    claims: &ClaimsCase<'_>,
    signature: &Signature<'_>,
    layout: &Layout<'_>,
) -> bool {
    let header_ok = matches!(header.alg, Alg::Es256)
        && matches!(header.kid, Kid::Ec | Kid::Missing)
        && !header.crit
        && header.extra.is_none();
    let audience_ok = match (&claims.aud, &claims.azp) {
        (Claim::Expected, Claim::Missing | Claim::Expected) => true,
        (Claim::ExpectedAmong(_), Claim::Expected) => true,
        (Claim::ExpectedAmong(others), Claim::Missing) => others.is_empty(),
        _ => false,
    };
    let exp_ok = matches!(claims.exp, Time::Offset(s) if i64::from(s) + LEEWAY > 0);
    let iat_ok = matches!(claims.iat, Time::Offset(s) if i64::from(s) <= LEEWAY);
    let nbf_ok = match claims.nbf {
        Time::Missing => true,
        Time::Offset(s) => i64::from(s) <= LEEWAY,
        _ => false,
    };
    header_ok
        && matches!(signature, Signature::Ec)
        && matches!(layout, Layout::Compact)
        && matches!(claims.iss, Claim::Expected)
        && matches!(claims.sub, Claim::Expected)
        && matches!(claims.nonce, Claim::Expected)
        && audience_ok
        && exp_ok
        && iat_ok
        && nbf_ok
        && claims.extra.is_empty()
}

// ---------------------------------------------------------------- the oracle

fn decode_part(part: &str) -> Map<String, Value> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .expect("an accepted token's part is base64url");
    match serde_json::from_slice(&bytes).expect("an accepted token's part is json") {
        Value::Object(map) => map,
        other => panic!("an accepted token's part is {other}"),
    }
}

/// A NumericDate as the relying party reads it: seconds, a fraction dropped.
fn seconds(value: Option<&Value>, name: &str) -> Option<i64> {
    let value = value?;
    let n = value
        .as_number()
        .unwrap_or_else(|| panic!("accepted a non-numeric `{name}`: {value}"));
    Some(
        n.as_i64()
            .unwrap_or_else(|| n.as_f64().expect("a number").floor() as i64),
    )
}

/// Everything an accepted token must satisfy, checked without the crate.
fn check_accepted(token: &str, identity: &ExternalIdentity) {
    let f = &*FIXTURE;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token that is not a compact jws");
    let header = decode_part(parts[0]);
    assert!(!header.contains_key("crit"), "accepted a `crit` header");
    let alg = header.get("alg").and_then(Value::as_str);
    let kid = header.get("kid").map(|k| k.as_str().expect("a string kid"));
    let message = format!("{}.{}", parts[0], parts[1]);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("a base64url signature");
    match alg {
        Some("ES256") => {
            assert!(matches!(kid, None | Some(EC_KID)), "ES256 with kid {kid:?}");
            sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &f.ec_public)
                .verify(message.as_bytes(), &signature)
                .expect("an accepted ES256 signature verifies");
        }
        Some("RS256") => {
            assert!(matches!(kid, None | Some(RSA_KID)), "RS256 with kid {kid:?}");
            f.rsa_public
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &signature)
                .expect("an accepted RS256 signature verifies");
        }
        other => panic!("accepted alg {other:?}"),
    }

    let claims = decode_part(parts[1]);
    assert_eq!(claims.get("iss"), Some(&json!(ISSUER)), "iss");
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().expect("string audiences"))
            .collect(),
        other => panic!("accepted aud {other:?}"),
    };
    assert!(audiences.contains(&CLIENT_ID), "aud {audiences:?}");
    match claims.get("azp") {
        None | Some(Value::Null) => assert_eq!(audiences.len(), 1, "several audiences without azp"),
        Some(azp) => assert_eq!(azp, &json!(CLIENT_ID), "azp"),
    }
    let now = NOW.unix_timestamp();
    let exp = seconds(claims.get("exp"), "exp").expect("an accepted token has exp");
    assert!(now < exp + LEEWAY, "accepted an expired token (exp {exp})");
    let iat = seconds(claims.get("iat"), "iat").expect("an accepted token has iat");
    assert!(
        iat <= now + LEEWAY,
        "accepted a token issued in the future (iat {iat})"
    );
    if let Some(nbf) = seconds(claims.get("nbf"), "nbf") {
        assert!(nbf <= now + LEEWAY, "accepted a token not valid yet (nbf {nbf})");
    }
    assert_eq!(claims.get("nonce"), Some(&json!(NONCE)), "nonce");
    let sub = claims.get("sub").and_then(Value::as_str).expect("a string sub");
    assert!(!sub.is_empty() && sub.chars().count() <= 255 && !sub.chars().any(char::is_control));

    assert_eq!(identity.provider_id, PROVIDER_ID);
    assert_eq!(identity.issuer, ISSUER);
    assert_eq!(identity.subject, sub);
    if identity.email.is_some() {
        assert!(
            claims.get("email").is_some_and(Value::is_string),
            "email from nowhere"
        );
    }
    if identity.email_verified {
        assert!(identity.email.is_some(), "verified without an address");
        let verified = claims.get("email_verified");
        assert!(
            verified == Some(&json!(true)) || verified == Some(&json!("true")),
            "verified by {verified:?}"
        );
    }
    for text in [&identity.name, &identity.given_name, &identity.family_name]
        .into_iter()
        .flatten()
    {
        assert!(
            !text.is_empty() && text.trim() == text && !text.chars().any(char::is_control),
            "{text:?}"
        );
    }
}

fn check_token(token: &str) -> bool {
    match FIXTURE.validator.validate(token, NONCE, NOW) {
        Ok(identity) => {
            check_accepted(token, &identity);
            true
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.ends_with('.'), "{text:?}");
            false
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Case<'a> {
    Callback {
        params: Vec<(Param<'a>, &'a str)>,
        question_mark: bool,
        plus: bool,
    },
    Token {
        header: HeaderCase<'a>,
        claims: ClaimsCase<'a>,
        signature: Signature<'a>,
        layout: Layout<'a>,
    },
}

fuzz_target!(|data: &[u8]| {
    // Raw input, as a callback query and as a token.
    let lossy = String::from_utf8_lossy(data);
    if let Ok(text) = std::str::from_utf8(data) {
        check_callback_text(text);
    }
    check_callback_text(&lossy);
    check_token(&lossy);

    // Structured input.
    let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    match case {
        Case::Callback {
            params,
            question_mark,
            plus,
        } => check_callback_params(&params, question_mark, plus),
        Case::Token {
            header,
            claims,
            signature,
            layout,
        } => {
            let token = assemble(&header_json(&header), &claims_json(&claims), &signature, &layout);
            let accepted = check_token(&token);
            if must_accept(&header, &claims, &signature, &layout) {
                assert!(
                    accepted,
                    "refused a valid token: {:?} for {token}",
                    FIXTURE.validator.validate(&token, NONCE, NOW)
                );
            }
        }
    }
});
