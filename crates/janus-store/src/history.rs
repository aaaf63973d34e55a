//! Request history: one row per AccessRequest, kept after the object is deleted.

use chrono::{DateTime, Utc};

use crate::{
    Arg, Filter, RequestQuery, RequestRecord, RowExt, Store, StoreError, bind_args, from_json, from_us, on_pool,
    opt_from_us, page, to_json, us,
};

const COLUMNS: &str = "name, requester, cluster, namespaces, reason, ttl_seconds, phase, message, created_us, \
     approved_by, decided_by, expires_us, ended_us, updated_us, deleted_us, policy, approvals, auto_approved, \
     break_glass, break_glass_reviewed_by, start_us";

fn record_from_row(r: &impl RowExt) -> Result<RequestRecord, StoreError> {
    Ok(RequestRecord {
        name: r.string("name")?,
        requester: r.string("requester")?,
        cluster: r.string("cluster")?,
        namespaces: from_json(&r.string("namespaces")?)?,
        reason: r.string("reason")?,
        ttl_seconds: r.i64("ttl_seconds")?,
        phase: r.string("phase")?,
        message: r.string("message")?,
        created_at: from_us(r.i64("created_us")?)?,
        approved_by: r.opt_string("approved_by")?,
        decided_by: r.opt_string("decided_by")?,
        expires_at: opt_from_us(r.opt_i64("expires_us")?)?,
        ended_at: opt_from_us(r.opt_i64("ended_us")?)?,
        updated_at: from_us(r.i64("updated_us")?)?,
        deleted_at: opt_from_us(r.opt_i64("deleted_us")?)?,
        policy: r.opt_string("policy")?,
        approvals: from_json(&r.string("approvals")?)?,
        auto_approved: r.boolean("auto_approved")?,
        break_glass: r.boolean("break_glass")?,
        break_glass_reviewed_by: r.opt_string("break_glass_reviewed_by")?,
        start_at: opt_from_us(r.opt_i64("start_us")?)?,
    })
}

