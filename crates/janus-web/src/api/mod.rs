//! The JSON API under `/api/v1`, described by the OpenAPI document generated from it ([`openapi`], served at
//! `/api/v1/openapi.yaml` and `/api/v1/openapi.json`).

pub mod audit;
pub mod cli;
pub mod clusters;
pub mod notifications;
pub mod openapi;
pub mod policy;
pub mod requests;
pub mod scope;
pub mod session;
pub mod tokens;
pub mod users;

use axum::Router;
use axum::routing::{delete, get, patch, post};

use crate::state::AppState;

/// The `/api/v1` routes with ordinary request-response handlers; the live-update stream
/// (`/api/v1/events`) and the audit export (`/api/v1/audit/export`) are routed beside the terminal's
/// long-lived routes in `server.rs`, outside the request timeout.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.yaml", get(openapi::openapi_yaml))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/api/v1/login", post(session::login))
        .route("/api/v1/logout", post(session::logout))
        .route("/api/v1/session", get(session::whoami))
        .route("/api/v1/requests", get(requests::list).post(requests::create))
        .route("/api/v1/cli/login", post(cli::login))
        .route("/api/v1/cli/device", post(cli::device))
        .route("/api/v1/cli/device/token", post(cli::device_token))
        .route("/api/v1/requests/{name}", get(requests::get))
        .route("/api/v1/requests/{name}/timeline", get(requests::timeline))
        .route("/api/v1/requests/{name}/{action}", post(requests::decide))
        .route("/api/v1/policy", get(policy::preview))
        .route("/api/v1/approvals", get(policy::approvals))
        .route("/api/v1/clusters", get(clusters::list))
        .route("/api/v1/clusters/{name}/namespaces", get(clusters::namespaces))
        .route("/api/v1/clusters/{name}/workloads", get(scope::workloads))
        .route("/api/v1/clusters/{name}/pods", get(scope::pods))
        .route("/api/v1/roles", get(scope::roles))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/users", get(users::list_handler).post(users::create_handler))
        .route(
            "/api/v1/users/{username}",
            patch(users::update_handler).delete(users::delete_handler),
        )
        .route("/api/v1/tokens", get(tokens::list_handler).post(tokens::create_handler))
        .route("/api/v1/tokens/{displayId}", delete(tokens::delete_handler))
        .route("/api/v1/notifications/dead", get(notifications::list_dead))
        .route(
            "/api/v1/notifications/dead/{id}/retry",
            post(notifications::retry_handler),
        )
}
