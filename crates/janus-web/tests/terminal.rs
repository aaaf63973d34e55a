#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The browser terminal end to end against pods with real PTY shells: echo, resize, container
//! choice, the API server refusing what was not granted, sessions ending within a second of revoke,
//! expiry and withdrawal (and the shell process gone), the idle timeout, who may connect, recordings.
//!
//! Portable: every test runs on a `TestCluster` (kubesim, or a real cluster with
//! `JANUS_TEST_CLUSTER=kubeconfig`; see scripts/test-real-cluster.sh) except the stalled-cluster test,
//! which needs kubesim's fault injection and says so when skipped.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, Session, Stack};
use futures::{SinkExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, AttachParams};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_request(
    stack: &Stack,
    s: &Session,
    name: &str,
    query: &str,
    csrf: Option<&str>,
    origin: bool,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let csrf = csrf.unwrap_or(&s.csrf);
    let url = format!("ws://{}/ws/terminal/{name}?{query}&csrf={csrf}", stack.host);
    let mut req = url.into_client_request().expect("request");
    if !s.cookie.is_empty() {
        req.headers_mut().insert("cookie", s.cookie.parse().unwrap());
    }
    if origin {
        req.headers_mut().insert("origin", stack.url.parse().unwrap());
    }
    req
}

async fn connect(stack: &Stack, s: &Session, name: &str, query: &str) -> (Ws, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(stack, s, name, query, None, true))
        .await
        .expect("websocket");
    // The first control frame says connected (with the session id).
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "connected", "{v}");
                return (ws, v["session"].as_str().unwrap().to_string());
            }
            Ok(Some(Ok(Message::Binary(_)))) => {}
            other => panic!("no connected message: {other:?}"),
        }
    }
}

async fn refused(stack: &Stack, s: &Session, name: &str, query: &str, csrf: Option<&str>, origin: bool) -> u16 {
    match tokio_tungstenite::connect_async(ws_request(stack, s, name, query, csrf, origin)).await {
        Ok(_) => panic!("the handshake should have been refused"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Binary(text.as_bytes().to_vec().into()))
        .await
        .expect("send");
}

/// Reads output until `want` appears.
async fn expect_output(ws: &mut Ws, want: &str) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "never saw {want:?}; saw {seen:?}");
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Text(_)))) => {}
            Ok(Some(Ok(_))) => {}
            other => panic!("socket ended while waiting for {want:?}: {other:?}; saw {seen:?}"),
        }
    }
    seen
}

/// Asks the shell for its terminal size until it is `want` ("rows cols"). The resize travels beside the
/// input, not in it (kube-rs sends it on the exec's resize channel, as kubectl does), so the first
/// `stty size` typed after a resize may still run at the old size.
async fn expect_size(ws: &mut Ws, want: &str) {
    let mut last = String::new();
    for _ in 0..20 {
        send(ws, "stty size\r").await;
        let mut seen = String::new();
        let size = loop {
            // Complete lines only: a chunk may end in the middle of the answer.
            let complete = seen.rfind('\n').map_or("", |i| &seen[..i]);
            if let Some(l) = complete.split(['\r', '\n']).map(str::trim).find(|l| {
                let n: Vec<&str> = l.split(' ').collect();
                n.len() == 2 && n.iter().all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            }) {
                break l.to_string();
            }
            match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
                Ok(Some(Ok(_))) => {}
                other => panic!("socket ended while waiting for the size: {other:?}; saw {seen:?}"),
            }
        };
        if size == want {
            return;
        }
        last = size;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the terminal size stayed {last:?}, not {want:?}");
}

/// Waits for the `closed` control message and the end of the socket; returns (reason, seconds waited).
async fn expect_closed(ws: &mut Ws) -> (String, f64) {
    let start = Instant::now();
    let mut reason = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "closed" {
                    reason = Some(v["reason"].as_str().unwrap().to_string());
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the socket did not close"),
        }
    }
    (
        reason.expect("a closed message with a reason"),
        start.elapsed().as_secs_f64(),
    )
}

