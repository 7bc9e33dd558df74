//! The guest user access level (`guestUserAccess`) enforced on directory
//! reads made on behalf of a user: `GuestPass::user_as` and
//! `GuestPass::users_as`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::*;
use guestpass::directory::{DirectoryStore, Expect, ExternalUserState, User, UserType, Write, WriteBatch};
use guestpass::error::{Category, Denied};
use guestpass::id::Id;
use guestpass::policy::{CollaborationSettings, DirectoryEntry, GuestUserAccess, UserProfile};
use guestpass::{Error, Inviter};

const ALICE: &str = "alice@fabrikam.example";
const BOB: &str = "bob@woodgrove.example";
const MEGAN: &str = "megan@contoso.example";

/// A directory of two redeemed guests and a member.
struct Directory {
    h: Harness,
    alice: Id,
    bob: Id,
    megan: Id,
}

impl Directory {
    /// Every user id of the tenant.
    fn everyone(&self) -> BTreeSet<Id> {
        BTreeSet::from([self.alice, self.bob, self.megan])
    }

    /// The user `id` as the service reads it for itself.
    async fn stored(&self, id: Id) -> User {
        self.h.gp.user(id).await.unwrap()
    }
}

fn denied() -> Error {
    Denied::DirectoryReadNotAllowed.into()
}

fn ids(users: &[User]) -> BTreeSet<Id> {
    users.iter().map(|u| u.id).collect()
}

async fn directory(settings: CollaborationSettings) -> Directory {
    let h = Harness::with(|b| b.collaboration(settings).passcode_policy(permissive_policy()));
    let mut guests = Vec::new();
    for email in [ALICE, BOB] {
        let (inv, ticket) = h.invite_with_ticket(email).await;
        let redeemed = h.redeem(&ticket, email).await;
        assert_eq!(redeemed.user.id, inv.invited_user.id);
        assert_eq!(
            redeemed.user.external_user_state,
            Some(ExternalUserState::Accepted)
        );
        assert_eq!(redeemed.user.user_type, UserType::Guest);
        guests.push(inv.invited_user.id);
    }
    let mut member = request(MEGAN);
    member.invited_user_type = Some(UserType::Member);
    let megan = h.invite_request(member).await.unwrap().invited_user.id;
    assert_eq!(h.gp.user(megan).await.unwrap().user_type, UserType::Member);
    Directory {
        h,
        alice: guests[0],
        bob: guests[1],
        megan,
    }
}

async fn at_level(level: GuestUserAccess) -> Directory {
    directory(CollaborationSettings {
        guest_user_access: level,
        ..Default::default()
    })
    .await
}

/// An id no user of the tenant has.
fn unknown() -> Id {
    Id::from_bytes([0xee; 16])
}

#[tokio::test]
async fn guests_with_member_access_read_and_list_everything() {
    let d = at_level(GuestUserAccess::SameAsMembers).await;
    let gp = &d.h.gp;
    for target in [d.alice, d.bob, d.megan] {
        assert_eq!(
            gp.user_as(d.alice, target).await.unwrap(),
            DirectoryEntry::Full(d.stored(target).await),
        );
    }
    assert_eq!(ids(&gp.users_as(d.alice).await.unwrap()), d.everyone());
    assert_eq!(
        gp.user_as(d.alice, unknown()).await,
        Err(Error::NotFound { what: "user" })
    );
}

#[tokio::test]
async fn limited_guests_read_basic_profiles_by_id_and_may_not_list() {
    let d = at_level(GuestUserAccess::Limited).await;
    let gp = &d.h.gp;
    // Itself: the whole object.
    assert_eq!(
        gp.user_as(d.alice, d.alice).await.unwrap(),
        DirectoryEntry::Full(d.stored(d.alice).await)
    );
    // Another guest and a member: their basic profile only.
    for target in [d.bob, d.megan] {
        let entry = gp.user_as(d.alice, target).await.unwrap();
        let stored = d.stored(target).await;
        assert_eq!(entry, DirectoryEntry::Profile(UserProfile::from(&stored)));
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["id"], target.to_string());
        assert!(json.get("identities").is_none(), "{json}");
        assert!(json.get("accountEnabled").is_none(), "{json}");
    }
    let DirectoryEntry::Profile(bob) = gp.user_as(d.alice, d.bob).await.unwrap() else {
        panic!("not a profile");
    };
    assert_eq!(bob.mail.unwrap().as_str(), BOB);
    assert_eq!(bob.user_type, UserType::Guest);
    // No enumeration.
    assert_eq!(gp.users_as(d.alice).await, Err(denied()));
    // An unknown id answers as the service's own read does.
    let unknown_error = gp.user(unknown()).await.unwrap_err();
    assert_eq!(unknown_error, Error::NotFound { what: "user" });
    assert_eq!(gp.user_as(d.alice, unknown()).await, Err(unknown_error));
}

