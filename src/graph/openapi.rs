//! The OpenAPI 3.1 description of the admin API.
//!
//! ```
//! let base = url::Url::parse("https://guests.contoso.example/")?;
//! let doc = guestpass::graph::openapi::document(&base);
//! assert_eq!(doc["openapi"], "3.1.0");
//! assert_eq!(doc["servers"][0]["url"], "https://guests.contoso.example");
//! assert!(doc["paths"]["/v1.0/users/{id}"]["patch"].is_object());
//! # Ok::<(), url::ParseError>(())
//! ```

use serde_json::{Map, Value, json};
use url::Url;

use crate::graph::api_root;
use crate::graph::auth::{Operation, Scope};
use crate::graph::error::codes;
use crate::graph::odata::{DEFAULT_PAGE_SIZE, MAX_QUERY_OPTION_LEN, MAX_TOP, USER_PROFILE_PROPERTIES};
use crate::graph::users::WRITABLE_PROPERTIES;
use crate::invitation::{MAX_CC_RECIPIENTS, MAX_DISPLAY_NAME_CHARS, MAX_MESSAGE_BODY_CHARS, MAX_SPONSORS};

const ERROR_RESPONSES: [(&str, &str); 4] = [
    ("400", "BadRequest"),
    ("401", "Unauthorized"),
    ("403", "Forbidden"),
    ("404", "NotFound"),
];

fn reference(kind: &str, name: &str) -> Value {
    json!({ "$ref": format!("#/components/{kind}/{name}") })
}

fn schema(name: &str) -> Value {
    reference("schemas", name)
}

fn nullable(v: Value) -> Value {
    json!({ "anyOf": [v, {"type": "null"}] })
}

fn security(op: Operation) -> Value {
    let scopes: Vec<&str> = op.accepted_scopes().iter().map(|s| s.as_str()).collect();
    // Any one of the scopes suffices: one requirement object per scope.
    Value::Array(scopes.iter().map(|s| json!({ "bearer": [s] })).collect())
}

