//! Prometheus metrics of the web process: requests created, decisions, terminals, database health
//! and the build.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: String,
}

/// The web process's metrics.
pub struct WebMetrics {
    registry: Mutex<Registry>,
    created: Counter,
    decisions: Family<DecisionLabel, Counter>,
    terminals_open: Gauge,
    terminals_total: Counter,
    log_streams_open: Gauge,
    log_streams_total: Counter,
    database_up: Gauge,
}

impl Default for WebMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WebMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut root = Registry::with_prefix("janus");
        // The same `janus_build_info` series the controller exports (one definition in janus-api).
        janus_api::build::register_build_info(&mut root);
        let registry = root.sub_registry_with_prefix("web");
        let created = Counter::default();
        let decisions = Family::<DecisionLabel, Counter>::default();
        let terminals_open = Gauge::default();
        let terminals_total = Counter::default();
        let database_up = Gauge::default();
        let log_streams_open = Gauge::default();
        let log_streams_total = Counter::default();
        registry.register(
            "log_streams_open",
            "Container log streams open on this replica",
            log_streams_open.clone(),
        );
        registry.register("log_streams", "Container log streams opened", log_streams_total.clone());
        registry.register(
            "requests_created",
            "AccessRequests created through the web UI",
            created.clone(),
        );
        registry.register("decisions", "Decisions written, by kind", decisions.clone());
        registry.register(
            "terminal_sessions_open",
            "Terminal sessions open on this replica",
            terminals_open.clone(),
        );
        registry.register("terminal_sessions", "Terminal sessions opened", terminals_total.clone());
        registry.register(
            "database_up",
            "1 when the database answered the last check",
            database_up.clone(),
        );
        Self {
            registry: Mutex::new(root),
            created,
            decisions,
            terminals_open,
            terminals_total,
            log_streams_open,
            log_streams_total,
            database_up,
        }
    }

    /// A request was created.
    pub fn request_created(&self) {
        self.created.inc();
    }

    /// A decision was written.
    pub fn decision(&self, kind: &str) {
        self.decisions
            .get_or_create(&DecisionLabel { decision: kind.into() })
            .inc();
    }

    /// A terminal session opened.
    pub fn terminal_opened(&self) {
        self.terminals_total.inc();
        self.terminals_open.inc();
    }

    /// A terminal session closed.
    pub fn terminal_closed(&self) {
        self.terminals_open.dec();
    }

    /// A container log stream opened.
    pub fn log_stream_opened(&self) {
        self.log_streams_total.inc();
        self.log_streams_open.inc();
    }

    /// A container log stream closed.
    pub fn log_stream_closed(&self) {
        self.log_streams_open.dec();
    }

    /// Records the database health.
    pub fn database(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
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
    fn log_streams_have_their_own_gauge() {
        let m = WebMetrics::new();
        m.log_stream_opened();
        m.log_stream_opened();
        m.log_stream_closed();
        m.terminal_opened();
        let text = m.encode();
        assert!(text.contains("janus_web_log_streams_open 1"), "{text}");
        assert!(text.contains("janus_web_log_streams_total 2"), "{text}");
        assert!(text.contains("janus_web_terminal_sessions_open 1"), "{text}");
    }

    #[test]
    fn build_info_is_one_with_the_version() {
        let text = WebMetrics::new().encode();
        let want = format!(
            "janus_build_info{{version=\"{}\",revision=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            option_env!("JANUS_REVISION").unwrap_or("unknown")
        );
        assert!(text.contains(&want), "{want} missing in\n{text}");
        // The web's own metrics keep their `janus_web_` names under the shared root.
        assert!(text.contains("janus_web_database_up 0"), "{text}");
    }
}
