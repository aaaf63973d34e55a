//! Audit events the web process records itself (logins, users, terminal sessions); request transitions are
//! derived from the AccessRequests by the recorder.

use chrono::Utc;
use janus_store::{AuditKind, NewAuditEvent};

use crate::state::AppState;

/// Records one event under a fresh key. A database outage never fails the user's action.
pub async fn record(
    state: &AppState,
    kind: AuditKind,
    actor: &str,
    request: Option<&str>,
    cluster: Option<&str>,
    namespaces: &[String],
    details: serde_json::Value,
) {
    let ev = NewAuditEvent {
        key: format!("web/{}", uuid::Uuid::new_v4()),
        kind,
        at: Utc::now(),
        actor: actor.to_string(),
        request: request.map(str::to_string),
        cluster: cluster.map(str::to_string),
        namespaces: namespaces.to_vec(),
        details,
    };
    // Buffered: while the database is down the event waits in memory and is written, in order, later.
    if state.audit.record(ev) {
        // Usually stored before the answer goes out; never hold the user up for long during an outage.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), state.audit.flush()).await;
    }
}
