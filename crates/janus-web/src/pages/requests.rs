//! The engineer's pages: the request form, "my requests", a request's detail with its timeline, and the
//! form endpoints for decisions (shared with the admin dashboard).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use janus_api::access_request::Phase;
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::{Authenticated, Identity};
use crate::error::WebError;
use crate::pages::{FormData, Nav, PageError, csrf_field, page, phase_badge};
use crate::service::{ClusterService, CreateInput, DecisionInput, ListFilter, RequestService, RequestView};
use crate::state::AppState;
use crate::timefmt;
use janus_api::config::Config;

/// Most audit events the detail page shows (the newest ones).
const TIMELINE_LIMIT: i64 = 200;

/// Query of the request form.
#[derive(Deserialize, Default)]
pub struct NewQuery {
    cluster: Option<String>,
}

struct FormState {
    cluster: String,
    namespaces: Vec<String>,
    ttl: i64,
    reason: String,
    error: Option<(String, String)>,
}

/// The duration choices: the default, then doubling steps up to the maximum, and the maximum.
pub fn ttl_choices(c: &Config) -> Vec<i64> {
    let mut v = vec![c.default_ttl_seconds];
    for o in &c.approval_ttl_options {
        if *o >= c.default_ttl_seconds {
            v.push(*o);
        }
    }
    let mut t = c.default_ttl_seconds;
    while t < c.max_ttl_seconds {
        t = (t * 2).min(c.max_ttl_seconds);
        v.push(t);
    }
    v.sort_unstable();
    v.dedup();
    v
}

async fn render_form(
    state: &AppState,
    clusters: &ClusterService,
    id: &Identity,
    headers: &HeaderMap,
    f: FormState,
) -> Response {
    let ns = clusters.namespaces(&f.cluster).await;
    let clusters = clusters.list().await;
    let field_error = |name: &str| -> Option<String> {
        f.error
            .as_ref()
            .filter(|(field, _)| field == name)
            .map(|(_, m)| m.clone())
    };
    let other_error = f
        .error
        .as_ref()
        .filter(|(field, _)| !["cluster", "namespaces", "ttlSeconds", "reason"].contains(&field.as_str()))
        .map(|(_, m)| m.clone());
    let main = html! {
        h1 { "Request access" }
        div.panel {
            @if let Some(e) = &other_error { p.error role="alert" { (e) } }
            form #request-form method="post" action="/requests" {
                (csrf_field(id))
                label for="cluster" { "Cluster" }
                select #cluster name="cluster" {
                    @for c in &clusters {
                        option value=(c.name) selected[c.name == f.cluster] { (c.display_name) }
                    }
                }
                @if let Some(e) = field_error("cluster") { p.error { (e) } }
                label for="ns-filter" { "Namespaces" }
                input #ns-filter type="search" placeholder="Filter namespaces" autocomplete="off";
                div.nslist {
                    @match &ns {
                        Ok(list) if list.is_empty() => { "No namespaces can be requested on this cluster." }
                        Ok(list) => {
                            @for n in list {
                                label { input type="checkbox" name="namespaces" value=(n) checked[f.namespaces.contains(n)]; (n) }
                            }
                        }
                        Err(e) => { p.error { (e.to_string()) } }
                    }
                }
                @if let Some(e) = field_error("namespaces") { p.error { (e) } }
                label for="ttl" { "Duration" }
                select #ttl name="ttlSeconds" {
                    @for t in ttl_choices(&state.config) {
                        option value=(t) selected[t == f.ttl] { (timefmt::duration(t)) }
                    }
                }
                @if let Some(e) = field_error("ttlSeconds") { p.error { (e) } }
                label for="reason" { "Reason" }
                textarea #reason name="reason" maxlength="1000" required placeholder="What do you need to do, and why?" { (f.reason) }
                @if let Some(e) = field_error("reason") { p.error { (e) } }
                p.muted.small { "An admin approves the request; access ends by itself after the duration." }
                p { button type="submit" { "Submit request" } }
            }
        }
    };
    let mut p = page(state, Some(id), "Request access", Nav::New, false, headers, main);
    if f.error.is_some() {
        p.status = StatusCode::UNPROCESSABLE_ENTITY;
    }
    p.into_response()
}

