//! The client's address behind load balancers: `TELEPATH_TRUSTED_PROXIES`
//! names the proxies (addresses or CIDR blocks) whose `X-Forwarded-For`
//! is believed. A request from a trusted proxy is from the rightmost
//! address in its `X-Forwarded-For` that is not itself a trusted proxy
//! (each proxy appends the address it got the request from, so entries to
//! the left of the first untrusted one may be made up by the client). A
//! request from anyone else is from its TCP peer, whatever it claims.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Most `X-Forwarded-For` hops read, from the right end (the end the
/// trusted proxies wrote): a longer chain is not read further.
const MAX_HOPS: usize = 32;

/// The proxies whose forwarded-for is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// A comma list of addresses and CIDR blocks (`10.0.0.0/8, ::1`);
    /// empty: none.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an address or CIDR block"))?;
            nets.push(net);
        }
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is one of the proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // The last header line is the nearest proxy's; within a line, the
        // rightmost entry is.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|value| value.to_str().unwrap_or("").rsplit(',').map(str::trim))
            .take(MAX_HOPS);
        let mut client = peer;
        for hop in hops {
            // Anything unreadable ends the trusted part of the chain.
            let Some(ip) = parse_hop(hop) else { break };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// IPv4-mapped IPv6 addresses as IPv4 (a dual-stack socket's peers).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_blocks() {
        let t = TrustedProxies::parse(" 10.0.0.0/8, ::1 ,127.0.0.1").unwrap();
        assert!(t.trusts(ip("10.2.3.4")));
        assert!(t.trusts(ip("::1")));
        assert!(t.trusts(ip("::ffff:127.0.0.1")));
        assert!(!t.trusts(ip("11.0.0.1")));
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let none = TrustedProxies::default();
        let h = headers(&["203.0.113.9"]);
        assert_eq!(none.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(t.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        assert_eq!(t.client_ip(ip("10.0.0.2"), &h), ip("203.0.113.9"));
        // No header: the proxy itself.
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The client made up 1.1.1.1; 203.0.113.9 is who the first proxy saw.
        let h = headers(&["1.1.1.1, 203.0.113.9", "10.0.0.7"]);
        assert_eq!(t.client_ip(ip("10.0.0.2"), &h), ip("203.0.113.9"));
        let h = headers(&["[2001:db8::1]:4711, 10.0.0.7"]);
        assert_eq!(t.client_ip(ip("10.0.0.2"), &h), ip("2001:db8::1"));
        // Garbage ends the chain at the last good hop.
        let h = headers(&["203.0.113.9, nonsense, 10.0.0.7"]);
        assert_eq!(t.client_ip(ip("10.0.0.2"), &h), ip("10.0.0.7"));
    }

    #[test]
    fn a_huge_chain_is_read_from_its_right_end_only() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // A client's long made-up chain does not hide it.
        let long = vec!["1.1.1.1"; 1000].join(",");
        let h = headers(&[&long, "203.0.113.9"]);
        assert_eq!(t.client_ip(ip("10.0.0.2"), &h), ip("203.0.113.9"));
        // Past MAX_HOPS trusted hops the chain is not read on.
        let proxies = vec!["10.0.0.1"; 100].join(",");
        let h = headers(&[&format!("203.0.113.9,{proxies}")]);
        assert_eq!(t.client_ip(ip("10.0.0.2"), &h), ip("10.0.0.1"));
    }
}
