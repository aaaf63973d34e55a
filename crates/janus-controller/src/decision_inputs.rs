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

use kube::{Resource, ResourceExt as _};

/// The decision inputs last seen of every request, by a hash of its name.
///
/// A few words per request instead of kube-runtime's `predicate_filter`, which keeps an `ObjectRef`
/// (its strings) per request and was the filter here before. Names whose hashes collide share an
/// entry; the inputs' hashes carry the uid, so one request's inputs are never taken for the other's: at
/// worst an event starts a reconcile that was not needed.
#[derive(Debug, Default)]
pub struct DecisionInputs {
    seen: Mutex<HashMap<u64, Seen>>,
}

/// What is known of one request's decision inputs.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// In the last watch event about it.
    event: Option<u64>,
    /// In the last fresh read (or write) a reconcile acted on.
    acted: Option<u64>,
}

/// What a watch event about a request brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Decision inputs nothing has acted on yet: a reconcile.
    New,
    /// Inputs new to the watch that a reconcile has already read fresh and acted on: no reconcile, but
    /// whatever waits on the watch's view of the request (an ending noticed by a waiting reconcile)
    /// must still look.
    Acted,
    /// The inputs of the last event again (a status write's echo): nothing.
    Known,
}

impl DecisionInputs {
    /// What a watch event about `ar` brings; remembers its inputs.
    pub fn observe(&self, ar: &impl Resource) -> Observed {
        let inputs = inputs(ar, has_finalizer(ar));
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(key(&ar.name_any())).or_default();
        if entry.event == Some(inputs) {
            return Observed::Known;
        }
        entry.event = Some(inputs);
        if entry.acted == Some(inputs) {
            Observed::Acted
        } else {
            Observed::New
        }
    }

    /// Records the inputs of a request a reconcile read from the API server and is acting on: their
    /// watch event, when it arrives, has nothing new. A reconcile that fails is retried by its own
    /// result (the error policy always requeues), so no event is needed for that either.
    pub fn acting_on(&self, ar: &impl Resource) {
        self.record_acted(ar, has_finalizer(ar));
    }

    /// Records the inputs `ar` will have once our finalizer is added, before the patch is sent: its
    /// echo may arrive before the patch's answer. A patch that fails is retried like any reconcile.
    pub fn adding_finalizer(&self, ar: &impl Resource) {
        self.record_acted(ar, true);
    }

    fn record_acted(&self, ar: &impl Resource, finalizer: bool) {
        let inputs = inputs(ar, finalizer);
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key(&ar.name_any()))
            .or_default()
            .acted = Some(inputs);
    }

    /// Forgets a request that is gone. (A reconcile whose read answered just before the deletion may
    /// note the request again after this; the next relist's [`Self::retain`] drops that entry.)
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

fn has_finalizer(ar: &impl Resource) -> bool {
    ar.finalizers().iter().any(|f| f == janus_api::FINALIZER)
}

/// What a decision about a request rests on, hashed: which object it is (uid), its spec (by
/// generation), whether it is being deleted, and whether it carries our finalizer (someone removing it
/// must bring the request back at once: without it a deletion would skip cleanup). Status and other
/// metadata changes (mostly this controller's own writes) do not count.
fn inputs(ar: &impl Resource, finalizer: bool) -> u64 {
    let meta = ar.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    finalizer.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use janus_api::AccessRequest;

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
        assert_eq!(
            d.observe(&request("a", "u1", 1, false)),
            Observed::New,
            "the first sight"
        );
        assert_eq!(
            d.observe(&request("a", "u1", 1, false)),
            Observed::Known,
            "a status write's echo"
        );
        assert_eq!(
            d.observe(&request("a", "u1", 1, true)),
            Observed::New,
            "our finalizer added"
        );
        assert_eq!(
            d.observe(&request("a", "u1", 1, false)),
            Observed::New,
            "our finalizer removed by someone"
        );
        assert_eq!(
            d.observe(&request("a", "u1", 2, false)),
            Observed::New,
            "a decision in the spec"
        );
        let mut deleting = request("a", "u1", 2, false);
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert_eq!(d.observe(&deleting), Observed::New, "deleted");
        assert_eq!(
            d.observe(&request("b", "u2", 1, false)),
            Observed::New,
            "another request"
        );
    }

    #[test]
    fn what_a_reconcile_acts_on_starts_nothing_more_but_is_still_news_to_the_watch() {
        let d = DecisionInputs::default();
        assert_eq!(d.observe(&request("a", "u1", 1, false)), Observed::New);
        // The reconcile adds the finalizer and, reading the request fresh, finds it approved already.
        d.adding_finalizer(&request("a", "u1", 1, false));
        assert_eq!(
            d.observe(&request("a", "u1", 1, true)),
            Observed::Acted,
            "the finalizer's echo"
        );
        d.acting_on(&request("a", "u1", 2, true));
        assert_eq!(
            d.observe(&request("a", "u1", 2, true)),
            Observed::Acted,
            "the approval's own event, late"
        );
        assert_eq!(d.observe(&request("a", "u1", 2, true)), Observed::Known, "and its echo");
        // A stale event still counts as new: at worst a reconcile that finds nothing to do.
        assert_eq!(d.observe(&request("a", "u1", 1, true)), Observed::New);
    }

    #[test]
    fn a_request_recreated_under_its_name_is_new() {
        let d = DecisionInputs::default();
        assert_eq!(d.observe(&request("a", "u1", 1, true)), Observed::New);
        d.acting_on(&request("a", "u1", 1, true));
        assert_eq!(
            d.observe(&request("a", "u2", 1, true)),
            Observed::New,
            "same name, generation and finalizer, new uid"
        );
    }

    #[test]
    fn gone_requests_are_forgotten() {
        let d = DecisionInputs::default();
        for n in ["a", "b", "c"] {
            d.observe(&request(n, n, 1, true));
        }
        d.forget("a");
        assert_eq!(d.len(), 2);
        d.retain(["b"]);
        assert_eq!(d.len(), 1);
        assert_eq!(d.observe(&request("b", "b", 1, true)), Observed::Known);
        assert_eq!(
            d.observe(&request("c", "c", 1, true)),
            Observed::New,
            "forgotten, so new again"
        );
    }
}
