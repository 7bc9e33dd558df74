//! Redemption tickets: the secret in an invitation link.
//!
//! # Format
//!
//! A ticket is the unpadded base64url encoding of
//!
//! ```text
//! version (1 byte, 1) | purpose (1 byte, b'R') | key id length k (1 byte, 1..=16)
//! | key id (k bytes) | invitation id (16) | verifier (32) | expiry (8, i64 BE unix seconds)
//! | tag (32)
//! ```
//!
//! where the tag is HMAC-SHA256, under the ticket key derived from the named
//! key, over `"guestpass-ticket\0" | tenant id length (1 byte) | tenant id |`
//! everything before the tag. The tenant is in the MAC, not in the ticket: a
//! ticket issued for one tenant fails the tag check in any other.
//!
//! The verifier is 256 bits from the CSPRNG. Only its SHA-256 is stored (in
//! the invitation's [`TicketBinding`]), so a copy of the database redeems
//! nothing.
//!
//! # Verification
//!
//! [`verify`] is total: any input, of any length or content, yields a value
//! or a [`TicketError`], without panicking, in time bounded by
//! [`MAX_TICKET_LEN`]. It checks, in order, length, canonical base64url,
//! layout, version and purpose, key id, tag (constant time) and expiry, all
//! before anything touches the store. Redemption then compares the
//! verifier's hash with the invitation's active binding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use time::OffsetDateTime;

use crate::directory::TicketBinding;
use crate::error::{Error, TicketError};
use crate::id::Id;
use crate::keys::{KeyRing, MAX_KEY_ID_LEN, valid_key_id};
use crate::random::{self, SecureRandom};
use crate::secret::{Digest, SecretString};

/// Format version written and accepted.
pub const VERSION: u8 = 1;
/// The purpose byte of redemption tickets.
pub const PURPOSE_REDEEM: u8 = b'R';
/// Longest accepted ticket text, in bytes; longer input is refused unread.
pub const MAX_TICKET_LEN: usize = 160;

const TAG_LEN: usize = 32;
const FIXED_LEN: usize = 3 + 16 + 32 + 8;
const CONTEXT: &[u8] = b"guestpass-ticket\0";

/// A freshly issued ticket: the text for the link, and what to store.
#[derive(Debug)]
pub struct IssuedTicket {
    /// The ticket text; goes into the link and nowhere else.
    pub token: SecretString,
    /// What the invitation record keeps.
    pub binding: TicketBinding,
}

/// The fields of a ticket that parsed, before its tag is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTicket<'a> {
    /// Format version.
    pub version: u8,
    /// Purpose byte.
    pub purpose: u8,
    /// Key id bytes.
    pub key_id: &'a [u8],
    /// The invitation.
    pub invitation_id: Id,
    /// Expiry, unix seconds.
    pub expires_unix: i64,
    signed: &'a [u8],
    verifier: &'a [u8],
    tag: &'a [u8],
}

/// A ticket whose tag and expiry checked out.
///
/// It keeps the verifier itself (redacted from `Debug`); redemption compares
/// [`VerifiedTicket::verifier_hash`] with the invitation's stored binding.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedTicket {
    /// The invitation it redeems.
    pub invitation_id: Id,
    /// When it expires.
    pub expires_at: OffsetDateTime,
    verifier: [u8; 32],
}

impl VerifiedTicket {
    /// SHA-256 of the verifier, to compare with the stored binding.
    pub fn verifier_hash(&self) -> Digest {
        Digest::sha256(&self.verifier)
    }
}

