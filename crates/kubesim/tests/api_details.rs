#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Smaller API details where kubesim once differed from kube-apiserver (issue 20): RBAC checks on
//! metadata-only and roleRef updates, binding defaults, ownerReference validation, generation and
//! status code of a deletion held by finalizers, precondition texts and metadata-only lists.
//!
//! Each test names the kube-apiserver source file whose behaviour it pins down.

mod common;

use common::{Env, kubectl_with};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use serde_json::{Value, json};

/// A raw request through kube's client: status code and JSON body (Status bodies included).
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            serde_json::to_vec(&b).unwrap()
        }
        None => Vec::new(),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .send(req.body(kube::client::Body::from(bytes)).unwrap())
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A merge patch as a raw request.
async fn merge_patch(client: &kube::Client, path: &str, patch: Value) -> (u16, Value) {
    let mut req = http::Request::builder()
        .method("PATCH")
        .uri(path)
        .header("content-type", "application/merge-patch+json");
    req = req.header("accept", "application/json");
    let resp = client
        .send(
            req.body(kube::client::Body::from(serde_json::to_vec(&patch).unwrap()))
                .unwrap(),
        )
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Namespace `team` with ServiceAccount `bot`, whose own Role `rbac-editor` lets it read and write
/// roles and rolebindings there and read pods, but not secrets. Returns a client acting as `bot`.
async fn team_with_bot(env: &Env) -> kube::Client {
    env.seed(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bot, namespace: team}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rbac-editor, namespace: team}
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, create, update, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bot-rbac-editor, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rbac-editor}
subjects: [{kind: ServiceAccount, name: bot, namespace: team}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-reader, namespace: team}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: team}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
"#,
    );
    let token = env
        .ok(&["-n", "team", "create", "token", "bot"])
        .await
        .trim()
        .to_string();
    env.sim.client_for_token(&token).await.unwrap()
}

/// pkg/registry/rbac/role/policybased/storage.go (Update) with pkg/registry/rbac/helpers.go
/// (IsOnlyMutatingGCFields): an update that changes only ownerReferences/finalizers skips the
/// escalation check, so the garbage collector (or anyone who may update roles) can handle a role
/// whose permissions it does not hold. Labels are not GC fields: changing them is checked.
#[tokio::test]
async fn gc_only_update_of_a_role_is_not_an_escalation() {
    let env = Env::new().await;
    let bot = team_with_bot(&env).await;
    let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles/secret-reader";
    let (code, body) = merge_patch(
        &bot,
        path,
        json!({"metadata": {
            "finalizers": ["example.com/hold"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "0b5c7a1e-0000-4000-8000-000000000001"}],
        }}),
    )
    .await;
    assert_eq!(code, 200, "a GC-fields-only update needs no escalation: {body}");
    assert_eq!(body["metadata"]["finalizers"], json!(["example.com/hold"]));

    let (code, body) = merge_patch(&bot, path, json!({"metadata": {"labels": {"team": "x"}}})).await;
    assert_eq!(code, 403, "labels are not a GC field: {body}");
    assert!(
        body["message"].as_str().unwrap().starts_with(
            "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"system:serviceaccount:team:bot\""
        ),
        "{body}"
    );
    // Changing the rules is checked as before.
    let (code, _) = merge_patch(
        &bot,
        path,
        json!({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]}),
    )
    .await;
    assert_eq!(code, 403);
}

