//! The request lifecycle as pure functions of the spec decisions, what was observed, and the clock.
//!
//! Nothing here talks to a cluster, so every rule (precedence of decisions, TTL bounds, expiry,
//! extensions, pending timeouts, retention) is unit-tested without one.

use chrono::{DateTime, Duration, Utc};
use janus_api::config::Config;
use janus_api::{AccessRequestSpec, AccessRequestStatus, Phase};

/// Parses an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Converts the API's timestamps (jiff) to chrono.
pub fn from_jiff(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), u32::try_from(t.subsec_nanosecond()).unwrap_or(0)).unwrap_or_default()
}

/// Formats a time as Kubernetes does (RFC 3339, seconds, `Z`).
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A human decision that ends the request, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The requester withdrew it.
    Withdrawn { by: String },
    /// An admin revoked it (or the idle timeout did).
    Revoked { by: String, reason: String },
    /// An admin denied it. A denial wins over an approval written at the same time.
    Denied { by: String, reason: String },
}

/// The decision that ends the request, if any. Withdrawal by the requester comes first, then
/// revocation, then denial, so that racing decisions always end in the safest state: no access.
pub fn ending(spec: &AccessRequestSpec) -> Option<Ending> {
    if let Some(w) = &spec.withdrawal {
        return Some(Ending::Withdrawn { by: w.by.clone() });
    }
    if let Some(r) = &spec.revocation {
        return Some(Ending::Revoked {
            by: r.by.clone(),
            reason: r.reason.clone(),
        });
    }
    if let Some(d) = &spec.denial {
        return Some(Ending::Denied {
            by: d.by.clone(),
            reason: d.reason.clone(),
        });
    }
    None
}

impl Ending {
    /// The terminal phase this decision leads to.
    pub fn phase(&self) -> Phase {
        match self {
            Ending::Withdrawn { .. } => Phase::Cancelled,
            Ending::Revoked { .. } => Phase::Revoked,
            Ending::Denied { .. } => Phase::Denied,
        }
    }

    /// The status message.
    pub fn message(&self) -> String {
        match self {
            Ending::Withdrawn { by } => format!("withdrawn by {by}"),
            Ending::Revoked { by, reason } if reason.is_empty() => format!("revoked by {by}"),
            Ending::Revoked { by, reason } => format!("revoked by {by}: {reason}"),
            Ending::Denied { by, reason } if reason.is_empty() => format!("denied by {by}"),
            Ending::Denied { by, reason } => format!("denied by {by}: {reason}"),
        }
    }
}

/// Checks what can be checked without a cluster against the configuration as it is now. `Err` is the
/// message. The controller applies it on every reconcile of a live request, so it holds whoever wrote
/// the spec and whenever: the Janus namespace and excluded namespaces are never granted, the cluster
/// is known, the TTL in effect is within bounds, and each extension is as long as the web allows.
/// (Extensions that together pass `maxTtlSeconds` are not an error: [`expires_at`] caps them unless
/// `allowExtensionBeyondMaxTtl` is set, since two admins extending at once can both pass the web's check.)
pub fn validate_static(spec: &AccessRequestSpec, config: &Config, known_cluster: bool) -> Result<(), String> {
    if !known_cluster {
        return Err(format!(
            "unknown cluster {:?}: it is neither configured nor registered",
            spec.cluster
        ));
    }
    if spec.namespaces.is_empty() {
        return Err("no namespace requested".into());
    }
    let mut seen = std::collections::HashSet::new();
    for ns in &spec.namespaces {
        if !seen.insert(ns) {
            return Err(format!("namespace {ns:?} is listed twice"));
        }
        if config.is_excluded(ns) {
            return Err(format!("namespace {ns:?} is excluded from k8s-janus access"));
        }
    }
    let ttl = spec
        .approval
        .as_ref()
        .and_then(|a| a.ttl_seconds)
        .unwrap_or(spec.ttl_seconds);
    if ttl < config.min_ttl_seconds || ttl > config.max_ttl_seconds {
        return Err(format!(
            "TTL of {ttl}s is outside the allowed range [{}s, {}s]",
            config.min_ttl_seconds, config.max_ttl_seconds
        ));
    }
    for (i, e) in spec.extensions.iter().enumerate() {
        if e.seconds < 1 || e.seconds > config.max_ttl_seconds {
            return Err(format!(
                "extension {i} of {}s is outside the allowed range [1s, {}s]",
                e.seconds, config.max_ttl_seconds
            ));
        }
    }
    Ok(())
}

