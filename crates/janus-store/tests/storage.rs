#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The storage test suite, run against SQLite (a temp file) always and against PostgreSQL when
//! `JANUS_TEST_POSTGRES_URL` is set (scripts/test.sh starts a throwaway cluster).

mod common;

use std::io::Write as _;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use janus_store::*;
use serde_json::json;

/// Generates `sqlite` and `postgres` variants of a test taking a fresh `Store`.
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (store, _dir) = super::sqlite_store().await;
                super::$name(store).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some((store, _url)) = super::pg_store().await {
                    super::$name(store).await;
                }
            }
        }
    )*};
}

per_backend!(
    basics,
    audit_idempotent_and_paginated,
    audit_export_formats,
    audit_purge_in_batches,
    request_history,
    hostile_strings_verbatim,
    time_precision,
    users_and_lockout,
    web_sessions,
    terminals_recordings_commands,
    quick_commands,
    buffered_writer,
);

const HOSTILE: &[&str] = &[
    "'; DROP TABLE requests; --",
    "\"; DROP TABLE audit_events; --",
    "<script>alert('x')</script>",
    "Ünïcödé ✓ 日本語 🚀 \u{202e}rtl",
    "back\\slash %_ wildcards",
    "line\nbreak\r\nand\ttab",
    "$1 $2 ? :name @p1",
];

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn event(key: &str, kind: AuditKind, at: DateTime<Utc>, actor: &str, request: &str) -> NewAuditEvent {
    NewAuditEvent {
        key: key.into(),
        kind,
        at,
        actor: actor.into(),
        request: Some(request.into()),
        cluster: Some("central".into()),
        namespaces: vec!["apps".into(), "db".into()],
        details: json!({"reason": "because", "n": 1}),
    }
}

fn record(name: &str, created: DateTime<Utc>) -> RequestRecord {
    RequestRecord {
        name: name.into(),
        requester: "a@x.io".into(),
        cluster: "central".into(),
        namespaces: vec!["apps".into()],
        reason: "debug".into(),
        ttl_seconds: 600,
        phase: "Pending".into(),
        message: "waiting".into(),
        created_at: created,
        approved_by: None,
        decided_by: None,
        expires_at: None,
        ended_at: None,
        updated_at: created,
        deleted_at: None,
        policy: None,
        approvals: vec![],
        auto_approved: false,
        break_glass: false,
        break_glass_reviewed_by: None,
        start_at: None,
    }
}

fn terminal(id: &str, request: &str, user: &str, started: DateTime<Utc>) -> TerminalSession {
    TerminalSession {
        id: id.into(),
        request: request.into(),
        user: user.into(),
        cluster: "central".into(),
        namespace: "apps".into(),
        pod: "app-0".into(),
        container: "main".into(),
        replica: "web-0".into(),
        started_at: started,
        ended_at: None,
        end_reason: None,
        bytes_out: 0,
    }
}

async fn basics(s: Store) {
    s.ping().await.unwrap();
    assert!(["sqlite", "postgres"].contains(&s.backend()));
    assert_eq!(s.schema_versions().await.unwrap(), vec![1, 2, 3, 4, 5, 6, 7]);
    // Store is Clone + Send + Sync and usable from other tasks.
    let c = s.clone();
    tokio::spawn(async move { c.ping().await.unwrap() }).await.unwrap();
}

