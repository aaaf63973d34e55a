//! `Authorization: Bearer` credentials for tools: CLI sessions (`janus_cli_…`, a `web_sessions` row)
//! and personal API tokens (`janus_pat_…`, an `api_tokens` row). Accepted only on the JSON API and the
//! terminal socket; never together with a session cookie; scope-checked per route for personal tokens.
//!
//! The credential is never logged, echoed or stored: only its hash and display id leave this module.

use std::net::IpAddr;

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use janus_api::config::AuthMode;
use janus_api::tokens::{self, BearerKind, TokenScope};
use janus_store::AuditKind;
use serde_json::json;

use super::{AuthSource, Identity, TokenInfo, client_ip, idp_groups, proxy, session};
use crate::audit;
use crate::error::WebError;
use crate::state::AppState;

/// The answer to every unusable bearer credential: the same whatever was wrong with it, so a caller
/// learns nothing about tokens it does not hold.
pub const INVALID_MESSAGE: &str = "the API token is invalid, expired or revoked; create a new one or run: janus login";
/// The answer to a personal API token while `web.apiTokens.enabled` is false.
pub const DISABLED_MESSAGE: &str = "personal API tokens are disabled";
/// The answer to a bearer credential on a page.
pub const PAGES_MESSAGE: &str = "API tokens work only on /api/v1 and the terminal socket";
/// The answer to a request with a session cookie and a bearer credential.
pub const AMBIGUOUS_MESSAGE: &str = "send a session cookie or a bearer token, not both";

/// Why a bearer request was refused.
#[derive(Debug)]
pub enum BearerError {
    /// A session cookie and a bearer credential on one request (400).
    Ambiguous,
    /// A bearer credential on a page (401, plain text: pages are for browsers).
    Page,
    /// Malformed, unknown, expired or revoked, or its local owner is disabled or deleted (401).
    Invalid,
    /// A personal API token while they are disabled (401).
    Disabled,
    /// A personal API token on a route it may not use or without the scope the route needs (403).
    Forbidden(String),
    /// Anything else (database unavailable, identity conflict in proxy mode).
    Web(WebError),
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        // `error` is the machine code as the contract names it; `code` repeats it for clients that
        // read the other API errors' shape.
        let json = |status: StatusCode, code: &str, message: &str| {
            (status, Json(json!({"error": code, "code": code, "message": message}))).into_response()
        };
        match self {
            Self::Ambiguous => json(StatusCode::BAD_REQUEST, "ambiguous_credentials", AMBIGUOUS_MESSAGE),
            Self::Page => (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{PAGES_MESSAGE}\n"),
            )
                .into_response(),
            Self::Invalid => json(StatusCode::UNAUTHORIZED, "unauthenticated", INVALID_MESSAGE),
            Self::Disabled => json(StatusCode::UNAUTHORIZED, "unauthenticated", DISABLED_MESSAGE),
            Self::Forbidden(m) => json(StatusCode::FORBIDDEN, "forbidden", &m),
            Self::Web(e) => e.into_response(),
        }
    }
}

impl From<WebError> for BearerError {
    fn from(e: WebError) -> Self {
        Self::Web(e)
    }
}

/// Where every janus bearer credential starts ([`tokens::PAT_PREFIX`], [`tokens::CLI_SESSION_PREFIX`]).
pub const JANUS_PREFIX: &str = "janus_";

/// The janus bearer credential of a request: an `Authorization` header with the `Bearer` scheme
/// (case-insensitive, RFC 9110 §11.1) whose value starts with `janus_`. Any other bearer value is not
/// ours (an authenticating proxy may pass its own ID token along) and is ignored, so the request is
/// handled as if it had no `Authorization` header. A `janus_` value in several headers, or in one that
/// is not text, yields an empty credential, which no lookup accepts.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&[u8]> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes())
        .filter(|v| is_janus_bearer(v))
        .collect();
    match values.as_slice() {
        [] => None,
        [one] => Some(
            std::str::from_utf8(one)
                .ok()
                .and_then(|t| t.trim().split_once(' '))
                .map(|(_, rest)| rest.trim().to_string())
                .unwrap_or_default(),
        ),
        _ => Some(String::new()),
    }
}

/// Whether a raw `Authorization` value is `Bearer janus_…` (bytes, so a value that is not text is
/// still recognised as an attempt at a janus credential and refused rather than ignored).
fn is_janus_bearer(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    value[..space].eq_ignore_ascii_case(b"bearer") && value[space..].trim_ascii().starts_with(JANUS_PREFIX.as_bytes())
}

