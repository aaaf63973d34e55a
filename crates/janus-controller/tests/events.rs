#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Events the controller publishes are ones a real API server accepts: kubesim validates
//! events.k8s.io/v1 Events as kube-apiserver does (pkg/apis/core/validation/events.go: a note over
//! 1,024 bytes is refused with 422, and the Event is lost).

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

/// A grant refused by the RBAC escalation check (the controller's `bind` on janus-pod-exec was
/// trimmed away, and so was its ClusterRoleBinding to janus-pod-exec, through which it holds the
/// permissions it grants and could bind without `bind`): the 403 text lists every permission the controller lacks and kube's error repeats
/// it, far past 1,024 bytes. The request still ends Failed with a Warning Event whose note is valid.
#[tokio::test]
async fn a_long_escalation_refusal_becomes_a_valid_event() {
    let sim = central().await;
    let admin = sim.client().await.unwrap();
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let mut ctl_role = roles.get("k8s-janus-controller").await.unwrap();
    for rule in ctl_role.rules.iter_mut().flatten() {
        rule.verbs.retain(|v| v != "bind");
    }
    roles
        .patch(
            "k8s-janus-controller",
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": ctl_role.rules})),
        )
        .await
        .unwrap();
    // Holding every permission of a role lets RBAC allow binding it without `bind` (issue 16's
    // ClusterRoleBindings, which let the controller write pod-scoped Roles without `escalate`).
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    for role in ["exec", "logs", "debug"] {
        bindings
            .delete(&format!("k8s-janus-controller-role-{role}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    let ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("long-403", "central", &["team-a"], 600)).await;
    approve(&sim, "long-403").await;
    let failed = wait_phase(&sim, "long-403", "Failed", 15).await;
    let message = failed.status.unwrap().message;
    assert!(
        message.contains("attempting to grant RBAC permissions not currently held") && message.len() > 1024,
        "the refusal is a long one ({} bytes): {message}",
        message.len()
    );

    let events: Api<Event> = Api::all(admin.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let failed_event = loop {
        let found = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("long-403")
                    && e.reason.as_deref() == Some("Failed")
            });
        if let Some(e) = found {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Failed event was stored for the request"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed_event.type_.as_deref(), Some("Warning"));
    let note = failed_event.note.unwrap_or_default();
    assert!(note.len() <= 1024, "{} bytes", note.len());
    assert!(note.starts_with("k8s-janus is not allowed to"), "{note}");
    assert!(note.contains("Forbidden") && note.contains("HTTP 403"), "{note}");
    assert!(
        note.ends_with("check the chart's RBAC (or the remote agent) there"),
        "{note}"
    );
    // The same Event through core/v1, as `kubectl get events` shows it.
    let ns = failed_event.metadata.namespace.clone().unwrap_or_default();
    let core: Api<CoreEvent> = Api::namespaced(admin, &ns);
    let as_core = core
        .get(failed_event.metadata.name.as_deref().unwrap_or_default())
        .await
        .unwrap();
    assert_eq!(as_core.message.as_deref(), Some(note.as_str()));
    ctl.stop().await;
}

/// The controller's recorder with the chart's controller identity, and a request to publish about.
async fn controller_recorder(
    sim: &kubesim::RunningSim,
    request: &str,
    uid: &str,
) -> (
    janus_controller::recorder::Recorder,
    k8s_openapi::api::core::v1::ObjectReference,
) {
    let token = sa_token(sim, NS, "k8s-janus-controller").await;
    let recorder =
        janus_controller::recorder::Recorder::new(sim.for_token(&token).await, "k8s-janus-controller", "test");
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("k8s-janus.opsmode.io/v1alpha1".into()),
        kind: Some("AccessRequest".into()),
        name: Some(request.into()),
        uid: Some(uid.into()),
        ..Default::default()
    };
    (recorder, regarding)
}

/// The events.k8s.io Events about `request` in `default` (where Events about cluster-scoped objects
/// go), by name.
async fn events_about(admin: &kube::Client, request: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    let mut found: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(request))
        .collect();
    found.sort_by_key(|e| e.metadata.name.clone());
    found
}

/// The controller's recorder, with the chart's controller identity: an identical repeat becomes the
/// first Event's series (the chart's `patch` on events is what that takes), another note is another
/// Event, and a repeat of an Event deleted meanwhile is a new Event.
#[tokio::test]
async fn repeats_fold_into_a_series_and_other_notes_do_not() {
    use janus_controller::recorder::EventType;
    let sim = central().await;
    let admin = sim.client().await.unwrap();
    let (recorder, regarding) = controller_recorder(&sim, "repeats", "5f0c9a52-0d8e-4a43-b8d2-2f4c1b8c0a11").await;
    let publish = |note: &'static str| {
        let (recorder, regarding) = (&recorder, &regarding);
        async move {
            recorder
                .publish(regarding, EventType::Warning, "CleanupPending", note)
                .await
                .unwrap()
        }
    };

    for _ in 0..3 {
        publish("cluster b is unreachable").await;
    }
    let found = events_about(&admin, "repeats").await;
    assert_eq!(found.len(), 1, "one Event for three identical ones");
    let first = &found[0];
    assert_eq!(first.series.as_ref().map(|s| s.count), Some(3));
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(first.reporting_controller.as_deref(), Some("k8s-janus-controller"));
    assert_eq!(first.reporting_instance.as_deref(), Some("test"));
    assert_eq!(first.note.as_deref(), Some("cluster b is unreachable"));

    publish("cluster b refused: 403").await;
    let found = events_about(&admin, "repeats").await;
    assert_eq!(found.len(), 2, "another note is another Event");
    assert!(
        found
            .iter()
            .any(|e| e.note.as_deref() == Some("cluster b refused: 403") && e.series.is_none())
    );

    // Deleted (the API server's Event TTL): the next repeat is a new Event, not an error.
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    events
        .delete(first.metadata.name.as_deref().unwrap(), &DeleteParams::default())
        .await
        .unwrap();
    publish("cluster b is unreachable").await;
    let found = events_about(&admin, "repeats").await;
    assert_eq!(found.len(), 2);
    let again = found
        .iter()
        .find(|e| e.note.as_deref() == Some("cluster b is unreachable"))
        .unwrap();
    assert_ne!(again.metadata.name, first.metadata.name);
    assert!(again.series.is_none());
    assert_eq!(
        recorder.remembered(),
        2,
        "the two notes' Events, the deleted one's entry reused"
    );
}

/// Identical Events published at once (reconciles of one request publish in the background) are one
/// Event whose series counts them all: none is created twice and no count goes backwards.
#[tokio::test]
async fn concurrent_repeats_are_one_event_counting_them_all() {
    use janus_controller::recorder::EventType;
    let sim = central().await;
    let admin = sim.client().await.unwrap();
    let (recorder, regarding) = controller_recorder(&sim, "at-once", "9a4f3e1c-6b2d-4f7a-8c5e-1d2b3a4c5d6e").await;
    let recorder = std::sync::Arc::new(recorder);
    let publishing: Vec<_> = (0..8)
        .map(|_| {
            let recorder = recorder.clone();
            let regarding = regarding.clone();
            tokio::spawn(async move {
                recorder
                    .publish(
                        &regarding,
                        EventType::Warning,
                        "CleanupPending",
                        "cluster b is unreachable",
                    )
                    .await
            })
        })
        .collect();
    for p in publishing {
        p.await.unwrap().unwrap();
    }
    let found = events_about(&admin, "at-once").await;
    assert_eq!(found.len(), 1, "one Event for eight identical ones");
    assert_eq!(found[0].series.as_ref().map(|s| s.count), Some(8));
}
