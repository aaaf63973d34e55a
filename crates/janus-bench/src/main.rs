//! `janus-bench`: the benchmark driver behind `scripts/bench.sh`. Each part starts the release
//! binaries as separate processes (kubesim `serve` standing in for the API server, `janus controller`,
//! `janus web`), measures, and writes its figures as JSON for the script's summary.
//!
//! Usage: `janus-bench <PART> --bin-dir target/release --out target/bench/<part>.json`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde::Serialize;
use serde_json::json;

mod failover;
mod fleet;
mod replicas;
mod terminal;

// One writer of private files for the whole tool (farm.rs is also compiled into crates/janus/tests).
use replicas::write_private;

/// The janus namespace, as the chart installs it in the tests and benchmarks.
const NS: &str = "k8s-janus";

#[derive(Parser)]
#[command(
    name = "janus-bench",
    about = "k8s-janus benchmark parts (run through scripts/bench.sh)"
)]
struct Cli {
    #[command(subcommand)]
    part: Part,
}

#[derive(Subcommand)]
enum Part {
    /// Two controllers with leader election: the leader SIGKILLed, then SIGTERMed (a rolling update).
    Failover(FailoverArgs),
    /// Two `janus web` replicas with the chart's configuration on one PostgreSQL: 500 concurrent users
    /// through oha, 2,000 terminal sessions cut by revokes, one replica SIGKILLed mid-load.
    WebReplicas(replicas::Args),
    /// One controller granting on many remote clusters (kubesim each) with thousands of live grants:
    /// approval bursts and expiries, all healthy and with clusters unreachable or slow.
    Fleet(fleet::Args),
    /// CPU per GiB of shell output through a janus terminal against a straight exec, and the web's
    /// memory per idle terminal session.
    TerminalCost(terminal::Args),
}

#[derive(clap::Args)]
struct FailoverArgs {
    /// Directory with the release binaries `janus` and `kubesim`.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where to write the figures (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Requests per batch (four batches per scenario: granted before, expiring, in flight, after).
    #[arg(long, default_value_t = 20, env = "BENCH_FAILOVER_REQUESTS")]
    requests: usize,
    /// Keep the work directory (logs, kubeconfigs) instead of removing it.
    #[arg(long)]
    keep: bool,
}

/// One figure of a part, as scripts/bench.sh collects them into target/bench/summary.json.
#[derive(Serialize)]
struct Figure {
    part: &'static str,
    figure: String,
    unit: &'static str,
    value: f64,
    /// How the target reads in the docs, e.g. `< 1000`.
    target: String,
    pass: bool,
}

/// The chart's leader-election timings (janus_controller::leader::Timings::default, which the
/// `janus controller` command uses): the lease lasts 15 s.
const CHART_LEASE: Duration = Duration::from_secs(15);

