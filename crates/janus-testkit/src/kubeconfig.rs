//! What the kit takes from a kubeconfig: the current context's cluster (server, CA) and user, with
//! every file it references read in, so tests can hand the cluster on (to the web's options, to a
//! ServiceAccount's kubeconfig) without depending on paths.
//!
//! Token, token-file, client-certificate and basic-auth users work as they are. Exec-plugin and
//! auth-provider users work for the admin client (kube-rs runs the plugin); the kubeconfig the kit
//! hands on keeps that stanza, so the plugin must be installed wherever it is used.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::TestkitError;

/// How to reach a cluster: its server and CA, and the admin kubeconfig reduced to one context.
#[derive(Clone)]
pub struct ClusterAccess {
    /// The API server URL.
    pub server: String,
    /// PEM of the cluster's CA (empty when the kubeconfig names none).
    pub ca_pem: String,
    /// The `cluster` stanza with its CA inlined (reused for token kubeconfigs).
    cluster: Value,
    /// The admin kubeconfig, one context, files inlined.
    pub(crate) admin_kubeconfig_yaml: String,
    admin: kube::config::Kubeconfig,
}

// Debug shows where, never the credentials.
impl std::fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn err(msg: impl Into<String>) -> TestkitError {
    TestkitError::Kubeconfig(msg.into())
}

fn named<'a>(list: &'a Value, name: &str, inner: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .map(|e| &e[inner])
}

/// Replaces `file_key` (a path) with `data_key` holding the file's contents, base64-encoded when
/// `encode` (the `*-data` fields) or as text (`token-file` → `token`).
fn inline_file(
    obj: &mut Map<String, Value>,
    file_key: &str,
    data_key: &str,
    encode: bool,
    base: Option<&Path>,
) -> Result<(), TestkitError> {
    let Some(path) = obj.remove(file_key) else {
        return Ok(());
    };
    let path = path.as_str().ok_or_else(|| err(format!("{file_key} is not a path")))?;
    if obj.contains_key(data_key) {
        // kubectl prefers the inline data too.
        return Ok(());
    }
    // As kubectl: a relative path is relative to the kubeconfig file.
    let path = match base {
        Some(dir) if Path::new(path).is_relative() => dir.join(path),
        _ => PathBuf::from(path),
    };
    let path = path.display().to_string();
    let path = path.as_str();
    let bytes = std::fs::read(path).map_err(|e| err(format!("{file_key} {path}: {e}")))?;
    let value = if encode {
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    } else {
        String::from_utf8(bytes)
            .map_err(|_| err(format!("{file_key} {path} is not text")))?
            .trim()
            .to_string()
    };
    obj.insert(data_key.into(), Value::String(value));
    Ok(())
}

fn one_context(name: &str, cluster: &Value, user: &Value, namespace: Option<&Value>) -> Value {
    let mut context = json!({"cluster": name, "user": name});
    if let Some(ns) = namespace.filter(|n| n.is_string()) {
        context["namespace"] = ns.clone();
    }
    json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    })
}

impl ClusterAccess {
    /// From kubeconfig YAML (kubesim's admin kubeconfig, say).
    pub fn from_kubeconfig_yaml(yaml: &str) -> Result<Self, TestkitError> {
        let kc = kube::config::Kubeconfig::from_yaml(yaml).map_err(|e| err(e.to_string()))?;
        Self::from_kubeconfig(kc, None)
    }

    /// From a parsed kubeconfig: its current context. Relative file paths are taken relative to
    /// `base` (the kubeconfig's directory), else to the working directory.
    pub fn from_kubeconfig(kc: kube::config::Kubeconfig, base: Option<&Path>) -> Result<Self, TestkitError> {
        let v = serde_json::to_value(&kc).map_err(|e| err(e.to_string()))?;
        let current = v["current-context"]
            .as_str()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| err("no current-context"))?;
        let context = named(&v["contexts"], current, "context")
            .filter(|c| c.is_object())
            .ok_or_else(|| err(format!("context {current:?} not found")))?;
        let cluster_name = context["cluster"]
            .as_str()
            .ok_or_else(|| err(format!("context {current:?} names no cluster")))?;
        let mut cluster = named(&v["clusters"], cluster_name, "cluster")
            .filter(|c| c.is_object())
            .cloned()
            .ok_or_else(|| err(format!("cluster {cluster_name:?} not found")))?;
        let mut user = match context["user"].as_str() {
            Some(u) => named(&v["users"], u, "user")
                .filter(|c| c.is_object())
                .cloned()
                .ok_or_else(|| err(format!("user {u:?} not found")))?,
            None => json!({}),
        };
        let cluster_obj = cluster.as_object_mut().ok_or_else(|| err("cluster is not a mapping"))?;
        inline_file(
            cluster_obj,
            "certificate-authority",
            "certificate-authority-data",
            true,
            base,
        )?;
        let server = cluster_obj
            .get("server")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err(format!("cluster {cluster_name:?} has no server")))?
            .to_string();
        let ca_pem = match cluster_obj.get("certificate-authority-data").and_then(Value::as_str) {
            Some(data) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| err(format!("certificate-authority-data: {e}")))?;
                String::from_utf8(bytes).map_err(|_| err("certificate-authority-data is not PEM"))?
            }
            None => String::new(),
        };
        let user_obj = user.as_object_mut().ok_or_else(|| err("user is not a mapping"))?;
        inline_file(user_obj, "token-file", "token", false, base)?;
        inline_file(user_obj, "client-certificate", "client-certificate-data", true, base)?;
        inline_file(user_obj, "client-key", "client-key-data", true, base)?;
        let minimal = one_context(current, &cluster, &user, context.get("namespace"));
        let admin_kubeconfig_yaml = yaml_serde::to_string(&minimal).map_err(|e| err(e.to_string()))?;
        let admin = serde_json::from_value(minimal).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            server,
            ca_pem,
            cluster,
            admin_kubeconfig_yaml,
            admin,
        })
    }

    /// A client with the kubeconfig's own user.
    pub async fn admin_client(&self) -> Result<kube::Client, TestkitError> {
        client(self.admin.clone()).await
    }

    /// A kubeconfig (YAML) for the same cluster with a bearer token.
    pub fn kubeconfig_for_token(&self, token: &str) -> Result<String, TestkitError> {
        yaml_serde::to_string(&one_context(
            "janus-testkit",
            &self.cluster,
            &json!({"token": token}),
            None,
        ))
        .map_err(|e| err(e.to_string()))
    }

    /// A client for the same cluster with a bearer token.
    pub async fn client_for_token(&self, token: &str) -> Result<kube::Client, TestkitError> {
        let kc = serde_json::from_value(one_context(
            "janus-testkit",
            &self.cluster,
            &json!({"token": token}),
            None,
        ))
        .map_err(|e| err(e.to_string()))?;
        client(kc).await
    }
}

