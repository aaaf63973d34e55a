//! Errors of the web API with their HTTP status; messages are safe to show (never a token or a hash).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What went wrong while handling a request.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No (valid) identity.
    #[error("login required")]
    Unauthenticated,
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The thing does not exist (or the caller may not know it exists).
    #[error("{0}")]
    NotFound(String),
    /// The input is invalid; the message names the field.
    #[error("{message}")]
    Invalid {
        /// The offending field, for forms.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The action does not fit the current state (e.g. a decision on an ended request).
    #[error("{0}")]
    Conflict(String),
    /// A limit was reached.
    #[error("{0}")]
    TooMany(String),
    /// The body is larger than allowed.
    #[error("the request body is too large")]
    TooLarge,
    /// CSRF token or Origin check failed.
    #[error("the form expired or came from another site; reload the page and try again")]
    Csrf,
    /// Proxy mode: the request carries a second identity besides the one the proxy asserted.
    #[error("the request carries conflicting identity headers; it was refused and recorded")]
    IdentityConflict,
    /// A dependency (database, Kubernetes API) is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else; details go to the log, not to the client.
    #[error("internal error")]
    Internal(String),
}

impl WebError {
    /// An invalid field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::IdentityConflict => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::Csrf => "csrf",
            Self::IdentityConflict => "identity_conflict",
            Self::NotFound(_) => "not_found",
            Self::Invalid { .. } => "invalid",
            Self::Conflict(_) => "conflict",
            Self::TooMany(_) => "too_many",
            Self::TooLarge => "too_large",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<janus_store::StoreError> for WebError {
    fn from(e: janus_store::StoreError) -> Self {
        match e {
            janus_store::StoreError::Conflict(m) => Self::Conflict(m),
            janus_store::StoreError::Invalid(m) => Self::invalid("input", m),
            other => {
                tracing::warn!(error = %other, "database error");
                Self::Unavailable("the database is unavailable; try again shortly".into())
            }
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for WebError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge
        } else {
            Self::invalid("body", e.body_text())
        }
    }
}

impl From<kube::Error> for WebError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.code == 404 => Self::NotFound("not found".into()),
            kube::Error::Api(s) if s.code == 409 => {
                Self::Conflict("the request changed meanwhile; reload and try again".into())
            }
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => Self::invalid("request", s.message.clone()),
            _ => {
                tracing::warn!(error = %e, "Kubernetes API error");
                Self::Unavailable("the Kubernetes API is unavailable; try again shortly".into())
            }
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(detail = %detail, "internal error");
        }
        let field = match &self {
            Self::Invalid { field, .. } => Some(*field),
            _ => None,
        };
        let body = json!({"error": self.to_string(), "code": self.code(), "field": field});
        (self.status(), Json(body)).into_response()
    }
}
