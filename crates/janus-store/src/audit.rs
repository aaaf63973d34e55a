//! The append-only audit log: idempotent recording into the tamper-evident chain ([`crate::chain`]),
//! queries, export, retention and the chain check.

use chrono::{DateTime, Utc};

use crate::chain::{self, ChainChecker, ChainFault, ChainProblem, ChainReport};
use crate::{
    Arg, AuditEvent, AuditQuery, Backend, ExportFormat, Filter, NewAuditEvent, RowExt, Store, StoreError, bind_args,
    from_json, from_us, on_pool, page, to_json, us,
};

const INSERT: &str = "INSERT INTO audit_events (event_key, kind, at_us, actor, request, cluster, namespaces, details, \
     recorded_us, seq, hash, prev_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (event_key) DO NOTHING";

pub(crate) const COLUMNS: &str =
    "id, event_key, kind, at_us, actor, request, cluster, namespaces, details, seq, hash, prev_hash";

/// Locks the chain head for the rest of the transaction and reads it. A write (not `SELECT … FOR
/// UPDATE`) so the same statement serves both databases: PostgreSQL holds the row lock to the end of
/// the transaction (a waiting replica then reads the head as the other one left it), and SQLite takes
/// its write lock here, at the start, so two writers never both read a head and then both try to write.
const LOCK_HEAD: &str =
    "UPDATE audit_chain SET last_seq = last_seq WHERE id = 1 RETURNING last_seq, last_hash, anchor_seq, anchor_hash";

const SAVE_HEAD: &str = "UPDATE audit_chain SET last_seq = $1, last_hash = $2 WHERE id = 1";

/// Gives an unchained row its place in the chain (the only update the append-only trigger allows).
const LINK: &str = "UPDATE audit_events SET seq = $1, hash = $2, prev_hash = $3 WHERE id = $4 AND seq IS NULL";

/// Rows chained per transaction when chaining older rows.
const CHAIN_BATCH: i64 = 1000;

/// Rows per statement when checking the chain.
const VERIFY_BATCH: i64 = 1000;

/// A place in the chain: (seq, hash).
type Link = (i64, String);

/// Reads the chain head locked by [`LOCK_HEAD`]: (the last event chained, the retention anchor).
fn head_from_row(r: &impl RowExt) -> Result<(Link, Link), StoreError> {
    Ok((
        (r.i64("last_seq")?, r.string("last_hash")?),
        (r.i64("anchor_seq")?, r.string("anchor_hash")?),
    ))
}

/// Chains, inside the transaction `$tx` that holds the head lock, up to `$limit` rows that have no place
/// in the chain yet, in id order, advancing `$head`. Evaluates to the number of rows chained.
macro_rules! chain_pending {
    ($tx:expr, $head:expr, $limit:expr) => {{
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq IS NULL ORDER BY id LIMIT $1"
        ))
        .bind($limit)
        .fetch_all(&mut *$tx)
        .await
        .map_err(StoreError::query)?;
        for r in &rows {
            let ev = event_from_row(r)?;
            let seq = $head.0 + 1;
            let hash = chain::stored_event_hash(&ev, seq, &$head.1);
            sqlx::query(LINK)
                .bind(seq)
                .bind(&hash)
                .bind(&$head.1)
                .bind(ev.id)
                .execute(&mut *$tx)
                .await
                .map_err(StoreError::query)?;
            $head = (seq, hash);
        }
        rows.len()
    }};
}

/// Rows per statement when exporting.
const EXPORT_BATCH: i64 = 1000;

pub(crate) fn event_from_row(r: &impl RowExt) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: r.i64("id")?,
        key: r.string("event_key")?,
        kind: r.string("kind")?,
        at: from_us(r.i64("at_us")?)?,
        actor: r.string("actor")?,
        request: r.opt_string("request")?,
        cluster: r.opt_string("cluster")?,
        namespaces: from_json(&r.string("namespaces")?)?,
        details: from_json(&r.string("details")?)?,
        seq: r.opt_i64("seq")?,
        hash: r.opt_string("hash")?,
        prev_hash: r.opt_string("prev_hash")?,
    })
}

