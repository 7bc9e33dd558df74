//! Partner organisations end to end: a guest (or a stranger signing up)
//! from another Entra organisation meets the cross-organisation access
//! settings (inbound B2B collaboration for users and applications, inbound
//! trust of the home organisation's MFA) and conditional access, through a
//! fake organisation identity provider that answers with a chosen identity
//! (`tid`, home tenant, `oid`, `amr`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::*;
use guestpass::audit::AuditKind;
use guestpass::directory::{DirectoryStore, ExternalUserState, InvitationStatus};
use guestpass::email::EmailAddress;
use guestpass::flow::access::{
    ACR_MULTI_FACTOR, ACR_SINGLE_FACTOR, AccessReport, REDEMPTION_APPLICATION_ID, StepUpMethod,
    StepUpMethods, StepUpPage,
};
use guestpass::flow::token::TokenVerifier;
use guestpass::http::{FnHttpClient, HttpError};
use guestpass::idp::order::{CandidateKind, PartnerTenant};
use guestpass::idp::{
    AUTHORIZATION_MAX_AGE, AuthorizationStart, AuthorizationUrl, Callback, ExternalIdentity,
    IdentityProvider, IdpContext, IdpError, PendingAuthorization,
};
use guestpass::policy::{CrossTenantSettings, PolicySet};
use guestpass::secret::Digest;
use guestpass::{ConsentDecision, Error, Finished, FlowAction, FlowStep, GuestPassBuilder, RedemptionStep};

/// The partner organisation the tests trust or block (Fabrikam).
const PARTNER_TID: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";
/// Another organisation (Woodgrove): the home of a user who is a guest at
/// the partner, or an organisation the settings do not name.
const OTHER_TID: &str = "9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e";
/// The user's object id at the partner.
const ALICE_OID: &str = "6a1f0c2e-8d3b-4e5f-9a0b-1c2d3e4f5a6b";
/// The invited partner address.
const ALICE: &str = "alice@fabrikam.example";
/// A person without a home organisation (email one-time passcode).
const WOODY: &str = "woody@woodgrove.example";
/// The fake provider's id.
const PARTNER: &str = "fabrikam-entra";
/// The only authorization code the fake provider hands out.
const CODE: &str = "partner-code-1";
/// The page text of a cross-organisation block (en-US).
const PARTNER_BLOCKED: &str = "Your organization is not allowed to collaborate with this one";

fn issuer_of(tid: &str) -> String {
    format!("https://login.microsoftonline.com/{tid}/v2.0")
}

// ---------------------------------------------------------------------------
// The fake organisation provider
// ---------------------------------------------------------------------------

/// An organisation's identity provider that signs in whoever it is told to
/// (`identity`), with the checks of the real OIDC provider that matter
/// here: the callback must belong to a sign-in this provider started (its
/// `state` hashes to the pending authorization's `state_hash`), carry the
/// code it handed out, and arrive in time; a code is good once.
#[derive(Debug)]
struct PartnerIdp {
    issuer: String,
    identity: Mutex<ExternalIdentity>,
    /// The `state` of every sign-in started and not yet finished.
    issued: Mutex<Vec<String>>,
    /// Redirect URIs `start` was called with.
    redirects: Mutex<Vec<String>>,
    /// Successful `finish` calls.
    finished: Mutex<usize>,
}

impl PartnerIdp {
    fn new(identity: ExternalIdentity) -> Arc<Self> {
        Arc::new(Self {
            issuer: identity.issuer.clone(),
            identity: Mutex::new(identity),
            issued: Mutex::new(Vec::new()),
            redirects: Mutex::new(Vec::new()),
            finished: Mutex::new(0),
        })
    }

    fn set_identity(&self, identity: ExternalIdentity) {
        *self.identity.lock().unwrap() = identity;
    }

    fn finished(&self) -> usize {
        *self.finished.lock().unwrap()
    }
}

#[async_trait::async_trait]
impl IdentityProvider for PartnerIdp {
    fn id(&self) -> &str {
        PARTNER
    }

    fn issuer(&self) -> Option<&str> {
        Some(&self.issuer)
    }

    async fn start(&self, ctx: &IdpContext<'_>, redirect_uri: &str) -> Result<AuthorizationStart, IdpError> {
        let mut state_bytes = [0u8; 32];
        let mut salt = [0u8; 32];
        ctx.rng
            .fill(&mut state_bytes)
            .map_err(|_| IdpError::RandomUnavailable)?;
        ctx.rng.fill(&mut salt).map_err(|_| IdpError::RandomUnavailable)?;
        let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(state_bytes);
        let pending = PendingAuthorization {
            provider_id: PARTNER.to_owned(),
            state_hash: Digest::sha256(state.as_bytes()),
            salt,
            redirect_uri: redirect_uri.to_owned(),
            issued_at: ctx.now,
        };
        let mut url = url::Url::parse("https://login.fabrikam.example/oauth2/v2.0/authorize").unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", "contoso-guests")
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &state);
        self.issued.lock().unwrap().push(state);
        self.redirects.lock().unwrap().push(redirect_uri.to_owned());
        Ok(AuthorizationStart { url, pending })
    }

    async fn finish(
        &self,
        ctx: &IdpContext<'_>,
        pending: &PendingAuthorization,
        callback: &Callback,
    ) -> Result<ExternalIdentity, IdpError> {
        if pending.provider_id != PARTNER {
            return Err(IdpError::Callback {
                reason: "the sign-in was started with another provider".into(),
            });
        }
        if let Some(error) = callback.error() {
            return Err(if error == "access_denied" {
                IdpError::AccessDenied { description: None }
            } else {
                IdpError::ProviderError {
                    error: error.to_owned(),
                    description: None,
                }
            });
        }
        if !callback.has_state() {
            return Err(IdpError::StateMismatch);
        }
        let mut issued = self.issued.lock().unwrap();
        // The sign-in this pending authorization is for: its state hashes
        // to `state_hash`.
        let Some(index) = issued
            .iter()
            .position(|s| Digest::sha256(s.as_bytes()).ct_eq(&pending.state_hash))
        else {
            return Err(IdpError::StateMismatch);
        };
        // `Callback` does not expose its state: compare the whole callback
        // with the one the authorization server sent for that sign-in.
        let expected = Callback::parse(&format!("code={CODE}&state={}", issued[index])).unwrap();
        if *callback != expected {
            return Err(IdpError::StateMismatch);
        }
        if ctx.now > pending.issued_at + AUTHORIZATION_MAX_AGE {
            return Err(IdpError::AuthorizationExpired);
        }
        issued.remove(index);
        *self.finished.lock().unwrap() += 1;
        Ok(self.identity.lock().unwrap().clone())
    }
}

