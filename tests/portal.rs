//! The demo portal (`examples/portal`), driven in process: admin sign-in
//! with the one-time link, invitations single and from CSV, the user
//! actions, settings, What-If and the dev mailbox, and the bad input each
//! of them must refuse without changing anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

#[path = "../examples/portal/app/mod.rs"]
mod app;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use guestpass::directory::ExternalUserState;
use tower::ServiceExt as _;

const BASE: &str = "http://127.0.0.1:8080/";
const ORIGIN: &str = "http://127.0.0.1:8080";
const FORM: &str = "application/x-www-form-urlencoded";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    /// The value of the first hidden field called `name`.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} field in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }
}

struct Portal {
    app: Router,
    prepared: app::Prepared,
    cookies: BTreeMap<String, String>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "guestpass-portal-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

impl Portal {
    async fn new() -> Self {
        let dir = temp_dir();
        let options = app::Options {
            database: app::Database::Memory,
            data_dir: dir.0.clone(),
            ..app::Options::default()
        };
        let prepared = app::prepare(&options, url::Url::parse(BASE).unwrap())
            .await
            .unwrap();
        let app = app::routes(prepared.portal.clone());
        Self {
            app,
            prepared,
            cookies: BTreeMap::new(),
            _dir: dir,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        for set in headers.get_all(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let bytes = to_bytes(res.into_body(), 4 << 20).await.unwrap();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        let all = format!("{headers:?}{body}");
        assert!(!all.contains("evil.example"), "the Host header leaked: {all}");
        assert!(
            headers.contains_key(header::CONTENT_SECURITY_POLICY),
            "no CSP on {status}"
        );
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, "evil.example")
            .header("x-forwarded-host", "evil.example")
            .header(header::COOKIE, self.cookie_header())
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    async fn post_from(&mut self, path: &str, origin: &str, body: String) -> Answer {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, "evil.example")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, FORM)
            .header(header::COOKIE, self.cookie_header())
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        self.post_from(path, ORIGIN, encode(pairs)).await
    }

    /// Signs in with the printed link; the admin page's CSRF token.
    async fn sign_in(&mut self) -> String {
        let link = self.prepared.admin_link.expose().to_owned();
        let path = link.strip_prefix(ORIGIN).unwrap().to_owned();
        let page = self.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let code = page.hidden("code");
        let res = self.post("/admin/sign-in", &[("code", &code)]).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        assert_eq!(res.location(), format!("{BASE}admin"));
        assert!(self.cookies.contains_key("__Host-gp-admin"));
        let admin = self.get("/admin").await;
        assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
        admin.hidden("csrf")
    }

    fn gp(&self) -> guestpass::GuestPass {
        self.prepared.portal.live().gp
    }

    fn outbox(&self) -> std::sync::Arc<guestpass::mail::Outbox> {
        self.prepared.portal.deps.outbox.clone().unwrap()
    }

    async fn users(&self) -> Vec<guestpass::directory::User> {
        self.gp().users().await.unwrap()
    }

