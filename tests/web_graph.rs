//! The axum adapter of the Graph-compatible admin API (`guestpass::web`),
//! driven in process with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use guestpass::audit::{AuditKind, MemoryAudit};
use guestpass::clock::FixedClock;
use guestpass::directory::{MemoryStore, UserType};
use guestpass::email::EmailAddress;
use guestpass::flow::token::{self, CompletionClaims, TokenAlgorithm, TokenKeys, TokenSigningKey};
use guestpass::graph::auth::{AdminTokenIssuer, Scope, Scopes};
use guestpass::graph::invitations::MAX_INVITATION_BODY_BYTES;
use guestpass::id::Id;
use guestpass::keys::SigningKey;
use guestpass::mail::Outbox;
use guestpass::random::SeededRandom;
use guestpass::web::{self, WebConfig, security};
use guestpass::{GuestPass, InvitationRequest, Inviter};
use serde_json::{Value, json};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tower::ServiceExt as _;

const BASE: &str = "https://guests.contoso.example/";
const ROOT: &str = "https://guests.contoso.example/v1.0";
const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);
const REDIRECT: &str = "https://myapp.contoso.com";
const EXAMPLE: &str =
    r#"{"invitedUserEmailAddress": "admin@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com"}"#;

struct Fixture {
    app: Router,
    gp: GuestPass,
    audit: Arc<MemoryAudit>,
    issuer: AdminTokenIssuer,
    keys: TokenKeys,
    rng: SeededRandom,
}

fn fixture_with(token_keys: bool) -> Fixture {
    let rng = SeededRandom::new(7);
    let keys = TokenKeys::new(TokenSigningKey::generate("ring-1", TokenAlgorithm::Es256, &rng).unwrap());
    let clock = Arc::new(FixedClock::new(NOW));
    let audit = Arc::new(MemoryAudit::new());
    let mut builder = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url(BASE)
        .signing_key(SigningKey::new("k1", [42u8; 32]).unwrap())
        .redirect_url(REDIRECT)
        .store(Arc::new(MemoryStore::new()))
        .mail(Arc::new(Outbox::new()))
        .clock(clock.clone())
        .audit(audit.clone())
        .random(Arc::new(SeededRandom::new(8)));
    if token_keys {
        builder = builder.token_keys(keys.clone());
    }
    let gp = builder.build().unwrap();
    // One ring for completion tokens and admin tokens: the two must still
    // never pass for each other.
    let issuer = AdminTokenIssuer::new(&keys, gp.config().public_base_url()).unwrap();
    let config = WebConfig::new(issuer.clone())
        .clock(clock)
        .random(Arc::new(SeededRandom::new(9)));
    let app = web::router(gp.clone(), config);
    Fixture {
        app,
        gp,
        audit,
        issuer,
        keys,
        rng,
    }
}

fn fixture() -> Fixture {
    fixture_with(true)
}

impl Fixture {
    fn token(&self, scopes: &[Scope]) -> String {
        self.token_at(scopes, NOW, Duration::hours(1))
    }

    fn token_at(&self, scopes: &[Scope], at: OffsetDateTime, lifetime: Duration) -> String {
        let admin = Id::random(&self.rng).unwrap();
        let scopes: Scopes = scopes.iter().copied().collect();
        let t = self
            .issuer
            .issue(admin, &scopes, lifetime, at, &self.rng)
            .unwrap();
        format!("Bearer {}", t.expose())
    }

    fn admin(&self) -> String {
        self.token(&[Scope::UserReadWriteAll])
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.unwrap();
        let answer = Answer {
            status: parts.status,
            headers: parts.headers,
            body: bytes.to_vec(),
        };
        answer.assert_security_headers();
        answer
    }

