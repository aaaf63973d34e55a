//! Persistence for k8s-janus: the audit log, request history, local users, web sessions, terminal
//! sessions with their recordings and command log, and quick commands — in SQLite (the embedded
//! default, a file) or PostgreSQL (production, several replicas).
//!
//! Every statement is written once in SQL both dialects accept (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`); times are stored as microseconds since the Unix epoch (UTC) and JSON values as text,
//! so both backends behave identically. Only the schema migrations differ per dialect.
//!
//! The [`recorder`] module turns AccessRequests into audit events and request history; [`writer`]
//! buffers the events the web process records itself while the database is unreachable.

mod audit;
pub mod chain;
mod error;
mod history;
pub mod outbox;
pub mod recorder;
mod terminal;
mod tokens;
mod types;
mod users;
pub mod writer;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Executor as _, Row as _};

pub use chain::{ChainFault, ChainProblem, ChainReport};
pub use error::StoreError;
pub use history::LiveRequest;
pub use outbox::{NewOutboxRow, OutboxCount, OutboxRow, OutboxState, Produced};
pub use terminal::{OwnerAccount, OwnerStates};
pub use tokens::{ApiToken, NewApiToken, SEEN_ADDRESSES, TouchResult};
pub use types::*;
pub use users::{LocksStarted, LoginGate, LoginLimits, RequesterLock};

/// Runs `$body` with `$p` bound to the concrete pool of the backend (the body is compiled once per
/// backend, so the same SQL and binds serve both).
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.pool {
            $crate::Backend::Sqlite($p) => $body,
            $crate::Backend::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// The two supported databases.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle on the database: cheap to clone, safe to share between tasks.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Backend,
}

/// Schema versions, embedded in the binary: (version, description, SQL).
type Embedded = &'static [(i64, &'static str, &'static str)];

const SQLITE_MIGRATIONS: Embedded = &[
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        "login limits, unique email",
        include_str!("../migrations/sqlite/0002_login_limits_unique_email.sql"),
    ),
    (
        3,
        "request history: approval policies",
        include_str!("../migrations/sqlite/0003_request_policies.sql"),
    ),
    (
        4,
        "tamper-evident audit chain",
        include_str!("../migrations/sqlite/0004_audit_chain.sql"),
    ),
    (
        5,
        "notification outbox",
        include_str!("../migrations/sqlite/0005_notification_outbox.sql"),
    ),
    (
        6,
        "personal API tokens",
        include_str!("../migrations/sqlite/0006_api_tokens.sql"),
    ),
    (
        7,
        "API token addresses",
        include_str!("../migrations/sqlite/0007_api_token_addresses.sql"),
    ),
];
const POSTGRES_MIGRATIONS: Embedded = &[
    (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        "login limits, unique email",
        include_str!("../migrations/postgres/0002_login_limits_unique_email.sql"),
    ),
    (
        3,
        "request history: approval policies",
        include_str!("../migrations/postgres/0003_request_policies.sql"),
    ),
    (
        4,
        "tamper-evident audit chain",
        include_str!("../migrations/postgres/0004_audit_chain.sql"),
    ),
    (
        5,
        "notification outbox",
        include_str!("../migrations/postgres/0005_notification_outbox.sql"),
    ),
    (
        6,
        "personal API tokens",
        include_str!("../migrations/postgres/0006_api_tokens.sql"),
    ),
    (
        7,
        "API token addresses",
        include_str!("../migrations/postgres/0007_api_token_addresses.sql"),
    ),
];

#[derive(Debug)]
struct EmbeddedMigrations(Embedded);

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(self) -> futures::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        let list = self
            .0
            .iter()
            .map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, Cow::Borrowed(*sql), false))
            .collect();
        Box::pin(async move { Ok(list) })
    }
}

/// How long a statement waits for a free (or re-established) connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the URL's authority carries a password (`user:password@host`).
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo.contains(':'),
        None => false,
    }
}

