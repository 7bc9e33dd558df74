//! The axum integration (feature `axum`): an [`axum::Router`] a host merges
//! into its own application.
//!
//! [`router`] mounts:
//!
//! | route | what |
//! |---|---|
//! | `POST /v1.0/invitations` | invite a guest or reset a redemption (Graph's `invitation`) |
//! | `GET /v1.0/users` | list users (`$filter`, `$select`, `$top`, `$skiptoken`) |
//! | `GET /v1.0/users/{id}` | read a user (`$select`) |
//! | `PATCH /v1.0/users/{id}` | change a user's writable properties |
//! | `DELETE /v1.0/users/{id}` | delete a user with its identities, invitations and redemption flows (`204 No Content`) |
//! | any other `/v1.0/...` | Graph's 404 error body |
//! | `GET /openapi.json` | the OpenAPI document of the admin API ([`crate::graph::openapi::document`]) |
//! | `GET /.well-known/jwks.json` | the public keys of completion tokens, when token keys are configured |
//! | `/redeem`, `/redeem/...`, `/federation/callback/{provider_id}` | the redemption pages ([`pages`]) |
//! | `GET /signup?client_id=…&redirect_uri=…&state=…&nonce=…&ui_locales=…` | starts a sign-up or sign-in flow ([`signup_pages`]) |
//! | `GET /signup/step`, `POST /signup/step` | the flow's pages and forms, ending in a `form_post` of the completion token ([`signup_pages`]) |
//!
//! A host that signs its own users in with guestpass merges the routes of
//! a [`session::AppSession`] too (sign-in start, completion callback,
//! sign-out) and reads the signed-in user with [`session::SignedInUser`].
//!
//! The admin API is the transport-independent core in [`crate::graph`]
//! bound to HTTP: bearer tokens from [`AdminTokenIssuer`], Graph's error
//! body, `request-id` and `client-request-id` headers as Graph sends them.
//!
//! # Security rules applied here
//!
//! - Every response of this router carries `Content-Security-Policy:
//!   default-src 'none'; style-src 'self'; img-src 'self' data:;
//!   form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
//!   `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
//!   `Referrer-Policy: no-referrer` (token pages must not leak their URL,
//!   invariant 4), and `Cache-Control: no-store` unless the handler chose
//!   another (only the JWKS is cacheable). The one exception to the policy:
//!   the sign-up completion page may also post its form to the registered
//!   redirect URI's origin ([`security::FormActionOrigin`]).
//! - Links (`inviteRedeemUrl`, `Location`, `@odata.context`,
//!   `@odata.nextLink`) are built only from the configured public base URL
//!   ([`Config::public_base_url`](crate::config::Config::public_base_url)),
//!   never from `Host` or `X-Forwarded-Host` (invariant 5).
//! - Request bodies are limited before they are read: a `Content-Length`
//!   over the limit is refused at once, a longer streamed body as soon as it
//!   passes the limit.
//! - The bearer token is checked before the body is looked at; a request
//!   without a valid token learns nothing about the body's validity.
//! - Tokens and redemption links are never logged and never appear in a
//!   `Debug` output of this module.
//!
//! # Time and randomness
//!
//! [`GuestPass`] does not expose its clock, so the adapter takes `now` from
//! the [`Clock`] in [`WebConfig`] ([`SystemClock`] unless
//! [`WebConfig::clock`] sets another; pass the same clock the service was
//! built with). Request ids come from [`WebConfig::random`] ([`SystemRandom`]
//! unless set), falling back to a counter if the generator fails.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use guestpass::GuestPass;
//! use guestpass::directory::MemoryStore;
//! use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
//! use guestpass::graph::auth::AdminTokenIssuer;
//! use guestpass::keys::SigningKey;
//! use guestpass::mail::Outbox;
//! use guestpass::random::SystemRandom;
//! use guestpass::web::{self, WebConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let gp = GuestPass::builder()
//!     .tenant("contoso", "Contoso", "contoso.example")
//!     .public_base_url("https://guests.contoso.example/")
//!     .signing_key(SigningKey::new("k1", [42u8; 32])?)
//!     .redirect_url("https://app.contoso.example/")
//!     .store(Arc::new(MemoryStore::new()))
//!     .mail(Arc::new(Outbox::new()))
//!     .build()?;
//! let admin_keys = TokenKeys::new(TokenSigningKey::generate("admin-1", TokenAlgorithm::Es256, &SystemRandom::new())?);
//! let admin_tokens = AdminTokenIssuer::new(&admin_keys, gp.config().public_base_url())?;
//!
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my application" }))
//!     .merge(web::router(gp, WebConfig::new(admin_tokens)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use url::Url;

use crate::GuestPass;
use crate::clock::{Clock, SystemClock};
use crate::graph::auth::AdminTokenIssuer;
use crate::graph::invitations::MAX_INVITATION_BODY_BYTES;
use crate::graph::users::MAX_USER_PATCH_BODY_BYTES;
use crate::id::Id;
use crate::random::{SecureRandom, SystemRandom};

