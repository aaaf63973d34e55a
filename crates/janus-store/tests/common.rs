#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Shared test helpers: a store per backend (SQLite in a temp file always; PostgreSQL in a fresh
//! database of `JANUS_TEST_POSTGRES_URL` when set).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use janus_store::Store;
use sqlx::Connection as _;

/// The PostgreSQL URL of the test cluster, if configured. Under CI it must be.
pub fn pg_url() -> Option<String> {
    match std::env::var("JANUS_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("CI").map_or(true, |v| v.is_empty() || v == "false"),
                "CI is set but JANUS_TEST_POSTGRES_URL is not: run the tests through scripts/test.sh"
            );
            eprintln!("JANUS_TEST_POSTGRES_URL not set: PostgreSQL variant skipped");
            None
        }
    }
}

/// Replaces the database name (the path) of a postgres URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Creates an empty database on the test cluster and returns its URL.
pub async fn fresh_pg_database(base: &str) -> String {
    let name = format!(
        "janus_t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    );
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to the test cluster");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.ok();
    with_database(base, &name)
}

/// A SQLite store in a new temp dir (kept alive by the returned guard).
pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("sub/janus.db").display());
    (Store::connect(&url, None).await.expect("sqlite store"), dir)
}

/// A PostgreSQL store on a fresh database, if configured.
pub async fn pg_store() -> Option<(Store, String)> {
    let base = pg_url()?;
    let url = fresh_pg_database(&base).await;
    Some((Store::connect(&url, None).await.expect("postgres store"), url))
}