/// A number that names the processes one test starts in its shells (see [`hold`]).
fn marker() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    1_000_000 + u64::from(nanos) % 8_000_000 + u64::from(std::process::id() % 1000)
}

/// Starts a foreground process named by `marker` in the shell and waits until it runs, so a real
/// cluster can show that the shell still runs (and later that it is gone with the shell's hang-up). It
/// ends by itself within a minute, so even a leaked one does not linger.
async fn hold(stack: &Stack, ws: &mut Ws, ns: &str, pod: &str, marker: u64) {
    send(ws, &format!("sh -c 'sleep 60; : {marker}'\r")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shells_in(stack, ns, pod, marker).await == 0 {
        assert!(Instant::now() < deadline, "no shell process seen in {ns}/{pod}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The shell hands the terminal to the new job just after starting it; the hang-up reaches the job
    // only once it has (before that, ending the shell could leave it behind).
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Processes of the test's shells alive in `ns/pod`. On kubesim: every process exec started there (the
/// kubelet's own bookkeeping). On a real cluster the kubelet cannot be asked, so the processes named by
/// `marker` ([`hold`]) are counted from /proc inside the pod's `main` container (pods whose other
/// containers hold shells share one process namespace).
async fn shells_in(stack: &Stack, ns: &str, pod: &str, marker: u64) -> usize {
    if let Some(sim) = stack.simulated() {
        return sim.cluster.kubelet.active_processes(ns, pod);
    }
    let pods: Api<Pod> = Api::namespaced(stack.admin_client().await, ns);
    let scan = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null";
    let mut p = pods
        .exec(
            pod,
            ["sh", "-c", scan],
            &AttachParams::default().container("main").stderr(false),
        )
        .await
        .expect("exec the /proc scan as admin");
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut p.stdout().expect("stdout"), &mut out)
        .await
        .expect("scan output");
    let _ = p.join().await;
    let marker = marker.to_string();
    let found: Vec<&str> = out.lines().filter(|l| l.contains(&marker)).collect();
    if !found.is_empty() {
        println!("{ns}/{pod}: processes of the test's shells: {found:?}");
    }
    found.len()
}

async fn wait_no_shells(stack: &Stack, ns: &str, pod: &str, marker: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while shells_in(stack, ns, pod, marker).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the shell process in {ns}/{pod} is still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn active_request(admin: &Session, user: &Session, namespaces: &[&str], ttl: i64) -> String {
    let name = user.request(namespaces, ttl, "terminal test").await;
    let r = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
    assert_eq!(r.status(), 200);
    user.wait_phase(&name, "Active").await;
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shell_with_the_requests_own_token_ended_by_revoke() {
    let stack = Stack::portable("").await;
    let mark = marker();
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    let name = active_request(&admin, &alice, &["team-a"], 600).await;
    let q = "namespace=team-a&pod=app&cols=80&rows=24";

    // Who may not connect, before anything is opened.
    assert_eq!(refused(&stack, &stack.anon(), &name, q, Some("x"), true).await, 401);
    assert_eq!(refused(&stack, &bob, &name, q, None, true).await, 404);
    assert_eq!(refused(&stack, &admin, &name, q, None, true).await, 403);
    assert_eq!(
        refused(&stack, &alice, &name, q, Some("wrong"), true).await,
        403,
        "CSRF token"
    );
    assert_eq!(refused(&stack, &alice, &name, q, None, false).await, 403, "no Origin");
    assert_eq!(
        refused(&stack, &alice, &name, "namespace=team-b&pod=app", None, true).await,
        422,
        "not granted"
    );
    assert_eq!(
        refused(&stack, &alice, &name, "namespace=team-a&pod=web", None, true).await,
        422,
        "two containers: choose"
    );
    assert_eq!(
        refused(&stack, &alice, &name, "namespace=team-a&pod=nope", None, true).await,
        404
    );

    // The API server itself refuses the request's token outside what was granted.
    let kube_admin = stack.admin_client().await;
    let ar = Api::<janus_api::AccessRequest>::all(kube_admin.clone())
        .get(&name)
        .await
        .expect("ar");
    let ar = serde_json::to_value(ar).unwrap();
    let secret_name = ar["status"]["grants"][0]["tokenSecret"].as_str().unwrap().to_string();
    let secret = Api::<Secret>::namespaced(kube_admin, common::NS)
        .get(&secret_name)
        .await
        .expect("secret");
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    // The token never shows up in pages, API answers, status or the audit log.
    for (who, path) in [
        (&alice, format!("/requests/{name}")),
        (&alice, format!("/api/v1/requests/{name}")),
        (&alice, format!("/api/v1/requests/{name}/timeline")),
        (&alice, format!("/terminal/{name}")),
        (&admin, "/api/v1/audit".to_string()),
        (&admin, "/admin".to_string()),
        (&admin, "/audit".to_string()),
    ] {
        let body = who.get(&path).await.text().await.unwrap();
        assert!(!body.contains(&token), "{path} shows the token");
    }
    assert!(!ar.to_string().contains(&token), "status never holds the token");
    let c = stack.client_for_token(&token).await;
    let other: Api<Pod> = Api::namespaced(c, "team-b");
    let err = other
        .exec("app", ["true"], &kube::api::AttachParams::default())
        .await
        .err()
        .expect("exec in team-b refused");
    assert!(
        err.to_string().contains("403") || err.to_string().to_lowercase().contains("forbidden"),
        "{err}"
    );

    // echo, resize, stty size; JSON typed into the shell stays data.
    let (mut ws, session) = connect(&stack, &alice, &name, q).await;
    send(&mut ws, "echo hel''lo\r").await;
    expect_output(&mut ws, "hello").await;
    ws.send(Message::Text(
        json!({"type": "resize", "cols": 100, "rows": 30}).to_string().into(),
    ))
    .await
    .unwrap();
    expect_size(&mut ws, "30 100").await;
    send(&mut ws, "echo '{\"type\":\"resize\",\"cols\":1,\"rows\":1}'\r").await;
    expect_output(&mut ws, "\"cols\":1").await;
    send(&mut ws, "stty size\r").await;
    expect_output(&mut ws, "30 100").await;
    // A malformed control frame is answered with an error, not a crash.
    ws.send(Message::Text("{\"type\":\"resize\",\"cols\":0}".into()))
        .await
        .unwrap();
    send(&mut ws, "echo still-$((1+1))\r").await;
    expect_output(&mut ws, "still-2").await;
    // A second session (split view) and a sidecar container.
    let (mut ws2, _) = connect(&stack, &alice, &name, "namespace=team-a&pod=web&container=sidecar").await;
    send(&mut ws2, "echo second\r").await;
    expect_output(&mut ws2, "second").await;
    hold(&stack, &mut ws, "team-a", "app", mark).await;
    hold(&stack, &mut ws2, "team-a", "web", mark + 1).await;
    assert!(shells_in(&stack, "team-a", "app", mark).await > 0);

    // Revoke: both sockets close within a second, with the reason; the shells are gone.
    let r = admin
        .post(&format!("/api/v1/requests/{name}/revoke"), json!({"reason": "done"}))
        .await;
    assert_eq!(r.status(), 200);
    let (reason, waited) = expect_closed(&mut ws).await;
    assert!(reason.contains("revoked"), "{reason}");
    assert!(waited < 1.0, "closed after {waited:.2} s");
    let (reason2, _) = expect_closed(&mut ws2).await;
    assert!(reason2.contains("revoked"), "{reason2}");
    wait_no_shells(&stack, "team-a", "app", mark).await;
    wait_no_shells(&stack, "team-a", "web", mark + 1).await;
    // And nobody can reconnect.
    assert_eq!(refused(&stack, &alice, &name, q, None, true).await, 409);

    // The recording and the command log (admins only).
    let mut r = admin.get(&format!("/api/v1/recordings/{session}")).await;
    for _ in 0..100 {
        if r.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = admin.get(&format!("/api/v1/recordings/{session}")).await;
    }
    assert_eq!(r.status(), 200);
    let cast = r.text().await.unwrap();
    let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(cast.contains("hello") && cast.contains("\"r\",\"100x30\""), "{cast}");
    assert_eq!(alice.get(&format!("/api/v1/recordings/{session}")).await.status(), 403);
    // The command log is flushed when the session ends; give a loaded machine a moment.
    let mut hits = admin.json("/api/v1/commands?q=stty").await;
    for _ in 0..100 {
        if hits["commands"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["line"] == "stty size"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        hits = admin.json("/api/v1/commands?q=stty").await;
    }
    assert!(
        hits["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["line"] == "stty size"),
        "{hits}"
    );
    // Each session's end is stored after its socket closed; give a loaded machine a moment.
    let mut sessions = alice.json(&format!("/api/v1/requests/{name}/sessions")).await;
    for _ in 0..100 {
        let ended = sessions["sessions"]
            .as_array()
            .is_some_and(|a| a.iter().all(|s| !s["endReason"].is_null()));
        if ended {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        sessions = alice.json(&format!("/api/v1/requests/{name}/sessions")).await;
    }
    let closed: Vec<&Value> = sessions["sessions"].as_array().unwrap().iter().collect();
    assert_eq!(closed.len(), 2);
    assert!(closed.iter().all(|s| s["endReason"] == "revoked"), "{sessions}");
    let mut kinds: Vec<String> = Vec::new();
    for _ in 0..100 {
        let audit = admin.json(&format!("/api/v1/audit?request={name}")).await;
        kinds = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        if kinds.iter().filter(|k| *k == "session.closed").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kinds.iter().filter(|k| *k == "session.opened").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "session.closed").count(), 2, "{kinds:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_end_at_expiry_and_on_withdrawal() {
    let stack = Stack::portable("").await;
    let mark = marker();
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;

    // Expiry: a 3-second request.
    let name = active_request(&admin, &alice, &["team-a"], 3).await;
    let (mut ws, _) = connect(&stack, &alice, &name, "namespace=team-a&pod=app").await;
    send(&mut ws, "echo up\r").await;
    expect_output(&mut ws, "up").await;
    hold(&stack, &mut ws, "team-a", "app", mark).await;
    let v = alice.json(&format!("/api/v1/requests/{name}")).await;
    let expires = chrono::DateTime::parse_from_rfc3339(v["expiresAt"].as_str().unwrap()).unwrap();
    let (reason, _) = expect_closed(&mut ws).await;
    let late = (chrono::Utc::now() - expires.with_timezone(&chrono::Utc)).num_milliseconds();
    assert!(reason.contains("expired"), "{reason}");
    assert!(late < 1000, "closed {late} ms after expiresAt");
    wait_no_shells(&stack, "team-a", "app", mark).await;

    // Withdrawal by the requester.
    let name = active_request(&admin, &alice, &["team-b"], 600).await;
    let (mut ws, _) = connect(&stack, &alice, &name, "namespace=team-b&pod=app").await;
    send(&mut ws, "echo up\r").await;
    expect_output(&mut ws, "up").await;
    hold(&stack, &mut ws, "team-b", "app", mark).await;
    assert_eq!(
        alice
            .post(&format!("/api/v1/requests/{name}/withdraw"), json!({}))
            .await
            .status(),
        200
    );
    let (reason, waited) = expect_closed(&mut ws).await;
    assert!(reason.contains("withdrawn"), "{reason}");
    assert!(waited < 1.0, "closed after {waited:.2} s");
    wait_no_shells(&stack, "team-b", "app", mark).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_session_warns_then_closes_and_revokes() {
    let stack = Stack::portable("idleTimeoutSeconds: 3\n").await;
    let mark = marker();
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active_request(&admin, &alice, &["team-a"], 600).await;
    let (mut ws, _) = connect(&stack, &alice, &name, "namespace=team-a&pod=app").await;
    hold(&stack, &mut ws, "team-a", "app", mark).await;
    let mut warned = false;
    let mut reason = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while reason.is_none() {
        assert!(Instant::now() < deadline, "no idle close");
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "idleWarning" {
                    warned = true;
                }
                if v["type"] == "closed" {
                    reason = v["reason"].as_str().map(str::to_string);
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("socket ended early: {other:?}"),
        }
    }
    assert!(warned, "a warning comes before the close");
    assert!(reason.unwrap().contains("idle"));
    let v = alice.wait_phase(&name, "Revoked").await;
    assert_eq!(v["revocation"]["by"], "system:idle-timeout");
    wait_no_shells(&stack, "team-a", "app", mark).await;
    // Audited: the idle close and the revocation.
    let mut ok = false;
    for _ in 0..100 {
        let audit = admin.json(&format!("/api/v1/audit?request={name}")).await;
        let ev = audit["events"].as_array().unwrap();
        let idle_close = ev
            .iter()
            .any(|e| e["kind"] == "session.closed" && e["details"]["reason"] == "idle");
        let revoked = ev
            .iter()
            .any(|e| e["kind"] == "request.revoked" && e["actor"] == "system:idle-timeout");
        if idle_close && revoked {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "idle close and revocation are in the audit log");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_limits_are_enforced_with_a_clear_message() {
    let stack = Stack::portable("web: {maxTerminalsPerUser: 1}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active_request(&admin, &alice, &["team-a"], 600).await;
    let (mut ws, _) = connect(&stack, &alice, &name, "namespace=team-a&pod=app").await;
    assert_eq!(
        refused(&stack, &alice, &name, "namespace=team-a&pod=app", None, true).await,
        429
    );
    ws.close(None).await.unwrap();
    // Once closed, a new one opens.
    let mut ok = false;
    for _ in 0..40 {
        if tokio_tungstenite::connect_async(ws_request(
            &stack,
            &alice,
            &name,
            "namespace=team-a&pod=app",
            None,
            true,
        ))
        .await
        .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a session opens again after the first closed");
    stack.stop().await;
}

/// The request's own client carries exec and log streams, so it has no read timeout; the short calls on
/// it (pod and event lists) are bounded instead, so a stalled target cluster cannot hold a browser
/// request forever. Kubesim-only: the stall is kubesim's fault injection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_target_cluster_answers_503_instead_of_hanging() {
    if janus_testkit::kubesim_only(
        "a_stalled_target_cluster_answers_503_instead_of_hanging",
        "a stalled API path is kubesim's fault injection",
    ) {
        return;
    }
    let stack = Stack::portable("").await;
    let sim = stack.simulated().expect("kubesim");
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active_request(&admin, &alice, &["team-a"], 600).await;
    // Only the pod list of team-a stalls (for far longer than the web's bound); nothing else slows down.
    sim.cluster.faults.set(kubesim::faults::FaultConfig {
        latency_ms: 600_000,
        path_contains: "/api/v1/namespaces/team-a/pods".into(),
        ..Default::default()
    });
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        alice.get(&format!("/api/v1/requests/{name}/pods?namespace=team-a")),
    )
    .await
    .expect("the pod list hangs although the target cluster stalls");
    assert_eq!(r.status(), 503, "{:?}", started.elapsed());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");
    sim.cluster.faults.set(Default::default());
    stack.stop().await;
}
