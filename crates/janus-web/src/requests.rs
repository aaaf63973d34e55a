//! The request domain as the web sees it: creating AccessRequests, deciding on them with authorization,
//! and listing them from the watch cache. Pages and the JSON API both call these functions.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use janus_api::access_request::{AccessRequestSpec, Approval, Decision, Denial, Extension, Phase, Revocation};
use janus_api::rules::{self, ActionPolicy, Actor};
use janus_api::{AccessRequest, names};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Identity;
use crate::error::WebError;
use crate::state::AppState;

/// Label on requests created by the web UI, derived from the requester's email (for server-side counting).
pub const REQUESTER_LABEL: &str = "k8s-janus.opsmode.io/requester";

/// The value of [`REQUESTER_LABEL`] for an email: readable part plus a hash, always a valid label value.
pub fn requester_label(email: &str) -> String {
    names::label_name("u", &[&email.to_ascii_lowercase()])
}

/// Longest reason accepted (the CRD's limit).
pub const MAX_REASON: usize = 1000;
/// Most namespaces in one request (the CRD's limit).
pub const MAX_NAMESPACES: usize = 20;

pub use janus_api::rules::Actions;
/// The phase of a request (no status yet means Pending).
pub use janus_api::rules::phase_of as phase;
/// A Kubernetes timestamp as a chrono time.
pub use janus_api::rules::time::from_k8s as k8s_time;
/// Parses an RFC 3339 timestamp from the API.
pub use janus_api::rules::time::parse_time;

/// The rules' view of a signed-in identity.
pub fn actor(id: &Identity) -> Actor<'_> {
    Actor {
        email: &id.email,
        is_admin: id.is_admin,
    }
}

/// Whether this identity asked for the request (the rule: [`rules::actions::is_requester`]).
pub fn is_requester(id: &Identity, ar: &AccessRequest) -> bool {
    rules::actions::is_requester(actor(id), ar)
}

/// Whether this identity may see the request.
pub fn visible_to(id: &Identity, ar: &AccessRequest) -> bool {
    rules::actions::may_view(actor(id), ar)
}

fn now_rfc3339() -> String {
    rules::time::fmt_time_millis(Utc::now())
}

/// When a request was created.
pub fn created(ar: &AccessRequest) -> Option<DateTime<Utc>> {
    ar.metadata.creation_timestamp.as_ref().map(k8s_time)
}

/// The actions allowed to `id` on `ar` under the configured switches ([`janus_api::rules::actions`]).
pub fn actions(state: &AppState, id: &Identity, ar: &AccessRequest) -> Actions {
    rules::actions::allowed(actor(id), ar, ActionPolicy::of(&state.config))
}

/// A request as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    /// Object name.
    pub name: String,
    /// Requester email.
    pub requester: String,
    /// Cluster name.
    pub cluster: String,
    /// Cluster display name.
    pub cluster_display_name: String,
    /// Namespaces asked for.
    pub namespaces: Vec<String>,
    /// Why.
    pub reason: String,
    /// Requested TTL.
    pub ttl_seconds: i64,
    /// The TTL in effect: the approver's override, else the requested one.
    pub effective_ttl_seconds: i64,
    /// Current phase.
    pub phase: Phase,
    /// Controller message.
    pub message: String,
    /// Creation time.
    pub created_at: Option<String>,
    /// Human decisions.
    pub approval: Option<Approval>,
    /// Denial.
    pub denial: Option<Denial>,
    /// Revocation.
    pub revocation: Option<Revocation>,
    /// Withdrawal.
    pub withdrawal: Option<Decision>,
    /// Extensions.
    pub extensions: Vec<Extension>,
    /// When the controller saw the approval.
    pub approved_at: Option<String>,
    /// When access started.
    pub active_at: Option<String>,
    /// When access ends.
    pub expires_at: Option<String>,
    /// When the request ended.
    pub ended_at: Option<String>,
    /// Namespaces with live credentials.
    pub granted_namespaces: Vec<String>,
    /// Controller conditions (the timeline).
    pub conditions: Vec<janus_api::access_request::Condition>,
    /// What the caller may do.
    pub actions: Actions,
}

