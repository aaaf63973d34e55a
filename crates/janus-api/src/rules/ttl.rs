//! How long access lasts: the TTL in effect, its bounds, expiry with extensions, and the deadlines of
//! pending and finished requests.

use chrono::{DateTime, Duration, Utc};

use crate::config::Config;
use crate::{AccessRequestSpec, AccessRequestStatus};

/// The TTL in effect: the minimum over ALL approvals (`spec.approval` and every `spec.approvals`
/// entry, counted or not) of the TTL each chose, where an approval without `ttlSeconds` stands for the
/// requested `spec.ttlSeconds`; without approvals, the requested one.
///
/// So an approval can only shorten access relative to what the others chose, never lengthen it: every
/// approver agreed to at most their own choice, and an entry that does not count (written by someone
/// the policy does not name) cannot stretch the access the counted ones approved. A single approver may
/// still choose a TTL longer than the one requested.
pub fn effective_ttl(spec: &AccessRequestSpec) -> i64 {
    approval_ttl(spec).unwrap_or(spec.ttl_seconds)
}

/// The TTL the approvals chose ([`effective_ttl`]), when at least one approval sets `ttlSeconds`;
/// `None` when none does (the requested TTL applies). A request approved as before approval policies
/// (one `spec.approval`) gets exactly that approval's `ttlSeconds`.
pub fn approval_ttl(spec: &AccessRequestSpec) -> Option<i64> {
    let chosen: Vec<Option<i64>> = spec
        .approval
        .iter()
        .map(|a| a.ttl_seconds)
        .chain(spec.approvals.iter().map(|a| a.ttl_seconds))
        .collect();
    chosen.iter().any(Option::is_some).then(|| {
        chosen
            .iter()
            .map(|t| t.unwrap_or(spec.ttl_seconds))
            .min()
            .unwrap_or(spec.ttl_seconds)
    })
}

/// When access is scheduled to begin (`spec.startAt`), if it is set and a valid RFC 3339 time.
pub fn starts_at(spec: &AccessRequestSpec) -> Option<DateTime<Utc>> {
    spec.start_at.as_deref().and_then(super::time::parse_time)
}

/// A TTL outside the configured bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the duration of {ttl}s is outside the allowed range [{min}s, {max}s]")]
pub struct OutOfBounds {
    /// The TTL asked for.
    pub ttl: i64,
    /// `minTtlSeconds`.
    pub min: i64,
    /// `maxTtlSeconds`.
    pub max: i64,
}

/// Whether a requested or approved TTL is within `[minTtlSeconds, maxTtlSeconds]`.
pub fn check_ttl(ttl: i64, config: &Config) -> Result<(), OutOfBounds> {
    if (config.min_ttl_seconds..=config.max_ttl_seconds).contains(&ttl) {
        Ok(())
    } else {
        Err(OutOfBounds {
            ttl,
            min: config.min_ttl_seconds,
            max: config.max_ttl_seconds,
        })
    }
}

/// Whether one extension is as long as the web allows: at least a second, at most `maxTtlSeconds`.
pub fn check_extension(seconds: i64, config: &Config) -> Result<(), OutOfBounds> {
    if (1..=config.max_ttl_seconds).contains(&seconds) {
        Ok(())
    } else {
        Err(OutOfBounds {
            ttl: seconds,
            min: 1,
            max: config.max_ttl_seconds,
        })
    }
}

/// When access ends: start + (approval TTL or requested TTL) + extensions, capped at `maxTtlSeconds`
/// after the start unless the configuration allows more. The start is `spec.startAt` when set (a
/// scheduled request ends at its start plus the TTL, however late it was activated), else `active_at`.
/// Two admins extending at once can both pass the web's check, so the cap is applied here rather than
/// refused.
pub fn expires_at(spec: &AccessRequestSpec, active_at: DateTime<Utc>, config: &Config) -> DateTime<Utc> {
    let start = starts_at(spec).unwrap_or(active_at);
    let base = effective_ttl(spec).max(0);
    let extra: i64 = spec.extensions.iter().map(|e| e.seconds.max(0)).sum();
    let mut total = base.saturating_add(extra);
    if !config.allow_extension_beyond_max_ttl {
        total = total.min(config.max_ttl_seconds.max(base));
    }
    start + Duration::seconds(total)
}

