//! What the terminal page shows besides the shell, all read with the request's own token: pods, streamed
//! container logs, pod events; plus quick commands, session lists, recordings and the command log.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit;
use crate::auth::Authenticated;
use crate::error::WebError;
use crate::extract::{Json, Path, Query};
use crate::requests;
use crate::state::AppState;
use crate::terminal::{EndReason, Owner, StreamKind, access, debug};
use janus_store::AuditKind;

/// `?namespace=` (and pod/container for logs).
#[derive(Deserialize)]
pub struct NsQuery {
    namespace: String,
    #[serde(default)]
    pod: Option<String>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    tail: Option<i64>,
    /// Logs only: keep following (the default), or answer the tail and end (`janus logs` without `-f`).
    #[serde(default)]
    follow: Option<bool>,
}

/// A pod as the terminal page lists it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    name: String,
    phase: String,
    ready: String,
    restarts: i32,
    containers: Vec<String>,
    /// Debug containers the web started in the pod for this request (`janus-debug-<tag>-…`, from an
    /// image the role allows), to attach to again.
    debug_containers: Vec<String>,
}

fn forbidden_or(e: kube::Error) -> WebError {
    match e {
        kube::Error::Api(s) if s.code == 403 => WebError::Forbidden("the request's access does not allow this".into()),
        kube::Error::Api(s) if s.code == 401 => {
            WebError::Conflict("the request's credentials are no longer valid".into())
        }
        other => other.into(),
    }
}

/// `GET /api/v1/requests/{name}/pods?namespace=`.
#[utoipa::path(get, path = "/api/v1/requests/{name}/pods", tag = "terminal", summary = "Pods of a granted namespace, read with the request's own token",
    params(("name" = String, Path), ("namespace" = String, Query, description = "A granted namespace")),
    responses(
        (status = 200, description = "Pods, read with the request's own token", body = crate::api::openapi::PodList),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "Not the requester, or the access does not allow it", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "Unknown request, or not the caller's", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "The request is not active, or its credentials no longer work", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "Namespace not granted", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The cluster's API is unavailable", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(name): Path<String>,
    Query(q): Query<NsQuery>,
) -> Result<Response, WebError> {
    let (ar, client) = access::client_for(&state, &id, &name, &q.namespace).await?;
    let pods: Api<Pod> = Api::namespaced(client, &q.namespace);
    // A pod-scoped grant: only the pods in scope (the Role lets the token list them all, but reach only
    // these); the selector is the one the controller keeps the Role current with.
    let selector = debug::grant_selector(&ar, &q.namespace);
    let mut lp = ListParams::default();
    if let Some(s) = &selector {
        lp = lp.labels(s);
    }
    let list = access::bounded(pods.list(&lp)).await?.map_err(forbidden_or)?;
    // A role the configuration no longer lists attaches to nothing.
    let debug_role = debug::role_of(&state, &ar).ok();
    let items: Vec<PodView> = list
        .items
        .into_iter()
        .filter(|p| {
            debug::in_scope(
                &ar,
                &q.namespace,
                p.metadata.labels.as_ref().unwrap_or(&Default::default()),
            )
        })
        .map(|p| {
            let statuses = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            let containers: Vec<String> = p
                .spec
                .as_ref()
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            PodView {
                name: p.metadata.name.clone().unwrap_or_default(),
                phase: p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Unknown".into()),
                ready: format!("{}/{}", statuses.iter().filter(|s| s.ready).count(), containers.len()),
                restarts: statuses.iter().map(|s| s.restart_count).sum(),
                containers,
                // This request's own (its tag) and only those the socket would attach to: an image
                // the role allows.
                debug_containers: debug::request_containers(&p, &name)
                    .into_iter()
                    .filter(|(_, image)| {
                        debug_role
                            .zip(*image)
                            .is_some_and(|(r, i)| janus_api::rules::scope::image_allowed(r, i))
                    })
                    .map(|(n, _)| n.to_string())
                    .collect(),
            }
        })
        .collect();
    let role = crate::service::scope::RoleView::named(&state.config, ar.spec.role_name());
    Ok(Json(json!({
        "namespace": q.namespace,
        "pods": items,
        "selector": selector,
        "scope": ar.spec.pod_scope.as_ref().map(janus_api::rules::scope::describe),
        "terminal": role.terminal,
    }))
    .into_response())
}

