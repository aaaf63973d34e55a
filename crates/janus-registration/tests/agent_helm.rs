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
    for ns in ["k8s-janus", "janus-agent"] {
        let out = std::process::Command::new(&helm)
            .args(["template", "k8s-janus"])
            .arg(repo_root().join("charts/k8s-janus"))
            .args(["--namespace", ns, "--set", "remote.enabled=true"])
            .output()
            .expect("helm runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let chart = normalise(&String::from_utf8_lossy(&out.stdout));
        let ours = normalise(&janus_registration::agent::agent_manifests(ns));
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
