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

use crate::auth::Authenticated;
use crate::requests;
use crate::state::AppState;

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
    let closing = state.live.closing.clone().cancelled_owned();
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
