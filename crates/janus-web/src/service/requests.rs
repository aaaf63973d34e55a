//! Access requests as the web handles them: listing from the watch cache, reading, creating and deciding,
//! each checked against [`janus_api::rules`] for the calling identity.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::FromRef;
use chrono::{DateTime, Utc};
use janus_api::access_request::{
    AccessRequestSpec, ApprovalEntry, BreakGlass, BreakGlassReview, Decision, Denial, Extension, Phase, PodScope,
    Revocation,
};
use janus_api::config::Config;
use janus_api::rules::policy::{self as rules_policy, Governing, NamespaceInfo, RequestFacts};
use janus_api::rules::{self, Actions, Actor};
use janus_api::{AccessRequest, names};
use janus_store::{AuditEvent, AuditQuery, Store};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector;
use serde::Deserialize;
use serde_json::json;

use super::clusters::ClusterService;
use super::policy as web_policy;
use super::view::{ApprovalsView, ListPage, PolicyPreview, RequestView};
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
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
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
    /// When access should start: RFC 3339, or the form's local `YYYY-MM-DDTHH:MM` in
    /// `displayTimezone`; from now to 30 days ahead. Absent: as soon as approved.
    #[serde(default)]
    pub start_at: Option<String>,
    /// Activate at once under the policy's break-glass rule (reviewed afterwards).
    #[serde(default)]
    pub break_glass: bool,
    /// The access role (`GET /api/v1/roles` lists those the caller may ask for). Absent or empty: `exec`.
    #[serde(default)]
    pub role: Option<String>,
    /// Limits the grant to some pods: `{"selector": {"matchLabels": …, "matchExpressions": …}}` or
    /// `{"workload": {"kind": "Deployment", "name": …}}` (a workload only with exactly one namespace).
    #[serde(default)]
    pub pod_scope: Option<PodScope>,
    /// The request form's text field: a label selector in Kubernetes syntax (`app=checkout,tier in
    /// (a,b)`), the same as `podScope.selector`. Not together with `podScope`; empty: no scope.
    #[serde(default)]
    pub pod_selector: Option<String>,
}

/// How far ahead a request may be scheduled (`startAt`).
pub const MAX_START_AHEAD_DAYS: i64 = 30;

/// Longest approval or review comment (the CRD's limit).
pub const MAX_COMMENT: usize = 1000;

/// Attempts at writing a decision when the request changed in between (each re-reads and re-checks).
const DECISION_ATTEMPTS: u32 = 6;

