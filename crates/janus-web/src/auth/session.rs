//! Server-side login sessions: a random id in an HttpOnly cookie, only its SHA-256 stored.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, Mac};
use janus_store::WebSession;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::auth::{AuthSource, Identity};
use crate::error::WebError;
use crate::state::AppState;

/// Name of the session cookie.
pub const COOKIE: &str = "janus_session";

/// A fresh random token (256 bits, URL-safe base64).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The stored form of a session id.
pub fn hash_id(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 of `msg` under the session key, URL-safe base64.
pub fn sign(key: &[u8], msg: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(msg.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A cookie's value from the request headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

/// `Set-Cookie` for a session id (or for clearing it when `value` is empty).
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> String {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// Creates a session for a person and returns the identity and the `Set-Cookie` value.
pub async fn start(
    state: &AppState,
    email: &str,
    name: &str,
    local_admin: bool,
    groups: Vec<String>,
    auth: AuthSource,
) -> Result<(Identity, String), WebError> {
    let id = random_token();
    let now = Utc::now();
    let ttl = state.config.web.session_ttl_seconds.max(60);
    let csrf = random_token();
    let s = WebSession {
        id_hash: hash_id(&id),
        subject: email.to_string(),
        display_name: name.to_string(),
        is_admin: local_admin,
        groups: groups.clone(),
        auth: auth.as_str().into(),
        csrf_token: csrf.clone(),
        created_at: now,
        last_seen: now,
        expires_at: now + chrono::Duration::seconds(ttl),
    };
    state.store.create_session(&s).await?;
    let identity = Identity {
        email: email.to_string(),
        name: name.to_string(),
        is_admin: local_admin || state.admin_by_config(email, &groups),
        groups,
        auth,
        csrf,
        session: Some(s.id_hash),
    };
    Ok((identity, set_cookie(state, COOKIE, &id, ttl)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_parse() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; janus_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, "c"), None);
        assert_eq!(hash_id("x").len(), 64);
        assert_ne!(random_token(), random_token());
        assert_eq!(sign(b"k", "m"), sign(b"k", "m"));
        assert_ne!(sign(b"k", "m"), sign(b"k2", "m"));
    }
}
