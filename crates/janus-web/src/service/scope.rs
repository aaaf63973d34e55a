//! Access roles and pod scopes as the web offers them: the roles a user may ask for, the workloads and
//! pods a scope can name (the request form's picker), and the Kubernetes selector syntax the form's
//! `podSelector` field and the preview take. The rules themselves are [`janus_api::rules::scope`].
//!
//! JSON shapes (agreed with the pages; the OpenAPI document has them too):
//! - `GET /api/v1/roles[?cluster=C&namespace=NS...]` → `{"roles": [{"name", "displayName", "description",
//!   "terminal": "shell"|"logs"|"debug", "debugImages": [..]}]}`: the roles the caller may request.
//! - `GET /api/v1/clusters/{cluster}/workloads?namespace=NS` → `{"cluster", "namespace", "workloads":
//!   [{"kind": "Deployment"|"StatefulSet"|"DaemonSet", "name", "replicas", "readyReplicas", "selector":
//!   "app=x" | null, "selectorError": null | "why it cannot scope a grant"}], "truncated": bool}` (at most
//!   [`WORKLOAD_LIST_LIMIT`] of each kind).
//! - `GET /api/v1/clusters/{cluster}/pods?namespace=NS&selector=SEL` → `{"cluster", "namespace",
//!   "selector" (normalised), "pods": [{"name", "labels": {..}, "phase"}], "truncated": bool}` (at most
//!   [`POD_PREVIEW_LIMIT`] pods; a bad selector is 422 with `field: "selector"`).
//! - A request's `podScope` in the create body: `{"selector": {"matchLabels": {..}, "matchExpressions":
//!   [..]}}` or `{"workload": {"kind": "Deployment", "name": "payments-api"}}`; or, from the form, the
//!   text field `podSelector` ("app=checkout,tier in (a,b)"), parsed by [`parse_selector`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use janus_api::access_request::{AccessRequestSpec, PodSelector, PodSelectorRequirement, WorkloadKind};
use janus_api::config::Config;
use janus_api::policy::PolicyConfig;
use janus_api::roles::{RoleConfig, TerminalMode};
use janus_api::rules::policy::{self as rules_policy, RequestFacts};
use janus_api::rules::scope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Serialize;
use utoipa::ToSchema;

use super::ServiceError;
use super::clusters::ClusterService;
use super::policy as web_policy;
use crate::auth::Identity;
use crate::state::AppState;

/// Most pods the selector preview lists (`truncated` says there are more).
pub const POD_PREVIEW_LIMIT: usize = 200;

/// Most workloads of each kind the picker lists (`truncated` says there are more). The list calls
/// ask the API server for no more than this (plus one), so a namespace with thousands of objects costs
/// neither the cluster nor the web more than a page.
pub const WORKLOAD_LIST_LIMIT: usize = 500;

/// How long a cluster may take to list workloads or pods for the picker (as the namespace list).
const PREVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest selector text accepted (the CRD allows 20 labels and 20 expressions; this is ample).
const MAX_SELECTOR_TEXT: usize = 4096;

/// A role as the form and the request pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    /// The role's name (`spec.role`).
    pub name: String,
    /// Its display name (the name when none is configured).
    pub display_name: String,
    /// What it allows.
    pub description: String,
    /// What the terminal page offers: `shell`, `logs` or `debug`; none when the configuration no longer
    /// lists the role (the controller then ends the request).
    pub terminal: Option<String>,
    /// Images a debug container may run (exact, or a prefix ending in `*`): `debug` roles only.
    pub debug_images: Vec<String>,
}

impl RoleView {
    /// The view of a configured role.
    pub fn of(r: &RoleConfig) -> Self {
        Self {
            name: r.name.clone(),
            display_name: r.title().to_string(),
            description: r.description.clone(),
            terminal: Some(r.terminal.as_str().to_string()),
            debug_images: r.debug_images.clone(),
        }
    }

    /// The view of the role `name`, configured or not.
    pub fn named(config: &Config, name: &str) -> Self {
        match scope::find_role(&config.roles, name) {
            Ok(r) => Self::of(r),
            Err(_) => Self {
                name: name.to_string(),
                display_name: name.to_string(),
                description: "This role is no longer configured.".into(),
                terminal: None,
                debug_images: vec![],
            },
        }
    }
}

