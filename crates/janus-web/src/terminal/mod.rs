//! The browser terminal: sessions registry, the WebSocket exec proxy that uses the request's own token,
//! recordings, pod lists, logs and events, quick commands.

pub mod access;
pub mod debug;
pub mod pods;
pub mod protocol;
pub mod recording;
pub mod session;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use janus_api::AccessRequest;
use janus_api::access_request::Phase;
use tokio::sync::{Notify, watch};

use crate::auth::{AuthSource, Identity};
use crate::state::AppState;

/// What a registered stream is: limits and gauges are kept apart for the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// A browser terminal (a shell through `pods/exec`).
    Terminal,
    /// A followed container log (`GET …/logs`).
    Logs,
}

/// Who a terminal or log stream belongs to, and the right it was opened under: it must end when the
/// login session behind it ends, the account is disabled or deleted, or (for an admin on someone
/// else's request) the admin right is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The user's (lowercased) email.
    pub user: String,
    /// SHA-256 of the login session id (none in proxy mode, where there is no login session).
    pub login: Option<String>,
    /// Whether the identity is a local account (disabling and deleting apply).
    pub local: bool,
    /// Opened on someone else's request, allowed only because the user is an admin.
    pub admin_only: bool,
    /// Opened with a personal API token (`login` is its hash): its end is the token's revocation or
    /// expiry, not a sign-out.
    pub personal_token: bool,
}

impl Owner {
    /// The owner of a stream `id` opens on `ar`.
    pub fn of(id: &Identity, ar: &AccessRequest) -> Self {
        Self {
            user: id.email.to_lowercase(),
            login: id.session.clone(),
            local: id.auth == AuthSource::Local,
            admin_only: !crate::requests::is_requester(id, ar),
            personal_token: id.token.as_ref().is_some_and(|t| t.personal),
        }
    }
}

/// Why a terminal or log stream ends: a short category for the audit log and the session row, and a
/// sentence for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndReason {
    /// `revoked`, `expired`, `logout`, `user-disabled`, … (docs/security.md lists them).
    pub category: &'static str,
    /// What the person is told.
    pub message: String,
}

impl EndReason {
    /// A reason with an explicit category.
    pub fn new(category: &'static str, message: impl Into<String>) -> Self {
        Self {
            category,
            message: message.into(),
        }
    }

    /// A reason whose category follows from its wording (request-lifecycle reasons).
    pub fn from_message(message: &str) -> Self {
        Self::new(reason_category(message), message)
    }

    /// The user signed out (or an admin's change to the account signed them out everywhere).
    pub fn logout() -> Self {
        Self::new("logout", "you were signed out")
    }

    /// The personal API token the stream was opened with was revoked (or deleted).
    pub fn token_revoked() -> Self {
        Self::new("token-revoked", "the API token was revoked")
    }
}

/// Category of a request-lifecycle end reason: user, idle, revoked, expired, withdrawn, deleted,
/// shutdown, error.
pub fn reason_category(reason: &str) -> &'static str {
    if reason.contains("idle") {
        "idle"
    } else if reason.contains("revoked") {
        "revoked"
    } else if reason.contains("expired") {
        "expired"
    } else if reason.contains("withdrawn") {
        "withdrawn"
    } else if reason.contains("deleted") {
        "deleted"
    } else if reason.contains("shutting down") {
        "shutdown"
    } else if reason.contains("error") || reason.contains("lost") {
        "error"
    } else {
        "user"
    }
}

struct Entry {
    kind: StreamKind,
    request: String,
    owner: Owner,
    close: watch::Sender<Option<EndReason>>,
}

impl Entry {
    /// Sends the reason unless one was sent already: the first reason is the one recorded.
    fn end(&self, reason: &EndReason) {
        self.close.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(reason.clone());
            true
        });
    }
}

