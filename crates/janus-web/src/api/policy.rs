//! `/api/v1/policy`: the approval policy a request would fall under, for the request form's hints; and
//! `/api/v1/approvals`: what the caller may decide.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::openapi::ErrorBody;
use crate::auth::Authenticated;
use crate::error::WebError;
use crate::extract::{Json, Query};
use crate::service::{ApprovalsView, PolicyPreview, RequestService};

/// Query of the policy preview.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// Target cluster.
    pub cluster: String,
    /// Namespaces, comma-separated.
    pub namespaces: String,
    /// The TTL to judge auto-approval and break-glass for (default: `defaultTtlSeconds`).
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
    /// The access role (`roles:` name; default `exec`): `match.roles` and `allowedRoles` depend on it.
    #[serde(default)]
    pub role: Option<String>,
}

/// `GET /api/v1/policy?cluster=&namespaces=a,b[&role=]`.
#[utoipa::path(get, path = "/api/v1/policy", tag = "requests", summary = "The approval policy a request would fall under",
    description = "Which policy would govern a request of the caller for these namespaces, who approves and how many \
        must, the TTL limits, the reason pattern, whether the caller may break glass, and whether the request \
        would be auto-approved now, for the role asked (default exec: `match.roles` chooses the policy, and \
        `roleWhyNot` says when its `allowedRoles` refuses the role). Namespaces under different policies answer \
        200 with `conflict` set: a request for them is refused with that message.",
    params(PreviewQuery),
    responses(
        (status = 200, description = "The policy and what it means for the caller", body = PolicyPreview),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "Unknown cluster", body = ErrorBody),
        (status = 422, description = "Invalid field (named in `field`; an unknown role is `role`)", body = ErrorBody),
        (status = 503, description = "The cluster's API is unavailable", body = ErrorBody),
    ))]
pub async fn preview(
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    Query(q): Query<PreviewQuery>,
) -> Result<Response, WebError> {
    let namespaces: Vec<String> = q.namespaces.split(',').map(str::to_string).collect();
    let p = svc
        .preview(&id, &q.cluster, &namespaces, q.ttl_seconds, q.role.as_deref())
        .await?;
    Ok(Json(p).into_response())
}

/// `GET /api/v1/approvals`.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "requests", summary = "What I may decide",
    description = "Pending requests the caller may approve now (an eligible approver of the request's policy who \
        has not approved it yet), and break-glass activations awaiting the caller's review.",
    responses(
        (status = 200, description = "What the caller may decide", body = ApprovalsView),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
pub async fn approvals(State(svc): State<RequestService>, Authenticated(id): Authenticated) -> Response {
    Json(svc.approvals(&id).await).into_response()
}
