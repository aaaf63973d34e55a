#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Approval policies in the store (issue 15): the history columns of schema version 3, the upgrade of a
//! database created by versions 1 and 2, and the policy events in the audit export. SQLite always,
//! PostgreSQL when `JANUS_TEST_POSTGRES_URL` is set (scripts/pg-throwaway.sh).

mod common;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use janus_api::AccessRequest;
use janus_store::recorder::{events_from_request, record_request};
use janus_store::{AuditEvent, AuditQuery, ExportFormat, RequestRecord, Store};
use serde_json::json;
use sqlx::migrate::{Migration, MigrationType, Migrator};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Every backend to test: SQLite always, PostgreSQL when configured.
async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let (s, dir) = common::sqlite_store().await;
    let mut out = vec![(s, Some(dir))];
    if let Some((pg, _url)) = common::pg_store().await {
        out.push((pg, None));
    }
    out
}

/// A break-glass request under policy `prod`, scheduled, with two approvals (one not counted) and a
/// review: every new field at once.
fn policy_request() -> AccessRequest {
    serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "bg-1", "uid": "u-bg-1", "creationTimestamp": "2026-05-01T10:00:00Z"},
        "spec": {
            "requester": "jane@example.com", "cluster": "central", "namespaces": ["payments"],
            "reason": "INC-42, \"db\" down", "ttlSeconds": 900, "requesterGroups": ["oncall"],
            "startAt": "2026-05-01T10:00:30Z",
            "breakGlass": {"at": "2026-05-01T10:00:00.100Z"},
            "approvals": [
                {"by": "lead@example.com", "at": "2026-05-01T10:05:00Z", "comment": "seen, ok\nfollow-up OPS-9",
                 "groups": ["payments-leads"]},
                {"by": "mallory@example.com", "at": "2026-05-01T10:06:00Z"}
            ],
            "breakGlassReview": {"by": "lead@example.com", "at": "2026-05-01T10:07:00.5Z",
                                 "comment": "justified, thanks", "groups": ["payments-leads"]}
        },
        "status": {
            "phase": "Active", "approvedAt": "2026-05-01T10:00:01Z", "activeAt": "2026-05-01T10:00:31Z",
            "expiresAt": "2026-05-01T10:15:30Z",
            "policy": {"name": "prod", "approvalsRequired": 2, "approvalsGiven": 1,
                       "approvedBy": ["lead@example.com"], "breakGlass": true,
                       "ignored": ["mallory@example.com: not an approver of policy prod"]},
            "conditions": [
                {"type": "Approved", "status": "True", "reason": "BreakGlass", "message": "",
                 "lastTransitionTime": "2026-05-01T10:00:01Z"},
                {"type": "PolicySatisfied", "status": "True", "reason": "BreakGlass", "message": "",
                 "lastTransitionTime": "2026-05-01T10:00:01Z"},
                {"type": "Scheduled", "status": "False", "reason": "Started", "message": "",
                 "lastTransitionTime": "2026-05-01T10:00:30Z"}
            ]
        }
    }))
    .unwrap()
}

fn expected_record() -> RequestRecord {
    RequestRecord {
        name: "bg-1".into(),
        requester: "jane@example.com".into(),
        cluster: "central".into(),
        namespaces: vec!["payments".into()],
        reason: "INC-42, \"db\" down".into(),
        ttl_seconds: 900,
        phase: "Active".into(),
        message: String::new(),
        created_at: t("2026-05-01T10:00:00Z"),
        approved_by: Some("system:break-glass".into()),
        decided_by: None,
        expires_at: Some(t("2026-05-01T10:15:30Z")),
        ended_at: None,
        updated_at: t("2026-05-01T10:07:00.5Z"),
        deleted_at: None,
        policy: Some("prod".into()),
        approvals: vec!["lead@example.com".into(), "mallory@example.com".into()],
        auto_approved: false,
        break_glass: true,
        break_glass_reviewed_by: Some("lead@example.com".into()),
        start_at: Some(t("2026-05-01T10:00:30Z")),
    }
}

