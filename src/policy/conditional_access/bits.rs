//! A fixed-size set of policy indexes, one bit per policy, and a fixed-key
//! hasher for the id tables.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::MAX_POLICIES;

const WORDS: usize = 8;

const _: () = assert!(MAX_POLICIES <= WORDS * 64);

/// A set of policy indexes below [`MAX_POLICIES`]. Copying it is copying 64
/// bytes; no operation allocates.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub(crate) struct Bits([u64; WORDS]);

impl Bits {
    pub(crate) fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub(crate) fn remove(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(crate) fn union(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }

    pub(crate) fn and(self, other: &Bits) -> Bits {
        let mut out = self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a &= b;
        }
        out
    }

    pub(crate) fn and_not(self, other: &Bits) -> Bits {
        let mut out = self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a &= !b;
        }
        out
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The smallest index in the set.
    pub(crate) fn first(&self) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }

    /// The indexes in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(i * 64 + bit)
            })
        })
    }
}

/// A string hasher with a fixed key, after foldhash: short keys (the ids
/// here are mostly under 40 bytes) cost one or a few 64x64->128-bit
/// multiplications folded to 64 bits. The tables it hashes for hold
/// configured ids only, so a sign-in cannot lengthen their probe chains; a
/// fixed key keeps the core free of OS randomness and its layout
/// reproducible.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;

fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

