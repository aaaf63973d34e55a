//! Admin pages: the approval dashboard (pending first, filters, pagination, live) and local user management.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use janus_api::access_request::Phase;
use maud::html;
use serde::Deserialize;

use crate::api::users as user_api;
use crate::auth::{Authenticated, percent_encode};
use crate::error::WebError;
use crate::pages::requests::{access_cell, action_forms, badges, expires_cell, pager, quorum_text};
use crate::pages::{FormData, Nav, PageError, csrf_field, page, phase_badge};
use crate::service::{ClusterService, ListFilter, RequestService};
use crate::state::AppState;
use crate::timefmt;

/// Dashboard filters.
#[derive(Deserialize, Default)]
pub struct DashQuery {
    cluster: Option<String>,
    requester: Option<String>,
    phase: Option<String>,
    since: Option<String>,
    offset: Option<usize>,
    done: Option<String>,
}

const PHASES: [&str; 9] = [
    "Pending",
    "Scheduled",
    "Approved",
    "Active",
    "Expired",
    "Denied",
    "Revoked",
    "Cancelled",
    "Failed",
];

/// `GET /admin`.
pub async fn dashboard(
    State(state): State<AppState>,
    State(svc): State<RequestService>,
    State(clusters): State<ClusterService>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Query(q): Query<DashQuery>,
) -> Result<Response, PageError> {
    let mine = svc.approvals(&id).await;
    if !id.is_admin && !mine.approver {
        return Err(PageError(WebError::Forbidden(
            "only approvers see the approvals page: no approval policy names you".into(),
        )));
    }
    let since = q.since.as_deref().filter(|s| !s.is_empty()).map(|d| {
        if d.len() == 10 {
            format!("{d}T00:00:00Z")
        } else {
            d.to_string()
        }
    });
    let all = if id.is_admin {
        let f = ListFilter {
            scope: Some("all".into()),
            cluster: q.cluster.clone(),
            requester: q.requester.clone(),
            phase: q.phase.clone(),
            since,
            limit: Some(50),
            offset: q.offset,
        };
        Some(svc.list(&id, &f)?)
    } else {
        None
    };
    let clusters = clusters.list().await;
    let base = format!(
        "/admin?cluster={}&requester={}&phase={}&since={}&",
        percent_encode(q.cluster.as_deref().unwrap_or("")),
        percent_encode(q.requester.as_deref().unwrap_or("")),
        percent_encode(q.phase.as_deref().unwrap_or("")),
        percent_encode(q.since.as_deref().unwrap_or(""))
    );
    let back = "/admin";
    let main = html! {
        @if let Some(d) = q.done.as_deref() { @if ["approve","deny","revoke","extend","withdraw","acknowledge"].contains(&d) { div.flash.ok { "Done: " (d) } } }
        h1 { "Approvals" }
        h2 { "Waiting for my decision (" (mine.pending.len()) ")" }
        @if mine.pending.is_empty() {
            div.panel.muted #pending-empty { "Nothing waits for your decision." }
        } @else {
            table #pending {
                thead { tr { th { "Requester" } th { "Cluster / namespaces" } th { "Reason" } th { "Asked" } th { "Policy" } th { "Decide" } } }
                tbody {
                    @for r in &mine.pending {
                        tr data-request=(r.name) {
                            td { a href=(format!("/requests/{}", r.name)) { (r.requester) } }
                            td { (r.cluster_display_name) br; span.small { (r.namespaces.join(", ")) } br; (access_cell(r)) }
                            td.reason { (r.reason) }
                            td.small { (r.created_at.as_deref().map(|c| timefmt::format_str(state.tz, c)).unwrap_or_default()) br; (timefmt::duration(r.ttl_seconds))
                                @if let Some(t) = &r.start_at { br; "starts " (timefmt::format_str(state.tz, t)) } }
                            td.small.policy { (r.policy.name) br; span.quorum { (quorum_text(&r.policy)) } }
                            td { (action_forms(&state.config, &id, r, back)) }
                        }
                    }
                }
            }
        }
        h2 { "Break-glass awaiting review (" (mine.awaiting_review.len()) ")" }
        @if mine.awaiting_review.is_empty() {
            div.panel.muted #review-empty { "No break-glass access waits for your review." }
        } @else {
            table #awaiting-review {
                thead { tr { th { "Requester" } th { "Cluster / namespaces" } th { "Reason" } th { "Activated" } th { "Phase" } th { "Review" } } }
                tbody {
                    @for r in &mine.awaiting_review {
                        tr data-request=(r.name) {
                            td { a href=(format!("/requests/{}", r.name)) { (r.requester) } }
                            td { (r.cluster_display_name) br; span.small { (r.namespaces.join(", ")) } br; (access_cell(r)) }
                            td.reason { (r.reason) }
                            td.small { (r.break_glass_at.as_deref().map(|t| timefmt::format_str(state.tz, t)).unwrap_or_default()) br; (timefmt::duration(r.effective_ttl_seconds)) }
                            td { (phase_badge(r.phase)) (badges(r)) }
                            td { (action_forms(&state.config, &id, r, back)) }
                        }
                    }
                }
            }
        }
        @if let Some(all) = &all {
            h2 { "All requests" }
            form.filters method="get" action="/admin" {
                div { label for="f-cluster" { "Cluster" } select #f-cluster name="cluster" { option value="" { "any" } @for c in &clusters { option value=(c.name) selected[q.cluster.as_deref() == Some(c.name.as_str())] { (c.display_name) } } } }
                div { label for="f-req" { "Requester" } input #f-req type="text" name="requester" value=(q.requester.clone().unwrap_or_default()); }
                div { label for="f-phase" { "Phase" } select #f-phase name="phase" { option value="" { "any" } @for p in PHASES { option value=(p) selected[q.phase.as_deref() == Some(p)] { (p) } } } }
                div { label for="f-since" { "Created since" } input #f-since type="text" name="since" placeholder="YYYY-MM-DD" value=(q.since.clone().unwrap_or_default()); }
                div { button.secondary type="submit" { "Filter" } }
            }
            table #all {
                thead { tr { th { "Request" } th { "Requester" } th { "Cluster" } th { "Namespaces" } th { "Phase" } th { "Expires" } th { "" } } }
                tbody {
                    @for r in &all.items {
                        tr data-request=(r.name) {
                            td { a href=(format!("/requests/{}", r.name)) { (r.name) } }
                            td { (r.requester) }
                            td { (r.cluster_display_name) }
                            td { (r.namespaces.join(", ")) br; (access_cell(r)) }
                            td { (phase_badge(r.phase)) (badges(r)) }
                            td { (expires_cell(state.tz, r)) }
                            td { @if matches!(r.phase, Phase::Approved | Phase::Active) { (action_forms(&state.config, &id, r, back)) } }
                        }
                    }
                }
            }
            @if all.total == 0 { p.muted { "No request matches." } }
            (pager(&base, all.offset, all.limit, all.total))
        }
    };
    Ok(page(&state, Some(&id), "Approvals", Nav::Admin, true, &headers, main).into_response())
}

/// `GET /admin/users`.
pub async fn users(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Query(q): Query<DashQuery>,
) -> Result<Response, PageError> {
    if !id.is_admin {
        return Err(PageError(WebError::Forbidden("only admins manage users".into())));
    }
    let users = state.store.list_users().await.map_err(WebError::from)?;
    let tz = state.tz;
    let main = html! {
        @if let Some(d) = q.done.as_deref() { div.flash.ok { "Done: " (d) } }
        h1 { "Local users" }
        table {
            thead { tr { th { "Username" } th { "Email" } th { "Role" } th { "State" } th { "Changed" } th { "" } } }
            tbody {
                @for u in &users {
                    tr {
                        td { (u.username) }
                        td { (u.email) }
                        td { @if u.is_admin { "admin" } @else { "engineer" } }
                        td { @if u.disabled { "disabled" } @else if u.locked_until.is_some_and(|t| t > chrono::Utc::now()) { "locked" } @else { "active" } }
                        td.small { (timefmt::format(tz, u.updated_at)) }
                        td {
                            div.actions {
                                form.inline method="post" action=(format!("/admin/users/{}/update", percent_encode(&u.username))) {
                                    (csrf_field(&id))
                                    input type="hidden" name="isAdmin" value=(if u.is_admin { "false" } else { "true" });
                                    button.secondary type="submit" { @if u.is_admin { "Make engineer" } @else { "Make admin" } }
                                }
                                form.inline method="post" action=(format!("/admin/users/{}/update", percent_encode(&u.username))) {
                                    (csrf_field(&id))
                                    input type="hidden" name="disabled" value=(if u.disabled { "false" } else { "true" });
                                    button.secondary type="submit" { @if u.disabled { "Enable" } @else { "Disable" } }
                                }
                                form.inline method="post" action=(format!("/admin/users/{}/update", percent_encode(&u.username))) {
                                    (csrf_field(&id))
                                    input type="password" name="password" placeholder="New password" minlength="12" autocomplete="new-password" aria-label="New password";
                                    button.secondary type="submit" { "Set password" }
                                }
                                form.inline method="post" action=(format!("/admin/users/{}/delete", percent_encode(&u.username))) data-confirm="Delete this user?" {
                                    (csrf_field(&id))
                                    button.danger type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add a user" }
        div.panel {
            form method="post" action="/admin/users" {
                (csrf_field(&id))
                label for="u-name" { "Username" } input #u-name type="text" name="username" required;
                label for="u-email" { "Email" } input #u-email type="email" name="email" required;
                label for="u-pw" { "Password (at least 12 characters)" } input #u-pw type="password" name="password" minlength="12" required autocomplete="new-password";
                label { input type="checkbox" name="isAdmin" value="true"; " Admin" }
                p { button type="submit" { "Add user" } }
            }
        }
    };
    Ok(page(&state, Some(&id), "Users", Nav::Users, false, &headers, main).into_response())
}

/// `POST /admin/users`.
pub async fn create_user(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    form: FormData,
) -> Result<Response, PageError> {
    let input = user_api::NewUserInput {
        username: form.get("username").unwrap_or_default().to_string(),
        email: form.get("email").unwrap_or_default().to_string(),
        password: form.get("password").unwrap_or_default().to_string(),
        is_admin: form.get("isAdmin") == Some("true"),
    };
    user_api::create(&state, &id, input).await?;
    Ok(Redirect::to("/admin/users?done=created").into_response())
}

/// `POST /admin/users/{username}/update`.
pub async fn update_user(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(username): Path<String>,
    form: FormData,
) -> Result<Response, PageError> {
    let change = user_api::UserChangeInput {
        password: form.get("password").filter(|p| !p.is_empty()).map(str::to_string),
        is_admin: form.get("isAdmin").map(|v| v == "true"),
        disabled: form.get("disabled").map(|v| v == "true"),
    };
    user_api::update(&state, &id, &username, change).await?;
    Ok(Redirect::to("/admin/users?done=updated").into_response())
}

/// `POST /admin/users/{username}/delete`.
pub async fn delete_user(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(username): Path<String>,
) -> Result<Response, PageError> {
    user_api::delete(&state, &id, &username).await?;
    Ok(Redirect::to("/admin/users?done=deleted").into_response())
}
