#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Audit insert cost with the tamper-evident chain, against the write path before it: single events
//! one after another, and eight writers at once (the web replicas and the recorder), on SQLite (a temp
//! file) and on PostgreSQL when `JANUS_TEST_POSTGRES_URL` is set.
//!
//! "before" runs the statement the store ran before the chain (one `INSERT … ON CONFLICT DO NOTHING` per
//! event in a transaction) on a database at schema version 3; "chained" is `Store::record_audit` now.
//!
//! `cargo bench -p janus-store --bench audit_insert` (`BENCH_EVENTS=N` sets the events per run). It
//! prints figures; it asserts nothing about speed.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use janus_store::{AuditKind, NewAuditEvent, Store};
use sqlx::Connection as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

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

/// The insert before the audit chain (schema version 3).
const OLD_INSERT: &str = "INSERT INTO audit_events (event_key, kind, at_us, actor, request, cluster, namespaces, \
     details, recorded_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_key) DO NOTHING";

type Insert = Arc<dyn Fn(NewAuditEvent) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

macro_rules! old_insert {
    ($pool:expr) => {{
        let pool = $pool;
        let f: Insert = Arc::new(move |ev: NewAuditEvent| {
            let pool = pool.clone();
            Box::pin(async move {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(OLD_INSERT)
                    .bind(&ev.key)
                    .bind(ev.kind.as_str())
                    .bind(ev.at.timestamp_micros())
                    .bind(&ev.actor)
                    .bind(ev.request.as_deref())
                    .bind(ev.cluster.as_deref())
                    .bind(serde_json::to_string(&ev.namespaces).unwrap())
                    .bind(ev.details.to_string())
                    .bind(Utc::now().timestamp_micros())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            })
        });
        f
    }};
}

fn chained(store: Store) -> Insert {
    Arc::new(move |ev: NewAuditEvent| {
        let store = store.clone();
        Box::pin(async move {
            store.record_audit(&ev).await.unwrap();
        })
    })
}

fn v3_migrator(pg: bool) -> Migrator {
    let sql: [&'static str; 3] = if pg {
        [
            include_str!("../migrations/postgres/0001_init.sql"),
            include_str!("../migrations/postgres/0002_login_limits_unique_email.sql"),
            include_str!("../migrations/postgres/0003_request_policies.sql"),
        ]
    } else {
        [
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/sqlite/0002_login_limits_unique_email.sql"),
            include_str!("../migrations/sqlite/0003_request_policies.sql"),
        ]
    };
    let migrations = (0..3)
        .map(|i| {
            Migration::new(
                i as i64 + 1,
                Cow::Owned(format!("v{}", i + 1)),
                MigrationType::Simple,
                Cow::Borrowed(sql[i]),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

async fn measure(label: &str, insert: Insert, n: usize) {
    let started = Instant::now();
    for i in 0..n {
        insert(event(i, 0)).await;
    }
    let one = started.elapsed();
    let tasks = 8;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 1..=tasks {
        let insert = insert.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..n / tasks {
                insert(event(i, t)).await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let many = started.elapsed();
    let per = |d: Duration, k: usize| d.as_micros() as f64 / k as f64;
    let k = n / tasks * tasks;
    println!(
        "{label:<18} {n} in sequence: {:>6.0} µs/insert | {tasks} tasks: {:>6.0} µs/insert, {:>6.0} inserts/s",
        per(one, n),
        per(many, k),
        k as f64 / many.as_secs_f64()
    );
}

async fn pg_database(base: &str, name: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let (b, _) = base.rsplit_once('/').unwrap();
    format!("{b}/{name}")
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2 {
        // SQLite: the same connection settings as the store (WAL, synchronous NORMAL, 4 connections).
        let url = format!("sqlite://{}", dir.path().join(format!("old-{round}.db")).display());
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let opts = opts
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .unwrap();
        v3_migrator(false).run(&pool).await.unwrap();
        measure("sqlite before", old_insert!(pool.clone()), n).await;
        pool.close().await;
        let url = format!("sqlite://{}", dir.path().join(format!("new-{round}.db")).display());
        let store = Store::connect(&url, None).await.unwrap();
        measure("sqlite chained", chained(store.clone()), n).await;
        store.close().await;
        if let Ok(base) = std::env::var("JANUS_TEST_POSTGRES_URL") {
            let pid = std::process::id();
            let url = pg_database(&base, &format!("janus_bench_old_{pid}_{round}")).await;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(10)
                .connect(&url)
                .await
                .unwrap();
            v3_migrator(true).run(&pool).await.unwrap();
            measure("postgres before", old_insert!(pool.clone()), n).await;
            pool.close().await;
            let url = pg_database(&base, &format!("janus_bench_new_{pid}_{round}")).await;
            let store = Store::connect(&url, None).await.unwrap();
            measure("postgres chained", chained(store.clone()), n).await;
            store.close().await;
        }
    }
}
