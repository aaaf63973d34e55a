#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Access roles and pod scopes through the web (issue 16), against kubesim with the real controller:
//! creating requests with a role and a scope (and what is refused, with the field), the scope picker's
//! reads and who may call them, the terminal's pod list limited to the scope, the `logs` role without a
//! shell, and the `debug` role's ephemeral container from an allowed image, attached to and typed into.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, Session, Stack};
use futures::{SinkExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

/// Roles with debug images, a policy allowing only `logs` in team-b, one allowing bob only `logs`.
const CONFIG: &str = r#"
web: {maxOpenRequestsPerUser: 50, maxRequestsPerHour: 500}
roles:
- {name: exec, displayName: Shell, clusterRole: janus-pod-exec, terminal: shell}
- {name: logs, displayName: "Logs (read-only)", description: "Read logs and events.", clusterRole: janus-pod-logs, terminal: logs}
- {name: debug, displayName: Debug container, clusterRole: janus-pod-debug, terminal: debug, debugImages: ["busybox:1.36", "registry.example.com/debug/*"]}
policies:
- {name: bobs, match: {requesterEmails: [bob@example.com]}, approvers: {emails: [admin@example.com]}, allowedRoles: [logs]}
- {name: team-b-read-only, match: {namespaces: [team-b]}, approvers: {emails: [admin@example.com]}, allowedRoles: [logs]}
"#;

/// Pods with labels in team-a (beside the harness's `app` and `web`), and a Deployment whose own pods
/// (kubesim's workload controller creates them) carry other labels, so it never adopts or scales away
/// the hand-made ones.
const SHOP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: shop-1, namespace: team-a, labels: {app: shop, tier: front}}
spec: {containers: [{name: main, image: debian}]}
---
apiVersion: v1
kind: Pod
metadata: {name: shop-2, namespace: team-a, labels: {app: shop, tier: back}}
spec: {containers: [{name: main, image: debian}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: team-a, labels: {app: other}}
spec: {containers: [{name: main, image: debian}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: team-a}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop-web}}
  template:
    metadata: {labels: {app: shop-web}}
    spec: {containers: [{name: main, image: debian}]}
"#;

async fn stack() -> Stack {
    let stack = Stack::start(CONFIG).await;
    stack.sim.load_seed(SHOP).expect("shop workloads");
    stack
}