/// The terminal sessions and log streams open on this replica, so that any of them can be ended at once.
#[derive(Default)]
pub struct Terminals {
    open: Mutex<HashMap<String, Entry>>,
    /// Wakes the owner check at once (a user was changed here) instead of at its next tick.
    recheck: Notify,
}

/// One stream's owner, as the owner check needs it.
#[derive(Debug, Clone)]
pub struct OwnedStream {
    /// The registry id.
    pub id: String,
    /// Its owner.
    pub owner: Owner,
}

impl Terminals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a terminal or log stream, enforcing the per-user and per-replica limits of its kind;
    /// the receiver yields the reason when it must end.
    pub fn register(
        &self,
        id: &str,
        kind: StreamKind,
        request: &str,
        owner: Owner,
        max_per_user: usize,
        max_per_replica: usize,
    ) -> Result<watch::Receiver<Option<EndReason>>, String> {
        let mut open = self.lock();
        let what = match kind {
            StreamKind::Terminal => "terminal sessions",
            StreamKind::Logs => "log streams",
        };
        let same_kind = open.values().filter(|e| e.kind == kind).count();
        if same_kind >= max_per_replica {
            return Err(format!(
                "this server already serves {same_kind} {what} (the limit); try again later"
            ));
        }
        let mine = open
            .values()
            .filter(|e| e.kind == kind && e.owner.user.eq_ignore_ascii_case(&owner.user))
            .count();
        if mine >= max_per_user {
            return Err(format!(
                "you already have {mine} {what} open (the limit is {max_per_user}); close one first"
            ));
        }
        let (tx, rx) = watch::channel(None);
        open.insert(
            id.to_string(),
            Entry {
                kind,
                request: request.to_string(),
                owner,
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
        let reason = EndReason::from_message(reason);
        for e in self.lock().values().filter(|e| e.request == request) {
            e.end(&reason);
        }
    }

    /// Ends this replica's sessions of a request that a decision just ended (a revocation, a
    /// withdrawal), as soon as the decision is stored: the watch brings the same change to every
    /// replica, this one included, but only after the API server's round trip and whatever queue is
    /// ahead of it. Does nothing while the request still grants access.
    pub fn close_if_ended(&self, ar: &AccessRequest) {
        if let (Some(reason), Some(name)) = (end_reason(ar), ar.metadata.name.as_deref()) {
            self.close_request(name, reason);
        }
    }

    /// Ends every session.
    pub fn close_all(&self, reason: &str) {
        let reason = EndReason::from_message(reason);
        for e in self.lock().values() {
            e.end(&reason);
        }
    }

    /// Ends every terminal and log stream opened under a login session (its hash).
    pub fn close_login(&self, login: &str, reason: &EndReason) {
        for e in self.lock().values().filter(|e| e.owner.login.as_deref() == Some(login)) {
            e.end(reason);
        }
    }

    /// Ends every terminal and log stream of a user (any login session).
    pub fn close_user(&self, email: &str, reason: &EndReason) {
        for e in self
            .lock()
            .values()
            .filter(|e| e.owner.user.eq_ignore_ascii_case(email))
        {
            e.end(reason);
        }
    }

    /// Ends the streams a user opened on other people's requests as an admin.
    pub fn close_admin_only(&self, email: &str, reason: &EndReason) {
        for e in self
            .lock()
            .values()
            .filter(|e| e.owner.admin_only && e.owner.user.eq_ignore_ascii_case(email))
        {
            e.end(reason);
        }
    }

    /// Ends one stream.
    pub fn close_one(&self, id: &str, reason: &EndReason) {
        if let Some(e) = self.lock().get(id) {
            e.end(reason);
        }
    }

    /// Asks the owner check to run now rather than at its next tick.
    pub fn recheck_owners(&self) {
        self.recheck.notify_one();
    }

    /// Open terminal sessions.
    pub fn count(&self) -> usize {
        self.count_kind(StreamKind::Terminal)
    }

    /// Open streams of one kind.
    pub fn count_kind(&self, kind: StreamKind) -> usize {
        self.lock().values().filter(|e| e.kind == kind).count()
    }

    /// Requests with open sessions.
    pub fn requests(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().values().map(|e| e.request.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every open stream that has not been told to end yet, with its owner.
    pub fn owned(&self) -> Vec<OwnedStream> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.close.borrow().is_none())
            .map(|(id, e)| OwnedStream {
                id: id.clone(),
                owner: e.owner.clone(),
            })
            .collect()
    }
}

/// Why a stream must end, given what the database says now about its owner; `None` while everything
/// it was opened under still holds. `admin_by_config` says whether the configuration alone makes the
/// user an admin (`adminEmails`).
pub fn owner_end_reason(
    owner: &Owner,
    states: &janus_store::OwnerStates,
    now: chrono::DateTime<chrono::Utc>,
    admin_by_config: bool,
) -> Option<EndReason> {
    // The account's state comes first: it says why the login session is gone, too.
    if owner.local {
        match states.accounts.get(&owner.user) {
            None => return Some(EndReason::new("user-deleted", "your account was deleted")),
            Some(a) if a.disabled => return Some(EndReason::new("user-disabled", "your account was disabled")),
            Some(a) if owner.admin_only && !a.is_admin && !admin_by_config => {
                return Some(EndReason::new("admin-removed", "your admin rights were removed"));
            }
            Some(_) => {}
        }
    }
    let login = owner.login.as_deref()?;
    match states.sessions.get(login) {
        None if owner.personal_token => Some(EndReason::token_revoked()),
        Some(expires) if owner.personal_token && *expires <= now => {
            Some(EndReason::new("token-expired", "the API token expired"))
        }
        None => Some(EndReason::logout()),
        Some(expires) if *expires <= now => Some(EndReason::new("session-expired", "your login session expired")),
        Some(_) => None,
    }
}

/// How often every replica re-checks the owners of its open terminals and log streams.
const OWNER_CHECK: Duration = Duration::from_millis(500);

/// Ends terminals and log streams whose owner signed out, was disabled or deleted, or lost the admin
/// right they were opened under — whichever replica the change was made on. Every [`OWNER_CHECK`] (or
/// at once when woken), one batched query asks the shared database about every owner at once.
async fn watch_owners(state: AppState) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(OWNER_CHECK) => {}
            _ = state.terminals.recheck.notified() => {}
        }
        let streams = state.terminals.owned();
        if streams.is_empty() {
            continue;
        }
        let logins: Vec<String> = streams
            .iter()
            .filter_map(|s| s.owner.login.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let emails: Vec<String> = streams
            .iter()
            .filter(|s| s.owner.local)
            .map(|s| s.owner.user.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if logins.is_empty() && emails.is_empty() {
            continue;
        }
        let states = match state.store.owner_states(&logins, &emails).await {
            Ok(s) => {
                if failing {
                    tracing::info!("terminal owner check works again");
                    failing = false;
                }
                s
            }
            // Like signed-in pages during an outage: what the database cannot answer is not ended.
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "terminal owner check failed; retrying");
                    failing = true;
                }
                continue;
            }
        };
        let now = chrono::Utc::now();
        for s in streams {
            let by_config = state.admin_by_config(&s.owner.user, &[]);
            if let Some(reason) = owner_end_reason(&s.owner, &states, now, by_config) {
                state.terminals.close_one(&s.id, &reason);
            }
        }
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

