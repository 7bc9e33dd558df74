//! The security headers every response of the web layer carries.
//!
//! [`apply`] is the response mapper [`router`](super::router) installs with
//! `axum::middleware::map_response`; a host that serves pages of its own
//! around guestpass's can install it too.
//!
//! # One more form target
//!
//! The policy lets forms post only to the page's own origin. A page that
//! must post elsewhere (the completion page of a sign-up posts the token to
//! the application's registered redirect URI, as OpenID's `form_post`
//! does) puts a [`FormActionOrigin`] into its response's extensions; [`apply`]
//! then adds exactly that origin to `form-action` and changes nothing else.
//! A handler cannot loosen any other directive: the policy header it may
//! have set is replaced, and the extension holds only a checked
//! `scheme://host[:port]`.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use url::Url;

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

/// A response extension naming one more origin the page's forms may post
/// to (see the module docs): an `http` or `https` origin, serialized as
/// `scheme://host[:port]` with nothing but letters, digits, `-`, `.`, `:`,
/// `[`, `]` and `/`, so it cannot end the directive or add another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FormActionOrigin(String);

impl FormActionOrigin {
    /// The origin of `url`, if it is an `http` or `https` URL whose origin
    /// serializes to a plain `scheme://host[:port]` (an internationalized
    /// host is shown in its ASCII form).
    ///
    /// ```
    /// use guestpass::web::security::FormActionOrigin;
    /// use url::Url;
    ///
    /// let url = Url::parse("https://app.contoso.example:8443/auth/callback?x=1")?;
    /// let origin = FormActionOrigin::of(&url).ok_or("not a web origin")?;
    /// assert_eq!(origin.as_str(), "https://app.contoso.example:8443");
    /// assert!(FormActionOrigin::of(&Url::parse("data:text/html,x")?).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn of(url: &Url) -> Option<Self> {
        if !matches!(url.scheme(), "https" | "http") {
            return None;
        }
        let origin = url.origin();
        if !origin.is_tuple() {
            return None;
        }
        let s = origin.ascii_serialization();
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]/".contains(&b))
            .then_some(Self(s))
    }

    /// The origin, as it appears in the policy.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `Content-Security-Policy` value: [`CONTENT_SECURITY_POLICY`], with
/// `extra` added to `form-action` when given.
pub fn content_security_policy(extra: Option<&FormActionOrigin>) -> HeaderValue {
    let Some(extra) = extra else {
        return HeaderValue::from_static(CONTENT_SECURITY_POLICY);
    };
    let policy = CONTENT_SECURITY_POLICY.replacen(
        "form-action 'self'",
        &format!("form-action 'self' {}", extra.as_str()),
        1,
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static(CONTENT_SECURITY_POLICY))
}

/// Sets the security headers on `headers`: the policy headers replace
/// whatever was there; `Cache-Control` is only added when missing.
pub fn set_headers(headers: &mut HeaderMap) {
    set_headers_with(headers, None);
}

/// [`set_headers`], with `form_action` added to the policy's `form-action`.
fn set_headers_with(headers: &mut HeaderMap, form_action: Option<&FormActionOrigin>) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        content_security_policy(form_action),
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

/// Whether a `POST`'s `Origin`, when present, is `expected`, or `null` on
/// a request the browser itself marks same-origin (`Sec-Fetch-Site:
/// same-origin`, a header pages cannot set). Browsers send `Origin: null`
/// for every form post from a page with `Referrer-Policy: no-referrer`,
/// which every page of the web layer is; without that header a `null`
/// origin is refused. A repeated `Origin` is refused.
///
/// ```
/// use axum::http::{HeaderMap, HeaderValue, header};
/// use guestpass::web::security::origin_allowed;
/// use url::Url;
///
/// let ours = Url::parse("https://guests.contoso.example/")?.origin();
/// let mut h = HeaderMap::new();
/// assert!(origin_allowed(&h, &ours));
/// h.insert(header::ORIGIN, HeaderValue::from_static("null"));
/// assert!(!origin_allowed(&h, &ours));
/// h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
/// assert!(origin_allowed(&h, &ours));
/// h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
/// assert!(!origin_allowed(&h, &ours));
/// h.insert(header::ORIGIN, HeaderValue::from_static("https://guests.contoso.example"));
/// assert!(origin_allowed(&h, &ours));
/// # Ok::<(), url::ParseError>(())
/// ```
pub fn origin_allowed(headers: &HeaderMap, expected: &url::Origin) -> bool {
    let mut all = headers.get_all(header::ORIGIN).iter();
    let Some(origin) = all.next() else {
        return true;
    };
    if all.next().is_some() {
        return false;
    }
    if origin.as_bytes() == b"null" {
        let mut site = headers.get_all("sec-fetch-site").iter();
        return matches!((site.next(), site.next()), (Some(v), None) if v.as_bytes() == b"same-origin");
    }
    expected.is_tuple() && origin.as_bytes() == expected.ascii_serialization().as_bytes()
}

