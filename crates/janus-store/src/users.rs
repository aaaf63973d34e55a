//! Local user accounts (with login lockout), server-side web sessions, and quick commands.

use chrono::{DateTime, Utc};

use crate::{
    NewUser, QuickCommand, RowExt, Store, StoreError, User, UserChange, WebSession, from_json, from_us, on_pool,
    opt_from_us, to_json, us,
};

const USER_COLUMNS: &str =
    "username, email, is_admin, disabled, password_hash, failed_logins, locked_until_us, created_us, updated_us";

const SESSION_COLUMNS: &str =
    "id_hash, subject, display_name, is_admin, groups_json, auth, csrf_token, created_us, last_seen_us, expires_us";

fn user_from_row(r: &impl RowExt) -> Result<User, StoreError> {
    Ok(User {
        username: r.string("username")?,
        email: r.string("email")?,
        is_admin: r.boolean("is_admin")?,
        disabled: r.boolean("disabled")?,
        password_hash: r.string("password_hash")?,
        failed_logins: r.i64("failed_logins")?,
        locked_until: opt_from_us(r.opt_i64("locked_until_us")?)?,
        created_at: from_us(r.i64("created_us")?)?,
        updated_at: from_us(r.i64("updated_us")?)?,
    })
}

fn session_from_row(r: &impl RowExt) -> Result<WebSession, StoreError> {
    Ok(WebSession {
        id_hash: r.string("id_hash")?,
        subject: r.string("subject")?,
        display_name: r.string("display_name")?,
        is_admin: r.boolean("is_admin")?,
        groups: from_json(&r.string("groups_json")?)?,
        auth: r.string("auth")?,
        csrf_token: r.string("csrf_token")?,
        created_at: from_us(r.i64("created_us")?)?,
        last_seen: from_us(r.i64("last_seen_us")?)?,
        expires_at: from_us(r.i64("expires_us")?)?,
    })
}

fn quick_from_row(r: &impl RowExt) -> Result<QuickCommand, StoreError> {
    Ok(QuickCommand {
        id: r.i64("id")?,
        user: r.string("user_name")?,
        cluster: r.string("cluster")?,
        label: r.string("label")?,
        command: r.string("command")?,
    })
}

/// The name of the unique index on the email of enabled accounts (migration 2).
const EMAIL_INDEX: &str = "users_email_unique";

fn email_taken() -> StoreError {
    StoreError::Conflict("another account already uses this email (emails are compared case-insensitively)".into())
}

/// Maps a unique violation to a message that says which key clashed.
fn user_conflict(e: sqlx::Error, username: &str) -> StoreError {
    match StoreError::query(e) {
        StoreError::Conflict(m) if m.contains(EMAIL_INDEX) => email_taken(),
        StoreError::Conflict(_) => StoreError::Conflict(format!("user {username:?} already exists")),
        other => other,
    }
}

/// Now, at the stored precision (so what is returned equals what a later read returns).
fn now_us() -> Result<DateTime<Utc>, StoreError> {
    from_us(us(Utc::now()))
}