impl std::fmt::Debug for VerifiedTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTicket")
            .field("invitation_id", &self.invitation_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Issues a ticket for `invitation_id` in `tenant_id`, valid until
/// `expires_at`, signed with the ring's signing key.
///
/// # Errors
///
/// When the random generator fails or the ring has no signing key.
pub fn issue(
    keys: &KeyRing,
    tenant_id: &str,
    invitation_id: Id,
    expires_at: OffsetDateTime,
    rng: &dyn SecureRandom,
) -> Result<IssuedTicket, Error> {
    let key = keys
        .signing()
        .ok_or(crate::error::ConfigError::Missing { field: "keys" })?;
    let verifier = random::bytes::<32>(rng)?;
    let kid = key.id.as_bytes();
    let mut buf = Vec::with_capacity(FIXED_LEN + kid.len() + TAG_LEN);
    buf.push(VERSION);
    buf.push(PURPOSE_REDEEM);
    buf.push(kid.len() as u8);
    buf.extend_from_slice(kid);
    buf.extend_from_slice(invitation_id.as_bytes());
    buf.extend_from_slice(&verifier);
    buf.extend_from_slice(&expires_at.unix_timestamp().to_be_bytes());
    let tag = sign(&key.ticket, tenant_id, &buf);
    buf.extend_from_slice(tag.as_ref());
    Ok(IssuedTicket {
        token: SecretString::new(URL_SAFE_NO_PAD.encode(&buf)),
        binding: TicketBinding {
            verifier_hash: Digest::sha256(&verifier),
            expires_at,
        },
    })
}

fn sign(key: &hmac::Key, tenant_id: &str, signed: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(CONTEXT);
    let tenant = tenant_id.as_bytes();
    // Tenant ids are bounded by configuration; the length byte saturates
    // only for ids the configuration refuses.
    ctx.update(&[tenant.len().min(255) as u8]);
    ctx.update(tenant);
    ctx.update(signed);
    ctx.sign()
}

/// Decodes the layout of a ticket without checking its tag. Total over any
/// input. Exposed for fuzzing and diagnostics; [`verify`] is what callers
/// want.
///
/// # Errors
///
/// [`TicketError::Malformed`], [`TicketError::UnsupportedVersion`] or
/// [`TicketError::WrongPurpose`].
pub fn parse(input: &[u8], scratch: &mut Vec<u8>) -> Result<(), TicketError> {
    decode(input, scratch)?;
    layout(scratch).map(|_| ())
}

/// Bounds and canonical base64url decoding into `scratch`.
fn decode(input: &[u8], scratch: &mut Vec<u8>) -> Result<(), TicketError> {
    scratch.clear();
    if input.is_empty() {
        return Err(TicketError::Malformed("empty"));
    }
    if input.len() > MAX_TICKET_LEN {
        return Err(TicketError::Malformed("too long"));
    }
    URL_SAFE_NO_PAD
        .decode_vec(input, scratch)
        .map_err(|_| TicketError::Malformed("not canonical base64url"))?;
    Ok(())
}

fn layout(bytes: &[u8]) -> Result<ParsedTicket<'_>, TicketError> {
    let (&version, rest) = bytes.split_first().ok_or(TicketError::Malformed("truncated"))?;
    if version != VERSION {
        return Err(TicketError::UnsupportedVersion { version });
    }
    let (&purpose, rest) = rest.split_first().ok_or(TicketError::Malformed("truncated"))?;
    if purpose != PURPOSE_REDEEM {
        return Err(TicketError::WrongPurpose);
    }
    let (&kid_len, rest) = rest.split_first().ok_or(TicketError::Malformed("truncated"))?;
    let kid_len = usize::from(kid_len);
    if kid_len == 0 || kid_len > MAX_KEY_ID_LEN {
        return Err(TicketError::Malformed("bad key id length"));
    }
    if rest.len() != kid_len + 16 + 32 + 8 + TAG_LEN {
        return Err(TicketError::Malformed("wrong length"));
    }
    let (key_id, rest) = rest.split_at(kid_len);
    if !valid_key_id(key_id) {
        return Err(TicketError::Malformed("bad key id"));
    }
    let (id, rest) = rest.split_at(16);
    let (verifier, rest) = rest.split_at(32);
    let (expiry, tag) = rest.split_at(8);
    let mut id_bytes = [0u8; 16];
    id_bytes.copy_from_slice(id);
    let mut exp = [0u8; 8];
    exp.copy_from_slice(expiry);
    let signed_len = bytes.len() - TAG_LEN;
    Ok(ParsedTicket {
        version,
        purpose,
        key_id,
        invitation_id: Id::from_bytes(id_bytes),
        expires_unix: i64::from_be_bytes(exp),
        signed: &bytes[..signed_len],
        verifier,
        tag,
    })
}

