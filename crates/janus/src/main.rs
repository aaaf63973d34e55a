//! The `janus` command: every k8s-janus component in one binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use janus_api::config::Config;
use logging::LogFormat;

mod audit_cmd;
// The simulator and the host processes it runs for pods stay out of production builds (feature `demo`).
#[cfg(feature = "demo")]
mod demo;
mod logging;
mod probe_cmd;
mod registration_cmd;
mod web_cmd;

#[derive(Parser)]
#[command(
    name = "janus",
    version,
    about = "k8s-janus: just-in-time kubectl exec access for Kubernetes",
    after_long_help = janus_cli::cli::EXIT_CODES_HELP
)]
struct Cli {
    /// Log format: `json` for production log shippers, `text` for people.
    #[arg(long, value_enum, default_value_t = LogFormat::Json, env = "JANUS_LOG_FORMAT", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The client commands (`janus login`, `janus request`, `janus shell`, …): see [`janus_cli::ClientCommand`].
    #[command(flatten)]
    Client(janus_cli::ClientCommand),
    /// Print the AccessRequest CustomResourceDefinition generated from the Rust types.
    Crd,
    /// Read the audit log from the configured database.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Run the controller: grant, expire and revoke access for AccessRequests.
    Controller {
        /// Configuration file (the chart's ConfigMap).
        #[arg(long, env = "JANUS_CONFIG")]
        config: PathBuf,
        /// Kubeconfig of the central cluster (default: in-cluster ServiceAccount, then $KUBECONFIG).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Serve /healthz, /readyz and /metrics on this address.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Skip leader election (only for a single replica).
        #[arg(long)]
        no_leader_election: bool,
    },
    /// Run the whole product locally: two simulated clusters, the controller and the web UI (127.0.0.1 only).
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Run the web UI, the JSON API and the browser terminal.
    Web(web_cmd::WebArgs),
    /// Write `<cluster>-kubeconfig` Secrets from ArgoCD's cluster Secrets (the kubeconfigSync Job).
    KubeconfigSync(registration_cmd::KubeconfigSyncArgs),
    /// Print the remote agent's manifests (for `kubectl apply -f -` where helm is not available).
    AgentManifests(registration_cmd::AgentManifestsArgs),
    /// GET health URLs until they answer 2xx (the chart's `helm test` hook).
    Probe(probe_cmd::ProbeArgs),
}

fn init_logging(format: LogFormat) {
    logging::init(format, "info,kube=warn");
}

#[cfg(feature = "demo")]
fn init_logging_with(format: LogFormat, default: &str) {
    logging::init(format, default);
}

async fn central_client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<(kube::Client, String, String)> {
    let cfg = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .with_context(|| format!("cannot read kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {} is not usable", p.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster ServiceAccount and no usable $KUBECONFIG")?,
    };
    let server = cfg.cluster_url.to_string().trim_end_matches('/').to_string();
    let ca = cfg
        .root_cert
        .as_deref()
        .map(janus_controller::clusters::der_to_pem)
        .unwrap_or_default();
    // Connect, read and write timeouts: a stalled API server fails calls instead of hanging them
    // (the controller's Lease renewals are bounded separately, by the renew deadline).
    let client = janus_controller::clusters::bounded_client(cfg, Default::default())?;
    Ok((client, server, ca))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures_pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn futures_pending() {
    std::future::pending::<()>().await
}

/// The whole command line, its help listing the client commands apart from the server's (clap has no
/// per-subcommand heading, hence the template).
fn root_command() -> clap::Command {
    let cmd = Cli::command();
    let client: Vec<String> = janus_cli::ClientCommand::augment_subcommands(clap::Command::new("client"))
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let width = cmd.get_subcommands().map(|c| c.get_name().len()).max().unwrap_or(0);
    let (mut client_lines, mut server_lines) = (String::new(), String::new());
    for sc in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        let about = sc.get_about().map(|a| a.to_string()).unwrap_or_default();
        // Braces would be read as template tags.
        let about = about.replace(['{', '}'], "");
        let line = format!("  {:<width$}  {about}\n", sc.get_name());
        if client.iter().any(|c| c == sc.get_name()) {
            client_lines.push_str(&line);
        } else {
            server_lines.push_str(&line);
        }
    }
    cmd.help_template(format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n\
         Client commands (start with: janus login --url https://janus.example.com):\n{client_lines}\n\
         Server commands (run k8s-janus itself):\n{server_lines}  {:<width$}  Print this message or the help of \
         the given subcommand(s)\n\nOptions:\n{{options}}{{after-help}}",
        "help"
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Installed as `kubectl-janus`, kubectl runs this binary for `kubectl janus …`: the client alone.
    if janus_cli::cli::started_as_plugin(std::env::args_os().next().as_deref()) {
        let plugin = janus_cli::Plugin::parse();
        let root = janus_cli::Plugin::command()
            .name("kubectl-janus")
            .bin_name("kubectl-janus");
        std::process::exit(janus_cli::run(plugin.command, root).await);
    }
    let cli = Cli::from_arg_matches(&root_command().get_matches()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Client(cmd) => {
            // Client failures are printed by run(); the exit code is the documented one (docs/cli.md).
            std::process::exit(janus_cli::run(cmd, root_command()).await);
        }
        Command::Crd => print!("{}", janus_api::crd_yaml()?),
        Command::Audit { command } => audit_cmd::run(command).await?,
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            // The demo talks to a person: progress on stdout, only warnings in the log.
            init_logging_with(LogFormat::Text, "warn");
            demo::run(args, shutdown_signal()).await?;
        }
        Command::Web(args) => {
            init_logging(cli.log_format);
            let (client, server, ca) = central_client(args.kubeconfig.as_ref()).await?;
            web_cmd::run(args, client, server, ca, shutdown_signal()).await?;
        }
        Command::KubeconfigSync(args) => {
            init_logging(cli.log_format);
            registration_cmd::kubeconfig_sync(args).await?;
        }
        Command::AgentManifests(args) => registration_cmd::agent_manifests(args)?,
        Command::Probe(args) => {
            init_logging(cli.log_format);
            probe_cmd::run(args).await?;
        }
        Command::Controller {
            config,
            kubeconfig,
            metrics_listen,
            no_leader_election,
        } => {
            init_logging(cli.log_format);
            let cfg = Config::load(&config)?;
            let (client, server, ca) = central_client(kubeconfig.as_ref()).await?;
            let identity = std::env::var("JANUS_POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("janus-{}", std::process::id()));
            let opts = janus_controller::Options {
                metrics_listen,
                identity,
                leader_election: !no_leader_election,
            };
            janus_controller::run(cfg, client, server, ca, opts, shutdown_signal()).await?;
        }
    }
    Ok(())
}
