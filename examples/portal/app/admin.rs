//! The admin pages: sign-in with the one-time link the portal prints, the
//! users list with invite (single and bulk from CSV), resend, revoke and
//! reset redemption, the settings editor and What-If.
//!
//! # Sign-in and session
//!
//! The printed link (`/admin/sign-in?code=…`) opens a page with one button;
//! opening it changes nothing (mail scanners and link previews fetch
//! links). The button posts the code, which is used up, and the browser
//! gets a random 256-bit session id in the cookie `__Host-gp-admin`. The
//! portal keeps only the id's SHA-256 and the session's expiry (8 hours),
//! in memory: every admin page looks the session up, signing out removes
//! it (a copy of the cookie kept elsewhere stops working), and a restart
//! ends every session. The cookie is no API token: the Graph-compatible
//! API takes only the printed bearer token, and that token is no session.
//!
//! # Forms
//!
//! Every form that changes something carries `csrf`: base64url of
//! HMAC-SHA256 under the portal's CSRF key over `portal-admin` and the
//! session id's hash, compared in constant time; a `POST` with a foreign
//! `Origin` is refused as well. Bodies are limited ([`MAX_FORM_BYTES`], the
//! CSV upload [`bulk::MAX_CSV_BYTES`]); a larger body gets a page naming
//! the limit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use guestpass::directory::{ExternalUserState, ObjectRef, User, UserType};
use guestpass::id::Id;
use guestpass::invitation::InvitationRequest;
use guestpass::policy::{ClientAppType, Satisfied, SignIn, UserKind};
use guestpass::random::{SecureRandom, SystemRandom};
use guestpass::secret::{Digest, SecretString, constant_time_eq};
use guestpass::web::cookies;
use guestpass::{Error, Inviter};
use minijinja::context;
use serde::Deserialize;
use url::Url;

use super::settings::{PAYROLL_APP, Settings, SettingsError};
use super::{BoxError, Shared, bulk, page};

/// The admin session cookie (sent as `__Host-gp-admin`).
pub const ADMIN_COOKIE: &str = "gp-admin";
/// Largest admin form body but the CSV upload, in bytes.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// How long an admin session lasts.
pub const SESSION_LIFETIME: time::Duration = time::Duration::hours(8);

/// At most this many admin sessions at once; signing in beyond it ends
/// the oldest.
pub const MAX_SESSIONS: usize = 64;

/// One-time sign-in codes and admin sessions (both as their SHA-256), and
/// the randomness for new ones.
pub struct AdminAuth {
    codes: Mutex<Vec<Digest>>,
    /// Live sessions, oldest first, with their expiry.
    sessions: Mutex<Vec<(Digest, time::OffsetDateTime)>>,
    random: Arc<SystemRandom>,
}

impl AdminAuth {
    /// The sign-in state with one fresh code, and the link that uses it.
    ///
    /// # Errors
    ///
    /// The generator's.
    pub fn new(base: &Url, random: Arc<SystemRandom>) -> Result<(Self, SecretString), BoxError> {
        let auth = Self {
            codes: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
            random,
        };
        let link = auth.new_link(base)?;
        Ok((auth, link))
    }

    /// Makes another one-time sign-in link.
    ///
    /// # Errors
    ///
    /// The generator's.
    pub fn new_link(&self, base: &Url) -> Result<SecretString, BoxError> {
        let code = self.random_value()?;
        locked(&self.codes, |codes| codes.push(Digest::sha256(code.as_bytes())));
        let mut link = base.join("admin/sign-in")?;
        link.query_pairs_mut().append_pair("code", &code);
        Ok(SecretString::new(link.to_string()))
    }

