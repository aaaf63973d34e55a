//! Server-side login sessions: a random id in an HttpOnly cookie, only its SHA-256 stored.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use janus_store::WebSession;
use sha2::{Digest, Sha256};

use crate::auth::{AuthSource, Identity};
use crate::error::WebError;
use crate::state::AppState;

/// Name of the session cookie.
pub const COOKIE: &str = "janus_session";

/// How long a session read from the database may stand in for it while the database cannot answer.
const OUTAGE_GRACE: std::time::Duration = std::time::Duration::from_secs(300);
/// Sessions remembered per replica; beyond this the memory starts afresh.
const REMEMBERED: usize = 10_000;

/// Sessions this replica read from the database recently, so people already signed in keep working
/// while the database is unreachable (DESIGN: serve what does not need the database).
///
/// Consulted only when the database fails to answer, never when it says a session does not exist; a
/// remembered session is used for at most [`OUTAGE_GRACE`] after it was last read and never past its
/// own expiry. Logging out here forgets it at once; a logout or user change on another replica during
/// an outage can only be seen once the database answers again, within that grace.
#[derive(Default)]
pub struct RecentSessions(std::sync::Mutex<std::collections::HashMap<String, (WebSession, std::time::Instant)>>);

impl RecentSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (WebSession, std::time::Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a session as the database just returned it.
    pub fn remember(&self, hash: &str, s: &WebSession) {
        let mut m = self.lock();
        if m.len() >= REMEMBERED && !m.contains_key(hash) {
            m.clear();
        }
        m.insert(hash.to_string(), (s.clone(), std::time::Instant::now()));
    }

    /// Forgets a session (logged out, expired, or no longer in the database).
    pub fn forget(&self, hash: &str) {
        self.lock().remove(hash);
    }

    /// Forgets every session of a person (user changed or deleted).
    pub fn forget_subject(&self, email: &str) {
        self.lock().retain(|_, (s, _)| !s.subject.eq_ignore_ascii_case(email));
    }

    /// The remembered session, if it may stand in for the database now.
    pub fn recall(&self, hash: &str) -> Option<WebSession> {
        let m = self.lock();
        let (s, read_at) = m.get(hash)?;
        (read_at.elapsed() < OUTAGE_GRACE && s.expires_at > Utc::now()).then(|| s.clone())
    }
}

/// A fresh random token (256 bits, URL-safe base64).
pub fn random_token() -> String {
    let b: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The stored form of a session id.
pub fn hash_id(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 of `msg` under the session key, URL-safe base64.
#[allow(
    clippy::expect_used,
    reason = "HMAC accepts keys of any length (RFC 2104 hashes long ones), so new_from_slice cannot fail"
)]
pub fn sign(key: &[u8], msg: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A cookie's value from the request headers (at most 256 bytes: a session id is 43).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie_value_at_most(headers, name, 256)
}

/// A cookie's value from the request's `Cookie` headers, parsed by the `cookie` crate (the first of that
/// name wins); an empty one, or one longer than `max` bytes, counts as missing.
pub fn cookie_value_at_most(headers: &HeaderMap, name: &str, max: usize) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty() && v.len() <= max)
}

/// Whether cookies carry `Secure`: always, except when the UI is plain http on loopback (the demo, a
/// local run): `web.baseUrl` `http://127.0.0.1…`, `http://localhost…`, `http://[::1]…`, or no
/// `web.baseUrl` and a loopback `listen` address. A plain-http public URL elsewhere still gets `Secure`:
/// a session cookie must never travel in clear over a network.
pub fn secure_cookies(base_url: &str, listen: std::net::SocketAddr) -> bool {
    let base = base_url.trim();
    if base.is_empty() {
        return !listen.ip().is_loopback();
    }
    let Some(rest) = base.strip_prefix("http://") else {
        // https, or something unparseable: the safe answer.
        return true;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let host = host.to_ascii_lowercase();
    let loopback = host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// Whether responses carry `Strict-Transport-Security`: when the public URL is https.
pub fn hsts(base_url: &str) -> bool {
    base_url.trim().to_ascii_lowercase().starts_with("https://")
}

/// A `Set-Cookie` value: HttpOnly, `SameSite=Lax` (the OIDC callback is a top-level cross-site
/// navigation), `Secure` as decided by [`secure_cookies`]; an empty `value` with `max_age` 0 clears it.
pub fn build_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> String {
    cookie::Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age.max(0)))
        .build()
        .to_string()
}

