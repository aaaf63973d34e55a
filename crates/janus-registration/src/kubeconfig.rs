//! Static single-context kubeconfigs, the format of the `<cluster>-kubeconfig` Secrets the controller reads.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// Why a kubeconfig cannot be built. Never carries a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigError {
    /// The cluster name is empty or not a DNS label-like identifier.
    #[error("invalid cluster name {0:?}: use lowercase letters, digits and '-' (at most 63)")]
    InvalidName(String),
    /// The server is not an `https://` URL.
    #[error("invalid server {0:?}: it must be an https:// URL")]
    InvalidServer(String),
    /// The bearer token is empty or contains whitespace.
    #[error("the bearer token is empty or contains whitespace")]
    InvalidToken,
    /// A PEM input does not look like PEM.
    #[error("the {0} is not PEM data")]
    NotPem(&'static str),
}

/// How the controller authenticates to the cluster.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// A bearer token (ServiceAccount token).
    Token(String),
    /// A TLS client certificate and its private key, both PEM.
    ClientCert {
        /// Certificate (PEM).
        cert_pem: Vec<u8>,
        /// Private key (PEM).
        key_pem: Vec<u8>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::ClientCert { .. } => f.write_str("ClientCert(<redacted>)"),
        }
    }
}

/// Everything a static kubeconfig holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigInput {
    /// Cluster name: names the cluster, user and context entries.
    pub name: String,
    /// API server URL (`https://…`).
    pub server: String,
    /// CA bundle (PEM) the server certificate is checked against; `None` uses the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Name to verify the server certificate for, when it differs from the URL's host.
    pub tls_server_name: Option<String>,
    /// Skip server certificate verification (a CA given with it is dropped: kubectl refuses both).
    pub insecure: bool,
    /// Credentials.
    pub auth: Auth,
}

/// A cluster name: a DNS-1123 subdomain short enough to be a label value (63).
fn valid_name(name: &str) -> bool {
    name.len() <= 63 && janus_api::names::is_dns_subdomain(name)
}

/// PEM: at least one `-----BEGIN …-----` / `-----END …-----` block, each with a non-empty base64 body.
fn is_pem(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut blocks = 0;
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            if body.is_some() {
                return false;
            }
            body = Some(String::new());
        } else if line.starts_with("-----END ") {
            match body.take() {
                Some(b) if !b.is_empty() && STANDARD.decode(&b).is_ok() => blocks += 1,
                _ => return false,
            }
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    body.is_none() && blocks > 0
}

