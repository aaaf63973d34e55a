//! Leader election through a coordination.k8s.io Lease, so that only one controller replica acts.
//!
//! The rules are client-go's (`k8s.io/client-go/tools/leaderelection`):
//! - another holder's lease expires `leaseDuration` after this replica last *observed* the Lease
//!   record change, measured on the local monotonic clock. The holder's `renewTime` is never compared
//!   with the local wall clock, so clock skew between replicas cannot make a live lease look expired;
//! - the holder steps down when no renewal has succeeded for `renew_deadline` (shorter than the lease
//!   duration), counted from when the last successful renewal was *sent*. Others observe that write no
//!   earlier than it was sent, so the holder has stopped before anyone may take over;
//! - every attempt is bounded by the time left to that deadline, so a stalled API server cannot hold
//!   a renewal past it;
//! - every write carries the resourceVersion it was computed from (optimistic concurrency): of two
//!   racing replicas, one gets 409 and stays a candidate;
//! - on graceful shutdown the holder releases the lease (empty holder, `leaseDurationSeconds: 1`), so a
//!   standby takes over at once; standbys watch the Lease, so they see the release within milliseconds.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams, WatchParams};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::error::{is_conflict, is_not_found};

/// Name of the controller's Lease.
pub const LEASE_NAME: &str = "k8s-janus-controller";

/// Why leader election cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The timings cannot keep the "one leader at a time" promise.
    #[error("invalid leader election timings: {0}")]
    InvalidTimings(String),
}

/// Election timings (client-go's names and defaults of kube-controller-manager).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long others wait, after they last saw the Lease change, before they may take it.
    pub lease_duration: Duration,
    /// The holder steps down when renewal has not succeeded for this long.
    pub renew_deadline: Duration,
    /// Time between attempts (renewals of the holder, polls of a standby).
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timings {
    /// Checks the ordering the safety argument rests on: retry < renew deadline < lease duration, and
    /// a lease duration of whole seconds (the Lease stores seconds).
    pub fn validate(&self) -> Result<(), LeaderError> {
        let bad = |m: &str| Err(LeaderError::InvalidTimings(m.to_string()));
        if self.lease_duration.subsec_nanos() != 0 || self.lease_duration.as_secs() < 1 {
            return bad("the lease duration must be a whole number of seconds, at least 1");
        }
        if i32::try_from(self.lease_duration.as_secs()).is_err() {
            return bad("the lease duration is too long");
        }
        if self.renew_deadline >= self.lease_duration {
            return bad("the renew deadline must be shorter than the lease duration");
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return bad("the retry period must be above zero and shorter than the renew deadline");
        }
        Ok(())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// Election timings.
    pub timings: Timings,
}

/// The election state of one replica: what it last saw of the Lease and when. Pure logic; the clock
/// is passed in, so the rules are testable without waiting.
#[derive(Debug, Clone)]
pub struct Elector {
    identity: String,
    timings: Timings,
    /// The last Lease spec seen and the local time it was first seen in that form.
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector {
    /// A candidate that has seen nothing yet.
    pub fn new(identity: impl Into<String>, timings: Timings) -> Self {
        Self {
            identity: identity.into(),
            timings,
            observed: None,
        }
    }

    /// Records the Lease spec as read at `now`. Only a change restarts the expiry clock: a holder that
    /// stops renewing leaves the record unchanged, and it expires `leaseDuration` after we first saw it.
    pub fn observe(&mut self, spec: &LeaseSpec, now: Instant) {
        match &self.observed {
            Some((seen, _)) if seen == spec => {}
            _ => self.observed = Some((spec.clone(), now)),
        }
    }

    /// Whether the last observed record names another live holder at `now`.
    pub fn held_by_other(&self, now: Instant) -> bool {
        self.other_holder_expiry().is_some_and(|at| now < at)
    }

    /// When the lease of another holder, as last observed, expires (`None`: no other holder).
    fn other_holder_expiry(&self) -> Option<Instant> {
        let (spec, seen_at) = self.observed.as_ref()?;
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        if holder.is_empty() || holder == self.identity {
            return None;
        }
        // The holder's own duration, as client-go reads it; a missing or odd value counts as ours.
        let secs = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .unwrap_or(self.timings.lease_duration.as_secs());
        Some(*seen_at + Duration::from_secs(secs))
    }

    /// How long a candidate waits (for a change of the Lease) before its next attempt: a retry period,
    /// or less when the lease it last saw expires sooner. A dead holder's lease is then taken when it
    /// expires instead of up to a retry period later (with the chart's 15 s lease and 2 s retry period,
    /// attempts timed by renewals fall at 14 s and 16 s after the last one). Once the expiry has passed
    /// without success (a conflict, an API error), the candidate waits a full period again.
    pub fn wait_before_retry(&self, now: Instant) -> Duration {
        let retry = self.timings.retry_period;
        match self.other_holder_expiry() {
            Some(at) if at > now => retry.min(at - now),
            _ => retry,
        }
    }

    /// The spec to write to take or keep the lease, or `None` while another holder's lease is live.
    /// `current` is the spec as just read (`None`: no Lease yet).
    pub fn claim(&self, current: Option<&LeaseSpec>, now: Instant, wall: MicroTime) -> Option<LeaseSpec> {
        if current.is_some() && self.held_by_other(now) {
            return None;
        }
        let old = current.cloned().unwrap_or_default();
        let ours = old.holder_identity.as_deref() == Some(self.identity.as_str());
        Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timings.lease_seconds()),
            acquire_time: if ours {
                old.acquire_time.clone()
            } else {
                Some(wall.clone())
            },
            renew_time: Some(wall),
            lease_transitions: Some(match (current, ours) {
                (None, _) => 0,
                (Some(_), true) => old.lease_transitions.unwrap_or(0),
                (Some(_), false) => old.lease_transitions.unwrap_or(0).saturating_add(1),
            }),
            ..old
        })
    }

    /// The spec that releases a lease we hold: no holder, a one-second duration, transitions kept.
    pub fn release_spec(current: &LeaseSpec, wall: MicroTime) -> LeaseSpec {
        LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(wall.clone()),
            renew_time: Some(wall),
            ..current.clone()
        }
    }
}

