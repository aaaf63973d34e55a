#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Post-approval invariants, end to end against kubesim: the controller re-validates every reconcile
//! and ends a request whose spec no longer matches what was approved, whoever changed it.
//!
//! The changes here are made by a privileged client, as a compromised web ServiceAccount or a
//! mis-scoped RoleBinding could. The CRD is installed WITHOUT its CEL rules (`x-kubernetes-validations`),
//! as on a cluster whose CRD was not upgraded with the chart: with the rules the API server refuses
//! these patches before the controller sees them (tested with kubectl elsewhere); these tests prove the
//! controller's own defence, which must hold without them.

mod common;

use std::time::Duration;

use common::*;
use janus_api::AccessRequest;
use janus_api::access_request::reasons;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kubesim::RunningSim;
use serde_json::{Value, json};

/// A privileged merge patch of the spec, bypassing the web.
async fn patch_spec(sim: &RunningSim, name: &str, spec: Value) {
    let api: Api<AccessRequest> = Api::all(sim.client().await.expect("client"));
    api.patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": spec})))
        .await
        .expect("the privileged patch is accepted (no CEL rules installed)");
}

async fn assert_token_refused(sim: &RunningSim, ns: &str, token: &str) {
    assert_token_dead(sim, ns, token).await;
}

/// RoleBindings made by k8s-janus anywhere on the cluster.
async fn janus_role_bindings(sim: &RunningSim) -> Vec<String> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=k8s-janus");
    Api::<RoleBinding>::all(sim.client().await.expect("client"))
        .list(&lp)
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|rb| {
            format!(
                "{}/{}",
                rb.metadata.namespace.unwrap_or_default(),
                rb.metadata.name.unwrap_or_default()
            )
        })
        .collect()
}

/// The condition named after the phase: (reason, message).
fn phase_condition(ar: &AccessRequest) -> (String, String) {
    let st = ar.status.as_ref().expect("status");
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == st.phase.to_string())
        .unwrap_or_else(|| panic!("no {} condition in {:?}", st.phase, st.conditions));
    (c.reason.clone(), c.message.clone())
}

/// Approves a request on team-a, waits until it is Active, applies `change` with a privileged client,
/// and checks that the request ends Failed for `want_reason`, naming `want_field`, with every
/// credential gone and nothing granted in the namespaces the change names.
async fn tampered(name: &str, change: Value, want_reason: &str, want_field: &str) {
    let sim = central_without_cel().await;
    let cfg = config("excludedNamespaces: [kube-system, team-c]\nmaxTtlSeconds: 3600\n");
    let _ctl = Controller::start(&sim, cfg).await;
    create(&sim, &request(name, "central", &["team-a"], 600)).await;
    approve(&sim, name).await;
    let active = wait_phase(&sim, name, "Active", 10).await;
    let approved = active.status.as_ref().and_then(|s| s.approved.clone());
    let toks = tokens(&sim, name).await;
    assert_eq!(toks.len(), 1);

    patch_spec(&sim, name, change).await;
    let failed = wait_phase(&sim, name, "Failed", 15).await;
    let (reason, message) = phase_condition(&failed);
    assert_eq!(reason, want_reason, "{message}");
    assert!(
        message.contains(want_field),
        "the condition names {want_field}: {message}"
    );
    assert_eq!(failed.status.as_ref().unwrap().message, message);
    assert!(
        failed
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "CredentialsRemoved" && c.status == "True"),
        "{:?}",
        failed.status
    );
    assert_token_refused(&sim, "team-a", &toks[0].1).await;
    assert!(leftovers(&sim, &sim, name).await.is_empty(), "credentials left");
    assert_eq!(
        janus_role_bindings(&sim).await,
        Vec::<String>::new(),
        "RoleBindings left"
    );
    assert!(
        tokens(&sim, name).await.is_empty(),
        "no token for an added namespace either"
    );
    // The audit log says what happened, from the object alone.
    let events = janus_store::recorder::events_from_request(&failed);
    let want_kind = if want_reason == reasons::SPEC_CHANGED_AFTER_APPROVAL {
        "request.spec_changed"
    } else {
        "request.failed"
    };
    let ev = events
        .iter()
        .find(|e| e.kind.as_str() == want_kind)
        .unwrap_or_else(|| panic!("no {want_kind} in {events:?}"));
    if want_kind == "request.spec_changed" {
        assert!(
            ev.details["changed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == want_field),
            "{}",
            ev.details
        );
        assert!(
            ev.details["observed"][want_field] != ev.details["approved"][want_field],
            "{}",
            ev.details
        );
    } else {
        assert_eq!(ev.details["condition_reason"], want_reason);
    }
    assert!(
        !ev.details.to_string().contains(&toks[0].1),
        "no token in the audit log"
    );
    // What was approved was recorded at approval and is kept, so the status still shows it.
    assert!(
        approved.as_ref().is_some_and(|a| a.digest.starts_with("sha256:")),
        "what was approved is recorded in status: {:?}",
        active.status
    );
    assert_eq!(failed.status.unwrap().approved, approved);
}

