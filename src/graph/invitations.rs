//! `POST /v1.0/invitations`: reading the request body into an
//! [`InvitationRequest`] and rendering the `201 Created` answer.
//!
//! The body is read with the request's own serde shape (the same
//! camelCase names Graph uses), after checks that give Graph-style answers:
//! at most [`MAX_INVITATION_BODY_BYTES`], one JSON object, each property
//! once, no unknown or read-only property, the required ones present. A value
//! of the wrong type is refused naming its path
//! (`invitedUserMessageInfo.ccRecipients[0].emailAddress.address`). What the
//! values mean (a registered redirect URL, an address, the domain policy) is
//! checked by `GuestPass::invite`.
//!
//! ```
//! use guestpass::graph::invitations;
//!
//! let req = invitations::parse_request(br#"{
//!     "invitedUserEmailAddress": "admin@fabrikam.com",
//!     "inviteRedirectUrl": "https://myapp.contoso.com"
//! }"#)?;
//! assert_eq!(req.invited_user_email_address, "admin@fabrikam.com");
//! assert!(!req.send_invitation_message);
//!
//! let e = invitations::parse_request(br#"{"invitedUserEmailAddress": "a@b.example"}"#).unwrap_err();
//! assert_eq!(e.message, "property `inviteRedirectUrl` is required");
//! # Ok::<(), guestpass::graph::GraphError>(())
//! ```

use serde_json::{Map, Value};
use url::Url;

use crate::directory::Invitation;
use crate::graph::{GraphError, api_root, check_odata_type, object_members, quote};
use crate::invitation::InvitationRequest;

/// Largest `POST /invitations` body, in bytes (room for a
/// `customizedMessageBody` of the full length written as `\u` escapes).
pub const MAX_INVITATION_BODY_BYTES: usize = 128 * 1024;

/// The properties of a `POST /invitations` body.
pub const INVITATION_REQUEST_PROPERTIES: [&str; 9] = [
    "invitedUserEmailAddress",
    "invitedUserDisplayName",
    "inviteRedirectUrl",
    "sendInvitationMessage",
    "invitedUserMessageInfo",
    "invitedUserType",
    "resetRedemption",
    "invitedUser",
    "invitedUserSponsors",
];

/// Properties of the `invitation` resource that only the server sets.
const READ_ONLY: [&str; 3] = ["id", "inviteRedeemUrl", "status"];

const REQUIRED: [&str; 2] = ["invitedUserEmailAddress", "inviteRedirectUrl"];

/// Longest piece of a serde message quoted back.
const MAX_DETAIL_CHARS: usize = 200;

/// Reads a `POST /v1.0/invitations` body. An `@odata.type` of
/// `#microsoft.graph.invitation` (as Graph's SDKs send it) is accepted and
/// ignored.
///
/// # Errors
///
/// 413 for a body over [`MAX_INVITATION_BODY_BYTES`]; 400
/// `Request_BadRequest` naming the property that is unknown, read-only,
/// missing, given twice or of the wrong type, or for a body that is not
/// one JSON object.
pub fn parse_request(body: &[u8]) -> Result<InvitationRequest, GraphError> {
    let mut map = Map::new();
    for (name, raw) in object_members(body, MAX_INVITATION_BODY_BYTES)? {
        if name == "@odata.type" {
            check_odata_type(&raw, "#microsoft.graph.invitation")?;
            continue;
        }
        if !INVITATION_REQUEST_PROPERTIES.contains(&name.as_str()) {
            return Err(refused(&name));
        }
        let value: Value = serde_json::from_str(raw.get())
            .map_err(|_| GraphError::bad_request(format!("property `{name}` is not valid JSON")))?;
        map.insert(name, value);
    }
    if let Some(missing) = REQUIRED.iter().find(|r| !map.contains_key(**r)) {
        return Err(GraphError::bad_request(format!(
            "property `{missing}` is required"
        )));
    }
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let detail: String = e.inner().to_string().chars().take(MAX_DETAIL_CHARS).collect();
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            GraphError::bad_request(format!("the request body is invalid: {detail}"))
        } else {
            GraphError::bad_request(format!("property `{path}` is invalid: {detail}"))
        }
    })
}

fn refused(name: &str) -> GraphError {
    if READ_ONLY.contains(&name) {
        return GraphError::bad_request(format!("property `{name}` of type `invitation` is read-only"));
    }
    match INVITATION_REQUEST_PROPERTIES
        .iter()
        .find(|p| p.eq_ignore_ascii_case(name))
    {
        Some(p) => GraphError::bad_request(format!(
            "property `{}` does not exist on type `invitation`; did you mean `{p}`?",
            quote(name)
        )),
        None => GraphError::bad_request(format!(
            "property `{}` does not exist on type `invitation`",
            quote(name)
        )),
    }
}

