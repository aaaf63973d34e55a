//! The reconcile function and its error policy: one AccessRequest at a time, from what is observed now.
//!
//! There are no in-memory timers: expiry, pending timeouts and retention are requeues at exact times,
//! recomputed from the object after any restart.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::recorder::{EventType, Recorder};
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use janus_api::access_request::{ApprovedSpec, reasons};
use janus_api::config::Config;
use janus_api::roles::RoleConfig;
use janus_api::rules::conditions::{reachability, removal, types};
use janus_api::rules::policy::{self, ApprovedVia, RequestFacts, Verdict};
use janus_api::rules::ttl::{self, pending_deadline_after};
use janus_api::{AccessRequest, AccessRequestStatus, Condition, FINALIZER, Grant, Phase};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::cached_request::CachedRequest;
use crate::clusters::{ClusterHandle, Clusters};
use crate::error::{Error, Result, is_not_found};
use crate::gate;
use crate::grant;
use crate::lifecycle::{self, ending, fmt_time, parse_time, retention_deadline};
use crate::metrics::Metrics;
use crate::scope::{self, ScopeWatches, WatchSpec};

/// Longest time between two looks at a live request, so drift is noticed even without events.
const RESYNC: Duration = Duration::from_secs(300);
/// How long a role's ClusterRole, as read from a cluster, is trusted. A burst of approvals then costs
/// one lookup per cluster and role, not one per grant; a ClusterRole deleted or changed meanwhile is
/// noticed this much later (RoleBindings created in between to a deleted one stay useless, not
/// dangerous; scoped Roles are brought in line with a changed one at the next reconcile after that).
const ROLE_CHECK_TTL: Duration = Duration::from_secs(10);
/// Kubernetes Events being published at once; more wait, so a slow API server holds them back.
const EVENTS_IN_FLIGHT: usize = 64;

/// A ClusterRole as read from a cluster: when, and its rules.
type SeenRole = (std::time::Instant, Vec<PolicyRule>);

/// Everything reconcile needs.
pub struct Context {
    /// Configuration.
    pub config: Arc<Config>,
    /// Cluster connections.
    pub clusters: Clusters,
    /// Publishes Kubernetes Events on requests.
    pub recorder: Arc<Recorder>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per request, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Each (cluster, ClusterRole) as last read: when, and its rules.
    roles_seen: Mutex<HashMap<(String, String), SeenRole>>,
    /// The pod watches of active pod-scoped grants.
    pub scopes: ScopeWatches,
    /// Bounds the Events published in the background.
    events: Arc<tokio::sync::Semaphore>,
    /// Each token Secret as this controller last wrote (or is deleting) it, until its watch event
    /// arrives: that event is our own echo, not drift, and needs no reconcile.
    own_secret_writes: Mutex<HashMap<String, OwnSecretWrite>>,
    /// When this controller began acting (took the lead): a request activated later was approved
    /// through this version, which records the baseline before any grant.
    started: DateTime<Utc>,
    /// The approved baseline of each live request as this controller last saw it, by uid: a baseline
    /// that disappears from status afterwards was removed, not never recorded.
    baselines: Mutex<HashMap<String, ApprovedSpec>>,
    /// The token Secrets by request, from a metadata watch the controller runs and our own writes.
    pub token_index: crate::token_index::TokenIndex,
    /// Requests whose access the reconcile running now has already cut ([`cut_access`]), by name, with
    /// the grants it cut (from the cached object).
    cut_done: Mutex<HashMap<String, Vec<janus_api::Grant>>>,
    /// What each request's decisions rest on as last seen: a watch event that brings nothing newer than
    /// what a reconcile read and acted on starts no reconcile.
    pub decision_inputs: Arc<crate::decision_inputs::DecisionInputs>,
}

/// What this controller did to a token Secret, until the watch event that echoes it.
#[derive(Debug)]
enum OwnSecretWrite {
    /// Wrote it; the write left this resourceVersion.
    Written(String),
    /// Is deleting it, since then.
    Deleting(std::time::Instant),
}

/// How long a note of a deletion is trusted: a deletion whose event never comes (the Secret was gone
/// already, or went while the watch was away) must not pass a later deletion by someone else off as
/// ours.
const DELETION_NOTE_TTL: Duration = Duration::from_secs(60);

impl Context {
    /// Builds a context.
    pub fn new(config: Arc<Config>, clusters: Clusters, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            clusters,
            recorder: Arc::new(recorder),
            scopes: ScopeWatches::new(metrics.clone()),
            metrics,
            failures: Mutex::new(HashMap::new()),
            roles_seen: Mutex::new(HashMap::new()),
            events: Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT)),
            own_secret_writes: Mutex::new(HashMap::new()),
            // Whole seconds, as `activeAt` is recorded: a request activated in this very second counts
            // as activated by this controller.
            started: DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now),
            baselines: Mutex::new(HashMap::new()),
            token_index: Default::default(),
            cut_done: Mutex::new(HashMap::new()),
            decision_inputs: Default::default(),
        }
    }

    /// The baseline this controller saw on the request earlier, if any.
    fn remembered_baseline(&self, ar: &AccessRequest) -> Option<ApprovedSpec> {
        self.remembered_baseline_of(&ar.uid()?)
    }

    /// [`Self::remembered_baseline`] by the request's uid.
    fn remembered_baseline_of(&self, uid: &str) -> Option<ApprovedSpec> {
        self.baselines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .cloned()
    }

    fn remember_baseline(&self, ar: &AccessRequest, approved: &ApprovedSpec) {
        if let Some(uid) = ar.uid() {
            self.baselines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid, approved.clone());
        }
    }

    fn forget_baseline(&self, ar: &AccessRequest) {
        if let Some(uid) = ar.uid() {
            self.baselines.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
        }
    }

    /// Whether a watch event of a token Secret is the echo of this controller's own write: the Secret
    /// exactly as written, or its deletion when this controller deleted it. Any event for the Secret
    /// settles the entry (an echo comes once; someone else's change carries another resourceVersion),
    /// so the map holds only writes whose echo is still on its way.
    pub fn is_own_secret_write(&self, name: &str, resource_version: Option<&str>, deleted: bool) -> bool {
        let written = self
            .own_secret_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        match (written, deleted) {
            (Some(OwnSecretWrite::Written(rv)), false) => resource_version == Some(rv.as_str()),
            (Some(OwnSecretWrite::Deleting(at)), true) => at.elapsed() < DELETION_NOTE_TTL,
            _ => false,
        }
    }

    /// Notes token Secrets this controller is about to delete (their deletion's echo may come before
    /// the answer): their deletion events are then not taken for drift, which would reconcile the
    /// ending request once more for nothing. A note is trusted for [`DELETION_NOTE_TTL`] only, and a
    /// call that fails takes its notes back ([`Self::not_deleting_secrets`]).
    fn deleting_secrets(&self, names: &[&str]) {
        let mut own = self.own_secret_writes.lock().unwrap_or_else(|e| e.into_inner());
        // Notes whose event never came go here (the map holds only writes in flight otherwise).
        own.retain(|_, w| !matches!(w, OwnSecretWrite::Deleting(at) if at.elapsed() >= DELETION_NOTE_TTL));
        let now = std::time::Instant::now();
        for name in names {
            own.insert((*name).to_string(), OwnSecretWrite::Deleting(now));
        }
    }

    /// Takes back the notes of [`Self::deleting_secrets`] after the deletion failed.
    fn not_deleting_secrets(&self, names: &[&str]) {
        let mut own = self.own_secret_writes.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            if matches!(own.get(*name), Some(OwnSecretWrite::Deleting(_))) {
                own.remove(*name);
            }
        }
    }

    /// The rules of `role`'s ClusterRole on the target, read at most once per [`ROLE_CHECK_TTL`] while
    /// it exists. `Err(Permanent)` names the role, the ClusterRole and the cluster when it is missing.
    async fn role_rules(&self, target: &ClusterHandle, role: &RoleConfig) -> Result<Vec<PolicyRule>> {
        let key = (target.name.clone(), role.cluster_role.clone());
        let fresh = self
            .roles_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(t, _)| t.elapsed() < ROLE_CHECK_TTL)
            .map(|(_, rules)| rules.clone());
        if let Some(rules) = fresh {
            return Ok(rules);
        }
        let read = grant::role_rules(target, role).await;
        let mut seen = self.roles_seen.lock().unwrap_or_else(|e| e.into_inner());
        match &read {
            Ok(rules) => {
                seen.insert(key, (std::time::Instant::now(), rules.clone()));
            }
            Err(_) => {
                seen.remove(&key);
            }
        }
        read
    }

    fn api(&self) -> Api<AccessRequest> {
        Api::all(self.clusters.central().client.clone())
    }
}

