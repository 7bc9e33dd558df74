//! The body of `PATCH /v1.0/users/{id}`.
//!
//! Only a small, documented set of properties is writable
//! ([`WRITABLE_PROPERTIES`]):
//!
//! - `displayName`: a string, 1 to 256 characters after trimming, no
//!   control characters; `null` is refused (Graph: it cannot be cleared).
//! - `accountEnabled`: a boolean.
//! - `userType`: `"Guest"` or `"Member"`.
//! - the profile attributes `givenName`, `surname`, `jobTitle`,
//!   `streetAddress`, `city`, `state`, `postalCode`, `country`: a string
//!   (trimmed, not empty, at most the directory's length for the property,
//!   no control characters) or `null` to clear it.
//!
//! Everything that binds a user to the person who redeemed (`mail`,
//! `otherMails`, `identities`, `userPrincipalName`) and every read-only
//! property is refused with a 400 naming it, and so is any unknown property,
//! a property given twice, or a value of the wrong type. Nothing is applied
//! unless the whole body is valid.
//!
//! ```
//! use guestpass::graph::users::UserPatch;
//!
//! let patch = UserPatch::parse(br#"{"displayName": "Alice Smith", "surname": null}"#)?;
//! assert_eq!(patch.display_name(), Some("Alice Smith"));
//! assert_eq!(patch.properties(), ["displayName", "surname"]);
//!
//! let e = UserPatch::parse(br#"{"mail": "eve@evil.example"}"#).unwrap_err();
//! assert_eq!(e.message, "property `mail` of type `user` cannot be changed here");
//! # Ok::<(), guestpass::graph::GraphError>(())
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

use crate::directory::{User, UserType};
use crate::flow::attributes::BuiltInAttribute;
use crate::graph::odata::{USER_PROFILE_PROPERTIES, canonical_property};
use crate::graph::{GraphError, check_odata_type, object_members, quote};
use crate::invitation::MAX_DISPLAY_NAME_CHARS;

/// Largest `PATCH /users/{id}` body, in bytes.
pub const MAX_USER_PATCH_BODY_BYTES: usize = 32 * 1024;

/// The properties `PATCH /users/{id}` may set.
pub const WRITABLE_PROPERTIES: [&str; 11] = [
    "displayName",
    "accountEnabled",
    "userType",
    "givenName",
    "surname",
    "jobTitle",
    "streetAddress",
    "city",
    "state",
    "postalCode",
    "country",
];

/// Graph's read-only `user` properties.
const READ_ONLY: [&str; 5] = [
    "id",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "creationType",
    "createdDateTime",
];

/// A validated `PATCH /users/{id}` body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPatch {
    display_name: Option<String>,
    account_enabled: Option<bool>,
    user_type: Option<UserType>,
    /// Profile attribute → new value (`None`: clear it).
    profile: BTreeMap<&'static str, Option<String>>,
}

fn invalid(name: &str, what: impl std::fmt::Display) -> GraphError {
    GraphError::bad_request(format!("property `{name}` {what}"))
}

fn text(name: &'static str, value: &Value, max: usize) -> Result<String, GraphError> {
    let Value::String(s) = value else {
        return Err(invalid(name, "must be a string"));
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(invalid(name, "must not be empty"));
    }
    if s.chars().count() > max {
        return Err(invalid(name, format_args!("must be at most {max} characters")));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(invalid(
            name,
            format_args!("must not contain the control character `{}`", c.escape_default()),
        ));
    }
    Ok(s.to_owned())
}

impl UserPatch {
    /// Validates a `PATCH /users/{id}` body (at most
    /// [`MAX_USER_PATCH_BODY_BYTES`]). `{}` is a valid patch that changes
    /// nothing. An `@odata.type` of `#microsoft.graph.user` is accepted
    /// and ignored.
    ///
    /// # Errors
    ///
    /// 413 for a body over the limit; 400 `Request_BadRequest` naming the
    /// property that is unknown, not writable, given twice or invalid, or
    /// for a body that is not one JSON object.
    pub fn parse(body: &[u8]) -> Result<Self, GraphError> {
        let mut patch = Self::default();
        for (name, raw) in object_members(body, MAX_USER_PATCH_BODY_BYTES)? {
            if name == "@odata.type" {
                check_odata_type(&raw, "#microsoft.graph.user")?;
                continue;
            }
            let value: Value =
                serde_json::from_str(raw.get()).map_err(|_| invalid(&quote(&name), "is not valid JSON"))?;
            match name.as_str() {
                "displayName" => {
                    if value.is_null() {
                        return Err(invalid("displayName", "cannot be cleared"));
                    }
                    patch.display_name = Some(text("displayName", &value, MAX_DISPLAY_NAME_CHARS)?);
                }
                "accountEnabled" => match value {
                    Value::Bool(b) => patch.account_enabled = Some(b),
                    _ => return Err(invalid("accountEnabled", "must be a boolean")),
                },
                "userType" => {
                    patch.user_type = Some(match value.as_str() {
                        Some("Guest") => UserType::Guest,
                        Some("Member") => UserType::Member,
                        _ => return Err(invalid("userType", "must be `Guest` or `Member`")),
                    });
                }
                other => {
                    if let Some(p) = USER_PROFILE_PROPERTIES.iter().copied().find(|p| *p == other) {
                        let max = BuiltInAttribute::from_name(p)
                            .map(|a| a.default_max_length())
                            .and_then(|m| usize::try_from(m).ok())
                            .unwrap_or(64);
                        let v = match value {
                            Value::Null => None,
                            v => Some(text(p, &v, max)?),
                        };
                        patch.profile.insert(p, v);
                    } else {
                        return Err(refused(other));
                    }
                }
            }
        }
        Ok(patch)
    }

