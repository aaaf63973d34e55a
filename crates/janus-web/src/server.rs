//! Starting the web process: the request watch, the router with its tower-http layers (request ids,
//! tracing, security headers, the request timeout), health and metrics.

mod bearer_only;
mod conn;

pub use conn::Limits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use janus_api::AccessRequest;
use janus_api::config::{AuthMode, Config};
use janus_kube::Clusters;
use janus_store::Store;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::proxy::Cidr;
use crate::auth::ratelimit::LoginThrottle;
use crate::auth::{Optional, local, oidc, session};
use crate::error::WebError;
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
    /// Where `/healthz`, `/readyz` and `/metrics` are served. `/metrics` is served only here, never on
    /// `listen` (it would be public there); the health routes are on both.
    pub metrics_listen: Option<SocketAddr>,
    /// The database URL (overrides the configuration file's).
    pub database_url: Option<String>,
    /// The database password (`JANUS_DATABASE_PASSWORD`).
    pub database_password: Option<String>,
    /// Key for derived secrets (`JANUS_SESSION_KEY`), at least [`MIN_SESSION_KEY_BYTES`] bytes; a shorter
    /// one is refused. When absent a random per-process key is used (OIDC logins in progress and
    /// proxy-mode CSRF tokens then do not survive a restart and differ between replicas), which is
    /// refused with PostgreSQL, the database of multi-replica installations.
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

/// Shortest `JANUS_SESSION_KEY` accepted: 256 bits, the HMAC-SHA256 key size.
pub const MIN_SESSION_KEY_BYTES: usize = 32;

/// `Strict-Transport-Security` when the public URL is https: a year, this host only. Not
/// `includeSubDomains`: served from an apex domain (`https://example.com`), that would pin every
/// subdomain of the organisation to https, which is not Janus's decision to make.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// The strict content security policy: no `unsafe-inline`, nothing from elsewhere, no framing.
const CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
);

/// Security headers on every response (tower-http `SetResponseHeaderLayer`): the CSP, no framing, no
/// sniffing, same-origin referrers always; `Cache-Control: no-store` unless the handler chose one (the
/// static assets do).
fn security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(
        ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, CSP))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("DENY"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            )),
    )
}

/// The request-id header: taken from a trusted proxy in front (`web.trustedProxies`) when it is
/// plausible, else a fresh UUID; echoed on the response and carried by every log line of the request.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest incoming request id kept; longer ones are replaced (they would bloat every log line).
const MAX_REQUEST_ID: usize = 64;

/// Whether an incoming request id may be kept: short, and only characters that cannot break a log
/// line, a header or HTML (UUIDs, ULIDs, proxies' hex and base64 ids all fit).
fn acceptable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:+/=@".contains(c))
}

/// Drops an incoming request id unless a trusted proxy sent it and it is acceptable, so
/// `SetRequestIdLayer` replaces it with a UUID. Any client could otherwise choose the id its requests
/// are logged under (and make them look like, or collide with, someone else's); the same trust rule as
/// the client address ([`crate::auth::client_ip`]): only the configured proxies speak for a request.
async fn screen_request_id(State(state): State<AppState>, mut req: axum::extract::Request) -> axum::extract::Request {
    let trusted_peer =
        crate::auth::peer_ip(req.extensions()).is_some_and(|ip| state.trusted_proxies.iter().any(|c| c.contains(ip)));
    let ok = trusted_peer && {
        let mut ids = req.headers().get_all(&REQUEST_ID).iter();
        matches!((ids.next(), ids.next()), (Some(v), None) if acceptable_request_id(v))
    };
    if !ok {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// Request ids and the request span (outermost, so everything inside logs under the span): the span
/// carries the id, the method and the path, never the query string (it can hold secrets such as the
/// OIDC `code`); the response is logged with its status and latency at debug level (failures at warn).
fn request_ids_and_tracing(router: Router, state: AppState) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::map_request_with_state(state, screen_request_id))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request<axum::body::Body>| {
                        let id = req
                            .headers()
                            .get(&REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
                    })
                    .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                    .on_failure(DefaultOnFailure::new().level(Level::WARN)),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
    )
}

