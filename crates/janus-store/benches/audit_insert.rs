#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Audit insert cost: single events one after another, and several writers at once (the web replicas
//! and the recorder), on SQLite (a temp file) and on PostgreSQL when `JANUS_TEST_POSTGRES_URL` is set.
//!
//! `cargo bench -p janus-store --bench audit_insert` (`BENCH_EVENTS=N` sets the events per run). It
//! prints figures; it asserts nothing about speed.

use std::time::Instant;

use chrono::Utc;
use janus_store::{AuditKind, NewAuditEvent, Store};
use sqlx::Connection as _;

fn event(i: usize, task: usize) -> NewAuditEvent {
    NewAuditEvent {
        key: format!("bench/{task}/{i}"),
        kind: AuditKind::SessionOpened,
        at: Utc::now(),
        actor: "bench@x.io".into(),
        request: Some(format!("req-{i}")),
        cluster: Some("central".into()),
        namespaces: vec!["apps".into()],
        details: serde_json::json!({"reason": "benchmark", "i": i}),
    }
}

async fn run(label: &str, store: Store, n: usize) {
    let started = Instant::now();
    for i in 0..n {
        store.record_audit(&event(i, 0)).await.unwrap();
    }
    let one = started.elapsed();
    let tasks = 8;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 1..=tasks {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..n / tasks {
                s.record_audit(&event(i, t)).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let many = started.elapsed();
    println!(
        "{label}: {n} single inserts in sequence: {:.0} µs each; {tasks} tasks × {} inserts: {:.0} µs per insert ({:.0} inserts/s)",
        one.as_micros() as f64 / n as f64,
        n / tasks,
        many.as_micros() as f64 / (n / tasks * tasks) as f64,
        (n / tasks * tasks) as f64 / many.as_secs_f64()
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    run("sqlite", Store::connect(&url, None).await.unwrap(), n).await;
    if let Ok(base) = std::env::var("JANUS_TEST_POSTGRES_URL") {
        let name = format!("janus_bench_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
        let (b, _) = base.rsplit_once('/').unwrap();
        run(
            "postgres",
            Store::connect(&format!("{b}/{name}"), None).await.unwrap(),
            n,
        )
        .await;
    }
}
