//! Login and logout pages (local accounts; OIDC and proxy modes redirect elsewhere).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use janus_api::config::AuthMode;
use maud::html;
use serde::Deserialize;

use crate::auth::{self, Optional, local, session};
use crate::pages::{FormData, Nav, PageError, page};
use crate::state::AppState;

/// `?next=` of the login page.
#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_form(state: &AppState, headers: &HeaderMap, next: &str, username: &str, error: Option<&str>) -> Response {
    let main = html! {
        div.login.panel {
            h1 { "Log in to k8s-janus" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label for="username" { "Username" }
                input #username type="text" name="username" value=(username) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                p { button type="submit" { "Log in" } }
            }
        }
    };
    let mut p = page(state, None, "Log in", Nav::None, false, headers, main);
    if error.is_some() {
        p.status = StatusCode::UNAUTHORIZED;
    }
    p.into_response()
}

/// `GET /login`.
pub async fn show(
    State(state): State<AppState>,
    Optional(id): Optional,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = auth::safe_next(q.next.as_deref());
    if id.is_some() {
        return Redirect::to(&next).into_response();
    }
    match state.config.web.auth_mode {
        AuthMode::Oidc => Redirect::to(&format!("/oidc/login?next={}", auth::percent_encode(&next))).into_response(),
        AuthMode::Proxy => (
            StatusCode::UNAUTHORIZED,
            "Log in through the authenticating proxy in front of k8s-janus.",
        )
            .into_response(),
        AuthMode::Local => login_form(&state, &headers, &next, "", None),
    }
}

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    form: FormData,
) -> Result<Response, PageError> {
    if state.config.web.auth_mode != AuthMode::Local {
        return Err(PageError(crate::error::WebError::NotFound(
            "local login is disabled".into(),
        )));
    }
    let next = auth::safe_next(form.get("next"));
    let username = form.get("username").unwrap_or_default();
    let password = form.get("password").unwrap_or_default();
    let client = auth::client_ip::of_request(&state, peer.ip(), &headers);
    match local::login(&state, username, password, client).await {
        Ok((_, cookie)) => {
            let mut r = Redirect::to(&next).into_response();
            if let Ok(v) = cookie.parse() {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        Err(e @ (crate::error::WebError::Invalid { .. } | crate::error::WebError::TooMany(_))) => {
            let mut r = login_form(&state, &headers, &next, username, Some(&e.to_string()));
            if matches!(e, crate::error::WebError::TooMany(_)) {
                *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            }
            Ok(r)
        }
        Err(e) => Err(PageError(e)),
    }
}

/// Ends the current session (`POST /logout` and `POST /api/v1/logout`).
pub async fn end_session(state: &AppState, id: &auth::Identity) {
    if let Some(h) = &id.session {
        state.recent_sessions.forget(h);
        // This replica's terminals and log streams at once; the others see the session gone within 0.5 s.
        state.terminals.close_login(h, &crate::terminal::EndReason::logout());
        if let Err(e) = state.store.delete_session(h).await {
            tracing::warn!(error = %e, "session could not be deleted");
        }
        tracing::info!(actor = %id.email, "logged out");
    }
}

/// `POST /logout`.
pub async fn logout(State(state): State<AppState>, Optional(id): Optional) -> Response {
    if let Some(id) = id {
        end_session(&state, &id).await;
    }
    // With OIDC the login page would sign straight back in while the provider's session lasts.
    let target = match state.config.web.auth_mode {
        AuthMode::Oidc => "/oidc/logged-out",
        _ => "/login",
    };
    let mut r = Redirect::to(target).into_response();
    if let Ok(v) = session::set_cookie(&state, session::COOKIE, "", 0).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
