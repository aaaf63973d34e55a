//! The fleet part (issue 19): one `janus controller` process granting on many remote clusters (each its
//! own kubesim `serve`, registered with a kubeconfig Secret as production does) while thousands of
//! grants are live; bursts of approvals and expiries measured all-healthy and with some clusters
//! unreachable or slow.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use janus_api::{AccessRequest, REQUEST_LABEL};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;

use crate::{Figure, NS, Work, cpu_seconds, ms, write_private};

/// Arguments of `janus-bench fleet`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory with the release binaries `janus` and `kubesim`.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Where to write the figures (JSON).
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the work directory (logs, kubeconfigs) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// Remote clusters, each its own kubesim process.
    #[arg(long, default_value_t = 50, env = "BENCH_FLEET_CLUSTERS")]
    pub clusters: usize,
    /// Grants kept Active over the clusters while the bursts are measured.
    #[arg(long, default_value_t = 10_000, env = "BENCH_FLEET_GRANTS")]
    pub grants: usize,
    /// Requests approved at once in each burst (they then expire over 10 s).
    #[arg(long, default_value_t = 1_000, env = "BENCH_FLEET_BURST")]
    pub burst: usize,
    /// Clusters made unreachable (503 on every API call) in the degraded run.
    #[arg(long, default_value_t = 10, env = "BENCH_FLEET_UNREACHABLE")]
    pub unreachable: usize,
    /// Clusters answering every API call late in the degraded run.
    #[arg(long, default_value_t = 10, env = "BENCH_FLEET_SLOW")]
    pub slow: usize,
    /// The slow clusters' added latency per API call, in milliseconds.
    #[arg(long, default_value_t = 5_000, env = "BENCH_FLEET_SLOW_MS")]
    pub slow_ms: u64,
}

/// A burst's requests live this long plus 0–9 s, so their expiries spread over 10 s after all are Active.
const BURST_TTL: i64 = 15;
/// Requests sent to the central API server at once while loading.
const IN_FLIGHT: usize = 64;

/// One remote cluster: its kubesim process and an admin client.
struct Remote {
    name: String,
    child: tokio::process::Child,
    admin: kube::Client,
}

/// The processes whose CPU time a burst accounts for.
struct Processes {
    controller: u32,
    central: u32,
    remotes: Vec<u32>,
}

/// CPU seconds used so far, by role.
#[derive(Clone, Copy, Default)]
struct Cpu {
    controller: f64,
    central: f64,
    remotes: f64,
    /// This process: the load generator and the measuring watches.
    bench: f64,
}

impl Processes {
    fn cpu(&self) -> Cpu {
        // A process that cannot be read (gone) counts nothing; the figures then say less, not wrong.
        let of = |pid: u32| cpu_seconds(pid).unwrap_or(0.0);
        Cpu {
            controller: of(self.controller),
            central: of(self.central),
            remotes: self.remotes.iter().map(|&p| of(p)).sum(),
            bench: cpu_seconds("self").unwrap_or(0.0),
        }
    }
}

impl Cpu {
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            controller: self.controller - before.controller,
            central: self.central - before.central,
            remotes: self.remotes - before.remotes,
            bench: self.bench - before.bench,
        }
    }

    fn total(&self) -> f64 {
        self.controller + self.central + self.remotes + self.bench
    }
}

