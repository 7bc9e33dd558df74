//! Redacted secret newtypes.
//!
//! Tickets, passcodes, signing keys and session handles are wrapped so that
//! they never show up in `Debug` output, logs or error messages, and are
//! compared in constant time.

use std::fmt;

use subtle::ConstantTimeEq;

/// Constant-time equality of two byte strings (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A secret string, such as a redemption ticket or a one-time passcode.
///
/// `Debug` prints `SecretString(..)`; equality is constant time. The value is
/// reachable only through [`SecretString::expose`], so every place that reads
/// it is easy to find.
///
/// ```
/// use guestpass::secret::SecretString;
/// let s = SecretString::new("12345678");
/// assert_eq!(format!("{s:?}"), "SecretString(..)");
/// assert_eq!(s.expose(), "12345678");
/// ```
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call only where the value must leave the library
    /// (a mail body, a link handed to the host).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(..)")
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for SecretString {}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Secret key material, such as an HMAC key.
///
/// ```
/// use guestpass::secret::SecretBytes;
/// let k = SecretBytes::new(vec![7u8; 32]);
/// assert_eq!(format!("{k:?}"), "SecretBytes(32 bytes)");
/// ```
#[derive(Clone)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps key material.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self(value.into())
    }

    /// The key material.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for SecretBytes {}

/// A SHA-256 digest stored in place of a secret (a ticket verifier, a
/// session handle). Compared in constant time; `Debug` shows a short prefix
/// only, which is enough to correlate records and reveals nothing usable.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Constant-time comparison.
    pub fn ct_eq(&self, other: &Digest) -> bool {
        constant_time_eq(&self.0, &other.0)
    }

    /// Lowercase hexadecimal form, for storage adapters.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        push_hex(&mut out, &self.0);
        out
    }

    /// Parses the form written by [`Digest::to_hex`].
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Appends the lowercase hexadecimal form of `bytes` to `out`.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SecretString::new("hunter2-very-secret");
        let b = SecretBytes::new(b"hunter2-very-secret".to_vec());
        for shown in [format!("{s:?}"), format!("{b:?}"), format!("{:?}", Some(&s))] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(SecretString::new("a"), SecretString::new("a"));
        assert_ne!(SecretString::new("a"), SecretString::new("b"));
        assert_ne!(SecretString::new("a"), SecretString::new("aa"));
        assert!(!constant_time_eq(b"abc", b"abd"));
    }

    #[test]
    fn digest_hex_round_trip() {
        let d = Digest::sha256(b"x");
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
        assert_eq!(Digest::from_hex(&"é".repeat(32)), None);
    }
}
