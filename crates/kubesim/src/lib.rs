//! kubesim: an in-memory Kubernetes API server for tests and the demo.
//!
//! It serves HTTPS on loopback with a CA of its own, authenticates bearer tokens (an admin token and
//! ServiceAccount JWTs from TokenRequest), authorizes with RBAC as Kubernetes does, stores any kind
//! (built-ins and CRDs) with resourceVersions, watches, patches and garbage collection, and runs the
//! commands of `pods/exec` as real local processes. Its fidelity is checked with the real `kubectl` and
//! `helm` in the conformance tests.
//!
//! Start one in-process with [`SimBuilder`]:
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = kubesim::SimBuilder::new().start().await?;
//! let client = sim.client().await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod cel;
pub mod crd;
pub mod discovery;
pub mod ephemeral;
pub mod errors;
pub mod events;
pub mod exec;
pub mod faults;
pub mod gc;
pub mod kubeconfig;
pub mod kubelet;
pub mod list;
pub mod logs;
mod owners;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod seed;
pub mod selectors;
pub mod server;
pub mod store;
pub mod tls;
pub mod watch;
pub mod workloads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

pub use errors::{ApiError, ApiResult};
pub use resources::GroupResource;

/// Settings of one simulated cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Name used in the kubeconfig (cluster, context and user names).
    pub name: String,
    /// Bearer token of the all-powerful admin identity (`kubesim-admin`, group `system:masters`).
    pub admin_token: String,
    /// Smallest `expirationSeconds` a TokenRequest may ask for (Kubernetes: 600).
    pub min_token_expiration_seconds: i64,
    /// Where pods get their working directories.
    pub workdir: PathBuf,
    /// Git version reported by `/version` (e.g. `v1.33.1`); version-dependent rules (exec verbs) follow it.
    pub version: String,
    /// `--service-account-max-token-expiration`: TokenRequests asking for more are shortened to this,
    /// with a warning. `None`: no cap (the real server's default).
    pub max_token_expiration_seconds: Option<i64>,
    /// Clock skew tolerated on token `exp`/`nbf`/`iat` (the real server: 60 s, go-jose's default).
    pub token_leeway_seconds: i64,
    /// How long a successful token authentication is cached (the real server: 10 s,
    /// `--token-auth-cache-ttl`'s success TTL), even after the ServiceAccount is deleted.
    pub auth_cache_ttl: std::time::Duration,
    /// How long a watch or a `continue` token stays valid before the server answers 410 Gone
    /// (a real server: the watch-cache window or etcd compaction, minutes).
    pub watch_window: std::time::Duration,
    /// `--min-request-timeout`: a watch without `timeoutSeconds` is closed by the server after this
    /// times a random factor in [1, 2), and the client re-watches (the real server: 1800 s).
    pub min_request_timeout: std::time::Duration,
    /// Run the workload controller: Deployments, StatefulSets and DaemonSets get pods (see
    /// [`workloads`]). Off: they get none and report themselves ready, as before.
    pub workload_pods: bool,
}

impl SimConfig {
    /// Settings as the real API server's defaults, with a given name, admin token and work directory.
    pub fn new(name: &str, admin_token: &str, workdir: PathBuf) -> Self {
        Self {
            name: name.into(),
            admin_token: admin_token.into(),
            min_token_expiration_seconds: defaults::MIN_TOKEN_EXPIRATION_SECONDS,
            workdir,
            version: DEFAULT_VERSION.into(),
            max_token_expiration_seconds: None,
            token_leeway_seconds: defaults::TOKEN_LEEWAY_SECONDS,
            auth_cache_ttl: std::time::Duration::from_secs(defaults::AUTH_CACHE_TTL_SECONDS),
            watch_window: std::time::Duration::from_secs(defaults::WATCH_WINDOW_SECONDS),
            min_request_timeout: std::time::Duration::from_secs(defaults::MIN_REQUEST_TIMEOUT_SECONDS),
            workload_pods: false,
        }
    }
}

/// The defaults of [`SimConfig::new`], [`SimBuilder`] and `kubesim serve`'s flags, written once;
/// each is the real API server's.
pub mod defaults {
    /// Smallest TokenRequest `expirationSeconds` (kube-apiserver: 10 minutes).
    pub const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;
    /// Clock skew tolerated on token times (go-jose's default leeway).
    pub const TOKEN_LEEWAY_SECONDS: i64 = 60;
    /// Success TTL of the token authentication cache (`--token-auth-cache-ttl`'s success TTL).
    pub const AUTH_CACHE_TTL_SECONDS: u64 = 10;
    /// How long a watch or `continue` token stays valid (the watch cache keeps minutes of history).
    pub const WATCH_WINDOW_SECONDS: u64 = 300;
    /// `--min-request-timeout`.
    pub const MIN_REQUEST_TIMEOUT_SECONDS: u64 = 1800;
}

