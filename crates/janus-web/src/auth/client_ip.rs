//! The client's address for login limits: the TCP peer, or — only when the peer is a trusted proxy
//! (`web.trustedProxies`) — the nearest untrusted hop named in `X-Forwarded-For`.

use std::fmt;
use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::state::AppState;

/// Most `X-Forwarded-For` hops looked at, from the right; entries further left are never read.
const MAX_HOPS: usize = 32;

/// Most bytes of an entry that is no address kept in its key (longer ones are cut).
const MAX_UNPARSED: usize = 64;

/// Who a login comes from, as far as this server can tell.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// An address: the peer, or a hop a trusted proxy named.
    Ip(IpAddr),
    /// The hop a trusted proxy named is no address (`unknown`, an obfuscated name, garbage): the entry
    /// itself, escaped to printable ASCII and cut to [`MAX_UNPARSED`] bytes of the original.
    Unparsed(String),
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Unparsed(s) => write!(f, "xff:{s}"),
        }
    }
}

/// The client address of a request that arrived from `peer`.
///
/// A client can write anything into `X-Forwarded-For`, and every proxy appends the address it received
/// the request from, so only the right end of the list is vouched for. The list (all header lines, in
/// order) is read as bytes and walked right to left while the hop (first the peer itself) is trusted;
/// the first untrusted hop is the client. Nothing left of it is read, so no prefix a client writes —
/// however long, and whatever bytes — changes the answer. Empty list elements are skipped (RFC 9110
/// §5.6.1); at most [`MAX_HOPS`] hops are walked.
///
/// - An untrusted peer is the client, whatever its header says.
/// - A trusted peer that names no hop is the client itself (a probe, the proxy's own request).
/// - When the walk reaches an entry that is no address, that entry is the client ([`Client::Unparsed`]):
///   a trusted proxy wrote it there, so it stands for whoever sent the request, and only they share its
///   bucket. The answer is never the trusted peer when the header names a hop, so nothing sent through a
///   shared proxy lands in the proxy's bucket.
/// - When every hop walked is trusted, the farthest one is the client.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> Client {
    let peer = canonical(peer);
    if !trusted(peer) {
        return Client::Ip(peer);
    }
    let values: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let entries = values
        .iter()
        .rev()
        .flat_map(|v| v.rsplit(|b| *b == b','))
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty());
    let mut client = Client::Ip(peer);
    for entry in entries.take(MAX_HOPS) {
        let Some(ip) = parse_hop(entry) else {
            return Client::Unparsed(unparsed(entry));
        };
        client = Client::Ip(ip);
        if !trusted(ip) {
            break;
        }
    }
    client
}

/// The client address of a request to this server: [`client_ip`] with the configured trusted proxies.
pub fn of_request(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> Client {
    client_ip(peer, headers, |ip| state.trusted_proxies.iter().any(|c| c.contains(ip)))
}

/// One entry: an address, optionally with a port (`1.2.3.4:5678`, `[::1]:5678`), as some proxies write.
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|s| canonical(s.ip()))
}

