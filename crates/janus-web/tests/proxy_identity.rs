#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Proxy mode's identity contract, through a stand-in for the chart's oauth2-proxy sidecar
//! (`support/oauth2_proxy.rs`) in front of the real stack (kubesim, controller, web): identity comes only
//! from the headers the proxy injects and strips; a forged identity header of any other family, an
//! underscore twin, or a repeated identity header is refused with 400 and audited; nothing a client
//! sends changes who they are or whether they are an admin. Includes the authorization matrix for proxy
//! mode: every route as anonymous, owner, other engineer and admin, and the owner again with each
//! forged, duplicated or conflicting header.

mod common;
#[path = "support/oauth2_proxy.rs"]
mod oauth2_proxy;

use std::net::IpAddr;
use std::time::Duration;

use common::Stack;
use oauth2_proxy::{LOGIN, StandIn, User};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

const CONFIG: &str = "web: {authMode: proxy, trustedProxies: [127.0.0.1/32]}\nadminGroups: [platform-admins]\n";

const USERS: &[(&str, User)] = &[
    (
        "alice",
        User {
            email: "alice@example.com",
            user: "alice",
            groups: &["dev"],
            preferred_username: Some("alice"),
        },
    ),
    (
        "bob",
        User {
            email: "bob@example.com",
            user: "bob",
            groups: &["dev"],
            preferred_username: None,
        },
    ),
    // Admin by group (adminGroups).
    (
        "root",
        User {
            email: "root@example.com",
            user: "root",
            groups: &["platform-admins"],
            preferred_username: Some("root"),
        },
    ),
    // Admin by email (adminEmails, set by the test harness).
    (
        "admin",
        User {
            email: "admin@example.com",
            user: "admin",
            groups: &[],
            preferred_username: None,
        },
    ),
];

/// A client of the stand-in, connecting from 127.0.0.2 so that the web would never trust it directly.
#[derive(Clone)]
struct Via {
    http: reqwest::Client,
    base: String,
    login: Option<&'static str>,
    csrf: String,
}

fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client")
}

impl Via {
    async fn signed_in(proxy: &StandIn, login: &'static str) -> Via {
        let mut v = Via {
            http: client_from([127, 0, 0, 2]),
            base: proxy.url.clone(),
            login: Some(login),
            csrf: String::new(),
        };
        let r = v.send(Method::GET, "/api/v1/session", &[], None).await;
        assert_eq!(r.status(), 200, "session of {login}");
        let body: Value = r.json().await.expect("json");
        v.csrf = body["csrfToken"].as_str().expect("csrf").to_string();
        v
    }