/// `GET /requests/new`.
pub async fn new_form(
    State(state): State<AppState>,
    State(clusters): State<ClusterService>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Query(q): Query<NewQuery>,
) -> Response {
    let cluster = q.cluster.unwrap_or_else(|| state.config.central().to_string());
    let f = FormState {
        cluster,
        namespaces: vec![],
        ttl: state.config.default_ttl_seconds,
        reason: String::new(),
        error: None,
    };
    render_form(&state, &clusters, &id, &headers, f).await
}

/// `POST /requests`.
pub async fn create(
    State(state): State<AppState>,
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    form: FormData,
) -> Result<Response, PageError> {
    let cluster = form.get("cluster").unwrap_or_default().to_string();
    let namespaces = form.all("namespaces");
    let reason = form.get("reason").unwrap_or_default().to_string();
    let ttl_raw = form.get("ttlSeconds").unwrap_or_default();
    let ttl = ttl_raw.parse::<i64>().ok();
    let input = CreateInput {
        cluster: cluster.clone(),
        namespaces: namespaces.clone(),
        ttl_seconds: ttl,
        reason: reason.clone(),
    };
    let result = if ttl.is_none() && !ttl_raw.is_empty() {
        Err(WebError::invalid("ttlSeconds", "choose a duration"))
    } else {
        svc.create(&id, input).await.map_err(WebError::from)
    };
    match result {
        Ok(ar) => {
            let name = ar.metadata.name.unwrap_or_default();
            Ok(Redirect::to(&format!("/requests/{name}?done=created")).into_response())
        }
        Err(e @ (WebError::Invalid { .. } | WebError::TooMany(_))) => {
            let field = match &e {
                WebError::Invalid { field, .. } => field.to_string(),
                _ => "limit".into(),
            };
            let f = FormState {
                cluster,
                namespaces,
                ttl: ttl.unwrap_or(state.config.default_ttl_seconds),
                reason,
                error: Some((field, e.to_string())),
            };
            Ok(render_form(&state, svc.clusters(), &id, &headers, f).await)
        }
        Err(e) => Err(PageError(e)),
    }
}

/// Row cells shared by the request tables.
pub fn expires_cell(tz: chrono_tz::Tz, r: &RequestView) -> Markup {
    html! {
        @if r.phase == Phase::Active {
            @if let Some(e) = &r.expires_at {
                span.countdown data-expires=(e) { "…" }
                br; span.muted.small { (timefmt::format_str(tz, e)) }
            }
        } @else if let Some(e) = &r.ended_at {
            span.muted.small { "ended " (timefmt::format_str(tz, e)) }
        } @else {
            span.muted.small { (timefmt::duration(r.effective_ttl_seconds)) }
        }
    }
}

/// The action buttons allowed on a request.
pub fn action_forms(config: &Config, id: &Identity, r: &RequestView, back: &str) -> Markup {
    let a = r.actions;
    let base = format!("/requests/{}", r.name);
    html! {
        div.actions {
            @if a.terminal { a.button href=(format!("/terminal/{}", r.name)) { "Open terminal" } }
            @if a.approve {
                form.inline method="post" action=(format!("{base}/approve")) {
                    (csrf_field(id)) input type="hidden" name="back" value=(back);
                    button type="submit" title="Approve with the requested duration" { "Approve (" (timefmt::duration(r.ttl_seconds)) ")" }
                }
                @if !config.approval_ttl_options.is_empty() {
                    form.inline method="post" action=(format!("{base}/approve")) {
                        (csrf_field(id)) input type="hidden" name="back" value=(back);
                        select name="ttlSeconds" aria-label="Approve for" {
                            @for o in &config.approval_ttl_options { option value=(o) { (timefmt::duration(*o)) } }
                        }
                        button.secondary type="submit" { "Approve for" }
                    }
                }
            }
            @if a.deny {
                form.inline method="post" action=(format!("{base}/deny")) {
                    (csrf_field(id)) input type="hidden" name="back" value=(back);
                    input type="text" name="reason" placeholder="Reason for denial" required maxlength="1000" aria-label="Reason for denial";
                    button.danger type="submit" { "Deny" }
                }
            }
            @if a.extend {
                form.inline method="post" action=(format!("{base}/extend")) {
                    (csrf_field(id)) input type="hidden" name="back" value=(back);
                    select name="seconds" aria-label="Extend by" {
                        @for o in [900i64, 1800, 3600, 7200] { option value=(o) { "+" (timefmt::duration(o)) } }
                    }
                    button.secondary type="submit" { "Extend" }
                }
            }
            @if a.revoke {
                form.inline method="post" action=(format!("{base}/revoke")) data-confirm="Revoke this access now? Open terminals close at once." {
                    (csrf_field(id)) input type="hidden" name="back" value=(back);
                    input type="text" name="reason" placeholder="Reason (optional)" maxlength="1000" aria-label="Reason for revocation";
                    button.danger type="submit" { "Revoke" }
                }
            }
            @if a.withdraw {
                form.inline method="post" action=(format!("{base}/withdraw")) data-confirm="Withdraw this request?" {
                    (csrf_field(id)) input type="hidden" name="back" value=(back);
                    button.secondary type="submit" { "Withdraw" }
                }
            }
        }
    }
}

