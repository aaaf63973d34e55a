//! The shared state of the web process: configuration, Kubernetes clients, the request cache, the database.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use janus_api::AccessRequest;
use janus_api::config::Config;
use janus_kube::Clusters;
use janus_store::Store;
use kube::runtime::reflector;

use crate::auth::proxy::Cidr;
use crate::auth::{oidc::Oidc, ratelimit::LoginThrottle};
use crate::live::Hub;
use crate::metrics::WebMetrics;
use crate::terminal::Terminals;

/// Cheap-to-clone handle on everything a handler needs.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The state behind [`AppState`].
pub struct Inner {
    /// The configuration file.
    pub config: Arc<Config>,
    /// The central cluster with the web ServiceAccount's own identity.
    pub client: kube::Client,
    /// Clusters by name (remote ones through their kubeconfig Secrets).
    pub clusters: Arc<Clusters>,
    /// The database.
    pub store: Store,
    /// Buffered writer of the web's own audit events (survives database outages).
    pub audit: janus_store::writer::AuditWriter,
    /// All AccessRequests, kept current by a watch.
    pub requests: reflector::Store<AccessRequest>,
    /// Live-update fan-out to browsers.
    pub live: Hub,
    /// Key for derived secrets (CSRF tokens in proxy mode, OIDC state).
    pub session_key: Vec<u8>,
    /// Whether cookies get `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Peers whose identity headers are trusted (proxy mode).
    pub trusted_proxies: Vec<Cidr>,
    /// Time zone of displayed times.
    pub tz: chrono_tz::Tz,
    /// Prometheus metrics.
    pub metrics: WebMetrics,
    /// Failed logins per client address (this replica).
    pub login_limiter: LoginThrottle,
    /// Native OIDC, when configured.
    pub oidc: Option<Oidc>,
    /// Open terminal sessions of this replica.
    pub terminals: Terminals,
    /// This replica's name (pod name).
    pub replica: String,
    /// Whether the database answered the last check.
    pub db_ok: AtomicBool,
    /// Sessions read recently, standing in while the database cannot answer.
    pub recent_sessions: crate::auth::session::RecentSessions,
    /// Whether the request cache has synced.
    pub cache_ready: AtomicBool,
    /// Clusters registered by labelled kubeconfig Secrets (refreshed every few seconds), shared by every
    /// [`ClusterService`](crate::service::ClusterService).
    pub registered_clusters: Arc<crate::service::ClusterCache>,
    /// Proxy-mode refusals audited in the current interval, and those counted since.
    pub identity_refusals: std::sync::Mutex<crate::auth::proxy::RefusalLog>,
    /// Per-address and per-code bounds on the anonymous OIDC device-flow endpoints of the CLI.
    pub device_limits: crate::api::cli::DeviceLimits,
}

impl AppState {
    /// Whether an email is an admin by configuration (`adminEmails`) or by group (`adminGroups`).
    pub fn admin_by_config(&self, email: &str, groups: &[String]) -> bool {
        self.config.admin_emails.iter().any(|a| a.eq_ignore_ascii_case(email))
            || groups.iter().any(|g| {
                self.config.admin_groups.contains(g)
                    || self
                        .config
                        .web
                        .oidc
                        .as_ref()
                        .is_some_and(|o| o.admin_groups.contains(g))
            })
    }

    /// Every AccessRequest in the cache.
    pub fn all_requests(&self) -> Vec<Arc<AccessRequest>> {
        self.requests.state()
    }
}