    fn random_value(&self) -> Result<String, BoxError> {
        let mut bytes = [0u8; 32];
        self.random.fill(&mut bytes)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Whether `code` is a valid unused one (nothing changes).
    fn is_code(&self, code: &str) -> bool {
        let digest = Digest::sha256(code.as_bytes());
        locked(&self.codes, |codes| codes.iter().any(|c| c.ct_eq(&digest)))
    }

    /// Uses up `code`; whether it was a valid unused one.
    fn consume(&self, code: &str) -> bool {
        let digest = Digest::sha256(code.as_bytes());
        locked(&self.codes, |codes| {
            let found = codes.iter().position(|c| c.ct_eq(&digest));
            found.map(|i| codes.swap_remove(i)).is_some()
        })
    }

    /// A new session until `now` + [`SESSION_LIFETIME`]: its id for the
    /// cookie, and the id's hash. Expired sessions are dropped, and the
    /// oldest when there are [`MAX_SESSIONS`].
    fn open_session(&self, now: time::OffsetDateTime) -> Result<(SecretString, Digest), BoxError> {
        let id = self.random_value()?;
        let digest = Digest::sha256(id.as_bytes());
        locked(&self.sessions, |sessions| {
            sessions.retain(|(_, expires_at)| *expires_at > now);
            if sessions.len() >= MAX_SESSIONS {
                sessions.remove(0);
            }
            sessions.push((digest, now + SESSION_LIFETIME));
        });
        Ok((SecretString::new(id), digest))
    }

    /// The hash of the live session `id`, if it is one at `now`.
    fn session(&self, id: &str, now: time::OffsetDateTime) -> Option<Digest> {
        let digest = Digest::sha256(id.as_bytes());
        locked(&self.sessions, |sessions| {
            sessions
                .iter()
                .any(|(d, expires_at)| d.ct_eq(&digest) && *expires_at > now)
                .then_some(digest)
        })
    }

    /// Ends the session whose id hashes to `digest`.
    fn close_session(&self, digest: &Digest) {
        locked(&self.sessions, |sessions| {
            sessions.retain(|(d, _)| !d.ct_eq(digest))
        });
    }
}

/// `f` on what `mutex` guards, also after a panic elsewhere poisoned it
/// (every change here is a single push or removal).
fn locked<T, U>(mutex: &Mutex<T>, f: impl FnOnce(&mut T) -> U) -> U {
    match mutex.lock() {
        Ok(mut guarded) => f(&mut guarded),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// The routes of the admin pages.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/admin", get(users_page))
        .route("/admin/sign-in", get(sign_in_page).post(sign_in))
        .route("/admin/sign-out", post(sign_out))
        .route("/admin/invite", post(invite))
        .route("/admin/users/{id}/{action}", post(user_action))
        .route("/admin/settings", get(settings_page).post(save_settings))
        .route("/admin/what-if", get(what_if))
        .route("/admin/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .route(
            "/admin/bulk",
            post(bulk_invite).layer(DefaultBodyLimit::max(bulk::MAX_CSV_BYTES + 4096)),
        )
}

/// A signed-in administrator, from the session cookie.
pub struct Admin {
    /// The SHA-256 of the session id.
    session: Digest,
    /// The CSRF token of this session's forms.
    pub csrf: String,
}

impl Admin {
    /// The portal's administrator.
    fn inviter(&self) -> Inviter {
        Inviter::admin(Some(super::admin_id()))
    }
}

/// The answer to a request without a valid admin session.
pub struct SignInFirst;

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))],
            "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\"><title>Sign in</title>\
             <link rel=\"stylesheet\" href=\"/static/portal.css\"></head><body><main><h1>Administrator sign-in</h1>\
             <p role=\"alert\">Open the one-time sign-in link the portal printed when it started. \
             Restart the portal for a new link.</p><p><a href=\"/\">Home</a></p></main></body></html>",
        )
            .into_response()
    }
}

fn csrf_for(portal: &Shared, session: &Digest) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &portal.deps.csrf_key);
    let mut msg = b"portal-admin".to_vec();
    msg.extend_from_slice(&session.0);
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, &msg).as_ref())
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, portal: &Shared) -> Result<Self, Self::Rejection> {
        let id = cookies::read(&parts.headers, ADMIN_COOKIE).ok_or(SignInFirst)?;
        let session = portal
            .admin
            .session(id, time::OffsetDateTime::now_utc())
            .ok_or(SignInFirst)?;
        let csrf = csrf_for(portal, &session);
        Ok(Self { session, csrf })
    }
}

