//! Property tests: the email parser and the ticket parser and verifier are
//! total (never panic, whatever the input), accepted addresses are in
//! canonical form with case-insensitive comparison keys, and no change to a
//! valid ticket is accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{T0, TENANT, URL_ALPHABET, b64url, b64url_decode, key_ring, layout, signed_ticket};
use guestpass::email::EmailAddress;
use guestpass::id::Id;
use guestpass::invitation::ticket;
use guestpass::random::SeededRandom;
use proptest::prelude::*;
use proptest::sample::Index;
use time::Duration;

/// A valid ticket (and its invitation id), issued at [`T0`] for 30 days.
fn valid_ticket() -> (Id, String) {
    let rng = SeededRandom::new(2026);
    let id = Id::random(&rng).unwrap();
    (id, signed_ticket(&key_ring(), id, T0 + Duration::days(30), &rng))
}

/// Flips the case of the characters whose case mapping is one character
/// that maps back, chosen by `mask`.
fn case_variant(s: &str, mask: &[bool]) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if !mask.get(i % mask.len().max(1)).copied().unwrap_or(false) {
                return c;
            }
            let flipped = if c.is_uppercase() {
                single(c.to_lowercase())
            } else {
                single(c.to_uppercase())
            };
            match flipped {
                Some(f) if f != c => {
                    let back = if f.is_uppercase() {
                        single(f.to_lowercase())
                    } else {
                        single(f.to_uppercase())
                    };
                    if back == Some(c) { f } else { c }
                }
                _ => c,
            }
        })
        .collect()
}

/// The only item of `it`, if it has exactly one.
fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let first = it.next()?;
    if it.next().is_some() { None } else { Some(first) }
}

fn local_part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]([a-zA-Z0-9._'-]{0,20}[a-zA-Z0-9_])?",
        "[a-zA-Zà-öø-ÿÀ-ÖØ-Þα-ωΑ-Ω]{1,12}",
        "[a-zA-Z0-9]{1,8}[.][a-zA-Z0-9]{1,8}",
        // Characters whose case mapping is not simple: final sigma, the
        // Kelvin sign, dotted and dotless i, sharp s.
        "[aAkKsSiIσΣςK\u{130}\u{131}ßẞéÉ]{1,6}",
    ]
}

fn domain() -> impl Strategy<Value = String> {
    let label = prop_oneof![
        "[a-zA-Z0-9]{1,12}",
        "[a-zA-Z0-9][a-zA-Z0-9-]{0,8}[a-zA-Z0-9]",
        "[a-zà-öø-ÿA-Zα-ωΑ-Ω]{1,10}",
    ];
    (proptest::collection::vec(label, 1..=3), "[a-zA-Z]{2,6}")
        .prop_map(|(labels, tld)| format!("{}.{tld}", labels.join(".")))
}

