//! Personal API tokens (`janus_pat_…`): stored only as the SHA-256 of the token, with the owner's
//! identity snapshot, scopes, expiry, last use and revocation. CLI sessions are not here: they are
//! `web_sessions` rows like a browser's.

use chrono::{DateTime, Utc};
use janus_api::tokens::TokenScope;
use serde::Serialize;

use crate::{RowExt, Store, StoreError, from_json, from_us, on_pool, opt_from_us, to_json, us};

const COLUMNS: &str = "id_hash, display_id, owner, auth, display_name, is_admin, groups_json, name, scopes, \
                       created_us, expires_us, last_used_us, last_used_ip, revoked_us, revoked_by";

/// Last-use bookkeeping is written at most this often per token (unless the address changes), so a
/// busy CI job does not turn every read into a write.
const TOUCH_INTERVAL_US: i64 = 60 * 1_000_000;

/// How many distinct client addresses are remembered per token for `token.new_address`.
pub const SEEN_ADDRESSES: i64 = 32;

/// A token to store (the token itself is never given to the store, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// `janus_api::tokens::hash` of the token.
    pub id_hash: String,
    /// `janus_api::tokens::display_id` of the token.
    pub display_id: String,
    /// Lowercased email of the owner.
    pub owner: String,
    /// How the owner was signed in when creating it: `local`, `oidc` or `proxy`.
    pub auth: String,
    /// The owner's name to show (snapshot).
    pub display_name: String,
    /// The owner's admin right when creating it (snapshot; used for OIDC and proxy owners).
    pub is_admin: bool,
    /// The owner's identity-provider groups when creating it (snapshot).
    pub groups: Vec<String>,
    /// The label the owner gave it.
    pub name: String,
    /// What it may do (non-empty).
    pub scopes: Vec<TokenScope>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry (mandatory).
    pub expires_at: DateTime<Utc>,
}

/// A stored token. It carries no secret: only the hash (never serialized) and the display id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    /// SHA-256 hex of the token (the key; not serialized).
    #[serde(skip)]
    pub id_hash: String,
    /// Public id (prefix and the first 8 secret characters).
    pub display_id: String,
    /// Lowercased email of the owner.
    pub owner: String,
    /// `local`, `oidc` or `proxy`.
    pub auth: String,
    /// The owner's name to show (snapshot).
    pub display_name: String,
    /// Admin right snapshot.
    pub is_admin: bool,
    /// Groups snapshot.
    pub groups: Vec<String>,
    /// Label.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<TokenScope>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Last use (recorded at most once a minute unless the address changed).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Client address of the last recorded use.
    pub last_used_ip: Option<String>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it (email).
    pub revoked_by: Option<String>,
}

impl ApiToken {
    /// Whether it may be used at `now`: not revoked and not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// What [`Store::touch_api_token`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TouchResult {
    /// The use came from an address the token has not used before (among the last
    /// [`SEEN_ADDRESSES`] distinct ones; or it is the first use): the caller audits
    /// `token.new_address`. Exactly one of several concurrent uses sees this.
    pub new_address: bool,
}

fn scopes_to_text(scopes: &[TokenScope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

fn scopes_from_text(s: &str) -> Result<Vec<TokenScope>, StoreError> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| TokenScope::parse(p).ok_or_else(|| StoreError::Query(format!("unknown token scope {p:?} stored"))))
        .collect()
}

fn token_from_row(r: &impl RowExt) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id_hash: r.string("id_hash")?,
        display_id: r.string("display_id")?,
        owner: r.string("owner")?,
        auth: r.string("auth")?,
        display_name: r.string("display_name")?,
        is_admin: r.boolean("is_admin")?,
        groups: from_json(&r.string("groups_json")?)?,
        name: r.string("name")?,
        scopes: scopes_from_text(&r.string("scopes")?)?,
        created_at: from_us(r.i64("created_us")?)?,
        expires_at: from_us(r.i64("expires_us")?)?,
        last_used_at: opt_from_us(r.opt_i64("last_used_us")?)?,
        last_used_ip: r.opt_string("last_used_ip")?,
        revoked_at: opt_from_us(r.opt_i64("revoked_us")?)?,
        revoked_by: r.opt_string("revoked_by")?,
    })
}

impl Store {
    /// Stores a new token and returns it as stored. [`StoreError::Conflict`] if the hash or display id
    /// exists already; [`StoreError::Invalid`] without scopes or with an unknown `auth`.
    pub async fn create_api_token(&self, t: &NewApiToken) -> Result<ApiToken, StoreError> {
        if t.scopes.is_empty() {
            return Err(StoreError::Invalid("a token needs at least one scope".into()));
        }
        if !matches!(t.auth.as_str(), "local" | "oidc" | "proxy") {
            return Err(StoreError::Invalid(format!("unknown sign-in kind {:?}", t.auth)));
        }
        let groups = to_json(&t.groups)?;
        let scopes = scopes_to_text(&t.scopes);
        let sql = format!(
            "INSERT INTO api_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL, \
             NULL, NULL) RETURNING {COLUMNS}"
        );
        on_pool!(self, p => {
            let row = sqlx::query(&sql)
                .bind(&t.id_hash)
                .bind(&t.display_id)
                .bind(t.owner.to_lowercase())
                .bind(&t.auth)
                .bind(&t.display_name)
                .bind(t.is_admin)
                .bind(&groups)
                .bind(&t.name)
                .bind(&scopes)
                .bind(us(t.created_at))
                .bind(us(t.expires_at))
                .fetch_one(p)
                .await
                .map_err(|e| match StoreError::query(e) {
                    // Never echo the driver's text here: it may name the key (a hash, but still).
                    StoreError::Conflict(_) => StoreError::Conflict("a token with this id exists already".into()),
                    other => other,
                })?;
            token_from_row(&row)
        })
    }