/// How long a live request may last under the policy that approved it (see [`lifetime_bound`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifetimeBound {
    /// The longest effective TTL, and the cap on start-to-end with extensions (unless
    /// `extensions_beyond`).
    pub max_ttl_seconds: i64,
    /// Whether extensions may take the lifetime past `max_ttl_seconds` (`allowExtensionBeyondMaxTtl`;
    /// never for a break-glass activation).
    pub extensions_beyond: bool,
    /// What sets the bound, for messages: `policy prod`, `the break-glass rule of policy prod`, or
    /// `maxTtlSeconds`.
    pub source: String,
}

/// The bound on a live request's lifetime: the `maxTtlSeconds` of the policy named in `status.policy`
/// (never above the global one), for a break-glass activation (`status.policy.breakGlass` or
/// `spec.breakGlass`) its `breakGlass.maxTtlSeconds`, and the global `maxTtlSeconds` for the `default`
/// policy, a request without `status.policy`, or a policy no longer configured. Read from the
/// configuration as it is now, so lowering a maximum bounds requests already running.
///
/// Extensions of a break-glass activation never pass its maximum: break-glass is short access without
/// approval, and more time is a new request.
pub fn lifetime_bound(
    config: &Config,
    spec: &AccessRequestSpec,
    policy: Option<&crate::PolicyStatus>,
) -> LifetimeBound {
    let global = LifetimeBound {
        max_ttl_seconds: config.max_ttl_seconds,
        extensions_beyond: config.allow_extension_beyond_max_ttl,
        source: "maxTtlSeconds".into(),
    };
    let Some(status) = policy else {
        return global;
    };
    let Some(p) = config.policies.iter().find(|p| p.name == status.name) else {
        return global;
    };
    let policy_max = p
        .max_ttl_seconds
        .unwrap_or(config.max_ttl_seconds)
        .min(config.max_ttl_seconds);
    let break_glass = status.break_glass || spec.break_glass.is_some();
    match p.break_glass.as_ref().filter(|_| break_glass) {
        Some(rule) => LifetimeBound {
            max_ttl_seconds: rule.max_ttl_seconds.min(policy_max),
            extensions_beyond: false,
            source: format!("the break-glass rule of policy {}", p.name),
        },
        None => LifetimeBound {
            max_ttl_seconds: policy_max,
            extensions_beyond: config.allow_extension_beyond_max_ttl && !break_glass,
            source: format!("policy {}", p.name),
        },
    }
}

/// [`expires_at`], with extensions also capped at `bound` (see [`lifetime_bound`]): the end never
/// passes start + `bound.max_ttl_seconds` (or the effective TTL, if that is longer: such a request is
/// refused elsewhere), unless the bound lets extensions pass it.
pub fn expires_at_bounded(
    spec: &AccessRequestSpec,
    active_at: DateTime<Utc>,
    config: &Config,
    bound: &LifetimeBound,
) -> DateTime<Utc> {
    let end = expires_at(spec, active_at, config);
    if bound.extensions_beyond {
        return end;
    }
    let start = starts_at(spec).unwrap_or(active_at);
    let cap = bound.max_ttl_seconds.max(effective_ttl(spec).max(0));
    end.min(start + Duration::seconds(cap))
}

/// Lifetime to ask of a TokenRequest: the remaining access, but at least the API server's minimum of
/// 600 s. At expiry the RoleBinding and then the ServiceAccount are deleted: a longer-lived token is
/// refused at once (nothing authorizes it) and stops authenticating once the server's cache forgets it.
/// A cluster may issue less than asked (see [`token_renew_at`]).
pub fn token_lifetime(expires: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    // Rounded up, plus a second: a token that ended a fraction before expiresAt would look stale on
    // the next reconcile and be re-issued again and again.
    let ms = (expires - now).num_milliseconds();
    (ms.div_euclid(1000) + 2).max(600)
}

/// The most a capped token is renewed ahead of its own expiry.
pub const TOKEN_RENEW_MARGIN_MAX_SECONDS: i64 = 300;

