//! `__Host-` cookies: building them and reading them back.
//!
//! Every cookie the web layer sets is a `__Host-` cookie: `Secure`,
//! `HttpOnly`, `SameSite=Lax`, `Path=/` and no `Domain`, so browsers bind it
//! to exactly this origin and a sibling subdomain cannot plant or overwrite
//! it. Cookie values are usually secrets (flow handles): the header values
//! built here are marked sensitive, and nothing here prints a value.
//!
//! ```
//! use axum::http::{HeaderMap, HeaderValue, header};
//! use guestpass::web::cookies;
//! use time::Duration;
//!
//! let set = cookies::set_cookie("flow", "h-123", Some(Duration::minutes(30)))?;
//! assert_eq!(
//!     set.to_str().unwrap_or_default(),
//!     "__Host-flow=h-123; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=1800"
//! );
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(header::COOKIE, HeaderValue::from_static("a=1; __Host-flow=h-123"));
//! assert_eq!(cookies::read(&headers, "flow"), Some("h-123"));
//! assert_eq!(cookies::read(&headers, "a"), None); // not a `__Host-` cookie
//! # Ok::<(), cookies::CookieError>(())
//! ```

use axum::http::{HeaderMap, HeaderValue, header};
use time::Duration;

/// The prefix of every cookie name the web layer uses.
pub const HOST_PREFIX: &str = "__Host-";

/// Longest cookie name (without the prefix), in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Longest cookie value, in bytes.
pub const MAX_VALUE_LEN: usize = 3072;

/// Most bytes of `Cookie` headers [`read`] looks at, all headers together;
/// a request with more is treated as carrying no cookie.
pub const MAX_COOKIE_HEADER_BYTES: usize = 8192;

/// Why a cookie could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The name is empty, too long or not an RFC 6265 token.
    #[error("cookie name `{name}` must be 1 to {MAX_NAME_LEN} token characters")]
    InvalidName {
        /// The name (not a secret).
        name: String,
    },
    /// The value is too long or has a character cookies cannot carry
    /// (the value itself is not shown).
    #[error("the value of cookie `{name}` must be at most {MAX_VALUE_LEN} cookie characters")]
    InvalidValue {
        /// The cookie's name.
        name: String,
    },
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6265 `cookie-octet`: printable ASCII but space, `"`, `,`, `;` and `\`.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(is_token_byte)
}

/// The `Set-Cookie` value of the cookie `__Host-<name>` holding `value`:
/// `Path=/; Secure; HttpOnly; SameSite=Lax`, and `Max-Age` when given
/// (else a session cookie). The header value is marked sensitive.
///
/// # Errors
///
/// [`CookieError`] for a name that is not a short token, or a value that is
/// too long or not made of cookie characters (encode it first, for example
/// as base64url).
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>) -> Result<HeaderValue, CookieError> {
    if !valid_name(name) {
        return Err(CookieError::InvalidName {
            name: name.to_owned(),
        });
    }
    if value.len() > MAX_VALUE_LEN || !value.bytes().all(is_cookie_octet) {
        return Err(CookieError::InvalidValue {
            name: name.to_owned(),
        });
    }
    let mut s = format!("{HOST_PREFIX}{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={}", age.whole_seconds().max(0)));
    }
    let mut v = HeaderValue::from_str(&s).map_err(|_| CookieError::InvalidValue {
        name: name.to_owned(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// The `Set-Cookie` value that removes `__Host-<name>` (empty, `Max-Age=0`).
///
/// # Errors
///
/// [`CookieError::InvalidName`].
pub fn clear_cookie(name: &str) -> Result<HeaderValue, CookieError> {
    set_cookie(name, "", Some(Duration::ZERO))
}

/// The value of the cookie `__Host-<name>` in the request's `Cookie`
/// headers (all of them, as HTTP/2 may split it), without surrounding
/// double quotes.
///
/// Total and bounded: `None` when there is no such cookie, when it is given
/// more than once (ambiguous, so refused), when a header is not text, when
/// the headers are longer than [`MAX_COOKIE_HEADER_BYTES`] together, or
/// when the value is longer than [`MAX_VALUE_LEN`] or has a character
/// cookies cannot carry.
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    if !valid_name(name) {
        return None;
    }
    let mut total = 0usize;
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        total = total.saturating_add(value.len());
        if total > MAX_COOKIE_HEADER_BYTES {
            return None;
        }
        let text = value.to_str().ok()?;
        for pair in text.split(';') {
            let Some((n, v)) = pair.trim_matches(|c| c == ' ' || c == '\t').split_once('=') else {
                continue;
            };
            let matches = n.strip_prefix(HOST_PREFIX).is_some_and(|rest| rest == name);
            if !matches {
                continue;
            }
            if found.is_some() {
                return None;
            }
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            found = Some(v);
        }
    }
    found.filter(|v| v.len() <= MAX_VALUE_LEN && v.bytes().all(is_cookie_octet))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn building_checks_name_and_value() {
        let v = set_cookie("s", "abc", None).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-s=abc; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("abc"));
        assert_eq!(
            clear_cookie("s").unwrap().to_str().unwrap(),
            "__Host-s=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
        );
        for bad in ["", "a b", "a;b", "a=b", &"n".repeat(65)] {
            assert!(
                matches!(set_cookie(bad, "v", None), Err(CookieError::InvalidName { .. })),
                "{bad}"
            );
        }
        for bad in [
            "a b",
            "a;b",
            "a,b",
            "a\"b",
            "a\\b",
            "é",
            &"v".repeat(MAX_VALUE_LEN + 1),
        ] {
            let e = set_cookie("s", bad, None).unwrap_err();
            assert!(matches!(e, CookieError::InvalidValue { .. }));
            assert!(!e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn reading_is_exact_and_bounded() {
        let h = headers(&["x=1; __Host-s=abc", "__Host-t=\"q\""]);
        assert_eq!(read(&h, "s"), Some("abc"));
        assert_eq!(read(&h, "t"), Some("q"));
        assert_eq!(read(&h, "x"), None);
        assert_eq!(read(&headers(&["s=abc"]), "s"), None);
        assert_eq!(read(&headers(&["__host-s=abc"]), "s"), None);
        assert_eq!(read(&headers(&["__Host-s=a; __Host-s=b"]), "s"), None);
        assert_eq!(read(&headers(&["__Host-s=a b"]), "s"), None);
        assert_eq!(read(&headers(&["__Host-s="]), "s"), Some(""));
        assert_eq!(read(&headers(&[";;=;__Host-s"]), "s"), None);
        let big = format!("__Host-s=a; p={}", "x".repeat(MAX_COOKIE_HEADER_BYTES));
        assert_eq!(read(&headers(&[&big]), "s"), None);
        assert_eq!(read(&HeaderMap::new(), "s"), None);
    }
}
