//! Keeps slow remote clusters from taking every reconcile slot (issue 19): a cluster answering each
//! call in seconds would otherwise hold the controller's slots for as long as its grants take, and the
//! requests of every other cluster would wait behind it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reconciles of one remote cluster in flight at once.
pub const PER_REMOTE: usize = 8;
/// Reconciles of a slow remote cluster in flight at once.
pub const PER_SLOW_REMOTE: usize = 2;
/// Reconciles that end access (revocation, withdrawal, denial, deletion, expiry of a request that still
/// holds grants) of one remote cluster in flight at once, slow or not: they never wait behind grants,
/// and a slow cluster's cuts cannot take every slot reserved for cuts.
pub const PER_REMOTE_ENDING: usize = 4;
/// Reconciles that grant or otherwise keep access, over all clusters. Each writes status and Secrets on
/// the central API server, so this (with [`ENDING_SLOTS`]) bounds the load put on it, however many
/// controller slots there are.
pub const GRANT_SLOTS: usize = 48;
/// Reconciles that end access, over all clusters: reserved for them, so a burst of grants never
/// delays a revocation.
pub const ENDING_SLOTS: usize = 16;
/// A remote cluster is slow while one of its reconciles has run this long, and after one took this long
/// (until one takes less). Grants take a few calls of milliseconds each.
pub const SLOW: Duration = Duration::from_secs(1);
/// A request whose cluster (or the controller) is at its limit is looked at again after this long.
pub const DEFER: Duration = Duration::from_millis(250);
/// The same for a slow cluster: its calls take seconds anyway.
pub const DEFER_SLOW: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Load {
    /// Start of each reconcile in flight, by ticket.
    running: HashMap<u64, Instant>,
    /// Tickets of the reconciles in `running` that end access.
    ending: HashSet<u64>,
    /// How long the last finished reconcile took.
    last: Duration,
}

impl Load {
    fn slow(&self, now: Instant) -> bool {
        self.last >= SLOW || self.running.values().any(|t| now.duration_since(*t) >= SLOW)
    }

    fn granting(&self) -> usize {
        self.running.len() - self.ending.len()
    }
}

/// Admission of reconciles per cluster, never waited for (a reconcile slot is not held while waiting):
/// a request whose cluster is at its share, or while [`GRANT_SLOTS`] are taken, is looked at again
/// later. The central cluster's requests have as many permits as the controller had slots before; a
/// remote cluster's [`PER_REMOTE`]. A request that ends access has its own slots ([`ENDING_SLOTS`],
/// [`PER_REMOTE_ENDING`]).
pub struct Bulkhead {
    central: String,
    central_permits: Arc<Semaphore>,
    grant_slots: Arc<Semaphore>,
    ending_slots: Arc<Semaphore>,
    remotes: Mutex<HashMap<String, Load>>,
    next: std::sync::atomic::AtomicU64,
}

/// Admission to reconcile; dropping it frees its permits and records how long the reconcile took.
pub struct Admission<'a> {
    _permits: Vec<OwnedSemaphorePermit>,
    /// A remote request's cluster and ticket, counted until dropped.
    remote: Option<(&'a Bulkhead, String, u64)>,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some((bulkhead, cluster, ticket)) = &self.remote {
            let mut remotes = bulkhead.remotes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(load) = remotes.get_mut(cluster.as_str())
                && let Some(started) = load.running.remove(ticket)
            {
                load.ending.remove(ticket);
                load.last = started.elapsed();
                // `spec.cluster` is the user's string: an entry per name ever seen would only grow.
                if load.running.is_empty() && !load.slow(Instant::now()) {
                    remotes.remove(cluster.as_str());
                }
            }
        }
    }
}

