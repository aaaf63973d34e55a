//! Shared pieces of the receiver tests: a throwaway CA with a `localhost` certificate, the notification
//! the tests send, and the skip-or-fail rule for missing tools.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use janus_api::config::Config;
use janus_notify::model::{Context, Event, Notification, implied};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM) — what a sink's `caFile` points at.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "janus-notify test CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server.key");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Self {
            dir,
            ca_file,
            cert_file,
            key_file,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A rustls client configuration that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls::pki_types::CertificateDer::pem_file_iter(&self.ca_file).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(cfg)
    }

    /// A rustls server configuration presenting the `localhost` certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let certs = vec![rustls::pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Arc::new(cfg)
    }
}

/// Whether a missing tool is a failure: under CI (`CI=true` or `CI=1`) it is.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Prints `SKIPPED <test>: <reason>` and returns, or fails under CI.
pub fn skip(test: &str, reason: &str) {
    assert!(
        !ci(),
        "{test}: {reason} (required under CI; scripts/install-test-tools.sh installs it)"
    );
    println!("SKIPPED {test}: {reason} (set CI=true to make this a failure)");
}

pub fn config() -> Config {
    Config::from_yaml(
        "adminEmails: [admin@example.com, oncall@example.com]\nweb: {baseUrl: 'https://janus.example.com'}\nclusters: [{name: prod}, {name: dev}]\n",
        "test",
    )
    .unwrap()
}

/// The notification of a new pending request on `cluster`, with a known key.
pub fn pending(cluster: &str) -> Notification {
    let config = config();
    let e = Event {
        key: format!("0b7d-uid/{}", "request.created"),
        kind: "request.created".into(),
        at: Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap(),
        actor: "alice@example.com".into(),
        request: Some(format!("alice-{cluster}-x1")),
        cluster: Some(cluster.into()),
        namespaces: vec!["payments".into(), "billing".into()],
        details: json!({"reason": "INC-42: crash loop <b>in</b> payments & billing", "ttl_seconds": 3600}),
    };
    implied(&e, &Context::new(&config))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
