//! Invitation redemption as a flow of the sign-up engine: the terms-of-use
//! step, page reloads, and the separation of redemption and sign-up
//! handles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use guestpass::audit::AuditKind;
use guestpass::directory::{AgreementAcceptance, DirectoryStore, ExternalUserState, InvitationStatus};
use guestpass::error::{ConfigError, RedemptionError, StoreError, TicketError};
use guestpass::flow::machine::{FlowError, FlowState};
use guestpass::policy::TermsOfUse;
use guestpass::{ConsentDecision, Error, Finished, Inviter, RedemptionStep};
use time::Duration;

const TERMS_URL: &str = "https://contoso.example/guest-terms";

fn terms(version: u32) -> TermsOfUse {
    TermsOfUse::new("guest-terms", "Contoso guest terms", TERMS_URL, version).unwrap()
}

fn with_terms() -> Harness {
    Harness::with(|b| b.terms_of_use(terms(3)).passcode_policy(permissive_policy()))
}

fn wrong_step(expected: &'static str, actual: &'static str) -> Error {
    RedemptionError::WrongStep { expected, actual }.into()
}

/// Takes a fresh invitation of `ALICE`-like `email` to the terms page.
async fn to_terms(h: &Harness, email: &str) -> (guestpass::directory::Invitation, String) {
    let (inv, ticket) = h.invite_with_ticket(email).await;
    let handle = h.to_consent(&ticket, email).await;
    let out =
        h.gp.finish_redemption(&handle, ConsentDecision::Accept)
            .await
            .unwrap();
    assert_eq!(out, Finished::TermsOfUse { terms: terms(3) });
    assert_eq!(h.session_step(&handle).await, "termsOfUse");
    (inv, handle)
}