/// The roles a user may ask for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleList {
    /// In configuration order.
    pub roles: Vec<RoleView>,
}

/// A workload a pod scope can name.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadView {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Desired pods (a DaemonSet's: the nodes it should run on).
    pub replicas: i32,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Its pod selector in Kubernetes syntax; none when it cannot scope a grant (`selectorError`).
    pub selector: Option<String>,
    /// Why its selector cannot scope a grant (it selects every pod, or uses an unknown operator).
    pub selector_error: Option<String>,
}

/// The workloads of a namespace.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkloadList {
    /// The cluster asked about.
    pub cluster: String,
    /// The namespace asked about.
    pub namespace: String,
    /// Deployments, then StatefulSets, then DaemonSets, each by name; at most [`WORKLOAD_LIST_LIMIT`]
    /// of each kind.
    pub workloads: Vec<WorkloadView>,
    /// More workloads of some kind exist than listed.
    pub truncated: bool,
}

/// A pod the selector preview matched.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PodPreview {
    /// The pod's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its phase (`Running`, `Pending`, ...).
    pub phase: String,
}

/// The pods a selector matches in a namespace.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PodPreviewList {
    /// The cluster asked about.
    pub cluster: String,
    /// The namespace asked about.
    pub namespace: String,
    /// The selector as the grant will hold it (normalised Kubernetes syntax).
    pub selector: String,
    /// Matching pods not being deleted, by name, at most [`POD_PREVIEW_LIMIT`].
    pub pods: Vec<PodPreview>,
    /// More pods match than listed.
    pub truncated: bool,
}

/// Roles, workloads and pods for the request form, read with the web's own cluster clients.
#[derive(Clone)]
pub struct ScopeService {
    config: Arc<Config>,
    clusters: ClusterService,
}

impl FromRef<AppState> for ScopeService {
    fn from_ref(state: &AppState) -> Self {
        Self {
            config: state.config.clone(),
            clusters: ClusterService::from_ref(state),
        }
    }
}

impl ScopeService {
    /// A service over these parts.
    pub fn new(config: Arc<Config>, clusters: ClusterService) -> Self {
        Self { config, clusters }
    }

    /// The roles `id` may request. With a cluster and namespaces: exactly those the governing policy
    /// allows ([`rules_policy::govern`], `allowedRoles`). Without: every role some policy (or the
    /// default) could let them have: see [`offered_anywhere`]. A `debug` role that lists no image is
    /// never offered (it could start nothing).
    pub async fn roles_for(
        &self,
        id: &Identity,
        cluster: Option<&str>,
        namespaces: &[String],
    ) -> Result<RoleList, ServiceError> {
        let cfg = &self.config;
        let groups = web_policy::requester_groups(cfg, id);
        let usable = cfg
            .roles
            .iter()
            .filter(|r| r.terminal != TerminalMode::Debug || !r.debug_images.is_empty());
        let roles = match cluster.filter(|c| !c.is_empty()) {
            Some(cluster) if !namespaces.is_empty() => {
                let infos = self.clusters.namespace_info(cluster, namespaces).await?;
                let mut out = Vec::new();
                for r in usable {
                    let mut spec = AccessRequestSpec::new(
                        id.email.clone(),
                        cluster.to_string(),
                        namespaces.to_vec(),
                        String::new(),
                        cfg.default_ttl_seconds,
                    );
                    spec.requester_groups = groups.clone();
                    spec.role = Some(r.name.clone());
                    let facts = RequestFacts::of(&spec, &infos, chrono::Utc::now());
                    // Namespaces under different policies: that is the namespaces' problem, said by the
                    // policy preview; the roles stay offered as without namespaces.
                    let allowed = match rules_policy::govern(cfg, &facts) {
                        Ok(gov) => gov.allows_role(&r.name),
                        Err(_) => offered_anywhere(&cfg.policies, &id.email, &groups, &r.name),
                    };
                    if allowed {
                        out.push(RoleView::of(r));
                    }
                }
                out
            }
            _ => usable
                .filter(|r| offered_anywhere(&cfg.policies, &id.email, &groups, &r.name))
                .map(RoleView::of)
                .collect(),
        };
        Ok(RoleList { roles })
    }

