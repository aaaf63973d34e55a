#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Native OIDC login end to end against a real OpenID Provider (npm `oidc-provider`, started by
//! `tests/oidc/provider.mjs` and installed into `.tools/node` by `scripts/install-test-tools.sh`): the
//! browser-like flow with PKCE, admin by group, a refused unverified email, a refused domain, a tampered
//! state, a missing state cookie, and logout; and the CLI's sign-in through the device flow
//! (`/api/v1/cli/device`), with the person's side played over plain HTTP at the provider's own pages.

mod common;
#[path = "support/oidc_provider.rs"]
mod oidc_provider;

use std::time::{Duration, Instant};

use oidc_provider::{
    CLIENT_ID, CLIENT_SECRET, approve_device, browser, free_port, location, prerequisites, stack_with_provider,
    start_provider, start_provider_env,
};
use reqwest::{StatusCode, Url, header};
use serde_json::Value;

/// Drives a browser from `GET /login?next=` through the provider (logging in `account`, granting
/// consent) up to the redirect back to the web UI's callback, whose URL is returned unvisited.
async fn to_callback(http: &reqwest::Client, web: &str, issuer: &str, account: &str) -> Url {
    let mut url = Url::parse(&format!("{web}/login?next=/requests%3Fmine%3D1")).expect("url");
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(url.to_string());
        let r = http.get(url.clone()).send().await.expect("GET");
        let status = r.status();
        assert!(
            status.is_redirection(),
            "expected a redirect from {url}, got {status}: {}\nvisited: {seen:#?}",
            r.text().await.unwrap_or_default()
        );
        if url.path() == "/oidc/login" {
            let set = r
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|c| c.starts_with("janus_oidc="))
                .expect("state cookie")
                .to_string();
            assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Max-Age=600"));
        }
        let mut next = location(&r);
        if next.as_str().starts_with(issuer) && next.path() == "/auth" {
            let q: Vec<(String, String)> = next.query_pairs().into_owned().collect();
            let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
            assert!(get("code_challenge").is_some() && get("nonce").is_some() && get("state").is_some());
            assert_eq!(get("redirect_uri"), Some(format!("{web}/oidc/callback")));
        }
        if next.as_str().starts_with(issuer) && next.path().starts_with("/interaction/") {
            next.query_pairs_mut().append_pair("login", account);
        }
        if next.as_str().starts_with(&format!("{web}/oidc/callback")) {
            return next;
        }
        url = next;
    }
    panic!("no callback after 20 redirects: {seen:#?}");
}

