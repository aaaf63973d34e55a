//! Terminal sessions, their recordings (asciicast v2, stored gzip-compressed) and the command log.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};

use chrono::{DateTime, Utc};

use crate::{CommandLine, RowExt, Store, StoreError, TerminalSession, from_us, on_pool, opt_from_us, page, us};

const COLUMNS: &str =
    "id, request, user_name, cluster, namespace, pod, container, replica, started_us, ended_us, end_reason, bytes_out";

fn session_from_row(r: &impl RowExt) -> Result<TerminalSession, StoreError> {
    Ok(TerminalSession {
        id: r.string("id")?,
        request: r.string("request")?,
        user: r.string("user_name")?,
        cluster: r.string("cluster")?,
        namespace: r.string("namespace")?,
        pod: r.string("pod")?,
        container: r.string("container")?,
        replica: r.string("replica")?,
        started_at: from_us(r.i64("started_us")?)?,
        ended_at: opt_from_us(r.opt_i64("ended_us")?)?,
        end_reason: r.opt_string("end_reason")?,
        bytes_out: r.i64("bytes_out")?,
    })
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn gzip(data: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&data)
        .and_then(|_| enc.finish())
        .map_err(|e| StoreError::Invalid(format!("cannot compress the recording: {e}")))
}

fn gunzip(data: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&data[..])
        .read_to_end(&mut out)
        .map_err(|e| StoreError::Query(format!("stored recording is not valid gzip: {e}")))?;
    Ok(out)
}

/// A local account as the terminal owner check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerAccount {
    /// Whether the account is an admin account.
    pub is_admin: bool,
    /// Whether the account is disabled.
    pub disabled: bool,
}

/// What the database says now about the login sessions and local accounts behind open terminals and log
/// streams (see [`Store::owner_states`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerStates {
    /// Login sessions that still exist (by id hash), with their expiry.
    pub sessions: HashMap<String, DateTime<Utc>>,
    /// Local accounts that still exist, by lowercased email.
    pub accounts: HashMap<String, OwnerAccount>,
}

/// Keys per query: far below SQLite's and PostgreSQL's bound-parameter limits.
const OWNER_CHUNK: usize = 1000;

impl Store {
    /// Looks up, in one query per thousand keys (one query in practice), which of the given login
    /// sessions (web and CLI sessions, and unrevoked personal API tokens, all by id hash) still exist and the state of the given local accounts (emails compared lowercased).
    /// Keys not in the answer no longer exist.
    ///
    /// Several accounts may share an email (migration 2 leaves disabled duplicates next to the enabled
    /// account it keeps). The email's account is picked as [`Store::get_user_by_email`] picks it: the
    /// enabled one if there is one, else the oldest. So an email is disabled only when none of its
    /// accounts is enabled, and its admin right is that of the account picked.
    pub async fn owner_states(&self, session_hashes: &[String], emails: &[String]) -> Result<OwnerStates, StoreError> {
        let mut out = OwnerStates::default();
        // Per email: the sort key of the account picked so far (disabled, created, username) and its state.
        let mut picked: HashMap<String, ((bool, i64, String), OwnerAccount)> = HashMap::new();
        let chunks = session_hashes
            .chunks(OWNER_CHUNK)
            .count()
            .max(emails.chunks(OWNER_CHUNK).count());
        for i in 0..chunks {
            let hashes = session_hashes.chunks(OWNER_CHUNK).nth(i).unwrap_or_default();
            let mails: Vec<String> = emails
                .chunks(OWNER_CHUNK)
                .nth(i)
                .unwrap_or_default()
                .iter()
                .map(|e| e.to_lowercase())
                .collect();
            let mut parts = Vec::new();
            let mut n = 0;
            let mut placeholders = |count: usize| {
                let v: Vec<String> = (0..count).map(|k| format!("${}", n + k + 1)).collect();
                n += count;
                v.join(", ")
            };
            // Every column is a BIGINT so that both arms of the UNION decode alike on both databases.
            if !hashes.is_empty() {
                parts.push(format!(
                    "SELECT 's' AS kind, id_hash AS k, CAST(0 AS BIGINT) AS admin_flag, \
                     CAST(0 AS BIGINT) AS disabled_flag, expires_us, CAST(0 AS BIGINT) AS created_flag, \
                     id_hash AS name FROM web_sessions WHERE id_hash IN ({})",
                    placeholders(hashes.len())
                ));
                // A personal API token behind a stream counts as its login session while unrevoked;
                // its expiry is the session's expiry.
                parts.push(format!(
                    "SELECT 's' AS kind, id_hash AS k, CAST(0 AS BIGINT) AS admin_flag, \
                     CAST(0 AS BIGINT) AS disabled_flag, expires_us, CAST(0 AS BIGINT) AS created_flag, \
                     id_hash AS name FROM api_tokens WHERE revoked_us IS NULL AND id_hash IN ({})",
                    placeholders(hashes.len())
                ));
            }
            if !mails.is_empty() {
                parts.push(format!(
                    "SELECT 'u' AS kind, lower(email) AS k, \
                     CAST(CASE WHEN is_admin THEN 1 ELSE 0 END AS BIGINT) AS admin_flag, \
                     CAST(CASE WHEN disabled THEN 1 ELSE 0 END AS BIGINT) AS disabled_flag, \
                     CAST(0 AS BIGINT) AS expires_us, created_us AS created_flag, username AS name \
                     FROM users WHERE lower(email) IN ({})",
                    placeholders(mails.len())
                ));
            }
            if parts.is_empty() {
                continue;
            }
            let sql = parts.join(" UNION ALL ");
            on_pool!(self, p => {
                let mut q = sqlx::query(&sql);
                // Twice: once for web_sessions, once for api_tokens.
                for h in hashes.iter().chain(hashes) {
                    q = q.bind(h);
                }
                for m in &mails {
                    q = q.bind(m);
                }
                let rows = q.fetch_all(p).await.map_err(StoreError::query)?;
                for r in &rows {
                    let key = r.string("k")?;
                    if r.string("kind")? == "s" {
                        out.sessions.insert(key, from_us(r.i64("expires_us")?)?);
                    } else {
                        let account = OwnerAccount {
                            is_admin: r.i64("admin_flag")? != 0,
                            disabled: r.i64("disabled_flag")? != 0,
                        };
                        // Accounts sharing an email: the enabled one, else the oldest (as get_user_by_email).
                        let rank = (account.disabled, r.i64("created_flag")?, r.string("name")?);
                        match picked.get(&key) {
                            Some((best, _)) if *best <= rank => {}
                            _ => {
                                picked.insert(key, (rank, account));
                            }
                        }
                    }
                }
            });
        }
        out.accounts = picked.into_iter().map(|(k, (_, a))| (k, a)).collect();
        Ok(out)
    }

