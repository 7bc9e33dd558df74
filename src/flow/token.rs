//! The completion token: a signed JWT issued to the application when a
//! self-service sign-up or an invitation redemption completes, the JWKS
//! document that publishes the keys it is checked with, and a verifier for
//! the host application.
//!
//! - Keys are asymmetric only: ES256 (ECDSA on P-256 with SHA-256) or EdDSA
//!   (Ed25519). Each key has a key id (`kid`) and one algorithm pinned to it.
//! - [`TokenKeys`] holds one signing key plus older keys that still verify,
//!   so keys rotate without breaking tokens already handed out. Its
//!   [`TokenKeys::jwks`] is the document to publish.
//! - [`issue`] is pure: the claims and the time are inputs.
//! - [`TokenVerifier`] trusts only the algorithm of the key named by the
//!   token's `kid` (never the token's own choice), refuses `none` and every
//!   HMAC algorithm, never tries other keys, and checks `exp`, `nbf` and
//!   `iat` against the time it is given, not the system clock.
//!
//! ```
//! use guestpass::directory::UserType;
//! use guestpass::email::EmailAddress;
//! use guestpass::flow::token::{
//!     self, CompletionClaims, Jwks, TokenAlgorithm, TokenKeys, TokenSigningKey, TokenVerifier,
//! };
//! use guestpass::id::Id;
//! use guestpass::random::SystemRandom;
//! use time::{Duration, macros::datetime};
//!
//! let rng = SystemRandom::new();
//! let keys = TokenKeys::new(TokenSigningKey::generate("2026-01", TokenAlgorithm::Es256, &rng)?);
//! let issuer = "https://login.contoso.example/5b3e8a34-8f52-4b8c-9a43-1a2b3c4d5e6f/v2.0";
//!
//! // The authorization side: sign-up completed, issue the token.
//! let now = datetime!(2026-03-01 09:00 UTC);
//! let claims = CompletionClaims {
//!     issuer: issuer.into(),
//!     audience: "6731de76-14a6-49ae-97bc-6eba6914391e".into(),
//!     subject: Id::random(&rng)?,
//!     tenant_id: "5b3e8a34-8f52-4b8c-9a43-1a2b3c4d5e6f".parse()?,
//!     email: EmailAddress::parse("alice@fabrikam.example")?,
//!     identity_provider: "mail".into(),
//!     user_type: UserType::Guest,
//!     amr: vec!["otp".into()],
//!     acr: None,
//!     nonce: Some("n-0S6_WzA2Mj".into()),
//!     token_id: token::new_token_id(&rng)?,
//!     lifetime: token::DEFAULT_TOKEN_LIFETIME,
//! };
//! let jwt = token::issue(&keys, &claims, now)?;
//!
//! // Publish the public keys, for example at `/discovery/v2.0/keys`.
//! let published = serde_json::to_string(&keys.jwks())?;
//!
//! // The application side: load the JWKS and check the token.
//! let jwks: Jwks = serde_json::from_str(&published)?;
//! let verifier = TokenVerifier::from_jwks(&jwks, issuer, "6731de76-14a6-49ae-97bc-6eba6914391e")?;
//! let verified = verifier.verify_with_nonce(&jwt, "n-0S6_WzA2Mj", now + Duration::minutes(5))?;
//! assert_eq!(verified.email, "alice@fabrikam.example");
//! assert_eq!(verified.amr, ["otp"]);
//! assert!(verifier.verify(&jwt, now + Duration::hours(2)).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::directory::UserType;
use crate::email::EmailAddress;
use crate::id::Id;
use crate::random::SecureRandom;
use crate::secret::{SecretBytes, SecretString};

/// Longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;
/// Longest token [`TokenVerifier::verify`] looks at, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Lifetime of a token unless the claims ask for another.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::hours(1);
/// Longest lifetime a token may be issued with.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::hours(24);
/// Clock skew a [`TokenVerifier`] tolerates unless told otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::seconds(30);
/// Largest clock skew a [`TokenVerifier`] may be told to tolerate.
pub const MAX_LEEWAY: Duration = Duration::minutes(5);
/// Longest `nonce`, in bytes.
pub const MAX_NONCE_LEN: usize = 256;
/// The `ver` claim of every token this module issues.
pub const TOKEN_VERSION: &str = "2.0";

const MAX_TEXT_CLAIM_LEN: usize = 256;
const MAX_AMR_ENTRIES: usize = 16;
const MAX_AMR_LEN: usize = 32;
const MAX_TOKEN_ID_LEN: usize = 128;
const PROBE: &[u8] = b"guestpass token key check";

/// Why a key could not be used, a token not issued, or a token not accepted.
///
/// Messages never contain a token, a signature or private key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// A key id is empty, too long or has characters outside `A-Z a-z 0-9 - _ . ~`.
    #[error("key id `{kid}` must be 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 - _ . ~")]
    InvalidKeyId {
        /// The key id as given, escaped and cut to 64 characters.
        kid: String,
    },
    /// Private key material could not be read, or does not fit its algorithm.
    #[error("{algorithm} key `{kid}` is not usable: {reason}")]
    InvalidKey {
        /// The key id.
        kid: String,
        /// The algorithm the key was meant for.
        algorithm: TokenAlgorithm,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two keys in one ring or JWKS share a key id.
    #[error("key id `{kid}` is used twice")]
    DuplicateKeyId {
        /// The key id.
        kid: String,
    },
    /// A JWKS document holds a key that cannot be used.
    #[error("invalid jwks: {reason}")]
    InvalidJwks {
        /// What is wrong, naming the key id where there is one.
        reason: String,
    },
    /// A claim to be issued is missing or out of range.
    #[error("invalid claim `{claim}`: {reason}")]
    InvalidClaim {
        /// The claim, by its JWT name.
        claim: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A verifier setting is out of range.
    #[error("invalid token setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The random generator failed while making a key or a token id.
    #[error("secure random generator unavailable")]
    RandomUnavailable,
    /// Signing failed inside the cryptographic backend.
    #[error("token signing failed")]
    Signing,
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token is {len} bytes, longer than the {max} accepted")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not a compact JWS with a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm that is never accepted (`none`, HMAC,
    /// or one this library does not sign with).
    #[error("token algorithm `{alg}` is not accepted")]
    UnsupportedAlgorithm {
        /// The algorithm named, or `?` when it is not a plausible name.
        alg: String,
    },
    /// The header's `typ` is present and not `JWT`.
    #[error("token type is not `JWT`")]
    WrongType,
    /// The header has no `kid`.
    #[error("token header has no `kid`")]
    MissingKeyId,
    /// No key with the header's `kid` is known.
    #[error("token signed with unknown key `{kid}`")]
    UnknownKey {
        /// The key id from the header.
        kid: String,
    },
    /// The header's `alg` is not the algorithm of the key its `kid` names.
    #[error("token algorithm `{found}` does not match the `{expected}` key `{kid}`")]
    AlgorithmMismatch {
        /// The key id.
        kid: String,
        /// The key's algorithm.
        expected: TokenAlgorithm,
        /// The algorithm named in the header.
        found: String,
    },
    /// The signature does not verify with the named key.
    #[error("token signature does not verify")]
    BadSignature,
    /// A claim the token must carry is absent.
    #[error("token has no `{claim}` claim")]
    MissingClaim {
        /// The claim.
        claim: &'static str,
    },
    /// A claim in the token is not of the expected form.
    #[error("token claim `{claim}` is invalid")]
    InvalidTokenClaim {
        /// The claim.
        claim: &'static str,
    },
    /// `iss` is not the expected issuer.
    #[error("token was issued by another issuer")]
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    #[error("token is for another audience")]
    WrongAudience,
    /// `exp`, plus the leeway, has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` or `iat`, minus the leeway, is still in the future.
    #[error("token is not yet valid")]
    NotYetValid,
    /// The `nonce` is absent or not the one the application sent.
    #[error("token nonce does not match the request")]
    NonceMismatch,
}

/// A signature algorithm a token key can be pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenAlgorithm {
    /// ECDSA on P-256 with SHA-256 (`ES256`).
    Es256,
    /// Ed25519 (`EdDSA`).
    EdDsa,
}