    /// The new `displayName`.
    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    /// The new `accountEnabled`.
    pub fn account_enabled(&self) -> Option<bool> {
        self.account_enabled
    }

    /// The new `userType`.
    pub fn user_type(&self) -> Option<UserType> {
        self.user_type
    }

    /// The profile attributes set (`Some`) or cleared (`None`).
    pub fn profile(&self) -> impl Iterator<Item = (&'static str, Option<&str>)> + '_ {
        self.profile.iter().map(|(k, v)| (*k, v.as_deref()))
    }

    /// Whether the patch changes nothing (`{}`).
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none()
            && self.account_enabled.is_none()
            && self.user_type.is_none()
            && self.profile.is_empty()
    }

    /// The properties the patch writes, in [`WRITABLE_PROPERTIES`] order
    /// (for an audit record).
    pub fn properties(&self) -> Vec<&'static str> {
        WRITABLE_PROPERTIES
            .iter()
            .copied()
            .filter(|p| match *p {
                "displayName" => self.display_name.is_some(),
                "accountEnabled" => self.account_enabled.is_some(),
                "userType" => self.user_type.is_some(),
                other => self.profile.contains_key(other),
            })
            .collect()
    }

    /// Writes the patch into `user`.
    pub fn apply(&self, user: &mut User) {
        if let Some(name) = &self.display_name {
            user.display_name = Some(name.clone());
        }
        if let Some(enabled) = self.account_enabled {
            user.account_enabled = enabled;
        }
        if let Some(t) = self.user_type {
            user.user_type = t;
        }
        for (name, value) in &self.profile {
            match value {
                Some(v) => {
                    user.attributes
                        .insert((*name).to_owned(), Value::String(v.clone()));
                }
                None => {
                    user.attributes.remove(*name);
                }
            }
        }
    }
}

