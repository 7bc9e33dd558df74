//! The store conformance suite (feature `conformance`).
//!
//! Every [`DirectoryStore`] adapter must keep the guarantees the core relies
//! on: conditional, all-or-nothing batches; unique mail and identities per
//! tenant; unique flow handles; tenant isolation; user deletions that leave
//! nothing of the user behind; and exactly one winner when writers race.
//! This module checks them against any store, so the memory store and
//! every database adapter run the same tests:
//!
//! ```
//! use std::sync::Arc;
//! use guestpass::directory::{conformance, DirectoryStore, MemoryStore};
//!
//! # let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
//! # rt.block_on(async {
//! conformance::run_all(|| async { Arc::new(MemoryStore::new()) as Arc<dyn DirectoryStore> }).await;
//! # });
//! ```
//!
//! The checks assert, so a failure panics with a message naming the broken
//! guarantee; this module is test support, not library code. The racing
//! checks spawn tokio tasks on the current multi-threaded runtime.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use time::OffsetDateTime;
use time::macros::datetime;

use super::{
    AddressThrottle, CreationType, DirectoryStore, Expect, ExternalUserState, FlowRecord, Invitation,
    InvitationRecord, InvitationStatus, InvitedUserMessageInfo, ObjectIdentity, ObjectRef, PasscodeRecord,
    RedemptionBinding, RedemptionRecords, SignInType, User, UserRecord, UserType, Write, WriteBatch,
};
use crate::email::EmailAddress;
use crate::error::StoreError;
use crate::flow::machine::{FlowIdentity, FlowState};
use crate::id::Id;
use crate::secret::Digest;

const T0: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);

/// How many tasks race in the concurrency checks.
pub const RACERS: usize = 32;

fn id(n: u8) -> Id {
    let mut b = [0u8; 16];
    b[0] = n;
    b[15] = 0x5a;
    Id::from_bytes(b)
}

/// A pending guest user with mail `{local}@fabrikam.example`, for tests.
pub fn user(tenant: &str, n: u8, local: &str) -> UserRecord {
    let mail = EmailAddress::parse(&format!("{local}@fabrikam.example")).unwrap();
    UserRecord {
        user: User {
            id: id(n),
            user_type: UserType::Guest,
            external_user_state: Some(ExternalUserState::PendingAcceptance),
            external_user_state_change_date_time: Some(T0),
            creation_type: Some(CreationType::Invitation),
            identities: Vec::new(),
            user_principal_name: crate::directory::guest_upn(&mail, "contoso.example"),
            mail: Some(mail),
            other_mails: Vec::new(),
            display_name: Some(format!("User {n}")),
            account_enabled: true,
            sponsors: Vec::new(),
            created_date_time: T0 + time::Duration::seconds(i64::from(n)),
            agreement_acceptances: Vec::new(),
            attributes: Default::default(),
        },
        tenant_id: tenant.to_owned(),
        active_invitation: None,
        authenticator: None,
    }
}

/// A pending invitation for `user`, for tests.
pub fn invitation(tenant: &str, n: u8, user: &UserRecord) -> InvitationRecord {
    InvitationRecord {
        invitation: Invitation {
            id: id(100 + n),
            invited_user_display_name: None,
            invited_user_email_address: user.user.mail.clone().unwrap(),
            invited_user_message_info: InvitedUserMessageInfo::default(),
            send_invitation_message: false,
            invite_redirect_url: "https://app.contoso.example/".to_owned(),
            invite_redeem_url: None,
            invited_user_type: UserType::Guest,
            status: InvitationStatus::PendingAcceptance,
            reset_redemption: false,
            invited_user: ObjectRef { id: user.user.id },
            invited_user_sponsors: Vec::new(),
        },
        tenant_id: tenant.to_owned(),
        invited_by: None,
        ticket: None,
        created_at: T0,
    }
}

fn identity(issuer: &str, sub: &str) -> ObjectIdentity {
    ObjectIdentity {
        sign_in_type: SignInType::Federated,
        issuer: issuer.to_owned(),
        issuer_assigned_id: sub.to_owned(),
    }
}

fn put_user(record: UserRecord, expect: Expect) -> WriteBatch {
    WriteBatch::new().with(Write::User { record, expect })
}

/// Runs every check, each against a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn DirectoryStore>>,
{
    records_round_trip(make().await).await;
    versions_are_compare_and_set(make().await).await;
    batches_are_all_or_nothing(make().await).await;
    mail_is_unique_per_tenant(make().await).await;
    identities_are_unique_and_indexed(make().await).await;
    tenants_are_isolated(make().await).await;
    multi_user_batches_keep_indexes(make().await).await;
    purge_is_bounded_and_spares_live_records(make().await).await;
    joined_reads_match_single_reads(make().await).await;
    racing_updates_have_one_winner(make().await).await;
    racing_inserts_have_one_winner(make().await).await;
    racing_redemptions_have_one_winner(make().await).await;
    flows_round_trip(make().await).await;
    flow_writes_are_conditional(make().await).await;
    flows_in_batches_are_all_or_nothing(make().await).await;
    flows_awaiting_approval_are_listed_oldest_first(make().await).await;
    purge_removes_expired_flows(make().await).await;
    racing_flow_updates_have_one_winner(make().await).await;
    racing_flow_inserts_have_one_winner(make().await).await;
    deleting_a_user_removes_what_it_owns(make().await).await;
    deletes_are_conditional(make().await).await;
    deletes_in_batches_are_all_or_nothing(make().await).await;
    racing_deletes_have_one_winner(make().await).await;
}

/// Every record kind reads back as written, at version 1: a user, an
/// invitation, passcode counters and a redemption flow (its binding and its
/// inline passcode included), by handle and by id; the flow then advances
/// at its version, to 2 and 3.
pub async fn records_round_trip(store: Arc<dyn DirectoryStore>) {
    let u = user("t1", 1, "alice");
    let inv = invitation("t1", 1, &u);
    let rf = redemption_flow("t1", 1, &inv);
    let throttle = AddressThrottle {
        address_key: "alice@fabrikam.example".into(),
        consecutive_failures: 3,
        recent_sends: vec![T0, T0 + time::Duration::seconds(45)],
    };
    let batch = WriteBatch::new()
        .with(Write::User {
            record: u.clone(),
            expect: Expect::Absent,
        })
        .with(Write::Invitation {
            record: inv.clone(),
            expect: Expect::Absent,
        })
        .with(Write::Flow {
            record: rf.clone(),
            expect: Expect::Absent,
        })
        .with(Write::Throttle {
            tenant_id: "t1".into(),
            record: throttle.clone(),
            expect: Expect::Absent,
        });
    store
        .commit(batch)
        .await
        .expect("a batch of fresh inserts commits");

    let got = store
        .user("t1", u.user.id)
        .await
        .unwrap()
        .expect("user reads back");
    assert_eq!((got.value, got.version), (u.clone(), 1));
    let got = store
        .user_by_mail("t1", "alice@fabrikam.example")
        .await
        .unwrap()
        .expect("user by mail");
    assert_eq!(got.value.user.id, u.user.id);
    let got = store
        .invitation(inv.invitation.id)
        .await
        .unwrap()
        .expect("invitation reads back");
    assert_eq!((got.value, got.version), (inv, 1));
    let got = store
        .flow("t1", &rf.handle_hash)
        .await
        .unwrap()
        .expect("redemption flow reads back by handle");
    assert_eq!(
        (got.value, got.version),
        (rf.clone(), 1),
        "the binding and the inline passcode survive"
    );
    let got = store
        .flow_by_id("t1", rf.id)
        .await
        .unwrap()
        .expect("redemption flow reads back by id");
    assert_eq!((got.value, got.version), (rf.clone(), 1));
    let got = store
        .throttle("t1", "alice@fabrikam.example")
        .await
        .unwrap()
        .expect("throttle reads back");
    assert_eq!((got.value, got.version), (throttle, 1));
    assert!(store.user("t1", id(99)).await.unwrap().is_none());
    assert!(store.flow("t1", &redemption_handle(99)).await.unwrap().is_none());
    assert!(
        store.flow("t2", &rf.handle_hash).await.unwrap().is_none(),
        "another tenant's redemption flow"
    );

    // A wrong try counts on the inline passcode.
    let FlowState::AwaitingPasscode {
        email,
        mut passcode,
        delivered,
        federated,
    } = rf.state.clone()
    else {
        panic!("a redemption flow starts awaiting its passcode");
    };
    passcode.attempts = 1;
    let mut counted = rf.clone();
    counted.state = FlowState::AwaitingPasscode {
        email: email.clone(),
        passcode,
        delivered,
        federated,
    };
    store
        .commit(put_flow(counted.clone(), Expect::Version(1)))
        .await
        .expect("update at the current version commits");
    let got = store.flow("t1", &rf.handle_hash).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (counted, 2), "the counted passcode");

    // The address is proven: the flow waits for consent.
    let mut proven = rf.clone();
    proven.state = FlowState::Consent {
        identity: mail_identity(&email),
    };
    store
        .commit(put_flow(proven.clone(), Expect::Version(2)))
        .await
        .expect("update at the current version commits");
    let got = store.flow_by_id("t1", rf.id).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (proven.clone(), 3));
    let got = store.flow("t1", &rf.handle_hash).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (proven, 3));

    let mut all = vec![user("t1", 3, "carol"), user("t1", 2, "bob")];
    for r in &all {
        store.commit(put_user(r.clone(), Expect::Absent)).await.unwrap();
    }
    all.insert(0, u);
    all.sort_by_key(|r| (r.user.created_date_time, r.user.id));
    assert_eq!(
        store.users("t1").await.unwrap(),
        all,
        "users are listed by creation time"
    );
}

/// An update names the version it read; any other version, or an insert
/// over an existing record, is a conflict that writes nothing.
pub async fn versions_are_compare_and_set(store: Arc<dyn DirectoryStore>) {
    let u = user("t1", 1, "alice");
    store.commit(put_user(u.clone(), Expect::Absent)).await.unwrap();
    let again = store.commit(put_user(u.clone(), Expect::Absent)).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "insert over existing: {again:?}"
    );
    let missing = store
        .commit(put_user(user("t1", 2, "bob"), Expect::Version(1)))
        .await;
    assert!(
        matches!(missing, Err(StoreError::Conflict { .. })),
        "update of absent: {missing:?}"
    );

    let mut v2 = u.clone();
    v2.user.display_name = Some("Alice".into());
    store
        .commit(put_user(v2.clone(), Expect::Version(1)))
        .await
        .unwrap();
    let mut stale = u.clone();
    stale.user.display_name = Some("Stale".into());
    let r = store.commit(put_user(stale, Expect::Version(1))).await;
    assert!(
        matches!(r, Err(StoreError::Conflict { .. })),
        "stale version: {r:?}"
    );
    let got = store.user("t1", u.user.id).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.version),
        (v2, 2),
        "the stale write changed nothing"
    );
}

