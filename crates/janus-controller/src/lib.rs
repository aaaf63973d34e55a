//! The k8s-janus controller: turns approved AccessRequests into per-namespace ServiceAccount +
//! RoleBinding (+ a pod-scoped Role) + TokenRequest credentials, and removes them exactly at expiry,
//! on revocation, withdrawal, denial or deletion — whatever crashed in between.

/// The cluster registry lives in `janus-kube`, shared with the web; re-exported under its old path.
pub use janus_kube::clusters;
pub mod bulkhead;
pub mod cached_request;
pub mod decision_inputs;
pub mod error;
pub mod events;
pub mod gate;
pub mod grant;
pub mod health;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod reconcile;
pub mod recorder;
pub mod scope;
pub mod token_index;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cached_request::CachedRequest;
use futures::StreamExt;
use janus_api::AccessRequest;
use janus_api::config::Config;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Resource, ResourceExt};

pub use error::Error;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of `/healthz`, `/readyz` and `/metrics` (none: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// This replica's identity for leader election and Events.
    pub identity: String,
    /// Whether to elect a leader through a Lease before acting.
    pub leader_election: bool,
}

/// Waits until the AccessRequest API answers; reports clearly while it does not.
async fn wait_for_crd(api: &Api<AccessRequest>) {
    let mut warned = false;
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return,
            Err(e) => {
                if !warned {
                    tracing::error!(error = %e, "cannot list AccessRequests: is the CRD installed (`janus crd | kubectl apply -f -`) and may this identity read it?");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// The AccessRequests a token Secret belongs to, from its ownerReferences.
///
/// AccessRequests are cluster-scoped. `Controller::owns` names an owner with the namespace of the owned
/// object, a second key for the same request beside the one its own watch uses; the controller keeps one
/// reconcile per key at a time, so a Secret event could then reconcile a request while another reconcile
/// of it was still running. These references carry no namespace, like the request's own.
pub fn owning_requests(secret: &impl Resource) -> Vec<ObjectRef<CachedRequest>> {
    let api_version = AccessRequest::api_version(&());
    secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == AccessRequest::kind(&()) && o.api_version == api_version)
        .map(|o| ObjectRef::new(&o.name))
        .collect()
}

/// Checks every configured role's ClusterRole on every configured cluster and logs what is missing.
async fn check_clusters(ctx: &reconcile::Context) {
    for c in &ctx.config.clusters {
        match ctx.clusters.get(&c.name).await {
            Ok(h) => {
                let mut ready = true;
                for role in &ctx.config.roles {
                    if let Err(e) = grant::role_rules(&h, role).await {
                        ready = false;
                        tracing::error!(cluster = %c.name, role = %role.name, error = %e, "role cannot be granted on this cluster");
                    }
                }
                if ready {
                    tracing::info!(cluster = %c.name, "cluster ready");
                }
            }
            Err(e) => tracing::warn!(cluster = %c.name, error = %e, "cluster not reachable yet"),
        }
    }
}

/// The requests a watch event of AccessRequests starts a reconcile of: only those whose decision
/// inputs changed and that no reconcile has already read fresh and acted on
/// ([`decision_inputs::DecisionInputs`]). The controller's own status writes would otherwise each bring
/// the request back for nothing (about three extra reconciles per grant), and so would the events a
/// lagging watch delivers after a reconcile already read what they carry.
///
/// A relist's new requests are started at its end, once the cache holds them: kube-runtime drops a
/// reconcile whose object is not in the cache, and the reflector takes in a relist only whole, so a
/// request created while the watch was away would otherwise never be judged.
///
/// Also wakes the reconciles waiting for a grant admission when the watch brings a request whose access
/// is to end, even one a reconcile has acted on already (that one may have failed, and its retry may
/// be the one waiting): such a request moves to the queue for cuts. Status echoes wake nobody; an
/// expiry is met by each waiter's own timer.
fn request_triggers(
    events: impl futures::Stream<Item = Result<watcher::Event<CachedRequest>, watcher::Error>> + Send + 'static,
    inputs: Arc<decision_inputs::DecisionInputs>,
    cache: reflector::Store<CachedRequest>,
    endings: Arc<tokio::sync::Notify>,
) -> impl futures::Stream<Item = Result<CachedRequest, watcher::Error>> + Send + 'static {
    use decision_inputs::Observed;
    use futures::TryStreamExt as _;
    // Names of the new requests of the relist under way (a set: a relist that fails and starts again
    // may bring one twice); `None` outside a relist.
    let mut relisted: Option<std::collections::BTreeSet<String>> = None;
    events
        .map_ok(move |event| {
            let mut start = Vec::new();
            let mut start_relisted = std::collections::BTreeSet::new();
            match event {
                watcher::Event::Apply(ar) => {
                    let observed = inputs.observe(&ar);
                    if observed != Observed::Known && ends_access(&ar, chrono::Utc::now()) {
                        endings.notify_waiters();
                    }
                    if observed == Observed::New {
                        start.push(ar);
                    }
                }
                watcher::Event::Delete(ar) => inputs.forget(&ar.name_any()),
                // A relist that failed halfway starts again with `Init`: the names its first pages
                // brought stay (their inputs are remembered, so the second pass finds them known).
                watcher::Event::Init => {
                    relisted.get_or_insert_default();
                }
                watcher::Event::InitApply(ar) => {
                    if inputs.observe(&ar) == Observed::New {
                        relisted.get_or_insert_default().insert(ar.name_any());
                    }
                }
                watcher::Event::InitDone => {
                    // Deletions while the watch was away brought no event; the relisted cache is whole.
                    let live = cache.state();
                    inputs.retain(live.iter().map(|ar| ar.metadata.name.as_deref().unwrap_or("")));
                    start_relisted = relisted.take().unwrap_or_default();
                    // Waiters look at the cache, which only now shows what changed meanwhile.
                    endings.notify_waiters();
                }
            }
            // The relisted ones copied out of the cache one at a time: at a leader's start that is
            // every request.
            let cache = cache.clone();
            let relisted = futures::stream::iter(start_relisted).filter_map(move |name| {
                std::future::ready(cache.get(&ObjectRef::new(&name)).map(|ar| CachedRequest::clone(&ar)))
            });
            futures::stream::iter(start).chain(relisted).map(Ok)
        })
        .try_flatten()
}

/// How long the start-up pass over overdue requests may hold back everything else.
const OVERDUE_SWEEP_LIMIT: Duration = Duration::from_secs(10);

/// Whether a granted request ran past the maximum of the policy that approved it (extensions capped by
/// it, [`janus_api::rules::ttl::lifetime_bound`]); [`lifecycle::overdue`] knows only the global one.
fn past_policy_bound(
    ar: &AccessRequest,
    config: &janus_api::config::Config,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    use janus_api::rules::ttl;
    let Some(st) = ar.status.as_ref() else {
        return false;
    };
    if !matches!(st.phase, janus_api::Phase::Approved | janus_api::Phase::Active) {
        return false;
    }
    let bound = ttl::lifetime_bound(config, &ar.spec, st.policy.as_ref());
    st.active_at
        .as_deref()
        .and_then(lifecycle::parse_time)
        .is_some_and(|a| ttl::expires_at_bounded(&ar.spec, a, config, &bound) <= now)
}

/// Ends overdue requests first after a start (or a change of leader), then starts the Scheduled
/// requests whose `startAt` came meanwhile.
///
/// The controller's first pass reconciles every request in list order; with thousands of live
/// requests, expiries and starts that came due while no controller ran would wait behind all of them.
/// Anything still unfinished when the bound is reached is left to the normal pass.
async fn sweep_overdue(api: &Api<AccessRequest>, ctx: &Arc<reconcile::Context>) {
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list requests for the overdue pass");
            return;
        }
    };
    let now = chrono::Utc::now();
    let (due, rest): (Vec<AccessRequest>, Vec<AccessRequest>) = list.items.into_iter().partition(|ar| {
        lifecycle::overdue(
            &ar.spec,
            ar.status.as_ref(),
            ar.metadata.deletion_timestamp.is_some(),
            &ctx.config,
            now,
        ) || past_policy_bound(ar, &ctx.config, now)
    });
    // Scheduled requests whose start came while no controller ran go right after the overdue ones:
    // otherwise they too would wait behind every other request of the first pass.
    let starting: Vec<AccessRequest> = rest.into_iter().filter(|ar| start_due(ar, now)).collect();
    end_overdue(due, ctx).await;
    start_due_schedules(starting, ctx).await;
}

