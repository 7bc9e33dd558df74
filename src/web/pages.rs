//! The redemption pages: server-side HTML forms over the redemption API of
//! [`GuestPass`](crate::GuestPass), without JavaScript.
//!
//! | route | what |
//! |---|---|
//! | `GET /redeem?ticket=…` | the invitation ([`view_redemption`](crate::GuestPass::view_redemption)); changes nothing |
//! | `POST /redeem` | starts the redemption, sets `__Host-gp-redeem`, `303` to `/redeem/step` (or to the provider) |
//! | `GET /redeem/step` | the current step of the cookie's redemption |
//! | `POST /redeem/passcode`, `/redeem/resend`, `/redeem/consent`, `/redeem/terms`, `/redeem/step-up/method`, `/redeem/step-up/code` | one step each, then `303` to `/redeem/step` (or to the registered redirect URL) |
//! | `GET /federation/callback/{provider_id}` | a federated provider's callback (of a redemption, or of a sign-up flow of the [sign-up pages](super::signup_pages)) |
//!
//! Every form carries a CSRF token: base64url(HMAC-SHA256(key,
//! `"redeem-csrf"` ‖ SHA-256(handle or ticket))) with the key of the
//! [`WebConfig`](super::WebConfig), compared in constant time. A form
//! without it or with another gets `403` and changes nothing; so does a
//! `POST` whose `Origin` is not the public base URL's (`Origin: null`, which
//! browsers send from pages with `Referrer-Policy: no-referrer`, only with
//! `Sec-Fetch-Site: same-origin`). Links and
//! `Location`s are built from the public base URL only (invariant 5).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, Query, RawQuery, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minijinja::{Environment, Value, context};
use serde::Deserialize;
use time::Duration;

use super::{Shared, cookies};
use crate::flow::access::{SignInContext, StepUpMethod, StepUpPage};
use crate::mail::templates::Language;
use crate::secret::{Digest, constant_time_eq};
use crate::{ConsentDecision, Error, Finished, RedemptionStep};

/// The cookie (`__Host-gp-redeem`) holding the redemption handle.
pub const REDEEM_COOKIE: &str = "gp-redeem";

/// Largest form body of the pages, in bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The cookie's lifetime: that of a redemption flow.
const COOKIE_LIFETIME: Duration = crate::flow::config::DEFAULT_FLOW_LIFETIME;

const CSRF_PURPOSE: &[u8] = b"redeem-csrf";

/// The routes of the pages, limited to [`MAX_FORM_BYTES`] bodies.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/redeem", get(show_invitation).post(start))
        .route("/redeem/step", get(show_step))
        .route("/redeem/passcode", post(passcode))
        .route("/redeem/resend", post(resend))
        .route("/redeem/consent", post(consent))
        .route("/redeem/terms", post(terms))
        .route("/redeem/step-up/method", post(step_up_method))
        .route("/redeem/step-up/code", post(step_up_code))
        .route("/federation/callback/{provider_id}", get(federation_callback))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
}

/// The CSRF token of a form bound to `binding` (a handle or a ticket).
pub(crate) fn csrf_token(state: &Shared, binding: &str) -> Option<String> {
    let key = state.config.csrf_key.as_ref()?;
    let mut msg = CSRF_PURPOSE.to_vec();
    msg.extend_from_slice(&Digest::sha256(binding.as_bytes()).0);
    Some(URL_SAFE_NO_PAD.encode(ring::hmac::sign(key, &msg).as_ref()))
}

fn csrf_ok(state: &Shared, binding: &str, token: &str) -> bool {
    match csrf_token(state, binding) {
        Some(expected) => !token.is_empty() && constant_time_eq(expected.as_bytes(), token.as_bytes()),
        None => false,
    }
}

/// A `POST`'s `Origin`, when present, must be the base URL's.
pub(crate) fn origin_ok(state: &Shared, headers: &HeaderMap) -> bool {
    super::security::origin_allowed(headers, &state.base.origin())
}

