//! Terminal cost (issue 19, part `terminal-cost`): the CPU one GiB of shell output costs through a janus
//! terminal against a straight exec to the same API server in the same run, and the `janus web`
//! process's memory per idle terminal session.
//!
//! Everything runs as in production, as separate processes: kubesim `serve` (the API server; its exec
//! runs a real shell in a PTY), `janus controller` and `janus web` from `--bin-dir`. This process is
//! the client of both paths: a WebSocket client of the web's `/ws/terminal/{request}` (what the browser
//! and `janus shell` use) and, for the straight path, a kube-rs `pods/exec` client with the same
//! parameters the web uses for its own exec (a tty, 64 KiB stream buffers). kube-rs rather than
//! `kubectl exec -t`: kubectl needs a local terminal, whose PTY would add a third copy of every byte to
//! the straight path only, and it would compare two different client libraries rather than what
//! janus adds.
//!
//! CPU is read from `/proc/<pid>/stat` (utime + stime) of the processes that carry the bytes: kubesim
//! and this client on both paths, `janus web` on the janus path. The shell's own processes (`head`,
//! `tr`) do the same work on both paths and are left out, so the added share is not diluted by them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{SinkExt as _, StreamExt as _};
use janus_api::AccessRequest;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::{Figure, NS, Work, cpu_seconds, rss_kib, write_private};

/// Settings of the `terminal-cost` part.
#[derive(clap::Args)]
pub struct Args {
    /// Directory with the release binaries `janus` and `kubesim`.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Where to write the figures (JSON).
    #[arg(long)]
    pub out: PathBuf,
    /// MiB of shell output through each path (split over the rounds).
    #[arg(long, default_value_t = 1024, env = "BENCH_TERMINAL_MIB")]
    pub mib: u64,
    /// Rounds; each sends its share through janus and straight, the order alternating.
    #[arg(long, default_value_t = 4, env = "BENCH_TERMINAL_ROUNDS")]
    pub rounds: u64,
    /// Idle terminal sessions opened at once for the memory figure.
    #[arg(long, default_value_t = 500, env = "BENCH_TERMINAL_SESSIONS")]
    pub sessions: usize,
    /// Keep the work directory (logs, kubeconfigs, database) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

const PART: &str = "terminal-cost";
/// The bootstrap admin, who is also the requester of the benchmark's request.
const USER: &str = "admin";
const EMAIL: &str = "admin@example.com";
/// A second admin approves: nobody approves their own request.
const APPROVER: &str = "approver@example.com";
/// The request the terminals run under.
const REQUEST: &str = "terminal-cost";

/// The pod the shells run in (kubesim runs its exec as local processes).
const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team-a}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: "busybox:1.36", command: [sleep, "86400"]}
"#;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A free port on the loopback (closed again: the web binds it next).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The logged-in browser: its session cookie and CSRF token.
struct Browser {
    host: String,
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn login(host: &str, password: &str) -> anyhow::Result<Self> {
        let r = reqwest::Client::new()
            .post(format!("http://{host}/api/v1/login"))
            .json(&json!({"username": USER, "password": password}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("login failed: HTTP {}", r.status());
        }
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("login without a session cookie")?
            .to_string();
        let body: Value = r.json().await?;
        let csrf = body["csrfToken"]
            .as_str()
            .context("login without csrfToken")?
            .to_string();
        Ok(Self {
            host: host.to_string(),
            cookie,
            csrf,
        })
    }

    /// Opens a terminal on the request's pod as the browser does, and waits for `connected`.
    async fn open(&self) -> anyhow::Result<Ws> {
        let url = format!(
            "ws://{}/ws/terminal/{REQUEST}?namespace=team-a&pod=app&csrf={}",
            self.host, self.csrf
        );
        let mut req = url.into_client_request()?;
        req.headers_mut().insert("cookie", self.cookie.parse()?);
        req.headers_mut()
            .insert("origin", format!("http://{}", self.host).parse()?);
        // Browsers disable Nagle on WebSockets; so does this client.
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
        let connected = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.contains("\"connected\"") => return Ok(()),
                    Some(Ok(Message::Text(t))) => bail!("the terminal did not connect: {t}"),
                    Some(Ok(_)) => {}
                    other => bail!("the terminal socket ended before connecting: {other:?}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), connected)
            .await
            .context("no `connected` within 30 s")??;
        Ok(ws)
    }
}

/// The shell command of one leg: `bytes` of output, then a marker the echoed command line cannot
/// contain (the shell computes it). `-opost` so the PTY does not expand anything.
fn flood(bytes: u64) -> String {
    format!("stty -opost; head -c {bytes} /dev/zero | tr '\\0' x; echo; echo DONE-$((1+1))\r")
}

const MARK: &[u8] = b"DONE-2";

/// Whether `tail` (the last bytes seen, kept short) now holds the marker.
fn seen_mark(tail: &mut Vec<u8>, data: &[u8]) -> bool {
    tail.extend_from_slice(data);
    if tail.len() > 64 {
        tail.drain(..tail.len() - 64);
    }
    tail.windows(MARK.len()).any(|w| w == MARK)
}

/// One leg's measurements.
#[derive(Default, Clone, Copy)]
struct Leg {
    bytes: u64,
    wall: Duration,
    kubesim: f64,
    web: f64,
    client: f64,
}

impl Leg {
    fn add(&mut self, o: Leg) {
        self.bytes += o.bytes;
        self.wall += o.wall;
        self.kubesim += o.kubesim;
        self.web += o.web;
        self.client += o.client;
    }
}

/// CPU seconds so far of kubesim, the web and this process.
struct Cpu {
    kubesim: String,
    web: String,
}

impl Cpu {
    fn now(&self) -> anyhow::Result<(f64, f64, f64)> {
        Ok((
            cpu_seconds(&self.kubesim)?,
            cpu_seconds(&self.web)?,
            cpu_seconds("self")?,
        ))
    }

    fn since(&self, t0: (f64, f64, f64), started: Instant, bytes: u64) -> anyhow::Result<Leg> {
        let t1 = self.now()?;
        Ok(Leg {
            bytes,
            wall: started.elapsed(),
            kubesim: t1.0 - t0.0,
            web: t1.1 - t0.1,
            client: t1.2 - t0.2,
        })
    }
}

/// Output through a fresh janus terminal session.
async fn through_janus(browser: &Browser, cpu: &Cpu, bytes: u64) -> anyhow::Result<Leg> {
    let mut ws = browser.open().await?;
    let t0 = cpu.now()?;
    let started = Instant::now();
    ws.send(Message::Binary(flood(bytes).into_bytes().into())).await?;
    let mut got = 0u64;
    let mut tail = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                got += b.len() as u64;
                if seen_mark(&mut tail, &b) {
                    break;
                }
            }
            Some(Ok(_)) => {}
            other => bail!("the janus terminal ended mid-output: {other:?}"),
        }
    }
    let leg = cpu.since(t0, started, got)?;
    let _ = ws.close(None).await;
    Ok(leg)
}

