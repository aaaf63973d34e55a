#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Token lifetime and revocation timing as a real kube-apiserver has them, checked end to end: the
//! `--service-account-max-token-expiration` cap and its warning (seen by the real kubectl), the clock
//! leeway on `exp`, and the authentication cache that keeps a deleted ServiceAccount's token working for
//! a few seconds.
//!
//! Upstream sources modelled: `pkg/registry/core/serviceaccount/storage/token.go` (the cap and its
//! warning), `pkg/serviceaccount/claims.go` (go-jose's one-minute leeway on times and deletions),
//! `staging/src/k8s.io/apiserver/pkg/authentication/token/cache/cached_token_authenticator.go` (successes
//! cached for the success TTL, failures not), `pkg/kubeapiserver/options/authentication.go` (the
//! defaults: 10 s success TTL, 0 s failure TTL).

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Env, kubectl_with};
use kubesim::SimBuilder;
use serde_json::{Value, json};

/// The claims of a JWT, unverified (kubesim's own tests check signatures).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// `POST .../serviceaccounts/{sa}/token` through a kube client: status, `Warning` headers, body.
async fn token_request(env: &Env, ns: &str, sa: &str, spec: Value) -> (u16, Vec<String>, Value) {
    let client = env.sim.client().await.expect("admin client");
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
            )
            .expect("json"),
        ))
        .expect("request");
    let resp = client.send(req).await.expect("TokenRequest answered");
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .map(|v| v.to_str().expect("ASCII warning").to_string())
        .collect();
    let body = resp.into_body().collect_bytes().await.expect("body");
    (status, warnings, serde_json::from_slice(&body).expect("JSON body"))
}