/// The page language for the request's `Accept-Language`: en-US unless
/// de-DE is preferred.
pub(crate) fn language(headers: &HeaderMap) -> Language {
    preferred_language(headers).unwrap_or(Language::EnUs)
}

/// The page language (en-US or de-DE) the request's `Accept-Language`
/// prefers, if it names one of them.
pub(crate) fn preferred_language(headers: &HeaderMap) -> Option<Language> {
    let value = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())?;
    let mut best: Option<(u16, Language)> = None;
    for part in value.split(',').take(16) {
        let mut pieces = part.split(';');
        let tag = pieces.next().unwrap_or_default().trim();
        let q = pieces
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let q = (q.clamp(0.0, 1.0) * 1000.0) as u16;
        if q == 0 {
            continue;
        }
        let lang = match Language::from_tag(tag) {
            Some(l @ (Language::EnUs | Language::DeDe)) => l,
            _ => continue,
        };
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l)
}

/// The page texts in `lang` (en-US or de-DE), by key.
pub(crate) fn strings(lang: Language) -> BTreeMap<&'static str, &'static str> {
    let de = lang == Language::DeDe;
    let pick = |en: &'static str, de_text: &'static str| if de { de_text } else { en };
    BTreeMap::from([
        ("title", pick("Accept your invitation", "Einladung annehmen")),
        (
            "invited_by",
            pick("You were invited by", "Sie wurden eingeladen von"),
        ),
        ("invited_as", pick("Invited address:", "Eingeladene Adresse:")),
        ("privacy", pick("Privacy statement", "Datenschutzerklärung")),
        ("start", pick("Accept invitation", "Einladung annehmen")),
        (
            "passcode_sent",
            pick("We sent a code to", "Wir haben einen Code gesendet an"),
        ),
        (
            "passcode_not_sent",
            pick("We could not send a code to", "Wir konnten keinen Code senden an"),
        ),
        (
            "passcode_label",
            pick("Code from the email", "Code aus der E-Mail"),
        ),
        (
            "app_code_label",
            pick(
                "Code from your authenticator app",
                "Code aus Ihrer Authentifizierungs-App",
            ),
        ),
        ("verify", pick("Verify", "Bestätigen")),
        ("resend", pick("Send a new code", "Neuen Code senden")),
        (
            "consent_intro",
            pick(
                "Allow access to your information for",
                "Zugriff auf Ihre Daten erlauben für",
            ),
        ),
        (
            "terms_intro",
            pick("Please read and accept", "Bitte lesen und akzeptieren Sie"),
        ),
        ("accept", pick("Accept", "Akzeptieren")),
        ("decline", pick("Decline", "Ablehnen")),
        (
            "choose_method",
            pick("Verify your identity with", "Identität bestätigen mit"),
        ),
        ("method_email", pick("a code sent to", "einem Code an")),
        (
            "method_app",
            pick("your authenticator app", "Ihrer Authentifizierungs-App"),
        ),
        (
            "method_enrol",
            pick("a new authenticator app", "einer neuen Authentifizierungs-App"),
        ),
        ("continue", pick("Continue", "Weiter")),
        (
            "enrol_intro",
            pick(
                "Add this account to your authenticator app.",
                "Fügen Sie dieses Konto Ihrer Authentifizierungs-App hinzu.",
            ),
        ),
        (
            "enrol_link",
            pick(
                "Open in the authenticator app",
                "In der Authentifizierungs-App öffnen",
            ),
        ),
        (
            "enrol_secret",
            pick("Or type this key:", "Oder geben Sie diesen Schlüssel ein:"),
        ),
        ("blocked", pick("Access is blocked", "Der Zugriff ist gesperrt")),
        (
            "declined",
            pick(
                "You declined the invitation.",
                "Sie haben die Einladung abgelehnt.",
            ),
        ),
        (
            "redeemed",
            pick("Your invitation is accepted.", "Ihre Einladung ist angenommen."),
        ),
        (
            "awaiting",
            pick(
                "Waiting for your sign-in; open the invitation link again to start over.",
                "Warten auf Ihre Anmeldung; öffnen Sie den Einladungslink erneut, um neu zu beginnen.",
            ),
        ),
        (
            "no_redemption",
            pick(
                "There is no redemption in progress; open the invitation link again.",
                "Es läuft keine Einlösung; öffnen Sie den Einladungslink erneut.",
            ),
        ),
        (
            "forbidden",
            pick("The form was refused.", "Das Formular wurde abgelehnt."),
        ),
    ])
}

