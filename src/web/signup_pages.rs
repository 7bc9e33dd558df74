//! The sign-up and sign-in pages: server-side HTML forms over the sign-up
//! API of [`GuestPass`](crate::GuestPass)
//! ([`start_sign_up`](crate::GuestPass::start_sign_up),
//! [`view_flow`](crate::GuestPass::view_flow),
//! [`advance_flow`](crate::GuestPass::advance_flow),
//! [`sign_up_callback`](crate::GuestPass::sign_up_callback)), without
//! JavaScript.
//!
//! | route | what |
//! |---|---|
//! | `GET /signup?client_id=…&redirect_uri=…&state=…&nonce=…&ui_locales=…` | starts a flow, sets `__Host-gp-flow`, `303` to `/signup/step` (or to the provider) |
//! | `GET /signup/step` | the current page of the cookie's flow; changes nothing |
//! | `POST /signup/step` | every form of the flow: `csrf_token`, `action` and the action's fields |
//! | `GET /federation/callback/{provider_id}` | a federated provider's callback (shared with the [redemption pages](super::pages)) |
//!
//! # Starting
//!
//! `GET /signup` takes the parameters of an authorization request: each
//! at most once, others (such as `response_type` or `scope`) are ignored.
//! The service checks the application and that `redirect_uri` is one of its
//! registered redirect URIs before anything else; a refused request gets an
//! error page and is never redirected anywhere. Without `ui_locales`, the
//! language `Accept-Language` prefers (en-US or de-DE) is passed on, so the
//! flow's own texts and the page agree. When the user flow offers a single
//! identity provider it is chosen at once: the first page asks for the
//! address, or the browser goes straight to the federated provider.
//!
//! A flow starts only when the page is opened: a request another site's
//! image, frame or script makes (by its `Sec-Fetch-*` headers, see
//! [`is_navigation`](super::security::is_navigation)) gets a `403` page,
//! creates no flow and leaves the browser's flow cookie alone.
//!
//! # The form endpoint
//!
//! | `action` | fields |
//! |---|---|
//! | `chooseProvider` | `provider`: `emailOtp` or a federated provider's id |
//! | `submitEmail` | `email` |
//! | `resendPasscode` | |
//! | `submitPasscode` | `code` |
//! | `submitAttributes` | the attributes, by name (the whole body goes to the service) |
//! | `resume` | (after waiting for an administrator's approval) |
//! | `chooseStepUp` | `method`: `emailOtp` or `authenticator` |
//! | `submitStepUpCode` | `code` |
//! | `answerTerms` | `decision`: `accept` or `decline` |
//!
//! Inputs and buttons have stable `id`s for tests that drive a browser:
//! inputs `email`, `code`, `m-email` / `m-app` (step-up method) and
//! `f-<attribute name>` (`f-<attribute name>-<n>` for the n-th choice);
//! buttons `provider-<provider>`, `submit-email`,
//! `verify-passcode`, `resend-passcode`, `submit-attributes`, `resume`,
//! `choose-method`, `verify-code`, `accept-terms`, `decline-terms` and, on
//! the completion page, `continue`.
//!
//! A step that succeeds answers `303` to `/signup/step` (Post/Redirect/Get).
//! A refused one shows its page again at once with the error next to its
//! field: a wrong code (`401`), an attribute form with errors (`400`, the
//! values as typed), any other error of the service with its status. The
//! form's `csrf_token` is the token of the page it was rendered on; the
//! service refuses a missing, forged or stale one (a replayed or doubled
//! submission) with `403`, and so does this endpoint for a `POST` without
//! the cookie or with a foreign `Origin`. Bodies are limited to
//! [`MAX_FORM_BYTES`].
//!
//! # Completion
//!
//! The completion token is handed out once, so the answer of the step that
//! completes is the page that delivers it, as OpenID's `form_post` response
//! mode does: a form posting `id_token` and `state` to the completion's
//! redirect URI (one of the application's registered ones), with a visible
//! "Continue" button and no script. Its `Content-Security-Policy` allows
//! that one origin in `form-action`, through a
//! [`FormActionOrigin`] response
//! extension the security layer reads. The flow cookie is cleared with it.
//!
//! # Federated providers
//!
//! The provider sends the browser back to
//! `/federation/callback/{provider_id}`. A request with the flow cookie and
//! no redemption cookie continues the sign-up; with both cookies the flow
//! that waits for this provider gets it, the redemption when both do (see
//! [`pages`](super::pages)).

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use minijinja::{Environment, Value, context};
use serde::Serialize;
use time::Duration;