/// The Kubernetes version kubesim reports unless told otherwise.
pub const DEFAULT_VERSION: &str = "v1.33.1";

/// One simulated cluster: its store, served types, token issuer, faults and pod logs.
pub struct Cluster {
    /// Settings.
    pub config: SimConfig,
    /// All objects.
    pub store: store::Store,
    /// Served resource types.
    pub registry: resources::Registry,
    /// Signs and verifies ServiceAccount tokens.
    pub tokens: auth::TokenIssuer,
    /// Injected faults.
    pub faults: faults::Faults,
    /// Container logs.
    pub logs: logs::LogBook,
    /// Running exec processes, killed with their pod.
    pub kubelet: kubelet::Kubelet,
    /// Running ephemeral containers (for `pods/attach`).
    pub ephemeral: ephemeral::Containers,
    /// Wakes the garbage collector.
    pub gc: gc::Collector,
    /// Wakes the workload controller (when [`SimConfig::workload_pods`]).
    pub workloads: workloads::Controller,
    /// How many watches were answered 410 Gone (their resourceVersion had left the window), so tests
    /// can tell that clients really went through relists.
    pub expired_watches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A new empty cluster with the default namespaces and RBAC bootstrap objects.
    pub fn new(config: SimConfig) -> anyhow::Result<Arc<Self>> {
        Self::with_issuer(config, auth::TokenIssuer::generate()?)
    }

    /// Like [`Cluster::new`] with a given token signing key (a restored state keeps its tokens valid).
    pub fn with_issuer(config: SimConfig, tokens: auth::TokenIssuer) -> anyhow::Result<Arc<Self>> {
        // Version-dependent rules follow the reported version, so it must be one they can read.
        exec::upgrade_needs_create(&config.version)?;
        std::fs::create_dir_all(&config.workdir)?;
        let c = Arc::new(Self {
            tokens,
            store: store::Store::new(),
            registry: resources::Registry::new(),
            faults: faults::Faults::default(),
            logs: logs::LogBook::default(),
            kubelet: kubelet::Kubelet::default(),
            ephemeral: ephemeral::Containers::default(),
            gc: gc::Collector::default(),
            workloads: workloads::Controller::default(),
            expired_watches: Default::default(),
            config,
        });
        c.store.set_window(c.config.watch_window);
        seed::bootstrap(&c)?;
        Ok(c)
    }
}

/// Builds and starts a kubesim instance.
#[derive(Debug, Clone)]
pub struct SimBuilder {
    /// The settings; the admin token and (unless [`SimBuilder::workdir`] set it) the work directory
    /// are filled in by [`SimBuilder::start`].
    config: SimConfig,
    port: u16,
    seed: Option<PathBuf>,
    state: Option<PathBuf>,
    workdir: Option<PathBuf>,
}

impl Default for SimBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SimBuilder {
    /// Defaults: name `kubesim`, a free port, Kubernetes' 600 s minimum token lifetime.
    pub fn new() -> Self {
        Self {
            config: SimConfig::new("kubesim", "", PathBuf::new()),
            port: 0,
            seed: None,
            state: None,
            workdir: None,
        }
    }

    /// The cluster's name in kubeconfigs.
    pub fn name(mut self, name: &str) -> Self {
        self.config.name = name.into();
        self
    }

    /// Port on 127.0.0.1 (0 picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// A YAML file of objects loaded at start.
    pub fn seed(mut self, path: impl Into<PathBuf>) -> Self {
        self.seed = Some(path.into());
        self
    }

    /// A file the state is loaded from at start and saved to on shutdown and periodically.
    pub fn state(mut self, path: impl Into<PathBuf>) -> Self {
        self.state = Some(path.into());
        self
    }

    /// Where pods' working directories are created (default: a fresh temporary directory).
    pub fn workdir(mut self, path: impl Into<PathBuf>) -> Self {
        self.workdir = Some(path.into());
        self
    }

    /// Lowers the TokenRequest minimum lifetime (tests of expiry).
    pub fn min_token_expiration_seconds(mut self, s: i64) -> Self {
        self.config.min_token_expiration_seconds = s;
        self
    }

    /// The Kubernetes version reported by `/version` (e.g. `v1.35.0`); version-dependent rules follow it.
    pub fn version(mut self, version: &str) -> Self {
        self.config.version = version.into();
        self
    }

    /// Caps TokenRequest lifetimes as `--service-account-max-token-expiration` does.
    pub fn max_token_expiration_seconds(mut self, s: i64) -> Self {
        self.config.max_token_expiration_seconds = Some(s);
        self
    }

    /// Clock skew tolerated on token times (default 60 s as the real server; 0 for exact expiry tests).
    pub fn token_leeway_seconds(mut self, s: i64) -> Self {
        self.config.token_leeway_seconds = s;
        self
    }

