//! Object identifiers: random 128-bit GUIDs, as Graph uses.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::random::{self, SecureRandom};

/// A directory object id: a random (version 4) GUID, written in the
/// lowercase hyphenated form Graph uses.
///
/// ```
/// use guestpass::id::Id;
/// let id: Id = "0f8fad5b-d9cb-469f-a165-70867728950e".parse().unwrap();
/// assert_eq!(id.to_string(), "0f8fad5b-d9cb-469f-a165-70867728950e");
/// assert!("not-an-id".parse::<Id>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; 16]);

impl Id {
    /// A fresh random id.
    ///
    /// # Errors
    ///
    /// When the random generator fails.
    pub fn random(rng: &dyn SecureRandom) -> Result<Self, Error> {
        let mut b = random::bytes::<16>(rng)?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Ok(Self(b))
    }

    /// The id's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// An id from its 16 bytes.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(b)
    }
}

/// The text is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a GUID")]
pub struct ParseIdError;

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(ParseIdError);
        }
        let mut out = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < 36 {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b[i] != b'-' {
                    return Err(ParseIdError);
                }
                i += 1;
                continue;
            }
            let hi = hex(b[i]).ok_or(ParseIdError)?;
            let lo = hex(*b.get(i + 1).ok_or(ParseIdError)?).ok_or(ParseIdError)?;
            *out.get_mut(n).ok_or(ParseIdError)? = (hi << 4) | lo;
            n += 1;
            i += 2;
        }
        Ok(Self(out))
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(36);
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            crate::secret::push_hex(&mut out, &[*b]);
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn random_ids_round_trip_and_are_v4() {
        let rng = SeededRandom::new(3);
        let id = Id::random(&rng).unwrap();
        let s = id.to_string();
        assert_eq!(s.as_bytes()[14], b'4');
        assert_eq!(s.parse::<Id>().unwrap(), id);
        assert_ne!(Id::random(&rng).unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<Id>().unwrap(), id);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "0f8fad5b",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5bxd9cb-469f-a165-70867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "ééééééééé-d9cb-469f-a165-708677",
        ] {
            assert!(bad.parse::<Id>().is_err(), "{bad}");
        }
    }
}