impl TokenAlgorithm {
    /// The JOSE name: `ES256` or `EdDSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAlgorithm::Es256 => "ES256",
            TokenAlgorithm::EdDsa => "EdDSA",
        }
    }

    fn from_jose(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(TokenAlgorithm::Es256),
            "EdDSA" => Some(TokenAlgorithm::EdDsa),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            TokenAlgorithm::Es256 => Algorithm::ES256,
            TokenAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }

    fn encoding_key(self, pkcs8: &[u8]) -> EncodingKey {
        match self {
            TokenAlgorithm::Es256 => EncodingKey::from_ec_der(pkcs8),
            TokenAlgorithm::EdDsa => EncodingKey::from_ed_der(pkcs8),
        }
    }
}

impl fmt::Display for TokenAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KEY_ID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

fn check_kid(kid: &str) -> Result<(), TokenError> {
    if valid_kid(kid) {
        Ok(())
    } else {
        Err(TokenError::InvalidKeyId {
            kid: kid.escape_debug().take(MAX_KEY_ID_LEN).collect(),
        })
    }
}

/// A public key with its key id and pinned algorithm; what a JWKS entry holds.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPublicKey {
    kid: String,
    algorithm: TokenAlgorithm,
    /// ES256: the 64 bytes `x || y`; EdDSA: the 32-byte public key.
    point: Vec<u8>,
}

impl TokenPublicKey {
    fn new(kid: String, algorithm: TokenAlgorithm, point: Vec<u8>) -> Result<Self, TokenError> {
        check_kid(&kid)?;
        let key = Self {
            kid,
            algorithm,
            point,
        };
        // A dummy signature of the right length: a usable key answers "does
        // not verify", an unusable one (not on the curve) fails outright,
        // and a degenerate one would accept it.
        let dummy = URL_SAFE_NO_PAD.encode([0u8; 64]);
        match jsonwebtoken::crypto::verify(&dummy, PROBE, &key.decoding_key(), algorithm.jwt()) {
            Ok(false) => Ok(key),
            Ok(true) | Err(_) => Err(TokenError::InvalidJwks {
                reason: format!("key `{}` is not a valid {algorithm} public key", key.kid),
            }),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm pinned to the key.
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }

    fn decoding_key(&self) -> DecodingKey {
        match self.algorithm {
            TokenAlgorithm::Es256 => {
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(0x04);
                sec1.extend_from_slice(&self.point);
                DecodingKey::from_ec_der(&sec1)
            }
            TokenAlgorithm::EdDsa => DecodingKey::from_ed_der(&self.point),
        }
    }

    /// The key as a JWKS entry (`use` is `sig`, `alg` is set).
    pub fn to_jwk(&self) -> Jwk {
        let (kty, crv, x, y) = match self.algorithm {
            TokenAlgorithm::Es256 => {
                let (x, y) = self.point.split_at(self.point.len() / 2);
                (
                    "EC",
                    "P-256",
                    URL_SAFE_NO_PAD.encode(x),
                    Some(URL_SAFE_NO_PAD.encode(y)),
                )
            }
            TokenAlgorithm::EdDsa => ("OKP", "Ed25519", URL_SAFE_NO_PAD.encode(&self.point), None),
        };
        Jwk {
            kty: kty.to_owned(),
            crv: Some(crv.to_owned()),
            x: Some(x),
            y,
            kid: Some(self.kid.clone()),
            public_key_use: Some("sig".to_owned()),
            alg: Some(self.algorithm.as_str().to_owned()),
        }
    }

    /// Reads a JWKS entry. It must be an EC P-256 key (`ES256`) or an OKP
    /// Ed25519 key (`EdDSA`) with a `kid`; an absent `alg` is taken from the
    /// curve, a present one must fit it; `use`, when present, must be `sig`.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidJwks`] naming what is wrong (symmetric `oct`
    /// keys are always refused), [`TokenError::InvalidKeyId`].
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, TokenError> {
        let invalid = |reason: String| TokenError::InvalidJwks { reason };
        let kid = jwk
            .kid
            .as_deref()
            .ok_or_else(|| invalid("a key has no `kid`".to_owned()))?;
        check_kid(kid)?;
        if let Some(u) = jwk.public_key_use.as_deref()
            && u != "sig"
        {
            return Err(invalid(format!("key `{kid}` is not for signatures")));
        }
        let algorithm = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some("P-256")) => TokenAlgorithm::Es256,
            ("OKP", Some("Ed25519")) => TokenAlgorithm::EdDsa,
            ("oct", _) => {
                return Err(invalid(format!(
                    "key `{kid}` is symmetric; only public keys are accepted"
                )));
            }
            _ => return Err(invalid(format!("key `{kid}` is of an unsupported type or curve"))),
        };
        if let Some(alg) = jwk.alg.as_deref()
            && alg != algorithm.as_str()
        {
            return Err(invalid(format!(
                "key `{kid}` names an algorithm that does not fit its curve"
            )));
        }
        let coordinate = |value: Option<&String>, name: &str| -> Result<Vec<u8>, TokenError> {
            let value = value.ok_or_else(|| invalid(format!("key `{kid}` has no `{name}`")))?;
            match URL_SAFE_NO_PAD.decode(value) {
                Ok(bytes) if bytes.len() == 32 => Ok(bytes),
                _ => Err(invalid(format!("key `{kid}` has a malformed `{name}`"))),
            }
        };
        let mut point = coordinate(jwk.x.as_ref(), "x")?;
        match algorithm {
            TokenAlgorithm::Es256 => point.extend(coordinate(jwk.y.as_ref(), "y")?),
            TokenAlgorithm::EdDsa if jwk.y.is_some() => {
                return Err(invalid(format!(
                    "key `{kid}` has a `y`, which Ed25519 keys do not"
                )));
            }
            TokenAlgorithm::EdDsa => {}
        }
        Self::new(kid.to_owned(), algorithm, point)
    }
}

impl fmt::Debug for TokenPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPublicKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A private signing key with its key id and pinned algorithm.
///
/// `Debug` shows the key id and algorithm only. The private key is reachable
/// only through [`TokenSigningKey::export_pkcs8_der`] and
/// [`TokenSigningKey::export_pkcs8_pem`], for storing it.
#[derive(Clone)]
pub struct TokenSigningKey {
    pkcs8: SecretBytes,
    public: TokenPublicKey,
    signer: std::sync::Arc<Signer>,
}

/// The parsed private key, kept so that signing does not parse it again.
enum Signer {
    /// ring's ECDSA P-256 (fixed-length `r || s`, the JWS encoding).
    Es256(ring::signature::EcdsaKeyPair),
    /// ring's Ed25519.
    EdDsa(ring::signature::Ed25519KeyPair),
    /// A key ring does not read (it accepts fewer PKCS#8 variants than the
    /// JWT library): signed by the JWT library, parsing it each time.
    Parsed,
}

impl Signer {
    fn new(algorithm: TokenAlgorithm, pkcs8: &[u8]) -> Self {
        match algorithm {
            TokenAlgorithm::Es256 => ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                pkcs8,
                &ring::rand::SystemRandom::new(),
            )
            .map_or(Signer::Parsed, Signer::Es256),
            TokenAlgorithm::EdDsa => ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                .map_or(Signer::Parsed, Signer::EdDsa),
        }
    }
}

impl TokenSigningKey {
    /// A fresh key drawn from `rng`.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidKeyId`]; [`TokenError::RandomUnavailable`] when
    /// the generator fails.
    pub fn generate(
        kid: impl Into<String>,
        algorithm: TokenAlgorithm,
        rng: &dyn SecureRandom,
    ) -> Result<Self, TokenError> {
        let kid = kid.into();
        check_kid(&kid)?;
        let pkcs8 = match algorithm {
            TokenAlgorithm::Es256 => {
                let scalar = random_p256_scalar(rng)?;
                let bare = SecretBytes::new(p256_pkcs8(&scalar, None));
                let point = p256_public(&kid, bare.expose())?;
                p256_pkcs8(&scalar, Some(&point))
            }
            TokenAlgorithm::EdDsa => {
                let mut seed = [0u8; 32];
                rng.fill(&mut seed).map_err(|_| TokenError::RandomUnavailable)?;
                ed25519_pkcs8(&seed)
            }
        };
        Self::from_pkcs8_der(kid, algorithm, &pkcs8)
    }

