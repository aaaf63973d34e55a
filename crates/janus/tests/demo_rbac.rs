#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The chart RBAC `janus demo` loads without helm (`crates/janus/src/demo/chart-rbac.yaml`) is what the
//! chart renders now: ServiceAccounts, the controller's and web's roles and bindings (including the
//! controller's binding to every role's ClusterRole) and the shipped access ClusterRoles. Regenerate it
//! with scripts/update-demo-rbac.sh.

use serde::Deserialize as _;
use serde_json::Value;

const EMBEDDED: &str = include_str!("../src/demo/chart-rbac.yaml");

fn docs(yaml: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn the_demo_rbac_is_the_charts() {
    let rendered =
        janus_testkit::render_chart(&[], &janus_testkit::CHART_RBAC_TEMPLATES).unwrap_or_else(|e| panic!("{e}"));
    let (ours, chart) = (docs(EMBEDDED), docs(&rendered));
    let names = |d: &[Value]| -> Vec<String> {
        d.iter()
            .map(|v| {
                format!(
                    "{}/{}",
                    v["kind"].as_str().unwrap(),
                    v["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        names(&ours),
        names(&chart),
        "crates/janus/src/demo/chart-rbac.yaml is stale: run scripts/update-demo-rbac.sh"
    );
    assert_eq!(
        ours, chart,
        "crates/janus/src/demo/chart-rbac.yaml is stale: run scripts/update-demo-rbac.sh"
    );
    // what issue 16 added is in it
    for want in [
        "ClusterRole/janus-pod-logs",
        "ClusterRole/janus-pod-debug",
        "ClusterRoleBinding/k8s-janus-controller-role-debug",
    ] {
        assert!(names(&ours).iter().any(|n| n == want), "{want}");
    }
}
