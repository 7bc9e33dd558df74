//! The provider's signing keys (a JWKS document) and ID token signatures:
//! header inspection, key selection, verification.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::config::algorithm_name;
use crate::http::HttpResponse;
use crate::idp::provider::{IdTokenError, IdpError, sanitize};

/// Longest ID token read, in bytes.
pub(crate) const MAX_ID_TOKEN_LEN: usize = 64 * 1024;
/// Most keys read from one key set.
const MAX_KEYS: usize = 100;

fn jwks_error(reason: impl Into<String>) -> IdpError {
    IdpError::Jwks {
        reason: reason.into(),
    }
}

fn malformed(reason: impl Into<String>) -> IdpError {
    IdpError::IdToken(IdTokenError::Malformed {
        reason: reason.into(),
    })
}

#[derive(serde::Deserialize)]
struct RawSet<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

/// Reads a JWKS response with jsonwebtoken's [`Jwk`] parser. Keys it cannot
/// read (an unknown `kty`, say) are skipped rather than failing the whole
/// set, so a provider adding a new key type breaks nothing; a set with no
/// readable key at all is refused.
pub(crate) fn parse(response: &HttpResponse) -> Result<JwkSet, IdpError> {
    if !response.status().is_success() {
        return Err(jwks_error(format!(
            "the key set answered with status {}",
            response.status().as_u16()
        )));
    }
    parse_body(response.body())
}

/// Reads a JWKS document (the body of a key set response), as [`parse`]
/// does after the status check.
pub(crate) fn parse_body(body: &[u8]) -> Result<JwkSet, IdpError> {
    let raw: RawSet<'_> =
        serde_json::from_slice(body).map_err(|_| jwks_error("the body is not a json key set"))?;
    if raw.keys.len() > MAX_KEYS {
        return Err(jwks_error(format!("the key set has more than {MAX_KEYS} keys")));
    }
    let keys: Vec<Jwk> = raw
        .keys
        .iter()
        .filter_map(|key| serde_json::from_str::<Jwk>(key.get()).ok())
        .collect();
    if keys.is_empty() {
        return Err(jwks_error("the key set has no readable keys"));
    }
    Ok(JwkSet { keys })
}

/// What the ID token's JOSE header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHeader {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
}

/// Reads the header of a compact JWS. Its `alg` must be one of `allowed`
/// (so never `none`, never HMAC) before anything else is looked at;
/// `crit` is refused; encrypted tokens (JWE) are not supported.
pub(crate) fn read_header(token: &str, allowed: &[Algorithm]) -> Result<TokenHeader, IdpError> {
    if token.len() > MAX_ID_TOKEN_LEN {
        return Err(malformed(format!(
            "the token is longer than {MAX_ID_TOKEN_LEN} bytes"
        )));
    }
    match token.bytes().filter(|&b| b == b'.').count() {
        2 => {}
        4 => return Err(malformed("encrypted id tokens are not supported")),
        _ => return Err(malformed("the token is not a compact jws")),
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| malformed("the header is not base64url"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| malformed("the header is not a json object"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the header has no `alg`"))?;
    let Some(&allowed_alg) = allowed.iter().find(|a| algorithm_name(**a) == alg) else {
        return Err(IdpError::AlgorithmNotAllowed {
            alg: sanitize(alg, 32),
        });
    };
    if header.contains_key("crit") {
        return Err(malformed("critical header parameters are not supported"));
    }
    let decoded = jsonwebtoken::decode_header(token).map_err(|_| malformed("the header does not decode"))?;
    if decoded.alg != allowed_alg {
        return Err(malformed("the header does not decode"));
    }
    let kid = match decoded.kid {
        Some(kid) if kid.is_empty() || kid.len() > 256 => {
            return Err(malformed("the header's `kid` is empty or too long"));
        }
        other => other,
    };
    Ok(TokenHeader {
        alg: allowed_alg,
        kid,
    })
}

/// Whether `key` may verify `alg` signatures: its `use` (if any) is `sig`,
/// its `key_ops` (if any) include `verify`, its `alg` (if any) is `alg`, and
/// its type and curve fit `alg`. Symmetric (`oct`) keys never fit.
pub(crate) fn fits(key: &Jwk, alg: Algorithm) -> bool {
    if key
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return false;
    }
    if key
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return false;
    }
    if key
        .common
        .key_algorithm
        .is_some_and(|key_alg| key_alg.to_string() != algorithm_name(alg))
    {
        return false;
    }
    match (&key.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => ec.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => ec.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => okp.curve == EllipticCurve::Ed25519,
        _ => false,
    }
}

/// Picks the key for a token: the key named by `kid` (which must fit the
/// algorithm), or, without `kid`, the only key of the set that fits.
///
/// [`IdpError::UnknownKey`] (no key with that `kid`, or none fits a token
/// without `kid`) is the one outcome a re-fetch of the set may change.
pub(crate) fn select_key(set: &JwkSet, header: &TokenHeader) -> Result<DecodingKey, IdpError> {
    let named: Vec<&Jwk> = match &header.kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
            .collect(),
        None => set.keys.iter().collect(),
    };
    let shown_kid = header.kid.as_deref().map(|k| sanitize(k, 64));
    if header.kid.is_some() && named.is_empty() {
        return Err(IdpError::UnknownKey { kid: shown_kid });
    }
    let usable: Vec<&Jwk> = named.into_iter().filter(|k| fits(k, header.alg)).collect();
    match usable.as_slice() {
        [] if header.kid.is_some() => Err(IdpError::KeyAlgorithmMismatch {
            kid: shown_kid,
            alg: algorithm_name(header.alg).to_owned(),
        }),
        [] => Err(IdpError::UnknownKey { kid: None }),
        [key] => DecodingKey::from_jwk(key).map_err(|_| {
            jwks_error(match &shown_kid {
                Some(kid) => format!("key `{kid}` is not a valid public key"),
                None => "the key is not a valid public key".to_owned(),
            })
        }),
        _ => Err(IdpError::AmbiguousKey),
    }
}

/// Verifies the signature with `key` and returns the claims, checking
/// nothing else: every claim, the times included, is checked afterwards
/// against the injected clock (jsonwebtoken would read the system clock).
pub(crate) fn verify(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Map<String, Value>, IdpError> {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => IdpError::BadSignature,
                ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
                    jwks_error("the key does not fit the token's algorithm")
                }
                ErrorKind::InvalidAlgorithm => IdpError::AlgorithmNotAllowed {
                    alg: algorithm_name(alg).to_owned(),
                },
                ErrorKind::Json(_) => malformed("the claims are not a json object"),
                ErrorKind::Base64(_) => malformed("a part is not base64url"),
                _ => malformed("the token does not decode"),
            }
        })
}
