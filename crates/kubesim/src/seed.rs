//! The objects every cluster starts with, seed files, and state persistence across restarts.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::Cluster;
use crate::api::create_internal;
use crate::resources::GroupResource;

/// Creates the namespaces, node, Service and default ClusterRoles of a fresh cluster.
pub fn bootstrap(cluster: &Arc<Cluster>) -> anyhow::Result<()> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        create_internal(
            cluster,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
    }
    create_internal(
        cluster,
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "kubesim-node", "labels": {"kubernetes.io/hostname": "kubesim-node", "kubernetes.io/os": "linux"}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}], "nodeInfo": {"kubeletVersion": cluster.config.version}}}),
    )?;
    create_internal(
        cluster,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
    )?;
    // The API server's bootstrap RBAC policy (cluster-admin, admin/edit/view, discovery…), stored so that
    // `kubectl get clusterroles` shows it as on a real cluster.
    for (_, obj) in crate::auth::bootstrap_policy() {
        create_internal(cluster, obj)?;
    }
    Ok(())
}

/// Parses a YAML stream (documents, or `kind: List` documents) into objects.
pub fn parse_objects(yaml: &str) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(yaml) {
        let v = Value::deserialize(doc)?;
        match v {
            Value::Null => {}
            Value::Array(items) => out.extend(items),
            v if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) && v["items"].is_array() => {
                out.extend(v["items"].as_array().cloned().unwrap_or_default())
            }
            v => out.push(v),
        }
    }
    for (i, o) in out.iter().enumerate() {
        if !o.is_object() || o["kind"].as_str().is_none() || o["apiVersion"].as_str().is_none() {
            anyhow::bail!("seed object #{} has no apiVersion/kind", i + 1);
        }
    }
    Ok(out)
}

/// Creates every object of a seed document; objects that already exist are left alone.
/// CRDs are created first so that seeds may contain their custom objects.
pub fn load_seed_str(cluster: &Arc<Cluster>, yaml: &str) -> anyhow::Result<()> {
    let mut objs = parse_objects(yaml)?;
    objs.sort_by_key(|o| match o["kind"].as_str() {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        Some("ServiceAccount") => 2,
        _ => 3,
    });
    for o in objs {
        let desc = format!(
            "{} {}",
            o["kind"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap_or("")
        );
        match create_internal(cluster, o) {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => anyhow::bail!("seed: cannot create {desc}: {}", e.message),
        }
    }
    Ok(())
}

/// Loads a seed file.
pub fn load_seed_file(cluster: &Arc<Cluster>, path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read seed {}: {e}", path.display()))?;
    load_seed_str(cluster, &text)
}

/// Saves every object to a state file.
pub fn save_state(cluster: &Cluster, path: &Path) -> anyhow::Result<()> {
    let mut snap = cluster.store.snapshot();
    // The signing key travels with the state so that issued tokens stay valid after a restart.
    snap["signingKey"] = json!(cluster.tokens.private_key_pem()?);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&snap)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads a state file written by [`save_state`].
pub fn read_state(path: &Path) -> anyhow::Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read state {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("state file {} is not valid: {e}", path.display()))
}

/// Replaces the store with a saved state and re-serves its CRDs.
pub fn restore_state(cluster: &Arc<Cluster>, snap: &Value) -> anyhow::Result<()> {
    cluster.store.restore(snap).map_err(|e| anyhow::anyhow!("state: {e}"))?;
    let (crds, _) = cluster.store.list(
        &GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions"),
        None,
    );
    for c in crds {
        crate::crd::register(cluster, &c).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    let (pods, _) = cluster.store.list(&GroupResource::new("", "pods"), None);
    for p in pods {
        let (ns, name) = crate::store::ns_name(&p);
        let _ = std::fs::create_dir_all(crate::kubelet::pod_dir(cluster, &ns, &name));
    }
    Ok(())
}
