//! The clusters access is granted on: the central one (our own identity) and remote ones reached
//! through kubeconfig Secrets, followed by a watch (or re-read on every use where none runs) so
//! registration and removal need no restart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use janus_api::config::Config;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use tokio::sync::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::error::{Error, Result, is_not_found};
use crate::kubeconfigs::{Kubeconfigs, Seen};

use serde::Serialize;

/// Label that registers a kubeconfig Secret as a cluster; its value is the cluster name.
pub const CLUSTER_LABEL: &str = "k8s-janus.opsmode.io/cluster";
/// Annotation with a registered cluster's display name.
pub const DISPLAY_NAME_ANNOTATION: &str = "k8s-janus.opsmode.io/display-name";

/// A usable connection to one cluster.
#[derive(Clone)]
pub struct ClusterHandle {
    /// Cluster name.
    pub name: String,
    /// Client with the identity k8s-janus has there.
    pub client: kube::Client,
    /// API server URL, written into token Secrets.
    pub server: String,
    /// CA bundle (PEM) of the API server, written into token Secrets.
    pub ca_pem: String,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("name", &self.name)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// DER certificates as one PEM bundle.
pub fn der_to_pem(certs: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for der in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Timeouts of the API clients Janus builds for itself (the central client of controller and web,
/// the controller's remote clients). The web's terminal and log streams use their own clients without
/// a read timeout: they are quiet for minutes by nature and have their own ping and idle rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP and TLS connection.
    pub connect: Duration,
    /// The API server silent for this long after a request was sent: the call fails. The API server
    /// bounds a non-watch request at 60 s in total, and answers promptly unless it is in trouble.
    pub read: Duration,
    /// Sending a request.
    pub write: Duration,
    /// Every watch is ended by the server after at most this long and re-opened from where it was
    /// (no re-list), so a quiet watch is never mistaken for a stalled server. Below `read`.
    pub watch: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
            write: Duration::from_secs(30),
            watch: Duration::from_secs(25),
        }
    }
}

/// Sets `timeoutSeconds` of a watch request to at most `max_secs`; other requests pass unchanged.
fn cap_watch_timeout(req: &mut http::Request<kube::client::Body>, max_secs: u64) {
    let Some(query) = req.uri().query() else {
        return;
    };
    let pairs: Vec<&str> = query.split('&').collect();
    if !pairs.iter().any(|p| *p == "watch=true" || *p == "watch=1") {
        return;
    }
    let mut out: Vec<String> = Vec::with_capacity(pairs.len() + 1);
    let mut seen = false;
    for p in pairs {
        match p.strip_prefix("timeoutSeconds=") {
            Some(v) => {
                seen = true;
                let asked = v.parse::<u64>().unwrap_or(max_secs);
                out.push(format!("timeoutSeconds={}", asked.min(max_secs)));
            }
            None => out.push(p.to_string()),
        }
    }
    if !seen {
        out.push(format!("timeoutSeconds={max_secs}"));
    }
    let path = req.uri().path().to_string();
    let mut parts = req.uri().clone().into_parts();
    // A path and query built from valid ones stays valid; should it not, the request goes unchanged.
    if let Ok(pq) = format!("{path}?{}", out.join("&")).parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// A client from `cfg` with `timeouts`: connect, read and write timeouts on every connection, and
/// every watch capped below the read timeout (kube-runtime asks for 290 s, which a quiet watch would
/// otherwise spend silent and be cut off by the read timeout).
pub fn bounded_client(mut cfg: kube::Config, timeouts: Timeouts) -> Result<kube::Client, kube::Error> {
    cfg.connect_timeout = Some(timeouts.connect);
    cfg.read_timeout = Some(timeouts.read);
    cfg.write_timeout = Some(timeouts.write);
    // Count the read timeout from when a request is sent, not from when its pooled connection went
    // idle (the pool keeps idle connections for up to 90 s).
    cfg.reset_reader_on_write = true;
    let max_watch = timeouts.watch.as_secs().max(1);
    let builder = kube::client::ClientBuilder::try_from(cfg)?;
    Ok(builder
        .with_layer(&tower::util::MapRequestLayer::new(
            move |mut req: http::Request<kube::client::Body>| {
                cap_watch_timeout(&mut req, max_watch);
                req
            },
        ))
        .build())
}

/// Builds a handle from kubeconfig YAML.
pub async fn handle_from_kubeconfig(name: &str, yaml: &str) -> Result<ClusterHandle> {
    let unavailable = |message: String| Error::Unavailable {
        cluster: name.to_string(),
        message,
    };
    let kc: kube::config::Kubeconfig =
        yaml_serde::from_str(yaml).map_err(|e| unavailable(format!("kubeconfig is not valid YAML: {e}")))?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| unavailable(format!("kubeconfig is not usable: {e}")))?;
    // kube's default retry repeats a 503, 429 or 504 up to 15 times with a backoff growing towards
    // minutes: a remote cluster answering 503 (down behind its load balancer) would hold each call,
    // and the reconcile with it, until the reconcile's 30 s bound, and its requests would never say
    // that they wait. The controller retries failed reconciles itself, with the cluster probed.
    cfg.default_retry = false;
    let server = cfg.cluster_url.to_string().trim_end_matches('/').to_string();
    let ca_pem = cfg.root_cert.as_deref().map(der_to_pem).unwrap_or_default();
    let client =
        bounded_client(cfg, Timeouts::default()).map_err(|e| unavailable(format!("cannot build a client: {e}")))?;
    Ok(ClusterHandle {
        name: name.to_string(),
        client,
        server,
        ca_pem,
    })
}

