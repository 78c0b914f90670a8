//! The outbound address policy: which IP addresses Offside may connect to on a client's
//! behalf (webhook receivers, live feeds, and everything FFmpeg opens for a feed).
//!
//! The rule is about addresses, never names: a name is resolved, every address it resolves to
//! is judged, and the connection goes to an address that passed (DNS rebinding cannot swap in
//! another one between the check and the connect). An address is refused when it is not a
//! public unicast address: loopback, private, link-local, unique-local, carrier-grade NAT,
//! multicast, broadcast, unspecified, documentation, benchmarking, reserved, or any IPv6 form
//! that embeds an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, 6to4, NAT64,
//! Teredo).
//!
//! The embedded forms are refused outright rather than judged by the IPv4 address inside:
//! whether `2002:7f00:1::` or `64:ff9b::a00:1` ends up at 127.0.0.1 or 10.0.0.1 depends on
//! relays and gateways this process cannot see, and a public receiver or feed has a native
//! address of its own. A deployment behind NAT64 that needs `64:ff9b::/96` lists it in
//! [`OutboundPolicy::with_allowed`] (`--allow-private-networks`).
//!
//! Two escape hatches, both for the operator: `--allow-private-urls` allows every address
//! (tests, a fully private deployment), and `--allow-private-networks` allows the listed
//! networks only (a feed on one private network; tests that serve on loopback but must still
//! see every other private range refused).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An IP network in CIDR notation (`10.20.0.0/16`, `::1/128`); a bare address is a /32 or
/// /128. Addresses match only networks of their own family: `::ffff:127.0.0.1` is not in
/// `127.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `address` with `prefix` bits; host bits are cleared.
    ///
    /// # Errors
    /// When `prefix` exceeds the family's width (32 or 128).
    pub fn new(address: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let width = if address.is_ipv4() { 32 } else { 128 };
        if prefix > width {
            return Err(CidrError(format!("prefix /{prefix} is longer than {width} bits")));
        }
        let network = match address {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(prefix))),
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is in this network (same family only).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// Why a CIDR did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network: {0} (expected an address or ADDRESS/PREFIX, e.g. 10.20.0.0/16)")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (address, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let address: IpAddr = address.parse().map_err(|_| CidrError(s.to_owned()))?;
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| CidrError(s.to_owned()))?,
            None if address.is_ipv4() => 32,
            None => 128,
        };
        Self::new(address, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The IPv6 forms that carry an IPv4 address inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d` (a dual-stack socket connects to the IPv4 address itself).
    Ipv4Mapped,
    /// `::a.b.c.d` (deprecated by RFC 4291).
    Ipv4Compatible,
    /// `::ffff:0:a.b.c.d` (SIIT, RFC 2765).
    Ipv4Translated,
    /// `2002:V4V4:V4V4::/48` (6to4, RFC 3056; deprecated by RFC 7526).
    SixToFour,
    /// `64:ff9b::/96` and `64:ff9b:1::/48` (NAT64, RFC 6052 and 8215).
    Nat64,
    /// `2001::/32` (Teredo, RFC 4380: server and client IPv4 addresses inside).
    Teredo,
}

impl fmt::Display for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Embedding::Ipv4Mapped => "IPv4-mapped",
            Embedding::Ipv4Compatible => "IPv4-compatible",
            Embedding::Ipv4Translated => "IPv4-translated",
            Embedding::SixToFour => "6to4",
            Embedding::Nat64 => "NAT64",
            Embedding::Teredo => "Teredo",
        })
    }
}

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonPublic {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`, and the deprecated site-local `fec0::/10`.
    UniqueLocal,
    /// `100.64/10`.
    CarrierGradeNat,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18/15`, `2001:2::/48`.
    Benchmarking,
    /// Reserved or special-purpose: `192.0.0/24`, `192.88.99/24`, `240/4`, ORCHID, discard
    /// `100::/64`, and any IPv6 address outside global unicast `2000::/3`.
    Reserved,
    /// An IPv6 form with an IPv4 address inside.
    EmbeddedIpv4(Embedding),
}

impl fmt::Display for NonPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NonPublic::Loopback => f.write_str("loopback"),
            NonPublic::Private => f.write_str("private"),
            NonPublic::LinkLocal => f.write_str("link-local"),
            NonPublic::UniqueLocal => f.write_str("unique-local"),
            NonPublic::CarrierGradeNat => f.write_str("carrier-grade NAT"),
            NonPublic::Multicast => f.write_str("multicast"),
            NonPublic::Broadcast => f.write_str("broadcast"),
            NonPublic::Unspecified => f.write_str("unspecified"),
            NonPublic::Documentation => f.write_str("documentation"),
            NonPublic::Benchmarking => f.write_str("benchmarking"),
            NonPublic::Reserved => f.write_str("reserved"),
            NonPublic::EmbeddedIpv4(form) => write!(f, "{form} IPv6, embeds an IPv4 address"),
        }
    }
}

/// What kind of non-public address `ip` is; `None` for a public unicast address.
pub fn classify(ip: IpAddr) -> Option<NonPublic> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<NonPublic> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => NonPublic::Unspecified,
        (10, ..) => NonPublic::Private,
        (100, 64..=127, _) => NonPublic::CarrierGradeNat,
        (127, ..) => NonPublic::Loopback,
        (169, 254, _) => NonPublic::LinkLocal,
        (172, 16..=31, _) => NonPublic::Private,
        (192, 0, 0) | (192, 88, 99) => NonPublic::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => NonPublic::Documentation,
        (192, 168, _) => NonPublic::Private,
        (198, 18..=19, _) => NonPublic::Benchmarking,
        (224..=239, ..) => NonPublic::Multicast,
        _ if ip.is_broadcast() => NonPublic::Broadcast,
        (240..=255, ..) => NonPublic::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<NonPublic> {
    let s = ip.segments();
    let bits = u128::from(ip);
    let in_net = |net: u128, prefix: u8| bits & mask128(prefix) == net;
    Some(if ip.is_unspecified() {
        NonPublic::Unspecified
    } else if ip.is_loopback() {
        NonPublic::Loopback
    } else if in_net(0xffff_0000_0000, 96) {
        NonPublic::EmbeddedIpv4(Embedding::Ipv4Mapped)
    } else if in_net(0, 96) {
        NonPublic::EmbeddedIpv4(Embedding::Ipv4Compatible)
    } else if in_net(0xffff_0000_0000_0000, 96) {
        NonPublic::EmbeddedIpv4(Embedding::Ipv4Translated)
    } else if (s[0], s[1]) == (0x64, 0xff9b) && (s[2..6] == [0; 4] || s[2] == 1) {
        NonPublic::EmbeddedIpv4(Embedding::Nat64)
    } else if s[0] == 0x2002 {
        NonPublic::EmbeddedIpv4(Embedding::SixToFour)
    } else if (s[0], s[1]) == (0x2001, 0) {
        NonPublic::EmbeddedIpv4(Embedding::Teredo)
    } else if (s[0], s[1], s[2]) == (0x2001, 2, 0) {
        NonPublic::Benchmarking
    } else if (s[0], s[1]) == (0x2001, 0xdb8) || (s[0] == 0x3fff && s[1] & 0xf000 == 0) {
        NonPublic::Documentation
    } else if s[0] & 0xff00 == 0xff00 {
        NonPublic::Multicast
    } else if s[0] & 0xffc0 == 0xfe80 {
        NonPublic::LinkLocal
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        NonPublic::UniqueLocal
    } else if s[0] == 0x2001 && (s[1] & 0xffe0) == 0x0000 {
        // 2001::/27 is IETF protocol assignments (ORCHID 2001:10::/28, ORCHIDv2 2001:20::/28,
        // AMT, AS112...); Teredo and benchmarking were named above.
        NonPublic::Reserved
    } else if s[0] & 0xe000 != 0x2000 {
        // Outside global unicast 2000::/3: discard-only 100::/64 and everything unassigned.
        NonPublic::Reserved
    } else {
        return None;
    })
}

/// Which addresses outbound connections may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow_all: bool,
    allowed: Vec<Cidr>,
}

impl OutboundPolicy {
    /// Public addresses only (the default).
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Every address, loopback and private included (`--allow-private-urls`).
    pub fn allow_all() -> Self {
        Self { allow_all: true, allowed: Vec::new() }
    }

    /// Public addresses and the addresses in `networks` (`--allow-private-networks`).
    pub fn with_allowed(networks: impl IntoIterator<Item = Cidr>) -> Self {
        Self { allow_all: false, allowed: networks.into_iter().collect() }
    }

    /// Whether every address is allowed (then local files may be live feeds too).
    pub fn allows_all(&self) -> bool {
        self.allow_all
    }

    /// Checks one address.
    ///
    /// # Errors
    /// [`Refused`] with the kind of address, when it is neither public nor allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allow_all || self.allowed.iter().any(|net| net.contains(ip)) {
            return Ok(());
        }
        match classify(ip) {
            None => Ok(()),
            Some(kind) => Err(Refused { ip, kind }),
        }
    }

    /// Resolves `host` (a name or an address literal, without brackets) and keeps the
    /// addresses this policy allows, in resolver order; connect only to these.
    ///
    /// # Errors
    /// [`OutboundError::Unresolvable`] when the name does not resolve, and
    /// [`OutboundError::Refused`] (naming the first refused address) when no address is left.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        let resolved: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| OutboundError::Unresolvable {
                    host: host.to_owned(),
                    error: e.to_string(),
                })?
                .collect()
        };
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(resolved.len());
        for address in resolved {
            match self.check(address.ip()) {
                Ok(()) => allowed.push(address),
                Err(refused) => {
                    first_refusal.get_or_insert(refused);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (false, _) => Ok(allowed),
            (true, Some(refused)) => Err(OutboundError::Refused { host: host.to_owned(), refused }),
            (true, None) => Err(OutboundError::Unresolvable {
                host: host.to_owned(),
                error: "no addresses".to_owned(),
            }),
        }
    }
}

/// An address the policy refuses, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is not public ({kind})")]
pub struct Refused {
    /// The address.
    pub ip: IpAddr,
    /// What kind of non-public address it is.
    pub kind: NonPublic,
}

/// Why an outbound host cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The host is, or resolves only to, addresses the policy refuses.
    #[error("{}", describe_refusal(host, refused))]
    Refused {
        /// The host as given (name or address).
        host: String,
        /// The first refused address.
        refused: Refused,
    },
    /// The name does not resolve.
    #[error("cannot resolve {host}: {error}")]
    Unresolvable {
        /// The name.
        host: String,
        /// The resolver's answer.
        error: String,
    },
}

fn describe_refusal(host: &str, refused: &Refused) -> String {
    let hint =
        "operators allow such addresses with --allow-private-urls or --allow-private-networks";
    if host == refused.ip.to_string() {
        format!("{refused}; {hint}")
    } else {
        format!("{host} resolves to {refused}; {hint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_with_or_without_a_prefix_and_clear_host_bits() {
        let net: Cidr = "10.20.30.40/16".parse().unwrap();
        assert_eq!(net.to_string(), "10.20.0.0/16");
        assert!(net.contains("10.20.255.1".parse().unwrap()));
        assert!(!net.contains("10.21.0.1".parse().unwrap()));
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn an_allowed_network_does_not_extend_to_another_family() {
        let policy = OutboundPolicy::with_allowed(["127.0.0.0/8".parse().unwrap()]);
        assert!(policy.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check("::ffff:127.0.0.1".parse().unwrap()).is_err());
        assert!(policy.check("::127.0.0.1".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn resolution_keeps_only_allowed_addresses_and_names_a_refused_one() {
        let strict = OutboundPolicy::public_only();
        let err = strict.resolve("localhost", 80).await.unwrap_err();
        assert!(
            matches!(&err, OutboundError::Refused { refused, .. } if refused.kind == NonPublic::Loopback),
            "{err}"
        );
        let loopback = OutboundPolicy::with_allowed(["127.0.0.0/8".parse().unwrap()]);
        let addrs = loopback.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 80))]);
    }
}
