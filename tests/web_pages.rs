//! The redemption pages of the axum adapter (`guestpass::web::pages`),
//! driven in process with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use guestpass::directory::{ExternalUserState, MemoryStore};
use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
use guestpass::graph::auth::AdminTokenIssuer;
use guestpass::id::Id;
use guestpass::keys::SigningKey;
use guestpass::mail::Outbox;
use guestpass::random::SeededRandom;
use guestpass::web::{self, WebConfig};
use guestpass::{GuestPass, InvitationRequest, Inviter, RedemptionStep};
use tower::ServiceExt as _;

const BASE: &str = "https://guests.contoso.example/";
const ORIGIN: &str = "https://guests.contoso.example";
const REDIRECT: &str = "https://app.contoso.example/";
const ALICE: &str = "alice@fabrikam.example";
const FORM: &str = "application/x-www-form-urlencoded";

struct Fixture {
    app: Router,
    gp: GuestPass,
    outbox: Arc<Outbox>,
}

fn fixture() -> Fixture {
    fixture_with(|c| c)
}

fn fixture_with(web: impl FnOnce(WebConfig) -> WebConfig) -> Fixture {
    fixture_over(web, |b| b)
}

fn fixture_over(
    web: impl FnOnce(WebConfig) -> WebConfig,
    service: impl FnOnce(guestpass::GuestPassBuilder) -> guestpass::GuestPassBuilder,
) -> Fixture {
    let outbox = Arc::new(Outbox::new());
    let builder = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url(BASE)
        .signing_key(SigningKey::new("k1", [42u8; 32]).unwrap())
        .redirect_url(REDIRECT)
        .store(Arc::new(MemoryStore::new()))
        .mail(outbox.clone());
    let gp = service(builder).build().unwrap();
    let rng = SeededRandom::new(7);
    let keys = TokenKeys::new(TokenSigningKey::generate("admin-1", TokenAlgorithm::Es256, &rng).unwrap());
    let issuer = AdminTokenIssuer::new(&keys, gp.config().public_base_url()).unwrap();
    let app = web::router(gp.clone(), web(WebConfig::new(issuer)));
    Fixture { app, gp, outbox }
}

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

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("no csrf field") + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }
}

impl Fixture {
    async fn invite(&self) -> (Id, String) {
        self.invite_named(None).await
    }

    async fn invite_named(&self, name: Option<&str>) -> (Id, String) {
        let mut req = InvitationRequest::new(ALICE, REDIRECT);
        req.invited_user_display_name = name.map(str::to_owned);
        let inv = self.gp.invite(&Inviter::admin(None), req).await.unwrap();
        let link = inv.invite_redeem_url.unwrap();
        let ticket = link.expose().split("ticket=").nth(1).unwrap().to_owned();
        (inv.invited_user.id, ticket)
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        let all = format!("{headers:?}{body}");
        assert!(!all.contains("evil.example"), "the Host header leaked: {all}");
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>, lang: Option<&str>) -> Answer {
        let mut b = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, "evil.example")
            .header("x-forwarded-host", "evil.example");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        if let Some(l) = lang {
            b = b.header(header::ACCEPT_LANGUAGE, l);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, origin: Option<&str>, form: &str) -> Answer {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, "evil.example")
            .header("x-forwarded-host", "evil.example")
            .header(header::CONTENT_TYPE, FORM);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        self.send(b.body(Body::from(form.to_owned())).unwrap()).await
    }

    async fn state_of(&self, user: Id) -> Option<ExternalUserState> {
        self.gp.user(user).await.unwrap().external_user_state
    }

    fn passcode(&self) -> String {
        self.outbox.last_to(ALICE).unwrap().code(8).unwrap().to_owned()
    }

    /// `GET /redeem` then `POST /redeem`: the cookie header to send back.
    async fn start(&self, ticket: &str) -> String {
        let page = self.get(&format!("/redeem?ticket={ticket}"), None, None).await;
        assert_eq!(page.status, StatusCode::OK);
        let csrf = page.csrf();
        let res = self
            .post(
                "/redeem",
                None,
                Some(ORIGIN),
                &format!("ticket={ticket}&csrf={csrf}"),
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        assert_eq!(res.location(), format!("{BASE}redeem/step"));
        let set = res.headers[header::SET_COOKIE].to_str().unwrap();
        let pair = set.split(';').next().unwrap().to_owned();
        assert!(pair.starts_with("__Host-gp-redeem="), "{set}");
        pair
    }
}

