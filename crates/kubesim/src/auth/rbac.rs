//! RBAC as the real API server evaluates it (`plugin/pkg/auth/authorizer/rbac` and
//! `pkg/registry/rbac/validation`): ClusterRoleBindings at any scope, RoleBindings in the request's
//! namespace (to a Role there or to a ClusterRole), subjects by User, Group or ServiceAccount, rules
//! with `*`, `*/subresource`, resourceNames and nonResourceURLs, aggregated ClusterRoles (resolved at
//! evaluation time, which is what the aggregation controller converges to), and escalation prevention
//! on writes of roles and bindings.
//!
//! # Bootstrap policy
//! Real clusters reconcile a bootstrap policy at start. kubesim builds it into the code
//! ([`bootstrap_policy`]): these ClusterRoles and ClusterRoleBindings take part in every evaluation
//! unless an object of the same name is stored, which then wins (so seeding them, to make them visible
//! to `kubectl get`, or editing them, works as on a real cluster):
//!
//! | ClusterRole | bound by ClusterRoleBinding of the same name to | grants |
//! | --- | --- | --- |
//! | `cluster-admin` | Group `system:masters` | everything |
//! | `system:discovery` | Group `system:authenticated` | GET `/api*`, `/apis*`, `/openapi*`, `/version`, `/healthz`, `/livez`, `/readyz` |
//! | `system:basic-user` | Group `system:authenticated` | create selfsubjectaccessreviews, selfsubjectrulesreviews, selfsubjectreviews |
//! | `system:public-info-viewer` | Groups `system:authenticated`, `system:unauthenticated` | GET `/version`, `/healthz`, `/livez`, `/readyz` |
//!
//! and, unbound as upstream, `admin`, `edit`, `view` (aggregated from `system:aggregate-to-admin`,
//! `-edit`, `-view`, with upstream's rules for the kinds kubesim serves) and `system:auth-delegator`.
//!
//! # Rules cache
//! Resolving a user's rules (walking every binding, reading and parsing roles, aggregating
//! ClusterRoles) runs on every request, so its result is cached per (user name, groups, namespace)
//! in the store's [`RuleCache`]. An entry is stamped with the store's write versions of
//! ClusterRoles and ClusterRoleBindings and of the namespace's Roles and RoleBindings
//! ([`Store::collection_version`]), read before resolving; it is used only while all four still
//! read the same, so any write to those (a revoked binding, a changed role, a new aggregated role)
//! takes effect on the very next request. The cached value is the walk itself, in order, so
//! decisions, reasons and errors are those of the uncached walk.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Attributes, UserInfo, aggregate_errors, go_quote, go_quote_list, service_account_username};
use crate::errors::{ApiError, ApiResult};
use crate::resources::GroupResource;
use crate::store::Store;

/// The RBAC API group.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// One RBAC rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Verbs, `*` for all.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups, `*` for all, `""` for core.
    #[serde(default, rename = "apiGroups", skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources: `pods`, `pods/exec`, `*/scale`, `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Object names; a rule with names never matches a request without one (list, create…).
    #[serde(default, rename = "resourceNames", skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource paths; a trailing `*` matches any suffix.
    #[serde(default, rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

impl PolicyRule {
    /// Reads one rule leniently: missing or null lists are empty, non-strings are ignored.
    pub fn from_value(v: &Value) -> Self {
        Self {
            verbs: strings(&v["verbs"]),
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            resource_names: strings(&v["resourceNames"]),
            non_resource_urls: strings(&v["nonResourceURLs"]),
        }
    }

    /// Upstream `RuleAllows`.
    fn allows(&self, r: &Request<'_>) -> bool {
        let verb = has(&self.verbs, "*") || has(&self.verbs, r.verb);
        if !r.resource_request {
            return verb && self.non_resource_url_matches(r.path);
        }
        let combined = if r.subresource.is_empty() {
            r.resource.to_string()
        } else {
            format!("{}/{}", r.resource, r.subresource)
        };
        verb && (has(&self.api_groups, "*") || has(&self.api_groups, r.group))
            && self.resource_matches(&combined, r.subresource)
            && (self.resource_names.is_empty() || has(&self.resource_names, r.name))
    }

    fn resource_matches(&self, combined: &str, subresource: &str) -> bool {
        self.resources.iter().any(|rr| {
            rr == "*"
                || rr == combined
                || (!subresource.is_empty() && rr.strip_prefix("*/").is_some_and(|s| s == subresource))
        })
    }

    fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| non_resource_url_covers(u, path))
    }
}

/// `u` equals `path`, is `*`, or ends in `*` and prefixes `path` (upstream trims every trailing `*`).
fn non_resource_url_covers(u: &str, path: &str) -> bool {
    u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
}

/// The rules of a role or ClusterRole object (`rules`).
pub fn parse_rules(v: &Value) -> Vec<PolicyRule> {
    v.as_array()
        .map(|a| a.iter().map(PolicyRule::from_value).collect())
        .unwrap_or_default()
}

/// Request attributes with empty strings for absent parts, as upstream's `AttributesRecord`.
struct Request<'a> {
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    subresource: &'a str,
    name: &'a str,
    namespace: &'a str,
    path: &'a str,
    resource_request: bool,
}

impl<'a> Request<'a> {
    fn new(a: &Attributes<'a>) -> Self {
        let resource_request = a.is_resource_request();
        Self {
            verb: a.verb,
            group: a.group,
            resource: a.resource,
            subresource: a.subresource.unwrap_or_default(),
            name: a.name.unwrap_or_default(),
            // Non-resource requests are cluster-wide: RoleBindings never apply to them.
            namespace: if resource_request {
                a.namespace.unwrap_or_default()
            } else {
                ""
            },
            path: a.path.unwrap_or_default(),
            resource_request,
        }
    }
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// `RBAC: allowed by …` when allowed by RBAC; when refused, the errors met while resolving
    /// bindings (`RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`) or empty.
    pub reason: String,
}

struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

