#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `janus probe` (the chart's `helm test` hook) against the controller's real health server: 2xx
//! passes, 503 and refused connections fail with a clear line, retries wait for readiness, bad
//! URLs are refused without a crash.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn janus(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_janus"))
            .arg("probe")
            .args(&args)
            .output()
            .expect("run janus")
    })
    .await
    .expect("join")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn health() -> (Arc<janus_controller::health::Health>, String) {
    let h = janus_controller::health::Health::new(Arc::new(janus_controller::metrics::Metrics::new()));
    let addr = janus_controller::health::serve("127.0.0.1:0".parse().expect("addr"), h.clone())
        .await
        .expect("serve");
    (h, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_and_unready_endpoints() {
    let (_h, base) = health().await;
    let out = janus(&[&format!("{base}/healthz")]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("ok {base}/healthz 200")),
        "{}",
        text(&out)
    );

    // Not ready yet (503): one try fails, and the line says why.
    let out = janus(&[&format!("{base}/healthz"), &format!("{base}/readyz")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("FAILED {base}/readyz: HTTP 503 (after 1 tries)")),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not healthy"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_ready() {
    let (h, base) = health().await;
    let flip = {
        let h = h.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            h.ready.store(true, Ordering::Relaxed);
        })
    };
    let out = janus(&["--attempts", "20", "--interval-seconds", "1", &format!("{base}/readyz")]).await;
    flip.await.expect("flip");
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_and_bad_urls_are_clear_errors() {
    // A port nobody listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = janus(&["--timeout-seconds", "2", &format!("http://127.0.0.1:{port}/readyz")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAILED"),
        "{}",
        text(&out)
    );

    for (bad, why) in [("not a url", "is not a URL"), ("https://example.com/", "only http://")] {
        let out = janus(&[bad]).await;
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{bad}: {}",
            text(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{}",
            text(&out)
        );
    }
    // clap refuses a zero attempt count before anything runs.
    let out = janus(&["--attempts", "0", "http://127.0.0.1:1/"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