#[tokio::test]
async fn adding_the_janus_namespace_after_approval_ends_the_request() {
    tampered(
        "add-janus-ns",
        json!({"namespaces": ["team-a", "k8s-janus"]}),
        reasons::SPEC_CHANGED_AFTER_APPROVAL,
        "spec.namespaces",
    )
    .await;
}

#[tokio::test]
async fn adding_an_excluded_namespace_after_approval_ends_the_request() {
    tampered(
        "add-excluded-ns",
        json!({"namespaces": ["team-a", "team-c"]}),
        reasons::SPEC_CHANGED_AFTER_APPROVAL,
        "spec.namespaces",
    )
    .await;
}

#[tokio::test]
async fn raising_the_approved_ttl_past_max_ends_the_request() {
    tampered(
        "raise-ttl",
        json!({"approval": {"by": "admin@example.com", "at": now(), "ttlSeconds": 604800}}),
        reasons::SPEC_CHANGED_AFTER_APPROVAL,
        "spec.approval.ttlSeconds",
    )
    .await;
}

#[tokio::test]
async fn changing_the_requester_after_approval_ends_the_request() {
    tampered(
        "new-requester",
        json!({"requester": "mallory@example.com"}),
        reasons::SPEC_CHANGED_AFTER_APPROVAL,
        "spec.requester",
    )
    .await;
}

#[tokio::test]
async fn an_extension_longer_than_the_web_allows_ends_the_request() {
    // Not a change of what was approved, but no longer valid: the web never writes an extension
    // above maxTtlSeconds (3600 here).
    tampered(
        "huge-extension",
        json!({"extensions": [{"by": "admin@example.com", "at": now(), "seconds": 600000}]}),
        reasons::VALIDATION_FAILED,
        "extension 0",
    )
    .await;
}

#[tokio::test]
async fn a_live_request_is_revalidated_against_the_configuration_as_it_is_now() {
    let sim = central_without_cel().await;
    let ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("reval", "central", &["team-a"], 600)).await;
    approve(&sim, "reval").await;
    wait_phase(&sim, "reval", "Active", 10).await;
    let toks = tokens(&sim, "reval").await;
    ctl.stop().await;
    // The operator excludes team-a: the next controller must not keep (or renew) access there.
    let _ctl = Controller::start(&sim, config("excludedNamespaces: [kube-system, team-a]\n")).await;
    let failed = wait_phase(&sim, "reval", "Failed", 15).await;
    let (reason, message) = phase_condition(&failed);
    assert_eq!(reason, reasons::VALIDATION_FAILED);
    assert!(message.contains("namespace \"team-a\" is excluded"), "{message}");
    assert_token_refused(&sim, "team-a", &toks[0].1).await;
    assert!(leftovers(&sim, &sim, "reval").await.is_empty());
}