/// What the partner's authorization server sends the browser back with
/// for the authorization request `url`.
fn authorize(url: &AuthorizationUrl) -> String {
    let state = url
        .as_url()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("the request carries a state");
    format!("code={CODE}&state={state}")
}

/// Alice of the partner: token issued by `tid`, home tenant `home`, with
/// `amr`, her verified partner address.
fn alice(tid: &str, home: Option<&str>, amr: &[&str]) -> ExternalIdentity {
    person(ALICE, "alice-sub", tid, home, amr)
}

fn person(email: &str, subject: &str, tid: &str, home: Option<&str>, amr: &[&str]) -> ExternalIdentity {
    ExternalIdentity {
        provider_id: PARTNER.to_owned(),
        issuer: issuer_of(tid),
        subject: subject.to_owned(),
        email: Some(EmailAddress::parse(email).unwrap()),
        email_verified: true,
        name: Some("Alice".to_owned()),
        given_name: None,
        family_name: None,
        tenant_id: Some(tid.to_owned()),
        hosted_domain: None,
        home_tenant_id: home.map(str::to_owned),
        object_id: Some(ALICE_OID.to_owned()),
        amr: amr.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// Alice signing in at her home organisation, the partner, with MFA.
fn alice_with_mfa() -> ExternalIdentity {
    alice(PARTNER_TID, Some(PARTNER_TID), &["pwd", "mfa"])
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// "Require MFA for b2bCollaborationGuest users from all external tenants
/// on all applications".
fn mfa_for_guests() -> PolicySet {
    PolicySet::from_json(
        &serde_json::json!({
            "policies": [{
                "displayName": "MFA for partner guests",
                "state": "enabled",
                "conditions": {
                    "users": {"includeGuestsOrExternalUsers": {
                        "guestOrExternalUserTypes": "b2bCollaborationGuest",
                        "externalTenants": {"membershipKind": "all"}
                    }},
                    "applications": {"includeApplications": ["All"]}
                },
                "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}
            }]
        })
        .to_string(),
    )
    .unwrap()
}

fn cross_tenant(json: serde_json::Value) -> CrossTenantSettings {
    CrossTenantSettings::from_json(&json.to_string()).unwrap()
}

/// The partner's MFA claims are trusted.
fn trusting_partner() -> CrossTenantSettings {
    cross_tenant(serde_json::json!({
        "partners": [{"tenantId": PARTNER_TID, "inboundTrust": {"isMfaAccepted": true}}]
    }))
}

/// A sign-up configuration (application `APP`, flow `USER_FLOW`) offering
/// the passcode and the partner provider, collecting `givenName`.
fn offering_partner() -> guestpass::flow::config::SignUpConfig {
    let json = signup_json(r#""attributes": [{"name": "givenName"}]"#).replace(
        r#""identityProviders": ["emailOtp"]"#,
        &format!(r#""identityProviders": ["emailOtp", "{PARTNER}"]"#),
    );
    guestpass::flow::config::SignUpConfig::from_json(&json).unwrap()
}

/// A harness (redemption and sign-up) with `idp` registered as the
/// partner organisation's provider (the authority for `fabrikam.example`),
/// an HTTP client that must never be called, and `f` on top.
fn harness(
    idp: &Arc<PartnerIdp>,
    http: &Arc<FnHttpClient>,
    f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder,
) -> Harness {
    signup_harness(offering_partner(), |b| {
        // These tenants opt in to the emailed step-up code.
        f(b.http_client(http.clone())
            .identity_provider(
                idp.clone(),
                CandidateKind::Organization {
                    tenants: vec![PartnerTenant::new(PARTNER_TID, ["fabrikam.example"])],
                },
            )
            .step_up_methods(StepUpMethods {
                email_otp: true,
                authenticator: true,
            }))
    })
}

fn offline() -> Arc<FnHttpClient> {
    Arc::new(FnHttpClient::new(|_, _| Err(HttpError::Timeout)))
}

// ---------------------------------------------------------------------------
// Walking the flows
// ---------------------------------------------------------------------------

/// Starts redeeming `ticket` (the order must send the guest to the
/// partner) and hands the callback over; returns the handle and the step.
async fn redeem_at_partner(h: &Harness, idp: &PartnerIdp, ticket: &str) -> (String, RedemptionStep) {
    let started = h.try_start(ticket).await.unwrap();
    let RedemptionStep::SignInWith { provider, url } = &started.step else {
        panic!("expected a sign-in at the partner, got {:?}", started.step);
    };
    assert_eq!(provider, PARTNER);
    let handle = started.handle.expose().to_owned();
    assert_eq!(
        idp.redirects.lock().unwrap().last().unwrap(),
        h.gp.federation_redirect_uri(PARTNER).unwrap().as_str()
    );
    let step =
        h.gp.redemption_callback(&handle, PARTNER, &authorize(url))
            .await
            .unwrap();
    (handle, step)
}

/// As [`redeem_at_partner`], which must reach consent; then accepts.
async fn consent_at_partner(h: &Harness, idp: &PartnerIdp, ticket: &str) -> (String, Finished) {
    let (handle, step) = redeem_at_partner(h, idp, ticket).await;
    assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
    let finished =
        h.gp.finish_redemption(&handle, ConsentDecision::Accept)
            .await
            .unwrap();
    (handle, finished)
}

/// Starts a sign-up, goes to the partner and hands the callback over.
async fn sign_up_at_partner(h: &Harness) -> (String, Result<guestpass::FlowPage, Error>) {
    let (handle, page) = h.start_flow(signup_request()).await;
    let page = h
        .post(&handle, &page, FlowAction::ChooseProvider(PARTNER.into()))
        .await
        .unwrap();
    let FlowStep::SignInWith { provider, url } = &page.step else {
        panic!("expected a sign-in at the partner, got {:?}", page.step);
    };
    assert_eq!(provider, PARTNER);
    let out = h.gp.sign_up_callback(&handle, PARTNER, &authorize(url)).await;
    (handle, out)
}

/// As [`sign_up_at_partner`], which must reach the attributes; then fills
/// them in. Returns the handle and the page after them.
async fn sign_up_through_attributes(h: &Harness) -> (String, guestpass::FlowPage) {
    let (handle, page) = sign_up_at_partner(h).await;
    let page = page.unwrap();
    assert!(
        matches!(page.step, FlowStep::CollectAttributes { .. }),
        "{:?}",
        page.step
    );
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Alice".to_vec()),
        )
        .await
        .unwrap();
    (handle, page)
}

/// Every access report in the audit log, oldest first.
fn access_reports(h: &Harness) -> Vec<AccessReport> {
    h.audit_kinds()
        .into_iter()
        .filter_map(|k| match k {
            AuditKind::AccessEvaluated { report, .. } => Some(report),
            _ => None,
        })
        .collect()
}

fn report(application: &str, decision: &str, policies: &[&str]) -> AccessReport {
    AccessReport {
        application_id: application.to_owned(),
        decision: decision.to_owned(),
        policies: policies.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// The explanation line of the MFA policy when it applied and was
/// satisfied or not: whatever it is, it names the policy.
fn names_mfa_policy(r: &AccessReport) -> bool {
    r.policies.len() == 1 && r.policies[0].contains("MFA for partner guests")
}

/// The partner's block report for `setting`, from `source`, for `tenant`.
fn partner_block(application: &str, setting: &str, source: &str, tenant: &str) -> AccessReport {
    report(
        application,
        "block (cross-organisation access)",
        &[&format!(
            "b2bCollaborationInbound.{setting} of {source} for tenant `{tenant}` blocks"
        )],
    )
}

fn verifier(h: &Harness) -> TokenVerifier {
    TokenVerifier::from_jwks(&h.gp.jwks().expect("token keys"), BASE_URL, APP).unwrap()
}

/// The user was redeemed with Alice's partner identity.
async fn assert_redeemed_with_partner_identity(
    h: &Harness,
    user_id: guestpass::id::Id,
    inv_id: guestpass::id::Id,
) {
    let user = h.user(user_id).await.value;
    assert_eq!(user.user.external_user_state, Some(ExternalUserState::Accepted));
    let ids: Vec<(String, String)> = user
        .user
        .identities
        .iter()
        .map(|i| (i.issuer.clone(), i.issuer_assigned_id.clone()))
        .collect();
    assert_eq!(ids, [(issuer_of(PARTNER_TID), "alice-sub".to_owned())]);
    assert_eq!(
        h.invitation(inv_id).await.value.invitation.status,
        InvitationStatus::Completed
    );
    assert_eq!(
        h.count_audit(|k| matches!(k, AuditKind::Redeemed { invitation_id } if *invitation_id == inv_id)),
        1
    );
}

/// The invitation is still pending and the user has no identity.
async fn assert_not_redeemed(h: &Harness, user_id: guestpass::id::Id, inv_id: guestpass::id::Id) {
    let user = h.user(user_id).await.value;
    assert_eq!(
        user.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
    assert!(user.user.identities.is_empty(), "{:?}", user.user.identities);
    assert_eq!(user.active_invitation, Some(inv_id));
    let inv = h.invitation(inv_id).await.value;
    assert_eq!(inv.invitation.status, InvitationStatus::PendingAcceptance);
    assert!(inv.ticket.is_some(), "the ticket is still bound");
    assert_eq!(h.count_audit(|k| matches!(k, AuditKind::Redeemed { .. })), 0);
    assert!(
        h.store
            .user_by_identity(TENANT, &issuer_of(PARTNER_TID), "alice-sub")
            .await
            .unwrap()
            .is_none()
    );
}

/// Expects the step-up choice, with the emailed code offered (the primary
/// sign-in was federated) next to the authenticator app.
fn assert_step_up_choice(page: &StepUpPage) {
    assert_eq!(
        *page,
        StepUpPage::Choose {
            methods: StepUpMethods {
                email_otp: true,
                authenticator: true,
            },
            email: ALICE.to_owned(),
            authenticator_enrolled: false,
        }
    );
}

// ---------------------------------------------------------------------------
// 1. Trusted partner MFA
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_trusted_partners_mfa_satisfies_the_policy_without_a_step_up() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let h = harness(&idp, &http, |b| {
        b.conditional_access(mfa_for_guests())
            .cross_tenant_access(trusting_partner())
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (handle, finished) = consent_at_partner(&h, &idp, &ticket).await;
    let Finished::Redeemed(redeemed) = finished else {
        panic!("expected the redemption right after consent, got {finished:?}");
    };
    assert_eq!(redeemed.user.id, inv.invited_user.id);
    assert_eq!(h.session_step(&handle).await, "completed");
    assert_redeemed_with_partner_identity(&h, inv.invited_user.id, inv.id).await;
    // No step-up code, no passcode: the invitation mail is all.
    assert!(h.mails_of(guestpass::mail::MessageKind::Passcode).is_empty());
    // One decision: allowed, the MFA policy applied and was satisfied.
    let reports = access_reports(&h);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].application_id, REDEMPTION_APPLICATION_ID);
    assert_eq!(reports[0].decision, "allow", "{reports:?}");
    assert!(names_mfa_policy(&reports[0]), "{reports:?}");
    assert_eq!(idp.finished(), 1);
    assert_eq!(http.calls(), 0, "the fake provider needs no http");
}

#[tokio::test]
async fn a_trusted_partners_mfa_signs_up_with_a_multi_factor_token() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let h = harness(&idp, &http, |b| {
        b.conditional_access(mfa_for_guests())
            .cross_tenant_access(trusting_partner())
    });
    let (_, page) = sign_up_through_attributes(&h).await;
    let FlowStep::Completed(done) = &page.step else {
        panic!("expected completion with no step-up, got {:?}", page.step);
    };
    assert!(!done.signed_in);
    let token = verifier(&h).verify(done.id_token.expose(), h.now()).unwrap();
    assert_eq!(token.subject, done.user_id);
    assert_eq!(token.identity_provider, issuer_of(PARTNER_TID));
    assert!(token.amr.iter().any(|a| a == "mfa"), "{:?}", token.amr);
    assert_eq!(token.amr, ["fed", "mfa"], "no step-up code was used");
    assert_eq!(token.acr.as_deref(), Some(ACR_MULTI_FACTOR));
    let user = h.gp.user(done.user_id).await.unwrap();
    assert_eq!(user.mail.as_ref().unwrap().as_str(), ALICE);
    assert!(h.mails_of(guestpass::mail::MessageKind::Passcode).is_empty());
    let reports = access_reports(&h);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].application_id, APP);
    assert_eq!(reports[0].decision, "allow");
    assert!(names_mfa_policy(&reports[0]), "{reports:?}");
}

// ---------------------------------------------------------------------------
// 2. Untrusted partner MFA: step up with an emailed code
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_untrusted_partners_mfa_steps_up_with_an_emailed_code() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    // The partner is configured, but its MFA is not trusted (the default).
    let h = harness(&idp, &http, |b| {
        b.conditional_access(mfa_for_guests())
            .cross_tenant_access(cross_tenant(serde_json::json!({
                "partners": [{"tenantId": PARTNER_TID}]
            })))
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (handle, finished) = consent_at_partner(&h, &idp, &ticket).await;
    let Finished::StepUp(page) = &finished else {
        panic!("expected a step-up, got {finished:?}");
    };
    assert_step_up_choice(page);
    assert_eq!(h.session_step(&handle).await, "stepUp");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
    let reports = access_reports(&h);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].decision, "require mfa", "{reports:?}");
    assert!(names_mfa_policy(&reports[0]), "{reports:?}");
    // A reload shows the same page.
    let RedemptionStep::StepUp(again) = h.gp.redemption_step(&handle).await.unwrap() else {
        panic!("expected the step-up page on reload");
    };
    assert_step_up_choice(&again);

    let step =
        h.gp.choose_step_up(&handle, StepUpMethod::EmailOtp)
            .await
            .unwrap();
    assert_eq!(
        step,
        RedemptionStep::StepUp(StepUpPage::EnterEmailCode {
            sent_to: ALICE.to_owned(),
            delivered: true,
        })
    );
    let code = h.code_for(ALICE);
    // A wrong code does not redeem.
    let e =
        h.gp.submit_step_up_code(&handle, &wrong_code(&code))
            .await
            .unwrap_err();
    assert!(matches!(e, Error::Passcode(_)), "{e:?}");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
    let step = h.gp.submit_step_up_code(&handle, &code).await.unwrap();
    assert!(
        matches!(&step, RedemptionStep::Redeemed(done) if done.user.id == inv.invited_user.id),
        "{step:?}"
    );
    assert_redeemed_with_partner_identity(&h, inv.invited_user.id, inv.id).await;
    let reports = access_reports(&h);
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(reports[1].decision, "allow", "{reports:?}");
    // The code is single use.
    assert!(h.gp.submit_step_up_code(&handle, &code).await.is_err());
}

#[tokio::test]
async fn an_untrusted_partners_mfa_steps_up_in_a_sign_up_too() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let h = harness(&idp, &http, |b| b.conditional_access(mfa_for_guests()));
    let (handle, page) = sign_up_through_attributes(&h).await;
    let FlowStep::StepUp { page: step_up, .. } = &page.step else {
        panic!("expected a step-up, got {:?}", page.step);
    };
    assert_step_up_choice(step_up);
    assert!(
        h.gp.users().await.unwrap().is_empty(),
        "no account before the step-up"
    );
    let page = h
        .post(&handle, &page, FlowAction::ChooseStepUp(StepUpMethod::EmailOtp))
        .await
        .unwrap();
    assert!(
        matches!(
            &page.step,
            FlowStep::StepUp {
                page: StepUpPage::EnterEmailCode { .. },
                ..
            }
        ),
        "{:?}",
        page.step
    );
    let code = h.code_for(ALICE);
    let page = h
        .post(&handle, &page, FlowAction::SubmitStepUpCode(code.into()))
        .await
        .unwrap();
    let FlowStep::Completed(done) = &page.step else {
        panic!("expected completion, got {:?}", page.step);
    };
    let token = verifier(&h).verify(done.id_token.expose(), h.now()).unwrap();
    assert_eq!(token.amr, ["fed", "otp", "mfa"]);
    assert_eq!(token.acr.as_deref(), Some(ACR_MULTI_FACTOR));
}