    fn build(&self, method: Method, path: &str, extra: &[(&str, &str)]) -> RequestBuilder {
        let mut b = self.http.request(method, format!("{}{path}", self.base));
        if let Some(l) = self.login {
            b = b.header(LOGIN, l);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b
    }

    async fn send(&self, method: Method, path: &str, extra: &[(&str, &str)], body: Option<Value>) -> Response {
        let mut b = self.build(method.clone(), path, extra);
        if method != Method::GET {
            b = b.header("x-csrf-token", &self.csrf);
        }
        if let Some(body) = body {
            b = b.json(&body);
        }
        b.send().await.expect("request")
    }

    async fn get(&self, path: &str, extra: &[(&str, &str)]) -> u16 {
        self.send(Method::GET, path, extra, None).await.status().as_u16()
    }

    async fn post(&self, path: &str, extra: &[(&str, &str)], body: Value) -> u16 {
        self.send(Method::POST, path, extra, Some(body)).await.status().as_u16()
    }

    async fn whoami(&self, extra: &[(&str, &str)]) -> Value {
        let r = self.send(Method::GET, "/api/v1/session", extra, None).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.expect("json")["identity"].clone()
    }
}

/// A label, the headers added, and whether the web must refuse the request as conflicting.
type Forgery = (&'static str, &'static [(&'static str, &'static str)], bool);

/// Forged headers an engineer adds on the way through the proxy, and whether the web must refuse the
/// request as conflicting (else the proxy stripped them and the request is the engineer's own).
const FORGERIES: &[Forgery] = &[
    (
        "X-Auth-Request-Email of an admin",
        &[("x-auth-request-email", "admin@example.com")],
        true,
    ),
    (
        "X-Auth-Request-Groups with the admin group",
        &[("x-auth-request-groups", "platform-admins")],
        true,
    ),
    ("X-Auth-Request-User", &[("x-auth-request-user", "admin")], true),
    (
        "X-Auth-Request-Preferred-Username",
        &[("x-auth-request-preferred-username", "root")],
        true,
    ),
    ("Remote-User (Authelia)", &[("remote-user", "admin")], true),
    (
        "Remote-Email (Authelia)",
        &[("remote-email", "admin@example.com")],
        true,
    ),
    (
        "Remote-Groups (Authelia)",
        &[("remote-groups", "platform-admins")],
        true,
    ),
    (
        "X-Pomerium-Claim-Email",
        &[("x-pomerium-claim-email", "admin@example.com")],
        true,
    ),
    (
        "X_Forwarded_Email (underscore twin)",
        &[("x_forwarded_email", "admin@example.com")],
        true,
    ),
    (
        "X_Forwarded_Groups (underscore twin)",
        &[("x_forwarded_groups", "platform-admins")],
        true,
    ),
    (
        "X-Forwarded-Email of an admin (stripped by the proxy)",
        &[("x-forwarded-email", "admin@example.com")],
        false,
    ),
    (
        "X-Forwarded-Groups with the admin group (stripped)",
        &[("x-forwarded-groups", "platform-admins")],
        false,
    ),
    (
        "X-Forwarded-User and -Preferred-Username (stripped)",
        &[
            ("x-forwarded-user", "admin"),
            ("x-forwarded-preferred-username", "admin"),
        ],
        false,
    ),
    (
        "duplicated X-Forwarded-Email (stripped, every copy)",
        &[
            ("x-forwarded-email", "admin@example.com"),
            ("x-forwarded-email", "root@example.com"),
        ],
        false,
    ),
    (
        "X-Auth-Request-Email naming the caller themself",
        &[("x-auth-request-email", "alice@example.com")],
        false,
    ),
    (
        "X-User / X-Email / X-WebAuth-User (generic names a forward proxy may inject: not identity headers)",
        &[
            ("x-user", "CORP\\someone"),
            ("x-email", "someone@corp.example"),
            ("x-webauth-user", "admin"),
        ],
        false,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_identity_headers_never_change_who_the_user_is() {
    let stack = Stack::start(CONFIG).await;
    let proxy = oauth2_proxy::start(&stack.url, USERS).await;
    let alice = Via::signed_in(&proxy, "alice").await;

    // The proxy's own headers make the identity.
    let me = alice.whoami(&[]).await;
    assert_eq!(
        (me["email"].as_str(), me["isAdmin"].as_bool(), me["auth"].as_str()),
        (Some("alice@example.com"), Some(false), Some("proxy"))
    );
    let root = Via::signed_in(&proxy, "root").await;
    assert_eq!(root.whoami(&[]).await["isAdmin"], true, "admin by group");
    let admin = Via::signed_in(&proxy, "admin").await;
    assert_eq!(admin.whoami(&[]).await["isAdmin"], true, "admin by email");

    // Nothing unauthenticated gets through the proxy, whatever it claims.
    let anon = Via {
        login: None,
        ..alice.clone()
    };
    let r = anon
        .send(
            Method::GET,
            "/api/v1/session",
            &[("x-auth-request-email", "admin@example.com")],
            None,
        )
        .await;
    assert_eq!(r.status(), 401);

    for (label, extra, conflict) in FORGERIES {
        let r = alice.send(Method::GET, "/api/v1/session", extra, None).await;
        let status = r.status().as_u16();
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        if status == 200 {
            // Whatever else happens, a forged header never changes who the user is.
            let me = &v["identity"];
            assert_eq!(
                me["email"], "alice@example.com",
                "{label}: the forged header changed who the user is"
            );
            assert_eq!(me["isAdmin"], false, "{label}: the forged header made alice an admin");
            assert_eq!(
                me["groups"],
                json!(["dev"]),
                "{label}: the forged header changed her groups"
            );
        }
        if *conflict {
            assert_eq!(status, 400, "{label}: a conflicting identity header must be refused");
            assert!(ct.starts_with("application/json"), "{label}: {ct}");
            assert_eq!(v["code"], "identity_conflict", "{label}: {text}");
            // The refusal names no identity: neither the forged one nor the real one.
            for leak in ["admin", "root", "platform-admins", "alice"] {
                assert!(!text.contains(leak), "{label}: {text}");
            }
        } else {
            assert_eq!(status, 200, "{label}");
        }
    }

    // Pages get a readable page, not JSON.
    let r = alice
        .send(
            Method::GET,
            "/requests",
            &[("x-auth-request-email", "admin@example.com")],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("conflicting identity headers") && !page.contains("admin@example.com"),
        "{page}"
    );

    // Another engineer cannot borrow alice's identity either (that would reach her requests).
    let bob = Via::signed_in(&proxy, "bob").await;
    let r = bob
        .send(
            Method::GET,
            "/api/v1/session",
            &[("x-auth-request-email", "alice@example.com")],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);

    // A hop that does not strip (here: a trusted peer talking to the web directly) sending the
    // configured header twice is refused, even when both copies agree.
    let direct = client_from([127, 0, 0, 1]);
    for values in [
        ["alice@example.com", "admin@example.com"],
        ["alice@example.com", "alice@example.com"],
    ] {
        let r = direct
            .get(format!("{}/api/v1/session", stack.url))
            .header("x-forwarded-email", values[0])
            .header("x-forwarded-email", values[1])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{values:?}");
    }
    let r = direct
        .get(format!("{}/api/v1/session", stack.url))
        .header("x-forwarded-email", "alice@example.com, admin@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "two emails in one field");
    // From an untrusted address the configured headers are ignored altogether.
    let r = client_from([127, 0, 0, 2])
        .get(format!("{}/api/v1/session", stack.url))
        .header("x-forwarded-email", "admin@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Refusals are audited as login.failed with the proxy's identity as actor and the headers: the
    // first of each client address and identity in full (here: the forged X-Auth-Request-Email of an
    // admin), the others counted (at the end of the interval, a minute by default).
    let mut found = Value::Null;
    for _ in 0..50 {
        let r = admin
            .send(
                Method::GET,
                "/api/v1/audit?kind=login.failed&actor=alice@example.com",
                &[],
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let events = v["events"].as_array().cloned().unwrap_or_default();
        if !events.is_empty() {
            found = Value::Array(events);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = found.as_array().expect("login.failed events for alice");
    let forged_admin = events
        .iter()
        .find(|e| {
            e["details"]["claimed"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|x| x["header"] == "x-auth-request-email" && x["value"] == "admin@example.com")
            })
        })
        .expect("the forged X-Auth-Request-Email is recorded");
    assert_eq!(
        events.len(),
        1,
        "one event per address and identity per interval: {events:?}"
    );
    assert_eq!(forged_admin["details"]["method"], "proxy");
    assert_eq!(forged_admin["details"]["reason"], "conflicting identity headers");
    assert_eq!(forged_admin["details"]["peer"], "127.0.0.1");
    assert_eq!(
        forged_admin["details"]["headers"],
        json!([{"header": "x-auth-request-email", "rule": "differs"}])
    );
    let r = admin
        .send(
            Method::GET,
            "/api/v1/audit?kind=login.failed&actor=anonymous",
            &[],
            None,
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert!(
        v["events"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["details"]["headers"] == json!([{"header": "x-forwarded-email", "rule": "repeated"}]))),
        "the duplicated header without a single identity is recorded as anonymous: {v}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_mode_authorization_matrix_with_forged_duplicated_and_conflicting_headers() {
    let stack = Stack::start(CONFIG).await;
    let proxy = oauth2_proxy::start(&stack.url, USERS).await;
    let alice = Via::signed_in(&proxy, "alice").await;
    let bob = Via::signed_in(&proxy, "bob").await;
    let admin = Via::signed_in(&proxy, "root").await;
    // Anonymous: a trusted peer that asserts nobody (the proxy never forwards such a request).
    let anon = Via {
        http: client_from([127, 0, 0, 1]),
        base: stack.url.clone(),
        login: None,
        csrf: String::new(),
    };

    let create = |v: &Via, ns: &'static str| {
        let v = v.clone();
        async move {
            let r = v
                .send(
                    Method::POST,
                    "/api/v1/requests",
                    &[],
                    Some(json!({"cluster": "central", "namespaces": [ns], "ttlSeconds": 600, "reason": "debug"})),
                )
                .await;
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 201, "create: {body}");
            body["name"].as_str().unwrap().to_string()
        }
    };
    let mine = create(&alice, "team-a").await;
    let own = create(&admin, "team-b").await;
    let r = format!("/api/v1/requests/{mine}");

    // Reading: [anonymous, owner, other engineer, admin], as in the local-mode matrix (authz.rs).
    let reads: Vec<(String, [u16; 4])> = vec![
        ("/api/v1/session".into(), [401, 200, 200, 200]),
        ("/api/v1/requests".into(), [401, 200, 200, 200]),
        ("/api/v1/requests?scope=all".into(), [401, 403, 403, 200]),
        (r.clone(), [401, 200, 404, 200]),
        (format!("{r}/timeline"), [401, 200, 404, 200]),
        (format!("{r}/sessions"), [401, 200, 404, 200]),
        (format!("{r}/pods?namespace=team-a"), [401, 409, 404, 403]),
        ("/api/v1/clusters".into(), [401, 200, 200, 200]),
        ("/api/v1/clusters/central/namespaces".into(), [401, 200, 200, 200]),
        ("/api/v1/audit".into(), [401, 403, 403, 200]),
        ("/api/v1/audit/export?format=csv".into(), [401, 403, 403, 200]),
        ("/api/v1/users".into(), [401, 403, 403, 200]),
        ("/api/v1/recordings/none".into(), [401, 403, 403, 404]),
        ("/api/v1/commands?q=ls".into(), [401, 403, 403, 200]),
        ("/api/v1/quick-commands?cluster=central".into(), [401, 200, 200, 200]),
        ("/requests".into(), [303, 200, 200, 200]),
        ("/requests/new".into(), [303, 200, 200, 200]),
        (format!("/requests/{mine}"), [303, 200, 404, 200]),
        ("/admin".into(), [303, 403, 403, 200]),
        ("/audit".into(), [303, 403, 403, 200]),
        ("/admin/users".into(), [303, 403, 403, 200]),
        ("/clusters".into(), [303, 200, 200, 200]),
        (format!("/terminal/{mine}"), [303, 409, 404, 403]),
        ("/recordings/x".into(), [303, 403, 403, 200]),
    ];
    for (path, want) in &reads {
        let got = [
            anon.get(path, &[]).await,
            alice.get(path, &[]).await,
            bob.get(path, &[]).await,
            admin.get(path, &[]).await,
        ];
        assert_eq!(&got, want, "GET {path} as [anonymous, owner, other, admin]");
        // The owner with every forgery: refused as a conflict, or exactly what the owner gets.
        for (label, extra, conflict) in FORGERIES {
            let expect = if *conflict { 400 } else { want[1] };
            assert_eq!(alice.get(path, extra).await, expect, "GET {path} as alice with {label}");
        }
        // Another engineer forging the owner, and anonymous callers forging an admin, gain nothing.
        assert_eq!(
            bob.get(path, &[("x-auth-request-email", "alice@example.com")]).await,
            400,
            "GET {path} as bob claiming to be alice"
        );
        assert_eq!(
            bob.get(path, &[("x-forwarded-email", "alice@example.com")]).await,
            want[2],
            "GET {path} as bob with a stripped X-Forwarded-Email of alice"
        );
        let direct_forged = [
            (vec![("x-auth-request-email", "admin@example.com")], 400),
            (vec![("x-auth-request-groups", "platform-admins")], 400),
            (vec![("remote-user", "admin")], 400),
        ];
        for (extra, expect) in &direct_forged {
            assert_eq!(
                anon.get(path, extra).await,
                *expect,
                "GET {path} anonymous with {extra:?}"
            );
        }
        let untrusted = Via {
            http: client_from([127, 0, 0, 2]),
            ..anon.clone()
        };
        assert_eq!(
            untrusted.get(path, &[("x-forwarded-email", "admin@example.com")]).await,
            want[0],
            "GET {path} from an untrusted address claiming to be an admin"
        );
    }
    // The terminal socket refuses conflicts before anything else.
    assert_eq!(
        alice
            .get(
                &format!("/ws/terminal/{mine}"),
                &[("x-auth-request-email", "admin@example.com")]
            )
            .await,
        400
    );
    // No identity, no route: health and assets need none, and forged headers there change nothing.
    for p in ["/healthz", "/readyz", "/assets/app.js"] {
        assert_eq!(
            anon.get(p, &[("x-auth-request-email", "admin@example.com")]).await,
            200,
            "{p}"
        );
    }
    assert_eq!(
        anon.get("/api/v1/openapi.yaml", &[("x-auth-request-email", "admin@example.com")])
            .await,
        400,
        "behind the identity middleware"
    );

    // Decisions: alice may not approve her own request, whichever admin she claims to be; nothing changes.
    let approve = format!("{r}/approve");
    for (label, extra, conflict) in FORGERIES {
        let got = alice.post(&approve, extra, json!({"ttlSeconds": 600})).await;
        assert_eq!(got, if *conflict { 400 } else { 403 }, "approve as alice with {label}");
    }
    assert_eq!(alice.post(&approve, &[], json!({})).await, 403);
    let phase = alice
        .send(Method::GET, &r, &[], None)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(phase["phase"], "Pending", "no forged approval took effect");
    // Bob cannot withdraw alice's request by claiming to be her.
    let withdraw = format!("{r}/withdraw");
    assert_eq!(
        bob.post(&withdraw, &[("x-auth-request-email", "alice@example.com")], json!({}))
            .await,
        400
    );
    assert_eq!(
        bob.post(&withdraw, &[("x-forwarded-email", "alice@example.com")], json!({}))
            .await,
        404
    );
    // User management stays with admins.
    let create_user = json!({"username": "x", "email": "x@example.com", "password": "long enough password"});
    for (label, extra, conflict) in FORGERIES {
        let got = alice.post("/api/v1/users", extra, create_user.clone()).await;
        assert_eq!(
            got,
            if *conflict { 400 } else { 403 },
            "create user as alice with {label}"
        );
    }
    // The admin (by group) cannot approve their own request either; a real admin decision works.
    assert_eq!(
        admin
            .post(&format!("/api/v1/requests/{own}/approve"), &[], json!({}))
            .await,
        403
    );
    assert_eq!(admin.post(&approve, &[], json!({"ttlSeconds": 600})).await, 200);
    // The admin's own request with a forged, conflicting header is refused too (admins are not exempt).
    assert_eq!(
        admin
            .post(
                &format!("/api/v1/requests/{own}/withdraw"),
                &[("remote-user", "alice")],
                json!({})
            )
            .await,
        400
    );
    stack.stop().await;
}

/// The `login.failed` events of `actor`, once the audit writer has had time to store them.
async fn refusal_events(admin: &Via, actor: &str, want: usize) -> Vec<Value> {
    let mut events = Vec::new();
    for _ in 0..100 {
        let r = admin
            .send(
                Method::GET,
                &format!("/api/v1/audit?kind=login.failed&actor={actor}"),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        events = v["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_refused_requests_is_audited_once_per_interval_with_a_count() {
    let stack = Stack::start(
        "web: {authMode: proxy, trustedProxies: [127.0.0.1/32], identityConflictAuditIntervalSeconds: 3}\n\
         adminGroups: [platform-admins]\n",
    )
    .await;
    let proxy = oauth2_proxy::start(&stack.url, USERS).await;
    let alice = Via::signed_in(&proxy, "alice").await;
    let admin = Via::signed_in(&proxy, "root").await;
    // A hundred refusals, each with many long forged values.
    let long = format!("admin@example.com{}", "x".repeat(300));
    let mut extra = vec![("x-auth-request-email", long.as_str())];
    extra.extend(std::iter::repeat_n(("remote-user", long.as_str()), 30));
    let started = std::time::Instant::now();
    for i in 0..100 {
        assert_eq!(alice.get("/api/v1/session", &extra).await, 400, "request {i}");
    }
    let flood = started.elapsed();
    // While the interval runs: the first refusal only, with short values.
    let events = refusal_events(&admin, "alice@example.com", 1).await;
    if flood < Duration::from_secs(2) {
        assert_eq!(
            events.len(),
            1,
            "one audit event for a hundred refusals, not {}",
            events.len()
        );
    }
    let first = events.last().expect("the first refusal is audited");
    let claimed = first["details"]["claimed"].as_array().expect("claimed values");
    assert!(claimed.len() <= 4, "{claimed:?}");
    assert!(
        claimed
            .iter()
            .all(|c| c["value"].as_str().is_some_and(|v| v.len() <= 64)),
        "{claimed:?}"
    );
    // At the interval's end, one more event counts the others.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let events = refusal_events(&admin, "alice@example.com", 2).await;
    assert_eq!(
        events.len(),
        2,
        "the first refusal and the count: {}",
        Value::Array(events.clone())
    );
    let counted = events
        .iter()
        .find(|e| e["details"]["suppressed"].is_u64())
        .expect("an event with the count");
    assert_eq!(counted["details"]["suppressed"], 99, "{counted}");
    assert_eq!(counted["details"]["peer"], "127.0.0.1");
    assert_eq!(counted["details"]["reason"], "conflicting identity headers");
    let headers = counted["details"]["headers"].as_array().expect("header names");
    assert!(
        headers.contains(&json!("x-auth-request-email")) && headers.contains(&json!("remote-user")),
        "{headers:?}"
    );
    // Nothing more afterwards, and another identity is audited on its own.
    let bob = Via::signed_in(&proxy, "bob").await;
    assert_eq!(bob.get("/api/v1/session", &extra).await, 400);
    assert_eq!(refusal_events(&admin, "bob@example.com", 1).await.len(), 1);
    assert_eq!(refusal_events(&admin, "alice@example.com", 0).await.len(), 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_mode_reads_no_identity_headers() {
    let stack = Stack::start("").await;
    let direct = client_from([127, 0, 0, 1]);
    for (h, v) in [
        ("x-forwarded-email", "admin@example.com"),
        ("x-auth-request-email", "admin@example.com"),
        ("remote-user", "admin"),
    ] {
        let r = direct
            .get(format!("{}/api/v1/session", stack.url))
            .header(h, v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{h} in local mode");
    }
    stack.stop().await;
}