/// When to renew a token issued at `issued` that stops working at `token_expires`, for a cluster that
/// shortened it below the access it serves (`--service-account-max-token-expiration`).
///
/// A fifth of its lifetime ahead, at most [`TOKEN_RENEW_MARGIN_MAX_SECONDS`]. The margin has to absorb
/// the controller's requeue delay, several backoff retries while the API server is briefly unavailable,
/// and clock skew between controller and API server (the token's `exp` is the server's clock). A fifth
/// is what the kubelet uses for projected tokens (it renews at 80% of their lifetime,
/// pkg/kubelet/token/token_manager.go). The cap keeps renewals rare on real clusters, which refuse a
/// maximum below one hour: a token renewed every 55 minutes costs one TokenRequest an hour per namespace.
///
/// Never sooner than [`TOKEN_RENEW_MIN_INTERVAL_SECONDS`] after `issued`: a token that seems to expire
/// at or just after its issue is the sign of a controller clock ahead of the API server's (see
/// [`token_clock_skewed`]), and renewing it at once would issue another such token on every reconcile.
pub fn token_renew_at(issued: DateTime<Utc>, token_expires: DateTime<Utc>) -> DateTime<Utc> {
    let lifetime = (token_expires - issued).max(Duration::zero());
    let margin = (lifetime / 5).min(Duration::seconds(TOKEN_RENEW_MARGIN_MAX_SECONDS));
    (token_expires - margin).max(issued + Duration::seconds(TOKEN_RENEW_MIN_INTERVAL_SECONDS))
}

/// The least time between a token's issue and its renewal.
///
/// The token's `exp` is on the API server's clock and `issued` on the controller's; when the
/// controller's clock runs ahead, the token looks shorter than it is by the skew. The server itself
/// decides the real lifetime, which is never this short (TokenRequest asks for at least 600 s, and a
/// `--service-account-max-token-expiration` below an hour is refused by kube-apiserver), so a
/// renewal this long after issue is still ahead of the real expiry, while a renewal loop is at most
/// one TokenRequest per interval per namespace.
pub const TOKEN_RENEW_MIN_INTERVAL_SECONDS: i64 = 5;

/// Whether a token issued at `issued` (controller clock) that expires at `token_expires` (API server
/// clock) is renewed later than [`token_renew_at`]'s usual margin allows, because it seemed to expire
/// too soon after its issue: almost always clock skew between controller and API server.
pub fn token_clock_skewed(issued: DateTime<Utc>, token_expires: DateTime<Utc>) -> bool {
    let lifetime = (token_expires - issued).max(Duration::zero());
    let margin = (lifetime / 5).min(Duration::seconds(TOKEN_RENEW_MARGIN_MAX_SECONDS));
    token_expires - margin < issued + Duration::seconds(TOKEN_RENEW_MIN_INTERVAL_SECONDS)
}

/// When a Pending request is denied for lack of a decision, if that applies (global
/// `pendingExpirySeconds`; see [`pending_deadline_after`] for a policy's own).
pub fn pending_deadline(created: DateTime<Utc>, config: &Config) -> Option<DateTime<Utc>> {
    pending_deadline_after(created, config.pending_expiry_seconds)
}

/// When a Pending request is denied for lack of a decision after `seconds` (a policy's
/// `pendingExpirySeconds`, [`crate::rules::policy::Governing::pending_expiry_seconds`]); 0 or less: never.
pub fn pending_deadline_after(created: DateTime<Utc>, seconds: i64) -> Option<DateTime<Utc>> {
    (seconds > 0).then(|| created + Duration::seconds(seconds))
}