/// One failing write in a batch leaves every other write of it unapplied.
pub async fn batches_are_all_or_nothing(store: Arc<dyn DirectoryStore>) {
    let u = user("t1", 1, "alice");
    store.commit(put_user(u.clone(), Expect::Absent)).await.unwrap();
    let inv = invitation("t1", 1, &u);
    let mut changed = u.clone();
    changed.active_invitation = Some(inv.invitation.id);
    // A good invitation insert and a good user update, then a stale write.
    let batch = WriteBatch::new()
        .with(Write::Invitation {
            record: inv.clone(),
            expect: Expect::Absent,
        })
        .with(Write::User {
            record: changed,
            expect: Expect::Version(1),
        })
        .with(Write::Flow {
            record: redemption_flow("t1", 9, &inv),
            expect: Expect::Version(4),
        });
    let r = store.commit(batch).await;
    assert!(
        matches!(r, Err(StoreError::Conflict { record: "flow", .. })),
        "an update of an absent flow: {r:?}"
    );
    assert!(
        store.invitation(inv.invitation.id).await.unwrap().is_none(),
        "insert rolled back"
    );
    assert!(
        store
            .flow_by_id("t1", redemption_flow_id(9))
            .await
            .unwrap()
            .is_none()
    );
    let got = store.user("t1", u.user.id).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (u.clone(), 1), "update rolled back");

    // A batch naming one record twice is refused whole.
    let twice = WriteBatch::new()
        .with(Write::Invitation {
            record: inv.clone(),
            expect: Expect::Absent,
        })
        .with(Write::Invitation {
            record: inv.clone(),
            expect: Expect::Absent,
        });
    assert!(store.commit(twice).await.is_err());
    assert!(store.invitation(inv.invitation.id).await.unwrap().is_none());
}

/// Two users of one tenant cannot share a mail comparison key; the index
/// follows changes of mail.
pub async fn mail_is_unique_per_tenant(store: Arc<dyn DirectoryStore>) {
    store
        .commit(put_user(user("t1", 1, "alice"), Expect::Absent))
        .await
        .unwrap();
    let clash = store
        .commit(put_user(user("t1", 2, "ALICE"), Expect::Absent))
        .await;
    assert!(
        matches!(clash, Err(StoreError::Duplicate { .. })),
        "same mail key: {clash:?}"
    );
    assert!(store.user("t1", id(2)).await.unwrap().is_none());
    store
        .commit(put_user(user("t2", 2, "alice"), Expect::Absent))
        .await
        .expect("another tenant may hold the same address");

    // Moving alice to a new address frees the old one.
    let mut moved = user("t1", 1, "alice");
    moved.user.mail = Some(EmailAddress::parse("alice2@fabrikam.example").unwrap());
    store.commit(put_user(moved, Expect::Version(1))).await.unwrap();
    assert!(
        store
            .user_by_mail("t1", "alice@fabrikam.example")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .user_by_mail("t1", "alice2@fabrikam.example")
            .await
            .unwrap()
            .unwrap()
            .value
            .user
            .id,
        id(1)
    );
    store
        .commit(put_user(user("t1", 3, "alice"), Expect::Absent))
        .await
        .expect("the old address is free again");
}

/// `(issuer, issuerAssignedId)` belongs to one user per tenant and finds it.
pub async fn identities_are_unique_and_indexed(store: Arc<dyn DirectoryStore>) {
    let mut a = user("t1", 1, "alice");
    a.user.identities.push(identity("mail", "alice@fabrikam.example"));
    store.commit(put_user(a.clone(), Expect::Absent)).await.unwrap();
    let found = store
        .user_by_identity("t1", "mail", "alice@fabrikam.example")
        .await
        .unwrap();
    assert_eq!(found.map(|v| v.value.user.id), Some(id(1)));
    assert!(
        store
            .user_by_identity("t1", "mail", "bob@fabrikam.example")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .user_by_identity("t2", "mail", "alice@fabrikam.example")
            .await
            .unwrap()
            .is_none()
    );

    let mut b = user("t1", 2, "bob");
    b.user.identities.push(identity("mail", "alice@fabrikam.example"));
    let r = store.commit(put_user(b.clone(), Expect::Absent)).await;
    assert!(
        matches!(r, Err(StoreError::Duplicate { .. })),
        "shared identity: {r:?}"
    );
    assert!(store.user("t1", id(2)).await.unwrap().is_none());

    // The same subject from another issuer is another identity.
    b.user.identities = vec![identity(
        "https://login.fabrikam.example",
        "alice@fabrikam.example",
    )];
    store.commit(put_user(b, Expect::Absent)).await.unwrap();

    // Dropping an identity releases it.
    a.user.identities.clear();
    store.commit(put_user(a, Expect::Version(1))).await.unwrap();
    assert!(
        store
            .user_by_identity("t1", "mail", "alice@fabrikam.example")
            .await
            .unwrap()
            .is_none()
    );
}

/// A user of one tenant is invisible from another.
pub async fn tenants_are_isolated(store: Arc<dyn DirectoryStore>) {
    store
        .commit(put_user(user("t1", 1, "alice"), Expect::Absent))
        .await
        .unwrap();
    assert!(store.user("t2", id(1)).await.unwrap().is_none());
    assert!(
        store
            .user_by_mail("t2", "alice@fabrikam.example")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.users("t2").await.unwrap().is_empty());
    let throttle = AddressThrottle {
        address_key: "alice@fabrikam.example".into(),
        consecutive_failures: 1,
        recent_sends: vec![],
    };
    store
        .commit(WriteBatch::new().with(Write::Throttle {
            tenant_id: "t1".into(),
            record: throttle,
            expect: Expect::Absent,
        }))
        .await
        .unwrap();
    assert!(
        store
            .throttle("t2", "alice@fabrikam.example")
            .await
            .unwrap()
            .is_none()
    );
}

/// One batch may move addresses and identities between users (a swap, a
/// move and a reclaim in either order); the indexes then answer exactly as
/// the users' new values say, and a batch giving two users one address is
/// refused whole.
pub async fn multi_user_batches_keep_indexes(store: Arc<dyn DirectoryStore>) {
    let mut a = user("t1", 1, "a");
    a.user.identities.push(identity("mail", "a@fabrikam.example"));
    let mut b = user("t1", 2, "b");
    b.user.identities.push(identity("mail", "b@fabrikam.example"));
    store.commit(put_user(a.clone(), Expect::Absent)).await.unwrap();
    store.commit(put_user(b.clone(), Expect::Absent)).await.unwrap();

    // Swap both the addresses and the identities of a and b.
    let (mut a2, mut b2) = (a.clone(), b.clone());
    a2.user.mail = b.user.mail.clone();
    a2.user.identities = b.user.identities.clone();
    b2.user.mail = a.user.mail.clone();
    b2.user.identities = a.user.identities.clone();
    store
        .commit(
            WriteBatch::new()
                .with(Write::User {
                    record: a2,
                    expect: Expect::Version(1),
                })
                .with(Write::User {
                    record: b2,
                    expect: Expect::Version(1),
                }),
        )
        .await
        .expect("a swap within one batch commits");
    let owner = |v: Option<super::Versioned<UserRecord>>| v.map(|v| v.value.user.id);
    assert_eq!(
        owner(store.user_by_mail("t1", "b@fabrikam.example").await.unwrap()),
        Some(id(1))
    );
    assert_eq!(
        owner(store.user_by_mail("t1", "a@fabrikam.example").await.unwrap()),
        Some(id(2))
    );
    assert_eq!(
        owner(
            store
                .user_by_identity("t1", "mail", "b@fabrikam.example")
                .await
                .unwrap()
        ),
        Some(id(1))
    );
    assert_eq!(
        owner(
            store
                .user_by_identity("t1", "mail", "a@fabrikam.example")
                .await
                .unwrap()
        ),
        Some(id(2))
    );

    // A new user claims an address that a stored user gives up, with the
    // claim written first.
    let mut c = user("t1", 3, "c");
    c.user.mail = Some(EmailAddress::parse("a@fabrikam.example").unwrap());
    let mut b3 = store.user("t1", id(2)).await.unwrap().unwrap().value;
    b3.user.mail = Some(EmailAddress::parse("b-new@fabrikam.example").unwrap());
    store
        .commit(
            WriteBatch::new()
                .with(Write::User {
                    record: c,
                    expect: Expect::Absent,
                })
                .with(Write::User {
                    record: b3,
                    expect: Expect::Version(2),
                }),
        )
        .await
        .expect("a move and a reclaim in one batch commits");
    assert_eq!(
        owner(store.user_by_mail("t1", "a@fabrikam.example").await.unwrap()),
        Some(id(3))
    );
    assert_eq!(
        owner(store.user_by_mail("t1", "b-new@fabrikam.example").await.unwrap()),
        Some(id(2))
    );

    // Two new users with one address in one batch: refused whole.
    let r = store
        .commit(
            WriteBatch::new()
                .with(Write::User {
                    record: user("t1", 4, "d"),
                    expect: Expect::Absent,
                })
                .with(Write::User {
                    record: user("t1", 5, "D"),
                    expect: Expect::Absent,
                }),
        )
        .await;
    assert!(matches!(r, Err(StoreError::Duplicate { .. })), "{r:?}");
    assert!(store.user("t1", id(4)).await.unwrap().is_none());

    // A write never moves a user to another tenant.
    let mut moved = store.user("t1", id(3)).await.unwrap().unwrap();
    moved.value.tenant_id = "t2".into();
    let r = store
        .commit(put_user(moved.value, Expect::Version(moved.version)))
        .await;
    assert!(r.is_err(), "a user moved across tenants: {r:?}");
    assert!(store.user("t1", id(3)).await.unwrap().is_some());
}

