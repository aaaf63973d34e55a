//! Native OpenID Connect login: authorization code flow with PKCE (S256), state and nonce in a signed
//! short-lived cookie, ID token verification, `email_verified`, allowed domains and groups from a
//! configurable claim.
//!
//! The OAuth 2.0 device authorization grant (RFC 8628) for `janus login --oidc` uses the same client
//! and the same ID token checks ([`validate`]): [`Oidc::device_start`] and [`Oidc::device_poll`].
//!
//! Discovery happens once at start (three attempts, a second or two apart, then the process refuses to
//! start with the reason). When an ID token's signature does not verify, the provider's keys are fetched
//! again (at most once a minute) so that key rotation needs no restart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use janus_api::config::OidcConfig;
use janus_store::AuditKind;
use maud::html;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AccessTokenHash, AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, LogoutProviderMetadata, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, RequestTokenError,
    Scope, TokenResponse as _, reqwest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::audit;
use crate::auth::{self, AuthSource, Optional, local, session};
use crate::pages::{Nav, page};
use crate::state::AppState;

/// Name of the cookie that carries the login state between `/oidc/login` and `/oidc/callback`.
pub const STATE_COOKIE: &str = "janus_oidc";
/// How long a login may take at the provider.
const STATE_TTL_SECONDS: i64 = 600;
/// Discovery attempts at start.
const DISCOVERY_ATTEMPTS: u32 = 3;
/// Shortest pause between two key refreshes.
const KEY_REFRESH_MIN: Duration = Duration::from_secs(60);

type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The discovery fields beyond OpenID Connect Discovery that are used here: RFC 8628's device
/// authorization endpoint (beside RP-initiated logout's end session endpoint).
#[derive(Clone, Debug, Deserialize, Serialize)]
struct DeviceMetadata {
    device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}

impl AdditionalProviderMetadata for DeviceMetadata {}

/// The provider's discovery document as read here.
type Metadata = ProviderMetadata<
    LogoutProviderMetadata<DeviceMetadata>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What discovery found, turned into a client.
struct Discovered {
    client: Client,
    end_session: Option<String>,
    userinfo: Option<String>,
    scopes: Vec<String>,
    /// RFC 8628 device authorization endpoint, when the provider offers the device flow.
    device: Option<DeviceAuthorizationUrl>,
}

/// A discovered OpenID Provider and this relying party's client there.
pub struct Oidc {
    cfg: OidcConfig,
    issuer: IssuerUrl,
    client_secret: Option<String>,
    redirect: RedirectUrl,
    http: reqwest::Client,
    current: RwLock<Arc<Discovered>>,
    last_refresh: Mutex<Instant>,
}

/// Why a login was refused; `public` is shown to the person, `detail` goes to the audit log.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    public: String,
    detail: String,
    email: Option<String>,
}

impl Refusal {
    fn forbidden(public: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            public: public.into(),
            detail: detail.into(),
            email: None,
        }
    }

    fn provider(public: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            public: public.into(),
            detail: detail.into(),
            email: None,
        }
    }

    fn of(mut self, email: &str) -> Self {
        self.email = Some(email.to_string());
        self
    }
}

