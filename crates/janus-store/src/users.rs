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

/// Now, at the stored precision (so what is returned equals what a later read returns).
fn now_us() -> Result<DateTime<Utc>, StoreError> {
    from_us(us(Utc::now()))
}

impl Store {
    /// Creates a local account. [`StoreError::Conflict`] if the username exists.
    pub async fn create_user(&self, u: &NewUser) -> Result<User, StoreError> {
        if u.username.is_empty() {
            return Err(StoreError::Invalid("a user needs a username".into()));
        }
        let now = now_us()?;
        on_pool!(self, p => sqlx::query(
            "INSERT INTO users (username, email, is_admin, disabled, password_hash, failed_logins, locked_until_us, \
             created_us, updated_us) VALUES ($1, $2, $3, FALSE, $4, 0, NULL, $5, $5)",
        )
        .bind(&u.username)
        .bind(&u.email)
        .bind(u.is_admin)
        .bind(&u.password_hash)
        .bind(us(now))
        .execute(p)
        .await
        .map(|_| ())
        .map_err(|e| match StoreError::query(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("user {:?} already exists", u.username)),
            other => other,
        }))?;
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

    /// Changes an account; `None` if it does not exist. A new password hash clears the lockout.
    pub async fn update_user(&self, username: &str, change: &UserChange) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "UPDATE users SET password_hash = COALESCE($2, password_hash), is_admin = COALESCE($3, is_admin), \
             disabled = COALESCE($4, disabled), \
             failed_logins = CASE WHEN $2 IS NULL THEN failed_logins ELSE 0 END, \
             locked_until_us = CASE WHEN $2 IS NULL THEN locked_until_us ELSE NULL END, \
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
                .map_err(StoreError::query)?;
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
