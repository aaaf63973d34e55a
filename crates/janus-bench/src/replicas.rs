//! The `web-replicas` part: two `janus web` processes with the chart's configuration on one
//! PostgreSQL (scripts/pg-throwaway.sh), one `janus controller`, kubesim `serve`. Three scenarios:
//! 500 concurrent users loading pages and the API through `oha`; 2,000 terminal sessions across both
//! replicas cut by revokes; one replica SIGKILLed while decisions are being made.

mod farm;

pub(crate) use farm::write_private;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::{Figure, Work, rss_kib};
use farm::{Decisions, Pair, Session, Terminal, Web, WebSpec};

const PART: &str = "web-replicas";

/// Flags of the part.
#[derive(clap::Args)]
pub struct Args {
    /// Directory with the release binaries `janus` and `kubesim`.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where to write the figures (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Keep the work directory (logs, kubeconfigs, oha reports) instead of removing it.
    #[arg(long)]
    keep: bool,
    /// The oha binary (scripts/install-bench-tools.sh installs it).
    #[arg(long, default_value = ".tools/bin/oha", env = "BENCH_OHA")]
    oha: PathBuf,
    /// Local accounts (engineers) created for the run.
    #[arg(long, default_value_t = 250, env = "BENCH_REPLICAS_USERS")]
    users: usize,
    /// Concurrent users of the load (connections, split over both replicas and the mixes).
    #[arg(long, default_value_t = 500, env = "BENCH_REPLICAS_CONCURRENCY")]
    concurrency: usize,
    /// Requests per second each concurrent user makes (a person with the page open and clicking).
    #[arg(long, default_value_t = 1.0, env = "BENCH_REPLICAS_RATE")]
    rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 20, env = "BENCH_REPLICAS_SECONDS")]
    seconds: u64,
    /// oha processes per mix and replica, each with another user's session (oha sends one header set).
    #[arg(long, default_value_t = 2, env = "BENCH_REPLICAS_OHA_PER_MIX")]
    oha_per_mix: usize,
    /// Terminal sessions across both replicas.
    #[arg(long, default_value_t = 2000, env = "BENCH_REPLICAS_SESSIONS")]
    sessions: usize,
    /// Decision workers (a requester creating, an admin approving) while one replica is killed.
    #[arg(long, default_value_t = 40, env = "BENCH_REPLICAS_DECIDERS")]
    deciders: usize,
}

/// One traffic mix of the load: what a share of the users ask for.
struct Mix {
    name: &'static str,
    label: &'static str,
    method: &'static str,
    path: &'static str,
    /// Share of the concurrent users.
    share: f64,
    /// Whether an admin's session makes the calls.
    admin: bool,
    /// The answer that counts as success.
    ok: u16,
}

const MIXES: [Mix; 4] = [
    Mix {
        name: "dashboard",
        label: "engineers' dashboard page (GET /requests, HTML)",
        method: "GET",
        path: "/requests",
        share: 0.4,
        admin: false,
        ok: 200,
    },
    Mix {
        name: "admin",
        label: "admins' dashboard page (GET /admin, HTML, every pending request)",
        method: "GET",
        path: "/admin",
        share: 0.05,
        admin: true,
        ok: 200,
    },
    Mix {
        name: "api-read",
        label: "API read (GET /api/v1/requests)",
        method: "GET",
        path: "/api/v1/requests",
        share: 0.45,
        admin: false,
        ok: 200,
    },
    Mix {
        name: "api-write",
        label: "API write (POST /api/v1/requests with the CSRF token: a new request)",
        method: "POST",
        path: "/api/v1/requests",
        share: 0.1,
        admin: false,
        ok: 201,
    },
];

/// What oha reported for one process.
struct OhaRun {
    mix: usize,
    /// Every answered call's latency (from its scheduled start: `--latency-correction`), read from
    /// the process's `--db-url` database.
    latencies: Vec<Duration>,
    requests: u64,
    errors: u64,
    rps: f64,
}

