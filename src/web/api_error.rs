//! Graph error answers and request ids for `/v1.0`.
//!
//! The request-id layer ([`graph_context`]) gives every `/v1.0` request an
//! id (a random GUID), makes it available to handlers as the request
//! extension [`RequestId`], and answers with the headers Graph sends:
//! `request-id`, and `client-request-id` echoing the client's (when it is
//! at most [`MAX_REQUEST_ID_LEN`] printable ASCII characters) or repeating
//! the request id.
//!
//! Handlers fail with [`ApiError`], which carries a [`GraphError`]; the
//! layer renders its body (`{"error": {"code", "message", "innerError":
//! {"date", "request-id"}}}`) once the request id and the time are known.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::Error;
use crate::graph::GraphError;
use crate::graph::error::MAX_REQUEST_ID_LEN;

/// `request-id`: the id the server gave the request.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// `client-request-id`: the id the client gave it.
pub(crate) const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");

/// The id of an admin API request, as sent in the `request-id` header and
/// Graph error bodies; a request extension for handlers that want to log
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A failed admin API request; rendered by [`graph_context`].
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) GraphError);

impl From<GraphError> for ApiError {
    fn from(e: GraphError) -> Self {
        Self(e)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(GraphError::from(&e))
    }
}

/// The error a response still needs a body for.
#[derive(Clone)]
struct PendingBody(GraphError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = self.0.status;
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.0.headers() {
            res.headers_mut().append(name, value);
        }
        res.extensions_mut().insert(PendingBody(self.0));
        res
    }
}

/// The client's `client-request-id`, when there is exactly one and it is
/// short printable ASCII.
fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all(&CLIENT_REQUEST_ID).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let ok = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.as_bytes().iter().all(u8::is_ascii_graphic);
    ok.then(|| value.clone())
}

/// The request-id layer of `/v1.0` (for `middleware::from_fn_with_state`).
pub(crate) async fn graph_context(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    let id = state.new_request_id();
    let client = client_request_id(req.headers());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Some(PendingBody(error)) = res.extensions_mut().remove::<PendingBody>() {
        *res.body_mut() = Body::from(error.to_body(&id, state.now()));
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(CLIENT_REQUEST_ID, client.unwrap_or_else(|| value.clone()));
        res.headers_mut().insert(REQUEST_ID, value);
    }
    res
}