/// Whether a `POST`'s `Origin`, when sent, is the portal's (or `null` on
/// a request the browser marks same-origin: browsers send `null` from
/// pages with `Referrer-Policy: no-referrer`).
fn origin_ok(portal: &Shared, headers: &HeaderMap) -> bool {
    guestpass::web::security::origin_allowed(headers, &portal.deps.base.origin())
}

/// Checks a form's CSRF token and the request's `Origin`.
fn form_refused(portal: &Shared, admin: &Admin, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    if origin_ok(portal, headers)
        && !csrf.is_empty()
        && constant_time_eq(admin.csrf.as_bytes(), csrf.as_bytes())
    {
        None
    } else {
        Some(page::message(
            portal,
            StatusCode::FORBIDDEN,
            "Refused",
            "The form was refused: it did not come from this session's page. Reload the page and try again.",
        ))
    }
}

/// A form that carries a `csrf` field.
trait CsrfField {
    fn csrf(&self) -> &str;
}

macro_rules! csrf_field {
    ($($t:ty),*) => {$(impl CsrfField for $t {
        fn csrf(&self) -> &str {
            &self.csrf
        }
    })*};
}

csrf_field!(CsrfForm, InviteForm, BulkForm, SettingsForm);

/// The body of an admin form post, read within `limit` and checked
/// ([`form_refused`]), or the page refusing it.
fn checked<T: CsrfField>(
    portal: &Shared,
    admin: &Admin,
    headers: &HeaderMap,
    form: Result<Form<T>, FormRejection>,
    limit: usize,
) -> Result<T, Box<Response>> {
    let Form(form) = form.map_err(|r| Box::new(form_rejected(portal, &r, limit)))?;
    match form_refused(portal, admin, headers, form.csrf()) {
        Some(refused) => Err(Box::new(refused)),
        None => Ok(form),
    }
}

/// A form body that could not be read: too large, or not a form.
fn form_rejected(portal: &Shared, rejection: &FormRejection, limit: usize) -> Response {
    let status = rejection.status();
    let text = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("The form is larger than the limit of {} KiB.", limit / 1024)
    } else {
        format!("The form could not be read: {rejection}.")
    };
    page::message(portal, status, "Refused", &text)
}

fn see_other(portal: &Shared, path: &str) -> Response {
    match HeaderValue::from_str(&portal.link(path)) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Deserialize)]
struct CodeQuery {
    #[serde(default)]
    code: String,
}

/// `GET /admin/sign-in?code=…`: a page with one button; uses nothing up.
async fn sign_in_page(State(portal): State<Shared>, Query(q): Query<CodeQuery>) -> Response {
    page::render(
        &portal,
        StatusCode::OK,
        "admin_sign_in.html",
        context! { code => q.code },
    )
}

/// `POST /admin/sign-in`: uses the code up and starts the session.
async fn sign_in(
    State(portal): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<CodeQuery>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(f) => f,
        Err(r) => return form_rejected(&portal, &r, MAX_FORM_BYTES),
    };
    let refused = || {
        page::message(
            &portal,
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            "This sign-in link is not valid or was used already. Restart the portal for a new one.",
        )
    };
    if !origin_ok(&portal, &headers) || !portal.admin.is_code(&form.code) {
        return refused();
    }
    // The session and its cookie are made before the code is used up, so
    // a failure here leaves the link working; of two posts of one code,
    // only the one that uses it up gets its cookie.
    let Ok((session, digest)) = portal.admin.open_session(time::OffsetDateTime::now_utc()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(cookie) = cookies::set_cookie(ADMIN_COOKIE, session.expose(), Some(SESSION_LIFETIME)) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if !portal.admin.consume(&form.code) {
        portal.admin.close_session(&digest);
        return refused();
    }
    let mut res = see_other(&portal, "admin");
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    /// `yes` once the administrator confirmed a destructive action.
    #[serde(default)]
    confirm: String,
}