/// A permission of the consent page in `lang`.
fn permission(lang: Language, name: &'static str) -> &'static str {
    match (lang, name) {
        (Language::DeDe, "name") => "Name",
        (Language::DeDe, "email address") => "E-Mail-Adresse",
        (Language::DeDe, "profile photo") => "Profilfoto",
        _ => name,
    }
}

/// The text `key` in `lang` (empty for an unknown key).
fn text(lang: Language, key: &str) -> &'static str {
    strings(lang).get(key).copied().unwrap_or_default()
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A template that does not parse shows up as a render error below.
        let _ = env.add_template("redeem.html", include_str!("templates/redeem.html"));
        env
    })
}

/// A link from the public base URL.
pub(crate) fn link(state: &Shared, path: &str) -> String {
    state
        .base
        .join(path)
        .map_or_else(|_| state.base.to_string(), |u| u.to_string())
}

fn html(
    state: &Shared,
    status: StatusCode,
    lang: Language,
    kind: &str,
    csrf: Option<String>,
    extra: Value,
) -> Response {
    let actions = context! {
        start => link(state, "redeem"),
        passcode => link(state, "redeem/passcode"),
        resend => link(state, "redeem/resend"),
        consent => link(state, "redeem/consent"),
        terms => link(state, "redeem/terms"),
        method => link(state, "redeem/step-up/method"),
        code => link(state, "redeem/step-up/code"),
    };
    let ctx = context! {
        lang => lang.tag(),
        t => strings(lang),
        kind => kind,
        csrf => csrf.unwrap_or_default(),
        actions => actions,
        ..extra
    };
    page_response(
        status,
        environment()
            .get_template("redeem.html")
            .and_then(|t| t.render(ctx)),
    )
}

