#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The admins' view of notification deliveries (issue 17, "Delivery"): the Notifications page, `GET
//! /api/v1/notifications/dead` and `POST /api/v1/notifications/dead/{id}/retry`. Who may (admins only:
//! not an engineer, not a person a policy names as approver, not anonymous; CSRF on the retry), and
//! that a dead letter written through the store's outbox API is listed with its error and that a retry
//! puts it back to pending, through the API and through the page's form, against the real stack
//! (kubesim, controller, web on SQLite).

mod common;

use chrono::Utc;
use common::{ADMIN, Session, Stack};
use janus_store::{NewOutboxRow, OutboxState, Store};
use serde_json::json;

/// A policy that makes `appr@example.com` an approver (of team-a) without being an admin.
const APPROVER_POLICY: &str = r#"
policies:
- name: team-a
  match: {namespaces: [team-a]}
  approvers: {emails: [appr@example.com]}
"#;

/// The web's own database, opened beside it (SQLite in WAL mode takes a second connection).
async fn store(stack: &Stack) -> Store {
    let url = format!("sqlite://{}", stack.dir.path().join("janus.db").display());
    Store::connect(&url, None).await.expect("store")
}

/// Queues a delivery for `sink` and dead-letters it as a sink refusing it would; returns its id.
async fn dead_letter(store: &Store, event: &str, sink: &str) -> i64 {
    let key = format!("{event}/{sink}");
    let inserted = store
        .insert_outbox(&[NewOutboxRow {
            key: key.clone(),
            sink: sink.into(),
            event_key: event.into(),
            kind: "request.created".into(),
            payload: "{}".into(),
            event_at: Utc::now(),
        }])
        .await
        .expect("insert");
    assert_eq!(inserted, 1);
    let id = store
        .outbox_rows(500)
        .await
        .expect("rows")
        .into_iter()
        .find(|r| r.key == key)
        .expect("the queued row")
        .id;
    assert!(
        store
            .outbox_dead(id, true, Some(400), "HTTP 400 Bad Request: invalid_payload")
            .await
            .expect("dead")
    );
    id
}

async fn status_get(s: &Session, path: &str) -> u16 {
    s.get(path).await.status().as_u16()
}