use super::pages::{MAX_FORM_BYTES, language, link, origin_ok, preferred_language, see_other};
use super::security::{self, FormActionOrigin};
use super::{Shared, cookies};
use crate::error::PasscodeError;
use crate::flow::access::{SignInContext, StepUpMethod, StepUpPage};
use crate::flow::attributes::InputType;
use crate::flow::config::{DEFAULT_FLOW_LIFETIME, IdentityProviderKind};
use crate::flow::connector::quote;
use crate::flow::machine::FlowError;
use crate::mail::templates::Language;
use crate::secret::SecretString;
use crate::{Completion, Error, FlowAction, FlowPage, FlowStep, FormField, SignUpRequest};

/// The cookie (`__Host-gp-flow`) holding the sign-up flow's handle.
pub const FLOW_COOKIE: &str = "gp-flow";

/// Longest query of `GET /signup`, in bytes.
pub const MAX_START_QUERY_BYTES: usize = 8 * 1024;

/// The routes of the pages, limited to [`MAX_FORM_BYTES`] bodies.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/signup", get(start))
        .route("/signup/step", get(show).post(submit))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
}

// ---------------------------------------------------------------------------
// Texts
// ---------------------------------------------------------------------------

/// The language of the page chrome: de-DE or en-US (the flow's own texts
/// may be in another language the flow supports).
fn chrome(lang: Language) -> Language {
    if lang == Language::DeDe {
        Language::DeDe
    } else {
        Language::EnUs
    }
}

/// The texts of the pages in `lang`: those shared with the redemption
/// pages, and the sign-up ones.
fn strings(lang: Language) -> std::collections::BTreeMap<&'static str, &'static str> {
    let lang = chrome(lang);
    let de = lang == Language::DeDe;
    let pick = |en: &'static str, de_text: &'static str| if de { de_text } else { en };
    let mut t = super::pages::strings(lang);
    t.extend([
        ("title", pick("Sign in", "Anmelden")),
        (
            "choose_provider",
            pick("Choose how to sign in", "Wählen Sie, wie Sie sich anmelden"),
        ),
        (
            "provider_email",
            pick(
                "Continue with a code sent by email",
                "Weiter mit einem Code per E-Mail",
            ),
        ),
        ("provider_with", pick("Continue with", "Weiter mit")),
        (
            "awaiting_sign_in",
            pick("Waiting for your sign-in with", "Warten auf Ihre Anmeldung bei"),
        ),
        ("email_label", pick("Email address", "E-Mail-Adresse")),
        ("choose", pick("Please choose", "Bitte wählen")),
        ("check_again", pick("Check again", "Erneut prüfen")),
        (
            "completed",
            pick(
                "You are signed in. Continue to the application.",
                "Sie sind angemeldet. Weiter zur Anwendung.",
            ),
        ),
        (
            "already_completed",
            pick(
                "This sign-in is complete. To sign in again, start from the application.",
                "Diese Anmeldung ist abgeschlossen. Um sich erneut anzumelden, beginnen Sie in der Anwendung.",
            ),
        ),
        (
            "no_flow",
            pick(
                "There is no sign-in in progress; start again from the application.",
                "Es läuft keine Anmeldung; beginnen Sie erneut in der Anwendung.",
            ),
        ),
        (
            "expired",
            pick(
                "This sign-in has expired; start again from the application.",
                "Diese Anmeldung ist abgelaufen; beginnen Sie erneut in der Anwendung.",
            ),
        ),
        (
            "forbidden",
            pick(
                "The form was refused. Reload the page and try again.",
                "Das Formular wurde abgelehnt. Laden Sie die Seite neu und versuchen Sie es erneut.",
            ),
        ),
        ("reload", pick("Reload the page", "Seite neu laden")),
        (
            "unknown_action",
            pick(
                "The form asked for something this page does not do.",
                "Das Formular verlangt etwas, das diese Seite nicht kann.",
            ),
        ),
        (
            "bad_decision",
            pick(
                "Choose accept or decline.",
                "Wählen Sie Akzeptieren oder Ablehnen.",
            ),
        ),
        (
            "bad_method",
            pick("Choose one of the methods.", "Wählen Sie eine der Methoden."),
        ),
        (
            "sign_in_failed",
            pick(
                "The sign-in could not be completed.",
                "Die Anmeldung konnte nicht abgeschlossen werden.",
            ),
        ),
        ("sign_in_again", pick("Sign in again", "Erneut anmelden")),
    ]);
    t
}

