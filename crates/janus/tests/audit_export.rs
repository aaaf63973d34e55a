#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `janus audit export` run as a real process against a SQLite file.

use std::process::Command;

use chrono::{Duration, Utc};
use janus_store::{AuditEvent, AuditKind, NewAuditEvent, Store};
use serde_json::json;

fn janus() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_janus"));
    c.env_remove("JANUS_DATABASE_URL").env_remove("JANUS_DATABASE_PASSWORD");
    c
}

async fn seeded() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = Store::connect(&url, None).await.expect("store");
    let now = Utc::now();
    let mut evs = Vec::new();
    for i in 0..30 {
        // 10 old events (40 days ago), 20 recent ones.
        let at = if i < 10 {
            now - Duration::days(40)
        } else {
            now - Duration::hours(1)
        } + Duration::seconds(i);
        evs.push(NewAuditEvent {
            key: format!("k/{i}"),
            kind: AuditKind::RequestApproved,
            at,
            actor: if i == 20 {
                "say \"hi\", then\nleave".into()
            } else {
                "admin@example.com".into()
            },
            request: Some(format!("r-{i}")),
            cluster: Some("central".into()),
            namespaces: vec!["team-a".into()],
            details: json!({"ttl_seconds": 600, "note": "'; DROP TABLE audit_events; --"}),
        });
    }
    store.record_audit_batch(&evs).await.expect("seed");
    store.close().await;
    (dir, url)
}

#[tokio::test]
async fn exports_jsonl_and_csv() {
    let (dir, url) = seeded().await;

    let out = janus()
        .args(["audit", "export", "--database-url", &url])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<AuditEvent> = String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event per line"))
        .collect();
    assert_eq!(events.len(), 30);
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(events[20].actor, "say \"hi\", then\nleave");
    assert_eq!(events[0].details["note"], "'; DROP TABLE audit_events; --");
    assert!(String::from_utf8_lossy(&out.stderr).contains("30 events exported"));

    // --since as an age and as RFC 3339, the password from the environment (ignored by SQLite).
    let out = janus()
        .args(["audit", "export", "--database-url", &url, "--since", "7d"])
        .env("JANUS_DATABASE_PASSWORD", "not-used")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 20);
    let since = (Utc::now() - Duration::days(30)).to_rfc3339();
    let out = janus()
        .args(["audit", "export", "--since", &since, "--format", "jsonl"])
        .env("JANUS_DATABASE_URL", &url)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 20);

    // CSV into a file.
    let file = dir.path().join("export.csv");
    let out = janus()
        .args(["audit", "export", "--database-url", &url, "--format", "csv", "--output"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "nothing on stdout with --output");
    let csv = std::fs::read_to_string(&file).expect("export file");
    assert!(csv.starts_with("id,key,kind,at,actor,request,cluster,namespaces,details\r\n"));
    assert!(csv.contains(",\"say \"\"hi\"\", then\nleave\","), "quoted field: {csv}");
    assert_eq!(csv.matches(",request.approved,").count(), 30);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the export is private to its owner");
    }
}

#[tokio::test]
async fn refuses_bad_input_without_leaking_the_password() {
    let (_dir, url) = seeded().await;
    let out = janus()
        .args(["audit", "export", "--database-url", &url, "--since", "yesterday"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));

    let out = janus()
        .args([
            "audit",
            "export",
            "--database-url",
            "postgres://janus:Hunter2Secret@127.0.0.1:1/janus",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must not contain a password"), "{err}");
    assert!(!err.contains("Hunter2Secret"), "{err}");

    let out = janus()
        .args([
            "audit",
            "export",
            "--database-url",
            "postgres://janus@127.0.0.1:1/janus?connect_timeout=2",
        ])
        .env("JANUS_DATABASE_PASSWORD", "Hunter2Secret")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("Hunter2Secret"), "{err}");
}