/// A history row that is not marked deleted: (name, object uid if known, creation time).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRequest {
    /// Object name.
    pub name: String,
    /// Object uid, when the recorder wrote the row.
    pub uid: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Inserts or updates the history row of a request. A record whose `updated_at` is older than the
    /// stored one is ignored, so a replica with a stale view never rolls history back.
    pub async fn upsert_request(&self, r: &RequestRecord) -> Result<(), StoreError> {
        self.upsert_request_with_uid(r, None).await
    }

    /// [`Store::upsert_request`], also remembering the object's uid (used to notice deletions missed
    /// while nothing was watching).
    pub async fn upsert_request_with_uid(&self, r: &RequestRecord, uid: Option<&str>) -> Result<(), StoreError> {
        if r.name.is_empty() {
            return Err(StoreError::Invalid("a request record needs a name".into()));
        }
        let ns = to_json(&r.namespaces)?;
        let approvals = to_json(&r.approvals)?;
        on_pool!(self, p => sqlx::query(
            "INSERT INTO requests (name, uid, requester, cluster, namespaces, reason, ttl_seconds, phase, message, \
             created_us, approved_by, decided_by, expires_us, ended_us, updated_us, deleted_us, policy, approvals, \
             auto_approved, break_glass, break_glass_reviewed_by, start_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
             $21, $22) \
             ON CONFLICT (name) DO UPDATE SET uid = COALESCE(excluded.uid, requests.uid), \
             requester = excluded.requester, cluster = excluded.cluster, namespaces = excluded.namespaces, \
             reason = excluded.reason, ttl_seconds = excluded.ttl_seconds, phase = excluded.phase, \
             message = excluded.message, created_us = excluded.created_us, approved_by = excluded.approved_by, \
             decided_by = excluded.decided_by, expires_us = excluded.expires_us, ended_us = excluded.ended_us, \
             updated_us = excluded.updated_us, policy = excluded.policy, approvals = excluded.approvals, \
             auto_approved = excluded.auto_approved, break_glass = excluded.break_glass, \
             break_glass_reviewed_by = excluded.break_glass_reviewed_by, start_us = excluded.start_us, \
             deleted_us = COALESCE(excluded.deleted_us, requests.deleted_us) \
             WHERE excluded.updated_us >= requests.updated_us",
        )
        .bind(&r.name)
        .bind(uid)
        .bind(&r.requester)
        .bind(&r.cluster)
        .bind(&ns)
        .bind(&r.reason)
        .bind(r.ttl_seconds)
        .bind(&r.phase)
        .bind(&r.message)
        .bind(us(r.created_at))
        .bind(r.approved_by.as_deref())
        .bind(r.decided_by.as_deref())
        .bind(r.expires_at.map(us))
        .bind(r.ended_at.map(us))
        .bind(us(r.updated_at))
        .bind(r.deleted_at.map(us))
        .bind(r.policy.as_deref())
        .bind(&approvals)
        .bind(r.auto_approved)
        .bind(r.break_glass)
        .bind(r.break_glass_reviewed_by.as_deref())
        .bind(r.start_at.map(us))
        .execute(p)
        .await
        .map(|_| ())
        .map_err(StoreError::query))
    }

    /// Marks the request's object as deleted at `at` (the first deletion time is kept).
    pub async fn mark_request_deleted(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("UPDATE requests SET deleted_us = $2 WHERE name = $1 AND deleted_us IS NULL")
            .bind(name)
            .bind(us(at))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::query))
    }

    /// The history row of a request.
    pub async fn get_request(&self, name: &str) -> Result<Option<RequestRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM requests WHERE name = $1");
        on_pool!(self, p => {
            let row = sqlx::query(&sql).bind(name).fetch_optional(p).await.map_err(StoreError::query)?;
            row.as_ref().map(record_from_row).transpose()
        })
    }

    /// Requests matching `q`, newest created first, and how many match in total.
    pub async fn list_requests(&self, q: &RequestQuery) -> Result<(Vec<RequestRecord>, i64), StoreError> {
        let mut f = Filter::default();
        for (col, v) in [
            ("requester", &q.requester),
            ("cluster", &q.cluster),
            ("phase", &q.phase),
        ] {
            if let Some(v) = v {
                f.push(col, "=", Arg::Str(v.clone()));
            }
        }
        if let Some(t) = q.since {
            f.push("created_us", ">=", Arg::I64(us(t)));
        }
        if let Some(t) = q.until {
            f.push("created_us", "<", Arg::I64(us(t)));
        }
        let count_sql = format!("SELECT COUNT(*) AS n FROM requests{}", f.sql());
        let n = f.next();
        let sql = format!(
            "SELECT {COLUMNS} FROM requests{} ORDER BY created_us DESC, name DESC LIMIT ${n} OFFSET ${}",
            f.sql(),
            n + 1
        );
        let mut args = f.args.clone();
        args.push(Arg::I64(page(q.limit)));
        args.push(Arg::I64(q.offset.max(0)));
        on_pool!(self, p => {
            let total = bind_args!(sqlx::query(&count_sql), f.args)
                .fetch_one(p)
                .await
                .map_err(StoreError::query)?
                .i64("n")?;
            let rows = bind_args!(sqlx::query(&sql), args).fetch_all(p).await.map_err(StoreError::query)?;
            Ok((rows.iter().map(record_from_row).collect::<Result<Vec<_>, _>>()?, total))
        })
    }

    /// History rows whose object is not known to be deleted.
    pub async fn live_requests(&self) -> Result<Vec<LiveRequest>, StoreError> {
        on_pool!(self, p => {
            let rows = sqlx::query("SELECT name, uid, created_us FROM requests WHERE deleted_us IS NULL ORDER BY name")
                .fetch_all(p)
                .await
                .map_err(StoreError::query)?;
            rows.iter()
                .map(|r| {
                    Ok(LiveRequest {
                        name: r.string("name")?,
                        uid: r.opt_string("uid")?,
                        created_at: from_us(r.i64("created_us")?)?,
                    })
                })
                .collect()
        })
    }
}