/// `purge_expired` deletes expired flows (redemptions and sign-ups alike)
/// and clears expired ticket bindings, oldest expiry first and at most
/// `limit` of each kind per call; live flows and tickets, the invitations a
/// purged flow redeems, users and passcode counters stay.
pub async fn purge_is_bounded_and_spares_live_records(store: Arc<dyn DirectoryStore>) {
    use crate::directory::TicketBinding;
    let hours = time::Duration::hours;
    let u = user("t1", 1, "alice");
    // Of each kind, three expired and one live, oldest first; numbered
    // against their expiry, so a purge in id order shows.
    let ticket_expiries = [T0 - hours(3), T0 - hours(2), T0 - hours(1), T0 + hours(1)];
    let invs: Vec<InvitationRecord> = ticket_expiries
        .iter()
        .zip([14u8, 13, 12, 11])
        .map(|(at, n)| {
            let mut inv = invitation("t1", n, &u);
            inv.ticket = Some(TicketBinding {
                verifier_hash: Digest::sha256(&[n]),
                expires_at: *at,
            });
            inv
        })
        .collect();
    let mut flows = [
        redemption_flow("t1", 4, &invs[0]),
        flow("t1", 3, awaiting_approval("signup")),
        // An expired redemption of the invitation whose ticket is live.
        redemption_flow("t1", 2, &invs[3]),
        redemption_flow("t1", 1, &invs[3]),
    ];
    // The third expires exactly at `now`.
    let flow_expiries = [T0 - hours(3), T0 - hours(2), T0, T0 + hours(1)];
    for (f, at) in flows.iter_mut().zip(flow_expiries) {
        f.created_at = T0 - time::Duration::days(1);
        f.expires_at = at;
    }
    let throttle = AddressThrottle {
        address_key: "alice@fabrikam.example".into(),
        consecutive_failures: 7,
        recent_sends: vec![T0 - time::Duration::days(2)],
    };
    let mut batch = WriteBatch::new().with(Write::User {
        record: u.clone(),
        expect: Expect::Absent,
    });
    batch.push(Write::Throttle {
        tenant_id: "t1".into(),
        record: throttle.clone(),
        expect: Expect::Absent,
    });
    // Written neither in id nor in expiry order.
    for k in [2, 0, 3, 1] {
        batch.push(Write::Invitation {
            record: invs[k].clone(),
            expect: Expect::Absent,
        });
        batch.push(Write::Flow {
            record: flows[k].clone(),
            expect: Expect::Absent,
        });
    }
    store.commit(batch).await.unwrap();

    assert_eq!(
        store.purge_expired(T0, 0).await.unwrap().total(),
        0,
        "limit 0 purges nothing"
    );
    let first = store.purge_expired(T0, 2).await.unwrap();
    assert_eq!(
        first,
        super::PurgeReport { tickets: 2, flows: 2 },
        "bounded by the limit"
    );
    // The two oldest of each kind went first.
    for f in &flows[..2] {
        assert!(
            store.flow("t1", &f.handle_hash).await.unwrap().is_none(),
            "an expired flow is purged oldest first: {}",
            f.id
        );
        assert!(store.flow_by_id("t1", f.id).await.unwrap().is_none());
    }
    let next = store
        .flow_by_id("t1", flows[2].id)
        .await
        .unwrap()
        .expect("the third oldest flow waits for the next purge");
    assert_eq!((next.value, next.version), (flows[2].clone(), 1));
    for inv in &invs[..2] {
        let got = store
            .invitation(inv.invitation.id)
            .await
            .unwrap()
            .expect("a purge never deletes an invitation");
        let mut cleared = inv.clone();
        cleared.ticket = None;
        assert_eq!(
            (got.value, got.version),
            (cleared, 2),
            "binding cleared, version bumped, the rest kept"
        );
    }
    let next = store.invitation(invs[2].invitation.id).await.unwrap().unwrap();
    assert_eq!(
        (next.value, next.version),
        (invs[2].clone(), 1),
        "the third oldest ticket waits for the next purge"
    );

    let second = store.purge_expired(T0, 100).await.unwrap();
    assert_eq!(
        second,
        super::PurgeReport { tickets: 1, flows: 1 },
        "the rest of what expired, a flow expiring exactly now included"
    );
    assert!(store.flow_by_id("t1", flows[2].id).await.unwrap().is_none());
    let cleared = store.invitation(invs[2].invitation.id).await.unwrap().unwrap();
    assert_eq!((cleared.value.ticket, cleared.version), (None, 2));
    let third = store.purge_expired(T0, 100).await.unwrap();
    assert_eq!(third.total(), 0, "nothing left to purge");

    // Live records, the invitations purged flows redeemed, the user and
    // the counters are untouched.
    for got in [
        store.flow("t1", &flows[3].handle_hash).await.unwrap(),
        store.flow_by_id("t1", flows[3].id).await.unwrap(),
    ] {
        let got = got.expect("the live redemption flow stays");
        assert_eq!((got.value, got.version), (flows[3].clone(), 1));
    }
    let live = store.invitation(invs[3].invitation.id).await.unwrap().unwrap();
    assert_eq!(
        (live.value, live.version),
        (invs[3].clone(), 1),
        "the live ticket, whose expired flow was purged, stays"
    );
    let got = store.user("t1", u.user.id).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (u, 1));
    let t = store
        .throttle("t1", "alice@fabrikam.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.value, t.version), (throttle, 1));
}

// ---------------------------------------------------------------------------
// Redemption flows.

fn redemption_flow_id(n: u8) -> Id {
    let mut b = [0u8; 16];
    b[0] = 0xf2;
    b[1] = n;
    Id::from_bytes(b)
}

fn redemption_handle(n: u8) -> Digest {
    Digest::sha256(&[b'r', n])
}

/// The passcode redemption flow `n` holds inline, sent to `address_key`.
fn inline_passcode(n: u8, address_key: &str) -> PasscodeRecord {
    let mut b = [0u8; 16];
    b[0] = 0xc0;
    b[1] = n;
    PasscodeRecord {
        id: Id::from_bytes(b),
        bound_to: redemption_handle(n),
        address_key: address_key.to_owned(),
        code_hash: Digest::sha256(&[b'c', n]),
        attempts: 0,
        consumed: false,
        issued_at: T0 + time::Duration::seconds(i64::from(n)),
        expires_at: T0 + time::Duration::minutes(10),
    }
}

/// The identity a guest proves by a passcode sent to `email`.
fn mail_identity(email: &EmailAddress) -> FlowIdentity {
    FlowIdentity {
        issuer: "mail".into(),
        subject: email.comparison_key().to_owned(),
        email: email.clone(),
        home: None,
    }
}

/// A flow of `tenant` redeeming `inv` (bound to its invitation, its invited
/// user and its ticket's verifier), started at `T0 + n s`, live for an hour
/// and waiting for the passcode sent to the invited address, which it holds
/// inline; for tests.
pub fn redemption_flow(tenant: &str, n: u8, inv: &InvitationRecord) -> FlowRecord {
    let email = inv.invitation.invited_user_email_address.clone();
    let passcode = inline_passcode(n, email.comparison_key());
    let verifier_hash = inv
        .ticket
        .as_ref()
        .map_or_else(|| Digest::sha256(&[b'v', n]), |t| t.verifier_hash);
    FlowRecord {
        id: redemption_flow_id(n),
        handle_hash: redemption_handle(n),
        tenant_id: tenant.to_owned(),
        user_flow_id: String::new(),
        client_id: String::new(),
        redirect_uri: inv.invitation.invite_redirect_url.clone(),
        redemption: Some(RedemptionBinding {
            invitation_id: inv.invitation.id,
            user_id: inv.invitation.invited_user.id,
            verifier_hash,
        }),
        nonce: None,
        app_state: None,
        ui_locales: None,
        context: Default::default(),
        state: FlowState::AwaitingPasscode {
            email,
            passcode,
            delivered: true,
            federated: None,
        },
        created_at: T0 + time::Duration::seconds(i64::from(n)),
        expires_at: T0 + time::Duration::hours(1),
    }
}

fn throttle_for(address_key: &str, failures: u32) -> AddressThrottle {
    AddressThrottle {
        address_key: address_key.to_owned(),
        consecutive_failures: failures,
        recent_sends: vec![T0],
    }
}

/// What [`DirectoryStore::redemption_by_invitation`] must return, from the
/// single reads.
async fn expected_by_invitation(store: &dyn DirectoryStore, tenant: &str, inv: Id) -> RedemptionRecords {
    let mut out = RedemptionRecords {
        invitation: store.invitation(inv).await.unwrap(),
        ..RedemptionRecords::default()
    };
    if let Some(i) = out.invitation.as_ref().filter(|i| i.value.tenant_id == tenant) {
        out.user = store
            .user(tenant, i.value.invitation.invited_user.id)
            .await
            .unwrap();
    }
    if let Some(key) = out.user.as_ref().and_then(|u| u.value.mail_key()) {
        out.throttle = store.throttle(tenant, key).await.unwrap();
    }
    out
}

/// What [`DirectoryStore::redemption_by_flow`] must return, from the single
/// reads.
async fn expected_by_flow(store: &dyn DirectoryStore, tenant: &str, hash: &Digest) -> RedemptionRecords {
    let Some(flow) = store.flow(tenant, hash).await.unwrap() else {
        return RedemptionRecords::default();
    };
    let mut out = match &flow.value.redemption {
        Some(binding) => expected_by_invitation(store, tenant, binding.invitation_id).await,
        None => RedemptionRecords::default(),
    };
    out.flow = Some(flow);
    out
}

/// Which records a joined read returned, at which versions: the flow's,
/// the invitation's and the user's ids, and the counters' address key.
type Shape = (
    Option<(Id, u64)>,
    Option<(Id, u64)>,
    Option<(Id, u64)>,
    Option<(String, u64)>,
);

fn shape(r: &RedemptionRecords) -> Shape {
    (
        r.flow.as_ref().map(|f| (f.value.id, f.version)),
        r.invitation.as_ref().map(|i| (i.value.invitation.id, i.version)),
        r.user.as_ref().map(|u| (u.value.user.id, u.version)),
        r.throttle
            .as_ref()
            .map(|t| (t.value.address_key.clone(), t.version)),
    )
}

