//! Fuzzes the redemption ticket parser and verifier.
//!
//! Two halves, both on every input:
//!
//! 1. **Raw**: the bytes go to `ticket::parse` and `ticket::verify_with`,
//!    and, when they are UTF-8, to `ticket::verify`. Nothing may panic, and
//!    anything that verifies must be one of the two tickets this target
//!    issued (one per key of the ring; the fuzzer cannot forge a tag).
//! 2. **Structure-aware**: the first byte picks a mutation of a valid issued
//!    ticket, the rest of the input drives it:
//!    - `0`: XOR mask over the decoded ticket bytes, re-encoded;
//!    - `1`: XOR mask over the ticket text;
//!    - `2`: splice: `[offset, remove_len, insert...]` into the decoded bytes;
//!    - `3`: splice into the ticket text (truncation and extension included).
//!
//!    A mutated ticket that still verifies must be byte for byte the
//!    original (or, should the mutation rebuild it exactly, the other
//!    genuine ticket), and must verify to the same result. Every candidate
//!    is also verified for another tenant and at its expiry, which must fail.

#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use guestpass::error::TicketError;
use guestpass::id::Id;
use guestpass::invitation::ticket::{self, VerifiedTicket};
use guestpass::keys::{KeyRing, SigningKey};
use guestpass::random::SeededRandom;
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const TENANT: &str = "contoso";
const OTHER_TENANT: &str = "fabrikam";
const NOW: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);

struct Fixture {
    keys: KeyRing,
    /// The ticket the mutations start from, signed by the current key.
    token: String,
    raw: Vec<u8>,
    /// Every genuine ticket (the one above and one signed by the older key),
    /// with what it verifies to.
    genuine: Vec<(String, VerifiedTicket)>,
    expires_at: OffsetDateTime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    // A ring mid-rotation: "k2" signs, "k1" still verifies.
    let keys = KeyRing::new(SigningKey::new("k2", [2u8; 32]).expect("key"))
        .and_then(|r| r.with_verification_key(SigningKey::new("k1", [1u8; 32]).expect("key")))
        .expect("ring");
    let rng = SeededRandom::new(1);
    let id = Id::random(&rng).expect("id");
    let expires_at = NOW + Duration::days(30);
    let issued = ticket::issue(&keys, TENANT, id, expires_at, &rng).expect("issue");
    let token = issued.token.expose().to_owned();
    let raw = URL_SAFE_NO_PAD.decode(&token).expect("base64url");
    let verified = ticket::verify(&keys, TENANT, &token, NOW).expect("verifies");
    assert_eq!(verified.invitation_id, id);
    assert_eq!(verified.verifier_hash(), issued.binding.verifier_hash);
    // The same invitation under the older key (seeds/rotated_key_ticket).
    let old = KeyRing::new(SigningKey::new("k1", [1u8; 32]).expect("key")).expect("ring");
    let rotated = ticket::issue(&old, TENANT, id, expires_at, &rng).expect("issue");
    let rotated = rotated.token.expose().to_owned();
    let rotated_verified = ticket::verify(&keys, TENANT, &rotated, NOW).expect("verifies");
    Fixture {
        keys,
        genuine: vec![(token.clone(), verified), (rotated, rotated_verified)],
        token,
        raw,
        expires_at,
    }
});

/// Verifies `candidate` every way there is and checks the invariants.
/// Returns whether it verified for the right tenant at `NOW`.
fn check(f: &Fixture, candidate: &[u8], scratch: &mut Vec<u8>) -> bool {
    let _ = ticket::parse(candidate, scratch);
    let result = ticket::verify_with(&f.keys, TENANT, candidate, NOW, scratch);
    if let Ok(text) = std::str::from_utf8(candidate) {
        assert_eq!(ticket::verify(&f.keys, TENANT, text, NOW), result);
    }
    if let Err(TicketError::Malformed(_)) = result {
        return false;
    }
    let other = ticket::verify_with(&f.keys, OTHER_TENANT, candidate, NOW, scratch);
    assert!(other.is_err(), "verified for another tenant");
    let late = ticket::verify_with(&f.keys, TENANT, candidate, f.expires_at, scratch);
    assert!(late.is_err(), "verified at its expiry");
    match result {
        Ok(v) => {
            let genuine = f.genuine.iter().find(|(t, _)| t.as_bytes() == candidate);
            let Some((_, expected)) = genuine else {
                panic!("a ticket that was never issued verified: {candidate:?}");
            };
            assert_eq!(&v, expected);
            true
        }
        Err(_) => false,
    }
}

fn xor(target: &mut [u8], mask: &[u8]) {
    for (t, m) in target.iter_mut().zip(mask) {
        *t ^= m;
    }
}

fn splice(target: &mut Vec<u8>, args: &[u8]) {
    let [offset, remove, insert @ ..] = args else {
        return;
    };
    let start = usize::from(*offset).min(target.len());
    let end = start.saturating_add(usize::from(*remove)).min(target.len());
    target.splice(start..end, insert.iter().copied());
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let mut scratch = Vec::with_capacity(128);

    // Raw input.
    check(f, data, &mut scratch);

    // Mutations of a valid ticket.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let candidate = match mode % 4 {
        0 => {
            let mut raw = f.raw.clone();
            xor(&mut raw, rest);
            URL_SAFE_NO_PAD.encode(&raw).into_bytes()
        }
        1 => {
            let mut text = f.token.clone().into_bytes();
            xor(&mut text, rest);
            text
        }
        2 => {
            let mut raw = f.raw.clone();
            splice(&mut raw, rest);
            URL_SAFE_NO_PAD.encode(&raw).into_bytes()
        }
        _ => {
            let mut text = f.token.clone().into_bytes();
            splice(&mut text, rest);
            text
        }
    };
    check(f, &candidate, &mut scratch);
});
