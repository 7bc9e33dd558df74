//! A local OpenID provider for tests: a real HTTP server on `127.0.0.1`, real
//! RS256 and ES256 keys, the authorization code flow with PKCE, and switches
//! that make it misbehave the ways real or hostile providers do.
//!
//! Include it with `#[path = "support/oidc_op.rs"] mod oidc_op;` from a test
//! (or `#[path = "../tests/support/oidc_op.rs"]` from an example).
//!
//! ```ignore
//! let op = OidcTestProvider::start(OpOptions::default()).await;
//! op.set_now(1_700_000_000);
//! op.set_mode(Misbehaviour::WrongAudience);
//! // point the code under test at op.issuer() ...
//! assert_eq!(op.requests(Endpoint::Jwks), 1);
//! ```
//!
//! The flow: `GET /authorize` checks the request and answers `302` to the
//! client's redirect URI with `code`, `state` and `iss` for the current
//! [`TestUser`]; `POST /token` redeems the code once (PKCE S256, client
//! authentication `client_secret_basic` or `client_secret_post`) and returns
//! an ID token signed with the current algorithm; `GET /userinfo` answers the
//! user's claims for the access token.
//!
//! Time comes from the provider's own clock, which tests set with
//! [`OidcTestProvider::set_now`] to match the clock they inject into the code
//! under test (by default the system clock).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair as _;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `iss` of ID tokens under [`Misbehaviour::WrongIssuer`], and `issuer` of
/// the discovery document under [`Misbehaviour::DiscoveryWrongIssuer`].
pub const WRONG_ISSUER: &str = "https://attacker.example";
/// `aud` of ID tokens under [`Misbehaviour::WrongAudience`].
pub const WRONG_AUDIENCE: &str = "some-other-client";
/// The second audience under [`Misbehaviour::ExtraAudience`].
pub const EXTRA_AUDIENCE: &str = "another-client";
/// `nonce` of ID tokens under [`Misbehaviour::WrongNonce`].
pub const WRONG_NONCE: &str = "not-the-nonce-you-sent";
/// `sub` the userinfo endpoint answers under [`Misbehaviour::UserinfoOtherSub`].
pub const OTHER_SUB: &str = "someone-else";
/// `error_description` under [`Misbehaviour::AuthorizeAccessDenied`].
pub const ACCESS_DENIED_DESCRIPTION: &str = "the user declined the sign-in";
/// `error_description` under [`Misbehaviour::TokenInvalidGrant`].
pub const INVALID_GRANT_DESCRIPTION: &str = "the authorization code is invalid or expired";
/// Lifetime of ID and access tokens, seconds: `exp = iat + TOKEN_LIFETIME`.
pub const TOKEN_LIFETIME: i64 = 300;
/// Lifetime of authorization codes, seconds.
pub const CODE_LIFETIME: i64 = 600;
/// How far [`Misbehaviour::IatInFuture`] and [`Misbehaviour::NbfInFuture`]
/// move `iat`/`nbf` past now, and how long ago [`Misbehaviour::Expired`]
/// tokens expired, seconds (beyond any sensible leeway).
pub const CLOCK_SKEW: i64 = 600;
/// The JWKS under [`Misbehaviour::OversizedJwks`] is larger than this.
pub const OVERSIZED_JWKS_BYTES: usize = 2 * 1024 * 1024;

/// Key ids. `RSA_KID`/`EC_KID` are published from the start, the rotated
/// ones after [`OidcTestProvider::publish_rotated_key`], the unpublished ones
/// never.
pub const RSA_KID: &str = "rsa-1";
/// See [`RSA_KID`].
pub const EC_KID: &str = "ec-1";
/// See [`RSA_KID`].
pub const RSA_ROTATED_KID: &str = "rsa-2";
/// See [`RSA_KID`].
pub const EC_ROTATED_KID: &str = "ec-2";
/// See [`RSA_KID`].
pub const RSA_UNPUBLISHED_KID: &str = "rsa-unpublished";
/// See [`RSA_KID`].
pub const EC_UNPUBLISHED_KID: &str = "ec-unpublished";

/// The client registered by [`OpOptions::default`].
pub const DEFAULT_CLIENT_ID: &str = "guestpass-test-client";
/// Its secret.
pub const DEFAULT_CLIENT_SECRET: &str = "guestpass-test-secret";
/// Its only redirect URI.
pub const DEFAULT_REDIRECT_URI: &str = "https://app.example/idp/callback";

