//! Authenticator-app codes (TOTP, RFC 6238): the second step-up method
//! besides an emailed code.
//!
//! A user enrols by scanning the [`otpauth_uri`] of a fresh [`TotpSecret`]
//! into an authenticator app and confirming one code; from then on the app
//! shows a new code every 30 seconds and [`verify`] checks it.
//!
//! # Parameters
//!
//! HMAC-SHA1, 6 digits, 30-second steps and a 160-bit secret: the values of
//! RFC 6238's reference and the only ones every authenticator app supports
//! (several ignore the `algorithm`, `digits` and `period` parameters of the
//! URI). SHA-1 is used only inside HMAC, whose security does not rest on the
//! collision resistance SHA-1 lost. [`verify`] accepts the previous and the
//! next step besides the current one ([`DEFAULT_SKEW_STEPS`]) for clock drift
//! and for a code typed just as it changed.
//!
//! # Replay and guessing
//!
//! A code is valid for a whole step, so the same code must not be accepted
//! twice: [`verify`] returns the step it matched, the caller stores it as the
//! enrollment's [`TotpEnrollment::last_used_step`] with a compare-and-set (so
//! two concurrent uses of one code cannot both pass), and any later code of
//! that step or an earlier one is [`TotpError::Replayed`]. `verify` does not
//! count attempts: a guess succeeds with a chance of about 3 in a million,
//! so the caller limits wrong tries as it does for emailed codes.
//!
//! # At rest
//!
//! The secret is stored only sealed ([`seal`], [`SealedTotpSecret`]):
//! AES-256-GCM under a key derived from the key ring's signing key for this
//! purpose alone, with the user's id as associated data, so a sealed secret
//! copied onto another user's record does not open. Sealed secrets carry
//! their key id and keep opening after the key that sealed them became a
//! verification key. Each seal draws a random 96-bit nonce, which is safe
//! for far more secrets than any directory holds under one key.
//!
//! ```
//! use guestpass::idp::totp::{self, TotpError, TotpSecret};
//! use guestpass::keys::{KeyRing, SigningKey};
//! use guestpass::random::SeededRandom;
//! use time::macros::datetime;
//!
//! let rng = SeededRandom::new(7); // tests only; production uses `SystemRandom`
//! let secret = TotpSecret::generate(&rng)?;
//! let uri = totp::otpauth_uri(&secret, "Example Co", "ada@example.com")?;
//! assert!(uri.expose().starts_with("otpauth://totp/Example%20Co:ada%40example.com?secret="));
//!
//! // The app computes the code of the current step; the server verifies it.
//! let now = datetime!(2026-11-01 12:00:10 UTC);
//! let code = secret.code_at_step(totp::step_at(now));
//! let step = totp::verify(&secret, &code, now, totp::DEFAULT_SKEW_STEPS, None)?;
//! assert_eq!(step, totp::step_at(now));
//! // Stored as `last_used_step`, the step makes the same code a replay.
//! let again = totp::verify(&secret, &code, now, totp::DEFAULT_SKEW_STEPS, Some(step));
//! assert_eq!(again, Err(TotpError::Replayed));
//!
//! // Sealed for storage, bound to the user.
//! let keys = KeyRing::new(SigningKey::new("k1", [7u8; 32])?)?;
//! let sealed = totp::seal(&keys, &secret, b"user-1", &rng)?;
//! assert_eq!(totp::open(&keys, &sealed, b"user-1")?.code_at_step(step), code);
//! assert_eq!(totp::open(&keys, &sealed, b"user-2").err(), Some(TotpError::Unsealable));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{aead, hmac};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{ConfigError, Error};
use crate::keys::{DerivedKeys, KeyRing};
use crate::random::{self, SecureRandom};
use crate::secret::{SecretBytes, SecretString, constant_time_eq};

/// Digits in a code.
pub const DIGITS: usize = 6;
/// Length of a step, in seconds.
pub const PERIOD_SECONDS: i64 = 30;
/// Length of a generated secret, in bytes (160 bits, the HMAC-SHA1 output
/// size RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;
/// Steps accepted on either side of the current one: the previous and the
/// next 30 seconds.
pub const DEFAULT_SKEW_STEPS: u64 = 1;
/// Most steps [`verify`] looks at on either side of the current one (five
/// minutes); a larger `skew_steps` counts as this many.
pub const MAX_SKEW_STEPS: u64 = 10;
/// Consecutive wrong codes, across every flow, that lock an authenticator.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 10;
/// Longest issuer or account name [`otpauth_uri`] accepts, in bytes.
pub const MAX_LABEL_LEN: usize = 256;

/// Shortest secret [`TotpSecret::from_bytes`] accepts (128 bits, RFC 4226's
/// minimum).
const MIN_SECRET_LEN: usize = 16;
/// Longest secret [`TotpSecret::from_bytes`] accepts (one HMAC-SHA1 block).
const MAX_SECRET_LEN: usize = 64;
/// Longest code input looked at; anything longer is malformed.
const MAX_CODE_INPUT_LEN: usize = 64;
/// `10^DIGITS`.
const CODE_MODULUS: u32 = 1_000_000;
/// Length of an AES-GCM tag.
const TAG_LEN: usize = 16;