/// The text `key` in `lang` (empty for an unknown key).
pub(crate) fn text(lang: Language, key: &str) -> &'static str {
    strings(lang).get(key).copied().unwrap_or_default()
}

/// A refused passcode, in `lang`.
fn passcode_text(lang: Language, e: &PasscodeError) -> String {
    if chrome(lang) != Language::DeDe {
        return e.to_string();
    }
    match e {
        PasscodeError::Malformed => "Der Code muss aus den Ziffern der E-Mail bestehen".to_owned(),
        PasscodeError::NotIssued => "Für diesen Schritt wurde kein Code gesendet".to_owned(),
        PasscodeError::Incorrect { remaining } => {
            format!("Der Code ist falsch; noch {remaining} Versuche")
        }
        PasscodeError::Expired => "Der Code ist abgelaufen".to_owned(),
        PasscodeError::AlreadyUsed => "Der Code wurde bereits verwendet".to_owned(),
        PasscodeError::TooManyAttempts => "Zu viele falsche Versuche für diesen Code".to_owned(),
        PasscodeError::AddressLocked => "Zu viele fehlgeschlagene Versuche für diese Adresse".to_owned(),
        PasscodeError::RateLimited { retry_after_secs } => format!(
            "Es wurde gerade ein Code gesendet; versuchen Sie es in {retry_after_secs} Sekunden erneut"
        ),
    }
}

/// An error of the service, in `lang` where a translation exists.
fn error_text(lang: Language, e: &Error) -> String {
    match e {
        Error::Passcode(p) => passcode_text(lang, p),
        Error::Flow(FlowError::UnknownFlow) => text(lang, "no_flow").to_owned(),
        Error::Flow(FlowError::Expired) => text(lang, "expired").to_owned(),
        Error::Flow(FlowError::Csrf) => text(lang, "forbidden").to_owned(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A template that does not parse shows up as a render error below.
        let _ = env.add_template("signup.html", include_str!("templates/signup.html"));
        env
    })
}

/// The page for `ctx`, with the headers of a token page.
fn render(status: StatusCode, ctx: Value) -> Response {
    super::pages::page_response(
        status,
        environment()
            .get_template("signup.html")
            .and_then(|t| t.render(ctx)),
    )
}

/// A step page of kind `kind` in `lang` (the flow's language).
fn html(
    state: &Shared,
    status: StatusCode,
    lang: Language,
    kind: &str,
    heading: Option<String>,
    csrf: &str,
    extra: Value,
) -> Response {
    let ctx = context! {
        lang => lang.tag(),
        t => strings(lang),
        kind => kind,
        heading => heading.unwrap_or_else(|| text(lang, "title").to_owned()),
        csrf => csrf,
        action => link(state, "signup/step"),
        ..extra
    };
    render(status, ctx)
}

/// A page with one message and, when given, a link (its address and text).
pub(crate) fn message_page(
    status: StatusCode,
    lang: Language,
    message: &str,
    error: bool,
    link: Option<(String, &str)>,
) -> Response {
    let lang = chrome(lang);
    let (link_href, link_text) = link.unzip();
    render(
        status,
        context! {
            lang => lang.tag(),
            t => strings(lang),
            kind => "message",
            heading => text(lang, "title"),
            message,
            error,
            link_href,
            link_text,
        },
    )
}