/// What the watches saw, stamped when seen.
#[derive(Default)]
struct Seen {
    /// Requests the controller has judged: a status with a condition (`Submitted`, or why it cannot
    /// judge yet, such as `ClusterReachable=False` for a request on an unreachable cluster).
    judged: std::collections::HashSet<String>,
    /// First time each request was seen Active.
    active: HashMap<String, DateTime<Utc>>,
    /// Each request's `status.expiresAt`.
    expires: HashMap<String, DateTime<Utc>>,
    /// Last ServiceAccount deletion of each request (on its remote).
    sa_gone: HashMap<String, DateTime<Utc>>,
    /// Last time any request changed (to tell when the controller is quiet).
    last_change: Option<Instant>,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn cluster_of(i: usize, n: usize) -> String {
    format!("remote-{}", i % n)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn since(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

/// The remote seed: the janus namespace with the chart's agent (remote mode), and target namespaces.
fn remote_seed() -> anyhow::Result<String> {
    let mut seed = String::new();
    for ns in [NS, "team-a", "team-b"] {
        seed.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n"
        ));
    }
    seed.push_str(&janus_testkit::render_chart(&["remote.enabled=true"], &[])?);
    Ok(seed)
}

async fn client_from(yaml: &str) -> anyhow::Result<kube::Client> {
    let kc: kube::config::Kubeconfig = yaml_serde::from_str(yaml)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

/// Starts a remote kubesim and registers it: a token of its agent ServiceAccount in a kubeconfig
/// (janus_registration::kubeconfig::build, as `janus register` writes it) in the Secret
/// `<name>-kubeconfig` on the central cluster.
async fn start_remote(bin_dir: &Path, work: &Path, name: String, central: &kube::Client) -> anyhow::Result<Remote> {
    let kc_path = work.join(format!("{name}.kubeconfig"));
    let log = std::fs::File::create(work.join(format!("{name}.log")))?;
    let child = tokio::process::Command::new(bin_dir.join("kubesim"))
        .arg("serve")
        .arg("--kubeconfig")
        .arg(&kc_path)
        .arg("--seed")
        .arg(work.join("remote-seed.yaml"))
        .args(["--name", &name, "--workload-pods=false"])
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot run kubesim")?;
    let started = Instant::now();
    while std::fs::metadata(&kc_path).map(|m| m.len() == 0).unwrap_or(true) {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("kubesim {name} wrote no kubeconfig within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let yaml = std::fs::read_to_string(&kc_path)?;
    let admin = client_from(&yaml).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}}))?;
    let token = sas
        .create_token_request("k8s-janus-agent", &PostParams::default(), &tr)
        .await?
        .status
        .context("TokenRequest without status")?
        .token;
    let kc: kube::config::Kubeconfig = yaml_serde::from_str(&yaml)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let kubeconfig = janus_registration::kubeconfig::build(&janus_registration::kubeconfig::KubeconfigInput {
        name: name.clone(),
        server: cfg.cluster_url.to_string().trim_end_matches('/').to_string(),
        ca_pem: cfg
            .root_cert
            .as_deref()
            .map(|c| janus_kube::clusters::der_to_pem(c).into_bytes()),
        tls_server_name: cfg.tls_server_name.clone(),
        insecure: false,
        auth: janus_registration::kubeconfig::Auth::Token(token),
    })?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("{name}-kubeconfig")),
            namespace: Some(NS.into()),
            labels: Some(BTreeMap::from([
                (janus_registration::CLUSTER_LABEL.to_string(), name.clone()),
                (
                    janus_api::MANAGED_BY_LABEL.to_string(),
                    janus_api::MANAGED_BY.to_string(),
                ),
            ])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([("kubeconfig".to_string(), kubeconfig)])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(central.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(Remote { name, child, admin })
}

/// Sets (or with `None` clears) a remote's injected faults through kubesim's admin route. Only API
/// paths are affected, so the admin route itself stays usable.
async fn set_faults(remote: &Remote, faults: Option<serde_json::Value>) -> anyhow::Result<()> {
    let req = match faults {
        Some(mut f) => {
            f["pathContains"] = json!("/api");
            http::Request::put("/kubesim/faults").body(serde_json::to_vec(&f)?)?
        }
        None => http::Request::delete("/kubesim/faults").body(Vec::new())?,
    };
    remote
        .admin
        .request_text(req)
        .await
        .with_context(|| format!("cannot set the faults of {}", remote.name))?;
    Ok(())
}

/// Watches the requests on the central cluster: Active times and expiresAt.
fn watch_requests(central: kube::Client, seen: Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<AccessRequest> = Api::all(central);
        let mut stream = Box::pin(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects(),
        );
        while let Some(ev) = stream.next().await {
            let Ok(ar) = ev else { continue };
            let now = Utc::now();
            let name = ar.metadata.name.clone().unwrap_or_default();
            let mut s = lock(&seen);
            s.last_change = Some(Instant::now());
            if let Some(st) = &ar.status {
                if st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == janus_api::rules::conditions::types::SUBMITTED)
                {
                    s.judged.insert(name.clone());
                }
                if st.phase == janus_api::Phase::Active {
                    s.active.entry(name.clone()).or_insert(now);
                }
                if let Some(e) = st
                    .expires_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                {
                    s.expires.insert(name, e.with_timezone(&Utc));
                }
            }
        }
    })
}