async fn audit_idempotent_and_paginated(s: Store) {
    let t0 = t("2026-03-01T10:00:00Z");
    for i in 0..25 {
        let actor = if i % 2 == 0 { "even@x.io" } else { "odd@x.io" };
        let kind = if i % 5 == 0 {
            AuditKind::RequestApproved
        } else {
            AuditKind::RequestCreated
        };
        let ev = event(
            &format!("k/{i}"),
            kind,
            t0 + Duration::minutes(i),
            actor,
            &format!("r{}", i % 3),
        );
        assert!(s.record_audit(&ev).await.unwrap(), "event {i} is new");
    }
    // Same key again: nothing stored, even with different content.
    let dup = event("k/3", AuditKind::LoginFailed, t0, "other", "rX");
    assert!(!s.record_audit(&dup).await.unwrap());
    let batch = vec![dup.clone(), event("k/new", AuditKind::UserCreated, t0, "root", "r0")];
    assert_eq!(s.record_audit_batch(&batch).await.unwrap(), vec![false, true]);
    let all = s
        .audit_events(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 26);
    let three = all.iter().find(|e| e.key == "k/3").unwrap();
    assert_eq!(three.actor, "odd@x.io");
    assert_eq!(three.kind, "request.created");
    assert_eq!(three.namespaces, vec!["apps", "db"]);
    assert_eq!(three.details, json!({"reason": "because", "n": 1}));
    // Newest first by id, pages of 10 through before_id.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .audit_events(&AuditQuery {
                before_id: before,
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        before = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| e.id));
    }
    assert_eq!(seen.len(), 26);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "strictly newest first");
    // Filters.
    let q = |f: AuditQuery| {
        let s = s.clone();
        async move { s.audit_events(&AuditQuery { limit: 1000, ..f }).await.unwrap() }
    };
    assert_eq!(
        q(AuditQuery {
            actor: Some("even@x.io".into()),
            ..Default::default()
        })
        .await
        .len(),
        13
    );
    assert_eq!(
        q(AuditQuery {
            request: Some("r1".into()),
            ..Default::default()
        })
        .await
        .len(),
        8
    );
    assert_eq!(
        q(AuditQuery {
            kind: Some("request.approved".into()),
            ..Default::default()
        })
        .await
        .len(),
        5
    );
    assert_eq!(
        q(AuditQuery {
            cluster: Some("nope".into()),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    let window = q(AuditQuery {
        since: Some(t0 + Duration::minutes(10)),
        until: Some(t0 + Duration::minutes(20)),
        ..Default::default()
    })
    .await;
    assert_eq!(window.len(), 10);
    assert!(
        window
            .iter()
            .all(|e| e.at >= t0 + Duration::minutes(10) && e.at < t0 + Duration::minutes(20))
    );
    // Default and clamped limits.
    assert_eq!(s.audit_events(&AuditQuery::default()).await.unwrap().len(), 26);
    assert_eq!(
        s.audit_events(&AuditQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        1
    );
    // An empty key is refused.
    assert!(matches!(
        s.record_audit(&event("", AuditKind::LoginFailed, t0, "a", "r")).await,
        Err(StoreError::Invalid(_))
    ));
    // Kinds round-trip through their string form.
    for k in AuditKind::ALL {
        assert_eq!(k.as_str().parse::<AuditKind>().unwrap(), *k);
    }
}

/// A small RFC 4180 reader for checking the export.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                c => field.push(c),
            }
        }
    }
    rows
}

async fn audit_export_formats(s: Store) {
    let t0 = t("2026-03-01T10:00:00.123Z");
    // More than one export batch (1000).
    let mut evs = Vec::new();
    for i in 0..1205 {
        let mut ev = event(
            &format!("e/{i}"),
            AuditKind::SessionOpened,
            t0 + Duration::seconds(i),
            "u@x.io",
            "r",
        );
        if i == 7 {
            ev.actor = "quote\"comma,newline\nend".into();
            ev.details = json!({"reason": HOSTILE});
        }
        evs.push(ev);
    }
    s.record_audit_batch(&evs).await.unwrap();
    let mut out = Vec::new();
    let n = s.audit_export(None, ExportFormat::Jsonl, &mut out).await.unwrap();
    assert_eq!(n, 1205);
    let lines: Vec<AuditEvent> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1205);
    assert!(lines.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(lines[7].actor, "quote\"comma,newline\nend");
    assert_eq!(lines[7].details, json!({"reason": HOSTILE}));
    assert_eq!(lines[0].at, t0);
    // Since.
    let mut out = Vec::new();
    let n = s
        .audit_export(Some(t0 + Duration::seconds(1200)), ExportFormat::Jsonl, &mut out)
        .await
        .unwrap();
    assert_eq!(n, 5);
    // CSV with proper quoting.
    let mut out = Vec::new();
    let n = s.audit_export(None, ExportFormat::Csv, &mut out).await.unwrap();
    assert_eq!(n, 1205);
    let rows = parse_csv(&String::from_utf8(out).unwrap());
    assert_eq!(rows.len(), 1206);
    assert_eq!(
        rows[0],
        [
            "id",
            "key",
            "kind",
            "at",
            "actor",
            "request",
            "cluster",
            "namespaces",
            "details"
        ]
    );
    assert!(rows.iter().all(|r| r.len() == 9));
    assert_eq!(rows[8][4], "quote\"comma,newline\nend");
    let details: serde_json::Value = serde_json::from_str(&rows[8][8]).unwrap();
    assert_eq!(details, json!({"reason": HOSTILE}));
    assert_eq!(rows[1][3], "2026-03-01T10:00:00.123000Z");
    assert_eq!(rows[1][7], "apps db");
    // A progress callback sees the running count.
    let mut counts = Vec::new();
    let mut sink = std::io::sink();
    s.audit_export_with_progress(None, ExportFormat::Jsonl, &mut sink, &mut |n| counts.push(n))
        .await
        .unwrap();
    assert_eq!(counts, vec![1000, 1205]);
}