/// Builds the kubeconfig YAML (one cluster, user and context, all named after the cluster).
///
/// The output is deterministic: the same input always gives the same bytes, so callers can compare
/// it with what a Secret holds and skip writes that would change nothing.
pub fn build(input: &KubeconfigInput) -> Result<String, KubeconfigError> {
    if !valid_name(&input.name) {
        return Err(KubeconfigError::InvalidName(input.name.clone()));
    }
    let server = input.server.trim_end_matches('/');
    let host = server.strip_prefix("https://").unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(KubeconfigError::InvalidServer(input.server.clone()));
    }
    let mut cluster = Map::new();
    cluster.insert("server".into(), json!(server));
    if input.insecure {
        cluster.insert("insecure-skip-tls-verify".into(), json!(true));
    } else if let Some(ca) = &input.ca_pem {
        if !is_pem(ca) {
            return Err(KubeconfigError::NotPem("certificate authority"));
        }
        cluster.insert("certificate-authority-data".into(), json!(STANDARD.encode(ca)));
    }
    if let Some(sn) = input.tls_server_name.as_deref().filter(|s| !s.is_empty()) {
        cluster.insert("tls-server-name".into(), json!(sn));
    }
    let user = match &input.auth {
        Auth::Token(t) => {
            if t.is_empty() || t.contains(char::is_whitespace) {
                return Err(KubeconfigError::InvalidToken);
            }
            json!({"token": t})
        }
        Auth::ClientCert { cert_pem, key_pem } => {
            if !is_pem(cert_pem) {
                return Err(KubeconfigError::NotPem("client certificate"));
            }
            if !is_pem(key_pem) {
                return Err(KubeconfigError::NotPem("client key"));
            }
            json!({
                "client-certificate-data": STANDARD.encode(cert_pem),
                "client-key-data": STANDARD.encode(key_pem),
            })
        }
    };
    let name = &input.name;
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": Value::Object(cluster)}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    });
    // Serialising a JSON value to YAML cannot fail; keep the error path anyway rather than panic.
    yaml_serde::to_string(&doc).map_err(|_| KubeconfigError::InvalidName(name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn input(auth: Auth) -> KubeconfigInput {
        KubeconfigInput {
            name: "prod-eu".into(),
            server: "https://10.0.0.1:6443/".into(),
            ca_pem: Some(CA.as_bytes().to_vec()),
            tls_server_name: None,
            insecure: false,
            auth,
        }
    }

    fn parse(yaml: &str) -> Value {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn token_kubeconfig_is_loadable_and_deterministic() {
        let yaml = build(&input(Auth::Token("abc.def".into()))).unwrap();
        assert_eq!(yaml, build(&input(Auth::Token("abc.def".into()))).unwrap());
        let v = parse(&yaml);
        assert_eq!(v["current-context"], "prod-eu");
        assert_eq!(v["clusters"][0]["cluster"]["server"], "https://10.0.0.1:6443");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            STANDARD.encode(CA)
        );
        assert_eq!(v["users"][0]["user"]["token"], "abc.def");
        // kube can read it
        let kc: kube::config::Kubeconfig = yaml_serde::from_str(&yaml).unwrap();
        assert_eq!(kc.contexts.len(), 1);
    }

    #[test]
    fn client_cert_and_insecure() {
        let mut i = input(Auth::ClientCert {
            cert_pem: CA.as_bytes().to_vec(),
            key_pem: b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n".to_vec(),
        });
        i.insecure = true;
        i.tls_server_name = Some("api.internal".into());
        let v = parse(&build(&i).unwrap());
        let c = &v["clusters"][0]["cluster"];
        assert_eq!(c["insecure-skip-tls-verify"], true);
        assert!(
            c.get("certificate-authority-data").is_none(),
            "CA dropped with insecure"
        );
        assert_eq!(c["tls-server-name"], "api.internal");
        assert!(v["users"][0]["user"]["client-key-data"].is_string());
    }

    #[test]
    fn invalid_input_is_rejected_without_echoing_secrets() {
        let mut i = input(Auth::Token("has space".into()));
        let e = build(&i).unwrap_err();
        assert_eq!(e, KubeconfigError::InvalidToken);
        assert!(!e.to_string().contains("has space"));
        i.auth = Auth::Token("t".into());
        i.server = "http://x".into();
        assert!(matches!(build(&i), Err(KubeconfigError::InvalidServer(_))));
        i.server = "https://".into();
        assert!(matches!(build(&i), Err(KubeconfigError::InvalidServer(_))));
        i.server = "https://x".into();
        i.name = "Bad_Name".into();
        assert!(matches!(build(&i), Err(KubeconfigError::InvalidName(_))));
        i.name = "ok".into();
        i.ca_pem = Some(b"not pem".to_vec());
        assert_eq!(build(&i), Err(KubeconfigError::NotPem("certificate authority")));
        i.ca_pem = Some(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec());
        assert_eq!(build(&i), Err(KubeconfigError::NotPem("certificate authority")));
        i.ca_pem = Some(b"-----BEGIN CERTIFICATE-----\nMIIB\n".to_vec());
        assert_eq!(build(&i), Err(KubeconfigError::NotPem("certificate authority")));
        i.ca_pem = None;
        i.auth = Auth::ClientCert {
            cert_pem: b"x".to_vec(),
            key_pem: b"y".to_vec(),
        };
        assert_eq!(build(&i), Err(KubeconfigError::NotPem("client certificate")));
        assert_eq!(format!("{:?}", Auth::Token("secret".into())), "Token(<redacted>)");
    }
}