#[tokio::test]
async fn a_pending_timeout_is_marked_by_its_condition_reason() {
    let sim = central().await;
    let _ctl = Controller::start(&sim, config("pendingExpirySeconds: 2\n")).await;
    create(&sim, &request("late", "central", &["team-a"], 600)).await;
    let denied = wait_phase(&sim, "late", "Denied", 10).await;
    assert_eq!(phase_condition(&denied).0, reasons::PENDING_TIMEOUT);
    // A validation denial has its own reason.
    create(&sim, &request("bad-ns", "central", &["k8s-janus"], 600)).await;
    let denied = wait_phase(&sim, "bad-ns", "Denied", 10).await;
    assert_eq!(phase_condition(&denied).0, reasons::VALIDATION_FAILED);
    // Requests on which nothing changed keep working and keep their baseline.
    create(&sim, &request("fine", "central", &["team-b"], 600)).await;
    approve(&sim, "fine").await;
    let ok = wait_phase(&sim, "fine", "Active", 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = get(&sim, "fine").await.unwrap();
    assert_eq!(phase(&again), "Active");
    assert_eq!(again.status.unwrap().approved, ok.status.unwrap().approved);
}

#[tokio::test]
async fn without_the_cel_rules_a_denial_next_to_an_approval_still_wins() {
    // The API server with the rules refuses the second decision; without them both can land, and the
    // controller must end in the safest state.
    let sim = central_without_cel().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("race", "central", &["team-a", "team-b"], 600)).await;
    approve(&sim, "race").await;
    decide(
        &sim,
        "race",
        "denial",
        json!({"by": "other-admin@example.com", "at": now(), "reason": "changed my mind"}),
    )
    .await;
    wait_phase(&sim, "race", "Denied", 10).await;
    assert!(leftovers(&sim, &sim, "race").await.is_empty());
    // Terminal phases never change again, even when the approval is rewritten.
    decide(
        &sim,
        "race",
        "approval",
        json!({"by": "admin@example.com", "at": now(), "ttlSeconds": 604800}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(phase(&get(&sim, "race").await.unwrap()), "Denied");
    assert!(leftovers(&sim, &sim, "race").await.is_empty());
}

/// Runs the real kubectl against a sim as its admin.
async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    let child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl on PATH");
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished in 60s")
        .expect("kubectl ran")
}

#[tokio::test]
async fn with_the_cel_rules_kubectl_cannot_change_an_approved_request() {
    // The CRD as `janus crd` prints it, rules included.
    let sim = central().await;
    let _ctl = Controller::start(&sim, config("")).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc).unwrap();
    create(&sim, &request("locked", "central", &["team-a"], 600)).await;
    approve(&sim, "locked").await;
    wait_phase(&sim, "locked", "Active", 10).await;
    let toks = tokens(&sim, "locked").await;

    for (patch, want) in [
        (
            r#"{"spec":{"namespaces":["team-a","k8s-janus"]}}"#,
            r#"The AccessRequest "locked" is invalid: spec.namespaces: Invalid value: "array": namespaces are immutable"#,
        ),
        (
            r#"{"spec":{"approval":{"ttlSeconds":604800}}}"#,
            r#"spec.approval: Invalid value: "object": approval can be set once and is never changed or removed"#,
        ),
        (
            r#"{"spec":{"requester":"mallory@example.com"}}"#,
            r#"spec.requester: Invalid value: "string": requester is immutable"#,
        ),
        (
            r#"{"spec":{"denial":{"by":"b@example.com","at":"2026-01-01T00:00:00Z","reason":"x"}}}"#,
            "spec: Invalid value: \"object\": a request is either approved or denied, not both",
        ),
    ] {
        let out = kubectl(&kc, &["patch", "accessrequest", "locked", "--type=merge", "-p", patch]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{patch} was accepted");
        assert!(stderr.contains(want), "{patch}: {stderr}");
    }
    // Nothing changed: still active on what was approved, the token still works.
    let ar = get(&sim, "locked").await.unwrap();
    assert_eq!(phase(&ar), "Active");
    assert_eq!(ar.spec.namespaces, ["team-a"]);
    let pods: Api<Pod> = Api::namespaced(sim.client_for_token(&toks[0].1).await.unwrap(), "team-a");
    pods.list(&ListParams::default()).await.unwrap();
    // The web's own kind of change passes: an appended extension, then a revocation.
    let ext = format!(
        r#"{{"spec":{{"extensions":[{{"by":"admin@example.com","at":"{}","seconds":60}}]}}}}"#,
        now()
    );
    let out = kubectl(&kc, &["patch", "accessrequest", "locked", "--type=merge", "-p", &ext]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revoke = format!(
        r#"{{"spec":{{"revocation":{{"by":"admin@example.com","at":"{}","reason":"done"}}}}}}"#,
        now()
    );
    let out = kubectl(
        &kc,
        &["patch", "accessrequest", "locked", "--type=merge", "-p", &revoke],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_phase(&sim, "locked", "Revoked", 10).await;
    assert_token_refused(&sim, "team-a", &toks[0].1).await;
}

/// Registers `remote` on `central` by a labelled kubeconfig Secret, with the agent's identity.
async fn register_remote(central: &RunningSim, remote: &RunningSim) {
    let agent_token = sa_token(remote, NS, "k8s-janus-agent").await;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "remote-kubeconfig", "namespace": NS, "labels": {"k8s-janus.opsmode.io/cluster": "remote"}},
        "stringData": {"kubeconfig": remote.kubeconfig_for_token(&agent_token)}
    }))
    .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(central.client().await.expect("client"), NS)
        .create(&Default::default(), &secret)
        .await
        .expect("kubeconfig Secret");
}

