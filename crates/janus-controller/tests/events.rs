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