/// Why a code, a secret or an authenticator label was refused.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TotpError {
    /// The code is not 6 ASCII digits.
    #[error("the code must be 6 digits")]
    Malformed,
    /// The code matches none of the accepted steps.
    #[error("the code is wrong or has expired")]
    Wrong,
    /// The code is of a step at or before the last one accepted.
    #[error("this code was already used; wait for the next one")]
    Replayed,
    /// The secret is shorter than 16 or longer than 64 bytes.
    #[error("the authenticator secret is unusable")]
    InvalidSecret,
    /// An issuer or account name is empty, longer than
    /// [`MAX_LABEL_LEN`] bytes or contains `:`.
    #[error("issuer and account name must not contain `:` and must not be empty")]
    InvalidLabel,
    /// A sealed secret names an unknown key, is damaged, or belongs to
    /// another binding.
    #[error("the authenticator secret cannot be opened with the configured keys")]
    Unsealable,
    /// The authenticator reached its limit of consecutive wrong codes
    /// ([`MAX_CONSECUTIVE_FAILURES`]); an administrator removes it (a reset
    /// redemption does) before it can be used or enrolled again.
    #[error("too many wrong codes; the authenticator is locked")]
    Locked,
}

/// A TOTP shared secret.
///
/// `Debug` prints `TotpSecret(..)`; equality is constant time. The secret
/// leaves the library only through [`TotpSecret::base32`] and
/// [`otpauth_uri`] (for the enrollment QR code) and sealed by [`seal`].
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(SecretBytes);

impl TotpSecret {
    /// A new 160-bit secret from `rng`.
    ///
    /// # Errors
    ///
    /// When the random generator fails.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, Error> {
        Ok(Self(SecretBytes::new(random::bytes::<SECRET_LEN>(rng)?)))
    }

    /// A secret from its bytes (an existing enrollment), 16 to 64 bytes.
    ///
    /// # Errors
    ///
    /// [`TotpError::InvalidSecret`] for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TotpError> {
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(TotpError::InvalidSecret);
        }
        Ok(Self(SecretBytes::new(bytes)))
    }

    /// A secret from its RFC 4648 base32 form, as [`base32`](Self::base32)
    /// writes it and authenticator apps show it: letters in either case,
    /// spaces and `=` padding ignored, at most 128 characters.
    ///
    /// # Errors
    ///
    /// [`TotpError::InvalidSecret`] for any other character, leftover
    /// bits that are not zero, or a length outside 16 to 64 bytes.
    ///
    /// ```
    /// use guestpass::idp::totp::TotpSecret;
    /// let s = TotpSecret::from_base32("GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ")?;
    /// assert_eq!(s.base32().expose(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    /// assert!(TotpSecret::from_base32("not base32!").is_err());
    /// # Ok::<(), guestpass::idp::totp::TotpError>(())
    /// ```
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        if text.len() > 128 {
            return Err(TotpError::InvalidSecret);
        }
        let mut out = Vec::with_capacity(text.len() * 5 / 8);
        let mut buffer: u32 = 0;
        let mut bits: u32 = 0;
        for c in text.bytes().filter(|c| *c != b' ' && *c != b'=') {
            let value = match c.to_ascii_uppercase() {
                c @ b'A'..=b'Z' => c - b'A',
                c @ b'2'..=b'7' => c - b'2' + 26,
                _ => return Err(TotpError::InvalidSecret),
            };
            buffer = (buffer << 5) | u32::from(value);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push(((buffer >> bits) & 0xff) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        if buffer != 0 {
            return Err(TotpError::InvalidSecret);
        }
        Self::from_bytes(&out)
    }

    /// The secret in RFC 4648 base32 (upper case, no padding), the form
    /// authenticator apps take when typed in by hand.
    pub fn base32(&self) -> SecretString {
        SecretString::new(base32(self.0.expose()))
    }

    /// The code of `step`: HMAC-SHA1 of the big-endian step, RFC 4226
    /// dynamic truncation, the last 6 decimal digits, zero-padded.
    pub fn code_at_step(&self, step: u64) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, self.0.expose());
        let tag = hmac::sign(&key, &step.to_be_bytes());
        let mac = tag.as_ref();
        let offset = usize::from(mac.last().map_or(0, |b| b & 0x0f));
        let mut word = [0u8; 4];
        for (w, b) in word.iter_mut().zip(mac.iter().skip(offset)) {
            *w = *b;
        }
        let value = (u32::from_be_bytes(word) & 0x7fff_ffff) % CODE_MODULUS;
        format!("{value:0width$}", width = DIGITS)
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    for b in bytes {
        buffer = (buffer << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 0x1f) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 0x1f) as usize]));
    }
    out
}

