//! What each request's decisions rest on, as the controller last saw it, from watch events and from its
//! own fresh reads: a watch event that brings nothing a reconcile has not already acted on starts none.
//!
//! A reconcile reads its request from the API server, not from the cache, and under load the watch
//! lags behind that read. An approval arriving while the finalizer's echo is queued was then acted on
//! by the reconcile the echo started, and its own event, arriving later, started another reconcile that
//! found nothing to do: a read of the request and an admission for nothing, about one per request in
//! the fleet benchmark (issue 19). The finalizer's echo itself was the same: the reconcile that added
//! the finalizer continues with the object its patch returned.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Mutex;

use janus_api::AccessRequest;
use kube::ResourceExt as _;

/// The decision inputs last seen of every request, by a hash of its name.
///
/// Two hashes per request (16 bytes) instead of kube-runtime's `predicate_filter`, which keeps an
/// `ObjectRef` (its strings) per request and was the filter here before. Names whose hashes collide
/// share an entry; their inputs' hashes carry the uid, so one's inputs are never taken for the other's:
/// at worst an event starts a reconcile that was not needed.
#[derive(Debug, Default)]
pub struct DecisionInputs {
    seen: Mutex<HashMap<u64, u64>>,
}

impl DecisionInputs {
    /// Whether a watch event about `ar` brings decision inputs not seen yet (then it starts a
    /// reconcile); remembers them either way.
    pub fn is_new(&self, ar: &AccessRequest) -> bool {
        let inputs = inputs(ar);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(key(&ar.name_any()), inputs) != Some(inputs)
    }

    /// Records the inputs of a request a reconcile read from the API server (or wrote) and is acting on:
    /// their watch event, when it arrives, has nothing new. The reconcile is retried by its own result
    /// when it fails, so no event is needed for that either.
    pub fn acting_on(&self, ar: &AccessRequest) {
        let inputs = inputs(ar);
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key(&ar.name_any()), inputs);
    }

    /// Forgets a request that is gone.
    pub fn forget(&self, name: &str) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(name));
    }

    /// Keeps only the requests `live` names (after a relist: a request deleted while the watch was down
    /// brought no deletion event).
    pub fn retain<'a>(&self, live: impl IntoIterator<Item = &'a str>) {
        let live: std::collections::HashSet<u64> = live.into_iter().map(key).collect();
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| live.contains(k));
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn key(name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// What a decision about a request rests on, hashed: which object it is (uid), its spec (by
/// generation), whether it is being deleted, and whether it carries our finalizer. Status and other
/// metadata changes (mostly this controller's own writes) do not count.
fn inputs(ar: &AccessRequest) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ar.metadata.uid.hash(&mut h);
    ar.metadata.generation.hash(&mut h);
    ar.metadata.deletion_timestamp.is_some().hash(&mut h);
    // Someone removing our finalizer must bring the request back at once: without it a deletion
    // would skip cleanup.
    ar.finalizers().iter().any(|f| f == janus_api::FINALIZER).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn request(name: &str, uid: &str, generation: i64, finalizer: bool) -> AccessRequest {
        let mut ar: AccessRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "k8s-janus.opsmode.io/v1alpha1",
            "kind": "AccessRequest",
            "metadata": {"name": name, "uid": uid, "generation": generation},
            "spec": {"cluster": "c", "namespaces": ["ns"], "requester": "a@example.com", "ttlSeconds": 600,
                     "reason": "r"},
        }))
        .expect("request");
        if finalizer {
            ar.metadata.finalizers = Some(vec![janus_api::FINALIZER.into()]);
        }
        ar
    }

    #[test]
    fn an_event_starts_a_reconcile_only_with_inputs_not_seen() {
        let d = DecisionInputs::default();
        assert!(d.is_new(&request("a", "u1", 1, false)), "the first sight");
        assert!(!d.is_new(&request("a", "u1", 1, false)), "a status write's echo");
        assert!(d.is_new(&request("a", "u1", 1, true)), "our finalizer added");
        assert!(
            d.is_new(&request("a", "u1", 1, false)),
            "our finalizer removed by someone"
        );
        assert!(d.is_new(&request("a", "u1", 2, false)), "a decision in the spec");
        let mut deleting = request("a", "u1", 2, false);
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert!(d.is_new(&deleting), "deleted");
        assert!(d.is_new(&request("b", "u2", 1, false)), "another request");
    }

    #[test]
    fn what_a_reconcile_acts_on_starts_nothing_more() {
        let d = DecisionInputs::default();
        assert!(d.is_new(&request("a", "u1", 1, false)));
        // The reconcile adds the finalizer and, reading the request fresh, finds it approved already.
        d.acting_on(&request("a", "u1", 1, true));
        d.acting_on(&request("a", "u1", 2, true));
        assert!(
            !d.is_new(&request("a", "u1", 2, true)),
            "the approval's own event, late"
        );
        // A stale event still counts as new: at worst a reconcile that finds nothing to do.
        assert!(d.is_new(&request("a", "u1", 1, true)));
    }

    #[test]
    fn a_request_recreated_under_its_name_is_new() {
        let d = DecisionInputs::default();
        assert!(d.is_new(&request("a", "u1", 1, true)));
        assert!(
            d.is_new(&request("a", "u2", 1, true)),
            "same name, generation and finalizer, new uid"
        );
    }

    #[test]
    fn gone_requests_are_forgotten() {
        let d = DecisionInputs::default();
        for n in ["a", "b", "c"] {
            d.is_new(&request(n, n, 1, true));
        }
        d.forget("a");
        assert_eq!(d.len(), 2);
        d.retain(["b"]);
        assert_eq!(d.len(), 1);
        assert!(!d.is_new(&request("b", "b", 1, true)));
        assert!(d.is_new(&request("c", "c", 1, true)), "forgotten, so new again");
    }
}
