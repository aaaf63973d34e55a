#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The web UI while its PostgreSQL is down: people already signed in keep working on what does not
//! need the database (requests, decisions), `/readyz` says degraded, new logins get a clear 503, and
//! the audit log catches up once the database is back.
//!
//! Runs where scripts/test.sh configured a PostgreSQL (JANUS_TEST_POSTGRES_URL); it starts a cluster of
//! its own with scripts/pg-throwaway.sh, so stopping it disturbs no other test.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, Pg, Session, Stack, throwaway};
use serde_json::{Value, json};

async fn readyz(stack: &Stack) -> String {
    reqwest::get(format!("{}/readyz", stack.url))
        .await
        .expect("readyz")
        .text()
        .await
        .unwrap_or_default()
}

async fn wait_ready(stack: &Stack, degraded: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = readyz(stack).await;
        if r.contains("degraded") == degraded && r.starts_with("ready") {
            return;
        }
        assert!(Instant::now() < deadline, "readyz never became {degraded}: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn audit_kinds(admin: &Session, name: &str) -> Vec<String> {
    let v: Value = admin.json(&format!("/api/v1/audit?request={name}")).await;
    v["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_people_keep_working_and_the_audit_catches_up() {
    if std::env::var("JANUS_TEST_POSTGRES_URL").is_err() {
        return;
    }
    let pg = Pg::start();
    let stack = Stack::start_full(|_| String::new(), None, Some(pg.url.clone())).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    wait_ready(&stack, false).await;

    throwaway(&["pause", &pg.dir]);
    wait_ready(&stack, true).await;
    // Signed in before the outage: pages and decisions that live in the cluster still work.
    assert_eq!(alice.get("/requests").await.status(), 200);
    let name = alice.request(&["team-a"], 600, "during the outage").await;
    assert_eq!(
        admin
            .post(&format!("/api/v1/requests/{name}/approve"), json!({}))
            .await
            .status(),
        200
    );
    alice.wait_phase(&name, "Active").await;
    // A new login needs the database: a clear refusal, not a crash or a hang.
    let r = stack
        .anon()
        .http
        .post(format!("{}/api/v1/login", stack.url))
        .json(&json!({"username": "alice", "password": common::PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap_or_default();
    assert!(body.to_lowercase().contains("database"), "{body}");
    assert!(!body.contains(&pg.url), "no connection details in errors: {body}");

    throwaway(&["resume", &pg.dir]);
    wait_ready(&stack, false).await;
    // What happened during the outage is in the audit log once the database is back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let kinds = audit_kinds(&admin, &name).await;
        if ["request.created", "request.approved", "request.activated"]
            .iter()
            .all(|k| kinds.iter().any(|have| have == k))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the audit log did not catch up: {kinds:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // And logging in works again.
    stack.login("alice", common::PASSWORD).await;
    stack.stop().await;
}
