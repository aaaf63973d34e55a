//! The remote agent's objects, for clusters where helm is not available (`janus agent-manifests`).
//!
//! They are the objects `helm template charts/k8s-janus --set remote.enabled=true` renders with the
//! same `janus.roles` (a test compares both with the real helm binary): the agent ServiceAccount, its
//! ClusterRole limited to what the central controller does on a remote cluster (with `bind` on exactly
//! the roles' ClusterRoles), its binding, the shipped ClusterRoles the roles name (`janus-pod-exec`,
//! `janus-pod-logs`, `janus-pod-debug`) and one ClusterRoleBinding of the agent to each role's
//! ClusterRole (so that RBAC lets it write pod-scoped Roles without `escalate`).

use janus_api::roles::{POD_DEBUG_CLUSTER_ROLE, POD_LOGS_CLUSTER_ROLE, RoleConfig, TerminalMode};
use serde_json::{Value, json};

/// The agent ClusterRole's rules, the one source the chart's agent template also includes.
const AGENT_RULES: &str = include_str!("../../../charts/k8s-janus/files/rbac/agent-rules.yaml");
/// The rules of `janus-pod-exec`, the one source the chart's template also includes.
const POD_EXEC_RULES: &str = include_str!("../../../charts/k8s-janus/files/rbac/pod-exec-rules.yaml");
/// The rules of `janus-pod-logs`, the one source the chart's template also includes.
const POD_LOGS_RULES: &str = include_str!("../../../charts/k8s-janus/files/rbac/pod-logs-rules.yaml");
/// The rules of `janus-pod-debug`, the one source the chart's template also includes.
const POD_DEBUG_RULES: &str = include_str!("../../../charts/k8s-janus/files/rbac/pod-debug-rules.yaml");

/// The ClusterRoles the chart ships: (name, component label, rules). The chart's
/// `janus.shippedClusterRoles` lists the same.
const SHIPPED: [(&str, &str, &str); 3] = [
    (janus_api::POD_EXEC_CLUSTER_ROLE, "pod-exec", POD_EXEC_RULES),
    (POD_LOGS_CLUSTER_ROLE, "pod-logs", POD_LOGS_RULES),
    (POD_DEBUG_CLUSTER_ROLE, "pod-debug", POD_DEBUG_RULES),
];

/// Parses one of the embedded rule lists. They are part of the binary and a unit test parses them all,
/// so the empty fallback is never taken; were it taken, the role would grant nothing rather than too
/// much.
fn rules(yaml: &str) -> Value {
    yaml_serde::from_str(yaml).unwrap_or_else(|_| json!([]))
}

/// Default name of the agent ServiceAccount (the chart's `remote.serviceAccountName`).
pub const AGENT_SERVICE_ACCOUNT: &str = "k8s-janus-agent";

/// Whether the chart (and `janus agent-manifests`) ships a ClusterRole of this name.
pub fn is_shipped(cluster_role: &str) -> bool {
    SHIPPED.iter().any(|(name, _, _)| *name == cluster_role)
}

/// Every role's ClusterRole, once each, in the order of `roles` (the `bind` rule's resourceNames).
pub fn role_cluster_roles(roles: &[RoleConfig]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in roles {
        if !out.contains(&r.cluster_role) {
            out.push(r.cluster_role.clone());
        }
    }
    out
}

/// Why `--roles` or a configuration file cannot give the roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolesError {
    /// A `--roles` entry names no shipped role and gives no ClusterRole.
    #[error("--roles: {0:?} is not a shipped role (exec, logs, debug); write NAME=CLUSTERROLE for your own")]
    Unknown(String),
    /// The configuration file is not YAML with a `roles:` list of the configuration's form.
    #[error("{0}")]
    Config(String),
    /// The roles break a rule of the `roles:` configuration.
    #[error("{0}")]
    Invalid(String),
}