/// The step of a time: `floor(unix_seconds / 30)`; times before 1970 give 0.
pub fn step_at(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp().div_euclid(PERIOD_SECONDS)).unwrap_or(0)
}

/// The `otpauth://totp/...` URI (Key Uri Format) an authenticator app reads
/// from the enrollment QR code:
/// `otpauth://totp/{issuer}:{account}?secret={base32}&issuer={issuer}&algorithm=SHA1&digits=6&period=30`,
/// with issuer and account percent-encoded (a space as `%20`). It holds the
/// secret, hence a [`SecretString`].
///
/// # Errors
///
/// [`TotpError::InvalidLabel`] when the issuer or the account name is empty,
/// longer than [`MAX_LABEL_LEN`] bytes or contains `:` (the label's
/// separator).
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str) -> Result<SecretString, TotpError> {
    for label in [issuer, account] {
        if label.trim().is_empty() || label.len() > MAX_LABEL_LEN || label.contains(':') {
            return Err(TotpError::InvalidLabel);
        }
    }
    let issuer = percent_encode(issuer);
    let account = percent_encode(account);
    let secret = secret.base32();
    Ok(SecretString::new(format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECONDS}",
        secret.expose()
    )))
}

/// Percent-encodes all but `A-Z a-z 0-9 * - . _`. The form encoder writes a
/// space as `+`, which in the label is a plus and which some apps show as
/// one in the issuer too; a literal `+` comes out as `%2B`, so every `+` it
/// writes is a space and becomes `%20`.
fn percent_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .map(|part| if part == "+" { "%20" } else { part })
        .collect()
}

/// Verifies `code` at `now` and returns the step it matched, for the caller
/// to store as the new `last_used_step` with a compare-and-set (so two
/// concurrent uses of one code cannot both pass).
///
/// `code` is 6 ASCII digits once ASCII whitespace around it is trimmed, with
/// at most one space between the digits (`123 456`, as apps show it). It is
/// compared in constant time with the codes of every step from
/// `now - skew_steps` to `now + skew_steps` (at most [`MAX_SKEW_STEPS`] each
/// way), all of them, without stopping at a match. Of the steps it matches,
/// the newest after `last_used_step` is returned.
///
/// # Errors
///
/// [`TotpError::Malformed`] when `code` is not 6 digits,
/// [`TotpError::Replayed`] when it matches only steps at or before
/// `last_used_step`, [`TotpError::Wrong`] when it matches none.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now: OffsetDateTime,
    skew_steps: u64,
    last_used_step: Option<u64>,
) -> Result<u64, TotpError> {
    let digits = normalize(code).ok_or(TotpError::Malformed)?;
    let current = step_at(now);
    let skew = skew_steps.min(MAX_SKEW_STEPS);
    let mut fresh = None;
    let mut replayed = false;
    for step in current.saturating_sub(skew)..=current.saturating_add(skew) {
        let matches = constant_time_eq(secret.code_at_step(step).as_bytes(), &digits);
        let used = last_used_step.is_some_and(|last| step <= last);
        if matches && !used {
            fresh = Some(step);
        }
        replayed |= matches && used;
    }
    match fresh {
        Some(step) => Ok(step),
        None if replayed => Err(TotpError::Replayed),
        None => Err(TotpError::Wrong),
    }
}

/// The 6 digits of a submitted code, or `None` when it is not one.
fn normalize(code: &str) -> Option<[u8; DIGITS]> {
    if code.len() > MAX_CODE_INPUT_LEN {
        return None;
    }
    let mut digits = [0u8; DIGITS];
    let mut count = 0;
    let mut spaces = 0;
    for b in code.trim_ascii().bytes() {
        if b == b' ' && spaces == 0 {
            spaces += 1;
        } else if b.is_ascii_digit() {
            *digits.get_mut(count)? = b;
            count += 1;
        } else {
            return None;
        }
    }
    (count == DIGITS).then_some(digits)
}

/// A [`TotpSecret`] sealed at rest: AES-256-GCM under a key derived from
/// the key ring's key `keyId`, with the caller's binding (the user id) as
/// associated data.
///
/// Serialized as `{"keyId": "...", "nonce": "<base64url>", "ciphertext":
/// "<base64url>"}`. `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedTotpSecret {
    key_id: String,
    nonce: String,
    ciphertext: String,
}

impl SealedTotpSecret {
    /// The id of the key that sealed it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

impl fmt::Debug for SealedTotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedTotpSecret")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn sealing_key(keys: &DerivedKeys) -> Option<aead::LessSafeKey> {
    aead::UnboundKey::new(&aead::AES_256_GCM, keys.totp_seal.expose())
        .ok()
        .map(aead::LessSafeKey::new)
}

