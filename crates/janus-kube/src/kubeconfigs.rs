//! The kubeconfig Secrets of remote clusters as watches last saw them, so that resolving a cluster
//! costs no API call once the watches have listed, and a Secret's (re)appearance is noticed at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::watcher;

use crate::clusters::CLUSTER_LABEL;

/// The Secrets one watch covers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    /// Every Secret labelled [`CLUSTER_LABEL`]: the registered clusters.
    Labelled,
    /// The Secret a configured cluster names.
    Named { secret: String, cluster: String },
}

impl Scope {
    fn watch_config(&self) -> watcher::Config {
        match self {
            Self::Labelled => watcher::Config::default().labels(CLUSTER_LABEL),
            Self::Named { secret, .. } => watcher::Config::default().fields(&format!("metadata.name={secret}")),
        }
    }

    /// The cluster a Secret in this scope is for.
    fn cluster_of<'a>(&'a self, secret: &'a Secret) -> Option<&'a str> {
        match self {
            Self::Labelled => secret.labels().get(CLUSTER_LABEL).map(String::as_str),
            Self::Named { cluster, .. } => Some(cluster),
        }
    }
}

/// What one watch has seen.
#[derive(Default)]
struct View {
    /// Secrets by name, from the last complete list on; `None` until the first list is complete.
    listed: Option<HashMap<String, Arc<Secret>>>,
    /// A (re)list in progress: it replaces `listed` when complete, so a lookup never sees half a list.
    listing: Option<HashMap<String, Arc<Secret>>>,
}

/// What the watches know of one cluster's kubeconfig Secret.
#[derive(Debug)]
pub(crate) enum Seen {
    /// The watch for it has not completed a list yet (or is not running): ask the API server.
    Unknown,
    /// There is no such Secret.
    Absent,
    /// The Secret as last seen.
    Present(Arc<Secret>),
}

/// The watched kubeconfig Secrets: one watch of the labelled ones and one per configured remote cluster
/// (whose Secret need not carry the label).
pub(crate) struct Kubeconfigs {
    views: Vec<(Scope, RwLock<View>)>,
}

impl Kubeconfigs {
    /// Watches for `configured`, the (cluster, Secret name) pairs of the configured remote clusters.
    pub(crate) fn new(configured: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut views = vec![(Scope::Labelled, RwLock::default())];
        for (cluster, secret) in configured {
            views.push((Scope::Named { secret, cluster }, RwLock::default()));
        }
        Self { views }
    }

    fn read(view: &RwLock<View>) -> RwLockReadGuard<'_, View> {
        view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(view: &RwLock<View>) -> RwLockWriteGuard<'_, View> {
        view.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The kubeconfig Secret of `cluster`: the one a configured cluster names, else the labelled one
    /// first by name (the order a list returns, as the API lookup it replaces).
    pub(crate) fn seen(&self, cluster: &str) -> Seen {
        let named = self
            .views
            .iter()
            .find(|(s, _)| matches!(s, Scope::Named { cluster: c, .. } if c == cluster));
        if let Some((Scope::Named { secret, .. }, view)) = named {
            return match &Self::read(view).listed {
                None => Seen::Unknown,
                Some(m) => m.get(secret).map_or(Seen::Absent, |s| Seen::Present(s.clone())),
            };
        }
        let Some((_, view)) = self.views.iter().find(|(s, _)| *s == Scope::Labelled) else {
            return Seen::Unknown;
        };
        let view = Self::read(view);
        let Some(listed) = &view.listed else {
            return Seen::Unknown;
        };
        listed
            .iter()
            .filter(|(_, s)| s.labels().get(CLUSTER_LABEL).is_some_and(|c| c == cluster))
            .min_by(|(a, _), (b, _)| a.cmp(b))
            .map_or(Seen::Absent, |(_, s)| Seen::Present(s.clone()))
    }

    /// The resourceVersion of `cluster`'s kubeconfig Secret as seen, `None` when absent or unknown.
    pub(crate) fn version(&self, cluster: &str) -> Option<String> {
        match self.seen(cluster) {
            Seen::Present(s) => s.resource_version(),
            Seen::Absent | Seen::Unknown => None,
        }
    }

    /// Every labelled Secret, or `None` before the labelled watch has listed.
    pub(crate) fn labelled(&self) -> Option<Vec<Arc<Secret>>> {
        let (_, view) = self.views.iter().find(|(s, _)| *s == Scope::Labelled)?;
        let view = Self::read(view);
        let listed = view.listed.as_ref()?;
        let mut out: Vec<_> = listed.values().cloned().collect();
        out.sort_by_key(|s| s.name_any());
        Some(out)
    }

