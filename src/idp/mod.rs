//! Identity providers: how a guest proves who they are.
//!
//! - [`email_otp`]: the email one-time passcode provider every invitation
//!   can fall back to.
//! - [`oidc`]: the relying-party side of OpenID Connect (authorization code
//!   flow with PKCE) for any OpenID provider; [`presets`] configures
//!   Microsoft accounts, Entra organisations, Google and direct federation.
//! - [`facebook`]: Facebook Login (OAuth 2.0 and the Graph API; not OpenID
//!   Connect).
//! - [`totp`]: authenticator-app codes (TOTP, RFC 6238), the second step-up
//!   method besides an emailed code.
//!
//! External providers implement [`IdentityProvider`], a `start` / `finish`
//! pair: `start` returns the URL to send the browser to and a
//! [`PendingAuthorization`] for the host to keep server-side (it holds no
//! secret usable alone), `finish` takes it back with the redirect's
//! [`Callback`] and returns the verified [`ExternalIdentity`]. Effects come
//! in through [`IdpContext`]: the HTTP client, the random generator, the
//! current time and the [`BindingKey`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use guestpass::clock::{Clock, SystemClock};
//! use guestpass::http::HttpClient;
//! use guestpass::idp::{presets, BindingKey, Callback, IdentityProvider, IdpContext};
//! use guestpass::random::SystemRandom;
//!
//! # async fn run(http: &dyn HttpClient, query_from_redirect: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let google: Arc<dyn IdentityProvider> = Arc::new(presets::google("client-id", "client-secret", None)?);
//! let key = BindingKey::new(&[7u8; 32])?; // from the host's secret store
//! let rng = SystemRandom::new();
//! let ctx = IdpContext { http, rng: &rng, now: SystemClock.now(), binding_key: &key };
//!
//! let start = google.start(&ctx, "https://app.example/auth/callback/google").await?;
//! // store `start.pending` with the flow, redirect the browser to `start.url`, then:
//! let callback = Callback::parse(query_from_redirect)?;
//! let identity = google.finish(&ctx, &start.pending, &callback).await?;
//! println!("{} {}", identity.issuer, identity.subject);
//! # Ok(())
//! # }
//! ```

pub mod email_otp;
pub mod facebook;
pub mod oidc;
pub mod order;
pub mod presets;
mod provider;
pub mod totp;
mod wire;

pub use email_otp::PasscodePolicy;
pub use facebook::{FacebookConfig, FacebookProvider};
pub use oidc::{ClientAuth, OidcConfig, OidcProvider};
pub use provider::{
    AUTHORIZATION_MAX_AGE, AuthorizationStart, AuthorizationUrl, BindingKey, Callback, ExternalIdentity,
    IdTokenError, IdentityProvider, IdpContext, IdpError, MAX_CALLBACK_LEN, MAX_CALLBACK_PARAM_LEN,
    MIN_BINDING_SECRET_LEN, PendingAuthorization,
};