/// A cluster one can request access on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Identifier.
    pub name: String,
    /// Name shown.
    pub display_name: String,
    /// Whether this is the central cluster.
    pub central: bool,
}

/// The configured clusters, the central one first; their display names default to their names.
pub fn configured(config: &Config) -> Vec<ClusterInfo> {
    config
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| ClusterInfo {
            name: c.name.clone(),
            display_name: if c.display_name.is_empty() {
                c.name.clone()
            } else {
                c.display_name.clone()
            },
            central: i == 0,
        })
        .collect()
}

/// How often a remote cluster that requests wait for is probed until it answers again.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// A probe without an answer within this long failed (a hanging server is as good as down).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The requests waiting for each remote cluster to come back, and where to announce them when it does.
struct Recovery {
    /// Waiting request names by cluster; a cluster is in the map while its probe runs.
    waiting: std::sync::Mutex<HashMap<String, HashSet<String>>>,
    /// Request names waiting for a cluster without a usable kubeconfig Secret, announced when the
    /// watch ([`Clusters::watch`]) sees its Secret created or changed. Kept only while the watch runs.
    unconfigured: std::sync::Mutex<HashMap<String, HashSet<String>>>,
    /// Whether [`Clusters::watch`] runs.
    watching: std::sync::atomic::AtomicBool,
    recovered: UnboundedSender<String>,
}

