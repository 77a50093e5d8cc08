//! Which peer addresses the relay may reach. Safe by default: everything that is not a public
//! unicast address is refused (what coturn's hardened `denied-peer-ip` lists do), after
//! normalising IPv4 hidden inside IPv6 (`::ffff:127.0.0.1`, NAT64), so the relay cannot be
//! used to reach the server's own network. Ranges can be opened with `--turn-allow-peer`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address range such as `10.0.0.0/8` or `::1/128` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    pub const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Self {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(format!("bad prefix length in {s:?}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Every range a relay refuses by default.
pub const DENIED: &[Cidr] = &[
    Cidr::v4(0, 0, 0, 0, 8),                         // "this network", including 0.0.0.0
    Cidr::v4(10, 0, 0, 0, 8),                        // private
    Cidr::v4(100, 64, 0, 0, 10),                     // carrier-grade NAT
    Cidr::v4(127, 0, 0, 0, 8),                       // loopback
    Cidr::v4(169, 254, 0, 0, 16),                    // link-local (cloud metadata lives here)
    Cidr::v4(172, 16, 0, 0, 12),                     // private
    Cidr::v4(192, 0, 0, 0, 24),                      // IETF protocol assignments
    Cidr::v4(192, 0, 2, 0, 24),                      // documentation
    Cidr::v4(192, 88, 99, 0, 24),                    // 6to4 relay anycast
    Cidr::v4(192, 168, 0, 0, 16),                    // private
    Cidr::v4(198, 18, 0, 0, 15),                     // benchmarking
    Cidr::v4(198, 51, 100, 0, 24),                   // documentation
    Cidr::v4(203, 0, 113, 0, 24),                    // documentation
    Cidr::v4(224, 0, 0, 0, 4),                       // multicast
    Cidr::v4(240, 0, 0, 0, 4),                       // reserved, and 255.255.255.255 broadcast
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),          // ::, ::1 and deprecated IPv4-compatible
    Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use NAT64
    Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard-only
    Cidr::v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),     // IPv4-translated (SIIT)
    Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),     // Teredo (tunnels to any IPv4 address)
    Cidr::v6([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48),   // benchmarking
    Cidr::v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28),  // ORCHID (deprecated)
    Cidr::v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),  // ORCHIDv2
    Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),     // 6to4 (embeds any IPv4 address)
    Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),     // documentation (RFC 9637)
    Cidr::v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),     // SRv6 SIDs
    Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // unique local
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
    Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
    Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
];

/// The IPv4 address an IPv6 address stands for, if it embeds one that the network would
/// deliver to: IPv4-mapped (`::ffff:a.b.c.d`) and well-known NAT64 (`64:ff9b::a.b.c.d`).
pub fn normalise(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let o = v6.octets();
        return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    ip
}

/// The relay's peer filter. (The server's own relay addresses are allowed on top of this,
/// address and port exactly, by the TURN core, which knows its allocations.)
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Opened with `--turn-allow-peer`; wins over the denied ranges.
    pub allow: Vec<Cidr>,
}

impl PeerPolicy {
    pub fn permits(&self, peer: IpAddr) -> bool {
        let ip = normalise(peer);
        self.allow.iter().any(|c| c.contains(ip)) || !DENIED.iter().any(|c| c.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &PeerPolicy, ip: &str) -> bool {
        !policy.permits(ip.parse().unwrap())
    }

    #[test]
    fn non_public_ranges_are_refused_by_default() {
        let p = PeerPolicy::default();
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.9",
            "224.0.0.1",
            "239.1.1.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:0.0.0.0",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001:2::1",
            "100::1",
        ] {
            assert!(refused(&p, ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_relayed() {
        let p = PeerPolicy::default();
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2606:4700::1111",
        ] {
            assert!(!refused(&p, ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn allow_list_opens_ranges() {
        let p = PeerPolicy {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(!refused(&p, "127.0.0.1"));
        assert!(
            !refused(&p, "::ffff:127.0.0.1"),
            "the mapped form of an allowed address"
        );
        assert!(refused(&p, "10.0.0.6"));
        assert!(refused(&p, "::1"), "v6 loopback is not in a v4 range");
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
    }
}
