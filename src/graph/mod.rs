//! The transport-independent core of a Microsoft-Graph-compatible admin
//! REST API.
//!
//! An HTTP adapter (axum, actix, ...) only moves bytes: it hands this module
//! the `Authorization` header, the query string and the body, calls the
//! [`GuestPass`](crate::GuestPass) operation, and sends back what this
//! module renders. Every rule lives here:
//!
//! | request | scope checked | parse | call | answer |
//! |---|---|---|---|---|
//! | `POST /v1.0/invitations` | [`auth::Operation::invitation`] | [`invitations::parse_request`] | `GuestPass::invite` | 201, [`invitations::created`] |
//! | `GET /v1.0/users` | [`auth::Operation::ListUsers`] | [`odata::UsersQuery::from_query`] | `GuestPass::users` | 200, [`odata::UsersQuery::render`] |
//! | `GET /v1.0/users/{id}` | [`auth::Operation::GetUser`] | [`parse_object_id`], [`odata::EntityQuery::from_query`] | `GuestPass::user` | 200, [`odata::user_entity`] |
//! | `PATCH /v1.0/users/{id}` | [`auth::Operation::UpdateUser`] | [`users::UserPatch::parse`] | (integrator) | 204 |
//! | `DELETE /v1.0/users/{id}` | [`auth::Operation::DeleteUser`] | [`parse_object_id`] | (integrator) | 204 |
//!
//! Failures are [`GraphError`]s rendered as Graph's error body; the crate's
//! [`Error`](crate::Error) converts into one. [`openapi::document`]
//! describes the whole surface.
//!
//! Parse a filter:
//!
//! ```
//! use guestpass::graph::odata::{Clause, Filter};
//! use guestpass::directory::{ExternalUserState, UserType};
//!
//! let f = Filter::parse("userType eq 'Guest' AND externalUserState eq 'PendingAcceptance'")?;
//! assert_eq!(
//!     f.clauses(),
//!     [Clause::UserType(UserType::Guest), Clause::ExternalUserState(ExternalUserState::PendingAcceptance)]
//! );
//! let e = Filter::parse("displayName eq 'Alice'").unwrap_err();
//! assert_eq!((e.status.as_u16(), e.code), (400, "Request_UnsupportedQuery"));
//! # Ok::<(), guestpass::graph::GraphError>(())
//! ```
//!
//! Issue and verify an admin token:
//!
//! ```
//! use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
//! use guestpass::graph::auth::{AdminTokenIssuer, Operation, Scope, Scopes};
//! use guestpass::id::Id;
//! use guestpass::random::SystemRandom;
//! use time::macros::datetime;
//!
//! let rng = SystemRandom::new();
//! let keys = TokenKeys::new(TokenSigningKey::generate("admin-1", TokenAlgorithm::Es256, &rng)?);
//! let base = url::Url::parse("https://guests.contoso.example/")?;
//! let issuer = AdminTokenIssuer::new(&keys, &base)?;
//! let now = datetime!(2026-03-01 09:00 UTC);
//! let admin = Id::random(&rng)?;
//! let token = issuer.issue(admin, &Scopes::from([Scope::UserReadAll]), issuer.default_lifetime(), now, &rng)?;
//!
//! let header = format!("Bearer {}", token.expose());
//! let principal = issuer.verify(Some(&header), now)?;
//! assert_eq!(principal.subject, admin);
//! assert!(principal.require(Operation::ListUsers).is_ok());
//! let denied = principal.require(Operation::UpdateUser).unwrap_err();
//! assert_eq!((denied.status.as_u16(), denied.code), (403, "Authorization_RequestDenied"));
//! let missing = issuer.verify(None, now).unwrap_err();
//! assert_eq!((missing.status.as_u16(), missing.code), (401, "InvalidAuthenticationToken"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Render an error:
//!
//! ```
//! use guestpass::graph::GraphError;
//! use time::macros::datetime;
//!
//! let e = GraphError::from(&guestpass::Error::NotFound { what: "user" });
//! let body = e.to_json("0b6f3e0c-2f4e-4c39-8f0e-5d2b1a9c7e11", datetime!(2026-03-01 09:00 UTC));
//! assert_eq!(body, serde_json::json!({"error": {
//!     "code": "Request_ResourceNotFound",
//!     "message": "user not found",
//!     "innerError": {"date": "2026-03-01T09:00:00", "request-id": "0b6f3e0c-2f4e-4c39-8f0e-5d2b1a9c7e11"}
//! }}));
//! ```

use std::collections::BTreeSet;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use url::Url;

use crate::id::Id;

pub mod auth;
pub mod error;
pub mod invitations;
pub mod odata;
pub mod openapi;
pub mod users;

pub use error::GraphError;

/// The API version segment every path starts with.
pub const API_VERSION: &str = "v1.0";

/// The root of the API under the public base URL, without a trailing
/// slash: `https://guests.contoso.example/v1.0` for the base
/// `https://guests.contoso.example/` (a base without a trailing slash is
/// read as a directory, so `https://x.example/guests` gives
/// `https://x.example/guests/v1.0`). Query and fragment are dropped.
///
/// Links are built only from the configured base URL, never from the
/// request's `Host` (invariant 5).
pub fn api_root(base: &Url) -> String {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    let mut s = url.to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    s.push_str(API_VERSION);
    s
}