/// The joined reads a redemption step makes return exactly what the single
/// reads return, with versions above 1.
///
/// By invitation: a live one; another tenant's, also one naming a user of
/// the tenant read for (no user); a missing user; a user without mail; a
/// user without counters (another tenant's counters for the address stay
/// hidden); an unknown id.
///
/// By flow: a live redemption; one whose invitation is missing; one of
/// another tenant's invitation (no user, even when the invitation names a
/// user of the flow's tenant); a user without counters; a missing user; a
/// user without mail; a passcode sent to an older address and a binding
/// naming another user (the user and counters still follow the
/// invitation); another tenant's flows; a sign-up (the flow alone); an
/// unknown handle. Every flow read from the other tenant is absent, and so
/// is everything it would bring.
pub async fn joined_reads_match_single_reads(store: Arc<dyn DirectoryStore>) {
    let alice = user("t1", 1, "alice");
    let mut nomail = user("t1", 2, "nomail");
    let inv_nomail = invitation("t1", 2, &nomail);
    nomail.user.mail = None;
    let bob = user("t2", 3, "bob");
    let ghost = user("t1", 4, "ghost"); // never stored
    let carol = user("t1", 5, "carol"); // no counters in t1
    let inv_alice = invitation("t1", 1, &alice);
    let inv_bob = invitation("t2", 3, &bob);
    let inv_ghost = invitation("t1", 4, &ghost);
    let inv_carol = invitation("t1", 5, &carol);
    let inv_missing = invitation("t1", 6, &alice); // never stored
    // Another tenant's invitation naming a user of this tenant.
    let inv_foreign = invitation("t2", 7, &alice);
    let mut batch = WriteBatch::new();
    for u in [&alice, &nomail, &bob, &carol] {
        batch.push(Write::User {
            record: u.clone(),
            expect: Expect::Absent,
        });
    }
    for i in [
        &inv_alice,
        &inv_nomail,
        &inv_bob,
        &inv_ghost,
        &inv_carol,
        &inv_foreign,
    ] {
        batch.push(Write::Invitation {
            record: i.clone(),
            expect: Expect::Absent,
        });
    }
    for (tenant, key, n) in [
        ("t1", "alice@fabrikam.example", 1),
        ("t1", "old@fabrikam.example", 2),
        ("t2", "bob@fabrikam.example", 3),
        ("t2", "alice@fabrikam.example", 4),
        ("t2", "carol@fabrikam.example", 5),
    ] {
        batch.push(Write::Throttle {
            tenant_id: tenant.into(),
            record: throttle_for(key, n),
            expect: Expect::Absent,
        });
    }

    let live = redemption_flow("t1", 1, &inv_alice);
    let mut carol_flow = redemption_flow("t1", 4, &inv_carol);
    carol_flow.state = FlowState::Consent {
        identity: mail_identity(carol.user.mail.as_ref().unwrap()),
    };
    let mut ghost_flow = redemption_flow("t1", 5, &inv_ghost);
    ghost_flow.state = FlowState::Declined;
    let mut old_address = redemption_flow("t1", 7, &inv_alice);
    old_address.state = FlowState::AwaitingPasscode {
        email: EmailAddress::parse("old@fabrikam.example").unwrap(),
        passcode: inline_passcode(7, "old@fabrikam.example"),
        delivered: false,
        federated: None,
    };
    let mut other_user = redemption_flow("t1", 8, &inv_alice);
    other_user.redemption = Some(RedemptionBinding {
        invitation_id: inv_alice.invitation.id,
        user_id: carol.user.id,
        verifier_hash: Digest::sha256(b"verifier"),
    });
    let signup = flow("t1", 1, awaiting_approval("alice"));

    // Each flow, what reading it from its own tenant returns (ids and
    // versions), and what the case is.
    let inv_at = |i: &InvitationRecord, v: u64| Some((i.invitation.id, v));
    let user_at = |u: &UserRecord, v: u64| Some((u.user.id, v));
    let flow_at = |f: &FlowRecord, v: u64| Some((f.id, v));
    let counters = |key: &str, v: u64| Some((key.to_owned(), v));
    let cases: Vec<(&str, FlowRecord, Shape)> = vec![
        (
            "a live redemption",
            live.clone(),
            (
                flow_at(&live, 3),
                inv_at(&inv_alice, 2),
                user_at(&alice, 2),
                counters("alice@fabrikam.example", 2),
            ),
        ),
        {
            let f = redemption_flow("t1", 2, &inv_missing);
            let s = (flow_at(&f, 1), None, None, None);
            ("its invitation is missing", f, s)
        },
        {
            let f = redemption_flow("t1", 3, &inv_foreign);
            let s = (flow_at(&f, 1), inv_at(&inv_foreign, 1), None, None);
            ("another tenant's invitation", f, s)
        },
        {
            let f = redemption_flow("t1", 11, &inv_bob);
            let s = (flow_at(&f, 1), inv_at(&inv_bob, 1), None, None);
            ("another tenant's invitation of its user", f, s)
        },
        {
            let s = (
                flow_at(&carol_flow, 1),
                inv_at(&inv_carol, 1),
                user_at(&carol, 1),
                None,
            );
            ("a user without counters", carol_flow, s)
        },
        {
            let s = (flow_at(&ghost_flow, 1), inv_at(&inv_ghost, 1), None, None);
            ("its user is missing", ghost_flow, s)
        },
        {
            let f = redemption_flow("t1", 6, &inv_nomail);
            let s = (flow_at(&f, 1), inv_at(&inv_nomail, 1), user_at(&nomail, 1), None);
            ("a user without mail", f, s)
        },
        {
            let s = (
                flow_at(&old_address, 1),
                inv_at(&inv_alice, 2),
                user_at(&alice, 2),
                counters("alice@fabrikam.example", 2),
            );
            ("a passcode sent to an older address", old_address, s)
        },
        {
            let s = (
                flow_at(&other_user, 1),
                inv_at(&inv_alice, 2),
                user_at(&alice, 2),
                counters("alice@fabrikam.example", 2),
            );
            ("a binding naming another user", other_user, s)
        },
        {
            let f = redemption_flow("t2", 9, &inv_alice);
            let s = (flow_at(&f, 1), inv_at(&inv_alice, 2), None, None);
            ("another tenant's flow redeeming this tenant's invitation", f, s)
        },
        {
            let f = redemption_flow("t2", 10, &inv_bob);
            let s = (
                flow_at(&f, 1),
                inv_at(&inv_bob, 1),
                user_at(&bob, 1),
                counters("bob@fabrikam.example", 1),
            );
            ("another tenant's live redemption", f, s)
        },
        {
            let s = (flow_at(&signup, 1), None, None, None);
            ("a sign-up", signup, s)
        },
    ];
    for (_, f, _) in &cases {
        batch.push(Write::Flow {
            record: f.clone(),
            expect: Expect::Absent,
        });
    }
    store.commit(batch).await.unwrap();

    // Versions above 1 (and each its own), so a read that mixes up columns
    // shows.
    let mut alice2 = alice.clone();
    alice2.user.display_name = Some("Alice".into());
    let mut inv_alice2 = inv_alice.clone();
    inv_alice2.invitation.invited_user_display_name = Some("Alice".into());
    store
        .commit(
            put_user(alice2, Expect::Version(1))
                .with(Write::Invitation {
                    record: inv_alice2,
                    expect: Expect::Version(1),
                })
                .with(Write::Throttle {
                    tenant_id: "t1".into(),
                    record: throttle_for("alice@fabrikam.example", 9),
                    expect: Expect::Version(1),
                }),
        )
        .await
        .unwrap();
    for (v, attempts) in [(1, 1), (2, 2)] {
        let mut counted = live.clone();
        if let FlowState::AwaitingPasscode { passcode, .. } = &mut counted.state {
            passcode.attempts = attempts;
        }
        store.commit(put_flow(counted, Expect::Version(v))).await.unwrap();
    }

    for inv in [
        &inv_alice,
        &inv_nomail,
        &inv_bob,
        &inv_ghost,
        &inv_carol,
        &inv_foreign,
        &inv_missing,
    ] {
        let id = inv.invitation.id;
        for tenant in ["t1", "t2"] {
            let got = store.redemption_by_invitation(tenant, id).await.unwrap();
            let want = expected_by_invitation(store.as_ref(), tenant, id).await;
            assert_eq!(got, want, "redemption_by_invitation({tenant}, {id})");
        }
    }
    let by_invitation = |tenant: &'static str, inv: &InvitationRecord| {
        let store = store.clone();
        let id = inv.invitation.id;
        async move { shape(&store.redemption_by_invitation(tenant, id).await.unwrap()) }
    };
    assert_eq!(
        by_invitation("t1", &inv_alice).await,
        (
            None,
            inv_at(&inv_alice, 2),
            user_at(&alice, 2),
            counters("alice@fabrikam.example", 2)
        ),
        "the invitation's user and counters, at their versions"
    );
    assert_eq!(
        by_invitation("t2", &inv_alice).await,
        (None, inv_at(&inv_alice, 2), None, None),
        "read from another tenant, the invitation alone"
    );
    assert_eq!(
        by_invitation("t1", &inv_foreign).await,
        (None, inv_at(&inv_foreign, 1), None, None),
        "another tenant's invitation naming a user of this tenant"
    );
    assert_eq!(
        by_invitation("t1", &inv_carol).await,
        (None, inv_at(&inv_carol, 1), user_at(&carol, 1), None),
        "another tenant's counters for the address stay hidden"
    );
    assert_eq!(
        by_invitation("t1", &inv_missing).await,
        (None, None, None, None),
        "an unknown invitation"
    );

    for (what, f, want) in &cases {
        let own = f.tenant_id.as_str();
        let other = if own == "t1" { "t2" } else { "t1" };
        let got = store.redemption_by_flow(own, &f.handle_hash).await.unwrap();
        assert_eq!(
            got,
            expected_by_flow(store.as_ref(), own, &f.handle_hash).await,
            "redemption_by_flow: {what}"
        );
        assert_eq!(shape(&got), *want, "redemption_by_flow: {what}");
        let got = store.redemption_by_flow(other, &f.handle_hash).await.unwrap();
        assert_eq!(
            got,
            expected_by_flow(store.as_ref(), other, &f.handle_hash).await,
            "redemption_by_flow from {other}: {what}"
        );
        assert_eq!(
            got,
            RedemptionRecords::default(),
            "read from another tenant, {what} is absent"
        );
    }
    for tenant in ["t1", "t2"] {
        let got = store
            .redemption_by_flow(tenant, &redemption_handle(99))
            .await
            .unwrap();
        assert_eq!(
            got,
            expected_by_flow(store.as_ref(), tenant, &redemption_handle(99)).await
        );
        assert_eq!(got, RedemptionRecords::default(), "an unknown handle");
    }
}