async fn audit_purge_in_batches(s: Store) {
    let old = t("2025-01-01T00:00:00Z");
    let new = t("2026-06-01T00:00:00Z");
    let mut evs = Vec::new();
    for i in 0..25 {
        evs.push(event(
            &format!("old/{i}"),
            AuditKind::LoginFailed,
            old + Duration::hours(i),
            "a",
            "r",
        ));
    }
    for i in 0..5 {
        evs.push(event(&format!("new/{i}"), AuditKind::LoginFailed, new, "a", "r"));
    }
    s.record_audit_batch(&evs).await.unwrap();
    assert_eq!(s.purge_audit(t("2026-01-01T00:00:00Z"), 7).await.unwrap(), 25);
    let left = s.audit_events(&AuditQuery::default()).await.unwrap();
    assert_eq!(left.len(), 5);
    assert!(left.iter().all(|e| e.key.starts_with("new/")));
    assert_eq!(s.purge_audit(t("2026-01-01T00:00:00Z"), 7).await.unwrap(), 0);
    // An exact multiple of the batch size also terminates.
    assert_eq!(s.purge_audit(t("2027-01-01T00:00:00Z"), 5).await.unwrap(), 5);
    // A purged key may be recorded again (retention is the only deletion).
    assert!(s.record_audit(&evs[0]).await.unwrap());
}

