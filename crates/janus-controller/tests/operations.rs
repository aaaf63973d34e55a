#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Operating the controller: health and metrics endpoints (leader election: tests/leader.rs).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

mod common;

/// After a real reconcile (kubesim, chart RBAC), `/metrics` carries the reconcile-duration
/// histogram by outcome, the leader gauge and `janus_build_info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_reconcile() {
    let sim = common::central().await;
    let addr: std::net::SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ctl = common::Controller::start_with(&sim, common::config(""), Some(addr)).await;
    common::create(&sim, &common::request("m1", "central", &["team-a"], 600)).await;
    common::wait_phase(&sim, "m1", "Pending", 20).await;
    // The histogram is observed after the reconcile returns, a moment after its status write.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let (code, body) = http_get(addr, "/metrics").await;
        assert_eq!(code, 200);
        if body.contains("janus_controller_reconcile_duration_seconds_count{outcome=\"ok\"}")
            || tokio::time::Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for want in [
        "janus_controller_reconcile_duration_seconds_count{outcome=\"ok\"}",
        "janus_controller_reconcile_duration_seconds_bucket{le=\"0.001\",outcome=\"ok\"}",
        "janus_controller_is_leader 1",
        "janus_controller_cleanup_pending 0",
        &format!("janus_build_info{{version=\"{}\",", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(body.contains(want), "{want} missing in\n{body}");
    }
    ctl.stop().await;
}
