//! Slack, Teams and the signed webhook against real local HTTPS receivers (axum on rustls with a
//! throwaway CA the sinks trust through `caFile`): the payloads in their documented shapes (Block Kit,
//! Adaptive Card 1.4, CloudEvents 1.0), the HMAC signature verified as a receiver would, and the answers
//! that make a delivery retryable (429 with Retry-After, 5xx, network errors, a hang cut by the timeout)
//! or permanent (other 4xx, redirects).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use hyper_util::rt::{TokioExecutor, TokioIo};
use janus_api::config::Config;
use janus_api::notifications::resolve;
use janus_notify::{SendError, Sink};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Received>>>);

impl Seen {
    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

async fn receive(State(seen): State<Seen>, Path(path): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    seen.0.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body,
    });
    match path.as_str() {
        // What Slack answers a malformed payload.
        "bad" => (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
        "busy" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], "slow down").into_response(),
        "down" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "Wed, 21 Oct 2099 07:28:00 GMT")],
            "maintenance",
        )
            .into_response(),
        "moved" => (StatusCode::FOUND, [("location", "https://elsewhere.example.com/")], "").into_response(),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        }
        _ => (StatusCode::OK, "ok").into_response(),
    }
}

/// An HTTPS server on 127.0.0.1 answering `POST /{path}` as [`receive`] does.
async fn https_receiver(pki: &common::Pki) -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new().route("/{*path}", post(receive)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn sinks(yaml: &str, env: BTreeMap<String, String>) -> Vec<Box<dyn Sink>> {
    let c = Config::from_yaml(yaml, "test").unwrap();
    let resolved = resolve(&c.notifications, &|k| env.get(k).cloned()).unwrap();
    janus_notify::build(&resolved, "web-0").unwrap()
}

/// Verifies `X-Janus-Signature` the way docs/notifications.md tells receivers to.
fn verify_signature(header: &str, body: &[u8], key: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

fn assert_block_kit(p: &Value) {
    // https://docs.slack.dev/reference/block-kit/blocks: the types and limits used here.
    assert!(p["text"].is_string(), "fallback text for notifications");
    let blocks = p["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(b["text"]["type"], "plain_text");
                assert!(b["text"]["text"].as_str().unwrap().chars().count() <= 150);
            }
            "section" => {
                assert!(b.get("text").is_some() || b.get("fields").is_some());
                if let Some(f) = b["fields"].as_array() {
                    assert!(f.len() <= 10);
                    assert!(
                        f.iter()
                            .all(|x| x["type"] == "mrkdwn" && x["text"].as_str().unwrap().len() <= 2000)
                    );
                }
            }
            "context" => assert!(b["elements"].as_array().is_some_and(|e| !e.is_empty() && e.len() <= 10)),
            "actions" => {
                for e in b["elements"].as_array().unwrap() {
                    assert_eq!(e["type"], "button");
                    assert_eq!(e["text"]["type"], "plain_text");
                    assert!(e["url"].as_str().unwrap().starts_with("https://janus.example.com/"));
                }
            }
            other => panic!("unexpected block type {other}"),
        }
    }
}

