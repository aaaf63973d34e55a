//! The terminal page (namespace tabs, pods, shells in split panes, logs, events, quick commands) and the
//! recording replay page for admins.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use janus_api::access_request::Phase;
use maud::{Markup, html};

use crate::auth::{Authenticated, percent_encode};
use crate::error::WebError;
use crate::pages::{Nav, PageError, local_times, page};
use crate::service::{RequestService, RequestView, requests::is_requester};
use crate::state::AppState;
use crate::timefmt;
use janus_api::rules::scope::selector_string;

/// Whether the access of a request is over for good: it reached an end phase, or a revocation or
/// withdrawal is recorded that the controller has not acted on yet.
pub fn access_ended(r: &RequestView) -> bool {
    r.phase.is_terminal() || r.revocation.is_some() || r.withdrawal.is_some()
}

/// One sentence saying what ended the access and when, every time in the display time zone.
pub fn ended_summary(tz: chrono_tz::Tz, r: &RequestView) -> String {
    let at = |t: &str| timefmt::format_str(tz, t);
    let with_reason = |s: String, reason: &str| {
        if reason.trim().is_empty() {
            format!("{s}.")
        } else {
            format!("{s}: {reason}")
        }
    };
    let ended = r.ended_at.as_deref().or(r.expires_at.as_deref()).map(at);
    if let Some(v) = &r.revocation {
        return with_reason(format!("Access was revoked by {} at {}", v.by, at(&v.at)), &v.reason);
    }
    if let Some(w) = &r.withdrawal {
        return format!("The request was withdrawn at {}.", at(&w.at));
    }
    if let Some(d) = &r.denial {
        return with_reason(
            format!("The request was denied by {} at {}", d.by, at(&d.at)),
            &d.reason,
        );
    }
    let message = local_times(tz, &r.message);
    match (r.phase, ended) {
        (Phase::Expired, Some(t)) => format!("Access expired at {t}."),
        (Phase::Expired, None) => "Access expired.".into(),
        (Phase::Cancelled, Some(t)) => with_reason(format!("The request was cancelled at {t}"), &message),
        (Phase::Failed, Some(t)) => with_reason(format!("The request failed at {t}"), &message),
        (p, Some(t)) => with_reason(format!("Access ended ({p}) at {t}"), &message),
        (p, None) => with_reason(format!("Access ended ({p})"), &message),
    }
}

/// The form link that asks again for the same cluster, namespaces, reason, role and pod scope.
pub fn request_again_href(r: &RequestView) -> String {
    let mut href = format!(
        "/requests/new?cluster={}&namespaces={}&reason={}&role={}",
        percent_encode(&r.cluster),
        percent_encode(&r.namespaces.join(",")),
        percent_encode(&r.reason),
        percent_encode(&r.role.name)
    );
    if let Some(scope) = &r.pod_scope {
        if let Some(w) = &scope.workload {
            href.push_str(&format!(
                "&workload={}",
                percent_encode(&format!("{}/{}", w.kind.as_str(), w.name))
            ));
        } else if let Some(sel) = &scope.selector {
            href.push_str(&format!("&podSelector={}", percent_encode(&selector_string(sel))));
        }
    }
    href
}

/// What the terminal page shows once access has ended: what ended it and when, and only what still works
/// (the request page, the same request again). `terminal.js` fetches this block when the access ends while
/// the page is open.
pub fn ended_block(tz: chrono_tz::Tz, r: &RequestView) -> Markup {
    html! {
        div #access-ended.panel role="status" {
            p.ended { (ended_summary(tz, r)) }
            p.muted.small { "Shells and log streams of this request are closed; its credentials are removed." }
            div.actions {
                a.button href=(format!("/requests/{}", r.name)) { "Request page" }
                a.button.secondary href=(request_again_href(r)) { "Request again" }
            }
        }
    }
}

