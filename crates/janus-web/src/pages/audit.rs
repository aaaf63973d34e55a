//! The audit log page (admins): filters, keyset pagination and export links.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use janus_store::{AuditKind, AuditQuery};
use maud::html;
use serde::Deserialize;

use crate::auth::{Authenticated, percent_encode};
use crate::error::WebError;
use crate::pages::{Nav, PageError, page};
use crate::state::AppState;
use crate::timefmt;

/// Audit filters (also used by the API).
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct AuditFilter {
    /// Actor email or username (exact).
    pub actor: Option<String>,
    /// Request name.
    pub request: Option<String>,
    /// Cluster.
    pub cluster: Option<String>,
    /// Event kind (`request.approved`…).
    pub kind: Option<String>,
    /// From (RFC 3339 or YYYY-MM-DD).
    pub since: Option<String>,
    /// Until (RFC 3339 or YYYY-MM-DD).
    pub until: Option<String>,
    /// Keyset cursor: events older than this id.
    pub before: Option<i64>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<i64>,
}

fn parse_day_or_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, WebError> {
    let t = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    crate::requests::parse_time(&t)
        .ok_or_else(|| WebError::invalid("since", format!("{s:?} is not a date (YYYY-MM-DD) or RFC 3339 time")))
}

impl AuditFilter {
    /// The store query.
    pub fn query(&self) -> Result<AuditQuery, WebError> {
        let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
        if let Some(k) = nonempty(&self.kind)
            && k.parse::<AuditKind>().is_err()
        {
            return Err(WebError::invalid("kind", format!("unknown event kind {k:?}")));
        }
        Ok(AuditQuery {
            since: nonempty(&self.since).map(|s| parse_day_or_time(&s)).transpose()?,
            until: nonempty(&self.until).map(|s| parse_day_or_time(&s)).transpose()?,
            actor: nonempty(&self.actor),
            request: nonempty(&self.request),
            cluster: nonempty(&self.cluster),
            kind: nonempty(&self.kind),
            before_id: self.before,
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
        })
    }
}

/// `GET /audit`.
pub async fn show(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Query(f): Query<AuditFilter>,
) -> Result<Response, PageError> {
    if !id.is_admin {
        return Err(PageError(WebError::Forbidden("only admins read the audit log".into())));
    }
    let q = f.query()?;
    let events = state.store.audit_events(&q).await.map_err(WebError::from)?;
    let filters = format!(
        "actor={}&request={}&cluster={}&kind={}&since={}&until={}",
        percent_encode(f.actor.as_deref().unwrap_or("")),
        percent_encode(f.request.as_deref().unwrap_or("")),
        percent_encode(f.cluster.as_deref().unwrap_or("")),
        percent_encode(f.kind.as_deref().unwrap_or("")),
        percent_encode(f.since.as_deref().unwrap_or("")),
        percent_encode(f.until.as_deref().unwrap_or("")),
    );
    let tz = state.tz;
    let main = html! {
        h1 { "Audit log" }
        form.filters method="get" action="/audit" {
            div { label for="a-actor" { "Actor" } input #a-actor type="text" name="actor" value=(f.actor.clone().unwrap_or_default()); }
            div { label for="a-req" { "Request" } input #a-req type="text" name="request" value=(f.request.clone().unwrap_or_default()); }
            div { label for="a-cluster" { "Cluster" } input #a-cluster type="text" name="cluster" value=(f.cluster.clone().unwrap_or_default()); }
            div { label for="a-kind" { "Event" } select #a-kind name="kind" { option value="" { "any" } @for k in AuditKind::ALL { option value=(k.as_str()) selected[f.kind.as_deref() == Some(k.as_str())] { (k.as_str()) } } } }
            div { label for="a-since" { "Since" } input #a-since type="text" name="since" placeholder="YYYY-MM-DD" value=(f.since.clone().unwrap_or_default()); }
            div { label for="a-until" { "Until" } input #a-until type="text" name="until" placeholder="YYYY-MM-DD" value=(f.until.clone().unwrap_or_default()); }
            div { button.secondary type="submit" { "Filter" } }
            div { a.button.secondary href=(format!("/api/v1/audit/export?format=csv&{filters}")) { "Export CSV" } }
            div { a.button.secondary href=(format!("/api/v1/audit/export?format=jsonl&{filters}")) { "Export JSON lines" } }
        }
        table #audit {
            thead { tr { th { "Time (" (tz.name()) ")" } th { "Event" } th { "Actor" } th { "Request" } th { "Cluster / namespaces" } th { "Details" } } }
            tbody {
                @for e in &events {
                    tr {
                        td.small { (timefmt::format(tz, e.at)) }
                        td { (e.kind) }
                        td { (e.actor) }
                        td { @if let Some(r) = &e.request { a href=(format!("/requests/{r}")) { (r) } } }
                        td { (e.cluster.clone().unwrap_or_default()) @if !e.namespaces.is_empty() { br; span.small { (e.namespaces.join(", ")) } } }
                        td.reason.small { (e.details.to_string()) }
                    }
                }
            }
        }
        @if events.is_empty() { p.muted { "No event matches." } }
        @if let Some(last) = events.last() {
            @if events.len() as i64 == q.limit {
                div.pager { a href=(format!("/audit?{filters}&before={}", last.id)) { "Older →" } }
            }
        }
    };
    Ok(page(&state, Some(&id), "Audit log", Nav::Audit, false, &headers, main).into_response())
}