fn message(status: StatusCode, lang: Language, text: &str, error: bool) -> Response {
    message_page(status, lang, text, error, None)
}

/// The page of an error of the service that has no step to show.
fn error_page(lang: Language, e: &Error) -> Response {
    message(e.status(), lang, &error_text(lang, e), true)
}

fn forbidden(state: &Shared, lang: Language) -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        lang,
        text(lang, "forbidden"),
        true,
        Some((link(state, "signup/step"), text(lang, "reload"))),
    )
}

fn no_flow(lang: Language) -> Response {
    message(StatusCode::BAD_REQUEST, lang, text(lang, "no_flow"), true)
}

fn to_step(state: &Shared) -> Response {
    see_other(&link(state, "signup/step"))
}

#[derive(Serialize)]
struct ProviderView {
    name: String,
    label: String,
}

fn provider_views(lang: Language, providers: &[IdentityProviderKind]) -> Vec<ProviderView> {
    providers
        .iter()
        .map(|p| ProviderView {
            name: p.as_str().to_owned(),
            label: match p {
                IdentityProviderKind::EmailOtp => text(lang, "provider_email").to_owned(),
                IdentityProviderKind::Federated(id) => format!("{} {id}", text(lang, "provider_with")),
            },
        })
        .collect()
}

#[derive(Serialize)]
struct ChoiceView<'a> {
    id: String,
    value: &'a str,
    label: &'a str,
    selected: bool,
}

#[derive(Serialize)]
struct FieldView<'a> {
    id: String,
    name: &'a str,
    label: &'a str,
    kind: &'static str,
    required: bool,
    read_only: bool,
    value: &'a str,
    checked: bool,
    autocomplete: Option<&'static str>,
    choices: Vec<ChoiceView<'a>>,
    error: Option<&'a str>,
}

/// The `autocomplete` token of a built-in attribute, for browsers and
/// assistive technology.
fn autocomplete(name: &str) -> Option<&'static str> {
    Some(match name {
        "givenName" => "given-name",
        "surname" => "family-name",
        "displayName" => "name",
        "email" => "email",
        "city" => "address-level2",
        "state" => "address-level1",
        "country" => "country-name",
        "postalCode" => "postal-code",
        "streetAddress" => "street-address",
        "jobTitle" => "organization-title",
        _ => return None,
    })
}

fn field_views(fields: &[FormField]) -> Vec<FieldView<'_>> {
    fields
        .iter()
        .map(|f| {
            let id = format!("f-{}", f.name);
            let kind = match f.input_type {
                InputType::TextBox => "text",
                InputType::EmailBox => "email",
                InputType::RadioSingleSelect => "radio",
                InputType::DropdownSingleSelect => "select",
                InputType::CheckboxSingleSelect => "checkbox",
                InputType::CheckboxMultiSelect => "multi",
                InputType::DateTimeDropdown => "date",
            };
            let choices = f
                .choices
                .iter()
                .enumerate()
                .map(|(i, (value, label))| ChoiceView {
                    id: format!("{id}-{i}"),
                    value,
                    label,
                    selected: f.values.iter().any(|v| v == value),
                })
                .collect();
            FieldView {
                name: &f.name,
                label: &f.label,
                kind,
                required: f.required,
                read_only: f.read_only,
                value: f.values.first().map_or("", String::as_str),
                checked: f.values.iter().any(|v| v == "true"),
                autocomplete: autocomplete(&f.name),
                choices,
                error: f.error.as_deref(),
                id,
            }
        })
        .collect()
}

