//! Guest IPv4 addresses and MAC addresses, pure and deterministic.
//!
//! The daemon persists each VM's address; on create it calls [`allocate_ip`]
//! with the addresses already taken, and gets the lowest free host address
//! of the CIDR that is neither the network, the broadcast nor the bridge's
//! own address. Lowest-free (not random, not round-robin) keeps addresses
//! small and predictable, and makes the function a pure function of its
//! inputs, so the daemon's store stays the only source of truth.
//!
//! The MAC is derived from the IP ([`mac_for_ip`]): `02:fc:a:b:c:d` for
//! `a.b.c.d`. `0x02` in the first octet sets the locally-administered bit and
//! clears the multicast bit, so it never collides with a vendor-assigned
//! address and is a valid unicast source; `0xfc` is a fixed tag that makes
//! banger's guests easy to spot in neighbour tables. Because addresses are
//! unique inside the CIDR, so are the MACs, and the guest's `/init` can find
//! its NIC by MAC without any extra state.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use banger_config::config::Ipv4Cidr;

/// The first two octets of every guest MAC.
pub const MAC_PREFIX: [u8; 2] = [0x02, 0xfc];

/// Why no address could be allocated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressingError {
    /// Every host address of the CIDR is taken.
    #[error("no free guest address left in {cidr} ({used} in use, bridge {bridge_ip})")]
    Exhausted {
        /// The CIDR that ran out.
        cidr: String,
        /// How many of its addresses the caller reported as used.
        used: usize,
        /// The bridge's address.
        bridge_ip: Ipv4Addr,
    },
    /// The bridge address is not a host address of the CIDR, so guests
    /// could not reach their gateway.
    #[error("bridge address {bridge_ip} is not a host address of {cidr}")]
    BridgeOutsideCidr {
        /// The CIDR.
        cidr: String,
        /// The bridge's address.
        bridge_ip: Ipv4Addr,
    },
}

/// Returns the lowest host address of `cidr` that is not the network or
/// broadcast address, not `bridge_ip` and not in `used`.
///
/// Addresses in `used` outside the CIDR are ignored.
pub fn allocate_ip<I>(
    cidr: &Ipv4Cidr,
    bridge_ip: Ipv4Addr,
    used: I,
) -> Result<Ipv4Addr, AddressingError>
where
    I: IntoIterator<Item = Ipv4Addr>,
{
    if !cidr.contains_host(bridge_ip) {
        return Err(AddressingError::BridgeOutsideCidr {
            cidr: cidr.to_string(),
            bridge_ip,
        });
    }
    let (first, last) = host_range(cidr);
    let taken: BTreeSet<u32> = used
        .into_iter()
        .chain(std::iter::once(bridge_ip))
        .map(u32::from)
        .filter(|address| (first..=last).contains(address))
        .collect();
    // Walk the sorted taken set: the first gap is the answer. This is
    // O(taken), not O(size of the CIDR), even for a /8.
    let mut candidate = first;
    for address in &taken {
        if *address != candidate {
            break;
        }
        candidate += 1;
    }
    if candidate <= last {
        Ok(Ipv4Addr::from(candidate))
    } else {
        Err(AddressingError::Exhausted {
            cidr: cidr.to_string(),
            used: taken.len() - 1,
            bridge_ip,
        })
    }
}