async fn session(http: &reqwest::Client, web: &str) -> (StatusCode, Value) {
    let r = http.get(format!("{web}/api/v1/session")).send().await.expect("session");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A login refused at the callback: 403 and a page saying why.
async fn refused(http: &reqwest::Client, callback: Url, why: &str) {
    let r = http.get(callback).send().await.expect("callback");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let clears = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("janus_oidc=;") && c.contains("Max-Age=0"));
    assert!(clears, "the state cookie is cleared");
    assert!(
        !r.headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap_or("").starts_with("janus_session=")),
        "no session for a refused login"
    );
    let body = r.text().await.expect("body");
    assert!(body.contains(why), "the page says {why:?}: {body}");
    assert!(!body.contains(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_login_end_to_end() {
    if !prerequisites() {
        return;
    }
    let started = Instant::now();
    let (stack, provider) = stack_with_provider(|web| start_provider(web, false)).await;
    let (web, issuer) = (stack.url.clone(), provider.issuer.clone());

    // The verified admin: a session, admin by the platform-admins group, back where they wanted to go.
    let alice = browser();
    let cb = to_callback(&alice, &web, &issuer, "alice").await;
    assert_eq!(
        cb.query_pairs().find(|(k, _)| k == "iss").map(|(_, v)| v.into_owned()),
        Some(issuer.clone())
    );
    let r = alice.get(cb.clone()).send().await.expect("callback");
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap_or_default()
    );
    assert_eq!(location(&r).as_str(), format!("{web}/requests?mine=1"));
    let cookies: Vec<String> = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("janus_session=") && c.contains("HttpOnly"))
    );
    let (status, who) = session(&alice, &web).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(who["identity"]["email"], "alice@example.com");
    assert_eq!(who["identity"]["name"], "Alice Admin");
    assert_eq!(who["identity"]["isAdmin"], true);
    assert_eq!(who["identity"]["auth"], "oidc");
    assert!(
        who["identity"]["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "platform-admins"))
    );
    // The code was used once: replaying the callback fails (its state cookie is gone, too).
    let replay = alice.get(cb).send().await.expect("replay");
    assert_eq!(replay.status(), StatusCode::FORBIDDEN);

    // A verified engineer of the allowed domain without the admin group.
    let bob = browser();
    let cb = to_callback(&bob, &web, &issuer, "bob").await;
    assert_eq!(
        bob.get(cb).send().await.expect("callback").status(),
        StatusCode::SEE_OTHER
    );
    let (_, who) = session(&bob, &web).await;
    assert_eq!(who["identity"]["email"], "bob@example.com");
    assert_eq!(who["identity"]["isAdmin"], false);

    // Unverified email and a domain outside allowedDomains: refused with the reason.
    let mallory = browser();
    let cb = to_callback(&mallory, &web, &issuer, "mallory").await;
    refused(&mallory, cb, "is not verified").await;
    assert_eq!(session(&mallory, &web).await.0, StatusCode::UNAUTHORIZED);
    let eve = browser();
    let cb = to_callback(&eve, &web, &issuer, "eve").await;
    refused(&eve, cb, "domain elsewhere.test").await;
    assert_eq!(session(&eve, &web).await.0, StatusCode::UNAUTHORIZED);

    // A tampered state, and a callback without the state cookie (another browser): refused.
    let carol = browser();
    let mut cb = to_callback(&carol, &web, &issuer, "bob").await;
    let pairs: Vec<(String, String)> = cb
        .query_pairs()
        .into_owned()
        .map(|(k, v)| if k == "state" { (k, format!("{v}x")) } else { (k, v) })
        .collect();
    cb.query_pairs_mut().clear().extend_pairs(pairs);
    refused(&carol, cb, "state mismatch").await;
    assert_eq!(session(&carol, &web).await.0, StatusCode::UNAUTHORIZED);
    let dave = browser();
    let cb = to_callback(&dave, &web, &issuer, "bob").await;
    refused(&browser(), cb, "start again").await;
    // A provider error is shown, not turned into a session.
    let r = dave
        .get(format!(
            "{web}/oidc/callback?error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E"
        ))
        .send()
        .await
        .expect("error callback");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.expect("body");
    assert!(body.contains("access_denied") && body.contains("&lt;b&gt;no"), "{body}");

    // The audit log has the successes and the refusals with their reasons.
    let (_, who) = session(&alice, &web).await;
    let csrf = who["csrfToken"].as_str().expect("csrf").to_string();
    let audit = alice
        .get(format!("{web}/api/v1/audit?limit=100"))
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("audit body");
    for needle in [
        "login.succeeded",
        "login.failed",
        "email not verified",
        "domain elsewhere.test not allowed",
        "state mismatch",
        "login state cookie missing",
        "mallory@example.com",
        r#""method":"oidc""#,
    ] {
        assert!(audit.contains(needle), "audit has {needle}: {audit}");
    }
    assert!(!audit.contains(CLIENT_SECRET));

    // Logout ends the session and offers the provider's logout instead of signing straight back in.
    let r = alice
        .post(format!("{web}/logout"))
        .header(header::ORIGIN, &web)
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r).path(), "/oidc/logged-out");
    assert_eq!(session(&alice, &web).await.0, StatusCode::UNAUTHORIZED);
    let page = alice
        .get(format!("{web}/oidc/logged-out"))
        .send()
        .await
        .expect("logged out")
        .text()
        .await
        .expect("body");
    assert!(
        page.contains(&format!("{issuer}/session/end?client_id={CLIENT_ID}")),
        "{page}"
    );
    // Bob's session is unaffected.
    assert_eq!(session(&bob, &web).await.0, StatusCode::OK);

    stack.stop().await;
    drop(provider);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// A provider that puts End-User claims only into userinfo (its default for the code flow): the email,