async fn request_history(s: Store) {
    let t0 = t("2026-04-01T00:00:00Z");
    assert_eq!(s.get_request("missing").await.unwrap(), None);
    for i in 0..12 {
        let mut r = record(&format!("req-{i:02}"), t0 + Duration::minutes(i));
        if i % 3 == 0 {
            r.requester = "b@x.io".into();
        }
        if i % 4 == 0 {
            r.cluster = "remote".into();
        }
        s.upsert_request(&r).await.unwrap();
    }
    let mut r = record("req-05", t0 + Duration::minutes(5));
    r.phase = "Active".into();
    r.approved_by = Some("admin@x.io".into());
    r.expires_at = Some(t0 + Duration::hours(1));
    r.updated_at = t0 + Duration::minutes(30);
    s.upsert_request(&r).await.unwrap();
    assert_eq!(s.get_request("req-05").await.unwrap().unwrap(), r);
    // A stale record never rolls history back.
    let stale = record("req-05", t0 + Duration::minutes(5));
    s.upsert_request(&stale).await.unwrap();
    assert_eq!(s.get_request("req-05").await.unwrap().unwrap().phase, "Active");
    // Deleted objects stay in history.
    s.mark_request_deleted("req-05", t0 + Duration::days(1)).await.unwrap();
    s.mark_request_deleted("req-05", t0 + Duration::days(2)).await.unwrap();
    let got = s.get_request("req-05").await.unwrap().unwrap();
    assert_eq!(got.deleted_at, Some(t0 + Duration::days(1)), "first deletion kept");
    let live = s.live_requests().await.unwrap();
    assert_eq!(live.len(), 11);
    assert!(live.iter().all(|l| l.name != "req-05"));
    // Listing: newest created first, totals, filters, paging.
    let (page, total) = s
        .list_requests(&RequestQuery {
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 12);
    assert_eq!(
        page.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["req-11", "req-10", "req-09", "req-08", "req-07"]
    );
    let (page, total) = s
        .list_requests(&RequestQuery {
            limit: 5,
            offset: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((page.len(), total), (2, 12));
    let (page, total) = s
        .list_requests(&RequestQuery {
            requester: Some("b@x.io".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((page.len(), total), (4, 4));
    let (_, total) = s
        .list_requests(&RequestQuery {
            cluster: Some("remote".into()),
            requester: Some("b@x.io".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 1, "req-00 only");
    let (_, total) = s
        .list_requests(&RequestQuery {
            phase: Some("Active".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 1);
    let (page, total) = s
        .list_requests(&RequestQuery {
            since: Some(t0 + Duration::minutes(3)),
            until: Some(t0 + Duration::minutes(6)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 3);
    assert_eq!(page[0].name, "req-05");
}

async fn hostile_strings_verbatim(s: Store) {
    let big = "x'\";<b>".repeat(100 * 1024 / 7 + 1);
    assert!(big.len() >= 100 * 1024);
    let mut values: Vec<String> = HOSTILE.iter().map(|h| h.to_string()).collect();
    values.push(big);
    for (i, v) in values.iter().enumerate() {
        let mut r = record(&format!("hostile-{i}"), t("2026-01-01T00:00:00Z"));
        r.reason = v.clone();
        r.message = v.clone();
        r.requester = v.clone();
        r.namespaces = vec![v.clone(), "ok".into()];
        s.upsert_request(&r).await.unwrap();
        assert_eq!(s.get_request(&r.name).await.unwrap().unwrap(), r);
        let mut ev = event(
            &format!("{v}/{i}"),
            AuditKind::RequestDenied,
            t("2026-01-01T00:00:00Z"),
            v,
            v,
        );
        ev.details = json!({"reason": v});
        assert!(s.record_audit(&ev).await.unwrap());
        let got = s
            .audit_events(&AuditQuery {
                actor: Some(v.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].actor, *v);
        assert_eq!(got[0].key, ev.key);
        assert_eq!(got[0].details["reason"], json!(v));
        let user = s
            .create_user(&NewUser {
                username: format!("{v}-{i}"),
                email: v.clone(),
                is_admin: false,
                password_hash: v.clone(),
            })
            .await
            .unwrap();
        assert_eq!(s.get_user(&user.username).await.unwrap().unwrap(), user);
        let q = s.add_quick_command(v, v, v, v).await.unwrap();
        assert_eq!(s.quick_commands(v, v).await.unwrap(), vec![q]);
    }
    // Nothing was executed: every table still answers.
    let (_, total) = s.list_requests(&RequestQuery::default()).await.unwrap();
    assert_eq!(total, values.len() as i64);
    assert_eq!(
        s.audit_events(&AuditQuery::default()).await.unwrap().len(),
        values.len()
    );
    // A malformed record is refused before the database.
    assert!(matches!(
        s.upsert_request(&record("", Utc::now())).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn time_precision(s: Store) {
    let times = [
        t("2026-05-05T12:34:56.789Z"),
        t("2026-05-05T12:34:56.789123Z"),
        Utc.timestamp_opt(0, 0).unwrap(),
        t("1999-12-31T23:59:59.001Z"),
        t("2100-01-01T00:00:00Z"),
    ];
    for (i, at) in times.iter().enumerate() {
        s.record_audit(&event(&format!("time/{i}"), AuditKind::LoginSucceeded, *at, "a", "r"))
            .await
            .unwrap();
        let mut r = record(&format!("time-{i}"), *at);
        r.expires_at = Some(*at);
        r.ended_at = Some(*at);
        s.upsert_request(&r).await.unwrap();
        assert_eq!(s.get_request(&r.name).await.unwrap().unwrap(), r);
    }
    let got = s.audit_events(&AuditQuery::default()).await.unwrap();
    for (i, at) in times.iter().enumerate() {
        let e = got.iter().find(|e| e.key == format!("time/{i}")).unwrap();
        assert_eq!(e.at, *at, "time {i} reads back identical");
    }
    // Nanoseconds are kept to the microsecond.
    let ns = t("2026-05-05T12:34:56.123456789Z");
    let mut r = record("nanos", ns);
    r.updated_at = ns;
    s.upsert_request(&r).await.unwrap();
    assert_eq!(
        s.get_request("nanos").await.unwrap().unwrap().created_at,
        t("2026-05-05T12:34:56.123456Z")
    );
}

async fn users_and_lockout(s: Store) {
    let nu = NewUser {
        username: "alice".into(),
        email: "alice@x.io".into(),
        is_admin: false,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
    };
    let alice = s.create_user(&nu).await.unwrap();
    assert_eq!(s.get_user("alice").await.unwrap().unwrap(), alice);
    assert!(matches!(s.create_user(&nu).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.get_user("Alice").await.unwrap(), None, "usernames are exact");
    let json = serde_json::to_value(&alice).unwrap();
    assert!(json.get("password_hash").is_none(), "never serialized: {json}");
    assert_eq!(json["username"], "alice");
    s.create_user(&NewUser {
        username: "bob".into(),
        email: "bob@x.io".into(),
        is_admin: true,
        password_hash: "h".into(),
    })
    .await
    .unwrap();
    let names: Vec<_> = s.list_users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["alice", "bob"]);

    // Lockout after 3 failures for 15 minutes.
    let now = t("2026-02-02T10:00:00.500Z");
    let lock = Duration::minutes(15);
    let u = s.record_login_failure("alice", now, 3, lock).await.unwrap().unwrap();
    assert_eq!((u.failed_logins, u.locked_until), (1, None));
    let u = s.record_login_failure("alice", now, 3, lock).await.unwrap().unwrap();
    assert_eq!((u.failed_logins, u.locked_until), (2, None));
    let u = s
        .record_login_failure("alice", now + Duration::seconds(1), 3, lock)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.failed_logins, 3);
    assert_eq!(u.locked_until, Some(now + Duration::seconds(1) + lock));
    assert_eq!(s.get_user("alice").await.unwrap().unwrap().locked_until, u.locked_until);
    // After the lockout ran out, counting starts again.
    let later = now + Duration::hours(1);
    let u = s.record_login_failure("alice", later, 3, lock).await.unwrap().unwrap();
    assert_eq!((u.failed_logins, u.locked_until), (1, None));
    s.record_login_success("alice", later).await.unwrap();
    let u = s.get_user("alice").await.unwrap().unwrap();
    assert_eq!((u.failed_logins, u.locked_until), (0, None));
    assert_eq!(s.record_login_failure("nobody", now, 3, lock).await.unwrap(), None);
    // Concurrent failures all count.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.record_login_failure("bob", later, 100, lock).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get_user("bob").await.unwrap().unwrap().failed_logins, 10);

    // Changes.
    let u = s
        .update_user(
            "alice",
            &UserChange {
                is_admin: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(u.is_admin && !u.disabled);
    assert_eq!(u.password_hash, nu.password_hash);
    for _ in 0..3 {
        s.record_login_failure("alice", later, 3, lock).await.unwrap();
    }
    let u = s
        .update_user(
            "alice",
            &UserChange {
                password_hash: Some("new".into()),
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.password_hash, "new");
    assert!(u.disabled && u.is_admin);
    assert_eq!(
        (u.failed_logins, u.locked_until),
        (0, None),
        "a new password clears the lockout"
    );
    assert_eq!(s.get_user("alice").await.unwrap().unwrap(), u);
    assert_eq!(s.update_user("nobody", &UserChange::default()).await.unwrap(), None);
    assert!(s.delete_user("alice").await.unwrap());
    assert!(!s.delete_user("alice").await.unwrap());
    assert_eq!(s.get_user("alice").await.unwrap(), None);
}

async fn web_sessions(s: Store) {
    let t0 = t("2026-02-02T10:00:00.250Z");
    let mk = |id: &str, subject: &str, expires: DateTime<Utc>| WebSession {
        id_hash: id.into(),
        subject: subject.into(),
        display_name: "Ünïcödé <b>".into(),
        is_admin: true,
        groups: vec!["ops".into(), "admins".into()],
        auth: "oidc".into(),
        csrf_token: "csrf".into(),
        created_at: t0,
        last_seen: t0,
        expires_at: expires,
    };
    let a = mk("a".repeat(64).as_str(), "a@x.io", t0 + Duration::hours(8));
    s.create_session(&a).await.unwrap();
    s.create_session(&mk("b1", "b@x.io", t0 + Duration::hours(1)))
        .await
        .unwrap();
    s.create_session(&mk("b2", "b@x.io", t0 + Duration::hours(9)))
        .await
        .unwrap();
    s.create_session(&mk("old", "c@x.io", t0 - Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(s.get_session(&a.id_hash).await.unwrap().unwrap(), a);
    assert!(matches!(s.create_session(&a).await, Err(StoreError::Conflict(_))));
    s.touch_session(&a.id_hash, t0 + Duration::minutes(5)).await.unwrap();
    assert_eq!(
        s.get_session(&a.id_hash).await.unwrap().unwrap().last_seen,
        t0 + Duration::minutes(5)
    );
    assert_eq!(s.purge_sessions(t0).await.unwrap(), 1);
    assert_eq!(s.get_session("old").await.unwrap(), None);
    assert_eq!(s.delete_user_sessions("b@x.io").await.unwrap(), 2);
    assert_eq!(s.get_session("b2").await.unwrap(), None);
    s.delete_session(&a.id_hash).await.unwrap();
    assert_eq!(s.get_session(&a.id_hash).await.unwrap(), None);
    s.delete_session("never").await.unwrap();
}

async fn terminals_recordings_commands(s: Store) {
    let t0 = t("2026-02-03T08:00:00.125Z");
    s.open_terminal(&terminal("s1", "r1", "a@x.io", t0)).await.unwrap();
    s.open_terminal(&terminal("s2", "r1", "b@x.io", t0 + Duration::seconds(10)))
        .await
        .unwrap();
    s.open_terminal(&terminal("s3", "r2", "a@x.io", t0 + Duration::seconds(20)))
        .await
        .unwrap();
    assert!(matches!(
        s.open_terminal(&terminal("s1", "r1", "a@x.io", t0)).await,
        Err(StoreError::Conflict(_))
    ));
    s.close_terminal("s1", t0 + Duration::minutes(3), "idle", 4096)
        .await
        .unwrap();
    s.close_terminal("s1", t0 + Duration::minutes(9), "user", 1)
        .await
        .unwrap();
    let all = s.terminal_sessions(None, None, 0).await.unwrap();
    assert_eq!(
        all.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["s3", "s2", "s1"]
    );
    let s1 = &all[2];
    assert_eq!(s1.ended_at, Some(t0 + Duration::minutes(3)), "first end wins");
    assert_eq!(s1.end_reason.as_deref(), Some("idle"));
    assert_eq!(s1.bytes_out, 4096);
    assert_eq!(s.terminal_sessions(Some("r1"), None, 10).await.unwrap().len(), 2);
    assert_eq!(s.terminal_sessions(None, Some("a@x.io"), 10).await.unwrap().len(), 2);
    assert_eq!(
        s.terminal_sessions(Some("r1"), Some("a@x.io"), 10).await.unwrap().len(),
        1
    );
    assert_eq!(s.terminal_sessions(None, None, 1).await.unwrap().len(), 1);

    // Recordings: stored compressed, replaced, read back exactly.
    assert_eq!(s.recording("s1").await.unwrap(), None);
    let mut cast = b"{\"version\": 2, \"width\": 80, \"height\": 24}\n".to_vec();
    for i in 0..20000 {
        writeln!(cast, "[{}.5, \"o\", \"line {i} \\u001b[31mred\\u001b[0m \\u00e9\"]", i).unwrap();
    }
    cast.extend_from_slice(&[0, 255, 254, 10]);
    s.save_recording("s1", b"first").await.unwrap();
    s.save_recording("s1", &cast).await.unwrap();
    assert_eq!(s.recording("s1").await.unwrap().unwrap(), cast);
    s.save_recording("s2", b"").await.unwrap();
    assert_eq!(s.recording("s2").await.unwrap().unwrap(), b"");

    // Command log and search with LIKE wildcards escaped.
    let lines: Vec<(DateTime<Utc>, String)> = [
        "100% done",
        "100x done",
        "a_b",
        "axb",
        "cat C:\\path\\file",
        "cat C:Xpath",
        "ÄRGER mit Umlauten",
        "SELECT * FROM users; -- '",
    ]
    .iter()
    .enumerate()
    .map(|(i, l)| (t0 + Duration::seconds(i as i64), l.to_string()))
    .collect();
    s.add_commands("s1", &lines).await.unwrap();
    s.add_commands("s3", &[(t0 + Duration::minutes(1), "kubectl get pods".into())])
        .await
        .unwrap();
    s.add_commands("s3", &[]).await.unwrap();
    assert!(matches!(
        s.add_commands("nope", &lines).await,
        Err(StoreError::Invalid(_))
    ));
    let found = |q: &str| {
        let s = s.clone();
        let q = q.to_string();
        async move {
            s.search_commands(&q, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.line)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("100%").await, ["100% done"]);
    assert_eq!(found("a_b").await, ["a_b"]);
    assert_eq!(found("C:\\p").await, ["cat C:\\path\\file"]);
    assert_eq!(found("ärger").await, ["ÄRGER mit Umlauten"]);
    assert_eq!(
        found("DONE").await,
        ["100x done", "100% done"],
        "newest first, case-insensitive"
    );
    assert_eq!(found("'").await, ["SELECT * FROM users; -- '"]);
    assert_eq!(found("%").await, ["100% done"]);
    assert!(found("zzz").await.is_empty());
    let hit = &s.search_commands("GET PODS", 10).await.unwrap()[0];
    assert_eq!(
        (hit.user.as_str(), hit.request.as_str(), hit.session_id.as_str()),
        ("a@x.io", "r2", "s3")
    );
    assert_eq!(hit.at, t0 + Duration::minutes(1));
    assert_eq!(s.search_commands("done", 1).await.unwrap().len(), 1);
    let log = s.session_commands("s1").await.unwrap();
    assert_eq!(log.len(), lines.len());
    assert_eq!(log[4].line, "cat C:\\path\\file");
    assert_eq!(log[4].at, lines[4].0);
}

async fn quick_commands(s: Store) {
    let a = s
        .add_quick_command("a@x.io", "central", "pods", "kubectl get pods")
        .await
        .unwrap();
    let b = s
        .add_quick_command("a@x.io", "central", "logs", "kubectl logs -f app")
        .await
        .unwrap();
    s.add_quick_command("a@x.io", "remote", "other", "true").await.unwrap();
    s.add_quick_command("b@x.io", "central", "theirs", "true")
        .await
        .unwrap();
    assert_eq!(
        s.quick_commands("a@x.io", "central").await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(a.label, "pods");
    assert!(!s.delete_quick_command("b@x.io", a.id).await.unwrap(), "not theirs");
    assert!(s.delete_quick_command("a@x.io", a.id).await.unwrap());
    assert!(!s.delete_quick_command("a@x.io", a.id).await.unwrap());
    assert_eq!(s.quick_commands("a@x.io", "central").await.unwrap(), vec![b]);
}

// ---- connection, migrations and credentials ----

#[tokio::test]
async fn sqlite_migrations_rerun_as_noop_and_file_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er/janus.db");
    let url = format!("sqlite://{}", path.display());
    let s = Store::connect(&url, Some("ignored")).await.unwrap();
    assert!(path.exists(), "file and directories created");
    s.upsert_request(&record("kept", Utc::now())).await.unwrap();
    s.close().await;
    let again = Store::connect(&url, None).await.unwrap();
    assert_eq!(again.schema_versions().await.unwrap(), vec![1, 2, 3, 4, 5, 6, 7]);
    assert!(again.get_request("kept").await.unwrap().is_some());
    // WAL mode is on.
    assert!(
        dir.path().join("deep/er/janus.db-wal").exists() || {
            // The WAL file may be checkpointed away on close; the header says WAL (file format 2).
            let header = std::fs::read(&path).unwrap();
            header[18] == 2 && header[19] == 2
        }
    );
    // Two stores on the same file at once (two processes would do the same).
    let (a, b) = tokio::join!(Store::connect(&url, None), Store::connect(&url, None));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.record_audit(&event(&format!("c/{i}"), AuditKind::LoginFailed, Utc::now(), "a", "r"))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    // In-memory databases work too.
    let mem = Store::connect("sqlite::memory:", None).await.unwrap();
    mem.record_audit(&event("m", AuditKind::LoginFailed, Utc::now(), "a", "r"))
        .await
        .unwrap();
    assert_eq!(mem.audit_events(&AuditQuery::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn postgres_migrations_rerun_and_concurrent_connects() {
    let Some(base) = pg_url() else { return };
    let url = fresh_pg_database(&base).await;
    // Several replicas starting at once on an empty database.
    let results = futures::future::join_all((0..4).map(|_| Store::connect(&url, None))).await;
    let stores: Vec<Store> = results.into_iter().map(|r| r.expect("concurrent connect")).collect();
    for s in &stores {
        assert_eq!(s.backend(), "postgres");
        assert_eq!(s.schema_versions().await.unwrap(), vec![1, 2, 3, 4, 5, 6, 7]);
    }
    stores[0].upsert_request(&record("kept", Utc::now())).await.unwrap();
    let again = Store::connect(&url, None).await.unwrap();
    assert_eq!(again.schema_versions().await.unwrap(), vec![1, 2, 3, 4, 5, 6, 7]);
    assert!(again.get_request("kept").await.unwrap().is_some());
}

const SECRET: &str = "Sup3r$ecret:p@ss/word";

fn assert_no_secret(e: &StoreError) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(SECRET), "password leaked: {shown}");
    assert!(!shown.contains("Sup3r"), "password leaked: {shown}");
    assert!(!shown.contains("Sup3r%24ecret"), "encoded password leaked: {shown}");
}

#[tokio::test]
async fn password_never_in_errors() {
    // A password in the URL is refused, and not echoed.
    let e = Store::connect("postgres://janus:Sup3r$ecret:p@ss/word@127.0.0.1:1/janus", None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    assert_no_secret(&e);
    let e = Store::connect("postgres://janus:Sup3r%24ecret@127.0.0.1:1/janus", None)
        .await
        .unwrap_err();
    assert_no_secret(&e);
    // Unreachable server with a password.
    let e = Store::connect("postgres://janus@127.0.0.1:1/janus?connect_timeout=2", Some(SECRET))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Connect(_)), "{e}");
    assert_no_secret(&e);
    // Unusable SQLite path.
    let e = Store::connect("sqlite:///proc/definitely/not/here.db", Some(SECRET))
        .await
        .unwrap_err();
    assert_no_secret(&e);
    let e = Store::connect("mysql://x@y/z", Some(SECRET)).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)));
    assert_no_secret(&e);
}

async fn buffered_writer(s: Store) {
    let w = janus_store::writer::AuditWriter::spawn(s.clone(), 1000);
    let t0 = t("2026-07-01T00:00:00Z");
    for i in 0..450 {
        assert!(w.record(event(
            &format!("w/{i}"),
            AuditKind::LoginSucceeded,
            t0 + Duration::seconds(i),
            "a",
            "r"
        )));
    }
    // Duplicates are harmless.
    assert!(w.record(event("w/0", AuditKind::LoginSucceeded, t0, "a", "r")));
    w.flush().await;
    let got = s
        .audit_events(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 450);
    assert!(w.healthy().load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(w.dropped(), 0);
    // In order of recording.
    let mut ids: Vec<(i64, DateTime<Utc>)> = got.iter().map(|e| (e.id, e.at)).collect();
    ids.sort();
    assert!(ids.windows(2).all(|p| p[0].1 < p[1].1));
}
