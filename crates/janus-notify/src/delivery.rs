//! The delivery engine: turns the audit log into outbox rows (one per event and accepting sink), adds
//! the "expiring soon" messages, and sends due rows with their sink — claimed with a lease so that,
//! with several web replicas, one replica sends each delivery; retried with exponential backoff and
//! full jitter (at least the receiver's `Retry-After`); dead-lettered when refused or too old.
//!
//! Every replica runs [`Delivery::run`]. The design and the guarantees are in docs/notifications.md,
//! "Delivery".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use janus_api::config::Config;
use janus_store::{NewOutboxRow, OutboxRow, RequestQuery, Store, StoreError};
use tokio::sync::watch;

use crate::model::{Context, Event, Notification, expiring_soon_event, implied};
use crate::sink::{SendError, Sink};

/// Tunables of the engine. [`DeliveryOptions::from_config`] gives the production values.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// This replica's name (written into claims).
    pub replica: String,
    /// How often the loops look for work when there is none.
    pub poll: Duration,
    /// Audit events read per producer transaction.
    pub produce_batch: i64,
    /// Rows claimed at once.
    pub claim_batch: i64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How long a claim holds: longer than a whole batch can take, so a live sender never loses it.
    pub lease: Duration,
    /// First retry delay (before jitter).
    pub backoff_base: Duration,
    /// Longest retry delay (before `Retry-After`).
    pub backoff_cap: Duration,
    /// Dead-letter a delivery still failing this long after it was queued (or retried by hand).
    pub dead_letter_after: Duration,
    /// Send "expiring soon" this long before access ends.
    pub expiring_soon: Duration,
}

impl DeliveryOptions {
    /// The production values for `config.notifications`, for replica `replica`.
    pub fn from_config(config: &Config, replica: &str) -> Self {
        let n = &config.notifications;
        let claim_batch = 32;
        let concurrency = 8;
        let timeout = Duration::from_secs(n.timeout_seconds);
        // A batch is at most claim_batch / concurrency rounds of one timeout each; twice that, plus
        // a margin for the database, before another replica may take the rows over.
        let rounds = u32::try_from(claim_batch / concurrency as i64 + 1).unwrap_or(u32::MAX);
        Self {
            replica: replica.to_string(),
            poll: Duration::from_secs(1),
            produce_batch: 500,
            claim_batch,
            concurrency,
            lease: timeout.saturating_mul(rounds.saturating_mul(2)) + Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            dead_letter_after: Duration::from_secs(n.dead_letter_after_seconds),
            expiring_soon: Duration::from_secs(n.expiring_soon_seconds),
        }
    }
}

/// What one pass of the sender did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Rows claimed.
    pub claimed: usize,
    /// Accepted by the receiver.
    pub sent: usize,
    /// Failed, to be retried.
    pub retrying: usize,
    /// Dead-lettered.
    pub dead: usize,
}

/// Told of every delivery outcome, per sink (the web's `janus_web_notification_*` metrics).
pub trait DeliveryObserver: Send + Sync {
    /// The sink accepted a delivery; `latency` runs from the audit event to the acceptance.
    fn sent(&self, sink: &str, latency: Duration);
    /// An attempt failed (whatever happens next).
    fn failed(&self, sink: &str);
    /// A failed delivery was scheduled for another attempt.
    fn retrying(&self, sink: &str);
    /// A delivery was dead-lettered.
    fn dead_lettered(&self, sink: &str);
}

/// The delivery engine of one replica.
#[derive(Clone)]
pub struct Delivery {
    observer: Option<Arc<dyn DeliveryObserver>>,
    store: Store,
    config: Arc<Config>,
    sinks: Arc<HashMap<String, Arc<dyn Sink>>>,
    order: Arc<Vec<String>>,
    opts: DeliveryOptions,
}