/// pkg/registry/rbac/role/policybased/storage.go (Update) runs IsOnlyMutatingGCFields
/// (pkg/registry/rbac/helpers.go) in the wrapped UpdatedObjectInfo, on the body as the client sent
/// it: the stored uid and creationTimestamp are only copied in later, by rest.BeforeUpdate
/// (staging/src/k8s.io/apiserver/pkg/registry/rest/update.go). So a PUT from a file without them
/// (`kubectl replace -f role.yaml`) is a full update even when only the finalizers differ; the
/// same PUT carrying the stored uid and creationTimestamp is a GC-fields-only update.
#[tokio::test]
async fn put_without_server_metadata_is_not_a_gc_only_update() {
    let env = Env::new().await;
    let bot = team_with_bot(&env).await;
    let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles/secret-reader";
    let (code, fetched) = raw(&bot, "GET", path, &[], None).await;
    assert_eq!(code, 200, "{fetched}");

    let mut from_file = fetched.clone();
    let meta = from_file["metadata"].as_object_mut().unwrap();
    meta.remove("uid");
    meta.remove("creationTimestamp");
    meta.insert("finalizers".into(), json!(["example.com/hold"]));
    let (code, body) = raw(&bot, "PUT", path, &[], Some(from_file)).await;
    assert_eq!(code, 403, "without uid/creationTimestamp this is a full update: {body}");
    assert!(
        body["message"].as_str().unwrap().starts_with(
            "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"system:serviceaccount:team:bot\""
        ),
        "{body}"
    );

    let mut edited = fetched;
    edited["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (code, body) = raw(&bot, "PUT", path, &[], Some(edited)).await;
    assert_eq!(code, 200, "with the stored metadata only the finalizers change: {body}");
    assert_eq!(body["metadata"]["finalizers"], json!(["example.com/hold"]));
}

/// pkg/registry/rbac/rolebinding/policybased/storage.go (Update): the bind/escalation check runs in
/// the wrapped UpdatedObjectInfo, before the strategy's ValidateUpdate says "cannot change roleRef"
/// (pkg/apis/rbac/validation/validation.go). A roleRef change to a role the caller cannot bind is
/// 403; to one it could bind, 422.
#[tokio::test]
async fn roleref_change_is_forbidden_before_it_is_invalid() {
    let env = Env::new().await;
    let bot = team_with_bot(&env).await;
    env.seed(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: someone-pods, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: User, name: someone}]
"#,
    );
    let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/someone-pods";
    let (code, body) = merge_patch(&bot, path, json!({"roleRef": {"name": "secret-reader"}})).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("rolebindings.rbac.authorization.k8s.io \"someone-pods\" is forbidden: user \"system:serviceaccount:team:bot\""),
        "{body}"
    );
    // bot holds everything rbac-editor grants, so binding it passes the check and validation answers.
    let (code, body) = merge_patch(&bot, path, json!({"roleRef": {"name": "rbac-editor"}})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "RoleBinding.rbac.authorization.k8s.io \"someone-pods\" is invalid: roleRef: Invalid value: cannot change roleRef"
    );
}

/// pkg/apis/rbac/v1/defaults.go (SetDefaults_RoleBinding, SetDefaults_Subject) and
/// pkg/apis/rbac/validation/validation.go (roleRef.apiGroup must be rbac.authorization.k8s.io).
/// The default is applied at decoding, so the bind check already sees the RBAC group.
#[tokio::test]
async fn roleref_api_group_is_defaulted_and_validated() {
    let env = Env::new().await;
    let bot = team_with_bot(&env).await;
    // bot may bind secret-reader without holding it.
    env.seed(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: binder, namespace: team}
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles]
  verbs: [bind]
  resourceNames: [secret-reader]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bot-binder, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: binder}