/// The same output through a straight exec, as the web makes its own (tty, 64 KiB buffers).
async fn straight(admin: &kube::Client, cpu: &Cpu, bytes: u64) -> anyhow::Result<Leg> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "team-a");
    let ap = AttachParams::interactive_tty()
        .max_stdout_buf_size(64 * 1024)
        .max_stderr_buf_size(64 * 1024)
        .max_stdin_buf_size(64 * 1024);
    // The shell janus opens: bash when present, else sh.
    let shell = "if command -v bash >/dev/null 2>&1; then exec bash -i; else exec sh -i; fi";
    let mut p = pods.exec("app", ["/bin/sh", "-c", shell], &ap).await?;
    let mut stdin = p.stdin().context("exec without stdin")?;
    let mut stdout = p.stdout().context("exec without stdout")?;
    let mut buf = vec![0u8; 64 * 1024];
    let t0 = cpu.now()?;
    let started = Instant::now();
    stdin.write_all(flood(bytes).as_bytes()).await?;
    let mut got = 0u64;
    let mut tail = Vec::new();
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            bail!("the straight exec ended mid-output");
        }
        got += n as u64;
        if seen_mark(&mut tail, &buf[..n]) {
            break;
        }
    }
    let leg = cpu.since(t0, started, got)?;
    drop(stdin);
    drop(stdout);
    p.abort();
    Ok(leg)
}