impl Store {
    /// Creates a local account. [`StoreError::Conflict`] if the username exists, or if any account
    /// (enabled or disabled) already has the same email, compared case-insensitively.
    pub async fn create_user(&self, u: &NewUser) -> Result<User, StoreError> {
        if u.username.is_empty() {
            return Err(StoreError::Invalid("a user needs a username".into()));
        }
        let now = now_us()?;
        // The NOT EXISTS covers disabled accounts; the unique index on lower(email) of enabled accounts
        // settles two creates racing each other.
        let inserted = on_pool!(self, p => sqlx::query(
            "INSERT INTO users (username, email, is_admin, disabled, password_hash, failed_logins, locked_until_us, \
             created_us, updated_us) SELECT $1, $2, $3, FALSE, $4, 0, NULL, $5, $5 \
             WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($2))",
        )
        .bind(&u.username)
        .bind(&u.email)
        .bind(u.is_admin)
        .bind(&u.password_hash)
        .bind(us(now))
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| user_conflict(e, &u.username)))?;
        if inserted == 0 {
            return Err(email_taken());
        }
        Ok(User {
            username: u.username.clone(),
            email: u.email.clone(),
            is_admin: u.is_admin,
            disabled: false,
            password_hash: u.password_hash.clone(),
            failed_logins: 0,
            locked_until: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// The account with this email (case-insensitive): the enabled one if there is one, else the oldest.
    pub async fn get_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1) \
             ORDER BY disabled, created_us, username LIMIT 1"
        );
        on_pool!(self, p => {
            let row = sqlx::query(&sql).bind(email).fetch_optional(p).await.map_err(StoreError::query)?;
            row.as_ref().map(user_from_row).transpose()
        })
    }

    /// A local account by username (exact match).
    pub async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        on_pool!(self, p => {
            let row = sqlx::query(&sql).bind(username).fetch_optional(p).await.map_err(StoreError::query)?;
            row.as_ref().map(user_from_row).transpose()
        })
    }

    /// Every local account, by username.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        on_pool!(self, p => {
            let rows = sqlx::query(&sql).fetch_all(p).await.map_err(StoreError::query)?;
            rows.iter().map(user_from_row).collect()
        })
    }

    /// Changes an account; `None` if it does not exist. A new password hash clears the lockout (for the
    /// account and for every client address). Enabling an account whose email another enabled account
    /// has is a [`StoreError::Conflict`].
    pub async fn update_user(&self, username: &str, change: &UserChange) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "UPDATE users SET password_hash = COALESCE($2, password_hash), is_admin = COALESCE($3, is_admin), \
             disabled = COALESCE($4, disabled), \
             failed_logins = CASE WHEN $2 IS NULL THEN failed_logins ELSE 0 END, \
             locked_until_us = CASE WHEN $2 IS NULL THEN locked_until_us ELSE NULL END, \
             failures_window_start_us = CASE WHEN $2 IS NULL THEN failures_window_start_us ELSE NULL END, \
             updated_us = $5 WHERE username = $1 RETURNING {USER_COLUMNS}"
        );
        let now = us(Utc::now());
        on_pool!(self, p => {
            let row = sqlx::query(&sql)
                .bind(username)
                .bind(change.password_hash.as_deref())
                .bind(change.is_admin)
                .bind(change.disabled)
                .bind(now)
                .fetch_optional(p)
                .await
                .map_err(|e| user_conflict(e, username))?;
            if row.is_some() && change.password_hash.is_some() {
                sqlx::query("DELETE FROM login_failures WHERE username = $1")
                    .bind(username)
                    .execute(p)
                    .await
                    .map_err(StoreError::query)?;
            }
            row.as_ref().map(user_from_row).transpose()
        })
    }

    /// Deletes an account; `false` if it did not exist. (Its web sessions are removed separately with
    /// [`Store::delete_user_sessions`].)
    pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        on_pool!(self, p => sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(p)
            .await
            .map(|d| d.rows_affected() > 0)
            .map_err(StoreError::query))
    }

    /// Counts a failed login. When the count reaches `max_failures`, the account is locked until
    /// `now + lockout`; a failure after a lockout ran out starts counting again from one. Returns the
    /// account as changed, `None` if it does not exist.
    pub async fn record_login_failure(
        &self,
        username: &str,
        now: DateTime<Utc>,
        max_failures: i64,
        lockout: chrono::Duration,
    ) -> Result<Option<User>, StoreError> {
        let until = now
            .checked_add_signed(lockout)
            .ok_or_else(|| StoreError::Invalid("lockout duration out of range".into()))?;
        // One statement, so concurrent failures on several replicas all count.
        let sql = format!(
            "UPDATE users SET \
             failed_logins = CASE WHEN locked_until_us IS NOT NULL AND locked_until_us <= $2 THEN 1 \
                 ELSE failed_logins + 1 END, \
             locked_until_us = CASE \
                 WHEN locked_until_us IS NOT NULL AND locked_until_us <= $2 THEN \
                     (CASE WHEN $3 <= 1 THEN $4 ELSE NULL END) \
                 WHEN failed_logins + 1 >= $3 THEN $4 \
                 ELSE locked_until_us END, \
             updated_us = $2 \
             WHERE username = $1 RETURNING {USER_COLUMNS}"
        );
        on_pool!(self, p => {
            let row = sqlx::query(&sql)
                .bind(username)
                .bind(us(now))
                .bind(max_failures.max(1))
                .bind(us(until))
                .fetch_optional(p)
                .await
                .map_err(StoreError::query)?;
            row.as_ref().map(user_from_row).transpose()
        })
    }

    /// A successful login: clears the failure counter and any lockout.
    pub async fn record_login_success(&self, username: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until_us = NULL, updated_us = $2 WHERE username = $1",
        )
        .bind(username)
        .bind(us(now))
        .execute(p)
        .await
        .map(|_| ())
        .map_err(StoreError::query))
    }

    /// Stores a new web session.
    pub async fn create_session(&self, s: &WebSession) -> Result<(), StoreError> {
        let groups = to_json(&s.groups)?;
        let sql =
            format!("INSERT INTO web_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
        on_pool!(self, p => sqlx::query(&sql)
            .bind(&s.id_hash)
            .bind(&s.subject)
            .bind(&s.display_name)
            .bind(s.is_admin)
            .bind(&groups)
            .bind(&s.auth)
            .bind(&s.csrf_token)
            .bind(us(s.created_at))
            .bind(us(s.last_seen))
            .bind(us(s.expires_at))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::query))
    }

    /// A web session by the hash of its id (expired ones too: the caller checks `expires_at`).
    pub async fn get_session(&self, id_hash: &str) -> Result<Option<WebSession>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM web_sessions WHERE id_hash = $1");
        on_pool!(self, p => {
            let row = sqlx::query(&sql).bind(id_hash).fetch_optional(p).await.map_err(StoreError::query)?;
            row.as_ref().map(session_from_row).transpose()
        })
    }

    /// Records activity on a session.
    pub async fn touch_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("UPDATE web_sessions SET last_seen_us = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(us(now))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::query))
    }

    /// Logs a session out.
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::query))
    }

    /// Logs a user out everywhere; returns how many sessions ended.
    pub async fn delete_user_sessions(&self, subject: &str) -> Result<u64, StoreError> {
        on_pool!(self, p => sqlx::query("DELETE FROM web_sessions WHERE subject = $1")
            .bind(subject)
            .execute(p)
            .await
            .map(|d| d.rows_affected())
            .map_err(StoreError::query))
    }

    /// Deletes sessions expired at `now`; returns how many.
    pub async fn purge_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        on_pool!(self, p => sqlx::query("DELETE FROM web_sessions WHERE expires_us <= $1")
            .bind(us(now))
            .execute(p)
            .await
            .map(|d| d.rows_affected())
            .map_err(StoreError::query))
    }

    /// A user's quick commands for a cluster, oldest first.
    pub async fn quick_commands(&self, user: &str, cluster: &str) -> Result<Vec<QuickCommand>, StoreError> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT id, user_name, cluster, label, command FROM quick_commands \
                 WHERE user_name = $1 AND cluster = $2 ORDER BY id",
            )
            .bind(user)
            .bind(cluster)
            .fetch_all(p)
            .await
            .map_err(StoreError::query)?;
            rows.iter().map(quick_from_row).collect()
        })
    }

    /// Saves a quick command.
    pub async fn add_quick_command(
        &self,
        user: &str,
        cluster: &str,
        label: &str,
        command: &str,
    ) -> Result<QuickCommand, StoreError> {
        let now = us(Utc::now());
        on_pool!(self, p => {
            let row = sqlx::query(
                "INSERT INTO quick_commands (user_name, cluster, label, command, created_us) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id, user_name, cluster, label, command",
            )
            .bind(user)
            .bind(cluster)
            .bind(label)
            .bind(command)
            .bind(now)
            .fetch_one(p)
            .await
            .map_err(StoreError::query)?;
            quick_from_row(&row)
        })
    }

    /// Deletes one of the user's quick commands; `false` if it is not theirs or does not exist.
    pub async fn delete_quick_command(&self, user: &str, id: i64) -> Result<bool, StoreError> {
        on_pool!(self, p => sqlx::query("DELETE FROM quick_commands WHERE id = $1 AND user_name = $2")
            .bind(id)
            .bind(user)
            .execute(p)
            .await
            .map(|d| d.rows_affected() > 0)
            .map_err(StoreError::query))
    }
}

