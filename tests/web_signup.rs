//! The sign-up pages (`guestpass::web::signup_pages`) and the application
//! session (`guestpass::web::session`) of the axum adapter, driven in
//! process with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::routing::get;
use guestpass::clock::FixedClock;
use guestpass::directory::MemoryStore;
use guestpass::flow::config::SignUpConfig;
use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
use guestpass::graph::auth::AdminTokenIssuer;
use guestpass::keys::SigningKey;
use guestpass::mail::Outbox;
use guestpass::random::SeededRandom;
use guestpass::web::security::CONTENT_SECURITY_POLICY;
use guestpass::web::session::{AppSession, SessionError, SignedInUser};
use guestpass::web::{self, WebConfig};
use guestpass::{FlowStep, GuestPass};
use time::Duration;
use tower::ServiceExt as _;
use url::Url;

const BASE: &str = "https://guests.contoso.example/";
const ORIGIN: &str = "https://guests.contoso.example";
const APP_ORIGIN: &str = "https://app.contoso.example";
const CALLBACK: &str = "https://app.contoso.example/auth/callback";
const CLIENT: &str = "woodgrove";
const ADA: &str = "ada@fabrikam.example";
const EXT: &str = "extension_0f8fad5bd9cb469fa16570867728950e_";
const FORM: &str = "application/x-www-form-urlencoded";

fn sign_up_config() -> SignUpConfig {
    SignUpConfig::from_json(&format!(
        r#"{{
          "applications": [{{"clientId": "{CLIENT}", "displayName": "Woodgrove",
                             "redirectUris": ["{CALLBACK}"]}}],
          "userFlows": [{{"id": "signup", "identityProviders": ["emailOtp"], "applications": ["{CLIENT}"],
            "attributes": [
              {{"name": "email"}},
              {{"name": "givenName"}},
              {{"name": "surname", "isOptional": true}},
              {{"name": "{EXT}tier", "dataType": "string", "userInputType": "dropdownSingleSelect",
                "label": {{"en-US": "Tier", "de-DE": "Stufe"}},
                "userAttributeValues": [{{"name": "Bronze", "value": "bronze"}}, {{"name": "Gold", "value": "gold"}}]}},
              {{"name": "{EXT}size", "dataType": "string", "userInputType": "radioSingleSelect", "isOptional": true,
                "label": "Size",
                "userAttributeValues": [{{"name": "Small", "value": "s"}}, {{"name": "Large", "value": "l"}}]}},
              {{"name": "{EXT}newsletter", "dataType": "boolean", "userInputType": "checkboxSingleSelect",
                "isOptional": true, "label": "Newsletter"}},
              {{"name": "{EXT}interests", "dataType": "stringCollection", "isOptional": true, "label": "Interests",
                "userAttributeValues": [{{"name": "Recipes", "value": "recipes"}}, {{"name": "Offers", "value": "offers"}}]}},
              {{"name": "{EXT}birthday", "dataType": "dateTime", "isOptional": true, "label": "Birthday"}}
            ]}}]
        }}"#
    ))
    .unwrap()
}

struct Fixture {
    app: Router,
    gp: GuestPass,
    outbox: Arc<Outbox>,
    clock: Arc<FixedClock>,
}

/// A page for signed-in people only.
async fn home(user: SignedInUser) -> String {
    format!(
        "email={} sub={} claims={}",
        user.claims().email,
        user.claims().subject,
        user.claims_json()
    )
}

/// A page for everyone.
async fn maybe(user: Option<SignedInUser>) -> String {
    match user {
        Some(u) => format!("signed in as {}", u.claims().email),
        None => "anonymous".to_owned(),
    }
}

fn fixture() -> Fixture {
    fixture_over(|b| b)
}

fn fixture_over(service: impl FnOnce(guestpass::GuestPassBuilder) -> guestpass::GuestPassBuilder) -> Fixture {
    let outbox = Arc::new(Outbox::new());
    let clock = Arc::new(FixedClock::new(
        time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
    ));
    let rng = SeededRandom::new(5);
    let builder = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url(BASE)
        .signing_key(SigningKey::new("k1", [42u8; 32]).unwrap())
        .redirect_url("https://app.contoso.example/")
        .store(Arc::new(MemoryStore::new()))
        .mail(outbox.clone())
        .clock(clock.clone())
        .sign_up(sign_up_config())
        .token_keys(TokenKeys::new(
            TokenSigningKey::generate("t1", TokenAlgorithm::Es256, &rng).unwrap(),
        ));
    let gp = service(builder).build().unwrap();
    let admin = TokenKeys::new(TokenSigningKey::generate("admin-1", TokenAlgorithm::Es256, &rng).unwrap());
    let issuer = AdminTokenIssuer::new(&admin, gp.config().public_base_url()).unwrap();
    let session = AppSession::new(&gp, CLIENT, CALLBACK, "/home")
        .unwrap()
        .clock(clock.clone());
    let app = Router::new()
        .route("/home", get(home))
        .route("/maybe", get(maybe))
        .merge(web::router(
            gp.clone(),
            WebConfig::new(issuer).clock(clock.clone()),
        ))
        .merge(session.router())
        .layer(session.extension());
    Fixture {
        app,
        gp,
        outbox,
        clock,
    }
}

/// The cookies a browser keeps (names with their `__Host-` prefix).
#[derive(Default, Clone, Debug)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn header(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn absorb(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(header::SET_COOKIE) {
            let s = v.to_str().unwrap();
            let (name, value) = s.split(';').next().unwrap().split_once('=').unwrap();
            if s.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&format!("__Host-{name}")).map(String::as_str)
    }
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

    /// The value of the first hidden field `name`.
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

    fn csrf(&self) -> String {
        self.hidden("csrf_token")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn csp(&self) -> &str {
        self.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap()
    }
}

