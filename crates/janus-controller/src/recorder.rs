//! Publishes the controller's Kubernetes Events (events.k8s.io/v1), folding an identical repeat into
//! the first Event's series, with a bounded memory of what it published.
//!
//! kube-runtime's `Recorder`, used before, keeps every Event it published in the last six minutes, whole
//! (about 2 KB each), and scans them all under a write lock on every publish. The controller publishes
//! about four Events per request, so at fleet scale that memory was its largest allocation (a 70 MB
//! table at 4,000 grants, see docs/benchmarks.md) and each publish was a pass over all of it. Here a
//! repeat is recognised by a key (the object's uid, the type, the reason and the note) and only what a
//! series patch needs is kept, for at most [`WINDOW`] and the [`CAPACITY`] most recent Events (the bound
//! client-go's event correlator keeps). An Event that repeats after either is a new Event, which is
//! still true, only less folded.
//!
//! The note is part of the key: kube-runtime's keyed on the reason alone, so a second extension within
//! six minutes bumped the first Event's count and kept its note, with the old expiry in it.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

/// How long an Event takes repeats into its series, from its first publication (kube-runtime's window).
pub const WINDOW: Duration = Duration::from_secs(6 * 60);
/// How many recent Events are remembered for folding repeats (client-go's `maxLruCacheEntries`).
pub const CAPACITY: usize = 4096;

/// Where Events about cluster-scoped objects go, as kube-runtime and client-go put them.
const DEFAULT_NAMESPACE: &str = "default";

/// An Event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something happened as it should.
    Normal,
    /// Something needs a person's attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Publishes Events as one reporting controller instance; cheap to share behind an `Arc`.
pub struct Recorder {
    client: kube::Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

/// The Events published within [`WINDOW`], at most [`CAPACITY`] of them.
struct Recent {
    keys: RandomState,
    by_key: HashMap<u64, Published>,
    /// Keys in order of first publication, with that time (a key published again after its entry
    /// was dropped is queued again; the stale queue entry is recognised by its time).
    order: VecDeque<(Instant, u64)>,
}

/// What a series patch needs of an Event published earlier.
struct Published {
    /// The regarding object's uid (else its name) and the reason, compared on a hit: the key's hash
    /// alone could collide.
    uid: String,
    reason: String,
    namespace: String,
    name: String,
    count: i32,
    first: Instant,
}

/// An Event about to be published, as `Recent` knows it.
enum Plan {
    /// Create a new Event.
    Create,
    /// Patch the series of an Event published earlier.
    Repeat {
        namespace: String,
        name: String,
        count: i32,
    },
}

impl Recent {
    fn new() -> Self {
        Self {
            keys: RandomState::new(),
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn key(&self, uid: &str, type_: EventType, reason: &str, note: &str) -> u64 {
        self.keys.hash_one((uid, type_, reason, note))
    }

    /// Drops what is older than [`WINDOW`], and the oldest beyond [`CAPACITY`] - `room`.
    fn prune(&mut self, now: Instant, room: usize) {
        while let Some(&(first, key)) = self.order.front() {
            let expired = now.saturating_duration_since(first) >= WINDOW;
            if !expired && self.order.len() + room <= CAPACITY {
                break;
            }
            self.order.pop_front();
            if self.by_key.get(&key).is_some_and(|p| p.first == first) {
                self.by_key.remove(&key);
            }
        }
    }

    /// Counts a publication of `key`: a repeat of an Event still remembered, or a new one.
    fn plan(&mut self, key: u64, uid: &str, reason: &str, now: Instant) -> Plan {
        self.prune(now, 0);
        match self.by_key.get_mut(&key) {
            Some(p) if p.uid == uid && p.reason == reason => {
                p.count = p.count.saturating_add(1);
                Plan::Repeat {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    count: p.count,
                }
            }
            _ => Plan::Create,
        }
    }

    /// Remembers an Event just created.
    fn created(&mut self, key: u64, published: Published) {
        self.prune(published.first, 1);
        self.order.push_back((published.first, key));
        self.by_key.insert(key, published);
    }

    fn forget(&mut self, key: u64) {
        self.by_key.remove(&key);
    }
}

impl Recorder {
    /// A recorder reporting as `controller` (`reportingController`), instance `instance`
    /// (`reportingInstance`, this replica).
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            recent: Mutex::new(Recent::new()),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many Events are remembered for folding repeats (at most [`CAPACITY`]).
    pub fn remembered(&self) -> usize {
        self.recent().by_key.len()
    }

    /// Publishes an Event about `regarding`: a new one, or the next count of the same Event (same
    /// object, type, reason and note) published within [`WINDOW`].
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        // The uid tells apart an object deleted and created again under its name; an object without
        // one (none of ours) is told by its name.
        let uid = regarding.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                regarding.namespace.as_deref().unwrap_or_default(),
                regarding.name.as_deref().unwrap_or_default()
            )
        });
        let uid = uid.as_str();
        let now = Instant::now();
        let (key, plan) = {
            let mut recent = self.recent();
            let key = recent.key(uid, type_, reason, note);
            (key, recent.plan(key, uid, reason, now))
        };
        if let Plan::Repeat { namespace, name, count } = plan {
            let series = serde_json::json!({
                "series": {"count": count, "lastObservedTime": MicroTime(k8s_openapi::jiff::Timestamp::now())}
            });
            let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => return Ok(()),
                // Deleted meanwhile (the API server's Event TTL, or a person): a new Event instead.
                Err(kube::Error::Api(s)) if s.code == 404 => self.recent().forget(key),
                Err(e) => return Err(e),
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let event = self.event(regarding, type_, reason, note, &namespace);
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let created = events.create(&PostParams::default(), &event).await?;
        let Some(name) = created.metadata.name else {
            return Ok(());
        };
        self.recent().created(
            key,
            Published {
                uid: uid.to_string(),
                reason: reason.to_string(),
                namespace,
                name,
                count: 1,
                first: now,
            },
        );
        Ok(())
    }

