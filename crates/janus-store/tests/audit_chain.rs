#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The tamper-evident audit chain (issue 17), on SQLite always and on PostgreSQL when
//! `JANUS_TEST_POSTGRES_URL` is set (scripts/pg-throwaway.sh): an intact chain verifies; edits made
//! with direct database access (the append-only trigger dropped) are found at the exact first bad
//! event; concurrent writers keep one chain; a database from schema version 3 chains its old rows.

mod common;

use std::borrow::Cow;

use chrono::{DateTime, Duration, TimeZone, Utc};
use janus_store::chain::{self, ChainedContent, GENESIS_HASH};
use janus_store::*;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sqlx::Connection as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// A fresh database of one backend: the store, its URL, and the temp dir keeping a SQLite file.
struct Db {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    fn pg(&self) -> bool {
        self.store.backend() == "postgres"
    }

    /// Runs SQL with direct database access, as an attacker with the database password would.
    async fn raw(&self, sql: &str) {
        if self.pg() {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    }

    /// Like [`Db::raw`], returning the error.
    async fn try_raw(&self, sql: &str) -> Result<(), String> {
        let r = if self.pg() {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.map(|_| ())
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.map(|_| ())
        };
        r.map_err(|e| e.to_string())
    }

    async fn drop_trigger(&self) {
        self.raw(if self.pg() {
            "DROP TRIGGER audit_events_append_only ON audit_events"
        } else {
            "DROP TRIGGER audit_events_append_only"
        })
        .await;
    }
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chain.db").display());
    Db {
        store: Store::connect(&url, None).await.unwrap(),
        url,
        _dir: Some(dir),
    }
}

async fn postgres() -> Option<Db> {
    let (store, url) = common::pg_store().await?;
    Some(Db { store, url, _dir: None })
}

/// Generates `sqlite` and `postgres` variants of a test taking a fresh `Db`.
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::postgres().await {
                    super::$name(db).await;
                }
            }
        }
    )*};
}

per_backend!(
    an_intact_chain_verifies_and_its_hashes_follow_the_documented_format,
    a_changed_row_is_named,
    a_deleted_row_is_named,
    a_forged_row_inserted_in_the_middle_is_named,
    a_truncated_tail_is_found_while_the_chain_head_is_intact,
    the_append_only_trigger_still_refuses_changes_to_chained_rows,
    retention_keeps_the_chain_verifiable,
    concurrent_writers_keep_one_chain,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
}

/// The i-th test event (seq i + 1 when recorded in order).
fn event(i: usize) -> NewAuditEvent {
    NewAuditEvent {
        key: format!("e/{i}"),
        kind: AuditKind::SessionOpened,
        // Nanoseconds: the hash covers the stored (microsecond) time.
        at: t0() + Duration::seconds(i as i64) + Duration::nanoseconds(123_456_789),
        actor: "jane@example.com".into(),
        request: Some(format!("req-{i}")),
        cluster: if i.is_multiple_of(2) {
            Some("central".into())
        } else {
            None
        },
        namespaces: vec!["apps".into(), "db".into()],
        details: json!({"reason": "because \"quoted\" ✓", "n": i, "nested": {"b": 1, "a": [1.5, null]}}),
    }
}

async fn seed(db: &Db, n: usize) {
    let evs: Vec<_> = (0..n).map(event).collect();
    // Several transactions, and a repeated event (idempotent: takes no place in the chain).
    db.store.record_audit_batch(&evs[..n / 2]).await.unwrap();
    assert!(!db.store.record_audit(&evs[0]).await.unwrap());
    db.store.record_audit_batch(&evs[n / 2..]).await.unwrap();
}

async fn verify(db: &Db) -> ChainReport {
    db.store.verify_audit_chain().await.unwrap()
}

