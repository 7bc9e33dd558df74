//! The HTTP boundary: requests and responses as plain values, and the
//! [`HttpClient`] trait a host implements to carry them.
//!
//! The core never opens a socket. It builds an [`HttpRequest`] (an
//! `http::Request<Vec<u8>>`), hands it to an [`HttpClient`] together with the
//! [`HttpLimits`] the exchange must respect, and reads the [`HttpResponse`]
//! that comes back. Anything that can move bytes (reqwest, hyper, a test
//! double) can sit behind the trait.
//!
//! [`FnHttpClient`] is a small client that answers from a closure and records
//! what it was asked; hosts use it in their own tests. With the `reqwest`
//! feature, `ReqwestClient` is a production client on reqwest and rustls
//! that keeps the trait's rules: no redirects followed, one deadline for the
//! whole exchange, a body cap enforced while reading, client certificates.
//!
//! The types of the [`http`](https://docs.rs/http/1) crate that appear in
//! this API are re-exported here, so callers need no direct dependency on it.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

pub use ::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};

#[cfg(feature = "reqwest")]
mod reqwest_client;
#[cfg(feature = "reqwest")]
pub use reqwest_client::{ReqwestClient, ReqwestClientBuilder};

/// An outgoing request: head plus a complete body.
pub type HttpRequest = ::http::Request<Vec<u8>>;

/// An incoming response: head plus a complete (bounded) body.
pub type HttpResponse = ::http::Response<Vec<u8>>;

/// What an [`HttpClient`] must enforce on one exchange.
///
/// ```
/// use std::time::Duration;
/// use guestpass::http::HttpLimits;
///
/// let limits = HttpLimits::new(Duration::from_secs(20), 64 * 1024);
/// assert_eq!(limits.timeout(), Duration::from_secs(20));
/// assert_eq!(limits.max_response_bytes(), 65536);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HttpLimits {
    timeout: Duration,
    max_response_bytes: usize,
}

impl HttpLimits {
    /// Limits with the given overall deadline and response body cap.
    pub fn new(timeout: Duration, max_response_bytes: usize) -> Self {
        Self {
            timeout,
            max_response_bytes,
        }
    }

    /// The deadline for the whole exchange: connecting, sending the request
    /// and reading the complete response.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The largest response body, in bytes, the client may return.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }
}

/// Why an HTTP exchange produced no response.
///
/// Messages describe the failure without secrets: an implementation must
/// never put header values (such as `Authorization`), request bodies or URL
/// query strings into `message`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The exchange did not complete within [`HttpLimits::timeout`].
    #[error("http request timed out")]
    Timeout,
    /// No connection could be established (DNS, TCP or TLS failure). The
    /// request was not delivered.
    #[error("could not connect: {message}")]
    Connect {
        /// A description without secrets.
        message: String,
    },
    /// The response body exceeds [`HttpLimits::max_response_bytes`].
    #[error("response body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// Any other failure while sending or receiving (connection reset,
    /// protocol error, client misconfiguration).
    #[error("http exchange failed: {message}")]
    Other {
        /// A description without secrets.
        message: String,
    },
}

/// Names a client certificate that the [`HttpClient`] should present.
///
/// The core does no TLS itself. When a request must be authenticated with a
/// client certificate, the core attaches this value to the request's
/// extensions; the host's client looks the name up in its own key store and
/// configures the TLS connection with it. A client that cannot resolve the
/// name must fail the exchange with [`HttpError::Connect`] rather than send
/// the request without the certificate.
///
/// ```
/// use guestpass::http::{ClientCertificate, HttpRequest};
///
/// let mut request = HttpRequest::new(Vec::new());
/// request.extensions_mut().insert(ClientCertificate::new("approvals-cert"));
/// let wanted = request.extensions().get::<ClientCertificate>();
/// assert_eq!(wanted.map(ClientCertificate::name), Some("approvals-cert"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCertificate(String);

impl ClientCertificate {
    /// A reference to the certificate called `name` in the host's key store.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The certificate's name in the host's key store.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Carries one HTTP exchange for the core.
///
/// Implementations must:
///
/// - finish within [`HttpLimits::timeout`] or return [`HttpError::Timeout`]
///   (the deadline covers connecting, sending and reading the whole body);
/// - never return a body longer than [`HttpLimits::max_response_bytes`]:
///   stop reading and return [`HttpError::BodyTooLarge`] instead;
/// - not follow redirects (a redirect is returned as the response it is);
/// - present the [`ClientCertificate`] found in the request's extensions, if
///   any, or fail with [`HttpError::Connect`];
/// - keep secrets out of error messages.
///
/// The trait is object safe, so a host can hold an `Arc<dyn HttpClient>`.
#[async_trait::async_trait]
pub trait HttpClient: Send + Sync {
    /// Sends `request` and returns the complete response, whatever its status.
    async fn execute(&self, request: HttpRequest, limits: HttpLimits) -> Result<HttpResponse, HttpError>;
}

type Responder = dyn Fn(usize, &HttpRequest) -> Result<HttpResponse, HttpError> + Send + Sync;

/// An [`HttpClient`] that answers from a closure and records every request.
///
/// The closure receives the zero-based number of the call and the request.
/// Answers come back at once, so the deadline can never pass; return
/// [`HttpError::Timeout`] from the closure to act out a slow server. A body
/// longer than [`HttpLimits::max_response_bytes`] is turned into
/// [`HttpError::BodyTooLarge`], as a real client would do.
///
/// ```
/// use std::time::Duration;
/// use guestpass::http::{FnHttpClient, HttpClient, HttpLimits, HttpRequest, HttpResponse};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let client = FnHttpClient::new(|_call, _request| Ok(HttpResponse::new(b"hi".to_vec())));
/// let limits = HttpLimits::new(Duration::from_secs(1), 1024);
/// let response = client.execute(HttpRequest::new(Vec::new()), limits).await.unwrap();
/// assert_eq!(response.body(), b"hi");
/// assert_eq!(client.calls(), 1);
/// # });
/// ```
pub struct FnHttpClient {
    responder: Box<Responder>,
    recorded: Mutex<Vec<(HttpRequest, HttpLimits)>>,
}

impl FnHttpClient {
    /// A client whose answers come from `responder`.
    pub fn new<F>(responder: F) -> Self
    where
        F: Fn(usize, &HttpRequest) -> Result<HttpResponse, HttpError> + Send + Sync + 'static,
    {
        Self {
            responder: Box::new(responder),
            recorded: Mutex::new(Vec::new()),
        }
    }