/// The roles of a `--roles` flag: comma-separated entries, each a shipped role's name (`exec`,
/// `logs`, `debug`) or `NAME=CLUSTERROLE` for an operator's own role.
pub fn roles_from_flag(flag: &str) -> Result<Vec<RoleConfig>, RolesError> {
    let builtin = janus_api::roles::builtin_roles();
    let mut roles = Vec::new();
    for entry in flag.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let role = match entry.split_once('=') {
            Some((name, cluster_role)) => RoleConfig {
                name: name.trim().to_owned(),
                display_name: String::new(),
                description: String::new(),
                cluster_role: cluster_role.trim().to_owned(),
                // Manifests need only the ClusterRole; the terminal mode is the central configuration's.
                terminal: TerminalMode::Shell,
                debug_images: vec![],
            },
            None => builtin
                .iter()
                .find(|r| r.name == entry)
                .cloned()
                .ok_or_else(|| RolesError::Unknown(entry.to_owned()))?,
        };
        roles.push(role);
    }
    janus_api::rules::scope::validate_roles(&roles).map_err(RolesError::Invalid)?;
    Ok(roles)
}

/// The roles of a janus configuration file (the chart's `config.yaml`): its `roles:` key only (other
/// keys are not looked at), or the shipped roles when it has none.
pub fn roles_from_config(yaml: &str) -> Result<Vec<RoleConfig>, RolesError> {
    #[derive(serde::Deserialize)]
    struct OnlyRoles {
        #[serde(default = "janus_api::roles::builtin_roles")]
        roles: Vec<RoleConfig>,
    }
    let parsed: OnlyRoles =
        yaml_serde::from_str(yaml).map_err(|e| RolesError::Config(format!("configuration file: roles: {e}")))?;
    janus_api::rules::scope::validate_roles(&parsed.roles).map_err(RolesError::Invalid)?;
    Ok(parsed.roles)
}

fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "k8s-janus",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": janus_api::MANAGED_BY,
        "app.kubernetes.io/part-of": "k8s-janus",
    })
}

/// The agent's objects for `roles` as Kubernetes JSON values, in apply order.
pub fn agent_objects(namespace: &str, service_account: &str, roles: &[RoleConfig]) -> Vec<Value> {
    let cluster_roles = role_cluster_roles(roles);
    let mut agent_rules = rules(AGENT_RULES);
    if let Some(list) = agent_rules.as_array_mut() {
        list.push(json!({
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["get", "bind"],
            "resourceNames": cluster_roles,
        }));
    }
    let subject = json!([{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]);
    let mut out = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": service_account, "namespace": namespace, "labels": labels("agent")},
            // No pod runs as this ServiceAccount; its tokens are issued for the central controller.
            "automountServiceAccountToken": false,
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": service_account, "labels": labels("agent")},
            "rules": agent_rules,
        }),
    ];
    for name in &cluster_roles {
        if let Some((_, component, yaml)) = SHIPPED.iter().find(|(n, _, _)| n == name) {
            out.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name, "labels": labels(component)},
                "rules": rules(yaml),
            }));
        }
    }
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": service_account, "labels": labels("agent")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": service_account},
        "subjects": subject,
    }));
    for r in roles {
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{service_account}-role-{}", r.name), "labels": labels("agent")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": r.cluster_role},
            "subjects": subject,
        }));
    }
    out
}

/// YAML (a `---`-separated stream) of the agent's objects in `namespace` for the shipped roles, for
/// `kubectl apply -f -`.
pub fn agent_manifests(namespace: &str) -> String {
    agent_manifests_for(namespace, &janus_api::roles::builtin_roles())
}

