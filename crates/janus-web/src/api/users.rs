//! `/api/v1/users`: local accounts, managed by admins (pages call the same functions).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use janus_store::User;
use janus_store::{AuditKind, NewUser, UserChange};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use crate::audit;
use crate::auth::{Authenticated, Identity, local};
use crate::error::WebError;
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::terminal::EndReason;

fn require_admin(id: &Identity) -> Result<(), WebError> {
    if id.is_admin {
        Ok(())
    } else {
        Err(WebError::Forbidden("only admins manage users".into()))
    }
}

/// A new local user.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUserInput {
    /// Login name.
    pub username: String,
    /// Email (the identity on requests).
    pub email: String,
    /// Initial password.
    pub password: String,
    /// Admin?
    #[serde(default)]
    pub is_admin: bool,
}

/// A change to a local user.
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserChangeInput {
    /// New password.
    #[serde(default)]
    pub password: Option<String>,
    /// New role.
    #[serde(default)]
    pub is_admin: Option<bool>,
    /// Disable or enable.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// Creates a user.
pub async fn create(state: &AppState, id: &Identity, input: NewUserInput) -> Result<janus_store::User, WebError> {
    require_admin(id)?;
    local::check_username(&input.username)?;
    let email = local::check_email(&input.email)?;
    local::check_password(&input.password)?;
    let hash = local::hash_password(input.password).await?;
    let user = state
        .store
        .create_user(&NewUser {
            username: input.username.clone(),
            email: email.clone(),
            is_admin: input.is_admin,
            password_hash: hash,
        })
        .await
        .map_err(|e| match e {
            // The store says which key clashed: the username, or the email (case-insensitive).
            janus_store::StoreError::Conflict(m) if m.contains("email") => WebError::Conflict(m),
            janus_store::StoreError::Conflict(_) => {
                WebError::Conflict(format!("user {} exists already", input.username))
            }
            other => other.into(),
        })?;
    audit::record(
        state,
        AuditKind::UserCreated,
        &id.email,
        None,
        None,
        &[],
        json!({"username": input.username, "email": email, "admin": input.is_admin}),
    )
    .await;
    Ok(user)
}

/// Changes a user; sessions end when the password, role or state changes.
pub async fn update(
    state: &AppState,
    id: &Identity,
    username: &str,
    input: UserChangeInput,
) -> Result<janus_store::User, WebError> {
    require_admin(id)?;
    if input.password.is_none() && input.is_admin.is_none() && input.disabled.is_none() {
        return Err(WebError::invalid("body", "nothing to change"));
    }
    let existing = state
        .store
        .get_user(username)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("no user {username}")))?;
    // A disabled account sharing the caller's email (one migration 2 left) is not the caller.
    if is_self(&existing, id) && (input.is_admin == Some(false) || input.disabled == Some(true)) {
        return Err(WebError::Conflict("you cannot demote or disable yourself".into()));
    }
    let password_hash = match input.password {
        Some(p) => {
            local::check_password(&p)?;
            Some(local::hash_password(p).await?)
        }
        None => None,
    };
    let changed_password = password_hash.is_some();
    let user = state
        .store
        .update_user(
            username,
            &UserChange {
                password_hash,
                is_admin: input.is_admin,
                disabled: input.disabled,
            },
        )
        .await?
        .ok_or_else(|| WebError::NotFound(format!("no user {username}")))?;
    // Login sessions, terminals and log streams are keyed by email, and belong to the email's enabled
    // account (at most one). An account disabled before and after the change while another, enabled
    // account holds the email (a duplicate migration 2 left beside the account it kept) has none of
    // them: changing it must not sign that account out. (Read after the change, so that an enabling
    // made meanwhile is not missed.)
    let holder = state.store.get_user_by_email(&user.email).await?;
    let held_by_another = holder.is_some_and(|h| !h.disabled && h.username != user.username);
    if !existing.disabled || !user.disabled || !held_by_another {
        if input.disabled == Some(true) {
            revoke_tokens(state, &id.email, &user.email, "system: user disabled").await?;
        } else if changed_password {
            revoke_tokens(state, &id.email, &user.email, "system: password changed").await?;
        }
        state.store.delete_user_sessions(&user.email).await?;
        state.recent_sessions.forget_subject(&user.email);
        end_streams_after_change(state, &user.email, input.disabled, input.is_admin);
    }
    audit::record(
        state,
        AuditKind::UserChanged,
        &id.email,
        None,
        None,
        &[],
        json!({"username": username, "passwordChanged": changed_password, "admin": input.is_admin, "disabled": input.disabled}),
    )
    .await;
    Ok(user)
}