async fn export(db: &Db) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    db.store
        .audit_export(None, ExportFormat::Jsonl, &mut out)
        .await
        .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn an_intact_chain_verifies_and_its_hashes_follow_the_documented_format(db: Db) {
    let b = db.store.backend();
    let empty = verify(&db).await;
    assert!(empty.ok(), "{b}: {empty:?}");
    assert_eq!(empty.events, 0);
    seed(&db, 20).await;
    let r = verify(&db).await;
    assert!(r.ok(), "{b}: {r:?}");
    assert_eq!(r.events, 20, "{b}");
    assert_eq!(r.first_seq, Some(1), "{b}");
    assert_eq!(r.starts_after, GENESIS_HASH, "{b}");
    let events = export(&db).await;
    assert_eq!(
        events.iter().map(|e| e.seq.unwrap()).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>(),
        "{b}"
    );
    assert_eq!(r.last, Some((20, events[19].hash.clone().unwrap())), "{b}");
    // Each hash is SHA-256 over the canonical form docs/security.md describes, built here by hand.
    let mut prev = GENESIS_HASH.to_string();
    for (i, ev) in events.iter().enumerate() {
        let src = event(i);
        assert_eq!(ev.key, src.key, "{b}");
        assert_eq!(ev.prev_hash.as_deref(), Some(prev.as_str()), "{b}");
        let mut details = String::from("{\"n\":");
        details.push_str(&format!(
            "{i},\"nested\":{{\"a\":[1.5,null],\"b\":1}},\"reason\":\"because \\\"quoted\\\" ✓\"}}"
        ));
        let cluster = if i.is_multiple_of(2) { "\"central\"" } else { "null" };
        let form = format!(
            "[\"janus-audit-v1\",{},\"e/{i}\",\"session.opened\",\"2026-03-01T10:00:{:02}.123456Z\",\
             \"jane@example.com\",\"req-{i}\",{cluster},[\"apps\",\"db\"],{details},\"{prev}\"]",
            i + 1,
            i
        );
        let want = hex(&Sha256::digest(form.as_bytes()));
        assert_eq!(ev.hash.as_deref(), Some(want.as_str()), "{b}: event {i}: {form}");
        prev = want;
    }
    // The export verifies as a file, whole or from any point on.
    let mut jsonl = Vec::new();
    db.store
        .audit_export(None, ExportFormat::Jsonl, &mut jsonl)
        .await
        .unwrap();
    let fr = chain::verify_jsonl(&jsonl[..]).unwrap();
    assert!(fr.ok(), "{b}: {fr:?}");
    assert_eq!((fr.events, fr.first_seq), (20, Some(1)), "{b}");
    let mut part = Vec::new();
    db.store
        .audit_export(Some(t0() + Duration::seconds(12)), ExportFormat::Jsonl, &mut part)
        .await
        .unwrap();
    let pr = chain::verify_jsonl(&part[..]).unwrap();
    assert!(pr.ok(), "{b}: {pr:?}");
    assert_eq!((pr.events, pr.first_seq), (8, Some(13)), "{b}");
    assert_eq!(pr.starts_after, events[11].hash.clone().unwrap(), "{b}");
}

async fn a_changed_row_is_named(db: Db) {
    let b = db.store.backend();
    seed(&db, 20).await;
    db.drop_trigger().await;
    db.raw("UPDATE audit_events SET details = '{\"reason\":\"nothing to see\"}' WHERE seq = 7")
        .await;
    let r = verify(&db).await;
    let p = r
        .problem
        .clone()
        .unwrap_or_else(|| panic!("{b}: a changed row verified: {r:?}"));
    assert_eq!(
        (p.seq, p.key.as_deref(), &p.fault),
        (7, Some("e/6"), &ChainFault::Changed),
        "{b}: {p}"
    );
    assert_eq!(r.events, 6, "{b}: the events before it were intact");
    // Changing the time or the actor is found the same way; so is changing the hash column to match
    // a recomputation that ignores the link (the next event still links to the old hash).
    let db2 = fresh_like(&db).await;
    seed(&db2, 20).await;
    db2.drop_trigger().await;
    db2.raw("UPDATE audit_events SET actor = 'someone-else@example.com' WHERE seq = 3")
        .await;
    let p = verify(&db2).await.problem.unwrap();
    assert_eq!((p.seq, p.fault), (3, ChainFault::Changed), "{b}");
}

/// Another fresh database of the same backend.
async fn fresh_like(db: &Db) -> Db {
    if db.pg() {
        postgres().await.unwrap()
    } else {
        sqlite().await
    }
}

