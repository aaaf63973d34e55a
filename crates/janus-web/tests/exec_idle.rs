#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The idle timeout in the terminal socket's exec mode (`janus exec`) against kubesim: a command that
//! reads no input but keeps printing is not idle (its delivered output counts as activity), while a
//! silent one is cut off at the idle timeout like an untouched shell (which revokes the request).

mod common;

use std::time::Duration;

use common::{ADMIN, Session, Stack};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const CONFIG: &str = r#"
idleTimeoutSeconds: 3
roles:
- {name: exec, displayName: Shell, clusterRole: janus-pod-exec, terminal: shell}
"#;

async fn active(admin: &Session, user: &Session) -> String {
    let body = json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "idle test",
                      "role": "exec"});
    let r = user.post("/api/v1/requests", body).await;
    assert_eq!(r.status(), 201);
    let name = r.json::<Value>().await.unwrap()["name"].as_str().unwrap().to_string();
    let r = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
    assert_eq!(r.status(), 200);
    user.wait_phase(&name, "Active").await;
    name
}

async fn run(stack: &Stack, s: &Session, name: &str, script: &str) -> (String, Option<i64>, Option<String>) {
    let mut q = "namespace=team-a&pod=app&command=sh&command=-c&command=".to_string();
    q.extend(form_urlencoded::byte_serialize(script.as_bytes()));
    let url = format!("ws://{}/ws/terminal/{name}?{q}&csrf={}", stack.host, s.csrf);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("cookie", s.cookie.parse().unwrap());
    req.headers_mut().insert("origin", stack.url.parse().unwrap());
    let (mut ws, _): (Ws, _) = tokio_tungstenite::connect_async(req).await.expect("websocket");
    let (mut stdout, mut exit, mut closed) = (Vec::new(), None, None);
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) if b.first() == Some(&1) => stdout.extend_from_slice(&b[1..]),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str().unwrap() {
                    "exit" => exit = v["code"].as_i64(),
                    "closed" => closed = v["reason"].as_str().map(str::to_string),
                    _ => {}
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the socket did not close"),
        }
    }
    (String::from_utf8_lossy(&stdout).into_owned(), exit, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_output_is_activity_but_silence_is_idle() {
    let stack = Stack::start(CONFIG).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active(&admin, &alice).await;

    // 7 s of a line a second, idle timeout 3 s, no input at all: runs to its end.
    let (out, exit, closed) = run(
        &stack,
        &alice,
        &name,
        "i=0; while [ $i -lt 7 ]; do echo tick $i; i=$((i+1)); sleep 1; done",
    )
    .await;
    assert_eq!(
        exit,
        Some(0),
        "the printing command was cut off: {closed:?}, output {out:?}"
    );
    assert!(out.contains("tick 6"), "{out}");

    // Silent for longer than the idle timeout: cut off, as a shell would be.
    let (out, exit, closed) = run(&stack, &alice, &name, "echo start; sleep 10; echo never").await;
    assert_eq!(exit, None, "{out}");
    assert!(!out.contains("never"), "{out}");
    let closed = closed.unwrap_or_default();
    assert!(closed.contains("idle for 3 seconds"), "{closed}");
    stack.stop().await;
}
