//! The web's service layer: the request logic behind the handlers, unit-testable without a server.
//!
//! Handlers are thin: they parse, authenticate, call a service and render (maud pages in `pages/`, JSON in
//! `api/`). Each service is a small `Clone` sub-state that holds only what it needs and is taken from the
//! router's [`AppState`] through axum's [`FromRef`](axum::extract::FromRef), so a handler asks for
//! `State<RequestService>` instead of the whole state. The rules themselves come from
//! [`janus_api::rules`]; services apply them to the cache, the API server and the database, and return
//! [`ServiceError`]s that the handlers turn into HTTP answers.

pub mod clusters;
pub mod policy;
pub mod requests;
pub mod scope;
pub mod view;

use crate::error::WebError;
use crate::state::{AppState, Inner};

pub use clusters::{ClusterCache, ClusterService};
pub use requests::{CreateInput, DecisionInput, ListFilter, RequestService};
pub use scope::ScopeService;
pub use view::{ApprovalsView, ListPage, PolicyPreview, PolicyView, RequestView};

/// Why a service refused or failed. Messages are safe to show (they never carry a token).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The identity may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing does not exist, or the caller may not know that it exists.
    #[error("{0}")]
    NotFound(String),
    /// An input field is invalid.
    #[error("{message}")]
    Invalid {
        /// The field, as the API and the form name it.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The request's state does not allow the action.
    #[error("{0}")]
    Conflict(String),
    /// A per-user limit was reached.
    #[error("{0}")]
    TooMany(String),
    /// A cluster or the database cannot answer right now.
    #[error("{0}")]
    Unavailable(String),
    /// The Kubernetes API answered with an error.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The database answered with an error.
    #[error(transparent)]
    Store(#[from] janus_store::StoreError),
}

impl ServiceError {
    /// An invalid field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<ServiceError> for WebError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Forbidden(m) => WebError::Forbidden(m),
            ServiceError::NotFound(m) => WebError::NotFound(m),
            ServiceError::Invalid { field, message } => WebError::Invalid { field, message },
            ServiceError::Conflict(m) => WebError::Conflict(m),
            ServiceError::TooMany(m) => WebError::TooMany(m),
            ServiceError::Unavailable(m) => WebError::Unavailable(m),
            // The web's own mapping of API and database errors (status, safe message) applies unchanged.
            ServiceError::Kube(e) => WebError::from(e),
            ServiceError::Store(e) => WebError::from(e),
        }
    }
}

/// Where services count what they did. The server counts into its Prometheus metrics; unit tests pass
/// [`NoRecorder`] or their own counter.
pub trait Recorder: Send + Sync {
    /// A request was created.
    fn request_created(&self);
    /// A decision (`approve`, `deny`, ...) was written.
    fn decision(&self, verb: &'static str);
}

// The metrics live in the shared state (built by the server), so the state itself is the recorder; the
// service sees only these two methods of it.
impl Recorder for Inner {
    fn request_created(&self) {
        self.metrics.request_created();
    }
    fn decision(&self, verb: &'static str) {
        self.metrics.decision(verb);
    }
}

/// A recorder that counts nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecorder;

impl Recorder for NoRecorder {
    fn request_created(&self) {}
    fn decision(&self, _verb: &'static str) {}
}

/// The recorder of a running server.
pub(crate) fn recorder_of(state: &AppState) -> std::sync::Arc<dyn Recorder> {
    state.0.clone()
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    /// A service's refusal reaches the client with the status and the message the handlers answered
    /// before the service layer existed; API errors keep the web's own mapping.
    #[test]
    fn service_errors_keep_their_http_meaning() {
        let status = |e: ServiceError| WebError::from(e).status();
        assert_eq!(status(ServiceError::Forbidden("no".into())), StatusCode::FORBIDDEN);
        assert_eq!(status(ServiceError::NotFound("no".into())), StatusCode::NOT_FOUND);
        assert_eq!(
            status(ServiceError::invalid("reason", "no")),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(ServiceError::Conflict("no".into())), StatusCode::CONFLICT);
        assert_eq!(
            status(ServiceError::TooMany("no".into())),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status(ServiceError::Unavailable("no".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        match WebError::from(ServiceError::invalid("ttlSeconds", "too long")) {
            WebError::Invalid { field, message } => assert_eq!((field, message.as_str()), ("ttlSeconds", "too long")),
            other => panic!("expected an invalid field, got {other:?}"),
        }
        let gone = kube::Error::Api(
            serde_json::from_value(
                serde_json::json!({"status": "Failure", "message": "x", "reason": "NotFound", "code": 404}),
            )
            .expect("status"),
        );
        assert_eq!(status(ServiceError::Kube(gone)), StatusCode::NOT_FOUND);
    }
}
