//! The bearer-only listener (`web.bearerListen`, `janus web --bearer-listen`): the JSON API and the
//! terminal socket for tools, beside an authenticating proxy that would refuse them on the main address.
//!
//! Its routes are the main address's `/api/v1/…` and `/ws/…` routes, behind [`authenticate`] instead of
//! the main middleware: the only credential is `Authorization: Bearer janus_…` (checked by
//! [`crate::auth::bearer::authenticate`], scopes included). Cookies and every proxy identity header are
//! removed before anything looks at them, whatever the peer: on this address no one speaks for the
//! caller, so a peer in `web.trustedProxies` (the sidecar on 127.0.0.1, a `kubectl port-forward`) gains
//! nothing. Everything else (pages, assets, health, `/metrics`) is 404 here.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{MaybeIdentity, bearer, peer_ip};
use crate::error::WebError;
use crate::state::AppState;

/// Headers the bearer check may see: the credential and the client address chain (which
/// [`crate::auth::client_ip`] trusts only from `web.trustedProxies`, for the token's last-used address).
/// Identity headers and cookies are not among them, so no proxy identity can be asserted or conflict.
const KEPT_FOR_AUTH: [&str; 2] = ["authorization", "x-forwarded-for"];

/// Whether a path is served on the bearer-only listener at all.
pub fn served(path: &str) -> bool {
    bearer::allowed_path(path)
}

/// Middleware of the bearer-only listener: a `janus_…` bearer credential or 401; cookies dropped.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    // Handlers never see a cookie from this address: a browser's session must not ride along.
    parts.headers.remove(header::COOKIE);
    let Some(credential) = bearer::credential(&parts.headers) else {
        return WebError::Unauthenticated.into_response();
    };
    let mut for_auth = HeaderMap::new();
    for name in KEPT_FOR_AUTH {
        for v in parts.headers.get_all(name) {
            for_auth.append(name, v.clone());
        }
    }
    let peer = peer_ip(&parts.extensions);
    let path = parts.uri.path().to_string();
    match bearer::authenticate(&state, &parts.method, &path, &for_auth, peer, &credential).await {
        Ok(id) => {
            parts.extensions.insert(MaybeIdentity(Some(id)));
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

/// Everything the bearer-only listener does not serve.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": "not_found",
            "code": "not_found",
            "message": "this address serves only /api/v1 and /ws with an API token",
        })),
    )
        .into_response()
}
