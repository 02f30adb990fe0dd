//! Which network addresses the worker may connect to on a customer's behalf.
//!
//! Webhook URLs and token endpoints are customer-controlled, so by default every address that is
//! not publicly routable is refused: loopback, private, link-local (169.254.169.254, the cloud
//! metadata service), shared (CGNAT), unique-local, multicast, broadcast, documentation and
//! unspecified addresses. The check runs on the address that is actually connected to (see
//! `net::resolver`), so DNS rebinding cannot get round it.
//!
//! IPv6 addresses that carry an IPv4 address are judged by it:
//! - IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) addresses *are* that IPv4
//!   address to the socket layer, so they are judged exactly as it, `allow_networks` included;
//! - 6to4 (`2002::/16`), Teredo (`2001::/32`: its server and its client, whose address is stored
//!   inverted), NAT64 (`64:ff9b::/96`) and IPv4-translated (`::ffff:0:a.b.c.d`) addresses reach
//!   the IPv4 address through a relay or translator, so the IPv4 address must be public by the
//!   IPv4 rules alone: `allow_networks = ["127.0.0.0/8"]` opens loopback, not a 6to4 relay that
//!   forwards to someone's loopback. Such an address is permitted otherwise only when
//!   `allow_networks` names it as IPv6.
//!
//! Any other IPv6 address must be global unicast (`2000::/3`) outside its special ranges:
//! IETF protocol assignments `2001::/23` (benchmarking, ORCHID, ...), documentation
//! (`2001:db8::/32`, `3fff::/20`). The local-use NAT64 prefix `64:ff9b:1::/48` is refused whole:
//! where its IPv4 address sits depends on the operator's prefix length, so it cannot be judged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow_networks: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(allow_networks: Vec<IpNet>) -> Self {
        Self { allow_networks }
    }

    /// Whether the worker may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow_networks.iter().any(|net| net.contains(&ip)) || is_public(ip)
    }
}

/// An IPv4-mapped or IPv4-compatible IPv6 address (`::ffff:a.b.c.d`, `::a.b.c.d`) becomes that
/// IPv4 address: the socket layer connects to it as such.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => match v6.segments() {
                [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => {
                    IpAddr::V4(v4_from(hi, lo))
                }
                _ => IpAddr::V6(v6),
            },
        },
        v4 => v4,
    }
}

fn v4_from(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// The IPv4 addresses an IPv6 address leads to through a relay or translator, if it is one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Vec<Ipv4Addr>> {
    let s = ip.segments();
    match s {
        // 6to4: 2002:AABB:CCDD::/48 routes to the relay at AA.BB.CC.DD.
        [0x2002, hi, lo, ..] => Some(vec![v4_from(hi, lo)]),
        // Teredo: 2001:0:SERVER:flags:port:CLIENT, the client's address and port inverted.
        [0x2001, 0, server_hi, server_lo, _, _, client_hi, client_lo] => Some(vec![
            v4_from(server_hi, server_lo),
            v4_from(!client_hi, !client_lo),
        ]),
        // NAT64 well-known prefix (RFC 6052), and IPv4-translated (SIIT, RFC 2765).
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => {
            Some(vec![v4_from(hi, lo)])
        }
        _ => None,
    }
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(targets) = embedded_v4(ip) {
        return targets.into_iter().all(is_public_v4);
    }
    let s = ip.segments();
    let special = match s {
        // IETF protocol assignments 2001::/23 (benchmarking, ORCHID, ...); documentation.
        [0x2001, b, ..] => b < 0x0200 || b == 0x0db8,
        [0x3fff, b, ..] => b < 0x1000, // documentation 3fff::/20
        _ => false,
    };
    let global_unicast = (s[0] & 0xe000) == 0x2000; // 2000::/3
    global_unicast && !special
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        !AddressPolicy::default().permits(text.parse().unwrap())
    }

    #[test]
    fn non_public_addresses_are_refused_in_every_spelling() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "64:ff9b::a00:1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    /// 127.0.0.1 and 169.254.169.254 as 6to4, Teredo (server or client), NAT64 and translated.
    const EMBEDDED_NON_PUBLIC: [&str; 10] = [
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "2001:0:7f00:1:0:0:808:808", // Teredo server 127.0.0.1 (client 247.247.247.247)
        "2001:0:808:808:0:0:80ff:fffe", // Teredo client 127.0.0.1 (server 8.8.8.8)
        "2001:0:808:808:0:0:5601:5601", // Teredo client 169.254.169.254
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "::ffff:0:7f00:1",
        "::ffff:0:a9fe:a9fe",
        "64:ff9b:1::808:808", // local-use NAT64: refused whatever it carries
    ];

    #[test]
    fn addresses_that_lead_to_a_non_public_ipv4_address_are_refused() {
        for ip in EMBEDDED_NON_PUBLIC {
            assert!(refused(ip), "{ip} should be refused");
        }
        // allow_networks opens the IPv4 range, not the relays and translators that lead to it.
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        for ip in EMBEDDED_NON_PUBLIC {
            assert!(
                !policy.permits(ip.parse().unwrap()),
                "{ip} should be refused"
            );
        }
    }

    #[test]
    fn only_global_unicast_ipv6_outside_its_special_ranges_is_permitted() {
        for ip in [
            "2001:db8::1",  // documentation
            "3fff::1",      // documentation
            "3fff:fff::1",  // documentation
            "2001:2::1",    // benchmarking
            "2001:10::1",   // ORCHID
            "2001:20::1",   // ORCHIDv2
            "2001:1::1",    // IETF protocol assignments
            "100::1",       // discard-only
            "4000::1",      // outside 2000::/3
            "5f00::1",      // segment routing
            "::2:1",        // IPv4-compatible 0.2.0.1
            "64:ff9b:2::1", // beside the NAT64 prefixes
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
        for ip in [
            "2a00:1450:4001:80b::200e",
            "3ffe::1",
            "2002:808:808::1",              // 6to4 via 8.8.8.8
            "2001:0:808:808:0:0:f7f7:f7f7", // Teredo 8.8.8.8, client 8.8.8.8
            "64:ff9b::808:808",
            "::ffff:0:808:808",
        ] {
            assert!(!refused(ip), "{ip} should be permitted");
        }
    }

    #[test]
    fn public_addresses_are_permitted() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!refused(ip), "{ip} should be permitted");
        }
    }

    #[test]
    fn allow_networks_opens_a_chosen_range_only() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(policy.permits("127.0.0.1".parse().unwrap()));
        assert!(policy.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!policy.permits("169.254.169.254".parse().unwrap()));
        assert!(!policy.permits("::1".parse().unwrap()));
    }
}
