//! Pod-scoped grants: resolving a request's pod scope to a label selector, writing the namespaced Role
//! whose `resourceNames` list the pods in scope, and keeping that Role current with one pod watch per
//! (request, namespace) while the grant is active.
//!
//! RBAC cannot select by label, so the Role names pods. A watch (never polling) of the pods the
//! selector matches follows rollouts and restarts: a pod that starts matching is added, one that stops
//! matching, gets a deletionTimestamp or is deleted is removed, each with one Role replace guarded by
//! the resourceVersion it was computed from. Watches belong to the acting controller: they stop when
//! the request ends or is cleaned up, and all at once when the controller stops acting (the map that
//! owns them is dropped with the reconcile context).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use janus_api::AccessRequest;
use janus_api::access_request::{PodScope, WorkloadKind};
use janus_api::rules::scope::{from_workload_selector, scoped_rules, selector_string};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};

use crate::clusters::ClusterHandle;
use crate::error::{Error, Result, is_conflict, is_not_found};
use crate::grant::{forbidden_to_permanent, meta, owned_by_request};
use crate::metrics::Metrics;

/// How often a Role replace is retried when someone else wrote the Role in between (409).
const CONFLICT_RETRIES: usize = 5;
/// First wait before a failed Role update is tried again (doubled up to [`RETRY_MAX`]).
const RETRY_MIN: Duration = Duration::from_millis(200);
/// Longest wait between two attempts to update a Role.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Pod events applied before the Role is written: a rollout's burst becomes one replace, not one per pod.
const EVENTS_PER_UPDATE: usize = 256;

/// The label selector (Kubernetes syntax) the grant in `ns` follows: the request's selector, or the
/// workload's `spec.selector` read from the target (one GET). `recorded` is the selector in
/// `status.grants` from an earlier grant: a workload's selector is immutable in apps/v1, so it is
/// used as recorded (a workload deleted during the grant does not end it). A missing workload is a
/// permanent error naming it.
pub async fn resolve_selector(
    target: &ClusterHandle,
    scope: &PodScope,
    ns: &str,
    recorded: Option<&str>,
) -> Result<String> {
    if let Some(s) = &scope.selector {
        return Ok(selector_string(s));
    }
    let Some(w) = &scope.workload else {
        return Err(Error::Permanent(
            "podScope: exactly one of selector and workload".into(),
        ));
    };
    if let Some(r) = recorded.filter(|r| !r.is_empty()) {
        return Ok(r.to_string());
    }
    let read = match w.kind {
        WorkloadKind::Deployment => {
            workload_selector::<Deployment>(target, ns, &w.name, |d| d.spec.as_ref().map(|s| s.selector.clone())).await
        }
        WorkloadKind::StatefulSet => {
            workload_selector::<StatefulSet>(target, ns, &w.name, |d| d.spec.as_ref().map(|s| s.selector.clone())).await
        }
        WorkloadKind::DaemonSet => {
            workload_selector::<DaemonSet>(target, ns, &w.name, |d| d.spec.as_ref().map(|s| s.selector.clone())).await
        }
    };
    let kind = w.kind.as_str().to_lowercase();
    match read {
        Ok(Some(selector)) => from_workload_selector(w.kind, &w.name, &selector)
            .map(|s| selector_string(&s))
            .map_err(|e| Error::Permanent(e.to_string())),
        Ok(None) => Err(Error::Permanent(format!(
            "{kind} {} does not exist in namespace {ns} on cluster {}",
            w.name, target.name
        ))),
        Err(e) => Err(forbidden_to_permanent(
            &target.name,
            &format!("read {kind}s in {ns}"),
            e,
        )),
    }
}

/// The workload's `spec.selector`: `Ok(None)` when it does not exist (or has no spec).
async fn workload_selector<K>(
    target: &ClusterHandle,
    ns: &str,
    name: &str,
    selector: impl Fn(&K) -> Option<LabelSelector>,
) -> std::result::Result<Option<LabelSelector>, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(target.client.clone(), ns);
    Ok(api.get_opt(name).await?.as_ref().and_then(selector))
}

/// Whether a pod counts as in scope: it exists and is not being deleted (a terminating pod's
/// containers are going away; exec into it is no use and must not outlast the pod's deletion).
fn alive(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
}