fn responses(success: (&str, Value), extra: &[(&str, &str)]) -> Value {
    let mut out = Map::new();
    out.insert(success.0.to_owned(), success.1);
    for (status, name) in ERROR_RESPONSES.iter().chain(extra.iter()) {
        out.insert((*status).to_owned(), reference("responses", name));
    }
    out.insert("5XX".to_owned(), reference("responses", "ServerError"));
    Value::Object(out)
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn scope_note(op: Operation) -> String {
    let names: Vec<&str> = op.accepted_scopes().iter().map(|s| s.as_str()).collect();
    format!("Requires one of the scopes: {}.", names.join(", "))
}

fn paths() -> Value {
    let invitations = json!({
        "post": {
            "operationId": "invitations.create",
            "summary": "Invite an external user",
            "description": format!(
                "Creates an invitation (and the pending guest user), or resets a user's redemption with `resetRedemption`. {} Resetting redemption: {}",
                scope_note(Operation::Invite), scope_note(Operation::ResetRedemption)
            ),
            "tags": ["invitations"],
            "security": security(Operation::Invite),
            "requestBody": {
                "required": true,
                "content": {
                    "application/json": {
                        "schema": schema("InvitationRequest"),
                        "examples": {
                            "minimal": {
                                "summary": "Graph's documented example",
                                "value": {
                                    "invitedUserEmailAddress": "admin@fabrikam.com",
                                    "inviteRedirectUrl": "https://myapp.contoso.com"
                                }
                            }
                        }
                    }
                }
            },
            "responses": responses(
                ("201", json!({"description": "The invitation, with its redemption link", "content": json_content(schema("Invitation"))})),
                &[("409", "Conflict"), ("413", "PayloadTooLarge"), ("415", "UnsupportedMediaType")],
            )
        }
    });
    let users = json!({
        "get": {
            "operationId": "users.list",
            "summary": "List users",
            "description": format!("Users ordered by id, {DEFAULT_PAGE_SIZE} per page unless `$top` says otherwise; follow `@odata.nextLink`. {}", scope_note(Operation::ListUsers)),
            "tags": ["users"],
            "security": security(Operation::ListUsers),
            "parameters": [
                reference("parameters", "filter"),
                reference("parameters", "select"),
                reference("parameters", "top"),
                reference("parameters", "skiptoken")
            ],
            "responses": responses(
                ("200", json!({"description": "A page of users", "content": json_content(schema("UserCollection"))})),
                &[],
            )
        }
    });
    let user = json!({
        "parameters": [reference("parameters", "userId")],
        "get": {
            "operationId": "users.get",
            "summary": "Get a user",
            "description": scope_note(Operation::GetUser),
            "tags": ["users"],
            "security": security(Operation::GetUser),
            "parameters": [reference("parameters", "select")],
            "responses": responses(
                ("200", json!({"description": "The user", "content": json_content(schema("User"))})),
                &[],
            )
        },
        "patch": {
            "operationId": "users.update",
            "summary": "Update a user",
            "description": format!("Writes only: {}. {}", WRITABLE_PROPERTIES.join(", "), scope_note(Operation::UpdateUser)),
            "tags": ["users"],
            "security": security(Operation::UpdateUser),
            "requestBody": {"required": true, "content": json_content(schema("UserPatch"))},
            "responses": responses(
                ("204", json!({"description": "Updated"})),
                &[("409", "Conflict"), ("413", "PayloadTooLarge"), ("415", "UnsupportedMediaType")],
            )
        },
        "delete": {
            "operationId": "users.delete",
            "summary": "Delete a user",
            "description": format!(
                "Deletes the user with its identities, invitations and redemption flows; its address and \
                 identities are free at once for a new user. {}",
                scope_note(Operation::DeleteUser)
            ),
            "tags": ["users"],
            "security": security(Operation::DeleteUser),
            "responses": responses(("204", json!({"description": "Deleted"})), &[("409", "Conflict")])
        }
    });
    json!({
        "/v1.0/invitations": invitations,
        "/v1.0/users": users,
        "/v1.0/users/{id}": user,
    })
}

fn parameters() -> Value {
    json!({
        "filter": {
            "name": "$filter", "in": "query", "required": false,
            "description": "`userType eq 'Guest'|'Member'` and `externalUserState eq 'PendingAcceptance'|'Accepted'`, joined with `and`.",
            "schema": {"type": "string", "maxLength": MAX_QUERY_OPTION_LEN},
            "example": "userType eq 'Guest' and externalUserState eq 'PendingAcceptance'"
        },
        "select": {
            "name": "$select", "in": "query", "required": false, "explode": false,
            "description": "Comma-separated user properties; `id` is always returned.",
            "schema": {"type": "string", "maxLength": MAX_QUERY_OPTION_LEN},
            "example": "displayName,mail,externalUserState"
        },
        "top": {
            "name": "$top", "in": "query", "required": false,
            "description": "Page size.",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP}
        },
        "skiptoken": {
            "name": "$skiptoken", "in": "query", "required": false,
            "description": "Continuation from `@odata.nextLink`; use the link as given.",
            "schema": {"type": "string"}
        },
        "userId": {
            "name": "id", "in": "path", "required": true,
            "description": "The user's object id.",
            "schema": {"type": "string", "format": "uuid"}
        }
    })
}

fn error_responses() -> Value {
    let error = |description: &str| json!({"description": description, "content": json_content(schema("ODataError"))});
    let mut unauthorized = error("The bearer token is missing or invalid (`InvalidAuthenticationToken`)");
    unauthorized["headers"] = json!({
        "WWW-Authenticate": {"description": "`Bearer`, with `error=\"invalid_token\"` when a token was sent", "schema": {"type": "string"}}
    });
    let mut forbidden =
        error("The token lacks the scope, or a policy forbids it (`Authorization_RequestDenied`)");
    forbidden["headers"] = json!({
        "WWW-Authenticate": {"description": "`Bearer error=\"insufficient_scope\"` when a scope is missing", "schema": {"type": "string"}}
    });
    json!({
        "BadRequest": error("The request is malformed or names an unsupported property or query (`Request_BadRequest`, `Request_UnsupportedQuery`)"),
        "Unauthorized": unauthorized,
        "Forbidden": forbidden,
        "NotFound": error("The object does not exist (`Request_ResourceNotFound`)"),
        "Conflict": error("A concurrent change, or a unique value is taken (`Request_Conflict`)"),
        "PayloadTooLarge": error("The body is too large (`Request_EntityTooLarge`)"),
        "UnsupportedMediaType": error("The body is not `application/json` (`Request_UnsupportedMediaType`)"),
        "ServerError": error("An internal error or an unavailable dependency (`generalException`, `serviceNotAvailable`)")
    })
}

