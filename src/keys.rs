//! Signing keys and their rotation.
//!
//! A [`KeyRing`] holds one key that signs and any number of older keys that
//! still verify, each under a short key id written into what it signed. To
//! rotate: add the new key as the signing key and keep the old one as a
//! verification key until everything it signed has expired.
//!
//! Each configured secret is never used directly: per-purpose keys are
//! derived from it with HKDF-SHA256, so a ticket tag can never be replayed
//! as a passcode hash or the other way round, and authenticator secrets
//! are sealed at rest under a key of their own.

use std::fmt;

use ring::{aead, hkdf, hmac};

use crate::error::ConfigError;
use crate::idp::BindingKey;
use crate::secret::SecretBytes;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 16;

/// A secret with its key id.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    secret: SecretBytes,
}

impl SigningKey {
    /// A key. The id is 1 to 16 characters of `A-Z a-z 0-9 _ -`; the secret
    /// at least 32 bytes from a CSPRNG.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `keys`.
    ///
    /// ```
    /// use guestpass::keys::SigningKey;
    /// assert!(SigningKey::new("2026-11", [7u8; 32]).is_ok());
    /// assert!(SigningKey::new("k", [7u8; 8]).is_err());
    /// ```
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let id = id.into();
        let secret = SecretBytes::new(secret);
        if !valid_key_id(id.as_bytes()) {
            return Err(ConfigError::Invalid {
                field: "keys",
                reason: format!("key id `{id}` must be 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 _ -"),
            });
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::Invalid {
                field: "keys",
                reason: format!("key `{id}` is shorter than {MIN_SECRET_LEN} bytes"),
            });
        }
        Ok(Self { id, secret })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .finish()
    }
}

pub(crate) fn valid_key_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// What a derived key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Ticket,
    Passcode,
    FlowCsrf,
    Federation,
    TotpSeal,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::Ticket => b"guestpass/redemption-ticket/v1",
            Purpose::Passcode => b"guestpass/email-passcode/v1",
            Purpose::FlowCsrf => b"guestpass/flow-csrf/v1",
            Purpose::Federation => b"guestpass/federation-binding/v1",
            Purpose::TotpSeal => b"guestpass/totp-seal/v1",
        }
    }
}

pub(crate) struct DerivedKeys {
    pub(crate) id: String,
    pub(crate) ticket: hmac::Key,
    pub(crate) passcode: hmac::Key,
    pub(crate) csrf: hmac::Key,
    /// Binds external sign-ins' nonce and PKCE verifier to their pending
    /// authorization.
    pub(crate) federation: BindingKey,
    /// The AES-256-GCM key that seals authenticator (TOTP) secrets at rest.
    pub(crate) totp_seal: SecretBytes,
}

pub(crate) fn derive(secret: &[u8], purpose: Purpose) -> hmac::Key {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"guestpass");
    let prk = salt.extract(secret);
    let info = [purpose.info()];
    match prk.expand(&info, hmac::HMAC_SHA256) {
        Ok(okm) => hmac::Key::from(okm),
        // expand only fails for outputs longer than 255 hash lengths; ours is one.
        Err(_) => hmac::Key::new(hmac::HMAC_SHA256, secret),
    }
}

/// 32 bytes of key material for AES-256-GCM, derived like [`derive`]'s keys
/// (HKDF-SHA256, salt `guestpass`, the purpose as info).
pub(crate) fn derive_aead(secret: &[u8], purpose: Purpose) -> SecretBytes {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"guestpass");
    let prk = salt.extract(secret);
    let info = [purpose.info()];
    let mut out = [0u8; 32];
    match prk
        .expand(&info, &aead::AES_256_GCM)
        .and_then(|okm| okm.fill(&mut out))
    {
        Ok(()) => SecretBytes::new(out),
        // expand only fails for outputs longer than 255 hash lengths; ours is
        // one. Still a key of this secret and purpose, never a constant.
        Err(_) => SecretBytes::new(hmac::sign(&derive(secret, purpose), b"aead").as_ref()),
    }
}

/// The signing key plus the keys still accepted for verification.
///
/// ```
/// use guestpass::keys::{KeyRing, SigningKey};
/// let old = SigningKey::new("k1", [1u8; 32])?;
/// let new = SigningKey::new("k2", [2u8; 32])?;
/// let ring = KeyRing::new(new)?.with_verification_key(old)?;
/// assert_eq!(ring.signing_key_id(), "k2");
/// # Ok::<(), guestpass::error::ConfigError>(())
/// ```
pub struct KeyRing {
    keys: Vec<DerivedKeys>,
    /// The signing key's federation binding key.
    binding: BindingKey,
}