/// A human decision.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum DecisionInput {
    /// Approve, optionally with another TTL and a comment.
    Approve {
        /// TTL override (one of the policy's approval TTL options when it has any).
        #[serde(default, rename = "ttlSeconds")]
        ttl_seconds: Option<i64>,
        /// Shown with the request and kept in the audit log.
        #[serde(default)]
        comment: String,
    },
    /// Acknowledge (review) a break-glass activation.
    Acknowledge {
        /// Shown with the request and kept in the audit log.
        #[serde(default)]
        comment: String,
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
            Self::Acknowledge { .. } => "acknowledge",
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

    /// The time zone times are shown (and the form's start time is read) in.
    pub fn tz(&self) -> chrono_tz::Tz {
        crate::timefmt::parse_zone(&self.config.display_timezone).unwrap_or(chrono_tz::UTC)
    }

    fn api(&self) -> Api<AccessRequest> {
        Api::all(self.client.clone())
    }

    /// The actions allowed to `id` on `ar` under the configured switches and its approval policy
    /// ([`janus_api::rules::actions`], [`super::policy`]).
    pub fn actions(&self, id: &Identity, ar: &AccessRequest) -> Actions {
        self.view(id, ar).actions
    }

    /// The view of `ar` for `id`, its policy judged on the namespace metadata last listed (see
    /// [`ClusterService::namespace_info_cached`]); decisions re-read it.
    pub fn view(&self, id: &Identity, ar: &AccessRequest) -> RequestView {
        let infos = self
            .clusters
            .namespace_info_cached(&ar.spec.cluster, &ar.spec.namespaces);
        RequestView::of(&self.config, id, ar, &infos)
    }

    /// The metadata of `ar`'s namespaces at most a few seconds old, else (the cluster cannot answer) the
    /// last seen: for reading. Decisions use [`Self::namespace_info_fresh`].
    async fn namespace_info(&self, ar: &AccessRequest) -> Vec<NamespaceInfo> {
        match self.namespace_info_fresh(ar).await {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(cluster = %ar.spec.cluster, error = %e, "namespace metadata unavailable; using the last seen");
                self.clusters
                    .namespace_info_cached(&ar.spec.cluster, &ar.spec.namespaces)
            }
        }
    }

    /// The metadata of `ar`'s namespaces at most a few seconds old; `Unavailable` when the cluster
    /// cannot answer (a decision is not judged on labels that may be missing).
    async fn namespace_info_fresh(&self, ar: &AccessRequest) -> Result<Vec<NamespaceInfo>, ServiceError> {
        match self
            .clusters
            .namespace_info(&ar.spec.cluster, &ar.spec.namespaces)
            .await
        {
            Ok(i) => Ok(i),
            Err(ServiceError::NotFound(m)) => Err(ServiceError::Unavailable(format!(
                "the approval policy cannot be determined: {m}"
            ))),
            Err(e) => Err(e),
        }
    }

    /// The view of `ar` for `id` with its namespaces' metadata read now (at most a few seconds old).
    pub async fn view_fresh(&self, id: &Identity, ar: &AccessRequest) -> RequestView {
        let infos = self.namespace_info(ar).await;
        RequestView::of(&self.config, id, ar, &infos)
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
        // Every `{name}` route (API, pages, terminal) comes through here: a name no Kubernetes object
        // can have is answered without asking the API server (which would refuse the URL, and that
        // refusal read as "the Kubernetes API is unavailable").
        if name.len() > MAX_NAME || !names::is_dns_subdomain(name) {
            return Err(ServiceError::NotFound(
                "no such request: request names are lowercase letters, digits, '-' and '.'".into(),
            ));
        }
        let ar = self.api().get_opt(name).await?.ok_or_else(not_found)?;
        if visible_to(id, &ar) {
            return Ok(ar);
        }
        // The approvers of its policy see it too (they decide on it).
        let infos = self.namespace_info(&ar).await;
        let approver =
            web_policy::governing(&self.config, &ar, &infos).is_ok_and(|g| web_policy::is_policy_approver(&g, &ar, id));
        if !approver {
            return Err(not_found());
        }
        Ok(ar)
    }

    /// Whether `id` may see `ar` (admin, requester, or an approver of its policy), judged without asking
    /// any cluster (the namespace metadata last listed): for live updates, which must not wait on a
    /// cluster. Reads and decisions use [`Self::get_visible`].
    pub fn may_see(&self, id: &Identity, ar: &AccessRequest) -> bool {
        if visible_to(id, ar) {
            return true;
        }
        let infos = self
            .clusters
            .namespace_info_cached(&ar.spec.cluster, &ar.spec.namespaces);
        web_policy::governing(&self.config, ar, &infos).is_ok_and(|g| web_policy::is_policy_approver(&g, ar, id))
    }

    /// What `id` may decide: pending requests they may approve now and break-glass activations awaiting
    /// their review, oldest first, from the watch cache.
    pub async fn approvals(&self, id: &Identity) -> ApprovalsView {
        let all = self.requests.state();
        // The metadata of every cluster with something to decide, read once (cached a few seconds).
        let clusters: BTreeSet<&str> = all
            .iter()
            .filter(|a| web_policy::open_for_approval(a) || web_policy::awaiting_review(a))
            .map(|a| a.spec.cluster.as_str())
            .collect();
        for c in clusters {
            if let Err(e) = self.clusters.namespace_info(c, &[]).await {
                tracing::debug!(cluster = c, error = %e, "namespace metadata unavailable; using the last seen");
            }
        }
        let mut items: Vec<&Arc<AccessRequest>> = all.iter().collect();
        items.sort_by_cached_key(|a| (created(a), a.metadata.name.clone()));
        let mut pending = Vec::new();
        let mut awaiting_review = Vec::new();
        for ar in items {
            let open = web_policy::open_for_approval(ar);
            let review = web_policy::awaiting_review(ar);
            if !open && !review {
                continue;
            }
            let v = self.view(id, ar);
            if open && v.actions.approve {
                pending.push(v);
            } else if review && v.acknowledge {
                awaiting_review.push(v);
            }
        }
        let approver = id.is_admin || !pending.is_empty() || !awaiting_review.is_empty() || self.named_approver(id);
        ApprovalsView {
            pending,
            awaiting_review,
            approver,
        }
    }

    /// The policy a request by `id` for `namespaces` on `cluster` with `role` (default `exec`) would fall
    /// under, and what it means for them (break-glass, auto-approval now for `ttl`, default
    /// `defaultTtlSeconds`). The role matters: `match.roles` picks the policy and `allowedRoles` may
    /// refuse it. An unknown role is 422 on `role`.
    pub async fn preview(
        &self,
        id: &Identity,
        cluster: &str,
        namespaces: &[String],
        ttl: Option<i64>,
        role: Option<&str>,
    ) -> Result<PolicyPreview, ServiceError> {
        let cfg = &self.config;
        if !names::is_dns_label(cluster) {
            return Err(ServiceError::invalid("cluster", "choose a cluster"));
        }
        let wanted: BTreeSet<String> = namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        check_namespaces(cfg, &wanted)?;
        let role = role.map(str::trim).filter(|r| !r.is_empty());
        if let Some(r) = role {
            rules::scope::find_role(&cfg.roles, r).map_err(|e| ServiceError::invalid("role", e.to_string()))?;
        }
        let asked = ttl;
        let ttl = asked.unwrap_or(cfg.default_ttl_seconds);
        let mut spec = AccessRequestSpec::new(
            id.email.clone(),
            cluster.to_string(),
            wanted.into_iter().collect(),
            String::new(),
            ttl,
        );
        spec.requester_groups = web_policy::requester_groups(&self.config, id);
        spec.role = role.map(str::to_string);
        let infos = self.clusters.namespace_info(cluster, &spec.namespaces).await?;
        let now = Utc::now();
        let facts = RequestFacts::of(&spec, &infos, now);
        let mut out = PolicyPreview {
            cluster: cluster.to_string(),
            namespaces: spec.namespaces.clone(),
            role: spec.role_name().to_string(),
            ..Default::default()
        };
        let gov = match rules_policy::govern(cfg, &facts) {
            Ok(g) => g,
            Err(e) => {
                out.conflict = Some(e.to_string());
                return Ok(out);
            }
        };
        out.policy = gov.name.clone();
        out.role_why_not = gov.check_role(&facts).err().map(|e| e.to_string());
        out.description = gov.policy.map(|p| p.description.clone()).unwrap_or_default();
        out.approvals_required = gov.approvals_required;
        out.approvers = super::view::ApproversSummary::of(&gov);
        out.max_ttl_seconds = gov.max_ttl_seconds;
        out.approval_ttl_options = gov.approval_ttl_options.clone();
        out.reason = gov.reason.map(|r| super::view::ReasonHint {
            pattern: r.pattern.clone(),
            description: r.description.clone(),
        });
        // The rules' refusals name who may break glass or is auto-approved. Those groups and people are
        // told only to the policy's approvers (who need to know whom they review); anyone else who is not
        // named learns only that they are not (docs/security.md, "What the policy preview discloses").
        let approver = gov.eligibility("", &id.email, &web_policy::decision_groups(id)).is_ok();
        let named = |emails: &[String], groups: &[String]| {
            emails.iter().any(|e| e.trim().eq_ignore_ascii_case(id.email.trim()))
                || groups.iter().any(|g| spec.requester_groups.contains(g))
        };
        match gov.policy.and_then(|p| p.break_glass.as_ref()) {
            Some(rule) if !approver && !named(&rule.emails, &rule.groups) => {
                out.break_glass_max_ttl_seconds = Some(rule.max_ttl_seconds);
                out.break_glass_why_not = Some(format!(
                    "your account is not allowed to break glass under policy {}",
                    gov.name
                ));
            }
            Some(rule) => {
                out.break_glass_max_ttl_seconds = Some(rule.max_ttl_seconds);
                let mut bg = spec.clone();
                bg.break_glass = Some(BreakGlass {
                    at: rules::time::fmt_time(now),
                });
                // Asked without a TTL: whether the caller may break glass at all (for the rule's longest).
                if asked.is_none() {
                    bg.ttl_seconds = ttl.min(rule.max_ttl_seconds);
                }
                let bg_facts = RequestFacts::of(&bg, &infos, now);
                match gov.break_glass(&bg_facts) {
                    Ok(()) => out.break_glass_allowed = true,
                    Err(m) => out.break_glass_why_not = Some(m),
                }
            }
            None => {
                out.break_glass_why_not = Some(format!("policy {} has no break-glass rule", gov.name));
            }
        }
        if let Some(rule) = gov.policy.and_then(|p| p.auto_approve.as_ref()) {
            let restricted = !rule.groups.is_empty() || !rule.emails.is_empty();
            if restricted && !approver && !named(&rule.emails, &rule.groups) {
                out.auto_approval.why_not = Some(format!(
                    "policy {} does not auto-approve requests by your account",
                    gov.name
                ));
            } else {
                match gov.auto_approval(&facts, cfg) {
                    Ok(()) => out.auto_approval.would_approve = true,
                    Err(m) => out.auto_approval.why_not = Some(m),
                }
            }
        }
        Ok(out)
    }

    /// Whether a configured policy names `id` as an approver (by email or group), or a namespace's owners
    /// annotation (as last listed) does.
    pub fn named_approver(&self, id: &Identity) -> bool {
        let groups = web_policy::decision_groups(id);
        let by_policy = self.config.policies.iter().any(|p| {
            p.approvers
                .emails
                .iter()
                .any(|e| rules_policy::same_email(e, &id.email))
                || p.approvers.groups.iter().any(|g| groups.contains(g))
        });
        by_policy
            || (self.config.policies.iter().any(|p| p.approvers.namespace_owners)
                && self.clusters.owner_anywhere(&id.email, &groups))
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
        let reason = printable("reason", input.reason.trim(), true)?;
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
        check_namespaces(cfg, &wanted)?;
        if !names::is_dns_label(&input.cluster) {
            return Err(ServiceError::invalid("cluster", "choose a cluster"));
        }
        self.role_and_scope(input, wanted.len())?;
        Ok((reason, ttl, wanted))
    }

    /// The role (as given; `None` for `exec` asked implicitly) and pod scope of a new request, checked
    /// against the configuration ([`rules::scope::check_request`]): a configured role (a `debug` role
    /// only once it lists images), a well-formed scope (the form's `podSelector` text parsed into one).
    pub fn role_and_scope(
        &self,
        input: &CreateInput,
        namespaces: usize,
    ) -> Result<(Option<String>, Option<PodScope>), ServiceError> {
        let role = input
            .role
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        let text = input.pod_selector.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let pod_scope = match (&input.pod_scope, text) {
            (Some(_), Some(_)) => {
                return Err(ServiceError::invalid(
                    "podScope",
                    "give either podScope or podSelector, not both",
                ));
            }
            (Some(s), None) => Some(s.clone()),
            (None, Some(t)) => Some(PodScope {
                selector: Some(super::scope::parse_selector(t).map_err(|m| ServiceError::invalid("podSelector", m))?),
                workload: None,
            }),
            (None, None) => None,
        };
        let mut spec = AccessRequestSpec::new(String::new(), String::new(), vec![], String::new(), 0);
        spec.role = role.clone();
        spec.pod_scope = pod_scope.clone();
        // The namespaces' count matters for a workload scope (exactly one); the spec above only carries
        // the role and scope, so the check is made with the real count.
        let configured = rules::scope::role_of(&self.config.roles, &spec)
            .map_err(|e| ServiceError::invalid("role", e.to_string()))?;
        if let Some(scope) = &pod_scope {
            rules::scope::check_scope(scope, namespaces)
                .map_err(|e| ServiceError::invalid("podScope", e.to_string()))?;
        }
        if configured.terminal == janus_api::roles::TerminalMode::Debug && configured.debug_images.is_empty() {
            return Err(ServiceError::invalid(
                "role",
                format!(
                    "role {} lists no debug image yet (roles[].debugImages), so it could start nothing; ask an administrator",
                    configured.name
                ),
            ));
        }
        Ok((role, pod_scope))
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
        let start_at = match input.start_at.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(parse_start_at(s, self.tz(), Utc::now())?),
            None => None,
        };
        let mut spec = AccessRequestSpec::new(
            id.email.clone(),
            input.cluster.clone(),
            wanted.into_iter().collect(),
            reason,
            ttl,
        );
        spec.requester_groups = web_policy::requester_groups(&self.config, id);
        spec.start_at = start_at.map(rules::time::fmt_time);
        (spec.role, spec.pod_scope) = self.role_and_scope(&input, spec.namespaces.len())?;
        if let (Some(w), Some(ns)) = (
            spec.pod_scope.as_ref().and_then(|s| s.workload.as_ref()),
            spec.namespaces.first(),
        ) {
            self.clusters.check_workload(&input.cluster, ns, w).await?;
        }
        if input.break_glass && spec.start_at.is_some() {
            return Err(ServiceError::invalid(
                "startAt",
                "break-glass access starts at once: leave the start time empty",
            ));
        }
        if input.break_glass {
            spec.break_glass = Some(BreakGlass {
                at: rules::time::fmt_time_millis(Utc::now()),
            });
        }
        // The policy's own rules, judged as the controller will judge them (it would deny the request).
        // The list above was read a moment ago, so this reads no cluster.
        let infos = self.clusters.namespace_info(&input.cluster, &spec.namespaces).await?;
        check_policy(&self.config, &spec, &infos)?;
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
        let mut ar = AccessRequest::new("", spec);
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
        // Retries: a 409 means someone wrote in between (the controller's status, another approver's
        // approval); the check is repeated on fresh data. The resourceVersion precondition makes the
        // merge patch of a list (approvals, extensions) safe: it never replaces a list it did not see.
        for attempt in 0..DECISION_ATTEMPTS {
            let ar = self.get_visible(id, name).await?;
            // Decisions that only a policy's approvers may take are judged on namespace metadata at most a
            // few seconds old. An admin's denial, and taking access back, never wait for the target
            // cluster: they must work while it is unreachable.
            let needs_policy = match decision {
                DecisionInput::Approve { .. } | DecisionInput::Acknowledge { .. } => true,
                DecisionInput::Deny { .. } | DecisionInput::Revoke { .. } => !id.is_admin,
                DecisionInput::Withdraw | DecisionInput::Extend { .. } => false,
            };
            let infos = if needs_policy {
                self.namespace_info_fresh(&ar).await?
            } else {
                self.clusters
                    .namespace_info_cached(&ar.spec.cluster, &ar.spec.namespaces)
            };
            let spec_patch = self.decision_patch(id, &ar, &infos, &decision)?;
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
                Err(kube::Error::Api(s)) if s.code == 409 && attempt + 1 < DECISION_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt + 1))).await;
                    continue;
                }
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
        namespaces: &[NamespaceInfo],
        decision: &DecisionInput,
    ) -> Result<serde_json::Value, ServiceError> {
        let cfg = &self.config;
        let gov = web_policy::governing(cfg, ar, namespaces);
        let allowed = RequestView::with_policy(cfg, id, ar, &gov).actions;
        let p = rules::phase_of(ar);
        let own = is_requester(id, ar);
        if p.is_terminal() && !matches!(decision, DecisionInput::Acknowledge { .. }) {
            return Err(ServiceError::Conflict(format!("the request has already ended ({p:?})")));
        }
        let at = rules::time::fmt_time_millis(Utc::now());
        let by = id.email.clone();
        Ok(match decision {
            DecisionInput::Approve { ttl_seconds, comment } => {
                if let Some(r) = web_policy::approve_refusal(&gov, ar, id) {
                    return Err(refusal(r));
                }
                if let (Some(t), Ok(g)) = (ttl_seconds, &gov) {
                    check_approval_ttl(*t, g, cfg)?;
                }
                let comment = check_comment(comment)?;
                // Appended to what was read; the resourceVersion precondition (see `decide`) makes sure no
                // approval written in between is dropped.
                let mut approvals = ar.spec.approvals.clone();
                approvals.push(ApprovalEntry {
                    by,
                    at,
                    ttl_seconds: *ttl_seconds,
                    comment,
                    groups: web_policy::recorded_decision_groups(cfg, id, namespaces),
                });
                json!({"approvals": approvals})
            }
            DecisionInput::Acknowledge { comment } => {
                if let Some(r) = web_policy::why_not_acknowledge(&gov, ar, id) {
                    return Err(refusal(r));
                }
                let comment = check_comment(comment)?;
                let groups = web_policy::recorded_decision_groups(cfg, id, namespaces);
                json!({"breakGlassReview": BreakGlassReview { by, at, comment, groups }})
            }
            DecisionInput::Deny { reason } => {
                if !id.is_admin && !gov.as_ref().is_ok_and(|g| web_policy::is_policy_approver(g, ar, id)) {
                    return Err(ServiceError::Forbidden(
                        "only admins and the request's approvers deny requests".into(),
                    ));
                }
                let reason = printable("reason", reason.trim(), false)?;
                let reason = reason.as_str();
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
                // The rules let the request's approvers take access back too (always the safe way).
                let approver = gov.as_ref().is_ok_and(|g| web_policy::is_policy_approver(g, ar, id));
                if !id.is_admin && !approver {
                    return Err(ServiceError::Forbidden(
                        "only admins and the request's approvers revoke access".into(),
                    ));
                }
                let reason = printable("reason", reason.trim(), false)?;
                let reason = reason.as_str();
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
                let reason = if reason.is_empty() && id.is_admin {
                    "revoked by an admin".to_string()
                } else if reason.is_empty() {
                    "revoked by an approver".to_string()
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
                // The bound the controller caps the lifetime at (the policy's, or the break-glass rule's):
                // refused here with the room left, rather than silently cut short.
                if let Some(room) = web_policy::extension_room(cfg, ar)
                    && *seconds > room
                {
                    let bound = web_policy::lifetime_bound(cfg, ar);
                    return Err(ServiceError::invalid(
                        "seconds",
                        format!(
                            "access may last at most {} seconds in total ({}); at most {room} more seconds can be added",
                            bound.max_ttl_seconds, bound.source
                        ),
                    ));
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

/// The HTTP meaning of a refusal to approve or acknowledge.
fn refusal(r: web_policy::Refusal) -> ServiceError {
    match r {
        web_policy::Refusal::NotEligible(m) => ServiceError::Forbidden(m),
        web_policy::Refusal::Already(m) | web_policy::Refusal::State(m) => ServiceError::Conflict(m),
    }
}

/// Text one person types for others to read (in pages, the CLI's tables, notifications, audit
/// exports): no control characters (C0, DEL, C1), which could rewrite a terminal's screen or forge
/// lines. A multi-line field (the request form's reason is a textarea) keeps its line breaks; a
/// browser sends them as CRLF, stored as LF.
fn printable(field: &'static str, text: &str, multiline: bool) -> Result<String, ServiceError> {
    let text = if multiline {
        text.replace("\r\n", "\n")
    } else {
        text.to_string()
    };
    if text.chars().any(|c| c.is_control() && !(multiline && c == '\n')) {
        let allowed = if multiline { " other than line breaks" } else { "" };
        return Err(ServiceError::invalid(
            field,
            format!("the {field} must not contain control characters{allowed}"),
        ));
    }
    Ok(text)
}

/// An approval or review comment, trimmed, printable, within [`MAX_COMMENT`].
fn check_comment(comment: &str) -> Result<String, ServiceError> {
    let comment = printable("comment", comment.trim(), false)?;
    let comment = comment.as_str();
    if comment.chars().count() > MAX_COMMENT {
        return Err(ServiceError::invalid(
            "comment",
            format!("the comment is longer than {MAX_COMMENT} characters"),
        ));
    }
    Ok(comment.to_string())
}

/// An approver's TTL: one of the policy's approval TTL options when it has any, within the configured
/// bounds and the policy's maximum.
fn check_approval_ttl(ttl: i64, gov: &Governing<'_>, cfg: &Config) -> Result<(), ServiceError> {
    if !gov.approval_ttl_options.is_empty() && !gov.approval_ttl_options.contains(&ttl) {
        let options: Vec<String> = gov.approval_ttl_options.iter().map(|o| o.to_string()).collect();
        return Err(ServiceError::invalid(
            "ttlSeconds",
            format!(
                "choose one of the durations of policy {}: {} seconds",
                gov.name,
                options.join(", ")
            ),
        ));
    }
    if let Err(e) = rules::ttl::check_ttl(ttl, cfg) {
        return Err(ServiceError::invalid(
            "ttlSeconds",
            format!("the duration must be between {} and {} seconds", e.min, e.max),
        ));
    }
    if ttl > gov.max_ttl_seconds {
        return Err(ServiceError::invalid(
            "ttlSeconds",
            format!("policy {} allows at most {} seconds", gov.name, gov.max_ttl_seconds),
        ));
    }
    Ok(())
}

/// The requested namespaces (trimmed, de-duplicated) checked the same way for a request and for the
/// form's policy preview: at least one, at most [`MAX_NAMESPACES`], namespace names, none excluded.
fn check_namespaces(cfg: &Config, wanted: &BTreeSet<String>) -> Result<(), ServiceError> {
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
    Ok(())
}

/// Refuses a new request its policy would refuse (the controller would deny it): namespaces under
/// different policies, a reason not matching the pattern, a TTL above the policy's maximum, break-glass
/// not allowed. The message is the rule's own.
pub fn check_policy(
    config: &Config,
    spec: &AccessRequestSpec,
    namespaces: &[NamespaceInfo],
) -> Result<(), ServiceError> {
    let facts = RequestFacts::of(spec, namespaces, Utc::now());
    let gov = rules_policy::govern(config, &facts).map_err(|e| ServiceError::invalid("namespaces", e.to_string()))?;
    // The role first: `allowedRoles` refuses it whatever the other fields say.
    gov.check_role(&facts)
        .map_err(|e| ServiceError::invalid("role", e.to_string()))?;
    // Break-glass first, so its refusal is reported beside its checkbox.
    if facts.break_glass
        && let Err(m) = gov.break_glass(&facts)
    {
        return Err(ServiceError::invalid("breakGlass", m));
    }
    if let Err(m) = gov.check_request(&facts, config) {
        // The field it is about: with the shortest TTL, only the reason can still fail.
        let short = RequestFacts {
            ttl_seconds: 1,
            break_glass: false,
            ..facts.clone()
        };
        let field = if gov.quorum_reachable(&facts).err().as_ref() == Some(&m) {
            // Nobody but the requester could approve these namespaces.
            "namespaces"
        } else if gov.check_request(&short, config).is_err() {
            "reason"
        } else {
            "ttlSeconds"
        };
        return Err(ServiceError::invalid(field, m));
    }
    Ok(())
}

/// Parses a requested start time: RFC 3339, or the form's local `YYYY-MM-DDTHH:MM[:SS]` in `tz`. It
/// must not lie in the past (a minute's grace for the form's minute precision) nor more than
/// [`MAX_START_AHEAD_DAYS`] ahead.
pub fn parse_start_at(input: &str, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, ServiceError> {
    use chrono::TimeZone as _;
    let bad = || {
        ServiceError::invalid(
            "startAt",
            format!("{input:?} is not a time: use YYYY-MM-DDTHH:MM (in {tz}) or RFC 3339"),
        )
    };
    if input.len() > 64 {
        return Err(bad());
    }
    let t = match rules::time::parse_time(input) {
        Some(t) => t,
        None => {
            let naive = chrono::NaiveDateTime::parse_from_str(input, "%Y-%m-%dT%H:%M")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(input, "%Y-%m-%dT%H:%M:%S"))
                .map_err(|_| bad())?;
            match tz.from_local_datetime(&naive) {
                chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
                // A time that occurs twice (clocks turned back): the first of the two.
                chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
                chrono::LocalResult::None => {
                    return Err(ServiceError::invalid(
                        "startAt",
                        format!("{input} does not exist in {tz} (the clocks skip it); choose another time"),
                    ));
                }
            }
        }
    };
    if t < now - chrono::Duration::seconds(60) {
        return Err(ServiceError::invalid("startAt", "the start time is in the past"));
    }
    if t > now + chrono::Duration::days(MAX_START_AHEAD_DAYS) {
        return Err(ServiceError::invalid(
            "startAt",
            format!("the start time may be at most {MAX_START_AHEAD_DAYS} days ahead"),
        ));
    }
    Ok(t)
}

/// Lists show what still needs a decision first, then what holds or will hold access, then what ended.
fn phase_rank(p: Phase) -> u8 {
    match p {
        Phase::Pending => 0,
        Phase::Approved => 1,
        // Approved ahead of its start time: it will hold access, so it is listed with the open ones.
        Phase::Scheduled => 2,
        Phase::Active => 3,
        _ => 4,
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
            token: None,
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

    /// The metadata of a request's namespaces without labels or annotations (the default policy needs none).
    fn infos(ar: &AccessRequest) -> Vec<NamespaceInfo> {
        ar.spec
            .namespaces
            .iter()
            .map(|n| NamespaceInfo {
                name: n.clone(),
                ..Default::default()
            })
            .collect()
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

    /// Scheduled requests (approved ahead of their start) are listed before Active and ended ones, not
    /// among the ended.
    #[tokio::test]
    async fn scheduled_requests_are_listed_with_the_open_ones() {
        let (svc, _dir) = offline(
            config(""),
            vec![
                request("expired", BOB, "central", Some("Expired"), 10),
                request("scheduled", BOB, "central", Some("Scheduled"), 500),
                request("active", BOB, "central", Some("Active"), 50),
                request("pending", BOB, "central", Some("Pending"), 20),
            ],
        )
        .await;
        let page = svc
            .list(
                &identity(ADMIN),
                &ListFilter {
                    scope: Some("all".into()),
                    ..Default::default()
                },
            )
            .expect("list");
        assert_eq!(names(&page), ["pending", "scheduled", "active", "expired"]);
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
            ..Default::default()
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
        let approve = DecisionInput::Approve {
            ttl_seconds: None,
            comment: String::new(),
        };
        let forbidden = |r: Result<Value, ServiceError>| match r {
            Err(ServiceError::Forbidden(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let refused = forbidden(svc.decision_patch(&alice, &admins, &infos(&admins), &approve));
        assert!(refused.ends_with("may approve under policy default"), "{refused}");
        assert_eq!(
            forbidden(svc.decision_patch(&alice, &alices, &infos(&alices), &approve)),
            "you asked for it"
        );
        assert_eq!(
            forbidden(svc.decision_patch(&admin, &admins, &infos(&admins), &approve)),
            "you asked for it"
        );
        forbidden(svc.decision_patch(
            &alice,
            &alices,
            &infos(&alices),
            &DecisionInput::Deny { reason: "no".into() },
        ));
        forbidden(svc.decision_patch(&alice, &alices, &infos(&alices), &DecisionInput::Extend { seconds: 60 }));
        forbidden(svc.decision_patch(
            &alice,
            &alices,
            &infos(&alices),
            &DecisionInput::Revoke { reason: String::new() },
        ));
        forbidden(svc.decision_patch(&admin, &alices, &infos(&alices), &DecisionInput::Withdraw));
        let patch = svc
            .decision_patch(&admin, &alices, &infos(&alices), &approve)
            .expect("admin approves another's");
        // Appended to spec.approvals, never spec.approval; the admin's judgement recorded as a group.
        assert_eq!(patch["approvals"][0]["by"], ADMIN);
        assert_eq!(
            patch["approvals"][0]["groups"],
            json!([janus_api::policy::JANUS_ADMINS_GROUP])
        );
        assert!(patch.get("approval").is_none());
        let withdraw = svc
            .decision_patch(&alice, &alices, &infos(&alices), &DecisionInput::Withdraw)
            .expect("own");
        assert_eq!(withdraw["withdrawal"]["by"], ALICE);
        let over = DecisionInput::Approve {
            ttl_seconds: Some(7200),
            comment: String::new(),
        };
        assert_eq!(
            invalid_field(
                svc.decision_patch(&admin, &alices, &infos(&alices), &over)
                    .expect_err("ttl")
            ),
            "ttlSeconds"
        );
        let no_reason = DecisionInput::Deny { reason: " ".into() };
        assert_eq!(
            invalid_field(
                svc.decision_patch(&admin, &alices, &infos(&alices), &no_reason)
                    .expect_err("reason")
            ),
            "reason"
        );
        let ended = request("r3", ALICE, "central", Some("Denied"), 10);
        assert!(matches!(
            svc.decision_patch(&alice, &ended, &infos(&ended), &DecisionInput::Withdraw),
            Err(ServiceError::Conflict(_))
        ));
        let pending_extend =
            svc.decision_patch(&admin, &alices, &infos(&alices), &DecisionInput::Extend { seconds: 60 });
        assert!(
            matches!(pending_extend, Err(ServiceError::Conflict(_))),
            "only active access is extended"
        );

        let (selfish, _dir2) = offline(config("allowSelfApproval: true\n"), vec![]).await;
        selfish
            .decision_patch(&admin, &admins, &infos(&admins), &approve)
            .expect("self-approval when configured");
    }

    /// Start times: RFC 3339 or the form's local time in the display zone (a skipped local time is refused,
    /// a repeated one is the first), not in the past, at most 30 days ahead.
    #[test]
    fn start_times_are_read_in_the_display_zone_and_bounded() {
        let tz: chrono_tz::Tz = "Europe/Berlin".parse().expect("zone");
        let now = rules::time::parse_time("2026-03-28T12:00:00Z").expect("now");
        let at = |s: &str| parse_start_at(s, tz, now).map(rules::time::fmt_time);
        assert_eq!(at("2026-03-28T15:00:00Z").expect("rfc3339"), "2026-03-28T15:00:00Z");
        assert_eq!(at("2026-03-28T15:00").expect("local, CET"), "2026-03-28T14:00:00Z");
        assert_eq!(at("2026-03-30T15:00:30").expect("local, CEST"), "2026-03-30T13:00:30Z");
        // 02:30 on 2026-03-29 does not exist in Berlin (clocks jump from 02:00 to 03:00).
        let gap = at("2026-03-29T02:30").expect_err("skipped");
        assert!(gap.to_string().contains("does not exist in Europe/Berlin"), "{gap}");
        // 02:30 on 2026-10-25 happens twice: the first (CEST, UTC+2) is taken.
        let now_autumn = rules::time::parse_time("2026-10-20T00:00:00Z").expect("now");
        let twice = parse_start_at("2026-10-25T02:30", tz, now_autumn).expect("ambiguous");
        assert_eq!(rules::time::fmt_time(twice), "2026-10-25T00:30:00Z");
        assert_eq!(
            at("2026-03-28T11:59:30Z").expect("within the grace"),
            "2026-03-28T11:59:30Z"
        );
        for (bad, says) in [
            ("2026-03-28T11:58:00Z", "in the past"),
            ("2026-04-28T12:00:01Z", "30 days"),
            ("tomorrow", "not a time"),
            ("2026-13-01T00:00", "not a time"),
            ("", "not a time"),
        ] {
            match parse_start_at(bad, tz, now) {
                Err(ServiceError::Invalid { field, message }) => {
                    assert_eq!(field, "startAt");
                    assert!(message.contains(says), "{bad}: {message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(parse_start_at(&"9".repeat(65), tz, now).is_err());
    }

    /// What the policy refuses is refused at creation with the rule's message, on the field it concerns.
    #[test]
    fn policy_refusals_name_their_field() {
        let cfg = config(
            "policies:\n- name: prod\n  match: {namespaces: [prod-*]}\n  approvers: {emails: [p@example.com]}\n  maxTtlSeconds: 1800\n  reason: {pattern: 'OPS-[0-9]+', description: a ticket id}\n  breakGlass: {emails: [oncall@example.com], maxTtlSeconds: 900}\n",
        );
        let ns = |names: &[&str]| -> Vec<NamespaceInfo> {
            names
                .iter()
                .map(|n| NamespaceInfo {
                    name: (*n).into(),
                    ..Default::default()
                })
                .collect()
        };
        let spec = |who: &str, namespaces: &[&str], reason: &str, ttl: i64, glass: bool| {
            let mut s = AccessRequestSpec::new(
                who,
                "central",
                namespaces.iter().map(|n| n.to_string()).collect(),
                reason,
                ttl,
            );
            if glass {
                s.break_glass = Some(BreakGlass {
                    at: "2026-01-01T00:00:00Z".into(),
                });
            }
            s
        };
        let field = |s: AccessRequestSpec| match check_policy(
            &cfg,
            &s,
            &ns(&s.namespaces.iter().map(String::as_str).collect::<Vec<_>>()),
        ) {
            Ok(()) => "ok",
            Err(e) => invalid_field(e),
        };
        assert_eq!(field(spec(ALICE, &["prod-a"], "fix OPS-1", 600, false)), "ok");
        assert_eq!(
            field(spec(ALICE, &["team-a"], "anything", 3600, false)),
            "ok",
            "the default policy"
        );
        assert_eq!(field(spec(ALICE, &["prod-a"], "no ticket", 600, false)), "reason");
        assert_eq!(
            field(spec(ALICE, &["prod-a"], "no ticket", 3600, false)),
            "reason",
            "the reason first"
        );
        assert_eq!(field(spec(ALICE, &["prod-a"], "OPS-2", 3600, false)), "ttlSeconds");
        assert_eq!(
            field(spec(ALICE, &["prod-a", "team-a"], "OPS-2", 600, false)),
            "namespaces"
        );
        assert_eq!(field(spec(ALICE, &["prod-a"], "OPS-2", 600, true)), "breakGlass");
        assert_eq!(field(spec("oncall@example.com", &["prod-a"], "OPS-2", 600, true)), "ok");
        assert_eq!(
            field(spec("oncall@example.com", &["prod-a"], "OPS-2", 1200, true)),
            "breakGlass"
        );
        assert_eq!(
            field(spec("oncall@example.com", &["team-a"], "x", 600, true)),
            "breakGlass",
            "no rule under default"
        );
    }

    /// Live updates reach the approvers of a request's policy too, judged without a cluster.
    #[tokio::test]
    async fn policy_approvers_may_see_the_request() {
        let (svc, _dir) = offline(
            config(
                "policies:\n- name: team\n  match: {namespaces: [team-a]}\n  approvers: {emails: [lead@example.com]}\n",
            ),
            vec![],
        )
        .await;
        let ar = request("r1", ALICE, "central", None, 10);
        assert!(svc.may_see(&identity(ALICE), &ar) && svc.may_see(&identity(ADMIN), &ar));
        assert!(svc.may_see(&identity("lead@example.com"), &ar));
        assert!(!svc.may_see(&identity(BOB), &ar));
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
        let patch = svc
            .decision_patch(&admin, &active, &infos(&active), &extend(600))
            .expect("fits");
        assert_eq!(patch["extensions"][0]["seconds"], 600);
        let e = svc
            .decision_patch(&admin, &active, &infos(&active), &extend(601))
            .expect_err("beyond max");
        assert!(e.to_string().contains("at most 600 more seconds"), "{e}");
        let (beyond, _dir2) = offline(config("allowExtensionBeyondMaxTtl: true\n"), vec![]).await;
        beyond
            .decision_patch(&admin, &active, &infos(&active), &extend(601))
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
            ..Default::default()
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
        let approve = || DecisionInput::Approve {
            ttl_seconds: Some(600),
            comment: String::new(),
        };
        assert!(matches!(
            svc.decide(&alice, &name, approve()).await,
            Err(ServiceError::Forbidden(_))
        ));
        let decided = svc.decide(&admin, &name, approve()).await.expect("approved");
        let approval = decided.spec.approvals.first().expect("approval written");
        assert_eq!((approval.by.as_str(), approval.ttl_seconds), (ADMIN, Some(600)));
        assert!(decided.spec.approval.is_none(), "the legacy field is never written");
        let stored = Api::<AccessRequest>::all(sim.client().await.expect("client"))
            .get(&name)
            .await
            .expect("read back");
        assert_eq!(stored.spec.approvals.len(), 1, "the decision reached the API server");

        let own = svc
            .create(
                &admin,
                CreateInput {
                    cluster: "central".into(),
                    namespaces: vec!["team-a".into()],
                    ttl_seconds: None,
                    reason: "mine".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("admin's own request");
        let own_name = own.metadata.name.expect("name");
        match svc.decide(&admin, &own_name, approve()).await {
            Err(ServiceError::Forbidden(m)) => assert_eq!(m, "you asked for it"),
            other => panic!("self-approval was not refused: {other:?}"),
        }
    }
}
