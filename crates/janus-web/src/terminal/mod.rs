//! The browser terminal: sessions registry, the WebSocket exec proxy that uses the request's own token,
//! recordings, pod lists, logs and events, quick commands.

pub mod access;
pub mod pods;
pub mod protocol;
pub mod recording;
pub mod session;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get};
use janus_api::AccessRequest;
use janus_api::access_request::Phase;
use tokio::sync::watch;

use crate::state::AppState;

struct Entry {
    request: String,
    user: String,
    close: watch::Sender<Option<String>>,
}

/// The terminal sessions open on this replica, so that any of them can be ended at once.
#[derive(Default)]
pub struct Terminals {
    open: Mutex<HashMap<String, Entry>>,
}

impl Terminals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session, enforcing the per-user and per-replica limits; the receiver yields the reason
    /// when the session must end.
    pub fn register(
        &self,
        id: &str,
        request: &str,
        user: &str,
        max_per_user: usize,
        max_per_replica: usize,
    ) -> Result<watch::Receiver<Option<String>>, String> {
        let mut open = self.lock();
        if open.len() >= max_per_replica {
            return Err(format!(
                "this server already serves {} terminal sessions (the limit); try again later",
                open.len()
            ));
        }
        let mine = open.values().filter(|e| e.user.eq_ignore_ascii_case(user)).count();
        if mine >= max_per_user {
            return Err(format!(
                "you already have {mine} terminal sessions open (the limit is {max_per_user}); close one first"
            ));
        }
        let (tx, rx) = watch::channel(None);
        open.insert(
            id.to_string(),
            Entry {
                request: request.to_string(),
                user: user.to_string(),
                close: tx,
            },
        );
        Ok(rx)
    }

    /// Forgets a session.
    pub fn unregister(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends every session of a request with a reason.
    pub fn close_request(&self, request: &str, reason: &str) {
        for e in self.lock().values().filter(|e| e.request == request) {
            let _ = e.close.send(Some(reason.to_string()));
        }
    }

    /// Ends every session.
    pub fn close_all(&self, reason: &str) {
        for e in self.lock().values() {
            let _ = e.close.send(Some(reason.to_string()));
        }
    }

    /// Open sessions.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Requests with open sessions.
    pub fn requests(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().values().map(|e| e.request.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Why sessions of this request must end now, if they must.
pub fn end_reason(ar: &AccessRequest) -> Option<&'static str> {
    let phase = ar.status.as_ref().map(|s| s.phase).unwrap_or(Phase::Pending);
    if ar.spec.revocation.is_some() || phase == Phase::Revoked {
        return Some("access was revoked");
    }
    if ar.spec.withdrawal.is_some() || phase == Phase::Cancelled {
        return Some("the request was withdrawn");
    }
    if ar.metadata.deletion_timestamp.is_some() {
        return Some("the request was deleted");
    }
    match phase {
        Phase::Expired => Some("access expired"),
        Phase::Denied | Phase::Failed => Some("access ended"),
        _ => {
            let expired = ar
                .status
                .as_ref()
                .and_then(|s| s.expires_at.as_deref())
                .and_then(crate::requests::parse_time)
                .is_some_and(|t| t <= chrono::Utc::now());
            expired.then_some("access expired")
        }
    }
}

/// Ends sessions whose request expired even when no watch event arrives (clock-driven), every 250 ms.
pub async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut purge = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for name in state.terminals.requests() {
                    match state.requests.get(&kube::runtime::reflector::ObjectRef::new(&name)) {
                        Some(ar) => {
                            if let Some(reason) = end_reason(&ar) {
                                state.terminals.close_request(&name, reason);
                            }
                        }
                        None if state.cache_ready.load(std::sync::atomic::Ordering::Relaxed) => {
                            state.terminals.close_request(&name, "the request was deleted");
                        }
                        None => {}
                    }
                }
            }
            _ = purge.tick() => {
                let _ = state.store.purge_sessions(chrono::Utc::now()).await;
            }
        }
    }
}

/// Terminal routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws/terminal/{name}", get(session::upgrade))
        .route("/api/v1/requests/{name}/pods", get(pods::list))
        .route("/api/v1/requests/{name}/logs", get(pods::logs))
        .route("/api/v1/requests/{name}/events", get(pods::events))
        .route("/api/v1/requests/{name}/sessions", get(pods::sessions))
        .route("/api/v1/quick-commands", get(pods::quick_list).post(pods::quick_add))
        .route("/api/v1/quick-commands/{id}", delete(pods::quick_delete))
        .route("/api/v1/recordings/{id}", get(pods::recording))
        .route("/api/v1/commands", get(pods::commands))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_closing() {
        let t = Terminals::default();
        let mut a = t.register("1", "r1", "u@x", 2, 3).unwrap();
        let _b = t.register("2", "r1", "u@x", 2, 3).unwrap();
        assert!(t.register("3", "r2", "U@x", 2, 3).unwrap_err().contains("limit is 2"));
        let _c = t.register("3", "r2", "v@x", 2, 3).unwrap();
        assert!(t.register("4", "r3", "w@x", 2, 3).unwrap_err().contains("limit"));
        t.close_request("r1", "access was revoked");
        assert_eq!(a.borrow_and_update().as_deref(), Some("access was revoked"));
        t.unregister("1");
        assert_eq!(t.count(), 2);
    }
}
