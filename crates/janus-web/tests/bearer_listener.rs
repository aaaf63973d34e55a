#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The bearer-only listener (`web.bearerListen`) in proxy mode, against the real stack (controller,
//! web, kubesim by default): personal API tokens work there on the JSON API (reads and writes, no CSRF)
//! and on the terminal socket; proxy identity headers from a trusted peer (127.0.0.1, the sidecar's
//! address) are ignored there (401 without a token, and no identity conflict beside one); cookies are
//! ignored; pages, assets, health and metrics are 404; the security headers are the main address's.

mod common;

use std::time::Duration;

use common::Stack;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

/// A free local port for the bearer listener (the web binds it itself, from its configuration).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates a personal API token on the main address as `email` (asserted by proxy headers from
/// 127.0.0.1, as the oauth2-proxy sidecar does).
async fn token_as(stack: &Stack, email: &str, scopes: &[&str]) -> String {
    let http = reqwest::Client::new();
    let session: Value = http
        .get(format!("{}/api/v1/session", stack.url))
        .header("x-forwarded-email", email)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = session["csrfToken"].as_str().expect("csrf").to_string();
    let r = http
        .post(format!("{}/api/v1/tokens", stack.url))
        .header("x-forwarded-email", email)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "cli", "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bearer_listener_takes_api_tokens_only() {
    let port = free_port();
    let stack = Stack::portable(&format!(
        "adminEmails: [boss@example.com]\nweb: {{authMode: proxy, trustedProxies: [127.0.0.1/32], \
         bearerListen: \"127.0.0.1:{port}\"}}\n"
    ))
    .await;
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let alice = token_as(&stack, "alice@example.com", &["read", "request"]).await;
    let boss = token_as(&stack, "boss@example.com", &["read", "approve"]).await;

    // A token: the person who created it, whatever proxy headers or cookies ride along.
    let r = http
        .get(format!("{api}/api/v1/session"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for h in [
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
        "x-request-id",
    ] {
        assert!(r.headers().contains_key(h), "missing {h}");
    }
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["identity"]["email"], "alice@example.com", "{v}");
    let r = http
        .get(format!("{api}/api/v1/session"))
        .bearer_auth(&alice)
        .header("x-forwarded-email", "bob@example.com")
        .header("cookie", "janus_session=whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "proxy headers and cookies are ignored here, not a conflict"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["identity"]["email"],
        "alice@example.com"
    );
    // The same request on the main address is a conflict: the sidecar's headers count there.
    let r = http
        .get(format!("{}/api/v1/session", stack.url))
        .bearer_auth(&alice)
        .header("x-forwarded-email", "bob@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Without a token: proxy headers from 127.0.0.1 (trusted on the main address) and cookies are nothing.
    let r = http
        .get(format!("{api}/api/v1/session"))
        .header("x-forwarded-email", "alice@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "proxy headers are never trusted on the bearer listener"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unauthenticated");
    let r = http
        .post(format!("{api}/api/v1/requests"))
        .header("x-forwarded-email", "alice@example.com")
        .header("cookie", "janus_session=whatever")
        .json(&json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{api}/api/v1/requests"))
        .bearer_auth("not-a-janus-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "an oauth2-proxy JWT or any other bearer is no credential here"
    );

    // Pages, assets, health and metrics are not served here, with a token or without.
    for path in [
        "/",
        "/login",
        "/requests",
        "/tokens",
        "/admin",
        "/assets/app.js",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1x",
    ] {
        for with_token in [false, true] {
            let mut rb = http.get(format!("{api}{path}"));
            if with_token {
                rb = rb.bearer_auth(&alice);
            }
            assert_eq!(rb.send().await.unwrap().status(), 404, "{path} (token: {with_token})");
        }
    }

    // Writes need no CSRF token: create as alice, approve as boss, both by token on this address.
    let r = http
        .post(format!("{api}/api/v1/requests"))
        .bearer_auth(&alice)
        .json(&json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "via the bearer listener"}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    let name = body["name"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{api}/api/v1/requests/{name}/approve"))
        .bearer_auth(&boss)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut active = false;
    for _ in 0..300 {
        let v: Value = http
            .get(format!("{api}/api/v1/requests/{name}"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["phase"] == "Active" {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(active, "the request never became Active");

    // The terminal socket: a token opens it (no csrf, no Origin); proxy headers alone do not.
    let ws_req = |auth: Option<&str>| {
        let url = format!("ws://127.0.0.1:{port}/ws/terminal/{name}?namespace=team-a&pod=app&cols=80&rows=24");
        let mut req = url.into_client_request().unwrap();
        match auth {
            Some(t) => req
                .headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap()),
            None => req
                .headers_mut()
                .insert("x-forwarded-email", "alice@example.com".parse().unwrap()),
        };
        req
    };
    match tokio_tungstenite::connect_async(ws_req(None)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 401),
        other => panic!("proxy headers opened a terminal: {:?}", other.map(|_| ())),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_req(Some(&alice)))
        .await
        .expect("a token opens the terminal on the bearer listener");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "connected", "{v}");
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no connected message: {other:?}"),
        }
    }
    drop(ws);
    stack.stop().await;
    // The listener stops with the web.
    assert!(
        reqwest::Client::new()
            .get(format!("{api}/api/v1/session"))
            .bearer_auth(&alice)
            .send()
            .await
            .is_err(),
        "the bearer listener outlived the web"
    );
}