/// An error and its sources in one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Oidc {
    /// Discovers the provider at `cfg.issuerUrl`; `base_url` is the public URL of the web UI (the
    /// redirect URI is `<base_url>/oidc/callback`), `client_secret` comes from `JANUS_OIDC_CLIENT_SECRET`
    /// (without it the client is a public one and relies on PKCE alone).
    pub async fn discover(cfg: &OidcConfig, base_url: &str, client_secret: Option<&str>) -> Result<Self, String> {
        let base = base_url.trim().trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!(
                "web.baseUrl must be the public http(s) URL of the web UI for OIDC (got {base_url:?})"
            ));
        }
        if cfg.client_id.trim().is_empty() {
            return Err("web.oidc.clientId is empty".into());
        }
        let redirect = RedirectUrl::new(format!("{base}/oidc/callback"))
            .map_err(|e| format!("web.baseUrl {base_url:?} does not make a valid redirect URI: {e}"))?;
        let issuer = IssuerUrl::new(cfg.issuer_url.trim().to_string())
            .map_err(|e| format!("web.oidc.issuerUrl {:?} is not a URL: {e}", cfg.issuer_url))?;
        let http = reqwest::Client::builder()
            // Following redirects would let a provider response steer requests elsewhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| format!("HTTP client for OIDC: {e}"))?;
        if client_secret.is_none() {
            tracing::warn!("JANUS_OIDC_CLIENT_SECRET is not set: using OIDC as a public client (PKCE only)");
        }
        let secret = client_secret.map(str::to_string);
        let mut last = String::new();
        for attempt in 1..=DISCOVERY_ATTEMPTS {
            match fetch(&http, &issuer, &cfg.client_id, secret.as_deref(), &redirect).await {
                Ok(d) => {
                    tracing::info!(issuer = %issuer.as_str(), redirect = %redirect.as_str(), "OIDC provider discovered");
                    return Ok(Self {
                        cfg: cfg.clone(),
                        issuer,
                        client_secret: secret,
                        redirect,
                        http,
                        current: RwLock::new(Arc::new(d)),
                        last_refresh: Mutex::new(Instant::now()),
                    });
                }
                Err(e) => {
                    tracing::warn!(issuer = %issuer.as_str(), attempt, error = %e, "OIDC discovery failed");
                    last = e;
                }
            }
            if attempt < DISCOVERY_ATTEMPTS {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
        }
        Err(format!(
            "OIDC discovery at {} failed after {DISCOVERY_ATTEMPTS} attempts: {last}",
            issuer.as_str()
        ))
    }

    fn current(&self) -> Arc<Discovered> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Fetches the provider's keys again unless that happened less than a minute ago.
    async fn refresh(&self) -> bool {
        {
            let mut last = match self.last_refresh.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if last.elapsed() < KEY_REFRESH_MIN {
                return false;
            }
            *last = Instant::now();
        }
        match fetch(
            &self.http,
            &self.issuer,
            &self.cfg.client_id,
            self.client_secret.as_deref(),
            &self.redirect,
        )
        .await
        {
            Ok(d) => {
                let mut cur = match self.current.write() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                *cur = Arc::new(d);
                tracing::info!("OIDC provider keys refreshed");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "OIDC key refresh failed");
                false
            }
        }
    }

    /// The provider's logout URL (RP-initiated logout), when it has one.
    pub fn end_session_url(&self) -> Option<String> {
        let end = self.current().end_session.clone()?;
        let mut url = openidconnect::url::Url::parse(&end).ok()?;
        url.query_pairs_mut().append_pair("client_id", &self.cfg.client_id);
        Some(url.to_string())
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The scopes a login asks for besides `openid` (which the client adds itself).
    fn scopes(&self, d: &Discovered) -> Vec<Scope> {
        let mut v = vec![Scope::new("email".into()), Scope::new("profile".into())];
        // Only ask for a groups scope the provider announces: some providers refuse unknown scopes.
        for extra in ["groups", self.cfg.groups_claim.as_str()] {
            if !matches!(extra, "email" | "profile" | "openid")
                && d.scopes.iter().any(|s| s == extra)
                && !v.iter().any(|s| s.as_str() == extra)
            {
                v.push(Scope::new(extra.to_string()));
            }
        }
        v
    }
}

/// Fetches the discovery document and the keys, and makes the client.
async fn fetch(
    http: &reqwest::Client,
    issuer: &IssuerUrl,
    client_id: &str,
    client_secret: Option<&str>,
    redirect: &RedirectUrl,
) -> Result<Discovered, String> {
    let meta = Metadata::discover_async(issuer.clone(), http)
        .await
        .map_err(|e| chain(&e))?;
    let device = meta
        .additional_metadata()
        .additional_metadata
        .device_authorization_endpoint
        .clone();
    let end_session = meta
        .additional_metadata()
        .end_session_endpoint
        .as_ref()
        .map(|u| u.url().to_string());
    let userinfo = meta.userinfo_endpoint().map(|u| u.url().to_string());
    let scopes = meta
        .scopes_supported()
        .map(|s| s.iter().map(|s| s.as_str().to_string()).collect())
        .unwrap_or_default();
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(client_id.to_string()),
        client_secret.map(|s| ClientSecret::new(s.to_string())),
    )
    .set_redirect_uri(redirect.clone());
    Ok(Discovered {
        client,
        end_session,
        userinfo,
        scopes,
        device,
    })
}

/// What the state cookie carries (authenticated with the session key, never trusted otherwise).
#[derive(Serialize, Deserialize)]
struct LoginState {
    /// OAuth `state`.
    s: String,
    /// ID token nonce.
    n: String,
    /// PKCE verifier.
    v: String,
    /// Where to go afterwards (already passed through `safe_next`).
    x: String,
    /// Expiry, unix seconds.
    e: i64,
}

