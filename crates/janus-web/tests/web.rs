#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Web behaviour end to end: the lifecycle through the API with its audit trail, hostile input shown
//! escaped and stored verbatim, field errors, login lockout, and trusted-proxy headers.

mod common;

use std::time::Duration;

use common::{ADMIN, PASSWORD, Stack};
use serde_json::{Value, json};

async fn audit_kinds(admin: &common::Session, name: &str, want: &[&str]) -> Vec<Value> {
    for _ in 0..200 {
        let v = admin.json(&format!("/api/v1/requests/{name}/timeline")).await;
        let events = v["events"].as_array().unwrap().clone();
        let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        if want.iter().all(|w| kinds.contains(w)) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = admin.json(&format!("/api/v1/requests/{name}/timeline")).await;
    panic!("timeline of {name} lacks some of {want:?}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_decisions_and_their_audit_trail() {
    let stack = Stack::start("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "Alice@Example.com", false).await;
    assert_eq!(alice.email, "alice@example.com", "emails are normalised");

    // Two namespaces, approved with a TTL override.
    let name = alice
        .request(&["team-a", "team-b"], 600, "investigate incident 42")
        .await;
    let r = admin
        .post(&format!("/api/v1/requests/{name}/approve"), json!({"ttlSeconds": 900}))
        .await;
    assert_eq!(r.status(), 200);
    let v = alice.wait_phase(&name, "Active").await;
    assert_eq!(v["grantedNamespaces"], json!(["team-a", "team-b"]));
    let active = chrono::DateTime::parse_from_rfc3339(v["activeAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(v["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!((expires - active).num_seconds(), 900, "the override counts");
    assert_eq!(v["ttlSeconds"], 600, "the requested TTL");
    assert_eq!(v["effectiveTtlSeconds"], 900, "the TTL in effect is the approver's");
    assert_eq!(v["actions"]["terminal"], true);
    assert_eq!(v["actions"]["withdraw"], true);
    assert_eq!(v["actions"]["approve"], false);
    // Extension within the cap, then beyond it refused with the room left.
    let r = admin
        .post(&format!("/api/v1/requests/{name}/extend"), json!({"seconds": 300}))
        .await;
    assert_eq!(r.status(), 200);
    let r = admin
        .post(&format!("/api/v1/requests/{name}/extend"), json!({"seconds": 28800}))
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "seconds");
    assert!(body["error"].as_str().unwrap().contains("at most"), "{body}");
    // Revocation ends it.
    let r = admin
        .post(
            &format!("/api/v1/requests/{name}/revoke"),
            json!({"reason": "incident closed"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = alice.wait_phase(&name, "Revoked").await;
    assert_eq!(v["revocation"]["reason"], "incident closed");
    let events = audit_kinds(
        &admin,
        &name,
        &[
            "request.created",
            "request.approved",
            "request.activated",
            "request.extended",
            "request.revoked",
        ],
    )
    .await;
    let approved = events.iter().find(|e| e["kind"] == "request.approved").unwrap();
    assert_eq!(approved["actor"], "admin@example.com");

    // Denial with a reason, visible to the engineer.
    let denied = alice.request(&["team-c"], 600, "please").await;
    let r = admin
        .post(
            &format!("/api/v1/requests/{denied}/deny"),
            json!({"reason": "use the runbook"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = alice.wait_phase(&denied, "Denied").await;
    assert_eq!(v["denial"]["reason"], "use the runbook");
    let page = alice.get(&format!("/requests/{denied}")).await.text().await.unwrap();
    assert!(page.contains("use the runbook"));

    // Withdrawal of a pending request.
    let pending = alice.request(&["team-a"], 600, "maybe").await;
    assert_eq!(
        alice
            .post(&format!("/api/v1/requests/{pending}/withdraw"), json!({}))
            .await
            .status(),
        200
    );
    alice.wait_phase(&pending, "Cancelled").await;
    audit_kinds(&admin, &pending, &["request.created", "request.withdrawn"]).await;

    // The form path: a page POST creates a request and redirects to it.
    let r = alice
        .form(
            "/requests",
            &[
                ("cluster", "central"),
                ("namespaces", "team-a"),
                ("namespaces", "team-c"),
                ("ttlSeconds", "600"),
                ("reason", "via the form"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with("/requests/") && to.ends_with("?done=created"), "{to}");
    // The list is served from the watch cache, which sees the new request a moment after the create.
    let mut via_form = None;
    for _ in 0..100 {
        let list = alice.json("/api/v1/requests").await;
        via_form = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["reason"] == "via the form")
            .cloned();
        if via_form.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let via_form = via_form.expect("created");
    assert_eq!(via_form["namespaces"], json!(["team-a", "team-c"]));
    // Approve through the dashboard form.
    let form_name = via_form["name"].as_str().unwrap().to_string();
    let r = admin
        .form(
            &format!("/requests/{form_name}/approve"),
            &[("back", "/admin"), ("ttlSeconds", "600")],
        )
        .await;
    assert_eq!(r.status(), 303);
    alice.wait_phase(&form_name, "Active").await;
    // Live updates stream.
    let sse = alice.get("/api/v1/events").await;
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_and_invalid_input_is_refused_clearly_or_stored_verbatim() {
    let stack = Stack::start("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let hostile = "<script>alert(1)</script> \"quotes\" 'single' ünïcødé 🚀 `; DROP TABLE users; --";
    let name = alice.request(&["team-a"], 600, hostile).await;
    let v = alice.json(&format!("/api/v1/requests/{name}")).await;
    assert_eq!(v["reason"], hostile, "stored verbatim");
    for path in [format!("/requests/{name}"), "/requests".into(), "/admin".into()] {
        let who = if path == "/admin" { &admin } else { &alice };
        let html = who.get(&path).await.text().await.unwrap();
        assert!(!html.contains("<script>alert(1)"), "{path} must escape the reason");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") || path == "/requests",
            "{path}"
        );
    }
    let r = admin
        .post(&format!("/api/v1/requests/{name}/deny"), json!({"reason": hostile}))
        .await;
    assert_eq!(r.status(), 200);
    let v = alice.wait_phase(&name, "Denied").await;
    assert_eq!(v["denial"]["reason"], hostile);
    let csp = alice.get("/requests").await.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    // Field errors name the field.
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"cluster": "central", "namespaces": ["team-a"], "reason": "x".repeat(1001)}),
            "reason",
        ),
        (
            json!({"cluster": "central", "namespaces": ["team-a"], "reason": "   "}),
            "reason",
        ),
        (
            json!({"cluster": "central", "namespaces": [], "reason": "r"}),
            "namespaces",
        ),
        (
            json!({"cluster": "central", "namespaces": ["kube-system"], "reason": "r"}),
            "namespaces",
        ),
        (
            json!({"cluster": "central", "namespaces": ["k8s-janus"], "reason": "r"}),
            "namespaces",
        ),
        (
            json!({"cluster": "central", "namespaces": ["does-not-exist"], "reason": "r"}),
            "namespaces",
        ),
        (
            json!({"cluster": "central", "namespaces": ["Team_A"], "reason": "r"}),
            "namespaces",
        ),
        (
            json!({"cluster": "central", "namespaces": ["team-a"], "reason": "r", "ttlSeconds": 999999}),
            "ttlSeconds",
        ),
        (
            json!({"cluster": "nowhere", "namespaces": ["team-a"], "reason": "r"}),
            "cluster",
        ),
        (
            json!({"cluster": "central", "namespaces": ["team-a"], "reason": "r", "extra": 1}),
            "body",
        ),
        (json!({"cluster": 5}), "body"),
    ];
    for (body, field) in cases {
        let r = alice.post("/api/v1/requests", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["field"], field, "{body} → {e}");
    }
    let r = alice
        .http
        .post(format!("{}/api/v1/requests", stack.url))
        .header("x-csrf-token", &alice.csrf)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let big = "x".repeat(400 * 1024);
    let r = alice
        .post(
            "/api/v1/requests",
            json!({"cluster": "central", "namespaces": ["team-a"], "reason": big}),
        )
        .await;
    assert_eq!(r.status(), 413, "bodies are limited");
    // Unsafe `next` targets are replaced by "/".
    let r = stack.anon().get("/login?next=//evil.example/x").await;
    let html = r.text().await.unwrap();
    assert!(!html.contains("evil.example"), "next is sanitised");
    // The server still works.
    assert_eq!(alice.get("/api/v1/session").await.status(), 200);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_lock_an_account_and_are_audited() {
    let stack = Stack::start("web: {loginMaxFailures: 3, loginLockoutSeconds: 60}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let _ = stack.user(&admin, "alice", "alice@example.com", false).await;
    let anon = stack.anon();
    for _ in 0..3 {
        let r = anon
            .post(
                "/api/v1/login",
                json!({"username": "alice", "password": "wrong password!"}),
            )
            .await;
        assert_eq!(r.status(), 422);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "wrong username or password");
    }
    let r = anon
        .post("/api/v1/login", json!({"username": "alice", "password": PASSWORD}))
        .await;
    // Locked even with the right password, and answered like a wrong password (no enumeration).
    assert_eq!(r.status(), 422, "locked even with the right password");
    let r = anon
        .post("/api/v1/login", json!({"username": "nobody", "password": "x"}))
        .await;
    assert_eq!(r.status(), 422, "unknown users look like wrong passwords");
    let audit = admin.json("/api/v1/audit?kind=login.failed").await;
    let n = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "alice")
        .count();
    assert_eq!(n, 4, "{audit}");
    assert!(
        !audit.to_string().contains("wrong password!"),
        "passwords never reach the audit log"
    );
    // Disabling a user ends their sessions.
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    assert_eq!(bob.get("/api/v1/session").await.status(), 200);
    assert_eq!(
        admin
            .patch("/api/v1/users/bob", json!({"disabled": true}))
            .await
            .status(),
        200
    );
    assert_eq!(bob.get("/api/v1/session").await.status(), 401);
    // Logout ends the session server-side.
    let carol = stack.user(&admin, "carol", "carol@example.com", false).await;
    assert_eq!(carol.post("/api/v1/logout", json!({})).await.status(), 200);
    let replay = reqwest::Client::new()
        .get(format!("{}/api/v1/session", stack.url))
        .header("cookie", &carol.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401, "a logged-out cookie is worthless");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_headers_count_only_from_trusted_addresses() {
    let stack = Stack::start("web: {authMode: proxy, trustedProxies: [127.0.0.1/32]}\n").await;
    let headers = |b: reqwest::RequestBuilder| {
        b.header("x-forwarded-email", "Admin@Example.com")
            .header("x-forwarded-groups", "dev,ops")
    };
    // From 127.0.0.1: trusted.
    let trusted = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 1]))
        .build()
        .unwrap();
    let r = headers(trusted.get(format!("{}/api/v1/session", stack.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["identity"]["email"], "admin@example.com");
    assert_eq!(v["identity"]["isAdmin"], true);
    assert_eq!(v["identity"]["auth"], "proxy");
    // The same headers from another address are ignored.
    let untrusted = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = headers(untrusted.get(format!("{}/api/v1/session", stack.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = headers(untrusted.get(format!("{}/api/v1/requests", stack.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Local login is off in proxy mode.
    let r = trusted
        .post(format!("{}/api/v1/login", stack.url))
        .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // State changes need the derived CSRF token.
    let csrf = v["csrfToken"].as_str().unwrap().to_string();
    let r = headers(trusted.post(format!("{}/api/v1/requests", stack.url)))
        .json(&json!({"cluster": "central", "namespaces": ["team-a"], "reason": "r"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = headers(trusted.post(format!("{}/api/v1/requests", stack.url)))
        .header("x-csrf-token", csrf)
        .json(&json!({"cluster": "central", "namespaces": ["team-a"], "reason": "r"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_user_request_limits_answer_429_with_the_reason() {
    let stack = Stack::start("web: {maxOpenRequestsPerUser: 2, maxRequestsPerHour: 3}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let body = json!({"cluster": "central", "namespaces": ["team-a"], "reason": "r", "ttlSeconds": 600});
    let first = alice.request(&["team-a"], 600, "one").await;
    let second = alice.request(&["team-b"], 600, "two").await;
    let r = alice.post("/api/v1/requests", body.clone()).await;
    assert_eq!(r.status(), 429);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("open requests"), "{e}");
    // Another user is not affected.
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    bob.request(&["team-a"], 600, "bob's").await;
    // Withdrawing one frees a slot; the hourly cap then stops the fourth request.
    assert_eq!(
        alice
            .post(&format!("/api/v1/requests/{first}/withdraw"), json!({}))
            .await
            .status(),
        200
    );
    alice.wait_phase(&first, "Cancelled").await;
    alice.request(&["team-c"], 600, "three").await;
    assert_eq!(
        alice
            .post(&format!("/api/v1/requests/{first}/withdraw"), json!({}))
            .await
            .status(),
        409
    );
    assert_eq!(
        alice
            .post(&format!("/api/v1/requests/{second}/withdraw"), json!({}))
            .await
            .status(),
        200
    );
    alice.wait_phase(&second, "Cancelled").await;
    let r = alice.post("/api/v1/requests", body).await;
    assert_eq!(r.status(), 429);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("last hour"), "{e}");
    stack.stop().await;
}
