//! The security headers every response of the web layer carries.
//!
//! [`apply`] is the response mapper [`router`](super::router) installs with
//! `axum::middleware::map_response`; a host that serves pages of its own
//! around guestpass's can install it too.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

/// The `Content-Security-Policy`: nothing but the origin's own styles and
/// images (and inline `data:` images), forms only to the origin, no
/// framing, no `<base>`. Sent with JSON responses too, so an API answer
/// opened in a browser cannot run anything.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `Referrer-Policy`: a page whose URL carries a ticket or a flow handle
/// must not hand it to the next site (invariant 4).
pub const REFERRER_POLICY: &str = "no-referrer";

/// `Cache-Control` unless the handler set one: answers carry tokens,
/// redemption links and directory data.
pub const DEFAULT_CACHE_CONTROL: &str = "no-store";

/// Sets the security headers on `headers`: the policy headers replace
/// whatever was there; `Cache-Control` is only added when missing.
pub fn set_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static(REFERRER_POLICY));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(DEFAULT_CACHE_CONTROL),
        );
    }
}

/// [`set_headers`] on a response, for `axum::middleware::map_response`.
pub async fn apply(mut response: Response) -> Response {
    set_headers(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_set_and_cache_control_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("unsafe-url"));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        set_headers(&mut h);
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=300");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        let mut h = HeaderMap::new();
        set_headers(&mut h);
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }
}
