#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Events as kube-apiserver serves them: one stored object with a core/v1 and an events.k8s.io/v1 view
//! (pkg/apis/events/v1/conversion.go, pkg/registry/core/event/strategy.go), and the validation of
//! pkg/apis/core/validation/events.go (ValidateEventCreate / ValidateEventUpdate) with its texts.

mod common;

use std::time::Duration;

use common::Env;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event as V1Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};

const NS: &str = "team-a";

/// A change made to a valid Event to make it invalid.
type Edit = Box<dyn Fn(&mut Value)>;

fn v1_event(name: &str, note: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": NS},
        "eventTime": "2026-01-02T03:04:05.123456Z",
        "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
        "action": "Grant", "reason": "Granted", "note": note, "type": "Normal",
        "regarding": {"kind": "Pod", "name": "app", "namespace": NS, "apiVersion": "v1"},
    })
}

async fn env() -> Env {
    let env = Env::new().await;
    env.seed("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n");
    env
}

async fn create_v1(env: &Env, obj: Value) -> Result<V1Event, kube::Error> {
    let api: Api<V1Event> = Api::namespaced(env.sim.client().await.unwrap(), NS);
    api.create(&PostParams::default(), &serde_json::from_value(obj).unwrap())
        .await
}

fn api_message(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("not an API error: {other}"),
    }
}

/// ValidateEventCreate for events.k8s.io/v1: the strict rules, with the server's field paths (core
/// names) and texts, 422 Invalid.
#[tokio::test]
async fn events_v1_create_is_validated_as_upstream() {
    let env = env().await;
    // NoteLengthLimit is compared with Go's len(): 1024 bytes pass, 1025 do not.
    create_v1(&env, v1_event("fits", &"n".repeat(1024))).await.unwrap();
    let (code, msg) = api_message(create_v1(&env, v1_event("long", &"n".repeat(1025))).await.unwrap_err());
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "Event.events.k8s.io \"long\" is invalid: message: Invalid value: \"\": can have at most 1024 characters"
    );
    // 342 three-byte characters are 1026 bytes.
    let (code, _) = api_message(create_v1(&env, v1_event("wide", &"€".repeat(342))).await.unwrap_err());
    assert_eq!(code, 422);

    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no-time",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("eventTime");
            }),
            "eventTime: Required value",
        ),
        (
            "no-controller",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("reportingController");
            }),
            "reportingController: Required value",
        ),
        (
            "no-instance",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("reportingInstance");
            }),
            "reportingInstance: Required value",
        ),
        (
            "no-action",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("action");
            }),
            "action: Required value",
        ),
        (
            "long-reason",
            Box::new(|e| e["reason"] = json!("r".repeat(129))),
            "reason: Invalid value: \"\": can have at most 128 characters",
        ),
        (
            "bad-type",
            Box::new(|e| e["type"] = json!("Info")),
            "type: Invalid value: \"\": has invalid value: Info",
        ),
        // With an eventTime only a cluster-scoped `regarding` is checked: its Events belong in
        // "default" or "kube-system".
        (
            "cluster-scoped",
            Box::new(|e| {
                e["regarding"] = json!({"kind": "Node", "name": "n1"});
            }),
            "involvedObject.namespace: Invalid value: \"\": does not match event.namespace",
        ),
        (
            "dep-count",
            Box::new(|e| e["deprecatedCount"] = json!(3)),
            "count: Invalid value: \"\": needs to be unset",
        ),
        (
            "dep-last",
            Box::new(|e| e["deprecatedLastTimestamp"] = json!("2026-01-02T03:04:05Z")),
            "lastTimestamp: Invalid value: \"\": needs to be unset",
        ),
        (
            "dep-source",
            Box::new(|e| e["deprecatedSource"] = json!({"component": "kubelet"})),
            "source: Invalid value: \"\": needs to be unset",
        ),
        (
            "bad-series",
            Box::new(|e| e["series"] = json!({"count": 1, "lastObservedTime": "2026-01-02T03:04:05.000000Z"})),
            "series.count: Invalid value: \"\": should be at least 2",
        ),
    ];
    for (name, change, want) in cases {
        let mut e = v1_event(name, "x");
        change(&mut e);
        let (code, msg) = api_message(create_v1(&env, e).await.unwrap_err());
        assert_eq!(code, 422, "{name}: {msg}");
        assert!(
            msg.starts_with(&format!("Event.events.k8s.io \"{name}\" is invalid: ")),
            "{msg}"
        );
        assert!(msg.contains(want), "{name}: {msg}");
    }
    // A body the server cannot decode is a 400, not a crash.
    let gvk = kube::api::GroupVersionKind::gvk("events.k8s.io", "v1", "Event");
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.sim.client().await.unwrap(),
        NS,
        &kube::api::ApiResource::from_gvk(&gvk),
    );
    let mut bad = v1_event("bad-time", "x");
    bad["eventTime"] = json!("yesterday");
    let bad: kube::api::DynamicObject = serde_json::from_value(bad).unwrap();
    let (code, msg) = api_message(raw.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("parsing time \"yesterday\""), "{msg}");
}

