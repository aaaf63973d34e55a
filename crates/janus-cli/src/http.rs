//! The JSON API over HTTP: bearer authentication, and the server's answers mapped to [`CliError`]s with the
//! documented exit codes.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{CliError, ExitCode, Target};

/// A failed API call: the status and the server's JSON error body, before it becomes a [`CliError`] (the device
/// login needs the raw `error` code of its 400 answers).
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// The machine-readable code: the body's `code`, else its `error` when that is a code (`slow_down`).
    pub code: String,
    /// The sentence to show: the body's `message`, else its `error`.
    pub message: String,
    /// The body's `field`: which input the server refused (`namespace` for a namespace the request does not
    /// grant).
    pub field: Option<String>,
}

impl ApiFailure {
    /// The failure an error answer's body describes; `None` when the body is not JSON (not a janus answer).
    pub fn from_body(status: StatusCode, body: &[u8]) -> Option<Self> {
        let body = serde_json::from_slice::<Value>(body).ok()?;
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Self {
            status,
            code: text("code").or_else(|| text("error")).unwrap_or_default(),
            message: text("message").or_else(|| text("error")).unwrap_or_default(),
            field: text("field"),
        })
    }
}

/// The error a failed call means for the person at the terminal, with the documented exit code (docs/cli.md,
/// "Exit codes"; the web's answers are built in crates/janus-web/src/error.rs and the auth layer). `base_url`
/// names the server in the message of an unexpected answer; `authenticated` says whether a credential was
/// sent, so that a 401 without one (a wrong password at login) does not suggest `janus login`.
pub fn failure_error(base_url: &str, f: &ApiFailure, authenticated: bool) -> CliError {
    let status = f.status.as_u16();
    let msg = if f.message.is_empty() {
        format!("the server answered HTTP {status}")
    } else {
        f.message.clone()
    };
    match f.status {
        StatusCode::UNAUTHORIZED => {
            let m = if msg.contains("janus login") || !authenticated {
                msg
            } else {
                format!("{msg}; run: janus login")
            };
            CliError::new(ExitCode::NotAuthenticated, m)
        }
        StatusCode::FORBIDDEN => CliError::new(ExitCode::Forbidden, msg),
        StatusCode::NOT_FOUND => CliError::new(ExitCode::NotFound, msg),
        StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS => CliError::new(ExitCode::Conflict, msg),
        // A namespace the request does not grant (terminal, logs, pods) is outside the grant, like a pod
        // outside its scope (403); docs/cli.md lists it as exit 4.
        StatusCode::UNPROCESSABLE_ENTITY if f.field.as_deref() == Some("namespace") => {
            CliError::new(ExitCode::Forbidden, msg)
        }
        // Any other value the server refuses (unknown cluster, a container the pod lacks): the arguments are
        // wrong, as with a usage error.
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY | StatusCode::PAYLOAD_TOO_LARGE => {
            CliError::new(ExitCode::Usage, msg)
        }
        _ => CliError::new(
            ExitCode::Unreachable,
            format!(
                "the janus server at {} answered HTTP {status}: {msg}",
                base_url.trim_end_matches('/')
            ),
        ),
    }
}

/// A client of one janus server.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: url::Url,
    base_str: String,
    token: Option<String>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credential.
        f.debug_struct("Api")
            .field("base", &self.base_str)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// A client with a credential.
    pub fn new(target: &Target) -> Result<Self, CliError> {
        Self::build(&target.base_url, Some(target.token.clone()))
    }

    /// A client without a credential (login).
    pub fn anonymous(base_url: &str) -> Result<Self, CliError> {
        Self::build(base_url, None)
    }

    fn build(base_url: &str, token: Option<String>) -> Result<Self, CliError> {
        // A trailing slash so that joining keeps a path prefix (https://x/janus/ + api/v1/…).
        let base = url::Url::parse(&format!("{}/", base_url.trim_end_matches('/')))
            .map_err(|e| CliError::new(ExitCode::Usage, format!("{base_url:?} is not a URL: {e}")))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("janus-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::new(ExitCode::Unreachable, format!("cannot set up HTTPS: {e}")))?;
        Ok(Self {
            http,
            base,
            base_str: base_url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_str
    }

    /// The URL of `segments` under the base, each segment percent-encoded (a request name can never reach
    /// another path).
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<url::Url, CliError> {
        let mut u = self.base.clone();
        {
            let mut p = u
                .path_segments_mut()
                .map_err(|()| CliError::new(ExitCode::Usage, format!("{} cannot be a base URL", self.base_str)))?;
            p.pop_if_empty();
            p.extend(segments);
        }
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        Ok(u)
    }

    /// Sends a request and returns the JSON answer (`null` for 204), or the server's failure.
    pub async fn call_raw(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Result<Value, ApiFailure>, CliError> {
        let url = self.url(segments, query)?;
        let mut req = self.http.request(method.clone(), url.clone());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        tracing::debug!(%method, path = url.path(), "API call");
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
                return Ok(Ok(Value::Null));
            }
            return serde_json::from_str(&text).map(Ok).map_err(|_| self.not_janus(status));
        }
        ApiFailure::from_body(status, text.as_bytes())
            .map(Err)
            .ok_or_else(|| self.not_janus(status))
    }

    /// Sends a request; a failure becomes the [`CliError`] with its documented exit code.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        self.call_raw(method, segments, query, body)
            .await?
            .map_err(|f| self.failure(f))
    }

    /// `GET`.
    pub async fn get(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Value, CliError> {
        self.call(Method::GET, segments, query, None).await
    }

    /// `POST` with a JSON body.
    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value, CliError> {
        self.call(Method::POST, segments, &[], Some(body)).await
    }

    /// `DELETE`.
    pub async fn delete(&self, segments: &[&str]) -> Result<Value, CliError> {
        self.call(Method::DELETE, segments, &[], None).await
    }

    /// The error a failed call means for the person at the terminal ([`failure_error`]).
    pub fn failure(&self, f: ApiFailure) -> CliError {
        failure_error(&self.base_str, &f, self.token.is_some())
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        // reqwest's message names the URL with the path; the base is what the person configured.
        let why = if e.is_timeout() {
            "it did not answer in time".to_string()
        } else if e.is_connect() {
            format!("cannot connect ({})", source_chain(e))
        } else {
            source_chain(e)
        };
        CliError::new(
            ExitCode::Unreachable,
            format!(
                "cannot reach the janus server at {}: {why}; check the URL (janus login --url, JANUS_URL) and your network",
                self.base_str
            ),
        )
    }

    fn not_janus(&self, status: StatusCode) -> CliError {
        CliError::new(
            ExitCode::Unreachable,
            format!(
                "{} answered {status} without the JSON a janus server sends; is this the janus URL?",
                self.base_str
            ),
        )
    }
}

/// The innermost causes of an error, joined: reqwest's own text alone is "error sending request".
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    match parts.last() {
        Some(last) => last.clone(),
        None => e.to_string(),
    }
}
