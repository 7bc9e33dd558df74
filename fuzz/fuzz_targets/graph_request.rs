//! Fuzzes what the Graph-compatible admin API reads before anything else:
//! the query string of `GET /v1.0/users`, the `PATCH` body of a user, the
//! `POST /v1.0/invitations` body and the `Authorization` header.
//!
//! The first byte chooses the reader; the rest is its input. Every reader
//! must answer (never panic) with a Graph error of a 4xx status, and what it
//! accepts must hold:
//!
//! - an accepted `$filter` prints in a canonical form that parses to the
//!   same filter, and an accepted `$select` keeps `id` and names only
//!   properties of `user`;
//! - `$top` is within 1..=999;
//! - an accepted `PATCH` names only writable properties;
//! - an arbitrary bearer value is never accepted as an admin token (only
//!   tokens the issuer signed are), and is refused with 401.

#![no_main]

use std::sync::OnceLock;

use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
use guestpass::graph::auth::AdminTokenIssuer;
use guestpass::graph::invitations;
use guestpass::graph::odata::{Filter, MAX_TOP, USER_PROPERTIES, UsersQuery};
use guestpass::graph::users::{UserPatch, WRITABLE_PROPERTIES};
use guestpass::random::SeededRandom;
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fn issuer() -> Option<&'static AdminTokenIssuer> {
    static ISSUER: OnceLock<Option<AdminTokenIssuer>> = OnceLock::new();
    ISSUER
        .get_or_init(|| {
            let rng = SeededRandom::new(5);
            let key = TokenSigningKey::generate("k1", TokenAlgorithm::Es256, &rng).ok()?;
            let base = url::Url::parse("https://guests.contoso.example/").ok()?;
            AdminTokenIssuer::new(&TokenKeys::new(key), &base).ok()
        })
        .as_ref()
}

fn client_error(status: u16) {
    assert!((400..500).contains(&status), "a reader answered {status}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let Ok(query) = std::str::from_utf8(rest) else {
                return;
            };
            match UsersQuery::from_query(Some(query)) {
                Ok(q) => {
                    if let Some(filter) = &q.filter {
                        let printed = filter.to_string();
                        let again = Filter::parse(&printed).expect("the canonical form parses");
                        assert_eq!(&again, filter, "the canonical form is the same filter");
                    }
                    if let Some(select) = &q.select {
                        for p in select.properties() {
                            assert!(USER_PROPERTIES.contains(&p.as_str()), "selected `{p}`");
                        }
                    }
                    if let Some(top) = q.top {
                        assert!((1..=MAX_TOP).contains(&top));
                    }
                }
                Err(e) => client_error(e.status.as_u16()),
            }
        }
        1 => match UserPatch::parse(rest) {
            Ok(patch) => {
                for p in patch.properties() {
                    assert!(WRITABLE_PROPERTIES.contains(&p), "patched `{p}`");
                }
            }
            Err(e) => client_error(e.status.as_u16()),
        },
        2 => {
            if let Err(e) = invitations::parse_request(rest) {
                client_error(e.status.as_u16());
            }
        }
        _ => {
            let Some(issuer) = issuer() else {
                return;
            };
            let header = String::from_utf8_lossy(rest);
            let now = datetime!(2026-12-02 09:00 UTC);
            match issuer.verify(Some(&header), now) {
                Ok(_) => panic!("an arbitrary bearer value was accepted"),
                Err(e) => assert_eq!(e.status.as_u16(), 401),
            }
        }
    }
});
