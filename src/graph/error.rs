//! Graph's error body and the mapping from the crate's [`Error`] to it.
//!
//! Every failure of the admin API is a [`GraphError`]: an HTTP status, one
//! of Graph's error codes and a message. [`GraphError::to_json`] renders the
//! body Graph sends:
//!
//! ```json
//! {"error": {"code": "Request_ResourceNotFound", "message": "user not found",
//!            "innerError": {"date": "2026-03-01T09:00:00", "request-id": "..."}}}
//! ```
//!
//! [`GraphError::headers`] adds what belongs in the response headers: a
//! `WWW-Authenticate` challenge on 401 (and on a 403 for a missing scope) and
//! `Retry-After` on 429.
//!
//! Server-side failures (5xx) never carry the underlying error's text: a
//! store, mail server or key problem is described only in general terms, so
//! nothing internal (host names, SQL, key ids) reaches the client. Messages
//! follow the crate's style: lowercase, no final period, user input in
//! backticks.
//!
//! ```
//! use guestpass::graph::error::{GraphError, codes};
//! use guestpass::Error;
//! use time::macros::datetime;
//!
//! let e = GraphError::from(&Error::NotFound { what: "user" });
//! assert_eq!(e.status.as_u16(), 404);
//! assert_eq!(e.code, codes::RESOURCE_NOT_FOUND);
//! let body = e.to_json("7f1c0c43-3d3c-4d1b-a1f0-9a5d2c3b4e5f", datetime!(2026-03-01 09:00 UTC));
//! assert_eq!(body["error"]["message"], "user not found");
//! assert_eq!(body["error"]["innerError"]["date"], "2026-03-01T09:00:00");
//! ```

use std::fmt;

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::{Category, Error, PasscodeError, StoreError};

/// The error codes this API answers with, as Graph spells them.
pub mod codes {
    /// 400: the request is malformed or a property is invalid.
    pub const BAD_REQUEST: &str = "Request_BadRequest";
    /// 400: a query option (`$filter`, `$select`, ...) asks for something
    /// valid in OData that this API does not support.
    pub const UNSUPPORTED_QUERY: &str = "Request_UnsupportedQuery";
    /// 401: the bearer token is missing, malformed, expired or not for
    /// this API.
    pub const INVALID_AUTHENTICATION_TOKEN: &str = "InvalidAuthenticationToken";
    /// 401: a credential other than the bearer token (a passcode) was wrong.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// 403: the token lacks the scope, or a policy forbids the operation.
    pub const AUTHORIZATION_REQUEST_DENIED: &str = "Authorization_RequestDenied";
    /// 404: the object does not exist.
    pub const RESOURCE_NOT_FOUND: &str = "Request_ResourceNotFound";
    /// 409: the object changed concurrently, or a unique value is taken.
    pub const CONFLICT: &str = "Request_Conflict";
    /// 410: a link or code is no longer valid.
    pub const GONE: &str = "Request_Gone";
    /// 413: the request body is too large.
    pub const ENTITY_TOO_LARGE: &str = "Request_EntityTooLarge";
    /// 415: the request body is not JSON.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "Request_UnsupportedMediaType";
    /// 429: too many requests or attempts.
    pub const TOO_MANY_REQUESTS: &str = "TooManyRequests";
    /// 502 / 503: a store or mail service the request needs failed.
    pub const SERVICE_NOT_AVAILABLE: &str = "serviceNotAvailable";
    /// 500: an internal error.
    pub const GENERAL_EXCEPTION: &str = "generalException";
}

/// The message of every 500 answer.
pub const INTERNAL_MESSAGE: &str = "an internal error occurred; the request was not completed";
/// The message of every 502 and 503 answer.
pub const UNAVAILABLE_MESSAGE: &str = "a service this request depends on is unavailable; try again later";

/// Longest request id [`GraphError::to_json`] echoes, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A failure of the admin API, ready to be sent: status, Graph error code
/// and message, plus the response headers it needs ([`GraphError::headers`]).
///
/// Built by the parsers and checks of [`crate::graph`], from an [`Error`]
/// (`GraphError::from(&error)`), or with the constructors for what an HTTP
/// adapter decides itself (an unknown route, a body that is not JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Graph's error code (one of [`codes`]).
    pub code: &'static str,
    /// A message for the caller; never contains a secret or internal detail.
    pub message: String,
    /// The `WWW-Authenticate` value, for 401 and insufficient-scope 403.
    challenge: Option<String>,
    /// Seconds for `Retry-After`.
    retry_after: Option<u64>,
}