// TEST-ONLY RSA 2048 private keys (PKCS#8), generated with
// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` for this
// file. They protect nothing; never use them anywhere else. They are embedded
// because generating RSA keys in a debug build takes seconds.
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
const RSA_ROTATED_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQD3GFZG55+ASZq5
6iU1+dPcvYWsOnatpi62cMi0O6SSjyk4RsnmVfL1H/by4JcdTy1HFG/tRvtJ9Pk/
5kDCJI3EkJTS8xdNcG6+YzMKtJTCi0PbTHvlh7bSbrh7HyVvrlXVuWDov+hRefOg
RRNMnkf7VEvPdCXpT1h4T8iYne+4uDeYYn45Vat/cR2Cl0fUeCzcrlklH5t3bPYi
SKYBHmVi7SXFUN4lDjBLo1pWGloYKYZ/V7A5J6JiVKazfNWQZxmbNZhtJwy1b8Jg
G1xD1wg2zPRMiBr8QFK6rDI39H7Yq+sFhLoxsadx8+n5ilxIRH2bHOky+KbGxr7X
qrpESZ/5AgMBAAECggEABXDTCSzlX3wPaielvIW6RI56QeUdfZxEA/b2s7bqpuJR
g6hrCUAMJq8BX06dbohn/HGOt4cUIP2MmvD2l6fEejG+Syj4iCybzaP4yN6vdgX+
afbfSq9VhyuSXZNSyKifrHebCAjzZDmMPnOi6wbDBOhRt9kh0ryGkSCdmmmuMHn3
25e1BtZsCv/NCEKpTo5xz2m5c8xKf/3/xACNhPUQFbXnbObkCE0j06v1e0VCN/r1
Pn2L9NrPuIs6pY9ASRCkXF2RWk9Isi8OqLkrGtFuJmuFkQEMrFvDAhdrpqIm5nsI
hXnM1CDcGpgTqmQ3iw+StvvJY3R2FqU00+bYHVme4QKBgQD89L/0iheSNJXjY5Ja
Ep3sZrA1cY6Zj/mW7qtAEB2CwPuP1lbVxKfTksoKCcCEmrK9W+C9D5bQm3pdH5Wf
2IpK4j5+zk103yZTYFnAIH/Y+bgJRZZBoJjgvtLNN/f5W6KVy0NVfL/unDppyTVy
G1c3prHDTrbBMwmOFxRwjIL74QKBgQD6EYgv5VhFrAMhNvilfGntdigW8HBkywO9
V+GxzxraQsxq9IBcU/sKSQT8nKwAx0Twonh5fwL8sIu1WcM9QsoVHP0m9lZQV4oH
Xjl2HffIxybxEav8wGD5Lv2q24zeq0iuJE+xuiqXGXmto6Cnv3abtjG09/uyVUNV
h4ss2RfnGQKBgQC0FImTTbv6GfWbLAfEl/xVj8ViRrV+HUFSchb4RIC91SVCARVQ
me/gb1/mRYsI3BjjNcWI0tBLMmSqZxHd+gp5xRc4ryX1Tee685zxajGaBi0+bIvL
rMkpNrBb6LxgiRv2B/6nnWgGNrJfHR8vXMd6lvF2WVNBt1PWFBg5B884AQKBgD6B
NVYrcDXx+dJKiDns8BkvqHObY6x95hBksAAesSqO+cNeG9t4Dk6S09FEY+XJ6Rxw
r8ZGjfuVMUaCCj/8usAuP8SGXCq2xsRys9AnS3D+/mfRL/j8KQD/0t3rBLn/fCoy
30ygKNcdwgE53gUv4TiogKIoPdxkXXE6cPojxUq5AoGAH2LHiBcbP87S41PLNKqC
rpY67uHnhaLgKObZ2XZxtkLSFC5v3MsBPdNDlwNgYyuhBdcDcbdzLaIuixqWF4mh
QFGuPY2WNK9Y4/bMt4ka+KY/BSinoH59M1BFzHibCfKIl7JtICb1bcodeC12iTRi
lELmmHssOFQ2GAm+TrWWk18=
-----END PRIVATE KEY-----
";
const RSA_UNPUBLISHED_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCnKlR1JEwHgoPe
v2UP8/6vf9YRePKIzdnYpR1bAYbc2nG8Fc6ThVhXk5fsZGzvxURK1SKv7n5+n88C
HpPx+hZ76CxQZ7CaSjJC6Xw1216XHg1+Ir9gWk5mLQ5JPI2AAAJe9kUzypHSnbAf
7UFo3YCap1DBV7FybNwbJo2IfB85pXWWz8w9iDfwqQ3FHbNaHHQWJfFj1BbH4Ko9
szxf1iNQ9VChDuyEPdjxJ8vuTzo6QOfbpSpaNWBn4ckvkdeCIcoOFYk9H7/4YPun
ZW2Uozx7s0uvApZADP+bH8fToJtYtQkb+pEAsmYE8l43MbWEFfBLSpfU37EEaHHZ
RAwuY8OBAgMBAAECggEAP5xVgC/8OH1bRedqAyyTVWAdaw+tpw5CH/UQ2yEVGzSK
xAo+TheXWtgAn0VFyOW1i45YQT9NZkzUnpdZL+K9LJBYUI5sfwHN53VmvS3JbFLU
ypNZZMZof+wUPB0tMTCPtmgbRE6It+8mZrfHRKrJNdCGY9RFY2f2R+SfRfkJfssQ
UqkjObg+/yaTNAbhFK73t1TNT5iornLiqKi7aix8NMyJJknUB2a8vCSSgSkElA5O
Hvr4T3wExbL+NsCfPIjWqou/Z5QjlN0aqMuAM2z1uFLOwFmjrbjgF34et5j8UJBs
ZfA7bR7ELspSKrcMPaPT70nJRwLF+1Lg/iWL2ZQoywKBgQDcxns7F3Ge6lJ3srIW
Up8dD4oo8dmI7wGsb6kUsgBJG7Tr6xuYYaiA5N0qgSuVoJn6pyYK0bBG1IILvqgi
wqAynogn1x1CghQvatGg57WQIDiB9SL6yZlASi/ltC3famXohZtchRJ6V2RkPRkL
WQSLzypPo3gnBQR8ZknfLUmUtwKBgQDB1ilSFe5ZwYTs0ULFoLAPxDkTdFhdias3
r1zy2ZJNmMfrwc/uSTlkO+3tvv/PRahnKJFCRshylVzbOnJ5qjCM6kDzduvZMpAU
xu5HCb7Dw6vykJPVgk2FfPuqZ+yFnz+xobayeElYcq7u+jOxjqp0+YzBFsVOnLT2
uhWRk6thhwKBgDNAaG8pXBkWMJrVAv6no4RtjRdAPc3KHktXiJrjT6mpIvD5nWhc
k2+IscciQWn05IoJr40nbJKk1qO/WOzo3aOipd0J1SMRa3ouhAekgsO4lyWkMMCj
eE4yargageOxoYK/MXfi9I0uKIIUpPG7cpC6QQpH2qbERWxTmqaSrtg1AoGALJ6N
2HVv7n1bieAJzNBWduqmcNIBXVbJcQIPFV/8C5y1uJFeue1lJquc83NaE25ne4ed
GHKOxcGYJGbp3xPMJUPvO5wOYmr/O6knRHb70LiEJkwdm7JpAedpTyqpCYFE+jDN
i3ug9pk/p4c0yxSaLF8dhX0mYhg0l+7x9BbYBpUCgYEAviVE6/3ePs4Y7ao6UzyO
86G4J/9jpo1fQ5eEwvKw5V5K9bKDBb7+M0rb1lu9dk7xQ5EYgYGmIz5oeMesll1q
Agy6Qm39CEzg6ruXo3GsuhJSLkpgDmhvDcu3RZQVLsC0QFycz+UsT355L27pwQOW
ZXvt121BXP6ZLv9Iog6iuWw=
-----END PRIVATE KEY-----
";