fn word(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

fn half(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len();
        let seed = self.0 ^ K0 ^ (len as u64);
        let (a, b) = if len > 16 {
            let mut s = seed;
            let mut at = 0;
            while at + 16 < len {
                s = fold(word(bytes, at) ^ s, word(bytes, at + 8) ^ K1);
                at += 16;
            }
            (word(bytes, len - 16) ^ s, word(bytes, len - 8))
        } else if len >= 8 {
            (word(bytes, 0), word(bytes, len - 8))
        } else if len >= 4 {
            (half(bytes, 0), half(bytes, len - 4))
        } else if len > 0 {
            let lo = bytes.first().copied().map_or(0, u64::from);
            let mid = bytes.get(len / 2).copied().map_or(0, u64::from);
            let hi = bytes.last().copied().map_or(0, u64::from);
            (lo | (mid << 8) | (hi << 16), 0)
        } else {
            (0, 0)
        };
        self.0 = fold(a ^ seed, b ^ K1);
    }

    fn write_u8(&mut self, i: u8) {
        // `str` hashes as its bytes then 0xff: the same suffix for every
        // key of these tables, so a cheap mix suffices.
        self.0 = self.0.rotate_left(8) ^ u64::from(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.0 = fold(self.0 ^ i as u64, K2);
    }

    fn finish(&self) -> u64 {
        // `write` ends in a folded multiplication: already mixed.
        self.0
    }
}

/// A hash map with the fixed-key [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Ids of one kind (users, groups, applications, tenants, agreements),
/// numbered in order of first appearance in the configuration.
///
/// A folding interner ([`Interner::folding`]) compares ids ignoring ASCII
/// case: directory object ids and tenant ids are GUIDs, which Graph writes
/// in either case.
#[derive(Default, Clone)]
pub(crate) struct Interner {
    map: IdMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
    fold: bool,
}

/// Longest id folded on the stack; longer ones (rare: GUIDs are 36) are
/// folded on the heap.
const FOLD_BUFFER: usize = 64;

impl Interner {
    /// An interner that ignores ASCII case.
    pub(crate) fn folding() -> Self {
        Self {
            fold: true,
            ..Self::default()
        }
    }

    pub(crate) fn intern(&mut self, id: &str) -> u32 {
        if self.fold && id.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.intern(&id.to_ascii_lowercase());
        }
        if let Some(&n) = self.map.get(id) {
            return n;
        }
        // At most MAX_POLICIES * lists * MAX_CONDITION_VALUES ids: fits.
        let n = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(id);
        self.map.insert(name.clone(), n);
        self.names.push(name);
        n
    }

    pub(crate) fn get(&self, id: &str) -> Option<u32> {
        if !self.fold || !id.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.map.get(id).copied();
        }
        // Folded without allocating for ids that fit the buffer.
        let mut buffer = [0u8; FOLD_BUFFER];
        match buffer.get_mut(..id.len()) {
            Some(slot) => {
                slot.copy_from_slice(id.as_bytes());
                slot.make_ascii_lowercase();
                std::str::from_utf8(slot)
                    .ok()
                    .and_then(|s| self.map.get(s).copied())
            }
            None => self.map.get(id.to_ascii_lowercase().as_str()).copied(),
        }
    }

    pub(crate) fn name(&self, n: u32) -> Arc<str> {
        self.names
            .get(n as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    pub(crate) fn name_str(&self, n: u32) -> &str {
        self.names.get(n as usize).map_or("", |s| s)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_interners_ignore_ascii_case_and_plain_ones_do_not() {
        let mut f = Interner::folding();
        let n = f.intern("3F2A1B4C-5D6E-4F70-8A9B-0C1D2E3F4A5B");
        assert_eq!(f.intern("3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"), n);
        assert_eq!(f.get("3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"), Some(n));
        assert_eq!(f.get("3F2A1B4C-5D6E-4F70-8A9B-0C1D2E3F4A5B"), Some(n));
        let long = "A".repeat(FOLD_BUFFER + 1);
        let m = f.intern(&long);
        assert_eq!(f.get(&long.to_ascii_lowercase()), Some(m));
        assert_eq!(f.get(&long), Some(m));
        let mut plain = Interner::default();
        let a = plain.intern("App");
        assert_eq!(plain.get("App"), Some(a));
        assert_eq!(plain.get("app"), None);
    }

    #[test]
    fn bits_set_and_iterate() {
        let mut b = Bits::default();
        for i in [0, 5, 63, 64, 200, 499] {
            b.set(i);
        }
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 5, 63, 64, 200, 499]);
        assert_eq!(b.first(), Some(0));
        assert!(b.contains(200) && !b.contains(201));
        let mut c = Bits::default();
        c.set(64);
        c.set(7);
        assert_eq!(b.and(&c).iter().collect::<Vec<_>>(), vec![64]);
        assert_eq!(b.and_not(&c).first(), Some(0));
        assert!(Bits::default().is_empty() && Bits::default().first().is_none());
        b.union(&c);
        assert!(b.contains(7));
    }

    #[test]
    fn hasher_spreads_similar_ids() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<IdHasher>::default();
        let mut seen = std::collections::HashSet::new();
        let mut buckets = [0u32; 64];
        for i in 0..4096 {
            for id in [
                format!("g{i}"),
                format!("app-{i}"),
                format!("00000000-0000-4000-8000-{i:012}"),
            ] {
                let h = b.hash_one(id.as_str());
                assert!(seen.insert(h), "collision on {id}");
                buckets[(h & 63) as usize] += 1;
                assert_ne!(b.hash_one(id.as_str()), b.hash_one(format!("{id}x").as_str()));
            }
        }
        // 12288 keys over 64 buckets: 192 each on average.
        assert!(buckets.iter().all(|&n| (120..270).contains(&n)), "{buckets:?}");
        assert_ne!(b.hash_one(""), b.hash_one("a"));
        assert_ne!(b.hash_one("ab"), b.hash_one("ba"));
    }

    #[test]
    fn interner_numbers_in_order() {
        let mut i = Interner::default();
        assert_eq!(i.intern("b"), 0);
        assert_eq!(i.intern("a"), 1);
        assert_eq!(i.intern("b"), 0);
        assert_eq!(i.get("a"), Some(1));
        assert_eq!(i.get("c"), None);
        assert_eq!(&*i.name(1), "a");
        assert_eq!(i.len(), 2);
    }
}