/// Thresholds of the failed-login lockout.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failed checks of one account from one client address before that address is locked out of it.
    pub per_client: i64,
    /// Failed checks of one account from all addresses together before the account is locked.
    pub per_account: i64,
    /// How long a lock lasts; also how long a failure counts when no lock follows.
    pub lockout: chrono::Duration,
}

/// Whether a password check may run, from [`Store::reserve_login_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginGate {
    /// One check is reserved: settle it with [`Store::login_attempt_failed`] or
    /// [`Store::login_attempt_succeeded`].
    Reserved,
    /// This client address is locked out of the account (or holds as many checks in flight as it may).
    ClientLocked,
    /// The account is locked for everyone (or holds as many checks in flight as it may).
    AccountLocked,
    /// No such account.
    NoAccount,
}

/// Locks that a failed check started, for the audit log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocksStarted {
    /// The client address is now locked out of the account until then.
    pub client: Option<DateTime<Utc>>,
    /// The account is now locked for everyone until then.
    pub account: Option<DateTime<Utc>>,
}

/// SQL: whether the counter row `t` starts over at time `now` — its lock ran out, or it saw nothing since
/// `stale` (both placeholders).
fn fresh(now: &str, stale: &str) -> String {
    format!(
        "((t.locked_until_us IS NOT NULL AND t.locked_until_us <= {now}) \
         OR (t.locked_until_us IS NULL AND t.updated_us <= {stale}))"
    )
}

