//! Identity from an authenticating proxy (oauth2-proxy): headers honoured only from trusted addresses.

use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::auth::{AuthSource, Identity, session};
use crate::state::AppState;

/// An address range such as `127.0.0.1/32` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` (a bare address means a single host).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
            None => max,
        };
        Ok(Self { net, prefix })
    }

    /// Whether `ip` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                (u32::from(n) & mask) == (u32::from(a) & mask)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                (u128::from(n) & mask) == (u128::from(a) & mask)
            }
            _ => false,
        }
    }
}

fn header(h: &HeaderMap, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| h.get(*n).and_then(|v| v.to_str().ok()))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The identity asserted by a trusted proxy; `None` when the peer is not trusted or sent no email.
pub fn identity(state: &AppState, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<Identity> {
    let peer = peer?;
    if !state.trusted_proxies.iter().any(|c| c.contains(peer)) {
        return None;
    }
    let email = header(headers, &["x-auth-request-email", "x-forwarded-email"])?.to_ascii_lowercase();
    if email.len() > 254 || !email.contains('@') || email.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let groups: Vec<String> = header(headers, &["x-auth-request-groups", "x-forwarded-groups"])
        .map(|g| {
            g.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let name = header(
        headers,
        &["x-auth-request-preferred-username", "x-forwarded-preferred-username"],
    )
    .unwrap_or_else(|| email.clone());
    Some(Identity {
        is_admin: state.admin_by_config(&email, &groups),
        csrf: session::sign(&state.session_key, &format!("csrf:{email}")),
        email,
        name,
        groups,
        auth: AuthSource::Proxy,
        session: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let h = Cidr::parse("127.0.0.1").unwrap();
        assert!(h.contains("127.0.0.1".parse().unwrap()) && !h.contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("::1/128").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["x", "10.0.0.0/33", "10.0.0.0/-1", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
