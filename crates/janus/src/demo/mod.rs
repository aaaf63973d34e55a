//! `janus demo`: the whole product in one process on 127.0.0.1 — a central and a remote kubesim, the
//! controller and the web UI (each with its chart ServiceAccount's least-privilege token), SQLite.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use janus_api::config::Config;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kubesim::{RunningSim, SimBuilder};
use serde_json::json;

/// The chart's RBAC (ServiceAccounts, controller/web roles and their role bindings, the shipped access
/// ClusterRoles), rendered by helm.
pub const CHART_RBAC: &str = include_str!("chart-rbac.yaml");
const WORKLOADS: &str = include_str!("workloads.yaml");
const NS: &str = "k8s-janus";
const ARGOCD_NS: &str = "argocd";

/// Flags of `janus demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Port of the web UI (on 127.0.0.1).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Keep state (clusters, database, logins) in this directory across runs; default: a temporary
    /// directory removed on exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Short durations (1–5 minutes) to watch expiry happen.
    #[arg(long)]
    pub short_ttls: bool,
    /// A YAML file holding only a `notifications:` section (sinks and their event filters, as in the
    /// configuration file), added to the demo's configuration: the demo then delivers notifications as
    /// `janus web` does. Sink secrets come from the environment variables the file names.
    #[arg(long, value_name = "FILE")]
    pub notifications: Option<PathBuf>,
}

/// The `notifications:` section of `--notifications FILE`, checked to hold nothing else (the rest of the
/// demo's configuration is fixed).
fn notifications_overlay(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    for line in text.lines() {
        let top_level = !line.starts_with([' ', '\t', '#', '-']) && !line.trim().is_empty();
        if top_level && !line.starts_with("notifications:") {
            anyhow::bail!(
                "{}: only a `notifications:` section is allowed, found {:?}",
                path.display(),
                line.split(':').next().unwrap_or(line)
            );
        }
    }
    Ok(text)
}

fn step(n: u32, total: u32, what: &str) {
    println!("[{n}/{total}] {what}");
}

fn random_password() -> String {
    use rand::RngExt as _;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Logins of the demo, kept in the data directory so a persistent demo keeps them.
#[derive(serde::Serialize, serde::Deserialize)]
struct Logins {
    admin_password: String,
    engineer_password: String,
}

fn logins(dir: &Path) -> anyhow::Result<Logins> {
    let path = dir.join("demo-logins.json");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(l) = serde_json::from_str::<Logins>(&text)
    {
        return Ok(l);
    }
    let l = Logins {
        admin_password: random_password(),
        engineer_password: random_password(),
    };
    std::fs::write(&path, serde_json::to_string_pretty(&l)?)?;
    restrict(&path);
    Ok(l)
}

fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// A token for a ServiceAccount of a simulated cluster.
async fn sa_token(sim: &RunningSim, ns: &str, sa: &str, seconds: i64) -> anyhow::Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(sim.client().await?, ns);
    let tr: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": seconds}}))?;
    let out = api
        .create_token_request(sa, &PostParams::default(), &tr)
        .await
        .with_context(|| format!("token for {ns}/{sa}"))?;
    Ok(out.status.context("token request without status")?.token)
}

/// One approval policy, so the demo (and the browser tests that run it) shows quorum approvals, a reason
/// pattern and break-glass: the `search` namespace on the remote cluster needs 2 of 3 named approvers and
/// a ticket id, and the engineer may break glass there. Every other namespace keeps the default policy
/// (admins approve, one approval).
const DEMO_POLICIES: &str = "policies:\n  - name: search-team\n    description: The search team's namespace on the remote cluster\n    \
     match: {clusters: [remote], namespaces: [search]}\n    \
     approvers: {emails: [engineer@example.com, search-lead@example.com, admin@example.com]}\n    \
     approvalsRequired: 2\n    \
     reason: {pattern: '[A-Z]+-[0-9]+', description: 'a ticket id such as OPS-1234'}\n    \
     breakGlass: {emails: [engineer@example.com], maxTtlSeconds: 600}\n  \
     - name: logs-auto\n    description: Reading logs needs no approval for the engineer (up to an hour)\n    \
     match: {roles: [logs]}\n    \
     approvers: {emails: [admin@example.com]}\n    \
     autoApprove: {emails: [engineer@example.com], maxTtlSeconds: 3600}\n";

