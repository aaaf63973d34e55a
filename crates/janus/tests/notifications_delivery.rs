//! `janus web` runs the notification delivery: an audit event recorded in its database reaches a
//! webhook sink (a plain local HTTP receiver), with the delivery's idempotency key (issue 17).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A one-thread HTTP receiver answering 200 to every request and keeping each request's head.
fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            kept.lock().unwrap().push(head);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn web_delivers_audit_events_to_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: abc}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let (port, seen) = receiver();
    let db = format!("sqlite://{}", dir.path().join("janus.db").display());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {{url: '{db}'}}\nnotifications:\n  webhook: [{{name: siem, urlEnv: JANUS_TEST_HOOK_URL, hmacKeyEnv: JANUS_TEST_HOOK_KEY}}]\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(["web", "--config"])
        .arg(&config)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--listen", "127.0.0.1:0"])
        .env("JANUS_TEST_HOOK_URL", format!("http://127.0.0.1:{port}/in"))
        .env("JANUS_TEST_HOOK_KEY", "k")
        .env("JANUS_POD_NAME", "web-test-0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // The web creates the cursor when its delivery starts; events after it are sent.
    let start = Instant::now();
    let store = loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "janus web did not start delivering"
        );
        assert!(child.try_wait().unwrap().is_none(), "janus web exited");
        if let Ok(s) = janus_store::Store::connect(&db, None).await
            && s.schema_versions().await.map(|v| v.contains(&5)).unwrap_or(false)
            && sqlx_cursor_exists(dir.path()).await
        {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _guard = Kill(child);
    store
        .record_audit(&janus_store::NewAuditEvent {
            key: "e2e-uid/request.created".into(),
            kind: janus_store::AuditKind::RequestCreated,
            at: chrono::Utc::now(),
            actor: "alice@example.com".into(),
            request: Some("alice-e2e".into()),
            cluster: Some("central".into()),
            namespaces: vec!["payments".into()],
            details: serde_json::json!({"reason": "INC-7"}),
        })
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let heads = seen.lock().unwrap().clone();
        if let Some(h) = heads.iter().find(|h| h.starts_with("POST /in")) {
            assert!(
                h.to_ascii_lowercase()
                    .contains("idempotency-key: e2e-uid/request.created/siem"),
                "{h}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing delivered: {heads:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the delivery's cursor row exists yet.
async fn sqlx_cursor_exists(dir: &std::path::Path) -> bool {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", dir.join("janus.db").display());
    let Ok(mut c) = sqlx::SqliteConnection::connect(&url).await else {
        return false;
    };
    let n: Result<(i64,), _> = sqlx::query_as("SELECT COUNT(*) FROM notification_cursor")
        .fetch_one(&mut c)
        .await;
    matches!(n, Ok((1,)))
}
