//! Access requests as the web handles them: listing from the watch cache, reading, creating and deciding,
//! each checked against [`janus_api::rules`] for the calling identity.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::FromRef;
use chrono::{DateTime, Utc};
use janus_api::access_request::{AccessRequestSpec, Approval, Decision, Denial, Extension, Phase, Revocation};
use janus_api::config::Config;
use janus_api::rules::{self, ActionPolicy, Actions, Actor};
use janus_api::{AccessRequest, names};
use janus_store::{AuditEvent, AuditQuery, Store};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector;
use serde::Deserialize;
use serde_json::json;

use super::clusters::ClusterService;
use super::view::{ListPage, RequestView};
use super::{Recorder, ServiceError, recorder_of};
use crate::auth::Identity;
use crate::state::AppState;

/// Label on requests created by the web UI, derived from the requester's email (for server-side counting).
pub const REQUESTER_LABEL: &str = "k8s-janus.opsmode.io/requester";

/// Longest reason accepted (the CRD's limit).
pub const MAX_REASON: usize = 1000;
/// Most namespaces in one request (the CRD's limit).
pub const MAX_NAMESPACES: usize = 20;
/// Longest object name the API server accepts; longer names cannot exist, so they are not looked up.
const MAX_NAME: usize = 253;

/// The value of [`REQUESTER_LABEL`] for an email: readable part plus a hash, always a valid label value.
pub fn requester_label(email: &str) -> String {
    names::label_name("u", &[&email.to_ascii_lowercase()])
}

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

/// When a request was created.
pub fn created(ar: &AccessRequest) -> Option<DateTime<Utc>> {
    ar.metadata.creation_timestamp.as_ref().map(rules::time::from_k8s)
}

