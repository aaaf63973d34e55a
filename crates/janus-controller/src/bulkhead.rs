//! Keeps slow remote clusters from holding up the others (issue 19): each cluster has its own share of
//! reconciles in flight, grants and cuts have separate queues, and what runs at once on the central API
//! server is bounded.
//!
//! Admission is waited for, first in the request's cluster's queue and then in the global one, each
//! first come, first served. A waiting reconcile is a small parked future (the controller's concurrency
//! is not bounded, see `lib.rs`), so it holds nothing another cluster needs: a slow cluster's requests
//! wait in their own queue, never in front of anyone else's. An earlier version refused admission and
//! requeued the request after 250 ms instead; under a burst the refused requests came back in waves and
//! slots stood idle between them, which doubled the bulk approval time and put seconds on expiry lag.
//!
//! A slot for cuts is held only until the grants the status names are cut: the rest of an ending (the
//! label sweep for anything the status does not name, the central token Secrets, the status) takes a
//! slot of its own ([`FOLLOW_UP_SLOTS`], never behind grants) instead ([`access_cut`]). Holding the cut
//! slot through about eight lists per ending let a hundred expiries due in the same second queue behind
//! each other's remaining work for seconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reconciles of one remote cluster that grant or keep access, in flight at once.
pub const PER_REMOTE: usize = 8;
/// Of those, reconciles admitted while the cluster is slow, in flight at once.
pub const PER_SLOW_REMOTE: usize = 2;
/// Reconciles that end access (revocation, withdrawal, denial, deletion, expiry of a request that still
/// holds grants) of one remote cluster in flight at once, slow or not: they never wait behind grants,
/// and a slow cluster's cuts cannot take every slot reserved for cuts.
pub const PER_REMOTE_ENDING: usize = 4;
/// Reconciles that grant or otherwise keep access, over all clusters. Each writes status and Secrets on
/// the central API server, so this (with [`ENDING_SLOTS`]) bounds the load put on it.
pub const GRANT_SLOTS: usize = 48;
/// Reconciles that end access, over all clusters: reserved for them, so a burst of grants never
/// delays a revocation.
pub const ENDING_SLOTS: usize = 16;
/// Reconciles that end access on slow remote clusters, over all of them: taken instead of a slot of
/// [`ENDING_SLOTS`], so that a few hanging clusters' cuts (each waiting for its calls to time out)
/// cannot hold every slot for cuts while healthy clusters' revocations and expiries wait.
pub const SLOW_ENDING_SLOTS: usize = 4;
/// The rest of endings whose access is cut ([`access_cut`]), over all clusters. Their own queue: they
/// never wait behind grants, so an ending is not held past its reconcile's time bound by a backlog of
/// grants on a slow cluster.
pub const FOLLOW_UP_SLOTS: usize = 32;
/// How long the rest of an ending waits for a slot of [`FOLLOW_UP_SLOTS`] before it runs without one:
/// the reconcile's own time bound (30 s) must go to the work, not to the queue.
pub const FOLLOW_UP_WAIT: Duration = Duration::from_secs(5);
/// Global slots given back by reconciles that have run [`SLOW`], at most this many at once (see
/// [`Bulkhead::release_slow_slots`]): what works on the central API server stays bounded.
pub const RELEASED_SLOTS: usize = 48;
/// A remote cluster is slow while one of its reconciles has run this long, and after one took this long
/// (until one takes less). Grants take a few calls of milliseconds each.
pub const SLOW: Duration = Duration::from_secs(1);

/// One remote cluster's queues and how its reconciles went.
struct Remote {
    grants: Arc<Semaphore>,
    slow: Arc<Semaphore>,
    ending: Arc<Semaphore>,
    load: Mutex<Load>,
}

#[derive(Default)]
struct Load {
    /// Each reconcile in flight, by ticket.
    running: HashMap<u64, Running>,
    /// How long the last finished reconcile took.
    last: Duration,
}

/// A reconcile of a remote cluster in flight.
struct Running {
    started: Instant,
    /// Its slot of [`GRANT_SLOTS`] or [`ENDING_SLOTS`], until it has run [`SLOW`] (see
    /// [`Bulkhead::release_slow_slots`]).
    global: Option<OwnedSemaphorePermit>,
    /// It gave its global slot back, and counts in [`RELEASED_SLOTS`] until it ends.
    released: bool,
}

