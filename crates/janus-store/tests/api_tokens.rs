#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Personal API tokens in the store (`api_tokens`, migration 6), against SQLite always and PostgreSQL
//! when `JANUS_TEST_POSTGRES_URL` is set: create/read/list, revocation scoped to the owner (admins: any),
//! the once-a-minute last-use write with new-address detection, the live count behind maxPerUser, and
//! the terminal owner check answering unrevoked token hashes with the token's expiry.

mod common;

use chrono::{DateTime, Duration, SubsecRound as _, Utc};
use common::*;
use janus_api::tokens::TokenScope;
use janus_store::*;

fn new_token(hash: &str, display: &str, owner: &str, created: DateTime<Utc>, expires: DateTime<Utc>) -> NewApiToken {
    NewApiToken {
        id_hash: hash.into(),
        display_id: display.into(),
        owner: owner.into(),
        auth: "oidc".into(),
        display_name: "Alice".into(),
        is_admin: false,
        groups: vec!["devs".into()],
        name: "ci job".into(),
        scopes: vec![TokenScope::Read, TokenScope::Approve],
        created_at: created,
        expires_at: expires,
    }
}

async fn api_tokens(s: Store) {
    let now = Utc::now().trunc_subsecs(6);
    let exp = now + Duration::days(30);

    let t1 = s
        .create_api_token(&new_token(
            "h1",
            "janus_pat_AAAAAAA1",
            "Alice@X.io",
            now - Duration::seconds(2),
            exp,
        ))
        .await
        .unwrap();
    assert_eq!(t1.owner, "alice@x.io", "owners are stored lowercased");
    assert_eq!(t1.scopes, vec![TokenScope::Read, TokenScope::Approve]);
    assert_eq!(t1.groups, vec!["devs".to_string()]);
    assert!(t1.is_live(now) && t1.last_used_at.is_none() && t1.revoked_at.is_none());
    assert_eq!(s.api_token("h1").await.unwrap(), Some(t1.clone()));
    assert_eq!(s.api_token("nope").await.unwrap(), None);
    assert_eq!(
        s.api_token_by_display_id("janus_pat_AAAAAAA1").await.unwrap(),
        Some(t1.clone())
    );
    assert_eq!(s.api_token_by_display_id("janus_pat_nothing").await.unwrap(), None);
    // The serialized form never carries the hash.
    assert!(!serde_json::to_string(&t1).unwrap().contains("\"h1\""));

    // Duplicates, no scopes and unknown sign-in kinds are refused.
    let dup = s
        .create_api_token(&new_token("h1", "janus_pat_other", "alice@x.io", now, exp))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let dup = s
        .create_api_token(&new_token("h9", "janus_pat_AAAAAAA1", "alice@x.io", now, exp))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let mut bad = new_token("h8", "janus_pat_AAAAAAA8", "alice@x.io", now, exp);
    bad.scopes.clear();
    assert!(matches!(s.create_api_token(&bad).await, Err(StoreError::Invalid(_))));
    bad.scopes = vec![TokenScope::Read];
    bad.auth = "magic".into();
    assert!(matches!(s.create_api_token(&bad).await, Err(StoreError::Invalid(_))));

    s.create_api_token(&new_token("h2", "janus_pat_AAAAAAA2", "alice@x.io", now, exp))
        .await
        .unwrap();
    s.create_api_token(&new_token(
        "h3",
        "janus_pat_BBBBBBB3",
        "bob@x.io",
        now + Duration::seconds(1),
        exp,
    ))
    .await
    .unwrap();
    // Expired (created with a past expiry): listed, not live, not counted.
    s.create_api_token(&new_token(
        "h4",
        "janus_pat_AAAAAAA4",
        "alice@x.io",
        now - Duration::days(2),
        now - Duration::days(1),
    ))
    .await
    .unwrap();

    let mine: Vec<String> = s
        .list_api_tokens(Some("ALICE@x.io"))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.display_id)
        .collect();
    assert_eq!(
        mine,
        ["janus_pat_AAAAAAA2", "janus_pat_AAAAAAA1", "janus_pat_AAAAAAA4"],
        "newest first"
    );
    assert_eq!(s.list_api_tokens(None).await.unwrap().len(), 4);
    assert_eq!(
        s.list_api_tokens(None).await.unwrap()[0].display_id,
        "janus_pat_BBBBBBB3"
    );
    assert_eq!(s.count_live_api_tokens("alice@x.io", now).await.unwrap(), 2);

    // Owner check: live token hashes answer with the token's expiry; expired ones answer too (the
    // caller compares the expiry), unknown ones not.
    let hashes: Vec<String> = ["h1", "h4", "nope"].iter().map(|s| s.to_string()).collect();
    let st = s.owner_states(&hashes, &[]).await.unwrap();
    assert_eq!(st.sessions.get("h1"), Some(&exp));
    assert_eq!(st.sessions.get("h4"), Some(&(now - Duration::days(1))));
    assert!(!st.sessions.contains_key("nope"));

    // Revocation: another owner cannot, the owner can once, an admin (None) can anyone's.
    assert!(
        !s.revoke_api_token("janus_pat_AAAAAAA1", Some("bob@x.io"), "bob@x.io", now)
            .await
            .unwrap()
    );
    assert!(
        s.revoke_api_token("janus_pat_AAAAAAA1", Some("alice@x.io"), "alice@x.io", now)
            .await
            .unwrap()
    );
    assert!(
        !s.revoke_api_token("janus_pat_AAAAAAA1", Some("alice@x.io"), "alice@x.io", now)
            .await
            .unwrap()
    );
    assert!(
        s.revoke_api_token("janus_pat_BBBBBBB3", None, "root@x.io", now)
            .await
            .unwrap()
    );
    assert!(
        !s.revoke_api_token("janus_pat_nothing", None, "root@x.io", now)
            .await
            .unwrap()
    );
    let t1 = s.api_token("h1").await.unwrap().unwrap();
    assert_eq!(t1.revoked_at, Some(now));
    assert_eq!(t1.revoked_by.as_deref(), Some("alice@x.io"));
    assert!(!t1.is_live(now));
    assert_eq!(s.count_live_api_tokens("alice@x.io", now).await.unwrap(), 1);
    // A revoked token no longer keeps a stream open.
    let st = s.owner_states(&hashes, &[]).await.unwrap();
    assert!(!st.sessions.contains_key("h1"), "{:?}", st.sessions);

    // Last use: the first use is from a new address; the same address within a minute writes nothing;
    // a minute later it writes; another address is new at once.
    let t0 = now;
    assert_eq!(
        s.touch_api_token("h2", t0, "10.0.0.1").await.unwrap(),
        TouchResult { new_address: true }
    );
    let r = s
        .touch_api_token("h2", t0 + Duration::seconds(30), "10.0.0.1")
        .await
        .unwrap();
    assert!(!r.new_address);
    let t = s.api_token("h2").await.unwrap().unwrap();
    assert_eq!(t.last_used_at, Some(t0), "no write within a minute");
    assert_eq!(t.last_used_ip.as_deref(), Some("10.0.0.1"));
    let later = t0 + Duration::seconds(61);
    assert!(!s.touch_api_token("h2", later, "10.0.0.1").await.unwrap().new_address);
    assert_eq!(s.api_token("h2").await.unwrap().unwrap().last_used_at, Some(later));
    let moved = later + Duration::seconds(1);
    assert!(s.touch_api_token("h2", moved, "10.0.0.2").await.unwrap().new_address);
    let t = s.api_token("h2").await.unwrap().unwrap();
    assert_eq!(
        (t.last_used_at, t.last_used_ip.as_deref()),
        (Some(moved), Some("10.0.0.2"))
    );
    // Unknown tokens: nothing happens.
    assert!(!s.touch_api_token("nope", moved, "10.0.0.3").await.unwrap().new_address);
}

#[tokio::test]
async fn api_tokens_sqlite() {
    let (s, _dir) = sqlite_store().await;
    assert!(s.schema_versions().await.unwrap().contains(&6));
    api_tokens(s).await;
}

#[tokio::test]
async fn api_tokens_postgres() {
    let Some((s, _url)) = pg_store().await else { return };
    assert!(s.schema_versions().await.unwrap().contains(&6));
    api_tokens(s).await;
}