/// The page of `page`, with `error` next to the field it concerns and the
/// address typed (`email`) filled in again.
fn step_page(
    state: &Shared,
    status: StatusCode,
    page: FlowPage,
    error: Option<String>,
    email: Option<String>,
) -> Response {
    let lang = page.language;
    let csrf = page.csrf_token;
    let view = |kind: &str, heading: Option<String>, extra: Value| {
        html(state, status, lang, kind, heading, csrf.expose(), extra)
    };
    match page.step {
        FlowStep::ChooseProvider { title, providers } => view(
            "choose_provider",
            Some(title),
            context! { providers => provider_views(lang, &providers), error },
        ),
        FlowStep::SignInWith { url, .. } => see_other(url.as_str()),
        FlowStep::AwaitingSignIn { provider, providers } => view(
            "awaiting_sign_in",
            None,
            context! { provider, providers => provider_views(lang, &providers), error },
        ),
        FlowStep::EnterEmail {
            prompt,
            error: refused,
        } => view(
            "email",
            Some(prompt),
            context! { error => error.or(refused), email },
        ),
        FlowStep::EnterPasscode {
            prompt,
            sent_to,
            delivered,
            refused,
        } => view(
            "passcode",
            Some(prompt),
            context! {
                sent_to,
                delivered,
                error => error.or_else(|| refused.map(|r| passcode_text(lang, &r))),
            },
        ),
        FlowStep::CollectAttributes {
            title,
            fields,
            message,
        } => view(
            "attributes",
            Some(title),
            context! { fields => field_views(&fields), form_message => error.or(message) },
        ),
        FlowStep::AwaitingApproval { message } => {
            view("awaiting_approval", None, context! { message, error })
        }
        FlowStep::Approved { message } => view("approved", None, context! { message, error }),
        FlowStep::Completed(completion) => completion_page(lang, *completion),
        FlowStep::AlreadyCompleted => message(status, lang, text(lang, "already_completed"), false),
        FlowStep::Blocked { message: m } => view(
            "message",
            Some(text(lang, "blocked").to_owned()),
            context! { message => m, error => true },
        ),
        FlowStep::Denied { message: m } => view("message", None, context! { message => m, error => true }),
        FlowStep::StepUp {
            page: step_up,
            refused,
        } => {
            let error = error.or_else(|| refused.map(|r| passcode_text(lang, &r)));
            match step_up {
                StepUpPage::Choose {
                    methods,
                    email,
                    authenticator_enrolled,
                } => view(
                    "step_up_choose",
                    None,
                    context! {
                        email_otp => methods.email_otp,
                        authenticator => methods.authenticator,
                        email,
                        enrolled => authenticator_enrolled,
                        error,
                    },
                ),
                StepUpPage::EnterEmailCode { sent_to, delivered } => {
                    view("step_up_code", None, context! { sent_to, delivered, error })
                }
                StepUpPage::EnrollAuthenticator { otpauth_uri, secret } => view(
                    "step_up_code",
                    None,
                    context! { otpauth_uri => otpauth_uri.expose(), secret => secret.expose(), error },
                ),
                StepUpPage::EnterAuthenticatorCode => view("step_up_code", None, context! { error }),
            }
        }
        FlowStep::TermsOfUse { terms } => view(
            "terms",
            None,
            context! { terms_url => terms.url().to_string(), terms_name => terms.display_name(), error },
        ),
    }
}

/// The page that delivers a completion as OpenID's `form_post` does; its
/// policy lets forms post to the redirect URI's origin, and it clears the
/// flow cookie.
fn completion_page(lang: Language, completion: Completion) -> Response {
    let Some(origin) = FormActionOrigin::of(&completion.redirect_uri) else {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            "the redirect uri cannot receive a form post",
            true,
        );
    };
    let mut res = render(
        StatusCode::OK,
        context! {
            lang => lang.tag(),
            t => strings(lang),
            kind => "completion",
            heading => text(lang, "title"),
            redirect_uri => completion.redirect_uri.as_str(),
            id_token => completion.id_token.expose(),
            app_state => completion.state,
        },
    );
    res.extensions_mut().insert(origin);
    if let Ok(clear) = cookies::clear_cookie(FLOW_COOKIE) {
        res.headers_mut().append(header::SET_COOKIE, clear);
    }
    res
}

// ---------------------------------------------------------------------------
// Starting
// ---------------------------------------------------------------------------

/// The parameters of `GET /signup`.
#[derive(Default)]
struct StartParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    ui_locales: Option<String>,
}