/// Domain separation: the state cookie's key is derived from the session key under this label, so a MAC
/// made for anything else under the session key (e.g. proxy-mode CSRF tokens) never passes for a state.
const COOKIE_CONTEXT: &str = "janus-oidc-state-v1";

/// The signing key of the state cookie: HKDF ([`cookie::Key::derive_from`]) over
/// HMAC-SHA256(session key, [`COOKIE_CONTEXT`]), the 43 bytes of its base64 being at least the 32 that
/// `derive_from` requires whatever the session key's length.
fn cookie_key(session_key: &[u8]) -> cookie::Key {
    cookie::Key::derive_from(session::sign(session_key, COOKIE_CONTEXT).as_bytes())
}

/// The state cookie's value: the JSON of `st` in URL-safe base64 (cookie-safe characters), signed by the
/// `cookie` crate's signed jar (HMAC-SHA256 of the value, prepended in base64).
#[allow(
    clippy::expect_used,
    reason = "LoginState holds only strings and integers, whose JSON serialisation cannot fail"
)]
fn seal(key: &[u8], st: &LoginState) -> String {
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(st).expect("strings and integers serialize"));
    let mut jar = cookie::CookieJar::new();
    jar.signed_mut(&cookie_key(key))
        .add(cookie::Cookie::new(STATE_COOKIE, body));
    jar.get(STATE_COOKIE).map(|c| c.value().to_string()).unwrap_or_default()
}

/// Checks the signature of a state cookie's value, then its expiry (which is inside the signed value, so
/// a replayed or kept cookie cannot outlive it whatever its `Max-Age` said).
fn open(key: &[u8], value: &str, now: i64) -> Result<LoginState, &'static str> {
    let mut jar = cookie::CookieJar::new();
    jar.add_original(cookie::Cookie::new(STATE_COOKIE, value.to_string()));
    let verified = jar
        .signed(&cookie_key(key))
        .get(STATE_COOKIE)
        .ok_or("login state cookie failed authentication")?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(verified.value())
        .map_err(|_| "malformed login state")?;
    let st: LoginState = serde_json::from_slice(&raw).map_err(|_| "malformed login state")?;
    if st.e <= now {
        return Err("login state expired");
    }
    Ok(st)
}

fn state_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    session::build_cookie(STATE_COOKIE, value, "/oidc", max_age, state.secure_cookies)
}

/// The state cookie from the request's `Cookie` headers; an empty or implausibly long one counts as missing.
fn read_state_cookie(headers: &HeaderMap) -> Option<String> {
    session::cookie_value_at_most(headers, STATE_COOKIE, 4096)
}

/// `?next=` of `/oidc/login`.
#[derive(Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

fn not_configured(state: &AppState, headers: &HeaderMap) -> Response {
    let main = html! {
        div.panel {
            h1 { "OIDC login is not configured" }
            p { "This k8s-janus does not use OpenID Connect (web.authMode is not oidc)." }
            p { a href="/login" { "Log in" } }
        }
    };
    let mut p = page(state, None, "Not configured", Nav::None, false, headers, main);
    p.status = StatusCode::NOT_FOUND;
    p.into_response()
}

/// `GET /oidc/login?next=`: sends the browser to the provider.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Optional(id): Optional,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(oidc) = state.oidc.as_ref() else {
        return not_configured(&state, &headers);
    };
    let next = auth::safe_next(q.next.as_deref());
    if id.is_some() {
        return Redirect::to(&next).into_response();
    }
    let d = oidc.current();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = d
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scopes(oidc.scopes(&d))
        .set_pkce_challenge(challenge)
        .url();
    let st = LoginState {
        s: csrf.secret().clone(),
        n: nonce.secret().clone(),
        v: verifier.secret().clone(),
        x: next,
        e: chrono::Utc::now().timestamp() + STATE_TTL_SECONDS,
    };
    let cookie = state_cookie(&state, &seal(&state.session_key, &st), STATE_TTL_SECONDS);
    let mut r = Redirect::to(url.as_str()).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// What the provider sends back to `/oidc/callback`.
