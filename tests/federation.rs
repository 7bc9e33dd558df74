//! Federated sign-in end to end over real HTTP on loopback: a guest
//! redeems an invitation and a stranger signs up through the local OpenID
//! provider, with the binding rules between federated identities and
//! invited addresses.
#![cfg(feature = "reqwest")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "support/oidc_op.rs"]
mod oidc_op;

use std::sync::Arc;

use common::*;
use guestpass::audit::AuditKind;
use guestpass::directory::{DirectoryStore, EMAIL_OTP_ISSUER, ExternalUserState};
use guestpass::flow::machine::{FlowError, FlowState};
use guestpass::http::ReqwestClient;
use guestpass::idp::IdpError;
use guestpass::idp::order::CandidateKind;
use guestpass::idp::presets;
use guestpass::{ConsentDecision, Error, FlowAction, FlowStep, GuestPassBuilder, RedemptionStep};
use oidc_op::{Misbehaviour, OidcTestProvider, OpOptions, TestClient, TestUser};

const CALLBACK: &str = "https://guests.contoso.example/federation/callback/fabrikam";
const CLIENT_ID: &str = "contoso-guests";
const CLIENT_SECRET: &str = "contoso-secret-1";
const FABRIKAM: &str = "fabrikam";

/// A sign-up configuration offering `providers` (a JSON list body) and
/// collecting `givenName`.
fn offering(providers: &str) -> guestpass::flow::config::SignUpConfig {
    let json = signup_json(r#""attributes": [{"name": "givenName"}]"#).replace(
        r#""identityProviders": ["emailOtp"]"#,
        &format!(r#""identityProviders": [{providers}]"#),
    );
    guestpass::flow::config::SignUpConfig::from_json(&json).unwrap()
}

async fn provider() -> OidcTestProvider {
    let op = OidcTestProvider::start(OpOptions {
        clients: vec![TestClient::new(CLIENT_ID, CLIENT_SECRET, &[CALLBACK])],
        now: Some(T0.unix_timestamp()),
        ..OpOptions::default()
    })
    .await;
    op.set_user(TestUser::new("alice-at-fabrikam", "alice@fabrikam.example"));
    op
}

/// The harness with the local provider registered as Fabrikam's direct
/// federation (the authority for `fabrikam.example`).
fn with_fabrikam(op: &OidcTestProvider, f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder) -> Harness {
    let fabrikam = presets::direct_federation(
        FABRIKAM,
        "fabrikam.example",
        op.issuer(),
        CLIENT_ID,
        CLIENT_SECRET,
    )
    .unwrap();
    Harness::with(|b| {
        f(b.http_client(Arc::new(ReqwestClient::new().unwrap()))
            .passcode_policy(permissive_policy())
            .identity_provider(
                Arc::new(fabrikam),
                CandidateKind::DirectFederation {
                    domains: vec!["fabrikam.example".into()],
                },
            ))
    })
}

/// Follows the authorization request as a browser would (the provider
/// signs its current user in at once) and returns the callback's query.
async fn sign_in_at(url: &guestpass::idp::AuthorizationUrl) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(url.as_str()).send().await.unwrap();
    assert_eq!(response.status(), 302, "the provider redirects back");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(CALLBACK), "{location}");
    url::Url::parse(&location)
        .unwrap()
        .query()
        .unwrap_or_default()
        .to_owned()
}