async fn client(kc: kube::config::Kubeconfig) -> Result<kube::Client, TestkitError> {
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn referenced_files_are_inlined_and_only_the_current_context_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(
            dir.path(),
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
        );
        let cert = write(dir.path(), "cert.pem", "CERT");
        let key = write(dir.path(), "key.pem", "KEY");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kind-a\n\
             clusters:\n- name: a\n  cluster: {{server: 'https://127.0.0.1:6443', certificate-authority: {ca}}}\n\
             - name: b\n  cluster: {{server: 'https://other:6443'}}\n\
             users:\n- name: a\n  user: {{client-certificate: {cert}, client-key: {key}}}\n\
             - name: b\n  user: {{token: other-secret}}\n\
             contexts:\n- name: kind-a\n  context: {{cluster: a, user: a, namespace: team-a}}\n\
             - name: b\n  context: {{cluster: b, user: b}}\n"
        );
        let access = ClusterAccess::from_kubeconfig_yaml(&yaml).unwrap();
        assert_eq!(access.server, "https://127.0.0.1:6443");
        assert!(access.ca_pem.contains("BEGIN CERTIFICATE"));
        let out: Value = yaml_serde::from_str(&access.admin_kubeconfig_yaml).unwrap();
        assert_eq!(out["clusters"].as_array().unwrap().len(), 1);
        assert_eq!(out["current-context"], "kind-a");
        assert_eq!(out["contexts"][0]["context"]["namespace"], "team-a");
        let cluster = &out["clusters"][0]["cluster"];
        assert!(cluster.get("certificate-authority").is_none());
        assert_eq!(
            cluster["certificate-authority-data"].as_str().unwrap(),
            b64("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n")
        );
        let user = &out["users"][0]["user"];
        assert_eq!(user["client-certificate-data"].as_str().unwrap(), b64("CERT"));
        assert_eq!(user["client-key-data"].as_str().unwrap(), b64("KEY"));
        assert!(
            !access.admin_kubeconfig_yaml.contains("other-secret"),
            "other users dropped"
        );
        // A token kubeconfig reuses the cluster, not the admin's credentials.
        let tok = access.kubeconfig_for_token("sa-token").unwrap();
        assert!(tok.contains("sa-token") && tok.contains("certificate-authority-data"));
        assert!(!tok.contains(&b64("KEY")));
        assert!(!format!("{access:?}").contains(&b64("KEY")), "Debug hides credentials");
    }

    #[test]
    fn a_token_file_becomes_a_token_and_exec_users_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let token = write(dir.path(), "token", "abc.def\n");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: c, cluster: {{server: 'https://k:443', certificate-authority-data: {}}}}}]\n\
             users: [{{name: c, user: {{token-file: {token}}}}}, {{name: e, user: {{exec: {{apiVersion: client.authentication.k8s.io/v1, command: aws, args: [eks, get-token]}}}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: c}}}}, {{name: e, context: {{cluster: c, user: e}}}}]\n",
            b64("PEM")
        );
        let access = ClusterAccess::from_kubeconfig_yaml(&yaml).unwrap();
        let out: Value = yaml_serde::from_str(&access.admin_kubeconfig_yaml).unwrap();
        assert_eq!(out["users"][0]["user"]["token"], "abc.def");
        assert!(out["users"][0]["user"].get("token-file").is_none());
        assert_eq!(access.ca_pem, "PEM");
        let exec =
            ClusterAccess::from_kubeconfig_yaml(&yaml.replace("current-context: c", "current-context: e")).unwrap();
        let out: Value = yaml_serde::from_str(&exec.admin_kubeconfig_yaml).unwrap();
        assert_eq!(out["users"][0]["user"]["exec"]["command"], "aws");
    }

    #[test]
    fn broken_kubeconfigs_get_a_clear_error() {
        for (yaml, want) in [
            (
                "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n",
                "no current-context",
            ),
            (
                "apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts: []\n",
                "context \"x\" not found",
            ),
            (
                "apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {}}]\n",
                "has no server",
            ),
            (
                "apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'https://a', certificate-authority: /nonexistent/ca.pem}}]\n",
                "/nonexistent/ca.pem",
            ),
        ] {
            let e = ClusterAccess::from_kubeconfig_yaml(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
    }
}