#[tokio::test]
async fn moving_an_active_request_to_another_cluster_cleans_up_the_approved_one() {
    // The cleanup of a request failed for a changed `spec.cluster` must go to the cluster that holds
    // the credentials (the approved one), not to the one the spec names now.
    let sim = central_without_cel().await;
    let remote = remote().await;
    register_remote(&sim, &remote).await;
    let cfg = config("clusters: [{name: central, displayName: Central}, {name: remote, displayName: Remote}]\n");
    let _ctl = Controller::start(&sim, cfg).await;
    // One moved to another known cluster, one to a name nobody knows.
    for (name, to) in [("moved", "central"), ("lost", "nowhere")] {
        create(&sim, &request(name, "remote", &["team-b"], 600)).await;
        approve(&sim, name).await;
        wait_phase(&sim, name, "Active", 10).await;
        let toks = tokens(&sim, name).await;
        assert_eq!(toks.len(), 1);
        let pods: Api<Pod> = Api::namespaced(remote.client_for_token(&toks[0].1).await.expect("client"), "team-b");
        pods.list(&ListParams::default())
            .await
            .expect("the token works on the remote");

        patch_spec(&sim, name, json!({"cluster": to})).await;
        let failed = wait_phase(&sim, name, "Failed", 15).await;
        let (reason, message) = phase_condition(&failed);
        assert_eq!(reason, reasons::SPEC_CHANGED_AFTER_APPROVAL, "{message}");
        assert!(message.contains("spec.cluster"), "{message}");
        let st = failed.status.as_ref().expect("status");
        assert!(
            st.conditions
                .iter()
                .any(|c| c.type_ == "CredentialsRemoved" && c.status == "True"),
            "{st:?}"
        );
        assert_eq!(
            leftovers(&sim, &remote, name).await,
            Vec::<String>::new(),
            "{name}: credentials left on the approved (remote) cluster"
        );
        assert_eq!(janus_role_bindings(&remote).await, Vec::<String>::new(), "{name}");
        assert_token_refused(&remote, "team-b", &toks[0].1).await;
    }
}

/// A merge patch of the status subresource, as anyone with `accessrequests/status` can write.
async fn patch_status(sim: &RunningSim, name: &str, status: Value) {
    let api: Api<AccessRequest> = Api::all(sim.client().await.expect("client"));
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
        .await
        .expect("status patch");
}

