//! IP ranges written as `192.0.2.0/24`, `2001:db8::/32` or a bare address.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// A range from a base address and a prefix length (clamped to the address size).
    pub fn new(base: IpAddr, prefix: u8) -> IpRange {
        let max = if base.is_ipv4() { 32 } else { 128 };
        IpRange { base, prefix: prefix.min(max) }
    }

    pub fn parse(s: &str) -> Result<IpRange, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let base: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?,
            None => max,
        };
        Ok(IpRange { base, prefix })
    }

    /// The address as written (not masked).
    pub fn base(&self) -> IpAddr {
        self.base
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip) {
            (IpAddr::V4(b), IpAddr::V4(i)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix as u32) };
                u32::from(b) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(b), IpAddr::V6(i)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix as u32) };
                u128::from(b) & mask == u128::from(i) & mask
            }
            (IpAddr::V4(b), IpAddr::V6(i)) => {
                i.to_ipv4_mapped().is_some_and(|m| IpRange { base: b.into(), prefix: self.prefix }.contains(m.into()))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = IpRange::parse("192.0.2.0/24").unwrap();
        assert!(r.contains("192.0.2.77".parse().unwrap()));
        assert!(!r.contains("192.0.3.1".parse().unwrap()));
        assert!(r.contains("::ffff:192.0.2.9".parse().unwrap()));
        assert!(IpRange::parse("2001:db8::/32").unwrap().contains("2001:db8:1::5".parse().unwrap()));
        assert!(IpRange::parse("198.51.100.7").unwrap().contains("198.51.100.7".parse().unwrap()));
        assert!(IpRange::parse("10.0.0.0/33").is_err());
        assert!(IpRange::parse("mail.example.com").is_err());
    }
}