/// When a finished request is deleted, if retention applies.
pub fn retention_deadline(status: &AccessRequestStatus, config: &Config) -> Option<DateTime<Utc>> {
    if config.retention_seconds == 0 {
        return None;
    }
    status
        .ended_at
        .as_deref()
        .and_then(super::time::parse_time)
        .map(|t| t + Duration::seconds(config.retention_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::time::parse_time;
    use crate::{Approval, Extension};

    fn config() -> Config {
        yaml_serde::from_str("{}").unwrap()
    }

    fn spec(ttl: i64) -> AccessRequestSpec {
        AccessRequestSpec::new("a@example.com", "local", vec!["default".into()], "r", ttl)
    }

    fn approval(ttl: Option<i64>) -> Approval {
        serde_json::from_value(
            serde_json::json!({"by": "admin@example.com", "at": "2026-01-01T00:00:00Z", "ttlSeconds": ttl}),
        )
        .unwrap()
    }

    fn extension(seconds: i64) -> Extension {
        serde_json::from_value(
            serde_json::json!({"by": "admin@example.com", "at": "2026-01-01T00:00:00Z", "seconds": seconds}),
        )
        .unwrap()
    }

    #[test]
    fn approval_ttl_overrides_the_request() {
        let mut s = spec(3600);
        assert_eq!(effective_ttl(&s), 3600);
        s.approval = Some(approval(None));
        assert_eq!(effective_ttl(&s), 3600);
        s.approval = Some(approval(Some(900)));
        assert_eq!(effective_ttl(&s), 900);
    }

    #[test]
    fn bounds_are_inclusive() {
        let c = config();
        assert!(check_ttl(c.min_ttl_seconds, &c).is_ok());
        assert!(check_ttl(c.max_ttl_seconds, &c).is_ok());
        let e = check_ttl(c.max_ttl_seconds + 1, &c).unwrap_err();
        assert_eq!(e.max, c.max_ttl_seconds);
        assert!(e.to_string().contains("outside the allowed range"));
        assert!(check_ttl(c.min_ttl_seconds - 1, &c).is_err());
        assert!(check_extension(0, &c).is_err());
        assert!(check_extension(1, &c).is_ok());
        assert!(check_extension(c.max_ttl_seconds + 1, &c).is_err());
    }

    #[test]
    fn extensions_are_capped_unless_allowed() {
        let mut c = config();
        let t0 = super::super::time::parse_time("2026-01-01T00:00:00Z").unwrap();
        let mut s = spec(c.max_ttl_seconds - 60);
        s.extensions = vec![extension(3600), extension(3600)];
        assert_eq!(expires_at(&s, t0, &c), t0 + Duration::seconds(c.max_ttl_seconds));
        c.allow_extension_beyond_max_ttl = true;
        assert_eq!(
            expires_at(&s, t0, &c),
            t0 + Duration::seconds(c.max_ttl_seconds - 60 + 7200)
        );
        // Negative values never shorten access below the base.
        s.extensions = vec![extension(-500)];
        assert_eq!(expires_at(&s, t0, &c), t0 + Duration::seconds(c.max_ttl_seconds - 60));
    }

    #[test]
    fn deadlines() {
        let mut c = config();
        let t0 = super::super::time::parse_time("2026-01-01T00:00:00Z").unwrap();
        c.pending_expiry_seconds = 0;
        assert!(pending_deadline(t0, &c).is_none());
        c.pending_expiry_seconds = 60;
        assert_eq!(pending_deadline(t0, &c), Some(t0 + Duration::seconds(60)));
        let st = AccessRequestStatus {
            ended_at: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        c.retention_seconds = 0;
        assert!(retention_deadline(&st, &c).is_none());
        c.retention_seconds = 10;
        assert_eq!(retention_deadline(&st, &c), Some(t0 + Duration::seconds(10)));
        assert!(retention_deadline(&AccessRequestStatus::default(), &c).is_none());
    }
    #[test]
    fn expiry_with_override_extensions_and_cap_from_yaml() {
        let cfg = Config::from_yaml("maxTtlSeconds: 7200\n", "t").unwrap();
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        let mut s = spec(3600);
        assert_eq!(expires_at(&s, t0, &cfg), t0 + Duration::seconds(3600));
        s.approval = Some(approval(Some(1800)));
        assert_eq!(expires_at(&s, t0, &cfg), t0 + Duration::seconds(1800));
        s.extensions.push(extension(3600));
        assert_eq!(expires_at(&s, t0, &cfg), t0 + Duration::seconds(5400));
        s.extensions.push(extension(3600));
        assert_eq!(
            expires_at(&s, t0, &cfg),
            t0 + Duration::seconds(7200),
            "capped at maxTtlSeconds"
        );
        let open = Config::from_yaml("maxTtlSeconds: 7200\nallowExtensionBeyondMaxTtl: true\n", "t").unwrap();
        assert_eq!(expires_at(&s, t0, &open), t0 + Duration::seconds(9000));
    }

    #[test]
    fn token_lifetime_has_the_api_server_minimum() {
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(token_lifetime(t0 + Duration::seconds(5), t0), 600);
        assert_eq!(token_lifetime(t0 + Duration::seconds(7200), t0), 7202);
        let later = t0 + Duration::milliseconds(300);
        assert!(
            later + Duration::seconds(token_lifetime(t0 + Duration::seconds(7200), later))
                >= t0 + Duration::seconds(7200),
            "covers expiresAt despite the fraction"
        );
    }

    #[test]
    fn capped_tokens_are_renewed_a_fifth_ahead_at_most_five_minutes() {
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            token_renew_at(t0, t0 + Duration::seconds(10)),
            t0 + Duration::seconds(8),
            "short lifetimes: a fifth ahead"
        );
        assert_eq!(
            token_renew_at(t0, t0 + Duration::seconds(3600)),
            t0 + Duration::seconds(3300),
            "an hour: five minutes ahead"
        );
        assert!(!token_clock_skewed(t0, t0 + Duration::seconds(10)));
        assert!(!token_clock_skewed(t0, t0 + Duration::seconds(3600)));
    }

    #[test]
    fn a_token_that_seems_expired_at_issue_is_not_renewed_at_once() {
        // The controller's clock is ahead of the API server's: the token's `exp` (server clock) is at
        // or before the controller's issue time. Renewing at once would make the next reconcile ask
        // for another token, and so on, one TokenRequest per reconcile.
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        let floor = t0 + Duration::seconds(TOKEN_RENEW_MIN_INTERVAL_SECONDS);
        for exp in [
            t0 - Duration::seconds(5),
            t0,
            t0 + Duration::milliseconds(1),
            t0 + Duration::seconds(1),
        ] {
            let at = token_renew_at(t0, exp);
            assert!(
                at > t0,
                "renewal at {at} for a token issued at {t0} expiring at {exp}: a hot loop"
            );
            assert_eq!(at, floor, "token expiring at {exp}");
            assert!(
                token_clock_skewed(t0, exp),
                "token expiring at {exp} is reported as skew"
            );
        }
        // A token that lasts long enough is renewed ahead of its own expiry, never after it.
        for secs in [7, 8, 60, 600, 3600, 86_400] {
            let exp = t0 + Duration::seconds(secs);
            let at = token_renew_at(t0, exp);
            assert!(at >= floor && at < exp, "{secs}s token renewed at {at}");
        }
    }

    fn entry(ttl: Option<i64>) -> crate::ApprovalEntry {
        crate::ApprovalEntry {
            by: "x@example.com".into(),
            at: "2026-01-01T00:00:00Z".into(),
            ttl_seconds: ttl,
            comment: String::new(),
            groups: vec![],
        }
    }

    #[test]
    fn the_shortest_approval_ttl_applies() {
        let mut s = spec(3600);
        s.approvals = vec![entry(None), entry(None)];
        assert_eq!((effective_ttl(&s), approval_ttl(&s)), (3600, None));
        s.approvals = vec![entry(Some(7200))];
        assert_eq!(
            effective_ttl(&s),
            7200,
            "a single approver may choose longer than asked"
        );
        s.approvals.push(entry(None));
        assert_eq!(
            (effective_ttl(&s), approval_ttl(&s)),
            (3600, Some(3600)),
            "an approval without a TTL stands for the requested one"
        );
        s.approvals.push(entry(Some(1800)));
        assert_eq!(effective_ttl(&s), 1800);
        s.approval = Some(approval(Some(900)));
        assert_eq!((effective_ttl(&s), approval_ttl(&s)), (900, Some(900)));
        s.approval = Some(approval(Some(5000)));
        assert_eq!(effective_ttl(&s), 1800, "spec.approval is one of them");
        // As before policies: one spec.approval gives exactly its TTL (v1 baselines rely on it).
        let mut legacy = spec(3600);
        legacy.approval = Some(approval(Some(7200)));
        assert_eq!(approval_ttl(&legacy), Some(7200));
        legacy.approval = Some(approval(None));
        assert_eq!(approval_ttl(&legacy), None);
    }

    #[test]
    fn an_approval_that_does_not_count_cannot_lengthen_access() {
        // The reviewer's case: 1800 s requested, the counted approval sets no TTL, an entry by someone
        // the policy does not name sets 3600 s. The access lasts what was requested and approved.
        let mut s = spec(1800);
        s.approvals = vec![entry(None), entry(Some(3600))];
        assert_eq!(effective_ttl(&s), 1800);
        // Nor when the counted approval chose longer than asked: a later, longer entry never lengthens.
        s.approvals = vec![entry(Some(3600)), entry(Some(28_800))];
        assert_eq!(effective_ttl(&s), 3600);
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        s.approvals = vec![entry(None), entry(Some(3600))];
        assert_eq!(expires_at(&s, t0, &config()), t0 + Duration::seconds(1800));
    }

    #[test]
    fn a_scheduled_request_expires_at_its_start_plus_the_ttl() {
        let c = config();
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        let mut s = spec(3600);
        assert_eq!(starts_at(&s), None);
        s.start_at = Some("2026-01-01T02:00:00+01:00".into());
        let start = parse_time("2026-01-01T01:00:00Z").unwrap();
        assert_eq!(starts_at(&s), Some(start));
        // Activated late (the controller was down): the window still ends at startAt + TTL.
        let late = start + Duration::seconds(600);
        assert_eq!(expires_at(&s, late, &c), start + Duration::seconds(3600));
        s.extensions = vec![extension(600)];
        assert_eq!(expires_at(&s, late, &c), start + Duration::seconds(4200));
        // An unparseable startAt (the CRD bounds only its length) falls back to the activation.
        s.start_at = Some("tomorrow".into());
        assert_eq!(starts_at(&s), None);
        assert_eq!(expires_at(&s, t0, &c), t0 + Duration::seconds(4200));
    }

    #[test]
    fn a_policy_pending_expiry() {
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(pending_deadline_after(t0, 3600), Some(t0 + Duration::seconds(3600)));
        assert_eq!(pending_deadline_after(t0, 0), None);
        assert_eq!(pending_deadline_after(t0, -5), None);
        let c = config();
        assert_eq!(
            pending_deadline(t0, &c),
            pending_deadline_after(t0, c.pending_expiry_seconds)
        );
    }
}

#[cfg(test)]
mod lifetime_bound_tests {
    use super::*;
    use crate::PolicyStatus;
    use crate::rules::time::parse_time;

    const CONFIG: &str = "
maxTtlSeconds: 7200
policies:
- name: prod
  match: {namespaces: [prod]}
  approvers: {emails: [a@example.com]}
  maxTtlSeconds: 1800
  breakGlass: {groups: [sre], maxTtlSeconds: 600}
";

    fn status(name: &str, break_glass: bool) -> PolicyStatus {
        PolicyStatus {
            name: name.into(),
            break_glass,
            ..Default::default()
        }
    }

    #[test]
    fn the_policy_that_approved_the_request_bounds_it_and_its_extensions() {
        let mut c = Config::from_yaml(CONFIG, "t").unwrap();
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        let mut s = AccessRequestSpec::new("a@example.com", "local", vec!["prod".into()], "r", 900);
        s.extensions = vec![
            serde_json::from_value(
                serde_json::json!({"by": "a@example.com", "at": "2026-01-01T00:00:00Z", "seconds": 3600}),
            )
            .unwrap(),
        ];
        let prod = lifetime_bound(&c, &s, Some(&status("prod", false)));
        assert_eq!((prod.max_ttl_seconds, prod.source.as_str()), (1800, "policy prod"));
        assert_eq!(expires_at_bounded(&s, t0, &c, &prod), t0 + Duration::seconds(1800));
        // The default policy, no status yet, a policy no longer configured: the global maximum.
        for p in [None, Some(status("default", false)), Some(status("gone", false))] {
            let b = lifetime_bound(&c, &s, p.as_ref());
            assert_eq!(b.max_ttl_seconds, 7200);
            assert_eq!(expires_at_bounded(&s, t0, &c, &b), expires_at(&s, t0, &c));
        }
        let glass = lifetime_bound(&c, &s, Some(&status("prod", true)));
        assert_eq!(glass.max_ttl_seconds, 600);
        assert_eq!(
            expires_at_bounded(&s, t0, &c, &glass),
            t0 + Duration::seconds(900),
            "never shorter than the effective TTL (such a request is refused elsewhere)"
        );
        c.allow_extension_beyond_max_ttl = true;
        let open = lifetime_bound(&c, &s, Some(&status("prod", false)));
        assert!(
            open.extensions_beyond,
            "allowExtensionBeyondMaxTtl applies to the policy's maximum too"
        );
        assert_eq!(expires_at_bounded(&s, t0, &c, &open), t0 + Duration::seconds(4500));
        let glass = lifetime_bound(&c, &s, Some(&status("prod", true)));
        assert!(!glass.extensions_beyond, "but never to break-glass access");
        s.ttl_seconds = 300;
        assert_eq!(expires_at_bounded(&s, t0, &c, &glass), t0 + Duration::seconds(600));
    }
}
