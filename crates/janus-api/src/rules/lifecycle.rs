//! The phase machine: which human decision ends a request, static validation against the configuration,
//! and which requests may still hold credentials that should be gone.

use chrono::{DateTime, Utc};

use super::{conditions, time::parse_time, ttl};
use crate::config::Config;
use crate::{AccessRequest, AccessRequestSpec, AccessRequestStatus, Phase};

/// The phase of a request; no status yet means Pending.
pub fn phase_of(ar: &AccessRequest) -> Phase {
    ar.status.as_ref().map(|s| s.phase).unwrap_or(Phase::Pending)
}

/// A human decision that ends the request, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The requester withdrew it.
    Withdrawn {
        /// Who withdrew it.
        by: String,
    },
    /// An admin revoked it (or the idle timeout did).
    Revoked {
        /// Who revoked it.
        by: String,
        /// Why.
        reason: String,
    },
    /// An admin denied it. A denial wins over an approval written at the same time.
    Denied {
        /// Who denied it.
        by: String,
        /// Why.
        reason: String,
    },
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

/// Whether no decision that ends the request has been written: no denial, withdrawal or revocation.
///
/// Approvals do not end the deciding: under a quorum a request with one of two approvals is still
/// pending and may still be approved or denied. Whether any approval exists is [`has_approvals`];
/// whether they suffice is the policy's ([`crate::rules::policy::evaluate`]).
pub fn undecided(spec: &AccessRequestSpec) -> bool {
    spec.denial.is_none() && spec.withdrawal.is_none() && spec.revocation.is_none()
}

/// Whether any approval was written: `spec.approval` (older clients) or an entry of `spec.approvals`.
pub fn has_approvals(spec: &AccessRequestSpec) -> bool {
    spec.approval.is_some() || !spec.approvals.is_empty()
}

/// Checks what can be checked without a cluster against the configuration as it is now. `Err` is the
/// message. The controller applies it on every reconcile of a live request, so it holds whoever wrote
/// the spec and whenever: excluded namespaces are never granted, the cluster is known, the TTL in effect
/// is within bounds, and each extension is as long as the web allows. (Extensions that together pass
/// `maxTtlSeconds` are not an error: [`ttl::expires_at`] caps them.)
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
    let effective = ttl::effective_ttl(spec);
    if let Err(e) = ttl::check_ttl(effective, config) {
        return Err(format!(
            "TTL of {}s is outside the allowed range [{}s, {}s]",
            e.ttl, e.min, e.max
        ));
    }
    for (i, ext) in spec.extensions.iter().enumerate() {
        if let Err(e) = ttl::check_extension(ext.seconds, config) {
            return Err(format!(
                "extension {i} of {}s is outside the allowed range [1s, {}s]",
                e.ttl, e.max
            ));
        }
    }
    Ok(())
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
        return !conditions::credentials_removed(st);
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
            .is_some_and(|a| ttl::expires_at(spec, a, config) <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::time::parse_time;
    use crate::{Approval, Decision, Denial, Extension, Revocation};

    fn spec() -> AccessRequestSpec {
        AccessRequestSpec::new("a@x.io", "central", vec!["apps".into()], "debug", 3600)
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
        st.conditions.push(crate::Condition {
            type_: conditions::types::CREDENTIALS_REMOVED.into(),
            status: "True".into(),
            reason: "Removed".into(),
            message: String::new(),
            last_transition_time: "2026-01-01T11:59:00Z".into(),
        });
        assert!(!overdue(&s, Some(&st), false, &cfg, now));
    }

    #[test]
    fn approvals_do_not_end_the_deciding() {
        let mut s = spec();
        assert!(undecided(&s) && !has_approvals(&s));
        s.approvals.push(crate::ApprovalEntry {
            by: "b@x.io".into(),
            at: "t".into(),
            ttl_seconds: None,
            comment: String::new(),
            groups: vec![],
        });
        assert!(undecided(&s), "one of two approvals: still open to approval and denial");
        assert!(has_approvals(&s));
        let mut legacy = spec();
        legacy.approval = Some(Approval {
            by: "b".into(),
            at: "t".into(),
            ttl_seconds: None,
        });
        assert!(undecided(&legacy) && has_approvals(&legacy));
        s.withdrawal = Some(decision());
        assert!(!undecided(&s));
        let mut d = spec();
        d.denial = Some(Denial {
            by: "c".into(),
            at: "t".into(),
            reason: String::new(),
        });
        assert!(!undecided(&d));
    }
}