/// Paths that change state although they are answered to `GET`: the OIDC callback creates the session
/// and records `LoginSucceeded`.
const STATE_CHANGING_GETS: &[&str] = &["/oidc/callback"];

/// Whether `web.requestTimeoutSeconds` may cut this request: only reads. Dropping a handler is safe
/// only where it changes nothing; a write cut at an await may already have committed in the database
/// or the API server while the audit event that follows it is never recorded. Writes are bounded
/// elsewhere: Kubernetes calls by the clients' connect/read/write timeouts (`janus_kube`'s
/// `bounded_client`, 10/30/30 s), database calls by the pool's acquire timeout (5 s) and, on SQLite,
/// the busy timeout (10 s). A PostgreSQL statement, once sent, has no bound of its own (no
/// `statement_timeout` is set): a write held up by a lock waits for it.
fn under_request_timeout(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD) && !STATE_CHANGING_GETS.contains(&path)
}

/// `web.requestTimeoutSeconds` on reads ([`under_request_timeout`]): a read that outlives it is
/// answered 503 (the JSON error under `/api/`, the error page elsewhere: the server, not the client,
/// was too slow).
async fn request_timeout(
    State(timeout): State<Duration>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if !under_request_timeout(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(path = %path, "request timed out");
            let e = WebError::Unavailable("the server took too long to answer; try again shortly".into());
            if path.starts_with("/api/") {
                e.into_response()
            } else {
                pages::PageError(e).into_response()
            }
        }
    }
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

/// The health routes, served on the UI and the metrics address.
fn health_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// What the metrics address serves: health and `/metrics`, which is never on the UI address (there it
/// would tell anyone the activity of the installation).
pub fn metrics_router(state: AppState) -> Router {
    security_headers(health_router().route("/metrics", get(metrics))).with_state(state)
}

/// Every route of the web UI.
pub fn router(state: AppState) -> Router {
    let hsts = session::hsts(&state.config.web.base_url);
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
        .route("/admin/notifications", get(pages::notifications::show))
        .route("/admin/notifications/{id}/retry", post(pages::notifications::retry))
        .route("/audit", get(pages::audit::show))
        .route("/clusters", get(pages::clusters::show))
        .route("/tokens", get(pages::tokens::show).post(pages::tokens::create))
        .route("/tokens/{display_id}/revoke", post(pages::tokens::revoke))
        .route("/terminal/{name}", get(pages::terminal::show))
        .route("/recordings/{id}", get(pages::terminal::replay));
    let timeout = Duration::from_secs(state.config.web.request_timeout_seconds.max(1));
    let authenticate = middleware::from_fn_with_state(state.clone(), crate::auth::authenticate);
    // Ordinary reads must answer within the request timeout (outside authentication, whose session
    // lookup can be what hangs); writes are not cut ([`under_request_timeout`]). The terminal routes
    // (WebSockets, followed logs), the live-update stream and the audit export (built whole, so a large
    // log or a slow database takes long) live as long as they are needed, so they get no such bound.
    let ordinary = Router::new()
        .merge(pages)
        .merge(api::router())
        .layer(authenticate.clone())
        .layer(middleware::from_fn_with_state(timeout, request_timeout));
    let long_lived = long_lived_routes().layer(authenticate);
    let app = Router::new()
        .merge(ordinary)
        .merge(long_lived)
        // Static files and health need no identity: no session lookup on these hot paths.
        .route("/assets/{*path}", get(assets::serve))
        .merge(health_router())
        .layer(DefaultBodyLimit::max(256 * 1024));
    finish(app, state, hsts)
}

/// The routes that live as long as they are needed (no request timeout): the live-update stream, the
/// audit export, the terminal socket and followed logs.
fn long_lived_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(crate::live::events))
        .route("/api/v1/audit/export", get(api::audit::export))
        .merge(terminal::router())
}