/// A work directory removed on drop unless kept.
struct Work {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Work {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("work directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Work {
    /// A fresh work directory for `part` (`janus-bench-<part>-<pid>` in the temp directory) and
    /// `bin_dir` made absolute; the directory goes when the result is dropped unless `keep`.
    fn create(part: &str, keep: bool, bin_dir: &Path) -> anyhow::Result<(Work, PathBuf)> {
        let dir = std::env::temp_dir().join(format!("janus-bench-{part}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let work = Work { dir, keep };
        let bin_dir =
            std::fs::canonicalize(bin_dir).with_context(|| format!("no binary directory {}", bin_dir.display()))?;
        Ok((work, bin_dir))
    }
}

/// Clock ticks per second of /proc/<pid>/stat: USER_HZ, which Linux fixes at 100 for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) of a process so far, in seconds.
fn cpu_seconds(pid: impl std::fmt::Display) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("no process {pid}"))?;
    // The fields after the command name (which may hold spaces) start after the last ") ".
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("unreadable /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of proc(5), 12 and 13 after the name.
    let tick = |i: usize| -> anyhow::Result<f64> { Ok(f.get(i).context("short /proc stat")?.parse::<f64>()?) };
    Ok((tick(11)? + tick(12)?) / TICKS_PER_SECOND)
}

/// The resident memory of a process in KiB (/proc/PID/status VmRSS).
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("no process {pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// Writes a part's figures as JSON to `out`, making its directory first.
fn write_figures(out: &Path, figures: &impl Serialize) -> anyhow::Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(figures)?)?;
    Ok(())
}

/// The cluster behind the admin kubeconfig `start_kubesim` wrote into `work`, for seeding it.
async fn admin_cluster(work: &Path, admin_yaml: &str) -> anyhow::Result<janus_testkit::TestCluster> {
    let context = yaml_serde::from_str::<serde_json::Value>(admin_yaml)?["current-context"]
        .as_str()
        .context("admin kubeconfig without current-context")?
        .to_string();
    Ok(janus_testkit::TestCluster::from_kubeconfig_file_in_context(&work.join("admin.kubeconfig"), &context).await?)
}

/// kubesim `serve` as its own process, seeded like a cluster with the chart installed.
async fn start_kubesim(bin_dir: &Path, work: &Path) -> anyhow::Result<(tokio::process::Child, kube::Client, String)> {
    let crd = std::process::Command::new(bin_dir.join("janus"))
        .arg("crd")
        .output()
        .context("cannot run janus crd")?;
    if !crd.status.success() {
        bail!("janus crd failed: {}", String::from_utf8_lossy(&crd.stderr));
    }
    let rbac = janus_testkit::render_chart(
        &[],
        &[
            "templates/serviceaccounts.yaml",
            "templates/rbac-controller.yaml",
            "templates/rbac-pod-exec.yaml",
        ],
    )?;
    let mut seed = String::new();
    for ns in [NS, "team-a", "team-b"] {
        seed.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n"
        ));
    }
    seed.push_str(&String::from_utf8_lossy(&crd.stdout));
    seed.push_str("\n---\n");
    seed.push_str(&rbac);
    std::fs::write(work.join("seed.yaml"), seed)?;
    let admin_kc = work.join("admin.kubeconfig");
    let log = std::fs::File::create(work.join("kubesim.log"))?;
    let child = tokio::process::Command::new(bin_dir.join("kubesim"))
        .arg("serve")
        .arg("--kubeconfig")
        .arg(&admin_kc)
        .arg("--seed")
        .arg(work.join("seed.yaml"))
        .arg("--name")
        .arg("central")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot run kubesim")?;
    let mut waited = Duration::ZERO;
    while std::fs::metadata(&admin_kc).map(|m| m.len() == 0).unwrap_or(true) {
        if waited > Duration::from_secs(20) {
            bail!("kubesim wrote no kubeconfig within 20 s (see kubesim.log)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    let yaml = std::fs::read_to_string(&admin_kc)?;
    let kc: kube::config::Kubeconfig = yaml_serde::from_str(&yaml)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(cfg)?;
    Ok((child, client, yaml))
}

/// The admin kubeconfig with the chart's controller ServiceAccount token instead of the admin's.
async fn controller_kubeconfig(admin: &kube::Client, admin_yaml: &str) -> anyhow::Result<String> {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}}))?;
    let token = sas
        .create_token_request("k8s-janus-controller", &PostParams::default(), &tr)
        .await?
        .status
        .context("TokenRequest without status")?
        .token;
    let mut kc: serde_json::Value = yaml_serde::from_str(admin_yaml)?;
    let users = kc
        .get_mut("users")
        .and_then(|u| u.as_array_mut())
        .context("kubeconfig without users")?;
    for u in users {
        if let Some(user) = u.get_mut("user").and_then(|u| u.as_object_mut()) {
            user.insert("token".into(), json!(token));
        }
    }
    Ok(yaml_serde::to_string(&kc)?)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round()
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

