//! Randomness as an input: the core never reaches for the operating system.
//!
//! Production code uses [`SystemRandom`] (ring's CSPRNG). Tests and
//! benchmarks use [`SeededRandom`], a deterministic generator that must never
//! be used to protect real accounts.

use std::sync::Mutex;

use ring::rand::SecureRandom as _;

use crate::error::{Error, Internal};

/// A cryptographically secure source of random bytes.
pub trait SecureRandom: Send + Sync + std::fmt::Debug {
    /// Fills `dest` with random bytes.
    ///
    /// # Errors
    ///
    /// Fails only when the underlying generator is unavailable.
    fn fill(&self, dest: &mut [u8]) -> Result<(), Error>;
}

/// ring's operating-system CSPRNG; the production default.
#[derive(Debug)]
pub struct SystemRandom(ring::rand::SystemRandom);

impl Default for SystemRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemRandom {
    /// A new handle to the operating system's generator.
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl SecureRandom for SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), Error> {
        self.0
            .fill(dest)
            .map_err(|_| Error::Internal(Internal::RandomUnavailable))
    }
}

/// A deterministic generator for tests: the same seed gives the same bytes.
///
/// It expands the seed with SHA-256 in counter mode. Predictable by design:
/// never use it outside tests, examples and benchmarks.
pub struct SeededRandom {
    state: Mutex<(u64, [u8; 32])>,
}

/// The state would let anyone recompute every value drawn: not shown.
impl std::fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeededRandom(..)")
    }
}

impl SeededRandom {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, &seed.to_be_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        Self {
            state: Mutex::new((0, key)),
        }
    }
}

impl SecureRandom for SeededRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), Error> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (counter, key) = &mut *guard;
        for chunk in dest.chunks_mut(32) {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(key);
            ctx.update(&counter.to_be_bytes());
            *counter = counter.wrapping_add(1);
            let block = ctx.finish();
            chunk.copy_from_slice(&block.as_ref()[..chunk.len()]);
        }
        Ok(())
    }
}

/// Draws `N` random bytes.
pub(crate) fn bytes<const N: usize>(rng: &dyn SecureRandom) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    rng.fill(&mut out)?;
    Ok(out)
}

/// Draws a uniformly distributed integer in `0..bound` (rejection sampling,
/// so no modulo bias). `bound` must be non-zero.
pub(crate) fn below(rng: &dyn SecureRandom, bound: u32) -> Result<u32, Error> {
    let bound = bound.max(1);
    // Largest multiple of `bound` that fits in u32; values at or above it are redrawn.
    let zone = u32::MAX - (u32::MAX % bound);
    // A working generator needs a redraw with probability below 1/2 per
    // draw; 64 misses in a row means it is broken, not unlucky.
    for _ in 0..64 {
        let v = u32::from_be_bytes(bytes::<4>(rng)?);
        if v < zone {
            return Ok(v % bound);
        }
    }
    Err(Error::Internal(Internal::RandomUnavailable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_seed_dependent() {
        let (a, b, c) = (SeededRandom::new(1), SeededRandom::new(1), SeededRandom::new(2));
        let (x, y, z) = (
            bytes::<48>(&a).unwrap(),
            bytes::<48>(&b).unwrap(),
            bytes::<48>(&c).unwrap(),
        );
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_ne!(bytes::<48>(&a).unwrap(), x, "successive draws differ");
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let rng = SeededRandom::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = below(&rng, 10).unwrap();
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