/// When access ends: activation + (approval TTL or requested TTL) + extensions, capped at
/// `maxTtlSeconds` after activation unless the configuration allows more.
pub fn expires_at(spec: &AccessRequestSpec, active_at: DateTime<Utc>, config: &Config) -> DateTime<Utc> {
    let base = spec
        .approval
        .as_ref()
        .and_then(|a| a.ttl_seconds)
        .unwrap_or(spec.ttl_seconds)
        .max(0);
    let extra: i64 = spec.extensions.iter().map(|e| e.seconds.max(0)).sum();
    let mut total = base.saturating_add(extra);
    if !config.allow_extension_beyond_max_ttl {
        total = total.min(config.max_ttl_seconds.max(base));
    }
    active_at + Duration::seconds(total)
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
pub fn token_renew_at(issued: DateTime<Utc>, token_expires: DateTime<Utc>) -> DateTime<Utc> {
    let lifetime = (token_expires - issued).max(Duration::zero());
    let margin = (lifetime / 5).min(Duration::seconds(TOKEN_RENEW_MARGIN_MAX_SECONDS));
    token_expires - margin
}

/// When a Pending request is denied for lack of a decision, if that applies.
pub fn pending_deadline(created: DateTime<Utc>, config: &Config) -> Option<DateTime<Utc>> {
    (config.pending_expiry_seconds > 0).then(|| created + Duration::seconds(config.pending_expiry_seconds))
}

/// When a finished request is deleted, if retention applies.
pub fn retention_deadline(status: &AccessRequestStatus, config: &Config) -> Option<DateTime<Utc>> {
    if config.retention_seconds == 0 {
        return None;
    }
    status
        .ended_at
        .as_deref()
        .and_then(parse_time)
        .map(|t| t + Duration::seconds(config.retention_seconds))
}

/// Whether a request may hold credentials that should already be gone: granted (or being granted)
/// and past its expiry, ended by a decision, or being deleted; or ended with its cleanup unfinished.
/// After a restart these go first, before the rest of the backlog.
pub fn overdue(
    spec: &AccessRequestSpec,
    status: Option<&AccessRequestStatus>,
    deleting: bool,
    config: &Config,
    now: DateTime<Utc>,
) -> bool {
    let Some(st) = status else {
        return false;
    };
    if st.phase.is_terminal() {
        return !st
            .conditions
            .iter()
            .any(|c| c.type_ == "CredentialsRemoved" && c.status == "True");
    }
    if !matches!(st.phase, Phase::Approved | Phase::Active) {
        return false;
    }
    deleting
        || ending(spec).is_some()
        || st
            .active_at
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|a| expires_at(spec, a, config) <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_api::{Approval, Decision, Denial, Extension, Revocation};

    fn spec() -> AccessRequestSpec {
        AccessRequestSpec {
            requester: "a@x.io".into(),
            cluster: "central".into(),
            namespaces: vec!["apps".into()],
            reason: "debug".into(),
            ttl_seconds: 3600,
            approval: None,
            denial: None,
            revocation: None,
            withdrawal: None,
            extensions: vec![],
        }
    }

    fn decision() -> Decision {
        Decision {
            by: "b@x.io".into(),
            at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn precedence_ends_in_the_safest_state() {
        let mut s = spec();
        assert_eq!(ending(&s), None);
        s.approval = Some(Approval {
            by: "b".into(),
            at: "t".into(),
            ttl_seconds: None,
        });
        s.denial = Some(Denial {
            by: "c".into(),
            at: "t".into(),
            reason: "no".into(),
        });
        assert_eq!(ending(&s).unwrap().phase(), Phase::Denied);
        s.revocation = Some(Revocation {
            by: "c".into(),
            at: "t".into(),
            reason: String::new(),
        });
        assert_eq!(ending(&s).unwrap().phase(), Phase::Revoked);
        s.withdrawal = Some(decision());
        assert_eq!(ending(&s).unwrap().phase(), Phase::Cancelled);
        assert_eq!(ending(&s).unwrap().message(), "withdrawn by b@x.io");
    }

    #[test]
    fn static_validation() {
        let cfg = Config::from_yaml("excludedNamespaces: [kube-system]\nminTtlSeconds: 60\n", "t").unwrap();
        assert!(validate_static(&spec(), &cfg, true).is_ok());
        assert!(
            validate_static(&spec(), &cfg, false)
                .unwrap_err()
                .contains("unknown cluster")
        );
        let mut s = spec();
        s.namespaces = vec!["kube-system".into()];
        assert!(validate_static(&s, &cfg, true).unwrap_err().contains("excluded"));
        s.namespaces = vec!["k8s-janus".into()];
        assert!(
            validate_static(&s, &cfg, true).unwrap_err().contains("excluded"),
            "the Janus namespace always is"
        );
        let mut s = spec();
        s.ttl_seconds = 30;
        assert!(validate_static(&s, &cfg, true).unwrap_err().contains("outside"));
        s.ttl_seconds = 28801;
        assert!(validate_static(&s, &cfg, true).is_err());
        s.approval = Some(Approval {
            by: "b".into(),
            at: "t".into(),
            ttl_seconds: Some(600),
        });
        assert!(validate_static(&s, &cfg, true).is_ok(), "the approver's TTL counts");
        let mut s = spec();
        s.namespaces = vec!["a".into(), "a".into()];
        assert!(validate_static(&s, &cfg, true).is_err());
        let mut s = spec();
        for seconds in [0, 28801] {
            s.extensions = vec![Extension {
                by: "b".into(),
                at: "t".into(),
                seconds,
            }];
            assert!(
                validate_static(&s, &cfg, true).unwrap_err().contains("extension 0"),
                "{seconds}"
            );
        }
        s.extensions[0].seconds = 28800;
        assert!(validate_static(&s, &cfg, true).is_ok());
    }

    #[test]
    fn expiry_with_override_extensions_and_cap() {
        let cfg = Config::from_yaml("maxTtlSeconds: 7200\n", "t").unwrap();
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        let mut s = spec();
        assert_eq!(expires_at(&s, t0, &cfg), t0 + Duration::seconds(3600));
        s.approval = Some(Approval {
            by: "b".into(),
            at: "t".into(),
            ttl_seconds: Some(1800),
        });
        assert_eq!(expires_at(&s, t0, &cfg), t0 + Duration::seconds(1800));
        s.extensions.push(Extension {
            by: "b".into(),
            at: "t".into(),
            seconds: 3600,
        });
        assert_eq!(expires_at(&s, t0, &cfg), t0 + Duration::seconds(5400));
        s.extensions.push(Extension {
            by: "b".into(),
            at: "t".into(),
            seconds: 3600,
        });
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
        assert_eq!(
            token_renew_at(t0, t0 - Duration::seconds(5)),
            t0 - Duration::seconds(5),
            "a clock that ran backwards renews at the token's expiry, not after it"
        );
    }

    #[test]
    fn deadlines() {
        let cfg = Config::from_yaml("pendingExpirySeconds: 100\nretentionSeconds: 50\n", "t").unwrap();
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(pending_deadline(t0, &cfg), Some(t0 + Duration::seconds(100)));
        let st = AccessRequestStatus {
            ended_at: Some(fmt_time(t0)),
            ..Default::default()
        };
        assert_eq!(retention_deadline(&st, &cfg), Some(t0 + Duration::seconds(50)));
        let off = Config::from_yaml("pendingExpirySeconds: 0\nretentionSeconds: 0\n", "t").unwrap();
        assert_eq!(pending_deadline(t0, &off), None);
        assert_eq!(retention_deadline(&st, &off), None);
    }

    #[test]
    fn overdue_is_what_holds_credentials_it_should_not() {
        let cfg = Config::default();
        let now = parse_time("2026-01-01T12:00:00Z").unwrap();
        let mut s = spec();
        let mut st = AccessRequestStatus {
            phase: Phase::Active,
            active_at: Some("2026-01-01T10:00:00Z".into()),
            ..Default::default()
        };
        // Activated 2 h ago with a 1 h TTL.
        assert!(overdue(&s, Some(&st), false, &cfg, now));
        st.active_at = Some("2026-01-01T11:30:00Z".into());
        assert!(!overdue(&s, Some(&st), false, &cfg, now), "still within its TTL");
        assert!(overdue(&s, Some(&st), true, &cfg, now), "being deleted");
        s.revocation = Some(Revocation {
            by: "c".into(),
            at: "t".into(),
            reason: String::new(),
        });
        assert!(overdue(&s, Some(&st), false, &cfg, now), "revoked");
        st.phase = Phase::Pending;
        assert!(!overdue(&s, Some(&st), false, &cfg, now), "never granted");
        assert!(!overdue(&s, None, false, &cfg, now));
        st.phase = Phase::Revoked;
        assert!(overdue(&s, Some(&st), false, &cfg, now), "cleanup not confirmed");
        st.conditions.push(janus_api::Condition {
            type_: "CredentialsRemoved".into(),
            status: "True".into(),
            reason: "Removed".into(),
            message: String::new(),
            last_transition_time: "2026-01-01T11:59:00Z".into(),
        });
        assert!(!overdue(&s, Some(&st), false, &cfg, now));
    }
}
