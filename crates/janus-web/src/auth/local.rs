//! Local accounts: argon2 password hashes, the bootstrap admin, login with rate limiting and lockout
//! (per account and client address, per account, and per address; see [`login`]).

use std::net::IpAddr;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::http::HeaderMap;
use chrono::Utc;
use janus_api::config::AuthMode;
use janus_store::{AuditKind, LoginGate, LoginLimits, NewUser};
use serde_json::json;

use crate::audit;
use crate::auth::{AuthSource, Identity, client_ip, session};
use crate::error::WebError;
use crate::state::AppState;

/// Shortest password accepted for local accounts.
pub const MIN_PASSWORD: usize = 12;

/// The start of both password logins (`POST /api/v1/login` and `POST /api/v1/cli/login`, whose failures
/// count together): 404 unless `authMode` is local, else the client address the failed-login budget of
/// [`login`] and [`verify`] counts against.
pub fn login_client(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> Result<client_ip::Client, WebError> {
    if state.config.web.auth_mode != AuthMode::Local {
        return Err(WebError::NotFound("local login is disabled".into()));
    }
    Ok(client_ip::of_request(state, peer, headers))
}

/// Hashes a password with argon2id (off the async threads: it is deliberately slow).
pub async fn hash_password(password: String) -> Result<String, WebError> {
    tokio::task::spawn_blocking(move || {
        // A fresh random salt from the OS (password-hash 0.6 draws it itself).
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h: PasswordHash| h.to_string())
            .map_err(|e| WebError::Internal(format!("hashing failed: {e}")))
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?
}

/// Checks a password against a stored hash (a malformed hash never matches).
pub async fn verify_password(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Password rules for local accounts.
pub fn check_password(password: &str) -> Result<(), WebError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(WebError::invalid(
            "password",
            format!("the password must have at least {MIN_PASSWORD} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(WebError::invalid(
            "password",
            "the password is too long (at most 1024 bytes)",
        ));
    }
    Ok(())
}

/// Username rules: 1–254 characters of letters, digits and `@._+-`.
pub fn check_username(u: &str) -> Result<(), WebError> {
    let ok = !u.is_empty()
        && u.len() <= 254
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(WebError::invalid(
            "username",
            "a username has 1 to 254 letters, digits or @ . _ + -",
        ))
    }
}

/// Email rules: something@domain, no spaces, at most 254 bytes; returned lowercased.
pub fn check_email(e: &str) -> Result<String, WebError> {
    let e = e.trim().to_ascii_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.starts_with('.') && !d.ends_with('.'))
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '\''));
    if valid {
        Ok(e)
    } else {
        Err(WebError::invalid("email", "enter a valid email address"))
    }
}