    /// The id of the user whose mail is `mail`.
    async fn id_of(&self, mail: &str) -> guestpass::id::Id {
        self.users()
            .await
            .iter()
            .find(|u| u.mail.as_ref().is_some_and(|m| m.to_string() == mail))
            .unwrap_or_else(|| panic!("no user with mail {mail}"))
            .id
    }
}

#[tokio::test]
async fn the_sign_in_link_works_once_and_admin_pages_need_it() {
    let mut p = Portal::new().await;
    for path in ["/admin", "/admin/settings", "/admin/what-if", "/admin/metrics"] {
        let page = p.get(path).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(page.body.contains("one-time sign-in link"));
    }
    // Opening the link changes nothing: it can be opened twice.
    let link = p.prepared.admin_link.expose().to_owned();
    let path = link.strip_prefix(ORIGIN).unwrap().to_owned();
    assert_eq!(p.get(&path).await.status, StatusCode::OK);
    let _csrf = p.sign_in().await;
    // The code is used up.
    let code = link.split("code=").nth(1).unwrap().to_owned();
    let mut other = Portal {
        app: p.app.clone(),
        prepared: app::Prepared {
            portal: p.prepared.portal.clone(),
            admin_link: p.prepared.admin_link.clone(),
            api_token: p.prepared.api_token.clone(),
        },
        cookies: BTreeMap::new(),
        _dir: temp_dir(),
    };
    let again = other.post("/admin/sign-in", &[("code", &code)]).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(other.cookies.is_empty());
    // A forged code, and a foreign Origin, are refused too.
    let fresh = p
        .prepared
        .portal
        .admin
        .new_link(&url::Url::parse(BASE).unwrap())
        .unwrap();
    let fresh_code = fresh.expose().split("code=").nth(1).unwrap().to_owned();
    let forged = other.post("/admin/sign-in", &[("code", "AAAA")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let foreign = other
        .post_from(
            "/admin/sign-in",
            "https://evil.test",
            encode(&[("code", &fresh_code)]),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    // The refusal on a foreign Origin did not use the code up.
    assert_eq!(
        other
            .post("/admin/sign-in", &[("code", &fresh_code)])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    // A forged session cookie is no session.
    let mut forged_session = Portal::new().await;
    forged_session.cookies.insert(
        "__Host-gp-admin".to_owned(),
        "eyJhbGciOiJub25lIn0.e30.".to_owned(),
    );
    assert_eq!(
        forged_session.get("/admin").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_admin_invites_and_the_guest_mail_links_to_the_redemption_page() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    let res = p
        .post(
            "/admin/invite",
            &[
                ("csrf", &csrf),
                ("email", "ada@fabrikam.example"),
                ("display_name", "Ada"),
                ("redirect", "app"),
                ("language", "de-DE"),
                ("message", "Willkommen"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let page = p.get(res.location().strip_prefix(ORIGIN).unwrap()).await;
    assert!(page.body.contains("The invitation was sent."));
    assert!(page.body.contains("ada@fabrikam.example"));
    assert!(page.body.contains("PendingAcceptance"));
    let users = p.users().await;
    assert_eq!(users.len(), 1);

    let mailbox = p.get("/dev/mailbox").await;
    assert!(mailbox.body.contains("ada@fabrikam.example"));
    let mail = p.get("/dev/mailbox/0").await;
    assert_eq!(mail.status, StatusCode::OK);
    assert!(mail.body.contains("lang=\"de-DE\""));
    let body = mail.body.replace("&#x2f;", "/");
    let link_start = body.find(&format!("<a href=\"{BASE}redeem?ticket=")).unwrap();
    let href_start = link_start + "<a href=\"".len();
    let href_end = body[href_start..].find('"').unwrap() + href_start;
    let link = body[href_start..href_end].replace("&amp;", "&");
    let redeem = p.get(link.strip_prefix(ORIGIN).unwrap()).await;
    assert_eq!(redeem.status, StatusCode::OK, "{}", redeem.body);
    assert!(redeem.body.contains("Contoso"));
    assert!(p.get("/dev/mailbox/99").await.status == StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bad_invitation_shows_the_error_next_to_the_field_and_creates_nothing() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    let res = p
        .post(
            "/admin/invite",
            &[("csrf", &csrf), ("email", "not an address"), ("redirect", "app")],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(res.body.contains("id=\"email-error\""), "{}", res.body);
    assert!(
        res.body
            .contains("aria-invalid=\"true\" aria-describedby=\"email-error\"")
    );
    assert!(
        res.body.contains("value=\"not an address\""),
        "the typed value is kept"
    );
    // The collaboration settings deny blocked.example.
    let denied = p
        .post(
            "/admin/invite",
            &[
                ("csrf", &csrf),
                ("email", "eve@blocked.example"),
                ("redirect", "app"),
            ],
        )
        .await;
    assert!(denied.status.is_client_error(), "{}", denied.status);
    assert!(p.users().await.is_empty());
    assert!(p.outbox().messages().is_empty());
}

#[tokio::test]
async fn forms_without_the_session_csrf_token_or_from_elsewhere_change_nothing() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    let invite = |csrf: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("email".to_owned(), "ada@fabrikam.example".to_owned()),
        ]
    };
    for token in ["", "forged", &csrf[..csrf.len() - 1]] {
        let pairs = invite(token);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())))
            .finish();
        let res = p.post_from("/admin/invite", ORIGIN, body).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "token {token:?}");
    }
    let body = encode(&[("csrf", &csrf), ("email", "ada@fabrikam.example")]);
    let res = p.post_from("/admin/invite", "https://evil.test", body).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(p.users().await.is_empty());
    // Another session's token is refused as well.
    let mut other = Portal::new().await;
    let other_csrf = other.sign_in().await;
    let res = p
        .post(
            "/admin/invite",
            &[("csrf", &other_csrf), ("email", "ada@fabrikam.example")],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(p.users().await.is_empty());
}

#[tokio::test]
async fn bulk_invitations_report_each_row_and_refuse_bad_files_whole() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    let csv = "Email address to invite,Display name,Redirection url\n\
               ada@fabrikam.example,Ada,\n\
               not-an-address,Nobody,\n\
               bob@fabrikam.example,\"Bob, the builder\",https://evil.test/\n\
               cy@fabrikam.example,Cy,http://127.0.0.1:8080/payroll\n";
    let res = p.post("/admin/bulk", &[("csrf", &csrf), ("csv", csv)]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("id=\"bulk-results\""));
    assert_eq!(res.body.matches("class=\"ok\"").count(), 2, "{}", res.body);
    assert_eq!(res.body.matches("class=\"failed\"").count(), 2, "{}", res.body);
    let mut mails: Vec<String> = p
        .users()
        .await
        .iter()
        .filter_map(|u| u.mail.as_ref().map(ToString::to_string))
        .collect();
    mails.sort();
    assert_eq!(mails, ["ada@fabrikam.example", "cy@fabrikam.example"]);

    // A malformed file, too many rows, or too many bytes: nothing invited.
    let before = p.users().await.len();
    let bad = p
        .post(
            "/admin/bulk",
            &[("csrf", &csrf), ("csv", "email\n\"dan@fabrikam.example\n")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"csv-error\""), "{}", bad.body);
    assert!(bad.body.contains("line 2"));
    let many = format!(
        "email\n{}",
        (0..=app::bulk::MAX_ROWS)
            .map(|n| format!("g{n}@fabrikam.example\n"))
            .collect::<String>()
    );
    let res = p.post("/admin/bulk", &[("csrf", &csrf), ("csv", &many)]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("more than 500 rows"), "{}", res.body);
    let huge = format!("email\n{}", "x".repeat(app::bulk::MAX_CSV_BYTES + 8192));
    let res = p.post("/admin/bulk", &[("csrf", &csrf), ("csv", &huge)]).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert!(res.body.contains("KiB"), "{}", res.body);
    assert_eq!(p.users().await.len(), before);
}

#[tokio::test]
async fn resend_revoke_and_reset() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    for email in ["ada@fabrikam.example", "bob@fabrikam.example"] {
        let res = p
            .post("/admin/invite", &[("csrf", &csrf), ("email", email)])
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    }
    let ada = p.id_of("ada@fabrikam.example").await;
    let bob = p.id_of("bob@fabrikam.example").await;

    let sent = p.outbox().messages().len();
    let res = p
        .post(&format!("/admin/users/{ada}/resend"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(p.outbox().messages().len(), sent + 1);

    let res = p
        .post(&format!("/admin/users/{bob}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);

    // The first link of ada's stops working when her redemption is reset.
    let first = p.outbox().messages()[0].clone();
    let old_link = first.link_starting_with(BASE).unwrap().to_owned();
    let sent = p.outbox().messages().len();
    let res = p
        .post(&format!("/admin/users/{ada}/reset"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(p.outbox().messages().len(), sent + 1);
    let old = p.get(old_link.strip_prefix(ORIGIN).unwrap()).await;
    assert!(old.status.is_client_error(), "{}", old.status);

    // Unknown actions and ids, and a forged token, change nothing.
    assert_eq!(
        p.post(&format!("/admin/users/{bob}/promote"), &[("csrf", &csrf)])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        p.post("/admin/users/not-an-id/resend", &[("csrf", &csrf)])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let sent = p.outbox().messages().len();
    assert_eq!(
        p.post(&format!("/admin/users/{ada}/resend"), &[("csrf", "x")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(p.outbox().messages().len(), sent);
}

#[tokio::test]
async fn delete_asks_first_then_removes_the_user_and_its_link() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    let res = p
        .post(
            "/admin/invite",
            &[("csrf", &csrf), ("email", "cy@fabrikam.example")],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let cy = p.id_of("cy@fabrikam.example").await;
    let link = p.outbox().messages()[0]
        .link_starting_with(BASE)
        .unwrap()
        .to_owned();
    let before = p.users().await.len();

    // The first press only asks; nothing is gone yet.
    let ask = p
        .post(&format!("/admin/users/{cy}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(ask.status, StatusCode::OK, "{}", ask.body);
    assert!(ask.body.contains("cy@fabrikam.example"), "{}", ask.body);
    assert!(
        ask.body.contains("name=\"confirm\" value=\"yes\""),
        "{}",
        ask.body
    );
    assert_eq!(p.users().await.len(), before);

    // A forged token with the confirmation deletes nothing either.
    let forged = p
        .post(
            &format!("/admin/users/{cy}/delete"),
            &[("csrf", "forged"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(p.users().await.len(), before);

    let done = p
        .post(
            &format!("/admin/users/{cy}/delete"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(p.users().await.iter().all(|u| u.id != cy));
    let page = p.get("/admin?done=delete").await;
    assert!(page.body.contains("The user was deleted."), "{}", page.body);
    assert!(
        !page.body.contains(&format!("data-user=\"{cy}\"")),
        "{}",
        page.body
    );

    // The invitation link of the deleted user no longer redeems, and a
    // second delete names the missing user.
    let old = p.get(link.strip_prefix(ORIGIN).unwrap()).await;
    assert!(old.status.is_client_error(), "{}", old.status);
    let again = p
        .post(
            &format!("/admin/users/{cy}/delete"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
}

#[tokio::test]
async fn settings_that_do_not_build_are_refused_and_the_old_ones_stay() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    let page = p.get("/admin/settings").await;
    assert_eq!(page.status, StatusCode::OK);
    let current = p.prepared.portal.live().settings;
    let bad = p
        .post(
            "/admin/settings",
            &[
                ("csrf", &csrf),
                ("sign_up", &current.sign_up),
                (
                    "collaboration",
                    "{\"allowInvitesFrom\": \"everyone\", \"colour\": 1}",
                ),
                ("conditional_access", &current.conditional_access),
                ("cross_tenant", &current.cross_tenant),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("id=\"collaboration-error\""), "{}", bad.body);
    assert_eq!(p.prepared.portal.live().settings, current);

    // A working change takes effect for the next invitation.
    let collaboration = current
        .collaboration
        .replace("blocked.example", "fabrikam.example");
    let ok = p
        .post(
            "/admin/settings",
            &[
                ("csrf", &csrf),
                ("sign_up", &current.sign_up),
                ("collaboration", &collaboration),
                ("conditional_access", &current.conditional_access),
                ("cross_tenant", &current.cross_tenant),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let denied = p
        .post(
            "/admin/invite",
            &[("csrf", &csrf), ("email", "ada@fabrikam.example")],
        )
        .await;
    assert!(denied.status.is_client_error(), "{}", denied.body);
    let allowed = p
        .post(
            "/admin/invite",
            &[("csrf", &csrf), ("email", "eve@blocked.example")],
        )
        .await;
    assert_eq!(allowed.status, StatusCode::SEE_OTHER, "{}", allowed.body);
    // Restoring the defaults.
    let reset = p
        .post(
            "/admin/settings",
            &[
                ("csrf", &csrf),
                ("sign_up", ""),
                ("collaboration", ""),
                ("conditional_access", ""),
                ("cross_tenant", ""),
                ("reset", "defaults"),
            ],
        )
        .await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", reset.body);
    assert_eq!(p.prepared.portal.live().settings, app::Settings::default());
}

#[tokio::test]
async fn what_if_explains_the_payroll_mfa_policy() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    p.post(
        "/admin/invite",
        &[("csrf", &csrf), ("email", "ada@fabrikam.example")],
    )
    .await;
    let ada = p.users().await[0].id;
    let page = p
        .get(&format!(
            "/admin/what-if?user={ada}&app=contoso-payroll&ip=192.0.2.10&client=browser"
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"explanation\""), "{}", page.body);
    assert!(page.body.contains("Require MFA for payroll"), "{}", page.body);
    let lab = p
        .get(&format!(
            "/admin/what-if?user={ada}&app=contoso-demo&ip=198.51.100.7&mfa=on"
        ))
        .await;
    assert!(lab.body.contains("Block the lab network"), "{}", lab.body);
    let bad = p.get(&format!("/admin/what-if?user={ada}&ip=nowhere")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not an IPv4 or IPv6 address"));
}

#[tokio::test]
async fn signing_out_ends_the_session_and_its_cookie_cannot_change_anything() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    let cookie = p.cookies["__Host-gp-admin"].clone();

    // The page session is no Graph API token, and the API token is no
    // page session.
    let api = |token: &str| {
        Request::builder()
            .method(Method::GET)
            .uri("/v1.0/users")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let read = p.send(api(&cookie)).await;
    assert_eq!(read.status, StatusCode::UNAUTHORIZED, "{}", read.body);
    assert!(read.body.contains("InvalidAuthenticationToken"), "{}", read.body);
    let api_token = p.prepared.api_token.expose().to_owned();
    assert_eq!(p.send(api(&api_token)).await.status, StatusCode::OK);
    let mut with_api_token = p.cookies.clone();
    with_api_token.insert("__Host-gp-admin".to_owned(), api_token);
    std::mem::swap(&mut p.cookies, &mut with_api_token);
    assert_eq!(p.get("/admin").await.status, StatusCode::UNAUTHORIZED);
    std::mem::swap(&mut p.cookies, &mut with_api_token);

    let out = p.post("/admin/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert!(!p.cookies.contains_key("__Host-gp-admin"));
    // A copy of the cookie kept from before opens nothing now.
    p.cookies.insert("__Host-gp-admin".to_owned(), cookie.clone());
    assert_eq!(p.get("/admin").await.status, StatusCode::UNAUTHORIZED);
    let res = p
        .post(
            "/admin/invite",
            &[("csrf", &csrf), ("email", "ada@fabrikam.example")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(p.outbox().messages().is_empty());

    // Another sign-in is a new session, unaffected.
    p.cookies.clear();
    let link = p
        .prepared
        .portal
        .admin
        .new_link(&url::Url::parse(BASE).unwrap())
        .unwrap();
    p.prepared.admin_link = link;
    let fresh = p.sign_in().await;
    assert_ne!(fresh, csrf);
    assert_ne!(p.cookies["__Host-gp-admin"], cookie);
}

#[tokio::test]
async fn the_api_token_works_on_the_graph_api() {
    let mut p = Portal::new().await;
    let token = p.prepared.api_token.expose().to_owned();
    let body = r#"{"invitedUserEmailAddress": "ada@fabrikam.example",
                   "inviteRedirectUrl": "http://127.0.0.1:8080/app",
                   "sendInvitationMessage": true}"#;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1.0/invitations")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let res = p.send(req).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let json: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    assert_eq!(json["invitedUser"]["id"], p.users().await[0].id.to_string());
    assert_eq!(
        p.users().await[0].external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
}

#[tokio::test]
async fn metrics_are_served_to_the_admin() {
    let mut p = Portal::new().await;
    let csrf = p.sign_in().await;
    p.post(
        "/admin/invite",
        &[("csrf", &csrf), ("email", "ada@fabrikam.example")],
    )
    .await;
    let m = p.get("/admin/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.body.contains("# TYPE"), "{}", m.body);
}

#[test]
fn options_parse_and_refuse_with_names() {
    let parse = |args: &[&str]| app::Options::parse(args.iter().map(|s| (*s).to_owned()));
    assert!(parse(&["--help"]).unwrap().is_none());
    let o = parse(&["--database", "memory", "--listen=127.0.0.1:0"])
        .unwrap()
        .unwrap();
    assert_eq!(o.database, app::Database::Memory);
    assert_eq!(o.listen.port(), 0);
    let o = parse(&["--database", "postgres://postgres@127.0.0.1/postgres"])
        .unwrap()
        .unwrap();
    assert!(matches!(o.database, app::Database::Postgres(_)));
    assert!(
        parse(&["--database", "mysql://x"])
            .unwrap_err()
            .contains("--database")
    );
    assert!(parse(&["--listen", "here"]).unwrap_err().contains("--listen"));
    assert!(parse(&["--bogus"]).unwrap_err().contains("--bogus"));
    assert!(parse(&["--smtp"]).unwrap_err().contains("needs a value"));

    // The dev mailbox is never served where others can reach it.
    let open = parse(&["--listen", "0.0.0.0:8080"]).unwrap_err();
    assert!(
        open.contains("--listen 0.0.0.0:8080") && open.contains("--smtp"),
        "{open}"
    );
    let proxied = parse(&["--base-url", "https://portal.contoso.example/"]).unwrap_err();
    assert!(proxied.contains("--base-url"), "{proxied}");
    assert!(parse(&["--base-url", "http://localhost:8080/"]).is_ok());
    let o = parse(&["--listen", "0.0.0.0:8080", "--smtp", "127.0.0.1:2525"])
        .unwrap()
        .unwrap();
    assert_eq!(o.mail, app::MailChoice::Smtp("127.0.0.1:2525".to_owned()));
}
