//! `/api/v1/audit`: query and export the audit log (admins only).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use janus_store::ExportFormat;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Authenticated;
use crate::error::WebError;
use crate::pages::audit::AuditFilter;
use crate::state::AppState;

/// `GET /api/v1/audit`.
pub async fn list(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    q: Result<Query<AuditFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, WebError> {
    if !id.is_admin {
        return Err(WebError::Forbidden("only admins read the audit log".into()));
    }
    let Query(f) = q.map_err(|e| WebError::invalid("query", e.body_text()))?;
    let events = state.store.audit_events(&f.query()?).await?;
    let next = events.last().map(|e| e.id);
    Ok(Json(json!({"events": events, "nextBefore": next})).into_response())
}

/// `?format=` of the export.
#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
    since: Option<String>,
}

/// `GET /api/v1/audit/export`: every event since a time, oldest first, as CSV or JSON lines.
pub async fn export(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Query(q): Query<ExportQuery>,
) -> Result<Response, WebError> {
    if !id.is_admin {
        return Err(WebError::Forbidden("only admins export the audit log".into()));
    }
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
