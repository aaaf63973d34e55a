//! The token Secrets on the central cluster, by request, as a metadata-only watch and this
//! controller's own writes saw them: an ending finds a request's Secrets and the clusters their tokens
//! were issued for without listing (and scanning) every token Secret on the API server.

use std::collections::HashMap;
use std::sync::Mutex;

use janus_api::REQUEST_LABEL;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

/// Annotation on a token Secret naming the cluster its token was issued for (also in its data, key
/// `cluster`, which a metadata watch does not carry).
pub const TOKEN_CLUSTER_ANNOTATION: &str = "k8s-janus.opsmode.io/token-cluster";

/// One token Secret as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSecret {
    /// The Secret's name.
    pub name: String,
    /// The cluster its token was issued for; `None` for a Secret written before the annotation existed.
    pub cluster: Option<String>,
}

/// Secret name → (request, cluster).
type Entries = HashMap<String, (String, Option<String>)>;

#[derive(Default)]
struct Inner {
    /// Complete from the watch's first list on; `None` before.
    listed: Option<Entries>,
    /// A (re)list in progress: replaces `listed` when complete.
    listing: Option<Entries>,
}

/// The index. Deletions are learnt from the watch only: a Secret whose deletion a finalizer holds is
/// still there, and a second ending still finds it.
#[derive(Default)]
pub struct TokenIndex {
    inner: Mutex<Inner>,
}

fn entry(meta: &PartialObjectMeta<Secret>) -> Option<(String, (String, Option<String>))> {
    let request = meta.labels().get(REQUEST_LABEL)?.clone();
    let cluster = meta.annotations().get(TOKEN_CLUSTER_ANNOTATION).cloned();
    Some((meta.name_any(), (request, cluster)))
}

impl TokenIndex {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one event of the metadata watch of the token Secrets.
    pub fn apply(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let mut inner = self.inner();
        match event {
            watcher::Event::Init => inner.listing = Some(Entries::new()),
            watcher::Event::InitApply(m) => {
                if let Some((name, e)) = entry(m) {
                    inner.listing.get_or_insert_with(Entries::new).insert(name, e);
                }
            }
            // Our own writes during the list went into it too ([`TokenIndex::wrote`]).
            watcher::Event::InitDone => inner.listed = Some(inner.listing.take().unwrap_or_default()),
            watcher::Event::Apply(m) => match entry(m) {
                Some((name, e)) => {
                    inner.listed.get_or_insert_with(Entries::new).insert(name, e);
                }
                None => {
                    if let Some(l) = inner.listed.as_mut() {
                        l.remove(&m.name_any());
                    }
                }
            },
            watcher::Event::Delete(m) => {
                if let Some(l) = inner.listed.as_mut() {
                    l.remove(&m.name_any());
                }
            }
        }
    }

    /// Notes a token Secret this controller has just written, before its watch event arrives, so an
    /// ending that follows at once finds it.
    pub fn wrote(&self, name: &str, request: &str, cluster: &str) {
        let e = (request.to_string(), Some(cluster.to_string()));
        let mut inner = self.inner();
        if let Some(l) = inner.listing.as_mut() {
            l.insert(name.to_string(), e.clone());
        }
        if let Some(l) = inner.listed.as_mut() {
            l.insert(name.to_string(), e);
        }
    }

    /// The request's token Secrets, or `None` when the index cannot answer: its watch has not listed
    /// yet, or a Secret does not name its cluster in metadata (then its data must be read).
    pub fn of_request(&self, request: &str) -> Option<Vec<TokenSecret>> {
        let inner = self.inner();
        let listed = inner.listed.as_ref()?;
        let mut out: Vec<TokenSecret> = listed
            .iter()
            .filter(|(_, (r, _))| r == request)
            .map(|(name, (_, cluster))| TokenSecret {
                name: name.clone(),
                cluster: cluster.clone(),
            })
            .collect();
        if out.iter().any(|s| s.cluster.is_none()) {
            return None;
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(name: &str, request: &str, cluster: Option<&str>) -> PartialObjectMeta<Secret> {
        let mut m = PartialObjectMeta::<Secret>::default();
        m.metadata.name = Some(name.into());
        m.metadata.labels = Some(BTreeMap::from([(REQUEST_LABEL.to_string(), request.to_string())]));
        if let Some(c) = cluster {
            m.metadata.annotations = Some(BTreeMap::from([(TOKEN_CLUSTER_ANNOTATION.to_string(), c.to_string())]));
        }
        m
    }

    fn names(found: Option<Vec<TokenSecret>>) -> Option<Vec<String>> {
        found.map(|v| {
            v.into_iter()
                .map(|s| format!("{}@{}", s.name, s.cluster.unwrap_or_default()))
                .collect()
        })
    }

    #[test]
    fn answers_from_a_complete_list_on_with_our_writes_and_the_watch_changes() {
        let index = TokenIndex::default();
        assert_eq!(index.of_request("r"), None);
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(meta("r-a", "r", Some("c1"))));
        index.apply(&watcher::Event::InitApply(meta("other-a", "other", Some("c1"))));
        // Written while the list is on its way: the list may predate it.
        index.wrote("r-b", "r", "c2");
        assert_eq!(index.of_request("r"), None, "half a list is no answer");
        index.apply(&watcher::Event::InitDone);
        assert_eq!(
            names(index.of_request("r")),
            Some(vec!["r-a@c1".into(), "r-b@c2".into()])
        );
        assert_eq!(names(index.of_request("nobody")), Some(vec![]));

        index.wrote("r-c", "r", "c1");
        assert_eq!(names(index.of_request("r")).map(|v| v.len()), Some(3));
        index.apply(&watcher::Event::Delete(meta("r-a", "r", Some("c1"))));
        // A Secret that lost the request label is no longer the request's.
        index.apply(&watcher::Event::Apply(PartialObjectMeta {
            metadata: kube::core::ObjectMeta {
                name: Some("r-c".into()),
                ..Default::default()
            },
            ..Default::default()
        }));
        assert_eq!(names(index.of_request("r")), Some(vec!["r-b@c2".into()]));
    }

    #[test]
    fn a_secret_without_its_cluster_in_metadata_sends_the_ending_to_the_api() {
        let index = TokenIndex::default();
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(meta("old", "r", None)));
        index.apply(&watcher::Event::InitDone);
        assert_eq!(index.of_request("r"), None);
        assert_eq!(names(index.of_request("s")), Some(vec![]));
    }

    #[test]
    fn a_relist_replaces_what_the_last_list_knew() {
        let index = TokenIndex::default();
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(meta("gone", "r", Some("c"))));
        index.apply(&watcher::Event::InitDone);
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(meta("new", "r", Some("c"))));
        assert_eq!(names(index.of_request("r")), Some(vec!["gone@c".into()]));
        index.apply(&watcher::Event::InitDone);
        assert_eq!(names(index.of_request("r")), Some(vec!["new@c".into()]));
    }
}