/// Watches a remote's grant ServiceAccounts and stamps their deletion.
fn watch_service_accounts(remote: kube::Client, seen: Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<ServiceAccount> = Api::all(remote);
        let cfg = watcher::Config::default().labels(REQUEST_LABEL);
        let mut stream = Box::pin(watcher(api, cfg).default_backoff());
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Delete(sa)) = ev {
                let now = Utc::now();
                if let Some(req) = sa.metadata.labels.as_ref().and_then(|l| l.get(REQUEST_LABEL)) {
                    lock(&seen).sa_gone.insert(req.clone(), now);
                }
            }
        }
    })
}

/// Peak VmRSS of a process, sampled every 100 ms until the task is aborted.
fn sample_rss(pid: u32, peak: Arc<Mutex<u64>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                && let Some(kib) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                *p = (*p).max(kib);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn request(name: &str, cluster: &str, ttl: i64) -> anyhow::Result<AccessRequest> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": name},
        "spec": {"requester": "bench@example.com", "cluster": cluster, "namespaces": ["team-a"],
                 "reason": "fleet benchmark", "ttlSeconds": ttl}
    }))?)
}

async fn create_all(api: &Api<AccessRequest>, reqs: Vec<AccessRequest>) -> anyhow::Result<()> {
    futures::stream::iter(reqs)
        .map(|ar| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &ar).await.map(|_| ()) }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Approves as the web does (spec.approval by an admin); returns when each approval was sent.