/// `GET /requests`: my requests.
pub async fn mine(
    State(state): State<AppState>,
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let f = ListFilter {
        scope: Some("mine".into()),
        offset: q.offset,
        limit: Some(50),
        ..Default::default()
    };
    let page_data = svc.list_visible(&id, &f);
    let main = html! {
        h1 { "My requests" }
        @if page_data.total == 0 {
            div.panel { p { "You have no requests yet. " a href="/requests/new" { "Request access" } } }
        } @else {
            table {
                thead { tr { th { "Request" } th { "Cluster" } th { "Namespaces" } th { "Phase" } th { "Expires" } th { "" } } }
                tbody {
                    @for r in &page_data.items {
                        tr data-request=(r.name) {
                            td { a href=(format!("/requests/{}", r.name)) { (r.name) } br; span.muted.small { (r.reason.chars().take(80).collect::<String>()) } }
                            td { (r.cluster_display_name) }
                            td { (r.namespaces.join(", ")) }
                            td { (phase_badge(r.phase)) @if !r.message.is_empty() && r.phase.is_terminal() { br; span.muted.small { (r.message) } } }
                            td { (expires_cell(state.tz, r)) }
                            td { (action_forms(&state.config, &id, r, "/requests")) }
                        }
                    }
                }
            }
            (pager("/requests?", page_data.offset, page_data.limit, page_data.total))
        }
    };
    page(&state, Some(&id), "My requests", Nav::Mine, true, &headers, main).into_response()
}

/// `?offset=` of paged lists.
#[derive(Deserialize, Default)]
pub struct PageQuery {
    offset: Option<usize>,
    done: Option<String>,
}

/// Previous/next links.
pub fn pager(base: &str, offset: usize, limit: usize, total: usize) -> Markup {
    html! {
        @if total > limit {
            div.pager {
                @if offset > 0 { a href=(format!("{base}offset={}", offset.saturating_sub(limit))) { "← Newer" } }
                span.muted { (offset + 1) "–" ((offset + limit).min(total)) " of " (total) }
                @if offset + limit < total { a href=(format!("{base}offset={}", offset + limit)) { "Older →" } }
            }
        }
    }
}

fn done_message(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "Request submitted. An admin will decide on it; this page updates by itself.",
        "approve" => "Approved. Access is being granted.",
        "deny" => "Denied.",
        "revoke" => "Revoked. Credentials are being removed and open terminals close.",
        "withdraw" => "Withdrawn.",
        "extend" => "Extended.",
        _ => return None,
    })
}

