//! `/api/v1/requests`: list, create, read, timeline and decisions.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use janus_store::AuditQuery;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Authenticated;
use crate::error::WebError;
use crate::requests::{self as domain, CreateInput, DecisionInput, ListFilter};
use crate::state::AppState;

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, WebError> {
    b.map(|Json(v)| v).map_err(WebError::from)
}

/// `GET /api/v1/requests`.
pub async fn list(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    q: Result<Query<ListFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, WebError> {
    let Query(f) = q.map_err(|e| WebError::invalid("query", e.body_text()))?;
    if f.scope.as_deref() == Some("all") && !id.is_admin {
        return Err(WebError::Forbidden("only admins list everybody's requests".into()));
    }
    Ok(Json(domain::list(&state, &id, &f)).into_response())
}

/// `POST /api/v1/requests`.
pub async fn create(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    b: Result<Json<CreateInput>, JsonRejection>,
) -> Result<Response, WebError> {
    let input = body(b)?;
    let ar = domain::create(&state, &id, input).await?;
    Ok((StatusCode::CREATED, Json(domain::view(&state, &id, &ar))).into_response())
}

/// `GET /api/v1/requests/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let ar = domain::get_visible(&state, &id, &name).await?;
    Ok(Json(domain::view(&state, &id, &ar)).into_response())
}

/// `GET /api/v1/requests/{name}/timeline`: the audit events of one request, oldest first.
pub async fn timeline(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    domain::get_visible(&state, &id, &name).await?;
    let mut events = state
        .store
        .audit_events(&AuditQuery {
            request: Some(name),
            limit: 1000,
            ..Default::default()
        })
        .await?;
    events.reverse();
    Ok(Json(json!({"events": events})).into_response())
}

/// Body of a decision (every field optional; which ones count depends on the action).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionBody {
    ttl_seconds: Option<i64>,
    reason: Option<String>,
    seconds: Option<i64>,
}

/// `POST /api/v1/requests/{name}/{approve|deny|revoke|withdraw|extend}`.
pub async fn decide(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path((name, action)): Path<(String, String)>,
    b: Result<Json<DecisionBody>, JsonRejection>,
) -> Result<Response, WebError> {
    let b = match b {
        Ok(Json(b)) => b,
        // No body at all (e.g. approve with the requested TTL) means no fields.
        Err(JsonRejection::MissingJsonContentType(_)) => DecisionBody::default(),
        Err(e) => return Err(e.into()),
    };
    let decision = match action.as_str() {
        "approve" => DecisionInput::Approve {
            ttl_seconds: b.ttl_seconds,
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
    let ar = domain::decide(&state, &id, &name, decision).await?;
    Ok(Json(domain::view(&state, &id, &ar)).into_response())
}