/// The path and query of a URL on guestpass's or the application's origin.
fn local(url: &str) -> &str {
    url.strip_prefix(ORIGIN)
        .or_else(|| url.strip_prefix(APP_ORIGIN))
        .unwrap_or_else(|| panic!("{url} is not local"))
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Fixture {
    async fn send(&self, jar: &mut Jar, mut b: axum::http::request::Builder, body: Body) -> Answer {
        b = b
            .header(header::HOST, "evil.example")
            .header("x-forwarded-host", "evil.example");
        if let Some(c) = jar.header() {
            b = b.header(header::COOKIE, c);
        }
        let res = self.app.clone().oneshot(b.body(body).unwrap()).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        // minijinja escapes `/` in attribute values; read them as a browser does.
        let body = String::from_utf8(bytes.to_vec()).unwrap().replace("&#x2f;", "/");
        let all = format!("{headers:?}{body}");
        assert!(!all.contains("evil.example"), "the Host header leaked: {all}");
        assert!(!body.contains("<script"), "{body}");
        jar.absorb(&headers);
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, jar: &mut Jar, path: &str, lang: Option<&str>) -> Answer {
        let lang = lang.map(|l| ("accept-language", l));
        self.get_with(jar, path, lang.as_slice()).await
    }

    async fn get_with(&self, jar: &mut Jar, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut b = Request::builder().method(Method::GET).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(jar, b, Body::empty()).await
    }

    async fn post_with(&self, jar: &mut Jar, path: &str, headers: &[(&str, &str)], form: &str) -> Answer {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, FORM);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(jar, b, Body::from(form.to_owned())).await
    }

    async fn post(&self, jar: &mut Jar, path: &str, form: &str) -> Answer {
        self.post_with(jar, path, &[("origin", ORIGIN)], form).await
    }

    fn passcode(&self) -> String {
        self.outbox.last_to(ADA).unwrap().code(8).unwrap().to_owned()
    }

    /// The flow's current step, read from the service.
    async fn step_of(&self, jar: &Jar) -> FlowStep {
        self.gp.view_flow(jar.get("gp-flow").unwrap()).await.unwrap().step
    }

    /// `GET /sign-in`, then guestpass's `/signup`: the browser on the
    /// address page.
    async fn sign_in(&self, jar: &mut Jar, lang: Option<&str>) -> Answer {
        let start = self.get(jar, "/sign-in", lang).await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        let to = start.location().to_owned();
        assert!(to.starts_with(&format!("{BASE}signup?")), "{to}");
        let started = self.get(jar, local(&to), lang).await;
        assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
        assert_eq!(started.location(), format!("{BASE}signup/step"));
        self.get(jar, "/signup/step", lang).await
    }

    /// From the address page to the attribute form.
    async fn prove_address(&self, jar: &mut Jar, email_page: &Answer) -> Answer {
        let res = self
            .post(
                jar,
                "/signup/step",
                &format!(
                    "csrf_token={}&action=submitEmail&email={}",
                    email_page.csrf(),
                    enc(ADA)
                ),
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        let page = self.get(jar, "/signup/step", None).await;
        let res = self
            .post(
                jar,
                "/signup/step",
                &format!(
                    "csrf_token={}&action=submitPasscode&code={}",
                    page.csrf(),
                    self.passcode()
                ),
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        self.get(jar, "/signup/step", None).await
    }

    /// A whole sign-up through the forms: the completion page.
    async fn complete(&self, jar: &mut Jar) -> Answer {
        let email_page = self.sign_in(jar, None).await;
        let form = self.prove_address(jar, &email_page).await;
        let done = self
            .post(
                jar,
                "/signup/step",
                &format!(
                    "csrf_token={}&action=submitAttributes&email={}&givenName=Ada&{EXT}tier=gold",
                    form.csrf(),
                    enc(ADA)
                ),
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        done
    }
}

fn assert_page_headers(a: &Answer) {
    assert_eq!(a.headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(a.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(a.csp(), CONTENT_SECURITY_POLICY);
}

#[tokio::test]
async fn the_whole_journey_through_forms_to_a_signed_in_host_page() {
    let f = fixture();
    let mut jar = Jar::default();

    // Not signed in yet.
    assert_eq!(f.get(&mut jar, "/maybe", None).await.body, "anonymous");
    let gate = f.get(&mut jar, "/home", None).await;
    assert_eq!(gate.status, StatusCode::SEE_OTHER);
    assert_eq!(gate.location(), format!("{APP_ORIGIN}/sign-in"));

    // The sign-in link: state and nonce in a cross-site cookie, then guestpass.
    let start = f.get(&mut jar, "/sign-in", None).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let to = url::Url::parse(start.location()).unwrap();
    let q: BTreeMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["redirect_uri"], CALLBACK);
    assert_eq!(q["state"].len(), 43);
    assert_eq!(q["nonce"].len(), 43);
    assert_ne!(q["state"], q["nonce"]);
    let set = start.set_cookies().join("\n");
    for part in [
        "__Host-gp-signin=",
        "Secure",
        "HttpOnly",
        "SameSite=None",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(set.contains(part), "{set} lacks {part}");
    }

    // `/signup`: the flow cookie, then the address page (the only provider
    // is chosen at once).
    let started = f.get(&mut jar, local(start.location()), None).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    assert_eq!(started.location(), format!("{BASE}signup/step"));
    let set = started.set_cookies().join("\n");
    for part in [
        "__Host-gp-flow=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    assert!(!set.contains("Domain"));
    let email_page = f.get(&mut jar, "/signup/step", None).await;
    assert_eq!(email_page.status, StatusCode::OK);
    assert_page_headers(&email_page);
    assert!(
        email_page.body.contains("<html lang=\"en-US\">"),
        "{}",
        email_page.body
    );
    assert!(
        email_page.body.contains("<label for=\"email\">"),
        "{}",
        email_page.body
    );
    assert!(email_page.body.contains("name=\"action\" value=\"submitEmail\""));
    assert!(email_page.body.contains(&format!("action=\"{BASE}signup/step\"")));
    assert!(f.outbox.messages().is_empty(), "a GET sent mail");

    // A malformed address: the page again, the error next to the field,
    // the address as typed.
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitEmail&email=not-an-address",
                email_page.csrf()
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body.contains("id=\"email-error\" role=\"alert\""),
        "{}",
        res.body
    );
    assert!(res.body.contains("aria-describedby=\"email-error\""));
    assert!(res.body.contains("value=\"not-an-address\""));

    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=submitEmail&email={}", res.csrf(), enc(ADA)),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), format!("{BASE}signup/step"));
    assert_eq!(f.outbox.messages().len(), 1);

    // The passcode page; a resend right away is rate limited, shown on the page.
    let page = f.get(&mut jar, "/signup/step", None).await;
    assert!(page.body.contains("<label for=\"code\">"), "{}", page.body);
    assert!(page.body.contains(ADA));
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=resendPasscode", page.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.body);
    assert!(res.body.contains("role=\"alert\""), "{}", res.body);
    assert_eq!(f.outbox.messages().len(), 1);

    // A wrong code, then the right one.
    let code = f.passcode();
    let wrong: String = code.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=submitPasscode&code={wrong}", page.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert!(
        res.body.contains("id=\"code-error\" role=\"alert\""),
        "{}",
        res.body
    );
    assert!(res.body.contains("aria-invalid=\"true\""));
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=submitPasscode&code={code}", res.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);

    // The attribute form: every field labelled, the proven address fixed.
    let form = f.get(&mut jar, "/signup/step", None).await;
    assert_eq!(form.status, StatusCode::OK);
    let b = &form.body;
    for id in [
        "email",
        "givenName",
        "surname",
        &format!("{EXT}tier"),
        &format!("{EXT}newsletter"),
        &format!("{EXT}birthday"),
    ] {
        assert!(
            b.contains(&format!("<label for=\"f-{id}\">")),
            "no label for {id}: {b}"
        );
        assert!(b.contains(&format!("id=\"f-{id}\"")), "no input {id}: {b}");
    }
    for id in ["0", "1"] {
        assert!(b.contains(&format!("<label for=\"f-{EXT}size-{id}\">")), "{b}");
        assert!(
            b.contains(&format!("<label for=\"f-{EXT}interests-{id}\">")),
            "{b}"
        );
    }
    assert!(
        b.contains(&format!(
            "name=\"email\" type=\"email\" value=\"{ADA}\" autocomplete=\"email\" readonly"
        )),
        "{b}"
    );
    assert!(
        b.contains(&format!("<select id=\"f-{EXT}tier\" name=\"{EXT}tier\" required")),
        "{b}"
    );
    assert!(
        b.contains(&format!(
            "name=\"{EXT}newsletter\" type=\"checkbox\" value=\"true\""
        )),
        "{b}"
    );
    assert!(
        b.contains(&format!("name=\"{EXT}birthday\" type=\"date\"")),
        "{b}"
    );
    assert!(
        b.contains(&format!("name=\"{EXT}size\" type=\"radio\" value=\"l\"")),
        "{b}"
    );
    assert!(
        b.contains(&format!(
            "name=\"{EXT}interests\" type=\"checkbox\" value=\"offers\""
        )),
        "{b}"
    );

    // Missing the given name: the form again, the error next to the field,
    // the other values as typed; nothing stored.
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitAttributes&email={}&surname=Lovelace&{EXT}tier=gold&{EXT}size=l\
                 &{EXT}newsletter=true&{EXT}interests=offers&{EXT}birthday=1815-12-10",
                form.csrf(),
                enc(ADA)
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    let b = &res.body;
    assert!(b.contains("<p id=\"f-givenName-error\" role=\"alert\">"), "{b}");
    assert!(
        b.contains("id=\"f-givenName\" name=\"givenName\" type=\"text\" value=\"\" autocomplete=\"given-name\" required aria-invalid=\"true\" aria-describedby=\"f-givenName-error\""),
        "{b}"
    );
    assert!(!b.contains("id=\"f-surname-error\""), "{b}");
    assert!(b.contains("value=\"Lovelace\""), "{b}");
    assert!(b.contains("<option value=\"gold\" selected>"), "{b}");
    assert!(b.contains("value=\"l\" checked"), "{b}");
    assert!(b.contains("value=\"offers\" checked"), "{b}");
    assert!(b.contains("value=\"true\" checked"), "{b}");
    assert!(b.contains("value=\"1815-12-10\""), "{b}");
    assert!(matches!(
        f.step_of(&jar).await,
        FlowStep::CollectAttributes { .. }
    ));

    // Fixed: the completion, delivered as a form post to the application.
    let done = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitAttributes&email={}&givenName=Ada&surname=Lovelace&{EXT}tier=gold",
                res.csrf(),
                enc(ADA)
            ),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(
        done.body
            .contains(&format!("<form method=\"post\" action=\"{CALLBACK}\">")),
        "{}",
        done.body
    );
    assert!(
        done.body
            .contains("<button id=\"continue\" type=\"submit\">Continue</button>"),
        "{}",
        done.body
    );
    assert_eq!(done.hidden("state"), q["state"]);
    let id_token = done.hidden("id_token");
    assert_eq!(id_token.split('.').count(), 3);
    assert_eq!(
        done.csp(),
        "default-src 'none'; style-src 'self'; img-src 'self' data:; \
         form-action 'self' https://app.contoso.example; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(done.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(done.headers[header::REFERRER_POLICY], "no-referrer");
    assert!(jar.get("gp-flow").is_none(), "the flow cookie was not cleared");

    // The application's callback: the session, then the landing page. The
    // post comes from the no-referrer completion page, so `Origin: null`.
    let res = f
        .post_with(
            &mut jar,
            "/auth/callback",
            &[("origin", "null"), ("sec-fetch-site", "same-site")],
            &format!("id_token={id_token}&state={}", q["state"]),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), format!("{APP_ORIGIN}/home"));
    let set = res.set_cookies();
    let session = set.iter().find(|c| c.starts_with("__Host-gp-session=")).unwrap();
    for part in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
        assert!(session.contains(part), "{session} lacks {part}");
    }
    assert!(
        set.iter()
            .any(|c| c.starts_with("__Host-gp-signin=;") && c.contains("Max-Age=0")),
        "{set:?}"
    );
    assert!(jar.get("gp-signin").is_none());

    // The host's handlers see the verified claims.
    let page = f.get(&mut jar, "/home", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.starts_with(&format!("email={ADA} sub=")),
        "{}",
        page.body
    );
    let json: serde_json::Value = serde_json::from_str(page.body.split_once("claims=").unwrap().1).unwrap();
    assert_eq!(json["aud"], CLIENT);
    assert_eq!(json["email"], ADA);
    assert_eq!(json["nonce"], q["nonce"].as_str());
    assert_eq!(
        f.get(&mut jar, "/maybe", None).await.body,
        format!("signed in as {ADA}")
    );

    // The same completion again is refused (the state cookie is gone).
    let mut replay = jar.clone();
    let again = f
        .post(
            &mut replay,
            "/auth/callback",
            &format!("id_token={id_token}&state={}", q["state"]),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.set_cookies().is_empty());

    // The flow page after completion: no flow.
    let gone = f.get(&mut jar, "/signup/step", None).await;
    assert_eq!(gone.status, StatusCode::BAD_REQUEST);

    // The session expires with the token.
    f.clock.advance(Duration::minutes(61));
    let gate = f.get(&mut jar.clone(), "/home", None).await;
    assert_eq!(gate.status, StatusCode::SEE_OTHER);
    assert_eq!(gate.location(), format!("{APP_ORIGIN}/sign-in"));
    assert!(
        gate.set_cookies()
            .iter()
            .any(|c| c.starts_with("__Host-gp-session=;"))
    );
    assert_eq!(f.get(&mut jar.clone(), "/maybe", None).await.body, "anonymous");
}

#[tokio::test]
async fn signing_out_needs_the_session_token() {
    let f = fixture();
    let mut jar = Jar::default();
    let done = f.complete(&mut jar).await;
    let res = f
        .post_with(
            &mut jar,
            "/auth/callback",
            &[],
            &format!(
                "id_token={}&state={}",
                done.hidden("id_token"),
                done.hidden("state")
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert!(jar.get("gp-session").is_some());

    // The token the sign-out form carries, read the way a host handler does.
    let token = {
        let session = AppSession::new(&f.gp, CLIENT, CALLBACK, "/home")
            .unwrap()
            .clock(f.clock.clone());
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, jar.header().unwrap().parse().unwrap());
        session.user(&h).unwrap().sign_out_token().to_owned()
    };
    for (origin, form) in [
        (APP_ORIGIN, String::new()),
        (APP_ORIGIN, "csrf_token=forged".to_owned()),
        ("https://attacker.example", format!("csrf_token={token}")),
        (ORIGIN, format!("csrf_token={token}")),
    ] {
        let res = f
            .post_with(&mut jar, "/sign-out", &[("origin", origin)], &form)
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{origin} {form}");
        assert!(res.set_cookies().is_empty());
    }
    assert!(
        f.get(&mut jar, "/maybe", None)
            .await
            .body
            .starts_with("signed in")
    );
    let res = f
        .post_with(
            &mut jar,
            "/sign-out",
            &[("origin", APP_ORIGIN)],
            &format!("csrf_token={token}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), format!("{APP_ORIGIN}/"));
    assert!(jar.get("gp-session").is_none());
    assert_eq!(f.get(&mut jar, "/maybe", None).await.body, "anonymous");
}

#[tokio::test]
async fn forged_or_missing_csrf_and_foreign_origins_are_refused_and_change_nothing() {
    let f = fixture();
    let mut jar = Jar::default();
    let page = f.sign_in(&mut jar, None).await;
    let good = page.csrf();
    let mut forged = good.clone();
    let first = forged.remove(0);
    forged.insert(0, if first == 'A' { 'B' } else { 'A' });
    let email = enc(ADA);
    for form in [
        format!("action=submitEmail&email={email}"),
        format!("csrf_token=&action=submitEmail&email={email}"),
        format!("csrf_token={forged}&action=submitEmail&email={email}"),
        format!("csrf_token={good}x&action=submitEmail&email={email}"),
        format!("csrf_token={good}&csrf_token={good}&action=submitEmail&email={email}"),
    ] {
        let res = f.post(&mut jar, "/signup/step", &form).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{form}: {}", res.body);
        assert!(res.set_cookies().is_empty());
        assert!(res.body.contains("role=\"alert\""));
    }
    let form = format!("csrf_token={good}&action=submitEmail&email={email}");
    for headers in [
        vec![("origin", "https://attacker.example")],
        vec![("origin", "null")],
        vec![("origin", "null"), ("sec-fetch-site", "cross-site")],
        vec![("origin", ORIGIN), ("origin", ORIGIN)],
    ] {
        let res = f.post_with(&mut jar, "/signup/step", &headers, &form).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    // Without the cookie.
    let res = f.post(&mut Jar::default(), "/signup/step", &form).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(f.outbox.messages().is_empty(), "a refused form sent a passcode");
    assert!(matches!(f.step_of(&jar).await, FlowStep::EnterEmail { .. }));

    // The browser's own same-origin post from a no-referrer page.
    let res = f
        .post_with(
            &mut jar,
            "/signup/step",
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
            &form,
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(f.outbox.messages().len(), 1);

    // An unknown action, and a form that is not a form.
    let page = f.get(&mut jar, "/signup/step", None).await;
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=deleteEverything", page.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let b = Request::builder()
        .method(Method::POST)
        .uri("/signup/step")
        .header(header::CONTENT_TYPE, "application/json");
    let res = f.send(&mut jar, b, Body::from("{}")).await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn a_replayed_earlier_form_is_refused() {
    let f = fixture();
    let mut jar = Jar::default();
    let email_page = f.sign_in(&mut jar, None).await;
    let form = format!(
        "csrf_token={}&action=submitEmail&email={}",
        email_page.csrf(),
        enc(ADA)
    );
    let res = f.post(&mut jar, "/signup/step", &form).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(f.outbox.messages().len(), 1);
    // The same post again (a doubled submission or a replay).
    let res = f.post(&mut jar, "/signup/step", &form).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert!(
        res.body.contains(&format!("href=\"{BASE}signup/step\"")),
        "{}",
        res.body
    );
    assert_eq!(f.outbox.messages().len(), 1);
    assert!(matches!(f.step_of(&jar).await, FlowStep::EnterPasscode { .. }));

    // The passcode page's token after the code was accepted.
    let page = f.get(&mut jar, "/signup/step", None).await;
    let code = f.passcode();
    let form = format!("csrf_token={}&action=submitPasscode&code={code}", page.csrf());
    assert_eq!(
        f.post(&mut jar, "/signup/step", &form).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        f.post(&mut jar, "/signup/step", &form).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(matches!(
        f.step_of(&jar).await,
        FlowStep::CollectAttributes { .. }
    ));
}

#[tokio::test]
async fn redirect_uris_are_never_followed_before_they_are_checked() {
    let f = fixture();
    let mut jar = Jar::default();
    for query in [
        format!(
            "client_id={CLIENT}&redirect_uri={}",
            enc("https://attacker.example/cb")
        ),
        format!(
            "client_id={CLIENT}&redirect_uri={}",
            enc(&format!("{CALLBACK}/../x"))
        ),
        format!(
            "client_id={CLIENT}&redirect_uri={}",
            enc(&format!("{CALLBACK}?x=1"))
        ),
        format!(
            "client_id={CLIENT}&redirect_uri={}",
            enc("HTTPS://APP.CONTOSO.EXAMPLE/auth/callback")
        ),
        format!(
            "client_id={CLIENT}&redirect_uri={}&redirect_uri={}",
            enc(CALLBACK),
            enc("https://attacker.example/cb")
        ),
        format!(
            "client_id=unknown&redirect_uri={}",
            enc("https://attacker.example/cb")
        ),
        format!("redirect_uri={}", enc("https://attacker.example/cb")),
    ] {
        let res = f.get(&mut jar, &format!("/signup?{query}"), None).await;
        assert!(res.status.is_client_error(), "{query}: {}", res.status);
        assert!(res.headers.get(header::LOCATION).is_none(), "{query}");
        assert!(res.set_cookies().is_empty(), "{query}");
        assert!(!res.body.contains("href=\"https://attacker"), "{}", res.body);
        assert!(!res.body.contains("action=\"https://attacker"), "{}", res.body);
        assert!(res.body.contains("role=\"alert\""), "{}", res.body);
    }
    let res = f
        .get(
            &mut jar,
            &format!(
                "/signup?client_id={CLIENT}&redirect_uri={}",
                enc("https://attacker.example/cb")
            ),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("is not registered"), "{}", res.body);

    // The application's sign-in route takes no address at all.
    for query in [
        format!("redirect_uri={}", enc("https://attacker.example/cb")),
        format!("return_to={}", enc("https://attacker.example/")),
        "ui_locales=de&ui_locales=en".to_owned(),
    ] {
        let res = f.get(&mut jar, &format!("/sign-in?{query}"), None).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(res.headers.get(header::LOCATION).is_none());
        assert!(res.set_cookies().is_empty());
        assert!(
            res.body.contains(&format!("href=\"{APP_ORIGIN}/sign-in\"")),
            "{}",
            res.body
        );
    }
    assert!(jar.0.is_empty());

    // A session cannot be set up for an unregistered redirect URI.
    assert!(matches!(
        AppSession::new(&f.gp, CLIENT, "https://attacker.example/cb", "/"),
        Err(SessionError::RedirectNotRegistered { .. })
    ));
    assert!(matches!(
        AppSession::new(&f.gp, "unknown", CALLBACK, "/"),
        Err(SessionError::UnknownApplication { .. })
    ));
    assert!(matches!(
        AppSession::new(&f.gp, CLIENT, CALLBACK, "//attacker.example/"),
        Err(SessionError::InvalidPath { .. })
    ));
    assert!(matches!(
        AppSession::new(&f.gp, CLIENT, CALLBACK, "/")
            .unwrap()
            .sign_in_path("/signup"),
        Err(SessionError::InvalidPath { .. })
    ));
}

/// The `state` of a `/sign-in` answer's redirect.
fn state_of(start: &Answer) -> String {
    let to = Url::parse(start.location()).unwrap();
    to.query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

#[tokio::test]
async fn other_sites_cannot_start_or_spoil_a_sign_in() {
    let f = fixture();
    let mut jar = Jar::default();
    let first = f.get(&mut jar, "/sign-in", None).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let cookie = jar.get("gp-signin").unwrap().to_owned();

    // Starting again (a second tab, a second click) keeps the sign-in
    // under way: the same state and nonce go to guestpass.
    let again = f.get(&mut jar, "/sign-in", None).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&again), state_of(&first));
    assert_eq!(jar.get("gp-signin").unwrap(), cookie);

    // Another site's image, frame or script starts nothing and sets no
    // cookie, neither at the application nor at guestpass.
    let embedded: [&[(&str, &str)]; 3] = [
        &[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "no-cors"),
            ("sec-fetch-dest", "image"),
        ],
        &[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "iframe"),
        ],
        &[
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
        ],
    ];
    // Starting again sends no new cookie: the values keep their expiry.
    assert!(again.set_cookies().is_empty(), "{:?}", again.set_cookies());

    let signup = local(first.location()).to_owned();
    let started = f.get(&mut jar, &signup, None).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let flow = jar.get("gp-flow").unwrap().to_owned();
    for headers in embedded {
        for path in ["/sign-in", signup.as_str()] {
            let res = f.get_with(&mut jar, path, headers).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{path} {headers:?}");
            assert!(res.set_cookies().is_empty(), "{path} {headers:?}");
            assert!(res.body.contains("role=\"alert\""), "{path}");
        }
    }
    // The browser's sign-in and flow are as they were.
    assert_eq!(jar.get("gp-signin").unwrap(), cookie);
    assert_eq!(jar.get("gp-flow").unwrap(), flow);
    assert!(matches!(f.step_of(&jar).await, FlowStep::EnterEmail { .. }));

    // A link another site's page shows still works: it is a navigation.
    let navigated = f
        .get_with(
            &mut jar,
            &signup,
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
        )
        .await;
    assert_eq!(navigated.status, StatusCode::SEE_OTHER, "{}", navigated.body);
    assert_ne!(jar.get("gp-flow").unwrap(), flow);
}

#[tokio::test]
async fn the_callback_refuses_a_wrong_state_and_bad_tokens_without_a_session() {
    let f = fixture();
    let mut jar = Jar::default();
    let done = f.complete(&mut jar).await;
    let id_token = done.hidden("id_token");
    let state = done.hidden("state");
    assert!(jar.get("gp-signin").is_some());

    let mut tampered = id_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let parts: Vec<&str> = id_token.split('.').collect();
    let unsigned = format!("{}.{}.", parts[0], parts[1]);
    for (what, form) in [
        ("no state", format!("id_token={id_token}")),
        ("another state", format!("id_token={id_token}&state=x{state}")),
        (
            "a truncated state",
            format!("id_token={id_token}&state={}", &state[..10]),
        ),
        ("no token", format!("state={state}")),
        (
            "a tampered signature",
            format!("id_token={tampered}&state={state}"),
        ),
        ("no signature", format!("id_token={unsigned}&state={state}")),
        ("garbage", format!("id_token=abc&state={state}")),
    ] {
        let res = f.post(&mut jar, "/auth/callback", &form).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{what}: {}", res.body);
        assert!(res.set_cookies().is_empty(), "{what}");
        assert!(res.body.contains("role=\"alert\""), "{what}");
    }
    assert!(jar.get("gp-session").is_none());

    // Without the state cookie (another browser: a login CSRF attempt).
    let res = f
        .post(
            &mut Jar::default(),
            "/auth/callback",
            &format!("id_token={id_token}&state={state}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.set_cookies().is_empty());

    // Expired by the time it arrives.
    f.clock.advance(Duration::minutes(62));
    let res = f
        .post(
            &mut jar,
            "/auth/callback",
            &format!("id_token={id_token}&state={state}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(res.set_cookies().is_empty());
    assert!(jar.get("gp-session").is_none());
}

#[tokio::test]
async fn a_token_of_another_sign_in_is_refused() {
    let f = fixture();
    // A sign-up started at `/signup` directly: its token has another nonce
    // (and state) than the browser's sign-in.
    let mut other = Jar::default();
    let res = f
        .get(
            &mut other,
            &format!(
                "/signup?client_id={CLIENT}&redirect_uri={}&state=s1&nonce=n1",
                enc(CALLBACK)
            ),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let page = f.get(&mut other, "/signup/step", None).await;
    let form = f.prove_address(&mut other, &page).await;
    let done = f
        .post(
            &mut other,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitAttributes&email={}&givenName=Ada&{EXT}tier=gold",
                form.csrf(),
                enc(ADA)
            ),
        )
        .await;
    let foreign = done.hidden("id_token");
    assert_eq!(done.hidden("state"), "s1");

    let mut jar = Jar::default();
    let start = f.get(&mut jar, "/sign-in", None).await;
    let q: BTreeMap<_, _> = url::Url::parse(start.location())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let res = f
        .post(
            &mut jar,
            "/auth/callback",
            &format!("id_token={foreign}&state={}", q["state"]),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(res.set_cookies().is_empty());
}

#[tokio::test]
async fn the_extractor_without_or_with_a_bad_cookie() {
    let f = fixture();
    let mut jar = Jar::default();
    assert_eq!(f.get(&mut jar, "/maybe", None).await.body, "anonymous");
    let mut bad = Jar::default();
    bad.0.insert("__Host-gp-session".into(), "eyJ.eyJ.sig".into());
    let res = f.get(&mut bad.clone(), "/maybe", None).await;
    assert_eq!(res.body, "anonymous");
    let res = f.get(&mut bad, "/home", None).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), format!("{APP_ORIGIN}/sign-in"));
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        res.set_cookies()
            .iter()
            .any(|c| c.starts_with("__Host-gp-session=;") && c.contains("Max-Age=0"))
    );

    // A router without the extension layer: a configuration error, not a loop.
    let app = Router::new().route("/home", get(home));
    let res = app
        .oneshot(Request::builder().uri("/home").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn german_pages_for_accept_language_de() {
    let f = fixture();
    let mut jar = Jar::default();
    let de = Some("de-DE,de;q=0.9,en;q=0.5");
    let page = f.sign_in(&mut jar, de).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<html lang=\"de-DE\">"), "{}", page.body);
    assert!(page.body.contains("E-Mail-Adresse"), "{}", page.body);
    assert!(page.body.contains(">Weiter<"), "{}", page.body);
    // The flow keeps the language it started in, also for a later request
    // without the header.
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=submitEmail&email={}", page.csrf(), enc(ADA)),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let page = f.get(&mut jar, "/signup/step", None).await;
    assert!(page.body.contains("<html lang=\"de-DE\">"), "{}", page.body);
    assert!(page.body.contains("Code aus der E-Mail"), "{}", page.body);
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=submitPasscode&code=00000000", page.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.body.contains("Der Code ist falsch"), "{}", res.body);
    let form = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitPasscode&code={}",
                res.csrf(),
                f.passcode()
            ),
        )
        .await;
    assert_eq!(form.status, StatusCode::SEE_OTHER);
    let form = f.get(&mut jar, "/signup/step", None).await;
    assert!(form.body.contains("Stufe"), "{}", form.body);
    assert!(form.body.contains("Bitte wählen"), "{}", form.body);

    // `ui_locales` wins over the header; error pages before a flow speak it too.
    let mut jar = Jar::default();
    let res = f
        .get(
            &mut jar,
            &format!(
                "/signup?client_id=unknown&redirect_uri={}&ui_locales=de-DE",
                enc(CALLBACK)
            ),
            Some("en-US"),
        )
        .await;
    assert!(res.body.contains("<html lang=\"de-DE\">"), "{}", res.body);
    let res = f
        .get(
            &mut jar,
            &format!(
                "/signup?client_id={CLIENT}&redirect_uri={}&ui_locales=de-DE",
                enc(CALLBACK)
            ),
            Some("en-US"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let page = f.get(&mut jar, "/signup/step", Some("en-US")).await;
    assert!(page.body.contains("<html lang=\"de-DE\">"), "{}", page.body);
    assert!(
        f.get(&mut Jar::default(), "/signup/step", Some("de"))
            .await
            .body
            .contains("Es läuft keine Anmeldung")
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let f = fixture();
    let mut jar = Jar::default();
    let page = f.sign_in(&mut jar, None).await;
    let big = format!(
        "csrf_token={}&action=submitAttributes&pad={}",
        page.csrf(),
        "a".repeat(17 * 1024)
    );
    let res = f.post(&mut jar, "/signup/step", &big).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(matches!(f.step_of(&jar).await, FlowStep::EnterEmail { .. }));
    let res = f
        .post(
            &mut jar,
            "/auth/callback",
            &format!("state=x&id_token={}", "a".repeat(17 * 1024)),
        )
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(res.set_cookies().is_empty());
}

#[tokio::test]
async fn page_text_is_escaped_and_state_is_carried_verbatim() {
    let f = fixture();
    let mut jar = Jar::default();
    let state = "<b>\"x\"&y";
    let res = f
        .get(
            &mut jar,
            &format!(
                "/signup?client_id={CLIENT}&redirect_uri={}&state={}",
                enc(CALLBACK),
                enc(state)
            ),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let page = f.get(&mut jar, "/signup/step", None).await;
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitEmail&email={}",
                page.csrf(),
                enc("<i>@x")
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(!res.body.contains("<i>"), "{}", res.body);
    assert!(res.body.contains("&lt;i&gt;"), "{}", res.body);
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=submitEmail&email={}", res.csrf(), enc(ADA)),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let page = f.get(&mut jar, "/signup/step", None).await;
    let form = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitPasscode&code={}",
                page.csrf(),
                f.passcode()
            ),
        )
        .await;
    assert_eq!(form.status, StatusCode::SEE_OTHER);
    let form = f.get(&mut jar, "/signup/step", None).await;
    let done = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitAttributes&email={}&givenName={}&{EXT}tier=gold",
                form.csrf(),
                enc(ADA),
                enc("<script>alert(1)</script>")
            ),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(!done.body.contains("<b>"), "{}", done.body);
    assert!(
        done.body
            .contains("name=\"state\" value=\"&lt;b&gt;&quot;x&quot;&amp;y\""),
        "{}",
        done.body
    );
}

/// A federated provider answered in process: it hands out `code` for the
/// `state` of each sign-in and vouches for `ada@fabrikam.example`.
#[derive(Debug)]
struct FabrikamIdp;

const IDP: &str = "fabrikam";
const IDP_ISSUER: &str = "https://login.fabrikam.example/v2.0";

#[async_trait::async_trait]
impl guestpass::idp::IdentityProvider for FabrikamIdp {
    fn id(&self) -> &str {
        IDP
    }

    fn issuer(&self) -> Option<&str> {
        Some(IDP_ISSUER)
    }

    async fn start(
        &self,
        ctx: &guestpass::idp::IdpContext<'_>,
        redirect_uri: &str,
    ) -> Result<guestpass::idp::AuthorizationStart, guestpass::idp::IdpError> {
        let (pending, state) = guestpass::idp::PendingAuthorization::generate(ctx, IDP, redirect_uri)?;
        let mut url = url::Url::parse("https://login.fabrikam.example/authorize").unwrap();
        url.query_pairs_mut()
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state.expose());
        Ok(guestpass::idp::AuthorizationStart { url, pending })
    }

    async fn finish(
        &self,
        ctx: &guestpass::idp::IdpContext<'_>,
        pending: &guestpass::idp::PendingAuthorization,
        callback: &guestpass::idp::Callback,
    ) -> Result<guestpass::idp::ExternalIdentity, guestpass::idp::IdpError> {
        pending.check_callback(IDP, IDP_ISSUER, callback, ctx.now)?;
        Ok(guestpass::idp::ExternalIdentity {
            provider_id: IDP.to_owned(),
            issuer: IDP_ISSUER.to_owned(),
            subject: "ada-at-fabrikam".to_owned(),
            email: Some(guestpass::email::EmailAddress::parse(ADA).unwrap()),
            email_verified: true,
            name: Some("Ada Lovelace".to_owned()),
            given_name: Some("Ada".to_owned()),
            family_name: Some("Lovelace".to_owned()),
            tenant_id: None,
            hosted_domain: None,
            home_tenant_id: None,
            object_id: None,
            amr: Vec::new(),
        })
    }
}

#[tokio::test]
async fn a_federated_sign_up_continues_at_the_shared_callback() {
    let config = SignUpConfig::from_json(&format!(
        r#"{{
          "applications": [{{"clientId": "{CLIENT}", "displayName": "Woodgrove", "redirectUris": ["{CALLBACK}"]}}],
          "userFlows": [{{"id": "signup", "identityProviders": ["emailOtp", "{IDP}"], "applications": ["{CLIENT}"],
            "attributes": [{{"name": "email"}}, {{"name": "givenName"}}]}}]
        }}"#
    ))
    .unwrap();
    let outbox = Arc::new(Outbox::new());
    let rng = SeededRandom::new(6);
    let gp = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url(BASE)
        .signing_key(SigningKey::new("k1", [42u8; 32]).unwrap())
        .redirect_url("https://app.contoso.example/")
        .store(Arc::new(MemoryStore::new()))
        .mail(outbox.clone())
        .sign_up(config)
        .http_client(Arc::new(guestpass::http::FnHttpClient::new(|_, _| {
            Err(guestpass::http::HttpError::Timeout)
        })))
        .identity_provider(
            Arc::new(FabrikamIdp),
            guestpass::idp::order::CandidateKind::Facebook,
        )
        .token_keys(TokenKeys::new(
            TokenSigningKey::generate("t1", TokenAlgorithm::Es256, &rng).unwrap(),
        ))
        .build()
        .unwrap();
    let admin = TokenKeys::new(TokenSigningKey::generate("admin-1", TokenAlgorithm::Es256, &rng).unwrap());
    let issuer = AdminTokenIssuer::new(&admin, gp.config().public_base_url()).unwrap();
    let f = Fixture {
        app: web::router(gp.clone(), WebConfig::new(issuer)),
        gp,
        outbox,
        clock: Arc::new(FixedClock::new(time::OffsetDateTime::now_utc())),
    };

    let mut jar = Jar::default();
    let res = f
        .get(
            &mut jar,
            &format!(
                "/signup?client_id={CLIENT}&redirect_uri={}&state=s1&nonce=n1",
                enc(CALLBACK)
            ),
            None,
        )
        .await;
    assert_eq!(res.location(), format!("{BASE}signup/step"));
    let choose = f.get(&mut jar, "/signup/step", None).await;
    assert!(
        choose.body.contains("name=\"provider\" value=\"emailOtp\""),
        "{}",
        choose.body
    );
    assert!(
        choose
            .body
            .contains(&format!("name=\"provider\" value=\"{IDP}\">Continue with {IDP}<")),
        "{}",
        choose.body
    );

    // An unknown provider: the choice again, the error next to it.
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=chooseProvider&provider=evil", choose.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body.contains("id=\"provider-error\" role=\"alert\""),
        "{}",
        res.body
    );

    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=chooseProvider&provider={IDP}", res.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let authorize = url::Url::parse(res.location()).unwrap();
    assert_eq!(authorize.host_str(), Some("login.fabrikam.example"));
    let q: BTreeMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(q["redirect_uri"], format!("{BASE}federation/callback/{IDP}"));

    // A reload while away: the waiting page.
    let waiting = f.get(&mut jar, "/signup/step", None).await;
    assert!(
        waiting.body.contains("Waiting for your sign-in with"),
        "{}",
        waiting.body
    );

    // Back from the provider, also with a stale redemption cookie around:
    // the sign-up flow waits for this provider, so it gets the callback.
    jar.0.insert("__Host-gp-redeem".into(), "stale".into());
    let back = f
        .get(
            &mut jar,
            &format!("/federation/callback/{IDP}?code=c1&state={}", enc(&q["state"])),
            None,
        )
        .await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    assert_eq!(back.location(), format!("{BASE}signup/step"));
    // This provider's address is not trusted as proven: a code goes to it.
    let page = f.get(&mut jar, "/signup/step", None).await;
    assert!(
        page.body.contains("name=\"action\" value=\"submitPasscode\""),
        "{}",
        page.body
    );
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitPasscode&code={}",
                page.csrf(),
                f.passcode()
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let form = f.get(&mut jar, "/signup/step", None).await;
    assert!(
        form.body
            .contains(&format!("value=\"{ADA}\" autocomplete=\"email\" readonly")),
        "{}",
        form.body
    );
    let done = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitAttributes&email={}&givenName=Ada",
                form.csrf(),
                enc(ADA)
            ),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.hidden("state"), "s1");

    // Without any cookie the callback explains, and follows nothing.
    let res = f
        .get(
            &mut Jar::default(),
            &format!("/federation/callback/{IDP}?code=c1&state=x"),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.headers.get(header::LOCATION).is_none());
}