/// Whether a Scheduled request's `startAt` has come.
fn start_due(ar: &AccessRequest, now: chrono::DateTime<chrono::Utc>) -> bool {
    ar.metadata.deletion_timestamp.is_none()
        && ar
            .status
            .as_ref()
            .is_some_and(|s| s.phase == janus_api::Phase::Scheduled)
        && janus_api::rules::ttl::starts_at(&ar.spec).is_some_and(|t| t <= now)
}

/// Reconciles the Scheduled requests whose start has come, before the normal pass.
async fn start_due_schedules(starting: Vec<AccessRequest>, ctx: &Arc<reconcile::Context>) {
    if starting.is_empty() {
        return;
    }
    let count = starting.len();
    let started = std::time::Instant::now();
    tracing::info!(
        count,
        "starting scheduled requests that came due while no controller ran"
    );
    let pass = futures::stream::iter(starting).for_each_concurrent(usize::from(CONCURRENCY), |ar| {
        let ctx = ctx.clone();
        async move {
            if let Err(e) = reconcile::reconcile_read(&ar, &ctx).await {
                tracing::debug!(error = %e, "scheduled request not started yet");
            }
        }
    });
    if tokio::time::timeout(OVERDUE_SWEEP_LIMIT, pass).await.is_err() {
        tracing::warn!(
            count,
            "due scheduled requests not all started in time; the rest follows in the normal pass"
        );
    } else {
        tracing::info!(count, took = ?started.elapsed(), "due scheduled requests handled");
    }
}