/// Builds the view of a request for `id`.
pub fn view(state: &AppState, id: &Identity, ar: &AccessRequest) -> RequestView {
    let st = ar.status.clone().unwrap_or_default();
    RequestView {
        name: ar.metadata.name.clone().unwrap_or_default(),
        requester: ar.spec.requester.clone(),
        cluster: ar.spec.cluster.clone(),
        cluster_display_name: display_name(state, &ar.spec.cluster),
        namespaces: ar.spec.namespaces.clone(),
        reason: ar.spec.reason.clone(),
        ttl_seconds: ar.spec.ttl_seconds,
        effective_ttl_seconds: rules::ttl::effective_ttl(&ar.spec),
        phase: st.phase,
        message: st.message.clone(),
        created_at: created(ar).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        approval: ar.spec.approval.clone(),
        denial: ar.spec.denial.clone(),
        revocation: ar.spec.revocation.clone(),
        withdrawal: ar.spec.withdrawal.clone(),
        extensions: ar.spec.extensions.clone(),
        approved_at: st.approved_at.clone(),
        active_at: st.active_at.clone(),
        expires_at: st.expires_at.clone(),
        ended_at: st.ended_at.clone(),
        granted_namespaces: st.grants.iter().map(|g| g.namespace.clone()).collect(),
        conditions: st.conditions.clone(),
        actions: actions(state, id, ar),
    }
}

/// The display name of a cluster (its name when none is configured).
pub fn display_name(state: &AppState, cluster: &str) -> String {
    state
        .config
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

pub use janus_kube::ClusterInfo;

/// Configured clusters plus clusters registered by a labelled kubeconfig Secret
/// ([`janus_kube::Clusters::list`], the same sources the controller's `is_known` reads). Registered
/// clusters are remembered for a few seconds; when the list cannot be read, the configured ones are shown
/// (and remembered for a shorter while, so a failing API is not asked on every page render).
pub async fn clusters(state: &AppState) -> Vec<ClusterInfo> {
    state
        .registered_clusters
        .get_or_list(state.clusters.list(), || {
            janus_kube::clusters::configured(&state.config)
        })
        .await
}

/// The cluster list, remembered for a few seconds: every page shows it, and registrations are rare.
#[derive(Default)]
pub struct ClusterCache {
    inner: std::sync::Mutex<CacheState>,
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

    /// Records a failed list; true when it starts a failure period (the one to warn about).
    fn note_failure(&self) -> bool {
        !std::mem::replace(&mut self.lock().failing, true)
    }

    /// Records a successful list; true when it ends a failure period.
    fn note_success(&self) -> bool {
        std::mem::replace(&mut self.lock().failing, false)
    }
}

/// The namespaces of a cluster that may be requested: existing, active, not excluded.
pub async fn namespaces(state: &AppState, cluster: &str) -> Result<Vec<String>, WebError> {
    let known = clusters(state).await;
    if !known.iter().any(|c| c.name == cluster) {
        return Err(WebError::NotFound(format!("unknown cluster {cluster:?}")));
    }
    let handle = state
        .clusters
        .get(cluster)
        .await
        .map_err(|e| WebError::Unavailable(format!("cluster {cluster} is unavailable: {e}")))?;
    let api: Api<Namespace> = Api::all(handle.client);
    let list = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        api.list_metadata(&ListParams::default()),
    )
    .await
    .map_err(|_| WebError::Unavailable(format!("cluster {cluster} did not answer in time")))?
    .map_err(|e| WebError::Unavailable(format!("cluster {cluster} is unavailable: {e}")))?;
    let mut out: Vec<String> = list
        .items
        .into_iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| n.metadata.name)
        .filter(|n| !state.config.is_excluded(n))
        .collect();
    out.sort();
    Ok(out)
}

/// What the request form (or API) submits.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInput {
    /// Target cluster.
    pub cluster: String,
    /// Namespaces.
    pub namespaces: Vec<String>,
    /// Requested duration (default: `defaultTtlSeconds`).
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
    /// Why.
    pub reason: String,
}

/// Whether a request still holds or may get access.
pub fn is_open(ar: &AccessRequest) -> bool {
    !phase(ar).is_terminal()
}

