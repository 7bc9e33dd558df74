//! Administrators' changes to users through the service:
//! [`GuestPass::delete_user`] and [`GuestPass::update_user`]. A deleted
//! user's links and redemption flows fail with typed errors and recreate
//! nothing; its address and identities are free for a new user; only
//! administrators may delete or update; of an update and a deletion that
//! read one version exactly one wins; updates are audited by the names of
//! the properties they changed, and a patch that changes nothing writes
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use guestpass::audit::AuditKind;
use guestpass::directory::{
    AddressThrottle, CreationType, DirectoryStore, EMAIL_OTP_ISSUER, Expect, ExternalUserState, FlowRecord,
    InvitationRecord, MemoryStore, UserRecord, Versioned, Write, WriteBatch,
};
use guestpass::error::{Denied, RedemptionError, StoreError, TicketError};
use guestpass::graph::users::UserPatch;
use guestpass::id::Id;
use guestpass::policy::InviterRole;
use guestpass::secret::Digest;
use guestpass::{ConsentDecision, Error, FlowAction, FlowStep, GuestPass, Inviter};
use time::Duration;

const ALICE: &str = "alice@fabrikam.example";

fn admin() -> Inviter {
    Inviter::admin(Some(Id::from_bytes([7; 16])))
}

fn patch(body: &str) -> UserPatch {
    UserPatch::parse(body.as_bytes()).unwrap()
}

fn not_found() -> Error {
    Error::NotFound { what: "user" }
}

fn no_longer_valid() -> Error {
    Error::Ticket(TicketError::NoLongerValid)
}

fn unknown_session() -> Error {
    Error::Redemption(RedemptionError::UnknownSession)
}