/// The routes of the bearer-only listener (`web.bearerListen`, [`bearer_only`]): the main address's
/// JSON API and terminal socket with the same timeouts, body limit, security headers and request ids,
/// authenticated by a `janus_…` bearer credential only; every other path is 404.
pub fn bearer_router(state: AppState) -> Router {
    let hsts = session::hsts(&state.config.web.base_url);
    let timeout = Duration::from_secs(state.config.web.request_timeout_seconds.max(1));
    let authenticate = middleware::from_fn_with_state(state.clone(), bearer_only::authenticate);
    let ordinary = api::router()
        .layer(authenticate.clone())
        .layer(middleware::from_fn_with_state(timeout, request_timeout));
    let long_lived = long_lived_routes().layer(authenticate);
    let app = Router::new()
        .merge(ordinary)
        .merge(long_lived)
        .fallback(bearer_only::not_found)
        // A route of the API that is not under /api/v1 or /ws (none today) stays off this address.
        .layer(middleware::from_fn(only_bearer_paths))
        .layer(DefaultBodyLimit::max(256 * 1024));
    finish(app, state, hsts)
}

/// 404 for any path the bearer-only listener does not serve, before any route or credential check.
async fn only_bearer_paths(req: axum::extract::Request, next: middleware::Next) -> Response {
    if bearer_only::served(req.uri().path()) {
        next.run(req).await
    } else {
        bearer_only::not_found().await
    }
}

/// The layers every address's router ends with: security headers, HSTS where the public URL is
/// https, request ids and the request span.
fn finish(app: Router<AppState>, state: AppState, hsts: bool) -> Router {
    let app = security_headers(app);
    // Only an https public URL may pin browsers to https; on plain http the header would be ignored or,
    // worse, lock out a demo on localhost.
    let app = if hsts {
        app.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HSTS,
        ))
    } else {
        app
    };
    request_ids_and_tracing(app.with_state(state.clone()), state)
}

/// The key for derived secrets: `JANUS_SESSION_KEY` when it is long enough, a random one only where
/// a single process can be involved. Never puts the key itself in an error.
fn session_key(key: Option<&str>, database_url: &str, listen: SocketAddr) -> Result<Vec<u8>, StartError> {
    match key {
        Some(k) if k.len() >= MIN_SESSION_KEY_BYTES => Ok(k.as_bytes().to_vec()),
        Some(k) => Err(StartError::Config(format!(
            "JANUS_SESSION_KEY is {} bytes long; it must be at least {MIN_SESSION_KEY_BYTES} random bytes \
             (e.g. `openssl rand -base64 48`) and the same on every replica",
            k.len()
        ))),
        None if database_url.trim_start().to_ascii_lowercase().starts_with("postgres") => Err(StartError::Config(
            "JANUS_SESSION_KEY is not set: it is required with PostgreSQL, where replicas share sessions and \
             must share the key (at least 32 random bytes, e.g. `openssl rand -base64 48`)"
                .into(),
        )),
        None => {
            // A local run (the demo) is one process by construction; anything else is worth a warning.
            if !listen.ip().is_loopback() {
                tracing::warn!(
                    "JANUS_SESSION_KEY is not set: using a random key for this process; OIDC logins in progress \
                     and proxy-mode CSRF tokens do not survive a restart, and a second replica would not accept them"
                );
            }
            Ok(session::random_token().into_bytes())
        }
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
    // Checked before anything connects: a bad key must stop the start, not surface later as logouts.
    let session_key = session_key(opts.session_key.as_deref(), &url, opts.listen)?;
    let secure_cookies = session::secure_cookies(&config.web.base_url, opts.listen);
    if secure_cookies && config.web.base_url.trim().starts_with("http://") {
        tracing::warn!(
            base_url = %config.web.base_url,
            "web.baseUrl is plain http on a host that is not loopback: cookies are sent with Secure, so \
             browsers only keep them over https; serve the UI over https"
        );
    }
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
        secure_cookies,
        config: config.clone(),
        client: client.clone(),
        clusters,
        audit: janus_store::writer::AuditWriter::spawn(store.clone(), 10_000),
        store,
        requests: reader,
        live: Hub::new(),
        session_key,
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
        identity_refusals: Default::default(),
        device_limits: Default::default(),
    };
    let state = AppState(Arc::new(inner));
    let watch = watch_requests(state.clone(), client, writer);
    Ok((state, watch))
}

