//! `/api/v1/tokens`: personal API tokens (`janus_pat_…`), created, listed and revoked with a login
//! session (a cookie, proxy headers or a CLI session; never with a personal token itself, so a leaked
//! token cannot mint more). The token is shown once, in the creation answer; the database holds only
//! its hash.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use janus_api::tokens::{self, TokenScope};
use janus_store::{ApiToken, AuditKind, NewApiToken, StoreError};
use rand::RngExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::openapi::ErrorBody;
use crate::audit;
use crate::auth::{Authenticated, Identity};
use crate::error::WebError;
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::terminal::EndReason;

/// Longest token name, in characters.
const NAME_MAX: usize = 64;

/// A personal API token as lists show it (never the token, never its hash).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// Public id: `janus_pat_` and the first 8 secret characters.
    pub display_id: String,
    /// The label its owner gave it.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<TokenScope>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Last recorded use (at most once a minute, and whenever the address changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// Client address of the last recorded use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_ip: Option<String>,
    /// Revocation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// Owner (lowercased email).
    pub owner: String,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
}

impl TokenView {
    fn of(t: ApiToken, now: DateTime<Utc>) -> Self {
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at <= now {
            "expired"
        } else {
            "active"
        };
        Self {
            display_id: t.display_id,
            name: t.name,
            scopes: t.scopes,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            last_used_ip: t.last_used_ip,
            revoked_at: t.revoked_at,
            revoked_by: t.revoked_by,
            owner: t.owner,
            state,
        }
    }
}

/// `?all=true`: everyone's tokens (admins).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Everyone's tokens instead of one's own (admins only).
    #[serde(default)]
    pub all: bool,
}

/// A new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTokenInput {
    /// A label, 1 to 64 printable characters.
    pub name: String,
    /// `read`, `request`, `approve` (at least one).
    pub scopes: Vec<String>,
    /// Lifetime in days, 1 ..= `web.apiTokens.maxLifetimeDays` (default `defaultLifetimeDays`).
    #[serde(default)]
    pub expires_in_days: Option<i64>,
}

/// The created token: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// The token (`janus_pat_` and 40 characters). Shown once; store it now.
    pub token: String,
    /// Public id.
    pub display_id: String,
    /// Label.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<TokenScope>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// Tokens are managed with a login session only (the middleware already refuses personal tokens here
/// through `tokens::required_scope`; this keeps the rule where the routes are).
fn require_login_session(id: &Identity) -> Result<(), WebError> {
    match &id.token {
        Some(t) if t.personal => Err(WebError::Forbidden(
            "API tokens cannot manage API tokens; use the web UI".into(),
        )),
        _ => Ok(()),
    }
}

/// A new token: the prefix and 40 base62 characters from the thread-local CSPRNG.
fn new_secret() -> String {
    let mut rng = rand::rng();
    let s: String = (0..tokens::SECRET_CHARS)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect();
    format!("{}{s}", tokens::PAT_PREFIX)
}

fn check_name(name: &str) -> Result<String, WebError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > NAME_MAX {
        return Err(WebError::invalid(
            "name",
            format!("the name must have 1 to {NAME_MAX} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(WebError::invalid(
            "name",
            "the name must be printable (no control characters)",
        ));
    }
    Ok(name.to_string())
}