/// SQL: whether the account-wide counter of user row `t` starts over at time `now` — its lock ran out,
/// or its window started at `stale` or earlier (both placeholders). The window has its own timestamp:
/// `updated_us` changes with every edit of the account and must not keep old failures alive.
fn fresh_account(now: &str, stale: &str) -> String {
    format!(
        "((t.locked_until_us IS NOT NULL AND t.locked_until_us <= {now}) \
         OR (t.locked_until_us IS NULL \
             AND (t.failures_window_start_us IS NULL OR t.failures_window_start_us <= {stale})))"
    )
}

/// Per-requester locks of this process. A PostgreSQL advisory lock makes the lock hold across replicas;
/// this one keeps concurrent creates on one replica from each holding a database connection while they
/// wait, and is the whole lock with SQLite (one replica, see `docs/operations.md`).
static REQUESTER_LOCKS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
> = std::sync::LazyLock::new(Default::default);

/// How long [`Store::lock_requester`] waits for another replica's lock before giving up.
const REQUESTER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Held while one requester's open and hourly request counts are checked and a request is created;
/// released when dropped (or with [`RequesterLock::release`]).
#[derive(Debug)]
pub struct RequesterLock {
    _local: tokio::sync::OwnedMutexGuard<()>,
    /// The transaction that holds the PostgreSQL advisory lock (ended on drop).
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

/// Whether an error means the database could not be reached (no connection could be had), as opposed
/// to an answer it gave.
fn is_unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_)
    )
}

impl RequesterLock {
    /// Releases the lock now (dropping it does the same, a moment later).
    pub async fn release(mut self) {
        if let Some(tx) = self.tx.take() {
            // A transaction that only took an advisory lock has nothing to keep; rolling back ends it.
            if let Err(e) = tx.rollback().await {
                tracing::warn!(error = %e, "requester lock: rollback failed (the connection is discarded)");
            }
        }
    }
}