/// Starts `janus <cmd>` with its log in the work directory.
fn janus(
    bin_dir: &Path,
    work: &Path,
    cmd: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::File::create(work.join(format!("{cmd}.log")))?;
    let mut c = tokio::process::Command::new(bin_dir.join("janus"));
    c.args(["--log-format", "json", cmd])
        .args(args)
        .env("JANUS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().with_context(|| format!("cannot run janus {cmd}"))
}

/// The figures: CPU per GiB on both paths, what janus adds, throughput, and memory per idle session.
fn figures(janus: &Leg, direct: &Leg, sessions: usize, per_session_kib: f64, mib: u64, rounds: u64) -> Vec<Figure> {
    let gib = |l: &Leg| l.bytes as f64 / (1u64 << 30) as f64;
    let per_gib = |cpu: f64, l: &Leg| if l.bytes == 0 { f64::NAN } else { cpu / gib(l) };
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    let janus_cpu = per_gib(janus.kubesim + janus.web + janus.client, janus);
    let direct_cpu = per_gib(direct.kubesim + direct.client, direct);
    let added = (janus_cpu / direct_cpu - 1.0) * 100.0;
    let mbps = |l: &Leg| l.bytes as f64 / l.wall.as_secs_f64().max(1e-9) / 1e6;
    let load = format!("{mib} MiB of `head -c | tr` output per path in {rounds} alternating rounds");
    let info = |figure: String, unit: &'static str, value: f64| Figure {
        part: PART,
        figure,
        unit,
        value: round2(value),
        target: "—".into(),
        pass: value.is_finite(),
    };
    vec![
        info(
            format!("CPU per GiB of terminal output through janus (kubesim + janus web + WebSocket client; {load})"),
            "CPU s/GiB",
            janus_cpu,
        ),
        info(
            format!("of which janus web ({load})"),
            "CPU s/GiB",
            per_gib(janus.web, janus),
        ),
        info(
            format!("of which the WebSocket client ({load})"),
            "CPU s/GiB",
            per_gib(janus.client, janus),
        ),
        info(
            format!("CPU per GiB of the same output by a straight exec (kubesim + kube-rs exec client; {load})"),
            "CPU s/GiB",
            direct_cpu,
        ),
        info(
            format!("of which the kube-rs exec client ({load})"),
            "CPU s/GiB",
            per_gib(direct.client, direct),
        ),
        Figure {
            part: PART,
            figure: format!(
                "CPU janus adds per GiB of terminal output, against the straight exec in the same run ({load})"
            ),
            unit: "%",
            value: (added * 10.0).round() / 10.0,
            target: "< 15".into(),
            pass: added.is_finite() && added < 15.0,
        },
        info(
            format!("terminal output throughput through janus ({load})"),
            "MB/s",
            mbps(janus),
        ),
        info(
            format!("terminal output throughput by the straight exec ({load})"),
            "MB/s",
            mbps(direct),
        ),
        Figure {
            part: PART,
            figure: format!(
                "janus web RSS per idle terminal session ({sessions} sessions open at once, each a shell in kubesim)"
            ),
            unit: "KiB",
            value: per_session_kib.round(),
            target: "< 256".into(),
            pass: per_session_kib.is_finite() && per_session_kib < 256.0,
        },
    ]
}

