//! IP ranges in CIDR notation, parsed with `std::net` into sorted,
//! merged numeric intervals that a lookup binary-searches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flow::connector::quote;

/// One parsed CIDR range, as the inclusive interval of its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cidr {
    V4(u32, u32),
    V6(u128, u128),
}

/// Parses `address/prefix` (`10.0.0.0/8`, `2001:db8::/32`). An IPv4-mapped
/// IPv6 range of prefix 96 or longer (`::ffff:10.0.0.0/104`) is the IPv4
/// range it maps, as sign-in addresses are compared in canonical form.
///
/// Refused, with a reason: no `/`, an address `std::net` does not parse, a
/// prefix that is not a decimal number or is longer than the address, and
/// host bits set below the prefix.
pub(crate) fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(format!(
            "`{}` is not in CIDR notation (address/prefix length)",
            quote(text)
        ));
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{}` is not an IPv4 or IPv6 address", quote(addr)))?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("prefix length `{}` is not a number", quote(prefix)));
    }
    let bits: u32 = prefix
        .parse()
        .map_err(|_| format!("prefix length `{}` is not a number", quote(prefix)))?;
    match addr {
        IpAddr::V4(v4) => {
            let n = u32::from(v4);
            let mask =
                prefix_mask_32(bits).ok_or_else(|| format!("prefix length {bits} is longer than 32 bits"))?;
            if n & !mask != 0 {
                return Err(host_bits(text, &IpAddr::V4(Ipv4Addr::from(n & mask)), bits));
            }
            Ok(Cidr::V4(n, n | !mask))
        }
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            let mask = prefix_mask_128(bits)
                .ok_or_else(|| format!("prefix length {bits} is longer than 128 bits"))?;
            if n & !mask != 0 {
                return Err(host_bits(text, &IpAddr::V6(Ipv6Addr::from(n & mask)), bits));
            }
            if v6.to_ipv4_mapped().is_some() && bits >= 96 {
                // The low 32 bits, exactly: the mapped IPv4 interval.
                let start = (n & 0xffff_ffff) as u32;
                let end = ((n | !mask) & 0xffff_ffff) as u32;
                return Ok(Cidr::V4(start, end));
            }
            Ok(Cidr::V6(n, n | !mask))
        }
    }
}

fn host_bits(text: &str, network: &IpAddr, bits: u32) -> String {
    format!(
        "`{}` has host bits set below the prefix; the network is `{network}/{bits}`",
        quote(text)
    )
}

fn prefix_mask_32(bits: u32) -> Option<u32> {
    match bits {
        0 => Some(0),
        1..=32 => Some(u32::MAX << (32 - bits)),
        _ => None,
    }
}

fn prefix_mask_128(bits: u32) -> Option<u128> {
    match bits {
        0 => Some(0),
        1..=128 => Some(u128::MAX << (128 - bits)),
        _ => None,
    }
}

/// A set of addresses as sorted, disjoint, non-adjacent inclusive intervals
/// per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IpRanges {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl IpRanges {
    /// The union of `ranges`.
    pub(crate) fn new(ranges: impl IntoIterator<Item = Cidr>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for r in ranges {
            match r {
                Cidr::V4(a, b) => v4.push((a, b)),
                Cidr::V6(a, b) => v6.push((a, b)),
            }
        }
        Self {
            v4: merge(v4, |e| e.checked_add(1)).into_boxed_slice(),
            v6: merge(v6, |e| e.checked_add(1)).into_boxed_slice(),
        }
    }

    /// Whether `ip` (in canonical form: an IPv4-mapped IPv6 address is its
    /// IPv4 address) is in the set.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }
    }

    /// How many intervals the set holds after merging.
    #[cfg(test)]
    pub(crate) fn intervals(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, succ: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        if let Some(last) = out.last_mut() {
            // Overlapping or adjacent: extend the previous interval.
            if succ(last.1).is_none_or(|next| start <= next) {
                if end > last.1 {
                    last.1 = end;
                }
                continue;
            }
        }
        out.push((start, end));
    }
    out
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|&(start, _)| start <= x);
    i > 0 && ranges.get(i - 1).is_some_and(|&(_, end)| x <= end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(parse_cidr("10.0.0.0/8"), Ok(Cidr::V4(0x0a00_0000, 0x0aff_ffff)));
        assert_eq!(parse_cidr("0.0.0.0/0"), Ok(Cidr::V4(0, u32::MAX)));
        assert_eq!(parse_cidr("192.0.2.7/32"), Ok(Cidr::V4(0xc000_0207, 0xc000_0207)));
        assert_eq!(
            parse_cidr("::ffff:10.0.0.0/104"),
            Ok(Cidr::V4(0x0a00_0000, 0x0aff_ffff))
        );
        assert!(matches!(parse_cidr("2001:db8::/32"), Ok(Cidr::V6(..))));
        assert_eq!(
            parse_cidr("10.0.0.0/33").unwrap_err(),
            "prefix length 33 is longer than 32 bits"
        );
        assert_eq!(
            parse_cidr("10.0.0.1/8").unwrap_err(),
            "`10.0.0.1/8` has host bits set below the prefix; the network is `10.0.0.0/8`"
        );
        assert_eq!(
            parse_cidr("::1/129").unwrap_err(),
            "prefix length 129 is longer than 128 bits"
        );
        assert_eq!(
            parse_cidr("garbage").unwrap_err(),
            "`garbage` is not in CIDR notation (address/prefix length)"
        );
        assert_eq!(
            parse_cidr("10.0.0/8").unwrap_err(),
            "`10.0.0` is not an IPv4 or IPv6 address"
        );
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/0008",
            "10.0.0.0/8/8",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
        assert!(
            parse_cidr("010.0.0.0/8").is_err(),
            "octal-looking octets are refused"
        );
    }

    #[test]
    fn merges_and_finds() {
        let set = IpRanges::new(
            [
                "10.0.0.0/9",
                "10.128.0.0/9",
                "10.64.0.0/10",
                "192.0.2.0/24",
                "2001:db8::/32",
                "::/0",
            ]
            .into_iter()
            .map(|c| parse_cidr(c).unwrap()),
        );
        assert_eq!(
            set.intervals(),
            3,
            "two adjacent halves and a subrange merge into 10/8"
        );
        assert!(set.contains(ip("10.0.0.0")) && set.contains(ip("10.255.255.255")));
        assert!(!set.contains(ip("11.0.0.0")) && !set.contains(ip("9.255.255.255")));
        assert!(set.contains(ip("192.0.2.200")) && !set.contains(ip("192.0.3.0")));
        assert!(
            set.contains(ip("::ffff:10.1.2.3")),
            "mapped addresses compare as IPv4"
        );
        assert!(set.contains(ip("fe80::1")));
        let top = IpRanges::new([
            parse_cidr("255.255.255.0/24").unwrap(),
            parse_cidr("255.0.0.0/8").unwrap(),
        ]);
        assert!(top.contains(ip("255.255.255.255")) && top.intervals() == 1);
        assert!(!IpRanges::default().contains(ip("10.0.0.1")));
    }
}