impl Store {
    /// Connects to `url` (`sqlite:<path>`, `sqlite://<path>`, `sqlite::memory:`, `postgres://user@host/db`)
    /// and brings the schema up to date.
    ///
    /// The password is never part of the URL (a URL with one is refused): pass it in `password`
    /// (ignored for SQLite). A SQLite file and its directory are created if missing; SQLite runs in WAL
    /// mode with a busy timeout. Migrations are versioned and take a lock, so several replicas may start
    /// at once.
    pub async fn connect(url: &str, password: Option<&str>) -> Result<Store, StoreError> {
        let store = Self::connect_unchained(url, password).await?;
        // Events written before the chain existed (or by a replica not upgraded yet) join it now.
        let chained = store.chain_pending_audit().await?;
        if chained > 0 {
            tracing::info!(
                events = chained,
                "audit events chained (written before the audit chain existed)"
            );
        }
        Ok(store)
    }

    /// [`Store::connect`] for checking the audit chain: the schema is brought up to date, but events
    /// not chained yet are left as they are (the check counts them), so checking writes no audit row.
    pub async fn connect_to_check(url: &str, password: Option<&str>) -> Result<Store, StoreError> {
        Self::connect_unchained(url, password).await
    }

    async fn connect_unchained(url: &str, password: Option<&str>) -> Result<Store, StoreError> {
        let password = password.filter(|p| !p.is_empty());
        if url_has_password(url) {
            return Err(StoreError::Invalid(
                "the database URL must not contain a password; pass it separately (JANUS_DATABASE_PASSWORD)".into(),
            ));
        }
        let fail = |e: sqlx::Error| StoreError::Connect(error::redact(format!("{url}: {e}"), password));
        let pool = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(fail)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            if !memory
                && let Some(dir) = opts.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Connect(format!("{url}: cannot create {}: {e}", dir.display())))?;
            }
            let pool = SqlitePoolOptions::new()
                // An in-memory database exists once per connection: keep exactly one.
                .max_connections(if memory { 1 } else { 4 })
                .min_connections(if memory { 1 } else { 0 })
                .idle_timeout(if memory { None } else { Some(Duration::from_secs(600)) })
                .max_lifetime(if memory { None } else { Some(Duration::from_secs(1800)) })
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(fail)?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = PgConnectOptions::from_str(url)
                .map_err(fail)?
                .application_name("k8s-janus");
            if let Some(p) = password {
                opts = opts.password(p);
            }
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(fail)?;
            Backend::Postgres(pool)
        } else {
            let scheme = url.split(':').next().unwrap_or("");
            return Err(StoreError::Invalid(format!(
                "unsupported database URL scheme {scheme:?}: use sqlite: or postgres://"
            )));
        };
        let store = Store { pool };
        store.migrate().await.map_err(|e| match e {
            StoreError::Migrate(m) => StoreError::Migrate(error::redact(m, password)),
            other => other,
        })?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let source = match &self.pool {
            Backend::Sqlite(_) => EmbeddedMigrations(SQLITE_MIGRATIONS),
            Backend::Postgres(_) => EmbeddedMigrations(POSTGRES_MIGRATIONS),
        };
        let migrator = Migrator::new(source)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        on_pool!(self, p => migrator.run(p).await).map_err(|e| StoreError::Migrate(e.to_string()))
    }

    /// Schema versions applied, oldest first.
    pub async fn schema_versions(&self) -> Result<Vec<i64>, StoreError> {
        on_pool!(self, p => {
            let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(p)
                .await
                .map_err(StoreError::query)?;
            rows.iter().map(|r| r.i64("version")).collect()
        })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, p => p.execute("SELECT 1").await.map(|_| ()).map_err(StoreError::query))
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (waits for statements in flight).
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

