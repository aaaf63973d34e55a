#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Terminals and log streams end with the right of the person who opened them, on every replica: two
//! web replicas share one PostgreSQL (as `replicaCount > 1` requires); a terminal or log follow opened on
//! replica A ends within a second when its user signs out, is disabled or deleted, or loses the admin
//! right it was opened under, through replica B. Each end is audited with its reason.
//!
//! Also here: log streams have limits of their own (they no longer use up terminal slots), and a
//! recording goes on recording keystrokes after its output limit, auditing the truncation.
//!
//! The two-replica tests start a PostgreSQL cluster of their own with scripts/pg-throwaway.sh.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, NS, Pg, Session, Stack, k8s};
use futures::{SinkExt as _, StreamExt as _};
use janus_web::server::{self, Options};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Generous bound for "within a second" on a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(3);

/// A second web replica on the stack's kubesim and the same database.
struct Replica {
    url: String,
    state: janus_web::state::AppState,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Replica {
    async fn start(stack: &Stack, database_url: &str, extra: &str) -> Replica {
        Self::start_watching(stack, database_url, extra, true).await
    }

    /// `watching: false`: the replica's watch of AccessRequests never runs, so nothing a watch would
    /// bring reaches it. Its empty cache is declared synced only until `/readyz` answers: a synced cache
    /// without a session's request would have the clock loop end the session as deleted.
    async fn start_watching(stack: &Stack, database_url: &str, extra: &str, watching: bool) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut doc: yaml_serde::Mapping = yaml_serde::from_str(extra).unwrap_or_default();
        for (k, v) in [
            ("adminEmails", "[admin@example.com]"),
            ("approvalTtlOptions", "[600, 900]"),
            ("idleTimeoutSeconds", "0"),
        ] {
            let key = yaml_serde::Value::from(k);
            if !doc.contains_key(&key) {
                doc.insert(key, yaml_serde::from_str(v).expect("default"));
            }
        }
        let cfg = k8s::config(&yaml_serde::to_string(&doc).expect("yaml"));
        let token = k8s::sa_token(&stack.sim, NS, "k8s-janus-web").await;
        let client = stack.sim.client_for_token(&token).await.expect("web client");
        let opts = Options {
            listen: addr,
            metrics_listen: None,
            database_url: Some(database_url.to_string()),
            database_password: None,
            session_key: Some("k".repeat(48)),
            bootstrap_admin: None,
            replica: "replica-b".into(),
            central_server: stack.sim.url(),
            central_ca_pem: stack.sim.ca_pem().to_string(),
            oidc_client_secret: None,
        };
        let (state, watch) = server::build_state(cfg, client.clone(), &opts).await.expect("state");
        let watch: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = if watching {
            Box::pin(watch)
        } else {
            state.cache_ready.store(true, std::sync::atomic::Ordering::Relaxed);
            Box::pin(std::future::pending())
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let served = state.clone();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = server::serve(served, client, opts, listener, stop, watch).await {
                panic!("replica b failed: {e}");
            }
        });
        let url = format!("http://{addr}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await
                && r.status().is_success()
                && r.text().await.unwrap_or_default() == "ready"
            {
                if !watching {
                    state.cache_ready.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                return Replica {
                    url,
                    state,
                    task,
                    stop: Some(tx),
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replica b never became ready");
    }

    /// The same login session, talking to this replica.
    fn as_(&self, s: &Session) -> Session {
        Session {
            base: self.url.clone(),
            ..s.clone()
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(stack: &Stack, s: &Session, name: &str, query: &str) -> Ws {
    let url = format!("ws://{}/ws/terminal/{name}?{query}&csrf={}", stack.host, s.csrf);
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert("cookie", s.cookie.parse().expect("cookie"));
    req.headers_mut().insert("origin", stack.url.parse().expect("origin"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("websocket");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("control");
                assert_eq!(v["type"], "connected", "{v}");
                return ws;
            }
            Ok(Some(Ok(Message::Binary(_)))) => {}
            other => panic!("no connected message: {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Binary(text.as_bytes().to_vec().into()))
        .await
        .expect("send");
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

/// Waits (at most [`BOUND`]) for the `closed` control message and the end of the socket; the reason.
async fn expect_closed(ws: &mut Ws, what: &str) -> String {
    let deadline = Instant::now() + BOUND;
    let mut reason = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("control");
                if v["type"] == "closed" {
                    reason = v["reason"].as_str().map(str::to_string);
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("{what}: the terminal was still open {BOUND:?} later"),
        }
    }
    reason.unwrap_or_else(|| panic!("{what}: no closed message with a reason"))
}

/// Asserts the terminal still works.
async fn still_open(ws: &mut Ws, marker: &str) {
    send(ws, &format!("echo {marker}-$((2+3))\r")).await;
    expect_output(ws, &format!("{marker}-5")).await;
}

async fn active_request(admin: &Session, user: &Session, namespaces: &[&str]) -> String {
    let name = user.request(namespaces, 600, "terminal test").await;
    let r = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
    assert_eq!(r.status(), 200);
    user.wait_phase(&name, "Active").await;
    name
}

/// A followed log, read as it streams.
struct LogFollow {
    resp: reqwest::Response,
    seen: String,
}

impl LogFollow {
    async fn open(s: &Session, name: &str, pod: &str) -> reqwest::Response {
        s.http
            .get(format!(
                "{}/api/v1/requests/{name}/logs?namespace=team-a&pod={pod}&tail=0",
                s.base
            ))
            .send()
            .await
            .expect("logs")
    }

    async fn start(s: &Session, name: &str) -> LogFollow {
        let resp = Self::open(s, name, "app").await;
        assert_eq!(resp.status(), 200, "log follow");
        LogFollow {
            resp,
            seen: String::new(),
        }
    }

    async fn expect(&mut self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.seen.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(c))) => self.seen.push_str(&String::from_utf8_lossy(&c)),
                other => panic!("log stream: never saw {want:?} ({other:?}); saw {:?}", self.seen),
            }
        }
    }

    /// Waits (at most [`BOUND`]) for the stream to end; returns its last words.
    async fn expect_end(&mut self, what: &str) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(c))) => self.seen.push_str(&String::from_utf8_lossy(&c)),
                Ok(_) => return self.seen.clone(),
                Err(_) => panic!("{what}: the log stream was still open {BOUND:?} later"),
            }
        }
    }
}