fn check_scopes(scopes: &[String]) -> Result<Vec<TokenScope>, WebError> {
    if scopes.is_empty() {
        return Err(WebError::invalid(
            "scopes",
            "choose at least one scope: read, request, approve",
        ));
    }
    let mut out = Vec::new();
    for s in scopes {
        let scope = TokenScope::parse(s).ok_or_else(|| {
            let shown: String = s.chars().filter(|c| !c.is_control()).take(32).collect();
            WebError::invalid(
                "scopes",
                format!("unknown scope {shown:?}: use read, request or approve"),
            )
        })?;
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    out.sort();
    Ok(out)
}

/// Creates a token for the caller.
pub async fn create(state: &AppState, id: &Identity, input: NewTokenInput) -> Result<CreatedToken, WebError> {
    require_login_session(id)?;
    let cfg = &state.config.web.api_tokens;
    if !cfg.enabled {
        return Err(WebError::Forbidden("personal API tokens are disabled".into()));
    }
    let name = check_name(&input.name)?;
    let scopes = check_scopes(&input.scopes)?;
    let days = input.expires_in_days.unwrap_or(i64::from(cfg.default_lifetime_days));
    if !(1..=i64::from(cfg.max_lifetime_days)).contains(&days) {
        return Err(WebError::invalid(
            "expiresInDays",
            format!("the lifetime must be 1 to {} days", cfg.max_lifetime_days),
        ));
    }
    let now = Utc::now();
    let expires_at = now + chrono::Duration::days(days);
    // Admin rights the configuration grants (adminEmails, adminGroups) are re-evaluated at every use;
    // the snapshot keeps only what the configuration does not explain.
    let is_admin = id.is_admin && !state.admin_by_config(&id.email, &id.groups);
    // Two attempts: a clash of the 8-character display id is possible, if very unlikely.
    let mut attempt = 0;
    let (token, stored) = loop {
        let token = new_secret();
        let row = NewApiToken {
            id_hash: tokens::hash(&token),
            display_id: tokens::display_id(&token),
            owner: id.email.to_lowercase(),
            auth: id.auth.as_str().into(),
            display_name: id.name.clone(),
            is_admin,
            groups: id.groups.clone(),
            name: name.clone(),
            scopes: scopes.clone(),
            created_at: now,
            expires_at,
        };
        // Count and insert are one atomic step in the store: parallel creates cannot pass the limit.
        match state
            .store
            .create_api_token_within(&row, i64::from(cfg.max_per_user), now)
            .await
        {
            Ok(Some(t)) => break (token, t),
            Ok(None) => {
                return Err(WebError::Conflict(format!(
                    "you have {} active API tokens, the most allowed; revoke one first",
                    cfg.max_per_user
                )));
            }
            Err(StoreError::Conflict(_)) if attempt < 2 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    };
    audit::record(
        state,
        AuditKind::ApiTokenCreated,
        &id.email,
        None,
        None,
        &[],
        json!({"displayId": stored.display_id, "name": stored.name, "scopes": stored.scopes,
               "expiresAt": stored.expires_at, "by": id.email}),
    )
    .await;
    tracing::info!(actor = %id.email, token = %stored.display_id, "API token created");
    Ok(CreatedToken {
        token,
        display_id: stored.display_id,
        name: stored.name,
        scopes: stored.scopes,
        expires_at: stored.expires_at,
    })
}

/// Revokes a token of the caller's (admins: anyone's). Revoking a revoked token again changes nothing.
/// Streams opened with it end: at once on this replica, within the owner check's tick on the others.
pub async fn revoke(state: &AppState, id: &Identity, display_id: &str) -> Result<(), WebError> {
    require_login_session(id)?;
    let not_found = || WebError::NotFound("no such API token".into());
    let t = state
        .store
        .api_token_by_display_id(display_id)
        .await?
        .ok_or_else(not_found)?;
    // Someone else's token is "not found" to a non-admin: ids are not confirmed to exist.
    if !id.is_admin && !t.owner.eq_ignore_ascii_case(&id.email) {
        return Err(not_found());
    }
    let now = Utc::now();
    let revoked = state.store.revoke_api_token(display_id, None, &id.email, now).await?;
    if revoked {
        state.terminals.close_login(&t.id_hash, &EndReason::token_revoked());
        audit::record(
            state,
            AuditKind::ApiTokenRevoked,
            &id.email,
            None,
            None,
            &[],
            json!({"displayId": t.display_id, "name": t.name, "scopes": t.scopes, "expiresAt": t.expires_at,
                   "owner": t.owner, "by": id.email, "revokedBy": id.email}),
        )
        .await;
        tracing::info!(actor = %id.email, token = %t.display_id, owner = %t.owner, "API token revoked");
    }
    // Other replicas' streams: the owner check (shared database) ends them; wake this one's now too.
    state.terminals.recheck_owners();
    Ok(())
}

/// The caller's tokens, or everyone's (`all`, admins).
pub async fn list(state: &AppState, id: &Identity, all: bool) -> Result<Vec<TokenView>, WebError> {
    require_login_session(id)?;
    if all && !id.is_admin {
        return Err(WebError::Forbidden("only admins list everyone's API tokens".into()));
    }
    let owner = (!all).then(|| id.email.to_lowercase());
    let now = Utc::now();
    Ok(state
        .store
        .list_api_tokens(owner.as_deref())
        .await?
        .into_iter()
        .map(|t| TokenView::of(t, now))
        .collect())
}

/// `GET /api/v1/tokens`.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", summary = "Personal API tokens (own; ?all=true: everyone's, admins)",
    params(ListQuery),
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Tokens, newest first (never the tokens themselves)", body = Vec<TokenView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "A personal API token was used, or ?all=true by a non-admin", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn list_handler(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    q: Result<Query<ListQuery>, WebError>,
) -> Result<Response, WebError> {
    let Query(q) = q?;
    Ok(Json(list(&state, &id, q.all).await?).into_response())
}

/// `POST /api/v1/tokens`.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", summary = "Create a personal API token (shown once)",
    request_body = NewTokenInput,
    security(("session" = [], "csrf" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Created; `token` is shown only now", body = CreatedToken),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "A personal API token was used, tokens are disabled, or CSRF", body = ErrorBody),
        (status = 409, description = "web.apiTokens.maxPerUser active tokens exist already", body = ErrorBody),
        (status = 422, description = "Invalid name, scopes or expiresInDays (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn create_handler(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    b: Result<Json<NewTokenInput>, WebError>,
) -> Result<Response, WebError> {
    require_login_session(&id)?;
    let Json(input) = b?;
    let created = create(&state, &id, input).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE /api/v1/tokens/{displayId}`.
#[utoipa::path(delete, path = "/api/v1/tokens/{displayId}", tag = "tokens", summary = "Revoke a personal API token (own; admins: any)",
    params(("displayId" = String, Path, description = "The token's display id (janus_pat_ and 8 characters)")),
    security(("session" = [], "csrf" = []), ("bearer" = [])),
    responses(
        (status = 204, description = "Revoked (or revoked already); streams opened with it end"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "A personal API token was used, or CSRF", body = ErrorBody),
        (status = 404, description = "No such token of yours", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn delete_handler(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(display_id): Path<String>,
) -> Result<Response, WebError> {
    revoke(&state, &id, &display_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_well_formed_personal_tokens() {
        let a = new_secret();
        assert_eq!(tokens::bearer_kind(&a), Some(tokens::BearerKind::PersonalToken), "{a}");
        assert_ne!(a, new_secret());
    }

    #[test]
    fn names_and_scopes() {
        assert!(check_name("ci").is_ok() && check_name(&"x".repeat(64)).is_ok());
        assert!(check_name("").is_err() && check_name("  ").is_err() && check_name(&"x".repeat(65)).is_err());
        assert!(check_name("a\u{7}b").is_err());
        let s = |v: &[&str]| check_scopes(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            s(&["approve", "read", "read"]).ok(),
            Some(vec![TokenScope::Read, TokenScope::Approve])
        );
        assert!(s(&[]).is_err() && s(&["admin"]).is_err() && s(&["READ"]).is_err());
    }
}
