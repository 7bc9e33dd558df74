//! Email addresses: parsing, the IDNA domain, and the comparison key.
//!
//! An [`EmailAddress`] keeps three forms:
//!
//! - the address **as entered** (trimmed of surrounding white space), which
//!   is what mail is sent to and what is shown back to the person;
//! - the **domain as an IDNA A-label** (`bücher.example` becomes
//!   `xn--bcher-kva.example`), lowercase, which policy checks use;
//! - the **comparison key**, `lowercase(local)@a-label-domain`, which is how
//!   two spellings of one address are recognised as the same guest.
//!
//! The local part is compared case-insensitively as well as the domain: a
//! directory keyed on the local part's case would let `Alice@` and `alice@`
//! become two guests for one mailbox, which is what Entra avoids too. The
//! local part must be ASCII (domains may be internationalised): Unicode case
//! mapping folds distinct characters together (the Kelvin sign `K` lowercases
//! to `k`), which would let one address claim another's comparison key.
//!
//! Parsing follows the characters Graph refuses in `invitedUserEmailAddress`:
//! `~ ! # $ % ^ & * ( ) + = [ ] { } \ / | ; : " < > ? ,` are rejected
//! anywhere in the local part, a period or hyphen may not start or end it,
//! and an underscore may stand anywhere. Quoted local parts, comments and IP
//! literals are not accepted.
//!
//! ```
//! use guestpass::email::EmailAddress;
//!
//! let a = EmailAddress::parse("Alice.Smith@Bücher.Example")?;
//! assert_eq!(a.as_str(), "Alice.Smith@Bücher.Example");
//! assert_eq!(a.domain(), "xn--bcher-kva.example");
//! assert_eq!(a.comparison_key(), "alice.smith@xn--bcher-kva.example");
//! assert_eq!(a, EmailAddress::parse("alice.smith@XN--BCHER-KVA.example")?);
//! # Ok::<(), guestpass::email::EmailError>(())
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Longest accepted input, in bytes, before any other check (keeps parsing
/// bounded for hostile input).
pub const MAX_INPUT_LEN: usize = 320;
/// Longest local part, in bytes (RFC 5321).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest address in its A-label form, in bytes (RFC 5321 path limit).
pub const MAX_ADDRESS_LEN: usize = 254;

/// Why an email address was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmailError {
    /// Nothing was given.
    #[error("the address is empty")]
    Empty,
    /// The input is longer than the parser reads.
    #[error("the address is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// There is no `@`.
    #[error("the address has no `@`")]
    MissingAt,
    /// There is more than one `@`.
    #[error("the address has more than one `@`")]
    MultipleAt,
    /// Nothing before the `@`.
    #[error("the part before `@` is empty")]
    EmptyLocalPart,
    /// The part before the `@` exceeds 64 bytes.
    #[error("the part before `@` is longer than 64 bytes")]
    LocalPartTooLong,
    /// A character that is not allowed in the part before the `@`.
    #[error("the character `{character}` is not allowed before `@`")]
    ForbiddenCharacter {
        /// The offending character (shown escaped when it is not printable).
        character: String,
    },
    /// A period or hyphen at the start or end of the part before the `@`.
    #[error("the part before `@` may not start or end with `{character}`")]
    BadLocalPartEdge {
        /// `.` or `-`.
        character: char,
    },
    /// Two periods in a row before the `@`.
    #[error("the part before `@` has two periods in a row")]
    ConsecutiveDots,
    /// Nothing after the `@`.
    #[error("the domain after `@` is empty")]
    EmptyDomain,
    /// The domain is not a valid internationalised host name.
    #[error("the domain `{domain}` is not a valid domain name: {reason}")]
    InvalidDomain {
        /// The domain as entered.
        domain: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A parsed email address. Equality and hashing use the comparison key.
#[derive(Clone)]
pub struct EmailAddress {
    entered: String,
    domain: String,
    key: String,
}

impl EmailAddress {
    /// Parses an address, rejecting what Graph rejects.
    ///
    /// # Errors
    ///
    /// An [`EmailError`] naming the first problem found.
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(EmailError::TooLong { max: MAX_INPUT_LEN });
        }
        let entered = input.trim();
        if entered.is_empty() {
            return Err(EmailError::Empty);
        }
        let (local, domain_in) = match entered.split_once('@') {
            None => return Err(EmailError::MissingAt),
            Some((_, rest)) if rest.contains('@') => return Err(EmailError::MultipleAt),
            Some(parts) => parts,
        };
        check_local(local)?;
        let domain = to_a_label(domain_in)?;
        let key = format!("{}@{}", local.to_ascii_lowercase(), domain);
        if key.len() > MAX_ADDRESS_LEN {
            return Err(EmailError::TooLong { max: MAX_ADDRESS_LEN });
        }
        Ok(Self {
            entered: entered.to_owned(),
            domain,
            key,
        })
    }

    /// The address as entered (trimmed); where mail goes.
    pub fn as_str(&self) -> &str {
        &self.entered
    }

    /// The part before `@`, as entered.
    pub fn local_part(&self) -> &str {
        self.entered.split_once('@').map(|(l, _)| l).unwrap_or_default()
    }

    /// The domain as a lowercase IDNA A-label.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The form two addresses are compared by: lowercase local part, `@`,
    /// A-label domain.
    pub fn comparison_key(&self) -> &str {
        &self.key
    }
}