/// A time as stored: microseconds since the epoch.
pub(crate) fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A stored time back.
pub(crate) fn from_us(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| StoreError::Query(format!("stored time {v} is out of range")))
}

pub(crate) fn opt_from_us(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_us).transpose()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Query(format!("malformed JSON in a stored row: {e}")))
}

/// Typed column access shared by both row types.
pub(crate) trait RowExt {
    fn i64(&self, c: &str) -> Result<i64, StoreError>;
    fn opt_i64(&self, c: &str) -> Result<Option<i64>, StoreError>;
    fn string(&self, c: &str) -> Result<String, StoreError>;
    fn opt_string(&self, c: &str) -> Result<Option<String>, StoreError>;
    fn boolean(&self, c: &str) -> Result<bool, StoreError>;
    fn bytes(&self, c: &str) -> Result<Vec<u8>, StoreError>;
}

macro_rules! impl_row_ext {
    ($row:ty) => {
        impl RowExt for $row {
            fn i64(&self, c: &str) -> Result<i64, StoreError> {
                self.try_get::<i64, _>(c).map_err(StoreError::query)
            }
            fn opt_i64(&self, c: &str) -> Result<Option<i64>, StoreError> {
                self.try_get::<Option<i64>, _>(c).map_err(StoreError::query)
            }
            fn string(&self, c: &str) -> Result<String, StoreError> {
                self.try_get::<String, _>(c).map_err(StoreError::query)
            }
            fn opt_string(&self, c: &str) -> Result<Option<String>, StoreError> {
                self.try_get::<Option<String>, _>(c).map_err(StoreError::query)
            }
            fn boolean(&self, c: &str) -> Result<bool, StoreError> {
                self.try_get::<bool, _>(c).map_err(StoreError::query)
            }
            fn bytes(&self, c: &str) -> Result<Vec<u8>, StoreError> {
                self.try_get::<Vec<u8>, _>(c).map_err(StoreError::query)
            }
        }
    };
}
impl_row_ext!(SqliteRow);
impl_row_ext!(PgRow);

/// A value bound to a dynamically built statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I64(i64),
    Str(String),
}

/// Binds `Arg`s in order to a query.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args.iter() {
            q = match a {
                $crate::Arg::I64(v) => q.bind(*v),
                $crate::Arg::Str(v) => q.bind(v.clone()),
            };
        }
        q
    }};
}
pub(crate) use bind_args;

/// Builds a `WHERE` clause with numbered placeholders.
#[derive(Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    pub(crate) args: Vec<Arg>,
}

impl Filter {
    /// Adds `<column> <op> $n`.
    pub(crate) fn push(&mut self, column: &str, op: &str, arg: Arg) {
        self.args.push(arg);
        self.clauses.push(format!("{column} {op} ${}", self.args.len()));
    }

    /// The next placeholder number.
    pub(crate) fn next(&self) -> usize {
        self.args.len() + 1
    }

    /// ` WHERE a AND b`, or nothing.
    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// Clamps a page size: 0 or less means 100, at most 1000.
pub(crate) fn page(limit: i64) -> i64 {
    if limit <= 0 { 100 } else { limit.min(1000) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_in_url_is_detected() {
        assert!(url_has_password("postgres://u:p@h/db"));
        assert!(url_has_password("postgresql://u:p%40x@h:5432/db?sslmode=require"));
        assert!(!url_has_password("postgres://u@h:5432/db"));
        assert!(!url_has_password("postgres://h/db?options=a:b@c"));
        assert!(!url_has_password("sqlite:///var/lib/janus/janus.db"));
    }

    #[test]
    fn filter_numbers_placeholders() {
        let mut f = Filter::default();
        assert_eq!(f.sql(), "");
        f.push("a", "=", Arg::I64(1));
        f.push("b", "<", Arg::Str("x".into()));
        assert_eq!(f.sql(), " WHERE a = $1 AND b < $2");
        assert_eq!(f.next(), 3);
    }
}
