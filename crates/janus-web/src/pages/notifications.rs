//! The admins' Notifications page: per sink the deliveries sent, pending and dead, and the dead letters
//! with the answer that ended them and a Retry button (`api::notifications` does the work).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::api::notifications as api;
use crate::auth::Authenticated;
use crate::pages::{Nav, PageError, csrf_field, page};
use crate::state::AppState;
use crate::timefmt;

/// What the page says after a retry.
#[derive(Deserialize, Default)]
pub struct NotificationsQuery {
    done: Option<String>,
}

/// `GET /admin/notifications`.
pub async fn show(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Query(q): Query<NotificationsQuery>,
) -> Result<Response, PageError> {
    let view = api::overview(&state, &id).await?;
    let tz = state.tz;
    let main = html! {
        // Only the one fixed text: the query string is not echoed into the page.
        @if q.done.as_deref() == Some("retried") { div.flash.ok { "Done: the delivery is pending again." } }
        h1 { "Notifications" }
        h2 { "Deliveries per sink" }
        @if view.sinks.is_empty() {
            p.muted { "Nothing queued yet." }
        } @else {
            table #sink-counts {
                thead { tr { th { "Sink" } th { "Sent" } th { "Pending" } th { "Dead" } } }
                tbody {
                    @for s in &view.sinks {
                        tr data-sink=(s.sink) {
                            td { (s.sink) }
                            td.sent { (s.sent) }
                            td.pending { (s.pending) }
                            td.dead { (s.dead) }
                        }
                    }
                }
            }
        }
        h2 { "Dead letters" }
        p.small {
            "Deliveries given up: the sink refused them, or kept failing until the retry time ran out. "
            "Fix the cause, then retry: the delivery goes out again with its idempotency key."
        }
        @if view.dead.is_empty() {
            p.muted #no-dead-letters { "No dead letters." }
        } @else {
            table #dead-letters {
                thead { tr { th { "Sink" } th { "Event" } th { "Attempts" } th { "Last error" } th { "Event time" } th { "" } } }
                tbody {
                    @for d in &view.dead {
                        tr data-dead-letter=(d.id) {
                            td { (d.sink) }
                            td { (d.kind) br; span.small { (d.event_key) } }
                            td { (d.attempts) }
                            td.small {
                                @if let Some(code) = d.last_status { (code) " " }
                                (d.last_error.as_deref().unwrap_or("—"))
                            }
                            td.small { (timefmt::format(tz, d.event_at)) }
                            td {
                                form.inline method="post" action=(format!("/admin/notifications/{}/retry", d.id)) {
                                    (csrf_field(&id))
                                    button.secondary type="submit" { "Retry" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        &state,
        Some(&id),
        "Notifications",
        Nav::Notifications,
        false,
        &headers,
        main,
    )
    .into_response())
}

/// `POST /admin/notifications/{id}/retry` (a form with the CSRF field; the session layer checks it).
pub async fn retry(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(dead_id): Path<String>,
) -> Result<Response, PageError> {
    api::retry(&state, &id, &dead_id).await?;
    Ok(Redirect::to("/admin/notifications?done=retried").into_response())
}