/// its verification and the groups come from there, after the `sub` check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_claims_from_userinfo() {
    if !prerequisites() {
        return;
    }
    let (stack, provider) = stack_with_provider(|web| start_provider(web, true)).await;
    let (web, issuer) = (stack.url.clone(), provider.issuer.clone());
    let alice = browser();
    let cb = to_callback(&alice, &web, &issuer, "alice").await;
    let r = alice.get(cb).send().await.expect("callback");
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let (_, who) = session(&alice, &web).await;
    assert_eq!(who["identity"]["email"], "alice@example.com");
    assert_eq!(who["identity"]["isAdmin"], true);
    let mallory = browser();
    let cb = to_callback(&mallory, &web, &issuer, "mallory").await;
    refused(&mallory, cb, "is not verified").await;
    stack.stop().await;
}

/// An unreachable issuer stops the start with a message naming it.
#[tokio::test]
async fn unreachable_issuer_fails_start() {
    let port = free_port();
    let cfg = janus_api::config::OidcConfig {
        issuer_url: format!("http://127.0.0.1:{port}"),
        client_id: "x".into(),
        ..Default::default()
    };
    let err = match janus_web::auth::oidc::Oidc::discover(&cfg, "http://127.0.0.1:1", Some("secret-value")).await {
        Ok(_) => panic!("discovery of a closed port succeeded"),
        Err(e) => e,
    };
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("failed after"),
        "{err}"
    );
    assert!(!err.contains("secret-value"));
}