fn set_condition(
    status: &mut AccessRequestStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let value = if value { "True" } else { "False" };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = fmt_time(now);
            }
            c.status = value.into();
            c.reason = reason.into();
            c.message = message.into();
        }
        None => status.conditions.push(Condition {
            type_: type_.into(),
            status: value.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: fmt_time(now),
        }),
    }
}

pub(crate) fn condition_true(status: &AccessRequestStatus, type_: &str) -> bool {
    janus_api::rules::conditions::is_true(status, type_)
}

/// Writes `status`; returns the request's resourceVersion after the write.
async fn write_status(ctx: &Context, ar: &AccessRequest, status: &AccessRequestStatus) -> Result<Option<String>> {
    let mut status = status.clone();
    status.observed_generation = ar.metadata.generation;
    let patch = json!({ "status": status });
    let written = ctx
        .api()
        .patch_status(&ar.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(written.metadata.resource_version)
}

/// Publishes a Kubernetes Event in the background: the transition it reports is already written, and
/// the next request should not wait for a message about the last one.
async fn publish(ctx: &Context, ar: &AccessRequest, warning: bool, reason: &str, note: String) {
    let type_ = if warning { EventType::Warning } else { EventType::Normal };
    // The API server refuses (and so loses) a note over 1,024 bytes; error texts pass that.
    let note = crate::events::note(&note);
    let reason = reason.to_string();
    let Ok(permit) = ctx.events.clone().acquire_owned().await else {
        return;
    };
    let recorder = ctx.recorder.clone();
    let reference = ar.object_ref(&());
    let name = ar.name_any();
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&reference, type_, &reason, &note).await {
            tracing::warn!(request = %name, error = %e, "cannot publish event");
        }
        drop(permit);
    });
}

fn requeue_at(t: DateTime<Utc>, now: DateTime<Utc>) -> Action {
    let wait = (t - now).to_std().unwrap_or(Duration::ZERO);
    // A few milliseconds late rather than early: an early wake-up would only requeue again.
    Action::requeue((wait + Duration::from_millis(5)).min(RESYNC))
}

