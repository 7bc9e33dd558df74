//! An [`HttpClient`] on reqwest with rustls (feature `reqwest`).

use std::collections::BTreeMap;
use std::error::Error as _;
use std::fmt;

use super::{ClientCertificate, HttpClient, HttpError, HttpLimits, HttpRequest, HttpResponse, Uri};
use crate::error::ConfigError;

/// The `User-Agent` sent when a request does not set its own.
const USER_AGENT: &str = concat!("guestpass/", env!("CARGO_PKG_VERSION"));

/// An [`HttpClient`] on [reqwest](https://docs.rs/reqwest/0.12) with rustls
/// and the webpki root certificates.
///
/// It does what the [`HttpClient`] contract asks:
///
/// - redirects are never followed: a `3xx` comes back as the response it is,
///   so an identity provider or API connector cannot send a request (and its
///   credentials) somewhere else behind the caller's back;
/// - [`HttpLimits::timeout`] bounds the whole exchange, from connecting to the
///   last byte of the body ([`HttpError::Timeout`]);
/// - the body is read chunk by chunk and the exchange is abandoned as soon as
///   it grows past [`HttpLimits::max_response_bytes`], or before reading when
///   `Content-Length` already says so ([`HttpError::BodyTooLarge`]);
/// - connection, DNS and TLS failures are [`HttpError::Connect`]; error
///   messages name the host and port only, never the path, query string,
///   header values or bodies;
/// - a request carrying a [`ClientCertificate`] goes out over a connection
///   that presents that certificate, configured with
///   [`ReqwestClientBuilder::client_certificate`]; a name that was not
///   configured fails with [`HttpError::Connect`] and nothing is sent.
///
/// The client is cheap to clone (connection pools are shared). It honours
/// the usual proxy environment variables (`HTTPS_PROXY`, `NO_PROXY`, ...)
/// unless built with [`ReqwestClientBuilder::no_proxy`]. Requests must be
/// executed on a tokio runtime.
///
/// ```no_run
/// use std::time::Duration;
/// use guestpass::http::{ClientCertificate, HttpClient, HttpLimits, HttpRequest, ReqwestClient};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // Plain client, for identity providers.
/// let client = ReqwestClient::new()?;
/// let mut request = HttpRequest::new(Vec::new());
/// *request.uri_mut() = "https://login.example/.well-known/openid-configuration".parse()?;
/// let limits = HttpLimits::new(Duration::from_secs(10), 64 * 1024);
/// let response = client.execute(request, limits).await?;
/// println!("{}", response.status());
///
/// // A client that can present a certificate to an API connector.
/// let pem = std::fs::read("approvals-client.pem")?; // private key and certificate chain
/// let client = ReqwestClient::builder()
///     .client_certificate("approvals-cert", &pem)?
///     .build()?;
/// let mut request = HttpRequest::new(br#"{"step":"postAttributeCollection"}"#.to_vec());
/// *request.method_mut() = guestpass::http::Method::POST;
/// *request.uri_mut() = "https://approvals.example/check".parse()?;
/// request.extensions_mut().insert(ClientCertificate::new("approvals-cert"));
/// let response = client.execute(request, limits).await?;
/// # drop(response);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ReqwestClient {
    plain: reqwest::Client,
    with_certificate: BTreeMap<String, reqwest::Client>,
}

impl ReqwestClient {
    /// A client without client certificates.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `http_client` when the TLS backend
    /// cannot be initialised.
    pub fn new() -> Result<Self, ConfigError> {
        Self::builder().build()
    }

    /// A builder, to configure client certificates.
    pub fn builder() -> ReqwestClientBuilder {
        ReqwestClientBuilder::default()
    }

    /// The names of the configured client certificates, sorted.
    pub fn client_certificate_names(&self) -> impl Iterator<Item = &str> {
        self.with_certificate.keys().map(String::as_str)
    }

    fn client_for(&self, request: &HttpRequest) -> Result<&reqwest::Client, HttpError> {
        match request.extensions().get::<ClientCertificate>() {
            None => Ok(&self.plain),
            Some(wanted) => self
                .with_certificate
                .get(wanted.name())
                .ok_or_else(|| HttpError::Connect {
                    message: format!("client certificate `{}` is not configured", wanted.name()),
                }),
        }
    }
}