/// Seals `secret` under the key ring's signing key, bound to `binding` (the
/// user id's bytes), with a random 96-bit nonce from `rng`.
///
/// # Errors
///
/// When the random generator fails or the ring has no signing key.
pub fn seal(
    keys: &KeyRing,
    secret: &TotpSecret,
    binding: &[u8],
    rng: &dyn SecureRandom,
) -> Result<SealedTotpSecret, Error> {
    seal_bytes(keys, secret.0.expose(), binding, rng)
}

fn seal_bytes(
    keys: &KeyRing,
    plaintext: &[u8],
    binding: &[u8],
    rng: &dyn SecureRandom,
) -> Result<SealedTotpSecret, Error> {
    let unusable = || ConfigError::Invalid {
        field: "keys",
        reason: "the authenticator sealing key is unusable".to_owned(),
    };
    let derived = keys.signing().ok_or(ConfigError::Missing { field: "keys" })?;
    let key = sealing_key(derived).ok_or_else(unusable)?;
    let nonce = random::bytes::<{ aead::NONCE_LEN }>(rng)?;
    let mut in_out = plaintext.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(binding),
        &mut in_out,
    )
    .map_err(|_| unusable())?;
    Ok(SealedTotpSecret {
        key_id: derived.id.clone(),
        nonce: URL_SAFE_NO_PAD.encode(nonce),
        ciphertext: URL_SAFE_NO_PAD.encode(&in_out),
    })
}

/// Opens a sealed secret with the key it names (the signing key or a
/// verification key), for the same `binding` it was sealed with.
///
/// # Errors
///
/// [`TotpError::Unsealable`] for every failure alike: an unknown key id, a
/// damaged nonce or ciphertext, another binding, or a secret of unusable
/// length.
pub fn open(keys: &KeyRing, sealed: &SealedTotpSecret, binding: &[u8]) -> Result<TotpSecret, TotpError> {
    let derived = keys.find(sealed.key_id.as_bytes()).ok_or(TotpError::Unsealable)?;
    // Bound the input before decoding it.
    if sealed.nonce.len() > aead::NONCE_LEN.div_ceil(3) * 4
        || sealed.ciphertext.len() > (MAX_SECRET_LEN + TAG_LEN).div_ceil(3) * 4
    {
        return Err(TotpError::Unsealable);
    }
    let nonce: [u8; aead::NONCE_LEN] = URL_SAFE_NO_PAD
        .decode(&sealed.nonce)
        .map_err(|_| TotpError::Unsealable)?
        .try_into()
        .map_err(|_| TotpError::Unsealable)?;
    let mut in_out = URL_SAFE_NO_PAD
        .decode(&sealed.ciphertext)
        .map_err(|_| TotpError::Unsealable)?;
    let key = sealing_key(derived).ok_or(TotpError::Unsealable)?;
    let plaintext = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(binding),
            &mut in_out,
        )
        .map_err(|_| TotpError::Unsealable)?;
    TotpSecret::from_bytes(plaintext).map_err(|_| TotpError::Unsealable)
}

/// A user's confirmed authenticator, as stored on the user record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TotpEnrollment {
    /// The secret, sealed and bound to the user.
    pub secret: SealedTotpSecret,
    /// The last step a code was accepted for (replay rejection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_step: Option<u64>,
    /// When the authenticator was confirmed.
    #[serde(with = "time::serde::rfc3339")]
    pub created_date_time: OffsetDateTime,
    /// Wrong codes since the last right one, across every flow: at
    /// [`MAX_CONSECUTIVE_FAILURES`] the authenticator is locked. Written,
    /// like `last_used_step`, with a compare-and-set on the user.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
}

