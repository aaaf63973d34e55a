//! `janus web`: flags and environment of the web process.

use std::net::SocketAddr;
use std::path::PathBuf;

use janus_api::config::Config;

/// Flags of `janus web`.
#[derive(clap::Args)]
pub struct WebArgs {
    /// Configuration file (the chart's ConfigMap).
    #[arg(long, env = "JANUS_CONFIG")]
    pub config: PathBuf,
    /// Kubeconfig of the central cluster (default: in-cluster ServiceAccount, then $KUBECONFIG).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Address of the web UI.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Serve /metrics on this address (and only here: the UI address has no /metrics), with /healthz and
    /// /readyz, which the UI address serves too.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Also serve /api/v1 and /ws here to `Authorization: Bearer janus_…` API tokens only (no cookies,
    /// no proxy headers): the CLI's address in proxy mode, where the proxy in front of --listen wants
    /// its own login. Overrides `web.bearerListen` of the configuration. Off by default.
    #[arg(long, env = "JANUS_BEARER_LISTEN")]
    pub bearer_listen: Option<SocketAddr>,
    /// Database URL, overriding `database.url` of the configuration (the password always comes from
    /// JANUS_DATABASE_PASSWORD).
    #[arg(long, env = "JANUS_DATABASE_URL")]
    pub database_url: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The delivery outcomes, counted in the web's `janus_web_notification_*` metrics.
struct DeliveryMetrics(janus_web::AppState);

impl janus_notify::DeliveryObserver for DeliveryMetrics {
    fn sent(&self, sink: &str, latency: std::time::Duration) {
        self.0.metrics.notification_sent(sink, latency);
    }
    fn failed(&self, sink: &str) {
        self.0.metrics.notification_failed(sink);
    }
    fn retrying(&self, sink: &str) {
        self.0.metrics.notification_retrying(sink);
    }
    fn dead_lettered(&self, sink: &str) {
        self.0.metrics.notification_dead_lettered(sink);
    }
}

/// Runs the web process until `shutdown`.
pub async fn run(
    args: WebArgs,
    client: kube::Client,
    server: String,
    ca: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut cfg = Config::load(&args.config)?;
    if let Some(addr) = args.bearer_listen {
        cfg.web.bearer_listen = Some(addr);
    }
    // Notification sinks: every secret they name must be in the environment, and their URLs valid, or
    // the web does not start (the error names the key and the variable, never a value).
    let resolved = janus_api::notifications::resolve(&cfg.notifications, &|k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    if !cfg.notifications.is_empty() && cfg.web.base_url.trim().is_empty() {
        tracing::warn!("web.baseUrl is empty: notifications say where to go in the web UI instead of linking");
    }
    let replica = env("JANUS_POD_NAME")
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| format!("janus-web-{}", std::process::id()));
    let sinks = janus_notify::build(&resolved, &replica).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let delivery_opts = janus_notify::DeliveryOptions::from_config(&cfg, &replica);
    let delivery_cfg = std::sync::Arc::new(cfg.clone());
    let bootstrap = env("JANUS_BOOTSTRAP_ADMIN_PASSWORD").map(|p| {
        (
            env("JANUS_BOOTSTRAP_ADMIN_USERNAME").unwrap_or_else(|| "admin".into()),
            env("JANUS_BOOTSTRAP_ADMIN_EMAIL").unwrap_or_else(|| "admin@k8s-janus.local".into()),
            p,
        )
    });
    let opts = janus_web::Options {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        database_url: args.database_url,
        database_password: env("JANUS_DATABASE_PASSWORD"),
        session_key: env("JANUS_SESSION_KEY"),
        bootstrap_admin: bootstrap,
        replica,
        central_server: server,
        central_ca_pem: ca,
        oidc_client_secret: env("JANUS_OIDC_CLIENT_SECRET"),
    };
    // Every replica runs the notification delivery on the web's store: claims make each delivery go
    // out once. It stops with the web (a send in flight is finished and committed first).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    janus_web::run_with(cfg, client, opts, shutdown, move |state| {
        janus_notify::Delivery::new(state.store.clone(), delivery_cfg, sinks, delivery_opts)
            .with_observer(std::sync::Arc::new(DeliveryMetrics(state)))
            .run(stopped)
    })
    .await?;
    Ok(())
}
