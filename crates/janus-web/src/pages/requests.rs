//! The engineer's pages: the request form, "my requests", a request's detail with its timeline, and the
//! form endpoints for decisions (shared with the admin dashboard).

use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use janus_api::access_request::Phase;
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::{Authenticated, Identity};
use crate::error::WebError;
use crate::pages::{FormData, Nav, PageError, csrf_field, local_times, page, phase_badge};
use crate::service::scope::{RoleView, ScopeService, WorkloadView, parse_selector};
use crate::service::view::{ApproversSummary, PolicyPreview};
use crate::service::{CreateInput, DecisionInput, ListFilter, PolicyView, RequestService, RequestView};
use crate::state::AppState;
use crate::timefmt;
use janus_api::access_request::{PodScope, WorkloadKind, WorkloadRef};
use janus_api::config::Config;
use janus_api::policy::DEFAULT_ROLE;

/// Most audit events the detail page shows (the newest ones).
const TIMELINE_LIMIT: i64 = 200;

/// Query of the request form: everything optional, so a link can prefill it ("Request again").
#[derive(Deserialize, Default)]
pub struct NewQuery {
    cluster: Option<String>,
    /// Comma-separated namespace names.
    namespaces: Option<String>,
    reason: Option<String>,
    #[serde(rename = "ttlSeconds")]
    ttl_seconds: Option<String>,
    /// The access role (`roles:` name).
    role: Option<String>,
    /// A label selector in Kubernetes syntax: the scope "pods matching labels".
    #[serde(rename = "podSelector")]
    pod_selector: Option<String>,
    /// `Kind/name` of a workload: the scope "pods of a workload".
    workload: Option<String>,
}

/// The pod scope as the form holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ScopeChoice {
    /// Every pod of the namespaces.
    #[default]
    All,
    /// The pods of one workload, `Kind/name` (`Deployment/payments-api`).
    Workload(String),
    /// The pods matching a selector typed in Kubernetes syntax.
    Selector(String),
}

struct FormState {
    cluster: String,
    namespaces: Vec<String>,
    ttl: i64,
    reason: String,
    /// The start time as typed (`YYYY-MM-DDTHH:MM` in the display time zone); empty: when approved.
    start_at: String,
    break_glass: bool,
    /// The role chosen (`roles:` name).
    role: String,
    /// The pod scope chosen.
    scope: ScopeChoice,
    error: Option<(String, String)>,
}

