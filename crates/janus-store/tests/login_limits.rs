#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Login reservations, unique emails and the requester lock, on SQLite and (when configured) PostgreSQL.

mod common;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, Utc};
use janus_store::{LoginGate, LoginLimits, NewUser, Store, StoreError, UserChange};
use sqlx::migrate::{Migration, MigrationType, Migrator};

fn user(name: &str, email: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: email.into(),
        is_admin: false,
        password_hash: "$argon2id$dummy".into(),
    }
}

const LIMITS: LoginLimits = LoginLimits {
    per_client: 5,
    per_account: 8,
    lockout: Duration::seconds(60),
};

/// Every backend to test: SQLite always, PostgreSQL when configured.
async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let (s, d) = common::sqlite_store().await;
    let mut out = vec![(s, Some(d))];
    if let Some((pg, _)) = common::pg_store().await {
        out.push((pg, None));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_reservations_never_exceed_the_limit() {
    for (s, _guard) in stores().await {
        s.create_user(&user("alice", "alice@example.com")).await.unwrap();
        let now = Utc::now();
        let reserved = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..40 {
            let s = s.clone();
            let reserved = reserved.clone();
            tasks.push(tokio::spawn(async move {
                if s.reserve_login_attempt("alice", "10.0.0.1", now, LIMITS).await.unwrap() == LoginGate::Reserved {
                    reserved.fetch_add(1, Ordering::SeqCst);
                    // The check fails (as every one of them does in an attack).
                    s.login_attempt_failed("alice", "10.0.0.1", now, LIMITS).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(reserved.load(Ordering::SeqCst), 5, "{}", s.backend());
        assert_eq!(
            s.reserve_login_attempt("alice", "10.0.0.1", now, LIMITS).await.unwrap(),
            LoginGate::ClientLocked,
            "{}",
            s.backend()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_lock_spares_other_addresses_and_the_account_limit_locks_all() {
    for (s, _guard) in stores().await {
        let b = s.backend();
        s.create_user(&user("admin", "admin@example.com")).await.unwrap();
        let now = Utc::now();
        let mut started = None;
        for _ in 0..5 {
            assert_eq!(
                s.reserve_login_attempt("admin", "a", now, LIMITS).await.unwrap(),
                LoginGate::Reserved
            );
            let l = s.login_attempt_failed("admin", "a", now, LIMITS).await.unwrap();
            started = started.or(l.client);
            assert_eq!(l.account, None, "{b}");
        }
        assert_eq!(
            started,
            Some(now + LIMITS.lockout).map(|t| t.with_nanosecond_us()),
            "{b}"
        );
        assert_eq!(
            s.reserve_login_attempt("admin", "a", now, LIMITS).await.unwrap(),
            LoginGate::ClientLocked,
            "{b}"
        );
        // Another address may still try, and a success there gives its reservation back.
        assert_eq!(
            s.reserve_login_attempt("admin", "b", now, LIMITS).await.unwrap(),
            LoginGate::Reserved,
            "{b}"
        );
        s.login_attempt_succeeded("admin", "b").await.unwrap();
        assert_eq!(s.get_user("admin").await.unwrap().unwrap().failed_logins, 5, "{b}");
        // Three more failures from a third address reach the account-wide limit of 8: locked for all.
        let mut account = None;
        for _ in 0..3 {
            assert_eq!(
                s.reserve_login_attempt("admin", "c", now, LIMITS).await.unwrap(),
                LoginGate::Reserved
            );
            account = account.or(s.login_attempt_failed("admin", "c", now, LIMITS).await.unwrap().account);
        }
        assert!(account.is_some(), "{b}: the account lock is reported");
        for client in ["b", "d"] {
            assert_eq!(
                s.reserve_login_attempt("admin", client, now, LIMITS).await.unwrap(),
                LoginGate::AccountLocked,
                "{b}"
            );
        }
        // The refused address did not use up its own budget while the account was locked.
        let later = now + LIMITS.lockout + Duration::seconds(1);
        for _ in 0..5 {
            assert_eq!(
                s.reserve_login_attempt("admin", "b", later, LIMITS).await.unwrap(),
                LoginGate::Reserved,
                "{b}: locks run out"
            );
            s.login_attempt_succeeded("admin", "b").await.unwrap();
        }
        // A new password clears every lock.
        for _ in 0..5 {
            s.reserve_login_attempt("admin", "a", later, LIMITS).await.unwrap();
            s.login_attempt_failed("admin", "a", later, LIMITS).await.unwrap();
        }
        assert_eq!(
            s.reserve_login_attempt("admin", "a", later, LIMITS).await.unwrap(),
            LoginGate::ClientLocked
        );
        s.update_user(
            "admin",
            &UserChange {
                password_hash: Some("$argon2id$new".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            s.reserve_login_attempt("admin", "a", later, LIMITS).await.unwrap(),
            LoginGate::Reserved,
            "{b}"
        );
        assert_eq!(
            s.reserve_login_attempt("nobody", "a", later, LIMITS).await.unwrap(),
            LoginGate::NoAccount,
            "{b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn account_failures_older_than_the_window_are_forgotten() {
    for (s, _guard) in stores().await {
        let b = s.backend();
        s.create_user(&user("grace", "grace@example.com")).await.unwrap();
        let t0 = Utc::now();
        // A failure every 20 s, each from a new address (so no address lock), for eight minutes, with
        // successful logins in between: at most three fall in one 60 s window, and the account-wide limit
        // is eight, so the account never locks.
        for i in 0..24 {
            let now = t0 + Duration::seconds(20 * i);
            let client = format!("c{i}");
            assert_eq!(
                s.reserve_login_attempt("grace", &client, now, LIMITS).await.unwrap(),
                LoginGate::Reserved,
                "{b}: failure {i}"
            );
            let started = s.login_attempt_failed("grace", &client, now, LIMITS).await.unwrap();
            assert_eq!(started.account, None, "{b}: failure {i} locked the account");
            let later = now + Duration::seconds(10);
            assert_eq!(
                s.reserve_login_attempt("grace", "owner", later, LIMITS).await.unwrap(),
                LoginGate::Reserved,
                "{b}: login {i} of the owner"
            );
            s.login_attempt_succeeded("grace", "owner").await.unwrap();
        }
        // Eight failures within one window still lock the account.
        let now = t0 + Duration::seconds(20 * 24 + 120);
        let mut account = None;
        for i in 0..8 {
            let client = format!("d{i}");
            assert_eq!(
                s.reserve_login_attempt("grace", &client, now, LIMITS).await.unwrap(),
                LoginGate::Reserved,
                "{b}"
            );
            account = account.or(s
                .login_attempt_failed("grace", &client, now, LIMITS)
                .await
                .unwrap()
                .account);
        }
        assert!(account.is_some(), "{b}: eight failures in one window lock the account");
        assert_eq!(
            s.reserve_login_attempt("grace", "owner", now, LIMITS).await.unwrap(),
            LoginGate::AccountLocked,
            "{b}"
        );
    }
}

trait Micros {
    fn with_nanosecond_us(self) -> Self;
}
impl Micros for chrono::DateTime<Utc> {
    /// The stored precision.
    fn with_nanosecond_us(self) -> Self {
        chrono::DateTime::from_timestamp_micros(self.timestamp_micros()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emails_are_unique_case_insensitively() {
    for (s, _guard) in stores().await {
        let b = s.backend();
        s.create_user(&user("alice", "alice@example.com")).await.unwrap();
        for (name, email) in [("alice2", "Alice@Example.COM"), ("alice3", "alice@example.com")] {
            match s.create_user(&user(name, email)).await {
                Err(StoreError::Conflict(m)) => assert!(m.contains("email"), "{b}: {m}"),
                other => panic!("{b}: duplicate email accepted: {other:?}"),
            }
        }
        match s.create_user(&user("alice", "other@example.com")).await {
            Err(StoreError::Conflict(m)) => assert!(m.contains("already exists"), "{b}: {m}"),
            other => panic!("{b}: duplicate username accepted: {other:?}"),
        }
        // A disabled account's email is still taken.
        s.update_user(
            "alice",
            &UserChange {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(
                s.create_user(&user("alice4", "ALICE@example.com")).await,
                Err(StoreError::Conflict(_))
            ),
            "{b}"
        );
        assert_eq!(s.list_users().await.unwrap().len(), 1, "{b}");
        // Parallel creates with one email: exactly one wins.
        let mut tasks = vec![];
        for i in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.create_user(&user(&format!("bob{i}"), "Bob@EXAMPLE.com"))
                    .await
                    .is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 1, "{b}");
        assert_eq!(
            s.get_user_by_email("bob@example.com")
                .await
                .unwrap()
                .map(|u| u.email.to_lowercase()),
            Some("bob@example.com".to_string()),
            "{b}"
        );
    }
}

fn v1_migrator(pg: bool) -> Migrator {
    let sql = if pg {
        include_str!("../migrations/postgres/0001_init.sql")
    } else {
        include_str!("../migrations/sqlite/0001_init.sql")
    };
    Migrator {
        migrations: Cow::Owned(vec![Migration::new(
            1,
            Cow::Borrowed("init"),
            MigrationType::Simple,
            Cow::Borrowed(sql),
            false,
        )]),
        ..Migrator::DEFAULT
    }
}

const V1_ROWS: &str = "INSERT INTO users (username, email, is_admin, disabled, password_hash, failed_logins, \
    locked_until_us, created_us, updated_us) VALUES \
    ('carol', 'carol@example.com', FALSE, FALSE, 'h', 0, NULL, 100, 100), \
    ('carol-admin', 'Carol@Example.com', TRUE, FALSE, 'h', 0, NULL, 200, 200), \
    ('carol-old', 'CAROL@example.com', FALSE, TRUE, 'h', 0, NULL, 50, 50), \
    ('carol-3', 'carol@example.com', FALSE, FALSE, 'h', 0, NULL, 300, 300), \
    ('dave', 'dave@example.com', FALSE, FALSE, 'h', 0, NULL, 100, 100), \
    ('erin', 'erin@example.com', FALSE, FALSE, 'h', 0, NULL, 100, 100), \
    ('erin-2', 'Erin@example.com', FALSE, FALSE, 'h', 0, NULL, 200, 200), \
    ('gus', 'gus@example.com', FALSE, FALSE, 'h', 0, NULL, 100, 100), \
    ('gus-admin', 'gus@example.com', TRUE, FALSE, 'h', 0, NULL, 300, 300), \
    ('gus-old-admin', 'GUS@example.com', TRUE, FALSE, 'h', 0, NULL, 150, 150), \
    ('gus-off-admin', 'gus@example.com', TRUE, TRUE, 'h', 0, NULL, 50, 50); \
    INSERT INTO web_sessions (id_hash, subject, display_name, is_admin, groups_json, auth, csrf_token, \
    created_us, last_seen_us, expires_us) VALUES \
    ('s1', 'carol@example.com', 'carol', FALSE, '[]', 'local', 'c', 1, 1, 99999999999999999), \
    ('s2', 'dave@example.com', 'dave', FALSE, '[]', 'local', 'c', 1, 1, 99999999999999999);";

async fn check_upgraded(s: &Store) {
    let b = s.backend();
    assert_eq!(s.schema_versions().await.unwrap(), vec![1, 2, 3, 4, 5, 6, 7], "{b}");
    let users = s.list_users().await.unwrap();
    let state: Vec<(&str, bool)> = users.iter().map(|u| (u.username.as_str(), u.disabled)).collect();
    assert_eq!(
        state,
        vec![
            ("carol", true),
            ("carol-3", true),
            ("carol-admin", false),
            ("carol-old", true),
            ("dave", false),
            ("erin", false),
            ("erin-2", true),
            ("gus", true),
            ("gus-admin", true),
            ("gus-off-admin", true),
            ("gus-old-admin", false),
        ],
        "{b}: an enabled admin is kept (the oldest of them), else the oldest account; nothing is deleted"
    );
    assert!(
        users.iter().all(|u| u.password_hash == "h"),
        "{b}: nothing else changed"
    );
    let audit = s
        .audit_events(&janus_store::AuditQuery {
            actor: Some("system".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut disabled: Vec<(String, String)> = audit
        .iter()
        .map(|e| {
            (
                e.details["username"].as_str().unwrap_or_default().to_string(),
                e.details["keptAccount"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    disabled.sort();
    let expected = [
        ("carol", "carol-admin"),
        ("carol-3", "carol-admin"),
        ("erin-2", "erin"),
        ("gus", "gus-old-admin"),
        ("gus-admin", "gus-old-admin"),
    ];
    assert_eq!(
        disabled,
        expected.map(|(u, k)| (u.to_string(), k.to_string())),
        "{b}: one audit event per disabled account, naming the account kept"
    );
    assert!(
        s.get_session("s1").await.unwrap().is_none(),
        "{b}: the shared email's sessions end"
    );
    assert!(s.get_session("s2").await.unwrap().is_some(), "{b}");
    // Enabling a duplicate is refused.
    match s
        .update_user(
            "carol",
            &UserChange {
                disabled: Some(false),
                ..Default::default()
            },
        )
        .await
    {
        Err(StoreError::Conflict(m)) => assert!(m.contains("email"), "{b}: {m}"),
        other => panic!("{b}: a duplicate was enabled: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_with_duplicate_emails_keeps_an_admin_or_the_oldest_and_disables_the_others() {
    // SQLite.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        use sqlx::Connection as _;
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut c = sqlx::SqliteConnection::connect_with(&opts.create_if_missing(true))
            .await
            .unwrap();
        v1_migrator(false).run_direct(&mut c).await.unwrap();
        sqlx::raw_sql(V1_ROWS).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
    let s = Store::connect(&url, None).await.unwrap();
    check_upgraded(&s).await;
    // PostgreSQL.
    if let Some(base) = common::pg_url() {
        let url = common::fresh_pg_database(&base).await;
        {
            use sqlx::Connection as _;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            v1_migrator(true).run_direct(&mut c).await.unwrap();
            sqlx::raw_sql(V1_ROWS).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        let s = Store::connect(&url, None).await.unwrap();
        check_upgraded(&s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_requester_lock_is_exclusive_across_store_handles() {
    let mut backends = vec![];
    let (s, _d) = common::sqlite_store().await;
    backends.push((s.clone(), s));
    if let Some((pg, url)) = common::pg_store().await {
        // A second pool on the same database stands in for another replica.
        let other = Store::connect(&url, None).await.unwrap();
        backends.push((pg, other));
        // The lock is held in the database, where another replica (which shares no memory) meets it.
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let held = backends[1].0.lock_requester("Eve@Example.com").await.unwrap();
        let free: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended('k8s-janus/requester/eve@example.com', 7305))",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(!free, "the advisory lock is held while the requester lock is");
        held.release().await;
        let free: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended('k8s-janus/requester/eve@example.com', 7305))",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(free, "released with the lock");
        c.close().await.unwrap();
    }
    for (a, b) in backends {
        let inside = Arc::new(AtomicUsize::new(0));
        let max_inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for i in 0..12 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (inside, max_inside) = (inside.clone(), max_inside.clone());
            tasks.push(tokio::spawn(async move {
                let who = if i % 3 == 0 {
                    "Eve@example.com"
                } else {
                    "eve@example.com"
                };
                let lock = s.lock_requester(who).await.unwrap();
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max_inside.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                lock.release().await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max_inside.load(Ordering::SeqCst), 1, "{}", a.backend());
        // Other requesters are not held up by it.
        let held = a.lock_requester("eve@example.com").await.unwrap();
        let other = tokio::time::timeout(std::time::Duration::from_secs(5), b.lock_requester("frank@example.com"))
            .await
            .expect("another requester's lock is free")
            .unwrap();
        other.release().await;
        held.release().await;
    }
}
