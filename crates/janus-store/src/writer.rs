//! A buffered audit writer for events the web process records itself (logins, users, terminal
//! sessions): recording never blocks or fails the user's action, and events recorded while the
//! database is unreachable are kept in memory (bounded) and written, in order, once it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::{NewAuditEvent, Store};

enum Msg {
    Event(Box<NewAuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// Largest number of events written in one transaction.
const BATCH: usize = 200;

/// Handle on the background writer; cheap to clone.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    healthy: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl AuditWriter {
    /// Starts the writer task, holding at most `capacity` events while the database is unreachable.
    /// It ends after every handle is dropped and the buffer is written.
    pub fn spawn(store: Store, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        tokio::spawn(write_loop(store, rx, healthy.clone()));
        Self {
            tx,
            healthy,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues an event. Returns `false` (and logs it, with the whole event, so the log still has it) if
    /// the buffer is full.
    pub fn record(&self, ev: NewAuditEvent) -> bool {
        match self.tx.try_send(Msg::Event(Box::new(ev))) {
            Ok(()) => true,
            Err(
                mpsc::error::TrySendError::Full(Msg::Event(ev)) | mpsc::error::TrySendError::Closed(Msg::Event(ev)),
            ) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    target: "audit",
                    key = %ev.key,
                    kind = ev.kind.as_str(),
                    at = %ev.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    actor = %ev.actor,
                    request = ev.request.as_deref().unwrap_or(""),
                    cluster = ev.cluster.as_deref().unwrap_or(""),
                    namespaces = %ev.namespaces.join(","),
                    details = %ev.details,
                    "audit buffer full: event NOT stored in the database"
                );
                false
            }
            Err(_) => false,
        }
    }

    /// Waits until every event queued before this call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// `false` while the database cannot be written.
    pub fn healthy(&self) -> Arc<AtomicBool> {
        self.healthy.clone()
    }

    /// Events dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Msg>, healthy: Arc<AtomicBool>) {
    let mut batch: Vec<NewAuditEvent> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut closed = false;
    loop {
        if batch.is_empty() && waiters.is_empty() {
            if closed {
                return;
            }
            match rx.recv().await {
                Some(Msg::Event(ev)) => batch.push(*ev),
                Some(Msg::Flush(w)) => waiters.push(w),
                None => return,
            }
        }
        // Everything already waiting joins this batch (a flush marker ends it, keeping order).
        while batch.len() < BATCH && waiters.is_empty() {
            match rx.try_recv() {
                Ok(Msg::Event(ev)) => batch.push(*ev),
                Ok(Msg::Flush(w)) => waiters.push(w),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let mut backoff = Duration::from_millis(250);
        while !batch.is_empty() {
            match store.record_audit_batch(&batch).await {
                Ok(_) => {
                    batch.clear();
                    if !healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!("audit database reachable again; buffered events written");
                    }
                }
                Err(crate::StoreError::Invalid(m)) => {
                    tracing::error!(error = %m, "audit events refused; dropped");
                    batch.clear();
                }
                Err(e) => {
                    if healthy.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "cannot write the audit database; buffering events");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}