    async fn post_invitation(
        &self,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Answer {
        let mut req = Request::post("/v1.0/invitations");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        if let Some(c) = content_type {
            req = req.header(header::CONTENT_TYPE, c);
        }
        self.send(req.body(body.into()).unwrap()).await
    }

    async fn get(&self, uri: &str, auth: Option<&str>) -> Answer {
        let mut req = Request::get(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn patch(&self, uri: &str, auth: &str, body: &str) -> Answer {
        let req = Request::patch(uri)
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(req).await
    }

    async fn delete(&self, uri: &str, auth: Option<&str>) -> Answer {
        let mut req = Request::delete(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// The kinds of the audit events recorded so far, oldest first.
    fn audited(&self) -> Vec<AuditKind> {
        self.audit.events().into_iter().map(|e| e.kind).collect()
    }

    async fn invite_directly(&self, address: &str, user_type: UserType) -> Id {
        let mut req = InvitationRequest::new(address, REDIRECT);
        req.invited_user_type = Some(user_type);
        req.invited_user_display_name = Some(format!("{user_type:?} {address}"));
        self.gp
            .invite(&Inviter::admin(None), req)
            .await
            .unwrap()
            .invited_user
            .id
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: impl header::AsHeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn assert_security_headers(&self) {
        assert_eq!(
            self.header(header::CONTENT_SECURITY_POLICY),
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        assert_eq!(
            self.header(header::CONTENT_SECURITY_POLICY),
            security::CONTENT_SECURITY_POLICY
        );
        assert_eq!(self.header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(self.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(self.header(header::REFERRER_POLICY), "no-referrer");
        assert!(!self.header(header::CACHE_CONTROL).is_empty(), "no Cache-Control");
    }

    /// Graph's error body with `status` and `code`, tied to the request id.
    fn assert_graph_error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header(header::CONTENT_TYPE), "application/json");
        assert_eq!(self.header(header::CACHE_CONTROL), "no-store");
        let v = self.json();
        let error = &v["error"];
        assert_eq!(error["code"], code, "{v}");
        assert_eq!(error["innerError"]["date"], "2026-03-01T09:00:00", "{v}");
        let id = self.header("request-id");
        assert!(id.parse::<Id>().is_ok(), "request-id `{id}`");
        assert_eq!(error["innerError"]["request-id"], id, "{v}");
        assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
        error["message"].as_str().unwrap_or_default().to_owned()
    }
}

#[tokio::test]
async fn the_documented_example_creates_an_invitation() {
    let f = fixture();
    let req = Request::post("/v1.0/invitations")
        .header(header::AUTHORIZATION, f.token(&[Scope::UserInviteAll]))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header("client-request-id", "my-client-id-1")
        .body(Body::from(EXAMPLE))
        .unwrap();
    let a = f.send(req).await;
    assert_eq!(
        a.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(a.header(header::CACHE_CONTROL), "no-store");
    assert_eq!(a.header(header::CONTENT_TYPE), "application/json");
    assert_eq!(a.header("client-request-id"), "my-client-id-1");
    assert!(a.header("request-id").parse::<Id>().is_ok());
    let v = a.json();
    assert_eq!(
        v["@odata.context"],
        format!("{ROOT}/$metadata#invitations/$entity")
    );
    let id: Id = v["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(a.header(header::LOCATION), format!("{ROOT}/invitations/{id}"));
    assert_eq!(v["invitedUserEmailAddress"], "admin@fabrikam.com");
    assert_eq!(v["inviteRedirectUrl"], REDIRECT);
    assert_eq!(v["status"], "PendingAcceptance");
    assert_eq!(v["invitedUserType"], "Guest");
    assert_eq!(v["sendInvitationMessage"], false);
    let redeem = v["inviteRedeemUrl"].as_str().unwrap();
    assert!(redeem.starts_with(BASE), "{redeem}");
    let user: Id = v["invitedUser"]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(f.gp.user(user).await.unwrap().user_type, UserType::Guest);

    // Without a client id, `client-request-id` repeats the request id.
    let a = f
        .post_invitation(Some(&f.admin()), Some("application/json"), EXAMPLE)
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("client-request-id"), a.header("request-id"));
}

#[tokio::test]
async fn host_headers_do_not_change_links() {
    let f = fixture();
    let req = Request::post("http://evil.example/v1.0/invitations")
        .header(header::HOST, "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "http")
        .header("forwarded", "host=evil.example;proto=http")
        .header(header::AUTHORIZATION, f.admin())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(EXAMPLE))
        .unwrap();
    let a = f.send(req).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let v = a.json();
    assert!(v["inviteRedeemUrl"].as_str().unwrap().starts_with(BASE));
    assert!(a.header(header::LOCATION).starts_with(ROOT));
    assert!(!String::from_utf8_lossy(&a.body).contains("evil"));
    assert!(!a.header(header::LOCATION).contains("evil"));

    let req = Request::get("/v1.0/users?$top=1")
        .header(header::HOST, "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header(header::AUTHORIZATION, f.admin())
        .body(Body::empty())
        .unwrap();
    f.invite_directly("second@fabrikam.example", UserType::Guest)
        .await;
    let a = f.send(req).await;
    let v = a.json();
    assert!(v["@odata.nextLink"].as_str().unwrap().starts_with(ROOT), "{v}");
    assert!(!String::from_utf8_lossy(&a.body).contains("evil"));
}

#[tokio::test]
async fn tokens_are_checked_before_anything_else() {
    let f = fixture();
    let invite = |auth: Option<String>| {
        let f = &f;
        async move {
            f.post_invitation(auth.as_deref(), Some("application/json"), EXAMPLE)
                .await
        }
    };

    // Missing: a bare challenge.
    let a = invite(None).await;
    let m = a.assert_graph_error(401, "InvalidAuthenticationToken");
    assert_eq!(m, "access token is empty");
    assert_eq!(a.header(header::WWW_AUTHENTICATE), "Bearer");

    // Missing, with a body that does not even parse: still 401.
    let a = f.post_invitation(None, Some("text/plain"), "{").await;
    a.assert_graph_error(401, "InvalidAuthenticationToken");

    let challenged = |a: &Answer| {
        assert_eq!(
            a.header(header::WWW_AUTHENTICATE),
            "Bearer error=\"invalid_token\""
        )
    };

    // Malformed.
    let a = invite(Some("Bearer not.a-jwt".into())).await;
    a.assert_graph_error(401, "InvalidAuthenticationToken");
    challenged(&a);
    let a = invite(Some("Basic YWRtaW46YWRtaW4=".into())).await;
    a.assert_graph_error(401, "InvalidAuthenticationToken");
    assert!(a.header(header::WWW_AUTHENTICATE).starts_with("Bearer"));

    // Expired: issued two hours ago for one hour.
    let old = f.token_at(
        &[Scope::UserReadWriteAll],
        NOW - Duration::hours(2),
        Duration::hours(1),
    );
    let a = invite(Some(old)).await;
    let m = a.assert_graph_error(401, "InvalidAuthenticationToken");
    assert!(m.contains("expired"), "{m}");
    challenged(&a);

    // A completion token signed by the same ring is not an admin token.
    let claims = CompletionClaims {
        issuer: BASE.to_owned(),
        audience: ROOT.to_owned(),
        subject: Id::random(&f.rng).unwrap(),
        tenant_id: f.gp.config().tenant_object_id(),
        email: EmailAddress::parse("admin@contoso.example").unwrap(),
        identity_provider: "mail".to_owned(),
        user_type: UserType::Member,
        amr: vec!["otp".to_owned()],
        acr: None,
        nonce: None,
        token_id: token::new_token_id(&f.rng).unwrap(),
        lifetime: Duration::minutes(10),
    };
    let completion = token::issue(&f.keys, &claims, NOW).unwrap();
    let a = invite(Some(format!("Bearer {completion}"))).await;
    let m = a.assert_graph_error(401, "InvalidAuthenticationToken");
    assert!(m.contains("not an admin access token"), "{m}");
    challenged(&a);
    assert!(!String::from_utf8_lossy(&a.body).contains(&completion));

    // Valid, but without the scope.
    let a = invite(Some(f.token(&[Scope::UserReadAll]))).await;
    let m = a.assert_graph_error(403, "Authorization_RequestDenied");
    assert!(m.contains("User.Invite.All"), "{m}");
    assert!(
        a.header(header::WWW_AUTHENTICATE)
            .starts_with("Bearer error=\"insufficient_scope\"")
    );
    // `User.Invite.All` may invite, but not reset a redemption.
    let user = f.invite_directly("bob@fabrikam.example", UserType::Guest).await;
    let reset = json!({
        "invitedUserEmailAddress": "bob@fabrikam.example",
        "inviteRedirectUrl": REDIRECT,
        "resetRedemption": true,
        "invitedUser": {"id": user.to_string()},
    })
    .to_string();
    let a = f
        .post_invitation(
            Some(&f.token(&[Scope::UserInviteAll])),
            Some("application/json"),
            reset.clone(),
        )
        .await;
    let m = a.assert_graph_error(403, "Authorization_RequestDenied");
    assert!(m.contains("reset redemption"), "{m}");
    let a = f
        .post_invitation(Some(&f.admin()), Some("application/json"), reset)
        .await;
    assert_eq!(
        a.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(a.json()["resetRedemption"], true);

    // Reading needs a read scope too.
    let a = f.get("/v1.0/users", None).await;
    a.assert_graph_error(401, "InvalidAuthenticationToken");
    let a = f
        .get("/v1.0/users", Some(&f.token(&[Scope::UserInviteAll])))
        .await;
    a.assert_graph_error(403, "Authorization_RequestDenied");
}

#[tokio::test]
async fn bodies_are_checked() {
    let f = fixture();
    let auth = f.admin();
    let a = f
        .post_invitation(
            Some(&auth),
            Some("application/json"),
            "{\"invitedUserEmailAddress\": ",
        )
        .await;
    let m = a.assert_graph_error(400, "Request_BadRequest");
    assert!(m.starts_with("the request body is not valid JSON"), "{m}");

    let unknown = r#"{"invitedUserEmailAddress": "a@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "foo": 1}"#;
    let a = f
        .post_invitation(Some(&auth), Some("application/json"), unknown)
        .await;
    let m = a.assert_graph_error(400, "Request_BadRequest");
    assert_eq!(m, "property `foo` does not exist on type `invitation`");

    let a = f.post_invitation(Some(&auth), Some("text/plain"), EXAMPLE).await;
    a.assert_graph_error(415, "Request_UnsupportedMediaType");
    let a = f.post_invitation(Some(&auth), None, EXAMPLE).await;
    a.assert_graph_error(415, "Request_UnsupportedMediaType");

    // An unregistered redirect URL is the service's 400.
    let other = r#"{"invitedUserEmailAddress": "a@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com/other"}"#;
    let a = f
        .post_invitation(Some(&auth), Some("application/json"), other)
        .await;
    a.assert_graph_error(400, "Request_BadRequest");

    // Oversized: declared by `Content-Length` (refused before reading) ...
    let big = format!(
        r#"{{"invitedUserEmailAddress": "a@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "invitedUserDisplayName": "{}"}}"#,
        "x".repeat(MAX_INVITATION_BODY_BYTES)
    );
    let req = Request::post("/v1.0/invitations")
        .header(header::AUTHORIZATION, &auth)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    let a = f.send(req).await;
    let m = a.assert_graph_error(413, "Request_EntityTooLarge");
    assert_eq!(
        m,
        format!("the request body is larger than {MAX_INVITATION_BODY_BYTES} bytes")
    );
    // ... or not declared at all.
    let a = f
        .post_invitation(Some(&auth), Some("application/json"), big)
        .await;
    a.assert_graph_error(413, "Request_EntityTooLarge");

    // A smaller configured limit applies.
    let small = web::router(
        f.gp.clone(),
        WebConfig::new(f.issuer.clone())
            .clock(Arc::new(FixedClock::new(NOW)))
            .invitation_body_limit(32),
    );
    let res = small
        .oneshot(
            Request::post("/v1.0/invitations")
                .header(header::AUTHORIZATION, &auth)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(EXAMPLE))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(f.gp.users().await.unwrap().is_empty(), "nothing was written");
}

#[tokio::test]
async fn users_are_listed_with_filter_and_select() {
    let f = fixture();
    let g1 = f.invite_directly("g1@fabrikam.example", UserType::Guest).await;
    let g2 = f.invite_directly("g2@fabrikam.example", UserType::Guest).await;
    let m1 = f.invite_directly("m1@fabrikam.example", UserType::Member).await;
    let read = f.token(&[Scope::UserReadAll]);

    let a = f
        .get(
            "/v1.0/users?$filter=userType%20eq%20'Guest'&$select=displayName",
            Some(&read),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header(header::CACHE_CONTROL), "no-store");
    let v = a.json();
    assert_eq!(
        v["@odata.context"],
        format!("{ROOT}/$metadata#users(displayName)")
    );
    let values = v["value"].as_array().unwrap();
    let mut ids: Vec<String> = values
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected = vec![g1.to_string(), g2.to_string()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(!ids.contains(&m1.to_string()));
    for u in values {
        let mut keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["displayName", "id"], "{u}");
        assert!(u["displayName"].as_str().unwrap().starts_with("Guest "), "{u}");
    }

    // Everyone without a filter.
    let a = f.get("/v1.0/users", Some(&read)).await;
    assert_eq!(a.json()["value"].as_array().map(Vec::len), Some(3));

    let a = f
        .get("/v1.0/users?$filter=displayName%20eq%20'Alice'", Some(&read))
        .await;
    let m = a.assert_graph_error(400, "Request_UnsupportedQuery");
    assert!(m.contains("displayName"), "{m}");
    let a = f.get("/v1.0/users?$filter=userType%20eq", Some(&read)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = f.get("/v1.0/users?$orderby=displayName", Some(&read)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    a.json();
}

#[tokio::test]
async fn a_user_is_read_by_id() {
    let f = fixture();
    let id = f.invite_directly("g1@fabrikam.example", UserType::Guest).await;
    let read = f.token(&[Scope::UserReadAll]);
    let a = f
        .get(&format!("/v1.0/users/{id}?$select=mail,userType"), Some(&read))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.json(),
        json!({
            "@odata.context": format!("{ROOT}/$metadata#users(mail,userType)/$entity"),
            "id": id.to_string(),
            "mail": "g1@fabrikam.example",
            "userType": "Guest",
        })
    );
    let a = f.get("/v1.0/users/alice@fabrikam.example", Some(&read)).await;
    let m = a.assert_graph_error(400, "Request_BadRequest");
    assert_eq!(m, "invalid object identifier `alice@fabrikam.example`");
    let unknown = Id::random(&f.rng).unwrap();
    let a = f.get(&format!("/v1.0/users/{unknown}"), Some(&read)).await;
    a.assert_graph_error(404, "Request_ResourceNotFound");
    let a = f.get(&format!("/v1.0/users/{id}"), None).await;
    a.assert_graph_error(401, "InvalidAuthenticationToken");
}

#[tokio::test]
async fn users_are_patched() {
    let f = fixture();
    let id = f.invite_directly("g1@fabrikam.example", UserType::Guest).await;
    let uri = format!("/v1.0/users/{id}");
    let admin = f.admin();

    let a = f
        .patch(
            &uri,
            &admin,
            r#"{"displayName": "Alice Smith", "jobTitle": "Buyer", "userType": "Member"}"#,
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert!(a.body.is_empty());
    let v = f
        .get(
            &format!("{uri}?$select=displayName,jobTitle,userType"),
            Some(&admin),
        )
        .await
        .json();
    assert_eq!(v["displayName"], "Alice Smith");
    assert_eq!(v["jobTitle"], "Buyer");
    assert_eq!(v["userType"], "Member");
    // The change is audited by the property names, as the token's
    // administrator.
    let Some(AuditKind::UserUpdated {
        user_id,
        admin: by,
        properties,
    }) = f.audited().pop()
    else {
        panic!("the patch is audited: {:?}", f.audited());
    };
    assert_eq!(user_id, id);
    assert!(by.is_some(), "the token's subject is the administrator");
    assert_eq!(properties, ["displayName", "userType", "jobTitle"]);
    let version = || async { f.gp.store().user("contoso", id).await.unwrap().unwrap().version };
    let patched = version().await;

    // Clearing a profile attribute, and the empty patch.
    let a = f.patch(&uri, &admin, r#"{"jobTitle": null}"#).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let events = f.audited().len();
    let a = f.patch(&uri, &admin, "{}").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(version().await, patched + 1, "the empty patch writes nothing");
    assert_eq!(f.audited().len(), events, "and audits nothing");
    let v = f
        .get(&format!("{uri}?$select=jobTitle"), Some(&admin))
        .await
        .json();
    assert_eq!(v["jobTitle"], Value::Null);

    let a = f.patch(&uri, &admin, r#"{"favouriteColour": "blue"}"#).await;
    let m = a.assert_graph_error(400, "Request_BadRequest");
    assert!(m.contains("`favouriteColour`"), "{m}");
    let a = f.patch(&uri, &admin, r#"{"id": "x"}"#).await;
    let m = a.assert_graph_error(400, "Request_BadRequest");
    assert!(m.contains("`id`") && m.contains("read-only"), "{m}");
    let a = f.patch(&uri, &admin, r#"{"mail": "eve@evil.example"}"#).await;
    a.assert_graph_error(400, "Request_BadRequest");
    let v = f
        .get(&format!("{uri}?$select=mail,displayName"), Some(&admin))
        .await
        .json();
    assert_eq!(v["mail"], "g1@fabrikam.example");
    assert_eq!(v["displayName"], "Alice Smith");

    let unknown = Id::random(&f.rng).unwrap();
    let a = f
        .patch(
            &format!("/v1.0/users/{unknown}"),
            &admin,
            r#"{"displayName": "X"}"#,
        )
        .await;
    a.assert_graph_error(404, "Request_ResourceNotFound");
    let a = f.patch(&format!("/v1.0/users/{unknown}"), &admin, "{}").await;
    a.assert_graph_error(404, "Request_ResourceNotFound");

    let a = f
        .patch(&uri, &f.token(&[Scope::UserReadAll]), r#"{"displayName": "X"}"#)
        .await;
    a.assert_graph_error(403, "Authorization_RequestDenied");
    let req = Request::patch(&uri)
        .header(header::AUTHORIZATION, &admin)
        .header(header::CONTENT_TYPE, "application/xml")
        .body(Body::from("<x/>"))
        .unwrap();
    f.send(req)
        .await
        .assert_graph_error(415, "Request_UnsupportedMediaType");
}

#[tokio::test]
async fn users_are_deleted() {
    let f = fixture();
    let id = f.invite_directly("g1@fabrikam.example", UserType::Guest).await;
    let other = f.invite_directly("g2@fabrikam.example", UserType::Guest).await;
    let uri = format!("/v1.0/users/{id}");
    let admin = f.admin();

    let a = f.delete(&uri, None).await;
    a.assert_graph_error(401, "InvalidAuthenticationToken");
    let a = f.delete(&uri, Some(&f.token(&[Scope::UserReadAll]))).await;
    a.assert_graph_error(403, "Authorization_RequestDenied");
    let a = f.delete(&uri, Some(&f.token(&[Scope::UserInviteAll]))).await;
    a.assert_graph_error(403, "Authorization_RequestDenied");
    let a = f.delete("/v1.0/users/g1@fabrikam.example", Some(&admin)).await;
    let m = a.assert_graph_error(400, "Request_BadRequest");
    assert_eq!(m, "invalid object identifier `g1@fabrikam.example`");
    assert!(f.gp.user(id).await.is_ok(), "the user is still there");

    let a = f.delete(&uri, Some(&admin)).await;
    assert_eq!(
        a.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert!(a.body.is_empty());
    let Some(AuditKind::UserDeleted { user_id, admin: by }) = f.audited().pop() else {
        panic!("the deletion is audited: {:?}", f.audited());
    };
    assert_eq!(user_id, id);
    assert!(by.is_some(), "the token's subject is the administrator");

    // Gone: reading, patching and deleting it again answer 404.
    let a = f.get(&uri, Some(&admin)).await;
    a.assert_graph_error(404, "Request_ResourceNotFound");
    let a = f.patch(&uri, &admin, r#"{"displayName": "X"}"#).await;
    a.assert_graph_error(404, "Request_ResourceNotFound");
    let a = f.delete(&uri, Some(&admin)).await;
    let m = a.assert_graph_error(404, "Request_ResourceNotFound");
    assert_eq!(m, "user not found");
    let unknown = Id::random(&f.rng).unwrap();
    let a = f.delete(&format!("/v1.0/users/{unknown}"), Some(&admin)).await;
    a.assert_graph_error(404, "Request_ResourceNotFound");
    let listed = f.get("/v1.0/users", Some(&admin)).await.json();
    let ids: Vec<&str> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    assert_eq!(ids, [other.to_string()], "the other user stays");

    // The address may be invited again: a new user.
    let body = r#"{"invitedUserEmailAddress": "g1@fabrikam.example", "inviteRedirectUrl": "https://myapp.contoso.com"}"#;
    let a = f
        .post_invitation(Some(&admin), Some("application/json"), body)
        .await;
    assert_eq!(
        a.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let again = a.json()["invitedUser"]["id"].as_str().unwrap().to_owned();
    assert_ne!(again, id.to_string());
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_graphs_shape() {
    let f = fixture();
    let admin = f.admin();
    for uri in [
        "/v1.0",
        "/v1.0/",
        "/v1.0/groups",
        "/v1.0/users/x/manager",
        "/v1.0/me?$select=id",
    ] {
        let a = f.get(uri, Some(&admin)).await;
        let m = a.assert_graph_error(404, "Request_ResourceNotFound");
        assert!(m.starts_with("resource `/v1.0"), "{uri}: {m}");
    }
    for (method, uri) in [
        (Method::PUT, "/v1.0/users"),
        (Method::GET, "/v1.0/invitations"),
        (Method::POST, "/v1.0/users/0f8fad5b-d9cb-469f-a165-70867728950e"),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::AUTHORIZATION, &admin)
            .body(Body::empty())
            .unwrap();
        let a = f.send(req).await;
        let m = a.assert_graph_error(405, "Request_BadRequest");
        assert!(m.contains(method.as_str()), "{m}");
    }
    // Outside `/v1.0` the router has no opinion (the host's fallback answers),
    // but still sends the security headers.
    let a = f.get("/elsewhere", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_openapi_document_and_jwks_are_served() {
    let f = fixture();
    let a = f.get("/openapi.json", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(header::CONTENT_TYPE), "application/json");
    let v = a.json();
    assert_eq!(v["openapi"], "3.1.0");
    assert_eq!(v["servers"][0]["url"], "https://guests.contoso.example");
    assert!(
        v["paths"]["/v1.0/invitations"]["post"].is_object(),
        "{}",
        v["paths"]
    );
    assert!(v["paths"]["/v1.0/users"]["get"].is_object());

    let a = f.get("/.well-known/jwks.json", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(header::CACHE_CONTROL), "public, max-age=300");
    let v = a.json();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], "ring-1");
    assert!(keys[0].get("d").is_none(), "no private part");

    let without = fixture_with(false);
    let a = without.get("/.well-known/jwks.json", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_router_merges_into_a_host_app_with_its_own_fallback() {
    let f = fixture();
    let app = Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .fallback(|| async { (StatusCode::IM_A_TEAPOT, "host fallback") })
        .merge(f.app.clone());
    let res = app
        .clone()
        .oneshot(Request::get("/elsewhere").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
    let res = app
        .oneshot(Request::get("/v1.0/groups").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()[header::REFERRER_POLICY], "no-referrer");
    assert!(res.headers().contains_key("request-id"));
}