/// The delay before retry number `attempts` (1 for the first retry): full jitter — uniform between zero
/// and `base · 2^(attempts−1)`, capped at `cap` — and never shorter than `retry_after`.
pub fn backoff(attempts: i64, base: Duration, cap: Duration, retry_after: Option<Duration>) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let ceiling = base.saturating_mul(2u32.saturating_pow(exp)).min(cap);
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let jittered = Duration::from_millis(if ceiling_ms == 0 {
        0
    } else {
        rand::random_range(0..=ceiling_ms)
    });
    jittered.max(retry_after.unwrap_or(Duration::ZERO))
}

/// The error kept with a row: short, and from the sink's own (scrubbed) wording.
fn excerpt(s: &str) -> String {
    const MAX: usize = 600;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Delivery {
    /// An engine over `store` with the built `sinks` (from [`crate::build`]).
    pub fn new(store: Store, config: Arc<Config>, sinks: Vec<Box<dyn Sink>>, opts: DeliveryOptions) -> Self {
        let order = sinks.iter().map(|s| s.name().to_string()).collect();
        let sinks = sinks
            .into_iter()
            .map(|s| (s.name().to_string(), Arc::<dyn Sink>::from(s)))
            .collect();
        Self {
            observer: None,
            store,
            config,
            sinks: Arc::new(sinks),
            order: Arc::new(order),
            opts,
        }
    }

    /// The same engine with other tunables (the replica name included).
    pub fn with_options(mut self, opts: DeliveryOptions) -> Self {
        self.opts = opts;
        self
    }

    /// The same engine, telling `observer` of every outcome.
    pub fn with_observer(mut self, observer: Arc<dyn DeliveryObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The same engine with `n` deliveries in flight at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.opts.concurrency = n.max(1);
        self
    }

    /// The outbox rows `n` means: one per sink that accepts it, in configuration order.
    fn rows_for(&self, n: &Notification) -> Vec<NewOutboxRow> {
        let payload = match serde_json::to_string(n) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(event = %n.event.key, error = %e, "notification not serializable; not queued");
                return Vec::new();
            }
        };
        self.order
            .iter()
            .filter_map(|name| self.sinks.get(name).map(|s| (name, s)))
            .filter(|(_, s)| s.accepts(n))
            .map(|(name, _)| NewOutboxRow {
                key: n.idempotency_key(name),
                sink: name.clone(),
                event_key: n.event.key.clone(),
                kind: n.event.kind.clone(),
                payload: payload.clone(),
                event_at: n.event.at,
            })
            .collect()
    }

    async fn notification(&self, event: &Event) -> Result<Notification, StoreError> {
        let record = match &event.request {
            Some(name) => self.store.get_request(name).await?,
            None => None,
        };
        let mut ctx = Context::new(&self.config);
        ctx.request = record.as_ref();
        Ok(implied(event, &ctx))
    }

    /// Turns one batch of chained audit events after the cursor into outbox rows and moves the cursor,
    /// in one transaction. Returns the number of events consumed (0: caught up, or another replica
    /// moved the cursor first — its rows are the same).
    pub async fn produce_once(&self) -> Result<usize, StoreError> {
        let cursor = self.store.outbox_cursor().await?;
        let events = self.store.audit_events_after(cursor, self.opts.produce_batch).await?;
        let Some(last) = events.last().and_then(|e| e.seq) else {
            return Ok(0);
        };
        let mut rows = Vec::new();
        for ev in &events {
            let n = self.notification(&Event::from(ev)).await?;
            rows.extend(self.rows_for(&n));
        }
        let done = self.store.produce_outbox(cursor, last, &rows).await?;
        if done.advanced && done.inserted > 0 {
            tracing::debug!(
                events = events.len(),
                deliveries = done.inserted,
                "notifications queued"
            );
        }
        Ok(if done.advanced { events.len() } else { 0 })
    }

    /// Queues "expiring soon" for every Active request whose access ends within the configured time
    /// (from the request history the recorder keeps). The key holds the end, so an extension gives a
    /// new message and a repeat pass none. Returns the rows inserted.
    pub async fn expiring_once(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let horizon = now + chrono::Duration::from_std(self.opts.expiring_soon).unwrap_or(chrono::Duration::MAX);
        let mut inserted = 0;
        let mut offset = 0;
        loop {
            let (page, _) = self
                .store
                .list_requests(&RequestQuery {
                    phase: Some("Active".into()),
                    limit: 1000,
                    offset,
                    ..RequestQuery::default()
                })
                .await?;
            let n = page.len();
            let mut rows = Vec::new();
            for r in &page {
                let Some(end) = r.expires_at else { continue };
                if end <= now || end > horizon || r.deleted_at.is_some() {
                    continue;
                }
                let event = expiring_soon_event(r, end, now);
                let mut ctx = Context::new(&self.config);
                ctx.request = Some(r);
                rows.extend(self.rows_for(&implied(&event, &ctx)));
            }
            inserted += self.store.insert_outbox(&rows).await?;
            if n < 1000 {
                return Ok(inserted);
            }
            offset += 1000;
        }
    }

    /// Claims due deliveries and sends them (several at once), recording each outcome.
    pub async fn send_once(&self) -> Result<SendStats, StoreError> {
        let rows = self
            .store
            .claim_outbox(&self.opts.replica, self.opts.claim_batch, self.opts.lease)
            .await?;
        let mut stats = SendStats {
            claimed: rows.len(),
            ..SendStats::default()
        };
        let outcomes: Vec<Result<Outcome, StoreError>> = futures::stream::iter(rows)
            .map(|row| self.deliver(row))
            .buffer_unordered(self.opts.concurrency.max(1))
            .collect()
            .await;
        for o in outcomes {
            match o? {
                Outcome::Sent => stats.sent += 1,
                Outcome::Retrying => stats.retrying += 1,
                Outcome::Dead => stats.dead += 1,
            }
        }
        Ok(stats)
    }

    async fn deliver(&self, row: OutboxRow) -> Result<Outcome, StoreError> {
        let Some(sink) = self.sinks.get(&row.sink) else {
            // Another replica (a rolling update) may still know it: retry, dead-letter in time.
            let reason = format!("sink {} is not configured on replica {}", row.sink, self.opts.replica);
            return self.failed(&row, None, None, reason).await;
        };
        let n: Notification = match serde_json::from_str(&row.payload) {
            Ok(n) => n,
            Err(e) => {
                self.store
                    .outbox_dead(row.id, false, None, &format!("stored notification unreadable: {e}"))
                    .await?;
                if let Some(o) = &self.observer {
                    o.dead_lettered(&row.sink);
                }
                return Ok(Outcome::Dead);
            }
        };
        match sink.send(&n, &row.key).await {
            Ok(_) => {
                let at = Utc::now();
                self.store.outbox_sent(row.id, at).await?;
                let latency = (at - row.event_at).to_std().unwrap_or(Duration::ZERO);
                if let Some(o) = &self.observer {
                    o.sent(&row.sink, latency);
                }
                tracing::debug!(sink = %row.sink, key = %row.key, latency_ms = latency.as_millis() as u64, "delivered");
                Ok(Outcome::Sent)
            }
            Err(SendError::Retryable { retry_after, reason }) => self.failed(&row, None, retry_after, reason).await,
            Err(SendError::Permanent { status, body }) => {
                let error = excerpt(&format!("refused: {body}"));
                tracing::warn!(sink = %row.sink, key = %row.key, status = ?status, error = %error, "delivery dead-lettered");
                if let Some(o) = &self.observer {
                    o.failed(&row.sink);
                    o.dead_lettered(&row.sink);
                }
                self.store
                    .outbox_dead(row.id, true, status.map(i64::from), &error)
                    .await?;
                Ok(Outcome::Dead)
            }
        }
    }

    /// A failed attempt: retried later, or dead-lettered once the row is older than the dead-letter
    /// time.
    async fn failed(
        &self,
        row: &OutboxRow,
        status: Option<u16>,
        retry_after: Option<Duration>,
        reason: String,
    ) -> Result<Outcome, StoreError> {
        let error = excerpt(&reason);
        let now = Utc::now();
        if let Some(o) = &self.observer {
            o.failed(&row.sink);
        }
        let age = (now - row.since).to_std().unwrap_or(Duration::ZERO);
        if age >= self.opts.dead_letter_after {
            let error = excerpt(&format!(
                "not delivered within {} s; last error: {error}",
                self.opts.dead_letter_after.as_secs()
            ));
            tracing::warn!(sink = %row.sink, key = %row.key, error = %error, "delivery dead-lettered");
            if let Some(o) = &self.observer {
                o.dead_lettered(&row.sink);
            }
            self.store
                .outbox_dead(row.id, true, status.map(i64::from), &error)
                .await?;
            return Ok(Outcome::Dead);
        }
        let wait = backoff(
            row.attempts + 1,
            self.opts.backoff_base,
            self.opts.backoff_cap,
            retry_after,
        );
        let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        tracing::info!(sink = %row.sink, key = %row.key, attempts = row.attempts + 1, retry_in_ms = wait.as_millis() as u64, error = %error, "delivery failed; retrying");
        if let Some(o) = &self.observer {
            o.retrying(&row.sink);
        }
        self.store
            .outbox_retry_later(row.id, next, status.map(i64::from), &error)
            .await?;
        Ok(Outcome::Retrying)
    }

    /// Runs the producer, the expiring-soon pass and the sender until `stop` turns true; a send in
    /// flight finishes first (its row is committed), then the loops end. Database errors are logged
    /// and the pass is tried again after the poll interval.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if self.sinks.is_empty() {
            return;
        }
        tracing::info!(replica = %self.opts.replica, sinks = self.sinks.len(), "notification delivery started");
        let mut last_expiring: Option<DateTime<Utc>> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            let mut busy = false;
            loop {
                match self.produce_once().await {
                    Ok(0) => break,
                    Ok(_) => busy = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "notifications: producing deliveries failed");
                        break;
                    }
                }
                if *stop.borrow() {
                    break;
                }
            }
            let now = Utc::now();
            // Every 10 s is plenty for a window of minutes.
            if last_expiring.is_none_or(|t| now - t >= chrono::Duration::seconds(10)) {
                last_expiring = Some(now);
                if let Err(e) = self.expiring_once(now).await {
                    tracing::warn!(error = %e, "notifications: queueing expiring-soon messages failed");
                }
            }
            match self.send_once().await {
                Ok(s) if s.claimed > 0 => busy = true,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "notifications: sending failed"),
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.opts.poll) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!(replica = %self.opts.replica, "notification delivery stopped");
    }
}

enum Outcome {
    Sent,
    Retrying,
    Dead,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_capped_and_honours_retry_after() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(300));
        for attempts in 1..40 {
            let d = backoff(attempts, base, cap, None);
            let ceiling = base
                .saturating_mul(2u32.saturating_pow((attempts - 1).min(30) as u32))
                .min(cap);
            assert!(d <= ceiling, "{attempts}: {d:?} > {ceiling:?}");
        }
        assert!(backoff(1, base, cap, Some(Duration::from_secs(120))) >= Duration::from_secs(120));
        // Jitter: not always the ceiling.
        let draws: Vec<_> = (0..50).map(|_| backoff(10, base, cap, None)).collect();
        assert!(draws.iter().any(|d| *d != draws[0]));
    }

    #[test]
    fn excerpt_cuts_on_a_char_boundary() {
        let long = "é".repeat(400);
        let e = excerpt(&long);
        assert!(e.len() <= 604 && e.ends_with('…'));
    }
}
