//! Controller failover, measured and checked: two `janus controller` processes with leader election
//! against one API server; the leader is killed (SIGKILL) or stopped (SIGTERM, a rolling update)
//! while requests are being granted and others are about to expire.
//!
//! Shared by the benchmark (`janus-bench failover`, which reports the times) and the end-to-end test
//! `crates/janus/tests/failover.rs` (which asserts that nothing is lost, nothing is doubled and the
//! expiring requests are cleaned up), so both run the same scenario. Only crates both of them depend on
//! are used here.
//!
//! Every moment is taken on the wall clock of this machine (the controllers run here too), from watch
//! events: the Lease's holder changes, ServiceAccounts, RoleBindings and token Secrets appear and
//! disappear, requests change phase.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash as _, Hasher as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use janus_api::{AccessRequest, REQUEST_LABEL};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Resource, ResourceExt as _};
use serde_json::json;

/// The controller's Lease (janus_controller::leader::LEASE_NAME; not a dependency of the test crate).
pub const LEASE_NAME: &str = "k8s-janus-controller";

/// What the scenario runs against.
#[derive(Clone)]
pub struct Setup {
    /// An admin client of the API server (creates and approves requests, watches).
    pub admin: kube::Client,
    /// The `janus` binary.
    pub janus: PathBuf,
    /// The configuration file both controllers read.
    pub config: PathBuf,
    /// Kubeconfig with the chart's controller ServiceAccount token.
    pub kubeconfig: PathBuf,
    /// Where the controllers' logs go (one file per process).
    pub logs: PathBuf,
    /// The janus namespace (Lease, token Secrets).
    pub namespace: String,
    /// Namespaces each request asks for.
    pub target_namespaces: Vec<String>,
    /// Requests in each batch.
    pub batch: usize,
    /// The lease duration the controllers run with (the chart's: 15 s).
    pub lease_duration: Duration,
}

/// How the leader is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: the process dies holding the Lease; the standby waits for it to expire.
    Kill,
    /// SIGTERM: graceful shutdown, the Lease is released (a rolling update).
    Term,
}

impl Stop {
    fn label(self) -> &'static str {
        match self {
            Stop::Kill => "kill",
            Stop::Term => "term",
        }
    }
}

/// One scenario's measurements and findings.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How the leader was stopped.
    pub stop: Stop,
    /// Signal → the standby holds the Lease.
    pub lease_taken: Duration,
    /// Signal → the first request approved after the signal is Active (the standby reconciles).
    pub first_reconcile: Duration,
    /// Signal → every request approved after the signal is Active.
    pub all_reconciled: Duration,
    /// Per request expiring around the handover: its last ServiceAccount deleted, counted from the
    /// later of its `expiresAt` and the new leader taking the Lease.
    pub cleanup_lags: Vec<Duration>,
    /// How many of those expired before the new leader took over (the rest expired after it).
    pub expired_before_takeover: usize,
    /// Requests that did not reach the phase their decisions call for.
    pub lost: Vec<String>,
    /// Objects created more than once, or tokens issued again for a request that was already Active.
    pub doubled: Vec<String>,
    /// Credentials of expired requests still present at the end.
    pub not_cleaned: Vec<String>,
    /// How the stopped leader's process ended.
    pub exit: String,
}

/// Both scenarios: the leader killed, then (the killed one restarted as the standby) the new leader
/// stopped gracefully.
#[derive(Debug, Clone)]
pub struct Report {
    /// SIGKILL of the leader.
    pub kill: Outcome,
    /// SIGTERM of the leader.
    pub term: Outcome,
}

