//! Prometheus metrics of the controller: transitions by phase, grant latency, active grants, errors,
//! reconcile durations, leadership, pending cleanups, pod scope watches and the build.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cached_request::CachedRequest;
use janus_api::Phase;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabel {
    via: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Reconcile duration buckets: 1 ms .. ~65 s (a reconcile is bounded well below that, and remote
/// clusters can take seconds).
fn reconcile_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

/// Outcome label of a finished reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The reconcile returned an action.
    Ok,
    /// The reconcile returned an error (counted by kind in `janus_reconcile_errors_total`).
    Error,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    transitions: Family<PhaseLabel, Counter>,
    requests: Family<PhaseLabel, Gauge>,
    active_grants: Gauge,
    grant_seconds: Histogram,
    errors: Family<ErrorLabel, Counter>,
    reconciles: Counter,
    reconcile_seconds: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    is_leader: Gauge,
    cleanup_pending: Gauge,
    approvals: Family<ViaLabel, Counter>,
    scope_watches: Gauge,
    scope_role_updates: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("janus");
        let transitions = Family::<PhaseLabel, Counter>::default();
        let requests = Family::<PhaseLabel, Gauge>::default();
        let active_grants = Gauge::default();
        // 1 ms .. ~33 s: grants are expected in milliseconds, remote clusters can take seconds.
        let grant_seconds = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.001, 2.0, 16,
        ));
        let errors = Family::<ErrorLabel, Counter>::default();
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconcile calls", reconciles.clone());
        registry.register(
            "phase_transitions",
            "AccessRequest phase transitions made by this controller",
            transitions.clone(),
        );
        registry.register("requests", "AccessRequests by phase", requests.clone());
        registry.register("active_grants", "Requests currently Active", active_grants.clone());
        registry.register(
            "grant_duration_seconds",
            "Time from approval observed to credentials active",
            grant_seconds.clone(),
        );
        registry.register("reconcile_errors", "Failed reconciles by error kind", errors.clone());
        let reconcile_seconds: Family<OutcomeLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register(
            "controller_reconcile_duration_seconds",
            "Duration of one reconcile of an AccessRequest, by outcome (ok or error)",
            reconcile_seconds.clone(),
        );
        let is_leader = Gauge::default();
        registry.register(
            "controller_is_leader",
            "1 while this replica acts (holds the leader Lease, or runs without leader election)",
            is_leader.clone(),
        );
        let cleanup_pending = Gauge::default();
        registry.register(
            "controller_cleanup_pending",
            "Requests whose credentials are not yet removed (condition CredentialsRemoved=False)",
            cleanup_pending.clone(),
        );
        let approvals = Family::<ViaLabel, Counter>::default();
        registry.register(
            "requests_approved",
            "Requests approved by this controller, by how: quorum, auto (auto-approval) or break_glass",
            approvals.clone(),
        );
        let scope_watches = Gauge::default();
        registry.register(
            "controller_scope_watches",
            "Pod watches running for active pod-scoped grants (one per request and namespace)",
            scope_watches.clone(),
        );
        let scope_role_updates = Counter::default();
        registry.register(
            "controller_scope_role_updates",
            "Replaces of a pod-scoped grant's Role by its pod watch (a pod started or stopped matching)",
            scope_role_updates.clone(),
        );
        // The same `janus_build_info` series the web exports (one definition in janus-api).
        janus_api::build::register_build_info(&mut registry);
        Self {
            registry: Mutex::new(registry),
            transitions,
            requests,
            active_grants,
            grant_seconds,
            errors,
            reconciles,
            reconcile_seconds,
            is_leader,
            cleanup_pending,
            approvals,
            scope_watches,
            scope_role_updates,
        }
    }

    /// Counts one running pod scope watch until the returned guard is dropped. The guard lives in the
    /// watch task's future, so the count falls when the task returns, panics or is aborted, not only
    /// when the controller next looks at it.
    pub fn scope_watch_running(self: &Arc<Self>) -> ScopeWatchRunning {
        self.scope_watches.inc();
        ScopeWatchRunning(self.clone())
    }

    /// Counts a Role update made by a pod scope watch.
    pub fn scope_role_updated(&self) {
        self.scope_role_updates.inc();
    }

    /// Records how long one reconcile took.
    pub fn observe_reconcile(&self, d: Duration, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        };
        self.reconcile_seconds
            .get_or_create(&OutcomeLabel { outcome })
            .observe(d.as_secs_f64());
    }

    /// Whether this replica acts (leader, or no leader election).
    pub fn set_leader(&self, acting: bool) {
        self.is_leader.set(i64::from(acting));
    }

    /// Marks this replica as acting until the returned guard is dropped.
    pub fn leader_term(self: &Arc<Self>) -> LeaderTerm {
        self.set_leader(true);
        LeaderTerm(self.clone())
    }

    /// Counts a transition.
    pub fn transition(&self, phase: Phase) {
        self.transitions
            .get_or_create(&PhaseLabel {
                phase: phase.to_string(),
            })
            .inc();
    }

    /// Counts an approval by how it came about (`quorum`, `auto`, `break_glass`).
    pub fn approved(&self, via: &'static str) {
        self.approvals.get_or_create(&ViaLabel { via }).inc();
    }

    /// Records a grant's latency.
    pub fn observe_grant(&self, d: Duration) {
        self.grant_seconds.observe(d.as_secs_f64());
    }

    /// Counts a reconcile call.
    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    /// Reconcile calls so far.
    pub fn reconcile_count(&self) -> u64 {
        self.reconciles.get()
    }

    /// Counts a failed reconcile.
    pub fn reconcile_error(&self, kind: &str) {
        self.errors.get_or_create(&ErrorLabel { kind: kind.into() }).inc();
    }

    /// Sets the per-phase gauges from the controller's cache of requests.
    pub fn observe_requests(&self, requests: &[std::sync::Arc<CachedRequest>]) {
        let mut counts = std::collections::BTreeMap::<String, i64>::new();
        for p in [
            Phase::Pending,
            Phase::Scheduled,
            Phase::Approved,
            Phase::Active,
            Phase::Expired,
            Phase::Denied,
            Phase::Revoked,
            Phase::Cancelled,
            Phase::Failed,
        ] {
            counts.insert(p.to_string(), 0);
        }
        let mut cleanup_pending = 0;
        for r in requests {
            let p = r.status.as_ref().map(|s| s.phase).unwrap_or_default();
            *counts.entry(p.to_string()).or_default() += 1;
            if r.status.as_ref().is_some_and(|s| s.credentials.pending) {
                cleanup_pending += 1;
            }
        }
        self.cleanup_pending.set(cleanup_pending);
        self.active_grants.set(counts.get("Active").copied().unwrap_or(0));
        for (phase, n) in counts {
            self.requests.get_or_create(&PhaseLabel { phase }).set(n);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}

/// `janus_controller_is_leader` is 1 while this lives. A term can end by cancellation (the acting
/// future is dropped the moment leadership is lost), so the reset is in `Drop` rather than after the
/// controller loop.
#[must_use = "the replica counts as acting only while the term is held"]
pub struct LeaderTerm(Arc<Metrics>);

impl Drop for LeaderTerm {
    fn drop(&mut self) {
        self.0.set_leader(false);
    }
}

/// One running pod scope watch, counted in `janus_controller_scope_watches` while it exists.
#[derive(Debug)]
pub struct ScopeWatchRunning(Arc<Metrics>);

impl Drop for ScopeWatchRunning {
    fn drop(&mut self) {
        self.0.scope_watches.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_metric() {
        let m = Metrics::new();
        m.transition(Phase::Active);
        m.observe_grant(Duration::from_millis(3));
        m.reconcile_error("kube");
        m.approved("break_glass");
        m.observe_requests(&[]);
        let text = m.encode();
        for name in [
            "janus_phase_transitions_total{phase=\"Active\"} 1",
            "janus_grant_duration_seconds_count 1",
            "janus_reconcile_errors_total{kind=\"kube\"} 1",
            "janus_active_grants 0",
            "janus_requests{phase=\"Pending\"} 0",
            "janus_requests{phase=\"Scheduled\"} 0",
            "janus_requests_approved_total{via=\"break_glass\"} 1",
            "janus_controller_is_leader 0",
            "janus_controller_cleanup_pending 0",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[tokio::test]
    async fn the_leader_gauge_resets_when_a_term_is_cancelled() {
        let m = Arc::new(Metrics::new());
        let leader = |m: &Metrics| m.encode().lines().any(|l| l == "janus_controller_is_leader 1");
        // As in `run_with_timings`: the acting future is dropped when leadership is lost.
        let acting = {
            let m = m.clone();
            async move {
                let _term = m.leader_term();
                std::future::pending::<()>().await;
            }
        };
        let mut acting = Box::pin(acting);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut acting)
                .await
                .is_err(),
            "never ends by itself"
        );
        assert!(leader(&m));
        drop(acting);
        assert!(!leader(&m), "still reported as leader after the term was dropped");
    }

    #[test]
    fn counts_requests_whose_credentials_are_not_removed() {
        let req = |name: &str, removed: Option<&str>| {
            let conditions = match removed {
                Some(s) => serde_json::json!([{"type": "CredentialsRemoved", "status": s, "reason": "x",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]),
                None => serde_json::json!([]),
            };
            let ar: CachedRequest = serde_json::from_value(serde_json::json!({
                "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
                "metadata": {"name": name},
                "spec": {"requester": "a@x.io", "cluster": "central", "namespaces": ["a"], "reason": "r", "ttlSeconds": 600},
                "status": {"phase": "Revoked", "conditions": conditions},
            }))
            .unwrap();
            std::sync::Arc::new(ar)
        };
        let m = Metrics::new();
        m.observe_requests(&[req("a", Some("False")), req("b", Some("True")), req("c", None)]);
        assert!(
            m.encode().contains("janus_controller_cleanup_pending 1"),
            "{}",
            m.encode()
        );
        m.observe_requests(&[req("b", Some("True"))]);
        assert!(m.encode().contains("janus_controller_cleanup_pending 0"));
    }

    #[test]
    fn reconcile_durations_by_outcome_and_build_info() {
        let m = Metrics::new();
        m.observe_reconcile(Duration::from_millis(2), Outcome::Ok);
        m.observe_reconcile(Duration::from_millis(2), Outcome::Ok);
        m.observe_reconcile(Duration::from_secs(1), Outcome::Error);
        m.set_leader(true);
        let text = m.encode();
        for name in [
            "janus_controller_reconcile_duration_seconds_count{outcome=\"ok\"} 2",
            "janus_controller_reconcile_duration_seconds_count{outcome=\"error\"} 1",
            "janus_controller_is_leader 1",
            "janus_build_info{version=\"",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
