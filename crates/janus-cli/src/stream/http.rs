//! The few plain HTTP calls the streams need (the request's namespaces and pods, the log stream), and how
//! the web's error answers become exit codes. Never puts the credential into a message.

use std::time::Duration;

use serde::de::DeserializeOwned;

use reqwest::StatusCode;

use crate::http::{ApiFailure, failure_error};
use crate::{CliError, ExitCode, Target};

/// `base_url` with `segments` appended (each percent-encoded) and the query pairs; `scheme` replaces the
/// scheme when given (`ws`/`wss` for the socket).
pub(crate) fn url(
    t: &Target,
    segments: &[&str],
    query: &[(&str, &str)],
    scheme: Option<fn(&str) -> Option<&'static str>>,
) -> Result<url::Url, CliError> {
    let bad = || {
        CliError::new(
            ExitCode::Unreachable,
            format!(
                "the server address {} is not an http(s) URL; run: janus login --url https://…",
                t.base_url
            ),
        )
    };
    let mut u = url::Url::parse(&t.base_url).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https") || u.cannot_be_a_base() {
        return Err(bad());
    }
    if let Some(map) = scheme {
        let s = map(u.scheme()).ok_or_else(bad)?;
        u.set_scheme(s).map_err(|()| bad())?;
    }
    {
        let mut path = u.path_segments_mut().map_err(|()| bad())?;
        path.pop_if_empty();
        path.extend(segments);
    }
    if !query.is_empty() {
        let mut q = u.query_pairs_mut();
        for (k, v) in query {
            q.append_pair(k, v);
        }
    }
    Ok(u)
}

fn client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| CliError::new(ExitCode::Unreachable, format!("cannot set up HTTPS: {e}")))
}

/// What to say when the server cannot be reached (reqwest's message never carries the bearer header).
fn unreachable(t: &Target, e: &reqwest::Error) -> CliError {
    CliError::new(
        ExitCode::Unreachable,
        format!("cannot reach the janus server at {}: {}", t.base_url, root_cause(e)),
    )
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        last = s.to_string();
        src = s.source();
    }
    last
}

/// `GET` with the bearer; the response when it is a success, the mapped error otherwise.
pub(crate) async fn get(
    t: &Target,
    segments: &[&str],
    query: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Result<reqwest::Response, CliError> {
    let u = url(t, segments, query, None)?;
    let mut req = client()?.get(u).bearer_auth(&t.token);
    if let Some(d) = timeout {
        req = req.timeout(d);
    }
    let resp = req.send().await.map_err(|e| unreachable(t, &e))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let body = resp.bytes().await.unwrap_or_default();
    Err(status_error(t, status, &body))
}

/// `GET` of a JSON document.
pub(crate) async fn get_json<T: DeserializeOwned>(
    t: &Target,
    segments: &[&str],
    query: &[(&str, &str)],
) -> Result<T, CliError> {
    let resp = get(t, segments, query, Some(Duration::from_secs(60))).await?;
    let body = resp.bytes().await.map_err(|e| unreachable(t, &e))?;
    serde_json::from_slice(&body).map_err(|e| {
        CliError::new(
            ExitCode::Unreachable,
            format!("the server answered something unexpected ({e}); is the URL a janus server?"),
        )
    })
}

/// The exit code and message for an error answer of the web: the CLI's one mapping,
/// [`crate::http::failure_error`]. A body that is not JSON (a proxy's page, a plain-text upgrade refusal)
/// still maps by its status here, since the status alone says what went wrong with the stream.
pub(crate) fn status_error(t: &Target, status: u16, body: &[u8]) -> CliError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let failure = ApiFailure::from_body(status, body).unwrap_or(ApiFailure {
        status,
        code: String::new(),
        message: String::new(),
        field: None,
    });
    failure_error(&t.base_url, &failure, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(base: &str) -> Target {
        Target {
            base_url: base.into(),
            token: "janus_pat_x".into(),
        }
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_segments() {
        let u = url(
            &target("https://h.example/janus/"),
            &["ws", "terminal", "a b"],
            &[("command", "ls -l"), ("command", "&x")],
            Some(|s| if s == "https" { Some("wss") } else { Some("ws") }),
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "wss://h.example/janus/ws/terminal/a%20b?command=ls+-l&command=%26x"
        );
        assert!(url(&target("ftp://x"), &[], &[], None).is_err());
        assert!(url(&target("not a url"), &[], &[], None).is_err());
    }

    #[test]
    fn error_answers_map_to_documented_codes() {
        let e = status_error(
            &target("https://h.example"),
            403,
            br#"{"error":"pod x is not in this request's scope","code":"forbidden"}"#,
        );
        assert_eq!(e.code, ExitCode::Forbidden);
        assert_eq!(e.message, "pod x is not in this request's scope");
        let e = status_error(&target("https://h.example"), 401, br#"{"error":"unauthenticated","message":"the API token is invalid, expired or revoked; create a new one or run: janus login"}"#);
        assert_eq!(e.code, ExitCode::NotAuthenticated);
        assert!(e.message.starts_with("the API token is invalid"));
        assert_eq!(
            status_error(&target("https://h.example"), 409, b"{}").code,
            ExitCode::Conflict
        );
        let e = status_error(&target("https://h.example"), 422, br#"{"error":"namespace \"checkout\" is not granted by this request","code":"invalid","field":"namespace"}"#);
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ExitCode::Forbidden,
                r#"namespace "checkout" is not granted by this request"#
            )
        );
        assert_eq!(
            status_error(
                &target("https://h.example"),
                422,
                br#"{"error":"pod p has no container x","field":"container"}"#
            )
            .code,
            ExitCode::Usage
        );
        assert_eq!(
            status_error(&target("https://h.example"), 502, b"<html>").code,
            ExitCode::Unreachable
        );
        // The same mapping as the API calls (docs/cli.md, "Exit codes").
        assert_eq!(
            status_error(&target("https://h.example"), 413, b"{}").code,
            ExitCode::Usage
        );
        assert_eq!(
            status_error(&target("https://h.example"), 429, b"{}").code,
            ExitCode::Conflict
        );
        let e = status_error(
            &target("https://h.example/"),
            503,
            br#"{"error":"database unavailable"}"#,
        );
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ExitCode::Unreachable,
                "the janus server at https://h.example answered HTTP 503: database unavailable"
            )
        );
        // Without a credential (a wrong password at login) a 401 does not suggest logging in.
        let f = ApiFailure::from_body(StatusCode::UNAUTHORIZED, br#"{"error":"wrong username or password"}"#).unwrap();
        assert_eq!(
            failure_error("https://h.example", &f, false).message,
            "wrong username or password"
        );
        assert_eq!(
            failure_error("https://h.example", &f, true).message,
            "wrong username or password; run: janus login"
        );
    }
}