    /// A key from its PKCS#8 DER encoding (as `openssl genpkey` or ring's
    /// `generate_pkcs8` write it).
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidKeyId`]; [`TokenError::InvalidKey`] when the
    /// bytes are not a PKCS#8 key for `algorithm`.
    pub fn from_pkcs8_der(
        kid: impl Into<String>,
        algorithm: TokenAlgorithm,
        der: &[u8],
    ) -> Result<Self, TokenError> {
        let kid = kid.into();
        check_kid(&kid)?;
        let pkcs8 = SecretBytes::new(der);
        let point = match algorithm {
            TokenAlgorithm::Es256 => p256_public(&kid, pkcs8.expose())?,
            TokenAlgorithm::EdDsa => {
                ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.expose())
                    .map(|pair| ring::signature::KeyPair::public_key(&pair).as_ref().to_vec())
                    .map_err(|_| TokenError::InvalidKey {
                        kid: kid.clone(),
                        algorithm,
                        reason: "not a PKCS#8 Ed25519 private key",
                    })?
            }
        };
        let public = TokenPublicKey {
            kid,
            algorithm,
            point,
        };
        let signer = std::sync::Arc::new(Signer::new(algorithm, pkcs8.expose()));
        let key = Self {
            pkcs8,
            public,
            signer,
        };
        key.self_check()?;
        Ok(key)
    }

    /// A key from a PEM `PRIVATE KEY` block (PKCS#8).
    ///
    /// # Errors
    ///
    /// As [`TokenSigningKey::from_pkcs8_der`], and [`TokenError::InvalidKey`]
    /// when the text is not a single PKCS#8 PEM block.
    pub fn from_pkcs8_pem(
        kid: impl Into<String>,
        algorithm: TokenAlgorithm,
        pem: &str,
    ) -> Result<Self, TokenError> {
        let kid = kid.into();
        check_kid(&kid)?;
        let bad = |reason| TokenError::InvalidKey {
            kid: kid.clone(),
            algorithm,
            reason,
        };
        let body = pem
            .trim()
            .strip_prefix("-----BEGIN PRIVATE KEY-----")
            .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----"))
            .ok_or_else(|| bad("expected one PEM `PRIVATE KEY` (PKCS#8) block"))?;
        let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = SecretBytes::new(
            STANDARD
                .decode(compact)
                .map_err(|_| bad("PEM body is not base64"))?,
        );
        Self::from_pkcs8_der(kid, algorithm, der.expose())
    }

    /// Signs `message` (the JWS signing input) and returns the base64url
    /// signature.
    fn sign(&self, message: &[u8]) -> Result<String, TokenError> {
        match self.signer.as_ref() {
            Signer::Es256(pair) => pair
                .sign(&ring::rand::SystemRandom::new(), message)
                .map(|sig| URL_SAFE_NO_PAD.encode(sig.as_ref()))
                .map_err(|_| TokenError::Signing),
            Signer::EdDsa(pair) => Ok(URL_SAFE_NO_PAD.encode(pair.sign(message).as_ref())),
            Signer::Parsed => {
                jsonwebtoken::crypto::sign(message, &self.encoding_key(), self.public.algorithm.jwt())
                    .map_err(|_| TokenError::Signing)
            }
        }
    }

    /// Signs a probe with the private key and checks it with the public one,
    /// so a key whose halves disagree is refused before it is published.
    fn self_check(&self) -> Result<(), TokenError> {
        let alg = self.public.algorithm.jwt();
        let verified = self
            .sign(PROBE)
            .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into())
            .and_then(|sig| jsonwebtoken::crypto::verify(&sig, PROBE, &self.public.decoding_key(), alg));
        match verified {
            Ok(true) => Ok(()),
            _ => Err(TokenError::InvalidKey {
                kid: self.public.kid.clone(),
                algorithm: self.public.algorithm,
                reason: "the private key does not produce verifiable signatures",
            }),
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        self.public.algorithm.encoding_key(self.pkcs8.expose())
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The algorithm pinned to the key.
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.public.algorithm
    }

    /// The public half.
    pub fn public_key(&self) -> &TokenPublicKey {
        &self.public
    }

    /// The private key in PKCS#8 DER, for storing it.
    pub fn export_pkcs8_der(&self) -> SecretBytes {
        self.pkcs8.clone()
    }

    /// The private key as a PEM `PRIVATE KEY` block, for storing it.
    pub fn export_pkcs8_pem(&self) -> SecretString {
        let body = STANDARD.encode(self.pkcs8.expose());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.extend(line.iter().map(|b| char::from(*b)));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        SecretString::new(pem)
    }
}

impl fmt::Debug for TokenSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigningKey")
            .field("kid", &self.public.kid)
            .field("algorithm", &self.public.algorithm)
            .field("private_key", &self.pkcs8)
            .finish()
    }
}

/// The order of P-256, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// A uniformly random private scalar in `1..n`, by rejection sampling (a
/// draw is redrawn with probability about 2^-32).
fn random_p256_scalar(rng: &dyn SecureRandom) -> Result<SecretBytes, TokenError> {
    for _ in 0..64 {
        let mut draw = [0u8; 32];
        rng.fill(&mut draw).map_err(|_| TokenError::RandomUnavailable)?;
        let in_range = draw.iter().any(|b| *b != 0) && draw[..] < P256_ORDER[..];
        let scalar = SecretBytes::new(draw.to_vec());
        draw.fill(0);
        if in_range {
            return Ok(scalar);
        }
    }
    Err(TokenError::RandomUnavailable)
}

/// PKCS#8 (RFC 5208) wrapping an RFC 5915 `ECPrivateKey` for P-256,
/// optionally with its public point (`x || y`).
fn p256_pkcs8(scalar: &SecretBytes, point: Option<&[u8]>) -> Vec<u8> {
    const ALGORITHM: [u8; 21] = [
        0x30, 0x13, // AlgorithmIdentifier
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // prime256v1
    ];
    let mut ec = vec![0x02, 0x01, 0x01, 0x04, 0x20];
    ec.extend_from_slice(scalar.expose());
    if let Some(point) = point {
        ec.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00, 0x04]);
        ec.extend_from_slice(point);
    }
    // Every length here is below 128 except the outer one with a point (135).
    let mut octets = vec![0x04, (ec.len() + 2) as u8, 0x30, ec.len() as u8];
    octets.extend_from_slice(&ec);
    let content_len = 3 + ALGORITHM.len() + octets.len();
    let mut der = if content_len < 128 {
        vec![0x30, content_len as u8]
    } else {
        vec![0x30, 0x81, content_len as u8]
    };
    der.extend_from_slice(&[0x02, 0x01, 0x00]);
    der.extend_from_slice(&ALGORITHM);
    der.extend_from_slice(&octets);
    ec.fill(0);
    octets.fill(0);
    der
}

/// PKCS#8 v1 (RFC 8410) for an Ed25519 seed.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// The public point `x || y` of a P-256 PKCS#8 key.
fn p256_public(kid: &str, pkcs8: &[u8]) -> Result<Vec<u8>, TokenError> {
    let bad = || TokenError::InvalidKey {
        kid: kid.to_owned(),
        algorithm: TokenAlgorithm::Es256,
        reason: "not a PKCS#8 P-256 private key",
    };
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&EncodingKey::from_ec_der(pkcs8), Algorithm::ES256)
        .map_err(|_| bad())?;
    let jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) = jwk.algorithm else {
        return Err(bad());
    };
    let mut point = URL_SAFE_NO_PAD.decode(ec.x).map_err(|_| bad())?;
    point.extend(URL_SAFE_NO_PAD.decode(ec.y).map_err(|_| bad())?);
    if point.len() == 64 { Ok(point) } else { Err(bad()) }
}

/// One entry of a JWKS document (RFC 7517), public parameters only.
///
/// Unknown members are ignored when reading; absent ones are left out when
/// writing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `EC` or `OKP`.
    pub kty: String,
    /// Curve: `P-256` or `Ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// The x coordinate (EC) or the public key (OKP), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// The y coordinate (EC only), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended use; `sig` for every key published here.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub public_key_use: Option<String>,
    /// Algorithm pinned to the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

/// A JWKS document: `{"keys":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// The key ring for completion tokens: one key that signs, plus older public
/// keys that still verify.
///
/// To rotate, call [`TokenKeys::rotate`] with a new key: it signs from then
/// on and the old one stays published until
/// [`TokenKeys::remove_verification_key`] retires it, which should wait
/// until the last token it signed has expired (at most
/// [`MAX_TOKEN_LIFETIME`] plus leeway).
#[derive(Clone)]
pub struct TokenKeys {
    signing: TokenSigningKey,
    verification: Vec<TokenPublicKey>,
}

impl TokenKeys {
    /// A ring that signs with `signing`.
    pub fn new(signing: TokenSigningKey) -> Self {
        Self {
            signing,
            verification: Vec::new(),
        }
    }

