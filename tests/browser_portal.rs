//! The demo portal (`examples/portal`) in headless Chromium: an
//! administrator invites a guest, the guest redeems from the dev mailbox
//! and lands on the demo app with their claims; a stranger signs up through
//! the user flow, with a validation error shown and fixed; and a sign-up to
//! payroll passes the MFA step-up with an authenticator app. Each test
//! leaves a screenshot of its final page under `target/e2e/`.
//!
//! Skipped (with a notice) when Chromium or chromedriver is missing, unless
//! `GUESTPASS_E2E=1`, which `.ci/run` sets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

#[path = "../examples/portal/app/mod.rs"]
mod app;
#[path = "e2e/mod.rs"]
mod e2e;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use e2e::{Browser, BrowserOptions, wait_button, wait_css, wait_url};
use fantoccini::{Client, Locator};
use guestpass::directory::ExternalUserState;
use url::Url;

/// A portal on a free port of 127.0.0.1 with the in-memory directory and
/// the dev mailbox; stopped on drop of the runtime.
struct Portal {
    base: Url,
    admin_link: String,
    running: Arc<app::Running>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Portal {
    async fn start() -> Portal {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "guestpass-portal-e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let options = app::Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            database: app::Database::Memory,
            data_dir: dir.clone(),
            ..app::Options::default()
        };
        let running = app::start(options).await.unwrap();
        Portal {
            base: running.base_url.clone(),
            admin_link: running.admin_link.expose().to_owned(),
            running: Arc::new(running),
            _dir: TempDir(dir),
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    fn gp(&self) -> guestpass::GuestPass {
        self.running.portal.live().gp
    }
}

/// Opens the newest mail to `to` in the dev mailbox; its body text.
async fn newest_mail(c: &Client, portal: &Portal, to: &str) -> String {
    c.goto(portal.url("dev/mailbox").as_str()).await.unwrap();
    wait_css(c, "table#messages").await;
    let xpath = format!("//table[@id='messages']//tr[td[1][normalize-space(.)='{to}']][1]//a");
    let link = c.find(Locator::XPath(&xpath)).await.unwrap();
    link.click().await.unwrap();
    wait_css(c, "#mail-body").await.text().await.unwrap()
}

/// The 8-digit code in the newest mail to `to`.
async fn code_from_mailbox(c: &Client, portal: &Portal, to: &str) -> String {
    let text = newest_mail(c, portal, to).await;
    text.split(|ch: char| !ch.is_ascii_digit())
        .find(|w| w.len() == 8)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let field = wait_css(c, css).await;
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// From an app page: the sign-in link, the address and the code from the
/// mailbox; the browser is then past the passcode page.
async fn sign_in_with_passcode(c: &Client, portal: &Portal, email: &str) {
    wait_css(c, "a#sign-in").await.click().await.unwrap();
    type_into(c, "input#email", email).await;
    // The portal sends one code per address and second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    wait_button(c, "Continue").await.click().await.unwrap();
    wait_css(c, "input#code").await;
    let code = code_from_mailbox(c, portal, email).await;
    c.goto(portal.url("signup/step").as_str()).await.unwrap();
    type_into(c, "input#code", &code).await;
    wait_button(c, "Verify").await.click().await.unwrap();
}

/// Fills the attribute form of the portal's user flow with `postal_code`.
async fn fill_attributes(c: &Client, name: &str, postal_code: &str) {
    type_into(c, "#f-displayName", name).await;
    type_into(c, "#f-givenName", name).await;
    type_into(c, "#f-surname", "Tester").await;
    wait_css(c, "#f-country option[value='DE']")
        .await
        .click()
        .await
        .unwrap();
    type_into(c, "#f-postalCode", postal_code).await;
    wait_button(c, "Continue").await.click().await.unwrap();
}

/// On the completion page: continue to the app and check the claims.
async fn continue_to_claims(c: &Client, portal: &Portal, path: &str, email: &str) -> String {
    // The completion page (not a page before it with a Continue button).
    wait_css(c, "form input[name='id_token']").await;
    wait_button(c, "Continue").await.click().await.unwrap();
    wait_url(c, &portal.url(path)).await;
    let claims = wait_css(c, "table#claims").await.text().await.unwrap();
    assert!(claims.contains(email), "{claims}");
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_invites_and_the_guest_lands_on_the_app_with_claims() {
    let name = "portal_invitation_to_claims";
    let Some(browser) = Browser::start(name, BrowserOptions::default()).await else {
        return;
    };
    let portal = Portal::start().await;
    let guest = "ada@fabrikam.example";
    browser
        .run(move |c| async move {
            // The administrator signs in with the printed link and invites.
            c.goto(&portal.admin_link).await.unwrap();
            wait_button(&c, "Sign in as administrator")
                .await
                .click()
                .await
                .unwrap();
            wait_url(&c, &portal.url("admin")).await;
            type_into(&c, "input#email", guest).await;
            type_into(&c, "input#display_name", "Ada").await;
            wait_css(&c, "button#invite").await.click().await.unwrap();
            let notice = wait_css(&c, "p.notice").await.text().await.unwrap();
            assert!(notice.contains("invitation was sent"), "{notice}");

            // The guest opens the invitation from the dev mailbox.
            newest_mail(&c, &portal, guest).await;
            let xpath = "//pre[@id='mail-body']//a[contains(@href, '/redeem?ticket=')]";
            c.find(Locator::XPath(xpath))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            wait_button(&c, "Accept invitation").await.click().await.unwrap();
            wait_css(&c, "input#code").await;
            let code = code_from_mailbox(&c, &portal, guest).await;
            c.goto(portal.url("redeem/step").as_str()).await.unwrap();
            type_into(&c, "input#code", &code).await;
            wait_button(&c, "Verify").await.click().await.unwrap();
            wait_button(&c, "Accept").await.click().await.unwrap();
            wait_url(&c, &portal.url("app")).await;
            let users = portal.gp().users().await.unwrap();
            assert_eq!(users.len(), 1);
            assert_eq!(users[0].external_user_state, Some(ExternalUserState::Accepted));

            // The app signs the guest in through the user flow.
            sign_in_with_passcode(&c, &portal, guest).await;
            let claims = continue_to_claims(&c, &portal, "app", guest).await;
            assert!(claims.contains(&users[0].id.to_string()), "{claims}");
            assert_eq!(
                portal.gp().users().await.unwrap().len(),
                1,
                "the sign-in made a second user"
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_signs_up_and_fixes_a_validation_error() {
    let name = "portal_sign_up_with_validation";
    let Some(browser) = Browser::start(name, BrowserOptions::default()).await else {
        return;
    };
    let portal = Portal::start().await;
    let stranger = "zoe@example.org";
    browser
        .run(move |c| async move {
            c.goto(portal.url("app").as_str()).await.unwrap();
            sign_in_with_passcode(&c, &portal, stranger).await;
            fill_attributes(&c, "Zoe", "not a postal code").await;
            let error = wait_css(&c, "#f-postalCode-error").await.text().await.unwrap();
            assert!(error.contains("Postal Code"), "{error}");
            let invalid = wait_css(&c, "#f-postalCode")
                .await
                .attr("aria-invalid")
                .await
                .unwrap();
            assert_eq!(invalid.as_deref(), Some("true"));
            assert!(portal.gp().users().await.unwrap().is_empty());
            type_into(&c, "#f-postalCode", "10115").await;
            wait_button(&c, "Continue").await.click().await.unwrap();
            continue_to_claims(&c, &portal, "app", stranger).await;
            let users = portal.gp().users().await.unwrap();
            assert_eq!(users.len(), 1);
            assert_eq!(
                users[0].attributes.get("postalCode").and_then(|v| v.as_str()),
                Some("10115")
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payroll_asks_for_an_authenticator_app() {
    let name = "portal_payroll_mfa_step_up";
    let Some(browser) = Browser::start(name, BrowserOptions::default()).await else {
        return;
    };
    let portal = Portal::start().await;
    let stranger = "max@example.org";
    browser
        .run(move |c| async move {
            c.goto(portal.url("payroll").as_str()).await.unwrap();
            sign_in_with_passcode(&c, &portal, stranger).await;
            fill_attributes(&c, "Max", "10115").await;

            // Conditional access: MFA with a new authenticator app.
            wait_css(&c, "input#m-app").await.click().await.unwrap();
            wait_button(&c, "Continue").await.click().await.unwrap();
            let secret = wait_css(&c, "code#secret").await.text().await.unwrap();
            let secret = guestpass::idp::totp::TotpSecret::from_base32(secret.trim()).unwrap();
            let step = guestpass::idp::totp::step_at(time::OffsetDateTime::now_utc());
            type_into(&c, "input#code", &secret.code_at_step(step)).await;
            wait_button(&c, "Verify").await.click().await.unwrap();

            // Self-service sign-ups are guests: they accept the guest terms
            // for payroll.
            wait_button(&c, "Accept").await.click().await.unwrap();
            let claims = continue_to_claims(&c, &portal, "payroll", stranger).await;
            assert!(claims.contains("mfa"), "{claims}");
            assert!(claims.contains("urn:guestpass:acr:mfa"), "{claims}");
        })
        .await;
}
