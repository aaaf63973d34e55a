//! Typed errors of the controller and how each is handled (retry or fail the request).

/// What can go wrong while reconciling a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed; retried with backoff when transient.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A cluster's kubeconfig Secret is missing, malformed or the cluster is unreachable.
    #[error("cluster {cluster} is unavailable: {message}")]
    ClusterUnavailable {
        /// Cluster name.
        cluster: String,
        /// What is wrong, for the request's status.
        message: String,
    },
    /// The grant can never succeed as asked; the request becomes Failed with this message.
    #[error("{0}")]
    Permanent(String),
    /// Credentials could not be removed yet; retried until they are gone.
    #[error("cleanup pending: {0}")]
    CleanupPending(String),
    /// An object kept changing under every attempt to update it; retried later.
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    /// Whether retrying later can help. Permanent errors end the request in `Failed`.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(s)) => matches!(s.code, 408 | 409 | 429 | 500..=599) || s.code == 0,
            Error::Kube(_) => true,
            Error::ClusterUnavailable { .. } | Error::CleanupPending(_) | Error::Conflict(_) => true,
            Error::Permanent(_) => false,
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::ClusterUnavailable { .. } => "cluster_unavailable",
            Error::Permanent(_) => "permanent",
            Error::CleanupPending(_) => "cleanup_pending",
            Error::Conflict(_) => "conflict",
        }
    }
}

impl From<janus_kube::Error> for Error {
    fn from(e: janus_kube::Error) -> Self {
        match e {
            janus_kube::Error::Kube(e) => Error::Kube(e),
            janus_kube::Error::Unavailable { cluster, message } => Error::ClusterUnavailable { cluster, message },
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a kube error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a kube error is a 409 AlreadyExists.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether a kube error is a 403.
pub fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}
