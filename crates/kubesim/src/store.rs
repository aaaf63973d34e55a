//! The object store: every object as JSON, one global resourceVersion, and a bounded change history for watches.
//!
//! It also keeps a write version per collection and per (collection, namespace)
//! ([`Store::collection_version`]) so that derived data, such as the RBAC rules cache
//! ([`crate::auth::rbac`]), can tell cheaply whether the objects it was built from may have changed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::errors::{ApiError, ApiResult};
use crate::resources::GroupResource;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated (including status and metadata).
    Modified,
    /// Removed from the store.
    Deleted,
}

impl ChangeKind {
    /// The watch event type string.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One change, as delivered to watchers.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion this change produced.
    pub rv: u64,
    /// The collection.
    pub gr: GroupResource,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The object after the change (for deletions: the last state, with the deletion's resourceVersion).
    pub object: Value,
    /// The object before the change (updates and deletions), so filtered watches can see objects leave
    /// a selector and lists at an older resourceVersion can undo the change.
    pub previous: Option<Value>,
}

type Key = (String, String);

#[derive(Default, Serialize, Deserialize)]
struct Inner {
    rv: u64,
    /// Objects by collection, then by (namespace, name).
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// Changes with the time they were made, oldest first.
    #[serde(skip)]
    history: VecDeque<(Instant, Arc<Change>)>,
    /// The oldest resourceVersion a watch may still start from.
    #[serde(skip)]
    compacted_rv: u64,
    /// Write versions for [`Store::collection_version`]; see [`WriteVersions`].
    #[serde(skip)]
    versions: WriteVersions,
    /// What the garbage collector looks at ([`Store::gc_candidates`]).
    #[serde(skip)]
    owners: crate::owners::OwnerIndex,
}

/// Per-collection and per-(collection, namespace) write versions.
///
/// Invariant: a version never repeats and never goes back, and it moves whenever the objects it
/// covers may have changed. Derived data stamped with a version is therefore still valid exactly
/// while the version reads the same. `seq` is not the resourceVersion (which [`Store::restore`] may
/// set back) and is never persisted or reset, so a value seen before a restore cannot come back.
#[derive(Default)]
struct WriteVersions {
    /// The last version handed out.
    seq: u64,
    /// What an unwritten collection or namespace reads as: the `seq` of the last wholesale
    /// replacement of the contents (0 for a new store), so a restore moves every version at once.
    floor: u64,
    /// Collection key ([`coll_key`]) to the version of its last write.
    by_collection: HashMap<String, u64>,
    /// Collection key, then namespace ("" for cluster-scoped objects), to the version of its last write.
    by_namespace: HashMap<String, HashMap<String, u64>>,
}

impl WriteVersions {
    /// Records a write to one object of collection `ck` in namespace `ns`.
    fn bump(&mut self, ck: &str, ns: &str) {
        self.seq += 1;
        let v = self.seq;
        // Lookups first: this runs on every write, and the keys almost always exist already.
        match self.by_collection.get_mut(ck) {
            Some(c) => *c = v,
            None => {
                self.by_collection.insert(ck.to_string(), v);
            }
        }
        let per_ns = match self.by_namespace.get_mut(ck) {
            Some(m) => m,
            None => self.by_namespace.entry(ck.to_string()).or_default(),
        };
        match per_ns.get_mut(ns) {
            Some(n) => *n = v,
            None => {
                per_ns.insert(ns.to_string(), v);
            }
        }
    }

    /// Every collection and namespace changed at once (the contents were replaced).
    fn bump_all(&mut self) {
        self.seq += 1;
        self.floor = self.seq;
        self.by_collection.clear();
        self.by_namespace.clear();
    }