/// Verifies a ticket for `tenant_id` at time `now`: layout, key, tag,
/// expiry. Touches no store.
///
/// # Errors
///
/// A [`TicketError`] naming the first check that failed.
///
/// ```
/// use guestpass::invitation::ticket;
/// use guestpass::keys::{KeyRing, SigningKey};
/// use guestpass::random::SeededRandom;
/// use guestpass::id::Id;
/// use time::{Duration, macros::datetime};
///
/// let keys = KeyRing::new(SigningKey::new("k1", [7u8; 32])?)?;
/// let rng = SeededRandom::new(1);
/// let now = datetime!(2026-11-01 12:00 UTC);
/// let id = Id::random(&rng)?;
/// let issued = ticket::issue(&keys, "contoso", id, now + Duration::days(30), &rng)?;
///
/// let ok = ticket::verify(&keys, "contoso", issued.token.expose(), now)?;
/// assert_eq!(ok.invitation_id, id);
/// assert_eq!(ok.verifier_hash(), issued.binding.verifier_hash);
/// assert!(ticket::verify(&keys, "fabrikam", issued.token.expose(), now).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify(
    keys: &KeyRing,
    tenant_id: &str,
    token: &str,
    now: OffsetDateTime,
) -> Result<VerifiedTicket, TicketError> {
    let mut scratch = Vec::with_capacity(128);
    verify_with(keys, tenant_id, token.as_bytes(), now, &mut scratch)
}