    /// Applies one watch event; `appeared` is told each cluster whose Secret was created or changed
    /// (including by a relist after the watch broke).
    fn apply(&self, index: usize, event: watcher::Event<Secret>, appeared: &(dyn Fn(&str) + Send + Sync)) {
        let Some((scope, view)) = self.views.get(index) else {
            return;
        };
        let mut changed = Vec::new();
        {
            let mut view = Self::write(view);
            match event {
                watcher::Event::Init => view.listing = Some(HashMap::new()),
                watcher::Event::InitApply(s) => {
                    if let Some(m) = view.listing.as_mut() {
                        m.insert(s.name_any(), Arc::new(s));
                    }
                }
                watcher::Event::InitDone => {
                    let fresh = view.listing.take().unwrap_or_default();
                    for (name, s) in &fresh {
                        let before = view.listed.as_ref().and_then(|m| m.get(name));
                        if before.is_none_or(|b| b.resource_version() != s.resource_version()) {
                            changed.push(s.clone());
                        }
                    }
                    view.listed = Some(fresh);
                }
                // Only after a complete list: a change alone is not the whole picture (kube's watcher
                // never sends one before its list, so this is a guard).
                watcher::Event::Apply(s) => {
                    if let Some(m) = view.listed.as_mut() {
                        let s = Arc::new(s);
                        m.insert(s.name_any(), s.clone());
                        changed.push(s);
                    }
                }
                watcher::Event::Delete(s) => {
                    if let Some(m) = view.listed.as_mut() {
                        m.remove(&s.name_any());
                    }
                }
            }
        }
        for s in changed {
            if let Some(cluster) = scope.cluster_of(&s) {
                appeared(cluster);
            }
        }
    }

    /// Forgets what `index`'s watch saw: until a fresh list is complete, lookups go to the API server.
    fn distrust(&self, index: usize) {
        if let Some((_, view)) = self.views.get(index) {
            let mut view = Self::write(view);
            view.listed = None;
            view.listing = None;
        }
    }

    /// Runs the watches until dropped. A watch that fails is not trusted any more: its Secrets may have
    /// changed meanwhile (a cluster removed, a kubeconfig rotated), and kube's watcher resumes from its
    /// last resourceVersion without telling when it is current again. So lookups go to the API server
    /// until that watch is started afresh (after a backoff) and has listed. A connection that hangs
    /// without failing is noticed when the watch request times out (our clients cap watches at 25 s).
    pub(crate) async fn run(self: Arc<Self>, api: Api<Secret>, appeared: Arc<dyn Fn(&str) + Send + Sync>) {
        let watches = (0..self.views.len()).map(|i| self.clone().run_one(i, api.clone(), appeared.clone()));
        futures::future::join_all(watches).await;
    }

