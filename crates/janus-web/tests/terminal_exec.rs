#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The terminal socket's exec mode (`command=` query parameters, what `janus exec` uses) end to end
//! against kubesim with the real controller: stdout, stderr and the exit code passed through apart,
//! stdin up to `eof`, output streamed while the command runs, a revoke ending a running command, the
//! session recorded, audited and replayable like a shell, and what is refused: roles without shells,
//! commands out of bounds, pods outside the request's scope, other people.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, Session, Stack};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A shell role, a logs role and a debug role (as in tests/scopes.rs).
const CONFIG: &str = r#"
web: {maxOpenRequestsPerUser: 50, maxRequestsPerHour: 500}
roles:
- {name: exec, displayName: Shell, clusterRole: janus-pod-exec, terminal: shell}
- {name: logs, displayName: Logs, clusterRole: janus-pod-logs, terminal: logs}
- {name: debug, displayName: Debug container, clusterRole: janus-pod-debug, terminal: debug, debugImages: ["busybox:1.36"]}
"#;

/// Labelled pods for the pod-scope check.
const SHOP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: shop-1, namespace: team-a, labels: {app: shop}}
spec: {containers: [{name: main, image: debian}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: team-a, labels: {app: other}}
spec: {containers: [{name: main, image: debian}]}
"#;

async fn stack() -> Stack {
    let stack = Stack::start(CONFIG).await;
    stack.sim.load_seed(SHOP).expect("shop pods");
    stack
}

/// An active request of `user` in team-a with `extra` (role, scope).
async fn active(admin: &Session, user: &Session, extra: Value) -> String {
    let mut body = json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "exec test"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let r = user.post("/api/v1/requests", body).await;
    assert_eq!(r.status(), 201);
    let name = r.json::<Value>().await.unwrap()["name"].as_str().unwrap().to_string();
    let r = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
    assert_eq!(r.status(), 200);
    user.wait_phase(&name, "Active").await;
    name
}

/// The query that runs `argv` in `pod` (team-a).
fn exec_query(pod: &str, argv: &[&str]) -> String {
    let mut q = format!("namespace=team-a&pod={pod}");
    for a in argv {
        q.push_str("&command=");
        q.extend(form_urlencoded::byte_serialize(a.as_bytes()));
    }
    q
}

fn ws_request(
    stack: &Stack,
    s: &Session,
    name: &str,
    query: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!("ws://{}/ws/terminal/{name}?{query}&csrf={}", stack.host, s.csrf);
    let mut req = url.into_client_request().expect("request");
    if !s.cookie.is_empty() {
        req.headers_mut().insert("cookie", s.cookie.parse().unwrap());
    }
    req.headers_mut().insert("origin", stack.url.parse().unwrap());
    req
}

/// Connects and waits for `connected`; returns the socket and the session id.
async fn connect(stack: &Stack, s: &Session, name: &str, query: &str) -> (Ws, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(stack, s, name, query))
        .await
        .expect("websocket");
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["type"], "connected", "{v}");
            (ws, v["session"].as_str().unwrap().to_string())
        }
        other => panic!("no connected message: {other:?}"),
    }
}

/// The handshake's refusal: (status, body).
async fn refused(stack: &Stack, s: &Session, name: &str, query: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(ws_request(stack, s, name, query)).await {
        Ok(_) => panic!("the handshake should have been refused: {query}"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => (
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// Everything a command's socket said until it closed.
#[derive(Debug, Default)]
struct Outcome {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<i64>,
    closed: Option<String>,
    errors: Vec<String>,
}

/// Reads frames until the socket ends; the exit code must come before `closed`, and output only
/// before the exit code.
async fn collect(ws: &mut Ws) -> Outcome {
    let mut o = Outcome::default();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                assert!(o.exit.is_none() && o.closed.is_none(), "output after the end: {o:?}");
                match b.first() {
                    Some(1) => o.stdout.extend_from_slice(&b[1..]),
                    Some(2) => o.stderr.extend_from_slice(&b[1..]),
                    other => panic!("an output frame without its stream byte: {other:?}"),
                }
            }
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str().unwrap() {
                    "exit" => {
                        assert!(o.closed.is_none(), "exit after closed: {v}");
                        o.exit = v["code"].as_i64();
                    }
                    "closed" => o.closed = v["reason"].as_str().map(str::to_string),
                    "error" => o.errors.push(v["message"].as_str().unwrap().to_string()),
                    _ => {}
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return o,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the socket did not close; so far {o:?}"),
        }
    }
}

/// Reads until stdout holds `want` (the command is still running).
async fn read_stdout_until(ws: &mut Ws, want: &str) {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(want) {
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) if b.first() == Some(&1) => seen.extend_from_slice(&b[1..]),
            Ok(Some(Ok(Message::Text(t)))) => assert!(!t.contains("\"exit\""), "ended early: {t}"),
            Ok(Some(Ok(_))) => {}
            other => panic!("socket ended while waiting for {want:?}: {other:?}"),
        }
    }
}