/// [`RACERS`] tasks update one record from the same version: one wins.
pub async fn racing_updates_have_one_winner(store: Arc<dyn DirectoryStore>) {
    let u = user("t1", 1, "alice");
    store.commit(put_user(u.clone(), Expect::Absent)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = store.clone();
        let mut next = u.clone();
        next.user.display_name = Some(format!("racer {i}"));
        tasks.push(tokio::spawn(async move {
            store.commit(put_user(next, Expect::Version(1))).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error from a racing update: {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one racing update wins");
    assert_eq!(store.user("t1", id(1)).await.unwrap().unwrap().version, 2);
}

/// [`RACERS`] tasks insert users with one address: one wins.
pub async fn racing_inserts_have_one_winner(store: Arc<dyn DirectoryStore>) {
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = store.clone();
        let record = user("t1", i as u8 + 1, "alice");
        tasks.push(tokio::spawn(async move {
            store.commit(put_user(record, Expect::Absent)).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1, "exactly one user gets the address");
    assert_eq!(store.users("t1").await.unwrap().len(), 1);
}

/// [`RACERS`] tasks each complete one redemption from the versions they
/// read: one batch updating the user, the invitation and the redemption
/// flow, the three written in a different order by different racers.
/// Exactly one completes, the others conflict, and the store then holds
/// the winner's three records, each updated once.
pub async fn racing_redemptions_have_one_winner(store: Arc<dyn DirectoryStore>) {
    let mut u = user("t1", 1, "alice");
    let inv = invitation("t1", 1, &u);
    u.active_invitation = Some(inv.invitation.id);
    let mut f = redemption_flow("t1", 1, &inv);
    f.state = FlowState::Consent {
        identity: mail_identity(&inv.invitation.invited_user_email_address),
    };
    store
        .commit(
            WriteBatch::new()
                .with(Write::User {
                    record: u.clone(),
                    expect: Expect::Absent,
                })
                .with(Write::Invitation {
                    record: inv.clone(),
                    expect: Expect::Absent,
                })
                .with(Write::Flow {
                    record: f.clone(),
                    expect: Expect::Absent,
                }),
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    let mut completions = Vec::new();
    for i in 0..RACERS {
        let store = store.clone();
        let mut nu = u.clone();
        nu.active_invitation = None;
        nu.user.external_user_state = Some(ExternalUserState::Accepted);
        nu.user.display_name = Some(format!("racer {i}"));
        nu.user
            .identities
            .push(identity("mail", "alice@fabrikam.example"));
        let mut ni = inv.clone();
        ni.invitation.status = InvitationStatus::Completed;
        ni.invitation.invited_user_display_name = Some(format!("racer {i}"));
        let mut nf = f.clone();
        nf.state = FlowState::Completed {
            user_id: u.user.id,
            signed_in: false,
        };
        nf.app_state = Some(format!("racer {i}"));
        let mut writes = vec![
            Write::User {
                record: nu.clone(),
                expect: Expect::Version(1),
            },
            Write::Invitation {
                record: ni.clone(),
                expect: Expect::Version(1),
            },
            Write::Flow {
                record: nf.clone(),
                expect: Expect::Version(1),
            },
        ];
        writes.rotate_left(i % 3);
        let batch = writes.into_iter().fold(WriteBatch::new(), WriteBatch::with);
        completions.push((nu, ni, nf));
        tasks.push(tokio::spawn(async move { store.commit(batch).await }));
    }
    let mut wins = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => wins.push(i),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error from a racing redemption: {e}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one redemption completes");
    let (nu, ni, nf) = completions.swap_remove(wins[0]);
    let got = store.user("t1", u.user.id).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.version),
        (nu, 2),
        "the winner's user, updated once"
    );
    let got = store.invitation(inv.invitation.id).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.version),
        (ni, 2),
        "the winner's invitation, updated once"
    );
    let got = store.flow("t1", &f.handle_hash).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.version),
        (nf.clone(), 2),
        "the winner's flow, updated once"
    );
    let got = store.flow_by_id("t1", f.id).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (nf, 2));
}

// ---------------------------------------------------------------------------
// Sign-up flows.

fn flow_id(n: u8) -> Id {
    let mut b = [0u8; 16];
    b[0] = 0xf1;
    b[1] = n;
    Id::from_bytes(b)
}

fn flow_handle(n: u8) -> Digest {
    Digest::sha256(&[b'f', n])
}

/// A sign-up flow of `tenant` in `state`, started at `T0 + n s` and live
/// for an hour, for tests.
pub fn flow(tenant: &str, n: u8, state: FlowState) -> FlowRecord {
    FlowRecord {
        id: flow_id(n),
        handle_hash: flow_handle(n),
        tenant_id: tenant.to_owned(),
        user_flow_id: "B2X_1_signup".to_owned(),
        client_id: "00000000-0000-0000-0000-0000000000a1".to_owned(),
        redirect_uri: "https://app.contoso.example/signed-up".to_owned(),
        redemption: None,
        nonce: Some(format!("nonce-{n}")),
        app_state: None,
        ui_locales: Some("fr-CA en".to_owned()),
        context: Default::default(),
        state,
        created_at: T0 + time::Duration::seconds(i64::from(n)),
        expires_at: T0 + time::Duration::hours(1),
    }
}

/// A flow state awaiting an administrator's approval of
/// `{local}@fabrikam.example`, with a few collected attributes.
pub fn awaiting_approval(local: &str) -> FlowState {
    let email = EmailAddress::parse(&format!("{local}@fabrikam.example")).unwrap();
    let attributes = BTreeMap::from([
        ("givenName".to_owned(), serde_json::json!(local)),
        ("extension_a1_newsletter".to_owned(), serde_json::json!(true)),
        ("extension_a1_seats".to_owned(), serde_json::json!(12)),
    ]);
    FlowState::AwaitingApproval {
        identity: FlowIdentity {
            issuer: "mail".into(),
            subject: email.comparison_key().to_owned(),
            email,
            home: None,
        },
        attributes,
        message: None,
    }
}

fn put_flow(record: FlowRecord, expect: Expect) -> WriteBatch {
    WriteBatch::new().with(Write::Flow { record, expect })
}

/// A flow reads back as written by its handle and by its id, at version 1
/// and after an update at 2; from another tenant it reads as absent.
pub async fn flows_round_trip(store: Arc<dyn DirectoryStore>) {
    let f = flow("t1", 1, FlowState::ChooseProvider);
    store
        .commit(put_flow(f.clone(), Expect::Absent))
        .await
        .expect("a fresh flow inserts");
    let got = store
        .flow("t1", &f.handle_hash)
        .await
        .unwrap()
        .expect("flow reads back by handle");
    assert_eq!((got.value, got.version), (f.clone(), 1));
    let got = store
        .flow_by_id("t1", f.id)
        .await
        .unwrap()
        .expect("flow reads back by id");
    assert_eq!((got.value, got.version), (f.clone(), 1));
    assert!(
        store.flow("t2", &f.handle_hash).await.unwrap().is_none(),
        "another tenant's flow by handle"
    );
    assert!(
        store.flow_by_id("t2", f.id).await.unwrap().is_none(),
        "another tenant's flow by id"
    );
    assert!(store.flow("t1", &flow_handle(9)).await.unwrap().is_none());
    assert!(store.flow_by_id("t1", flow_id(9)).await.unwrap().is_none());

    let mut next = f.clone();
    next.state = awaiting_approval("alice");
    next.app_state = Some("af0ifjsldkj".into());
    next.expires_at = T0 + time::Duration::days(7) + time::Duration::nanoseconds(1_500);
    store
        .commit(put_flow(next.clone(), Expect::Version(1)))
        .await
        .expect("update at the current version commits");
    let got = store.flow("t1", &f.handle_hash).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.version),
        (next.clone(), 2),
        "state, attributes and nanoseconds survive"
    );
    let got = store.flow_by_id("t1", f.id).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (next, 2));
}

/// Flow writes are compare-and-set on the version; a handle hash belongs to
/// one flow across tenants; an update may change neither the handle hash
/// nor the tenant. A refused write changes nothing.
pub async fn flow_writes_are_conditional(store: Arc<dyn DirectoryStore>) {
    let f = flow("t1", 1, FlowState::ChooseProvider);
    store.commit(put_flow(f.clone(), Expect::Absent)).await.unwrap();
    let conflict = |r: Result<(), StoreError>, what: &str| {
        assert!(
            matches!(r, Err(StoreError::Conflict { record: "flow", .. })),
            "{what}: {r:?}"
        );
    };

    conflict(
        store.commit(put_flow(f.clone(), Expect::Absent)).await,
        "insert over an existing flow",
    );
    conflict(
        store
            .commit(put_flow(
                flow("t1", 2, FlowState::ChooseProvider),
                Expect::Version(1),
            ))
            .await,
        "update of an absent flow",
    );
    assert!(store.flow_by_id("t1", flow_id(2)).await.unwrap().is_none());

    let mut v2 = f.clone();
    v2.state = FlowState::EnterEmail;
    store
        .commit(put_flow(v2.clone(), Expect::Version(1)))
        .await
        .unwrap();
    let mut stale = f.clone();
    stale.state = awaiting_approval("stale");
    conflict(
        store.commit(put_flow(stale, Expect::Version(1))).await,
        "stale version",
    );
    conflict(
        store.commit(put_flow(v2.clone(), Expect::Version(3))).await,
        "future version",
    );

    // An update never moves a flow to another tenant.
    let mut moved = v2.clone();
    moved.tenant_id = "t2".into();
    conflict(
        store.commit(put_flow(moved, Expect::Version(2))).await,
        "a flow moved across tenants",
    );
    assert!(store.flow_by_id("t2", f.id).await.unwrap().is_none());
    assert!(store.flow("t2", &f.handle_hash).await.unwrap().is_none());

    // Nor changes its handle.
    let mut rehandled = v2.clone();
    rehandled.handle_hash = flow_handle(50);
    conflict(
        store.commit(put_flow(rehandled, Expect::Version(2))).await,
        "a changed handle hash",
    );
    assert!(store.flow("t1", &flow_handle(50)).await.unwrap().is_none());

    // A handle hash is unique across flows, also across tenants.
    for tenant in ["t1", "t2"] {
        let mut other = flow(tenant, 3, FlowState::ChooseProvider);
        other.handle_hash = f.handle_hash;
        let r = store.commit(put_flow(other, Expect::Absent)).await;
        assert_eq!(
            r,
            Err(StoreError::Duplicate {
                constraint: "flow handle",
                key: f.handle_hash.to_hex(),
            }),
            "a second flow with the handle in {tenant}"
        );
        assert!(store.flow_by_id(tenant, flow_id(3)).await.unwrap().is_none());
    }

    let got = store.flow("t1", &f.handle_hash).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.version),
        (v2, 2),
        "the refused writes changed nothing"
    );
}

