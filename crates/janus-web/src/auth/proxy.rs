//! Identity from an authenticating proxy (proxy mode): only the headers named in `web.proxyHeaders`
//! count, only from peers inside `web.trustedProxies`, and a request that carries a second, conflicting
//! identity is refused (docs/security.md, "Proxy-header contract").
//!
//! A proxy such as oauth2-proxy strips the client's copies of exactly the headers it injects and passes
//! every other header through. So any identity header outside that set may come from the client; it
//! is never read, and one that names somebody else is treated as an attack rather than ignored.
//!
//! Refusals are audited at most once per client address and asserted identity per
//! `web.identityConflictAuditIntervalSeconds`, with the count of the others, so that nobody can flood
//! the audit log.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use ipnet::IpNet;
use janus_api::config::ProxyHeaders;
use janus_store::AuditKind;
use serde_json::json;

use crate::auth::{AuthSource, Identity, session};
use crate::state::AppState;

/// An address range such as `127.0.0.1/32` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Parses `ADDR/PREFIX` (a bare address means a single host).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(net) = t.parse::<IpNet>() {
            return Ok(Self(net));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Self(IpNet::from(ip)));
        }
        if t.contains('/') && t.split('/').next().is_some_and(|a| a.parse::<IpAddr>().is_ok()) {
            return Err(format!("{s:?} has an invalid prefix length"));
        }
        Err(format!("{s:?} is not an IP address or CIDR range"))
    }

    /// Whether `ip` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

/// What a well-known identity header carries, which decides how it is compared with the identity the
/// configured headers assert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    /// A user name, subject or display name: it must name the same person.
    User,
    Groups,
}

/// Identity headers that authenticating proxies inject themselves, under names specific to them.
/// Whichever of them is not configured is foreign: it can only have come from the client (or a
/// misconfigured hop), so it must not name anyone else. Generic names (`X-User`, `X-Email`,
/// `X-Authenticated-User`, …) are left out on purpose: forward proxies and other middleboxes inject
/// them on some networks, and every request would be refused there (docs/security.md).
const WELL_KNOWN: &[(&str, Kind)] = &[
    // oauth2-proxy, reverse-proxy mode with --pass-user-headers (the chart's sidecar).
    ("x-forwarded-email", Kind::Email),
    ("x-forwarded-user", Kind::User),
    ("x-forwarded-groups", Kind::Groups),
    ("x-forwarded-preferred-username", Kind::User),
    // oauth2-proxy auth_request mode: response headers, often copied into requests by nginx.
    ("x-auth-request-email", Kind::Email),
    ("x-auth-request-user", Kind::User),
    ("x-auth-request-groups", Kind::Groups),
    ("x-auth-request-preferred-username", Kind::User),
    // Authelia (forward auth through Traefik, nginx, Caddy, …).
    ("remote-email", Kind::Email),
    ("remote-user", Kind::User),
    ("remote-groups", Kind::Groups),
    ("remote-name", Kind::User),
    // Pomerium (pass_identity_headers).
    ("x-pomerium-claim-email", Kind::Email),
    ("x-pomerium-claim-user", Kind::User),
    ("x-pomerium-claim-groups", Kind::Groups),
    ("x-pomerium-claim-name", Kind::User),
    ("x-pomerium-claim-preferred-username", Kind::User),
    // Kubernetes API aggregation / front proxy (requestheader defaults).
    ("x-remote-user", Kind::User),
    ("x-remote-group", Kind::Groups),
    // Cloudflare Access, Vouch Proxy, authentik.
    ("cf-access-authenticated-user-email", Kind::Email),
    ("x-vouch-user", Kind::User),
    ("x-authentik-email", Kind::Email),
    ("x-authentik-username", Kind::User),
];

/// Longest value kept per header in the audit event of a refused request.
const AUDIT_VALUE_MAX: usize = 64;
/// Values kept in the audit event of a refused request (the first ones found).
const AUDIT_VALUES_MAX: usize = 4;
/// Offending headers kept per refusal, and per aggregated record.
const AUDIT_HEADERS_MAX: usize = 16;
/// Client address and asserted identity pairs whose refusals are being counted at once; beyond it,
/// refusals of new pairs are counted together under one overflow entry.
const AUDIT_KEYS_MAX: usize = 1024;

