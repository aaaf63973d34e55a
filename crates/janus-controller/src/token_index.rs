//! The token Secrets on the central cluster, by request, as a metadata-only watch and this
//! controller's own writes saw them: an ending finds a request's Secrets and the clusters their tokens
//! were issued for without listing (and scanning) every token Secret on the API server.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// The watch failed and has not delivered an event since: it may be missing changes (kube's
    /// watcher resumes from its last resourceVersion and replays them once it is back).
    degraded: bool,
    /// Secrets this controller began to write, with when: part of every answer for [`PENDING_FOR`],
    /// whether or not the write succeeded and its watch event arrived (a relist running meanwhile may
    /// predate it). One that was never written costs a deletion that finds nothing.
    pending: HashMap<String, (String, String, Instant)>,
}

/// How long a write this controller began is part of the answers regardless of the watch: longer than
/// a reconcile may run (30 s), so the write is over and, while the watch works (see
/// [`TokenIndex::degraded`]), its event has long arrived.
pub const PENDING_FOR: Duration = Duration::from_secs(120);

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
        inner.degraded = false;
        match event {
            watcher::Event::Init => inner.listing = Some(Entries::new()),
            watcher::Event::InitApply(m) => {
                if let (Some((name, e)), Some(l)) = (entry(m), inner.listing.as_mut()) {
                    l.insert(name, e);
                }
            }
            watcher::Event::InitDone => inner.listed = Some(inner.listing.take().unwrap_or_default()),
            // Changes count only after a complete list (kube's watcher sends none before; a guard).
            watcher::Event::Apply(m) => {
                if let Some(l) = inner.listed.as_mut() {
                    match entry(m) {
                        Some((name, e)) => {
                            l.insert(name, e);
                        }
                        None => {
                            l.remove(&m.name_any());
                        }
                    }
                }
            }
            watcher::Event::Delete(m) => {
                if let Some(l) = inner.listed.as_mut() {
                    l.remove(&m.name_any());
                }
            }
        }
    }

    /// Notes that the watch failed: until it delivers again, the index does not answer (endings list
    /// the Secrets on the API server), since a write begun more than [`PENDING_FOR`] ago whose watch
    /// event has not come would otherwise be missed.
    pub fn degraded(&self) {
        self.inner().degraded = true;
    }

    /// The clusters of the writes begun for `request` in the last [`PENDING_FOR`]: added to what a
    /// list on the API server finds when the index cannot answer.
    pub fn pending_clusters(&self, request: &str) -> Vec<String> {
        let now = Instant::now();
        let inner = self.inner();
        let mut out: Vec<String> = inner
            .pending
            .values()
            .filter(|(r, _, at)| r == request && now.duration_since(*at) < PENDING_FOR)
            .map(|(_, c, _)| c.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Notes a token Secret this controller is about to write (its name, request and cluster), so an
    /// ending that follows finds it whatever becomes of the write and before its watch event arrives.
    pub fn writing(&self, name: &str, request: &str, cluster: &str) {
        let now = Instant::now();
        let mut inner = self.inner();
        inner
            .pending
            .retain(|_, (_, _, at)| now.duration_since(*at) < PENDING_FOR);
        inner
            .pending
            .insert(name.to_string(), (request.to_string(), cluster.to_string(), now));
    }

    /// The request's token Secrets, or `None` when the index cannot answer: its watch has not listed
    /// yet, or a Secret does not name its cluster in metadata (then its data must be read).
    pub fn of_request(&self, request: &str) -> Option<Vec<TokenSecret>> {
        let inner = self.inner();
        if inner.degraded {
            return None;
        }
        let listed = inner.listed.as_ref()?;
        let now = Instant::now();
        // A name may come twice, with the cluster the Secret names and the one a write begun since
        // names: cleanup then reaches both (and the second deletion finds nothing).
        let mut found: BTreeSet<(&str, Option<&str>)> = BTreeSet::new();
        for (name, (r, cluster)) in listed {
            if r == request {
                found.insert((name, cluster.as_deref()));
            }
        }
        for (name, (r, cluster, at)) in &inner.pending {
            if r == request && now.duration_since(*at) < PENDING_FOR {
                found.insert((name, Some(cluster)));
            }
        }
        found
            .into_iter()
            .map(|(name, cluster)| {
                Some(TokenSecret {
                    name: name.to_string(),
                    cluster: Some(cluster?.to_string()),
                })
            })
            .collect()
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
        index.apply(&watcher::Event::InitApply(meta("r-x", "r", Some("c1"))));
        index.apply(&watcher::Event::InitApply(meta("other-a", "other", Some("c1"))));
        // Begun while the list is on its way: the list may predate it.
        index.writing("r-b", "r", "c2");
        assert_eq!(index.of_request("r"), None, "half a list is no answer");
        index.apply(&watcher::Event::InitDone);
        assert_eq!(
            names(index.of_request("r")),
            Some(vec!["r-a@c1".into(), "r-b@c2".into(), "r-x@c1".into()])
        );
        assert_eq!(names(index.of_request("nobody")), Some(vec![]));

        index.apply(&watcher::Event::Delete(meta("r-a", "r", Some("c1"))));
        // A Secret that lost the request label is no longer the request's.
        index.apply(&watcher::Event::Apply(PartialObjectMeta {
            metadata: kube::core::ObjectMeta {
                name: Some("r-x".into()),
                ..Default::default()
            },
            ..Default::default()
        }));
        assert_eq!(names(index.of_request("r")), Some(vec!["r-b@c2".into()]));
    }

    /// A grant that writes its Secret and then fails (or is dropped with the other namespaces' grants)
    /// does not report the write; an ending right after, before the watch event, must still find it.
    #[test]
    fn a_write_begun_is_found_before_its_watch_event_and_across_a_relist() {
        let index = TokenIndex::default();
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitDone);
        index.writing("r-a", "r", "c1");
        assert_eq!(names(index.of_request("r")), Some(vec!["r-a@c1".into()]));
        // A relist whose snapshot predates the write.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitDone);
        assert_eq!(names(index.of_request("r")), Some(vec!["r-a@c1".into()]));
        // The watch event of the write, then its deletion: the write begun is still named (a deletion
        // that finds nothing costs little) until PENDING_FOR has passed.
        index.apply(&watcher::Event::Apply(meta("r-a", "r", Some("c1"))));
        index.apply(&watcher::Event::Delete(meta("r-a", "r", Some("c1"))));
        assert_eq!(names(index.of_request("r")), Some(vec!["r-a@c1".into()]));
        // Re-issued for another cluster since: both clusters are named.
        index.apply(&watcher::Event::Apply(meta("r-a", "r", Some("c0"))));
        index.writing("r-a", "r", "c2");
        assert_eq!(
            names(index.of_request("r")),
            Some(vec!["r-a@c0".into(), "r-a@c2".into()])
        );
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
    fn a_failed_watch_sends_endings_to_the_api_until_it_delivers_again() {
        let index = TokenIndex::default();
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitDone);
        index.writing("r-a", "r", "c1");
        index.degraded();
        assert_eq!(index.of_request("r"), None);
        assert_eq!(index.pending_clusters("r"), vec!["c1".to_string()]);
        assert!(index.pending_clusters("s").is_empty());
        index.apply(&watcher::Event::Apply(meta("r-a", "r", Some("c1"))));
        assert_eq!(names(index.of_request("r")), Some(vec!["r-a@c1".into()]));
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