/// A change seen by one of the watches.
#[derive(Debug, Clone)]
struct Seen {
    kind: &'static str,
    /// namespace/name.
    key: String,
    /// The request the object belongs to (its label), or the Lease holder.
    owner: String,
    change: Change,
    at: DateTime<Utc>,
    /// A fingerprint of the token a Secret carries (never the token itself).
    token: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Modified,
    Deleted,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn fingerprint(s: &Secret) -> Option<u64> {
    let token = s.data.as_ref()?.get("token")?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    token.0.hash(&mut h);
    Some(h.finish())
}

/// Watches `api` from now on (after one list for the resourceVersion), recording every change until
/// aborted. A watch that ends is resumed from the last version seen, so nothing is missed.
fn spawn_watch<K>(
    api: Api<K>,
    lp: ListParams,
    kind: &'static str,
    owner: fn(&K) -> String,
    token: fn(&K) -> Option<u64>,
    log: Log,
    errors: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let result: anyhow::Result<()> = async {
            let list = api.list(&lp).await?;
            let mut rv = list.metadata.resource_version.unwrap_or_default();
            loop {
                let mut wp = WatchParams::default().timeout(60);
                if let Some(l) = &lp.label_selector {
                    wp = wp.labels(l);
                }
                if let Some(f) = &lp.field_selector {
                    wp = wp.fields(f);
                }
                let stream = api.watch(&wp, &rv).await?;
                futures::pin_mut!(stream);
                while let Some(ev) = stream.next().await {
                    let (change, obj) = match ev? {
                        WatchEvent::Added(o) => (Change::Added, o),
                        WatchEvent::Modified(o) => (Change::Modified, o),
                        WatchEvent::Deleted(o) => (Change::Deleted, o),
                        WatchEvent::Bookmark(b) => {
                            rv = b.metadata.resource_version;
                            continue;
                        }
                        WatchEvent::Error(e) => bail!("{kind} watch: {e}"),
                    };
                    if let Some(v) = obj.meta().resource_version.clone() {
                        rv = v;
                    }
                    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
                    let seen = Seen {
                        kind,
                        key,
                        owner: owner(&obj),
                        change,
                        at: Utc::now(),
                        token: token(&obj),
                    };
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(seen);
                }
            }
        }
        .await;
        if let Err(e) = result {
            errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{kind} watch failed: {e:#}"));
        }
    })
}

fn request_of<K: Resource>(o: &K) -> String {
    o.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(REQUEST_LABEL))
        .cloned()
        .unwrap_or_default()
}

/// A `janus controller` process.
struct Replica {
    identity: String,
    child: tokio::process::Child,
}

impl Replica {
    fn start(setup: &Setup, identity: &str, generation: u32) -> anyhow::Result<Self> {
        let log_path = setup.logs.join(format!("controller-{identity}-{generation}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = tokio::process::Command::new(&setup.janus)
            .args(["--log-format", "json", "controller"])
            .arg("--config")
            .arg(&setup.config)
            .arg("--kubeconfig")
            .arg(&setup.kubeconfig)
            // The identity in the Lease, as the chart sets it from the pod name.
            .env("JANUS_POD_NAME", identity)
            .env(
                "JANUS_LOG",
                std::env::var("BENCH_CONTROLLER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", setup.janus.display()))?;
        Ok(Self {
            identity: identity.to_string(),
            child,
        })
    }

    fn signal(&mut self, stop: Stop) -> anyhow::Result<()> {
        match stop {
            Stop::Kill => self.child.start_kill()?,
            Stop::Term => {
                let pid = self.child.id().context("the controller has already exited")?;
                let pid = i32::try_from(pid).context("pid out of range")?;
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)?;
            }
        }
        Ok(())
    }

    async fn exit(mut self, within: Duration) -> String {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("cannot wait: {e}"),
            Err(_) => {
                let _ = self.child.start_kill();
                format!("still running {within:?} after the signal (killed)")
            }
        }
    }
}

async fn holder(leases: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(leases
        .get_opt(LEASE_NAME)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity))
}

