//! Bearer tokens for the admin API.
//!
//! [`AdminTokenIssuer`] issues and checks JWT access tokens (RFC 9068
//! shape) signed with the keys of a [`TokenKeys`] ring: ES256 or EdDSA,
//! the algorithm pinned to each key. A dedicated ring is recommended; a
//! ring shared with completion tokens is safe too, since the two never
//! pass for each other:
//!
//! - the header's `typ` is [`ADMIN_TOKEN_TYPE`] (`at+jwt`), which the
//!   completion-token verifier refuses, and this verifier requires it, so a
//!   completion token (`typ` `JWT`) is refused here;
//! - `aud` is the API root (`<public base url>v1.0`), never a client id;
//! - redemption tickets are not JWTs at all.
//!
//! Claims: `iss` (the public base URL), `aud`, `sub` (the administrator's
//! object id), `scp` (space-separated [`Scope`]s), `iat`, `nbf`, `exp`,
//! `jti`. Verification takes `now` from the caller (never the system
//! clock), tolerates [`DEFAULT_LEEWAY`] of skew, refuses `none`, HMAC and
//! every algorithm other than the one pinned to the key its `kid` names,
//! and answers:
//!
//! - 401 `InvalidAuthenticationToken` for a missing, malformed, expired,
//!   not-yet-valid or badly signed token, or one for another issuer,
//!   audience or purpose, with a `WWW-Authenticate: Bearer` challenge;
//! - 403 `Authorization_RequestDenied` for a valid token without a scope
//!   the [`Operation`] accepts.
//!
//! Messages never contain the token or any part of it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use url::Url;

use crate::flow::token::{
    DEFAULT_LEEWAY, InAudience, InHeader, MAX_TOKEN_LEN, TokenAlgorithm, TokenError, TokenKeys,
    checked_leeway, new_token_id,
};
use crate::graph::{GraphError, api_root};
use crate::id::Id;
use crate::invitation::{InvitationRequest, Inviter};
use crate::random::SecureRandom;
use crate::secret::SecretString;

/// The `typ` header of admin tokens (RFC 9068).
pub const ADMIN_TOKEN_TYPE: &str = "at+jwt";
/// Lifetime of an admin token unless the caller asks for another.
pub const DEFAULT_ADMIN_TOKEN_LIFETIME: Duration = Duration::hours(1);
/// Longest lifetime an admin token may be issued with.
pub const MAX_ADMIN_TOKEN_LIFETIME: Duration = Duration::hours(12);
/// Longest `scp` claim read, in bytes.
const MAX_SCOPE_CLAIM_LEN: usize = 1024;

/// A permission an admin token grants, named as Graph's delegated
/// permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `User.Read.All`: read users.
    UserReadAll,
    /// `User.ReadWrite.All`: read, change and delete users; invite and reset
    /// redemption.
    UserReadWriteAll,
    /// `User.Invite.All`: invite guests.
    UserInviteAll,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::UserReadAll, Scope::UserReadWriteAll, Scope::UserInviteAll];

    /// The name in `scp`: `User.Read.All`, `User.ReadWrite.All`,
    /// `User.Invite.All`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UserReadAll => "User.Read.All",
            Scope::UserReadWriteAll => "User.ReadWrite.All",
            Scope::UserInviteAll => "User.Invite.All",
        }
    }

    /// The scope named `name` (exact spelling).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Scope::UserReadAll => 1,
            Scope::UserReadWriteAll => 2,
            Scope::UserInviteAll => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Scope`]s. `Display` writes the `scp` form (space-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope.
    pub fn empty() -> Self {
        Self(0)
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Adds `scope`.
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The scopes, in [`Scope::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        Scope::ALL.into_iter().filter(|s| self.contains(*s))
    }

    /// Reads an `scp` claim: known names are kept, unknown ones ignored.
    pub fn from_claim(scp: &str) -> Self {
        scp.split(' ').filter_map(Scope::from_name).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut s = Self::empty();
        for scope in iter {
            s.insert(scope);
        }
        s
    }
}