/// `<root>/$metadata#invitations/$entity`.
pub fn invitation_context(base: &Url) -> String {
    format!("{}/$metadata#invitations/$entity", api_root(base))
}

/// The `201 Created` body of `POST /v1.0/invitations`: the invitation
/// `GuestPass::invite` returned (with its `inviteRedeemUrl`) and its
/// `@odata.context`.
///
/// The body carries the redemption link: the adapter must not log it.
///
/// # Errors
///
/// 500 when the invitation does not serialize.
pub fn created(invitation: &Invitation, base: &Url) -> Result<Value, GraphError> {
    let mut v = serde_json::to_value(invitation).map_err(|_| GraphError::internal())?;
    let Value::Object(map) = &mut v else {
        return Err(GraphError::internal());
    };
    map.insert(
        "@odata.context".to_owned(),
        Value::String(invitation_context(base)),
    );
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::UserType;

    #[test]
    fn the_property_list_is_the_request_shape() {
        let v = serde_json::to_value(InvitationRequest::default()).unwrap();
        let mut keys: Vec<&str> = v
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        let mut expected = INVITATION_REQUEST_PROPERTIES.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn refusals_name_the_property() {
        let cases: [(&str, &str); 11] = [
            (
                r#"{"invitedUserEmailAddress": "a@b.example", "inviteRedirectUrl": "https://x", "foo": 1}"#,
                "property `foo` does not exist on type `invitation`",
            ),
            (
                r#"{"invitedUserEmailAddress": "a@b.example", "inviteRedirectUrl": "https://x", "InviteRedirectURL": "https://y"}"#,
                "property `InviteRedirectURL` does not exist on type `invitation`; did you mean `inviteRedirectUrl`?",
            ),
            (
                r#"{"invitedUserEmailAddress": "a@b.example", "inviteRedirectUrl": "https://x", "status": "Completed"}"#,
                "property `status` of type `invitation` is read-only",
            ),
            (
                r#"{"invitedUserEmailAddress": "a@b.example", "inviteRedirectUrl": "https://x", "inviteRedeemUrl": "https://y"}"#,
                "property `inviteRedeemUrl` of type `invitation` is read-only",
            ),
            (
                r#"{"inviteRedirectUrl": "https://x"}"#,
                "property `invitedUserEmailAddress` is required",
            ),
            (
                r#"{"invitedUserEmailAddress": 5, "inviteRedirectUrl": "https://x"}"#,
                "property `invitedUserEmailAddress` is invalid: invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"invitedUserEmailAddress": "a@b.example", "inviteRedirectUrl": "https://x", "sendInvitationMessage": "yes"}"#,
                "property `sendInvitationMessage` is invalid: invalid type: string \"yes\", expected a boolean",
            ),
            (
                r#"{"invitedUserEmailAddress": "a@b.example", "inviteRedirectUrl": "https://x", "invitedUserType": "guest"}"#,
                "property `invitedUserType` is invalid: unknown variant `guest`, expected `Member` or `Guest`",
            ),
            (
                r#"{"invitedUserEmailAddress": "a@b.example", "inviteRedirectUrl": "https://x", "invitedUser": {"id": "nope"}}"#,
                "property `invitedUser.id` is invalid: not a GUID",
            ),
            (
                r#"{"invitedUserEmailAddress": "a@b.example", "inviteRedirectUrl": "https://x", "invitedUserMessageInfo": {"ccRecipients": [{"emailAddress": {"address": 7}}]}}"#,
                "property `invitedUserMessageInfo.ccRecipients[0].emailAddress.address` is invalid: invalid type: integer `7`, expected a string",
            ),
            (
                r##"{"invitedUserEmailAddress": "a@b.example", "inviteRedirectUrl": "https://x", "@odata.type": "#microsoft.graph.user"}"##,
                "`@odata.type` must be `#microsoft.graph.invitation`",
            ),
        ];
        for (body, expected) in cases {
            let e = parse_request(body.as_bytes()).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (400, "Request_BadRequest"), "{body}");
            assert_eq!(e.message, expected, "{body}");
        }
    }

    #[test]
    fn sdk_annotations_are_accepted() {
        let r = parse_request(
            br##"{"@odata.type": "#microsoft.graph.invitation", "invitedUserEmailAddress": "a@b.example",
                 "inviteRedirectUrl": "https://x", "invitedUserType": "Member",
                 "invitedUserMessageInfo": {"@odata.type": "#microsoft.graph.invitedUserMessageInfo"}}"##,
        )
        .unwrap();
        assert_eq!(r.invited_user_type, Some(UserType::Member));
        assert_eq!(r.invited_user_email_address, "a@b.example");
    }
}
