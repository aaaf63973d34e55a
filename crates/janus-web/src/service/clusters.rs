//! Which clusters exist and which of their namespaces may be requested, as the web shows them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use janus_api::config::Config;
use janus_api::rules::policy::NamespaceInfo;
use janus_kube::{ClusterInfo, Clusters};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams};
use serde::Serialize;
use utoipa::ToSchema;

use super::ServiceError;
use crate::state::AppState;

/// How long a cluster may take to list its namespaces before the web gives up on it.
const NAMESPACE_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long listed namespace metadata (labels, owners annotation) is reused for policy evaluation.
pub const NAMESPACE_INFO_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The cluster sources (configuration, registered kubeconfig Secrets) and the namespaces on them.
#[derive(Clone)]
pub struct ClusterService {
    config: Arc<Config>,
    clusters: Arc<Clusters>,
    cache: Arc<ClusterCache>,
}

impl FromRef<AppState> for ClusterService {
    fn from_ref(state: &AppState) -> Self {
        Self::new(
            state.config.clone(),
            state.clusters.clone(),
            state.registered_clusters.clone(),
        )
    }
}

impl ClusterService {
    /// A service over these cluster sources; `cache` remembers the list between calls.
    pub fn new(config: Arc<Config>, clusters: Arc<Clusters>, cache: Arc<ClusterCache>) -> Self {
        Self {
            config,
            clusters,
            cache,
        }
    }

    /// The cluster registry (clients per cluster).
    pub fn registry(&self) -> &Arc<Clusters> {
        &self.clusters
    }

    /// Configured clusters plus clusters registered by a labelled kubeconfig Secret
    /// ([`janus_kube::Clusters::list`], the same sources the controller's `is_known` reads). Registered
    /// clusters are remembered for a few seconds; when the list cannot be read, the configured ones are
    /// shown (and remembered for a shorter while, so a failing API is not asked on every page render).
    pub async fn list(&self) -> Vec<ClusterInfo> {
        self.cache
            .get_or_list(self.clusters.list(), || janus_kube::clusters::configured(&self.config))
            .await
    }

    /// The display name of a cluster (its name when none is configured).
    pub fn display_name(&self, cluster: &str) -> String {
        display_name(&self.config, cluster)
    }