/// A rendered page with the headers of a token page (`no-store`,
/// `no-referrer`), or `500` when it did not render.
pub(crate) fn page_response(status: StatusCode, rendered: Result<String, minijinja::Error>) -> Response {
    match rendered {
        Ok(body) => (
            status,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn message(state: &Shared, status: StatusCode, lang: Language, text: &str, error: bool) -> Response {
    html(
        state,
        status,
        lang,
        "message",
        None,
        context! { message => text, error => error },
    )
}

fn forbidden(state: &Shared, lang: Language) -> Response {
    message(state, StatusCode::FORBIDDEN, lang, text(lang, "forbidden"), true)
}

/// A `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn to_step(state: &Shared) -> Response {
    see_other(&link(state, "redeem/step"))
}

/// The page of `step`, with `error` next to its field.
fn step_page(
    state: &Shared,
    status: StatusCode,
    lang: Language,
    handle: &str,
    step: RedemptionStep,
    error: Option<String>,
) -> Response {
    let csrf = csrf_token(state, handle);
    match step {
        RedemptionStep::EnterPasscode { sent_to } => html(
            state,
            status,
            lang,
            "passcode",
            csrf,
            context! { sent_to, delivered => true, error },
        ),
        RedemptionStep::PasscodeNotDelivered { sent_to, .. } => html(
            state,
            status,
            lang,
            "passcode",
            csrf,
            context! { sent_to, delivered => false, error },
        ),
        RedemptionStep::Consent {
            organization,
            privacy_statement_url,
            permissions,
        } => html(
            state,
            status,
            lang,
            "consent",
            csrf,
            context! {
                organization,
                privacy_url => privacy_statement_url,
                permissions => permissions.into_iter().map(|p| permission(lang, p)).collect::<Vec<_>>(),
                error,
            },
        ),
        RedemptionStep::TermsOfUse { terms } => html(
            state,
            status,
            lang,
            "terms",
            csrf,
            context! { terms_url => terms.url().to_string(), terms_name => terms.display_name(), error },
        ),
        RedemptionStep::StepUp(page) => step_up_page(state, status, lang, csrf, page, error),
        RedemptionStep::SignInWith { url, .. } => see_other(url.as_str()),
        RedemptionStep::AwaitingSignIn { .. } => message(state, status, lang, text(lang, "awaiting"), false),
        RedemptionStep::Blocked { message: m } => message(
            state,
            status,
            lang,
            &format!("{}: {m}", text(lang, "blocked")),
            true,
        ),
        RedemptionStep::Declined => message(state, status, lang, text(lang, "declined"), false),
        RedemptionStep::Redeemed(_) => message(state, status, lang, text(lang, "redeemed"), false),
    }
}

fn step_up_page(
    state: &Shared,
    status: StatusCode,
    lang: Language,
    csrf: Option<String>,
    page: StepUpPage,
    error: Option<String>,
) -> Response {
    match page {
        StepUpPage::Choose {
            methods,
            email,
            authenticator_enrolled,
        } => html(
            state,
            status,
            lang,
            "step_up_choose",
            csrf,
            context! {
                email_otp => methods.email_otp,
                authenticator => methods.authenticator,
                email,
                enrolled => authenticator_enrolled,
                error,
            },
        ),
        StepUpPage::EnterEmailCode { sent_to, delivered } => html(
            state,
            status,
            lang,
            "step_up_code",
            csrf,
            context! { sent_to, delivered, error },
        ),
        StepUpPage::EnrollAuthenticator { otpauth_uri, secret } => html(
            state,
            status,
            lang,
            "step_up_code",
            csrf,
            context! { otpauth_uri => otpauth_uri.expose(), secret => secret.expose(), error },
        ),
        StepUpPage::EnterAuthenticatorCode => {
            html(state, status, lang, "step_up_code", csrf, context! { error })
        }
    }
}

/// A failed step: the current step again with the error next to its
/// field, or the error alone when the flow is gone.
async fn failed(state: &Shared, lang: Language, handle: &str, error: &Error) -> Response {
    let status = error.status();
    match state.gp.redemption_step(handle).await {
        Ok(step) if !matches!(step, RedemptionStep::SignInWith { .. }) => {
            step_page(state, status, lang, handle, step, Some(error.to_string()))
        }
        _ => message(state, status, lang, &error.to_string(), true),
    }
}

#[derive(Deserialize)]
struct TicketQuery {
    #[serde(default)]
    ticket: String,
}

/// `GET /redeem?ticket=…`: the invitation. Changes nothing.
async fn show_invitation(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<TicketQuery>,
) -> Response {
    let lang = language(&headers);
    match state.gp.view_redemption(&q.ticket).await {
        Ok(view) => html(
            &state,
            StatusCode::OK,
            lang,
            "invitation",
            csrf_token(&state, &q.ticket),
            context! {
                organization => view.organization,
                invited_email => view.invited_email,
                display_name => view.display_name,
                privacy_url => view.privacy_statement_url,
                ticket => q.ticket,
            },
        ),
        Err(e) => message(&state, e.status(), lang, &e.to_string(), true),
    }
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /redeem`: starts the redemption.
async fn start(
    State(state): State<Shared>,
    headers: HeaderMap,
    ext: Extensions,
    Form(form): Form<StartForm>,
) -> Response {
    let lang = language(&headers);
    if !origin_ok(&state, &headers) || !csrf_ok(&state, &form.ticket, &form.csrf) {
        return forbidden(&state, lang);
    }
    let context = ext
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(SignInContext::default, |ConnectInfo(addr)| {
            SignInContext::browser(addr.ip())
        });
    let started = match state.gp.start_redemption_from(&form.ticket, context).await {
        Ok(s) => s,
        Err(e) => return message(&state, e.status(), lang, &e.to_string(), true),
    };
    let cookie = match cookies::set_cookie(REDEEM_COOKIE, started.handle.expose(), Some(COOKIE_LIFETIME)) {
        Ok(c) => c,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let mut res = match &started.step {
        RedemptionStep::SignInWith { url, .. } => see_other(url.as_str()),
        _ => to_step(&state),
    };
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

fn handle(headers: &HeaderMap) -> Option<String> {
    cookies::read(headers, REDEEM_COOKIE)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// The page for a request without a redemption cookie.
fn no_redemption(state: &Shared, lang: Language) -> Response {
    message(
        state,
        StatusCode::BAD_REQUEST,
        lang,
        text(lang, "no_redemption"),
        true,
    )
}

/// `GET /redeem/step`: the current step.
async fn show_step(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let lang = language(&headers);
    let Some(h) = handle(&headers) else {
        return no_redemption(&state, lang);
    };
    match state.gp.redemption_step(&h).await {
        Ok(step) => step_page(&state, StatusCode::OK, lang, &h, step, None),
        Err(e) => message(&state, e.status(), lang, &e.to_string(), true),
    }
}

#[derive(Deserialize)]
struct StepForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    method: String,
}

/// The handle of a checked form, or the language of the `403` answer.
fn checked(state: &Shared, headers: &HeaderMap, form: &StepForm) -> Result<(Language, String), Language> {
    let lang = language(headers);
    match handle(headers) {
        Some(h) if origin_ok(state, headers) && csrf_ok(state, &h, &form.csrf) => Ok((lang, h)),
        _ => Err(lang),
    }
}

/// After a step: back to the step page, or the error with the step.
async fn after_step(
    state: &Shared,
    lang: Language,
    h: &str,
    result: Result<RedemptionStep, Error>,
) -> Response {
    match result {
        Ok(RedemptionStep::SignInWith { url, .. }) => see_other(url.as_str()),
        Ok(_) => to_step(state),
        Err(e) => failed(state, lang, h, &e).await,
    }
}

async fn after_finish(state: &Shared, lang: Language, h: &str, result: Result<Finished, Error>) -> Response {
    match result {
        Ok(Finished::Redeemed(r)) => see_other(r.redirect_url.as_str()),
        Ok(_) => to_step(state),
        Err(e) => failed(state, lang, h, &e).await,
    }
}

fn decision(value: &str) -> Option<ConsentDecision> {
    match value {
        "accept" => Some(ConsentDecision::Accept),
        "decline" => Some(ConsentDecision::Decline),
        _ => None,
    }
}

/// `POST /redeem/passcode`.
async fn passcode(State(state): State<Shared>, headers: HeaderMap, Form(form): Form<StepForm>) -> Response {
    let (lang, h) = match checked(&state, &headers, &form) {
        Ok(x) => x,
        Err(lang) => return forbidden(&state, lang),
    };
    let result = state.gp.submit_passcode(&h, form.code.trim()).await;
    after_step(&state, lang, &h, result).await
}

/// `POST /redeem/resend`.
async fn resend(State(state): State<Shared>, headers: HeaderMap, Form(form): Form<StepForm>) -> Response {
    let (lang, h) = match checked(&state, &headers, &form) {
        Ok(x) => x,
        Err(lang) => return forbidden(&state, lang),
    };
    let result = state.gp.resend_passcode(&h).await;
    after_step(&state, lang, &h, result).await
}

/// `POST /redeem/consent`.
async fn consent(State(state): State<Shared>, headers: HeaderMap, Form(form): Form<StepForm>) -> Response {
    match answer(&state, &headers, &form) {
        Ok((lang, h, d)) => {
            let result = state.gp.finish_redemption(&h, d).await;
            after_finish(&state, lang, &h, result).await
        }
        Err(response) => *response,
    }
}

/// `POST /redeem/terms`.
async fn terms(State(state): State<Shared>, headers: HeaderMap, Form(form): Form<StepForm>) -> Response {
    match answer(&state, &headers, &form) {
        Ok((lang, h, d)) => {
            let result = state.gp.answer_terms_of_use(&h, d).await;
            after_finish(&state, lang, &h, result).await
        }
        Err(response) => *response,
    }
}

/// The checked form of an accept-or-decline page: its language, handle and
/// decision, or the page refusing it.
fn answer(
    state: &Shared,
    headers: &HeaderMap,
    form: &StepForm,
) -> Result<(Language, String, ConsentDecision), Box<Response>> {
    let (lang, h) = checked(state, headers, form).map_err(|lang| Box::new(forbidden(state, lang)))?;
    let Some(d) = decision(&form.decision) else {
        return Err(Box::new(message(
            state,
            StatusCode::BAD_REQUEST,
            lang,
            "decision must be `accept` or `decline`",
            true,
        )));
    };
    Ok((lang, h, d))
}

/// `POST /redeem/step-up/method`.
async fn step_up_method(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<StepForm>,
) -> Response {
    let (lang, h) = match checked(&state, &headers, &form) {
        Ok(x) => x,
        Err(lang) => return forbidden(&state, lang),
    };
    let Some(method) = StepUpMethod::parse(&form.method) else {
        let e = Error::from(crate::error::InputError::Invalid {
            field: "method",
            reason: "must be `emailOtp` or `authenticator`".into(),
        });
        return failed(&state, lang, &h, &e).await;
    };
    let result = state.gp.choose_step_up(&h, method).await;
    after_step(&state, lang, &h, result).await
}

/// `POST /redeem/step-up/code`. A code that completes the redemption
/// sends the browser to the invitation's registered redirect URL, which
/// the completing step hands back.
async fn step_up_code(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<StepForm>,
) -> Response {
    let (lang, h) = match checked(&state, &headers, &form) {
        Ok(x) => x,
        Err(lang) => return forbidden(&state, lang),
    };
    let result = state.gp.submit_step_up_code(&h, form.code.trim()).await;
    if let Ok(RedemptionStep::Redeemed(done)) = &result {
        return see_other(done.redirect_url.as_str());
    }
    after_step(&state, lang, &h, result).await
}

/// `GET /federation/callback/{provider_id}`: continues the redemption of
/// the `__Host-gp-redeem` cookie, or the sign-up flow of the
/// `__Host-gp-flow` cookie ([`signup_pages`](super::signup_pages)) when
/// there is no redemption cookie. With both cookies, the one waiting for
/// this provider gets the callback: the redemption if it is (or if neither
/// is, so its page explains), else the sign-up flow.
async fn federation_callback(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(provider_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = language(&headers);
    let query = query.as_deref().unwrap_or_default();
    let flow = super::signup_pages::flow_handle(&headers);
    let Some(h) = handle(&headers) else {
        return match flow {
            Some(f) => {
                super::signup_pages::federation_callback(&state, &headers, &f, &provider_id, query).await
            }
            None => no_redemption(&state, lang),
        };
    };
    if let Some(f) = flow {
        let redemption_waits = matches!(
            state.gp.redemption_step(&h).await,
            Ok(RedemptionStep::AwaitingSignIn { provider }) if provider == provider_id
        );
        if !redemption_waits && super::signup_pages::awaits_provider(&state, &f, &provider_id).await {
            return super::signup_pages::federation_callback(&state, &headers, &f, &provider_id, query).await;
        }
    }
    let result = state.gp.redemption_callback(&h, &provider_id, query).await;
    after_step(&state, lang, &h, result).await
}
