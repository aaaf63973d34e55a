//! The `kubesim` command: serve a simulated Kubernetes API server until killed.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubesim",
    version,
    about = "An in-memory Kubernetes API server for tests and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTPS on 127.0.0.1 and write an admin kubeconfig.
    Serve {
        /// Port on 127.0.0.1; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where to write the admin kubeconfig (mode 0600).
        #[arg(long)]
        kubeconfig: PathBuf,
        /// YAML file of objects to create at start.
        #[arg(long)]
        seed: Option<PathBuf>,
        /// State file: loaded at start if present, saved on SIGTERM/SIGINT.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Cluster, user and context name in the kubeconfig.
        #[arg(long, default_value = "kubesim")]
        name: String,
        /// Smallest TokenRequest expirationSeconds (Kubernetes: 600).
        #[arg(long, default_value_t = kubesim::defaults::MIN_TOKEN_EXPIRATION_SECONDS)]
        min_token_expiration_seconds: i64,
        /// Cap on TokenRequest lifetimes, as kube-apiserver's `--service-account-max-token-expiration`
        /// (seconds; unset: no cap).
        #[arg(long)]
        service_account_max_token_expiration_seconds: Option<i64>,
        /// Kubernetes version to report and to follow in version-dependent rules (e.g. `v1.35.0`).
        #[arg(long, default_value = kubesim::DEFAULT_VERSION)]
        kubernetes_version: String,
        /// Clock skew tolerated on token times (the real server: 60 s).
        #[arg(long, default_value_t = kubesim::defaults::TOKEN_LEEWAY_SECONDS)]
        token_leeway_seconds: i64,
        /// Success TTL of the token authentication cache in seconds (the real server: 10).
        #[arg(long, default_value_t = kubesim::defaults::AUTH_CACHE_TTL_SECONDS)]
        auth_cache_ttl_seconds: u64,
        /// Seconds a watch or `continue` token stays valid before 410 Gone.
        #[arg(long, default_value_t = kubesim::defaults::WATCH_WINDOW_SECONDS)]
        watch_window_seconds: u64,
        /// Watches without `timeoutSeconds` are closed after this many seconds times a random factor
        /// in [1, 2), as kube-apiserver's `--min-request-timeout` (default 1800).
        #[arg(long, default_value_t = kubesim::defaults::MIN_REQUEST_TIMEOUT_SECONDS)]
        min_request_timeout_seconds: u64,
        /// Run the workload controller: Deployments, StatefulSets and DaemonSets get pods and
        /// `kubectl scale` adds and removes them (`--workload-pods=false`: no pods, all ready).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        workload_pods: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            port,
            kubeconfig,
            seed,
            state,
            name,
            min_token_expiration_seconds,
            service_account_max_token_expiration_seconds,
            kubernetes_version,
            token_leeway_seconds,
            auth_cache_ttl_seconds,
            watch_window_seconds,
            min_request_timeout_seconds,
            workload_pods,
        } => {
            let mut b = kubesim::SimBuilder::new()
                .name(&name)
                .port(port)
                .min_token_expiration_seconds(min_token_expiration_seconds)
                .version(&kubernetes_version)
                .token_leeway_seconds(token_leeway_seconds)
                .auth_cache_ttl(std::time::Duration::from_secs(auth_cache_ttl_seconds))
                .watch_window(std::time::Duration::from_secs(watch_window_seconds))
                .min_request_timeout(std::time::Duration::from_secs(min_request_timeout_seconds))
                .workload_pods(workload_pods);
            if let Some(max) = service_account_max_token_expiration_seconds {
                b = b.max_token_expiration_seconds(max);
            }
            if let Some(s) = seed {
                b = b.seed(s);
            }
            if let Some(s) = state {
                b = b.state(s);
            }
            let sim = b.start().await?;
            sim.write_kubeconfig(&kubeconfig)?;
            println!("kubesim serving {} (kubeconfig: {})", sim.url(), kubeconfig.display());
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            sim.shutdown().await?;
        }
    }
    Ok(())
}