/// The first and last host address of `cidr` as integers.
fn host_range(cidr: &Ipv4Cidr) -> (u32, u32) {
    // banger-config only produces prefixes 8..=30, but stay total anyway.
    let prefix = u32::from(cidr.prefix.min(30));
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    let network = u32::from(cidr.network) & mask;
    (network + 1, (network | !mask) - 1)
}

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    /// Lowercase `aa:bb:cc:dd:ee:ff`, the form the guest config expects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The guest MAC for `ip`: `02:fc` followed by the four address octets.
pub fn mac_for_ip(ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = ip.octets();
    MacAddr([MAC_PREFIX[0], MAC_PREFIX[1], a, b, c, d])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(network: [u8; 4], prefix: u8) -> Ipv4Cidr {
        Ipv4Cidr {
            network: Ipv4Addr::from(network),
            prefix,
        }
    }

    #[test]
    fn lowest_free_skips_network_bridge_and_used() {
        let net = cidr([172, 30, 0, 0], 24);
        let bridge = Ipv4Addr::new(172, 30, 0, 1);
        assert_eq!(
            allocate_ip(&net, bridge, []),
            Ok(Ipv4Addr::new(172, 30, 0, 2))
        );
        let used = [Ipv4Addr::new(172, 30, 0, 2), Ipv4Addr::new(172, 30, 0, 4)];
        assert_eq!(
            allocate_ip(&net, bridge, used),
            Ok(Ipv4Addr::new(172, 30, 0, 3))
        );
        // A bridge in the middle is skipped like any used address.
        let bridge = Ipv4Addr::new(172, 30, 0, 2);
        assert_eq!(
            allocate_ip(&net, bridge, []),
            Ok(Ipv4Addr::new(172, 30, 0, 1))
        );
        let used = [Ipv4Addr::new(172, 30, 0, 1)];
        assert_eq!(
            allocate_ip(&net, bridge, used),
            Ok(Ipv4Addr::new(172, 30, 0, 3))
        );
    }

    #[test]
    fn deterministic_and_ignores_order_duplicates_and_outsiders() {
        let net = cidr([10, 0, 0, 0], 24);
        let bridge = Ipv4Addr::new(10, 0, 0, 1);
        let a = [2, 3, 3, 5].map(|d| Ipv4Addr::new(10, 0, 0, d));
        let mut b = a;
        b.reverse();
        let outsider = Ipv4Addr::new(192, 168, 0, 4);
        let first = allocate_ip(&net, bridge, a);
        assert_eq!(first, Ok(Ipv4Addr::new(10, 0, 0, 4)));
        assert_eq!(
            allocate_ip(&net, bridge, b.into_iter().chain([outsider])),
            first
        );
    }

    #[test]
    fn never_hands_out_broadcast_and_reports_exhaustion() {
        // A /30 has two hosts: .1 (bridge) and .2.
        let net = cidr([10, 9, 8, 0], 30);
        let bridge = Ipv4Addr::new(10, 9, 8, 1);
        assert_eq!(
            allocate_ip(&net, bridge, []),
            Ok(Ipv4Addr::new(10, 9, 8, 2))
        );
        let err = allocate_ip(&net, bridge, [Ipv4Addr::new(10, 9, 8, 2)]);
        assert_eq!(
            err,
            Err(AddressingError::Exhausted {
                cidr: "10.9.8.0/30".into(),
                used: 1,
                bridge_ip: bridge
            })
        );
        // A full /24: 253 guests + the bridge.
        let net = cidr([10, 1, 1, 0], 24);
        let bridge = Ipv4Addr::new(10, 1, 1, 1);
        let used: Vec<_> = (2..=254).map(|d| Ipv4Addr::new(10, 1, 1, d)).collect();
        assert!(matches!(
            allocate_ip(&net, bridge, used),
            Err(AddressingError::Exhausted { used: 253, .. })
        ));
    }

    #[test]
    fn bridge_must_be_a_host_of_the_cidr() {
        let net = cidr([10, 0, 0, 0], 24);
        for bridge in [[10, 0, 0, 0], [10, 0, 0, 255], [10, 0, 1, 1]] {
            assert!(matches!(
                allocate_ip(&net, Ipv4Addr::from(bridge), []),
                Err(AddressingError::BridgeOutsideCidr { .. })
            ));
        }
    }

    #[test]
    fn large_cidr_is_fast() {
        let net = cidr([10, 0, 0, 0], 8);
        let bridge = Ipv4Addr::new(10, 0, 0, 1);
        let used: Vec<_> = (2..=1000u32)
            .map(|n| Ipv4Addr::from(u32::from(net.network) + n))
            .collect();
        assert_eq!(
            allocate_ip(&net, bridge, used),
            Ok(Ipv4Addr::new(10, 0, 3, 233))
        );
    }

    #[test]
    fn mac_is_local_unicast_and_embeds_the_ip() {
        let mac = mac_for_ip(Ipv4Addr::new(172, 30, 0, 2));
        assert_eq!(mac.to_string(), "02:fc:ac:1e:00:02");
        let first = mac.octets()[0];
        assert_eq!(first & 0x02, 0x02, "locally administered");
        assert_eq!(first & 0x01, 0x00, "unicast");
        assert_ne!(mac_for_ip(Ipv4Addr::new(172, 30, 0, 3)), mac);
    }
}