/// `POST /admin/sign-out`.
async fn sign_out(
    State(portal): State<Shared>,
    admin: Admin,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(refused) = checked(&portal, &admin, &headers, form, MAX_FORM_BYTES) {
        return *refused;
    }
    let Ok(cookie) = cookies::clear_cookie(ADMIN_COOKIE) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // A copy of the cookie kept elsewhere stops working too.
    portal.admin.close_session(&admin.session);
    let mut res = see_other(&portal, "");
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

#[derive(Deserialize, Default)]
struct Notice {
    #[serde(default)]
    done: String,
}

fn notice_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "invited" => "The invitation was sent.",
        "resend" => "The invitation was sent again.",
        "revoke" => "The invitation was revoked.",
        "reset" => "The redemption was reset; a new invitation was sent.",
        "delete" => "The user was deleted.",
        "settings" => "The settings were saved and are in force.",
        _ => return None,
    })
}

/// A user as the users table shows it.
fn user_row(user: &User) -> minijinja::Value {
    let state = match user.external_user_state {
        Some(ExternalUserState::PendingAcceptance) => "PendingAcceptance",
        Some(ExternalUserState::Accepted) => "Accepted",
        None => "",
    };
    let identities: Vec<String> = user
        .identities
        .iter()
        .map(|i| format!("{} ({:?})", i.issuer, i.sign_in_type))
        .collect();
    context! {
        id => user.id.to_string(),
        display_name => user.display_name.clone().unwrap_or_default(),
        mail => user.mail.as_ref().map(ToString::to_string).unwrap_or_default(),
        upn => user.user_principal_name.clone(),
        user_type => match user.user_type { UserType::Guest => "Guest", UserType::Member => "Member" },
        state,
        pending => user.external_user_state == Some(ExternalUserState::PendingAcceptance),
        identities,
        enabled => user.account_enabled,
        created => user.created_date_time.date().to_string(),
    }
}

/// The form of the single invitation, as typed.
#[derive(Deserialize, Default, Clone)]
struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    redirect: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    language: String,
}

/// The users page, with an optional notice and errors of the invite form.
async fn render_users(
    portal: &Shared,
    admin: &Admin,
    status: StatusCode,
    notice: Option<&str>,
    form: &InviteForm,
    errors: BTreeMap<&'static str, String>,
    bulk_results: Option<Vec<bulk::RowResult>>,
) -> Response {
    let live = portal.live();
    let users = match live.gp.users().await {
        Ok(users) => users,
        Err(e) => return page::message(portal, e.status(), "Directory unavailable", &e.to_string()),
    };
    let rows: Vec<_> = users.iter().map(user_row).collect();
    let events: Vec<_> = portal
        .deps
        .audit
        .events()
        .iter()
        .rev()
        .take(15)
        .map(|e| {
            let kind = format!("{:?}", e.kind);
            let name = kind.split([' ', '{', '(']).next().unwrap_or_default().to_owned();
            context! {
                at => e.at.to_string(),
                kind => name,
                user => e.user_id.map(|u| u.to_string()).unwrap_or_default(),
            }
        })
        .collect();
    page::render(
        portal,
        status,
        "admin_users.html",
        context! {
            csrf => admin.csrf.clone(),
            notice,
            users => rows,
            events,
            form => context! {
                email => form.email.clone(),
                display_name => form.display_name.clone(),
                redirect => form.redirect.clone(),
                message => form.message.clone(),
                language => form.language.clone(),
            },
            errors,
            bulk => bulk_results.map(|rows| rows.into_iter().map(|r| context! {
                line => r.line, email => r.email, ok => r.ok, outcome => r.outcome,
            }).collect::<Vec<_>>()),
            max_csv_kib => bulk::MAX_CSV_BYTES / 1024,
            max_rows => bulk::MAX_ROWS,
        },
    )
}

/// `GET /admin`: the users, the invite forms and the latest audit events.
async fn users_page(State(portal): State<Shared>, admin: Admin, Query(q): Query<Notice>) -> Response {
    render_users(
        &portal,
        &admin,
        StatusCode::OK,
        notice_text(&q.done),
        &InviteForm::default(),
        BTreeMap::new(),
        None,
    )
    .await
}

