//! A stand-in for oauth2-proxy in its documented reverse-proxy mode (`--reverse-proxy
//! --pass-user-headers`, `--skip-auth-strip-headers` left at its default `true`), as the chart runs it
//! in front of the web UI: it authenticates the caller, deletes every client-sent copy of the headers it
//! injects (`X-Forwarded-User`, `-Email`, `-Groups`, `-Preferred-Username`), injects its own for the
//! signed-in user (a header only when the claim has a value), passes every other header through
//! untouched (`X-Auth-Request-*` included: oauth2-proxy sets those only on responses), and connects to
//! the upstream from 127.0.0.1. Listens on loopback only.
//!
//! Who is signed in is chosen by a test-only request header, [`LOGIN`], which the stand-in consumes the
//! way oauth2-proxy consumes its session cookie. Without it the stand-in answers 401 itself, as
//! oauth2-proxy does for an unauthenticated API call: nothing unauthenticated reaches the upstream.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The test-only "session" header naming the signed-in user.
pub const LOGIN: &str = "x-test-proxy-login";

/// What oauth2-proxy injects with `--pass-user-headers` and strips from clients beforehand.
pub const INJECTED: [&str; 4] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
];

/// A person the identity provider knows.
#[derive(Clone, Debug)]
pub struct User {
    pub email: &'static str,
    pub user: &'static str,
    pub groups: &'static [&'static str],
    pub preferred_username: Option<&'static str>,
}

struct Inner {
    upstream: String,
    users: HashMap<&'static str, User>,
    client: reqwest::Client,
}

/// The running stand-in.
pub struct StandIn {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the stand-in in front of `upstream` (`http://127.0.0.1:PORT`) with the users by login name.
pub async fn start(upstream: &str, users: &[(&'static str, User)]) -> StandIn {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind stand-in");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let inner = Arc::new(Inner {
        upstream: upstream.trim_end_matches('/').to_string(),
        users: users.iter().cloned().collect(),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("upstream client"),
    });
    let app = Router::new().fallback(forward).with_state(inner);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    StandIn { url, task }
}

async fn forward(State(s): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let user = parts
        .headers
        .get(LOGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| s.users.get(l))
        .cloned();
    let Some(user) = user else {
        return (StatusCode::UNAUTHORIZED, "stand-in oauth2-proxy: sign in first").into_response();
    };
    let mut headers = parts.headers.clone();
    headers.remove(LOGIN);
    // HeaderMap::remove drops every value of the name, as Go's Header.Del does.
    for h in INJECTED {
        headers.remove(h);
    }
    // Hop-by-hop and framing headers belong to each connection, not to the request.
    for h in [
        "host",
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(h);
    }
    let mut inject = |name: &'static str, value: &str| {
        if !value.is_empty() {
            headers.insert(name, HeaderValue::from_str(value).expect("claim value"));
        }
    };
    inject("x-forwarded-user", user.user);
    inject("x-forwarded-email", user.email);
    inject("x-forwarded-groups", &user.groups.join(","));
    inject("x-forwarded-preferred-username", user.preferred_username.unwrap_or(""));
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let sent = s
        .client
        .request(parts.method, format!("{}{path}", s.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let r = match sent {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("stand-in oauth2-proxy: {e}")).into_response(),
    };
    let status = r.status();
    let mut out_headers = r.headers().clone();
    for h in ["connection", "keep-alive", "content-length", "transfer-encoding"] {
        out_headers.remove(h);
    }
    let bytes = r.bytes().await.unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = out_headers;
    resp
}