/// The clusters that may hold credentials of the request, the approved one first: the cluster in
/// `status.approved` (or remembered by this controller), the spec's if it differs (a request whose
/// spec was changed after approval, or approved before the baseline existed), and every cluster the
/// request's token Secrets name (written at each grant). Never only the spec's: whoever changed
/// `spec.cluster` must not steer the cleanup away from the cluster that holds the credentials.
fn credential_clusters(ctx: &Context, ar: &AccessRequest, recorded: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let approved = ar
        .status
        .as_ref()
        .and_then(|s| s.approved.as_ref())
        .map(|a| a.cluster.clone());
    let remembered = ctx.remembered_baseline(ar).map(|a| a.cluster);
    for c in approved
        .into_iter()
        .chain(remembered)
        .chain(std::iter::once(ar.spec.cluster.clone()))
        .chain(recorded)
    {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Removes every credential of the request, on every cluster that may hold some (see
/// [`credential_clusters`]; within a cluster they are found by label in all namespaces, so namespaces
/// added to or removed from the spec make no difference). Ok(empty) when nothing is left.
async fn remove_credentials(ctx: &Context, ar: &AccessRequest) -> Result<Vec<String>> {
    let name = ar.name_any();
    let central = ctx.clusters.central();
    // Not twice in one reconcile: `reconcile` may have cut it already, from the cached object.
    // Cut already only if the grants cut (from the cached object) are the ones this object names: a
    // grant recorded since is cut here too (a deletion that finds nothing is cheap).
    let done = ctx.cut_done.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
    let named = ar.status.as_ref().map(|s| s.grants.as_slice()).unwrap_or_default();
    let cut = done.is_some_and(|g| g == named) || cut_access(ctx, ar).await;
    if cut {
        tracing::debug!(request = %name, "access cut");
        // The grants the status names are cut; what follows (the label sweep for anything it does not
        // name, the Secrets, the status) waits for a slot of its own, and the slot for cuts goes to
        // the next cut. Not when the cut failed: then the label sweep below is what cuts.
        crate::bulkhead::access_cut().await;
        tracing::debug!(request = %name, "admitted for the rest of the ending");
    }
    let mut left = BTreeSet::new();
    let mut unreachable = Vec::new();
    // The token Secrets are looked up once: they say which clusters got tokens, and go last. The index
    // (a metadata watch plus every write this controller began) answers without a list of every token
    // Secret on the API server. Only a deposed leader's grant still finishing could write one the
    // index does not know yet; its token is dead with its ServiceAccount (the clusters' final look
    // below), and the Secret goes with the request.
    let (secrets, begun) = match ctx.token_index.of_request(&name) {
        Some(found) => (found, Vec::new()),
        // The list finds what is written; the clusters of writes begun lately are added (a write may
        // have failed after its ServiceAccount was made).
        None => (
            grant::token_secrets(central, &ctx.config.namespace, &name).await?,
            ctx.token_index.pending_clusters(&name),
        ),
    };
    let mut recorded = grant::secret_clusters(&secrets);
    recorded.extend(begun);
    for cluster in credential_clusters(ctx, ar, recorded) {
        match ctx.clusters.get(&cluster).await.map_err(Error::from) {
            Ok(target) => left.extend(grant::cleanup_cluster(&target, &name).await?),
            Err(Error::ClusterUnavailable { message, .. }) => {
                // Retried until it is reachable; a cluster removed from the configuration can
                // neither be reached nor used any more.
                if ctx.clusters.is_known(&cluster).await? {
                    unreachable.push(format!("cluster {cluster} unreachable: {message}"));
                }
            }
            Err(e) => return Err(e),
        }
    }
    // Central Secrets go now in any case.
    let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    ctx.deleting_secrets(&names);
    match grant::delete_secrets(central, &ctx.config.namespace, &secrets).await {
        Ok(still) => left.extend(still),
        Err(e) => {
            ctx.not_deleting_secrets(&names);
            return Err(e);
        }
    }
    if !unreachable.is_empty() {
        return Err(Error::CleanupPending(unreachable.join("; ")));
    }
    Ok(left.into_iter().collect())
}

/// Takes the access of the grants in the request's status away at once, on the cluster they were
/// approved for ([`grant::cut_access`]), before the slower label-based cleanup lists anything. A
/// failure here only means the cleanup that follows does the work (and reports what it cannot).
/// True when the access of every grant in the status is cut.
async fn cut_access(ctx: &Context, ar: &AccessRequest) -> bool {
    let Some(status) = ar.status.as_ref().filter(|s| !s.grants.is_empty()) else {
        return false;
    };
    let approved = status.approved.as_ref().map(|a| a.cluster.as_str());
    cut_grants(
        ctx,
        &ar.name_any(),
        ar.uid().as_deref(),
        approved,
        &ar.spec.cluster,
        &status.grants,
    )
    .await
}

/// [`cut_access`] from the parts of a request it needs (a cached request has no more): its name and
/// uid, the cluster in `status.approved`, the one in its spec, and its grants. The cluster is the
/// approved one, else the one this controller remembers as approved, else the spec's.
async fn cut_grants(
    ctx: &Context,
    name: &str,
    uid: Option<&str>,
    approved_cluster: Option<&str>,
    spec_cluster: &str,
    grants: &[Grant],
) -> bool {
    if grants.is_empty() {
        return false;
    }
    let cluster = approved_cluster
        .map(str::to_string)
        .or_else(|| uid.and_then(|u| ctx.remembered_baseline_of(u)).map(|a| a.cluster))
        .unwrap_or_else(|| spec_cluster.to_string());
    let cut = match ctx.clusters.get(&cluster).await {
        Ok(target) => grant::cut_access(&target, name, grants).await,
        Err(e) => Err(Error::from(e)),
    };
    match cut {
        Ok(every) => every,
        Err(e) => {
            tracing::debug!(request = %name, cluster = %cluster, error = %e, "access not cut at once; the cleanup follows");
            false
        }
    }
}

/// Moves a request to a terminal phase and removes its credentials; the phase's condition carries the
/// phase name as its reason.
async fn finish(
    ctx: &Context,
    ar: &AccessRequest,
    phase: Phase,
    message: String,
    now: DateTime<Utc>,
) -> Result<Action> {
    finish_with(ctx, ar, phase, &phase.to_string(), message, now).await
}

/// [`finish`] with a specific condition reason, which the audit recorder and other readers act on
/// (never the message's wording).
async fn finish_with(
    ctx: &Context,
    ar: &AccessRequest,
    phase: Phase,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> Result<Action> {
    let mut status = ar.status.clone().unwrap_or_default();
    // The pod watches first: a watch must not write a Role the cleanup is removing.
    ctx.scopes.stop_request(&ar.name_any());
    let removal = remove_credentials(ctx, ar).await;
    status.phase = phase;
    status.message = message.clone();
    status.ended_at = Some(fmt_time(now));
    let type_ = phase.to_string();
    set_condition(&mut status, &type_, true, reason, &message, now);
    let result = match &removal {
        Ok(left) if left.is_empty() => {
            set_condition(
                &mut status,
                types::CREDENTIALS_REMOVED,
                true,
                removal::REMOVED,
                "all credentials removed",
                now,
            );
            Ok(())
        }
        Ok(left) => {
            let m = format!("still present: {}", left.join(", "));
            set_condition(
                &mut status,
                types::CREDENTIALS_REMOVED,
                false,
                removal::CLEANUP_PENDING,
                &m,
                now,
            );
            Err(Error::CleanupPending(m))
        }
        Err(e) => {
            set_condition(
                &mut status,
                types::CREDENTIALS_REMOVED,
                false,
                removal::CLEANUP_PENDING,
                &e.to_string(),
                now,
            );
            Err(Error::CleanupPending(e.to_string()))
        }
    };
    write_status(ctx, ar, &status).await?;
    ctx.metrics.transition(phase);
    publish(ctx, ar, matches!(phase, Phase::Failed), reason, message).await;
    tracing::info!(request = %ar.name_any(), phase = %phase, reason, "request ended");
    result?;
    Ok(retention_deadline(&status, &ctx.config).map_or(Action::await_change(), |t| requeue_at(t, now)))
}

/// Adds our finalizer; returns the request as the API server has it afterwards, or `None` when the
/// request changed since `ar` was read (judge it again).
///
/// The list is written whole, so the resourceVersion it was read with goes along as a precondition
/// (409 when stale): a finalizer another controller added since would otherwise be dropped.
async fn add_finalizer(ctx: &Context, ar: &AccessRequest) -> Result<Option<AccessRequest>> {
    let mut finalizers = ar.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = json!({
        "metadata": {"resourceVersion": ar.metadata.resource_version, "finalizers": finalizers},
    });
    match ctx
        .api()
        .patch(&ar.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(written) => Ok(Some(written)),
        Err(e) if crate::error::is_conflict(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn remove_finalizer(ctx: &Context, ar: &AccessRequest) -> Result<()> {
    let Some(fins) = &ar.metadata.finalizers else {
        return Ok(());
    };
    let Some(idx) = fins.iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    // `test` makes the removal safe against a concurrent change of the list.
    let patch = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{idx}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{idx}")}
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| Error::Permanent(e.to_string()))?;
    match ctx
        .api()
        .patch(&ar.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reconciles one AccessRequest.
pub async fn reconcile(ar: Arc<CachedRequest>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciled();
    let name = ar.name_any();
    tracing::debug!(request = %name, rv = ?ar.metadata.resource_version, "reconcile");
    // The cache can lag behind this controller's own last status write (an event about a Secret may
    // trigger the reconcile first); acting on a stale phase would redo a grant and move activeAt. One
    // GET per reconcile buys decisions on the request as it is now.
    //
    // A decision that ends access (withdrawal, revocation, denial: never removed once made) or a
    // deletion needs nothing fresher to be acted on: the access goes first, before that GET.
    let live = ar.live_grants();
    let cut = (ar.spec.ends() || ar.metadata.deletion_timestamp.is_some()) && live.is_some();
    let result = bounded(&name, &ar.spec.cluster, &ctx, async {
        // Remembered only when done: a failed cut is tried again by the ending that follows.
        if let Some(status) = live.filter(|_| cut)
            && cut_grants(
                &ctx,
                &name,
                ar.uid().as_deref(),
                status.approved_cluster.as_deref(),
                &ar.spec.cluster,
                &status.grants,
            )
            .await
        {
            ctx.cut_done
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone(), status.grants.clone());
        }
        match ctx.api().get_opt(&name).await {
            Ok(Some(fresh)) => {
                ctx.decision_inputs.acting_on(&fresh);
                reconcile_inner(&fresh, &ctx).await
            }
            Ok(None) => Ok(Action::await_change()),
            Err(e) => Err(e.into()),
        }
    })
    .await;
    if cut {
        // Also when the reconcile stopped early (an error, the time bound).
        ctx.cut_done.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
    }
    result
}

/// Reconciles a request just read from the API server (not from the cache), without reading it again.
pub async fn reconcile_read(ar: &AccessRequest, ctx: &Context) -> Result<Action> {
    ctx.metrics.reconciled();
    bounded(&ar.name_any(), &ar.spec.cluster, ctx, reconcile_inner(ar, ctx)).await
}

/// A bound on every reconcile (a request that never completes must not hold its object forever), and
/// the failure count reset on success.
async fn bounded(
    name: &str,
    cluster: &str,
    ctx: &Context,
    attempt: impl std::future::Future<Output = Result<Action>>,
) -> Result<Action> {
    let result = match tokio::time::timeout(Duration::from_secs(30), attempt).await {
        Ok(r) => r,
        Err(_) => Err(Error::ClusterUnavailable {
            cluster: cluster.to_string(),
            message: "reconcile timed out after 30s".into(),
        }),
    };
    if result.is_ok() {
        ctx.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }
    result
}

async fn reconcile_inner(ar: &AccessRequest, ctx: &Context) -> Result<Action> {
    let now = Utc::now();
    let name = ar.name_any();

    if ar.metadata.deletion_timestamp.is_some() {
        ctx.scopes.stop_request(&name);
        let left = remove_credentials(ctx, ar).await?;
        if !left.is_empty() {
            return Err(Error::CleanupPending(format!("still present: {}", left.join(", "))));
        }
        remove_finalizer(ctx, ar).await?;
        ctx.forget_baseline(ar);
        return Ok(Action::await_change());
    }
    // Judged as the finalizer patch left it: the status write that follows carries the object's
    // resourceVersion as a precondition, and the one read before the patch made every new request's
    // first write fail with a conflict, its whole judging (a read on the target cluster) redone.
    let with_finalizer;
    let ar = if ar.finalizers().iter().any(|f| f == FINALIZER) {
        ar
    } else {
        // Its echo brings nothing this reconcile does not act on now; noted before the patch, as the
        // echo may come before the patch's answer.
        ctx.decision_inputs.adding_finalizer(ar);
        let Some(written) = add_finalizer(ctx, ar).await? else {
            tracing::debug!(request = %name, "request changed before its finalizer was added; judging it again");
            return Ok(Action::requeue(Duration::ZERO));
        };
        with_finalizer = written;
        &with_finalizer
    };
    let status = ar.status.clone().unwrap_or_default();

    if status.phase.is_terminal() {
        // Ended by another replica's term, or while this one was not looking: no watch outlives it.
        ctx.scopes.stop_request(&name);
        if !condition_true(&status, types::CREDENTIALS_REMOVED) {
            // Keep the reason the request ended with: retrying the cleanup does not change why.
            let reason = status
                .phase_reason()
                .map_or_else(|| status.phase.to_string(), str::to_string);
            return finish_with(
                ctx,
                ar,
                status.phase,
                &reason,
                status.message.clone(),
                parse_time(status.ended_at.as_deref().unwrap_or("")).unwrap_or(now),
            )
            .await;
        }
        ctx.forget_baseline(ar);
        return match retention_deadline(&status, &ctx.config) {
            Some(t) if t <= now => {
                tracing::info!(request = %name, "deleting after retention");
                match ctx.api().delete(&name, &Default::default()).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(Action::await_change())
            }
            Some(t) => Ok(requeue_at(t, now)),
            None => Ok(Action::await_change()),
        };
    }

    // The spec is checked on every reconcile, not only before approval: whoever can patch the object
    // (not only the web) must not be able to widen what was approved.
    if let Some(changed) = spec_changes(&status, ar) {
        return fail_changed(ctx, ar, &changed, now).await;
    }
    match &status.approved {
        Some(approved) => ctx.remember_baseline(ar, approved),
        None if matches!(status.phase, Phase::Scheduled | Phase::Approved | Phase::Active)
            && !may_record_baseline(ctx, ar, &status) =>
        {
            return fail_baseline_removed(ctx, ar, now).await;
        }
        None => {}
    }
    if let Some(end) = ending(&ar.spec) {
        return finish(ctx, ar, end.phase(), end.message(), now).await;
    }
    let known = ctx.clusters.is_known(&ar.spec.cluster).await?;
    // The role must be configured and the pod scope well-formed on every reconcile: a role removed
    // from the configuration ends the grants that use it.
    let valid = lifecycle::validate_static(&ar.spec, &ctx.config, known).and_then(|()| {
        janus_api::rules::scope::check_request(&ctx.config.roles, &ar.spec)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    if let Err(msg) = valid {
        if status.phase == Phase::Pending {
            return finish_with(ctx, ar, Phase::Denied, reasons::VALIDATION_FAILED, msg, now).await;
        }
        // Access that has run out ends as Expired below (without any grant): that is what happened.
        let expired = status
            .active_at
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|a| expiry(ctx, ar, &status, a) <= now);
        if !expired {
            tracing::warn!(request = %name, %msg, "live request no longer valid; ending it");
            let msg = format!("no longer valid: {msg}; credentials removed");
            return finish_with(ctx, ar, Phase::Failed, reasons::VALIDATION_FAILED, msg, now).await;
        }
    }

    match status.phase {
        // Not granted yet: the approval policy decides, on every reconcile.
        Phase::Pending | Phase::Scheduled | Phase::Approved => gate(ctx, ar, status, now).await,
        // Once active, eligibility is not judged again (revocation is the tool); validate_static above
        // still bounds it.
        Phase::Active => grant_or_maintain(ctx, ar, status, ar.metadata.resource_version.clone(), now).await,
        _ => Ok(Action::await_change()),
    }
}

/// The fields that differ from what was approved, for a request past its approval. A live request
/// without a recorded baseline (approved before this check existed) has it recorded at its next
/// grant pass; one whose approval vanished has changed.
fn spec_changes(status: &AccessRequestStatus, ar: &AccessRequest) -> Option<Vec<&'static str>> {
    let changed = match &status.approved {
        Some(approved) => approved.changes(&ar.spec),
        None if matches!(status.phase, Phase::Scheduled | Phase::Approved | Phase::Active)
            && ar.spec.approval.is_none()
            && ar.spec.approvals.is_empty() =>
        {
            vec!["spec.approval"]
        }
        None => Vec::new(),
    };
    (!changed.is_empty()).then_some(changed)
}

/// Whether a live request without `status.approved` may have its baseline recorded now, from the
/// spec as it is: only one approved before this version recorded baselines. That is a request still
/// `Approved` (not granted yet), or one activated before this controller began acting. This controller
/// records the baseline in the same status write that says Approved, before any grant, so a request
/// activated after it began acting always has one; and a baseline it has seen on a request never goes
/// away. A request that fails these tests lost its baseline to someone who can write status, and the
/// spec beside it can no longer be trusted.
fn may_record_baseline(ctx: &Context, ar: &AccessRequest, status: &AccessRequestStatus) -> bool {
    if ctx.remembered_baseline(ar).is_some() {
        return false;
    }
    status.phase == Phase::Approved
        || status
            .active_at
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|a| a < ctx.started)
}

/// Ends a live request whose recorded baseline was removed: Failed as a spec change, credentials
/// removed (on the approved cluster, if this controller saw the baseline), and the baseline this
/// controller saw written back so the status and the audit log show what was approved.
async fn fail_baseline_removed(ctx: &Context, ar: &AccessRequest, now: DateTime<Utc>) -> Result<Action> {
    tracing::warn!(request = %ar.name_any(), "approval record removed from status; ending the request");
    let mut restored = ar.clone();
    if let Some(baseline) = ctx.remembered_baseline(ar) {
        restored.status.get_or_insert_with(Default::default).approved = Some(baseline);
    }
    let msg = "spec changed after approval (approval record removed: status.approved); credentials removed".to_string();
    finish_with(
        ctx,
        &restored,
        Phase::Failed,
        reasons::SPEC_CHANGED_AFTER_APPROVAL,
        msg,
        now,
    )
    .await
}

/// Ends a request whose spec changed after approval: Failed, credentials removed, the changed fields
/// named (never their values, which the audit log keeps beside the approved ones).
async fn fail_changed(ctx: &Context, ar: &AccessRequest, changed: &[&str], now: DateTime<Utc>) -> Result<Action> {
    let fields = changed.join(", ");
    tracing::warn!(request = %ar.name_any(), changed = %fields, "spec changed after approval; ending the request");
    let msg = format!("spec changed after approval ({fields}); credentials removed");
    finish_with(ctx, ar, Phase::Failed, reasons::SPEC_CHANGED_AFTER_APPROVAL, msg, now).await
}

/// When the request was created (auto-approval windows and the pending deadline count from it).
fn created(ar: &AccessRequest, now: DateTime<Utc>) -> DateTime<Utc> {
    ar.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| lifecycle::from_jiff(&t.0))
        .unwrap_or(now)
}

/// When the request's access ends: [`ttl::expires_at`], with extensions also capped at the maximum of the
/// policy that approved it ([`ttl::lifetime_bound`], read from `status.policy` and the configuration as
/// it is now).
fn expiry(ctx: &Context, ar: &AccessRequest, status: &AccessRequestStatus, active_at: DateTime<Utc>) -> DateTime<Utc> {
    let bound = ttl::lifetime_bound(&ctx.config, &ar.spec, status.policy.as_ref());
    ttl::expires_at_bounded(&ar.spec, active_at, &ctx.config, &bound)
}

/// The pending expiry of the policy the request was last evaluated under (the global one before any
/// evaluation, or when that policy is gone from the configuration): used while the target cluster
/// cannot be read, so an unreachable cluster does not keep a request pending forever.
fn last_pending_expiry(config: &Config, status: &AccessRequestStatus) -> i64 {
    status
        .policy
        .as_ref()
        .and_then(|p| config.policies.iter().find(|c| c.name == p.name))
        .and_then(|p| p.pending_expiry_seconds)
        .unwrap_or(config.pending_expiry_seconds)
}

/// Writes `status` when it differs from what the request carries (or the spec moved on): reconciles of a
/// waiting request must not write the same status again and again.
///
/// The write carries the resourceVersion the status was judged from, as a precondition: what the gate
/// writes (the policy's tally, and `status.approved`, the baseline every later reconcile compares the
/// spec with) must describe that very spec. An approval appended between the read and this write
/// would otherwise leave a baseline of the older spec, and the next reconcile would fail a request
/// that was legitimately approved. `Ok(Some(action))` when the request moved on meanwhile (409): judge
/// it again at once.
async fn write_if_changed(
    ctx: &Context,
    ar: &AccessRequest,
    old: &AccessRequestStatus,
    status: &AccessRequestStatus,
) -> Result<Option<Action>> {
    Ok(match write_if_changed_rv(ctx, ar, old, status).await? {
        Wrote::Moved(again) => Some(again),
        Wrote::Unchanged | Wrote::Written(_) => None,
    })
}

/// What [`write_if_changed_rv`] did.
enum Wrote {
    /// Nothing to write.
    Unchanged,
    /// Written; the request's resourceVersion after the write.
    Written(Option<String>),
    /// The request moved on meanwhile: judge it again.
    Moved(Action),
}

/// [`write_if_changed`], telling the resourceVersion the write left (the grant that follows declares
/// the request Active only over that very version).
async fn write_if_changed_rv(
    ctx: &Context,
    ar: &AccessRequest,
    old: &AccessRequestStatus,
    status: &AccessRequestStatus,
) -> Result<Wrote> {
    if status == old && old.observed_generation == ar.metadata.generation {
        return Ok(Wrote::Unchanged);
    }
    let mut status = status.clone();
    status.observed_generation = ar.metadata.generation;
    // A resourceVersion inside a patch is a precondition: kube-apiserver's Store.Update
    // (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go) refuses an object whose
    // resourceVersion is not the stored one with 409 Conflict.
    let patch = json!({
        "metadata": {"resourceVersion": ar.metadata.resource_version},
        "status": status,
    });
    match ctx
        .api()
        .patch_status(&ar.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(written) => Ok(Wrote::Written(written.metadata.resource_version)),
        Err(e) if crate::error::is_conflict(&e) => {
            tracing::debug!(request = %ar.name_any(), "request changed while it was judged; judging it again");
            Ok(Wrote::Moved(Action::requeue(Duration::ZERO)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Ends a request its policy refuses: denied while pending, failed once approved.
async fn refuse(ctx: &Context, ar: &AccessRequest, phase: Phase, msg: String, now: DateTime<Utc>) -> Result<Action> {
    if phase == Phase::Pending {
        return finish_with(ctx, ar, Phase::Denied, reasons::VALIDATION_FAILED, msg, now).await;
    }
    tracing::warn!(request = %ar.name_any(), %msg, "approved request no longer valid; ending it");
    let msg = match phase {
        Phase::Scheduled => format!("no longer valid: {msg}; access will not start"),
        _ => format!("no longer valid: {msg}; credentials removed"),
    };
    finish_with(ctx, ar, Phase::Failed, reasons::VALIDATION_FAILED, msg, now).await
}

/// The approval-policy gate, for a request that is Pending, Scheduled, or Approved without credentials
/// yet. It reads the requested namespaces on the target cluster (one GET each: labels and the owners
/// annotation), evaluates the policy as configured now, writes `status.policy` and `PolicySatisfied`
/// (only when they changed), and moves on only on [`Verdict::Approved`]: to Scheduled before
/// `spec.startAt`, else to Approved and the grant.
async fn gate(ctx: &Context, ar: &AccessRequest, status: AccessRequestStatus, now: DateTime<Utc>) -> Result<Action> {
    let old = status.clone();
    let mut status = status;
    let phase = status.phase;
    let created = created(ar, now);
    let first = status.conditions.is_empty();
    if phase == Phase::Pending {
        set_condition(
            &mut status,
            types::SUBMITTED,
            true,
            types::SUBMITTED,
            &format!("requested by {}", ar.spec.requester),
            now,
        );
    }
    let starts = match ar.spec.start_at.as_deref() {
        None => None,
        Some(s) => match parse_time(s) {
            Some(t) => Some(t),
            None => return refuse(ctx, ar, phase, format!("startAt {s:?} is not an RFC 3339 time"), now).await,
        },
    };

    if starts.is_some() && ar.spec.break_glass.is_some() {
        // As the web refuses it: break-glass is access now, not an approval-free way to schedule it.
        return refuse(
            ctx,
            ar,
            phase,
            "break-glass access starts at once; it cannot have a startAt".into(),
            now,
        )
        .await;
    }

    // The namespaces as the target cluster has them now: policies match on their labels and name
    // owners in their annotations.
    let read = match ctx.clusters.get(&ar.spec.cluster).await.map_err(Error::from) {
        Ok(target) => grant::read_namespaces(&target, &ar.spec.namespaces).await,
        Err(e) => Err(e),
    };
    let namespaces = match read {
        Ok(n) => n,
        // A namespace that does not exist (or may not be read) is refused as before policies.
        Err(Error::Permanent(msg)) if phase == Phase::Pending => {
            return finish_with(ctx, ar, Phase::Denied, reasons::VALIDATION_FAILED, msg, now).await;
        }
        Err(Error::Permanent(msg)) => return finish(ctx, ar, Phase::Failed, msg, now).await,
        Err(e) => {
            // Without the namespaces no policy can be judged (a label selector would silently not
            // match): nothing moves on, but a pending request still times out.
            if phase == Phase::Pending
                && pending_deadline_after(created, last_pending_expiry(&ctx.config, &status)).is_some_and(|d| d <= now)
            {
                let msg = format!("no decision within {}s", last_pending_expiry(&ctx.config, &status));
                return finish_with(ctx, ar, Phase::Denied, reasons::PENDING_TIMEOUT, msg, now).await;
            }
            let msg = format!("waiting for cluster {}: {e}", ar.spec.cluster);
            let reason = match e {
                Error::ClusterUnavailable { .. } => reachability::CLUSTER_UNAVAILABLE,
                _ => reachability::CLUSTER_ERROR,
            };
            status.message = msg.clone();
            set_condition(&mut status, types::CLUSTER_REACHABLE, false, reason, &msg, now);
            if let Some(again) = write_if_changed(ctx, ar, &old, &status).await? {
                return Ok(again);
            }
            announce_submitted(ctx, ar, first).await;
            return Err(e);
        }
    };
    // A workload scope names an object on the target: one that does not exist is refused before
    // anyone is asked to approve it.
    let mut lookup_failed = None;
    if let Some(scope) = ar
        .spec
        .pod_scope
        .as_ref()
        .filter(|s| s.workload.is_some() && phase == Phase::Pending)
        && let Some(ns) = ar.spec.namespaces.first()
    {
        let looked_up = match ctx.clusters.get(&ar.spec.cluster).await.map_err(Error::from) {
            Ok(target) => scope::resolve_selector(&target, scope, ns, None).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match looked_up {
            Ok(()) => {}
            Err(Error::Permanent(msg)) => return refuse(ctx, ar, phase, msg, now).await,
            // A lookup that failed for now must not keep the request from timing out: the failure is
            // recorded and the request goes through the gate as usual (an approval still resolves the
            // workload again before granting); the error is returned after the gate for a retry.
            Err(e) => {
                let msg = format!(
                    "looking up the workload of the pod scope on cluster {}: {e}",
                    ar.spec.cluster
                );
                let reason = match e {
                    Error::ClusterUnavailable { .. } => reachability::CLUSTER_UNAVAILABLE,
                    _ => reachability::CLUSTER_ERROR,
                };
                set_condition(&mut status, types::CLUSTER_REACHABLE, false, reason, &msg, now);
                lookup_failed = Some(e);
            }
        }
    }
    if lookup_failed.is_none()
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == types::CLUSTER_REACHABLE && c.status != "True")
    {
        set_condition(
            &mut status,
            types::CLUSTER_REACHABLE,
            true,
            reachability::REACHABLE,
            "",
            now,
        );
    }

    let facts = RequestFacts::of(&ar.spec, &namespaces, created);
    let governing = match policy::govern(&ctx.config, &facts) {
        Ok(g) => g,
        Err(e) => return refuse(ctx, ar, phase, e.to_string(), now).await,
    };
    let verdict = policy::evaluate(&ctx.config, &ar.spec, &facts);
    if let Verdict::Invalid(msg) = verdict {
        return refuse(ctx, ar, phase, msg, now).await;
    }
    let policy = gate::policy_status(&governing, &verdict);
    let (satisfied, reason, message) = gate::satisfied(&policy, &verdict);
    set_condition(
        &mut status,
        gate::types::POLICY_SATISFIED,
        satisfied,
        reason,
        &message,
        now,
    );
    status.policy = Some(policy.clone());

    let (via, tally) = match verdict {
        Verdict::Approved { via, tally } => (via, tally),
        Verdict::Pending(_) if phase != Phase::Pending => {
            // Approved earlier, but the policy as configured now is no longer satisfied (its approvers
            // or quorum changed): access that has not started does not start. The status it ends with
            // shows the policy as judged now.
            let mut judged = ar.clone();
            judged.status = Some(status);
            return refuse(
                ctx,
                &judged,
                phase,
                format!("the approval policy is no longer satisfied: {message}"),
                now,
            )
            .await;
        }
        Verdict::Pending(_) | Verdict::Invalid(_) => {
            let expiry = governing.pending_expiry_seconds;
            let deadline = pending_deadline_after(created, expiry);
            if deadline.is_some_and(|d| d <= now) {
                let msg = format!("no decision within {expiry}s");
                let mut timed_out = ar.clone();
                timed_out.status = Some(status);
                return finish_with(ctx, &timed_out, Phase::Denied, reasons::PENDING_TIMEOUT, msg, now).await;
            }
            status.phase = Phase::Pending;
            status.message = format!("waiting for approvals: {message}");
            if let Some(again) = write_if_changed(ctx, ar, &old, &status).await? {
                return Ok(again);
            }
            announce_submitted(ctx, ar, first).await;
            if let Some(e) = lookup_failed {
                return Err(e);
            }
            // Judged again at its deadline, and at least every RESYNC without one: the namespaces'
            // labels and owners annotation can change who governs and who may approve, and no event
            // about the request says so.
            return Ok(deadline.map_or(Action::requeue(RESYNC), |t| requeue_at(t, now)));
        }
    };

    if phase == Phase::Pending || status.approved.is_none() {
        // What was approved is fixed from here on; every later reconcile compares the spec with it.
        let approvers = gate::approvers(via, &tally);
        status.approved = Some(ApprovedSpec::record(&ar.spec, &approvers, ttl::approval_ttl(&ar.spec)));
    }
    let (approved_reason, approved_message) = gate::approved_by(via, &policy, &ar.spec);
    if phase == Phase::Pending {
        status.approved_at = Some(fmt_time(now));
        set_condition(
            &mut status,
            types::APPROVED,
            true,
            approved_reason,
            &approved_message,
            now,
        );
        // A start whose whole window passed before the approval: approved, but nothing to grant any more.
        if let Some(start) = starts {
            let end = expiry(ctx, ar, &status, start);
            if end <= now {
                let msg = format!(
                    "{approved_message}, but the access window from startAt {} to {} had already passed; nothing was granted",
                    fmt_time(start),
                    fmt_time(end)
                );
                let mut late = ar.clone();
                late.status = Some(status);
                announce_submitted(ctx, ar, first).await;
                return finish(ctx, &late, Phase::Expired, msg, now).await;
            }
        }
    }
    announce_submitted(ctx, ar, first).await;

    if let Some(start) = starts.filter(|s| *s > now) {
        // Approved ahead: no credentials until startAt. The requeue is recomputed from the object on
        // every reconcile, so a restart loses nothing.
        status.phase = Phase::Scheduled;
        status.message = format!("{approved_message}; access starts at {}", fmt_time(start));
        set_condition(
            &mut status,
            gate::types::SCHEDULED,
            true,
            gate::reasons::STARTS_LATER,
            &format!("access starts at {}", fmt_time(start)),
            now,
        );
        if let Some(again) = write_if_changed(ctx, ar, &old, &status).await? {
            return Ok(again);
        }
        if let Some(a) = &status.approved {
            ctx.remember_baseline(ar, a);
        }
        if phase == Phase::Pending {
            announce_approval(ctx, ar, via, &approved_message).await;
            ctx.metrics.transition(Phase::Scheduled);
            tracing::info!(request = %ar.name_any(), starts = %fmt_time(start), "request approved ahead; scheduled");
        }
        return Ok(requeue_at(start, now));
    }

    // Approved: record it before granting, so a crash in the middle resumes the grant.
    status.phase = Phase::Approved;
    status.message = format!("{approved_message}; issuing credentials");
    if phase == Phase::Scheduled {
        let started = starts.map(fmt_time).unwrap_or_default();
        set_condition(
            &mut status,
            gate::types::SCHEDULED,
            false,
            gate::reasons::STARTED,
            &format!("access started at {started}"),
            now,
        );
    }
    let rv = match write_if_changed_rv(ctx, ar, &old, &status).await? {
        Wrote::Moved(again) => return Ok(again),
        Wrote::Written(rv) => rv,
        Wrote::Unchanged => ar.metadata.resource_version.clone(),
    };
    if let Some(a) = &status.approved {
        ctx.remember_baseline(ar, a);
    }
    if phase != Phase::Approved {
        ctx.metrics.transition(Phase::Approved);
    }
    if phase == Phase::Pending {
        announce_approval(ctx, ar, via, &approved_message).await;
    }
    grant_or_maintain(ctx, ar, status, rv, now).await
}

/// The Event and metric of a request seen for the first time.
async fn announce_submitted(ctx: &Context, ar: &AccessRequest, first: bool) {
    if first {
        ctx.metrics.transition(Phase::Pending);
        publish(
            ctx,
            ar,
            false,
            types::SUBMITTED,
            format!("requested by {}", ar.spec.requester),
        )
        .await;
    }
}

/// The Events and metric of an approval: `Approved` always, `AutoApproved` for auto-approval.
async fn announce_approval(ctx: &Context, ar: &AccessRequest, via: ApprovedVia, message: &str) {
    ctx.metrics.approved(gate::via_label(via));
    publish(ctx, ar, false, types::APPROVED, message.to_string()).await;
    if via == ApprovedVia::Auto {
        publish(ctx, ar, false, gate::reasons::AUTO_APPROVED, message.to_string()).await;
    }
}

async fn target_or_wait(
    ctx: &Context,
    ar: &AccessRequest,
    status: &mut AccessRequestStatus,
    now: DateTime<Utc>,
) -> Result<Option<ClusterHandle>> {
    match ctx.clusters.get(&ar.spec.cluster).await.map_err(Error::from) {
        Ok(t) => Ok(Some(t)),
        Err(e @ Error::ClusterUnavailable { .. }) => {
            let msg = format!("waiting for cluster {}: {e}", ar.spec.cluster);
            if status.message != msg {
                status.message = msg.clone();
                set_condition(
                    status,
                    types::CLUSTER_REACHABLE,
                    false,
                    reachability::CLUSTER_UNAVAILABLE,
                    &msg,
                    now,
                );
                write_status(ctx, ar, status).await?;
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Issues (or re-issues) the credentials of an approved request and declares it Active, or keeps an
/// Active one as it is. `rv`: the request's resourceVersion that `status` and `ar` describe (after
/// this reconcile's own status write, if any); the Active write is made only over that version.
async fn grant_or_maintain(
    ctx: &Context,
    ar: &AccessRequest,
    mut status: AccessRequestStatus,
    mut rv: Option<String>,
    now: DateTime<Utc>,
) -> Result<Action> {
    if status.approved.is_none() {
        // Approved before the baseline was recorded (an upgrade): record it now, once. Only before
        // the grant or for a request activated before this controller began acting; any other live
        // request without one was ended by `reconcile_inner` (`may_record_baseline`).
        status.approved = ApprovedSpec::of(&ar.spec);
        rv = write_status(ctx, ar, &status).await?;
        if let Some(a) = &status.approved {
            ctx.remember_baseline(ar, a);
        }
    }
    // The policy's maximum (break-glass: its own) bounds the access for as long as it lasts, not only
    // at approval: a configuration that lowered it ends access that is now too long, as
    // validate_static does for the global maxTtlSeconds (a request that ran out ends Expired below).
    let bound = ttl::lifetime_bound(&ctx.config, &ar.spec, status.policy.as_ref());
    let effective = ttl::effective_ttl(&ar.spec);
    if effective > bound.max_ttl_seconds {
        let expired = status
            .active_at
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|a| expiry(ctx, ar, &status, a) <= now);
        if !expired {
            let msg = format!(
                "no longer valid: a duration of {effective}s is longer than {} allows ({}s); credentials removed",
                bound.source, bound.max_ttl_seconds
            );
            tracing::warn!(request = %ar.name_any(), %msg, "live request no longer valid; ending it");
            return finish_with(ctx, ar, Phase::Failed, reasons::VALIDATION_FAILED, msg, now).await;
        }
    }
    let Some(target) = target_or_wait(ctx, ar, &mut status, now).await? else {
        return Ok(Action::await_change());
    };
    // Whole seconds, as status records it: the requeue time then equals the published expiresAt.
    let now_s = chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let active_at = status.active_at.as_deref().and_then(parse_time).unwrap_or(now_s);
    let expires = ttl::expires_at_bounded(&ar.spec, active_at, &ctx.config, &bound);
    if expires <= now {
        return finish(ctx, ar, Phase::Expired, "access expired".into(), now).await;
    }
    let recorded = status.expires_at.as_deref().and_then(parse_time);
    // Until when the tokens as issued serve this access: `expires`, or earlier when the cluster
    // shortened them (they are renewed ahead of their own expiry, not on every reconcile).
    let valid_until = if status.phase == Phase::Approved
        || recorded != Some(expires)
        || status.grants.len() != ar.spec.namespaces.len()
    {
        None
    } else {
        grant::tokens_valid_until(
            ctx.clusters.central(),
            &ctx.config.namespace,
            &ar.name_any(),
            &status.grants,
            expires,
        )
        .await?
    };
    if let Some(until) = valid_until.filter(|t| *t > now) {
        // The role's ClusterRole is checked on every reconcile (cached for ROLE_CHECK_TTL), for
        // unscoped grants too: one edited on the target to reach beyond pods ends the grant.
        let checked = match janus_api::rules::scope::role_of(&ctx.config.roles, &ar.spec) {
            Ok(role) => ctx.role_rules(&target, role).await.map(|_| ()),
            Err(e) => Err(Error::Permanent(e.to_string())),
        };
        match checked {
            Ok(()) => {}
            Err(Error::Permanent(msg)) => {
                tracing::warn!(request = %ar.name_any(), %msg, "grant's role can no longer be granted; ending it");
                return finish(ctx, ar, Phase::Failed, msg, now).await;
            }
            Err(e) => return Err(e),
        }
        if ar.spec.pod_scope.is_some() {
            match maintain_scopes(ctx, ar, &target, &status.grants).await {
                Ok(()) => {}
                Err(Error::Permanent(msg)) => {
                    tracing::warn!(request = %ar.name_any(), %msg, "pod-scoped grant cannot be kept; ending it");
                    return finish(ctx, ar, Phase::Failed, msg, now).await;
                }
                Err(e) => return Err(e),
            }
        }
        return Ok(requeue_at(until, now));
    }
    let granted = async {
        // Namespaces were checked while Pending; one deleted since makes the ServiceAccount creation fail
        // with a precise message, so no second round of lookups here.
        let role = janus_api::rules::scope::role_of(&ctx.config.roles, &ar.spec)
            .map_err(|e| Error::Permanent(e.to_string()))?;
        let role_rules = ctx.role_rules(&target, role).await?;
        // The namespaces at the same time (a few at once), answered in request order.
        // (Owned names: a stream over borrowed ones is not `Send` for every lifetime the controller's
        // runtime asks of a reconcile future.)
        let issued: Vec<grant::Issued> = futures::stream::iter(ar.spec.namespaces.clone())
            .map(|ns| {
                let (target, role_rules, status) = (&target, &role_rules, &status);
                async move {
                    let ns = ns.as_str();
                    let recorded = status
                        .grants
                        .iter()
                        .find(|g| g.namespace == ns)
                        .and_then(|g| g.pod_selector.as_deref());
                    let access = access_in(target, ar, role, role_rules, ns, recorded).await?;
                    // Before the write: an ending that follows finds the Secret even if this grant
                    // fails (or is dropped with its siblings) after writing it, before its watch event.
                    ctx.token_index.writing(
                        &janus_api::names::token_secret_name(&ar.name_any(), ns),
                        &ar.name_any(),
                        &target.name,
                    );
                    let issued = grant::ensure_grant(
                        ctx.clusters.central(),
                        &ctx.config.namespace,
                        target,
                        ar,
                        ns,
                        &access,
                        expires,
                    )
                    .await?;
                    // As soon as it is written: its echo on the watch is then not taken for drift.
                    ctx.own_secret_writes.lock().unwrap_or_else(|e| e.into_inner()).insert(
                        issued.grant.token_secret.clone(),
                        OwnSecretWrite::Written(issued.resource_version.clone()),
                    );
                    Ok::<_, Error>(issued)
                }
            })
            .buffered(grant::NAMESPACES_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut grants = Vec::new();
        let mut renew_at: Option<DateTime<Utc>> = None;
        for issued in issued {
            renew_at = match (renew_at, issued.renew_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            grants.push(issued.grant);
        }
        Ok::<_, Error>((grants, renew_at, role, role_rules))
    }
    .await;
    let (grants, renew_at, role, role_rules) = match granted {
        Ok(g) => g,
        Err(Error::Permanent(msg)) => {
            tracing::warn!(request = %ar.name_any(), %msg, "grant failed");
            return finish(ctx, ar, Phase::Failed, msg, now).await;
        }
        Err(e) => {
            // Say why the request waits; the error policy retries with backoff.
            let msg = format!("waiting for cluster {}: {e}", ar.spec.cluster);
            if status.message != msg {
                status.message = msg.clone();
                set_condition(
                    &mut status,
                    types::CLUSTER_REACHABLE,
                    false,
                    reachability::CLUSTER_ERROR,
                    &msg,
                    now,
                );
                write_status(ctx, ar, &status).await?;
            }
            return Err(e);
        }
    };
    let first = status.phase == Phase::Approved;
    let extended = recorded.is_some_and(|r| r != expires) && !first;
    // What the grant was judged on; a read-again status that differs is someone else's decision.
    let judged_phase = status.phase;
    status.phase = Phase::Active;
    status.active_at = Some(fmt_time(active_at));
    status.expires_at = Some(fmt_time(expires));
    status.grants = grants;
    status.message = format!(
        "access to {} on {} until {}",
        ar.spec.namespaces.join(", "),
        ar.spec.cluster,
        fmt_time(expires)
    );
    set_condition(
        &mut status,
        types::CLUSTER_REACHABLE,
        true,
        reachability::REACHABLE,
        "",
        now,
    );
    if first {
        let message = status.message.clone();
        set_condition(&mut status, types::GRANTED, true, types::GRANTED, &message, now);
    }
    if extended {
        set_condition(
            &mut status,
            types::EXTENDED,
            true,
            types::EXTENDED,
            &format!("now expires at {}", fmt_time(expires)),
            now,
        );
    }
    // A decision may have arrived while credentials were being issued. The write names the version the
    // grant was judged on, so it is refused (409) if anything changed since; only then is the request
    // read again and, if a decision or a change came, the credentials taken back at once.
    let mut judged = std::borrow::Cow::Borrowed(ar);
    let mut attempts = 0;
    loop {
        match write_status_at(ctx, &judged, &status, rv.as_deref()).await {
            Ok(()) => break,
            Err(e) if crate::error::is_conflict(&e) && attempts < 3 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
        let Some(f) = ctx.api().get_opt(&ar.name_any()).await? else {
            return Ok(Action::await_change());
        };
        if f.metadata.deletion_timestamp.is_some() {
            return Ok(Action::requeue(Duration::ZERO));
        }
        // The same checks as at the start: a change made during the grant must not be declared
        // active (the next reconcile would end it, but only after a status write said Active).
        if let Some(changed) = status.approved.as_ref().map(|a| a.changes(&f.spec))
            && !changed.is_empty()
        {
            return fail_changed(ctx, &f, &changed, Utc::now()).await;
        }
        if let Some(end) = ending(&f.spec) {
            return finish(ctx, &f, end.phase(), end.message(), Utc::now()).await;
        }
        // The status too: another controller (a leader during failover) or the overdue sweep may have
        // ended the request or replaced its approval meanwhile. Status writes wake no reconcile, so an
        // Active written over that would stay; the credentials just issued are taken back instead.
        let fresh = f.status.clone().unwrap_or_default();
        if fresh.phase != judged_phase || fresh.approved != status.approved {
            return take_back(ctx, ar, &f, &status.grants).await;
        }
        rv = f.metadata.resource_version.clone();
        judged = std::borrow::Cow::Owned(f);
    }
    ensure_watches(ctx, &target, ar, role, &role_rules, &status.grants);
    if first {
        ctx.metrics.transition(Phase::Active);
        if let Some(approved) = status.approved_at.as_deref().and_then(parse_time) {
            // A request approved ahead waited for its startAt, not for the grant.
            let from = ttl::starts_at(&ar.spec).map_or(approved, |s| s.max(approved));
            ctx.metrics
                .observe_grant((Utc::now() - from).to_std().unwrap_or_default());
        }
        publish(ctx, ar, false, types::GRANTED, status.message.clone()).await;
        if let Some(p) = status.policy.as_ref().filter(|p| p.break_glass) {
            // Access without any approval: a Warning for whoever watches Events, until reviewed.
            publish(
                ctx,
                ar,
                true,
                gate::reasons::BREAK_GLASS,
                format!(
                    "break-glass access by {} to {} on {} under policy {}, awaiting review: {}",
                    ar.spec.requester,
                    ar.spec.namespaces.join(", "),
                    ar.spec.cluster,
                    p.name,
                    ar.spec.reason
                ),
            )
            .await;
        }
        tracing::info!(request = %ar.name_any(), expires = %fmt_time(expires), "access granted");
    } else if extended {
        publish(
            ctx,
            ar,
            false,
            types::EXTENDED,
            format!("access now expires at {}", fmt_time(expires)),
        )
        .await;
    }
    Ok(requeue_at(renew_at.map_or(expires, |r| r.min(expires)), now))
}

/// Takes back the credentials a grant issued after its request's status was changed by another writer
/// during the grant (`fresh`: the request read again). The cut of access comes first, by the names
/// just issued (`issued`, which `fresh` may not list). A request someone ended keeps its phase, reason
/// and message, its cleanup recorded as [`finish_with`] records it (retried until nothing is left);
/// any other change is judged again by an immediate reconcile.
async fn take_back(ctx: &Context, judged: &AccessRequest, fresh: &AccessRequest, issued: &[Grant]) -> Result<Action> {
    let name = judged.name_any();
    let status = fresh.status.clone().unwrap_or_default();
    tracing::info!(request = %name, phase = %status.phase, "status changed during the grant; taking the credentials back");
    let mut granted = judged.clone();
    let judged_status = granted.status.get_or_insert_with(Default::default);
    judged_status.grants = issued.to_vec();
    if judged_status.approved.is_none() {
        judged_status.approved = ctx.remembered_baseline(judged);
    }
    ctx.scopes.stop_request(&name);
    cut_access(ctx, &granted).await;
    if status.phase.is_terminal() {
        let reason = status
            .phase_reason()
            .map_or_else(|| status.phase.to_string(), str::to_string);
        let ended = parse_time(status.ended_at.as_deref().unwrap_or("")).unwrap_or_else(Utc::now);
        return finish_with(ctx, fresh, status.phase, &reason, status.message.clone(), ended).await;
    }
    let left = remove_credentials(ctx, fresh).await?;
    if !left.is_empty() {
        return Err(Error::CleanupPending(format!("still present: {}", left.join(", "))));
    }
    Ok(Action::requeue(Duration::ZERO))
}

/// What the grant in `ns` binds: the role's ClusterRole, or for a pod-scoped request a Role with the
/// ClusterRole's rules narrowed to the pods in scope now. `recorded`: the selector an earlier grant
/// recorded for `ns`.
async fn access_in(
    target: &ClusterHandle,
    ar: &AccessRequest,
    role: &RoleConfig,
    role_rules: &[PolicyRule],
    ns: &str,
    recorded: Option<&str>,
) -> Result<grant::Access> {
    let Some(pod_scope) = &ar.spec.pod_scope else {
        return Ok(grant::Access::ClusterRole(role.cluster_role.clone()));
    };
    let selector = scope::resolve_selector(target, pod_scope, ns, recorded).await?;
    let pods = scope::pods_in_scope(target, ns, &selector).await?;
    let rules = janus_api::rules::scope::scoped_rules(&role.name, role_rules, &pods)
        .map_err(|e| Error::Permanent(e.to_string()))?;
    Ok(grant::Access::Scoped { rules, selector })
}

/// Re-asserts the scoped Roles of an active pod-scoped grant (drift repair: an edited or deleted Role is
/// written again from the pods in scope now) and makes sure each namespace's pod watch runs (after a
/// restart or a change of leader, this is where watches resume).
async fn maintain_scopes(ctx: &Context, ar: &AccessRequest, target: &ClusterHandle, grants: &[Grant]) -> Result<()> {
    let role =
        janus_api::rules::scope::role_of(&ctx.config.roles, &ar.spec).map_err(|e| Error::Permanent(e.to_string()))?;
    let role_rules = ctx.role_rules(target, role).await?;
    let mut current = Vec::with_capacity(grants.len());
    for g in grants {
        let mut g = g.clone();
        if let grant::Access::Scoped { rules, selector } =
            access_in(target, ar, role, &role_rules, &g.namespace, g.pod_selector.as_deref()).await?
        {
            let name = g
                .scoped_role
                .clone()
                .unwrap_or_else(|| janus_api::names::grant_name(&ar.name_any(), &g.namespace));
            scope::write_role(target, ar, &g.namespace, &name, &rules).await?;
            g.scoped_role = Some(name);
            g.pod_selector = Some(selector);
        }
        current.push(g);
    }
    ensure_watches(ctx, target, ar, role, &role_rules, &current);
    Ok(())
}

/// Starts (or resyncs) the pod watch of every scoped grant in `grants`.
fn ensure_watches(
    ctx: &Context,
    target: &ClusterHandle,
    ar: &AccessRequest,
    role: &RoleConfig,
    role_rules: &[PolicyRule],
    grants: &[Grant],
) {
    let request = ar.name_any();
    let uid = ar.uid().unwrap_or_default();
    for g in grants {
        if let (Some(role_name), Some(selector)) = (&g.scoped_role, &g.pod_selector) {
            let spec = WatchSpec {
                cluster: target.name.clone(),
                uid: uid.clone(),
                role: role.name.clone(),
                cluster_role_rules: role_rules.to_vec(),
                selector: selector.clone(),
                role_name: role_name.clone(),
            };
            ctx.scopes.ensure(target, &request, &g.namespace, spec);
        }
    }
}

/// Writes `status` only over the request at resourceVersion `rv` (kube-apiserver refuses a patch whose
/// resourceVersion is not the stored one with 409 Conflict, as in [`write_if_changed`]); without
/// one, unconditionally.
async fn write_status_at(
    ctx: &Context,
    ar: &AccessRequest,
    status: &AccessRequestStatus,
    rv: Option<&str>,
) -> std::result::Result<(), kube::Error> {
    let mut status = status.clone();
    status.observed_generation = ar.metadata.generation;
    let patch = match rv {
        Some(rv) => json!({ "metadata": {"resourceVersion": rv}, "status": status }),
        None => json!({ "status": status }),
    };
    ctx.api()
        .patch_status(&ar.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// What to do after a failed reconcile: exponential backoff per request, capped at a minute.
pub fn error_policy(name: &str, err: &Error, ctx: &Context) -> Action {
    let n = {
        let mut f = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(name.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    ctx.metrics.reconcile_error(err.kind());
    let delay = Duration::from_millis(250u64.saturating_mul(1u64 << n.min(8))).min(Duration::from_secs(60));
    if err.is_transient() {
        tracing::info!(request = %name, error = %err, retry_in = ?delay, "reconcile failed, retrying");
    } else {
        tracing::warn!(request = %name, error = %err, retry_in = ?delay, "reconcile failed");
    }
    Action::requeue(delay)
}