/// Polls `path` (as `who`) until `ok` holds.
async fn eventually(who: &Session, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut v = Value::Null;
    for _ in 0..100 {
        let r = who.get(path).await;
        if r.status() == 200 {
            v = r.json().await.unwrap();
            if ok(&v) {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never satisfied the check: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_passes_stdout_stderr_exit_code_and_stdin_and_is_recorded_like_a_shell() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active(&admin, &alice, json!({"role": "exec"})).await;

    // Output and exit code, the streams apart.
    let argv = ["sh", "-c", "echo out; echo err >&2; exit 3"];
    let (mut ws, session) = connect(&stack, &alice, &name, &exec_query("app", &argv)).await;
    let o = collect(&mut ws).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n", "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n", "{o:?}");
    assert_eq!(o.exit, Some(3), "{o:?}");
    assert_eq!(o.closed.as_deref(), Some("the command ended"), "{o:?}");
    assert!(o.errors.is_empty(), "{o:?}");

    // Stdin until eof.
    let (mut ws2, _) = connect(&stack, &alice, &name, &exec_query("app", &["cat"])).await;
    ws2.send(Message::Binary(b"hello\n".to_vec().into())).await.unwrap();
    ws2.send(Message::Binary(b"{\"type\":\"eof\"}".to_vec().into()))
        .await
        .unwrap();
    ws2.send(Message::Text(json!({"type": "eof"}).to_string().into()))
        .await
        .unwrap();
    let o = collect(&mut ws2).await;
    // A JSON text as stdin data stays data; only the text frame closes stdin.
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n{\"type\":\"eof\"}", "{o:?}");
    assert_eq!(o.exit, Some(0), "{o:?}");

    // Output streams while the command runs: "first" arrives although the command then waits for
    // input (a web that held the output back to the end would never show it); then a large output
    // (far beyond every buffer on the way) arrives whole.
    let script = "echo first; read x; echo \"got $x\"; head -c 1000000 /dev/zero | tr '\\0' x; echo; echo done >&2";
    let (mut ws3, _) = connect(&stack, &alice, &name, &exec_query("app", &["sh", "-c", script])).await;
    read_stdout_until(&mut ws3, "first").await;
    ws3.send(Message::Binary(b"y\n".to_vec().into())).await.unwrap();
    let o = collect(&mut ws3).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("got y\n"), "{}", &out[..out.len().min(200)]);
    assert_eq!(out.bytes().filter(|b| *b == b'x').count(), 1_000_000);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "done\n");
    assert_eq!(o.exit, Some(0), "{:?}", o.closed);

    // A program that does not exist: no exit code, an error saying why.
    let (mut ws4, _) = connect(&stack, &alice, &name, &exec_query("app", &["no-such-program-xyz"])).await;
    let o = collect(&mut ws4).await;
    assert_eq!(o.exit, None, "{o:?}");
    assert!(
        o.errors
            .iter()
            .any(|e| e.starts_with("the command did not run:") && e.contains("no-such-program-xyz")),
        "{o:?}"
    );

    // Recorded like a shell: stdout and stderr in the recording, the command in the command log and
    // the replay page (admins), and audited with the command, the mode and the exit code.
    let r = eventually(&admin, &format!("/api/v1/requests/{name}/sessions"), |v| {
        v["sessions"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["id"] == session.as_str() && !s["endReason"].is_null())
        })
    })
    .await;
    assert!(r.to_string().contains(&session), "{r}");
    let rec = admin.get(&format!("/api/v1/recordings/{session}")).await;
    assert_eq!(rec.status(), 200);
    let cast = rec.text().await.unwrap();
    let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert!(
        header["title"]
            .as_str()
            .unwrap()
            .contains("sh -c 'echo out; echo err >&2; exit 3'"),
        "{header}"
    );
    assert!(cast.contains("out\\r\\n") && cast.contains("err\\r\\n"), "{cast}");
    assert_eq!(alice.get(&format!("/api/v1/recordings/{session}")).await.status(), 403);
    let replay = admin.get(&format!("/recordings/{session}")).await;
    assert_eq!(replay.status(), 200);
    assert!(
        replay.text().await.unwrap().contains("echo out"),
        "the replay lists the command"
    );
    let audit = eventually(&admin, &format!("/api/v1/audit?request={name}"), |v| {
        v["events"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["kind"] == "session.closed" && e["details"]["session"] == session.as_str())
        })
    })
    .await;
    let events = audit["events"].as_array().unwrap();
    let mine = |kind: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["details"]["session"] == session.as_str())
            .unwrap_or_else(|| panic!("no {kind} for {session}: {audit}"))
    };
    let opened = mine("session.opened");
    assert_eq!(opened["details"]["mode"], "exec", "{opened}");
    assert_eq!(opened["details"]["command"], json!(argv), "{opened}");
    assert_eq!(mine("session.closed")["details"]["exitCode"], 3);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoke_ends_a_running_exec_and_its_process() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active(&admin, &alice, json!({"role": "exec"})).await;
    let (mut ws, _) = connect(
        &stack,
        &alice,
        &name,
        &exec_query("app", &["sh", "-c", "echo started; sleep 60"]),
    )
    .await;
    read_stdout_until(&mut ws, "started").await;
    assert!(stack.sim.cluster.kubelet.active_processes("team-a", "app") > 0);
    let r = admin
        .post(&format!("/api/v1/requests/{name}/revoke"), json!({"reason": "done"}))
        .await;
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    let o = collect(&mut ws).await;
    let waited = started.elapsed();
    assert_eq!(o.closed.as_deref(), Some("access was revoked"), "{o:?}");
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    assert_eq!(o.exit, None, "a cut-off command reports no exit code: {o:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while stack.sim.cluster.kubelet.active_processes("team-a", "app") > 0 {
        assert!(Instant::now() < deadline, "the command still runs in the pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_is_refused_without_a_shell_role_out_of_bounds_out_of_scope_and_to_others() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;

    // Commands out of bounds, and unknown parameters: 422 with the reason.
    let name = active(&admin, &alice, json!({"role": "exec"})).await;
    let long = "a".repeat(4097);
    let quarter = "b".repeat(4096);
    let many: Vec<&str> = std::iter::repeat_n("x", 65).collect();
    for (query, says) in [
        (exec_query("app", &many), "at most 64 arguments"),
        (exec_query("app", &["echo", &long]), "longer than 4096 bytes"),
        (
            exec_query("app", &["echo", &quarter, &quarter, &quarter, &quarter]),
            "more than 16384",
        ),
        (exec_query("app", &["echo", "a\0b"]), "NUL"),
        (exec_query("app", &["", "x"]), "(the program) is empty"),
        (
            "namespace=team-a&pod=app&comand=ls".to_string(),
            "unknown query parameter",
        ),
    ] {
        let (status, body) = refused(&stack, &alice, &name, &query).await;
        assert_eq!(status, 422, "{says}: {body}");
        assert!(body.contains(says), "{says}: {body}");
    }
    // Within bounds: arguments of the largest size, 12 KiB in all.
    let (mut ws, _) = connect(
        &stack,
        &alice,
        &name,
        &exec_query("app", &["echo", &quarter, &quarter, &quarter]),
    )
    .await;
    assert_eq!(collect(&mut ws).await.exit, Some(0));
    // Who may not: nobody signed in, someone else, an admin on another's request (as for shells).
    let q = exec_query("app", &["true"]);
    assert_eq!(refused(&stack, &stack.anon(), &name, &q).await.0, 401);
    assert_eq!(refused(&stack, &bob, &name, &q).await.0, 404);
    assert_eq!(refused(&stack, &admin, &name, &q).await.0, 403);

    // Roles whose terminal is not a shell.
    let logs = active(&admin, &alice, json!({"role": "logs"})).await;
    let (status, body) = refused(&stack, &alice, &logs, &q).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("offers no shell"), "{body}");
    let debug = active(&admin, &alice, json!({"role": "debug"})).await;
    let (status, body) = refused(&stack, &alice, &debug, &q).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("exec runs commands only under shell roles"), "{body}");

    // A pod outside the request's scope.
    let scoped = active(&admin, &alice, json!({"role": "exec", "podSelector": "app=shop"})).await;
    let (status, body) = refused(&stack, &alice, &scoped, &exec_query("other", &["true"])).await;
    assert_eq!(status, 403, "{body}");
    let (mut ws, _) = connect(&stack, &alice, &scoped, &exec_query("shop-1", &["true"])).await;
    assert_eq!(collect(&mut ws).await.exit, Some(0));
    stack.stop().await;
}

