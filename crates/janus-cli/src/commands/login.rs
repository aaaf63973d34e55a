//! `janus login` (password, OIDC device flow, personal API token), `janus logout` and `janus whoami`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use janus_api::tokens::{self, BearerKind};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{LoginArgs, LogoutArgs};
use crate::config::{self, ConfigDir};
use crate::http::Api;
use crate::output::{self, Format, s};
use crate::{CliError, ExitCode, Target};

/// Longest a device login waits when the server names no expiry (RFC 8628 codes live minutes).
const DEVICE_FALLBACK_SECS: u64 = 900;

/// `janus login`.
pub async fn login(a: LoginArgs) -> Result<i32, CliError> {
    let dir = ConfigDir::locate()?;
    let url = config::resolve_url(a.conn.url.as_deref(), Some(&dir)).map_err(|_| {
        CliError::new(
            ExitCode::Usage,
            "say which janus server to log in to: janus login --url https://janus.example.com",
        )
    })?;
    config::check_transport(&url, a.conn.insecure_http)?;
    let (token, identity, expires) = if let Some(t) = a.token {
        with_token(&url, t).await?
    } else if a.oidc {
        device_flow(&url).await?
    } else {
        password(&url, a.username, a.password_stdin).await?
    };
    dir.write_url(&url)?;
    dir.write_token(&token, &url)?;
    let mut line = format!("Logged in to {url} as {}", s(&identity, "email"));
    if let Some(e) = expires {
        line.push_str(&format!(" until {e}"));
    }
    output::out(&format!("{line}.\n"));
    if std::env::var_os(config::ENV_TOKEN).is_some() {
        eprintln!("janus: note: JANUS_TOKEN is set and wins over the saved login; unset it to use this one");
    }
    Ok(0)
}

/// Checks a personal API token (or a CLI session token) with `GET /api/v1/session`.
async fn with_token(url: &str, raw: String) -> Result<(String, Value, Option<String>), CliError> {
    let token = if raw == "-" {
        read_line_stdin("the token")?
    } else {
        eprintln!(
            "janus: warning: a token on the command line can be read by other users of this machine (ps) and stays \
             in your shell history; pipe it in instead: janus login --token -"
        );
        raw.trim().to_string()
    };
    if tokens::bearer_kind(&token).is_none() {
        return Err(CliError::new(
            ExitCode::Usage,
            "that is not a janus token (janus_pat_ followed by 40 letters and digits); create one in the web UI \
             under API tokens",
        ));
    }
    let target = Target {
        base_url: url.to_string(),
        token: token.clone(),
    };
    let session = Api::new(&target)?.get(&["api", "v1", "session"], &[]).await?;
    Ok((token, session.get("identity").cloned().unwrap_or(Value::Null), None))
}

/// Local accounts: `POST /api/v1/cli/login`.
async fn password(
    url: &str,
    username: Option<String>,
    from_stdin: bool,
) -> Result<(String, Value, Option<String>), CliError> {
    let username = match username {
        Some(u) => u,
        None if std::io::stdin().is_terminal() && !from_stdin => {
            eprint!("Username: ");
            let _ = std::io::stderr().flush();
            read_line_stdin("the username")?
        }
        None => {
            return Err(CliError::new(
                ExitCode::Usage,
                "say who logs in: janus login --username NAME",
            ));
        }
    };
    let password = if from_stdin {
        read_line_stdin("the password")?
    } else {
        rpassword::prompt_password(format!("Password for {username} at {url}: ")).map_err(|_| {
            CliError::new(
                ExitCode::Usage,
                "there is no terminal to ask for the password; pipe it in with --password-stdin",
            )
        })?
    };
    let api = Api::anonymous(url)?;
    let body = json!({"username": username, "password": password});
    match api
        .call_raw(reqwest::Method::POST, &["api", "v1", "cli", "login"], &[], Some(&body))
        .await?
    {
        Ok(v) => session_answer(&v),
        Err(f) if f.status == StatusCode::NOT_FOUND => Err(CliError::new(
            ExitCode::NotAuthenticated,
            format!(
                "{url} does not offer password login (it signs in through an identity provider); run: janus login \
                 --oidc, or use a token from the web UI: janus login --token -"
            ),
        )),
        // A wrong password is 422 on the API; for the person it is "not logged in".
        Err(f) if f.status == StatusCode::UNPROCESSABLE_ENTITY => {
            Err(CliError::new(ExitCode::NotAuthenticated, f.message))
        }
        Err(f) => Err(api.failure(f)),
    }
}