/// Keeps the request cache current, publishes live updates and ends terminals of ended requests.
async fn watch_requests(state: AppState, client: kube::Client, writer: reflector::store::Writer<AccessRequest>) {
    {
        // Live updates are judged on namespace metadata listed in the background (stops with the watch).
        let (refresher, _stop_refresh) = crate::live_refresh::start(state.clone());
        let clusters = <crate::service::ClusterService as axum::extract::FromRef<AppState>>::from_ref(&state);
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
                    let ar = Arc::new(ar);
                    state.live.publish(Change {
                        name,
                        request: ar.clone(),
                        phase: format!("{phase:?}"),
                    });
                    refresher.after_change(&clusters, &ar);
                }
                Ok(watcher::Event::Delete(ar)) => {
                    let name = ar.metadata.name.clone().unwrap_or_default();
                    state.terminals.close_request(&name, "the request was deleted");
                    state.live.publish(Change {
                        name,
                        request: Arc::new(ar),
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

/// How long a background task of [`run_with`] may take to finish after the server stopped.
const BACKGROUND_GRACE: Duration = Duration::from_secs(15);

/// [`run`], with `background` started on the web's state (its store and metrics) once the store is
/// connected (`janus web` runs the notification delivery so). The task is told to stop by its own means
/// (it should watch the same shutdown); after the server stopped it gets [`BACKGROUND_GRACE`] to
/// finish, then it is aborted.
pub async fn run_with<B, F>(
    config: Config,
    client: kube::Client,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    background: B,
) -> Result<(), StartError>
where
    B: FnOnce(AppState) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (state, watch) = build_state(config, client.clone(), &opts).await?;
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let mut task = tokio::spawn(background(state.clone()));
    let served = serve(state, client, opts, listener, shutdown, watch).await;
    if tokio::time::timeout(BACKGROUND_GRACE, &mut task).await.is_err() {
        tracing::warn!("a background task did not stop in time; aborted");
        task.abort();
    }
    served
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
    let limits = Limits::from_config(&state.config.web);
    let (bearer_stop, _) = tokio::sync::watch::channel(false);
    let mut bearer_task = None;
    if let Some(addr) = opts.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
        let app = metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = conn::serve(listener, app, limits, std::future::pending::<()>()).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    tracing::info!(
        addr = %listener.local_addr()?,
        max_connections = limits.max_connections,
        header_read_timeout_seconds = limits.header_read_timeout.as_secs(),
        idle_connection_timeout_seconds = limits.idle_timeout.as_secs(),
        write_stall_timeout_seconds = limits.write_stall_timeout.as_secs(),
        request_body_timeout_seconds = limits.request_body_timeout.as_secs(),
        "web UI listening"
    );
    if let Some(addr) = state.config.web.bearer_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(
            addr = %listener.local_addr()?,
            "serving /api/v1 and /ws to bearer API tokens only (web.bearerListen)"
        );
        let app = bearer_router(state.clone());
        // It stops accepting with the main address; its streams are ended with the others below.
        let mut stopping = bearer_stop.subscribe();
        bearer_task = Some(tokio::spawn(async move {
            let stop = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            if let Err(e) = conn::serve(listener, app, limits, stop).await {
                tracing::error!(error = %e, "bearer-only listener failed");
            }
        }));
    }
    let app = router(state.clone());
    let closing = state.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = bearer_stop.send(true);
        // Long-lived streams would hold the graceful shutdown open forever: end them first.
        closing.terminals.close_all("the web server is shutting down");
        closing.live.close();
    };
    conn::serve(listener, app, limits, shutdown).await?;
    if let Some(mut t) = bearer_task
        && tokio::time::timeout(BACKGROUND_GRACE, &mut t).await.is_err()
    {
        tracing::warn!("the bearer-only listener did not stop in time; aborted");
        t.abort();
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}
