//! The Graph-compatible admin API under `/v1.0`, over [`crate::graph`].
//!
//! Every handler checks the bearer token first (so an anonymous caller
//! learns nothing about its body), then the content type and the body size
//! (before reading it), then parses with the core and calls the service.
//!
//! - `POST /v1.0/invitations`: a valid token allowing at least
//!   [`Operation::Invite`] is required before the body is read; once it is
//!   parsed, the token must allow [`Operation::invitation`] of it (a reset
//!   of redemption needs `User.ReadWrite.All`). This is
//!   [`AdminTokenIssuer::authorize`](crate::graph::auth::AdminTokenIssuer::authorize)
//!   split around the parse. `201 Created` with the invitation and
//!   `Location: <root>/invitations/<id>`.
//! - `PATCH /v1.0/users/{id}`: parses the [`UserPatch`] and calls
//!   [`GuestPass::update_user`](crate::GuestPass::update_user) as the
//!   token's administrator
//!   ([`AdminPrincipal::inviter`](crate::graph::auth::AdminPrincipal::inviter)),
//!   which writes only if the user's version is unchanged since it was read
//!   (409 `Request_Conflict` otherwise) and audits the properties changed;
//!   404 for an id of no user of this tenant; `204 No Content`.
//! - `DELETE /v1.0/users/{id}`: calls
//!   [`GuestPass::delete_user`](crate::GuestPass::delete_user) as the
//!   token's administrator, which removes the user with its identities,
//!   invitations and redemption flows in one conditional write and audits
//!   it; `204 No Content` as Graph answers; 404 `Request_ResourceNotFound`
//!   for an id of no user of this tenant; 409 `Request_Conflict` when the
//!   user changed meanwhile.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde_json::Value;

use super::Shared;
use super::api_error::{ApiError, graph_context};
use crate::graph::auth::Operation;
use crate::graph::odata::{EntityQuery, UsersQuery, user_entity};
use crate::graph::users::UserPatch;
use crate::graph::{
    GraphError, api_root, invitations, openapi, parse_object_id, quote, require_json_content_type,
};
use crate::id::Id;

type ApiResult = Result<Response, ApiError>;

/// The routes, with the request-id layer.
pub(crate) fn routes(state: Shared) -> Router<Shared> {
    Router::new()
        .route("/v1.0/invitations", post(invite).fallback(method_not_allowed))
        .route("/v1.0/users", get(list_users).fallback(method_not_allowed))
        .route(
            "/v1.0/users/{id}",
            get(get_user)
                .patch(patch_user)
                .delete(delete_user)
                .fallback(method_not_allowed),
        )
        .route("/v1.0", any(unknown_route))
        .route("/v1.0/", any(unknown_route))
        .route("/v1.0/{*rest}", any(unknown_route))
        .layer(axum::middleware::from_fn_with_state(state, graph_context))
        .route("/openapi.json", get(openapi_document))
}

fn json(status: StatusCode, body: &Value) -> ApiResult {
    let bytes = serde_json::to_vec(body).map_err(|_| GraphError::internal())?;
    Ok((
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        bytes,
    )
        .into_response())
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// Reads at most `limit` bytes of body: a `Content-Length` over the limit
/// is refused before anything is read, a longer body as soon as it passes
/// the limit.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, GraphError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| u64::try_from(limit).is_ok_and(|l| n > l)) {
        return Err(GraphError::payload_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(GraphError::payload_too_large(limit)),
        Err(_) => Err(GraphError::bad_request("the request body could not be read")),
    }
}

fn object_id(path: Result<Path<String>, PathRejection>) -> Result<Id, GraphError> {
    match path {
        Ok(Path(segment)) => parse_object_id(&segment),
        Err(_) => Err(GraphError::bad_request("invalid object identifier")),
    }
}

/// `POST /v1.0/invitations`.
async fn invite(State(s): State<Shared>, headers: HeaderMap, body: Body) -> ApiResult {
    let now = s.now();
    let principal = s.config.admin_tokens.verify_headers(&headers, now)?;
    principal.require(Operation::Invite)?;
    require_json_content_type(content_type(&headers))?;
    let bytes = read_body(&headers, body, s.config.invitation_body_limit).await?;
    let request = invitations::parse_request(&bytes)?;
    principal.require(Operation::invitation(&request))?;
    let invitation = s.gp.invite(&principal.inviter(), request).await?;
    let created = invitations::created(&invitation, &s.base)?;
    let location = format!("{}/invitations/{}", api_root(&s.base), invitation.id);
    let location = HeaderValue::from_str(&location).map_err(|_| GraphError::internal())?;
    let mut res = json(StatusCode::CREATED, &created)?;
    res.headers_mut().insert(header::LOCATION, location);
    Ok(res)
}

/// `GET /v1.0/users`.
async fn list_users(State(s): State<Shared>, headers: HeaderMap, RawQuery(query): RawQuery) -> ApiResult {
    s.config
        .admin_tokens
        .authorize(&headers, Operation::ListUsers, s.now())?;
    let query = UsersQuery::from_query(query.as_deref())?;
    let users = s.gp.users().await?;
    json(StatusCode::OK, &query.render(users, &s.base)?)
}

/// `GET /v1.0/users/{id}`.
async fn get_user(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    s.config
        .admin_tokens
        .authorize(&headers, Operation::GetUser, s.now())?;
    let id = object_id(path)?;
    let query = EntityQuery::from_query(query.as_deref())?;
    let user = s.gp.user(id).await?;
    json(
        StatusCode::OK,
        &user_entity(&user, query.select.as_ref(), &s.base)?,
    )
}

/// `PATCH /v1.0/users/{id}`.
async fn patch_user(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult {
    let principal = s
        .config
        .admin_tokens
        .authorize(&headers, Operation::UpdateUser, s.now())?;
    let id = object_id(path)?;
    require_json_content_type(content_type(&headers))?;
    let bytes = read_body(&headers, body, s.config.user_patch_body_limit).await?;
    let patch = UserPatch::parse(&bytes)?;
    s.gp.update_user(&principal.inviter(), id, &patch).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1.0/users/{id}`.
async fn delete_user(
    State(s): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let principal = s
        .config
        .admin_tokens
        .authorize(&headers, Operation::DeleteUser, s.now())?;
    let id = object_id(path)?;
    s.gp.delete_user(&principal.inviter(), id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A known path asked with a method it does not support.
async fn method_not_allowed(method: Method) -> ApiError {
    ApiError(GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::graph::error::codes::BAD_REQUEST,
        format!(
            "method `{}` is not supported on this resource",
            quote(method.as_str())
        ),
    ))
}

/// Any other path under `/v1.0`.
async fn unknown_route(uri: Uri) -> ApiError {
    ApiError(GraphError::not_found(format!(
        "resource `{}` does not exist",
        quote(uri.path())
    )))
}

/// `GET /openapi.json`.
async fn openapi_document(State(s): State<Shared>) -> Response {
    match serde_json::to_vec(&openapi::document(&s.base)) {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