/// Runs the part.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.mib == 0 || args.rounds == 0 || args.sessions == 0 {
        bail!("--mib, --rounds and --sessions must be at least 1");
    }
    let (work, bin_dir) = Work::create("terminal", args.keep, &args.bin_dir)?;
    let (kubesim, admin, admin_yaml) = crate::start_kubesim(&bin_dir, &work.dir).await?;
    let kubesim_pid = kubesim.id().context("kubesim has exited")?;

    // The web's RBAC and the pod (start_kubesim seeds the controller's side of the chart only).
    let cluster = crate::admin_cluster(&work.dir, &admin_yaml).await?;
    cluster
        .apply_yaml(&janus_testkit::render_chart(&[], &["templates/rbac-web.yaml"])?)
        .await?;
    cluster.apply_yaml(POD).await?;
    cluster
        .wait_pod_running("team-a", "app", Duration::from_secs(30))
        .await?;

    let controller_kc = work.dir.join("controller.kubeconfig");
    write_private(
        &controller_kc,
        &crate::controller_kubeconfig(&admin, &admin_yaml).await?,
    )?;
    let web_kc = work.dir.join("web.kubeconfig");
    let web_token = cluster.sa_token(NS, "k8s-janus-web").await?;
    write_private(&web_kc, &cluster.kubeconfig_for_token(&web_token)?)?;
    let config = work.dir.join("janus.yaml");
    let limit = args.sessions + 10;
    std::fs::write(
        &config,
        format!(
            "namespace: {NS}\nadminEmails: [{EMAIL}, {APPROVER}]\nexcludedNamespaces: [kube-system]\nidleTimeoutSeconds: 0\n\
             web: {{maxTerminalsPerUser: {limit}, maxTerminalsPerReplica: {limit}}}\n\
             database: {{url: \"sqlite://{}\"}}\n",
            work.dir.join("janus.db").display()
        ),
    )?;
    let config_s = config.to_string_lossy().to_string();
    let _controller = janus(
        &bin_dir,
        &work.dir,
        "controller",
        &[
            "--config",
            &config_s,
            "--kubeconfig",
            &controller_kc.to_string_lossy(),
            "--no-leader-election",
        ],
        &[],
    )?;
    let port = free_port()?;
    let host = format!("127.0.0.1:{port}");
    let password = format!(
        "bench-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let web = janus(
        &bin_dir,
        &work.dir,
        "web",
        &[
            "--config",
            &config_s,
            "--kubeconfig",
            &web_kc.to_string_lossy(),
            "--listen",
            &host,
        ],
        &[
            ("JANUS_BOOTSTRAP_ADMIN_PASSWORD", &password),
            ("JANUS_BOOTSTRAP_ADMIN_EMAIL", EMAIL),
        ],
    )?;
    let web_pid = web.id().context("janus web has exited")?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http
        .get(format!("http://{host}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("janus web did not answer /healthz within 30 s (see web.log)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The request: created and approved in the API server, as the web UI would.
    let ars: Api<AccessRequest> = Api::all(admin.clone());
    let ar: AccessRequest = serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": REQUEST},
        "spec": {"requester": EMAIL, "cluster": "central", "namespaces": ["team-a"],
                 "reason": "terminal cost benchmark", "ttlSeconds": 3600}
    }))?;
    ars.create(&PostParams::default(), &ar).await?;
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let approval = json!({"spec": {"approval": {"by": APPROVER, "at": at}}});
    ars.patch(REQUEST, &PatchParams::default(), &Patch::Merge(&approval))
        .await?;
    let started = Instant::now();
    loop {
        let phase = ars.get(REQUEST).await?.status.map(|s| s.phase);
        if phase == Some(janus_api::access_request::Phase::Active) {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the request is not Active within 30 s (phase {phase:?}; see controller.log)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let browser = Browser::login(&host, &password).await?;

    // Memory per idle session, first, on a web that has served a few sessions (its code and pools
    // warmed up) but not yet the large outputs.
    for _ in 0..3 {
        let mut ws = browser.open().await?;
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(web_pid)?;
    let mut open = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        open.push(browser.open().await.with_context(|| format!("session {}", i + 1))?);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(web_pid)?;
    let per_session = after.saturating_sub(before) as f64 / args.sessions as f64;
    eprintln!(
        "{} idle sessions: janus web RSS {before} KiB → {after} KiB, {per_session:.1} KiB per session",
        args.sessions
    );
    for mut ws in open {
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("after closing them: janus web RSS {} KiB", rss_kib(web_pid)?);

    // CPU per GiB, alternating the paths (and their order) so that whatever else the machine does
    // weighs on both alike.
    let cpu = Cpu {
        kubesim: kubesim_pid.to_string(),
        web: web_pid.to_string(),
    };
    let per_round = args.mib * (1 << 20) / args.rounds;
    let (mut via, mut direct) = (Leg::default(), Leg::default());
    for round in 0..args.rounds {
        let (a, b) = if round % 2 == 0 {
            let a = through_janus(&browser, &cpu, per_round).await?;
            (a, straight(&admin, &cpu, per_round).await?)
        } else {
            let b = straight(&admin, &cpu, per_round).await?;
            (through_janus(&browser, &cpu, per_round).await?, b)
        };
        eprintln!(
            "round {}: janus {:.1} MB/s, CPU kubesim {:.2} s web {:.2} s client {:.2} s; straight {:.1} MB/s, CPU kubesim {:.2} s client {:.2} s",
            round + 1,
            a.bytes as f64 / a.wall.as_secs_f64() / 1e6,
            a.kubesim,
            a.web,
            a.client,
            b.bytes as f64 / b.wall.as_secs_f64() / 1e6,
            b.kubesim,
            b.client
        );
        via.add(a);
        direct.add(b);
    }
    let figures = figures(&via, &direct, args.sessions, per_session, args.mib, args.rounds);
    crate::write_figures(&args.out, &figures)?;
    drop(web);
    drop(kubesim);
    Ok(())
}