/// Signature algorithm of the ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SigningAlg {
    /// RSA PKCS#1 v1.5 with SHA-256, key `rsa-1`.
    #[default]
    Rs256,
    /// ECDSA P-256 with SHA-256, key `ec-1`.
    Es256,
}

impl SigningAlg {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

/// A client registered at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestClient {
    pub client_id: String,
    pub client_secret: String,
    /// Compared exactly (no normalisation, no prefix match).
    pub redirect_uris: Vec<String>,
}

impl TestClient {
    pub fn new(client_id: &str, client_secret: &str, redirect_uris: &[&str]) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
        }
    }
}

/// The user the provider signs in; `/authorize` takes a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct TestUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    /// Entra's tenant id claim, when set.
    pub tid: Option<String>,
    /// Google's hosted domain claim, when set.
    pub hd: Option<String>,
    /// Added to the ID token and userinfo last, so they may override any
    /// claim above (and the registered ones in the ID token).
    pub extra_claims: Map<String, Value>,
}

impl TestUser {
    /// A verified user `sub` with address `email`, display name "Test User".
    pub fn new(sub: &str, email: &str) -> Self {
        Self {
            sub: sub.to_owned(),
            email: email.to_owned(),
            email_verified: true,
            name: "Test User".to_owned(),
            given_name: "Test".to_owned(),
            family_name: "User".to_owned(),
            tid: None,
            hd: None,
            extra_claims: Map::new(),
        }
    }

    fn claims(&self) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(self.sub));
        claims.insert("email".into(), json!(self.email));
        claims.insert("email_verified".into(), json!(self.email_verified));
        claims.insert("name".into(), json!(self.name));
        claims.insert("given_name".into(), json!(self.given_name));
        claims.insert("family_name".into(), json!(self.family_name));
        if let Some(tid) = &self.tid {
            claims.insert("tid".into(), json!(tid));
        }
        if let Some(hd) = &self.hd {
            claims.insert("hd".into(), json!(hd));
        }
        for (name, value) in &self.extra_claims {
            claims.insert(name.clone(), value.clone());
        }
        claims
    }
}

impl Default for TestUser {
    /// `alice-sub`, `alice@fabrikam.example`, verified, "Alice Example".
    fn default() -> Self {
        Self {
            sub: "alice-sub".to_owned(),
            email: "alice@fabrikam.example".to_owned(),
            email_verified: true,
            name: "Alice Example".to_owned(),
            given_name: "Alice".to_owned(),
            family_name: "Example".to_owned(),
            tid: None,
            hd: None,
            extra_claims: Map::new(),
        }
    }
}