#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// `GET /oidc/callback`: checks the state, exchanges the code, verifies the ID token, starts a session.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(oidc) = state.oidc.as_ref() else {
        return not_configured(&state, &headers);
    };
    let source = peer.ip().to_string();
    let clear = state_cookie(&state, "", 0);
    let mut r = match complete(&state, oidc, &headers, &q).await {
        Ok(Login {
            email,
            name,
            groups,
            subject,
            next,
        }) => match session::start(&state, &email, &name, false, groups.clone(), AuthSource::Oidc).await {
            Ok((id, cookie)) => {
                audit::record(
                    &state,
                    AuditKind::LoginSucceeded,
                    &email,
                    None,
                    None,
                    &[],
                    json!({"method": "oidc", "issuer": oidc.issuer(), "subject": subject, "groups": groups,
                           "admin": id.is_admin, "source": source}),
                )
                .await;
                tracing::info!(actor = %email, admin = id.is_admin, "OIDC login");
                let mut r = Redirect::to(&next).into_response();
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
                r
            }
            Err(e) => crate::pages::PageError(e).into_response(),
        },
        Err(refusal) => {
            audit::record(
                &state,
                AuditKind::LoginFailed,
                refusal.email.as_deref().unwrap_or("unknown"),
                None,
                None,
                &[],
                json!({"method": "oidc", "reason": refusal.detail, "source": source}),
            )
            .await;
            tracing::warn!(reason = %refusal.detail, email = ?refusal.email, "OIDC login refused");
            refused(&state, &headers, &refusal)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn refused(state: &AppState, headers: &HeaderMap, refusal: &Refusal) -> Response {
    let main = html! {
        div.login.panel {
            h1 { "Login refused" }
            p.error role="alert" { (refusal.public) }
            p { a href="/oidc/login" { "Try again" } }
        }
    };
    let mut p = page(state, None, "Login refused", Nav::None, false, headers, main);
    p.status = refusal.status;
    p.into_response()
}

/// A person the provider vouched for.
pub struct Login {
    /// Lowercased, verified email.
    pub email: String,
    /// Name to show.
    pub name: String,
    /// Groups from the configured claim.
    pub groups: Vec<String>,
    /// The provider's `sub`.
    pub subject: String,
    /// Where the browser goes afterwards (browser flow only).
    next: String,
}

/// The grant type of RFC 8628 §3.4.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// What the CLI shows the person and how it polls (RFC 8628 §3.2), from the provider's answer.
#[derive(Debug)]
pub struct DeviceStart {
    /// The code the CLI polls with (opaque; only the CLI and this server see it).
    pub device_code: String,
    /// The code the person enters at the provider.
    pub user_code: String,
    /// Where the person enters it.
    pub verification_uri: String,
    /// The same with the code filled in, when the provider offers it.
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds the CLI waits between polls.
    pub interval: u64,
}

/// Why a device-flow step did not sign the person in.
#[derive(Debug)]
pub enum DeviceError {
    /// The provider's discovery document has no `device_authorization_endpoint`.
    NotOffered,
    /// RFC 8628 §3.5: `authorization_pending`, `slow_down`, `expired_token` or `access_denied`
    /// (the provider's `invalid_grant`, an unknown or used device code, counts as `expired_token`:
    /// either way the CLI must start again). The message is safe to show.
    Pending(&'static str, &'static str),
    /// The person was vouched for but is refused here, exactly as the browser callback would refuse
    /// them (`email_verified`, `allowedDomains`, an invalid ID token).
    Refused {
        /// Shown to the person.
        public: String,
        /// For the audit log.
        detail: String,
        /// The email, when the ID token had a usable one.
        email: Option<String>,
    },
    /// The provider could not be asked or answered something unusable; the detail is for the log.
    Provider(String),
}

impl From<Refusal> for DeviceError {
    fn from(r: Refusal) -> Self {
        if r.status == StatusCode::BAD_GATEWAY {
            return Self::Provider(r.detail);
        }
        Self::Refused {
            public: r.public,
            detail: r.detail,
            email: r.email,
        }
    }
}

/// The RFC 8628 §3.5 answer for a token endpoint error code, if it is one the CLI acts on.
fn device_pending(error: &str) -> Option<DeviceError> {
    let (code, message) = match error {
        "authorization_pending" => (
            "authorization_pending",
            "waiting for the sign-in to be approved at the identity provider",
        ),
        "slow_down" => ("slow_down", "polling too fast; wait longer between attempts"),
        "expired_token" | "invalid_grant" => (
            "expired_token",
            "the sign-in code expired or was already used; start again: janus login --oidc",
        ),
        "access_denied" => ("access_denied", "the sign-in was denied at the identity provider"),
        _ => return None,
    };
    Some(DeviceError::Pending(code, message))
}

impl Oidc {
    /// Whether the provider offers the device flow (its discovery document names a device
    /// authorization endpoint).
    pub fn offers_device_flow(&self) -> bool {
        self.current().device.is_some()
    }

    /// RFC 8628 §3.1: asks the provider's device authorization endpoint for a device and a user code,
    /// authenticating as the web's own client (the secret never leaves this server).
    pub async fn device_start(&self) -> Result<DeviceStart, DeviceError> {
        let d = self.current();
        let url = d.device.clone().ok_or(DeviceError::NotOffered)?;
        let r: CoreDeviceAuthorizationResponse = d
            .client
            .clone()
            .set_device_authorization_url(url)
            .exchange_device_code()
            .add_scopes(self.scopes(&d))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                DeviceError::Provider(match &e {
                    RequestTokenError::ServerResponse(r) => {
                        let desc = r.error_description().map(|d| format!(": {d}")).unwrap_or_default();
                        format!("device authorization endpoint refused: {}{desc}", r.error())
                    }
                    RequestTokenError::Request(e) => format!("device authorization endpoint unreachable: {}", chain(e)),
                    RequestTokenError::Parse(e, _) => format!("device authorization response unreadable: {e}"),
                    RequestTokenError::Other(s) => format!("device authorization request failed: {s}"),
                })
            })?;
        Ok(DeviceStart {
            device_code: r.device_code().secret().clone(),
            user_code: r.user_code().secret().clone(),
            verification_uri: r.verification_uri().to_string(),
            verification_uri_complete: r.verification_uri_complete().map(|u| u.secret().clone()),
            expires_in: r.expires_in().as_secs(),
            interval: r.interval().as_secs(),
        })
    }

    /// RFC 8628 §3.4: asks the token endpoint ONCE whether `device_code` was approved (the CLI owns
    /// the polling interval), and validates the ID token like the browser callback does ([`validate`]).
    ///
    /// One request by hand rather than the oauth2 crate's `exchange_device_access_token`, whose
    /// future keeps polling until the code is approved or expires.
    pub async fn device_poll(&self, device_code: &str) -> Result<Login, DeviceError> {
        let d = self.current();
        let token_url = d
            .client
            .token_uri()
            .ok_or_else(|| DeviceError::Provider("the provider has no token endpoint".into()))?
            .url()
            .clone();
        let mut form = vec![("grant_type", DEVICE_GRANT), ("device_code", device_code)];
        let mut req = self.http.post(token_url).header(header::ACCEPT, "application/json");
        match &self.client_secret {
            // RFC 6749 §2.3.1: client_secret_basic, both parts form-urlencoded first (as the code
            // exchange does through the oauth2 crate).
            Some(secret) => {
                let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                req = req.basic_auth(enc(&self.cfg.client_id), Some(enc(secret)));
            }
            None => form.push(("client_id", self.cfg.client_id.as_str())),
        }
        let r = req
            .form(&form)
            .send()
            .await
            .map_err(|e| DeviceError::Provider(format!("token endpoint unreachable: {}", chain(&e))))?;
        let status = r.status();
        let body = r
            .bytes()
            .await
            .map_err(|e| DeviceError::Provider(format!("token response: {}", chain(&e))))?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct TokenError {
                error: String,
                error_description: Option<String>,
            }
            return Err(match serde_json::from_slice::<TokenError>(&body) {
                Ok(e) => device_pending(&e.error).unwrap_or_else(|| {
                    let desc = e.error_description.map(|d| format!(": {d}")).unwrap_or_default();
                    let shown: String = format!("{}{desc}", e.error).chars().take(300).collect();
                    DeviceError::Provider(format!("token endpoint refused the device code ({status}): {shown}"))
                }),
                Err(_) => DeviceError::Provider(format!("token endpoint answered {status} without an error code")),
            });
        }
        // The body holds tokens: never log or show it, nor serde's error (which may quote it).
        let token: CoreTokenResponse =
            serde_json::from_slice(&body).map_err(|_| DeviceError::Provider("token response unreadable".into()))?;
        Ok(validate(self, d, &token, None).await?)
    }
}