/// `GET /api/v1/requests/{name}/logs?namespace=&pod=&container=&tail=&follow=`: the log as a text stream,
/// followed unless `follow=false`.
///
/// Log streams have their own limits (`maxLogStreamsPerUser`, `maxLogStreamsPerReplica`), apart from
/// terminal sessions, and end like terminals: with the access, and with the login or rights of the
/// person who opened them.
#[utoipa::path(get, path = "/api/v1/requests/{name}/logs", tag = "terminal", summary = "Follow a container's log, read with the request's own token",
    params(("name" = String, Path), ("namespace" = String, Query), ("pod" = String, Query),
        ("container" = Option<String>, Query), ("tail" = Option<i64>, Query, description = "Lines before following (default 200, at most 5000)"),
        ("follow" = Option<bool>, Query, description = "Keep following new lines (default true); false answers the tail lines and ends")),
    responses(
        (status = 200, description = "Log lines as they come; ends when the container's log ends, or with the access or the opener's login or rights: then a last line `[log stream ended <nonce>: <reason>]` says why, where `<nonce>` is the value of this response's `X-Janus-Stream-End` header (random per stream, so a container cannot forge the line)", content_type = "text/plain", body = String,
            headers(("X-Janus-Stream-End" = String, description = "The random nonce of this stream's closing line"))),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "Not the requester, or the access does not allow it", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "Unknown request, or not the caller's", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "The request is not active, or its credentials no longer work", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "No pod, or namespace not granted", body = crate::api::openapi::ErrorBody),
        (status = 429, description = "Too many log streams (maxLogStreamsPerUser, maxLogStreamsPerReplica)", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The cluster's API is unavailable", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn logs(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(name): Path<String>,
    Query(q): Query<NsQuery>,
) -> Result<Response, WebError> {
    let pod = q.pod.clone().ok_or_else(|| WebError::invalid("pod", "choose a pod"))?;
    let (ar, client) = access::client_for(&state, &id, &name, &q.namespace).await?;
    // Registered before the API server is asked, so that a user at the limit costs it nothing.
    let sid = format!("logs-{}", uuid::Uuid::new_v4());
    let rx = state
        .terminals
        .register(
            &sid,
            StreamKind::Logs,
            &name,
            Owner::of(&id, &ar),
            state.config.web.max_log_streams_per_user,
            state.config.web.max_log_streams_per_replica,
        )
        .map_err(WebError::TooMany)?;
    state.metrics.log_stream_opened();
    let guard = Unregister(state.clone(), sid);
    let pods: Api<Pod> = Api::namespaced(client, &q.namespace);
    let lp = LogParams {
        container: q.container.clone(),
        follow: q.follow.unwrap_or(true),
        tail_lines: Some(q.tail.unwrap_or(200).clamp(0, 5000)),
        ..Default::default()
    };
    let stream = access::bounded(pods.log_stream(&pod, &lp))
        .await?
        .map_err(forbidden_or)?;
    let lines = stream.lines().map_ok(|mut l| {
        l.push('\n');
        l
    });
    let about = LogStream {
        user: id.email.clone(),
        request: name,
        cluster: ar.spec.cluster.clone(),
        namespace: q.namespace.clone(),
        pod,
    };
    // A container writes what it likes to its log, including a line that looks like the closing one; only
    // the server knows this nonce, so only its own closing line carries it.
    let nonce: String = rand::random::<[u8; 12]>().iter().map(|b| format!("{b:02x}")).collect();
    let body = async_stream(lines, rx, guard, about, nonce.clone());
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::HeaderName::from_static(STREAM_END_HEADER), nonce),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// What a log stream shows, for the audit event when the server ends it.
struct LogStream {
    user: String,
    request: String,
    cluster: String,
    namespace: String,
    pod: String,
}

/// The response header of `GET …/logs` naming the nonce of the stream's closing line
/// (`[log stream ended <nonce>: <reason>]`).
pub const STREAM_END_HEADER: &str = "x-janus-stream-end";

/// Lines read ahead of a slow browser before the upstream read waits.
const LOG_AHEAD: usize = 64;