/// The structured log line for a newly recorded event (target `audit`), for log shippers.
fn log_event(ev: &NewAuditEvent) {
    tracing::info!(
        target: "audit",
        key = %ev.key,
        kind = ev.kind.as_str(),
        at = %ev.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        actor = %ev.actor,
        request = ev.request.as_deref().unwrap_or(""),
        cluster = ev.cluster.as_deref().unwrap_or(""),
        namespaces = %ev.namespaces.join(","),
        details = %ev.details,
        "audit event"
    );
}

impl Store {
    /// Records an event. Returns `false` when an event with the same key is already stored (nothing is
    /// changed then). Every newly stored event is also logged as one structured line, target `audit`.
    pub async fn record_audit(&self, ev: &NewAuditEvent) -> Result<bool, StoreError> {
        let new = self.record_audit_batch(std::slice::from_ref(ev)).await?;
        Ok(new.first().copied().unwrap_or(false))
    }

    /// Records several events in one transaction; returns, per event, whether it was new.
    pub async fn record_audit_batch(&self, events: &[NewAuditEvent]) -> Result<Vec<bool>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::with_capacity(events.len());
        for ev in events {
            if ev.key.is_empty() {
                return Err(StoreError::Invalid("an audit event needs a key".into()));
            }
            let details = to_json(&ev.details)?;
            // The hash covers the event as it will read back: the stored time (microseconds) and the
            // details as parsed from their stored text.
            let parsed: serde_json::Value = from_json(&details)?;
            rows.push((to_json(&ev.namespaces)?, details, parsed, from_us(us(ev.at))?));
        }
        let now = us(Utc::now());
        let new: Vec<bool> = on_pool!(self, p => {
            let mut tx = p.begin().await.map_err(StoreError::query)?;
            let row = sqlx::query(LOCK_HEAD).fetch_one(&mut *tx).await.map_err(StoreError::query)?;
            let (mut head, _) = head_from_row(&row)?;
            // Rows a replica that is not upgraded yet wrote since go first (usually none).
            chain_pending!(tx, head, CHAIN_BATCH);
            let mut new = Vec::with_capacity(events.len());
            for (ev, (ns, details, parsed, at)) in events.iter().zip(&rows) {
                let seq = head.0 + 1;
                let hash = chain::event_hash(&chain::ChainedContent {
                    seq,
                    key: &ev.key,
                    kind: ev.kind.as_str(),
                    at: *at,
                    actor: &ev.actor,
                    request: ev.request.as_deref(),
                    cluster: ev.cluster.as_deref(),
                    namespaces: &ev.namespaces,
                    details: parsed,
                    prev_hash: &head.1,
                });
                let done = sqlx::query(INSERT)
                    .bind(&ev.key)
                    .bind(ev.kind.as_str())
                    .bind(us(ev.at))
                    .bind(&ev.actor)
                    .bind(ev.request.as_deref())
                    .bind(ev.cluster.as_deref())
                    .bind(ns)
                    .bind(details)
                    .bind(now)
                    .bind(seq)
                    .bind(&hash)
                    .bind(&head.1)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
                let is_new = done.rows_affected() > 0;
                if is_new {
                    head = (seq, hash);
                }
                new.push(is_new);
            }
            sqlx::query(SAVE_HEAD)
                .bind(head.0)
                .bind(&head.1)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            tx.commit().await.map_err(StoreError::query)?;
            new
        });
        for (ev, is_new) in events.iter().zip(&new) {
            if *is_new {
                log_event(ev);
            }
        }
        Ok(new)
    }

    /// Events matching `q`, newest first (by id). The next page: `before_id` = the last id returned.
    pub async fn audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let mut f = Filter::default();
        if let Some(t) = q.since {
            f.push("at_us", ">=", Arg::I64(us(t)));
        }
        if let Some(t) = q.until {
            f.push("at_us", "<", Arg::I64(us(t)));
        }
        for (col, v) in [
            ("actor", &q.actor),
            ("request", &q.request),
            ("cluster", &q.cluster),
            ("kind", &q.kind),
        ] {
            if let Some(v) = v {
                f.push(col, "=", Arg::Str(v.clone()));
            }
        }
        if let Some(id) = q.before_id {
            f.push("id", "<", Arg::I64(id));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events{} ORDER BY id DESC LIMIT ${}",
            f.sql(),
            f.next()
        );
        let mut args = f.args;
        args.push(Arg::I64(page(q.limit)));
        on_pool!(self, p => {
            let rows = bind_args!(sqlx::query(&sql), args).fetch_all(p).await.map_err(StoreError::query)?;
            rows.iter().map(event_from_row).collect()
        })
    }

    /// Writes every event at or after `since` to `out`, oldest first, reading in batches. Returns the
    /// number of events written.
    pub async fn audit_export(
        &self,
        since: Option<DateTime<Utc>>,
        format: ExportFormat,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, StoreError> {
        self.audit_export_with_progress(since, format, out, &mut |_| {}).await
    }

    /// [`Store::audit_export`], calling `progress` with the running count after each batch.
    pub async fn audit_export_with_progress(
        &self,
        since: Option<DateTime<Utc>>,
        format: ExportFormat,
        out: &mut (dyn std::io::Write + Send),
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        let io = |e: std::io::Error| StoreError::Invalid(format!("cannot write the export: {e}"));
        if format == ExportFormat::Csv {
            out.write_all(b"id,key,kind,at,actor,request,cluster,namespaces,details\r\n")
                .map_err(io)?;
        }
        // Everything is chained first, so the export is one unbroken piece of the chain, in chain
        // order. With `since` it starts at the first event (in chain order) at or after that time and
        // has every event chained after it, even one whose own time is earlier (recorded late), so a
        // SIEM copy can be checked link by link.
        self.chain_pending_audit().await?;
        let start: Option<i64> = match since {
            None => Some(i64::MIN),
            Some(t) => on_pool!(self, p => sqlx::query(
                "SELECT MIN(seq) AS first FROM audit_events WHERE at_us >= $1 AND seq IS NOT NULL",
            )
            .bind(us(t))
            .fetch_one(p)
            .await
            .map_err(StoreError::query)?
            .opt_i64("first")?),
        };
        let Some(start) = start else {
            out.flush().map_err(io)?;
            progress(0);
            return Ok(0);
        };
        let sql = format!("SELECT {COLUMNS} FROM audit_events WHERE seq >= $1 AND seq > $2 ORDER BY seq LIMIT $3");
        let mut last = i64::MIN;
        let mut count = 0u64;
        loop {
            let batch: Vec<AuditEvent> = on_pool!(self, p => {
                let rows = sqlx::query(&sql)
                    .bind(start)
                    .bind(last)
                    .bind(EXPORT_BATCH)
                    .fetch_all(p)
                    .await
                    .map_err(StoreError::query)?;
                rows.iter().map(event_from_row).collect::<Result<_, _>>()?
            });
            for ev in &batch {
                match format {
                    ExportFormat::Jsonl => {
                        serde_json::to_writer(&mut *out, ev).map_err(|e| StoreError::Invalid(e.to_string()))?;
                        out.write_all(b"\n").map_err(io)?;
                    }
                    ExportFormat::Csv => out.write_all(csv_line(ev).as_bytes()).map_err(io)?,
                }
                last = ev.seq.unwrap_or(i64::MAX);
                count += 1;
            }
            progress(count);
            if (batch.len() as i64) < EXPORT_BATCH {
                break;
            }
        }
        out.flush().map_err(io)?;
        Ok(count)
    }

    /// Deletes events that happened before `older_than`, `batch` rows per transaction (so locks stay
    /// short), until none is left. Returns how many were deleted.
    ///
    /// Retention deletes the oldest part of the chain: events in chain order up to (not including) the
    /// first one at or after `older_than`, and records the last one deleted as the chain's anchor, to
    /// which the first remaining event links. An event recorded late (its time older than that of an
    /// event chained before it) is therefore kept until the events before it in the chain expire.
    pub async fn purge_audit(&self, older_than: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let cutoff = us(older_than);
        self.chain_pending_audit().await?;
        let mut total = 0u64;
        loop {
            let n: u64 = on_pool!(self, p => {
                let mut tx = p.begin().await.map_err(StoreError::query)?;
                let row = sqlx::query(LOCK_HEAD).fetch_one(&mut *tx).await.map_err(StoreError::query)?;
                let (_, (anchor_seq, _)) = head_from_row(&row)?;
                let rows = sqlx::query(
                    "SELECT seq, hash, at_us FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(anchor_seq)
                .bind(batch)
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query)?;
                let mut upto: Option<(i64, String)> = None;
                for r in &rows {
                    if r.i64("at_us")? >= cutoff {
                        break;
                    }
                    upto = Some((r.i64("seq")?, r.opt_string("hash")?.unwrap_or_default()));
                }
                let n = match upto {
                    None => 0,
                    Some((seq, hash)) => {
                        let n = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
                            .bind(seq)
                            .execute(&mut *tx)
                            .await
                            .map_err(StoreError::query)?
                            .rows_affected();
                        sqlx::query("UPDATE audit_chain SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1")
                            .bind(seq)
                            .bind(&hash)
                            .execute(&mut *tx)
                            .await
                            .map_err(StoreError::query)?;
                        n
                    }
                };
                tx.commit().await.map_err(StoreError::query)?;
                n
            });
            total += n;
            if n < batch as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Gives every event without a place in the chain one, in id order, in transactions of at most
    /// 1000 events. Runs at start (events written before the chain existed); each insert also chains
    /// such events first (written meanwhile by a replica that is not upgraded yet). Returns how many
    /// were chained.
    pub async fn chain_pending_audit(&self) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
            let pending: i64 = on_pool!(self, p => sqlx::query(
                "SELECT COUNT(*) AS n FROM (SELECT id FROM audit_events WHERE seq IS NULL LIMIT 1) x",
            )
            .fetch_one(p)
            .await
            .map_err(StoreError::query)?
            .i64("n")?);
            if pending == 0 {
                return Ok(total);
            }
            let n = on_pool!(self, p => {
                let mut tx = p.begin().await.map_err(StoreError::query)?;
                let row = sqlx::query(LOCK_HEAD).fetch_one(&mut *tx).await.map_err(StoreError::query)?;
                let (mut head, _) = head_from_row(&row)?;
                let n = chain_pending!(tx, head, CHAIN_BATCH);
                sqlx::query(SAVE_HEAD)
                    .bind(head.0)
                    .bind(&head.1)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
                tx.commit().await.map_err(StoreError::query)?;
                n
            });
            total += n as u64;
        }
    }

    /// Compares events of a copy (an export kept elsewhere, read with [`chain::jsonl_links`]) with the
    /// database: each must be in the database with the same hash, unless retention deleted it (its seq
    /// is at or below the chain's anchor). Returns the first difference. This finds what the database's
    /// own chain cannot show: a chain rewritten from some event on, or a tail deleted together with the
    /// chain head.
    pub async fn compare_audit_copy(&self, copy: &[chain::CopiedLink]) -> Result<Option<ChainProblem>, StoreError> {
        let (Some(lo), Some(hi)) = (copy.iter().map(|c| c.seq).min(), copy.iter().map(|c| c.seq).max()) else {
            return Ok(None);
        };
        let (anchor, stored): (i64, std::collections::HashMap<i64, String>) = on_pool!(self, p => {
            let anchor = sqlx::query("SELECT anchor_seq FROM audit_chain WHERE id = 1")
                .fetch_one(p)
                .await
                .map_err(StoreError::query)?
                .i64("anchor_seq")?;
            let rows = sqlx::query("SELECT seq, hash FROM audit_events WHERE seq >= $1 AND seq <= $2")
                .bind(lo)
                .bind(hi)
                .fetch_all(p)
                .await
                .map_err(StoreError::query)?;
            let mut stored = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                stored.insert(r.i64("seq")?, r.opt_string("hash")?.unwrap_or_default());
            }
            (anchor, stored)
        });
        for c in copy {
            let fault = match stored.get(&c.seq) {
                None if c.seq <= anchor => continue,
                None => ChainFault::NotInDatabase,
                Some(h) if *h == c.hash => continue,
                Some(h) => ChainFault::DiffersFromCopy {
                    copy: c.hash.clone(),
                    database: h.clone(),
                },
            };
            return Ok(Some(ChainProblem {
                seq: c.seq,
                key: Some(c.key.clone()),
                fault,
            }));
        }
        Ok(None)
    }

    /// Checks the whole audit chain in one consistent snapshot of the database: every event's own
    /// hash, every link, no gap in seq from the retention anchor to the recorded chain head, and
    /// nothing beyond it. Stops at, and reports, the first bad place. Changes nothing.
    pub async fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        macro_rules! walk {
            ($tx:expr) => {{
                let row =
                    sqlx::query("SELECT last_seq, last_hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1")
                        .fetch_one(&mut *$tx)
                        .await
                        .map_err(StoreError::query)?;
                let ((last_seq, _), (anchor_seq, anchor_hash)) = head_from_row(&row)?;
                let unchained = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE seq IS NULL")
                    .fetch_one(&mut *$tx)
                    .await
                    .map_err(StoreError::query)?
                    .i64("n")?;
                let mut checker = ChainChecker::after(anchor_seq, &anchor_hash).with_head(last_seq);
                let sql = format!("SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
                // Events before the anchor are not expected; any left there is checked too (as a gap or
                // a broken link), so start below it.
                let mut after = i64::MIN;
                'walk: loop {
                    let rows = sqlx::query(&sql)
                        .bind(after)
                        .bind(VERIFY_BATCH)
                        .fetch_all(&mut *$tx)
                        .await
                        .map_err(StoreError::query)?;
                    for r in &rows {
                        let ev = event_from_row(r)?;
                        after = ev.seq.unwrap_or(i64::MAX);
                        if !checker.check(&ev) {
                            break 'walk;
                        }
                    }
                    if (rows.len() as i64) < VERIFY_BATCH {
                        break;
                    }
                }
                $tx.rollback().await.map_err(StoreError::query)?;
                checker.finish(u64::try_from(unchained).unwrap_or(0))
            }};
        }
        Ok(match &self.pool {
            Backend::Sqlite(p) => {
                // A read transaction in WAL mode sees one snapshot across all its statements.
                let mut tx = p.begin().await.map_err(StoreError::query)?;
                walk!(tx)
            }
            Backend::Postgres(p) => {
                let mut tx = p.begin().await.map_err(StoreError::query)?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
                walk!(tx)
            }
        })
    }
}

/// One CSV field, quoted when needed (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV record with its CRLF terminator.
pub(crate) fn csv_line(ev: &AuditEvent) -> String {
    let fields = [
        ev.id.to_string(),
        ev.key.clone(),
        ev.kind.clone(),
        ev.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ev.actor.clone(),
        ev.request.clone().unwrap_or_default(),
        ev.cluster.clone().unwrap_or_default(),
        ev.namespaces.join(" "),
        ev.details.to_string(),
    ];
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(""), "");
    }
}