/// core/v1 keeps the legacy rules only: an old-style Event (no eventTime) may carry any message length,
/// but one with an eventTime needs the reporting fields, as the kubelet's and kubectl's clients do.
/// `legacyValidateEvent` (pkg/apis/core/validation/events.go) names the reporting controller by the
/// request version's field: `reportingComponent` for core/v1, `reportingController` otherwise.
#[tokio::test]
async fn core_v1_create_keeps_the_legacy_rules() {
    let env = env().await;
    let api: Api<CoreEvent> = Api::namespaced(env.sim.client().await.unwrap(), NS);
    let old: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "old"}, "involvedObject": {"kind": "Pod", "name": "app", "namespace": NS},
        "reason": "Pulled", "message": "m".repeat(4000), "count": 2, "type": "Normal",
        "firstTimestamp": "2026-01-02T03:04:05Z", "lastTimestamp": "2026-01-02T03:05:05Z",
        "source": {"component": "kubelet"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &old).await.unwrap();
    let mismatch: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "mismatch"}, "involvedObject": {"kind": "Pod", "name": "app", "namespace": "team-b"},
    }))
    .unwrap();
    let (code, msg) = api_message(api.create(&PostParams::default(), &mismatch).await.unwrap_err());
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "Event \"mismatch\" is invalid: involvedObject.namespace: Invalid value: \"team-b\": does not match event.namespace"
    );
    let new_style: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "new-style"}, "involvedObject": {"kind": "Pod", "name": "app", "namespace": NS},
        "eventTime": "2026-01-02T03:04:05.000000Z", "reason": "R", "action": "A", "message": "m".repeat(1025),
    }))
    .unwrap();
    let (code, msg) = api_message(api.create(&PostParams::default(), &new_style).await.unwrap_err());
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "Event \"new-style\" is invalid: [reportingComponent: Required value, \
         reportingComponent: Invalid value: \"\": name part must be non-empty, \
         reportingComponent: Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', \
         and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', \
         regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), \
         reportingInstance: Required value, message: Invalid value: \"\": can have at most 1024 characters]"
    );
}