fn address() -> impl Strategy<Value = String> {
    (local_part(), domain()).prop_map(|(l, d)| format!("{l}@{d}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn email_parse_is_total_on_arbitrary_strings(s in any::<String>()) {
        let _ = EmailAddress::parse(&s);
    }

    #[test]
    fn email_parse_is_total_on_printable_and_long_strings(s in "\\PC{0,700}") {
        let _ = EmailAddress::parse(&s);
    }

    #[test]
    fn email_parse_is_total_on_byte_derived_strings(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = EmailAddress::parse(&s);
        // With an `@` in the middle as well.
        let mid = bytes.len() / 2;
        let with_at = format!("{}@{}", String::from_utf8_lossy(&bytes[..mid]), String::from_utf8_lossy(&bytes[mid..]));
        let _ = EmailAddress::parse(&with_at);
    }

    #[test]
    fn email_parse_is_total_on_address_like_strings(
        local in "[a-zA-Z0-9.\\-_'+~!#%^&*()=\\[\\]{}|;:\"<>?,/\\\\ \t\u{0}-\u{1f}\u{7f}-\u{ff}]{0,80}",
        domain in "[a-zA-Z0-9.\\-_\\[\\]:\u{80}-\u{2fff}\u{fe00}-\u{ffff}]{0,300}",
        ats in 0usize..3,
    ) {
        let s = format!("{local}{}{domain}", "@".repeat(ats));
        let _ = EmailAddress::parse(&s);
    }

    #[test]
    fn accepted_addresses_are_canonical(input in prop_oneof![address(), any::<String>()]) {
        if let Ok(a) = EmailAddress::parse(&input) {
            let domain = a.domain();
            prop_assert!(domain.is_ascii(), "A-label domain: {domain}");
            prop_assert_eq!(domain, domain.to_ascii_lowercase());
            prop_assert!(domain.split('.').count() >= 2);
            prop_assert!(domain.split('.').all(|l| !l.is_empty() && l.len() <= 63));
            let key = a.comparison_key();
            prop_assert!(key.ends_with(&format!("@{domain}")), "{key}");
            prop_assert_eq!(key.split('@').count(), 2);
            let local = &key[..key.len() - domain.len() - 1];
            prop_assert_eq!(local, a.local_part().to_lowercase());
            // A non-ASCII spelling never claims an ASCII address's key.
            if local.is_ascii() {
                prop_assert!(a.local_part().is_ascii(), "`{}` has key `{}`", a.as_str(), key);
            }
            prop_assert_eq!(a.as_str(), input.trim());
            prop_assert!(key.len() <= 254);
            // The key is itself an address with the same key.
            let again = EmailAddress::parse(key);
            prop_assert!(again.is_ok(), "the key `{}` of `{}` does not parse: {:?}", key, a.as_str(), again);
            let again = again.unwrap();
            prop_assert_eq!(again.comparison_key(), key);
            prop_assert_eq!(&again, &a);
        }
    }

    #[test]
    fn case_variants_share_one_comparison_key(
        input in address(),
        mask in proptest::collection::vec(any::<bool>(), 1..40),
    ) {
        let variant = case_variant(&input, &mask);
        let upper = case_variant(&input, &[true]);
        for other in [variant, upper, input.to_ascii_uppercase(), input.to_ascii_lowercase()] {
            match (EmailAddress::parse(&input), EmailAddress::parse(&other)) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a.comparison_key(), b.comparison_key(), "{} vs {}", input, other);
                    prop_assert_eq!(&a, &b);
                }
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "`{}` -> {:?} but `{}` -> {:?}", input, a, other, b),
            }
        }
    }

    #[test]
    fn verify_rejects_arbitrary_strings(s in any::<String>()) {
        prop_assert!(ticket::verify(&key_ring(), TENANT, &s, T0).is_err());
    }

    #[test]
    fn verify_rejects_arbitrary_base64url(s in "[A-Za-z0-9_-]{0,200}") {
        prop_assert!(ticket::verify(&key_ring(), TENANT, &s, T0).is_err());
    }

    #[test]
    fn verify_rejects_well_laid_out_forgeries(
        body in proptest::collection::vec(any::<u8>(), layout::LEN - layout::INVITATION),
    ) {
        // A correct header and key id, everything after it random: the tag
        // is where it fails.
        let mut raw = vec![ticket::VERSION, ticket::PURPOSE_REDEEM, 4];
        raw.extend_from_slice(b"key1");
        raw.extend_from_slice(&body);
        prop_assert_eq!(raw.len(), layout::LEN);
        let r = ticket::verify(&key_ring(), TENANT, &b64url(&raw), T0);
        prop_assert_eq!(r, Err(guestpass::error::TicketError::BadSignature));
    }

    #[test]
    fn verify_rejects_any_textual_mutation(
        kind in 0u8..5,
        at in any::<Index>(),
        other in any::<Index>(),
        c in prop_oneof![
            proptest::sample::select(URL_ALPHABET.iter().copied().map(char::from).collect::<Vec<_>>()),
            any::<char>(),
        ],
        len in 0usize..200,
    ) {
        let (_, valid) = valid_ticket();
        let chars: Vec<char> = valid.chars().collect();
        let i = at.index(chars.len());
        let mut m = chars.clone();
        match kind {
            0 => m[i] = c,
            1 => m.insert(at.index(chars.len() + 1), c),
            2 => { m.remove(i); }
            3 => m.swap(i, other.index(chars.len())),
            _ => m.truncate(len.min(chars.len())),
        }
        let mutated: String = m.into_iter().collect();
        prop_assume!(mutated != valid);
        prop_assert!(ticket::verify(&key_ring(), TENANT, &mutated, T0).is_err(), "{}", mutated);
        // Valid tickets themselves still verify (the key ring is right).
        prop_assert!(ticket::verify(&key_ring(), TENANT, &valid, T0).is_ok());
    }

    #[test]
    fn verify_rejects_any_byte_mutation(
        flips in proptest::collection::vec((any::<Index>(), 1u8..=255), 1..4),
    ) {
        let (_, valid) = valid_ticket();
        let mut raw = b64url_decode(&valid);
        for (at, mask) in &flips {
            let i = at.index(raw.len());
            raw[i] ^= mask;
        }
        let mutated = b64url(&raw);
        prop_assume!(mutated != valid);
        prop_assert!(ticket::verify(&key_ring(), TENANT, &mutated, T0).is_err());
    }

    #[test]
    fn verify_rejects_other_tenants_and_late_use(tenant in "[a-zA-Z0-9._-]{0,64}", late in 0i64..10_000_000) {
        let (id, valid) = valid_ticket();
        let ring = key_ring();
        if tenant != TENANT {
            prop_assert!(ticket::verify(&ring, &tenant, &valid, T0).is_err());
        }
        let expiry = T0 + Duration::days(30);
        prop_assert_eq!(
            ticket::verify(&ring, TENANT, &valid, expiry + Duration::seconds(late)),
            Err(guestpass::error::TicketError::Expired)
        );
        let ok = ticket::verify(&ring, TENANT, &valid, expiry - Duration::seconds(late + 1)).unwrap();
        prop_assert_eq!(ok.invitation_id, id);
    }

    #[test]
    fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut scratch = Vec::new();
        let r = ticket::parse(&bytes, &mut scratch);
        if bytes.len() > ticket::MAX_TICKET_LEN {
            prop_assert_eq!(r.clone(), Err(guestpass::error::TicketError::Malformed("too long")));
        }
        if bytes.is_empty() {
            prop_assert_eq!(r, Err(guestpass::error::TicketError::Malformed("empty")));
        }
        // Raw bytes (not UTF-8) through the verifier too.
        let v = ticket::verify_with(&key_ring(), TENANT, &bytes, T0, &mut scratch);
        prop_assert!(v.is_err());
    }

    #[test]
    fn parse_is_total_on_base64url(s in "[A-Za-z0-9_-]{0,170}") {
        let mut scratch = Vec::new();
        let _ = ticket::parse(s.as_bytes(), &mut scratch);
    }
}

#[test]
fn parse_accepts_the_valid_ticket_and_reuses_its_buffer() {
    let (_, valid) = valid_ticket();
    let mut scratch = Vec::new();
    assert_eq!(ticket::parse(valid.as_bytes(), &mut scratch), Ok(()));
    assert_eq!(scratch.len(), layout::LEN);
    // A failed parse after a good one leaves nothing usable behind.
    assert!(ticket::parse(b"", &mut scratch).is_err());
    assert!(scratch.is_empty());
}

#[test]
fn case_variant_flips_only_round_tripping_characters() {
    assert_eq!(
        case_variant("Alice@Fabrikam.Example", &[true]),
        "aLICE@fABRIKAM.eXAMPLE"
    );
    assert_eq!(case_variant("ασ", &[true]), "ΑΣ");
    // Final sigma, dotless i and sharp s have no round-tripping single flip.
    assert_eq!(case_variant("ςıß", &[true]), "ςıß");
}
