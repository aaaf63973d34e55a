#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `janus agent-manifests` must create exactly what the chart creates in remote mode: both are
//! rendered (the chart with the real helm binary) and compared object by object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn helm() -> Option<PathBuf> {
    let local = repo_root().join(".tools/bin/helm");
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("helm")).find(|c| c.exists()))
}

/// Labels only helm sets (release bookkeeping); everything else must be identical.
const HELM_ONLY_LABELS: [&str; 4] = [
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "helm.sh/chart",
];

fn normalise(yaml: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for doc in yaml_serde::Deserializer::from_str(yaml) {
        let mut v = Value::deserialize(doc).expect("YAML");
        if v.is_null() {
            continue;
        }
        if let Some(labels) = v["metadata"]["labels"].as_object_mut() {
            for l in HELM_ONLY_LABELS {
                labels.remove(l);
            }
        }
        let key = format!(
            "{}/{}/{}",
            v["kind"].as_str().unwrap_or_default(),
            v["metadata"]["namespace"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        );
        assert!(out.insert(key.clone(), v).is_none(), "{key} twice");
    }
    out
}

#[test]
fn agent_manifests_match_the_chart_in_remote_mode() {
    let Some(helm) = helm() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "helm is required in CI: run scripts/install-test-tools.sh"
        );
        eprintln!("SKIPPED: helm not found (run scripts/install-test-tools.sh)");
        return;
    };
    // The shipped roles (the default), and an operator's own role beside two shipped ones: only the
    // shipped ClusterRoles are installed, every role's is bound and bindable.
    let custom = janus_registration::agent::roles_from_flag("logs,audit=acme-audit,debug").unwrap();
    let custom_json = serde_json::to_string(&custom).unwrap();
    for (ns, roles) in [
        ("k8s-janus", None),
        ("janus-agent", None),
        ("janus-agent", Some(&custom)),
    ] {
        let mut cmd = std::process::Command::new(&helm);
        cmd.args(["template", "k8s-janus"])
            .arg(repo_root().join("charts/k8s-janus"))
            .args(["--namespace", ns, "--set", "remote.enabled=true"]);
        if roles.is_some() {
            cmd.arg("--set-json").arg(format!("janus.roles={custom_json}"));
        }
        let out = cmd.output().expect("helm runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let chart = normalise(&String::from_utf8_lossy(&out.stdout));
        let ours = normalise(&match roles {
            None => janus_registration::agent::agent_manifests(ns),
            Some(r) => janus_registration::agent::agent_manifests_for(ns, r),
        });
        if roles.is_some() {
            assert!(chart.contains_key("ClusterRoleBinding//k8s-janus-agent-role-audit"));
            assert!(
                !chart.contains_key("ClusterRole//acme-audit"),
                "not the chart's to install"
            );
            assert!(!chart.contains_key("ClusterRole//janus-pod-exec"), "no role names it");
        }
        assert_eq!(
            chart.keys().collect::<Vec<_>>(),
            ours.keys().collect::<Vec<_>>(),
            "the same objects"
        );
        for (k, v) in &chart {
            assert_eq!(&ours[k], v, "{k} differs");
        }
    }
}
