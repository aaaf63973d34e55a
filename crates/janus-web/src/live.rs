//! Live updates: AccessRequest changes fanned out to browsers over Server-Sent Events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;

use janus_api::AccessRequest;

use crate::auth::{AuthSource, Authenticated, Identity};
use crate::requests;
use crate::state::AppState;
use crate::terminal::{Owner, owner_end_reason};

/// How often an open event stream re-checks that its owner's right to it still holds. Unlike terminals
/// (one batched check for all), each stream asks for itself: a stream is cheap, the query is one row.
const OWNER_CHECK: Duration = Duration::from_secs(2);

/// One change of one request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Request name.
    pub name: String,
    /// The request as it is now (for deciding who sees the change; never sent).
    #[serde(skip)]
    pub request: Arc<AccessRequest>,
    /// Its phase now (`Deleted` when it is gone).
    pub phase: String,
}

/// The fan-out.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Change>,
    closing: tokio_util::sync::CancellationToken,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub with a bounded buffer: slow browsers miss changes and get a `resync` instead.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self {
            tx,
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Ends every event stream (shutdown).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Publishes a change.
    pub fn publish(&self, c: Change) {
        let _ = self.tx.send(c);
    }

    /// Subscribes.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}

/// `GET /api/v1/events`: the changes the caller may see.
#[utoipa::path(get, path = "/api/v1/events", tag = "requests", summary = "Live updates (Server-Sent Events) of the requests the caller may see",
    responses(
        (status = 200, description = "Server-Sent Events of the requests the caller may see: `event: request` with \
            data {name, phase, ...}; `event: resync` when updates were missed", content_type = "text/event-stream", body = String),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.live.subscribe();
    let shutdown = Box::pin(state.live.closing.clone().cancelled_owned());
    // The stream tells request names and phases: it ends when what it was opened under ends (token
    // revoked or expired, signed out, account disabled or deleted), like terminals and log streams.
    let owner_gone = Box::pin(owner_gone(state.clone(), owner_of(&id)));
    let closing = futures::future::select(shutdown, owner_gone);
    // Approvers of a request's policy see it as they see it on the pages, not only admins and the requester.
    let seer = state.clone();
    let stream = futures::StreamExt::take_until(BroadcastStream::new(rx), closing).filter_map(move |item| match item {
        Ok(c) if requests::may_see(&seer, &id, &c.request) => Some(Ok(Event::default()
            .event("request")
            .data(serde_json::to_string(&c).unwrap_or_default()))),
        Ok(_) => None,
        Err(_) => Some(Ok(Event::default().event("resync").data("{}"))),
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The owner of an event stream: no request, so never admin-only.
fn owner_of(id: &Identity) -> Owner {
    Owner {
        user: id.email.to_lowercase(),
        login: id.session.clone(),
        local: id.auth == AuthSource::Local,
        admin_only: false,
        personal_token: id.token.as_ref().is_some_and(|t| t.personal),
    }
}

/// Resolves when the owner's right to the stream has ended (checked every [`OWNER_CHECK`]); never
/// when there is nothing to check (proxy mode without a token). A database that cannot answer ends
/// nothing, as for terminals.
async fn owner_gone(state: AppState, owner: Owner) {
    if owner.login.is_none() && !owner.local {
        return std::future::pending().await;
    }
    let logins: Vec<String> = owner.login.iter().cloned().collect();
    let emails: Vec<String> = if owner.local { vec![owner.user.clone()] } else { vec![] };
    loop {
        tokio::time::sleep(OWNER_CHECK).await;
        let states = match state.store.owner_states(&logins, &emails).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "event stream owner check failed; retrying");
                continue;
            }
        };
        let by_config = state.admin_by_config(&owner.user, &[]);
        if let Some(reason) = owner_end_reason(&owner, &states, chrono::Utc::now(), by_config) {
            tracing::debug!(user = %owner.user, reason = reason.category, "event stream ended");
            return;
        }
    }
}