    /// Records the start of a terminal session.
    pub async fn open_terminal(&self, t: &TerminalSession) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO terminal_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        on_pool!(self, p => sqlx::query(&sql)
            .bind(&t.id)
            .bind(&t.request)
            .bind(&t.user)
            .bind(&t.cluster)
            .bind(&t.namespace)
            .bind(&t.pod)
            .bind(&t.container)
            .bind(&t.replica)
            .bind(us(t.started_at))
            .bind(t.ended_at.map(us))
            .bind(t.end_reason.as_deref())
            .bind(t.bytes_out)
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::query))
    }

    /// Records the end of a terminal session (the first end recorded wins).
    pub async fn close_terminal(
        &self,
        id: &str,
        at: DateTime<Utc>,
        reason: &str,
        bytes_out: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE terminal_sessions SET ended_us = $2, end_reason = $3, bytes_out = $4 \
             WHERE id = $1 AND ended_us IS NULL",
        )
        .bind(id)
        .bind(us(at))
        .bind(reason)
        .bind(bytes_out)
        .execute(p)
        .await
        .map(|_| ())
        .map_err(StoreError::query))
    }

    /// Terminal sessions, newest first, optionally of one request and/or one user. `limit` is clamped to
    /// 1..=1000 (0 or less means 100).
    pub async fn terminal_sessions(
        &self,
        request: Option<&str>,
        user: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TerminalSession>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM terminal_sessions WHERE ($1 IS NULL OR request = $1) \
             AND ($2 IS NULL OR user_name = $2) ORDER BY started_us DESC, id DESC LIMIT $3"
        );
        on_pool!(self, p => {
            let rows = sqlx::query(&sql)
                .bind(request)
                .bind(user)
                .bind(page(limit))
                .fetch_all(p)
                .await
                .map_err(StoreError::query)?;
            rows.iter().map(session_from_row).collect()
        })
    }

    /// Stores a session's recording (asciicast v2), gzip-compressed, replacing an earlier one.
    pub async fn save_recording(&self, session_id: &str, asciicast: &[u8]) -> Result<(), StoreError> {
        let size = i64::try_from(asciicast.len()).unwrap_or(i64::MAX);
        let data = asciicast.to_vec();
        let gz = tokio::task::spawn_blocking(move || gzip(data))
            .await
            .map_err(|e| StoreError::Invalid(format!("compression task failed: {e}")))??;
        let now = us(Utc::now());
        on_pool!(self, p => sqlx::query(
            "INSERT INTO recordings (session_id, data_gz, size_bytes, stored_us) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (session_id) DO UPDATE SET data_gz = excluded.data_gz, size_bytes = excluded.size_bytes, \
             stored_us = excluded.stored_us",
        )
        .bind(session_id)
        .bind(&gz)
        .bind(size)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ())
        .map_err(StoreError::query))
    }

    /// A session's recording, decompressed.
    pub async fn recording(&self, session_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let gz: Option<Vec<u8>> = on_pool!(self, p => {
            let row = sqlx::query("SELECT data_gz FROM recordings WHERE session_id = $1")
                .bind(session_id)
                .fetch_optional(p)
                .await
                .map_err(StoreError::query)?;
            row.as_ref().map(|r| r.bytes("data_gz")).transpose()?
        });
        match gz {
            None => Ok(None),
            Some(gz) => tokio::task::spawn_blocking(move || gunzip(gz))
                .await
                .map_err(|e| StoreError::Invalid(format!("decompression task failed: {e}")))?
                .map(Some),
        }
    }

    /// Appends command lines to a session's log (user and request are taken from the session, which
    /// must exist: [`StoreError::Invalid`] otherwise).
    pub async fn add_commands(&self, session_id: &str, lines: &[(DateTime<Utc>, String)]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        on_pool!(self, p => {
            let mut tx = p.begin().await.map_err(StoreError::query)?;
            let owner = sqlx::query("SELECT user_name, request FROM terminal_sessions WHERE id = $1")
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            let Some(owner) = owner else {
                return Err(StoreError::Invalid(format!("unknown terminal session {session_id:?}")));
            };
            let (user, request) = (owner.string("user_name")?, owner.string("request")?);
            for (at, line) in lines {
                sqlx::query(
                    "INSERT INTO command_log (session_id, at_us, line, line_lower, user_name, request) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(session_id)
                .bind(us(*at))
                .bind(line)
                .bind(line.to_lowercase())
                .bind(&user)
                .bind(&request)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            }
            tx.commit().await.map_err(StoreError::query)
        })
    }

    /// Command lines containing `text` (case-insensitive; `%`, `_` and `\` match themselves), newest
    /// first. `limit` is clamped to 1..=1000 (0 or less means 100).
    pub async fn search_commands(&self, text: &str, limit: i64) -> Result<Vec<CommandLine>, StoreError> {
        let pattern = format!("%{}%", like_escape(&text.to_lowercase()));
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT session_id, at_us, line, user_name, request FROM command_log \
                 WHERE line_lower LIKE $1 ESCAPE '\\' ORDER BY at_us DESC, id DESC LIMIT $2",
            )
            .bind(&pattern)
            .bind(page(limit))
            .fetch_all(p)
            .await
            .map_err(StoreError::query)?;
            rows.iter()
                .map(|r| {
                    Ok(CommandLine {
                        session_id: r.string("session_id")?,
                        at: from_us(r.i64("at_us")?)?,
                        line: r.string("line")?,
                        user: r.string("user_name")?,
                        request: r.string("request")?,
                    })
                })
                .collect()
        })
    }

    /// A session's command lines, oldest first.
    pub async fn session_commands(&self, session_id: &str) -> Result<Vec<CommandLine>, StoreError> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT session_id, at_us, line, user_name, request FROM command_log WHERE session_id = $1 ORDER BY id",
            )
            .bind(session_id)
            .fetch_all(p)
            .await
            .map_err(StoreError::query)?;
            rows.iter()
                .map(|r| {
                    Ok(CommandLine {
                        session_id: r.string("session_id")?,
                        at: from_us(r.i64("at_us")?)?,
                        line: r.string("line")?,
                        user: r.string("user_name")?,
                        request: r.string("request")?,
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_wildcards() {
        assert_eq!(like_escape("100%_a\\b"), "100\\%\\_a\\\\b");
    }

    #[test]
    fn gzip_roundtrip() {
        let data = b"{\"version\": 2}\n[0.1, \"o\", \"hi\"]\n".repeat(100);
        let gz = gzip(data.clone()).unwrap();
        assert!(gz.len() < data.len());
        assert_eq!(gunzip(gz).unwrap(), data);
        assert!(gunzip(b"not gzip".to_vec()).is_err());
    }
}
