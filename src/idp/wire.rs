//! HTTP and JSON plumbing the providers share: request building, one
//! bounded exchange, JSON objects, URL and claim checks.

use base64::Engine as _;
use serde_json::{Map, Value};
use url::Url;

use super::provider::{IdpContext, IdpError, sanitize};
use crate::error::ConfigError;
use crate::http::{HeaderValue, HttpError, HttpLimits, HttpRequest, HttpResponse, Method, header};
use crate::secret::SecretString;

/// Longest profile string (name, given name, family name) kept, in characters.
pub(crate) const MAX_PROFILE_CHARS: usize = 256;

/// A request for `url` with the given method, `Accept: application/json`
/// and `body`.
pub(crate) fn request(method: Method, url: &Url, body: Vec<u8>) -> Result<HttpRequest, IdpError> {
    let mut request = HttpRequest::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = url.as_str().parse().map_err(|_| IdpError::Config {
        field: "endpoint",
        reason: format!("`{}` is not a valid request uri", redacted(url)),
    })?;
    request
        .headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    Ok(request)
}

/// A `POST` of `pairs` as `application/x-www-form-urlencoded`.
pub(crate) fn form_post(url: &Url, pairs: &[(&str, &str)]) -> Result<HttpRequest, IdpError> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        form.append_pair(name, value);
    }
    let mut request = request(Method::POST, url, form.finish().into_bytes())?;
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    Ok(request)
}

/// Adds a sensitive `Authorization` header.
pub(crate) fn authorize(request: &mut HttpRequest, scheme: &str, credentials: &str) -> Result<(), IdpError> {
    let mut value =
        HeaderValue::try_from(format!("{scheme} {credentials}")).map_err(|_| IdpError::TokenResponse {
            reason: "the credentials do not fit in a header".into(),
        })?;
    value.set_sensitive(true);
    request.headers_mut().insert(header::AUTHORIZATION, value);
    Ok(())
}

/// `client_secret_basic` (RFC 6749 §2.3.1): id and secret are each
/// form-urlencoded, joined with `:`, then base64.
pub(crate) fn basic_credentials(client_id: &str, secret: &SecretString) -> String {
    let id: String = url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String = url::form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

/// Executes one exchange within `limits`. Transport failures become
/// [`IdpError::Unreachable`], an oversized body [`IdpError::ResponseTooLarge`]
/// (also when the client returned more than it was allowed to).
pub(crate) async fn execute(
    ctx: &IdpContext<'_>,
    request: HttpRequest,
    limits: HttpLimits,
) -> Result<HttpResponse, IdpError> {
    let response = ctx.http.execute(request, limits).await.map_err(|e| match e {
        HttpError::BodyTooLarge { .. } => IdpError::ResponseTooLarge,
        other => IdpError::Unreachable(other),
    })?;
    if response.body().len() > limits.max_response_bytes() {
        return Err(IdpError::ResponseTooLarge);
    }
    Ok(response)
}

/// The body as a JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the body is not a json object".into()),
        Err(e) => Err(format!("the body is not json ({})", json_error_name(&e))),
    }
}

/// A short name for the class of a JSON error (never the offending text).
fn json_error_name(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// A well-formed OAuth `error` code (RFC 6749 §5.2 characters, at most 64),
/// or `None`.
pub(crate) fn oauth_error_code(value: Option<&Value>) -> Option<String> {
    let code = value?.as_str()?;
    let valid = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E) && b != b'`');
    valid.then(|| code.to_owned())
}