/// `POST` JSON without a cookie, as the CLI does.
async fn cli_post(web: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{web}{path}"))
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST /api/v1/cli/device`: the codes.
async fn device_start(web: &str) -> Value {
    let (status, d) = cli_post(web, "/api/v1/cli/device", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    d
}

/// One poll of `POST /api/v1/cli/device/token`.
async fn device_poll(web: &str, d: &Value) -> (StatusCode, Value) {
    cli_post(
        web,
        "/api/v1/cli/device/token",
        serde_json::json!({"deviceCode": d["deviceCode"]}),
    )
    .await
}

/// `janus login --oidc` against the real provider: pending until the person approves, then a CLI
/// session whose identity passed the browser login's checks (admin by group, unverified email and
/// foreign domains refused); a used, unknown or denied code ends the flow; bad input is 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_end_to_end() {
    if !prerequisites() {
        return;
    }
    let (stack, provider) = stack_with_provider(|web| start_provider(web, false)).await;
    let web = stack.url.clone();

    // Only the device flow signs the CLI in here.
    let (status, _) = cli_post(
        &web,
        "/api/v1/cli/login",
        serde_json::json!({"username": "bob", "password": "whatever password"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let d = device_start(&web).await;
    assert!(
        d["verificationUri"]
            .as_str()
            .is_some_and(|u| u.starts_with(&provider.issuer))
    );
    assert!(d["userCode"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(d["expiresIn"].as_u64().is_some_and(|s| s > 0 && s <= 600), "{d}");
    assert!(d["interval"].as_u64().is_some(), "{d}");
    let (status, body) = device_poll(&web, &d).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "authorization_pending");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    approve_device(&d, "bob", false).await;
    let (status, body) = device_poll(&web, &d).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    assert_eq!(
        janus_api::tokens::bearer_kind(&token),
        Some(janus_api::tokens::BearerKind::CliSession)
    );
    assert!(body["expiresAt"].as_str().is_some());
    assert_eq!(body["identity"]["email"], "bob@example.com");
    assert_eq!(body["identity"]["auth"], "oidc");
    assert_eq!(body["identity"]["isAdmin"], false);
    assert!(!body.to_string().contains(CLIENT_SECRET));
    // The code was used: the flow is over.
    let (status, body) = device_poll(&web, &d).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expired_token"))
    );

    // Admin by the configured group, exactly as in the browser.
    let d = device_start(&web).await;
    approve_device(&d, "alice", false).await;
    let (status, body) = device_poll(&web, &d).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["identity"]["isAdmin"], true);

    // Refused like the browser callback refuses them: an unverified email, a foreign domain.
    for (account, why) in [("mallory", "is not verified"), ("eve", "domain elsewhere.test")] {
        let d = device_start(&web).await;
        approve_device(&d, account, false).await;
        let (status, body) = device_poll(&web, &d).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{account}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(why)), "{body}");
        assert!(body.get("token").is_none());
    }

    // The person aborts at the provider: access_denied.
    let d = device_start(&web).await;
    approve_device(&d, "bob", true).await;
    let (status, body) = device_poll(&web, &d).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("access_denied")),
        "{body}"
    );

    // An unknown code ends the flow; missing, empty, oversized codes and garbage are 422.
    let (status, body) = device_poll(&web, &serde_json::json!({"deviceCode": "not-a-device-code"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expired_token"))
    );
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"deviceCode": ""}),
        serde_json::json!({"deviceCode": "x".repeat(2000)}),
        serde_json::json!({"deviceCode": 5}),
        serde_json::json!({"deviceCode": "x", "other": 1}),
    ] {
        let (status, body) = cli_post(&web, "/api/v1/cli/device/token", bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let r = reqwest::Client::new()
        .post(format!("{web}/api/v1/cli/device/token"))
        .header(header::CONTENT_TYPE, "application/json")
        .body("{garbage")
        .send()
        .await
        .expect("garbage");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Audited: login.cli with method device for the two sign-ins, login.failed for the refusals.
    let admin = browser();
    let cb = to_callback(&admin, &web, &provider.issuer, "alice").await;
    assert_eq!(
        admin.get(cb).send().await.expect("callback").status(),
        StatusCode::SEE_OTHER
    );
    let audit = admin
        .get(format!("{web}/api/v1/audit?limit=200"))
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("audit body");
    let audit: Value = serde_json::from_str(&audit).expect("audit json");
    let events = audit["events"].as_array().expect("events");
    let cli: Vec<&Value> = events.iter().filter(|e| e["kind"] == "login.cli").collect();
    assert_eq!(cli.len(), 2, "{cli:?}");
    assert!(cli.iter().all(|e| e["details"]["method"] == "device"));
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "login.failed" && e["details"]["method"] == "device")
        .collect();
    assert!(
        refused.iter().any(|e| e["details"]["reason"] == "email not verified"),
        "{refused:?}"
    );
    assert!(!audit.to_string().contains(&token[10..]) && !audit.to_string().contains(CLIENT_SECRET));
    stack.stop().await;
}

/// A device code the person never approved expires (`expired_token`), and a provider without the
/// device flow gets a clear 501 instead of a failure at the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_codes_expire_and_a_provider_without_the_device_flow_is_named() {
    if !prerequisites() {
        return;
    }
    let (stack, provider) =
        stack_with_provider(|web| start_provider_env(web, false, &[("OIDC_DEVICE_TTL", "2")])).await;
    let d = device_start(&stack.url).await;
    assert_eq!(device_poll(&stack.url, &d).await.1["error"], "authorization_pending");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = device_poll(&stack.url, &d).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expired_token")),
        "{body}"
    );
    stack.stop().await;
    drop(provider);

    let (stack, provider) =
        stack_with_provider(|web| start_provider_env(web, false, &[("OIDC_DEVICE_FLOW", "0")])).await;
    let (status, body) = cli_post(&stack.url, "/api/v1/cli/device", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not offer the device flow")),
        "{body}"
    );
    stack.stop().await;
    drop(provider);
}
