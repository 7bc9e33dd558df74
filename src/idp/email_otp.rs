//! The email one-time passcode identity provider: pure decisions.
//!
//! A passcode is `digits` decimal digits drawn uniformly from the CSPRNG,
//! stored only as HMAC-SHA256 (under a key derived for passcodes) of its id
//! and digits, compared in constant time, usable once, bound to the step that
//! asked for it, and valid for `lifetime`. Each code allows
//! `max_attempts_per_code` wrong tries; each address allows
//! `max_consecutive_failures` wrong tries in a row across all its codes (a
//! new code does not reset that count; a success or an administrator's
//! reset of redemption does). Sends are rate limited per address.
//!
//! The functions here take the current records and return the records to
//! write; the service commits them with compare-and-set, so two concurrent
//! guesses cannot both use the last attempt.

use ring::hmac;
use time::{Duration, OffsetDateTime};

use crate::directory::{AddressThrottle, PasscodeRecord};
use crate::error::{ConfigError, Error, PasscodeError};
use crate::id::Id;
use crate::keys::KeyRing;
use crate::random::{self, SecureRandom};
use crate::secret::{Digest, SecretString, constant_time_eq};

/// Limits of the email one-time passcode provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasscodePolicy {
    /// Number of digits, 6 to 10 (default 8).
    pub digits: u8,
    /// How long a code is accepted (default 10 minutes).
    pub lifetime: Duration,
    /// Wrong tries allowed per code (default 5).
    pub max_attempts_per_code: u32,
    /// Wrong tries in a row allowed per address across codes (default 100).
    pub max_consecutive_failures: u32,
    /// Shortest time between two sends to one address (default 30 seconds).
    pub min_send_interval: Duration,
    /// Most sends to one address within `send_window` (default 5).
    pub max_sends_per_window: u32,
    /// The window for `max_sends_per_window` (default 1 hour).
    pub send_window: Duration,
}

impl Default for PasscodePolicy {
    fn default() -> Self {
        Self {
            digits: 8,
            lifetime: Duration::minutes(10),
            max_attempts_per_code: 5,
            max_consecutive_failures: 100,
            min_send_interval: Duration::seconds(30),
            max_sends_per_window: 5,
            send_window: Duration::hours(1),
        }
    }
}

impl PasscodePolicy {
    /// Checks the limits are usable.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(6..=10).contains(&self.digits) {
            return bad("passcode.digits", "must be 6 to 10");
        }
        if self.lifetime <= Duration::ZERO || self.lifetime > Duration::hours(1) {
            return bad("passcode.lifetime", "must be positive and at most 1 hour");
        }
        if !(1..=5).contains(&self.max_attempts_per_code) {
            return bad("passcode.max_attempts_per_code", "must be 1 to 5");
        }
        if !(1..=100).contains(&self.max_consecutive_failures) {
            return bad("passcode.max_consecutive_failures", "must be 1 to 100");
        }
        if self.min_send_interval < Duration::ZERO || self.min_send_interval > Duration::hours(1) {
            return bad("passcode.min_send_interval", "must be between 0 and 1 hour");
        }
        if self.max_sends_per_window == 0 || self.max_sends_per_window > 1000 {
            return bad("passcode.max_sends_per_window", "must be 1 to 1000");
        }
        if self.send_window <= Duration::ZERO || self.send_window > Duration::days(1) {
            return bad("passcode.send_window", "must be positive and at most 1 day");
        }
        Ok(())
    }
}

/// Decides whether a code may be sent to an address now and returns the
/// counters to store if so.
///
/// # Errors
///
/// [`PasscodeError::AddressLocked`] after too many consecutive failures,
/// [`PasscodeError::RateLimited`] when a send came too recently or the
/// window is full.
pub fn plan_send(
    policy: &PasscodePolicy,
    throttle: Option<&AddressThrottle>,
    address_key: &str,
    now: OffsetDateTime,
) -> Result<AddressThrottle, PasscodeError> {
    let mut next = throttle.cloned().unwrap_or_else(|| AddressThrottle {
        address_key: address_key.to_owned(),
        consecutive_failures: 0,
        recent_sends: Vec::new(),
    });
    if next.consecutive_failures >= policy.max_consecutive_failures {
        return Err(PasscodeError::AddressLocked);
    }
    let window_start = now.saturating_sub(policy.send_window);
    next.recent_sends.retain(|t| *t > window_start);
    let retry_after = |at: OffsetDateTime| {
        let secs = (at - now).whole_seconds().max(1);
        PasscodeError::RateLimited {
            retry_after_secs: u64::try_from(secs).unwrap_or(1),
        }
    };
    if let Some(last) = next.recent_sends.last()
        && now < last.saturating_add(policy.min_send_interval)
    {
        return Err(retry_after(last.saturating_add(policy.min_send_interval)));
    }
    let limit = policy.max_sends_per_window as usize;
    if next.recent_sends.len() >= limit {
        let oldest = next.recent_sends[next.recent_sends.len() - limit];
        return Err(retry_after(oldest.saturating_add(policy.send_window)));
    }
    next.recent_sends.push(now);
    Ok(next)
}