/// Whether a `GET` that starts something (a sign-up flow, an application's
/// sign-in) is a page the person navigated to, by the `Sec-Fetch-*`
/// headers browsers send: `false` for an image, script, frame or `fetch`
/// another origin's page made (`Sec-Fetch-Mode` other than `navigate`, or
/// `Sec-Fetch-Dest` other than `document`, from a site other than this
/// origin). Such a request would start a flow the person never sees, or
/// replace the one they are in the middle of. Requests without any of the
/// headers (older browsers, programs) are taken as navigations; with some,
/// `Sec-Fetch-Site: same-origin`, or both `Sec-Fetch-Mode: navigate` and
/// `Sec-Fetch-Dest: document`, must be among them.
///
/// ```
/// use axum::http::{HeaderMap, HeaderValue};
/// use guestpass::web::security::is_navigation;
///
/// let mut h = HeaderMap::new();
/// assert!(is_navigation(&h));
/// h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
/// h.insert("sec-fetch-mode", HeaderValue::from_static("no-cors"));
/// h.insert("sec-fetch-dest", HeaderValue::from_static("image"));
/// assert!(!is_navigation(&h));
/// h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
/// h.insert("sec-fetch-dest", HeaderValue::from_static("document"));
/// assert!(is_navigation(&h));
/// ```
pub fn is_navigation(headers: &HeaderMap) -> bool {
    const NAMES: [&str; 3] = ["sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest"];
    if NAMES.iter().all(|n| !headers.contains_key(*n)) {
        return true;
    }
    // Each header once, with exactly the value browsers send.
    let is = |name: &str, expected: &[u8]| {
        let mut all = headers.get_all(name).iter();
        matches!((all.next(), all.next()), (Some(v), None) if v.as_bytes() == expected)
    };
    is("sec-fetch-site", b"same-origin")
        || (is("sec-fetch-mode", b"navigate") && is("sec-fetch-dest", b"document"))
}

/// [`set_headers`] on a response, for `axum::middleware::map_response`;
/// a [`FormActionOrigin`] in the response's extensions is added to
/// `form-action`. The extension stays, so a router nested in another that
/// also applies the headers keeps the origin.
pub async fn apply(mut response: Response) -> Response {
    let extra = response.extensions().get::<FormActionOrigin>().cloned();
    set_headers_with(response.headers_mut(), extra.as_ref());
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

    #[test]
    fn one_form_origin_is_added_and_nothing_else() {
        let origin = |s: &str| FormActionOrigin::of(&Url::parse(s).unwrap());
        let app = origin("https://app.contoso.example/cb?x=1#f").unwrap();
        assert_eq!(app.as_str(), "https://app.contoso.example");
        assert_eq!(
            content_security_policy(Some(&app)),
            "default-src 'none'; style-src 'self'; img-src 'self' data:; \
             form-action 'self' https://app.contoso.example; frame-ancestors 'none'; base-uri 'none'"
        );
        assert_eq!(content_security_policy(None), CONTENT_SECURITY_POLICY);
        assert_eq!(
            origin("http://127.0.0.1:8080/x").unwrap().as_str(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin("https://[::1]/").unwrap().as_str(), "https://[::1]");
        assert_eq!(
            origin("https://b\u{fc}cher.example/").unwrap().as_str(),
            "https://xn--bcher-kva.example"
        );
        for bad in [
            "data:text/html,x",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "ftp://x.example/",
        ] {
            assert!(origin(bad).is_none(), "{bad}");
        }
        // A host the URL parser lets through with a character that could end
        // the directive is refused.
        if let Ok(u) = Url::parse("https://a;script-src.example/") {
            assert!(FormActionOrigin::of(&u).is_none());
        }
    }

    #[test]
    fn navigation_needs_all_its_headers_once_sent() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            is_navigation(&h)
        };
        assert!(with(&[]));
        assert!(with(&[
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-dest", "image")
        ]));
        assert!(with(&[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ]));
        assert!(with(&[
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document")
        ]));
        // Some headers but not the ones a navigation has.
        assert!(!with(&[
            ("sec-fetch-mode", "no-cors"),
            ("sec-fetch-dest", "image")
        ]));
        assert!(!with(&[("sec-fetch-site", "cross-site")]));
        assert!(!with(&[("sec-fetch-dest", "document")]));
        assert!(!with(&[
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-mode", "navigate")
        ]));
        assert!(!with(&[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "iframe"),
        ]));
        // Twice, or in another spelling, is not what a browser sends.
        assert!(!with(&[
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "same-origin")
        ]));
        assert!(!with(&[("sec-fetch-site", "Same-Origin")]));
    }

    #[tokio::test]
    async fn apply_reads_the_extension_and_replaces_a_handler_policy() {
        let mut res = Response::new(axum::body::Body::empty());
        res.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src *"),
        );
        res.extensions_mut()
            .insert(FormActionOrigin::of(&Url::parse("https://app.example/").unwrap()).unwrap());
        let res = apply(res).await;
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("form-action 'self' https://app.example;"), "{csp}");
        // Applied again, as by an outer router, the origin is kept.
        let again = apply(res).await;
        assert_eq!(again.headers()[header::CONTENT_SECURITY_POLICY], csp.as_str());
        let plain = apply(Response::new(axum::body::Body::empty())).await;
        assert_eq!(
            plain.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
    }
}