/// Revokes every personal API token of the email (a local account's): a re-created or re-enabled
/// account with the same email, or one whose password was reset because it leaked, must not get the
/// old tokens back. Their streams end here at once; the owner check ends those on other replicas.
async fn revoke_tokens(state: &AppState, actor: &str, email: &str, why: &str) -> Result<(), WebError> {
    let revoked = state
        .store
        .revoke_owner_api_tokens(email, why, chrono::Utc::now())
        .await?;
    for t in &revoked {
        state.terminals.close_login(&t.id_hash, &EndReason::token_revoked());
        audit::record(
            state,
            AuditKind::ApiTokenRevoked,
            actor,
            None,
            None,
            &[],
            json!({"displayId": t.display_id, "name": t.name, "scopes": t.scopes, "expiresAt": t.expires_at,
                   "owner": t.owner, "by": actor, "revokedBy": why}),
        )
        .await;
    }
    if !revoked.is_empty() {
        tracing::info!(owner = %email, tokens = revoked.len(), reason = %why, "API tokens revoked with the account");
        state.terminals.recheck_owners();
    }
    Ok(())
}

/// Whether the account is the caller's own: the enabled account with the caller's email.
fn is_self(account: &janus_store::User, id: &Identity) -> bool {
    !account.disabled && account.email.eq_ignore_ascii_case(&id.email)
}

/// Ends the user's terminals and log streams on this replica at once where the change says why; the
/// owner check (every replica, twice a second) ends the rest, e.g. those of the login sessions the
/// change just ended.
fn end_streams_after_change(state: &AppState, email: &str, disabled: Option<bool>, is_admin: Option<bool>) {
    if disabled == Some(true) {
        state
            .terminals
            .close_user(email, &EndReason::new("user-disabled", "your account was disabled"));
    }
    if is_admin == Some(false) && !state.admin_by_config(email, &[]) {
        state.terminals.close_admin_only(
            email,
            &EndReason::new("admin-removed", "your admin rights were removed"),
        );
    }
    state.terminals.recheck_owners();
}

/// Deletes a user and ends their sessions.
pub async fn delete(state: &AppState, id: &Identity, username: &str) -> Result<(), WebError> {
    require_admin(id)?;
    let existing = state
        .store
        .get_user(username)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("no user {username}")))?;
    if is_self(&existing, id) {
        return Err(WebError::Conflict("you cannot delete yourself".into()));
    }
    state.store.delete_user(username).await?;
    // The email's sessions and streams end unless they belong to another account: the deleted one was
    // disabled and an enabled account keeps the email (checked after the delete, so that an account
    // enabled meanwhile is not missed).
    let kept = state.store.get_user_by_email(&existing.email).await?;
    if !existing.disabled || kept.is_none_or(|u| u.disabled) {
        revoke_tokens(state, &id.email, &existing.email, "system: user deleted").await?;
        state.store.delete_user_sessions(&existing.email).await?;
        state.recent_sessions.forget_subject(&existing.email);
        state.terminals.close_user(
            &existing.email,
            &EndReason::new("user-deleted", "your account was deleted"),
        );
    }
    state.terminals.recheck_owners();
    audit::record(
        state,
        AuditKind::UserDeleted,
        &id.email,
        None,
        None,
        &[],
        json!({"username": username}),
    )
    .await;
    Ok(())
}

/// The local users.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    /// Every local account.
    pub users: Vec<User>,
}

/// `GET /api/v1/users`.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", summary = "Local users (admins)",
    responses(
        (status = 200, description = "Local users", body = UserList),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn list_handler(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
) -> Result<Response, WebError> {
    require_admin(&id)?;
    Ok(Json(UserList {
        users: state.store.list_users().await?,
    })
    .into_response())
}

/// `POST /api/v1/users`.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", summary = "Create a local user (admins)", request_body = NewUserInput,
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, CSRF token missing or wrong, or cross-site Origin", body = ErrorBody),
        (status = 409, description = "The username or email exists already", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid field (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn create_handler(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    b: Result<Json<NewUserInput>, WebError>,
) -> Result<Response, WebError> {
    require_admin(&id)?;
    let Json(input) = b?;
    let u = create(&state, &id, input).await?;
    Ok((StatusCode::CREATED, Json(u)).into_response())
}

/// `PATCH /api/v1/users/{username}`.
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", summary = "Change a local user's password, role or state (admins)", request_body = UserChangeInput,
    description = "Changes the password, role or state; the user's sessions end.",
    params(("username" = String, Path, description = "Login name")),
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, CSRF token missing or wrong, or cross-site Origin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "Demoting or disabling oneself", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Nothing to change, or an invalid field", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn update_handler(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    username: Result<Path<String>, WebError>,
    b: Result<Json<UserChangeInput>, WebError>,
) -> Result<Response, WebError> {
    // Admins first: a non-admin learns nothing from how the path or body would have been read.
    require_admin(&id)?;
    let Path(username) = username?;
    let Json(input) = b?;
    Ok(Json(update(&state, &id, &username, input).await?).into_response())
}

/// `DELETE /api/v1/users/{username}`.
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users", summary = "Delete a local user (admins)",
    params(("username" = String, Path, description = "Login name")),
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 204, description = "Deleted; the user's sessions end"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, CSRF token missing or wrong, or cross-site Origin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "Deleting oneself", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn delete_handler(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    username: Result<Path<String>, WebError>,
) -> Result<Response, WebError> {
    require_admin(&id)?;
    let Path(username) = username?;
    delete(&state, &id, &username).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
