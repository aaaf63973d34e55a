//! Keeps the namespace metadata that live updates are judged by current. Whether someone may see a
//! change of a request ([`crate::requests::may_see`]) depends on its policy, and so on its namespaces'
//! labels and owners annotation; the live filter must not wait on a cluster, so it reads the metadata
//! last listed. This task lists it in the background: at once for a cluster whose namespaces were never
//! listed (then the changes judged without it are published again), and every [`REFRESH_INTERVAL`] for
//! every cluster with open requests (so a changed owners annotation takes effect without anyone opening
//! a page).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::FromRef as _;
use janus_api::AccessRequest;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::live::Change;
use crate::requests;
use crate::service::clusters::ClusterService;
use crate::state::AppState;

/// How often the namespaces of clusters with open requests are listed again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Changes waiting for a first listing of their cluster; more are dropped (the periodic refresh still
/// lists the cluster, and the next change of a request is judged on it).
const QUEUE: usize = 256;

/// Asks the background task for listings; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Refresher {
    tx: mpsc::Sender<(String, String)>,
}

impl Refresher {
    /// A change of `ar` was just judged; when its cluster's namespaces were never listed, list them and
    /// publish the change again, judged on them.
    pub fn after_change(&self, clusters: &ClusterService, ar: &AccessRequest) {
        if clusters.has_listing(&ar.spec.cluster) {
            return;
        }
        if let Some(name) = &ar.metadata.name {
            let _ = self.tx.try_send((ar.spec.cluster.clone(), name.clone()));
        }
    }
}

/// Starts the task; it stops when the guard is dropped.
pub fn start(state: AppState) -> (Refresher, DropGuard) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let stop = CancellationToken::new();
    tokio::spawn(run(state, rx, stop.clone()));
    (Refresher { tx }, stop.drop_guard())
}

async fn run(state: AppState, mut rx: mpsc::Receiver<(String, String)>, stop: CancellationToken) {
    let clusters = ClusterService::from_ref(&state);
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            first = rx.recv() => {
                let Some(first) = first else { return };
                // Everything queued meanwhile, by cluster: one listing each.
                let mut missed: BTreeMap<String, Vec<String>> = BTreeMap::new();
                let mut next = Some(first);
                while let Some((cluster, name)) = next {
                    missed.entry(cluster).or_default().push(name);
                    next = rx.try_recv().ok();
                }
                for (cluster, names) in missed {
                    if let Err(e) = clusters.namespace_info(&cluster, &[]).await {
                        tracing::debug!(cluster, error = %e, "namespace metadata unavailable for live updates");
                        continue;
                    }
                    for name in names {
                        if let Some(ar) = state.requests.get(&ObjectRef::new(&name)) {
                            let phase = requests::phase(&ar);
                            state.live.publish(Change { name, request: ar, phase: format!("{phase:?}") });
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let open: std::collections::BTreeSet<String> = state
                    .requests
                    .state()
                    .iter()
                    .filter(|a| crate::service::requests::is_open(a))
                    .map(|a| a.spec.cluster.clone())
                    .collect();
                for cluster in open {
                    if let Err(e) = clusters.namespace_info(&cluster, &[]).await {
                        tracing::debug!(cluster, error = %e, "namespace metadata unavailable for live updates");
                    }
                }
            }
        }
    }
}
