//! Rendering the portal's own pages: one minijinja environment holding
//! every template, the stylesheet, and the home, terms and privacy pages.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, Value, context};

use super::Shared;

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("home.html", include_str!("templates/home.html")),
    ("message.html", include_str!("templates/message.html")),
    ("terms.html", include_str!("templates/terms.html")),
    ("admin_sign_in.html", include_str!("templates/admin_sign_in.html")),
    ("admin_users.html", include_str!("templates/admin_users.html")),
    ("admin_confirm.html", include_str!("templates/admin_confirm.html")),
    (
        "admin_settings.html",
        include_str!("templates/admin_settings.html"),
    ),
    ("admin_what_if.html", include_str!("templates/admin_what_if.html")),
    ("mailbox.html", include_str!("templates/mailbox.html")),
    ("mail.html", include_str!("templates/mail.html")),
    ("app.html", include_str!("templates/app.html")),
];

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                eprintln!("template `{name}` does not parse: {e}");
            }
        }
        env
    })
}

/// Renders `template` with `ctx` (plus `base`, the public base URL) as an
/// HTML response with `status`.
pub fn render(portal: &Shared, status: StatusCode, template: &str, ctx: Value) -> Response {
    render_at(portal.deps.base.as_str(), status, template, ctx)
}

/// Renders `template` with `ctx` plus `base`.
pub fn render_at(base: &str, status: StatusCode, template: &str, ctx: Value) -> Response {
    let ctx = context! { base, ..ctx };
    match environment().get_template(template).and_then(|t| t.render(ctx)) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            eprintln!("template `{template}` failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// A page with one message (an error when `error`).
pub fn message(portal: &Shared, status: StatusCode, title: &str, text: &str) -> Response {
    render(
        portal,
        status,
        "message.html",
        context! { title, message => text, error => !status.is_success() },
    )
}

/// `GET /`.
pub async fn home(State(portal): State<Shared>) -> Response {
    render(
        &portal,
        StatusCode::OK,
        "home.html",
        context! { mailbox => portal.deps.outbox.is_some() },
    )
}

/// `GET /terms/guests`.
pub async fn terms(State(portal): State<Shared>) -> Response {
    render(
        &portal,
        StatusCode::OK,
        "terms.html",
        context! { kind => "terms" },
    )
}

/// `GET /privacy`.
pub async fn privacy(State(portal): State<Shared>) -> Response {
    render(
        &portal,
        StatusCode::OK,
        "terms.html",
        context! { kind => "privacy" },
    )
}

/// `GET /static/portal.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        include_str!("templates/portal.css"),
    )
        .into_response()
}