/// An entry that is no address, as it is keyed and logged: at most [`MAX_UNPARSED`] bytes, escaped.
fn unparsed(entry: &[u8]) -> String {
    entry[..entry.len().min(MAX_UNPARSED)].escape_ascii().to_string()
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The key login limits count under (see [`limit_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// An IPv4 address, or an IPv6 /64.
    Net(ipnet::IpNet),
    /// An `X-Forwarded-For` entry that is no address ([`Client::Unparsed`]).
    Unparsed(String),
}

impl From<ipnet::IpNet> for LimitKey {
    fn from(n: ipnet::IpNet) -> Self {
        Self::Net(n)
    }
}

impl fmt::Display for LimitKey {
    /// As stored with the per-account counters: `192.0.2.1/32`, `2001:db8::/64`, or `xff:<entry>`
    /// (which no network's text starts with).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Net(n) => write!(f, "{n}"),
            Self::Unparsed(s) => write!(f, "xff:{s}"),
        }
    }
}

/// The key login limits count under: an IPv4 address, or the /64 network of an IPv6 address (one
/// subscriber usually holds a whole /64, so single IPv6 addresses would cost an attacker nothing), or
/// an unparsed entry as it is.
pub fn limit_key(client: &Client) -> LimitKey {
    match client {
        Client::Ip(ip) => LimitKey::Net(match canonical(*ip) {
            IpAddr::V4(v4) => ipnet::IpNet::V4(ipnet::Ipv4Net::from(v4)),
            IpAddr::V6(v6) => ipnet::IpNet::V6(ipnet::Ipv6Net::new_assert(v6, 64).trunc()),
        }),
        Client::Unparsed(s) => LimitKey::Unparsed(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addr(s: &str) -> Client {
        Client::Ip(ip(s))
    }

    fn xff(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", axum::http::HeaderValue::from_bytes(v).unwrap());
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
            client_ip(ip("203.0.113.9"), &xff(&[b"198.51.100.1"]), trusted),
            addr("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &xff(&[b"garbage"]), trusted),
            addr("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &HeaderMap::new(), trusted),
            addr("203.0.113.9")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let peer = ip("10.0.0.1");
        assert_eq!(client_ip(peer, &xff(&[b"198.51.100.7"]), trusted), addr("198.51.100.7"));
        // A client-written prefix is ignored: the ingress appended the real address last.
        assert_eq!(
            client_ip(peer, &xff(&[b"1.1.1.1, 198.51.100.7"]), trusted),
            addr("198.51.100.7")
        );
        // Trusted hops are skipped, across repeated headers too.
        assert_eq!(
            client_ip(peer, &xff(&[b"1.1.1.1, 198.51.100.7", b"10.0.0.2"]), trusted),
            addr("198.51.100.7")
        );
        assert_eq!(
            client_ip(peer, &xff(&[b"198.51.100.7:4431"]), trusted),
            addr("198.51.100.7")
        );
        assert_eq!(
            client_ip(peer, &xff(&[b"[2001:db8::1]:443"]), trusted),
            addr("2001:db8::1")
        );
        assert_eq!(
            client_ip(peer, &xff(&[b"::ffff:198.51.100.7"]), trusted),
            addr("198.51.100.7")
        );
        // Empty list elements are no hops.
        assert_eq!(
            client_ip(peer, &xff(&[b"198.51.100.7,, ,", b""]), trusted),
            addr("198.51.100.7")
        );
    }

    #[test]
    fn nothing_left_of_the_client_is_read() {
        let peer = ip("10.0.0.1");
        let padded = format!("{},198.51.100.7", vec!["1"; 40].join(","));
        assert_eq!(
            client_ip(peer, &xff(&[padded.as_bytes()]), trusted),
            addr("198.51.100.7")
        );
        let long = vec!["203.0.113.1"; MAX_HOPS + 10].join(", ") + ", 198.51.100.7";
        assert_eq!(client_ip(peer, &xff(&[long.as_bytes()]), trusted), addr("198.51.100.7"));
        for prefix in [&b"\xc3\xbc\xff"[..], &b"\x80\t\x9f"[..], &b"\xff, 1.2.3.4"[..]] {
            let v = [prefix, b", 198.51.100.7"].concat();
            assert_eq!(client_ip(peer, &xff(&[&v]), trusted), addr("198.51.100.7"), "{v:?}");
            assert_eq!(
                client_ip(peer, &xff(&[prefix, b"198.51.100.7"]), trusted),
                addr("198.51.100.7"),
                "{prefix:?} in a header line of its own"
            );
        }
        // Behind two trusted hops, too.
        let v = format!("{},198.51.100.7, 10.0.0.2", vec!["x"; 40].join(","));
        assert_eq!(client_ip(peer, &xff(&[v.as_bytes()]), trusted), addr("198.51.100.7"));
    }

    #[test]
    fn an_unparseable_hop_is_its_own_client_never_the_peer() {
        let peer = ip("10.0.0.1");
        for (bad, key) in [
            (&b"unknown"[..], "unknown"),
            (&b"198.51.100.7, nonsense"[..], "nonsense"),
            (&b"1.2.3.4 5.6.7.8"[..], "1.2.3.4 5.6.7.8"),
            (&b"198.51.100.7, \xff\"\tx , 10.0.0.2"[..], "\\xff\\\"\\tx"),
        ] {
            let got = client_ip(peer, &xff(&[bad]), trusted);
            assert_eq!(got, Client::Unparsed(key.into()), "{bad:?}");
            assert_eq!(limit_key(&got).to_string(), format!("xff:{key}"));
            assert_ne!(limit_key(&got), limit_key(&Client::Ip(peer)));
        }
        let long = vec![b'a'; 1000];
        assert_eq!(
            client_ip(peer, &xff(&[&long]), trusted),
            Client::Unparsed("a".repeat(MAX_UNPARSED))
        );
    }

    #[test]
    fn a_trusted_peer_without_hops_is_the_client_and_all_trusted_gives_the_farthest() {
        let peer = ip("10.0.0.1");
        assert_eq!(client_ip(peer, &HeaderMap::new(), trusted), addr("10.0.0.1"));
        assert_eq!(client_ip(peer, &xff(&[b""]), trusted), addr("10.0.0.1"));
        assert_eq!(client_ip(peer, &xff(&[b"10.0.0.2"]), trusted), addr("10.0.0.2"));
        let all = vec!["10.0.0.2"; MAX_HOPS + 5].join(",");
        assert_eq!(client_ip(peer, &xff(&[all.as_bytes()]), trusted), addr("10.0.0.2"));
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let key = |s: &str| limit_key(&addr(s));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1").to_string(), "192.0.2.1/32");
    }
}