mod api_error;
pub mod cookies;
mod graph_api;
pub mod pages;
pub mod security;
pub mod session;
pub mod signup_pages;

pub use api_error::RequestId;

/// `Cache-Control` of the JWKS: keys change rarely and rotation keeps the
/// old key published, so five minutes of caching is safe.
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

/// How the web layer is set up: the admin token issuer, the clock and
/// randomness it uses, and the body limits.
///
/// The public base URL is not part of it: [`router`] takes it from the
/// service's configuration, the one place links are built from.
///
/// `Debug` shows the issuer's public parts and the limits only.
#[derive(Clone)]
pub struct WebConfig {
    admin_tokens: AdminTokenIssuer,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    invitation_body_limit: usize,
    user_patch_body_limit: usize,
    /// The key of the redemption pages' CSRF tokens; `None` when the
    /// system generator failed, and then every page form is refused.
    csrf_key: Option<ring::hmac::Key>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("admin_tokens", &self.admin_tokens)
            .field("clock", &self.clock)
            .field("invitation_body_limit", &self.invitation_body_limit)
            .field("user_patch_body_limit", &self.user_patch_body_limit)
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// A configuration checking admin bearer tokens with `admin_tokens`
    /// (build it for the service's public base URL, or every token is
    /// refused for its audience), the system clock, the system CSPRNG and
    /// the largest body limits the parsers accept.
    pub fn new(admin_tokens: AdminTokenIssuer) -> Self {
        Self {
            admin_tokens,
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandom::new()),
            invitation_body_limit: MAX_INVITATION_BODY_BYTES,
            user_patch_body_limit: MAX_USER_PATCH_BODY_BYTES,
            csrf_key: ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .ok(),
        }
    }

    /// The clock token expiry and error dates are checked against; pass the
    /// one the [`GuestPass`] was built with.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The generator of request ids.
    #[must_use]
    pub fn random(mut self, random: Arc<dyn SecureRandom>) -> Self {
        self.random = random;
        self
    }

    /// The key of the redemption pages' CSRF tokens (by default a random
    /// one made by [`new`](Self::new)); give every instance behind one
    /// public base URL the same secret key, or a form rendered by one is
    /// refused by another.
    #[must_use]
    pub fn csrf_key(mut self, key: [u8; 32]) -> Self {
        self.csrf_key = Some(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key));
        self
    }

    /// The largest `POST /v1.0/invitations` body, in bytes; at most (and by
    /// default) [`MAX_INVITATION_BODY_BYTES`].
    #[must_use]
    pub fn invitation_body_limit(mut self, bytes: usize) -> Self {
        self.invitation_body_limit = bytes.min(MAX_INVITATION_BODY_BYTES);
        self
    }

    /// The largest `PATCH /v1.0/users/{id}` body, in bytes; at most (and by
    /// default) [`MAX_USER_PATCH_BODY_BYTES`].
    #[must_use]
    pub fn user_patch_body_limit(mut self, bytes: usize) -> Self {
        self.user_patch_body_limit = bytes.min(MAX_USER_PATCH_BODY_BYTES);
        self
    }
}

/// What every handler shares.
pub(crate) struct WebState {
    pub(crate) gp: GuestPass,
    pub(crate) base: Url,
    pub(crate) config: WebConfig,
    request_counter: AtomicU64,
}

pub(crate) type Shared = Arc<WebState>;

impl WebState {
    /// The current time from the configured clock.
    pub(crate) fn now(&self) -> time::OffsetDateTime {
        self.config.clock.now()
    }

    /// A fresh request id: a random GUID, or, should the generator fail, a
    /// GUID made of a counter (unique within the process, not secret).
    pub(crate) fn new_request_id(&self) -> String {
        match Id::random(self.config.random.as_ref()) {
            Ok(id) => id.to_string(),
            Err(_) => {
                let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
                let mut bytes = [0u8; 16];
                bytes[8..].copy_from_slice(&n.to_be_bytes());
                Id::from_bytes(bytes).to_string()
            }
        }
    }
}

/// The router of the web layer for `gp`; see the module docs for what it
/// mounts and the rules it applies. Merge it into the host's router
/// (`app.merge(router(gp, config))`); it sets no fallback of its own, so
/// the host keeps its.
pub fn router(gp: GuestPass, config: WebConfig) -> Router {
    let base = gp.config().public_base_url().clone();
    let state: Shared = Arc::new(WebState {
        gp,
        base,
        config,
        request_counter: AtomicU64::new(0),
    });
    Router::new()
        .merge(graph_api::routes(state.clone()))
        .merge(pages::routes())
        .merge(signup_pages::routes())
        .route("/.well-known/jwks.json", get(jwks))
        .layer(axum::middleware::map_response(security::apply))
        .with_state(state)
}

/// `GET /.well-known/jwks.json`.
async fn jwks(axum::extract::State(state): axum::extract::State<Shared>) -> Response {
    let Some(keys) = state.gp.jwks() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match serde_json::to_vec(&keys) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(JWKS_CACHE_CONTROL),
                ),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
