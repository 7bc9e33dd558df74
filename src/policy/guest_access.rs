//! Directory reads under the guest user access level (`guestUserAccess`):
//! what a viewer may see of the directory's users
//! ([`GuestUserAccess::visibility`]).

use serde::{Deserialize, Serialize};

use super::collaboration::GuestUserAccess;
use crate::directory::{User, UserType};
use crate::email::EmailAddress;
use crate::id::Id;

/// A read of the directory's users, as the guest user access level judges
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirectoryRead {
    /// Listing (enumerating) the users.
    List,
    /// Reading one user by its id.
    User {
        /// The id of the user read.
        target: Id,
    },
}

/// How much of the directory a read may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// The whole object (for a list: every user, whole).
    Full,
    /// The user's [`UserProfile`] only.
    BasicProfile,
    /// Nothing: the read is refused.
    Denied,
}

impl GuestUserAccess {
    /// What `viewer` may see of `read` under this level.
    ///
    /// | viewer                     | itself | another user  | list of users |
    /// |----------------------------|--------|---------------|---------------|
    /// | member                     | full   | full          | full          |
    /// | guest, `sameAsMembers`     | full   | full          | full          |
    /// | guest, `limited` (default) | full   | basic profile | denied        |
    /// | guest, `restricted`        | full   | denied        | denied        |
    /// | disabled account (any)     | denied | denied        | denied        |
    ///
    /// A *limited* guest reads another user's [`UserProfile`] when it knows the
    /// user's id, but may not enumerate the directory; a *restricted* guest sees
    /// only its own user object. A disabled account may not sign in, so it has
    /// no session to read with: every read of a disabled viewer is denied, its
    /// own object included, whatever its user type.
    ///
    /// The answer never depends on whether the target exists, so a refused
    /// read reveals nothing about the directory.
    ///
    /// ```
    /// use guestpass::policy::{DirectoryRead, GuestUserAccess, Visibility};
    /// # use guestpass::directory::{User, UserType};
    /// # fn user(id: &str, user_type: UserType) -> User {
    /// #     serde_json::from_value(serde_json::json!({
    /// #         "id": id, "userType": user_type, "externalUserState": null,
    /// #         "externalUserStateChangeDateTime": null, "creationType": null,
    /// #         "identities": [], "mail": null, "otherMails": [], "displayName": null,
    /// #         "userPrincipalName": "x", "accountEnabled": true, "sponsors": [],
    /// #         "createdDateTime": "2026-11-01T12:00:00Z",
    /// #     })).unwrap()
    /// # }
    /// let guest = user("0f8fad5b-d9cb-469f-a165-70867728950e", UserType::Guest);
    /// let other = "7c9e6679-7425-40de-944b-e07fc1f90ae7".parse().unwrap();
    /// let level = GuestUserAccess::Limited;
    /// assert_eq!(level.visibility(&guest, DirectoryRead::User { target: guest.id }), Visibility::Full);
    /// assert_eq!(level.visibility(&guest, DirectoryRead::User { target: other }), Visibility::BasicProfile);
    /// assert_eq!(level.visibility(&guest, DirectoryRead::List), Visibility::Denied);
    /// ```
    pub fn visibility(self, viewer: &User, read: DirectoryRead) -> Visibility {
        if !viewer.account_enabled {
            return Visibility::Denied;
        }
        if viewer.user_type == UserType::Member {
            return Visibility::Full;
        }
        match (self, read) {
            (_, DirectoryRead::User { target }) if target == viewer.id => Visibility::Full,
            (GuestUserAccess::SameAsMembers, _) => Visibility::Full,
            (GuestUserAccess::Limited, DirectoryRead::User { .. }) => Visibility::BasicProfile,
            (GuestUserAccess::Limited, DirectoryRead::List) | (GuestUserAccess::Restricted, _) => {
                Visibility::Denied
            }
        }
    }
}

/// The basic profile of a user, what a guest with limited access reads of
/// other users: serialized in Graph's names (`id`, `displayName`, `mail`,
/// `userPrincipalName`, `userType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    /// The object id.
    pub id: Id,
    /// Display name.
    pub display_name: Option<String>,
    /// The primary mail address.
    pub mail: Option<EmailAddress>,
    /// The user principal name.
    pub user_principal_name: String,
    /// Member or guest.
    pub user_type: UserType,
}

impl From<&User> for UserProfile {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            display_name: u.display_name.clone(),
            mail: u.mail.clone(),
            user_principal_name: u.user_principal_name.clone(),
            user_type: u.user_type,
        }
    }
}

/// A user as a viewer may see it: the whole object, or its basic profile.
///
/// Serializes as the JSON of the object it holds (a Graph `user`, or the
/// [`UserProfile`] fields), without a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DirectoryEntry {
    /// The whole user ([`Visibility::Full`]).
    Full(User),
    /// The basic profile only ([`Visibility::BasicProfile`]).
    Profile(UserProfile),
}

impl DirectoryEntry {
    /// The user's id.
    pub fn id(&self) -> Id {
        match self {
            DirectoryEntry::Full(u) => u.id,
            DirectoryEntry::Profile(p) => p.id,
        }
    }