    /// Checks that `namespace` may be requested on `cluster` (exists, active, not excluded, not the
    /// Janus namespace: the namespace list's rule) and returns a client of the cluster with the web's
    /// own identity.
    async fn requestable(&self, cluster: &str, namespace: &str) -> Result<kube::Client, ServiceError> {
        if !janus_api::names::is_dns_label(namespace) {
            return Err(ServiceError::invalid(
                "namespace",
                format!("{namespace:?} is not a namespace name"),
            ));
        }
        if self.config.is_excluded(namespace) {
            return Err(ServiceError::invalid(
                "namespace",
                format!("namespace {namespace} cannot be requested"),
            ));
        }
        let available = self.clusters.namespaces(cluster).await?;
        if !available.iter().any(|n| n == namespace) {
            return Err(ServiceError::NotFound(format!(
                "namespace {namespace} does not exist on cluster {cluster}"
            )));
        }
        let handle = self
            .clusters
            .registry()
            .get(cluster)
            .await
            .map_err(|e| ServiceError::Unavailable(format!("cluster {cluster} is unavailable: {e}")))?;
        Ok(handle.client)
    }

    /// The Deployments, StatefulSets and DaemonSets of a requestable namespace.
    pub async fn workloads(&self, cluster: &str, namespace: &str) -> Result<WorkloadList, ServiceError> {
        let client = self.requestable(cluster, namespace).await?;
        let lp = ListParams::default().limit(page_limit(WORKLOAD_LIST_LIMIT));
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
        let daemonsets: Api<DaemonSet> = Api::namespaced(client, namespace);
        let (d, s, ds) = tokio::try_join!(
            bounded(cluster, deployments.list(&lp)),
            bounded(cluster, statefulsets.list(&lp)),
            bounded(cluster, daemonsets.list(&lp)),
        )?;
        let truncated = more(d.items.len(), d.metadata.continue_.as_deref(), WORKLOAD_LIST_LIMIT)
            || more(s.items.len(), s.metadata.continue_.as_deref(), WORKLOAD_LIST_LIMIT)
            || more(ds.items.len(), ds.metadata.continue_.as_deref(), WORKLOAD_LIST_LIMIT);
        let mut out = Vec::new();
        for w in d.items.into_iter().take(WORKLOAD_LIST_LIMIT) {
            let spec = w.spec.unwrap_or_default();
            let status = w.status.unwrap_or_default();
            out.push(workload_view(
                WorkloadKind::Deployment,
                w.metadata.name.unwrap_or_default(),
                spec.replicas.unwrap_or(1),
                status.ready_replicas.unwrap_or(0),
                &spec.selector,
            ));
        }
        for w in s.items.into_iter().take(WORKLOAD_LIST_LIMIT) {
            let spec = w.spec.unwrap_or_default();
            let status = w.status.unwrap_or_default();
            out.push(workload_view(
                WorkloadKind::StatefulSet,
                w.metadata.name.unwrap_or_default(),
                spec.replicas.unwrap_or(1),
                status.ready_replicas.unwrap_or(0),
                &spec.selector,
            ));
        }
        for w in ds.items.into_iter().take(WORKLOAD_LIST_LIMIT) {
            let spec = w.spec.unwrap_or_default();
            let status = w.status.unwrap_or_default();
            out.push(workload_view(
                WorkloadKind::DaemonSet,
                w.metadata.name.unwrap_or_default(),
                status.desired_number_scheduled,
                status.number_ready,
                &spec.selector,
            ));
        }
        Ok(WorkloadList {
            cluster: cluster.to_string(),
            namespace: namespace.to_string(),
            workloads: out,
            truncated,
        })
    }

