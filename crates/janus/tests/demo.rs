#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `janus demo` as a newcomer runs it: start the binary, read the URL and logins it prints, then drive
//! request → approve → shell (`echo` through the terminal WebSocket) → revoke through the real HTTP API.

use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

mod common;

use common::start_demo;

struct Api {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Api {
    async fn login(base: &str, user: &str, password: &str) -> Api {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 200, "login as {user}");
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_string();
        let body: Value = r.json().await.expect("json");
        Api {
            http,
            base: base.to_string(),
            cookie,
            csrf: body["csrfToken"].as_str().expect("csrf").to_string(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .expect("POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn wait_phase(&self, name: &str, phase: &str) -> Value {
        for _ in 0..400 {
            let v = self.get(&format!("/api/v1/requests/{name}")).await;
            if v["phase"] == phase {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} never reached {phase}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_the_whole_product() {
    let dir = tempfile::tempdir().expect("tmp");
    let demo = start_demo(dir.path());
    assert_eq!(demo.steps.len(), 7, "the demo reports each step: {:?}", demo.steps);
    assert!(
        demo.url.starts_with("http://127.0.0.1:"),
        "the demo listens on loopback only: {}",
        demo.url
    );
    assert!(
        std::path::Path::new(&demo.kubeconfig).exists(),
        "admin kubeconfig written"
    );

    let engineer = Api::login(&demo.url, "engineer", &demo.engineer).await;
    let admin = Api::login(&demo.url, "admin", &demo.admin).await;

    // Both clusters are offered; excluded namespaces are not.
    let clusters = engineer.get("/api/v1/clusters").await;
    let names: Vec<&str> = clusters["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["central", "remote"]);
    for c in ["central", "remote"] {
        let ns = engineer.get(&format!("/api/v1/clusters/{c}/namespaces")).await;
        let ns: Vec<&str> = ns["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(ns.contains(&"payments") && ns.contains(&"checkout"), "{c}: {ns:?}");
        assert!(
            !ns.contains(&"kube-system") && !ns.contains(&"k8s-janus") && !ns.contains(&"argocd"),
            "{c}: {ns:?}"
        );
    }

    // request → approve → Active on the remote cluster.
    let (status, created) = engineer
        .post(
            "/api/v1/requests",
            json!({"cluster": "remote", "namespaces": ["payments"], "ttlSeconds": 300, "reason": "demo test"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let name = created["name"].as_str().unwrap().to_string();
    let (status, _) = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
    assert_eq!(status, 200);
    engineer.wait_phase(&name, "Active").await;

    // A shell through the terminal WebSocket, with the request's own token.
    let ws_url = format!(
        "{}/ws/terminal/{name}?namespace=payments&pod=payments-api&cols=80&rows=24&csrf={}",
        demo.url.replace("http://", "ws://"),
        engineer.csrf
    );
    let mut req = ws_url.into_client_request().expect("request");
    req.headers_mut().insert("cookie", engineer.cookie.parse().unwrap());
    req.headers_mut().insert("origin", demo.url.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("websocket");
    ws.send(Message::Binary(b"echo demo-$((40+2))\r".to_vec().into()))
        .await
        .expect("send");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("demo-42") {
        assert!(Instant::now() < deadline, "no echo; saw {seen:?}");
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("websocket ended: {other:?}; saw {seen:?}"),
        }
    }

    // Revoke: the socket closes with the reason.
    let (status, _) = admin
        .post(
            &format!("/api/v1/requests/{name}/revoke"),
            json!({"reason": "demo over"}),
        )
        .await;
    assert_eq!(status, 200);
    let mut closed = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed.is_none() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"closed\"") => closed = Some(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) => break,
            _ => {}
        }
    }
    let closed = closed.expect("a closed message");
    assert!(closed.contains("revoked"), "{closed}");
    engineer.wait_phase(&name, "Revoked").await;
}