/// POSTs a request; (status, body).
async fn create(s: &Session, body: Value) -> (u16, Value) {
    let r = s.post("/api/v1/requests", body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn ask(namespaces: &[&str], extra: Value) -> Value {
    let mut body = json!({"cluster": "central", "namespaces": namespaces, "ttlSeconds": 600, "reason": "scopes test"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn names(v: &Value, list: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {v}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_name_a_role_and_a_scope_and_bad_ones_are_refused_with_the_field() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;

    let (st, v) = create(
        &alice,
        ask(
            &["team-a"],
            json!({"role": "logs", "podScope": {"selector": {"matchLabels": {"app": "shop"}}}}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["role"]["name"], "logs");
    assert_eq!(v["role"]["terminal"], "logs");
    assert_eq!(v["scope"], "pods with app=shop");
    assert_eq!(v["access"], "Logs (read-only) · pods with app=shop");

    // The form's text field, in Kubernetes syntax.
    let (st, v) = create(
        &alice,
        ask(
            &["team-a"],
            json!({"role": "exec", "podSelector": "app=shop,tier in (front)"}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["podScope"]["selector"]["matchLabels"]["app"], "shop");
    assert_eq!(v["scope"], "pods with app=shop,tier in (front)");

    // A workload in the request's one namespace; no role: exec.
    let (st, v) = create(
        &alice,
        ask(
            &["team-a"],
            json!({"podScope": {"workload": {"kind": "Deployment", "name": "shop"}}}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["role"]["name"], "exec");
    assert_eq!(v["access"], "Shell · pods of deployment shop");

    // Refusals, each naming its field.
    for (body, field, says) in [
        (ask(&["team-a"], json!({"role": "root"})), "role", "not configured"),
        (
            ask(
                &["team-a", "team-c"],
                json!({"podScope": {"workload": {"kind": "Deployment", "name": "shop"}}}),
            ),
            "podScope",
            "exactly one namespace",
        ),
        (
            ask(
                &["team-a"],
                json!({"podScope": {"workload": {"kind": "StatefulSet", "name": "nope"}}}),
            ),
            "podScope",
            "does not exist",
        ),
        (
            ask(&["team-a"], json!({"podScope": {"selector": {}}})),
            "podScope",
            "empty selector",
        ),
        (
            ask(
                &["team-a"],
                json!({"podScope": {"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}}),
            ),
            "podScope",
            "unknown operator",
        ),
        (
            ask(&["team-a"], json!({"podSelector": "app in (shop"})),
            "podSelector",
            "without its ')'",
        ),
        (
            ask(
                &["team-a"],
                json!({"podSelector": "app=shop", "podScope": {"selector": {"matchLabels": {"app": "x"}}}}),
            ),
            "podScope",
            "not both",
        ),
        // The policy governing team-b allows only logs.
        (
            ask(&["team-b"], json!({"role": "exec"})),
            "role",
            "allows the roles logs",
        ),
    ] {
        let (st, v) = create(&alice, body.clone()).await;
        assert_eq!(st, 422, "{body} -> {v}");
        assert_eq!(v["field"], field, "{body} -> {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body} -> {v}");
    }
    let (st, v) = create(&alice, ask(&["team-b"], json!({"role": "logs"}))).await;
    assert_eq!(st, 201, "logs is allowed in team-b: {v}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scope_picker_reads_workloads_pods_and_roles_for_signed_in_users() {
    let stack = stack().await;
    let anon = stack.anon();
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;

    let workloads = "/api/v1/clusters/central/workloads?namespace=team-a";
    let pods = "/api/v1/clusters/central/pods?namespace=team-a&selector=app%3Dshop";
    for path in [workloads, pods, "/api/v1/roles"] {
        assert_eq!(anon.get(path).await.status(), 401, "{path} anonymous");
        for s in [&alice, &bob, &admin] {
            assert_eq!(s.get(path).await.status(), 200, "{path} as {}", s.email);
        }
    }
    let w = alice.json(workloads).await;
    let shop = w["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "shop")
        .unwrap_or_else(|| panic!("no shop in {w}"));
    assert_eq!(shop["kind"], "Deployment");
    assert_eq!(shop["selector"], "app=shop-web");
    assert_eq!(shop["replicas"], 2);
    assert_eq!(w["truncated"], false, "{w}");

    let p = alice.json(pods).await;
    let matched = names(&p, "pods");
    assert!(
        matched.contains(&"shop-1".to_string()) && matched.contains(&"shop-2".to_string()),
        "{p}"
    );
    assert!(!matched.iter().any(|n| n == "other" || n == "app" || n == "web"), "{p}");
    assert_eq!(p["truncated"], false);
    assert_eq!(p["selector"], "app=shop");
    let one = alice
        .json("/api/v1/clusters/central/pods?namespace=team-a&selector=app%3Dshop%2Ctier%20notin%20(back)")
        .await;
    assert_eq!(names(&one, "pods"), ["shop-1"], "{one}");

    // Excluded, the Janus namespace, unknown ones; a bad selector; an unknown cluster.
    for (path, want) in [
        ("/api/v1/clusters/central/workloads?namespace=kube-system", 422),
        ("/api/v1/clusters/central/workloads?namespace=k8s-janus", 422),
        (
            "/api/v1/clusters/central/pods?namespace=kube-system&selector=a%3Db",
            422,
        ),
        ("/api/v1/clusters/central/workloads?namespace=nowhere", 404),
        (
            "/api/v1/clusters/central/pods?namespace=team-a&selector=app%20in%20(",
            422,
        ),
        ("/api/v1/clusters/central/pods?namespace=team-a&selector=", 422),
        ("/api/v1/clusters/nowhere/workloads?namespace=team-a", 404),
    ] {
        let r = alice.get(path).await;
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, want, "{path}: {body}");
    }

    // Roles: all three for alice; bob's policy allows him only logs; in team-b everyone gets logs only.
    let roles = |v: Value| names(&v, "roles");
    assert_eq!(roles(alice.json("/api/v1/roles").await), ["exec", "logs", "debug"]);
    let r = alice.json("/api/v1/roles").await;
    assert_eq!(r["roles"][1]["description"], "Read logs and events.");
    assert_eq!(r["roles"][2]["debugImages"][0], "busybox:1.36");
    assert_eq!(roles(bob.json("/api/v1/roles").await), ["logs"]);
    assert_eq!(
        roles(alice.json("/api/v1/roles?cluster=central&namespace=team-b").await),
        ["logs"]
    );
    assert_eq!(
        roles(alice.json("/api/v1/roles?cluster=central&namespace=team-a").await),
        ["exec", "logs", "debug"]
    );
    stack.stop().await;
}

// ---- the terminal by role (needs the controller's grants) ----

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_request(
    stack: &Stack,
    s: &Session,
    name: &str,
    query: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!("ws://{}/ws/terminal/{name}?{query}&csrf={}", stack.host, s.csrf);
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert("cookie", s.cookie.parse().unwrap());
    req.headers_mut().insert("origin", stack.url.parse().unwrap());
    req
}

async fn refused(stack: &Stack, s: &Session, name: &str, query: &str) -> u16 {
    match tokio_tungstenite::connect_async(ws_request(stack, s, name, query)).await {
        Ok(_) => panic!("the handshake should have been refused ({query})"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

async fn connect(stack: &Stack, s: &Session, name: &str, query: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(stack, s, name, query))
        .await
        .expect("websocket");
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "connected", "{v}");
                return ws;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no connected message: {other:?}"),
        }
    }
}

async fn expect_output(ws: &mut Ws, want: &str) {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "never saw {want:?}; saw {seen:?}");
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("socket ended while waiting for {want:?}: {other:?}; saw {seen:?}"),
        }
    }
}

async fn active(admin: &Session, user: &Session, body: Value) -> String {
    let (st, v) = create(user, body).await;
    assert_eq!(st, 201, "{v}");
    let name = v["name"].as_str().unwrap().to_string();
    let r = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
    assert_eq!(r.status(), 200, "approve {name}");
    user.wait_phase(&name, "Active").await;
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scoped_logs_request_lists_only_its_pods_and_opens_no_shell() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active(
        &admin,
        &alice,
        ask(&["team-a"], json!({"role": "logs", "podSelector": "app=shop"})),
    )
    .await;
    let r = format!("/api/v1/requests/{name}");
    // Only the pods in scope, and the scope said.
    let mut listed = Vec::new();
    for _ in 0..50 {
        let v = alice.json(&format!("{r}/pods?namespace=team-a")).await;
        listed = names(&v, "pods");
        assert_eq!(v["terminal"], "logs", "{v}");
        if listed.len() >= 2 {
            assert_eq!(v["selector"], "app=shop", "{v}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    listed.sort();
    assert!(listed.iter().all(|n| n.starts_with("shop")), "{listed:?}");
    assert!(
        listed.contains(&"shop-1".into()) && listed.contains(&"shop-2".into()),
        "{listed:?}"
    );
    // No shell under a logs role, whatever the pod.
    assert_eq!(refused(&stack, &alice, &name, "namespace=team-a&pod=shop-1").await, 403);
    // Logs and events work.
    let logs = alice
        .http
        .get(format!("{}{r}/logs?namespace=team-a&pod=shop-1&tail=1", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(logs.status(), 200);
    drop(logs);
    assert_eq!(alice.get(&format!("{r}/events?namespace=team-a")).await.status(), 200);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_debug_request_starts_an_allowed_image_attaches_and_refuses_others() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    let name = active(&admin, &alice, ask(&["team-a"], json!({"role": "debug"}))).await;
    let path = format!("/api/v1/requests/{name}/debug");
    let body = |image: &str| json!({"namespace": "team-a", "pod": "shop-1", "targetContainer": "main", "image": image});
    let pods: Api<Pod> = Api::namespaced(stack.admin_client().await, "team-a");
    let ephemeral = |p: Pod| p.spec.and_then(|s| s.ephemeral_containers).unwrap_or_default().len();

    // An image the role does not list: 422, audited, and nothing patched.
    let r = alice.post(&path, body("alpine:3.20")).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["field"], "image", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not allowed for role debug"),
        "{v}"
    );
    assert_eq!(ephemeral(pods.get("shop-1").await.unwrap()), 0);
    let audit = admin.json(&format!("/api/v1/audit?request={name}")).await;
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "debug.refused" && e["details"]["image"] == "alpine:3.20"),
        "{audit}"
    );
    // Nobody but the requester: bob cannot see it, the admin may see it but not add containers.
    assert_eq!(bob.post(&path, body("busybox:1.36")).await.status(), 404);
    assert_eq!(admin.post(&path, body("busybox:1.36")).await.status(), 403);
    // Without the CSRF token: refused.
    let r = alice
        .http
        .post(format!("{}{path}", stack.url))
        .json(&body("busybox:1.36"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(ephemeral(pods.get("shop-1").await.unwrap()), 0);

    // An allowed image: started, attached to, typed into.
    let r = alice.post(&path, body("busybox:1.36")).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    let container = v["container"].as_str().unwrap().to_string();
    assert!(container.starts_with("janus-debug-"), "{v}");
    let p = pods.get("shop-1").await.unwrap();
    let added = p.spec.unwrap().ephemeral_containers.unwrap();
    assert_eq!(added[0].name, container);
    assert_eq!(added[0].image.as_deref(), Some("busybox:1.36"));
    assert_eq!(added[0].target_container_name.as_deref(), Some("main"));
    let mut ws = connect(
        &stack,
        &alice,
        &name,
        &format!("namespace=team-a&pod=shop-1&container={container}"),
    )
    .await;
    ws.send(Message::Binary(b"echo debug-$((6*7))\r".to_vec().into()))
        .await
        .unwrap();
    expect_output(&mut ws, "debug-42").await;
    drop(ws);
    // The socket attaches to the web's debug containers only.
    assert_eq!(
        refused(&stack, &alice, &name, "namespace=team-a&pod=shop-1&container=main").await,
        422
    );
    assert_eq!(refused(&stack, &alice, &name, "namespace=team-a&pod=shop-1").await, 422);
    let audit = admin.json(&format!("/api/v1/audit?request={name}")).await;
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "debug.started" && e["details"]["container"] == container.as_str()),
        "{audit}"
    );
    // No token anywhere in what the API answered.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(stack.admin_client().await, common::NS);
    let view = alice
        .get(&format!("/api/v1/requests/{name}"))
        .await
        .text()
        .await
        .unwrap();
    for s in secrets.list(&Default::default()).await.unwrap().items {
        if let Some(t) = s.data.as_ref().and_then(|d| d.get("token")) {
            let token = String::from_utf8_lossy(&t.0).to_string();
            assert!(
                !view.contains(&token) && !audit.to_string().contains(&token),
                "a token leaked"
            );
        }
    }

    // Once access ended: refused.
    let r = admin
        .post(&format!("/api/v1/requests/{name}/revoke"), json!({"reason": "done"}))
        .await;
    assert_eq!(r.status(), 200);
    alice.wait_phase(&name, "Revoked").await;
    assert_eq!(alice.post(&path, body("busybox:1.36")).await.status(), 409);
    stack.stop().await;
}

/// The tag the web puts in the names of a request's debug containers: the first 6 hex digits of the
/// SHA-256 of the request's name (computed here independently of the web's code).
fn tag(request: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(request.as_bytes())
        .iter()
        .take(3)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_debug_container_is_attached_only_by_its_own_request_and_only_from_an_allowed_image() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let first = active(&admin, &alice, ask(&["team-a"], json!({"role": "debug"}))).await;
    let second = active(&admin, &alice, ask(&["team-a"], json!({"role": "debug"}))).await;
    let body = |image: &str| json!({"namespace": "team-a", "pod": "shop-1", "targetContainer": "main", "image": image});
    let r = alice
        .post(&format!("/api/v1/requests/{first}/debug"), body("busybox:1.36"))
        .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    let container = v["container"].as_str().unwrap().to_string();
    assert!(container.starts_with(&format!("janus-debug-{}-", tag(&first))), "{v}");

    // The second request, on the same pod, neither lists nor attaches to the first one's container.
    let listed = |v: &Value| -> Vec<String> {
        v["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "shop-1")
            .map(|p| serde_json::from_value(p["debugContainers"].clone()).unwrap())
            .unwrap_or_default()
    };
    let mine = alice
        .json(&format!("/api/v1/requests/{first}/pods?namespace=team-a"))
        .await;
    assert_eq!(listed(&mine), std::slice::from_ref(&container), "{mine}");
    let theirs = alice
        .json(&format!("/api/v1/requests/{second}/pods?namespace=team-a"))
        .await;
    assert!(listed(&theirs).is_empty(), "{theirs}");
    let attach = |c: &str| format!("namespace=team-a&pod=shop-1&container={c}");
    assert_eq!(refused(&stack, &alice, &second, &attach(&container)).await, 422);
    // The first request still attaches to its own.
    let mut ws = connect(&stack, &alice, &first, &attach(&container)).await;
    ws.send(Message::Binary(b"echo mine-$((6*7))\r".to_vec().into()))
        .await
        .unwrap();
    expect_output(&mut ws, "mine-42").await;
    drop(ws);

    // Containers named like the second request's, added by a cluster admin behind the web's back: one
    // from an image off the allow-list is refused; four more make five, and the web starts no sixth.
    let pods: Api<Pod> = Api::namespaced(stack.admin_client().await, "team-a");
    let prefix = format!("janus-debug-{}-", tag(&second));
    let planted: Vec<Value> = ["alpine:3.20", "busybox:1.36", "busybox:1.36", "busybox:1.36", "busybox:1.36"]
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("{prefix}x{i}"), "image": image, "targetContainerName": "main", "stdin": true, "tty": true}))
        .collect();
    pods.patch_ephemeral_containers(
        "shop-1",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(json!({"spec": {"ephemeralContainers": planted}})),
    )
    .await
    .expect("admin adds ephemeral containers");
    let theirs = alice
        .json(&format!("/api/v1/requests/{second}/pods?namespace=team-a"))
        .await;
    assert!(!listed(&theirs).contains(&format!("{prefix}x0")), "{theirs}");
    assert_eq!(
        refused(&stack, &alice, &second, &attach(&format!("{prefix}x0"))).await,
        422
    );
    let r = alice
        .post(&format!("/api/v1/requests/{second}/debug"), body("busybox:1.36"))
        .await;
    assert_eq!(r.status(), 409, "{:?}", r.text().await);
    // An image reference longer than 512 characters: 422 on the image, whatever it starts with.
    let long = format!("registry.example.com/debug/{}", "a".repeat(600));
    let r = alice
        .post(&format!("/api/v1/requests/{first}/debug"), body(&long))
        .await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["field"], "image", "{v}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scope_picker_lists_one_bounded_page_and_says_when_there_is_more() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    // 501 Deployments (no replicas: no pods) in team-b and 201 pods with one label in team-b.
    let mut seed = String::new();
    for i in 0..501 {
        seed.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d{i:03}, namespace: team-b}}\nspec: {{replicas: 0, selector: {{matchLabels: {{d: d{i:03}}}}}, template: {{metadata: {{labels: {{d: d{i:03}}}}}, spec: {{containers: [{{name: main, image: debian}}]}}}}}}\n"
        ));
    }
    for i in 0..201 {
        seed.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: bulk-{i:03}, namespace: team-b, labels: {{bulk: \"yes\"}}}}\nspec: {{containers: [{{name: main, image: debian}}]}}\n"
        ));
    }
    stack.sim.load_seed(&seed).expect("bulk objects");

    let w = alice.json("/api/v1/clusters/central/workloads?namespace=team-b").await;
    let listed = w["workloads"].as_array().unwrap();
    assert_eq!(listed.len(), 500, "{}", listed.len());
    assert_eq!(w["truncated"], true);
    assert_eq!(listed[0]["name"], "d000");
    let p = alice
        .json("/api/v1/clusters/central/pods?namespace=team-b&selector=bulk%3Dyes")
        .await;
    let matched = names(&p, "pods");
    assert_eq!(matched.len(), 200);
    assert_eq!(matched[0], "bulk-000");
    assert_eq!(p["truncated"], true);
    // Exactly the limit: all of them, nothing more to say.
    let pods: Api<Pod> = Api::namespaced(stack.admin_client().await, "team-b");
    pods.patch(
        "bulk-200",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"bulk": "no"}}})),
    )
    .await
    .expect("relabel");
    let p = alice
        .json("/api/v1/clusters/central/pods?namespace=team-b&selector=bulk%3Dyes")
        .await;
    assert_eq!(names(&p, "pods").len(), 200);
    assert_eq!(p["truncated"], false, "{}", p["truncated"]);
    stack.stop().await;
}

/// A logs-only policy in team-c that approves on its own, before a team-c policy that needs a person.
const ROLE_POLICIES: &str = r#"
roles:
- {name: exec, displayName: Shell, clusterRole: janus-pod-exec, terminal: shell}
- {name: logs, displayName: Logs, clusterRole: janus-pod-logs, terminal: logs}
policies:
- {name: logs-auto, match: {namespaces: [team-c], roles: [logs]}, approvers: {emails: [admin@example.com]}, autoApprove: {maxTtlSeconds: 3600}}
- {name: team-c, match: {namespaces: [team-c]}, approvers: {emails: [admin@example.com]}}
- {name: team-b-read-only, match: {namespaces: [team-b]}, approvers: {emails: [admin@example.com]}, allowedRoles: [logs]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_policy_preview_is_evaluated_for_the_role_asked() {
    let stack = Stack::start(ROLE_POLICIES).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let preview = |q: &str| format!("/api/v1/policy?cluster=central&ttlSeconds=600&{q}");
    assert_eq!(
        stack.anon().get(&preview("namespaces=team-c&role=logs")).await.status(),
        401
    );

    // team-c: exec (asked or not) needs a person; logs falls under logs-auto and would be approved now.
    for q in ["namespaces=team-c", "namespaces=team-c&role=exec"] {
        let v = alice.json(&preview(q)).await;
        assert_eq!(v["policy"], "team-c", "{q}: {v}");
        assert_eq!(v["role"], "exec", "{v}");
        assert_eq!(v["autoApproval"]["wouldApprove"], false, "{v}");
    }
    let v = alice.json(&preview("namespaces=team-c&role=logs")).await;
    assert_eq!(v["policy"], "logs-auto", "{v}");
    assert_eq!(v["role"], "logs", "{v}");
    assert_eq!(v["autoApproval"]["wouldApprove"], true, "{v}");
    assert!(v["roleWhyNot"].is_null(), "{v}");
    // The hint agrees with what creating the request does.
    let (st, created) = create(&alice, ask(&["team-c"], json!({"role": "logs"}))).await;
    assert_eq!(st, 201, "{created}");
    alice.wait_phase(created["name"].as_str().unwrap(), "Active").await;

    // allowedRoles: team-b takes logs only; the preview says so for exec.
    let v = alice.json(&preview("namespaces=team-b&role=exec")).await;
    assert_eq!(v["policy"], "team-b-read-only", "{v}");
    assert!(v["roleWhyNot"].as_str().is_some_and(|m| m.contains("exec")), "{v}");
    let v = alice.json(&preview("namespaces=team-b&role=logs")).await;
    assert!(v["roleWhyNot"].is_null(), "{v}");

    // A role the configuration does not list: 422 on role.
    let r = alice.get(&preview("namespaces=team-c&role=root")).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["field"], "role", "{v}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_request_form_refuses_an_unknown_scope_instead_of_all_pods() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let fields = |scope: &'static str| {
        [
            ("cluster", "central"),
            ("namespaces", "team-a"),
            ("ttlSeconds", "600"),
            ("reason", "form scope test"),
            ("role", "logs"),
            ("scope", scope),
            ("podSelector", "app=shop"),
        ]
    };
    let r = alice.form("/requests", &fields("everything")).await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("unknown pod scope"), "{html}");
    let mine = alice.json("/api/v1/requests").await;
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(0), "{mine}");
    // The known values still work: the selector one creates a request scoped to it.
    let r = alice.form("/requests", &fields("selector")).await;
    assert_eq!(r.status(), 303);
    let mine = alice.json("/api/v1/requests").await;
    let made = &mine["items"][0];
    assert_eq!(made["podScope"]["selector"]["matchLabels"]["app"], "shop", "{mine}");
    stack.stop().await;
}