/// OIDC: the device authorization grant (RFC 8628) through the web.
async fn device_flow(url: &str) -> Result<(String, Value, Option<String>), CliError> {
    let api = Api::anonymous(url)?;
    let start = match api
        .call_raw(
            reqwest::Method::POST,
            &["api", "v1", "cli", "device"],
            &[],
            Some(&json!({})),
        )
        .await?
    {
        Ok(v) => v,
        Err(f) if f.status == StatusCode::NOT_FOUND => {
            return Err(CliError::new(
                ExitCode::NotAuthenticated,
                format!(
                    "{url} does not sign in through an identity provider; run: janus login (password), or use a \
                     token from the web UI: janus login --token -"
                ),
            ));
        }
        Err(f) => return Err(api.failure(f)),
    };
    let device_code = s(&start, "deviceCode").to_string();
    if device_code.is_empty() {
        return Err(CliError::new(
            ExitCode::Unreachable,
            format!("{url} answered the device login without a device code"),
        ));
    }
    let verify = output::clean(s(&start, "verificationUri"));
    eprintln!(
        "To log in, open {verify} in a browser and enter the code {}",
        output::clean(s(&start, "userCode"))
    );
    if let Some(c) = start.get("verificationUriComplete").and_then(Value::as_str) {
        eprintln!("(or open {})", output::clean(c));
    }
    eprintln!("Waiting for the sign-in to be confirmed…");
    let (mut interval, expires) = device_timing(&start);
    let deadline = Instant::now() + Duration::from_secs(expires);
    let body = json!({"deviceCode": device_code});
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if Instant::now() > deadline {
            return Err(expired());
        }
        let answer = api
            .call_raw(
                reqwest::Method::POST,
                &["api", "v1", "cli", "device", "token"],
                &[],
                Some(&body),
            )
            .await?;
        match answer {
            Ok(v) => return session_answer(&v),
            Err(f) if f.status == StatusCode::BAD_REQUEST => match f.code.as_str() {
                "authorization_pending" => {}
                // RFC 8628 §3.5: slow_down adds 5 seconds to the interval, for this and later polls.
                "slow_down" => interval = (interval + 5).min(MAX_DEVICE_INTERVAL_SECS),
                "expired_token" => return Err(expired()),
                "access_denied" => {
                    return Err(CliError::new(
                        ExitCode::NotAuthenticated,
                        "the sign-in was refused at the identity provider",
                    ));
                }
                _ => return Err(api.failure(f)),
            },
            Err(f) => return Err(api.failure(f)),
        }
    }
}

/// Longest poll interval and code lifetime believed from the server: RFC 8628 codes live minutes and polls are
/// seconds apart; a value near u64::MAX would overflow the clock (or wait for ever).
const MAX_DEVICE_INTERVAL_SECS: u64 = 60;
const MAX_DEVICE_EXPIRY_SECS: u64 = 3600;

/// The poll interval (1..=60 s) and how long the code lives (at most an hour), from the server's answer.
fn device_timing(start: &Value) -> (u64, u64) {
    let interval = start
        .get("interval")
        .and_then(Value::as_u64)
        .unwrap_or(5)
        .clamp(1, MAX_DEVICE_INTERVAL_SECS);
    let expires = start
        .get("expiresIn")
        .and_then(Value::as_u64)
        .unwrap_or(DEVICE_FALLBACK_SECS)
        .min(MAX_DEVICE_EXPIRY_SECS);
    (interval, expires)
}

fn expired() -> CliError {
    CliError::new(
        ExitCode::NotAuthenticated,
        "the code expired before the sign-in was confirmed; run: janus login --oidc",
    )
}

/// `{token, expiresAt, identity}` of a CLI login.
fn session_answer(v: &Value) -> Result<(String, Value, Option<String>), CliError> {
    let token = s(v, "token").to_string();
    if tokens::bearer_kind(&token) != Some(BearerKind::CliSession) {
        return Err(CliError::new(
            ExitCode::Unreachable,
            "the server's login answer carried no CLI session token",
        ));
    }
    let expires = v.get("expiresAt").and_then(Value::as_str).map(str::to_string);
    Ok((token, v.get("identity").cloned().unwrap_or(Value::Null), expires))
}