subjects: [{kind: ServiceAccount, name: bot, namespace: team}]
"#,
    );
    let (code, body) = raw(
        &bot,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings",
        &[],
        Some(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "reads-secrets"},
            "roleRef": {"kind": "Role", "name": "secret-reader"},
            "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "bot"}],
        })),
    )
    .await;
    assert_eq!(
        code, 201,
        "bind on secret-reader allows it once apiGroup is defaulted: {body}"
    );
    assert_eq!(body["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(body["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert!(body["subjects"][1].get("apiGroup").is_none(), "{body}");

    let out = kubectl_with(
        &env.kubeconfig,
        &[
            "-n",
            "team",
            "get",
            "rolebinding",
            "reads-secrets",
            "-o",
            "jsonpath={.roleRef.apiGroup}",
        ],
        None,
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "rbac.authorization.k8s.io");

    let admin = env.sim.client().await.unwrap();
    let (code, body) = raw(
        &admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings",
        &[],
        Some(json!({
            "metadata": {"name": "elsewhere"},
            "roleRef": {"apiGroup": "example.com", "kind": "Role", "name": "secret-reader"},
            "subjects": [],
        })),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "RoleBinding.rbac.authorization.k8s.io \"elsewhere\" is invalid: roleRef.apiGroup: Unsupported value: \"example.com\": supported values: \"rbac.authorization.k8s.io\""
    );
}

/// staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go (validateOwnerReference, 1.33
/// wording): an owner reference without a uid is refused, with the real kubectl.
#[tokio::test]
async fn owner_reference_without_uid_is_invalid() {
    let env = Env::new().await;
    let out = kubectl_with(
        &env.kubeconfig,
        &["create", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned
  namespace: default
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: ""}
"#,
        ),
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"The ConfigMap "owned" is invalid: metadata.ownerReferences.uid: Invalid value: "": uid must not be empty"#
        ),
        "{stderr}"
    );
    assert!(env.sim.get("", "configmaps", "default", "owned").is_none());
}