/// Ways to misbehave. Several can be active at once
/// ([`OidcTestProvider::add_mode`]); each affects the responses from the
/// moment it is set (an ID token is built when `/token` answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehaviour {
    /// ID token `iss` is [`WRONG_ISSUER`].
    WrongIssuer,
    /// ID token `aud` is [`WRONG_AUDIENCE`] (a string).
    WrongAudience,
    /// ID token `aud` is `[client_id, EXTRA_AUDIENCE]`, with `azp =
    /// client_id` when `azp` is true and no `azp` otherwise.
    ExtraAudience { azp: bool },
    /// ID token without `sub`.
    MissingSub,
    /// ID token without `iat`.
    MissingIat,
    /// ID token without `exp`.
    MissingExp,
    /// ID token `iat = now + CLOCK_SKEW`, `exp = iat + TOKEN_LIFETIME`.
    IatInFuture,
    /// ID token `iat = now - CLOCK_SKEW - TOKEN_LIFETIME`, `exp = now -
    /// CLOCK_SKEW`.
    Expired,
    /// ID token `nbf = now + CLOCK_SKEW` (there is no `nbf` otherwise).
    NbfInFuture,
    /// The first byte of the ID token's signature is flipped (`^ 0x01`).
    BadSignature,
    /// Unsigned ID token: header `{"alg":"none","typ":"JWT","kid":...}` and
    /// an empty signature part (`header.payload.`).
    AlgNone,
    /// ID token signed HS256 with the RSA public key's SPKI PEM text
    /// ([`OidcTestProvider::rsa_public_key_pem`]) as the HMAC secret, `kid`
    /// [`RSA_KID`]: the RS256/HS256 key confusion attack.
    Hs256KeyConfusion,
    /// ID token header without `kid`.
    OmitKid,
    /// The JWKS publishes one key: the current algorithm's primary key, or
    /// its rotated key once [`OidcTestProvider::publish_rotated_key`] was
    /// called.
    SingleKeyJwks,
    /// ID tokens are signed with the rotated key of the current algorithm
    /// ([`RSA_ROTATED_KID`], [`EC_ROTATED_KID`]), which the JWKS lists only
    /// after [`OidcTestProvider::publish_rotated_key`].
    RotatedKey,
    /// ID tokens are signed with a key whose kid ([`RSA_UNPUBLISHED_KID`],
    /// [`EC_UNPUBLISHED_KID`]) is never published.
    UnpublishedKey,
    /// ID token `nonce` is [`WRONG_NONCE`].
    WrongNonce,
    /// ID token without `nonce`, even when the request had one.
    MissingNonce,
    /// Userinfo answers `sub` [`OTHER_SUB`].
    UserinfoOtherSub,
    /// The discovery document's `issuer` is [`WRONG_ISSUER`] (endpoints stay
    /// local).
    DiscoveryWrongIssuer,
    /// `/authorize` redirects with `error=access_denied`,
    /// `error_description=ACCESS_DENIED_DESCRIPTION`, `state` and `iss`, and
    /// issues no code.
    AuthorizeAccessDenied,
    /// `/token` answers `400 {"error":"invalid_grant"}` (the code is not
    /// consumed).
    TokenInvalidGrant,
    /// Every endpoint sleeps this long before answering.
    Slow(Duration),
    /// The JWKS carries filler keys beyond [`OVERSIZED_JWKS_BYTES`] (served
    /// with a `Content-Length`).
    OversizedJwks,
}

/// The provider's endpoints, for [`OidcTestProvider::requests`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /.well-known/openid-configuration`
    Discovery,
    /// `GET /jwks`
    Jwks,
    /// `GET /authorize`
    Authorize,
    /// `POST /token`
    Token,
    /// `GET|POST /userinfo`
    Userinfo,
}

impl Endpoint {
    /// The path.
    pub fn path(self) -> &'static str {
        match self {
            Self::Discovery => "/.well-known/openid-configuration",
            Self::Jwks => "/jwks",
            Self::Authorize => "/authorize",
            Self::Token => "/token",
            Self::Userinfo => "/userinfo",
        }
    }
}

/// What a request carried: the query (authorize) or form (token)
/// parameters in order, and the `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub params: Vec<(String, String)>,
    pub authorization: Option<String>,
}

impl RecordedRequest {
    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the provider starts.
#[derive(Debug, Clone)]
pub struct OpOptions {
    pub clients: Vec<TestClient>,
    pub user: TestUser,
    pub signing_alg: SigningAlg,
    pub modes: Vec<Misbehaviour>,
    /// Fixed "now" in Unix seconds; `None` follows the system clock.
    pub now: Option<i64>,
}

impl Default for OpOptions {
    /// One client ([`DEFAULT_CLIENT_ID`], [`DEFAULT_CLIENT_SECRET`],
    /// [`DEFAULT_REDIRECT_URI`]), the default user, RS256, no modes, the
    /// system clock.
    fn default() -> Self {
        Self {
            clients: vec![TestClient::new(
                DEFAULT_CLIENT_ID,
                DEFAULT_CLIENT_SECRET,
                &[DEFAULT_REDIRECT_URI],
            )],
            user: TestUser::default(),
            signing_alg: SigningAlg::Rs256,
            modes: Vec::new(),
            now: None,
        }
    }
}

struct RsaKey {
    kid: &'static str,
    pkcs1_der: Vec<u8>,
    n: String,
    e: String,
    public_pem: String,
}

struct EcKey {
    kid: &'static str,
    pkcs8: Vec<u8>,
    x: String,
    y: String,
}

struct RsaKeys {
    primary: RsaKey,
    rotated: RsaKey,
    unpublished: RsaKey,
}

fn rsa_key(kid: &'static str, pem: &str) -> RsaKey {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
    use rsa::traits::PublicKeyParts as _;

    let private = rsa::RsaPrivateKey::from_pkcs8_pem(pem).expect("embedded test rsa key");
    let public = rsa::RsaPublicKey::from(&private);
    RsaKey {
        kid,
        pkcs1_der: private.to_pkcs1_der().expect("pkcs1 der").as_bytes().to_vec(),
        n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        public_pem: public.to_public_key_pem(LineEnding::LF).expect("public key pem"),
    }
}

/// The RSA keys, parsed once per process (parsing validates them, which is
/// slow-ish in a debug build).
fn rsa_keys() -> &'static RsaKeys {
    static KEYS: OnceLock<RsaKeys> = OnceLock::new();
    KEYS.get_or_init(|| RsaKeys {
        primary: rsa_key(RSA_KID, RSA_PRIMARY_PEM),
        rotated: rsa_key(RSA_ROTATED_KID, RSA_ROTATED_PEM),
        unpublished: rsa_key(RSA_UNPUBLISHED_KID, RSA_UNPUBLISHED_PEM),
    })
}

