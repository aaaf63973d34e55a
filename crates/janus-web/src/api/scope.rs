//! `/api/v1/roles` and the pod-scope picker's reads: `/api/v1/clusters/{name}/workloads` and
//! `/api/v1/clusters/{name}/pods`. Shapes: [`crate::service::scope`]. Every signed-in user may call them
//! (they show what a request could name); the namespace must be requestable, as in the namespace list.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::openapi::ErrorBody;
use crate::auth::Authenticated;
use crate::error::WebError;
use crate::extract::{Json, Path, Query};
use crate::service::ScopeService;
use crate::service::scope::{PodPreviewList, RoleList, WorkloadList};

/// `?cluster=&namespace=…` of the role list (both optional; `namespace` may repeat or be comma-separated).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RolesQuery {
    /// The cluster the request is for: with `namespace`, only the roles its governing policy allows.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The namespaces, comma-separated.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `?namespace=` of the workload list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkloadsQuery {
    /// A namespace that may be requested.
    pub namespace: String,
}

/// `?namespace=&selector=` of the pod preview.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PodsQuery {
    /// A namespace that may be requested.
    pub namespace: String,
    /// A label selector in Kubernetes syntax (`app=checkout,tier in (a,b)`).
    pub selector: String,
}

/// `GET /api/v1/roles`.
#[utoipa::path(get, path = "/api/v1/roles", tag = "requests", summary = "The access roles the caller may request",
    description = "Without cluster and namespace: every configured role that some policy (or the default) could \
        let the caller have; a role every policy governing the caller's requests refuses (allowedRoles) is left \
        out. With cluster and namespace: the roles the governing policy of such a request allows. A debug role \
        that lists no image is never offered.",
    params(RolesQuery),
    responses(
        (status = 200, description = "Roles, in configuration order", body = RoleList),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "Unknown cluster", body = ErrorBody),
        (status = 503, description = "The cluster's API is unavailable", body = ErrorBody),
    ))]
pub async fn roles(
    State(svc): State<ScopeService>,
    Authenticated(id): Authenticated,
    Query(q): Query<RolesQuery>,
) -> Result<Response, WebError> {
    let namespaces: Vec<String> = q
        .namespace
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if namespaces.len() > crate::service::requests::MAX_NAMESPACES
        || namespaces.iter().any(|n| !janus_api::names::is_dns_label(n))
    {
        return Err(WebError::invalid("namespace", "namespace names, comma-separated"));
    }
    Ok(Json(svc.roles_for(&id, q.cluster.as_deref(), &namespaces).await?).into_response())
}

/// `GET /api/v1/clusters/{name}/workloads?namespace=`.
#[utoipa::path(get, path = "/api/v1/clusters/{name}/workloads", tag = "clusters", summary = "Workloads a pod scope can name",
    description = "Deployments, StatefulSets and DaemonSets of a namespace that may be requested, with their pod \
        selectors, at most 500 of each kind (`truncated` says there are more), read with the web's own identity.",
    params(("name" = String, Path, description = "Cluster name"), WorkloadsQuery),
    responses(
        (status = 200, description = "The namespace's workloads", body = WorkloadList),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "Unknown cluster, or no such namespace", body = ErrorBody),
        (status = 422, description = "The namespace cannot be requested (excluded, the Janus namespace) or is no namespace name", body = ErrorBody),
        (status = 503, description = "The cluster's API is unavailable", body = ErrorBody),
    ))]
pub async fn workloads(
    State(svc): State<ScopeService>,
    Authenticated(_id): Authenticated,
    Path(name): Path<String>,
    Query(q): Query<WorkloadsQuery>,
) -> Result<Response, WebError> {
    Ok(Json(svc.workloads(&name, &q.namespace).await?).into_response())
}

/// `GET /api/v1/clusters/{name}/pods?namespace=&selector=`.
#[utoipa::path(get, path = "/api/v1/clusters/{name}/pods", tag = "clusters", summary = "Pods a label selector matches (scope preview)",
    description = "The pods (name, labels, phase) of a namespace that may be requested that the selector matches, not \
        being deleted, at most 200 (`truncated` says there are more), read with the web's own identity.",
    params(("name" = String, Path, description = "Cluster name"), PodsQuery),
    responses(
        (status = 200, description = "Matching pods", body = PodPreviewList),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "Unknown cluster, or no such namespace", body = ErrorBody),
        (status = 422, description = "A malformed selector (`field`: selector), or a namespace that cannot be requested", body = ErrorBody),
        (status = 503, description = "The cluster's API is unavailable", body = ErrorBody),
    ))]
pub async fn pods(
    State(svc): State<ScopeService>,
    Authenticated(_id): Authenticated,
    Path(name): Path<String>,
    Query(q): Query<PodsQuery>,
) -> Result<Response, WebError> {
    Ok(Json(svc.pods(&name, &q.namespace, &q.selector).await?).into_response())
}