#[tokio::test]
async fn step_up_with_an_authenticator_through_the_sign_up_pages() {
    use guestpass::idp::totp::{TotpSecret, step_at};
    let mfa = guestpass::policy::PolicySet::from_json(
        r#"{"policies": [{
          "displayName": "Require MFA", "state": "enabled",
          "conditions": {"users": {"includeUsers": ["All"]},
                         "applications": {"includeApplications": ["All"]}, "clientAppTypes": ["all"]},
          "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}]}"#,
    )
    .unwrap();
    let f = fixture_over(|b| b.conditional_access(mfa));
    let mut jar = Jar::default();
    let email_page = f.sign_in(&mut jar, None).await;
    let form = f.prove_address(&mut jar, &email_page).await;
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=submitAttributes&email={}&givenName=Ada&{EXT}tier=gold",
                form.csrf(),
                enc(ADA)
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);

    let choose = f.get(&mut jar, "/signup/step", None).await;
    assert!(choose.body.contains("value=\"authenticator\""), "{}", choose.body);
    assert!(choose.body.contains("<label for=\"m-app\">"), "{}", choose.body);
    // A method that is not offered: the choice again, the error next to it.
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=chooseStepUp&method=sms", choose.csrf()),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body.contains("id=\"method-error\" role=\"alert\""),
        "{}",
        res.body
    );
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!(
                "csrf_token={}&action=chooseStepUp&method=authenticator",
                res.csrf()
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);

    let enrol = f.get(&mut jar, "/signup/step", None).await;
    assert!(enrol.body.contains("href=\"otpauth:"), "{}", enrol.body);
    let marker = "<code id=\"secret\">";
    let start = enrol.body.find(marker).unwrap() + marker.len();
    let end = enrol.body[start..].find('<').unwrap() + start;
    let app = TotpSecret::from_base32(&enrol.body[start..end]).unwrap();
    let now = guestpass::clock::Clock::now(f.clock.as_ref());
    let code = app.code_at_step(step_at(now));
    let wrong = app.code_at_step(step_at(now) + 100);
    let res = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=submitStepUpCode&code={wrong}", enrol.csrf()),
        )
        .await;
    assert!(res.status.is_client_error(), "{}", res.status);
    assert!(
        res.body.contains("id=\"code-error\" role=\"alert\""),
        "{}",
        res.body
    );
    let done = f
        .post(
            &mut jar,
            "/signup/step",
            &format!("csrf_token={}&action=submitStepUpCode&code={code}", res.csrf()),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(
        done.csp()
            .contains("form-action 'self' https://app.contoso.example;")
    );
    let res = f
        .post(
            &mut jar,
            "/auth/callback",
            &format!(
                "id_token={}&state={}",
                done.hidden("id_token"),
                done.hidden("state")
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let home = f.get(&mut jar, "/home", None).await;
    assert!(home.body.contains("\"mfa\""), "{}", home.body);
}