/// YAML of the agent's objects in `namespace` for `roles` (those of the central configuration).
pub fn agent_manifests_for(namespace: &str, roles: &[RoleConfig]) -> String {
    let mut out = String::from("# k8s-janus remote agent (same objects as the chart with remote.enabled=true)\n");
    for obj in agent_objects(namespace, AGENT_SERVICE_ACCOUNT, roles) {
        out.push_str("---\n");
        // A JSON value always serialises to YAML.
        out.push_str(&yaml_serde::to_string(&obj).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(yaml: &str) -> Vec<Value> {
        yaml_serde::Deserializer::from_str(yaml)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect()
    }

    #[test]
    fn manifests_parse_and_name_the_namespace() {
        let yaml = agent_manifests("janus-agent");
        let docs = docs(&yaml);
        // ServiceAccount, agent ClusterRole, 3 shipped ClusterRoles, agent binding, 3 role bindings
        assert_eq!(docs.len(), 9);
        assert_eq!(docs[0]["metadata"]["namespace"], "janus-agent");
        for d in docs.iter().filter(|d| d["kind"] == "ClusterRoleBinding") {
            assert_eq!(d["subjects"][0]["namespace"], "janus-agent");
        }
        assert!(!yaml.contains('*'), "no wildcards");
    }

    #[test]
    fn the_embedded_rules_parse_and_the_agent_binds_exactly_the_roles_cluster_roles() {
        for (name, yaml) in [
            ("agent", AGENT_RULES),
            ("pod-exec", POD_EXEC_RULES),
            ("pod-logs", POD_LOGS_RULES),
            ("pod-debug", POD_DEBUG_RULES),
        ] {
            let parsed: Value = yaml_serde::from_str(yaml).unwrap();
            let list = parsed.as_array().unwrap();
            assert!(!list.is_empty(), "{name}");
            assert_eq!(rules(yaml), parsed, "{name}: no fallback taken");
            assert!(
                !list
                    .iter()
                    .any(|r| r["verbs"].as_array().unwrap().iter().any(|v| v == "bind")),
                "{name}: the files never bind; the one bind rule comes from the roles"
            );
        }
        let roles = roles_from_flag("exec,audit=acme-audit,debug").unwrap();
        let objects = agent_objects("ns", "agent", &roles);
        let agent = objects
            .iter()
            .find(|o| o["metadata"]["name"] == "agent" && o["kind"] == "ClusterRole");
        let bind: Vec<&Value> = agent.unwrap()["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["verbs"].as_array().unwrap().iter().any(|v| v == "bind"))
            .collect();
        assert_eq!(bind.len(), 1);
        assert_eq!(
            bind[0]["resourceNames"],
            json!(["janus-pod-exec", "acme-audit", "janus-pod-debug"])
        );
        // the shipped ClusterRoles the roles name, never the operator's own, nor unnamed ones
        let cluster_roles: Vec<&str> = objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRole")
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(cluster_roles, ["agent", "janus-pod-exec", "janus-pod-debug"]);
        let bindings: Vec<(&str, &str)> = objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRoleBinding")
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap(),
                    o["roleRef"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            bindings,
            [
                ("agent", "agent"),
                ("agent-role-exec", "janus-pod-exec"),
                ("agent-role-audit", "acme-audit"),
                ("agent-role-debug", "janus-pod-debug"),
            ]
        );
    }

    #[test]
    fn roles_from_flags_and_configuration() {
        assert_eq!(roles_from_flag("logs").unwrap()[0].cluster_role, POD_LOGS_CLUSTER_ROLE);
        assert_eq!(
            roles_from_flag("shell").unwrap_err().to_string(),
            "--roles: \"shell\" is not a shipped role (exec, logs, debug); write NAME=CLUSTERROLE for your own"
        );
        assert!(
            matches!(roles_from_flag(""), Err(RolesError::Invalid(_))),
            "no role at all"
        );
        assert!(matches!(roles_from_flag("exec,exec"), Err(RolesError::Invalid(_))));
        assert!(matches!(roles_from_flag("Bad=x"), Err(RolesError::Invalid(_))));
        // the chart's config.yaml: only `roles:` is read; absent means the shipped three
        let cfg = "namespace: k8s-janus\nroles: [{\"name\":\"exec\",\"clusterRole\":\"janus-pod-exec\",\"terminal\":\"shell\"},{\"clusterRole\":\"acme-audit\",\"debugImages\":[],\"description\":\"d\",\"displayName\":\"Audit\",\"name\":\"audit\",\"terminal\":\"logs\"}]\nweb: {authMode: local}\n";
        let roles = roles_from_config(cfg).unwrap();
        assert_eq!(role_cluster_roles(&roles), ["janus-pod-exec", "acme-audit"]);
        assert_eq!(roles_from_config("namespace: x\n").unwrap().len(), 3);
        assert!(matches!(roles_from_config("roles: 3\n"), Err(RolesError::Config(_))));
        assert!(matches!(roles_from_config("roles: []\n"), Err(RolesError::Invalid(_))));
        assert!(is_shipped("janus-pod-debug") && !is_shipped("acme-audit"));
    }

    use serde::Deserialize as _;
}