/// Validates and creates a request for `id`.
pub async fn create(state: &AppState, id: &Identity, input: CreateInput) -> Result<AccessRequest, WebError> {
    let cfg = &state.config;
    let reason = input.reason.trim().to_string();
    if reason.is_empty() {
        return Err(WebError::invalid("reason", "say why you need access"));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(WebError::invalid(
            "reason",
            format!("the reason is longer than {MAX_REASON} characters"),
        ));
    }
    let ttl = input.ttl_seconds.unwrap_or(cfg.default_ttl_seconds);
    if let Err(e) = rules::ttl::check_ttl(ttl, cfg) {
        return Err(WebError::invalid(
            "ttlSeconds",
            format!("the duration must be between {} and {} seconds", e.min, e.max),
        ));
    }
    let wanted: BTreeSet<String> = input.namespaces.iter().map(|n| n.trim().to_string()).collect();
    if wanted.is_empty() {
        return Err(WebError::invalid("namespaces", "choose at least one namespace"));
    }
    if wanted.len() > MAX_NAMESPACES {
        return Err(WebError::invalid(
            "namespaces",
            format!("at most {MAX_NAMESPACES} namespaces per request"),
        ));
    }
    if let Some(bad) = wanted.iter().find(|n| !names::is_dns_label(n)) {
        return Err(WebError::invalid(
            "namespaces",
            format!("{bad:?} is not a namespace name"),
        ));
    }
    if let Some(ex) = wanted.iter().find(|n| cfg.is_excluded(n)) {
        return Err(WebError::invalid(
            "namespaces",
            format!("namespace {ex} cannot be requested"),
        ));
    }
    if !names::is_dns_label(&input.cluster) {
        return Err(WebError::invalid("cluster", "choose a cluster"));
    }
    // The namespaces are checked on the cluster before the lock is taken: that remote call can take up to
    // its timeout against a stalled cluster, and the lock holds a pooled database connection (PostgreSQL).
    let available = match namespaces(state, &input.cluster).await {
        Ok(n) => n,
        Err(WebError::NotFound(m)) => return Err(WebError::invalid("cluster", m)),
        Err(e) => return Err(e),
    };
    if let Some(missing) = wanted.iter().find(|n| !available.contains(n)) {
        return Err(WebError::invalid(
            "namespaces",
            format!("namespace {missing} does not exist on cluster {}", input.cluster),
        ));
    }
    // The per-user limits are checked and the request created under one lock per requester, held in the
    // database (a PostgreSQL advisory lock, so it holds across replicas; with SQLite, one replica, a
    // process lock): otherwise two creates at once both count the same requests and both pass. Counting
    // reads the API server, not the watch cache, so requests created a moment ago by another replica
    // under the same lock are seen.
    let lock = state.store.lock_requester(&id.email).await.map_err(|e| {
        tracing::warn!(error = %e, "the per-user request lock could not be taken");
        WebError::Unavailable("the request limits cannot be checked right now; try again in a moment".into())
    })?;
    let api: Api<AccessRequest> = Api::all(state.client.clone());
    let label = requester_label(&id.email);
    let mine: Vec<AccessRequest> = api
        .list(&ListParams::default().labels(&format!("{REQUESTER_LABEL}={label}")))
        .await?
        .items
        .into_iter()
        .filter(|a| is_requester(id, a))
        .collect();
    let open = mine.iter().filter(|a| is_open(a)).count();
    if open >= cfg.web.max_open_requests_per_user {
        return Err(WebError::TooMany(format!(
            "you already have {open} open requests (the limit is {}); withdraw one first",
            cfg.web.max_open_requests_per_user
        )));
    }
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let recent = mine.iter().filter(|a| created(a).is_some_and(|t| t > hour_ago)).count();
    if recent >= cfg.web.max_requests_per_hour {
        return Err(WebError::TooMany(format!(
            "you created {recent} requests in the last hour (the limit is {}); try again later",
            cfg.web.max_requests_per_hour
        )));
    }
    let mut ar = AccessRequest::new(
        "",
        AccessRequestSpec::new(
            id.email.clone(),
            input.cluster.clone(),
            wanted.into_iter().collect(),
            reason,
            ttl,
        ),
    );
    ar.metadata.name = None;
    ar.metadata.generate_name = Some(names::request_name_prefix(&id.email));
    ar.metadata.labels = Some([(REQUESTER_LABEL.to_string(), label)].into());
    let created = api.create(&PostParams::default(), &ar).await;
    lock.release().await;
    let created = created?;
    state.metrics.request_created();
    Ok(created)
}

/// A human decision.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum DecisionInput {
    /// Approve, optionally with another TTL.
    Approve {
        /// TTL override.
        #[serde(default, rename = "ttlSeconds")]
        ttl_seconds: Option<i64>,
    },
    /// Deny with a reason.
    Deny {
        /// Why.
        reason: String,
    },
    /// Revoke access.
    Revoke {
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// The requester withdraws.
    Withdraw,
    /// Extend active access.
    Extend {
        /// Seconds to add.
        seconds: i64,
    },
}

