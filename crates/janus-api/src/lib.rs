//! The k8s-janus API: the `AccessRequest` custom resource and the pure rules around it (names, labels).

pub mod access_request;
pub mod config;
pub mod names;

pub use access_request::{
    AccessRequest, AccessRequestSpec, AccessRequestStatus, Approval, Condition, Decision, Denial, Extension, Grant,
    Phase, Revocation, Withdrawal,
};

/// API group of every k8s-janus resource.
pub const GROUP: &str = "k8s-janus.opsmode.io";
/// Label on every object created for a request; its value is the request's name.
pub const REQUEST_LABEL: &str = "k8s-janus.opsmode.io/request";
/// Label marking objects k8s-janus manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "k8s-janus";
/// The ClusterRole every grant binds.
pub const POD_EXEC_CLUSTER_ROLE: &str = "janus-pod-exec";
/// Finalizer guaranteeing cleanup before an AccessRequest disappears.
pub const FINALIZER: &str = "k8s-janus.opsmode.io/cleanup";

/// The CRD generated from the Rust types, as YAML (what `janus crd` prints).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&AccessRequest::crd())
}