async fn export(s: &Store, format: ExportFormat) -> String {
    let mut out = Vec::new();
    s.audit_export(None, format, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_history_and_events_are_stored_and_exported() {
    for (s, _dir) in stores().await {
        let b = s.backend();
        let ar = policy_request();
        record_request(&s, &ar).await.unwrap();
        assert_eq!(s.get_request("bg-1").await.unwrap().unwrap(), expected_record(), "{b}");
        // Recording the same object again inserts nothing.
        let again = s.record_audit_batch(&events_from_request(&ar)).await.unwrap();
        assert!(again.iter().all(|new| !new), "{b}: nothing new on re-derivation");
        let events = s
            .audit_events(&AuditQuery {
                request: Some("bg-1".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "u-bg-1/request.activated",
                "u-bg-1/request.approval_given/0",
                "u-bg-1/request.approval_given/1",
                "u-bg-1/request.approval_ignored/1",
                "u-bg-1/request.approved",
                "u-bg-1/request.break_glass",
                "u-bg-1/request.break_glass_reviewed",
                "u-bg-1/request.created",
                "u-bg-1/request.scheduled",
            ],
            "{b}"
        );
        // The export carries the policy details: JSON lines…
        let jsonl: Vec<AuditEvent> = export(&s, ExportFormat::Jsonl)
            .await
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let by_key = |k: &str| jsonl.iter().find(|e| e.key == k).unwrap().clone();
        let given = by_key("u-bg-1/request.approval_given/0");
        assert_eq!(given.actor, "lead@example.com", "{b}");
        assert_eq!(given.at, t("2026-05-01T10:05:00Z"), "{b}");
        assert_eq!(given.details["comment"], "seen, ok\nfollow-up OPS-9", "{b}");
        assert_eq!(given.details["groups"], json!(["payments-leads"]), "{b}");
        assert_eq!(given.details["policy"], "prod", "{b}");
        let ignored = by_key("u-bg-1/request.approval_ignored/1");
        assert_eq!(ignored.actor, "mallory@example.com", "{b}");
        assert_eq!(
            ignored.details["reason"], "mallory@example.com: not an approver of policy prod",
            "{b}"
        );
        let bg = by_key("u-bg-1/request.break_glass");
        assert_eq!(
            (bg.actor.as_str(), bg.at),
            ("jane@example.com", t("2026-05-01T10:00:00.100Z")),
            "{b}"
        );
        assert_eq!(bg.details["reason"], "INC-42, \"db\" down", "{b}");
        let review = by_key("u-bg-1/request.break_glass_reviewed");
        assert_eq!(review.details["comment"], "justified, thanks", "{b}");
        assert_eq!(by_key("u-bg-1/request.approved").details["via"], "break_glass", "{b}");
        assert_eq!(
            by_key("u-bg-1/request.scheduled").details["start_at"],
            "2026-05-01T10:00:30Z",
            "{b}"
        );
        // …and CSV, details as JSON in the last column.
        let csv = export(&s, ExportFormat::Csv).await;
        assert!(csv.contains(",request.approval_given,"), "{b}");
        assert!(
            csv.contains(",request.break_glass_reviewed,2026-05-01T10:07:00.500000Z,lead@example.com,"),
            "{b}"
        );
        let review_line = csv
            .lines()
            .find(|l| l.contains("request.break_glass_reviewed"))
            .unwrap();
        assert!(
            review_line.contains(r#"""comment"":""justified, thanks"""#),
            "{b}: {review_line}"
        );
    }
}

/// Versions 1 and 2 of the schema, as a database created before this version has them.
fn v2_migrator(pg: bool) -> Migrator {
    let (v1, v2) = if pg {
        (
            include_str!("../migrations/postgres/0001_init.sql"),
            include_str!("../migrations/postgres/0002_login_limits_unique_email.sql"),
        )
    } else {
        (
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/sqlite/0002_login_limits_unique_email.sql"),
        )
    };
    let m = |v, d, sql| Migration::new(v, Cow::Borrowed(d), MigrationType::Simple, Cow::Borrowed(sql), false);
    Migrator {
        migrations: Cow::Owned(vec![m(1, "init", v1), m(2, "login limits, unique email", v2)]),
        ..Migrator::DEFAULT
    }
}

/// A history row as version 2 wrote it.
const V2_ROWS: &str = "INSERT INTO requests (name, uid, requester, cluster, namespaces, reason, ttl_seconds, phase, \
    message, created_us, approved_by, decided_by, expires_us, ended_us, updated_us, deleted_us) VALUES \
    ('old-1', 'u-old-1', 'jane@example.com', 'central', '[\"team-a\"]', 'debug', 600, 'Expired', 'access expired', \
     1767225600000000, 'admin@example.com', NULL, 1767226200000000, 1767226200000000, 1767226200000000, NULL);";

async fn check_upgraded(s: &Store) {
    let b = s.backend();
    assert_eq!(s.schema_versions().await.unwrap(), vec![1, 2, 3, 4, 5, 6, 7], "{b}");
    let old = s.get_request("old-1").await.unwrap().unwrap();
    assert_eq!(old.approved_by.as_deref(), Some("admin@example.com"), "{b}");
    assert_eq!(old.phase, "Expired", "{b}");
    assert_eq!(
        (
            old.policy.clone(),
            old.approvals.clone(),
            old.auto_approved,
            old.break_glass,
            old.break_glass_reviewed_by.clone(),
            old.start_at
        ),
        (None, vec![], false, false, None, None),
        "{b}: a row from before policies reads as 'no policy known, nothing special'"
    );
    // The old row takes the new columns on its next update; new rows have them from the start.
    let mut updated = old.clone();
    updated.policy = Some("default".into());
    updated.approvals = vec!["admin@example.com".into()];
    updated.updated_at = old.updated_at + chrono::Duration::seconds(1);
    s.upsert_request(&updated).await.unwrap();
    assert_eq!(s.get_request("old-1").await.unwrap().unwrap(), updated, "{b}");
    record_request(s, &policy_request()).await.unwrap();
    assert_eq!(s.get_request("bg-1").await.unwrap().unwrap(), expected_record(), "{b}");
    let (all, total) = s.list_requests(&Default::default()).await.unwrap();
    assert_eq!(total, 2, "{b}");
    assert!(
        all.iter()
            .any(|r| r.name == "old-1" && r.policy.as_deref() == Some("default")),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_version_2_is_upgraded_and_keeps_its_rows() {
    // SQLite.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("v2.db").display());
    {
        use sqlx::Connection as _;
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut c = sqlx::SqliteConnection::connect_with(&opts.create_if_missing(true))
            .await
            .unwrap();
        v2_migrator(false).run_direct(&mut c).await.unwrap();
        sqlx::raw_sql(V2_ROWS).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
    let s = Store::connect(&url, None).await.unwrap();
    check_upgraded(&s).await;
    s.close().await;
    // PostgreSQL.
    if let Some(base) = common::pg_url() {
        let url = common::fresh_pg_database(&base).await;
        {
            use sqlx::Connection as _;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            v2_migrator(true).run_direct(&mut c).await.unwrap();
            sqlx::raw_sql(V2_ROWS).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        let s = Store::connect(&url, None).await.unwrap();
        check_upgraded(&s).await;
        s.close().await;
    }
}
