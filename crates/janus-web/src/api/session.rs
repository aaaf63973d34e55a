//! `/api/v1/login`, `/api/v1/logout`, `/api/v1/session`: sessions for API clients and scripts.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use janus_api::config::AuthMode;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Authenticated, Optional, client_ip, local, session};
use crate::error::WebError;
use crate::state::AppState;

/// Login body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    username: String,
    password: String,
}

/// `POST /api/v1/login`: starts a session; the answer carries the CSRF token for later state changes.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<LoginInput>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, WebError> {
    if state.config.web.auth_mode != AuthMode::Local {
        return Err(WebError::NotFound("local login is disabled".into()));
    }
    let Json(input) = body.map_err(WebError::from)?;
    let client = client_ip::of_request(&state, peer.ip(), &headers);
    let (id, cookie) = local::login(&state, &input.username, &input.password, client).await?;
    let mut r = Json(json!({"identity": id, "csrfToken": id.csrf})).into_response();
    if let Ok(v) = cookie.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// `POST /api/v1/logout`.
pub async fn logout(State(state): State<AppState>, Optional(id): Optional) -> Response {
    if let Some(id) = id {
        crate::pages::login::end_session(&state, &id).await;
    }
    let mut r = Json(json!({"loggedOut": true})).into_response();
    if let Ok(v) = session::set_cookie(&state, session::COOKIE, "", 0).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /api/v1/session`: who am I, and the CSRF token.
pub async fn whoami(Authenticated(id): Authenticated) -> Json<serde_json::Value> {
    Json(json!({"identity": id, "csrfToken": id.csrf}))
}
