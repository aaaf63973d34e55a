//! Errors of reaching a cluster.

/// Why a cluster cannot be used right now.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call to the central cluster (reading the registration Secrets) failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A cluster's kubeconfig Secret is missing or malformed, or no client can be built from it.
    #[error("cluster {cluster} is unavailable: {message}")]
    Unavailable {
        /// Cluster name.
        cluster: String,
        /// What is wrong, for a request's status or a page.
        message: String,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a kube error is a 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
