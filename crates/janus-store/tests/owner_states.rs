//! The batched owner check behind terminal and log-stream termination (`Store::owner_states`), against
//! SQLite always and PostgreSQL when `JANUS_TEST_POSTGRES_URL` is set: which login sessions still exist
//! (with their expiry) and the state of local accounts, in one query, with case-insensitive emails, many
//! keys, hostile strings and empty inputs.

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
