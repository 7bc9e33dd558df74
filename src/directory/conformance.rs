//! The store conformance suite (feature `conformance`).
//!
//! Every [`DirectoryStore`] adapter must keep the guarantees the core relies
//! on: conditional, all-or-nothing batches; unique mail and identities per
//! tenant; unique flow handles; tenant isolation; and exactly one winner
//! when writers race. This
//! module checks them against any store, so the memory store and every
//! database adapter run the same tests:
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
    RedemptionRecords, RedemptionSession, SessionStep, SignInType, User, UserRecord, UserType, Write,
    WriteBatch,
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
            attributes: Default::default(),
        },
        tenant_id: tenant.to_owned(),
        active_invitation: None,
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
}

/// Every record kind reads back as written, at version 1, then 2.
pub async fn records_round_trip(store: Arc<dyn DirectoryStore>) {
    let u = user("t1", 1, "alice");
    let inv = invitation("t1", 1, &u);
    let session = RedemptionSession {
        handle_hash: Digest::sha256(b"handle"),
        tenant_id: "t1".into(),
        invitation_id: inv.invitation.id,
        user_id: u.user.id,
        verifier_hash: Digest::sha256(b"verifier"),
        step: SessionStep::AwaitingPasscode,
        passcode_id: Some(id(7)),
        proven_address: None,
        created_at: T0,
        expires_at: T0 + time::Duration::hours(1),
    };
    let passcode = PasscodeRecord {
        id: id(7),
        bound_to: session.handle_hash,
        address_key: "alice@fabrikam.example".into(),
        code_hash: Digest::sha256(b"code"),
        attempts: 0,
        consumed: false,
        issued_at: T0,
        expires_at: T0 + time::Duration::minutes(10),
    };
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
        .with(Write::Session {
            record: session.clone(),
            expect: Expect::Absent,
        })
        .with(Write::Passcode {
            record: passcode.clone(),
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
        .session(&session.handle_hash)
        .await
        .unwrap()
        .expect("session reads back");
    assert_eq!((got.value, got.version), (session, 1));
    let got = store
        .passcode(passcode.id)
        .await
        .unwrap()
        .expect("passcode reads back");
    assert_eq!((got.value, got.version), (passcode.clone(), 1));
    let got = store
        .throttle("t1", "alice@fabrikam.example")
        .await
        .unwrap()
        .expect("throttle reads back");
    assert_eq!((got.value, got.version), (throttle, 1));
    assert!(store.user("t1", id(99)).await.unwrap().is_none());
    assert!(store.passcode(id(99)).await.unwrap().is_none());

    let mut used = passcode;
    used.consumed = true;
    store
        .commit(WriteBatch::new().with(Write::Passcode {
            record: used.clone(),
            expect: Expect::Version(1),
        }))
        .await
        .expect("update at the current version commits");
    let got = store.passcode(used.id).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (used, 2));

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
        .with(Write::Passcode {
            record: PasscodeRecord {
                id: id(9),
                bound_to: Digest::sha256(b"x"),
                address_key: "alice@fabrikam.example".into(),
                code_hash: Digest::sha256(b"y"),
                attempts: 0,
                consumed: false,
                issued_at: T0,
                expires_at: T0,
            },
            expect: Expect::Version(4),
        });
    assert!(store.commit(batch).await.is_err());
    assert!(
        store.invitation(inv.invitation.id).await.unwrap().is_none(),
        "insert rolled back"
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

/// `purge_expired` removes expired sessions and passcodes and clears expired
/// ticket bindings, oldest first and at most `limit` of each kind per call;
/// live records, users and passcode counters stay.
pub async fn purge_is_bounded_and_spares_live_records(store: Arc<dyn DirectoryStore>) {
    use crate::directory::TicketBinding;
    let u = user("t1", 1, "alice");
    let mut batch = WriteBatch::new().with(Write::User {
        record: u.clone(),
        expect: Expect::Absent,
    });
    // Expiries: 3 expired (at T0-3h, -2h, -1h) and 1 live (T0+1h) of each kind.
    let offsets = [-3i64, -2, -1, 1];
    for (i, h) in offsets.iter().enumerate() {
        let at = T0 + time::Duration::hours(*h);
        let n = i as u8;
        batch.push(Write::Session {
            record: RedemptionSession {
                handle_hash: Digest::sha256(&[n]),
                tenant_id: "t1".into(),
                invitation_id: id(100),
                user_id: u.user.id,
                verifier_hash: Digest::sha256(b"v"),
                step: SessionStep::AwaitingPasscode,
                passcode_id: None,
                proven_address: None,
                created_at: T0 - time::Duration::days(1),
                expires_at: at,
            },
            expect: Expect::Absent,
        });
        batch.push(Write::Passcode {
            record: PasscodeRecord {
                id: id(10 + n),
                bound_to: Digest::sha256(&[n]),
                address_key: "alice@fabrikam.example".into(),
                code_hash: Digest::sha256(b"c"),
                attempts: 0,
                consumed: false,
                issued_at: T0 - time::Duration::days(1),
                expires_at: at,
            },
            expect: Expect::Absent,
        });
        let mut inv = invitation("t1", 10 + n, &u);
        inv.ticket = Some(TicketBinding {
            verifier_hash: Digest::sha256(&[n]),
            expires_at: at,
        });
        batch.push(Write::Invitation {
            record: inv,
            expect: Expect::Absent,
        });
    }
    let throttle = AddressThrottle {
        address_key: "alice@fabrikam.example".into(),
        consecutive_failures: 7,
        recent_sends: vec![T0 - time::Duration::days(2)],
    };
    batch.push(Write::Throttle {
        tenant_id: "t1".into(),
        record: throttle.clone(),
        expect: Expect::Absent,
    });
    store.commit(batch).await.unwrap();

    let first = store.purge_expired(T0, 2).await.unwrap();
    assert_eq!(
        first,
        super::PurgeReport {
            sessions: 2,
            passcodes: 2,
            tickets: 2,
            flows: 0,
        },
        "bounded by the limit"
    );
    // The two oldest went first.
    assert!(store.session(&Digest::sha256(&[0])).await.unwrap().is_none());
    assert!(store.session(&Digest::sha256(&[1])).await.unwrap().is_none());
    assert!(store.session(&Digest::sha256(&[2])).await.unwrap().is_some());
    assert!(store.passcode(id(10)).await.unwrap().is_none());
    assert!(store.passcode(id(12)).await.unwrap().is_some());
    let cleared = store.invitation(id(110)).await.unwrap().unwrap();
    assert_eq!(
        (cleared.value.ticket.clone(), cleared.version),
        (None, 2),
        "binding cleared, version bumped"
    );
    assert_eq!(
        cleared.value.invitation.status,
        InvitationStatus::PendingAcceptance,
        "the invitation stays"
    );

    let second = store.purge_expired(T0, 100).await.unwrap();
    assert_eq!(
        second,
        super::PurgeReport {
            sessions: 1,
            passcodes: 1,
            tickets: 1,
            flows: 0,
        }
    );
    let third = store.purge_expired(T0, 100).await.unwrap();
    assert_eq!(third.total(), 0, "nothing left to purge");

    // Live records, the user and the counters are untouched.
    assert!(store.session(&Digest::sha256(&[3])).await.unwrap().is_some());
    assert!(store.passcode(id(13)).await.unwrap().is_some());
    let live = store.invitation(id(113)).await.unwrap().unwrap();
    assert!(live.value.ticket.is_some() && live.version == 1);
    assert_eq!(store.user("t1", u.user.id).await.unwrap().unwrap().version, 1);
    let t = store
        .throttle("t1", "alice@fabrikam.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.value, t.version), (throttle, 1));
}

fn session_for(tenant: &str, n: u8, inv: &InvitationRecord, passcode: Option<Id>) -> RedemptionSession {
    RedemptionSession {
        handle_hash: Digest::sha256(&[b's', n]),
        tenant_id: tenant.to_owned(),
        invitation_id: inv.invitation.id,
        user_id: inv.invitation.invited_user.id,
        verifier_hash: Digest::sha256(b"verifier"),
        step: SessionStep::AwaitingPasscode,
        passcode_id: passcode,
        proven_address: None,
        created_at: T0,
        expires_at: T0 + time::Duration::hours(1),
    }
}

fn passcode_for(n: u8, address_key: &str) -> PasscodeRecord {
    PasscodeRecord {
        id: id(40 + n),
        bound_to: Digest::sha256(&[b's', n]),
        address_key: address_key.to_owned(),
        code_hash: Digest::sha256(&[b'c', n]),
        attempts: u32::from(n),
        consumed: false,
        issued_at: T0,
        expires_at: T0 + time::Duration::minutes(10),
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

/// What [`DirectoryStore::redemption_by_session`] must return, from the
/// single reads.
async fn expected_by_session(store: &dyn DirectoryStore, tenant: &str, hash: &Digest) -> RedemptionRecords {
    let Some(session) = store.session(hash).await.unwrap() else {
        return RedemptionRecords::default();
    };
    if session.value.tenant_id != tenant {
        return RedemptionRecords::default();
    }
    let mut out = expected_by_invitation(store, tenant, session.value.invitation_id).await;
    if let Some(pid) = session.value.passcode_id {
        out.passcode = store.passcode(pid).await.unwrap();
    }
    if let Some(p) = &out.passcode {
        out.throttle = store.throttle(tenant, &p.value.address_key).await.unwrap();
    }
    out.session = Some(session);
    out
}

/// The joined reads a redemption step makes return exactly what the single
/// reads return: for a live session with its passcode, a session whose
/// passcode is gone, a passcode for an older address, no passcode, another
/// tenant's session and invitation, a missing user, a user without mail,
/// and unknown keys; with versions above 1.
pub async fn joined_reads_match_single_reads(store: Arc<dyn DirectoryStore>) {
    let alice = user("t1", 1, "alice");
    let mut nomail = user("t1", 2, "nomail");
    let inv_nomail = invitation("t1", 2, &nomail);
    nomail.user.mail = None;
    let bob = user("t2", 3, "bob");
    let ghost = user("t1", 4, "ghost"); // never stored
    let inv_alice = invitation("t1", 1, &alice);
    let inv_bob = invitation("t2", 3, &bob);
    let inv_ghost = invitation("t1", 4, &ghost);
    let sessions = [
        session_for("t1", 1, &inv_alice, Some(id(41))), // its passcode, alice's address
        session_for("t1", 2, &inv_alice, Some(id(60))), // passcode gone
        session_for("t1", 3, &inv_alice, Some(id(43))), // passcode for an older address
        session_for("t1", 4, &inv_alice, None),
        session_for("t2", 5, &inv_alice, Some(id(41))), // another tenant's session
        session_for("t1", 6, &inv_bob, None),           // another tenant's invitation
        session_for("t1", 7, &inv_ghost, None),         // the user is missing
        session_for("t1", 8, &inv_nomail, None),        // a user without mail
    ];
    let mut batch = WriteBatch::new();
    for u in [&alice, &nomail, &bob] {
        batch.push(Write::User {
            record: u.clone(),
            expect: Expect::Absent,
        });
    }
    for i in [&inv_alice, &inv_nomail, &inv_bob, &inv_ghost] {
        batch.push(Write::Invitation {
            record: i.clone(),
            expect: Expect::Absent,
        });
    }
    for s in &sessions {
        batch.push(Write::Session {
            record: s.clone(),
            expect: Expect::Absent,
        });
    }
    for p in [
        passcode_for(1, "alice@fabrikam.example"),
        passcode_for(3, "old@fabrikam.example"),
    ] {
        batch.push(Write::Passcode {
            record: p,
            expect: Expect::Absent,
        });
    }
    for (tenant, key, n) in [
        ("t1", "alice@fabrikam.example", 1),
        ("t1", "old@fabrikam.example", 2),
        ("t2", "bob@fabrikam.example", 3),
        ("t2", "alice@fabrikam.example", 4),
    ] {
        batch.push(Write::Throttle {
            tenant_id: tenant.into(),
            record: throttle_for(key, n),
            expect: Expect::Absent,
        });
    }
    store.commit(batch).await.unwrap();
    // Versions above 1, so a read that mixes up columns shows.
    let mut alice2 = alice.clone();
    alice2.user.display_name = Some("Alice".into());
    store.commit(put_user(alice2, Expect::Version(1))).await.unwrap();
    store
        .commit(WriteBatch::new().with(Write::Throttle {
            tenant_id: "t1".into(),
            record: throttle_for("alice@fabrikam.example", 9),
            expect: Expect::Version(1),
        }))
        .await
        .unwrap();

    for inv in [&inv_alice, &inv_nomail, &inv_bob, &inv_ghost] {
        let id = inv.invitation.id;
        for tenant in ["t1", "t2"] {
            let got = store.redemption_by_invitation(tenant, id).await.unwrap();
            let want = expected_by_invitation(store.as_ref(), tenant, id).await;
            assert_eq!(got, want, "redemption_by_invitation({tenant}, {id})");
        }
    }
    let live = store
        .redemption_by_invitation("t1", inv_alice.invitation.id)
        .await
        .unwrap();
    assert_eq!(
        (live.user.map(|u| u.version), live.throttle.map(|t| t.version)),
        (Some(2), Some(2)),
        "the invitation's user and counters, at their versions"
    );
    let unknown = store.redemption_by_invitation("t1", id(99)).await.unwrap();
    assert_eq!(unknown, RedemptionRecords::default(), "an unknown invitation");

    for s in &sessions {
        for tenant in ["t1", "t2"] {
            let got = store.redemption_by_session(tenant, &s.handle_hash).await.unwrap();
            let want = expected_by_session(store.as_ref(), tenant, &s.handle_hash).await;
            assert_eq!(
                got,
                want,
                "redemption_by_session({tenant}, {})",
                s.handle_hash.to_hex()
            );
        }
    }
    let older = store
        .redemption_by_session("t1", &sessions[2].handle_hash)
        .await
        .unwrap();
    assert_eq!(
        older.throttle.map(|t| t.value.address_key),
        Some("old@fabrikam.example".to_owned()),
        "the counters of the passcode's address"
    );
    let foreign = store
        .redemption_by_session("t2", &sessions[0].handle_hash)
        .await
        .unwrap();
    assert_eq!(foreign, RedemptionRecords::default(), "another tenant's session");
    let unknown = store
        .redemption_by_session("t1", &Digest::sha256(b"nope"))
        .await
        .unwrap();
    assert_eq!(unknown, RedemptionRecords::default(), "an unknown session");
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

/// [`RACERS`] tasks each complete one redemption shape (user, invitation
/// and session from the versions they read): exactly one completes, and the
/// directory ends with one identity.
pub async fn racing_redemptions_have_one_winner(store: Arc<dyn DirectoryStore>) {
    let mut u = user("t1", 1, "alice");
    let inv = invitation("t1", 1, &u);
    u.active_invitation = Some(inv.invitation.id);
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
                }),
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = store.clone();
        let mut nu = u.clone();
        nu.active_invitation = None;
        nu.user.external_user_state = Some(ExternalUserState::Accepted);
        nu.user
            .identities
            .push(identity("mail", "alice@fabrikam.example"));
        let mut ni = inv.clone();
        ni.invitation.status = InvitationStatus::Completed;
        let session = RedemptionSession {
            handle_hash: Digest::sha256(format!("h{i}").as_bytes()),
            tenant_id: "t1".into(),
            invitation_id: inv.invitation.id,
            user_id: u.user.id,
            verifier_hash: Digest::sha256(b"v"),
            step: SessionStep::Completed,
            passcode_id: None,
            proven_address: Some("alice@fabrikam.example".into()),
            created_at: T0,
            expires_at: T0,
        };
        tasks.push(tokio::spawn(async move {
            store
                .commit(
                    WriteBatch::new()
                        .with(Write::Session {
                            record: session,
                            expect: Expect::Absent,
                        })
                        .with(Write::User {
                            record: nu,
                            expect: Expect::Version(1),
                        })
                        .with(Write::Invitation {
                            record: ni,
                            expect: Expect::Version(1),
                        }),
                )
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1, "exactly one redemption completes");
    let got = store.user("t1", u.user.id).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.value.user.identities.len(), 1);
    let mut sessions = 0;
    for i in 0..RACERS {
        if store
            .session(&Digest::sha256(format!("h{i}").as_bytes()))
            .await
            .unwrap()
            .is_some()
        {
            sessions += 1;
        }
    }
    assert_eq!(
        sessions, 1,
        "the losers' session inserts were rolled back with them"
    );
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
        nonce: Some(format!("nonce-{n}")),
        app_state: None,
        ui_locales: Some("fr-CA en".to_owned()),
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