/// The latency of every call oha answered, from the database `--db-url` wrote (oha's `duration`
/// column, which counts from the scheduled start under `--latency-correction`).
async fn oha_latencies(db: &std::path::Path) -> anyhow::Result<Vec<Duration>> {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions as _, Row as _};
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("oha's database {}", db.display()))?;
    let rows = sqlx::query("SELECT duration FROM oha")
        .fetch_all(&mut conn)
        .await
        .with_context(|| format!("oha's database {}", db.display()))?;
    rows.iter()
        .map(|r| {
            let s: f64 = r.try_get(0)?;
            Duration::try_from_secs_f64(s).with_context(|| format!("a latency of {s} s in {}", db.display()))
        })
        .collect()
}

/// A mix's p99 and slowest call over every call of all its oha processes, and how many calls that is.
/// (oha's own percentiles are per process: the worst of those is a writer's slowest call.)
fn mix_latency(runs: &[&OhaRun]) -> (Duration, Duration, usize) {
    let mut all: Vec<Duration> = runs.iter().flat_map(|r| r.latencies.iter().copied()).collect();
    all.sort();
    (
        percentile(&all, 0.99),
        all.last().copied().unwrap_or_default(),
        all.len(),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// A throwaway PostgreSQL (scripts/pg-throwaway.sh), stopped and removed on drop.
struct Pg {
    dir: String,
    url: String,
}

impl Pg {
    fn start() -> anyhow::Result<Pg> {
        let out = std::process::Command::new(pg_script())
            .arg("start")
            .output()
            .context("cannot run scripts/pg-throwaway.sh")?;
        if !out.status.success() {
            bail!("pg-throwaway.sh start: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
                .with_context(|| format!("pg-throwaway.sh said no {k}"))
        };
        // The guard exists as soon as the directory is known, so that a missing URL stops the server.
        let mut pg = Pg {
            dir: get("PG_THROWAWAY_DIR")?,
            url: String::new(),
        };
        pg.url = get("JANUS_TEST_POSTGRES_URL")?;
        Ok(pg)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = std::process::Command::new(pg_script())
            .args(["stop", &self.dir])
            .output();
    }
}

fn pg_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh")
}

/// Runs the part. SIGTERM (what scripts/bench.sh sends the part's process group on its timeout) or
/// SIGINT ends it with an error instead of killing the process, so that the part's destructors run:
/// above all the throwaway PostgreSQL's, which pg_ctl started in a session of its own where the
/// group's signal does not reach it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::select! {
        r = run_part(args) => r,
        _ = term.recv() => bail!("stopped by SIGTERM"),
        _ = int.recv() => bail!("stopped by SIGINT"),
    }
}