#[tokio::test]
async fn accepted_terms_are_recorded_with_version_and_time() {
    let h = with_terms();
    let (inv, handle) = to_terms(&h, "alice@fabrikam.example").await;
    // Nothing is redeemed before the terms are answered.
    let pending = h.user(inv.invited_user.id).await;
    assert_eq!(
        pending.value.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
    assert!(pending.value.user.agreement_acceptances.is_empty());
    assert_eq!(h.count_audit(|k| matches!(k, AuditKind::Redeemed { .. })), 0);

    h.clock.advance(Duration::seconds(30));
    let out =
        h.gp.answer_terms_of_use(&handle, ConsentDecision::Accept)
            .await
            .unwrap();
    let Finished::Redeemed(r) = out else {
        panic!("accepting the terms did not redeem: {out:?}");
    };
    assert_eq!(r.redirect_url.as_str(), REDIRECT);
    let expected = vec![AgreementAcceptance {
        agreement_id: "guest-terms".into(),
        version: 3,
        recorded_date_time: h.now(),
    }];
    assert_eq!(r.user.agreement_acceptances, expected);
    let stored = h.user(inv.invited_user.id).await.value.user;
    assert_eq!(stored.agreement_acceptances, expected);
    assert_eq!(stored.external_user_state, Some(ExternalUserState::Accepted));
    assert_eq!(
        h.invitation(inv.id).await.value.invitation.status,
        InvitationStatus::Completed
    );
    assert_eq!(h.session_step(&handle).await, "completed");
    assert_eq!(h.count_audit(|k| matches!(k, AuditKind::Redeemed { .. })), 1);
    // The acceptance shows in the user's Graph JSON.
    let json = serde_json::to_value(&stored).unwrap();
    assert_eq!(json["agreementAcceptances"][0]["agreementId"], "guest-terms");
    assert_eq!(json["agreementAcceptances"][0]["version"], 3);
}

#[tokio::test]
async fn declined_terms_leave_the_invitation_pending() {
    let h = with_terms();
    let (inv, handle) = to_terms(&h, "alice@fabrikam.example").await;
    let out =
        h.gp.answer_terms_of_use(&handle, ConsentDecision::Decline)
            .await
            .unwrap();
    assert_eq!(out, Finished::Declined);
    assert_eq!(h.session_step(&handle).await, "declined");
    let user = h.user(inv.invited_user.id).await.value;
    assert_eq!(
        user.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
    assert!(user.user.identities.is_empty());
    assert!(user.user.agreement_acceptances.is_empty());
    assert_eq!(
        h.invitation(inv.id).await.value.invitation.status,
        InvitationStatus::PendingAcceptance
    );
    assert_eq!(
        h.count_audit(
            |k| matches!(k, AuditKind::TermsOfUseDeclined { invitation_id } if *invitation_id == inv.id)
        ),
        1
    );
    assert_eq!(
        h.count_audit(|k| matches!(k, AuditKind::ConsentDeclined { .. })),
        0
    );
    // The declined flow is over; the same link opens a new one that redeems.
    h.fails_unchanged_with(
        "answer again",
        h.gp.answer_terms_of_use(&handle, ConsentDecision::Accept),
        wrong_step("termsOfUse", "declined"),
    )
    .await;
    let ticket = h.ticket_for("alice@fabrikam.example");
    let again = h.to_consent(&ticket, "alice@fabrikam.example").await;
    h.gp.finish_redemption(&again, ConsentDecision::Accept)
        .await
        .unwrap();
    let out =
        h.gp.answer_terms_of_use(&again, ConsentDecision::Accept)
            .await
            .unwrap();
    assert!(matches!(out, Finished::Redeemed(_)), "{out:?}");
}

#[tokio::test]
async fn each_answer_belongs_to_its_own_step() {
    let h = with_terms();
    let (_, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let handle = h.start(&ticket).await;
    h.fails_unchanged_with(
        "terms before the passcode",
        h.gp.answer_terms_of_use(&handle, ConsentDecision::Accept),
        wrong_step("termsOfUse", "passcode"),
    )
    .await;
    h.submit_to_consent(&handle, &h.code_for("alice@fabrikam.example"))
        .await;
    h.fails_unchanged_with(
        "terms before consent",
        h.gp.answer_terms_of_use(&handle, ConsentDecision::Accept),
        wrong_step("termsOfUse", "consent"),
    )
    .await;
    h.gp.finish_redemption(&handle, ConsentDecision::Accept)
        .await
        .unwrap();
    h.fails_unchanged_with(
        "consent twice",
        h.gp.finish_redemption(&handle, ConsentDecision::Accept),
        wrong_step("consent", "termsOfUse"),
    )
    .await;
    h.fails_unchanged_with(
        "a passcode at the terms",
        h.gp.submit_passcode(&handle, "12345678"),
        wrong_step("passcode", "termsOfUse"),
    )
    .await;
}

#[tokio::test]
async fn without_terms_consent_completes_and_the_terms_step_is_refused() {
    let h = Harness::new();
    let (_, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let handle = h.to_consent(&ticket, "alice@fabrikam.example").await;
    h.fails_unchanged_with(
        "terms without terms",
        h.gp.answer_terms_of_use(&handle, ConsentDecision::Accept),
        wrong_step("termsOfUse", "consent"),
    )
    .await;
    let r = h.accept(&handle).await;
    assert!(r.user.agreement_acceptances.is_empty());
}

#[tokio::test]
async fn a_revoked_invitation_cannot_accept_its_terms() {
    let h = with_terms();
    let (inv, handle) = to_terms(&h, "alice@fabrikam.example").await;
    h.gp.revoke(&Inviter::admin(None), inv.invited_user.id)
        .await
        .unwrap();
    h.fails_unchanged_with(
        "terms after revoke",
        h.gp.answer_terms_of_use(&handle, ConsentDecision::Accept),
        TicketError::NoLongerValid.into(),
    )
    .await;
}

#[tokio::test]
async fn an_expired_flow_cannot_accept_its_terms() {
    let h = with_terms();
    let (_, handle) = to_terms(&h, "alice@fabrikam.example").await;
    h.clock.advance(Duration::hours(1));
    h.fails_unchanged_with(
        "terms after expiry",
        h.gp.answer_terms_of_use(&handle, ConsentDecision::Accept),
        RedemptionError::SessionExpired.into(),
    )
    .await;
}

/// Of many concurrent acceptances of one flow's terms, exactly one redeems.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_terms_acceptances_redeem_once() {
    let h = Harness::racy(|b| b.terms_of_use(terms(3)));
    let (inv, handle) = to_terms(&h, "alice@fabrikam.example").await;
    let gp = h.gp.clone();
    let results = race(16, move |_| {
        let gp = gp.clone();
        let handle = handle.clone();
        async move { gp.answer_terms_of_use(&handle, ConsentDecision::Accept).await }
    })
    .await;
    let mut wins = 0;
    for r in &results {
        match r {
            Ok(Finished::Redeemed(_)) => wins += 1,
            Err(Error::Store(StoreError::Conflict { .. }))
            | Err(Error::Ticket(TicketError::NoLongerValid))
            | Err(Error::Redemption(RedemptionError::WrongStep { .. })) => {}
            other => panic!("unexpected outcome of a racing acceptance: {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    let user = h.user(inv.invited_user.id).await.value.user;
    assert_eq!(user.agreement_acceptances.len(), 1, "one acceptance recorded");
    assert_eq!(user.identities.len(), 1);
    assert_eq!(h.count_audit(|k| matches!(k, AuditKind::Redeemed { .. })), 1);
}

#[tokio::test]
async fn a_reload_shows_the_current_step_and_changes_nothing() {
    let h = with_terms();
    let (_, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let handle = h.start(&ticket).await;
    let step = h
        .unchanged("reload", h.gp.redemption_step(&handle))
        .await
        .unwrap();
    assert_eq!(
        step,
        RedemptionStep::EnterPasscode {
            sent_to: "alice@fabrikam.example".into()
        }
    );
    h.submit_to_consent(&handle, &h.code_for("alice@fabrikam.example"))
        .await;
    let step = h
        .unchanged("reload", h.gp.redemption_step(&handle))
        .await
        .unwrap();
    assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
    h.gp.finish_redemption(&handle, ConsentDecision::Accept)
        .await
        .unwrap();
    let step = h
        .unchanged("reload", h.gp.redemption_step(&handle))
        .await
        .unwrap();
    assert_eq!(step, RedemptionStep::TermsOfUse { terms: terms(3) });
    h.gp.answer_terms_of_use(&handle, ConsentDecision::Accept)
        .await
        .unwrap();
    let step = h
        .unchanged("reload", h.gp.redemption_step(&handle))
        .await
        .unwrap();
    let RedemptionStep::Redeemed(done) = &step else {
        panic!("expected the redemption, got {step:?}");
    };
    assert_eq!(done.redirect_url.as_str(), REDIRECT);
    assert_eq!(done.user.external_user_state, Some(ExternalUserState::Accepted));
    for bad in ["", "nope", &"x".repeat(65)] {
        h.fails_unchanged_with(
            "reload of an unknown handle",
            h.gp.redemption_step(bad),
            RedemptionError::UnknownSession.into(),
        )
        .await;
    }
}

#[tokio::test]
async fn a_reload_after_a_decline_shows_the_decline() {
    let h = Harness::new();
    let (_, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let handle = h.to_consent(&ticket, "alice@fabrikam.example").await;
    h.gp.finish_redemption(&handle, ConsentDecision::Decline)
        .await
        .unwrap();
    assert_eq!(
        h.gp.redemption_step(&handle).await.unwrap(),
        RedemptionStep::Declined
    );
}

#[tokio::test]
async fn an_undelivered_passcode_shows_on_reload() {
    let h = Harness::permissive();
    let (_, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    h.outbox.fail_next(1);
    let started = h.try_start(&ticket).await.unwrap();
    assert!(
        matches!(started.step, RedemptionStep::PasscodeNotDelivered { .. }),
        "{:?}",
        started.step
    );
    let step = h.gp.redemption_step(started.handle.expose()).await.unwrap();
    assert!(
        matches!(&step, RedemptionStep::PasscodeNotDelivered { sent_to, .. } if sent_to == "alice@fabrikam.example"),
        "{step:?}"
    );
    // A resend that goes out clears it.
    let step = h.resend_passcode(started.handle.expose()).await.unwrap();
    assert!(matches!(step, RedemptionStep::EnterPasscode { .. }), "{step:?}");
    assert!(matches!(
        h.gp.redemption_step(started.handle.expose()).await.unwrap(),
        RedemptionStep::EnterPasscode { .. }
    ));
}

#[tokio::test]
async fn redemption_and_sign_up_handles_do_not_cross() {
    let h = signup_harness(signup_config(r#""attributes": [{"name": "givenName"}]"#), |b| b);
    // A redemption handle is no sign-up flow.
    let (_, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let redemption = h.start(&ticket).await;
    h.fails_unchanged_with(
        "view a redemption as a sign-up",
        h.gp.view_flow(&redemption),
        FlowError::UnknownFlow.into(),
    )
    .await;
    h.fails_unchanged_with(
        "advance a redemption as a sign-up",
        h.gp.advance_flow(&redemption, "csrf", guestpass::FlowAction::ResendPasscode),
        FlowError::UnknownFlow.into(),
    )
    .await;
    let record = h.session(&redemption).await.unwrap();
    assert!(record.value.redemption.is_some());
    h.fails_unchanged_with(
        "approve a redemption",
        h.gp.approve_sign_up(&Inviter::admin(None), record.value.id),
        Error::NotFound { what: "sign-up flow" },
    )
    .await;
    // A sign-up handle is no redemption.
    let (signup, _) = h.flow_to_passcode(signup_request(), "bob@fabrikam.example").await;
    let code = h.code_for("bob@fabrikam.example");
    let unknown: Error = RedemptionError::UnknownSession.into();
    h.fails_unchanged_with(
        "a sign-up passcode through redemption",
        h.gp.submit_passcode(&signup, &code),
        unknown.clone(),
    )
    .await;
    h.fails_unchanged_with(
        "a sign-up resend through redemption",
        h.gp.resend_passcode(&signup),
        unknown.clone(),
    )
    .await;
    h.fails_unchanged_with(
        "a sign-up consent",
        h.gp.finish_redemption(&signup, ConsentDecision::Accept),
        unknown.clone(),
    )
    .await;
    h.fails_unchanged_with(
        "a sign-up reload through redemption",
        h.gp.redemption_step(&signup),
        unknown,
    )
    .await;
}

#[tokio::test]
async fn a_redemption_flow_names_what_it_redeems_and_is_purged_when_expired() {
    let h = Harness::new();
    let (inv, ticket) = h.invite_with_ticket("alice@fabrikam.example").await;
    let handle = h.start(&ticket).await;
    let record = h.session(&handle).await.unwrap().value;
    let binding = record.redemption.clone().unwrap();
    assert_eq!(binding.invitation_id, inv.id);
    assert_eq!(binding.user_id, inv.invited_user.id);
    assert!(record.user_flow_id.is_empty());
    // No sign-up application registered the redirect URL: conditional
    // access sees the redemption application.
    assert_eq!(
        record.client_id,
        guestpass::flow::access::REDEMPTION_APPLICATION_ID
    );
    assert_eq!(record.redirect_uri, REDIRECT);
    assert!(matches!(record.state, FlowState::AwaitingPasscode { .. }));
    // The joined read returns the flow with its invitation and user.
    let joined = h
        .store
        .redemption_by_flow(TENANT, &record.handle_hash)
        .await
        .unwrap();
    assert_eq!(joined.flow.unwrap().value, record);
    assert_eq!(joined.invitation.unwrap().value.invitation.id, inv.id);
    assert_eq!(joined.user.unwrap().value.user.id, inv.invited_user.id);
    assert!(joined.throttle.is_some(), "the send was counted");
    // Another tenant cannot read it.
    assert!(
        h.store
            .redemption_by_flow(OTHER_TENANT, &record.handle_hash)
            .await
            .unwrap()
            .flow
            .is_none()
    );
    let report =
        h.gp.purge_expired(record.expires_at + Duration::seconds(1), 10)
            .await
            .unwrap();
    assert_eq!(report.flows, 1);
    assert!(h.session(&handle).await.is_none());
    h.fails_unchanged_with(
        "a purged flow",
        h.gp.resend_passcode(&handle),
        RedemptionError::UnknownSession.into(),
    )
    .await;
}

#[test]
fn terms_of_use_are_validated_field_by_field() {
    let field = |r: Result<TermsOfUse, ConfigError>| match r {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    };
    assert_eq!(field(TermsOfUse::new("", "T", TERMS_URL, 1)), "terms_of_use.id");
    assert_eq!(
        field(TermsOfUse::new("a b", "T", TERMS_URL, 1)),
        "terms_of_use.id"
    );
    assert_eq!(
        field(TermsOfUse::new("x".repeat(65), "T", TERMS_URL, 1)),
        "terms_of_use.id"
    );
    assert_eq!(
        field(TermsOfUse::new("t", " ", TERMS_URL, 1)),
        "terms_of_use.display_name"
    );
    assert_eq!(
        field(TermsOfUse::new("t", "a\u{7}b", TERMS_URL, 1)),
        "terms_of_use.display_name"
    );
    assert_eq!(
        field(TermsOfUse::new("t", "T", "ftp://contoso.example/t", 1)),
        "terms_of_use.url"
    );
    assert_eq!(
        field(TermsOfUse::new("t", "T", "https://u:p@contoso.example/t", 1)),
        "terms_of_use.url"
    );
    assert_eq!(
        field(TermsOfUse::new("t", "T", TERMS_URL, 0)),
        "terms_of_use.version"
    );
    let ok = TermsOfUse::new("t.1-_", "T", "http://127.0.0.1:8080/terms", 1).unwrap();
    assert_eq!(ok.url().as_str(), "http://127.0.0.1:8080/terms");
}

/// Terms raised to a new version after a guest saw the old one: accepting
/// shows the new version (an acceptance records only what was shown), and
/// accepting that redeems with it.
#[tokio::test]
async fn terms_changed_after_they_were_shown_are_shown_again() {
    let h = with_terms();
    let (inv, handle) = to_terms(&h, "alice@fabrikam.example").await;
    let raised = h
        .sibling(SEED + 5)
        .terms_of_use(terms(4))
        .passcode_policy(permissive_policy())
        .build()
        .unwrap();
    let out = raised
        .answer_terms_of_use(&handle, ConsentDecision::Accept)
        .await
        .unwrap();
    assert_eq!(out, Finished::TermsOfUse { terms: terms(4) });
    assert_eq!(
        raised.redemption_step(&handle).await.unwrap(),
        RedemptionStep::TermsOfUse { terms: terms(4) }
    );
    assert_eq!(
        h.user(inv.invited_user.id).await.value.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance),
        "nothing redeemed on the old version"
    );
    let Finished::Redeemed(r) = raised
        .answer_terms_of_use(&handle, ConsentDecision::Accept)
        .await
        .unwrap()
    else {
        panic!("the shown version did not redeem");
    };
    assert_eq!(r.user.agreement_acceptances.len(), 1);
    assert_eq!(r.user.agreement_acceptances[0].version, 4);
}

/// A reload shows the terms the flow holds (what an acceptance records),
/// even after the tenant dropped its terms; accepting them then redeems and
/// records them.
#[tokio::test]
async fn terms_dropped_after_they_were_shown_are_recorded_as_shown() {
    let h = with_terms();
    let (_, handle) = to_terms(&h, "alice@fabrikam.example").await;
    let dropped = h.sibling(SEED + 6).build().unwrap();
    assert_eq!(
        dropped.redemption_step(&handle).await.unwrap(),
        RedemptionStep::TermsOfUse { terms: terms(3) }
    );
    let Finished::Redeemed(r) = dropped
        .answer_terms_of_use(&handle, ConsentDecision::Accept)
        .await
        .unwrap()
    else {
        panic!("accepting the shown terms did not redeem");
    };
    assert_eq!(
        r.user
            .agreement_acceptances
            .iter()
            .map(|a| (a.agreement_id.as_str(), a.version))
            .collect::<Vec<_>>(),
        [("guest-terms", 3)]
    );
}

/// The collaboration settings and the registered redirect URLs are checked
/// again at the terms step.
#[tokio::test]
async fn policy_and_redirect_are_checked_again_at_the_terms_step() {
    let h = with_terms();
    let (_, handle) = to_terms(&h, "alice@fabrikam.example").await;
    let denying = h
        .sibling(SEED + 9)
        .terms_of_use(terms(3))
        .collaboration(guestpass::policy::CollaborationSettings {
            domains: guestpass::policy::DomainRestriction::deny(["fabrikam.example"]).unwrap(),
            ..Default::default()
        })
        .build()
        .unwrap();
    h.fails_unchanged_with(
        "terms under a deny list",
        denying.answer_terms_of_use(&handle, ConsentDecision::Accept),
        Error::Denied(guestpass::error::Denied::DomainNotAllowed {
            domain: "fabrikam.example".into(),
        }),
    )
    .await;
    let moved = builder_without_redirect(h.store.clone(), &h.outbox, &h.audit, &h.clock, SEED + 11)
        .terms_of_use(terms(3))
        .redirect_url("https://new.contoso.example/")
        .build()
        .unwrap();
    h.fails_unchanged_with(
        "terms with an unregistered redirect",
        moved.answer_terms_of_use(&handle, ConsentDecision::Accept),
        Error::Input(guestpass::error::InputError::RedirectNotRegistered { url: REDIRECT.into() }),
    )
    .await;
    let out =
        h.gp.answer_terms_of_use(&handle, ConsentDecision::Accept)
            .await
            .unwrap();
    assert!(matches!(out, Finished::Redeemed(_)), "{out:?}");
}

/// Another tenant's service knows nothing of this tenant's redemptions.
#[tokio::test]
async fn another_tenant_cannot_see_or_advance_a_redemption() {
    let h = with_terms();
    let (_, handle) = to_terms(&h, "alice@fabrikam.example").await;
    let other = h.other_tenant();
    let unknown: Error = RedemptionError::UnknownSession.into();
    h.fails_unchanged_with("reload", other.redemption_step(&handle), unknown.clone())
        .await;
    h.fails_unchanged_with(
        "terms",
        other.answer_terms_of_use(&handle, ConsentDecision::Accept),
        unknown,
    )
    .await;
}