/// The shipped roles, with two images a debug container may run (an exact one and a prefix), so the
/// demo's debug role is usable.
const DEMO_ROLES: &str = "roles:\n  \
     - {name: exec, displayName: Shell, clusterRole: janus-pod-exec, terminal: shell, \
        description: 'A shell (kubectl exec) in the pods of the namespaces, with their logs and events.'}\n  \
     - {name: logs, displayName: Logs (read-only), clusterRole: janus-pod-logs, terminal: logs, \
        description: 'Read pod logs and events. No shell.'}\n  \
     - {name: debug, displayName: Debug container, clusterRole: janus-pod-debug, terminal: debug, \
        description: 'Start an ephemeral debug container from an allowed image next to a container, and attach to it.', \
        debugImages: ['busybox:1.36', 'nicolaka/netshoot:*']}\n";

fn demo_config(short: bool, notifications: &str) -> anyhow::Result<Config> {
    let ttl = if short {
        "minTtlSeconds: 60\ndefaultTtlSeconds: 120\nmaxTtlSeconds: 3600\napprovalTtlOptions: [60, 120, 300]\nidleTimeoutSeconds: 300\npendingExpirySeconds: 3600\nretentionSeconds: 3600\n"
    } else {
        "minTtlSeconds: 600\ndefaultTtlSeconds: 1800\nmaxTtlSeconds: 28800\napprovalTtlOptions: [600, 1800, 3600, 14400]\nidleTimeoutSeconds: 900\n"
    };
    let yaml = format!(
        "namespace: {NS}\nadminEmails: [admin@example.com]\nexcludedNamespaces: [kube-system, kube-public, kube-node-lease, {ARGOCD_NS}]\n{ttl}\
         clusters:\n  - name: central\n    displayName: Central (demo)\n  - name: remote\n    displayName: Remote (demo)\n\
         web:\n  baseUrl: \"\"\n  authMode: local\n{DEMO_POLICIES}{DEMO_ROLES}\n{notifications}"
    );
    Ok(Config::from_yaml(&yaml, "demo")?)
}

/// Registers the remote cluster like the ArgoCD kubeconfigSync Job does: an ArgoCD cluster Secret
/// holding the agent's token, turned into `remote-kubeconfig` by the same sync code.
async fn register_remote(central: &RunningSim, remote: &RunningSim, config: &Config) -> anyhow::Result<()> {
    let token = sa_token(remote, NS, "k8s-janus-agent", 7 * 86400).await?;
    let client = central.client().await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ARGOCD_NS);
    let argo = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cluster-remote", "namespace": ARGOCD_NS,
                      "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
        "stringData": {
            "name": "remote",
            "server": remote.url(),
            "config": serde_json::to_string(&json!({
                "bearerToken": token,
                "tlsClientConfig": {"insecure": false, "caData": base64_encode(remote.ca_pem())}
            }))?,
        }
    });
    let argo: Secret = serde_json::from_value(argo)?;
    match secrets.create(&PostParams::default(), &argo).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let mut existing = secrets.get("cluster-remote").await?;
            existing.string_data = argo.string_data;
            secrets
                .replace("cluster-remote", &PostParams::default(), &existing)
                .await?;
        }
        Err(e) => return Err(e.into()),
    }
    let summary = janus_registration::sync::sync(&client, NS, ARGOCD_NS, &config.clusters, &config.roles).await;
    anyhow::ensure!(
        summary.success(),
        "registering the remote cluster failed: {}",
        summary.line()
    );
    for c in &summary.clusters {
        // The demo's agent has every role; a warning here means the embedded manifests drifted.
        for w in &c.role_warnings {
            println!("      warning: {w}");
        }
    }
    Ok(())
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn start_sim(name: &str, dir: &Path, persistent: bool) -> anyhow::Result<RunningSim> {
    let mut b = SimBuilder::new().name(name).workdir(dir.join(format!("{name}-pods")));
    if persistent {
        b = b.state(dir.join(format!("{name}-state.json")));
    }
    let sim = b
        .start()
        .await
        .with_context(|| format!("starting the {name} cluster"))?;
    Ok(sim)
}