fn subjects(binding: &Value) -> Vec<Subject> {
    binding["subjects"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| Subject {
                    kind: s["kind"].as_str().unwrap_or_default().into(),
                    name: s["name"].as_str().unwrap_or_default().into(),
                    namespace: s["namespace"].as_str().unwrap_or_default().into(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Index of the first subject naming the user (upstream `appliesTo`). A ServiceAccount subject without
/// a namespace means the binding's namespace, and matches nothing in a ClusterRoleBinding.
fn applies_to(user: &UserInfo, subjects: &[Subject], binding_ns: &str) -> Option<usize> {
    subjects.iter().position(|s| match s.kind.as_str() {
        "User" => user.username == s.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() {
                binding_ns
            } else {
                &s.namespace
            };
            !ns.is_empty() && user.username == service_account_username(ns, &s.name)
        }
        _ => false,
    })
}

fn describe_subject(s: &Subject, binding_ns: &str) -> String {
    match s.kind.as_str() {
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() {
                binding_ns
            } else {
                &s.namespace
            };
            format!("ServiceAccount {}", go_quote(&format!("{}/{ns}", s.name)))
        }
        kind => format!("{kind} {}", go_quote(&s.name)),
    }
}

struct RoleRef {
    api_group: String,
    kind: String,
    name: String,
}

fn role_ref(binding: &Value) -> RoleRef {
    let r = &binding["roleRef"];
    RoleRef {
        api_group: r["apiGroup"].as_str().unwrap_or_default().into(),
        kind: r["kind"].as_str().unwrap_or_default().into(),
        name: r["name"].as_str().unwrap_or_default().into(),
    }
}

enum RoleRefError {
    NotFound { kind: &'static str, name: String },
    Unsupported(String),
}

impl RoleRefError {
    /// The authorizer's wording (from its listers: singular resource).
    fn authorizer_message(&self) -> String {
        match self {
            Self::NotFound { kind, name } => {
                format!("{kind}.{RBAC_GROUP} {} not found", go_quote(name))
            }
            Self::Unsupported(kind) => {
                format!("unsupported role reference kind: {}", go_quote(kind))
            }
        }
    }
}

/// What granted a rule, worded as upstream's describers for the `RBAC: allowed by …` reason.
#[derive(Debug)]
struct RuleSource {
    text: String,
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn labels_of(obj: &Value) -> &Value {
    &obj["metadata"]["labels"]
}

// ----- bootstrap policy -----

struct Bootstrap {
    cluster_roles: Vec<Value>,
    cluster_role_bindings: Vec<Value>,
}

fn meta(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = json!({ "kubernetes.io/bootstrapping": "rbac-defaults" });
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    json!({ "name": name, "labels": labels, "annotations": { "rbac.authorization.kubernetes.io/autoupdate": "true" } })
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({ "apiGroups": groups, "resources": resources, "verbs": verbs })
}

fn url_rule(urls: &[&str], verbs: &[&str]) -> Value {
    json!({ "nonResourceURLs": urls, "verbs": verbs })
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({ "apiVersion": format!("{RBAC_GROUP}/v1"), "kind": "ClusterRole", "metadata": meta(name, labels), "rules": rules })
}

fn aggregated_role(name: &str, labels: &[(&str, &str)], aggregate_from: &str) -> Value {
    let mut r = cluster_role(name, labels, Vec::new());
    r["aggregationRule"] = json!({ "clusterRoleSelectors": [{ "matchLabels": { aggregate_from: "true" } }] });
    r
}

fn cluster_role_binding(name: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({ "apiGroup": RBAC_GROUP, "kind": "Group", "name": g }))
        .collect();
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"), "kind": "ClusterRoleBinding", "metadata": meta(name, &[]),
        "roleRef": { "apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name }, "subjects": subjects,
    })
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL_RW: &[&str] = crate::resources::STANDARD_VERBS;
const AGG_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGG_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGG_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

// A data table: kept one rule per line, as upstream's bootstrap policy reads.
#[rustfmt::skip]
fn build_bootstrap() -> Bootstrap {
    let view_rules = vec![
        rule(&[""], &["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
            "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services", "services/status"], READ),
        rule(&[""], &["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
            "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], READ),
        rule(&[""], &["namespaces"], READ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(&["apps"], &["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
            "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
            "statefulsets/scale", "statefulsets/status"], READ),
        rule(&["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
        rule(&["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
        rule(&["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
        rule(&["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"], READ),
    ];
    let edit_rules = vec![
        rule(&[""], &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], READ),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(&[""], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(&[""], &["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
            "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], WRITE),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(&["apps"], &["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
            "replicasets/scale", "statefulsets", "statefulsets/scale"], WRITE),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
        rule(&["batch"], &["cronjobs", "jobs"], WRITE),
        rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], WRITE),
    ];
    let admin_rules = vec![
        rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
        rule(&[RBAC_GROUP], &["rolebindings", "roles"], ALL_RW),
    ];
    let discovery_urls = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
        "/readyz", "/version", "/version/"];
    let cluster_roles = vec![
        cluster_role("cluster-admin", &[], vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])]),
        cluster_role("system:discovery", &[], vec![url_rule(&discovery_urls, &["get"])]),
        cluster_role("system:basic-user", &[], vec![
            rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
            rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
        ]),
        cluster_role("system:public-info-viewer", &[], vec![
            url_rule(&["/healthz", "/livez", "/readyz", "/version", "/version/"], &["get"]),
        ]),
        cluster_role("system:auth-delegator", &[], vec![
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
        ]),
        aggregated_role("admin", &[], AGG_ADMIN),
        aggregated_role("edit", &[(AGG_ADMIN, "true")], AGG_EDIT),
        aggregated_role("view", &[(AGG_ADMIN, "true"), (AGG_EDIT, "true")], AGG_VIEW),
        cluster_role("system:aggregate-to-admin", &[(AGG_ADMIN, "true")], admin_rules),
        cluster_role("system:aggregate-to-edit", &[(AGG_EDIT, "true")], edit_rules),
        cluster_role("system:aggregate-to-view", &[(AGG_VIEW, "true")], view_rules),
    ];
    let cluster_role_bindings = vec![
        cluster_role_binding("cluster-admin", &["system:masters"]),
        cluster_role_binding("system:discovery", &["system:authenticated"]),
        cluster_role_binding("system:basic-user", &["system:authenticated"]),
        cluster_role_binding("system:public-info-viewer", &["system:authenticated", "system:unauthenticated"]),
    ];
    Bootstrap { cluster_roles, cluster_role_bindings }
}

fn bootstrap() -> &'static Bootstrap {
    static B: OnceLock<Bootstrap> = OnceLock::new();
    B.get_or_init(build_bootstrap)
}

/// The built-in bootstrap policy as objects, for seeding them into the store (so that `kubectl get
/// clusterroles` lists them). Authorization uses them whether or not they are stored; a stored object of
/// the same name replaces the built-in one.
pub fn bootstrap_policy() -> Vec<(GroupResource, Value)> {
    let b = bootstrap();
    let roles = b
        .cluster_roles
        .iter()
        .map(|r| (GroupResource::new(RBAC_GROUP, "clusterroles"), r.clone()));
    let bindings = b
        .cluster_role_bindings
        .iter()
        .map(|r| (GroupResource::new(RBAC_GROUP, "clusterrolebindings"), r.clone()));
    roles.chain(bindings).collect()
}

/// Stored objects of a cluster-scoped RBAC collection, plus the built-in ones not overridden by name;
/// only those `keep` accepts are copied (authorization runs on every request, and most bindings are
/// not about the caller).
fn with_bootstrap(store: &Store, resource: &str, builtin: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    let stored = std::cell::RefCell::new(std::collections::HashSet::new());
    let (mut items, _) = store.list_matching(&GroupResource::new(RBAC_GROUP, resource), None, |o| {
        stored.borrow_mut().insert(name_of(o).to_string());
        keep(o)
    });
    let stored = stored.into_inner();
    items.extend(
        builtin
            .iter()
            .filter(|b| !stored.contains(name_of(b)) && keep(b))
            .cloned(),
    );
    items
}

fn all_cluster_roles(store: &Store) -> Vec<Value> {
    with_bootstrap(store, "clusterroles", &bootstrap().cluster_roles, |_| true)
}

/// The ClusterRoleBindings with a subject that is `user`.
fn cluster_role_bindings_of(store: &Store, user: &UserInfo) -> Vec<Value> {
    with_bootstrap(store, "clusterrolebindings", &bootstrap().cluster_role_bindings, |b| {
        applies_to(user, &subjects(b), "").is_some()
    })
}

fn get_cluster_role(store: &Store, name: &str) -> Option<Value> {
    store
        .get(&GroupResource::new(RBAC_GROUP, "clusterroles"), "", name)
        .or_else(|| bootstrap().cluster_roles.iter().find(|r| name_of(r) == name).cloned())
}

/// Whether a label selector (`matchLabels`, `matchExpressions`) selects the labels. An empty selector
/// selects everything, as `metav1.LabelSelectorAsSelector` does.
fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels[k].as_str();
    let by_labels = sel["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| label(k).is_some() && label(k) == v.as_str()));
    let by_expressions = sel["matchExpressions"].as_array().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values = strings(&e["values"]);
            match e["operator"].as_str().unwrap_or_default() {
                "In" => label(key).is_some_and(|v| has(&values, v)),
                "NotIn" => label(key).is_none_or(|v| !has(&values, v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        })
    });
    by_labels && by_expressions
}

/// The effective rules of a ClusterRole. With an `aggregationRule`, they are the rules of every
/// ClusterRole its selectors pick (by name, first occurrence of each rule kept), replacing its own,
/// as the aggregation controller does; aggregation nests, cycles are cut.
fn cluster_role_rules(store: &Store, role: &Value, visited: &mut Vec<String>) -> Vec<PolicyRule> {
    let agg = &role["aggregationRule"];
    if !agg.is_object() {
        return parse_rules(&role["rules"]);
    }
    let me = name_of(role).to_string();
    visited.push(me.clone());
    let selectors = agg["clusterRoleSelectors"].as_array().cloned().unwrap_or_default();
    let mut picked: BTreeMap<String, Value> = BTreeMap::new();
    for cr in all_cluster_roles(store) {
        let n = name_of(&cr).to_string();
        if n == me || visited.contains(&n) {
            continue;
        }
        if selectors.iter().any(|s| selector_matches(s, labels_of(&cr))) {
            picked.insert(n, cr);
        }
    }
    let mut out: Vec<PolicyRule> = Vec::new();
    for cr in picked.values() {
        for r in cluster_role_rules(store, cr, visited) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

/// The rules a ClusterRole grants: its own, or for an aggregated one the rules it aggregates now. The
/// API layer may use it to show aggregated roles with their rules filled in, as the aggregation
/// controller keeps them on a real cluster.
pub fn effective_rules(store: &Store, cluster_role: &Value) -> Vec<PolicyRule> {
    cluster_role_rules(store, cluster_role, &mut Vec::new())
}

/// Upstream `GetRoleReferenceRules`.
fn role_ref_rules(store: &Store, r: &RoleRef, binding_ns: &str) -> Result<Vec<PolicyRule>, RoleRefError> {
    match r.kind.as_str() {
        "Role" => store
            .get(&GroupResource::new(RBAC_GROUP, "roles"), binding_ns, &r.name)
            .map(|role| parse_rules(&role["rules"]))
            .ok_or_else(|| RoleRefError::NotFound {
                kind: "role",
                name: r.name.clone(),
            }),
        "ClusterRole" => get_cluster_role(store, &r.name)
            .map(|role| cluster_role_rules(store, &role, &mut Vec::new()))
            .ok_or_else(|| RoleRefError::NotFound {
                kind: "clusterrole",
                name: r.name.clone(),
            }),
        other => Err(RoleRefError::Unsupported(other.to_string())),
    }
}

/// One step of upstream `VisitRulesFor`'s walk, in walk order.
#[derive(Debug)]
enum Step {
    /// A binding whose role could not be resolved: the authorizer's error message.
    Error(String),
    /// The rules of one applying binding's role, and what granted them.
    Rules(RuleSource, Vec<PolicyRule>),
}

/// Upstream `VisitRulesFor`, with the visiting left to [`visit_steps`]: every rule granted to the user
/// by ClusterRoleBindings, then (for a namespace) by the RoleBindings of that namespace, and the errors
/// met (bindings to missing roles) where they were met. Reads only ClusterRoles, ClusterRoleBindings
/// and the namespace's Roles and RoleBindings (plus the static bootstrap policy): [`RuleCache`]'s
/// stamps rely on that. This is the one place rules are resolved; the cache only stores its result.
fn resolve_rules(store: &Store, user: &UserInfo, namespace: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for crb in cluster_role_bindings_of(store, user) {
        let subs = subjects(&crb);
        let Some(i) = applies_to(user, &subs, "") else {
            continue;
        };
        let rr = role_ref(&crb);
        match role_ref_rules(store, &rr, "") {
            Err(e) => steps.push(Step::Error(e.authorizer_message())),
            Ok(rules) => {
                let src = RuleSource {
                    text: format!(
                        "ClusterRoleBinding {} of {} {} to {}",
                        go_quote(name_of(&crb)),
                        rr.kind,
                        go_quote(&rr.name),
                        describe_subject(&subs[i], "")
                    ),
                };
                steps.push(Step::Rules(src, rules));
            }
        }
    }
    if namespace.is_empty() {
        return steps;
    }
    let (bindings, _) = store.list_matching(&GroupResource::new(RBAC_GROUP, "rolebindings"), Some(namespace), |rb| {
        applies_to(user, &subjects(rb), namespace).is_some()
    });
    for rb in bindings {
        let subs = subjects(&rb);
        let Some(i) = applies_to(user, &subs, namespace) else {
            continue;
        };
        let rr = role_ref(&rb);
        match role_ref_rules(store, &rr, namespace) {
            Err(e) => steps.push(Step::Error(e.authorizer_message())),
            Ok(rules) => {
                let src = RuleSource {
                    text: format!(
                        "RoleBinding {} of {} {} to {}",
                        go_quote(&format!("{}/{namespace}", name_of(&rb))),
                        rr.kind,
                        go_quote(&rr.name),
                        describe_subject(&subs[i], namespace)
                    ),
                };
                steps.push(Step::Rules(src, rules));
            }
        }
    }
    steps
}

/// Visits the rules of a walk in order; the visitor returns false to stop. Returns the errors met
/// before the stop (as upstream, which stops walking there), which never stop the walk themselves.
fn visit_steps(steps: &[Step], visitor: &mut dyn FnMut(&RuleSource, &PolicyRule) -> bool) -> Vec<String> {
    let mut errors = Vec::new();
    for step in steps {
        match step {
            Step::Error(e) => errors.push(e.clone()),
            Step::Rules(src, rules) => {
                for r in rules {
                    if !visitor(src, r) {
                        return errors;
                    }
                }
            }
        }
    }
    errors
}

/// Upstream `VisitRulesFor` over the cached walk (see [`RuleCache`]).
fn visit_rules_for(
    store: &Store,
    user: &UserInfo,
    namespace: &str,
    visitor: &mut dyn FnMut(&RuleSource, &PolicyRule) -> bool,
) -> Vec<String> {
    let steps = store.rbac_rules().steps(store, user, namespace);
    visit_steps(&steps, visitor)
}

/// How many (user, namespace) walks a [`RuleCache`] keeps. User names and groups come from requests
/// (tokens, impersonation, SubjectAccessReviews), so the cache must not grow with them; when full it
/// is emptied, which costs one resolution per active user and namespace.
const RULE_CACHE_LIMIT: usize = 4096;

/// Whose rules, where. The user's uid and extra take no part in subject matching, and group order and
/// duplicates do not either (`applies_to` asks only whether a group is among them), so groups are kept
/// sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    username: String,
    groups: Vec<String>,
    namespace: String,
}

/// The store's write versions of ClusterRoles, ClusterRoleBindings, and the namespace's Roles and
/// RoleBindings: everything [`resolve_rules`] reads besides the static bootstrap policy.
type Stamp = [u64; 4];

fn stamp(store: &Store, namespace: &str) -> Stamp {
    static GRS: LazyLock<[GroupResource; 4]> = LazyLock::new(|| {
        ["clusterroles", "clusterrolebindings", "roles", "rolebindings"].map(|r| GroupResource::new(RBAC_GROUP, r))
    });
    let [cr, crb, r, rb] = &*GRS;
    // For namespace "" the walk reads no Roles or RoleBindings; their ("") versions only move on a
    // restore, which moves the other two as well.
    store.collection_versions([(cr, None), (crb, None), (r, Some(namespace)), (rb, Some(namespace))])
}

/// Resolved RBAC walks ([`resolve_rules`]) by user and namespace, each with the [`Stamp`] read before it
/// was resolved. An entry is used only while the store's versions still equal its stamp: versions move
/// on every write and never repeat, so an equal stamp means none of the objects the walk read has
/// changed since it began (a write during resolution leaves a stamp that is already stale, and the
/// next lookup resolves again). One per [`Store`].
#[derive(Debug, Default)]
pub struct RuleCache {
    entries: Mutex<CacheEntries>,
}

/// Each walk with the stamp it was resolved at.
type CacheEntries = HashMap<CacheKey, (Stamp, Arc<[Step]>)>;

impl RuleCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheEntries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The walk for `user` in `namespace`: cached if still current, else resolved now and cached.
    fn steps(&self, store: &Store, user: &UserInfo, namespace: &str) -> Arc<[Step]> {
        let mut groups = user.groups.clone();
        groups.sort_unstable();
        groups.dedup();
        let key = CacheKey {
            username: user.username.clone(),
            groups,
            namespace: namespace.to_string(),
        };
        // Stamp first, then look up or resolve: never a stamp newer than what the walk read.
        let now = stamp(store, namespace);
        if let Some((at, steps)) = self.lock().get(&key)
            && *at == now
        {
            return steps.clone();
        }
        // Resolved without holding the cache lock (it reads the store, which has its own lock).
        let steps: Arc<[Step]> = resolve_rules(store, user, namespace).into();
        let mut entries = self.lock();
        if entries.len() >= RULE_CACHE_LIMIT && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (now, steps.clone()));
        steps
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Authorizes a request: `system:masters` first (reason empty, as the privileged-group authorizer),
/// then RBAC.
pub fn decide(store: &Store, user: &UserInfo, attrs: &Attributes<'_>) -> Decision {
    if user.is_privileged() {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let req = Request::new(attrs);
    let mut reason = None;
    let errors = visit_rules_for(store, user, req.namespace, &mut |src, r| {
        if r.allows(&req) {
            reason = Some(format!("RBAC: allowed by {}", src.text));
            false
        } else {
            true
        }
    });
    match reason {
        Some(reason) => Decision { allowed: true, reason },
        None if errors.is_empty() => Decision::default(),
        None => Decision {
            allowed: false,
            reason: format!("RBAC: {}", aggregate_errors(&errors)),
        },
    }
}

/// Every rule the user holds in the namespace ("" for cluster-wide only), and the resolution errors.
pub fn rules_for(store: &Store, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
    let mut rules = Vec::new();
    let errors = visit_rules_for(store, user, namespace, &mut |_, r| {
        rules.push(r.clone());
        true
    });
    (rules, errors)
}

// ----- escalation prevention -----

/// Upstream `BreakdownRule`: one rule per (group, resource, verb[, name]) and per (url, verb).
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| vec![s.clone()];
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for res in &rule.resources {
            for v in &rule.verbs {
                if rule.resource_names.is_empty() {
                    out.push(PolicyRule {
                        api_groups: one(g),
                        resources: one(res),
                        verbs: one(v),
                        ..Default::default()
                    });
                } else {
                    for n in &rule.resource_names {
                        out.push(PolicyRule {
                            api_groups: one(g),
                            resources: one(res),
                            verbs: one(v),
                            resource_names: one(n),
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: one(u),
                verbs: one(v),
                ..Default::default()
            });
        }
    }
    out
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

fn resource_covers_all(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, "*") || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

/// Upstream `ruleCovers`: whether one owner rule covers a broken-down rule.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resource_covers_all(&owner.resources, &sub.resources);
    let urls = sub.non_resource_urls.iter().all(|p| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| non_resource_url_covers_owner(o, p))
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// Upstream `nonResourceURLCovers` (unlike request matching, a bare `*` is only a prefix wildcard).
fn non_resource_url_covers_owner(owner: &str, sub: &str) -> bool {
    owner == sub || (owner.ends_with('*') && sub.starts_with(owner.trim_end_matches('*')))
}

/// Upstream `Covers`: whether the owner's rules cover every servant rule, and the uncovered pieces.
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let missing: Vec<PolicyRule> = servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (missing.is_empty(), missing)
}

/// Upstream `CompactRules`: rules with one group, one resource and at most one name that differ only
/// by verb are merged.
fn compact_rules(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    // (group, resource, name) of a simple rule, and the rule collecting its verbs.
    type SimpleKey = (String, String, Option<String>);
    let mut simple: Vec<(SimpleKey, PolicyRule)> = Vec::new();
    for r in rules {
        let is_simple = r.resource_names.len() <= 1
            && r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        let key = (
            r.api_groups[0].clone(),
            r.resources[0].clone(),
            r.resource_names.first().cloned(),
        );
        match simple.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => {
                for v in r.verbs {
                    if !existing.verbs.contains(&v) {
                        existing.verbs.push(v);
                    }
                }
            }
            None => simple.push((key, r)),
        }
    }
    out.extend(simple.into_iter().map(|(_, r)| r));
    out
}

/// Upstream `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, list) in [
        ("APIGroups", &r.api_groups),
        ("Resources", &r.resources),
        ("NonResourceURLs", &r.non_resource_urls),
        ("ResourceNames", &r.resource_names),
        ("Verbs", &r.verbs),
    ] {
        if !list.is_empty() {
            parts.push(format!("{label}:{}", go_quote_list(list)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Upstream `ConfirmNoEscalation`: the user must already hold every permission of `rules` in the
/// namespace ("" for cluster-wide). Err is the upstream message.
pub fn confirm_no_escalation(
    store: &Store,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let (owner, errors) = rules_for(store, user, namespace);
    let (ok, missing) = covers(&owner, rules);
    if ok {
        return Ok(());
    }
    let mut descriptions: Vec<String> = compact_rules(missing).iter().map(compact_string).collect();
    descriptions.sort();
    descriptions.dedup();
    let mut msg = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.username),
        go_quote_list(&user.groups),
        descriptions.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

fn full_authority() -> Vec<PolicyRule> {
    let all = || vec!["*".to_string()];
    vec![
        PolicyRule {
            verbs: all(),
            api_groups: all(),
            resources: all(),
            ..Default::default()
        },
        PolicyRule {
            verbs: all(),
            non_resource_urls: all(),
            ..Default::default()
        },
    ]
}

/// `NewForbidden(gr, name, err)`: `rolebindings.rbac.authorization.k8s.io "x" is forbidden: …`.
fn forbidden_write(gr: &GroupResource, name: &str, msg: &str) -> ApiError {
    let message = if name.is_empty() {
        format!("{gr} is forbidden: {msg}")
    } else {
        format!("{gr} {} is forbidden: {msg}", go_quote(name))
    };
    let mut e = ApiError::new(403, "Forbidden", message);
    let mut d = json!({ "group": gr.group, "kind": gr.resource });
    if !name.is_empty() {
        d["name"] = json!(name);
    }
    e.details = Some(d);
    e
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

/// Upstream `BindingAuthorized`: `bind` on the referenced role, in the binding's namespace.
fn binding_authorized(store: &Store, user: &UserInfo, r: &RoleRef, binding_ns: &str) -> bool {
    let resource = match r.kind.as_str() {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        _ => return false,
    };
    let attrs = Attributes {
        verb: "bind",
        group: &r.api_group,
        resource,
        name: non_empty(&r.name),
        namespace: non_empty(binding_ns),
        ..Default::default()
    };
    decide(store, user, &attrs).allowed
}

/// The checks of upstream's policy-based RBAC storage, run before a role or binding is written.
///
/// - Roles/ClusterRoles: allowed with `escalate` on the resource (for `request_name`), or when the user
///   already holds every rule (in the Role's namespace; cluster-wide for ClusterRoles). Setting an
///   `aggregationRule` needs full authority.
/// - RoleBindings/ClusterRoleBindings: allowed with `bind` on the referenced role, or when the user
///   already holds every rule of the referenced role (404 if it does not exist).
///
/// `system:masters` always passes. Other collections are not checked.
pub fn check_write(
    store: &Store,
    user: &UserInfo,
    gr: &GroupResource,
    request_name: Option<&str>,
    obj: &Value,
) -> ApiResult<()> {
    check_write_over(store, user, gr, request_name, None, obj, false)
}

/// [`check_write`] for an update from `old`, as the `Update` of upstream's policy-based storages
/// (`pkg/registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}/policybased/storage.go`):
/// an update that only changes what the garbage collector writes (ownerReferences, finalizers) is
/// not checked, so GC can always finish deleting a role whose permissions it does not hold; and a
/// ClusterRole that had an `aggregationRule` needs full authority to change too.
///
/// `gc_only` is [`only_gc_fields_change`] of the body as the client sent it (see
/// [`gc_only_update`]), not of `new`: upstream decides it before `rest.BeforeUpdate` copies the
/// stored uid and creationTimestamp in, so a body without them is a full update.
pub fn check_update(
    store: &Store,
    user: &UserInfo,
    gr: &GroupResource,
    request_name: Option<&str>,
    old: &Value,
    new: &Value,
    gc_only: bool,
) -> ApiResult<()> {
    check_write_over(store, user, gr, request_name, Some(old), new, gc_only)
}

/// Whether an update of an RBAC object of `kind` from `old` to the client's `body` only changes
/// GC fields, as the policy-based storages see it: on the decoded body (bindings' defaults
/// applied, `pkg/apis/rbac/v1/defaults.go`) before any server-owned metadata is copied in.
pub fn gc_only_update(kind: &str, old: &Value, body: &Value) -> bool {
    if matches!(kind, "RoleBinding" | "ClusterRoleBinding") {
        let mut defaulted = body.clone();
        default_binding(&mut defaulted);
        return only_gc_fields_change(old, &defaulted);
    }
    only_gc_fields_change(old, body)
}

/// Upstream `IsOnlyMutatingGCFields` (`pkg/registry/rbac/helpers.go`): `new` equals `old` once its
/// ownerReferences, finalizers, selfLink and managedFields are set to `old`'s. Labels and
/// annotations are not among them. Empty and absent values are equal, as in `equality.Semantic`.
pub fn only_gc_fields_change(old: &Value, new: &Value) -> bool {
    let mut copied = new.clone();
    if !copied["metadata"].is_object() {
        copied["metadata"] = json!({});
    }
    for k in ["ownerReferences", "finalizers", "selfLink", "managedFields"] {
        copied["metadata"][k] = old["metadata"].get(k).cloned().unwrap_or(Value::Null);
    }
    semantic(&copied) == semantic(old)
}

/// A JSON value with nulls and empty arrays/objects dropped: Go's `Semantic.DeepEqual` does not
/// tell a nil slice or map from an empty one, and an omitted field decodes as nil.
fn semantic(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), semantic(v)))
                .filter(|(_, v)| !is_empty_value(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(semantic).collect()),
        other => other.clone(),
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn check_write_over(
    store: &Store,
    user: &UserInfo,
    gr: &GroupResource,
    request_name: Option<&str>,
    old: Option<&Value>,
    obj: &Value,
    gc_only: bool,
) -> ApiResult<()> {
    if gr.group != RBAC_GROUP || user.is_privileged() {
        return Ok(());
    }
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = name_of(obj);
    match gr.resource.as_str() {
        "roles" | "clusterroles" => {
            let ns = if gr.resource == "roles" { ns } else { "" };
            let escalate = Attributes {
                verb: "escalate",
                group: RBAC_GROUP,
                resource: &gr.resource,
                name: request_name.and_then(non_empty),
                namespace: non_empty(ns),
                ..Default::default()
            };
            if decide(store, user, &escalate).allowed || gc_only {
                return Ok(());
            }
            confirm_no_escalation(store, user, ns, &parse_rules(&obj["rules"]))
                .map_err(|m| forbidden_write(gr, name, &m))?;
            let aggregates = |o: &Value| o["aggregationRule"].is_object();
            if gr.resource == "clusterroles" && (aggregates(obj) || old.is_some_and(aggregates)) {
                confirm_no_escalation(store, user, "", &full_authority()).map_err(|_| {
                    forbidden_write(
                        gr,
                        name,
                        "must have cluster-admin privileges to use the aggregationRule",
                    )
                })?;
            }
            Ok(())
        }
        "rolebindings" | "clusterrolebindings" => {
            let ns = if gr.resource == "rolebindings" { ns } else { "" };
            let rr = role_ref(obj);
            if gc_only || binding_authorized(store, user, &rr, ns) {
                return Ok(());
            }
            let rules = match role_ref_rules(store, &rr, ns) {
                Ok(rules) => rules,
                // The registry's getters answer here, hence the plural resource of a normal 404.
                Err(RoleRefError::NotFound { kind, name }) => {
                    return Err(ApiError::not_found(
                        &GroupResource::new(RBAC_GROUP, &format!("{kind}s")),
                        &name,
                    ));
                }
                Err(RoleRefError::Unsupported(kind)) => {
                    let (binding_kind, supported) = if gr.resource == "rolebindings" {
                        ("RoleBinding", "\"Role\", \"ClusterRole\"")
                    } else {
                        ("ClusterRoleBinding", "\"ClusterRole\"")
                    };
                    return Err(ApiError::invalid(
                        binding_kind,
                        RBAC_GROUP,
                        name,
                        vec![(
                            "roleRef.kind".into(),
                            format!("Unsupported value: {}: supported values: {supported}", go_quote(&kind)),
                        )],
                    ));
                }
            };
            confirm_no_escalation(store, user, ns, &rules).map_err(|m| forbidden_write(gr, name, &m))
        }
        _ => Ok(()),
    }
}

/// Defaulting of RoleBindings and ClusterRoleBindings at decode (`pkg/apis/rbac/v1/defaults.go`): an
/// empty `roleRef.apiGroup` is `rbac.authorization.k8s.io`, and so is a User or Group subject's;
/// a ServiceAccount subject's stays empty.
pub fn default_binding(obj: &mut Value) {
    if obj["roleRef"].is_object() && obj["roleRef"]["apiGroup"].as_str().is_none_or(str::is_empty) {
        obj["roleRef"]["apiGroup"] = json!(RBAC_GROUP);
    }
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            let kind = s["kind"].as_str().unwrap_or_default();
            if matches!(kind, "User" | "Group") && s["apiGroup"].as_str().is_none_or(str::is_empty) {
                s["apiGroup"] = json!(RBAC_GROUP);
            }
        }
    }
}

/// The `roleRef.apiGroup` rule of upstream's `ValidateRoleBinding`/`ValidateClusterRoleBinding`
/// (`pkg/apis/rbac/validation/validation.go`): only `rbac.authorization.k8s.io` is supported.
pub fn validate_binding(kind: &str, obj: &Value) -> ApiResult<()> {
    let group = obj["roleRef"]["apiGroup"].as_str().unwrap_or_default();
    if group == RBAC_GROUP {
        return Ok(());
    }
    Err(ApiError::invalid(
        kind,
        RBAC_GROUP,
        name_of(obj),
        vec![(
            "roleRef.apiGroup".into(),
            format!(
                "Unsupported value: {}: supported values: {}",
                go_quote(group),
                go_quote(RBAC_GROUP)
            ),
        )],
    ))
}

/// A rule as `SelfSubjectRulesReview` reports it.
pub(crate) fn resource_rule_value(r: &PolicyRule) -> Value {
    let mut v = json!({ "verbs": r.verbs });
    if !r.api_groups.is_empty() {
        v["apiGroups"] = json!(r.api_groups);
    }
    if !r.resources.is_empty() {
        v["resources"] = json!(r.resources);
    }
    if !r.resource_names.is_empty() {
        v["resourceNames"] = json!(r.resource_names);
    }
    v
}

/// A non-resource rule as `SelfSubjectRulesReview` reports it.
pub(crate) fn non_resource_rule_value(r: &PolicyRule) -> Value {
    json!({ "verbs": r.verbs, "nonResourceURLs": r.non_resource_urls })
}

impl std::fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&compact_string(self))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn role(store: &Store, ns: &str, name: &str, rules: Value) {
        put(
            store,
            RBAC_GROUP,
            "roles",
            json!({"metadata": {"namespace": ns, "name": name}, "rules": rules}),
        );
    }

    fn cluster_role_obj(store: &Store, name: &str, rules: Value) {
        put(
            store,
            RBAC_GROUP,
            "clusterroles",
            json!({"metadata": {"name": name}, "rules": rules}),
        );
    }

    fn binding(store: &Store, ns: &str, name: &str, kind: &str, role: &str, subjects: Value) {
        put(
            store,
            RBAC_GROUP,
            "rolebindings",
            json!({"metadata": {"namespace": ns, "name": name}, "roleRef": {"apiGroup": RBAC_GROUP, "kind": kind, "name": role}, "subjects": subjects}),
        );
    }

    fn cluster_binding(store: &Store, name: &str, role: &str, subjects: Value) {
        put(
            store,
            RBAC_GROUP,
            "clusterrolebindings",
            json!({"metadata": {"name": name}, "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role}, "subjects": subjects}),
        );
    }

    fn at<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        ns: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group,
            resource,
            subresource: sub,
            namespace: ns,
            name,
            path: None,
        }
    }

    fn can(store: &Store, u: &UserInfo, a: Attributes<'_>) -> bool {
        decide(store, u, &a).allowed
    }

    fn can_path(store: &Store, u: &UserInfo, verb: &str, path: &str) -> bool {
        decide(
            store,
            u,
            &Attributes {
                verb,
                path: Some(path),
                ..Default::default()
            },
        )
        .allowed
    }

    #[test]
    fn subresources_resource_names_and_wildcards() {
        let store = Store::new();
        role(
            &store,
            "ns",
            "exec",
            json!([
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app-config"], "verbs": ["get", "list", "update"]},
                {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]},
            ]),
        );
        binding(
            &store,
            "ns",
            "b",
            "Role",
            "exec",
            json!([{"kind": "User", "name": "jane"}]),
        );
        let u = user("jane", &[]);
        assert!(can(&store, &u, at("get", "", "pods", None, Some("ns"), Some("p"))));
        assert!(can(&store, &u, at("list", "", "pods", None, Some("ns"), None)));
        assert!(!can(&store, &u, at("delete", "", "pods", None, Some("ns"), Some("p"))));
        assert!(can(
            &store,
            &u,
            at("create", "", "pods", Some("exec"), Some("ns"), Some("p"))
        ));
        // pods does not grant pods/log, nor pods/exec grant pods.
        assert!(!can(
            &store,
            &u,
            at("get", "", "pods", Some("log"), Some("ns"), Some("p"))
        ));
        assert!(!can(&store, &u, at("create", "", "pods", None, Some("ns"), None)));
        // resourceNames: only that name, and never for requests without a name (list, create).
        assert!(can(
            &store,
            &u,
            at("get", "", "configmaps", None, Some("ns"), Some("app-config"))
        ));
        assert!(!can(
            &store,
            &u,
            at("get", "", "configmaps", None, Some("ns"), Some("other"))
        ));
        assert!(!can(&store, &u, at("list", "", "configmaps", None, Some("ns"), None)));
        // */scale matches the scale subresource of anything in the group, nothing else.
        assert!(can(
            &store,
            &u,
            at("update", "apps", "deployments", Some("scale"), Some("ns"), Some("d"))
        ));
        assert!(!can(
            &store,
            &u,
            at("update", "apps", "deployments", None, Some("ns"), Some("d"))
        ));
        assert!(!can(
            &store,
            &u,
            at("update", "apps", "deployments", Some("status"), Some("ns"), Some("d"))
        ));
        // Other namespaces and cluster scope: nothing.
        assert!(!can(&store, &u, at("get", "", "pods", None, Some("other"), Some("p"))));
        assert!(!can(&store, &u, at("list", "", "pods", None, None, None)));
        // Another user: nothing.
        assert!(!can(
            &store,
            &user("bob", &[]),
            at("get", "", "pods", None, Some("ns"), Some("p"))
        ));
    }

    #[test]
    fn cluster_role_through_a_role_binding_applies_only_in_that_namespace() {
        let store = Store::new();
        cluster_role_obj(
            &store,
            "pod-reader",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]),
        );
        binding(
            &store,
            "a",
            "read",
            "ClusterRole",
            "pod-reader",
            json!([{"kind": "Group", "name": "devs"}]),
        );
        let u = user("jane", &["devs"]);
        assert!(can(&store, &u, at("delete", "", "pods", None, Some("a"), Some("p"))));
        assert!(!can(&store, &u, at("get", "", "pods", None, Some("b"), Some("p"))));
        assert!(!can(&store, &u, at("list", "", "pods", None, None, None)));
        // Group membership is what matters.
        assert!(!can(
            &store,
            &user("jane", &[]),
            at("get", "", "pods", None, Some("a"), Some("p"))
        ));
        // A ClusterRoleBinding grants it everywhere.
        cluster_binding(
            &store,
            "read-all",
            "pod-reader",
            json!([{"kind": "User", "name": "ops"}]),
        );
        let ops = user("ops", &[]);
        assert!(can(&store, &ops, at("list", "", "pods", None, None, None)));
        assert!(can(&store, &ops, at("get", "", "pods", None, Some("b"), Some("p"))));
        let d = decide(
            &store,
            &ops,
            &Attributes {
                verb: "list",
                resource: "pods",
                namespace: Some("b"),
                ..Default::default()
            },
        );
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by ClusterRoleBinding "read-all" of ClusterRole "pod-reader" to User "ops""#
        );
        let d = decide(
            &store,
            &u,
            &Attributes {
                verb: "list",
                resource: "pods",
                namespace: Some("a"),
                ..Default::default()
            },
        );
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by RoleBinding "read/a" of ClusterRole "pod-reader" to Group "devs""#
        );
    }

    #[test]
    fn service_account_subjects_default_to_the_binding_namespace() {
        let store = Store::new();
        cluster_role_obj(
            &store,
            "pod-reader",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        );
        binding(
            &store,
            "team",
            "b",
            "ClusterRole",
            "pod-reader",
            json!([{"kind": "ServiceAccount", "name": "bot"}]),
        );
        let bot = UserInfo::service_account("team", "bot", "u1");
        let elsewhere = UserInfo::service_account("other", "bot", "u2");
        assert!(can(&store, &bot, at("get", "", "pods", None, Some("team"), Some("p"))));
        assert!(!can(
            &store,
            &elsewhere,
            at("get", "", "pods", None, Some("team"), Some("p"))
        ));
        let d = decide(
            &store,
            &bot,
            &Attributes {
                verb: "get",
                resource: "pods",
                namespace: Some("team"),
                name: Some("p"),
                ..Default::default()
            },
        );
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by RoleBinding "b/team" of ClusterRole "pod-reader" to ServiceAccount "bot/team""#
        );
        // In a ClusterRoleBinding a ServiceAccount subject needs its namespace.
        cluster_binding(
            &store,
            "no-ns",
            "pod-reader",
            json!([{"kind": "ServiceAccount", "name": "bot"}]),
        );
        assert!(!can(
            &store,
            &elsewhere,
            at("get", "", "pods", None, Some("x"), Some("p"))
        ));
        cluster_binding(
            &store,
            "with-ns",
            "pod-reader",
            json!([{"kind": "ServiceAccount", "name": "bot", "namespace": "other"}]),
        );
        assert!(can(
            &store,
            &elsewhere,
            at("get", "", "pods", None, Some("x"), Some("p"))
        ));
        // The group of all ServiceAccounts of a namespace.
        binding(
            &store,
            "team",
            "all-sa",
            "ClusterRole",
            "pod-reader",
            json!([{"kind": "Group", "name": "system:serviceaccounts:other"}]),
        );
        assert!(can(
            &store,
            &elsewhere,
            at("get", "", "pods", None, Some("team"), Some("p"))
        ));
    }

    #[test]
    fn non_resource_urls_and_the_bootstrap_policy() {
        let store = Store::new();
        let u = user("jane", &[]);
        // Every authenticated user may discover the API and review itself (kubectl needs both).
        for p in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/version",
            "/openapi/v3",
            "/openapi/v2",
            "/healthz",
            "/livez",
            "/readyz",
        ] {
            assert!(can_path(&store, &u, "get", p), "{p}");
        }
        assert!(!can_path(&store, &u, "get", "/metrics"));
        assert!(!can_path(&store, &u, "post", "/api"));
        assert!(can(
            &store,
            &u,
            at(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                None,
                None,
                None
            )
        ));
        assert!(can(
            &store,
            &u,
            at(
                "create",
                "authorization.k8s.io",
                "selfsubjectrulesreviews",
                None,
                None,
                None
            )
        ));
        assert!(can(
            &store,
            &u,
            at(
                "create",
                "authentication.k8s.io",
                "selfsubjectreviews",
                None,
                None,
                None
            )
        ));
        assert!(!can(
            &store,
            &u,
            at(
                "create",
                "authorization.k8s.io",
                "subjectaccessreviews",
                None,
                None,
                None
            )
        ));
        let d = decide(
            &store,
            &u,
            &Attributes {
                verb: "get",
                path: Some("/version"),
                ..Default::default()
            },
        );
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated""#
        );
        // Without system:authenticated, nothing but the public info.
        let anon = UserInfo {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        };
        assert!(!can_path(&store, &anon, "get", "/api"));
        assert!(can_path(&store, &anon, "get", "/version"));

        cluster_role_obj(
            &store,
            "metrics",
            json!([{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}]),
        );
        cluster_binding(&store, "metrics", "metrics", json!([{"kind": "User", "name": "jane"}]));
        assert!(can_path(&store, &u, "get", "/metrics"));
        assert!(can_path(&store, &u, "get", "/logs/kube.log"));
        assert!(can_path(&store, &u, "get", "/logs/"));
        assert!(!can_path(&store, &u, "get", "/metrics/extra"));
        // nonResourceURLs never grant resource requests.
        assert!(!can(&store, &u, at("get", "", "metrics", None, None, None)));

        // A stored object of a bootstrap name replaces the built-in one.
        cluster_role_obj(
            &store,
            "system:discovery",
            json!([{"nonResourceURLs": ["/version"], "verbs": ["get"]}]),
        );
        assert!(!can_path(&store, &u, "get", "/apis"));
        assert_eq!(bootstrap_policy().len(), 15);
    }

    #[test]
    fn masters_may_do_anything() {
        let store = Store::new();
        let admin = UserInfo::admin();
        assert!(can(&store, &admin, at("delete", "", "nodes", None, None, Some("n"))));
        assert!(can_path(&store, &admin, "get", "/metrics"));
        assert_eq!(
            decide(
                &store,
                &admin,
                &Attributes {
                    verb: "get",
                    resource: "pods",
                    ..Default::default()
                }
            )
            .reason,
            ""
        );
    }

    #[test]
    fn aggregated_cluster_roles_are_resolved_at_evaluation_time() {
        let store = Store::new();
        put(
            &store,
            RBAC_GROUP,
            "clusterroles",
            json!({"metadata": {"name": "monitoring"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]}, "rules": []}),
        );
        binding(
            &store,
            "ns",
            "b",
            "ClusterRole",
            "monitoring",
            json!([{"kind": "User", "name": "jane"}]),
        );
        let u = user("jane", &[]);
        assert!(!can(&store, &u, at("get", "", "pods", None, Some("ns"), Some("p"))));
        put(
            &store,
            RBAC_GROUP,
            "clusterroles",
            json!({"metadata": {"name": "monitoring-pods", "labels": {"rbac.example.com/aggregate-to-monitoring": "true"}},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        );
        assert!(can(&store, &u, at("get", "", "pods", None, Some("ns"), Some("p"))));
        assert!(!can(&store, &u, at("list", "", "pods", None, Some("ns"), None)));
        let monitoring = store
            .get(&GroupResource::new(RBAC_GROUP, "clusterroles"), "", "monitoring")
            .unwrap();
        assert_eq!(effective_rules(&store, &monitoring).len(), 1);

        // The built-in view/edit/admin aggregate too: edit includes view, admin includes edit.
        binding(
            &store,
            "ns",
            "viewer",
            "ClusterRole",
            "view",
            json!([{"kind": "User", "name": "v"}]),
        );
        binding(
            &store,
            "ns",
            "admin",
            "ClusterRole",
            "admin",
            json!([{"kind": "User", "name": "a"}]),
        );
        let v = user("v", &[]);
        let a = user("a", &[]);
        assert!(can(&store, &v, at("list", "", "pods", None, Some("ns"), None)));
        assert!(!can(&store, &v, at("get", "", "secrets", None, Some("ns"), Some("s"))));
        assert!(!can(
            &store,
            &v,
            at("create", "", "pods", Some("exec"), Some("ns"), Some("p"))
        ));
        assert!(can(
            &store,
            &a,
            at("create", "", "pods", Some("exec"), Some("ns"), Some("p"))
        ));
        assert!(can(
            &store,
            &a,
            at("list", "apps", "deployments", None, Some("ns"), None)
        ));
        assert!(can(
            &store,
            &a,
            at("create", RBAC_GROUP, "rolebindings", None, Some("ns"), None)
        ));
        assert!(!can(
            &store,
            &a,
            at("create", RBAC_GROUP, "clusterroles", None, None, None)
        ));
    }

    #[test]
    fn binding_to_a_missing_role_gives_the_upstream_reason() {
        let store = Store::new();
        binding(
            &store,
            "ns",
            "b",
            "ClusterRole",
            "ghost",
            json!([{"kind": "User", "name": "jane"}]),
        );
        let d = decide(
            &store,
            &user("jane", &[]),
            &Attributes {
                verb: "get",
                resource: "pods",
                namespace: Some("ns"),
                ..Default::default()
            },
        );
        assert!(!d.allowed);
        assert_eq!(
            d.reason,
            r#"RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found"#
        );
    }

    #[test]
    fn escalation_is_refused_with_the_upstream_message() {
        let store = Store::new();
        // jane may manage roles and bindings in "ns" and read pods there, nothing more.
        role(
            &store,
            "ns",
            "manager",
            json!([{"apiGroups": [RBAC_GROUP], "resources": ["roles", "rolebindings"], "verbs": ["create", "update", "get", "list"]},
                   {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
        );
        binding(
            &store,
            "ns",
            "jane-manager",
            "Role",
            "manager",
            json!([{"kind": "User", "name": "jane"}]),
        );
        let jane = user("jane", &["devs"]);
        let roles = GroupResource::new(RBAC_GROUP, "roles");

        let ok = json!({"metadata": {"namespace": "ns", "name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        assert!(check_write(&store, &jane, &roles, None, &ok).is_ok());

        let too_much = json!({"metadata": {"namespace": "ns", "name": "x"}, "rules": [
            {"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "delete"]},
            {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]});
        let e = check_write(&store, &jane, &roles, None, &too_much).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            "roles.rbac.authorization.k8s.io \"x\" is forbidden: user \"jane\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n\
             {APIGroups:[\"\"], Resources:[\"pods/exec\"], Verbs:[\"create\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
        );
        // The same role in another namespace: jane holds nothing there.
        let elsewhere = json!({"metadata": {"namespace": "other", "name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        assert!(check_write(&store, &jane, &roles, None, &elsewhere).is_err());

        // `*` on roles would include `escalate`: the manager role above lists its verbs on purpose.
        let star = user("star", &[]);
        role(
            &store,
            "ns",
            "star",
            json!([{"apiGroups": [RBAC_GROUP], "resources": ["roles"], "verbs": ["*"]}]),
        );
        binding(
            &store,
            "ns",
            "star",
            "Role",
            "star",
            json!([{"kind": "User", "name": "star"}]),
        );
        assert!(check_write(&store, &star, &roles, None, &too_much).is_ok());

        // `escalate` on roles lifts the check (name-scoped: only for that role, on update).
        role(
            &store,
            "ns",
            "escalator",
            json!([{"apiGroups": [RBAC_GROUP], "resources": ["roles"], "verbs": ["escalate"], "resourceNames": ["x"]}]),
        );
        binding(
            &store,
            "ns",
            "jane-escalate",
            "Role",
            "escalator",
            json!([{"kind": "User", "name": "jane"}]),
        );
        assert!(check_write(&store, &jane, &roles, Some("x"), &too_much).is_ok());
        assert!(
            check_write(&store, &jane, &roles, None, &too_much).is_err(),
            "a POST has no name"
        );

        // Masters pass; other groups are not checked.
        assert!(check_write(&store, &UserInfo::admin(), &roles, None, &too_much).is_ok());
        assert!(check_write(&store, &jane, &GroupResource::new("", "configmaps"), None, &too_much).is_ok());
    }

    #[test]
    fn cluster_roles_are_checked_cluster_wide_and_aggregation_needs_full_authority() {
        let store = Store::new();
        cluster_role_obj(
            &store,
            "cr-manager",
            json!([{"apiGroups": [RBAC_GROUP], "resources": ["clusterroles"], "verbs": ["create"]},
                                                      {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        );
        cluster_binding(&store, "m", "cr-manager", json!([{"kind": "User", "name": "jane"}]));
        let jane = user("jane", &[]);
        let crs = GroupResource::new(RBAC_GROUP, "clusterroles");
        let ok =
            json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        assert!(check_write(&store, &jane, &crs, None, &ok).is_ok());
        let agg = json!({"metadata": {"name": "r"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}});
        let e = check_write(&store, &jane, &crs, None, &agg).unwrap_err();
        assert_eq!(
            e.message,
            "clusterroles.rbac.authorization.k8s.io \"r\" is forbidden: must have cluster-admin privileges to use the aggregationRule"
        );
        // clusterrole/policybased/storage.go: removing an aggregationRule (old or new has one) needs
        // full authority too, and a GC-only update of an aggregated role needs none.
        let e = check_update(&store, &jane, &crs, Some("r"), &agg, &ok, false).unwrap_err();
        assert!(
            e.message
                .ends_with("must have cluster-admin privileges to use the aggregationRule"),
            "{}",
            e.message
        );
        let mut held = agg.clone();
        held["metadata"]["finalizers"] = json!(["example.com/hold"]);
        assert!(
            check_update(
                &store,
                &jane,
                &crs,
                Some("r"),
                &agg,
                &held,
                gc_only_update("ClusterRole", &agg, &held)
            )
            .is_ok()
        );
    }

    /// pkg/registry/rbac/helpers.go: ownerReferences, finalizers, selfLink and managedFields only;
    /// empty and absent are the same (`equality.Semantic`).
    #[test]
    fn only_gc_fields_are_exempt() {
        let old = json!({"metadata": {"name": "r", "resourceVersion": "5", "labels": {}}, "rules": []});
        let mut gc = old.clone();
        gc["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u"}]);
        gc["metadata"]["finalizers"] = json!(["x/y"]);
        gc["metadata"]["managedFields"] = json!([{"manager": "m"}]);
        assert!(only_gc_fields_change(&old, &gc));
        let mut unset = old.clone();
        unset["metadata"].as_object_mut().unwrap().remove("labels");
        assert!(only_gc_fields_change(&old, &unset));
        for (path, value) in [
            ("labels", json!({"a": "b"})),
            ("annotations", json!({"a": "b"})),
            ("resourceVersion", json!("")),
        ] {
            let mut changed = gc.clone();
            changed["metadata"][path] = value;
            assert!(!only_gc_fields_change(&old, &changed), "{path}");
        }
    }

    #[test]
    fn bind_permission_allows_binding_a_role_not_held() {
        let store = Store::new();
        cluster_role_obj(
            &store,
            "janus-pod-exec",
            json!([{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}]),
        );
        cluster_role_obj(
            &store,
            "secret-admin",
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]),
        );
        // The controller may create RoleBindings and bind janus-pod-exec only (as in DESIGN §4).
        cluster_role_obj(
            &store,
            "controller",
            json!([{"apiGroups": [RBAC_GROUP], "resources": ["rolebindings"], "verbs": ["create", "delete", "get", "list"]},
                   {"apiGroups": [RBAC_GROUP], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["janus-pod-exec"]}]),
        );
        cluster_binding(
            &store,
            "controller",
            "controller",
            json!([{"kind": "ServiceAccount", "name": "janus", "namespace": "janus"}]),
        );
        let ctl = UserInfo::service_account("janus", "janus", "u");
        let rbs = GroupResource::new(RBAC_GROUP, "rolebindings");
        let rb = |role: &str| {
            json!({"metadata": {"namespace": "team", "name": "g"}, "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
                                      "subjects": [{"kind": "ServiceAccount", "name": "x", "namespace": "team"}]})
        };
        assert!(check_write(&store, &ctl, &rbs, None, &rb("janus-pod-exec")).is_ok());
        let e = check_write(&store, &ctl, &rbs, None, &rb("secret-admin")).unwrap_err();
        assert_eq!(e.code, 403);
        assert!(e.message.starts_with(
            "rolebindings.rbac.authorization.k8s.io \"g\" is forbidden: user \"system:serviceaccount:janus:janus\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:janus\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"*\"]}"
        ), "{}", e.message);
        // A role that does not exist, without bind on it: 404 from the role lookup.
        let e = check_write(&store, &ctl, &rbs, None, &rb("ghost")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (404, "clusterroles.rbac.authorization.k8s.io \"ghost\" not found")
        );
        // Holding every permission of the role is enough without bind.
        cluster_role_obj(
            &store,
            "secret-reader",
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        );
        binding(
            &store,
            "team",
            "jane-secrets",
            "ClusterRole",
            "secret-admin",
            json!([{"kind": "User", "name": "jane"}]),
        );
        let jane = user("jane", &[]);
        let rb2 = json!({"metadata": {"namespace": "team", "name": "g2"}, "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "secret-reader"}, "subjects": []});
        assert!(check_write(&store, &jane, &rbs, None, &rb2).is_ok());
        // …but only in the namespace where she holds them.
        let mut rb3 = rb2.clone();
        rb3["metadata"]["namespace"] = json!("elsewhere");
        assert!(check_write(&store, &jane, &rbs, None, &rb3).is_err());
        // A ClusterRoleBinding needs the permissions cluster-wide.
        let crb = json!({"metadata": {"name": "g3"}, "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "secret-reader"}, "subjects": []});
        assert!(
            check_write(
                &store,
                &jane,
                &GroupResource::new(RBAC_GROUP, "clusterrolebindings"),
                None,
                &crb
            )
            .is_err()
        );
    }

    #[test]
    fn covers_and_compaction_follow_upstream() {
        let r = |v: Value| PolicyRule::from_value(&v);
        let owner = vec![
            r(json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]})),
            r(json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a", "b"], "verbs": ["get"]})),
            r(json!({"nonResourceURLs": ["/logs/*"], "verbs": ["get"]})),
        ];
        assert!(
            covers(
                &owner,
                &[r(
                    json!({"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["get"]})
                )]
            )
            .0
        );
        assert!(
            covers(
                &owner,
                &[r(
                    json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]})
                )]
            )
            .0
        );
        assert!(
            !covers(
                &owner,
                &[r(
                    json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]})
                )]
            )
            .0
        );
        assert!(covers(&owner, &[r(json!({"nonResourceURLs": ["/logs/x"], "verbs": ["get"]}))]).0);
        let (_, missing) = covers(&owner, &[r(json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}))]);
        assert_eq!(
            compact_string(&missing[0]),
            r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#
        );
        let named = compact_rules(vec![
            r(json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"], "verbs": ["get"]})),
            r(json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"], "verbs": ["update"]})),
        ]);
        assert_eq!(named.len(), 1);
        assert_eq!(
            compact_string(&named[0]),
            r#"{APIGroups:[""], Resources:["secrets"], ResourceNames:["s"], Verbs:["get" "update"]}"#
        );
    }

    #[test]
    fn label_selectors() {
        let labels = json!({"a": "1", "b": "2"});
        assert!(selector_matches(&json!({}), &labels));
        assert!(selector_matches(&json!({"matchLabels": {"a": "1"}}), &labels));
        assert!(!selector_matches(&json!({"matchLabels": {"a": "2"}}), &labels));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "b", "operator": "In", "values": ["2", "3"]}]}),
            &labels
        ));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["2"]}]}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "c", "operator": "Exists"}]}),
            &labels
        ));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "c", "operator": "DoesNotExist"}]}),
            &labels
        ));
    }

    // ----- the rules cache -----

    fn get_pods(ns: &str) -> Attributes<'_> {
        at("get", "", "pods", None, Some(ns), Some("p"))
    }

    /// The decision without the cache, for comparing.
    fn uncached(store: &Store, u: &UserInfo, a: &Attributes<'_>) -> Decision {
        let req = Request::new(a);
        let mut reason = None;
        let errors = visit_steps(&resolve_rules(store, u, req.namespace), &mut |src, r| {
            if r.allows(&req) {
                reason = Some(format!("RBAC: allowed by {}", src.text));
                false
            } else {
                true
            }
        });
        match reason {
            Some(reason) => Decision { allowed: true, reason },
            None if errors.is_empty() => Decision::default(),
            None => Decision {
                allowed: false,
                reason: format!("RBAC: {}", aggregate_errors(&errors)),
            },
        }
    }

    fn replace(store: &Store, resource: &str, ns: &str, name: &str, edit: impl FnOnce(&mut Value)) {
        store
            .update_latest(&GroupResource::new(RBAC_GROUP, resource), ns, name, |cur| {
                let mut o = cur.clone();
                edit(&mut o);
                Some(o)
            })
            .expect("update")
            .expect("object to update");
    }

    #[test]
    fn deleting_a_role_binding_denies_the_very_next_request() {
        let store = Store::new();
        role(
            &store,
            "ns",
            "r",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        );
        binding(
            &store,
            "ns",
            "b",
            "Role",
            "r",
            json!([{"kind": "User", "name": "jane"}]),
        );
        let u = user("jane", &[]);
        // Twice: the second answer comes from the cache.
        assert!(can(&store, &u, get_pods("ns")));
        assert!(can(&store, &u, get_pods("ns")));
        assert_eq!(store.rbac_rules().len(), 1);
        del(&store, RBAC_GROUP, "rolebindings", "ns", "b");
        assert!(!can(&store, &u, get_pods("ns")));
        // A RoleBinding elsewhere does not bring it back, and is not needed to expire the entry.
        binding(
            &store,
            "other",
            "b",
            "Role",
            "r",
            json!([{"kind": "User", "name": "jane"}]),
        );
        assert!(!can(&store, &u, get_pods("ns")));
    }

    #[test]
    fn deleting_a_cluster_role_binding_denies_the_very_next_request() {
        let store = Store::new();
        cluster_role_obj(
            &store,
            "reader",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        );
        cluster_binding(&store, "crb", "reader", json!([{"kind": "Group", "name": "readers"}]));
        let u = user("jane", &["readers"]);
        assert!(can(&store, &u, get_pods("ns")));
        assert!(can(&store, &u, get_pods("ns")));
        // Cluster-wide too (a cached entry for namespace "").
        assert!(can(&store, &u, at("get", "", "pods", None, None, Some("p"))));
        del(&store, RBAC_GROUP, "clusterrolebindings", "", "crb");
        assert!(!can(&store, &u, get_pods("ns")));
        assert!(!can(&store, &u, at("get", "", "pods", None, None, Some("p"))));
    }

    #[test]
    fn a_role_whose_rules_change_applies_the_new_rules_on_the_very_next_request() {
        let store = Store::new();
        role(
            &store,
            "ns",
            "r",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        );
        binding(
            &store,
            "ns",
            "b",
            "Role",
            "r",
            json!([{"kind": "User", "name": "jane"}]),
        );
        let u = user("jane", &[]);
        assert!(can(&store, &u, get_pods("ns")));
        assert!(!can(&store, &u, at("list", "", "pods", None, Some("ns"), None)));
        replace(&store, "roles", "ns", "r", |o| {
            o["rules"] = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]);
        });
        assert!(!can(&store, &u, get_pods("ns")));
        assert!(can(&store, &u, at("list", "", "pods", None, Some("ns"), None)));
        // And a ClusterRole's rules, through a RoleBinding.
        cluster_role_obj(
            &store,
            "cr",
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        );
        binding(
            &store,
            "ns",
            "b2",
            "ClusterRole",
            "cr",
            json!([{"kind": "User", "name": "jane"}]),
        );
        let secret = || at("get", "", "secrets", None, Some("ns"), Some("s"));
        assert!(can(&store, &u, secret()));
        replace(&store, "clusterroles", "", "cr", |o| o["rules"] = json!([]));
        assert!(!can(&store, &u, secret()));
    }

    #[test]
    fn an_aggregated_cluster_role_follows_its_aggregation_on_the_very_next_request() {
        let store = Store::new();
        let label = "rbac.example.com/aggregate-to-monitoring";
        put(
            &store,
            RBAC_GROUP,
            "clusterroles",
            json!({"metadata": {"name": "monitoring"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}}),
        );
        put(
            &store,
            RBAC_GROUP,
            "clusterroles",
            json!({"metadata": {"name": "monitoring-pods", "labels": {label: "true"}},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        );
        cluster_binding(&store, "crb", "monitoring", json!([{"kind": "User", "name": "jane"}]));
        let u = user("jane", &[]);
        assert!(can(&store, &u, get_pods("ns")));
        assert!(can(&store, &u, get_pods("ns")));
        // The aggregated-in role leaves the selector: its rules leave the aggregate.
        replace(&store, "clusterroles", "", "monitoring-pods", |o| {
            o["metadata"]["labels"] = json!({});
        });
        assert!(!can(&store, &u, get_pods("ns")));
        // The aggregate's selector changes to pick it again.
        replace(&store, "clusterroles", "", "monitoring-pods", |o| {
            o["metadata"]["labels"] = json!({"other": "true"});
        });
        assert!(!can(&store, &u, get_pods("ns")));
        replace(&store, "clusterroles", "", "monitoring", |o| {
            o["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"other": "true"}}]});
        });
        assert!(can(&store, &u, get_pods("ns")));
    }

    #[test]
    fn a_restored_snapshot_is_authorized_as_restored() {
        let store = Store::new();
        let before = store.snapshot();
        role(
            &store,
            "ns",
            "r",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        );
        binding(
            &store,
            "ns",
            "b",
            "Role",
            "r",
            json!([{"kind": "User", "name": "jane"}]),
        );
        let u = user("jane", &[]);
        assert!(can(&store, &u, get_pods("ns")));
        store.restore(&before).unwrap();
        assert!(!can(&store, &u, get_pods("ns")));
    }

    #[test]
    fn cached_answers_are_the_uncached_ones_for_each_identity() {
        let store = Store::new();
        // A binding to a missing role before an allowing one: the reason is the allowing binding's;
        // for a request nothing allows, the error.
        binding(
            &store,
            "ns",
            "a-ghost",
            "Role",
            "ghost",
            json!([{"kind": "Group", "name": "g"}]),
        );
        role(
            &store,
            "ns",
            "r",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        );
        binding(
            &store,
            "ns",
            "b-real",
            "Role",
            "r",
            json!([{"kind": "Group", "name": "g"}, {"kind": "User", "name": "jane"}]),
        );
        let jane = user("jane", &[]);
        let jane_in_g = user("jane", &["g"]);
        let mut jane_in_g_reordered = jane_in_g.clone();
        jane_in_g_reordered.groups.reverse();
        let bob_in_g = user("bob", &["g"]);
        let requests = [
            get_pods("ns"),
            at("list", "", "pods", None, Some("ns"), None),
            get_pods("elsewhere"),
            at("get", "", "pods", None, None, Some("p")),
        ];
        for _ in 0..2 {
            for u in [&jane, &jane_in_g, &jane_in_g_reordered, &bob_in_g] {
                for a in &requests {
                    assert_eq!(decide(&store, u, a), uncached(&store, u, a), "{u:?} {a:?}");
                }
            }
        }
        let d = decide(&store, &bob_in_g, &get_pods("ns"));
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by RoleBinding "b-real/ns" of Role "r" to Group "g""#
        );
        let d = decide(&store, &jane_in_g, &at("list", "", "pods", None, Some("ns"), None));
        assert_eq!(d.reason, r#"RBAC: role.rbac.authorization.k8s.io "ghost" not found"#);
        // Group order is not part of the key: jane in g, either order, is one entry per namespace.
        assert_eq!(store.rbac_rules().len(), 3 * 3);
        let (rules, errors) = rules_for(&store, &jane_in_g, "ns");
        let mut uncached_rules = Vec::new();
        let uncached_errors = visit_steps(&resolve_rules(&store, &jane_in_g, "ns"), &mut |_, r| {
            uncached_rules.push(r.clone());
            true
        });
        assert_eq!((rules, errors), (uncached_rules, uncached_errors));
    }

    #[test]
    fn the_rules_cache_is_bounded() {
        let store = Store::new();
        for i in 0..RULE_CACHE_LIMIT + 10 {
            assert!(!can(&store, &user(&format!("u{i}"), &[]), get_pods("ns")));
            assert!(store.rbac_rules().len() <= RULE_CACHE_LIMIT);
        }
        assert!(store.rbac_rules().len() <= RULE_CACHE_LIMIT);
        assert!(store.rbac_rules().len() > 0);
    }
}