/// Reads the `{id}` of a `/users/{id}` path: a GUID, else 400 naming it.
///
/// ```
/// use guestpass::graph::parse_object_id;
/// assert!(parse_object_id("0f8fad5b-d9cb-469f-a165-70867728950e").is_ok());
/// let e = parse_object_id("alice@fabrikam.example").unwrap_err();
/// assert_eq!(e.message, "invalid object identifier `alice@fabrikam.example`");
/// ```
///
/// # Errors
///
/// 400 `Request_BadRequest` when `segment` is not a GUID (looking users up
/// by user principal name is not supported).
pub fn parse_object_id(segment: &str) -> Result<Id, GraphError> {
    segment
        .parse()
        .map_err(|_| GraphError::bad_request(format!("invalid object identifier `{}`", quote(segment))))
}

/// Checks a request's `Content-Type`: `application/json`, with any
/// parameters (such as `charset=utf-8`), any letter case.
///
/// # Errors
///
/// 415 `Request_UnsupportedMediaType` for anything else, or none.
pub fn require_json_content_type(content_type: Option<&str>) -> Result<(), GraphError> {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(GraphError::unsupported_media_type())
    }
}

/// User input fit to quote in a message: control characters escaped, cut
/// to 64 characters.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c == '`' {
            out.push_str("\\`");
        } else if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The top-level members of a JSON object body, in order, duplicates kept.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads a request body that must be one JSON object of at most `limit`
/// bytes, whose member names are unique.
pub(crate) fn object_members(body: &[u8], limit: usize) -> Result<Vec<(String, Box<RawValue>)>, GraphError> {
    if body.len() > limit {
        return Err(GraphError::payload_too_large(limit));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GraphError::bad_request("the request body is empty"));
    }
    let trimmed = body.trim_ascii_start();
    if trimmed.first() != Some(&b'{') {
        return Err(GraphError::bad_request("the request body must be a JSON object"));
    }
    let Entries(entries) = serde_json::from_slice(body)
        .map_err(|e| GraphError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let mut seen = BTreeSet::new();
    for (name, _) in &entries {
        if !seen.insert(name.as_str()) {
            return Err(GraphError::bad_request(format!(
                "property `{}` is given twice",
                quote(name)
            )));
        }
    }
    Ok(entries)
}

/// Checks an `@odata.type` annotation in a body: only `expected` (such as
/// `#microsoft.graph.user`) is accepted, as Graph's SDKs send it.
pub(crate) fn check_odata_type(raw: &RawValue, expected: &str) -> Result<(), GraphError> {
    match serde_json::from_str::<String>(raw.get()) {
        Ok(t) if t == expected => Ok(()),
        _ => Err(GraphError::bad_request(format!(
            "`@odata.type` must be `{expected}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_root_is_built_from_the_base() {
        for (base, root) in [
            (
                "https://guests.contoso.example/",
                "https://guests.contoso.example/v1.0",
            ),
            (
                "https://guests.contoso.example",
                "https://guests.contoso.example/v1.0",
            ),
            ("https://x.example/guests/", "https://x.example/guests/v1.0"),
            ("https://x.example/guests", "https://x.example/guests/v1.0"),
            ("https://x.example/g/?a=1#f", "https://x.example/g/v1.0"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1.0"),
        ] {
            let url = Url::parse(base).unwrap_or_else(|e| panic!("{base}: {e}"));
            assert_eq!(api_root(&url), root, "{base}");
        }
    }

    #[test]
    fn bodies_must_be_one_object_with_unique_members() {
        let ok = object_members(br#" {"a": 1, "b": {"a": 2, "a": 3}} "#, 100).unwrap();
        assert_eq!(ok.len(), 2);
        let cases: [(&[u8], u16, &str); 7] = [
            (b"", 400, "the request body is empty"),
            (b"  \n", 400, "the request body is empty"),
            (b"[1]", 400, "the request body must be a JSON object"),
            (b"null", 400, "the request body must be a JSON object"),
            (br#"{"a": 1, "a": 2}"#, 400, "property `a` is given twice"),
            (br#"{"a": 1} x"#, 400, "the request body is not valid JSON"),
            (&[b' '; 101], 413, "the request body is larger than 100 bytes"),
        ];
        for (body, status, message) in cases {
            let e = object_members(body, 100).unwrap_err();
            assert_eq!(e.status.as_u16(), status, "{message}");
            assert!(e.message.starts_with(message), "{} vs {message}", e.message);
        }
    }

    #[test]
    fn content_type_and_ids() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;odata.metadata=minimal",
        ] {
            assert!(require_json_content_type(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [None, Some("text/plain"), Some("application/jsonx"), Some("")] {
            assert_eq!(
                require_json_content_type(bad).map_err(|e| e.status.as_u16()),
                Err(415),
                "{bad:?}"
            );
        }
        let e = parse_object_id("x`\n").unwrap_err();
        assert_eq!(e.message, "invalid object identifier `x\\`\\n`");
        assert_eq!(quote(&"a".repeat(70)), format!("{}…", "a".repeat(64)));
    }
}
