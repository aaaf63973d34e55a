#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The API tokens page (`/tokens`, issue 18) against the real stack (kubesim, controller, web on SQLite):
//! who may use it (anonymous → login, a personal API token → 401, engineers their own tokens only,
//! admins everyone's), that a new token is shown exactly once and is stored only as its hash, that
//! every form needs the CSRF token, that someone else's token cannot be revoked by a non-admin (404),
//! and that bad input and the configured limits are refused with the form kept.

mod common;

use common::{ADMIN, Session, Stack};
use janus_store::Store;

/// The web's own database, opened beside it (SQLite in WAL mode takes a second connection).
async fn store(stack: &Stack) -> Store {
    let url = format!("sqlite://{}", stack.dir.path().join("janus.db").display());
    Store::connect(&url, None).await.expect("store")
}

/// Every `janus_pat_` token (prefix + 40 base62) in a text.
fn tokens_in(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"janus_pat_[A-Za-z0-9]{40}").expect("regex");
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

/// Creates a token through the page's form; returns (status, page HTML).
async fn create(s: &Session, name: &str, scopes: &[&str], days: &str) -> (u16, String) {
    let mut fields: Vec<(&str, &str)> = vec![("name", name), ("expiresInDays", days)];
    fields.extend(scopes.iter().map(|sc| ("scopes", *sc)));
    let r = s.form("/tokens", &fields).await;
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// Creates a token and returns it (the only time it is shown).
async fn new_token(s: &Session, name: &str, scopes: &[&str]) -> String {
    let (status, html) = create(s, name, scopes, "7").await;
    assert_eq!(status, 200, "create {name}: {html}");
    let found = tokens_in(&html);
    assert_eq!(found.len(), 1, "the page shows the new token once: {found:?}");
    found[0].clone()
}

async fn page(s: &Session) -> String {
    let r = s.get("/tokens").await;
    assert_eq!(r.status(), 200);
    r.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_token_is_shown_once_and_only_its_hash_is_stored() {
    let stack = Stack::start("").await;
    let db = store(&stack).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;

    let before = page(&alice).await;
    assert!(before.contains("href=\"/tokens\""), "the top bar links the page");
    assert!(before.contains("id=\"create-token\""));
    assert!(
        before.contains("value=\"30\""),
        "the configured default expiry is preselected"
    );

    let (status, created) = create(&alice, "laptop", &["read", "request"], "7").await;
    assert_eq!(status, 200, "{created}");
    let found = tokens_in(&created);
    assert_eq!(found.len(), 1, "{found:?}");
    let token = &found[0];
    assert!(created.contains("data-copy=\"new-token\""), "a copy button");
    assert!(created.contains("shown only this once"), "and the warning");

    // The store holds the hash, not the token; the display id is what lists show.
    let stored = db
        .api_token(&janus_api::tokens::hash(token))
        .await
        .expect("read")
        .expect("stored under its hash");
    let display = janus_api::tokens::display_id(token);
    assert_eq!(stored.display_id, display);
    assert_eq!(stored.owner, "alice@example.com");
    assert_eq!(stored.name, "laptop");
    let days = (stored.expires_at - stored.created_at).num_days();
    assert_eq!(days, 7);

    // Never again: not on the page, not in the admin's list, not in the audit log.
    let after = page(&alice).await;
    assert!(tokens_in(&after).is_empty(), "the listing shows the token again");
    assert!(!after.contains(&token[janus_api::tokens::PAT_PREFIX.len()..]));
    assert!(after.contains(&display), "the listing names it by display id");
    let all = page(&admin).await;
    assert!(tokens_in(&all).is_empty() && all.contains(&display));
    // The audit writer is asynchronous: wait for the event (5 s for what is written at once).
    let mut audit = String::new();
    for _ in 0..50 {
        audit = admin
            .get("/api/v1/audit?kind=token.created")
            .await
            .text()
            .await
            .expect("audit");
        if audit.contains(&display) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(audit.contains(&display), "token.created names the display id: {audit}");
    assert!(tokens_in(&audit).is_empty(), "the audit log holds no token");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_is_for_signed_in_people_and_admins_see_everyones_tokens() {
    let stack = Stack::start("").await;
    let db = store(&stack).await;
    let anon = stack.anon();
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;

    // Anonymous: to the login page, and nothing is created.
    let r = anon.get("/tokens").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/tokens");
    let r = anon
        .form("/tokens", &[("name", "x"), ("scopes", "read"), ("expiresInDays", "1")])
        .await;
    assert!(r.status() == 303 || r.status() == 403, "{}", r.status());
    assert!(db.list_api_tokens(None).await.expect("list").is_empty());

    let alice_token = new_token(&alice, "alice-laptop", &["read"]).await;
    let _bob_token = new_token(&bob, "bob-ci", &["request"]).await;
    let alice_id = janus_api::tokens::display_id(&alice_token);

    // Engineers see their own only, and no "All tokens".
    let a = page(&alice).await;
    assert!(a.contains("alice-laptop") && !a.contains("bob-ci"), "{a}");
    assert!(!a.contains("All tokens") && !a.contains("id=\"all-tokens\""));
    let b = page(&bob).await;
    assert!(b.contains("bob-ci") && !b.contains("alice-laptop"));

    // Admins see everyone's, with the owner.
    let all = page(&admin).await;
    let section = all.split("id=\"all-tokens\"").nth(1).expect("an All tokens table");
    assert!(section.contains("alice-laptop") && section.contains("bob-ci"));
    assert!(section.contains("alice@example.com") && section.contains("bob@example.com"));

    // A personal API token is no way into a page, even its owner's.
    let bearer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = bearer
        .get(format!("{}/tokens", stack.url))
        .bearer_auth(&alice_token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 401, "a bearer on /tokens");
    let body = r.text().await.expect("body");
    assert!(!body.contains(&alice_token) && !body.contains("alice-laptop"), "{body}");

    // Bob cannot revoke Alice's token (404, as for one that does not exist); it stays live.
    let r = bob.form(&format!("/tokens/{alice_id}/revoke"), &[]).await;
    assert_eq!(r.status(), 404);
    let r = bob.form("/tokens/janus_pat_00000000/revoke", &[]).await;
    assert_eq!(r.status(), 404);
    let stored = db
        .api_token(&janus_api::tokens::hash(&alice_token))
        .await
        .expect("read")
        .expect("row");
    assert!(stored.revoked_at.is_none(), "a non-admin revoked someone else's token");

    // An admin can, and the row says who did.
    let r = admin.form(&format!("/tokens/{alice_id}/revoke"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/tokens?done=revoked");
    let stored = db
        .api_token(&janus_api::tokens::hash(&alice_token))
        .await
        .expect("read")
        .expect("row");
    assert_eq!(stored.revoked_by.as_deref(), Some("admin@example.com"));
    let a = page(&alice).await;
    assert!(a.contains("Revoked"), "{a}");
    // Revoking it again changes nothing: the first revocation's author stays.
    let r = alice.form(&format!("/tokens/{alice_id}/revoke"), &[]).await;
    assert_eq!(r.status(), 303);
    let stored = db
        .api_token(&janus_api::tokens::hash(&alice_token))
        .await
        .expect("read")
        .expect("row");
    assert_eq!(stored.revoked_by.as_deref(), Some("admin@example.com"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_forms_need_the_csrf_token() {
    let stack = Stack::start("").await;
    let db = store(&stack).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let token = new_token(&alice, "kept", &["read"]).await;
    let display = janus_api::tokens::display_id(&token);

    let mut forged = alice.clone();
    forged.csrf = "not-the-token".into();
    let (status, _) = create(&forged, "forged", &["read"], "1").await;
    assert_eq!(status, 403, "create without the CSRF token");
    let r = forged.form(&format!("/tokens/{display}/revoke"), &[]).await;
    assert_eq!(r.status(), 403, "revoke without the CSRF token");
    // No field at all.
    let r = alice
        .http
        .post(format!("{}/tokens/{display}/revoke", stack.url))
        .header("origin", &stack.url)
        .form(&[("x", "y")])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);

    let rows = db.list_api_tokens(Some("alice@example.com")).await.expect("list");
    assert_eq!(rows.len(), 1, "a forged form created a token");
    assert!(rows[0].revoked_at.is_none(), "a forged form revoked the token");
    // The owner's own revocation with the field works.
    let r = alice.form(&format!("/tokens/{display}/revoke"), &[]).await;
    assert_eq!(r.status(), 303);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_and_the_limits_are_refused_with_the_form_kept() {
    let stack = Stack::start("web: {apiTokens: {maxLifetimeDays: 10, defaultLifetimeDays: 5, maxPerUser: 2}}").await;
    let db = store(&stack).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;

    let p = page(&alice).await;
    assert!(
        p.contains("max=\"10\"") && p.contains("value=\"5\""),
        "the configured bounds"
    );

    for (name, scopes, days, status, says) in [
        ("", vec!["read"], "5", 422, "1 to 64 characters"),
        (&*"n".repeat(65), vec!["read"], "5", 422, "1 to 64 characters"),
        ("ok", vec![], "5", 422, "at least one scope"),
        ("ok", vec!["admin"], "5", 422, "unknown scope"),
        ("ok", vec!["read"], "11", 422, "1 to 10 days"),
        ("ok", vec!["read"], "0", 422, "1 to 10 days"),
        ("ok", vec!["read"], "soon", 422, "1 to 10 days"),
    ] {
        let (got, html) = create(&alice, name, &scopes, days).await;
        assert_eq!(got, status, "{name:?} {scopes:?} {days:?}: {html}");
        assert!(
            html.contains(says),
            "{name:?} {scopes:?} {days:?} does not say {says:?}"
        );
        assert!(html.contains("id=\"token-error\""));
        assert!(tokens_in(&html).is_empty());
    }
    // The form keeps what was typed.
    let (_, html) = create(&alice, "my-ci", &["approve"], "11").await;
    assert!(html.contains("value=\"my-ci\"") && html.contains("value=\"11\""));
    assert!(html.contains("value=\"approve\" checked"), "{html}");
    assert!(db.list_api_tokens(None).await.expect("list").is_empty());

    // maxPerUser: the third live token is refused (409); revoking one makes room.
    let first = new_token(&alice, "one", &["read"]).await;
    new_token(&alice, "two", &["read"]).await;
    let (got, html) = create(&alice, "three", &["read"], "1").await;
    assert_eq!(got, 409, "{html}");
    assert!(html.contains("revoke one first"));
    let r = alice
        .form(
            &format!("/tokens/{}/revoke", janus_api::tokens::display_id(&first)),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    new_token(&alice, "three", &["read"]).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_tokens_disabled_the_page_says_so_and_creates_none() {
    let stack = Stack::start("web: {apiTokens: {enabled: false}}").await;
    let db = store(&stack).await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let p = page(&admin).await;
    assert!(p.contains("id=\"tokens-disabled\""), "{p}");
    assert!(!p.contains("id=\"create-token\""));
    let (status, html) = create(&admin, "x", &["read"], "1").await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("disabled"));
    assert!(db.list_api_tokens(None).await.expect("list").is_empty());
    stack.stop().await;
}
