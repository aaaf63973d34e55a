//! Writing kubeconfig files for a kubesim instance.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use serde_json::json;

/// A kubeconfig with one cluster, user and context, all named `name`, authenticating with `token`.
pub fn render(name: &str, server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    });
    yaml_serde::to_string(&doc).unwrap_or_default()
}

/// Writes a file readable only by its owner (it holds a bearer token).
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

/// Merges several single-context kubeconfigs into one with all contexts; the first is current.
pub fn merge(configs: &[String]) -> anyhow::Result<String> {
    let mut clusters = Vec::new();
    let mut users = Vec::new();
    let mut contexts = Vec::new();
    let mut current = None;
    for c in configs {
        let v: serde_json::Value = yaml_serde::from_str(c)?;
        for (k, out) in [
            ("clusters", &mut clusters),
            ("users", &mut users),
            ("contexts", &mut contexts),
        ] {
            if let Some(items) = v[k].as_array() {
                out.extend(items.iter().cloned());
            }
        }
        if current.is_none() {
            current = v["current-context"].as_str().map(str::to_string);
        }
    }
    let doc = json!({
        "apiVersion": "v1", "kind": "Config", "clusters": clusters, "users": users,
        "contexts": contexts, "current-context": current.unwrap_or_default(), "preferences": {},
    });
    Ok(yaml_serde::to_string(&doc)?)
}
