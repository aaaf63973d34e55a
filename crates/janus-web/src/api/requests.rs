//! `/api/v1/requests`: list, create, read, timeline and decisions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use janus_store::AuditEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use crate::auth::Authenticated;
use crate::error::WebError;
use crate::extract::{Json, JsonOrDefault, Path, Query};
use crate::service::{CreateInput, DecisionInput, ListFilter, ListPage, RequestService, RequestView};
use crate::state::AppState;

/// `GET /api/v1/requests`.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", summary = "List requests", params(ListFilter),
    description = "Pending first, newest first. Non-admins see their own requests only.",
    responses(
        (status = 200, description = "A page", body = ListPage),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "scope=all asked by a non-admin", body = ErrorBody),
        (status = 422, description = "Malformed query", body = ErrorBody),
    ))]
pub async fn list(
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    Query(f): Query<ListFilter>,
) -> Result<Response, WebError> {
    Ok(Json(svc.list(&id, &f)?).into_response())
}

/// `POST /api/v1/requests`.
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", summary = "Request access, as the logged-in identity", request_body = CreateInput,
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 201, description = "Created", body = RequestView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or wrong, or cross-site Origin", body = ErrorBody),
        (status = 409, description = "The Kubernetes API reported a conflict", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid field (named in `field`), e.g. an unknown cluster, a start time in the past, or what the request's approval policy refuses (reason pattern, TTL above its maximum, namespaces under different policies, break-glass not allowed)", body = ErrorBody),
        (status = 429, description = "Too many open requests", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    ))]
pub async fn create(
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    Json(input): Json<CreateInput>,
) -> Result<Response, WebError> {
    let ar = svc.create(&id, input).await?;
    Ok((StatusCode::CREATED, Json(svc.view(&id, &ar))).into_response())
}

/// `GET /api/v1/requests/{name}`.
#[utoipa::path(get, path = "/api/v1/requests/{name}", tag = "requests", summary = "One request",
    params(("name" = String, Path, description = "AccessRequest name")),
    responses(
        (status = 200, description = "The request (the requester's own, one the caller approves under its policy, or any for admins)", body = RequestView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "Unknown, or not the caller's", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    ))]
pub async fn get(
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let ar = svc.get_visible(&id, &name).await?;
    Ok(Json(svc.view(&id, &ar)).into_response())
}

/// Most audit events the timeline answers (the newest ones).
const TIMELINE_LIMIT: i64 = 1000;

/// The audit events of one request.
#[derive(Serialize, ToSchema)]
pub struct Timeline {
    /// Oldest first.
    pub events: Vec<AuditEvent>,
}

/// `GET /api/v1/requests/{name}/timeline`: the audit events of one request, oldest first.
#[utoipa::path(get, path = "/api/v1/requests/{name}/timeline", tag = "requests", summary = "The request's audit events, oldest first",
    params(("name" = String, Path, description = "AccessRequest name")),
    responses(
        (status = 200, description = "The request's audit events, oldest first", body = Timeline),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "Unknown, or not the caller's", body = ErrorBody),
        (status = 503, description = "The database or the Kubernetes API is unavailable", body = ErrorBody),
    ))]
pub async fn timeline(
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let events = svc.timeline(&id, &name, TIMELINE_LIMIT).await?;
    Ok(Json(Timeline { events }).into_response())
}

/// Body of a decision (every field optional; which ones count depends on the action).
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionBody {
    /// approve: TTL override (one of the policy's approval TTL options when it has any).
    ttl_seconds: Option<i64>,
    /// approve, acknowledge: a comment (at most 1000 characters), shown and audited.
    comment: Option<String>,
    /// deny (required), revoke (optional).
    reason: Option<String>,
    /// extend (required): seconds to add.
    seconds: Option<i64>,
}

/// `POST /api/v1/requests/{name}/{approve|deny|revoke|withdraw|extend|acknowledge}`.
#[utoipa::path(post, path = "/api/v1/requests/{name}/{action}", tag = "requests", summary = "Decide: approve, deny, revoke, withdraw, extend or acknowledge",
    description = "approve appends an approval (with the approver's groups and an optional comment) and is for the \
        eligible approvers of the request's policy (by default admins; never the requester under a configured \
        policy, nor without allowSelfApproval): 403 with why not, 409 when already approved by the caller or no \
        longer pending. deny is for admins and the policy's approvers; revoke and extend are admins'; withdraw \
        is the requester's; acknowledge reviews a break-glass activation (the policy's approvers, once). The body \
        may be left out.",
    params(
        ("name" = String, Path, description = "AccessRequest name"),
        ("action" = String, Path, description = "approve, deny, revoke, withdraw, extend or acknowledge"),
    ),
    request_body(content = Option<DecisionBody>),
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 200, description = "The request after the decision", body = RequestView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not allowed, CSRF token missing or wrong, or cross-site Origin", body = ErrorBody),
        (status = 404, description = "Unknown request or action, or not the caller's", body = ErrorBody),
        (status = 409, description = "The request's phase does not allow the action, or the caller already approved", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid field (named in `field`)", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    ))]
pub async fn decide(
    State(svc): State<RequestService>,
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path((name, action)): Path<(String, String)>,
    // No body at all (e.g. approve with the requested TTL) means no fields.
    JsonOrDefault(b): JsonOrDefault<DecisionBody>,
) -> Result<Response, WebError> {
    let decision = match action.as_str() {
        "approve" => DecisionInput::Approve {
            ttl_seconds: b.ttl_seconds,
            comment: b.comment.unwrap_or_default(),
        },
        "acknowledge" => DecisionInput::Acknowledge {
            comment: b.comment.unwrap_or_default(),
        },
        "deny" => DecisionInput::Deny {
            reason: b.reason.unwrap_or_default(),
        },
        "revoke" => DecisionInput::Revoke {
            reason: b.reason.unwrap_or_default(),
        },
        "withdraw" => DecisionInput::Withdraw,
        "extend" => DecisionInput::Extend {
            seconds: b
                .seconds
                .ok_or_else(|| WebError::invalid("seconds", "say how many seconds to add"))?,
        },
        _ => return Err(WebError::NotFound(format!("unknown action {action:?}"))),
    };
    let ar = svc.decide(&id, &name, decision).await?;
    state.terminals.close_if_ended(&ar);
    Ok(Json(svc.view(&id, &ar)).into_response())
}
