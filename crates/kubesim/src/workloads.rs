//! A minimal workload controller: Deployments, StatefulSets and DaemonSets get real pods.
//!
//! Opt-in ([`crate::SimBuilder::workload_pods`]); without it workloads keep the all-ready status
//! `api.rs` writes and no pods. With it, every workload is reconciled when it is written, when one
//! of its pods is deleted, and once a second:
//! - Deployments own pods named `<name>-<pod-template-hash>-<5 random>` (the hash, 10 characters,
//!   is of `spec.template`, as `pod-template-hash` labels it); surplus pods go newest first; a
//!   changed template replaces every pod of the old hash (delete old, create new). The pods'
//!   controller ownerReference is the Deployment itself (kube-controller-manager puts a ReplicaSet
//!   between them; nothing here needs one).
//! - StatefulSets own `<name>-0` … `<name>-(N-1)`; scaling down removes the highest ordinals.
//! - DaemonSets own one pod per node (kubesim has one node).
//!
//! A deleted pod is recreated; `status` counts the pods as they are (`replicas`, `readyReplicas`,
//! `updatedReplicas`, `availableReplicas`, …). Template labels that the selector does not match are
//! refused at admission with upstream's 422 (`pkg/apis/apps/validation/validation.go`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::Cluster;
use crate::errors::{ApiError, ApiResult};
use crate::resources::GroupResource;
use crate::selectors::LabelSelector;
use crate::store::now_rfc3339;

/// The kinds reconciled here.
pub const KINDS: [(&str, &str); 3] = [
    ("Deployment", "deployments"),
    ("StatefulSet", "statefulsets"),
    ("DaemonSet", "daemonsets"),
];

/// Wakes the workload controller.
#[derive(Debug, Default)]
pub struct Controller {
    wake: Notify,
}

impl Controller {
    /// Asks for a reconcile soon.
    pub fn poke(&self) {
        self.wake.notify_one();
    }
}

/// Whether `kind` in `group` is reconciled here.
pub fn is_workload(group: &str, kind: &str) -> bool {
    group == "apps" && KINDS.iter().any(|(k, _)| *k == kind)
}

/// Admission of a workload: a selector is required and must match the template's labels
/// (`ValidateDeploymentSpec` and friends).
pub fn validate(kind: &str, obj: &Value) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let selector = &obj["spec"]["selector"];
    let empty = selector["matchLabels"].as_object().is_none_or(|m| m.is_empty())
        && selector["matchExpressions"].as_array().is_none_or(|a| a.is_empty());
    if empty {
        return Err(ApiError::invalid(
            kind,
            "apps",
            name,
            vec![
                ("spec.selector".into(), "Required value".into()),
                (
                    "spec.template.metadata.labels".into(),
                    "Invalid value: \"null\": `selector` does not match template `labels`".into(),
                ),
            ],
        ));
    }
    let sel = LabelSelector::from_object(selector)?;
    if !sel.matches(&obj["spec"]["template"]) {
        let labels = obj["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .map(|m| {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{}", v)).collect();
                format!("map[string]string{{{}}}", parts.join(", "))
            })
            .unwrap_or_else(|| "map[string]string(nil)".into());
        return Err(ApiError::invalid(
            kind,
            "apps",
            name,
            vec![(
                "spec.template.metadata.labels".into(),
                format!("Invalid value: {labels}: `selector` does not match template `labels`"),
            )],
        ));
    }
    Ok(())
}