fn async_stream(
    lines: impl futures::Stream<Item = std::io::Result<String>> + Send + 'static,
    mut rx: tokio::sync::watch::Receiver<Option<EndReason>>,
    guard: Unregister,
    about: LogStream,
    nonce: String,
) -> impl futures::Stream<Item = std::io::Result<String>> + Send + 'static {
    // The upstream follow is read by a task of its own rather than by the response body: the body is
    // polled only while the browser reads, so a browser that stops reading would otherwise keep the
    // follow (with the request's token) open past logout, revoke or expiry.
    let (tx, out) = tokio::sync::mpsc::channel::<std::io::Result<String>>(LOG_AHEAD);
    tokio::spawn(async move {
        // Held until the follow ends, however it ends: the registry forgets the stream then.
        let guard = guard;
        let ended = async move {
            loop {
                if let Some(r) = rx.borrow_and_update().clone() {
                    return r;
                }
                if rx.changed().await.is_err() {
                    return EndReason::from_message("the web server is shutting down");
                }
            }
        };
        tokio::pin!(ended);
        let mut lines = Box::pin(lines);
        let reason = loop {
            let line = tokio::select! {
                reason = &mut ended => break reason,
                _ = tx.closed() => return,
                l = lines.next() => l,
            };
            let Some(line) = line else { return };
            tokio::select! {
                reason = &mut ended => break reason,
                sent = tx.send(line) => if sent.is_err() { return },
            }
        };
        // The upstream follow ends here, before the browser hears of it (it may not be reading).
        drop(lines);
        tokio::spawn(audit_log_stream_end(guard.0.clone(), about, reason.clone()));
        let last = Ok(format!("\n[log stream ended {nonce}: {}]\n", reason.message));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tx.send(last)).await;
    });
    tokio_stream::wrappers::ReceiverStream::new(out)
}

async fn audit_log_stream_end(state: AppState, about: LogStream, reason: EndReason) {
    audit::record(
        &state,
        AuditKind::LogStreamClosed,
        &about.user,
        Some(&about.request),
        Some(&about.cluster),
        std::slice::from_ref(&about.namespace),
        json!({"pod": about.pod, "reason": reason.category, "message": reason.message}),
    )
    .await;
}

/// Forgets a log stream when its response body is dropped (finished, ended, or the client went away).
struct Unregister(AppState, String);
impl Drop for Unregister {
    fn drop(&mut self) {
        self.0.terminals.unregister(&self.1);
        self.0.metrics.log_stream_closed();
    }
}

/// `GET /api/v1/requests/{name}/events?namespace=[&pod=]`.
#[utoipa::path(get, path = "/api/v1/requests/{name}/events", tag = "terminal", summary = "Kubernetes Events of a granted namespace (or one pod), read with the request's own token",
    params(("name" = String, Path), ("namespace" = String, Query), ("pod" = Option<String>, Query)),
    responses(
        (status = 200, description = "The newest 100 Kubernetes Events of the namespace (or one pod), oldest first", body = crate::api::openapi::PodEventList),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "Not the requester, or the access does not allow it", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "Unknown request, or not the caller's", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "The request is not active, or its credentials no longer work", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "Namespace not granted, or not a pod name", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The cluster's API is unavailable", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(name): Path<String>,
    Query(q): Query<NsQuery>,
) -> Result<Response, WebError> {
    if let Some(pod) = q.pod.as_deref() {
        // The pod name goes into a field selector: anything but a name could add requirements.
        if !janus_api::names::is_dns_subdomain(pod) {
            return Err(WebError::invalid("pod", format!("{pod:?} is not a pod name")));
        }
    }
    let (_, client) = access::client_for(&state, &id, &name, &q.namespace).await?;
    let api: Api<Event> = Api::namespaced(client, &q.namespace);
    // The server filters by pod (kube-apiserver's core/v1 Event field selectors:
    // pkg/registry/core/event/strategy.go, ToSelectableFields), and pages keep at most one page plus
    // the newest EVENTS_KEPT in memory however many Events the namespace holds.
    let mut params = ListParams::default().limit(EVENTS_PAGE);
    if let Some(pod) = q.pod.as_deref() {
        params = params.fields(&format!("involvedObject.kind=Pod,involvedObject.name={pod}"));
    }
    let mut newest: Vec<(Option<chrono::DateTime<chrono::Utc>>, Event)> = Vec::new();
    for page in 0..EVENTS_MAX_PAGES {
        let list = access::bounded(api.list(&params)).await?.map_err(forbidden_or)?;
        newest.extend(list.items.into_iter().map(|e| (last_seen(&e), e)));
        keep_newest(&mut newest);
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params.continue_token = Some(token),
            None => break,
        }
        if page + 1 == EVENTS_MAX_PAGES {
            tracing::debug!(
                namespace = %q.namespace,
                "events panel: stopped after {EVENTS_MAX_PAGES} pages; showing the newest of those"
            );
        }
    }
    let items: Vec<serde_json::Value> = newest
        .into_iter()
        .map(|(seen, e)| {
            json!({
                "object": format!("{}/{}", e.involved_object.kind.as_deref().unwrap_or_default(), e.involved_object.name.as_deref().unwrap_or_default()),
                "type": e.type_,
                "reason": e.reason,
                "message": e.message,
                "count": occurrences(&e),
                "lastTimestamp": seen.map(|t| t.to_rfc3339()),
            })
        })
        .collect();
    Ok(Json(json!({"events": items})).into_response())
}