/// What `janus logs` needs from the log endpoint: without `-f` (`follow=false`) the tail and then the
/// end of the body; with it, lines as they come and, when the access ends, a last line saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_endpoint_serves_a_tail_that_ends_and_a_follow_that_says_why_it_ended() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active(&admin, &alice, json!({"role": "exec"})).await;
    for line in ["one", "two", "three"] {
        stack.sim.cluster.logs.append("team-a", "app", "main", line);
    }
    let url = |q: &str| format!("{}/api/v1/requests/{name}/logs?namespace=team-a&pod=app&{q}", stack.url);
    let r = alice.http.get(url("tail=2&follow=false")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .expect("follow=false answers the tail and ends")
        .unwrap();
    assert_eq!(body, "two\nthree\n");
    assert_eq!(
        alice
            .get(&format!(
                "/api/v1/requests/{name}/logs?namespace=team-a&pod=app&follow=maybe"
            ))
            .await
            .status(),
        422
    );

    let mut r = alice.http.get(url("tail=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The closing line carries the stream's nonce from this header (a container cannot forge it).
    let nonce = r.headers()["x-janus-stream-end"].to_str().unwrap().to_string();
    assert_eq!(nonce.len(), 24, "{nonce}");
    let mut seen = String::new();
    while !seen.contains("three\n") {
        let c = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&c));
    }
    let revoke = admin
        .post(&format!("/api/v1/requests/{name}/revoke"), json!({"reason": "done"}))
        .await;
    assert_eq!(revoke.status(), 200);
    let rest = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .expect("the follow ends with the access")
        .unwrap();
    seen.push_str(&rest);
    assert!(
        seen.ends_with(&format!("\n[log stream ended {nonce}: access was revoked]\n")),
        "{seen:?}"
    );
    stack.stop().await;
}

