//! Starting the web process: the request watch, the router with its security headers, health and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use janus_api::AccessRequest;
use janus_api::config::{AuthMode, Config};
use janus_controller::clusters::Clusters;
use janus_store::Store;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};

use crate::auth::proxy::Cidr;
use crate::auth::ratelimit::LoginThrottle;
use crate::auth::{Optional, local, oidc};
use crate::live::{Change, Hub};
use crate::metrics::WebMetrics;
use crate::state::{AppState, Inner};
use crate::terminal::Terminals;
use crate::{api, assets, pages, requests, terminal, timefmt};

/// Why the web process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database is unreachable or its migrations failed.
    #[error("database: {0}")]
    Database(#[from] janus_store::StoreError),
    /// A configuration value is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The listen address cannot be bound.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// How to run the web process.
pub struct Options {
    /// Where the UI listens.
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served (also served on `listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// The database URL (overrides the configuration file's).
    pub database_url: Option<String>,
    /// The database password (`JANUS_DATABASE_PASSWORD`).
    pub database_password: Option<String>,
    /// Key for derived secrets (`JANUS_SESSION_KEY`); random when absent (sessions then survive only
    /// as long as the database rows, and proxy-mode CSRF tokens change on restart).
    pub session_key: Option<String>,
    /// Bootstrap admin username and password (`JANUS_BOOTSTRAP_ADMIN_*`).
    pub bootstrap_admin: Option<(String, String, String)>,
    /// This replica's name.
    pub replica: String,
    /// Central API server URL and CA, for building clients of the central cluster with request tokens.
    pub central_server: String,
    /// PEM CA of the central API server.
    pub central_ca_pem: String,
    /// Client secret of the OIDC client (`JANUS_OIDC_CLIENT_SECRET`), for `authMode: oidc`.
    pub oidc_client_secret: Option<String>,
}

/// Security headers on every response: a strict CSP without `unsafe-inline`, no framing, no sniffing.
async fn security_headers(req: axum::extract::Request, next: middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

async fn home(Optional(id): Optional) -> Redirect {
    match id {
        Some(id) if id.is_admin => Redirect::to("/admin"),
        Some(_) => Redirect::to("/requests"),
        None => Redirect::to("/login"),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let cache = state.cache_ready.load(Ordering::Relaxed);
    let db = state.db_ok.load(Ordering::Relaxed);
    match (cache, db) {
        (true, true) => "ready".into_response(),
        // Degraded: pages that need no database still work, so the replica stays in rotation.
        (true, false) => "ready (degraded: database unreachable)".into_response(),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "request cache not synced yet").into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// The health routes (also served on the metrics address).
fn health_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Every route of the web UI.
pub fn router(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(home))
        .route("/login", get(pages::login::show).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/oidc/login", get(oidc::start))
        .route("/oidc/callback", get(oidc::callback))
        .route("/oidc/logged-out", get(oidc::logged_out))
        .route("/requests/new", get(pages::requests::new_form))
        .route("/requests", get(pages::requests::mine).post(pages::requests::create))
        .route("/requests/{name}", get(pages::requests::detail))
        .route("/requests/{name}/{action}", post(pages::requests::decide))
        .route("/admin", get(pages::admin::dashboard))
        .route("/admin/users", get(pages::admin::users).post(pages::admin::create_user))
        .route("/admin/users/{username}/update", post(pages::admin::update_user))
        .route("/admin/users/{username}/delete", post(pages::admin::delete_user))
        .route("/audit", get(pages::audit::show))
        .route("/clusters", get(pages::clusters::show))
        .route("/terminal/{name}", get(pages::terminal::show))
        .route("/recordings/{id}", get(pages::terminal::replay));
    Router::new()
        .merge(pages)
        .merge(api::router())
        .merge(terminal::router())
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::authenticate))
        // Static files and health need no identity: no session lookup on these hot paths.
        .route("/assets/{*path}", get(assets::serve))
        .merge(health_router())
        .layer(DefaultBodyLimit::max(256 * 1024))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

fn decode_key(k: Option<String>) -> Vec<u8> {
    match k.filter(|k| k.len() >= 32) {
        Some(k) => k.into_bytes(),
        None => crate::auth::session::random_token().into_bytes(),
    }
}

/// Builds the state: database (migrated), the request watch, and everything handlers share.
pub async fn build_state(
    config: Config,
    client: kube::Client,
    opts: &Options,
) -> Result<(AppState, impl std::future::Future<Output = ()> + Send + 'static), StartError> {
    let config = Arc::new(config);
    let url = opts.database_url.clone().unwrap_or_else(|| config.database.url.clone());
    let store = Store::connect(&url, opts.database_password.as_deref()).await?;
    let tz = timefmt::parse_zone(&config.display_timezone).map_err(StartError::Config)?;
    let trusted = config
        .web
        .trusted_proxies
        .iter()
        .map(|c| Cidr::parse(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Config(format!("web.trustedProxies: {e}")))?;
    let oidc = match (config.web.auth_mode, &config.web.oidc) {
        (AuthMode::Oidc, Some(o)) => Some(
            oidc::Oidc::discover(o, &config.web.base_url, opts.oidc_client_secret.as_deref())
                .await
                .map_err(StartError::Config)?,
        ),
        _ => None,
    };
    let clusters = Arc::new(Clusters::new(
        config.clone(),
        client.clone(),
        opts.central_server.clone(),
        opts.central_ca_pem.clone(),
    ));
    let (reader, writer) = reflector::store::<AccessRequest>();
    let inner = Inner {
        secure_cookies: config.web.base_url.starts_with("https://"),
        config: config.clone(),
        client: client.clone(),
        clusters,
        audit: janus_store::writer::AuditWriter::spawn(store.clone(), 10_000),
        store,
        requests: reader,
        live: Hub::new(),
        session_key: decode_key(opts.session_key.clone()),
        trusted_proxies: trusted,
        tz,
        metrics: WebMetrics::new(),
        login_limiter: LoginThrottle::new(
            config.web.login_max_failures_per_address,
            Duration::from_secs(config.web.login_lockout_seconds.clamp(1, 86_400 * 365) as u64),
        ),
        oidc,
        terminals: Terminals::default(),
        replica: opts.replica.clone(),
        db_ok: AtomicBool::new(true),
        recent_sessions: Default::default(),
        cache_ready: AtomicBool::new(false),
        registered_clusters: Default::default(),
    };
    let state = AppState(Arc::new(inner));
    let watch = watch_requests(state.clone(), client, writer);
    Ok((state, watch))
}

/// Keeps the request cache current, publishes live updates and ends terminals of ended requests.
async fn watch_requests(state: AppState, client: kube::Client, writer: reflector::store::Writer<AccessRequest>) {
    {
        let api: Api<AccessRequest> = Api::all(client);
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => {
                    state.cache_ready.store(true, Ordering::Relaxed);
                    tracing::info!("request cache synced");
                }
                Ok(watcher::Event::Apply(ar) | watcher::Event::InitApply(ar)) => {
                    let name = ar.metadata.name.clone().unwrap_or_default();
                    let phase = requests::phase(&ar);
                    if let Some(reason) = terminal::end_reason(&ar) {
                        state.terminals.close_request(&name, reason);
                    }
                    state.live.publish(Change {
                        name,
                        requester: ar.spec.requester.clone(),
                        phase: format!("{phase:?}"),
                    });
                }
                Ok(watcher::Event::Delete(ar)) => {
                    let name = ar.metadata.name.clone().unwrap_or_default();
                    state.terminals.close_request(&name, "the request was deleted");
                    state.live.publish(Change {
                        name,
                        requester: ar.spec.requester.clone(),
                        phase: "Deleted".into(),
                    });
                }
                Ok(watcher::Event::Init) => {}
                Err(e) => tracing::warn!(error = %e, "request watch error; retrying"),
            }
        }
    }
}

/// Checks the database every few seconds, for `/readyz` and the metric.
async fn watch_database(state: AppState) {
    loop {
        let ok = state.store.ping().await.is_ok();
        if ok != state.db_ok.swap(ok, Ordering::Relaxed) {
            if ok {
                tracing::info!("database reachable again");
            } else {
                tracing::error!("database unreachable; serving what does not need it");
            }
        }
        state.metrics.database(ok);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Runs the web process until `shutdown` resolves.
pub async fn run(
    config: Config,
    client: kube::Client,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (state, watch) = build_state(config, client.clone(), &opts).await?;
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    serve(state, client, opts, listener, shutdown, watch).await
}

/// Serves a prepared state (used by `run` and by `janus demo`).
pub async fn serve(
    state: AppState,
    client: kube::Client,
    opts: Options,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    watch: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    if state.config.web.auth_mode == AuthMode::Local
        && let Some((user, email, password)) = &opts.bootstrap_admin
    {
        local::bootstrap_admin(&state, user, email, Some(password))
            .await
            .map_err(|e| StartError::Config(format!("bootstrap admin: {e}")))?;
    }
    let tasks = vec![
        tokio::spawn(watch),
        tokio::spawn(watch_database(state.clone())),
        tokio::spawn(
            janus_store::recorder::Recorder::new()
                .retention_seconds(state.config.retention_seconds)
                .run(client.clone(), state.store.clone(), std::future::pending::<()>()),
        ),
        tokio::spawn(janus_store::recorder::retention_loop(
            state.store.clone(),
            state.config.audit_retention_days,
            std::future::pending::<()>(),
        )),
        tokio::spawn(terminal::housekeeping(state.clone())),
    ];
    if let Some(addr) = opts.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
        let app = health_router().with_state(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    tracing::info!(addr = %listener.local_addr()?, "web UI listening");
    let app = router(state.clone());
    let closing = state.clone();
    let shutdown = async move {
        shutdown.await;
        // Long-lived streams would hold the graceful shutdown open forever: end them first.
        closing.terminals.close_all("the web server is shutting down");
        closing.live.close();
    };
    // Keystrokes are single bytes: Nagle's algorithm would hold them back.
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;
    for t in tasks {
        t.abort();
    }
    Ok(())
}