    /// The pods of a requestable namespace that `selector` (Kubernetes syntax) matches, not being
    /// deleted (the grant leaves those out too), at most [`POD_PREVIEW_LIMIT`].
    pub async fn pods(&self, cluster: &str, namespace: &str, selector: &str) -> Result<PodPreviewList, ServiceError> {
        // The selector first: a typo is answered without asking any cluster.
        let parsed = parse_selector(selector).map_err(|m| ServiceError::invalid("selector", m))?;
        let normalised = scope::selector_string(&parsed);
        let client = self.requestable(cluster, namespace).await?;
        let api: Api<Pod> = Api::namespaced(client, namespace);
        // One more than shown: the extra item (or a continue token) says there are more. Pods being
        // deleted in the page make the preview shorter, never the call bigger.
        let lp = ListParams::default()
            .labels(&normalised)
            .limit(page_limit(POD_PREVIEW_LIMIT));
        let list = bounded(cluster, api.list(&lp)).await?;
        let listed_more = more(list.items.len(), list.metadata.continue_.as_deref(), POD_PREVIEW_LIMIT);
        let mut pods: Vec<PodPreview> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            // The API server applied the selector; matching again keeps a server that ignored a part of
            // it from widening the preview.
            .filter(|p| scope::selector_matches(&parsed, p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
            .map(|p| PodPreview {
                name: p.metadata.name.unwrap_or_default(),
                labels: p.metadata.labels.unwrap_or_default(),
                phase: p.status.and_then(|s| s.phase).unwrap_or_else(|| "Unknown".into()),
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let truncated = listed_more || pods.len() > POD_PREVIEW_LIMIT;
        pods.truncate(POD_PREVIEW_LIMIT);
        Ok(PodPreviewList {
            cluster: cluster.to_string(),
            namespace: namespace.to_string(),
            selector: normalised,
            pods,
            truncated,
        })
    }
}

/// The `limit` of a list call that shows at most `shown` items: one more, to learn that there are more.
fn page_limit(shown: usize) -> u32 {
    u32::try_from(shown.saturating_add(1)).unwrap_or(u32::MAX)
}

/// Whether a page with `items` items (and this continue token) holds more than `shown`.
fn more(items: usize, continue_token: Option<&str>, shown: usize) -> bool {
    items > shown || continue_token.is_some_and(|c| !c.is_empty())
}

/// A list call bounded by [`PREVIEW_TIMEOUT`]; any failure is the cluster being unavailable to the web.
async fn bounded<T>(
    cluster: &str,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, ServiceError> {
    match tokio::time::timeout(PREVIEW_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!(cluster, error = %e, "listing workloads or pods failed");
            Err(ServiceError::Unavailable(format!(
                "cluster {cluster} cannot list workloads or pods for the web right now"
            )))
        }
        Err(_) => Err(ServiceError::Unavailable(format!(
            "cluster {cluster} did not answer in time"
        ))),
    }
}

fn workload_view(
    kind: WorkloadKind,
    name: String,
    replicas: i32,
    ready: i32,
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> WorkloadView {
    let (selector, selector_error) = match scope::from_workload_selector(kind, &name, selector) {
        Ok(s) => (Some(scope::selector_string(&s)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    WorkloadView {
        kind: kind.as_str().to_string(),
        name,
        replicas,
        ready_replicas: ready,
        selector,
        selector_error,
    }
}

/// Whether some policy, or the default, could let `email` (with `groups`) have `role` on some cluster and
/// namespace. Policies are tried in order as [`rules_policy::govern`] does: one that could match this
/// requester and role and allows the role offers it; one that refuses it but has cluster or namespace
/// criteria governs only some requests, so later policies (and the default, which allows every role)
/// still count; one that refuses it without such criteria governs every such request, and ends the
/// search. A policy naming requester emails or groups the user does not match is skipped.
pub fn offered_anywhere(policies: &[PolicyConfig], email: &str, groups: &[String], role: &str) -> bool {
    for p in policies {
        let m = &p.matches;
        let by_email = m.requester_emails.is_empty()
            || m.requester_emails.iter().any(|e| {
                rules_policy::compile_glob(e, true).is_ok_and(|g| g.is_match(rules_policy::normalize_email(email)))
            });
        let by_group = m.requester_groups.is_empty() || groups.iter().any(|g| m.requester_groups.contains(g));
        let by_role = m.roles.is_empty() || m.roles.iter().any(|r| r == role);
        if !(by_email && by_group && by_role) {
            continue;
        }
        if p.allowed_roles.is_empty() || p.allowed_roles.iter().any(|r| r == role) {
            return true;
        }
        let everywhere = m.clusters.is_empty() && m.namespaces.is_empty() && m.namespace_selector.is_none();
        if everywhere {
            return false;
        }
    }
    true
}

/// Parses a label selector in Kubernetes' string syntax, as `kubectl -l` and the `labelSelector` query
/// parameter take it: comma-separated requirements `key`, `!key`, `key=value`, `key==value`,
/// `key!=value`, `key in (a,b)`, `key notin (a,b)` (the grammar of apimachinery's
/// staging/src/k8s.io/apimachinery/pkg/labels/selector.go, `Parse`). `key!=v` becomes `NotIn [v]`, as
/// Kubernetes' own conversion to a LabelSelector does. `<` and `>` (numeric comparisons) cannot scope a
/// grant and are refused. The result is checked like a request's selector ([`scope::check_scope`]).
pub fn parse_selector(text: &str) -> Result<PodSelector, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("enter a label selector such as app=checkout".into());
    }
    if text.len() > MAX_SELECTOR_TEXT {
        return Err(format!("the selector is longer than {MAX_SELECTOR_TEXT} characters"));
    }
    let mut out = PodSelector::default();
    for part in split_top_level(text)? {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!(
                "{text:?}: an empty requirement (two commas, or a comma at the end)"
            ));
        }
        if let Some(key) = part.strip_prefix('!') {
            out.match_expressions
                .push(requirement(key.trim(), "DoesNotExist", vec![]));
            continue;
        }
        let key_end = part
            .find(|c: char| c.is_whitespace() || "=!<>(".contains(c))
            .unwrap_or(part.len());
        let key = &part[..key_end];
        let rest = part[key_end..].trim_start();
        if key.is_empty() {
            return Err(format!("{part:?}: a requirement starts with a label key"));
        }
        if rest.is_empty() {
            out.match_expressions.push(requirement(key, "Exists", vec![]));
        } else if let Some(v) = rest.strip_prefix("!=") {
            out.match_expressions
                .push(requirement(key, "NotIn", vec![single_value(part, v)?]));
        } else if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            let v = single_value(part, v)?;
            match out.match_labels.get(key) {
                // `a=x,a=y` matches nothing, as in Kubernetes; kept as an expression so it stays visible.
                Some(existing) if *existing != v => out.match_expressions.push(requirement(key, "In", vec![v])),
                _ => {
                    out.match_labels.insert(key.to_string(), v);
                }
            }
        } else if rest.starts_with('<') || rest.starts_with('>') {
            return Err(format!("{part:?}: the operators < and > cannot limit a grant to pods"));
        } else if let Some((op, values)) = set_operator(rest) {
            out.match_expressions
                .push(requirement(key, op, set_values(part, values)?));
        } else {
            return Err(format!(
                "{part:?}: expected key, !key, key=value, key!=value, key in (a,b) or key notin (a,b)"
            ));
        }
    }
    let scope = janus_api::access_request::PodScope {
        selector: Some(out.clone()),
        workload: None,
    };
    scope::check_scope(&scope, 1).map_err(|e| match e {
        scope::ScopeError::InvalidScope(m) => m,
        other => other.to_string(),
    })?;
    Ok(out)
}

fn requirement(key: &str, op: &str, values: Vec<String>) -> PodSelectorRequirement {
    PodSelectorRequirement {
        key: key.to_string(),
        operator: op.to_string(),
        values,
    }
}

/// Splits at commas outside parentheses; unbalanced parentheses are an error.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("{text:?}: a ')' without its '('"))?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("{text:?}: a '(' without its ')'"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// The value after `=`, `==` or `!=`: one label value, no spaces inside.
fn single_value(part: &str, v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.chars().any(|c| c.is_whitespace() || "=!(),".contains(c)) {
        return Err(format!("{part:?}: one label value expected after the operator"));
    }
    Ok(v.to_string())
}

/// `in (…)` / `notin (…)` at the start of `rest`: the operator and what follows it.
fn set_operator(rest: &str) -> Option<(&'static str, &str)> {
    for (word, op) in [("notin", "NotIn"), ("in", "In")] {
        if let Some(after) = rest.strip_prefix(word)
            && (after.starts_with('(') || after.starts_with(char::is_whitespace))
        {
            return Some((op, after.trim_start()));
        }
    }
    None
}

/// The values of `(a, b)`.
fn set_values(part: &str, values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("{part:?}: the values of in and notin go in parentheses: (a,b)"))?;
    // `in ()` has no values (refused below by the scope check, as Kubernetes refuses it).
    if inner.trim().is_empty() {
        return Ok(vec![]);
    }
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    if let Some(bad) = values.iter().find(|v| v.chars().any(char::is_whitespace)) {
        return Err(format!("{part:?}: {bad:?} is not one label value"));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> String {
        scope::selector_string(&parse_selector(s).unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    /// Every form of Kubernetes' selector syntax reads back as the same selector, normalised.
    #[test]
    fn selectors_parse_like_kubectl_reads_them() {
        assert_eq!(parsed("app=checkout"), "app=checkout");
        assert_eq!(parsed(" app == checkout "), "app=checkout");
        assert_eq!(parsed("tier in (b, a),app=x"), "app=x,tier in (a,b)");
        assert_eq!(parsed("tier notin (a)"), "tier notin (a)");
        assert_eq!(parsed("tier in(a)"), "tier in (a)");
        assert_eq!(parsed("canary"), "canary");
        assert_eq!(parsed("!canary,app=x"), "app=x,!canary");
        assert_eq!(parsed("app!=x"), "app notin (x)");
        // An empty value is a value (Kubernetes accepts `app=`).
        assert_eq!(parsed("app="), "app=");
        assert_eq!(parsed("example.com/team=payments"), "example.com/team=payments");
        assert_eq!(parsed("app=x,app=y"), "app=x,app in (y)");
        let s = parse_selector("app=checkout,tier in (a,b)").expect("parses");
        let labels: BTreeMap<String, String> = [("app".into(), "checkout".into()), ("tier".into(), "b".into())].into();
        assert!(scope::selector_matches(&s, &labels));
    }

    /// Malformed selectors are refused with a message, never a panic, never an empty selector.
    #[test]
    fn bad_selectors_are_refused_with_a_reason() {
        for (bad, says) in [
            ("", "enter a label selector"),
            ("  ", "enter a label selector"),
            ("app=a b", "one label value"),
            ("=x", "starts with a label key"),
            ("app=x,", "empty requirement"),
            ("app in (a", "without its ')'"),
            ("app in a", "parentheses"),
            ("app in ()", "at least one value"),
            ("replicas>1", "< and >"),
            ("Bad Key=x", "expected key"),
            ("-bad=x", "not a valid label key"),
            ("app=x)", "without its '('"),
            ("app ~ x", "expected key"),
        ] {
            match parse_selector(bad) {
                Ok(s) => panic!("{bad:?} was accepted as {s:?}"),
                Err(m) => assert!(m.contains(says), "{bad:?}: {m:?} does not say {says:?}"),
            }
        }
        assert!(parse_selector(&"a".repeat(5000)).is_err());
    }

    fn policy(yaml: &str) -> PolicyConfig {
        yaml_serde::from_str(yaml).expect("policy")
    }

    /// A role is offered unless every policy that could govern the user's request refuses it, up to one
    /// that governs everywhere.
    #[test]
    fn roles_are_offered_unless_every_governing_policy_refuses_them() {
        let groups = vec!["contractors".to_string()];
        let contractors = policy(
            "{name: c, approvers: {emails: [a@x.io]}, match: {requesterGroups: [contractors]}, allowedRoles: [logs]}",
        );
        let prod = policy("{name: p, approvers: {emails: [a@x.io]}, match: {clusters: [prod]}, allowedRoles: [logs]}");
        let all = [contractors.clone()];
        assert!(offered_anywhere(&all, "c@x.io", &groups, "logs"));
        assert!(!offered_anywhere(&all, "c@x.io", &groups, "exec"));
        // Not a contractor: the policy does not govern them; the default allows everything.
        assert!(offered_anywhere(&all, "e@x.io", &[], "exec"));
        // A policy for one cluster refuses exec there only: exec stays offered (other clusters).
        assert!(offered_anywhere(std::slice::from_ref(&prod), "e@x.io", &[], "exec"));
        // ...unless an unconditional refusal follows it.
        assert!(!offered_anywhere(&[prod, contractors], "c@x.io", &groups, "exec"));
    }
}