/// The identity the configured headers assert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asserted {
    /// Lowercased email.
    pub email: String,
    /// The user header's value, when configured and sent.
    pub user: Option<String>,
    /// Groups (comma-separated in the header).
    pub groups: Vec<String>,
    /// Name to show: the preferred username, else the email.
    pub name: String,
}

/// Why a request's identity headers were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictReason {
    /// A configured identity header came more than once (or, for the email, as a list).
    Repeated,
    /// A header whose name differs from an identity header's only by `_` for `-`.
    Lookalike,
    /// A well-known identity header that is not configured names someone (or something) else.
    Differs,
}

impl ConflictReason {
    /// The name recorded in the audit event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Repeated => "repeated",
            Self::Lookalike => "lookalike",
            Self::Differs => "differs",
        }
    }
}

/// A request that carries more than one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Each offending header (lowercased) with the rule it broke, in the order found.
    pub headers: Vec<(String, ConflictReason)>,
    /// The email the configured header asserted, when there was exactly one valid one.
    pub asserted_email: Option<String>,
    /// The offending values (cleaned of control characters, shortened), for the audit event.
    pub values: Vec<(String, String)>,
}

impl Conflict {
    fn add(&mut self, header: &str, reason: ConflictReason, value: Option<&[u8]>) {
        if self.headers.len() < AUDIT_HEADERS_MAX && !self.headers.iter().any(|(h, r)| h == header && *r == reason) {
            self.headers.push((header.to_string(), reason));
        }
        if let Some(v) = value
            && self.values.len() < AUDIT_VALUES_MAX
        {
            self.values.push((header.to_string(), audit_value(v)));
        }
    }
}

fn audit_value(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .take(AUDIT_VALUE_MAX)
        .collect()
}

fn text(v: &axum::http::HeaderValue) -> Option<&str> {
    std::str::from_utf8(v.as_bytes()).ok().map(str::trim)
}