    /// The user's basic profile (taken from the whole user when full).
    pub fn profile(&self) -> UserProfile {
        match self {
            DirectoryEntry::Full(u) => UserProfile::from(u),
            DirectoryEntry::Profile(p) => p.clone(),
        }
    }

    /// The whole user, if this entry holds it.
    pub fn full(&self) -> Option<&User> {
        match self {
            DirectoryEntry::Full(u) => Some(u),
            DirectoryEntry::Profile(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::macros::datetime;

    use super::*;
    use crate::directory::ExternalUserState;

    fn id(n: u8) -> Id {
        Id::from_bytes([n; 16])
    }

    fn user(n: u8, user_type: UserType) -> User {
        User {
            id: id(n),
            user_type,
            external_user_state: Some(ExternalUserState::Accepted),
            external_user_state_change_date_time: None,
            creation_type: None,
            identities: Vec::new(),
            mail: Some(EmailAddress::parse(&format!("user{n}@fabrikam.example")).unwrap()),
            other_mails: Vec::new(),
            display_name: Some(format!("User {n}")),
            user_principal_name: format!("user{n}_fabrikam.example#EXT#@contoso.example"),
            account_enabled: true,
            sponsors: Vec::new(),
            created_date_time: datetime!(2026-11-01 12:00 UTC),
            agreement_acceptances: Vec::new(),
            attributes: BTreeMap::from([("city".to_owned(), serde_json::json!("Utrecht"))]),
        }
    }

    fn disabled(mut u: User) -> User {
        u.account_enabled = false;
        u
    }

    /// The visibility of: self, another user, the list.
    fn row(level: GuestUserAccess, viewer: &User) -> [Visibility; 3] {
        [
            level.visibility(viewer, DirectoryRead::User { target: viewer.id }),
            level.visibility(viewer, DirectoryRead::User { target: id(99) }),
            level.visibility(viewer, DirectoryRead::List),
        ]
    }

    use Visibility::{BasicProfile, Denied, Full};

    #[test]
    fn members_read_everything_at_every_level() {
        let member = user(1, UserType::Member);
        for level in GuestUserAccess::ALL {
            assert_eq!(row(level, &member), [Full, Full, Full], "{level:?}");
        }
    }

    #[test]
    fn guests_read_as_their_level_says() {
        let guest = user(2, UserType::Guest);
        assert_eq!(row(GuestUserAccess::SameAsMembers, &guest), [Full, Full, Full]);
        assert_eq!(
            row(GuestUserAccess::Limited, &guest),
            [Full, BasicProfile, Denied]
        );
        assert_eq!(row(GuestUserAccess::Restricted, &guest), [Full, Denied, Denied]);
    }

    #[test]
    fn the_default_level_is_limited() {
        let guest = user(2, UserType::Guest);
        assert_eq!(
            row(GuestUserAccess::default(), &guest),
            [Full, BasicProfile, Denied]
        );
    }

    #[test]
    fn disabled_viewers_read_nothing_at_every_level() {
        for viewer in [
            disabled(user(1, UserType::Member)),
            disabled(user(2, UserType::Guest)),
        ] {
            for level in GuestUserAccess::ALL {
                assert_eq!(
                    row(level, &viewer),
                    [Denied, Denied, Denied],
                    "{level:?} {:?}",
                    viewer.user_type
                );
            }
        }
    }

    #[test]
    fn reading_a_member_or_a_guest_is_judged_alike() {
        // The level looks at the viewer, never at the target's type: a
        // restricted guest reading a member is refused like any other read.
        let guest = user(2, UserType::Guest);
        let member = user(1, UserType::Member);
        let read = DirectoryRead::User { target: member.id };
        assert_eq!(GuestUserAccess::Restricted.visibility(&guest, read), Denied);
        assert_eq!(GuestUserAccess::Limited.visibility(&guest, read), BasicProfile);
    }

    #[test]
    fn the_profile_holds_the_basic_fields_in_graph_names() {
        let u = user(3, UserType::Guest);
        let p = UserProfile::from(&u);
        assert_eq!(p.id, u.id);
        assert_eq!(p.display_name.as_deref(), Some("User 3"));
        assert_eq!(p.mail, u.mail);
        assert_eq!(p.user_principal_name, u.user_principal_name);
        assert_eq!(p.user_type, UserType::Guest);
        let json = serde_json::to_value(&p).unwrap();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["displayName", "id", "mail", "userPrincipalName", "userType"]
        );
        assert_eq!(json["userType"], "Guest");
        assert_eq!(json["mail"], "user3@fabrikam.example");
        assert_eq!(serde_json::from_value::<UserProfile>(json).unwrap(), p);
    }

    #[test]
    fn entries_serialize_as_what_they_hold() {
        let u = user(4, UserType::Guest);
        let full = DirectoryEntry::Full(u.clone());
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            serde_json::to_value(&u).unwrap()
        );
        assert_eq!(full.id(), u.id);
        assert_eq!(full.full(), Some(&u));
        let profile = DirectoryEntry::Profile(UserProfile::from(&u));
        let json = serde_json::to_value(&profile).unwrap();
        assert_eq!(json["displayName"], "User 4");
        assert!(json.get("city").is_none(), "{json}");
        assert!(json.get("identities").is_none(), "{json}");
        assert_eq!(profile.full(), None);
        assert_eq!(profile.profile(), full.profile());
    }
}