/// The names of the pods in `ns` that `selector` matches now, without those being deleted.
pub async fn pods_in_scope(target: &ClusterHandle, ns: &str, selector: &str) -> Result<Vec<String>> {
    let api: Api<Pod> = Api::namespaced(target.client.clone(), ns);
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(|e| forbidden_to_permanent(&target.name, &format!("list pods in {ns}"), e))?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect())
}

/// Creates the scoped Role `name` in `ns` with `rules`, or adopts the request's own and sets its rules
/// (drift repair: an edited Role is reset). A Role of that name that is not the request's is a
/// permanent error; one being deleted waits for its deletion to finish.
pub async fn write_role(
    target: &ClusterHandle,
    ar: &AccessRequest,
    ns: &str,
    name: &str,
    rules: &[PolicyRule],
) -> Result<()> {
    let api: Api<Role> = Api::namespaced(target.client.clone(), ns);
    let role = Role {
        metadata: meta(name, ns, ar),
        rules: Some(rules.to_vec()),
    };
    match api.create(&PostParams::default(), &role).await {
        Ok(_) => return Ok(()),
        Err(e) if is_conflict(&e) => {}
        Err(e) if is_not_found(&e) => {
            return Err(Error::Permanent(format!(
                "namespace {ns:?} does not exist on cluster {}",
                target.name
            )));
        }
        Err(e) => return Err(forbidden_to_permanent(&target.name, "create Roles", e)),
    }
    for _ in 0..CONFLICT_RETRIES {
        let existing = api.get(name).await?;
        if existing.metadata.deletion_timestamp.is_some() {
            return Err(Error::CleanupPending(format!(
                "Role {ns}/{name} is still being deleted"
            )));
        }
        if !owned_by_request(existing.metadata.labels.as_ref(), &ar.name_any()) {
            return Err(Error::Permanent(format!(
                "Role {ns}/{name} exists on cluster {} and does not belong to this request",
                target.name
            )));
        }
        match replace_rules(&api, existing, rules).await {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(forbidden_to_permanent(&target.name, "update Roles", e)),
        }
    }
    Err(conflict_exhausted(ns, name))
}

/// Replaces the rules of `existing` when they differ, with its resourceVersion as the precondition
/// (kube-apiserver's update refuses a stale resourceVersion with 409: registry/generic/registry/store.go).
/// `Ok(true)` when it wrote.
async fn replace_rules(
    api: &Api<Role>,
    mut existing: Role,
    rules: &[PolicyRule],
) -> std::result::Result<bool, kube::Error> {
    if existing.rules.as_deref().unwrap_or_default() == rules {
        return Ok(false);
    }
    existing.rules = Some(rules.to_vec());
    let name = existing.name_any();
    api.replace(&name, &PostParams::default(), &existing).await?;
    Ok(true)
}

/// A Role that kept changing under every attempt: retried later (transient).
fn conflict_exhausted(ns: &str, name: &str) -> Error {
    Error::Conflict(format!("Role {ns}/{name} kept changing while it was updated"))
}

/// What one running watch keeps current; a different one for the same (request, namespace) replaces it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSpec {
    /// The target cluster.
    pub cluster: String,
    /// The request's uid (a request deleted and created again under the same name is another one).
    pub uid: String,
    /// The access role (named in errors of [`scoped_rules`]).
    pub role: String,
    /// The role's ClusterRole rules as read from the target.
    pub cluster_role_rules: Vec<PolicyRule>,
    /// The label selector (Kubernetes syntax).
    pub selector: String,
    /// The scoped Role's name.
    pub role_name: String,
}

/// A watch task, aborted when dropped.
struct Running {
    spec: WatchSpec,
    /// Asks the watch to check the Role against the pods it sees, whether or not they changed.
    resync: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pod watches of the active pod-scoped grants, by (request, namespace).
pub struct ScopeWatches {
    metrics: Arc<Metrics>,
    running: Mutex<HashMap<(String, String), Running>>,
}

impl std::fmt::Debug for ScopeWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeWatches").field("active", &self.active()).finish()
    }
}

impl ScopeWatches {
    /// No watches yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many watches run (a task that returned or panicked is not counted; `ensure` restarts it).
    pub fn active(&self) -> usize {
        self.lock().values().filter(|r| !r.task.is_finished()).count()
    }

