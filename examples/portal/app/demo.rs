//! The demo apps: Contoso's demo app on `/app` and payroll on `/payroll`
//! (conditional access asks for MFA there, and the guest terms of guests).
//! Each signs people in through the self-service user flow with
//! guestpass's [`AppSession`] and shows the signed-in user's token claims.
//!
//! Both apps live on the portal's origin, and a `__Host-` session cookie
//! has one name per origin: signing in to one app ends the session of the
//! other (its page then offers to sign in again). Apps on hosts of their
//! own each keep their own.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use guestpass::GuestPass;
use guestpass::web::session::AppSession;
use minijinja::context;

use super::settings::{DEMO_APP, PAYROLL_APP, SettingsError};
use super::{Deps, page};

/// One demo app.
#[derive(Clone)]
struct App {
    name: &'static str,
    session: AppSession,
    protected: bool,
    base: url::Url,
}

fn session(gp: &GuestPass, deps: &Deps, client_id: &str, path: &str) -> Result<AppSession, SettingsError> {
    let err = |e: guestpass::web::session::SessionError| SettingsError {
        field: "signUp",
        message: format!("the application `{client_id}`: {e}"),
    };
    let redirect = format!("{}{path}/callback", deps.base);
    AppSession::new(gp, client_id, redirect, format!("/{path}"))
        .and_then(|s| s.sign_in_path(format!("/{path}/sign-in")))
        .and_then(|s| s.sign_out_path(format!("/{path}/sign-out")))
        .and_then(|s| s.signed_out_path(format!("/{path}")))
        .map(|s| s.random(deps.random.clone()))
        .map_err(err)
}

/// The routes of both apps, for the service `gp`.
///
/// # Errors
///
/// When the sign-up settings lack an app or its redirect URI
/// (`{base}app/callback`, `{base}payroll/callback`).
pub fn routes(gp: &GuestPass, deps: &Deps) -> Result<Router, SettingsError> {
    let mut router = Router::new();
    for (name, client_id, path, protected) in [
        ("Contoso demo app", DEMO_APP, "app", false),
        ("Contoso payroll", PAYROLL_APP, "payroll", true),
    ] {
        let session = session(gp, deps, client_id, path)?;
        let app = App {
            name,
            session: session.clone(),
            protected,
            base: deps.base.clone(),
        };
        router = router.merge(session.router()).merge(
            Router::new()
                .route(&format!("/{path}"), get(show))
                .with_state(app),
        );
    }
    Ok(router)
}

/// `GET /app`, `GET /payroll`: the claims of the signed-in user, or a
/// sign-in link.
async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    let user = app.session.user(&headers);
    let portal_base = app.base.as_str();
    let ctx = match &user {
        Some(u) => {
            let claims: Vec<_> = u
                .claims_json()
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            let value = match v {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            context! { name => k, value }
                        })
                        .collect()
                })
                .unwrap_or_default();
            context! {
                signed_in => true,
                email => u.claims().email.clone(),
                claims,
                sign_out => app.session.sign_out_url().to_string(),
                sign_out_token => u.sign_out_token(),
            }
        }
        None => context! { signed_in => false },
    };
    page::render_at(
        portal_base,
        StatusCode::OK,
        "app.html",
        context! {
            app_name => app.name,
            protected => app.protected,
            sign_in => app.session.sign_in_url().to_string(),
            ..ctx
        },
    )
}