fn failover_figures(r: &failover::Report) -> Vec<Figure> {
    let lease_plus_one = CHART_LEASE + Duration::from_secs(1);
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    let mut out = vec![
        Figure {
            part: "failover",
            figure: "SIGKILL of the leader → a request approved after it is Active (the standby reconciles; target: lease + 1 s)".into(),
            unit: "s",
            value: seconds(r.kill.first_reconcile),
            target: format!("≤ {}", lease_plus_one.as_secs()),
            pass: r.kill.first_reconcile <= lease_plus_one,
        },
        Figure {
            part: "failover",
            figure: "SIGKILL of the leader → the standby holds the Lease".into(),
            unit: "s",
            value: seconds(r.kill.lease_taken),
            target: format!("≤ {}", lease_plus_one.as_secs()),
            pass: r.kill.lease_taken <= lease_plus_one,
        },
        Figure {
            part: "failover",
            figure: format!(
                "SIGKILL: requests that expired while nobody led ({} of {}) cleaned up after the new leader took the Lease, max",
                r.kill.expired_before_takeover,
                r.kill.cleanup_lags.len()
            ),
            unit: "ms",
            value: ms(max(&r.kill.cleanup_lags)),
            target: "≤ 1000".into(),
            pass: !r.kill.cleanup_lags.is_empty() && max(&r.kill.cleanup_lags) <= Duration::from_secs(1),
        },
        Figure {
            part: "failover",
            figure: "SIGTERM of the leader (rolling update) → the standby holds the Lease".into(),
            unit: "ms",
            value: ms(r.term.lease_taken),
            target: "< 1000".into(),
            pass: r.term.lease_taken < Duration::from_secs(1),
        },
        Figure {
            part: "failover",
            figure: "SIGTERM of the leader → a request approved after it is Active".into(),
            unit: "ms",
            value: ms(r.term.first_reconcile),
            target: "< 1000".into(),
            pass: r.term.first_reconcile < Duration::from_secs(1),
        },
        Figure {
            part: "failover",
            figure: "SIGTERM: requests expiring at the handover cleaned up after max(expiresAt, new leader), max"
                .into(),
            unit: "ms",
            value: ms(max(&r.term.cleanup_lags)),
            target: "≤ 1000".into(),
            pass: !r.term.cleanup_lags.is_empty() && max(&r.term.cleanup_lags) <= Duration::from_secs(1),
        },
    ];
    for o in [&r.kill, &r.term] {
        let tag = match o.stop {
            failover::Stop::Kill => "SIGKILL",
            failover::Stop::Term => "SIGTERM",
        };
        for (what, list) in [
            ("requests lost", &o.lost),
            ("objects or tokens created twice", &o.doubled),
            ("credentials of expired requests left", &o.not_cleaned),
        ] {
            out.push(Figure {
                part: "failover",
                figure: format!("{tag}: {what}"),
                unit: "count",
                value: list.len() as f64,
                target: "= 0".into(),
                pass: list.is_empty(),
            });
        }
    }
    out
}

async fn failover(args: FailoverArgs) -> anyhow::Result<()> {
    let (work, bin_dir) = Work::create("failover", args.keep, &args.bin_dir)?;
    let (_kubesim, admin, admin_yaml) = start_kubesim(&bin_dir, &work.dir).await?;
    let kubeconfig = work.dir.join("controller.kubeconfig");
    write_private(&kubeconfig, &controller_kubeconfig(&admin, &admin_yaml).await?)?;
    let config = work.dir.join("janus.yaml");
    std::fs::write(
        &config,
        format!(
            "namespace: {NS}\nadminEmails: [admin@example.com]\nminTtlSeconds: 1\nexcludedNamespaces: [kube-system]\nretentionSeconds: 0\n"
        ),
    )?;
    let setup = failover::Setup {
        admin,
        janus: bin_dir.join("janus"),
        config,
        kubeconfig,
        logs: work.dir.clone(),
        namespace: NS.into(),
        target_namespaces: vec!["team-a".into(), "team-b".into()],
        batch: args.requests,
        lease_duration: CHART_LEASE,
    };
    let report = failover::run(setup).await?;
    for o in [&report.kill, &report.term] {
        eprintln!(
            "{:?}: old leader {}; lease taken after {:?}; first/all reconciled after {:?}/{:?}; cleanup lags {:?}",
            o.stop, o.exit, o.lease_taken, o.first_reconcile, o.all_reconciled, o.cleanup_lags
        );
        for problem in o.lost.iter().chain(&o.doubled).chain(&o.not_cleaned) {
            eprintln!("  {problem}");
        }
    }
    let figures = failover_figures(&report);
    write_figures(&args.out, &figures)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().part {
        Part::Failover(args) => failover(args).await,
        Part::WebReplicas(args) => replicas::run(args).await,
        Part::Fleet(args) => fleet::run(args).await,
        Part::TerminalCost(args) => terminal::run(args).await,
    }
}
