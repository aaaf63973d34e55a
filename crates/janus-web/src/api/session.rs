//! `/api/v1/login`, `/api/v1/logout`, `/api/v1/session`: sessions for API clients and scripts.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use crate::auth::{Authenticated, Identity, Optional, local, session};
use crate::error::WebError;
use crate::extract::Json;
use crate::state::AppState;

/// Login body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    /// Login name.
    username: String,
    /// Password.
    password: String,
}

/// Who is logged in, and the CSRF token state changes must carry.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The identity.
    pub identity: Identity,
    /// The value for `X-CSRF-Token`.
    pub csrf_token: String,
}

impl SessionInfo {
    fn of(id: Identity) -> Self {
        let csrf_token = id.csrf.clone();
        Self {
            identity: id,
            csrf_token,
        }
    }
}

/// The answer to a logout.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggedOut {
    /// Always true.
    pub logged_out: bool,
}

/// `POST /api/v1/login`: starts a session; the answer carries the CSRF token for later state changes.
#[utoipa::path(post, path = "/api/v1/login", tag = "session", summary = "Log in with a local account (authMode local)", security(()), request_body = LoginInput,
    description = "422 \"wrong username or password\" answers a wrong password and, identically, an unknown, \
        disabled or locked account. 429: the client address used up its failed-login budget \
        (loginMaxFailuresPerAddress).",
    responses(
        (status = 200, description = "Logged in; sets the session cookie", body = SessionInfo),
        (status = 403, description = "Cross-site Origin", body = ErrorBody),
        (status = 404, description = "Local login is disabled (authMode is not local)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Malformed body, or wrong username or password", body = ErrorBody),
        (status = 429, description = "Too many failed logins from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<LoginInput>, WebError>,
) -> Result<Response, WebError> {
    let client = local::login_client(&state, peer.ip(), &headers)?;
    let Json(input) = body?;
    let (id, cookie) = local::login(&state, &input.username, &input.password, client).await?;
    let mut r = Json(SessionInfo::of(id)).into_response();
    if let Ok(v) = cookie.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// `POST /api/v1/logout`.
#[utoipa::path(post, path = "/api/v1/logout", tag = "session", summary = "End the session", security((), ("session" = [], "csrf" = [])),
    responses(
        (status = 200, description = "Logged out (also without a session); clears the cookie", body = LoggedOut),
        (status = 403, description = "CSRF token missing or wrong, or cross-site Origin", body = ErrorBody),
    ))]
pub async fn logout(State(state): State<AppState>, Optional(id): Optional) -> Response {
    if let Some(id) = id {
        crate::pages::login::end_session(&state, &id).await;
    }
    let mut r = Json(LoggedOut { logged_out: true }).into_response();
    if let Ok(v) = session::set_cookie(&state, session::COOKIE, "", 0).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /api/v1/session`: who am I, and the CSRF token.
#[utoipa::path(get, path = "/api/v1/session", tag = "session", summary = "Who am I, and the CSRF token",
    responses(
        (status = 200, description = "The identity", body = SessionInfo),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
pub async fn whoami(Authenticated(id): Authenticated) -> Json<SessionInfo> {
    Json(SessionInfo::of(id))
}