impl TotpEnrollment {
    /// Whether wrong codes locked it.
    pub fn is_locked(&self) -> bool {
        self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::random::SeededRandom;
    use proptest::prelude::*;
    use time::macros::datetime;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(RFC_SECRET).unwrap()
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn ring(id: &str, fill: u8) -> KeyRing {
        KeyRing::new(SigningKey::new(id, [fill; 32]).unwrap()).unwrap()
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = rfc_secret();
        let vectors = [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ];
        for (unix, code) in vectors {
            let now = at(unix);
            assert_eq!(secret.code_at_step(step_at(now)), code, "T = {unix}");
            assert_eq!(
                verify(&secret, code, now, 0, None),
                Ok(step_at(now)),
                "T = {unix}"
            );
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        // RFC 4226 Appendix D, the same secret, counters 0 to 9.
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
            "520489",
        ];
        for (step, code) in (0u64..).zip(want) {
            assert_eq!(rfc_secret().code_at_step(step), code, "counter {step}");
        }
    }

    #[test]
    fn steps_are_30_second_windows_from_the_epoch() {
        assert_eq!(step_at(at(0)), 0);
        assert_eq!(step_at(at(29)), 0);
        assert_eq!(step_at(at(30)), 1);
        assert_eq!(step_at(at(59)), 1);
        assert_eq!(step_at(at(1_111_111_109)), 0x023523EC);
        assert_eq!(step_at(at(-1)), 0);
        assert_eq!(step_at(at(-3_000)), 0);
        assert_eq!(step_at(datetime!(1900-01-01 0:00 UTC)), 0);
    }

    #[test]
    fn base32_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (input, want) in vectors {
            assert_eq!(base32(input.as_bytes()), want, "{input:?}");
        }
        assert_eq!(base32(&[0xff; 5]), "77777777");
        assert_eq!(base32(&[0; 5]), "AAAAAAAA");
        assert_eq!(rfc_secret().base32().expose(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn secrets_are_16_to_64_bytes() {
        assert_eq!(
            TotpSecret::from_bytes(&[1; 15]).err(),
            Some(TotpError::InvalidSecret)
        );
        assert_eq!(
            TotpSecret::from_bytes(&[1; 65]).err(),
            Some(TotpError::InvalidSecret)
        );
        assert_eq!(TotpSecret::from_bytes(&[]).err(), Some(TotpError::InvalidSecret));
        assert!(TotpSecret::from_bytes(&[1; 16]).is_ok());
        assert!(TotpSecret::from_bytes(&[1; 64]).is_ok());
        let rng = SeededRandom::new(1);
        let a = TotpSecret::generate(&rng).unwrap();
        let b = TotpSecret::generate(&rng).unwrap();
        assert_eq!(a.base32().expose().len(), 32, "160 bits are 32 base32 characters");
        assert_ne!(a, b);
    }

    #[test]
    fn otpauth_uri_is_the_key_uri_format() {
        let uri = otpauth_uri(&rfc_secret(), "Example", "alice@example.com").unwrap();
        assert_eq!(
            uri.expose(),
            "otpauth://totp/Example:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Example&algorithm=SHA1&digits=6&period=30"
        );
        let uri = otpauth_uri(&rfc_secret(), "Acme Co", "Ada Lovelace+x@b.example").unwrap();
        assert_eq!(
            uri.expose(),
            "otpauth://totp/Acme%20Co:Ada%20Lovelace%2Bx%40b.example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme%20Co&algorithm=SHA1&digits=6&period=30"
        );
        let uri = otpauth_uri(&rfc_secret(), "Ex/ample?&=#%", "é").unwrap();
        assert!(
            uri.expose()
                .starts_with("otpauth://totp/Ex%2Fample%3F%26%3D%23%25:%C3%A9?secret="),
            "{}",
            uri.expose()
        );
        assert_eq!(format!("{uri:?}"), "SecretString(..)");
    }

    #[test]
    fn otpauth_uri_refuses_bad_labels() {
        let s = rfc_secret();
        let long = "a".repeat(MAX_LABEL_LEN + 1);
        for (issuer, account) in [
            ("Ex:ample", "alice"),
            ("Example", "alice:bob"),
            ("", "alice"),
            ("Example", ""),
            ("  ", "alice"),
            (long.as_str(), "alice"),
            ("Example", long.as_str()),
        ] {
            assert_eq!(
                otpauth_uri(&s, issuer, account).err(),
                Some(TotpError::InvalidLabel),
                "{issuer:?} {account:?}"
            );
        }
        let longest = "a".repeat(MAX_LABEL_LEN);
        assert!(otpauth_uri(&s, &longest, &longest).is_ok());
    }

    #[test]
    fn verify_accepts_one_step_either_side_and_no_further() {
        let s = rfc_secret();
        let now = at(1_234_567_890);
        let current = step_at(now);
        for step in [current - 1, current, current + 1] {
            let code = s.code_at_step(step);
            assert_eq!(
                verify(&s, &code, now, DEFAULT_SKEW_STEPS, None),
                Ok(step),
                "step {step}"
            );
        }
        for step in [current - 2, current + 2] {
            let code = s.code_at_step(step);
            assert_eq!(
                verify(&s, &code, now, DEFAULT_SKEW_STEPS, None),
                Err(TotpError::Wrong),
                "step {step}"
            );
        }
        let next = s.code_at_step(current + 1);
        assert_eq!(verify(&s, &next, now, 0, None), Err(TotpError::Wrong), "no skew");
        let other = TotpSecret::from_bytes(&[7; 20]).unwrap();
        assert_eq!(
            verify(&other, &s.code_at_step(current), now, DEFAULT_SKEW_STEPS, None),
            Err(TotpError::Wrong)
        );
    }

    #[test]
    fn verify_caps_the_skew() {
        let s = rfc_secret();
        let now = at(1_234_567_890);
        let current = step_at(now);
        let edge = s.code_at_step(current + MAX_SKEW_STEPS);
        assert_eq!(
            verify(&s, &edge, now, u64::MAX, None),
            Ok(current + MAX_SKEW_STEPS)
        );
        let beyond = s.code_at_step(current - MAX_SKEW_STEPS - 1);
        assert_eq!(verify(&s, &beyond, now, u64::MAX, None), Err(TotpError::Wrong));
        // Near the epoch the window starts at step 0.
        assert_eq!(verify(&s, "755224", at(10), u64::MAX, None), Ok(0));
    }

    #[test]
    fn verify_refuses_malformed_codes() {
        let s = rfc_secret();
        let now = at(59);
        for bad in [
            "",
            " ",
            "28708",
            "2870821",
            "28708a",
            "abcdef",
            "١٢٣٤٥٦",
            "２８７０８２",
            "287 0 82",
            "287  082",
            "287\t082",
            "+28708",
            "-287082",
            "0x2870",
        ] {
            assert_eq!(
                verify(&s, bad, now, 1, None),
                Err(TotpError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(&s, &"1".repeat(10_000), now, 1, None),
            Err(TotpError::Malformed)
        );
    }

    #[test]
    fn verify_trims_and_takes_one_inner_space() {
        let s = rfc_secret();
        let now = at(59);
        for good in ["287082", " 287082\n", "287 082", "\t287 082 ", "2 87082"] {
            assert_eq!(verify(&s, good, now, 0, None), Ok(1), "{good:?}");
        }
    }

    #[test]
    fn verify_rejects_replays() {
        let s = rfc_secret();
        let now = at(1_234_567_890);
        let current = step_at(now);
        let code = s.code_at_step(current);
        let used = verify(&s, &code, now, DEFAULT_SKEW_STEPS, None).unwrap();
        assert_eq!(
            verify(&s, &code, now, DEFAULT_SKEW_STEPS, Some(used)),
            Err(TotpError::Replayed)
        );
        // A newer code was used: the older one, still in the window, is a replay.
        let newer = verify(&s, &s.code_at_step(current + 1), now, 1, None).unwrap();
        assert_eq!(newer, current + 1);
        assert_eq!(
            verify(&s, &code, now, DEFAULT_SKEW_STEPS, Some(newer)),
            Err(TotpError::Replayed)
        );
        let older = s.code_at_step(current - 1);
        assert_eq!(
            verify(&s, &older, now, DEFAULT_SKEW_STEPS, Some(current)),
            Err(TotpError::Replayed)
        );
        // The code after the last used one passes.
        assert_eq!(
            verify(&s, &s.code_at_step(current + 1), now, 1, Some(current)),
            Ok(current + 1)
        );
        // A wrong code stays wrong, whatever was used.
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert_eq!(verify(&s, wrong, now, 0, Some(current)), Err(TotpError::Wrong));
    }

    #[test]
    fn seal_open_round_trip() {
        let keys = ring("k1", 3);
        let rng = SeededRandom::new(5);
        let secret = TotpSecret::generate(&rng).unwrap();
        let sealed = seal(&keys, &secret, b"user-1", &rng).unwrap();
        assert_eq!(sealed.key_id(), "k1");
        assert_eq!(open(&keys, &sealed, b"user-1"), Ok(secret.clone()));
        let again = seal(&keys, &secret, b"user-1", &rng).unwrap();
        assert_ne!(again.nonce, sealed.nonce, "a fresh nonce per seal");
        assert_ne!(again.ciphertext, sealed.ciphertext);
        assert_eq!(open(&keys, &again, b"user-1"), Ok(secret));
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_binding_and_its_key() {
        let keys = ring("k1", 3);
        let rng = SeededRandom::new(6);
        let sealed = seal(&keys, &rfc_secret(), b"user-1", &rng).unwrap();
        assert_eq!(open(&keys, &sealed, b"user-2"), Err(TotpError::Unsealable));
        assert_eq!(open(&keys, &sealed, b""), Err(TotpError::Unsealable));
        // The same id with another secret: the tag does not verify.
        assert_eq!(
            open(&ring("k1", 4), &sealed, b"user-1"),
            Err(TotpError::Unsealable)
        );
        // An id the ring does not hold.
        assert_eq!(
            open(&ring("k2", 3), &sealed, b"user-1"),
            Err(TotpError::Unsealable)
        );
    }

    #[test]
    fn tampering_is_unsealable() {
        let keys = ring("k1", 3);
        let rng = SeededRandom::new(7);
        let sealed = seal(&keys, &rfc_secret(), b"user-1", &rng).unwrap();
        let flip = |field: &str, i: usize| {
            let mut bytes = URL_SAFE_NO_PAD.decode(field).unwrap();
            bytes[i] ^= 1;
            URL_SAFE_NO_PAD.encode(bytes)
        };
        let len = URL_SAFE_NO_PAD.decode(&sealed.ciphertext).unwrap().len();
        assert_eq!(len, SECRET_LEN + TAG_LEN);
        for i in [0, SECRET_LEN - 1, SECRET_LEN, len - 1] {
            let t = SealedTotpSecret {
                ciphertext: flip(&sealed.ciphertext, i),
                ..sealed.clone()
            };
            assert_eq!(open(&keys, &t, b"user-1"), Err(TotpError::Unsealable), "byte {i}");
        }
        let t = SealedTotpSecret {
            nonce: flip(&sealed.nonce, 0),
            ..sealed.clone()
        };
        assert_eq!(open(&keys, &t, b"user-1"), Err(TotpError::Unsealable));
        let truncated =
            URL_SAFE_NO_PAD.encode(&URL_SAFE_NO_PAD.decode(&sealed.ciphertext).unwrap()[..len - 1]);
        let broken = [
            SealedTotpSecret {
                nonce: "!!".into(),
                ..sealed.clone()
            },
            SealedTotpSecret {
                nonce: URL_SAFE_NO_PAD.encode([0u8; 11]),
                ..sealed.clone()
            },
            SealedTotpSecret {
                nonce: "A".repeat(10_000),
                ..sealed.clone()
            },
            SealedTotpSecret {
                ciphertext: String::new(),
                ..sealed.clone()
            },
            SealedTotpSecret {
                ciphertext: "*".repeat(40),
                ..sealed.clone()
            },
            SealedTotpSecret {
                ciphertext: truncated,
                ..sealed.clone()
            },
            SealedTotpSecret {
                ciphertext: "A".repeat(1_000_000),
                ..sealed.clone()
            },
            SealedTotpSecret {
                key_id: String::new(),
                ..sealed.clone()
            },
        ];
        for t in broken {
            assert_eq!(open(&keys, &t, b"user-1"), Err(TotpError::Unsealable), "{t:?}");
        }
        assert!(
            open(&keys, &sealed, b"user-1").is_ok(),
            "the original still opens"
        );
    }

    #[test]
    fn an_authentic_plaintext_of_unusable_length_is_unsealable() {
        let keys = ring("k1", 3);
        let rng = SeededRandom::new(8);
        for len in [0, 8, MIN_SECRET_LEN - 1, MAX_SECRET_LEN + 1] {
            let sealed = seal_bytes(&keys, &vec![1u8; len], b"u", &rng).unwrap();
            assert_eq!(
                open(&keys, &sealed, b"u"),
                Err(TotpError::Unsealable),
                "{len} bytes"
            );
        }
        let longest = seal_bytes(&keys, &[1u8; MAX_SECRET_LEN], b"u", &rng).unwrap();
        assert!(open(&keys, &longest, b"u").is_ok());
    }

    #[test]
    fn sealed_under_a_rotated_out_key_still_opens() {
        let old = SigningKey::new("k1", [3u8; 32]).unwrap();
        let new = SigningKey::new("k2", [4u8; 32]).unwrap();
        let rng = SeededRandom::new(9);
        let secret = rfc_secret();
        let sealed = seal(&KeyRing::new(old.clone()).unwrap(), &secret, b"user-1", &rng).unwrap();
        let rotated = KeyRing::new(new).unwrap().with_verification_key(old).unwrap();
        assert_eq!(open(&rotated, &sealed, b"user-1"), Ok(secret.clone()));
        let resealed = seal(&rotated, &secret, b"user-1", &rng).unwrap();
        assert_eq!(resealed.key_id(), "k2", "new seals use the signing key");
        assert_eq!(open(&rotated, &resealed, b"user-1"), Ok(secret));
    }

    #[test]
    fn the_sealing_key_is_not_the_raw_secret() {
        // Sealed under the ring key's own bytes, a secret must not open:
        // the sealing key is derived for this purpose.
        let raw = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &[3u8; 32]).unwrap());
        let mut in_out = RFC_SECRET.to_vec();
        let nonce = [0u8; aead::NONCE_LEN];
        raw.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(b"u"),
            &mut in_out,
        )
        .unwrap();
        let sealed = SealedTotpSecret {
            key_id: "k1".into(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ciphertext: URL_SAFE_NO_PAD.encode(&in_out),
        };
        assert_eq!(open(&ring("k1", 3), &sealed, b"u"), Err(TotpError::Unsealable));
    }

    #[test]
    fn serde_shapes() {
        let keys = ring("k1", 3);
        let rng = SeededRandom::new(10);
        let sealed = seal(&keys, &rfc_secret(), b"user-1", &rng).unwrap();
        let json = serde_json::to_value(&sealed).unwrap();
        let obj = json.as_object().unwrap();
        let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["ciphertext", "keyId", "nonce"]);
        assert_eq!(obj["keyId"], "k1");
        assert_eq!(obj["nonce"].as_str().unwrap().len(), 16);
        let back: SealedTotpSecret = serde_json::from_value(json).unwrap();
        assert_eq!(back, sealed);

        let enrollment = TotpEnrollment {
            secret: sealed.clone(),
            last_used_step: None,
            created_date_time: datetime!(2026-11-01 12:00 UTC),
            consecutive_failures: 0,
        };
        let json = serde_json::to_value(&enrollment).unwrap();
        assert_eq!(json["createdDateTime"], "2026-11-01T12:00:00Z");
        assert!(json.get("lastUsedStep").is_none());
        assert_eq!(
            serde_json::from_value::<TotpEnrollment>(json).unwrap(),
            enrollment
        );
        let used = TotpEnrollment {
            last_used_step: Some(42),
            ..enrollment
        };
        let json = serde_json::to_value(&used).unwrap();
        assert_eq!(json["lastUsedStep"], 42);
        assert!(json.get("consecutiveFailures").is_none());
        assert_eq!(serde_json::from_value::<TotpEnrollment>(json).unwrap(), used);
        let failing = TotpEnrollment {
            consecutive_failures: MAX_CONSECUTIVE_FAILURES,
            ..used
        };
        let json = serde_json::to_value(&failing).unwrap();
        assert_eq!(json["consecutiveFailures"], MAX_CONSECUTIVE_FAILURES);
        assert!(
            serde_json::from_value::<TotpEnrollment>(json)
                .unwrap()
                .is_locked()
        );
    }

    #[test]
    fn debug_and_errors_show_no_secret() {
        let keys = ring("k1", 3);
        let rng = SeededRandom::new(11);
        let secret = rfc_secret();
        let b32 = secret.base32();
        let sealed = seal(&keys, &secret, b"user-1", &rng).unwrap();
        let enrollment = TotpEnrollment {
            secret: sealed.clone(),
            last_used_step: Some(1),
            created_date_time: datetime!(2026-11-01 12:00 UTC),
            consecutive_failures: 0,
        };
        assert_eq!(format!("{secret:?}"), "TotpSecret(..)");
        let shown = format!("{secret:?} {sealed:?} {enrollment:?} {b32:?}");
        assert!(shown.contains("k1"), "{shown}");
        for hidden in [
            b32.expose(),
            sealed.ciphertext.as_str(),
            sealed.nonce.as_str(),
            "1234567890",
        ] {
            assert!(!shown.contains(hidden), "{shown}");
        }
        for e in [
            TotpError::Malformed,
            TotpError::Wrong,
            TotpError::Replayed,
            TotpError::InvalidSecret,
            TotpError::InvalidLabel,
            TotpError::Unsealable,
        ] {
            let m = e.to_string();
            assert!(
                !m.is_empty() && !m.ends_with('.') && !m.contains(b32.expose()),
                "{m}"
            );
        }
    }

    proptest! {
        /// A code of its own step verifies as that step, once.
        #[test]
        fn a_code_verifies_once_within_its_step(
            bytes in proptest::array::uniform20(any::<u8>()),
            step in 0u64..8_000_000_000,
            second in 0i64..PERIOD_SECONDS,
        ) {
            let secret = TotpSecret::from_bytes(&bytes).unwrap();
            let code = secret.code_at_step(step);
            prop_assert_eq!(code.len(), DIGITS);
            prop_assert!(code.bytes().all(|b| b.is_ascii_digit()));
            let unix = i64::try_from(step).unwrap() * PERIOD_SECONDS + second;
            let now = OffsetDateTime::from_unix_timestamp(unix).unwrap();
            prop_assert_eq!(verify(&secret, &code, now, 0, None), Ok(step));
            prop_assert_eq!(verify(&secret, &code, now, 0, Some(step)), Err(TotpError::Replayed));
            // Within the default window, unless a neighbour step happens to
            // have the same code (one in a million).
            prop_assume!(secret.code_at_step(step + 1) != code);
            prop_assume!(step == 0 || secret.code_at_step(step - 1) != code);
            prop_assert_eq!(verify(&secret, &code, now, DEFAULT_SKEW_STEPS, None), Ok(step));
            prop_assert_eq!(
                verify(&secret, &code, now, DEFAULT_SKEW_STEPS, Some(step)),
                Err(TotpError::Replayed)
            );
        }

        /// Any input gets an answer; only 6 digits get past the shape check.
        #[test]
        fn verify_is_total(code in "\\PC{0,12}|[0-9 \t١٢]{0,9}") {
            let secret = rfc_secret();
            let result = verify(&secret, &code, at(59), DEFAULT_SKEW_STEPS, None);
            let digits: String = code.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let shaped = digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
            if !shaped {
                prop_assert_eq!(result, Err(TotpError::Malformed));
            }
        }

        /// base32 round trips every secret, and the parser takes anything.
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 16..=64), junk in any::<String>()) {
            let secret = TotpSecret::from_bytes(&bytes).unwrap();
            let text = secret.base32();
            let back = TotpSecret::from_base32(text.expose()).unwrap();
            prop_assert!(back == secret);
            let lower = TotpSecret::from_base32(&text.expose().to_ascii_lowercase()).unwrap();
            prop_assert!(lower == secret);
            let _ = TotpSecret::from_base32(&junk);
        }

        #[test]
        fn verify_never_panics(code in any::<String>(), unix in any::<i32>(), skew in any::<u64>(), last in any::<Option<u64>>()) {
            let _ = verify(&rfc_secret(), &code, at(i64::from(unix)), skew, last);
        }
    }
}
