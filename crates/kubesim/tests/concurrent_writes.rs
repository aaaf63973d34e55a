#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Writes that race each other: every PATCH, status write and DELETE is a read-modify-write of the newest
//! object, as in the API server (GuaranteedUpdate), so a concurrent write is never overwritten with the
//! stale copy another request read before it. A lost update here once made a controller miss a decision.

mod common;

use common::Env;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.io
spec:
  group: example.io
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

/// Writers per kind of write; enough that, on two cores, requests interleave inside the server.
const WRITERS: usize = 8;
/// Writes per writer.
const ROUNDS: usize = 25;

async fn gadgets(env: &Env) -> Api<DynamicObject> {
    env.sim.load_seed(CRD).unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.io", "v1", "Gadget"));
    Api::namespaced_with(env.sim.client().await.unwrap(), "default", &ar)
}

async fn create_gadget(api: &Api<DynamicObject>, name: &str, finalizers: &[&str]) {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.io/v1",
        "kind": "Gadget",
        "metadata": {"name": name, "finalizers": finalizers, "labels": {"init": "x"}},
        "spec": {"marks": {}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

fn missing(obj: &Value, path: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in 0..WRITERS {
        for r in 0..ROUNDS {
            let key = format!("{prefix}{w}-{r}");
            if obj.pointer(&format!("{path}/{key}")).is_none() {
                out.push(key);
            }
        }
    }
    out
}

/// Merge patches of spec, status and metadata, all at once on one object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_spec_status_and_metadata_are_all_kept() {
    let env = Env::new().await;
    let api = gadgets(&env).await;
    create_gadget(&api, "g", &[]).await;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        for kind in ["spec", "status", "labels"] {
            let api = api.clone();
            tasks.push(tokio::spawn(async move {
                let pp = PatchParams::default();
                for r in 0..ROUNDS {
                    match kind {
                        "spec" => {
                            let p = json!({"spec": {"marks": {format!("s{w}-{r}"): true}}});
                            api.patch("g", &pp, &Patch::Merge(&p)).await.unwrap();
                        }
                        "status" => {
                            let p = json!({"status": {format!("t{w}-{r}"): true}});
                            api.patch_status("g", &pp, &Patch::Merge(&p)).await.unwrap();
                        }
                        _ => {
                            let p = json!({"metadata": {"labels": {format!("l{w}-{r}"): "x"}}});
                            api.patch("g", &pp, &Patch::Merge(&p)).await.unwrap();
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let obj = serde_json::to_value(api.get("g").await.unwrap()).unwrap();
    let lost_spec = missing(&obj, "/spec/marks", "s");
    let lost_status = missing(&obj, "/status", "t");
    let lost_labels = missing(&obj, "/metadata/labels", "l");
    assert!(
        lost_spec.is_empty() && lost_status.is_empty() && lost_labels.is_empty(),
        "lost updates: spec {lost_spec:?}, status {lost_status:?}, labels {lost_labels:?}"
    );
}

/// A DELETE of an object held by a finalizer, racing status writes: the deletion and every status key stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_racing_status_writes_loses_neither() {
    let env = Env::new().await;
    let api = gadgets(&env).await;
    for i in 0..20 {
        let name = format!("d{i}");
        create_gadget(&api, &name, &["example.io/hold"]).await;
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let api = api.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                let p = json!({"status": {format!("t{w}"): true}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&p))
                    .await
                    .unwrap();
            }));
        }
        let deleter = {
            let api = api.clone();
            let name = name.clone();
            tokio::spawn(async move { api.delete(&name, &DeleteParams::default()).await.map(|_| ()) })
        };
        for t in tasks {
            t.await.unwrap();
        }
        deleter.await.unwrap().unwrap();
        let obj = api.get(&name).await.unwrap();
        assert!(
            obj.metadata.deletion_timestamp.is_some(),
            "{name}: the deletion was overwritten"
        );
        let status = &obj.data["status"];
        let lost: Vec<usize> = (0..WRITERS).filter(|w| status.get(format!("t{w}")).is_none()).collect();
        assert!(lost.is_empty(), "{name}: status writes of writers {lost:?} were lost");
    }
}
