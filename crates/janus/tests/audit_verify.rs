#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `janus audit verify` run as a real process: against the database (SQLite always, PostgreSQL when
//! `JANUS_TEST_POSTGRES_URL` is set) and against an exported file, intact and tampered, with its exit
//! codes (0 intact, 1 broken, 2 cannot check).

use std::path::Path;
use std::process::{Command, Output};

use chrono::{Duration, TimeZone, Utc};
use janus_store::{AuditKind, NewAuditEvent, Store};
use serde_json::json;
use sqlx::Connection as _;

fn janus() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_janus"));
    c.env_remove("JANUS_DATABASE_URL").env_remove("JANUS_DATABASE_PASSWORD");
    c
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out: Output = janus().args(args).output().expect("runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn seed(url: &str) {
    let store = Store::connect(url, None).await.expect("store");
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
    let evs: Vec<NewAuditEvent> = (0..30)
        .map(|i| NewAuditEvent {
            key: format!("k/{i}"),
            kind: AuditKind::RequestApproved,
            at: t0 + Duration::seconds(i),
            actor: "admin@example.com".into(),
            request: Some(format!("r-{i}")),
            cluster: Some("central".into()),
            namespaces: vec!["team-a".into()],
            details: json!({"ttl_seconds": 600, "note": "'; DROP TABLE audit_events; --"}),
        })
        .collect();
    store.record_audit_batch(&evs[..10]).await.expect("seed");
    store.record_audit_batch(&evs[10..]).await.expect("seed");
    store.close().await;
}

async fn raw(url: &str, sql: &str) {
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
}