/// A flow written in one batch with other records is all or nothing: a
/// user's duplicate mail leaves the batch's flow unwritten, and a flow's
/// failed precondition leaves the batch's user unwritten.
pub async fn flows_in_batches_are_all_or_nothing(store: Arc<dyn DirectoryStore>) {
    let alice = user("t1", 1, "alice");
    store
        .commit(put_user(alice.clone(), Expect::Absent))
        .await
        .unwrap();

    // A new flow, then a user whose address alice holds.
    let f = flow("t1", 1, awaiting_approval("ALICE"));
    let r = store
        .commit(
            WriteBatch::new()
                .with(Write::Flow {
                    record: f.clone(),
                    expect: Expect::Absent,
                })
                .with(Write::User {
                    record: user("t1", 2, "Alice"),
                    expect: Expect::Absent,
                }),
        )
        .await;
    assert!(
        matches!(
            r,
            Err(StoreError::Duplicate {
                constraint: "user mail",
                ..
            })
        ),
        "{r:?}"
    );
    assert!(
        store.flow("t1", &f.handle_hash).await.unwrap().is_none(),
        "flow insert rolled back"
    );
    assert!(store.flow_by_id("t1", f.id).await.unwrap().is_none());
    assert!(store.user("t1", id(2)).await.unwrap().is_none());
    assert!(
        store
            .flows_awaiting_approval("t1", T0, 10)
            .await
            .unwrap()
            .is_empty(),
        "the rolled-back flow is not queued"
    );

    // The flow alone commits; then a new user with a stale flow update.
    store.commit(put_flow(f.clone(), Expect::Absent)).await.unwrap();
    let mut done = f.clone();
    done.state = FlowState::Completed {
        user_id: id(3),
        signed_in: false,
    };
    let r = store
        .commit(
            WriteBatch::new()
                .with(Write::User {
                    record: user("t1", 3, "carol"),
                    expect: Expect::Absent,
                })
                .with(Write::Flow {
                    record: done.clone(),
                    expect: Expect::Version(7),
                }),
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict { record: "flow", .. })),
        "{r:?}"
    );
    assert!(
        store.user("t1", id(3)).await.unwrap().is_none(),
        "user insert rolled back"
    );
    let got = store.flow_by_id("t1", f.id).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (f.clone(), 1));

    // Both at the right versions: both land.
    store
        .commit(
            WriteBatch::new()
                .with(Write::User {
                    record: user("t1", 3, "carol"),
                    expect: Expect::Absent,
                })
                .with(Write::Flow {
                    record: done.clone(),
                    expect: Expect::Version(1),
                }),
        )
        .await
        .expect("a user and its flow commit together");
    assert_eq!(store.user("t1", id(3)).await.unwrap().unwrap().version, 1);
    let got = store.flow_by_id("t1", f.id).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (done, 2));
}

fn queue(flows: &[super::Versioned<FlowRecord>]) -> Vec<(Id, u64)> {
    flows.iter().map(|f| (f.value.id, f.version)).collect()
}

