//! `/api/v1/cli/...`: how the `janus` command line signs in. Local accounts log in with username and
//! password; OIDC uses the OAuth 2.0 device authorization grant (RFC 8628) at the configured provider,
//! with the web's own client credentials. Both end in a CLI session ([`crate::auth::cli_session`]): a
//! `janus_cli_` bearer credential the CLI keeps in its token file.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use janus_store::AuditKind;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use crate::audit;
use crate::auth::cli_session::{self, Issued, Method, Person};
use crate::auth::oidc::DeviceError;
use crate::auth::{AuthSource, Identity, client_ip, local};
use crate::error::WebError;
use crate::extract::Json;
use crate::state::AppState;

/// Longest device code accepted from a client (providers' codes are tens of characters; the bound
/// only keeps oversized input from reaching the provider).
const MAX_DEVICE_CODE: usize = 1024;

/// Device-flow starts per client address per [`DEVICE_WINDOW`].
pub const DEVICE_STARTS_PER_ADDRESS: u32 = 10;
/// Device-flow polls per client address per [`DEVICE_WINDOW`] (a CLI polling every 5 s for the 10
/// minutes a code typically lives needs 120).
pub const DEVICE_POLLS_PER_ADDRESS: u32 = 300;
/// The window of the per-address device-flow budgets.
pub const DEVICE_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
/// On average at most one poll per device code this often ...
pub const DEVICE_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// ... with bursts of this many (a poll right after the person approved, then one that learns the
/// code is used, must not be refused).
pub const DEVICE_POLL_BURST: u32 = 3;
/// Keys beyond which the device limiters forget the ones whose budget is full again.
const DEVICE_RETAIN_ABOVE: usize = 10_000;

type Keyed<K> = governor::DefaultKeyedRateLimiter<K>;

/// Per-replica bounds on the anonymous device-flow endpoints: every call costs a request to the
/// identity provider with the web's own client credentials, so one address must not make the web
/// hammer the provider (starts and polls per address; polls per device code).
pub struct DeviceLimits {
    starts: Keyed<client_ip::LimitKey>,
    polls: Keyed<client_ip::LimitKey>,
    per_code: Keyed<String>,
}

impl Default for DeviceLimits {
    fn default() -> Self {
        let per_window = |n: u32| {
            let n = std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN);
            governor::Quota::with_period(DEVICE_WINDOW / n.get())
                .unwrap_or_else(|| governor::Quota::per_second(std::num::NonZeroU32::MIN))
                .allow_burst(n)
        };
        let per_code = governor::Quota::with_period(DEVICE_POLL_INTERVAL)
            .unwrap_or_else(|| governor::Quota::per_second(std::num::NonZeroU32::MIN))
            .allow_burst(std::num::NonZeroU32::new(DEVICE_POLL_BURST).unwrap_or(std::num::NonZeroU32::MIN));
        Self {
            starts: governor::RateLimiter::keyed(per_window(DEVICE_STARTS_PER_ADDRESS)),
            polls: governor::RateLimiter::keyed(per_window(DEVICE_POLLS_PER_ADDRESS)),
            per_code: governor::RateLimiter::keyed(per_code),
        }
    }
}

/// Takes one cell of `key`'s budget; `Some` answer (429 with Retry-After) when none is left.
fn refused<K>(limiter: &Keyed<K>, key: &K, what: &str) -> Option<Response>
where
    K: std::hash::Hash + Eq + Clone,
{
    use governor::clock::Clock as _;
    if limiter.len() > DEVICE_RETAIN_ABOVE {
        limiter.retain_recent();
    }
    limiter.check_key(key).err().map(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut r = WebError::TooMany(format!("{what}; try again in {secs} s")).into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.max(1).to_string()) {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        r
    })
}

/// `POST /api/v1/cli/login` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CliLoginInput {
    /// Login name.
    username: String,
    /// Password.
    password: String,
}

/// A new CLI session: the only answer that ever carries the credential.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CliSession {
    /// `janus_cli_…`: send it as `Authorization: Bearer` on `/api/v1` and the terminal socket.
    pub token: String,
    /// When the session ends (`web.cliSessionTtlSeconds` after the login).
    pub expires_at: DateTime<Utc>,
    /// Who it belongs to.
    pub identity: Identity,
}

impl From<Issued> for CliSession {
    fn from(i: Issued) -> Self {
        Self {
            token: i.token,
            expires_at: i.expires_at,
            identity: i.identity,
        }
    }
}