    /// Success TTL of the token authentication cache (default 10 s as the real server; zero disables it).
    pub fn auth_cache_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.config.auth_cache_ttl = ttl;
        self
    }

    /// How long watches and `continue` tokens stay valid before 410 Gone.
    pub fn watch_window(mut self, window: std::time::Duration) -> Self {
        self.config.watch_window = window;
        self
    }

    /// `--min-request-timeout`: watches without `timeoutSeconds` are closed after this times a
    /// random factor in [1, 2) (default 1800 s as the real server).
    pub fn min_request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.config.min_request_timeout = timeout;
        self
    }

    /// Runs the workload controller, so `kubectl scale deployment x --replicas=3` really makes three
    /// pods (default: off; workloads then have no pods and report themselves ready).
    pub fn workload_pods(mut self, on: bool) -> Self {
        self.config.workload_pods = on;
        self
    }

    /// Creates the cluster and serves it.
    pub async fn start(self) -> anyhow::Result<RunningSim> {
        let workdir = match self.workdir {
            Some(w) => w,
            None => std::env::temp_dir().join(format!("kubesim-{}", uuid::Uuid::new_v4().simple())),
        };
        let config = SimConfig {
            admin_token: format!("kubesim-admin-{}", uuid::Uuid::new_v4().simple()),
            workdir,
            ..self.config
        };
        let saved = match &self.state {
            Some(state) if state.exists() => Some(seed::read_state(state)?),
            _ => None,
        };
        let issuer = match saved.as_ref().and_then(|s| s["signingKey"].as_str()) {
            Some(pem) => auth::TokenIssuer::from_private_key_pem(pem)?,
            None => auth::TokenIssuer::generate()?,
        };
        let cluster = Cluster::with_issuer(config, issuer)?;
        if let Some(saved) = &saved {
            seed::restore_state(&cluster, saved)?;
        }
        if let Some(seed) = &self.seed {
            seed::load_seed_file(&cluster, seed)?;
        }
        gc::spawn(&cluster);
        if cluster.config.workload_pods {
            workloads::spawn(&cluster);
        }
        let tls = tls::ServingCert::generate()?;
        let server = server::serve(cluster.clone(), &tls, self.port).await?;
        Ok(RunningSim {
            cluster,
            tls,
            server,
            state: self.state,
        })
    }
}

/// A kubesim instance serving HTTPS; stops when dropped or on [`RunningSim::shutdown`].
pub struct RunningSim {
    /// The simulated cluster (for direct manipulation in tests).
    pub cluster: Arc<Cluster>,
    tls: tls::ServingCert,
    server: server::ServerHandle,
    state: Option<PathBuf>,
}

impl std::fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSim")
            .field("addr", &self.server.addr)
            .finish_non_exhaustive()
    }
}

impl RunningSim {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.server.addr)
    }

    /// PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.cluster.config.admin_token
    }

    /// An admin kubeconfig as YAML.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::render(
            &self.cluster.config.name,
            &self.url(),
            self.ca_pem(),
            self.admin_token(),
        )
    }

    /// A kubeconfig for an arbitrary bearer token (e.g. a ServiceAccount's).
    pub fn kubeconfig_for_token(&self, token: &str) -> String {
        kubeconfig::render(&self.cluster.config.name, &self.url(), self.ca_pem(), token)
    }

    /// Writes the admin kubeconfig to a file.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        kubeconfig::write_private(path, &self.kubeconfig_yaml())
    }

    /// A kube client with admin rights.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        self.client_for_token(self.admin_token()).await
    }

    /// A kube client authenticating with the given bearer token.
    pub async fn client_for_token(&self, token: &str) -> anyhow::Result<kube::Client> {
        let kc: kube::config::Kubeconfig = yaml_serde::from_str(&self.kubeconfig_for_token(token))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        Ok(kube::Client::try_from(cfg)?)
    }

    /// Applies a seed document (a YAML list or stream of objects) as the admin.
    pub fn load_seed(&self, yaml: &str) -> anyhow::Result<()> {
        seed::load_seed_str(&self.cluster, yaml)
    }

    /// Looks up an object directly in the store.
    pub fn get(&self, group: &str, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.cluster.store.get(&GroupResource::new(group, resource), ns, name)
    }

    /// Simulates an API server restart: drops every open connection and watch, keeps the state.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let addr = self.server.addr;
        self.server.stop().await;
        // Exec streams die with the API server process, as on a real cluster.
        self.cluster.kubelet.kill_all();
        self.server = server::serve(self.cluster.clone(), &self.tls, addr.port()).await?;
        Ok(())
    }

    /// Stops serving (connections are dropped) and saves the state file if one was given.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.server.stop().await;
        if let Some(state) = &self.state {
            seed::save_state(&self.cluster, state)?;
        }
        self.cluster.kubelet.kill_all();
        Ok(())
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.server.abort();
        self.cluster.kubelet.kill_all();
    }
}
