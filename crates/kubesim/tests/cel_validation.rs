#![allow(clippy::unwrap_used, clippy::expect_used)]
//! CRD `x-kubernetes-validations` (CEL) rules enforced by kubesim, seen through clients we did not
//! write (the real `kubectl`) and through kube-rs, the client k8s-janus uses.

mod common;

use common::{Env, kubectl_with};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// A CRD with the kinds of invariants k8s-janus states: an immutable field, a bound, a decision that
/// is set once, a list that only grows, a final status phase, and a root rule with a fieldPath.
const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: tickets.cel.example.io
spec:
  group: cel.example.io
  scope: Namespaced
  names: {plural: tickets, singular: ticket, kind: Ticket}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-validations:
        - rule: "!has(self.spec.decision) || self.spec.decision != 'Approved' || has(self.spec.approver)"
          message: an approved ticket names its approver
          fieldPath: .spec.approver
          reason: FieldValueRequired
        properties:
          spec:
            type: object
            required: [requester]
            x-kubernetes-validations:
            - rule: "!has(oldSelf.decision) || (has(self.decision) && self.decision == oldSelf.decision)"
              message: decision can be set once
            properties:
              requester:
                type: string
                x-kubernetes-validations:
                - {rule: "self == oldSelf", message: requester is immutable}
              ttlSeconds:
                type: integer
                x-kubernetes-validations:
                - rule: "self <= 604800"
                  messageExpression: "'ttlSeconds ' + string(self) + ' exceeds 604800'"
              decision: {type: string}
              approver: {type: string}
              note: {type: string}
          status:
            type: object
            properties:
              phase:
                type: string
                x-kubernetes-validations:
                - {rule: "oldSelf != 'Expired' || self == 'Expired'", message: Expired is final}
              approvals:
                type: array
                items: {type: string}
                x-kubernetes-validations:
                - {rule: "self.size() >= oldSelf.size()", message: approvals are append-only, reason: FieldValueForbidden}
"#;

const TICKET: &str = "apiVersion: cel.example.io/v1\nkind: Ticket\nmetadata: {name: t1, namespace: default}\nspec: {requester: alice, ttlSeconds: 3600}\n";

async fn with_crd() -> Env {
    let env = Env::new().await;
    env.ok_stdin(&["apply", "-f", "-"], CRD).await;
    env.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/tickets.cel.example.io",
        "--timeout=20s",
    ])
    .await;
    env
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn get(env: &Env) -> Value {
    let out = env.ok(&["get", "ticket", "t1", "-o", "json"]).await;
    serde_json::from_str(&out).expect("JSON")
}