impl<const N: usize> From<[Scope; N]> for Scopes {
    fn from(scopes: [Scope; N]) -> Self {
        scopes.into_iter().collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

/// An admin API operation, with the scopes that allow it (any one of them,
/// as Graph lists least- and higher-privileged permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /invitations` without `resetRedemption`.
    Invite,
    /// `POST /invitations` with `resetRedemption: true`.
    ResetRedemption,
    /// `GET /users`.
    ListUsers,
    /// `GET /users/{id}`.
    GetUser,
    /// `PATCH /users/{id}`.
    UpdateUser,
    /// `DELETE /users/{id}`.
    DeleteUser,
}

impl Operation {
    /// The scopes that allow the operation, least privileged first.
    ///
    /// | operation | scopes |
    /// |---|---|
    /// | `Invite` | `User.Invite.All`, `User.ReadWrite.All` |
    /// | `ResetRedemption` | `User.ReadWrite.All` |
    /// | `ListUsers`, `GetUser` | `User.Read.All`, `User.ReadWrite.All` |
    /// | `UpdateUser`, `DeleteUser` | `User.ReadWrite.All` |
    pub fn accepted_scopes(self) -> &'static [Scope] {
        match self {
            Operation::Invite => &[Scope::UserInviteAll, Scope::UserReadWriteAll],
            Operation::ListUsers | Operation::GetUser => &[Scope::UserReadAll, Scope::UserReadWriteAll],
            Operation::ResetRedemption | Operation::UpdateUser | Operation::DeleteUser => {
                &[Scope::UserReadWriteAll]
            }
        }
    }

    /// The operation a `POST /invitations` body asks for: resetting a
    /// redemption needs `User.ReadWrite.All` (as Graph), a plain invitation
    /// `User.Invite.All`.
    pub fn invitation(request: &InvitationRequest) -> Self {
        if request.reset_redemption {
            Operation::ResetRedemption
        } else {
            Operation::Invite
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Operation::Invite => "invite guests",
            Operation::ResetRedemption => "reset redemption",
            Operation::ListUsers => "list users",
            Operation::GetUser => "read users",
            Operation::UpdateUser => "update users",
            Operation::DeleteUser => "delete users",
        }
    }
}

/// Who a verified admin token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminPrincipal {
    /// `sub`: the administrator's object id.
    pub subject: Id,
    /// `scp`: the scopes granted (unknown names dropped).
    pub scopes: Scopes,
    /// `jti`: the token's id (for audit and revocation lists).
    pub token_id: String,
    /// `exp`.
    pub expires_at: OffsetDateTime,
}

impl AdminPrincipal {
    /// Checks that the token allows `operation`.
    ///
    /// # Errors
    ///
    /// 403 `Authorization_RequestDenied` naming the scopes that would.
    pub fn require(&self, operation: Operation) -> Result<(), GraphError> {
        let accepted = operation.accepted_scopes();
        if accepted.iter().any(|s| self.scopes.contains(*s)) {
            return Ok(());
        }
        let names: Vec<&str> = accepted.iter().map(|s| s.as_str()).collect();
        Err(GraphError::insufficient_scope(
            format!(
                "insufficient privileges to {}; the token needs one of the scopes `{}`",
                operation.describe(),
                names.join("`, `")
            ),
            names.first().copied().unwrap_or_default(),
        ))
    }

    /// The inviter for `GuestPass::invite`, `resend` and `revoke`: an
    /// administrator with this id.
    pub fn inviter(&self) -> Inviter {
        Inviter::admin(Some(self.subject))
    }
}

#[derive(Serialize)]
struct OutClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: String,
    scp: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
}

#[derive(Deserialize)]
struct InClaims {
    iss: Option<String>,
    aud: Option<InAudience>,
    sub: Option<String>,
    scp: Option<String>,
    iat: Option<i64>,
    nbf: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
}

