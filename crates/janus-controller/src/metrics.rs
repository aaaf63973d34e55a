//! Prometheus metrics of the controller: transitions by phase, grant latency, active grants, errors.

use std::sync::Mutex;
use std::time::Duration;

use janus_api::{AccessRequest, Phase};
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
struct ErrorLabel {
    kind: String,
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
        Self {
            registry: Mutex::new(registry),
            transitions,
            requests,
            active_grants,
            grant_seconds,
            errors,
            reconciles,
        }
    }

    /// Counts a transition.
    pub fn transition(&self, phase: Phase) {
        self.transitions
            .get_or_create(&PhaseLabel {
                phase: phase.to_string(),
            })
            .inc();
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
    pub fn observe_requests(&self, requests: &[std::sync::Arc<AccessRequest>]) {
        let mut counts = std::collections::BTreeMap::<String, i64>::new();
        for p in [
            Phase::Pending,
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
        for r in requests {
            let p = r.status.as_ref().map(|s| s.phase).unwrap_or_default();
            *counts.entry(p.to_string()).or_default() += 1;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_metric() {
        let m = Metrics::new();
        m.transition(Phase::Active);
        m.observe_grant(Duration::from_millis(3));
        m.reconcile_error("kube");
        m.observe_requests(&[]);
        let text = m.encode();
        for name in [
            "janus_phase_transitions_total{phase=\"Active\"} 1",
            "janus_grant_duration_seconds_count 1",
            "janus_reconcile_errors_total{kind=\"kube\"} 1",
            "janus_active_grants 0",
            "janus_requests{phase=\"Pending\"} 0",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