    /// Adds a public key that verifies but no longer signs.
    ///
    /// # Errors
    ///
    /// [`TokenError::DuplicateKeyId`] when the key id is already in the ring.
    pub fn with_verification_key(mut self, key: TokenPublicKey) -> Result<Self, TokenError> {
        if self.public_keys().any(|k| k.kid == key.kid) {
            return Err(TokenError::DuplicateKeyId { kid: key.kid });
        }
        self.verification.push(key);
        Ok(self)
    }

    /// Makes `signing` the signing key; the previous one keeps verifying.
    ///
    /// # Errors
    ///
    /// [`TokenError::DuplicateKeyId`] when the new key's id is already in the ring.
    pub fn rotate(self, signing: TokenSigningKey) -> Result<Self, TokenError> {
        if self.public_keys().any(|k| k.kid == signing.public.kid) {
            return Err(TokenError::DuplicateKeyId {
                kid: signing.public.kid,
            });
        }
        let mut verification = vec![self.signing.public];
        verification.extend(self.verification);
        Ok(Self {
            signing,
            verification,
        })
    }

    /// Stops publishing and accepting the verification key `kid`. Returns
    /// whether it was there; the signing key is never removed.
    pub fn remove_verification_key(&mut self, kid: &str) -> bool {
        let before = self.verification.len();
        self.verification.retain(|k| k.kid != kid);
        self.verification.len() != before
    }

    /// The key that signs.
    pub fn signing_key(&self) -> &TokenSigningKey {
        &self.signing
    }

    /// Every published key, the signing key's first.
    pub fn public_keys(&self) -> impl Iterator<Item = &TokenPublicKey> {
        std::iter::once(&self.signing.public).chain(self.verification.iter())
    }

    /// The JWKS document to publish.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.public_keys().map(TokenPublicKey::to_jwk).collect(),
        }
    }
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing", &self.signing)
            .field(
                "verification",
                &self
                    .verification
                    .iter()
                    .map(|k| k.kid.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a completion token says about the user and the sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionClaims {
    /// `iss`: the configured issuer URL, such as
    /// `https://login.contoso.example/<tenant id>/v2.0`. Must be `https`
    /// (`http` only for a loopback host), without query, fragment or
    /// credentials.
    pub issuer: String,
    /// `aud`: the application's client id.
    pub audience: String,
    /// `sub`: the user's object id.
    pub subject: Id,
    /// `tid`: the tenant id.
    pub tenant_id: Id,
    /// `email`: the user's address.
    pub email: EmailAddress,
    /// `idp`: the identity provider the user signed in with, such as `mail`
    /// for email one-time passcodes or an OIDC issuer.
    pub identity_provider: String,
    /// `userType`: `Guest` or `Member`.
    pub user_type: UserType,
    /// `amr`: how the user authenticated, such as `["otp"]` or `["pwd", "mfa"]`.
    pub amr: Vec<String>,
    /// `acr`: the authentication context class, if any.
    pub acr: Option<String>,
    /// `nonce`: echoed from the application's request, if it sent one.
    pub nonce: Option<String>,
    /// `jti`: unique per token; see [`new_token_id`].
    pub token_id: String,
    /// `exp - iat`: more than zero, at most [`MAX_TOKEN_LIFETIME`];
    /// [`DEFAULT_TOKEN_LIFETIME`] unless there is a reason for another.
    pub lifetime: Duration,
}

/// A fresh token id for [`CompletionClaims::token_id`]: 128 random bits, base64url.
///
/// # Errors
///
/// [`TokenError::RandomUnavailable`] when the generator fails.
pub fn new_token_id(rng: &dyn SecureRandom) -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes).map_err(|_| TokenError::RandomUnavailable)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[derive(Serialize)]
struct OutClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: String,
    tid: String,
    email: &'a str,
    idp: &'a str,
    #[serde(rename = "userType")]
    user_type: UserType,
    amr: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
    ver: &'static str,
}

fn claim_error(claim: &'static str, reason: impl Into<String>) -> TokenError {
    TokenError::InvalidClaim {
        claim,
        reason: reason.into(),
    }
}

fn check_text(claim: &'static str, value: &str, max: usize) -> Result<(), TokenError> {
    if value.is_empty() {
        return Err(claim_error(claim, "must not be empty"));
    }
    if value.len() > max {
        return Err(claim_error(claim, format!("must be at most {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(claim_error(claim, "must not contain control characters"));
    }
    Ok(())
}

fn check_issuer(issuer: &str) -> Result<(), TokenError> {
    check_text("iss", issuer, MAX_TEXT_CLAIM_LEN)?;
    let url = url::Url::parse(issuer).map_err(|_| claim_error("iss", format!("`{issuer}` is not a URL")))?;
    let loopback = crate::config::is_loopback(&url);
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        return Err(claim_error("iss", format!("`{issuer}` must be an https URL")));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(claim_error(
            "iss",
            format!("`{issuer}` must not have a query, fragment or credentials"),
        ));
    }
    Ok(())
}

fn check_claims(claims: &CompletionClaims) -> Result<(), TokenError> {
    check_issuer(&claims.issuer)?;
    check_text("aud", &claims.audience, MAX_TEXT_CLAIM_LEN)?;
    check_text("idp", &claims.identity_provider, MAX_TEXT_CLAIM_LEN)?;
    if claims.amr.is_empty() || claims.amr.len() > MAX_AMR_ENTRIES {
        return Err(claim_error(
            "amr",
            format!("must have 1 to {MAX_AMR_ENTRIES} entries"),
        ));
    }
    for method in &claims.amr {
        if method.is_empty() || method.len() > MAX_AMR_LEN || !method.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(claim_error(
                "amr",
                format!("entries must be 1 to {MAX_AMR_LEN} printable ASCII characters"),
            ));
        }
    }
    if let Some(acr) = &claims.acr {
        check_text("acr", acr, MAX_TEXT_CLAIM_LEN)?;
    }
    if let Some(nonce) = &claims.nonce {
        check_text("nonce", nonce, MAX_NONCE_LEN)?;
    }
    if claims.token_id.is_empty()
        || claims.token_id.len() > MAX_TOKEN_ID_LEN
        || !claims
            .token_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        return Err(claim_error(
            "jti",
            format!("must be 1 to {MAX_TOKEN_ID_LEN} characters of A-Z a-z 0-9 - _ . ~"),
        ));
    }
    if claims.lifetime < Duration::seconds(1) || claims.lifetime > MAX_TOKEN_LIFETIME {
        return Err(claim_error(
            "exp",
            format!(
                "lifetime must be 1 to {} seconds",
                MAX_TOKEN_LIFETIME.whole_seconds()
            ),
        ));
    }
    Ok(())
}