#[tokio::test]
async fn removing_the_approval_record_of_an_active_request_ends_it() {
    // Cleared, the baseline would otherwise be recorded again from whatever the spec says next.
    let sim = central_without_cel().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("unrecorded", "central", &["team-a"], 600)).await;
    approve(&sim, "unrecorded").await;
    let active = wait_phase(&sim, "unrecorded", "Active", 10).await;
    let approved = active.status.as_ref().and_then(|s| s.approved.clone());
    assert!(approved.is_some());
    let toks = tokens(&sim, "unrecorded").await;

    // Cleared, then the spec widened: without the rule the baseline would be recorded anew from it.
    // (A status write alone does not wake the controller; the spec change does, and the resync would.)
    patch_status(&sim, "unrecorded", json!({"approved": null})).await;
    patch_spec(&sim, "unrecorded", json!({"namespaces": ["team-a", "team-b"]})).await;
    let failed = wait_phase(&sim, "unrecorded", "Failed", 15).await;
    let (reason, message) = phase_condition(&failed);
    assert_eq!(reason, reasons::SPEC_CHANGED_AFTER_APPROVAL, "{message}");
    assert!(message.contains("approval record removed"), "{message}");
    assert_token_refused(&sim, "team-a", &toks[0].1).await;
    assert!(leftovers(&sim, &sim, "unrecorded").await.is_empty());
    assert!(tokens(&sim, "unrecorded").await.is_empty(), "nothing granted in team-b");
    // The baseline the controller saw is written back, so the record shows what was approved.
    assert_eq!(failed.status.expect("status").approved, approved);
}

#[tokio::test]
async fn a_request_activated_before_baselines_existed_gets_one_recorded() {
    // An upgrade: the request was activated by a controller that recorded no baseline (simulated by
    // clearing it while no controller runs). The next controller records it and keeps the access.
    let sim = central_without_cel().await;
    let ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("legacy", "central", &["team-a"], 600)).await;
    approve(&sim, "legacy").await;
    let active = wait_phase(&sim, "legacy", "Active", 10).await;
    let approved = active.status.as_ref().and_then(|s| s.approved.clone());
    ctl.stop().await;
    patch_status(&sim, "legacy", json!({"approved": null})).await;
    // activeAt is in whole seconds: the next controller starts in a later second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ctl = Controller::start(&sim, config("")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ar = get(&sim, "legacy").await.expect("request");
        assert_eq!(phase(&ar), "Active", "{:?}", ar.status);
        if ar.status.as_ref().and_then(|s| s.approved.clone()) == approved {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "baseline not recorded: {:?}",
            ar.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let toks = tokens(&sim, "legacy").await;
    let pods: Api<Pod> = Api::namespaced(sim.client_for_token(&toks[0].1).await.expect("client"), "team-a");
    pods.list(&ListParams::default()).await.expect("still granted");
}

#[tokio::test]
async fn with_the_cel_rules_a_json_patch_cannot_null_a_decision() {
    // An API server keeps an explicit null in a nullable field and prunes it from any other; the
    // decisions are not nullable, so the null is pruned (kubesim does as the API server does) and the
    // removal rule at `spec` refuses the patch. The revocation stays.
    let sim = central().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("nulled", "central", &["team-a"], 600)).await;
    approve(&sim, "nulled").await;
    wait_phase(&sim, "nulled", "Active", 10).await;
    decide(
        &sim,
        "nulled",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": "done"}),
    )
    .await;
    wait_phase(&sim, "nulled", "Revoked", 10).await;
    let api: Api<AccessRequest> = Api::all(sim.client().await.expect("client"));
    for op in ["replace", "add"] {
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": op, "path": "/spec/revocation", "value": null}])).expect("patch");
        let result = api
            .patch("nulled", &PatchParams::default(), &Patch::<()>::Json(patch))
            .await;
        let ar = get(&sim, "nulled").await.expect("request");
        assert!(
            ar.spec.revocation.is_some(),
            "{op} /spec/revocation null removed the decision ({result:?})"
        );
        match &result {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{s:?}");
                assert!(s.message.contains("are never removed once made"), "{}", s.message);
            }
            other => panic!("{op} /spec/revocation null was not refused: {other:?}"),
        }
    }
}
