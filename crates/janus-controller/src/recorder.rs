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
//! still true, only less folded. Publications of one Event take turns (a lock per remembered Event
//! held across the API call), so concurrent repeats neither create two Events nor count backwards.
//!
//! The note is part of the key: kube-runtime's keyed on the reason alone, so a second extension within
//! six minutes bumped the first Event's count and kept its note, with the old expiry in it.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

/// How long an Event takes repeats into its series, from its first publication (kube-runtime's six
/// minutes, but counted from the first publication where kube-runtime counts from the last repeat: a
/// failure repeating all day is a new Event every six minutes, not one Event the API server's Event
/// TTL deletes under it).
pub const WINDOW: Duration = Duration::from_secs(6 * 60);
/// How many recent Events are remembered for folding repeats (client-go's `maxLruCacheEntries`).
pub const CAPACITY: usize = 4096;

/// Where Events about cluster-scoped objects go, as kube-runtime and client-go put them.
const DEFAULT_NAMESPACE: &str = "default";

/// The longest Event name the API server takes (a DNS subdomain).
const NAME_LIMIT: usize = 253;

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
    by_key: HashMap<u64, Entry>,
    /// Keys in order of first publication, with that time (a key published again after its entry
    /// was dropped is queued again; the stale queue entry is recognised by its time).
    order: VecDeque<(Instant, u64)>,
}

/// One remembered Event.
struct Entry {
    /// The regarding object's uid (else its name) and the reason, compared on a hit: the key's hash
    /// alone could collide.
    uid: String,
    reason: String,
    first: Instant,
    /// Held across the API call: publications of the same Event take turns, so a repeat never
    /// races the create it repeats (two Events) or another repeat (a count going backwards).
    slot: Arc<tokio::sync::Mutex<Slot>>,
}

