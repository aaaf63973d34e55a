//! ArgoCD cluster Secrets (`argocd.argoproj.io/secret-type=cluster`) and how they become static kubeconfigs.
//!
//! ArgoCD keeps each cluster as a Secret with keys `name`, `server` and `config` (JSON: `bearerToken`,
//! `tlsClientConfig`, `execProviderConfig`, `awsAuthConfig`, `username`/`password`). Only static
//! credentials (a bearer token or a TLS client certificate) can be written into a kubeconfig the
//! controller can use; the others are reported with the reason.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use crate::kubeconfig::{Auth, KubeconfigError, KubeconfigInput};

/// Label selecting ArgoCD cluster Secrets.
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
/// Its value for clusters.
pub const SECRET_TYPE_CLUSTER: &str = "cluster";

/// Why an ArgoCD cluster Secret cannot become a kubeconfig. Never carries a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgoError {
    /// A required data key is missing or not UTF-8.
    #[error("ArgoCD Secret {secret}: data key `{key}` is missing or not UTF-8")]
    MissingKey {
        /// The ArgoCD Secret.
        secret: String,
        /// The key.
        key: &'static str,
    },
    /// `config` is not the JSON ArgoCD writes. The message names the position, never the content.
    #[error("ArgoCD Secret {secret}: `config` is not valid JSON ({detail})")]
    InvalidConfig {
        /// The ArgoCD Secret.
        secret: String,
        /// Position and category of the error.
        detail: String,
    },
    /// A certificate field is not base64.
    #[error("ArgoCD Secret {secret}: tlsClientConfig.{field} is not base64")]
    InvalidBase64 {
        /// The ArgoCD Secret.
        secret: String,
        /// The field.
        field: &'static str,
    },
    /// The cluster uses credentials that cannot be written into a static kubeconfig.
    #[error("cluster {cluster} cannot be synced: {reason}")]
    Unsupported {
        /// The cluster name.
        cluster: String,
        /// Why (exec plugin, AWS IAM, basic auth, no credentials).
        reason: String,
    },
    /// The resulting kubeconfig would be invalid.
    #[error("cluster {cluster}: {source}")]
    Kubeconfig {
        /// The cluster name.
        cluster: String,
        /// What is wrong.
        source: KubeconfigError,
    },
}

/// `tlsClientConfig` of an ArgoCD cluster (certificate fields are base64 of PEM).
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlsClientConfig {
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    ca_data: Option<String>,
    #[serde(default)]
    cert_data: Option<String>,
    #[serde(default)]
    key_data: Option<String>,
}

/// The parts of ArgoCD's `config` JSON we read; other keys (proxyUrl, …) are ignored.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfigJson {
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    tls_client_config: TlsClientConfig,
    #[serde(default)]
    exec_provider_config: Option<serde_json::Value>,
    #[serde(default)]
    aws_auth_config: Option<serde_json::Value>,
}

/// One cluster as ArgoCD knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ArgoCluster {
    /// Name of the ArgoCD Secret.
    pub secret_name: String,
    /// ArgoCD cluster name (data key `name`): what `clusters[].name` must match.
    pub name: String,
    /// API server URL.
    pub server: String,
    /// Static credentials and TLS settings, or why there are none.
    pub connection: Result<KubeconfigInput, ArgoError>,
}

impl std::fmt::Debug for ArgoCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // KubeconfigInput's Debug redacts the credentials.
        f.debug_struct("ArgoCluster")
            .field("secret_name", &self.secret_name)
            .field("name", &self.name)
            .field("server", &self.server)
            .field("connection", &self.connection)
            .finish()
    }
}

fn data_str(secret: &Secret, key: &'static str) -> Result<String, ArgoError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok());
    let from_string_data = || secret.string_data.as_ref().and_then(|d| d.get(key)).cloned();
    from_data
        .or_else(from_string_data)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or(ArgoError::MissingKey { secret: name, key })
}

fn decode(secret: &str, field: &'static str, value: Option<&String>) -> Result<Option<Vec<u8>>, ArgoError> {
    match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => STANDARD.decode(v).map(Some).map_err(|_| ArgoError::InvalidBase64 {
            secret: secret.to_string(),
            field,
        }),
    }
}