async fn a_deleted_row_is_named(db: Db) {
    let b = db.store.backend();
    seed(&db, 20).await;
    // Deleting needs no trigger dropped (retention deletes); the chain finds it anyway.
    db.raw("DELETE FROM audit_events WHERE seq = 7").await;
    let r = verify(&db).await;
    let p = r
        .problem
        .clone()
        .unwrap_or_else(|| panic!("{b}: a deleted row verified: {r:?}"));
    assert_eq!(
        (p.seq, p.key.as_deref(), &p.fault),
        (
            7,
            None,
            &ChainFault::Missing {
                to: 7,
                next_key: "e/7".into()
            }
        ),
        "{b}: {p}"
    );
    assert!(p.to_string().contains("seq 7 is missing"), "{b}: {p}");
    // Deleting and renumbering the rest to close the gap breaks the next link instead.
    let db2 = fresh_like(&db).await;
    seed(&db2, 20).await;
    db2.drop_trigger().await;
    db2.raw(
        "DELETE FROM audit_events WHERE seq = 7; \
         UPDATE audit_events SET seq = seq + 1000 WHERE seq > 7; \
         UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000; \
         UPDATE audit_chain SET last_seq = 19",
    )
    .await;
    let p = verify(&db2).await.problem.unwrap();
    assert_eq!((p.seq, p.key.as_deref()), (7, Some("e/7")), "{b}: {p}");
}

async fn a_forged_row_inserted_in_the_middle_is_named(db: Db) {
    let b = db.store.backend();
    seed(&db, 20).await;
    let events = export(&db).await;
    db.drop_trigger().await;
    // The forger knows the format: the forged row has a correct hash and links to seq 7; the rows
    // after it move up one place and the chain head is moved too. Only the rows after it cannot be
    // re-hashed without rewriting the whole rest of the chain.
    let at = t0() + Duration::seconds(7);
    let details = json!({"reason": "approved earlier, honest"});
    let ns: Vec<String> = vec![];
    let prev = events[6].hash.clone().unwrap();
    let hash = chain::event_hash(&ChainedContent {
        seq: 8,
        key: "forged",
        kind: "request.approved",
        at,
        actor: "admin@example.com",
        request: Some("req-x"),
        cluster: None,
        namespaces: &ns,
        details: &details,
        prev_hash: &prev,
    });
    db.raw(&format!(
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq > 7; \
         UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000; \
         INSERT INTO audit_events (event_key, kind, at_us, actor, request, cluster, namespaces, details, \
           recorded_us, seq, hash, prev_hash) VALUES ('forged', 'request.approved', {}, 'admin@example.com', \
           'req-x', NULL, '[]', '{details}', {}, 8, '{hash}', '{prev}'); \
         UPDATE audit_chain SET last_seq = 21",
        at.timestamp_micros(),
        at.timestamp_micros()
    ))
    .await;
    let r = verify(&db).await;
    let p = r
        .problem
        .clone()
        .unwrap_or_else(|| panic!("{b}: a forged row verified: {r:?}"));
    assert_eq!(
        (p.seq, p.key.as_deref(), &p.fault),
        (8, Some("forged"), &ChainFault::Inserted { next_seq: 9 }),
        "{b}: {p}"
    );
    // A forged row appended beyond the recorded head (head not moved) is named too.
    let db2 = fresh_like(&db).await;
    seed(&db2, 5).await;
    let last = export(&db2).await.pop().unwrap();
    let hash = chain::event_hash(&ChainedContent {
        seq: 6,
        key: "forged-tail",
        kind: "request.approved",
        at,
        actor: "admin@example.com",
        request: None,
        cluster: None,
        namespaces: &ns,
        details: &details,
        prev_hash: last.hash.as_deref().unwrap(),
    });
    db2.raw(&format!(
        "INSERT INTO audit_events (event_key, kind, at_us, actor, request, cluster, namespaces, details, \
           recorded_us, seq, hash, prev_hash) VALUES ('forged-tail', 'request.approved', {}, 'admin@example.com', \
           NULL, NULL, '[]', '{details}', 0, 6, '{hash}', '{}')",
        at.timestamp_micros(),
        last.hash.as_deref().unwrap()
    ))
    .await;
    let p = verify(&db2).await.problem.unwrap();
    assert_eq!(
        (p.seq, p.key.as_deref(), p.fault),
        (6, Some("forged-tail"), ChainFault::BeyondHead { head: 5 }),
        "{b}"
    );
}

