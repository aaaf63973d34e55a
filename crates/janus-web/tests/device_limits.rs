#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The anonymous OIDC device-flow endpoints of the CLI are bounded per client address (and polls per
//! device code), against the real provider harness of tests/oidc.rs: every call costs a provider
//! request with the web's client credentials, so the 11th start from one address within 10 minutes
//! is 429 with Retry-After, and a code polled in a loop is 429 before the provider is asked.

mod common;
#[path = "support/oidc_provider.rs"]
mod oidc_provider;

use oidc_provider::{prerequisites, stack_with_provider, start_provider};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(web: &str, path: &str, body: Value) -> (StatusCode, Option<String>, Value) {
    let r = reqwest::Client::new()
        .post(format!("{web}{path}"))
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_starts_and_polls_are_rate_limited_per_address_and_code() {
    if !prerequisites() {
        return;
    }
    let (stack, provider) = stack_with_provider(|web| start_provider(web, false)).await;
    let web = stack.url.clone();
    let mut first = None;
    for i in 0..10 {
        let (status, _, body) = post(&web, "/api/v1/cli/device", Value::Null).await;
        assert_eq!(status, StatusCode::OK, "start {i}: {body}");
        first.get_or_insert(body);
    }
    let (status, retry, body) = post(&web, "/api/v1/cli/device", Value::Null).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "11th start: {body}");
    assert!(
        retry.as_deref().is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
        "{retry:?}"
    );
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("too many device sign-ins")),
        "{body}"
    );

    // One code polled in a loop: the first polls reach the provider (pending), then 429.
    let d = first.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, _, _) = post(&web, "/api/v1/cli/device/token", json!({"deviceCode": d["deviceCode"]})).await;
        statuses.push(status.as_u16());
    }
    assert_eq!(&statuses[..3], &[400, 400, 400], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    stack.stop().await;
    drop(provider);
}