impl Store {
    /// Reserves one password check of `username` from `client`, atomically (one conditional statement
    /// per counter, so parallel attempts on any number of replicas cannot exceed the limits): a client
    /// address may hold at most `per_client` failed-or-in-flight checks of an account, the account at
    /// most `per_account` from all addresses. A counter starts over after its lock ran out; the one of
    /// a client address when no check of it was reserved for `lockout`, the account's when its window
    /// (started by the first reservation after it started over) is `lockout` old, so failures older
    /// than that are forgotten however busy the account is.
    pub async fn reserve_login_attempt(
        &self,
        username: &str,
        client: &str,
        now: DateTime<Utc>,
        limits: LoginLimits,
    ) -> Result<LoginGate, StoreError> {
        let stale = now
            .checked_sub_signed(limits.lockout)
            .ok_or_else(|| StoreError::Invalid("lockout duration out of range".into()))?;
        let client_sql = format!(
            "INSERT INTO login_failures AS t (username, client, failures, locked_until_us, updated_us) \
             SELECT $1, $2, 1, NULL, $3 WHERE EXISTS (SELECT 1 FROM users WHERE username = $1) \
             ON CONFLICT (username, client) DO UPDATE SET \
                 failures = CASE WHEN {f} THEN 1 ELSE t.failures + 1 END, \
                 locked_until_us = CASE WHEN {f} THEN NULL ELSE t.locked_until_us END, \
                 updated_us = $3 \
             WHERE {f} OR (t.locked_until_us IS NULL AND t.failures < $5) \
             RETURNING failures",
            f = fresh("$3", "$4")
        );
        let account_sql = format!(
            "UPDATE users AS t SET \
                 failed_logins = CASE WHEN {f} THEN 1 ELSE t.failed_logins + 1 END, \
                 locked_until_us = CASE WHEN {f} THEN NULL ELSE t.locked_until_us END, \
                 failures_window_start_us = CASE WHEN {f} THEN $2 ELSE t.failures_window_start_us END \
             WHERE t.username = $1 AND ({f} OR (t.locked_until_us IS NULL AND t.failed_logins < $4)) \
             RETURNING failed_logins",
            f = fresh_account("$2", "$3")
        );
        on_pool!(self, p => {
            let got = sqlx::query(&client_sql)
                .bind(username)
                .bind(client)
                .bind(us(now))
                .bind(us(stale))
                .bind(limits.per_client.max(1))
                .fetch_optional(p)
                .await
                .map_err(StoreError::query)?;
            if got.is_none() {
                let exists = sqlx::query("SELECT 1 FROM users WHERE username = $1")
                    .bind(username)
                    .fetch_optional(p)
                    .await
                    .map_err(StoreError::query)?;
                return Ok(if exists.is_some() { LoginGate::ClientLocked } else { LoginGate::NoAccount });
            }
            let got = sqlx::query(&account_sql)
                .bind(username)
                .bind(us(now))
                .bind(us(stale))
                .bind(limits.per_account.max(1))
                .fetch_optional(p)
                .await
                .map_err(StoreError::query)?;
            if got.is_some() {
                return Ok(LoginGate::Reserved);
            }
            // The account refused: give the client reservation back, as no check runs.
            sqlx::query(
                "UPDATE login_failures SET failures = failures - 1 \
                 WHERE username = $1 AND client = $2 AND failures > 0 AND locked_until_us IS NULL",
            )
            .bind(username)
            .bind(client)
            .execute(p)
            .await
            .map_err(StoreError::query)?;
            Ok(LoginGate::AccountLocked)
        })
    }

    /// Settles a reserved check that failed: it stays counted, and a counter that reached its limit
    /// locks (the client address out of the account, or the whole account) until `now + lockout`.
    /// Returns the locks this failure started. Also forgets counters that ran out long ago.
    pub async fn login_attempt_failed(
        &self,
        username: &str,
        client: &str,
        now: DateTime<Utc>,
        limits: LoginLimits,
    ) -> Result<LocksStarted, StoreError> {
        let until = now
            .checked_add_signed(limits.lockout)
            .ok_or_else(|| StoreError::Invalid("lockout duration out of range".into()))?;
        let stale = now
            .checked_sub_signed(limits.lockout)
            .ok_or_else(|| StoreError::Invalid("lockout duration out of range".into()))?;
        let mut started = LocksStarted::default();
        on_pool!(self, p => {
            let row = sqlx::query(
                "UPDATE login_failures SET \
                     locked_until_us = CASE WHEN locked_until_us IS NULL AND failures >= $3 THEN $5 \
                         ELSE locked_until_us END, \
                     updated_us = $4 \
                 WHERE username = $1 AND client = $2 RETURNING locked_until_us",
            )
            .bind(username)
            .bind(client)
            .bind(limits.per_client.max(1))
            .bind(us(now))
            .bind(us(until))
            .fetch_optional(p)
            .await
            .map_err(StoreError::query)?;
            if let Some(r) = row
                && r.opt_i64("locked_until_us")? == Some(us(until))
            {
                started.client = Some(from_us(us(until))?);
            }
            // `updated_us` is left alone: it says when the account was last edited.
            let row = sqlx::query(
                "UPDATE users SET \
                     locked_until_us = CASE WHEN locked_until_us IS NULL AND failed_logins >= $2 THEN $3 \
                         ELSE locked_until_us END \
                 WHERE username = $1 RETURNING locked_until_us",
            )
            .bind(username)
            .bind(limits.per_account.max(1))
            .bind(us(until))
            .fetch_optional(p)
            .await
            .map_err(StoreError::query)?;
            if let Some(r) = row
                && r.opt_i64("locked_until_us")? == Some(us(until))
            {
                started.account = Some(from_us(us(until))?);
            }
            sqlx::query(
                "DELETE FROM login_failures WHERE updated_us <= $1 \
                 AND (locked_until_us IS NULL OR locked_until_us <= $2)",
            )
            .bind(us(stale))
            .bind(us(now))
            .execute(p)
            .await
            .map_err(StoreError::query)?;
        });
        Ok(started)
    }

