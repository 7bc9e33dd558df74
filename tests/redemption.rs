//! Redemption end to end: invite, mail, view (GET), start (POST), passcode,
//! consent, finish; and every way a ticket must stop working (used, resent,
//! revoked, reset, expired, another tenant's, malformed or tampered), each
//! leaving the store as it was and answering unknown and known invitations
//! alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;

use common::*;
use guestpass::audit::AuditKind;
use guestpass::directory::{
    DirectoryStore, EMAIL_OTP_ISSUER, ExternalUserState, InvitationStatus, ObjectIdentity, SignInType,
};
use guestpass::error::{PasscodeError, RedemptionError, StoreError, TicketError};
use guestpass::id::Id;
use guestpass::invitation::ticket;
use guestpass::keys::{KeyRing, SigningKey};
use guestpass::mail::MessageKind;
use guestpass::random::SeededRandom;
use guestpass::{ConsentDecision, Error, Finished, Inviter, RedemptionStep};
use time::Duration;

const ALICE: &str = "alice@fabrikam.example";

fn no_longer_valid() -> Error {
    Error::Ticket(TicketError::NoLongerValid)
}

#[tokio::test]
async fn happy_path_end_to_end() {
    let h = Harness::new();
    let inv = h
        .invite_request(named_request(ALICE, "Alice Smith"))
        .await
        .unwrap();
    assert_eq!(inv.status, InvitationStatus::PendingAcceptance);
    let user_id = inv.invited_user.id;

    // The invitation mail carries the link, which is the inviteRedeemUrl.
    let messages = h.outbox.messages();
    assert_eq!(messages.len(), 1);
    let mail = &messages[0];
    assert_eq!(mail.kind, MessageKind::Invitation);
    assert_eq!(mail.to.address.as_str(), ALICE);
    let link = mail
        .link_starting_with(&format!("{BASE_URL}redeem?ticket="))
        .expect("link to the redemption page");
    assert_eq!(inv.invite_redeem_url.as_ref().unwrap().expose(), link);
    let ticket = ticket_from_link(link);
    assert!(!ticket.is_empty());

    // GET shows the page.
    let view = h.gp.view_redemption(&ticket).await.unwrap();
    assert_eq!(view.organization, TENANT_NAME);
    assert_eq!(view.invited_email, ALICE);
    assert_eq!(view.display_name.as_deref(), Some("Alice Smith"));

    // POST opens a session and mails a passcode.
    let started = h.try_start(&ticket).await.unwrap();
    assert_eq!(
        started.step,
        RedemptionStep::EnterPasscode {
            sent_to: ALICE.to_owned()
        }
    );
    let handle = started.handle.expose().to_owned();
    assert_eq!(h.outbox.messages().len(), 2);
    let code_mail = h.last_mail(MessageKind::Passcode, ALICE);
    assert_eq!(code_mail.to.address.as_str(), ALICE);
    let code = h.code_for(ALICE);
    assert_eq!(code.len(), DIGITS);
    assert_eq!(h.session_step(&handle).await, "passcode");

    // The code proves the address; consent follows.
    match h.gp.submit_passcode(&handle, &code).await.unwrap() {
        RedemptionStep::Consent {
            organization,
            permissions,
            ..
        } => {
            assert_eq!(organization, TENANT_NAME);
            assert!(permissions.contains(&"email address"));
        }
        other => panic!("expected consent, got {other:?}"),
    }
    assert_eq!(h.session_step(&handle).await, "consent");
    // Still pending until the guest accepts.
    assert_eq!(
        h.user(user_id).await.value.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );

    h.clock.advance(Duration::seconds(5));
    let done = h.accept(&handle).await;
    assert_eq!(done.redirect_url.as_str(), REDIRECT);
    assert_eq!(done.user.id, user_id);
    assert_eq!(done.user.external_user_state, Some(ExternalUserState::Accepted));
    assert_eq!(done.user.external_user_state_change_date_time, Some(h.now()));
    assert_eq!(
        done.user.identities,
        vec![ObjectIdentity {
            sign_in_type: SignInType::Federated,
            issuer: EMAIL_OTP_ISSUER.to_owned(),
            issuer_assigned_id: key_of(ALICE),
        }]
    );
    assert_eq!(EMAIL_OTP_ISSUER, "mail");

    // The directory agrees.
    let stored = h.gp.user(user_id).await.unwrap();
    assert_eq!(stored, done.user);
    assert_eq!(h.gp.users().await.unwrap(), vec![done.user.clone()]);
    let by_identity = h
        .store
        .user_by_identity(TENANT, "mail", &key_of(ALICE))
        .await
        .unwrap()
        .expect("the identity is indexed");
    assert_eq!(by_identity.value.user.id, user_id);
    let record = h.user(user_id).await;
    assert_eq!(record.value.active_invitation, None);
    let inv_record = h.invitation(inv.id).await;
    assert_eq!(inv_record.value.invitation.status, InvitationStatus::Completed);
    assert!(inv_record.value.ticket.is_none(), "the ticket binding is cleared");
    assert_eq!(h.session_step(&handle).await, "completed");

    // The audit trail, in order, all about Alice in Contoso.
    let events = h.audit_events();
    let kinds: Vec<AuditKind> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            AuditKind::Invited {
                invitation_id: inv.id,
                inviter: None
            },
            AuditKind::PasscodeSent,
            AuditKind::AccessEvaluated {
                flow_id: match &kinds[2] {
                    AuditKind::AccessEvaluated { flow_id, .. } => *flow_id,
                    other => panic!("expected the access decision, got {other:?}"),
                },
                report: guestpass::flow::access::AccessReport {
                    application_id: guestpass::flow::access::REDEMPTION_APPLICATION_ID.to_owned(),
                    decision: "allow".to_owned(),
                    policies: Vec::new(),
                },
            },
            AuditKind::Redeemed {
                invitation_id: inv.id
            },
        ]
    );
    for e in &events {
        assert_eq!(e.tenant_id, TENANT);
        assert_eq!(e.user_id, Some(user_id));
    }
    assert_eq!(events[3].at, h.now());
    // No further mail after the passcode.
    assert_eq!(h.outbox.messages().len(), 2);
}

