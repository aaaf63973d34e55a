//! Who is calling: identity from a server-side session or trusted proxy headers, CSRF and Origin checks.

pub mod bearer;
pub mod cli_session;
pub mod client_ip;
pub mod local;
pub mod oidc;
pub mod proxy;
pub mod ratelimit;
pub mod session;

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use janus_api::config::AuthMode;
use serde::Serialize;

use crate::error::WebError;
use crate::state::AppState;

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthSource {
    /// A local account (username and password).
    Local,
    /// Headers from a trusted authenticating proxy.
    Proxy,
    /// Native OpenID Connect.
    Oidc,
}

impl AuthSource {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Proxy => "proxy",
            Self::Oidc => "oidc",
        }
    }
}

/// An authenticated person.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Lowercased email; what AccessRequests record as requester and decision maker.
    pub email: String,
    /// Name to show.
    pub name: String,
    /// Whether this person may decide on requests.
    pub is_admin: bool,
    /// Identity-provider groups.
    pub groups: Vec<String>,
    /// How the identity was established.
    pub auth: AuthSource,
    /// The CSRF token every state change must carry.
    #[serde(skip)]
    pub csrf: String,
    /// SHA-256 of the session id, when there is a session; for a bearer credential (a CLI session or a
    /// personal API token) the hash of that credential, so that terminal streams opened with it end
    /// when it is revoked or expires.
    #[serde(skip)]
    pub session: Option<String>,
    /// The bearer credential this request was made with, if any (`None` for cookies and proxy headers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenInfo>,
}

/// A bearer credential as far as authorization needs it (never the credential itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// `janus_pat_` or `janus_cli_` and the first 8 secret characters ([`janus_api::tokens::display_id`]).
    pub display_id: String,
    /// What the credential may do: every scope for a CLI session.
    pub scopes: Vec<janus_api::tokens::TokenScope>,
    /// Whether it is a personal API token (`false`: a CLI session).
    pub personal: bool,
}

/// The groups of an identity as an identity provider (OIDC claim, proxy header) asserts them, minus every
/// group in the `k8s-janus:` namespace: those are the web's own judgements (e.g.
/// [`janus_api::policy::JANUS_ADMINS_GROUP`], recorded with an admin's approval), which the controller
/// trusts; a provider must not be able to claim them.
pub fn idp_groups(groups: Vec<String>) -> Vec<String> {
    groups
        .into_iter()
        .filter(|g| !g.starts_with(JANUS_GROUP_PREFIX))
        .collect()
}

/// The prefix of the groups only the web itself asserts ([`idp_groups`]).
pub const JANUS_GROUP_PREFIX: &str = "k8s-janus:";

/// The identity of the current request, if any (set by [`authenticate`]).
#[derive(Debug, Clone)]
pub struct MaybeIdentity(pub Option<Identity>);

/// The peer address, when the server was started with connect info.
pub fn peer_ip(parts_ext: &axum::http::Extensions) -> Option<IpAddr> {
    parts_ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Resolves the caller's identity.
pub async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<Identity>, WebError> {
    if state.config.web.auth_mode == AuthMode::Proxy {
        // Proxy mode has exactly one identity source: the configured headers from a trusted peer.
        return match proxy::identity(state, headers, peer) {
            Ok(id) => Ok(id),
            Err(conflict) => {
                proxy::audit_conflict(state, &conflict, peer).await;
                Err(WebError::IdentityConflict)
            }
        };
    }
    let Some(sid) = session::cookie_value(headers, session::COOKIE) else {
        return Ok(None);
    };
    // A bearer credential is no cookie: a CLI session (or a token) pasted into the cookie would skip
    // the bearer rules (paths, scopes) and pass the CSRF check with a token its holder can read.
    if janus_api::tokens::bearer_kind(&sid).is_some() || sid.starts_with(bearer::JANUS_PREFIX) {
        return Ok(None);
    }
    session_identity(state, session::hash_id(&sid)).await
}

/// The identity of a login session (`web_sessions` row) by id hash: a browser's (the hash of its
/// cookie id) or a CLI session's (the hash of its `janus_cli_` credential). Expired sessions are
/// deleted and yield `None`; the last-seen time is written at most once a minute.
pub(crate) async fn session_identity(state: &AppState, hash: String) -> Result<Option<Identity>, WebError> {
    let s = match state.store.get_session(&hash).await {
        Ok(Some(s)) => {
            state.recent_sessions.remember(&hash, &s);
            s
        }
        Ok(None) => {
            state.recent_sessions.forget(&hash);
            return Ok(None);
        }
        // The database cannot answer: someone signed in a moment ago stays signed in.
        Err(e) => match state.recent_sessions.recall(&hash) {
            Some(s) => s,
            None => return Err(e.into()),
        },
    };
    let now = Utc::now();
    if s.expires_at <= now {
        state.recent_sessions.forget(&hash);
        let _ = state.store.delete_session(&hash).await;
        return Ok(None);
    }
    if now - s.last_seen > chrono::Duration::seconds(60) {
        let _ = state.store.touch_session(&hash, now).await;
    }
    let auth = match s.auth.as_str() {
        "oidc" => AuthSource::Oidc,
        _ => AuthSource::Local,
    };
    // Sessions stored before groups were filtered at sign-in are filtered here too.
    let groups = idp_groups(s.groups);
    let is_admin = s.is_admin || state.admin_by_config(&s.subject, &groups);
    Ok(Some(Identity {
        email: s.subject,
        name: s.display_name,
        is_admin,
        groups,
        auth,
        csrf: s.csrf_token,
        session: Some(hash),
        token: None,
    }))
}

/// Paths that change state without an identity yet (they check Origin instead of a CSRF token).
fn csrf_exempt(path: &str) -> bool {
    matches!(path, "/login" | "/api/v1/login")
}

/// Whether the Origin (or Referer) header, when present, is this site.
pub fn origin_ok(state: &AppState, headers: &HeaderMap) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| origin_of(r).map(str::to_string))
        });
    let Some(origin) = origin else {
        // Non-browser clients send no Origin; they still need the CSRF token or a fresh login.
        return true;
    };
    if origin == "null" {
        return false;
    }
    let expected = expected_origins(state, headers);
    expected.iter().any(|e| e.eq_ignore_ascii_case(&origin))
}

fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let end = rest.find('/').map(|i| scheme_end + i).unwrap_or(url.len());
    Some(&url[..end])
}

fn expected_origins(state: &AppState, headers: &HeaderMap) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(o) = origin_of(&state.config.web.base_url) {
        v.push(o.to_string());
    }
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        v.push(format!("http://{host}"));
        v.push(format!("https://{host}"));
    }
    v
}

/// Compares secrets without leaking their prefix through timing ([`subtle`]'s constant-time equality;
/// only the lengths, which are public, may short-circuit).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

const FORM_LIMIT: usize = 256 * 1024;

/// Middleware: resolves the identity once per request and enforces CSRF + Origin on every state change.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let peer = peer_ip(&parts.extensions);
    if let Some(credential) = bearer::credential(&parts.headers) {
        // A bearer request is not a browser's: no ambient credential rides along, so neither CSRF
        // token nor Origin is asked for. It never falls back to the cookie or the proxy's identity.
        let path = parts.uri.path();
        let id = match bearer::authenticate(&state, &parts.method, path, &parts.headers, peer, &credential).await {
            Ok(id) => id,
            Err(e) => return e.into_response(),
        };
        parts.extensions.insert(MaybeIdentity(Some(id)));
        return next.run(Request::from_parts(parts, body)).await;
    }
    let identity = match resolve(&state, &parts.headers, peer).await {
        Ok(i) => i,
        Err(e @ WebError::IdentityConflict) if !is_api_path(parts.uri.path()) => {
            return crate::pages::PageError(e).into_response();
        }
        Err(e) => return e.into_response(),
    };
    let mut body = body;
    let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        if !origin_ok(&state, &parts.headers) {
            return WebError::Csrf.into_response();
        }
        if let Some(id) = &identity
            && !csrf_exempt(parts.uri.path())
        {
            let header_token = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let token = match header_token {
                Some(t) => Some(t),
                None if is_form(&parts.headers) => {
                    let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
                        Ok(b) => b,
                        Err(_) => {
                            return WebError::invalid("body", "the form is too large").into_response();
                        }
                    };
                    let t = form_field(&bytes, "_csrf");
                    body = Body::from(bytes);
                    t
                }
                None => None,
            };
            match token {
                Some(t) if constant_time_eq(t.as_bytes(), id.csrf.as_bytes()) => {}
                _ => return WebError::Csrf.into_response(),
            }
        }
    }
    parts.extensions.insert(MaybeIdentity(identity));
    next.run(Request::from_parts(parts, body)).await
}

/// Whether a path belongs to the JSON API or the terminal sockets (errors as JSON, not pages).
fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/ws/")
}

fn is_form(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded_pairs(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Parses `application/x-www-form-urlencoded` pairs ([`form_urlencoded`], the WHATWG form decoding:
/// `+` is a space, a bad escape such as `%zz` stays as it is, invalid UTF-8 becomes U+FFFD).
pub fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Wants an identity: 401 for the API, a redirect to the login page for pages.
pub struct Authenticated(pub Identity);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<MaybeIdentity>().and_then(|m| m.0.clone()) {
            Some(id) => Ok(Self(id)),
            None if parts.uri.path().starts_with("/api/") || parts.uri.path().starts_with("/ws/") => {
                Err(WebError::Unauthenticated.into_response())
            }
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let target = format!("/login?next={}", percent_encode(&next));
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

/// The identity, if any.
pub struct Optional(pub Option<Identity>);

impl FromRequestParts<AppState> for Optional {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<MaybeIdentity>().and_then(|m| m.0.clone())))
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `next` target that stays on this site: a path starting with one `/`, no scheme, no backslash.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.contains("://")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_redirects_stay_on_site() {
        assert_eq!(safe_next(Some("/requests/a?x=1")), "/requests/a?x=1");
        for bad in [
            "//evil.com",
            "https://evil.com",
            "/\\evil.com",
            "evil",
            "/a\r\nb",
            "/x?u=http://e",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn forms_decode() {
        let p = serde_urlencoded_pairs(b"a=1&_csrf=x%2By&r=hello+world&bad=%zz&t=%&&u=%E2%82%AC&v=%FF");
        assert_eq!(p[1], ("_csrf".into(), "x+y".into()));
        assert_eq!(p[2].1, "hello world");
        assert_eq!(p[3].1, "%zz");
        assert_eq!(p[4].1, "%");
        assert_eq!(p[5].1, "\u{20ac}");
        assert_eq!(p[6].1, "\u{fffd}");
    }

    /// Groups in the web's own `k8s-janus:` namespace never come from an identity provider.
    #[test]
    fn provider_groups_cannot_claim_the_web_s_own() {
        let g = |v: &[&str]| idp_groups(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            g(&["dev", "k8s-janus:admins", "k8s-janus:anything", "ops"]),
            ["dev", "ops"]
        );
        assert_eq!(
            g(&["K8s-Janus:admins"]),
            ["K8s-Janus:admins"],
            "groups are case-sensitive names"
        );
        assert!(g(&[]).is_empty());
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("https://a.example/x/y"), Some("https://a.example"));
        assert_eq!(origin_of("http://h:8080"), Some("http://h:8080"));
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }
}