impl GraphError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let challenge = (status == StatusCode::UNAUTHORIZED).then(|| "Bearer".to_owned());
        Self {
            status,
            code,
            message: message.into(),
            challenge,
            retry_after: None,
        }
    }

    /// 400 `Request_BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }

    /// 400 `Request_UnsupportedQuery`.
    pub fn unsupported_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::UNSUPPORTED_QUERY, message)
    }

    /// 404 `Request_ResourceNotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::RESOURCE_NOT_FOUND, message)
    }

    /// 413 `Request_EntityTooLarge` for a body over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::ENTITY_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 415 `Request_UnsupportedMediaType`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be `application/json`",
        )
    }

    /// 500 `generalException` with the generic message.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::GENERAL_EXCEPTION,
            INTERNAL_MESSAGE,
        )
    }

    /// 401 `InvalidAuthenticationToken`. `presented` says whether a token
    /// was sent at all: only then does the challenge carry
    /// `error="invalid_token"` (RFC 6750, section 3.1).
    pub(crate) fn invalid_token(message: impl Into<String>, presented: bool) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            codes::INVALID_AUTHENTICATION_TOKEN,
            message,
        );
        if presented {
            e.challenge = Some("Bearer error=\"invalid_token\"".to_owned());
        }
        e
    }

    /// 403 `Authorization_RequestDenied` for a token without the scope
    /// `needed`.
    pub(crate) fn insufficient_scope(message: impl Into<String>, needed: &str) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            codes::AUTHORIZATION_REQUEST_DENIED,
            message,
        );
        e.challenge = Some(format!("Bearer error=\"insufficient_scope\", scope=\"{needed}\""));
        e
    }

    /// The `WWW-Authenticate` value this answer carries, if any.
    pub fn www_authenticate(&self) -> Option<&str> {
        self.challenge.as_deref()
    }

    /// Seconds the client should wait (`Retry-After`), if known.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The response headers this answer needs besides `Content-Type`:
    /// `WWW-Authenticate` and `Retry-After` where they apply.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        if let Some(value) = self
            .challenge
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            out.push((http::header::WWW_AUTHENTICATE, value));
        }
        if let Some(secs) = self.retry_after {
            out.push((http::header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        out
    }

    /// Graph's error body. `request_id` identifies the request in the
    /// host's logs (it is cut to [`MAX_REQUEST_ID_LEN`] printable ASCII
    /// characters); `now` is the time of the answer, written in UTC without
    /// offset as Graph does (`2026-03-01T09:00:00`).
    pub fn to_json(&self, request_id: &str, now: OffsetDateTime) -> Value {
        let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
        let date = now
            .to_offset(time::UtcOffset::UTC)
            .format(&format)
            .unwrap_or_default();
        let request_id: String = request_id
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(MAX_REQUEST_ID_LEN)
            .collect();
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": date,
                    "request-id": request_id,
                }
            }
        })
    }

    /// [`GraphError::to_json`] as bytes, for the response body.
    pub fn to_body(&self, request_id: &str, now: OffsetDateTime) -> Vec<u8> {
        self.to_json(request_id, now).to_string().into_bytes()
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for GraphError {}

impl From<&Error> for GraphError {
    /// | category | status | code |
    /// |---|---|---|
    /// | bad request | 400 | `Request_BadRequest` |
    /// | unauthorized (passcode) | 401 | `unauthenticated` |
    /// | forbidden | 403 | `Authorization_RequestDenied` |
    /// | not found | 404 | `Request_ResourceNotFound` |
    /// | conflict | 409 | `Request_Conflict` |
    /// | gone | 410 | `Request_Gone` |
    /// | too many requests | 429 | `TooManyRequests` (+ `Retry-After`) |
    /// | bad gateway / unavailable | 502 / 503 | `serviceNotAvailable`, generic message |
    /// | internal | 500 | `generalException`, generic message |
    fn from(e: &Error) -> Self {
        let status = e.status();
        let text = e.to_string();
        match e.category() {
            Category::BadRequest => Self::new(status, codes::BAD_REQUEST, text),
            Category::Unauthorized => Self::new(status, codes::UNAUTHENTICATED, text),
            Category::Forbidden => Self::new(status, codes::AUTHORIZATION_REQUEST_DENIED, text),
            Category::NotFound => Self::new(status, codes::RESOURCE_NOT_FOUND, text),
            Category::Conflict => {
                // Store keys (mail comparison keys, identity subjects) stay
                // inside: the caller learns the rule, not the stored key.
                let message = match e {
                    Error::Store(StoreError::Duplicate { constraint, .. }) => {
                        format!("an object with the same {constraint} already exists")
                    }
                    Error::Store(_) => {
                        "the object was changed by a concurrent request; retry the request".to_owned()
                    }
                    _ => text,
                };
                Self::new(status, codes::CONFLICT, message)
            }
            Category::Gone => Self::new(status, codes::GONE, text),
            Category::TooManyRequests => {
                let mut g = Self::new(status, codes::TOO_MANY_REQUESTS, text);
                if let Error::Passcode(PasscodeError::RateLimited { retry_after_secs }) = e {
                    g.retry_after = Some(*retry_after_secs);
                }
                g
            }
            Category::BadGateway | Category::Unavailable => {
                Self::new(status, codes::SERVICE_NOT_AVAILABLE, UNAVAILABLE_MESSAGE)
            }
            Category::Internal => Self::new(status, codes::GENERAL_EXCEPTION, INTERNAL_MESSAGE),
        }
    }
}

impl From<Error> for GraphError {
    fn from(e: Error) -> Self {
        Self::from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ConfigError, Denied, InputError, Internal, MailError};
    use time::macros::datetime;

    #[test]
    fn categories_map_to_graph_codes() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (
                InputError::Missing {
                    field: "inviteRedirectUrl",
                }
                .into(),
                400,
                codes::BAD_REQUEST,
            ),
            (
                PasscodeError::Incorrect { remaining: 2 }.into(),
                401,
                codes::UNAUTHENTICATED,
            ),
            (
                Denied::InviterNotAllowed.into(),
                403,
                codes::AUTHORIZATION_REQUEST_DENIED,
            ),
            (Error::NotFound { what: "user" }, 404, codes::RESOURCE_NOT_FOUND),
            (
                StoreError::Conflict {
                    record: "user",
                    key: "k".into(),
                }
                .into(),
                409,
                codes::CONFLICT,
            ),
            (crate::error::TicketError::NoLongerValid.into(), 410, codes::GONE),
            (PasscodeError::AddressLocked.into(), 429, codes::TOO_MANY_REQUESTS),
            (
                MailError::Transport { message: "x".into() }.into(),
                502,
                codes::SERVICE_NOT_AVAILABLE,
            ),
            (
                StoreError::Backend { message: "x".into() }.into(),
                503,
                codes::SERVICE_NOT_AVAILABLE,
            ),
            (Internal::RandomUnavailable.into(), 500, codes::GENERAL_EXCEPTION),
        ];
        for (e, status, code) in cases {
            let g = GraphError::from(&e);
            assert_eq!((g.status.as_u16(), g.code), (status, code), "{e}");
        }
    }

    #[test]
    fn internals_never_reach_the_message() {
        let secrets: Vec<Error> = vec![
            StoreError::Backend {
                message: "connection to db.internal:5432 refused for user svc_secret".into(),
            }
            .into(),
            MailError::Transport {
                message: "smtp.internal rejected AUTH PLAIN c2VjcmV0".into(),
            }
            .into(),
            Internal::Corrupt("row 17 column ticket_hash".into()).into(),
            ConfigError::Invalid {
                field: "signing_key",
                reason: "key material 0xdeadbeef".into(),
            }
            .into(),
            StoreError::Conflict {
                record: "user",
                key: "alice@fabrikam.example".into(),
            }
            .into(),
            StoreError::Duplicate {
                constraint: "user mail",
                key: "alice@fabrikam.example".into(),
            }
            .into(),
        ];
        for e in secrets {
            let g = GraphError::from(&e);
            for needle in [
                "db.internal",
                "smtp.internal",
                "svc_",
                "c2VjcmV0",
                "ticket",
                "deadbeef",
                "alice",
                "5432",
            ] {
                assert!(!g.message.contains(needle), "{needle} in {}", g.message);
            }
        }
        let g = GraphError::from(&Error::from(Internal::RandomUnavailable));
        assert_eq!(g.message, INTERNAL_MESSAGE);
        let g = GraphError::from(&Error::from(StoreError::Duplicate {
            constraint: "user mail",
            key: "k".into(),
        }));
        assert_eq!(g.message, "an object with the same user mail already exists");
    }

    #[test]
    fn body_is_graphs_shape() {
        let g = GraphError::bad_request("property `foo` does not exist on type `user`");
        let v = g.to_json("req-1\n<x>", datetime!(2026-03-01 10:00 +01:00));
        assert_eq!(
            v,
            json!({"error": {
                "code": "Request_BadRequest",
                "message": "property `foo` does not exist on type `user`",
                "innerError": {"date": "2026-03-01T09:00:00", "request-id": "req-1<x>"}
            }})
        );
        let long = "r".repeat(500);
        let v = g.to_json(&long, datetime!(2026-03-01 10:00 UTC));
        assert_eq!(
            v["error"]["innerError"]["request-id"].as_str().map(str::len),
            Some(MAX_REQUEST_ID_LEN)
        );
        assert_eq!(g.to_body("r", datetime!(2026-03-01 10:00 UTC)), {
            let v = g.to_json("r", datetime!(2026-03-01 10:00 UTC));
            v.to_string().into_bytes()
        });
    }

    #[test]
    fn headers_carry_challenge_and_retry_after() {
        assert!(GraphError::bad_request("x").headers().is_empty());
        let missing = GraphError::invalid_token("access token is empty", false);
        assert_eq!(missing.www_authenticate(), Some("Bearer"));
        let bad = GraphError::invalid_token("x", true);
        assert_eq!(
            bad.headers(),
            vec![(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\"")
            )]
        );
        let scope = GraphError::insufficient_scope("x", "User.ReadWrite.All");
        assert_eq!(
            scope.www_authenticate(),
            Some("Bearer error=\"insufficient_scope\", scope=\"User.ReadWrite.All\"")
        );
        let limited = GraphError::from(&Error::from(PasscodeError::RateLimited { retry_after_secs: 30 }));
        assert_eq!(limited.retry_after(), Some(30));
        assert_eq!(
            limited.headers(),
            vec![(http::header::RETRY_AFTER, HeaderValue::from(30u64))]
        );
    }
}