/// [`DirectoryStore::flows_awaiting_approval`] lists the tenant's live flows
/// whose state awaits approval, oldest first (then by id), at most `limit`,
/// and follows every update of a flow's state and expiry.
pub async fn flows_awaiting_approval_are_listed_oldest_first(store: Arc<dyn DirectoryStore>) {
    let seconds = time::Duration::seconds;
    let now = T0 + time::Duration::minutes(10);
    // Created at T0+5s, +1s and +1s (a tie broken by id): listed 2, 7, 1.
    let mut f1 = flow("t1", 1, awaiting_approval("a"));
    let mut f2 = flow("t1", 2, awaiting_approval("b"));
    let mut f7 = flow("t1", 7, awaiting_approval("c"));
    f1.created_at = T0 + seconds(5);
    f2.created_at = T0 + seconds(1);
    f7.created_at = T0 + seconds(1);
    let f3 = flow("t1", 3, FlowState::ChooseProvider); // not awaiting
    let mut f4 = flow("t1", 4, awaiting_approval("d")); // expired
    f4.expires_at = now - seconds(1);
    let mut f5 = flow("t1", 5, awaiting_approval("e")); // expires exactly now (created with f1)
    f5.expires_at = now;
    let f6 = flow("t2", 6, awaiting_approval("f")); // another tenant
    let mut batch = WriteBatch::new();
    // Written neither in id nor in creation order.
    for f in [&f7, &f4, &f1, &f6, &f3, &f2, &f5] {
        batch.push(Write::Flow {
            record: f.clone(),
            expect: Expect::Absent,
        });
    }
    store.commit(batch).await.unwrap();

    let listed = store.flows_awaiting_approval("t1", now, 10).await.unwrap();
    assert_eq!(
        queue(&listed),
        [(f2.id, 1), (f7.id, 1), (f1.id, 1)],
        "live, awaiting, of the tenant, oldest first then by id"
    );
    assert_eq!(listed[0].value, f2, "listed records are whole");
    let first = store.flows_awaiting_approval("t1", now, 2).await.unwrap();
    assert_eq!(queue(&first), [(f2.id, 1), (f7.id, 1)], "at most limit");
    assert!(
        store
            .flows_awaiting_approval("t1", now, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        queue(&store.flows_awaiting_approval("t2", now, 10).await.unwrap()),
        [(f6.id, 1)]
    );
    assert!(
        store
            .flows_awaiting_approval("t3", now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .flows_awaiting_approval("t1", T0 + time::Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is live at its expiry"
    );
    assert_eq!(
        queue(
            &store
                .flows_awaiting_approval("t1", now - seconds(2), 10)
                .await
                .unwrap()
        ),
        [(f2.id, 1), (f7.id, 1), (f4.id, 1), (f1.id, 1), (f5.id, 1)],
        "before their expiry, f4 and f5 are listed"
    );

    // A decision takes f2 off the queue; an extended expiry puts f4 on it;
    // a waiting flow's update shows its new version; f3 starts waiting.
    let mut decided = f2.clone();
    decided.state = FlowState::Denied {
        message: "Not this time.".into(),
    };
    let mut extended = f4.clone();
    extended.expires_at = now + time::Duration::days(1);
    let mut noted = f1.clone();
    if let FlowState::AwaitingApproval { message, .. } = &mut noted.state {
        *message = Some("An administrator is looking at it.".into());
    }
    let mut waiting = f3.clone();
    waiting.state = awaiting_approval("g");
    store
        .commit(
            WriteBatch::new()
                .with(Write::Flow {
                    record: decided,
                    expect: Expect::Version(1),
                })
                .with(Write::Flow {
                    record: extended,
                    expect: Expect::Version(1),
                })
                .with(Write::Flow {
                    record: noted.clone(),
                    expect: Expect::Version(1),
                })
                .with(Write::Flow {
                    record: waiting,
                    expect: Expect::Version(1),
                }),
        )
        .await
        .unwrap();
    let listed = store.flows_awaiting_approval("t1", now, 10).await.unwrap();
    assert_eq!(
        queue(&listed),
        [(f7.id, 1), (f3.id, 2), (f4.id, 2), (f1.id, 2)],
        "the queue follows state and expiry changes"
    );
    assert_eq!(listed[3].value, noted);
    assert_eq!(
        queue(&store.flows_awaiting_approval("t1", now, 1).await.unwrap()),
        [(f7.id, 1)],
        "the limit counts only flows that await approval"
    );
}

/// `purge_expired` deletes flows whose expiry is at or before `now`, oldest
/// first and at most `limit` per call; a purged flow's handle is free again,
/// and live flows stay.
pub async fn purge_removes_expired_flows(store: Arc<dyn DirectoryStore>) {
    let hours = time::Duration::hours;
    // Expired at T0-3h (t2), T0-2h, exactly at T0; live until T0+1h.
    let mut batch = WriteBatch::new();
    for (n, tenant, at) in [
        (1u8, "t1", T0 + hours(1)),
        (2, "t1", T0),
        (3, "t1", T0 - hours(2)),
        (4, "t2", T0 - hours(3)),
    ] {
        let mut f = flow(tenant, n, awaiting_approval("p"));
        f.expires_at = at;
        batch.push(Write::Flow {
            record: f,
            expect: Expect::Absent,
        });
    }
    store.commit(batch).await.unwrap();

    assert_eq!(
        store.purge_expired(T0, 0).await.unwrap().total(),
        0,
        "limit 0 purges nothing"
    );
    let first = store.purge_expired(T0, 2).await.unwrap();
    assert_eq!(
        first,
        super::PurgeReport {
            flows: 2,
            ..super::PurgeReport::default()
        },
        "bounded by the limit"
    );
    assert!(
        store.flow_by_id("t2", flow_id(4)).await.unwrap().is_none(),
        "oldest first"
    );
    assert!(store.flow("t1", &flow_handle(3)).await.unwrap().is_none());
    assert!(store.flow_by_id("t1", flow_id(2)).await.unwrap().is_some());
    let second = store.purge_expired(T0, 100).await.unwrap();
    assert_eq!(second.flows, 1, "expired at exactly now");
    assert!(store.flow_by_id("t1", flow_id(2)).await.unwrap().is_none());
    assert_eq!(store.purge_expired(T0, 100).await.unwrap().total(), 0);
    let live = store.flow_by_id("t1", flow_id(1)).await.unwrap().unwrap();
    assert_eq!(live.version, 1, "the live flow is untouched");

    // A purged handle may start a new flow.
    let mut again = flow("t1", 9, FlowState::ChooseProvider);
    again.handle_hash = flow_handle(3);
    store
        .commit(put_flow(again.clone(), Expect::Absent))
        .await
        .expect("a purged flow's handle is free");
    assert_eq!(
        store.flow("t1", &flow_handle(3)).await.unwrap().unwrap().value,
        again
    );
}

/// [`RACERS`] tasks update one flow from the same version: one wins.
pub async fn racing_flow_updates_have_one_winner(store: Arc<dyn DirectoryStore>) {
    let f = flow("t1", 1, FlowState::ChooseProvider);
    store.commit(put_flow(f.clone(), Expect::Absent)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = store.clone();
        let mut next = f.clone();
        next.state = awaiting_approval(&format!("racer{i}"));
        next.app_state = Some(format!("racer {i}"));
        tasks.push(tokio::spawn(async move {
            store.commit(put_flow(next, Expect::Version(1))).await
        }));
    }
    let mut wins = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => wins.push(i),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error from a racing flow update: {e}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one racing flow update wins");
    let got = store.flow("t1", &f.handle_hash).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(
        got.value.app_state,
        Some(format!("racer {}", wins[0])),
        "the winner's write"
    );
    assert_eq!(
        queue(&store.flows_awaiting_approval("t1", T0, 100).await.unwrap()),
        [(f.id, 2)]
    );
}

/// [`RACERS`] tasks start flows with one handle hash: one wins, the others
/// are told the handle is taken.
pub async fn racing_flow_inserts_have_one_winner(store: Arc<dyn DirectoryStore>) {
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = store.clone();
        let mut record = flow("t1", i as u8 + 1, FlowState::ChooseProvider);
        record.handle_hash = flow_handle(0);
        tasks.push(tokio::spawn(async move {
            store.commit(put_flow(record, Expect::Absent)).await
        }));
    }
    let mut wins = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => wins.push(i),
            Err(StoreError::Duplicate {
                constraint: "flow handle",
                ..
            }) => {}
            Err(e) => panic!("unexpected error from a racing flow insert: {e}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one flow gets the handle");
    let got = store.flow("t1", &flow_handle(0)).await.unwrap().unwrap();
    assert_eq!((got.value.id, got.version), (flow_id(wins[0] as u8 + 1), 1));
}

// ---------------------------------------------------------------------------
// Deleting users.

fn delete_user(tenant: &str, user: &UserRecord, expect: Expect) -> Write {
    Write::DeleteUser {
        tenant_id: tenant.to_owned(),
        id: user.user.id,
        expect,
    }
}

/// The records the deletion checks start from.
struct Seeded {
    /// `t1`'s alice (two identities) with its pending invitation and an
    /// earlier, replaced one, and a redemption flow of each.
    alice: UserRecord,
    alice_invitations: [InvitationRecord; 2],
    alice_flows: [FlowRecord; 2],
    /// `t1`'s bob with an invitation and a redemption flow of its own, and
    /// an unrelated sign-up flow.
    bob: UserRecord,
    bob_invitation: InvitationRecord,
    bob_flow: FlowRecord,
    sign_up: FlowRecord,
    /// `t2`'s alice: the same address and identities, with an invitation.
    other_alice: UserRecord,
    other_invitation: InvitationRecord,
}

const ALICE_SUBJECT: &str = "00000000-0000-0000-0000-00000000a11c";

/// Commits the [`Seeded`] records (and passcode counters of alice's
/// address in `t1`), all at version 1.
async fn seed_for_deletion(store: &dyn DirectoryStore) -> Seeded {
    let identities = vec![
        identity("mail", "alice@fabrikam.example"),
        identity("https://login.fabrikam.example", ALICE_SUBJECT),
    ];
    let mut alice = user("t1", 1, "alice");
    alice.user.identities = identities.clone();
    let current = invitation("t1", 1, &alice);
    let mut replaced = invitation("t1", 2, &alice);
    replaced.invitation.status = InvitationStatus::Error;
    alice.active_invitation = Some(current.invitation.id);
    let alice_flows = [
        redemption_flow("t1", 1, &current),
        redemption_flow("t1", 2, &replaced),
    ];
    let mut bob = user("t1", 3, "bob");
    bob.user.identities = vec![identity("mail", "bob@fabrikam.example")];
    let bob_invitation = invitation("t1", 3, &bob);
    bob.active_invitation = Some(bob_invitation.invitation.id);
    let bob_flow = redemption_flow("t1", 3, &bob_invitation);
    let sign_up = flow("t1", 4, awaiting_approval("carol"));
    let mut other_alice = user("t2", 5, "alice");
    other_alice.user.identities = identities;
    let other_invitation = invitation("t2", 5, &other_alice);
    let seeded = Seeded {
        alice,
        alice_invitations: [current, replaced],
        alice_flows,
        bob,
        bob_invitation,
        bob_flow,
        sign_up,
        other_alice,
        other_invitation,
    };
    let mut batch = WriteBatch::new();
    for u in [&seeded.alice, &seeded.bob, &seeded.other_alice] {
        batch.push(Write::User {
            record: u.clone(),
            expect: Expect::Absent,
        });
    }
    for i in seeded
        .alice_invitations
        .iter()
        .chain([&seeded.bob_invitation, &seeded.other_invitation])
    {
        batch.push(Write::Invitation {
            record: i.clone(),
            expect: Expect::Absent,
        });
    }
    for f in seeded
        .alice_flows
        .iter()
        .chain([&seeded.bob_flow, &seeded.sign_up])
    {
        batch.push(Write::Flow {
            record: f.clone(),
            expect: Expect::Absent,
        });
    }
    batch.push(Write::Throttle {
        tenant_id: "t1".into(),
        record: throttle_for("alice@fabrikam.example", 2),
        expect: Expect::Absent,
    });
    store
        .commit(batch)
        .await
        .expect("the records to delete from commit");
    seeded
}

/// Everything the deletion checks look at, as read now (with versions).
async fn deletion_view(store: &dyn DirectoryStore, s: &Seeded) -> Vec<String> {
    let mut out = Vec::new();
    for (tenant, u) in [("t1", &s.alice), ("t1", &s.bob), ("t2", &s.other_alice)] {
        out.push(format!("{:?}", store.user(tenant, u.user.id).await.unwrap()));
        let mail = u.mail_key().unwrap();
        out.push(format!("{:?}", store.user_by_mail(tenant, mail).await.unwrap()));
        for i in &u.user.identities {
            let by = store
                .user_by_identity(tenant, &i.issuer, &i.issuer_assigned_id)
                .await
                .unwrap();
            out.push(format!("{by:?}"));
        }
    }
    for tenant in ["t1", "t2"] {
        out.push(format!("{:?}", store.users(tenant).await.unwrap()));
    }
    for i in s
        .alice_invitations
        .iter()
        .chain([&s.bob_invitation, &s.other_invitation])
    {
        out.push(format!("{:?}", store.invitation(i.invitation.id).await.unwrap()));
    }
    for f in s.alice_flows.iter().chain([&s.bob_flow, &s.sign_up]) {
        out.push(format!("{:?}", store.flow("t1", &f.handle_hash).await.unwrap()));
        out.push(format!("{:?}", store.flow_by_id("t1", f.id).await.unwrap()));
    }
    out.push(format!(
        "{:?}",
        store.throttle("t1", "alice@fabrikam.example").await.unwrap()
    ));
    out
}

/// Deleting a user at its version removes the user, its identities and
/// mail key, its invitations (the pending one and the replaced one) and
/// the redemption flows of both; the tenant's other users, their
/// invitations and flows, its sign-up flows, the address's passcode
/// counters and another tenant's user with the same address and
/// identities stay as they were. The address and the identities are free
/// for a new user at once; the deleted user can be neither deleted nor
/// updated again.
pub async fn deleting_a_user_removes_what_it_owns(store: Arc<dyn DirectoryStore>) {
    let s = seed_for_deletion(store.as_ref()).await;
    store
        .commit(WriteBatch::new().with(delete_user("t1", &s.alice, Expect::Version(1))))
        .await
        .expect("a deletion at the current version commits");

    assert!(store.user("t1", s.alice.user.id).await.unwrap().is_none());
    assert!(
        store
            .user_by_mail("t1", "alice@fabrikam.example")
            .await
            .unwrap()
            .is_none(),
        "the mail key is gone"
    );
    for i in &s.alice.user.identities {
        let by = store
            .user_by_identity("t1", &i.issuer, &i.issuer_assigned_id)
            .await
            .unwrap();
        assert!(by.is_none(), "identity {} is gone", i.issuer);
    }
    for i in &s.alice_invitations {
        assert!(
            store.invitation(i.invitation.id).await.unwrap().is_none(),
            "invitation {} is gone",
            i.invitation.id
        );
        let joined = store
            .redemption_by_invitation("t1", i.invitation.id)
            .await
            .unwrap();
        assert_eq!(joined, RedemptionRecords::default());
    }
    for f in &s.alice_flows {
        assert!(store.flow("t1", &f.handle_hash).await.unwrap().is_none());
        assert!(store.flow_by_id("t1", f.id).await.unwrap().is_none());
        let joined = store.redemption_by_flow("t1", &f.handle_hash).await.unwrap();
        assert_eq!(joined, RedemptionRecords::default(), "flow {} is gone", f.id);
    }
    let users: Vec<Id> = store
        .users("t1")
        .await
        .unwrap()
        .iter()
        .map(|u| u.user.id)
        .collect();
    assert_eq!(users, [s.bob.user.id]);

    // Everything else is untouched, at version 1.
    let one = |v: Option<u64>, what: &str| assert_eq!(v, Some(1), "{what} untouched");
    one(
        store.user("t1", s.bob.user.id).await.unwrap().map(|v| v.version),
        "bob",
    );
    one(
        store
            .user_by_identity("t1", "mail", "bob@fabrikam.example")
            .await
            .unwrap()
            .map(|v| v.version),
        "bob's identity",
    );
    one(
        store
            .invitation(s.bob_invitation.invitation.id)
            .await
            .unwrap()
            .map(|v| v.version),
        "bob's invitation",
    );
    for f in [&s.bob_flow, &s.sign_up] {
        one(
            store.flow("t1", &f.handle_hash).await.unwrap().map(|v| v.version),
            "a flow of someone else",
        );
    }
    one(
        store
            .throttle("t1", "alice@fabrikam.example")
            .await
            .unwrap()
            .map(|v| v.version),
        "the address's passcode counters",
    );
    one(
        store
            .user("t2", s.other_alice.user.id)
            .await
            .unwrap()
            .map(|v| v.version),
        "another tenant's alice",
    );
    one(
        store
            .user_by_identity("t2", "https://login.fabrikam.example", ALICE_SUBJECT)
            .await
            .unwrap()
            .map(|v| v.version),
        "another tenant's identity",
    );
    one(
        store
            .invitation(s.other_invitation.invitation.id)
            .await
            .unwrap()
            .map(|v| v.version),
        "another tenant's invitation",
    );

    // The address and the identities are free for a new user.
    let mut again = user("t1", 6, "alice");
    again.user.identities = s.alice.user.identities.clone();
    store
        .commit(put_user(again.clone(), Expect::Absent))
        .await
        .expect("a new user takes the deleted user's address and identities");
    let by_mail = store
        .user_by_mail("t1", "alice@fabrikam.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((by_mail.value.user.id, by_mail.version), (again.user.id, 1));
    let by_identity = store
        .user_by_identity("t1", "https://login.fabrikam.example", ALICE_SUBJECT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_identity.value.user.id, again.user.id);

    // The deleted user is gone for good.
    let r = store
        .commit(WriteBatch::new().with(delete_user("t1", &s.alice, Expect::Version(1))))
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict { record: "user", .. })),
        "deleting a deleted user: {r:?}"
    );
    let r = store.commit(put_user(s.alice.clone(), Expect::Version(1))).await;
    assert!(
        matches!(r, Err(StoreError::Conflict { .. })),
        "updating a deleted user: {r:?}"
    );
}

