//! The clusters page: connection health and whether `janus-pod-exec` exists on each cluster.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::auth::Authenticated;
use crate::pages::{Nav, page};
use crate::service::ClusterService;
use crate::state::AppState;

/// `GET /clusters`.
pub async fn show(
    State(state): State<AppState>,
    State(clusters): State<ClusterService>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
) -> Response {
    let list = clusters.health().await;
    let main = html! {
        h1 { "Clusters" }
        table #clusters {
            thead { tr { th { "Cluster" } th { "Connection" } th { "janus-pod-exec" } th { "Requestable namespaces" } } }
            tbody {
                @for c in &list {
                    tr {
                        td { strong { (c.display_name) } br; span.muted.small { (c.name) @if c.central { " · central" } } }
                        td {
                            @if c.reachable { span.dot.ok {} "connected" @if let Some(v) = &c.version { span.muted.small { " (Kubernetes " (v) ")" } } }
                            @else { span.dot.bad {} "unreachable" @if let Some(e) = &c.error { br; span.small.error { (e) } } }
                        }
                        td {
                            @match c.pod_exec_role {
                                Some(true) => { span.dot.ok {} "present" }
                                Some(false) => { span.dot.bad {} "missing — install the chart (remote.enabled=true on remote clusters)" }
                                None => { span.dot.warn {} "unknown" }
                            }
                        }
                        td { @if let Some(n) = c.namespaces { (n) } @else { "—" } }
                    }
                }
            }
        }
    };
    page(&state, Some(&id), "Clusters", Nav::Clusters, false, &headers, main).into_response()
}
