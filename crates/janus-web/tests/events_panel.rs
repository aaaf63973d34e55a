#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The terminal page's events panel (`GET /api/v1/requests/{name}/events`) shows Events of both
//! shapes: core/v1 ones with `lastTimestamp`/`count`, and events.k8s.io/v1 ones (the scheduler,
//! kube-rs) whose core view has a null `lastTimestamp` and no `count` (kube-apiserver stores both in
//! one place: pkg/apis/events/v1/conversion.go; kubectl's printer falls back the same way in
//! pkg/printers/internalversion/printers.go, printEvent).

mod common;

use chrono::{Duration, SecondsFormat, Utc};
use common::{ADMIN, Stack};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

fn ago(minutes: i64) -> chrono::DateTime<Utc> {
    Utc::now() - Duration::minutes(minutes)
}

fn v1_event(
    name: &str,
    reason: &str,
    event_time: chrono::DateTime<Utc>,
    series: Option<(i32, chrono::DateTime<Utc>)>,
) -> Event {
    let mut e = json!({
        "metadata": {"name": name, "namespace": "team-a"},
        "eventTime": event_time.to_rfc3339_opts(SecondsFormat::Micros, true),
        "reportingController": "default-scheduler", "reportingInstance": "default-scheduler-node-1",
        "action": "Binding", "reason": reason, "note": format!("{reason} by the scheduler"), "type": "Normal",
        "regarding": {"kind": "Pod", "name": "app", "namespace": "team-a", "apiVersion": "v1"},
    });
    if let Some((count, last)) = series {
        e["series"] = json!({"count": count, "lastObservedTime": last.to_rfc3339_opts(SecondsFormat::Micros, true)});
    }
    serde_json::from_value(e).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_panel_shows_events_of_both_apis_with_their_times() {
    let stack = Stack::start("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = alice.request(&["team-a"], 600, "events panel").await;
    let r = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
    assert_eq!(r.status(), 200);
    alice.wait_phase(&name, "Active").await;

    let client = stack.sim.client().await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "team-a");
    let v1: Api<Event> = Api::namespaced(client, "team-a");
    // An old-style core Event, seen last 10 minutes ago, three times.
    let pulled: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "zz-pulled"},
        "involvedObject": {"kind": "Pod", "name": "app", "namespace": "team-a"},
        "reason": "Pulled", "message": "image pulled", "type": "Normal", "count": 3,
        "firstTimestamp": ago(20).to_rfc3339_opts(SecondsFormat::Secs, true),
        "lastTimestamp": ago(10).to_rfc3339_opts(SecondsFormat::Secs, true),
        "source": {"component": "kubelet"},
    }))
    .unwrap();
    core.create(&PostParams::default(), &pulled).await.unwrap();
    // events.k8s.io Events: one 5 minutes ago, one repeated (a series) until 1 minute ago.
    let scheduled_at = ago(5);
    v1.create(
        &PostParams::default(),
        &v1_event("aa-scheduled", "Scheduled", scheduled_at, None),
    )
    .await
    .unwrap();
    let repeated_until = ago(1);
    v1.create(
        &PostParams::default(),
        &v1_event("mm-backoff", "BackOff", ago(8), Some((4, repeated_until))),
    )
    .await
    .unwrap();

    let body = alice
        .json(&format!("/api/v1/requests/{name}/events?namespace=team-a&pod=app"))
        .await;
    let events = body["events"].as_array().unwrap();
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    // Oldest first by when each was last seen, whatever the names.
    assert_eq!(reasons, ["Pulled", "Scheduled", "BackOff"], "{body}");
    let by_reason = |r: &str| -> &Value { events.iter().find(|e| e["reason"] == r).unwrap() };
    let time = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["lastTimestamp"].as_str().unwrap_or("")).ok();
    let scheduled = by_reason("Scheduled");
    assert_eq!(scheduled["message"], "Scheduled by the scheduler");
    assert_eq!(scheduled["object"], "Pod/app");
    assert_eq!(
        time(scheduled).map(|t| t.timestamp_micros()),
        Some(scheduled_at.timestamp_micros()),
        "{scheduled}"
    );
    assert_eq!(scheduled["count"], 1);
    let backoff = by_reason("BackOff");
    assert_eq!(
        time(backoff).map(|t| t.timestamp_micros()),
        Some(repeated_until.timestamp_micros()),
        "{backoff}"
    );
    assert_eq!(backoff["count"], 4);
    let pulled = by_reason("Pulled");
    assert_eq!(pulled["count"], 3);
    assert!(time(pulled).is_some(), "{pulled}");
    stack.stop().await;
}

/// A namespace with more Events than the panel shows: the answer is bounded, holds the newest ones
/// (by when they were last seen, not by name: the server lists by name), and the pod filter is the
/// server's field selector (`involvedObject.name`, `involvedObject.kind`: kube-apiserver
/// pkg/registry/core/event/strategy.go, ToSelectableFields).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_events_answer_only_the_newest_hundred() {
    let stack = Stack::start("").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = alice.request(&["team-a"], 600, "many events").await;
    let r = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
    assert_eq!(r.status(), 200);
    alice.wait_phase(&name, "Active").await;

    let client = stack.sim.client().await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client, "team-a");
    let event = |name: String, kind: &str, object: &str, minutes_ago: i64| -> CoreEvent {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "involvedObject": {"kind": kind, "name": object, "namespace": "team-a"},
            "reason": "Tick", "message": format!("{minutes_ago} minutes ago"), "type": "Normal", "count": 1,
            "lastTimestamp": ago(minutes_ago).to_rfc3339_opts(SecondsFormat::Secs, true),
            "source": {"component": "kubelet"},
        }))
        .unwrap()
    };
    // 150 Events of pod "app", names in the opposite order of their times (the newest sorts first).
    for i in 0..150 {
        core.create(
            &PostParams::default(),
            &event(format!("app-{i:03}"), "Pod", "app", 1 + i),
        )
        .await
        .unwrap();
    }
    // Newer Events of another pod and of a Deployment named "app": not the pod's.
    for i in 0..10 {
        core.create(&PostParams::default(), &event(format!("other-{i}"), "Pod", "other", 0))
            .await
            .unwrap();
        core.create(
            &PostParams::default(),
            &event(format!("deploy-{i}"), "Deployment", "app", 0),
        )
        .await
        .unwrap();
    }

    let body = alice
        .json(&format!("/api/v1/requests/{name}/events?namespace=team-a&pod=app"))
        .await;
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 100, "at most the bound");
    assert!(events.iter().all(|e| e["object"] == "Pod/app"), "{body}");
    let messages: Vec<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    // The newest hundred (1..=100 minutes ago), oldest first.
    let want: Vec<String> = (1..=100).rev().map(|m| format!("{m} minutes ago")).collect();
    assert_eq!(messages, want);

    // The whole namespace: bounded too, and the newest (the other objects' Events) are in it.
    let body = alice
        .json(&format!("/api/v1/requests/{name}/events?namespace=team-a"))
        .await;
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 100, "at most the bound");
    let newest = events
        .iter()
        .rev()
        .take(20)
        .filter(|e| e["message"] == "0 minutes ago")
        .count();
    assert_eq!(newest, 20, "{body}");

    // A pod "name" that would add selector requirements is refused.
    let r = alice
        .get(&format!(
            "/api/v1/requests/{name}/events?namespace=team-a&pod=app,reason%3DTick"
        ))
        .await;
    assert_eq!(r.status(), 422);
    stack.stop().await;
}
