#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Personal API token lifecycle against the real stack (issue 18 review): a local account's tokens
//! are revoked when it is deleted, disabled or gets a new password (a re-created or re-enabled
//! account with the same email does not get them back), `maxPerUser` holds under parallel creates,
//! and `/api/v1/events` opened with a token ends when the token is revoked.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, PASSWORD, Session, Stack};
use futures::StreamExt as _;
use serde_json::{Value, json};

const CONFIG: &str = r#"
web:
  apiTokens: {maxPerUser: 4, maxLifetimeDays: 30}
"#;

/// Creates a personal token with the cookie session; returns (token, displayId).
async fn create_token(s: &Session, name: &str) -> (String, String) {
    let r = s
        .post(
            "/api/v1/tokens",
            json!({"name": name, "scopes": ["read"], "expiresInDays": 7}),
        )
        .await;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "create token: {body}");
    (
        body["token"].as_str().unwrap().to_string(),
        body["displayId"].as_str().unwrap().to_string(),
    )
}

/// The status of `GET /api/v1/session` with only the bearer.
async fn whoami(stack: &Stack, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/api/v1/session", stack.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn new_user(stack: &Stack, admin: &Session, username: &str, email: &str) -> Session {
    stack.user(admin, username, email, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn account_changes_revoke_the_accounts_tokens() {
    let stack = Stack::portable(CONFIG).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;

    // Deleted, then re-created with the same email: the old token stays dead.
    let alice = new_user(&stack, &admin, "alice", "alice@example.com").await;
    let (old, old_id) = create_token(&alice, "ci").await;
    assert_eq!(whoami(&stack, &old).await, 200);
    assert_eq!(admin.delete("/api/v1/users/alice").await.status(), 204);
    assert_eq!(whoami(&stack, &old).await, 401, "deleted owner");
    let _alice = new_user(&stack, &admin, "alice", "alice@example.com").await;
    assert_eq!(
        whoami(&stack, &old).await,
        401,
        "a re-created account must not get the old token back"
    );
    let tokens = admin.json("/api/v1/tokens?all=true").await;
    let row = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["displayId"] == old_id.as_str())
        .cloned()
        .unwrap();
    assert!(row["revokedAt"].is_string(), "{row}");

    // Disabled, then enabled again.
    let bob = new_user(&stack, &admin, "bob", "bob@example.com").await;
    let (bobs, _) = create_token(&bob, "ci").await;
    assert_eq!(whoami(&stack, &bobs).await, 200);
    let r = admin.patch("/api/v1/users/bob", json!({"disabled": true})).await;
    assert_eq!(r.status(), 200);
    let r = admin.patch("/api/v1/users/bob", json!({"disabled": false})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        whoami(&stack, &bobs).await,
        401,
        "a re-enabled account must not get the old token back"
    );

    // A new password (e.g. after a leak) revokes the tokens, too.
    let carol = new_user(&stack, &admin, "carol", "carol@example.com").await;
    let (carols, _) = create_token(&carol, "ci").await;
    assert_eq!(whoami(&stack, &carols).await, 200);
    let r = admin
        .patch("/api/v1/users/carol", json!({"password": format!("{PASSWORD} 2")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(whoami(&stack, &carols).await, 401, "password changed");

    // Audited per token, with the reason as the revoker.
    let audit = admin.json("/api/v1/audit?kind=token.revoked").await;
    let text = audit.to_string();
    for why in [
        "system: user deleted",
        "system: user disabled",
        "system: password changed",
    ] {
        assert!(text.contains(why), "{why} missing in {text}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_stop_at_max_per_user() {
    let stack = Stack::portable(CONFIG).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let dave = std::sync::Arc::new(new_user(&stack, &admin, "dave", "dave@example.com").await);
    let mut tasks = Vec::new();
    for n in 0..16 {
        let dave = dave.clone();
        tasks.push(tokio::spawn(async move {
            dave.post(
                "/api/v1/tokens",
                json!({"name": format!("t{n}"), "scopes": ["read"], "expiresInDays": 7}),
            )
            .await
            .status()
            .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(created, 4, "maxPerUser 4, 16 parallel creates: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_stream_ends_when_its_token_is_revoked() {
    let stack = Stack::portable(CONFIG).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let erin = new_user(&stack, &admin, "erin", "erin@example.com").await;
    let (token, display) = create_token(&erin, "events").await;
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/events", stack.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    // Open and quiet: nothing ends it while the token holds.
    let quiet = tokio::time::timeout(Duration::from_secs(3), body.next()).await;
    assert!(
        quiet.is_err(),
        "the stream ended or sent while the token holds: {quiet:?}"
    );
    assert_eq!(erin.delete(&format!("/api/v1/tokens/{display}")).await.status(), 204);
    let revoked = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the event stream was still open 5 s after its token was revoked"
    );
    eprintln!("event stream ended {:?} after the revocation", revoked.elapsed());
    stack.stop().await;
}