    /// Makes sure the watch of `request` in `ns` runs as `spec` says (started, or restarted when the
    /// selector, the ClusterRole rules or the request changed). A watch that already runs checks the
    /// Role again against the pods it sees: the caller may just have written the Role from a list
    /// older than the watch's view, and the watch's view is the newer one.
    pub fn ensure(&self, target: &ClusterHandle, request: &str, ns: &str, spec: WatchSpec) {
        let key = (request.to_string(), ns.to_string());
        let mut running = self.lock();
        match running.get(&key) {
            Some(r) if r.spec == spec && !r.task.is_finished() => {
                r.resync.notify_one();
                return;
            }
            // Until this reconcile the Role kept its last pod list; the new watch lists pods first.
            Some(r) if r.task.is_finished() => {
                tracing::warn!(request, namespace = ns, "pod scope watch had ended; restarting it");
            }
            _ => {}
        }
        let resync = Arc::new(tokio::sync::Notify::new());
        let task = spawn_counted(
            &self.metrics,
            watch_pods(
                target.client.clone(),
                request.to_string(),
                ns.to_string(),
                spec.clone(),
                resync.clone(),
                self.metrics.clone(),
            ),
        );
        tracing::info!(request, namespace = ns, cluster = %spec.cluster, selector = %spec.selector, "pod scope watch started");
        // The replaced watch (if any) is aborted as it is dropped.
        running.insert(key, Running { spec, resync, task });
    }

    /// Stops every watch of `request` (it ended, or is being cleaned up).
    pub fn stop_request(&self, request: &str) {
        let mut running = self.lock();
        let before = running.len();
        running.retain(|(r, _), _| r != request);
        if running.len() != before {
            tracing::info!(request, stopped = before - running.len(), "pod scope watches stopped");
        }
    }
}

/// Spawns a watch task counted in `janus_controller_scope_watches` for exactly as long as its future
/// exists: the count is taken before the spawn and released when the future is dropped, whether it
/// returned, panicked (unwinding drops it) or was aborted (also before its first poll).
fn spawn_counted(
    metrics: &Arc<Metrics>,
    watch: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let counted = metrics.scope_watch_running();
    tokio::spawn(async move {
        let _counted = counted;
        watch.await;
    })
}

