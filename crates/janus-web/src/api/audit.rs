//! `/api/v1/audit`: query and export the audit log (admins only).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use janus_store::{AuditEvent, ExportFormat};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use crate::auth::Authenticated;
use crate::error::WebError;
use crate::extract::{Json, Query};
use crate::pages::audit::AuditFilter;
use crate::state::AppState;

/// A page of audit events.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEvent>,
    /// The `before` cursor of the next page (the last event's id).
    pub next_before: Option<i64>,
}

/// `GET /api/v1/audit`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", summary = "Audit events, newest first (admins)",
    params(
        ("actor" = Option<String>, Query, description = "Only this actor"),
        ("request" = Option<String>, Query, description = "Only this AccessRequest"),
        ("cluster" = Option<String>, Query, description = "Only this cluster"),
        ("kind" = Option<String>, Query, description = "Only this kind (request.created, ...)"),
        ("since" = Option<String>, Query, description = "At or after (RFC 3339 or a date)"),
        ("until" = Option<String>, Query, description = "Before (RFC 3339 or a date)"),
        ("before" = Option<i64>, Query, description = "Keyset cursor: nextBefore of the previous page"),
        ("limit" = Option<i64>, Query, description = "Page size, at most 1000"),
    ),
    responses(
        (status = 200, description = "Audit events, newest first", body = AuditPage),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 422, description = "Malformed query", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    q: Result<Query<AuditFilter>, WebError>,
) -> Result<Response, WebError> {
    if !id.is_admin {
        return Err(WebError::Forbidden("only admins read the audit log".into()));
    }
    let Query(f) = q?;
    let events = state.store.audit_events(&f.query()?).await?;
    let next = events.last().map(|e| e.id);
    Ok(Json(AuditPage {
        events,
        next_before: next,
    })
    .into_response())
}

/// `?format=` of the export.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `jsonl` (default) or `csv`.
    format: Option<String>,
    /// Only events at or after (RFC 3339 or a date).
    since: Option<String>,
}

/// `GET /api/v1/audit/export`: every event since a time, oldest first, as CSV or JSON lines.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit", summary = "Export the audit log, oldest first, as JSON lines or CSV (admins)", params(ExportQuery),
    responses(
        (status = 200, description = "The export, oldest first (JSON lines of AuditEvent, or CSV)",
            content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 422, description = "Unknown format or invalid time", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    q: Result<Query<ExportQuery>, WebError>,
) -> Result<Response, WebError> {
    if !id.is_admin {
        return Err(WebError::Forbidden("only admins export the audit log".into()));
    }
    let Query(q) = q?;
    let (format, ctype, ext) = match q.format.as_deref().unwrap_or("jsonl") {
        "csv" => (ExportFormat::Csv, "text/csv; charset=utf-8", "csv"),
        "jsonl" => (ExportFormat::Jsonl, "application/x-ndjson", "jsonl"),
        other => {
            return Err(WebError::invalid(
                "format",
                format!("unknown format {other:?}; use csv or jsonl"),
            ));
        }
    };
    let since = match q.since.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            AuditFilter {
                since: Some(s.to_string()),
                ..Default::default()
            }
            .query()?
            .since
            .ok_or_else(|| WebError::invalid("since", "invalid time"))?,
        ),
        None => None,
    };
    let mut buf: Vec<u8> = Vec::new();
    state.store.audit_export(since, format, &mut buf).await?;
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"janus-audit.{ext}\""),
            ),
        ],
        buf,
    )
        .into_response())
}