fn valid_email(e: &str) -> bool {
    e.len() <= 254 && e.contains('@') && !e.contains(',') && !e.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn group_set(values: &[&str]) -> BTreeSet<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads the identity the configured headers assert and checks every other identity header against
/// it. `Ok(None)`: no (valid) identity and nothing conflicting.
pub fn assert_identity(names: &ProxyHeaders, headers: &HeaderMap) -> Result<Option<Asserted>, Conflict> {
    let configured = names.named();
    let is_configured = |h: &str| configured.iter().any(|(_, n)| n == h);
    let mut conflict = Conflict {
        headers: Vec::new(),
        asserted_email: None,
        values: Vec::new(),
    };

    // Underscore twins: something on the way (a CGI-style server, nginx with underscores_in_headers)
    // may fold them into the real name after the proxy has stripped only the dashed form.
    for name in headers.keys() {
        let folded = name.as_str().replace('_', "-");
        if folded != name.as_str() && (is_configured(&folded) || WELL_KNOWN.iter().any(|(n, _)| *n == folded)) {
            conflict.add(name.as_str(), ConflictReason::Lookalike, None);
        }
    }

    // The configured headers: exactly one value each, as the injecting proxy sends them.
    let mut single = |key: &str| -> Option<String> {
        let (_, header) = configured.iter().find(|(k, _)| *k == key)?;
        let all: Vec<_> = headers.get_all(header.as_str()).iter().collect();
        if all.len() > 1 {
            for v in &all {
                conflict.add(header, ConflictReason::Repeated, Some(v.as_bytes()));
            }
            return None;
        }
        all.first()
            .and_then(|v| text(v))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let email_raw = single("email");
    let user = single("user");
    let groups_raw = single("groups");
    let preferred = single("preferredUsername");

    let mut email = None;
    if let Some(e) = email_raw.map(|e| e.to_ascii_lowercase()) {
        if e.contains(',') {
            // Two emails folded into one field: a hop appended instead of replacing.
            let header = configured
                .iter()
                .find(|(k, _)| *k == "email")
                .map(|(_, h)| h.clone())
                .unwrap_or_default();
            conflict.add(&header, ConflictReason::Repeated, Some(e.as_bytes()));
        } else if valid_email(&e) {
            email = Some(e);
        }
    }
    // Keep the header's order for display; the set serves comparisons.
    let mut asserted_groups = BTreeSet::new();
    let groups_in_order: Vec<String> = groups_raw
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty() && asserted_groups.insert(g.to_string()))
        .map(str::to_string)
        .collect();

    // Every well-known identity header that is not configured must agree with the asserted identity.
    for (name, kind) in WELL_KNOWN {
        if is_configured(name) {
            continue;
        }
        let values: Vec<_> = headers.get_all(*name).iter().collect();
        if values.is_empty() {
            continue;
        }
        let agrees = match kind {
            Kind::Groups => {
                let texts: Option<Vec<&str>> = values.iter().map(|v| text(v)).collect();
                match texts {
                    Some(t) => {
                        let set = group_set(&t);
                        set.is_empty() || (email.is_some() && set == asserted_groups)
                    }
                    None => false,
                }
            }
            Kind::Email | Kind::User => values.iter().all(|v| match text(v) {
                Some("") => true,
                Some(t) => email.as_deref().is_some_and(|e| {
                    let same = |x: &str| x.eq_ignore_ascii_case(t);
                    same(e)
                        || (*kind == Kind::User
                            && (user.as_deref().is_some_and(same) || preferred.as_deref().is_some_and(same)))
                }),
                None => false,
            }),
        };
        if !agrees {
            for v in &values {
                conflict.add(name, ConflictReason::Differs, Some(v.as_bytes()));
            }
        }
    }

    if !conflict.headers.is_empty() {
        conflict.asserted_email = email;
        return Err(conflict);
    }
    Ok(email.map(|email| Asserted {
        name: preferred.unwrap_or_else(|| email.clone()),
        email,
        user,
        groups: groups_in_order,
    }))
}

/// The identity asserted by a trusted proxy. `Ok(None)` when the peer is not trusted (its headers are
/// ignored) or sent no valid email; `Err` when the request carries conflicting identity headers.
pub fn identity(state: &AppState, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<Option<Identity>, Conflict> {
    let Some(peer) = peer else {
        return Ok(None);
    };
    if !state.trusted_proxies.iter().any(|c| c.contains(peer)) {
        return Ok(None);
    }
    let Some(a) = assert_identity(&state.config.web.proxy_headers, headers)? else {
        return Ok(None);
    };
    let groups = super::idp_groups(a.groups);
    Ok(Some(Identity {
        is_admin: state.admin_by_config(&a.email, &groups),
        csrf: session::sign(&state.session_key, &format!("csrf:{}", a.email)),
        email: a.email,
        name: a.name,
        groups,
        auth: AuthSource::Proxy,
        session: None,
        token: None,
    }))
}

/// Whose refusals are counted together: the client address and the identity the proxy asserted.
type RefusalKey = (Option<IpAddr>, String);

/// The key refusals of new pairs are counted under while [`AUDIT_KEYS_MAX`] pairs are.
const OVERFLOW_ACTOR: &str = "*";

/// Refusals counted since a pair's last audit event.
#[derive(Debug, Default)]
struct Counted {
    refusals: u64,
    headers: BTreeSet<String>,
}

/// The pairs whose refusal was audited within the current interval, with the refusals since (one per
/// web state, in [`crate::state::Inner::identity_refusals`]).
#[derive(Debug, Default)]
pub struct RefusalLog {
    pairs: HashMap<RefusalKey, Counted>,
}

/// What becomes of a refusal.
#[derive(Debug, PartialEq, Eq)]
enum Noted {
    /// It starts the pair's interval: audited in full; the caller [`RefusalLog::close`]s the interval
    /// at its end.
    First(RefusalKey),
    /// It starts the overflow entry's interval, counted in it (not audited alone); closed as above.
    Overflow(RefusalKey),
    /// Counted in an interval already started.
    Counted,
}

impl RefusalLog {
    /// Notes a refusal of `actor` (the asserted identity) from `peer`.
    fn note(&mut self, peer: Option<IpAddr>, actor: &str, headers: &[&str]) -> Noted {
        let mut key = (peer, actor.to_string());
        if !self.pairs.contains_key(&key) && self.pairs.len() >= AUDIT_KEYS_MAX {
            key = (None, OVERFLOW_ACTOR.to_string());
        }
        match self.pairs.get_mut(&key) {
            Some(c) => {
                c.refusals += 1;
                for h in headers {
                    if c.headers.len() >= AUDIT_HEADERS_MAX {
                        break;
                    }
                    c.headers.insert((*h).to_string());
                }
                Noted::Counted
            }
            None if key.1 == OVERFLOW_ACTOR => {
                self.pairs.insert(key.clone(), Counted::default());
                self.note(None, OVERFLOW_ACTOR, headers);
                Noted::Overflow(key)
            }
            None => {
                self.pairs.insert(key.clone(), Counted::default());
                Noted::First(key)
            }
        }
    }

    /// Ends a pair's interval: what was counted since its audit event.
    fn close(&mut self, key: &RefusalKey) -> Option<Counted> {
        self.pairs.remove(key)
    }
}

fn with_log<T>(state: &AppState, f: impl FnOnce(&mut RefusalLog) -> T) -> T {
    let mut log = state
        .identity_refusals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut log)
}

/// At the end of a pair's interval, records the refusals counted during it as one `login.failed`
/// event (`suppressed`: how many), if there were any.
async fn close_interval(state: AppState, key: RefusalKey, interval: Duration) {
    tokio::time::sleep(interval).await;
    let Some(counted) = with_log(&state, |log| log.close(&key)) else {
        return;
    };
    if counted.refusals == 0 {
        return;
    }
    let (peer, actor) = key;
    let overflow = actor == OVERFLOW_ACTOR;
    tracing::warn!(
        peer = ?peer,
        refusals = counted.refusals,
        seconds = interval.as_secs(),
        "further requests with conflicting identity headers refused"
    );
    crate::audit::record(
        &state,
        AuditKind::LoginFailed,
        if overflow { "anonymous" } else { &actor },
        None,
        None,
        &[],
        json!({
            "method": "proxy",
            "reason": "conflicting identity headers",
            "suppressed": counted.refusals,
            "intervalSeconds": interval.as_secs(),
            "headers": counted.headers,
            "peer": peer.map(|p| p.to_string()),
            "aggregated": overflow.then_some("refusals of further client addresses and identities"),
        }),
    )
    .await;
}

/// Records a refused request as `login.failed` (method `proxy`): who the proxy said it was, which
/// headers conflicted and (shortened) what the first of them claimed. At most once per client address
/// and asserted identity per `web.identityConflictAuditIntervalSeconds`: the refusals in between are
/// counted, and recorded as one event (`suppressed`) at the interval's end.
pub async fn audit_conflict(state: &AppState, conflict: &Conflict, peer: Option<IpAddr>) {
    let names: Vec<&str> = conflict.headers.iter().map(|(h, _)| h.as_str()).collect();
    let actor = conflict.asserted_email.as_deref().unwrap_or("anonymous");
    let interval = Duration::from_secs(state.config.web.identity_conflict_audit_interval_seconds.max(1));
    let key = match with_log(state, |log| log.note(peer, actor, &names)) {
        Noted::First(key) => key,
        Noted::Overflow(key) => {
            tokio::spawn(close_interval(state.clone(), key, interval));
            return;
        }
        Noted::Counted => {
            tracing::debug!(headers = ?names, peer = ?peer, "refused a request with conflicting identity headers (counted)");
            return;
        }
    };
    tokio::spawn(close_interval(state.clone(), key, interval));
    tracing::warn!(
        headers = ?names,
        peer = ?peer,
        "refused a request with conflicting identity headers"
    );
    let rules: Vec<_> = conflict
        .headers
        .iter()
        .map(|(h, r)| json!({"header": h, "rule": r.as_str()}))
        .collect();
    let claimed: Vec<_> = conflict
        .values
        .iter()
        .map(|(h, v)| json!({"header": h, "value": v}))
        .collect();
    crate::audit::record(
        state,
        AuditKind::LoginFailed,
        actor,
        None,
        None,
        &[],
        json!({
            "method": "proxy",
            "reason": "conflicting identity headers",
            "headers": rules,
            "claimed": claimed,
            "peer": peer.map(|p| p.to_string()),
        }),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        m
    }

    fn defaults() -> ProxyHeaders {
        ProxyHeaders::default()
    }

    fn reasons(c: &Conflict) -> Vec<(&str, ConflictReason)> {
        c.headers.iter().map(|(h, r)| (h.as_str(), *r)).collect()
    }

    #[test]
    fn ranges() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let h = Cidr::parse("127.0.0.1").unwrap();
        assert!(h.contains("127.0.0.1".parse().unwrap()) && !h.contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("::1/128").unwrap().contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse(" 10.0.0.1/8 ")
                .unwrap()
                .contains("10.200.0.1".parse().unwrap())
        );
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["x", "10.0.0.0/33", "10.0.0.0/-1", "", "::1/129", "10.0.0.0/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("prefix"));
    }

    #[test]
    fn identity_comes_from_the_configured_headers_only() {
        let a = assert_identity(
            &defaults(),
            &h(&[
                ("x-forwarded-email", " Alice@Example.com "),
                ("x-forwarded-user", "alice"),
                ("x-forwarded-groups", "dev, ops,dev"),
                ("x-forwarded-preferred-username", "Alice A."),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.email, "alice@example.com");
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!(a.groups, vec!["dev", "ops"]);
        assert_eq!(a.name, "Alice A.");
        // Without the preferred username the email is shown.
        let a = assert_identity(&defaults(), &h(&[("x-forwarded-email", "bob@example.com")]))
            .unwrap()
            .unwrap();
        assert_eq!((a.name.as_str(), a.groups.len()), ("bob@example.com", 0));
        // The old first-choice headers alone are no identity at all (and name somebody: refused).
        let c = assert_identity(
            &defaults(),
            &h(&[
                ("x-auth-request-email", "admin@example.com"),
                ("x-auth-request-groups", "admins"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            reasons(&c),
            vec![
                ("x-auth-request-email", ConflictReason::Differs),
                ("x-auth-request-groups", ConflictReason::Differs)
            ]
        );
        assert_eq!(c.asserted_email, None);
        // Nothing at all, or an invalid email: anonymous, not an error.
        assert_eq!(assert_identity(&defaults(), &h(&[])).unwrap(), None);
        for bad in ["not-an-email", "a b@example.com", "", "a\t@example.com"] {
            let r = assert_identity(&defaults(), &h(&[("x-forwarded-email", bad)]));
            assert_eq!(r.unwrap(), None, "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(
            assert_identity(&defaults(), &h(&[("x-forwarded-email", &long)])).unwrap(),
            None
        );
    }

    #[test]
    fn forged_identity_headers_of_other_proxies_are_conflicts() {
        let base = [("x-forwarded-email", "eve@example.com"), ("x-forwarded-user", "eve")];
        for (forged, value) in [
            ("x-auth-request-email", "admin@example.com"),
            ("x-auth-request-user", "admin"),
            ("x-auth-request-groups", "admins"),
            ("x-auth-request-preferred-username", "admin"),
            ("remote-user", "admin"),
            ("remote-email", "admin@example.com"),
            ("remote-groups", "admins"),
            ("x-pomerium-claim-email", "admin@example.com"),
            ("x-pomerium-claim-groups", "admins"),
            ("x-remote-user", "admin"),
            ("cf-access-authenticated-user-email", "admin@example.com"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push((forged, value));
            let c = assert_identity(&defaults(), &h(&pairs)).unwrap_err();
            assert_eq!(reasons(&c), vec![(forged, ConflictReason::Differs)], "{forged}");
            assert_eq!(c.asserted_email.as_deref(), Some("eve@example.com"));
            assert_eq!(c.values, vec![(forged.to_string(), value.to_string())]);
        }
        // The same person under another family's name is no conflict (a hop that copies headers).
        let a = assert_identity(
            &defaults(),
            &h(&[
                ("x-forwarded-email", "eve@example.com"),
                ("x-forwarded-user", "eve"),
                ("x-forwarded-groups", "dev,ops"),
                ("x-auth-request-email", "EVE@example.com"),
                ("x-auth-request-user", "eve"),
                ("remote-user", "eve@example.com"),
                ("x-auth-request-groups", "ops, dev"),
                ("remote-groups", ""),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.email, "eve@example.com");
        // Groups must match as a set: one more group is a conflict.
        let c = assert_identity(
            &defaults(),
            &h(&[
                ("x-forwarded-email", "eve@example.com"),
                ("x-forwarded-groups", "dev"),
                ("x-auth-request-groups", "dev,admins"),
            ]),
        )
        .unwrap_err();
        assert_eq!(reasons(&c), vec![("x-auth-request-groups", ConflictReason::Differs)]);
        // A value that is not text cannot agree.
        let mut m = h(&[("x-forwarded-email", "eve@example.com")]);
        m.append("remote-user", HeaderValue::from_bytes(b"ev\xffe").unwrap());
        let c = assert_identity(&defaults(), &m).unwrap_err();
        assert_eq!(reasons(&c), vec![("remote-user", ConflictReason::Differs)]);
    }

    #[test]
    fn repeated_configured_headers_are_conflicts_even_with_equal_values() {
        for pairs in [
            vec![
                ("x-forwarded-email", "eve@example.com"),
                ("x-forwarded-email", "admin@example.com"),
            ],
            vec![
                ("x-forwarded-email", "eve@example.com"),
                ("x-forwarded-email", "eve@example.com"),
            ],
        ] {
            let c = assert_identity(&defaults(), &h(&pairs)).unwrap_err();
            assert_eq!(reasons(&c), vec![("x-forwarded-email", ConflictReason::Repeated)]);
            assert_eq!(c.asserted_email, None, "no single identity to blame");
            assert_eq!(c.values.len(), 2);
        }
        // Two emails folded into one field.
        let c = assert_identity(
            &defaults(),
            &h(&[("x-forwarded-email", "eve@example.com, admin@example.com")]),
        )
        .unwrap_err();
        assert_eq!(reasons(&c), vec![("x-forwarded-email", ConflictReason::Repeated)]);
        for header in [
            "x-forwarded-groups",
            "x-forwarded-user",
            "x-forwarded-preferred-username",
        ] {
            let c = assert_identity(
                &defaults(),
                &h(&[("x-forwarded-email", "eve@example.com"), (header, "a"), (header, "b")]),
            )
            .unwrap_err();
            assert_eq!(reasons(&c), vec![(header, ConflictReason::Repeated)]);
            assert_eq!(c.asserted_email.as_deref(), Some("eve@example.com"));
        }
    }

    #[test]
    fn underscore_twins_are_conflicts() {
        for twin in [
            "x_forwarded_email",
            "x-forwarded_email",
            "x_auth_request_email",
            "remote_user",
        ] {
            let c = assert_identity(
                &defaults(),
                &h(&[("x-forwarded-email", "eve@example.com"), (twin, "eve@example.com")]),
            )
            .unwrap_err();
            assert_eq!(reasons(&c), vec![(twin, ConflictReason::Lookalike)], "{twin}");
        }
        // Unrelated headers with underscores are fine.
        assert!(
            assert_identity(
                &defaults(),
                &h(&[("x-forwarded-email", "eve@example.com"), ("x_trace_id", "1")])
            )
            .unwrap()
            .is_some()
        );
    }

    #[test]
    fn other_configurations_swap_which_headers_count() {
        let authelia = ProxyHeaders {
            email: "Remote-Email".into(),
            user: "Remote-User".into(),
            groups: "Remote-Groups".into(),
            preferred_username: "Remote-Name".into(),
        };
        let a = assert_identity(
            &authelia,
            &h(&[
                ("remote-email", "carol@example.com"),
                ("remote-user", "carol"),
                ("remote-groups", "admins"),
                ("remote-name", "Carol"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (a.email.as_str(), a.groups.as_slice()),
            ("carol@example.com", &["admins".to_string()][..])
        );
        // Now the oauth2-proxy names are foreign: a forged X-Forwarded-Email is refused, not read.
        let c = assert_identity(
            &authelia,
            &h(&[
                ("remote-email", "carol@example.com"),
                ("x-forwarded-email", "admin@example.com"),
            ]),
        )
        .unwrap_err();
        assert_eq!(reasons(&c), vec![("x-forwarded-email", ConflictReason::Differs)]);
        // An unused (empty) setting makes that header foreign too.
        let no_user = ProxyHeaders {
            user: String::new(),
            ..defaults()
        };
        let c = assert_identity(
            &no_user,
            &h(&[("x-forwarded-email", "eve@example.com"), ("x-forwarded-user", "admin")]),
        )
        .unwrap_err();
        assert_eq!(reasons(&c), vec![("x-forwarded-user", ConflictReason::Differs)]);
        // oauth2-proxy with --prefer-email-to-user: the email arrives as X-Forwarded-User, and a client's
        // X-Forwarded-Email (no longer stripped) must not name anyone else.
        let prefer_email = ProxyHeaders {
            email: "X-Forwarded-User".into(),
            user: String::new(),
            ..defaults()
        };
        let a = assert_identity(&prefer_email, &h(&[("x-forwarded-user", "eve@example.com")]))
            .unwrap()
            .unwrap();
        assert_eq!(a.email, "eve@example.com");
        let c = assert_identity(
            &prefer_email,
            &h(&[
                ("x-forwarded-user", "eve@example.com"),
                ("x-forwarded-email", "admin@example.com"),
            ]),
        )
        .unwrap_err();
        assert_eq!(reasons(&c), vec![("x-forwarded-email", ConflictReason::Differs)]);
        // A custom header is read, and the default email header is foreign.
        let custom = ProxyHeaders {
            email: "X-Janus-Email".into(),
            ..defaults()
        };
        let a = assert_identity(&custom, &h(&[("x-janus-email", "dan@example.com")]))
            .unwrap()
            .unwrap();
        assert_eq!(a.email, "dan@example.com");
    }

    #[test]
    fn audit_values_are_cleaned_and_short() {
        assert_eq!(audit_value(b"a\r\nb"), "a\u{fffd}\u{fffd}b");
        assert_eq!(audit_value("x".repeat(1000).as_bytes()).len(), AUDIT_VALUE_MAX);
        // Many values (one header repeated a hundred times): only the first few are kept.
        let long = "x".repeat(300);
        let pairs: Vec<(&str, &str)> = std::iter::once(("x-forwarded-email", "eve@example.com"))
            .chain(std::iter::repeat_n(("x-auth-request-user", long.as_str()), 100))
            .collect();
        let c = assert_identity(&defaults(), &h(&pairs)).unwrap_err();
        assert_eq!(c.values.len(), AUDIT_VALUES_MAX);
        assert!(c.values.iter().all(|(_, v)| v.len() <= AUDIT_VALUE_MAX));
    }

    #[test]
    fn refusals_are_audited_once_per_pair_and_interval_and_counted() {
        let mut log = RefusalLog::default();
        let peer: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let key = log.note(peer, "eve@example.com", &["x-auth-request-email"]);
        assert_eq!(key, Noted::First((peer, "eve@example.com".to_string())));
        for _ in 0..99 {
            assert_eq!(log.note(peer, "eve@example.com", &["remote-user"]), Noted::Counted);
        }
        // Another identity, or another address, is audited on its own.
        assert!(matches!(log.note(peer, "mallory@example.com", &[]), Noted::First(_)));
        assert!(matches!(
            log.note(Some("10.0.0.1".parse().unwrap()), "eve@example.com", &[]),
            Noted::First(_)
        ));
        let counted = log.close(&(peer, "eve@example.com".into())).unwrap();
        assert_eq!(counted.refusals, 99);
        assert_eq!(counted.headers, BTreeSet::from(["remote-user".to_string()]));
        // A new interval starts with an audited refusal again.
        assert!(matches!(log.note(peer, "eve@example.com", &[]), Noted::First(_)));
    }

    #[test]
    fn refusal_counting_has_bounded_memory() {
        let mut log = RefusalLog::default();
        for i in 0..AUDIT_KEYS_MAX {
            assert!(matches!(
                log.note(None, &format!("u{i}@example.com"), &[]),
                Noted::First(_)
            ));
        }
        // Beyond the cap, new pairs are counted together and not audited one by one.
        for i in 0..5000 {
            let names = [format!("x_{i}")];
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let want = if i == 0 {
                Noted::Overflow((None, OVERFLOW_ACTOR.into()))
            } else {
                Noted::Counted
            };
            assert_eq!(log.note(None, &format!("v{i}@example.com"), &names), want);
        }
        assert_eq!(log.pairs.len(), AUDIT_KEYS_MAX + 1);
        let overflow = log.close(&(None, OVERFLOW_ACTOR.into())).unwrap();
        assert_eq!(overflow.refusals, 5000);
        assert_eq!(overflow.headers.len(), AUDIT_HEADERS_MAX);
    }

    #[test]
    fn generic_header_names_are_not_identity_headers() {
        // Forward proxies inject these on some networks: they must not get every request refused.
        for generic in ["x-user", "x-email", "x-authenticated-user", "x-webauth-user"] {
            let a = assert_identity(
                &defaults(),
                &h(&[("x-forwarded-email", "eve@example.com"), (generic, "CORP\\someone")]),
            );
            assert_eq!(a.unwrap().unwrap().email, "eve@example.com", "{generic}");
        }
        for (name, _) in WELL_KNOWN {
            assert!(
                [
                    "x-forwarded-",
                    "x-auth-request-",
                    "remote-",
                    "x-pomerium-claim-",
                    "x-remote-",
                    "cf-access-",
                    "x-vouch-",
                    "x-authentik-"
                ]
                .iter()
                .any(|p| name.starts_with(p)),
                "{name} is not a proxy-specific name"
            );
        }
    }
}