impl Recovery {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unconfigured(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.unconfigured.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `cluster`'s kubeconfig Secret was created or changed: the requests that failed for want of a
    /// usable one are retried now.
    fn kubeconfig_appeared(&self, cluster: &str) {
        let names = self.unconfigured().remove(cluster).unwrap_or_default();
        if !names.is_empty() {
            tracing::info!(
                cluster,
                requests = names.len(),
                "cluster kubeconfig Secret changed; retrying its waiting requests now"
            );
        }
        for n in names {
            let _ = self.recovered.send(n);
        }
    }

    /// Probes `target` (`GET /api`, which every authenticated identity may read and which goes through
    /// the same path as the grant's calls) until it answers. Its waiting requests are announced only if
    /// it failed at least once meanwhile: answering at once means the cluster was reachable and the
    /// request failed for another reason, which keeps its backoff.
    async fn probe(self: Arc<Self>, target: ClusterHandle) {
        let mut failed = false;
        loop {
            if self.recovered.is_closed() {
                // The controller stopped acting: nobody retries anything any more.
                self.waiting().remove(&target.name);
                return;
            }
            let answered = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, target.client.list_core_api_versions()).await,
                Ok(Ok(_))
            );
            if answered {
                let names = self.waiting().remove(&target.name).unwrap_or_default();
                if failed {
                    tracing::info!(cluster = %target.name, requests = names.len(), "cluster reachable again; retrying its waiting requests now");
                    for n in names {
                        let _ = self.recovered.send(n);
                    }
                }
                return;
            }
            failed = true;
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

/// Resolves cluster names to handles.
pub struct Clusters {
    config: Arc<Config>,
    central: ClusterHandle,
    /// Remote handles by cluster name, valid while their Secret keeps its resourceVersion.
    cache: Mutex<HashMap<String, (String, ClusterHandle)>>,
    /// The kubeconfig Secrets as watched, once [`Clusters::watch`] runs and has listed.
    kubeconfigs: Arc<Kubeconfigs>,
    recovery: Arc<Recovery>,
    /// The receiving end of [`Recovery::recovered`], until [`Clusters::recovered`] takes it.
    recovered: std::sync::Mutex<Option<UnboundedReceiver<String>>>,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters")
            .field("central", &self.central.name)
            .finish_non_exhaustive()
    }
}

impl Clusters {
    /// The central cluster is `clusters[0]`, reached with `central_client` (our own identity).
    pub fn new(config: Arc<Config>, central_client: kube::Client, server: String, ca_pem: String) -> Self {
        let central = ClusterHandle {
            name: config.central().to_string(),
            client: central_client,
            server,
            ca_pem,
        };
        let (tx, rx) = unbounded_channel();
        let kubeconfigs = Arc::new(Kubeconfigs::new(
            config
                .clusters
                .iter()
                .filter(|c| c.name != central.name)
                .map(|c| (c.name.clone(), c.kubeconfig_secret())),
        ));
        Self {
            config,
            central,
            cache: Mutex::new(HashMap::new()),
            kubeconfigs,
            recovery: Arc::new(Recovery {
                waiting: std::sync::Mutex::new(HashMap::new()),
                unconfigured: std::sync::Mutex::new(HashMap::new()),
                watching: std::sync::atomic::AtomicBool::new(false),
                recovered: tx,
            }),
            recovered: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// Notes that `request` failed for now on remote cluster `cluster` (the central cluster is ignored:
    /// without it nothing works anyway). While requests wait for it, the cluster is probed every
    /// [`PROBE_INTERVAL`]; when it answers again after failing, their names come out of
    /// [`Clusters::recovered`], so they are retried within about a probe interval of its return
    /// instead of after their backoff, which has grown to a minute after a long outage.
    pub async fn wait_for(&self, cluster: &str, request: &str) {
        if cluster == self.central.name {
            return;
        }
        {
            let mut waiting = self.recovery.waiting();
            if let Some(names) = waiting.get_mut(cluster) {
                // A probe runs already.
                names.insert(request.to_string());
                return;
            }
            waiting.insert(cluster.to_string(), HashSet::from([request.to_string()]));
        }
        // The kubeconfig's version before the lookup: if it changes before the names below are noted,
        // its watch event has found nobody to announce, and they are announced here instead.
        let before = self.kubeconfigs.version(cluster);
        match self.get(cluster).await {
            Ok(target) => {
                tokio::spawn(self.recovery.clone().probe(target));
            }
            // Without a usable kubeconfig there is nothing to probe. Where the Secrets are watched, the
            // request is retried when the cluster's Secret is created or changed; elsewhere by its own
            // backoff.
            Err(_) => {
                let names = self.recovery.waiting().remove(cluster).unwrap_or_default();
                if self.recovery.watching.load(std::sync::atomic::Ordering::Acquire) {
                    self.recovery
                        .unconfigured()
                        .entry(cluster.to_string())
                        .or_default()
                        .extend(names);
                    if self.kubeconfigs.version(cluster) != before {
                        self.recovery.kubeconfig_appeared(cluster);
                    }
                }
            }
        }
    }

    /// Notes that `request` no longer waits for `cluster` (its reconcile succeeded, or it is gone), so
    /// it is not retried when the cluster's kubeconfig appears.
    pub fn settled(&self, cluster: &str, request: &str) {
        let mut unconfigured = self.recovery.unconfigured();
        if let Some(names) = unconfigured.get_mut(cluster) {
            names.remove(request);
            if names.is_empty() {
                unconfigured.remove(cluster);
            }
        }
    }

    /// Follows the kubeconfig Secrets with watches until the future is dropped: once they have listed,
    /// [`Clusters::get`], [`Clusters::is_known`] and [`Clusters::list`] make no API call, and requests
    /// that failed for want of a cluster's kubeconfig are retried as soon as it appears (through
    /// [`Clusters::recovered`]). Without it every lookup reads the Secret from the API server.
    pub fn watch(&self) -> impl Future<Output = ()> + Send + 'static {
        let recovery = self.recovery.clone();
        let kubeconfigs = self.kubeconfigs.clone();
        let api: Api<Secret> = Api::namespaced(self.central.client.clone(), &self.config.namespace);
        async move {
            recovery.watching.store(true, std::sync::atomic::Ordering::Release);
            let _stopped = StopWatching(recovery.clone());
            let appeared = move |cluster: &str| recovery.kubeconfig_appeared(cluster);
            kubeconfigs.run(api, Arc::new(appeared)).await;
        }
    }

    /// The names of requests whose cluster came back (see [`Clusters::wait_for`]); the first call takes
    /// the receiver, later ones get `None`.
    pub fn recovered(&self) -> Option<UnboundedReceiver<String>> {
        self.recovered.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The central cluster.
    pub fn central(&self) -> &ClusterHandle {
        &self.central
    }

    /// Finds the kubeconfig Secret of a remote cluster: the configured name, else one labelled with it.
    /// Answered from the watch once it has listed, else by the API server.
    async fn find_secret(&self, name: &str) -> Result<Option<Arc<Secret>>> {
        match self.kubeconfigs.seen(name) {
            Seen::Present(s) => return Ok(Some(s)),
            Seen::Absent => return Ok(None),
            Seen::Unknown => {}
        }
        let secrets: Api<Secret> = Api::namespaced(self.central.client.clone(), &self.config.namespace);
        if let Some(c) = self.config.clusters.iter().find(|c| c.name == name) {
            return match secrets.get(&c.kubeconfig_secret()).await {
                Ok(s) => Ok(Some(Arc::new(s))),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        let list = secrets
            .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={name}")))
            .await?;
        Ok(list.items.into_iter().next().map(Arc::new))
    }

    /// Every cluster one can request access on: the configured ones (the central first), then those
    /// registered by a kubeconfig Secret labelled [`CLUSTER_LABEL`] (display name from
    /// [`DISPLAY_NAME_ANNOTATION`]). [`Clusters::is_known`] answers from the same two sources.
    pub async fn list(&self) -> Result<Vec<ClusterInfo>> {
        let mut out = configured(&self.config);
        let labelled = match self.kubeconfigs.labelled() {
            Some(watched) => watched.iter().map(|s| s.metadata.clone()).collect(),
            None => {
                let secrets: Api<Secret> = Api::namespaced(self.central.client.clone(), &self.config.namespace);
                let list = secrets
                    .list_metadata(&ListParams::default().labels(CLUSTER_LABEL))
                    .await?;
                list.items.into_iter().map(|s| s.metadata).collect::<Vec<_>>()
            }
        };
        for metadata in labelled {
            let labels = metadata.labels.unwrap_or_default();
            let Some(name) = labels.get(CLUSTER_LABEL) else {
                continue;
            };
            if out.iter().any(|c| &c.name == name) {
                continue;
            }
            let display = metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DISPLAY_NAME_ANNOTATION))
                .cloned()
                .unwrap_or_else(|| name.clone());
            out.push(ClusterInfo {
                name: name.clone(),
                display_name: display,
                central: false,
            });
        }
        Ok(out)
    }

    /// Whether a cluster is configured or registered by a labelled Secret.
    pub async fn is_known(&self, name: &str) -> Result<bool> {
        if name == self.central.name || self.config.clusters.iter().any(|c| c.name == name) {
            return Ok(true);
        }
        Ok(self.find_secret(name).await?.is_some())
    }

    /// A handle for a cluster, rebuilt when its kubeconfig Secret changed.
    pub async fn get(&self, name: &str) -> Result<ClusterHandle> {
        if name == self.central.name {
            return Ok(self.central.clone());
        }
        let unavailable = |message: String| Error::Unavailable {
            cluster: name.to_string(),
            message,
        };
        let Some(secret) = self.find_secret(name).await? else {
            self.cache.lock().await.remove(name);
            let expected = self
                .config
                .clusters
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.kubeconfig_secret())
                .unwrap_or_else(|| format!("a Secret labelled {CLUSTER_LABEL}={name}"));
            return Err(unavailable(format!(
                "no kubeconfig: expected Secret {expected} in namespace {} (register it with scripts/setup.sh)",
                self.config.namespace
            )));
        };
        let rv = secret.metadata.resource_version.clone().unwrap_or_default();
        if let Some((cached_rv, h)) = self.cache.lock().await.get(name)
            && *cached_rv == rv
        {
            return Ok(h.clone());
        }
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get("kubeconfig"))
            .ok_or_else(|| unavailable("the kubeconfig Secret has no key `kubeconfig`".into()))?;
        let yaml = String::from_utf8(data.0.clone())
            .map_err(|_| unavailable("the kubeconfig in the Secret is not UTF-8".into()))?;
        let handle = handle_from_kubeconfig(name, &yaml).await?;
        self.cache.lock().await.insert(name.to_string(), (rv, handle.clone()));
        Ok(handle)
    }
}

/// Marks the watch stopped when [`Clusters::watch`]'s future ends or is dropped: requests no longer
/// wait for a Secret event nobody would report.
struct StopWatching(Arc<Recovery>);

impl Drop for StopWatching {
    fn drop(&mut self) {
        self.0.watching.store(false, std::sync::atomic::Ordering::Release);
        self.0.unconfigured().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_at_64() {
        let pem = der_to_pem(&[vec![0u8; 100]]);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    }

    fn watch_uri(uri: &str) -> String {
        let mut req = http::Request::get(uri).body(kube::client::Body::empty()).unwrap();
        cap_watch_timeout(&mut req, 25);
        req.uri().to_string()
    }

    #[test]
    fn watches_are_capped_below_the_read_timeout() {
        assert_eq!(
            watch_uri("/api/v1/secrets?watch=true&timeoutSeconds=290&allowWatchBookmarks=true"),
            "/api/v1/secrets?watch=true&timeoutSeconds=25&allowWatchBookmarks=true"
        );
        assert_eq!(
            watch_uri("/api/v1/secrets?watch=1&timeoutSeconds=10"),
            "/api/v1/secrets?watch=1&timeoutSeconds=10"
        );
        assert_eq!(
            watch_uri("/api/v1/secrets?watch=true"),
            "/api/v1/secrets?watch=true&timeoutSeconds=25"
        );
        // Not a watch: untouched, whatever it carries.
        assert_eq!(
            watch_uri("/api/v1/secrets?limit=1&timeoutSeconds=290"),
            "/api/v1/secrets?limit=1&timeoutSeconds=290"
        );
        assert_eq!(watch_uri("/api/v1/secrets"), "/api/v1/secrets");
    }

    #[tokio::test]
    async fn bad_kubeconfigs_are_clear_errors() {
        let e = handle_from_kubeconfig("r", "{{{").await.unwrap_err();
        assert!(e.to_string().contains("not valid YAML"), "{e}");
        let e = handle_from_kubeconfig("r", "apiVersion: v1\nkind: Config\n")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cluster r is unavailable"), "{e}");
    }
}
