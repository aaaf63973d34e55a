//! Access roles and pod scopes: which role a request names and whether the configuration allows it, what a
//! pod scope selects, how it reads ("pods of deployment payments-api"), and the rules of the namespaced
//! Role a pod-scoped grant binds (the role's ClusterRole rules with `resourceNames` set to the pods in
//! scope). The web checks requests with these before creating them; the controller checks them again on
//! every reconcile and builds grants with them.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as K8sLabelSelector;

use crate::access_request::{AccessRequestSpec, PodScope, PodSelector, PodSelectorRequirement, WorkloadKind};
use crate::roles::{RoleConfig, TerminalMode};

/// Why a request's role or pod scope is refused, or a pod-scoped Role cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The request names a role the configuration does not list.
    #[error("role {0:?} is not configured; the roles are: {1}")]
    UnknownRole(String, String),
    /// The pod scope is malformed.
    #[error("podScope: {0}")]
    InvalidScope(String),
    /// The role's ClusterRole cannot be narrowed to named pods.
    #[error("role {role:?} cannot be limited to selected pods: {why}")]
    Unscopable {
        /// The role.
        role: String,
        /// What in its ClusterRole prevents it.
        why: String,
    },
    /// The role's ClusterRole holds rights a grant must never carry (they would let the person escalate
    /// beyond the role), so no grant binds it.
    #[error("role {role:?} cannot be granted: its ClusterRole {why}")]
    UnsafeClusterRole {
        /// The role.
        role: String,
        /// The offending rule, in words.
        why: String,
    },
}

/// ClusterRoles no role may name: Kubernetes' own aggregated user-facing roles, which hold (or can be
/// aggregated to hold) rights on secrets, RBAC or everything. The chart binds the controller and the agent
/// to every role's ClusterRole cluster-wide, so naming one would hand them that power everywhere.
const FORBIDDEN_CLUSTER_ROLES: [&str; 3] = ["cluster-admin", "admin", "edit"];

/// Checks the `roles:` configuration: at least one role; names are unique DNS labels; every role names a
/// ClusterRole other than cluster-admin, admin, edit or a `system:` one (the chart binds the controller
/// and agents to each role's ClusterRole); `debugImages` only on `terminal: debug` roles, each a reference
/// without whitespace whose only `*` is a final wildcard right after `/` or `:`. The message names the
/// key, never a secret (there are none here).
pub fn validate_roles(roles: &[RoleConfig]) -> Result<(), String> {
    if roles.is_empty() {
        return Err("roles: at least one role is needed (the chart ships exec, logs and debug)".into());
    }
    for (i, r) in roles.iter().enumerate() {
        if !is_dns_label(&r.name) {
            return Err(format!(
                "roles[{i}].name: {:?} is not a DNS label (lowercase letters, digits, '-', at most 63)",
                r.name
            ));
        }
        if roles[..i].iter().any(|o| o.name == r.name) {
            return Err(format!("roles[{i}].name: {:?} is listed twice", r.name));
        }
        if FORBIDDEN_CLUSTER_ROLES.contains(&r.cluster_role.as_str()) || r.cluster_role.starts_with("system:") {
            return Err(format!(
                "roles[{i}].clusterRole: {:?} is refused: k8s-janus binds the controller (and every agent) to each \
                 role's ClusterRole cluster-wide, so a role may not name cluster-admin, admin, edit or a system: \
                 ClusterRole; give the role a ClusterRole of its own with only the pod rights it needs",
                r.cluster_role
            ));
        }
        if !is_dns_subdomain(&r.cluster_role) {
            return Err(format!(
                "roles[{i}].clusterRole: {:?} is not a valid ClusterRole name",
                r.cluster_role
            ));
        }
        if r.terminal != TerminalMode::Debug && !r.debug_images.is_empty() {
            return Err(format!(
                "roles[{i}].debugImages: only a role with terminal: debug starts debug containers"
            ));
        }
        for (j, image) in r.debug_images.iter().enumerate() {
            let star = image.find('*');
            if image.is_empty()
                || image.chars().any(char::is_whitespace)
                || star.is_some_and(|at| at + 1 != image.len())
                || image == "*"
            {
                return Err(format!(
                    "roles[{i}].debugImages[{j}]: {image:?} must be an image reference, or a prefix ending in '*' (not '*' alone)"
                ));
            }
            if star.is_some() && prefix_entry(image).is_none() {
                return Err(format!(
                    "roles[{i}].debugImages[{j}]: {image:?}: a prefix must end in '/*' (a repository path, \
                     registry.example.com/debug/*) or ':*' (any tag, busybox:*); a bare '*' after a name would \
                     also match other registries (busybox* matches busybox.evil.io/x)"
                ));
            }
        }
    }
    Ok(())
}

/// The configured role a request names (`spec.role`, default `exec`).
pub fn role_of<'a>(roles: &'a [RoleConfig], spec: &AccessRequestSpec) -> Result<&'a RoleConfig, ScopeError> {
    find_role(roles, spec.role_name())
}

