//! Prometheus metrics of the web process: requests created, decisions, terminals, database health,
//! notification deliveries per sink and the build.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

/// Delivery latency buckets: from 50 ms (a local webhook) to about 14 min (a delivery that waited
/// through several backoffs before it went out).
fn delivery_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.05, 2.0, 15,
    ))
}

/// The per-sink notification delivery metrics (`janus_web_notification_*`, label `sink`).
struct NotificationMetrics {
    sent: Family<SinkLabel, Counter>,
    failed: Family<SinkLabel, Counter>,
    retrying: Family<SinkLabel, Counter>,
    dead: Family<SinkLabel, Counter>,
    latency: Family<SinkLabel, Histogram, fn() -> Histogram>,
}

impl NotificationMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            sent: Family::default(),
            failed: Family::default(),
            retrying: Family::default(),
            dead: Family::default(),
            latency: Family::new_with_constructor(delivery_histogram),
        };
        registry.register(
            "notification_sent",
            "Notification deliveries a sink accepted, by sink",
            m.sent.clone(),
        );
        registry.register(
            "notification_failed",
            "Notification delivery attempts that failed (each attempt counts), by sink",
            m.failed.clone(),
        );
        registry.register(
            "notification_retrying",
            "Failed notification deliveries scheduled for another attempt, by sink",
            m.retrying.clone(),
        );
        registry.register(
            "notification_dead_lettered",
            "Notification deliveries given up and dead-lettered, by sink",
            m.dead.clone(),
        );
        registry.register(
            "notification_delivery_seconds",
            "Time from the audit event to the sink accepting its notification, by sink",
            m.latency.clone(),
        );
        m
    }

    fn label(sink: &str) -> SinkLabel {
        SinkLabel { sink: sink.to_string() }
    }
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
    notifications: NotificationMetrics,
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
        let notifications = NotificationMetrics::register(registry);
        Self {
            registry: Mutex::new(root),
            created,
            decisions,
            terminals_open,
            terminals_total,
            log_streams_open,
            log_streams_total,
            database_up,
            notifications,
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

    /// A sink accepted a notification; `latency` runs from the audit event it tells of to the
    /// acceptance, so that time spent waiting in the outbox (backoff, an outage) shows.
    pub fn notification_sent(&self, sink: &str, latency: Duration) {
        let l = NotificationMetrics::label(sink);
        self.notifications.sent.get_or_create(&l).inc();
        self.notifications
            .latency
            .get_or_create(&l)
            .observe(latency.as_secs_f64());
    }

    /// One delivery attempt to a sink failed (whatever happens to the delivery next).
    pub fn notification_failed(&self, sink: &str) {
        self.notifications
            .failed
            .get_or_create(&NotificationMetrics::label(sink))
            .inc();
    }

    /// A failed delivery was scheduled for another attempt.
    pub fn notification_retrying(&self, sink: &str) {
        self.notifications
            .retrying
            .get_or_create(&NotificationMetrics::label(sink))
            .inc();
    }

    /// A delivery was given up (a 4xx answer, or the retry time ran out) and dead-lettered.
    pub fn notification_dead_lettered(&self, sink: &str) {
        self.notifications
            .dead
            .get_or_create(&NotificationMetrics::label(sink))
            .inc();
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
    fn notification_deliveries_are_counted_per_sink() {
        let m = WebMetrics::new();
        m.notification_sent("slack-ops", Duration::from_millis(120));
        m.notification_sent("slack-ops", Duration::from_secs(3));
        m.notification_failed("hook");
        m.notification_retrying("hook");
        m.notification_failed("hook");
        m.notification_dead_lettered("hook");
        let text = m.encode();
        assert!(
            text.contains("janus_web_notification_sent_total{sink=\"slack-ops\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("janus_web_notification_failed_total{sink=\"hook\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("janus_web_notification_retrying_total{sink=\"hook\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("janus_web_notification_dead_lettered_total{sink=\"hook\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("janus_web_notification_delivery_seconds_count{sink=\"slack-ops\"} 2"),
            "{text}"
        );
        // 0.12 s is in the 0.2 s bucket, 3 s is not.
        assert!(
            text.contains("janus_web_notification_delivery_seconds_bucket{le=\"0.2\",sink=\"slack-ops\"} 1"),
            "{text}"
        );
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