/// A deletion names the version it read: a stale version, a user that does
/// not exist, a user of another tenant and a deletion that expects the
/// user absent are all refused, and change nothing.
pub async fn deletes_are_conditional(store: Arc<dyn DirectoryStore>) {
    let s = seed_for_deletion(store.as_ref()).await;
    let mut changed = s.alice.clone();
    changed.user.display_name = Some("Alice".into());
    store.commit(put_user(changed, Expect::Version(1))).await.unwrap();
    let before = deletion_view(store.as_ref(), &s).await;

    let stale = store
        .commit(WriteBatch::new().with(delete_user("t1", &s.alice, Expect::Version(1))))
        .await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict { record: "user", key }) if *key == s.alice.user.id.to_string()),
        "a stale deletion: {stale:?}"
    );
    assert_eq!(
        deletion_view(store.as_ref(), &s).await,
        before,
        "a stale deletion changes nothing"
    );

    let missing = user("t1", 9, "nobody");
    let r = store
        .commit(WriteBatch::new().with(delete_user("t1", &missing, Expect::Version(1))))
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict { record: "user", .. })),
        "deleting a missing user: {r:?}"
    );
    let r = store
        .commit(WriteBatch::new().with(delete_user("t2", &s.alice, Expect::Version(2))))
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict { record: "user", .. })),
        "deleting another tenant's user: {r:?}"
    );
    let r = store
        .commit(WriteBatch::new().with(delete_user("t1", &s.alice, Expect::Absent)))
        .await;
    assert!(
        matches!(r, Err(StoreError::Backend { .. })),
        "a deletion expecting absence: {r:?}"
    );
    let r = store
        .commit(
            WriteBatch::new()
                .with(Write::User {
                    record: s.alice.clone(),
                    expect: Expect::Version(2),
                })
                .with(delete_user("t1", &s.alice, Expect::Version(2))),
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::Backend { .. })),
        "a batch writing and deleting one user: {r:?}"
    );
    assert_eq!(
        deletion_view(store.as_ref(), &s).await,
        before,
        "refused deletions change nothing"
    );

    // At the current version it commits.
    store
        .commit(WriteBatch::new().with(delete_user("t1", &s.alice, Expect::Version(2))))
        .await
        .expect("a deletion at the current version commits");
    assert!(store.user("t1", s.alice.user.id).await.unwrap().is_none());
}

/// A deletion in a batch whose other write fails (a stale version, a taken
/// address) is not applied, nor is anything else of the batch. Within a
/// batch, a deleted user's address and identities may go to another user
/// of the batch, whichever comes first; and what the batch writes for the
/// deleted user (an invitation, a redemption flow) is removed with it.
pub async fn deletes_in_batches_are_all_or_nothing(store: Arc<dyn DirectoryStore>) {
    let s = seed_for_deletion(store.as_ref()).await;
    let before = deletion_view(store.as_ref(), &s).await;

    let stale_flow = WriteBatch::new()
        .with(delete_user("t1", &s.alice, Expect::Version(1)))
        .with(Write::Flow {
            record: s.bob_flow.clone(),
            expect: Expect::Version(7),
        });
    let r = store.commit(stale_flow).await;
    assert!(
        matches!(r, Err(StoreError::Conflict { record: "flow", .. })),
        "a stale flow update: {r:?}"
    );
    assert_eq!(
        deletion_view(store.as_ref(), &s).await,
        before,
        "the deletion was not applied"
    );

    let fresh = invitation("t1", 7, &s.bob);
    let taken = WriteBatch::new()
        .with(Write::Invitation {
            record: fresh.clone(),
            expect: Expect::Absent,
        })
        .with(delete_user("t1", &s.alice, Expect::Version(1)))
        .with(Write::User {
            record: user("t1", 8, "bob"),
            expect: Expect::Absent,
        });
    let r = store.commit(taken).await;
    assert!(
        matches!(
            r,
            Err(StoreError::Duplicate {
                constraint: "user mail",
                ..
            })
        ),
        "a taken address: {r:?}"
    );
    assert_eq!(deletion_view(store.as_ref(), &s).await, before);
    assert!(store.invitation(fresh.invitation.id).await.unwrap().is_none());
    assert!(store.user("t1", id(8)).await.unwrap().is_none());

    // The deleted user's address and identities go to a user the batch
    // inserts, the deletion first or last.
    let mut dave = user("t1", 10, "alice");
    dave.user.identities = s.alice.user.identities.clone();
    store
        .commit(
            WriteBatch::new()
                .with(delete_user("t1", &s.alice, Expect::Version(1)))
                .with(Write::User {
                    record: dave.clone(),
                    expect: Expect::Absent,
                }),
        )
        .await
        .expect("a deleted user's address and identities go to a new user");
    let mut erin = user("t1", 11, "bob");
    erin.user.identities = s.bob.user.identities.clone();
    store
        .commit(
            WriteBatch::new()
                .with(Write::User {
                    record: erin.clone(),
                    expect: Expect::Absent,
                })
                .with(delete_user("t1", &s.bob, Expect::Version(1))),
        )
        .await
        .expect("the deletion may come after the claim in the batch");
    for (mail, issuer, subject, holder) in [
        (
            "alice@fabrikam.example",
            "https://login.fabrikam.example",
            ALICE_SUBJECT,
            &dave,
        ),
        ("bob@fabrikam.example", "mail", "bob@fabrikam.example", &erin),
    ] {
        let by_mail = store.user_by_mail("t1", mail).await.unwrap().unwrap();
        assert_eq!((by_mail.value.user.id, by_mail.version), (holder.user.id, 1));
        let by_identity = store
            .user_by_identity("t1", issuer, subject)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_identity.value.user.id, holder.user.id);
    }
    let users: Vec<Id> = store
        .users("t1")
        .await
        .unwrap()
        .iter()
        .map(|u| u.user.id)
        .collect();
    assert_eq!(users, [dave.user.id, erin.user.id]);
    assert!(
        store
            .invitation(s.bob_invitation.invitation.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.flow_by_id("t1", s.bob_flow.id).await.unwrap().is_none());
    assert_eq!(
        store
            .flow_by_id("t1", s.sign_up.id)
            .await
            .unwrap()
            .map(|v| v.version),
        Some(1),
        "a sign-up flow stays"
    );

    // What a batch writes for the user it deletes goes with it.
    let added = invitation("t2", 12, &s.other_alice);
    let added_flow = redemption_flow("t2", 12, &added);
    store
        .commit(
            WriteBatch::new()
                .with(Write::Invitation {
                    record: added.clone(),
                    expect: Expect::Absent,
                })
                .with(Write::Flow {
                    record: added_flow.clone(),
                    expect: Expect::Absent,
                })
                .with(delete_user("t2", &s.other_alice, Expect::Version(1))),
        )
        .await
        .expect("a batch writing for the user it deletes commits");
    assert!(store.user("t2", s.other_alice.user.id).await.unwrap().is_none());
    for i in [&added, &s.other_invitation] {
        assert!(
            store.invitation(i.invitation.id).await.unwrap().is_none(),
            "invitation {} went with its user",
            i.invitation.id
        );
    }
    assert!(store.flow("t2", &added_flow.handle_hash).await.unwrap().is_none());
}

/// [`RACERS`] tasks delete one user from the same version: exactly one
/// succeeds, the others conflict. Then half of the racers delete another
/// user and half update it, from one version: exactly one wins, and the
/// store holds its outcome.
pub async fn racing_deletes_have_one_winner(store: Arc<dyn DirectoryStore>) {
    let s = seed_for_deletion(store.as_ref()).await;
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = store.clone();
        let batch = WriteBatch::new().with(delete_user("t1", &s.alice, Expect::Version(1)));
        tasks.push(tokio::spawn(async move { store.commit(batch).await }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::Conflict { record: "user", .. }) => {}
            Err(e) => panic!("unexpected error from a racing deletion: {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one racing deletion succeeds");
    assert!(store.user("t1", s.alice.user.id).await.unwrap().is_none());
    assert!(
        store
            .invitation(s.alice_invitations[0].invitation.id)
            .await
            .unwrap()
            .is_none()
    );

    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = store.clone();
        let batch = if i % 2 == 0 {
            WriteBatch::new().with(delete_user("t1", &s.bob, Expect::Version(1)))
        } else {
            let mut next = s.bob.clone();
            next.user.display_name = Some(format!("racer {i}"));
            put_user(next, Expect::Version(1))
        };
        tasks.push(tokio::spawn(async move { store.commit(batch).await }));
    }
    let mut wins = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => wins.push(i),
            Err(StoreError::Conflict { record: "user", .. }) => {}
            Err(e) => panic!("unexpected error from a racing deletion or update: {e}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one of deletions and updates wins");
    let bob = store.user("t1", s.bob.user.id).await.unwrap();
    let invitation = store.invitation(s.bob_invitation.invitation.id).await.unwrap();
    if wins[0] % 2 == 0 {
        assert!(bob.is_none() && invitation.is_none(), "the deletion won");
    } else {
        let bob = bob.expect("the update won");
        assert_eq!(bob.version, 2);
        assert_eq!(bob.value.user.display_name, Some(format!("racer {}", wins[0])));
        assert_eq!(invitation.map(|v| v.version), Some(1));
    }
}