/// Ends the overdue requests: their tokens first, per cluster, then each request.
async fn end_overdue(due: Vec<AccessRequest>, ctx: &Arc<reconcile::Context>) {
    if due.is_empty() {
        return;
    }
    let count = due.len();
    let started = std::time::Instant::now();
    tracing::info!(count, "ending overdue requests first");
    // Credentials first, with one list per kind and cluster: the RoleBindings (the token is refused
    // at once) and then the ServiceAccounts (it stops authenticating) of every overdue request go
    // before the slower per-request bookkeeping (cleanup, status, Events) begins.
    let mut by_cluster: std::collections::BTreeMap<&str, std::collections::HashSet<String>> = Default::default();
    for ar in &due {
        // The approved cluster holds the credentials; a spec changed after approval may name another
        // (the per-request pass that follows cleans up every cluster either names).
        let approved = ar
            .status
            .as_ref()
            .and_then(|s| s.approved.as_ref())
            .map(|a| a.cluster.as_str());
        for cluster in approved.into_iter().chain([ar.spec.cluster.as_str()]) {
            by_cluster.entry(cluster).or_default().insert(ar.name_any());
        }
    }
    let revocations = by_cluster.iter().map(|(cluster, names)| async move {
        let Ok(target) = ctx.clusters.get(cluster).await else {
            return;
        };
        match grant::revoke_tokens_of(&target, names).await {
            Ok(n) => tracing::info!(cluster, service_accounts = n, "overdue tokens revoked"),
            Err(e) => {
                tracing::warn!(cluster, error = %e, "overdue tokens not revoked yet; the per-request pass follows")
            }
        }
    });
    let _ = tokio::time::timeout(OVERDUE_SWEEP_LIMIT, futures::future::join_all(revocations)).await;
    let pass = futures::stream::iter(due).for_each_concurrent(usize::from(CONCURRENCY), |ar| {
        let ctx = ctx.clone();
        async move {
            // Read from the API server moments ago, not from a cache. Being overdue does not go away
            // (an extension that arrives after expiresAt is too late in any case), and nothing else
            // writes status before the controller starts, so a second read would buy nothing here.
            if let Err(e) = reconcile::reconcile_read(&ar, &ctx).await {
                tracing::debug!(error = %e, "overdue request not finished yet");
            }
        }
    });
    if tokio::time::timeout(OVERDUE_SWEEP_LIMIT, pass).await.is_err() {
        tracing::warn!(
            count,
            "overdue pass not finished in time; the rest follows in the normal pass"
        );
    } else {
        tracing::info!(count, took = ?started.elapsed(), "overdue requests handled");
    }
}

/// The central cluster's grants at once (the bulkhead's central permits), and the start-up passes'
/// concurrency. Bounded so a burst (start-up, mass approval) does not open hundreds of requests at once
/// on the API server connection.
const CONCURRENCY: u16 = 32;
/// The controller's own bound on reconciles at once: none (kube-runtime's 0). What runs at once is
/// bounded by the bulkhead ([`bulkhead::GRANT_SLOTS`] + [`bulkhead::ENDING_SLOTS`] over all clusters,
/// [`CONCURRENCY`] on the central one, [`bulkhead::PER_REMOTE`] per remote one); the rest wait there, in
/// their own cluster's queue, as small parked futures. A bound here would make a burst of grants queue in
/// front of revocations and expiries before the bulkhead could put them in their own queue (issue 19).
const RECONCILE_SLOTS: u16 = 0;

/// Leadership was lost while acting: the caller should exit so the replica restarts as a candidate.
#[derive(Debug, thiserror::Error)]
#[error("leadership lost: stopped acting; exiting so that this replica restarts as a candidate")]
pub struct LeadershipLost;

/// Runs the controller until `shutdown` resolves or leadership is lost (then [`LeadershipLost`]).
///
/// `server` and `ca_pem` describe the central API server as the token Secrets should record it.
pub async fn run(
    config: Config,
    client: kube::Client,
    server: String,
    ca_pem: String,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    run_with_timings(
        config,
        client,
        server,
        ca_pem,
        opts,
        leader::Timings::default(),
        shutdown,
    )
    .await
}