/// The fields that show their error next to themselves; any other error is shown above the form.
const FORM_FIELDS: [&str; 8] = [
    "cluster",
    "namespaces",
    "ttlSeconds",
    "reason",
    "startAt",
    "breakGlass",
    "role",
    "podScope",
];

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
    svc: &RequestService,
    id: &Identity,
    headers: &HeaderMap,
    f: FormState,
) -> Response {
    let clusters = svc.clusters();
    let ns = clusters.namespaces(&f.cluster).await;
    let cluster_list = clusters.list().await;
    // The policy for what is chosen already (a "Request again" link, a form sent back with an error):
    // shown without JavaScript too; the script keeps it current as the choice changes.
    let preview = if f.namespaces.is_empty() {
        None
    } else {
        svc.preview(id, &f.cluster, &f.namespaces, Some(f.ttl), Some(f.role.as_str()))
            .await
            .ok()
    };
    let field_error = |name: &str| -> Option<String> {
        f.error
            .as_ref()
            .filter(|(field, _)| field == name)
            .map(|(_, m)| m.clone())
    };
    let other_error = f
        .error
        .as_ref()
        .filter(|(field, _)| !FORM_FIELDS.contains(&field.as_str()))
        .map(|(_, m)| m.clone());
    let tz_name = &state.config.display_timezone;
    let glass_shown = f.break_glass || preview.as_ref().is_some_and(|p| p.break_glass_allowed);
    let roles = offered_roles(state, id, &f).await;
    // With one namespace chosen already (a form sent back, "Request again"), its workloads are listed
    // by the server too, so the picker works without JavaScript.
    let workloads = match f.namespaces.as_slice() {
        [ns] => ScopeService::from_ref(state)
            .workloads(&f.cluster, ns)
            .await
            .map(|l| l.workloads)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let main = html! {
        h1 { "Request access" }
        div.panel {
            @if let Some(e) = &other_error { p.error role="alert" { (e) } }
            form #request-form method="post" action="/requests" {
                (csrf_field(id))
                label for="cluster" { "Cluster" }
                select #cluster name="cluster" {
                    @for c in &cluster_list {
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
                (role_choice(&roles, &f.role))
                @if let Some(e) = field_error("role") { p.error { (e) } }
                (scope_choice(&f.scope, &f.namespaces, &workloads))
                @if let Some(e) = field_error("podScope") { p.error { (e) } }
                (policy_hint(preview.as_ref()))
                label for="ttl" { "Duration" }
                select #ttl name="ttlSeconds" {
                    @for t in ttl_choices(&state.config) {
                        option value=(t) selected[t == f.ttl] { (timefmt::duration(t)) }
                    }
                }
                @if let Some(e) = field_error("ttlSeconds") { p.error { (e) } }
                label for="reason" { "Reason" }
                textarea #reason name="reason" maxlength="1000" required placeholder="What do you need to do, and why?" aria-describedby="reason-hint" { (f.reason) }
                p #reason-hint.small.muted {
                    @if let Some(h) = preview.as_ref().and_then(|p| p.reason.as_ref()) { (reason_hint_text(&h.description, &h.pattern)) }
                }
                @if let Some(e) = field_error("reason") { p.error { (e) } }
                label for="start-at" { "Start at (" (tz_name) ", optional)" }
                input #start-at type="datetime-local" name="startAt" value=(f.start_at) aria-describedby="start-at-hint";
                p #start-at-hint.small.muted { "Empty: access starts as soon as it is approved. A later start (up to 30 days ahead) can be approved in advance; the time is in " (tz_name) "." }
                @if let Some(e) = field_error("startAt") { p.error { (e) } }
                div #break-glass-box.break-glass.hidden[!glass_shown] {
                    label.check {
                        input #break-glass type="checkbox" name="breakGlass" value="true" checked[f.break_glass];
                        " Break glass: activate at once, without waiting for approval"
                    }
                    p.warning.small {
                        "Access starts immediately and is flagged as break-glass. Every approver of the policy can see it, and it stays "
                        "on their review list until one of them acknowledges it. Use it only for an emergency; the reason is reviewed."
                        " " span #glass-max { @if let Some(m) = preview.as_ref().and_then(|p| p.break_glass_max_ttl_seconds) { "Break-glass access lasts at most " (timefmt::duration(m)) "." } }
                    }
                }
                @if let Some(e) = field_error("breakGlass") { p.error { (e) } }
                p.muted.small { "Approvers decide on the request; access ends by itself after the duration." }
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

/// The role cards of the request form: one radio per role, its display name and what it allows. The
/// display name is the radio's name and the description its description (`aria-labelledby`,
/// `aria-describedby`), so a screen reader says both, apart.
pub fn role_choice(roles: &[(RoleView, bool)], chosen: &str) -> Markup {
    // A role asked for ("Request again") that the policy no longer allows gives way to the first allowed.
    let chosen = if roles.iter().any(|(r, ok)| *ok && r.name == chosen) {
        chosen
    } else {
        roles
            .iter()
            .find(|(_, ok)| *ok)
            .map_or(chosen, |(r, _)| r.name.as_str())
    };
    html! {
        fieldset #role-choice.choice {
            legend { "Access" }
            @for (r, allowed) in roles {
                @let desc = format!("role-desc-{}", r.name);
                @let title = format!("role-title-{}", r.name);
                label.role-card.unavailable[!allowed] data-role=(r.name) data-terminal=(r.terminal.as_deref().unwrap_or_default()) title=[(!allowed).then_some("Not allowed by the policy for the chosen namespaces")] {
                    input type="radio" name="role" value=(r.name) checked[r.name == chosen] disabled[!allowed] aria-labelledby=(title) aria-describedby=(desc);
                    span.role-text {
                        span.role-title id=(title) { (r.display_name) }
                        span.role-desc.small.muted id=(desc) { (r.description) }
                    }
                }
            }
        }
    }
}

/// The pod-scope picker: every pod (the default), the pods of a workload (offered with exactly one
/// namespace; `app.js` fills the workloads), or the pods matching a label selector (with a live preview of
/// the matching pods). Without JavaScript every part shows and posts as typed; the server checks it.
pub fn scope_choice(scope: &ScopeChoice, namespaces: &[String], workloads: &[WorkloadView]) -> Markup {
    let (all, workload, selector) = match scope {
        ScopeChoice::All => (true, None, None),
        ScopeChoice::Workload(w) => (false, Some(w.as_str()), None),
        ScopeChoice::Selector(s) => (false, None, Some(s.as_str())),
    };
    let one_namespace = namespaces.len() == 1;
    html! {
        fieldset #scope-choice.choice {
            legend { "Pods" }
            label.check { input type="radio" name="scope" value="all" checked[all]; " All pods of the namespaces" }
            label.check #scope-workload-option {
                input type="radio" name="scope" value="workload" checked[workload.is_some()] aria-describedby="workload-hint";
                " Pods of a workload"
            }
            div #scope-workload.scope-detail {
                label for="workload" { "Workload" }
                select #workload name="workload" {
                    option value="" { "Choose a workload" }
                    @for w in workloads {
                        @let value = format!("{}/{}", w.kind, w.name);
                        option value=(value) selected[workload == Some(value.as_str())] title=[w.selector.as_ref().map(|s| format!("pods with {s}"))] {
                            (w.kind) " " (w.name) " (" (w.replicas) @if w.replicas == 1 { " replica)" } @else { " replicas)" }
                        }
                    }
                    @if let Some(w) = workload.filter(|w| !w.is_empty() && !workloads.iter().any(|x| format!("{}/{}", x.kind, x.name) == *w)) {
                        option value=(w) selected { (w.replacen('/', " ", 1)) }
                    }
                }
                p #workload-hint.small.muted {
                    @if one_namespace { "The workload's own pod selector decides which pods are reachable, as it rolls out." }
                    @else { "Choose exactly one namespace to pick one of its Deployments, StatefulSets or DaemonSets." }
                }
            }
            label.check {
                input type="radio" name="scope" value="selector" checked[selector.is_some()];
                " Pods matching labels"
            }
            div #scope-selector.scope-detail {
                label for="pod-selector" { "Label selector" }
                input #pod-selector type="text" name="podSelector" value=(selector.unwrap_or_default()) placeholder="app=checkout,tier in (web,api)" autocomplete="off" spellcheck="false" aria-describedby="selector-preview";
                div #selector-preview.small aria-live="polite" {
                    span.muted { "Kubernetes selector syntax; only the matching pods of each namespace are reachable, as they come and go." }
                }
            }
        }
    }
}

