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

/// What the index keeps of a token Secret.
#[derive(Debug, Clone)]
struct Known {
    request: String,
    cluster: Option<String>,
    /// Tells a relist's Secret that changed while the watch was away from one that did not.
    resource_version: Option<String>,
}

/// Secret name → what is known of it.
type Entries = HashMap<String, Known>;

/// What one event of the watch means for the requests the token Secrets belong to.
#[derive(Debug, PartialEq, Eq)]
pub enum Touched {
    /// Nothing to reconcile: a relist found the Secret as the index knew it.
    Nothing,
    /// The event's Secret appeared, changed or went: the requests owning it are reconciled (drift).
    Secret,
    /// A relist ended without the Secrets of these requests (deleted while the watch was away).
    Vanished(Vec<String>),
}

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

fn entry(meta: &PartialObjectMeta<Secret>) -> Option<(String, Known)> {
    let request = meta.labels().get(REQUEST_LABEL)?.clone();
    let cluster = meta.annotations().get(TOKEN_CLUSTER_ANNOTATION).cloned();
    Some((
        meta.name_any(),
        Known {
            request,
            cluster,
            resource_version: meta.metadata.resource_version.clone(),
        },
    ))
}

impl TokenIndex {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one event of the metadata watch of the token Secrets, and says which requests it
    /// concerns. A relist (after a watch failed, or its resourceVersion expired) reports only what
    /// changed while the watch was away: reporting every Secret again would reconcile every live request
    /// at once (10,000 fresh reads of requests at fleet scale) for Secrets nobody touched.
    pub fn apply(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) -> Touched {
        let mut inner = self.inner();
        // A watch that delivers again is trusted again; a list only once it is complete: until then
        // the index still holds the last list, which may lack what the failed watch missed.
        if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
            inner.degraded = false;
        }
        match event {
            watcher::Event::Init => {
                inner.listing = Some(Entries::new());
                Touched::Nothing
            }
            watcher::Event::InitApply(m) => {
                let Some((name, known)) = entry(m) else {
                    return Touched::Nothing;
                };
                // The first list reports every Secret, as a live watch would have: a change between a
                // request's first reconcile and this list must not go unseen.
                let touched = match inner.listed.as_ref() {
                    None => Touched::Secret,
                    Some(listed) => match listed.get(&name) {
                        Some(k) if k.resource_version == known.resource_version && known.resource_version.is_some() => {
                            Touched::Nothing
                        }
                        _ => Touched::Secret,
                    },
                };
                if let Some(l) = inner.listing.as_mut() {
                    l.insert(name, known);
                }
                touched
            }
            watcher::Event::InitDone => {
                let listing = inner.listing.take().unwrap_or_default();
                let vanished: BTreeSet<String> = inner
                    .listed
                    .as_ref()
                    .map(|old| {
                        old.iter()
                            .filter(|(name, _)| !listing.contains_key(*name))
                            .map(|(_, k)| k.request.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                inner.listed = Some(listing);
                if vanished.is_empty() {
                    Touched::Nothing
                } else {
                    Touched::Vanished(vanished.into_iter().collect())
                }
            }
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
                Touched::Secret
            }
            watcher::Event::Delete(m) => {
                if let Some(l) = inner.listed.as_mut() {
                    l.remove(&m.name_any());
                }
                Touched::Secret
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
        for (name, k) in listed {
            if k.request == request {
                found.insert((name, k.cluster.as_deref()));
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
    fn a_failed_watch_is_trusted_again_only_once_its_relist_is_complete() {
        let index = TokenIndex::default();
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitDone);
        index.degraded();
        // The relist after the failure: until its end the index holds the old list, without r-a.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(meta("r-a", "r", Some("c1"))));
        assert_eq!(index.of_request("r"), None, "answered from an incomplete relist");
        index.apply(&watcher::Event::InitDone);
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

    fn versioned(name: &str, request: &str, rv: &str) -> PartialObjectMeta<Secret> {
        let mut m = meta(name, request, Some("c"));
        m.metadata.resource_version = Some(rv.into());
        m
    }

    /// A relist (the watch expired or failed) reports only what changed while the watch was away; the
    /// first list and live changes report every Secret.
    #[test]
    fn a_relist_reports_only_what_changed_while_the_watch_was_away() {
        let index = TokenIndex::default();
        assert_eq!(index.apply(&watcher::Event::Init), Touched::Nothing);
        for (name, request) in [("a-1", "a"), ("b-1", "b"), ("c-1", "c"), ("c-2", "c")] {
            assert_eq!(
                index.apply(&watcher::Event::InitApply(versioned(name, request, "10"))),
                Touched::Secret,
                "the first list reports every Secret"
            );
        }
        assert_eq!(index.apply(&watcher::Event::InitDone), Touched::Nothing);
        assert_eq!(
            index.apply(&watcher::Event::Apply(versioned("a-1", "a", "11"))),
            Touched::Secret,
            "a live change"
        );

        index.apply(&watcher::Event::Init);
        // Unchanged since the watch saw it last.
        assert_eq!(
            index.apply(&watcher::Event::InitApply(versioned("a-1", "a", "11"))),
            Touched::Nothing
        );
        // Changed while the watch was away, and one that appeared meanwhile.
        assert_eq!(
            index.apply(&watcher::Event::InitApply(versioned("b-1", "b", "12"))),
            Touched::Secret
        );
        assert_eq!(
            index.apply(&watcher::Event::InitApply(versioned("d-1", "d", "13"))),
            Touched::Secret
        );
        // c-1 went, c-2 stayed: c is reconciled once, for what went.
        assert_eq!(
            index.apply(&watcher::Event::InitApply(versioned("c-2", "c", "10"))),
            Touched::Nothing
        );
        assert_eq!(
            index.apply(&watcher::Event::InitDone),
            Touched::Vanished(vec!["c".into()])
        );
        assert_eq!(names(index.of_request("c")), Some(vec!["c-2@c".into()]));
        assert_eq!(
            index.apply(&watcher::Event::Delete(versioned("c-2", "c", "14"))),
            Touched::Secret
        );
    }

    #[test]
    fn a_secret_without_a_resource_version_counts_as_changed_in_a_relist() {
        let index = TokenIndex::default();
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(meta("a-1", "a", Some("c"))));
        index.apply(&watcher::Event::InitDone);
        index.apply(&watcher::Event::Init);
        assert_eq!(
            index.apply(&watcher::Event::InitApply(meta("a-1", "a", Some("c")))),
            Touched::Secret
        );
    }
}