/// The database checks: intact, then a changed row named by seq and key, then a deleted one.
async fn database_checks(url: &str, dir: &Path) {
    seed(url).await;
    let (code, out, err) = run(&["audit", "verify", "--database-url", url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("audit chain intact: 30 events checked (seq 1..=30"),
        "{out}"
    );
    // The same configuration as the other subcommands: the URL from the environment.
    let out = janus()
        .args(["audit", "verify"])
        .env("JANUS_DATABASE_URL", url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // An export, kept as a SIEM would keep it.
    let file = dir.join("export.jsonl");
    let file = file.to_str().unwrap();
    let (code, _, err) = run(&["audit", "export", "--database-url", url, "--output", file]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["audit", "verify", "--file", file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("30 events checked (seq 1..=30"), "{out}");

    // A row a replica of the previous version writes (no place in the chain yet): verify counts it and
    // leaves it alone (checking writes nothing); the next insert chains it.
    raw(
        url,
        "INSERT INTO audit_events (event_key, kind, at_us, actor, request, cluster, namespaces, details, recorded_us) \
         VALUES ('old-replica', 'login.failed', 0, 'a', NULL, NULL, '[]', '{}', 0)",
    )
    .await;
    for _ in 0..2 {
        let (code, out, err) = run(&["audit", "verify", "--database-url", url]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("30 events checked"), "{out}");
        assert!(out.contains("\n1 events are not chained yet"), "{out}");
    }

    // The copy against the database: no difference.
    let (code, out, err) = run(&["audit", "verify", "--file", file, "--database-url", url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("copy against database: no difference (30 events of the copy compared)"),
        "{out}"
    );
    // The tail cut off together with the chain head: the database's own chain verifies (the documented
    // limit); the copy shows the loss.
    let hash_25: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(file).unwrap().lines().nth(24).unwrap()).unwrap();
    let hash_25 = hash_25["hash"].as_str().unwrap().to_string();
    raw(
        url,
        &format!(
            "DELETE FROM audit_events WHERE seq > 25; UPDATE audit_chain SET last_seq = 25, last_hash = '{hash_25}'"
        ),
    )
    .await;
    let (code, out, _) = run(&["audit", "verify", "--database-url", url]);
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = run(&["audit", "verify", "--file", file, "--database-url", url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("audit chain BROKEN\ncopy: audit chain intact"), "{out}");
    assert!(
        out.contains("copy against database: BROKEN: event seq 26 (key k/25) of the copy is not in the database"),
        "{out}"
    );

    let drop_trigger = if url.starts_with("postgres") {
        "DROP TRIGGER audit_events_append_only ON audit_events"
    } else {
        "DROP TRIGGER audit_events_append_only"
    };
    raw(url, drop_trigger).await;
    raw(
        url,
        "UPDATE audit_events SET actor = 'nobody@example.com' WHERE seq = 12",
    )
    .await;
    let (code, out, err) = run(&["audit", "verify", "--database-url", url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.starts_with("audit chain BROKEN: event seq 12 (key k/11) was changed"),
        "{out}"
    );
    assert!(out.contains("11 events before it were intact"), "{out}");
    // The export taken before still verifies: it is the copy to compare with. Checked together, the
    // database's own chain names the changed event.
    assert_eq!(run(&["audit", "verify", "--file", file]).0, 0);
    let (code, out, _) = run(&["audit", "verify", "--file", file, "--database-url", url]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("\ndatabase: audit chain BROKEN: event seq 12 (key k/11) was changed"),
        "{out}"
    );
    raw(url, "DELETE FROM audit_events WHERE seq = 5").await;
    let (code, out, _) = run(&["audit", "verify", "--database-url", url]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("audit chain BROKEN: event seq 5 is missing (deleted)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_the_database_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    database_checks(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_the_database_on_postgres() {
    let Ok(base) = std::env::var("JANUS_TEST_POSTGRES_URL") else {
        eprintln!("JANUS_TEST_POSTGRES_URL not set: PostgreSQL variant skipped");
        return;
    };
    if base.is_empty() {
        return;
    }
    let name = format!("janus_verify_{}", std::process::id());
    let mut c = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let url = format!("{prefix}/{name}");
    let dir = tempfile::tempdir().unwrap();
    database_checks(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_an_exported_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    seed(&url).await;
    let file = dir.path().join("export.jsonl");
    let (code, _, err) = run(&[
        "audit",
        "export",
        "--database-url",
        &url,
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 30);
    let write = |name: &str, lines: &[String]| {
        let p = dir.path().join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p.to_str().unwrap().to_string()
    };
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();

    // A piece from the middle (an export --since, or a rotated SIEM file) verifies on its own.
    let piece = write("piece.jsonl", &owned[10..]);
    let (code, out, _) = run(&["audit", "verify", "--file", &piece]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("20 events checked (seq 11..=30"), "{out}");

    // A changed line.
    let mut changed = owned.clone();
    changed[20] = changed[20].replace("admin@example.com", "admin2@example.com");
    let (code, out, _) = run(&["audit", "verify", "--file", &write("changed.jsonl", &changed)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("audit chain BROKEN: event seq 21 (key k/20) was changed"),
        "{out}"
    );

    // A deleted line.
    let mut deleted = owned.clone();
    deleted.remove(7);
    let (code, out, _) = run(&["audit", "verify", "--file", &write("deleted.jsonl", &deleted)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("audit chain BROKEN: event seq 8 is missing (deleted); the chain resumes at seq 9 (key k/8)"),
        "{out}"
    );

    // Two lines swapped: the first out of place is reported as a gap.
    let mut swapped = owned.clone();
    swapped.swap(3, 4);
    let (code, out, _) = run(&["audit", "verify", "--file", &write("swapped.jsonl", &swapped)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("audit chain BROKEN: event seq 4 is missing (deleted); the chain resumes at seq 5 (key k/4)"),
        "{out}"
    );

    // Cannot check: not an export, a missing file, no database.
    let (code, _, err) = run(&[
        "audit",
        "verify",
        "--file",
        &write("junk.jsonl", &["{\"not\": 1}".to_string()]),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1 is not an exported audit event"), "{err}");
    let (code, _, err) = run(&["audit", "verify", "--file", "/nonexistent/export.jsonl"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read /nonexistent/export.jsonl"), "{err}");
    let (code, _, err) = run(&["audit", "verify", "--database-url", "mysql://db/janus"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unsupported database URL scheme"), "{err}");
    let (code, _, err) = run(&["audit", "verify"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--database-url"), "{err}");
}