/// One store, two views: what one API writes, the other reads with the mapped fields and the same
/// resourceVersion, in get, list and watch; an events.k8s.io Event has no lastTimestamp or count.
#[tokio::test]
async fn both_apis_read_and_write_one_event() {
    let env = env().await;
    let client = env.sim.client().await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), NS);
    let v1: Api<V1Event> = Api::namespaced(client.clone(), NS);
    let core_watch = core
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .unwrap()
        .boxed();
    let rv0 = v1
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let v1_watch = v1
        .watch(&WatchParams::default().timeout(10), &rv0)
        .await
        .unwrap()
        .boxed();

    let created = create_v1(&env, v1_event("granted", "access granted")).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let as_core = core.get("granted").await.unwrap();
    assert_eq!(as_core.metadata.resource_version.as_deref(), Some(rv.as_str()));
    assert_eq!(as_core.message.as_deref(), Some("access granted"));
    assert_eq!(as_core.involved_object.name.as_deref(), Some("app"));
    assert_eq!(as_core.reporting_component.as_deref(), Some("example.com/ctl"));
    assert_eq!(as_core.reporting_instance.as_deref(), Some("ctl-1"));
    assert!(as_core.last_timestamp.is_none() && as_core.first_timestamp.is_none());
    assert!(as_core.count.is_none());
    assert!(as_core.event_time.is_some());
    // The raw core JSON carries the nulls a real server writes.
    let raw = env.sim.get("", "events", NS, "granted").unwrap();
    assert!(
        raw["lastTimestamp"].is_null() && raw.get("lastTimestamp").is_some(),
        "{raw}"
    );
    assert_eq!(raw["reportingComponent"], "example.com/ctl");

    // A core Event the old way, read through events.k8s.io.
    let old: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "pulled"}, "involvedObject": {"kind": "Pod", "name": "app", "namespace": NS},
        "reason": "Pulled", "message": "image pulled", "count": 3, "type": "Normal",
        "firstTimestamp": "2026-01-02T03:04:05Z", "lastTimestamp": "2026-01-02T03:05:05Z",
        "source": {"component": "kubelet", "host": "node-1"},
    }))
    .unwrap();
    core.create(&PostParams::default(), &old).await.unwrap();
    let as_v1 = v1.get("pulled").await.unwrap();
    assert_eq!(as_v1.note.as_deref(), Some("image pulled"));
    assert_eq!(as_v1.deprecated_count, Some(3));
    assert!(as_v1.deprecated_last_timestamp.is_some());
    assert_eq!(
        as_v1.deprecated_source.as_ref().and_then(|s| s.component.as_deref()),
        Some("kubelet")
    );
    assert_eq!(as_v1.regarding.as_ref().and_then(|r| r.name.as_deref()), Some("app"));

    // Lists through both APIs hold both, with one resourceVersion each.
    let core_list = core.list(&ListParams::default()).await.unwrap();
    let v1_list = v1.list(&ListParams::default()).await.unwrap();
    let names = |v: Vec<Option<String>>| v.into_iter().flatten().collect::<Vec<_>>();
    assert_eq!(
        names(core_list.items.iter().map(|e| e.metadata.name.clone()).collect()),
        ["granted", "pulled"]
    );
    assert_eq!(
        names(v1_list.items.iter().map(|e| e.metadata.name.clone()).collect()),
        ["granted", "pulled"]
    );
    assert_eq!(core_list.metadata.resource_version, v1_list.metadata.resource_version);

    // A write through core moves the one object on for both views; a PUT of an unchanged
    // events.k8s.io object is a no-op (nothing is lost in the mapping).
    let patched = core
        .patch(
            "granted",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    let now_v1 = v1.get("granted").await.unwrap();
    assert_eq!(now_v1.metadata.resource_version, patched.metadata.resource_version);
    assert_ne!(now_v1.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let same = v1.replace("granted", &PostParams::default(), &now_v1).await.unwrap();
    assert_eq!(same.metadata.resource_version, now_v1.metadata.resource_version);

    // Watches of each API see the other's writes in their own shape.
    let core_seen: Vec<CoreEvent> = take_added(core_watch, 2).await;
    assert_eq!(core_seen[0].message.as_deref(), Some("access granted"));
    assert_eq!(core_seen[1].message.as_deref(), Some("image pulled"));
    let v1_seen: Vec<V1Event> = take_added(v1_watch, 2).await;
    assert_eq!(v1_seen[0].note.as_deref(), Some("access granted"));
    assert_eq!(v1_seen[1].note.as_deref(), Some("image pulled"));
    assert_eq!(v1_seen[0].metadata.resource_version.as_deref(), Some(rv.as_str()));

    // Pages of a list through events.k8s.io are events.k8s.io objects too.
    let first = v1.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].note.as_deref(), Some("access granted"));
    let token = first.metadata.continue_.clone().unwrap();
    let second = v1
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].note.as_deref(), Some("image pulled"));

    // Deleting through one API removes it from the other.
    v1.delete("pulled", &Default::default()).await.unwrap();
    assert!(core.get_opt("pulled").await.unwrap().is_none());
}

async fn take_added<K: Clone + serde::de::DeserializeOwned + std::fmt::Debug>(
    stream: futures::stream::BoxStream<'static, kube::Result<WatchEvent<K>>>,
    n: usize,
) -> Vec<K> {
    let added = stream
        .try_filter_map(|e| async move {
            Ok(match e {
                WatchEvent::Added(o) => Some(o),
                _ => None,
            })
        })
        .take(n)
        .try_collect::<Vec<_>>();
    tokio::time::timeout(Duration::from_secs(10), added)
        .await
        .expect("watch delivered")
        .expect("watch ok")
}