impl DecisionInput {
    /// The verb, for messages and metrics.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Approve { .. } => "approve",
            Self::Deny { .. } => "deny",
            Self::Revoke { .. } => "revoke",
            Self::Withdraw => "withdraw",
            Self::Extend { .. } => "extend",
        }
    }
}

/// Fetches a request the caller may see (404 otherwise, so names of others' requests don't leak).
pub async fn get_visible(state: &AppState, id: &Identity, name: &str) -> Result<AccessRequest, WebError> {
    if name.is_empty() || name.len() > 253 {
        return Err(WebError::NotFound("no such request".into()));
    }
    let api: Api<AccessRequest> = Api::all(state.client.clone());
    let ar = match api.get_opt(name).await? {
        Some(a) => a,
        None => return Err(WebError::NotFound("no such request".into())),
    };
    if !visible_to(id, &ar) {
        return Err(WebError::NotFound("no such request".into()));
    }
    Ok(ar)
}

/// Applies a decision after checking who may take it and whether the request's state allows it.
pub async fn decide(
    state: &AppState,
    id: &Identity,
    name: &str,
    decision: DecisionInput,
) -> Result<AccessRequest, WebError> {
    let api: Api<AccessRequest> = Api::all(state.client.clone());
    // One retry: a 409 means the controller wrote status in between; the check is repeated on fresh data.
    for attempt in 0..3 {
        let ar = get_visible(state, id, name).await?;
        let allowed = actions(state, id, &ar);
        let p = phase(&ar);
        let own = is_requester(id, &ar);
        if p.is_terminal() {
            return Err(WebError::Conflict(format!("the request has already ended ({p:?})")));
        }
        let at = now_rfc3339();
        let by = id.email.clone();
        let spec_patch = match &decision {
            DecisionInput::Approve { ttl_seconds } => {
                if !id.is_admin {
                    return Err(WebError::Forbidden("only admins approve requests".into()));
                }
                if own && !state.config.allow_self_approval {
                    return Err(WebError::Forbidden("you cannot approve your own request".into()));
                }
                if !allowed.approve {
                    return Err(WebError::Conflict("the request is no longer pending".into()));
                }
                if let Some(t) = ttl_seconds
                    && let Err(e) = rules::ttl::check_ttl(*t, &state.config)
                {
                    return Err(WebError::invalid(
                        "ttlSeconds",
                        format!("the duration must be between {} and {} seconds", e.min, e.max),
                    ));
                }
                json!({"approval": Approval { by, at, ttl_seconds: *ttl_seconds }})
            }
            DecisionInput::Deny { reason } => {
                if !id.is_admin {
                    return Err(WebError::Forbidden("only admins deny requests".into()));
                }
                let reason = reason.trim();
                if reason.is_empty() {
                    return Err(WebError::invalid("reason", "say why the request is denied"));
                }
                if reason.chars().count() > MAX_REASON {
                    return Err(WebError::invalid("reason", format!("at most {MAX_REASON} characters")));
                }
                if !allowed.deny {
                    return Err(WebError::Conflict("the request is no longer pending".into()));
                }
                json!({"denial": Denial { by, at, reason: reason.to_string() }})
            }
            DecisionInput::Revoke { reason } => {
                if !id.is_admin {
                    return Err(WebError::Forbidden("only admins revoke access".into()));
                }
                let reason = reason.trim();
                if reason.chars().count() > MAX_REASON {
                    return Err(WebError::invalid("reason", format!("at most {MAX_REASON} characters")));
                }
                if !allowed.revoke {
                    return Err(WebError::Conflict(
                        "only approved or active access can be revoked".into(),
                    ));
                }
                let reason = if reason.is_empty() {
                    "revoked by an admin".to_string()
                } else {
                    reason.to_string()
                };
                json!({"revocation": Revocation { by, at, reason }})
            }
            DecisionInput::Withdraw => {
                if !own {
                    return Err(WebError::Forbidden("only the requester can withdraw a request".into()));
                }
                if !allowed.withdraw {
                    return Err(WebError::Conflict("the request can no longer be withdrawn".into()));
                }
                json!({"withdrawal": Decision { by, at }})
            }
            DecisionInput::Extend { seconds } => {
                if !id.is_admin {
                    return Err(WebError::Forbidden("only admins extend access".into()));
                }
                if let Err(e) = rules::ttl::check_extension(*seconds, &state.config) {
                    return Err(WebError::invalid(
                        "seconds",
                        format!("an extension is between 1 and {} seconds", e.max),
                    ));
                }
                if !allowed.extend {
                    return Err(WebError::Conflict("only active access can be extended".into()));
                }
                if !state.config.allow_extension_beyond_max_ttl {
                    let st = ar.status.clone().unwrap_or_default();
                    if let (Some(active), Some(expires)) = (
                        st.active_at.as_deref().and_then(parse_time),
                        st.expires_at.as_deref().and_then(parse_time),
                    ) {
                        let total = (expires - active).num_seconds() + seconds;
                        if total > state.config.max_ttl_seconds {
                            let room = (state.config.max_ttl_seconds - (expires - active).num_seconds()).max(0);
                            return Err(WebError::invalid(
                                "seconds",
                                format!(
                                    "access may last at most {} seconds in total; at most {room} more seconds can be added",
                                    state.config.max_ttl_seconds
                                ),
                            ));
                        }
                    }
                }
                let mut ext = ar.spec.extensions.clone();
                ext.push(Extension {
                    by,
                    at,
                    seconds: *seconds,
                });
                json!({"extensions": ext})
            }
        };
        let patch = json!({
            "metadata": {"resourceVersion": ar.metadata.resource_version},
            "spec": spec_patch,
        });
        match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(updated) => {
                state.metrics.decision(decision.verb());
                tracing::info!(request = name, actor = %id.email, decision = decision.verb(), "decision written");
                return Ok(updated);
            }
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 2 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(WebError::Conflict(
        "the request keeps changing; reload and try again".into(),
    ))
}

/// Filters for lists.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    /// Only this requester (admins), or `mine`.
    #[serde(default)]
    pub requester: Option<String>,
    /// Only this cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Only this phase.
    #[serde(default)]
    pub phase: Option<String>,
    /// Created at or after (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// `mine` (default for non-admins) or `all`.
    #[serde(default)]
    pub scope: Option<String>,
    /// Page size (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Offset.
    #[serde(default)]
    pub offset: Option<usize>,
}