fn enums() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "UserType".into(),
        json!({"type": "string", "enum": ["Guest", "Member"]}),
    );
    m.insert(
        "ExternalUserState".into(),
        json!({"type": "string", "enum": ["PendingAcceptance", "Accepted"]}),
    );
    m.insert(
        "InvitationStatus".into(),
        json!({"type": "string", "enum": ["PendingAcceptance", "InProgress", "Completed", "Error"]}),
    );
    m.insert(
        "CreationType".into(),
        json!({"type": "string", "enum": ["Invitation", "SelfServiceSignUp", "LocalAccount", "EmailVerified"]}),
    );
    m.insert(
        "SignInType".into(),
        json!({"type": "string", "enum": ["federated", "emailAddress", "userName", "userPrincipalName"]}),
    );
    m
}

fn invitation_schemas() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "ObjectRef".into(),
        json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "format": "uuid"}}}),
    );
    m.insert(
        "EmailAddress".into(),
        json!({"type": "object", "required": ["address"], "properties": {
            "address": {"type": "string", "format": "email"},
            "name": {"type": "string"}
        }}),
    );
    m.insert(
        "Recipient".into(),
        json!({"type": "object", "required": ["emailAddress"], "properties": {"emailAddress": schema("EmailAddress")}}),
    );
    m.insert(
        "InvitedUserMessageInfo".into(),
        json!({"type": "object", "properties": {
            "ccRecipients": {"type": "array", "maxItems": MAX_CC_RECIPIENTS, "items": schema("Recipient")},
            "customizedMessageBody": {"type": ["string", "null"], "maxLength": MAX_MESSAGE_BODY_CHARS, "description": "Plain text, never HTML."},
            "messageLanguage": {"type": ["string", "null"], "example": "de-DE"}
        }}),
    );
    m.insert(
        "InvitationRequest".into(),
        json!({
            "type": "object",
            "required": ["invitedUserEmailAddress", "inviteRedirectUrl"],
            "additionalProperties": false,
            "properties": {
                "@odata.type": {"const": "#microsoft.graph.invitation"},
                "invitedUserEmailAddress": {"type": "string", "format": "email"},
                "invitedUserDisplayName": {"type": ["string", "null"], "maxLength": MAX_DISPLAY_NAME_CHARS},
                "inviteRedirectUrl": {"type": "string", "format": "uri", "description": "Must be a registered redirect URL."},
                "sendInvitationMessage": {"type": "boolean", "default": false},
                "invitedUserMessageInfo": nullable(schema("InvitedUserMessageInfo")),
                "invitedUserType": nullable(schema("UserType")),
                "resetRedemption": {"type": "boolean", "default": false, "description": "Needs `invitedUser` and the `User.ReadWrite.All` scope."},
                "invitedUser": nullable(schema("ObjectRef")),
                "invitedUserSponsors": {"type": "array", "maxItems": MAX_SPONSORS, "items": schema("ObjectRef")}
            }
        }),
    );
    m.insert(
        "Invitation".into(),
        json!({
            "type": "object",
            "required": ["id", "invitedUserEmailAddress", "inviteRedirectUrl", "invitedUserType", "status", "invitedUser"],
            "properties": {
                "@odata.context": {"type": "string", "format": "uri"},
                "id": {"type": "string", "format": "uuid"},
                "invitedUserDisplayName": {"type": ["string", "null"]},
                "invitedUserEmailAddress": {"type": "string", "format": "email"},
                "invitedUserMessageInfo": schema("InvitedUserMessageInfo"),
                "sendInvitationMessage": {"type": "boolean"},
                "inviteRedirectUrl": {"type": "string", "format": "uri"},
                "inviteRedeemUrl": {"type": "string", "format": "uri", "readOnly": true, "description": "The redemption link; present only in the answer that created the invitation."},
                "invitedUserType": schema("UserType"),
                "status": schema("InvitationStatus"),
                "resetRedemption": {"type": "boolean"},
                "invitedUser": schema("ObjectRef"),
                "invitedUserSponsors": {"type": "array", "items": schema("ObjectRef")}
            }
        }),
    );
    m
}

