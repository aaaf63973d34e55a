//! `janus kubeconfig-sync`: writes `<cluster>-kubeconfig` Secrets from ArgoCD's cluster Secrets.
//!
//! Every remote entry of `clusters:` (all but the first, the central cluster) whose name matches an
//! ArgoCD cluster name gets its kubeconfig Secret created or updated; an identical Secret is left
//! alone, so re-running changes nothing. Each cluster gets an [`Outcome`]; credentials never appear
//! in logs, outcomes or errors.
//!
//! Then, with the cluster's kubeconfig, every configured role's ClusterRole is looked up on that
//! cluster: one the cluster lacks (or the credential may not read) is reported by name, without
//! failing the cluster's registration; the other roles work there.

use std::collections::BTreeMap;

use std::time::Duration;

use janus_api::config::ClusterConfig;
use janus_api::roles::RoleConfig;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

use crate::argocd::{self, ArgoCluster};
use crate::{CLUSTER_LABEL, DISPLAY_NAME_ANNOTATION, KUBECONFIG_KEY, REGISTERED_BY_ANNOTATION};

/// What happened to one listed cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The kubeconfig Secret did not exist and was created.
    Created,
    /// The kubeconfig Secret existed with other content and was updated.
    Updated,
    /// The kubeconfig Secret already held exactly this; nothing was written.
    Unchanged,
    /// No ArgoCD cluster has this name.
    Missing,
    /// The cluster could not be synced; the reason (never a credential).
    Failed(String),
}

impl Outcome {
    /// A short word for the per-cluster line.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Missing => "missing",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// The result for one entry of `clusters:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOutcome {
    /// Cluster name (as listed, and as in ArgoCD).
    pub cluster: String,
    /// The kubeconfig Secret in the Janus namespace.
    pub secret: String,
    /// What happened.
    pub outcome: Outcome,
    /// Roles the cluster cannot serve (a ClusterRole it lacks, or cannot be checked), one line each.
    pub role_warnings: Vec<String>,
}

impl std::fmt::Display for ClusterOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Missing => write!(
                f,
                "{}: missing: no ArgoCD cluster Secret has name {:?} (clusters[].name must match the ArgoCD cluster name)",
                self.cluster, self.cluster
            ),
            Outcome::Failed(reason) => write!(f, "{}: failed: {reason}", self.cluster),
            o => write!(f, "{}: {} Secret {}", self.cluster, o.label(), self.secret),
        }?;
        for w in &self.role_warnings {
            write!(f, "\n{}: warning: {w}", self.cluster)?;
        }
        Ok(())
    }
}

/// The results of one sync run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// One entry per remote cluster in `clusters:`, in that order.
    pub clusters: Vec<ClusterOutcome>,
}

impl Summary {
    fn count(&self, label: &str) -> usize {
        self.clusters.iter().filter(|c| c.outcome.label() == label).count()
    }

    /// True when no listed cluster failed or is missing in ArgoCD.
    pub fn success(&self) -> bool {
        self.count("failed") == 0 && self.count("missing") == 0
    }

    /// The summary line printed at the end.
    pub fn line(&self) -> String {
        let lacking = self.clusters.iter().filter(|c| !c.role_warnings.is_empty()).count();
        format!(
            "kubeconfig-sync: {} clusters: {} created, {} updated, {} unchanged, {} failed, {} missing in ArgoCD{}",
            self.clusters.len(),
            self.count("created"),
            self.count("updated"),
            self.count("unchanged"),
            self.count("failed"),
            self.count("missing"),
            if lacking == 0 {
                String::new()
            } else {
                format!("; {lacking} with role warnings (a role's ClusterRole missing or not checked; see above)")
            }
        )
    }
}

fn managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(janus_api::MANAGED_BY_LABEL))
        .is_some_and(|v| v == janus_api::MANAGED_BY)
}

/// Labels and annotations every kubeconfig Secret carries.
fn wanted_meta(cluster: &ClusterConfig) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let labels = BTreeMap::from([
        (
            janus_api::MANAGED_BY_LABEL.to_string(),
            janus_api::MANAGED_BY.to_string(),
        ),
        (CLUSTER_LABEL.to_string(), cluster.name.clone()),
    ]);
    let display = if cluster.display_name.is_empty() {
        cluster.name.clone()
    } else {
        cluster.display_name.clone()
    };
    let annotations = BTreeMap::from([
        (DISPLAY_NAME_ANNOTATION.to_string(), display),
        (REGISTERED_BY_ANNOTATION.to_string(), "kubeconfig-sync".to_string()),
    ]);
    (labels, annotations)
}

fn contains_all(have: Option<&BTreeMap<String, String>>, want: &BTreeMap<String, String>) -> bool {
    want.iter()
        .all(|(k, v)| have.and_then(|h| h.get(k)).is_some_and(|x| x == v))
}

