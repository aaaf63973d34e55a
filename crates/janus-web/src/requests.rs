//! The request helpers under their earlier paths, for code outside the service layer (the terminal, live
//! updates, the request watch, cluster health) that holds the whole [`AppState`]. Each one delegates to
//! [`crate::service`], where the logic lives; handlers take the services as sub-states instead.

use axum::extract::FromRef;
use janus_api::AccessRequest;

use crate::auth::Identity;
use crate::error::WebError;
use crate::service::{ClusterService, RequestService};
use crate::state::AppState;

pub use crate::service::requests::{
    CreateInput, DecisionInput, ListFilter, MAX_NAMESPACES, MAX_REASON, REQUESTER_LABEL, actor, created, is_open,
    is_requester, requester_label, visible_to,
};
pub use crate::service::view::{ListPage, RequestView};
pub use crate::service::{ClusterCache, ServiceError};
pub use janus_api::rules::Actions;
/// The phase of a request (no status yet means Pending).
pub use janus_api::rules::phase_of as phase;
/// A Kubernetes timestamp as a chrono time.
pub use janus_api::rules::time::from_k8s as k8s_time;
/// Parses an RFC 3339 timestamp from the API.
pub use janus_api::rules::time::parse_time;
pub use janus_kube::ClusterInfo;

/// The actions allowed to `id` on `ar` ([`RequestService::actions`]).
pub fn actions(state: &AppState, id: &Identity, ar: &AccessRequest) -> Actions {
    RequestService::from_ref(state).actions(id, ar)
}

/// The view of a request for `id` ([`RequestService::view`]).
pub fn view(state: &AppState, id: &Identity, ar: &AccessRequest) -> RequestView {
    RequestService::from_ref(state).view(id, ar)
}

/// Whether `id` may see `ar`, its policy's approvers included, without asking a cluster
/// ([`RequestService::may_see`]): for live updates.
pub fn may_see(state: &AppState, id: &Identity, ar: &AccessRequest) -> bool {
    RequestService::from_ref(state).may_see(id, ar)
}

/// Fetches a request the caller may see ([`RequestService::get_visible`]).
pub async fn get_visible(state: &AppState, id: &Identity, name: &str) -> Result<AccessRequest, WebError> {
    Ok(RequestService::from_ref(state).get_visible(id, name).await?)
}

/// Configured and registered clusters ([`ClusterService::list`]).
pub async fn clusters(state: &AppState) -> Vec<ClusterInfo> {
    ClusterService::from_ref(state).list().await
}

/// The namespaces of a cluster that may be requested ([`ClusterService::namespaces`]).
pub async fn namespaces(state: &AppState, cluster: &str) -> Result<Vec<String>, WebError> {
    Ok(ClusterService::from_ref(state).namespaces(cluster).await?)
}
