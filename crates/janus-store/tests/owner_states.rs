#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The batched owner check behind terminal and log-stream termination (`Store::owner_states`), against
//! SQLite always and PostgreSQL when `JANUS_TEST_POSTGRES_URL` is set: which login sessions still exist
//! (with their expiry) and the state of local accounts, in one query, with case-insensitive emails, many
//! keys, hostile strings and empty inputs; and accounts sharing an email (the enabled one counts).

mod common;

use chrono::{DateTime, Duration, SubsecRound as _, Utc};
use common::*;
use janus_store::*;

fn session(id: &str, subject: &str, expires: DateTime<Utc>) -> WebSession {
    let now = Utc::now();
    WebSession {
        id_hash: id.into(),
        subject: subject.into(),
        display_name: "x".into(),
        is_admin: false,
        groups: vec![],
        auth: "local".into(),
        csrf_token: "c".into(),
        created_at: now,
        last_seen: now,
        expires_at: expires,
    }
}

async fn user(s: &Store, name: &str, email: &str, admin: bool) {
    s.create_user(&NewUser {
        username: name.into(),
        email: email.into(),
        is_admin: admin,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$x$y".into(),
    })
    .await
    .expect("user");
}

async fn owner_states(s: Store) {
    // Nothing asked, nothing answered (and no query with an empty IN list).
    assert_eq!(s.owner_states(&[], &[]).await.unwrap(), OwnerStates::default());

    let exp = (Utc::now() + Duration::hours(1)).trunc_subsecs(6);
    s.create_session(&session("s1", "alice@x.io", exp)).await.unwrap();
    s.create_session(&session("s2", "bob@x.io", exp)).await.unwrap();
    user(&s, "alice", "alice@x.io", true).await;
    user(&s, "bob", "Bob@X.io", false).await;
    s.update_user(
        "bob",
        &UserChange {
            password_hash: None,
            is_admin: None,
            disabled: Some(true),
        },
    )
    .await
    .unwrap();

    let hashes: Vec<String> = ["s1", "s2", "gone", "'; DROP TABLE users; --"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let emails: Vec<String> = ["ALICE@x.io", "bob@x.io", "carol@x.io"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let st = s.owner_states(&hashes, &emails).await.unwrap();
    assert_eq!(st.sessions.len(), 2);
    assert_eq!(st.sessions.get("s1"), Some(&exp));
    assert!(!st.sessions.contains_key("gone"));
    assert_eq!(
        st.accounts.get("alice@x.io"),
        Some(&OwnerAccount {
            is_admin: true,
            disabled: false
        })
    );
    assert_eq!(
        st.accounts.get("bob@x.io"),
        Some(&OwnerAccount {
            is_admin: false,
            disabled: true
        }),
        "emails compare lowercased"
    );
    assert!(!st.accounts.contains_key("carol@x.io"));

    // Only sessions, only accounts.
    let st = s.owner_states(&hashes, &[]).await.unwrap();
    assert!(st.accounts.is_empty() && st.sessions.len() == 2);
    let st = s.owner_states(&[], &emails).await.unwrap();
    assert!(st.sessions.is_empty() && st.accounts.len() == 2);

    // Signing out and deleting are seen at once.
    s.delete_session("s1").await.unwrap();
    assert!(s.delete_user("alice").await.unwrap());
    let st = s.owner_states(&hashes, &emails).await.unwrap();
    assert!(!st.sessions.contains_key("s1") && !st.accounts.contains_key("alice@x.io"));

    // More keys than one query takes (chunked), all answered.
    let many: Vec<String> = (0..2500).map(|i| format!("h{i}")).collect();
    for h in many.iter().step_by(500) {
        s.create_session(&session(h, "many@x.io", exp)).await.unwrap();
    }
    let mut with_s2 = many.clone();
    with_s2.push("s2".into());
    let st = s.owner_states(&with_s2, &emails).await.unwrap();
    assert_eq!(st.sessions.len(), 6, "{:?}", st.sessions.keys());
    assert!(st.accounts.contains_key("bob@x.io"));
}

/// Runs one statement on the store's database beside the store (for rows the store refuses to make).
async fn raw(url: &str, sql: &str) {
    use sqlx::Connection as _;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::query(sql).execute(&mut c).await.expect("statement");
        c.close().await.ok();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
        sqlx::query(sql).execute(&mut c).await.expect("statement");
        c.close().await.ok();
    }
}

/// Migration 2 leaves disabled accounts sharing the email of the enabled account it keeps (and disabled
/// accounts may share an email with each other). The email's state is that of its enabled account:
/// a disabled duplicate neither disables the kept account nor takes away its admin right.
async fn duplicate_emails(s: Store, url: &str) {
    user(&s, "alice", "alice@x.io", true).await;
    user(&s, "dave", "dave@x.io", true).await;
    // Disabled non-admin duplicates, in other cases: one older than the kept account, one newer; and an
    // email that only disabled accounts have (the oldest, an admin, is the one that counts).
    raw(
        url,
        "INSERT INTO users (username, email, is_admin, disabled, password_hash, failed_logins, created_us, \
         updated_us) VALUES ('alice-old', 'ALICE@X.io', FALSE, TRUE, 'x', 0, 1, 1), \
         ('dave-new', 'Dave@X.IO', FALSE, TRUE, 'x', 0, 4102444800000000, 4102444800000000), \
         ('gone-1', 'gone@x.io', TRUE, TRUE, 'x', 0, 1, 1), ('gone-2', 'GONE@x.io', FALSE, TRUE, 'x', 0, 2, 2)",
    )
    .await;
    let emails: Vec<String> = ["alice@x.io", "DAVE@x.io", "gone@x.io", "nobody@x.io"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let kept = OwnerAccount {
        is_admin: true,
        disabled: false,
    };
    // Every owner check answers alike.
    for _ in 0..5 {
        let st = s.owner_states(&[], &emails).await.unwrap();
        assert_eq!(st.accounts.get("alice@x.io"), Some(&kept), "older disabled duplicate");
        assert_eq!(st.accounts.get("dave@x.io"), Some(&kept), "newer disabled duplicate");
        assert_eq!(
            st.accounts.get("gone@x.io"),
            Some(&OwnerAccount {
                is_admin: true,
                disabled: true
            }),
            "no enabled account: disabled"
        );
        assert!(!st.accounts.contains_key("nobody@x.io"), "no account: deleted");
    }
    // The kept account disabled: now no account of the email is enabled. Deleted: its duplicate remains,
    // disabled.
    s.update_user(
        "alice",
        &UserChange {
            password_hash: None,
            is_admin: None,
            disabled: Some(true),
        },
    )
    .await
    .unwrap();
    assert!(s.delete_user("dave").await.unwrap());
    let st = s.owner_states(&[], &emails).await.unwrap();
    assert!(st.accounts.get("alice@x.io").is_some_and(|a| a.disabled));
    assert_eq!(
        st.accounts.get("dave@x.io"),
        Some(&OwnerAccount {
            is_admin: false,
            disabled: true
        })
    );
}

#[tokio::test]
async fn sqlite() {
    let (store, _dir) = sqlite_store().await;
    owner_states(store).await;
}

#[tokio::test]
async fn postgres() {
    if let Some((store, _url)) = pg_store().await {
        owner_states(store).await;
    }
}

#[tokio::test]
async fn sqlite_duplicate_emails() {
    let (store, dir) = sqlite_store().await;
    let url = format!("sqlite://{}", dir.path().join("sub/janus.db").display());
    duplicate_emails(store, &url).await;
}

#[tokio::test]
async fn postgres_duplicate_emails() {
    if let Some((store, url)) = pg_store().await {
        duplicate_emails(store, &url).await;
    }
}
