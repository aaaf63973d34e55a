#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Login abuse and per-user limits through the real web server (kubesim, controller, SQLite): the
//! lockout is atomic, keyed by account and client address, answers like a wrong password, the client
//! address comes from X-Forwarded-For only through a trusted proxy, emails are unique, and parallel
//! request creates cannot pass the open-request limit.

mod common;

use common::{ADMIN, PASSWORD, Pg, Stack};
use serde_json::{Value, json};

/// A login through the API as a client behind the (trusted, 127.0.0.1) proxy at `client`.
async fn login_from(stack: &Stack, client: Option<&str>, user: &str, password: &str) -> (u16, Value) {
    let mut b = reqwest::Client::new()
        .post(format!("{}/api/v1/login", stack.url))
        .json(&json!({"username": user, "password": password}));
    if let Some(c) = client {
        b = b.header("x-forwarded-for", c);
    }
    let r = b.send().await.expect("login");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The audit events of one kind for one actor.
async fn audit(admin: &common::Session, kind: &str, actor: &str) -> Vec<Value> {
    let v = admin
        .json(&format!("/api/v1/audit?kind={kind}&actor={actor}&limit=1000"))
        .await;
    v["events"].as_array().cloned().unwrap_or_default()
}

fn reasons(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["details"]["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_wrong_passwords_check_at_most_the_limit() {
    let stack = Stack::start("web: {loginMaxFailures: 5, loginMaxFailuresPerAddress: 1000}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let _ = stack.user(&admin, "alice", "alice@example.com", false).await;
    let mut tasks = vec![];
    for i in 0..40 {
        let url = stack.url.clone();
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/api/v1/login"))
                .header("x-forwarded-for", "198.51.100.20")
                .json(&json!({"username": "alice", "password": format!("wrong password {i}")}))
                .send()
                .await
                .expect("login");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (422, Some("wrong username or password"))
        );
    }
    let failed = audit(&admin, "login.failed", "alice").await;
    let checked = reasons(&failed).iter().filter(|r| *r == "wrong password").count();
    assert_eq!(failed.len(), 40, "every attempt is audited");
    assert_eq!(
        checked,
        5,
        "only loginMaxFailures passwords were checked: {:?}",
        reasons(&failed)
    );
    let (status, body) = login_from(&stack, Some("198.51.100.20"), "alice", PASSWORD).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("wrong username or password")),
        "the right password is refused while locked"
    );
    let locked = audit(&admin, "login.locked", "alice").await;
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0]["details"]["scope"], "address");
    assert_eq!(locked[0]["details"]["source"], "198.51.100.20");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_disabled_and_locked_accounts_answer_like_a_wrong_password() {
    let stack = Stack::start("web: {loginMaxFailures: 2, loginMaxFailuresPerAddress: 1000}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    for name in ["alice", "bob", "carol"] {
        let _ = stack.user(&admin, name, &format!("{name}@example.com"), false).await;
    }
    assert_eq!(
        admin
            .patch("/api/v1/users/bob", json!({"disabled": true}))
            .await
            .status(),
        200
    );
    for _ in 0..2 {
        login_from(&stack, Some("198.51.100.30"), "carol", "not her password").await;
    }
    let wrong = login_from(&stack, Some("198.51.100.30"), "alice", "not her password").await;
    assert_eq!(wrong.0, 422);
    for (who, user, password) in [
        ("unknown", "nobody", PASSWORD),
        ("disabled, right password", "bob", PASSWORD),
        ("locked, right password", "carol", PASSWORD),
        ("locked, wrong password", "carol", "still not it"),
    ] {
        let got = login_from(&stack, Some("198.51.100.30"), user, password).await;
        assert_eq!(got, wrong, "{who}");
    }
    // The login form shows the same page text (the username is echoed into the form, so it is masked).
    let form = |user: &'static str, password: &'static str| {
        let url = stack.url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/login"))
                .header("origin", &url)
                .header("x-forwarded-for", "198.51.100.30")
                .form(&[("username", user), ("password", password), ("next", "/")])
                .send()
                .await
                .expect("form");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default().replace(user, "USER");
            (status, text)
        }
    };
    let wrong_page = form("alice", "not her password").await;
    assert!(wrong_page.1.contains("wrong username or password"), "{}", wrong_page.1);
    for (user, password) in [("nobody", PASSWORD), ("bob", PASSWORD), ("carol", PASSWORD)] {
        assert_eq!(form(user, password).await, wrong_page, "{user}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_holds_per_address_and_the_account_wide_threshold_locks_everyone() {
    let stack =
        Stack::start("web: {loginMaxFailures: 5, loginMaxFailuresPerAccount: 8, loginMaxFailuresPerAddress: 1000}\n")
            .await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    // Five wrong passwords from A lock A out of the bootstrap admin...
    for _ in 0..5 {
        assert_eq!(
            login_from(&stack, Some("198.51.100.1"), ADMIN.0, "guess guess").await.0,
            422
        );
    }
    assert_eq!(
        login_from(&stack, Some("198.51.100.1"), ADMIN.0, ADMIN.1).await.0,
        422,
        "A is locked out of the account"
    );
    // ...but the admin, from B, still gets in.
    assert_eq!(login_from(&stack, Some("198.51.100.2"), ADMIN.0, ADMIN.1).await.0, 200);
    // Failures from many addresses reach the account-wide threshold: then nobody gets in.
    for c in ["198.51.100.3", "198.51.100.4", "198.51.100.5"] {
        assert_eq!(login_from(&stack, Some(c), ADMIN.0, "guess guess").await.0, 422);
    }
    assert_eq!(
        login_from(&stack, Some("198.51.100.2"), ADMIN.0, ADMIN.1).await.0,
        422,
        "the account is locked for everyone"
    );
    let locked = audit(&admin, "login.locked", ADMIN.0).await;
    let mut scopes: Vec<&str> = locked.iter().filter_map(|e| e["details"]["scope"].as_str()).collect();
    scopes.sort();
    assert_eq!(scopes, vec!["account", "address"], "{locked:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_behind_a_trusted_proxy_have_their_own_budget_and_successes_are_free() {
    // The test client connects from 127.0.0.1, a trusted proxy by default.
    let stack = Stack::start("web: {loginMaxFailuresPerAddress: 3}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let _ = stack.user(&admin, "alice", "alice@example.com", false).await;
    // Successful logins do not use the budget.
    for _ in 0..6 {
        assert_eq!(login_from(&stack, Some("198.51.100.7"), "alice", PASSWORD).await.0, 200);
    }
    for i in 0..3 {
        let (status, _) = login_from(&stack, Some("198.51.100.7"), &format!("nobody{i}"), "x").await;
        assert_eq!(status, 422);
    }
    let (status, body) = login_from(&stack, Some("198.51.100.7"), "alice", PASSWORD).await;
    assert_eq!(status, 429, "X is over its budget: {body}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("your address"),
        "{body}"
    );
    // A client-written prefix does not escape the bucket: the proxy's last entry counts.
    let (status, _) = login_from(&stack, Some("203.0.113.1, 198.51.100.7"), "alice", PASSWORD).await;
    assert_eq!(status, 429);
    // Another client behind the same proxy is not affected.
    assert_eq!(login_from(&stack, Some("198.51.100.8"), "alice", PASSWORD).await.0, 200);
    assert_eq!(
        login_from(&stack, Some("203.0.113.1, 198.51.100.8"), "alice", PASSWORD)
            .await
            .0,
        200
    );
    stack.stop().await;
}

/// A login through the API with an `X-Forwarded-For` of any bytes, as a trusted proxy passes it on.
async fn login_raw(stack: &Stack, xff: &[u8], user: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/api/v1/login", stack.url))
        .header(
            "x-forwarded-for",
            reqwest::header::HeaderValue::from_bytes(xff).expect("header value"),
        )
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("login")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn padded_or_non_ascii_forwarded_lists_cannot_lock_out_other_clients() {
    let stack =
        Stack::start("web: {loginMaxFailures: 5, loginMaxFailuresPerAccount: 100, loginMaxFailuresPerAddress: 5}\n")
            .await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    // What the (trusted) ingress passes on when a client sends 40 entries of its own, or bytes that are
    // not ASCII: the client's list, then the address the ingress saw.
    let padded = |client: &str| format!("{}, {client}", vec!["1"; 40].join(",")).into_bytes();
    let non_ascii = |client: &str| [b"\xc3\xbc\xff nonsense, ".as_slice(), client.as_bytes()].concat();
    // Client A sends five wrong passwords for the admin: A is locked out of it and has used up its budget.
    for _ in 0..5 {
        assert_eq!(
            login_raw(&stack, &padded("198.51.100.50"), ADMIN.0, "guess guess").await,
            422
        );
    }
    assert_eq!(
        login_raw(&stack, &padded("198.51.100.50"), ADMIN.0, ADMIN.1).await,
        429,
        "A is over its own budget"
    );
    // Client B, also behind the ingress, is in its own buckets.
    for _ in 0..2 {
        assert_eq!(
            login_raw(&stack, &non_ascii("198.51.100.51"), ADMIN.0, "guess guess").await,
            422
        );
    }
    assert_eq!(
        login_raw(&stack, &non_ascii("198.51.100.51"), ADMIN.0, ADMIN.1).await,
        200,
        "B is not locked out by A"
    );
    // Nor are clients C and D, whose lists are just as long or odd, nor the ingress itself.
    let long33 = format!("{}, 198.51.100.52", vec!["203.0.113.1"; 32].join(", "));
    assert_eq!(login_raw(&stack, long33.as_bytes(), ADMIN.0, ADMIN.1).await, 200, "C");
    assert_eq!(
        login_raw(&stack, &non_ascii("198.51.100.53"), ADMIN.0, ADMIN.1).await,
        200,
        "D"
    );
    assert_eq!(login_from(&stack, None, ADMIN.0, ADMIN.1).await.0, 200, "the ingress");
    // An entry the ingress wrote that is no address is keyed on itself, never on the ingress.
    for _ in 0..5 {
        assert_eq!(
            login_raw(&stack, b"1.2.3.4, garbage", ADMIN.0, "guess guess").await,
            422
        );
    }
    assert_eq!(login_raw(&stack, b"1.2.3.4, garbage", ADMIN.0, ADMIN.1).await, 429);
    assert_eq!(login_from(&stack, None, ADMIN.0, ADMIN.1).await.0, 200, "the ingress");
    let failed = audit(&admin, "login.failed", ADMIN.0).await;
    let mut sources: Vec<&str> = failed.iter().filter_map(|e| e["details"]["source"].as_str()).collect();
    sources.sort();
    sources.dedup();
    assert_eq!(
        sources,
        vec!["198.51.100.50", "198.51.100.51", "xff:garbage"],
        "{failed:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_from_one_address_get_at_most_its_budget_of_checks() {
    let stack = Stack::start("web: {loginMaxFailuresPerAddress: 3}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    // 30 guesses at once, each against another account (unknown names take the same path as wrong
    // passwords: one argon2 check each).
    let mut tasks = vec![];
    for i in 0..30 {
        let url = stack.url.clone();
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/api/v1/login"))
                .header("x-forwarded-for", "198.51.100.60")
                .json(&json!({"username": format!("user{i}"), "password": "wrong password"}))
                .send()
                .await
                .expect("login")
                .status()
                .as_u16()
        }));
    }
    let mut statuses = vec![];
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 422).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, limited), (3, 27), "{statuses:?}");
    let v = admin.json("/api/v1/audit?kind=login.failed&limit=1000").await;
    let audited = v["events"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["details"]["source"] == "198.51.100.60").count())
        .unwrap_or_default();
    assert_eq!(audited, 3, "passwords checked for the address");
    assert_eq!(
        login_from(&stack, Some("198.51.100.61"), ADMIN.0, ADMIN.1).await.0,
        200,
        "other addresses keep their budget"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn account_wide_failures_are_forgotten_after_the_lockout_window() {
    // Three failures from all addresses together lock the account, counted per 2 s window.
    let stack = Stack::start(
        "web: {loginMaxFailures: 100, loginMaxFailuresPerAccount: 3, loginLockoutSeconds: 2, \
         loginMaxFailuresPerAddress: 1000}\n",
    )
    .await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let _ = stack.user(&admin, "alice", "alice@example.com", false).await;
    // A wrong password every 1.1 s or more (from changing addresses), while alice logs in between: no
    // two windows' worth of failures add up, so the account never locks.
    for i in 0..6 {
        let (status, _) = login_from(&stack, Some(&format!("198.51.100.{}", 70 + i)), "alice", "typo typo").await;
        assert_eq!(status, 422);
        let (status, body) = login_from(&stack, Some("198.51.100.69"), "alice", PASSWORD).await;
        assert_eq!(status, 200, "login {i} of alice: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_install_left_without_an_enabled_admin_gets_the_bootstrap_admin_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        // The only admin account is disabled (as migration 2 did to a duplicate email's admin).
        let store = janus_store::Store::connect(&url, None).await.expect("store");
        store
            .create_user(&janus_store::NewUser {
                username: "root".into(),
                email: "root@example.com".into(),
                is_admin: true,
                password_hash: "$argon2id$unused".into(),
            })
            .await
            .expect("create");
        store
            .update_user(
                "root",
                &janus_store::UserChange {
                    disabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .expect("disable");
    }
    let stack = Stack::start_full(|_| String::new(), None, Some(url)).await;
    let (status, body) = login_from(&stack, None, ADMIN.0, ADMIN.1).await;
    assert_eq!(status, 200, "the bootstrap admin was created: {body}");
    assert_eq!(body["identity"]["isAdmin"], true, "{body}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untrusted_peer_cannot_spoof_x_forwarded_for() {
    // 127.0.0.1 is not a trusted proxy here, so its X-Forwarded-For means nothing.
    let stack = Stack::start("web: {loginMaxFailuresPerAddress: 3, trustedProxies: [10.255.0.0/16]}\n").await;
    for i in 0..3 {
        let (status, _) = login_from(&stack, Some(&format!("198.51.100.{i}")), "nobody", "x").await;
        assert_eq!(status, 422);
    }
    for xff in [Some("198.51.100.99"), Some("10.255.0.1"), None] {
        let (status, _) = login_from(&stack, xff, ADMIN.0, ADMIN.1).await;
        assert_eq!(status, 429, "{xff:?}: still the peer's bucket");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emails_are_unique_case_insensitively() {
    let stack = Stack::start("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let _ = stack.user(&admin, "alice", "alice@example.com", false).await;
    let r = admin
        .post(
            "/api/v1/users",
            json!({"username": "alice2", "email": "Alice@Example.COM", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("email"), "{e}");
    // The bootstrap admin's email too, and through the admin page.
    let r = admin
        .form(
            "/admin/users",
            &[
                ("username", "mallory"),
                ("email", "ADMIN@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), 409);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("another account already uses this email")
    );
    let users = admin.json("/api/v1/users").await;
    assert_eq!(users.to_string().matches("@example.com").count(), 2, "{users}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_cannot_pass_the_open_request_limit() {
    let stack = Stack::start("web: {maxOpenRequestsPerUser: 3, maxRequestsPerHour: 100}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let mut tasks = vec![];
    for i in 0..12 {
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            let r = alice
                .post(
                    "/api/v1/requests",
                    json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": format!("r{i}")}),
                )
                .await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => created += 1,
            429 => assert!(
                body["error"].as_str().unwrap_or_default().contains("open requests"),
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 3, "exactly maxOpenRequestsPerUser were created");
    // The watch cache catches up; then it holds exactly those three.
    let mut total = 0;
    for _ in 0..100 {
        total = alice.json("/api/v1/requests").await["total"]
            .as_u64()
            .unwrap_or_default();
        if total >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let again = alice.json("/api/v1/requests").await["total"]
        .as_u64()
        .unwrap_or_default();
    assert_eq!((total, again), (3, 3));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgresql_check_at_most_the_limit_together() {
    if std::env::var("JANUS_TEST_POSTGRES_URL").is_err() {
        eprintln!("JANUS_TEST_POSTGRES_URL not set: the two-replica variant is skipped");
        return;
    }
    let pg = Pg::start();
    let cfg = "web: {loginMaxFailures: 5, loginMaxFailuresPerAddress: 1000}\n";
    let one = Stack::start_full(|_| cfg.to_string(), None, Some(pg.url.clone())).await;
    let two = Stack::start_full(|_| cfg.to_string(), None, Some(pg.url.clone())).await;
    let admin = one.login(ADMIN.0, ADMIN.1).await;
    let _ = one.user(&admin, "alice", "alice@example.com", false).await;
    let mut tasks = vec![];
    for i in 0..40 {
        let url = if i % 2 == 0 { one.url.clone() } else { two.url.clone() };
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/api/v1/login"))
                .header("x-forwarded-for", "198.51.100.40")
                .json(&json!({"username": "alice", "password": format!("wrong password {i}")}))
                .send()
                .await
                .expect("login")
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 422);
    }
    let failed = audit(&admin, "login.failed", "alice").await;
    let checked = reasons(&failed).iter().filter(|r| *r == "wrong password").count();
    assert_eq!(failed.len(), 40);
    assert_eq!(checked, 5, "both replicas together checked at most the limit");
    for stack in [&one, &two] {
        assert_eq!(
            login_from(stack, Some("198.51.100.40"), "alice", PASSWORD).await.0,
            422,
            "locked on every replica"
        );
        assert_eq!(login_from(stack, Some("198.51.100.41"), "alice", PASSWORD).await.0, 200);
    }
    one.stop().await;
    two.stop().await;
}
