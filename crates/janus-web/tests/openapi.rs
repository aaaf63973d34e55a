#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The generated OpenAPI document against the real server: it lists exactly the routes the router serves,
//! and every answer the real stack (kubesim, controller, web) gives — successes and 401/403/404/409/422
//! errors alike — has a status the document declares for that path and method, and a body that validates
//! against the schema it declares (JSON Schema 2020-12, as OpenAPI 3.1 uses).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{ADMIN, PASSWORD, Session, Stack};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

/// The document and the (path, method, status) triples the test saw, to check coverage at the end.
struct Checker {
    doc: Value,
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl Checker {
    /// The template of `path` (no query) among the document's paths that has `method`: the one with the
    /// most literal segments, so `/requests/{name}/timeline` wins over `/requests/{name}/{action}`.
    fn template(&self, method: &str, path: &str) -> String {
        let segs: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, String)> = None;
        for (tmpl, item) in self.doc["paths"].as_object().expect("paths") {
            if item.get(method).is_none() {
                continue;
            }
            let t: Vec<&str> = tmpl.split('/').collect();
            if t.len() != segs.len() {
                continue;
            }
            let fits = t.iter().zip(&segs).all(|(a, b)| a.starts_with('{') || a == b);
            let literal = t.iter().filter(|s| !s.starts_with('{')).count();
            if fits && best.as_ref().is_none_or(|(n, _)| literal > *n) {
                best = Some((literal, tmpl.clone()));
            }
        }
        match best {
            Some((_, t)) => t,
            None => panic!("{method} {path} is not in the generated document"),
        }
    }

    /// Checks a real answer against the document; returns its JSON body (Null when it has none).
    async fn check(&self, method: &str, url_path: &str, r: reqwest::Response) -> (u16, Value) {
        let path = url_path.split('?').next().unwrap_or_default();
        let tmpl = self.template(method, path);
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let text = r.text().await.expect("body");
        let declared = &self.doc["paths"][&tmpl][method]["responses"][status.to_string()];
        assert!(
            declared.is_object(),
            "{method} {url_path} answered {status}, which the document does not declare for {tmpl}: {text}"
        );
        self.seen
            .lock()
            .expect("lock")
            .insert((tmpl.clone(), method.to_string(), status));
        let Some(content) = declared.get("content").and_then(Value::as_object) else {
            assert!(
                text.is_empty(),
                "{method} {url_path} {status}: the document declares no body, got {text}"
            );
            return (status, Value::Null);
        };
        let Some(media) = content.get(&ctype) else {
            panic!(
                "{method} {url_path} {status}: content type {ctype:?} is not among the declared {:?}",
                content.keys().collect::<Vec<_>>()
            );
        };
        if ctype != "application/json" {
            return (status, Value::Null);
        }
        let body: Value = serde_json::from_str(&text).expect("a JSON body");
        let schema = media.get("schema").expect("a declared schema");
        // The response schema refers to #/components/schemas/…: validate against a root that holds both.
        let mut root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        close(&mut root);
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .expect("the declared schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {url_path} {status}: the body does not match the schema the document declares for {tmpl}: {errors:?}\nbody: {body}"
        );
        (status, body)
    }

    async fn get(&self, s: &Session, path: &str) -> (u16, Value) {
        self.check("get", path, s.get(path).await).await
    }

    async fn post(&self, s: &Session, path: &str, body: Value) -> (u16, Value) {
        self.check("post", path, s.post(path, body).await).await
    }

    async fn patch(&self, s: &Session, path: &str, body: Value) -> (u16, Value) {
        self.check("patch", path, s.patch(path, body).await).await
    }

    async fn delete(&self, s: &Session, path: &str) -> (u16, Value) {
        self.check("delete", path, s.delete(path).await).await
    }
}

/// Makes every object schema with listed properties closed, so that a field the server sends but the
/// document does not declare fails the check too (the generator leaves objects open).
fn close(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            m.values_mut().for_each(close);
        }
        Value::Array(a) => a.iter_mut().for_each(close),
        _ => {}
    }
}

