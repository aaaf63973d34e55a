//! `/api/v1/clusters`: clusters with their health, and the namespaces one may request on each.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams};
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use crate::auth::Authenticated;
use crate::error::WebError;
use crate::extract::{Json, Path};
use crate::requests;
use crate::state::AppState;

/// A cluster and how it is doing.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealth {
    /// Identifier.
    pub name: String,
    /// Name shown.
    pub display_name: String,
    /// Whether it is the central cluster.
    pub central: bool,
    /// Whether its API server answered.
    pub reachable: bool,
    /// Its Kubernetes version.
    pub version: Option<String>,
    /// Why it is unreachable.
    pub error: Option<String>,
    /// Whether ClusterRole `janus-pod-exec` exists (None: could not tell).
    pub pod_exec_role: Option<bool>,
    /// Requestable namespaces.
    pub namespaces: Option<usize>,
}

/// Checks every cluster concurrently, each bounded by a timeout.
pub async fn health(state: &AppState) -> Vec<ClusterHealth> {
    let list = requests::clusters(state).await;
    let checks = list.into_iter().map(|c| {
        let state = state.clone();
        async move {
            let mut h = ClusterHealth {
                name: c.name.clone(),
                display_name: c.display_name.clone(),
                central: c.central,
                reachable: false,
                version: None,
                error: None,
                pod_exec_role: None,
                namespaces: None,
            };
            let handle = match state.clusters.get(&c.name).await {
                Ok(h) => h,
                Err(e) => {
                    h.error = Some(e.to_string());
                    return h;
                }
            };
            let t = Duration::from_secs(5);
            match tokio::time::timeout(t, handle.client.apiserver_version()).await {
                Ok(Ok(v)) => {
                    h.reachable = true;
                    h.version = Some(v.git_version);
                }
                Ok(Err(e)) => {
                    h.error = Some(e.to_string());
                    return h;
                }
                Err(_) => {
                    h.error = Some("no answer within 5 s".into());
                    return h;
                }
            }
            let roles: Api<ClusterRole> = Api::all(handle.client.clone());
            h.pod_exec_role = match tokio::time::timeout(t, roles.get_opt(janus_api::POD_EXEC_CLUSTER_ROLE)).await {
                Ok(Ok(r)) => Some(r.is_some()),
                _ => None,
            };
            let ns: Api<Namespace> = Api::all(handle.client);
            if let Ok(Ok(l)) = tokio::time::timeout(t, ns.list_metadata(&ListParams::default())).await {
                h.namespaces = Some(
                    l.items
                        .iter()
                        .filter_map(|n| n.metadata.name.as_deref())
                        .filter(|n| !state.config.is_excluded(n))
                        .count(),
                );
            }
            h
        }
    });
    futures::future::join_all(checks).await
}

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
pub async fn list(State(state): State<AppState>, Authenticated(_id): Authenticated) -> Response {
    Json(ClusterList {
        clusters: health(&state).await,
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
    State(state): State<AppState>,
    Authenticated(_id): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let ns = requests::namespaces(&state, &name).await?;
    Ok(Json(NamespaceList {
        cluster: name,
        namespaces: ns,
    })
    .into_response())
}