/// Opens exec with `Authorization: Bearer` as `janus exec` does: no csrf parameter, no Origin.
async fn bearer_ws(stack: &Stack, token: &str, name: &str, query: &str) -> Result<Ws, u16> {
    let url = format!("ws://{}/ws/terminal/{name}?{query}", stack.host);
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"connected\"") => Ok(ws),
            other => panic!("no connected message: {other:?}"),
        },
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// `janus exec`'s way in: a personal API token with the `request` scope runs a command and gets its
/// exit code; a `read` token may not; revoking the token ends a running command with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_with_an_api_token_runs_and_ends_when_the_token_is_revoked() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active(&admin, &alice, json!({"role": "exec"})).await;
    let token = |scopes: &'static [&'static str]| {
        let alice = alice.clone();
        async move {
            let r = alice
                .post(
                    "/api/v1/tokens",
                    json!({"name": format!("exec-{}", scopes.join("-")), "scopes": scopes, "expiresInDays": 1}),
                )
                .await;
            assert_eq!(r.status(), 201);
            let v: Value = r.json().await.unwrap();
            (
                v["token"].as_str().unwrap().to_string(),
                v["displayId"].as_str().unwrap().to_string(),
            )
        }
    };
    let (reader, _) = token(&["read"]).await;
    let (runner, runner_id) = token(&["request"]).await;

    let q = exec_query("app", &["sh", "-c", "echo $((6*7)); exit 5"]);
    assert_eq!(bearer_ws(&stack, &reader, &name, &q).await.err(), Some(403));
    let mut ws = bearer_ws(&stack, &runner, &name, &q)
        .await
        .expect("a request token runs exec");
    let o = collect(&mut ws).await;
    assert_eq!(
        (String::from_utf8_lossy(&o.stdout).as_ref(), o.exit),
        ("42\n", Some(5)),
        "{o:?}"
    );

    let q = exec_query("app", &["sh", "-c", "echo started; sleep 60"]);
    let mut ws = bearer_ws(&stack, &runner, &name, &q).await.expect("exec");
    read_stdout_until(&mut ws, "started").await;
    assert_eq!(alice.delete(&format!("/api/v1/tokens/{runner_id}")).await.status(), 204);
    let started = Instant::now();
    let o = collect(&mut ws).await;
    assert_eq!(o.closed.as_deref(), Some("the API token was revoked"), "{o:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(o.exit, None, "{o:?}");
    stack.stop().await;
}
