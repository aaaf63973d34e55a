//! The notification outbox: one row per (audit event, sink) to deliver, the producer's cursor over the
//! audit chain, claims with a lease for the senders, retries and dead letters. The delivery loop that
//! drives it lives in `janus_notify::delivery`; the design is in docs/notifications.md, "Delivery".

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{AuditEvent, Backend, RowExt, Store, StoreError, from_us, on_pool, opt_from_us, page, us};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Not delivered yet (due at `next_attempt_at`, possibly claimed by a sender).
    Pending,
    /// The receiver accepted it.
    Sent,
    /// Given up: refused permanently, or not accepted within the dead-letter time.
    Dead,
}

impl OutboxState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sent => "sent",
            OutboxState::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(OutboxState::Pending),
            "sent" => Ok(OutboxState::Sent),
            "dead" => Ok(OutboxState::Dead),
            other => Err(StoreError::Query(format!("unknown outbox state {other:?}"))),
        }
    }
}

/// A delivery to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxRow {
    /// `<event key>/<sink>`: unique, and the idempotency key sent with the delivery.
    pub key: String,
    /// The sink's configured name.
    pub sink: String,
    /// The audit event's key.
    pub event_key: String,
    /// The event kind.
    pub kind: String,
    /// The notification, as JSON (`janus_notify::Notification`).
    pub payload: String,
    /// When the event happened (delivery latency is measured from here).
    pub event_at: DateTime<Utc>,
}

/// A queued delivery.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxRow {
    /// Row id (for [`Store::retry_dead`]).
    pub id: i64,
    /// `<event key>/<sink>`, the idempotency key.
    pub key: String,
    /// The sink's name.
    pub sink: String,
    /// The audit event's key.
    pub event_key: String,
    /// The event kind.
    pub kind: String,
    /// The notification, as JSON.
    pub payload: String,
    /// When the event happened.
    pub event_at: DateTime<Utc>,
    /// When the row was queued.
    pub created_at: DateTime<Utc>,
    /// Start of the dead-letter clock: creation, or the last manual retry.
    pub since: DateTime<Utc>,
    /// Where it stands.
    pub state: OutboxState,
    /// Attempts made (kept by a manual retry).
    pub attempts: i64,
    /// When it is due next.
    pub next_attempt_at: DateTime<Utc>,
    /// The replica holding the claim, if any.
    pub claimed_by: Option<String>,
    /// When the claim lapses.
    pub claimed_until: Option<DateTime<Utc>>,
    /// When the receiver accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// The status of the last failed answer (HTTP or SMTP), if there was one.
    pub last_status: Option<i64>,
    /// The last error (scrubbed by the sink: no URL, no secret).
    pub last_error: Option<String>,
}

/// The number of deliveries of one sink in one state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCount {
    /// The sink's name.
    pub sink: String,
    /// The state.
    pub state: OutboxState,
    /// How many rows.
    pub count: i64,
}

/// What one [`Store::produce_outbox`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Produced {
    /// Whether the cursor was where the caller read it (else another replica produced: nothing done).
    pub advanced: bool,
    /// Rows inserted (a row already queued is not counted).
    pub inserted: u64,
}

const COLUMNS: &str = "id, delivery_key, sink, event_key, kind, payload, event_at_us, created_us, since_us, state, \
     attempts, next_attempt_us, claimed_by, claimed_until_us, sent_us, last_status, last_error";

const INSERT: &str = "INSERT INTO notification_outbox (delivery_key, sink, event_key, kind, payload, event_at_us, \
     created_us, since_us, next_attempt_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) \
     ON CONFLICT (delivery_key) DO NOTHING";

/// Locks the cursor row for the rest of the transaction (a write, as in the audit chain: PostgreSQL
/// holds the row lock, SQLite takes its write lock at once) and reads it.
const LOCK_CURSOR: &str = "UPDATE notification_cursor SET last_seq = last_seq WHERE id = 1 RETURNING last_seq";