async fn a_truncated_tail_is_found_while_the_chain_head_is_intact(db: Db) {
    let b = db.store.backend();
    seed(&db, 20).await;
    let before = export(&db).await;
    db.raw("DELETE FROM audit_events WHERE seq > 15").await;
    let r = verify(&db).await;
    let p = r
        .problem
        .clone()
        .unwrap_or_else(|| panic!("{b}: a truncated tail verified: {r:?}"));
    assert_eq!(
        (p.seq, p.key.as_deref(), &p.fault),
        (16, None, &ChainFault::TailMissing { from: 16, to: 20 }),
        "{b}: {p}"
    );
    // The limit, as documented: whoever also rewrites the chain head to the new last event leaves a
    // chain that verifies on its own. Only a copy kept elsewhere (the SIEM export) shows the loss: its
    // events after the database's last are not in the database.
    db.raw(&format!(
        "UPDATE audit_chain SET last_seq = 15, last_hash = '{}'",
        before[14].hash.as_deref().unwrap()
    ))
    .await;
    let r = verify(&db).await;
    assert!(r.ok(), "{b}: {r:?}");
    assert_eq!(r.last.as_ref().map(|l| l.0), Some(15), "{b}");
    assert_eq!(before.last().and_then(|e| e.seq), Some(20), "{b}: the copy has more");
}

async fn the_append_only_trigger_still_refuses_changes_to_chained_rows(db: Db) {
    let b = db.store.backend();
    seed(&db, 5).await;
    for sql in [
        "UPDATE audit_events SET details = '{}' WHERE seq = 2",
        "UPDATE audit_events SET hash = 'x' WHERE seq = 2",
        "UPDATE audit_events SET seq = NULL, hash = NULL, prev_hash = NULL WHERE seq = 2",
    ] {
        let e = db.try_raw(sql).await.expect_err(sql);
        assert!(e.contains("append-only"), "{b}: {sql}: {e}");
    }
    // An unchained row may be given its place once, and nothing else about it may change meanwhile.
    db.raw(
        "INSERT INTO audit_events (event_key, kind, at_us, actor, request, cluster, namespaces, details, recorded_us) \
         VALUES ('old-writer', 'login.failed', 0, 'a', NULL, NULL, '[]', '{}', 0)",
    )
    .await;
    let e = db
        .try_raw(
            "UPDATE audit_events SET seq = 99, hash = 'h', prev_hash = 'p', actor = 'b' WHERE event_key = 'old-writer'",
        )
        .await
        .expect_err("content change with the link");
    assert!(e.contains("append-only"), "{b}: {e}");
    assert!(verify(&db).await.ok());
    assert_eq!(verify(&db).await.unchained, 1, "{b}");
    // The next insert chains it first.
    db.store.record_audit(&event(100)).await.unwrap();
    let r = verify(&db).await;
    assert!(r.ok(), "{b}: {r:?}");
    assert_eq!((r.events, r.unchained), (7, 0), "{b}");
    let keys: Vec<String> = export(&db).await.into_iter().map(|e| e.key).collect();
    assert_eq!(keys[5..], ["old-writer".to_string(), "e/100".to_string()], "{b}");
}

async fn retention_keeps_the_chain_verifiable(db: Db) {
    let b = db.store.backend();
    seed(&db, 20).await;
    let events = export(&db).await;
    assert_eq!(
        db.store.purge_audit(t0() + Duration::seconds(8), 3).await.unwrap(),
        8,
        "{b}"
    );
    let r = verify(&db).await;
    assert!(r.ok(), "{b}: {r:?}");
    assert_eq!((r.events, r.first_seq), (12, Some(9)), "{b}");
    assert_eq!(r.starts_after, events[7].hash.clone().unwrap(), "{b}: the anchor");
    // Deleting the next event by hand is still found.
    db.raw("DELETE FROM audit_events WHERE seq = 9").await;
    let p = verify(&db).await.problem.unwrap();
    assert_eq!((p.seq, p.key), (9, None), "{b}");
}