async fn run_part(args: Args) -> anyhow::Result<()> {
    if args.users < 8 || args.concurrency == 0 || args.sessions == 0 || args.oha_per_mix == 0 {
        bail!("--users must be at least 8; --concurrency, --sessions and --oha-per-mix at least 1");
    }
    let oha = std::fs::canonicalize(&args.oha)
        .with_context(|| format!("no oha at {} (run scripts/install-bench-tools.sh)", args.oha.display()))?;
    let (work, bin_dir) = Work::create("replicas", args.keep, &args.bin_dir)?;
    let pg = Pg::start()?;
    let (_kubesim, admin_client, admin_yaml) = crate::start_kubesim(&bin_dir, &work.dir).await?;
    let cluster = crate::admin_cluster(&work.dir, &admin_yaml).await?;
    // The chart's RBAC for the web too, and the workloads the terminals open shells in.
    cluster.prepare_janus().await?;
    let controller_kc = work.dir.join("controller.kubeconfig");
    farm::write_private(
        &controller_kc,
        &crate::controller_kubeconfig(&admin_client, &admin_yaml).await?,
    )?;
    let web_kc = work.dir.join("web.kubeconfig");
    let web_token = cluster.sa_token(farm::NS, "k8s-janus-web").await?;
    farm::write_private(&web_kc, &cluster.kubeconfig_for_token(&web_token)?)?;

    // The chart's configuration; the per-user request limits are raised so the write mix and the
    // decision load (a few users creating thousands of requests) are not refused by them, and the
    // terminal limits fit the sessions asked for (the chart's 4 per user and 1,000 per replica fit
    // the defaults).
    let per_replica = args.sessions.div_ceil(2);
    let terminal_users = args.users - 4;
    let per_user = per_replica.div_ceil(terminal_users).max(4);
    let config = work.dir.join("janus.yaml");
    std::fs::write(
        &config,
        farm::chart_config(
            &pg.url,
            &json!({
                "maxOpenRequestsPerUser": 1_000_000,
                "maxRequestsPerHour": 1_000_000,
                "maxTerminalsPerUser": per_user,
                "maxTerminalsPerReplica": per_replica.max(1000),
            }),
        )?,
    )?;
    let janus = bin_dir.join("janus");
    let _controller = farm::start_controller(&janus, &config, &controller_kc, &work.dir).await?;
    let spec = WebSpec {
        janus,
        config,
        kubeconfig: web_kc,
        logs: work.dir.clone(),
        session_key: format!("bench-session-key-{}-{}", std::process::id(), rand_suffix()),
        admin_password: format!("bench-admin-{}", rand_suffix()),
    };
    let a = Web::start(&spec, "web-0").await?;
    let mut b = Web::start(&spec, "web-1").await?;
    let webs = [&a, &b];
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let admin = Session::login(&http, &a, "admin", &spec.admin_password).await?;

    // Users: the first four are admins (approvers, the admin mix), the others engineers. Each logs in
    // on "its" replica (even on web-0, odd on web-1), as a load balancer with sticky sessions would.
    let started = Instant::now();
    let made: Vec<anyhow::Result<()>> = futures::stream::iter(0..args.users)
        .map(|i| {
            let s = admin.on(webs[i % 2]);
            async move {
                s.create_user(&format!("u{i:04}"), &format!("u{i:04}@example.com"), i < 4)
                    .await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    made.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let logins: Vec<anyhow::Result<Session>> = futures::stream::iter(0..args.users)
        .map(|i| {
            let http = http.clone();
            let web = webs[i % 2];
            async move { Session::login(&http, web, &format!("u{i:04}"), farm::PASSWORD).await }
        })
        .buffered(8)
        .collect()
        .await;
    let users: Vec<Session> = logins.into_iter().collect::<anyhow::Result<_>>()?;
    eprintln!(
        "{} users created and logged in on two replicas in {:?}",
        users.len(),
        started.elapsed()
    );
    let (admins, engineers) = users.split_at(4);

    let mut figures = Vec::new();
    load(&args, &oha, &work, webs, admins, engineers, &mut figures).await?;
    // The kill before the terminals: closing 2,000 sessions at once leaves kubesim (the stand-in API
    // server) unresponsive for tens of seconds (docs/benchmarks.md), which would fail every decision.
    kill(&args, &pg, &a, &mut b, admins, engineers, &mut figures).await?;
    // web-1 comes back, as its pod would, for the terminals.
    let b = Web::start(&spec, "web-1").await?;
    terminals(&args, &a, &b, &admin, engineers, &mut figures).await?;

    crate::write_figures(&args.out, &figures)?;
    Ok(())
}

fn rand_suffix() -> String {
    format!("{:x}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

/// 500 concurrent users through oha: each mix on both replicas, `oha_per_mix` processes per mix and
/// replica, each with its own user's session cookie (and CSRF token for the writes), open-loop at
/// `rate` requests per second per user.
async fn load(
    args: &Args,
    oha: &std::path::Path,
    work: &Work,
    webs: [&Web; 2],
    admins: &[Session],
    engineers: &[Session],
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let body = json!({"cluster": "central", "namespaces": [farm::TARGET_NS], "ttlSeconds": 3600, "reason": "load"})
        .to_string();
    let mut children = Vec::new();
    let mut user = 0usize;
    for (m, mix) in MIXES.iter().enumerate() {
        let conns = ((args.concurrency as f64 * mix.share).round() as usize).max(1);
        // A person creates one request at a time: each writer is an oha process of its own with one
        // connection (the per-requester lock serialises one person's creates, and oha sends one
        // session's cookie per process). Readers share processes, `oha_per_mix` per replica.
        let writer = mix.method == "POST";
        let procs = if writer { conns } else { 2 * args.oha_per_mix };
        for p in 0..procs {
            if writer && p > 0 {
                // Writers are one user each at one call a second, which oha schedules at its own start:
                // started together they would all write in the same millisecond every second, a herd
                // no set of people makes. Their starts are spread over the second, as the readers'
                // calls are (oha spreads a process's calls evenly).
                tokio::time::sleep(Duration::from_secs(1) / procs as u32).await;
            }
            let c = (conns / procs + usize::from(p < conns % procs)).max(1);
            let web = webs[p % 2];
            let s = if mix.admin {
                admins[p % admins.len()].on(web)
            } else {
                user += 1;
                engineers[user % engineers.len()].on(web)
            };
            let out = work.dir.join(format!("oha-{}-{p}.json", mix.name));
            let db = work.dir.join(format!("oha-{}-{p}.sqlite", mix.name));
            // oha appends to an existing database: a kept work directory's rows must not count again.
            let _ = std::fs::remove_file(&db);
            let mut cmd = tokio::process::Command::new(oha);
            if writer {
                cmd.args(["--worker-threads", "1"]);
            }
            // -w: the calls still running at the deadline are waited for, not counted as errors.
            // --db-url: every call's latency, so a mix's percentiles are taken over all its calls
            // (oha's own are per process: a writer's 20 calls make its "p99" its maximum).
            cmd.args(["--no-tui", "--output-format", "json", "--latency-correction", "-w"])
                .arg("--db-url")
                .arg(&db)
                .args(["-z", &format!("{}s", args.seconds)])
                .args(["-c", &c.to_string()])
                .args(["-q", &format!("{}", (c as f64 * args.rate).max(1.0))])
                .args(["-H", &format!("cookie: {}", s.cookie)])
                .args(["-m", mix.method]);
            if mix.method == "POST" {
                cmd.args(["-H", &format!("x-csrf-token: {}", s.csrf)])
                    .args(["-T", "application/json", "-d", &body]);
            }
            cmd.arg(format!("{}{}", s.base, mix.path))
                .stdout(std::fs::File::create(&out)?)
                .stderr(std::fs::File::create(
                    work.dir.join(format!("oha-{}-{p}.log", mix.name)),
                )?)
                .kill_on_drop(true);
            children.push((m, out, db, cmd.spawn().context("cannot run oha")?));
        }
    }
    let mut runs = Vec::new();
    for (m, out, db, mut child) in children {
        let status = tokio::time::timeout(Duration::from_secs(args.seconds + 60), child.wait())
            .await
            .context("oha did not finish")??;
        if !status.success() {
            bail!("oha ({}) failed: {status}", MIXES[m].name);
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&out)?)
            .with_context(|| format!("oha's report {}", out.display()))?;
        let codes = v["statusCodeDistribution"].as_object().cloned().unwrap_or_default();
        let total_codes: u64 = codes.values().filter_map(Value::as_u64).sum();
        let ok = codes
            .get(&MIXES[m].ok.to_string())
            .and_then(Value::as_u64)
            .unwrap_or_default();
        let failed: u64 = v["errorDistribution"]
            .as_object()
            .map(|e| e.values().filter_map(Value::as_u64).sum())
            .unwrap_or_default();
        let latencies = oha_latencies(&db).await?;
        if latencies.is_empty() {
            bail!(
                "oha ({}) got no answer at all: {}",
                MIXES[m].name,
                v["errorDistribution"]
            );
        }
        runs.push(OhaRun {
            mix: m,
            latencies,
            requests: total_codes + failed,
            errors: total_codes - ok + failed,
            rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or_default(),
        });
        if total_codes != ok || failed > 0 {
            eprintln!(
                "oha {}: status codes {codes:?}, errors {}",
                MIXES[m].name, v["errorDistribution"]
            );
        }
    }
    let total_rps: f64 = runs.iter().map(|r| r.rps).sum();
    let total_requests: u64 = runs.iter().map(|r| r.requests).sum();
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    eprintln!(
        "load: {} concurrent users, {total_requests} requests, {total_rps:.0} req/s, {errors} errors",
        args.concurrency
    );
    for (m, mix) in MIXES.iter().enumerate() {
        let mine: Vec<&OhaRun> = runs.iter().filter(|r| r.mix == m).collect();
        let (p99, max, answered) = mix_latency(&mine);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (p99, max) = (ms(p99), ms(max));
        let n: u64 = mine.iter().map(|r| r.requests).sum();
        eprintln!("  {}: {n} requests, p99 {p99:.1} ms, max {max:.1} ms", mix.name);
        figures.push(Figure {
            part: PART,
            figure: format!(
                "{} concurrent users ({} req/s each, both replicas, {} s): {}, p99",
                args.concurrency, args.rate, args.seconds, mix.label
            ),
            unit: "ms",
            value: (p99 * 10.0).round() / 10.0,
            target: "< 100".into(),
            pass: p99 < 100.0,
        });
        figures.push(Figure {
            part: PART,
            figure: format!(
                "{} concurrent users: {}, slowest of its {} answered calls",
                args.concurrency, mix.label, answered
            ),
            unit: "ms",
            value: (max * 10.0).round() / 10.0,
            target: "—".into(),
            pass: true,
        });
    }
    figures.push(Figure {
        part: PART,
        figure: format!(
            "{} concurrent users, all mixes ({total_requests} requests): answers other than the expected 200/201, and failed connections",
            args.concurrency
        ),
        unit: "count",
        value: errors as f64,
        target: "= 0".into(),
        pass: errors == 0,
    });
    Ok(())
}

/// 2,000 terminal sessions across both replicas (each engineer one Active request, shells on both
/// replicas), the web's memory per idle session, then every request revoked at once: until every
/// session on both replicas is closed.
async fn terminals(
    args: &Args,
    a: &Web,
    b: &Web,
    admin: &Session,
    engineers: &[Session],
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let per_user = args.sessions.div_ceil(engineers.len());
    let holders = args.sessions.div_ceil(per_user);
    let holders = &engineers[..holders];
    let created: Vec<anyhow::Result<String>> = futures::stream::iter(holders)
        .map(|u| {
            // Through web-0: the users' own replica may be the web-1 that was killed and restarted.
            let u = u.on(a);
            async move { u.create_request("terminal sessions").await }
        })
        .buffered(16)
        .collect()
        .await;
    let names: Vec<String> = created.into_iter().collect::<anyhow::Result<_>>()?;
    let approvals: Vec<anyhow::Result<()>> = futures::stream::iter(names.iter().enumerate())
        .map(|(i, n)| {
            let s = admin.on(if i % 2 == 0 { a } else { b });
            async move {
                let st = s.decide(n, "approve", &json!({})).await?;
                if !st.is_success() {
                    bail!("approve {n}: {st}");
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    approvals.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    admin.wait_phase(&names, "Active", Duration::from_secs(60)).await?;

    let (pa, pb) = (a.pid().context("web-0 exited")?, b.pid().context("web-1 exited")?);
    let before = rss_kib(pa)? + rss_kib(pb)?;
    let started = Instant::now();
    // Session k: its holder k / per_user, on web-0 when k is even.
    let opened: Vec<(usize, anyhow::Result<Terminal>)> = futures::stream::iter(0..args.sessions)
        .map(|k| {
            let h = k / per_user;
            let s = holders[h].on(if k % 2 == 0 { a } else { b });
            let name = names[h].clone();
            async move { (k, Terminal::open(&s, &name).await) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut open = Vec::new();
    let mut failures = Vec::new();
    for (k, r) in opened {
        match r {
            Ok(t) => open.push((k, t)),
            Err(e) => failures.push(format!("session {k}: {e:#}")),
        }
    }
    eprintln!(
        "{} of {} terminal sessions open in {:?}",
        open.len(),
        args.sessions,
        started.elapsed()
    );
    for f in failures.iter().take(5) {
        eprintln!("  {f}");
    }
    figures.push(Figure {
        part: PART,
        figure: format!(
            "terminal sessions open at once across both replicas ({} engineers, one Active request each)",
            holders.len()
        ),
        unit: "count",
        value: open.len() as f64,
        target: format!("= {}", args.sessions),
        pass: open.len() == args.sessions,
    });
    // Idle a moment so the sessions' buffers settle, then measure both webs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(pa)? + rss_kib(pb)?;
    let per_session = after.saturating_sub(before) as f64 / open.len().max(1) as f64;
    eprintln!("web RSS (both) {before} KiB → {after} KiB: {per_session:.0} KiB per idle session");
    figures.push(Figure {
        part: PART,
        figure: format!(
            "web memory per idle terminal session (RSS growth of both replicas / {} sessions)",
            open.len()
        ),
        unit: "KiB",
        value: per_session.round(),
        target: "< 256".into(),
        pass: !open.is_empty() && per_session < 256.0,
    });

    // Every request revoked at once, through both replicas; each session's close is timed from the
    // moment its request's revoke was sent.
    let waits: Vec<_> = open
        .into_iter()
        .map(|(k, t)| {
            let h = k / per_user;
            tokio::spawn(async move {
                let r = t.closed(Duration::from_secs(30)).await;
                (h, k % 2, Instant::now(), r)
            })
        })
        .collect();
    let sent: Vec<(usize, Instant, anyhow::Result<reqwest::StatusCode>)> =
        futures::stream::iter(names.iter().enumerate())
            .map(|(h, n)| {
                let s = admin.on(if h % 2 == 0 { b } else { a });
                async move {
                    let at = Instant::now();
                    let r = s.decide(n, "revoke", &json!({"reason": "bench"})).await;
                    (h, at, r.map_err(anyhow::Error::from))
                }
            })
            .buffer_unordered(names.len().max(1))
            .collect()
            .await;
    let mut revoked_at = vec![None; names.len()];
    let mut revoke_failed = 0usize;
    for (h, at, r) in sent {
        match r {
            Ok(s) if s.is_success() => revoked_at[h] = Some(at),
            Ok(s) => {
                revoke_failed += 1;
                eprintln!("revoke {}: {s}", names[h]);
            }
            Err(e) => {
                revoke_failed += 1;
                eprintln!("revoke {}: {e:#}", names[h]);
            }
        }
    }
    let mut lags = Vec::new();
    let mut still_open = 0usize;
    // Closed for another reason (socket error, server gone...) or before the revoke was even sent:
    // not a cut by the revoke, so neither counted as a lag nor as a success.
    let mut not_cut = 0usize;
    let mut closed_per_replica = [0usize; 2];
    for w in waits {
        let (h, replica, at, r) = w.await?;
        match (r, revoked_at[h]) {
            (Ok(reason), Some(sent)) if reason.contains("revoked") && at >= sent => {
                lags.push(at.duration_since(sent));
                closed_per_replica[replica] += 1;
            }
            (Ok(reason), Some(sent)) => {
                not_cut += 1;
                if not_cut <= 5 {
                    let when = if at < sent {
                        "before its revoke was sent"
                    } else {
                        "after its revoke"
                    };
                    eprintln!("  session of {} closed {when}, not by it: {reason}", names[h]);
                }
            }
            // Its revoke failed (counted above): whatever happened to the session, it was not cut.
            (Ok(_), None) => not_cut += 1,
            (Err(e), _) => {
                still_open += 1;
                if still_open <= 5 {
                    eprintln!("  {e:#}");
                }
            }
        }
    }
    lags.sort();
    let max = lags.last().copied().unwrap_or_default();
    eprintln!(
        "revoke of {} requests ({revoke_failed} revokes failed): {} + {} sessions cut on web-0 + web-1, {not_cut} closed but not by their revoke, {still_open} still open; lag p50 {:?} p99 {:?} max {max:?}",
        names.len(),
        closed_per_replica[0],
        closed_per_replica[1],
        percentile(&lags, 0.5),
        percentile(&lags, 0.99)
    );
    figures.push(Figure {
        part: PART,
        figure: format!(
            "{} requests revoked at once ({} sessions on web-0, {} on web-1) → every session closed, max after its revoke was sent",
            names.len(),
            closed_per_replica[0],
            closed_per_replica[1]
        ),
        unit: "ms",
        value: crate::ms(max),
        target: "< 1000".into(),
        pass: revoke_failed == 0
            && still_open == 0
            && not_cut == 0
            && !lags.is_empty()
            && max < Duration::from_secs(1),
    });
    figures.push(Figure {
        part: PART,
        figure: "terminal sessions not cut by their revoke (revoke failed, closed before it was sent or for another reason, or still open)".into(),
        unit: "count",
        value: (not_cut + still_open) as f64,
        target: "= 0".into(),
        pass: revoke_failed == 0 && not_cut == 0 && still_open == 0,
    });
    Ok(())
}

/// Decision workers on both replicas; web-1 SIGKILLed a third into the run, its workers going on
/// with the same sessions on web-0. Afterwards: every decision answered 2xx took effect and has its
/// audit events in PostgreSQL, and every session of web-1's users works on web-0.
async fn kill(
    args: &Args,
    pg: &Pg,
    a: &Web,
    b: &mut Web,
    admins: &[Session],
    engineers: &[Session],
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let run_for = Duration::from_secs(12);
    let pairs: Vec<Pair> = (0..args.deciders)
        .map(|i| {
            let web: &Web = if i % 2 == 0 { a } else { b };
            Pair {
                user: engineers[i % engineers.len()].on(web),
                admin: admins[i % admins.len()].on(web),
            }
        })
        .collect();
    let stop = Instant::now() + run_for;
    let (d, killed_at): (Decisions, anyhow::Result<Instant>) =
        tokio::join!(farm::decision_load(pairs, a, stop), async {
            tokio::time::sleep(run_for / 3).await;
            b.kill().await?;
            Ok(Instant::now())
        });
    let killed_at = killed_at?;
    eprintln!(
        "kill: {} created, {} approved (2xx), {} refused, {} calls unanswered (retried on web-0); web-1 killed {:?} before the end",
        d.created.len(),
        d.approved.len(),
        d.refused.len(),
        d.unanswered,
        stop.saturating_duration_since(killed_at)
    );
    for r in d.refused.iter().take(5) {
        eprintln!("  {r}");
    }
    let survivor = admins[0].on(a);
    let not_active = match survivor
        .wait_phase(&d.approved, "Active", Duration::from_secs(30))
        .await
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("  {e:#}");
            count_not_active(&survivor, &d.approved).await?
        }
    };
    let missing = farm::audit_missing(&pg.url, &d, Duration::from_secs(30)).await?;
    for m in missing.iter().take(5) {
        eprintln!("  audit event missing: {m}");
    }
    let mut refused_sessions = 0usize;
    for (i, u) in engineers.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let r = u.on(a).get("/api/v1/session").await;
        if !r.is_ok_and(|r| r.status().is_success()) {
            refused_sessions += 1;
            eprintln!("  session of u{:04} (web-1) refused on web-0", i + 4);
        }
    }
    let web1_users = engineers.len() / 2;
    figures.push(Figure {
        part: PART,
        figure: format!(
            "SIGKILL of one replica mid-load: decisions answered 2xx that did not take effect ({} approvals by {} workers)",
            d.approved.len(),
            args.deciders
        ),
        unit: "count",
        value: not_active as f64,
        target: "= 0".into(),
        pass: not_active == 0 && !d.approved.is_empty(),
    });
    figures.push(Figure {
        part: PART,
        figure: format!(
            "SIGKILL of one replica mid-load: audit events lost ({} expected in PostgreSQL: request.created and request.approved of every 2xx answer)",
            d.created.len() + d.approved.len()
        ),
        unit: "count",
        value: missing.len() as f64,
        target: "= 0".into(),
        pass: missing.is_empty() && !d.approved.is_empty(),
    });
    figures.push(Figure {
        part: PART,
        figure: format!(
            "SIGKILL of one replica: calls answered with an error on either replica ({} unanswered by the killed one, retried on the other)",
            d.unanswered
        ),
        unit: "count",
        value: d.refused.len() as f64,
        target: "= 0".into(),
        pass: d.refused.is_empty(),
    });
    figures.push(Figure {
        part: PART,
        figure: format!(
            "SIGKILL of one replica: its users ({web1_users}) whose session cookie is refused by the other"
        ),
        unit: "count",
        value: refused_sessions as f64,
        target: "= 0".into(),
        pass: refused_sessions == 0,
    });
    Ok(())
}

async fn count_not_active(s: &Session, names: &[String]) -> anyhow::Result<usize> {
    let mut n = 0;
    for name in names {
        if s.phase(name).await? != "Active" {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 50 writers of 20 calls each, one call slow: the mix's p99 is the calls' p99, not that call (which
    /// the worst of the per-process p99s was, 20 calls making a process's p99 its maximum).
    #[test]
    fn a_mix_p99_is_taken_over_all_its_calls() {
        let ms = Duration::from_millis;
        let runs: Vec<OhaRun> = (0..50)
            .map(|p| OhaRun {
                mix: 3,
                latencies: (0..20)
                    .map(|i| if p == 7 && i == 3 { ms(500) } else { ms(20) })
                    .collect(),
                requests: 20,
                errors: 0,
                rps: 1.0,
            })
            .collect();
        let mine: Vec<&OhaRun> = runs.iter().collect();
        assert_eq!(mix_latency(&mine), (ms(20), ms(500), 1000));
        assert_eq!(mix_latency(&[]), (Duration::ZERO, Duration::ZERO, 0));
    }
}
