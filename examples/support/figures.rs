//! Figures shared by the load examples (`load_redeem`, `load_web`):
//! rates, nearest-rank percentiles and their formatting, and random names
//! for temporary files and databases.

use std::time::Duration;

use guestpass::random::{SecureRandom, SystemRandom};

/// `bytes` random bytes from the system CSPRNG, as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, guestpass::Error> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new().fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// `n` events in `d`, per second (zero for an empty duration).
pub fn per_second(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// The nearest-rank `p`-th percentile of sorted durations.
pub fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// `d` in milliseconds with `decimals` places, or `-` for none.
pub fn ms(d: Option<Duration>, decimals: usize) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.*} ms", decimals, d.as_secs_f64() * 1e3),
    )
}