fn ec_key(kid: &'static str) -> EcKey {
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("ec key");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("ec key");
    // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 65);
    EcKey {
        kid,
        pkcs8: pkcs8.as_ref().to_vec(),
        x: URL_SAFE_NO_PAD.encode(&point[1..33]),
        y: URL_SAFE_NO_PAD.encode(&point[33..65]),
    }
}

fn rsa_jwk(key: &RsaKey) -> Value {
    json!({"kty": "RSA", "kid": key.kid, "alg": "RS256", "use": "sig", "n": key.n, "e": key.e})
}

fn ec_jwk(key: &EcKey) -> Value {
    json!({"kty": "EC", "kid": key.kid, "alg": "ES256", "use": "sig", "crv": "P-256", "x": key.x, "y": key.y})
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    scope: String,
    user: TestUser,
    issued_at: i64,
}

struct AccessToken {
    user: TestUser,
    scope: String,
    expires_at: i64,
}

struct State {
    clients: Vec<TestClient>,
    user: TestUser,
    alg: SigningAlg,
    modes: Vec<Misbehaviour>,
    now: Option<i64>,
    rotated_published: bool,
    codes: HashMap<String, Grant>,
    access_tokens: HashMap<String, AccessToken>,
    counts: HashMap<Endpoint, usize>,
    last_authorize: Option<RecordedRequest>,
    last_token: Option<RecordedRequest>,
    last_id_token: Option<String>,
}

impl State {
    fn has(&self, mode: &Misbehaviour) -> bool {
        self.modes.contains(mode)
    }

    fn now(&self) -> i64 {
        self.now
            .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp())
    }

    fn slow(&self) -> Option<Duration> {
        self.modes.iter().find_map(|m| match m {
            Misbehaviour::Slow(d) => Some(*d),
            _ => None,
        })
    }

    fn client(&self, client_id: &str) -> Option<&TestClient> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }
}