    /// Settles a reserved check that succeeded: the client address starts over for the account, and the
    /// account's reservation is given back (failures from elsewhere still count).
    pub async fn login_attempt_succeeded(&self, username: &str, client: &str) -> Result<(), StoreError> {
        on_pool!(self, p => {
            sqlx::query("DELETE FROM login_failures WHERE username = $1 AND client = $2")
                .bind(username)
                .bind(client)
                .execute(p)
                .await
                .map_err(StoreError::query)?;
            sqlx::query(
                "UPDATE users SET failed_logins = failed_logins - 1 \
                 WHERE username = $1 AND failed_logins > 0 AND locked_until_us IS NULL",
            )
            .bind(username)
            .execute(p)
            .await
            .map_err(StoreError::query)?;
        });
        Ok(())
    }

    /// Takes the lock under which one requester's request limits are checked and a request created.
    /// With PostgreSQL it is a transaction-scoped advisory lock keyed by the requester, so it holds
    /// across replicas; with SQLite (one replica) the process-wide lock alone is enough. While
    /// PostgreSQL cannot be reached at all, the process-wide lock stands in (logged), so that an outage
    /// does not stop people from asking for access; a lock held by another replica is still an error.
    pub async fn lock_requester(&self, requester: &str) -> Result<RequesterLock, StoreError> {
        let key = requester.to_ascii_lowercase();
        let local = {
            let mut map = REQUESTER_LOCKS.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 1024 {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(&key).and_then(std::sync::Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = std::sync::Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.clone(), std::sync::Arc::downgrade(&m));
                    m
                }
            }
        };
        let local = tokio::time::timeout(REQUESTER_LOCK_WAIT, local.lock_owned())
            .await
            .map_err(|_| StoreError::Query("timed out waiting for the requester's request lock".into()))?;
        let tx = match &self.pool {
            crate::Backend::Sqlite(_) => None,
            crate::Backend::Postgres(p) => {
                let mut tx = match p.begin().await {
                    Ok(tx) => tx,
                    // The database cannot be reached at all (an outage, not a lock held elsewhere):
                    // engineers must still be able to ask for access, so the limits are checked
                    // under this replica's lock alone until it answers again. Two replicas could
                    // then each let one create through at once; an admin still decides on each.
                    Err(e) if is_unreachable(&e) => {
                        tracing::warn!(
                            error = %e,
                            "requester lock: the database is unreachable; request limits are checked per replica until it answers"
                        );
                        return Ok(RequesterLock {
                            _local: local,
                            tx: None,
                        });
                    }
                    Err(e) => return Err(StoreError::query(e)),
                };
                // Bounded wait: a replica stuck while holding the lock must not stall this one forever.
                sqlx::query(&format!(
                    "SET LOCAL lock_timeout = '{}s'",
                    REQUESTER_LOCK_WAIT.as_secs()
                ))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query)?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7305))")
                    .bind(format!("k8s-janus/requester/{key}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
                Some(tx)
            }
        };
        Ok(RequesterLock { _local: local, tx })
    }
}