fn check_local(local: &str) -> Result<(), EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart);
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(EmailError::LocalPartTooLong);
    }
    for c in local.chars() {
        let allowed = c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '\'');
        if !allowed {
            return Err(EmailError::ForbiddenCharacter {
                character: c.escape_default().to_string(),
            });
        }
    }
    for edge in [local.chars().next(), local.chars().last()].into_iter().flatten() {
        if edge == '.' || edge == '-' {
            return Err(EmailError::BadLocalPartEdge { character: edge });
        }
    }
    if local.contains("..") {
        return Err(EmailError::ConsecutiveDots);
    }
    Ok(())
}

/// Converts a domain to its lowercase A-label form and checks it is a host
/// name with at least two labels of letters, digits and inner hyphens.
pub(crate) fn to_a_label(domain: &str) -> Result<String, EmailError> {
    let invalid = |reason| EmailError::InvalidDomain {
        domain: domain.to_owned(),
        reason,
    };
    if domain.is_empty() {
        return Err(EmailError::EmptyDomain);
    }
    if domain.starts_with('[') {
        return Err(invalid("address literals are not accepted"));
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|_| invalid("it is not a valid IDNA name"))?;
    if ascii.is_empty() {
        return Err(EmailError::EmptyDomain);
    }
    if ascii.len() > 253 {
        return Err(invalid("it is longer than 253 bytes"));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(invalid("it needs at least two labels"));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(invalid("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(invalid("a label is longer than 63 bytes"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(
                "it has a character that is not a letter, digit or hyphen",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label starts or ends with a hyphen"));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid("the last label is numeric"));
    }
    Ok(ascii.to_ascii_lowercase())
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entered)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({:?})", self.entered)
    }
}

impl PartialEq for EmailAddress {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for EmailAddress {}

impl Hash for EmailAddress {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl FromStr for EmailAddress {
    type Err = EmailError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for EmailAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.entered)
    }
}

impl<'de> serde::Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_international_addresses() {
        for ok in [
            "alice@fabrikam.com",
            "  bob.o'neil@contoso.co.uk ",
            "_x_@a.io",
            "first-last@sub.example.org",
            "juergen@bücher.example",
            "info@例子.广告",
        ] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn non_ascii_local_parts_cannot_claim_ascii_keys() {
        // U+212A KELVIN SIGN lowercases to ASCII `k`; U+0130 to `i̇`.
        for input in [
            "\u{212A}evin@example.com",
            "\u{0130}nfo@example.com",
            "jürgen@example.com",
        ] {
            assert!(
                matches!(
                    EmailAddress::parse(input),
                    Err(EmailError::ForbiddenCharacter { .. })
                ),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_each_character_graph_rejects() {
        for c in "~!#$%^&*()+=[]{}\\/|;:\"<>?, \t".chars() {
            let input = format!("a{c}b@example.com");
            assert_eq!(
                EmailAddress::parse(&input),
                Err(EmailError::ForbiddenCharacter {
                    character: c.escape_default().to_string()
                }),
                "{input}"
            );
        }
    }

    #[test]
    fn names_the_problem() {
        use EmailError::*;
        let cases: [(&str, EmailError); 10] = [
            ("", Empty),
            ("   ", Empty),
            ("alice.example.com", MissingAt),
            ("a@b@example.com", MultipleAt),
            ("@example.com", EmptyLocalPart),
            ("alice@", EmptyDomain),
            (".alice@example.com", BadLocalPartEdge { character: '.' }),
            ("alice-@example.com", BadLocalPartEdge { character: '-' }),
            ("al..ice@example.com", ConsecutiveDots),
            (&"a".repeat(65), MissingAt),
        ];
        for (input, want) in cases {
            assert_eq!(EmailAddress::parse(input).map(|_| ()), Err(want), "{input}");
        }
        assert_eq!(
            EmailAddress::parse(&format!("{}@example.com", "a".repeat(65))).map(|_| ()),
            Err(LocalPartTooLong)
        );
        assert!(matches!(
            EmailAddress::parse("alice@localhost"),
            Err(InvalidDomain { .. })
        ));
        assert!(matches!(
            EmailAddress::parse("alice@[127.0.0.1]"),
            Err(InvalidDomain { .. })
        ));
        assert!(matches!(
            EmailAddress::parse("alice@1.2.3.4"),
            Err(InvalidDomain { .. })
        ));
        assert!(matches!(
            EmailAddress::parse("alice@exa_mple.com"),
            Err(InvalidDomain { .. })
        ));
        assert_eq!(
            EmailAddress::parse(&"a".repeat(400)).map(|_| ()),
            Err(TooLong { max: MAX_INPUT_LEN })
        );
    }

    #[test]
    fn compares_case_insensitively_on_a_labels() {
        let a = EmailAddress::parse("Alice@Bücher.example").unwrap();
        let b = EmailAddress::parse("alice@xn--bcher-kva.EXAMPLE").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Alice@Bücher.example", "kept as entered");
        assert_eq!(a.local_part(), "Alice");
        assert_ne!(a, EmailAddress::parse("alice@bucher.example").unwrap());
    }

    #[test]
    fn serde_round_trip_keeps_the_entered_form() {
        let a = EmailAddress::parse("Alice@Example.com").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"Alice@Example.com\"");
        let back: EmailAddress = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str(), "Alice@Example.com");
        assert!(serde_json::from_str::<EmailAddress>("\"nope\"").is_err());
    }
}