/// pkg/controller/garbagecollector (attemptToDeleteItem): a dependent whose owners are all gone is
/// deleted; one with an owner left keeps only the references to live owners; a foreground deletion
/// of an owner finishes once its dependents are gone. The collector looks only at objects in deletion
/// or with a missing owner (issue 19), so these pin what it must still do.
#[tokio::test]
async fn garbage_collector_deletes_orphans_drops_dead_references_and_finishes_foreground_deletions() {
    let env = Env::new().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.sim.client().await.unwrap(), "default");
    let make = |name: &str, owners: &[&ConfigMap]| -> ConfigMap {
        let refs: Vec<Value> = owners
            .iter()
            .map(|o| {
                json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name,
                       "uid": o.metadata.uid})
            })
            .collect();
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": refs}})).unwrap()
    };
    let pp = kube::api::PostParams::default();
    let a = cms.create(&pp, &make("owner-a", &[])).await.unwrap();
    let b = cms.create(&pp, &make("owner-b", &[])).await.unwrap();
    cms.create(&pp, &make("only-a", &[&a])).await.unwrap();
    cms.create(&pp, &make("a-and-b", &[&a, &b])).await.unwrap();
    cms.create(&pp, &make("only-b", &[&b])).await.unwrap();
    // Many objects whose owner is alive: the collector must leave them alone.
    for i in 0..50 {
        cms.create(&pp, &make(&format!("kept-{i}"), &[&b])).await.unwrap();
    }

    cms.delete("owner-a", &DeleteParams::background()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let only_a = cms.get_opt("only-a").await.unwrap();
        let both = cms.get("a-and-b").await.unwrap();
        let refs = both.metadata.owner_references.clone().unwrap_or_default();
        if only_a.is_none() && refs.len() == 1 {
            assert_eq!(refs[0].name, "owner-b");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not collected: only-a {:?}, a-and-b owners {refs:?}",
            only_a.map(|c| c.metadata.name)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    cms.delete("owner-b", &DeleteParams::foreground()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<String> = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .filter(|n| n.starts_with("owner-") || n.starts_with("kept-") || n.contains("-b"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "foreground deletion not finished: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go (markAsDeleting): starting
/// the deletion of an object with finalizers bumps a managed generation (kinds whose strategy sets
/// it: workloads, custom resources, Pods...); ConfigMaps carry no generation at all
/// (pkg/registry/core/configmap/strategy.go sets none).
#[tokio::test]
async fn deletion_start_bumps_a_managed_generation() {
    let env = Env::new().await;
    env.seed(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, finalizers: [example.com/hold]}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: held, namespace: default, finalizers: [example.com/hold]}
"#,
    );
    let before = env.sim.get("apps", "deployments", "default", "web").unwrap();
    assert_eq!(before["metadata"]["generation"], 1);
    env.ok(&["delete", "deployment", "web", "--wait=false"]).await;
    let after = env.sim.get("apps", "deployments", "default", "web").unwrap();
    assert!(after["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(after["metadata"]["generation"], 2, "deletion start is a new generation");

    let cm = env.sim.get("", "configmaps", "default", "held").unwrap();
    assert!(
        cm["metadata"].get("generation").is_none(),
        "ConfigMaps have no generation: {cm}"
    );
    env.ok(&["delete", "configmap", "held", "--wait=false"]).await;
    let cm = env.sim.get("", "configmaps", "default", "held").unwrap();
    assert!(cm["metadata"].get("generation").is_none(), "{cm}");
}

/// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/delete.go: a DELETE answers 200, with the
/// object when finalizers keep it; 202 only when it stays and the client sent
/// `orphanDependents: false` (kept for old clients).
#[tokio::test]
async fn delete_held_by_finalizers_is_200_with_the_object() {
    let env = Env::new().await;
    env.seed(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: held, namespace: default, finalizers: [example.com/hold]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: held-too, namespace: default, finalizers: [example.com/hold]}
"#,
    );
    let out = kubectl_with(
        &env.kubeconfig,
        &["delete", "configmap", "held", "--wait=false", "-v=6"],
        None,
    )
    .await;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap \"held\" deleted"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let delete_line = log
        .lines()
        .find(|l| l.contains("DELETE") && l.contains("/configmaps/held"))
        .unwrap_or_else(|| panic!("no DELETE in the log: {log}"));
    assert!(delete_line.contains("200 OK"), "{delete_line}");

    let admin = env.sim.client().await.unwrap();
    let path = "/api/v1/namespaces/default/configmaps/held";
    // Deleting again while it is held: still 200 with the object.
    let (code, body) = raw(&admin, "DELETE", path, &[], None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "ConfigMap");
    assert!(body["metadata"]["deletionTimestamp"].is_string());

    let (code, body) = raw(
        &admin,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/held-too",
        &[],
        Some(json!({"orphanDependents": false})),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["kind"], "ConfigMap");
}

/// staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go (BeforeDelete) for DeleteOptions
/// preconditions (a Conflict on the Kind), and staging/src/k8s.io/apiserver/pkg/storage/interfaces.go
/// (Preconditions.Check) for the uid of a PUT body, whose StorageError text reaches the client.
#[tokio::test]
async fn precondition_failures_have_the_upstream_text() {
    let env = Env::new().await;
    env.seed(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: pre, namespace: default}
data: {k: v}
"#,
    );
    let client = env.sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cur = env.sim.get("", "configmaps", "default", "pre").unwrap();
    let uid = cur["metadata"]["uid"].as_str().unwrap().to_string();
    let rv = cur["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("wrong-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let kube::Error::Api(e) = cms.delete("pre", &dp).await.unwrap_err() else {
        panic!("API error expected")
    };
    assert_eq!(e.code, 409);
    assert_eq!(e.reason, "Conflict");
    assert_eq!(
        e.message,
        format!(
            "Operation cannot be fulfilled on ConfigMap \"pre\": the UID in the precondition (wrong-uid) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );

    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("1".into()),
        }),
        ..DeleteParams::default()
    };
    let kube::Error::Api(e) = cms.delete("pre", &dp).await.unwrap_err() else {
        panic!("API error expected")
    };
    assert_eq!(e.code, 409);
    assert_eq!(
        e.message,
        format!(
            "Operation cannot be fulfilled on ConfigMap \"pre\": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({rv}). The object might have been modified"
        )
    );

    let mut body = cur.clone();
    body["metadata"]["uid"] = json!("wrong-uid");
    let (code, status) = raw(
        &client,
        "PUT",
        "/api/v1/namespaces/default/configmaps/pre",
        &[],
        Some(body),
    )
    .await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(
        status["message"],
        format!(
            "Operation cannot be fulfilled on configmaps \"pre\": StorageError: invalid object, Code: 4, Key: /registry/configmaps/default/pre, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: wrong-uid, UID in object meta: {uid}"
        )
    );
    assert!(env.sim.get("", "configmaps", "default", "pre").is_some());
}

/// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/response.go (asPartialObjectMetadataList,
/// asPartialObjectMetadata): `as=PartialObjectMetadataList;g=meta.k8s.io;v=v1` answers metadata
/// only, as kube-rs `Api::list_metadata` asks for it.
#[tokio::test]
async fn list_metadata_answers_partial_object_metadata() {
    let env = Env::new().await;
    env.seed(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: default, labels: {x: "1"}}
data: {secretish: value}
"#,
    );
    let client = env.sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let list = cms.list_metadata(&ListParams::default().labels("x=1")).await.unwrap();
    assert_eq!(list.types.kind, "PartialObjectMetadataList");
    assert_eq!(list.types.api_version, "meta.k8s.io/v1");
    assert_eq!(list.items.len(), 1);
    let types = list.items[0].types.as_ref().expect("items are typed");
    assert_eq!(types.kind, "PartialObjectMetadata");
    assert_eq!(types.api_version, "meta.k8s.io/v1");
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("a"));

    let (code, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?limit=1",
        &[(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )],
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body["kind"], "PartialObjectMetadataList");
    assert!(body["metadata"]["resourceVersion"].is_string(), "{body}");
    for item in body["items"].as_array().unwrap() {
        assert_eq!(item["kind"], "PartialObjectMetadata");
        assert!(item.get("data").is_none(), "metadata only: {item}");
    }

    let one = cms.get_metadata("a").await.unwrap();
    assert_eq!(
        one.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    let (_, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/a",
        &[("accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")],
        None,
    )
    .await;
    assert!(body.get("data").is_none(), "{body}");
}

/// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/watch.go (the watch encoder transforms each
/// event's object as `transformObject` does): a watch asked for
/// `as=PartialObjectMetadata;g=meta.k8s.io;v=v1` (kube-rs `Api<PartialObjectMeta<K>>`) carries each
/// object's metadata only, the initial ones, the later changes and the bookmarks alike; never its data.
#[tokio::test]
async fn watch_metadata_carries_metadata_only() {
    use futures::StreamExt as _;
    use kube::api::WatchEvent;
    let env = Env::new().await;
    env.seed(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: default, labels: {x: "1"}}
data: {secretish: first}
"#,
    );
    let client = env.sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stream = cms
        .watch_metadata(&kube::api::WatchParams::default().labels("x=1").timeout(5), "0")
        .await
        .unwrap();
    let mut stream = Box::pin(stream);
    let first = stream.next().await.unwrap().unwrap();
    let WatchEvent::Added(a) = first else {
        panic!("{first:?}")
    };
    assert_eq!(a.metadata.name.as_deref(), Some("a"));
    assert_eq!(a.types.as_ref().map(|t| t.kind.as_str()), Some("PartialObjectMetadata"));
    let mut changed: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "a", "namespace": "default", "labels": {"x": "1"}},
        "data": {"secretish": "second"}
    }))
    .unwrap();
    changed.metadata.resource_version = a.metadata.resource_version.clone();
    cms.replace("a", &Default::default(), &changed).await.unwrap();
    let second = stream.next().await.unwrap().unwrap();
    let WatchEvent::Modified(m) = second else {
        panic!("{second:?}")
    };
    assert_ne!(m.metadata.resource_version, a.metadata.resource_version);

    // On the wire: no data in any event.
    let (code, body) = raw_text(
        &client,
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let events: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!events.is_empty(), "{body}");
    for e in &events {
        assert_eq!(e["object"]["kind"], "PartialObjectMetadata", "{e}");
        assert!(e["object"].get("data").is_none(), "metadata only: {e}");
    }
    // Bookmarks are transformed like the objects.
    let (_, body) = raw_text(
        &client,
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=3&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    )
    .await;
    let bookmark = body
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["type"] == "BOOKMARK")
        .unwrap_or_else(|| panic!("no bookmark: {body}"));
    assert_eq!(bookmark["object"]["kind"], "PartialObjectMetadata", "{bookmark}");
    // A list view of single objects is the wrong shape for every event: the stream ends without one.
    let (code, body) = raw_text(
        &client,
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )
    .await;
    assert_eq!((code, body.as_str()), (200, ""));
}

