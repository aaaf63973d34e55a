//! Deletion semantics: finalizers, propagation policies, the garbage collector and namespace termination.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::Cluster;
use crate::errors::ApiResult;
use crate::resources::{GroupResource, ResourceType};
use crate::store::now_rfc3339;
use crate::{crd, kubelet};

/// Wakes the background collector after deletions.
#[derive(Debug, Default)]
pub struct Collector {
    wake: Notify,
}

impl Collector {
    /// Asks for a sweep soon.
    pub fn poke(&self) {
        self.wake.notify_one();
    }
}

fn type_of(cluster: &Cluster, gr: &GroupResource) -> Option<ResourceType> {
    cluster
        .registry
        .all()
        .into_iter()
        .find(|t| t.group == gr.group && t.plural == gr.resource)
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Deletes an object with a propagation policy (`Background`, `Foreground`, `Orphan`).
/// Returns the object and whether it is gone (false while finalizers hold it).
///
/// `current` is the object as the caller read it: if it changed since (a finalizer added, a status
/// written), nothing is written and the answer is 409 Conflict, so the caller reads it again and retries
/// rather than overwriting that change with its stale copy.
pub fn delete(cluster: &Arc<Cluster>, rt: &ResourceType, current: &Value, policy: &str) -> ApiResult<(Value, bool)> {
    let gr = rt.group_resource();
    let (ns, name) = crate::store::ns_name(current);
    let read_rv = current["metadata"]["resourceVersion"].as_str().unwrap_or_default();
    if current["metadata"]["deletionTimestamp"].is_string() {
        return Ok((current.clone(), false));
    }
    let uid = current["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    if policy == "Orphan" {
        orphan_dependents(cluster, &uid);
    }
    let mut fins = finalizers(current);
    if policy == "Foreground" && !fins.iter().any(|f| f == "foregroundDeletion") {
        fins.push("foregroundDeletion".into());
    }
    let is_namespace = gr.group.is_empty() && gr.resource == "namespaces";
    if !fins.is_empty() || is_namespace {
        let mut obj = current.clone();
        // markAsDeleting (registry/generic/registry/store.go): starting deletion is a change a
        // controller must observe, so a managed generation goes up by one.
        if let Some(g) = current["metadata"]["generation"].as_i64().filter(|g| *g > 0) {
            obj["metadata"]["generation"] = json!(g + 1);
        }
        obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if !fins.is_empty() {
            obj["metadata"]["finalizers"] = json!(fins);
        }
        if is_namespace {
            obj["status"]["phase"] = json!("Terminating");
        }
        let stored = cluster.store.update(&gr, obj, Some(read_rv))?;
        cluster.gc.poke();
        return Ok((stored, false));
    }
    let removed = cluster
        .store
        .remove_if(&gr, &ns, &name, Some(read_rv))?
        .unwrap_or_else(|| current.clone());
    post_remove(cluster, &gr, &removed);
    Ok((removed, true))
}

/// Removes an object whose deletion was waiting for finalizers that are now gone.
pub fn finish_deletion(cluster: &Arc<Cluster>, gr: &GroupResource, obj: &Value) {
    let (ns, name) = crate::store::ns_name(obj);
    if gr.group.is_empty()
        && gr.resource == "namespaces"
        && obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
    {
        // The namespace controller still has to empty it.
        cluster.gc.poke();
        return;
    }
    if let Some(removed) = cluster.store.remove(gr, &ns, &name) {
        post_remove(cluster, gr, &removed);
    }
}

fn post_remove(cluster: &Arc<Cluster>, gr: &GroupResource, obj: &Value) {
    let (ns, name) = crate::store::ns_name(obj);
    if gr.group.is_empty() && gr.resource == "pods" {
        kubelet::pod_deleted(cluster, &ns, &name);
    }
    if gr.group == "apiextensions.k8s.io" && gr.resource == "customresourcedefinitions" {
        crd::removed(cluster, obj);
    }
    cluster.gc.poke();
}

fn orphan_dependents(cluster: &Arc<Cluster>, owner_uid: &str) {
    for (gr, obj) in cluster.store.all_objects() {
        let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
            continue;
        };
        if !refs.iter().any(|r| r["uid"] == owner_uid) {
            continue;
        }
        let (ns, name) = crate::store::ns_name(&obj);
        let _ = cluster.store.update_latest(&gr, &ns, &name, |cur| {
            let refs = cur["metadata"]["ownerReferences"].as_array()?;
            let kept: Vec<Value> = refs.iter().filter(|r| r["uid"] != owner_uid).cloned().collect();
            let mut o = cur.clone();
            if kept.is_empty() {
                if let Some(m) = o["metadata"].as_object_mut() {
                    m.remove("ownerReferences");
                }
            } else {
                o["metadata"]["ownerReferences"] = json!(kept);
            }
            Some(o)
        });
    }
}

/// Whether a write failed only because the object changed after it was read: worth another sweep.
fn raced<T>(r: &ApiResult<T>) -> bool {
    r.as_ref().is_err_and(|e| e.code == 409)
}