async fn complete(state: &AppState, oidc: &Oidc, headers: &HeaderMap, q: &CallbackQuery) -> Result<Login, Refusal> {
    if let Some(err) = &q.error {
        let desc = q.error_description.as_deref().unwrap_or("");
        let shown: String = format!("{err} {desc}").chars().take(300).collect();
        return Err(Refusal::forbidden(
            format!("The identity provider did not log you in: {}", shown.trim()),
            format!("provider error: {}", shown.trim()),
        ));
    }
    let cookie = read_state_cookie(headers).ok_or_else(|| {
        Refusal::forbidden(
            "The login took too long or started in another browser; start again.",
            "login state cookie missing",
        )
    })?;
    let st = open(&state.session_key, &cookie, chrono::Utc::now().timestamp())
        .map_err(|why| Refusal::forbidden("The login state is invalid or expired; start again.", why.to_string()))?;
    let given = q.state.as_deref().unwrap_or("");
    if !auth::constant_time_eq(given.as_bytes(), st.s.as_bytes()) {
        return Err(Refusal::forbidden(
            "The login response does not belong to this login (state mismatch); start again.",
            "state mismatch",
        ));
    }
    // RFC 9207: when the provider names itself, it must be the one we sent the browser to.
    if let Some(iss) = &q.iss
        && iss.trim_end_matches('/') != oidc.issuer().trim_end_matches('/')
    {
        return Err(Refusal::forbidden(
            "The login response came from another identity provider.",
            format!("issuer mismatch in the authorization response: {iss}"),
        ));
    }
    let code = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Refusal::forbidden("The identity provider sent no authorization code.", "no code"))?;

    let d = oidc.current();
    let token = d
        .client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| Refusal::provider("The identity provider has no token endpoint.", e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(st.v.clone()))
        .request_async(&oidc.http)
        .await
        .map_err(|e| {
            let detail = match &e {
                RequestTokenError::ServerResponse(r) => {
                    let desc = r.error_description().map(|d| format!(": {d}")).unwrap_or_default();
                    format!("token endpoint refused the code: {}{desc}", r.error())
                }
                RequestTokenError::Request(e) => format!("token endpoint unreachable: {}", chain(e)),
                // The body may hold tokens: never log or show it.
                RequestTokenError::Parse(e, _) => format!("token response unreadable: {e}"),
                RequestTokenError::Other(s) => format!("token request failed: {s}"),
            };
            Refusal::provider("The identity provider did not complete the login; start again.", detail)
        })?;
    let login = validate(oidc, d, &token, Some(&Nonce::new(st.n.clone()))).await?;
    Ok(Login {
        next: auth::safe_next(Some(&st.x)),
        ..login
    })
}

