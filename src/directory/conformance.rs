//! The store conformance suite (feature `conformance`).
//!
//! Every [`DirectoryStore`] adapter must keep the guarantees the core relies
//! on: conditional, all-or-nothing batches; unique mail and identities per
//! tenant; tenant isolation; and exactly one winner when writers race. This
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

use std::future::Future;
use std::sync::Arc;

use time::OffsetDateTime;
use time::macros::datetime;

use super::{
    AddressThrottle, CreationType, DirectoryStore, Expect, ExternalUserState, Invitation, InvitationRecord,
    InvitationStatus, InvitedUserMessageInfo, ObjectIdentity, ObjectRef, PasscodeRecord, RedemptionRecords,
    RedemptionSession, SessionStep, SignInType, User, UserRecord, UserType, Write, WriteBatch,
};
use crate::email::EmailAddress;
use crate::error::StoreError;
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
            tickets: 2
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
            tickets: 1
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
