//! Container logs: appended by tests and the demo, served by `pods/log` with tail, timestamps and follow.
// CONTRACT STUB: replaced by the full implementation (helper-3). Signatures are the contract.

use std::sync::Arc;

use axum::response::Response;
use serde_json::Value;

use crate::errors::{ApiError, ApiResult};
use crate::Cluster;

/// Log lines per (namespace, pod, container).
#[derive(Debug, Default)]
pub struct LogBook {}

impl LogBook {
    /// Appends one line (without trailing newline) to a container's log.
    pub fn append(&self, namespace: &str, pod: &str, container: &str, line: &str) { let _ = (namespace, pod, container, line); }
}

/// `GET .../pods/{name}/log` for an existing pod object.
pub async fn serve_log(cluster: Arc<Cluster>, pod: Value, query: Vec<(String, String)>) -> ApiResult<Response> {
    let _ = (cluster, pod, query); Err(ApiError::internal("not yet"))
}
