//! The signed-in user for the host's own pages: an application that signs
//! people in with guestpass gets a sign-in link, the completion callback,
//! a session cookie and an extractor.
//!
//! [`AppSession`] is configured with the application's client id, one of
//! its registered redirect URIs and a landing path. Its
//! [`router`](AppSession::router) mounts:
//!
//! | route | what |
//! |---|---|
//! | `GET /sign-in` ([`DEFAULT_SIGN_IN_PATH`]) | new random `state` and `nonce` in `__Host-gp-signin` (while one is under way, its own, the cookie not sent again), `303` to guestpass's `/signup?client_id=…&redirect_uri=…&state=…&nonce=…`; `403` for another site's image, frame or script ([`is_navigation`](super::security::is_navigation)) |
//! | `POST <the redirect URI's path>` | the completion (`id_token`, `state`): checks both, sets `__Host-gp-session`, `303` to the landing path |
//! | `POST /sign-out` ([`DEFAULT_SIGN_OUT_PATH`]) | with the session's `csrf_token`: clears the session, `303` to `/` |
//!
//! Handlers read the user with [`SignedInUser`]: the extractor verifies the
//! session cookie's token on every request (signature, issuer, audience =
//! the client id, expiry against the configured clock) and, when there is
//! none or it no longer verifies, answers `303` to the sign-in route.
//! `Option<SignedInUser>` is `None` instead. The extractor finds the
//! session through an [`Extension`] layer: add
//! [`AppSession::extension`] as the last layer of the host's router, so it
//! covers the host's routes and guestpass's.
//!
//! # The callback and cookies
//!
//! - The `state` is compared with the cookie's in constant time; the token
//!   must carry the cookie's `nonce`. A missing or different `state`, or a
//!   token that does not verify, gets a `400` page and sets no cookie, so
//!   a forged completion cannot sign the browser in to another account
//!   (login CSRF). The state cookie is not cleared then, so a forged post
//!   cannot spoil a sign-in under way.
//! - The completion arrives as a form post from guestpass's completion
//!   page. When the application and guestpass are the same site (the same
//!   registrable domain, such as `app.contoso.example` and
//!   `guests.contoso.example`), a `SameSite=Lax` cookie goes with it; when
//!   they are not, browsers leave such a cookie out of a cross-site post.
//!   The state cookie is therefore `SameSite=None` (still `__Host-`,
//!   `Secure`, `HttpOnly`, at most the flow's lifetime): sending it cross
//!   site gives a forger nothing, since the post must also name its random
//!   `state`. Every other cookie stays `SameSite=Lax`.
//! - The session cookie holds the completion token and lives as long as
//!   the token does (`Max-Age` = its remaining lifetime); after that the
//!   person signs in again. The token's lifetime already follows the
//!   conditional access policies' sign-in frequency (see
//!   [`COMPLETION_DELIVERY_WINDOW`](crate::COMPLETION_DELIVERY_WINDOW)), so
//!   the session does too. Signing out clears it; there is no other
//!   guestpass session to end.
//! - The sign-in route takes no return address (an open redirect): after
//!   the callback the browser always goes to the landing path. It accepts
//!   only `ui_locales`; any other parameter gets a `400` page.
//! - `Location`s are built from the redirect URI's origin and the
//!   configured guestpass URL, never from `Host`.
//! - The callback does not check `Origin`: browsers send `null` for a post
//!   from a page with `Referrer-Policy: no-referrer`, which the completion
//!   page has; `state` is what binds the post to this browser. The
//!   sign-out form is checked like guestpass's forms: a token bound to the
//!   session ([`SignedInUser::sign_out_token`]), and an `Origin` that is
//!   the application's (or `null` from a same-origin page).
//! - A sign-up that waits longer for an administrator's approval than the
//!   state cookie lives completes at guestpass, but its callback is
//!   refused; the person signs in again, to the account that now exists.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::Router;
//! use axum::response::Html;
//! use axum::routing::get;
//! use guestpass::GuestPass;
//! use guestpass::directory::MemoryStore;
//! use guestpass::flow::config::SignUpConfig;
//! use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
//! use guestpass::graph::auth::AdminTokenIssuer;
//! use guestpass::keys::SigningKey;
//! use guestpass::mail::Outbox;
//! use guestpass::random::SystemRandom;
//! use guestpass::web::session::{AppSession, SignedInUser};
//! use guestpass::web::{self, WebConfig};
//!
//! /// A page only signed-in people see; others are sent to sign in.
//! async fn home(user: SignedInUser) -> Html<String> {
//!     let sign_out = format!(
//!         r#"<form method="post" action="/sign-out">
//!              <input type="hidden" name="csrf_token" value="{}">
//!              <button>Sign out</button></form>"#,
//!         user.sign_out_token()
//!     );
//!     Html(format!("<p>Hello {}</p><pre>{}</pre>{sign_out}", user.claims().email, user.claims_json()))
//! }
//!
//! /// A page for everyone.
//! async fn welcome(user: Option<SignedInUser>) -> Html<String> {
//!     match user {
//!         Some(u) => Html(format!("<p>Signed in as {}</p>", u.claims().email)),
//!         None => Html(r#"<a href="/sign-in">Sign in</a>"#.to_owned()),
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let sign_up = SignUpConfig::from_json(r#"{
//!   "applications": [{"clientId": "app", "displayName": "App",
//!                     "redirectUris": ["https://contoso.example/auth/callback"]}],
//!   "userFlows": [{"id": "signup", "identityProviders": ["emailOtp"],
//!                  "attributes": [{"name": "givenName"}], "applications": ["app"]}]
//! }"#)?;
//! let rng = SystemRandom::new();
//! let gp = GuestPass::builder()
//!     .tenant("contoso", "Contoso", "contoso.example")
//!     .public_base_url("https://contoso.example/")
//!     .signing_key(SigningKey::new("k1", [42u8; 32])?)
//!     .redirect_url("https://contoso.example/")
//!     .store(Arc::new(MemoryStore::new()))
//!     .mail(Arc::new(Outbox::new()))
//!     .sign_up(sign_up)
//!     .token_keys(TokenKeys::new(TokenSigningKey::generate("t1", TokenAlgorithm::Es256, &rng)?))
//!     .build()?;
//! let admin_keys = TokenKeys::new(TokenSigningKey::generate("admin-1", TokenAlgorithm::Es256, &rng)?);
//! let admin_tokens = AdminTokenIssuer::new(&admin_keys, gp.config().public_base_url())?;
//!
//! let session = AppSession::new(&gp, "app", "https://contoso.example/auth/callback", "/home")?;
//! let app = Router::new()
//!     .route("/", get(welcome))
//!     .route("/home", get(home))
//!     .merge(web::router(gp, WebConfig::new(admin_tokens)))
//!     .merge(session.router())
//!     .layer(session.extension());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Form, FromRequestParts, OptionalFromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use time::Duration;
use url::Url;

use super::cookies::{self, CookieError};
use super::pages::{MAX_FORM_BYTES, language, see_other};
use super::security::{self, origin_allowed};
use super::signup_pages::{message_page, text};
use crate::GuestPass;
use crate::clock::{Clock, SystemClock};
use crate::flow::config::DEFAULT_FLOW_LIFETIME;
use crate::flow::connector::quote;
use crate::flow::token::{TokenError, TokenVerifier, VerifiedToken};
use crate::mail::templates::Language;
use crate::random::{SecureRandom, SystemRandom};
use crate::secret::{Digest, constant_time_eq};

/// The session cookie (`__Host-gp-session`), holding the completion token.
pub const SESSION_COOKIE: &str = "gp-session";

/// The cookie (`__Host-gp-signin`) holding a sign-in's `state` and `nonce`.
pub const SIGN_IN_COOKIE: &str = "gp-signin";

/// The sign-in route unless [`AppSession::sign_in_path`] sets another.
pub const DEFAULT_SIGN_IN_PATH: &str = "/sign-in";

/// The sign-out route unless [`AppSession::sign_out_path`] sets another.
pub const DEFAULT_SIGN_OUT_PATH: &str = "/sign-out";

/// The form field of the sign-out form carrying
/// [`SignedInUser::sign_out_token`].
pub const SIGN_OUT_TOKEN_FIELD: &str = "csrf_token";

/// Longest route or landing path, in bytes.
pub const MAX_PATH_LEN: usize = 256;

/// Paths of guestpass's own routes ([`super::router`]); the session's
/// routes stay clear of them.
const RESERVED: [&str; 6] = [
    "/signup",
    "/redeem",
    "/federation",
    "/v1.0",
    "/.well-known",
    "/openapi.json",
];

const SIGN_OUT_PURPOSE: &[u8] = b"gp-sign-out";

/// Why an [`AppSession`] could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The application is unknown or has no sign-up flow.
    #[error("application `{client_id}` has no sign-up flow")]
    UnknownApplication {
        /// The client id.
        client_id: String,
    },
    /// The redirect URI is not one of the application's registered ones.
    #[error("redirect uri `{uri}` is not registered for application `{client_id}`")]
    RedirectNotRegistered {
        /// The redirect URI.
        uri: String,
        /// The client id.
        client_id: String,
    },
    /// A URL is not usable.
    #[error("invalid `{setting}` `{url}`: {reason}")]
    InvalidUrl {
        /// Which one (`redirect_uri`, `sign_up_url`).
        setting: &'static str,
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A path is not usable.
    #[error("invalid `{setting}` path `{path}`: {reason}")]
    InvalidPath {
        /// Which one (`landing_path`, `sign_in_path`, `sign_out_path`,
        /// `signed_out_path`, or `callback_path` for the redirect URI's).
        setting: &'static str,
        /// The path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The service has no token keys, so there is nothing to verify with.
    #[error("token keys are not configured")]
    NoTokenKeys,
    /// The token verifier could not be built.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Sign-in, callback, sign-out and the session of one application; see the
/// module docs. Cheap to clone.
///
/// `Debug` shows the client id, the redirect URI and the paths.
#[derive(Clone)]
pub struct AppSession {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    verifier: TokenVerifier,
    sign_up_url: Url,
    client_id: String,
    redirect_uri: String,
    /// The redirect URI's origin, as a URL to join paths to.
    app_origin: Url,
    callback_path: String,
    landing_path: String,
    sign_in_path: String,
    sign_out_path: String,
    signed_out_path: String,
    state_lifetime: Duration,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
}

impl fmt::Debug for AppSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("AppSession")
            .field("client_id", &i.client_id)
            .field("redirect_uri", &i.redirect_uri)
            .field("sign_up_url", &i.sign_up_url.as_str())
            .field("landing_path", &i.landing_path)
            .field("sign_in_path", &i.sign_in_path)
            .field("sign_out_path", &i.sign_out_path)
            .finish_non_exhaustive()
    }
}

fn invalid_path(setting: &'static str, path: &str, reason: &'static str) -> SessionError {
    SessionError::InvalidPath {
        setting,
        path: quote(path),
        reason,
    }
}

/// A plain absolute path: `/` then letters, digits, `-._~/`, no `//`.
fn check_path(setting: &'static str, path: &str) -> Result<(), SessionError> {
    if !path.starts_with('/') || path.len() > MAX_PATH_LEN {
        return Err(invalid_path(
            setting,
            path,
            "must start with `/` and be at most 256 bytes",
        ));
    }
    if path.contains("//") || path.contains("/./") || path.contains("/../") || path.ends_with("/..") {
        return Err(invalid_path(
            setting,
            path,
            "must not have empty, `.` or `..` segments",
        ));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
    {
        return Err(invalid_path(
            setting,
            path,
            "must be made of letters, digits and `-._~/`",
        ));
    }
    Ok(())
}

/// [`check_path`] for a route, which must also stay clear of guestpass's.
fn check_route(setting: &'static str, path: &str) -> Result<(), SessionError> {
    check_path(setting, path)?;
    let reserved = RESERVED.iter().any(|r| {
        path.strip_prefix(r)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if reserved {
        return Err(invalid_path(setting, path, "is a route of guestpass"));
    }
    Ok(())
}

fn random_value(rng: &dyn SecureRandom) -> Option<String> {
    let bytes = crate::random::bytes::<32>(rng).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `value` could be one of [`random_value`]'s: 43 URL-safe base64
/// characters.
fn is_random_value(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The sign-out token of the session whose cookie holds `token`.
fn sign_out_token_of(token: &str) -> String {
    let mut msg = SIGN_OUT_PURPOSE.to_vec();
    msg.extend_from_slice(token.as_bytes());
    URL_SAFE_NO_PAD.encode(Digest::sha256(&msg).0)
}

/// A `__Host-` cookie as [`cookies::set_cookie`] builds it, but
/// `SameSite=None`, so a cross-site form post carries it.
fn cross_site_cookie(name: &str, value: &str, max_age: Duration) -> Result<HeaderValue, CookieError> {
    let lax = cookies::set_cookie(name, value, Some(max_age))?;
    let invalid = || CookieError::InvalidValue {
        name: name.to_owned(),
    };
    let text = lax
        .to_str()
        .map_err(|_| invalid())?
        .replacen("; SameSite=Lax", "; SameSite=None", 1);
    let mut v = HeaderValue::from_str(&text).map_err(|_| invalid())?;
    v.set_sensitive(true);
    Ok(v)
}

impl AppSession {
    /// The session of application `client_id` of `gp`: completions arrive
    /// at `redirect_uri` (one of the application's registered redirect
    /// URIs, exactly), and then the browser goes to `landing_path` (a path
    /// on the redirect URI's origin). Tokens are verified with `gp`'s token
    /// keys and issuer; time comes from the system clock unless
    /// [`clock`](Self::clock) sets another.
    ///
    /// # Errors
    ///
    /// [`SessionError::UnknownApplication`],
    /// [`SessionError::RedirectNotRegistered`],
    /// [`SessionError::NoTokenKeys`], and as
    /// [`from_verifier`](Self::from_verifier).
    pub fn new(
        gp: &GuestPass,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
        landing_path: impl Into<String>,
    ) -> Result<Self, SessionError> {
        let cfg = gp.config();
        let client_id = client_id.into();
        let redirect_uri = redirect_uri.into();
        let unknown = || SessionError::UnknownApplication {
            client_id: quote(&client_id),
        };
        let app = cfg.sign_up().application(&client_id).ok_or_else(unknown)?;
        let flow = cfg
            .sign_up()
            .flow_for_application(&client_id)
            .ok_or_else(unknown)?;
        if !app.redirect_uris.contains(&redirect_uri) {
            return Err(SessionError::RedirectNotRegistered {
                uri: quote(&redirect_uri),
                client_id: quote(&client_id),
            });
        }
        let keys = cfg.token_keys().ok_or(SessionError::NoTokenKeys)?;
        let verifier = TokenVerifier::from_keys(keys, cfg.token_issuer(), client_id.as_str())?;
        let sign_up_url = cfg
            .public_base_url()
            .join("signup")
            .map_err(|_| SessionError::InvalidUrl {
                setting: "sign_up_url",
                url: quote(cfg.public_base_url().as_str()),
                reason: "does not take the path `signup`",
            })?;
        let mut session = Self::from_verifier(verifier, sign_up_url, client_id, redirect_uri, landing_path)?;
        Arc::make_mut(&mut session.inner).state_lifetime = flow.lifetime();
        Ok(session)
    }

    /// A session for an application that verifies tokens itself (for
    /// example from the published JWKS): `verifier` must be built for
    /// guestpass's issuer and the application's `client_id` as audience;
    /// `sign_up_url` is guestpass's `/signup` page. Guestpass checks that
    /// `redirect_uri` is registered when the sign-in starts.
    ///
    /// # Errors
    ///
    /// [`SessionError::InvalidUrl`] for a redirect URI or sign-up URL that
    /// is not an absolute `https` URL (`http` on a loopback host) without
    /// credentials or fragment, or a redirect URI whose path is not a plain
    /// route; [`SessionError::InvalidPath`] for a landing path that is not
    /// a plain absolute path, or a route that collides with another.
    pub fn from_verifier(
        verifier: TokenVerifier,
        sign_up_url: Url,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
        landing_path: impl Into<String>,
    ) -> Result<Self, SessionError> {
        let redirect_uri = redirect_uri.into();
        let parsed = web_url("redirect_uri", &redirect_uri)?;
        web_url("sign_up_url", sign_up_url.as_str())?;
        let app_origin =
            Url::parse(&parsed.origin().ascii_serialization()).map_err(|_| SessionError::InvalidUrl {
                setting: "redirect_uri",
                url: quote(&redirect_uri),
                reason: "has no origin",
            })?;
        let inner = Inner {
            verifier,
            sign_up_url,
            client_id: client_id.into(),
            callback_path: parsed.path().to_owned(),
            redirect_uri,
            app_origin,
            landing_path: landing_path.into(),
            sign_in_path: DEFAULT_SIGN_IN_PATH.to_owned(),
            sign_out_path: DEFAULT_SIGN_OUT_PATH.to_owned(),
            signed_out_path: "/".to_owned(),
            state_lifetime: DEFAULT_FLOW_LIFETIME,
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandom::new()),
        };
        inner.check()?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The clock tokens are checked against; pass the one the
    /// [`GuestPass`] was built with.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        Arc::make_mut(&mut self.inner).clock = clock;
        self
    }

    /// The generator of `state` and `nonce` values (the system CSPRNG by
    /// default).
    #[must_use]
    pub fn random(mut self, random: Arc<dyn SecureRandom>) -> Self {
        Arc::make_mut(&mut self.inner).random = random;
        self
    }

    /// The sign-in route (default [`DEFAULT_SIGN_IN_PATH`]).
    ///
    /// # Errors
    ///
    /// [`SessionError::InvalidPath`] for a path that is not plain, is one
    /// of guestpass's routes or is another route of the session.
    pub fn sign_in_path(self, path: impl Into<String>) -> Result<Self, SessionError> {
        self.with(|i| i.sign_in_path = path.into())
    }

    /// The sign-out route (default [`DEFAULT_SIGN_OUT_PATH`]).
    ///
    /// # Errors
    ///
    /// As [`sign_in_path`](Self::sign_in_path).
    pub fn sign_out_path(self, path: impl Into<String>) -> Result<Self, SessionError> {
        self.with(|i| i.sign_out_path = path.into())
    }

    /// Where the browser goes after signing out (default `/`).
    ///
    /// # Errors
    ///
    /// [`SessionError::InvalidPath`] for a path that is not plain.
    pub fn signed_out_path(self, path: impl Into<String>) -> Result<Self, SessionError> {
        self.with(|i| i.signed_out_path = path.into())
    }

    fn with(mut self, change: impl FnOnce(&mut Inner)) -> Result<Self, SessionError> {
        let inner = Arc::make_mut(&mut self.inner);
        change(inner);
        inner.check()?;
        Ok(self)
    }

    /// The application's client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The redirect URI completions are posted to.
    pub fn redirect_uri(&self) -> &str {
        &self.inner.redirect_uri
    }

    /// The absolute URL of the sign-in route, for a "sign in" link.
    pub fn sign_in_url(&self) -> Url {
        self.inner.app_url(&self.inner.sign_in_path)
    }

    /// The absolute URL of the sign-out route, for the sign-out form.
    pub fn sign_out_url(&self) -> Url {
        self.inner.app_url(&self.inner.sign_out_path)
    }

    /// The routes of the session (see the module docs), with guestpass's
    /// security headers. Merge them into the host's router.
    pub fn router(&self) -> Router {
        let i = &self.inner;
        Router::new()
            .route(&i.sign_in_path, get(sign_in))
            .route(&i.callback_path, post(callback))
            .route(&i.sign_out_path, post(sign_out))
            .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
            .layer(axum::middleware::map_response(super::security::apply))
            .with_state(self.clone())
    }

    /// The layer that lets [`SignedInUser`] find this session: add it to
    /// the host's router after its routes (`.layer(session.extension())`).
    pub fn extension(&self) -> Extension<AppSession> {
        Extension(self.clone())
    }

    /// The signed-in user of a request with these headers, if its session
    /// cookie holds a token that verifies now.
    pub fn user(&self, headers: &HeaderMap) -> Option<SignedInUser> {
        let token = cookies::read(headers, SESSION_COOKIE).filter(|t| !t.is_empty())?;
        let claims = self.inner.verifier.verify(token, self.inner.clock.now()).ok()?;
        let payload = token.split('.').nth(1)?;
        let claims_json = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        Some(SignedInUser {
            claims,
            claims_json,
            sign_out_token: sign_out_token_of(token),
        })
    }

    fn sign_in_required(&self, headers: &HeaderMap) -> SessionRejection {
        SessionRejection::SignInRequired {
            sign_in_url: self.sign_in_url(),
            clear_cookie: cookies::read(headers, SESSION_COOKIE).is_some(),
        }
    }
}

/// `url` if it is an absolute `https` URL (`http` on a loopback host)
/// without credentials or fragment.
fn web_url(setting: &'static str, url: &str) -> Result<Url, SessionError> {
    let invalid = |reason| SessionError::InvalidUrl {
        setting,
        url: quote(url),
        reason,
    };
    let parsed = Url::parse(url).map_err(|_| invalid("is not an absolute URL"))?;
    let loopback = crate::config::is_loopback(&parsed);
    if !(parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback)) {
        return Err(invalid("must be an https URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.fragment().is_some() {
        return Err(invalid("must not have credentials or a fragment"));
    }
    Ok(parsed)
}

impl Inner {
    fn check(&self) -> Result<(), SessionError> {
        check_path("landing_path", &self.landing_path)?;
        check_path("signed_out_path", &self.signed_out_path)?;
        check_route("callback_path", &self.callback_path)?;
        check_route("sign_in_path", &self.sign_in_path)?;
        check_route("sign_out_path", &self.sign_out_path)?;
        if self.sign_in_path == self.callback_path {
            return Err(invalid_path(
                "sign_in_path",
                &self.sign_in_path,
                "is the redirect URI's path",
            ));
        }
        if self.sign_out_path == self.callback_path || self.sign_out_path == self.sign_in_path {
            return Err(invalid_path(
                "sign_out_path",
                &self.sign_out_path,
                "is another route of the session",
            ));
        }
        Ok(())
    }

    /// `path` (checked plain) on the application's origin.
    fn app_url(&self, path: &str) -> Url {
        let mut url = self.app_origin.clone();
        url.set_path(path);
        url
    }

    /// A `303` to `path` on the application's origin.
    fn redirect(&self, path: &str) -> Response {
        see_other(self.app_url(path).as_str())
    }

    /// A refused callback or sign-in: a page with a link to sign in again.
    fn refused(&self, status: StatusCode, lang: Language, detail: &str) -> Response {
        let text_ = format!("{} {detail}", text(lang, "sign_in_failed"));
        message_page(
            status,
            lang,
            &text_,
            true,
            Some((
                self.app_url(&self.sign_in_path).to_string(),
                text(lang, "sign_in_again"),
            )),
        )
    }
}

/// `GET /sign-in`: a new `state` and `nonce` (or those of the sign-in
/// under way), and to guestpass.
async fn sign_in(State(s): State<AppSession>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let lang = language(&headers);
    let i = &s.inner;
    if !security::is_navigation(&headers) {
        return i.refused(
            StatusCode::FORBIDDEN,
            lang,
            "(a sign-in starts only when the page is opened, not from another site's image, frame or script)",
        );
    }
    let mut ui_locales = None;
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()) {
        if k == "ui_locales" && ui_locales.is_none() {
            ui_locales = Some(v.into_owned());
        } else {
            let detail = format!("(parameter `{}` is not accepted)", quote(&k));
            return i.refused(StatusCode::BAD_REQUEST, lang, &detail);
        }
    }
    // A sign-in already under way in this browser (another tab, a second
    // click) keeps its state and nonce, so starting again never spoils it.
    let under_way = cookies::read(&headers, SIGN_IN_COOKIE)
        .and_then(|v| v.split_once('.'))
        .filter(|(state, nonce)| is_random_value(state) && is_random_value(nonce))
        .map(|(state, nonce)| (state.to_owned(), nonce.to_owned()));
    // Its cookie is not sent again: the values keep the expiry they were
    // given, so starting over and over never makes them live longer.
    let (state, nonce, cookie) = match under_way {
        Some((state, nonce)) => (state, nonce, None),
        None => {
            let (Some(state), Some(nonce)) =
                (random_value(i.random.as_ref()), random_value(i.random.as_ref()))
            else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let Ok(cookie) = cross_site_cookie(SIGN_IN_COOKIE, &format!("{state}.{nonce}"), i.state_lifetime)
            else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            (state, nonce, Some(cookie))
        }
    };
    let mut url = i.sign_up_url.clone();
    {
        let mut q = url.query_pairs_mut();
        q.clear()
            .append_pair("client_id", &i.client_id)
            .append_pair("redirect_uri", &i.redirect_uri)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce);
        if let Some(l) = &ui_locales {
            q.append_pair("ui_locales", l);
        }
    }
    let mut res = see_other(url.as_str());
    if let Some(cookie) = cookie {
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
    res
}

#[derive(Deserialize)]
struct CallbackForm {
    #[serde(default)]
    id_token: String,
    #[serde(default)]
    state: String,
}

/// `POST <redirect path>`: the completion.
async fn callback(
    State(s): State<AppSession>,
    headers: HeaderMap,
    Form(form): Form<CallbackForm>,
) -> Response {
    let lang = language(&headers);
    let i = &s.inner;
    let Some((state, nonce)) = cookies::read(&headers, SIGN_IN_COOKIE).and_then(|v| v.split_once('.')) else {
        return i.refused(
            StatusCode::BAD_REQUEST,
            lang,
            "(no sign-in is under way in this browser)",
        );
    };
    if state.is_empty() || !constant_time_eq(state.as_bytes(), form.state.as_bytes()) {
        return i.refused(
            StatusCode::BAD_REQUEST,
            lang,
            "(the answer does not belong to this browser's sign-in)",
        );
    }
    let now = i.clock.now();
    let Ok(verified) = i.verifier.verify_with_nonce(&form.id_token, nonce, now) else {
        return i.refused(StatusCode::BAD_REQUEST, lang, "(the token was refused)");
    };
    let lifetime = (verified.expires_at - now).max(Duration::ZERO);
    let (Ok(session), Ok(clear)) = (
        cookies::set_cookie(SESSION_COOKIE, &form.id_token, Some(lifetime)),
        cookies::clear_cookie(SIGN_IN_COOKIE),
    ) else {
        return i.refused(StatusCode::BAD_REQUEST, lang, "(the token does not fit a cookie)");
    };
    let mut res = i.redirect(&i.landing_path);
    res.headers_mut().append(header::SET_COOKIE, session);
    res.headers_mut().append(header::SET_COOKIE, clear);
    res
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /sign-out`: clears the session.
async fn sign_out(
    State(s): State<AppSession>,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Response {
    let lang = language(&headers);
    let i = &s.inner;
    let forbidden = || message_page(StatusCode::FORBIDDEN, lang, text(lang, "forbidden"), true, None);
    if !origin_allowed(&headers, &i.app_origin.origin()) {
        return forbidden();
    }
    if let Some(token) = cookies::read(&headers, SESSION_COOKIE).filter(|t| !t.is_empty())
        && !constant_time_eq(sign_out_token_of(token).as_bytes(), form.csrf_token.as_bytes())
    {
        return forbidden();
    }
    let Ok(clear) = cookies::clear_cookie(SESSION_COOKIE) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut res = i.redirect(&i.signed_out_path);
    res.headers_mut().append(header::SET_COOKIE, clear);
    res
}

/// The person signed in to the application: the verified claims of the
/// session's token. Extract it in a handler (`user: SignedInUser`, or
/// `Option<SignedInUser>`); see the module docs.
///
/// `Debug` shows the claims, not the sign-out token.
#[derive(Clone)]
pub struct SignedInUser {
    claims: VerifiedToken,
    claims_json: serde_json::Value,
    sign_out_token: String,
}

impl fmt::Debug for SignedInUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedInUser")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl SignedInUser {
    /// The verified claims.
    pub fn claims(&self) -> &VerifiedToken {
        &self.claims
    }

    /// The whole claim set, as the token carries it, for display.
    pub fn claims_json(&self) -> &serde_json::Value {
        &self.claims_json
    }

    /// The value the sign-out form must send in its
    /// [`SIGN_OUT_TOKEN_FIELD`] field: bound to this session, so another
    /// site cannot sign the person out.
    pub fn sign_out_token(&self) -> &str {
        &self.sign_out_token
    }
}

/// Why [`SignedInUser`] was not extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No session, or its token no longer verifies: answered with `303` to
    /// the sign-in route (clearing the stale cookie).
    #[error("sign-in required")]
    SignInRequired {
        /// The sign-in route.
        sign_in_url: Url,
        /// Whether the request carried a session cookie to clear.
        clear_cookie: bool,
    },
    /// The router has no [`AppSession::extension`] layer: answered with `500`.
    #[error("the session extension is not installed")]
    NotConfigured,
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            SessionRejection::SignInRequired {
                sign_in_url,
                clear_cookie,
            } => {
                let mut res = see_other(sign_in_url.as_str());
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if clear_cookie && let Ok(clear) = cookies::clear_cookie(SESSION_COOKIE) {
                    res.headers_mut().append(header::SET_COOKIE, clear);
                }
                res
            }
            SessionRejection::NotConfigured => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the session extension is not installed",
            )
                .into_response(),
        }
    }
}

fn session_of(parts: &Parts) -> Result<AppSession, SessionRejection> {
    parts
        .extensions
        .get::<AppSession>()
        .cloned()
        .ok_or(SessionRejection::NotConfigured)
}

impl<S: Send + Sync> FromRequestParts<S> for SignedInUser {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = session_of(parts)?;
        session
            .user(&parts.headers)
            .ok_or_else(|| session.sign_in_required(&parts.headers))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for SignedInUser {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(session_of(parts)?.user(&parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_plain_and_clear_of_guestpass() {
        for good in ["/", "/home", "/a/b-c_d.e~f"] {
            assert!(check_route("p", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "home",
            "//evil.example",
            "/a//b",
            "/a/../b",
            "/a\\b",
            "/{x}",
            "/*x",
            "/a?b",
            "/%2e",
            "/signup",
            "/signup/step",
            "/redeem",
            "/v1.0/users",
        ] {
            assert!(check_route("p", bad).is_err(), "{bad}");
        }
        assert!(check_route("p", "/signups").is_ok());
    }

    #[test]
    fn the_state_cookie_is_cross_site_and_the_rest_lax() {
        let v = cross_site_cookie("gp-signin", "s.n", Duration::minutes(5)).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-gp-signin=s.n; Path=/; Secure; HttpOnly; SameSite=None; Max-Age=300"
        );
        assert!(v.is_sensitive());
    }

    #[test]
    fn sign_out_tokens_are_bound_to_the_session() {
        assert_ne!(sign_out_token_of("a"), sign_out_token_of("b"));
        assert_eq!(sign_out_token_of("a").len(), 43);
    }
}