/// Who the API server says the token is (a SelfSubjectReview), or the HTTP status refusing it.
async fn whoami(env: &Env, token: &str) -> Result<String, u16> {
    let client = env.sim.client_for_token(token).await.expect("client");
    let req = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
                .expect("json"),
        ))
        .expect("request");
    let resp = client.send(req).await.expect("answered");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect_bytes().await.expect("body");
    if status != 201 {
        return Err(status);
    }
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    Ok(v["status"]["userInfo"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Creates ServiceAccount `bot` in `default` and a 10-minute token for it with kubectl.
async fn bot_with_token(env: &Env) -> String {
    env.ok(&["create", "serviceaccount", "bot"]).await;
    env.ok(&["create", "token", "bot", "--duration=10m"])
        .await
        .trim()
        .to_string()
}

/// `kubectl auth whoami` with the token: the real client's view.
async fn kubectl_whoami(env: &Env, name: &str, token: &str) -> std::process::Output {
    let kc = env.kubeconfig_for(name, token);
    kubectl_with(
        &kc,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
        None,
    )
    .await
}

#[tokio::test]
async fn kubectl_create_token_over_the_cap_is_shortened_with_the_servers_warning() {
    let env = Env::with(SimBuilder::new().max_token_expiration_seconds(3600)).await;
    env.ok(&["create", "serviceaccount", "bot"]).await;
    let out = env.kubectl(&["create", "token", "bot", "--duration=2h"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // kubectl prints the server's Warning header on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: requested expiration of 7200 seconds shortened to 3600 seconds"),
        "{stderr}"
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let c = claims(&token);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3600);

    // On the wire: one `Warning: 299 - "…"` header; spec and expirationTimestamp show the cap.
    let (status, warnings, body) = token_request(&env, "default", "bot", json!({"expirationSeconds": 86400})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        warnings,
        [r#"299 - "requested expiration of 86400 seconds shortened to 3600 seconds""#]
    );
    assert_eq!(body["spec"]["expirationSeconds"], 3600);
    let c = claims(body["status"]["token"].as_str().unwrap());
    let exp = chrono::DateTime::from_timestamp(c["exp"].as_i64().unwrap(), 0).unwrap();
    assert_eq!(
        body["status"]["expirationTimestamp"],
        exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    // Within the cap: no warning, as asked.
    let quiet = env.kubectl(&["create", "token", "bot", "--duration=30m"]).await;
    assert!(quiet.status.success());
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("Warning"));
    let (_, warnings, body) = token_request(&env, "default", "bot", json!({"expirationSeconds": 1800})).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(body["spec"]["expirationSeconds"], 1800);
}

#[tokio::test]
async fn without_a_cap_a_long_token_is_issued_as_asked() {
    let env = Env::new().await;
    env.ok(&["create", "serviceaccount", "bot"]).await;
    let out = env.kubectl(&["create", "token", "bot", "--duration=48h"]).await;
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Warning"));
    let c = claims(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 48 * 3600);
}

#[tokio::test]
async fn a_token_is_accepted_within_the_leeway_after_exp_and_refused_after() {
    // The real leeway is 60 s; 5 s keeps the test short with the same rule. The cache is off so that
    // only the leeway decides.
    let leeway = 5;
    let env = Env::with(
        SimBuilder::new()
            .min_token_expiration_seconds(1)
            .token_leeway_seconds(leeway)
            .auth_cache_ttl(Duration::ZERO),
    )
    .await;
    env.ok(&["create", "serviceaccount", "bot"]).await;
    let (status, _, body) = token_request(&env, "default", "bot", json!({"expirationSeconds": 1})).await;
    assert_eq!(status, 201, "{body}");
    let token = body["status"]["token"].as_str().unwrap().to_string();
    let exp_ms = claims(&token)["exp"].as_i64().unwrap() * 1000;
    let now_ms = || chrono::Utc::now().timestamp_millis();
    let user = "system:serviceaccount:default:bot".to_string();

    // A full second past `exp`, well inside the leeway: still this ServiceAccount.
    tokio::time::sleep(Duration::from_millis((exp_ms + 1000 - now_ms()).max(0) as u64)).await;
    let before = now_ms();
    assert!(before > exp_ms + 999);
    assert_eq!(whoami(&env, &token).await, Ok(user));
    assert!(now_ms() < exp_ms + leeway * 1000, "the check ran inside the leeway");

    // Past `exp` plus the leeway: 401.
    tokio::time::sleep(Duration::from_millis(
        (exp_ms + leeway * 1000 + 200 - now_ms()).max(0) as u64
    ))
    .await;
    assert_eq!(whoami(&env, &token).await, Err(401));
}

#[tokio::test]
async fn a_deleted_service_accounts_token_works_for_the_cache_ttl_then_is_refused() {
    let ttl = Duration::from_secs(4);
    let env = Env::with(SimBuilder::new().auth_cache_ttl(ttl)).await;
    let token = bot_with_token(&env).await;
    // The first use stores the success; it cannot have been stored before this instant.
    let cached_not_before = Instant::now();
    let first = kubectl_whoami(&env, "bot", &token).await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "system:serviceaccount:default:bot"
    );
    env.ok(&["delete", "serviceaccount", "bot"]).await;

    // Until the TTL from the first use has passed, the cached identity answers (for the real kubectl
    // and for kube-rs alike). Only answers received before that instant are asserted.
    let after_delete = kubectl_whoami(&env, "bot", &token).await;
    if cached_not_before.elapsed() < ttl {
        assert!(
            after_delete.status.success(),
            "refused within the cache TTL: {}",
            String::from_utf8_lossy(&after_delete.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&after_delete.stdout),
            "system:serviceaccount:default:bot"
        );
    }
    let mut accepted_after_delete = 0;
    let refused_at = loop {
        let answer = whoami(&env, &token).await;
        let elapsed = cached_not_before.elapsed();
        match answer {
            Ok(name) => {
                assert_eq!(name, "system:serviceaccount:default:bot");
                accepted_after_delete += 1;
            }
            Err(code) => {
                assert_eq!(code, 401);
                break elapsed;
            }
        }
        assert!(
            elapsed < ttl + Duration::from_secs(10),
            "still accepted {elapsed:?} after caching"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(accepted_after_delete > 0, "the cache answered after the deletion");
    // The entry expires no earlier than the TTL after `cached_not_before` (50 ms for the two clocks:
    // the server's wall clock, the test's monotonic one).
    assert!(
        refused_at >= ttl - Duration::from_millis(50),
        "refused {refused_at:?} after caching, before the TTL"
    );
    // And for good: the failure is not cached, the ServiceAccount is gone.
    let out = kubectl_whoami(&env, "bot", &token).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unauthorized") || err.contains("logged in"), "{err}");
}

#[tokio::test]
async fn with_the_cache_disabled_a_deleted_service_accounts_token_is_refused_at_once() {
    let env = Env::with(SimBuilder::new().auth_cache_ttl(Duration::ZERO)).await;
    let token = bot_with_token(&env).await;
    let first = kubectl_whoami(&env, "bot", &token).await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    env.ok(&["delete", "serviceaccount", "bot"]).await;
    let out = kubectl_whoami(&env, "bot", &token).await;
    assert!(!out.status.success(), "accepted after deletion with no cache");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unauthorized") || err.contains("logged in"), "{err}");
    assert_eq!(whoami(&env, &token).await, Err(401));
}

#[tokio::test]
async fn by_default_the_leeway_and_the_cache_are_on_as_on_a_real_server() {
    // Only the minimum lifetime is lowered (to get a token that expires within the test).
    let env = Env::with(SimBuilder::new().min_token_expiration_seconds(1)).await;
    let cfg = &env.sim.cluster.config;
    assert_eq!(
        (
            cfg.token_leeway_seconds,
            cfg.auth_cache_ttl,
            cfg.max_token_expiration_seconds
        ),
        (60, Duration::from_secs(10), None)
    );
    env.ok(&["create", "serviceaccount", "bot"]).await;
    let user = "system:serviceaccount:default:bot".to_string();

    // Leeway: a second past `exp` the token is still accepted.
    let (_, _, body) = token_request(&env, "default", "bot", json!({"expirationSeconds": 1})).await;
    let short = body["status"]["token"].as_str().unwrap().to_string();
    let exp_ms = claims(&short)["exp"].as_i64().unwrap() * 1000;
    let wait = exp_ms + 1000 - chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    assert_eq!(
        whoami(&env, &short).await,
        Ok(user.clone()),
        "refused a second past exp"
    );

    // Cache: right after the ServiceAccount is deleted, a token used just before still works.
    let (_, _, body) = token_request(&env, "default", "bot", json!({"expirationSeconds": 600})).await;
    let token = body["status"]["token"].as_str().unwrap().to_string();
    let cached_not_before = Instant::now();
    assert_eq!(whoami(&env, &token).await, Ok(user.clone()));
    env.ok(&["delete", "serviceaccount", "bot"]).await;
    let answer = whoami(&env, &token).await;
    if cached_not_before.elapsed() < Duration::from_secs(10) {
        assert_eq!(answer, Ok(user), "refused at once although cached");
    }
}
