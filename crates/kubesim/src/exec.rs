//! `pods/exec` over WebSocket (v5.channel.k8s.io and v4.channel.k8s.io) into a real local process, in a PTY when tty.
// CONTRACT STUB: replaced by the full implementation (helper-3). Signatures are the contract.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use serde_json::Value;

use crate::errors::{ApiError, ApiResult};
use crate::Cluster;

/// Validates the exec parameters against the pod (command required; container required when the pod
/// has several) and upgrades the connection. Errors are returned before the upgrade, as Status.
pub fn exec(cluster: Arc<Cluster>, pod: Value, query: Vec<(String, String)>, ws: WebSocketUpgrade) -> ApiResult<Response> {
    let _ = (cluster, pod, query, ws); Err(ApiError::internal("not yet"))
}
