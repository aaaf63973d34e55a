//! Native OpenID Connect login (authorization code + PKCE). Being implemented: until then `authMode: oidc`
//! refuses to start with a clear message rather than half-working.

use axum::response::{IntoResponse, Response};
use janus_api::config::OidcConfig;

use crate::error::WebError;

/// A discovered OpenID Provider.
pub struct Oidc {
    _issuer: String,
}

impl Oidc {
    /// Discovers the provider.
    pub async fn discover(cfg: &OidcConfig, _base_url: &str) -> Result<Self, String> {
        Err(format!(
            "web.authMode oidc (issuer {}) is not available in this build yet; use authMode local or proxy",
            cfg.issuer_url
        ))
    }
}

/// `GET /oidc/login`.
pub async fn start() -> Response {
    WebError::NotFound("OIDC login is not configured".into()).into_response()
}

/// `GET /oidc/callback`.
pub async fn callback() -> Response {
    WebError::NotFound("OIDC login is not configured".into()).into_response()
}