struct Shared {
    issuer: String,
    ec: EcKey,
    ec_rotated: EcKey,
    ec_unpublished: EcKey,
    rng: ring::rand::SystemRandom,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the request and sleeps in slow mode.
    async fn enter(&self, endpoint: Endpoint) {
        let delay = {
            let mut state = self.lock();
            *state.counts.entry(endpoint).or_insert(0) += 1;
            state.slow()
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }

    fn random_token(&self) -> String {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&self.rng, &mut bytes).expect("system random");
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwks(&self, state: &State) -> Value {
        let rsa = rsa_keys();
        let mut keys = Vec::new();
        if state.has(&Misbehaviour::SingleKeyJwks) {
            keys.push(match (state.alg, state.rotated_published) {
                (SigningAlg::Rs256, false) => rsa_jwk(&rsa.primary),
                (SigningAlg::Rs256, true) => rsa_jwk(&rsa.rotated),
                (SigningAlg::Es256, false) => ec_jwk(&self.ec),
                (SigningAlg::Es256, true) => ec_jwk(&self.ec_rotated),
            });
        } else {
            keys.push(rsa_jwk(&rsa.primary));
            keys.push(ec_jwk(&self.ec));
            if state.rotated_published {
                keys.push(rsa_jwk(&rsa.rotated));
                keys.push(ec_jwk(&self.ec_rotated));
            }
        }
        if state.has(&Misbehaviour::OversizedJwks) {
            let filler_size = rsa_jwk(&rsa.primary).to_string().len();
            let count = OVERSIZED_JWKS_BYTES / filler_size + 1;
            for i in 0..count {
                let mut filler = rsa_jwk(&rsa.unpublished);
                filler["kid"] = json!(format!("filler-{i}"));
                keys.push(filler);
            }
        }
        json!({ "keys": keys })
    }

    fn discovery(&self, state: &State) -> Value {
        let issuer = if state.has(&Misbehaviour::DiscoveryWrongIssuer) {
            WRONG_ISSUER.to_owned()
        } else {
            self.issuer.clone()
        };
        let base = &self.issuer;
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "nonce", "email", "email_verified",
                "name", "given_name", "family_name", "tid", "hd"
            ],
            "authorization_response_iss_parameter_supported": true,
        })
    }

    /// An ID token for `user` and `client_id` under the current modes.
    fn id_token(&self, state: &State, client_id: &str, nonce: Option<&str>, user: &TestUser) -> String {
        let now = state.now();
        let mut claims = Map::new();
        let iss = if state.has(&Misbehaviour::WrongIssuer) {
            WRONG_ISSUER.to_owned()
        } else {
            self.issuer.clone()
        };
        claims.insert("iss".into(), json!(iss));
        claims.insert("sub".into(), json!(user.sub));
        let extra_audience = state.modes.iter().find_map(|m| match m {
            Misbehaviour::ExtraAudience { azp } => Some(*azp),
            _ => None,
        });
        if state.has(&Misbehaviour::WrongAudience) {
            claims.insert("aud".into(), json!(WRONG_AUDIENCE));
        } else if let Some(azp) = extra_audience {
            claims.insert("aud".into(), json!([client_id, EXTRA_AUDIENCE]));
            if azp {
                claims.insert("azp".into(), json!(client_id));
            }
        } else {
            claims.insert("aud".into(), json!(client_id));
        }
        let (iat, exp) = if state.has(&Misbehaviour::Expired) {
            (now - CLOCK_SKEW - TOKEN_LIFETIME, now - CLOCK_SKEW)
        } else if state.has(&Misbehaviour::IatInFuture) {
            (now + CLOCK_SKEW, now + CLOCK_SKEW + TOKEN_LIFETIME)
        } else {
            (now, now + TOKEN_LIFETIME)
        };
        claims.insert("exp".into(), json!(exp));
        claims.insert("iat".into(), json!(iat));
        if state.has(&Misbehaviour::NbfInFuture) {
            claims.insert("nbf".into(), json!(now + CLOCK_SKEW));
        }
        if state.has(&Misbehaviour::WrongNonce) {
            claims.insert("nonce".into(), json!(WRONG_NONCE));
        } else if let Some(nonce) = nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        for (name, value) in user.claims() {
            claims.insert(name, value);
        }
        if state.has(&Misbehaviour::MissingSub) {
            claims.remove("sub");
        }
        if state.has(&Misbehaviour::MissingIat) {
            claims.remove("iat");
        }
        if state.has(&Misbehaviour::MissingExp) {
            claims.remove("exp");
        }
        if state.has(&Misbehaviour::MissingNonce) {
            claims.remove("nonce");
        }
        self.sign(state, &Value::Object(claims))
    }

    fn sign(&self, state: &State, claims: &Value) -> String {
        let rsa = rsa_keys();
        let omit_kid = state.has(&Misbehaviour::OmitKid);
        if state.has(&Misbehaviour::AlgNone) {
            let mut header = json!({"alg": "none", "typ": "JWT"});
            if !omit_kid {
                header["kid"] = json!(RSA_KID);
            }
            return format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
        }
        let (mut header, key) = if state.has(&Misbehaviour::Hs256KeyConfusion) {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(RSA_KID.to_owned());
            (
                header,
                EncodingKey::from_secret(rsa.primary.public_pem.as_bytes()),
            )
        } else {
            let rotated = state.has(&Misbehaviour::RotatedKey);
            let unpublished = state.has(&Misbehaviour::UnpublishedKey);
            match state.alg {
                SigningAlg::Rs256 => {
                    let key = if unpublished {
                        &rsa.unpublished
                    } else if rotated {
                        &rsa.rotated
                    } else {
                        &rsa.primary
                    };
                    let mut header = Header::new(Algorithm::RS256);
                    header.kid = Some(key.kid.to_owned());
                    (header, EncodingKey::from_rsa_der(&key.pkcs1_der))
                }
                SigningAlg::Es256 => {
                    let key = if unpublished {
                        &self.ec_unpublished
                    } else if rotated {
                        &self.ec_rotated
                    } else {
                        &self.ec
                    };
                    let mut header = Header::new(Algorithm::ES256);
                    header.kid = Some(key.kid.to_owned());
                    (header, EncodingKey::from_ec_der(&key.pkcs8))
                }
            }
        };
        if omit_kid {
            header.kid = None;
        }
        let token = jsonwebtoken::encode(&header, claims, &key).expect("sign id token");
        if state.has(&Misbehaviour::BadSignature) {
            let (signed, signature) = token.rsplit_once('.').expect("three parts");
            let mut signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url signature");
            signature[0] ^= 0x01;
            return format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature));
        }
        token
    }
}

/// A running provider. Dropping it shuts the server down.
pub struct OidcTestProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OidcTestProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcTestProvider")
            .field("issuer", &self.shared.issuer)
            .finish()
    }
}

