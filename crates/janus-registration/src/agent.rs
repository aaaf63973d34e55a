//! The remote agent's objects, for clusters where helm is not available (`janus agent-manifests`).
//!
//! They are the objects `helm template charts/k8s-janus --set remote.enabled=true` renders (a test
//! compares both with the real helm binary): the agent ServiceAccount, its ClusterRole limited to what
//! the central controller does on a remote cluster and the binding, and `janus-pod-exec`.

use serde_json::{Value, json};

/// The agent ClusterRole's rules, the one source the chart's agent template also includes.
const AGENT_RULES: &str = include_str!("../../../charts/k8s-janus/files/rbac/agent-rules.yaml");
/// The rules of `janus-pod-exec`, the one source the chart's template also includes.
const POD_EXEC_RULES: &str = include_str!("../../../charts/k8s-janus/files/rbac/pod-exec-rules.yaml");

/// Parses one of the embedded rule lists. They are part of the binary and a unit test parses both, so
/// the empty fallback is never taken; were it taken, the role would grant nothing rather than too much.
fn rules(yaml: &str) -> Value {
    yaml_serde::from_str(yaml).unwrap_or_else(|_| json!([]))
}

/// Default name of the agent ServiceAccount (the chart's `remote.serviceAccountName`).
pub const AGENT_SERVICE_ACCOUNT: &str = "k8s-janus-agent";

fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "k8s-janus",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": janus_api::MANAGED_BY,
        "app.kubernetes.io/part-of": "k8s-janus",
    })
}

/// The agent's objects as Kubernetes JSON values, in apply order.
pub fn agent_objects(namespace: &str, service_account: &str) -> Vec<Value> {
    let pod_exec = janus_api::POD_EXEC_CLUSTER_ROLE;
    vec![
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
            "rules": rules(AGENT_RULES),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": pod_exec, "labels": labels("pod-exec")},
            "rules": rules(POD_EXEC_RULES),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": service_account, "labels": labels("agent")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": service_account},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
        }),
    ]
}

/// YAML (a `---`-separated stream) of the agent's objects in `namespace`, for `kubectl apply -f -`.
pub fn agent_manifests(namespace: &str) -> String {
    let mut out = String::from("# k8s-janus remote agent (same objects as the chart with remote.enabled=true)\n");
    for obj in agent_objects(namespace, AGENT_SERVICE_ACCOUNT) {
        out.push_str("---\n");
        // A JSON value always serialises to YAML.
        out.push_str(&yaml_serde::to_string(&obj).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_and_name_the_namespace() {
        let yaml = agent_manifests("janus-agent");
        let docs: Vec<Value> = yaml_serde::Deserializer::from_str(&yaml)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect();
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[0]["metadata"]["namespace"], "janus-agent");
        assert_eq!(docs[3]["subjects"][0]["namespace"], "janus-agent");
        assert!(!yaml.contains('*'), "no wildcards");
    }

    #[test]
    fn the_embedded_rules_parse_and_bind_only_pod_exec() {
        for (name, yaml) in [("agent", AGENT_RULES), ("pod-exec", POD_EXEC_RULES)] {
            let parsed: Value = yaml_serde::from_str(yaml).unwrap();
            let list = parsed.as_array().unwrap();
            assert!(!list.is_empty(), "{name}");
            assert_eq!(rules(yaml), parsed, "{name}: no fallback taken");
        }
        let agent = rules(AGENT_RULES);
        let bind: Vec<&Value> = agent
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["verbs"].as_array().unwrap().iter().any(|v| v == "bind"))
            .collect();
        assert_eq!(bind.len(), 1);
        assert_eq!(bind[0]["resourceNames"], json!([janus_api::POD_EXEC_CLUSTER_ROLE]));
    }

    use serde::Deserialize as _;
}
