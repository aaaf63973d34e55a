#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The notification outbox on both databases: the cursor starts at the chain head, production is
//! exactly once per (event, sink) and guarded by the cursor, claims exclude each other until the lease
//! lapses, retries, dead letters and the manual retry.

mod common;

use std::time::Duration;

use chrono::Utc;
use janus_store::{AuditKind, NewAuditEvent, NewOutboxRow, OutboxState, Store};
use serde_json::json;

fn event(key: &str) -> NewAuditEvent {
    NewAuditEvent {
        key: key.into(),
        kind: AuditKind::LoginFailed,
        at: Utc::now(),
        actor: "a@example.com".into(),
        request: Some("r".into()),
        cluster: Some("central".into()),
        namespaces: vec!["apps".into()],
        details: json!({}),
    }
}

fn row(event_key: &str, sink: &str) -> NewOutboxRow {
    NewOutboxRow {
        key: format!("{event_key}/{sink}"),
        sink: sink.into(),
        event_key: event_key.into(),
        kind: "login.failed".into(),
        payload: "{}".into(),
        event_at: Utc::now(),
    }
}

async fn outbox_lifecycle(s: &Store, b: &str) {
    // History before notifications existed is not sent: the cursor starts at the head.
    s.record_audit(&event("old/1")).await.unwrap();
    s.record_audit(&event("old/2")).await.unwrap();
    let cursor = s.outbox_cursor().await.unwrap();
    assert_eq!(cursor, 2, "{b}");
    assert!(s.audit_events_after(cursor, 100).await.unwrap().is_empty(), "{b}");

    s.record_audit(&event("new/1")).await.unwrap();
    s.record_audit(&event("new/2")).await.unwrap();
    let evs = s.audit_events_after(cursor, 100).await.unwrap();
    assert_eq!(
        evs.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["new/1", "new/2"],
        "{b}"
    );
    let rows = vec![row("new/1", "hook"), row("new/1", "chat"), row("new/2", "hook")];
    let done = s.produce_outbox(cursor, 4, &rows).await.unwrap();
    assert!(done.advanced, "{b}");
    assert_eq!(done.inserted, 3, "{b}");
    // A replica that read the old cursor produces nothing; the same rows again insert nothing.
    let stale = s.produce_outbox(cursor, 4, &rows).await.unwrap();
    assert!(!stale.advanced, "{b}");
    assert_eq!(s.outbox_cursor().await.unwrap(), 4, "{b}");
    assert_eq!(s.insert_outbox(&rows).await.unwrap(), 0, "{b}");

    // Claims: one replica takes all due rows; the other gets none until the lease lapses.
    let a = s.claim_outbox("a", 10, Duration::from_millis(300)).await.unwrap();
    assert_eq!(a.len(), 3, "{b}");
    assert!(a.iter().all(|r| r.claimed_by.as_deref() == Some("a")), "{b}");
    assert!(
        s.claim_outbox("b", 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "{b}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = s.claim_outbox("b", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(again.len(), 3, "lapsed claims are due again: {b}");

    let (sent, retry, dead) = (&again[0], &again[1], &again[2]);
    assert!(s.outbox_sent(sent.id, Utc::now()).await.unwrap(), "{b}");
    let later = Utc::now() + chrono::Duration::seconds(30);
    assert!(
        s.outbox_retry_later(retry.id, later, Some(503), "busy").await.unwrap(),
        "{b}"
    );
    assert!(
        s.outbox_dead(dead.id, true, Some(400), "bad request: no")
            .await
            .unwrap(),
        "{b}"
    );
    // A row not due yet and rows no longer pending are not claimed.
    assert!(
        s.claim_outbox("b", 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "{b}"
    );

    let r = s.outbox_row(retry.id).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.attempts, r.last_status),
        (OutboxState::Pending, 1, Some(503)),
        "{b}"
    );
    assert_eq!(r.claimed_by, None, "{b}");
    let d = s.list_dead(10).await.unwrap();
    assert_eq!(d.len(), 1, "{b}");
    assert_eq!(d[0].last_error.as_deref(), Some("bad request: no"), "{b}");
    assert_eq!(d[0].last_status, Some(400), "{b}");

    let counts = s.outbox_counts().await.unwrap();
    let n = |sink: &str, st: OutboxState| {
        counts
            .iter()
            .find(|c| c.sink == sink && c.state == st)
            .map_or(0, |c| c.count)
    };
    assert_eq!(n("hook", OutboxState::Sent) + n("chat", OutboxState::Sent), 1, "{b}");
    assert_eq!(
        n("hook", OutboxState::Dead) + n("chat", OutboxState::Dead),
        1,
        "{counts:?} {b}"
    );

    // The manual retry: pending again, due now, attempts kept; not for a row that is not dead.
    assert!(!s.retry_dead(sent.id).await.unwrap(), "{b}");
    assert!(s.retry_dead(dead.id).await.unwrap(), "{b}");
    let back = s.claim_outbox("c", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(back.len(), 1, "{b}");
    assert_eq!((back[0].id, back[0].attempts), (dead.id, 1), "{b}");
    assert!(back[0].since >= d[0].since, "{b}");
    assert!(s.list_dead(10).await.unwrap().is_empty(), "{b}");
}

#[tokio::test]
async fn outbox_lifecycle_sqlite() {
    let (s, _dir) = common::sqlite_store().await;
    outbox_lifecycle(&s, "sqlite").await;
}

#[tokio::test]
async fn outbox_lifecycle_postgres() {
    let Some((s, _)) = common::pg_store().await else { return };
    outbox_lifecycle(&s, "postgres").await;
}

/// Two replicas claiming at once on PostgreSQL never get the same row (`FOR UPDATE SKIP LOCKED`).
#[tokio::test]
async fn concurrent_claims_are_disjoint_postgres() {
    let Some((s, url)) = common::pg_store().await else {
        return;
    };
    let other = Store::connect(&url, None).await.unwrap();
    s.outbox_cursor().await.unwrap();
    let rows: Vec<_> = (0..200).map(|i| row(&format!("e/{i}"), "hook")).collect();
    assert_eq!(s.insert_outbox(&rows).await.unwrap(), 200);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let st = if i % 2 == 0 { s.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let c = st
                    .claim_outbox(&format!("r{i}"), 7, Duration::from_secs(60))
                    .await
                    .unwrap();
                if c.is_empty() {
                    break;
                }
                got.extend(c.into_iter().map(|r| r.id));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((n, all.len()), (200, 200), "every row claimed exactly once");
}