/// The configured role called `name`.
pub fn find_role<'a>(roles: &'a [RoleConfig], name: &str) -> Result<&'a RoleConfig, ScopeError> {
    roles.iter().find(|r| r.name == name).ok_or_else(|| {
        ScopeError::UnknownRole(
            name.to_owned(),
            roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
        )
    })
}

/// Checks a request's role and pod scope against the configuration: the role is configured, and the
/// scope is well-formed (a selector that says something, with valid keys, operators and values; a
/// workload only with exactly one namespace). Returns the role.
pub fn check_request<'a>(roles: &'a [RoleConfig], spec: &AccessRequestSpec) -> Result<&'a RoleConfig, ScopeError> {
    let role = role_of(roles, spec)?;
    if let Some(scope) = &spec.pod_scope {
        check_scope(scope, spec.namespaces.len())?;
    }
    Ok(role)
}

/// At most this many `matchLabels` in a request's selector (the CRD's `maxProperties`).
pub const MAX_MATCH_LABELS: usize = 20;
/// At most this many `matchExpressions` in a request's selector (the CRD's `maxItems`).
pub const MAX_MATCH_EXPRESSIONS: usize = 20;
/// At most this many values in one requirement (the CRD's `maxItems`).
pub const MAX_REQUIREMENT_VALUES: usize = 50;

/// Checks a pod scope on its own (`namespaces`: how many the request names). A selector is also held to
/// the CRD's size limits, so a caller gets this field error rather than the API server's 422.
pub fn check_scope(scope: &PodScope, namespaces: usize) -> Result<(), ScopeError> {
    let bad = |m: String| Err(ScopeError::InvalidScope(m));
    match (&scope.selector, &scope.workload) {
        (Some(s), None) => {
            check_selector_size(s)?;
            check_selector(s)
        }
        (None, Some(w)) => {
            if namespaces != 1 {
                return bad(format!(
                    "a workload scope needs exactly one namespace, the {}'s; this request names {namespaces}",
                    w.kind.as_str()
                ));
            }
            if !is_dns_subdomain(&w.name) {
                return bad(format!("workload name {:?} is not a valid object name", w.name));
            }
            Ok(())
        }
        _ => bad("exactly one of selector and workload".into()),
    }
}

/// The CRD's bounds on a request's selector. Not applied to a workload's own `spec.selector`
/// ([`from_workload_selector`]): that one is never stored in the AccessRequest's spec.
fn check_selector_size(s: &PodSelector) -> Result<(), ScopeError> {
    let bad = |m: String| Err(ScopeError::InvalidScope(m));
    if s.match_labels.len() > MAX_MATCH_LABELS {
        return bad(format!(
            "{} matchLabels; at most {MAX_MATCH_LABELS}",
            s.match_labels.len()
        ));
    }
    if s.match_expressions.len() > MAX_MATCH_EXPRESSIONS {
        return bad(format!(
            "{} matchExpressions; at most {MAX_MATCH_EXPRESSIONS}",
            s.match_expressions.len()
        ));
    }
    if let Some(r) = s
        .match_expressions
        .iter()
        .find(|r| r.values.len() > MAX_REQUIREMENT_VALUES)
    {
        return bad(format!(
            "{} {} has {} values; at most {MAX_REQUIREMENT_VALUES}",
            r.key,
            r.operator,
            r.values.len()
        ));
    }
    Ok(())
}

fn check_selector(s: &PodSelector) -> Result<(), ScopeError> {
    let bad = |m: String| Err(ScopeError::InvalidScope(m));
    if s.match_labels.is_empty() && s.match_expressions.is_empty() {
        return bad("an empty selector matches every pod; ask without a pod scope instead".into());
    }
    for (k, v) in &s.match_labels {
        if !is_label_key(k) {
            return bad(format!("{k:?} is not a valid label key"));
        }
        if !is_label_value(v) {
            return bad(format!("{v:?} (for {k}) is not a valid label value"));
        }
    }
    for r in &s.match_expressions {
        if !is_label_key(&r.key) {
            return bad(format!("{:?} is not a valid label key", r.key));
        }
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => {
                return bad(format!("{} {} needs at least one value", r.key, r.operator));
            }
            "In" | "NotIn" => {
                if let Some(v) = r.values.iter().find(|v| !is_label_value(v)) {
                    return bad(format!("{v:?} (for {}) is not a valid label value", r.key));
                }
            }
            "Exists" | "DoesNotExist" if !r.values.is_empty() => {
                return bad(format!("{} {} takes no values", r.key, r.operator));
            }
            "Exists" | "DoesNotExist" => {}
            other => return bad(format!("unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)")),
        }
    }
    Ok(())
}

/// The selector in Kubernetes' string syntax (`app=checkout,tier in (a,b),!canary`), as a `labelSelector`
/// query parameter and `kubectl -l` take it. Deterministic: labels in key order, then expressions in
/// order, each expression's values sorted.
pub fn selector_string(s: &PodSelector) -> String {
    let mut parts: Vec<String> = s.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for r in &s.match_expressions {
        let mut values = r.values.clone();
        values.sort();
        values.dedup();
        parts.push(match r.operator.as_str() {
            "In" => format!("{} in ({})", r.key, values.join(",")),
            "NotIn" => format!("{} notin ({})", r.key, values.join(",")),
            "Exists" => r.key.clone(),
            _ => format!("!{}", r.key),
        });
    }
    parts.join(",")
}