/// Creates or updates one kubeconfig Secret; `Err` is the reason for [`Outcome::Failed`].
async fn write(api: &Api<Secret>, ns: &str, cluster: &ClusterConfig, kubeconfig: String) -> Result<Outcome, String> {
    let name = cluster.kubeconfig_secret();
    let (labels, annotations) = wanted_meta(cluster);
    let data = ByteString(kubeconfig.into_bytes());
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|e| format!("cannot read Secret {ns}/{name}: {e}"))?;
    let Some(mut secret) = existing else {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_string()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(KUBECONFIG_KEY.to_string(), data)])),
            ..Default::default()
        };
        api.create(&PostParams::default(), &secret)
            .await
            .map_err(|e| format!("cannot create Secret {ns}/{name}: {e}"))?;
        return Ok(Outcome::Created);
    };
    if !managed(&secret.metadata) {
        return Err(format!(
            "Secret {ns}/{name} exists and is not managed by k8s-janus (no label {}={}); not overwriting it",
            janus_api::MANAGED_BY_LABEL,
            janus_api::MANAGED_BY
        ));
    }
    let same_data = secret.data.as_ref().and_then(|d| d.get(KUBECONFIG_KEY)) == Some(&data);
    if same_data
        && contains_all(secret.metadata.labels.as_ref(), &labels)
        && contains_all(secret.metadata.annotations.as_ref(), &annotations)
    {
        return Ok(Outcome::Unchanged);
    }
    secret.metadata.labels.get_or_insert_with(BTreeMap::new).extend(labels);
    secret
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(annotations);
    secret
        .data
        .get_or_insert_with(BTreeMap::new)
        .insert(KUBECONFIG_KEY.to_string(), data);
    // resourceVersion is kept: a concurrent writer makes this a conflict, reported, not overwritten.
    api.replace(&name, &PostParams::default(), &secret)
        .await
        .map_err(|e| format!("cannot update Secret {ns}/{name}: {e}"))?;
    Ok(Outcome::Updated)
}

/// How long the role check of one cluster may take (an unreachable server must not hold the Job).
const ROLE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One line per role whose ClusterRole the cluster behind `kubeconfig` lacks, or that cannot be
/// checked. Uses the registered credential: what it cannot see, the controller cannot bind.
pub async fn check_role_cluster_roles(cluster: &str, kubeconfig: &str, roles: &[RoleConfig]) -> Vec<String> {
    let client = match client_for(kubeconfig).await {
        Ok(c) => c,
        Err(e) => return vec![format!("cannot check the roles' ClusterRoles: {e}")],
    };
    let api: Api<ClusterRole> = Api::all(client);
    let mut out = Vec::new();
    for r in roles {
        let cr = &r.cluster_role;
        let lookup = tokio::time::timeout(ROLE_CHECK_TIMEOUT, api.get_opt(cr)).await;
        let line = match lookup {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => format!(
                "cluster {cluster} lacks ClusterRole {cr} (role {}): install the chart there with remote.enabled=true or apply `janus agent-manifests`",
                r.name
            ),
            Ok(Err(kube::Error::Api(e))) if e.code == 403 => format!(
                "the credential of cluster {cluster} may not read ClusterRole {cr} (role {}): upgrade the agent there with the central roles (the chart with the same janus.roles, or `janus agent-manifests --roles ...`)",
                r.name
            ),
            Ok(Err(e)) => format!("cannot check ClusterRole {cr} (role {}): {e}", r.name),
            Err(_) => {
                out.push(format!(
                    "cannot check the roles' ClusterRoles: no answer within {} s",
                    ROLE_CHECK_TIMEOUT.as_secs()
                ));
                break;
            }
        };
        out.push(line);
    }
    out
}

/// A client for a kubeconfig document, with short timeouts. Errors name the problem, never the
/// credential.
async fn client_for(kubeconfig: &str) -> Result<kube::Client, String> {
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|e| format!("kubeconfig: {e}"))?;
    let mut config = kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    config.connect_timeout = Some(ROLE_CHECK_TIMEOUT);
    config.read_timeout = Some(ROLE_CHECK_TIMEOUT);
    kube::Client::try_from(config).map_err(|e| format!("client: {e}"))
}