#[tokio::test]
async fn restricted_guests_see_only_themselves() {
    let d = at_level(GuestUserAccess::Restricted).await;
    let gp = &d.h.gp;
    assert_eq!(
        gp.user_as(d.bob, d.bob).await.unwrap(),
        DirectoryEntry::Full(d.stored(d.bob).await)
    );
    for target in [d.alice, d.megan] {
        assert_eq!(gp.user_as(d.bob, target).await, Err(denied()));
    }
    // An unknown id is refused like a known one: nothing to learn.
    assert_eq!(gp.user_as(d.bob, unknown()).await, Err(denied()));
    assert_eq!(gp.users_as(d.bob).await, Err(denied()));
    let e = gp.users_as(d.bob).await.unwrap_err();
    assert_eq!(e.category(), Category::Forbidden);
    assert_eq!(e.status().as_u16(), 403);
    assert_eq!(
        e.to_string(),
        "the guest user access level does not allow this directory read"
    );
}

#[tokio::test]
async fn members_read_and_list_everything_at_every_level() {
    for level in GuestUserAccess::ALL {
        let d = at_level(level).await;
        let gp = &d.h.gp;
        let listed = gp.users_as(d.megan).await.unwrap();
        assert_eq!(ids(&listed), d.everyone(), "{level:?}");
        assert_eq!(listed, gp.users().await.unwrap(), "{level:?}");
        for target in [d.alice, d.bob, d.megan] {
            assert_eq!(
                gp.user_as(d.megan, target).await.unwrap(),
                DirectoryEntry::Full(d.stored(target).await),
                "{level:?}"
            );
        }
        assert_eq!(
            gp.user_as(d.megan, unknown()).await,
            Err(Error::NotFound { what: "user" }),
            "{level:?}"
        );
    }
}

#[tokio::test]
async fn unknown_and_other_tenant_viewers_read_nothing() {
    let d = at_level(GuestUserAccess::SameAsMembers).await;
    let gp = &d.h.gp;
    assert_eq!(gp.user_as(unknown(), d.alice).await, Err(denied()));
    assert_eq!(gp.user_as(unknown(), unknown()).await, Err(denied()));
    assert_eq!(gp.users_as(unknown()).await, Err(denied()));
    // A member of another tenant sharing the store is no viewer here.
    let other = d.h.other_tenant();
    let mut member = request("nestor@fabrikam.example");
    member.invited_user_type = Some(UserType::Member);
    let nestor = other
        .invite(&Inviter::admin(None), member)
        .await
        .unwrap()
        .invited_user
        .id;
    assert!(other.users_as(nestor).await.is_ok());
    assert_eq!(gp.user_as(nestor, d.alice).await, Err(denied()));
    assert_eq!(gp.users_as(nestor).await, Err(denied()));
    // Nor does a viewer here read the other tenant's users.
    assert_eq!(
        gp.user_as(d.megan, nestor).await,
        Err(Error::NotFound { what: "user" })
    );
}

#[tokio::test]
async fn disabled_viewers_read_nothing_not_even_themselves() {
    let d = at_level(GuestUserAccess::SameAsMembers).await;
    for viewer in [d.alice, d.megan] {
        let record = d.h.user(viewer).await;
        let mut disabled = record.value.clone();
        disabled.user.account_enabled = false;
        d.h.store
            .commit(WriteBatch::new().with(Write::User {
                record: disabled,
                expect: Expect::Version(record.version),
            }))
            .await
            .unwrap();
        let gp = &d.h.gp;
        assert_eq!(gp.user_as(viewer, viewer).await, Err(denied()));
        assert_eq!(gp.user_as(viewer, d.bob).await, Err(denied()));
        assert_eq!(gp.users_as(viewer).await, Err(denied()));
    }
    // The others still read.
    assert_eq!(ids(&d.h.gp.users_as(d.bob).await.unwrap()), d.everyone());
}

#[tokio::test]
async fn the_level_read_from_settings_documents_takes_effect() {
    let read = |json: &str| CollaborationSettings::from_json(json).unwrap();

    let restricted = directory(read(r#"{"guestUserAccess": "restricted"}"#)).await;
    assert_eq!(
        restricted.h.gp.config().collaboration().guest_user_access,
        GuestUserAccess::Restricted
    );
    let gp = &restricted.h.gp;
    assert_eq!(gp.user_as(restricted.alice, restricted.bob).await, Err(denied()));

    let same = directory(read(r#"{"guestUserAccess": "sameAsMembers"}"#)).await;
    let gp = &same.h.gp;
    assert!(matches!(
        gp.user_as(same.alice, same.bob).await.unwrap(),
        DirectoryEntry::Full(_)
    ));
    assert_eq!(ids(&gp.users_as(same.alice).await.unwrap()), same.everyone());

    // Left out: Entra's default, limited.
    let default = directory(read("{}")).await;
    let gp = &default.h.gp;
    assert!(matches!(
        gp.user_as(default.alice, default.bob).await.unwrap(),
        DirectoryEntry::Profile(_)
    ));
    assert_eq!(gp.users_as(default.alice).await, Err(denied()));

    // The TOML form reads the same.
    let toml = CollaborationSettings::from_toml(r#"guestUserAccess = "restricted""#).unwrap();
    assert_eq!(toml, read(r#"{"guestUserAccess": "restricted"}"#));
}