    fn get(&self, ck: &str, ns: Option<&str>) -> u64 {
        let v = match ns {
            None => self.by_collection.get(ck),
            Some(ns) => self.by_namespace.get(ck).and_then(|m| m.get(ns)),
        };
        v.copied().unwrap_or(self.floor)
    }
}

fn coll_key(gr: &GroupResource) -> String {
    // Both Event APIs read and write one collection (crate::events).
    let gr = crate::events::storage_gr(gr);
    format!("{}/{}", gr.group, gr.resource)
}

fn obj_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// Changes already recorded after a resourceVersion, and a receiver for the ones to come.
pub type WatchStart = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

/// The store of one simulated cluster.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Change>>,
    history_limit: Mutex<usize>,
    /// How long a change stays in the history (the watch-cache window or etcd's compaction interval).
    window: Mutex<Duration>,
    /// The RBAC authorizer's resolved rules, stamped with this store's write versions. It lives here
    /// because authorization only gets the store, and a cache must not outlive or cross stores.
    rbac_rules: crate::auth::rbac::RuleCache,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads `metadata.namespace` and `metadata.name`.
pub fn ns_name(obj: &Value) -> (String, String) {
    let md = &obj["metadata"];
    (
        md["namespace"].as_str().unwrap_or_default().to_string(),
        md["name"].as_str().unwrap_or_default().to_string(),
    )
}

/// Now as an RFC 3339 timestamp with second precision, as Kubernetes writes them.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(65536);
        Self {
            inner: Mutex::new(Inner {
                rv: 1,
                ..Default::default()
            }),
            tx,
            history_limit: Mutex::new(20_000),
            window: Mutex::new(Duration::from_secs(300)),
            rbac_rules: Default::default(),
        }
    }

    /// The RBAC rules cache of this store (see [`crate::auth::rbac`]).
    pub(crate) fn rbac_rules(&self) -> &crate::auth::rbac::RuleCache {
        &self.rbac_rules
    }

    /// Sets how long changes are kept for watches, `continue` tokens and exact lists in the past.
    pub fn set_window(&self, window: Duration) {
        *self.window.lock().unwrap_or_else(|e| e.into_inner()) = window;
    }

    /// The oldest resourceVersion a watch, `continue` token or exact list may still start from
    /// (older ones get 410 Gone).
    pub fn compacted_rv(&self) -> u64 {
        let mut g = self.lock();
        self.expire(&mut g);
        g.compacted_rv
    }

    /// Drops the changes older than the window, as etcd compaction and the watch cache's sliding
    /// window do: time, not only the number of changes, ends a resourceVersion's usefulness.
    fn expire(&self, g: &mut Inner) {
        let window = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        while g.history.front().is_some_and(|(at, _)| at.elapsed() > window) {
            if let Some((_, old)) = g.history.pop_front() {
                g.compacted_rv = old.rv;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current (newest) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Sets how many changes are kept for watches that start in the past.
    pub fn set_history_limit(&self, n: usize) {
        *self.history_limit.lock().unwrap_or_else(|e| e.into_inner()) = n.max(1);
    }

    /// Forgets all history: watches from any earlier resourceVersion get 410 Gone.
    pub fn compact(&self) {
        let mut g = self.lock();
        g.history.clear();
        g.compacted_rv = g.rv;
    }

    /// One object.
    pub fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&coll_key(gr))
            .and_then(|c| c.get(&obj_key(ns, name)))
            .map(|v| crate::events::view(gr, v).unwrap_or_else(|| v.clone()))
    }

    /// All objects of a collection, optionally in one namespace, with the list's resourceVersion.
    pub fn list(&self, gr: &GroupResource, ns: Option<&str>) -> (Vec<Value>, u64) {
        self.list_matching(gr, ns, |_| true)
    }

    /// Like [`Store::list`], cloning only the objects `keep` accepts (selectors on large collections).
    pub fn list_matching(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, u64) {
        let g = self.lock();
        // Selectors see the object as the caller's API shows it (crate::events: two views of Events).
        let pick = |v: &Value| match crate::events::view(gr, v) {
            Some(shown) => keep(&shown).then_some(shown),
            None => keep(v).then(|| v.clone()),
        };
        let items = match g.objects.get(&coll_key(gr)) {
            None => Vec::new(),
            Some(c) => match ns {
                None => c.values().filter_map(pick).collect(),
                Some(ns) => {
                    let prefix = format!("{ns}/");
                    c.range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .map(|(_, v)| v)
                        .filter_map(pick)
                        .collect()
                }
            },
        };
        (items, g.rv)
    }

    /// The write version of a collection (`ns` `None`) or of one namespace of it (`Some("")` for the
    /// cluster-scoped objects). It changes on every write to the objects it covers, including a
    /// [`Store::restore`], and never returns to an earlier value, so data derived from the store can
    /// be stamped with the versions read *before* deriving it and reused while they read the same.
    /// A write that changes nothing (same content) moves no version, as it emits no event.
    pub fn collection_version(&self, gr: &GroupResource, ns: Option<&str>) -> u64 {
        self.lock().versions.get(&coll_key(gr), ns)
    }

    /// [`Store::collection_version`] of several collections read at one instant (one lock).
    pub fn collection_versions<const N: usize>(&self, keys: [(&GroupResource, Option<&str>); N]) -> [u64; N] {
        let keys = keys.map(|(gr, ns)| (coll_key(gr), ns));
        let g = self.lock();
        keys.map(|(ck, ns)| g.versions.get(&ck, ns))
    }

    /// The names of all collections that hold objects.
    pub fn collections(&self) -> Vec<GroupResource> {
        self.lock()
            .objects
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .filter_map(|(k, _)| k.split_once('/').map(|(g, r)| GroupResource::new(g, r)))
            .collect()
    }

    fn record(&self, g: &mut Inner, mut change: Change) {
        // A change is recorded once, under the collection that stores the object.
        change.gr = crate::events::storage_gr(&change.gr).into_owned();
        // Every write of an object comes through here, so this is where the write versions move.
        g.versions.bump(&coll_key(&change.gr), &change.namespace);
        // And the garbage collector's index.
        let key = (coll_key(&change.gr), obj_key(&change.namespace, &change.name));
        let after = (change.kind != ChangeKind::Deleted).then_some(&change.object);
        g.owners.replace(&key, change.previous.as_ref(), after);
        let change = Arc::new(change);
        self.expire(g);
        g.history.push_back((Instant::now(), change.clone()));
        let limit = *self.history_limit.lock().unwrap_or_else(|e| e.into_inner());
        while g.history.len() > limit {
            if let Some((_, old)) = g.history.pop_front() {
                g.compacted_rv = old.rv;
            }
        }
        // No receivers is normal; a lagging receiver sees Lagged and is closed by the watch layer.
        let _ = self.tx.send(change);
    }

    /// Inserts a new object. Sets uid, resourceVersion and creationTimestamp.
    pub fn create(&self, gr: &GroupResource, obj: Value) -> ApiResult<Value> {
        let mut obj = crate::events::to_storage(gr, obj)?;
        let (ns, name) = ns_name(&obj);
        let mut g = self.lock();
        let coll = g.objects.entry(coll_key(gr)).or_default();
        let key = obj_key(&ns, &name);
        if coll.contains_key(&key) {
            return Err(ApiError::already_exists(gr, &name));
        }
        g.rv += 1;
        let rv = g.rv;
        let md = &mut obj["metadata"];
        md["resourceVersion"] = json!(rv.to_string());
        if md.get("uid").and_then(Value::as_str).is_none() {
            md["uid"] = json!(uuid::Uuid::new_v4().to_string());
        }
        if md.get("creationTimestamp").and_then(Value::as_str).is_none() {
            md["creationTimestamp"] = json!(now_rfc3339());
        }
        g.objects.entry(coll_key(gr)).or_default().insert(key, obj.clone());
        self.record(
            &mut g,
            Change {
                rv,
                gr: gr.clone(),
                namespace: ns,
                name,
                kind: ChangeKind::Added,
                object: obj.clone(),
                previous: None,
            },
        );
        Ok(crate::events::view(gr, &obj).unwrap_or(obj))
    }

    /// Replaces an object. With `expected_rv` the write fails with 409 Conflict if the object moved on.
    /// A write that changes nothing keeps the old resourceVersion and emits no event, as in Kubernetes.
    pub fn update(&self, gr: &GroupResource, obj: Value, expected_rv: Option<&str>) -> ApiResult<Value> {
        let mut g = self.lock();
        self.update_locked(&mut g, gr, obj, expected_rv)
    }

    /// A read-modify-write of the newest stored object in one step, so no other write can fall between
    /// the read and the write: `change` gets the object and returns its new content, or `None` to leave
    /// it as it is. `Ok(None)` when there is no such object or `change` declined.
    pub fn update_latest(
        &self,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        change: impl FnOnce(&Value) -> Option<Value>,
    ) -> ApiResult<Option<Value>> {
        let mut g = self.lock();
        let Some(current) = g.objects.get(&coll_key(gr)).and_then(|c| c.get(&obj_key(ns, name))) else {
            return Ok(None);
        };
        let rv = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let shown = crate::events::view(gr, current);
        let Some(new) = change(shown.as_ref().unwrap_or(current)) else {
            return Ok(None);
        };
        self.update_locked(&mut g, gr, new, Some(&rv)).map(Some)
    }

    fn update_locked(
        &self,
        g: &mut Inner,
        gr: &GroupResource,
        obj: Value,
        expected_rv: Option<&str>,
    ) -> ApiResult<Value> {
        let mut obj = crate::events::to_storage(gr, obj)?;
        let (ns, name) = ns_name(&obj);
        let key = obj_key(&ns, &name);
        let Some(current) = g.objects.get(&coll_key(gr)).and_then(|c| c.get(&key)).cloned() else {
            return Err(ApiError::not_found(gr, &name));
        };
        let cur_rv = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(exp) = expected_rv
            && !exp.is_empty()
            && exp != cur_rv
        {
            return Err(ApiError::conflict(gr, &name));
        }
        // Immutable server-owned metadata.
        obj["metadata"]["uid"] = current["metadata"]["uid"].clone();
        obj["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"].clone();
        obj["metadata"]["resourceVersion"] = json!(cur_rv);
        if obj == current {
            return Ok(crate::events::view(gr, &current).unwrap_or(current));
        }
        g.rv += 1;
        let rv = g.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        g.objects.entry(coll_key(gr)).or_default().insert(key, obj.clone());
        self.record(
            g,
            Change {
                rv,
                gr: gr.clone(),
                namespace: ns,
                name,
                kind: ChangeKind::Modified,
                object: obj.clone(),
                previous: Some(current),
            },
        );
        Ok(crate::events::view(gr, &obj).unwrap_or(obj))
    }

    /// Removes an object for good and emits DELETED.
    pub fn remove(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Value> {
        self.remove_if(gr, ns, name, None).ok().flatten()
    }

    /// Like [`Store::remove`], but only while the object is still at `expected_rv` (409 Conflict if it
    /// moved on), so a change made after the caller looked at it (say, a finalizer added) is not lost.
    pub fn remove_if(
        &self,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        expected_rv: Option<&str>,
    ) -> ApiResult<Option<Value>> {
        let mut g = self.lock();
        let Some(coll) = g.objects.get_mut(&coll_key(gr)) else {
            return Ok(None);
        };
        let key = obj_key(ns, name);
        if let Some(exp) = expected_rv.filter(|e| !e.is_empty())
            && coll
                .get(&key)
                .is_some_and(|cur| cur["metadata"]["resourceVersion"].as_str() != Some(exp))
        {
            return Err(ApiError::conflict(gr, name));
        }
        let Some(mut obj) = coll.remove(&key) else {
            return Ok(None);
        };
        let previous = obj.clone();
        g.rv += 1;
        let rv = g.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(
            &mut g,
            Change {
                rv,
                gr: gr.clone(),
                namespace: ns.to_string(),
                name: name.to_string(),
                kind: ChangeKind::Deleted,
                object: obj.clone(),
                previous: Some(previous),
            },
        );
        Ok(Some(crate::events::view(gr, &obj).unwrap_or(obj)))
    }

    /// Changes since `rv` (exclusive) plus a receiver for what follows. `Err` if history no longer reaches back.
    pub fn watch_from(&self, rv: u64) -> Result<WatchStart, u64> {
        let mut g = self.lock();
        self.expire(&mut g);
        let rx = self.tx.subscribe();
        if rv < g.compacted_rv {
            return Err(g.compacted_rv);
        }
        let past = g
            .history
            .iter()
            .filter(|(_, c)| c.rv > rv)
            .map(|(_, c)| c.clone())
            .collect();
        Ok((past, rx))
    }

    /// The objects of a collection as they were at resourceVersion `rv` (a snapshot read, as etcd
    /// serves a list at a revision), cloning only those `keep` accepts, in key order.
    /// `Err(ListAt::Compacted)` once `rv` is older than the history, `Err(ListAt::Future)` when the
    /// store has not reached `rv` yet.
    pub fn list_at(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        rv: u64,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<Vec<Value>, ListAt> {
        let mut g = self.lock();
        self.expire(&mut g);
        if rv > g.rv {
            return Err(ListAt::Future { current: g.rv });
        }
        if rv < g.compacted_rv {
            return Err(ListAt::Compacted);
        }
        let ck = coll_key(gr);
        let mut state: BTreeMap<String, Value> = g.objects.get(&ck).cloned().unwrap_or_default();
        // Undo the newer changes, newest first, to get back to `rv`.
        for (_, c) in g.history.iter().rev().take_while(|(_, c)| c.rv > rv) {
            if c.gr != *crate::events::storage_gr(gr) {
                continue;
            }
            let key = obj_key(&c.namespace, &c.name);
            match (&c.kind, &c.previous) {
                (ChangeKind::Added, _) => {
                    state.remove(&key);
                }
                (_, Some(prev)) => {
                    state.insert(key, prev.clone());
                }
                (_, None) => {
                    state.remove(&key);
                }
            }
        }
        let prefix = ns.map(|n| format!("{n}/"));
        Ok(state
            .into_iter()
            .filter(|(k, _)| prefix.as_ref().is_none_or(|p| k.starts_with(p.as_str())))
            .map(|(_, v)| crate::events::view(gr, &v).unwrap_or(v))
            .filter(|v| keep(v))
            .collect())
    }

    /// Serialises every object, for `--state` persistence and restarts.
    pub fn snapshot(&self) -> Value {
        let g = self.lock();
        json!({ "rv": g.rv, "objects": g.objects })
    }

    /// Replaces the contents with a snapshot taken by [`Store::snapshot`].
    pub fn restore(&self, snap: &Value) -> Result<(), String> {
        let objects: BTreeMap<String, BTreeMap<String, Value>> =
            serde_json::from_value(snap["objects"].clone()).map_err(|e| e.to_string())?;
        let rv = snap["rv"].as_u64().ok_or("snapshot without rv")?;
        let mut g = self.lock();
        g.objects = objects;
        g.rv = rv;
        g.history.clear();
        g.compacted_rv = rv;
        // The objects changed without going through `record`.
        g.versions.bump_all();
        let Inner { objects, owners, .. } = &mut *g;
        *owners = Default::default();
        for (ck, c) in objects.iter() {
            for (ok, v) in c {
                owners.replace(&(ck.clone(), ok.clone()), None, Some(v));
            }
        }
        Ok(())
    }

    /// Every (collection, object) pair; used by garbage collection.
    pub fn all_objects(&self) -> Vec<(GroupResource, Value)> {
        self.objects_where(|_| true)
    }

    /// The (collection, object) pairs `keep` accepts, cloning only those.
    pub fn objects_where(&self, keep: impl Fn(&Value) -> bool) -> Vec<(GroupResource, Value)> {
        let g = self.lock();
        let mut out = Vec::new();
        for (k, c) in &g.objects {
            if let Some((grp, res)) = k.split_once('/') {
                let gr = GroupResource::new(grp, res);
                for v in c.values().filter(|v| keep(v)) {
                    out.push((gr.clone(), v.clone()));
                }
            }
        }
        out
    }

    /// What a garbage-collector sweep has to look at: the objects in deletion, and the objects with an
    /// owner reference to a uid that no object has (with those uids). Read from an index kept on every
    /// write ([`crate::owners`]): walking the store under its lock on every sweep took half of a
    /// fleet's central API server (issue 19).
    pub fn gc_candidates(&self) -> (Vec<(GroupResource, Value)>, std::collections::HashSet<String>) {
        let g = self.lock();
        let (keys, missing) = g.owners.candidates();
        let out = keys
            .into_iter()
            .filter_map(|(ck, ok)| {
                let (grp, res) = ck.split_once('/')?;
                let v = g.objects.get(ck)?.get(ok)?;
                Some((GroupResource::new(grp, res), v.clone()))
            })
            .collect();
        (out, missing.clone())
    }
}

/// Why [`Store::list_at`] cannot serve a resourceVersion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAt {
    /// The history no longer reaches back that far (410 Gone).
    Compacted,
    /// The store has not reached it yet.
    Future {
        /// The newest resourceVersion.
        current: u64,
    },
}

/// Keys of objects for callers that track them.
pub type ObjectKey = Key;

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(ns: &str, name: &str) -> Value {
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"namespace":ns,"name":name},"data":{"a":"1"}})
    }

    #[test]
    fn create_get_update_conflict_delete() {
        let s = Store::new();
        let gr = GroupResource::new("", "configmaps");
        let o = s.create(&gr, cm("a", "x")).unwrap();
        assert!(s.create(&gr, cm("a", "x")).is_err());
        let rv = o["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let mut o2 = o.clone();
        o2["data"]["a"] = json!("2");
        let o3 = s.update(&gr, o2.clone(), Some(&rv)).unwrap();
        assert_ne!(o3["metadata"]["resourceVersion"], o["metadata"]["resourceVersion"]);
        let stale = s.update(&gr, o2, Some(&rv)).unwrap_err();
        assert_eq!(stale.code, 409);
        // A no-op write keeps the resourceVersion.
        let same = s.update(&gr, o3.clone(), None).unwrap();
        assert_eq!(same["metadata"]["resourceVersion"], o3["metadata"]["resourceVersion"]);
        assert!(s.remove(&gr, "a", "x").is_some());
        assert!(s.get(&gr, "a", "x").is_none());
    }

    #[test]
    fn list_by_namespace_does_not_leak_prefixes() {
        let s = Store::new();
        let gr = GroupResource::new("", "configmaps");
        s.create(&gr, cm("a", "1")).unwrap();
        s.create(&gr, cm("ab", "2")).unwrap();
        assert_eq!(s.list(&gr, Some("a")).0.len(), 1);
        assert_eq!(s.list(&gr, None).0.len(), 2);
    }

    #[test]
    fn conditional_writes_refuse_a_moved_object() {
        let s = Store::new();
        let gr = GroupResource::new("", "configmaps");
        let read = s.create(&gr, cm("a", "x")).unwrap();
        let read_rv = read["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        // Someone else writes after our read.
        let mut other = read.clone();
        other["data"]["b"] = json!("2");
        s.update(&gr, other, None).unwrap();
        let mut mine = read.clone();
        mine["data"]["c"] = json!("3");
        assert_eq!(s.update(&gr, mine, Some(&read_rv)).unwrap_err().code, 409);
        assert_eq!(s.remove_if(&gr, "a", "x", Some(&read_rv)).unwrap_err().code, 409);
        // A read-modify-write of the newest object keeps the other write.
        let done = s
            .update_latest(&gr, "a", "x", |cur| {
                let mut o = cur.clone();
                o["data"]["c"] = json!("3");
                Some(o)
            })
            .unwrap()
            .unwrap();
        assert_eq!(done["data"], json!({"a": "1", "b": "2", "c": "3"}));
        assert!(s.update_latest(&gr, "a", "x", |_| None).unwrap().is_none());
        assert!(
            s.update_latest(&gr, "a", "nope", |c| Some(c.clone()))
                .unwrap()
                .is_none()
        );
        let rv = done["metadata"]["resourceVersion"].as_str().unwrap();
        assert!(s.remove_if(&gr, "a", "x", Some(rv)).unwrap().is_some());
        assert!(s.remove_if(&gr, "a", "x", Some(rv)).unwrap().is_none());
    }

    #[test]
    fn collection_versions_move_on_every_write_and_never_repeat() {
        let s = Store::new();
        let gr = GroupResource::new("", "configmaps");
        let other = GroupResource::new("", "secrets");
        let v = |ns: Option<&str>| s.collection_version(&gr, ns);
        let mut seen = vec![v(None)];
        let snap = s.snapshot();
        let o = s.create(&gr, cm("a", "x")).unwrap();
        assert!(!seen.contains(&v(None)));
        seen.push(v(None));
        let a_after_create = v(Some("a"));
        let b_before = v(Some("b"));
        // A write in another namespace moves the collection, not namespace "a".
        s.create(&gr, cm("b", "y")).unwrap();
        assert!(!seen.contains(&v(None)));
        seen.push(v(None));
        assert_eq!(v(Some("a")), a_after_create);
        assert_ne!(v(Some("b")), b_before);
        // Another collection moves neither.
        let before = s.collection_versions([(&gr, None), (&gr, Some("a"))]);
        s.create(&other, cm("a", "z")).unwrap();
        assert_eq!(s.collection_versions([(&gr, None), (&gr, Some("a"))]), before);
        // A no-op write moves nothing; an update and a delete do.
        s.update(&gr, o.clone(), None).unwrap();
        assert_eq!(v(Some("a")), a_after_create);
        let mut changed = o.clone();
        changed["data"]["a"] = json!("2");
        s.update(&gr, changed, None).unwrap();
        assert_ne!(v(Some("a")), a_after_create);
        seen.push(v(None));
        s.remove(&gr, "a", "x").unwrap();
        assert!(!seen.contains(&v(None)));
        seen.push(v(None));
        // Restoring an older snapshot (a lower resourceVersion) gives versions never seen before,
        // even for collections and namespaces never written.
        let unwritten = s.collection_version(&GroupResource::new("", "pods"), Some("q"));
        s.restore(&snap).unwrap();
        assert!(!seen.contains(&v(None)));
        assert!(!seen.contains(&v(Some("a"))));
        assert_ne!(
            s.collection_version(&GroupResource::new("", "pods"), Some("q")),
            unwritten
        );
    }

    #[test]
    fn watch_history_and_gone() {
        let s = Store::new();
        let gr = GroupResource::new("", "configmaps");
        let start = s.current_rv();
        s.create(&gr, cm("a", "1")).unwrap();
        s.create(&gr, cm("a", "2")).unwrap();
        let (past, _) = s.watch_from(start).unwrap();
        assert_eq!(past.len(), 2);
        s.compact();
        assert!(s.watch_from(start).is_err());
        assert!(s.watch_from(s.current_rv()).is_ok());
    }
}