/// [`run`] with the given leader election timings (tests shorten them).
///
/// Leadership gates everything that acts: nothing is reconciled before this replica leads. On loss,
/// the whole acting part (reconciles in flight included) is dropped at once and
/// [`LeadershipLost`] is returned: the process exits and Kubernetes restarts it as a fresh candidate,
/// as client-go's users do. Coming back as a candidate inside the process would keep caches, queued
/// requeues and half-run reconciles of the lost term; a restart has none. On `shutdown`, in-flight
/// reconciles finish (renewal continues meanwhile), then the Lease is released so a standby takes
/// over at once.
pub async fn run_with_timings(
    config: Config,
    client: kube::Client,
    server: String,
    ca_pem: String,
    opts: Options,
    timings: leader::Timings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    timings.validate()?;
    let config = Arc::new(config);
    let health = health::Health::new(Arc::new(metrics::Metrics::new()));
    if let Some(addr) = opts.metrics_listen {
        let bound = health::serve(addr, health.clone()).await?;
        tracing::info!(%bound, "serving /healthz, /readyz and /metrics");
    }
    let mut shutdown = Box::pin(shutdown);
    let ars: Api<AccessRequest> = Api::all(client.clone());
    tokio::select! {
        _ = wait_for_crd(&ars) => {}
        _ = &mut shutdown => return Ok(()),
    }
    health.ready.store(true, Ordering::Relaxed);

    let mut leadership = None;
    if opts.leader_election {
        let cfg = leader::LeaseConfig {
            namespace: config.namespace.clone(),
            name: leader::LEASE_NAME.into(),
            identity: opts.identity.clone(),
            timings,
        };
        tokio::select! {
            l = leader::campaign(client.clone(), cfg) => leadership = Some(l?),
            // A standby stops without ever having acted.
            _ = &mut shutdown => return Ok(()),
        }
    }
    let acting = act(config, client, server, ca_pem, opts, health, shutdown);
    let Some(mut leadership) = leadership else {
        return acting.await;
    };
    let result = tokio::select! {
        r = acting => r,
        _ = leadership.lost() => {
            // `acting` is dropped here: the controller stream and every reconcile in it stop at once.
            tracing::error!("lost leadership; stopped acting");
            return Err(LeadershipLost.into());
        }
    };
    // Stopped acting (graceful shutdown done): hand the lease over.
    leadership.release().await;
    result
}

/// Everything the leader does, until `shutdown` resolves and in-flight reconciles have finished.
async fn act(
    config: Arc<Config>,
    client: kube::Client,
    server: String,
    ca_pem: String,
    opts: Options,
    health: Arc<health::Health>,
    shutdown: std::pin::Pin<Box<impl Future<Output = ()> + Send + Sync + 'static>>,
) -> anyhow::Result<()> {
    let metrics = health.metrics.clone();
    let _term = metrics.leader_term();
    let ars: Api<AccessRequest> = Api::all(client.clone());
    let clusters = clusters::Clusters::new(config.clone(), client.clone(), server, ca_pem);
    let recorder = recorder::Recorder::new(client.clone(), "k8s-janus-controller", &opts.identity);
    let ctx = Arc::new(reconcile::Context::new(config.clone(), clusters, recorder, metrics));
    // Cluster lookups are answered from a watch of the kubeconfig Secrets instead of a GET per use.
    let kubeconfigs = ctx.clusters.watch();
    check_clusters(&ctx).await;
    sweep_overdue(&ars, &ctx).await;

    let secrets: Api<kube::core::PartialObjectMeta<Secret>> = Api::namespaced(client.clone(), &config.namespace);
    let (reader, writer) = reflector::store();
    // Wakes the reconciles waiting for a grant admission when a request's access is to end (rare), so
    // that such a request moves to the queue for cuts (see `timed_reconcile`).
    let endings = Arc::new(tokio::sync::Notify::new());
    // The cache reads the requests through a slimmer type (`CachedRequest`): every decision reads the
    // request fresh, and the cache holds every request, twice over for those being reconciled.
    let cached: Api<CachedRequest> = Api::all(client.clone());
    let requests = watcher(cached, watcher::Config::default())
        .default_backoff()
        .modify(|ar| cached_request::slim_metadata(&mut ar.metadata))
        .reflect(writer);
    let requests = request_triggers(requests, ctx.decision_inputs.clone(), reader.clone(), endings.clone());
    // Requests whose remote cluster came back are reconciled again at once (Clusters::wait_for).
    let requests = futures::stream::select(requests, recovered_requests(&ctx, reader.clone()));
    let latest = reader.clone();
    let controller = Controller::for_stream(requests, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILE_SLOTS))
        // A deleted or changed token Secret is drift the owner must repair; the echo of our own write
        // is not. Metadata only: no token crosses the wire or sits in memory for this, and the same
        // watch keeps the index an ending finds a request's Secrets in.
        .reconcile_on(token_secret_drift(secrets, ctx.clone()));
    *health.store.lock().unwrap_or_else(|e| e.into_inner()) = Some(controller.store());

    let bulkhead = Arc::new(bulkhead::Bulkhead::new(
        &ctx.clusters.central().name,
        usize::from(CONCURRENCY),
    ));
    // The graceful shutdown waits for the reconciles in flight, and those waiting for admission are in
    // flight too: they are let go at once.
    let shutdown = {
        let bulkhead = bulkhead.clone();
        async move {
            shutdown.await;
            bulkhead.close();
        }
    };
    let release_slow_slots = {
        let bulkhead = bulkhead.clone();
        async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
            loop {
                every.tick().await;
                bulkhead.release_slow_slots();
            }
        }
    };
    let controller = controller
        .graceful_shutdown_on(shutdown)
        .run(
            move |ar, ctx| timed_reconcile(ar, ctx, bulkhead.clone(), latest.clone(), endings.clone()),
            |ar, err, ctx| reconcile::error_policy(&ar.name_any(), err, &ctx),
            ctx,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile");
            }
        });
    // Only the controller ends (on shutdown, after its graceful drain); the other two loop forever and
    // are dropped with it.
    tokio::select! {
        () = controller => {}
        () = release_slow_slots => {}
        () = kubeconfigs => {}
    }
    Ok(())
}

