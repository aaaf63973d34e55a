#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What a pod-scoped grant relies on (issue 16): resourceNames on pods/exec, escalation prevention
//! for a Role written by a holder of a ClusterRole (plugin/pkg/auth/authorizer/rbac and
//! pkg/registry/rbac/validation: `ConfirmNoEscalation`), a RoleBinding without `bind`, Role changes
//! effective at once, and label-selector watches as the watch cache sends them
//! (staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go `convertToWatchEvent`).

mod common;

use std::time::Duration;

use common::{Env, kubectl_with};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec: {containers: [{name: app, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: default, labels: {app: other}}
spec: {containers: [{name: app, image: nginx}]}
";

async fn token(env: &Env, sa: &str) -> String {
    env.seed(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: default}}\n"
    ));
    env.ok(&["create", "token", sa]).await.trim().to_string()
}

#[tokio::test]
async fn exec_resource_names_and_role_updates_take_effect_at_once() {
    let env = Env::new().await;
    env.seed(PODS);
    let kc = env.kubeconfig_for("dev", &token(&env, "dev").await);
    let role = |target: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: dev, namespace: default}}\nrules:\n- {{apiGroups: [''], resources: [pods], verbs: [get, list]}}\n- {{apiGroups: [''], resources: [pods/exec], verbs: [create, get], resourceNames: [{target}]}}\n"
        )
    };
    env.seed(&role("web"));
    env.seed("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: dev, namespace: default}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev}\nsubjects: [{kind: ServiceAccount, name: dev, namespace: default}]\n");
    let exec = |pod: &'static str| {
        let kc = kc.clone();
        async move { kubectl_with(&kc, &["exec", pod, "--", "echo", "in"], None).await }
    };
    let ok = exec("web").await;
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "in\n",
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let no = exec("other").await;
    let err = String::from_utf8_lossy(&no.stderr);
    assert!(
        err.contains("pods \"other\" is forbidden: User \"system:serviceaccount:default:dev\" cannot")
            && err.contains("resource \"pods/exec\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    // The Role now names the other pod: the very next request sees it (no authorizer cache).
    env.ok_stdin(&["apply", "-f", "-"], &role("other")).await;
    assert!(exec("other").await.status.success());
    assert!(!exec("web").await.status.success());
}

#[tokio::test]
async fn a_clusterrole_holder_writes_subset_roles_and_binds_them_without_escalate_or_bind() {
    let env = Env::new().await;
    env.seed(PODS);
    env.seed(
        "
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-exec}
rules:
- {apiGroups: [''], resources: [pods], verbs: [get, list, watch]}
- {apiGroups: [''], resources: [pods/exec], verbs: [create, get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: granter}
rules:
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles, rolebindings], verbs: [get, create, update, patch, delete]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ctl-pod-exec}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-exec}
subjects: [{kind: ServiceAccount, name: ctl, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ctl-granter}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: granter}
subjects: [{kind: ServiceAccount, name: ctl, namespace: default}]
",
    );
    let tok = token(&env, "ctl").await;
    let ctl = env.sim.client_for_token(&tok).await.unwrap();
    let roles: Api<Role> = Api::namespaced(ctl.clone(), "default");
    let scoped: Role = serde_json::from_value(json!({
        "metadata": {"name": "scoped"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["web"]},
            {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"], "resourceNames": ["web"]},
        ]
    }))
    .unwrap();
    roles
        .create(&PostParams::default(), &scoped)
        .await
        .expect("a subset of held rules");
    let more: Role = serde_json::from_value(json!({
        "metadata": {"name": "more"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    }))
    .unwrap();
    let err = roles.create(&PostParams::default(), &more).await.unwrap_err();
    let kube::Error::Api(e) = err else { panic!("{err}") };
    assert_eq!(e.code, 403);
    assert!(
        e.message.starts_with(
            "roles.rbac.authorization.k8s.io \"more\" is forbidden: user \"system:serviceaccount:default:ctl\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:default\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"
        ),
        "{}",
        e.message
    );
    // Binding the subset Role: the holder has every permission in it, so no `bind` is needed.
    let bindings: Api<RoleBinding> = Api::namespaced(ctl.clone(), "default");
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "scoped"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "scoped"},
        "subjects": [{"kind": "ServiceAccount", "name": "user", "namespace": "default"}]
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &rb)
        .await
        .expect("binding a held Role");
    // And updating the Role's resourceNames is as allowed as creating it.
    roles
        .patch(
            "scoped",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/rules/2/resourceNames", "value": ["web", "other"]}
                ]))
                .unwrap(),
            ),
        )
        .await
        .expect("update within held rules");
}

#[tokio::test]
async fn label_selector_watches_see_pods_start_and_stop_matching() {
    let env = Env::new().await;
    let client = env.sim.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut events = pods
        .watch(&WatchParams::default().labels("app=web").timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    let mut next = async || -> WatchEvent<Pod> {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if !matches!(ev, WatchEvent::Bookmark(_)) {
                return ev;
            }
        }
    };
    let label = |v: &str| Patch::Merge(json!({"metadata": {"labels": {"app": v}}}));
    let pp = PatchParams::default();
    env.seed("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, labels: {app: other}}\nspec: {containers: [{name: a, image: x}]}\n");
    pods.patch("p", &pp, &label("web")).await.unwrap();
    assert!(matches!(next().await, WatchEvent::Added(p) if p.metadata.labels.as_ref().unwrap()["app"] == "web"));
    pods.patch("p", &pp, &Patch::Merge(json!({"metadata": {"labels": {"tier": "x"}}})))
        .await
        .unwrap();
    assert!(matches!(next().await, WatchEvent::Modified(_)));
    let moved = pods.patch("p", &pp, &label("db")).await.unwrap();
    match next().await {
        // The last state the watcher matched, at the resourceVersion of the change.
        WatchEvent::Deleted(p) => {
            assert_eq!(p.metadata.labels.unwrap()["app"], "web");
            assert_eq!(p.metadata.resource_version, moved.metadata.resource_version);
        }
        other => panic!("{other:?}"),
    }
    pods.patch("p", &pp, &label("web")).await.unwrap();
    assert!(matches!(next().await, WatchEvent::Added(_)));
    pods.delete("p", &Default::default()).await.unwrap();
    assert!(matches!(next().await, WatchEvent::Deleted(_)));
}
