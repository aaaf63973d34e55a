#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What the store writes to the log: one structured line per new audit event, and never the database
//! password. A test binary of its own with a process-wide subscriber, because thread-local
//! subscribers race with tracing's callsite cache when other tests run in parallel threads.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use common::*;
use janus_store::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide JSON log, installed once.
fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Captured::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

fn captured() -> String {
    String::from_utf8(log().0.lock().expect("log buffer").clone()).expect("utf-8 log")
}

fn audit_lines_for(request: &str) -> Vec<serde_json::Value> {
    captured()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json log line"))
        .filter(|v| v["target"] == "audit" && v["request"] == request)
        .collect()
}

async fn one_line_per_new_event(s: Store, request: &str) {
    let ev = NewAuditEvent {
        key: format!("log/{request}"),
        kind: AuditKind::RequestRevoked,
        at: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc),
        actor: "admin@x.io".into(),
        request: Some(request.into()),
        cluster: Some("central".into()),
        namespaces: vec!["apps".into(), "db".into()],
        details: json!({"reason": "because", "n": 1}),
    };
    assert!(s.record_audit(&ev).await.unwrap());
    assert!(!s.record_audit(&ev).await.unwrap(), "a duplicate is not new");
    let lines = audit_lines_for(request);
    assert_eq!(lines.len(), 1, "one line per new event: {}", captured());
    let l = &lines[0];
    assert_eq!(l["kind"], "request.revoked");
    assert_eq!(l["actor"], "admin@x.io");
    assert_eq!(l["cluster"], "central");
    assert_eq!(l["namespaces"], "apps,db");
    assert_eq!(l["at"], "2026-01-01T00:00:00.000000Z");
    let details: serde_json::Value = serde_json::from_str(l["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["reason"], "because");
}

const SECRET: &str = "Sup3r$ecret:p@ss/word";

#[tokio::test]
async fn audit_lines_and_no_password() {
    log();
    let (sqlite, _dir) = sqlite_store().await;
    one_line_per_new_event(sqlite, "r-sqlite").await;
    let Some(base) = pg_url() else { return };
    let (pg, _url) = pg_store().await.expect("postgres store");
    one_line_per_new_event(pg, "r-postgres").await;

    // Trust authentication ignores the password: connecting proves it is passed separately, and
    // neither the connection nor a failed one logs it.
    let before = captured().len();
    let url = fresh_pg_database(&base).await;
    let s = Store::connect(&url, Some(SECRET)).await.unwrap();
    s.ping().await.unwrap();
    let e = Store::connect(&with_database(&base, "does_not_exist"), Some(SECRET))
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("Sup3r"), "password in error: {e}");
    let logs = captured();
    assert!(
        logs.len() > before,
        "the connections were logged at all (else this check proves nothing)"
    );
    assert!(!logs.contains("Sup3r"), "password in logs: {logs}");
}