/// Whether bearer credentials are accepted on this path.
pub fn allowed_path(path: &str) -> bool {
    path.starts_with("/api/v1/") || path == "/api/v1" || path.starts_with("/ws/")
}

/// Resolves a request that carries a bearer credential: the identity, or why it is refused. Checks,
/// in order: the path, a session cookie beside it, the credential, the owner, and (personal tokens)
/// the scope the route needs.
pub async fn authenticate(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    credential: &str,
) -> Result<Identity, BearerError> {
    if !allowed_path(path) {
        return Err(BearerError::Page);
    }
    if session::cookie_value(headers, session::COOKIE).is_some() {
        return Err(BearerError::Ambiguous);
    }
    let kind = tokens::bearer_kind(credential).ok_or(BearerError::Invalid)?;
    let hash = tokens::hash(credential);
    let display_id = tokens::display_id(credential);
    let identity = match kind {
        // CLI sessions exist only where someone can sign in to the web itself.
        BearerKind::CliSession if state.config.web.auth_mode == AuthMode::Proxy => return Err(BearerError::Invalid),
        BearerKind::CliSession => cli_session(state, hash, display_id).await?,
        BearerKind::PersonalToken => personal_token(state, hash, display_id, headers, peer).await?,
    };
    if state.config.web.auth_mode == AuthMode::Proxy {
        // The proxy may authenticate the same request too (the CLI through the proxy): it must not
        // name someone else.
        match proxy::identity(state, headers, peer) {
            Ok(Some(p)) if p.email != identity.email => {
                tracing::warn!(
                    token = %identity.token.as_ref().map(|t| t.display_id.as_str()).unwrap_or(""),
                    "refused a bearer request whose proxy headers name another user"
                );
                return Err(WebError::IdentityConflict.into());
            }
            Ok(_) => {}
            Err(conflict) => {
                proxy::audit_conflict(state, &conflict, peer).await;
                return Err(WebError::IdentityConflict.into());
            }
        }
    }
    if let Some(t) = identity.token.as_ref().filter(|t| t.personal) {
        check_scope(method, path, &t.scopes)?;
    }
    Ok(identity)
}

/// What a personal token may not do, in words, for the 403 message.
fn forbidden_action(path: &str) -> &'static str {
    if path.starts_with("/api/v1/tokens") {
        "manage API tokens"
    } else if path.starts_with("/api/v1/cli/") {
        "start CLI sessions"
    } else if path.starts_with("/api/v1/users") {
        "change user accounts"
    } else if path.starts_with("/api/v1/notifications") {
        "manage notifications"
    } else if path.starts_with("/api/v1/login") {
        "sign in"
    } else if path.starts_with("/api/v1/quick-commands") {
        "change quick commands"
    } else {
        "make this call"
    }
}

/// The scope check of a personal token ([`tokens::required_scope`]).
pub fn check_scope(method: &Method, path: &str, scopes: &[TokenScope]) -> Result<(), BearerError> {
    match tokens::required_scope(method.as_str(), path) {
        None => Err(BearerError::Forbidden(format!(
            "API tokens cannot {}; use the web UI",
            forbidden_action(path)
        ))),
        Some(s) if scopes.contains(&s) => Ok(()),
        Some(s) => Err(BearerError::Forbidden(format!("this token lacks the `{s}` scope"))),
    }
}

/// A CLI session: a `web_sessions` row under the credential's hash, handled exactly as a cookie's.
async fn cli_session(state: &AppState, hash: String, display_id: String) -> Result<Identity, BearerError> {
    let mut id = super::session_identity(state, hash)
        .await?
        .ok_or(BearerError::Invalid)?;
    // A browser session is never reachable this way (its key is the hash of a cookie id, not of a
    // `janus_cli_` string), but a proxy-mode row is no CLI session either.
    if id.auth == AuthSource::Proxy {
        return Err(BearerError::Invalid);
    }
    id.csrf = session::random_token();
    id.token = Some(TokenInfo {
        display_id,
        scopes: TokenScope::ALL.to_vec(),
        personal: false,
    });
    Ok(id)
}