/// The requests announced by [`clusters::Clusters::recovered`], as the reflector has them now.
fn recovered_requests(
    ctx: &reconcile::Context,
    store: reflector::Store<CachedRequest>,
) -> impl futures::Stream<Item = Result<CachedRequest, watcher::Error>> + Send + 'static {
    let names = ctx.clusters.recovered();
    futures::stream::unfold(names, |names| async move {
        let mut names = names?;
        let name = names.recv().await?;
        Some((name, Some(names)))
    })
    .filter_map(move |name| {
        let ar = store
            .get(&ObjectRef::new(&name))
            .map(|ar| Ok(CachedRequest::clone(&ar)));
        futures::future::ready(ar)
    })
}

/// The requests whose token Secrets drifted (appeared, changed or went other than by this
/// controller's own write), from a metadata-only watch of every Secret carrying a request's label (as
/// the label list the index replaces finds them, not only while it still says who manages it). The
/// same watch keeps [`token_index::TokenIndex`]; a relist reports only what changed while the watch
/// was away ([`token_index::Touched`]).
fn token_secret_drift(
    secrets: Api<kube::core::PartialObjectMeta<Secret>>,
    ctx: Arc<reconcile::Context>,
) -> impl futures::Stream<Item = ObjectRef<CachedRequest>> + Send + 'static {
    use token_index::Touched;
    watcher(secrets, watcher::Config::default().labels(janus_api::REQUEST_LABEL))
        .default_backoff()
        .map(move |event| {
            let owners = match event {
                Ok(event) => {
                    let touched = ctx.token_index.apply(&event);
                    match (&event, touched) {
                        (_, Touched::Vanished(requests)) => requests.iter().map(|r| ObjectRef::new(r)).collect(),
                        (watcher::Event::Apply(s) | watcher::Event::InitApply(s) | watcher::Event::Delete(s), t) => {
                            // Asked for every Secret event, also one a relist reports unchanged: that
                            // settles (forgets) the write whose echo it is.
                            let own = ctx.is_own_secret_write(
                                &s.name_any(),
                                s.metadata.resource_version.as_deref(),
                                matches!(event, watcher::Event::Delete(_)),
                            );
                            if t == Touched::Secret && !own {
                                let mut owners = owning_requests(s);
                                // Also the request its label names: a Secret replaced while the watch was
                                // away may have lost its owner reference, never its label (the watch
                                // selects on it).
                                if let Some(r) = s.labels().get(janus_api::REQUEST_LABEL) {
                                    let r = ObjectRef::new(r);
                                    if !owners.contains(&r) {
                                        owners.push(r);
                                    }
                                }
                                owners
                            } else {
                                Vec::new()
                            }
                        }
                        _ => Vec::new(),
                    }
                }
                Err(e) => {
                    // Changes may be missed until the watch is back: endings list meanwhile, and the
                    // relist that follows reports what changed.
                    // An expired resourceVersion (410) is routine: kube relists. Anything else means
                    // the index answers from lists until the watch is back, which operators should see.
                    if resource_version_expired(&e) {
                        tracing::debug!(error = %e, "token Secret watch expired; relisting");
                    } else {
                        tracing::warn!(error = %e, "token Secret watch failed; retrying");
                    }
                    ctx.token_index.degraded();
                    Vec::new()
                }
            };
            futures::stream::iter(owners)
        })
        .flatten()
}

/// Whether a watch failed only because its resourceVersion (or a list's continue token) left the API
/// server's history: 410 Gone, wherever kube's watcher met it.
fn resource_version_expired(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// The request still holds grants and its access is to end (a revocation, withdrawal or denial, its
/// deletion, or its expiry is due): its reconcile takes the bulkhead's slots for cuts, never waiting
/// behind grants.
fn ends_access(ar: &CachedRequest, now: chrono::DateTime<chrono::Utc>) -> bool {
    // Grants left in the status of a request whose credentials are gone (retention, resyncs) are
    // nothing to cut.
    let Some(status) = ar.live_grants() else {
        return false;
    };
    ar.spec.ends()
        || ar.metadata.deletion_timestamp.is_some()
        || status
            .expires_at
            .as_deref()
            .and_then(janus_api::rules::time::parse_time)
            .is_some_and(|t| t <= now)
}

/// Resolves with the request as the watch has it now once its access is to end ([`ends_access`]):
/// looked at when the watch brings a request whose access is to end (`endings`) and when the
/// request's own expiry passes. No timer per waiting request otherwise: thousands may wait.
async fn became_ending(
    latest: &reflector::Store<CachedRequest>,
    key: &ObjectRef<CachedRequest>,
    endings: &tokio::sync::Notify,
) -> Arc<CachedRequest> {
    loop {
        let notified = endings.notified();
        tokio::pin!(notified);
        // Registered before the look, so a notification between the look and the wait is not lost.
        notified.as_mut().enable();
        let now = chrono::Utc::now();
        let current = latest.get(key);
        if let Some(ar) = &current
            && ends_access(ar, now)
        {
            return ar.clone();
        }
        let expires_in = current
            .as_ref()
            .and_then(|ar| {
                ar.status
                    .as_ref()?
                    .expires_at
                    .as_deref()
                    .and_then(janus_api::rules::time::parse_time)
            })
            .and_then(|t| (t - now).to_std().ok())
            // Without an expiry seen (a stale object), looked at again now and then: status changes
            // wake nobody.
            .unwrap_or(std::time::Duration::from_secs(30));
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(expires_in + std::time::Duration::from_millis(5)) => {}
        }
    }
}