async fn state_of(store: &Store, id: i64) -> OutboxState {
    store.outbox_row(id).await.expect("row").expect("exists").state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_admins_see_and_retry_dead_letters() {
    let stack = Stack::start(APPROVER_POLICY).await;
    let db = store(&stack).await;
    let anon = stack.anon();
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let appr = stack.user(&admin, "appr", "appr@example.com", false).await;
    let id = dead_letter(&db, "ev-authz", "hook").await;
    let retry = format!("/api/v1/notifications/dead/{id}/retry");
    let page_retry = format!("/admin/notifications/{id}/retry");

    // The approver is one (the Approvals page is theirs), yet deliveries are not.
    assert_eq!(
        status_get(&appr, "/admin").await,
        200,
        "the policy makes appr an approver"
    );
    let reads: [(&str, [u16; 4]); 2] = [
        // path: [anonymous, engineer, approver, admin]
        ("/api/v1/notifications/dead", [401, 403, 403, 200]),
        ("/admin/notifications", [303, 403, 403, 200]),
    ];
    for (path, want) in reads {
        let got = [
            status_get(&anon, path).await,
            status_get(&alice, path).await,
            status_get(&appr, path).await,
            status_get(&admin, path).await,
        ];
        assert_eq!(got, want, "GET {path} as [anonymous, engineer, approver, admin]");
    }
    // The navigation offers the page to admins only.
    let nav = |s: &Session| {
        let s = s.clone();
        async move {
            s.get("/requests")
                .await
                .text()
                .await
                .unwrap()
                .contains("href=\"/admin/notifications\"")
        }
    };
    assert!(nav(&admin).await);
    assert!(!nav(&alice).await && !nav(&appr).await);

    // Retrying: refused to everyone but admins, through the API and the page's form; nothing changes.
    assert_eq!(anon.post(&retry, json!({})).await.status(), 401);
    assert_eq!(alice.post(&retry, json!({})).await.status(), 403);
    assert_eq!(appr.post(&retry, json!({})).await.status(), 403);
    assert_eq!(alice.form(&page_retry, &[]).await.status(), 403);
    assert_eq!(appr.form(&page_retry, &[]).await.status(), 403);
    // An admin without the CSRF token (API header or form field) is refused too.
    let no_csrf = admin.http.post(format!("{}{retry}", stack.url)).send().await.unwrap();
    assert_eq!(no_csrf.status(), 403);
    let no_csrf_form = admin
        .http
        .post(format!("{}{page_retry}", stack.url))
        .header("origin", &stack.url)
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf_form.status(), 403);
    // A cross-site Origin is refused even with the token.
    let cross = admin
        .http
        .post(format!("{}{retry}", stack.url))
        .header("x-csrf-token", &admin.csrf)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert_eq!(
        state_of(&db, id).await,
        OutboxState::Dead,
        "a refused retry changes nothing"
    );

    // The admin may.
    assert_eq!(admin.post(&retry, json!({})).await.status(), 204);
    assert_eq!(state_of(&db, id).await, OutboxState::Pending);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_is_listed_and_a_retry_makes_it_pending() {
    let stack = Stack::start("").await;
    let db = store(&stack).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;

    // Nothing queued: an empty view, not an error.
    let v = admin.json("/api/v1/notifications/dead").await;
    assert_eq!(v, json!({"sinks": [], "dead": []}));
    let html = admin.get("/admin/notifications").await.text().await.unwrap();
    assert!(html.contains("No dead letters."), "{html}");

    let first = dead_letter(&db, "ev-1", "hook").await;
    let second = dead_letter(&db, "ev-2", "slack-ops").await;
    // One delivered and one waiting, for the counts.
    db.insert_outbox(&[NewOutboxRow {
        key: "ev-3/hook".into(),
        sink: "hook".into(),
        event_key: "ev-3".into(),
        kind: "request.approved".into(),
        payload: "{}".into(),
        event_at: Utc::now(),
    }])
    .await
    .unwrap();

    let v = admin.json("/api/v1/notifications/dead").await;
    assert_eq!(
        v["sinks"],
        json!([
            {"sink": "hook", "sent": 0, "pending": 1, "dead": 1},
            {"sink": "slack-ops", "sent": 0, "pending": 0, "dead": 1},
        ]),
        "{v}"
    );
    let dead = v["dead"].as_array().unwrap();
    assert_eq!(dead.len(), 2, "{v}");
    // Newest first.
    assert_eq!(dead[0]["id"], second);
    let d = &dead[1];
    assert_eq!(d["id"], first);
    assert_eq!(d["sink"], "hook");
    assert_eq!(d["kind"], "request.created");
    assert_eq!(d["eventKey"], "ev-1");
    assert_eq!(d["idempotencyKey"], "ev-1/hook");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["lastStatus"], 400);
    assert_eq!(d["lastError"], "HTTP 400 Bad Request: invalid_payload");

    // The page lists both with their error and a Retry form carrying the CSRF field.
    let html = admin.get("/admin/notifications").await.text().await.unwrap();
    for want in [
        format!("data-dead-letter=\"{first}\""),
        format!("data-dead-letter=\"{second}\""),
        "HTTP 400 Bad Request: invalid_payload".to_string(),
        format!("action=\"/admin/notifications/{first}/retry\""),
        format!("name=\"_csrf\" value=\"{}\"", admin.csrf),
        "slack-ops".to_string(),
    ] {
        assert!(html.contains(&want), "{want} missing in\n{html}");
    }

    // Retry through the API: pending again, due now, attempts kept; gone from the list.
    let r = admin
        .post(&format!("/api/v1/notifications/dead/{first}/retry"), json!({}))
        .await;
    assert_eq!(r.status(), 204);
    let row = db.outbox_row(first).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Pending);
    assert_eq!(row.attempts, 1);
    assert!(row.next_attempt_at <= Utc::now());
    // Retrying what is not a dead letter (any more), or nothing at all, says so.
    let again = admin
        .post(&format!("/api/v1/notifications/dead/{first}/retry"), json!({}))
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(
        admin
            .post("/api/v1/notifications/dead/999999/retry", json!({}))
            .await
            .status(),
        404
    );
    assert_eq!(
        admin
            .post("/api/v1/notifications/dead/x1/retry", json!({}))
            .await
            .status(),
        422
    );
    let v = admin.json("/api/v1/notifications/dead").await;
    assert_eq!(v["dead"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        v["sinks"][0],
        json!({"sink": "hook", "sent": 0, "pending": 2, "dead": 0})
    );

    // Retry through the page's form: back to the page, which says so.
    let r = admin.form(&format!("/admin/notifications/{second}/retry"), &[]).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(to, "/admin/notifications?done=retried");
    let html = admin.get(&to).await.text().await.unwrap();
    assert!(html.contains("the delivery is pending again"), "{html}");
    assert!(html.contains("No dead letters."), "{html}");
    assert_eq!(state_of(&db, second).await, OutboxState::Pending);
    stack.stop().await;
}
