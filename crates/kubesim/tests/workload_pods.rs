#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The opt-in workload controller (issue 16): `kubectl scale` really adds and removes pods of
//! Deployments, StatefulSets and DaemonSets, lost pods come back, a new template replaces the pods,
//! and status counts what is there. Template labels the selector does not match are refused as
//! pkg/apis/apps/validation/validation.go refuses them.

mod common;

use std::time::Duration;

use common::{Env, eventually};
use serde_json::Value;

const APPS: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec: {containers: [{name: app, image: nginx:1.27}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: pg, image: postgres:17}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: a, image: busybox}]}
";

fn pods(env: &Env, app: &str) -> Vec<Value> {
    let (items, _) = env
        .sim
        .cluster
        .store
        .list(&kubesim::GroupResource::new("", "pods"), Some("default"));
    let mut v: Vec<Value> = items
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app && !p["metadata"]["deletionTimestamp"].is_string())
        .collect();
    v.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap().to_string());
    v
}

fn names(env: &Env, app: &str) -> Vec<String> {
    pods(env, app)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

async fn wait_count(env: &Env, app: &str, n: usize) {
    let ok = eventually(Duration::from_secs(5), || pods(env, app).len() == n).await;
    assert!(ok, "{app}: want {n} pods, have {:?}", names(env, app));
}

#[tokio::test]
async fn kubectl_scale_adds_and_removes_pods_and_status_follows() {
    let env = Env::with(kubesim::SimBuilder::new().workload_pods(true)).await;
    env.ok_stdin(&["apply", "-f", "-"], APPS).await;

    // Deployment: <name>-<10-char hash>-<5>, template labels plus pod-template-hash, owned by it.
    wait_count(&env, "web", 2).await;
    let first = pods(&env, "web");
    let hash = first[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(hash.len(), 10);
    for p in &first {
        let name = p["metadata"]["name"].as_str().unwrap();
        let suffix = name.strip_prefix(&format!("web-{hash}-")).expect(name);
        assert_eq!(suffix.len(), 5, "{name}");
        assert_eq!(p["metadata"]["labels"]["tier"], "front");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        assert_eq!(p["status"]["phase"], "Running");
    }
    env.ok(&["scale", "deployment", "web", "--replicas=4"]).await;
    wait_count(&env, "web", 4).await;
    env.ok(&["scale", "deployment", "web", "--replicas=1"]).await;
    wait_count(&env, "web", 1).await;
    let d = |env: &Env| env.sim.get("apps", "deployments", "default", "web").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || d(&env)["status"]["replicas"] == 1
            && d(&env)["status"]["readyReplicas"] == 1)
        .await,
        "{}",
        d(&env)["status"]
    );
    assert_eq!(
        env.ok(&["get", "deployment", "web", "-o", "jsonpath={.status.availableReplicas}"])
            .await,
        "1"
    );

    // A lost pod comes back under a new name.
    let lost = names(&env, "web")[0].clone();
    env.ok(&["delete", "pod", &lost]).await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let now = names(&env, "web");
            now.len() == 1 && now[0] != lost
        })
        .await
    );

    // A new template replaces the pods: new hash, old pods gone.
    env.ok(&["set", "image", "deployment/web", "app=nginx:1.28"]).await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let p = pods(&env, "web");
            p.len() == 1 && p[0]["metadata"]["labels"]["pod-template-hash"] != hash.as_str()
        })
        .await,
        "{:?}",
        names(&env, "web")
    );
    assert_eq!(pods(&env, "web")[0]["spec"]["containers"][0]["image"], "nginx:1.28");
    env.ok(&["rollout", "status", "deployment/web", "--timeout=10s"]).await;

    // StatefulSet: ordinals; scale-down removes the highest; a lost pod returns with its name.
    wait_count(&env, "db", 3).await;
    assert_eq!(names(&env, "db"), ["db-0", "db-1", "db-2"]);
    env.ok(&["scale", "statefulset", "db", "--replicas=1"]).await;
    wait_count(&env, "db", 1).await;
    assert_eq!(names(&env, "db"), ["db-0"]);
    let uid = pods(&env, "db")[0]["metadata"]["uid"].clone();
    env.ok(&["delete", "pod", "db-0"]).await;
    assert!(
        eventually(Duration::from_secs(5), || pods(&env, "db")
            .first()
            .is_some_and(|p| p["metadata"]["uid"] != uid))
        .await
    );
    let s = env.sim.get("apps", "statefulsets", "default", "db").unwrap();
    assert_eq!(s["status"]["replicas"], 1, "{}", s["status"]);

    // DaemonSet: one pod for the one node.
    wait_count(&env, "agent", 1).await;
    let ds = env.sim.get("apps", "daemonsets", "default", "agent").unwrap();
    assert_eq!(ds["status"]["desiredNumberScheduled"], 1);

    // Deleting the workload takes its pods along (ownerReferences, garbage collector).
    env.ok(&["delete", "deployment", "web"]).await;
    wait_count(&env, "web", 0).await;
}

#[tokio::test]
async fn template_labels_must_match_the_selector_and_pods_are_opt_in() {
    let env = Env::new().await;
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad, namespace: default}\nspec:\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: other}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    let out = common::kubectl_with(&env.kubeconfig, &["apply", "-f", "-"], Some(bad)).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "The Deployment \"bad\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
        ),
        "{err}"
    );
    // Without the controller a workload has no pods and says it is ready (helm --wait, rollout status).
    env.ok_stdin(&["apply", "-f", "-"], APPS).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(pods(&env, "web").is_empty());
    assert_eq!(
        env.sim.get("apps", "deployments", "default", "web").unwrap()["status"]["readyReplicas"],
        2
    );
    // The scale subresource works either way.
    env.ok(&["scale", "deployment", "web", "--replicas=5"]).await;
    assert_eq!(
        env.sim.get("apps", "deployments", "default", "web").unwrap()["spec"]["replicas"],
        5
    );
}
