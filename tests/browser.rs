//! End-to-end tests in a real headless Chromium driven over WebDriver
//! (chromedriver and fantoccini): the redemption pages as a guest's browser
//! sees them, with real cookies, real form posts and real redirects.
//!
//! Each test starts its own chromedriver (on a free port, killed with its
//! browser when the test ends, also when it fails), its own browser profile
//! in a temporary directory, and its own server on `127.0.0.1:<free port>`;
//! it saves a screenshot of its final page as `target/e2e/<test>.png`.
//!
//! Without `chromedriver` or Chromium the tests print a notice and pass,
//! unless `GUESTPASS_E2E=1` is set: then they fail naming what is missing.
//! `GUESTPASS_CHROMIUM` and `GUESTPASS_CHROMEDRIVER` name other binaries
//! than `/usr/bin/chromium` and the `chromedriver` on `PATH`.
//!
//! ```text
//! GUESTPASS_E2E=1 cargo test --all-features --test browser -- --test-threads=1
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod e2e;

use std::sync::Arc;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use fantoccini::{Client, Locator};
use guestpass::directory::{ExternalUserState, MemoryStore};
use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
use guestpass::graph::auth::AdminTokenIssuer;
use guestpass::id::Id;
use guestpass::keys::SigningKey;
use guestpass::mail::{MessageKind, Outbox};
use guestpass::random::SeededRandom;
use guestpass::web::{self, WebConfig};
use guestpass::{GuestPass, InvitationRequest, Inviter};
use url::Url;

use e2e::*;

// ---------------------------------------------------------------------------
// The redemption pages under test.
// ---------------------------------------------------------------------------

const ALICE: &str = "alice@fabrikam.example";

/// The text the application page behind the redirect URL shows.
const APP_TEXT: &str = "Welcome to the Contoso app";

/// The service with its redemption pages, served with an application page
/// at `/app`, the invitations' redirect URL.
struct RedemptionApp {
    server: TestServer,
    gp: GuestPass,
    outbox: Arc<Outbox>,
}

impl RedemptionApp {
    async fn start() -> RedemptionApp {
        let outbox = Arc::new(Outbox::new());
        let mut service = None;
        let server = TestServer::start(|base| {
            let gp = GuestPass::builder()
                .tenant("contoso", "Contoso", "contoso.example")
                .public_base_url(base.as_str())
                .signing_key(SigningKey::new("k1", [42u8; 32]).unwrap())
                .redirect_url(base.join("app").unwrap().as_str())
                .store(Arc::new(MemoryStore::new()))
                .mail(outbox.clone())
                .build()
                .unwrap();
            let rng = SeededRandom::new(7);
            let keys =
                TokenKeys::new(TokenSigningKey::generate("admin-1", TokenAlgorithm::Es256, &rng).unwrap());
            let issuer = AdminTokenIssuer::new(&keys, gp.config().public_base_url()).unwrap();
            service = Some(gp.clone());
            Router::new()
                .route(
                    "/app",
                    get(|| async {
                        Html(format!(
                            "<!DOCTYPE html><html lang=\"en\"><head><title>Contoso app</title></head>\
                             <body><h1 id=\"app\">{APP_TEXT}</h1></body></html>"
                        ))
                    }),
                )
                .merge(web::router(gp, WebConfig::new(issuer)))
        })
        .await;
        RedemptionApp {
            server,
            gp: service.unwrap(),
            outbox,
        }
    }

    /// The redirect URL of the invitations.
    fn redirect_url(&self) -> Url {
        self.server.url("app")
    }

    /// Invites Alice (the service sends the invitation mail); her user id.
    async fn invite(&self) -> Id {
        let req = InvitationRequest::new(ALICE, self.redirect_url().as_str());
        let inv = self.gp.invite(&Inviter::admin(None), req).await.unwrap();
        inv.invited_user.id
    }

    /// The redemption link of the newest invitation mail to Alice.
    async fn invitation_link(&self) -> String {
        let mail = wait_for_mail(&self.outbox, ALICE, MessageKind::Invitation, 0).await;
        let link = link_in(&mail, self.server.url("redeem?ticket=").as_str());
        assert!(link.starts_with(self.server.base.as_str()), "{link}");
        link
    }

    /// The passcode of the passcode mail to Alice after `seen` of them.
    async fn passcode(&self, seen: usize) -> String {
        let mail = wait_for_mail(&self.outbox, ALICE, MessageKind::Passcode, seen).await;
        mail.code(8)
            .expect("no 8-digit code in the passcode mail")
            .to_owned()
    }

    async fn state_of(&self, user: Id) -> Option<ExternalUserState> {
        self.gp.user(user).await.unwrap().external_user_state
    }
}

/// Opens the invitation link, checks the page and accepts the invitation:
/// the browser is then on the passcode page.
async fn open_and_accept(c: &Client, app: &RedemptionApp, link: &str, button: &str) {
    c.goto(link).await.unwrap();
    let text = wait_css(c, "main").await.text().await.unwrap();
    assert!(text.contains("Contoso"), "{text}");
    assert!(text.contains(ALICE), "{text}");
    let passcodes = mail_count(&app.outbox, ALICE, MessageKind::Passcode);
    wait_button(c, button).await.click().await.unwrap();
    wait_css(c, "input#code").await;
    wait_url(c, &app.server.url("redeem/step")).await;
    assert!(
        mail_count(&app.outbox, ALICE, MessageKind::Passcode) > passcodes,
        "accepting sent no passcode"
    );
}

