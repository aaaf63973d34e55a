//! The append-only audit log: idempotent recording, queries, export and retention.

use chrono::{DateTime, Utc};

use crate::{
    Arg, AuditEvent, AuditQuery, ExportFormat, Filter, NewAuditEvent, RowExt, Store, StoreError, bind_args, from_json,
    from_us, on_pool, page, to_json, us,
};

const INSERT: &str = "INSERT INTO audit_events (event_key, kind, at_us, actor, request, cluster, namespaces, details, recorded_us) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_key) DO NOTHING";

const COLUMNS: &str = "id, event_key, kind, at_us, actor, request, cluster, namespaces, details";

/// Rows per statement when exporting.
const EXPORT_BATCH: i64 = 1000;

fn event_from_row(r: &impl RowExt) -> Result<AuditEvent, StoreError> {
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
            rows.push((to_json(&ev.namespaces)?, to_json(&ev.details)?));
        }
        let now = us(Utc::now());
        let new: Vec<bool> = on_pool!(self, p => {
            let mut tx = p.begin().await.map_err(StoreError::query)?;
            let mut new = Vec::with_capacity(events.len());
            for (ev, (ns, details)) in events.iter().zip(&rows) {
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
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
                new.push(done.rows_affected() > 0);
            }
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
        let since = since.map(us).unwrap_or(i64::MIN);
        if format == ExportFormat::Csv {
            out.write_all(b"id,key,kind,at,actor,request,cluster,namespaces,details\r\n")
                .map_err(io)?;
        }
        let sql = format!("SELECT {COLUMNS} FROM audit_events WHERE at_us >= $1 AND id > $2 ORDER BY id LIMIT $3");
        let mut last = i64::MIN;
        let mut count = 0u64;
        loop {
            let batch: Vec<AuditEvent> = on_pool!(self, p => {
                let rows = sqlx::query(&sql)
                    .bind(since)
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
                last = ev.id;
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

    /// Deletes events that happened before `older_than`, `batch` rows per statement (so locks stay
    /// short), until none is left. Returns how many were deleted.
    pub async fn purge_audit(&self, older_than: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let mut total = 0u64;
        loop {
            let n = on_pool!(self, p => sqlx::query(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT id FROM audit_events WHERE at_us < $1 ORDER BY id LIMIT $2)",
            )
            .bind(us(older_than))
            .bind(batch)
            .execute(p)
            .await
            .map_err(StoreError::query)?
            .rows_affected());
            total += n;
            if n < batch as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
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