fn read_line_stdin(what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::new(ExitCode::Usage, format!("cannot read {what} from stdin: {e}")))?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        return Err(CliError::new(ExitCode::Usage, format!("{what} on stdin is empty")));
    }
    Ok(line)
}

/// `janus logout`: ends a CLI session on the server, then deletes the token file (also when the server
/// cannot be reached: the file must not outlive the intent).
pub async fn logout(a: LogoutArgs) -> Result<i32, CliError> {
    let dir = ConfigDir::locate()?;
    // A token file others could read is still deleted.
    let (token, issued_for) = match dir.read_login() {
        Ok(Some(l)) => (Some(l.token), l.url),
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("janus: {}", e.message);
            (None, None)
        }
    };
    // The session is ended where it was issued, never by sending the token to another --url.
    let url = match issued_for {
        Some(u) => config::normalise_url(&u).ok(),
        None => config::resolve_url(a.conn.url.as_deref(), Some(&dir)).ok(),
    };
    match (&token, &url) {
        (Some(t), Some(url)) => match tokens::bearer_kind(t) {
            Some(BearerKind::CliSession) => {
                let target = Target {
                    base_url: url.clone(),
                    token: t.clone(),
                };
                if let Err(e) = Api::new(&target)?.post(&["api", "v1", "logout"], &json!({})).await {
                    eprintln!(
                        "janus: could not end the session on the server ({}); it expires by itself",
                        output::clean(&e.message)
                    );
                }
            }
            Some(BearerKind::PersonalToken) => eprintln!(
                "janus: note: the API token {} stays valid until it expires or is revoked: janus tokens revoke {}",
                tokens::display_id(t),
                tokens::display_id(t)
            ),
            None => {}
        },
        (None, _) => {
            dir.delete_token()?;
            output::out("Not logged in.\n");
            return Ok(0);
        }
        (Some(_), None) => {}
    }
    dir.delete_token()?;
    output::out(&match url {
        Some(u) => format!("Logged out of {u}.\n"),
        None => "Logged out.\n".to_string(),
    });
    if std::env::var_os(config::ENV_TOKEN).is_some() {
        eprintln!("janus: note: JANUS_TOKEN is still set in this environment");
    }
    Ok(0)
}

/// `janus whoami`: `GET /api/v1/session`; `-o json` prints its `identity` object.
pub async fn whoami(t: &Target, format: Format) -> Result<i32, CliError> {
    let session = Api::new(t)?.get(&["api", "v1", "session"], &[]).await?;
    let id = session.get("identity").cloned().unwrap_or(Value::Null);
    if output::machine(format, &id)? {
        return Ok(0);
    }
    let groups = id
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let token = id.get("token");
    let credential = match token {
        Some(tk) => {
            let scopes = tk
                .get("scopes")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            let kind = if tk.get("personal").and_then(Value::as_bool) == Some(true)
                || tokens::bearer_kind(&t.token) == Some(BearerKind::PersonalToken)
            {
                "API token"
            } else {
                "CLI session"
            };
            format!("{kind} {} ({scopes})", s(tk, "displayId"))
        }
        None => tokens::display_id(&t.token),
    };
    let admin = if id.get("isAdmin").and_then(Value::as_bool) == Some(true) {
        "yes"
    } else {
        "no"
    };
    output::out(&output::pairs(&[
        ("Server", t.base_url.clone()),
        ("Email", s(&id, "email").to_string()),
        ("Name", s(&id, "name").to_string()),
        ("Admin", admin.to_string()),
        ("Groups", groups),
        ("Credential", credential),
    ]));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_device_timing_is_bounded() {
        let huge = json!({"interval": u64::MAX, "expiresIn": u64::MAX});
        let (interval, expires) = device_timing(&huge);
        assert_eq!((interval, expires), (60, 3600));
        // Neither the deadline nor the slowed-down interval can overflow.
        let _ = Instant::now() + Duration::from_secs(expires);
        assert_eq!((interval + 5).min(MAX_DEVICE_INTERVAL_SECS), 60);
        assert_eq!(device_timing(&json!({"interval": 0})), (1, DEVICE_FALLBACK_SECS));
        assert_eq!(device_timing(&json!({"interval": 7, "expiresIn": 600})), (7, 600));
    }
}