/// The 400 for a member that is not writable: read-only, kept out of
/// reach, misspelt, or unknown.
fn refused(name: &str) -> GraphError {
    if READ_ONLY.contains(&name) {
        return invalid(name, "is read-only");
    }
    match canonical_property(name) {
        Some(p) if p == name => {
            GraphError::bad_request(format!("property `{p}` of type `user` cannot be changed here"))
        }
        Some(p) => GraphError::bad_request(format!(
            "property `{}` does not exist on type `user`; did you mean `{p}`?",
            quote(name)
        )),
        None => GraphError::bad_request(format!(
            "property `{}` does not exist on type `user`",
            quote(name)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{CreationType, ExternalUserState};
    use crate::id::Id;
    use crate::random::SeededRandom;
    use time::macros::datetime;

    fn user() -> User {
        let mut attributes = BTreeMap::new();
        attributes.insert("surname".to_owned(), Value::String("Smith".into()));
        attributes.insert("city".to_owned(), Value::String("Bonn".into()));
        User {
            id: Id::random(&SeededRandom::new(1)).unwrap_or_else(|_| Id::from_bytes([1; 16])),
            user_type: UserType::Guest,
            external_user_state: Some(ExternalUserState::Accepted),
            external_user_state_change_date_time: None,
            creation_type: Some(CreationType::Invitation),
            identities: Vec::new(),
            mail: None,
            other_mails: Vec::new(),
            display_name: Some("Alice".into()),
            user_principal_name: "alice_fabrikam.example#EXT#@contoso.example".into(),
            account_enabled: true,
            sponsors: Vec::new(),
            created_date_time: datetime!(2026-03-01 09:00 UTC),
            agreement_acceptances: Vec::new(),
            attributes,
        }
    }

    fn message(body: &str) -> String {
        UserPatch::parse(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn a_valid_patch_applies() {
        let p = UserPatch::parse(
            br##"{"@odata.type": "#microsoft.graph.user", "displayName": "  Alice Smith ",
                 "accountEnabled": false, "userType": "Member", "givenName": "Alice",
                 "surname": null, "city": "K\u00f6ln"}"##,
        )
        .unwrap();
        assert_eq!(
            p.properties(),
            [
                "displayName",
                "accountEnabled",
                "userType",
                "givenName",
                "surname",
                "city"
            ]
        );
        let mut u = user();
        let before = u.clone();
        p.apply(&mut u);
        assert_eq!(u.display_name.as_deref(), Some("Alice Smith"));
        assert!(!u.account_enabled);
        assert_eq!(u.user_type, UserType::Member);
        assert_eq!(
            u.attributes.get("givenName"),
            Some(&Value::String("Alice".into()))
        );
        assert_eq!(u.attributes.get("surname"), None);
        assert_eq!(u.attributes.get("city"), Some(&Value::String("Köln".into())));
        assert_eq!(u.id, before.id);
        assert_eq!(u.user_principal_name, before.user_principal_name);

        let empty = UserPatch::parse(b"{}").unwrap();
        assert!(empty.is_empty());
        let mut u = user();
        empty.apply(&mut u);
        assert_eq!(u, user());
    }

    #[test]
    fn refusals_name_the_property() {
        let cases = [
            (r#"{"foo": 1}"#, "property `foo` does not exist on type `user`"),
            (
                r#"{"DisplayName": "x"}"#,
                "property `DisplayName` does not exist on type `user`; did you mean `displayName`?",
            ),
            (
                r#"{"mail": "eve@evil.example"}"#,
                "property `mail` of type `user` cannot be changed here",
            ),
            (
                r#"{"otherMails": []}"#,
                "property `otherMails` of type `user` cannot be changed here",
            ),
            (
                r#"{"identities": []}"#,
                "property `identities` of type `user` cannot be changed here",
            ),
            (
                r#"{"userPrincipalName": "x"}"#,
                "property `userPrincipalName` of type `user` cannot be changed here",
            ),
            (
                r#"{"id": "0f8fad5b-d9cb-469f-a165-70867728950e"}"#,
                "property `id` is read-only",
            ),
            (
                r#"{"externalUserState": "Accepted"}"#,
                "property `externalUserState` is read-only",
            ),
            (
                r#"{"extension_0f8fad5bd9cb469fa16570867728950e_x": 1}"#,
                "property `extension_0f8fad5bd9cb469fa16570867728950e_x` of type `user` cannot be changed here",
            ),
            (
                r#"{"accountEnabled": "false"}"#,
                "property `accountEnabled` must be a boolean",
            ),
            (
                r#"{"accountEnabled": null}"#,
                "property `accountEnabled` must be a boolean",
            ),
            (r#"{"displayName": 5}"#, "property `displayName` must be a string"),
            (
                r#"{"displayName": null}"#,
                "property `displayName` cannot be cleared",
            ),
            (
                r#"{"displayName": "   "}"#,
                "property `displayName` must not be empty",
            ),
            (
                r#"{"displayName": "a\u0007b"}"#,
                "property `displayName` must not contain the control character `\\u{7}`",
            ),
            (
                r#"{"userType": "guest"}"#,
                "property `userType` must be `Guest` or `Member`",
            ),
            (r#"{"givenName": ""}"#, "property `givenName` must not be empty"),
            (r#"{"givenName": ["a"]}"#, "property `givenName` must be a string"),
            (
                r##"{"@odata.type": "#microsoft.graph.group"}"##,
                "`@odata.type` must be `#microsoft.graph.user`",
            ),
            (r#"{"city": "a", "city": "b"}"#, "property `city` is given twice"),
        ];
        for (body, expected) in cases {
            let e = UserPatch::parse(body.as_bytes()).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (400, "Request_BadRequest"), "{body}");
            assert_eq!(e.message, expected, "{body}");
        }
        let long = format!(r#"{{"surname": "{}"}}"#, "s".repeat(65));
        assert_eq!(message(&long), "property `surname` must be at most 64 characters");
        let ok = format!(r#"{{"surname": "{}"}}"#, "s".repeat(64));
        assert!(UserPatch::parse(ok.as_bytes()).is_ok());
        let name = format!(r#"{{"displayName": "{}"}}"#, "n".repeat(257));
        assert_eq!(
            message(&name),
            "property `displayName` must be at most 256 characters"
        );
        let big = vec![b' '; MAX_USER_PATCH_BODY_BYTES + 1];
        assert_eq!(UserPatch::parse(&big).unwrap_err().status.as_u16(), 413);
    }

    #[test]
    fn writable_properties_are_user_properties() {
        for p in WRITABLE_PROPERTIES {
            assert_eq!(canonical_property(p).as_deref(), Some(p));
            assert!(!READ_ONLY.contains(&p));
        }
    }
}