impl OidcTestProvider {
    /// Binds `127.0.0.1:0` and serves until dropped. Panics if the socket
    /// cannot be bound.
    pub async fn start(options: OpOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            ec: ec_key(EC_KID),
            ec_rotated: ec_key(EC_ROTATED_KID),
            ec_unpublished: ec_key(EC_UNPUBLISHED_KID),
            rng: ring::rand::SystemRandom::new(),
            state: Mutex::new(State {
                clients: options.clients,
                user: options.user,
                alg: options.signing_alg,
                modes: options.modes,
                now: options.now,
                rotated_published: false,
                codes: HashMap::new(),
                access_tokens: HashMap::new(),
                counts: HashMap::new(),
                last_authorize: None,
                last_token: None,
                last_id_token: None,
            }),
        });
        rsa_keys();
        let app = Router::new()
            .route(Endpoint::Discovery.path(), get(discovery))
            .route(Endpoint::Jwks.path(), get(jwks))
            .route(Endpoint::Authorize.path(), get(authorize))
            .route(Endpoint::Token.path(), axum::routing::post(token))
            .route(Endpoint::Userinfo.path(), get(userinfo).post(userinfo))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The absolute URL of `endpoint`.
    pub fn url(&self, endpoint: Endpoint) -> String {
        format!("{}{}", self.shared.issuer, endpoint.path())
    }

    /// Replaces the user that `/authorize` signs in next.
    pub fn set_user(&self, user: TestUser) {
        self.shared.lock().user = user;
    }

    pub fn user(&self) -> TestUser {
        self.shared.lock().user.clone()
    }

    /// Registers another client.
    pub fn add_client(&self, client: TestClient) {
        self.shared.lock().clients.push(client);
    }

    /// Makes `mode` the only active misbehaviour.
    pub fn set_mode(&self, mode: Misbehaviour) {
        self.shared.lock().modes = vec![mode];
    }

    /// Adds `mode` to the active misbehaviours.
    pub fn add_mode(&self, mode: Misbehaviour) {
        let mut state = self.shared.lock();
        if !state.modes.contains(&mode) {
            state.modes.push(mode);
        }
    }

    /// Back to correct behaviour.
    pub fn clear_modes(&self) {
        self.shared.lock().modes.clear();
    }

    pub fn modes(&self) -> Vec<Misbehaviour> {
        self.shared.lock().modes.clone()
    }

    pub fn set_signing_alg(&self, alg: SigningAlg) {
        self.shared.lock().alg = alg;
    }

    pub fn signing_alg(&self) -> SigningAlg {
        self.shared.lock().alg
    }

    /// Adds the rotated keys ([`RSA_ROTATED_KID`], [`EC_ROTATED_KID`]) to
    /// the JWKS.
    pub fn publish_rotated_key(&self) {
        self.shared.lock().rotated_published = true;
    }

    /// Fixes the provider's "now" at `unix_seconds`.
    pub fn set_now(&self, unix_seconds: i64) {
        self.shared.lock().now = Some(unix_seconds);
    }

    /// Moves a fixed "now" by `seconds` (fixing it first if it followed the
    /// system clock).
    pub fn advance(&self, seconds: i64) {
        let mut state = self.shared.lock();
        let now = state.now();
        state.now = Some(now + seconds);
    }

    /// Follows the system clock again.
    pub fn use_system_clock(&self) {
        self.shared.lock().now = None;
    }

    /// The provider's "now", Unix seconds.
    pub fn now(&self) -> i64 {
        self.shared.lock().now()
    }

    /// How many requests `endpoint` received (counted on arrival, before
    /// any slow-mode sleep).
    pub fn requests(&self, endpoint: Endpoint) -> usize {
        self.shared.lock().counts.get(&endpoint).copied().unwrap_or(0)
    }

    pub fn reset_request_counts(&self) {
        self.shared.lock().counts.clear();
    }

    /// The query of the last `/authorize` request.
    pub fn last_authorize_request(&self) -> Option<RecordedRequest> {
        self.shared.lock().last_authorize.clone()
    }

    /// The form and `Authorization` header of the last `/token` request.
    pub fn last_token_request(&self) -> Option<RecordedRequest> {
        self.shared.lock().last_token.clone()
    }

    /// The last ID token `/token` issued.
    pub fn last_id_token(&self) -> Option<String> {
        self.shared.lock().last_id_token.clone()
    }

    /// An ID token for the current user, as `/token` would issue it now
    /// (current modes, algorithm and clock), without running the flow.
    pub fn id_token_for(&self, client_id: &str, nonce: Option<&str>) -> String {
        let state = self.shared.lock();
        let user = state.user.clone();
        self.shared.id_token(&state, client_id, nonce, &user)
    }

    /// The JWKS `/jwks` serves now.
    pub fn jwks(&self) -> Value {
        let state = self.shared.lock();
        self.shared.jwks(&state)
    }

    /// The SPKI PEM of the primary RSA key: the HMAC secret of
    /// [`Misbehaviour::Hs256KeyConfusion`] tokens.
    pub fn rsa_public_key_pem(&self) -> String {
        rsa_keys().primary.public_pem.clone()
    }

    /// Stops accepting, lets open requests finish (at most 5 s), then
    /// returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for OidcTestProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(status, &json!({"error": error, "error_description": description}))
}

fn parse_pairs(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input).into_owned().collect()
}

/// The single value of `name`; `Err` when it occurs more than once.
fn single<'a>(params: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ()> {
    let mut values = params.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        Err(())
    } else {
        Ok(first)
    }
}

fn has_duplicates(params: &[(String, String)]) -> bool {
    params
        .iter()
        .enumerate()
        .any(|(i, (name, _))| params[..i].iter().any(|(n, _)| n == name))
}

fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn discovery(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    shared.enter(Endpoint::Discovery).await;
    let state = shared.lock();
    json_response(StatusCode::OK, &shared.discovery(&state))
}

async fn jwks(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    shared.enter(Endpoint::Jwks).await;
    let state = shared.lock();
    let mut response = json_response(StatusCode::OK, &shared.jwks(&state));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/jwk-set+json".parse().expect("media type"),
    );
    response
}

fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{}", query.finish());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