/// Verifies the ID token of a token response and turns it into a person: signature (fetching the
/// provider's keys again once when it does not verify), issuer, audience, expiry, the nonce when the
/// flow has one (the device flow has none), `at_hash`, then the claims (from userinfo when the ID token
/// lacks them) through [`identity`]: `email_verified`, `allowedDomains` and groups. The browser
/// callback and the device flow both come through here, so a CLI login is refused exactly when a
/// browser login would be.
async fn validate(
    oidc: &Oidc,
    mut d: Arc<Discovered>,
    token: &CoreTokenResponse,
    nonce: Option<&Nonce>,
) -> Result<Login, Refusal> {
    let id_token = token
        .id_token()
        .ok_or_else(|| Refusal::provider("The identity provider returned no ID token.", "no id_token"))?;
    let claims_of = |d: &Discovered| {
        let verifier = d.client.id_token_verifier();
        match nonce {
            Some(n) => id_token.claims(&verifier, n).cloned(),
            // RFC 8628 has no authorization request to carry a nonce; the token came straight from
            // the token endpoint over TLS, as in the code flow.
            None => id_token
                .claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(()))
                .cloned(),
        }
    };
    let first = claims_of(&d);
    let verified = match first {
        Ok(c) => Ok(c),
        Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) if oidc.refresh().await => {
            d = oidc.current();
            claims_of(&d)
        }
        Err(e) => Err(e),
    }
    .map_err(|e| {
        Refusal::forbidden(
            "The ID token is not valid.",
            format!("ID token rejected: {}", chain(&e)),
        )
    })?;
    if let Some(expected) = verified.access_token_hash() {
        let verifier = d.client.id_token_verifier();
        let actual = id_token
            .signing_alg()
            .and_then(|alg| id_token.signing_key(&verifier).map(|k| (alg, k)))
            .map_err(|e| e.to_string())
            .and_then(|(alg, key)| {
                AccessTokenHash::from_token(token.access_token(), alg, key).map_err(|e| e.to_string())
            })
            .map_err(|e| Refusal::forbidden("The ID token is not valid.", format!("at_hash: {e}")))?;
        if actual != *expected {
            return Err(Refusal::forbidden(
                "The ID token is not valid.",
                "access token hash mismatch",
            ));
        }
    }
    let subject = verified.subject().as_str().to_string();
    // The signature and claims were verified above: the payload can be read for non-standard claims.
    let mut claims = jwt_payload(&id_token.to_string())
        .ok_or_else(|| Refusal::forbidden("The ID token is not valid.", "unreadable ID token payload"))?;
    let groups_claim = oidc.cfg.groups_claim.as_str();
    let need_userinfo = !claims.contains_key("email")
        || !claims.contains_key("email_verified")
        || claim_path(&claims, groups_claim).is_none();
    if need_userinfo && let Some(url) = &d.userinfo {
        match userinfo(oidc, url, token.access_token().secret()).await {
            Ok(info) if info.get("sub").and_then(Value::as_str) == Some(subject.as_str()) => {
                for (k, v) in info {
                    claims.entry(k).or_insert(v);
                }
            }
            Ok(_) => {
                return Err(Refusal::forbidden(
                    "The identity provider's user information is inconsistent.",
                    "userinfo sub differs from the ID token's",
                ));
            }
            Err(e) => tracing::warn!(error = %e, "OIDC userinfo request failed; using the ID token alone"),
        }
    }
    let login = identity(&oidc.cfg, &claims)?;
    Ok(Login { subject, ..login })
}