/// Starts redeeming `ticket`: the order must send the guest to Fabrikam.
async fn start_at_fabrikam(h: &Harness, ticket: &str) -> (String, guestpass::idp::AuthorizationUrl) {
    let started = h.try_start(ticket).await.unwrap();
    let RedemptionStep::SignInWith { provider, url } = started.step else {
        panic!("expected a federated sign-in, got {:?}", started.step);
    };
    assert_eq!(provider, FABRIKAM);
    (started.handle.expose().to_owned(), url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_redeems_through_their_organisations_provider() {
    let op = provider().await;
    let h = with_fabrikam(&op, |b| b);
    let (inv, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let (handle, url) = start_at_fabrikam(&h, &ticket).await;
    assert_eq!(
        h.mails_of(guestpass::mail::MessageKind::Passcode).len(),
        0,
        "no passcode"
    );
    assert_eq!(h.session_step(&handle).await, "federation");
    assert_eq!(
        h.gp.redemption_step(&handle).await.unwrap(),
        RedemptionStep::AwaitingSignIn {
            provider: FABRIKAM.into()
        }
    );
    let query = sign_in_at(&url).await;
    let step = h.gp.redemption_callback(&handle, FABRIKAM, &query).await.unwrap();
    assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
    let redeemed = h.accept(&handle).await;
    assert_eq!(redeemed.user.id, inv.invited_user.id);
    assert_eq!(
        redeemed.user.external_user_state,
        Some(ExternalUserState::Accepted)
    );
    let ids: Vec<(String, String)> = redeemed
        .user
        .identities
        .iter()
        .map(|i| (i.issuer.clone(), i.issuer_assigned_id.clone()))
        .collect();
    assert_eq!(ids, [(op.issuer(), "alice-at-fabrikam".to_owned())]);
    let holder = h
        .store
        .user_by_identity(TENANT, &op.issuer(), "alice-at-fabrikam")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder.value.user.id, inv.invited_user.id);
    // The PKCE verifier went to the token endpoint; the callback cannot be replayed.
    let token = op.last_token_request().unwrap();
    assert!(token.param("code_verifier").is_some_and(|v| v.len() == 43));
    h.fails_unchanged(
        "a replayed callback",
        h.gp.redemption_callback(&handle, FABRIKAM, &query),
    )
    .await;
    assert_eq!(h.count_audit(|k| matches!(k, AuditKind::Redeemed { .. })), 1);
}

/// Steps and pages print the authorization request without its query
/// (state, nonce, challenge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_of_a_sign_in_step_hides_the_authorization_query() {
    let op = provider().await;
    let h = with_fabrikam(&op, |b| b);
    let (_, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let started = h.try_start(&ticket).await.unwrap();
    let RedemptionStep::SignInWith { url, .. } = &started.step else {
        panic!("expected a federated sign-in, got {:?}", started.step);
    };
    let state = url
        .as_url()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let shown = format!("{:?}", started.step);
    assert!(shown.contains("/authorize?.."), "{shown}");
    assert!(!shown.contains(&state), "{shown}");
    assert!(!shown.contains("code_challenge"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_of_the_organisation_links_nothing() {
    let op = provider().await;
    let h = with_fabrikam(&op, |b| b);
    let (inv, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let (handle, url) = start_at_fabrikam(&h, &ticket).await;
    op.set_user(TestUser::new("bob-at-fabrikam", "bob@fabrikam.example"));
    let query = sign_in_at(&url).await;
    h.fails_unchanged_with(
        "another account",
        h.gp.redemption_callback(&handle, FABRIKAM, &query),
        Error::Flow(FlowError::WrongAccount {
            expected: "alice@fabrikam.example".into(),
        }),
    )
    .await;
    assert!(h.user(inv.invited_user.id).await.value.user.identities.is_empty());
    assert!(
        h.store
            .user_by_identity(TENANT, &op.issuer(), "bob-at-fabrikam")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_sign_in_at_the_provider_changes_nothing() {
    let op = provider().await;
    let h = with_fabrikam(&op, |b| b);
    let (_, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let (handle, url) = start_at_fabrikam(&h, &ticket).await;
    op.set_mode(Misbehaviour::AuthorizeAccessDenied);
    let query = sign_in_at(&url).await;
    let e = h
        .fails_unchanged(
            "access denied",
            h.gp.redemption_callback(&handle, FABRIKAM, &query),
        )
        .await;
    assert!(matches!(e, Error::Idp(IdpError::AccessDenied { .. })), "{e:?}");
    // A forged callback for the flow is refused by its state.
    let e = h
        .fails_unchanged(
            "forged state",
            h.gp.redemption_callback(&handle, FABRIKAM, "code=abc&state=forged"),
        )
        .await;
    assert!(matches!(e, Error::Idp(IdpError::StateMismatch)), "{e:?}");
    // A callback arriving on another provider's path is refused.
    h.fails_unchanged_with(
        "another provider's path",
        h.gp.redemption_callback(&handle, "google", &query),
        Error::Flow(FlowError::FederationMismatch),
    )
    .await;
    // The guest opens the link again and signs in.
    op.clear_modes();
    let (again, url) = start_at_fabrikam(&h, &ticket).await;
    let query = sign_in_at(&url).await;
    h.gp.redemption_callback(&again, FABRIKAM, &query).await.unwrap();
    h.accept(&again).await;
}

/// Fabrikam's direct federation as the Woodgrove sign-up's only other
/// provider: the authority for `fabrikam.example`, nothing else.
fn woodgrove_signup(op: &OidcTestProvider, f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder) -> Harness {
    let fabrikam = presets::direct_federation(
        FABRIKAM,
        "fabrikam.example",
        op.issuer(),
        CLIENT_ID,
        CLIENT_SECRET,
    )
    .unwrap();
    signup_harness(offering(r#""emailOtp", "fabrikam""#), |b| {
        f(b.http_client(Arc::new(ReqwestClient::new().unwrap()))
            .identity_provider(
                Arc::new(fabrikam),
                CandidateKind::DirectFederation {
                    domains: vec!["fabrikam.example".into()],
                },
            ))
    })
}

/// Starts a sign-up, goes to Fabrikam, signs its current user in and
/// hands the callback over; returns the handle and the page.
async fn federated_sign_up(h: &Harness) -> (String, Result<guestpass::FlowPage, Error>) {
    let (handle, page) = h.start_flow(signup_request()).await;
    let page = h
        .post(&handle, &page, FlowAction::ChooseProvider(FABRIKAM.into()))
        .await
        .unwrap();
    let FlowStep::SignInWith { url, .. } = &page.step else {
        panic!("expected a federated sign-in, got {:?}", page.step);
    };
    let query = sign_in_at(url).await;
    let out = h.gp.sign_up_callback(&handle, FABRIKAM, &query).await;
    (handle, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domains_authority_proves_its_addresses_unverified() {
    let op = provider().await;
    let h = with_fabrikam(&op, |b| b);
    let mut alice = TestUser::new("alice-at-fabrikam", "alice@fabrikam.example");
    alice.email_verified = false;
    op.set_user(alice);
    let (_, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let (handle, url) = start_at_fabrikam(&h, &ticket).await;
    let query = sign_in_at(&url).await;
    let step = h.gp.redemption_callback(&handle, FABRIKAM, &query).await.unwrap();
    assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
    assert!(h.mails_of(guestpass::mail::MessageKind::Passcode).is_empty());
}

/// A provider asserting an address outside its domains (here: verified,
/// even) does not prove it: a passcode to the address does, and then the
/// provider's account signs up with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_outside_the_providers_domains_is_proven_with_a_passcode() {
    let op = provider().await;
    op.set_user(TestUser::new("frank-sub", "frank@woodgrove.example"));
    let h = woodgrove_signup(&op, |b| b);
    h.track_address("frank@woodgrove.example");
    let (handle, page) = federated_sign_up(&h).await;
    let page = page.unwrap();
    let FlowStep::EnterPasscode { sent_to, .. } = &page.step else {
        panic!("expected the passcode page, got {:?}", page.step);
    };
    assert_eq!(sent_to, "frank@woodgrove.example");
    let code = h.code_for("frank@woodgrove.example");
    let page = h
        .post(&handle, &page, FlowAction::SubmitPasscode(code.into()))
        .await
        .unwrap();
    assert!(
        matches!(page.step, FlowStep::CollectAttributes { .. }),
        "{:?}",
        page.step
    );
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Frank".to_vec()),
        )
        .await
        .unwrap();
    let FlowStep::Completed(done) = &page.step else {
        panic!("expected completion, got {:?}", page.step);
    };
    let user = h.gp.user(done.user_id).await.unwrap();
    let ids: Vec<(&str, &str)> = user
        .identities
        .iter()
        .map(|i| (i.issuer.as_str(), i.issuer_assigned_id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [(op.issuer().as_str(), "frank-sub")],
        "the provider's account, not the passcode's"
    );
}

/// A wrong code at that step links nothing: the flow waits for the right one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_for_a_federated_address_links_nothing() {
    let op = provider().await;
    op.set_user(TestUser::new("frank-sub", "frank@woodgrove.example"));
    let h = woodgrove_signup(&op, |b| b);
    let (handle, page) = federated_sign_up(&h).await;
    let page = page.unwrap();
    let wrong = wrong_code(&h.code_for("frank@woodgrove.example"));
    let page = h
        .post(&handle, &page, FlowAction::SubmitPasscode(wrong.into()))
        .await
        .unwrap();
    assert!(
        matches!(
            page.step,
            FlowStep::EnterPasscode {
                refused: Some(guestpass::error::PasscodeError::Incorrect { .. }),
                ..
            }
        ),
        "{:?}",
        page.step
    );
    assert!(h.gp.users().await.unwrap().is_empty());
    assert_eq!(h.flow(&handle).await.unwrap().value.state.name(), "passcode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_an_address_is_refused() {
    let op = provider().await;
    let mut nobody = TestUser::new("nobody-sub", "nobody@fabrikam.example");
    nobody
        .extra_claims
        .insert("email".into(), serde_json::Value::Null);
    op.set_user(nobody);
    let h = woodgrove_signup(&op, |b| b);
    let (handle, out) = federated_sign_up(&h).await;
    assert_eq!(
        out.unwrap_err(),
        Error::Flow(FlowError::EmailNotVerified {
            provider: FABRIKAM.into()
        })
    );
    assert_eq!(h.flow(&handle).await.unwrap().value.state.name(), "federation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_domain_cannot_sign_up_through_a_provider() {
    let op = provider().await;
    let h = woodgrove_signup(&op, |b| {
        b.collaboration(guestpass::policy::CollaborationSettings {
            domains: guestpass::policy::DomainRestriction::deny(["fabrikam.example"]).unwrap(),
            ..Default::default()
        })
    });
    let (handle, out) = federated_sign_up(&h).await;
    assert_eq!(
        out.unwrap_err(),
        Error::Denied(guestpass::error::Denied::DomainNotAllowed {
            domain: "fabrikam.example".into()
        })
    );
    assert!(h.gp.users().await.unwrap().is_empty());
    assert_eq!(h.flow(&handle).await.unwrap().value.state.name(), "federation");
}

/// A token of another Entra tenant asserting the invited address does not
/// prove it (anyone can put any address into their own tenant): the
/// passcode goes to the invited mailbox, which the other tenant cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_token_for_the_invited_address_needs_the_passcode() {
    use guestpass::idp::order::PartnerTenant;
    let op = provider().await;
    let fabrikam = presets::direct_federation(
        FABRIKAM,
        "fabrikam.example",
        op.issuer(),
        CLIENT_ID,
        CLIENT_SECRET,
    )
    .unwrap();
    let h = Harness::with(|b| {
        b.http_client(Arc::new(ReqwestClient::new().unwrap()))
            .passcode_policy(permissive_policy())
            .identity_provider(
                Arc::new(fabrikam),
                CandidateKind::Organization {
                    tenants: vec![PartnerTenant::new("fabrikam-tenant", ["fabrikam.example"])],
                },
            )
    });
    let mut intruder = TestUser::new("intruder-sub", "alice@fabrikam.example");
    intruder.tid = Some("attacker-tenant".into());
    op.set_user(intruder);
    let (inv, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let (handle, url) = start_at_fabrikam(&h, &ticket).await;
    let query = sign_in_at(&url).await;
    let step = h.gp.redemption_callback(&handle, FABRIKAM, &query).await.unwrap();
    let RedemptionStep::EnterPasscode { sent_to } = step else {
        panic!("expected the passcode step, got {step:?}");
    };
    assert_eq!(sent_to, "alice@fabrikam.example");
    assert_eq!(h.mails_of(guestpass::mail::MessageKind::Passcode).len(), 1);
    // Without the code nothing is linked; with it (Alice herself) the
    // provider's account is.
    assert!(h.user(inv.invited_user.id).await.value.user.identities.is_empty());
    h.submit_to_consent(&handle, &h.code_for("alice@fabrikam.example"))
        .await;
    let redeemed = h.accept(&handle).await;
    assert_eq!(redeemed.user.identities[0].issuer_assigned_id, "intruder-sub");

    // The tenant that owns the domain proves it without a passcode.
    let mut alice = TestUser::new("alice-sub", "bob@fabrikam.example");
    alice.tid = Some("fabrikam-tenant".into());
    op.set_user(alice);
    let (_, ticket) = h.invite_with_ticket("bob@fabrikam.example").await;
    let (handle, url) = start_at_fabrikam(&h, &ticket).await;
    let query = sign_in_at(&url).await;
    let step = h.gp.redemption_callback(&handle, FABRIKAM, &query).await.unwrap();
    assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_signs_up_and_later_signs_in_through_the_provider() {
    let op = provider().await;
    op.set_user(TestUser::new("carol-sub", "carol@fabrikam.example"));
    let config = offering(r#""emailOtp", "fabrikam""#);
    let h = signup_harness(config, |b| {
        let fabrikam = presets::direct_federation(
            FABRIKAM,
            "fabrikam.example",
            op.issuer(),
            CLIENT_ID,
            CLIENT_SECRET,
        )
        .unwrap();
        b.http_client(Arc::new(ReqwestClient::new().unwrap()))
            .identity_provider(
                Arc::new(fabrikam),
                CandidateKind::DirectFederation {
                    domains: vec!["fabrikam.example".into()],
                },
            )
    });
    let sign_in = |h: &Harness| {
        let h_gp = h.gp.clone();
        async move {
            let started = h_gp.start_sign_up(signup_request()).await.unwrap();
            let handle = started.handle.expose().to_owned();
            let page = h_gp
                .advance_flow(
                    &handle,
                    started.page.csrf_token.expose(),
                    FlowAction::ChooseProvider(FABRIKAM.into()),
                )
                .await
                .unwrap();
            let FlowStep::SignInWith { provider, url } = &page.step else {
                panic!("expected a federated sign-in, got {:?}", page.step);
            };
            assert_eq!(provider, FABRIKAM);
            let query = sign_in_at(url).await;
            let page = h_gp.sign_up_callback(&handle, FABRIKAM, &query).await.unwrap();
            (handle, page)
        }
    };
    let (handle, page) = sign_in(&h).await;
    assert!(
        matches!(page.step, FlowStep::CollectAttributes { .. }),
        "{:?}",
        page.step
    );
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Carol".to_vec()),
        )
        .await
        .unwrap();
    let FlowStep::Completed(done) = &page.step else {
        panic!("expected completion, got {:?}", page.step);
    };
    assert!(!done.signed_in);
    let user = h.gp.user(done.user_id).await.unwrap();
    assert_eq!(user.identities.len(), 1);
    assert_eq!(user.identities[0].issuer, op.issuer());
    assert_eq!(user.identities[0].issuer_assigned_id, "carol-sub");
    assert_eq!(
        user.mail.as_ref().map(|m| m.as_str()),
        Some("carol@fabrikam.example")
    );
    // The same person again: signed in, not duplicated.
    let (_, page) = sign_in(&h).await;
    let FlowStep::Completed(again) = &page.step else {
        panic!("expected a sign-in, got {:?}", page.step);
    };
    assert!(again.signed_in);
    assert_eq!(again.user_id, done.user_id);
    assert_eq!(h.gp.users().await.unwrap().len(), 1);
}

/// Two providers asserting the same address do not share an account: the
/// second one's sign-in is refused, nothing is linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_provider_for_the_same_address_is_not_linked() {
    let op = provider().await;
    op.set_user(TestUser::new("dave-sub", "dave@fabrikam.example"));
    let config = offering(r#""emailOtp", "fabrikam""#);
    let h = signup_harness(config, |b| {
        let fabrikam = presets::direct_federation(
            FABRIKAM,
            "fabrikam.example",
            op.issuer(),
            CLIENT_ID,
            CLIENT_SECRET,
        )
        .unwrap();
        b.http_client(Arc::new(ReqwestClient::new().unwrap()))
            .identity_provider(
                Arc::new(fabrikam),
                CandidateKind::DirectFederation {
                    domains: vec!["fabrikam.example".into()],
                },
            )
    });
    // Dave signed up with a passcode first.
    let (handle, page) = h
        .flow_past_passcode(signup_request(), "dave@fabrikam.example")
        .await;
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Dave".to_vec()),
        )
        .await
        .unwrap();
    assert!(matches!(page.step, FlowStep::Completed(_)), "{:?}", page.step);
    // The provider asserts the same address for its own subject.
    let (handle, page) = h.start_flow(signup_request()).await;
    let page = h
        .post(&handle, &page, FlowAction::ChooseProvider(FABRIKAM.into()))
        .await
        .unwrap();
    let FlowStep::SignInWith { url, .. } = &page.step else {
        panic!("expected a federated sign-in, got {:?}", page.step);
    };
    let query = sign_in_at(url).await;
    let page = h.gp.sign_up_callback(&handle, FABRIKAM, &query).await.unwrap();
    assert!(matches!(page.step, FlowStep::Blocked { .. }), "{:?}", page.step);
    let users = h.gp.users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].identities.len(), 1);
    assert_eq!(users[0].identities[0].issuer, EMAIL_OTP_ISSUER);
    let record = h.flow(&handle).await.unwrap();
    assert!(matches!(record.value.state, FlowState::Blocked { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_providers_and_missing_clients_are_configuration_errors() {
    let op = provider().await;
    let config = offering(r#""emailOtp", "nowhere""#);
    let e = Harness::try_with(|b| b.sign_up(config).token_keys(token_keys())).unwrap_err();
    assert!(
        matches!(&e, guestpass::error::ConfigError::Invalid { field: "sign_up", reason } if reason.contains("`nowhere`")),
        "{e:?}"
    );
    let fabrikam = presets::direct_federation(
        FABRIKAM,
        "fabrikam.example",
        op.issuer(),
        CLIENT_ID,
        CLIENT_SECRET,
    )
    .unwrap();
    let e = Harness::try_with(|b| {
        b.identity_provider(
            Arc::new(fabrikam),
            CandidateKind::DirectFederation {
                domains: vec!["fabrikam.example".into()],
            },
        )
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            guestpass::error::ConfigError::Invalid {
                field: "http_client",
                ..
            }
        ),
        "{e:?}"
    );
}

/// Without a provider for the invited domain, the passcode stays the way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_domains_still_redeem_with_a_passcode() {
    let op = provider().await;
    let h = with_fabrikam(&op, |b| b);
    let (_, ticket) = h.invite_with_ticket("erin@woodgrove.example").await;
    let started = h.try_start(&ticket).await.unwrap();
    assert!(
        matches!(started.step, RedemptionStep::EnterPasscode { .. }),
        "{:?}",
        started.step
    );
    let code = h.code_for("erin@woodgrove.example");
    h.submit_to_consent(started.handle.expose(), &code).await;
    let r =
        h.gp.finish_redemption(started.handle.expose(), ConsentDecision::Accept)
            .await
            .unwrap();
    assert!(matches!(r, guestpass::Finished::Redeemed(_)), "{r:?}");
}

/// With the email one-time passcode turned off, an address no primary
/// provider serves redeems with the Microsoft account fallback; without
/// one, the configuration is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_the_passcode_off_forces_the_microsoft_account_fallback() {
    use guestpass::idp::order::{FallbackProvider, RedemptionOrder};
    let op = provider().await;
    let off = guestpass::policy::CollaborationSettings {
        email_otp_enabled: false,
        ..Default::default()
    };
    let e = Harness::try_with(|b| b.collaboration(off.clone())).unwrap_err();
    assert!(
        matches!(&e, guestpass::error::ConfigError::Invalid { field: "collaboration", reason } if reason.contains("fallback")),
        "{e:?}"
    );
    // The local provider stands in for the Microsoft account provider.
    let msa =
        presets::direct_federation("msa", "unused.example", op.issuer(), CLIENT_ID, CLIENT_SECRET).unwrap();
    let h = Harness::with(|b| {
        b.collaboration(off)
            .http_client(Arc::new(ReqwestClient::new().unwrap()))
            .identity_provider(Arc::new(msa), CandidateKind::MicrosoftAccount)
            .redemption_order(
                RedemptionOrder::new(
                    vec![],
                    FallbackProvider::DefaultConfiguredIdp,
                    true,
                    Some("msa".into()),
                )
                .unwrap(),
            )
    });
    let (_, ticket) = h.invite_with_ticket("erin@woodgrove.example").await;
    let view = h.gp.view_redemption(&ticket).await.unwrap();
    assert_eq!(view.sign_in_with.as_deref(), Some("msa"));
    let started = h.try_start(&ticket).await.unwrap();
    assert!(
        matches!(&started.step, RedemptionStep::SignInWith { provider, .. } if provider == "msa"),
        "{:?}",
        started.step
    );
    assert!(h.mails_of(guestpass::mail::MessageKind::Passcode).is_empty());
}