/// "The reason must contain a ticket id such as OPS-1234".
fn reason_hint_text(description: &str, pattern: &str) -> String {
    if description.is_empty() {
        format!("The reason must contain a match of {pattern}.")
    } else {
        format!("The reason must contain {description}.")
    }
}

/// The policy a request for the chosen namespaces falls under (`#policy-hint`, filled in by `app.js`
/// from `GET /api/v1/policy` as the choice changes). Its data attributes carry what the script checks
/// on the client: the reason pattern (the server decides) and whether break-glass is offered.
pub fn policy_hint(p: Option<&PolicyPreview>) -> Markup {
    html! {
        div #policy-hint.policy-hint.hidden[p.is_none()] aria-live="polite" {
            @if let Some(p) = p {
                @if let Some(c) = &p.conflict {
                    p.error { (c) }
                } @else {
                    p.policy-line { "Policy " strong.policy-name { (p.policy) } @if !p.description.is_empty() { " — " (p.description) } }
                    ul.small {
                        li.approvers { (approvals_needed(p.approvals_required)) " from: " (approvers_text(&p.approvers)) }
                        li.ttl { "Longest duration: " (timefmt::duration(p.max_ttl_seconds))
                            @if !p.approval_ttl_options.is_empty() { "; approvers may choose " (p.approval_ttl_options.iter().map(|t| timefmt::duration(*t)).collect::<Vec<_>>().join(", ")) } }
                        @if let Some(h) = &p.reason { li.reason data-pattern=(h.pattern) { (reason_hint_text(&h.description, &h.pattern)) } }
                        @if p.auto_approval.would_approve { li.auto { "This request would be approved automatically now." } }
                        @else if let Some(w) = &p.auto_approval.why_not { li.auto.muted { "No automatic approval: " (w) } }
                    }
                }
            }
        }
    }
}