fn wall_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// The outcome of one attempt to take or keep the lease.
enum Attempt {
    /// We hold the lease.
    Held,
    /// Another replica holds it (or won a race for it).
    Other,
}

/// One replica's connection to the Lease.
struct Campaign {
    api: Api<Lease>,
    cfg: LeaseConfig,
    elector: Elector,
    /// The Lease as we last wrote it while leading: renewals write from it without a read first.
    last_written: Option<Lease>,
    /// resourceVersion of the Lease as last read or written, where a standby's watch starts.
    last_seen_version: Option<String>,
}

impl Campaign {
    fn new(client: kube::Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            elector: Elector::new(cfg.identity.clone(), cfg.timings),
            cfg,
            last_written: None,
            last_seen_version: None,
        }
    }

    /// Reads the Lease, decides, and writes with the read's resourceVersion as precondition.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        // Fast path of the holder: write from what we wrote last; a 409 means someone else wrote in
        // between, and the full read-decide-write below settles it.
        if let Some(mut lease) = self.last_written.take() {
            let spec = lease.spec.clone().unwrap_or_default();
            let wall = wall_now();
            if let Some(next) = self.elector.claim(Some(&spec), Instant::now(), wall) {
                lease.spec = Some(next);
                match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
                    Ok(written) => return Ok(self.written(written)),
                    Err(e) if is_conflict(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let current = match self.api.get(&self.cfg.name).await {
            Ok(l) => Some(l),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        self.last_seen_version = current.as_ref().and_then(|l| l.metadata.resource_version.clone());
        let Some(mut lease) = current else {
            let Some(spec) = self.elector.claim(None, now, wall_now()) else {
                return Ok(Attempt::Other);
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(written) => Ok(self.written(written)),
                Err(e) if is_conflict(&e) => Ok(Attempt::Other),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        self.elector.observe(&spec, now);
        let Some(next) = self.elector.claim(Some(&spec), now, wall_now()) else {
            return Ok(Attempt::Other);
        };
        lease.spec = Some(next);
        // `lease` carries the resourceVersion of the read: a replica that wrote since makes this 409.
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(written) => Ok(self.written(written)),
            Err(e) if is_conflict(&e) => Ok(Attempt::Other),
            Err(e) => Err(e),
        }
    }

    fn written(&mut self, lease: Lease) -> Attempt {
        // Our own write is an observation too: should we lose the lease, others' expiry is measured
        // from records we have seen, never from an older one.
        self.elector
            .observe(&lease.spec.clone().unwrap_or_default(), Instant::now());
        self.last_seen_version = lease.metadata.resource_version.clone();
        self.last_written = Some(lease);
        Attempt::Held
    }

    /// Waits up to one retry period for the Lease to change (a release, a renewal), so a standby acts
    /// on a release at once instead of at its next poll; no longer than until the lease it saw expires.
    async fn wait_for_change(&self) {
        let period = self.elector.wait_before_retry(Instant::now());
        let Some(rv) = self.last_seen_version.clone() else {
            tokio::time::sleep(period).await;
            return;
        };
        // Whole seconds for the server; the local timeout below ends the wait on time.
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={}", self.cfg.name))
            .timeout(
                u32::try_from(self.cfg.timings.retry_period.as_secs())
                    .unwrap_or(1)
                    .max(1),
            );
        let wait = async {
            match self.api.watch(&wp, &rv).await {
                Ok(stream) => {
                    futures::pin_mut!(stream);
                    // Watching from the version we decided on: any event is a change since.
                    let _ = stream.next().await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot watch the Lease; polling");
                    tokio::time::sleep(period).await;
                }
            }
        };
        let _ = tokio::time::timeout(period, wait).await;
    }

    /// Releases the lease if we still hold it, with the resourceVersion as precondition.
    async fn release(&mut self) -> Result<bool, kube::Error> {
        self.last_written = None;
        let mut lease = match self.api.get(&self.cfg.name).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(false);
        }
        lease.spec = Some(Elector::release_spec(&spec, wall_now()));
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Leadership held by this replica. Renewal runs in the background until [`Leadership::lost`]
/// resolves (renewal failed for the renew deadline, or another replica holds the lease) or
/// [`Leadership::release`] is called.
#[derive(Debug)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    release_tx: Option<oneshot::Sender<oneshot::Sender<bool>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Whether this replica still leads.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Resolves once leadership is lost. The caller must stop acting at once.
    pub async fn lost(&mut self) {
        while *self.leading.borrow_and_update() {
            if self.leading.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops renewing and releases the Lease so a standby takes over at once (graceful shutdown).
    /// Call only after this replica has stopped acting. Returns whether the Lease was released.
    pub async fn release(mut self) -> bool {
        let Some(tx) = self.release_tx.take() else {
            return false;
        };
        let (done_tx, done_rx) = oneshot::channel();
        if tx.send(done_tx).is_err() {
            // The renewal task ended: leadership was lost, nothing to release.
            return false;
        }
        done_rx.await.unwrap_or(false)
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Dropped without release: stop renewing so the lease expires for the others.
        self.task.abort();
    }
}

/// Campaigns until this replica holds the lease, then keeps renewing it in the background.
pub async fn campaign(client: kube::Client, cfg: LeaseConfig) -> Result<Leadership, LeaderError> {
    cfg.timings.validate()?;
    let timings = cfg.timings;
    let mut c = Campaign::new(client, cfg);
    let mut sent;
    loop {
        sent = Instant::now();
        match tokio::time::timeout(timings.renew_deadline, c.try_acquire_or_renew()).await {
            Ok(Ok(Attempt::Held)) => break,
            Ok(Ok(Attempt::Other)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election: cannot read or write the Lease"),
            Err(_) => tracing::warn!("leader election: the API server did not answer in time"),
        }
        c.wait_for_change().await;
    }
    tracing::info!(identity = %c.cfg.identity, lease = %c.cfg.name, "became leader");
    let (leading_tx, leading) = watch::channel(true);
    let (release_tx, mut release_rx) = oneshot::channel::<oneshot::Sender<bool>>();
    let task = tokio::spawn(async move {
        // `sent`: when the last successful write was sent. Others observe it no earlier, so their
        // expiry is at least `sent + lease_duration`; we stop by `sent + renew_deadline`.
        let mut last_ok = sent;
        loop {
            let deadline = last_ok + timings.renew_deadline;
            let next = (Instant::now() + timings.retry_period).min(deadline);
            tokio::select! {
                done = &mut release_rx => {
                    let released = match tokio::time::timeout(timings.renew_deadline, c.release()).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "cannot release the Lease; it expires by itself");
                            false
                        }
                        Err(_) => {
                            tracing::warn!("releasing the Lease timed out; it expires by itself");
                            false
                        }
                    };
                    if released {
                        tracing::info!(lease = %c.cfg.name, "released the Lease");
                    }
                    let _ = leading_tx.send(false);
                    if let Ok(done) = done {
                        let _ = done.send(released);
                    }
                    return;
                }
                _ = tokio::time::sleep_until(next) => {}
            }
            let started = Instant::now();
            // Bounded by the deadline: a renewal stuck on a stalled API server must not outlive it.
            match tokio::time::timeout_at(deadline, c.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => last_ok = started,
                Ok(Ok(Attempt::Other)) => {
                    tracing::error!("another replica holds the Lease; stepping down");
                    let _ = leading_tx.send(false);
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the Lease"),
                Err(_) => tracing::warn!("renewing the Lease timed out"),
            }
            if Instant::now() >= last_ok + timings.renew_deadline {
                tracing::error!(
                    renew_deadline = ?timings.renew_deadline,
                    "the Lease was not renewed within the renew deadline; stepping down before it can expire"
                );
                let _ = leading_tx.send(false);
                return;
            }
        }
    });
    Ok(Leadership {
        leading,
        release_tx: Some(release_tx),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Timings {
        Timings::default()
    }

    fn spec(holder: &str, renew: k8s_openapi::jiff::Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: (!holder.is_empty()).then(|| holder.to_string()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(renew)),
            renew_time: Some(MicroTime(renew)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    fn wall(offset_secs: i64) -> k8s_openapi::jiff::Timestamp {
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(offset_secs)
    }

    #[test]
    fn timings_must_keep_the_deadline_inside_the_lease() {
        assert!(t().validate().is_ok());
        let mut bad = t();
        bad.renew_deadline = bad.lease_duration;
        assert!(bad.validate().unwrap_err().to_string().contains("renew deadline"));
        let mut bad = t();
        bad.retry_period = bad.renew_deadline;
        assert!(bad.validate().is_err());
        let mut bad = t();
        bad.lease_duration = Duration::from_millis(1500);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_renew_time_far_in_the_past_does_not_expire_a_lease_just_seen() {
        // The holder's clock runs an hour behind ours: its renewTime looks ancient, but it is alive.
        let mut e = Elector::new("b", t());
        let t0 = Instant::now();
        let s = spec("a", wall(-3600), 3);
        e.observe(&s, t0);
        assert!(e.held_by_other(t0));
        assert!(e.claim(Some(&s), t0 + Duration::from_secs(14), wall_now()).is_none());
        // Unchanged for a full lease duration after we first saw it: expired.
        let taken = e.claim(Some(&s), t0 + Duration::from_secs(15), wall_now()).unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(4));
    }

    #[test]
    fn a_renew_time_in_the_future_does_not_keep_a_dead_holder() {
        // The holder's clock runs an hour ahead: by renewTime it would stay valid for an hour.
        let mut e = Elector::new("b", t());
        let t0 = Instant::now();
        let s = spec("a", wall(3600), 0);
        e.observe(&s, t0);
        e.observe(&s, t0 + Duration::from_secs(10)); // unchanged: the clock is not restarted
        assert!(e.held_by_other(t0 + Duration::from_millis(14_999)));
        assert!(!e.held_by_other(t0 + Duration::from_secs(15)));
    }

    #[test]
    fn every_change_restarts_the_expiry_clock() {
        let mut e = Elector::new("b", t());
        let t0 = Instant::now();
        e.observe(&spec("a", wall(0), 0), t0);
        // A renewal seen at t0+10 s: valid until t0+25 s, whatever the timestamps say.
        e.observe(&spec("a", wall(-999), 0), t0 + Duration::from_secs(10));
        assert!(e.held_by_other(t0 + Duration::from_secs(24)));
        assert!(!e.held_by_other(t0 + Duration::from_secs(25)));
    }

    #[test]
    fn an_empty_or_own_lease_is_taken_at_once() {
        let mut e = Elector::new("b", t());
        let t0 = Instant::now();
        let released = Elector::release_spec(&spec("a", wall(0), 7), wall_now());
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(7));
        e.observe(&released, t0);
        let taken = e.claim(Some(&released), t0, wall_now()).unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(8));
        // Renewing our own lease keeps acquireTime and the transition count.
        let renewed = e.claim(Some(&taken), t0, wall_now()).unwrap();
        assert_eq!(renewed.lease_transitions, Some(8));
        assert_eq!(renewed.acquire_time, taken.acquire_time);
        assert_eq!(renewed.lease_duration_seconds, Some(15));
        // No Lease at all: created with zero transitions.
        let fresh = Elector::new("c", t()).claim(None, t0, wall_now()).unwrap();
        assert_eq!(fresh.lease_transitions, Some(0));
    }

    #[test]
    fn a_candidate_wakes_when_the_lease_it_saw_expires() {
        let mut e = Elector::new("b", t());
        let t0 = Instant::now();
        // Nothing seen, or a released lease: a normal retry period.
        assert_eq!(e.wait_before_retry(t0), t().retry_period);
        e.observe(&spec("a", wall(0), 0), t0);
        assert_eq!(e.wait_before_retry(t0), t().retry_period);
        // 14 s after the last change seen, the 15 s lease expires in 1 s: wake then, not 2 s later.
        assert_eq!(
            e.wait_before_retry(t0 + Duration::from_secs(14)),
            Duration::from_secs(1)
        );
        // Expired and still not taken (a conflict, an error): back to the retry period.
        assert_eq!(e.wait_before_retry(t0 + Duration::from_secs(15)), t().retry_period);
        // Our own lease never shortens the wait.
        let mut own = Elector::new("a", t());
        own.observe(&spec("a", wall(0), 0), t0);
        assert_eq!(own.wait_before_retry(t0 + Duration::from_secs(14)), t().retry_period);
    }

    #[test]
    fn a_lease_never_seen_is_not_held_by_anyone() {
        let e = Elector::new("b", t());
        assert!(!e.held_by_other(Instant::now()));
    }
}