/// `GET /requests/{name}`: detail and timeline.
pub async fn detail(
    State(state): State<AppState>,
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let ar = svc.get_visible(&id, &name).await?;
    let r = svc.view(&id, &ar);
    let events = svc.timeline_of(&ar, TIMELINE_LIMIT).await;
    let tz = state.tz;
    let main = html! {
        @if let Some(m) = done_message(q.done.as_deref()) { div.flash.ok { (m) } }
        h1 { "Request " (r.name) " " (phase_badge(r.phase)) }
        div.panel {
            dl.kv {
                dt { "Requester" } dd { (r.requester) }
                dt { "Cluster" } dd { (r.cluster_display_name) " (" (r.cluster) ")" }
                dt { "Namespaces" } dd { (r.namespaces.join(", ")) }
                dt { "Duration" } dd { (timefmt::duration(r.ttl_seconds)) @if r.approval.as_ref().is_some_and(|a| a.ttl_seconds.is_some()) { " (approved for " (timefmt::duration(r.effective_ttl_seconds)) ")" } }
                dt { "Reason" } dd { (r.reason) }
                @if let Some(c) = &r.created_at { dt { "Created" } dd { (timefmt::format_str(tz, c)) } }
                @if let Some(a) = &r.approval { dt { "Approved by" } dd { (a.by) " at " (timefmt::format_str(tz, &a.at)) } }
                @if let Some(d) = &r.denial { dt { "Denied by" } dd { (d.by) ": " (d.reason) } }
                @if let Some(v) = &r.revocation { dt { "Revoked by" } dd { (v.by) ": " (v.reason) } }
                @if let Some(w) = &r.withdrawal { dt { "Withdrawn" } dd { (timefmt::format_str(tz, &w.at)) } }
                @if let Some(e) = &r.expires_at {
                    dt { "Expires" } dd { (timefmt::format_str(tz, e)) @if r.phase == Phase::Active { " — " span.countdown data-expires=(e) { "…" } " left" } }
                }
                @if let Some(e) = &r.ended_at { dt { "Ended" } dd { (timefmt::format_str(tz, e)) } }
                @if !r.message.is_empty() { dt { "Status" } dd { (r.message) } }
            }
            p { (action_forms(&state.config, &id, &r, &format!("/requests/{}", r.name))) }
        }
        h2 { "Timeline" }
        div.panel {
            @match &events {
                Ok(list) if !list.is_empty() => {
                    ul.timeline {
                        @for e in list {
                            li { time { (timefmt::format(tz, e.at)) } strong { (e.kind) } " by " (e.actor)
                                @if !e.details.is_null() && e.details != serde_json::json!({}) { " " span.muted.small { (e.details.to_string()) } } }
                        }
                    }
                }
                _ => {
                    @if events.is_err() { p.muted.small { "The audit log is unavailable; showing the controller's conditions." } }
                    ul.timeline {
                        @for c in &r.conditions {
                            li { time { (timefmt::format_str(tz, &c.last_transition_time)) } strong { (c.type_) } " " (c.reason) ": " (c.message) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        &state,
        Some(&id),
        &format!("Request {name}"),
        Nav::Mine,
        true,
        &headers,
        main,
    )
    .into_response())
}

/// `POST /requests/{name}/{action}` from the pages.
pub async fn decide(
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    Path((name, action)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    let reason = form.get("reason").unwrap_or_default().to_string();
    let decision = match action.as_str() {
        "approve" => DecisionInput::Approve {
            ttl_seconds: match form.get("ttlSeconds").filter(|s| !s.is_empty()) {
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| WebError::invalid("ttlSeconds", "choose a duration"))?,
                ),
                None => None,
            },
        },
        "deny" => DecisionInput::Deny { reason },
        "revoke" => DecisionInput::Revoke { reason },
        "withdraw" => DecisionInput::Withdraw,
        "extend" => DecisionInput::Extend {
            seconds: form
                .get("seconds")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| WebError::invalid("seconds", "choose how long to extend"))?,
        },
        _ => return Err(PageError(WebError::NotFound("no such action".into()))),
    };
    let verb = decision.verb();
    svc.decide(&id, &name, decision).await?;
    let back = crate::auth::safe_next(form.get("back"));
    let sep = if back.contains('?') { '&' } else { '?' };
    let target = if back == "/" {
        format!("/requests/{name}?done={verb}")
    } else {
        format!("{back}{sep}done={verb}")
    };
    Ok(Redirect::to(&target).into_response())
}