/// The cluster whose queue a request's reconcile waits in: the one it was approved for, where its
/// grants are made and cut, else the one it asks for. Not the spec's once approved: a spec changed
/// afterwards (which fails the request) must not move its cut into another cluster's queue.
fn queue_of(ar: &CachedRequest) -> &str {
    ar.queue()
}

/// [`reconcile::reconcile`], timed into `janus_controller_reconcile_duration_seconds`, once the
/// request's cluster admits it ([`bulkhead::Bulkhead`]).
async fn timed_reconcile(
    mut ar: Arc<CachedRequest>,
    ctx: Arc<reconcile::Context>,
    bulkhead: Arc<bulkhead::Bulkhead>,
    latest: reflector::Store<CachedRequest>,
    endings: Arc<tokio::sync::Notify>,
) -> Result<kube::runtime::controller::Action, error::Error> {
    let queued = std::time::Instant::now();
    let admitted = if ends_access(&ar, chrono::Utc::now()) {
        bulkhead.admit(queue_of(&ar), true).await
    } else {
        // A grant may wait long in its cluster's queue (a slow cluster admits 2 at once), and while
        // this reconcile waits, kube-runtime holds back the request's next one: a revocation (or the
        // expiry) arriving meanwhile moves it to the queue for cuts instead of waiting behind grants.
        let cluster = queue_of(&ar).to_string();
        let key = ObjectRef::from_obj(&*ar);
        let moved = tokio::select! {
            a = bulkhead.admit(&cluster, false) => Ok(a),
            now_ending = became_ending(&latest, &key, &endings) => Err(now_ending),
        };
        match moved {
            Ok(a) => a,
            Err(now_ending) => {
                ar = now_ending;
                bulkhead.admit(queue_of(&ar), true).await
            }
        }
    };
    let admitted = match admitted {
        Ok(a) => a,
        // The controller is stopping: the next leader reconciles everything at its start.
        Err(bulkhead::Closed) => return Ok(kube::runtime::controller::Action::await_change()),
    };
    // Boxed, allocated only once admitted: a future is as large as its largest state, and thousands
    // of reconciles may wait for admission at once (every request at a leader's start), each a task
    // of kube-runtime's holding only what waiting needs.
    Box::pin(admitted_reconcile(ar, ctx, admitted, queued)).await
}