/// Email, name and groups from verified claims, with the checks `email_verified` and `allowedDomains`.
fn identity(cfg: &OidcConfig, claims: &Map<String, Value>) -> Result<Login, Refusal> {
    let raw_email = claims.get("email").and_then(Value::as_str).unwrap_or("").trim();
    if raw_email.is_empty() {
        return Err(Refusal::forbidden(
            "Your identity provider account has no email address; k8s-janus needs one.",
            "no email claim",
        ));
    }
    let email = local::check_email(raw_email).map_err(|_| {
        Refusal::forbidden(
            "The email address from the identity provider is not usable.",
            "malformed email claim",
        )
    })?;
    if claims.get("email_verified").and_then(Value::as_bool) != Some(true) {
        return Err(Refusal::forbidden(
            format!("The email address {email} is not verified at the identity provider; verify it there first."),
            "email not verified",
        )
        .of(&email));
    }
    if !cfg.allowed_domains.is_empty() {
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let allowed = cfg
            .allowed_domains
            .iter()
            .any(|a| a.trim().trim_start_matches('@').eq_ignore_ascii_case(domain));
        if !allowed {
            return Err(Refusal::forbidden(
                format!("Accounts of the domain {domain} may not use k8s-janus."),
                format!("domain {domain} not allowed"),
            )
            .of(&email));
        }
    }
    let name = ["name", "preferred_username"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str))
        .map(|n| n.trim().chars().take(200).collect::<String>())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| email.clone());
    let groups = match claim_path(claims, &cfg.groups_claim) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(s)) => s
            .split([',', ' '])
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        _ => vec![],
    };
    let groups: Vec<String> = groups
        .into_iter()
        .filter(|g: &String| g.len() <= 256)
        .take(500)
        .collect();
    Ok(Login {
        email,
        name,
        groups,
        subject: String::new(),
        next: String::new(),
    })
}

/// A claim by name; a dotted name (`realm_access.roles`) walks nested objects when no claim has that
/// exact name.
fn claim_path<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// The payload of a compact JWS.
fn jwt_payload(jwt: &str) -> Option<Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The userinfo endpoint's claims (JSON responses only).
async fn userinfo(oidc: &Oidc, url: &str, access_token: &str) -> Result<Map<String, Value>, String> {
    let r = oidc
        .http
        .get(url)
        .bearer_auth(access_token)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("userinfo request: {}", chain(&e)))?;
    if !r.status().is_success() {
        return Err(format!("userinfo answered {}", r.status()));
    }
    let body = r.bytes().await.map_err(|e| format!("userinfo response: {e}"))?;
    match serde_json::from_slice::<Value>(&body).map_err(|_| "userinfo response is not JSON".to_string())? {
        Value::Object(m) => Ok(m),
        _ => Err("userinfo response is not a JSON object".into()),
    }
}