fn user_schemas() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "ObjectIdentity".into(),
        json!({"type": "object", "required": ["signInType", "issuer", "issuerAssignedId"], "properties": {
            "signInType": schema("SignInType"),
            "issuer": {"type": "string"},
            "issuerAssignedId": {"type": "string"}
        }}),
    );
    m.insert(
        "AgreementAcceptance".into(),
        json!({"type": "object", "required": ["agreementId", "version", "recordedDateTime"], "properties": {
            "agreementId": {"type": "string"},
            "version": {"type": "integer", "minimum": 0},
            "recordedDateTime": {"type": "string", "format": "date-time"}
        }}),
    );
    let mut props = json!({
        "@odata.context": {"type": "string", "format": "uri"},
        "id": {"type": "string", "format": "uuid"},
        "userType": schema("UserType"),
        "externalUserState": nullable(schema("ExternalUserState")),
        "externalUserStateChangeDateTime": {"type": ["string", "null"], "format": "date-time"},
        "creationType": nullable(schema("CreationType")),
        "identities": {"type": "array", "items": schema("ObjectIdentity")},
        "mail": {"type": ["string", "null"], "format": "email"},
        "otherMails": {"type": "array", "items": {"type": "string"}},
        "displayName": {"type": ["string", "null"]},
        "userPrincipalName": {"type": "string"},
        "accountEnabled": {"type": "boolean"},
        "sponsors": {"type": "array", "items": schema("ObjectRef")},
        "createdDateTime": {"type": "string", "format": "date-time"},
        "agreementAcceptances": {"type": "array", "items": schema("AgreementAcceptance")}
    });
    for p in USER_PROFILE_PROPERTIES {
        props[p] = json!({"type": ["string", "null"]});
    }
    m.insert(
        "User".into(),
        json!({
            "type": "object",
            "required": ["id"],
            "description": "Custom attributes appear as `extension_<appId>_<name>` properties.",
            "properties": props,
            "additionalProperties": true
        }),
    );
    m.insert(
        "UserCollection".into(),
        json!({
            "type": "object",
            "required": ["@odata.context", "value"],
            "properties": {
                "@odata.context": {"type": "string", "format": "uri"},
                "@odata.nextLink": {"type": "string", "format": "uri"},
                "value": {"type": "array", "items": schema("User")}
            }
        }),
    );
    let mut patch = json!({
        "@odata.type": {"const": "#microsoft.graph.user"},
        "displayName": {"type": "string", "minLength": 1, "maxLength": MAX_DISPLAY_NAME_CHARS},
        "accountEnabled": {"type": "boolean"},
        "userType": schema("UserType")
    });
    for p in USER_PROFILE_PROPERTIES {
        let max =
            crate::flow::attributes::BuiltInAttribute::from_name(p).map_or(64, |a| a.default_max_length());
        patch[p] = json!({"type": ["string", "null"], "minLength": 1, "maxLength": max});
    }
    m.insert(
        "UserPatch".into(),
        json!({"type": "object", "additionalProperties": false, "properties": patch}),
    );
    m
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "innerError"],
                "properties": {
                    "code": {"type": "string", "examples": [
                        codes::BAD_REQUEST, codes::UNSUPPORTED_QUERY, codes::INVALID_AUTHENTICATION_TOKEN,
                        codes::AUTHORIZATION_REQUEST_DENIED, codes::RESOURCE_NOT_FOUND, codes::CONFLICT,
                        codes::GENERAL_EXCEPTION
                    ]},
                    "message": {"type": "string"},
                    "innerError": {
                        "type": "object",
                        "required": ["date", "request-id"],
                        "properties": {
                            "date": {"type": "string", "description": "UTC, `YYYY-MM-DDTHH:MM:SS`"},
                            "request-id": {"type": "string"}
                        }
                    }
                }
            }
        }
    })
}

/// The OpenAPI 3.1 document for the API under `base_url` (its `servers`
/// entry; paths start with `/v1.0`).
pub fn document(base_url: &Url) -> Value {
    let root = api_root(base_url);
    let server = root
        .strip_suffix(crate::graph::API_VERSION)
        .unwrap_or(&root)
        .trim_end_matches('/')
        .to_owned();
    let mut schemas = enums();
    schemas.extend(invitation_schemas());
    schemas.extend(user_schemas());
    schemas.insert("ODataError".into(), error_schema());
    let scopes: Vec<String> = Scope::ALL.iter().map(|s| format!("`{s}`")).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "guestpass admin API",
            "version": "v1.0",
            "description": "A Microsoft Graph v1.0 compatible subset: invitations and users. Errors use Graph's error body."
        },
        "servers": [{"url": server}],
        "tags": [{"name": "invitations"}, {"name": "users"}],
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": format!("An admin access token (`typ` `at+jwt`) issued by this service, audience `{root}`; scopes {}.", scopes.join(", "))
                }
            },
            "parameters": parameters(),
            "responses": error_responses(),
            "schemas": Value::Object(schemas)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves_and_every_operation_lists_errors() {
        let doc = document(&Url::parse("https://guests.contoso.example/").unwrap());
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20);
        for r in found {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "{r}");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                for status in ["400", "401", "403", "404"] {
                    assert!(op["responses"][status].is_object(), "{method} {path} {status}");
                }
            }
        }
    }
}