/// Runs a sign-up of `email` through the flow collecting `givenName` to
/// its completion.
async fn sign_up(h: &Harness, email: &str) -> guestpass::Completion {
    let (handle, page) = h.flow_past_passcode(signup_request(), email).await;
    let page = match page.step {
        FlowStep::CollectAttributes { .. } => h
            .post(
                &handle,
                &page,
                FlowAction::SubmitAttributes(b"givenName=Alice".to_vec()),
            )
            .await
            .unwrap(),
        _ => page,
    };
    match page.step {
        FlowStep::Completed(c) => *c,
        other => panic!("expected completion, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Deleting
// ---------------------------------------------------------------------------

#[tokio::test]
async fn deleting_a_pending_guest_ends_its_link_and_frees_its_address() {
    let h = Harness::permissive();
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let id = inv.invited_user.id;
    let handle = h.start(&ticket).await;
    let code = h.code_for(ALICE);
    assert!(h.session(&handle).await.is_some());

    h.gp.delete_user(&admin(), id).await.unwrap();

    // The user, its invitation and its redemption flow are gone.
    assert_eq!(h.gp.user(id).await, Err(not_found()));
    assert!(h.store.user(TENANT, id).await.unwrap().is_none());
    assert!(
        h.store
            .user_by_mail(TENANT, &key_of(ALICE))
            .await
            .unwrap()
            .is_none()
    );
    assert!(h.store.invitation(inv.id).await.unwrap().is_none());
    assert!(h.session(&handle).await.is_none());
    assert!(h.gp.users().await.unwrap().is_empty());
    let events = h.audit_events();
    let last = events.last().unwrap();
    assert_eq!(
        last.kind,
        AuditKind::UserDeleted {
            user_id: id,
            admin: admin().id
        }
    );
    assert_eq!(last.user_id, Some(id));

    // The link and the flow fail with typed errors and change nothing.
    let (view, start) = h
        .view_and_start_fail_unchanged("the deleted user's link", &ticket)
        .await;
    assert_eq!((view, start), (no_longer_valid(), no_longer_valid()));
    h.fails_unchanged_with(
        "a step of the deleted flow",
        h.gp.submit_passcode(&handle, &code),
        unknown_session(),
    )
    .await;
    h.fails_unchanged_with(
        "a view of the deleted flow",
        h.gp.redemption_step(&handle),
        unknown_session(),
    )
    .await;
    h.fails_unchanged_with("deleting it again", h.gp.delete_user(&admin(), id), not_found())
        .await;

    // The address may be invited again: a fresh user, whose link redeems.
    h.clock.advance(Duration::minutes(1));
    let (again, fresh) = h.invite_with_ticket(ALICE).await;
    let new_id = again.invited_user.id;
    assert_ne!(new_id, id);
    let user = h.gp.user(new_id).await.unwrap();
    assert_eq!(
        user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
    assert_eq!(user.mail.as_ref().map(|m| m.as_str()), Some(ALICE));
    let redeemed = h.redeem(&fresh, ALICE).await;
    assert_eq!(redeemed.user.id, new_id);
    // The old link stays dead.
    assert_eq!(
        h.gp.view_redemption(&ticket).await.unwrap_err(),
        no_longer_valid()
    );
}

#[tokio::test]
async fn a_redemption_flow_written_after_the_deletion_fails_typed_and_recreates_nothing() {
    // A racer that opened the link just before the deletion may still
    // write its flow after it: every later step of that flow fails.
    let h = Harness::permissive();
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let handle = h.to_consent(&ticket, ALICE).await;
    let flow = h.session(&handle).await.unwrap();
    h.gp.delete_user(&admin(), inv.invited_user.id).await.unwrap();
    h.store
        .commit(WriteBatch::new().with(Write::Flow {
            record: flow.value,
            expect: Expect::Absent,
        }))
        .await
        .unwrap();

    h.fails_unchanged_with(
        "viewing the left-behind flow",
        h.gp.redemption_step(&handle),
        no_longer_valid(),
    )
    .await;
    h.fails_unchanged_with(
        "accepting consent in it",
        h.gp.finish_redemption(&handle, ConsentDecision::Accept),
        no_longer_valid(),
    )
    .await;
    assert!(h.gp.users().await.unwrap().is_empty(), "no user came back");
    assert!(h.store.invitation(inv.id).await.unwrap().is_none());
}

#[tokio::test]
async fn deleting_an_accepted_guest_frees_its_identity_for_a_new_sign_up() {
    let h = signup_harness(signup_config(r#""attributes": [{"name": "givenName"}]"#), |b| b);
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let guest = h.redeem(&ticket, ALICE).await.user;
    assert_eq!(guest.id, inv.invited_user.id);
    assert_eq!(guest.external_user_state, Some(ExternalUserState::Accepted));
    assert!(guest.has_identity(EMAIL_OTP_ISSUER, &key_of(ALICE)));

    // While the guest exists, a sign-up with its identity signs it in.
    h.clock.advance(Duration::minutes(1));
    let before = sign_up(&h, ALICE).await;
    assert!(before.signed_in);
    assert_eq!(before.user_id, guest.id);

    h.gp.delete_user(&admin(), guest.id).await.unwrap();
    assert!(
        h.store
            .user_by_identity(TENANT, EMAIL_OTP_ISSUER, &key_of(ALICE))
            .await
            .unwrap()
            .is_none(),
        "the identity is free"
    );

    // Now the same identity signs up as a new user.
    h.clock.advance(Duration::minutes(1));
    let after = sign_up(&h, ALICE).await;
    assert!(!after.signed_in, "a new user, not a sign-in");
    assert_ne!(after.user_id, guest.id);
    let users = h.gp.users().await.unwrap();
    assert_eq!(users.len(), 1);
    let user = &users[0];
    assert_eq!(user.id, after.user_id);
    assert_eq!(user.creation_type, Some(CreationType::SelfServiceSignUp));
    assert!(user.has_identity(EMAIL_OTP_ISSUER, &key_of(ALICE)));
    assert_eq!(user.mail.as_ref().map(|m| m.as_str()), Some(ALICE));
}

// ---------------------------------------------------------------------------
// Who may
// ---------------------------------------------------------------------------

#[tokio::test]
async fn only_administrators_delete_or_update_users() {
    let h = Harness::new();
    let id = h.invite(ALICE).await.invited_user.id;
    let unknown = Id::from_bytes([9; 16]);
    let rename = patch(r#"{"displayName": "Mallory"}"#);
    for role in [InviterRole::GuestInviter, InviterRole::Member, InviterRole::Guest] {
        let who = Inviter {
            id: Some(Id::from_bytes([3; 16])),
            role,
        };
        for target in [id, unknown] {
            // The same refusal for an existing and an unknown id.
            h.fails_unchanged_with(
                "a deletion by a non-administrator",
                h.gp.delete_user(&who, target),
                Denied::AdminOnly {
                    operation: "delete users",
                }
                .into(),
            )
            .await;
            h.fails_unchanged_with(
                "an update by a non-administrator",
                h.gp.update_user(&who, target, &rename),
                Denied::AdminOnly {
                    operation: "update users",
                }
                .into(),
            )
            .await;
        }
    }
    let e =
        h.gp.delete_user(&Inviter::admin(None), unknown)
            .await
            .unwrap_err();
    assert_eq!(e, not_found());
    assert_eq!(e.status().as_u16(), 404);
    h.fails_unchanged_with(
        "an update of an unknown user",
        h.gp.update_user(&admin(), unknown, &rename),
        not_found(),
    )
    .await;
    assert!(h.gp.user(id).await.is_ok(), "the user is still there");
}

// ---------------------------------------------------------------------------
// Races
// ---------------------------------------------------------------------------

/// A store whose commits wait until `n` commits are under way: every racer
/// has read before any of them writes, so all of them read one version.
#[derive(Debug)]
struct HeldCommits {
    inner: Arc<MemoryStore>,
    barrier: tokio::sync::Barrier,
}

#[async_trait::async_trait]
impl DirectoryStore for HeldCommits {
    async fn user(&self, tenant_id: &str, id: Id) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        self.inner.user(tenant_id, id).await
    }

    async fn user_by_mail(
        &self,
        tenant_id: &str,
        mail_key: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        self.inner.user_by_mail(tenant_id, mail_key).await
    }

    async fn user_by_identity(
        &self,
        tenant_id: &str,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        self.inner.user_by_identity(tenant_id, issuer, subject).await
    }

    async fn users(&self, tenant_id: &str) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.users(tenant_id).await
    }

    async fn invitation(&self, id: Id) -> Result<Option<Versioned<InvitationRecord>>, StoreError> {
        self.inner.invitation(id).await
    }

    async fn throttle(
        &self,
        tenant_id: &str,
        address_key: &str,
    ) -> Result<Option<Versioned<AddressThrottle>>, StoreError> {
        self.inner.throttle(tenant_id, address_key).await
    }

    async fn flow(
        &self,
        tenant_id: &str,
        handle_hash: &Digest,
    ) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
        self.inner.flow(tenant_id, handle_hash).await
    }

    async fn flow_by_id(&self, tenant_id: &str, id: Id) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
        self.inner.flow_by_id(tenant_id, id).await
    }

    async fn flows_awaiting_approval(
        &self,
        tenant_id: &str,
        now: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Versioned<FlowRecord>>, StoreError> {
        self.inner.flows_awaiting_approval(tenant_id, now, limit).await
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.barrier.wait().await;
        self.inner.commit(batch).await
    }

    async fn purge_expired(
        &self,
        now: time::OffsetDateTime,
        limit: u32,
    ) -> Result<guestpass::directory::PurgeReport, StoreError> {
        self.inner.purge_expired(now, limit).await
    }
}

/// A service over `h`'s store whose commits are held in pairs.
fn paired(h: &Harness) -> GuestPass {
    let store = Arc::new(HeldCommits {
        inner: h.store.clone(),
        barrier: tokio::sync::Barrier::new(2),
    });
    builder_with_store(store, &h.outbox, &h.audit, &h.clock, SEED + 1)
        .build()
        .unwrap()
}

fn lost(r: &Result<(), Error>) -> bool {
    matches!(r, Err(Error::Store(StoreError::Conflict { record: "user", .. })))
}

#[tokio::test]
async fn of_an_update_and_a_deletion_from_one_version_exactly_one_wins() {
    let h = Harness::new();
    let racing = paired(&h);
    // Which racer commits first follows the order they are polled in, so
    // alternating it lets each side win in turn.
    let mut winners = Vec::new();
    for (n, delete_first) in [(1, true), (2, false), (3, true), (4, false)] {
        let address = format!("guest{n}@fabrikam.example");
        let id = h.invite(&address).await.invited_user.id;
        let read = h.user(id).await.version;
        let rename = patch(&format!(r#"{{"displayName": "Racer {n}"}}"#));
        let admin = admin();
        let (deleted, updated) = if delete_first {
            tokio::join!(
                racing.delete_user(&admin, id),
                racing.update_user(&admin, id, &rename)
            )
        } else {
            let (u, d) = tokio::join!(
                racing.update_user(&admin, id, &rename),
                racing.delete_user(&admin, id)
            );
            (d, u)
        };
        let updated = updated.map(|_| ());
        assert!(
            deleted.is_ok() != updated.is_ok(),
            "exactly one wins: {deleted:?} / {updated:?}"
        );
        assert!(lost(&deleted) || lost(&updated), "the loser is told it lost");
        let deletions =
            h.count_audit(|k| matches!(k, AuditKind::UserDeleted { user_id, .. } if *user_id == id));
        let updates =
            h.count_audit(|k| matches!(k, AuditKind::UserUpdated { user_id, .. } if *user_id == id));
        let now = h.store.user(TENANT, id).await.unwrap();
        if deleted.is_ok() {
            assert!(now.is_none(), "the deletion won");
            assert_eq!((deletions, updates), (1, 0));
        } else {
            let now = now.expect("the update won");
            assert_eq!(now.version, read + 1);
            assert_eq!(now.value.user.display_name, Some(format!("Racer {n}")));
            assert_eq!((deletions, updates), (0, 1));
        }
        winners.push(if deleted.is_ok() { "delete" } else { "update" });
    }
    winners.sort_unstable();
    winners.dedup();
    assert_eq!(winners, ["delete", "update"], "each side won a round");
}

#[tokio::test]
async fn of_two_deletions_exactly_one_succeeds() {
    let h = Harness::new();
    let racing = paired(&h);
    let id = h.invite(ALICE).await.invited_user.id;
    let (one, other) = (admin(), Inviter::admin(None));
    let (a, b) = tokio::join!(racing.delete_user(&one, id), racing.delete_user(&other, id));
    assert!(a.is_ok() != b.is_ok(), "exactly one succeeds: {a:?} / {b:?}");
    assert!(lost(&a) || lost(&b), "the other lost the compare-and-set");
    assert_eq!(h.count_audit(|k| matches!(k, AuditKind::UserDeleted { .. })), 1);
    assert!(h.store.user(TENANT, id).await.unwrap().is_none());
    // Repeating the loser's call finds nothing to delete.
    assert_eq!(h.gp.delete_user(&admin(), id).await, Err(not_found()));
}

// ---------------------------------------------------------------------------
// Updating
// ---------------------------------------------------------------------------

#[tokio::test]
async fn updates_are_audited_by_the_names_of_the_properties_changed() {
    let h = Harness::new();
    let id = h.invite(ALICE).await.invited_user.id;
    let read = h.user(id).await.version;

    // `accountEnabled` is true already and there is no `surname` to clear:
    // only `displayName` and `city` change.
    let body = r#"{"city": "Bonn", "accountEnabled": true, "surname": null, "displayName": "Alice Smith"}"#;
    let user = h.gp.update_user(&admin(), id, &patch(body)).await.unwrap();
    assert_eq!(user.display_name.as_deref(), Some("Alice Smith"));
    assert_eq!(user.attributes.get("city"), Some(&serde_json::json!("Bonn")));
    assert!(user.account_enabled);
    let stored = h.user(id).await;
    assert_eq!(stored.version, read + 1);
    assert_eq!(stored.value.user, user, "what it returns is what is stored");
    assert_eq!(h.gp.user(id).await.unwrap(), user);

    let events = h.audit_events();
    let last = events.last().unwrap();
    assert_eq!(
        last.kind,
        AuditKind::UserUpdated {
            user_id: id,
            admin: admin().id,
            properties: vec!["displayName", "city"],
        }
    );
    assert_eq!(last.user_id, Some(id));
    assert_eq!(last.tenant_id, TENANT);
    // Names only: no value of the patch is in the event.
    let shown = format!("{last:?}");
    assert!(
        !shown.contains("Bonn") && !shown.contains("Alice Smith"),
        "{shown}"
    );

    // Disabling and clearing change those two.
    let user =
        h.gp.update_user(&admin(), id, &patch(r#"{"accountEnabled": false, "city": null}"#))
            .await
            .unwrap();
    assert!(!user.account_enabled);
    assert!(!user.attributes.contains_key("city"));
    assert_eq!(
        h.audit_kinds().last(),
        Some(&AuditKind::UserUpdated {
            user_id: id,
            admin: admin().id,
            properties: vec!["accountEnabled", "city"],
        })
    );
    assert_eq!(h.user(id).await.version, read + 2);
}

#[tokio::test]
async fn a_patch_that_changes_nothing_writes_nothing() {
    let h = Harness::new();
    let id = h
        .invite_request(named_request(ALICE, "Alice"))
        .await
        .unwrap()
        .invited_user
        .id;
    let before = h.user(id).await;

    let user = h
        .unchanged("the empty patch", h.gp.update_user(&admin(), id, &patch("{}")))
        .await
        .unwrap();
    assert_eq!(user, before.value.user);
    assert_eq!(
        h.user(id).await.version,
        before.version,
        "the version is unchanged"
    );

    // Values the user already has change nothing either.
    let same = format!(
        r#"{{"displayName": {:?}, "accountEnabled": true, "userType": "Guest", "jobTitle": null}}"#,
        before.value.user.display_name.as_deref().expect("named")
    );
    let user = h
        .unchanged(
            "a patch of the current values",
            h.gp.update_user(&admin(), id, &patch(&same)),
        )
        .await
        .unwrap();
    assert_eq!(user, before.value.user);
    assert_eq!(h.user(id).await.version, before.version);

    // The user must still exist.
    h.gp.delete_user(&admin(), id).await.unwrap();
    h.fails_unchanged_with(
        "the empty patch of a deleted user",
        h.gp.update_user(&admin(), id, &patch("{}")),
        not_found(),
    )
    .await;
}

#[tokio::test]
async fn a_stale_update_is_refused_and_changes_nothing() {
    // Two updates read one version: the second to commit loses and
    // writes nothing; repeating it then succeeds.
    let h = Harness::new();
    let racing = paired(&h);
    let id = h.invite(ALICE).await.invited_user.id;
    let read = h.user(id).await.version;
    let first = patch(r#"{"displayName": "First"}"#);
    let second = patch(r#"{"jobTitle": "Buyer"}"#);
    let admin = admin();
    let (a, b) = tokio::join!(
        racing.update_user(&admin, id, &first),
        racing.update_user(&admin, id, &second)
    );
    let (a, b) = (a.map(|_| ()), b.map(|_| ()));
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
    assert!(lost(&a) || lost(&b));
    let now = h.user(id).await;
    assert_eq!(now.version, read + 1);
    let (won, repeat) = if a.is_ok() {
        ("First", &second)
    } else {
        ("Buyer", &first)
    };
    let shown = format!("{:?}", now.value.user);
    assert!(shown.contains(won), "{shown}");
    assert_eq!(h.count_audit(|k| matches!(k, AuditKind::UserUpdated { .. })), 1);
    let user = h.gp.update_user(&admin, id, repeat).await.unwrap();
    assert_eq!(user.display_name.as_deref(), Some("First"));
    assert_eq!(user.attributes.get("jobTitle"), Some(&serde_json::json!("Buyer")));
    assert_eq!(h.user(id).await.version, read + 2);
}