/// Whether a request still holds or may get access.
pub fn is_open(ar: &AccessRequest) -> bool {
    !rules::phase_of(ar).is_terminal()
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

/// Requests: the watch cache for lists, the API server for reads and writes, the database for the
/// per-requester lock and the timeline.
#[derive(Clone)]
pub struct RequestService {
    config: Arc<Config>,
    client: kube::Client,
    requests: reflector::Store<AccessRequest>,
    clusters: ClusterService,
    store: Store,
    recorder: Arc<dyn Recorder>,
}

impl FromRef<AppState> for RequestService {
    fn from_ref(state: &AppState) -> Self {
        Self {
            config: state.config.clone(),
            client: state.client.clone(),
            requests: state.requests.clone(),
            clusters: ClusterService::from_ref(state),
            store: state.store.clone(),
            recorder: recorder_of(state),
        }
    }
}

impl RequestService {
    /// A service over these parts; `client` writes AccessRequests with the web's own identity.
    pub fn new(
        config: Arc<Config>,
        client: kube::Client,
        requests: reflector::Store<AccessRequest>,
        clusters: ClusterService,
        store: Store,
        recorder: Arc<dyn Recorder>,
    ) -> Self {
        Self {
            config,
            client,
            requests,
            clusters,
            store,
            recorder,
        }
    }

    /// The configuration the rules are applied under.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clusters requests are made for.
    pub fn clusters(&self) -> &ClusterService {
        &self.clusters
    }

    fn api(&self) -> Api<AccessRequest> {
        Api::all(self.client.clone())
    }

    /// The actions allowed to `id` on `ar` under the configured switches ([`janus_api::rules::actions`]).
    pub fn actions(&self, id: &Identity, ar: &AccessRequest) -> Actions {
        rules::actions::allowed(actor(id), ar, ActionPolicy::of(&self.config))
    }

    /// The view of `ar` for `id`.
    pub fn view(&self, id: &Identity, ar: &AccessRequest) -> RequestView {
        RequestView::of(&self.config, id, ar)
    }

    /// Lists requests from the cache: pending first, then newest first. Non-admins see their own requests
    /// only, and may not ask for everybody's (`scope=all`).
    pub fn list(&self, id: &Identity, f: &ListFilter) -> Result<ListPage, ServiceError> {
        if f.scope.as_deref() == Some("all") && !id.is_admin {
            return Err(ServiceError::Forbidden("only admins list everybody's requests".into()));
        }
        Ok(self.list_visible(id, f))
    }

    /// [`Self::list`] for a filter already checked: `scope=all` of a non-admin lists their own.
    pub fn list_visible(&self, id: &Identity, f: &ListFilter) -> ListPage {
        let all_scope = id.is_admin && f.scope.as_deref() == Some("all");
        let since = f.since.as_deref().and_then(rules::time::parse_time);
        let phase_filter = f
            .phase
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(str::to_ascii_lowercase);
        let requester = f
            .requester
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(str::to_ascii_lowercase);
        let mut items: Vec<Arc<AccessRequest>> = self
            .requests
            .state()
            .into_iter()
            .filter(|a| all_scope || is_requester(id, a))
            .filter(|a| {
                requester
                    .as_deref()
                    .is_none_or(|r| a.spec.requester.to_ascii_lowercase().contains(r))
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
                    .is_none_or(|p| format!("{:?}", rules::phase_of(a)).to_ascii_lowercase() == p)
            })
            .filter(|a| since.is_none_or(|s| created(a).is_some_and(|t| t >= s)))
            .collect();
        // Keys computed once: sorting 10,000 requests must not re-derive them per comparison.
        items.sort_by_cached_key(|a| {
            (
                phase_rank(rules::phase_of(a)),
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
            .map(|a| self.view(id, a))
            .collect();
        ListPage {
            items,
            total,
            offset,
            limit,
        }
    }

    /// Fetches a request the caller may see (not found otherwise, so names of others' requests don't
    /// leak). Read from the API server, not the cache: a decision must see the latest version.
    pub async fn get_visible(&self, id: &Identity, name: &str) -> Result<AccessRequest, ServiceError> {
        let not_found = || ServiceError::NotFound("no such request".into());
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(not_found());
        }
        let ar = self.api().get_opt(name).await?.ok_or_else(not_found)?;
        if !visible_to(id, &ar) {
            return Err(not_found());
        }
        Ok(ar)
    }

    /// The audit events of a request the caller may see, oldest first (at most `limit`, the newest).
    pub async fn timeline(&self, id: &Identity, name: &str, limit: i64) -> Result<Vec<AuditEvent>, ServiceError> {
        let ar = self.get_visible(id, name).await?;
        self.timeline_of(&ar, limit).await
    }

    /// The audit events of `ar`, oldest first; `ar` must come from [`Self::get_visible`].
    pub async fn timeline_of(&self, ar: &AccessRequest, limit: i64) -> Result<Vec<AuditEvent>, ServiceError> {
        let mut events = self
            .store
            .audit_events(&AuditQuery {
                request: ar.metadata.name.clone(),
                limit,
                ..Default::default()
            })
            .await?;
        // The database answers newest first.
        events.reverse();
        Ok(events)
    }

    /// Checks the fields of a new request, without asking any cluster: what the request will hold
    /// (trimmed reason, TTL with the default applied, distinct namespaces).
    pub fn validate(&self, input: &CreateInput) -> Result<(String, i64, BTreeSet<String>), ServiceError> {
        let cfg = &self.config;
        let reason = input.reason.trim().to_string();
        if reason.is_empty() {
            return Err(ServiceError::invalid("reason", "say why you need access"));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(ServiceError::invalid(
                "reason",
                format!("the reason is longer than {MAX_REASON} characters"),
            ));
        }
        let ttl = input.ttl_seconds.unwrap_or(cfg.default_ttl_seconds);
        if let Err(e) = rules::ttl::check_ttl(ttl, cfg) {
            return Err(ServiceError::invalid(
                "ttlSeconds",
                format!("the duration must be between {} and {} seconds", e.min, e.max),
            ));
        }
        let wanted: BTreeSet<String> = input.namespaces.iter().map(|n| n.trim().to_string()).collect();
        if wanted.is_empty() {
            return Err(ServiceError::invalid("namespaces", "choose at least one namespace"));
        }
        if wanted.len() > MAX_NAMESPACES {
            return Err(ServiceError::invalid(
                "namespaces",
                format!("at most {MAX_NAMESPACES} namespaces per request"),
            ));
        }
        if let Some(bad) = wanted.iter().find(|n| !names::is_dns_label(n)) {
            return Err(ServiceError::invalid(
                "namespaces",
                format!("{bad:?} is not a namespace name"),
            ));
        }
        if let Some(ex) = wanted.iter().find(|n| cfg.is_excluded(n)) {
            return Err(ServiceError::invalid(
                "namespaces",
                format!("namespace {ex} cannot be requested"),
            ));
        }
        if !names::is_dns_label(&input.cluster) {
            return Err(ServiceError::invalid("cluster", "choose a cluster"));
        }
        Ok((reason, ttl, wanted))
    }

    /// Validates and creates a request for `id`, within the per-user limits.
    pub async fn create(&self, id: &Identity, input: CreateInput) -> Result<AccessRequest, ServiceError> {
        let cfg = &self.config;
        let (reason, ttl, wanted) = self.validate(&input)?;
        // The namespaces are checked on the cluster before the lock is taken: that remote call can take up
        // to its timeout against a stalled cluster, and the lock holds a pooled database connection
        // (PostgreSQL).
        let available = match self.clusters.namespaces(&input.cluster).await {
            Ok(n) => n,
            Err(ServiceError::NotFound(m)) => return Err(ServiceError::invalid("cluster", m)),
            Err(e) => return Err(e),
        };
        if let Some(missing) = wanted.iter().find(|n| !available.contains(n)) {
            return Err(ServiceError::invalid(
                "namespaces",
                format!("namespace {missing} does not exist on cluster {}", input.cluster),
            ));
        }
        // The per-user limits are checked and the request created under one lock per requester, held in
        // the database (a PostgreSQL advisory lock, so it holds across replicas; with SQLite, one replica,
        // a process lock): otherwise two creates at once both count the same requests and both pass.
        // Counting reads the API server, not the watch cache, so requests created a moment ago by another
        // replica under the same lock are seen.
        let lock = self.store.lock_requester(&id.email).await.map_err(|e| {
            tracing::warn!(error = %e, "the per-user request lock could not be taken");
            ServiceError::Unavailable("the request limits cannot be checked right now; try again in a moment".into())
        })?;
        let api = self.api();
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
            return Err(ServiceError::TooMany(format!(
                "you already have {open} open requests (the limit is {}); withdraw one first",
                cfg.web.max_open_requests_per_user
            )));
        }
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        let recent = mine.iter().filter(|a| created(a).is_some_and(|t| t > hour_ago)).count();
        if recent >= cfg.web.max_requests_per_hour {
            return Err(ServiceError::TooMany(format!(
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
        self.recorder.request_created();
        Ok(created)
    }

    /// Applies a decision after checking who may take it and whether the request's state allows it.
    pub async fn decide(
        &self,
        id: &Identity,
        name: &str,
        decision: DecisionInput,
    ) -> Result<AccessRequest, ServiceError> {
        let api = self.api();
        // Retries: a 409 means the controller wrote status in between; the check is repeated on fresh data.
        for attempt in 0..3 {
            let ar = self.get_visible(id, name).await?;
            let spec_patch = self.decision_patch(id, &ar, &decision)?;
            let patch = json!({
                "metadata": {"resourceVersion": ar.metadata.resource_version},
                "spec": spec_patch,
            });
            match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(updated) => {
                    self.recorder.decision(decision.verb());
                    tracing::info!(request = name, actor = %id.email, decision = decision.verb(), "decision written");
                    return Ok(updated);
                }
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < 2 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(
            "the request keeps changing; reload and try again".into(),
        ))
    }

    /// The spec fields a decision writes on `ar`, or why `id` may not take it now. Pure: no I/O, so the
    /// refusals are unit-tested on plain objects.
    pub fn decision_patch(
        &self,
        id: &Identity,
        ar: &AccessRequest,
        decision: &DecisionInput,
    ) -> Result<serde_json::Value, ServiceError> {
        let cfg = &self.config;
        let allowed = self.actions(id, ar);
        let p = rules::phase_of(ar);
        let own = is_requester(id, ar);
        if p.is_terminal() {
            return Err(ServiceError::Conflict(format!("the request has already ended ({p:?})")));
        }
        let at = rules::time::fmt_time_millis(Utc::now());
        let by = id.email.clone();
        Ok(match decision {
            DecisionInput::Approve { ttl_seconds } => {
                if !id.is_admin {
                    return Err(ServiceError::Forbidden("only admins approve requests".into()));
                }
                if own && !cfg.allow_self_approval {
                    return Err(ServiceError::Forbidden("you cannot approve your own request".into()));
                }
                if !allowed.approve {
                    return Err(ServiceError::Conflict("the request is no longer pending".into()));
                }
                if let Some(t) = ttl_seconds
                    && let Err(e) = rules::ttl::check_ttl(*t, cfg)
                {
                    return Err(ServiceError::invalid(
                        "ttlSeconds",
                        format!("the duration must be between {} and {} seconds", e.min, e.max),
                    ));
                }
                json!({"approval": Approval { by, at, ttl_seconds: *ttl_seconds }})
            }
            DecisionInput::Deny { reason } => {
                if !id.is_admin {
                    return Err(ServiceError::Forbidden("only admins deny requests".into()));
                }
                let reason = reason.trim();
                if reason.is_empty() {
                    return Err(ServiceError::invalid("reason", "say why the request is denied"));
                }
                if reason.chars().count() > MAX_REASON {
                    return Err(ServiceError::invalid(
                        "reason",
                        format!("at most {MAX_REASON} characters"),
                    ));
                }
                if !allowed.deny {
                    return Err(ServiceError::Conflict("the request is no longer pending".into()));
                }
                json!({"denial": Denial { by, at, reason: reason.to_string() }})
            }
            DecisionInput::Revoke { reason } => {
                if !id.is_admin {
                    return Err(ServiceError::Forbidden("only admins revoke access".into()));
                }
                let reason = reason.trim();
                if reason.chars().count() > MAX_REASON {
                    return Err(ServiceError::invalid(
                        "reason",
                        format!("at most {MAX_REASON} characters"),
                    ));
                }
                if !allowed.revoke {
                    return Err(ServiceError::Conflict(
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
                    return Err(ServiceError::Forbidden(
                        "only the requester can withdraw a request".into(),
                    ));
                }
                if !allowed.withdraw {
                    return Err(ServiceError::Conflict("the request can no longer be withdrawn".into()));
                }
                json!({"withdrawal": Decision { by, at }})
            }
            DecisionInput::Extend { seconds } => {
                if !id.is_admin {
                    return Err(ServiceError::Forbidden("only admins extend access".into()));
                }
                if let Err(e) = rules::ttl::check_extension(*seconds, cfg) {
                    return Err(ServiceError::invalid(
                        "seconds",
                        format!("an extension is between 1 and {} seconds", e.max),
                    ));
                }
                if !allowed.extend {
                    return Err(ServiceError::Conflict("only active access can be extended".into()));
                }
                if !cfg.allow_extension_beyond_max_ttl {
                    let st = ar.status.clone().unwrap_or_default();
                    if let (Some(active), Some(expires)) = (
                        st.active_at.as_deref().and_then(rules::time::parse_time),
                        st.expires_at.as_deref().and_then(rules::time::parse_time),
                    ) {
                        let granted = (expires - active).num_seconds();
                        if granted + seconds > cfg.max_ttl_seconds {
                            let room = (cfg.max_ttl_seconds - granted).max(0);
                            return Err(ServiceError::invalid(
                                "seconds",
                                format!(
                                    "access may last at most {} seconds in total; at most {room} more seconds can be added",
                                    cfg.max_ttl_seconds
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
        })
    }
}

fn phase_rank(p: Phase) -> u8 {
    match p {
        Phase::Pending => 0,
        Phase::Approved => 1,
        Phase::Active => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    //! The service called directly: no HTTP server. List, validation and decision rules run on plain
    //! objects (a reflector store filled by its writer); reads and writes go to kubesim.

    use kube::runtime::watcher;
    use serde_json::Value;

    use super::*;
    use crate::auth::AuthSource;

    const ADMIN: &str = "admin@example.com";
    const ALICE: &str = "alice@example.com";
    const BOB: &str = "bob@example.com";

    fn config(extra: &str) -> Arc<Config> {
        let yaml = format!(
            "namespace: janus\nadminEmails: [{ADMIN}]\nminTtlSeconds: 600\ndefaultTtlSeconds: 1800\nmaxTtlSeconds: 3600\nexcludedNamespaces: [kube-system]\n{extra}"
        );
        Arc::new(Config::from_yaml(&yaml, "test").expect("config"))
    }

    fn identity(email: &str) -> Identity {
        Identity {
            email: email.into(),
            name: email.into(),
            is_admin: email == ADMIN,
            groups: vec![],
            auth: AuthSource::Local,
            csrf: String::new(),
            session: None,
        }
    }

    /// A request of `requester`, created `age_secs` ago, in `phase` (None: no status yet, Pending).
    fn request(name: &str, requester: &str, cluster: &str, phase: Option<&str>, age_secs: i64) -> AccessRequest {
        let created = rules::time::fmt_time(Utc::now() - chrono::Duration::seconds(age_secs));
        let mut v = json!({
            "apiVersion": "k8s-janus.opsmode.io/v1alpha1",
            "kind": "AccessRequest",
            "metadata": {"name": name, "creationTimestamp": created, "resourceVersion": "1"},
            "spec": {"requester": requester, "cluster": cluster, "namespaces": ["team-a"], "reason": "debugging", "ttlSeconds": 1800},
        });
        if let Some(p) = phase {
            v["status"] = json!({"phase": p});
        }
        serde_json::from_value(v).expect("request")
    }

    fn cache(items: Vec<AccessRequest>) -> reflector::Store<AccessRequest> {
        let mut w = reflector::store::Writer::<AccessRequest>::default();
        for ar in items {
            w.apply_watcher_event(&watcher::Event::Apply(ar));
        }
        w.as_reader()
    }

    /// A service whose API client points at a closed port: these tests must not need a cluster, and a
    /// call that reaches for one fails instead of passing.
    async fn offline(config: Arc<Config>, items: Vec<AccessRequest>) -> (RequestService, tempfile::TempDir) {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().expect("url"))).expect("client");
        service(config, client, String::new(), String::new(), cache(items)).await
    }

    async fn service(
        config: Arc<Config>,
        client: kube::Client,
        server: String,
        ca_pem: String,
        requests: reflector::Store<AccessRequest>,
    ) -> (RequestService, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("janus.db").display()), None)
            .await
            .expect("store");
        let clusters = ClusterService::new(
            config.clone(),
            Arc::new(janus_kube::Clusters::new(
                config.clone(),
                client.clone(),
                server,
                ca_pem,
            )),
            Arc::default(),
        );
        let svc = RequestService::new(
            config,
            client,
            requests,
            clusters,
            store,
            Arc::new(super::super::NoRecorder),
        );
        (svc, dir)
    }

    fn names(page: &ListPage) -> Vec<&str> {
        page.items.iter().map(|r| r.name.as_str()).collect()
    }

    fn invalid_field(e: ServiceError) -> &'static str {
        match e {
            ServiceError::Invalid { field, .. } => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    /// A non-admin lists only their own requests, even when filtering by someone else; asking for
    /// everybody's is refused; an admin's `scope=all` lists everybody's.
    #[tokio::test]
    async fn lists_show_each_user_only_their_own_requests() {
        let (svc, _dir) = offline(
            config(""),
            vec![
                request("a1", ALICE, "central", None, 10),
                request("b1", BOB, "central", None, 20),
                request("a2", "Alice@Example.com", "central", Some("Active"), 30),
            ],
        )
        .await;
        let alice = identity(ALICE);
        let mine = svc.list(&alice, &ListFilter::default()).expect("list");
        assert_eq!(names(&mine), ["a1", "a2"], "the requester comparison ignores case");
        let filtered = ListFilter {
            requester: Some("bob".into()),
            ..Default::default()
        };
        assert_eq!(svc.list(&alice, &filtered).expect("list").total, 0);
        let all = ListFilter {
            scope: Some("all".into()),
            ..Default::default()
        };
        assert!(matches!(svc.list(&alice, &all), Err(ServiceError::Forbidden(_))));
        let admin = svc.list(&identity(ADMIN), &all).expect("list");
        assert_eq!(names(&admin), ["a1", "b1", "a2"]);
        // The admin sees everybody's, but may decide only on others': the view says so per request.
        assert!(
            admin
                .items
                .iter()
                .all(|r| r.actions.approve == (r.phase == Phase::Pending))
        );
    }

    /// Pending first, then the other open phases, then ended ones; newest first within a phase; filters
    /// by cluster, phase (any case) and creation time; pages by offset and a bounded limit.
    #[tokio::test]
    async fn lists_sort_filter_and_page() {
        let (svc, _dir) = offline(
            config(""),
            vec![
                request("old-pending", BOB, "central", None, 300),
                request("new-pending", BOB, "central", Some("Pending"), 100),
                request("active", BOB, "remote", Some("Active"), 50),
                request("expired", BOB, "central", Some("Expired"), 10),
                request("approved", BOB, "central", Some("Approved"), 400),
            ],
        )
        .await;
        let admin = identity(ADMIN);
        let all = |f: ListFilter| {
            svc.list(
                &admin,
                &ListFilter {
                    scope: Some("all".into()),
                    ..f
                },
            )
            .expect("list")
        };
        assert_eq!(
            names(&all(ListFilter::default())),
            ["new-pending", "old-pending", "approved", "active", "expired"]
        );
        let remote = all(ListFilter {
            cluster: Some("remote".into()),
            ..Default::default()
        });
        assert_eq!(names(&remote), ["active"]);
        let pending = all(ListFilter {
            phase: Some("PENDING".into()),
            ..Default::default()
        });
        assert_eq!(
            names(&pending),
            ["new-pending", "old-pending"],
            "no status counts as Pending"
        );
        let since = rules::time::fmt_time(Utc::now() - chrono::Duration::seconds(200));
        let recent = all(ListFilter {
            since: Some(since),
            ..Default::default()
        });
        assert_eq!(names(&recent), ["new-pending", "active", "expired"]);
        let page = all(ListFilter {
            offset: Some(1),
            limit: Some(2),
            ..Default::default()
        });
        assert_eq!(
            (names(&page), page.total, page.offset, page.limit),
            (vec!["old-pending", "approved"], 5, 1, 2)
        );
        let beyond = all(ListFilter {
            offset: Some(99),
            limit: Some(0),
            ..Default::default()
        });
        assert_eq!(
            (beyond.items.len(), beyond.offset, beyond.limit),
            (0, 5, 1),
            "offset capped, limit at least 1"
        );
        let huge = all(ListFilter {
            limit: Some(10_000),
            ..Default::default()
        });
        assert_eq!(huge.limit, 500);
    }

    /// Every field of a new request is checked before any cluster is asked, each error naming its field.
    #[tokio::test]
    async fn create_refuses_invalid_fields_before_asking_a_cluster() {
        let (svc, _dir) = offline(config(""), vec![]).await;
        let ok = CreateInput {
            cluster: "central".into(),
            namespaces: vec!["team-a".into(), " team-a ".into()],
            ttl_seconds: None,
            reason: "  debugging  ".into(),
        };
        let (reason, ttl, namespaces) = svc.validate(&ok).expect("valid");
        assert_eq!(
            (reason.as_str(), ttl, namespaces.into_iter().collect::<Vec<_>>()),
            ("debugging", 1800, vec!["team-a".to_string()]),
            "trimmed, default TTL, namespaces deduplicated"
        );
        let cases: Vec<(&str, CreateInput)> = vec![
            (
                "reason",
                CreateInput {
                    reason: "   ".into(),
                    ..ok.clone()
                },
            ),
            (
                "reason",
                CreateInput {
                    reason: "x".repeat(MAX_REASON + 1),
                    ..ok.clone()
                },
            ),
            (
                "ttlSeconds",
                CreateInput {
                    ttl_seconds: Some(599),
                    ..ok.clone()
                },
            ),
            (
                "ttlSeconds",
                CreateInput {
                    ttl_seconds: Some(3601),
                    ..ok.clone()
                },
            ),
            (
                "namespaces",
                CreateInput {
                    namespaces: vec![],
                    ..ok.clone()
                },
            ),
            (
                "namespaces",
                CreateInput {
                    namespaces: (0..=MAX_NAMESPACES).map(|i| format!("ns-{i}")).collect(),
                    ..ok.clone()
                },
            ),
            (
                "namespaces",
                CreateInput {
                    namespaces: vec!["Team_A".into()],
                    ..ok.clone()
                },
            ),
            (
                "namespaces",
                CreateInput {
                    namespaces: vec!["kube-system".into()],
                    ..ok.clone()
                },
            ),
            (
                "namespaces",
                CreateInput {
                    namespaces: vec!["janus".into()],
                    ..ok.clone()
                },
            ),
            (
                "cluster",
                CreateInput {
                    cluster: "../central".into(),
                    ..ok.clone()
                },
            ),
        ];
        let me = identity(ALICE);
        for (field, input) in cases {
            let what = format!("{input:?}");
            // Through create as a handler calls it: the refusal comes before any API call (the client
            // points at a closed port, which would answer Unavailable instead).
            let e = svc.create(&me, input).await.expect_err(&what);
            assert_eq!(invalid_field(e), field, "{what}");
        }
    }

    /// Only admins decide; an admin may not approve their own request unless self-approval is configured;
    /// only the requester withdraws; ended requests take no decision; TTL and extension bounds hold.
    #[tokio::test]
    async fn decisions_are_refused_to_those_who_may_not_take_them() {
        let (svc, _dir) = offline(config(""), vec![]).await;
        let admin = identity(ADMIN);
        let alice = identity(ALICE);
        let alices = request("r1", ALICE, "central", None, 10);
        let admins = request("r2", ADMIN, "central", None, 10);
        let approve = DecisionInput::Approve { ttl_seconds: None };
        let forbidden = |r: Result<Value, ServiceError>| match r {
            Err(ServiceError::Forbidden(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            forbidden(svc.decision_patch(&alice, &alices, &approve)),
            "only admins approve requests"
        );
        assert_eq!(
            forbidden(svc.decision_patch(&admin, &admins, &approve)),
            "you cannot approve your own request"
        );
        forbidden(svc.decision_patch(&alice, &alices, &DecisionInput::Deny { reason: "no".into() }));
        forbidden(svc.decision_patch(&alice, &alices, &DecisionInput::Extend { seconds: 60 }));
        forbidden(svc.decision_patch(&alice, &alices, &DecisionInput::Revoke { reason: String::new() }));
        forbidden(svc.decision_patch(&admin, &alices, &DecisionInput::Withdraw));
        let patch = svc
            .decision_patch(&admin, &alices, &approve)
            .expect("admin approves another's");
        assert_eq!(patch["approval"]["by"], ADMIN);
        let withdraw = svc
            .decision_patch(&alice, &alices, &DecisionInput::Withdraw)
            .expect("own");
        assert_eq!(withdraw["withdrawal"]["by"], ALICE);
        let over = DecisionInput::Approve {
            ttl_seconds: Some(7200),
        };
        assert_eq!(
            invalid_field(svc.decision_patch(&admin, &alices, &over).expect_err("ttl")),
            "ttlSeconds"
        );
        let no_reason = DecisionInput::Deny { reason: " ".into() };
        assert_eq!(
            invalid_field(svc.decision_patch(&admin, &alices, &no_reason).expect_err("reason")),
            "reason"
        );
        let ended = request("r3", ALICE, "central", Some("Denied"), 10);
        assert!(matches!(
            svc.decision_patch(&alice, &ended, &DecisionInput::Withdraw),
            Err(ServiceError::Conflict(_))
        ));
        let pending_extend = svc.decision_patch(&admin, &alices, &DecisionInput::Extend { seconds: 60 });
        assert!(
            matches!(pending_extend, Err(ServiceError::Conflict(_))),
            "only active access is extended"
        );

        let (selfish, _dir2) = offline(config("allowSelfApproval: true\n"), vec![]).await;
        selfish
            .decision_patch(&admin, &admins, &approve)
            .expect("self-approval when configured");
    }

    /// Extensions stay within maxTtlSeconds in total unless allowed beyond it.
    #[tokio::test]
    async fn extensions_stay_within_the_maximum() {
        let (svc, _dir) = offline(config(""), vec![]).await;
        let admin = identity(ADMIN);
        let mut active = request("r1", ALICE, "central", Some("Active"), 10);
        let now = Utc::now();
        if let Some(st) = active.status.as_mut() {
            st.active_at = Some(rules::time::fmt_time(now));
            st.expires_at = Some(rules::time::fmt_time(now + chrono::Duration::seconds(3000)));
        }
        let extend = |s| DecisionInput::Extend { seconds: s };
        let patch = svc.decision_patch(&admin, &active, &extend(600)).expect("fits");
        assert_eq!(patch["extensions"][0]["seconds"], 600);
        let e = svc
            .decision_patch(&admin, &active, &extend(601))
            .expect_err("beyond max");
        assert!(e.to_string().contains("at most 600 more seconds"), "{e}");
        let (beyond, _dir2) = offline(config("allowExtensionBeyondMaxTtl: true\n"), vec![]).await;
        beyond
            .decision_patch(&admin, &active, &extend(601))
            .expect("allowed beyond");
    }

    /// Against an API server (kubesim): create checks the cluster and its namespaces, labels the request
    /// for counting and applies the per-user limit; decide writes the decision and refuses the requester's
    /// own approval; others' requests are not found.
    #[tokio::test]
    async fn create_and_decide_against_the_api_server() {
        let sim = kubesim::SimBuilder::new().start().await.expect("kubesim");
        sim.load_seed(&janus_api::crd_yaml().expect("crd")).expect("crd");
        sim.load_seed(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: janus}\n",
        )
        .expect("namespaces");
        let client = sim.client().await.expect("client");
        let (svc, _dir) = service(
            config("web: {maxOpenRequestsPerUser: 1}\n"),
            client,
            sim.url(),
            sim.ca_pem().to_string(),
            cache(vec![]),
        )
        .await;
        let alice = identity(ALICE);
        let admin = identity(ADMIN);
        let input = CreateInput {
            cluster: "central".into(),
            namespaces: vec!["team-a".into()],
            ttl_seconds: Some(900),
            reason: "debugging".into(),
        };
        let unknown = CreateInput {
            cluster: "nowhere".into(),
            ..input.clone()
        };
        assert_eq!(
            invalid_field(svc.create(&alice, unknown).await.expect_err("unknown")),
            "cluster"
        );
        let missing = CreateInput {
            namespaces: vec!["team-b".into()],
            ..input.clone()
        };
        assert_eq!(
            invalid_field(svc.create(&alice, missing).await.expect_err("missing")),
            "namespaces"
        );

        let ar = svc.create(&alice, input.clone()).await.expect("created");
        let name = ar.metadata.name.clone().expect("generated name");
        assert_eq!(ar.spec.requester, ALICE);
        assert_eq!(
            ar.metadata.labels.as_ref().and_then(|l| l.get(REQUESTER_LABEL)),
            Some(&requester_label(ALICE))
        );
        assert!(matches!(svc.create(&alice, input).await, Err(ServiceError::TooMany(_))));

        assert!(matches!(
            svc.get_visible(&identity(BOB), &name).await,
            Err(ServiceError::NotFound(_))
        ));
        let approve = || DecisionInput::Approve { ttl_seconds: Some(600) };
        assert!(matches!(
            svc.decide(&alice, &name, approve()).await,
            Err(ServiceError::Forbidden(_))
        ));
        let decided = svc.decide(&admin, &name, approve()).await.expect("approved");
        let approval = decided.spec.approval.expect("approval written");
        assert_eq!((approval.by.as_str(), approval.ttl_seconds), (ADMIN, Some(600)));
        let stored = Api::<AccessRequest>::all(sim.client().await.expect("client"))
            .get(&name)
            .await
            .expect("read back");
        assert!(stored.spec.approval.is_some(), "the decision reached the API server");

        let own = svc
            .create(
                &admin,
                CreateInput {
                    cluster: "central".into(),
                    namespaces: vec!["team-a".into()],
                    ttl_seconds: None,
                    reason: "mine".into(),
                },
            )
            .await
            .expect("admin's own request");
        let own_name = own.metadata.name.expect("name");
        match svc.decide(&admin, &own_name, approve()).await {
            Err(ServiceError::Forbidden(m)) => assert_eq!(m, "you cannot approve your own request"),
            other => panic!("self-approval was not refused: {other:?}"),
        }
    }
}