impl fmt::Debug for ReqwestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestClient")
            .field(
                "client_certificates",
                &self.with_certificate.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpClient for ReqwestClient {
    async fn execute(&self, request: HttpRequest, limits: HttpLimits) -> Result<HttpResponse, HttpError> {
        let client = self.client_for(&request)?;
        let target = target(request.uri());
        let request = reqwest::Request::try_from(request).map_err(|_| HttpError::Other {
            message: format!("{target}: request url is not an absolute http or https url"),
        })?;
        match tokio::time::timeout(limits.timeout(), exchange(client, request, limits, &target)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(HttpError::Timeout),
        }
    }
}

async fn exchange(
    client: &reqwest::Client,
    request: reqwest::Request,
    limits: HttpLimits,
    target: &str,
) -> Result<HttpResponse, HttpError> {
    let limit = limits.max_response_bytes();
    let mut response = client.execute(request).await.map_err(|e| map_error(e, target))?;
    let declared = response.content_length();
    if declared.is_some_and(|length| u64::try_from(limit).is_ok_and(|limit| length > limit)) {
        return Err(HttpError::BodyTooLarge { limit });
    }
    let status = response.status();
    let version = response.version();
    let headers = std::mem::take(response.headers_mut());
    let capacity = declared
        .and_then(|length| usize::try_from(length).ok())
        .unwrap_or(0)
        .min(limit);
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await.map_err(|e| map_error(e, target))? {
        if chunk.len() > limit.saturating_sub(body.len()) {
            return Err(HttpError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    let mut out = HttpResponse::new(body);
    *out.status_mut() = status;
    *out.version_mut() = version;
    *out.headers_mut() = headers;
    Ok(out)
}

/// `host:port` of a request, for error messages: no user info, path or query.
fn target(uri: &Uri) -> String {
    let host = uri.host().unwrap_or("<no host>");
    let port = uri.port_u16().or_else(|| match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn map_error(error: reqwest::Error, target: &str) -> HttpError {
    let error = error.without_url();
    if error.is_timeout() {
        return HttpError::Timeout;
    }
    // reqwest's own message (its url removed) and the causes below it: hyper,
    // rustls and io errors, which describe the failure without request data.
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last().is_none_or(|previous| !previous.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    let message = format!("{target}: {}", parts.join(": "));
    if error.is_connect() {
        HttpError::Connect { message }
    } else {
        HttpError::Other { message }
    }
}

/// Configures a [`ReqwestClient`].
///
/// ```
/// use guestpass::http::ReqwestClient;
///
/// let error = ReqwestClient::builder()
///     .client_certificate("approvals-cert", b"not a pem file")
///     .unwrap_err();
/// assert!(error.to_string().contains("`approvals-cert`"));
/// ```
#[derive(Default)]
pub struct ReqwestClientBuilder {
    identities: BTreeMap<String, reqwest::Identity>,
    no_proxy: bool,
}

impl ReqwestClientBuilder {
    /// Makes the certificate called `name` available to requests that carry
    /// `ClientCertificate::new(name)`.
    ///
    /// `pem` holds the private key (PKCS#8, PKCS#1 RSA or SEC1 EC) and the
    /// certificate chain, leaf first, PEM encoded.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `client_certificate` when `name` is
    /// empty or already configured, or `pem` holds no private key and
    /// certificate. The message names the certificate, never the key.
    pub fn client_certificate(mut self, name: impl Into<String>, pem: &[u8]) -> Result<Self, ConfigError> {
        let name = name.into();
        let invalid = |reason: String| ConfigError::Invalid {
            field: "client_certificate",
            reason,
        };
        if name.is_empty() {
            return Err(invalid("the certificate name is empty".to_owned()));
        }
        if self.identities.contains_key(&name) {
            return Err(invalid(format!("certificate `{name}` is configured twice")));
        }
        let identity = reqwest::Identity::from_pem(pem).map_err(|_| {
            invalid(format!(
                "certificate `{name}` is not a pem private key with its certificate chain"
            ))
        })?;
        self.identities.insert(name, identity);
        Ok(self)
    }

    /// Ignores the proxy environment variables and connects directly.
    pub fn no_proxy(mut self) -> Self {
        self.no_proxy = true;
        self
    }

    /// Builds the client: one connection pool without a client certificate
    /// and one per configured certificate.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `client_certificate` when a
    /// certificate's key is unusable (unsupported algorithm, or not the key
    /// of the certificate), or `http_client` when the TLS backend cannot be
    /// initialised.
    pub fn build(self) -> Result<ReqwestClient, ConfigError> {
        let no_proxy = self.no_proxy;
        let base = move || {
            let builder = reqwest::Client::builder()
                .use_rustls_tls()
                .redirect(reqwest::redirect::Policy::none())
                .referer(false)
                .user_agent(USER_AGENT);
            if no_proxy { builder.no_proxy() } else { builder }
        };
        let plain = base().build().map_err(|_| ConfigError::Invalid {
            field: "http_client",
            reason: "the tls backend could not be initialised".to_owned(),
        })?;
        let mut with_certificate = BTreeMap::new();
        for (name, identity) in self.identities {
            let client = base()
                .identity(identity)
                .build()
                .map_err(|_| ConfigError::Invalid {
                    field: "client_certificate",
                    reason: format!("certificate `{name}` cannot be used for tls client authentication"),
                })?;
            with_certificate.insert(name, client);
        }
        Ok(ReqwestClient {
            plain,
            with_certificate,
        })
    }
}

impl fmt::Debug for ReqwestClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestClientBuilder")
            .field("client_certificates", &self.identities.keys().collect::<Vec<_>>())
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}