/// The `autoscaling/v1` Scale of a workload.
pub fn scale_view(w: &Value) -> Value {
    let selector = w["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let md = &w["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
            "resourceVersion": md["resourceVersion"], "creationTimestamp": md["creationTimestamp"]},
        "spec": {"replicas": w["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": w["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// The 10-character hash of a template, in the alphabet of `rand.SafeEncodeString`.
pub fn template_hash(template: &Value) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = serde_json::to_string(template).unwrap_or_default();
    // FNV-1a: stable across runs, which is all a template hash needs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let base = ALPHA.len() as u64;
    (0..10)
        .map(|_| {
            let c = ALPHA[(h % base) as usize] as char;
            h /= base;
            c
        })
        .collect()
}

fn random_suffix() -> String {
    use rand::RngExt as _;
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
        .collect()
}

fn pods() -> GroupResource {
    GroupResource::new("", "pods")
}

/// The live (not deleting) pods a workload controls.
fn owned_pods(cluster: &Cluster, w: &Value) -> Vec<Value> {
    let uid = w["metadata"]["uid"].as_str().unwrap_or_default();
    let ns = w["metadata"]["namespace"].as_str().unwrap_or_default();
    let (all, _) = cluster.store.list(&pods(), Some(ns));
    all.into_iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["uid"] == uid && r["controller"] == true)
        })
        .collect()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Creates one pod from the template, controlled by the workload.
fn create_pod(cluster: &Arc<Cluster>, w: &Value, kind: &str, name: &str, extra_labels: &[(&str, String)]) {
    let ns = w["metadata"]["namespace"].as_str().unwrap_or_default();
    let template = &w["spec"]["template"];
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["name"] = json!(name);
    meta["namespace"] = json!(ns);
    for (k, v) in extra_labels {
        meta["labels"][*k] = json!(v);
    }
    meta["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": kind, "name": w["metadata"]["name"],
        "uid": w["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    }]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"].clone()});
    match crate::api::create_internal(cluster, pod) {
        Ok(_) => tracing::debug!(namespace = ns, pod = name, kind, "workload pod created"),
        Err(e) => tracing::warn!(namespace = ns, pod = name, kind, error = %e, "cannot create a workload pod"),
    }
}

fn delete_pod(cluster: &Arc<Cluster>, pod: &Value) {
    let Some(rt) = cluster.registry.by_kind("", "Pod") else {
        return;
    };
    if let Err(e) = crate::gc::delete(cluster, &rt, pod, "Background") {
        // A pod that changed meanwhile is looked at again on the next pass.
        tracing::debug!(error = %e, "workload pod not deleted this pass");
    }
}

