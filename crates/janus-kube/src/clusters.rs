//! The clusters access is granted on: the central one (our own identity) and remote ones reached
//! through kubeconfig Secrets, re-read on every use so registration and removal need no restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use janus_api::config::Config;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use tokio::sync::Mutex;

use crate::error::{Error, Result, is_not_found};

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
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| unavailable(format!("kubeconfig is not usable: {e}")))?;
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

/// Resolves cluster names to handles.
pub struct Clusters {
    config: Arc<Config>,
    central: ClusterHandle,
    /// Remote handles by cluster name, valid while their Secret keeps its resourceVersion.
    cache: Mutex<HashMap<String, (String, ClusterHandle)>>,
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
        Self {
            config,
            central,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The central cluster.
    pub fn central(&self) -> &ClusterHandle {
        &self.central
    }

    /// Finds the kubeconfig Secret of a remote cluster: the configured name, else one labelled with it.
    async fn find_secret(&self, name: &str) -> Result<Option<Secret>> {
        let secrets: Api<Secret> = Api::namespaced(self.central.client.clone(), &self.config.namespace);
        if let Some(c) = self.config.clusters.iter().find(|c| c.name == name) {
            return match secrets.get(&c.kubeconfig_secret()).await {
                Ok(s) => Ok(Some(s)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        let list = secrets
            .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={name}")))
            .await?;
        Ok(list.items.into_iter().next())
    }

    /// Every cluster one can request access on: the configured ones (the central first), then those
    /// registered by a kubeconfig Secret labelled [`CLUSTER_LABEL`] (display name from
    /// [`DISPLAY_NAME_ANNOTATION`]). [`Clusters::is_known`] answers from the same two sources.
    pub async fn list(&self) -> Result<Vec<ClusterInfo>> {
        let mut out = configured(&self.config);
        let secrets: Api<Secret> = Api::namespaced(self.central.client.clone(), &self.config.namespace);
        let list = secrets
            .list_metadata(&ListParams::default().labels(CLUSTER_LABEL))
            .await?;
        for s in list.items {
            let labels = s.metadata.labels.unwrap_or_default();
            let Some(name) = labels.get(CLUSTER_LABEL) else {
                continue;
            };
            if out.iter().any(|c| &c.name == name) {
                continue;
            }
            let display = s
                .metadata
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