/// A personal API token: an `api_tokens` row, live, whose local owner (if local) still exists and is
/// enabled. OIDC and proxy owners have no account here: their snapshot stands until the token ends.
async fn personal_token(
    state: &AppState,
    hash: String,
    display_id: String,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Identity, BearerError> {
    if !state.config.web.api_tokens.enabled {
        return Err(BearerError::Disabled);
    }
    let now = Utc::now();
    let t = state
        .store
        .api_token(&hash)
        .await
        .map_err(WebError::from)?
        .filter(|t| t.is_live(now))
        .ok_or(BearerError::Invalid)?;
    let groups = idp_groups(t.groups.clone());
    let (auth, local_admin) = match t.auth.as_str() {
        "local" => {
            let user = state
                .store
                .get_user_by_email(&t.owner)
                .await
                .map_err(WebError::from)?
                .filter(|u| !u.disabled)
                .ok_or(BearerError::Invalid)?;
            // A local owner's admin right is the account's now, not the snapshot's.
            (AuthSource::Local, user.is_admin)
        }
        "proxy" => (AuthSource::Proxy, t.is_admin),
        _ => (AuthSource::Oidc, t.is_admin),
    };
    let is_admin = local_admin || state.admin_by_config(&t.owner, &groups);
    let address = match peer {
        Some(p) => client_ip::of_request(state, p, headers).to_string(),
        None => "unknown".to_string(),
    };
    // The row just read says whether a write is due: most requests then cost no write at all.
    let due = t.last_used_ip.as_deref() != Some(address.as_str())
        || t.last_used_at
            .is_none_or(|at| now - at >= chrono::Duration::seconds(60));
    let touched = if due {
        state.store.touch_api_token(&hash, now, &address).await
    } else {
        Ok(janus_store::TouchResult::default())
    };
    match touched {
        Ok(r) if r.new_address => {
            audit::record(
                state,
                AuditKind::ApiTokenNewAddress,
                &t.owner,
                None,
                None,
                &[],
                json!({"displayId": t.display_id, "address": address}),
            )
            .await;
        }
        Ok(_) => {}
        // Bookkeeping only: a failed write does not refuse a valid token.
        Err(e) => tracing::warn!(error = %e, token = %display_id, "cannot record the use of an API token"),
    }
    Ok(Identity {
        email: t.owner,
        name: t.display_name,
        is_admin,
        groups,
        auth,
        csrf: session::random_token(),
        session: Some(hash),
        token: Some(TokenInfo {
            display_id,
            scopes: t.scopes,
            personal: true,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn credentials_are_read_from_the_bearer_scheme_only() {
        assert_eq!(credential(&headers(&[])), None);
        assert_eq!(credential(&headers(&["Basic YTpi"])), None);
        assert_eq!(
            credential(&headers(&["Bearer janus_abc"])).as_deref(),
            Some("janus_abc")
        );
        assert_eq!(
            credential(&headers(&["bearer   janus_abc "])).as_deref(),
            Some("janus_abc")
        );
        // Not ours: an authenticating proxy's ID token, an empty bearer.
        assert_eq!(credential(&headers(&["Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"])), None);
        assert_eq!(credential(&headers(&["Bearer abc"])), None);
        assert_eq!(credential(&headers(&["Bearer"])), None);
        assert_eq!(
            credential(&headers(&["Bearer eyJ", "Bearer janus_b"])).as_deref(),
            Some("janus_b")
        );
        assert_eq!(
            credential(&headers(&["Bearer janus_a", "Bearer janus_b"])).as_deref(),
            Some("")
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer janus_\xff").unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(credential(&h).as_deref(), Some(""));
    }

    #[test]
    fn paths() {
        assert!(allowed_path("/api/v1/requests") && allowed_path("/ws/terminal/r1"));
        assert!(
            !allowed_path("/") && !allowed_path("/requests") && !allowed_path("/api/v1x") && !allowed_path("/apiv1/")
        );
    }

    #[test]
    fn scope_messages() {
        let read = [TokenScope::Read];
        assert!(check_scope(&Method::GET, "/api/v1/requests", &read).is_ok());
        match check_scope(&Method::POST, "/api/v1/requests/r/approve", &read) {
            Err(BearerError::Forbidden(m)) => assert_eq!(m, "this token lacks the `approve` scope"),
            other => panic!("{other:?}"),
        }
        match check_scope(&Method::POST, "/api/v1/tokens", &TokenScope::ALL) {
            Err(BearerError::Forbidden(m)) => assert_eq!(m, "API tokens cannot manage API tokens; use the web UI"),
            other => panic!("{other:?}"),
        }
    }
}
