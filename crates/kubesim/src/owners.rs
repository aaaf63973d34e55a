//! What the garbage collector needs to know, kept up to date on every write instead of found by
//! scanning the store: which objects are in deletion and which have an owner reference to a uid no
//! object has.
//!
//! The real garbage collector keeps a graph of owners and dependents fed by informers; it never walks
//! the whole store. kubesim's sweep did, under the store's lock, every 100 ms while deletions happened:
//! with tens of thousands of objects (a fleet's token Secrets and Events) that walk took half of the
//! central API server's CPU and made every other request wait for the lock (issue 19).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

/// An object's place in the store: (collection key, object key).
pub(crate) type Key = (String, String);

/// The garbage collector's index (see the module docs). Every write of the store goes through
/// [`OwnerIndex::replace`]; a wholesale replacement of the contents rebuilds it.
#[derive(Default)]
pub(crate) struct OwnerIndex {
    /// Every uid an object in the store has, with how many have it (the API gives every object its
    /// own, but the store keeps a uid its in-process callers supply).
    uids: HashMap<String, usize>,
    /// Owner uid to the objects whose owner references name it.
    dependents: HashMap<String, HashSet<Key>>,
    /// Owner uids with dependents but no object: those dependents are what the sweep has to look at.
    missing: HashSet<String>,
    /// Objects with a deletion timestamp.
    deleting: HashSet<Key>,
    /// Objects with an owner reference without a uid (an owner that cannot exist).
    unnamed_owner: HashSet<Key>,
}

impl OwnerIndex {
    /// Notes that the object at `key` changed from `before` to `after` (`None`: absent).
    pub(crate) fn replace(&mut self, key: &Key, before: Option<&Value>, after: Option<&Value>) {
        if let Some(old) = before {
            self.remove(key, old);
        }
        if let Some(new) = after {
            self.add(key, new);
        }
    }

    fn add(&mut self, key: &Key, obj: &Value) {
        let md = &obj["metadata"];
        if let Some(uid) = md["uid"].as_str() {
            self.missing.remove(uid);
            *self.uids.entry(uid.to_string()).or_default() += 1;
        }
        if !md["deletionTimestamp"].is_null() {
            self.deleting.insert(key.clone());
        }
        for r in md["ownerReferences"].as_array().into_iter().flatten() {
            match r["uid"].as_str() {
                Some(owner) => {
                    self.dependents
                        .entry(owner.to_string())
                        .or_default()
                        .insert(key.clone());
                    if !self.uids.contains_key(owner) {
                        self.missing.insert(owner.to_string());
                    }
                }
                None => {
                    self.unnamed_owner.insert(key.clone());
                }
            }
        }
    }

    fn remove(&mut self, key: &Key, obj: &Value) {
        let md = &obj["metadata"];
        self.deleting.remove(key);
        self.unnamed_owner.remove(key);
        for r in md["ownerReferences"].as_array().into_iter().flatten() {
            let Some(owner) = r["uid"].as_str() else { continue };
            if let Some(deps) = self.dependents.get_mut(owner) {
                deps.remove(key);
                if deps.is_empty() {
                    self.dependents.remove(owner);
                    self.missing.remove(owner);
                }
            }
        }
        if let Some(uid) = md["uid"].as_str()
            && let Some(n) = self.uids.get_mut(uid)
        {
            *n -= 1;
            if *n == 0 {
                self.uids.remove(uid);
                if self.dependents.contains_key(uid) {
                    self.missing.insert(uid.to_string());
                }
            }
        }
    }