impl StartParams {
    /// Each known parameter at most once; others are ignored.
    fn parse(query: &str) -> Result<Self, String> {
        if query.len() > MAX_START_QUERY_BYTES {
            return Err(format!("the query is longer than {MAX_START_QUERY_BYTES} bytes"));
        }
        let mut p = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "client_id" => &mut p.client_id,
                "redirect_uri" => &mut p.redirect_uri,
                "state" => &mut p.state,
                "nonce" => &mut p.nonce,
                "ui_locales" => &mut p.ui_locales,
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!("parameter `{}` is given more than once", quote(&k)));
            }
            *slot = Some(v.into_owned());
        }
        Ok(p)
    }
}

/// The page language for `ui_locales` (en-US or de-DE, the first that is
/// one of them), else for `Accept-Language`.
fn request_language(ui_locales: Option<&str>, headers: &HeaderMap) -> Language {
    ui_locales
        .into_iter()
        .flat_map(|v| v.split([' ', ',']))
        .find_map(
            |tag| match Language::from_tag(tag.split(';').next().unwrap_or_default()) {
                Some(l @ (Language::EnUs | Language::DeDe)) => Some(l),
                _ => None,
            },
        )
        .unwrap_or_else(|| language(headers))
}

/// How long the flow cookie lives: the user flow's lifetime, or its
/// approval lifetime when sign-ups wait for an administrator.
fn cookie_lifetime(state: &Shared, client_id: &str) -> Duration {
    state
        .gp
        .config()
        .sign_up()
        .flow_for_application(client_id)
        .map_or(DEFAULT_FLOW_LIFETIME, |uf| {
            if uf.approval_required() {
                uf.lifetime().max(uf.approval_lifetime())
            } else {
                uf.lifetime()
            }
        })
}