/// `GET /oidc/logged-out`: where logout lands in OIDC mode (the login page would sign straight back in
/// while the provider's session lasts), with a link to the provider's logout when it has one.
pub async fn logged_out(State(state): State<AppState>, headers: HeaderMap, Optional(id): Optional) -> Response {
    if id.is_some() {
        return Redirect::to("/").into_response();
    }
    let end = state.oidc.as_ref().and_then(|o| o.end_session_url());
    let main = html! {
        div.login.panel {
            h1 { "Logged out" }
            p { "You are logged out of k8s-janus." }
            @if let Some(end) = &end {
                p { a href=(end) { "Also sign out at the identity provider" } }
            }
            p { a href="/oidc/login" { "Log in again" } }
        }
    };
    page(&state, None, "Logged out", Nav::None, false, &headers, main).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(domains: &[&str]) -> OidcConfig {
        OidcConfig {
            issuer_url: "http://idp".into(),
            client_id: "c".into(),
            allowed_domains: domains.iter().map(|d| d.to_string()).collect(),
            admin_groups: vec![],
            groups_claim: "groups".into(),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn state_cookie_is_authenticated_and_expires() {
        let key = b"0123456789abcdef0123456789abcdef";
        let st = LoginState {
            s: "state".into(),
            n: "nonce".into(),
            v: "verifier".into(),
            x: "/requests".into(),
            e: 1000,
        };
        let sealed = seal(key, &st);
        assert_eq!(open(key, &sealed, 999).unwrap().x, "/requests");
        // Expired: the expiry inside the signed value counts, not the cookie's Max-Age.
        assert_eq!(open(key, &sealed, 1000).err(), Some("login state expired"));
        // Signed with another key (another installation, or before a key rotation).
        assert_eq!(
            open(b"another key another key another k", &sealed, 999).err(),
            Some("login state cookie failed authentication")
        );
        // A short key (the random per-process one is 43 bytes, but nothing may panic on any length).
        assert!(open(b"k", &seal(b"k", &st), 999).is_ok());
        // A forged body under the real MAC, a body without its MAC, a flipped MAC character, rubbish.
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&st).unwrap());
        let mac = sealed.strip_suffix(&body).expect("the signed jar prepends the MAC");
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"s":"state","n":"nonce","v":"verifier","x":"//evil","e":99999}"#);
        let mut flipped = sealed.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        for bad in [
            format!("{mac}{forged}"),
            body.clone(),
            String::from_utf8(flipped).unwrap(),
            String::new(),
            "\u{0}%zz;=".into(),
        ] {
            assert_eq!(
                open(key, &bad, 999).err(),
                Some("login state cookie failed authentication"),
                "{bad:?}"
            );
        }
        // The key is derived per purpose: the session key itself does not verify the cookie.
        let mut jar = cookie::CookieJar::new();
        jar.add_original(cookie::Cookie::new(STATE_COOKIE, sealed.clone()));
        assert!(jar.signed(&cookie::Key::derive_from(key)).get(STATE_COOKIE).is_none());
    }

    #[test]
    fn state_cookie_is_read_from_any_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; janus_oidc=abc=; b=2"));
        assert_eq!(read_state_cookie(&h).as_deref(), Some("abc="));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("janus_session=x"));
        h.append(header::COOKIE, HeaderValue::from_static("janus_oidc=v"));
        assert_eq!(read_state_cookie(&h).as_deref(), Some("v"));
        h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("janus_oidc=; junk"));
        assert_eq!(read_state_cookie(&h), None);
    }

    #[test]
    fn identity_checks() {
        let ok = claims(
            json!({"email": "Alice@Example.COM", "email_verified": true, "name": "A",
                              "groups": ["g1", "g2"]}),
        );
        let l = identity(&cfg(&["example.com"]), &ok).unwrap();
        assert_eq!(l.email, "alice@example.com");
        assert_eq!(l.groups, vec!["g1", "g2"]);
        assert!(identity(&cfg(&["EXAMPLE.com"]), &ok).is_ok());
        assert!(identity(&cfg(&[]), &ok).is_ok());
        let r = identity(&cfg(&["sub.example.com"]), &ok).err().unwrap();
        assert_eq!(r.detail, "domain example.com not allowed");
        assert!(identity(&cfg(&["ample.com"]), &ok).is_err());
        let unverified = claims(json!({"email": "a@example.com", "email_verified": false}));
        assert!(
            identity(&cfg(&[]), &unverified)
                .err()
                .unwrap()
                .public
                .contains("not verified")
        );
        let stringly = claims(json!({"email": "a@example.com", "email_verified": "true"}));
        assert!(identity(&cfg(&[]), &stringly).is_err());
        assert!(identity(&cfg(&[]), &claims(json!({"email_verified": true}))).is_err());
        let nested = claims(json!({"email": "a@example.com", "email_verified": true,
                                   "realm_access": {"roles": ["admins"]}}));
        let mut c = cfg(&[]);
        c.groups_claim = "realm_access.roles".into();
        assert_eq!(identity(&c, &nested).unwrap().groups, vec!["admins"]);
        assert_eq!(identity(&c, &nested).unwrap().name, "a@example.com");
    }

    #[test]
    fn payload_decodes() {
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert_eq!(jwt_payload(&format!("h.{p}.s")).unwrap()["sub"], "x");
        assert!(jwt_payload("nope").is_none());
    }
}
