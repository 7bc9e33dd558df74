//! Fuzzes `EmailAddress::parse`: arbitrary bytes, decoded as lossy UTF-8.
//!
//! It must never panic, and an address it accepts must satisfy:
//!
//! - the domain is non-empty, lowercase ASCII (letters, digits, `-`, `.`);
//! - the comparison key is `lowercase(local part)@domain`, so it ends with
//!   `"@" + domain`, and the address is within the length limits;
//! - `as_str()` is the trimmed input, and parsing it again gives an equal
//!   address with the same text, domain and comparison key.

#![no_main]

use guestpass::email::{EmailAddress, MAX_ADDRESS_LEN, MAX_INPUT_LEN, MAX_LOCAL_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let Ok(address) = EmailAddress::parse(&input) else {
        return;
    };
    assert!(input.len() <= MAX_INPUT_LEN);
    assert_eq!(address.as_str(), input.trim());

    let domain = address.domain();
    assert!(!domain.is_empty());
    assert!(
        domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
        "domain {domain:?} is not lowercase ASCII"
    );

    let key = address.comparison_key();
    assert!(key.ends_with(&format!("@{domain}")), "{key:?} vs {domain:?}");
    assert!(key.len() <= MAX_ADDRESS_LEN);
    let local = address.local_part();
    assert!(!local.is_empty() && local.len() <= MAX_LOCAL_LEN);
    assert_eq!(key, format!("{}@{domain}", local.to_lowercase()));
    assert_eq!(address.to_string(), address.as_str());

    let again = match EmailAddress::parse(address.as_str()) {
        Ok(a) => a,
        Err(e) => panic!("{:?} parsed, its as_str() did not: {e}", address.as_str()),
    };
    assert_eq!(again, address);
    assert_eq!(again.as_str(), address.as_str());
    assert_eq!(again.domain(), domain);
    assert_eq!(again.comparison_key(), key);

    // The comparison key is itself an address with the same key.
    if let Ok(from_key) = EmailAddress::parse(key) {
        assert_eq!(from_key, address);
    }
});