/// [`verify`] over raw bytes with a caller-provided buffer (no allocation
/// when the buffer is reused).
///
/// # Errors
///
/// As [`verify`].
pub fn verify_with(
    keys: &KeyRing,
    tenant_id: &str,
    token: &[u8],
    now: OffsetDateTime,
    scratch: &mut Vec<u8>,
) -> Result<VerifiedTicket, TicketError> {
    decode(token, scratch)?;
    let t = layout(scratch)?;
    let key = keys.find(t.key_id).ok_or(TicketError::UnknownKey)?;
    let mut ctx = hmac::Context::with_key(&key.ticket);
    ctx.update(CONTEXT);
    let tenant = tenant_id.as_bytes();
    ctx.update(&[tenant.len().min(255) as u8]);
    ctx.update(tenant);
    ctx.update(t.signed);
    let expected = ctx.sign();
    if !crate::secret::constant_time_eq(expected.as_ref(), t.tag) {
        return Err(TicketError::BadSignature);
    }
    let expires_at = OffsetDateTime::from_unix_timestamp(t.expires_unix)
        .map_err(|_| TicketError::Malformed("bad expiry"))?;
    if now >= expires_at {
        return Err(TicketError::Expired);
    }
    let verifier = <[u8; 32]>::try_from(t.verifier).map_err(|_| TicketError::Malformed("wrong length"))?;
    Ok(VerifiedTicket {
        invitation_id: t.invitation_id,
        expires_at,
        verifier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::random::SeededRandom;
    use time::Duration;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);

    fn ring(id: &str, b: u8) -> KeyRing {
        KeyRing::new(SigningKey::new(id, [b; 32]).unwrap()).unwrap()
    }

    fn fresh(keys: &KeyRing) -> (Id, IssuedTicket) {
        let rng = SeededRandom::new(9);
        let id = Id::random(&rng).unwrap();
        (
            id,
            issue(keys, "contoso", id, NOW + Duration::days(30), &rng).unwrap(),
        )
    }

    #[test]
    fn round_trip_and_bounded_length() {
        let keys = ring("k1", 1);
        let (id, t) = fresh(&keys);
        assert!(t.token.expose().len() <= MAX_TICKET_LEN);
        let v = verify(&keys, "contoso", t.token.expose(), NOW).unwrap();
        assert_eq!(v.invitation_id, id);
        assert_eq!(v.verifier_hash(), t.binding.verifier_hash);
        assert!(!format!("{v:?}").contains("verifier"), "{v:?}");
        assert_eq!(v.expires_at, NOW + Duration::days(30));
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let keys = ring("k1", 1);
        let (_, t) = fresh(&keys);
        let raw = URL_SAFE_NO_PAD.decode(t.token.expose()).unwrap();
        for i in 0..raw.len() * 8 {
            let mut m = raw.clone();
            m[i / 8] ^= 1 << (i % 8);
            let text = URL_SAFE_NO_PAD.encode(&m);
            assert!(verify(&keys, "contoso", &text, NOW).is_err(), "bit {i}");
        }
    }

    #[test]
    fn expiry_is_checked_against_the_given_time() {
        let keys = ring("k1", 1);
        let (_, t) = fresh(&keys);
        let at = NOW + Duration::days(30);
        assert_eq!(
            verify(&keys, "contoso", t.token.expose(), at),
            Err(TicketError::Expired)
        );
        assert!(verify(&keys, "contoso", t.token.expose(), at - Duration::seconds(1)).is_ok());
    }

    #[test]
    fn rotation_keeps_old_tickets_valid_and_unknown_keys_fail() {
        let old = ring("k1", 1);
        let (_, t) = fresh(&old);
        let rotated = KeyRing::new(SigningKey::new("k2", [2u8; 32]).unwrap())
            .unwrap()
            .with_verification_key(SigningKey::new("k1", [1u8; 32]).unwrap())
            .unwrap();
        assert!(verify(&rotated, "contoso", t.token.expose(), NOW).is_ok());
        let (_, t2) = fresh(&rotated);
        assert_eq!(
            verify(&old, "contoso", t2.token.expose(), NOW),
            Err(TicketError::UnknownKey)
        );
        // The same id with another secret: the tag does not verify.
        assert_eq!(
            verify(&ring("k1", 3), "contoso", t.token.expose(), NOW),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn another_tenant_or_reencoding_is_rejected() {
        let keys = ring("k1", 1);
        let (_, t) = fresh(&keys);
        assert_eq!(
            verify(&keys, "fabrikam", t.token.expose(), NOW),
            Err(TicketError::BadSignature)
        );
        let raw = URL_SAFE_NO_PAD.decode(t.token.expose()).unwrap();
        let padded = base64::engine::general_purpose::URL_SAFE.encode(&raw);
        let standard = base64::engine::general_purpose::STANDARD.encode(&raw);
        for text in [padded, standard, format!("{} ", t.token.expose())] {
            if text != t.token.expose() {
                assert!(
                    matches!(
                        verify(&keys, "contoso", &text, NOW),
                        Err(TicketError::Malformed(_))
                    ),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn truncated_oversized_and_foreign_inputs_are_malformed() {
        let keys = ring("k1", 1);
        let (_, t) = fresh(&keys);
        let s = t.token.expose();
        for n in 0..s.len() {
            assert!(verify(&keys, "contoso", &s[..n], NOW).is_err());
        }
        let long = "A".repeat(MAX_TICKET_LEN + 1);
        assert_eq!(
            verify(&keys, "contoso", &long, NOW),
            Err(TicketError::Malformed("too long"))
        );
        // A JWT is not a ticket.
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
        assert!(verify(&keys, "contoso", jwt, NOW).is_err());
        // Another purpose byte is refused even with a valid layout.
        let mut raw = URL_SAFE_NO_PAD.decode(s).unwrap();
        raw[1] = b'P';
        assert_eq!(
            verify(&keys, "contoso", &URL_SAFE_NO_PAD.encode(&raw), NOW),
            Err(TicketError::WrongPurpose)
        );
    }
}