/// Issues the completion token: a JWT signed by the ring's signing key, its
/// header naming the key (`kid`) and algorithm, `typ` `JWT`. `iat` and `nbf`
/// are `now` (whole seconds), `exp` is `now` plus the lifetime.
///
/// # Errors
///
/// [`TokenError::InvalidClaim`] naming the first claim out of range;
/// [`TokenError::Signing`] if the backend fails.
pub fn issue(keys: &TokenKeys, claims: &CompletionClaims, now: OffsetDateTime) -> Result<String, TokenError> {
    check_claims(claims)?;
    let iat = now.unix_timestamp();
    let exp = iat
        .checked_add(claims.lifetime.whole_seconds())
        .ok_or_else(|| claim_error("exp", "out of range"))?;
    let out = OutClaims {
        iss: &claims.issuer,
        aud: &claims.audience,
        sub: claims.subject.to_string(),
        tid: claims.tenant_id.to_string(),
        email: claims.email.as_str(),
        idp: &claims.identity_provider,
        user_type: claims.user_type,
        amr: &claims.amr,
        acr: claims.acr.as_deref(),
        nonce: claims.nonce.as_deref(),
        iat,
        nbf: iat,
        exp,
        jti: &claims.token_id,
        ver: TOKEN_VERSION,
    };
    let key = &keys.signing;
    let mut header = Header::new(key.public.algorithm.jwt());
    header.kid = Some(key.public.kid.clone());
    // The compact JWS: base64url(header) . base64url(claims) . base64url(signature).
    let header = serde_json::to_vec(&header).map_err(|_| TokenError::Signing)?;
    let claims = serde_json::to_vec(&out).map_err(|_| TokenError::Signing)?;
    let mut jwt = URL_SAFE_NO_PAD.encode(header);
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut jwt);
    let signature = key.sign(jwt.as_bytes())?;
    jwt.push('.');
    jwt.push_str(&signature);
    Ok(jwt)
}

/// A token that passed every check, with its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// The key that signed it.
    pub key_id: String,
    /// The algorithm it was signed with.
    pub algorithm: TokenAlgorithm,
    /// `iss`.
    pub issuer: String,
    /// `aud`, as a list (a single string becomes one entry).
    pub audience: Vec<String>,
    /// `sub`: the user's object id.
    pub subject: Id,
    /// `tid`: the tenant id.
    pub tenant_id: Id,
    /// `email`.
    pub email: String,
    /// `idp`.
    pub identity_provider: String,
    /// `userType`.
    pub user_type: UserType,
    /// `amr`.
    pub amr: Vec<String>,
    /// `acr`.
    pub acr: Option<String>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `jti`.
    pub token_id: String,
    /// `iat`.
    pub issued_at: OffsetDateTime,
    /// `nbf`.
    pub not_before: OffsetDateTime,
    /// `exp`.
    pub expires_at: OffsetDateTime,
}

/// `leeway` if it is 0 to [`MAX_LEEWAY`].
pub(crate) fn checked_leeway(leeway: Duration) -> Result<Duration, TokenError> {
    if leeway.is_negative() || leeway > MAX_LEEWAY {
        return Err(TokenError::InvalidSetting {
            setting: "leeway",
            reason: format!("must be 0 to {} seconds", MAX_LEEWAY.whole_seconds()),
        });
    }
    Ok(leeway)
}

/// A JWT header as read (shared with the admin tokens of `graph::auth`).
#[derive(Deserialize)]
pub(crate) struct InHeader {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) crit: Option<serde::de::IgnoredAny>,
}

/// A JWT `aud`: one audience or several.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum InAudience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct InClaims {
    iss: Option<String>,
    aud: Option<InAudience>,
    sub: Option<String>,
    tid: Option<String>,
    email: Option<String>,
    idp: Option<String>,
    #[serde(rename = "userType")]
    user_type: Option<UserType>,
    amr: Option<Vec<String>>,
    acr: Option<String>,
    nonce: Option<String>,
    iat: Option<i64>,
    nbf: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
    ver: Option<String>,
}

fn required<T>(value: Option<T>, claim: &'static str) -> Result<T, TokenError> {
    value.ok_or(TokenError::MissingClaim { claim })
}

fn timestamp(value: Option<i64>, claim: &'static str) -> Result<OffsetDateTime, TokenError> {
    OffsetDateTime::from_unix_timestamp(required(value, claim)?)
        .map_err(|_| TokenError::InvalidTokenClaim { claim })
}

/// An algorithm name fit to quote in an error: short and plain, else `?`.
fn quoted_alg(alg: &str) -> String {
    if !alg.is_empty() && alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) {
        alg.to_owned()
    } else {
        "?".to_owned()
    }
}