/// "2 approvals needed".
fn approvals_needed(n: u32) -> String {
    if n == 1 {
        "1 approval needed".into()
    } else {
        format!("{n} approvals needed")
    }
}

/// `GET /requests/new`.
pub async fn new_form(
    State(state): State<AppState>,
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Query(q): Query<NewQuery>,
) -> Response {
    let cluster = q
        .cluster
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| state.config.central().to_string());
    let namespaces = q
        .namespaces
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    let scope = match (
        q.workload.filter(|w| !w.is_empty()),
        q.pod_selector.filter(|s| !s.trim().is_empty()),
    ) {
        (Some(w), _) => ScopeChoice::Workload(w),
        (None, Some(s)) => ScopeChoice::Selector(s),
        (None, None) => ScopeChoice::All,
    };
    let f = FormState {
        cluster,
        namespaces,
        ttl: q
            .ttl_seconds
            .and_then(|t| t.parse().ok())
            .unwrap_or(state.config.default_ttl_seconds),
        reason: q.reason.unwrap_or_default(),
        start_at: String::new(),
        break_glass: false,
        role: q
            .role
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| DEFAULT_ROLE.to_string()),
        scope,
        error: None,
    };
    render_form(&state, &svc, &id, &headers, f).await
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
    let start_at = form.get("startAt").unwrap_or_default().trim().to_string();
    let break_glass = form.get("breakGlass") == Some("true");
    let role = form
        .get("role")
        .filter(|r| !r.is_empty())
        .unwrap_or(DEFAULT_ROLE)
        .to_string();
    // An unknown scope is the form's error, shown with "all pods" not checked-in silently: the form
    // comes back with the choice to make again.
    let (scope, scope_error) = match scope_of_form(&form) {
        Ok(s) => (s, None),
        Err(e) => (ScopeChoice::All, Some(e)),
    };
    let result = if ttl.is_none() && !ttl_raw.is_empty() {
        Err(WebError::invalid("ttlSeconds", "choose a duration"))
    } else if let Some(e) = scope_error {
        Err(e)
    } else {
        match pod_scope_of(&scope) {
            Err(e) => Err(e),
            Ok(pod_scope) => {
                let input = CreateInput {
                    cluster: cluster.clone(),
                    namespaces: namespaces.clone(),
                    ttl_seconds: ttl,
                    reason: reason.clone(),
                    start_at: Some(start_at.clone()).filter(|s| !s.is_empty()),
                    break_glass,
                    role: Some(role.clone()),
                    pod_scope,
                    // Parsed above, so its error shows next to the picker.
                    pod_selector: None,
                };
                svc.create(&id, input).await.map_err(WebError::from)
            }
        }
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
                start_at,
                break_glass,
                role,
                scope,
                error: Some((field, e.to_string())),
            };
            Ok(render_form(&state, &svc, &id, &headers, f).await)
        }
        Err(e) => Err(PageError(e)),
    }
}