/// The redirect URL a form's `redirect` value names.
fn redirect_url(portal: &Shared, value: &str) -> String {
    match value {
        "payroll" => portal.link("payroll"),
        _ => portal.link("app"),
    }
}

/// The field of the invite form an error belongs to.
fn invite_error_field(e: &Error) -> &'static str {
    let text = e.to_string();
    if text.contains("displayName") || text.contains("display name") {
        "display_name"
    } else if text.contains("customizedMessageBody") || text.contains("message") && !text.contains("address")
    {
        "message"
    } else {
        "email"
    }
}

/// Builds the invitation request of one row or form.
pub fn invitation_request(
    email: &str,
    display_name: &str,
    redirect: String,
    message: &str,
    language: &str,
    send: bool,
) -> InvitationRequest {
    let mut request = InvitationRequest::new(email.trim(), redirect);
    request.send_invitation_message = send;
    let name = display_name.trim();
    if !name.is_empty() {
        request.invited_user_display_name = Some(name.to_owned());
    }
    let message = message.trim();
    let language = language.trim();
    if !message.is_empty() || !language.is_empty() {
        let mut info = guestpass::directory::InvitedUserMessageInfo::default();
        if !message.is_empty() {
            info.customized_message_body = Some(message.to_owned());
        }
        if !language.is_empty() {
            info.message_language = Some(language.to_owned());
        }
        request.invited_user_message_info = Some(info);
    }
    request
}

/// `POST /admin/invite`: one invitation.
async fn invite(
    State(portal): State<Shared>,
    admin: Admin,
    headers: HeaderMap,
    form: Result<Form<InviteForm>, FormRejection>,
) -> Response {
    let form = match checked(&portal, &admin, &headers, form, MAX_FORM_BYTES) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let request = invitation_request(
        &form.email,
        &form.display_name,
        redirect_url(&portal, &form.redirect),
        &form.message,
        &form.language,
        true,
    );
    match portal.live().gp.invite(&admin.inviter(), request).await {
        Ok(_) => see_other(&portal, "admin?done=invited"),
        Err(e) => {
            let errors = BTreeMap::from([(invite_error_field(&e), e.to_string())]);
            render_users(&portal, &admin, e.status(), None, &form, errors, None).await
        }
    }
}

#[derive(Deserialize)]
struct BulkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    csv: String,
}

/// `POST /admin/bulk`: invitations from CSV, one result per row.
async fn bulk_invite(
    State(portal): State<Shared>,
    admin: Admin,
    headers: HeaderMap,
    form: Result<Form<BulkForm>, FormRejection>,
) -> Response {
    let form = match checked(&portal, &admin, &headers, form, bulk::MAX_CSV_BYTES) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let rows = match bulk::parse(&form.csv) {
        Ok(rows) => rows,
        Err(e) => {
            let errors = BTreeMap::from([("csv", e.to_string())]);
            return render_users(
                &portal,
                &admin,
                StatusCode::BAD_REQUEST,
                None,
                &InviteForm::default(),
                errors,
                None,
            )
            .await;
        }
    };
    let gp = portal.live().gp;
    let inviter = admin.inviter();
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        let redirect = if row.redirect_url.is_empty() {
            portal.link("app")
        } else {
            row.redirect_url.clone()
        };
        let request = invitation_request(
            &row.email,
            &row.display_name,
            redirect,
            &row.message,
            "",
            row.send,
        );
        let outcome = gp.invite(&inviter, request).await;
        results.push(bulk::RowResult {
            line: row.line,
            email: row.email,
            ok: outcome.is_ok(),
            outcome: match outcome {
                Ok(inv) => format!("invited ({})", inv.id),
                Err(e) => e.to_string(),
            },
        });
    }
    render_users(
        &portal,
        &admin,
        StatusCode::OK,
        None,
        &InviteForm::default(),
        BTreeMap::new(),
        Some(results),
    )
    .await
}