/// What the CLI shows the person to approve the sign-in, and how it polls (RFC 8628 §3.2).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceAuthorization {
    /// Send it to `POST /api/v1/cli/device/token`.
    pub device_code: String,
    /// The code the person enters at the provider.
    pub user_code: String,
    /// Where the person enters it.
    pub verification_uri: String,
    /// The same page with the code filled in, when the provider offers it.
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds to wait between two polls (add 5 after each `slow_down`).
    pub interval: u64,
}

/// `POST /api/v1/cli/device/token` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceTokenInput {
    /// `deviceCode` of `POST /api/v1/cli/device`.
    device_code: String,
}

/// The device flow is not finished (400): what the CLI does next depends on `error`.
#[derive(Serialize, ToSchema)]
pub struct DevicePending {
    /// `authorization_pending` (poll again after `interval`), `slow_down` (poll again, 5 s slower),
    /// `expired_token` (start again) or `access_denied` (the person refused).
    #[schema(schema_with = pending_schema)]
    pub error: String,
    /// The same as `error`, where other errors carry their code.
    #[schema(schema_with = pending_schema)]
    pub code: String,
    /// A sentence for the person.
    pub message: String,
}

/// The codes of [`DevicePending`] (RFC 8628 §3.5).
const PENDING_CODES: [&str; 4] = ["authorization_pending", "slow_down", "expired_token", "access_denied"];

fn pending_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(PENDING_CODES))
        .build()
}

/// A JSON error with a status [`WebError`] does not have (501, 502), in the [`ErrorBody`] shape.
fn provider_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": message, "code": "unavailable", "field": null});
    (status, axum::Json(body)).into_response()
}

/// `POST /api/v1/cli/login`: a CLI session for a local account.
#[utoipa::path(post, path = "/api/v1/cli/login", tag = "session", summary = "Sign the CLI in with a local account (authMode local)", security(()), request_body = CliLoginInput,
    description = "The same checks, rate limits and lockouts as POST /api/v1/login, and they count together: \
        422 \"wrong username or password\" answers a wrong password and, identically, an unknown, disabled \
        or locked account; 429 when the client address used up its failed-login budget. No cookie is set.",
    responses(
        (status = 200, description = "A CLI session", body = CliSession),
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
    body: Result<Json<CliLoginInput>, WebError>,
) -> Result<Json<CliSession>, WebError> {
    let client = local::login_client(&state, peer.ip(), &headers)?;
    let Json(input) = body?;
    let (user, source) = local::verify(&state, &input.username, &input.password, client).await?;
    let who = Person {
        email: &user.email,
        name: &user.username,
        local_admin: user.is_admin,
        groups: vec![],
        auth: AuthSource::Local,
    };
    Ok(Json(
        cli_session::issue(&state, who, Method::Password, &source).await?.into(),
    ))
}

/// `POST /api/v1/cli/device`: starts the OIDC device flow at the provider.
#[utoipa::path(post, path = "/api/v1/cli/device", tag = "session", summary = "Start the OIDC device sign-in for the CLI (authMode oidc)", security(()),
    description = "Asks the identity provider's device authorization endpoint (from its discovery document) \
        for a device code and a user code, as the web's own OIDC client. The person opens verificationUri, \
        enters userCode and signs in; meanwhile the CLI polls POST /api/v1/cli/device/token every `interval` \
        seconds.",
    responses(
        (status = 200, description = "The codes", body = DeviceAuthorization),
        (status = 404, description = "OIDC is not configured (authMode is not oidc)", body = ErrorBody),
        (status = 429, description = "Too many device sign-ins started from this address (10 per 10 minutes); Retry-After says when to retry", body = ErrorBody),
        (status = 501, description = "The identity provider does not offer the device flow", body = ErrorBody),
        (status = 502, description = "The identity provider refused or could not be reached", body = ErrorBody),
    ))]
pub async fn device(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let Some(oidc) = state.oidc.as_ref() else {
        return Err(WebError::NotFound("OIDC login is not configured".into()));
    };
    let key = client_ip::limit_key(&client_ip::of_request(&state, peer.ip(), &headers));
    if let Some(r) = refused(
        &state.device_limits.starts,
        &key,
        "too many device sign-ins started from this address",
    ) {
        return Ok(r);
    }
    match oidc.device_start().await {
        Ok(d) => Ok(Json(DeviceAuthorization {
            device_code: d.device_code,
            user_code: d.user_code,
            verification_uri: d.verification_uri,
            verification_uri_complete: d.verification_uri_complete,
            expires_in: d.expires_in,
            interval: d.interval,
        })
        .into_response()),
        Err(e) => Ok(device_error(&state, e, "", None).await),
    }
}

