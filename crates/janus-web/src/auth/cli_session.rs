//! CLI sessions (`janus login`): a `janus_cli_` bearer credential backed by a row in the same
//! `web_sessions` table as browser sessions, so logout, expiry, disabling or deleting the user and the
//! terminal's owner check apply to it unchanged.

use chrono::{DateTime, Utc};
use janus_api::tokens;
use janus_store::{AuditKind, WebSession};
use rand::RngExt as _;
use serde_json::json;

use crate::audit;
use crate::auth::{AuthSource, Identity, TokenInfo, session};
use crate::error::WebError;
use crate::state::AppState;

/// How the person proved who they are to get a CLI session (the `method` of the `login.cli` audit event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Username and password of a local account (`POST /api/v1/cli/login`).
    Password,
    /// The OAuth 2.0 device authorization grant at the OIDC provider (`POST /api/v1/cli/device/token`).
    Device,
}

impl Method {
    /// The name recorded in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Device => "device",
        }
    }
}

/// A freshly issued CLI session: the only moment the credential exists outside the client.
#[derive(Debug)]
pub struct Issued {
    /// `janus_cli_` and 40 base62 characters.
    pub token: String,
    /// When the session ends (`web.cliSessionTtlSeconds` from now).
    pub expires_at: DateTime<Utc>,
    /// Who it belongs to, as a bearer request with it will be resolved.
    pub identity: Identity,
}

/// Who a CLI session is issued to (already authenticated by the caller).
#[derive(Debug, Clone)]
pub struct Person<'a> {
    /// Lowercased email.
    pub email: &'a str,
    /// Name to show.
    pub name: &'a str,
    /// Admin as a local account (OIDC admins come from `adminGroups` at every use).
    pub local_admin: bool,
    /// Identity-provider groups (the `k8s-janus:` ones are dropped).
    pub groups: Vec<String>,
    /// `Local` or `Oidc`.
    pub auth: AuthSource,
}

/// A new CLI session secret: [`tokens::SECRET_CHARS`] characters from the thread-local CSPRNG.
fn secret() -> String {
    let mut rng = rand::rng();
    let s: String = (0..tokens::SECRET_CHARS)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect();
    format!("{}{s}", tokens::CLI_SESSION_PREFIX)
}

/// Issues a CLI session for `who`: stores only [`tokens::hash`] of the credential in `web_sessions`
/// (expiring after `web.cliSessionTtlSeconds`) and records `login.cli` (never the credential).
/// `source` is the client address as the login saw it.
pub async fn issue(state: &AppState, who: Person<'_>, method: Method, source: &str) -> Result<Issued, WebError> {
    let groups = super::idp_groups(who.groups);
    let token = secret();
    let now = Utc::now();
    // The configuration is validated at start (60 s ..= 30 days); the clamp only keeps a hand-built
    // configuration from producing a session that has already ended or never does.
    let ttl = state.config.web.cli_session_ttl_seconds.clamp(60, 30 * 86_400);
    let expires_at = now + chrono::Duration::seconds(ttl);
    let s = WebSession {
        id_hash: tokens::hash(&token),
        subject: who.email.to_string(),
        display_name: who.name.to_string(),
        is_admin: who.local_admin,
        groups: groups.clone(),
        auth: who.auth.as_str().into(),
        // Bearer requests need no CSRF token; the column is required, so it gets an unusable random one.
        csrf_token: session::random_token(),
        created_at: now,
        last_seen: now,
        expires_at,
    };
    state.store.create_session(&s).await?;
    state.recent_sessions.remember(&s.id_hash, &s);
    let display_id = tokens::display_id(&token);
    audit::record(
        state,
        AuditKind::CliLogin,
        who.email,
        None,
        None,
        &[],
        json!({"method": method.as_str(), "auth": who.auth.as_str(), "displayId": display_id,
               "expiresAt": expires_at, "source": source}),
    )
    .await;
    tracing::info!(actor = %who.email, method = method.as_str(), display_id = %display_id, "CLI session issued");
    let identity = Identity {
        email: who.email.to_string(),
        name: who.name.to_string(),
        is_admin: who.local_admin || state.admin_by_config(who.email, &groups),
        groups,
        auth: who.auth,
        csrf: String::new(),
        session: Some(s.id_hash),
        token: Some(TokenInfo {
            display_id,
            scopes: tokens::TokenScope::ALL.to_vec(),
            personal: false,
        }),
    };
    Ok(Issued {
        token,
        expires_at,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_well_formed_cli_session_credentials() {
        let a = secret();
        assert_eq!(tokens::bearer_kind(&a), Some(tokens::BearerKind::CliSession), "{a}");
        assert_eq!(a.len(), tokens::CLI_SESSION_PREFIX.len() + tokens::SECRET_CHARS);
        assert_ne!(a, secret());
    }
}