#[tokio::test]
async fn kubectl_patch_violating_a_rule_is_refused_like_a_real_cluster() {
    let env = with_crd().await;
    env.ok_stdin(&["apply", "-f", "-"], TICKET).await;

    // Merge patch that changes an immutable field: 422 with the field path, as kubectl prints it.
    let err = env
        .fails(&[
            "patch",
            "ticket",
            "t1",
            "--type=merge",
            "-p",
            r#"{"spec":{"requester":"mallory"}}"#,
        ])
        .await;
    assert_eq!(
        err.trim(),
        r#"The Ticket "t1" is invalid: spec.requester: Invalid value: "string": requester is immutable"#
    );
    // A patch that keeps the rules passes.
    env.ok(&[
        "patch",
        "ticket",
        "t1",
        "--type=merge",
        "-p",
        r#"{"spec":{"note":"hi"}}"#,
    ])
    .await;
    assert_eq!(get(&env).await["spec"]["requester"], "alice");

    // JSON patch past a bound, with the messageExpression's message.
    let err = env
        .fails(&[
            "patch",
            "ticket",
            "t1",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/ttlSeconds","value":999999}]"#,
        ])
        .await;
    assert_eq!(
        err.trim(),
        r#"The Ticket "t1" is invalid: spec.ttlSeconds: Invalid value: "integer": ttlSeconds 999999 exceeds 604800"#
    );

    // Set once: the first decision is accepted, changing it is not; the root rule's fieldPath and
    // reason decide the field and the wording.
    let err = env
        .fails(&[
            "patch",
            "ticket",
            "t1",
            "--type=merge",
            "-p",
            r#"{"spec":{"decision":"Approved"}}"#,
        ])
        .await;
    assert_eq!(
        err.trim(),
        r#"The Ticket "t1" is invalid: spec.approver: Required value: an approved ticket names its approver"#
    );
    env.ok(&[
        "patch",
        "ticket",
        "t1",
        "--type=merge",
        "-p",
        r#"{"spec":{"decision":"Approved","approver":"bob"}}"#,
    ])
    .await;
    let err = env
        .fails(&[
            "patch",
            "ticket",
            "t1",
            "--type=merge",
            "-p",
            r#"{"spec":{"decision":"Denied"}}"#,
        ])
        .await;
    assert_eq!(
        err.trim(),
        r#"The Ticket "t1" is invalid: spec: Invalid value: "object": decision can be set once"#
    );

    // Several broken rules are reported together, each with its field.
    let err = env
        .fails(&[
            "patch",
            "ticket",
            "t1",
            "--type=merge",
            "-p",
            r#"{"spec":{"requester":"eve","ttlSeconds":700000}}"#,
        ])
        .await;
    assert!(
        err.contains("* spec.requester: Invalid value: \"string\": requester is immutable")
            && err.contains("* spec.ttlSeconds: Invalid value: \"integer\": ttlSeconds 700000 exceeds 604800"),
        "{err}"
    );

    // Server-side apply and replace go through the same rules.
    let changed = TICKET.replace("alice", "mallory");
    let out = kubectl_with(
        &env.kubeconfig,
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&changed),
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains(r#"spec.requester: Invalid value: "string": requester is immutable"#),
        "{}",
        stderr_of(&out)
    );
    let mut current = get(&env).await;
    current["spec"]["requester"] = json!("mallory");
    let out = kubectl_with(&env.kubeconfig, &["replace", "-f", "-"], Some(&current.to_string())).await;
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("requester is immutable"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(get(&env).await["spec"]["requester"], "alice", "nothing was stored");
}

#[tokio::test]
async fn kubectl_status_writes_are_checked_with_the_whole_object() {
    let env = with_crd().await;
    env.ok_stdin(&["apply", "-f", "-"], TICKET).await;
    let status = |p: &'static str| ["patch", "ticket", "t1", "--subresource=status", "--type=merge", "-p", p];
    env.ok(&status(r#"{"status":{"phase":"Active","approvals":["bob"]}}"#))
        .await;
    let err = env.fails(&status(r#"{"status":{"approvals":[]}}"#)).await;
    assert_eq!(
        err.trim(),
        r#"The Ticket "t1" is invalid: status.approvals: Forbidden: approvals are append-only"#
    );
    env.ok(&status(r#"{"status":{"phase":"Expired"}}"#)).await;
    let err = env.fails(&status(r#"{"status":{"phase":"Active"}}"#)).await;
    assert_eq!(
        err.trim(),
        r#"The Ticket "t1" is invalid: status.phase: Invalid value: "string": Expired is final"#
    );
    assert_eq!(get(&env).await["status"]["phase"], "Expired");
}

#[tokio::test]
async fn kubectl_create_runs_rules_without_old_self() {
    let env = with_crd().await;
    // Transition rules do not run on create; the others do.
    let out = kubectl_with(
        &env.kubeconfig,
        &["create", "-f", "-"],
        Some("apiVersion: cel.example.io/v1\nkind: Ticket\nmetadata: {name: t2, namespace: default}\nspec: {requester: a, ttlSeconds: 604801, decision: Approved}\n"),
    )
    .await;
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains(r#"spec.ttlSeconds: Invalid value: "integer": ttlSeconds 604801 exceeds 604800"#)
            && err.contains(r#"spec.approver: Required value: an approved ticket names its approver"#),
        "{err}"
    );
    assert!(!err.contains("immutable") && !err.contains("set once"), "{err}");
    // A schema error that the rules could trip on stops the rules, with the real server's note.
    let out = kubectl_with(
        &env.kubeconfig,
        &["create", "-f", "-"],
        Some("apiVersion: cel.example.io/v1\nkind: Ticket\nmetadata: {name: t3, namespace: default}\nspec: {ttlSeconds: 604801}\n"),
    )
    .await;
    let err = stderr_of(&out);
    assert!(
        err.contains("spec.requester: Required value")
            && err.contains("some validation rules were not checked because the object was invalid"),
        "{err}"
    );
}

#[tokio::test]
async fn kubectl_crd_with_an_uncompilable_rule_is_refused() {
    let env = Env::new().await;
    let broken = CRD.replace(r#"rule: "self <= 604800""#, r#"rule: "self <= ""#);
    let out = kubectl_with(&env.kubeconfig, &["apply", "-f", "-"], Some(&broken)).await;
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains(r#"The CustomResourceDefinition "tickets.cel.example.io" is invalid: spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[ttlSeconds].x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:"self <= ""#)
            && err.contains("compilation failed: ERROR: <input>:1:"),
        "{err}"
    );
    // What cel-go's type checker refuses: fields the schema does not declare, fields of a scalar.
    let unknown_field = CRD.replace("!has(oldSelf.decision)", "!has(oldSelf.decisions)");
    let out = kubectl_with(&env.kubeconfig, &["apply", "-f", "-"], Some(&unknown_field)).await;
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("undefined field 'decisions'"),
        "{}",
        stderr_of(&out)
    );
    let scalar_field = CRD.replace("self == oldSelf", "self == oldSelf.name");
    let out = kubectl_with(&env.kubeconfig, &["apply", "-f", "-"], Some(&scalar_field)).await;
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("type 'string' does not support field selection"),
        "{}",
        stderr_of(&out)
    );
    let misuse = CRD.replace(
        r#"- rule: "self <= 604800""#,
        "- optionalOldSelf: true\n                  rule: \"self <= 604800\"",
    );
    let out = kubectl_with(&env.kubeconfig, &["apply", "-f", "-"], Some(&misuse)).await;
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains(
            "x-kubernetes-validations[0].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"
        ),
        "{}",
        stderr_of(&out)
    );
    // Nothing was created by the refused applies; the good CRD is accepted.
    let out = kubectl_with(&env.kubeconfig, &["get", "crd", "tickets.cel.example.io"], None).await;
    assert!(!out.status.success());
    env.ok_stdin(&["apply", "-f", "-"], CRD).await;
}

#[tokio::test]
async fn kube_rs_sees_422_invalid_with_the_cause_field() {
    let env = with_crd().await;
    env.ok_stdin(&["apply", "-f", "-"], TICKET).await;
    let client = env.sim.client().await.expect("client");
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("cel.example.io", "v1", "Ticket"), "tickets");
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let err = api
        .patch(
            "t1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"requester": "mallory"}})),
        )
        .await
        .expect_err("immutable requester");
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    let details = status.details.expect("details");
    assert_eq!(details.kind, "Ticket");
    assert_eq!(details.group, "cel.example.io");
    assert_eq!(details.name, "t1");
    assert_eq!(details.causes.len(), 1);
    assert_eq!(details.causes[0].field, "spec.requester");
    assert_eq!(details.causes[0].reason, "FieldValueInvalid");
    assert_eq!(
        details.causes[0].message,
        r#"Invalid value: "string": requester is immutable"#
    );
    assert_eq!(
        status.message,
        r#"Ticket.cel.example.io "t1" is invalid: spec.requester: Invalid value: "string": requester is immutable"#
    );
    // Server-side apply from kube-rs is checked too, and a valid create passes.
    let applied = api
        .patch(
            "t1",
            &PatchParams::apply("test").force(),
            &Patch::Apply(
                json!({"apiVersion": "cel.example.io/v1", "kind": "Ticket", "spec": {"requester": "mallory"}}),
            ),
        )
        .await
        .expect_err("apply of an immutable field");
    assert!(
        matches!(applied, kube::Error::Api(ref s) if s.code == 422),
        "{applied:?}"
    );
    let mut t2: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "cel.example.io/v1", "kind": "Ticket",
        "metadata": {"name": "t2"}, "spec": {"requester": "bob", "ttlSeconds": 60}
    }))
    .expect("object");
    t2.metadata.namespace = Some("default".into());
    api.create(&PostParams::default(), &t2).await.expect("valid create");
}

/// A write carrying a resourceVersion that is no longer current is a 409 Conflict, whatever the rules
/// would say of it: kube-apiserver compares the versions before it validates the update
/// (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go, `Store.Update`: `NewConflict`
/// when `newResourceVersion != existingResourceVersion`, before `rest.BeforeUpdate` and the validating
/// admission). A client that appends to a list under a precondition relies on it: it must see the
/// conflict and retry on the new version, not a rule violation its stale list caused.
#[tokio::test]
async fn a_stale_resource_version_is_a_conflict_before_the_rules_are_checked() {
    let env = with_crd().await;
    env.ok_stdin(&["apply", "-f", "-"], TICKET).await;
    let client = env.sim.client().await.expect("client");
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("cel.example.io", "v1", "Ticket"), "tickets");
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let read = api.get("t1").await.expect("read");
    let stale = read.metadata.resource_version.clone().expect("resourceVersion");
    api.patch(
        "t1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"note": "moved on"}})),
    )
    .await
    .expect("another write");
    // Stale and breaking a rule: the conflict is reported.
    let broken = json!({"metadata": {"resourceVersion": stale}, "spec": {"requester": "mallory"}});
    let err = api
        .patch("t1", &PatchParams::default(), &Patch::Merge(broken))
        .await
        .expect_err("stale");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
    // Current and breaking a rule: the rule is reported.
    let current = api
        .get("t1")
        .await
        .expect("read")
        .metadata
        .resource_version
        .expect("rv");
    let broken = json!({"metadata": {"resourceVersion": current}, "spec": {"requester": "mallory"}});
    let err = api
        .patch("t1", &PatchParams::default(), &Patch::Merge(broken))
        .await
        .expect_err("invalid");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 422), "{err:?}");
    assert_eq!(get(&env).await["spec"]["requester"], "alice");
}

/// The AccessRequest CRD the chart ships (k8s-janus's own rules) is accepted by kubesim, and its rules
/// hold through the real kubectl: what was asked is fixed, decisions are set once, extensions only grow.
#[tokio::test]
async fn kubectl_with_the_shipped_access_request_crd() {
    let env = Env::new().await;
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../charts/k8s-janus/files/crd.yaml"
    ))
    .expect("chart CRD");
    env.ok_stdin(&["apply", "-f", "-"], &crd).await;
    env.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/accessrequests.k8s-janus.opsmode.io",
        "--timeout=20s",
    ])
    .await;
    let ar = "apiVersion: k8s-janus.opsmode.io/v1alpha1\nkind: AccessRequest\nmetadata: {name: ar-1}\nspec: {requester: alice@example.com, cluster: prod, namespaces: [payments], reason: debug a stuck job, ttlSeconds: 3600}\n";
    env.ok_stdin(&["apply", "-f", "-"], ar).await;
    let patch = |p: &'static str| ["patch", "accessrequest", "ar-1", "--type=merge", "-p", p];
    for (p, expected) in [
        (
            r#"{"spec":{"namespaces":["payments","kube-system"]}}"#,
            r#"The AccessRequest "ar-1" is invalid: spec.namespaces: Invalid value: "array": namespaces are immutable"#,
        ),
        (
            r#"{"spec":{"requester":"mallory@example.com"}}"#,
            r#"The AccessRequest "ar-1" is invalid: spec.requester: Invalid value: "string": requester is immutable"#,
        ),
        (
            r#"{"spec":{"ttlSeconds":7200}}"#,
            r#"The AccessRequest "ar-1" is invalid: spec.ttlSeconds: Invalid value: "integer": ttlSeconds is immutable"#,
        ),
    ] {
        let err = env.fails(&patch(p)).await;
        assert_eq!(err.trim(), expected, "{p}");
    }
    env.ok(&patch(
        r#"{"spec":{"approval":{"by":"bob@example.com","at":"2026-01-01T00:00:00Z"}}}"#,
    ))
    .await;
    let err = env
        .fails(&patch(
            r#"{"spec":{"approval":{"by":"eve@example.com","at":"2026-01-01T00:00:00Z"}}}"#,
        ))
        .await;
    assert_eq!(
        err.trim(),
        r#"The AccessRequest "ar-1" is invalid: spec.approval: Invalid value: "object": approval can be set once and is never changed or removed"#
    );
    // Removal is seen only from the parent: the rule on the field is not evaluated once it is gone.
    let err = env.fails(&patch(r#"{"spec":{"approval":null}}"#)).await;
    assert!(
        err.contains("spec: Invalid value: \"object\": decisions (approval, denial, revocation, withdrawal) are never removed once made"),
        "{err}"
    );
    let ext1 = r#"{"spec":{"extensions":[{"by":"bob@example.com","at":"2026-01-01T01:00:00Z","seconds":600}]}}"#;
    env.ok(&patch(ext1)).await;
    env.ok(&patch(
        r#"{"spec":{"extensions":[{"by":"bob@example.com","at":"2026-01-01T01:00:00Z","seconds":600},{"by":"bob@example.com","at":"2026-01-01T02:00:00Z","seconds":60}]}}"#,
    ))
    .await;
    let err = env
        .fails(&patch(
            r#"{"spec":{"extensions":[{"by":"bob@example.com","at":"2026-01-01T01:00:00Z","seconds":6000}]}}"#,
        ))
        .await;
    assert!(
        err.contains("spec.extensions: Invalid value: \"array\": extensions are append-only"),
        "{err}"
    );
    let err = env
        .fails(&patch(
            r#"{"spec":{"denial":{"by":"bob@example.com","at":"2026-01-01T00:00:00Z"}}}"#,
        ))
        .await;
    assert!(
        err.contains("spec: Invalid value: \"object\": a request is either approved or denied, not both"),
        "{err}"
    );
}
