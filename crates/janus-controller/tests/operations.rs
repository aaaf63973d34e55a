//! Operating the controller: leader election through a Lease, health and metrics endpoints.

mod common;

use std::time::Duration;

use common::*;
use janus_controller::leader::{LeaseConfig, try_acquire};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: NS.into(),
        name: "k8s-janus-controller".into(),
        identity: identity.into(),
        duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry() {
    let sim = central().await;
    // The chart's controller identity, so the test also proves its Lease permissions.
    let token = sa_token(&sim, NS, "k8s-janus-controller").await;
    let api: Api<Lease> = Api::namespaced(sim.client_for_token(&token).await.unwrap(), NS);
    assert!(try_acquire(&api, &lease("a")).await.unwrap());
    assert!(
        !try_acquire(&api, &lease("b")).await.unwrap(),
        "b must wait while a renews"
    );
    assert!(try_acquire(&api, &lease("a")).await.unwrap(), "a renews");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert!(
        try_acquire(&api, &lease("b")).await.unwrap(),
        "b takes over an expired lease"
    );
    assert!(!try_acquire(&api, &lease("a")).await.unwrap(), "a lost it");
    let l = api.get("k8s-janus-controller").await.unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, buf)
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let metrics = std::sync::Arc::new(janus_controller::metrics::Metrics::new());
    let health = janus_controller::health::Health::new(metrics.clone());
    let addr = janus_controller::health::serve("127.0.0.1:0".parse().unwrap(), health.clone())
        .await
        .unwrap();
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(
        http_get(addr, "/readyz").await.0,
        503,
        "not ready before start-up checks"
    );
    health.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    metrics.transition(janus_api::Phase::Active);
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("janus_phase_transitions_total{phase=\"Active\"} 1"),
        "{body}"
    );
    assert!(body.contains("janus_grant_duration_seconds"), "{body}");
}