/// Checks completion tokens for the host application.
///
/// Built from the published JWKS (or directly from a [`TokenKeys`]) and the
/// issuer and audience the application expects. The algorithm is taken from
/// the key the token's `kid` names, never from the token.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Vec<(TokenPublicKey, DecodingKey)>,
    issuer: String,
    audience: String,
    leeway: Duration,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.keys.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier trusting every key of `jwks`.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidJwks`] when a key cannot be used (every key must
    /// be a supported public key: one bad entry refuses the whole document),
    /// [`TokenError::DuplicateKeyId`], [`TokenError::InvalidSetting`] for an
    /// empty issuer or audience.
    pub fn from_jwks(
        jwks: &Jwks,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, TokenError> {
        let keys = jwks
            .keys
            .iter()
            .map(TokenPublicKey::from_jwk)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_public_keys(keys, issuer.into(), audience.into())
    }

    /// A verifier trusting every key of `keys`.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidSetting`] for an empty issuer or audience.
    pub fn from_keys(
        keys: &TokenKeys,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, TokenError> {
        Self::from_public_keys(
            keys.public_keys().cloned().collect(),
            issuer.into(),
            audience.into(),
        )
    }

    fn from_public_keys(
        keys: Vec<TokenPublicKey>,
        issuer: String,
        audience: String,
    ) -> Result<Self, TokenError> {
        for (setting, value) in [("issuer", &issuer), ("audience", &audience)] {
            if value.is_empty() {
                return Err(TokenError::InvalidSetting {
                    setting,
                    reason: "must not be empty".to_owned(),
                });
            }
        }
        let mut out: Vec<(TokenPublicKey, DecodingKey)> = Vec::with_capacity(keys.len());
        for key in keys {
            if out.iter().any(|(k, _)| k.kid == key.kid) {
                return Err(TokenError::DuplicateKeyId { kid: key.kid });
            }
            let decoding = key.decoding_key();
            out.push((key, decoding));
        }
        Ok(Self {
            keys: out,
            issuer,
            audience,
            leeway: DEFAULT_LEEWAY,
        })
    }

    /// Tolerates `leeway` of clock skew on `exp`, `nbf` and `iat`
    /// (default [`DEFAULT_LEEWAY`]).
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidSetting`] when it is negative or above [`MAX_LEEWAY`].
    pub fn with_leeway(mut self, leeway: Duration) -> Result<Self, TokenError> {
        self.leeway = checked_leeway(leeway)?;
        Ok(self)
    }

    /// The clock skew tolerated.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Checks `token` at time `now`: size, header, key by `kid`, algorithm
    /// pinned to that key, signature, `ver`, `iss` exactly, `aud` containing
    /// the expected audience, `exp`, `nbf` and `iat` with the leeway. The
    /// `nonce` is not checked; use [`TokenVerifier::verify_with_nonce`] when
    /// the request carried one.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] naming the first check that failed.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<VerifiedToken, TokenError> {
        self.check(token, None, now)
    }

    /// As [`TokenVerifier::verify`], and requires the `nonce` claim to equal
    /// `nonce`.
    ///
    /// # Errors
    ///
    /// As [`TokenVerifier::verify`]; [`TokenError::NonceMismatch`].
    pub fn verify_with_nonce(
        &self,
        token: &str,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedToken, TokenError> {
        self.check(token, Some(nonce), now)
    }

    fn check(
        &self,
        token: &str,
        nonce: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed("header is not base64url"))?;
        let header: InHeader = serde_json::from_slice(&header)
            .map_err(|_| TokenError::Malformed("header is not a JOSE header"))?;
        let Some(algorithm) = TokenAlgorithm::from_jose(&header.alg) else {
            return Err(TokenError::UnsupportedAlgorithm {
                alg: quoted_alg(&header.alg),
            });
        };
        if header.crit.is_some() {
            return Err(TokenError::Malformed(
                "critical header parameters are not supported",
            ));
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        if !valid_kid(&kid) {
            return Err(TokenError::Malformed("`kid` is not a valid key id"));
        }
        let (key, decoding) = self
            .keys
            .iter()
            .find(|(k, _)| k.kid == kid)
            .ok_or(TokenError::UnknownKey { kid })?;
        if key.algorithm != algorithm {
            return Err(TokenError::AlgorithmMismatch {
                kid: key.kid.clone(),
                expected: key.algorithm,
                found: algorithm.as_str().to_owned(),
            });
        }

        // Signature only: every claim, including the times, is checked
        // below against `now`, since jsonwebtoken would read the system clock.
        let mut validation = Validation::new(key.algorithm.jwt());
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<InClaims>(token, decoding, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey => {
                        TokenError::BadSignature
                    }
                    ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm {
                        alg: quoted_alg(&header.alg),
                    },
                    ErrorKind::Json(_) => TokenError::Malformed("claims are not of the expected form"),
                    _ => TokenError::Malformed("token does not decode"),
                }
            })?
            .claims;

        if required(claims.ver, "ver")? != TOKEN_VERSION {
            return Err(TokenError::InvalidTokenClaim { claim: "ver" });
        }
        let issuer = required(claims.iss, "iss")?;
        if issuer != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        let audience = match required(claims.aud, "aud")? {
            InAudience::One(a) => vec![a],
            InAudience::Many(a) => a,
        };
        if !audience.contains(&self.audience) {
            return Err(TokenError::WrongAudience);
        }
        let expires_at = timestamp(claims.exp, "exp")?;
        let not_before = timestamp(claims.nbf, "nbf")?;
        let issued_at = timestamp(claims.iat, "iat")?;
        if now >= expires_at.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        let skewed = now.saturating_add(self.leeway);
        if skewed < not_before || skewed < issued_at {
            return Err(TokenError::NotYetValid);
        }
        if let Some(expected) = nonce
            && claims.nonce.as_deref() != Some(expected)
        {
            return Err(TokenError::NonceMismatch);
        }
        let id = |value: Option<String>, claim: &'static str| -> Result<Id, TokenError> {
            required(value, claim)?
                .parse()
                .map_err(|_| TokenError::InvalidTokenClaim { claim })
        };
        Ok(VerifiedToken {
            key_id: key.kid.clone(),
            algorithm: key.algorithm,
            issuer,
            audience,
            subject: id(claims.sub, "sub")?,
            tenant_id: id(claims.tid, "tid")?,
            email: required(claims.email, "email")?,
            identity_provider: required(claims.idp, "idp")?,
            user_type: required(claims.user_type, "userType")?,
            amr: required(claims.amr, "amr")?,
            acr: claims.acr,
            nonce: claims.nonce,
            token_id: required(claims.jti, "jti")?,
            issued_at,
            not_before,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
    use time::macros::datetime;

    const ISSUER: &str = "https://login.contoso.example/5b3e8a34-8f52-4b8c-9a43-1a2b3c4d5e6f/v2.0";
    const CLIENT: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
    const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

    fn claims(rng: &SeededRandom) -> CompletionClaims {
        CompletionClaims {
            issuer: ISSUER.into(),
            audience: CLIENT.into(),
            subject: Id::random(rng).unwrap(),
            tenant_id: Id::random(rng).unwrap(),
            email: EmailAddress::parse("alice@fabrikam.example").unwrap(),
            identity_provider: "mail".into(),
            user_type: UserType::Guest,
            amr: vec!["otp".into()],
            acr: None,
            nonce: None,
            token_id: new_token_id(rng).unwrap(),
            lifetime: DEFAULT_TOKEN_LIFETIME,
        }
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    /// A token whose header is replaced, keeping payload and signature.
    fn with_header(token: &str, header: &str) -> String {
        let (_, rest) = token.split_once('.').unwrap();
        format!("{}.{rest}", b64(header))
    }

    /// Always yields the same block; for forcing rejection sampling.
    #[derive(Debug)]
    struct Script(std::sync::Mutex<Vec<[u8; 32]>>);
    impl SecureRandom for Script {
        fn fill(&self, dest: &mut [u8]) -> Result<(), crate::Error> {
            let mut blocks = self.0.lock().unwrap();
            let block = if blocks.len() > 1 {
                blocks.remove(0)
            } else {
                blocks[0]
            };
            dest.copy_from_slice(&block[..dest.len()]);
            Ok(())
        }
    }

    #[test]
    fn generated_p256_pkcs8_is_what_ring_reads() {
        let key = TokenSigningKey::generate("k1", TokenAlgorithm::Es256, &SeededRandom::new(1)).unwrap();
        let der = key.export_pkcs8_der();
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.expose(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        assert_eq!(pair.public_key().as_ref()[0], 0x04);
        assert_eq!(&pair.public_key().as_ref()[1..], key.public.point.as_slice());
    }

    #[test]
    fn generated_ed25519_pkcs8_is_what_ring_reads() {
        let key = TokenSigningKey::generate("k1", TokenAlgorithm::EdDsa, &SeededRandom::new(1)).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.export_pkcs8_der().expose()).unwrap();
        assert_eq!(pair.public_key().as_ref(), key.public.point.as_slice());
    }

    #[test]
    fn ring_generated_keys_import_and_sign() {
        let sys = ring::rand::SystemRandom::new();
        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &sys).unwrap();
        let ed = Ed25519KeyPair::generate_pkcs8(&sys).unwrap();
        for (alg, der) in [
            (TokenAlgorithm::Es256, ec.as_ref()),
            (TokenAlgorithm::EdDsa, ed.as_ref()),
        ] {
            let key = TokenSigningKey::from_pkcs8_der("imported", alg, der).unwrap();
            let keys = TokenKeys::new(key);
            let token = issue(&keys, &claims(&SeededRandom::new(2)), NOW).unwrap();
            let verifier = TokenVerifier::from_keys(&keys, ISSUER, CLIENT).unwrap();
            assert_eq!(verifier.verify(&token, NOW).unwrap().algorithm, alg);
        }
        // The wrong algorithm for the bytes is refused, both ways.
        assert!(matches!(
            TokenSigningKey::from_pkcs8_der("x", TokenAlgorithm::EdDsa, ec.as_ref()),
            Err(TokenError::InvalidKey { .. })
        ));
        assert!(matches!(
            TokenSigningKey::from_pkcs8_der("x", TokenAlgorithm::Es256, ed.as_ref()),
            Err(TokenError::InvalidKey { .. })
        ));
        assert!(TokenSigningKey::from_pkcs8_der("x", TokenAlgorithm::Es256, b"junk").is_err());
    }

    #[test]
    fn generation_is_deterministic_for_a_seed_and_differs_across_seeds() {
        for alg in [TokenAlgorithm::Es256, TokenAlgorithm::EdDsa] {
            let a = TokenSigningKey::generate("k", alg, &SeededRandom::new(5)).unwrap();
            let b = TokenSigningKey::generate("k", alg, &SeededRandom::new(5)).unwrap();
            let c = TokenSigningKey::generate("k", alg, &SeededRandom::new(6)).unwrap();
            assert_eq!(a.public, b.public);
            assert_ne!(a.public, c.public);
        }
    }

    #[test]
    fn p256_scalars_outside_the_group_are_redrawn() {
        let zero = [0u8; 32];
        let too_big = [0xffu8; 32];
        let mut good = [0u8; 32];
        good[31] = 7;
        let rng = Script(std::sync::Mutex::new(vec![zero, too_big, P256_ORDER, good]));
        assert_eq!(random_p256_scalar(&rng).unwrap().expose(), &good[..]);
        let stuck = Script(std::sync::Mutex::new(vec![too_big]));
        assert_eq!(
            random_p256_scalar(&stuck).unwrap_err(),
            TokenError::RandomUnavailable
        );
    }

    #[test]
    fn pem_round_trips() {
        for alg in [TokenAlgorithm::Es256, TokenAlgorithm::EdDsa] {
            let key = TokenSigningKey::generate("k", alg, &SeededRandom::new(9)).unwrap();
            let pem = key.export_pkcs8_pem();
            assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
            assert!(pem.expose().lines().all(|l| l.len() <= 64));
            let back = TokenSigningKey::from_pkcs8_pem("k", alg, pem.expose()).unwrap();
            assert_eq!(back.export_pkcs8_der(), key.export_pkcs8_der());
        }
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----";
        assert!(matches!(
            TokenSigningKey::from_pkcs8_pem("k", TokenAlgorithm::Es256, sec1),
            Err(TokenError::InvalidKey { .. })
        ));
    }

    #[test]
    fn key_ids_are_checked() {
        let rng = SeededRandom::new(1);
        for bad in ["", "a b", "a/b", "é", &"k".repeat(65)] {
            assert!(
                matches!(
                    TokenSigningKey::generate(bad, TokenAlgorithm::EdDsa, &rng),
                    Err(TokenError::InvalidKeyId { .. })
                ),
                "{bad:?}"
            );
        }
        for good in ["k", "2026-01_a.b~c", &"k".repeat(64)] {
            assert!(
                TokenSigningKey::generate(good, TokenAlgorithm::EdDsa, &rng).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn jwk_reading_refuses_unusable_keys() {
        let key = TokenSigningKey::generate("k", TokenAlgorithm::Es256, &SeededRandom::new(1)).unwrap();
        let good = key.public.to_jwk();
        assert_eq!(TokenPublicKey::from_jwk(&good).unwrap(), key.public);

        let mut no_alg = good.clone();
        no_alg.alg = None;
        assert_eq!(
            TokenPublicKey::from_jwk(&no_alg).unwrap().algorithm,
            TokenAlgorithm::Es256
        );

        type Mutation = Box<dyn Fn(&mut Jwk)>;
        let cases: Vec<Mutation> = vec![
            Box::new(|j| j.kid = None),
            Box::new(|j| j.alg = Some("HS256".into())),
            Box::new(|j| j.alg = Some("EdDSA".into())),
            Box::new(|j| j.public_key_use = Some("enc".into())),
            Box::new(|j| j.crv = Some("P-384".into())),
            Box::new(|j| j.kty = "oct".into()),
            Box::new(|j| j.kty = "RSA".into()),
            Box::new(|j| j.y = None),
            Box::new(|j| j.x = Some("AAAA".into())),
            // A point that is not on the curve.
            Box::new(|j| j.y = Some(URL_SAFE_NO_PAD.encode([1u8; 32]))),
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut jwk = good.clone();
            mutate(&mut jwk);
            assert!(TokenPublicKey::from_jwk(&jwk).is_err(), "case {i}");
        }

        let ed = TokenSigningKey::generate("e", TokenAlgorithm::EdDsa, &SeededRandom::new(1)).unwrap();
        let mut with_y = ed.public.to_jwk();
        with_y.y = Some(URL_SAFE_NO_PAD.encode([0u8; 32]));
        assert!(TokenPublicKey::from_jwk(&with_y).is_err());
        let mut short = ed.public.to_jwk();
        short.x = Some(URL_SAFE_NO_PAD.encode([0u8; 31]));
        assert!(TokenPublicKey::from_jwk(&short).is_err());
    }

    #[test]
    fn claims_are_validated_before_signing() {
        let rng = SeededRandom::new(3);
        let keys = TokenKeys::new(TokenSigningKey::generate("k", TokenAlgorithm::EdDsa, &rng).unwrap());
        let base = claims(&rng);
        type Mutation = Box<dyn Fn(&mut CompletionClaims)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("iss", Box::new(|c| c.issuer = String::new())),
            (
                "iss",
                Box::new(|c| c.issuer = "http://login.contoso.example/t/v2.0".into()),
            ),
            ("iss", Box::new(|c| c.issuer = "login.contoso.example".into())),
            (
                "iss",
                Box::new(|c| c.issuer = "https://login.contoso.example/t?x=1".into()),
            ),
            (
                "iss",
                Box::new(|c| c.issuer = "https://u:p@login.contoso.example/t".into()),
            ),
            ("aud", Box::new(|c| c.audience = String::new())),
            ("aud", Box::new(|c| c.audience = "a\nb".into())),
            ("idp", Box::new(|c| c.identity_provider = String::new())),
            ("amr", Box::new(|c| c.amr = Vec::new())),
            ("amr", Box::new(|c| c.amr = vec!["has space".into()])),
            ("amr", Box::new(|c| c.amr = vec!["otp".into(); 17])),
            ("acr", Box::new(|c| c.acr = Some(String::new()))),
            (
                "nonce",
                Box::new(|c| c.nonce = Some("n".repeat(MAX_NONCE_LEN + 1))),
            ),
            ("nonce", Box::new(|c| c.nonce = Some(String::new()))),
            ("jti", Box::new(|c| c.token_id = String::new())),
            ("jti", Box::new(|c| c.token_id = "a b".into())),
            ("exp", Box::new(|c| c.lifetime = Duration::ZERO)),
            (
                "exp",
                Box::new(|c| c.lifetime = MAX_TOKEN_LIFETIME + Duration::seconds(1)),
            ),
        ];
        for (claim, mutate) in cases {
            let mut c = base.clone();
            mutate(&mut c);
            match issue(&keys, &c, NOW) {
                Err(TokenError::InvalidClaim { claim: got, .. }) => assert_eq!(got, claim),
                other => panic!("{claim}: {other:?}"),
            }
        }
        for loopback in [
            "http://localhost:8080/t/v2.0",
            "http://127.0.0.1/t",
            "http://[::1]/t",
        ] {
            let mut c = base.clone();
            c.issuer = loopback.into();
            assert!(issue(&keys, &c, NOW).is_ok(), "{loopback}");
        }
        let mut c = base.clone();
        c.nonce = Some("n".repeat(MAX_NONCE_LEN));
        c.lifetime = MAX_TOKEN_LIFETIME;
        assert!(issue(&keys, &c, NOW).is_ok());
    }

    #[test]
    fn header_and_claims_are_as_specified() {
        let rng = SeededRandom::new(4);
        let keys = TokenKeys::new(TokenSigningKey::generate("k-es", TokenAlgorithm::Es256, &rng).unwrap());
        let mut c = claims(&rng);
        c.acr = Some("possessionorinherence".into());
        c.nonce = Some("abc".into());
        let token = issue(&keys, &c, NOW).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": "k-es"})
        );
        let body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let t = NOW.unix_timestamp();
        assert_eq!(
            body,
            serde_json::json!({
                "iss": ISSUER, "aud": CLIENT, "sub": c.subject.to_string(), "tid": c.tenant_id.to_string(),
                "email": "alice@fabrikam.example", "idp": "mail", "userType": "Guest", "amr": ["otp"],
                "acr": "possessionorinherence", "nonce": "abc", "iat": t, "nbf": t, "exp": t + 3600,
                "jti": c.token_id, "ver": "2.0",
            })
        );
        // ES256 signatures are the 64-byte JOSE form, not DER.
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
    }

    #[test]
    fn header_checks() {
        let rng = SeededRandom::new(5);
        let es = TokenSigningKey::generate("es", TokenAlgorithm::Es256, &rng).unwrap();
        let ed = TokenSigningKey::generate("ed", TokenAlgorithm::EdDsa, &rng).unwrap();
        let keys = TokenKeys::new(es)
            .with_verification_key(ed.public.clone())
            .unwrap();
        let verifier = TokenVerifier::from_keys(&keys, ISSUER, CLIENT).unwrap();
        let token = issue(&keys, &claims(&rng), NOW).unwrap();
        assert!(verifier.verify(&token, NOW).is_ok());

        let cases = [
            (r#"{"alg":"EdDSA","kid":"es","typ":"JWT"}"#, "mismatch"),
            (r#"{"alg":"ES256","kid":"es","typ":"JWE"}"#, "typ"),
            (r#"{"alg":"ES256","kid":"es","crit":["exp"]}"#, "crit"),
            (r#"{"alg":"ES256","kid":"e s"}"#, "kid"),
            (r#"{"alg":"ES256","kid":7}"#, "kid type"),
            (r#"{"alg":"RS256","kid":"es"}"#, "rs256"),
            (r#"{"alg":"ES384","kid":"es"}"#, "es384"),
            (r#"{"alg":"ES256","kid":"es"}"#, "ok without typ"),
        ];
        for (header, name) in cases {
            let result = verifier.verify(&with_header(&token, header), NOW);
            match name {
                "mismatch" => assert!(
                    matches!(
                        &result,
                        Err(TokenError::AlgorithmMismatch {
                            expected: TokenAlgorithm::Es256,
                            ..
                        })
                    ),
                    "{result:?}"
                ),
                "typ" => assert_eq!(result, Err(TokenError::WrongType)),
                "crit" | "kid" | "kid type" => {
                    assert!(matches!(result, Err(TokenError::Malformed(_))), "{name}")
                }
                "rs256" | "es384" => {
                    assert!(
                        matches!(result, Err(TokenError::UnsupportedAlgorithm { .. })),
                        "{name}"
                    )
                }
                // The header is signed: a re-encoded one no longer verifies.
                _ => assert_eq!(result, Err(TokenError::BadSignature)),
            }
        }
    }

    #[test]
    fn audience_may_be_a_list_and_nonce_is_checked_on_request() {
        let rng = SeededRandom::new(6);
        let keys = TokenKeys::new(TokenSigningKey::generate("k", TokenAlgorithm::EdDsa, &rng).unwrap());
        let verifier = TokenVerifier::from_keys(&keys, ISSUER, CLIENT).unwrap();
        let mut c = claims(&rng);
        c.nonce = Some("n-1".into());
        let token = issue(&keys, &c, NOW).unwrap();
        assert_eq!(
            verifier
                .verify_with_nonce(&token, "n-1", NOW)
                .unwrap()
                .nonce
                .as_deref(),
            Some("n-1")
        );
        assert_eq!(
            verifier.verify_with_nonce(&token, "n-2", NOW),
            Err(TokenError::NonceMismatch)
        );
        c.nonce = None;
        let token = issue(&keys, &c, NOW).unwrap();
        assert_eq!(
            verifier.verify_with_nonce(&token, "n-1", NOW),
            Err(TokenError::NonceMismatch)
        );
        assert!(verifier.verify(&token, NOW).is_ok());

        // A list audience, signed by the key itself through the backend.
        let t = NOW.unix_timestamp();
        let body = serde_json::json!({
            "iss": ISSUER, "aud": ["other", CLIENT], "sub": c.subject.to_string(),
            "tid": c.tenant_id.to_string(), "email": "a@b.example", "idp": "mail", "userType": "Member",
            "amr": ["pwd", "mfa"], "iat": t, "nbf": t, "exp": t + 60, "jti": "j", "ver": "2.0",
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k".into());
        let signed = jsonwebtoken::encode(&header, &body, &keys.signing.encoding_key()).unwrap();
        let v = verifier.verify(&signed, NOW).unwrap();
        assert_eq!(v.audience, ["other", CLIENT]);
        assert_eq!(v.user_type, UserType::Member);

        let mut missing = body.clone();
        missing.as_object_mut().unwrap().remove("tid");
        let signed = jsonwebtoken::encode(&header, &missing, &keys.signing.encoding_key()).unwrap();
        assert_eq!(
            verifier.verify(&signed, NOW),
            Err(TokenError::MissingClaim { claim: "tid" })
        );

        let mut old = body.clone();
        old["ver"] = "1.0".into();
        let signed = jsonwebtoken::encode(&header, &old, &keys.signing.encoding_key()).unwrap();
        assert_eq!(
            verifier.verify(&signed, NOW),
            Err(TokenError::InvalidTokenClaim { claim: "ver" })
        );

        let mut bad_sub = body;
        bad_sub["sub"] = "not-an-id".into();
        let signed = jsonwebtoken::encode(&header, &bad_sub, &keys.signing.encoding_key()).unwrap();
        assert_eq!(
            verifier.verify(&signed, NOW),
            Err(TokenError::InvalidTokenClaim { claim: "sub" })
        );
    }

    #[test]
    fn leeway_is_bounded_and_applied_at_the_edges() {
        let rng = SeededRandom::new(7);
        let keys = TokenKeys::new(TokenSigningKey::generate("k", TokenAlgorithm::EdDsa, &rng).unwrap());
        let verifier = TokenVerifier::from_keys(&keys, ISSUER, CLIENT).unwrap();
        assert_eq!(verifier.leeway(), DEFAULT_LEEWAY);
        assert!(verifier.clone().with_leeway(Duration::seconds(-1)).is_err());
        assert!(
            verifier
                .clone()
                .with_leeway(MAX_LEEWAY + Duration::seconds(1))
                .is_err()
        );
        let strict = verifier.clone().with_leeway(Duration::ZERO).unwrap();

        let token = issue(&keys, &claims(&rng), NOW).unwrap();
        let exp = NOW + DEFAULT_TOKEN_LIFETIME;
        assert!(strict.verify(&token, exp - Duration::seconds(1)).is_ok());
        assert_eq!(strict.verify(&token, exp), Err(TokenError::Expired));
        assert!(
            verifier
                .verify(&token, exp + DEFAULT_LEEWAY - Duration::seconds(1))
                .is_ok()
        );
        assert_eq!(
            verifier.verify(&token, exp + DEFAULT_LEEWAY),
            Err(TokenError::Expired)
        );
        assert!(strict.verify(&token, NOW).is_ok());
        assert_eq!(
            strict.verify(&token, NOW - Duration::seconds(1)),
            Err(TokenError::NotYetValid)
        );
        assert!(verifier.verify(&token, NOW - DEFAULT_LEEWAY).is_ok());
        assert_eq!(
            verifier.verify(&token, NOW - DEFAULT_LEEWAY - Duration::seconds(1)),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn verifier_settings_and_duplicates() {
        let rng = SeededRandom::new(8);
        let a = TokenSigningKey::generate("k", TokenAlgorithm::EdDsa, &rng).unwrap();
        let b = TokenSigningKey::generate("k", TokenAlgorithm::Es256, &rng).unwrap();
        let keys = TokenKeys::new(a.clone());
        assert!(TokenVerifier::from_keys(&keys, "", CLIENT).is_err());
        assert!(TokenVerifier::from_keys(&keys, ISSUER, "").is_err());
        assert!(matches!(
            keys.clone().with_verification_key(b.public.clone()),
            Err(TokenError::DuplicateKeyId { .. })
        ));
        assert!(matches!(
            keys.clone().rotate(b.clone()),
            Err(TokenError::DuplicateKeyId { .. })
        ));
        let jwks = Jwks {
            keys: vec![a.public.to_jwk(), b.public.to_jwk()],
        };
        assert!(matches!(
            TokenVerifier::from_jwks(&jwks, ISSUER, CLIENT),
            Err(TokenError::DuplicateKeyId { .. })
        ));
    }

    #[test]
    fn error_messages_are_lowercase_without_period() {
        let errors = [
            TokenError::UnknownKey { kid: "k".into() },
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::TooLong { len: 9000, max: 8192 },
            TokenError::UnsupportedAlgorithm { alg: "none".into() },
            TokenError::InvalidClaim {
                claim: "aud",
                reason: "must not be empty".into(),
            },
        ];
        for e in errors {
            let m = e.to_string();
            assert!(m.starts_with(|c: char| c.is_lowercase()), "{m}");
            assert!(!m.ends_with('.'), "{m}");
        }
        assert_eq!(quoted_alg("none"), "none");
        assert_eq!(quoted_alg("<script>"), "?");
        assert_eq!(quoted_alg(&"A".repeat(17)), "?");
    }
}