/// Appends a log line now and then to each demo container, so log following has something to show.
fn chatter(central: &RunningSim, remote: &RunningSim) -> tokio::task::JoinHandle<()> {
    let a = central.cluster.clone();
    let b = remote.cluster.clone();
    tokio::spawn(async move {
        let mut n: u64 = 0;
        loop {
            n += 1;
            let now = chrono::Utc::now().format("%H:%M:%S");
            for c in [&a, &b] {
                c.logs.append(
                    "payments",
                    "payments-api",
                    "api",
                    &format!("{now} INFO GET /v1/payments/{n} 200 {}ms", 3 + n % 17),
                );
                c.logs.append(
                    "checkout",
                    "checkout-web",
                    "web",
                    &format!("{now} INFO rendered /cart in {}ms", 20 + n % 40),
                );
                c.logs.append(
                    "checkout",
                    "checkout-web",
                    "envoy",
                    &format!("[{now}] \"GET /cart HTTP/1.1\" 200 - {}", 900 + n),
                );
                c.logs.append(
                    "search",
                    "search-indexer",
                    "indexer",
                    &format!("{now} indexed batch {n} (250 documents)"),
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

/// Runs the demo until Ctrl-C.
pub async fn run(
    args: DemoArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let total = 7;
    let (dir, _temp) = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            (d.canonicalize()?, None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("janus-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let persistent = args.data_dir.is_some();
    let overlay = match &args.notifications {
        Some(p) => notifications_overlay(p)?,
        None => String::new(),
    };
    let config = demo_config(args.short_ttls, &overlay)?;
    // Sinks are checked before anything starts, as `janus web` does (the error names the key).
    let resolved = janus_api::notifications::resolve(&config.notifications, &|k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("invalid notifications: {e}"))?;
    let sinks = janus_notify::build(&resolved, "demo").map_err(|e| anyhow::anyhow!("invalid notifications: {e}"))?;
    // Bind first: a busy port should fail before anything else starts.
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (choose another with --port)"))?;
    let url = format!("http://{}", listener.local_addr()?);

    step(1, total, "starting the central cluster (kubesim)");
    let central = start_sim("central", &dir, persistent).await?;
    central.load_seed(WORKLOADS)?;
    central.load_seed(&janus_api::crd_yaml()?)?;
    central.load_seed(CHART_RBAC)?;
    central.load_seed(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ARGOCD_NS}}}\n"
    ))?;
    println!("      {}", central.url());

    step(2, total, "starting the remote cluster (kubesim) with the janus agent");
    let remote = start_sim("remote", &dir, persistent).await?;
    remote.load_seed(WORKLOADS)?;
    remote.load_seed(&janus_registration::agent::agent_manifests_for(NS, &config.roles))?;
    println!("      {}", remote.url());

    step(
        3,
        total,
        "registering the remote cluster (the kubeconfigSync code path)",
    );
    register_remote(&central, &remote, &config).await?;

    step(
        4,
        total,
        "starting the controller (chart ServiceAccount, least privilege)",
    );
    let ctoken = sa_token(&central, NS, "k8s-janus-controller", 7 * 86400).await?;
    let cclient = central.client_for_token(&ctoken).await?;
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut stop_c = stop_tx.subscribe();
    let controller = tokio::spawn(janus_controller::run(
        config.clone(),
        cclient,
        central.url(),
        central.ca_pem().to_string(),
        janus_controller::Options {
            metrics_listen: None,
            identity: "demo".into(),
            leader_election: false,
        },
        async move {
            let _ = stop_c.recv().await;
        },
    ));

    step(5, total, "opening the database (SQLite) and the accounts");
    let logins = logins(&dir)?;
    let wtoken = sa_token(&central, NS, "k8s-janus-web", 7 * 86400).await?;
    let wclient = central.client_for_token(&wtoken).await?;
    let opts = janus_web::Options {
        listen: listener.local_addr()?,
        metrics_listen: None,
        database_url: Some(format!("sqlite://{}", dir.join("janus.db").display())),
        database_password: None,
        session_key: None,
        bootstrap_admin: Some((
            "admin".into(),
            "admin@example.com".into(),
            logins.admin_password.clone(),
        )),
        replica: "demo".into(),
        central_server: central.url(),
        central_ca_pem: central.ca_pem().to_string(),
        oidc_client_secret: None,
    };
    let (state, watch) = janus_web::server::build_state(config.clone(), wclient.clone(), &opts).await?;
    janus_web::auth::local::ensure_user(
        &state,
        "engineer",
        "engineer@example.com",
        &logins.engineer_password,
        false,
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the engineer account: {e}"))?;

    // The notification delivery, on the web's store (only with --notifications: nothing to send else).
    let (stop_delivery, delivery_stopped) = tokio::sync::watch::channel(false);
    let delivery = (!config.notifications.is_empty()).then(|| {
        let opts = janus_notify::DeliveryOptions::from_config(&config, "demo");
        tokio::spawn(
            janus_notify::Delivery::new(state.store.clone(), std::sync::Arc::new(config.clone()), sinks, opts)
                .run(delivery_stopped),
        )
    });

    step(6, total, "writing admin kubeconfigs");
    let kc_central = dir.join("central.kubeconfig");
    let kc_remote = dir.join("remote.kubeconfig");
    central.write_kubeconfig(&kc_central)?;
    remote.write_kubeconfig(&kc_remote)?;
    restrict(&kc_central);
    restrict(&kc_remote);
    let logs = chatter(&central, &remote);

    step(7, total, "starting the web UI");
    let mut stop_w = stop_tx.subscribe();
    let web = tokio::spawn(janus_web::server::serve(
        state,
        wclient,
        opts,
        listener,
        async move {
            let _ = stop_w.recv().await;
        },
        watch,
    ));
    wait_ready(&url).await;

    println!();
    println!("k8s-janus demo is running: {url}");
    println!();
    println!("  admin     username: admin      password: {}", logins.admin_password);
    println!(
        "  engineer  username: engineer   password: {}",
        logins.engineer_password
    );
    println!();
    println!("Watch credentials appear and vanish while you click:");
    println!(
        "  kubectl --kubeconfig {} get serviceaccounts -A -w",
        kc_central.display()
    );
    println!(
        "  kubectl --kubeconfig {} get serviceaccounts -A -w",
        kc_remote.display()
    );
    println!();
    println!(
        "Data directory: {}{}",
        dir.display(),
        if persistent { "" } else { " (removed on exit)" }
    );
    println!("Pods' shells are real processes on this machine, run as your user. Ctrl-C stops the demo.");

    shutdown.await;
    println!("\nstopping…");
    let _ = stop_tx.send(());
    let _ = stop_delivery.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), web).await;
    if let Some(d) = delivery {
        let _ = tokio::time::timeout(Duration::from_secs(10), d).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    logs.abort();
    let _ = central.shutdown().await;
    let _ = remote.shutdown().await;
    println!("stopped");
    Ok(())
}

async fn wait_ready(url: &str) {
    for _ in 0..400 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let req = "GET /readyz HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n";
            if s.write_all(req.as_bytes()).await.is_ok() {
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf).await;
                if buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