/// Waits for an audit event matching `pred` for a request.
async fn audited(admin: &Session, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let v = admin.json(&format!("/api/v1/audit?request={name}")).await;
        if let Some(e) = v["events"].as_array().and_then(|a| a.iter().find(|e| pred(e))) {
            return e.clone();
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: no such audit event in {last}");
}

fn closed_with(reason: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["kind"] == "session.closed" && e["details"]["reason"] == reason
}

/// Waits until every terminal session of the request has its end stored; returns them.
async fn ended_sessions(s: &Session, name: &str) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..100 {
        let v = s.json(&format!("/api/v1/requests/{name}/sessions")).await;
        last = v["sessions"].as_array().cloned().unwrap_or_default();
        if last.iter().all(|x| !x["endReason"].is_null()) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sessions of {name} not ended: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signing_out_on_one_replica_ends_terminals_and_log_streams_on_the_other() {
    let pg = Pg::start();
    let stack = Stack::start_full(|_| String::new(), None, Some(pg.url.clone())).await;
    let b = Replica::start(&stack, &pg.url, "").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    // The same person signed in a second time (another browser): that login is not signed out.
    let alice_elsewhere = stack.login("alice", common::PASSWORD).await;
    let name = active_request(&admin, &alice, &["team-a"]).await;

    let mut ws = connect(&stack, &alice, &name, "namespace=team-a&pod=app").await;
    still_open(&mut ws, "up").await;
    let mut other = connect(&stack, &alice_elsewhere, &name, "namespace=team-a&pod=app").await;
    let mut logs = LogFollow::start(&alice, &name).await;
    stack.sim.cluster.logs.append("team-a", "app", "main", "log-line-one");
    logs.expect("log-line-one").await;

    // Sign out through replica B.
    let r = b.as_(&alice).post("/api/v1/logout", json!({})).await;
    assert_eq!(r.status(), 200);
    let reason = expect_closed(&mut ws, "logout").await;
    assert!(reason.contains("signed out"), "{reason}");
    let last = logs.expect_end("logout").await;
    assert!(
        last.contains("[log stream ended ") && last.contains(": you were signed out]"),
        "{last}"
    );
    // Only that login's streams: the other sign-in keeps its terminal.
    still_open(&mut other, "other").await;
    stack.sim.cluster.logs.append("team-a", "app", "main", "after-logout");

    // Audited with the reason, and the session row says why it ended.
    let e = audited(&admin, &name, "logout", closed_with("logout")).await;
    assert_eq!(e["actor"], "alice@example.com");
    let e = audited(&admin, &name, "log stream", |e| e["kind"] == "logs.closed").await;
    assert_eq!(e["details"]["reason"], "logout", "{e}");
    assert_eq!(e["details"]["pod"], "app", "{e}");
    other.close(None).await.expect("close");
    let sessions = ended_sessions(&alice_elsewhere, &name).await;
    let reasons: Vec<&str> = sessions.iter().filter_map(|s| s["endReason"].as_str()).collect();
    assert!(reasons.contains(&"logout") && reasons.contains(&"user"), "{reasons:?}");
    b.stop().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_deleting_and_demoting_on_one_replica_end_terminals_on_the_other() {
    let pg = Pg::start();
    let cfg = "web: {adminTerminalAccess: true}\n";
    let stack = Stack::start_full(|_| cfg.to_string(), None, Some(pg.url.clone())).await;
    let b = Replica::start(&stack, &pg.url, cfg).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let admin_b = b.as_(&admin);
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    let carol = stack.user(&admin, "carol", "carol@example.com", false).await;
    let erin = stack.user(&admin, "erin", "erin@example.com", false).await;
    let dave = stack.user(&admin, "dave", "dave@example.com", true).await;
    let bob_req = active_request(&admin, &bob, &["team-a"]).await;
    let carol_req = active_request(&admin, &carol, &["team-a"]).await;
    let erin_req = active_request(&admin, &erin, &["team-a"]).await;

    // Disabled through replica B: bob's terminal and log stream on replica A end.
    let mut ws = connect(&stack, &bob, &bob_req, "namespace=team-a&pod=app").await;
    still_open(&mut ws, "bob").await;
    let mut logs = LogFollow::start(&bob, &bob_req).await;
    let r = admin_b.patch("/api/v1/users/bob", json!({"disabled": true})).await;
    assert_eq!(r.status(), 200);
    let reason = expect_closed(&mut ws, "disable").await;
    assert!(reason.contains("disabled"), "{reason}");
    let last = logs.expect_end("disable").await;
    assert!(last.contains("account was disabled"), "{last}");
    audited(&admin, &bob_req, "disable", closed_with("user-disabled")).await;
    let e = audited(&admin, &bob_req, "disable (logs)", |e| e["kind"] == "logs.closed").await;
    assert_eq!(e["details"]["reason"], "user-disabled", "{e}");

    // Deleted through replica B.
    let mut ws = connect(&stack, &carol, &carol_req, "namespace=team-a&pod=app").await;
    still_open(&mut ws, "carol").await;
    assert_eq!(admin_b.delete("/api/v1/users/carol").await.status(), 204);
    let reason = expect_closed(&mut ws, "delete").await;
    assert!(reason.contains("deleted"), "{reason}");
    audited(&admin, &carol_req, "delete", closed_with("user-deleted")).await;

    // An admin on someone else's request (adminTerminalAccess) loses the admin right through B.
    let mut erins_own = connect(&stack, &erin, &erin_req, "namespace=team-a&pod=app").await;
    let mut ws = connect(&stack, &dave, &erin_req, "namespace=team-a&pod=app").await;
    still_open(&mut ws, "dave").await;
    let r = admin_b.patch("/api/v1/users/dave", json!({"isAdmin": false})).await;
    assert_eq!(r.status(), 200);
    let reason = expect_closed(&mut ws, "demotion").await;
    assert!(reason.contains("admin rights"), "{reason}");
    let e = audited(&admin, &erin_req, "demotion", closed_with("admin-removed")).await;
    assert_eq!(e["actor"], "dave@example.com");
    // The requester's own terminal on the same request is not touched.
    still_open(&mut erins_own, "erin").await;
    let sessions = ended_sessions(&admin, &bob_req).await;
    assert_eq!(sessions[0]["endReason"], "user-disabled");
    b.stop().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_streams_have_their_own_limits_and_leave_terminal_slots_alone() {
    let stack = Stack::start("web: {maxLogStreamsPerUser: 2, maxTerminalsPerReplica: 2}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    let name = active_request(&admin, &alice, &["team-a"]).await;
    let bobs = active_request(&admin, &bob, &["team-a"]).await;

    let _l1 = LogFollow::start(&alice, &name).await;
    let _l2 = LogFollow::start(&alice, &name).await;
    let r = LogFollow::open(&alice, &name, "app").await;
    assert_eq!(r.status(), 429, "a third log stream is refused");
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("log streams") && body.contains("limit is 2"), "{body}");
    // Others still open log streams, and terminal slots are untouched by log streams.
    let _bl = LogFollow::start(&bob, &bobs).await;
    let mut a = connect(&stack, &alice, &name, "namespace=team-a&pod=app").await;
    let mut bt = connect(&stack, &bob, &bobs, "namespace=team-a&pod=app").await;
    still_open(&mut a, "alice").await;
    still_open(&mut bt, "bob").await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keystrokes_after_the_output_limit_are_recorded_and_the_truncation_audited() {
    let stack = Stack::start("web: {recordingMaxBytes: 4096}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active_request(&admin, &alice, &["team-a"]).await;
    let mut ws = connect(&stack, &alice, &name, "namespace=team-a&pod=app").await;
    // Floods the output past the limit.
    send(&mut ws, "printf '%020000d\\n' 0; echo flood-$((1+1))\r").await;
    expect_output(&mut ws, "flood-2").await;
    send(&mut ws, "echo typed-after-the-cap\r").await;
    expect_output(&mut ws, "typed-after-the-cap").await;
    ws.close(None).await.expect("close");
    let sessions = ended_sessions(&alice, &name).await;
    let session = sessions[0]["id"].as_str().expect("id").to_string();

    let e = audited(&admin, &name, "truncation", |e| {
        e["kind"] == "session.recording_truncated"
    })
    .await;
    assert_eq!(e["details"]["stream"], "output", "{e}");
    assert_eq!(e["details"]["session"], session.as_str(), "{e}");
    let cast = admin.get(&format!("/api/v1/recordings/{session}")).await;
    assert_eq!(cast.status(), 200);
    let cast = cast.text().await.expect("cast");
    let typed: String = cast
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e[1] == "i")
        .filter_map(|e| e[2].as_str().map(str::to_string))
        .collect();
    assert!(
        typed.contains("echo typed-after-the-cap"),
        "keystrokes after the cap: {typed:?}"
    );
    assert!(
        cast.contains("output size limit reached"),
        "the replay says where output stops"
    );
    stack.stop().await;
}

/// Runs SQL on the test's PostgreSQL with psql: rows the API refuses to make, as migration 2 leaves them.
fn psql(url: &str, sql: &str) {
    let mut candidates = vec![std::path::PathBuf::from("psql")];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
        candidates.extend(dirs.flatten().map(|d| d.path().join("bin/psql")));
    }
    candidates.push("/usr/local/bin/psql".into());
    for bin in candidates {
        match std::process::Command::new(&bin)
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql, url])
            .output()
        {
            Ok(out) => {
                assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("psql: {e}"),
        }
    }
    panic!("psql not found (PATH, /usr/lib/postgresql/*/bin, /usr/local/bin)");
}

/// Migration 2 keeps one enabled account per email and leaves the other accounts of that email disabled,
/// sharing it. Those duplicates must neither end the kept account's terminals and log streams (as
/// disabled, or as no longer admin) nor, when an admin changes or deletes them, sign it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_duplicate_of_an_email_neither_ends_nor_signs_out_its_enabled_account() {
    let pg = Pg::start();
    let cfg = "web: {adminTerminalAccess: true}\n";
    let stack = Stack::start_full(|_| cfg.to_string(), None, Some(pg.url.clone())).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let dave = stack.user(&admin, "dave", "dave@example.com", true).await;
    // Non-admin disabled duplicates in another case: one older than the account kept, one newer.
    psql(
        &pg.url,
        "INSERT INTO users (username, email, is_admin, disabled, password_hash, failed_logins, created_us, \
         updated_us) VALUES ('alice-old', 'Alice@Example.com', FALSE, TRUE, 'x', 0, 1, 1), \
         ('dave-new', 'DAVE@example.COM', FALSE, TRUE, 'x', 0, 4102444800000000, 4102444800000000)",
    );
    let name = active_request(&admin, &alice, &["team-a"]).await;
    let mut ws = connect(&stack, &alice, &name, "namespace=team-a&pod=app").await;
    let mut logs = LogFollow::start(&alice, &name).await;
    // Dave's terminal on alice's request stands on his admin right alone.
    let mut as_admin = connect(&stack, &dave, &name, "namespace=team-a&pod=app").await;

    // Several owner checks (twice a second) later, everything is open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    still_open(&mut ws, "alice").await;
    still_open(&mut as_admin, "dave").await;
    stack
        .sim
        .cluster
        .logs
        .append("team-a", "app", "main", "still-following");
    logs.expect("still-following").await;

    // Changing and deleting the duplicates signs nobody out and ends nothing.
    for (user, change) in [
        ("alice-old", json!({"disabled": true})),
        ("alice-old", json!({"password": "another horse battery staple"})),
        ("dave-new", json!({"isAdmin": false})),
    ] {
        let r = admin.patch(&format!("/api/v1/users/{user}"), change.clone()).await;
        assert_eq!(r.status(), 200, "{user} {change}");
    }
    assert_eq!(admin.delete("/api/v1/users/alice-old").await.status(), 204);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    still_open(&mut ws, "alice-after").await;
    still_open(&mut as_admin, "dave-after").await;
    stack
        .sim
        .cluster
        .logs
        .append("team-a", "app", "main", "after-the-changes");
    logs.expect("after-the-changes").await;
    for s in [&alice, &dave] {
        assert_eq!(
            s.get("/api/v1/session").await.status(),
            200,
            "{} still signed in",
            s.email
        );
    }

    // The enabled account itself: disabling it still ends its terminal at once.
    let r = admin.patch("/api/v1/users/alice", json!({"disabled": true})).await;
    assert_eq!(r.status(), 200);
    let reason = expect_closed(&mut ws, "disable").await;
    assert!(reason.contains("disabled"), "{reason}");
    let last = logs.expect_end("disable").await;
    assert!(last.contains("account was disabled"), "{last}");
    stack.stop().await;
}

/// A browser that stops reading while the shell floods its output cannot keep the exec stream (and the
/// shell) open past signing out: the close signal wins over the wait on the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_that_stops_reading_cannot_keep_its_shell_past_logout() {
    let stack = Stack::start("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active_request(&admin, &alice, &["team-a"]).await;
    let shells = || stack.sim.cluster.kubelet.active_processes("team-a", "app");
    let mut ws = connect(&stack, &alice, &name, "namespace=team-a&pod=app").await;
    still_open(&mut ws, "up").await;
    send(&mut ws, "yes flood-of-output-nobody-reads\r").await;
    expect_output(&mut ws, "flood-of-output-nobody-reads\r\nflood").await;
    // From here on the browser reads nothing: socket buffers fill and the server waits on the browser.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(shells() > 0, "the shell runs");

    let r = alice.post("/api/v1/logout", json!({})).await;
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while shells() > 0 {
        assert!(
            Instant::now() < deadline,
            "the shell of a browser that stopped reading still runs 5 s after logout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The end is recorded and audited though the browser never got the last words.
    audited(&admin, &name, "logout", closed_with("logout")).await;
    let sessions = ended_sessions(&admin, &name).await;
    assert_eq!(sessions[0]["endReason"], "logout");
    drop(ws);
    stack.stop().await;
}

/// The same for a log follow: a reader that stops reading while the pod floods its log cannot keep the
/// follow (held with the request's token) open past signing out. The reader is a raw socket with a
/// small receive buffer, so that the server really has to wait on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_reader_that_stops_reading_cannot_keep_the_follow_past_logout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stack = Stack::start("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = active_request(&admin, &alice, &["team-a"]).await;
    let followers = || stack.sim.cluster.logs.followers("team-a", "app", "main");

    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut conn = sock.connect(stack.host.parse().unwrap()).await.unwrap();
    let head = format!(
        "GET /api/v1/requests/{name}/logs?namespace=team-a&pod=app&tail=0 HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n",
        stack.host, alice.cookie
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    // Lines written before the follow starts are not shown (tail=0): write until one arrives.
    for _ in 0..50 {
        if String::from_utf8_lossy(&seen).contains("first-line") {
            break;
        }
        stack.sim.cluster.logs.append("team-a", "app", "main", "first-line");
        if let Ok(n) = tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await {
            let n = n.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("first-line"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // From here on the reader reads nothing while the pod writes far more than socket buffers hold.
    let line = "x".repeat(1000);
    let flood_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < flood_until {
        for _ in 0..500 {
            stack.sim.cluster.logs.append("team-a", "app", "main", &line);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(followers(), 1, "the follow is still open upstream before the logout");
    let r = alice.post("/api/v1/logout", json!({})).await;
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while followers() > 0 {
        assert!(
            Instant::now() < deadline,
            "the log follow of a reader that stopped reading is still open upstream 5 s after logout"
        );
        // The pod keeps writing, as a busy pod does.
        stack.sim.cluster.logs.append("team-a", "app", "main", &line);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    audited(&admin, &name, "log stream end", |e| {
        e["kind"] == "logs.closed" && e["details"]["reason"] == "logout"
    })
    .await;
    drop(conn);
    stack.stop().await;
}

/// The replica that stores a revocation or a withdrawal ends its own sessions of the request as soon
/// as the decision is written, not when its watch brings the change back (issue 19: a revoke closes
/// the sessions within 1 s). Replica B's watch never runs here, so only the decision can end them;
/// the other replicas still learn it from their watches (the tests above).
#[tokio::test]
async fn the_replica_that_stores_an_ending_decision_ends_its_own_sessions_at_once() {
    use janus_web::terminal::{Owner, StreamKind};
    let pg = Pg::start();
    let stack = Stack::start_full(|_| String::new(), None, Some(pg.url.clone())).await;
    let b = Replica::start_watching(&stack, &pg.url, "", false).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let revoked = active_request(&admin, &alice, &["team-a"]).await;
    let withdrawn = active_request(&admin, &alice, &["team-a"]).await;
    let kept = active_request(&admin, &alice, &["team-a"]).await;
    // Sessions as B registers them when it serves a terminal (no login hash: no owner check ends them).
    let open = |id: &str, request: &str| {
        let owner = Owner {
            user: "alice@example.com".into(),
            login: None,
            local: false,
            admin_only: false,
            personal_token: false,
        };
        b.state
            .terminals
            .register(id, StreamKind::Terminal, request, owner, 10, 10)
            .expect("registered")
    };
    let mut on_revoked = open("t-revoked", &revoked);
    let mut on_withdrawn = open("t-withdrawn", &withdrawn);
    let mut on_kept = open("t-kept", &kept);

    // An admin's revocation through B's API.
    let r = b
        .as_(&admin)
        .post(&format!("/api/v1/requests/{revoked}/revoke"), json!({"reason": "done"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        on_revoked.borrow_and_update().as_ref().map(|r| r.category),
        Some("revoked"),
        "ended when the answer came"
    );
    // The requester's withdrawal through B's pages.
    let r = b
        .as_(&alice)
        .form(&format!("/requests/{withdrawn}/withdraw"), &[])
        .await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(
        on_withdrawn.borrow_and_update().as_ref().map(|r| r.category),
        Some("withdrawn"),
        "a withdrawal through the pages ends the session too"
    );
    // A request no decision ended keeps its session.
    assert!(on_kept.borrow_and_update().is_none());
    b.stop().await;
}
