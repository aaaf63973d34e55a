//! `/api/v1/clusters`: clusters with their health, and the namespaces one may request on each.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use crate::auth::Authenticated;
use crate::error::WebError;
use crate::extract::{Json, Path};
use crate::service::ClusterService;
pub use crate::service::clusters::ClusterHealth;

/// The clusters.
#[derive(Serialize, ToSchema)]
pub struct ClusterList {
    /// The central cluster first.
    pub clusters: Vec<ClusterHealth>,
}

/// The namespaces one may request on a cluster.
#[derive(Serialize, ToSchema)]
pub struct NamespaceList {
    /// The cluster asked about.
    pub cluster: String,
    /// Existing, not excluded, sorted.
    pub namespaces: Vec<String>,
}

/// `GET /api/v1/clusters`.
#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters", summary = "Clusters with connection health and janus-pod-exec presence",
    responses(
        (status = 200, description = "Clusters with connection health and janus-pod-exec presence", body = ClusterList),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
pub async fn list(State(clusters): State<ClusterService>, Authenticated(_id): Authenticated) -> Response {
    Json(ClusterList {
        clusters: clusters.health().await,
    })
    .into_response()
}

/// `GET /api/v1/clusters/{name}/namespaces`.
#[utoipa::path(get, path = "/api/v1/clusters/{name}/namespaces", tag = "clusters", summary = "Namespaces that may be requested on a cluster",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "Namespaces that may be requested (existing, not excluded)", body = NamespaceList),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "Unknown cluster", body = ErrorBody),
        (status = 503, description = "The cluster's API is unavailable", body = ErrorBody),
    ))]
pub async fn namespaces(
    State(clusters): State<ClusterService>,
    Authenticated(_id): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let ns = clusters.namespaces(&name).await?;
    Ok(Json(NamespaceList {
        cluster: name,
        namespaces: ns,
    })
    .into_response())
}
