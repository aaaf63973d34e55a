//! `/api/v1/notifications`: the notification outbox for admins: the deliveries per sink and state, the
//! dead letters with the answer that ended them, and putting a dead letter back to pending. The
//! Notifications page calls the same functions.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use janus_store::{OutboxRow, OutboxState};
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use crate::auth::{Authenticated, Identity};
use crate::error::WebError;
use crate::extract::{Json, Path};
use crate::state::AppState;

/// The most dead letters one answer lists (newest first); the store clamps it as it clamps pages.
const DEAD_LIMIT: i64 = 200;

fn require_admin(id: &Identity) -> Result<(), WebError> {
    if id.is_admin {
        Ok(())
    } else {
        Err(WebError::Forbidden("only admins see notification deliveries".into()))
    }
}

/// The deliveries of one sink, by state.
#[derive(Serialize, ToSchema, Debug, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SinkCounts {
    /// The sink's configured name.
    pub sink: String,
    /// Accepted by the receiver.
    pub sent: i64,
    /// Not delivered yet: due for a first attempt, or waiting for another after failures.
    pub pending: i64,
    /// Given up (dead letters).
    pub dead: i64,
}

/// A delivery given up.
#[derive(Serialize, ToSchema, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Its id (for retrying it).
    pub id: i64,
    /// The sink's configured name.
    pub sink: String,
    /// The audit event's kind (e.g. `request.created`).
    pub kind: String,
    /// The audit event's key.
    pub event_key: String,
    /// The idempotency key sent with each attempt (`<event key>/<sink>`).
    pub idempotency_key: String,
    /// Attempts made.
    pub attempts: i64,
    /// The status of the last failed answer (HTTP or SMTP), if there was one.
    pub last_status: Option<i64>,
    /// The last error, as the sink reported it (never a webhook URL or a secret).
    pub last_error: Option<String>,
    /// When the event happened.
    pub event_at: DateTime<Utc>,
    /// When the delivery was queued, or last put back by a retry.
    pub since: DateTime<Utc>,
}

impl From<OutboxRow> for DeadLetter {
    fn from(r: OutboxRow) -> Self {
        Self {
            id: r.id,
            sink: r.sink,
            kind: r.kind,
            event_key: r.event_key,
            idempotency_key: r.key,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            event_at: r.event_at,
            since: r.since,
        }
    }
}

/// The outbox as admins see it.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetters {
    /// Per sink (by name), the deliveries in each state.
    pub sinks: Vec<SinkCounts>,
    /// The dead letters, newest first (at most 200).
    pub dead: Vec<DeadLetter>,
}

/// Per-sink counts and the dead letters (admins only).
pub async fn overview(state: &AppState, id: &Identity) -> Result<DeadLetters, WebError> {
    require_admin(id)?;
    let mut sinks: BTreeMap<String, SinkCounts> = BTreeMap::new();
    for c in state.store.outbox_counts().await? {
        let e = sinks.entry(c.sink.clone()).or_insert_with(|| SinkCounts {
            sink: c.sink.clone(),
            ..SinkCounts::default()
        });
        match c.state {
            OutboxState::Sent => e.sent += c.count,
            OutboxState::Pending => e.pending += c.count,
            OutboxState::Dead => e.dead += c.count,
        }
    }
    let dead = state
        .store
        .list_dead(DEAD_LIMIT)
        .await?
        .into_iter()
        .map(DeadLetter::from)
        .collect();
    Ok(DeadLetters {
        sinks: sinks.into_values().collect(),
        dead,
    })
}

/// Puts dead letter `dead_id` back to pending, due now (admins only). The delivery keeps its
/// idempotency key, so a receiver that got an earlier attempt can drop the duplicate.
pub async fn retry(state: &AppState, id: &Identity, dead_id: &str) -> Result<(), WebError> {
    require_admin(id)?;
    let n: i64 = dead_id
        .parse()
        .map_err(|_| WebError::invalid("id", "a dead letter's id is a number"))?;
    if state.store.retry_dead(n).await? {
        tracing::info!(id = n, admin = %id.email, "dead letter put back to pending");
        return Ok(());
    }
    match state.store.outbox_row(n).await? {
        None => Err(WebError::NotFound(format!("no delivery {n}"))),
        Some(r) => Err(WebError::Conflict(format!(
            "delivery {n} is {}, not a dead letter",
            r.state.as_str()
        ))),
    }
}

/// `GET /api/v1/notifications/dead`.
#[utoipa::path(get, path = "/api/v1/notifications/dead", tag = "notifications",
    summary = "Notification deliveries per sink, and the dead letters (admins)",
    responses(
        (status = 200, description = "Counts per sink and the dead letters, newest first", body = DeadLetters),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn list_dead(State(state): State<AppState>, Authenticated(id): Authenticated) -> Result<Response, WebError> {
    Ok(Json(overview(&state, &id).await?).into_response())
}

/// `POST /api/v1/notifications/dead/{id}/retry`.
#[utoipa::path(post, path = "/api/v1/notifications/dead/{id}/retry", tag = "notifications",
    summary = "Put a dead letter back to pending (admins)",
    description = "The delivery is due at once, with a fresh dead-letter clock and its idempotency key; the attempts made are kept.",
    params(("id" = i64, Path, description = "The dead letter's id")),
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 204, description = "Pending again"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, CSRF token missing or wrong, or cross-site Origin", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "The delivery is not a dead letter (sent, or pending already)", body = ErrorBody),
        (status = 422, description = "The id is not a number", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn retry_handler(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    dead_id: Result<Path<String>, WebError>,
) -> Result<Response, WebError> {
    // Admins first: a non-admin learns nothing from how the path would have been read.
    require_admin(&id)?;
    let Path(dead_id) = dead_id?;
    retry(&state, &id, &dead_id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}