async fn wait_holder(leases: &Api<Lease>, who: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if holder(leases).await?.as_deref() == Some(who) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{who} does not hold the Lease after {within:?} (holder: {:?})",
                holder(leases).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Creates the requests (the benchmark's requester, the setup's namespaces, `ttl` seconds).
async fn create(setup: &Setup, names: &[String], ttl: i64) -> anyhow::Result<()> {
    let api: Api<AccessRequest> = Api::all(setup.admin.clone());
    let calls = names.iter().map(|name| {
        let api = api.clone();
        let ar: Result<AccessRequest, _> = serde_json::from_value(json!({
            "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
            "metadata": {"name": name},
            "spec": {"requester": "bench@example.com", "cluster": "central",
                     "namespaces": setup.target_namespaces, "reason": "failover benchmark", "ttlSeconds": ttl}
        }));
        async move {
            let ar = ar?;
            api.create(&PostParams::default(), &ar).await?;
            anyhow::Ok(())
        }
    });
    for r in futures::future::join_all(calls).await {
        r?;
    }
    Ok(())
}

/// Approves the requests, as the web UI does (the default policy lets `admin@example.com` approve).
async fn approve(setup: &Setup, names: &[String]) -> anyhow::Result<()> {
    let api: Api<AccessRequest> = Api::all(setup.admin.clone());
    let calls = names.iter().map(|name| {
        let api = api.clone();
        async move {
            let patch = json!({"spec": {"approval": {"by": "admin@example.com", "at": now_rfc3339()}}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            anyhow::Ok(())
        }
    });
    for r in futures::future::join_all(calls).await {
        r?;
    }
    Ok(())
}

fn phase(ar: &AccessRequest) -> String {
    ar.status.as_ref().map(|s| s.phase.to_string()).unwrap_or_default()
}

/// The requests' phases and `expiresAt`.
async fn phases(setup: &Setup) -> anyhow::Result<BTreeMap<String, (String, Option<DateTime<Utc>>)>> {
    let api: Api<AccessRequest> = Api::all(setup.admin.clone());
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|ar| {
            let expires = ar
                .status
                .as_ref()
                .and_then(|s| s.expires_at.as_deref())
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            (ar.name_any(), (phase(&ar), expires))
        })
        .collect())
}

/// Waits until every request in `want` is in its phase, or `within` passes; returns when each was
/// first seen there (polling every 10 ms) and the ones that never got there.
async fn wait_phases(
    setup: &Setup,
    want: &BTreeMap<String, &'static str>,
    within: Duration,
) -> anyhow::Result<(BTreeMap<String, DateTime<Utc>>, Vec<String>)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut reached = BTreeMap::new();
    loop {
        let now = Utc::now();
        let seen = phases(setup).await?;
        for (name, phase) in want {
            if !reached.contains_key(name) && seen.get(name).is_some_and(|(p, _)| p == phase) {
                reached.insert(name.clone(), now);
            }
        }
        if reached.len() == want.len() || tokio::time::Instant::now() > deadline {
            let missing = want
                .iter()
                .filter(|(n, _)| !reached.contains_key(*n))
                .map(|(n, p)| {
                    let is = seen.get(n).map(|(p, _)| p.as_str()).unwrap_or("<gone>");
                    format!("{n}: wanted {p}, is {is}")
                })
                .collect();
            return Ok((reached, missing));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

fn since(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

/// The two controllers and the watches, across both scenarios.
struct Run {
    setup: Setup,
    leases: Api<Lease>,
    log: Log,
    errors: Arc<Mutex<Vec<String>>>,
    watches: Vec<tokio::task::JoinHandle<()>>,
    generation: u32,
}

impl Run {
    async fn start(setup: Setup) -> anyhow::Result<Self> {
        let log: Log = Default::default();
        let errors: Arc<Mutex<Vec<String>>> = Default::default();
        let by_request = ListParams::default().labels(REQUEST_LABEL);
        let leases: Api<Lease> = Api::namespaced(setup.admin.clone(), &setup.namespace);
        let watches = vec![
            spawn_watch(
                Api::<ServiceAccount>::all(setup.admin.clone()),
                by_request.clone(),
                "ServiceAccount",
                request_of,
                |_| None,
                log.clone(),
                errors.clone(),
            ),
            spawn_watch(
                Api::<RoleBinding>::all(setup.admin.clone()),
                by_request.clone(),
                "RoleBinding",
                request_of,
                |_| None,
                log.clone(),
                errors.clone(),
            ),
            spawn_watch(
                Api::<Secret>::namespaced(setup.admin.clone(), &setup.namespace),
                by_request,
                "Secret",
                request_of,
                fingerprint,
                log.clone(),
                errors.clone(),
            ),
            spawn_watch(
                leases.clone(),
                ListParams::default().fields(&format!("metadata.name={LEASE_NAME}")),
                "Lease",
                |l: &Lease| {
                    l.spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.clone())
                        .unwrap_or_default()
                },
                |_| None,
                log.clone(),
                errors.clone(),
            ),
        ];
        // Let the watches open before anything happens.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Self {
            setup,
            leases,
            log,
            errors,
            watches,
            generation: 0,
        })
    }

    fn replica(&mut self, identity: &str) -> anyhow::Result<Replica> {
        self.generation += 1;
        Replica::start(&self.setup, identity, self.generation)
    }

    /// When the Lease was first seen held by `who` after `after`.
    fn taken_at(&self, who: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.kind == "Lease" && s.owner == who && s.at >= after)
            .map(|s| s.at)
    }

    /// Waits for the next renewal of the Lease by `who`, as the Lease watch sees it.
    async fn wait_renewal(&self, who: &str) -> anyhow::Result<()> {
        let from = Utc::now();
        let deadline = tokio::time::Instant::now() + self.setup.lease_duration;
        loop {
            let renewed = self
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|s| s.kind == "Lease" && s.owner == who && s.change == Change::Modified && s.at > from);
            if renewed {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{who} did not renew the Lease within {:?}", self.setup.lease_duration);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops `leader` while requests are being granted and others are about to expire; `standby`
    /// must take over without losing or doubling anything.
    async fn scenario(&mut self, stop: Stop, leader: Replica, standby: &Replica) -> anyhow::Result<Outcome> {
        let s = self.setup.clone();
        let tag = stop.label();
        let long_ttl = 3600;
        let settle = s.lease_duration + Duration::from_secs(30);
        // Granted before the signal: must stay Active with the same credentials.
        let before = names(&format!("fo-{tag}-before"), s.batch);
        // Active before the signal, expiring around the handover: with SIGKILL while nobody leads, with
        // SIGTERM right after the new leader starts.
        let expiring = names(&format!("fo-{tag}-expiring"), s.batch);
        // Approved just before the signal: the old leader is granting them when it stops. A SIGKILL
        // comes right after a renewal of the Lease, so the standby waits as long as it ever can.
        let in_flight = names(&format!("fo-{tag}-inflight"), s.batch);
        // Approved right after the signal: only the new leader can grant them.
        let after = names(&format!("fo-{tag}-after"), s.batch);
        let all: Vec<String> = [&before, &expiring, &in_flight, &after]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        create(&s, &before, long_ttl).await?;
        create(&s, &in_flight, long_ttl).await?;
        create(&s, &after, long_ttl).await?;
        let expiry_ttl: i64 = match stop {
            Stop::Kill => 4,
            Stop::Term => 2,
        };
        create(&s, &expiring, expiry_ttl).await?;
        let active: BTreeMap<String, &'static str> = before.iter().map(|n| (n.clone(), "Active")).collect();
        approve(&s, &before).await?;
        let (_, missing) = wait_phases(&s, &active, Duration::from_secs(30)).await?;
        if !missing.is_empty() {
            bail!("{tag}: requests not granted before the failover: {missing:?}");
        }
        let expiring_active: BTreeMap<String, &'static str> = expiring.iter().map(|n| (n.clone(), "Active")).collect();
        approve(&s, &expiring).await?;
        let (_, missing) = wait_phases(&s, &expiring_active, Duration::from_secs(30)).await?;
        if !missing.is_empty() {
            bail!("{tag}: expiring requests not granted before the failover: {missing:?}");
        }
        if stop == Stop::Term {
            // Stop the leader shortly before they expire, so that they expire during or just after the
            // handover.
            let first_expiry = phases(&s)
                .await?
                .iter()
                .filter(|(n, _)| expiring.contains(n))
                .filter_map(|(_, (_, e))| *e)
                .min()
                .context("no expiresAt on the expiring requests")?;
            let wait = since(Utc::now(), first_expiry).saturating_sub(Duration::from_millis(300));
            tokio::time::sleep(wait).await;
        }
        // The Secrets' tokens as the old leader wrote them: a new leader must not issue them again.
        let tokens_before = self.tokens_per_secret();

        if stop == Stop::Kill {
            // Right after a renewal: the standby then waits the longest (the worst case of the promise).
            self.wait_renewal(&leader.identity).await?;
        }
        approve(&s, &in_flight).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut leader = leader;
        let signalled = Utc::now();
        leader.signal(stop)?;
        approve(&s, &after).await?;

        let after_want: BTreeMap<String, &'static str> = after.iter().map(|n| (n.clone(), "Active")).collect();
        let (reached, missing_after) = wait_phases(&s, &after_want, settle).await?;
        let exit = leader.exit(Duration::from_secs(20)).await;
        wait_holder(&self.leases, &standby.identity, Duration::from_secs(5)).await?;
        let taken = self
            .taken_at(&standby.identity, signalled)
            .context("the Lease watch never saw the standby take the Lease")?;

        let mut want: BTreeMap<String, &'static str> = BTreeMap::new();
        for n in before.iter().chain(&in_flight).chain(&after) {
            want.insert(n.clone(), "Active");
        }
        for n in &expiring {
            want.insert(n.clone(), "Expired");
        }
        let (_, lost) = wait_phases(&s, &want, settle).await?;
        // The watches' last events (deletions) arrive just after the phase.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let expires: BTreeMap<String, DateTime<Utc>> = phases(&s)
            .await?
            .into_iter()
            .filter_map(|(n, (_, e))| e.map(|e| (n, e)))
            .collect();
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut cleanup_lags = Vec::new();
        let mut expired_before_takeover = 0;
        let mut not_cleaned = Vec::new();
        for n in &expiring {
            let Some(exp) = expires.get(n).copied() else {
                not_cleaned.push(format!("{n}: no expiresAt"));
                continue;
            };
            if exp < taken {
                expired_before_takeover += 1;
            }
            let last_delete = log
                .iter()
                .filter(|e| e.kind == "ServiceAccount" && &e.owner == n && e.change == Change::Deleted)
                .map(|e| e.at)
                .max();
            match last_delete {
                Some(at) => cleanup_lags.push(since(exp.max(taken), at)),
                None => not_cleaned.push(format!("{n}: no ServiceAccount deletion seen")),
            }
        }
        not_cleaned.extend(self.leftovers(&expiring).await?);

        let mut doubled = Vec::new();
        let mut added: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for e in log
            .iter()
            .filter(|e| all.contains(&e.owner) && e.change == Change::Added)
        {
            *added.entry((e.kind, e.key.as_str())).or_default() += 1;
        }
        for ((kind, key), n) in added {
            if n > 1 {
                doubled.push(format!("{kind} {key} created {n} times"));
            }
        }
        // Requests Active before the signal keep the tokens they had: none is issued again.
        let tokens_now = self.tokens_per_secret();
        for (key, (owner, old)) in &tokens_before {
            if !before.contains(owner) && !expiring.contains(owner) {
                continue;
            }
            if let Some((_, now)) = tokens_now.get(key)
                && now.len() > old.len()
            {
                doubled.push(format!("Secret {key}: token issued again ({} tokens)", now.len()));
            }
        }
        // Each namespace of each request has exactly one ServiceAccount, RoleBinding and token Secret.
        let mut per_request: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
        for e in log
            .iter()
            .filter(|e| all.contains(&e.owner) && e.change == Change::Added)
        {
            per_request
                .entry((e.kind, e.owner.as_str()))
                .or_default()
                .insert(e.key.as_str());
        }
        for n in before.iter().chain(&in_flight).chain(&after) {
            for kind in ["ServiceAccount", "RoleBinding", "Secret"] {
                let got = per_request.get(&(kind, n.as_str())).map(BTreeSet::len).unwrap_or(0);
                if got != s.target_namespaces.len() {
                    doubled.push(format!(
                        "{n}: {got} {kind}s for {} namespaces",
                        s.target_namespaces.len()
                    ));
                }
            }
        }

        let first = reached.values().min().copied();
        let last = reached.values().max().copied();
        let mut lost = lost;
        lost.extend(missing_after.iter().map(|m| format!("after the signal: {m}")));
        lost.extend(self.errors.lock().unwrap_or_else(|e| e.into_inner()).drain(..));
        Ok(Outcome {
            stop,
            lease_taken: since(signalled, taken),
            first_reconcile: first.map(|f| since(signalled, f)).unwrap_or(settle),
            all_reconciled: last.map(|l| since(signalled, l)).unwrap_or(settle),
            cleanup_lags,
            expired_before_takeover,
            lost,
            doubled,
            not_cleaned,
            exit,
        })
    }

    /// Per token Secret: its request and the distinct tokens it has carried.
    fn tokens_per_secret(&self) -> BTreeMap<String, (String, BTreeSet<u64>)> {
        let mut out: BTreeMap<String, (String, BTreeSet<u64>)> = BTreeMap::new();
        for e in self.log.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if e.kind != "Secret" || e.change == Change::Deleted {
                continue;
            }
            let entry = out
                .entry(e.key.clone())
                .or_insert_with(|| (e.owner.clone(), BTreeSet::new()));
            entry.1.extend(e.token);
        }
        out
    }

    /// Credentials of `requests` that still exist.
    async fn leftovers(&self, requests: &[String]) -> anyhow::Result<Vec<String>> {
        let lp = ListParams::default().labels(REQUEST_LABEL);
        let admin = self.setup.admin.clone();
        let mut out = Vec::new();
        let sas = Api::<ServiceAccount>::all(admin.clone()).list(&lp).await?.items;
        let rbs = Api::<RoleBinding>::all(admin.clone()).list(&lp).await?.items;
        let secrets = Api::<Secret>::namespaced(admin, &self.setup.namespace)
            .list(&lp)
            .await?
            .items;
        let left = sas
            .iter()
            .map(|o| ("ServiceAccount", request_of(o), o.name_any()))
            .chain(rbs.iter().map(|o| ("RoleBinding", request_of(o), o.name_any())))
            .chain(secrets.iter().map(|o| ("Secret", request_of(o), o.name_any())));
        for (kind, owner, name) in left {
            if requests.contains(&owner) {
                out.push(format!("{owner}: {kind} {name} still exists"));
            }
        }
        Ok(out)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for w in &self.watches {
            w.abort();
        }
    }
}

/// Runs both scenarios: controllers `a` and `b` start, `a` leads; `a` is killed (SIGKILL) and `b` takes
/// over after the lease expires; `a` comes back as the standby; `b` is stopped (SIGTERM) and `a` takes
/// over at once. The processes are killed when this returns.
pub async fn run(setup: Setup) -> anyhow::Result<Report> {
    let mut run = Run::start(setup).await?;
    let a = run.replica("janus-a")?;
    wait_holder(&run.leases, "janus-a", Duration::from_secs(30)).await?;
    let b = run.replica("janus-b")?;
    // The standby reads the Lease and starts watching it (one retry period, 2 s with the chart's timings).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kill = run.scenario(Stop::Kill, a, &b).await?;
    let a = run.replica("janus-a")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if holder(&run.leases).await?.as_deref() != Some("janus-b") {
        bail!("the restarted replica took the Lease from a live leader");
    }
    let term = run.scenario(Stop::Term, b, &a).await?;
    drop(a);
    Ok(Report { kill, term })
}