    /// The namespaces of a cluster that may be requested: existing, active, not excluded. Always asks the
    /// cluster (the request form must offer a namespace created a moment ago) and refreshes the metadata
    /// that [`Self::namespace_info`] serves.
    pub async fn namespaces(&self, cluster: &str) -> Result<Vec<String>, ServiceError> {
        let all = self.list_namespaces(cluster).await?;
        let mut out: Vec<String> = all
            .iter()
            .filter(|n| !n.deleting)
            .map(|n| n.info.name.clone())
            .filter(|n| !self.config.is_excluded(n))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The metadata policies match on (labels, the approvers annotation) of `names` on `cluster`, in the
    /// order given. Served from a list at most [`NAMESPACE_INFO_TTL`] old: every request page and
    /// approval needs it, and namespace labels change rarely; the controller re-reads them for its own
    /// verdict anyway. A name the cluster does not have gets no labels and no annotations.
    pub async fn namespace_info(&self, cluster: &str, names: &[String]) -> Result<Vec<NamespaceInfo>, ServiceError> {
        let listed = match self.cache.namespaces_fresh(cluster) {
            Some(l) => l,
            None => self.list_namespaces(cluster).await?,
        };
        Ok(pick(&listed, names))
    }

    /// [`Self::namespace_info`] without asking the cluster: the last list seen, however old, else names
    /// only. For views rendered synchronously (lists); decisions use [`Self::namespace_info`].
    pub fn namespace_info_cached(&self, cluster: &str, names: &[String]) -> Vec<NamespaceInfo> {
        match self.cache.namespaces_any(cluster) {
            Some(l) => pick(&l, names),
            None => names
                .iter()
                .map(|n| NamespaceInfo {
                    name: n.clone(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// Whether the namespaces of `cluster` were ever listed (else [`Self::namespace_info_cached`] knows
    /// their names only).
    pub fn has_listing(&self, cluster: &str) -> bool {
        self.cache.namespaces_any(cluster).is_some()
    }

    /// Whether a namespace on any cluster (as last listed) names `email` or one of `groups` in its
    /// approvers annotation ([`janus_api::policy::APPROVERS_ANNOTATION`]).
    pub fn owner_anywhere(&self, email: &str, groups: &[String]) -> bool {
        self.cache.all_namespaces().iter().any(|l| {
            l.iter().any(|n| {
                n.info
                    .annotations
                    .get(janus_api::policy::APPROVERS_ANNOTATION)
                    .is_some_and(|v| names_owner(v, email, groups))
            })
        })
    }

    /// Lists the namespaces of a known cluster with their metadata (one `list_metadata` call) and
    /// remembers the answer for [`Self::namespace_info`].
    async fn list_namespaces(&self, cluster: &str) -> Result<Arc<Vec<ListedNamespace>>, ServiceError> {
        let known = self.list().await;
        if !known.iter().any(|c| c.name == cluster) {
            return Err(ServiceError::NotFound(format!("unknown cluster {cluster:?}")));
        }
        let handle = self
            .clusters
            .get(cluster)
            .await
            .map_err(|e| ServiceError::Unavailable(format!("cluster {cluster} is unavailable: {e}")))?;
        let api: Api<Namespace> = Api::all(handle.client);
        let list = tokio::time::timeout(NAMESPACE_LIST_TIMEOUT, api.list_metadata(&ListParams::default()))
            .await
            .map_err(|_| ServiceError::Unavailable(format!("cluster {cluster} did not answer in time")))?
            .map_err(|e| ServiceError::Unavailable(format!("cluster {cluster} is unavailable: {e}")))?;
        let listed: Arc<Vec<ListedNamespace>> = Arc::new(
            list.items
                .into_iter()
                .filter_map(|n| {
                    let m = n.metadata;
                    Some(ListedNamespace {
                        deleting: m.deletion_timestamp.is_some(),
                        info: NamespaceInfo {
                            name: m.name?,
                            labels: m.labels.unwrap_or_default(),
                            annotations: m.annotations.unwrap_or_default(),
                        },
                    })
                })
                .collect(),
        );
        self.cache.remember_namespaces(cluster, listed.clone());
        Ok(listed)
    }
}

impl ClusterService {
    /// Refuses a workload scope naming a workload that does not exist (the controller would fail the
    /// request once approved: better said at once). Listed with the web's own identity (it may list
    /// workloads for the picker, not get them); when the web may not list workloads or the cluster does not answer, the controller's check stands alone.
    pub async fn check_workload(
        &self,
        cluster: &str,
        namespace: &str,
        w: &janus_api::access_request::WorkloadRef,
    ) -> Result<(), ServiceError> {
        use janus_api::access_request::WorkloadKind;
        use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
        let Ok(handle) = self.clusters.get(cluster).await else {
            return Ok(());
        };
        let c = handle.client;
        let found = match w.kind {
            WorkloadKind::Deployment => listed_by_name::<Deployment>(c, namespace, &w.name).await,
            WorkloadKind::StatefulSet => listed_by_name::<StatefulSet>(c, namespace, &w.name).await,
            WorkloadKind::DaemonSet => listed_by_name::<DaemonSet>(c, namespace, &w.name).await,
        };
        match found {
            Ok(Ok(false)) => Err(ServiceError::invalid(
                "podScope",
                format!(
                    "{} {} does not exist in namespace {namespace}",
                    w.kind.as_str().to_lowercase(),
                    w.name
                ),
            )),
            Ok(Ok(true)) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(cluster, error = %e, "the workload of a pod scope could not be read; the controller checks it");
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }
}

/// Whether a namespaced object of kind `K` called `name` is listed in `namespace`: a list (what the web
/// may do on workloads, as for the picker) narrowed to the one name. The outer `Err` is the timeout.
async fn listed_by_name<K>(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Result<bool, kube::Error>, tokio::time::error::Elapsed>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client, namespace);
    let lp = ListParams::default().fields(&format!("metadata.name={name}"));
    tokio::time::timeout(NAMESPACE_LIST_TIMEOUT, api.list_metadata(&lp))
        .await
        .map(|r| r.map(|l| l.items.iter().any(|o| o.metadata.name.as_deref() == Some(name))))
}

/// Whether an approvers annotation (`"group:payments-leads, alice@example.com"`) names `email` or one of
/// `groups`. Entries that are neither are ignored, as the policy evaluation ignores them.
fn names_owner(annotation: &str, email: &str, groups: &[String]) -> bool {
    annotation
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| match entry.strip_prefix("group:").map(str::trim) {
            Some("") => false,
            Some(g) => groups.iter().any(|mine| mine == g),
            None => entry.eq_ignore_ascii_case(email),
        })
}

/// The namespaces of each cluster as last listed, with when.
type NamespaceLists = std::collections::HashMap<String, (std::time::Instant, Arc<Vec<ListedNamespace>>)>;

/// A namespace as listed: its metadata and whether it is being deleted.
#[derive(Debug, Clone)]
struct ListedNamespace {
    info: NamespaceInfo,
    deleting: bool,
}

/// The metadata of `names` from a list, in the order given; names not listed get none.
fn pick(listed: &[ListedNamespace], names: &[String]) -> Vec<NamespaceInfo> {
    names
        .iter()
        .map(|n| {
            listed
                .iter()
                .find(|l| &l.info.name == n)
                .map(|l| l.info.clone())
                .unwrap_or_else(|| NamespaceInfo {
                    name: n.clone(),
                    ..Default::default()
                })
        })
        .collect()
}

/// The display name of a cluster in `config` (its name when none is configured).
pub fn display_name(config: &Config, cluster: &str) -> String {
    config
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .map(|c| {
            if c.display_name.is_empty() {
                c.name.clone()
            } else {
                c.display_name.clone()
            }
        })
        .unwrap_or_else(|| cluster.to_string())
}

/// The cluster list, remembered for a few seconds: every page shows it, and registrations are rare.
#[derive(Default)]
pub struct ClusterCache {
    inner: std::sync::Mutex<CacheState>,
    /// The namespaces of each cluster as last listed, with when.
    namespaces: std::sync::Mutex<NamespaceLists>,
}

#[derive(Default)]
struct CacheState {
    /// The list, when it was stored, and for how long it holds.
    entry: Option<(std::time::Instant, std::time::Duration, Vec<ClusterInfo>)>,
    /// Whether the last attempt failed: one warning per failure period, not one per page.
    failing: bool,
}

impl ClusterCache {
    /// How long a listed cluster set is reused.
    const TTL: std::time::Duration = std::time::Duration::from_secs(5);
    /// How long the configured-only fallback is reused after a failed list: short, so registered
    /// clusters come back soon after the API does.
    const FALLBACK_TTL: std::time::Duration = std::time::Duration::from_secs(2);

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self) -> Option<Vec<ClusterInfo>> {
        self.lock()
            .entry
            .as_ref()
            .filter(|(t, ttl, _)| t.elapsed() < *ttl)
            .map(|(_, _, v)| v.clone())
    }

    /// The remembered list, else the result of `list`; when `list` fails, `fallback()` (remembered for
    /// [`Self::FALLBACK_TTL`]).
    async fn get_or_list<E: std::fmt::Display>(
        &self,
        list: impl std::future::Future<Output = Result<Vec<ClusterInfo>, E>>,
        fallback: impl FnOnce() -> Vec<ClusterInfo>,
    ) -> Vec<ClusterInfo> {
        if let Some(cached) = self.get() {
            return cached;
        }
        let (v, ttl) = match list.await {
            Ok(v) => {
                if self.note_success() {
                    tracing::info!("the registered clusters can be listed again");
                }
                (v, Self::TTL)
            }
            Err(e) => {
                if self.note_failure() {
                    tracing::warn!(error = %e, "the registered clusters could not be listed; showing the configured ones");
                } else {
                    tracing::debug!(error = %e, "the registered clusters still cannot be listed");
                }
                (fallback(), Self::FALLBACK_TTL)
            }
        };
        self.lock().entry = Some((std::time::Instant::now(), ttl, v.clone()));
        v
    }

    fn namespace_map(&self) -> std::sync::MutexGuard<'_, NamespaceLists> {
        self.namespaces.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The namespaces of `cluster` listed less than [`NAMESPACE_INFO_TTL`] ago.
    fn namespaces_fresh(&self, cluster: &str) -> Option<Arc<Vec<ListedNamespace>>> {
        self.namespace_map()
            .get(cluster)
            .filter(|(t, _)| t.elapsed() < NAMESPACE_INFO_TTL)
            .map(|(_, l)| l.clone())
    }

    /// The namespaces of `cluster` as last listed, however long ago.
    fn namespaces_any(&self, cluster: &str) -> Option<Arc<Vec<ListedNamespace>>> {
        self.namespace_map().get(cluster).map(|(_, l)| l.clone())
    }

    fn all_namespaces(&self) -> Vec<Arc<Vec<ListedNamespace>>> {
        self.namespace_map().values().map(|(_, l)| l.clone()).collect()
    }

    fn remember_namespaces(&self, cluster: &str, listed: Arc<Vec<ListedNamespace>>) {
        self.namespace_map()
            .insert(cluster.to_string(), (std::time::Instant::now(), listed));
    }

    /// Records a failed list; true when it starts a failure period (the one to warn about).
    fn note_failure(&self) -> bool {
        !std::mem::replace(&mut self.lock().failing, true)
    }

    /// Records a successful list; true when it ends a failure period.
    fn note_success(&self) -> bool {
        std::mem::replace(&mut self.lock().failing, false)
    }
}

/// A cluster and how it is doing.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealth {
    /// Identifier.
    pub name: String,
    /// Name shown.
    pub display_name: String,
    /// Whether it is the central cluster.
    pub central: bool,
    /// Whether its API server answered.
    pub reachable: bool,
    /// Its Kubernetes version.
    pub version: Option<String>,
    /// Why it is unreachable.
    pub error: Option<String>,
    /// Whether ClusterRole `janus-pod-exec` exists (None: could not tell).
    pub pod_exec_role: Option<bool>,
    /// Requestable namespaces.
    pub namespaces: Option<usize>,
}

impl ClusterService {
    /// Checks every cluster concurrently, each bounded by a timeout.
    pub async fn health(&self) -> Vec<ClusterHealth> {
        let list = self.list().await;
        let checks = list.into_iter().map(|c| {
            let svc = self.clone();
            async move {
                let mut h = ClusterHealth {
                    name: c.name.clone(),
                    display_name: c.display_name.clone(),
                    central: c.central,
                    reachable: false,
                    version: None,
                    error: None,
                    pod_exec_role: None,
                    namespaces: None,
                };
                let handle = match svc.clusters.get(&c.name).await {
                    Ok(h) => h,
                    Err(e) => {
                        h.error = Some(e.to_string());
                        return h;
                    }
                };
                let t = Duration::from_secs(5);
                match tokio::time::timeout(t, handle.client.apiserver_version()).await {
                    Ok(Ok(v)) => {
                        h.reachable = true;
                        h.version = Some(v.git_version);
                    }
                    Ok(Err(e)) => {
                        h.error = Some(e.to_string());
                        return h;
                    }
                    Err(_) => {
                        h.error = Some("no answer within 5 s".into());
                        return h;
                    }
                }
                let roles: Api<ClusterRole> = Api::all(handle.client.clone());
                h.pod_exec_role = match tokio::time::timeout(t, roles.get_opt(janus_api::POD_EXEC_CLUSTER_ROLE)).await {
                    Ok(Ok(r)) => Some(r.is_some()),
                    _ => None,
                };
                let ns: Api<Namespace> = Api::all(handle.client);
                if let Ok(Ok(l)) = tokio::time::timeout(t, ns.list_metadata(&ListParams::default())).await {
                    h.namespaces = Some(
                        l.items
                            .iter()
                            .filter_map(|n| n.metadata.name.as_deref())
                            .filter(|n| !svc.config.is_excluded(n))
                            .count(),
                    );
                }
                h
            }
        });
        futures::future::join_all(checks).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn cluster(name: &str) -> ClusterInfo {
        ClusterInfo {
            name: name.into(),
            display_name: String::new(),
            central: true,
        }
    }

    /// A failed cluster list is remembered (the configured fallback) instead of asking the API on
    /// every page render.
    #[tokio::test]
    async fn a_failed_cluster_list_is_remembered_briefly() {
        let cache = ClusterCache::default();
        let calls = AtomicUsize::new(0);
        for _ in 0..5 {
            let got = cache
                .get_or_list(
                    async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Err::<Vec<ClusterInfo>, _>("forbidden")
                    },
                    || vec![cluster("local")],
                )
                .await;
            assert_eq!(got, vec![cluster("local")]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the API was asked on every render");
    }

    /// One warning per failure period: the first failure after a success, not every one.
    #[test]
    fn failures_are_reported_once_per_period() {
        let cache = ClusterCache::default();
        assert!(cache.note_failure());
        assert!(!cache.note_failure());
        assert!(cache.note_success());
        assert!(!cache.note_success());
        assert!(cache.note_failure());
    }

    /// The owners annotation names emails (any case) and `group:` entries, whitespace-tolerant; other
    /// entries name nobody.
    #[test]
    fn owners_annotations_are_read_leniently() {
        let groups = vec!["payments-leads".to_string()];
        let a = " group:payments-leads ,Alice@Example.com,, nonsense:x ";
        assert!(names_owner(a, "bob@example.com", &groups));
        assert!(names_owner(a, "alice@example.com", &[]));
        assert!(!names_owner(a, "bob@example.com", &["payments".into()]));
        assert!(!names_owner("", "bob@example.com", &groups));
        assert!(
            !names_owner("group: , ,", "", &[String::new()]),
            "empty entries name nobody"
        );
    }

    /// The configured display name, else the cluster's own name (also for clusters not configured,
    /// e.g. registered ones).
    #[test]
    fn display_names_fall_back_to_the_cluster_name() {
        let cfg = Config::from_yaml(
            "namespace: janus\nclusters:\n- {name: central, displayName: Production}\n- {name: staging}\n",
            "test",
        )
        .expect("config");
        assert_eq!(display_name(&cfg, "central"), "Production");
        assert_eq!(display_name(&cfg, "staging"), "staging");
        assert_eq!(display_name(&cfg, "registered-later"), "registered-later");
    }
}