/// `Set-Cookie` for a session id (or for clearing it when `value` is empty).
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> String {
    build_cookie(name, value, "/", max_age, state.secure_cookies)
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
    let groups = super::idp_groups(groups);
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
    state.recent_sessions.remember(&s.id_hash, &s);
    let identity = Identity {
        email: email.to_string(),
        name: name.to_string(),
        is_admin: local_admin || state.admin_by_config(email, &groups),
        groups,
        auth,
        csrf,
        session: Some(s.id_hash),
        token: None,
    };
    Ok((identity, set_cookie(state, COOKIE, &id, ttl)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1;janus_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie_value(&h, "janus"), None);
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "x=y".parse().unwrap());
        h.append(header::COOKIE, "janus_session = s1 ; janus_session=s2".parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE).as_deref(), Some("s1"));
        // Empty, oversized and unparseable ones count as missing; nothing panics.
        for bad in ["janus_session=", "=x; ;;", "janus_session", "\"\"=\""] {
            let mut h = HeaderMap::new();
            h.append(header::COOKIE, bad.parse().unwrap());
            assert_eq!(cookie_value(&h, COOKIE), None, "{bad}");
        }
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            format!("janus_session={}", "a".repeat(257)).parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE), None);
        assert_eq!(cookie_value_at_most(&h, COOKIE, 4096).map(|v| v.len()), Some(257));
    }

    #[test]
    fn remembered_sessions_stand_in_only_while_valid() {
        let now = Utc::now();
        let s = |expires: chrono::DateTime<Utc>| WebSession {
            id_hash: "h".into(),
            subject: "a@x.io".into(),
            display_name: "A".into(),
            is_admin: false,
            groups: vec![],
            auth: "local".into(),
            csrf_token: "c".into(),
            created_at: now,
            last_seen: now,
            expires_at: expires,
        };
        let r = RecentSessions::default();
        assert!(r.recall("h").is_none());
        r.remember("h", &s(now + chrono::Duration::hours(1)));
        assert_eq!(r.recall("h").map(|s| s.subject), Some("a@x.io".into()));
        r.forget("h");
        assert!(r.recall("h").is_none(), "forgotten on logout");
        r.remember("h", &s(now - chrono::Duration::seconds(1)));
        assert!(r.recall("h").is_none(), "never past its own expiry");
    }

    #[test]
    fn secure_unless_plain_http_on_loopback() {
        let lo: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        for base in [
            "http://127.0.0.1:8080",
            "http://127.0.0.2/",
            "http://localhost:3000/janus",
            "http://LOCALHOST",
            "http://[::1]:8080",
            "http://app.localhost",
        ] {
            assert!(!secure_cookies(base, any), "{base} is loopback");
            assert!(!hsts(base), "{base}");
        }
        for base in [
            "https://janus.example.com",
            "https://127.0.0.1",
            "http://janus.example.com",
            "http://10.0.0.5:8080",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "http://127.0.0.1@janus.example.com",
            "ftp://x",
        ] {
            assert!(secure_cookies(base, lo), "{base} is not plain http on loopback");
        }
        assert!(hsts("https://janus.example.com"));
        assert!(hsts(" HTTPS://janus.example.com "));
        assert!(!secure_cookies("", lo), "no baseUrl, loopback listener: the demo");
        assert!(!secure_cookies("", "[::1]:80".parse().unwrap()));
        assert!(secure_cookies("", any), "no baseUrl, reachable from the network");
    }

    #[test]
    fn cookies_carry_their_attributes() {
        let c = build_cookie(COOKIE, "abc", "/", 60, true);
        let parsed = cookie::Cookie::parse(c.clone()).unwrap();
        assert_eq!((parsed.name(), parsed.value()), (COOKIE, "abc"));
        assert_eq!(parsed.path(), Some("/"));
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.same_site(), Some(cookie::SameSite::Lax));
        assert_eq!(parsed.max_age(), Some(cookie::time::Duration::seconds(60)));
        assert!(c.starts_with("janus_session=abc;"), "{c}");
        let cleared = cookie::Cookie::parse(build_cookie(COOKIE, "", "/", 0, false)).unwrap();
        assert_eq!(cleared.value(), "");
        assert_eq!(cleared.secure(), None);
        assert_eq!(cleared.max_age(), Some(cookie::time::Duration::ZERO));
    }

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