/// A new code and its record. The code goes into the mail only.
///
/// # Errors
///
/// When the random generator fails or the ring has no signing key.
pub fn generate(
    policy: &PasscodePolicy,
    keys: &KeyRing,
    rng: &dyn SecureRandom,
    bound_to: Digest,
    address_key: &str,
    now: OffsetDateTime,
) -> Result<(SecretString, PasscodeRecord), Error> {
    let id = Id::random(rng)?;
    let mut code = String::with_capacity(usize::from(policy.digits));
    for _ in 0..policy.digits {
        let d = random::below(rng, 10)?;
        code.push(char::from(b'0' + d as u8));
    }
    let key = keys.signing().ok_or(ConfigError::Missing { field: "keys" })?;
    let record = PasscodeRecord {
        id,
        bound_to,
        address_key: address_key.to_owned(),
        code_hash: code_hash(&key.passcode, id, code.as_bytes()),
        attempts: 0,
        consumed: false,
        issued_at: now,
        expires_at: now.saturating_add(policy.lifetime),
    };
    Ok((SecretString::new(code), record))
}

fn code_hash(key: &hmac::Key, id: Id, code: &[u8]) -> Digest {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(id.as_bytes());
    ctx.update(code);
    let tag = ctx.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    Digest(out)
}

/// The result of checking a submitted code: the verdict and the records to
/// write whatever it is (attempt counts change on failure too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// `Ok` when the code is right.
    pub verdict: Result<(), PasscodeError>,
    /// The passcode record to store, if it changed.
    pub passcode: Option<PasscodeRecord>,
    /// The address counters to store: after every counted check (a right
    /// or a wrong code), changed or not, so that the write's precondition
    /// covers the counters the verdict read.
    pub throttle: Option<AddressThrottle>,
}

impl CheckOutcome {
    fn refuse(e: PasscodeError) -> Self {
        Self {
            verdict: Err(e),
            passcode: None,
            throttle: None,
        }
    }
}