// ---------------------------------------------------------------------------
// 3. An MFA claim from an organisation that is not the user's home
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_trusted_partners_claim_for_someone_elses_user_does_not_count() {
    // Alice is a guest at the trusted partner; her home is another
    // organisation. The partner's token says MFA, but it speaks for the
    // partner's sign-in, not for Alice's home.
    let idp = PartnerIdp::new(alice(PARTNER_TID, Some(OTHER_TID), &["pwd", "mfa"]));
    let http = offline();
    let h = harness(&idp, &http, |b| {
        b.conditional_access(mfa_for_guests())
            .cross_tenant_access(trusting_partner())
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (handle, finished) = consent_at_partner(&h, &idp, &ticket).await;
    let Finished::StepUp(page) = &finished else {
        panic!("expected a step-up, got {finished:?}");
    };
    assert_step_up_choice(page);
    assert_eq!(h.session_step(&handle).await, "stepUp");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
    assert_eq!(access_reports(&h)[0].decision, "require mfa");

    // Nor in a sign-up (a new person: the invited Alice is taken).
    idp.set_identity(person(
        "carol@fabrikam.example",
        "carol-sub",
        PARTNER_TID,
        Some(OTHER_TID),
        &["pwd", "mfa"],
    ));
    let (_, page) = sign_up_through_attributes(&h).await;
    let FlowStep::StepUp { page: step_up, .. } = &page.step else {
        panic!("expected a step-up, got {:?}", page.step);
    };
    assert!(
        matches!(step_up, StepUpPage::Choose { email, .. } if email == "carol@fabrikam.example"),
        "{step_up:?}"
    );
    assert_eq!(h.gp.users().await.unwrap().len(), 1, "only the invited user");
    assert_eq!(access_reports(&h).last().unwrap().decision, "require mfa");
}

/// The same with trust set for the home organisation only: the claim
/// still comes from the partner, which is not the home.
#[tokio::test]
async fn trusting_the_home_does_not_trust_a_claim_issued_elsewhere() {
    let idp = PartnerIdp::new(alice(PARTNER_TID, Some(OTHER_TID), &["pwd", "mfa"]));
    let http = offline();
    let h = harness(&idp, &http, |b| {
        b.conditional_access(mfa_for_guests())
            .cross_tenant_access(cross_tenant(serde_json::json!({
                "partners": [{"tenantId": OTHER_TID, "inboundTrust": {"isMfaAccepted": true}}]
            })))
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (_, finished) = consent_at_partner(&h, &idp, &ticket).await;
    assert!(matches!(finished, Finished::StepUp(_)), "{finished:?}");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
}

// ---------------------------------------------------------------------------
// 4. Trust on, no MFA in the token
// ---------------------------------------------------------------------------

#[tokio::test]
async fn trust_without_an_mfa_claim_steps_up() {
    let idp = PartnerIdp::new(alice(PARTNER_TID, Some(PARTNER_TID), &["pwd"]));
    let http = offline();
    let h = harness(&idp, &http, |b| {
        b.conditional_access(mfa_for_guests())
            .cross_tenant_access(trusting_partner())
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (handle, finished) = consent_at_partner(&h, &idp, &ticket).await;
    let Finished::StepUp(page) = &finished else {
        panic!("expected a step-up, got {finished:?}");
    };
    assert_step_up_choice(page);
    assert_eq!(h.session_step(&handle).await, "stepUp");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
    assert_eq!(access_reports(&h)[0].decision, "require mfa");

    // A sign-up without the claim and without a policy: one factor.
    let idp = PartnerIdp::new(alice(PARTNER_TID, Some(PARTNER_TID), &["pwd"]));
    let h = harness(&idp, &http, |b| b.cross_tenant_access(trusting_partner()));
    let (_, page) = sign_up_through_attributes(&h).await;
    let FlowStep::Completed(done) = &page.step else {
        panic!("expected completion, got {:?}", page.step);
    };
    let token = verifier(&h).verify(done.id_token.expose(), h.now()).unwrap();
    assert_eq!(token.amr, ["fed"]);
    assert_eq!(token.acr.as_deref(), Some(ACR_SINGLE_FACTOR));
}

// ---------------------------------------------------------------------------
// 5. A blocked partner cannot redeem
// ---------------------------------------------------------------------------

fn blocking_partner_users() -> CrossTenantSettings {
    cross_tenant(serde_json::json!({
        "partners": [{
            "tenantId": PARTNER_TID,
            "b2bCollaborationInbound": {
                "usersAndGroups": {"accessType": "blocked",
                                   "targets": [{"target": "AllUsers", "targetType": "user"}]}
            }
        }]
    }))
}

#[tokio::test]
async fn a_blocked_partner_cannot_redeem() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let h = harness(&idp, &http, |b| b.cross_tenant_access(blocking_partner_users()));
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (handle, step) = redeem_at_partner(&h, &idp, &ticket).await;
    assert_eq!(
        step,
        RedemptionStep::Blocked {
            message: PARTNER_BLOCKED.to_owned()
        }
    );
    assert_eq!(h.session_step(&handle).await, "blocked");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
    assert_eq!(
        access_reports(&h),
        [partner_block(
            REDEMPTION_APPLICATION_ID,
            "usersAndGroups",
            "the partner's settings",
            PARTNER_TID
        )]
    );
    // The report is about the invited user.
    let event = h
        .audit_events()
        .into_iter()
        .find(|e| matches!(e.kind, AuditKind::AccessEvaluated { .. }))
        .unwrap();
    assert_eq!(event.user_id, Some(inv.invited_user.id));
    // The blocked flow cannot be consented to; a reload shows the block.
    h.fails_unchanged(
        "consent after a block",
        h.gp.finish_redemption(&handle, ConsentDecision::Accept),
    )
    .await;
    assert_eq!(
        h.gp.redemption_step(&handle).await.unwrap(),
        RedemptionStep::Blocked {
            message: PARTNER_BLOCKED.to_owned()
        }
    );
    // Opening the link again ends the same way.
    let (_, step) = redeem_at_partner(&h, &idp, &ticket).await;
    assert!(matches!(step, RedemptionStep::Blocked { .. }), "{step:?}");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
}

/// A block of one partner user (by object id) blocks that user only.
#[tokio::test]
async fn a_partner_block_of_one_user_names_its_object_id() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let settings = |oid: &str| {
        cross_tenant(serde_json::json!({
            "partners": [{
                "tenantId": PARTNER_TID,
                "b2bCollaborationInbound": {
                    "usersAndGroups": {"accessType": "blocked",
                                       "targets": [{"target": oid, "targetType": "user"}]}
                }
            }]
        }))
    };
    let h = harness(&idp, &http, |b| b.cross_tenant_access(settings(ALICE_OID)));
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (_, step) = redeem_at_partner(&h, &idp, &ticket).await;
    assert!(matches!(step, RedemptionStep::Blocked { .. }), "{step:?}");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;

    let someone_else = "0e0e0e0e-1111-4222-8333-444455556666";
    let idp = PartnerIdp::new(alice_with_mfa());
    let h = harness(&idp, &http, |b| b.cross_tenant_access(settings(someone_else)));
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (_, finished) = consent_at_partner(&h, &idp, &ticket).await;
    assert!(matches!(finished, Finished::Redeemed(_)), "{finished:?}");
    assert_redeemed_with_partner_identity(&h, inv.invited_user.id, inv.id).await;
}

#[tokio::test]
async fn a_partner_blocked_for_another_application_still_redeems() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    // Blocked for `payroll` only: every other application is allowed.
    let h = harness(&idp, &http, |b| {
        b.cross_tenant_access(cross_tenant(serde_json::json!({
            "partners": [{
                "tenantId": PARTNER_TID,
                "b2bCollaborationInbound": {
                    "applications": {"accessType": "blocked",
                                     "targets": [{"target": "payroll", "targetType": "application"}]}
                }
            }]
        })))
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (_, finished) = consent_at_partner(&h, &idp, &ticket).await;
    assert!(matches!(finished, Finished::Redeemed(_)), "{finished:?}");
    assert_redeemed_with_partner_identity(&h, inv.invited_user.id, inv.id).await;
    assert_eq!(
        access_reports(&h),
        [report(REDEMPTION_APPLICATION_ID, "allow", &[])]
    );
}

/// The application target works: a partner blocked for the sign-up
/// application cannot sign up to it, and the report names `applications`.
#[tokio::test]
async fn a_partner_blocked_for_the_application_cannot_sign_up_to_it() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let h = harness(&idp, &http, |b| {
        b.cross_tenant_access(cross_tenant(serde_json::json!({
            "partners": [{
                "tenantId": PARTNER_TID,
                "b2bCollaborationInbound": {
                    "applications": {"accessType": "blocked",
                                     "targets": [{"target": APP, "targetType": "application"}]}
                }
            }]
        })))
    });
    let (handle, page) = sign_up_at_partner(&h).await;
    let page = page.unwrap();
    let FlowStep::Blocked { message } = &page.step else {
        panic!("expected a block, got {:?}", page.step);
    };
    assert_eq!(message, PARTNER_BLOCKED);
    assert_eq!(h.flow(&handle).await.unwrap().value.state.name(), "blocked");
    assert!(h.gp.users().await.unwrap().is_empty());
    assert_eq!(
        access_reports(&h),
        [partner_block(
            APP,
            "applications",
            "the partner's settings",
            PARTNER_TID
        )]
    );
}

// ---------------------------------------------------------------------------
// 6. A blocked partner cannot sign up
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_blocked_partner_cannot_sign_up() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let h = harness(&idp, &http, |b| b.cross_tenant_access(blocking_partner_users()));
    let (handle, page) = sign_up_at_partner(&h).await;
    let page = page.unwrap();
    let FlowStep::Blocked { message } = &page.step else {
        panic!("expected a block, got {:?}", page.step);
    };
    assert_eq!(message, PARTNER_BLOCKED);
    assert_eq!(h.flow(&handle).await.unwrap().value.state.name(), "blocked");
    assert!(h.gp.users().await.unwrap().is_empty(), "no user is created");
    assert!(
        h.store
            .user_by_identity(TENANT, &issuer_of(PARTNER_TID), "alice-sub")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        access_reports(&h),
        [partner_block(
            APP,
            "usersAndGroups",
            "the partner's settings",
            PARTNER_TID
        )]
    );
    // The ended flow takes nothing more.
    let e = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Alice".to_vec()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Flow(_)), "{e:?}");
    assert!(h.gp.users().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// 7. Default settings blocking every organisation
// ---------------------------------------------------------------------------

fn default_blocks_inbound(partners: serde_json::Value) -> CrossTenantSettings {
    cross_tenant(serde_json::json!({
        "default": {
            "b2bCollaborationInbound": {
                "usersAndGroups": {"accessType": "blocked",
                                   "targets": [{"target": "AllUsers", "targetType": "user"}]}
            }
        },
        "partners": partners
    }))
}

#[tokio::test]
async fn default_settings_block_an_unconfigured_partner_but_not_a_passcode_guest() {
    // Alice's home is an organisation the settings do not name.
    let idp = PartnerIdp::new(alice(PARTNER_TID, Some(OTHER_TID), &["pwd", "mfa"]));
    let http = offline();
    let h = harness(&idp, &http, |b| {
        b.cross_tenant_access(default_blocks_inbound(serde_json::json!([])))
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (_, step) = redeem_at_partner(&h, &idp, &ticket).await;
    assert_eq!(
        step,
        RedemptionStep::Blocked {
            message: PARTNER_BLOCKED.to_owned()
        }
    );
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
    assert_eq!(
        access_reports(&h),
        [partner_block(
            REDEMPTION_APPLICATION_ID,
            "usersAndGroups",
            "the default settings",
            OTHER_TID
        )]
    );

    // Alice from the partner itself, also unconfigured: blocked too.
    idp.set_identity(alice_with_mfa());
    let (_, step) = redeem_at_partner(&h, &idp, &ticket).await;
    assert!(matches!(step, RedemptionStep::Blocked { .. }), "{step:?}");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;

    // A guest without a home organisation redeems with a passcode.
    let (woody, woody_ticket) = h.invite_with_ticket(WOODY).await;
    let started = h.try_start(&woody_ticket).await.unwrap();
    assert!(
        matches!(started.step, RedemptionStep::EnterPasscode { .. }),
        "{:?}",
        started.step
    );
    let handle = started.handle.expose().to_owned();
    h.submit_to_consent(&handle, &h.code_for(WOODY)).await;
    let redeemed = h.accept(&handle).await;
    assert_eq!(redeemed.user.id, woody.invited_user.id);
    assert_eq!(
        redeemed.user.external_user_state,
        Some(ExternalUserState::Accepted)
    );
    assert_eq!(
        h.invitation(woody.id).await.value.invitation.status,
        InvitationStatus::Completed
    );
    assert_eq!(
        access_reports(&h).last().unwrap(),
        &report(REDEMPTION_APPLICATION_ID, "allow", &[])
    );
}

/// A partner's own setting overrides the default block.
#[tokio::test]
async fn a_partner_allowed_over_a_blocking_default_redeems() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let h = harness(&idp, &http, |b| {
        b.cross_tenant_access(default_blocks_inbound(serde_json::json!([{
            "tenantId": PARTNER_TID,
            "b2bCollaborationInbound": {
                "usersAndGroups": {"accessType": "allowed",
                                   "targets": [{"target": "AllUsers", "targetType": "user"}]}
            }
        }])))
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (_, finished) = consent_at_partner(&h, &idp, &ticket).await;
    assert!(matches!(finished, Finished::Redeemed(_)), "{finished:?}");
    assert_redeemed_with_partner_identity(&h, inv.invited_user.id, inv.id).await;
}

/// The fake provider checks what a real one does: a forged state and a
/// replayed callback are refused and change nothing.
#[tokio::test]
async fn the_fake_provider_refuses_forged_and_replayed_callbacks() {
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let h = harness(&idp, &http, |b| b);
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    let started = h.try_start(&ticket).await.unwrap();
    let RedemptionStep::SignInWith { url, .. } = &started.step else {
        panic!("expected a sign-in at the partner, got {:?}", started.step);
    };
    let handle = started.handle.expose().to_owned();
    let e = h
        .fails_unchanged(
            "a forged state",
            h.gp.redemption_callback(&handle, PARTNER, &format!("code={CODE}&state=forged")),
        )
        .await;
    assert_eq!(e, Error::Idp(IdpError::StateMismatch));
    let query = authorize(url);
    let step = h.gp.redemption_callback(&handle, PARTNER, &query).await.unwrap();
    assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
    h.fails_unchanged(
        "a replayed callback",
        h.gp.redemption_callback(&handle, PARTNER, &query),
    )
    .await;
}

/// Tenant ids are GUIDs, compared without regard to case everywhere else
/// (cross-tenant settings, the provider's `tid`): a conditional access
/// policy naming the partner's tenant in capitals (as some tools print
/// GUIDs) must still apply to the partner's guests; compared as exact
/// strings, the policy would silently not apply and the guest would skip
/// the MFA it requires (fail open).
#[tokio::test]
async fn a_policy_naming_the_partner_tenant_in_capitals_applies_to_its_guests() {
    let policies = PolicySet::from_json(
        &serde_json::json!({
            "policies": [{
                "displayName": "MFA for Fabrikam guests",
                "state": "enabled",
                "conditions": {
                    "users": {"includeGuestsOrExternalUsers": {
                        "guestOrExternalUserTypes": "b2bCollaborationGuest",
                        "externalTenants": {"membershipKind": "enumerated",
                                            "members": [PARTNER_TID.to_uppercase()]}
                    }},
                    "applications": {"includeApplications": ["All"]}
                },
                "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}
            }]
        })
        .to_string(),
    )
    .unwrap();
    let idp = PartnerIdp::new(alice_with_mfa());
    let http = offline();
    let h = harness(&idp, &http, |b| b.conditional_access(policies));
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (_, finished) = consent_at_partner(&h, &idp, &ticket).await;
    assert!(
        matches!(finished, Finished::StepUp(_)),
        "the policy for the partner's guests did not apply: {finished:?}; {:?}",
        access_reports(&h)
    );
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
}

/// Without the tenant opting in, a federated guest steps up with the
/// authenticator app only: the partner runs the guest's mailbox too, so an
/// emailed code would be no second factor.
#[tokio::test]
async fn the_emailed_step_up_is_an_opt_in() {
    let idp = PartnerIdp::new(alice(PARTNER_TID, Some(PARTNER_TID), &["pwd"]));
    let http = offline();
    let h = harness(&idp, &http, |b| {
        b.conditional_access(mfa_for_guests())
            .step_up_methods(StepUpMethods::default())
    });
    let (_inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (_handle, finished) = consent_at_partner(&h, &idp, &ticket).await;
    let Finished::StepUp(StepUpPage::Choose { methods, .. }) = finished else {
        panic!("expected a step-up, got {finished:?}");
    };
    assert_eq!(
        methods,
        StepUpMethods {
            email_otp: false,
            authenticator: true
        }
    );
}

// ---------------------------------------------------------------------------
// 8. User targets that cannot be checked, groups, providers that name no
//    organisation, the emailed step-up off by default
// ---------------------------------------------------------------------------

use guestpass::flow::machine::FlowError;

/// Someone at the partner other than Alice.
const SOMEONE_ELSE_OID: &str = "0e0e0e0e-1111-4222-8333-444455556666";
/// A group at the partner.
const PARTNER_GROUP: &str = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a";

/// Settings for organisation `tenant` whose inbound `usersAndGroups`
/// blocks `target` (of `target_type`).
fn blocking_target(tenant: &str, target: &str, target_type: &str) -> CrossTenantSettings {
    cross_tenant(serde_json::json!({
        "partners": [{
            "tenantId": tenant,
            "b2bCollaborationInbound": {
                "usersAndGroups": {"accessType": "blocked",
                                   "targets": [{"target": target, "targetType": target_type}]}
            }
        }]
    }))
}

/// A harness with `idp` registered as `kind` (and nothing else about the
/// provider or the step-up methods), with `f` on top.
fn harness_registered_as(
    idp: &Arc<PartnerIdp>,
    http: &Arc<FnHttpClient>,
    kind: CandidateKind,
    f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder,
) -> Harness {
    signup_harness(offering_partner(), |b| {
        f(b.http_client(http.clone()).identity_provider(idp.clone(), kind))
    })
}

/// Redeeming as `identity` under `settings` is blocked at the callback by
/// the `usersAndGroups` setting for `tenant`, and a sign-up as `identity`
/// too.
async fn assert_users_and_groups_block(
    identity: ExternalIdentity,
    settings: CrossTenantSettings,
    tenant: &str,
) {
    let idp = PartnerIdp::new(identity);
    let http = offline();
    let h = harness(&idp, &http, |b| b.cross_tenant_access(settings.clone()));
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (handle, step) = redeem_at_partner(&h, &idp, &ticket).await;
    assert_eq!(
        step,
        RedemptionStep::Blocked {
            message: PARTNER_BLOCKED.to_owned()
        }
    );
    assert_eq!(h.session_step(&handle).await, "blocked");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
    let block = partner_block(
        REDEMPTION_APPLICATION_ID,
        "usersAndGroups",
        "the partner's settings",
        tenant,
    );
    assert_eq!(access_reports(&h), [block]);

    // A sign-up (a fresh harness: the invited Alice would be taken).
    let idp = PartnerIdp::new(idp.identity.lock().unwrap().clone());
    let h = harness(&idp, &http, |b| b.cross_tenant_access(settings));
    let (handle, page) = sign_up_at_partner(&h).await;
    let page = page.unwrap();
    let FlowStep::Blocked { message } = &page.step else {
        panic!("expected a block, got {:?}", page.step);
    };
    assert_eq!(message, PARTNER_BLOCKED);
    assert_eq!(h.flow(&handle).await.unwrap().value.state.name(), "blocked");
    assert!(h.gp.users().await.unwrap().is_empty());
    assert_eq!(
        access_reports(&h),
        [partner_block(
            APP,
            "usersAndGroups",
            "the partner's settings",
            tenant
        )]
    );
}

/// A block of specific partner users cannot be checked without the
/// user's object id: it blocks (fail closed).
#[tokio::test]
async fn a_block_of_specific_partner_users_blocks_a_token_without_an_object_id() {
    let mut identity = alice_with_mfa();
    identity.object_id = None;
    assert_users_and_groups_block(
        identity,
        blocking_target(PARTNER_TID, SOMEONE_ELSE_OID, "user"),
        PARTNER_TID,
    )
    .await;
}

/// A token from a tenant where the user is a guest carries the guest
/// object's id, not the home one: a home organisation's block of specific
/// users cannot be checked and blocks.
#[tokio::test]
async fn a_block_of_specific_home_users_blocks_a_token_issued_by_another_tenant() {
    // Issued by the partner for a user whose home is OTHER_TID, whose
    // settings block someone (by id) other than the guest object.
    let identity = alice(PARTNER_TID, Some(OTHER_TID), &["pwd", "mfa"]);
    assert_eq!(identity.object_id.as_deref(), Some(ALICE_OID));
    assert_users_and_groups_block(
        identity,
        blocking_target(OTHER_TID, SOMEONE_ELSE_OID, "user"),
        OTHER_TID,
    )
    .await;
}

/// Group memberships are the partner's and unknown here: a block of a
/// group blocks every partner user, even one known by object id at home.
#[tokio::test]
async fn a_block_of_a_partner_group_blocks_every_partner_user() {
    assert_users_and_groups_block(
        alice_with_mfa(),
        blocking_target(PARTNER_TID, PARTNER_GROUP, "group"),
        PARTNER_TID,
    )
    .await;
    // Another partner account (its own subject and object id) too.
    let mut other = person(ALICE, "alice-2-sub", PARTNER_TID, Some(PARTNER_TID), &["pwd"]);
    other.object_id = Some(SOMEONE_ELSE_OID.to_owned());
    assert_users_and_groups_block(
        other,
        blocking_target(PARTNER_TID, PARTNER_GROUP, "group"),
        PARTNER_TID,
    )
    .await;
}

/// The same fake provider registered as a direct federation for the
/// partner's domain: its `tid` names no organisation, so the partner's
/// trusted MFA claim does not count (the guest steps up) and a block of
/// the partner's users does not apply to them.
#[tokio::test]
async fn a_direct_federation_speaks_for_no_home_organisation() {
    let direct = || CandidateKind::DirectFederation {
        domains: vec!["fabrikam.example".to_owned()],
    };
    let http = offline();

    // Trust on, `mfa` in the token: a step-up all the same.
    let idp = PartnerIdp::new(alice_with_mfa());
    let h = harness_registered_as(&idp, &http, direct(), |b| {
        b.conditional_access(mfa_for_guests())
            .cross_tenant_access(trusting_partner())
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (handle, finished) = consent_at_partner(&h, &idp, &ticket).await;
    assert!(
        matches!(finished, Finished::StepUp(StepUpPage::Choose { .. })),
        "the partner's claim was trusted through a direct federation: {finished:?}"
    );
    assert_eq!(h.session_step(&handle).await, "stepUp");
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
    let reports = access_reports(&h);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].decision, "require mfa");
    // Nor in a sign-up (a new person: the invited Alice is taken).
    idp.set_identity(person(
        "carol@fabrikam.example",
        "carol-sub",
        PARTNER_TID,
        Some(PARTNER_TID),
        &["pwd", "mfa"],
    ));
    let (_, page) = sign_up_through_attributes(&h).await;
    assert!(
        matches!(
            &page.step,
            FlowStep::StepUp {
                page: StepUpPage::Choose { .. },
                ..
            }
        ),
        "{:?}",
        page.step
    );
    assert_eq!(h.gp.users().await.unwrap().len(), 1, "only the invited user");

    // The partner's users blocked, and the default blocking everyone: the
    // guest has no home organisation, so neither applies.
    for settings in [
        blocking_partner_users(),
        default_blocks_inbound(serde_json::json!([])),
    ] {
        let idp = PartnerIdp::new(alice_with_mfa());
        let h = harness_registered_as(&idp, &http, direct(), |b| b.cross_tenant_access(settings));
        let (inv, ticket) = h.invite_with_ticket(ALICE).await;
        let (_, finished) = consent_at_partner(&h, &idp, &ticket).await;
        assert!(matches!(finished, Finished::Redeemed(_)), "{finished:?}");
        assert_redeemed_with_partner_identity(&h, inv.invited_user.id, inv.id).await;
        assert_eq!(
            access_reports(&h),
            [report(REDEMPTION_APPLICATION_ID, "allow", &[])]
        );
    }
}

/// A tenant that never calls `step_up_methods` offers the authenticator
/// app only, even after a federated sign-in, and refuses a request for an
/// emailed code, in a redemption and in a sign-up.
#[tokio::test]
async fn without_the_opt_in_an_emailed_step_up_is_refused_after_a_federated_sign_in() {
    let organisation = || CandidateKind::Organization {
        tenants: vec![PartnerTenant::new(PARTNER_TID, ["fabrikam.example"])],
    };
    let http = offline();
    let only_the_app = StepUpMethods {
        email_otp: false,
        authenticator: true,
    };

    let idp = PartnerIdp::new(alice(PARTNER_TID, Some(PARTNER_TID), &["pwd"]));
    let h = harness_registered_as(&idp, &http, organisation(), |b| {
        b.conditional_access(mfa_for_guests())
    });
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let (handle, finished) = consent_at_partner(&h, &idp, &ticket).await;
    let Finished::StepUp(StepUpPage::Choose { methods, .. }) = finished else {
        panic!("expected a step-up, got {finished:?}");
    };
    assert_eq!(methods, only_the_app);
    let e = h
        .fails_unchanged(
            "an emailed step-up code in a tenant without the opt-in",
            h.gp.choose_step_up(&handle, StepUpMethod::EmailOtp),
        )
        .await;
    assert!(
        matches!(
            e,
            Error::Flow(FlowError::InvalidParameter { field: "method", .. })
        ),
        "{e:?}"
    );
    assert_eq!(h.session_step(&handle).await, "stepUp");
    assert!(h.mails_of(guestpass::mail::MessageKind::Passcode).is_empty());
    assert_not_redeemed(&h, inv.invited_user.id, inv.id).await;
    // The authenticator is offered.
    let step =
        h.gp.choose_step_up(&handle, StepUpMethod::Authenticator)
            .await
            .unwrap();
    assert!(
        matches!(
            step,
            RedemptionStep::StepUp(StepUpPage::EnrollAuthenticator { .. })
        ),
        "{step:?}"
    );

    // A sign-up.
    let idp = PartnerIdp::new(alice(PARTNER_TID, Some(PARTNER_TID), &["pwd"]));
    let h = harness_registered_as(&idp, &http, organisation(), |b| {
        b.conditional_access(mfa_for_guests())
    });
    let (handle, page) = sign_up_through_attributes(&h).await;
    let FlowStep::StepUp {
        page: StepUpPage::Choose { methods, .. },
        ..
    } = &page.step
    else {
        panic!("expected a step-up, got {:?}", page.step);
    };
    assert_eq!(*methods, only_the_app);
    let e = h
        .flows_unchanged(
            "an emailed step-up code in a sign-up without the opt-in",
            h.post(&handle, &page, FlowAction::ChooseStepUp(StepUpMethod::EmailOtp)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Flow(FlowError::InvalidParameter { field: "method", .. })
        ),
        "{e:?}"
    );
    assert!(h.mails_of(guestpass::mail::MessageKind::Passcode).is_empty());
    assert!(h.gp.users().await.unwrap().is_empty());
}