/// Whether a Secret is an ArgoCD cluster Secret (by its label).
pub fn is_cluster_secret(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SECRET_TYPE_LABEL))
        .is_some_and(|v| v == SECRET_TYPE_CLUSTER)
}

/// Reads an ArgoCD cluster Secret. `Err` when it has no usable `name` or `server`; credentials that
/// cannot be used are reported in [`ArgoCluster::connection`].
pub fn parse_secret(secret: &Secret) -> Result<ArgoCluster, ArgoError> {
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    let name = data_str(secret, "name")?;
    let server = data_str(secret, "server")?;
    let connection = match data_str(secret, "config") {
        Ok(config) => connection(&secret_name, &name, &server, &config),
        Err(_) => Err(ArgoError::Unsupported {
            cluster: name.clone(),
            reason: "the ArgoCD Secret has no `config` (no credentials)".into(),
        }),
    };
    Ok(ArgoCluster {
        secret_name,
        name,
        server,
        connection,
    })
}

/// Turns ArgoCD's `config` JSON into kubeconfig input, or says why it cannot.
pub fn connection(secret: &str, name: &str, server: &str, config: &str) -> Result<KubeconfigInput, ArgoError> {
    let cfg: ClusterConfigJson = serde_json::from_str(config).map_err(|e| ArgoError::InvalidConfig {
        secret: secret.to_string(),
        // Only the position and category: serde messages may quote the offending (secret) value.
        detail: format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()),
    })?;
    let unsupported = |reason: String| ArgoError::Unsupported {
        cluster: name.to_string(),
        reason,
    };
    if let Some(exec) = &cfg.exec_provider_config {
        let command = exec.get("command").and_then(|c| c.as_str()).unwrap_or("?");
        return Err(unsupported(format!(
            "it uses execProviderConfig (command `{command}`): credentials are minted at run time by a plugin, \
             not a static token; register it with scripts/setup.sh instead"
        )));
    }
    if let Some(aws) = &cfg.aws_auth_config {
        let cluster = aws.get("clusterName").and_then(|c| c.as_str()).unwrap_or("?");
        return Err(unsupported(format!(
            "it uses awsAuthConfig (AWS IAM, EKS cluster `{cluster}`): IAM tokens expire within 15 minutes \
             and cannot be stored; register it with scripts/setup.sh instead"
        )));
    }
    let tls = &cfg.tls_client_config;
    let ca_pem = decode(secret, "caData", tls.ca_data.as_ref())?;
    let cert = decode(secret, "certData", tls.cert_data.as_ref())?;
    let key = decode(secret, "keyData", tls.key_data.as_ref())?;
    let token = cfg.bearer_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let auth = match (token, cert, key) {
        (Some(t), _, _) => Auth::Token(t.to_string()),
        (None, Some(cert_pem), Some(key_pem)) => Auth::ClientCert { cert_pem, key_pem },
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(unsupported(
                "tlsClientConfig has only one of certData and keyData".into(),
            ));
        }
        (None, None, None) if cfg.username.is_some() || cfg.password.is_some() => {
            return Err(unsupported(
                "it uses username/password (basic auth), which Kubernetes API servers no longer accept".into(),
            ));
        }
        (None, None, None) => {
            return Err(unsupported(
                "no static credentials (bearerToken or tlsClientConfig.certData/keyData)".into(),
            ));
        }
    };
    let input = KubeconfigInput {
        name: name.to_string(),
        server: server.to_string(),
        ca_pem,
        tls_server_name: tls.server_name.clone(),
        insecure: tls.insecure,
        auth,
    };
    // Validate now so the caller learns about a bad server or PEM before writing anything.
    crate::kubeconfig::build(&input).map_err(|source| ArgoError::Kubeconfig {
        cluster: name.to_string(),
        source,
    })?;
    Ok(input)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    fn secret(name: &str, server: &str, config: &serde_json::Value) -> Secret {
        let mut data = BTreeMap::new();
        data.insert("name".to_string(), ByteString(name.as_bytes().to_vec()));
        data.insert("server".to_string(), ByteString(server.as_bytes().to_vec()));
        data.insert("config".to_string(), ByteString(config.to_string().into_bytes()));
        Secret {
            metadata: ObjectMeta {
                name: Some(format!("cluster-{name}")),
                labels: Some([(SECRET_TYPE_LABEL.to_string(), "cluster".to_string())].into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn bearer_token_with_ca() {
        let s = secret(
            "prod",
            "https://prod.example:6443",
            &serde_json::json!({"bearerToken": "tok", "tlsClientConfig": {"insecure": false, "caData": b64(CA)}}),
        );
        assert!(is_cluster_secret(&s));
        let c = parse_secret(&s).unwrap();
        assert_eq!(c.name, "prod");
        assert_eq!(c.secret_name, "cluster-prod");
        let i = c.connection.unwrap();
        assert_eq!(i.auth, Auth::Token("tok".into()));
        assert_eq!(i.ca_pem.as_deref(), Some(CA.as_bytes()));
        assert!(!i.insecure);
    }

    #[test]
    fn client_certificate_and_server_name() {
        let s = secret(
            "edge",
            "https://1.2.3.4",
            &serde_json::json!({"tlsClientConfig": {"caData": b64(CA), "certData": b64(CA), "keyData": b64(KEY), "serverName": "api.edge"}}),
        );
        let i = parse_secret(&s).unwrap().connection.unwrap();
        assert!(matches!(i.auth, Auth::ClientCert { .. }));
        assert_eq!(i.tls_server_name.as_deref(), Some("api.edge"));
    }

    #[test]
    fn insecure() {
        let s = secret(
            "lab",
            "https://lab:6443",
            &serde_json::json!({"bearerToken": "t", "tlsClientConfig": {"insecure": true}}),
        );
        assert!(parse_secret(&s).unwrap().connection.unwrap().insecure);
    }

    #[test]
    fn exec_aws_basic_and_none_are_reported_by_name() {
        let cases = [
            (
                serde_json::json!({"execProviderConfig": {"command": "argocd-k8s-auth", "args": ["gcp"]}, "bearerToken": "x"}),
                "execProviderConfig (command `argocd-k8s-auth`)",
            ),
            (
                serde_json::json!({"awsAuthConfig": {"clusterName": "eks-1", "roleARN": "arn:aws:iam::1:role/r"}}),
                "awsAuthConfig (AWS IAM, EKS cluster `eks-1`)",
            ),
            (serde_json::json!({"username": "admin", "password": "pw"}), "basic auth"),
            (serde_json::json!({}), "no static credentials"),
            (
                serde_json::json!({"tlsClientConfig": {"certData": b64(CA)}}),
                "only one of certData",
            ),
        ];
        for (cfg, want) in cases {
            let e = parse_secret(&secret("c1", "https://c1", &cfg))
                .unwrap()
                .connection
                .unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("cluster c1 cannot be synced"), "{msg}");
            assert!(msg.contains(want), "{msg} lacks {want}");
            assert!(!msg.contains("pw") && !msg.contains("\"x\""), "{msg}");
        }
    }

    #[test]
    fn malformed_inputs_never_echo_values() {
        // a token where a bool belongs: serde would quote it, our message must not
        let s = secret(
            "c",
            "https://c",
            &serde_json::json!({"tlsClientConfig": {"insecure": "super-secret-token"}}),
        );
        let e = parse_secret(&s).unwrap().connection.unwrap_err();
        assert!(matches!(e, ArgoError::InvalidConfig { .. }));
        assert!(!e.to_string().contains("super-secret"), "{e}");

        let s = secret(
            "c",
            "https://c",
            &serde_json::json!({"bearerToken": "t", "tlsClientConfig": {"caData": "%%%"}}),
        );
        assert!(matches!(
            parse_secret(&s).unwrap().connection,
            Err(ArgoError::InvalidBase64 { field: "caData", .. })
        ));

        let s = secret("c", "http://plain", &serde_json::json!({"bearerToken": "t"}));
        assert!(matches!(
            parse_secret(&s).unwrap().connection,
            Err(ArgoError::Kubeconfig { .. })
        ));

        let mut s = secret("c", "https://c", &serde_json::json!({}));
        s.data.as_mut().unwrap().remove("server");
        assert_eq!(
            parse_secret(&s).unwrap_err(),
            ArgoError::MissingKey {
                secret: "cluster-c".into(),
                key: "server"
            }
        );
        let dbg = format!(
            "{:?}",
            parse_secret(&secret(
                "c",
                "https://c",
                &serde_json::json!({"bearerToken": "tok-123"})
            ))
            .unwrap()
        );
        assert!(!dbg.contains("tok-123"), "{dbg}");
    }
}