    /// How many requests were executed.
    pub fn calls(&self) -> usize {
        self.lock().len()
    }

    /// The requests executed so far, oldest first.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.lock().iter().map(|(request, _)| request.clone()).collect()
    }

    /// The limits each request was executed with, oldest first.
    pub fn limits(&self) -> Vec<HttpLimits> {
        self.lock().iter().map(|(_, limits)| *limits).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(HttpRequest, HttpLimits)>> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for FnHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnHttpClient")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpClient for FnHttpClient {
    async fn execute(&self, request: HttpRequest, limits: HttpLimits) -> Result<HttpResponse, HttpError> {
        let call = {
            let mut recorded = self.lock();
            recorded.push((request.clone(), limits));
            recorded.len() - 1
        };
        let response = (self.responder)(call, &request)?;
        if response.body().len() > limits.max_response_bytes() {
            return Err(HttpError::BodyTooLarge {
                limit: limits.max_response_bytes(),
            });
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits::new(Duration::from_secs(5), 16)
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn records_requests_and_numbers_calls() {
        let client = FnHttpClient::new(|call, request| {
            let mut response = HttpResponse::new(format!("{call}:{}", request.uri()).into_bytes());
            *response.status_mut() = StatusCode::ACCEPTED;
            Ok(response)
        });
        let first = run(client.execute(HttpRequest::new(b"a".to_vec()), limits())).unwrap();
        let second = run(client.execute(HttpRequest::new(b"b".to_vec()), limits())).unwrap();
        assert_eq!(first.body(), b"0:/");
        assert_eq!(second.body(), b"1:/");
        assert_eq!(second.status(), StatusCode::ACCEPTED);
        assert_eq!(client.calls(), 2);
        let bodies: Vec<Vec<u8>> = client.requests().into_iter().map(|r| r.into_body()).collect();
        assert_eq!(bodies, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(client.limits(), vec![limits(), limits()]);
    }

    #[test]
    fn errors_pass_through_and_are_recorded() {
        let client = FnHttpClient::new(|_, _| Err(HttpError::Timeout));
        let result = run(client.execute(HttpRequest::new(Vec::new()), limits()));
        assert_eq!(result.unwrap_err(), HttpError::Timeout);
        assert_eq!(client.calls(), 1);
    }

    #[test]
    fn oversized_bodies_become_body_too_large() {
        let client = FnHttpClient::new(|_, _| Ok(HttpResponse::new(vec![b'x'; 17])));
        let result = run(client.execute(HttpRequest::new(Vec::new()), limits()));
        assert_eq!(result.unwrap_err(), HttpError::BodyTooLarge { limit: 16 });

        let exact = FnHttpClient::new(|_, _| Ok(HttpResponse::new(vec![b'x'; 16])));
        assert!(run(exact.execute(HttpRequest::new(Vec::new()), limits())).is_ok());
    }

    #[test]
    fn is_object_safe_and_shareable() {
        let client: Arc<dyn HttpClient> =
            Arc::new(FnHttpClient::new(|_, _| Ok(HttpResponse::new(Vec::new()))));
        let response = run(client.execute(HttpRequest::new(Vec::new()), limits())).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn error_messages_are_lowercase_without_period() {
        let errors = [
            HttpError::Timeout,
            HttpError::Connect {
                message: "dns lookup failed".into(),
            },
            HttpError::BodyTooLarge { limit: 10 },
            HttpError::Other {
                message: "connection reset".into(),
            },
        ];
        for e in errors {
            let m = e.to_string();
            assert!(m.starts_with(|c: char| c.is_lowercase()), "{m}");
            assert!(!m.ends_with('.'), "{m}");
        }
        assert_eq!(
            HttpError::BodyTooLarge { limit: 10 }.to_string(),
            "response body exceeds 10 bytes"
        );
    }

    #[test]
    fn client_certificate_travels_in_extensions() {
        let mut request = HttpRequest::new(Vec::new());
        request.extensions_mut().insert(ClientCertificate::new("c1"));
        let copy = request.clone();
        assert_eq!(
            copy.extensions().get::<ClientCertificate>().map(|c| c.name()),
            Some("c1")
        );
    }
}
