//! The client's address for login limits: the TCP peer, or — only when the peer is a trusted proxy
//! (`web.trustedProxies`) — the nearest untrusted hop named in `X-Forwarded-For`.

use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::state::AppState;

/// Most `X-Forwarded-For` entries looked at; a longer chain is treated as malformed.
const MAX_HOPS: usize = 32;

/// The client address of a request that arrived from `peer`.
///
/// A client can write anything into `X-Forwarded-For`, and every proxy appends the address it received
/// the request from, so only the right end of the list is vouched for. The list is walked right to left
/// while the hop (first the peer itself) is trusted; the first untrusted address is the client. An
/// untrusted peer's header is ignored, and a malformed or overlong list, or one whose every entry is
/// trusted, gives the peer: nothing a client sends can move it into another client's bucket except by
/// being that client.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(peer) {
        return peer;
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(v) = value.to_str() else {
            return peer;
        };
        for entry in v.split(',') {
            if hops.len() == MAX_HOPS {
                return peer;
            }
            hops.push(entry.trim());
        }
    }
    for entry in hops.iter().rev() {
        let Some(ip) = parse_hop(entry) else {
            return peer;
        };
        if !trusted(ip) {
            return ip;
        }
    }
    peer
}

/// The client address of a request to this server: [`client_ip`] with the configured trusted proxies.
pub fn of_request(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    client_ip(peer, headers, |ip| state.trusted_proxies.iter().any(|c| c.contains(ip)))
}

/// One entry: an address, optionally with a port (`1.2.3.4:5678`, `[::1]:5678`), as some proxies write.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|s| canonical(s.ip()))
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The key login limits count under: an IPv4 address, or the /64 network of an IPv6 address (one
/// subscriber usually holds a whole /64, so single IPv6 addresses would cost an attacker nothing).
pub fn limit_key(ip: IpAddr) -> ipnet::IpNet {
    match canonical(ip) {
        IpAddr::V4(v4) => ipnet::IpNet::V4(ipnet::Ipv4Net::from(v4)),
        IpAddr::V6(v6) => ipnet::IpNet::V6(ipnet::Ipv6Net::new_assert(v6, 64).trunc()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    /// The ingress at 10.0.0.1 and a mesh hop at 10.0.0.2 are trusted.
    fn trusted(a: IpAddr) -> bool {
        matches!(a.to_string().as_str(), "10.0.0.1" | "10.0.0.2")
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_send() {
        assert_eq!(
            client_ip(ip("203.0.113.9"), &xff(&["198.51.100.1"]), trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &HeaderMap::new(), trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let peer = ip("10.0.0.1");
        assert_eq!(client_ip(peer, &xff(&["198.51.100.7"]), trusted), ip("198.51.100.7"));
        // A client-written prefix is ignored: the ingress appended the real address last.
        assert_eq!(
            client_ip(peer, &xff(&["1.1.1.1, 198.51.100.7"]), trusted),
            ip("198.51.100.7")
        );
        // Trusted hops are skipped, across repeated headers too.
        assert_eq!(
            client_ip(peer, &xff(&["1.1.1.1, 198.51.100.7", "10.0.0.2"]), trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(peer, &xff(&["198.51.100.7:4431"]), trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(peer, &xff(&["[2001:db8::1]:443"]), trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(peer, &xff(&["::ffff:198.51.100.7"]), trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn malformed_or_missing_lists_give_the_peer() {
        let peer = ip("10.0.0.1");
        for bad in [
            "unknown",
            "198.51.100.7, nonsense",
            "",
            "198.51.100.7,,",
            "1.2.3.4 5.6.7.8",
        ] {
            assert_eq!(client_ip(peer, &xff(&[bad]), trusted), peer, "{bad:?}");
        }
        assert_eq!(client_ip(peer, &HeaderMap::new(), trusted), peer);
        assert_eq!(client_ip(peer, &xff(&["10.0.0.2"]), trusted), peer, "all hops trusted");
        let long = vec!["198.51.100.7"; MAX_HOPS + 1].join(",");
        assert_eq!(client_ip(peer, &xff(&[&long]), trusted), peer);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(limit_key(ip("2001:db8:1:2::1")), limit_key(ip("2001:db8:1:3::1")));
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")).to_string(), "192.0.2.1/32");
    }
}