/// The scope the form asks for: the `scope` radio (`all`, `workload`, `selector`); a form without it
/// (a script, an older page) asks by filling `podSelector` or `workload` alone. Any other `scope` value
/// is an error on `podScope`: reading it as "all pods" would widen what was asked for.
fn scope_of_form(form: &FormData) -> Result<ScopeChoice, WebError> {
    let workload = form.get("workload").unwrap_or_default().trim().to_string();
    let selector = form.get("podSelector").unwrap_or_default().trim().to_string();
    Ok(match form.get("scope") {
        Some("all") => ScopeChoice::All,
        Some("workload") => ScopeChoice::Workload(workload),
        Some("selector") => ScopeChoice::Selector(selector),
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            return Err(WebError::invalid(
                "podScope",
                format!("unknown pod scope {shown:?}: choose all pods, the pods of a workload, or a label selector"),
            ));
        }
        None if !workload.is_empty() => ScopeChoice::Workload(workload),
        None if !selector.is_empty() => ScopeChoice::Selector(selector),
        None => ScopeChoice::All,
    })
}

/// The `spec.podScope` of a form's choice; a workload not picked or a selector that does not parse is
/// the form's error on `podScope` (the service checks the rest, as for the API).
pub fn pod_scope_of(scope: &ScopeChoice) -> Result<Option<PodScope>, WebError> {
    match scope {
        ScopeChoice::All => Ok(None),
        ScopeChoice::Workload(w) => {
            let (kind, name) = w.split_once('/').unwrap_or(("", w.as_str()));
            let kind = match kind {
                "Deployment" => WorkloadKind::Deployment,
                "StatefulSet" => WorkloadKind::StatefulSet,
                "DaemonSet" => WorkloadKind::DaemonSet,
                _ => {
                    return Err(WebError::invalid(
                        "podScope",
                        "choose a workload (a Deployment, StatefulSet or DaemonSet of the one namespace)",
                    ));
                }
            };
            Ok(Some(PodScope {
                selector: None,
                workload: Some(WorkloadRef {
                    kind,
                    name: name.to_string(),
                }),
            }))
        }
        ScopeChoice::Selector(text) => {
            if text.trim().is_empty() {
                return Err(WebError::invalid(
                    "podScope",
                    "type a label selector such as app=checkout, or choose all pods",
                ));
            }
            let selector = parse_selector(text).map_err(|e| WebError::invalid("podScope", e))?;
            Ok(Some(PodScope {
                selector: Some(selector),
                workload: None,
            }))
        }
    }
}

/// The roles the form lists for `id`: every role some policy could let them have, each with whether the
/// policy governing what is chosen allows it (listed but disabled otherwise, so choosing other
/// namespaces can offer it again; `app.js` keeps this current). When a cluster cannot be asked, every
/// role counts as allowed: the server decides on submit.
async fn offered_roles(state: &AppState, id: &Identity, f: &FormState) -> Vec<(RoleView, bool)> {
    let scopes = ScopeService::from_ref(state);
    let listed = match scopes.roles_for(id, None, &[]).await {
        Ok(list) => list.roles,
        Err(e) => {
            tracing::debug!(error = %e, "roles for the request form");
            state.config.roles.iter().map(RoleView::of).collect()
        }
    };
    let allowed: Option<Vec<String>> = if f.namespaces.is_empty() {
        None
    } else {
        scopes
            .roles_for(id, Some(&f.cluster), &f.namespaces)
            .await
            .ok()
            .map(|l| l.roles.into_iter().map(|r| r.name).collect())
    };
    listed
        .into_iter()
        .map(|r| {
            let ok = allowed.as_ref().is_none_or(|a| a.contains(&r.name));
            (r, ok)
        })
        .collect()
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
        } @else if let Some(t) = r.start_at.as_deref().filter(|_| matches!(r.phase, Phase::Pending | Phase::Scheduled)) {
            span.muted.small { "starts " (timefmt::format_str(tz, t)) br; "for " (timefmt::duration(r.effective_ttl_seconds)) }
        } @else {
            span.muted.small { (timefmt::duration(r.effective_ttl_seconds)) }
        }
    }
}