fn row_from(r: &impl RowExt) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: r.i64("id")?,
        key: r.string("delivery_key")?,
        sink: r.string("sink")?,
        event_key: r.string("event_key")?,
        kind: r.string("kind")?,
        payload: r.string("payload")?,
        event_at: from_us(r.i64("event_at_us")?)?,
        created_at: from_us(r.i64("created_us")?)?,
        since: from_us(r.i64("since_us")?)?,
        state: OutboxState::parse(&r.string("state")?)?,
        attempts: r.i64("attempts")?,
        next_attempt_at: from_us(r.i64("next_attempt_us")?)?,
        claimed_by: r.opt_string("claimed_by")?,
        claimed_until: opt_from_us(r.opt_i64("claimed_until_us")?)?,
        sent_at: opt_from_us(r.opt_i64("sent_us")?)?,
        last_status: r.opt_i64("last_status")?,
        last_error: r.opt_string("last_error")?,
    })
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Store {
    /// The producer's cursor: the last audit `seq` turned into outbox rows. On the first call on a
    /// database the cursor is created at the current chain head, so history recorded before
    /// notifications existed is not sent.
    pub async fn outbox_cursor(&self) -> Result<i64, StoreError> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO notification_cursor (id, last_seq) SELECT 1, last_seq FROM audit_chain WHERE id = 1 \
                 ON CONFLICT (id) DO NOTHING",
            )
            .execute(p)
            .await
            .map_err(StoreError::query)?;
            let row = sqlx::query("SELECT last_seq FROM notification_cursor WHERE id = 1")
                .fetch_one(p)
                .await
                .map_err(StoreError::query)?;
            row.i64("last_seq")
        })
    }

    /// Chained audit events after `seq`, in chain order, at most `limit` (clamped as pages are). Events
    /// without a place in the chain yet are not returned: they wait for it.
    pub async fn audit_events_after(&self, seq: i64, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
        on_pool!(self, p => {
            let rows = sqlx::query(&format!(
                "SELECT {} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                crate::audit::COLUMNS
            ))
            .bind(seq)
            .bind(page(limit))
            .fetch_all(p)
            .await
            .map_err(StoreError::query)?;
            rows.iter().map(crate::audit::event_from_row).collect()
        })
    }

    /// Queues `rows` and moves the cursor from `from_seq` to `to_seq`, in one transaction that holds the
    /// cursor's lock, so two replicas never both produce the same events. When the cursor is no longer
    /// at `from_seq` (another replica produced meanwhile) nothing is written (`advanced: false`).
    pub async fn produce_outbox(
        &self,
        from_seq: i64,
        to_seq: i64,
        rows: &[NewOutboxRow],
    ) -> Result<Produced, StoreError> {
        let now = us(Utc::now());
        on_pool!(self, p => {
            let mut tx = p.begin().await.map_err(StoreError::query)?;
            let cur = sqlx::query(LOCK_CURSOR)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            let at = match cur {
                Some(r) => r.i64("last_seq")?,
                None => return Err(StoreError::Invalid("the notification cursor is not set (call outbox_cursor first)".into())),
            };
            if at != from_seq {
                return Ok(Produced::default());
            }
            let mut inserted = 0;
            for r in rows {
                inserted += sqlx::query(INSERT)
                    .bind(&r.key)
                    .bind(&r.sink)
                    .bind(&r.event_key)
                    .bind(&r.kind)
                    .bind(&r.payload)
                    .bind(us(r.event_at))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?
                    .rows_affected();
            }
            sqlx::query("UPDATE notification_cursor SET last_seq = $1 WHERE id = 1")
                .bind(to_seq)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            tx.commit().await.map_err(StoreError::query)?;
            Ok(Produced { advanced: true, inserted })
        })
    }

    /// Queues rows outside the cursor (the "expiring soon" messages); a row already queued is kept as it
    /// is. Returns the number inserted.
    pub async fn insert_outbox(&self, rows: &[NewOutboxRow]) -> Result<u64, StoreError> {
        let now = us(Utc::now());
        on_pool!(self, p => {
            let mut tx = p.begin().await.map_err(StoreError::query)?;
            let mut inserted = 0;
            for r in rows {
                inserted += sqlx::query(INSERT)
                    .bind(&r.key)
                    .bind(&r.sink)
                    .bind(&r.event_key)
                    .bind(&r.kind)
                    .bind(&r.payload)
                    .bind(us(r.event_at))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?
                    .rows_affected();
            }
            tx.commit().await.map_err(StoreError::query)?;
            Ok(inserted)
        })
    }

    /// Claims up to `limit` due pending deliveries for `replica` until now + `lease`: due means
    /// `next_attempt_at` has come and no unexpired claim holds it. PostgreSQL skips rows another
    /// replica is claiming at the same moment (`FOR UPDATE SKIP LOCKED`); SQLite runs the one statement
    /// under its write lock. A claim that lapses (the sender died) makes the row due again.
    pub async fn claim_outbox(&self, replica: &str, limit: i64, lease: Duration) -> Result<Vec<OutboxRow>, StoreError> {
        let now = us(Utc::now());
        let until = now.saturating_add(micros(lease));
        let due = "SELECT id FROM notification_outbox WHERE state = 'pending' AND next_attempt_us <= $3 \
             AND (claimed_until_us IS NULL OR claimed_until_us <= $3) ORDER BY next_attempt_us, id LIMIT $4";
        let sql = match &self.pool {
            Backend::Postgres(_) => format!(
                "UPDATE notification_outbox SET claimed_by = $1, claimed_until_us = $2 WHERE id IN ({due} FOR UPDATE \
                 SKIP LOCKED) RETURNING {COLUMNS}"
            ),
            Backend::Sqlite(_) => format!(
                "UPDATE notification_outbox SET claimed_by = $1, claimed_until_us = $2 WHERE id IN ({due}) \
                 RETURNING {COLUMNS}"
            ),
        };
        let mut rows = on_pool!(self, p => {
            let rows = sqlx::query(&sql)
                .bind(replica)
                .bind(until)
                .bind(now)
                .bind(page(limit))
                .fetch_all(p)
                .await
                .map_err(StoreError::query)?;
            rows.iter().map(row_from).collect::<Result<Vec<_>, _>>()?
        });
        rows.sort_by_key(|r| (r.next_attempt_at, r.id));
        Ok(rows)
    }

    /// Marks a delivery sent (`at`: when the receiver accepted it). Returns `false` when the row is not
    /// pending any more (a manual state change meanwhile).
    pub async fn outbox_sent(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        on_pool!(self, p => {
            let done = sqlx::query(
                "UPDATE notification_outbox SET state = 'sent', sent_us = $2, attempts = attempts + 1, \
                 claimed_by = NULL, claimed_until_us = NULL WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(us(at))
            .execute(p)
            .await
            .map_err(StoreError::query)?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Records a failed attempt to be retried at `next_attempt_at`, and releases the claim.
    pub async fn outbox_retry_later(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        status: Option<i64>,
        error: &str,
    ) -> Result<bool, StoreError> {
        on_pool!(self, p => {
            let done = sqlx::query(
                "UPDATE notification_outbox SET attempts = attempts + 1, next_attempt_us = $2, last_status = $3, \
                 last_error = $4, claimed_by = NULL, claimed_until_us = NULL WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(us(next_attempt_at))
            .bind(status)
            .bind(error)
            .execute(p)
            .await
            .map_err(StoreError::query)?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Dead-letters a delivery with the answer that ended it (`attempted`: whether this call follows
    /// an attempt, which is then counted).
    pub async fn outbox_dead(
        &self,
        id: i64,
        attempted: bool,
        status: Option<i64>,
        error: &str,
    ) -> Result<bool, StoreError> {
        on_pool!(self, p => {
            let done = sqlx::query(
                "UPDATE notification_outbox SET state = 'dead', attempts = attempts + $2, last_status = $3, \
                 last_error = $4, claimed_by = NULL, claimed_until_us = NULL WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(i64::from(attempted))
            .bind(status)
            .bind(error)
            .execute(p)
            .await
            .map_err(StoreError::query)?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Dead letters, newest first, at most `limit` (clamped as pages are).
    pub async fn list_dead(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        on_pool!(self, p => {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM notification_outbox WHERE state = 'dead' ORDER BY id DESC LIMIT $1"
            ))
            .bind(page(limit))
            .fetch_all(p)
            .await
            .map_err(StoreError::query)?;
            rows.iter().map(row_from).collect()
        })
    }

    /// One delivery by id.
    pub async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        on_pool!(self, p => {
            let row = sqlx::query(&format!("SELECT {COLUMNS} FROM notification_outbox WHERE id = $1"))
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(StoreError::query)?;
            row.as_ref().map(row_from).transpose()
        })
    }

    /// Deliveries by idempotency key prefix order (all states), at most `limit`: for tests and tools.
    pub async fn outbox_rows(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        on_pool!(self, p => {
            let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM notification_outbox ORDER BY id LIMIT $1"))
                .bind(page(limit))
                .fetch_all(p)
                .await
                .map_err(StoreError::query)?;
            rows.iter().map(row_from).collect()
        })
    }

    /// Puts a dead letter back to pending, due now, with a fresh dead-letter clock; the attempts made
    /// are kept. Returns `false` when `id` is not a dead letter.
    pub async fn retry_dead(&self, id: i64) -> Result<bool, StoreError> {
        let now = us(Utc::now());
        on_pool!(self, p => {
            let done = sqlx::query(
                "UPDATE notification_outbox SET state = 'pending', next_attempt_us = $2, since_us = $2, \
                 claimed_by = NULL, claimed_until_us = NULL WHERE id = $1 AND state = 'dead'",
            )
            .bind(id)
            .bind(now)
            .execute(p)
            .await
            .map_err(StoreError::query)?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// The number of deliveries per sink and state (for the metrics and the admin page).
    pub async fn outbox_counts(&self) -> Result<Vec<OutboxCount>, StoreError> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT sink, state, COUNT(*) AS n FROM notification_outbox GROUP BY sink, state ORDER BY sink, state",
            )
            .fetch_all(p)
            .await
            .map_err(StoreError::query)?;
            rows.iter()
                .map(|r| {
                    Ok(OutboxCount {
                        sink: r.string("sink")?,
                        state: OutboxState::parse(&r.string("state")?)?,
                        count: r.i64("n")?,
                    })
                })
                .collect()
        })
    }
}