/// Ends sessions whose request expired even when no watch event arrives (clock-driven), every 250 ms,
/// and those whose owner's rights ended ([`watch_owners`]).
pub async fn housekeeping(state: AppState) {
    // One task, so that aborting housekeeping stops both loops.
    tokio::join!(watch_requests_clock(state.clone()), watch_owners(state));
}

async fn watch_requests_clock(state: AppState) {
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
        .route("/api/v1/requests/{name}/debug", post(debug::start))
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

    fn owner(user: &str, login: &str, admin_only: bool) -> Owner {
        Owner {
            user: user.into(),
            login: Some(login.into()),
            local: true,
            admin_only,
            personal_token: false,
        }
    }

    #[test]
    fn limits_and_closing() {
        let t = Terminals::default();
        let term = StreamKind::Terminal;
        let mut a = t.register("1", term, "r1", owner("u@x", "s1", false), 2, 3).unwrap();
        let _b = t.register("2", term, "r1", owner("u@x", "s1", false), 2, 3).unwrap();
        assert!(
            t.register("3", term, "r2", owner("U@x", "s1", false), 2, 3)
                .unwrap_err()
                .contains("limit is 2")
        );
        let _c = t.register("3", term, "r2", owner("v@x", "s2", false), 2, 3).unwrap();
        assert!(
            t.register("4", term, "r3", owner("w@x", "s3", false), 2, 3)
                .unwrap_err()
                .contains("limit")
        );
        t.close_request("r1", "access was revoked");
        assert_eq!(
            a.borrow_and_update().clone(),
            Some(EndReason::new("revoked", "access was revoked"))
        );
        // The first reason is the one that counts.
        t.close_all("the web server is shutting down");
        assert_eq!(a.borrow_and_update().as_ref().map(|r| r.category), Some("revoked"));
        t.unregister("1");
        assert_eq!(t.count(), 2);
    }

    #[test]
    fn only_a_request_that_grants_no_more_ends_its_sessions() {
        let t = Terminals::default();
        let mut live = t
            .register("1", StreamKind::Terminal, "r1", owner("u@x", "s1", false), 5, 5)
            .unwrap();
        let mut ar: AccessRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "janus.io/v1alpha1", "kind": "AccessRequest",
            "metadata": {"name": "r1"},
            "spec": {"requester": "u@x", "cluster": "c", "namespaces": ["n"], "ttlSeconds": 600, "reason": "x"},
            "status": {"phase": "Active"}
        }))
        .unwrap();
        t.close_if_ended(&ar);
        assert!(
            live.borrow_and_update().is_none(),
            "an Active request keeps its sessions"
        );
        ar.spec.revocation = Some(janus_api::access_request::Revocation {
            by: "a@x".into(),
            at: "2026-12-08T00:00:00Z".into(),
            reason: String::new(),
        });
        t.close_if_ended(&ar);
        assert_eq!(live.borrow_and_update().as_ref().map(|r| r.category), Some("revoked"));
    }

    #[test]
    fn log_streams_have_their_own_limits() {
        let t = Terminals::default();
        let logs = StreamKind::Logs;
        let _l1 = t.register("l1", logs, "r1", owner("u@x", "s1", false), 1, 2).unwrap();
        let err = t
            .register("l2", logs, "r1", owner("u@x", "s1", false), 1, 2)
            .unwrap_err();
        assert!(err.contains("log streams") && err.contains("limit is 1"), "{err}");
        // Log streams do not use up terminal slots, and terminals do not use up log-stream slots.
        let _t1 = t
            .register("t1", StreamKind::Terminal, "r1", owner("u@x", "s1", false), 1, 1)
            .unwrap();
        let _l3 = t.register("l3", logs, "r2", owner("v@x", "s2", false), 1, 2).unwrap();
        assert!(t.register("l4", logs, "r3", owner("w@x", "s3", false), 1, 2).is_err());
        assert_eq!((t.count(), t.count_kind(logs)), (1, 2));
    }

    #[test]
    fn streams_of_a_login_or_user_end_together() {
        let t = Terminals::default();
        let term = StreamKind::Terminal;
        let mut mine = t.register("1", term, "r1", owner("u@x", "s1", false), 9, 9).unwrap();
        let mut other_login = t.register("2", term, "r1", owner("u@x", "s2", false), 9, 9).unwrap();
        let mut as_admin = t.register("3", term, "r2", owner("u@x", "s2", true), 9, 9).unwrap();
        let mut someone = t
            .register("4", StreamKind::Logs, "r3", owner("v@x", "s3", false), 9, 9)
            .unwrap();
        t.close_login("s1", &EndReason::logout());
        assert_eq!(mine.borrow_and_update().as_ref().map(|r| r.category), Some("logout"));
        assert!(other_login.borrow_and_update().is_none());
        t.close_admin_only("U@X", &EndReason::new("admin-removed", "x"));
        assert!(other_login.borrow_and_update().is_none());
        assert_eq!(
            as_admin.borrow_and_update().as_ref().map(|r| r.category),
            Some("admin-removed")
        );
        t.close_user("u@x", &EndReason::new("user-disabled", "x"));
        assert_eq!(
            other_login.borrow_and_update().as_ref().map(|r| r.category),
            Some("user-disabled")
        );
        assert!(someone.borrow_and_update().is_none());
        // Streams already told to end are not checked again.
        assert_eq!(t.owned().iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), vec!["4"]);
    }

    #[test]
    fn owner_rules() {
        use janus_store::{OwnerAccount, OwnerStates};
        let now = chrono::Utc::now();
        let mut st = OwnerStates::default();
        st.sessions.insert("s1".into(), now + chrono::Duration::hours(1));
        st.sessions.insert("old".into(), now - chrono::Duration::seconds(1));
        st.accounts.insert(
            "u@x".into(),
            OwnerAccount {
                is_admin: true,
                disabled: false,
            },
        );
        let cat = |o: &Owner, st: &OwnerStates, cfg: bool| owner_end_reason(o, st, now, cfg).map(|r| r.category);
        assert_eq!(cat(&owner("u@x", "s1", true), &st, false), None);
        assert_eq!(cat(&owner("u@x", "gone", false), &st, false), Some("logout"));
        assert_eq!(cat(&owner("u@x", "old", false), &st, false), Some("session-expired"));
        assert_eq!(cat(&owner("v@x", "s1", false), &st, false), Some("user-deleted"));
        // OIDC and proxy identities have no local account to check.
        let oidc = Owner {
            local: false,
            ..owner("v@x", "s1", true)
        };
        assert_eq!(cat(&oidc, &st, false), None);
        let proxy = Owner { login: None, ..oidc };
        assert_eq!(cat(&proxy, &OwnerStates::default(), false), None);
        let mut demoted = st.clone();
        demoted.accounts.insert(
            "u@x".into(),
            OwnerAccount {
                is_admin: false,
                disabled: false,
            },
        );
        assert_eq!(cat(&owner("u@x", "s1", true), &demoted, false), Some("admin-removed"));
        assert_eq!(
            cat(&owner("u@x", "s1", true), &demoted, true),
            None,
            "admin by adminEmails"
        );
        assert_eq!(cat(&owner("u@x", "s1", false), &demoted, false), None, "own request");
        demoted.accounts.insert(
            "u@x".into(),
            OwnerAccount {
                is_admin: false,
                disabled: true,
            },
        );
        assert_eq!(cat(&owner("u@x", "s1", false), &demoted, false), Some("user-disabled"));
        // A personal API token: gone means revoked, not signed out; the account still comes first.
        let pat = |login: &str| Owner {
            personal_token: true,
            ..owner("u@x", login, false)
        };
        assert_eq!(cat(&pat("s1"), &st, false), None);
        let r = owner_end_reason(&pat("gone"), &st, now, false);
        assert_eq!(r, Some(EndReason::token_revoked()));
        assert_eq!(r.map(|r| r.message), Some("the API token was revoked".to_string()));
        assert_eq!(cat(&pat("old"), &st, false), Some("token-expired"));
        assert_eq!(cat(&pat("gone"), &demoted, false), Some("user-disabled"));
    }
}
