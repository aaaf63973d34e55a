//! `janus kubeconfig-sync` (the chart's kubeconfigSync Job) and `janus agent-manifests`.

use std::path::PathBuf;

use janus_api::config::Config;

/// Arguments of `janus kubeconfig-sync`.
#[derive(clap::Args)]
pub struct KubeconfigSyncArgs {
    /// Configuration file (the chart's ConfigMap): the Janus namespace and the `clusters` list.
    #[arg(long, env = "JANUS_CONFIG")]
    pub config: PathBuf,
    /// Namespace where ArgoCD keeps its cluster Secrets.
    #[arg(long, default_value = "argocd")]
    pub argocd_namespace: String,
    /// Kubeconfig of the central cluster (default: in-cluster ServiceAccount, then $KUBECONFIG).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// Arguments of `janus agent-manifests`.
#[derive(clap::Args)]
pub struct AgentManifestsArgs {
    /// Namespace of the agent ServiceAccount on the remote cluster.
    #[arg(long, default_value = "k8s-janus")]
    pub namespace: String,
    /// The access roles whose ClusterRoles the agent may bind (and the shipped ones it installs):
    /// comma-separated shipped role names (exec, logs, debug) or NAME=CLUSTERROLE for your own.
    /// Default: the `roles:` of --config, else the shipped three.
    #[arg(long, conflicts_with = "config")]
    pub roles: Option<String>,
    /// A janus configuration file (the central chart's config.yaml) to take `roles:` from.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Writes `<cluster>-kubeconfig` Secrets from ArgoCD; one line per listed remote cluster, then a
/// summary line. Fails when any listed cluster failed or is missing in ArgoCD.
pub async fn kubeconfig_sync(args: KubeconfigSyncArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&args.config)?;
    let (client, _, _) = crate::central_client(args.kubeconfig.as_ref()).await?;
    let summary = janus_registration::sync::sync(
        &client,
        &cfg.namespace,
        &args.argocd_namespace,
        &cfg.clusters,
        &cfg.roles,
    )
    .await;
    if summary.clusters.is_empty() {
        println!("no remote clusters listed in `clusters:` (the first entry is the central cluster)");
    }
    for c in &summary.clusters {
        println!("{c}");
    }
    println!("{}", summary.line());
    if !summary.success() {
        let bad: Vec<&str> = summary
            .clusters
            .iter()
            .filter(|c| {
                matches!(
                    c.outcome,
                    janus_registration::sync::Outcome::Failed(_) | janus_registration::sync::Outcome::Missing
                )
            })
            .map(|c| c.cluster.as_str())
            .collect();
        anyhow::bail!("not synced: {}", bad.join(", "));
    }
    Ok(())
}

/// Prints the remote agent's manifests.
pub fn agent_manifests(args: AgentManifestsArgs) -> anyhow::Result<()> {
    let ns = args.namespace.trim();
    anyhow::ensure!(janus_api::names::is_dns_label(ns), "invalid namespace {ns:?}");
    use janus_registration::agent;
    let roles = match (&args.roles, &args.config) {
        (Some(flag), _) => agent::roles_from_flag(flag)?,
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            agent::roles_from_config(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        (None, None) => janus_api::roles::builtin_roles(),
    };
    print!("{}", agent::agent_manifests_for(ns, &roles));
    Ok(())
}