/// How many Events the panel answers at most (the page shows the last 20).
pub const EVENTS_KEPT: usize = 100;
/// Events read per list call.
const EVENTS_PAGE: u32 = 500;
/// Pages read at most, so a namespace flooded with Events costs bounded time and API load.
const EVENTS_MAX_PAGES: usize = 20;

/// Sorts oldest first by when each was last seen (whatever the names, so the page's "last 20" are the
/// newest) and drops all but the newest [`EVENTS_KEPT`].
fn keep_newest(items: &mut Vec<(Option<chrono::DateTime<chrono::Utc>>, Event)>) {
    items.sort_by_key(|(seen, _)| *seen);
    let extra = items.len().saturating_sub(EVENTS_KEPT);
    items.drain(..extra);
}

/// When an Event was last seen, whichever API wrote it: core/v1 writers (the kubelet of old,
/// `kubectl`) set `lastTimestamp`; events.k8s.io writers (the scheduler, kube-rs) leave it null
/// and set `series.lastObservedTime` (repeats) and `eventTime` instead, as `kubectl events` reads them.
fn last_seen(e: &Event) -> Option<chrono::DateTime<chrono::Utc>> {
    use janus_api::rules::time::from_jiff;
    e.last_timestamp
        .as_ref()
        .map(crate::requests::k8s_time)
        .or_else(|| {
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| from_jiff(&t.0))
        })
        .or_else(|| e.event_time.as_ref().map(|t| from_jiff(&t.0)))
        .or_else(|| e.first_timestamp.as_ref().map(crate::requests::k8s_time))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(crate::requests::k8s_time))
}

/// How often an Event happened: `series.count` for events.k8s.io writers, `count` for core/v1 ones,
/// and once when neither is set.
fn occurrences(e: &Event) -> i32 {
    e.series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .filter(|c| *c > 0)
        .unwrap_or(1)
}

/// `GET /api/v1/requests/{name}/sessions`: terminal sessions of a request (requester or admin).
#[utoipa::path(get, path = "/api/v1/requests/{name}/sessions", tag = "terminal", summary = "Terminal sessions of a request", params(("name" = String, Path)),
    responses(
        (status = 200, description = "Terminal sessions of the request", body = crate::api::openapi::SessionList),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "Unknown request, or not the caller's", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The database or the Kubernetes API is unavailable", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn sessions(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    requests::get_visible(&state, &id, &name).await?;
    let list = state.store.terminal_sessions(Some(&name), None, 200).await?;
    Ok(Json(json!({"sessions": list})).into_response())
}

