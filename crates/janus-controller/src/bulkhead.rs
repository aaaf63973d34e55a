//! Keeps slow remote clusters from taking every reconcile slot (issue 19): a cluster answering each
//! call in seconds would otherwise hold the controller's slots for as long as its grants take, and the
//! requests of every other cluster would wait behind it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reconciles of one remote cluster in flight at once.
pub const PER_REMOTE: usize = 8;
/// Reconciles of a slow remote cluster in flight at once.
pub const PER_SLOW_REMOTE: usize = 2;
/// A remote cluster is slow while one of its reconciles has run this long, and after one took this long
/// (until one takes less). Grants take a few calls of milliseconds each.
pub const SLOW: Duration = Duration::from_secs(1);
/// A request of a remote cluster at its limit is looked at again after this long.
pub const DEFER: Duration = Duration::from_millis(250);
/// The same for a slow cluster: its calls take seconds anyway.
pub const DEFER_SLOW: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Load {
    /// Start of each reconcile in flight, by ticket.
    running: HashMap<u64, Instant>,
    /// How long the last finished reconcile took.
    last: Duration,
}

impl Load {
    fn slow(&self, now: Instant) -> bool {
        self.last >= SLOW || self.running.values().any(|t| now.duration_since(*t) >= SLOW)
    }
}

/// Admission of reconciles per cluster: the central cluster's wait for one of its permits (as many as
/// the controller had slots before, so an install without remote clusters behaves as it did); a remote
/// cluster at its limit is deferred without holding a slot.
pub struct Bulkhead {
    central: String,
    central_permits: Arc<Semaphore>,
    remotes: Mutex<HashMap<String, Load>>,
    next: std::sync::atomic::AtomicU64,
}

/// Admission to reconcile; dropping it records how long the reconcile took.
pub enum Admission<'a> {
    /// A central request, holding its permit until dropped.
    Central {
        /// The permit.
        _permit: OwnedSemaphorePermit,
    },
    /// A remote request, counted until dropped.
    Remote {
        /// The bulkhead.
        bulkhead: &'a Bulkhead,
        /// The cluster.
        cluster: String,
        /// Its ticket.
        ticket: u64,
    },
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Admission::Remote {
            bulkhead,
            cluster,
            ticket,
        } = self
        {
            let mut remotes = bulkhead.remotes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(load) = remotes.get_mut(cluster.as_str())
                && let Some(started) = load.running.remove(ticket)
            {
                load.last = started.elapsed();
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
            remotes: Mutex::new(HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Admits a reconcile of a request on `cluster`, or says after how long to look again.
    pub async fn admit(&self, cluster: &str) -> Result<Admission<'_>, Duration> {
        if cluster == self.central {
            // The semaphore is never closed.
            return self
                .central_permits
                .clone()
                .acquire_owned()
                .await
                .map(|p| Admission::Central { _permit: p })
                .map_err(|_| DEFER);
        }
        let now = Instant::now();
        let mut remotes = self.remotes.lock().unwrap_or_else(|e| e.into_inner());
        let load = remotes.entry(cluster.to_string()).or_default();
        let slow = load.slow(now);
        let limit = if slow { PER_SLOW_REMOTE } else { PER_REMOTE };
        if load.running.len() >= limit {
            return Err(if slow { DEFER_SLOW } else { DEFER });
        }
        let ticket = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        load.running.insert(ticket, now);
        Ok(Admission::Remote {
            bulkhead: self,
            cluster: cluster.to_string(),
            ticket,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_remote_cluster_gets_at_most_its_share_and_a_slow_one_less() {
        let b = Bulkhead::new("central", 32);
        let mut held = Vec::new();
        for _ in 0..PER_REMOTE {
            held.push(b.admit("r1").await.ok().unwrap());
        }
        assert_eq!(b.admit("r1").await.err(), Some(DEFER));
        // Other clusters are not affected.
        let other = b.admit("r2").await;
        assert!(other.is_ok());
        drop(other);
        // The last reconcile of r2 was quick: r2 is not slow.
        assert_eq!(b.running("r2"), 0);
        drop(held.pop());
        assert!(b.admit("r1").await.is_ok());

        // r3 took long: it is slow now and gets fewer slots, retried later.
        let slow = b.admit("r3").await.ok().unwrap();
        if let Admission::Remote { .. } = &slow {
            let mut remotes = b.remotes.lock().unwrap();
            let load = remotes.get_mut("r3").unwrap();
            for t in load.running.values_mut() {
                *t -= SLOW;
            }
        }
        let second = b.admit("r3").await.ok().unwrap();
        assert_eq!(b.admit("r3").await.err(), Some(DEFER_SLOW));
        drop(second);
        drop(slow);
        // The last one that finished took over SLOW: still slow, until a quick one.
        let a = b.admit("r3").await.ok().unwrap();
        let c = b.admit("r3").await.ok().unwrap();
        assert_eq!(b.admit("r3").await.err(), Some(DEFER_SLOW));
        drop(a);
        drop(c);
        let fast: Vec<_> = futures::future::join_all((0..PER_REMOTE).map(|_| b.admit("r3")))
            .await
            .into_iter()
            .filter(|a| a.is_ok())
            .collect();
        assert_eq!(fast.len(), PER_REMOTE);
    }

    #[tokio::test]
    async fn central_requests_wait_for_a_permit() {
        let b = Bulkhead::new("central", 1);
        let first = b.admit("central").await.ok().unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.admit("central")).await;
        assert!(
            waiting.is_err(),
            "a second central reconcile ran beside the only permit"
        );
        drop(first);
        assert!(b.admit("central").await.is_ok());
    }
}