/// One pass of garbage collection and namespace termination. Returns whether anything changed.
pub fn sweep(cluster: &Arc<Cluster>) -> bool {
    // Only objects in deletion or with an owner that is gone matter; copying every owned object (or
    // the whole store) on every sweep made GC the bottleneck of large runs.
    let (all, missing) = cluster.store.gc_candidates();
    let mut changed = false;
    for (gr, obj) in &all {
        let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
            continue;
        };
        if refs.is_empty() {
            continue;
        }
        let live: Vec<&Value> = refs
            .iter()
            .filter(|r| r["uid"].as_str().is_some_and(|u| !missing.contains(u)))
            .collect();
        if live.is_empty() {
            if obj["metadata"]["deletionTimestamp"].is_null()
                && let Some(rt) = type_of(cluster, gr)
            {
                let r = delete(cluster, &rt, obj, "Background");
                changed |= r.is_ok() || raced(&r);
            }
        } else if live.len() < refs.len() {
            // Drop the references to owners that are gone, from the object as it is now.
            let dead: HashSet<&str> = refs
                .iter()
                .filter_map(|r| r["uid"].as_str())
                .filter(|u| missing.contains(*u))
                .collect();
            let (ns, name) = crate::store::ns_name(obj);
            let r = cluster.store.update_latest(gr, &ns, &name, |cur| {
                let refs = cur["metadata"]["ownerReferences"].as_array()?;
                let kept: Vec<Value> = refs
                    .iter()
                    .filter(|r| r["uid"].as_str().is_none_or(|u| !dead.contains(u)))
                    .cloned()
                    .collect();
                if kept.len() == refs.len() {
                    return None;
                }
                let mut o = cur.clone();
                o["metadata"]["ownerReferences"] = json!(kept);
                Some(o)
            });
            changed |= matches!(r, Ok(Some(_)));
        }
    }
    // Foreground deletions finish once no dependents are left; their dependents are deleted first.
    for (gr, obj) in &all {
        if obj["metadata"]["deletionTimestamp"].is_null() || !finalizers(obj).iter().any(|f| f == "foregroundDeletion")
        {
            continue;
        }
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default();
        // Its dependents (their owner exists, so they are not among the candidates): rare enough to look
        // them up here.
        let dependents = cluster.store.objects_where(|d| {
            d["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["uid"] == uid))
        });
        if !dependents.is_empty() {
            for (dgr, d) in &dependents {
                if d["metadata"]["deletionTimestamp"].is_null()
                    && let Some(rt) = type_of(cluster, dgr)
                {
                    let _ = delete(cluster, &rt, d, "Background");
                    changed = true;
                }
            }
            continue;
        }
        let (ns, name) = crate::store::ns_name(obj);
        let r = cluster.store.update_latest(gr, &ns, &name, |cur| {
            let fins: Vec<String> = finalizers(cur)
                .into_iter()
                .filter(|f| f != "foregroundDeletion")
                .collect();
            let mut o = cur.clone();
            o["metadata"]["finalizers"] = json!(fins);
            Some(o)
        });
        if let Ok(Some(stored)) = r {
            changed = true;
            if finalizers(&stored).is_empty() {
                finish_deletion(cluster, gr, &stored);
            }
        }
    }
    // Terminating namespaces: delete their content, then the namespace.
    let nsgr = GroupResource::new("", "namespaces");
    for (gr, ns_obj) in &all {
        if *gr != nsgr || ns_obj["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let ns = ns_obj["metadata"]["name"].as_str().unwrap_or_default();
        let content = cluster
            .store
            .objects_where(|o| o["metadata"]["namespace"].as_str() == Some(ns));
        if content.is_empty() {
            let r = cluster.store.update_latest(&nsgr, "", ns, |cur| {
                let mut o = cur.clone();
                o["spec"]["finalizers"] = json!([]);
                Some(o)
            });
            if let Ok(Some(stored)) = r {
                changed = true;
                if finalizers(&stored).is_empty()
                    && let Some(removed) = cluster.store.remove(&nsgr, "", ns)
                {
                    post_remove(cluster, &nsgr, &removed);
                }
            }
        } else {
            for (cgr, o) in &content {
                if o["metadata"]["deletionTimestamp"].is_null()
                    && let Some(rt) = type_of(cluster, cgr)
                {
                    let _ = delete(cluster, &rt, o, "Background");
                    changed = true;
                }
            }
        }
    }
    changed
}

/// Runs the collector until the cluster is dropped.
pub fn spawn(cluster: &Arc<Cluster>) {
    let weak = Arc::downgrade(cluster);
    tokio::spawn(async move {
        loop {
            let Some(c) = weak.upgrade() else { return };
            for _ in 0..20 {
                if !sweep(&c) {
                    break;
                }
            }
            let notified = async {
                c.gc.wake.notified().await;
            };
            // Periodic sweeps also catch changes no deletion announced (e.g. an ownerReference to a uid
            // that never existed).
            let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
            drop(c);
            // Coalesce bursts of deletions into one sweep.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