impl Bulkhead {
    /// A bulkhead for the central cluster `central` with `central_permits` reconciles at once.
    pub fn new(central: &str, central_permits: usize) -> Self {
        Self {
            central: central.to_string(),
            central_permits: Arc::new(Semaphore::new(central_permits)),
            grant_slots: Arc::new(Semaphore::new(GRANT_SLOTS)),
            ending_slots: Arc::new(Semaphore::new(ENDING_SLOTS)),
            remotes: Mutex::new(HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Admits a reconcile of a request on `cluster` (`ending`: it ends access that is still granted),
    /// or says after how long to look again.
    pub fn admit(&self, cluster: &str, ending: bool) -> Result<Admission<'_>, Duration> {
        let global = if ending { &self.ending_slots } else { &self.grant_slots };
        let mut permits = vec![global.clone().try_acquire_owned().map_err(|_| DEFER)?];
        if cluster == self.central {
            if !ending {
                permits.push(self.central_permits.clone().try_acquire_owned().map_err(|_| DEFER)?);
            }
            return Ok(Admission {
                _permits: permits,
                remote: None,
            });
        }
        let now = Instant::now();
        let mut remotes = self.remotes.lock().unwrap_or_else(|e| e.into_inner());
        let load = remotes.entry(cluster.to_string()).or_default();
        let slow = load.slow(now);
        let (in_flight, limit) = if ending {
            (load.ending.len(), PER_REMOTE_ENDING)
        } else {
            (load.granting(), if slow { PER_SLOW_REMOTE } else { PER_REMOTE })
        };
        if in_flight >= limit {
            return Err(if slow { DEFER_SLOW } else { DEFER });
        }
        let ticket = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        load.running.insert(ticket, now);
        if ending {
            load.ending.insert(ticket);
        }
        Ok(Admission {
            _permits: permits,
            remote: Some((self, cluster.to_string(), ticket)),
        })
    }

    /// Reconciles of `cluster` in flight (tests).
    pub fn running(&self, cluster: &str) -> usize {
        self.remotes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster)
            .map_or(0, |l| l.running.len())
    }

    /// Remote clusters with an entry (tests).
    pub fn tracked(&self) -> usize {
        self.remotes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_cluster_gets_at_most_its_share_and_a_slow_one_less() {
        let b = Bulkhead::new("central", 32);
        let mut held = Vec::new();
        for _ in 0..PER_REMOTE {
            held.push(b.admit("r1", false).ok().unwrap());
        }
        assert_eq!(b.admit("r1", false).err(), Some(DEFER));
        // Other clusters are not affected.
        let other = b.admit("r2", false);
        assert!(other.is_ok());
        drop(other);
        // The last reconcile of r2 was quick: r2 is not slow.
        assert_eq!(b.running("r2"), 0);
        drop(held.pop());
        assert!(b.admit("r1", false).is_ok());

        // r3 took long: it is slow now and gets fewer slots, retried later.
        let slow = b.admit("r3", false).ok().unwrap();
        {
            let mut remotes = b.remotes.lock().unwrap();
            let load = remotes.get_mut("r3").unwrap();
            for t in load.running.values_mut() {
                *t -= SLOW;
            }
        }
        let second = b.admit("r3", false).ok().unwrap();
        assert_eq!(b.admit("r3", false).err(), Some(DEFER_SLOW));
        drop(second);
        drop(slow);
        // The last one that finished took over SLOW: still slow, until a quick one.
        let a = b.admit("r3", false).ok().unwrap();
        let c = b.admit("r3", false).ok().unwrap();
        assert_eq!(b.admit("r3", false).err(), Some(DEFER_SLOW));
        drop(a);
        drop(c);
        let fast: Vec<_> = (0..PER_REMOTE)
            .map(|_| b.admit("r3", false))
            .filter(|a| a.is_ok())
            .collect();
        assert_eq!(fast.len(), PER_REMOTE);
    }

    /// A central burst is deferred, not waited for: a waiting reconcile would hold a controller slot.
    #[test]
    fn a_central_burst_is_deferred_and_cuts_get_their_own_slots() {
        let b = Bulkhead::new("central", 1);
        let first = b.admit("central", false).ok().unwrap();
        assert_eq!(b.admit("central", false).err(), Some(DEFER));
        // A revocation on the central cluster or a remote one does not wait behind the burst.
        let cut = b.admit("central", true);
        assert!(cut.is_ok(), "a central cut waited behind a central grant");
        assert!(b.admit("r1", true).is_ok());
        drop(first);
        assert!(b.admit("central", false).is_ok());
    }

    /// A remote cluster at its share of grants (slow, even) still admits its cuts.
    #[test]
    fn cuts_do_not_queue_behind_a_remote_clusters_grants() {
        let b = Bulkhead::new("central", 32);
        let held: Vec<_> = (0..PER_REMOTE).map(|_| b.admit("r1", false).ok().unwrap()).collect();
        assert!(b.admit("r1", false).is_err());
        let cuts: Vec<_> = (0..PER_REMOTE_ENDING).map(|_| b.admit("r1", true)).collect();
        assert!(
            cuts.iter().all(Result::is_ok),
            "a cut waited behind the cluster's grants"
        );
        // A slow cluster's cuts take only their own share of the cut slots: another cluster's cut goes on.
        assert!(b.admit("r1", true).is_err());
        assert!(b.admit("r2", true).is_ok());
        drop(held);
    }

    /// However many clusters there are, at most GRANT_SLOTS grants run at once (each writes on the
    /// central API server); cuts still have theirs.
    #[test]
    fn grants_over_all_clusters_are_bounded() {
        let b = Bulkhead::new("central", 32);
        let mut held = Vec::new();
        for c in 0..GRANT_SLOTS {
            held.push(b.admit(&format!("r{c}"), false).ok().unwrap());
        }
        assert_eq!(b.admit("another", false).err(), Some(DEFER));
        assert_eq!(b.admit("central", false).err(), Some(DEFER));
        assert!(b.admit("another", true).is_ok());
        drop(held);
        assert!(b.admit("central", false).is_ok());
    }

    /// An entry per cluster name ever seen (the name is the user's) is dropped once idle.
    #[test]
    fn idle_clusters_are_forgotten() {
        let b = Bulkhead::new("central", 32);
        for c in 0..100 {
            drop(b.admit(&format!("made-up-{c}"), false));
        }
        assert_eq!(b.tracked(), 0);
        let held = b.admit("r1", false).ok().unwrap();
        assert_eq!(b.tracked(), 1);
        drop(held);
        assert_eq!(b.tracked(), 0);
    }
}