/// `POST /admin/users/{id}/{action}`: resend, revoke or reset.
async fn user_action(
    State(portal): State<Shared>,
    admin: Admin,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let form = match checked(&portal, &admin, &headers, form, MAX_FORM_BYTES) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let Ok(id) = id.parse::<Id>() else {
        return page::message(
            &portal,
            StatusCode::BAD_REQUEST,
            "Refused",
            "That is not a user id.",
        );
    };
    let gp = portal.live().gp;
    let inviter = admin.inviter();
    let result = match action.as_str() {
        "resend" => gp.resend(&inviter, id).await.map(drop),
        "revoke" => gp.revoke(&inviter, id).await,
        "reset" => reset(&portal, &gp, &inviter, id).await,
        "delete" if form.confirm != "yes" => return confirm_delete(&portal, &admin, &gp, id).await,
        "delete" => gp.delete_user(&inviter, id).await,
        _ => {
            return page::message(
                &portal,
                StatusCode::NOT_FOUND,
                "Unknown action",
                "The action must be resend, revoke, reset or delete.",
            );
        }
    };
    match result {
        Ok(()) => see_other(&portal, &format!("admin?done={action}")),
        Err(e) => page::message(&portal, e.status(), "The action failed", &e.to_string()),
    }
}

/// The page that asks before a user is deleted: deleting removes the
/// user, its identities and its pending invitation for good, so the first
/// press of the button only shows what would go.
async fn confirm_delete(portal: &Shared, admin: &Admin, gp: &guestpass::GuestPass, id: Id) -> Response {
    match gp.user(id).await {
        Ok(user) => page::render(
            portal,
            StatusCode::OK,
            "admin_confirm.html",
            context! { csrf => admin.csrf.clone(), user => user_row(&user) },
        ),
        Err(e) => page::message(portal, e.status(), "The action failed", &e.to_string()),
    }
}

/// Resets `id`'s redemption: a new invitation to the user's address.
async fn reset(portal: &Shared, gp: &guestpass::GuestPass, inviter: &Inviter, id: Id) -> Result<(), Error> {
    let user = gp.user(id).await?;
    let mail = user.mail.as_ref().map(ToString::to_string).unwrap_or_default();
    let mut request = InvitationRequest::new(mail, portal.link("app"));
    request.reset_redemption = true;
    request.invited_user = Some(ObjectRef { id });
    gp.invite(inviter, request).await.map(drop)
}

/// The settings page.
fn render_settings(
    portal: &Shared,
    admin: &Admin,
    status: StatusCode,
    settings: &Settings,
    error: Option<&SettingsError>,
    notice: Option<&str>,
) -> Response {
    page::render(
        portal,
        status,
        "admin_settings.html",
        context! {
            csrf => admin.csrf.clone(),
            settings => context! {
                sign_up => settings.sign_up.clone(),
                collaboration => settings.collaboration.clone(),
                conditional_access => settings.conditional_access.clone(),
                cross_tenant => settings.cross_tenant.clone(),
            },
            error_field => error.map(|e| e.field),
            error => error.map(|e| e.message.clone()),
            notice,
        },
    )
}