    /// A new Event, named as client-go and kube-runtime name them (the object's name and the time).
    fn event(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: &str, namespace: &str) -> Event {
        let now = k8s_openapi::jiff::Timestamp::now();
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(reason.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note.to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_.as_str().to_string()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(key_uid: &str, first: Instant) -> Published {
        Published {
            uid: key_uid.into(),
            reason: "Granted".into(),
            namespace: "default".into(),
            name: format!("{key_uid}.1"),
            count: 1,
            first,
        }
    }

    #[test]
    fn a_repeat_within_the_window_counts_on_the_first_event() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        let key = r.key("u1", EventType::Normal, "Granted", "note");
        assert!(matches!(r.plan(key, "u1", "Granted", t0), Plan::Create));
        r.created(key, published("u1", t0));
        for want in 2..=3 {
            match r.plan(key, "u1", "Granted", t0 + Duration::from_secs(1)) {
                Plan::Repeat { name, count, .. } => {
                    assert_eq!(name, "u1.1");
                    assert_eq!(count, want);
                }
                Plan::Create => panic!("a repeat within the window is folded"),
            }
        }
    }

    #[test]
    fn another_note_type_or_object_is_another_event() {
        let r = Recent::new();
        let base = r.key("u1", EventType::Normal, "Extended", "access now expires at 10:00");
        assert_ne!(
            base,
            r.key("u1", EventType::Normal, "Extended", "access now expires at 11:00")
        );
        assert_ne!(
            base,
            r.key("u1", EventType::Warning, "Extended", "access now expires at 10:00")
        );
        assert_ne!(
            base,
            r.key("u2", EventType::Normal, "Extended", "access now expires at 10:00")
        );
    }

    #[test]
    fn a_colliding_key_of_another_object_is_not_folded() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        r.created(7, published("u1", t0));
        assert!(matches!(r.plan(7, "u2", "Granted", t0), Plan::Create));
    }

    #[test]
    fn events_are_forgotten_after_the_window() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        r.created(1, published("u1", t0));
        assert!(matches!(
            r.plan(1, "u1", "Granted", t0 + WINDOW - Duration::from_secs(1)),
            Plan::Repeat { .. }
        ));
        assert!(matches!(r.plan(1, "u1", "Granted", t0 + WINDOW), Plan::Create));
        assert!(r.by_key.is_empty() && r.order.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_the_capacity_dropping_the_oldest() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        for k in 0..(CAPACITY as u64 + 100) {
            r.created(k, published(&format!("u{k}"), t0 + Duration::from_millis(k)));
        }
        assert_eq!(r.by_key.len(), CAPACITY);
        assert_eq!(r.order.len(), CAPACITY);
        assert!(!r.by_key.contains_key(&99) && r.by_key.contains_key(&100));
        let last = CAPACITY as u64 + 99;
        assert!(matches!(
            r.plan(last, &format!("u{last}"), "Granted", t0 + Duration::from_secs(10)),
            Plan::Repeat { .. }
        ));
    }

    #[test]
    fn a_key_created_again_is_not_dropped_by_its_stale_queue_entry() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        r.created(1, published("u1", t0));
        // The first Event was deleted: forgotten, and created again later.
        r.forget(1);
        let t1 = t0 + Duration::from_secs(300);
        r.created(1, published("u1", t1));
        // The first queue entry expires; the second Event is still remembered.
        assert!(matches!(
            r.plan(1, "u1", "Granted", t0 + WINDOW + Duration::from_secs(1)),
            Plan::Repeat { .. }
        ));
        assert_eq!(r.order.len(), 1);
    }
}
