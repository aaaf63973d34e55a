#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Token lifecycle bounds in the store (issue 18 review), against SQLite always and PostgreSQL when
//! `JANUS_TEST_POSTGRES_URL` is set: `token.new_address` only for addresses a token has not used
//! before (A, B, A, B → two), the per-user limit holding under parallel creates, and revoking every
//! token of an owner at once.

mod common;

use chrono::{Duration, SubsecRound as _, Utc};
use common::*;
use janus_api::tokens::TokenScope;
use janus_store::*;

fn token(n: usize, owner: &str) -> NewApiToken {
    let now = Utc::now().trunc_subsecs(6);
    NewApiToken {
        id_hash: format!("hash-{owner}-{n}"),
        display_id: format!("janus_pat_{owner}{n}"),
        owner: owner.into(),
        auth: "local".into(),
        display_name: "Alice".into(),
        is_admin: false,
        groups: vec![],
        name: format!("t{n}"),
        scopes: vec![TokenScope::Read],
        created_at: now,
        expires_at: now + Duration::days(30),
    }
}

async fn new_address_once_per_address(s: Store) {
    let t = s.create_api_token(&token(0, "nat")).await.unwrap();
    let t0 = Utc::now().trunc_subsecs(6);
    let mut events = 0;
    for (i, ip) in ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]
        .iter()
        .enumerate()
    {
        let r = s
            .touch_api_token(&t.id_hash, t0 + Duration::seconds(i as i64), ip)
            .await
            .unwrap();
        events += usize::from(r.new_address);
    }
    assert_eq!(events, 2, "a NAT pool alternating two addresses is two new addresses");
    // The last-use columns still follow the latest address.
    let got = s.api_token(&t.id_hash).await.unwrap().unwrap();
    assert_eq!(got.last_used_ip.as_deref(), Some("10.0.0.2"));
    // The set is bounded: after SEEN_ADDRESSES other addresses the first one is new again.
    for i in 0..SEEN_ADDRESSES {
        s.touch_api_token(&t.id_hash, t0 + Duration::seconds(100 + i), &format!("192.168.0.{i}"))
            .await
            .unwrap();
    }
    let r = s
        .touch_api_token(&t.id_hash, t0 + Duration::seconds(500), "10.0.0.1")
        .await
        .unwrap();
    assert!(r.new_address, "forgotten after {} other addresses", SEEN_ADDRESSES);
    // Unknown tokens: nothing happens.
    assert!(!s.touch_api_token("nope", t0, "10.0.0.9").await.unwrap().new_address);
}

async fn limit_holds_under_parallel_creates(s: Store) {
    let max = 3;
    s.create_api_token(&token(100, "race")).await.unwrap();
    let now = Utc::now();
    let mut tasks = Vec::new();
    for n in 0..12 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_api_token_within(&token(n, "race"), max, now).await.unwrap()
        }));
    }
    let mut made = 0;
    for t in tasks {
        made += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(
        made, 2,
        "one existed, the limit is 3: exactly two of twelve parallel creates succeed"
    );
    assert_eq!(s.count_live_api_tokens("race", now).await.unwrap(), 3);
    // Another owner is not affected.
    assert!(
        s.create_api_token_within(&token(0, "other"), max, now)
            .await
            .unwrap()
            .is_some()
    );
}

async fn revoke_all_of_owner(s: Store) {
    for n in 0..3 {
        s.create_api_token(&token(n, "gone@x.io")).await.unwrap();
    }
    s.create_api_token(&token(9, "kept@x.io")).await.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let gone = s
        .revoke_owner_api_tokens("Gone@X.io", "system: user deleted", now)
        .await
        .unwrap();
    assert_eq!(gone.len(), 3);
    for t in &gone {
        let t = s.api_token(&t.id_hash).await.unwrap().unwrap();
        assert_eq!(t.revoked_by.as_deref(), Some("system: user deleted"));
        assert_eq!(t.revoked_at, Some(now));
    }
    assert_eq!(s.count_live_api_tokens("kept@x.io", now).await.unwrap(), 1);
    assert!(
        s.revoke_owner_api_tokens("gone@x.io", "again", now)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_lifecycle_sqlite() {
    let (s, _dir) = sqlite_store().await;
    assert!(s.schema_versions().await.unwrap().contains(&7));
    new_address_once_per_address(s.clone()).await;
    limit_holds_under_parallel_creates(s.clone()).await;
    revoke_all_of_owner(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_lifecycle_postgres() {
    let Some((s, _url)) = pg_store().await else { return };
    new_address_once_per_address(s.clone()).await;
    limit_holds_under_parallel_creates(s.clone()).await;
    revoke_all_of_owner(s).await;
}