/// `GET /api/v1/recordings/{id}`: the asciicast of a session (admins only).
#[utoipa::path(get, path = "/api/v1/recordings/{id}", tag = "terminal", summary = "A terminal session recording as asciicast v2 (admins)", params(("id" = String, Path, description = "Terminal session id")),
    responses(
        (status = 200, description = "The recording as asciicast v2", content_type = "application/x-asciicast", body = String),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "No recording for this session", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn recording(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(session): Path<String>,
) -> Result<Response, WebError> {
    if !id.is_admin {
        return Err(WebError::Forbidden("only admins replay sessions".into()));
    }
    let cast = state
        .store
        .recording(&session)
        .await?
        .ok_or_else(|| WebError::NotFound("no recording for this session".into()))?;
    Ok(([(header::CONTENT_TYPE, "application/x-asciicast")], cast).into_response())
}

/// `?q=` of the command search.
#[derive(Deserialize)]
pub struct CommandQuery {
    q: String,
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /api/v1/commands?q=`: search the command log (admins only).
#[utoipa::path(get, path = "/api/v1/commands", tag = "terminal", summary = "Search the typed lines of terminal sessions (admins)",
    description = "Typed lines are reconstructed from keystrokes; tab completion and line editing are not \
        resolved, so a line may differ from the command the shell ran. The session recording is the record.",
    params(("q" = String, Query, description = "Search text, at most 200 bytes"), ("limit" = Option<i64>, Query)),
    responses(
        (status = 200, description = "Matching command lines", body = crate::api::openapi::CommandList),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "Search text too long", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn commands(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Query(q): Query<CommandQuery>,
) -> Result<Response, WebError> {
    if !id.is_admin {
        return Err(WebError::Forbidden("only admins search the command log".into()));
    }
    if q.q.len() > 200 {
        return Err(WebError::invalid("q", "the search text is too long"));
    }
    let hits = state
        .store
        .search_commands(&q.q, q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(json!({"commands": hits})).into_response())
}

/// `?cluster=` of quick commands.
#[derive(Deserialize)]
pub struct QuickQuery {
    cluster: String,
}

/// `GET /api/v1/quick-commands?cluster=`: the caller's quick commands for a cluster.
#[utoipa::path(get, path = "/api/v1/quick-commands", tag = "terminal", summary = "The caller's quick commands for a cluster", params(("cluster" = String, Query)),
    responses(
        (status = 200, description = "The caller's quick commands", body = crate::api::openapi::QuickCommandList),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn quick_list(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Query(q): Query<QuickQuery>,
) -> Result<Response, WebError> {
    let list = state.store.quick_commands(&id.email, &q.cluster).await?;
    Ok(Json(json!({"quickCommands": list})).into_response())
}

/// A new quick command.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickInput {
    /// Cluster name.
    cluster: String,
    /// Button label, 1 to 60 characters.
    label: String,
    /// Command text, 1 to 4096 bytes.
    command: String,
}

/// `POST /api/v1/quick-commands`.
#[utoipa::path(post, path = "/api/v1/quick-commands", tag = "terminal", summary = "Save a quick command", request_body = QuickInput,
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 201, description = "Saved", body = janus_store::QuickCommand),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "CSRF token missing or wrong, or cross-site Origin", body = crate::api::openapi::ErrorBody),
        (status = 413, description = "Body too large", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "Invalid field (named in `field`)", body = crate::api::openapi::ErrorBody),
        (status = 429, description = "At most 50 quick commands per cluster", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn quick_add(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    b: Result<Json<QuickInput>, WebError>,
) -> Result<Response, WebError> {
    let Json(q) = b?;
    if q.label.trim().is_empty() || q.label.chars().count() > 60 {
        return Err(WebError::invalid("label", "a label has 1 to 60 characters"));
    }
    if q.command.is_empty() || q.command.len() > 4096 {
        return Err(WebError::invalid("command", "a command has 1 to 4096 bytes"));
    }
    if q.cluster.is_empty() || q.cluster.len() > 63 {
        return Err(WebError::invalid("cluster", "choose a cluster"));
    }
    if state.store.quick_commands(&id.email, &q.cluster).await?.len() >= 50 {
        return Err(WebError::TooMany("at most 50 quick commands per cluster".into()));
    }
    let c = state
        .store
        .add_quick_command(&id.email, &q.cluster, q.label.trim(), &q.command)
        .await?;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

/// `DELETE /api/v1/quick-commands/{id}` (only one's own).
#[utoipa::path(delete, path = "/api/v1/quick-commands/{id}", tag = "terminal", summary = "Delete one of the caller's quick commands", params(("id" = i64, Path)),
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "CSRF token missing or wrong, or cross-site Origin", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "No such quick command of the caller's", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn quick_delete(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(qid): Path<i64>,
) -> Result<Response, WebError> {
    if state.store.delete_quick_command(&id.email, qid).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(WebError::NotFound("no such quick command".into()))
    }
}