async fn authorize(AxumState(shared): AxumState<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    shared.enter(Endpoint::Authorize).await;
    let params = parse_pairs(uri.query().unwrap_or("").as_bytes());
    let mut state = shared.lock();
    state.last_authorize = Some(RecordedRequest {
        params: params.clone(),
        authorization: authorization(&headers),
    });
    // Without a registered client and redirect URI there is nowhere safe to
    // redirect to: answer the user agent directly (RFC 6749 §4.1.2.1).
    if has_duplicates(&params) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a parameter is repeated",
        );
    }
    let get = |name: &str| single(&params, name).ok().flatten();
    let Some(client_id) = get("client_id") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "client_id is missing");
    };
    let Some(client) = state.client(client_id) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "unknown client_id");
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is missing",
        );
    };
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is not registered",
        );
    }
    let issuer = shared.issuer.clone();
    let state_param = get("state");
    let fail = |error: &str, description: &str| {
        let mut out = vec![("error", error), ("error_description", description)];
        if let Some(s) = state_param {
            out.push(("state", s));
        }
        out.push(("iss", issuer.as_str()));
        redirect(redirect_uri, &out)
    };
    if state.has(&Misbehaviour::AuthorizeAccessDenied) {
        return fail("access_denied", ACCESS_DENIED_DESCRIPTION);
    }
    if get("response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let scope = get("scope").unwrap_or("");
    if !scope.split(' ').any(|s| s == "openid") {
        return fail("invalid_scope", "scope must include openid");
    }
    if get("code_challenge_method") != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    let Some(code_challenge) = get("code_challenge").filter(|c| is_pkce_value(c)) else {
        return fail("invalid_request", "code_challenge is missing or malformed");
    };
    let code = shared.random_token();
    let grant = Grant {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        code_challenge: code_challenge.to_owned(),
        nonce: get("nonce").map(str::to_owned),
        scope: scope.to_owned(),
        user: state.user.clone(),
        issued_at: state.now(),
    };
    let redirect_uri = grant.redirect_uri.clone();
    let state_param = state_param.map(str::to_owned);
    state.codes.insert(code.clone(), grant);
    let mut out = vec![("code", code.as_str())];
    if let Some(s) = &state_param {
        out.push(("state", s.as_str()));
    }
    out.push(("iss", issuer.as_str()));
    redirect(&redirect_uri, &out)
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: id and
/// secret each form-urlencoded, then joined with `:` and base64 encoded).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |part: &str| {
        let input = format!("v={part}");
        let mut pairs = url::form_urlencoded::parse(input.as_bytes()).into_owned();
        let (_, value) = pairs.next()?;
        pairs.next().is_none().then_some(value)
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn invalid_client(description: &str) -> Response {
    let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Basic realm=\"oidc-test-provider\""
            .parse()
            .expect("header value"),
    );
    response
}

async fn token(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.enter(Endpoint::Token).await;
    let params = parse_pairs(&body);
    let auth_header = authorization(&headers);
    let mut state = shared.lock();
    state.last_token = Some(RecordedRequest {
        params: params.clone(),
        authorization: auth_header.clone(),
    });
    if has_duplicates(&params) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a parameter is repeated",
        );
    }
    let get = |name: &str| single(&params, name).ok().flatten();

    // Client authentication: exactly one method.
    let basic = match auth_header.as_deref() {
        Some(value) => match basic_credentials(value) {
            Some(credentials) => Some(credentials),
            None => return invalid_client("malformed basic credentials"),
        },
        None => None,
    };
    let (client_id, secret) = match (basic, get("client_secret")) {
        (Some(_), Some(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one client authentication method",
            );
        }
        (Some((id, secret)), None) => {
            if get("client_id").is_some_and(|form_id| form_id != id) {
                return invalid_client("client_id does not match the credentials");
            }
            (id, secret)
        }
        (None, Some(secret)) => match get("client_id") {
            Some(id) => (id.to_owned(), secret.to_owned()),
            None => return invalid_client("client_id is missing"),
        },
        (None, None) => return invalid_client("client authentication is required"),
    };
    match state.client(&client_id) {
        Some(client) if client.client_secret == secret => {}
        _ => return invalid_client("client authentication failed"),
    }

    if get("grant_type") != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code is supported",
        );
    }
    if state.has(&Misbehaviour::TokenInvalidGrant) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            INVALID_GRANT_DESCRIPTION,
        );
    }
    let Some(code) = get("code") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "code is missing");
    };
    // The code is spent by any attempt of its own client, successful or not.
    let grant = match state.codes.get(code) {
        Some(grant) if grant.client_id == client_id => state.codes.remove(code),
        _ => None,
    };
    let Some(grant) = grant else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or used code");
    };
    let now = state.now();
    if now > grant.issued_at + CODE_LIFETIME {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code expired");
    }
    if get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match",
        );
    }
    let verified = get("code_verifier").is_some_and(|verifier| {
        is_pkce_value(verifier)
            && URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()))
                == grant.code_challenge
    });
    if !verified {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code_verifier does not match",
        );
    }

    let id_token = shared.id_token(&state, &client_id, grant.nonce.as_deref(), &grant.user);
    let access_token = shared.random_token();
    state.access_tokens.insert(
        access_token.clone(),
        AccessToken {
            user: grant.user,
            scope: grant.scope.clone(),
            expires_at: now + TOKEN_LIFETIME,
        },
    );
    state.last_id_token = Some(id_token.clone());
    let mut response = json_response(
        StatusCode::OK,
        &json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "scope": grant.scope,
            "id_token": id_token,
        }),
    );
    response
        .headers_mut()
        .insert(header::PRAGMA, "no-cache".parse().expect("header value"));
    response
}

async fn userinfo(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.enter(Endpoint::Userinfo).await;
    let state = shared.lock();
    let token = authorization(&headers).and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    });
    let now = state.now();
    let Some(access) = token
        .and_then(|t| state.access_tokens.get(&t))
        .filter(|a| now < a.expires_at)
    else {
        let mut response = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "missing or unknown access token",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer error=\"invalid_token\"".parse().expect("header value"),
        );
        return response;
    };
    let mut claims = access.user.claims();
    if state.has(&Misbehaviour::UserinfoOtherSub) {
        claims.insert("sub".into(), json!(OTHER_SUB));
    }
    json_response(StatusCode::OK, &Value::Object(claims))
}