fn jwt_algorithm(a: TokenAlgorithm) -> Algorithm {
    match a {
        TokenAlgorithm::Es256 => Algorithm::ES256,
        TokenAlgorithm::EdDsa => Algorithm::EdDSA,
    }
}

fn rejected(reason: &str) -> GraphError {
    GraphError::invalid_token(format!("access token validation failure: {reason}"), true)
}

fn unusable_key(kid: &str, algorithm: TokenAlgorithm) -> TokenError {
    TokenError::InvalidKey {
        kid: kid.to_owned(),
        algorithm,
        reason: "cannot be used for admin tokens",
    }
}

/// Issues and verifies admin bearer tokens; see the module docs.
///
/// `Debug` shows the issuer, audience and key ids only.
#[derive(Clone)]
pub struct AdminTokenIssuer {
    signing_kid: String,
    signing_alg: Algorithm,
    signing: EncodingKey,
    keys: Vec<(String, Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
    leeway: Duration,
}

impl fmt::Debug for AdminTokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTokenIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("signing_kid", &self.signing_kid)
            .field(
                "verification_kids",
                &self.keys.iter().map(|(k, _, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl AdminTokenIssuer {
    /// An issuer signing with the ring's signing key and accepting every
    /// key of the ring (older keys verify until removed), for the API under
    /// `base_url`: `iss` is the base URL (with a trailing slash), `aud` the
    /// API root [`api_root`] (`<base>v1.0`).
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidKey`] when a key cannot be loaded.
    pub fn new(keys: &TokenKeys, base_url: &Url) -> Result<Self, TokenError> {
        let signing_key = keys.signing_key();
        let algorithm = signing_key.algorithm();
        let signing_alg = jwt_algorithm(algorithm);
        let der = signing_key.export_pkcs8_der();
        let signing = match algorithm {
            TokenAlgorithm::Es256 => EncodingKey::from_ec_der(der.expose()),
            TokenAlgorithm::EdDsa => EncodingKey::from_ed_der(der.expose()),
        };
        let mut verification = Vec::new();
        for key in keys.public_keys() {
            let jwk = key.to_jwk();
            let alg = jwt_algorithm(key.algorithm());
            let decoding = match (key.algorithm(), jwk.x.as_deref(), jwk.y.as_deref()) {
                (TokenAlgorithm::Es256, Some(x), Some(y)) => DecodingKey::from_ec_components(x, y).ok(),
                (TokenAlgorithm::EdDsa, Some(x), None) => DecodingKey::from_ed_components(x).ok(),
                _ => None,
            }
            .ok_or_else(|| unusable_key(key.kid(), key.algorithm()))?;
            verification.push((key.kid().to_owned(), alg, decoding));
        }
        let issuer = {
            let root = api_root(base_url);
            root.strip_suffix(crate::graph::API_VERSION)
                .unwrap_or(&root)
                .to_owned()
        };
        Ok(Self {
            signing_kid: signing_key.kid().to_owned(),
            signing_alg,
            signing,
            keys: verification,
            issuer,
            audience: api_root(base_url),
            leeway: DEFAULT_LEEWAY,
        })
    }

    /// Tolerates `leeway` of clock skew on `exp`, `nbf` and `iat`.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidSetting`] when it is negative or above
    /// [`MAX_LEEWAY`](crate::flow::token::MAX_LEEWAY).
    pub fn with_leeway(mut self, leeway: Duration) -> Result<Self, TokenError> {
        self.leeway = checked_leeway(leeway)?;
        Ok(self)
    }

    /// The `iss` of the tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` of the tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// [`DEFAULT_ADMIN_TOKEN_LIFETIME`].
    pub fn default_lifetime(&self) -> Duration {
        DEFAULT_ADMIN_TOKEN_LIFETIME
    }

    /// Issues a token for the administrator `subject` with `scopes`, valid
    /// from `now` for `lifetime` (whole seconds). Hand it to the
    /// administrator's client only; it is a bearer credential.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidClaim`] for empty scopes (`scp`) or a lifetime
    /// outside 1 second to [`MAX_ADMIN_TOKEN_LIFETIME`] (`exp`);
    /// [`TokenError::RandomUnavailable`], [`TokenError::Signing`].
    pub fn issue(
        &self,
        subject: Id,
        scopes: &Scopes,
        lifetime: Duration,
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<SecretString, TokenError> {
        if scopes.is_empty() {
            return Err(TokenError::InvalidClaim {
                claim: "scp",
                reason: "must name at least one scope".to_owned(),
            });
        }
        if lifetime < Duration::seconds(1) || lifetime > MAX_ADMIN_TOKEN_LIFETIME {
            return Err(TokenError::InvalidClaim {
                claim: "exp",
                reason: format!(
                    "lifetime must be 1 to {} seconds",
                    MAX_ADMIN_TOKEN_LIFETIME.whole_seconds()
                ),
            });
        }
        let iat = now.unix_timestamp();
        let exp = iat
            .checked_add(lifetime.whole_seconds())
            .ok_or_else(|| TokenError::InvalidClaim {
                claim: "exp",
                reason: "out of range".to_owned(),
            })?;
        let jti = new_token_id(rng)?;
        let claims = OutClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: subject.to_string(),
            scp: scopes.to_string(),
            iat,
            nbf: iat,
            exp,
            jti: &jti,
        };
        let mut header = Header::new(self.signing_alg);
        header.typ = Some(ADMIN_TOKEN_TYPE.to_owned());
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing)
            .map(SecretString::new)
            .map_err(|_| TokenError::Signing)
    }

    /// Checks the `Authorization` header value (`None` when the request has
    /// none, or it is not text) at time `now`.
    ///
    /// # Errors
    ///
    /// 401 `InvalidAuthenticationToken` naming the check that failed.
    pub fn verify(
        &self,
        authorization: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<AdminPrincipal, GraphError> {
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            return Err(GraphError::invalid_token("access token is empty", false));
        };
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(GraphError::invalid_token(
                "the `Authorization` header must use the `Bearer` scheme",
                false,
            ));
        }
        let token = token.trim_start();
        if token.is_empty() {
            return Err(GraphError::invalid_token("access token is empty", false));
        }
        self.check(token, now)
    }

    /// As [`AdminTokenIssuer::verify`], reading the request's headers: more
    /// than one `Authorization` header, or one that is not text, is refused.
    ///
    /// # Errors
    ///
    /// As [`AdminTokenIssuer::verify`].
    pub fn verify_headers(
        &self,
        headers: &http::HeaderMap,
        now: OffsetDateTime,
    ) -> Result<AdminPrincipal, GraphError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(GraphError::invalid_token(
                "the request has more than one `Authorization` header",
                true,
            ));
        }
        match first {
            None => self.verify(None, now),
            Some(v) => match v.to_str() {
                Ok(s) => self.verify(Some(s), now),
                Err(_) => Err(rejected("the `Authorization` header is not text")),
            },
        }
    }

    /// [`AdminTokenIssuer::verify_headers`], then
    /// [`AdminPrincipal::require`] for `operation`.
    ///
    /// # Errors
    ///
    /// 401 or 403 as those.
    pub fn authorize(
        &self,
        headers: &http::HeaderMap,
        operation: Operation,
        now: OffsetDateTime,
    ) -> Result<AdminPrincipal, GraphError> {
        let principal = self.verify_headers(headers, now)?;
        principal.require(operation)?;
        Ok(principal)
    }

    fn check(&self, token: &str, now: OffsetDateTime) -> Result<AdminPrincipal, GraphError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(rejected("the token is too long"));
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(rejected("the token is not a compact JWS"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(rejected("the token is not a compact JWS"));
        };
        let header: InHeader = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| rejected("the token header does not decode"))?;
        if header.crit.is_some() {
            return Err(rejected("critical header parameters are not supported"));
        }
        let alg = match header.alg.as_str() {
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            _ => return Err(rejected("the signing algorithm is not accepted")),
        };
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ADMIN_TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(rejected("the token is not an admin access token"));
        }
        let kid = header
            .kid
            .ok_or_else(|| rejected("the token names no signing key"))?;
        let (_, key_alg, decoding) = self
            .keys
            .iter()
            .find(|(k, _, _)| *k == kid)
            .ok_or_else(|| rejected("the token is signed with an unknown key"))?;
        if *key_alg != alg {
            return Err(rejected("the signing algorithm does not match the key"));
        }
        // Signature only; every claim, the times included, is checked below
        // against `now` (jsonwebtoken would read the system clock).
        let mut validation = Validation::new(*key_alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<InClaims>(token, decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => rejected("invalid signature"),
                _ => rejected("the token does not decode"),
            })?
            .claims;
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(rejected("invalid issuer"));
        }
        let audience_ok = match &claims.aud {
            Some(InAudience::One(a)) => *a == self.audience,
            Some(InAudience::Many(list)) => list.contains(&self.audience),
            None => false,
        };
        if !audience_ok {
            return Err(rejected("invalid audience"));
        }
        let time = |v: Option<i64>, claim: &str| {
            v.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                .ok_or_else(|| rejected(&format!("the `{claim}` claim is missing or invalid")))
        };
        let expires_at = time(claims.exp, "exp")?;
        let not_before = time(claims.nbf, "nbf")?;
        let issued_at = time(claims.iat, "iat")?;
        if now >= expires_at.saturating_add(self.leeway) {
            return Err(rejected("the token has expired"));
        }
        let skewed = now.saturating_add(self.leeway);
        if skewed < not_before || skewed < issued_at {
            return Err(rejected("the token is not yet valid"));
        }
        let subject: Id = claims
            .sub
            .as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| rejected("the `sub` claim is missing or invalid"))?;
        let scp = claims
            .scp
            .filter(|s| s.len() <= MAX_SCOPE_CLAIM_LEN)
            .ok_or_else(|| rejected("the `scp` claim is missing or invalid"))?;
        let token_id = claims
            .jti
            .filter(|j| !j.is_empty() && j.len() <= 128)
            .ok_or_else(|| rejected("the `jti` claim is missing or invalid"))?;
        Ok(AdminPrincipal {
            subject,
            scopes: Scopes::from_claim(&scp),
            token_id,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::token::TokenSigningKey;
    use crate::random::SeededRandom;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

    fn issuer(seed: u64, alg: TokenAlgorithm) -> (AdminTokenIssuer, SeededRandom) {
        let rng = SeededRandom::new(seed);
        let keys = TokenKeys::new(TokenSigningKey::generate("adm", alg, &rng).unwrap());
        let base = Url::parse("https://guests.contoso.example/").unwrap();
        (AdminTokenIssuer::new(&keys, &base).unwrap(), rng)
    }

    #[test]
    fn claims_and_header_are_as_documented() {
        for alg in [TokenAlgorithm::Es256, TokenAlgorithm::EdDsa] {
            let (iss, rng) = issuer(1, alg);
            let sub = Id::random(&rng).unwrap();
            let scopes = Scopes::from([Scope::UserInviteAll, Scope::UserReadAll]);
            let t = iss.issue(sub, &scopes, Duration::minutes(10), NOW, &rng).unwrap();
            let parts: Vec<&str> = t.expose().split('.').collect();
            let header: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
            assert_eq!(header["typ"], "at+jwt");
            assert_eq!(header["kid"], "adm");
            assert_eq!(header["alg"], alg.as_str());
            let body: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
            let t0 = NOW.unix_timestamp();
            let jti = body["jti"].as_str().unwrap().to_owned();
            assert_eq!(
                body,
                serde_json::json!({
                    "iss": "https://guests.contoso.example/",
                    "aud": "https://guests.contoso.example/v1.0",
                    "sub": sub.to_string(),
                    "scp": "User.Read.All User.Invite.All",
                    "iat": t0, "nbf": t0, "exp": t0 + 600, "jti": jti,
                })
            );
            let p = iss.verify(Some(&format!("Bearer {}", t.expose())), NOW).unwrap();
            assert_eq!(p.subject, sub);
            assert_eq!(p.scopes, scopes);
            assert_eq!(p.token_id, jti);
            assert_eq!(p.inviter(), Inviter::admin(Some(sub)));
        }
    }

    #[test]
    fn issuing_checks_scopes_and_lifetime() {
        let (iss, rng) = issuer(2, TokenAlgorithm::Es256);
        let sub = Id::random(&rng).unwrap();
        let one = Scopes::from([Scope::UserReadAll]);
        for (scopes, lifetime, claim) in [
            (Scopes::empty(), Duration::hours(1), "scp"),
            (one, Duration::ZERO, "exp"),
            (one, MAX_ADMIN_TOKEN_LIFETIME + Duration::seconds(1), "exp"),
        ] {
            match iss.issue(sub, &scopes, lifetime, NOW, &rng) {
                Err(TokenError::InvalidClaim { claim: c, .. }) => assert_eq!(c, claim),
                other => panic!("{claim}: {other:?}"),
            }
        }
        assert!(iss.issue(sub, &one, MAX_ADMIN_TOKEN_LIFETIME, NOW, &rng).is_ok());
    }

    #[test]
    fn scopes_gate_operations() {
        let p = |s: &[Scope]| AdminPrincipal {
            subject: Id::from_bytes([7; 16]),
            scopes: s.iter().copied().collect(),
            token_id: "j".into(),
            expires_at: NOW,
        };
        let read = p(&[Scope::UserReadAll]);
        let invite = p(&[Scope::UserInviteAll]);
        let write = p(&[Scope::UserReadWriteAll]);
        let ops = [
            Operation::Invite,
            Operation::ResetRedemption,
            Operation::ListUsers,
            Operation::GetUser,
            Operation::UpdateUser,
            Operation::DeleteUser,
        ];
        let allowed = |who: &AdminPrincipal| ops.iter().map(|o| who.require(*o).is_ok()).collect::<Vec<_>>();
        assert_eq!(allowed(&read), [false, false, true, true, false, false]);
        assert_eq!(allowed(&invite), [true, false, false, false, false, false]);
        assert_eq!(allowed(&write), [true, true, true, true, true, true]);
        assert_eq!(allowed(&p(&[])), [false; 6]);
        let e = read.require(Operation::UpdateUser).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (403, "Authorization_RequestDenied"));
        assert_eq!(
            e.message,
            "insufficient privileges to update users; the token needs one of the scopes `User.ReadWrite.All`"
        );
        assert_eq!(
            e.www_authenticate(),
            Some("Bearer error=\"insufficient_scope\", scope=\"User.ReadWrite.All\"")
        );
        let e = read.require(Operation::Invite).unwrap_err();
        assert_eq!(
            e.message,
            "insufficient privileges to invite guests; the token needs one of the scopes `User.Invite.All`, `User.ReadWrite.All`"
        );
        let mut req = InvitationRequest::new("a@b.example", "https://x");
        assert_eq!(Operation::invitation(&req), Operation::Invite);
        req.reset_redemption = true;
        assert_eq!(Operation::invitation(&req), Operation::ResetRedemption);
        assert_eq!(
            Scopes::from_claim("User.Read.All  Mail.Send user.readwrite.all"),
            Scopes::from([Scope::UserReadAll])
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let (iss, _) = issuer(3, TokenAlgorithm::Es256);
        let d = format!("{iss:?}");
        assert!(
            d.contains("adm") && d.contains("https://guests.contoso.example/v1.0"),
            "{d}"
        );
        assert!(!d.contains("EncodingKey") && !d.contains("content"), "{d}");
    }
}
