//! Benchmarks of redemption tickets: issuing one, verifying one, and two
//! baselines that say what verification should cost.
//!
//! - `issue`: one [`ticket::issue`] (verifier from a seeded generator, HMAC,
//!   base64url).
//! - `verify`: one [`ticket::verify_with`] with a reused scratch buffer:
//!   base64url decode, layout, key lookup, tag check and expiry. No store.
//! - `baseline_hmac_sha256`: one HMAC-SHA256 over exactly as many bytes as
//!   the ticket tag covers (context prefix, tenant length byte, tenant id and
//!   the signed part of the ticket). The floor `verify` is measured against.
//! - `baseline_jsonwebtoken_hs256_decode`: decoding and validating an HS256
//!   JWT carrying the same facts (key id, invitation id, a 256-bit verifier,
//!   expiry, tenant as audience) with `jsonwebtoken`, the obvious
//!   alternative to a custom format.
//!
//! The targets: `verify` within 2x of `baseline_hmac_sha256`, and at least 2x
//! faster than `baseline_jsonwebtoken_hs256_decode`.
//!
//! Run with `cargo bench --bench tickets`.

// Benchmark setup may stop on a broken fixture; this is not library code.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::Criterion;
use guestpass::id::Id;
use guestpass::invitation::ticket;
use guestpass::keys::{KeyRing, SigningKey};
use guestpass::random::SeededRandom;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::hmac;
use serde::{Deserialize, Serialize};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const TENANT: &str = "contoso";
const KEY_ID: &str = "2026-11";
const SECRET: [u8; 32] = [42u8; 32];
const NOW: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);
/// Bytes the ticket tag covers besides the tenant id and the signed part:
/// the context `"guestpass-ticket\0"` and the tenant length byte.
const TAG_CONTEXT_LEN: usize = b"guestpass-ticket\0".len() + 1;
const TAG_LEN: usize = 32;

/// The claims of the equivalent JWT.
#[derive(Debug, Serialize, Deserialize)]
struct TicketClaims {
    /// Invitation id (GUID).
    inv: String,
    /// The 256-bit verifier, base64url.
    ver: String,
    /// Expiry, unix seconds.
    exp: i64,
    /// The tenant.
    aud: String,
}

fn keys() -> KeyRing {
    SigningKey::new(KEY_ID, SECRET)
        .and_then(KeyRing::new)
        .expect("the bench key is valid")
}

fn bench_tickets(c: &mut Criterion) {
    let keys = keys();
    let rng = SeededRandom::new(7);
    let id = Id::random(&rng).expect("seeded random works");
    let expires = NOW + Duration::days(30);
    let issued = ticket::issue(&keys, TENANT, id, expires, &rng).expect("issue works");
    let token = issued.token.expose().to_owned();

    // Sanity: the ticket verifies, so `verify` measures the success path.
    let mut scratch = Vec::with_capacity(128);
    let checked = ticket::verify_with(&keys, TENANT, token.as_bytes(), NOW, &mut scratch);
    assert!(
        checked.as_ref().is_ok_and(|v| v.invitation_id == id),
        "{checked:?}"
    );

    // How many bytes the tag covers, from the real ticket.
    let decoded_len = URL_SAFE_NO_PAD.decode(&token).expect("ticket is base64url").len();
    let mac_len = decoded_len - TAG_LEN + TAG_CONTEXT_LEN + TENANT.len();
    let mac_input = vec![0x33u8; mac_len];
    let mac_key = hmac::Key::new(hmac::HMAC_SHA256, &SECRET);

    // The equivalent JWT, encoded once. jsonwebtoken checks `exp` against the
    // system clock, so the expiry is taken from it.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(KEY_ID.to_owned());
    let claims = TicketClaims {
        inv: id.to_string(),
        ver: URL_SAFE_NO_PAD.encode([0x77u8; 32]),
        exp: OffsetDateTime::now_utc().unix_timestamp() + 30 * 24 * 3600,
        aud: TENANT.to_owned(),
    };
    let jwt =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&SECRET)).expect("jwt encodes");
    let decoding_key = DecodingKey::from_secret(&SECRET);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[TENANT]);
    let decoded = jsonwebtoken::decode::<TicketClaims>(&jwt, &decoding_key, &validation);
    assert!(
        decoded.as_ref().is_ok_and(|d| d.claims.aud == TENANT),
        "{decoded:?}"
    );

    let mut group = c.benchmark_group("tickets");
    group.bench_function("issue", |b| {
        b.iter(|| ticket::issue(black_box(&keys), black_box(TENANT), black_box(id), expires, &rng))
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            ticket::verify_with(
                black_box(&keys),
                black_box(TENANT),
                black_box(token.as_bytes()),
                black_box(NOW),
                &mut scratch,
            )
        })
    });
    group.bench_function("baseline_hmac_sha256", |b| {
        b.iter(|| hmac::sign(black_box(&mac_key), black_box(&mac_input)))
    });
    group.bench_function("baseline_jsonwebtoken_hs256_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<TicketClaims>(
                black_box(&jwt),
                black_box(&decoding_key),
                black_box(&validation),
            )
        })
    });
    group.finish();
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, without the
    // undocumented public function the group macro generates.
    let mut criterion = Criterion::default().configure_from_args();
    bench_tickets(&mut criterion);
    criterion.final_summary();
}