/// `GET /terminal/{name}`.
pub async fn show(
    State(state): State<AppState>,
    State(svc): State<RequestService>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let ar = svc.get_visible(&id, &name).await?;
    let view = svc.view(&id, &ar);
    if !view.actions.terminal {
        let own = is_requester(&id, &ar);
        if own && access_ended(&view) {
            let main = html! {
                div #terminal-app.ended data-request=(name) {
                    h1 { "Terminal · " (view.cluster_display_name) " · " (name) }
                    (ended_block(state.tz, &view))
                }
            };
            return Ok(page(
                &state,
                Some(&id),
                &format!("Terminal {name}"),
                Nav::Mine,
                false,
                &headers,
                main,
            )
            .into_response());
        }
        return Err(PageError(if own {
            WebError::Conflict(format!("request {name} is not active ({:?})", view.phase))
        } else {
            WebError::Forbidden("only the requester can open terminals on this request".into())
        }));
    }
    let mode = view.role.terminal.as_deref().unwrap_or("shell");
    let shell = mode == "shell";
    let debug = mode == "debug";
    let first_pane = match mode {
        "logs" => "Choose a pod to follow its logs. This role has no shell.",
        "debug" => "Start a debug container to attach to it here, or choose a pod to follow its logs.",
        _ => "Choose a pod to open a shell or follow its logs.",
    };
    let main = html! {
        link rel="stylesheet" href="/assets/vendor/xterm.css";
        script src="/assets/vendor/xterm.js" defer {}
        script src="/assets/vendor/addon-fit.js" defer {}
        script src="/assets/xterm-csp.js" defer {}
        script src="/assets/terminal.js" defer {}
        div #terminal-app data-request=(name) data-cluster=(view.cluster) data-namespaces=(view.granted_namespaces.join(",")) data-expires=[view.expires_at.clone()] data-mode=(mode) data-scope=[view.scope.clone()] {
            h1 { "Terminal · " (view.cluster_display_name) " · " (name) }
            p.access-line #term-access { (view.access) }
            p.muted.small #term-intro {
                "Access ends in " span.countdown data-expires=[view.expires_at.clone()] { "…" }
                ". Sessions are recorded. Everything runs with this request's own credentials."
            }
            div #term-notice.notice.hidden {}
            div.tabs #ns-tabs {
                @for (i, ns) in view.granted_namespaces.iter().enumerate() {
                    button type="button" class=(if i == 0 { "active" } else { "" }) data-ns=(ns) { (ns) }
                }
            }
            div.term-layout {
                div.term-side {
                    h2 { "Pods" }
                    (scope_note(&view))
                    div #pod-list { "Loading…" }
                    @if debug { (debug_form(&view)) }
                    @if !matches!(mode, "logs") {
                        h2 { "Quick commands" }
                        div #quick-list {}
                        form #quick-form {
                            input type="text" name="label" placeholder="Label" maxlength="60" required aria-label="Label";
                            input type="text" name="command" placeholder="Command" required aria-label="Command";
                            button.secondary type="submit" { "Save" }
                        }
                    }
                    h2 { "Events" }
                    div #event-list.small {}
                }
                div {
                    div.actions {
                        button.secondary type="button" #split-toggle { "Split view" }
                    }
                    div.panes #panes {
                        div.pane #pane-0 data-pane="0" {
                            div.bar { span.status { (first_pane) } button.secondary.hidden type="button" data-close { "Close" } }
                            div.xterm-host {}
                        }
                        div.pane.hidden #pane-1 data-pane="1" {
                            div.bar { span.status { @if shell { "Second pane: choose a pod." } @else { "Second pane: choose a pod's logs." } } button.secondary.hidden type="button" data-close { "Close" } }
                            div.xterm-host {}
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        &state,
        Some(&id),
        &format!("Terminal {name}"),
        Nav::Mine,
        false,
        &headers,
        main,
    )
    .into_response())
}

/// What the pod list holds: every pod of the namespace, or only those in the request's scope (the
/// server lists with the grant's label selector; the API server refuses the others anyway).
pub fn scope_note(view: &RequestView) -> Markup {
    html! {
        @if let Some(scope) = &view.scope {
            p.small.scope-note #scope-note {
                "Only " strong { (scope) } " are in this request's scope."
                @if !view.pod_selectors.is_empty() && view.pod_scope.as_ref().is_some_and(|s| s.workload.is_some()) {
                    " " span.muted { "(" @for (i, (ns, sel)) in view.pod_selectors.iter().enumerate() { @if i > 0 { "; " } (ns) ": " code { (sel) } } ")" }
                }
            }
        }
    }
}

/// The debug form of a `debug` role: a pod of the list, the container to debug next to, and an image of
/// the role's allow-list (entries ending in `*` allow any tag or path after them: typed in full). The
/// server checks the image again.
pub fn debug_form(view: &RequestView) -> Markup {
    let images = &view.role.debug_images;
    let first = images.iter().find(|i| !i.ends_with('*')).cloned().unwrap_or_default();
    html! {
        h2 { "Debug container" }
        form #debug-form.debug-form {
            label for="debug-pod" { "Pod" }
            select #debug-pod name="pod" {}
            label for="debug-target" { "Next to container" }
            select #debug-target name="targetContainer" {}
            label for="debug-image" { "Image" }
            input #debug-image type="text" name="image" list="debug-images" value=(first) required autocomplete="off" spellcheck="false" aria-describedby="debug-images-hint";
            datalist #debug-images {
                @for i in images { option value=(i.trim_end_matches('*')) {} }
            }
            p #debug-images-hint.small.muted { "Allowed: " (images.join(", ")) }
            p { button type="submit" disabled { "Start debug container" } }
            p #debug-status.small.muted role="status" {}
        }
    }
}

/// `GET /recordings/{id}`: replay a recorded session (admins).
pub async fn replay(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Path(session): Path<String>,
) -> Result<Response, PageError> {
    if !id.is_admin {
        return Err(PageError(WebError::Forbidden("only admins replay sessions".into())));
    }
    let typed = state
        .store
        .session_commands(&session)
        .await
        .map_err(|e| PageError(e.into()))?;
    let main = html! {
        link rel="stylesheet" href="/assets/vendor/xterm.css";
        script src="/assets/vendor/xterm.js" defer {}
        script src="/assets/xterm-csp.js" defer {}
        script src="/assets/player.js" defer {}
        h1 { "Recording " (session) }
        div.actions {
            button type="button" #play { "Play" }
            button.secondary type="button" #instant { "Show all at once" }
            label.small for="speed" { "Speed" }
            select #speed { option value="1" { "1×" } option value="2" selected { "2×" } option value="8" { "8×" } }
            span #player-status.muted.small {}
        }
        div.pane { div #player.xterm-host data-session=(session) {} }
        h2 { "Typed lines" }
        p.muted.small {
            "Reconstructed from keystrokes; tab completion and line editing are not resolved, so a line may "
            "differ from the command the shell ran. The recording above is the record."
        }
        @if typed.is_empty() {
            p.muted { "No lines were typed." }
        } @else {
            table {
                thead { tr { th { "At" } th { "Typed line" } } }
                tbody {
                    @for c in &typed {
                        tr { td.small { (crate::timefmt::format(state.tz, c.at)) } td { code { (c.line) } } }
                    }
                }
            }
        }
    };
    Ok(page(&state, Some(&id), "Recording", Nav::Audit, false, &headers, main).into_response())
}
