#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `POST /api/v1/cli/login` through the real web server (kubesim, controller, SQLite): a local account
//! gets a `janus_cli_` session stored only as its hash in `web_sessions` with the configured lifetime,
//! under the same lockout as the browser login (failures on either count for both), never for a
//! disabled account, audited as `login.cli` without the credential; the session works as a bearer and
//! `POST /api/v1/logout` with it ends it. The OIDC device flow is tested in tests/oidc.rs (it needs the
//! provider harness there).

mod common;

use chrono::{DateTime, Utc};
use common::{ADMIN, PASSWORD, Stack};
use janus_api::tokens;
use serde_json::{Value, json};

/// A `POST` with a JSON body and no cookie, as the CLI sends it.
async fn post(stack: &Stack, path: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", stack.url))
        .json(&body)
        .send()
        .await
        .expect("post");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

async fn cli_login(stack: &Stack, user: &str, password: &str) -> (u16, Value) {
    let (s, v, h) = post(
        stack,
        "/api/v1/cli/login",
        json!({"username": user, "password": password}),
    )
    .await;
    assert!(h.get("set-cookie").is_none(), "a CLI login sets no cookie");
    (s, v)
}

async fn web_login(stack: &Stack, user: &str, password: &str) -> u16 {
    post(stack, "/api/v1/login", json!({"username": user, "password": password}))
        .await
        .0
}

async fn store(stack: &Stack) -> janus_store::Store {
    let url = format!("sqlite://{}", stack.dir.path().join("janus.db").display());
    janus_store::Store::connect(&url, None).await.expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_password_login_issues_a_hashed_session_under_the_web_logins_lockout() {
    let stack =
        Stack::start("web: {loginMaxFailures: 3, loginMaxFailuresPerAccount: 100, cliSessionTtlSeconds: 900}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    for (u, e) in [
        ("alice", "alice@example.com"),
        ("bob", "bob@example.com"),
        ("carol", "carol@example.com"),
    ] {
        let _ = stack.user(&admin, u, e, false).await;
    }

    // The right password: a janus_cli_ credential, its expiry after cliSessionTtlSeconds, the identity.
    let before = Utc::now();
    let (status, body) = cli_login(&stack, "alice", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    assert_eq!(
        tokens::bearer_kind(&token),
        Some(tokens::BearerKind::CliSession),
        "{token}"
    );
    let expires: DateTime<Utc> = body["expiresAt"]
        .as_str()
        .expect("expiresAt")
        .parse()
        .expect("RFC 3339");
    let ttl = (expires - before).num_seconds();
    assert!(
        (895..=905).contains(&ttl),
        "expires {ttl} s after the login, wanted 900"
    );
    assert_eq!(body["identity"]["email"], "alice@example.com");
    assert_eq!(body["identity"]["auth"], "local");
    assert_eq!(body["identity"]["isAdmin"], false);
    assert_eq!(body["identity"]["token"]["displayId"], tokens::display_id(&token));
    assert_eq!(body["identity"]["token"]["personal"], false);

    // Stored as a web session under the credential's hash only (logout, user deletion and expiry apply).
    let db = store(&stack).await;
    let row = db
        .get_session(&tokens::hash(&token))
        .await
        .expect("db")
        .expect("a web_sessions row under tokens::hash(token)");
    assert_eq!(row.subject, "alice@example.com");
    assert_eq!(row.auth, "local");
    assert!(!row.is_admin);
    assert!(
        (row.expires_at - expires).num_milliseconds().abs() < 1000,
        "{} vs {expires}",
        row.expires_at
    );
    assert!(
        db.get_session(&token).await.expect("db").is_none(),
        "never the credential itself"
    );

    // Audited as login.cli with the method, never the credential.
    let events = admin
        .json("/api/v1/audit?kind=login.cli&actor=alice@example.com&limit=10")
        .await;
    let events = events["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["details"]["method"], "password");
    assert!(
        !events[0]
            .to_string()
            .contains(&token[tokens::CLI_SESSION_PREFIX.len()..])
    );

    // Wrong passwords: the browser login's answer; three of them (CLI or web) lock both logins.
    let (status, body) = cli_login(&stack, "alice", "wrong password 1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("wrong username or password"))
    );
    assert_eq!(web_login(&stack, "alice", "wrong password 2").await, 422);
    assert_eq!(cli_login(&stack, "alice", "wrong password 3").await.0, 422);
    assert_eq!(
        web_login(&stack, "alice", PASSWORD).await,
        422,
        "locked by CLI failures"
    );
    assert_eq!(cli_login(&stack, "alice", PASSWORD).await.0, 422, "locked");
    for i in 0..3 {
        assert_eq!(web_login(&stack, "bob", &format!("wrong password {i}")).await, 422);
    }
    let (status, body) = cli_login(&stack, "bob", PASSWORD).await;
    assert_eq!(status, 422, "locked by web failures: {body}");

    // A disabled account is refused like a wrong password.
    let r = admin.patch("/api/v1/users/carol", json!({"disabled": true})).await;
    assert_eq!(r.status(), 200);
    let (status, body) = cli_login(&stack, "carol", PASSWORD).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("wrong username or password"))
    );

    // Bad input is a clear 422, never a crash; the device flow does not exist in local mode.
    for bad in [
        json!({"username": "alice"}),
        json!({"username": "alice", "password": PASSWORD, "extra": 1}),
        json!("alice"),
    ] {
        let (status, body, _) = post(&stack, "/api/v1/cli/login", bad.clone()).await;
        assert_eq!((status, body["field"].as_str()), (422, Some("body")), "{bad}: {body}");
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/cli/login", stack.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 422);
    for path in ["/api/v1/cli/device", "/api/v1/cli/device/token"] {
        let (status, body, _) = post(&stack, path, json!({"deviceCode": "x"})).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_session_works_as_a_bearer_until_logout() {
    let stack = Stack::start("").await;
    let (status, body) = cli_login(&stack, ADMIN.0, ADMIN.1).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    let http = reqwest::Client::new();
    let whoami = |t: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/session", stack.url);
        async move {
            let r = http.get(url).bearer_auth(t).send().await.expect("session");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, who) = whoami(token.clone()).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["identity"]["email"], "admin@example.com");
    assert_eq!(who["identity"]["isAdmin"], true);
    assert_eq!(who["identity"]["token"]["displayId"], tokens::display_id(&token));

    // janus logout: the bearer's session ends, in the database too.
    let r = http
        .post(format!("{}/api/v1/logout", stack.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 200);
    assert_eq!(whoami(token.clone()).await.0, 401);
    let db = store(&stack).await;
    assert!(db.get_session(&tokens::hash(&token)).await.expect("db").is_none());
    stack.stop().await;
}