/// A GET with an Accept header, answered as text (a watch is a stream of JSON lines).
async fn raw_text(client: &kube::Client, path: &str, accept: &str) -> (u16, String) {
    let req = http::Request::get(path)
        .header("accept", accept)
        .body(Vec::new())
        .unwrap();
    match client.request_text(req).await {
        Ok(body) => (200, body),
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Err(e) => panic!("{e}"),
    }
}

/// pkg/registry/core/pod/strategy.go (PrepareForCreate sets `pod.Generation = 1`, and spec changes
/// bump it) does so from 1.33 on (KEP-5067, pod generation tracking); before, a Pod carried no
/// generation. kubesim follows the version it reports.
#[tokio::test]
async fn pod_generation_follows_the_reported_version() {
    let pod = r#"{apiVersion: v1, kind: Pod, metadata: {name: web, namespace: default}, spec: {containers: [{name: app, image: x}]}}"#;
    for (version, generation) in [("v1.32.4", None), ("v1.33.1", Some(1))] {
        let env = Env::with(kubesim::SimBuilder::new().version(version)).await;
        env.seed(pod);
        let client = env.sim.client().await.unwrap();
        let (code, got) = raw(&client, "GET", "/api/v1/namespaces/default/pods/web", &[], None).await;
        assert_eq!(code, 200, "{got}");
        assert_eq!(got["metadata"]["generation"].as_i64(), generation, "{version}: {got}");
    }
}

/// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/response.go (asPartialObjectMetadata,
/// asPartialObjectMetadataList): asking for the metadata-only form of the wrong shape, a
/// PartialObjectMetadataList of one object or a PartialObjectMetadata of a list, is 406 NotAcceptable.
#[tokio::test]
async fn metadata_view_of_the_wrong_shape_is_not_acceptable() {
    let env = Env::new().await;
    env.seed("{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: default}}");
    let client = env.sim.client().await.unwrap();
    let as_kind = |kind: &str| format!("application/json;as={kind};g=meta.k8s.io;v=v1");
    let one = "/api/v1/namespaces/default/configmaps/a";
    let all = "/api/v1/namespaces/default/configmaps";
    for (path, kind, message) in [
        (
            one,
            "PartialObjectMetadataList",
            "you requested PartialObjectMetadataList, but the requested object is not a list (*core.ConfigMap)",
        ),
        (
            all,
            "PartialObjectMetadata",
            "you requested PartialObjectMetadata, but the requested object is a list (*core.ConfigMapList)",
        ),
    ] {
        let (code, body) = raw(&client, "GET", path, &[("accept", &as_kind(kind))], None).await;
        assert_eq!(code, 406, "{path} as {kind}: {body}");
        assert_eq!(body["reason"], "NotAcceptable", "{body}");
        assert_eq!(body["message"], message, "{body}");
    }
    // The matching shapes still answer.
    let (code, body) = raw(
        &client,
        "GET",
        one,
        &[("accept", &as_kind("PartialObjectMetadata"))],
        None,
    )
    .await;
    assert_eq!(
        (code, body["kind"].as_str()),
        (200, Some("PartialObjectMetadata")),
        "{body}"
    );
}