#[tokio::test]
async fn declining_consent_leaves_the_invitation_pending_and_redeemable_later() {
    let h = Harness::new();
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let handle = h.to_consent(&ticket, ALICE).await;
    let out =
        h.gp.finish_redemption(&handle, ConsentDecision::Decline)
            .await
            .unwrap();
    assert_eq!(out, Finished::Declined);

    let user = h.user(inv.invited_user.id).await.value;
    assert_eq!(
        user.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
    assert!(user.user.identities.is_empty());
    assert_eq!(user.active_invitation, Some(inv.id));
    let inv_record = h.invitation(inv.id).await.value;
    assert_eq!(inv_record.invitation.status, InvitationStatus::PendingAcceptance);
    assert!(inv_record.ticket.is_some());
    assert_eq!(h.session_step(&handle).await, "declined");
    assert!(h.audit_kinds().contains(&AuditKind::ConsentDeclined {
        invitation_id: inv.id
    }));

    // The declined session cannot be turned into an acceptance.
    h.fails_unchanged_with(
        "accept on a declined session",
        h.gp.finish_redemption(&handle, ConsentDecision::Accept),
        Error::Redemption(RedemptionError::WrongStep {
            expected: "consent",
            actual: "declined",
        }),
    )
    .await;

    // The link still works: a new start (after the send interval) redeems.
    h.clock.advance(Duration::seconds(31));
    assert!(h.gp.view_redemption(&ticket).await.is_ok());
    let done = h.redeem(&ticket, ALICE).await;
    assert_eq!(done.user.external_user_state, Some(ExternalUserState::Accepted));
    assert_eq!(
        h.invitation(inv.id).await.value.invitation.status,
        InvitationStatus::Completed
    );
}

#[tokio::test]
async fn viewing_a_link_changes_nothing_and_sends_no_mail() {
    let h = Harness::new();
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    for _ in 0..3 {
        let view = h
            .unchanged("view before start", h.gp.view_redemption(&ticket))
            .await
            .unwrap();
        assert_eq!(view.invited_email, ALICE);
    }
    // Also mid-redemption: a session exists, viewing still touches nothing.
    let handle = h.start(&ticket).await;
    h.unchanged("view during redemption", h.gp.view_redemption(&ticket))
        .await
        .unwrap();
    // And a scanner's GETs did not consume anything: the redemption finishes.
    let code = h.code_for(ALICE);
    h.gp.submit_passcode(&handle, &code).await.unwrap();
    h.unchanged("view at consent", h.gp.view_redemption(&ticket))
        .await
        .unwrap();
    h.accept(&handle).await;
}

#[tokio::test]
async fn a_ticket_redeems_only_once() {
    let h = Harness::new();
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    h.redeem(&ticket, ALICE).await;
    h.clock.advance(Duration::minutes(5));
    h.fails_unchanged_with("second start", h.gp.start_redemption(&ticket), no_longer_valid())
        .await;
    h.fails_unchanged_with(
        "view after redemption",
        h.gp.view_redemption(&ticket),
        no_longer_valid(),
    )
    .await;
    let u = h.user(inv.invited_user.id).await.value;
    assert_eq!(u.user.identities.len(), 1);
    assert_eq!(h.count_audit(|k| matches!(k, AuditKind::Redeemed { .. })), 1);
}

/// Outcome tally of racing finishes.
fn tally(results: &[Result<Finished, Error>]) -> usize {
    let mut wins = 0;
    for r in results {
        match r {
            Ok(Finished::Redeemed(_)) => wins += 1,
            Ok(other) => panic!("a racing finish neither won nor lost: {other:?}"),
            Err(Error::Store(StoreError::Conflict { .. }))
            | Err(Error::Ticket(TicketError::NoLongerValid))
            | Err(Error::Redemption(RedemptionError::WrongStep { .. })) => {}
            Err(e) => panic!("unexpected error from a racing finish: {e:?}"),
        }
    }
    wins
}

async fn assert_redeemed_once(h: &Harness, inv_id: Id, user_id: Id) {
    let user = h.user(user_id).await.value;
    assert_eq!(user.user.external_user_state, Some(ExternalUserState::Accepted));
    assert_eq!(user.user.identities.len(), 1, "exactly one identity");
    let all_identities: usize = h
        .store
        .users(TENANT)
        .await
        .unwrap()
        .iter()
        .map(|u| u.user.identities.len())
        .sum();
    assert_eq!(all_identities, 1, "exactly one identity in the directory");
    let inv = h.invitation(inv_id).await;
    assert_eq!(inv.value.invitation.status, InvitationStatus::Completed);
    assert_eq!(inv.version, 2, "the invitation was completed by one write");
    let redeemed: Vec<_> = h
        .audit_kinds()
        .into_iter()
        .filter(|k| matches!(k, AuditKind::Redeemed { .. }))
        .collect();
    assert_eq!(
        redeemed,
        vec![AuditKind::Redeemed {
            invitation_id: inv_id
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_finishes_on_one_session_redeem_once() {
    let h = Harness::racy(|b| b);
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let handle = h.to_consent(&ticket, ALICE).await;
    let gp = h.gp.clone();
    let results = race(32, |_| {
        let gp = gp.clone();
        let handle = handle.clone();
        async move { gp.finish_redemption(&handle, ConsentDecision::Accept).await }
    })
    .await;
    assert_eq!(tally(&results), 1, "exactly one finish succeeds");
    assert_redeemed_once(&h, inv.id, inv.invited_user.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_finishes_on_many_sessions_of_one_ticket_redeem_once() {
    let h = Harness::racy(|b| b.passcode_policy(permissive_policy()));
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let mut handles = Vec::new();
    for _ in 0..32 {
        handles.push(h.to_consent(&ticket, ALICE).await);
    }
    assert_eq!(handles.iter().collect::<HashSet<_>>().len(), 32);
    let gp = h.gp.clone();
    let hs = handles.clone();
    let results = race(32, move |i| {
        let gp = gp.clone();
        let handle = hs[i].clone();
        async move { gp.finish_redemption(&handle, ConsentDecision::Accept).await }
    })
    .await;
    assert_eq!(tally(&results), 1, "exactly one finish succeeds");
    assert_redeemed_once(&h, inv.id, inv.invited_user.id).await;
    let mut completed = 0;
    for handle in &handles {
        match h.session_step(handle).await {
            "completed" => completed += 1,
            "consent" => {}
            other => panic!("unexpected session step {other:?}"),
        }
    }
    assert_eq!(completed, 1, "only the winner's session is completed");
    // The losers cannot finish afterwards either.
    for handle in &handles {
        if h.session_step(handle).await == "consent" {
            h.fails_unchanged_with(
                "late finish",
                h.gp.finish_redemption(handle, ConsentDecision::Accept),
                no_longer_valid(),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn a_resend_invalidates_the_old_ticket() {
    let h = Harness::new();
    let (first, old_ticket) = h.invite_with_ticket(ALICE).await;
    let user_id = first.invited_user.id;
    // A session opened with the old ticket, waiting at consent.
    let old_handle = h.to_consent(&old_ticket, ALICE).await;

    let (second, new_ticket) = h.resend(user_id, ALICE).await;
    assert_ne!(second.id, first.id);
    assert_eq!(second.invited_user.id, user_id);
    assert_ne!(old_ticket, new_ticket);
    assert!(h.audit_kinds().contains(&AuditKind::Resent {
        invitation_id: second.id,
        replaced: first.id
    }));
    let old = h.invitation(first.id).await.value;
    assert_eq!(old.invitation.status, InvitationStatus::Error);
    assert!(old.ticket.is_none(), "the replaced ticket is unbound");
    assert_eq!(h.user(user_id).await.value.active_invitation, Some(second.id));

    for (what, r) in [
        ("view old", h.gp.view_redemption(&old_ticket).await.map(|_| ())),
        ("start old", h.gp.start_redemption(&old_ticket).await.map(|_| ())),
    ] {
        assert_eq!(r, Err(no_longer_valid()), "{what}");
    }
    h.fails_unchanged_with(
        "finish a session of the replaced ticket",
        h.gp.finish_redemption(&old_handle, ConsentDecision::Accept),
        no_longer_valid(),
    )
    .await;

    h.clock.advance(Duration::seconds(31));
    let done = h.redeem(&new_ticket, ALICE).await;
    assert_eq!(done.user.id, user_id);
    assert_eq!(
        h.invitation(second.id).await.value.invitation.status,
        InvitationStatus::Completed
    );
}

#[tokio::test]
async fn revoking_makes_the_ticket_fail() {
    let h = Harness::new();
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let user_id = inv.invited_user.id;
    let handle = h.to_consent(&ticket, ALICE).await;
    h.clock.advance(Duration::seconds(31));
    let waiting = h.start(&ticket).await;
    let waiting_code = h.code_for(ALICE);

    // A guest may not revoke under the default settings.
    h.fails_unchanged_with(
        "revoke by a guest",
        h.gp.revoke(
            &Inviter {
                id: None,
                role: guestpass::policy::InviterRole::Guest,
            },
            user_id,
        ),
        Error::Denied(guestpass::error::Denied::InviterNotAllowed),
    )
    .await;

    h.gp.revoke(&Inviter::admin(None), user_id).await.unwrap();
    assert!(h.audit_kinds().contains(&AuditKind::Revoked {
        invitation_id: inv.id
    }));
    h.fails_unchanged_with("view revoked", h.gp.view_redemption(&ticket), no_longer_valid())
        .await;
    h.fails_unchanged_with("start revoked", h.gp.start_redemption(&ticket), no_longer_valid())
        .await;
    h.fails_unchanged_with(
        "finish after revoke",
        h.gp.finish_redemption(&handle, ConsentDecision::Accept),
        no_longer_valid(),
    )
    .await;
    h.fails_unchanged_with(
        "passcode after revoke",
        h.gp.submit_passcode(&waiting, &waiting_code),
        no_longer_valid(),
    )
    .await;
    h.clock.advance(Duration::seconds(31));
    h.fails_unchanged_with(
        "resend after revoke",
        h.gp.resend_passcode(&waiting),
        no_longer_valid(),
    )
    .await;

    let u = h.user(user_id).await.value;
    assert_eq!(
        u.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
    assert!(u.user.identities.is_empty());
    assert_eq!(u.active_invitation, None);
    h.fails_unchanged_with(
        "revoke twice",
        h.gp.revoke(&Inviter::admin(None), user_id),
        Error::NotFound {
            what: "pending invitation",
        },
    )
    .await;
}

#[tokio::test]
async fn resetting_redemption_keeps_the_user_and_issues_a_new_ticket() {
    let h = Harness::new();
    let (first, old_ticket) = h.invite_with_ticket(ALICE).await;
    let user_id = first.invited_user.id;
    h.redeem(&old_ticket, ALICE).await;
    h.clock.advance(Duration::hours(1));

    let (reset, new_ticket) = h.reset(user_id, ALICE).await;
    assert!(reset.reset_redemption);
    assert_eq!(reset.invited_user.id, user_id);
    assert_eq!(reset.status, InvitationStatus::PendingAcceptance);
    assert!(h.audit_kinds().contains(&AuditKind::RedemptionReset {
        invitation_id: reset.id
    }));
    let user = h.user(user_id).await.value;
    assert!(user.user.identities.is_empty(), "identities cleared");
    assert_eq!(
        user.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
    assert_eq!(user.user.external_user_state_change_date_time, Some(h.now()));
    assert_eq!(user.active_invitation, Some(reset.id));
    assert_eq!(h.gp.users().await.unwrap().len(), 1, "no second user");
    assert!(
        h.store
            .user_by_identity(TENANT, "mail", &key_of(ALICE))
            .await
            .unwrap()
            .is_none(),
        "the identity index forgot the cleared identity"
    );

    assert_ne!(new_ticket, old_ticket);
    h.fails_unchanged_with(
        "old ticket after reset",
        h.gp.start_redemption(&old_ticket),
        no_longer_valid(),
    )
    .await;
    let done = h.redeem(&new_ticket, ALICE).await;
    assert_eq!(done.user.id, user_id);
    assert_eq!(done.user.identities.len(), 1);
}

#[tokio::test]
async fn resetting_a_pending_invitation_replaces_its_ticket() {
    let h = Harness::new();
    let (first, old_ticket) = h.invite_with_ticket(ALICE).await;
    let user_id = first.invited_user.id;
    let (_, new_ticket) = h.reset(user_id, ALICE).await;
    h.fails_unchanged_with(
        "pending ticket after reset",
        h.gp.view_redemption(&old_ticket),
        no_longer_valid(),
    )
    .await;
    let done = h.redeem(&new_ticket, ALICE).await;
    assert_eq!(done.user.id, user_id);
}

#[tokio::test]
async fn reset_refuses_unknown_users_and_missing_targets() {
    let h = Harness::new();
    h.invite(ALICE).await;
    let ghost = Id::random(&SeededRandom::new(1234)).unwrap();
    h.fails_unchanged_with(
        "reset unknown user",
        h.invite_untracked(reset_request("nobody@fabrikam.example", ghost)),
        Error::NotFound { what: "user" },
    )
    .await;
    // Another tenant's user (same store) is not there to reset either.
    let fabrikam = h.other_tenant();
    let foreign = fabrikam
        .invite(&Inviter::admin(None), request("carol@northwind.example"))
        .await
        .unwrap();
    h.track_address("carol@northwind.example");
    h.fails_unchanged_with(
        "reset another tenant's user",
        h.invite_untracked(reset_request("carol@northwind.example", foreign.invited_user.id)),
        Error::NotFound { what: "user" },
    )
    .await;
    let alice = h.gp.users().await.unwrap()[0].id;
    for role in [
        guestpass::policy::InviterRole::GuestInviter,
        guestpass::policy::InviterRole::Member,
    ] {
        let e = h
            .fails_unchanged(
                "reset by a non-administrator",
                h.gp.invite(&Inviter { id: None, role }, reset_request(ALICE, alice)),
            )
            .await;
        assert_eq!(
            e,
            Error::Denied(guestpass::error::Denied::ResetNotAllowed),
            "{role:?}"
        );
    }
    let mut req = reset_request(ALICE, ghost);
    req.invited_user = None;
    h.fails_unchanged_with(
        "reset without user",
        h.invite_untracked(req),
        Error::Input(guestpass::error::InputError::Missing { field: "invitedUser" }),
    )
    .await;
}

/// Fails passcodes until the address is locked (permissive harness).
async fn lock_address(h: &Harness, ticket: &str, address: &str) {
    let handle = h.start(ticket).await;
    let policy = h.gp.config().passcode_policy();
    let per_code = policy.max_attempts_per_code as usize;
    let mut left = policy.max_consecutive_failures as usize;
    loop {
        let n = left.min(per_code);
        let errors = h.submit_wrong_codes(&handle, address, n).await;
        left -= n;
        if left == 0 {
            assert_eq!(
                errors.last(),
                Some(&Error::Passcode(PasscodeError::AddressLocked))
            );
            return;
        }
        h.resend_passcode(&handle).await.unwrap();
    }
}

#[tokio::test]
async fn reset_redemption_lifts_an_address_lockout() {
    let h = Harness::permissive();
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    lock_address(&h, &ticket, ALICE).await;
    h.fails_unchanged_with(
        "start while locked",
        h.gp.start_redemption(&ticket),
        Error::Passcode(PasscodeError::AddressLocked),
    )
    .await;

    let (_, new_ticket) = h.reset(inv.invited_user.id, ALICE).await;
    assert_eq!(
        h.consecutive_failures(ALICE).await,
        0,
        "the reset cleared the failure count"
    );
    let done = h.redeem(&new_ticket, ALICE).await;
    assert_eq!(done.user.id, inv.invited_user.id);
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    let h = Harness::new();
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    h.clock.advance(Duration::days(30) - Duration::seconds(1));
    h.unchanged("view just before expiry", h.gp.view_redemption(&ticket))
        .await
        .unwrap();
    h.clock.advance(Duration::seconds(1));
    h.fails_unchanged_with(
        "view at expiry",
        h.gp.view_redemption(&ticket),
        Error::Ticket(TicketError::Expired),
    )
    .await;
    h.clock.advance(Duration::days(1));
    let e = h
        .fails_unchanged_with(
            "start after expiry",
            h.gp.start_redemption(&ticket),
            Error::Ticket(TicketError::Expired),
        )
        .await;
    assert_eq!(e.status().as_u16(), 410);
}

#[tokio::test]
async fn another_tenants_ticket_and_session_are_refused() {
    let h = Harness::new();
    let fabrikam = h.other_tenant();
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    let handle = h.to_consent(&ticket, ALICE).await;

    h.fails_unchanged_with(
        "view in fabrikam",
        fabrikam.view_redemption(&ticket),
        Error::Ticket(TicketError::BadSignature),
    )
    .await;
    h.fails_unchanged_with(
        "start in fabrikam",
        fabrikam.start_redemption(&ticket),
        Error::Ticket(TicketError::BadSignature),
    )
    .await;
    h.fails_unchanged_with(
        "finish contoso's session in fabrikam",
        fabrikam.finish_redemption(&handle, ConsentDecision::Accept),
        Error::Redemption(RedemptionError::UnknownSession),
    )
    .await;

    // And the other way round: fabrikam's own ticket does not work at contoso.
    let bob = "bob@northwind.example";
    fabrikam
        .invite(&Inviter::admin(None), request(bob))
        .await
        .unwrap();
    h.track_address(bob);
    let fab_ticket = h.ticket_for(bob);
    assert!(fabrikam.view_redemption(&fab_ticket).await.is_ok());
    h.fails_unchanged_with(
        "fabrikam ticket at contoso",
        h.gp.start_redemption(&fab_ticket),
        Error::Ticket(TicketError::BadSignature),
    )
    .await;
    assert!(h.user_mails().await.iter().all(|m| m != bob));
}

fn tampered(ticket: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut raw = b64url_decode(ticket);
    assert_eq!(raw.len(), layout::LEN, "ticket layout as expected");
    f(&mut raw);
    b64url(&raw)
}

/// The last character of an unpadded encoding of 95 bytes carries 4 bits of
/// data and 2 bits that must be zero; set one of those.
fn non_canonical(ticket: &str) -> String {
    let mut chars: Vec<char> = ticket.chars().collect();
    let last = chars.pop().unwrap();
    let v = URL_ALPHABET.iter().position(|&a| char::from(a) == last).unwrap();
    assert_eq!(v & 0b11, 0, "canonical encodings leave the low bits zero");
    chars.push(char::from(URL_ALPHABET[v | 1]));
    chars.into_iter().collect()
}

#[tokio::test]
async fn malformed_and_tampered_tickets_give_typed_errors_and_change_nothing() {
    let h = Harness::new();
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    // A session exists too, so the snapshot covers sessions and passcodes.
    h.start(&ticket).await;
    let raw = b64url_decode(&ticket);
    assert_eq!(b64url(&raw), ticket, "the ticket is canonical base64url");

    let standard = b64_standard(&raw);
    assert_ne!(standard, ticket, "the standard alphabet differs for this ticket");
    let padded = b64url_padded(&raw);
    assert_ne!(padded, ticket);

    let other_key = KeyRing::new(SigningKey::new(KEY_ID, [7u8; 32]).unwrap()).unwrap();
    let unknown_key = KeyRing::new(SigningKey::new("key9", KEY_SECRET).unwrap()).unwrap();
    let rng = SeededRandom::new(55);
    let inv_id = invitation_of(&ticket, h.now());
    let expires = h.now() + Duration::days(30);
    let wrong_secret = signed_ticket(&other_key, inv_id, expires, &rng);
    let wrong_kid = signed_ticket(&unknown_key, inv_id, expires, &rng);

    use TicketError::*;
    let malformed = |reason| Some(Malformed(reason));
    let cases: Vec<(&str, String, Option<TicketError>)> = vec![
        ("empty", String::new(), malformed("empty")),
        (
            "oversized",
            "A".repeat(ticket::MAX_TICKET_LEN + 1),
            malformed("too long"),
        ),
        (
            "oversized valid prefix",
            format!("{ticket}{}", "A".repeat(40)),
            malformed("too long"),
        ),
        ("huge", "A".repeat(1 << 20), malformed("too long")),
        ("padded", padded.clone(), malformed("not canonical base64url")),
        (
            "standard alphabet",
            standard.clone(),
            malformed("not canonical base64url"),
        ),
        (
            "trailing space",
            format!("{ticket} "),
            malformed("not canonical base64url"),
        ),
        (
            "leading space",
            format!(" {ticket}"),
            malformed("not canonical base64url"),
        ),
        (
            "percent-encoded",
            ticket.replacen('A', "%41", 1),
            malformed("not canonical base64url"),
        ),
        (
            "non-canonical trailing bits",
            non_canonical(&ticket),
            malformed("not canonical base64url"),
        ),
        (
            "a jwt",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".to_owned(),
            malformed("not canonical base64url"),
        ),
        ("truncated to 1", ticket[..1].to_owned(), None),
        ("truncated to 2", ticket[..2].to_owned(), None),
        ("truncated to 10", ticket[..10].to_owned(), None),
        ("truncated by 1", ticket[..ticket.len() - 1].to_owned(), None),
        ("truncated by 4", ticket[..ticket.len() - 4].to_owned(), None),
        (
            "truncated raw",
            b64url(&raw[..raw.len() - 1]),
            malformed("wrong length"),
        ),
        (
            "extended raw",
            tampered(&ticket, |r| r.push(0)),
            malformed("wrong length"),
        ),
        (
            "version",
            tampered(&ticket, |r| r[layout::VERSION] = 2),
            Some(UnsupportedVersion { version: 2 }),
        ),
        (
            "purpose",
            tampered(&ticket, |r| r[layout::PURPOSE] = b'P'),
            Some(WrongPurpose),
        ),
        (
            "key id length zero",
            tampered(&ticket, |r| r[layout::KID_LEN] = 0),
            malformed("bad key id length"),
        ),
        (
            "key id length too big",
            tampered(&ticket, |r| r[layout::KID_LEN] = 17),
            malformed("bad key id length"),
        ),
        (
            "key id length off by one",
            tampered(&ticket, |r| r[layout::KID_LEN] = 5),
            malformed("wrong length"),
        ),
        (
            "key id character",
            tampered(&ticket, |r| r[layout::KID] = b'.'),
            malformed("bad key id"),
        ),
        (
            "other key id",
            tampered(&ticket, |r| r[layout::KID + 3] = b'2'),
            Some(UnknownKey),
        ),
        (
            "invitation id",
            tampered(&ticket, |r| r[layout::INVITATION] ^= 1),
            Some(BadSignature),
        ),
        (
            "verifier",
            tampered(&ticket, |r| r[layout::VERIFIER + 7] ^= 0x80),
            Some(BadSignature),
        ),
        (
            "expiry extended",
            tampered(&ticket, |r| r[layout::EXPIRY] = 0x7f),
            Some(BadSignature),
        ),
        (
            "tag",
            tampered(&ticket, |r| r[layout::TAG + 31] ^= 1),
            Some(BadSignature),
        ),
        ("same key id, other secret", wrong_secret, Some(BadSignature)),
        ("unknown key id", wrong_kid, Some(UnknownKey)),
    ];
    for (what, input, want) in cases {
        let (view, start) = h.view_and_start_fail_unchanged(what, &input).await;
        assert_eq!(view, start, "{what}: view and start agree");
        match (&view, want) {
            (Error::Ticket(got), Some(want)) => assert_eq!(got, &want, "{what}"),
            (Error::Ticket(Malformed(_)), None) => {}
            (other, want) => panic!("{what}: expected {want:?}, got {other:?}"),
        }
        assert_eq!(
            view.status().as_u16(),
            400,
            "{what}: a bad ticket is a bad request"
        );
    }
    // The genuine ticket is still fine after all that.
    h.gp.view_redemption(&ticket).await.unwrap();
}

#[tokio::test]
async fn unknown_revoked_replaced_and_redeemed_invitations_answer_alike() {
    let h = Harness::new();
    let now = h.now();
    let expires = now + Duration::days(30);
    let rng = SeededRandom::new(4242);

    // A validly signed ticket for an invitation that does not exist.
    let ghost = Id::random(&rng).unwrap();
    let unknown = signed_ticket(&key_ring(), ghost, expires, &rng);

    // Revoked.
    let (rev, revoked) = h.invite_with_ticket("rev@fabrikam.example").await;
    h.gp.revoke(&Inviter::admin(None), rev.invited_user.id)
        .await
        .unwrap();

    // Replaced by a resend.
    let (rep, replaced) = h.invite_with_ticket("rep@fabrikam.example").await;
    h.resend(rep.invited_user.id, "rep@fabrikam.example").await;

    // Redeemed.
    let (_, redeemed) = h.invite_with_ticket("red@fabrikam.example").await;
    h.redeem(&redeemed, "red@fabrikam.example").await;

    // A ticket validly signed for this tenant naming another tenant's live
    // invitation (same store).
    let fabrikam = h.other_tenant();
    let foreign = fabrikam
        .invite(&Inviter::admin(None), request("eve@northwind.example"))
        .await
        .unwrap();
    let cross = signed_ticket(&key_ring(), foreign.id, expires, &rng);

    // A validly signed ticket naming a live invitation with a guessed verifier.
    let (live, _) = h.invite_with_ticket("live@fabrikam.example").await;
    let guessed = signed_ticket(&key_ring(), live.id, expires, &rng);

    h.clock.advance(Duration::minutes(1));
    let mut answers = Vec::new();
    for (what, t) in [
        ("unknown", &unknown),
        ("revoked", &revoked),
        ("replaced", &replaced),
        ("redeemed", &redeemed),
        ("guessed verifier", &guessed),
        ("another tenant's invitation", &cross),
    ] {
        let (view, start) = h.view_and_start_fail_unchanged(what, t).await;
        answers.push((what, view));
        answers.push((what, start));
    }
    let (_, first) = &answers[0];
    assert_eq!(first, &no_longer_valid());
    for (what, e) in &answers {
        assert_eq!(e, first, "{what}: same error value");
        assert_eq!(e.to_string(), first.to_string(), "{what}: same message");
        assert_eq!(format!("{e:?}"), format!("{first:?}"), "{what}: same debug");
        assert_eq!(e.status(), first.status(), "{what}: same status");
    }
    assert_eq!(first.to_string(), "this invitation link is no longer valid");
}

/// The "unchanged" checks above are not vacuous: the snapshot sees each kind
/// of write a redemption makes.
#[tokio::test]
async fn the_snapshot_sees_every_kind_of_write() {
    let h = Harness::new();
    let s0 = h.snapshot().await;
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    let s1 = h.snapshot().await;
    assert_ne!(s0.users, s1.users, "a new user is seen");
    assert_ne!(s0.invitations, s1.invitations, "a new invitation is seen");
    let handle = h.start(&ticket).await;
    let s2 = h.snapshot().await;
    assert_ne!(s1.flows, s2.flows, "a new flow with its passcode is seen");
    assert_ne!(s1.throttles, s2.throttles, "a send is seen");
    assert_ne!(s1.mails, s2.mails, "a mail is seen");
    let code = h.code_for(ALICE);
    let _ = h.gp.submit_passcode(&handle, &wrong_code(&code)).await;
    let s3 = h.snapshot().await;
    assert_ne!(s2.flows, s3.flows, "an attempt is seen");
    assert_ne!(s2.throttles, s3.throttles, "a failure is seen");
    assert_ne!(s2.audit_events, s3.audit_events, "an audit event is seen");
    h.gp.submit_passcode(&handle, &code).await.unwrap();
    let s4 = h.snapshot().await;
    assert_ne!(s3.flows, s4.flows, "a flow step is seen");
    h.gp.finish_redemption(&handle, ConsentDecision::Accept)
        .await
        .unwrap();
    let s5 = h.snapshot().await;
    assert_ne!(s4.user_versions, s5.user_versions, "a user update is seen");
    assert_ne!(s4.invitations, s5.invitations, "an invitation update is seen");
}

#[tokio::test]
async fn sessions_expire() {
    let h = Harness::new();
    let (ticket, waiting, code) = h.invite_and_start(ALICE).await;
    h.clock.advance(Duration::seconds(31));
    let consenting = h.to_consent(&ticket, ALICE).await;
    h.clock.advance(Duration::hours(1));
    h.fails_unchanged_with(
        "code in an expired session",
        h.gp.submit_passcode(&waiting, &code),
        Error::Redemption(RedemptionError::SessionExpired),
    )
    .await;
    h.fails_unchanged_with(
        "finish an expired session",
        h.gp.finish_redemption(&consenting, ConsentDecision::Accept),
        Error::Redemption(RedemptionError::SessionExpired),
    )
    .await;
    // The ticket itself is still good: a new session redeems.
    h.redeem(&ticket, ALICE).await;
}

#[tokio::test]
async fn ticket_expiry_is_checked_when_the_redemption_completes() {
    let h = Harness::new();
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    h.clock.advance(Duration::days(30) - Duration::minutes(10));
    let handle = h.to_consent(&ticket, ALICE).await;
    h.clock.advance(Duration::minutes(10));
    h.fails_unchanged_with(
        "finish after the ticket expired",
        h.gp.finish_redemption(&handle, ConsentDecision::Accept),
        Error::Ticket(TicketError::Expired),
    )
    .await;
    assert_eq!(
        h.user(inv.invited_user.id).await.value.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
}

#[tokio::test]
async fn a_configured_ticket_lifetime_is_honoured() {
    let h = Harness::with(|b| b.ticket_lifetime(Duration::hours(2)));
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    h.clock.advance(Duration::hours(2) - Duration::seconds(1));
    h.gp.view_redemption(&ticket).await.unwrap();
    h.clock.advance(Duration::seconds(1));
    h.fails_unchanged_with(
        "after two hours",
        h.gp.start_redemption(&ticket),
        Error::Ticket(TicketError::Expired),
    )
    .await;
}

#[tokio::test]
async fn outstanding_tickets_and_codes_survive_a_key_rotation() {
    let h = Harness::new();
    let (ticket, handle, code) = h.invite_and_start(ALICE).await;
    // The same deployment restarts with a new signing key, keeping the old
    // one for verification.
    let rotated = h
        .sibling(SEED + 7)
        .signing_key(SigningKey::new("key2", [43u8; 32]).unwrap())
        .verification_key(signing_key())
        .build()
        .unwrap();
    rotated.view_redemption(&ticket).await.unwrap();
    let step = rotated.submit_passcode(&handle, &code).await.unwrap();
    assert!(matches!(step, RedemptionStep::Consent { .. }));
    let out = rotated
        .finish_redemption(&handle, ConsentDecision::Accept)
        .await
        .unwrap();
    assert!(matches!(out, Finished::Redeemed(_)));
    // New tickets carry the new key id; a deployment that dropped the old
    // key no longer knows old tickets.
    let bob = "bob@fabrikam.example";
    rotated.invite(&Inviter::admin(None), request(bob)).await.unwrap();
    let new_ticket = h.ticket_for(bob);
    let raw = b64url_decode(&new_ticket);
    assert_eq!(&raw[layout::KID..layout::KID + 4], b"key2");
    let only_new = h
        .sibling(SEED + 8)
        .signing_key(SigningKey::new("key2", [43u8; 32]).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        only_new.view_redemption(&ticket).await.unwrap_err(),
        Error::Ticket(TicketError::UnknownKey)
    );
    only_new.view_redemption(&new_ticket).await.unwrap();
}

#[tokio::test]
async fn policy_changes_after_the_invitation_apply_at_redemption() {
    let h = Harness::new();
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    let handle = h.to_consent(&ticket, ALICE).await;
    // The tenant now denies the guest's domain.
    let denying = h
        .sibling(SEED + 9)
        .collaboration(guestpass::policy::CollaborationSettings {
            domains: guestpass::policy::DomainRestriction::deny(["fabrikam.example"]).unwrap(),
            ..Default::default()
        })
        .build()
        .unwrap();
    let denied = Error::Denied(guestpass::error::Denied::DomainNotAllowed {
        domain: "fabrikam.example".into(),
    });
    h.fails_unchanged_with(
        "view under a deny list",
        denying.view_redemption(&ticket),
        denied.clone(),
    )
    .await;
    h.fails_unchanged_with(
        "finish under a deny list",
        denying.finish_redemption(&handle, ConsentDecision::Accept),
        denied,
    )
    .await;
    // The tenant no longer registers the invitation's redirect URL.
    let moved = builder_without_redirect(h.store.clone(), &h.outbox, &h.audit, &h.clock, SEED + 11)
        .redirect_url("https://new.contoso.example/")
        .build()
        .unwrap();
    h.fails_unchanged_with(
        "finish with an unregistered redirect",
        moved.finish_redemption(&handle, ConsentDecision::Accept),
        Error::Input(guestpass::error::InputError::RedirectNotRegistered { url: REDIRECT.into() }),
    )
    .await;
    // Under the original settings it still completes.
    h.accept(&handle).await;
}