/// `POST /api/v1/cli/device/token`: asks the provider once whether the person approved.
#[utoipa::path(post, path = "/api/v1/cli/device/token", tag = "session", summary = "Finish the OIDC device sign-in for the CLI (authMode oidc)", security(()), request_body = DeviceTokenInput,
    description = "Asks the provider's token endpoint once. When the person approved, the ID token is checked \
        exactly like the browser login's (issuer, audience, signature, email_verified, allowedDomains, groups, \
        admin groups) and a CLI session is issued. Until then 400 with the RFC 8628 code in `error`.",
    responses(
        (status = 200, description = "A CLI session", body = CliSession),
        (status = 400, description = "Not (yet) approved: authorization_pending, slow_down, expired_token or access_denied", body = DevicePending),
        (status = 403, description = "The provider vouched for the person but k8s-janus refuses them (unverified email, domain not allowed, invalid ID token)", body = ErrorBody),
        (status = 404, description = "OIDC is not configured (authMode is not oidc)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Malformed body, or a missing or oversized deviceCode", body = ErrorBody),
        (status = 429, description = "The same device code polled more often than once per 2 s (bursts of 3), or too many polls from this address; Retry-After says when to retry", body = ErrorBody),
        (status = 502, description = "The identity provider could not be reached or answered something unusable", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn device_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<DeviceTokenInput>, WebError>,
) -> Result<Response, WebError> {
    let Some(oidc) = state.oidc.as_ref() else {
        return Err(WebError::NotFound("OIDC login is not configured".into()));
    };
    let Json(input) = body?;
    let code = input.device_code.trim();
    if code.is_empty() || code.len() > MAX_DEVICE_CODE || code.chars().any(char::is_control) {
        return Err(WebError::invalid(
            "deviceCode",
            "deviceCode must be the deviceCode of POST /api/v1/cli/device",
        ));
    }
    let client = client_ip::of_request(&state, peer.ip(), &headers);
    let limits = &state.device_limits;
    // The per-code bound first: a CLI polling too fast for one code must not use up its address's
    // budget for the others.
    if let Some(r) = refused(
        &limits.per_code,
        &janus_api::tokens::hash(code),
        "this device code is polled too often; poll at the interval POST /api/v1/cli/device gave",
    ) {
        return Ok(r);
    }
    if let Some(r) = refused(
        &limits.polls,
        &client_ip::limit_key(&client),
        "too many device sign-in polls from this address",
    ) {
        return Ok(r);
    }
    let source = client.to_string();
    let login = match oidc.device_poll(code).await {
        Ok(l) => l,
        Err(e) => return Ok(device_error(&state, e, &source, Some(oidc.issuer())).await),
    };
    let who = Person {
        email: &login.email,
        name: &login.name,
        local_admin: false,
        groups: login.groups.clone(),
        auth: AuthSource::Oidc,
    };
    let issued = cli_session::issue(&state, who, Method::Device, &source).await?;
    tracing::info!(actor = %login.email, subject = %login.subject, admin = issued.identity.is_admin, "OIDC device login");
    Ok(Json(CliSession::from(issued)).into_response())
}

/// The answer to a device-flow step that did not sign the person in; refusals are audited like the
/// browser callback's (`login.failed`, method `device`).
async fn device_error(state: &AppState, e: DeviceError, source: &str, issuer: Option<&str>) -> Response {
    match e {
        DeviceError::NotOffered => provider_error(
            StatusCode::NOT_IMPLEMENTED,
            "the identity provider does not offer the device flow; sign in on the web UI and create an API \
             token instead",
        ),
        DeviceError::Pending(code, message) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": code, "code": code, "message": message})),
        )
            .into_response(),
        DeviceError::Refused { public, detail, email } => {
            audit::record(
                state,
                AuditKind::LoginFailed,
                email.as_deref().unwrap_or("unknown"),
                None,
                None,
                &[],
                json!({"method": "device", "reason": detail, "issuer": issuer, "source": source}),
            )
            .await;
            tracing::warn!(reason = %detail, email = ?email, "OIDC device login refused");
            WebError::Forbidden(public).into_response()
        }
        DeviceError::Provider(detail) => {
            tracing::warn!(error = %detail, "OIDC device flow: the identity provider failed");
            provider_error(
                StatusCode::BAD_GATEWAY,
                "the identity provider did not answer as expected; try again shortly",
            )
        }
    }
}