/// events.k8s.io updates: the descriptive fields are immutable, a series may grow; kube-rs's Recorder
/// (create, then a merge patch with a series on a repeat) works as on a real cluster.
#[tokio::test]
async fn events_v1_updates_and_the_kube_rs_recorder() {
    let env = env().await;
    let client = env.sim.client().await.unwrap();
    let v1: Api<V1Event> = Api::namespaced(client.clone(), NS);
    create_v1(&env, v1_event("imm", "first")).await.unwrap();
    let err = v1
        .patch("imm", &PatchParams::default(), &Patch::Merge(json!({"note": "second"})))
        .await
        .unwrap_err();
    let (code, msg) = api_message(err);
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "Event.events.k8s.io \"imm\" is invalid: message: Invalid value: \"second\": field is immutable"
    );
    let bad_series = json!({"series": {"count": 1, "lastObservedTime": "2026-01-02T03:04:06.000000Z"}});
    let (code, _) = api_message(
        v1.patch("imm", &PatchParams::default(), &Patch::Merge(bad_series))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "k8s-janus".into(),
            instance: Some("k8s-janus-0".into()),
        },
    );
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("Pod".into()),
        name: Some("app".into()),
        namespace: Some(NS.into()),
        api_version: Some("v1".into()),
        ..Default::default()
    };
    let ev = Event {
        type_: EventType::Warning,
        reason: "Failed".into(),
        note: Some("it failed".into()),
        action: "Grant".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client, NS);
    let published: Vec<CoreEvent> = core
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Failed"))
        .collect();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].series.as_ref().and_then(|s| s.count), Some(2));
    assert!(published[0].count.is_none() && published[0].last_timestamp.is_none());
}

/// The real kubectl reads an events.k8s.io Event through core/v1 (`kubectl get events`,
/// `kubectl events`) and gets the server's refusal of a too-long note.
#[tokio::test]
async fn kubectl_sees_one_event_through_both_apis() {
    let env = env().await;
    let mut e = v1_event("from-recorder", "granted by the recorder");
    e["eventTime"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    create_v1(&env, e).await.unwrap();
    let json_out = env.ok(&["get", "events", "-n", NS, "-o", "json"]).await;
    let list: Value = serde_json::from_str(&json_out).unwrap();
    let item = &list["items"][0];
    assert_eq!(item["apiVersion"], "v1");
    assert_eq!(item["message"], "granted by the recorder");
    assert_eq!(item["involvedObject"]["name"], "app");
    assert!(item["lastTimestamp"].is_null());
    let v1_out = env
        .ok(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            NS,
            "-o",
            "jsonpath={.items[0].note}",
        ])
        .await;
    assert_eq!(v1_out, "granted by the recorder");
    let listed = env.ok(&["events", "-n", NS]).await;
    assert!(listed.contains("granted by the recorder"), "{listed}");
    assert!(listed.contains("Pod/app"), "{listed}");
    // `kubectl get events` prints the server's Table (printEvent): an events.k8s.io Event has no
    // lastTimestamp, so LAST SEEN falls back to its eventTime, and its count is 1.
    let table = env.ok(&["get", "events", "-n", NS]).await;
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert!(row[0].ends_with('s') && row[0] != "<unknown>", "{table}");
    assert_eq!(row[1..5], ["Normal", "Granted", "pod/app", "granted"], "{table}");
    let wide = env
        .ok(&["get", "events.v1.events.k8s.io", "-n", NS, "-o", "wide"])
        .await;
    assert!(wide.contains("example.com/ctl, ctl-1"), "{wide}");

    let mut long = v1_event("too-long", &"n".repeat(1100));
    long["eventTime"] = json!("2026-01-02T03:04:05.000000Z");
    let out = common::kubectl_with(
        &env.kubeconfig,
        &["create", "-f", "-"],
        Some(&serde_json::to_string(&long).unwrap()),
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("message: Invalid value: \"\": can have at most 1024 characters"),
        "{err}"
    );
}