    /// The token with this hash, whatever its state (callers check [`ApiToken::is_live`]).
    pub async fn api_token(&self, id_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE id_hash = $1");
        on_pool!(self, p => {
            let row = sqlx::query(&sql).bind(id_hash).fetch_optional(p).await.map_err(StoreError::query)?;
            row.as_ref().map(token_from_row).transpose()
        })
    }

    /// The token with this display id, whatever its state.
    pub async fn api_token_by_display_id(&self, display_id: &str) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE display_id = $1");
        on_pool!(self, p => {
            let row = sqlx::query(&sql).bind(display_id).fetch_optional(p).await.map_err(StoreError::query)?;
            row.as_ref().map(token_from_row).transpose()
        })
    }

    /// Tokens of one owner (email, compared lowercased), or everyone's with `None`; newest first,
    /// revoked and expired ones included.
    pub async fn list_api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiToken>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE ($1 IS NULL OR owner = $1) ORDER BY created_us DESC, display_id"
        );
        let owner = owner.map(str::to_lowercase);
        on_pool!(self, p => {
            let rows = sqlx::query(&sql).bind(owner).fetch_all(p).await.map_err(StoreError::query)?;
            rows.iter().map(token_from_row).collect()
        })
    }

    /// Revokes the token with this display id, of this owner (`None`: anyone's, for admins). True when
    /// it was live-or-expired and unrevoked and is revoked now; false when there is no such token of
    /// this owner or it was revoked already (the first revocation's time and author stay).
    pub async fn revoke_api_token(
        &self,
        display_id: &str,
        owner: Option<&str>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let owner = owner.map(str::to_lowercase);
        on_pool!(self, p => sqlx::query(
            "UPDATE api_tokens SET revoked_us = $3, revoked_by = $4 \
             WHERE display_id = $1 AND ($2 IS NULL OR owner = $2) AND revoked_us IS NULL",
        )
        .bind(display_id)
        .bind(owner)
        .bind(us(now))
        .bind(by)
        .execute(p)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(StoreError::query))
    }

    /// Records a use of the token from `ip`. [`TouchResult::new_address`] is set on the first use from
    /// an address the token has not used before (of the last [`SEEN_ADDRESSES`] distinct ones), not
    /// on every change: a client behind a NAT pool alternating addresses is reported once per address.
    /// The last-use columns are written when the address differs from the last recorded one or the
    /// last write is a minute old or more; otherwise nothing is written.
    pub async fn touch_api_token(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
        ip: &str,
    ) -> Result<TouchResult, StoreError> {
        let now_us = us(now);
        // The insert decides novelty, so of several concurrent first uses from an address exactly one
        // reports it; the SELECT makes an unknown token insert nothing (no foreign-key error).
        let new_address = on_pool!(self, p => sqlx::query(
            "INSERT INTO api_token_addresses (id_hash, address, first_us, last_us) \
             SELECT id_hash, $2, $3, $3 FROM api_tokens WHERE id_hash = $1 \
             ON CONFLICT (id_hash, address) DO NOTHING",
        )
        .bind(id_hash)
        .bind(ip)
        .bind(now_us)
        .execute(p)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(StoreError::query))?;
        if new_address {
            // Bounded: only the most recently seen addresses are remembered.
            on_pool!(self, p => sqlx::query(
                "DELETE FROM api_token_addresses WHERE id_hash = $1 AND address NOT IN \
                 (SELECT address FROM api_token_addresses WHERE id_hash = $1 \
                  ORDER BY last_us DESC, address LIMIT $2)",
            )
            .bind(id_hash)
            .bind(SEEN_ADDRESSES)
            .execute(p)
            .await
            .map(|_| ())
            .map_err(StoreError::query))?;
        }
        let moved = on_pool!(self, p => sqlx::query(
            "UPDATE api_tokens SET last_used_us = $2, last_used_ip = $3 \
             WHERE id_hash = $1 AND (last_used_ip IS NULL OR last_used_ip <> $3)",
        )
        .bind(id_hash)
        .bind(now_us)
        .bind(ip)
        .execute(p)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(StoreError::query))?;
        let result = TouchResult { new_address };
        if moved {
            self.touch_address(id_hash, ip, now_us).await?;
            return Ok(result);
        }
        let written = on_pool!(self, p => sqlx::query(
            "UPDATE api_tokens SET last_used_us = $2 \
             WHERE id_hash = $1 AND (last_used_us IS NULL OR last_used_us <= $3)",
        )
        .bind(id_hash)
        .bind(now_us)
        .bind(now_us - TOUCH_INTERVAL_US)
        .execute(p)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(StoreError::query))?;
        if written {
            self.touch_address(id_hash, ip, now_us).await?;
        }
        Ok(result)
    }

    /// Marks the address as seen now (written only when the token's last use is, so at most once a
    /// minute per token plus once per change of address), which keeps it among the remembered ones.
    async fn touch_address(&self, id_hash: &str, ip: &str, now_us: i64) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "UPDATE api_token_addresses SET last_us = $3 WHERE id_hash = $1 AND address = $2 AND last_us < $3",
        )
        .bind(id_hash)
        .bind(ip)
        .bind(now_us)
        .execute(p)
        .await
        .map(|_| ())
        .map_err(StoreError::query))
    }

    /// [`Store::create_api_token`] unless the owner has `max` or more live tokens at `now` (then
    /// `Ok(None)`). The count and the insert are one atomic step: of concurrent creates at the limit
    /// exactly as many succeed as there is room for. (SQLite: one INSERT … SELECT holds the write lock
    /// from its start; PostgreSQL: a transaction-scoped advisory lock on the owner serialises them,
    /// since READ COMMITTED would let two counts see the same room.)
    pub async fn create_api_token_within(
        &self,
        t: &NewApiToken,
        max: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiToken>, StoreError> {
        if t.scopes.is_empty() {
            return Err(StoreError::Invalid("a token needs at least one scope".into()));
        }
        if !matches!(t.auth.as_str(), "local" | "oidc" | "proxy") {
            return Err(StoreError::Invalid(format!("unknown sign-in kind {:?}", t.auth)));
        }
        let groups = to_json(&t.groups)?;
        let scopes = scopes_to_text(&t.scopes);
        let owner = t.owner.to_lowercase();
        let sql = format!(
            "INSERT INTO api_tokens ({COLUMNS}) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL, NULL, NULL \
             WHERE (SELECT COUNT(*) FROM api_tokens WHERE owner = $3 AND revoked_us IS NULL AND expires_us > $12) \
             < $13 RETURNING {COLUMNS}"
        );
        let conflict = |e| match StoreError::query(e) {
            // Never echo the driver's text here: it may name the key (a hash, but still).
            StoreError::Conflict(_) => StoreError::Conflict("a token with this id exists already".into()),
            other => other,
        };
        macro_rules! insert {
            ($q:expr) => {
                sqlx::query(&sql)
                    .bind(&t.id_hash)
                    .bind(&t.display_id)
                    .bind(&owner)
                    .bind(&t.auth)
                    .bind(&t.display_name)
                    .bind(t.is_admin)
                    .bind(&groups)
                    .bind(&t.name)
                    .bind(&scopes)
                    .bind(us(t.created_at))
                    .bind(us(t.expires_at))
                    .bind(us(now))
                    .bind(max)
                    .fetch_optional($q)
                    .await
                    .map_err(conflict)?
            };
        }
        match &self.pool {
            crate::Backend::Sqlite(p) => insert!(p).as_ref().map(token_from_row).transpose(),
            crate::Backend::Postgres(p) => {
                let mut tx = p.begin().await.map_err(StoreError::query)?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('janus.api_tokens:' || $1, 0))")
                    .bind(&owner)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
                let row = insert!(&mut *tx);
                tx.commit().await.map_err(StoreError::query)?;
                row.as_ref().map(token_from_row).transpose()
            }
        }
    }

    /// Revokes every unrevoked token of `owner` (email, compared lowercased), recording `by` (e.g.
    /// `system: user deleted`) as the revoker; returns the revoked tokens as they were before (hash
    /// and display id, for ending their streams and the audit). Used when a local account is
    /// deleted, disabled or gets a new password, so that a re-created or re-enabled account with the
    /// same email does not inherit them.
    pub async fn revoke_owner_api_tokens(
        &self,
        owner: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApiToken>, StoreError> {
        let sql = format!(
            "UPDATE api_tokens SET revoked_us = $2, revoked_by = $3 \
             WHERE owner = $1 AND revoked_us IS NULL RETURNING {COLUMNS}"
        );
        on_pool!(self, p => {
            let rows = sqlx::query(&sql)
                .bind(owner.to_lowercase())
                .bind(us(now))
                .bind(by)
                .fetch_all(p)
                .await
                .map_err(StoreError::query)?;
            rows.iter().map(token_from_row).collect()
        })
    }

    /// How many of the owner's tokens are usable at `now` (unrevoked, unexpired): what
    /// `web.apiTokens.maxPerUser` bounds.
    pub async fn count_live_api_tokens(&self, owner: &str, now: DateTime<Utc>) -> Result<i64, StoreError> {
        on_pool!(self, p => {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n FROM api_tokens WHERE owner = $1 AND revoked_us IS NULL AND expires_us > $2",
            )
            .bind(owner.to_lowercase())
            .bind(us(now))
            .fetch_one(p)
            .await
            .map_err(StoreError::query)?;
            row.i64("n")
        })
    }
}