async fn concurrent_writers_keep_one_chain(db: Db) {
    let b = db.store.backend();
    // Three "replicas" (separate connection pools on the same database), four tasks each, single
    // events and batches, some keys recorded by two replicas at once (idempotent).
    let mut stores = vec![db.store.clone()];
    for _ in 0..2 {
        stores.push(Store::connect(&db.url, None).await.unwrap());
    }
    let mut tasks = Vec::new();
    for (r, store) in stores.iter().enumerate() {
        for t in 0..4 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    let mut ev = event(i);
                    ev.key = format!("r{r}/t{t}/{i}");
                    if i.is_multiple_of(5) {
                        let mut shared = ev.clone();
                        shared.key = format!("shared/t{t}/{i}");
                        s.record_audit_batch(&[ev, shared]).await.unwrap();
                    } else {
                        s.record_audit(&ev).await.unwrap();
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = verify(&db).await;
    assert!(r.ok(), "{b}: {r:?}");
    // 3 × 4 × 25 own events, and 4 × 5 shared keys stored once each.
    assert_eq!(r.events, 300 + 20, "{b}");
    assert_eq!(r.last.as_ref().map(|l| l.0), Some(320), "{b}");
    for s in &stores[1..] {
        s.close().await;
    }
}

/// Schema versions 1–3, as a database created before the chain has them.
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
    let names = [
        "init",
        "login limits, unique email",
        "request history: approval policies",
    ];
    let migrations = (0..3)
        .map(|i| {
            Migration::new(
                i as i64 + 1,
                Cow::Borrowed(names[i]),
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

/// Audit rows as version 3 wrote them, ids deliberately not in time order.
const V3_ROWS: &str = "INSERT INTO audit_events (id, event_key, kind, at_us, actor, request, cluster, namespaces, \
    details, recorded_us) VALUES \
    (5, 'old/a', 'request.created', 1767225600000000, 'jane@example.com', 'r1', 'central', '[\"team-a\"]', \
     '{\"reason\": \"debug\", \"ttlSeconds\": 600}', 1767225600000000), \
    (9, 'old/b', 'request.approved', 1767225500000000, 'admin@example.com', 'r1', 'central', '[\"team-a\"]', \
     '{}', 1767225700000000), \
    (12, 'old/c', 'login.failed', 1767225800000000, 'eve', NULL, NULL, '[]', '{\"n\":1.25}', 1767225800000000);";

async fn check_chained_old_rows(s: &Store) {
    let b = s.backend();
    assert_eq!(s.schema_versions().await.unwrap(), vec![1, 2, 3, 4, 5, 6, 7], "{b}");
    let r = s.verify_audit_chain().await.unwrap();
    assert!(r.ok(), "{b}: {r:?}");
    assert_eq!((r.events, r.unchained), (3, 0), "{b}");
    let mut out = Vec::new();
    s.audit_export(None, ExportFormat::Jsonl, &mut out).await.unwrap();
    let evs: Vec<AuditEvent> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // In id order, whatever their times.
    assert_eq!(
        evs.iter().map(|e| (e.key.as_str(), e.seq.unwrap())).collect::<Vec<_>>(),
        [("old/a", 1), ("old/b", 2), ("old/c", 3)],
        "{b}"
    );
    assert_eq!(evs[0].prev_hash.as_deref(), Some(GENESIS_HASH), "{b}");
    // New events continue the chain.
    s.record_audit(&event(0)).await.unwrap();
    let r = s.verify_audit_chain().await.unwrap();
    assert!(r.ok(), "{b}: {r:?}");
    assert_eq!(r.last.map(|l| l.0), Some(4), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_version_3_chains_its_old_rows_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("v3.db").display());
    {
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut c = sqlx::SqliteConnection::connect_with(&opts.create_if_missing(true))
            .await
            .unwrap();
        v3_migrator(false).run_direct(&mut c).await.unwrap();
        sqlx::raw_sql(V3_ROWS).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
    let s = Store::connect(&url, None).await.unwrap();
    check_chained_old_rows(&s).await;
    s.close().await;
    // Connecting again changes nothing.
    let s = Store::connect(&url, None).await.unwrap();
    assert!(s.verify_audit_chain().await.unwrap().ok());
    s.close().await;
    if let Some(base) = common::pg_url() {
        let url = common::fresh_pg_database(&base).await;
        {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            v3_migrator(true).run_direct(&mut c).await.unwrap();
            sqlx::raw_sql(V3_ROWS).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        let s = Store::connect(&url, None).await.unwrap();
        check_chained_old_rows(&s).await;
        s.close().await;
    }
}