/// `GET /signup`: starts a flow.
async fn start(
    State(state): State<Shared>,
    headers: HeaderMap,
    ext: Extensions,
    RawQuery(query): RawQuery,
) -> Response {
    if !security::is_navigation(&headers) {
        return message(
            StatusCode::FORBIDDEN,
            language(&headers),
            "(a sign-up starts only when the page is opened, not from another site's image, frame or script)",
            true,
        );
    }
    let params = match StartParams::parse(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err(reason) => return message(StatusCode::BAD_REQUEST, language(&headers), &reason, true),
    };
    let lang = request_language(params.ui_locales.as_deref(), &headers);
    let context = ext
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(SignInContext::default, |ConnectInfo(addr)| {
            SignInContext::browser(addr.ip())
        });
    let client_id = params.client_id.unwrap_or_default();
    let request = SignUpRequest {
        client_id: client_id.clone(),
        redirect_uri: params.redirect_uri.unwrap_or_default(),
        nonce: params.nonce,
        state: params.state,
        ui_locales: params
            .ui_locales
            .or_else(|| preferred_language(&headers).map(|l| l.tag().to_owned())),
        context,
    };
    let started = match state.gp.start_sign_up(request).await {
        Ok(s) => s,
        Err(e) => return error_page(lang, &e),
    };
    let cookie = match cookies::set_cookie(
        FLOW_COOKIE,
        started.handle.expose(),
        Some(cookie_lifetime(&state, &client_id)),
    ) {
        Ok(c) => c,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let mut res = match &started.page.step {
        FlowStep::ChooseProvider { providers, .. } if providers.len() == 1 => {
            only_provider(&state, &started.handle, &started.page.csrf_token, providers).await
        }
        _ => to_step(&state),
    };
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

/// Chooses the flow's only provider: on to the address page, or to the
/// federated provider. Should that fail, the choice page shows why.
async fn only_provider(
    state: &Shared,
    handle: &SecretString,
    csrf: &SecretString,
    providers: &[IdentityProviderKind],
) -> Response {
    let Some(provider) = providers.first() else {
        return to_step(state);
    };
    let action = FlowAction::ChooseProvider(provider.as_str().to_owned());
    match state
        .gp
        .advance_flow(handle.expose(), csrf.expose(), action)
        .await
    {
        Ok(FlowPage {
            step: FlowStep::SignInWith { url, .. },
            ..
        }) => see_other(url.as_str()),
        _ => to_step(state),
    }
}

// ---------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------

/// The flow handle of the request's cookie.
pub(crate) fn flow_handle(headers: &HeaderMap) -> Option<String> {
    cookies::read(headers, FLOW_COOKIE)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// `GET /signup/step`: the current page. Changes nothing.
async fn show(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let Some(h) = flow_handle(&headers) else {
        return no_flow(language(&headers));
    };
    match state.gp.view_flow(&h).await {
        Ok(page) => step_page(&state, StatusCode::OK, page, None, None),
        Err(e) => error_page(language(&headers), &e),
    }
}

/// The fields of a step form (the attribute form is read by the service).
#[derive(Default)]
struct StepForm {
    csrf_token: String,
    action: String,
    provider: String,
    email: String,
    code: String,
    method: String,
    decision: String,
}

impl StepForm {
    /// The fields, or `None` when a control field (`csrf_token`, `action`)
    /// is given more than once.
    fn parse(body: &[u8]) -> Option<Self> {
        let mut form = Self::default();
        let (mut csrf_seen, mut action_seen) = (false, false);
        for (k, v) in url::form_urlencoded::parse(body) {
            let (slot, seen) = match k.as_ref() {
                "csrf_token" => (&mut form.csrf_token, Some(&mut csrf_seen)),
                "action" => (&mut form.action, Some(&mut action_seen)),
                "provider" => (&mut form.provider, None),
                "email" => (&mut form.email, None),
                "code" => (&mut form.code, None),
                "method" => (&mut form.method, None),
                "decision" => (&mut form.decision, None),
                _ => continue,
            };
            if let Some(seen) = seen {
                if *seen {
                    return None;
                }
                *seen = true;
            }
            if slot.is_empty() {
                *slot = v.into_owned();
            }
        }
        Some(form)
    }
}

/// Whether the request says its body is a urlencoded form.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// `POST /signup/step`: one step of the flow.
async fn submit(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let lang = language(&headers);
    if !is_form(&headers) {
        return message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            lang,
            "the form must be sent as `application/x-www-form-urlencoded`",
            true,
        );
    }
    let Some(h) = flow_handle(&headers) else {
        return forbidden(&state, lang);
    };
    if !origin_ok(&state, &headers) {
        return forbidden(&state, lang);
    }
    let Some(form) = StepForm::parse(&body) else {
        return forbidden(&state, lang);
    };
    let action = match form.action.as_str() {
        "chooseProvider" => FlowAction::ChooseProvider(form.provider),
        "submitEmail" => FlowAction::SubmitEmail(form.email.clone()),
        "resendPasscode" => FlowAction::ResendPasscode,
        "submitPasscode" => FlowAction::SubmitPasscode(SecretString::new(form.code.trim().to_owned())),
        "submitAttributes" => FlowAction::SubmitAttributes(body.to_vec()),
        "resume" => FlowAction::Resume,
        "chooseStepUp" => match StepUpMethod::parse(&form.method) {
            Some(m) => FlowAction::ChooseStepUp(m),
            None => return refused_choice(&state, lang, &h, "bad_method").await,
        },
        "submitStepUpCode" => FlowAction::SubmitStepUpCode(SecretString::new(form.code.trim().to_owned())),
        "answerTerms" => match form.decision.as_str() {
            "accept" => FlowAction::AnswerTerms(true),
            "decline" => FlowAction::AnswerTerms(false),
            _ => return refused_choice(&state, lang, &h, "bad_decision").await,
        },
        _ => return message(StatusCode::BAD_REQUEST, lang, text(lang, "unknown_action"), true),
    };
    let attributes = matches!(action, FlowAction::SubmitAttributes(_));
    let email = matches!(action, FlowAction::SubmitEmail(_)).then_some(form.email);
    let result = state.gp.advance_flow(&h, &form.csrf_token, action).await;
    after(&state, lang, &h, attributes, email, result).await
}

/// A form whose choice (`method`, `decision`) is none of the offered
/// ones: the page again, with the text `key` next to the choice. Nothing is
/// submitted to the service.
async fn refused_choice(state: &Shared, lang: Language, handle: &str, key: &str) -> Response {
    match state.gp.view_flow(handle).await {
        Ok(page) => {
            let error = text(page.language, key).to_owned();
            step_page(state, StatusCode::BAD_REQUEST, page, Some(error), None)
        }
        Err(e) => error_page(lang, &e),
    }
}

/// After a step (or a federated callback): where the browser goes next.
async fn after(
    state: &Shared,
    lang: Language,
    handle: &str,
    attributes: bool,
    email: Option<String>,
    result: Result<FlowPage, Error>,
) -> Response {
    match result {
        Ok(page) => match &page.step {
            FlowStep::SignInWith { url, .. } => see_other(url.as_str()),
            FlowStep::Completed(_) => step_page(state, StatusCode::OK, page, None, None),
            FlowStep::EnterPasscode { refused: Some(r), .. } | FlowStep::StepUp { refused: Some(r), .. } => {
                let status = Error::from(r.clone()).status();
                step_page(state, status, page, None, None)
            }
            // The form again: its values and errors are not stored.
            FlowStep::CollectAttributes { .. } if attributes => {
                step_page(state, StatusCode::BAD_REQUEST, page, None, None)
            }
            _ => to_step(state),
        },
        Err(Error::Flow(FlowError::Csrf)) => forbidden(state, lang),
        Err(e) => match state.gp.view_flow(handle).await {
            Ok(page) => {
                let text = error_text(page.language, &e);
                step_page(state, e.status(), page, Some(text), email)
            }
            Err(_) => error_page(lang, &e),
        },
    }
}

/// Whether the sign-up flow `handle` waits for the provider `provider_id`.
pub(crate) async fn awaits_provider(state: &Shared, handle: &str, provider_id: &str) -> bool {
    matches!(
        state.gp.view_flow(handle).await,
        Ok(FlowPage { step: FlowStep::AwaitingSignIn { provider, .. }, .. }) if provider == provider_id
    )
}

/// A federated provider's callback for the sign-up flow `handle`.
pub(crate) async fn federation_callback(
    state: &Shared,
    headers: &HeaderMap,
    handle: &str,
    provider_id: &str,
    query: &str,
) -> Response {
    let lang = language(headers);
    let result = state.gp.sign_up_callback(handle, provider_id, query).await;
    after(state, lang, handle, false, None, result).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_parameters_are_each_taken_once() {
        let p =
            StartParams::parse("client_id=app&redirect_uri=https%3A%2F%2Fa.example%2F&scope=openid").unwrap();
        assert_eq!(p.client_id.as_deref(), Some("app"));
        assert_eq!(p.redirect_uri.as_deref(), Some("https://a.example/"));
        assert!(p.state.is_none());
        assert!(StartParams::parse("client_id=a&client_id=b").is_err());
        assert!(StartParams::parse(&"x".repeat(MAX_START_QUERY_BYTES + 1)).is_err());
    }

    #[test]
    fn step_forms_refuse_doubled_control_fields() {
        let f = StepForm::parse(b"csrf_token=t&action=submitEmail&email=a%40b.example").unwrap();
        assert_eq!(f.csrf_token, "t");
        assert_eq!(f.email, "a@b.example");
        assert!(StepForm::parse(b"csrf_token=t&csrf_token=u").is_none());
        assert!(StepForm::parse(b"action=a&action=b").is_none());
    }

    #[test]
    fn ui_locales_pick_the_page_language() {
        let h = HeaderMap::new();
        assert_eq!(request_language(Some("fr-FR de-DE"), &h), Language::DeDe);
        assert_eq!(request_language(Some("nl-NL"), &h), Language::EnUs);
        assert_eq!(request_language(None, &h), Language::EnUs);
    }

    #[test]
    fn german_passcode_errors() {
        let t = passcode_text(Language::DeDe, &PasscodeError::Incorrect { remaining: 3 });
        assert!(t.contains("noch 3 Versuche"), "{t}");
        let t = passcode_text(Language::EnUs, &PasscodeError::Expired);
        assert_eq!(t, "passcode has expired");
    }
}