/// Whether `labels` match the selector (Kubernetes semantics: `NotIn` and `DoesNotExist` hold for a
/// missing label; an unknown operator matches nothing).
pub fn selector_matches(s: &PodSelector, labels: &BTreeMap<String, String>) -> bool {
    s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && s.match_expressions
            .iter()
            .all(|r| requirement_holds(labels.get(&r.key), &r.operator, &r.values))
}

/// Whether one set-based requirement holds for a label's value (`None`: the label is missing), as
/// k8s.io/apimachinery/pkg/labels/selector.go's `Requirement.Matches`: `NotIn` and `DoesNotExist` hold
/// for a missing label; an unknown operator matches nothing. Pod scopes and policies' namespace
/// selectors both match with it.
pub(crate) fn requirement_holds(value: Option<&String>, operator: &str, values: &[String]) -> bool {
    match operator {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// A workload's `spec.selector` as a [`PodSelector`]; refused when it selects every pod (empty) or uses
/// an unknown operator.
pub fn from_workload_selector(kind: WorkloadKind, name: &str, s: &K8sLabelSelector) -> Result<PodSelector, ScopeError> {
    let selector = PodSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: s
            .match_expressions
            .iter()
            .flatten()
            .map(|r| PodSelectorRequirement {
                key: r.key.clone(),
                operator: r.operator.clone(),
                values: r.values.clone().unwrap_or_default(),
            })
            .collect(),
    };
    check_selector(&selector).map_err(|e| {
        ScopeError::InvalidScope(format!(
            "the pod selector of {} {name} cannot scope a grant: {e}",
            kind.as_str().to_lowercase()
        ))
    })?;
    Ok(selector)
}

/// The scope as people read it: "pods of deployment payments-api", "pods with app=checkout".
pub fn describe(scope: &PodScope) -> String {
    match (&scope.workload, &scope.selector) {
        (Some(w), _) => format!("pods of {} {}", w.kind.as_str().to_lowercase(), w.name),
        (None, Some(s)) => format!("pods with {}", selector_string(s)),
        (None, None) => "all pods".into(),
    }
}

/// Whether a debug container may run `image` under `role`: an exact entry of `debugImages`, or a prefix
/// entry ending in `/*` (anything under that repository path) or `:*` (any tag or digest of that
/// repository: the rest may not contain `/`, else `busybox:*` would match `busybox:5000/x`, an image of
/// the registry host `busybox`). Any other entry with a `*` allows nothing, even if validation was
/// skipped. A role that is not `terminal: debug` allows none.
pub fn image_allowed(role: &RoleConfig, image: &str) -> bool {
    role.terminal == TerminalMode::Debug
        && !image.is_empty()
        && role.debug_images.iter().any(|allowed| {
            if !allowed.contains('*') {
                return image == allowed;
            }
            let Some((prefix, any_tag)) = prefix_entry(allowed) else {
                return false;
            };
            image
                .strip_prefix(prefix)
                // After `:*` only a tag or digest may follow, never a path.
                .is_some_and(|rest| !rest.is_empty() && (!any_tag || !rest.contains('/')))
        })
}

/// A `debugImages` prefix entry: the part before its final `*` (which must follow `/` or `:`, and be the
/// only `*`), and whether it is a `:*` (any-tag) entry.
fn prefix_entry(entry: &str) -> Option<(&str, bool)> {
    let prefix = entry.strip_suffix('*')?;
    if prefix.contains('*') {
        return None;
    }
    match prefix.chars().last()? {
        '/' => Some((prefix, false)),
        ':' => Some((prefix, true)),
        _ => None,
    }
}

/// Refuses a role's ClusterRole (its `rules`, as read from the target cluster) when a grant binding it, or
/// a pod-scoped Role built from it, could reach beyond pods: a wildcard API group or resource (`*`, or
/// `*/sub` which matches that subresource of every resource), any rule on `rbac.authorization.k8s.io`
/// (writing Roles or bindings is the way to grant oneself more), `serviceaccounts/token` (minting tokens
/// for other identities) and impersonation (the `impersonate` verb, or `*` on the identities it applies
/// to). Checked for scoped and unscoped grants alike, on every reconcile. Non-resource URLs are ignored:
/// a RoleBinding cannot grant them.
pub fn check_cluster_role_rules(role: &str, rules: &[PolicyRule]) -> Result<(), ScopeError> {
    let unsafe_role = |why: String| ScopeError::UnsafeClusterRole {
        role: role.to_owned(),
        why,
    };
    for rule in rules {
        let groups = rule.api_groups.as_deref().unwrap_or_default();
        let resources = rule.resources.as_deref().unwrap_or_default();
        if groups.iter().any(|g| g == "*") {
            return Err(unsafe_role("has a rule on every API group (apiGroups \"*\")".into()));
        }
        if let Some(r) = resources.iter().find(|r| *r == "*" || r.starts_with("*/")) {
            return Err(unsafe_role(format!("has a wildcard resource rule ({r:?})")));
        }
        if groups.iter().any(|g| g == RBAC_GROUP) {
            return Err(unsafe_role(format!(
                "has a rule on {RBAC_GROUP} (Roles and bindings let a grant give itself more)"
            )));
        }
        if resources.iter().any(|r| r == "serviceaccounts/token") {
            return Err(unsafe_role(
                "allows serviceaccounts/token (tokens for other ServiceAccounts)".into(),
            ));
        }
        // Impersonation: the authorizer checks verb `impersonate` on users, groups, serviceaccounts (core)
        // and uids, userextras/<key> (authentication.k8s.io); see staging/src/k8s.io/apiserver/pkg/endpoints/
        // filters/impersonation.go. A `*` verb on those resources includes it.
        let identity = |r: &String| {
            matches!(r.as_str(), "users" | "groups" | "serviceaccounts" | "uids") || r.starts_with("userextras")
        };
        let verbs = &rule.verbs;
        if verbs.iter().any(|v| v == "impersonate")
            || (verbs.iter().any(|v| v == "*") && resources.iter().any(identity))
        {
            return Err(unsafe_role("allows impersonation (verb impersonate)".into()));
        }
    }
    Ok(())
}

/// The RBAC API group: rights on it are rights to grant rights.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The rules of the namespaced Role of a pod-scoped grant: the role's ClusterRole `rules`, with every
/// permission on pods (`pods` and its subresources) narrowed to `resourceNames` = `pods` (intersected
/// with names the rule already lists). `list` and `watch` of `pods` itself stay as the ClusterRole has
/// them: Kubernetes cannot narrow a list by name, and the terminal lists the namespace's pods to show
/// those in scope; a list grants no exec, logs or debug on the others. Permissions on anything else
/// (events) stay. Non-resource URLs are dropped (a Role cannot hold them).
///
/// With no pod in scope, the narrowed rules are left out entirely: an empty `resourceNames` would
/// mean every pod. Wildcards on resources or API groups are refused: what they reach cannot be named.
pub fn scoped_rules(role: &str, rules: &[PolicyRule], pods: &[String]) -> Result<Vec<PolicyRule>, ScopeError> {
    let unscopable = |why: String| ScopeError::Unscopable {
        role: role.to_owned(),
        why,
    };
    let mut pods: Vec<String> = pods.to_vec();
    pods.sort();
    pods.dedup();
    let mut out = Vec::new();
    for rule in rules {
        let resources = rule.resources.clone().unwrap_or_default();
        if resources.is_empty() {
            continue; // non-resource URLs only
        }
        let groups = rule.api_groups.clone().unwrap_or_default();
        if groups.iter().any(|g| g == "*") || resources.iter().any(|r| r == "*" || r.starts_with("*/")) {
            return Err(unscopable(
                "its ClusterRole has a wildcard rule (apiGroups or resources \"*\")".into(),
            ));
        }
        let (pod_resources, other): (Vec<String>, Vec<String>) = resources
            .into_iter()
            .partition(|r| r == "pods" || r.starts_with("pods/"));
        if !other.is_empty() {
            out.push(PolicyRule {
                resources: Some(other),
                non_resource_urls: None,
                ..rule.clone()
            });
        }
        if pod_resources.is_empty() {
            continue;
        }
        let listed = rule.resource_names.clone().unwrap_or_default();
        let (collection, named): (Vec<String>, Vec<String>) =
            rule.verbs.iter().cloned().partition(|v| v == "list" || v == "watch");
        let star = rule.verbs.iter().any(|v| v == "*");
        // list/watch of `pods` itself, as the ClusterRole grants them (a `*` includes them).
        let mut collection_verbs = collection;
        if star {
            collection_verbs.extend(["list".to_owned(), "watch".to_owned()]);
        }
        if !collection_verbs.is_empty() && pod_resources.iter().any(|r| r == "pods") {
            out.push(PolicyRule {
                api_groups: Some(groups.clone()),
                resources: Some(vec!["pods".into()]),
                resource_names: (!listed.is_empty()).then(|| listed.clone()),
                verbs: collection_verbs,
                non_resource_urls: None,
            });
        }
        // Everything else, on the pods in scope only.
        let names: Vec<String> = if listed.is_empty() {
            pods.clone()
        } else {
            pods.iter().filter(|p| listed.contains(p)).cloned().collect()
        };
        let mut named_verbs = named;
        if star {
            named_verbs = vec!["*".into()];
        }
        if !named_verbs.is_empty() && !names.is_empty() {
            out.push(PolicyRule {
                api_groups: Some(groups),
                resources: Some(pod_resources),
                resource_names: Some(names),
                verbs: named_verbs,
                non_resource_urls: None,
            });
        }
    }
    Ok(out)
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(is_dns_label)
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters of
/// alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// A label value: empty, or at most 63 characters of alphanumerics, `-`, `_` and `.`, starting and
/// ending alphanumeric.
fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_request::WorkloadRef;
    use crate::roles::builtin_roles;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
            resources: Some(resources.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn sel(labels: &[(&str, &str)]) -> PodSelector {
        PodSelector {
            match_labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            match_expressions: vec![],
        }
    }

    #[test]
    fn scoped_rules_name_the_pods_and_keep_the_rest() {
        let exec = [
            rule(&[""], &["pods"], &["get", "list"]),
            rule(&[""], &["pods/exec"], &["create", "get"]),
            rule(&[""], &["pods/log"], &["get"]),
            rule(&[""], &["events"], &["list"]),
        ];
        let out = scoped_rules("exec", &exec, &["b".into(), "a".into(), "a".into()]).expect("scopable");
        assert_eq!(
            out,
            vec![
                rule(&[""], &["pods"], &["list"]),
                PolicyRule {
                    resource_names: Some(vec!["a".into(), "b".into()]),
                    ..rule(&[""], &["pods"], &["get"])
                },
                PolicyRule {
                    resource_names: Some(vec!["a".into(), "b".into()]),
                    ..rule(&[""], &["pods/exec"], &["create", "get"])
                },
                PolicyRule {
                    resource_names: Some(vec!["a".into(), "b".into()]),
                    ..rule(&[""], &["pods/log"], &["get"])
                },
                rule(&[""], &["events"], &["list"]),
            ]
        );
    }

    #[test]
    fn no_pod_in_scope_means_no_named_rule_never_an_empty_list() {
        let exec = [
            rule(&[""], &["pods", "pods/exec"], &["get", "create"]),
            rule(&[""], &["events"], &["list"]),
        ];
        let out = scoped_rules("exec", &exec, &[]).expect("scopable");
        assert_eq!(out, vec![rule(&[""], &["events"], &["list"])]);
        assert!(
            out.iter()
                .all(|r| r.resource_names.as_ref().is_none_or(|n| !n.is_empty()))
        );
    }

    #[test]
    fn names_the_rule_already_lists_are_intersected_and_wildcards_refused() {
        let narrow = [PolicyRule {
            resource_names: Some(vec!["a".into(), "c".into()]),
            ..rule(&[""], &["pods/exec"], &["create"])
        }];
        let out = scoped_rules("x", &narrow, &["a".into(), "b".into()]).expect("scopable");
        assert_eq!(out[0].resource_names, Some(vec!["a".into()]));
        let star = [rule(&["*"], &["pods"], &["get"])];
        assert!(matches!(
            scoped_rules("x", &star, &["a".into()]),
            Err(ScopeError::Unscopable { .. })
        ));
        let star = [rule(&[""], &["*"], &["get"])];
        assert!(scoped_rules("x", &star, &["a".into()]).is_err());
        // A verb wildcard is kept for the named pods; list/watch stay collection-wide.
        let any = [rule(&[""], &["pods"], &["*"])];
        let out = scoped_rules("x", &any, &["a".into()]).expect("scopable");
        assert_eq!(out[0].verbs, vec!["list".to_string(), "watch".to_string()]);
        assert_eq!(out[1].verbs, vec!["*".to_string()]);
        assert_eq!(out[1].resource_names, Some(vec!["a".into()]));
    }

    #[test]
    fn selectors_read_and_match_as_kubernetes_does() {
        let mut s = sel(&[("app", "checkout")]);
        s.match_expressions = vec![
            PodSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: vec!["web".into(), "api".into()],
            },
            PodSelectorRequirement {
                key: "canary".into(),
                operator: "DoesNotExist".into(),
                values: vec![],
            },
        ];
        assert_eq!(selector_string(&s), "app=checkout,tier in (api,web),!canary");
        let labels = |l: &[(&str, &str)]| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(selector_matches(&s, &labels(&[("app", "checkout"), ("tier", "web")])));
        assert!(!selector_matches(&s, &labels(&[("app", "checkout"), ("tier", "db")])));
        assert!(!selector_matches(
            &s,
            &labels(&[("app", "checkout"), ("tier", "web"), ("canary", "1")])
        ));
    }

    /// Label keys and values as apimachinery's `IsQualifiedName` and `IsValidLabelValue` judge them
    /// (k8s.io/apimachinery/pkg/util/validation/validation.go): an optional DNS-1123 subdomain prefix
    /// (lowercase, at most 253) and `/`, then a name of at most 63 characters of alphanumerics, `-`, `_`
    /// and `.`, starting and ending alphanumeric (either case); a value is empty or such a name.
    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        let long_prefix = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(long_prefix.len(), 253);
        for ok in [
            "app",
            "App_Name.v2",
            "example.com/team",
            "k8s-janus.opsmode.io/request",
            "a/b",
            "x/Y",
            &format!("{long_prefix}/app"),
            &"n".repeat(63),
        ] {
            assert!(is_label_key(ok), "{ok} refused");
        }
        for bad in [
            "",
            "/app",
            "example.com/",
            "Example.com/app",
            "example_com/app",
            "exa..mple.com/app",
            "-example.com/app",
            "a/b/c",
            "-app",
            "app-",
            "app.",
            "a b",
            "app!",
            &format!("{long_prefix}x/app"),
            &format!("{}/app", "a".repeat(64)),
            &"n".repeat(64),
            &format!("example.com/{}", "n".repeat(64)),
        ] {
            assert!(!is_label_key(bad), "{bad:?} accepted");
        }
        for ok in ["", "x", "v1.2_3-rc", &"v".repeat(63)] {
            assert!(is_label_value(ok), "{ok:?} refused");
        }
        for bad in ["-x", "x-", "a b", "a/b", "é", &"v".repeat(64)] {
            assert!(!is_label_value(bad), "{bad:?} accepted");
        }
        // Through check_scope: a bad key in matchExpressions, a bad value in In/NotIn values.
        let expr = |key: &str, op: &str, values: &[&str]| PodScope {
            selector: Some(PodSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![PodSelectorRequirement {
                    key: key.into(),
                    operator: op.into(),
                    values: values.iter().map(|v| v.to_string()).collect(),
                }],
            }),
            workload: None,
        };
        assert_eq!(check_scope(&expr("example.com/team", "NotIn", &["a", ""]), 2), Ok(()));
        for (scope, want) in [
            (expr("Example.com/team", "Exists", &[]), "not a valid label key"),
            (expr("team", "In", &["a b"]), "not a valid label value"),
            (expr("team", "NotIn", &[]), "needs at least one value"),
            (expr("team", "DoesNotExist", &["a"]), "takes no values"),
            (expr("team", "Gt", &["1"]), "unknown operator"),
        ] {
            let e = check_scope(&scope, 1).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    /// `selector_string` is read back by a labelSelector parser as the structured selector reads:
    /// kubesim's parser and its reading of a `metav1.LabelSelector` object (crates/kubesim/src/selectors.rs,
    /// modelled on apimachinery's labels/selector.go) agree with `selector_matches` on every label set
    /// tried, for every operator, NotIn included (which holds for a missing label).
    #[test]
    fn the_selector_string_means_what_the_selector_means() {
        let req = |key: &str, op: &str, values: &[&str]| PodSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let not_in = PodSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![req("tier", "NotIn", &["web", "canary", "web"])],
        };
        // Values sorted and deduplicated; NotIn spelled as Kubernetes' parser reads it.
        assert_eq!(selector_string(&not_in), "tier notin (canary,web)");
        let mixed = PodSelector {
            match_labels: [("zone", "eu"), ("app", "checkout")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            match_expressions: vec![
                req("example.com/team", "Exists", &[]),
                req("tier", "NotIn", &["canary"]),
                req("track", "In", &["stable", "beta"]),
                req("legacy", "DoesNotExist", &[]),
            ],
        };
        assert_eq!(
            selector_string(&mixed),
            "app=checkout,zone=eu,example.com/team,tier notin (canary),track in (beta,stable),!legacy"
        );
        let selectors = [
            not_in,
            mixed,
            sel(&[("app", "checkout")]),
            PodSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![req("tier", "In", &["web"]), req("tier", "NotIn", &["canary"])],
            },
        ];
        // Every combination of absent or one of a few values for each key the selectors use.
        let keys = ["app", "zone", "example.com/team", "tier", "track", "legacy"];
        let values = [
            None,
            Some("checkout"),
            Some("eu"),
            Some("web"),
            Some("canary"),
            Some("beta"),
        ];
        let mut label_sets: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
        for k in keys {
            label_sets = label_sets
                .into_iter()
                .flat_map(|l| {
                    values.iter().map(move |v| {
                        let mut l = l.clone();
                        if let Some(v) = v {
                            l.insert(k.to_string(), v.to_string());
                        }
                        l
                    })
                })
                .collect();
        }
        assert_eq!(label_sets.len(), 6usize.pow(6));
        for s in &selectors {
            let text = selector_string(s);
            let parsed = kubesim::selectors::LabelSelector::parse(&text).expect("the selector string parses");
            let object = kubesim::selectors::LabelSelector::from_object(&serde_json::to_value(s).expect("json"))
                .expect("the selector object reads");
            let mut matched = 0;
            for labels in &label_sets {
                let pod = serde_json::json!({"metadata": {"labels": labels}});
                let want = selector_matches(s, labels);
                assert_eq!(parsed.matches(&pod), want, "{text} on {labels:?}");
                assert_eq!(object.matches(&pod), want, "{text} (object) on {labels:?}");
                matched += usize::from(want);
            }
            assert!(matched > 0 && matched < label_sets.len(), "{text} matched {matched}");
        }
    }

    #[test]
    fn scopes_are_checked_and_described() {
        let one = |scope: PodScope, n| check_scope(&scope, n);
        let empty = PodScope {
            selector: Some(PodSelector::default()),
            workload: None,
        };
        assert!(one(empty, 1).unwrap_err().to_string().contains("every pod"));
        let workload = PodScope {
            selector: None,
            workload: Some(WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "payments-api".into(),
            }),
        };
        assert!(
            one(workload.clone(), 2)
                .unwrap_err()
                .to_string()
                .contains("exactly one namespace")
        );
        assert_eq!(one(workload.clone(), 1), Ok(()));
        assert_eq!(describe(&workload), "pods of deployment payments-api");
        let by_label = PodScope {
            selector: Some(sel(&[("app", "checkout")])),
            workload: None,
        };
        assert_eq!(describe(&by_label), "pods with app=checkout");
        let bad_key = PodScope {
            selector: Some(sel(&[("-app", "x")])),
            workload: None,
        };
        assert!(one(bad_key, 1).is_err());
        let both = PodScope {
            selector: Some(sel(&[("app", "x")])),
            workload: workload.workload,
        };
        assert!(one(both, 1).is_err());
    }

    /// The shipped ClusterRoles' rules (charts/k8s-janus/files/rbac) pass; every escalation path the check
    /// names is refused with its reason, whichever rule of the ClusterRole carries it.
    #[test]
    fn cluster_roles_that_could_escalate_are_refused() {
        let shipped = [
            rule(&[""], &["pods"], &["get", "list"]),
            rule(&[""], &["pods/exec", "pods/attach"], &["create", "get"]),
            rule(&[""], &["pods/ephemeralcontainers"], &["get", "patch", "update"]),
            rule(&[""], &["pods/log"], &["get"]),
            rule(&[""], &["events"], &["list"]),
            rule(&["events.k8s.io"], &["events"], &["*"]),
            PolicyRule {
                non_resource_urls: Some(vec!["*".into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            },
        ];
        assert_eq!(check_cluster_role_rules("exec", &shipped), Ok(()));
        for (bad, want) in [
            (rule(&["*"], &["pods"], &["get"]), "every API group"),
            (rule(&[""], &["*"], &["get"]), "wildcard resource"),
            (rule(&[""], &["*/exec"], &["create"]), "wildcard resource"),
            (rule(&["apps"], &["*/scale"], &["update"]), "wildcard resource"),
            (
                rule(&["rbac.authorization.k8s.io"], &["roles"], &["get"]),
                "rbac.authorization.k8s.io",
            ),
            (
                rule(&["", "rbac.authorization.k8s.io"], &["rolebindings"], &["create"]),
                "rbac.authorization.k8s.io",
            ),
            (
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                "serviceaccounts/token",
            ),
            (rule(&[""], &["serviceaccounts"], &["impersonate"]), "impersonation"),
            (rule(&[""], &["users", "groups"], &["*"]), "impersonation"),
            (
                rule(&["authentication.k8s.io"], &["userextras/scopes"], &["*"]),
                "impersonation",
            ),
        ] {
            let mut rules = shipped.to_vec();
            rules.insert(2, bad.clone());
            let e = check_cluster_role_rules("ops", &rules).unwrap_err();
            assert!(
                matches!(&e, ScopeError::UnsafeClusterRole { role, .. } if role == "ops"),
                "{e:?}"
            );
            let e = e.to_string();
            assert!(e.starts_with("role \"ops\" cannot be granted: its ClusterRole "), "{e}");
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        // `pods/*` is no wildcard in RBAC (only `*` and `*/sub` are), and `*` verbs on pods stay allowed.
        assert_eq!(
            check_cluster_role_rules("x", &[rule(&[""], &["pods/*", "pods"], &["*"])]),
            Ok(())
        );
    }

    /// A request's selector is held to the CRD's bounds (20 labels, 20 expressions, 50 values each), with
    /// a field error naming the count; the limits are the generated CRD's own. A workload's selector is not
    /// (it is never stored in the spec).
    #[test]
    fn selectors_are_bounded_as_the_crd_bounds_them() {
        let crd = serde_json::to_value(crate::crd()).expect("crd json");
        let selector = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["podScope"]
            ["properties"]["selector"]["properties"];
        assert_eq!(selector["matchLabels"]["maxProperties"], MAX_MATCH_LABELS);
        assert_eq!(selector["matchExpressions"]["maxItems"], MAX_MATCH_EXPRESSIONS);
        assert_eq!(
            selector["matchExpressions"]["items"]["properties"]["values"]["maxItems"],
            MAX_REQUIREMENT_VALUES
        );
        let labels = |n: usize| (0..n).map(|i| (format!("l{i}"), "v".to_string())).collect();
        let expressions = |n: usize, values: usize| -> Vec<PodSelectorRequirement> {
            (0..n)
                .map(|i| PodSelectorRequirement {
                    key: format!("e{i}"),
                    operator: "In".into(),
                    values: (0..values).map(|v| format!("v{v}")).collect(),
                })
                .collect()
        };
        let scope = |match_labels, match_expressions| PodScope {
            selector: Some(PodSelector {
                match_labels,
                match_expressions,
            }),
            workload: None,
        };
        assert_eq!(check_scope(&scope(labels(20), expressions(20, 50)), 1), Ok(()));
        for (s, want) in [
            (scope(labels(21), vec![]), "21 matchLabels; at most 20"),
            (scope(labels(1), expressions(21, 1)), "21 matchExpressions; at most 20"),
            (
                scope(BTreeMap::new(), expressions(2, 51)),
                "e0 In has 51 values; at most 50",
            ),
        ] {
            assert_eq!(check_scope(&s, 1), Err(ScopeError::InvalidScope(want.into())));
        }
        let wide = K8sLabelSelector {
            match_labels: Some(labels(25)),
            match_expressions: None,
        };
        assert!(from_workload_selector(WorkloadKind::Deployment, "big", &wide).is_ok());
    }

    /// A prefix entry must end in `/*` or `:*`: `busybox*` would match another registry's image
    /// (`busybox.evil.io/x`), and `busybox:*` must not match a registry host `busybox:5000`.
    #[test]
    fn debug_image_prefixes_end_at_a_path_or_tag_boundary() {
        let mut roles = builtin_roles();
        for bad in [
            "busybox*",
            "nicolaka/netshoot*",
            "registry.example.com/debug*",
            "busybox:1.*",
        ] {
            roles[2].debug_images = vec!["busybox:1.36".into(), bad.into()];
            let e = validate_roles(&roles).unwrap_err();
            assert!(e.starts_with("roles[2].debugImages[1]: "), "{e}");
            assert!(e.contains("must end in '/*'"), "{e}");
        }
        roles[2].debug_images = vec!["registry.example.com/debug/*".into(), "nicolaka/netshoot:*".into()];
        assert_eq!(validate_roles(&roles), Ok(()));
        let debug = &roles[2];
        for ok in [
            "registry.example.com/debug/tools:1",
            "registry.example.com/debug/team/tools@sha256:abc",
            "nicolaka/netshoot:v0.13",
            "nicolaka/netshoot:v0.13@sha256:abc",
        ] {
            assert!(image_allowed(debug, ok), "{ok} refused");
        }
        for bad in [
            "registry.example.com/debug/",
            "registry.example.com/debugger/x",
            "nicolaka/netshoot:",
            "nicolaka/netshootx:1",
            "nicolaka/netshoot:5000/evil",
        ] {
            assert!(!image_allowed(debug, bad), "{bad} allowed");
        }
        // Even unvalidated (a role built in code), a bare name prefix allows nothing.
        let mut loose = debug.clone();
        loose.debug_images = vec!["busybox*".into()];
        assert!(!image_allowed(&loose, "busybox.evil.io/x"));
        assert!(!image_allowed(&loose, "busybox:1.36"));
    }

    #[test]
    fn roles_may_not_name_kubernetes_powerful_cluster_roles() {
        for name in [
            "cluster-admin",
            "admin",
            "edit",
            "system:aggregate-to-edit",
            "system:node",
        ] {
            let mut roles = builtin_roles();
            roles[1].cluster_role = name.into();
            let e = validate_roles(&roles).unwrap_err();
            assert!(e.starts_with("roles[1].clusterRole: "), "{e}");
            assert!(e.contains(&format!("{name:?} is refused")), "{e}");
            assert!(e.contains("binds the controller"), "{e}");
        }
        // Similar names are the operator's own ClusterRoles.
        let mut roles = builtin_roles();
        roles[1].cluster_role = "edit-pods".into();
        roles[2].cluster_role = "team-admin".into();
        assert_eq!(validate_roles(&roles), Ok(()));
    }

    #[test]
    fn roles_are_looked_up_and_validated() {
        let roles = builtin_roles();
        assert_eq!(validate_roles(&roles), Ok(()));
        let mut spec = AccessRequestSpec::new("a@x.io", "c", vec!["ns".into()], "r", 600);
        assert_eq!(role_of(&roles, &spec).expect("exec").name, "exec");
        spec.role = Some("admin".into());
        assert!(
            role_of(&roles, &spec)
                .unwrap_err()
                .to_string()
                .contains("exec, logs, debug")
        );
        let mut twice = roles.clone();
        twice.push(roles[0].clone());
        assert!(validate_roles(&twice).unwrap_err().contains("twice"));
        let mut images = roles.clone();
        images[0].debug_images = vec!["busybox".into()];
        assert!(validate_roles(&images).unwrap_err().contains("terminal: debug"));
        let mut star = roles.clone();
        star[2].debug_images = vec!["*".into()];
        assert!(validate_roles(&star).is_err());
        star[2].debug_images = vec!["registry.example.com/debug/*".into(), "busybox:1.36".into()];
        assert_eq!(validate_roles(&star), Ok(()));
        assert!(image_allowed(&star[2], "registry.example.com/debug/tools:1"));
        assert!(image_allowed(&star[2], "busybox:1.36"));
        assert!(!image_allowed(&star[2], "busybox:latest"));
        assert!(!image_allowed(&star[0], "busybox:1.36"));
        assert!(validate_roles(&[]).is_err());
    }
}