    /// The objects the sweep has to look at (in deletion, or with an owner that is gone), in store
    /// order, and the owner uids no object has.
    pub(crate) fn candidates(&self) -> (BTreeSet<&Key>, &HashSet<String>) {
        let mut keys: BTreeSet<&Key> = self.deleting.iter().chain(&self.unnamed_owner).collect();
        for owner in &self.missing {
            keys.extend(self.dependents.get(owner).into_iter().flatten());
        }
        (keys, &self.missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> Key {
        ("/secrets".into(), format!("ns/{name}"))
    }

    fn obj(uid: &str, owners: &[&str]) -> Value {
        let refs: Vec<Value> = owners
            .iter()
            .map(|o| json!({"uid": o, "kind": "X", "name": "x"}))
            .collect();
        json!({"metadata": {"uid": uid, "ownerReferences": refs}})
    }

    fn candidates(ix: &OwnerIndex) -> (Vec<String>, Vec<String>) {
        let (keys, missing) = ix.candidates();
        let mut k: Vec<String> = keys.into_iter().map(|k| k.1.clone()).collect();
        let mut m: Vec<String> = missing.iter().cloned().collect();
        k.sort();
        m.sort();
        (k, m)
    }

    #[test]
    fn follows_owners_coming_and_going_and_deletions() {
        let mut ix = OwnerIndex::default();
        // A dependent written before its owner exists is a candidate until the owner comes.
        ix.replace(&key("dep"), None, Some(&obj("d1", &["o1"])));
        assert_eq!(candidates(&ix), (vec!["ns/dep".into()], vec!["o1".into()]));
        ix.replace(&key("owner"), None, Some(&obj("o1", &[])));
        assert_eq!(candidates(&ix), (vec![], vec![]));
        // An update of the owner (same uid) changes nothing.
        ix.replace(&key("owner"), Some(&obj("o1", &[])), Some(&obj("o1", &[])));
        assert_eq!(candidates(&ix), (vec![], vec![]));
        // The owner goes: its dependent is a candidate; once the dependent goes too, nothing is left.
        ix.replace(&key("owner"), Some(&obj("o1", &[])), None);
        assert_eq!(candidates(&ix), (vec!["ns/dep".into()], vec!["o1".into()]));
        ix.replace(&key("dep"), Some(&obj("d1", &["o1"])), None);
        assert_eq!(candidates(&ix), (vec![], vec![]));
        // Dropping the dead reference also ends it.
        ix.replace(&key("dep2"), None, Some(&obj("d2", &["gone", "o2"])));
        ix.replace(&key("o2"), None, Some(&obj("o2", &[])));
        assert_eq!(candidates(&ix), (vec!["ns/dep2".into()], vec!["gone".into()]));
        ix.replace(
            &key("dep2"),
            Some(&obj("d2", &["gone", "o2"])),
            Some(&obj("d2", &["o2"])),
        );
        assert_eq!(candidates(&ix), (vec![], vec![]));
        // In deletion, and an owner reference without a uid.
        let mut deleting = obj("d3", &[]);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-12-07T09:00:00Z");
        ix.replace(&key("dep3"), None, Some(&deleting));
        ix.replace(
            &key("dep4"),
            None,
            Some(&json!({"metadata": {"uid": "d4", "ownerReferences": [{"kind": "X"}]}})),
        );
        assert_eq!(candidates(&ix).0, vec!["ns/dep3".to_string(), "ns/dep4".to_string()]);
        ix.replace(&key("dep3"), Some(&deleting), None);
        assert_eq!(candidates(&ix).0, vec!["ns/dep4".to_string()]);
    }

    /// Two objects with one uid (written in-process): the owner is gone only when both are.
    #[test]
    fn a_uid_two_objects_share_is_gone_with_the_last_of_them() {
        let mut ix = OwnerIndex::default();
        ix.replace(&key("a"), None, Some(&obj("same", &[])));
        ix.replace(&key("b"), None, Some(&obj("same", &[])));
        ix.replace(&key("dep"), None, Some(&obj("d", &["same"])));
        ix.replace(&key("a"), Some(&obj("same", &[])), None);
        assert_eq!(candidates(&ix), (vec![], vec![]));
        ix.replace(&key("b"), Some(&obj("same", &[])), None);
        assert_eq!(candidates(&ix), (vec!["ns/dep".into()], vec!["same".into()]));
    }
}