/// Checks `submitted` against `record` for the step `bound_to`.
pub fn check(
    policy: &PasscodePolicy,
    keys: &KeyRing,
    record: &PasscodeRecord,
    throttle: Option<&AddressThrottle>,
    submitted: &str,
    bound_to: &Digest,
    now: OffsetDateTime,
) -> CheckOutcome {
    let submitted = submitted.trim();
    if submitted.len() != usize::from(policy.digits) || !submitted.bytes().all(|b| b.is_ascii_digit()) {
        return CheckOutcome::refuse(PasscodeError::Malformed);
    }
    if !record.bound_to.ct_eq(bound_to) {
        return CheckOutcome::refuse(PasscodeError::NotIssued);
    }
    let failures = throttle.map_or(0, |t| t.consecutive_failures);
    if failures >= policy.max_consecutive_failures {
        return CheckOutcome::refuse(PasscodeError::AddressLocked);
    }
    if record.consumed {
        return CheckOutcome::refuse(PasscodeError::AlreadyUsed);
    }
    if now >= record.expires_at {
        return CheckOutcome::refuse(PasscodeError::Expired);
    }
    if record.attempts >= policy.max_attempts_per_code {
        return CheckOutcome::refuse(PasscodeError::TooManyAttempts);
    }
    let right = keys.all().any(|k| {
        constant_time_eq(
            &code_hash(&k.passcode, record.id, submitted.as_bytes()).0,
            &record.code_hash.0,
        )
    });
    let mut next_record = record.clone();
    let mut next_throttle = throttle.cloned().unwrap_or_else(|| AddressThrottle {
        address_key: record.address_key.clone(),
        consecutive_failures: 0,
        recent_sends: Vec::new(),
    });
    let verdict = if right {
        next_record.consumed = true;
        next_throttle.consecutive_failures = 0;
        Ok(())
    } else {
        next_record.attempts += 1;
        next_throttle.consecutive_failures = failures.saturating_add(1);
        let remaining = policy.max_attempts_per_code.saturating_sub(next_record.attempts);
        if next_throttle.consecutive_failures >= policy.max_consecutive_failures {
            Err(PasscodeError::AddressLocked)
        } else if remaining == 0 {
            Err(PasscodeError::TooManyAttempts)
        } else {
            Err(PasscodeError::Incorrect { remaining })
        }
    };
    // The counters are written with every counted check, changed or not:
    // the write's version precondition makes the verdict rest on the
    // counters it read, so concurrent guesses cannot slip a right one past
    // failures counted meanwhile.
    CheckOutcome {
        verdict,
        passcode: Some(next_record),
        throttle: Some(next_throttle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::random::SeededRandom;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);

    fn keys() -> KeyRing {
        KeyRing::new(SigningKey::new("k1", [5u8; 32]).unwrap()).unwrap()
    }

    fn fresh(rng: &SeededRandom) -> (SecretString, PasscodeRecord, Digest) {
        let bound = Digest::sha256(b"session-a");
        let (code, rec) = generate(
            &PasscodePolicy::default(),
            &keys(),
            rng,
            bound,
            "a@b.example",
            NOW,
        )
        .unwrap();
        (code, rec, bound)
    }

    #[test]
    fn codes_are_digits_and_hashed_at_rest() {
        let rng = SeededRandom::new(1);
        let (code, rec, _) = fresh(&rng);
        assert_eq!(code.expose().len(), 8);
        assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
        let stored = serde_json::to_string(&rec).unwrap();
        assert!(!stored.contains(code.expose()));
    }

    #[test]
    fn right_code_once_then_already_used() {
        let rng = SeededRandom::new(2);
        let (code, rec, bound) = fresh(&rng);
        let p = PasscodePolicy::default();
        let out = check(&p, &keys(), &rec, None, code.expose(), &bound, NOW);
        assert_eq!(out.verdict, Ok(()));
        let used = out.passcode.unwrap();
        let again = check(&p, &keys(), &used, None, code.expose(), &bound, NOW);
        assert_eq!(again.verdict, Err(PasscodeError::AlreadyUsed));
    }

    #[test]
    fn a_right_code_still_writes_the_counters_it_read() {
        // The counters go into the same conditional write as the verdict,
        // so a right guess cannot commit past failures counted meanwhile.
        let rng = SeededRandom::new(4);
        let (code, rec, bound) = fresh(&rng);
        let p = PasscodePolicy::default();
        let read = AddressThrottle {
            address_key: rec.address_key.clone(),
            consecutive_failures: 0,
            recent_sends: vec![NOW],
        };
        let out = check(&p, &keys(), &rec, Some(&read), code.expose(), &bound, NOW);
        assert_eq!(out.verdict, Ok(()));
        assert_eq!(out.throttle, Some(read));
    }

    #[test]
    fn five_wrong_tries_burn_the_code() {
        let rng = SeededRandom::new(3);
        let (code, mut rec, bound) = fresh(&rng);
        let p = PasscodePolicy::default();
        let wrong = if code.expose() == "00000000" {
            "11111111"
        } else {
            "00000000"
        };
        let mut throttle = None;
        for i in 1..=5u32 {
            let out = check(&p, &keys(), &rec, throttle.as_ref(), wrong, &bound, NOW);
            let want = if i == 5 {
                PasscodeError::TooManyAttempts
            } else {
                PasscodeError::Incorrect { remaining: 5 - i }
            };
            assert_eq!(out.verdict, Err(want));
            rec = out.passcode.unwrap();
            throttle = out.throttle.or(throttle);
        }
        let out = check(&p, &keys(), &rec, throttle.as_ref(), code.expose(), &bound, NOW);
        assert_eq!(out.verdict, Err(PasscodeError::TooManyAttempts));
        assert_eq!(throttle.unwrap().consecutive_failures, 5);
    }

    #[test]
    fn expiry_binding_and_shape() {
        let rng = SeededRandom::new(4);
        let (code, rec, bound) = fresh(&rng);
        let p = PasscodePolicy::default();
        let late = NOW + Duration::minutes(10);
        assert_eq!(
            check(&p, &keys(), &rec, None, code.expose(), &bound, late).verdict,
            Err(PasscodeError::Expired)
        );
        let other = Digest::sha256(b"session-b");
        assert_eq!(
            check(&p, &keys(), &rec, None, code.expose(), &other, NOW).verdict,
            Err(PasscodeError::NotIssued)
        );
        for bad in ["", "1234", "abcdefgh", "１２３４５６７８", "123456789"] {
            assert_eq!(
                check(&p, &keys(), &rec, None, bad, &bound, NOW).verdict,
                Err(PasscodeError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn send_rate_limit_and_lockout() {
        let p = PasscodePolicy::default();
        let t1 = plan_send(&p, None, "a@b.example", NOW).unwrap();
        assert!(matches!(
            plan_send(&p, Some(&t1), "a@b.example", NOW + Duration::seconds(10)),
            Err(PasscodeError::RateLimited { retry_after_secs: 20 })
        ));
        let mut t = t1;
        for i in 1..5 {
            t = plan_send(&p, Some(&t), "a@b.example", NOW + Duration::minutes(i)).unwrap();
        }
        assert!(matches!(
            plan_send(&p, Some(&t), "a@b.example", NOW + Duration::minutes(5)),
            Err(PasscodeError::RateLimited { .. })
        ));
        assert!(plan_send(&p, Some(&t), "a@b.example", NOW + Duration::minutes(61)).is_ok());
        t.consecutive_failures = 100;
        assert_eq!(
            plan_send(&p, Some(&t), "a@b.example", NOW + Duration::hours(5)),
            Err(PasscodeError::AddressLocked)
        );
    }

    #[test]
    fn policy_validation_names_the_field() {
        let p = PasscodePolicy {
            digits: 4,
            ..PasscodePolicy::default()
        };
        assert!(matches!(
            p.validate(),
            Err(ConfigError::Invalid {
                field: "passcode.digits",
                ..
            })
        ));
        assert!(PasscodePolicy::default().validate().is_ok());
    }
}