/// The Event as the API server has it, once created.
#[derive(Default)]
struct Slot {
    /// Namespace and name of the created Event; `None` until a create succeeds.
    created: Option<(String, String)>,
    count: i32,
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
            if self.by_key.get(&key).is_some_and(|e| e.first == first) {
                self.by_key.remove(&key);
            }
        }
    }

    /// The slot of the Event `key` names: the one remembered, or a new one (remembered from now).
    fn slot(&mut self, key: u64, uid: &str, reason: &str, now: Instant) -> Arc<tokio::sync::Mutex<Slot>> {
        self.prune(now, 0);
        if let Some(e) = self.by_key.get(&key)
            && e.uid == uid
            && e.reason == reason
        {
            return e.slot.clone();
        }
        // Either new, or a colliding key of another Event: the newer one is remembered.
        self.prune(now, 1);
        let slot = Arc::new(tokio::sync::Mutex::new(Slot::default()));
        self.order.push_back((now, key));
        self.by_key.insert(
            key,
            Entry {
                uid: uid.to_string(),
                reason: reason.to_string(),
                first: now,
                slot: slot.clone(),
            },
        );
        slot
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
    /// object, type, reason and note) first published within [`WINDOW`].
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
        let slot = {
            let mut recent = self.recent();
            let key = recent.key(&uid, type_, reason, note);
            recent.slot(key, &uid, reason, Instant::now())
        };
        let mut slot = slot.lock().await;
        if let Some((namespace, name)) = slot.created.clone() {
            let count = slot.count.saturating_add(1);
            let series = serde_json::json!({
                "series": {"count": count, "lastObservedTime": MicroTime(k8s_openapi::jiff::Timestamp::now())}
            });
            let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => {
                    slot.count = count;
                    return Ok(());
                }
                // Deleted meanwhile (the API server's Event TTL, or a person), or the patch is not
                // allowed (an operator trimmed the verb) or not taken: a new Event instead, so the
                // occurrence is not lost.
                Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 422) => {
                    tracing::debug!(event = %name, code = s.code, "cannot add to the Event's series; publishing a new one");
                    *slot = Slot::default();
                }
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
        if let Some(name) = created.metadata.name {
            *slot = Slot {
                created: Some((namespace, name)),
                count: 1,
            };
        }
        Ok(())
    }

    /// A new Event, named as client-go and kube-runtime name them (the object's name and the time).
    fn event(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: &str, namespace: &str) -> Event {
        let now = k8s_openapi::jiff::Timestamp::now();
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                name: Some(event_name(object, now.as_nanosecond())),
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

/// `<object>.<nanoseconds in hex>`, the object's name cut so the whole stays a valid name (an
/// AccessRequest's name may itself be 253 characters long).
fn event_name(object: &str, nanos: i128) -> String {
    let suffix = format!(".{nanos:x}");
    let mut end = object.len().min(NAME_LIMIT.saturating_sub(suffix.len()));
    while !object.is_char_boundary(end) {
        end -= 1;
    }
    // A DNS subdomain's labels end in an alphanumeric character.
    let head = object[..end].trim_end_matches(['.', '-']);
    format!("{head}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &Arc<tokio::sync::Mutex<Slot>>, b: &Arc<tokio::sync::Mutex<Slot>>) -> bool {
        Arc::ptr_eq(a, b)
    }

    #[test]
    fn a_repeat_within_the_window_finds_the_first_event() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        let key = r.key("u1", EventType::Normal, "Granted", "note");
        let first = r.slot(key, "u1", "Granted", t0);
        let again = r.slot(key, "u1", "Granted", t0 + WINDOW - Duration::from_secs(1));
        assert!(same(&first, &again));
        assert_eq!(r.by_key.len(), 1);
        assert_eq!(r.order.len(), 1);
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
        let first = r.slot(7, "u1", "Granted", t0);
        let other = r.slot(7, "u2", "Granted", t0 + Duration::from_millis(1));
        assert!(!same(&first, &other));
        let other_reason = r.slot(7, "u2", "Expired", t0 + Duration::from_millis(2));
        assert!(!same(&other, &other_reason));
    }

    #[test]
    fn events_are_forgotten_after_the_window() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        let first = r.slot(1, "u1", "Granted", t0);
        let later = r.slot(1, "u1", "Granted", t0 + WINDOW);
        assert!(!same(&first, &later), "a repeat after the window is a new Event");
        assert_eq!(r.by_key.len(), 1);
        assert_eq!(r.order.len(), 1);
    }

    #[test]
    fn memory_is_bounded_by_the_capacity_dropping_the_oldest() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        let mut slots = Vec::new();
        for k in 0..(CAPACITY as u64 + 100) {
            slots.push(r.slot(k, &format!("u{k}"), "Granted", t0 + Duration::from_millis(k)));
        }
        assert_eq!(r.by_key.len(), CAPACITY);
        assert_eq!(r.order.len(), CAPACITY);
        assert!(!r.by_key.contains_key(&99) && r.by_key.contains_key(&100));
        let last = CAPACITY as u64 + 99;
        let again = r.slot(last, &format!("u{last}"), "Granted", t0 + Duration::from_secs(10));
        assert!(same(&again, &slots[last as usize]));
    }

    #[test]
    fn a_key_remembered_again_is_not_dropped_by_its_stale_queue_entry() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        // Remembered for an object, then its key taken by another (a collision), then by the first
        // again: three queue entries, one live.
        r.slot(1, "u1", "Granted", t0);
        r.slot(1, "u2", "Granted", t0 + Duration::from_secs(100));
        let live = r.slot(1, "u1", "Granted", t0 + Duration::from_secs(300));
        // The first two queue entries expire; the live Event is still remembered.
        let again = r.slot(1, "u1", "Granted", t0 + WINDOW + Duration::from_secs(120));
        assert!(same(&live, &again));
        assert_eq!(r.order.len(), 1);
    }

    #[test]
    fn event_names_stay_valid_names() {
        assert_eq!(event_name("req-1", 0xabc), "req-1.abc");
        let long = format!("{}-{}", "a".repeat(200), "b".repeat(52));
        assert_eq!(long.len(), 253);
        let nanos = 0x1_8a2b_3c4d_5e6f_7081_i128;
        let name = event_name(&long, nanos);
        assert!(name.len() <= NAME_LIMIT, "{}", name.len());
        assert!(name.ends_with(".18a2b3c4d5e6f7081"), "{name}");
        // Cut right after a hyphen: the hyphen goes too.
        let cut_at_hyphen = format!("{}-{}", "a".repeat(234), "b".repeat(18));
        let name = event_name(&cut_at_hyphen, nanos);
        assert!(!name.contains("-."), "{name}");
        assert!(name.len() <= NAME_LIMIT);
    }
}