async fn approve_all(
    api: &Api<AccessRequest>,
    names: &[String],
    in_flight: usize,
) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
    let sent = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = api.clone();
            async move {
                let at = Utc::now();
                let patch = json!({"spec": {"approval": {"by": "admin@example.com",
                    "at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                anyhow::Ok((name, at))
            }
        })
        .buffer_unordered(in_flight)
        .try_collect::<HashMap<_, _>>()
        .await?;
    Ok(sent)
}

/// Waits until every name is Active (or `within` passes); returns how many are not.
async fn wait_active(seen: &Shared, names: &[String], within: Duration) -> usize {
    wait_for(seen, names, within, |s, n| s.active.contains_key(n)).await
}

/// Waits until `done` holds for every name (or `within` passes); returns for how many it does not.
async fn wait_for(seen: &Shared, names: &[String], within: Duration, done: impl Fn(&Seen, &str) -> bool) -> usize {
    let started = Instant::now();
    loop {
        let missing = {
            let s = lock(seen);
            names.iter().filter(|n| !done(&s, n)).count()
        };
        if missing == 0 || started.elapsed() > within {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no request changed for `quiet` (at most `within`).
async fn wait_quiet(seen: &Shared, quiet: Duration, within: Duration) {
    let started = Instant::now();
    while started.elapsed() < within {
        let last = lock(seen).last_change;
        if last.is_none_or(|l| l.elapsed() >= quiet) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One burst: approve→Active per request, all-Active time, expiry lags of the measured requests.
struct Burst {
    /// First approval sent → last measured request Active.
    all_active: Duration,
    approve_to_active: Vec<Duration>,
    expiry_lags: Vec<Duration>,
    not_active: usize,
    not_expired: usize,
    /// CPU used from the first approval until all measured requests were Active (or the wait gave up),
    /// and how long that was.
    cpu: Cpu,
    cpu_wall: Duration,
}

/// Creates `n` requests spread over the clusters, approves them at once, waits for the measured ones
/// (`measured(cluster index)`) to be Active and then to expire.
async fn burst(
    api: &Api<AccessRequest>,
    procs: &Processes,
    seen: &Shared,
    prefix: &str,
    n: usize,
    clusters: usize,
    measured: impl Fn(usize) -> bool,
) -> anyhow::Result<(Burst, Vec<String>)> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let reqs = names
        .iter()
        .enumerate()
        .map(|(i, name)| request(name, &cluster_of(i, clusters), BURST_TTL + (i % 10) as i64))
        .collect::<anyhow::Result<Vec<_>>>()?;
    create_all(api, reqs).await?;
    let mine: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| measured(i % clusters))
        .map(|(_, n)| n.clone())
        .collect();
    let others: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| !measured(i % clusters))
        .map(|(_, n)| n.clone())
        .collect();
    // Approved once the controller has judged every measured one Pending (a request on an unreachable
    // cluster cannot be), as a person approves requests they see waiting; then once nothing has
    // changed for a second.
    let waiting_since = Instant::now();
    let unjudged = wait_for(seen, &mine, Duration::from_secs(60), |s, n| s.judged.contains(n)).await;
    eprintln!(
        "fleet {prefix}: {} of the {} measured requests judged Pending {:.1?} after they were created{}",
        mine.len() - unjudged,
        mine.len(),
        waiting_since.elapsed(),
        if unjudged > 0 {
            " (gave up waiting for the rest)"
        } else {
            ""
        }
    );
    wait_quiet(seen, Duration::from_secs(1), Duration::from_secs(20)).await;
    let t0 = Utc::now();
    let cpu_before = procs.cpu();
    let cpu_from = Instant::now();
    // All at once: every approval in flight together, as a bulk approval in the web does.
    let sent = approve_all(api, &names, n.max(1)).await?;
    let not_active = wait_active(seen, &mine, Duration::from_secs(60)).await;
    let cpu = procs.cpu().since(cpu_before);
    let cpu_wall = cpu_from.elapsed();
    let (all_active, approve_to_active) = {
        let s = lock(seen);
        let last = mine.iter().filter_map(|n| s.active.get(n)).max().copied().unwrap_or(t0);
        let lat = mine
            .iter()
            .filter_map(|n| Some(since(*sent.get(n)?, *s.active.get(n)?)))
            .collect::<Vec<_>>();
        (since(t0, last), lat)
    };
    // The expiries: the last one is due BURST_TTL + 9 s after activation.
    let deadline = Instant::now() + Duration::from_secs(BURST_TTL as u64 + 9 + 15);
    loop {
        let left = {
            let s = lock(seen);
            mine.iter().filter(|n| !s.sa_gone.contains_key(*n)).count()
        };
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (expiry_lags, not_expired) = {
        let s = lock(seen);
        let lags = mine
            .iter()
            .filter_map(|n| Some(since(*s.expires.get(n)?, *s.sa_gone.get(n)?)))
            .collect::<Vec<_>>();
        (lags, mine.iter().filter(|n| !s.sa_gone.contains_key(*n)).count())
    };
    Ok((
        Burst {
            all_active,
            approve_to_active,
            expiry_lags,
            not_active,
            not_expired,
            cpu,
            cpu_wall,
        },
        others,
    ))
}

/// Runs the part.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.clusters == 0 || args.unreachable + args.slow >= args.clusters {
        bail!("need more clusters than unreachable + slow ones");
    }
    let (work, bin_dir) = Work::create("fleet", args.keep, &args.bin_dir)?;
    let setup_started = Instant::now();
    let (central, admin, admin_yaml) = crate::start_kubesim(&bin_dir, &work.dir).await?;
    std::fs::write(work.dir.join("remote-seed.yaml"), remote_seed()?)?;
    let remotes: Vec<Remote> = futures::stream::iter(0..args.clusters)
        .map(|i| start_remote(&bin_dir, &work.dir, format!("remote-{i}"), &admin))
        .buffered(8)
        .try_collect()
        .await?;
    eprintln!(
        "fleet: central + {} remote kubesim processes up in {:.1?}",
        remotes.len(),
        setup_started.elapsed()
    );

    let kubeconfig = work.dir.join("controller.kubeconfig");
    write_private(&kubeconfig, &crate::controller_kubeconfig(&admin, &admin_yaml).await?)?;
    let mut clusters = String::from("clusters:\n  - name: central\n");
    for r in &remotes {
        clusters.push_str(&format!("  - name: {}\n", r.name));
    }
    let config = work.dir.join("janus.yaml");
    std::fs::write(
        &config,
        format!(
            "namespace: {NS}\nadminEmails: [admin@example.com]\nminTtlSeconds: 1\nexcludedNamespaces: [kube-system]\nretentionSeconds: 0\n{clusters}"
        ),
    )?;
    let log = std::fs::File::create(work.dir.join("controller.log"))?;
    let controller = tokio::process::Command::new(bin_dir.join("janus"))
        .args(["--log-format", "json", "controller", "--config"])
        .arg(&config)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("JANUS_POD_NAME", "fleet-0")
        .env(
            "JANUS_LOG",
            std::env::var("BENCH_CONTROLLER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot run janus controller")?;
    let pid = controller.id().context("the controller exited at once")?;
    let peak_kib = Arc::new(Mutex::new(0u64));
    let mut tasks = vec![sample_rss(pid, peak_kib.clone())];
    let seen: Shared = Default::default();
    tasks.push(watch_requests(admin.clone(), seen.clone()));
    for r in &remotes {
        tasks.push(watch_service_accounts(r.admin.clone(), seen.clone()));
    }
    let procs = Processes {
        controller: pid,
        central: central.id().context("the central kubesim exited")?,
        remotes: remotes.iter().filter_map(|r| r.child.id()).collect(),
    };
    let result = measure(&args, &admin, &remotes, &procs, &seen).await;
    let peak = *peak_kib.lock().unwrap_or_else(|e| e.into_inner()) as f64 / 1024.0;
    for t in tasks {
        t.abort();
    }
    let mut figures = result?;
    let peak = (peak * 10.0).round() / 10.0;
    eprintln!("fleet: controller peak RSS {peak} MiB");
    figures.insert(
        2,
        Figure {
            part: "fleet",
            figure: format!(
                "controller peak RSS with {} clusters, {} grants Active and the bursts",
                args.clusters, args.grants
            ),
            unit: "MiB",
            value: peak,
            target: "< 64".into(),
            pass: peak > 0.0 && peak < 64.0,
        },
    );
    drop(controller);
    crate::write_figures(&args.out, &figures)?;
    Ok(())
}

async fn measure(
    args: &Args,
    admin: &kube::Client,
    remotes: &[Remote],
    procs: &Processes,
    seen: &Shared,
) -> anyhow::Result<Vec<Figure>> {
    let api: Api<AccessRequest> = Api::all(admin.clone());
    let n = args.clusters;

    // The standing load: `grants` requests, long-lived, spread over the remote clusters.
    let started = Instant::now();
    let names: Vec<String> = (0..args.grants).map(|i| format!("live-{i}")).collect();
    let reqs = names
        .iter()
        .enumerate()
        .map(|(i, name)| request(name, &cluster_of(i, n), 7200))
        .collect::<anyhow::Result<Vec<_>>>()?;
    create_all(&api, reqs).await?;
    approve_all(&api, &names, IN_FLIGHT).await?;
    let missing = wait_active(seen, &names, Duration::from_secs(360)).await;
    if missing > 0 {
        bail!("{missing} of {} standing grants not Active within 360 s", args.grants);
    }
    wait_quiet(seen, Duration::from_secs(2), Duration::from_secs(30)).await;
    eprintln!(
        "fleet: {} standing grants Active over {n} clusters after {:.1?}",
        args.grants,
        started.elapsed()
    );

    // 1–2: all healthy.
    let (healthy, _) = burst(&api, procs, seen, "healthy", args.burst, n, |_| true).await?;
    let mut h_lat = healthy.approve_to_active.clone();
    let mut h_lag = healthy.expiry_lags.clone();
    let (h_p99, h_lag_p99) = (pct(&mut h_lat, 0.99), pct(&mut h_lag, 0.99));
    eprintln!(
        "fleet healthy: all {} Active after {:?} ({} not); approve→Active p50 {:?} p99 {h_p99:?}; expiry lag p50 {:?} p99 {h_lag_p99:?} ({} not expired)",
        args.burst,
        healthy.all_active,
        healthy.not_active,
        pct(&mut h_lat, 0.5),
        pct(&mut h_lag, 0.5),
        healthy.not_expired
    );
    let cpu = healthy.cpu;
    let wall = healthy.cpu_wall.as_secs_f64();
    eprintln!(
        "fleet healthy burst CPU: {:.2} s of {:.2} s available on {} cores ({:.0} %): controller {:.2} s, central API server {:.2} s, {} remote API servers {:.2} s, load generator and watches {:.2} s",
        cpu.total(),
        wall * cores(),
        cores(),
        100.0 * cpu.total() / (wall * cores()).max(1e-9),
        cpu.controller,
        cpu.central,
        n,
        cpu.remotes,
        cpu.bench
    );

    // 4–6: the first `unreachable` clusters answer 503, the next `slow` ones answer late.
    let unreachable = args.unreachable;
    let slow_end = unreachable + args.slow;
    for r in &remotes[..unreachable] {
        set_faults(r, Some(json!({"unavailable": true}))).await?;
    }
    for r in &remotes[unreachable..slow_end] {
        set_faults(r, Some(json!({"latencyMs": args.slow_ms}))).await?;
    }
    let healthy_cluster = |c: usize| c >= slow_end;
    let (degraded, others) = burst(&api, procs, seen, "degraded", args.burst, n, healthy_cluster).await?;
    let mut d_lat = degraded.approve_to_active.clone();
    let mut d_lag = degraded.expiry_lags.clone();
    let (d_p99, d_lag_p99) = (pct(&mut d_lat, 0.99), pct(&mut d_lag, 0.99));
    eprintln!(
        "fleet degraded: the {} requests on healthy clusters all Active after {:?} ({} not); approve→Active p50 {:?} p99 {d_p99:?}; expiry lag p50 {:?} p99 {d_lag_p99:?} ({} not expired)",
        degraded.approve_to_active.len(),
        degraded.all_active,
        degraded.not_active,
        pct(&mut d_lat, 0.5),
        pct(&mut d_lag, 0.5),
        degraded.not_expired
    );
    // 5: the requests on unreachable clusters say why they wait.
    let down: Vec<String> = others
        .iter()
        .filter(|name| {
            let i: usize = name.rsplit('-').next().and_then(|i| i.parse().ok()).unwrap_or(0);
            i % n < unreachable
        })
        .cloned()
        .collect();
    let mut unexplained = 0;
    for name in &down {
        let i: usize = name.rsplit('-').next().and_then(|i| i.parse().ok()).unwrap_or(0);
        let cluster = cluster_of(i, n);
        let ar = api.get(name).await?;
        let explained = ar.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == janus_api::rules::conditions::types::CLUSTER_REACHABLE
                    && c.status == "False"
                    && c.message.contains(&cluster)
            }) && s.phase != janus_api::Phase::Active
        });
        if !explained {
            unexplained += 1;
            if unexplained <= 3 {
                eprintln!("fleet: {name} on {cluster} does not say why it waits: {:?}", ar.status);
            }
        }
    }
    // 6: the unreachable clusters come back; their requests catch up.
    let back = Utc::now();
    for r in &remotes[..unreachable] {
        set_faults(r, None).await?;
    }
    let still = wait_active(seen, &down, Duration::from_secs(90)).await;
    let catch_up = {
        let s = lock(seen);
        down.iter()
            .filter_map(|n| s.active.get(n))
            .map(|a| since(back, *a))
            .max()
            .unwrap_or_default()
    };
    eprintln!(
        "fleet: {} requests on {unreachable} unreachable clusters; {unexplained} without a reason; all Active {catch_up:?} after the clusters came back ({still} not)",
        down.len()
    );
    for r in &remotes[unreachable..slow_end] {
        set_faults(r, None).await?;
    }

    let change = |deg: Duration, base: Duration| -> f64 {
        if base.is_zero() {
            return 0.0;
        }
        ((deg.as_secs_f64() / base.as_secs_f64() - 1.0) * 1000.0).round() / 10.0
    };
    let lat_change = change(d_p99, h_p99);
    let lag_change = change(d_lag_p99, h_lag_p99);
    let healthy_n = n - slow_end;
    let per_grant = |s: f64| ((s / args.burst.max(1) as f64) * 1e4).round() / 10.0;
    let cpu_figure = |who: &str, s: f64| Figure {
        part: "fleet",
        figure: format!("CPU per grant during the burst of {} approvals ({who})", args.burst),
        unit: "ms",
        value: per_grant(s),
        target: "—".into(),
        pass: s.is_finite() && s > 0.0,
    };
    Ok(vec![
        Figure {
            part: "fleet",
            figure: format!(
                "{} approvals at once over {n} clusters ({} grants live) → all Active",
                args.burst, args.grants
            ),
            unit: "ms",
            value: ms(healthy.all_active),
            target: "< 1500".into(),
            pass: healthy.not_active == 0 && healthy.all_active < Duration::from_millis(1500),
        },
        Figure {
            part: "fleet",
            figure: format!(
                "expiry lag p99 (expiresAt → ServiceAccount gone on its cluster), {} grants expiring over 10 s with {} live",
                args.burst, args.grants
            ),
            unit: "ms",
            value: ms(h_lag_p99),
            target: "< 250".into(),
            pass: healthy.not_expired == 0 && h_lag_p99 < Duration::from_millis(250),
        },
        Figure {
            part: "fleet",
            figure: format!(
                "approve → Active p99 on the {healthy_n} healthy clusters with {unreachable} unreachable and {} at {} ms latency: change against all-healthy ({} → {} ms)",
                args.slow,
                args.slow_ms,
                ms(h_p99),
                ms(d_p99)
            ),
            unit: "%",
            value: lat_change,
            target: "≤ 10".into(),
            pass: degraded.not_active == 0 && lat_change <= 10.0,
        },
        Figure {
            part: "fleet",
            figure: format!(
                "expiry lag p99 on the {healthy_n} healthy clusters with {unreachable} unreachable and {} at {} ms latency: change against all-healthy ({} → {} ms)",
                args.slow,
                args.slow_ms,
                ms(h_lag_p99),
                ms(d_lag_p99)
            ),
            unit: "%",
            value: lag_change,
            target: "≤ 10".into(),
            pass: degraded.not_expired == 0 && lag_change <= 10.0,
        },
        Figure {
            part: "fleet",
            figure: format!(
                "approved requests on the {unreachable} unreachable clusters ({}) without a ClusterReachable=False condition naming the cluster",
                down.len()
            ),
            unit: "count",
            value: unexplained as f64,
            target: "= 0".into(),
            pass: unexplained == 0 && !down.is_empty(),
        },
        Figure {
            part: "fleet",
            figure: format!(
                "unreachable clusters back → their {} waiting requests all Active",
                down.len()
            ),
            unit: "ms",
            value: ms(catch_up),
            target: "≤ 2000".into(),
            pass: still == 0 && !down.is_empty() && catch_up <= Duration::from_secs(2),
        },
        cpu_figure("the controller", healthy.cpu.controller),
        cpu_figure(
            "the central and the remote API servers, kubesim",
            healthy.cpu.central + healthy.cpu.remotes,
        ),
    ])
}

/// The cores this machine offers, for the share of them a burst used.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}