impl Load {
    fn slow(&self, now: Instant) -> bool {
        self.last >= SLOW || self.running.values().any(|r| now.duration_since(r.started) >= SLOW)
    }
}

impl Remote {
    fn new() -> Self {
        Self {
            grants: Arc::new(Semaphore::new(PER_REMOTE)),
            slow: Arc::new(Semaphore::new(PER_SLOW_REMOTE)),
            ending: Arc::new(Semaphore::new(PER_REMOTE_ENDING)),
            load: Mutex::new(Load::default()),
        }
    }

    fn load(&self) -> std::sync::MutexGuard<'_, Load> {
        self.load.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        self.grants.close();
        self.slow.close();
        self.ending.close();
    }
}

/// Admission of reconciles: per cluster, then over all clusters (see the module docs).
pub struct Bulkhead {
    central: String,
    central_permits: Arc<Semaphore>,
    grant_slots: Arc<Semaphore>,
    ending_slots: Arc<Semaphore>,
    slow_ending_slots: Arc<Semaphore>,
    follow_up_slots: Arc<Semaphore>,
    /// Reconciles running without the global slot they gave back.
    released: AtomicUsize,
    remotes: Mutex<HashMap<String, Arc<Remote>>>,
    next: AtomicU64,
    closed: AtomicBool,
}

/// The bulkhead was closed (the controller is stopping): the reconcile does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Admission to reconcile; dropping it frees its permits and records how long the reconcile took.
pub struct Admission {
    permits: Vec<OwnedSemaphorePermit>,
    bulkhead: Arc<Bulkhead>,
    cluster: String,
    /// Admitted to the queues for cuts.
    ending: bool,
    /// A remote request's queue and ticket, counted until dropped.
    remote: Option<(Arc<Remote>, u64)>,
}

impl Admission {
    /// Admitted to the queues for cuts.
    pub fn ending(&self) -> bool {
        self.ending
    }