/// Syncs every remote cluster of `clusters` (all but the first) from the ArgoCD cluster Secrets in
/// `argocd_namespace` into kubeconfig Secrets in `janus_namespace`, then checks on each synced cluster
/// that every role of `roles` has its ClusterRole there.
pub async fn sync(
    client: &kube::Client,
    janus_namespace: &str,
    argocd_namespace: &str,
    clusters: &[ClusterConfig],
    roles: &[RoleConfig],
) -> Summary {
    let remotes = clusters.iter().skip(1);
    let argo_api: Api<Secret> = Api::namespaced(client.clone(), argocd_namespace);
    let lp = ListParams::default().labels(&format!(
        "{}={}",
        argocd::SECRET_TYPE_LABEL,
        argocd::SECRET_TYPE_CLUSTER
    ));
    let argo: Result<Vec<ArgoCluster>, String> = match argo_api.list(&lp).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .filter_map(|s| match argocd::parse_secret(s) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unusable ArgoCD cluster Secret");
                    None
                }
            })
            .collect()),
        Err(e) => Err(format!(
            "cannot list ArgoCD cluster Secrets in namespace {argocd_namespace}: {e}"
        )),
    };
    let janus_api: Api<Secret> = Api::namespaced(client.clone(), janus_namespace);
    let mut summary = Summary::default();
    let mut checks = Vec::new();
    for cluster in remotes {
        let mut written = None;
        let outcome = match &argo {
            Err(e) => Outcome::Failed(e.clone()),
            Ok(argo) => {
                let matches: Vec<&ArgoCluster> = argo.iter().filter(|a| a.name == cluster.name).collect();
                match matches.as_slice() {
                    [] => Outcome::Missing,
                    [one] => match &one.connection {
                        Err(e) => Outcome::Failed(e.to_string()),
                        Ok(input) => match crate::kubeconfig::build(input) {
                            Err(e) => Outcome::Failed(e.to_string()),
                            Ok(kc) => {
                                let outcome = write(&janus_api, janus_namespace, cluster, kc.clone())
                                    .await
                                    .unwrap_or_else(Outcome::Failed);
                                if !matches!(outcome, Outcome::Failed(_)) {
                                    written = Some(kc);
                                }
                                outcome
                            }
                        },
                    },
                    many => Outcome::Failed(format!(
                        "{} ArgoCD cluster Secrets have this name ({}); refusing to guess",
                        many.len(),
                        many.iter()
                            .map(|a| a.secret_name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
        };
        let result = ClusterOutcome {
            cluster: cluster.name.clone(),
            secret: cluster.kubeconfig_secret(),
            outcome,
            role_warnings: Vec::new(),
        };
        // The caller prints the outcomes; this is for debugging only.
        tracing::debug!(cluster = %result.cluster, outcome = result.outcome.label(), "synced");
        if let Some(kc) = written {
            checks.push((summary.clusters.len(), result.cluster.clone(), kc));
        }
        summary.clusters.push(result);
    }
    // The clusters are checked at once: each may take up to the timeout when unreachable.
    let warnings = futures::future::join_all(
        checks
            .iter()
            .map(|(_, name, kc)| check_role_cluster_roles(name, kc, roles)),
    )
    .await;
    for ((i, _, _), w) in checks.iter().zip(warnings) {
        summary.clusters[*i].role_warnings = w;
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(cluster: &str, outcome: Outcome) -> ClusterOutcome {
        ClusterOutcome {
            cluster: cluster.into(),
            secret: format!("{cluster}-kubeconfig"),
            outcome,
            role_warnings: Vec::new(),
        }
    }

    #[test]
    fn lines_and_summary() {
        let s = Summary {
            clusters: vec![
                outcome("a", Outcome::Created),
                outcome("b", Outcome::Unchanged),
                outcome("c", Outcome::Missing),
                outcome("d", Outcome::Failed("cluster d cannot be synced: exec".into())),
            ],
        };
        assert_eq!(s.clusters[0].to_string(), "a: created Secret a-kubeconfig");
        assert!(
            s.clusters[2]
                .to_string()
                .starts_with("c: missing: no ArgoCD cluster Secret")
        );
        assert_eq!(s.clusters[3].to_string(), "d: failed: cluster d cannot be synced: exec");
        assert_eq!(
            s.line(),
            "kubeconfig-sync: 4 clusters: 1 created, 0 updated, 1 unchanged, 1 failed, 1 missing in ArgoCD"
        );
        assert!(!s.success());
        assert!(Summary::default().success());
    }

    #[test]
    fn role_warnings_follow_their_cluster_and_do_not_fail_the_sync() {
        let mut lacking = outcome("a", Outcome::Created);
        lacking.role_warnings = vec!["cluster a lacks ClusterRole x (role y): install".into()];
        let s = Summary {
            clusters: vec![lacking, outcome("b", Outcome::Unchanged)],
        };
        assert_eq!(
            s.clusters[0].to_string(),
            "a: created Secret a-kubeconfig\na: warning: cluster a lacks ClusterRole x (role y): install"
        );
        assert!(s.success());
        assert!(
            s.line()
                .ends_with("; 1 with role warnings (a role's ClusterRole missing or not checked; see above)")
        );
    }

    #[test]
    fn wanted_metadata() {
        let c = ClusterConfig {
            name: "prod".into(),
            display_name: String::new(),
            secret_name: None,
        };
        let (labels, annotations) = wanted_meta(&c);
        assert_eq!(labels[CLUSTER_LABEL], "prod");
        assert_eq!(labels[janus_api::MANAGED_BY_LABEL], janus_api::MANAGED_BY);
        assert_eq!(
            annotations[DISPLAY_NAME_ANNOTATION], "prod",
            "display name defaults to the name"
        );
        assert!(contains_all(Some(&labels), &labels));
        assert!(!contains_all(None, &labels));
    }
}