/// Newest first: by creationTimestamp, then name (the ReplicaSet controller's "youngest first").
fn newest_first(pods: &mut [Value]) {
    pods.sort_by(|a, b| {
        let key = |p: &Value| {
            (
                p["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|r| r.parse::<u64>().ok())
                    .unwrap_or(0),
            )
        };
        key(b).cmp(&key(a))
    });
}

fn reconcile(cluster: &Arc<Cluster>, kind: &str, plural: &str, w: &Value) {
    if w["metadata"]["deletionTimestamp"].is_string() {
        return;
    }
    let name = w["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let hash = template_hash(&w["spec"]["template"]);
    let replicas = match kind {
        "DaemonSet" => 1,
        _ => w["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize,
    };
    let mut owned = owned_pods(cluster, w);
    match kind {
        "Deployment" => {
            let (current, old): (Vec<Value>, Vec<Value>) = owned
                .drain(..)
                .partition(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str());
            old.iter().for_each(|p| delete_pod(cluster, p));
            let mut current = current;
            newest_first(&mut current);
            for p in current.iter().take(current.len().saturating_sub(replicas)) {
                delete_pod(cluster, p);
            }
            for _ in current.len()..replicas {
                let pod = format!("{name}-{hash}-{}", random_suffix());
                create_pod(cluster, w, kind, &pod, &[("pod-template-hash", hash.clone())]);
            }
        }
        "StatefulSet" => {
            let revision = format!("{name}-{hash}");
            for p in &owned {
                let pname = p["metadata"]["name"].as_str().unwrap_or_default();
                let ordinal = pname
                    .strip_prefix(&format!("{name}-"))
                    .and_then(|o| o.parse::<usize>().ok());
                let stale = p["metadata"]["labels"]["controller-revision-hash"] != revision.as_str();
                if ordinal.is_none_or(|o| o >= replicas) || stale {
                    delete_pod(cluster, p);
                }
            }
            for i in 0..replicas {
                let pname = format!("{name}-{i}");
                let exists = cluster
                    .store
                    .get(&pods(), w["metadata"]["namespace"].as_str().unwrap_or_default(), &pname)
                    .is_some();
                if !exists {
                    create_pod(
                        cluster,
                        w,
                        kind,
                        &pname,
                        &[
                            ("controller-revision-hash", revision.clone()),
                            ("statefulset.kubernetes.io/pod-name", pname.clone()),
                            ("apps.kubernetes.io/pod-index", i.to_string()),
                        ],
                    );
                }
            }
        }
        _ => {
            let (current, old): (Vec<Value>, Vec<Value>) = owned
                .drain(..)
                .partition(|p| p["metadata"]["labels"]["controller-revision-hash"] == hash.as_str());
            old.iter().for_each(|p| delete_pod(cluster, p));
            let mut current = current;
            newest_first(&mut current);
            for p in current.iter().take(current.len().saturating_sub(1)) {
                delete_pod(cluster, p);
            }
            if current.is_empty() {
                let pod = format!("{name}-{}", random_suffix());
                create_pod(cluster, w, kind, &pod, &[("controller-revision-hash", hash.clone())]);
            }
        }
    }
    write_status(cluster, kind, plural, w, &hash, replicas);
}

fn write_status(cluster: &Arc<Cluster>, kind: &str, plural: &str, w: &Value, hash: &str, desired: usize) {
    let owned = owned_pods(cluster, w);
    let updated_label = match kind {
        "Deployment" => ("pod-template-hash", hash.to_string()),
        "StatefulSet" => (
            "controller-revision-hash",
            format!("{}-{hash}", w["metadata"]["name"].as_str().unwrap_or_default()),
        ),
        _ => ("controller-revision-hash", hash.to_string()),
    };
    let total = owned.len();
    let ready = owned.iter().filter(|p| is_ready(p)).count();
    let updated = owned
        .iter()
        .filter(|p| p["metadata"]["labels"][updated_label.0] == updated_label.1.as_str())
        .count();
    let generation = w["metadata"]["generation"].clone();
    let status = match kind {
        "Deployment" => {
            let available = ready >= desired;
            let mut s = json!({
                "observedGeneration": generation, "replicas": total, "updatedReplicas": updated,
                "readyReplicas": ready, "availableReplicas": ready,
            });
            if desired > ready {
                s["unavailableReplicas"] = json!(desired - ready);
            }
            let cond = |t: &str, ok: bool, reason: &str| json!({"type": t, "status": if ok { "True" } else { "False" }, "reason": reason});
            s["conditions"] = json!([
                cond(
                    "Available",
                    available,
                    if available {
                        "MinimumReplicasAvailable"
                    } else {
                        "MinimumReplicasUnavailable"
                    }
                ),
                cond("Progressing", true, "NewReplicaSetAvailable"),
            ]);
            s
        }
        "StatefulSet" => json!({
            "observedGeneration": generation, "replicas": total, "readyReplicas": ready,
            "currentReplicas": updated, "updatedReplicas": updated, "availableReplicas": ready,
            "currentRevision": updated_label.1, "updateRevision": updated_label.1, "collisionCount": 0,
        }),
        _ => json!({
            "observedGeneration": generation, "currentNumberScheduled": total, "desiredNumberScheduled": 1,
            "numberReady": ready, "updatedNumberScheduled": updated, "numberAvailable": ready,
            "numberMisscheduled": 0,
        }),
    };
    let ns = w["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = w["metadata"]["name"].as_str().unwrap_or_default();
    let result = cluster
        .store
        .update_latest(&GroupResource::new("apps", plural), ns, name, |cur| {
            if cur["metadata"]["uid"] != w["metadata"]["uid"] {
                return None;
            }
            let mut new = cur.clone();
            // Transition times stay as they were while a condition keeps its status.
            let mut status = status.clone();
            if let Some(conds) = status["conditions"].as_array_mut() {
                for c in conds.iter_mut() {
                    let old = cur["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|o| o["type"] == c["type"] && o["status"] == c["status"]);
                    let (lu, lt) = match old {
                        Some(o) => (o["lastUpdateTime"].clone(), o["lastTransitionTime"].clone()),
                        None => (json!(now_rfc3339()), json!(now_rfc3339())),
                    };
                    c["lastUpdateTime"] = lu;
                    c["lastTransitionTime"] = lt;
                }
            }
            if cur["status"] == status {
                return None;
            }
            new["status"] = status;
            Some(new)
        });
    if let Err(e) = result {
        tracing::debug!(kind, name, error = %e, "workload status not written this pass");
    }
}

/// One pass over every workload.
pub fn reconcile_all(cluster: &Arc<Cluster>) {
    for (kind, plural) in KINDS {
        let (items, _) = cluster.store.list(&GroupResource::new("apps", plural), None);
        for w in items {
            reconcile(cluster, kind, plural, &w);
        }
    }
}

/// Runs the controller until the cluster is dropped.
pub fn spawn(cluster: &Arc<Cluster>) {
    let weak = Arc::downgrade(cluster);
    tokio::spawn(async move {
        loop {
            let Some(c) = weak.upgrade() else { return };
            reconcile_all(&c);
            let notified = async {
                c.workloads.wake.notified().await;
            };
            // The periodic pass catches what no write announced.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            drop(c);
            // Coalesces a burst of writes into one pass.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}