    /// Gives the slots for cuts back and waits for a slot of [`FOLLOW_UP_SLOTS`] (see [`access_cut`]);
    /// an admission to the grant queues is kept as it is. The rest of an ending is not counted in its
    /// cluster's load: it is mostly work on the central API server, and must not make the cluster look
    /// slow.
    pub async fn into_follow_up(self) -> Result<Admission, Closed> {
        if !self.ending {
            return Ok(self);
        }
        let (bulkhead, cluster) = (self.bulkhead.clone(), self.cluster.clone());
        drop(self);
        if bulkhead.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        let permit = acquire(&bulkhead.follow_up_slots).await?;
        Ok(Admission {
            permits: vec![permit],
            bulkhead,
            cluster,
            ending: false,
            remote: None,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let Some((remote, ticket)) = self.remote.take() else {
            return;
        };
        let (bulkhead, cluster) = (&self.bulkhead, self.cluster.as_str());
        let idle = {
            let mut load = remote.load();
            if let Some(r) = load.running.remove(&ticket) {
                load.last = r.started.elapsed();
                if r.released {
                    bulkhead.released.fetch_sub(1, Ordering::AcqRel);
                }
            }
            load.running.is_empty() && !load.slow(Instant::now())
        };
        // Permits go back before the entry is looked at, so that an idle entry is one nobody holds.
        self.permits.clear();
        drop(remote);
        if idle {
            bulkhead.forget_if_idle(cluster);
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
            slow_ending_slots: Arc::new(Semaphore::new(SLOW_ENDING_SLOTS)),
            follow_up_slots: Arc::new(Semaphore::new(FOLLOW_UP_SLOTS)),
            released: AtomicUsize::new(0),
            remotes: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn remotes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Remote>>> {
        self.remotes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for admission of a reconcile of a request on `cluster` (`ending`: it ends access that is
    /// still granted), or [`Closed`] once [`Bulkhead::close`] was called.
    pub async fn admit(self: &Arc<Self>, cluster: &str, ending: bool) -> Result<Admission, Closed> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        let global = if ending { &self.ending_slots } else { &self.grant_slots };
        let mut permits = Vec::with_capacity(3);
        if cluster == self.central {
            if !ending {
                permits.push(acquire(&self.central_permits).await?);
            }
            permits.push(acquire(global).await?);
            return Ok(Admission {
                permits,
                bulkhead: self.clone(),
                cluster: cluster.to_string(),
                ending,
                remote: None,
            });
        }
        let remote = {
            let mut remotes = self.remotes();
            // Closed under the lock, so no entry is made after `close` went over them.
            if self.closed.load(Ordering::Acquire) {
                return Err(Closed);
            }
            remotes
                .entry(cluster.to_string())
                .or_insert_with(|| Arc::new(Remote::new()))
                .clone()
        };
        let admitted = async {
            if ending {
                permits.push(acquire(&remote.ending).await?);
                if remote.load().slow(Instant::now()) {
                    permits.push(acquire(&self.slow_ending_slots).await?);
                    return Ok(None);
                }
            } else {
                permits.push(acquire(&remote.grants).await?);
                if remote.load().slow(Instant::now()) {
                    permits.push(acquire(&remote.slow).await?);
                }
            }
            acquire(global).await.map(Some)
        }
        .await;
        let global = match admitted {
            Ok(g) => g,
            Err(closed) => {
                drop(permits);
                drop(remote);
                self.forget_if_idle(cluster);
                return Err(closed);
            }
        };
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        remote.load().running.insert(
            ticket,
            Running {
                started: Instant::now(),
                global,
                released: false,
            },
        );
        Ok(Admission {
            permits,
            bulkhead: self.clone(),
            cluster: cluster.to_string(),
            ending,
            remote: Some((remote, ticket)),
        })
    }

    /// Wakes every waiting admission with [`Closed`] and admits no more: the controller is stopping,
    /// and its graceful shutdown waits for reconciles in flight, waiting ones included.
    pub fn close(&self) {
        let remotes = self.remotes();
        self.closed.store(true, Ordering::Release);
        self.central_permits.close();
        self.grant_slots.close();
        self.ending_slots.close();
        self.slow_ending_slots.close();
        self.follow_up_slots.close();
        for r in remotes.values() {
            r.close();
        }
    }

    /// Gives back the global slot of remote reconciles that have run [`SLOW`], at most
    /// [`RELEASED_SLOTS`] at once: such a reconcile mostly waits on its cluster, and it still holds its
    /// cluster's share. Without this, the first reconciles of clusters that turn slow all at once
    /// (admitted before anyone knew) held every global slot for their whole run, calls of seconds each,
    /// and the healthy clusters' grants waited (issue 19: 10 clusters turning slow took all 48).
    pub fn release_slow_slots(&self) {
        let now = Instant::now();
        for remote in self.remotes().values() {
            for r in remote.load().running.values_mut() {
                if r.global.is_none() || now.duration_since(r.started) < SLOW {
                    continue;
                }
                let taken = self
                    .released
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < RELEASED_SLOTS).then_some(n + 1)
                    })
                    .is_ok();
                if !taken {
                    return;
                }
                r.global = None;
                r.released = true;
            }
        }
    }

    /// Drops `cluster`'s entry if nobody holds or waits for it and it is not slow: `spec.cluster` is the
    /// user's string, and an entry per name ever seen would only grow.
    fn forget_if_idle(&self, cluster: &str) {
        let mut remotes = self.remotes();
        let Some(remote) = remotes.get(cluster) else {
            return;
        };
        // Every admission in flight or waiting holds a clone; the map holds one.
        if Arc::strong_count(remote) == 1 && !remote.load().slow(Instant::now()) {
            remotes.remove(cluster);
        }
    }

    /// Reconciles of `cluster` in flight (tests).
    pub fn running(&self, cluster: &str) -> usize {
        self.remotes().get(cluster).map_or(0, |r| r.load().running.len())
    }

    /// Remote clusters with an entry (tests).
    pub fn tracked(&self) -> usize {
        self.remotes().len()
    }
}

async fn acquire(s: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, Closed> {
    s.clone().acquire_owned().await.map_err(|_| Closed)
}

/// The admission of the reconcile running in this task, for [`access_cut`].
pub struct Held(Mutex<Option<Admission>>);

tokio::task_local! {
    static HELD: Arc<Held>;
}

/// Runs a reconcile admitted by `admission`, which it holds until done or until [`access_cut`] trades
/// it for a grant's.
pub async fn holding<F: std::future::Future>(admission: Admission, reconcile: F) -> F::Output {
    HELD.scope(Arc::new(Held(Mutex::new(Some(admission)))), reconcile).await
}

/// Called by an ending reconcile once the grants its status names are cut: the slots for cuts go back
/// at once (to the next cut waiting) and the rest of the ending waits for a slot of
/// [`FOLLOW_UP_SLOTS`]. Nothing when the reconcile was admitted for a grant, or not through
/// [`holding`]. If none comes within [`FOLLOW_UP_WAIT`], or the controller is stopping meanwhile, the
/// rest runs without a slot: the graceful shutdown waits for it, and the reconcile's time bound is
/// not spent in a queue.
pub async fn access_cut() {
    let Ok(held) = HELD.try_with(Arc::clone) else {
        return;
    };
    let taken = held.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(admission) = taken else {
        return;
    };
    if !admission.ending() {
        *held.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(admission);
        return;
    }
    let follow_up = tokio::time::timeout(FOLLOW_UP_WAIT, admission.into_follow_up())
        .await
        .ok()
        .and_then(Result::ok);
    *held.0.lock().unwrap_or_else(|e| e.into_inner()) = follow_up;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Polls `f` once: `Some` if it is ready without waiting.
    fn now<F: Future>(f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    fn admitted(b: &Arc<Bulkhead>, cluster: &str, ending: bool) -> Admission {
        match now(b.admit(cluster, ending)) {
            Some(Ok(a)) => a,
            Some(Err(Closed)) => panic!("{cluster}: closed"),
            None => panic!("{cluster} (ending {ending}) was not admitted at once"),
        }
    }

    fn waits(b: &Arc<Bulkhead>, cluster: &str, ending: bool) -> bool {
        now(b.admit(cluster, ending)).is_none()
    }

    #[test]
    fn a_remote_cluster_gets_at_most_its_share_and_a_slow_one_less() {
        let b = Arc::new(Bulkhead::new("central", 32));
        let mut held = Vec::new();
        for _ in 0..PER_REMOTE {
            held.push(admitted(&b, "r1", false));
        }
        assert!(waits(&b, "r1", false));
        // Other clusters are not affected.
        drop(admitted(&b, "r2", false));
        // The last reconcile of r2 was quick: r2 is not slow, and forgotten.
        assert_eq!(b.running("r2"), 0);
        drop(held.pop());
        drop(admitted(&b, "r1", false));

        // r3 took long: it is slow now and admits fewer.
        let slow = admitted(&b, "r3", false);
        {
            let remotes = b.remotes();
            let mut load = remotes.get("r3").unwrap().load();
            for r in load.running.values_mut() {
                r.started -= SLOW;
            }
        }
        let a = admitted(&b, "r3", false);
        let c = admitted(&b, "r3", false);
        assert!(
            waits(&b, "r3", false),
            "a slow cluster admitted more than its slow share"
        );
        drop(a);
        drop(c);
        drop(slow);
        // The last one that finished took over SLOW: still slow, until a quick one.
        let a = admitted(&b, "r3", false);
        let c = admitted(&b, "r3", false);
        assert!(waits(&b, "r3", false));
        drop(a);
        drop(c);
        let fast: Vec<_> = (0..PER_REMOTE).map(|_| admitted(&b, "r3", false)).collect();
        assert_eq!(fast.len(), PER_REMOTE);
    }

    #[tokio::test]
    async fn waiting_admissions_are_served_in_order_when_a_slot_frees() {
        let b = Arc::new(Bulkhead::new("central", 1));
        let first = b.admit("central", false).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..3 {
            let (b, order) = (b.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _a = b.admit("central", false).await.unwrap();
                order.lock().unwrap().push(i);
            }));
            // Each is queued before the next.
            tokio::task::yield_now().await;
        }
        // A cut on the central cluster does not wait behind the queued grants.
        let cut = now(b.admit("central", true));
        assert!(matches!(cut, Some(Ok(_))), "a central cut waited behind central grants");
        drop(cut);
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    }

    /// A remote cluster at its share of grants (slow, even) still admits its cuts.
    #[test]
    fn cuts_do_not_queue_behind_a_remote_clusters_grants() {
        let b = Arc::new(Bulkhead::new("central", 32));
        let held: Vec<_> = (0..PER_REMOTE).map(|_| admitted(&b, "r1", false)).collect();
        assert!(waits(&b, "r1", false));
        let cuts: Vec<_> = (0..PER_REMOTE_ENDING).map(|_| admitted(&b, "r1", true)).collect();
        // A cluster's cuts take only their own share of the cut slots: another cluster's cut goes on.
        assert!(waits(&b, "r1", true));
        drop(admitted(&b, "r2", true));
        drop((held, cuts));
    }

    /// However many clusters there are, at most GRANT_SLOTS grants run at once (each writes on the
    /// central API server); cuts still have theirs.
    #[test]
    fn grants_over_all_clusters_are_bounded() {
        let b = Arc::new(Bulkhead::new("central", 32));
        let held: Vec<_> = (0..GRANT_SLOTS)
            .map(|c| admitted(&b, &format!("r{c}"), false))
            .collect();
        assert!(waits(&b, "another", false));
        assert!(waits(&b, "central", false));
        drop(admitted(&b, "another", true));
        drop(held);
        drop(admitted(&b, "central", false));
    }

    /// A slow cluster's queue holds no global slot: the grants of other clusters are admitted while
    /// dozens wait for it.
    #[test]
    fn a_slow_clusters_queue_holds_nothing_others_need() {
        let b = Arc::new(Bulkhead::new("central", 32));
        let held: Vec<_> = (0..PER_REMOTE).map(|_| admitted(&b, "stuck", false)).collect();
        let mut queued = Vec::new();
        for _ in 0..100 {
            let mut f = Box::pin(b.admit("stuck", false));
            assert!(now(f.as_mut()).is_none());
            queued.push(f);
        }
        let others: Vec<_> = (0..GRANT_SLOTS - PER_REMOTE)
            .map(|c| admitted(&b, &format!("ok{c}"), false))
            .collect();
        drop((held, others, queued));
    }

    /// Hanging clusters' cuts share a few slots of their own: however many of them there are, the
    /// slots for cuts stay free for the healthy clusters.
    #[test]
    fn slow_clusters_cuts_cannot_take_every_slot_for_cuts() {
        let b = Arc::new(Bulkhead::new("central", 32));
        let mut slow_cuts = Vec::new();
        for c in 0..4 {
            let cluster = format!("hanging{c}");
            let first = admitted(&b, &cluster, false);
            {
                let remotes = b.remotes();
                let mut load = remotes.get(&cluster).unwrap().load();
                for r in load.running.values_mut() {
                    r.started -= SLOW;
                }
            }
            for _ in 0..PER_REMOTE_ENDING {
                let mut f = Box::pin(b.admit(&cluster, true));
                match now(f.as_mut()) {
                    Some(Ok(a)) => slow_cuts.push(a),
                    Some(Err(Closed)) => panic!("closed"),
                    None => drop(f),
                }
            }
            drop(first);
        }
        assert_eq!(slow_cuts.len(), SLOW_ENDING_SLOTS, "slow clusters' cuts in flight");
        let healthy: Vec<_> = (0..ENDING_SLOTS)
            .map(|c| admitted(&b, &format!("ok{c}"), true))
            .collect();
        drop((slow_cuts, healthy));
    }

    /// Reconciles that turned slow while holding global slots give them back: other clusters' grants
    /// are admitted while the slow ones run on.
    #[test]
    fn reconciles_that_turn_slow_give_their_global_slot_back() {
        let b = Arc::new(Bulkhead::new("central", 32));
        let held: Vec<_> = (0..GRANT_SLOTS)
            .map(|c| admitted(&b, &format!("turning-slow{}", c % 6), false))
            .collect();
        assert!(waits(&b, "healthy", false));
        b.release_slow_slots();
        assert!(waits(&b, "healthy", false), "slots released before anything was slow");
        for c in 0..6 {
            let remotes = b.remotes();
            let mut load = remotes.get(&format!("turning-slow{c}")).unwrap().load();
            for r in load.running.values_mut() {
                r.started -= SLOW;
            }
        }
        b.release_slow_slots();
        let healthy: Vec<_> = (0..GRANT_SLOTS)
            .map(|c| admitted(&b, &format!("healthy{c}"), false))
            .collect();
        assert_eq!(healthy.len(), GRANT_SLOTS);
        // Still counted on their own clusters: a slow one admits no more than its share.
        assert!(waits(&b, "turning-slow0", false));
        // No more than RELEASED_SLOTS run without their slot: the healthy ones turning slow keep theirs.
        for c in 0..GRANT_SLOTS {
            let remotes = b.remotes();
            let mut load = remotes.get(&format!("healthy{c}")).unwrap().load();
            for r in load.running.values_mut() {
                r.started -= SLOW;
            }
        }
        b.release_slow_slots();
        assert_eq!(b.released.load(Ordering::Acquire), RELEASED_SLOTS);
        assert!(
            waits(&b, "another", false),
            "more slots were given back than RELEASED_SLOTS"
        );
        drop(held);
        assert_eq!(
            b.released.load(Ordering::Acquire),
            0,
            "ended reconciles still counted as released"
        );
        drop(healthy);
    }

    /// An entry per cluster name ever seen (the name is the user's) is dropped once idle.
    #[test]
    fn idle_clusters_are_forgotten() {
        let b = Arc::new(Bulkhead::new("central", 32));
        for c in 0..100 {
            drop(admitted(&b, &format!("made-up-{c}"), false));
        }
        assert_eq!(b.tracked(), 0);
        let held = admitted(&b, "r1", false);
        assert_eq!(b.tracked(), 1);
        drop(held);
        assert_eq!(b.tracked(), 0);
    }

    /// Once an ending reconcile has cut the access, its slot for cuts goes to the next cut at once and
    /// the rest of it runs on a grant's slot; a grant's admission stays as it is.
    #[tokio::test]
    async fn a_cut_slot_is_held_only_until_the_access_is_cut() {
        let b = Arc::new(Bulkhead::new("central", 32));
        let (cut_made, mut cut_seen) = tokio::sync::mpsc::channel(1);
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let first = admitted(&b, "r1", true);
        let others: Vec<_> = (1..PER_REMOTE_ENDING).map(|_| admitted(&b, "r1", true)).collect();
        assert!(waits(&b, "r1", true));
        let ending = tokio::spawn(holding(first, async move {
            access_cut().await;
            cut_made.send(()).await.unwrap();
            finished.await.unwrap();
        }));
        cut_seen.recv().await.unwrap();
        let next = admitted(&b, "r1", true);
        // The rest of the ending takes a follow-up slot: not one of the cluster's, nor a grant's.
        assert_eq!(b.running("r1"), PER_REMOTE_ENDING);
        assert_eq!(b.follow_up_slots.available_permits(), FOLLOW_UP_SLOTS - 1);
        let grants: Vec<_> = (0..PER_REMOTE).map(|_| admitted(&b, "r1", false)).collect();
        assert!(waits(&b, "r1", false));
        finish.send(()).unwrap();
        ending.await.unwrap();
        assert_eq!(b.follow_up_slots.available_permits(), FOLLOW_UP_SLOTS);
        drop(grants);

        // A grant keeps its admission through `access_cut`.
        let (cut_made, mut cut_seen) = tokio::sync::mpsc::channel(1);
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let fill: Vec<_> = (1..PER_REMOTE).map(|_| admitted(&b, "r1", false)).collect();
        let grant = admitted(&b, "r1", false);
        let granting = tokio::spawn(holding(grant, async move {
            access_cut().await;
            cut_made.send(()).await.unwrap();
            finished.await.unwrap();
        }));
        cut_seen.recv().await.unwrap();
        assert!(waits(&b, "r1", false), "a grant gave its slot away");
        finish.send(()).unwrap();
        granting.await.unwrap();
        // Outside a reconcile admitted through `holding`, nothing happens.
        access_cut().await;
        drop((others, next, fill));
    }

    #[tokio::test]
    async fn closing_wakes_the_waiting_and_admits_no_more() {
        let b = Arc::new(Bulkhead::new("central", 1));
        let held = b.admit("central", false).await.unwrap();
        let remote: Vec<_> = (0..PER_REMOTE).map(|_| admitted(&b, "r1", false)).collect();
        let w1 = tokio::spawn({
            let b = b.clone();
            async move { b.admit("central", false).await.err() }
        });
        let w2 = tokio::spawn({
            let b = b.clone();
            async move { b.admit("r1", false).await.err() }
        });
        tokio::task::yield_now().await;
        b.close();
        assert_eq!(w1.await.unwrap(), Some(Closed));
        assert_eq!(w2.await.unwrap(), Some(Closed));
        assert_eq!(b.admit("r9", true).await.err(), Some(Closed));
        drop((held, remote));
    }
}