impl KeyRing {
    /// A ring that signs (and verifies) with `signing`.
    ///
    /// # Errors
    ///
    /// Never for a key built by [`SigningKey::new`]; kept fallible for
    /// future checks.
    pub fn new(signing: SigningKey) -> Result<Self, ConfigError> {
        let derived = Self::derive_all(&signing);
        Ok(Self {
            binding: derived.federation.clone(),
            keys: vec![derived],
        })
    }

    /// Adds a key that verifies but no longer signs.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when the key id is already in the ring.
    pub fn with_verification_key(mut self, key: SigningKey) -> Result<Self, ConfigError> {
        if self.keys.iter().any(|k| k.id == key.id) {
            return Err(ConfigError::Invalid {
                field: "keys",
                reason: format!("key id `{}` is used twice", key.id),
            });
        }
        self.keys.push(Self::derive_all(&key));
        Ok(self)
    }

    fn derive_all(key: &SigningKey) -> DerivedKeys {
        DerivedKeys {
            id: key.id.clone(),
            ticket: derive(key.secret.expose(), Purpose::Ticket),
            passcode: derive(key.secret.expose(), Purpose::Passcode),
            csrf: derive(key.secret.expose(), Purpose::FlowCsrf),
            federation: BindingKey::from_key(derive(key.secret.expose(), Purpose::Federation)),
            totp_seal: derive_aead(key.secret.expose(), Purpose::TotpSeal),
        }
    }

    /// The id of the key that signs.
    pub fn signing_key_id(&self) -> &str {
        self.keys.first().map_or("", |k| k.id.as_str())
    }

    pub(crate) fn signing(&self) -> Option<&DerivedKeys> {
        self.keys.first()
    }

    /// The signing key's [`BindingKey`] for external sign-ins (the key
    /// derived for purpose `guestpass/federation-binding/v1`).
    pub(crate) fn binding_key(&self) -> BindingKey {
        self.binding.clone()
    }

    pub(crate) fn find(&self, id: &[u8]) -> Option<&DerivedKeys> {
        self.keys.iter().find(|k| k.id.as_bytes() == id)
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &DerivedKeys> {
        self.keys.iter()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_ids_and_short_secrets() {
        assert!(SigningKey::new("", [0u8; 32]).is_err());
        assert!(SigningKey::new("a.b", [0u8; 32]).is_err());
        assert!(SigningKey::new("x".repeat(17), [0u8; 32]).is_err());
        assert!(SigningKey::new("ok", [0u8; 31]).is_err());
    }

    #[test]
    fn debug_shows_ids_not_secrets() {
        let k = SigningKey::new("k1", [0xabu8; 32]).unwrap();
        let ring = KeyRing::new(k.clone()).unwrap();
        let shown = format!("{k:?} {ring:?}");
        assert!(shown.contains("k1"));
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("abab"));
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let a = SigningKey::new("k1", [1u8; 32]).unwrap();
        let b = SigningKey::new("k1", [2u8; 32]).unwrap();
        assert!(KeyRing::new(a).unwrap().with_verification_key(b).is_err());
    }

    #[test]
    fn purposes_derive_different_keys() {
        let t = hmac::sign(&derive(&[9u8; 32], Purpose::Ticket), b"m");
        let p = hmac::sign(&derive(&[9u8; 32], Purpose::Passcode), b"m");
        assert_ne!(t.as_ref(), p.as_ref());
        let f = hmac::sign(&derive(&[9u8; 32], Purpose::Federation), b"m");
        assert_ne!(f.as_ref(), t.as_ref());
        assert_ne!(f.as_ref(), p.as_ref());
        let s = derive_aead(&[9u8; 32], Purpose::TotpSeal);
        assert_eq!(s.len(), aead::AES_256_GCM.key_len());
        assert_ne!(s.expose(), derive_aead(&[9u8; 32], Purpose::Ticket).expose());
        assert_ne!(s.expose(), derive_aead(&[8u8; 32], Purpose::TotpSeal).expose());
    }

    #[test]
    fn the_seal_key_is_hkdf_sha256_of_the_secret() {
        // HKDF-SHA256 (RFC 5869) of one output block computed by hand:
        // PRK = HMAC(salt, secret), OKM = HMAC(PRK, info || 0x01).
        let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"guestpass"), &[9u8; 32]);
        let mut input = b"guestpass/totp-seal/v1".to_vec();
        input.push(1);
        let okm = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()), &input);
        assert_eq!(derive_aead(&[9u8; 32], Purpose::TotpSeal).expose(), okm.as_ref());
    }
}