#[tokio::test]
async fn slack_teams_and_the_webhook_receive_their_documented_formats() {
    let pki = common::Pki::new();
    let (addr, seen) = https_receiver(&pki).await;
    let ca = pki.ca_file.display();
    let yaml = format!(
        r##"
clusters: [{{name: prod}}, {{name: dev}}]
notifications:
  slack:
    - name: ops
      urlEnv: SLACK_URL
      channel: "#access"
      caFile: {ca}
      routes:
        - clusters: [prod]
          urlEnv: SLACK_PROD_URL
          channel: "#prod-access"
  teams:
    - {{name: teams, urlEnv: TEAMS_URL, caFile: {ca}}}
  webhook:
    - name: hook
      urlEnv: HOOK_URL
      hmacKeyEnv: HOOK_KEY
      caFile: {ca}
      headers:
        - {{name: X-Tenant, value: platform}}
        - {{name: Authorization, valueEnv: HOOK_AUTH}}
"##
    );
    let env: BTreeMap<String, String> = [
        (
            "SLACK_URL",
            format!("https://localhost:{}/slack/T0/B0/secretpart", addr.port()),
        ),
        (
            "SLACK_PROD_URL",
            format!("https://localhost:{}/slack-prod/T0/B1/secretprod", addr.port()),
        ),
        ("TEAMS_URL", format!("https://localhost:{}/teams", addr.port())),
        ("HOOK_URL", format!("https://localhost:{}/hook", addr.port())),
        ("HOOK_KEY", "whsec-test-key".to_string()),
        ("HOOK_AUTH", "Bearer receiver-token".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let sinks = sinks(&yaml, env);
    let (slack, teams, hook) = (&sinks[0], &sinks[1], &sinks[2]);

    // Slack: a dev request goes to the default webhook and channel, a prod one is routed.
    for (cluster, path, channel) in [
        ("dev", "slack/T0/B0/secretpart", "#access"),
        ("prod", "slack-prod/T0/B1/secretprod", "#prod-access"),
    ] {
        let n = common::pending(cluster);
        assert!(slack.accepts(&n));
        let key = n.idempotency_key(slack.name());
        let d = slack.send(&n, &key).await.unwrap();
        assert_eq!(d.status, Some(200));
        let got = seen.take();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, path);
        assert_eq!(got[0].headers["idempotency-key"], key.as_str());
        let p: Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_block_kit(&p);
        assert_eq!(p["channel"], channel);
        let all = p.to_string();
        // mrkdwn control characters are escaped (Slack would read <b> as a link otherwise).
        assert!(all.contains("&lt;b&gt;in&lt;/b&gt; payments &amp; billing"), "{all}");
        assert!(all.contains(&format!("https://janus.example.com/requests/alice-{cluster}-x1")));
    }

    // Teams: a message with one Adaptive Card 1.4 (https://adaptivecards.io/explorer/AdaptiveCard.html).
    let n = common::pending("prod");
    teams.send(&n, &n.idempotency_key("teams")).await.unwrap();
    let got = seen.take();
    let p: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(p["type"], "message");
    let att = &p["attachments"][0];
    assert_eq!(att["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &att["content"];
    assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let body = card["body"].as_array().unwrap();
    assert!(
        body.iter()
            .all(|e| ["TextBlock", "FactSet"].contains(&e["type"].as_str().unwrap()))
    );
    let facts = body.iter().find(|e| e["type"] == "FactSet").unwrap()["facts"]
        .as_array()
        .unwrap();
    assert!(facts.iter().all(|f| f["title"].is_string() && f["value"].is_string()));
    assert!(
        facts
            .iter()
            .any(|f| f["title"] == "Requester" && f["value"] == "alice@example.com")
    );
    let actions = card["actions"].as_array().unwrap();
    assert!(
        actions
            .iter()
            .all(|a| a["type"] == "Action.OpenUrl" && a["url"].as_str().unwrap().starts_with("https://"))
    );

    // Webhook: CloudEvents 1.0 structured mode, signed, with the custom headers.
    let key = n.idempotency_key("hook");
    hook.send(&n, &key).await.unwrap();
    let got = seen.take();
    let r = &got[0];
    assert_eq!(r.headers["content-type"], "application/cloudevents+json");
    assert_eq!(r.headers["x-tenant"], "platform");
    assert_eq!(r.headers["authorization"], "Bearer receiver-token");
    let sig = r.headers["x-janus-signature"].to_str().unwrap();
    assert!(
        verify_signature(sig, &r.body, b"whsec-test-key"),
        "signature {sig} does not verify"
    );
    assert!(!verify_signature(sig, &r.body, b"another-key"));
    let mut tampered = r.body.to_vec();
    tampered[10] ^= 1;
    assert!(
        !verify_signature(sig, &tampered, b"whsec-test-key"),
        "a changed body must not verify"
    );
    let ce: Value = serde_json::from_slice(&r.body).unwrap();
    // https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md#required-attributes
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], key.as_str());
    assert_eq!(ce["source"], "k8s-janus");
    assert_eq!(ce["type"], "io.opsmode.k8s-janus.request.created");
    assert!(chrono::DateTime::parse_from_rfc3339(ce["time"].as_str().unwrap()).is_ok());
    assert_eq!(ce["data"]["event"]["kind"], "request.created");
    assert_eq!(ce["data"]["message"]["topic"], "pending");

    // The webhook streams events without a message too; Slack does not send them.
    let mut login = common::pending("prod");
    login.event.kind = "login.failed".into();
    login.message = None;
    assert!(hook.accepts(&login) && !slack.accepts(&login) && !teams.accepts(&login));
}

#[tokio::test]
async fn the_answer_decides_between_retryable_and_permanent() {
    let pki = common::Pki::new();
    let (addr, seen) = https_receiver(&pki).await;
    let ca = pki.ca_file.display();
    let yaml = format!(
        "notifications:\n  webhook:\n{}",
        ["bad", "busy", "down", "moved", "closed", "untrusted"]
            .iter()
            .map(|n| {
                let ca = if *n == "untrusted" {
                    String::new()
                } else {
                    format!(", caFile: {ca}")
                };
                format!("    - {{name: {n}, urlEnv: URL_{n}, hmacKeyEnv: KEY{ca}}}\n")
            })
            .collect::<String>()
    );
    // A port nothing listens on: bind, note, drop.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env: BTreeMap<String, String> = ["bad", "busy", "down", "moved", "untrusted"]
        .iter()
        .map(|n| {
            (
                format!("URL_{n}"),
                format!("https://localhost:{}/{n}?secret=s3cr3t-part", addr.port()),
            )
        })
        .collect();
    env.insert(
        "URL_closed".into(),
        format!("https://localhost:{closed}/hook?secret=s3cr3t-part"),
    );
    env.insert("KEY".into(), "k".into());
    let sinks = sinks(&yaml, env);
    let n = common::pending("prod");
    let mut results = BTreeMap::new();
    for s in &sinks {
        results.insert(s.name().to_string(), s.send(&n, &n.idempotency_key(s.name())).await);
    }
    seen.take();
    match &results["bad"] {
        Err(SendError::Permanent { status, body }) => {
            assert_eq!(*status, Some(400));
            assert_eq!(body, "invalid_payload");
        }
        other => panic!("400 must be permanent with the answer: {other:?}"),
    }
    assert_eq!(
        results["busy"],
        Err(SendError::Retryable {
            retry_after: Some(Duration::from_secs(7)),
            reason: "HTTP 429: slow down".into()
        })
    );
    match &results["down"] {
        Err(SendError::Retryable {
            retry_after: Some(wait),
            reason,
        }) => {
            assert!(
                *wait > Duration::from_secs(86400 * 365),
                "an HTTP-date Retry-After: {wait:?}"
            );
            assert!(reason.contains("HTTP 503"), "{reason}");
        }
        other => panic!("503 must be retryable with its Retry-After: {other:?}"),
    }
    assert!(
        matches!(&results["moved"], Err(SendError::Permanent { status: Some(302), .. })),
        "a redirect is not followed: {:?}",
        results["moved"]
    );
    for name in ["closed", "untrusted"] {
        match &results[name] {
            Err(e @ SendError::Retryable { retry_after: None, .. }) => {
                // The URL can be a credential: never in an error (they end up in logs and the admin page).
                assert!(!e.to_string().contains("s3cr3t-part"), "{name}: {e}");
            }
            other => panic!("{name}: a network or TLS error is retryable: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_hanging_receiver_is_cut_by_the_timeout() {
    let pki = common::Pki::new();
    let (addr, _seen) = https_receiver(&pki).await;
    let yaml = format!(
        "notifications:\n  timeoutSeconds: 1\n  teams: [{{name: t, urlEnv: URL, caFile: {}}}]\n",
        pki.ca_file.display()
    );
    let env = BTreeMap::from([("URL".to_string(), format!("https://localhost:{}/hang", addr.port()))]);
    let sinks = sinks(&yaml, env);
    let n = common::pending("prod");
    let start = Instant::now();
    let r = sinks[0].send(&n, "k").await;
    // The promise is the deadline: 1 s configured, generous bound for a loaded machine.
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    match r {
        Err(SendError::Retryable { reason, .. }) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("a hang is retryable: {other:?}"),
    }
}