/// A page of requests.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    /// The requests of the page.
    pub items: Vec<RequestView>,
    /// How many match.
    pub total: usize,
    /// Offset of the page.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
}

fn phase_rank(p: Phase) -> u8 {
    match p {
        Phase::Pending => 0,
        Phase::Approved => 1,
        Phase::Active => 2,
        _ => 3,
    }
}

/// Lists requests from the cache: pending first, then newest first.
pub fn list(state: &AppState, id: &Identity, f: &ListFilter) -> ListPage {
    let all_scope = id.is_admin && f.scope.as_deref() == Some("all");
    let since = f.since.as_deref().and_then(parse_time);
    let phase_filter = f
        .phase
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(str::to_ascii_lowercase);
    let mut items: Vec<Arc<AccessRequest>> = state
        .all_requests()
        .into_iter()
        .filter(|a| if all_scope { true } else { is_requester(id, a) })
        .filter(|a| {
            f.requester
                .as_deref()
                .filter(|r| !r.is_empty())
                .is_none_or(|r| a.spec.requester.to_ascii_lowercase().contains(&r.to_ascii_lowercase()))
        })
        .filter(|a| {
            f.cluster
                .as_deref()
                .filter(|c| !c.is_empty())
                .is_none_or(|c| a.spec.cluster == c)
        })
        .filter(|a| {
            phase_filter
                .as_deref()
                .is_none_or(|p| format!("{:?}", phase(a)).to_ascii_lowercase() == p)
        })
        .filter(|a| since.is_none_or(|s| created(a).is_some_and(|t| t >= s)))
        .collect();
    // Keys computed once: sorting 10,000 requests must not re-derive them per comparison.
    items.sort_by_cached_key(|a| {
        (
            phase_rank(phase(a)),
            std::cmp::Reverse(created(a)),
            a.metadata.name.clone(),
        )
    });
    let total = items.len();
    let limit = f.limit.unwrap_or(50).clamp(1, 500);
    let offset = f.offset.unwrap_or(0).min(total);
    let items = items
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| view(state, id, a))
        .collect();
    ListPage {
        items,
        total,
        offset,
        limit,
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
}