    async fn run_one(self: Arc<Self>, index: usize, api: Api<Secret>, appeared: Arc<dyn Fn(&str) + Send + Sync>) {
        let Some((scope, _)) = self.views.get(index) else {
            return;
        };
        let mut delay = RETRY_FIRST;
        loop {
            let started = tokio::time::Instant::now();
            let mut events = watcher(api.clone(), scope.watch_config()).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => self.apply(index, event, appeared.as_ref()),
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?delay, "watch of cluster kubeconfig Secrets failed; lookups read the API server until it is back");
                        self.distrust(index);
                        break;
                    }
                }
            }
            // The failed watch's connection goes now, not after the wait.
            drop(events);
            // Back to a short wait only after a watch that lasted: one that lists and then fails at
            // once (the watch verb taken away, a proxy cutting long requests) is not restarted twice a
            // second, each time announcing every cluster again.
            if started.elapsed() >= RETRY_MAX {
                delay = RETRY_FIRST;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

/// The first wait before a failed watch is started again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    fn secret(name: &str, cluster: Option<&str>, rv: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(rv.into());
        if let Some(c) = cluster {
            s.metadata.labels = Some(BTreeMap::from([(CLUSTER_LABEL.to_string(), c.to_string())]));
        }
        s
    }

    fn rv(seen: Seen) -> Option<String> {
        match seen {
            Seen::Present(s) => s.resource_version(),
            Seen::Absent => Some("absent".into()),
            Seen::Unknown => None,
        }
    }

    #[test]
    fn answers_only_after_a_complete_list_and_follows_changes() {
        let k = Kubeconfigs::new([("prod".to_string(), "prod-kubeconfig".to_string())]);
        let appeared = Mutex::new(Vec::new());
        let note = |c: &str| appeared.lock().unwrap().push(c.to_string());
        assert!(matches!(k.seen("edge"), Seen::Unknown));
        assert!(matches!(k.seen("prod"), Seen::Unknown));
        assert!(k.labelled().is_none());

        k.apply(0, watcher::Event::Init, &note);
        k.apply(0, watcher::Event::InitApply(secret("b-edge", Some("edge"), "2")), &note);
        k.apply(0, watcher::Event::InitApply(secret("a-edge", Some("edge"), "1")), &note);
        // Half a list is not an answer.
        assert!(matches!(k.seen("edge"), Seen::Unknown));
        k.apply(0, watcher::Event::InitDone, &note);
        // First by name, as a list would return it.
        assert_eq!(rv(k.seen("edge")).as_deref(), Some("1"));
        assert_eq!(rv(k.seen("other")).as_deref(), Some("absent"));
        // The configured cluster's own watch has not listed yet.
        assert!(matches!(k.seen("prod"), Seen::Unknown));
        k.apply(1, watcher::Event::Init, &note);
        k.apply(1, watcher::Event::InitDone, &note);
        assert_eq!(rv(k.seen("prod")).as_deref(), Some("absent"));
        k.apply(1, watcher::Event::Apply(secret("prod-kubeconfig", None, "5")), &note);
        assert_eq!(rv(k.seen("prod")).as_deref(), Some("5"));

        k.apply(0, watcher::Event::Delete(secret("a-edge", Some("edge"), "1")), &note);
        assert_eq!(rv(k.seen("edge")).as_deref(), Some("2"));
        assert_eq!(k.labelled().map(|l| l.len()), Some(1));
        assert_eq!(*appeared.lock().unwrap(), ["edge", "edge", "prod"]);
    }

    #[test]
    fn a_failed_watch_is_not_trusted_until_it_has_listed_again() {
        let k = Kubeconfigs::new([]);
        let note = |_: &str| {};
        k.apply(0, watcher::Event::Init, &note);
        k.apply(0, watcher::Event::InitApply(secret("a", Some("a"), "1")), &note);
        k.apply(0, watcher::Event::InitDone, &note);
        assert!(matches!(k.seen("a"), Seen::Present(_)));
        k.distrust(0);
        assert!(matches!(k.seen("a"), Seen::Unknown));
        assert!(matches!(k.seen("b"), Seen::Unknown));
        assert!(k.labelled().is_none());
        // A change without a list before it is not the whole picture.
        k.apply(0, watcher::Event::Apply(secret("b", Some("b"), "2")), &note);
        assert!(matches!(k.seen("b"), Seen::Unknown));
        k.apply(0, watcher::Event::Init, &note);
        k.apply(0, watcher::Event::InitApply(secret("b", Some("b"), "2")), &note);
        k.apply(0, watcher::Event::InitDone, &note);
        assert!(matches!(k.seen("a"), Seen::Absent));
        assert!(matches!(k.seen("b"), Seen::Present(_)));
    }

    #[test]
    fn a_relist_reports_only_what_changed_and_drops_what_is_gone() {
        let k = Kubeconfigs::new([]);
        let appeared = Mutex::new(Vec::new());
        let note = |c: &str| appeared.lock().unwrap().push(c.to_string());
        k.apply(0, watcher::Event::Init, &note);
        k.apply(0, watcher::Event::InitApply(secret("a", Some("a"), "1")), &note);
        k.apply(0, watcher::Event::InitApply(secret("b", Some("b"), "1")), &note);
        k.apply(0, watcher::Event::InitDone, &note);
        appeared.lock().unwrap().clear();
        // The watch broke and relists: `a` unchanged, `b` deleted meanwhile, `c` new.
        k.apply(0, watcher::Event::Init, &note);
        k.apply(0, watcher::Event::InitApply(secret("a", Some("a"), "1")), &note);
        k.apply(0, watcher::Event::InitApply(secret("c", Some("c"), "3")), &note);
        // Until the relist is complete, the last list still answers.
        assert_eq!(rv(k.seen("b")).as_deref(), Some("1"));
        k.apply(0, watcher::Event::InitDone, &note);
        assert_eq!(rv(k.seen("b")).as_deref(), Some("absent"));
        assert_eq!(rv(k.seen("c")).as_deref(), Some("3"));
        assert_eq!(*appeared.lock().unwrap(), ["c"]);
    }
}