/// Types `code` into the passcode field and submits it.
async fn submit_code(c: &Client, code: &str) {
    let field = wait_css(c, "input#code").await;
    field.clear().await.unwrap();
    field.send_keys(code).await.unwrap();
    wait_button(c, "Verify").await.click().await.unwrap();
}

/// Accepts on the consent page; the browser is then on the redirect URL.
async fn consent_and_land(c: &Client, app: &RedemptionApp) {
    let text = wait_css(c, "main ul").await.text().await.unwrap();
    assert!(text.contains("email address"), "{text}");
    wait_button(c, "Accept").await.click().await.unwrap();
    wait_url(c, &app.redirect_url()).await;
    let landed = wait_css(c, "h1#app").await.text().await.unwrap();
    assert_eq!(landed, APP_TEXT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_redeems_an_invitation_in_chromium() {
    let Some(browser) = Browser::start(
        "a_guest_redeems_an_invitation_in_chromium",
        BrowserOptions::default(),
    )
    .await
    else {
        return;
    };
    let app = RedemptionApp::start().await;
    browser
        .run(|c| async move {
            let user = app.invite().await;
            let link = app.invitation_link().await;
            open_and_accept(&c, &app, &link, "Accept invitation").await;
            assert_eq!(page_lang(&c).await, "en-US");

            // The `__Host-` cookie is kept: Chromium treats http://127.0.0.1
            // as a secure context.
            let cookies = c.get_all_cookies().await.unwrap();
            let cookie = cookies
                .iter()
                .find(|k| k.name() == "__Host-gp-redeem")
                .unwrap_or_else(|| {
                    panic!(
                        "no redemption cookie in {:?}",
                        cookies.iter().map(|k| k.name()).collect::<Vec<_>>()
                    )
                });
            assert_eq!(cookie.secure(), Some(true));
            assert_eq!(cookie.http_only(), Some(true));
            assert_eq!(cookie.path(), Some("/"));

            let code = app.passcode(0).await;
            submit_code(&c, &code).await;
            assert_eq!(
                app.state_of(user).await,
                Some(ExternalUserState::PendingAcceptance)
            );
            consent_and_land(&c, &app).await;
            assert_eq!(app.state_of(user).await, Some(ExternalUserState::Accepted));
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passcode_shows_the_error_at_the_field() {
    let Some(browser) = Browser::start(
        "a_wrong_passcode_shows_the_error_at_the_field",
        BrowserOptions::default(),
    )
    .await
    else {
        return;
    };
    let app = RedemptionApp::start().await;
    browser
        .run(|c| async move {
            let user = app.invite().await;
            let link = app.invitation_link().await;
            open_and_accept(&c, &app, &link, "Accept invitation").await;
            let code = app.passcode(0).await;
            let wrong: String = code.chars().map(|d| if d == '0' { '1' } else { '0' }).collect();
            submit_code(&c, &wrong).await;

            // The error is announced right after the field it is about.
            let alert = wait_css(&c, "[role=\"alert\"]").await;
            assert!(!alert.text().await.unwrap().trim().is_empty());
            assert_eq!(alert.attr("id").await.unwrap().as_deref(), Some("code-error"));
            let field = wait_css(&c, "input#code").await;
            assert_eq!(field.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
            assert_eq!(
                field.attr("aria-describedby").await.unwrap().as_deref(),
                Some("code-error")
            );
            let next = field
                .find(Locator::XPath("following-sibling::*[1]"))
                .await
                .unwrap();
            assert_eq!(next.attr("role").await.unwrap().as_deref(), Some("alert"));
            save_screenshot(&c, "a_wrong_passcode_shows_the_error_at_the_field.error")
                .await
                .unwrap();
            assert_eq!(
                app.state_of(user).await,
                Some(ExternalUserState::PendingAcceptance)
            );

            // The right code still works.
            submit_code(&c, &code).await;
            consent_and_land(&c, &app).await;
            assert_eq!(app.state_of(user).await, Some(ExternalUserState::Accepted));
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_german_browser_gets_the_german_pages() {
    let options = BrowserOptions {
        lang: Some("de-DE"),
        ..BrowserOptions::default()
    };
    let Some(browser) = Browser::start("a_german_browser_gets_the_german_pages", options).await else {
        return;
    };
    let app = RedemptionApp::start().await;
    browser
        .run(|c| async move {
            app.invite().await;
            let link = app.invitation_link().await;
            c.goto(&link).await.unwrap();
            wait_css(&c, "main").await;
            assert_eq!(page_lang(&c).await, "de-DE");
            let heading = wait_css(&c, "h1").await.text().await.unwrap();
            assert_eq!(heading, "Einladung annehmen");
            wait_button(&c, "Einladung annehmen").await.click().await.unwrap();
            let label = wait_css(&c, "label[for=\"code\"]").await.text().await.unwrap();
            assert_eq!(label, "Code aus der E-Mail");
            assert_eq!(page_lang(&c).await, "de-DE");
            wait_button(&c, "Bestätigen").await;
        })
        .await;
}
