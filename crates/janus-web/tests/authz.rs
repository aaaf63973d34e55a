#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The authorization matrix: every route × {anonymous, engineer (owner), other engineer, admin, admin on
//! their own request} with the expected status, against the real stack (controller, web) on a
//! `TestCluster`: kubesim by default, a real cluster with `JANUS_TEST_CLUSTER=kubeconfig`
//! (scripts/test-real-cluster.sh). Nothing here reaches into the simulator.

mod common;

use common::{ADMIN, Session, Stack};
use serde_json::json;

async fn status_get(s: &Session, path: &str) -> u16 {
    s.get(path).await.status().as_u16()
}

async fn status_post(s: &Session, path: &str, body: serde_json::Value) -> u16 {
    s.post(path, body).await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_checks_who_may_and_who_may_not() {
    let stack = Stack::portable("").await;
    let anon = stack.anon();
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;

    let mine = alice.request(&["team-a"], 600, "debug the app").await;
    let own = admin.request(&["team-b"], 600, "admin's own").await;
    let r = format!("/api/v1/requests/{mine}");

    // Reading.
    let reads: Vec<(String, [u16; 4])> = vec![
        // path: [anonymous, owner, other engineer, admin]
        ("/api/v1/session".into(), [401, 200, 200, 200]),
        ("/api/v1/requests".into(), [401, 200, 200, 200]),
        ("/api/v1/requests?scope=all".into(), [401, 403, 403, 200]),
        (r.clone(), [401, 200, 404, 200]),
        (format!("{r}/timeline"), [401, 200, 404, 200]),
        (format!("{r}/sessions"), [401, 200, 404, 200]),
        ("/api/v1/clusters".into(), [401, 200, 200, 200]),
        ("/api/v1/clusters/central/namespaces".into(), [401, 200, 200, 200]),
        // The request form's roles and pod-scope picker (issue 16): any signed-in person; a namespace
        // that cannot be requested is refused to everyone.
        ("/api/v1/roles".into(), [401, 200, 200, 200]),
        (
            "/api/v1/clusters/central/workloads?namespace=team-a".into(),
            [401, 200, 200, 200],
        ),
        (
            "/api/v1/clusters/central/workloads?namespace=kube-system".into(),
            [401, 422, 422, 422],
        ),
        (
            "/api/v1/clusters/central/pods?namespace=team-a&selector=app%3Dweb".into(),
            [401, 200, 200, 200],
        ),
        (
            "/api/v1/clusters/central/pods?namespace=k8s-janus&selector=a".into(),
            [401, 422, 422, 422],
        ),
        ("/api/v1/audit".into(), [401, 403, 403, 200]),
        ("/api/v1/audit/export?format=csv".into(), [401, 403, 403, 200]),
        ("/api/v1/users".into(), [401, 403, 403, 200]),
        ("/api/v1/notifications/dead".into(), [401, 403, 403, 200]),
        ("/api/v1/recordings/none".into(), [401, 403, 403, 404]),
        ("/api/v1/commands?q=ls".into(), [401, 403, 403, 200]),
        ("/api/v1/quick-commands?cluster=central".into(), [401, 200, 200, 200]),
        // The request form's policy preview and one's own approvals list: any signed-in person.
        (
            "/api/v1/policy?cluster=central&namespaces=team-a".into(),
            [401, 200, 200, 200],
        ),
        ("/api/v1/approvals".into(), [401, 200, 200, 200]),
        // Pages: anonymous gets a redirect to the login page.
        ("/requests".into(), [303, 200, 200, 200]),
        ("/requests/new".into(), [303, 200, 200, 200]),
        (format!("/requests/{mine}"), [303, 200, 404, 200]),
        ("/admin".into(), [303, 403, 403, 200]),
        ("/audit".into(), [303, 403, 403, 200]),
        ("/admin/users".into(), [303, 403, 403, 200]),
        ("/admin/notifications".into(), [303, 403, 403, 200]),
        ("/clusters".into(), [303, 200, 200, 200]),
        (format!("/terminal/{mine}"), [303, 409, 404, 403]),
        ("/recordings/x".into(), [303, 403, 403, 200]),
    ];
    for (path, want) in &reads {
        let got = [
            status_get(&anon, path).await,
            status_get(&alice, path).await,
            status_get(&bob, path).await,
            status_get(&admin, path).await,
        ];
        assert_eq!(&got, want, "GET {path} as [anonymous, owner, other, admin]");
    }
    // Health and assets need no identity.
    for p in [
        "/healthz",
        "/readyz",
        "/assets/app.js",
        "/api/v1/openapi.yaml",
        "/api/v1/openapi.json",
    ] {
        assert_eq!(status_get(&anon, p).await, 200, "{p}");
    }
    // Metrics are served only on the metrics address, never on the UI's.
    assert_eq!(status_get(&anon, "/metrics").await, 404);

    // Engineers see only their own requests.
    let bobs = bob.json("/api/v1/requests").await;
    assert_eq!(bobs["total"], 0);
    let all = admin.json("/api/v1/requests?scope=all").await;
    assert_eq!(all["total"], 2);
    // Excluded and missing namespaces are never offered.
    let ns = alice.json("/api/v1/clusters/central/namespaces").await;
    let ns: Vec<&str> = ns["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !ns.contains(&"kube-system") && !ns.contains(&"k8s-janus") && ns.contains(&"team-a"),
        "{ns:?}"
    );

    // Decisions by the wrong people are refused; nothing changes.
    let d = |a: &str| format!("{r}/{a}");
    assert_eq!(status_post(&anon, &d("approve"), json!({})).await, 401);
    assert_eq!(status_post(&alice, &d("approve"), json!({})).await, 403);
    assert_eq!(status_post(&bob, &d("approve"), json!({})).await, 404);
    assert_eq!(status_post(&alice, &d("deny"), json!({"reason": "x"})).await, 403);
    assert_eq!(status_post(&bob, &d("withdraw"), json!({})).await, 404);
    assert_eq!(
        status_post(&admin, &d("withdraw"), json!({})).await,
        403,
        "only the requester withdraws"
    );
    assert_eq!(status_post(&alice, &d("revoke"), json!({})).await, 403);
    assert_eq!(status_post(&alice, &d("extend"), json!({"seconds": 60})).await, 403);
    assert_eq!(
        status_post(&admin, &d("revoke"), json!({})).await,
        409,
        "a pending request is not revoked"
    );
    assert_eq!(status_post(&admin, &d("extend"), json!({"seconds": 60})).await, 409);
    assert_eq!(
        status_post(&admin, &d("deny"), json!({"reason": ""})).await,
        422,
        "denial needs a reason"
    );
    assert_eq!(status_post(&admin, &d("frobnicate"), json!({})).await, 404);
    // Acknowledging a break-glass review: never the requester, nobody who cannot see the request, and
    // nothing to acknowledge on a request that did not break glass.
    assert_eq!(status_post(&anon, &d("acknowledge"), json!({})).await, 401);
    assert_eq!(status_post(&alice, &d("acknowledge"), json!({})).await, 403);
    assert_eq!(status_post(&bob, &d("acknowledge"), json!({})).await, 404);
    assert_eq!(status_post(&admin, &d("acknowledge"), json!({})).await, 409);
    // What each may decide: the admin has alice's request (not their own); engineers have nothing.
    let decide_admin = admin.json("/api/v1/approvals").await;
    let pending: Vec<&str> = decide_admin["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(pending, [mine.as_str()], "{decide_admin}");
    assert_eq!(decide_admin["approver"], true);
    for who in [&alice, &bob] {
        let v = who.json("/api/v1/approvals").await;
        assert_eq!(v["pending"], json!([]), "{v}");
        assert_eq!(v["approver"], false);
    }
    // An admin cannot approve their own request.
    let own_path = format!("/api/v1/requests/{own}/approve");
    assert_eq!(status_post(&admin, &own_path, json!({})).await, 403);
    assert_eq!(alice.json(&r).await["phase"], "Pending");

    // CSRF: a state change without the token is refused even with a valid session.
    let no_csrf = alice
        .http
        .post(format!("{}/api/v1/requests", stack.url))
        .json(&json!({"cluster": "central", "namespaces": ["team-a"], "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    // A cross-site Origin is refused even with the token.
    let cross = alice
        .http
        .post(format!("{}{}/withdraw", stack.url, r))
        .header("x-csrf-token", &alice.csrf)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    // The new decision routes need the token too.
    for action in ["approve", "acknowledge"] {
        let resp = admin
            .http
            .post(format!("{}{}/{action}", stack.url, r))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{action} without the CSRF token");
    }
    assert_eq!(alice.json(&r).await["approvals"], json!([]), "nothing was written");

    // User management: engineers cannot, admins can.
    assert_eq!(
        status_post(
            &alice,
            "/api/v1/users",
            json!({"username": "x", "email": "x@e.com", "password": "long enough password"})
        )
        .await,
        403
    );
    assert_eq!(
        alice
            .patch("/api/v1/users/bob", json!({"isAdmin": true}))
            .await
            .status(),
        403
    );
    assert_eq!(alice.delete("/api/v1/users/bob").await.status(), 403);
    assert_eq!(
        admin
            .patch("/api/v1/users/admin", json!({"isAdmin": false}))
            .await
            .status(),
        409,
        "no self-demotion"
    );

    // The admin approves; now the terminal routes open for the owner only.
    let approved = admin.post(&d("approve"), json!({"ttlSeconds": 900})).await;
    assert_eq!(approved.status(), 200);
    alice.wait_phase(&mine, "Active").await;
    let pods = format!("{r}/pods?namespace=team-a");
    assert_eq!(status_get(&anon, &pods).await, 401);
    assert_eq!(status_get(&alice, &pods).await, 200);
    assert_eq!(status_get(&bob, &pods).await, 404);
    assert_eq!(
        status_get(&admin, &pods).await,
        403,
        "admins use requests' access only when configured"
    );
    assert_eq!(
        status_get(&alice, &format!("{r}/pods?namespace=team-b")).await,
        422,
        "not granted"
    );
    assert_eq!(status_get(&alice, &format!("/terminal/{mine}")).await, 200);
    assert_eq!(status_get(&bob, &format!("/terminal/{mine}")).await, 404);

    // Decisions on an ended request are a conflict.
    assert_eq!(status_post(&alice, &d("withdraw"), json!({})).await, 200);
    alice.wait_phase(&mine, "Cancelled").await;
    for (who, a) in [(&admin, "revoke"), (&admin, "approve"), (&alice, "withdraw")] {
        assert_eq!(status_post(who, &d(a), json!({})).await, 409, "{a} after the end");
    }
    stack.stop().await;
}

/// Bearer credentials (issue 18) in the matrix: an admin's personal token with every scope reaches the
/// JSON API as the admin, but no page (401, never a redirect to the login page), and none of the routes
/// that manage tokens or accounts (403). The full per-scope matrix is tests/bearer.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_personal_token_reaches_the_api_but_no_page() {
    let stack = Stack::portable("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let r = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "all", "scopes": ["read", "request", "approve"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let call = |m: reqwest::Method, p: &str| {
        http.request(m, format!("{}{p}", stack.url))
            .bearer_auth(&token)
            .json(&json!({}))
    };
    for p in [
        "/api/v1/session",
        "/api/v1/requests?scope=all",
        "/api/v1/audit",
        "/api/v1/users",
    ] {
        assert_eq!(
            call(reqwest::Method::GET, p).send().await.unwrap().status(),
            200,
            "GET {p}"
        );
    }
    for p in [
        "/",
        "/requests",
        "/requests/new",
        "/admin",
        "/audit",
        "/admin/users",
        "/clusters",
        "/tokens",
        "/recordings/x",
    ] {
        assert_eq!(
            call(reqwest::Method::GET, p).send().await.unwrap().status(),
            401,
            "page {p}"
        );
    }
    for (m, p) in [
        (reqwest::Method::GET, "/api/v1/tokens"),
        (reqwest::Method::POST, "/api/v1/tokens"),
        (reqwest::Method::DELETE, "/api/v1/tokens/janus_pat_00000000"),
        (reqwest::Method::POST, "/api/v1/users"),
        (reqwest::Method::PATCH, "/api/v1/users/admin"),
        (reqwest::Method::DELETE, "/api/v1/users/admin"),
    ] {
        assert_eq!(call(m.clone(), p).send().await.unwrap().status(), 403, "{m} {p}");
    }
    stack.stop().await;
}