/// Logs in through the checker (so the login answer is validated too).
async fn login(c: &Checker, stack: &Stack, user: &str, password: &str) -> Session {
    let mut s = stack.anon();
    let r = s
        .http
        .post(format!("{}/api/v1/login", stack.url))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("login");
    s.cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_string();
    let (status, body) = c.check("post", "/api/v1/login", r).await;
    assert_eq!(status, 200, "login of {user}: {body}");
    s.csrf = body["csrfToken"].as_str().expect("csrf").to_string();
    s.email = body["identity"]["email"].as_str().expect("email").to_string();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_real_answer_matches_the_generated_document() {
    // A small failed-login budget per address, so that the login's 429 is reachable.
    // The shipped roles, with an image for debug (issue 16: the debug endpoint answers too).
    let stack = Stack::start(
        "web: {loginMaxFailuresPerAddress: 4}\nroles:\n- {name: exec, clusterRole: janus-pod-exec, terminal: shell}\n\
         - {name: logs, clusterRole: janus-pod-logs, terminal: logs}\n\
         - {name: debug, clusterRole: janus-pod-debug, terminal: debug, debugImages: [\"busybox:1.36\"]}\n",
    )
    .await;
    let anon = stack.anon();

    // The document as the server serves it, YAML and JSON alike, to anyone.
    let r = anon.get("/api/v1/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.expect("JSON document");
    assert!(
        doc["openapi"].as_str().expect("version").starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let r = anon.get("/api/v1/openapi.yaml").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/yaml");
    let yaml: Value = yaml_serde::from_str(&r.text().await.expect("text")).expect("YAML document");
    assert_eq!(yaml, doc, "the YAML and JSON forms differ");
    assert_eq!(
        doc,
        serde_json::to_value(janus_web::api::openapi::document()).expect("value")
    );
    let c = Checker {
        doc,
        seen: Mutex::new(BTreeSet::new()),
    };
    c.get(&anon, "/api/v1/openapi.json").await;
    c.get(&anon, "/api/v1/openapi.yaml").await;

    // 401 without a session, 422 for a wrong password or a malformed body.
    assert_eq!(c.get(&anon, "/api/v1/session").await.0, 401);
    assert_eq!(c.get(&anon, "/api/v1/requests").await.0, 401);
    assert_eq!(c.get(&anon, "/api/v1/clusters").await.0, 401);
    assert_eq!(c.post(&anon, "/api/v1/requests", json!({})).await.0, 401);
    let (s, e) = c
        .post(
            &anon,
            "/api/v1/login",
            json!({"username": "admin", "password": "wrong"}),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (422, Some("invalid")));
    assert_eq!(c.post(&anon, "/api/v1/login", json!({"user": "admin"})).await.0, 422);

    let admin = login(&c, &stack, ADMIN.0, ADMIN.1).await;
    assert_eq!(c.get(&admin, "/api/v1/session").await.0, 200);

    // The CLI's sign-in: a CLI session for a local account (422 like the web login); the OIDC device
    // flow is 404 in local mode (its successes are checked in tests/oidc.rs against a real provider).
    let (s, cli) = c
        .post(
            &anon,
            "/api/v1/cli/login",
            json!({"username": ADMIN.0, "password": ADMIN.1}),
        )
        .await;
    assert_eq!(s, 200, "{cli}");
    assert_eq!(
        c.post(&anon, "/api/v1/cli/login", json!({"username": "admin"})).await.0,
        422
    );
    assert_eq!(c.post(&anon, "/api/v1/cli/device", json!({})).await.0, 404);
    assert_eq!(
        c.post(&anon, "/api/v1/cli/device/token", json!({"deviceCode": "x"}))
            .await
            .0,
        404
    );

    // Users: 201, 409, 422, 200, 404, 409 (oneself), 204.
    let mk = |u: &str, admin: bool| json!({"username": u, "email": format!("{u}@example.com"), "password": PASSWORD, "isAdmin": admin});
    assert_eq!(c.post(&admin, "/api/v1/users", mk("alice", false)).await.0, 201);
    assert_eq!(c.post(&admin, "/api/v1/users", mk("bob", false)).await.0, 201);
    assert_eq!(c.post(&admin, "/api/v1/users", mk("carol", false)).await.0, 201);
    assert_eq!(c.post(&admin, "/api/v1/users", mk("alice", false)).await.0, 409);
    let short = json!({"username": "dave", "email": "dave@example.com", "password": "short"});
    assert_eq!(c.post(&admin, "/api/v1/users", short).await.0, 422);
    assert_eq!(c.get(&admin, "/api/v1/users").await.0, 200);
    assert_eq!(
        c.patch(&admin, "/api/v1/users/carol", json!({"disabled": true}))
            .await
            .0,
        200
    );
    assert_eq!(c.patch(&admin, "/api/v1/users/carol", json!({})).await.0, 422);
    assert_eq!(
        c.patch(&admin, "/api/v1/users/nobody", json!({"disabled": true}))
            .await
            .0,
        404
    );
    assert_eq!(
        c.patch(&admin, "/api/v1/users/admin", json!({"isAdmin": false}))
            .await
            .0,
        409
    );
    assert_eq!(c.delete(&admin, "/api/v1/users/admin").await.0, 409);
    assert_eq!(c.delete(&admin, "/api/v1/users/carol").await.0, 204);
    assert_eq!(c.delete(&admin, "/api/v1/users/carol").await.0, 404);

    let alice = login(&c, &stack, "alice", PASSWORD).await;
    let bob = login(&c, &stack, "bob", PASSWORD).await;
    assert_eq!(c.get(&alice, "/api/v1/users").await.0, 403);

    // Notification dead letters (admins): a delivery dead-lettered through the store's outbox API, listed
    // and retried (204), then 409 (pending again), 404, 422; 403 for an engineer.
    let db = janus_store::Store::connect(
        &format!("sqlite://{}", stack.dir.path().join("janus.db").display()),
        None,
    )
    .await
    .expect("store");
    db.insert_outbox(&[janus_store::NewOutboxRow {
        key: "ev-openapi/hook".into(),
        sink: "hook".into(),
        event_key: "ev-openapi".into(),
        kind: "request.created".into(),
        payload: "{}".into(),
        event_at: chrono::Utc::now(),
    }])
    .await
    .expect("queue");
    let dead_id = db.outbox_rows(10).await.expect("rows")[0].id;
    assert!(
        db.outbox_dead(dead_id, true, Some(400), "HTTP 400 Bad Request")
            .await
            .expect("dead")
    );
    let (s, v) = c.get(&admin, "/api/v1/notifications/dead").await;
    assert_eq!((s, v["dead"][0]["id"].as_i64()), (200, Some(dead_id)));
    assert_eq!(c.get(&alice, "/api/v1/notifications/dead").await.0, 403);
    let retry = format!("/api/v1/notifications/dead/{dead_id}/retry");
    assert_eq!(c.post(&alice, &retry, json!({})).await.0, 403);
    assert_eq!(c.post(&admin, &retry, json!({})).await.0, 204);
    assert_eq!(c.post(&admin, &retry, json!({})).await.0, 409);
    assert_eq!(
        c.post(&admin, "/api/v1/notifications/dead/999999/retry", json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        c.post(&admin, "/api/v1/notifications/dead/x/retry", json!({})).await.0,
        422
    );
    // A state change without the CSRF token is refused.
    let mut no_csrf = alice.clone();
    no_csrf.csrf = String::new();
    assert_eq!(c.post(&no_csrf, "/api/v1/requests", json!({})).await.0, 403);

    // Clusters and namespaces.
    assert_eq!(c.get(&alice, "/api/v1/clusters").await.0, 200);
    assert_eq!(c.get(&alice, "/api/v1/clusters/central/namespaces").await.0, 200);
    assert_eq!(c.get(&alice, "/api/v1/clusters/nowhere/namespaces").await.0, 404);
    // Roles and the pod-scope picker (issue 16).
    assert_eq!(c.get(&alice, "/api/v1/roles").await.0, 200);
    assert_eq!(
        c.get(&alice, "/api/v1/roles?cluster=central&namespace=team-a").await.0,
        200
    );
    let workloads = "/api/v1/clusters/central/workloads";
    assert_eq!(c.get(&alice, &format!("{workloads}?namespace=team-a")).await.0, 200);
    assert_eq!(
        c.get(&alice, &format!("{workloads}?namespace=kube-system")).await.0,
        422
    );
    assert_eq!(c.get(&anon, &format!("{workloads}?namespace=team-a")).await.0, 401);
    let pods = "/api/v1/clusters/central/pods?namespace=team-a";
    assert_eq!(c.get(&alice, &format!("{pods}&selector=app%3Dx")).await.0, 200);
    assert_eq!(c.get(&alice, &format!("{pods}&selector=app%20in%20(")).await.0, 422);

    // Requests: 201, 422 (also for an unknown cluster), 200, 403 (scope), 404 (not one's own).
    let ask =
        |ns: &str, reason: &str| json!({"cluster": "central", "namespaces": [ns], "ttlSeconds": 600, "reason": reason});
    let (s, created) = c.post(&alice, "/api/v1/requests", ask("team-a", "debug the app")).await;
    assert_eq!(s, 201, "{created}");
    let name = created["name"].as_str().expect("name").to_string();
    let r = format!("/api/v1/requests/{name}");
    assert_eq!(c.post(&alice, "/api/v1/requests", ask("team-a", "  ")).await.0, 422);
    let bad = json!({"cluster": "central", "namespaces": ["team-a"], "reason": "x", "extra": 1});
    assert_eq!(c.post(&alice, "/api/v1/requests", bad).await.0, 422);
    let elsewhere = json!({"cluster": "nowhere", "namespaces": ["team-a"], "reason": "x"});
    assert_eq!(c.post(&alice, "/api/v1/requests", elsewhere).await.0, 422);
    assert_eq!(c.get(&alice, "/api/v1/requests").await.0, 200);
    assert_eq!(c.get(&alice, "/api/v1/requests?limit=oops").await.0, 422);
    assert_eq!(c.get(&alice, "/api/v1/requests?scope=all").await.0, 403);
    assert_eq!(c.get(&admin, "/api/v1/requests?scope=all").await.0, 200);
    assert_eq!(c.get(&alice, &r).await.0, 200);
    assert_eq!(c.get(&bob, &r).await.0, 404);
    assert_eq!(c.get(&alice, &format!("{r}/timeline")).await.0, 200);
    assert_eq!(c.get(&bob, &format!("{r}/timeline")).await.0, 404);

    // The request form's policy preview and the approver's list.
    assert_eq!(
        c.get(&alice, "/api/v1/policy?cluster=central&namespaces=team-a,team-b")
            .await
            .0,
        200
    );
    assert_eq!(
        c.get(&alice, "/api/v1/policy?cluster=central&namespaces=Team_A")
            .await
            .0,
        422
    );
    assert_eq!(
        c.get(&alice, "/api/v1/policy?cluster=nowhere&namespaces=team-a")
            .await
            .0,
        404
    );
    assert_eq!(
        c.get(&anon, "/api/v1/policy?cluster=central&namespaces=team-a").await.0,
        401
    );
    let (s, pending) = c.get(&admin, "/api/v1/approvals").await;
    assert_eq!((s, pending["pending"][0]["name"].as_str()), (200, Some(name.as_str())));
    assert_eq!(c.get(&anon, "/api/v1/approvals").await.0, 401);

    // Decisions: 403 (not an admin), 404 (unknown action), 200, 422 (extend without seconds), 409.
    assert_eq!(c.post(&alice, &format!("{r}/approve"), json!({})).await.0, 403);
    assert_eq!(c.post(&admin, &format!("{r}/bless"), json!({})).await.0, 404);
    assert_eq!(c.post(&admin, &format!("{r}/approve"), json!({})).await.0, 200);
    alice.wait_phase(&name, "Active").await;
    assert_eq!(c.post(&admin, &format!("{r}/extend"), json!({})).await.0, 422);
    assert_eq!(
        c.post(&admin, &format!("{r}/extend"), json!({"seconds": 60})).await.0,
        200
    );
    assert_eq!(
        c.post(&admin, &format!("{r}/deny"), json!({"reason": "late"})).await.0,
        409
    );

    // The terminal page's reads while access is active.
    assert_eq!(c.get(&alice, &format!("{r}/pods?namespace=team-a")).await.0, 200);
    assert_eq!(c.get(&alice, &format!("{r}/events?namespace=team-a")).await.0, 200);
    assert_eq!(c.get(&bob, &format!("{r}/pods?namespace=team-a")).await.0, 404);
    assert_eq!(c.get(&alice, &format!("{r}/sessions")).await.0, 200);
    let logs = alice
        .get(&format!("{r}/logs?namespace=team-a&pod=web&container=main&tail=1"))
        .await;
    assert_eq!(logs.status(), 200);
    // Only the head of a followed log: its status and content type.
    assert_eq!(c.template("get", &format!("{r}/logs")), "/api/v1/requests/{name}/logs");
    let declared = &c.doc["paths"]["/api/v1/requests/{name}/logs"]["get"]["responses"]["200"]["content"];
    let ctype = logs.headers()["content-type"].to_str().expect("ascii").to_string();
    assert!(
        declared.get(ctype.split(';').next().unwrap_or_default()).is_some(),
        "{ctype} not in {declared}"
    );
    drop(logs);
    assert_eq!(c.get(&alice, &format!("{r}/logs?namespace=team-a")).await.0, 422);
    let live = alice.get("/api/v1/events").await;
    assert_eq!(live.status(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    drop(live);
    assert_eq!(c.get(&anon, "/api/v1/events").await.0, 401);

    // Quick commands, the command log and recordings.
    let (s, q) = c
        .post(
            &alice,
            "/api/v1/quick-commands",
            json!({"cluster": "central", "label": "pods", "command": "ls"}),
        )
        .await;
    assert_eq!(s, 201, "{q}");
    let bad = json!({"cluster": "central", "label": "", "command": "ls"});
    assert_eq!(c.post(&alice, "/api/v1/quick-commands", bad).await.0, 422);
    assert_eq!(c.get(&alice, "/api/v1/quick-commands?cluster=central").await.0, 200);
    // 429: at most 50 per cluster.
    for i in 1..50 {
        let more = json!({"cluster": "central", "label": format!("n{i}"), "command": "true"});
        assert_eq!(c.post(&alice, "/api/v1/quick-commands", more).await.0, 201);
    }
    let one_more = json!({"cluster": "central", "label": "full", "command": "true"});
    assert_eq!(c.post(&alice, "/api/v1/quick-commands", one_more).await.0, 429);
    // 413: a body over the limit (256 KiB).
    let huge = json!({"cluster": "central", "label": "big", "command": "x".repeat(300 * 1024)});
    assert_eq!(c.post(&alice, "/api/v1/quick-commands", huge).await.0, 413);
    let qid = q["id"].as_i64().expect("id");
    assert_eq!(c.delete(&bob, &format!("/api/v1/quick-commands/{qid}")).await.0, 404);
    assert_eq!(c.delete(&alice, &format!("/api/v1/quick-commands/{qid}")).await.0, 204);
    assert_eq!(c.get(&admin, "/api/v1/commands?q=ls").await.0, 200);
    assert_eq!(c.get(&alice, "/api/v1/commands?q=ls").await.0, 403);
    assert_eq!(c.get(&admin, "/api/v1/recordings/none").await.0, 404);
    assert_eq!(c.get(&alice, "/api/v1/recordings/none").await.0, 403);

    // A terminal session, so that sessions, the command log and a recording have content.
    let url = format!(
        "ws://{}/ws/terminal/{name}?namespace=team-a&pod=web&container=main&csrf={}",
        stack.host, alice.csrf
    );
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("cookie", alice.cookie.parse().expect("cookie"));
    req.headers_mut().insert("origin", stack.url.parse().expect("origin"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("websocket");
    let mut session = String::new();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    ws.send(Message::Binary(b"echo openapi-$((6*7))\r".to_vec().into()))
        .await
        .expect("send");
    while !seen.contains("openapi-42") {
        assert!(Instant::now() < deadline, "no shell output; saw {seen:?}");
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("control JSON");
                if v["type"] == "connected" {
                    session = v["session"].as_str().expect("session").to_string();
                }
            }
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("the terminal ended: {other:?}"),
        }
    }
    assert!(!session.is_empty());

    // Withdraw (which ends the terminal), then a decision on the ended request conflicts.
    assert_eq!(c.post(&alice, &format!("{r}/withdraw"), json!({})).await.0, 200);
    alice.wait_phase(&name, "Cancelled").await;
    assert_eq!(c.post(&admin, &format!("{r}/revoke"), json!({})).await.0, 409);
    drop(ws);
    let rec = format!("/api/v1/recordings/{session}");
    let mut status = 0;
    for _ in 0..200 {
        status = c.get(&admin, &rec).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "no recording of {session}");
    let (_, sessions) = c.get(&alice, &format!("{r}/sessions")).await;
    assert_eq!(sessions["sessions"][0]["id"], session.as_str(), "{sessions}");
    let mut hits = Value::Null;
    for _ in 0..200 {
        hits = c.get(&admin, "/api/v1/commands?q=openapi").await.1;
        if hits["commands"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        hits["commands"][0]["line"]
            .as_str()
            .is_some_and(|l| l.contains("openapi")),
        "{hits}"
    );

    // Audit.
    assert_eq!(c.get(&admin, "/api/v1/audit?limit=5").await.0, 200);
    assert_eq!(c.get(&alice, "/api/v1/audit").await.0, 403);
    assert_eq!(c.get(&admin, "/api/v1/audit?since=yesterday-ish").await.0, 422);
    assert_eq!(c.get(&admin, "/api/v1/audit/export?format=csv").await.0, 200);
    assert_eq!(c.get(&admin, "/api/v1/audit/export").await.0, 200);
    assert_eq!(c.get(&admin, "/api/v1/audit/export?format=xml").await.0, 422);
    assert_eq!(c.get(&alice, "/api/v1/audit/export").await.0, 403);

    // 429: the address used up its failed-login budget.
    let mut status = 0;
    for _ in 0..10 {
        let wrong = json!({"username": "mallory", "password": "not-a-password"});
        status = c.post(&anon, "/api/v1/login", wrong).await.0;
        if status == 429 {
            break;
        }
        assert_eq!(status, 422);
    }
    assert_eq!(status, 429);

    // A debug container (issue 16): 422 for an image the role does not allow, 201 for one it does.
    let (s, created) = c
        .post(
            &bob,
            "/api/v1/requests",
            json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "debug", "role": "debug"}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let debug_name = created["name"].as_str().expect("name").to_string();
    let dr = format!("/api/v1/requests/{debug_name}");
    assert_eq!(c.post(&admin, &format!("{dr}/approve"), json!({})).await.0, 200);
    bob.wait_phase(&debug_name, "Active").await;
    let debug = |image: &str| json!({"namespace": "team-a", "pod": "web", "targetContainer": "main", "image": image});
    assert_eq!(c.post(&bob, &format!("{dr}/debug"), debug("alpine:3")).await.0, 422);
    assert_eq!(
        c.post(&alice, &format!("{dr}/debug"), debug("busybox:1.36")).await.0,
        404
    );
    let (s, started) = c.post(&bob, &format!("{dr}/debug"), debug("busybox:1.36")).await;
    assert_eq!(s, 201, "{started}");

    // Personal API tokens (issue 18): create, list (own; admins: everyone's), revoke.
    let (s, tok) = c
        .post(&alice, "/api/v1/tokens", json!({"name": "ci", "scopes": ["read"]}))
        .await;
    assert_eq!(s, 201, "{tok}");
    let bad_name = json!({"name": "", "scopes": ["read"]});
    assert_eq!(c.post(&alice, "/api/v1/tokens", bad_name).await.0, 422);
    assert_eq!(c.get(&alice, "/api/v1/tokens").await.0, 200);
    assert_eq!(c.get(&alice, "/api/v1/tokens?all=true").await.0, 403);
    assert_eq!(c.get(&admin, "/api/v1/tokens?all=true").await.0, 200);
    let tid = tok["displayId"].as_str().expect("displayId").to_string();
    assert_eq!(c.delete(&bob, &format!("/api/v1/tokens/{tid}")).await.0, 404);
    assert_eq!(c.delete(&alice, &format!("/api/v1/tokens/{tid}")).await.0, 204);

    // Logging out.
    assert_eq!(c.post(&bob, "/api/v1/logout", json!({})).await.0, 200);
    assert_eq!(c.get(&bob, "/api/v1/session").await.0, 401);

    // Every documented operation except the two streams was answered with a success at least once.
    let seen = c.seen.lock().expect("lock").clone();
    let mut missing = Vec::new();
    for (tmpl, item) in c.doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            // The streams, and the device flow (it needs an OIDC provider: tests/oidc.rs).
            let elsewhere = ["/api/v1/cli/device", "/api/v1/cli/device/token"];
            if ["/api/v1/events", "/api/v1/requests/{name}/logs"].contains(&tmpl.as_str())
                || elsewhere.contains(&tmpl.as_str())
            {
                continue;
            }
            let ok = seen
                .iter()
                .any(|(t, m, s)| t == tmpl && m == method && (200..300).contains(s));
            if !ok {
                missing.push(format!("{method} {tmpl}"));
            }
        }
    }
    assert!(missing.is_empty(), "never answered with a success: {missing:?}");
    stack.stop().await;
}

/// The routes the router serves under `/api/v1`, with their methods, read from the route tables.
fn router_routes() -> BTreeMap<String, BTreeSet<String>> {
    let sources = [
        include_str!("../src/api/mod.rs"),
        include_str!("../src/terminal/mod.rs"),
        // The long-lived routes (the live-update stream) are routed beside the request timeout there.
        include_str!("../src/server.rs"),
    ];
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for src in sources {
        // A `.route(` call may span lines: join the file and split on the calls.
        let flat: String = src.split_whitespace().collect::<Vec<_>>().join(" ");
        for call in flat.split(".route(").skip(1) {
            let mut parts = call.splitn(3, '"');
            let (_, path, rest) = (parts.next(), parts.next().expect("path"), parts.next().expect("rest"));
            if !path.starts_with("/api/v1") {
                continue;
            }
            // The handlers: the rest of this `.route(` call, up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, ch)| {
                    match ch {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let handler = &rest[..end];
            let methods = routes.entry(path.to_string()).or_default();
            for m in ["get", "post", "patch", "put", "delete"] {
                if handler.contains(&format!(" {m}(")) || handler.contains(&format!(".{m}(")) {
                    methods.insert(m.to_string());
                }
            }
        }
    }
    routes
}

/// The document lists exactly the `/api/v1` routes and methods the router serves, no more, no fewer.
#[test]
fn the_document_lists_exactly_the_routers_api_routes() {
    let doc = serde_json::to_value(janus_web::api::openapi::document()).expect("value");
    let documented: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(p, item)| (p.clone(), item.as_object().expect("item").keys().cloned().collect()))
        .collect();
    let served = router_routes();
    assert!(served.len() > 20, "{served:?}");
    assert_eq!(documented, served);
    // Operation ids are unique, as OpenAPI requires.
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("item").values() {
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
        }
    }
}