/// Creates the bootstrap admin when the database has no enabled admin account and a password is given
/// (a disabled admin does not count: an install left without an enabled one gets the bootstrap admin).
pub async fn bootstrap_admin(
    state: &AppState,
    username: &str,
    email: &str,
    password: Option<&str>,
) -> Result<bool, WebError> {
    let users = state.store.list_users().await?;
    if users.iter().any(|u| u.is_admin && !u.disabled) {
        return Ok(false);
    }
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        tracing::warn!(
            "no admin account exists and JANUS_BOOTSTRAP_ADMIN_PASSWORD is not set: nobody can log in as admin"
        );
        return Ok(false);
    };
    if let Some(u) = users.iter().find(|u| u.username == username) {
        tracing::warn!(
            username,
            disabled = u.disabled,
            admin = u.is_admin,
            "no enabled admin account exists, and the bootstrap admin's username is taken by an account that \
             is not one: enable or promote an admin account, or set another bootstrap username"
        );
        return Ok(false);
    }
    let hash = hash_password(password.to_string()).await?;
    match state
        .store
        .create_user(&NewUser {
            username: username.into(),
            email: email.into(),
            is_admin: true,
            password_hash: hash,
        })
        .await
    {
        Ok(_) => {}
        Err(janus_store::StoreError::Conflict(m)) => {
            // Usually another replica created it at the same moment; otherwise the email is taken.
            if !state
                .store
                .list_users()
                .await?
                .iter()
                .any(|u| u.is_admin && !u.disabled)
            {
                tracing::warn!(username, reason = %m, "the bootstrap admin account could not be created");
            }
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(
        state,
        AuditKind::UserCreated,
        "system",
        None,
        None,
        &[],
        json!({"username": username, "admin": true, "bootstrap": true}),
    )
    .await;
    tracing::info!(username, "bootstrap admin account created");
    Ok(true)
}

/// A fixed hash checked instead of the account's when no real check may run (unknown, disabled or locked
/// account), so every refusal costs the same argon2 time as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2rSm0ZJUVvXjdZ3ReFIJ3ZSUzNnPsVSaxoQV4Ybn3yM";

/// The one answer to every refused login: a wrong password, an unknown, disabled or locked account all
/// look the same, so the answer does not tell which accounts exist or are locked.
fn refused() -> WebError {
    WebError::invalid("password", "wrong username or password")
}

/// The lockout thresholds of the configuration.
fn limits(state: &AppState) -> LoginLimits {
    let web = &state.config.web;
    LoginLimits {
        per_client: web.login_max_failures.max(1),
        per_account: web.login_max_failures_per_account.max(1),
        lockout: chrono::Duration::seconds(web.login_lockout_seconds.clamp(1, 100 * 365 * 86_400)),
    }
}

/// Checks a local login from `client` (see [`crate::auth::client_ip`]) and starts a session.
///
/// At most `loginMaxFailures` password checks of an account from one client address, and
/// `loginMaxFailuresPerAccount` from all addresses, fail before a lock: each check is reserved in the
/// database before argon2 runs, so parallel attempts on any number of replicas cannot exceed them.
/// Failures (never successes) also count against the client address over all accounts: a cell of its
/// budget is taken before anything is checked and given back only when the login succeeds, so checks
/// in flight count too and a burst of parallel guesses gets no more checks than the budget.
pub async fn login(
    state: &AppState,
    username: &str,
    password: &str,
    client: client_ip::Client,
) -> Result<(Identity, String), WebError> {
    let (user, source) = verify(state, username, password, client).await?;
    let (id, cookie) = session::start(
        state,
        &user.email,
        &user.username,
        user.is_admin,
        vec![],
        AuthSource::Local,
    )
    .await?;
    audit::record(
        state,
        AuditKind::LoginSucceeded,
        &id.email,
        None,
        None,
        &[],
        json!({"username": user.username, "auth": "local", "method": "local", "source": source}),
    )
    .await;
    Ok((id, cookie))
}

/// The checks of [`login`] without starting a session: the password, the rate limits and lockouts, the
/// audit of refusals. Returns the account and the client address as recorded; shared by the browser
/// login and the CLI login (`POST /api/v1/cli/login`), so both count against the same limits.
pub async fn verify(
    state: &AppState,
    username: &str,
    password: &str,
    client: client_ip::Client,
) -> Result<(janus_store::User, String), WebError> {
    let key = client_ip::limit_key(&client);
    if !state.login_limiter.reserve(&key) {
        return Err(WebError::TooMany(
            "too many failed logins from your address; wait a few minutes".into(),
        ));
    }
    let source = client.to_string();
    let client_key = key.to_string();
    let username = username.trim();
    if username.is_empty() || username.len() > 254 || password.len() > 1024 {
        return Err(refused());
    }
    let now = Utc::now();
    let limits = limits(state);
    // Every refusal makes the same database calls and one argon2 check (against a dummy hash when the
    // real one may not be checked), so neither the answer nor its time tells whether the account exists,
    // is disabled or is locked. For an unknown name the reservation changes nothing.
    let looked_up = async {
        let user = state.store.get_user(username).await?;
        let gate = state
            .store
            .reserve_login_attempt(username, &client_key, now, limits)
            .await?;
        Ok::<_, WebError>((user, gate))
    }
    .await;
    let (user, gate) = match looked_up {
        Ok(v) => v,
        Err(e) => {
            // Nothing was checked (the database failed): the address keeps its budget.
            state.login_limiter.refund(&key);
            return Err(e);
        }
    };
    let (reason, checked) = match (&user, gate) {
        (None, _) | (_, LoginGate::NoAccount) => ("unknown user", None),
        (Some(u), _) if u.disabled => ("disabled", None),
        (Some(u), LoginGate::Reserved) => {
            let ok = verify_password(u.password_hash.clone(), password.to_string()).await;
            ("wrong password", Some(ok))
        }
        (Some(_), LoginGate::ClientLocked) => ("locked for this address", None),
        (Some(_), LoginGate::AccountLocked) => ("account locked", None),
    };
    match (checked, user) {
        (Some(true), Some(user)) => {
            state.login_limiter.refund(&key);
            state.store.login_attempt_succeeded(username, &client_key).await?;
            Ok((user, source))
        }
        (checked, _) => {
            if checked.is_none() {
                let _ = verify_password(DUMMY_HASH.into(), password.to_string()).await;
            }
            audit::record(
                state,
                AuditKind::LoginFailed,
                username,
                None,
                None,
                &[],
                json!({"reason": reason, "method": "local", "source": source}),
            )
            .await;
            // Settled on every refusal path alike (see above). Where nothing was reserved it can only
            // start a lock on a counter already at its limit.
            let started = state
                .store
                .login_attempt_failed(username, &client_key, now, limits)
                .await?;
            for (scope, until, threshold) in [
                ("address", started.client, limits.per_client),
                ("account", started.account, limits.per_account),
            ] {
                let Some(until) = until else { continue };
                tracing::warn!(username, source = %source, scope, %until, "login locked after repeated failures");
                audit::record(
                    state,
                    AuditKind::LoginLocked,
                    username,
                    None,
                    None,
                    &[],
                    json!({"scope": scope, "source": source, "until": until, "failures": threshold}),
                )
                .await;
            }
            Err(refused())
        }
    }
}

/// Creates a local user, or resets its password when it exists with another one (`janus demo`).
pub async fn ensure_user(
    state: &AppState,
    username: &str,
    email: &str,
    password: &str,
    is_admin: bool,
) -> Result<(), WebError> {
    check_username(username)?;
    let email = check_email(email)?;
    check_password(password)?;
    match state.store.get_user(username).await? {
        Some(u) => {
            if !verify_password(u.password_hash.clone(), password.to_string()).await {
                let hash = hash_password(password.to_string()).await?;
                state
                    .store
                    .update_user(
                        username,
                        &janus_store::UserChange {
                            password_hash: Some(hash),
                            ..Default::default()
                        },
                    )
                    .await?;
            }
        }
        None => {
            let hash = hash_password(password.to_string()).await?;
            state
                .store
                .create_user(&NewUser {
                    username: username.into(),
                    email,
                    is_admin,
                    password_hash: hash,
                })
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produced by argon2 0.5.3 (`Argon2::default()`, salt "janus-h5-vector!") before the move to 0.6:
    /// hashes stored by earlier releases must keep verifying after a dependency upgrade.
    const ARGON2_0_5_HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$amFudXMtaDUtdmVjdG9yIQ$kSEtN3Updb80bFD23J4v7VvHBOs5W7eA1GQS2Cfdvs4";

    #[tokio::test]
    async fn a_hash_stored_by_the_previous_argon2_still_verifies() {
        assert!(verify_password(ARGON2_0_5_HASH.into(), "correct horse battery staple".into()).await);
        assert!(!verify_password(ARGON2_0_5_HASH.into(), "correct horse battery stapler".into()).await);
    }

    #[tokio::test]
    async fn new_hashes_keep_the_stored_format_and_cost() {
        let hash = hash_password("correct horse battery staple".into()).await.unwrap();
        // Same algorithm, version and cost as the hashes already stored, so old and new verify alike
        // and a login costs the same for both.
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert_ne!(hash, ARGON2_0_5_HASH, "a fresh random salt");
        assert!(verify_password(hash.clone(), "correct horse battery staple".into()).await);
        assert!(!verify_password(hash, "wrong horse battery staple".into()).await);
    }

    #[test]
    fn the_dummy_hash_parses() {
        // Refused logins verify against it to cost the same argon2 time; a hash that failed to parse
        // would return at once and let the timing tell which accounts exist.
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