/// An endpoint URL: `https`, or `http` on a loopback host; no credentials,
/// no fragment.
pub(crate) fn endpoint(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("`{}` is not an absolute url: {e}", sanitize(raw, 128)))?;
    let shown = || sanitize(raw, 128);
    match url.scheme() {
        "https" if url.host().is_some() => {}
        "http" if crate::config::is_loopback(&url) => {}
        _ => {
            return Err(format!(
                "`{}` must use https (http only on a loopback host)",
                shown()
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{}` must not carry credentials", shown()));
    }
    if url.fragment().is_some() {
        return Err(format!("`{}` must not have a fragment", shown()));
    }
    Ok(url)
}

/// [`endpoint`] as a configuration check of `field`.
pub(crate) fn config_endpoint(field: &'static str, raw: &str) -> Result<Url, ConfigError> {
    endpoint(raw).map_err(|reason| ConfigError::Invalid { field, reason })
}

/// A redirect URI handed to `start`: an endpoint without fragment.
pub(crate) fn redirect_uri(raw: &str) -> Result<Url, IdpError> {
    if raw.len() > 2048 {
        return Err(IdpError::Config {
            field: "redirect_uri",
            reason: "is longer than 2048 bytes".into(),
        });
    }
    endpoint(raw).map_err(|reason| IdpError::Config {
        field: "redirect_uri",
        reason,
    })
}

/// The URL without its query string (shown as `?..`).
pub(crate) fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    let had_query = shown.query().is_some();
    shown.set_query(None);
    let mut text = String::from(shown);
    if had_query {
        text.push_str("?..");
    }
    text
}

/// A provider id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub(crate) fn check_provider_id(id: &str) -> Result<(), ConfigError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field: "id",
            reason: format!(
                "`{}` must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
                sanitize(id, 64)
            ),
        })
    }
}

/// A client id or app id: 1 to 256 characters, no control characters.
pub(crate) fn check_client_id(field: &'static str, id: &str) -> Result<(), ConfigError> {
    if id.is_empty() || id.chars().count() > 256 || id.chars().any(char::is_control) {
        return Err(ConfigError::Invalid {
            field,
            reason: "must be 1 to 256 characters without control characters".into(),
        });
    }
    Ok(())
}

/// A client secret: not empty, at most 1024 bytes, no control characters.
pub(crate) fn check_secret(field: &'static str, secret: &SecretString) -> Result<(), ConfigError> {
    let s = secret.expose();
    if s.is_empty() || s.len() > 1024 || s.chars().any(char::is_control) {
        return Err(ConfigError::Invalid {
            field,
            reason: "must be 1 to 1024 bytes without control characters".into(),
        });
    }
    Ok(())
}

/// A profile claim: a string, trimmed, 1 to [`MAX_PROFILE_CHARS`]
/// characters without control characters; otherwise nothing.
pub(crate) fn profile_string(value: Option<&Value>) -> Option<String> {
    let text = value?.as_str()?.trim();
    let usable =
        !text.is_empty() && text.chars().count() <= MAX_PROFILE_CHARS && !text.chars().any(char::is_control);
    usable.then(|| text.to_owned())
}

/// `email_verified`: JSON `true` or the string `"true"` only.
pub(crate) fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secret_basic_form_encodes_before_base64() {
        let encoded = basic_credentials("my client:1", &SecretString::new("p@ss:w+rd/é %"));
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "my+client%3A1:p%40ss%3Aw%2Brd%2F%C3%A9+%25"
        );
    }

    #[test]
    fn oauth_error_codes_are_checked() {
        assert_eq!(
            oauth_error_code(Some(&Value::from("invalid_grant"))),
            Some("invalid_grant".into())
        );
        assert_eq!(oauth_error_code(Some(&Value::from("bad\"quote"))), None);
        assert_eq!(oauth_error_code(Some(&Value::from("x".repeat(65)))), None);
        assert_eq!(oauth_error_code(Some(&Value::from(3))), None);
        assert_eq!(oauth_error_code(None), None);
    }

    #[test]
    fn endpoints_need_https_except_on_loopback() {
        assert!(endpoint("https://id.example/token").is_ok());
        assert!(endpoint("http://127.0.0.1:8080/token").is_ok());
        assert!(endpoint("http://localhost/token").is_ok());
        assert!(endpoint("http://id.example/token").is_err());
        assert!(endpoint("https://u:p@id.example/token").is_err());
        assert!(endpoint("https://id.example/token#x").is_err());
        assert!(endpoint("ftp://id.example/").is_err());
    }

    #[test]
    fn email_verified_accepts_true_only() {
        assert!(is_true(Some(&Value::Bool(true))));
        assert!(is_true(Some(&Value::from("true"))));
        assert!(!is_true(Some(&Value::from("True"))));
        assert!(!is_true(Some(&Value::from(1))));
        assert!(!is_true(None));
    }
}
