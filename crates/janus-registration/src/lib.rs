//! Registering remote clusters with k8s-janus.
//!
//! - [`argocd`]: ArgoCD cluster Secrets and which of them can become static kubeconfigs;
//! - [`kubeconfig`]: building the single-context kubeconfig the controller reads;
//! - [`sync`]: `janus kubeconfig-sync`, which writes `<cluster>-kubeconfig` Secrets from ArgoCD;
//! - [`agent`]: the remote agent's manifests (`janus agent-manifests`), for clusters without helm.
//!
//! `scripts/setup.sh` is the other way to register a cluster; it writes the same Secret format.

pub mod agent;
pub mod argocd;
pub mod kubeconfig;
pub mod sync;

/// Label that registers a kubeconfig Secret as a cluster; its value is the cluster name (the
/// controller's `clusters::CLUSTER_LABEL`).
pub const CLUSTER_LABEL: &str = "k8s-janus.opsmode.io/cluster";
/// Annotation with a registered cluster's display name (the controller's `DISPLAY_NAME_ANNOTATION`).
pub const DISPLAY_NAME_ANNOTATION: &str = "k8s-janus.opsmode.io/display-name";
/// Annotation saying what wrote a kubeconfig Secret: `kubeconfig-sync` or `setup.sh`.
pub const REGISTERED_BY_ANNOTATION: &str = "k8s-janus.opsmode.io/registered-by";
/// The data key of the kubeconfig in a cluster Secret.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