/// `GET /admin/settings`.
async fn settings_page(State(portal): State<Shared>, admin: Admin, Query(q): Query<Notice>) -> Response {
    let settings = portal.live().settings;
    render_settings(
        &portal,
        &admin,
        StatusCode::OK,
        &settings,
        None,
        notice_text(&q.done),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
struct SettingsForm {
    #[serde(default)]
    csrf: String,
    sign_up: String,
    collaboration: String,
    conditional_access: String,
    cross_tenant: String,
    #[serde(default)]
    reset: String,
}

/// `POST /admin/settings`: builds a service from the documents; saves and
/// switches to it only if it builds.
async fn save_settings(
    State(portal): State<Shared>,
    admin: Admin,
    headers: HeaderMap,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Response {
    let form = match checked(&portal, &admin, &headers, form, MAX_FORM_BYTES) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let settings = if form.reset == "defaults" {
        Settings::default()
    } else {
        Settings {
            sign_up: form.sign_up,
            collaboration: form.collaboration,
            conditional_access: form.conditional_access,
            cross_tenant: form.cross_tenant,
        }
    };
    match portal.replace_settings(settings.clone()) {
        Ok(()) => see_other(&portal, "admin/settings?done=settings"),
        Err(e) => render_settings(
            &portal,
            &admin,
            StatusCode::BAD_REQUEST,
            &settings,
            Some(&e),
            None,
        ),
    }
}

#[derive(Deserialize, Default)]
struct WhatIfQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    ip: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    mfa: Option<String>,
    #[serde(default)]
    terms: Option<String>,
}

/// `GET /admin/what-if`: explains conditional access for a chosen user,
/// application and client; changes nothing.
async fn what_if(State(portal): State<Shared>, _admin: Admin, Query(q): Query<WhatIfQuery>) -> Response {
    let live = portal.live();
    let base = portal.deps.base.as_str();
    let users = live.gp.users().await.unwrap_or_default();
    let apps: Vec<(String, String)> = live
        .settings
        .sign_up(base)
        .map(|c| {
            c.applications()
                .iter()
                .map(|a| (a.client_id.clone(), a.display_name.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut apps = apps;
    apps.push(("invitations".to_owned(), "Invitation redemption".to_owned()));
    let mut error = None;
    let mut explanation = None;
    if !q.user.is_empty() {
        match explain(&live.settings, base, &users, &q) {
            Ok(text) => explanation = Some(text),
            Err(e) => error = Some(e),
        }
    }
    page::render(
        &portal,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "admin_what_if.html",
        context! {
            users => users.iter().map(|u| context! {
                id => u.id.to_string(),
                label => format!("{} ({})", u.display_name.clone().unwrap_or_default(), u.user_principal_name),
            }).collect::<Vec<_>>(),
            apps => apps.iter().map(|(id, name)| context! { id, name }).collect::<Vec<_>>(),
            q => context! {
                user => q.user.clone(),
                app => if q.app.is_empty() { PAYROLL_APP.to_owned() } else { q.app.clone() },
                ip => if q.ip.is_empty() { "192.0.2.10".to_owned() } else { q.ip.clone() },
                client => q.client.clone(),
                mfa => q.mfa.is_some(),
                terms => q.terms.is_some(),
            },
            explanation,
            error,
        },
    )
}

fn explain(settings: &Settings, base: &str, users: &[User], q: &WhatIfQuery) -> Result<String, String> {
    let user = users
        .iter()
        .find(|u| u.id.to_string() == q.user)
        .ok_or_else(|| "user: choose a user of the directory".to_owned())?;
    let ip =
        q.ip.trim()
            .parse::<std::net::IpAddr>()
            .map_err(|_| "ip: not an IPv4 or IPv6 address".to_owned())?;
    let client_app = match q.client.as_str() {
        "" | "browser" => ClientAppType::Browser,
        "mobileAppsAndDesktopClients" => ClientAppType::MobileAppsAndDesktopClients,
        "exchangeActiveSync" => ClientAppType::ExchangeActiveSync,
        "other" => ClientAppType::Other,
        _ => return Err("client: unknown client app type".to_owned()),
    };
    let policies = settings
        .policies(base)
        .and_then(|p| {
            p.compile().map_err(|e| SettingsError {
                field: "conditionalAccess",
                message: e.to_string(),
            })
        })
        .map_err(|e| e.to_string())?;
    let user_id = user.id.to_string();
    let accepted: Vec<&str> = if q.terms.is_some() {
        policies.agreement_ids().collect()
    } else {
        Vec::new()
    };
    let signin = SignIn {
        user_id: &user_id,
        groups: &[],
        user_kind: match user.user_type {
            UserType::Guest => UserKind::B2bCollaborationGuest,
            UserType::Member => UserKind::Member,
        },
        home_tenant: None,
        application_id: if q.app.is_empty() { PAYROLL_APP } else { &q.app },
        client_app,
        ip,
        satisfied: Satisfied {
            mfa: q.mfa.is_some(),
            terms_accepted: &accepted,
            ..Satisfied::default()
        },
    };
    Ok(policies.explain(&signin).to_string())
}

/// `GET /admin/metrics`: the service's counters in Prometheus' text format.
async fn metrics(State(portal): State<Shared>, _admin: Admin) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        portal.live().gp.metrics().render_prometheus(),
    )
        .into_response()
}