/// Follows the pods `spec.selector` matches in `ns` and keeps the Role's rules naming exactly those
/// that are not being deleted. The first write comes once the initial list is complete, so a pod
/// that started or stopped matching between the grant and the watch is caught too.
async fn watch_pods(
    client: kube::Client,
    request: String,
    ns: String,
    spec: WatchSpec,
    resync: Arc<tokio::sync::Notify>,
    metrics: Arc<Metrics>,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let roles: Api<Role> = Api::namespaced(client, &ns);
    // kube-runtime's watcher lists, then watches from the list's resourceVersion, and lists again on
    // 410 Gone or a dropped connection; the backoff spaces out attempts while the API server refuses.
    let mut events = watcher(pods, watcher::Config::default().labels(&spec.selector))
        .default_backoff()
        .boxed();
    let mut listing: Option<BTreeSet<String>> = None;
    let mut current: Option<BTreeSet<String>> = None;
    let mut written: Option<BTreeSet<String>> = None;
    let mut retry_in = RETRY_MIN;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let next = tokio::select! {
            ev = events.next() => match ev {
                Some(ev) => Some(ev),
                None => return,
            },
            () = sleep_until(retry_at) => {
                retry_at = None;
                None
            }
            () = resync.notified() => {
                written = None;
                None
            }
        };
        let mut batch: Vec<watcher::Result<watcher::Event<Pod>>> = next.into_iter().collect();
        // Whatever else has already arrived goes into the same update.
        while batch.len() < EVENTS_PER_UPDATE {
            match events.next().now_or_never() {
                Some(Some(ev)) => batch.push(ev),
                Some(None) => return,
                None => break,
            }
        }
        for ev in batch {
            match ev {
                Ok(watcher::Event::Init) => listing = Some(BTreeSet::new()),
                Ok(watcher::Event::InitApply(p)) => {
                    if alive(&p) {
                        listing.get_or_insert_with(BTreeSet::new).insert(p.name_any());
                    }
                }
                Ok(watcher::Event::InitDone) => current = Some(listing.take().unwrap_or_default()),
                Ok(watcher::Event::Apply(p)) => {
                    if let Some(c) = current.as_mut() {
                        if alive(&p) {
                            c.insert(p.name_any());
                        } else {
                            c.remove(&p.name_any());
                        }
                    }
                }
                Ok(watcher::Event::Delete(p)) => {
                    if let Some(c) = current.as_mut() {
                        c.remove(&p.name_any());
                    }
                }
                Err(e) => {
                    // kube's errors carry the API server's status, never the client's token.
                    tracing::warn!(request = %request, namespace = %ns, error = %e, "pod scope watch error; retrying");
                }
            }
        }
        let Some(now) = current.as_ref() else {
            continue;
        };
        if written.as_ref() == Some(now) || retry_at.is_some() {
            continue;
        }
        match update_role(&roles, &ns, &spec, now).await {
            Ok(wrote) => {
                if wrote {
                    metrics.scope_role_updated();
                    tracing::debug!(request = %request, namespace = %ns, pods = now.len(), "scoped Role updated");
                }
                written = Some(now.clone());
                retry_in = RETRY_MIN;
            }
            Err(e) => {
                tracing::warn!(request = %request, namespace = %ns, error = %e, retry_in = ?retry_in, "scoped Role not updated; retrying");
                retry_at = Some(tokio::time::Instant::now() + retry_in);
                retry_in = (retry_in * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Sets the Role's rules for the pods `names`. `Ok(false)` when they already were right or the Role
/// is gone (the grant was cleaned up, or someone deleted it: the next reconcile creates it again; a
/// watch never creates a Role).
async fn update_role(roles: &Api<Role>, ns: &str, spec: &WatchSpec, names: &BTreeSet<String>) -> Result<bool> {
    let pods: Vec<String> = names.iter().cloned().collect();
    let rules =
        scoped_rules(&spec.role, &spec.cluster_role_rules, &pods).map_err(|e| Error::Permanent(e.to_string()))?;
    for _ in 0..CONFLICT_RETRIES {
        let Some(existing) = roles.get_opt(&spec.role_name).await? else {
            return Ok(false);
        };
        if existing.metadata.deletion_timestamp.is_some() {
            return Ok(false);
        }
        match replace_rules(roles, existing, &rules).await {
            Ok(wrote) => return Ok(wrote),
            Err(e) if is_conflict(&e) => continue,
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Err(conflict_exhausted(ns, &spec.role_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(m: &Metrics) -> String {
        m.encode()
            .lines()
            .find(|l| l.starts_with("janus_controller_scope_watches "))
            .unwrap_or_default()
            .to_string()
    }

    fn running(task: tokio::task::JoinHandle<()>) -> Running {
        Running {
            spec: WatchSpec {
                cluster: "c".into(),
                uid: "u".into(),
                role: "exec".into(),
                cluster_role_rules: vec![],
                selector: "app=web".into(),
                role_name: "r".into(),
            },
            resync: Arc::new(tokio::sync::Notify::new()),
            task,
        }
    }

    async fn settle(task: &tokio::task::JoinHandle<()>) {
        while !task.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn only_running_watch_tasks_are_counted() {
        let metrics = Arc::new(Metrics::new());
        let watches = ScopeWatches::new(metrics.clone());
        let live = spawn_counted(&metrics, std::future::pending());
        let panics = spawn_counted(&metrics, async { panic!("a watch task that panics") });
        let returns = spawn_counted(&metrics, async {});
        settle(&panics).await;
        settle(&returns).await;
        {
            let mut map = watches.lock();
            map.insert(("a".into(), "ns".into()), running(live));
            map.insert(("b".into(), "ns".into()), running(panics));
            map.insert(("c".into(), "ns".into()), running(returns));
        }
        assert_eq!(watches.active(), 1);
        assert_eq!(gauge(&metrics), "janus_controller_scope_watches 1");
        // Stopping the live one (its task is aborted) brings the gauge to zero once the runtime drops it.
        watches.stop_request("a");
        for _ in 0..100 {
            if gauge(&metrics).ends_with(" 0") {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(gauge(&metrics), "janus_controller_scope_watches 0");
        assert_eq!(watches.active(), 0);
        drop(watches);
        assert_eq!(gauge(&metrics), "janus_controller_scope_watches 0");
    }
}