/// The rest of [`timed_reconcile`] once admitted: the reconcile itself, holding the admission, then
/// the bookkeeping of its outcome.
async fn admitted_reconcile(
    ar: Arc<CachedRequest>,
    ctx: Arc<reconcile::Context>,
    admitted: bulkhead::Admission,
    queued: std::time::Instant,
) -> Result<kube::runtime::controller::Action, error::Error> {
    let start = std::time::Instant::now();
    tracing::debug!(
        request = %ar.name_any(),
        cluster = queue_of(&ar),
        ending = admitted.ending(),
        waited = ?start.duration_since(queued),
        "admitted"
    );
    // Boxed: the reconcile's state is large.
    let result = bulkhead::holding(admitted, Box::pin(reconcile::reconcile(ar.clone(), ctx.clone()))).await;
    match &result {
        // Retried when the cluster answers again, not only after the backoff.
        Err(e) if e.is_transient() => ctx.clusters.wait_for(queue_of(&ar), &ar.name_any()).await,
        Ok(_) => ctx.clusters.settled(queue_of(&ar), &ar.name_any()),
        Err(_) => {}
    }
    let outcome = if result.is_ok() {
        metrics::Outcome::Ok
    } else {
        metrics::Outcome::Error
    };
    ctx.metrics.observe_reconcile(start.elapsed(), outcome);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn active(name: &str, expires_in: chrono::Duration, revoked: bool) -> AccessRequest {
        let mut spec = json!({"requester": "a@x.io", "cluster": "slow", "namespaces": ["team-a"],
                              "reason": "debugging", "ttlSeconds": 600});
        if revoked {
            spec["revocation"] = json!({"by": "admin@example.com", "at": "2026-12-07T06:00:00Z", "reason": "r"});
        }
        serde_json::from_value(json!({
            "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
            "metadata": {"name": name, "uid": "u1"},
            "spec": spec,
            "status": {"phase": "Active",
                       "expiresAt": janus_api::rules::time::fmt_time_millis(chrono::Utc::now() + expires_in),
                       "grants": [{"namespace": "team-a", "serviceAccount": "sa", "roleBinding": "sa",
                                   "tokenSecret": "s"}]},
        }))
        .unwrap()
    }

    fn cached(ar: &AccessRequest) -> CachedRequest {
        CachedRequest::from(ar)
    }

    /// A grant reconcile waiting in a slow cluster's queue moves to the queue for cuts when the
    /// revocation arrives (woken by the watch), and when its expiry passes (its own timer); not before.
    #[tokio::test]
    async fn a_waiting_grant_notices_that_its_access_is_to_end() {
        let (reader, mut writer) = reflector::store::<CachedRequest>();
        let endings = tokio::sync::Notify::new();
        let ar = cached(&active("r1", chrono::Duration::hours(1), false));
        let key = ObjectRef::from_obj(&ar);
        writer.apply_watcher_event(&watcher::Event::Apply(ar.clone()));
        let waiting = became_ending(&reader, &key, &endings);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), waiting.as_mut())
                .await
                .is_err(),
            "an Active request with an hour left was taken as ending"
        );
        writer.apply_watcher_event(&watcher::Event::Apply(cached(&active(
            "r1",
            chrono::Duration::hours(1),
            true,
        ))));
        endings.notify_waiters();
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), waiting)
            .await
            .expect("the revocation did not move the waiting reconcile");
        assert!(got.spec.ends());

        // The expiry passes while it waits: no notification needed.
        let soon = cached(&active("r2", chrono::Duration::milliseconds(300), false));
        let key = ObjectRef::from_obj(&soon);
        writer.apply_watcher_event(&watcher::Event::Apply(soon));
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            became_ending(&reader, &key, &endings),
        )
        .await
        .expect("the expiry did not move the waiting reconcile");
    }

    /// What the request watch starts: new decision inputs only, nothing a reconcile has already read,
    /// waiters woken for endings the watch brings (also ones already acted on), and a relist's new
    /// requests only once the cache holds them.
    #[tokio::test]
    async fn the_request_watch_starts_reconciles_of_what_is_new_only() {
        use futures::StreamExt as _;
        let (cache, writer) = reflector::store::<CachedRequest>();
        let inputs = Arc::new(decision_inputs::DecisionInputs::default());
        let endings = Arc::new(tokio::sync::Notify::new());
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<watcher::Event<CachedRequest>, watcher::Error>>();
        let mut started = Box::pin(request_triggers(
            rx.reflect(writer),
            inputs.clone(),
            cache.clone(),
            endings.clone(),
        ));
        let failing = tx.clone();
        let mut next = async |event: watcher::Event<CachedRequest>| {
            tx.unbounded_send(Ok(event)).unwrap();
            let mut names = Vec::new();
            while let Ok(Some(Ok(ar))) =
                tokio::time::timeout(std::time::Duration::from_millis(50), started.next()).await
            {
                names.push(ar.name_any());
            }
            names
        };
        let mut r1 = cached(&active("r1", chrono::Duration::hours(1), false));
        r1.metadata.generation = Some(1);

        assert_eq!(next(watcher::Event::Apply(r1.clone())).await, ["r1"]);
        let mut echo = r1.clone();
        echo.metadata.resource_version = Some("written".into());
        echo.status.as_mut().unwrap().phase = janus_api::Phase::Expired;
        assert!(next(watcher::Event::Apply(echo)).await.is_empty(), "a status echo");

        // A reconcile read the revocation before its event came; the event still wakes the waiters.
        let mut revoked = active("r1", chrono::Duration::hours(1), true);
        revoked.metadata.generation = Some(2);
        inputs.acting_on(&revoked);
        let woken = endings.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        assert!(
            next(watcher::Event::Apply(cached(&revoked))).await.is_empty(),
            "already acted on"
        );
        tokio::time::timeout(std::time::Duration::from_millis(100), woken)
            .await
            .expect("the waiters were not woken");

        // A relist with a request created meanwhile: started at its end, and found in the cache.
        let mut r2 = cached(&active("r2", chrono::Duration::hours(1), false));
        r2.metadata.generation = Some(1);
        assert!(next(watcher::Event::Init).await.is_empty());
        assert!(
            next(watcher::Event::InitApply(r2)).await.is_empty(),
            "before the cache has it"
        );
        assert_eq!(next(watcher::Event::InitDone).await, ["r2"]);
        assert!(cache.get(&ObjectRef::new("r2")).is_some());
        assert!(cache.get(&ObjectRef::new("r1")).is_none(), "r1 was not in the relist");
        assert_eq!(inputs.len(), 1, "r1 forgotten");

        // A relist that fails after its first page and starts again still starts what that page brought.
        let mut r3 = cached(&active("r3", chrono::Duration::hours(1), false));
        r3.metadata.generation = Some(1);
        assert!(next(watcher::Event::Init).await.is_empty());
        assert!(next(watcher::Event::InitApply(r3.clone())).await.is_empty());
        // The watcher reports the failure, then lists again from the start.
        failing.unbounded_send(Err(watcher::Error::NoResourceVersion)).unwrap();
        assert!(next(watcher::Event::Init).await.is_empty());
        assert!(next(watcher::Event::InitApply(r3)).await.is_empty());
        assert_eq!(next(watcher::Event::InitDone).await, ["r3"]);
    }

    /// The cached request drives the same decisions about which request to reconcile and when as the
    /// whole object: decision inputs, endings, the queue, the cut's grants, the phase counts.
    #[test]
    fn a_cached_request_drives_what_the_whole_one_does() {
        let mut whole = active("r5", chrono::Duration::hours(1), true);
        whole.metadata.annotations = Some([("note".to_string(), "x".repeat(4096))].into());
        whole.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
        whole.metadata.finalizers = Some(vec![janus_api::FINALIZER.into()]);
        whole.metadata.generation = Some(3);
        let status = whole.status.as_mut().unwrap();
        status.message = "access granted in team-a".into();
        status.approved = Some(
            serde_json::from_value(json!({"digest": "d", "requester": "a@x.io", "cluster": "prod", "namespaces": ["team-a"], "ttlSeconds": 600, "approvedBy": "admin@example.com"}))
                .unwrap(),
        );
        status.conditions.push(janus_api::Condition {
            type_: "CredentialsRemoved".into(),
            status: "False".into(),
            reason: "Pending".into(),
            message: "remote-7 unreachable".into(),
            last_transition_time: "2026-12-07T06:00:00Z".into(),
        });
        // As the watch brings it: read from the wire through the slim type.
        let mut slim: CachedRequest = serde_json::from_value(serde_json::to_value(&whole).unwrap()).unwrap();
        cached_request::slim_metadata(&mut slim.metadata);
        assert_eq!(slim, cached(&whole));

        assert!(ends_access(&slim, chrono::Utc::now()), "revoked with live grants");
        let mut deleted = active("r6", chrono::Duration::hours(1), false);
        assert!(!ends_access(&cached(&deleted), chrono::Utc::now()));
        deleted.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert!(
            ends_access(&cached(&deleted), chrono::Utc::now()),
            "deleted with live grants"
        );
        assert_eq!(queue_of(&slim), "prod");
        let inputs = decision_inputs::DecisionInputs::default();
        assert_eq!(inputs.observe(&whole), decision_inputs::Observed::New);
        assert_eq!(
            inputs.observe(&slim),
            decision_inputs::Observed::Known,
            "the cached request's decision inputs differ"
        );
        let (s, w) = (slim.status.as_ref().unwrap(), whole.status.as_ref().unwrap());
        assert_eq!(s.grants, w.grants);
        assert_eq!(s.phase, w.phase);
        assert_eq!(s.expires_at, w.expires_at);
        assert!(s.credentials.pending && !s.credentials.removed);
        assert!(slim.metadata.annotations.is_none() && slim.metadata.labels.is_none());
    }

    /// A spec changed after approval does not move the request into another cluster's queue.
    #[test]
    fn a_request_waits_in_the_queue_of_the_cluster_it_was_approved_for() {
        let mut ar = active("r4", chrono::Duration::hours(1), true);
        assert_eq!(queue_of(&cached(&ar)), "slow");
        ar.status.as_mut().unwrap().approved = Some(
            serde_json::from_value(json!({"digest": "d", "requester": "a@x.io", "cluster": "prod", "namespaces": ["team-a"], "ttlSeconds": 600, "approvedBy": "admin@example.com"}))
                .unwrap(),
        );
        assert_eq!(queue_of(&cached(&ar)), "prod");
    }

    #[test]
    fn requests_whose_credentials_are_removed_take_no_slot_for_cuts() {
        let mut ar = active("r3", chrono::Duration::hours(1), true);
        assert!(ends_access(&cached(&ar), chrono::Utc::now()));
        ar.status.as_mut().unwrap().conditions.push(janus_api::Condition {
            type_: "CredentialsRemoved".into(),
            status: "True".into(),
            reason: "Revoked".into(),
            message: String::new(),
            last_transition_time: "2026-12-07T06:00:00Z".into(),
        });
        assert!(!ends_access(&cached(&ar), chrono::Utc::now()));
    }

    #[test]
    fn token_secrets_map_to_the_cluster_scoped_request() {
        let ar: AccessRequest = serde_json::from_value(json!({
            "apiVersion": "k8s-janus.opsmode.io/v1alpha1",
            "kind": "AccessRequest",
            "metadata": {"name": "r1", "uid": "u1"},
            "spec": {"requester": "a@x.io", "cluster": "central", "namespaces": ["team-a"], "reason": "debugging", "ttlSeconds": 600},
        }))
        .unwrap();
        let owner = ar.controller_owner_ref(&()).unwrap();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {
                "name": "janus-token-r1-team-a",
                "namespace": "k8s-janus",
                "ownerReferences": [
                    owner,
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "u2"},
                ],
            },
        }))
        .unwrap();
        // The same key as the request's own watch event: no namespace.
        assert_eq!(owning_requests(&secret), vec![ObjectRef::from_obj(&cached(&ar))]);
        assert_eq!(owning_requests(&secret)[0].namespace, None);
    }
}