fn assert_page_headers(a: &Answer) {
    assert_eq!(a.headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(a.headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(a.headers.contains_key(header::CONTENT_SECURITY_POLICY));
}

#[tokio::test]
async fn get_shows_the_invitation_and_changes_nothing() {
    let f = fixture();
    let (user, ticket) = f.invite().await;
    let sent = f.outbox.messages().len();
    for _ in 0..3 {
        let page = f.get(&format!("/redeem?ticket={ticket}"), None, None).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_page_headers(&page);
        assert!(page.body.contains("<html lang=\"en-US\">"), "{}", page.body);
        assert!(page.body.contains("Contoso"));
        assert!(page.body.contains(ALICE));
        assert!(page.body.contains("method=\"post\""));
        assert!(page.body.contains(&format!("name=\"ticket\" value=\"{ticket}\"")));
        assert!(!page.csrf().is_empty());
        assert!(!page.headers.contains_key(header::SET_COOKIE));
    }
    assert_eq!(f.outbox.messages().len(), sent, "a GET sent a passcode");
    assert_eq!(f.state_of(user).await, Some(ExternalUserState::PendingAcceptance));
    // The ticket still starts a redemption.
    f.gp.view_redemption(&ticket).await.unwrap();
    let bad = f.get("/redeem?ticket=nonsense", None, None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(!bad.body.contains("panicked"));
}

#[tokio::test]
async fn the_whole_journey_through_forms() {
    let f = fixture();
    let (user, ticket) = f.invite().await;
    let page = f.get(&format!("/redeem?ticket={ticket}"), None, None).await;
    let res = f
        .post(
            "/redeem",
            None,
            Some(ORIGIN),
            &format!("ticket={ticket}&csrf={}", page.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let set = res.headers[header::SET_COOKIE].to_str().unwrap();
    for part in [
        "__Host-gp-redeem=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    assert!(!set.contains("Domain"));
    let cookie = set.split(';').next().unwrap().to_owned();

    // The passcode page.
    let step = f.get("/redeem/step", Some(&cookie), None).await;
    assert_eq!(step.status, StatusCode::OK);
    assert_page_headers(&step);
    assert!(step.body.contains("<label for=\"code\">"), "{}", step.body);
    let csrf = step.csrf();

    // A wrong code: the page again, the error next to the field.
    let code = f.passcode();
    let wrong: String = code.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    let res = f
        .post(
            "/redeem/passcode",
            Some(&cookie),
            Some(ORIGIN),
            &format!("csrf={csrf}&code={wrong}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert!(res.body.contains("id=\"code-error\""), "{}", res.body);
    assert!(res.body.contains("aria-invalid=\"true\""));

    let res = f
        .post(
            "/redeem/passcode",
            Some(&cookie),
            Some(ORIGIN),
            &format!("csrf={csrf}&code={code}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), format!("{BASE}redeem/step"));

    // Consent.
    let step = f.get("/redeem/step", Some(&cookie), None).await;
    assert!(
        step.body.contains("name=\"decision\" value=\"accept\""),
        "{}",
        step.body
    );
    assert!(step.body.contains("email address"));
    assert_eq!(f.state_of(user).await, Some(ExternalUserState::PendingAcceptance));
    let res = f
        .post(
            "/redeem/consent",
            Some(&cookie),
            None,
            &format!("csrf={}&decision=accept", step.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), REDIRECT);
    assert_eq!(f.state_of(user).await, Some(ExternalUserState::Accepted));

    // A reload shows the end.
    let end = f.get("/redeem/step", Some(&cookie), None).await;
    assert_eq!(end.status, StatusCode::OK);
    assert!(end.body.contains("accepted"), "{}", end.body);
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_change_nothing() {
    let f = fixture();
    let (user, ticket) = f.invite().await;
    let page = f.get(&format!("/redeem?ticket={ticket}"), None, None).await;
    let good = page.csrf();
    let sent = f.outbox.messages().len();
    let forged = format!("{}A", &good[..good.len() - 1]);
    let forged = if forged == good {
        format!("{}B", &good[..good.len() - 1])
    } else {
        forged
    };
    for form in [
        format!("ticket={ticket}"),
        format!("ticket={ticket}&csrf="),
        format!("ticket={ticket}&csrf={forged}"),
        format!("ticket={ticket}&csrf={good}x"),
    ] {
        let res = f.post("/redeem", None, Some(ORIGIN), &form).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{form}");
        assert!(!res.headers.contains_key(header::SET_COOKIE));
    }
    // Another origin, with a valid token.
    let res = f
        .post(
            "/redeem",
            None,
            Some("https://evil-site.example"),
            &format!("ticket={ticket}&csrf={good}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(!res.headers.contains_key(header::SET_COOKIE));
    assert_eq!(f.outbox.messages().len(), sent, "a refused form sent a passcode");
    assert_eq!(f.state_of(user).await, Some(ExternalUserState::PendingAcceptance));

    // A step form: the ticket's token is not the handle's.
    let cookie = f.start(&ticket).await;
    let code = f.passcode();
    let handle = cookie.split_once('=').unwrap().1.to_owned();
    for (origin, csrf) in [
        (Some(ORIGIN), String::new()),
        (Some(ORIGIN), good.clone()),
        (
            Some("null"),
            f.get("/redeem/step", Some(&cookie), None).await.csrf(),
        ),
    ] {
        let res = f
            .post(
                "/redeem/passcode",
                Some(&cookie),
                origin,
                &format!("csrf={csrf}&code={code}"),
            )
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        let step = f.gp.redemption_step(&handle).await.unwrap();
        assert!(matches!(step, RedemptionStep::EnterPasscode { .. }), "{step:?}");
    }
    // Without the cookie.
    let csrf = f.get("/redeem/step", Some(&cookie), None).await.csrf();
    let res = f
        .post(
            "/redeem/passcode",
            None,
            Some(ORIGIN),
            &format!("csrf={csrf}&code={code}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // The code was not used up by the refused forms.
    let res = f
        .post(
            "/redeem/passcode",
            Some(&cookie),
            Some(ORIGIN),
            &format!("csrf={csrf}&code={code}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
}

#[tokio::test]
async fn large_forms_are_refused() {
    let f = fixture();
    let (_, ticket) = f.invite().await;
    let big = format!("ticket={ticket}&csrf=x&pad={}", "a".repeat(17 * 1024));
    let res = f.post("/redeem", None, Some(ORIGIN), &big).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn german_pages_for_accept_language_de() {
    let f = fixture();
    let (_, ticket) = f.invite().await;
    let page = f
        .get(
            &format!("/redeem?ticket={ticket}"),
            None,
            Some("de-DE,de;q=0.9,en;q=0.5"),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<html lang=\"de-DE\">"), "{}", page.body);
    assert!(page.body.contains("Einladung annehmen"));
    let en = f
        .get(
            &format!("/redeem?ticket={ticket}"),
            None,
            Some("fr-FR, en;q=0.8, de;q=0.1"),
        )
        .await;
    assert!(en.body.contains("<html lang=\"en-US\">"));
    let cookie = f.start(&ticket).await;
    let step = f.get("/redeem/step", Some(&cookie), Some("de")).await;
    assert!(step.body.contains("<html lang=\"de-DE\">"), "{}", step.body);
    assert!(step.body.contains("Code aus der E-Mail"), "{}", step.body);
    let csrf = step.csrf();
    let code = f.passcode();
    let res = f
        .post(
            "/redeem/passcode",
            Some(&cookie),
            None,
            &format!("csrf={csrf}&code={code}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let consent = f.get("/redeem/step", Some(&cookie), Some("de-DE")).await;
    assert!(consent.body.contains("E-Mail-Adresse"), "{}", consent.body);
    assert!(consent.body.contains("Akzeptieren"), "{}", consent.body);
}

#[tokio::test]
async fn page_text_is_escaped() {
    let f = fixture();
    let (_, ticket) = f.invite_named(Some("<script>alert(1)</script> & \"Bob\"")).await;
    let page = f.get(&format!("/redeem?ticket={ticket}"), None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;"), "{}", page.body);
    // A ticket that is not one is not echoed into the page.
    let bad = f.get("/redeem?ticket=%3Cb%3Ex", None, None).await;
    assert!(!bad.body.contains("<b>x"), "{}", bad.body);
}

#[tokio::test]
async fn a_shared_csrf_key_works_across_instances_and_another_does_not() {
    let f = fixture_with(|c| c.csrf_key([1; 32]));
    let (_, ticket) = f.invite().await;
    let csrf = f
        .get(&format!("/redeem?ticket={ticket}"), None, None)
        .await
        .csrf();
    let rng = SeededRandom::new(3);
    let keys = TokenKeys::new(TokenSigningKey::generate("admin-2", TokenAlgorithm::Es256, &rng).unwrap());
    let issuer = AdminTokenIssuer::new(&keys, f.gp.config().public_base_url()).unwrap();
    let form = format!("ticket={ticket}&csrf={csrf}");
    let other = Fixture {
        app: web::router(f.gp.clone(), WebConfig::new(issuer.clone()).csrf_key([2; 32])),
        gp: f.gp.clone(),
        outbox: f.outbox.clone(),
    };
    assert_eq!(
        other.post("/redeem", None, None, &form).await.status,
        StatusCode::FORBIDDEN
    );
    let same = Fixture {
        app: web::router(f.gp.clone(), WebConfig::new(issuer).csrf_key([1; 32])),
        gp: f.gp.clone(),
        outbox: f.outbox.clone(),
    };
    assert_eq!(
        same.post("/redeem", None, None, &form).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn step_up_with_an_authenticator_through_forms() {
    use guestpass::idp::totp::{TotpSecret, step_at};
    let mfa = guestpass::policy::PolicySet::from_json(
        r#"{"policies": [{
          "displayName": "Require MFA for guests", "state": "enabled",
          "conditions": {"users": {"includeUsers": ["GuestsOrExternalUsers"]},
                         "applications": {"includeApplications": ["All"]}, "clientAppTypes": ["all"]},
          "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}]}"#,
    )
    .unwrap();
    let f = fixture_over(|c| c, |b| b.conditional_access(mfa));
    let (user, ticket) = f.invite().await;
    let cookie = f.start(&ticket).await;
    let csrf = f.get("/redeem/step", Some(&cookie), None).await.csrf();
    let code = f.passcode();
    let res = f
        .post(
            "/redeem/passcode",
            Some(&cookie),
            None,
            &format!("csrf={csrf}&code={code}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let res = f
        .post(
            "/redeem/consent",
            Some(&cookie),
            None,
            &format!("csrf={csrf}&decision=accept"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), format!("{BASE}redeem/step"));

    let choose = f.get("/redeem/step", Some(&cookie), None).await;
    assert!(choose.body.contains("value=\"authenticator\""), "{}", choose.body);
    // An unknown method: the choice again, with the error next to it.
    let res = f
        .post(
            "/redeem/step-up/method",
            Some(&cookie),
            None,
            &format!("csrf={csrf}&method=sms"),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("id=\"method-error\""), "{}", res.body);
    let res = f
        .post(
            "/redeem/step-up/method",
            Some(&cookie),
            None,
            &format!("csrf={csrf}&method=authenticator"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);

    let enrol = f.get("/redeem/step", Some(&cookie), None).await;
    assert!(enrol.body.contains("href=\"otpauth:"), "{}", enrol.body);
    let marker = "<code id=\"secret\">";
    let start = enrol.body.find(marker).unwrap() + marker.len();
    let end = enrol.body[start..].find('<').unwrap() + start;
    let app = TotpSecret::from_base32(&enrol.body[start..end]).unwrap();
    let code = app.code_at_step(step_at(time::OffsetDateTime::now_utc()));
    assert_eq!(f.state_of(user).await, Some(ExternalUserState::PendingAcceptance));
    let res = f
        .post(
            "/redeem/step-up/code",
            Some(&cookie),
            None,
            &format!("csrf={csrf}&code={code}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), REDIRECT);
    assert_eq!(f.state_of(user).await, Some(ExternalUserState::Accepted));
}