/// The durations an approver may choose: the governing policy's options (they fall back to the global
/// `approvalTtlOptions`), else the global ones.
fn approval_options(config: &Config, r: &RequestView) -> Vec<i64> {
    if r.policy.approval_ttl_options.is_empty() {
        config.approval_ttl_options.clone()
    } else {
        r.policy.approval_ttl_options.clone()
    }
}

/// The extensions offered: the usual steps that fit in the room the policy leaves (the room itself when
/// none fits), so an admin is told the bound up front instead of being refused or silently capped.
fn extension_options(room: Option<i64>) -> Vec<i64> {
    const STEPS: [i64; 4] = [900, 1800, 3600, 7200];
    match room {
        None => STEPS.to_vec(),
        Some(r) if r <= 0 => Vec::new(),
        Some(r) => {
            let fit: Vec<i64> = STEPS.into_iter().filter(|s| *s <= r).collect();
            if fit.is_empty() { vec![r] } else { fit }
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
                // One form: the comment goes with either button; "use" tells the requested duration from the
                // one chosen in the list (a person approving "as asked" never sends the list's value).
                form.inline.approve method="post" action=(format!("{base}/approve")) {
                    (csrf_field(id)) input type="hidden" name="back" value=(back);
                    input type="text" name="comment" placeholder="Comment (optional)" maxlength="1000" aria-label="Approval comment";
                    button type="submit" name="use" value="requested" title="Approve with the requested duration" { "Approve (" (timefmt::duration(r.ttl_seconds)) ")" }
                    @let options = approval_options(config, r);
                    @if !options.is_empty() {
                        select name="ttlSeconds" aria-label="Approve for" {
                            @for o in &options { option value=(o) { (timefmt::duration(*o)) } }
                        }
                        button.secondary type="submit" name="use" value="chosen" { "Approve for" }
                    }
                }
            }
            @if r.acknowledge {
                form.inline method="post" action=(format!("{base}/acknowledge")) {
                    (csrf_field(id)) input type="hidden" name="back" value=(back);
                    input type="text" name="comment" placeholder="Review comment (optional)" maxlength="1000" aria-label="Review comment";
                    button type="submit" title="Record that this break-glass access was reviewed" { "Acknowledge" }
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
                @let options = extension_options(r.extension_room_seconds);
                @if options.is_empty() {
                    span.muted.no-extension { "Access cannot be extended: it already lasts as long as its policy allows." }
                } @else {
                    form.inline method="post" action=(format!("{base}/extend")) {
                        (csrf_field(id)) input type="hidden" name="back" value=(back);
                        select name="seconds" aria-label="Extend by" {
                            @for o in &options { option value=(o) { "+" (timefmt::duration(*o)) } }
                        }
                        button.secondary type="submit" { "Extend" }
                    }
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
                            td { (r.namespaces.join(", ")) br; (access_cell(r)) }
                            td { (phase_badge(r.phase)) (badges(r)) @if r.phase == Phase::Pending && r.policy.approvals_required > 1 { br; span.muted.small.quorum { (quorum_text(&r.policy)) } } @if !r.message.is_empty() && r.phase.is_terminal() { br; span.muted.small { (local_times(state.tz, &r.message)) } } }
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
        "acknowledge" => "Acknowledged: the break-glass access is recorded as reviewed.",
        _ => return None,
    })
}

/// The role and scope of a request in a table row; a role that is not the plain shell, or a pod scope,
/// is what an approver must not miss, so it is never left out of a row.
pub fn access_cell(r: &RequestView) -> Markup {
    html! { span.small.access-line data-role=(r.role.name) { (r.access) } }
}

/// Badges beside the phase: how the request got (or gets) its access.
pub fn badges(r: &RequestView) -> Markup {
    html! {
        @if r.auto_approved { " " span.badge.auto title="Approved by the policy's auto-approval rule, without a person" { "auto-approved" } }
        @if r.break_glass { " " span.badge.glass title="Activated at once by the requester under the policy's break-glass rule" { "break-glass" } }
        @if r.awaiting_review { " " span.badge.review { "awaiting review" } }
    }
}

/// "1 of 2 approvals".
pub fn quorum_text(p: &PolicyView) -> String {
    let noun = if p.approvals_required == 1 {
        "approval"
    } else {
        "approvals"
    };
    format!("{} of {} {noun}", p.approvals_given, p.approvals_required)
}

/// Who may approve, in words.
pub fn approvers_text(a: &ApproversSummary) -> String {
    let mut parts = Vec::new();
    if a.admins {
        parts.push("admins".to_string());
    }
    parts.extend(a.emails.iter().cloned());
    parts.extend(a.groups.iter().map(|g| format!("group {g}")));
    for o in &a.owners {
        let who: Vec<String> = o
            .emails
            .iter()
            .cloned()
            .chain(o.groups.iter().map(|g| format!("group {g}")))
            .collect();
        if who.is_empty() {
            parts.push(format!("owners of {} (none named)", o.namespace));
        } else {
            parts.push(format!("owners of {}: {}", o.namespace, who.join(", ")));
        }
    }
    if parts.is_empty() {
        "nobody".into()
    } else {
        parts.join(", ")
    }
}

/// The policy explanation of a request: which policy, who may approve, how far the approval has come, the
/// approvals with their comments, and why the viewer cannot approve.
pub fn policy_block(r: &RequestView) -> Markup {
    let p = &r.policy;
    html! {
        div.panel #policy {
            @if let Some(e) = &p.error {
                p.error { (e) }
            } @else {
                p {
                    "Policy " strong.policy-name { (p.name) }
                    @if !p.description.is_empty() { " — " (p.description) }
                }
                dl.kv {
                    dt { "Who may approve" } dd.approvers { (approvers_text(&p.approvers)) }
                    dt { "Approvals" }
                    dd {
                        span.quorum { (quorum_text(p)) }
                        @if r.auto_approved { " (auto-approved)" }
                        @else if r.break_glass { " (break-glass: active without approval, reviewed afterwards)" }
                    }
                    @if !p.missing_owners.is_empty() {
                        dt { "Still needed" } dd { "an approval by the owners of " (p.missing_owners.join(", ")) }
                    }
                    @if let Some(h) = &p.reason {
                        dt { "Reason must contain" } dd { @if h.description.is_empty() { code { (h.pattern) } } @else { (h.description) } }
                    }
                }
                @if !r.approvals.is_empty() {
                    ul.approvals {
                        @for a in &r.approvals {
                            li {
                                strong { (a.by) } " approved at " (a.at_display)
                                @if let Some(t) = a.ttl_seconds { " for " (timefmt::duration(t)) }
                                @if !a.counted { " " span.muted.small { "(does not count)" } }
                                @if !a.comment.is_empty() { br; span.comment { (a.comment) } }
                            }
                        }
                    }
                }
                @if !p.ignored.is_empty() {
                    p.muted.small { "Not counted: " (p.ignored.join("; ")) }
                }
                @if let Some(w) = &p.why_not {
                    p.whynot { "You cannot approve: " (w) }
                }
            }
        }
    }
}

/// The facts of a request on its page; every time in the display time zone.
pub fn summary(tz: chrono_tz::Tz, r: &RequestView) -> Markup {
    html! {
        dl.kv {
                dt { "Requester" } dd { (r.requester) }
                dt { "Cluster" } dd { (r.cluster_display_name) " (" (r.cluster) ")" }
                dt { "Namespaces" } dd { (r.namespaces.join(", ")) }
                dt { "Access" } dd.access { (r.access) }
                @if !r.role.description.is_empty() { dt { "Role" } dd.role-description.small { (r.role.description) } }
                @if !r.pod_selectors.is_empty() && r.pod_scope.as_ref().is_some_and(|s| s.workload.is_some()) {
                    dt { "Pod selector" } dd.small { @for (i, (ns, sel)) in r.pod_selectors.iter().enumerate() { @if i > 0 { "; " } (ns) ": " code { (sel) } } }
                }
                dt { "Duration" } dd { (timefmt::duration(r.ttl_seconds)) @if r.effective_ttl_seconds != r.ttl_seconds { " (approved for " (timefmt::duration(r.effective_ttl_seconds)) ")" } }
                dt { "Reason" } dd { (r.reason) }
                @if let Some(c) = &r.created_at { dt { "Created" } dd { (timefmt::format_str(tz, c)) } }
                @if let Some(t) = &r.start_at { dt { "Starts" } dd { (timefmt::format_str(tz, t)) @if r.scheduled { " (approved; access starts then)" } } }
                @if let Some(t) = &r.break_glass_at { dt { "Break glass" } dd { "activated by the requester at " (timefmt::format_str(tz, t)) } }
                @if let Some(v) = &r.break_glass_review { dt { "Reviewed by" } dd { (v.by) " at " (timefmt::format_str(tz, &v.at)) @if !v.comment.is_empty() { ": " (v.comment) } } }
                @if !r.approvals.is_empty() {
                    dt { "Approved by" }
                    dd { @for (i, a) in r.approvals.iter().enumerate() { @if i > 0 { "; " } (a.by) " at " (timefmt::format_str(tz, &a.at)) } }
                }
                @if let Some(d) = &r.denial { dt { "Denied by" } dd { (d.by) ": " (d.reason) } }
                @if let Some(v) = &r.revocation { dt { "Revoked by" } dd { (v.by) ": " (v.reason) } }
                @if let Some(w) = &r.withdrawal { dt { "Withdrawn" } dd { (timefmt::format_str(tz, &w.at)) } }
                @if let Some(e) = &r.expires_at {
                    dt { "Expires" } dd { (timefmt::format_str(tz, e)) @if r.phase == Phase::Active { " — " span.countdown data-expires=(e) { "…" } " left" } }
                }
                @if let Some(e) = &r.ended_at { dt { "Ended" } dd { (timefmt::format_str(tz, e)) } }
                @if !r.message.is_empty() { dt { "Status" } dd { (local_times(tz, &r.message)) } }
            }
    }
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
        h1 { "Request " (r.name) " " (phase_badge(r.phase)) (badges(&r)) }
        div.panel {
            (summary(tz, &r))
            p { (action_forms(&state.config, &id, &r, &format!("/requests/{}", r.name))) }
        }
        h2 { "Approval policy" }
        (policy_block(&r))
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
                            li { time { (timefmt::format_str(tz, &c.last_transition_time)) } strong { (c.type_) } " " (c.reason) ": " (local_times(tz, &c.message)) }
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
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path((name, action)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    let reason = form.get("reason").unwrap_or_default().to_string();
    let decision = match action.as_str() {
        "approve" => DecisionInput::Approve {
            comment: form.get("comment").unwrap_or_default().trim().to_string(),
            ttl_seconds: match form
                .get("ttlSeconds")
                .filter(|s| !s.is_empty() && form.get("use") != Some("requested"))
            {
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
        "acknowledge" => DecisionInput::Acknowledge {
            comment: form.get("comment").unwrap_or_default().trim().to_string(),
        },
        "extend" => DecisionInput::Extend {
            seconds: form
                .get("seconds")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| WebError::invalid("seconds", "choose how long to extend"))?,
        },
        _ => return Err(PageError(WebError::NotFound("no such action".into()))),
    };
    let verb = decision.verb();
    let ar = svc.decide(&id, &name, decision).await?;
    state.terminals.close_if_ended(&ar);
    let back = crate::auth::safe_next(form.get("back"));
    let sep = if back.contains('?') { '&' } else { '?' };
    let target = if back == "/" {
        format!("/requests/{name}?done={verb}")
    } else {
        format!("{back}{sep}done={verb}")
    };
    Ok(Redirect::to(&target).into_response())
}
